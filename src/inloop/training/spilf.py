"""SPiLF training: its four losses and the two-stage task (paper 001, sections 2.2 and 3.2).

``L_total = l1 * L_1 + lpips * L_LPIPS + adv * L_GAN + struct * L_ST`` (section 2.2, the
last equation), with the weights of Table 1:

=====================  ====  =====  =====  ======
variant                l1    lpips  adv    struct
=====================  ====  =====  =====  ======
arabica                1     0      0      5e-3
arabica-perceptual     1     50     5e-2   5e-3
=====================  ====  =====  =====  ======

* L_1: mean absolute error between the output Y^ and the original Y.
* L_LPIPS: LPIPS-Alex v0.1 from :mod:`inloop.models.lpips` (never
  re-implemented here), on [0, 1] images with ``normalize=True``. A plane that
  is not RGB (the usual one-plane luma filter) is fed as grey (repeated to three
  channels); with C != 3 planes each is scored as grey and the scores averaged.
  When its weights are unavailable the term is dropped with one warning and
  :attr:`SPiLFTask.lpips_available` is ``False`` (the run report says so); the
  other losses still train.
* L_GAN: relativistic average PatchGAN (section 2.2, eqs. for D_Pat, L_D, L_G).
  With C = C_Pat the raw patch logits and the expectation over x_f taken over
  every patch of the batch (each patch is a sample of the Markovian
  discriminator), ``z_r = C(x_r) - E[C(x_f)]`` and ``z_f = C(x_f) - E[C(x_r)]``:

  - ``D_Pat(x_r, x_f) = sigmoid(z_r)``. The paper prints
    ``sigma(C_Pat(x_r - E[C_Pat(x_f)]))``, which subtracts a logit from an image;
    read as ESRGAN [7] defines it, ``sigma(C(x_r) - E[C(x_f)])``.
  - ``L_D = -E[log D_Pat(x_r, x_f)] - E[log(1 - D_Pat(x_f, x_r))]``
    = ``BCE(z_r, 1) + BCE(z_f, 0)``: exactly the paper's equation.
  - ``L_G``: the paper prints ``-E[1 - log(D_Pat(x_r, x_f))] - E[log(D_Pat(x_f, x_r))]``.
    Taken literally (``gan_form: literal``) it equals
    ``-1 - BCE(z_r, 1) + BCE(z_f, 1)``, which is unbounded below (it rewards
    z_r -> -inf without limit). The default (``gan_form: ragan``) reads the
    ``1 - log(...)`` as ``log(1 - ...)``, the symmetric counterpart of L_D and
    ESRGAN's eq. (2) that the paper cites for this loss [7]:
    ``L_G = -E[log(1 - D_Pat(x_r, x_f))] - E[log D_Pat(x_f, x_r)]`` = ``BCE(z_r, 0) + BCE(z_f, 1)``.

  BCE is ``binary_cross_entropy_with_logits`` (log-sigmoid, stable for large
  logits), mean over patches. No 1/2 factors: the paper's equations have none.
* L_ST: "structural loss ... between the output and the ground truth with
  gradient maps" (section 2.2) on G of section 2.1.1:
  ``L_ST = mean|G(Y^) - G(Y)| + mean|G^ - G(Y)|``, the second term supervising
  the gradient branch's reconstructed map G^ (2.1: the branch "aims to produce
  gradient maps as similar as possible to their uncompressed counterparts").
  Both L1 as in SPSR [6], whose gradient-map losses the paper builds on.

Two stages (section 3.2.1): steps 1..``stage1_steps`` optimise ``l1*L_1 + struct*L_ST``
only ("until the entire network converges": a step count here), later steps the
total loss. The discriminator is trained (one Adam step on L_D after each
generator step, ESRGAN's order) only in stage 2 and only when ``adv > 0``.

Optimisers (section 3.2.3): Adam with betas (0.9, 0.999) for the generator
(the run's ``train.lr``, paper 1e-4) and the discriminator (``disc_lr``, default = lr). "decreased
by a factor of 2 when evaluation performance becomes stable": a
``ReduceLROnPlateau(factor=0.5, patience=plateau_patience)`` per optimiser,
stepped every ``plateau_window`` steps with the mean generator L_1 of that
window. The training L_1 stands in for the evaluation performance because the
task sees no validation data, and L_1 is the distortion validation PSNR
measures; the GAN/LPIPS terms are not monotone in quality and would halve the
rate at random. At the stage switch the plateau's best value and bad-window
count are reset (L_1 is expected to rise when the perceptual terms come in)
and the learning rate is kept.

Several processes (torchrun; the generator is DDP-wrapped by the caller): the
discriminator is data-parallel too, by hand rather than by a DDP wrapper (it is
called on real and fake batches before one backward, and frozen inside the
generator's step): rank 0's weights are broadcast before its first step and its
gradients are averaged over the ranks after each backward, so every rank holds
the same discriminator. The plateau windows average L_1 over the ranks, so every
rank halves its learning rates at the same step (else the replicas would drift
apart). Batch norm statistics stay per rank, as in DDP without SyncBatchNorm.

Resume: the step counter (hence the stage), the partial plateau window and both
plateau schedulers are in :meth:`SPiLFTask.schedulers`, which the Trainer saves
in and restores from its checkpoints; the networks and optimisers are in
``modules()``/``optimizers()``. A resumed run is bit-exact on CPU.

Stage 1 from another training (``stage1_from``): Arabica's loss is stage 1's (``l1 * L_1 + struct * L_ST``),
so an ArabicaPerceptual model of the same network, patch store, seed and settings runs, step for step, the
same first ``stage1_steps`` steps as the Arabica model beside it. With ``stage1_from: <that train.models
entry>`` the source's job keeps its state at step ``stage1_steps`` (generator, its Adam, the plateau
schedule, the batch stream, the history) in its model file and this job continues from it: the same model
bit for bit as running stage 1 again (tested), without its cost. The discriminator is not trained in
stage 1: it is built and initialised as in a run from step 0, and its plateau, which observed the same
L_1 windows as the generator's, takes the generator's plateau state with its own rate (``disc_lr`` times
the generator's halvings). :func:`stage1_mismatch` refuses a source whose first steps differ.

Params (``train.spilf``; :func:`spilf_config` checks them and names a bad key):
``variant``, ``weights: {l1, lpips, adv, struct}`` (any subset; overrides the
variant's values), ``stage1_steps``, ``stage1_from``, ``disc_lr``, ``plateau_patience``,
``plateau_window``, ``gan_form`` (``ragan`` | ``literal``), ``disc_channels``,
``disc_layers``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ParamsError
from ..models.registry import check_choice, check_int
from ..models.spilf import PatchDiscriminator, gradient_map
from .trainer import _unwrap

def _world() -> int:
    """Processes in the default process group (1 without torch.distributed)."""
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


# Table 1 (section 3.2.2): (lambda_1, lambda_2, lambda_3, lambda_4) = (L1, LPIPS, GAN, ST)
VARIANTS: dict[str, dict[str, float]] = {
    "arabica": {"l1": 1.0, "lpips": 0.0, "adv": 0.0, "struct": 5e-3},
    "arabica-perceptual": {"l1": 1.0, "lpips": 50.0, "adv": 5e-2, "struct": 5e-3},
}
WEIGHT_KEYS = ("l1", "lpips", "adv", "struct")
GAN_FORMS = ("ragan", "literal")
PLATEAU_FACTOR = 0.5  # section 3.2.3: "decreased by a factor of 2"
ADAM_BETAS = (0.9, 0.999)  # section 3.2.3
PAPER_LR = 1e-4  # section 3.2.3; the run's rate is train.lr

DEFAULTS: dict[str, Any] = {
    "variant": "arabica-perceptual",
    "weights": None,
    "stage1_steps": 1000,
    "stage1_from": None,    # a train.models entry whose first stage1_steps steps are this stage 1 (module doc)
    "disc_lr": None,        # None: the generator's rate (train.lr)
    "plateau_patience": 5,  # windows without improvement before halving
    "plateau_window": 100,  # steps per plateau observation
    "gan_form": "ragan",
    "disc_channels": 64,    # pix2pix's 70x70 PatchGAN [5]
    "disc_layers": 3,
    # L_1 and L_ST in 8-bit sample units (x 255 on [0, 1] samples). The paper does not say; Table 1's
    # weights (1, 50, 5e-2, 5e-3) only balance that way: on [0, 1] an L_1 of ~0.02 would be dwarfed
    # by 5e-2 x L_G (~0.7-1.4) and 50 x LPIPS (~0.1-0.3), and the demo's perceptual runs fell apart
    # in stage 2 (measured: docs/results.md, "the demo's settings"). Set 1 for losses on [0, 1].
    "pixel_scale": 255.0,
}


@dataclass(frozen=True)
class SPiLFConfig:
    variant: str
    weights: dict[str, float]
    stage1_steps: int
    lr: float
    disc_lr: float
    plateau_patience: int
    plateau_window: int
    gan_form: str
    disc_channels: int
    disc_layers: int
    pixel_scale: float = 255.0
    stage1_from: str | None = None


def _positive_float(key: str, value: Any, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (value == 0 and not allow_zero):
        raise ParamsError(f"{key}: expected a {'non-negative' if allow_zero else 'positive'} number, got {value!r}")
    return float(value)


def spilf_config(params: dict | None = None, prefix: str = "train.spilf", lr: float = PAPER_LR) -> SPiLFConfig:
    """Check the ``train.spilf`` params (missing keys take :data:`DEFAULTS`); ParamsError names a bad key.
    ``lr`` is the generator's learning rate: the run's ``train.lr`` (one key for every network's rate)."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        hint = "; the learning rate is train.lr (models.<name>.train.lr)" if unknown[0] == "lr" else ""
        raise ParamsError(f"{prefix}.{unknown[0]}: not a SPiLF training parameter; accepted: {', '.join(DEFAULTS)}"
                          + hint)
    p = {**DEFAULTS, **params}

    def key(k: str) -> str:
        return f"{prefix}.{k}"

    variant = check_choice(key("variant"), p["variant"], tuple(VARIANTS))
    weights = dict(VARIANTS[variant])
    explicit = p["weights"]
    if explicit is not None:
        if not isinstance(explicit, dict):
            raise ParamsError(f"{key('weights')}: expected a mapping of {', '.join(WEIGHT_KEYS)}, got {explicit!r}")
        for k, v in explicit.items():
            if k not in WEIGHT_KEYS:
                raise ParamsError(f"{key('weights')}.{k}: not a loss weight; accepted: {', '.join(WEIGHT_KEYS)}")
            weights[k] = _positive_float(f"{key('weights')}.{k}", v, allow_zero=True)
    if weights["l1"] == 0 and weights["struct"] == 0:
        raise ParamsError(f"{key('weights')}: l1 and struct are both 0, so stage 1 (L_1 + L_ST) has nothing to train")
    lr = _positive_float(prefix.rsplit(".", 1)[0] + ".lr", lr)
    disc_lr = lr if p["disc_lr"] is None else _positive_float(key("disc_lr"), p["disc_lr"])
    return SPiLFConfig(
        variant=variant,
        weights=weights,
        stage1_steps=check_int(key("stage1_steps"), p["stage1_steps"], 0),
        lr=lr,
        disc_lr=disc_lr,
        plateau_patience=check_int(key("plateau_patience"), p["plateau_patience"], 0),
        plateau_window=check_int(key("plateau_window"), p["plateau_window"], 1),
        gan_form=check_choice(key("gan_form"), p["gan_form"], GAN_FORMS),
        disc_channels=check_int(key("disc_channels"), p["disc_channels"], 1),
        disc_layers=check_int(key("disc_layers"), p["disc_layers"], 1),
        pixel_scale=_positive_float(key("pixel_scale"), p["pixel_scale"]),
        stage1_from=_stage1_from(key("stage1_from"), p["stage1_from"]),
    )


def _stage1_from(key: str, value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ParamsError(f"{key}: expected a train.models entry (or null), got {value!r}")
    return value


# Train settings a stage-1 source may differ in: they act after stage 1 (steps, SPiLF's own block, checked
# below), say what a job is given rather than what a step computes, or only when and what is logged.
_NOT_IN_STAGE1 = {"steps", "spilf", "checkpoint_every", "val_every", "log_every", "val_batch_size"}


def stage1_mismatch(train: dict, source_train: dict, job_keys: tuple[str, ...] = ()) -> str | None:
    """Why the first ``stage1_steps`` steps of a training with the settings ``source_train`` are not the stage 1
    of one with ``train`` (both merged ``train`` sections), naming the differing key; None when they are
    the same steps (``stage1_from``, see the module docstring). ``job_keys``: keys that never change a step."""
    if train.get("warm_start") or source_train.get("warm_start"):
        return "train.warm_start: a warm-started training does not run stage 1 from the initialisation"
    for k in sorted((set(train) | set(source_train)) - _NOT_IN_STAGE1 - set(job_keys) - {"warm_start"}):
        if train.get(k) != source_train.get(k):
            return f"train.{k}: {train.get(k)!r} here, {source_train.get(k)!r} in the source"
    lr = float(train.get("lr", PAPER_LR))
    mine, theirs = spilf_config(train.get("spilf"), lr=lr), spilf_config(source_train.get("spilf"), lr=lr)
    for k in ("l1", "struct"):
        if mine.weights[k] != theirs.weights[k]:
            return f"train.spilf.weights.{k}: {mine.weights[k]:g} here, {theirs.weights[k]:g} in the source"
    for k in ("plateau_window", "plateau_patience", "pixel_scale"):
        if getattr(mine, k) != getattr(theirs, k):
            return f"train.spilf.{k}: {getattr(mine, k)!r} here, {getattr(theirs, k)!r} in the source"
    if theirs.stage1_steps < mine.stage1_steps:  # the source's stage switch would reset its plateau earlier
        return (f"train.spilf.stage1_steps: {mine.stage1_steps} here, {theirs.stage1_steps} in the source (its "
                "stage 1 must last at least as long)")
    if int(source_train.get("steps", 0)) < mine.stage1_steps:
        return f"train.steps: the source runs {source_train.get('steps')}, fewer than stage1_steps {mine.stage1_steps}"
    return None


# --------------------------------------------------------------------------- losses


def structural_loss(out: torch.Tensor, grad_hat: torch.Tensor | None, target: torch.Tensor) -> torch.Tensor:
    """L_ST (section 2.2) on gradient maps G (section 2.1.1): ``mean|G(out) - G(target)|``
    plus ``mean|grad_hat - G(target)|`` for the gradient branch's map when given."""
    g_t = gradient_map(target)
    loss = F.l1_loss(gradient_map(out), g_t)
    if grad_hat is not None:
        loss = loss + F.l1_loss(grad_hat.float(), g_t)
    return loss


def _relativistic_logits(c_real: torch.Tensor, c_fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``z_r = C(x_r) - E[C(x_f)]``, ``z_f = C(x_f) - E[C(x_r)]`` (D_Pat of section 2.2 before the sigmoid)."""
    return c_real - c_fake.mean(), c_fake - c_real.mean()


def ragan_d_loss(c_real: torch.Tensor, c_fake: torch.Tensor) -> torch.Tensor:
    """L_D of section 2.2: ``-E[log D_Pat(x_r, x_f)] - E[log(1 - D_Pat(x_f, x_r))]``, from patch logits."""
    z_r, z_f = _relativistic_logits(c_real, c_fake)
    return (F.binary_cross_entropy_with_logits(z_r, torch.ones_like(z_r))
            + F.binary_cross_entropy_with_logits(z_f, torch.zeros_like(z_f)))


def ragan_g_loss(c_real: torch.Tensor, c_fake: torch.Tensor, form: str = "ragan") -> torch.Tensor:
    """L_G of section 2.2 from patch logits (``c_real`` needs no gradient).

    ``form="ragan"``: ``-E[log(1 - D_Pat(x_r, x_f))] - E[log D_Pat(x_f, x_r)]`` (ESRGAN [7]);
    ``form="literal"``: ``-E[1 - log D_Pat(x_r, x_f)] - E[log D_Pat(x_f, x_r)]`` as printed.
    """
    z_r, z_f = _relativistic_logits(c_real, c_fake)
    fake_term = F.binary_cross_entropy_with_logits(z_f, torch.ones_like(z_f))  # -E[log D(x_f, x_r)]
    if form == "literal":
        return -(1.0 - F.logsigmoid(z_r)).mean() + fake_term
    return F.binary_cross_entropy_with_logits(z_r, torch.zeros_like(z_r)) + fake_term


def lpips_loss(model: nn.Module, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean LPIPS between ``out`` and ``target`` in [0, 1] (grey planes repeated to RGB; see the module doc)."""
    if out.shape[1] == 3:
        return model(out, target, normalize=True).mean()
    n, c = out.shape[:2]
    grey = lambda t: t.reshape(n * c, 1, *t.shape[2:]).expand(-1, 3, -1, -1)  # noqa: E731
    return model(grey(out), grey(target), normalize=True).mean()


# --------------------------------------------------------------------------- task


class StageSchedule:
    """Step counter, stage, partial plateau window and the plateau schedulers' stepping.

    Lives in ``SPiLFTask.schedulers()`` so the Trainer's checkpoint holds it.
    """

    def __init__(self, stage1_steps: int, window: int, plateaus: list):
        self.stage1_steps = stage1_steps
        self.window = window
        self.plateaus = plateaus
        self.step = 0
        self.window_sum: torch.Tensor | None = None
        self.window_count = 0

    def stage_of(self, step: int) -> int:
        return 1 if step <= self.stage1_steps else 2

    @property
    def stage(self) -> int:
        """The stage of the last step taken (1 before any)."""
        return self.stage_of(max(self.step, 1))

    def begin_step(self) -> int:
        """Count a step; at the first stage-2 step reset the plateaus' memory. Returns the stage."""
        self.step += 1
        stage = self.stage_of(self.step)
        if stage == 2 and self.stage_of(self.step - 1) == 1 and self.step > 1:
            for p in self.plateaus:
                p.best, p.num_bad_epochs, p.cooldown_counter = p.mode_worse, 0, 0
            self.window_sum, self.window_count = None, 0
        return stage

    def observe(self, l1: torch.Tensor) -> None:
        """Add this step's L_1; every ``window`` steps step the plateaus with the window mean."""
        self.window_sum = l1 if self.window_sum is None else self.window_sum + l1
        self.window_count += 1
        if self.window_count == self.window:
            mean = self.window_sum / self.window_count
            if _world() > 1:  # the mean over the ranks: every replica halves at the same step
                mean = mean.detach().clone()
                torch.distributed.all_reduce(mean)
                mean = mean / _world()
            mean = mean.item()
            for p in self.plateaus:
                p.step(mean)
            self.window_sum, self.window_count = None, 0

    def state_dict(self) -> dict:
        return {"step": self.step, "window_count": self.window_count,
                "window_sum": None if self.window_sum is None else self.window_sum.detach().clone()}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.window_count = int(state["window_count"])
        self.window_sum = state["window_sum"]


class SPiLFTask:
    """Generator + patch discriminator, two Adam optimisers, two-stage schedule (see the module docstring).

    ``SPiLFTask(generator, train_params, *, lpips=None, lpips_params=None)``:

    - ``generator``: a :class:`inloop.models.spilf.SPiLF` (possibly DDP/compile
      wrapped; it must accept ``return_gradient=True`` and have ``in_channels``);
    - ``train_params``: the ``train.spilf`` block (see :func:`spilf_config`);
    - ``lr``: the generator's learning rate (``train.lr``; the discriminator's is ``disc_lr``, default the same);
    - ``lpips``: an LPIPS module to use as is (tests); when None and the LPIPS
      weight is > 0 the real weights are loaded with
      :func:`inloop.models.lpips.load_lpips` (``lpips_params``: the full
      params, whose ``metrics.lpips`` section says where they are).

    Attributes for the run report: ``lpips_available`` (True / False, None
    when the variant does not use LPIPS), ``lpips_unavailable_reason``,
    ``config`` (the checked :class:`SPiLFConfig`).
    """

    def __init__(self, generator: nn.Module, train_params: dict | None = None, *, lpips: nn.Module | None = None,
                 lpips_params: dict | None = None, lr: float = PAPER_LR):
        self.config = cfg = spilf_config(train_params, lr=lr)
        self.generator = generator
        self._bare_generator = _unwrap(generator)
        in_channels = int(getattr(self._bare_generator, "in_channels", 1))
        w = cfg.weights
        self.opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.lr, betas=ADAM_BETAS)
        self.discriminator = self.opt_d = None
        plateaus = [torch.optim.lr_scheduler.ReduceLROnPlateau(self.opt_g, factor=PLATEAU_FACTOR,
                                                               patience=cfg.plateau_patience)]
        if w["adv"] > 0:
            self.discriminator = PatchDiscriminator(in_channels, cfg.disc_channels, cfg.disc_layers)
            self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.disc_lr, betas=ADAM_BETAS)
            plateaus.append(torch.optim.lr_scheduler.ReduceLROnPlateau(self.opt_d, factor=PLATEAU_FACTOR,
                                                                       patience=cfg.plateau_patience))
        self.plateaus = plateaus
        self._discriminator_synced = False
        self.schedule = StageSchedule(cfg.stage1_steps, cfg.plateau_window, plateaus)

        self.lpips = None
        self.lpips_available: bool | None = None
        self.lpips_unavailable_reason: str | None = None
        if w["lpips"] > 0:
            if lpips is None:
                from ..models.lpips import LpipsUnavailable, load_lpips

                try:
                    lpips = load_lpips(lpips_params)
                except LpipsUnavailable as exc:
                    self.lpips_unavailable_reason = str(exc)
                    warnings.warn(f"SPiLF: the LPIPS loss (weight {w['lpips']:g}) is dropped, the other losses "
                                  f"train: {exc}", RuntimeWarning, stacklevel=2)
            self.lpips_available = lpips is not None
            if lpips is not None:
                self.lpips = lpips.eval().requires_grad_(False)

    # ------------------------------------------------------------ Task protocol
    def modules(self) -> dict[str, nn.Module]:
        mods = {"generator": self.generator}
        if self.discriminator is not None:
            mods["discriminator"] = self.discriminator
        return mods

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        opts = {"generator": self.opt_g}
        if self.opt_d is not None:
            opts["discriminator"] = self.opt_d
        return opts

    def schedulers(self) -> dict[str, Any]:
        s = {"schedule": self.schedule, "generator": self.plateaus[0]}
        if len(self.plateaus) > 1:
            s["discriminator"] = self.plateaus[1]
        return s

    def continue_from(self, state: dict) -> None:
        """Take over another SPiLF training's state at the end of this one's stage 1 (``stage1_from``; a
        Trainer state): the generator, its optimiser and plateau, the stage schedule. The discriminator keeps
        its initialisation (stage 1 does not train it); its plateau observed the same L_1 windows as the
        generator's, so it takes that state, and its rate is ``disc_lr`` halved as often as the generator's."""
        if int(state["schedulers"]["schedule"]["step"]) != self.config.stage1_steps:
            raise ParamsError(f"the state to continue from is at step {state['schedulers']['schedule']['step']}, "
                              f"not at the end of stage 1 (train.spilf.stage1_steps: {self.config.stage1_steps})")
        _unwrap(self.generator).load_state_dict(state["modules"]["generator"])
        self.opt_g.load_state_dict(state["optimizers"]["generator"])
        self.schedule.load_state_dict(state["schedulers"]["schedule"])
        self.plateaus[0].load_state_dict(state["schedulers"]["generator"])
        if self.opt_d is not None:
            halved = self.opt_g.param_groups[0]["lr"] / self.config.lr  # 0.5 ** k: exact in binary
            self.plateaus[1].load_state_dict({**state["schedulers"]["generator"],
                                              "_last_lr": [self.config.disc_lr * halved]})
            for group in self.opt_d.param_groups:
                group["lr"] = self.config.disc_lr * halved

    @property
    def step(self) -> int:
        return self.schedule.step

    @property
    def stage(self) -> int:
        return self.schedule.stage

    def train_step(self, batch, autocast: Callable) -> dict[str, torch.Tensor]:
        """One generator step (and, in stage 2 with adv > 0, one discriminator step).

        Returns detached losses, the same keys every step: ``l1``, ``struct``,
        ``total`` (the generator's weighted loss), ``stage``; ``lpips`` when the
        LPIPS term is in use and ``g_adv``/``d_adv`` when adv > 0 — 0 in stage 1,
        where those terms are not computed.
        """
        x, y = batch
        w = self.config.weights
        stage = self.schedule.begin_step()
        use_adv = stage == 2 and self.discriminator is not None
        use_lpips = stage == 2 and self.lpips is not None
        if self.lpips is not None and next(self.lpips.parameters()).device != y.device:
            self.lpips.to(y.device)

        if use_adv:
            self._sync_discriminator()
        # generator: section 2.2 total loss (stage 2) or L_1 + L_ST (stage 1, section 3.2.1)
        if self.discriminator is not None:
            self.discriminator.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        with autocast():
            out, g_hat = self.generator(x, return_gradient=True)
        out = out.float()
        scale = self.config.pixel_scale  # pixel-domain losses in 8-bit units (see DEFAULTS)
        l1 = scale * F.l1_loss(out, y)
        st = scale * structural_loss(out, g_hat, y)
        total = w["l1"] * l1 + w["struct"] * st
        zero = l1.new_zeros(())
        losses = {"l1": l1, "struct": st}
        if self.lpips is not None:
            lp = lpips_loss(self.lpips, out, y) if use_lpips else zero
            total = total + w["lpips"] * lp
            losses["lpips"] = lp
        if self.discriminator is not None:
            g_adv = d_adv = zero
            if use_adv:
                with autocast():
                    c_real = self.discriminator(y).float().detach()
                    c_fake = self.discriminator(out).float()
                g_adv = ragan_g_loss(c_real, c_fake, self.config.gan_form)
                total = total + w["adv"] * g_adv
        total.backward()
        self.opt_g.step()

        # discriminator: L_D of section 2.2 on the output before this generator update
        if self.discriminator is not None:
            self.discriminator.requires_grad_(True)
            if use_adv:
                self.opt_d.zero_grad(set_to_none=True)
                with autocast():
                    c_real = self.discriminator(y).float()
                    c_fake = self.discriminator(out.detach()).float()
                d_adv = ragan_d_loss(c_real, c_fake)
                d_adv.backward()
                self._average_discriminator_gradients()
                self.opt_d.step()
            losses["g_adv"], losses["d_adv"] = g_adv, d_adv

        self.schedule.observe(l1.detach())
        losses["total"] = total
        losses["stage"] = l1.new_full((), float(stage))  # a fill on the device, not a host copy (#28 item 8)
        return {k: v.detach() for k, v in losses.items()}

    def _sync_discriminator(self) -> None:
        """Several ranks: every rank takes rank 0's discriminator (weights and buffers), once."""
        if _world() > 1 and not self._discriminator_synced:
            for t in [*self.discriminator.parameters(), *self.discriminator.buffers()]:
                torch.distributed.broadcast(t.data, src=0)
        self._discriminator_synced = True

    def _average_discriminator_gradients(self) -> None:
        """Several ranks: replace each discriminator gradient by its mean over the ranks."""
        world = _world()
        for p in self.discriminator.parameters() if world > 1 else ():
            if p.grad is not None:
                torch.distributed.all_reduce(p.grad)
                p.grad /= world

    @torch.no_grad()
    def predict(self, x: torch.Tensor, autocast: Callable) -> torch.Tensor:
        # The bare network (only rank 0 validates under DDP; see RestorationTask.predict).
        with autocast():
            return self._bare_generator(x).float()

    def summary(self) -> dict:
        """What the run report should say about this training."""
        return {"variant": self.config.variant, "weights": dict(self.config.weights),
                "stage1_steps": self.config.stage1_steps, "gan_form": self.config.gan_form,
                "pixel_scale": self.config.pixel_scale,
                "lpips_available": self.lpips_available, "lpips_unavailable_reason": self.lpips_unavailable_reason}
