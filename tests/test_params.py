"""params.yaml loading: the CLI reads the workflow's merged configuration."""

import os

import yaml

from inloop.params import cli_params, write_resolved


def test_cli_reads_the_merged_config_from_env(tmp_path, monkeypatch):
    merged = {"train": {"steps": 20}, "models": {"glfusion": {"channels": 4}}}
    path = write_resolved(merged, tmp_path / "inloop" / "params.yaml")
    assert yaml.safe_load(path.read_text()) == merged
    monkeypatch.chdir(tmp_path)  # no ./params.yaml here
    monkeypatch.delenv("INLOOP_PARAMS", raising=False)
    assert cli_params() == {}
    monkeypatch.setenv("INLOOP_PARAMS", str(path))
    assert cli_params()["train"]["steps"] == 20
    other = tmp_path / "other.yaml"
    other.write_text("train: {steps: 5}\n")
    assert cli_params(other)["train"]["steps"] == 5  # --params wins


def test_write_resolved_leaves_an_unchanged_file_alone(tmp_path):
    path = write_resolved({"a": 1}, tmp_path / "p.yaml")
    os.utime(path, ns=(1, 1))
    write_resolved({"a": 1}, path)
    assert path.stat().st_mtime_ns == 1
    write_resolved({"a": 2}, path)
    assert path.stat().st_mtime_ns != 1 and yaml.safe_load(path.read_text()) == {"a": 2}
