"""SPiLF's paper config rehearsed end to end (tests/test_rehearsal.py has the checks and GL-Fusion's)."""

from test_rehearsal import paper_tests

globals().update(paper_tests("spilf"))
