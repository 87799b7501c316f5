"""Small, well-known baselines from the GL-Fusion comparison (section II, Table VI).

All are fully convolutional with 'same' padding (so any H, W works without
padding) and residual: ``Y = X + R`` on a normalised frame X in [0, 1].
"""

from __future__ import annotations

import torch
from torch import nn

from inloop.models.registry import ResidualFilter, check_int, conv_bn_relu, register


@register("arcnn")
class ARCNN(ResidualFilter):
    """AR-CNN (Dong et al., ICCV 2015; ref. [5]): four convolutions 9-7-1-5, widths 64-32-16-out.

    conv9x9(64)+ReLU -> conv7x7(32)+ReLU -> conv1x1(16)+ReLU -> conv5x5(out).
    Deviations from the original: 'same' padding (the original used valid
    convolutions and cropped the target) and a global residual connection
    (the original predicted the image itself), so every model here shares
    ``Y = X + R`` and the IV.B output initialisation.
    """

    def __init__(self, in_channels: int = 1):
        super().__init__()
        check_int("in_channels", in_channels, 1)
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 64, 9, padding=4), nn.ReLU(inplace=True),
            nn.Conv2d(64, 32, 7, padding=3), nn.ReLU(inplace=True),
            nn.Conv2d(32, 16, 1), nn.ReLU(inplace=True),
        )
        self.tail = nn.Conv2d(16, in_channels, 5, padding=2)

    @property
    def last_conv(self) -> nn.Conv2d:
        return self.tail

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.body(x))


@register("dncnn")
class DnCNN(ResidualFilter):
    """DnCNN (Zhang et al., IEEE TIP 2017): residual learning with BN.

    conv3x3(channels)+ReLU, ``depth - 2`` x [conv3x3(channels)+BN+ReLU],
    conv3x3(out); depth 17 and 64 channels as in the paper (DnCNN-S). The network
    predicts the residual; DnCNN writes ``x = y - R(y)``, here ``Y = X + R`` (the
    sign is absorbed by the last layer).
    """

    def __init__(self, in_channels: int = 1, depth: int = 17, channels: int = 64):
        super().__init__()
        check_int("in_channels", in_channels, 1)
        check_int("depth", depth, 2)
        check_int("channels", channels, 1)
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU(inplace=True),
            *[conv_bn_relu(channels, channels) for _ in range(depth - 2)],
        )
        self.tail = nn.Conv2d(channels, in_channels, 3, padding=1)

    @property
    def last_conv(self) -> nn.Conv2d:
        return self.tail

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.body(x))


class _Parallel(nn.Module):
    """Two convolutions of different kernel sizes on the same input, ReLU, concatenated."""

    def __init__(self, cin: int, a: tuple[int, int], b: tuple[int, int]):
        super().__init__()
        (ca, ka), (cb, kb) = a, b
        self.a = nn.Conv2d(cin, ca, ka, padding=ka // 2)
        self.b = nn.Conv2d(cin, cb, kb, padding=kb // 2)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(torch.cat([self.a(x), self.b(x)], dim=1))


@register("vrcnn")
class VRCNN(ResidualFilter):
    """VRCNN (Dai, Liu, Wu, MMM 2017; ref. [9]): variable-filter-size residual CNN for HEVC post-processing.

    conv5x5(64)+ReLU -> [conv5x5(16) || conv3x3(32)]+ReLU -> [conv3x3(16) || conv1x1(32)]+ReLU
    -> conv3x3(out), plus the global residual ``Y = X + R``.
    """

    def __init__(self, in_channels: int = 1):
        super().__init__()
        check_int("in_channels", in_channels, 1)
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 64, 5, padding=2), nn.ReLU(inplace=True),
            _Parallel(64, (16, 5), (32, 3)),
            _Parallel(48, (16, 3), (32, 1)),
        )
        self.tail = nn.Conv2d(48, in_channels, 3, padding=1)

    @property
    def last_conv(self) -> nn.Conv2d:
        return self.tail

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.body(x))
