"""The GPU check (issue #28): what the first GPU-cluster run would meet, in a few minutes on one GPU node.

    python benchmarks/gpu_check.py [--out results/bench/gpu-check] [--steps 20] [--no-bench]

For each paper network (GL-Fusion, SPiLF, NL-ConvLSTM at the papers' widths, on a synthetic patch store):

1. the environment: torch and its CUDA build, the device, its compute capability and the compute path training
   takes there (bf16 only where the GPU runs it natively: ``inloop.models.cpu_path.resolve``);
2. a short training on the device (``inloop.training.run.train_model``, the pipeline's own entry) with the
   paper config's settings (bf16 where native, cuDNN autotuning), its step time, and the host syncs per step
   that CUDA itself reports (``torch.cuda.set_sync_debug_mode``; items 7-8);
3. a resume: the same run stopped at its checkpoint and resumed ends where the uninterrupted one did (the
   largest weight difference is printed: a GPU run is close, not bit-exact), with Adam's step counters left on
   the host after the resume (item 7);
4. the inference benchmark (``inloop bench --device cuda``): GL-Fusion's and NL-ConvLSTM's whole-frame time per
   frame at 416x240 and 1920x1080, with MFU (``--no-bench`` skips it).

Results: ``<out>/gpu-check.json`` and a summary on stdout. Exit status: 0 every check passed, 1 a check failed,
3 no CUDA device is visible (nothing was run: the mode CI runs, tests/test_gpu_check.py). ``--device cpu``
rehearses the same steps on the CPU with small networks (the CI test runs it too), so the script's own logic is
tested where no GPU is.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

NO_GPU = 3
NETWORKS = ("glfusion", "spilf", "nlconvlstm")
SMALL = {"glfusion": {"channels": 8}, "spilf": {"channels": 8, "grad_blocks": 1, "pixel_units": 1},
         "nlconvlstm": {"channels": 8, "enc_layers": 2, "dec_layers": 2}}


def synthetic_store(folder: Path, frames: int, patch: int) -> Path:
    """A patch store of smooth random texture (original) and its blocky, noisy copy (decoded)."""
    import numpy as np

    from inloop.training.patches import build_patch_store, sources_from_paths
    from inloop.yuv import YuvFormat

    rng = np.random.default_rng(0)
    fmt = YuvFormat(256, 256)
    n = max(frames + 2, 8)
    coarse = rng.integers(0, 256, (n, 32, 32)).astype(np.float64)
    y = np.kron(coarse, np.ones((8, 8)))  # 256x256 smooth-ish luma
    orig = np.concatenate([y.reshape(n, -1), np.full((n, fmt.frame_bytes - 256 * 256), 128.0)], axis=1)
    dec = np.clip(orig + rng.normal(0, 6, orig.shape), 0, 255)
    folder.mkdir(parents=True, exist_ok=True)
    o, d = folder / "src_256x256_30fps_8bit_420.yuv", folder / "dec" / "src_256x256_30fps_8bit_420.yuv"
    d.parent.mkdir(exist_ok=True)
    o.write_bytes(orig.astype(np.uint8).tobytes())
    d.write_bytes(dec.astype(np.uint8).tobytes())
    store = folder / f"store-t{frames}"
    build_patch_store(sources_from_paths([str(o)], [str(d)]), store, patch_size=patch, patches_per_frame=16,
                      val_fraction=0, seed=0, frames=frames)
    return store


def _train(name: str, spec: dict, store: Path, folder: Path, steps: int, device: str, count_syncs: bool) -> dict:
    """One training through the pipeline's entry point; the seconds per step and CUDA's sync warnings."""
    import torch

    from inloop.training.run import train_model

    params = {**spec["train"], "steps": steps, "device": device, "checkpoint_dir": str(folder / "ckpt"),
              "checkpoint_every": max(1, steps // 2), "val_every": 10**9, "log_every": max(1, steps // 2)}
    describe = {"codec": "check", "config": "ai", "qp": 37}
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if count_syncs:
            torch.cuda.set_sync_debug_mode("warn")
        try:
            report = train_model(store, folder / f"{name}.pt", spec["arch"], spec["kwargs"], params, describe,
                                 track=False, name=name)
        finally:
            if count_syncs:
                torch.cuda.set_sync_debug_mode(0)
    syncs = sum("synchronizing" in str(w.message) for w in caught)
    result = report["result"]
    return {"seconds": time.perf_counter() - t0, "steps_this_run": result["steps_this_run"],
            "seconds_per_step": result["time_s"] / max(1, result["steps_this_run"]),
            "host_syncs": syncs if count_syncs else None, "compute": report.get("compute"),
            "model": str(folder / f"{name}.pt")}


def check_network(name: str, params: dict, root: Path, steps: int, device: str, small: bool) -> dict:
    import torch

    from inloop.models.io import load_trained
    from inloop.params import model_spec
    from inloop.training.trainer import Trainer  # noqa: F401  (the checkpoint's format is the Trainer's)

    spec = model_spec(params, name)
    if small:
        spec = {**spec, "kwargs": {**spec["kwargs"], **SMALL[name]}}
    frames = int(spec["kwargs"].get("frames", 1))
    patch = 40 if small else int(spec["train"].get("patch_size") or 64)
    spec["train"] = {**spec["train"], "batch_size": 4 if small else int(spec["train"]["batch_size"]),
                     "patch_size": patch}
    if spec["arch"] == "spilf":
        spec["train"]["spilf"] = {**(spec["train"].get("spilf") or {}), "stage1_steps": max(1, steps // 4)}
    store = synthetic_store(root / "data", frames, patch)
    cuda = device.startswith("cuda")
    whole = _train(name, spec, store, root / f"{name}-whole", steps, device, cuda)
    _train(name, spec, store, root / f"{name}-resumed", steps // 2, device, False)
    resumed = _train(name, spec, store, root / f"{name}-resumed", steps, device, cuda)
    a, _ = load_trained(whole["model"])
    b, _ = load_trained(resumed["model"])
    diff = max(float((p - q).abs().max()) for p, q in zip(a.state_dict().values(), b.state_dict().values())
               if p.is_floating_point())
    ckpt = next((root / f"{name}-resumed" / "ckpt").rglob("*.ckpt"))
    step_devices = sorted({str(s["step"].device) for o in torch.load(ckpt, map_location="cpu", weights_only=True)
                           ["optimizers"].values() for s in o["state"].values() if "step" in s})
    ok = resumed["steps_this_run"] == steps - steps // 2 and (diff == 0.0 if not cuda else diff < 1e-2)
    return {"network": name, "kwargs": spec["kwargs"], "batch": spec["train"]["batch_size"], "patch": patch,
            "train": whole, "resumed": resumed, "resume_max_weight_difference": diff,
            "adam_step_devices_in_checkpoint": step_devices, "ok": ok}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/bench/gpu-check")
    ap.add_argument("--steps", type=int, default=20, help="training steps per network (resumed at half)")
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu: the same steps, small networks")
    ap.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=NETWORKS)
    ap.add_argument("--no-bench", action="store_true", help="skip the inference benchmark")
    args = ap.parse_args(argv)

    import torch

    from inloop.models.cpu_path import resolve
    from inloop.params import load_params

    env = {"torch": torch.__version__, "cuda_build": torch.version.cuda, "device": args.device}
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        why = ("this torch is a CPU build (torch.version.cuda is None): install the CUDA build (README, 'GPU nodes')"
               if torch.version.cuda is None else "no CUDA device is visible (CUDA_VISIBLE_DEVICES, the node's driver)")
        print(f"gpu_check: no GPU: {why}; torch {torch.__version__}. Nothing was run (exit {NO_GPU}).")
        return NO_GPU
    if cuda:
        dev = torch.device(args.device)
        env.update(name=torch.cuda.get_device_name(dev), capability=list(torch.cuda.get_device_capability(dev)))
    path = resolve(args.device, "auto", "auto", keys=("train.amp_bf16", "train.channels_last"))
    env["compute_path"] = path.reason
    print(f"gpu_check: torch {env['torch']} (CUDA build {env['cuda_build']}), {env.get('name', args.device)}: "
          f"{path.reason}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    params = load_params()
    results = {"environment": env, "networks": [], "bench": None}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        for name in args.networks:
            r = check_network(name, params, Path(tmp) / name, args.steps, args.device, small=not cuda)
            results["networks"].append(r)
            syncs = r["train"]["host_syncs"]
            print(f"  {name}: {r['train']['seconds_per_step'] * 1e3:.1f} ms/step at batch {r['batch']} of "
                  f"{r['patch']}x{r['patch']}"
                  + (f", {syncs / args.steps:.2f} host syncs per step" if syncs is not None else "")
                  + f"; resumed at step {args.steps // 2}: largest weight difference {r['resume_max_weight_difference']:.2e}"
                  + f", Adam's step counters on {', '.join(r['adam_step_devices_in_checkpoint'])}"
                  + ("" if r["ok"] else "  <- FAILED"))
    if cuda and not args.no_bench:
        bench = out / "bench.json"
        cmd = [sys.executable, "-m", "inloop.cli", "bench", "--device", args.device, "--models", "glfusion",
               "nlconvlstm", "--sizes", "416x240", "1920x1080", "--repeats", "3", "--tile", "0", "--train",
               "--out", str(bench)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        results["bench"] = {"command": " ".join(cmd[1:]), "rc": proc.returncode, "file": str(bench),
                            "tail": (proc.stdout + proc.stderr)[-3000:]}
        print(f"  bench: rc {proc.returncode}, {bench}")
    (out / "gpu-check.json").write_text(json.dumps(results, indent=2, default=str))
    failed = [r["network"] for r in results["networks"] if not r["ok"]]
    if results["bench"] and results["bench"]["rc"] != 0:
        failed.append("bench")
    print(f"gpu_check: {'FAILED: ' + ', '.join(failed) if failed else 'every check passed'}; {out / 'gpu-check.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
