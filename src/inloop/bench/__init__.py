"""Benchmark harness (issue #8): speed, memory and cost of every network and of the codec stage.

What is measured, each by one function returning plain dicts (JSON rows):

* :func:`bench_inference` -- ms per filtered frame of a model at given frame sizes, whole frame or
  in overlapping tiles through :func:`inloop.evaluation.enhance.apply_model` (the evaluate stage's
  own path), with the peak extra memory of the forward. A multi-frame network (NL-ConvLSTM,
  ``model.frames`` = T) gets a T-frame clip per output frame.
* :func:`bench_training` -- training step time and samples/s at a batch and patch size through
  the project's own task (:func:`inloop.training.run.make_task`: SPiLF's GAN task, else
  :class:`~inloop.training.trainer.RestorationTask`), model TFLOP/s and MFU against a given peak,
  optionally a ``torch.profiler`` trace (and, on CUDA, the fraction of the step the GPU is busy).
* :func:`bench_onnx` -- ms per frame of a network's ONNX export in onnxruntime next to the same
  network in PyTorch (same input, device, threads, float32), and the largest output difference.
* :func:`model_costs` -- parameters, MACs and FLOPs (= 2 x MACs) per pixel and per frame.
* :func:`measure_ceiling` -- the machine's own dense GEMM and convolution TFLOP/s in fp32 and bf16
  (issue #20), measured in the same run; every network row gets its fraction of it.
* :func:`compare_paths` -- each network in fp32 / bf16 x NCHW / channels_last (and compiled) side by
  side, with the speed-up of each change and the path ``auto`` chooses on this machine.
* :func:`bench_codec` -- x265 encodes per minute (one encode at a time, one thread each) on a real clip.
* :func:`bench_encode_stage` -- wall time of ``snakemake --cores N encodes`` in a clone of the
  repository for N = 1, 2, 4, 8 and the parallel efficiency T1 / (N x TN).

Modules: :mod:`.machine` (device, machine header, memory probes), :mod:`.costs` (parameters,
MACs, memory plan), :mod:`.networks` (inference and training), :mod:`.ceiling` (the machine's
ceiling), :mod:`.paths` (compute paths), :mod:`.onnx` (onnxruntime next to PyTorch), :mod:`.codec`
(codec and encode stage), :mod:`.markdown` (report and summary), :mod:`.cli` (``inloop bench``).
Timing and skip rules: :mod:`.networks`; how memory is measured: :mod:`.machine`.
"""

from .ceiling import attach_fractions, measure_ceiling
from .cli import MODELS_DEFAULT, QUICK_SIZES, cmd_bench, command_line, register
from .codec import bench_codec, bench_encode_stage, default_clip
from .costs import (PROBE, SIZES, count_macs, frame_macs, is_clip, memory_estimate, model_costs, parse_size,
                    probe_macs_per_pixel, size_name)
from .machine import (GPU_PEAKS, REPO, PeakMemory, autocast_factory, free_memory_bytes, gpu_peak_tflops,
                      machine_info, resolve_device, sync)
from .markdown import PAPER_FIGURES, markdown_report, paper_ms, summary_text, write_markdown
from .networks import PAPER_TRAIN, TARGETS, bench_inference, bench_training, model_entries, profile_calls
from .onnx import bench_onnx, export_memory_estimate
from .paths import compare_paths

__all__ = [
    "GPU_PEAKS", "MODELS_DEFAULT", "PAPER_FIGURES", "PAPER_TRAIN", "PROBE", "QUICK_SIZES", "REPO", "SIZES",
    "TARGETS", "PeakMemory", "attach_fractions", "autocast_factory", "bench_codec", "bench_encode_stage",
    "bench_inference", "bench_onnx", "bench_training", "cmd_bench", "command_line", "compare_paths", "count_macs",
    "default_clip", "export_memory_estimate", "frame_macs", "free_memory_bytes", "gpu_peak_tflops", "is_clip",
    "machine_info", "markdown_report", "measure_ceiling", "memory_estimate", "model_costs", "model_entries",
    "paper_ms", "parse_size", "probe_macs_per_pixel", "profile_calls", "register", "resolve_device", "size_name",
    "summary_text", "sync", "write_markdown",
]
