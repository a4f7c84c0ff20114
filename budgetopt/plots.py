"""The figures people expect (matplotlib; PNG or SVG). Each function returns the Figure so
tests can inspect axes; ``save`` writes it atomically.

- frontier: compute-optimal N and D against compute, one line per law, a p05-p95 band from
  the law's covariance (or a sweep), known models as labelled markers;
- isoflop: predicted loss against N along fixed-compute curves, optimum marked (and runs);
- loss-vs-compute: the optimal loss frontier L*(C) on log-log axes;
- sweep: histograms of N*, D*, L* from a sweep result, and the robust regret curve.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .errors import InputError
from .files import to_bytes, write_atomic

KINDS = ("frontier", "isoflop", "loss-vs-compute", "sweep")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fig(width: float, height: float, ncols: int = 1):
    plt = _plt()
    fig, axes = plt.subplots(1, ncols, figsize=(width, height), squeeze=False)
    return fig, list(axes[0])


def _optimum(spec, log_c: np.ndarray):
    """(N*, D*, L*) along a compute grid under a law (closed form or solver)."""
    import jax.numpy as jnp

    from .allocate import Budget, allocate, method_for
    from .laws import to_array_law

    a = allocate(to_array_law(spec.params), Budget(jnp.asarray(log_c)), method=method_for(spec.params))
    return np.exp(np.asarray(a.log_n, np.float64)), np.exp(np.asarray(a.log_d, np.float64)), np.asarray(a.loss, np.float64)


def _band(spec, log_c: np.ndarray, draws: int = 2000, seed: int = 0):
    """p05/p95 of N* and D* over law parameters drawn from the covariance (closed form)."""
    import jax.numpy as jnp

    from .allocate import closed_form_x
    from .laws import Parametric

    if spec.covariance is None and spec.draws is None:
        return None
    mean = np.array([float(v) for v in spec.params])
    if spec.draws is not None:
        th = np.asarray(spec.draws)
    else:
        th = np.random.default_rng(seed).multivariate_normal(mean, spec.covariance, draws)
    p = Parametric(*[jnp.asarray(th[:, i][:, None]) for i in range(5)])
    x = np.asarray(closed_form_x(p, jnp.asarray(log_c[None, :])), np.float64)
    log_s = log_c[None, :] - math.log(6)
    n_q = np.exp(np.percentile(x, [5, 95], axis=0))
    d_q = np.exp(np.percentile(log_s - x, [5, 95], axis=0))
    return n_q, d_q


def frontier(specs, cmin=1e18, cmax=1e27, models=True, width=11.0, height=4.8):
    from .audit import catalog

    fig, (ax_n, ax_d) = _fig(width, height, 2)
    log_c = np.linspace(math.log(cmin), math.log(cmax), 60)
    c = np.exp(log_c)
    for spec in specs:
        n, d, _ = _optimum(spec, log_c)
        line, = ax_n.plot(c, n, label=spec.name)
        ax_d.plot(c, d, label=spec.name, color=line.get_color())
        band = _band(spec, log_c) if spec.kind == "parametric" else None
        if band is not None:
            ax_n.fill_between(c, band[0][0], band[0][1], color=line.get_color(), alpha=0.15, lw=0,
                              label=f"{spec.name} p05–p95 (law uncertainty)")
            ax_d.fill_between(c, band[1][0], band[1][1], color=line.get_color(), alpha=0.15, lw=0)
    if models:
        for m in catalog().values():
            cm = m.flops or 6 * m.params * m.tokens
            if cmin <= cm <= cmax:
                ax_n.scatter([cm], [m.params], marker="*", s=60, color="k", zorder=5)
                ax_n.annotate(m.name, (cm, m.params), fontsize=7, xytext=(3, 3), textcoords="offset points")
                ax_d.scatter([cm], [m.tokens], marker="*", s=60, color="k", zorder=5)
                ax_d.annotate(m.name, (cm, m.tokens), fontsize=7, xytext=(3, 3), textcoords="offset points")
    for ax, what in ((ax_n, "parameters N"), (ax_d, "training tokens D")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training compute C (FLOPs)")
        ax.set_ylabel(f"compute-optimal {what}")
        ax.grid(True, which="major", alpha=0.3)
    ax_n.legend(fontsize=8, loc="upper left")
    ax_n.set_title("Compute-optimal model size")
    ax_d.set_title("Compute-optimal training tokens (★ = trained models)")
    fig.tight_layout()
    return fig


def isoflop(spec, budgets=(1e19, 1e20, 1e21, 1e22, 1e23), runs=None, width=7.5, height=5.0):
    import jax.numpy as jnp

    from .laws import loss, to_array_law

    if spec.kind == "rule":
        raise InputError("--law", "an isoFLOP plot needs a law with a loss surface")
    fig, (ax,) = _fig(width, height)
    law = to_array_law(spec.params)
    for c in budgets:
        n_star, d_star, l_star = _optimum(spec, np.array([math.log(c)]))
        x = np.linspace(math.log(n_star[0]) - 2.5, math.log(n_star[0]) + 2.5, 200)
        y = np.asarray(loss(law, jnp.asarray(x), jnp.asarray(math.log(c / 6) - x)))
        line, = ax.plot(np.exp(x), y, label=f"C = {c:.0e} FLOPs")
        ax.scatter(n_star, l_star, color=line.get_color(), marker="o", zorder=5)
    if runs is not None:
        ax.scatter(np.exp(runs.log_n), np.exp(runs.log_l), s=10, color="k", alpha=0.6, label="runs", zorder=4)
    ax.set_xscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("predicted loss (nats/token)")
    ax.set_title(f"IsoFLOP curves under {spec.name} (● = optimum)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def loss_vs_compute(specs, cmin=1e18, cmax=1e27, width=7.5, height=5.0):
    fig, (ax,) = _fig(width, height)
    log_c = np.linspace(math.log(cmin), math.log(cmax), 80)
    for spec in specs:
        if spec.kind == "rule":
            continue
        _, _, l_star = _optimum(spec, log_c)
        ax.plot(np.exp(log_c), l_star, label=spec.name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training compute C (FLOPs)")
    ax.set_ylabel("compute-optimal loss L*(C) (nats/token)")
    ax.set_title("Loss frontier")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _log_x(ax) -> None:
    """Log x axis with labels at 1, 2 and 5 times each power of ten, so a span under a decade
    (a sweep's histograms) still reads more than one label; the default minor labels at every
    integer collided on narrow spans."""
    from matplotlib.ticker import LogFormatterSciNotation, LogLocator, NullFormatter

    ax.set_xscale("log")
    lo, hi = ax.get_xlim()
    if hi / lo < 100:
        ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        ax.xaxis.set_minor_formatter(LogFormatterSciNotation(labelOnlyBase=False, minor_thresholds=(float("inf"), float("inf"))))
    else:
        ax.xaxis.set_minor_formatter(NullFormatter())


def sweep(result: dict, width=12.0, height=4.2):
    """Histograms from a sweep JSON's state and plan, and the regret curve when present."""
    try:
        hist = np.asarray(result["state"]["quantities"]["hist"], np.float64)
        ranges = result["pilot"]["ranges"]
        quant = result["quantiles"]
    except (KeyError, TypeError):
        raise InputError("--sweep", "not a sweep JSON (needs 'state', 'pilot' and 'quantiles'; write one with "
                                    "`budgetopt sweep ... -f json -o FILE`)") from None
    names = [("params", "optimal parameters N*", True), ("tokens", "optimal tokens D*", True),
             ("loss", "optimal loss L* (nats/token)", False)]
    curve = result.get("regret_curve")
    fig, axes = _fig(width, height, 4 if curve else 3)

    for ax, (k, label, logq) in zip(axes, names):
        i = list(ranges).index(k)
        lo, hi = ranges[k]
        counts = hist[i][1:-1]
        # merge bins for readability (4096 -> 64)
        counts = counts.reshape(64, -1).sum(axis=1)
        edges = np.linspace(lo, hi, 65)
        x = np.exp(edges) if logq else edges
        ax.stairs(counts / counts.sum(), x, fill=True, alpha=0.6)
        for p in ("p05", "p50", "p95"):
            ax.axvline(quant[k][p], color="k", lw=0.8, ls="--" if p != "p50" else "-")
        if logq:
            _log_x(ax)
        ax.set_xlabel(label)
        ax.set_ylabel("share of samples")
        ax.set_title(f"{k}: p05 / p50 / p95 marked", fontsize=9)
    if curve:
        ax = axes[3]
        xs = [c["params"] for c in curve if not c["refined"]]
        ax.plot(xs, [c["expected_regret"] for c in curve if not c["refined"]], label="expected regret")
        ax.plot(xs, [c["p95_regret"] for c in curve if not c["refined"]], label="p95 regret", ls="--")
        rec = result["recommendation"]
        ax.scatter([rec["params"]], [rec["expected_regret"]], color="r", zorder=5, label="recommended N")
        _log_x(ax)
        ax.set_yscale("log")
        ax.set_xlabel("committed parameters N")
        ax.set_ylabel("regret vs hindsight optimum (nats)")
        ax.set_title("Robust choice of N", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"Sweep '{result.get('scenario', '')}': {result.get('samples', 0):,} samples, law {result.get('law', '')}",
                 fontsize=10)
    fig.tight_layout()
    return fig


def save(fig, path: str | Path, dpi: int = 100) -> None:
    """Write PNG or SVG atomically (temp file + rename); bad paths are InputErrors on -o."""
    path = Path(path)
    ext = path.suffix.lower().lstrip(".")
    if ext not in ("png", "svg"):
        raise InputError("-o", f"unsupported figure type {path.suffix!r}; use .png or .svg")
    try:
        data = to_bytes(fig.savefig, format=ext, dpi=dpi)
    finally:
        _plt().close(fig)
    write_atomic(path, data)
