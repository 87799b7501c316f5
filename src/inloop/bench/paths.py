"""Compute paths side by side (issue #20): each network's inference and training step in fp32 and
bf16 autocast, NCHW and channels_last, and the chosen path with ``torch.compile``, in one run,
with the before/after ratio of each change.

The chosen paths are what evaluation (inference) and training take on this device with ``auto``
(:func:`inloop.models.cpu_path.resolve`). Every case goes through :func:`.networks.bench_inference`
(whole frames, batch 1, one frame size) or :func:`.networks.bench_training` (the project's own
task), with their time budgets: a case estimated above the budget (bf16 on a CPU without native
bf16 runs in slow generic code) is skipped with the reason, and its ratios are left empty.

``speedup`` of a change = time before / time after (> 1: the change makes it faster). For
``torch.compile`` the warm-up time (compilation included) is kept, and ``break_even_calls``: the
calls after which compiling has paid for itself ((compiled warm-up - the same calls eager) / time
saved per call).
"""

from __future__ import annotations

from typing import Any

from ..lazy import lazy_import

torch = lazy_import("torch")

# (precision, channels_last), the first one the baseline.
VARIANTS = (("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True))
CHANGES = (  # (change, before, after) over (precision, channels_last[, compile])
    ("bf16 autocast (NCHW)", ("fp32", False), ("bf16", False)),
    ("channels_last in fp32", ("fp32", False), ("fp32", True)),
    ("channels_last in bf16", ("bf16", False), ("bf16", True)),
    ("bf16 + channels_last", ("fp32", False), ("bf16", True)),
)
KEEP = ("status", "reason", "ms_per_frame", "ms_median", "step_ms", "tflops", "repeats", "steps", "warmup", "warmup_s",
        "first_step_s", "samples_per_s")


def _label(precision: str, channels_last: bool, compile: bool = False) -> str:
    return f"{precision} {'channels_last' if channels_last else 'NCHW'}{' + torch.compile' if compile else ''}"


def _row(r: dict, precision: str, channels_last: bool, compile: bool, chosen: tuple) -> dict:
    out = {"variant": _label(precision, channels_last, compile), "precision": precision,
           "channels_last": channels_last, "compile": compile,
           "chosen": (precision, channels_last) == chosen and not compile}
    out.update({k: r[k] for k in KEEP if k in r})
    return out


def _ms(r: dict | None) -> float | None:
    if not r or r.get("status") != "ok":
        return None
    return r.get("ms_per_frame", r.get("step_ms"))


def changes(rows: list[dict]) -> list[dict]:
    """The before/after ratio of each change (:data:`CHANGES`, and compile on the chosen path)."""
    by = {(r["precision"], r["channels_last"], r["compile"]): r for r in rows}
    out = []
    chosen = next((r for r in rows if r["chosen"]), None)
    pairs = [(name, by.get((*b, False)), by.get((*a, False))) for name, b, a in CHANGES]
    if chosen is not None:
        compiled = by.get((chosen["precision"], chosen["channels_last"], True))
        pairs.append(("torch.compile (chosen path)", chosen, compiled))
    for name, before, after in pairs:
        if before is None or after is None:
            continue
        b, a = _ms(before), _ms(after)
        row: dict[str, Any] = {"change": name, "before": before["variant"], "after": after["variant"],
                               "before_ms": b, "after_ms": a, "speedup": (b / a) if a and b else None}
        if after["compile"] and a and b and after.get("warmup_s") is not None:
            extra = after["warmup_s"] - after.get("warmup", 0) * b / 1e3  # what compiling added to the warm-up
            row["compile_warmup_s"] = after["warmup_s"]
            row["break_even_calls"] = (extra / ((b - a) / 1e3)) if b > a else None
        out.append(row)
    return out


def compare_paths(entry: dict, size: str, device, repeats: int = 3, warmup: int = 1,
                  max_seconds: float | None = 60.0, train: dict | None = None, compile: bool = True,
                  params: dict | None = None) -> dict:
    """Inference of ``entry`` (a :func:`.networks.model_entries` item) at ``size`` and, with
    ``train`` (``{"batch", "patch", "steps", "warmup", "train_params"}``), its training step, under
    every :data:`VARIANTS` path (inference also the chosen path compiled); see the module docstring."""
    from ..models.cpu_path import resolve
    from .networks import bench_inference, bench_training

    device = torch.device(device)
    paths = {kind: resolve(device, "auto", "auto", inference=kind == "inference") for kind in ("inference", "training")}
    out: dict[str, Any] = {"model": entry["name"], "arch": entry["arch"], "size": size, "device": str(device),
                           "chosen": {k: p.record() for k, p in paths.items()}, "inference": [], "training": []}
    chosen = (paths["inference"].precision, paths["inference"].channels_last)
    infer_cases = [(p, cl, False) for p, cl in VARIANTS] + ([(*chosen, True)] if compile else [])
    for precision, cl, comp in infer_cases:
        try:
            (r,) = bench_inference(entry["name"], entry["kwargs"], [size], device, None, amp=precision.replace(
                "fp32", "none"), channels_last=cl, compile=comp, repeats=repeats, warmup=warmup,
                max_seconds=max_seconds, arch=entry["arch"])
        except Exception as exc:  # noqa: BLE001 - a compiler missing or failing is a result here, not an error
            r = {"status": "skipped", "reason": f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
        out["inference"].append(_row(r, precision, cl, comp, chosen))
    if train:
        chosen = (paths["training"].precision, paths["training"].channels_last)
        for precision, cl in VARIANTS:
            r = bench_training(entry["name"], entry["kwargs"], train["batch"], train["patch"], train["steps"],
                               train.get("warmup", 1), device, precision.replace("fp32", "none"), cl,
                               train_params=train.get("train_params"), arch=entry["arch"],
                               max_seconds=(2 * max_seconds if max_seconds else None), params=params)
            out["training"].append({**_row(r, precision, cl, False, chosen), "batch": train["batch"],
                                    "patch": train["patch"]})
    out["inference_changes"] = changes(out["inference"])
    out["training_changes"] = changes(out["training"])
    return out
