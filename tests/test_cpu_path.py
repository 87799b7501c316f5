"""The compute path (issue #20): native bf16 read from the CPU's flags, the choice of each setting,
bf16 autocast within a stated tolerance of fp32 for every paper's network (inference and one
training step through the project's own tasks), and the choice recorded where a run is recorded.

Tolerances (samples in [0, 1]; measured on an AVX2 CPU, where bf16 runs in generic code, with
the small widths below: max |difference| 5e-4 .. 1.2e-3, RMS 0.2 .. 0.7 % of the residual, losses
within 0.15 %, gradient cosine >= 0.9995):

* inference: max |y_bf16 - y_fp32| <= 4e-3 (about one 8-bit code value, 1/255) and the RMS of the
  difference <= 2 % of the RMS of the fp32 residual y - x;
* one training step on the same batch from the same weights: every loss within 1 % (relative), and
  the cosine of the network's bf16 and fp32 gradients >= 0.99.
"""

from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest
import torch

from inloop.errors import InloopError
from inloop.models import build_model
from inloop.models import cpu_path
from inloop.models.cpu_path import cpu_bf16, native_bf16_flags, parse_cpu_flags, resolve
from conftest import REPO
from test_bench import one_thread  # noqa: F401 - the autouse fixture: torch on one thread

# First lines of real /proc/cpuinfo texts (flags shortened to the relevant ones and some neighbours).
SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme sse sse2 avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
"""
COOPER_LAKE = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8380H CPU @ 2.90GHz
flags\t\t: fpu sse avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16
"""
SKYLAKE = """processor\t: 0
model name\t: Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz
flags\t\t: fpu sse avx avx2 fma avx512f avx512bw avx512cd avx512dq
"""
EPYC_AVX2 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu sse sse2 avx avx2 fma bmi2
"""
GRAVITON = """processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics bf16 i8mm
"""

GLF = {"channels": 4, "hgf_depth": 2, "hlf_modules": 1}
SPILF = {"channels": 8, "grad_blocks": 1, "pixel_units": 1, "dru_layers": 2, "growth": 4, "fusion_units": 1,
         "reduction": 4}
NL = {"channels": 4, "pool": 4, "frames": 3, "enc_layers": 1, "dec_layers": 1}
NETWORKS = [("glfusion", GLF), ("spilf", SPILF), ("nlconvlstm", NL)]
# SPiLF's step with its discriminator in use (Table 1's Arabica weights with an adversarial term), stage 2.
SPILF_TRAIN = {"spilf": {"variant": "arabica", "weights": {"l1": 1, "lpips": 0, "adv": 5e-3, "struct": 5e-3},
                         "stage1_steps": 0}}

INFER_MAX_ABS, INFER_RMS_OF_RESIDUAL = 4e-3, 0.02
LOSS_REL, GRAD_COSINE = 0.01, 0.99


# ------------------------------------------------------------------ detection from the flags


@pytest.mark.parametrize("text,flags", [(SAPPHIRE_RAPIDS, ["amx_bf16", "avx512_bf16"]),
                                        (COOPER_LAKE, ["avx512_bf16"]), (SKYLAKE, []), (EPYC_AVX2, []),
                                        (GRAVITON, [])], ids=["spr", "cooper-lake", "skylake", "epyc", "graviton"])
def test_native_bf16_is_read_from_the_flags(text, flags):
    info = cpu_bf16(text)
    assert info["flags"] == flags and info["native"] == bool(flags) and info["source"] == "given cpuinfo text"
    path = resolve("cpu", "auto", "auto", cpuinfo=text)
    assert (path.precision, path.channels_last) == (("bf16", True) if flags else ("fp32", False))
    assert resolve("cpu", "auto", "auto", cpuinfo=text, inference=True).channels_last
    assert path.cpu_bf16 == (f"native ({', '.join(flags)})" if flags else "not native")
    assert ("bf16 autocast" in path.reason) == bool(flags)


def test_flags_parsing_reads_the_first_processor_and_only_whole_words():
    two = EPYC_AVX2 + "\nprocessor\t: 1\nflags\t\t: avx512_bf16\n"
    assert parse_cpu_flags(two) == frozenset("fpu sse sse2 avx avx2 fma bmi2".split())
    assert native_bf16_flags(["avx512_bf16x", "amx_bf16_", "avx512bw"]) == []
    assert "bf16" in parse_cpu_flags(GRAVITON)  # Arm's flag is read, and not taken for x86's native bf16 flags
    assert parse_cpu_flags("") == frozenset()


def test_this_machine_is_read_not_assumed():
    """The decision for this machine comes from its own /proc/cpuinfo (or torch's CPUID probes)."""
    info = cpu_bf16()
    try:
        with open(cpu_path.CPUINFO) as fh:
            text = fh.read()
    except OSError:
        text = ""
    if parse_cpu_flags(text):
        assert info["source"] == cpu_path.CPUINFO
        assert info["flags"] == native_bf16_flags(parse_cpu_flags(text))
        if getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)():
            assert "avx512_bf16" in parse_cpu_flags(text)  # torch's CPUID probe agrees with the kernel's flags
    assert resolve("cpu").bf16 == info["native"]
    assert info["capability"] == torch.backends.cpu.get_cpu_capability()


