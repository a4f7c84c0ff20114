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
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..core import units
from ..core.errors import ParameterError
from ..core.files import output_path, to_bytes, write_atomic
from ..core.units import format_count
from ..model.laws import has_loss

KINDS = ("frontier", "isoflop", "loss-vs-compute", "sweep", "forecast", "memory", "ladder", "moe", "backtest",
         "curves")


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

    from ..model.allocation import Budget, allocate, method_for
    from ..model.laws import to_array_law

    a = allocate(to_array_law(spec.params), Budget(jnp.asarray(log_c)), method=method_for(spec.params))
    n, d, loss = (np.asarray(v, np.float64) for v in (a.log_n, a.log_d, a.loss))
    return np.exp(n), np.exp(d), loss


def _band(spec, log_c: np.ndarray, draws: int = 2000, seed: int = 0):
    """p05/p95 of N*, D* and L* over law parameters drawn from the covariance, or the law's
    bootstrap draws (closed form); None when the law states no uncertainty."""
    import jax.numpy as jnp

    from ..model.allocation import closed_form_x
    from ..model.laws import Parametric, loss

    if spec.covariance is None and spec.draws is None:
        return None
    mean = np.array([float(v) for v in spec.params])
    if spec.draws is not None:
        th = np.asarray(spec.draws)
    else:
        th = np.random.default_rng(seed).multivariate_normal(mean, spec.covariance, draws)
    p = Parametric(*[jnp.asarray(th[:, i][:, None]) for i in range(5)])
    x = closed_form_x(p, jnp.asarray(log_c[None, :]))
    log_s = jnp.asarray(log_c[None, :] - math.log(6))
    l_star = np.asarray(loss(p, x, log_s - x), np.float64)
    x = np.asarray(x, np.float64)
    n_q = np.exp(np.percentile(x, [5, 95], axis=0))
    d_q = np.exp(np.percentile(np.asarray(log_s) - x, [5, 95], axis=0))
    return n_q, d_q, np.percentile(l_star, [5, 95], axis=0)


def frontier(specs, cmin=1e18, cmax=1e27, models=True, width=11.0, height=4.8):
    from ..plan.audit import model_catalog

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
    shown = []
    if models:  # numbered stars, the names in a key below: a dozen names do not fit beside the points
        ms = sorted((m for m in model_catalog().values() if cmin <= (m.flops or 6 * m.params * m.tokens) <= cmax),
                    key=lambda m: (m.flops or 6 * m.params * m.tokens, m.name))
        shown = [(i + 1, m, m.flops or 6 * m.params * m.tokens) for i, m in enumerate(ms)]
        for ax, y in ((ax_n, "params"), (ax_d, "tokens")):
            ax.scatter([c for _, _, c in shown], [getattr(m, y) for _, m, _ in shown], marker="*", s=40, color="k",
                       zorder=5)
    for ax, what in ((ax_n, "parameters N"), (ax_d, "training tokens D")):
        ax.set_xscale("log")
        _log_axis(ax, "y", counts=True)  # 100M, 1B, 1T: sizes as people write them
        ax.set_xlabel("training compute C (FLOPs)")
        ax.set_ylabel(f"compute-optimal {what}")
        ax.grid(True, which="major", alpha=0.3)
    ax_n.legend(fontsize=8, loc="upper left")
    ax_n.set_title("Compute-optimal model size")
    ax_d.set_title("Compute-optimal training tokens (★ = trained models)")
    if not shown:
        fig.tight_layout()
        return fig
    # each entry's spaces non-breaking: the key wraps between entries, never inside one ("12" | "Qwen3...")
    key = "   ".join(f"{i} {m.name}".replace(" ", "\u00a0") for i, m, _ in shown)
    fig.text(0.5, 0.01, "★ trained models: " + key, ha="center", va="bottom", fontsize=7, wrap=True)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    for ax, y in ((ax_n, "params"), (ax_d, "tokens")):
        place_labels(ax, [(c, getattr(m, y)) for _, m, c in shown], [str(i) for i, _, _ in shown])
    return fig


#: how far apart (points on the page) the ladder figure draws designs of equal cost
DODGE_PT = 7.0

#: offsets tried for a label, in points, nearest first; every label has a leader line to its point
_OFFSETS = [(round(r * math.cos(t), 1), round(r * math.sin(t), 1)) for r in (14, 19, 25, 32, 40, 50, 62)
            for t in (math.pi / 8 * k for k in (2, 14, 6, 10, 0, 8, 1, 15, 7, 9, 3, 13, 5, 11, 4, 12))]


def text_box(ann, renderer):
    """The display box of an annotation's text alone (an Annotation's own extent includes its
    leader line, which reaches its point)."""
    from matplotlib.text import Text

    ann.update_positions(renderer)
    return Text.get_window_extent(ann, renderer)


