"""The evaluate stage on real x265 encodes: anchor, filters-off decode, a network's output."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from inloop.codecs import EncodeJob, get_codec
from inloop.errors import InloopError
from inloop.evaluation.evaluate import evaluate_point
from inloop.models import build_model
from inloop.yuv import YuvFormat


@pytest.fixture(scope="module")
def point(tmp_path_factory, codec_fixtures):
    import shutil

    d = tmp_path_factory.mktemp("eval")
    src = d / "city_128x96_30fps_8bit_420.yuv"
    shutil.copyfile(codec_fixtures / "city_128x96_5f.yuv", src)
    stats = {}
    for filters in ("on", "off"):
        stats[filters] = get_codec("x265").encode(EncodeJob(src, YuvFormat(128, 96), 5, 37, "ai", filters),
                                                  d / filters / "city_128x96_30fps_8bit_420" / "qp37.bin")
    model = build_model("dncnn", depth=3, channels=8)
    torch.save({"name": "dncnn", "instance": "dncnn", "kwargs": {"depth": 3, "channels": 8},
                "state_dict": model.state_dict(), "bitdepth": 8, "planes": ["y"],
                "describe": {"codec": "x265", "config": "ai", "qp": 37, "model": "dncnn"}}, d / "model.pt")
    return d, src, stats


def test_anchor_decode_and_enhanced(point, tmp_path):
    d, src, stats = point
    on, off = d / "on/city_128x96_30fps_8bit_420/qp37.json", d / "off/city_128x96_30fps_8bit_420/qp37.json"
    none = evaluate_point(src, on, off, tmp_path / "none.json", dataset="demo")
    assert none["anchor"]["psnr"] == pytest.approx(stats["on"]["psnr"])
    assert none["decoded"]["psnr"] == pytest.approx(stats["off"]["psnr"])
    assert none["decoded"]["kbps"] == stats["off"]["kbps"] and none["enhanced"] is None
    assert none["sequence"] == "city_128x96_30fps_8bit_420" and len(none["decoded"]["psnr_y_frames"]) == 5

    full = evaluate_point(src, on, off, tmp_path / "m.json", model_path=d / "model.pt",
                          enhanced_out=tmp_path / "enh_128x96_30fps_8bit_420.yuv")
    reused = evaluate_point(src, on, off, tmp_path / "m2.json", model_path=d / "model.pt",
                            enhanced_out=tmp_path / "enh2_128x96_30fps_8bit_420.yuv", baseline=tmp_path / "none.json")
    assert full["model"] == "dncnn" and full["enhanced"]["kbps"] == full["decoded"]["kbps"]
    assert full["delta"]["psnr_y"] == pytest.approx(full["enhanced"]["psnr"]["y"] - full["decoded"]["psnr"]["y"])
    for key in ("anchor", "decoded", "enhanced", "delta"):
        assert reused[key] == full[key]
    assert json.loads((tmp_path / "m2.json").read_text())["model_file"] == str(d / "model.pt")


def test_mismatched_inputs_are_refused(point, tmp_path):
    d, src, _ = point
    on, off = d / "on/city_128x96_30fps_8bit_420/qp37.json", d / "off/city_128x96_30fps_8bit_420/qp37.json"
    with pytest.raises(InloopError, match="expected an anchor with filters on"):
        evaluate_point(src, off, on, tmp_path / "x.json")
    bad = tmp_path / "base.json"
    bad.write_text(json.dumps({"codec": "x265", "config": "ai", "qp": 32, "frames": 5,
                               "sequence": "city_128x96_30fps_8bit_420"}))
    with pytest.raises(InloopError, match="is for qp=32, not 37"):
        evaluate_point(src, on, off, tmp_path / "y.json", model_path=d / "model.pt",
                       enhanced_out=tmp_path / "e_128x96_30fps_8bit_420.yuv", baseline=bad)
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "y.json").exists()


def test_lpips_per_curve_or_the_reason_it_is_missing(point, tmp_path):
    """LPIPS plumbing with an LPIPS network of random weights (the real AlexNet weights cannot be
    fetched here): anchor, decode and enhanced each get the mean over frames on RGB; the
    baseline's values are reused; an unavailable metric is recorded as its reason, never a number."""
    from inloop.models.lpips import LPIPS
    from inloop.evaluation.metrics import yuv_to_rgb
    from inloop.yuv import YuvReader

    def by_hand(metric, a, b):
        fmt = YuvFormat(128, 96)
        with YuvReader(a, fmt) as ra, YuvReader(b, fmt) as rb, torch.no_grad():
            return sum(float(metric(yuv_to_rgb(*ra[i]), yuv_to_rgb(*rb[i]), normalize=True)) for i in range(5)) / 5

    d, src, _ = point
    on, off = d / "on/city_128x96_30fps_8bit_420/qp37.json", d / "off/city_128x96_30fps_8bit_420/qp37.json"
    torch.manual_seed(0)
    metric = LPIPS().eval()
    none = evaluate_point(src, on, off, tmp_path / "none.json", lpips=metric)
    dec = json.loads(off.read_text())["decoded"]
    assert none["lpips"]["decoded"] == pytest.approx(by_hand(metric, src, dec), rel=1e-5)
    assert none["lpips"]["anchor"] != none["lpips"]["decoded"]
    m = evaluate_point(src, on, off, tmp_path / "m.json", model_path=d / "model.pt", lpips=metric,
                       enhanced_out=tmp_path / "e_128x96_30fps_8bit_420.yuv", baseline=tmp_path / "none.json")
    assert m["lpips"]["anchor"] == none["lpips"]["anchor"]
    assert m["lpips"]["enhanced"] == pytest.approx(by_hand(metric, src, tmp_path / "e_128x96_30fps_8bit_420.yuv"),
                                                   rel=1e-5)
    gone = evaluate_point(src, on, off, tmp_path / "g.json", lpips="LPIPS unavailable: no AlexNet backbone")
    assert gone["lpips"] == {"unavailable": "LPIPS unavailable: no AlexNet backbone"}


