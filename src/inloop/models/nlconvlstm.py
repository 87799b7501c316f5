"""NL-ConvLSTM: non-local ConvLSTM for video compression artifact reduction.

Y. Xu, L. Gao, K. Tian, S. Zhou, H. Sun, "Non-Local ConvLSTM for Video
Compression Artifact Reduction", ICCV 2019 (section 3; the ablation, section 4.2 and Table 2).

Structure (section 3.1, Fig. 2)::

    clip X_{t-T..t+T} ─ Encoder (2D convs, per frame) ─ F_{t-T..t+T}
        forward  NL-ConvLSTM over F_{t-T} .. F_t  ─ H_t^fwd
        backward NL-ConvLSTM over F_{t+T} .. F_t  ─ H_t^bwd
    Decoder: 1x1 conv on [H_t^fwd, H_t^bwd], stacked 3x3 convs -> R;   Y_t = X_t + R

Before each LSTM step the previous hidden and cell states are warped towards
the current frame by a non-local weighted sum (eqs. (3)-(4)) whose weights come
from the encoder features of the previous and the current frame; the
two-stage approximation of section 3.3 (average pooling with kernel p, top-k
blocks, pixel similarity inside those blocks only) makes this affordable.

The ablation's columns (section 4.2, Table 2; Table 1 is the complexity table of
3.3) are the ``mode`` param: ``"single"`` (Encoder-Decoder on the target frame
alone), ``"convlstm"`` (bidirectional ConvLSTM on the seven frames, no warp),
``"meconvlstm"`` (ME-ConvLSTM: the states warped by motion compensation instead
of the non-local warp) and ``"nlconvlstm"`` (the method). All take the
same clip (N, T, C, H, W), so one data path serves them all.

ME-ConvLSTM is named in the ablation table but not described. What the paper says
of motion compensation (section 3.3, "Non-local operation vs. motion
compensation"): each pixel of the warped state is "evaluated by interpolation with
some neighboring pixels" of the previous state, and "we need to train additional
layers for motion field generation". Built here that way (:class:`FlowWarp`): three
3x3 conv layers on the encoder features [F_{t-1}, F_t] give a two-channel motion
field (pixels), and the previous hidden and cell states are resampled along it
bilinearly (``grid_sample``, borders replicated). The last flow layer starts at zero,
so an untrained ME-ConvLSTM starts as the plain ConvLSTM.

Symbols lost in the stored text of the paper and the values chosen here (each
repeated next to its param in :class:`NLConvLSTM`):

* T (frames before/after the target): 3, i.e. ``frames=7`` -- Table 2 says
  "with 7 frames" and section 4.2 "the same settings with T=3".
* p (pooling kernel) = 10 and k (top-k blocks) = 4: the complexity analysis of
  section 3.3 gives the approximate cost O(HW C (HW/p^4 + k p^2)) [stage 1 +
  stage 2], minimised at p^6 = 2HW/k; for a 1920x1080 frame and k=4 that is
  p = 10.0, and then HW/p^4 + k p^2 = 207 + 400 = 607 ~ 9 * 64 = K^2 C, the
  "close to a K x K convolution" statement of the same paragraph with K=3 and
  C=64. These are the values of the published version as far as we can
  reconstruct them; they are params, so they are easy to change.
* C (feature / state width) = 64: the same consistency argument (K^2 C ~ 607).
* ConvLSTM kernel: 3x3 ("global motion can be captured with a small kernel in
  ConvLSTM", section 3.4; the ConvLSTM of [37], eq. (2), uses 3x3 too).
* Encoder / decoder depth ("several 2D convolutional layers", "several stacked
  convolutional layers"): not given; 3 and 3 here (``enc_layers``, ``dec_layers``).
* Similarity (eq. (4)): S(i, j) = exp(-D(i, j) / tau) / sum_i exp(-D(i, j) / tau)
  with D the Euclidean distance over all channels (eq. (4): "the Euclidean
  distance ... between pixel i ... and pixel j"), computed through the
  vectorised squared distance of eq. (7) and a square root, and tau a
  temperature. The authors' code (``non_local_block.py`` of their public
  repository, ``NonLocalBlock(temperature=1e-3)``: ``softmax(-d / temperature)``
  with ``d`` the Euclidean distance clamped at 1e-30 before the root) sets
  tau = 1e-3, the default of the ``temperature`` param. Weights sum to one over
  the preceding frame's pixels for every pixel of the current frame. Model files
  written before this (squared distance, no temperature) load with
  ``temperature`` 0, which selects that older similarity, so they compute what
  they were trained with.

Memory (inference, batch 1, float32, 1920x1080, C = C_h = 64, p=10, k=4):

* exact non-local (eq. (4)): the HW x HW distance and weight matrices are
  2 x (2,073,600)^2 x 4 B = 34 TB per warp -- it cannot run; it exists for the
  ablation and for Table 5's run-time comparison on small frames (180x180:
  2 x 32,400^2 x 4 B = 8.4 GB per warp, plus the gathered states).
* approximate (section 3.3): stage 1 needs a B x B block-distance matrix,
  B = HW/p^2 = 20,736 blocks (1.7 GB if done at once); stage 2 per query block
  p^2 x k p^2 distances and weights and the k p^2 gathered features and states
  (C + 2 C_h channels): ~14 GB for the whole frame at once. Query blocks are
  therefore processed in chunks (``max_elements`` = 2^26 distance entries,
  1,677 blocks per chunk at these settings): 1.3 GB per chunk, 5.5 GB for the
  whole warp with its whole-frame block layouts and output
  (:func:`approx_warp_peak_bytes`; the measured peak and run time on CPU:
  docs/timings.md). With the encoder features of the 7 frames (3.7 GB),
  the LSTM gates (2.1 GB) and states, a no-grad whole-frame 1080p forward is
  estimated at ~16 GB (:func:`inference_peak_bytes`), well inside 80 GB.
  Distances are always computed in float32 or wider (autocast off):
  eq. (7) subtracts large numbers and bf16 would wreck the top-k.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from inloop.errors import ParamsError
from inloop.models.costs import macs_per_pixel
from inloop.models.memo import ContentMemory
from inloop.models.registry import ResidualFilter, check_choice, check_int, pad_to_multiple, register

MODES = ("nlconvlstm", "meconvlstm", "convlstm", "single")
MAX_ELEMENTS = 2**26  # stage-2 distance entries per chunk of query blocks (256 MB in float32)
# The weights of the last pairs of frames a filtering keeps (remember_warps): 17 MB per pair at 352x192 (p = 4,
# k = 4), six pairs in use at once with T = 3; a 1080p pair (3.3 GB at p = 10) is not kept, as before.
WARP_MEMORY_BYTES = 256 * 2**20


# ---------------------------------------------------------------------------------------------
# Non-local similarity and warp (sections 3.2-3.4)
# ---------------------------------------------------------------------------------------------


def sq_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances, vectorised as eq. (7): ||a||^2 + ||b||^2 - 2 a b^T.

    ``a`` (..., m, C), ``b`` (..., n, C) -> (..., m, n); one batched matmul, no loops.
    Clamped at 0 (rounding can make the expansion slightly negative).
    """
    a2 = a.square().sum(-1, keepdim=True)
    b2 = b.square().sum(-1).unsqueeze(-2)
    return (a2 + b2 - 2.0 * (a @ b.transpose(-1, -2))).clamp_min(0.0)


