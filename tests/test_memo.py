"""ContentMemory: results kept under their inputs' contents, bounded, least recently used out first."""

import torch

from inloop.models.memo import ContentMemory, content_key


def test_keys_tell_apart_values_shapes_dtypes_and_settings():
    a = torch.zeros(4, dtype=torch.float32)
    assert content_key((a,)) == content_key((a.clone(),))  # equal values: equal keys, whatever the tensor
    assert content_key((a,)) != content_key((torch.zeros(2, dtype=torch.float64),))  # the same 16 zero bytes
    assert content_key((a,)) != content_key((a.view(2, 2),))
    assert content_key((a,)) != content_key((a,), "other settings")
    b = a.clone()
    b[3] = -0.0  # one bit
    assert content_key((a,)) != content_key((b,))
    strided = torch.arange(8.0)[::2]
    assert content_key((strided,)) == content_key((strided.contiguous(),))


def test_least_recently_used_goes_first_and_what_does_not_fit_is_not_kept():
    memory = ContentMemory(max_bytes=2 * 16)  # two results of four float32 each
    computed = []

    def get(i):
        return memory.get((torch.tensor([float(i)]),), "s", lambda: computed.append(i) or torch.full((4,), float(i)))

    for i in (1, 2, 1, 3, 1, 2):  # 3 pushes out 2 (1 was used since), then 2 pushes out 3
        assert torch.equal(get(i), torch.full((4,), float(i)))
    assert computed == [1, 2, 3, 2] and (memory.hits, memory.misses) == (2, 4) and len(memory) == 2
    assert memory.nbytes == 32
    big = ContentMemory(max_bytes=8)
    assert torch.equal(big.get((torch.ones(1),), "s", lambda: torch.ones(4)), torch.ones(4)) and len(big) == 0