def test_only_the_frames_asked_for_and_a_network_on_the_anchor_decode(point, tmp_path):
    """NL-ConvLSTM 4.1: Vimeo-90K measures only the 4th frame of each clip (``evaluate.frames: [3]``);
    on Yang et al.'s data the network post-processes HM's own decode (``pipeline.network_input: on``)."""
    d, src, stats = point
    on, off = d / "on/city_128x96_30fps_8bit_420/qp37.json", d / "off/city_128x96_30fps_8bit_420/qp37.json"
    every = evaluate_point(src, on, off, tmp_path / "all.json")
    fourth = evaluate_point(src, on, off, tmp_path / "4th.json", eval_frames=[3])
    assert fourth["decoded"]["psnr_y_frames"] == [every["decoded"]["psnr_y_frames"][3]]
    assert fourth["decoded"]["psnr"]["y"] == pytest.approx(stats["off"]["psnr_per_frame"][3]["y"])
    assert fourth["frames_evaluated"] == [3] and fourth["decoded"]["kbps"] == every["decoded"]["kbps"]
    post = evaluate_point(src, on, on, tmp_path / "post.json", model_path=d / "model.pt",
                          enhanced_out=tmp_path / "p_128x96_30fps_8bit_420.yuv")
    assert post["network_input"] == "filters on" and post["decoded"] == post["anchor"]
    assert post["enhanced"]["kbps"] == post["anchor"]["kbps"]
    with pytest.raises(InloopError, match="frame indices within 0..4"):
        evaluate_point(src, on, off, tmp_path / "x.json", eval_frames=[7])