@torch.no_grad()
def nearest_blocks(a: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
    """Stage 1 of section 3.3: for each row of ``a`` (N, m, C) the indices (N, m, k) of the ``k`` rows of ``b``
    (N, n, C) at the smallest Euclidean distance. Ranked by ``||b||^2 - 2 a b^T``, eq. (7) less its
    ``||a||^2``, which is the same for every candidate of a row (the same order): one fused batched
    matmul-add (``baddbmm``) over the m x n matrix instead of a matmul and four elementwise passes, and no
    square root (plain and squared distances rank alike). Indices only: no gradient flows through a choice."""
    b2 = b.square().sum(-1).unsqueeze(-2)
    return torch.baddbmm(b2, a, b.transpose(-1, -2), alpha=-2.0).topk(k, dim=-1, largest=False).indices


EUCLID_EPS = 1e-30  # the authors' clamp before the square root (no infinite gradient at d = 0)


def similarity_logits(sq: torch.Tensor, temperature: float | torch.Tensor) -> torch.Tensor:
    """Eq. (4)'s softmax argument from squared distances: -sqrt(D^2) / tau (tau > 0), or -D^2 for
    tau = 0 (the project's first similarity, kept for model files written with it)."""
    if float(temperature) == 0.0:
        return -sq
    return -sq.clamp_min(EUCLID_EPS).sqrt() / temperature


def _compute_dtype(*xs: torch.Tensor) -> torch.dtype:
    dt = torch.float32
    for x in xs:
        dt = torch.promote_types(dt, x.dtype)
    return dt


def exact_nonlocal_weights(query: torch.Tensor, ref: torch.Tensor, temperature: float = 1e-3) -> torch.Tensor:
    """Eq. (4): S(i, j) = softmax_i(-D(i, j) / tau) between every pixel j of ``query`` (frame t)
    and every pixel i of ``ref`` (frame t-1); (N, C, H, W) each -> (N, HW_query, HW_ref).

    Each row sums to one. Memory is O((HW)^2): for small frames only.
    """
    q = query.flatten(2).transpose(1, 2)  # (N, HW, C)
    r = ref.flatten(2).transpose(1, 2)
    return torch.softmax(similarity_logits(sq_distances(q, r), temperature), dim=-1)


def exact_nonlocal_warp(query: torch.Tensor, ref: torch.Tensor, state: torch.Tensor,
                        temperature: float = 1e-3) -> torch.Tensor:
    """NLWarp of eq. (3)-(4) without approximation: state_hat(j) = sum_i S(i, j) state(i).

    ``query``/``ref``: features of frames t and t-1 (N, C, H, W); ``state`` (N, C_s, H, W)
    lives on the grid of ``ref``. Returns the warped state on the grid of ``query``.
    """
    dt = _compute_dtype(query, ref, state)
    with torch.autocast(query.device.type, enabled=False):
        s = exact_nonlocal_weights(query.to(dt), ref.to(dt), temperature)
        out = s @ state.to(dt).flatten(2).transpose(1, 2)  # (N, HW, C_s)
    n, c, h, w = query.shape
    return out.transpose(1, 2).reshape(n, state.shape[1], h, w).to(state.dtype)


def to_blocks(x: torch.Tensor, p: int) -> torch.Tensor:
    """(N, C, H, W) with H, W multiples of ``p`` -> (N, B, p*p, C), blocks in raster order."""
    n, c, hh, ww = x.shape
    h, w = hh // p, ww // p
    return x.reshape(n, c, h, p, w, p).permute(0, 2, 4, 3, 5, 1).reshape(n, h * w, p * p, c)


def from_blocks(x: torch.Tensor, p: int, hh: int, ww: int) -> torch.Tensor:
    """Inverse of :func:`to_blocks`: (N, B, p*p, C) -> (N, C, H, W)."""
    n, _, _, c = x.shape
    h, w = hh // p, ww // p
    return x.reshape(n, h, w, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(n, c, hh, ww)


def _gather_blocks(blocks: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``blocks`` (N, B, P, C), ``idx`` (N, b, k) -> the k chosen blocks per query, (N, b, k*P, C)."""
    n, b, k = idx.shape
    batch = torch.arange(n, device=idx.device).view(n, 1, 1)
    return blocks[batch, idx].reshape(n, b, k * blocks.shape[2], blocks.shape[3])


def _approx_chunk(q_blocks: torch.Tensor, q_pooled: torch.Tensor, r_blocks: torch.Tensor,
                  r_pooled: torch.Tensor, topk: int, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-stage weights (section 3.3) for a chunk of b query blocks.

    Stage 1, eq. (5) vectorised as eq. (7): distances between the average-pooled
    query blocks (N, b, C) and all pooled reference blocks (N, B, C); keep the
    ``topk`` nearest reference blocks per query block (:func:`nearest_blocks`).
    Stage 2: the sparse version of eq. (7) between each query pixel (N, b, p^2, C)
    and the k p^2 pixels of its block's candidates; softmax of eq. (4) over those
    only (all other reference pixels get weight 0, distance +inf).
    Returns weights (N, b, p^2, k p^2), summing to one over the last dim, and the
    chosen block indices (N, b, k).
    """
    idx = nearest_blocks(q_pooled, r_pooled, topk)
    cand = _gather_blocks(r_blocks, idx)  # (N, b, k p^2, C)
    return torch.softmax(similarity_logits(sq_distances(q_blocks, cand), temperature), dim=-1), idx


def approx_nonlocal_weights(query: torch.Tensor, ref: torch.Tensor, pool: int, topk: int,
                            temperature: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Section 3.3 weights for the whole frame at once (for inspection and tests).

    ``query``, ``ref`` (N, C, H, W) with H, W multiples of ``pool``. Returns the
    weights (N, B, p^2, k p^2) -- row (b, a) holds pixel a of query block b's weights
    over the pixels of its k candidate blocks, in the order of ``idx`` -- and the
    candidate block indices ``idx`` (N, B, k). ``topk`` is capped at B.
    """
    k = min(topk, (query.shape[-2] // pool) * (query.shape[-1] // pool))
    return _approx_chunk(to_blocks(query, pool), F.avg_pool2d(query, pool).flatten(2).transpose(1, 2),
                         to_blocks(ref, pool), F.avg_pool2d(ref, pool).flatten(2).transpose(1, 2), k, temperature)


def _chunk_blocks(n: int, pool: int, k: int, max_elements: int) -> int:
    return max(1, max_elements // (n * pool**2 * k * pool**2))


def _approx_plan(q: torch.Tensor, r: torch.Tensor, pool: int, k: int, step: int,
                 temperature: float) -> list[tuple[slice, torch.Tensor, torch.Tensor]]:
    """The two-stage weights of every chunk of ``step`` query blocks: ``[(blocks, weights, idx)]``
    (:func:`_approx_chunk`); they depend on the features of the two frames only, not on the state."""
    q_blocks, r_blocks = to_blocks(q, pool), to_blocks(r, pool)
    q_pooled = F.avg_pool2d(q, pool).flatten(2).transpose(1, 2)  # (N, B, C)
    r_pooled = F.avg_pool2d(r, pool).flatten(2).transpose(1, 2)
    plan = []
    for b0 in range(0, q_blocks.shape[1], step):  # chunks of query blocks: bounded memory at 1080p
        sl = slice(b0, b0 + step)
        plan.append((sl, *_approx_chunk(q_blocks[:, sl], q_pooled[:, sl], r_blocks, r_pooled, k, temperature)))
    return plan


def approx_nonlocal_warp(query: torch.Tensor, ref: torch.Tensor, state: torch.Tensor, pool: int, topk: int,
                         max_elements: int = MAX_ELEMENTS, temperature: float = 1e-3,
                         memory: ContentMemory | None = None) -> torch.Tensor:
    """Approximate NLWarp (section 3.3): the state of each query pixel is the weighted sum
    of the states of the pixels in the ``topk`` reference blocks most similar to its block.

    ``query``/``ref``: encoder features of frames t and t-1 (N, C, H, W), ``state``
    (N, C_s, H, W) on ``ref``'s grid (hidden and cell states concatenated); H, W
    multiples of ``pool``. Query blocks are processed in chunks so that at most
    ``max_elements`` stage-2 distances exist at a time (the loop runs over chunks
    of ~thousands of blocks; everything inside is batched). ``topk`` is capped at
    the number of blocks, where the result equals :func:`exact_nonlocal_warp`.
    ``memory``: keeps the weights of a pair of frames for the next window that warps between the same two
    frames (inference; :class:`~inloop.models.memo.ContentMemory`): the same weights, bit for bit.
    """
    n, _, hh, ww = query.shape
    nb = (hh // pool) * (ww // pool)
    k = min(topk, nb)
    dt = _compute_dtype(query, ref, state)
    with torch.autocast(query.device.type, enabled=False):
        q, r, s = query.to(dt), ref.to(dt), state.to(dt)
        step = _chunk_blocks(n, pool, k, max_elements)
        # weights (N, B, p^2, k p^2) and indices (N, B, k): kept only where they fit, and on the CPU (on a GPU
        # the key's digest would copy the features to the host for each warp)
        keep = (memory is not None and query.device.type == "cpu"
                and n * nb * (pool**4 * k * q.element_size() + k * 8) <= memory.max_bytes)
        plan = (memory.get((query, ref), ("nlwarp", str(dt), pool, k, step, float(temperature)),
                           lambda: _approx_plan(q, r, pool, k, step, temperature)) if keep else
                _approx_plan(q, r, pool, k, step, temperature))
        s_blocks = to_blocks(s, pool)
        out = s_blocks.new_empty(s_blocks.shape)  # (N, B, p^2, C_s), filled chunk by chunk
        for sl, weights, idx in plan:
            out[:, sl] = weights @ _gather_blocks(s_blocks, idx)
        warped = from_blocks(out, pool, hh, ww)
    return warped.to(state.dtype)


def approx_warp_peak_bytes(h: int, w: int, channels: int, state_channels: int, pool: int, topk: int,
                           batch: int = 1, max_elements: int = MAX_ELEMENTS, bytes_per: int = 4) -> int:
    """Memory :func:`approx_nonlocal_warp` allocates beyond its inputs (an estimate).

    Whole frame: the block layouts of q, r and the state (reshapes copy:
    (2 C + C_s) HW), the output in block layout and in (N, C_s, H, W) (2 C_s HW).
    Per chunk of b query blocks: stage-1 distances b x B, stage-2 distances and
    weights 2 x b p^2 k p^2, gathered candidate features and states b k p^2 (C + C_s),
    the chunk's product b p^2 C_s.
    """
    hh, ww = -(-h // pool) * pool, -(-w // pool) * pool
    nb = (hh // pool) * (ww // pool)
    k = min(topk, nb)
    b = min(nb, _chunk_blocks(batch, pool, k, max_elements))
    per_chunk = b * nb + 2 * b * pool**2 * k * pool**2 + b * k * pool**2 * (channels + state_channels) \
        + b * pool**2 * state_channels
    whole = (2 * channels + 3 * state_channels) * hh * ww
    return batch * (per_chunk + whole) * bytes_per


def exact_warp_peak_bytes(h: int, w: int, state_channels: int, batch: int = 1, bytes_per: int = 4) -> int:
    """Working set of :func:`exact_nonlocal_warp`: distances + weights (HW)^2 each, plus the output."""
    return batch * (2 * (h * w) ** 2 + h * w * state_channels) * bytes_per


# ---------------------------------------------------------------------------------------------
# Network (section 3.1)
# ---------------------------------------------------------------------------------------------


class ConvLSTMCell(nn.Module):
    """ConvLSTM step, eq. (2) as in [37] (no peephole terms), 3x3 kernel (section 3.4).

    i, f, o = sigma(W_x* * X_t + W_h* * H_{t-1} + b), g = tanh(W_xc * X_t + W_hc * H_{t-1} + b_c),
    C_t = f . C_{t-1} + i . g,  H_t = o . tanh(C_t). In NL-ConvLSTM (eq. (3)) H_{t-1} and
    C_{t-1} are replaced by their warped versions before this step.
    """

    def __init__(self, cin: int, hidden: int, kernel: int = 3):
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(cin + hidden, 4 * hidden, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        i, f, o, g = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class FlowWarp(nn.Module):
    """ME-ConvLSTM's motion compensation (see the module docstring): a learned motion field from the
    features of frames t-1 and t, and the previous states resampled along it."""

    def __init__(self, channels: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or channels
        self.net = nn.Sequential(nn.Conv2d(2 * channels, hidden, 3, padding=1), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, 2, 3, padding=1))
        nn.init.zeros_(self.net[-1].weight)  # zero motion at the start: the plain ConvLSTM
        nn.init.zeros_(self.net[-1].bias)

    def flow(self, query: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """(N, 2, H, W) displacement in pixels (x, y): where in frame t-1 each pixel of frame t comes from."""
        return self.net(torch.cat([ref, query], dim=1))

    def forward(self, query: torch.Tensor, ref: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        n, _, h, w = state.shape
        flow = self.flow(query, ref).float()
        ys, xs = torch.meshgrid(torch.arange(h, device=state.device, dtype=torch.float32),
                                torch.arange(w, device=state.device, dtype=torch.float32), indexing="ij")
        x = (xs + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0  # align_corners=True normalisation
        y = (ys + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
        grid = torch.stack([x, y], dim=-1)
        return F.grid_sample(state.float(), grid, mode="bilinear", padding_mode="border",
                             align_corners=True).to(state.dtype)


def _conv_relu(cin: int, cout: int, k: int = 3) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, padding=k // 2), nn.ReLU(inplace=True)]


@register("nlconvlstm")
class NLConvLSTM(ResidualFilter):
    """Encoder -> bidirectional (NL-)ConvLSTM -> decoder -> R; ``Y_t = X_t + R`` (section 3.1).

    Takes a clip (N, T, C, H, W) in [0, 1], T = ``frames``, target in the centre;
    returns the enhanced target (N, C, H, W). Any H, W: frames are padded
    bottom/right (reflect) to a multiple of ``pool`` for the approximate warp and
    R is cropped back.

    Params (``models.nlconvlstm.<key>``):

    * ``mode``: the ablation's columns (Table 2) -- ``"single"`` Encoder-Decoder on the target frame
      only (the clip is still the input), ``"convlstm"`` plain bidirectional
      ConvLSTM on all frames, ``"meconvlstm"`` ConvLSTM with motion-compensated
      states (:class:`FlowWarp`), ``"nlconvlstm"`` the method.
    * ``frames``: 2T + 1 = 7 (T = 3 before and 3 after; the paper's "T=" is lost,
      Table 2 reads "with 7 frames"). Must be odd.
    * ``channels``: encoder feature width C and ConvLSTM state width C_h; 64 (lost
      in the text; 64 is what makes the complexity example of section 3.3
      consistent, see the module docstring).
    * ``pool``: p, the average-pooling kernel of stage 1 (section 3.3); 10 (lost;
      the optimum p^6 = 2HW/k of the complexity analysis at 1920x1080, k = 4).
    * ``topk``: k, reference blocks kept per query block; 4 (lost; see above).
    * ``temperature``: tau of eq. (4)'s softmax over Euclidean distances; 1e-3, the
      authors' code (0 selects the earlier squared-distance similarity, which model
      files written before this param load with).
    * ``exact``: use the exact non-local warp of eq. (4) instead of the two-stage
      approximation (ablation and Table 5's "original NL"; small frames only).
    * ``in_channels``: planes filtered (1 = luma).
    * ``enc_layers``: 3x3 conv + ReLU layers of the encoder ("several"; 3).
    * ``dec_layers``: 3x3 convs after the decoder's 1x1 merge, the last producing R
      ("several stacked convolutional layers"; 3).
    """

    is_clip_model = True
    # model files written before ``temperature`` existed: squared distance, no temperature (0)
    legacy_buffers = {**ResidualFilter.legacy_buffers, "temperature": 0.0}

    def __init__(self, mode: str = "nlconvlstm", frames: int = 7, channels: int = 64, pool: int = 10,
                 topk: int = 4, exact: bool = False, in_channels: int = 1, enc_layers: int = 3,
                 dec_layers: int = 3, temperature: float = 1e-3):
        super().__init__()
        self.mode = check_choice("mode", mode, MODES)
        check_int("frames", frames, 1)
        if frames % 2 == 0:
            raise ParamsError(f"frames: {frames} is even; the clip is T frames before, the target and T after "
                              "(2T + 1, e.g. 7)")
        check_int("channels", channels, 1)
        check_int("pool", pool, 1)
        check_int("topk", topk, 1)
        if not isinstance(exact, bool):
            raise ParamsError(f"exact: expected true or false, got {exact!r}")
        check_int("in_channels", in_channels, 1)
        check_int("enc_layers", enc_layers, 1)
        check_int("dec_layers", dec_layers, 1)
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature < 0:
            raise ParamsError(f"temperature: expected a number >= 0 (eq. (4)'s tau; 0 = the earlier squared-distance "
                              f"similarity), got {temperature!r}")
        self.register_buffer("temperature", torch.tensor(float(temperature)))
        # The buffer travels in the model file (0 for files written before tau); the forward reads this float copy,
        # refreshed once when a state is loaded: float(buffer) on a GPU was a host sync in each of the six warps of
        # every forward (issue #28 item 8).
        self._tau = float(temperature)
        self.register_load_state_dict_post_hook(NLConvLSTM._refresh_tau)
        self._warps: ContentMemory | None = None  # remember_warps
        self.frames, self.channels, self.pool, self.topk, self.exact = frames, channels, pool, topk, exact
        self.in_channels = in_channels
        # Padding to the block grid is needed only by the approximate warp.
        self.pad_multiple = pool if (mode == "nlconvlstm" and not exact) else 1
        # The non-local warp may draw on any block of the frame (which ones depends on the content), so a tile
        # confines it (inloop.evaluation.enhance.receptive_field; section 4.1 processes whole frames).
        self.global_context = mode == "nlconvlstm"

        # Encoder: several 2D convs, each frame separately (section 3.1).
        enc: list[nn.Module] = _conv_relu(in_channels, channels)
        for _ in range(enc_layers - 1):
            enc += _conv_relu(channels, channels)
        self.encoder = nn.Sequential(*enc)

        # Bidirectional (NL-)ConvLSTM (sections 3.1-3.2): separate forward / backward cells.
        if mode == "single":
            self.fwd = self.bwd = None
            merged = channels
        else:
            self.fwd = ConvLSTMCell(channels, channels)
            self.bwd = ConvLSTMCell(channels, channels)
            merged = 2 * channels
        # ME-ConvLSTM: one motion field generator per direction
        self.flow_fwd = FlowWarp(channels) if mode == "meconvlstm" else None
        self.flow_bwd = FlowWarp(channels) if mode == "meconvlstm" else None

        # Decoder: 1x1 conv combining both directions, then stacked convs to R (section 3.1).
        dec: list[nn.Module] = _conv_relu(merged, channels, k=1)
        for _ in range(dec_layers - 1):
            dec += _conv_relu(channels, channels)
        self.decoder = nn.Sequential(*dec)
        self.tail = nn.Conv2d(channels, in_channels, 3, padding=1)

    @property
    def last_conv(self) -> nn.Conv2d:
        return self.tail

    @staticmethod
    def _refresh_tau(module: "NLConvLSTM", incompatible_keys) -> None:
        module._tau = float(module.temperature)

    def remember_warps(self, max_bytes: int = WARP_MEMORY_BYTES) -> "NLConvLSTM":
        """Keep the approximate warp's weights of recent pairs of frames, up to ``max_bytes``, until
        :meth:`forget_warps`.

        Filtering a sequence frame by frame, each window of 2T + 1 frames warps between the same neighbouring
        frames as the window before it, but two (T - 1 of T per direction): the weights, which depend only on
        the two frames' encoder features, are then computed once per pair instead of T times. Kept under the
        features' contents (:class:`~inloop.models.memo.ContentMemory`), so a hit is the same computation and
        the output is the same bit for bit. Inference only (no gradients); the exact warp never keeps any.
        """
        self._warps = ContentMemory(max_bytes)
        return self

    def forget_warps(self) -> int:
        """Stop keeping weights; returns how many warps since :meth:`remember_warps` reused kept ones."""
        hits = self._warps.hits if self._warps is not None else 0
        self._warps = None
        return hits

    def warp(self, query: torch.Tensor, ref: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """NLWarp of eq. (3): ``state`` of frame t-1 -> frame t, weights from features ``ref`` -> ``query``."""
        tau = self._tau
        if self.exact:
            return exact_nonlocal_warp(query, ref, state, tau)
        return approx_nonlocal_warp(query, ref, state, self.pool, self.topk, temperature=tau,
                                    memory=None if torch.is_grad_enabled() else self._warps)

    def _run(self, cell: ConvLSTMCell, feats: torch.Tensor, flow: FlowWarp | None = None) -> torch.Tensor:
        """One direction over ``feats`` (N, S, C, H, W), ending at the target; returns its last H.

        Eq. (3) for ``nlconvlstm`` (warp H_{t-1}, C_{t-1} with S(F_{t-1}, F_t) first), the
        same with motion compensation for ``meconvlstm``, eq. (2) for ``convlstm``. The
        initial states are zero (no warp needed).
        """
        n, steps, _, hh, ww = feats.shape
        h = feats.new_zeros(n, cell.hidden, hh, ww)
        c = torch.zeros_like(h)
        for t in range(steps):  # loop over time steps only
            if t > 0 and self.mode == "nlconvlstm":
                h, c = self.warp(feats[:, t], feats[:, t - 1], torch.cat([h, c], dim=1)).chunk(2, dim=1)
            elif t > 0 and flow is not None:
                h, c = flow(feats[:, t], feats[:, t - 1], torch.cat([h, c], dim=1)).chunk(2, dim=1)
            h, c = cell(feats[:, t], h, c)
        return h

    def residual(self, clip: torch.Tensor) -> torch.Tensor:
        """R for a padded clip (N, T, C, H, W)."""
        n, t = clip.shape[:2]
        centre = t // 2
        if self.mode == "single":  # Table 2, "Encoder-Decoder with 1 frame"
            return self.tail(self.decoder(self.encoder(clip[:, centre])))
        feats = self.encoder(clip.flatten(0, 1)).unflatten(0, (n, t))
        h_fwd = self._run(self.fwd, feats[:, : centre + 1], self.flow_fwd)  # t-T .. t
        h_bwd = self._run(self.bwd, feats[:, centre:].flip(1), self.flow_bwd)  # t+T .. t
        return self.tail(self.decoder(torch.cat([h_fwd, h_bwd], dim=1)))

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        if clip.dim() != 5 or clip.shape[1] != self.frames or clip.shape[2] != self.in_channels:
            raise ValueError(f"NLConvLSTM expects a clip (N, {self.frames}, {self.in_channels}, H, W), "
                             f"got {tuple(clip.shape)}")
        n, t, c, h, w = clip.shape
        target = clip[:, t // 2]
        padded = pad_to_multiple(clip.reshape(n * t, c, h, w), self.pad_multiple, self.pad_mode)
        r = self.residual(padded.reshape(n, t, c, *padded.shape[-2:]))
        return target + self.residual_scale * r[..., :h, :w]

    # -- complexity ------------------------------------------------------------------------

    def macs_per_pixel(self, size: tuple[int, int] = (1080, 1920)) -> float:
        """MACs per output pixel for a ``size`` = (H, W) frame, counted on a whole clip of that size
        (:func:`inloop.models.costs.macs_per_pixel`): the convolutions and the non-local matmuls of
        every warp -- approximate: stage 1 B^2 C (eq. (5) via (7), :func:`nearest_blocks`), stage 2 HW k p^2 C (pixel
        distances) + HW k p^2 2C_h (weighted sum of H and C); exact: (HW)^2 C + (HW)^2 2C_h;
        2 directions x T warps per forward -- which grow with the frame size.
        """
        return macs_per_pixel(self, size=size)


def inference_peak_bytes(h: int, w: int, channels: int = 64, pool: int = 10, topk: int = 4, frames: int = 7,
                         batch: int = 1, bytes_per: int = 4) -> int:
    """Rough peak of a no-grad whole-frame forward of the approximate NL-ConvLSTM.

    Live at the worst moment (a warp inside the backward direction): the encoder
    features of all frames (T C HW), the forward direction's final H (C HW), the
    current H, C and their concatenation (4 C HW), the warped state (2 C HW), the
    gate pre-activations and LSTM input (4 C HW + 2 C HW), the warp's chunk working
    set (:func:`approx_warp_peak_bytes`). An estimate for planning, not a measurement.
    """
    hh, ww = -(-h // pool) * pool, -(-w // pool) * pool
    maps = (frames + 1 + 4 + 2 + 6) * channels * hh * ww * batch * bytes_per
    return maps + approx_warp_peak_bytes(h, w, channels, 2 * channels, pool, topk, batch, bytes_per=bytes_per)
