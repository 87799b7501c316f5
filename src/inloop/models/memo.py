"""Results an inference computes again and again from the same tensors, kept once (evaluation only).

An evaluation measures several decodes of one clip against the same original frames (LPIPS computes the
original's features for each), and a multi-frame network slides its window one frame at a time (NL-ConvLSTM's
non-local weights between two neighbouring frames are computed in three windows). :class:`ContentMemory` keeps
such results under a key made of the inputs' shapes, dtypes and contents (a BLAKE2b digest of their bytes) and
of the settings that shaped them, so a hit is the same computation on the same values and returns what it
would have computed, bit for bit. It holds at most ``max_bytes`` of results, least recently used out first;
a result larger than that is simply not kept (computed each time, as without the memory).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Callable, Hashable

import torch


def _nbytes(value) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    return 0


def content_key(tensors: tuple[torch.Tensor, ...], settings: Hashable = ()) -> tuple:
    """A key equal for two calls exactly when the tensors hold the same values in the same shapes and dtypes
    (up to a BLAKE2b collision) and the settings are equal."""
    digest = hashlib.blake2b(digest_size=32)
    layout = []
    for t in tensors:
        raw = t.detach().contiguous()
        layout.append((tuple(raw.shape), str(raw.dtype)))
        digest.update(raw.reshape(-1).view(torch.uint8).cpu().numpy())
    return (tuple(layout), settings, digest.hexdigest())


class ContentMemory:
    """A bounded, content-keyed memory of inference results (see the module docstring)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return sum(_nbytes(v) for v in self._entries.values())

    def get(self, tensors: tuple[torch.Tensor, ...], settings: Hashable, compute: Callable[[], object]):
        """``compute()``'s result for these inputs and settings: kept from an earlier call, or computed now."""
        key = content_key(tensors, settings)
        if key in self._entries:
            self.hits += 1
            self._entries.move_to_end(key)
            return self._entries[key]
        self.misses += 1
        value = compute()
        self._entries[key] = value
        while self._entries and self.nbytes > self.max_bytes:
            self._entries.popitem(last=False)
        return value
