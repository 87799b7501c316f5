"""SPiLF: Structure Preserving in-Loop Filter (the network of the perceptual in-loop filter for ECM).

H. Wang, G. Ren, T. Ouyang et al., "Perceptual in-Loop Filter for Image and
Video Compression" (paper 001; section 2.1, Fig. 1). The losses and the
two-stage training are in :mod:`inloop.training.spilf`.

Overall structure (section 2.1, Fig. 1)::

    gradient branch (2.1.1):  G(X) -> head -> [DRU + SE] x grad_blocks -> f_g -> conv -> G^ = G(X) + dG
    pixel branch (2.1.2):     X    -> head -> [DRU + SE] x pixel_units -> f_p
    fusion (2.1.2):           cat[f_p, f_g] -> 1x1 conv -> DRU x fusion_units -> output convs -> R
                              Y = X + R

The paper gives no sizes (channels, block counts, DRU depth/growth, SE
reduction): every default below is this module's choice, not the paper's, and
each is a ``models.spilf.<key>`` param. Other choices where the text is vague
(repeated in the docstring of the class they concern):

* Gradient map G (2.1.1): exactly the equation, no 1/2 factor, so a ramp of
  slope ``a`` gives ``2|a|``; borders replicate the edge sample (the difference
  on the first/last row/column is one-sided, half the interior value on a
  ramp); a tiny ``eps`` under the square root keeps the gradient finite where
  f is flat.
* DRU [8]: the paper only names it ("dense residual unit"). Here it is a dense
  block with local residual learning: ``dru_layers`` conv3x3+ReLU layers, each
  fed the concatenation of the unit's input and all earlier layers' outputs and
  adding ``growth`` channels, a 1x1 conv back to ``channels``, plus the input.
* Grad block = DRU followed by an SE block [4] (2.1.1 "multiple grad blocks and
  squeeze-and-excitation block"); pixel unit = DRU followed by SE (2.1.2 "Every
  pixel unit is followed with a SE block"). Both branch trunks have a long skip
  from their head conv.
* The gradient branch outputs a reconstructed gradient map ``G^ = G(X) + dG``
  (2.1.1 "Before outputting the reconstructed gradient maps, the feature maps
  of restored gradients are incorporated into the pixel branch"); the
  structural loss supervises it (training/spilf.py). The pixel branch does not
  feed the gradient branch (the text does not say it does).
* Fusion block (2.1.2 "concatenated and fed into a fusion block, which adopts
  the DRN"): a 1x1 conv 2C -> C, then ``fusion_units`` DRUs. Output layers
  ("some convolution blocks"): conv3x3 + LeakyReLU(0.2) + conv3x3 -> R, the
  output layers of ESRGAN [7] (whose RaGAN the paper takes). Not a plain ReLU:
  this head is one layer of ``channels`` units in front of a zero-initialised
  last conv, and on the demo at QP 37 every one of its ReLU units died, leaving
  the model at the identity (measured: docs/results.md, "the demo's settings").
  The slope is the ``out_slope`` param (0 = ReLU, 1 = no activation) and is
  saved with the weights: model files from before it load as ReLU, as trained.
* Fully convolutional with 'same' padding: any H, W, no padding needed.

:class:`PatchDiscriminator` is the Markovian discriminator of section 2.2
(PatchGAN [5]); it is used only in training and is not registered.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from inloop.errors import ParamsError
from inloop.models.glfusion import SqueezeExcitation
from inloop.models.registry import ResidualFilter, check_int, register

GRADIENT_EPS = 1e-12


def gradient_map(f: torch.Tensor, eps: float = GRADIENT_EPS) -> torch.Tensor:
    """G(f), section 2.1.1: ``sqrt((f[x-1,y] - f[x+1,y])^2 + (f[x,y-1] - f[x,y+1])^2)`` per plane.

    ``f`` is (N, C, H, W); x runs along W, y along H. Borders replicate the edge
    sample (so the outermost difference is one-sided). ``eps`` under the root
    keeps d/df finite at flat spots (G is then sqrt(eps) = 1e-6 instead of 0).
    Computed in float32 whatever the input dtype.
    """
    p = F.pad(f.float(), (1, 1, 1, 1), mode="replicate")
    dx = p[..., 1:-1, :-2] - p[..., 1:-1, 2:]   # f[x-1, y] - f[x+1, y]
    dy = p[..., :-2, 1:-1] - p[..., 2:, 1:-1]   # f[x, y-1] - f[x, y+1]
    return torch.sqrt(dx * dx + dy * dy + eps)


class DenseResidualUnit(nn.Module):
    """DRU [8] as used in sections 2.1.1/2.1.2 (internals chosen here, see the module docstring).

    ``layers`` conv3x3 + ReLU, layer i seeing ``cat[x, f_1, ..., f_{i-1}]`` and
    producing ``growth`` channels; a 1x1 conv fuses ``channels + layers*growth``
    back to ``channels``; output ``x + fuse(...)``.
    """

    def __init__(self, channels: int, layers: int, growth: int):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(channels + i * growth, growth, 3, padding=1) for i in range(layers)
        )
        self.fuse = nn.Conv2d(channels + layers * growth, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in self.convs:
            feats.append(F.relu(conv(torch.cat(feats, dim=1)), inplace=True))
        return x + self.fuse(torch.cat(feats, dim=1))


class DRUSE(nn.Sequential):
    """A grad block (2.1.1) or a pixel unit (2.1.2): DRU followed by an SE block [4]."""

    def __init__(self, channels: int, layers: int, growth: int, reduction: int):
        super().__init__(DenseResidualUnit(channels, layers, growth), SqueezeExcitation(channels, reduction))


class Trunk(nn.Module):
    """A branch trunk: head conv, ``blocks`` DRU+SE blocks, long skip from the head."""

    def __init__(self, in_channels: int, channels: int, blocks: int, layers: int, growth: int, reduction: int):
        super().__init__()
        self.head = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.body = nn.Sequential(*[DRUSE(channels, layers, growth, reduction) for _ in range(blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        return h + self.body(h)


class HeadActivation(nn.Module):
    """LeakyReLU whose negative slope is a buffer, so the model file says which activation it was trained with."""

    def __init__(self, slope: float):
        super().__init__()
        self.register_buffer("slope", torch.tensor(float(slope)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x >= 0, x, x * self.slope.to(x.dtype))


@register("spilf")
class SPiLF(ResidualFilter):
    """SPiLF generator, section 2.1, Fig. 1: ``Y = X + R``; the gradient branch also gives ``G^``.

    Keywords (none of the sizes is given in the paper; defaults are this
    project's full-size choice, the demo uses far smaller ones):

    - ``in_channels`` (1): planes filtered jointly (1 = one plane, e.g. luma);
    - ``channels`` (64): feature width of both branches and the fusion;
    - ``grad_blocks`` (4): grad blocks (DRU + SE) in the gradient branch (2.1.1);
    - ``pixel_units`` (8): pixel units (DRU + SE) in the pixel branch (2.1.2);
    - ``dru_layers`` (4) and ``growth`` (32): depth and growth rate of every DRU;
    - ``fusion_units`` (1): DRUs in the fusion block (2.1.2);
    - ``reduction`` (16): SE bottleneck reduction (SE paper [4]'s default);
    - ``out_slope`` (0.2): negative slope of the activation between the two
      output convs (ESRGAN [7]'s LeakyReLU; 0 = ReLU, 1 = none; module docstring).

    ``forward(x)`` -> Y (N, C, H, W), any H, W; ``forward(x, return_gradient=True)``
    -> ``(Y, G^)`` with G^ the reconstructed gradient map of Y's planes, used by
    the structural loss (through ``forward`` so DDP / torch.compile wrappers see it).
    """

    # model files written before ``out_slope`` existed had a ReLU head (slope 0)
    legacy_buffers = {**ResidualFilter.legacy_buffers, "out.1.slope": 0.0}

    def __init__(
        self,
        in_channels: int = 1,
        channels: int = 64,
        grad_blocks: int = 4,
        pixel_units: int = 8,
        dru_layers: int = 4,
        growth: int = 32,
        fusion_units: int = 1,
        reduction: int = 16,
        out_slope: float = 0.2,
    ):
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, 1)
        check_int("channels", channels, 1)
        check_int("grad_blocks", grad_blocks, 1)
        check_int("pixel_units", pixel_units, 1)
        check_int("dru_layers", dru_layers, 1)
        check_int("growth", growth, 1)
        check_int("fusion_units", fusion_units, 1)
        check_int("reduction", reduction, 1)
        if isinstance(out_slope, bool) or not isinstance(out_slope, (int, float)) or not 0 <= out_slope <= 1:
            raise ParamsError(f"out_slope: expected a number in [0, 1] (0 = ReLU, 1 = no activation), got {out_slope!r}")
        self.grad_branch = Trunk(in_channels, channels, grad_blocks, dru_layers, growth, reduction)   # 2.1.1
        self.grad_out = nn.Conv2d(channels, in_channels, 3, padding=1)                              # -> dG
        self.pixel_branch = Trunk(in_channels, channels, pixel_units, dru_layers, growth, reduction)  # 2.1.2
        self.fusion = nn.Sequential(                                                                  # 2.1.2
            nn.Conv2d(2 * channels, channels, 1),
            *[DenseResidualUnit(channels, dru_layers, growth) for _ in range(fusion_units)],
        )
        self.out = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), HeadActivation(out_slope),
            nn.Conv2d(channels, in_channels, 3, padding=1),
        )

    @property
    def last_conv(self) -> nn.Conv2d:
        return self.out[-1]

    def _both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = gradient_map(x).to(x.dtype)
        f_g = self.grad_branch(g)
        f_p = self.pixel_branch(x)
        r = self.out(self.fusion(torch.cat([f_p, f_g], dim=1)))
        return r, g + self.grad_out(f_g)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        return self._both(x)[0]

    def forward(self, x: torch.Tensor, return_gradient: bool = False):
        if not return_gradient:
            return super().forward(x)
        r, g_hat = self._both(x)  # pad_multiple is 1: nothing to pad or crop
        return x + self.residual_scale * r, g_hat


class PatchDiscriminator(nn.Module):
    """Markovian (PatchGAN [5]) discriminator C_Pat of section 2.2: one logit per patch.

    pix2pix's ``NLayerDiscriminator``: conv4x4/2 (``channels``) + LeakyReLU(0.2),
    then ``layers - 1`` conv4x4/2 + BN + LeakyReLU doubling the width (at most
    8 x ``channels``), one conv4x4/1 + BN + LeakyReLU, and a conv4x4/1 to one
    channel: raw logits (the sigmoid of D_Pat is in the loss). With the
    defaults (64, 3) each output sees a 70x70 patch. Input (N, C, H, W) with
    H, W >= 3 * 2**layers; output (N, 1, ~H/2**layers - 2, ~W/2**layers - 2).
    """

    def __init__(self, in_channels: int = 1, channels: int = 64, layers: int = 3):
        super().__init__()
        check_int("in_channels", in_channels, 1)
        check_int("disc_channels", channels, 1)
        self.layers = check_int("disc_layers", layers, 1)
        seq: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        width = channels
        for n in range(1, layers + 1):
            nxt = channels * min(2**n, 8)
            stride = 2 if n < layers else 1
            seq += [nn.Conv2d(width, nxt, 4, stride, 1, bias=False), nn.BatchNorm2d(nxt),
                    nn.LeakyReLU(0.2, inplace=True)]
            width = nxt
        seq.append(nn.Conv2d(width, 1, 4, 1, 1))
        self.body = nn.Sequential(*seq)

    @property
    def min_size(self) -> int:
        return 3 * 2**self.layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < self.min_size:
            raise ValueError(f"PatchDiscriminator with {self.layers} stride-2 layers needs patches of at least "
                             f"{self.min_size}x{self.min_size}, got {tuple(x.shape[-2:])}; use larger patches "
                             "(patches.patch_size) or fewer train.spilf.disc_layers")
        return self.body(x)
