"""NL-ConvLSTM's paper configs (Vimeo-90K and Yang's data) and its ablation over the Yang config, rehearsed end to
end (tests/test_rehearsal.py has the checks and GL-Fusion's)."""

from test_rehearsal import paper_tests

globals().update(paper_tests("nlconvlstm"))
