"""TinyFilter: a plain ``torch.nn.Module`` that keeps inloop's network contract (inloop.models.contract).

* built from its ``models.<name>`` settings as keywords (``channels``, ``layers``);
* input: a luma frame in [0, 1], shape (N, 1, H, W), any H and W; output: the filtered frame, same
  shape and dtype (here ``X + R(X)``, with R's last layer at zero, so the untrained filter is the identity);
* trained by inloop with its own initialisation (it is not an ``inloop.models.ResidualFilter``).
"""

from __future__ import annotations

from torch import nn


class TinyFilter(nn.Module):
    in_channels = 1

    def __init__(self, channels: int = 16, layers: int = 3):
        super().__init__()
        if layers < 2:
            raise ValueError(f"layers: at least 2, got {layers}")
        body: list[nn.Module] = [nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(layers - 2):
            body += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
        body.append(nn.Conv2d(channels, 1, 3, padding=1))
        nn.init.zeros_(body[-1].weight)
        nn.init.zeros_(body[-1].bias)
        self.body = nn.Sequential(*body)

    def forward(self, x):
        return x + self.body(x)