@pytest.mark.parametrize("amp,cl,native,expect", [
    (False, False, True, ("fp32", False)), (True, True, False, ("bf16", True)),
    (True, "auto", False, ("bf16", True)), ("auto", True, False, ("fp32", True)),
    ("auto", False, True, ("bf16", False)), ("auto", "auto", True, ("bf16", True)),
])
def test_each_setting_on_a_cpu(amp, cl, native, expect):
    path = resolve("cpu", amp, cl, cpuinfo=SAPPHIRE_RAPIDS if native else EPYC_AVX2)
    assert (path.precision, path.channels_last) == expect
    assert path.record() == {"device": "cpu", "precision": expect[0], "channels_last": expect[1],
                             "reason": path.reason, "cpu_bf16": path.cpu_bf16, "allocator": cpu_path.allocator()}
    infer = resolve("cpu", amp, cl, cpuinfo=SAPPHIRE_RAPIDS if native else EPYC_AVX2, inference=True)
    # inference: the same precision; channels_last also in fp32 when auto (measured faster on an AVX2 CPU)
    assert (infer.precision, infer.channels_last) == (expect[0], expect[1] or cl == "auto")


@pytest.mark.parametrize("cpuinfo,expect", [
    (EPYC_AVX2, {"glfusion": ("fp32", True), "spilf-arabica": ("fp32", True), "spilf-perceptual": ("fp32", True),
                 "nlconvlstm": ("fp32", False)}),
    (SAPPHIRE_RAPIDS, {m: ("bf16", True) for m in ("glfusion", "spilf-arabica", "spilf-perceptual", "nlconvlstm")}),
])
def test_the_demos_networks_train_in_the_layout_measured_faster_for_them(cpuinfo, expect):
    """params.yaml: GL-Fusion's and SPiLF's training in channels_last in fp32 too (their jobs 6 % / 5 % faster on an
    AVX2 EPYC, docs/timings.md), NL-ConvLSTM's NCHW (0.90x with it); with native bf16 all of them channels_last."""
    from inloop.params import load_params, model_spec
    from inloop.training.run import train_config
    params = load_params(str(REPO / "params.yaml"))
    for name, want in expect.items():
        cfg = train_config(model_spec(params, name)["train"])
        path = resolve("cpu", cfg.amp_bf16, cfg.channels_last, cpuinfo=cpuinfo)
        assert (name, path.precision, path.channels_last) == (name, *want)


def test_cuda_takes_bf16_and_channels_last_unless_false():
    h100 = (9, 0)
    assert (resolve("cuda", "auto", "auto", cuda_capability=h100).precision,
            resolve("cuda", True, "auto", cuda_capability=h100).channels_last) == ("bf16", True)
    off = resolve("cuda:1", False, False, cuda_capability=h100)
    assert (off.precision, off.channels_last, off.cpu_bf16) == ("fp32", False, "native (compute capability 9.0)")
    if not torch.cuda.is_available():  # asked for CUDA where there is none: one line, not torch's assertion
        with pytest.raises(InloopError, match=r"cuda: no CUDA device here .*set train.device to cpu or auto"):
            resolve("cuda", "auto", "auto", keys=("train.amp_bf16", "train.channels_last"))


def test_a_bad_setting_names_its_key():
    with pytest.raises(InloopError, match=r"evaluate\.amp_bf16='yes': expected true, false or auto"):
        resolve("cpu", "yes", "auto", keys=("evaluate.amp_bf16", "evaluate.channels_last"))


# ------------------------------------------------------------------ bf16 against fp32 on the same batch


