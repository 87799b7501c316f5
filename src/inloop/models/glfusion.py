"""GL-Fusion: global appearance and local coding distortion based fusion network.

J. Yue, Y. Gao, S. Li, H. Yuan, F. Dufaux, "A Global Appearance and Local Coding
Distortion based Fusion Framework for CNN based Filtering in Video Coding"
(section III; ablations in section IV.C, Tables II-V).

Overall structure (Fig. 1, section III.A)::

    X ──shared first layers──┬─ LLF  (low-level local, full resolution)      f_ll
                             ├─ HGF  (U-Net-like encoder-decoder)            f_hg
                             └─ HLF  (stacked mixed-scale residual modules)  f_hl
    per-branch attention (CSA, Fig. 3) -> progressive fusion: eq. (7) f_hg with f_ll,
    then with f_hl (eq. (8)) -> last conv -> R;   Y = X + R

Choices where the paper is vague (each is repeated in the docstring of the class
it concerns):

* Channel width: LLF, HLF and the fusion run at ``channels`` (64), the width of
  HGF's first level ("the channel number of the first convolutional layer is
  64"); the streams must have equal widths to be added (Table IV "Addition").
* Shared first layers ("the first few layers in the three branches are of same
  resolution and function, they are shared"): ``shared_layers=2`` conv+BN+ReLU
  layers at full resolution, i.e. exactly HGF's two full-resolution convolutions
  before its first pooling, which are also the first two of LLF's six layers.
  They count towards LLF's ``llf_layers`` and HGF's top level.
* Fusion wiring ("Three CSAF modules ... CSAF is first applied for each branch
  and then fused together"): one channel-and-spatial attention block per branch,
  then progressive fusion: eq. (7) concatenates f_hg with f_ll (the text says LLF
  assists HGF; the ``f_hl`` in eq. (7) reads as a typo for ``f_ll``), then the
  result is concatenated with f_hl, each followed by conv+BN+ReLU.
* Last layer: a plain 3x3 conv. Eq. (8) writes sigma(phi(.)) around it, but a
  ReLU would make R >= 0 (the filter could only brighten) and BN on the output
  fights the IV.B initialisation, so both are left out.
* Up-sampling in HGF/HLF is bilinear x2 (the introduction criticises
  deconvolution for spatial accuracy); down-sampling is 2x2 max pooling (III.C).
* Any frame size: pad bottom/right (reflect) to a multiple of 2**hgf_depth so the
  codec's block grid stays aligned with the pooling grid; crop R back.
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from inloop.errors import ParamsError
from inloop.models.registry import ResidualFilter, check_choice, check_int, conv_bn_relu, register

BRANCHES = ("llf", "hgf", "hlf")
# Order of progressive fusion: HGF first, assisted by LLF (eq. (7)), then HLF (eq. (8)).
FUSION_ORDER = ("hgf", "llf", "hlf")
FUSIONS = ("csaf", "add", "concat", "se")
ATTENTION_ACTS = ("tanh", "sigmoid")


def _upsample2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class LowLevelLocal(nn.Module):
    """LLF, section III.B, eq. (1): conv + BN + ReLU layers without pooling.

    The paper uses six layers from X; the first ``shared_layers`` of them are the
    shared stem, so this module holds the remaining ``layers`` (4 by default).
    Width ``channels`` throughout (the paper does not give LLF's width; 64 matches
    HGF's first level and lets the streams be added or concatenated alike).
    """

    def __init__(self, channels: int, layers: int):
        super().__init__()
        self.body = nn.Sequential(*[conv_bn_relu(channels, channels) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class GlobalEncoderDecoder(nn.Module):
    """HGF, section III.C, eqs. (2)-(3): U-Net-like encoder-decoder.

    ``depth`` (4) down-scales, each 2x2 max pooling followed by two 3x3
    conv+BN+ReLU layers, the channel count doubling from ``channels`` (64 ->
    1024); ``depth`` up-scales, each bilinear x2 up-sampling, concatenation with
    the encoder features of the same resolution, and two 3x3 conv+BN+ReLU layers
    halving the channels back to ``channels`` at full resolution (f_hg).

    The two full-resolution convs of the top level are the shared stem of
    :class:`GLFusion` when ``shared_layers >= 2``; ``top_convs`` are the ones
    this branch still owns (2 - shared_layers, at least 0).
    """

    def __init__(self, channels: int, depth: int, top_convs: int):
        super().__init__()
        self.top = nn.Sequential(*[conv_bn_relu(channels, channels) for _ in range(top_convs)])
        widths = [channels * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), conv_bn_relu(widths[i], widths[i + 1]), conv_bn_relu(widths[i + 1], widths[i + 1]))
            for i in range(depth)
        )
        # up[i] brings level i+1 to level i: concat [upsampled (w[i+1]), skip (w[i])] -> w[i]
        self.up = nn.ModuleList(
            nn.Sequential(conv_bn_relu(widths[i + 1] + widths[i], widths[i]), conv_bn_relu(widths[i], widths[i]))
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.top(x)]
        for down in self.down:  # eq. (2): d_out = D{sigma(phi(W * d_in + b))}
            skips.append(down(skips[-1]))
        y = skips.pop()
        for i in reversed(range(len(self.up))):  # eq. (3): conv over [u_in, d_out], then up-scale
            y = self.up[i](torch.cat([_upsample2(y), skips[i]], dim=1))
        return y


class MixedScaleResidual(nn.Module):
    """Mixed-scale residual module, section III.D, eqs. (4)-(6), Fig. 2.

    Trunk branch ``x_t = CBR(x)`` (eq. (4)); shallow encoder-decoder branch
    ``x_e = U{CBR(D{x})}`` with D = 2x2 max pooling and U = bilinear x2 (eq. (5));
    ``y = CBR([x_t, x_e])`` (eq. (6)); then "a convolutional layer is further
    added" (plain 3x3 conv) and a skip connection: ``out = x + conv(y)``.

    ``mixed_scale=False`` is the "simple residual module" of Table III: the
    encoder-decoder branch is dropped and eq. (6) convolves x_t alone, keeping the
    depth (three convs per module) the same.
    """

    def __init__(self, channels: int, mixed_scale: bool = True):
        super().__init__()
        self.mixed_scale = mixed_scale
        self.trunk = conv_bn_relu(channels, channels)
        self.coarse = nn.Sequential(nn.MaxPool2d(2), conv_bn_relu(channels, channels)) if mixed_scale else None
        self.merge = conv_bn_relu(2 * channels if mixed_scale else channels, channels)
        self.out = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.trunk(x)
        if self.coarse is not None:
            y = torch.cat([y, _upsample2(self.coarse(x))], dim=1)
        return x + self.out(self.merge(y))


class HighLevelLocal(nn.Module):
    """HLF, section III.D: ``modules`` (5) stacked mixed-scale residual modules, width ``channels``."""

    def __init__(self, channels: int, modules: int, mixed_scale: bool = True):
        super().__init__()
        self.body = nn.Sequential(*[MixedScaleResidual(channels, mixed_scale) for _ in range(modules)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ChannelSpatialAttention(nn.Module):
    """Channel and spatial attention (CSA), section III.E, Fig. 3; modified CBAM [41].

    Channel attention ``M_c = act(MLP(avgpool(f)) + MLP(maxpool(f)))`` (pooling over
    the spatial dimensions, shared 1x1-conv MLP with reduction ``reduction``), then
    spatial attention ``M_s = act(conv7x7([mean_c(f), max_c(f)]))`` (pooling over
    the channel dimension), each applied with a residual connection:
    ``f <- f + f * M``. With ``act="tanh"`` (the paper's choice) M lies in (-1, 1),
    so the block can suppress (1 + M < 1) as well as emphasise; with
    ``act="sigmoid"`` (CBAM, Table V ablation) it can only emphasise.
    """

    def __init__(self, channels: int, act: str = "tanh", reduction: int = 16, kernel_size: int = 7):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1)
        )
        self.spatial = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)
        self.act = torch.tanh if act == "tanh" else torch.sigmoid

    def channel_attention(self, f: torch.Tensor) -> torch.Tensor:
        """M_c, shape (N, C, 1, 1). Both poolings go through the MLP in one call."""
        pooled = torch.cat([f.mean(dim=(2, 3), keepdim=True), f.amax(dim=(2, 3), keepdim=True)], dim=0)
        avg, mx = self.mlp(pooled).chunk(2, dim=0)
        return self.act(avg + mx)

    def spatial_attention(self, f: torch.Tensor) -> torch.Tensor:
        """M_s, shape (N, 1, H, W)."""
        pooled = torch.cat([f.mean(dim=1, keepdim=True), f.amax(dim=1, keepdim=True)], dim=1)
        return self.act(self.spatial(pooled))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        f = f + f * self.channel_attention(f)
        return f + f * self.spatial_attention(f)


class SqueezeExcitation(nn.Module):
    """SE block [54] (Table IV "SE." fusion): ``f * sigmoid(FC(ReLU(FC(avgpool(f)))))``."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1), nn.Sigmoid()
        )

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return f * self.fc(f.mean(dim=(2, 3), keepdim=True))


class ProgressiveFusion(nn.Module):
    """Fusion of the branch features, section III.E, eqs. (7)-(8), Fig. 1; Table IV ablations.

    Each branch's features are first weighted ("CSAF is first applied for each
    branch and then fused together": one CSA block per branch, three in all), then
    fused progressively in the order HGF, LLF (eq. (7): ``f'_hg = CBR([f_hg, f_ll])``),
    HLF (``CBR([f'_hg, f_hl])``, the fused features of eq. (8)).

    ``fusion``: ``"csaf"`` CSA weighting + concatenation (proposed), ``"se"`` SE
    weighting + concatenation, ``"concat"`` concatenation only, ``"add"`` element-wise
    sum followed by the same conv+BN+ReLU. With a single branch there is nothing
    to fuse and the module is the identity (Table II single-stream networks).
    """

    def __init__(self, branches: tuple[str, ...], channels: int, fusion: str, attention_act: str, reduction: int):
        super().__init__()
        self.order = [b for b in FUSION_ORDER if b in branches]
        self.fusion = fusion
        single = len(self.order) == 1

        def weighting() -> nn.Module:
            if single or fusion in ("add", "concat"):
                return nn.Identity()
            if fusion == "se":
                return SqueezeExcitation(channels, reduction)
            return ChannelSpatialAttention(channels, attention_act, reduction)

        self.weight = nn.ModuleDict({b: weighting() for b in self.order})
        cin = channels if fusion == "add" else 2 * channels
        self.combine = nn.ModuleList(conv_bn_relu(cin, channels) for _ in self.order[1:])

    def forward(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        fused = self.weight[self.order[0]](feats[self.order[0]])
        for name, combine in zip(self.order[1:], self.combine):
            f = self.weight[name](feats[name])
            fused = combine(fused + f if self.fusion == "add" else torch.cat([fused, f], dim=1))
        return fused


def _branches(value: Iterable[str] | str) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else tuple(value)
    items = tuple(str(b).lower() for b in items)
    bad = [b for b in items if b not in BRANCHES]
    if bad or not items or len(set(items)) != len(items):
        raise ParamsError(
            f"branches: {list(value) if not isinstance(value, str) else value!r} must be a non-empty subset "
            f"of {list(BRANCHES)} without repeats (paper ablations: [hgf], [hlf], [hgf, llf], [llf, hgf, hlf])"
        )
    return tuple(b for b in BRANCHES if b in items)


@register("glfusion")
class GLFusion(ResidualFilter):
    """GL-Fusion network, section III, Fig. 1: ``Y = X + R``.

    Keywords (each an ablation of section IV.C or a size):

    - ``branches``: subset of ``("llf", "hgf", "hlf")``; Table II uses
      ``("hgf",)``, ``("hlf",)``, ``("hgf", "llf")`` and all three.
    - ``fusion``: ``"csaf"`` | ``"add"`` | ``"concat"`` | ``"se"`` (Table IV).
    - ``attention_act``: ``"tanh"`` | ``"sigmoid"`` in CSA (Table V).
    - ``mixed_scale``: mixed-scale vs. simple residual modules in HLF (Table III).
    - ``channels`` (64), ``llf_layers`` (6, counted from X including the shared
      layers), ``hgf_depth`` (4 down/up-scales), ``hlf_modules`` (5),
      ``shared_layers`` (2, see the module docstring), ``reduction`` (16, the
      CBAM/SE MLP reduction; not given in the paper), ``in_channels`` (planes
      filtered jointly; 1 = one plane, e.g. luma), ``pad_mode`` (``reflect`` or
      ``replicate``).

    Input: normalised frame X in [0, 1], (N, in_channels, H, W), any H, W.
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: int = 64,
        branches: Iterable[str] = BRANCHES,
        fusion: str = "csaf",
        attention_act: str = "tanh",
        mixed_scale: bool = True,
        hlf_modules: int = 5,
        llf_layers: int = 6,
        hgf_depth: int = 4,
        shared_layers: int = 2,
        reduction: int = 16,
        pad_mode: str = "reflect",
    ):
        super().__init__()
        check_int("in_channels", in_channels, 1)
        check_int("channels", channels, 1)
        self.branches = _branches(branches)
        check_choice("fusion", fusion, FUSIONS)
        check_choice("attention_act", attention_act, ATTENTION_ACTS)
        if not isinstance(mixed_scale, bool):
            raise ParamsError(f"mixed_scale: expected true/false, got {mixed_scale!r}")
        check_int("hlf_modules", hlf_modules, 1)
        check_int("hgf_depth", hgf_depth, 1)
        check_int("shared_layers", shared_layers, 1)
        check_int("llf_layers", llf_layers, shared_layers)
        check_int("reduction", reduction, 1)
        self.pad_mode = check_choice("pad_mode", pad_mode, ("reflect", "replicate"))

        # Shared first layers (end of section III.E): X -> channels at full resolution.
        self.stem = nn.Sequential(
            conv_bn_relu(in_channels, channels), *[conv_bn_relu(channels, channels) for _ in range(shared_layers - 1)]
        )
        self.llf = LowLevelLocal(channels, llf_layers - shared_layers) if "llf" in self.branches else None
        self.hgf = (
            GlobalEncoderDecoder(channels, hgf_depth, max(0, 2 - shared_layers)) if "hgf" in self.branches else None
        )
        self.hlf = HighLevelLocal(channels, hlf_modules, mixed_scale) if "hlf" in self.branches else None
        self.fusion = ProgressiveFusion(self.branches, channels, fusion, attention_act, reduction)
        # Eq. (8) without sigma/phi (see module docstring): R = W * fused + b.
        self.tail = nn.Conv2d(channels, in_channels, 3, padding=1)

        if self.hgf is not None:
            self.pad_multiple = 2**hgf_depth
        elif self.hlf is not None and mixed_scale:
            self.pad_multiple = 2
        else:
            self.pad_multiple = 1

    @property
    def last_conv(self) -> nn.Conv2d:
        return self.tail

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        feats = {name: branch(s) for name, branch in (("llf", self.llf), ("hgf", self.hgf), ("hlf", self.hlf))
                 if branch is not None}
        return self.tail(self.fusion(feats))
