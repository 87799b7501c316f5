"""CTU-level switched filtering: the encoder, which has the original, decides per coding tree unit
whether the network's output is used, and signals it (issue #19).

GL-Fusion IV.A: the filter "can be readily incorporated into the RDO optimization framework using
the switchable filtering mechanism proposed in [24]" (Ding et al., TCSVT 2020); JVET's NN-based
loop filters and VVC's ALF signal the same way: a frame-level enable flag and, when it is set, one
flag per CTU. In AI every frame is intra coded, so a switched frame is exactly what an in-loop
implementation decodes; in LDP/RA the references stay unfiltered, so it is the post-filter with
side information (the report says which, as for the unswitched filter).

Per frame three signallings are costed by ``J = D + lambda * R`` and the cheapest is kept:

- filter off: the decoded frame, ``R = 1`` bit (the frame flag, a fixed-length u(1) slice-header
  flag as VVC's ``slice_alf_enabled_flag``);
- filter on everywhere: the network's frame, ``R = 1 + flag bits`` of an all-ones CTU map;
- switched: each CTU in raster order takes the filtered or the decoded samples, whichever costs
  less with the flag's current adaptive probability, ``R = 1 + flag bits``.

Since the first two are among the candidates, switching is never worse than either input in J.

``D`` is the SSD of every plane over the CTU, in 8-bit units (HM's distortion for higher bit depths
is scaled down by ``4^(bitdepth - 8)``). ``lambda`` is HM-16.9's slice lambda
(``TEncSlice::initEncSlice``) for the frame's QP and position in the configuration's GOP:
``QPFactor * 2^((QP - 12) / 3)``, with ``QPFactor = 0.57 * (1 - min(0.5, 0.05 * (GOPSize - 1)))`` for
I slices, the GOP entry's ``QPfactor`` of HM's cfg for P/B slices (LDP GOP 4: 0.4624, 0.4624,
0.4624, 0.578; RA GOP 8: 0.442, 0.3536, 0.3536, 0.68...), times ``clip(2, 4, (QP - 12) / 6)`` for
frames at GOP depth > 0. Applied to another codec's pictures (x265 on the demo) it is HM's lambda
for the same QP and picture position, not that encoder's own (a named deviation).

The flags' bits are what a CABAC-style coder spends (issue #29 item 4), modelled on how VVC codes its ALF CTU
flags (``alf_ctb_flag``): three contexts, the context of a CTU chosen by its left and above CTUs' flags
(``ctxInc = left + above``), each holding VVC's two-rate probability estimate (two estimates updated with window
shifts 4 and 7, their mean the probability: H.266 9.3.4.3.2), all reset at each frame (slice) at p = 0.5, and a
flag costing ``-log2 p`` of its context's current probability (the arithmetic coder's cost to within its
rounding). VVC's own initial values per context (``initValue``, ``shiftIdx``) are not modelled: p = 0.5 and
shifts (4, 7) for every context. An earlier version charged the Krichevsky-Trofimov estimate of one context,
which pays ``log2(N)/2 + 1`` bits for an all-on map of N CTUs, 3 to 10 times less than a CABAC context (the
reference simulations of HEVC's state machine and VVC's estimator: tests/test_switching.py, docs/results.md).

An off CTU takes the filters-off decode: there the codec's own deblocking and SAO are not applied, where a
codec with its filters on would keep them, so switching chooses between the network and no in-loop filter at
all (said in the report's switching notes).

Each frame's CTU map is stored with the evaluation (:func:`pack_flags`); :func:`replay` rebuilds the scored
reconstruction from the decode, the network output and those flags, as a decoder would.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import InloopError
from ..names import CTU_SIZE
from ..yuv import Frame, YuvFormat, YuvReader, write_yuv

# HM-16.9's cfg files (encoder_lowdelay_P_main.cfg, encoder_randomaccess_main.cfg): GOPSize and the
# QPfactor of the GOP entry coding each POC modulo GOPSize (the entry with POC = GOPSize codes 0).
HM_GOP: dict[str, tuple[int, dict[int, float]]] = {
    "ai": (1, {}),
    "ldp": (4, {1: 0.4624, 2: 0.4624, 3: 0.4624, 0: 0.578}),
    "ra": (8, {0: 0.442, 4: 0.3536, 2: 0.3536, 6: 0.3536, 1: 0.68, 3: 0.68, 5: 0.68, 7: 0.68}),
}
FRAME_FLAG_BITS = 1.0
SWITCHED_MODES = {  # what a switched frame is in each configuration (the report says it)
    "ai": "in-loop with CTU flags (AI: what an in-loop implementation decodes)",
    "ldp": "post-filter with CTU flags as side information (references unfiltered)",
    "ra": "post-filter with CTU flags as side information (references unfiltered)",
}


def gop_depth(poc: int, gop: int) -> int:
    """HM's hierarchy depth of a picture (TEncSlice::initEncSlice): 0 for POC % GOPSize == 0."""
    poc %= gop
    if poc == 0:
        return 0
    step, depth, i = gop, 0, gop >> 1
    while i >= 1:
        if any(j == poc for j in range(i, gop, step)):
            return depth + 1
        step >>= 1
        depth += 1
        i >>= 1
    return depth


