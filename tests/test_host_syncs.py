"""Host syncs in the training step's hot path (issue #28 items 7-8), counted on the CPU.

On a GPU each of these stalls the host until the device catches up: reading a tensor into Python (``float``,
``.item()``, ``bool``), building a tensor from Python data inside the step (``torch.tensor``: a blocking host
copy), a host-to-device ``.to`` that is not ``non_blocking``. A :class:`~torch.overrides.TorchFunctionMode`
sees each call whatever the device, so the CPU counts them; the ``meta`` device stands in for a GPU where a
transfer is what is counted. What a GPU itself reports (``torch.cuda.set_sync_debug_mode``) is the GPU check's
(benchmarks/gpu_check.py).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from inloop.models import build_model
from inloop.training.data import PatchSampler

READS = {torch.Tensor.item, torch.Tensor.__float__, torch.Tensor.__int__, torch.Tensor.__bool__,
         torch.Tensor.tolist}


class SyncCounter(TorchFunctionMode):
    """Counts the calls that make a host wait for a device, by name. ``host`` holds tensors that stay on the host
    in a GPU run too (Adam's `step` counters, read with `.item()` by design: they are on the CPU unless a
    checkpoint put them on the GPU, item 7), whose reads are not syncs."""

    def __init__(self, host: set[int] = frozenset()):
        super().__init__()
        self.calls: list[str] = []
        self.host = host

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in READS and id(args[0]) in self.host:
            pass
        elif func in READS:
            self.calls.append(getattr(func, "__name__", str(func)))
        elif func is torch.tensor:
            self.calls.append("torch.tensor")
        elif func is torch.Tensor.to and isinstance(args[0], torch.Tensor) and args[0].device.type == "cpu":
            target = kwargs.get("device", args[1] if len(args) > 1 else None)
            if isinstance(target, (str, torch.device)) and torch.device(target).type != "cpu" \
                    and not kwargs.get("non_blocking", False):
                self.calls.append("blocking host-to-device .to")
        return func(*args, **kwargs)


def test_nlconvlstm_forward_reads_nothing_back_to_the_host():
    """`float(self.temperature)` in each warp: six host syncs per forward of a 7-frame clip on a GPU."""
    m = build_model("nlconvlstm", channels=8, pool=4, topk=2, enc_layers=2, dec_layers=2)
    clip = torch.rand(1, 7, 1, 16, 16)
    with torch.no_grad(), SyncCounter() as counter:
        m(clip)
    assert counter.calls == []
    # the temperature still comes from the model file: a loaded state refreshes it
    other = build_model("nlconvlstm", channels=8, pool=4, topk=2, enc_layers=2, dec_layers=2, temperature=0.5)
    other.load_state_dict(m.state_dict())
    with torch.no_grad():
        assert torch.equal(other(clip), m(clip))


def test_spilf_step_builds_no_tensor_from_python_data():
    """SPiLF's step logged its stage as `torch.tensor(float(stage), device=...)`: a blocking host copy per step."""
    from inloop.training.spilf import SPiLFTask

    torch.manual_seed(0)
    task = SPiLFTask(build_model("spilf", channels=8, grad_blocks=1, pixel_units=1, dru_layers=2, growth=4,
                                 reduction=2), {"variant": "arabica", "stage1_steps": 1, "plateau_window": 1000,
                                                "disc_channels": 8, "disc_layers": 2})
    x, y = torch.rand(2, 1, 24, 24), torch.rand(2, 1, 24, 24)
    for _ in range(2):  # stage 1, then a stage-2 step that creates the discriminator optimizer's state
        task.train_step((x, y), contextlib.nullcontext)
    steps = {id(s["step"]) for opt in task.optimizers().values() for s in opt.state.values()}
    with SyncCounter(host=steps) as counter:
        out = task.train_step((x, y), contextlib.nullcontext)  # stage 2: the GAN step
    assert out["stage"].item() == 2
    assert counter.calls == []


def test_a_batch_reaches_the_device_in_asynchronous_copies():
    """The augmentation codes were copied to the device with a blocking `.to` every step (the patches were
    pinned and non-blocking on CUDA, the codes not); `meta` stands in for the GPU."""
    rows = np.random.default_rng(0).integers(0, 256, (16, 2, 1, 8, 8), dtype=np.uint8)
    sampler = PatchSampler(rows, 4, 8, "meta", seed=1)
    with SyncCounter() as counter:
        x, y = sampler.next()
    assert x.device.type == "meta" and x.shape == (4, 1, 8, 8)
    assert counter.calls == []