def _batch(net, n: int = 4, hw: int = 32):
    g = torch.Generator().manual_seed(1)
    y = torch.rand(n, 1, hw, hw, generator=g)
    t = int(getattr(net, "frames", 1))
    noise = 0.03 * torch.randn(n, t, 1, hw, hw, generator=g)
    x = (y[:, None] + noise).clamp(0, 1) if t > 1 else (y + noise[:, 0]).clamp(0, 1)
    return x, y


@pytest.mark.parametrize("arch,kwargs", NETWORKS, ids=[a for a, _ in NETWORKS])
def test_bf16_inference_is_within_tolerance_of_fp32(arch, kwargs):
    torch.manual_seed(0)
    net = build_model(arch, **kwargs).eval()
    x, _ = _batch(net)
    outs = {}
    for amp in (False, True):
        path = resolve("cpu", amp, False)  # true: bf16 autocast on any CPU
        with torch.no_grad(), path.autocast()():
            outs[path.precision] = net(x)
    assert outs["fp32"].dtype == outs["bf16"].dtype == torch.float32  # the residual sum stays in fp32
    diff = outs["bf16"] - outs["fp32"]
    centre = x[:, x.shape[1] // 2] if x.dim() == 5 else x
    residual = outs["fp32"] - centre
    assert diff.abs().max() <= INFER_MAX_ABS
    assert diff.pow(2).mean().sqrt() <= INFER_RMS_OF_RESIDUAL * residual.pow(2).mean().sqrt()
    assert diff.abs().max() > 0  # bf16 did run


@pytest.mark.parametrize("arch,kwargs", NETWORKS, ids=[a for a, _ in NETWORKS])
def test_bf16_training_step_is_within_tolerance_of_fp32(arch, kwargs):
    from inloop.training.run import make_task
    from inloop.training.trainer import TrainConfig

    torch.manual_seed(0)
    net = build_model(arch, **kwargs)
    batch = _batch(net)
    losses, grads = {}, {}
    for amp in (False, True):
        path = resolve("cpu", amp, False)
        model = copy.deepcopy(net)
        torch.manual_seed(5)  # the same discriminator for SPiLF
        task = make_task(arch, model, TrainConfig(), SPILF_TRAIN if arch == "spilf" else {}, {})
        losses[path.precision] = {k: float(v) for k, v in task.train_step(batch, path.autocast()).items()}
        grads[path.precision] = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    if arch == "spilf":
        assert {"l1", "struct", "g_adv", "d_adv", "total"} <= set(losses["fp32"])
    for k, v in losses["fp32"].items():
        assert losses["bf16"][k] == pytest.approx(v, rel=LOSS_REL), k
    assert torch.nn.functional.cosine_similarity(grads["fp32"], grads["bf16"], dim=0) >= GRAD_COSINE
    assert not torch.equal(grads["fp32"], grads["bf16"])  # bf16 did run


# ------------------------------------------------------------------ the choice, applied and recorded


def test_evaluation_enhances_in_the_chosen_path_and_records_it(tmp_path):
    from inloop.evaluation.enhance import enhance_file
    from inloop.yuv import Frame, YuvFormat, YuvReader, write_yuv

    fmt = YuvFormat(64, 48, 8, 30)
    rng = np.random.default_rng(0)
    frames = [Frame(*(np.clip(rng.normal(128, 30, s), 0, 255).astype(np.uint8) for s in ((48, 64), (24, 32),
                                                                                              (24, 32))))
              for _ in range(2)]
    src = tmp_path / "in.yuv"
    write_yuv(src, frames, fmt)
    torch.manual_seed(0)
    net = build_model("glfusion", **GLF)
    out = {}
    for amp, cl in ((False, False), (True, True), ("auto", "auto")):
        dst = tmp_path / f"out-{amp}-{cl}.yuv"
        timing = enhance_file(copy.deepcopy(net), src, dst, fmt, multiple=net.pad_multiple, amp_bf16=amp,
                              channels_last=cl)
        assert timing["compute"] == resolve("cpu", amp, cl, keys=("evaluate.amp_bf16", "evaluate.channels_last"),
                                            inference=True).record()
        with YuvReader(dst, fmt) as r:
            out[(amp, cl)] = np.stack([f.y for f in r]).astype(int)
    assert np.abs(out[(True, True)] - out[(False, False)]).max() <= 1  # at most one code value
    assert timing["compute"]["precision"] == ("bf16" if cpu_bf16()["native"] else "fp32")
    assert timing["compute"]["channels_last"]  # auto: channels_last for inference on every device


def test_training_records_the_path_in_mlflow_and_the_model_report(train_workdir, tmp_path, monkeypatch):
    import yaml
    from mlflow.tracking import MlflowClient

    from inloop.training.run import train_model

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    params = yaml.safe_load((train_workdir / "params.yaml").read_text())
    for amp in ("auto", True):
        train = {**params["train"], "steps": 4, "checkpoint_every": 4, "val_every": 4, "log_every": 2,
                 "amp_bf16": amp, "checkpoint_dir": str(tmp_path / f"ckpt-{amp}")}
        out = tmp_path / f"model-{amp}.pt"
        report = train_model(train_workdir / "store", out, "glfusion", GLF, train,
                             {"codec": "x265", "config": "ai", "qp": 37}, experiment=f"cpu-path-{amp}")
        expected = resolve("cpu", amp, "auto", keys=("train.amp_bf16", "train.channels_last")).record()
        assert report["compute"] == expected == json.loads(out.with_suffix(".json").read_text())["compute"]
        assert report["result"]["steps"] == 4 and np.isfinite(report["result"]["val_psnr_output"])
        run = MlflowClient().get_run(report["mlflow_run_id"])
        assert {k: run.data.params[f"compute.{k}"] for k in expected} == {k: str(v) for k, v in expected.items()}
    assert expected["precision"] == "bf16"  # true: bf16 on this CPU too, native or not


# Allocates and frees a 64 MiB array 20 times, optionally after tune_allocator; prints the minor page faults.
FAULTS = """
import resource, sys
import numpy as np
from inloop.models.cpu_path import allocator, tune_allocator
if sys.argv[1] == "tuned":
    tune_allocator({})
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    a = np.ones(8 << 20)
    a.sum()
    del a
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, allocator())
"""


def test_the_tuned_allocator_reuses_large_blocks_instead_of_faulting_them_in_again():
    import subprocess
    import sys

    out = {}
    for mode in ("default", "tuned"):
        r = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True,
                           env={k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")})
        faults, _, what = r.stdout.strip().partition(" ")
        out[mode] = (int(faults), what)
    assert out["default"][1].startswith("glibc defaults") and out["tuned"][1].startswith("glibc mallopt mmap_")
    # defaults: every block is a fresh mmap whose pages fault in again (fewer faults with transparent huge
    # pages, still one set per block); tuned: the first block's pages stay in the heap and are reused
    # (measured here: 10881 against 505)
    assert out["tuned"][0] * 5 < out["default"][0], out


def test_the_users_allocator_settings_are_left_alone():
    before = cpu_path.allocator()
    try:
        assert cpu_path.tune_allocator({"MALLOC_ARENA_MAX": "2"}) == "as set by MALLOC_ARENA_MAX"
        assert cpu_path.tune_allocator({"LD_PRELOAD": "/usr/lib/libjemalloc.so"}) == "as set by LD_PRELOAD"
        assert cpu_path.tune_allocator({"INLOOP_MALLOC": "default"}) == "glibc defaults (INLOOP_MALLOC=default)"
        assert resolve("cpu", False, False).record()["allocator"] == "glibc defaults (INLOOP_MALLOC=default)"
    finally:
        cpu_path._allocator = before


def test_bf16_on_cuda_only_where_the_gpu_runs_it_natively():
    """Issue #28 item 10: bf16 was assumed on any CUDA device; a V100 (7.0) or T4 (7.5) node emulated it or failed.
    `auto` now means bf16 from compute capability 8.0 (A100, H100), fp32 below; `true` on an older GPU is refused
    in one line naming the key."""
    from inloop.errors import InloopError
    from inloop.models.cpu_path import resolve

    keys = ("train.amp_bf16", "train.channels_last")
    assert resolve("cuda", "auto", "auto", keys=keys, cuda_capability=(9, 0)).precision == "bf16"
    assert resolve("cuda", "auto", "auto", keys=keys, cuda_capability=(8, 0)).precision == "bf16"
    v100 = resolve("cuda", "auto", "auto", keys=keys, cuda_capability=(7, 0))
    assert v100.precision == "fp32" and "not native (compute capability 7.0)" in v100.reason
    assert resolve("cuda", False, "auto", keys=keys, cuda_capability=(9, 0)).precision == "fp32"
    with pytest.raises(InloopError, match=r"train.amp_bf16=true but cuda has no native bf16 \(compute capability 7.5"):
        resolve("cuda", True, "auto", keys=keys, cuda_capability=(7, 5))