def hm_lambda(config: str, poc: int, qp: float, slice_type: str = "I") -> float:
    """HM-16.9's slice lambda for a picture of ``config`` (ai/ldp/ra) at ``poc`` coded at ``qp``."""
    if config not in HM_GOP:
        raise InloopError(f"no HM GOP for configuration {config!r}")
    gop, factors = HM_GOP[config]
    qp_temp = float(qp) - 12.0
    if slice_type.upper().startswith("I"):
        factor = 0.57 * (1.0 - min(0.5, max(0.0, 0.05 * (gop - 1))))
    else:
        factor = factors[poc % gop]
    lam = factor * 2.0 ** (qp_temp / 3.0)
    if slice_type.upper()[:1] != "I" and gop_depth(poc, gop) > 0:
        lam *= min(4.0, max(2.0, qp_temp / 6.0))
    return lam


FLAG_SHIFTS = (4, 7)  # VVC's two-rate estimator: each estimate moves 1/2^shift of the way to each coded bin
FLAG_P1 = 0.5  # every context's probability of a 1 at the start of a frame


class FlagContexts:
    """The three adaptive contexts of one frame's CTU flags (ctxInc = left flag + above flag, as VVC's
    alf_ctb_flag), each a pair of probability estimates with :data:`FLAG_SHIFTS`."""

    def __init__(self):
        self.p = [[FLAG_P1, FLAG_P1] for _ in range(3)]

    def p1(self, ctx: int) -> float:
        a, b = self.p[ctx]
        return (a + b) / 2.0

    def cost(self, ctx: int, bit: bool) -> float:
        p1 = self.p1(ctx)
        return -math.log2(p1 if bit else 1.0 - p1)

    def update(self, ctx: int, bit: bool) -> None:
        est = self.p[ctx]
        for k, shift in enumerate(FLAG_SHIFTS):
            est[k] += (float(bit) - est[k]) / (1 << shift)


def flag_context(flags: np.ndarray, r: int, c: int) -> int:
    """ctxInc of the CTU at row ``r``, column ``c``: its left and above neighbours' flags (0 outside the frame)."""
    return int(c > 0 and flags[r, c - 1]) + int(r > 0 and flags[r - 1, c])


def flag_bits(flags) -> float:
    """Bits of a CTU flag map (rows x cols in raster order; a 1-D sequence is one row) under :class:`FlagContexts`
    reset at its start."""
    m = np.asarray(flags, dtype=bool)
    m = m.reshape(1, -1) if m.ndim < 2 else m
    ctx = FlagContexts()
    bits = 0.0
    for r in range(m.shape[0]):
        for c in range(m.shape[1]):
            k = flag_context(m, r, c)
            bits += ctx.cost(k, m[r, c])
            ctx.update(k, m[r, c])
    return bits


