"""SPiLF's paper config rehearsed end to end (tests/test_rehearsal.py has the checks and GL-Fusion's)."""

import pytest

from test_rehearsal import CODECS, check_paper, configs_of


@pytest.mark.slow
@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("config", configs_of("spilf"))
def test_a_paper_config_runs_end_to_end(config, codec, tmp_path_factory):
    check_paper(config, codec, tmp_path_factory)
