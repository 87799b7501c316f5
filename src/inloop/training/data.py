"""Batches from a patch store, augmented on the device.

A batch is one fancy-indexed read of the memory-mapped store (sorted indices,
so the read is sequential-ish), one host-to-device copy, and the eight
dihedral transforms (flips and transposes, GL-Fusion IV.B's patches are
square) applied per sample with masks on the device: no Python loop over
samples, no worker processes needed.
"""

from __future__ import annotations

import numpy as np
import torch


def to_unit(x: torch.Tensor, bitdepth: int) -> torch.Tensor:
    """Integer samples -> float in [0, 1]."""
    return x.float() / float((1 << bitdepth) - 1)


def dihedral(x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Apply one of 8 flips/transposes per sample; ``codes`` in 0..7 of shape (N,)."""
    m = codes.view(-1, *([1] * (x.dim() - 1)))
    x = torch.where((m & 1).bool(), x.flip(-1), x)
    x = torch.where((m & 2).bool(), x.flip(-2), x)
    if x.shape[-1] == x.shape[-2]:
        x = torch.where((m & 4).bool(), x.transpose(-1, -2), x)
    return x


def split_sample(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of store rows (B, T + 1, C, P, P) -> ``(input, target)``: the input is
    (B, C, P, P) for single-frame stores (T = 1) and the clip (B, T, C, P, P) otherwise."""
    frames = x.shape[1] - 1
    inp = x[:, 0] if frames == 1 else x[:, :frames]
    return inp, x[:, frames]


class PatchSampler:
    """Random batches ``(input, target)`` in [0, 1] on ``device``: (B, 1, P, P) pairs, or
    (B, T, 1, P, P) clips and their (B, 1, P, P) targets from a T-frame store.

    The generator state is part of the trainer's checkpoint, so a resumed run
    draws the same batches as an uninterrupted one. Under DDP each rank uses
    its own stream (``seed + rank``).
    """

    def __init__(self, array: np.ndarray, batch_size: int, bitdepth: int, device: torch.device | str = "cpu",
                 seed: int = 0, augment: bool = True, rank: int = 0):
        if len(array) == 0:
            raise ValueError("empty patch array")
        self.array = array
        self.batch_size = batch_size
        self.bitdepth = bitdepth
        self.device = torch.device(device)
        self.augment = augment
        self.rng = np.random.default_rng(seed + rank)

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def load_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self.array)
        idx = np.sort(self.rng.choice(n, self.batch_size, replace=n < self.batch_size))
        codes = torch.from_numpy(self.rng.integers(0, 8, self.batch_size))
        raw = torch.from_numpy(np.ascontiguousarray(self.array[idx]).astype(np.int32, copy=False))
        # Both copies asynchronous (pinned on CUDA): the augmentation codes were a blocking copy every step
        # (issue #28 item 8).
        pin = self.device.type == "cuda"
        raw = (raw.pin_memory() if pin else raw).to(self.device, non_blocking=True)
        x = to_unit(raw, self.bitdepth)
        if self.augment:
            x = dihedral(x, (codes.pin_memory() if pin else codes).to(self.device, non_blocking=True))
        return split_sample(x)


def iterate_pairs(array: np.ndarray, batch_size: int, bitdepth: int, device: torch.device | str = "cpu"):
    """Every pair of a (validation) array once, in order, in batches."""
    device = torch.device(device)
    for i in range(0, len(array), batch_size):
        raw = torch.from_numpy(np.ascontiguousarray(array[i : i + batch_size]).astype(np.int32, copy=False))
        yield split_sample(to_unit(raw.to(device), bitdepth))
