"""Initialisation of section IV.B: LSUV [47] for every layer, distortion matching for the last one.

LSUV (Mishkin & Matas, "All you need is a good init", ICLR 2016): every conv /
linear weight is set orthonormal (bias zero), then, layer by layer in the order
the forward pass reaches them, the weight is divided by the standard deviation of
that layer's output on a data batch until the std is 1 within ``tol``. The
layer-by-layer order is done within one forward pass (a hook rescales each layer
and its output before the next layer runs), repeated until every layer is within
``tol``: the same result as the textbook loop at a fraction of the forwards.
A module must run once per forward (the CSA MLP pools avg and max in one call).

IV.B for the layer producing R: "the parameters are initialized under the
principle that the distribution of its outputs is the same to the groundtruth
distortion ... by scaling the parameters with the standard variance difference
between the actual output and the groundtruth distortion". Per output plane the
last conv's weight is scaled so that std(R) == std(target - input) on the batch,
and its bias set so that the means agree too.

The forwards run in training mode (as the first training step will: BN uses
batch statistics) and every buffer (BN running statistics) is restored
afterwards, so only weights and biases change.
"""

from __future__ import annotations

import torch
from torch import nn

from inloop.errors import InloopError


@torch.no_grad()
def lsuv_init(
    model: nn.Module,
    x_batch: torch.Tensor,
    target_batch: torch.Tensor | None = None,
    *,
    tol: float = 0.02,
    max_iter: int = 10,
    residual_std: float = 1e-2,
) -> dict[str, float]:
    """LSUV-initialise ``model`` on ``x_batch`` and scale its last layer (section IV.B).

    ``model`` must expose ``last_conv`` (every :class:`ResidualFilter` does) and
    return ``Y = X + R``. With ``target_batch`` (the original frames for
    ``x_batch``) std(R) is matched to std(target - x) per plane; without it R is
    scaled to ``residual_std`` (a small residual, so the untrained filter is close
    to the identity). A clip network's ``x_batch`` is (N, T, C, H, W) and its R
    is measured against the centre frame. Returns ``{layer name: output std after init}``; the last
    layer's entry is std(R).
    """
    last = getattr(model, "last_conv", None)
    if not isinstance(last, nn.Conv2d):
        raise InloopError(f"{type(model).__name__} has no last_conv; lsuv_init needs the layer producing R")
    device = next(model.parameters()).device
    x = x_batch.to(device)
    # Clip networks (N, T, C, H, W) filter the centre frame: R = Y - X_centre.
    xc = x[:, x.shape[1] // 2] if x.dim() == 5 else x
    was_training = model.training
    saved = {k: v.clone() for k, v in model.named_buffers()}
    names = {m: n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    model.train()
    try:
        for m in names:
            nn.init.orthogonal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        stds: dict[str, float] = {}

        def rescale(mod, inp, out):
            # Sequential LSUV in one forward: scale this layer now and hand the rescaled
            # output (exactly what the scaled layer computes: its bias is zero) downstream.
            std = float(out.detach().float().std())
            stds[names[mod]] = std
            if std > 1e-8 and abs(std - 1.0) > tol:  # dead / constant output: leave it
                mod.weight.div_(std)
                return out / std
            return None

        hooks = [m.register_forward_hook(rescale) for m in names if m is not last]
        try:
            for _ in range(max_iter):
                model(x)
                if all(abs(s - 1.0) <= tol or not s > 1e-8 for s in stds.values()):
                    break
        finally:
            for h in hooks:
                h.remove()

        r = (model(x) - xc).float()  # last bias is zero, so R is linear in last.weight
        dims = [d for d in range(r.ndim) if d != 1]
        r_std, r_mean = r.std(dim=dims), r.mean(dim=dims)
        if target_batch is not None:
            d = (target_batch.to(device) - xc).float()
            if d.shape != r.shape:
                raise InloopError(f"lsuv_init: target_batch shape {tuple(d.shape)} != x_batch shape {tuple(r.shape)}")
            want_std, want_mean = d.std(dim=dims), d.mean(dim=dims)
        else:
            want_std, want_mean = torch.full_like(r_std, residual_std), torch.zeros_like(r_mean)
        scale = torch.where(r_std > 1e-12, want_std / r_std.clamp_min(1e-12), torch.ones_like(r_std))
        last.weight.mul_(scale.to(last.weight.dtype).view(-1, 1, 1, 1))
        if last.bias is not None:
            last.bias.copy_(want_mean - scale * r_mean)
        stds[names[last]] = float((model(x) - xc).float().std())
    finally:
        for k, v in model.named_buffers():
            v.copy_(saved[k])
        model.train(was_training)
    return stds