def ctu_ssd(ref: Frame, test: Frame, ctu: int, bitdepth: int = 8) -> np.ndarray:
    """SSD of every plane per CTU (rows x cols of the luma CTU grid), in 8-bit units."""
    h, w = ref.y.shape
    rows, cols = -(-h // ctu), -(-w // ctu)
    out = np.zeros((rows, cols), dtype=np.float64)
    for k, (r, t) in enumerate(zip(ref, test)):
        sub = 1 if k == 0 else max(1, ref.y.shape[0] // r.shape[0])
        size = ctu // sub
        d = r.astype(np.int64) - t.astype(np.int64)
        d2 = d * d
        ph, pw = rows * size - d2.shape[0], cols * size - d2.shape[1]
        d2 = np.pad(d2, ((0, ph), (0, pw)))
        out += d2.reshape(rows, size, cols, size).sum(axis=(1, 3), dtype=np.float64)
    return out / float(4 ** (bitdepth - 8))


@dataclass
class FrameDecision:
    """What the encoder signals for one frame, and what it costs."""

    mode: str  # "off" | "on" | "switched"
    flags: np.ndarray | None  # CTU map (rows x cols) when the frame flag is set
    bits: float  # frame flag + CTU flags
    distortion: float  # SSD of the chosen reconstruction (8-bit units)
    cost: float  # distortion + lambda * bits
    lam: float
    candidates: dict = field(default_factory=dict)  # mode -> cost, for the report and the tests

    @property
    def ctus_on(self) -> int:
        return int(self.flags.sum()) if self.flags is not None else 0


def decide(ssd_off: np.ndarray, ssd_on: np.ndarray, lam: float, force: str | None = None) -> FrameDecision:
    """The cheapest signalling of a frame from its per-CTU SSDs without / with the filter.

    ``force``: ``"on"`` (every CTU filtered, flags still paid) or ``"off"`` (filter off) instead of choosing."""
    all_on = np.ones(ssd_off.shape, dtype=bool)
    cands = {
        "off": FrameDecision("off", None, FRAME_FLAG_BITS, float(ssd_off.sum()), 0.0, lam),
        "on": FrameDecision("on", all_on, FRAME_FLAG_BITS + flag_bits(all_on), float(ssd_on.sum()), 0.0, lam),
    }
    # CTU by CTU in raster order, each with its context's current probability: the flag chosen is charged what
    # the coder charges it (the same pass as flag_bits, so the map's bits add up as it is decided)
    flags = np.zeros(ssd_off.shape, dtype=bool)
    ctx = FlagContexts()
    bits = 0.0
    for r in range(flags.shape[0]):
        for c in range(flags.shape[1]):
            k = flag_context(flags, r, c)
            on, off = ctx.cost(k, True), ctx.cost(k, False)
            flags[r, c] = ssd_on[r, c] + lam * on < ssd_off[r, c] + lam * off
            bits += on if flags[r, c] else off
            ctx.update(k, flags[r, c])
    cands["switched"] = FrameDecision("switched", flags, FRAME_FLAG_BITS + bits,
                                      float(np.where(flags, ssd_on, ssd_off).sum()), 0.0, lam)
    for c in cands.values():
        c.cost = c.distortion + lam * c.bits
    costs = {k: c.cost for k, c in cands.items()}
    best = cands[force] if force else min(cands.values(), key=lambda c: (c.cost, c.bits))
    best.candidates = costs
    return best


def apply_flags(decoded: Frame, filtered: Frame, flags: np.ndarray | None, ctu: int) -> Frame:
    """The reconstruction a decoder builds from the CTU map: filtered samples where the flag is set."""
    if flags is None:
        return decoded
    planes = []
    for k, (d, f) in enumerate(zip(decoded, filtered)):
        sub = 1 if k == 0 else max(1, decoded.y.shape[0] // d.shape[0])
        size = ctu // sub
        mask = np.kron(flags, np.ones((size, size), dtype=bool))[: d.shape[0], : d.shape[1]]
        planes.append(np.where(mask, f, d))
    return Frame(*planes)


def pack_flags(flags: np.ndarray | None) -> dict | None:
    """A CTU map as stored in the evaluation JSON: its shape and its bits (raster order, packed, base64)."""
    if flags is None:
        return None
    import base64

    return {"rows": int(flags.shape[0]), "cols": int(flags.shape[1]),
            "bits": base64.b64encode(np.packbits(flags.astype(bool).ravel())).decode("ascii")}


def unpack_flags(packed: dict | None) -> np.ndarray | None:
    """The CTU map of :func:`pack_flags` (None: the frame flag is off)."""
    if packed is None:
        return None
    import base64

    n = int(packed["rows"]) * int(packed["cols"])
    bits = np.unpackbits(np.frombuffer(base64.b64decode(packed["bits"]), dtype=np.uint8))[:n]
    return bits.astype(bool).reshape(int(packed["rows"]), int(packed["cols"]))


def replay(decoded: str | os.PathLike, filtered: str | os.PathLike, per_frame: list[dict], fmt: YuvFormat,
           ctu: int, out: str | os.PathLike) -> None:
    """What a decoder builds from the signalled flags alone (no original): each frame's decode, with the network's
    samples in the CTUs whose stored flag is set (``per_frame[i]["flags"]``, :func:`pack_flags`)."""
    with YuvReader(decoded, fmt) as dec, YuvReader(filtered, fmt) as fil:
        if not (len(dec) == len(fil) == len(per_frame)):
            raise InloopError(f"{decoded} has {len(dec)} frames, {filtered} {len(fil)}, the flags {len(per_frame)}")
        write_yuv(out, (apply_flags(dec[i], fil[i], unpack_flags(f["flags"]), ctu) for i, f in enumerate(per_frame)),
                  fmt)


def switch_sequence(original: str | os.PathLike, decoded: str | os.PathLike, filtered: str | os.PathLike,
                    out: str | os.PathLike, fmt: YuvFormat, config: str, qp: float, codec: str,
                    pictures: list[dict] | None = None, ctu: int | None = None, force: str | None = None) -> dict:
    """Decide every frame of ``decoded`` vs the network's ``filtered`` frames against ``original`` and write
    the switched reconstruction to ``out``. ``pictures``: the encode's per-picture records (``poc``, ``type``,
    ``qp``; the frame order of the file is display order), for each frame's lambda. Returns the totals:
    ``flag_bits``, ``ctu``, ``ctus``/``ctus_on``, ``frames_on``, and per frame mode, bits and CTUs on."""
    ctu = int(ctu or CTU_SIZE[codec])
    if ctu < 16 or ctu & (ctu - 1):
        raise InloopError(f"evaluate.switching.ctu={ctu}: a power of two of at least 16")
    by_frame = {int(p.get("frame", p.get("poc", i))): p for i, p in enumerate(pictures or [])}
    decisions: list[FrameDecision] = []
    with YuvReader(original, fmt) as ref, YuvReader(decoded, fmt) as dec, YuvReader(filtered, fmt) as fil:
        n = len(dec)
        if len(fil) != n or len(ref) < n:
            raise InloopError(f"{filtered} has {len(fil)} frames, {decoded} {n}, {original} {len(ref)}: they must match")

        def switched():  # frame by frame: the sequence is never held in memory
            for i in range(n):
                pic = by_frame.get(i, {})
                lam = hm_lambda(config, int(pic.get("poc", i)), float(pic.get("qp", qp)),
                                "I" if config == "ai" else str(pic.get("type", "I" if i == 0 else "P")))
                o, d, f = ref[i], dec[i], fil[i]
                decision = decide(ctu_ssd(o, d, ctu, fmt.bitdepth), ctu_ssd(o, f, ctu, fmt.bitdepth), lam, force)
                decisions.append(decision)
                yield apply_flags(d, f, decision.flags, ctu)

        write_yuv(out, switched(), fmt)  # atomic
    grid = (-(-fmt.height // ctu)) * (-(-fmt.width // ctu))
    return {
        "ctu": ctu,
        "flag_bits": float(sum(d.bits for d in decisions)),
        "ctus": grid * n,
        "ctus_on": sum(d.ctus_on for d in decisions),
        "frames_on": sum(d.mode != "off" for d in decisions),
        "per_frame": [{"mode": d.mode, "bits": d.bits, "ctus_on": d.ctus_on, "lambda": d.lam,
                       "cost": d.cost, "candidates": d.candidates, "flags": pack_flags(d.flags)} for d in decisions],
    }