def test_the_cli_runs_torch_on_the_jobs_threads_and_switching_never_loses_to_the_decode(point, tmp_path):
    """`inloop evaluate --threads N` (the rule passes the job's threads: --cores beyond the machine no longer
    means every job on every core, issue #20); the switched reconstruction of an untrained network (worse than
    the decode) keeps the decode's quality: switching is never worse than filter off (issue #19)."""
    import subprocess
    import sys

    d, src, stats = point
    on, off = d / "on/city_128x96_30fps_8bit_420/qp37.json", d / "off/city_128x96_30fps_8bit_420/qp37.json"
    out = tmp_path / "m.json"
    proc = subprocess.run([sys.executable, "-m", "inloop.cli", "evaluate", "--original", str(src), "--anchor-stats",
                           str(on), "--off-stats", str(off), "--out", str(out), "--model", str(d / "model.pt"),
                           "--enhanced", str(tmp_path / "e_128x96_30fps_8bit_420.yuv"), "--threads", "1"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["torch_threads"] == 1
    sw = r["switched"]["switching"]
    assert sw["ctu"] == 64 and len(sw["per_frame"]) == 5
    assert r["switched"]["kbps"] == pytest.approx(r["decoded"]["kbps"] + sw["flag_kbps"]) and sw["flag_bits"] >= 5
    frames_sw, frames_dec = r["switched"]["psnr_y_frames"], r["decoded"]["psnr_y_frames"]
    assert all(a >= b - 1e-9 for a, b in zip(frames_sw, frames_dec))
    assert r["delta_switched"]["psnr_y"] >= -1e-9  # per frame D(switched) <= D(decode): J(switched) <= J(off)


def test_a_model_file_of_another_job_is_refused(point, tmp_path):
    """#27 item 3: the QP-37 model copied to another QP's path, or another network's file at this model's path,
    was evaluated and filed as this model; now the file's record is checked against the job, in one line."""
    d, src, _ = point
    on, off = d / "on/city_128x96_30fps_8bit_420/qp37.json", d / "off/city_128x96_30fps_8bit_420/qp37.json"
    payload = torch.load(d / "model.pt", weights_only=True)
    cases = {"qp": ({**payload, "describe": {**payload["describe"], "qp": 32}}, None, r"qp 32, the job's 37"),
             "model": (payload, {"model": "glfusion"}, r"model 'dncnn', the job's 'glfusion'"),
             "settings": (payload, {"model": "dncnn", "kwargs": {"depth": 5, "channels": 8}}, r"kwargs .*depth': 3"),
             "no record": ({k: v for k, v in payload.items() if k != "describe"}, None, r"codec None, the job's 'x265'")}
    for case, (pl, expect, match) in cases.items():
        path = tmp_path / case.replace(" ", "-") / "model.pt"
        path.parent.mkdir()
        torch.save(pl, path)
        out = tmp_path / f"{case}.json"
        with pytest.raises(InloopError, match=rf"{path}: this model file does not belong to this job: .*{match}"):
            evaluate_point(src, on, off, out, model_path=path, enhanced_out=tmp_path / "e_128x96_30fps_8bit_420.yuv",
                           expect=expect)
        assert not out.exists()
    ok = evaluate_point(src, on, off, tmp_path / "ok.json", model_path=d / "model.pt",
                        enhanced_out=tmp_path / "ok_128x96_30fps_8bit_420.yuv",
                        expect={"model": "dncnn", "kwargs": {"depth": 3, "channels": 8}})
    assert ok["model"] == "dncnn"


def test_another_clip_as_the_original_is_refused(point, tmp_path):
    """#27 item 11: `--original` was not checked against the stats, so another clip of the same size was scored as
    this one. Its name must be the encode's source's, and the anchor's PSNR-Y against it the encode's own."""
    import numpy as np

    d, src, _ = point
    on, off = d / "on/city_128x96_30fps_8bit_420/qp37.json", d / "off/city_128x96_30fps_8bit_420/qp37.json"
    other = tmp_path / "other_128x96_30fps_8bit_420.yuv"
    other.write_bytes(src.read_bytes())
    with pytest.raises(InloopError, match=r"other_128x96_30fps_8bit_420.yuv: not the clip .* coded"):
        evaluate_point(other, on, off, tmp_path / "x.json")
    same_name = tmp_path / "same" / src.name
    same_name.parent.mkdir()
    data = np.frombuffer(src.read_bytes(), np.uint8)
    same_name.write_bytes(np.roll(data, 128 * 8).tobytes())  # the same size, other pixels
    with pytest.raises(InloopError, match=r"has PSNR-Y .* dB against it, the encode measured .*not the clip"):
        evaluate_point(same_name, on, off, tmp_path / "y.json")
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "y.json").exists()


def _copied_encodes(d: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the point's two encodes (stats JSONs describing their own copied files): anchor, filters off."""
    import shutil

    enc = tmp_path / "enc"
    shutil.copytree(d / "on", enc / "on")
    shutil.copytree(d / "off", enc / "off")
    for f in enc.rglob("*.json"):
        st = json.loads(f.read_text())
        st["bitstream"] = str(f.with_suffix(".bin"))
        st["decoded"] = str(f.parent / Path(st["decoded"]).name)
        f.write_text(json.dumps(st))
    return enc / "on/city_128x96_30fps_8bit_420/qp37.json", enc / "off/city_128x96_30fps_8bit_420/qp37.json"


def test_damaged_intermediates_are_named_not_used(point, tmp_path):
    """#27 item 4: a bitstream truncated to 10 bytes kept its old rate ("Nothing to be done"); an anchor stats JSON
    cut in half was a JSONDecodeError traceback; a decode cut short went on. Each is one line naming the file
    and how to rebuild it."""
    d, src, _ = point
    on, off = _copied_encodes(d, tmp_path)
    evaluate_point(src, on, off, tmp_path / "ok.json")  # the copies pass
    bin_off = off.with_suffix(".bin")
    data = bin_off.read_bytes()
    bin_off.write_bytes(data[:10])
    with pytest.raises(InloopError, match=r"qp37.bin: 10 bytes where .*qp37.json recorded \d+: the bitstream changed"):
        evaluate_point(src, on, off, tmp_path / "a.json")
    bin_off.write_bytes(bytes([data[0] ^ 0xFF]) + data[1:])  # same size, other content
    with pytest.raises(InloopError, match=r"qp37.bin: its sha256 is not the one .*qp37.json recorded"):
        evaluate_point(src, on, off, tmp_path / "a.json")
    bin_off.write_bytes(data)
    dec = Path(json.loads(off.read_text())["decoded"])
    frames = dec.read_bytes()
    dec.write_bytes(frames[: len(frames) // 2])
    with pytest.raises(InloopError, match=rf"{dec.name}: \d+ bytes where .*qp37.json describes 5 frames"):
        evaluate_point(src, on, off, tmp_path / "b.json")
    dec.write_bytes(frames)
    text = on.read_text()
    on.write_text(text[: len(text) // 2])
    with pytest.raises(InloopError, match=rf"{on}: damaged encode stats \(JSONDecodeError\); delete .* run again"):
        evaluate_point(src, on, off, tmp_path / "c.json")
    assert not any((tmp_path / f"{k}.json").exists() for k in "abc")


def test_a_damaged_decode_stops_the_patch_store_naming_it(point, tmp_path, capsys):
    """#27 item 4: a training clip's decode cut short went into the patch store unnoticed (fewer frames, fewer
    patches). The rule now passes each decode's encode stats (`inloop patches --stats`): the decode is checked
    against them first, one line naming it, and the previous store stays whole."""
    import yaml

    from inloop.cli import main

    d, src, _ = point
    _, off = _copied_encodes(d, tmp_path)
    dec = Path(json.loads(off.read_text())["decoded"])
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params["train"].update(patch_size=32, val_sources=None)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    store = tmp_path / "store"
    args = ["patches", "--original", str(src), "--decoded", str(dec), "--stats", str(off), "--out", str(store),
            "--params", str(tmp_path / "params.yaml")]
    assert main(args) == 0, capsys.readouterr().err
    kept = (store / "train.npy").read_bytes()
    frames = dec.read_bytes()
    dec.write_bytes(frames[: len(frames) // 2])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{dec}: {len(frames) // 2} bytes where {off} describes 5 frames" in err, err
    assert (store / "train.npy").read_bytes() == kept
    dec.write_bytes(frames)
    assert main([*args[:-5], str(off), str(off), *args[-4:]]) == 2  # two stats for one decode
    assert "1 decoded files but 2 stats" in capsys.readouterr().err


def test_an_edited_manifest_entry_is_named(tmp_path):
    """#27 item 4: `inloop datasets verify` refused an edited manifest (width 999) without naming the file or
    the clip."""
    from inloop.datasets.download import DatasetError
    from inloop.datasets.manifest import verify_manifest

    yuv = tmp_path / "c_16x16_30fps_8bit_420.yuv"
    yuv.write_bytes(b"\x80" * 384 * 2)
    entry = {"name": "c", "path": yuv.name, "width": 16, "height": 16, "fps": 30, "frames": 2, "bitdepth": 8}
    (tmp_path / "manifest.json").write_text(json.dumps({"dataset": "x", "clips": [entry]}))
    assert verify_manifest(tmp_path / "manifest.json")
    for edit, match in (({"width": 999}, r"manifest.json: clip 'c': "), ({"frames": 5}, r"c_16x16.*5 frames")):
        (tmp_path / "manifest.json").write_text(json.dumps({"dataset": "x", "clips": [{**entry, **edit}]}))
        with pytest.raises(DatasetError, match=match):
            verify_manifest(tmp_path / "manifest.json")


def test_one_process_evaluates_several_points_as_one_each(point, tmp_path):
    """evaluate.jobs: per-qp -- `inloop evaluate` given N points (the i-th value of each list option together)
    writes what N one-point runs write, in one Python and torch start-up; lists of other lengths are refused,
    naming the option."""
    import subprocess
    import sys

    d, src, _ = point
    on, off = d / "on/city_128x96_30fps_8bit_420/qp37.json", d / "off/city_128x96_30fps_8bit_420/qp37.json"

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "inloop.cli", "evaluate", "--model", str(d / "model.pt"),
                               "--threads", "1", *map(str, args)], capture_output=True, text=True, cwd=tmp_path)

    one = [cli("--original", src, "--anchor-stats", on, "--off-stats", o, "--out", tmp_path / f"one{i}.json",
               "--enhanced", tmp_path / f"one{i}_128x96_30fps_8bit_420.yuv", "--seq-class", c)
           for i, (o, c) in enumerate([(off, "C"), (on, "-")])]
    assert all(p.returncode == 0 for p in one), [p.stderr[-2000:] for p in one]
    both = cli("--original", src, src, "--anchor-stats", on, on, "--off-stats", off, on,
               "--out", tmp_path / "both0.json", tmp_path / "both1.json", "--seq-class", "C", "-",
               "--enhanced", tmp_path / "both0_128x96_30fps_8bit_420.yuv", tmp_path / "both1_128x96_30fps_8bit_420.yuv")
    assert both.returncode == 0, both.stderr[-2000:]
    assert len(both.stdout.splitlines()) == 2
    timing = {"seconds_per_frame"}
    for i in (0, 1):
        a, b = (json.loads((tmp_path / f"{k}{i}.json").read_text()) for k in ("one", "both"))
        assert {k: v for k, v in a.items() if k not in timing} == {k: v for k, v in b.items() if k not in timing}
        assert (tmp_path / f"one{i}_128x96_30fps_8bit_420.yuv").read_bytes() == \
            (tmp_path / f"both{i}_128x96_30fps_8bit_420.yuv").read_bytes()
    assert json.loads((tmp_path / "both0.json").read_text())["seq_class"] == "C"
    assert json.loads((tmp_path / "both1.json").read_text())["seq_class"] == ""
    assert json.loads((tmp_path / "both1.json").read_text())["network_input"] == "filters on"
    bad = cli("--original", src, src, "--anchor-stats", on, "--off-stats", off, off, "--out", tmp_path / "x.json",
              tmp_path / "y.json", "--enhanced", tmp_path / "x.yuv", tmp_path / "y.yuv")
    assert bad.returncode != 0 and "--anchor-stats gives 1 values for the 2 points of --original" in bad.stderr
    same = cli("--original", src, src, "--anchor-stats", on, on, "--off-stats", off, off, "--out", tmp_path / "x.json",
               tmp_path / "x.json", "--enhanced", tmp_path / "x.yuv", tmp_path / "y.yuv")
    assert same.returncode != 0 and "--out names the same file twice" in same.stderr
    assert not (tmp_path / "x.json").exists()


def test_a_multi_frame_networks_evaluation_and_its_inputs_go_first_when_more_jobs_are_ready_than_cores(tmp_path):
    from conftest import REPO, dry_run

    out = dry_run(tmp_path, "train: {models: [glfusion, nlconvlstm]}\nmodels: {nlconvlstm: {configs: [ai], qps: [37]}}",
                  target="all")
    assert out.returncode == 0, out.stderr
    tiny = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())
    test_names = {c["name"] for c in tiny["datasets"]["demo"]["clips"] if c["split"] == "test"}
    priorities = {}
    for block in out.stdout.split("\nrule ")[1:] + out.stdout.split("\nlocalrule ")[1:]:
        rule = block.split(":")[0]
        wc = dict(kv.split("=", 1) for kv in block.split("wildcards: ")[1].split("\n")[0].split(", ")) \
            if "wildcards: " in block else {}
        if rule == "evaluate_model_batch":
            rule = f"{rule} {wc['model']}"
        elif rule == "evaluate_codec_batch":
            rule = f"{rule} qp{wc['qp']}"
        elif rule == "encode":
            held_out = wc["name"] in test_names
            rule = f"encode {'held-out' if held_out else 'train'} qp{wc['qp']}"
        priorities.setdefault(rule, set()).add(int(block.split("priority: ")[1].split()[0])
                                               if "priority: " in block else 0)
    # NL-ConvLSTM filters each frame from seven: its evaluations start as soon as its model is trained (before the
    # other trainings, 1), not last alone on one core; so do their inputs: the held-out clips' encodes at its QP,
    # the codec's evaluation there (its baseline) and the per-clip links of a batch (which all jobs wait for)
    assert priorities["evaluate_model_batch glfusion"] == {0}, priorities
    assert priorities["evaluate_model_batch nlconvlstm"] == {2}, priorities
    assert priorities["evaluate_codec_batch qp37"] == {2} and priorities["evaluate_codec_batch qp22"] == {0}
    assert priorities["encode held-out qp37"] == {1} and priorities["encode held-out qp22"] == {0}
    assert priorities["encode train qp37"] == {1}
    assert priorities["evaluate_codec"] == priorities["evaluate_model"] == {3}
    assert max(p for r, ps in priorities.items() if r.startswith(("train", "patches")) for p in ps) < 3


def test_only_the_evaluations_a_table_reads_lpips_from_measure_it(tmp_path):
    """params metrics.lpips.models (the demo: SPiLF's two networks): rule by rule, `inloop evaluate` gets
    --no-lpips where none of those networks is evaluated (GL-Fusion's evaluations, the codec's at GL-Fusion's other
    QPs), not where one is (SPiLF's, the codec's at SPiLF's QP 37); a change of the list is a change of the
    command line, so Snakemake evaluates again."""
    from conftest import dry_run

    out = dry_run(tmp_path, "train: {models: [glfusion, spilf-arabica]}\n"
                            "models: {spilf-arabica: {qps: [37, 44]}}\nmetrics: {lpips: {models: [spilf-arabica]}}",
                  target="all")
    assert out.returncode == 0, out.stderr
    measured = {}
    for line in out.stdout.splitlines():
        if "inloop evaluate " in line:
            log = line.split("results/logs/eval/batch/")[1].split(".log")[0]
            measured[log] = "--no-lpips" not in line
    assert measured == {"codec/x265/ai/demo/qp22": False, "codec/x265/ai/demo/qp27": False,
                        "codec/x265/ai/demo/qp32": False, "codec/x265/ai/demo/qp37": True,
                        **{f"models/glfusion/x265/ai/demo/qp{q}": False for q in (22, 27, 32, 37)},
                        "models/spilf-arabica/x265/ai/demo/qp37": True,
                        "models/spilf-arabica/x265/ai/demo/qp44": True}, measured