def place_labels(ax, points, labels, fontsize: float = 7) -> list:
    """Annotate ``points`` (data coordinates) with ``labels``, each at the first offset whose
    box overlaps no earlier label, no marker and stays inside the axes, with a leader line to
    its point. Returns the annotations (tests check their boxes do not overlap)."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    to_px = ax.transData.transform
    dots = [to_px(p) for p in points]
    boxes, out = [], []
    for (x, y), text in zip(points, labels):
        for k, (dx, dy) in enumerate(_OFFSETS):
            ann = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                              ha="left" if dx > 1 else "right" if dx < -1 else "center",
                              va="bottom" if dy > 1 else "top" if dy < -1 else "center",
                              arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.35", "shrinkA": 1, "shrinkB": 3})
            bb = text_box(ann, renderer).expanded(1.1, 1.1)
            clear = (inside.x0 <= bb.x0 and bb.x1 <= inside.x1 and inside.y0 <= bb.y0 and bb.y1 <= inside.y1
                     and not any(bb.overlaps(o) for o in boxes)
                     and not any(bb.x0 - 3 <= px <= bb.x1 + 3 and bb.y0 - 3 <= py <= bb.y1 + 3 for px, py in dots))
            if clear or k == len(_OFFSETS) - 1:
                boxes.append(bb)
                out.append(ann)
                break
            ann.remove()
    return out


def isoflop(spec, budgets=(1e19, 1e20, 1e21, 1e22, 1e23), runs=None, width=7.5, height=5.0):
    """Loss against N along isoFLOP curves under ``spec``, each curve's optimum marked. With
    ``runs`` the curves are the runs' own budgets (grouped as Approach 2 groups them) and each
    budget's runs share its curve's colour, so the fit can be judged run by run."""
    import jax.numpy as jnp

    from ..fit.approach2 import curves
    from ..model.laws import loss, to_array_law

    if not has_loss(spec.params):
        raise ParameterError("law", "an isoFLOP plot needs a law with a loss surface")
    fig, (ax,) = _fig(width, height)
    law = to_array_law(spec.params)
    groups = curves(runs, 0.05) if runs is not None else []
    if groups:
        budgets = [float(np.exp(np.mean(runs.log_budget[g]))) for g in groups]
    from matplotlib.colors import ListedColormap, LogNorm

    cmap = ListedColormap(_plt().get_cmap("viridis")(np.linspace(0.0, 0.9, 256)))  # no pale yellow on white
    norm = LogNorm(min(budgets), max(budgets) * (1 + 1e-9))
    shade = norm(np.asarray(budgets, np.float64))
    legend = len(budgets) <= 8  # more budgets: a colour bar instead of a legend entry each
    for k, c in enumerate(budgets):
        n_star, d_star, l_star = _optimum(spec, np.array([math.log(c)]))
        if groups:  # the span of the budget's runs, a little wider, and the optimum
            g = runs.log_n[groups[k]]
            left, right = min(g.min(), math.log(n_star[0])) - 0.3, max(g.max(), math.log(n_star[0])) + 0.3
        else:
            left, right = math.log(n_star[0]) - 2.5, math.log(n_star[0]) + 2.5
        x = np.linspace(left, right, 200)
        y = np.asarray(loss(law, jnp.asarray(x), jnp.asarray(math.log(c / 6) - x)))
        colour = cmap(shade[k])
        ax.plot(np.exp(x), y, color=colour, label=f"C = {c:.2g} FLOPs" if legend else None)
        ax.scatter(n_star, l_star, color=colour, marker="o", s=36, edgecolors="k", linewidths=0.6, zorder=5)
        if groups:
            idx = groups[k]
            ax.scatter(np.exp(runs.log_n[idx]), np.exp(runs.log_l[idx]), s=14, color=colour, marker="x", zorder=4,
                       label="runs (x)" if legend and k == 0 else None)
    if not legend:
        bar = fig.colorbar(_plt().cm.ScalarMappable(norm, cmap), ax=ax)
        bar.set_label("budget C (FLOPs); runs as x")
    _log_axis(ax, counts=True)
    ax.set_xlabel("parameters N")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(f"IsoFLOP curves under {spec.name} (● = optimum)" + (", with the runs" if groups else ""))
    ax.grid(True, alpha=0.3)
    if legend:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def loss_vs_compute(specs, cmin=1e18, cmax=1e27, width=7.5, height=5.0):
    """The compute-optimal loss L*(C) of each law, its p05–p95 band where the law states its
    uncertainty (covariance or bootstrap draws), and its irreducible loss E dotted."""
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator

    without = [spec.name for spec in specs if not has_loss(spec.params)]
    if without:  # an allocation rule without a loss surface would leave its line out unsaid
        raise ParameterError("law", f"{', '.join(without)} gives no loss (an allocation rule): a loss-vs-compute plot "
                             "needs laws with a loss surface")
    fig, (ax,) = _fig(width, height)
    log_c = np.linspace(math.log(cmin), math.log(cmax), 80)
    c = np.exp(log_c)
    for spec in specs:
        _, _, l_star = _optimum(spec, log_c)
        line, = ax.plot(c, l_star, label=spec.name)
        band = _band(spec, log_c) if spec.kind == "parametric" else None
        if band is not None:
            ax.fill_between(c, band[2][0], band[2][1], color=line.get_color(), alpha=0.15, lw=0,
                            label=f"{spec.name} p05–p95 (law uncertainty)")
        log_e = getattr(spec.params, "log_E", None)
        if log_e is not None and np.ndim(log_e) == 0:
            e = math.exp(float(log_e))
            ax.axhline(e, color=line.get_color(), ls=":", lw=1, label=f"{spec.name} irreducible loss E = {e:.2f}")
    ax.set_xscale("log")
    ax.set_yscale("log")  # loss in nats read as numbers (1.9, 2.2), not 2×10⁰
    ax.yaxis.set_major_locator(MaxNLocator(nbins=8, steps=[1, 2, 2.5, 5, 10]))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%.2g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter(""))
    ax.set_xlabel("training compute C (FLOPs)")
    ax.set_ylabel("compute-optimal loss L*(C) (nats/token)")
    ax.set_title("Loss frontier")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _count_tick(v: float) -> str:
    """A count as a tick label: ``format_count`` without trailing zeros (20B, 1T, 1.5T, 100B)."""
    text = format_count(v)
    m = re.fullmatch(r"(\d+)\.(\d*?)0*([KMBT]?)", text)
    return text if m is None else m[1] + (f".{m[2]}" if m[2] else "") + m[3]


def _log_axis(ax, which: str = "x", counts: bool = False) -> None:
    """Log axis (``which`` "x" or "y") with labels at 1, 2 and 5 times each power of ten, so a
    span under a decade (a sweep's histograms, a ladder's regrets) still reads more than one label;
    the default minor labels at every integer collided on narrow spans. ``counts``: parameters or
    tokens, labelled as people write them (20B, 1T), not 2×10¹⁰; otherwise plain numbers (0.002)
    on a y axis, where 2×10⁻³ beside a tick is hard to read."""
    from matplotlib.ticker import FuncFormatter, LogFormatterSciNotation, LogLocator, NullFormatter

    axis = ax.xaxis if which == "x" else ax.yaxis
    getattr(ax, f"set_{which}scale")("log")
    lo, hi = ax.get_xlim() if which == "x" else ax.get_ylim()
    human = FuncFormatter(lambda v, _: _count_tick(v) if counts else f"{v:g}")
    if counts or which == "y":
        axis.set_major_formatter(human)
    if hi / lo < 100:
        axis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        axis.set_minor_formatter(human if counts or which == "y" else LogFormatterSciNotation(
            labelOnlyBase=False, minor_thresholds=(float("inf"), float("inf"))))
    else:
        axis.set_minor_formatter(NullFormatter())


def sweep(result: Any, width: float = 12.0, height: float = 4.2):
    """Histograms from a sweep JSON's state and plan, and the regret curve when present."""
    try:
        hist = np.asarray(result["state"]["quantities"]["hist"], np.float64)
        ranges = result["pilot"]["ranges"]
        quant = result["quantiles"]
    except (KeyError, TypeError):
        raise ParameterError("sweep_file", "not a sweep JSON (needs 'state', 'pilot' and 'quantiles'; write one with "
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
            _log_axis(ax, counts=True)
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
        ax.annotate(format_count(rec["params"]), (rec["params"], rec["expected_regret"]), xytext=(7, -3),
                    textcoords="offset points", ha="left", fontsize=8, color="r")
        _log_axis(ax, counts=True)
        ax.set_yscale("log")
        ax.set_xlabel("committed parameters N")
        ax.set_ylabel("regret vs hindsight optimum (nats)")
        ax.set_title("Robust choice of N", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"Sweep '{result.get('scenario', '')}': {result.get('samples', 0):,} samples, law "
                 f"{result.get('law', '')}",
                 fontsize=10)
    fig.tight_layout()
    return fig


def save(fig, path: str | Path, dpi: int = 100) -> None:
    """Write PNG or SVG atomically (temp file + rename); bad paths are errors on ``output``."""
    path = Path(path)
    ext = _check_output(path)
    try:
        data = to_bytes(fig.savefig, format=ext, dpi=dpi)
    finally:
        _plt().close(fig)
    write_atomic(path, data)


def _check_output(path: Path) -> str:
    ext = path.suffix.lower().lstrip(".")
    if ext not in ("png", "svg"):
        raise ParameterError("output", f"unsupported figure type {path.suffix!r}; use .png or .svg")
    output_path(path)
    return ext


def forecast(result: Any, width: float = 7.0, height: float = 4.8):
    """Metric against loss: the runs, the fitted link, and the forecast with its interval in
    loss (horizontal) and in the metric (vertical)."""
    from ..model.links import LINK_PARAMS, predict_link

    try:
        lk, runs, lo, me = result["link"], result["runs"], result["loss"], result["metric"]
        theta = {k: lk[k] for k in LINK_PARAMS[lk["kind"]]}
        loss, metric = np.asarray(runs["loss"], np.float64), np.asarray(runs["metric"], np.float64)
    except (KeyError, TypeError):
        raise ParameterError("forecast_file", "not a forecast JSON with runs (write one with `budgetopt forecast RUNS "
                                              "... -f json -o FILE`)") from None
    fig, (ax,) = _fig(width, height, 1)
    left = min(loss.min(), lo["low"]) - 0.05
    xs = np.linspace(left, loss.max() + 0.05, 200)
    ax.scatter(loss, metric, s=14, color="0.35", label=f"runs ({len(loss)})", zorder=3)
    ys = np.asarray(predict_link({"kind": lk["kind"], **theta}, xs))
    inside = (xs >= loss.min()) & (xs <= loss.max())  # the link where runs hold it; dashed beyond
    ax.plot(np.where(inside, xs, np.nan), ys, color="C0", label=f"fitted {lk['kind']} link")
    ax.plot(np.where(inside, np.nan, xs), ys, color="C0", ls="--", label="extrapolated")
    ax.errorbar([lo["point"]], [me["point"]], xerr=[[lo["point"] - lo["low"]], [lo["high"] - lo["point"]]],
                yerr=[[me["point"] - me["low"]], [me["high"] - me["point"]]], fmt="o", color="C3", capsize=4, zorder=4,
                label=f"forecast, {result['level']:.0%} interval")
    ax.axvspan(lo["low"], lo["high"], color="C3", alpha=0.12, lw=0)
    ax.axhspan(me["low"], me["high"], color="C3", alpha=0.12, lw=0)
    t = result["target"]
    ax.set_xlabel("loss (nats/token)")
    ax.set_ylabel(result.get("metric_col", "metric"))
    ax.set_title(f"Forecast for N = {format_count(t['params'])}, D = {format_count(t['tokens'])} ({t['flops']:.2g} "
                 f"FLOPs)\n{result['metric_col'] if 'metric_col' in result else 'metric'} = {me['point']:.3g} "
                 f"[{me['low']:.3g}, {me['high']:.3g}]; law {result['law']}", fontsize=9)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def ladder(result: Any, width: float = 12.0, height: float = 4.6):
    """Ladder designs (``budgetopt ladder -f json``): forecast error in N* (median to p95) and p95
    regret against each design's cost; colour = sizes per budget, marker = spread; the designs
    no cheaper design beats on regret joined, the recommended one starred and labelled."""
    keys = ("design", "points", "spread", "eligible", "cost_flops", "n_error_p50", "n_error_p95", "regret_p95")
    try:
        rows = [r for r in result["designs"] if math.isfinite(r["regret_p95"])]
        target = float(result["target_flops"])
        _ = result["noise"]["sigma"], result["ladders"], result["law"], result["prior"], result["approach"]
        if "recommended" not in result or not all(isinstance(r, dict) and all(k in r for k in keys) for r in rows):
            raise KeyError("designs")
    except (KeyError, TypeError, ValueError):
        raise ParameterError("ladder_file", "not a ladder JSON (needs its 'designs', 'target_flops', 'noise'...; write "
                             "one with `budgetopt ladder ... -f json -o FILE`)") from None
    from matplotlib.ticker import FuncFormatter

    fig, (ax_e, ax_r) = _fig(width, height, 2)
    dodged = len({round(math.log(r["cost_flops"]), 9) for r in rows}) < len(rows)
    points = sorted({r["points"] for r in rows})
    spreads = sorted({r["spread"] for r in rows})
    colors = {p: f"C{i % 10}" for i, p in enumerate(points)}
    markers = {s: "osD^v<>p"[i % 8] for i, s in enumerate(spreads)}
    from matplotlib.transforms import ScaledTranslation

    # designs of equal cost (same budgets and sizes, other spreads) stand side by side, DODGE_PT
    # apart on the page; their data x stays the cost
    dodge = {}
    for r in rows:
        same = [q["design"] for q in rows if math.isclose(q["cost_flops"], r["cost_flops"], rel_tol=1e-9)]
        shift = (same.index(r["design"]) - (len(same) - 1) / 2) * DODGE_PT / 72
        dodge[r["design"]] = ax_e.transData + ScaledTranslation(shift, 0, fig.dpi_scale_trans)
    wsd = [r for r in rows if r.get("schedule") == "wsd"]
    for r in rows:
        c, m = colors[r["points"]], markers[r["spread"]]
        face = c if r["eligible"] else "none"
        edge = "k" if r.get("schedule") == "wsd" else c  # a WSD design: black-edged
        at = dodge[r["design"]]
        ax_e.plot([r["cost_flops"]] * 2, [100 * r["n_error_p50"], 100 * r["n_error_p95"]], color=c, lw=1, alpha=0.6,
                  transform=at)
        ax_e.scatter([r["cost_flops"]], [100 * r["n_error_p95"]], color=face, edgecolors=edge, marker=m, s=28, zorder=3,
                     transform=at)
        ax_e.scatter([r["cost_flops"]], [100 * r["n_error_p50"]], color=c, marker="_", s=40, zorder=3, transform=at)
        ax_r.scatter([r["cost_flops"]], [r["regret_p95"]], color=face, edgecolors=edge, marker=m, s=28, zorder=3)
    def runs_of(r):
        return tuple(r["budgets"]), r["points"], r["spread"], r["centre"], r["repeats"]

    finals = {runs_of(r): r for r in rows if r.get("schedule") != "wsd"}
    for w in wsd:  # each WSD design joined to the final-loss design of the same points (its name may be cut)
        f = finals.get(runs_of(w))
        if f is not None:
            ax_r.plot([f["cost_flops"], w["cost_flops"]], [f["regret_p95"], w["regret_p95"]], color=colors[w["points"]],
                      lw=0.8, alpha=0.6, zorder=2)
    # artists drawn with a shifted transform do not count for autoscaling: the limits from the data
    ax_e.update_datalim([(r["cost_flops"], 100 * r[k]) for r in rows for k in ("n_error_p50", "n_error_p95")])
    ax_e.autoscale_view()
    front, best = [], math.inf  # the designs no cheaper (or equal) design beats on p95 regret
    for r in sorted(rows, key=lambda r: (r["cost_flops"], r["regret_p95"])):
        if r["regret_p95"] < best:
            front.append(r)
            best = r["regret_p95"]
    ax_r.plot([r["cost_flops"] for r in front], [r["regret_p95"] for r in front], color="0.5", lw=1, ls="--",
              zorder=2, label="no cheaper design does better")
    if result.get("max_regret"):
        ax_r.axhline(result["max_regret"], color="C3", lw=1, ls=":", label=f"--max-regret {result['max_regret']:g}")
    if result.get("ladder_budget"):
        for ax in (ax_e, ax_r):
            ax.axvline(result["ladder_budget"], color="C3", lw=1, ls="-.",
                       label=f"--ladder-budget {result['ladder_budget']:.2g}" if ax is ax_r else None)
    rec = next((r for r in rows if r["design"] == result["recommended"]), None)
    if rec is not None:
        ax_e.scatter([rec["cost_flops"]], [100 * rec["n_error_p95"]], marker="*", s=220, color="gold", edgecolors="k",
                     zorder=4, transform=dodge[rec["design"]])
        ax_r.scatter([rec["cost_flops"]], [rec["regret_p95"]], marker="*", s=220, color="gold", edgecolors="k",
                     zorder=4, label=f"recommended: {rec['design']}")
        place_labels(ax_r, [(rec["cost_flops"], rec["regret_p95"])], [rec["design"]], fontsize=8)
    for p in points:
        ax_e.scatter([], [], color=colors[p], marker="o", s=28, label=f"{p} sizes/budget")
    for s_ in spreads:
        ax_e.scatter([], [], color="0.4", marker=markers[s_], s=28, label=f"spread ±{s_:g}x")
    if wsd:
        ax_e.scatter([], [], color="0.4", edgecolors="k", marker="o", s=28,
                     label="WSD trunks (black edge; right: joined to the same points as separate runs)")
    if not all(r["eligible"] for r in rows):
        ax_e.scatter([], [], color="none", edgecolors="0.4", marker="o", s=28, label="fits fail > 5 % (hollow)")
    for ax in (ax_e, ax_r):
        ax.set_xscale("log")
        ax.set_xlabel(f"ladder cost (FLOPs; target {target:.2g})")
        sec = ax.secondary_xaxis("top", functions=(lambda x: 100 * x / target, lambda p: p * target / 100))
        sec.set_xlabel("% of the target", fontsize=8)
        sec.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 0.01, not 10⁻²
        sec.tick_params(labelsize=7)
        ax.grid(True, which="major", alpha=0.3)
    ax_e.set_ylabel("|N* forecast error| (%): p50 (dash) to p95")
    ax_r.set_ylabel("regret at p95 (nats)")
    _log_axis(ax_r, "y")
    noise = result["noise"]["sigma"]
    drift = result["noise"].get("model_drift_per_decade", 0.0)
    model = (f"\nmodel error {drift:+.2f} ± {result['noise'].get('model_sd_per_decade', 0.0):.2f} in ln N* per "
             "decade extrapolated" if result["noise"].get("model_error", "none") != "none" else "")
    ax_e.set_title(f"N* at {target:.2g} FLOPs, {result['ladders']} ladders/design, noise {noise:g}"
                   + ("; equal costs side by side" if dodged else "") + model, fontsize=9)
    ax_r.set_title(f"Regret of the forecast allocation; true laws {result['law']} ({result['prior']}), "
                   f"{result['approach'].split(' (')[0]}", fontsize=9)
    # one legend under both panels: inside, it hid the costliest designs' points
    handles, labels = [], []
    for ax in (ax_e, ax_r):
        h, lab = ax.get_legend_handles_labels()
        handles += h
        labels += lab
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=min(len(labels), 5), frameon=False)
    rows_of_legend = -(-len(labels) // min(len(labels), 5))
    fig.tight_layout(rect=(0, 0.035 * rows_of_legend + 0.02, 1, 1))
    return fig


def memory_by_zero(shape, layout, device_gb: float, reserve_gb: float = 4.0, width: float = 7.0, height: float = 4.6):
    """Training memory per device by part (weights, gradients, optimizer states, activations)
    for ZeRO stages 0-3 of ``layout``, against the device's usable memory."""
    import dataclasses

    from ..model.memory import ZERO_STAGES, memory

    fig, (ax,) = _fig(width, height, 1)
    parts = [("weights", "C0"), ("gradients", "C1"), ("optimizer", "C2"), ("activations", "C3")]
    recs = [memory(shape, dataclasses.replace(layout, zero=z), device_gb, reserve_gb) for z in ZERO_STAGES]
    bottom = np.zeros(len(recs))
    for name, color in parts:
        v = np.array([r[name] for r in recs]) / 1e9
        ax.bar([f"ZeRO-{z}" + ("\n(plan)" if z == layout.zero else "") for z in ZERO_STAGES], v, bottom=bottom,
               color=color, label=name)
        bottom += v
    for i, r in enumerate(recs):
        ax.text(i, bottom[i], f"{r['total'] / 1e9:.0f} GB", ha="center", va="bottom", fontsize=8)
    usable = recs[0]["device_memory"] / 1e9
    ax.axhline(usable, color="k", ls="--", lw=1)
    ax.text(len(recs) - 0.5, usable, f"usable: {usable:.0f} GB", ha="right", va="bottom", fontsize=8,
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
    ax.set_ylabel("memory per device (GB)")
    ax.set_xlabel(f"ZeRO stage over dp = {layout.dp}\n(1 shards optimizer states, 2 also gradients, 3 also weights)",
                  fontsize=9)
    ax.set_title(f"{format_count(shape.params()['total'])} parameters ({shape.n_layer} x {shape.d_model:,}), seq "
                 f"{shape.seq_len:,}\ntp {layout.tp} x pp {layout.pp}, micro-batch {layout.micro_batch}, recompute "
                 f"{layout.recompute}", fontsize=9)
    ax.set_ylim(0, max(bottom.max(), usable) * 1.12)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: inside it hid bars or the line
    fig.tight_layout()
    return fig


#: the inputs each figure reads (``draw``'s keywords); any other given input has no effect on it
INPUTS_OF = {"frontier": {"law", "law_file", "min_flops", "max_flops"},
             "loss-vs-compute": {"law", "law_file", "min_flops", "max_flops"},
             "isoflop": {"law", "law_file", "runs"}, "sweep": {"sweep_file"}, "forecast": {"forecast_file"},
             "ladder": {"ladder_file"}, "memory": {"plan_file", "law", "law_file"},
             "moe": {"min_flops", "max_flops", "max_total_params"}, "backtest": {"backtest_file"},
             "curves": {"curves_file"}}


def unused_inputs(kind: str, given: set[str]) -> list[str]:
    """The given inputs figure ``kind`` does not read, in a stable order (a memory figure drawn
    from a plan file takes its law from the plan, so a law given beside it is unused too)."""
    used = INPUTS_OF.get(kind, set())
    if kind == "memory" and "plan_file" in given:
        used = {"plan_file"}
    return sorted(given - used)


def backtest(result: Any, width: float = 11.0, height: float = 4.6):
    """`fit --backtest -f json`: the forecast error of ln N* (left) and of the runs' mean ln loss
    (right) against the decades extrapolated; colour = ladder, marker = approach; per approach
    the calibrated line (drift x decades, ``fit.backtest.calibrate`` on these rows) with its
    ±sd band."""
    from ..fit.backtest import calibrate
    from ..fit.runs import APPROACHES

    try:
        rows = result["backtest"]
        for r in rows:
            _ = float(r["decades"]), float(r["n_star_error"]), str(r["group"]), APPROACHES[r["approach"]]
        if not rows:
            raise ValueError("no rows")
    except (KeyError, TypeError, ValueError):
        raise ParameterError("backtest_file", "not a backtest JSON with rows (write one with `budgetopt fit RUNS "
                             "--backtest -f json -o FILE`)") from None
    fig, (ax_n, ax_l) = _fig(width, height, 2)
    groups = sorted({r["group"] for r in rows})
    approaches = [a for a in APPROACHES if any(r["approach"] == a for r in rows)]
    colours = [f"C{i % 10}" for i in range(len(groups))]
    markers = dict(zip(APPROACHES, ("s", "o", "^")))
    top = max(r["decades"] for r in rows)
    xs = np.linspace(0.0, top * 1.05, 50)
    for ax, key, what in ((ax_n, "n_star", "n_star_error"), (ax_l, "loss", "loss_error")):
        for a in approaches:
            for g, c in zip(groups, colours):
                pts = [(r["decades"], r[what]) for r in rows if r["approach"] == a and r["group"] == g
                       and r[what] is not None]
                if pts:
                    ax.scatter(*zip(*pts), s=14, color=c, marker=markers[a], alpha=0.6, linewidths=0)
            cal = calibrate(rows, a)
            if f"{key}_drift_per_decade" in cal:
                drift, sd = cal[f"{key}_drift_per_decade"], cal[f"{key}_sd_per_decade"]
                line = ax.plot(xs, drift * xs, color="k", lw=1.2, ls={"2": ":", "3": "-", "vpnls": "--"}[a],
                               label=f"{APPROACHES[a]}: {drift:+.3f} ± {sd:.3f}/decade")[0]
                ax.fill_between(xs, (drift - sd) * xs, (drift + sd) * xs, color=line.get_color(), alpha=0.06)
        ax.axhline(0.0, color="0.6", lw=0.8)
        ax.set_xlabel("decades extrapolated")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="lower left")
        else:  # Approach 2 alone: no loss surface to forecast with
            ax.text(0.5, 0.5, "no loss forecast (Approach 2 fits no loss surface)", transform=ax.transAxes,
                    ha="center", va="center", fontsize=8, color="0.4")
    ax_n.set_ylabel("ln N* error (forecast / later fit)")
    ax_l.set_ylabel("ln loss error (predicted / observed)")
    ax_n.set_title("N* forecast vs the fit up to that budget", fontsize=9)
    ax_l.set_title("Loss forecast of the runs there", fontsize=9)
    handles = [_plt().Line2D([], [], color=c, marker="o", ls="", label=g) for g, c in zip(groups, colours)]
    handles += [_plt().Line2D([], [], color="0.3", marker=markers[a], ls="", label=APPROACHES[a]) for a in approaches]
    ncol = max(1, min(len(handles), int(width // 2.6)))
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=7, frameon=False)
    rows = -(-len(handles) // ncol)
    fig.tight_layout(rect=(0, min(0.45, 0.045 * rows * 4.6 / height + 0.02), 1, 1))
    return fig


#: the expert counts the MoE figure draws, and its default memory cap (total parameters)
MOE_EXPERTS = (1.0, 8.0, 32.0)
MOE_CAP = 2e11
#: each figure's compute axis (FLOPs) when --min-flops / --max-flops are not given
FLOPS_AXIS = {"moe": (1e19, 1e26)}
DEFAULT_FLOPS_AXIS = (1e18, 1e27)


def moe(cmin=FLOPS_AXIS["moe"][0], cmax=FLOPS_AXIS["moe"][1], max_total_params=MOE_CAP, width=11.0, height=4.6):
    """Dense or MoE under Ludziejewski et al. 2025: the compute-optimal loss against budget for
    E = 1, 8, 32 experts (solid: no memory cap; dashed: all experts held in
    ``max_total_params``), and the best expert count (powers of two to 64) with and without the
    cap — the memory cap's effect."""
    import jax.numpy as jnp

    from ..model.laws import get_preset, to_array_law
    from ..model.moe import allocate_joint

    spec = get_preset("ludziejewski2025-moe")
    law = to_array_law(spec.params)
    log_c = np.linspace(math.log(cmin), math.log(cmax), 60)
    c = np.exp(log_c)
    grid = np.array([2.0 ** k for k in range(7)])
    fig, (ax_l, ax_e) = _fig(width, height, 2)
    for cap, style in ((math.inf, "-"), (max_total_params, "--")):
        a = allocate_joint(law, jnp.asarray(log_c[:, None]), math.log(cap), jnp.asarray(grid[None, :]))
        loss = np.asarray(a.loss, np.float64)
        for k, e in enumerate(MOE_EXPERTS):
            j = int(np.flatnonzero(grid == e)[0])
            ax_l.plot(c, loss[:, j], ls=style, color=f"C{k}",
                      label=f"E = {e:g}" + ("" if math.isinf(cap) else f", ≤ {_count_tick(cap)} total"))
        best = grid[np.argmin(np.where(np.isfinite(loss), loss, np.inf), axis=1)]
        ax_e.step(c, best, where="mid", ls=style, color="k",
                  label="no memory cap" if math.isinf(cap) else f"all experts in {_count_tick(cap)} parameters")
    for ax in (ax_l, ax_e):
        ax.set_xscale("log")
        ax.set_xlabel("training compute C (FLOPs)")
        ax.grid(True, which="major", alpha=0.3)
    ax_l.set_ylabel("compute-optimal loss (nats/token)")
    ax_l.set_title("Loss of the compute-optimal model, by expert count", fontsize=10)
    ax_e.set_yscale("log", base=2)
    ax_e.set_yticks(grid, [f"{e:g}" for e in grid])
    ax_e.set_ylabel("best expert count E (of 1, 2, 4 .. 64)")
    ax_e.set_title("The memory cap decides the expert count", fontsize=10)
    ax_l.legend(fontsize=7, ncol=2)
    ax_e.legend(fontsize=8, loc="lower left")
    fig.suptitle(f"{spec.name} (Ludziejewski et al. 2025); fitted below ~10B active parameters", fontsize=9)
    fig.tight_layout()
    return fig


def memory_of_plan(plan: Any = None, spec=None, **size):
    """The memory figure of a run plan (``budgetopt plan -f json``): its shape and layout under
    each ZeRO stage against its device's usable memory, the plan's own stage marked. Without a
    plan, the README's: 1024 H100s for 30 days at 8K context, tp 8, full recompute, under
    ``spec`` (default law when None)."""
    import dataclasses

    from ..model.memory import Layout
    from ..model.shape import Shape

    if plan is None:
        from ..model.hardware import cluster_from
        from ..model.laws import resolve_law
        from ..plan.launch import launch_plan

        hw = cluster_from("h100-sxm", count=1024, days=30)[0]
        plan = launch_plan(spec or resolve_law(), cluster=hw, seq_len=8192, layout=Layout(tp=8, recompute="full"))
    try:
        sh, lay = plan["shape"], plan["layout"]
        shape = Shape(**{f.name: sh[f.name] for f in dataclasses.fields(Shape)})
        layout = Layout(**{f.name: lay[f.name] for f in dataclasses.fields(Layout) if f.name in lay})
        usable_gb = float(plan["memory"]["device_memory"]) / 1e9
    except (KeyError, TypeError, ValueError):
        raise ParameterError("plan_file", "not a plan JSON (needs its 'shape', 'layout' and 'memory'; write one with "
                             "`budgetopt plan ... -f json -o FILE`)") from None
    return memory_by_zero(shape, layout, usable_gb, reserve_gb=0.0, **size)


def curves_figure(result: Any, width: float = 0.0, height: float = 6.0):
    """`curves -f json`: per model size (a column each) the logged losses (dots), the fitted law
    (lines; dashed on held-out curves it never saw), each predicted schedule with its band; the
    learning rate of every run beneath, on a shared step axis."""
    try:
        recs = list(result["groups"].values()) if "groups" in result else [result]
        for r in recs:
            for c in r["fitted"] + r.get("holdout", []):
                _ = c["curve"]["step"], c["curve"]["loss"], c["curve"]["fitted"], c["curve"]["lr"]
            for p in r.get("predictions", []):
                _ = p["curve"]["low"], p["curve"]["high"], p["curve"]["lr"], p["schedule"]
    except (KeyError, TypeError):
        raise ParameterError("curves_file", "not a curves JSON (write one with `budgetopt curves FILES ... -f json -o "
                             "FILE`)") from None
    plt = _plt()
    cols = len(recs)
    fig, axes = plt.subplots(2, cols, figsize=(width or 5.5 * cols + 1.0, height), squeeze=False, sharex="col",
                             gridspec_kw={"height_ratios": (3, 1)})
    for j, rec in enumerate(recs):
        ax, ax_lr = axes[0, j], axes[1, j]
        k = 0
        for kind in ("fitted", "holdout"):
            for c in rec.get(kind, []):
                cv, colour = c["curve"], f"C{k % 10}"
                k += 1
                ax.scatter(cv["step"], cv["loss"], s=4, color=colour, alpha=0.5, linewidths=0)
                ax.plot(cv["step"], cv["fitted"], color=colour, lw=1.1, ls="-" if kind == "fitted" else "--",
                        label=f"{c['run']} ({'fitted' if kind == 'fitted' else 'held out'})")
                ax_lr.plot(cv["step"], cv["lr"], color=colour, lw=1.0, ls="-" if kind == "fitted" else "--")
        for p in rec.get("predictions", []):
            cv, colour = p["curve"], f"C{k % 10}"
            k += 1
            ax.plot(cv["step"], cv["loss"], color=colour, lw=1.6, ls=":", label=f"{p['schedule']} (predicted)")
            ax.fill_between(cv["step"], cv["low"], cv["high"], color=colour, alpha=0.15, linewidths=0)
            ax_lr.plot(cv["step"], cv["lr"], color=colour, lw=1.4, ls=":")
        losses = [v for kind in ("fitted", "holdout") for c in rec.get(kind, []) for v in c["curve"]["loss"]]
        lo, hi = min(losses), np.quantile(losses, 0.98)  # the first steps' steep losses would flatten the rest
        ax.set_ylim(lo - 0.15 * (hi - lo), hi)
        size = f" (size {rec['group']})" if len(recs) > 1 or rec["group"] != "all" else ""
        ax.set_title(f"{rec['form']} law{size}", fontsize=9)
        ax.set_ylabel("loss")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6.5, loc="upper right")
        ax_lr.set_ylabel("learning rate")
        ax_lr.set_xlabel("step")
        ax_lr.grid(True, alpha=0.3)
        ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    fig.tight_layout()
    return fig


def draw(kind: str, output: str | Path | None = None, *, law: list[str] | None = None,
         law_file: str | Path | None = None, sweep_file: str | Path | None = None, runs: str | Path | None = None,
         min_flops: float | None = None, max_flops: float | None = None, width: float = 0.0, height: float = 0.0,
         dpi: int = 100,
         forecast_file: str | Path | None = None, ladder_file: str | Path | None = None,
         plan_file: str | Path | None = None, max_total_params: float | None = None,
         backtest_file: str | Path | None = None, curves_file: str | Path | None = None) -> Path:
    """Draw figure ``kind`` (one of KINDS) and save it to ``output`` (PNG or SVG; default
    KIND.png); returns the path. ``law``: preset names (default hoffmann2022 and
    besiroglu2024), ``law_file`` adds a fitted law; ``sweep_file``: a sweep JSON for ``sweep``
    (default: a small built-in sweep); ``forecast_file``: a forecast JSON for ``forecast``;
    ``ladder_file``: a ladder-design JSON for ``ladder``; ``plan_file``: a plan JSON for
    ``memory`` (default: the README's plan, 1024 H100s for 30 days at 8K context, tp 8);
    ``runs``: a runs CSV overlaid on ``isoflop``; compute axis from ``min_flops`` to
    ``max_flops`` FLOPs (None: the kind's, FLOPS_AXIS); size in inches (0 = the kind's default)."""
    from ..core.files import load_json
    from ..model.laws import resolve_law

    if kind not in KINDS:
        raise ParameterError("kind", f"unknown plot {kind!r}; allowed: {', '.join(KINDS)}")
    out = Path(output) if output is not None else Path(f"{kind}.png")
    _check_output(out)
    if not 10 <= dpi <= 1200:
        raise ParameterError("dpi", f"must be from 10 to 1200, got {dpi}")
    for name, inches in (("width", width), ("height", height)):  # 0: the plot's own size
        if not (inches == 0 or 1 <= inches <= 100):
            raise ParameterError(name, f"must be from 1 to 100 inches (0: the plot's default), got {inches:g}")
    lo, hi = FLOPS_AXIS.get(kind, DEFAULT_FLOPS_AXIS)
    min_flops = lo if min_flops is None else min_flops
    max_flops = hi if max_flops is None else max_flops
    if not (0 < min_flops < max_flops and math.isfinite(max_flops)):
        raise ParameterError("max_flops",
                             f"need 0 < {{min_flops}} < {{max_flops}}, got {min_flops:g} and {max_flops:g}",
                             names=True)
    specs = [resolve_law(name) for name in (law or ["hoffmann2022", "besiroglu2024"])]
    if law_file is not None:
        specs.append(resolve_law(law_file=law_file))
    size = {k: v for k, v in (("width", width), ("height", height)) if v}
    if kind == "frontier":
        fig = frontier(specs, min_flops, max_flops, **size)
    elif kind == "loss-vs-compute":
        fig = loss_vs_compute(specs, min_flops, max_flops, **size)
    elif kind == "isoflop":
        from ..fit.runs import read_runs

        fig = isoflop(specs[-1], runs=read_runs(runs) if runs else None, **size)
    elif kind == "moe":
        if max_total_params is not None:
            units.require_in(max_total_params, "max_total_params", 1.0, what="a number of parameters")
        fig = moe(min_flops, max_flops, max_total_params=max_total_params or MOE_CAP, **size)
    elif kind == "memory":
        fig = memory_of_plan(load_json(plan_file, "plan_file", "a plan JSON output") if plan_file is not None else
                             None, specs[-1] if law or law_file else None, **size)
    elif kind == "ladder":
        if ladder_file is None:
            raise ParameterError("ladder_file",
                                 "plot ladder needs a ladder JSON: `budgetopt ladder ... -f json -o FILE`")
        fig = ladder(load_json(ladder_file, "ladder_file", "a ladder JSON output"), **size)
    elif kind == "backtest":
        if backtest_file is None:
            raise ParameterError("backtest_file", "plot backtest needs a backtest JSON: `budgetopt fit RUNS --backtest "
                                 "-f json -o FILE`")
        fig = backtest(load_json(backtest_file, "backtest_file", "a backtest JSON output"), **size)
    elif kind == "curves":
        if curves_file is None:
            raise ParameterError("curves_file", "plot curves needs a curves JSON: `budgetopt curves FILES ... -f json "
                                 "-o FILE`")
        fig = curves_figure(load_json(curves_file, "curves_file", "a curves JSON output"), **size)
    elif kind == "forecast":
        if forecast_file is None:
            raise ParameterError("forecast_file",
                                 "plot forecast needs a forecast JSON: `budgetopt forecast RUNS ... -f json -o FILE`")
        fig = forecast(load_json(forecast_file, "forecast_file", "a forecast JSON output"), **size)
    else:
        if sweep_file is not None:
            res = load_json(sweep_file, "sweep_file", "a sweep JSON output")
        else:  # a small built-in sweep, so `budgetopt plot sweep` works as is
            from ..sweep import scenario as scn
            from ..sweep.driver import run

            res = run(scn.with_overrides(scn.example("h100-cluster"), candidates=32), samples=200_000)
        fig = sweep(res, **size)
    save(fig, out, dpi)
    return out
