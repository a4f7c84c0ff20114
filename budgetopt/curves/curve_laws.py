"""Loss-curve laws: the loss at every step of a run from its learning-rate schedule (DESIGN §16).

- ``multipower`` (Luo et al. 2025, arXiv 2503.12811, ICLR 2025; the official code
  thu-yao-01-luo/MultiPowerLaw, ``src/models.py`` class ``MPL``):
  L(t) = L0 + A·S1(t)^−α + B·Σ_{k=1..t} (η_k − η_{k−1})·(1 − (1 + C·η_k^−γ·S_k(t))^−β),
  S1(t) = Σ_{τ=0..t} η_τ (the warmup included), S_k(t) = Σ_{τ=k..t} η_τ. The sum runs over every
  step whose learning rate changed, warmup included, exactly as the official code sums it (the
  paper writes it from the end of the warmup; the warmup's steps then shift the loss by a near
  constant that L0 absorbs). A decay (η_k < η_{k−1}) lowers the loss.
- ``annealing`` (Tissue et al. 2024, arXiv 2408.11029, eq. 5 with momentum):
  L(t) = L0 + A·S1(t)^−α − C·S2(t), S2(t) = Σ_{i≤t} m_i, m_i = λ·m_{i−1} + (η_{i−1} − η_i),
  λ = 0.999 (the paper's default decay factor). S1 as above.

Evaluation (``curve_loss``) runs on *pairs*: for each evaluated step t and each step k ≤ t whose
learning rate changed, the precomputed S_k(t) = Λ_t − Λ_{k−1} (Λ the cumulative sum, float64),
log η_k and η_k − η_{k−1}; one segment sum per evaluated step. That is the law's O(T) per step
with the cumulative sums done once per curve (``curve_pairs``), not once per parameter value.
Units: steps are optimizer steps, η the learning rate as logged, L nats per token.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

#: the width (natural-log units of S_k(t) and η_k) of the cells merged into one pair. Measured on the shipped
#: schedules (the 25M model's cosine, constant and two-stage curves at the official parameters): 0.05 / 0.1 / 0.2 keep
#: every logged step's loss within 6e-7 / 2.3e-6 / 1e-5 of the exact sum and cut the 2.8M pairs to 80k / 44k / 24k;
#: the cost is the pairs' three transcendentals each (a fit's time is proportional). 0.1: far below the noise (1e-3)
RESOLUTION = 0.1
#: bounds of the multi-power law's loss-drop shape: without a gradual decay among the fitted curves (a constant trunk
#: and WSD branches alone) the shape is not identified and an unbounded fit runs off (measured: log C -> -296,
#: gamma -> 45 after 3000 L-BFGS steps, 8 minutes); the official fits give C ~ 2, beta ~ 0.6, gamma ~ 0.65
LOG_C_MAX = 12.0
SHAPE_MAX = 3.0
#: Tissue et al. 2024's momentum decay of the annealing area (their default, §3)
ANNEALING_DECAY = 0.999


class CurveLaw(NamedTuple):
    """A form: its parameters (reported in this order), the formula and its source. Fitting
    coordinates: ``to_params`` / ``to_coords``."""

    name: str
    params: tuple[str, ...]
    formula: str
    source: str


LAWS = {
    "multipower": CurveLaw("multipower", ("L0", "A", "alpha", "B", "C", "beta", "gamma"),
                           "L = L0 + A S1^-alpha + B sum_k (eta_k - eta_k-1)(1 - (1 + C eta_k^-gamma S_k)^-beta)",
                           "Luo et al. 2025 (arXiv 2503.12811), eq. 6; official code thu-yao-01-luo/MultiPowerLaw"),
    "annealing": CurveLaw("annealing", ("L0", "A", "alpha", "C"), "L = L0 + A S1^-alpha - C S2",
                          "Tissue et al. 2024 (arXiv 2408.11029), eq. 5, momentum decay 0.999"),
}


class Pairs(NamedTuple):
    """One batch of evaluated steps ("rows") and their (row, changed step) pairs, sorted by row.
    Rows: ``s1`` (S1 at the row's step), ``s2`` (the annealing area there). Pairs: ``row`` (the
    row they add to), ``dist`` (S_k(t)), ``log_eta`` (log η_k), ``gap`` (η_k − η_{k−1}). Padding
    rows have no pairs; padding pairs (row 0, gap 0) add nothing."""

    s1: np.ndarray
    s2: np.ndarray
    row: np.ndarray
    dist: np.ndarray
    log_eta: np.ndarray
    gap: np.ndarray


def annealing_area(lrs: np.ndarray, decay: float = ANNEALING_DECAY) -> np.ndarray:
    """S2 at every step: the cumulative sum of the momentum of the learning-rate drops."""
    drop = np.concatenate([[0.0], lrs[:-1] - lrs[1:]])
    m = np.zeros_like(drop)
    acc = 0.0
    for i, d in enumerate(drop):  # a first-order recursion: O(T), once per curve
        acc = decay * acc + d
        m[i] = acc
    return np.cumsum(m)


def curve_pairs(lrs: np.ndarray, steps: np.ndarray, resolution: float = RESOLUTION) -> Pairs:
    """The pairs of one curve (every step's learning rate ``lrs``) evaluated at ``steps``
    (indices into ``lrs``), rows numbered from 0. ``resolution`` > 0 merges, per row, runs of
    consecutive changed steps whose log S_k(t) and log η_k fall in the same cell of that width
    (and whose changes have one sign) into one pair at their change-weighted mean (the midpoint
    rule: relative error ~ resolution²/24 per pair); 0 keeps every changed step."""
    lam = np.cumsum(lrs)
    gap = np.diff(lrs)
    k = np.nonzero(gap)[0] + 1  # steps whose learning rate changed (k >= 1)
    steps = np.asarray(steps, np.int64)
    counts = np.searchsorted(k, steps, side="right")  # changed steps k <= t, per row
    dists, etas, gaps = [], [], []
    log_eta_k, gap_k = np.log(lrs[k]), gap[k - 1]
    for t, c in zip(steps, counts):
        d, w, g = lam[t] - lam[k[:c] - 1], log_eta_k[:c], gap_k[:c]
        if resolution > 0 and c > 1:
            cell = np.stack([np.floor(np.log(d) / resolution), np.floor(w / resolution), np.sign(g)])
            start = np.concatenate([[0], np.nonzero(np.any(np.diff(cell, axis=1) != 0, axis=0))[0] + 1])
            gs = np.add.reduceat(g, start)
            d, w, g = np.add.reduceat(g * d, start) / gs, np.add.reduceat(g * w, start) / gs, gs
        dists.append(d), etas.append(w), gaps.append(g)
    cat = (lambda xs: np.concatenate(xs)) if len(steps) else (lambda xs: np.zeros(0))
    row = np.repeat(np.arange(len(steps)), [len(g) for g in gaps]).astype(np.int64)
    return Pairs(lam[steps], annealing_area(lrs)[steps], row, cat(dists), cat(etas), cat(gaps))


def join_pairs(parts: list[Pairs], pad_rows: int | None = None, pad_pairs: int | None = None) -> Pairs:
    """Several curves' pairs as one batch (rows in order), padded to ``pad_rows`` rows and
    ``pad_pairs`` pairs when given (padding rows: S1 = 1, no pairs)."""
    offs = np.cumsum([0] + [len(p.s1) for p in parts])
    s1 = np.concatenate([p.s1 for p in parts])
    s2 = np.concatenate([p.s2 for p in parts])
    row = np.concatenate([p.row + o for p, o in zip(parts, offs)]).astype(np.int64)
    dist, log_eta, gap = (np.concatenate([getattr(p, f) for p in parts]) for f in ("dist", "log_eta", "gap"))
    if pad_rows is not None:
        n = pad_rows - len(s1)
        s1, s2 = np.pad(s1, (0, n), constant_values=1.0), np.pad(s2, (0, n))
    if pad_pairs is not None:
        n = pad_pairs - len(dist)
        dist, log_eta, gap = np.pad(dist, (0, n), constant_values=1.0), np.pad(log_eta, (0, n)), np.pad(gap, (0, n))
        row = np.pad(row, (0, n))  # row 0, gap 0: adds nothing (segment_sum does not need them sorted last)
    return Pairs(s1, s2, row, dist, log_eta, gap)


def to_params(name: str, theta):
    """The law's parameters (``LAWS[name].params`` order) from its fitting coordinates: logs of
    the scales and of alpha; for the multi-power law's loss-drop shape, log C within ±LOG_C_MAX and
    beta, gamma within (0, SHAPE_MAX) (a tanh and two sigmoids). Works on NumPy and JAX arrays."""
    xp = jnp if isinstance(theta, jax.Array) else np
    if name == "multipower":
        l0, a, alpha, b = xp.exp(theta[:4])
        c = xp.exp(LOG_C_MAX * xp.tanh(theta[4] / LOG_C_MAX))
        beta, gamma = SHAPE_MAX / (1 + xp.exp(-theta[5])), SHAPE_MAX / (1 + xp.exp(-theta[6]))
        return xp.stack([l0, a, alpha, b, c, beta, gamma])
    return xp.exp(theta)


def to_coords(name: str, params) -> np.ndarray:
    """The fitting coordinates of ``params`` (the inverse of ``to_params``), NumPy."""
    p = np.asarray(params, np.float64)
    if name == "multipower":
        shape = p[5:7] / SHAPE_MAX
        return np.concatenate([np.log(p[:4]), [LOG_C_MAX * np.arctanh(np.log(p[4]) / LOG_C_MAX)],
                               np.log(shape / (1 - shape))])
    return np.log(p)


def at_bound(name: str, params, margin: float = 0.02) -> list[str]:
    """The multi-power law's shape parameters within ``margin`` (relative) of their bounds: the
    curves do not pin the loss-drop shape (e.g. no gradual decay among them)."""
    if name != "multipower":
        return []
    c, beta, gamma = params[4], params[5], params[6]
    out = [f"C = {c:.3g}"] if abs(math.log(c)) > (1 - margin) * LOG_C_MAX else []
    low = margin * SHAPE_MAX * 0.01  # the sigmoid's floor: 6e-4 with the default margin
    return out + [f"{k} = {v:.3g}" for k, v in (("beta", beta), ("gamma", gamma))
                  if v > (1 - margin) * SHAPE_MAX or v < low]


def curve_loss(name: str, theta, p: Pairs, rows: int):
    """The law's loss at every row of ``p`` for fitting coordinates ``theta`` (``to_params``)."""
    if name == "multipower":
        l0, a, alpha, b, c, beta, gamma = to_params(name, theta)
        g = 1 - jnp.exp(-beta * jnp.log1p(c * jnp.exp(-gamma * p.log_eta) * p.dist))
        drop = jax.ops.segment_sum(p.gap * g, p.row, num_segments=rows)
        return l0 + a * jnp.exp(-alpha * jnp.log(p.s1)) + b * drop
    if name == "annealing":
        l0, a, alpha, c = to_params(name, theta)
        return l0 + a * jnp.exp(-alpha * jnp.log(p.s1)) - c * p.s2
    raise ValueError(f"unknown curve law {name!r}")
