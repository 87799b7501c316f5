"""NL-ConvLSTM's paper configs (Vimeo-90K and Yang's data) and its ablation over the Yang config, rehearsed end to
end (tests/test_rehearsal.py has the checks and GL-Fusion's)."""

import pytest

from test_rehearsal import CODECS, ablations_of, check_ablation, check_paper, configs_of


@pytest.mark.slow
@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("config", configs_of("nlconvlstm"))
def test_a_paper_config_runs_end_to_end(config, codec, tmp_path_factory):
    check_paper(config, codec, tmp_path_factory)


@pytest.mark.slow
@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("ablation", ablations_of("nlconvlstm"))
def test_an_ablation_runs_over_its_paper_config(ablation, codec, tmp_path_factory):
    check_ablation(ablation, codec, tmp_path_factory)
