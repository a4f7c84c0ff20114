"""The robust decision: which model size to commit to before hours, MFU and the law are known.

Every statistic of the decision comes from the decision subsample — the samples with global
index = 0 mod ``recommend.subsample`` (default 8; 1 = all) — so all of them describe one
population: each size's expected loss and regret, the share of samples with regret below 1 %
of their optimal loss, and the 95th percentile of regret, each with its Monte Carlo error.
The chosen size minimises the expected loss, or the p95 regret (``recommend.risk = "p95"``).
Every sample whose optimum exists is scored for every size: a size a sample cannot train (above
its max_params, or left no token by serving) scores the loss of that size on one token — a
regret of order the law's B, far beyond any trainable size — and the share of such futures is
reported per size (``p_untrainable``).
Why a subsample: scoring K = 65 sizes on every sample cost 3x the rest of the sweep, while the
decision's precision is set by the pilot's refinement and the flat regret curve; the errors
printed say what the subsample costs.
"""

from __future__ import annotations

import math

import numpy as np

from .kernel import LOSS_BITS, REGRET_RANGE
from .state import REGRET_BINS, CandidateStats

_EDGES = np.linspace(*REGRET_RANGE, REGRET_BINS + 1)
#: relative width of one regret bin: the resolution of the p95 regret read off the histogram
BIN_RATIO = math.exp((REGRET_RANGE[1] - REGRET_RANGE[0]) / REGRET_BINS)


def _upper_edge(b: int) -> float:
    """Regret at the upper edge of histogram bin b (0: below the range, i.e. ~0; last: overflow)."""
    return 0.0 if b <= 0 else math.exp(_EDGES[b]) if b <= REGRET_BINS else math.inf


def regret_quantile(hist: np.ndarray, p: float) -> tuple[float, float, float]:
    """(estimate, lower, upper) of the p-quantile of regret from one candidate's histogram of
    the subsample: the upper edge of the bin holding rank ceil(p n), and a 95 % interval from
    the distribution-free order-statistic bounds, ranks n p -/+ 1.96 sqrt(n p (1 - p)), each
    read the same way (so the interval also covers the bin width)."""
    n = int(hist.sum())
    if n == 0:
        return math.nan, math.nan, math.nan
    cum = np.cumsum(hist)
    half = 1.96 * math.sqrt(n * p * (1 - p))

    def at(rank: float) -> float:
        rank = min(max(rank, 1.0), float(n))
        return _upper_edge(int(np.searchsorted(cum, rank, side="left")))

    lower_rank = math.floor(n * p - half)
    lower = 0.0 if lower_rank < 1 else _upper_edge(int(np.searchsorted(cum, lower_rank, side="left")) - 1)
    return at(math.ceil(n * p)), max(lower, 0.0), at(math.ceil(n * p + half))


def regret_sd(hist: np.ndarray) -> float:
    """Standard deviation of regret over the subsample, from the histogram's bin midpoints
    (geometric; regret below the range counts as 0): good to the bin width (~6 %), which is
    ample for a Monte Carlo standard error."""
    n = hist.sum()
    if n == 0:
        return math.nan
    mids = np.concatenate([[0.0], np.exp(0.5 * (_EDGES[:-1] + _EDGES[1:])), [math.exp(REGRET_RANGE[1])]])
    m1 = float((hist * mids).sum() / n)
    m2 = float((hist * mids**2).sum() / n)
    return math.sqrt(max(m2 - m1 * m1, 0.0))


def recommend(c: CandidateStats, candidates: np.ndarray, risk: str, refined: bool,
              stride: int, options: tuple[str, list] | None = None) -> tuple[dict | None, list[dict], str | None]:
    """(recommendation, regret curve over all candidates sorted by size, note). With a discrete
    decision, ``options`` = (key, labels) — ("experts", [1, 8, 32]) or ("precision", ["bf16",
    "fp8"]) — and the candidates are rows (log N, index into labels): each row and the
    recommendation carry their option under ``key``, and the curve is sorted by option, then size."""
    scored = int(c.scored.n)
    if scored == 0:
        return None, [], "no sample converged to a usable optimum: nothing to recommend"
    scale = 2.0**LOSS_BITS
    e_opt = float(c.optimal_loss_sum.value()) / scale / scored
    exp_reg = c.regret_sum.value() / scale / scored
    hist = np.asarray(c.regret_hist.n)
    win = np.asarray(c.win.n) / scored
    lost = np.asarray(c.untrainable.n) / scored
    q95 = [regret_quantile(h, 0.95) for h in hist]
    k_ref = len(candidates) - 1 if refined else -1
    size = (lambda k: candidates[k][0]) if options else (lambda k: candidates[k])  # noqa: E731
    rows = [{**({options[0]: options[1][int(candidates[k][1])]} if options else {}),
             "params": math.exp(size(k)), "expected_loss": float(e_opt + exp_reg[k]),
             "expected_regret": float(exp_reg[k]), "expected_regret_se": regret_sd(hist[k]) / math.sqrt(scored),
             "p95_regret": q95[k][0], "p95_regret_ci95": [q95[k][1], q95[k][2]],
             "p_regret_below_1pct": float(win[k]),
             "p_regret_below_1pct_se": math.sqrt(max(win[k] * (1 - win[k]), 0.0) / scored),
             "p_untrainable": float(lost[k]), "p_untrainable_se": math.sqrt(max(lost[k] * (1 - lost[k]), 0.0) / scored),
             "refined": k == k_ref} for k in range(len(candidates))]
    score = exp_reg if risk == "mean" else np.array([q[0] for q in q95])
    rank = {v: i for i, v in enumerate(options[1])} if options else {}
    order = lambda r: (rank.get(r.get(options[0]), 0) if options else 0, r["params"])  # noqa: E731
    if not np.isfinite(score).any():
        return None, sorted(rows, key=order), "no candidate size could be scored"
    best = int(np.nanargmin(np.where(np.isfinite(score), score, np.nan)))
    rec = {k: v for k, v in rows[best].items() if k != "refined"}
    rec.update({"risk": risk, "from": "optax refinement" if best == k_ref else "grid", "expected_optimal_loss": e_opt,
                "scored_samples": scored, "subsample": stride,
                "note": f"on the 1-in-{stride} decision subsample ({scored:,} samples); p95 regret is the upper edge "
                        f"of its histogram bin (±{100 * (BIN_RATIO - 1):.0f} %); the _se and _ci95 fields give the "
                        "Monte Carlo error"})
    return rec, sorted(rows, key=order), None
