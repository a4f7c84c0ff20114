"""`budgetopt forecast`: a two-step forecast of a downstream metric (the OLMo ladder's and Llama 3's recipe): compute ->
loss by the loss law, loss -> metric by a fitted link (``links``), with an interval that
carries both steps' uncertainty.

The runs are bootstrapped once: replicate r resamples the runs (integer weights), refits the
loss law on them (VPNLS, all replicates in one vmapped call; or, for a preset law, draws it from
its published covariance) and refits the link on the same resample; the forecast of replicate r
is link_r(L_r(N, D)) at the target. The point forecast is replicate 0 (all runs once); the
interval is the replicates' percentile interval at ``level``.

Units: N parameters, D tokens, C FLOPs (C = 6ND), L nats per token, the metric as in the file.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypedDict

import jax.numpy as jnp
import numpy as np

from ..core.errors import ParameterError
from ..core.runtime import jax_x64
from ..core.units import TRAIN_FLOPS_PER_PARAM_TOKEN, require_positive
from ..model.allocation import closed_form_x
from ..model.laws import LawSpec, Parametric, get_preset, loss
from ..model.links import LINK_PARAMS, fit_links, predict_link, predict_theta
from ..model.validity import attach, extrapolation
from . import vpnls
from .runs import Runs, padded, read_groups, replicate_weights

MAX_REPLICATES = 10_000
DEFAULT_LINK_PRESET = "gadre2024-rpj"  # the preset whose published link a forecast without runs uses


class Forecast(TypedDict, total=False):
    """A forecast (``forecast_metric``): the JSON of `budgetopt forecast -f json`. ``loss`` and
    ``metric`` hold ``point`` (and with runs ``low``/``high`` at ``level``); ``target`` the run
    forecast (params, tokens, flops = 6ND); ``link`` its kind and parameters."""

    link: dict[str, Any]
    law: str
    target: dict[str, float]
    loss: dict[str, float]
    metric: dict[str, float]
    level: float
    replicates: int
    seed: int
    replicates_used: int
    converged: bool
    n_runs: int
    runs: dict[str, list[float]]
    metric_col: str
    source: str
    extrapolation: dict[str, Any]
    warnings: list[str]


def _check_target(params, tokens, flops) -> None:
    """A target is ``params`` with ``tokens``, or ``flops``: positive finite numbers."""
    if (params is None) != (tokens is None) or (params is None) == (flops is None):
        raise ParameterError("flops", "give the target as {params} with {tokens}, or as {flops}", names=True)
    for name, v in (("params", params), ("tokens", tokens), ("flops", flops)):
        if v is not None:
            require_positive(v, name)


def _target_loss(law: Parametric, params, tokens, flops):
    """(log N, log D, loss) per law (leaves of any shape): the given model, or each law's
    compute-optimal one at ``flops``."""
    if params is not None:
        log_n, log_d = jnp.full_like(law.alpha, math.log(params)), jnp.full_like(law.alpha, math.log(tokens))
    else:
        log_n = closed_form_x(law, jnp.full_like(law.alpha, math.log(flops)))
        log_d = math.log(flops / TRAIN_FLOPS_PER_PARAM_TOKEN) - log_n
    return log_n, log_d, loss(law, log_n, log_d)


def forecast_runs(runs: Runs, *, link: str = "exp", law: LawSpec | None = None, params: float | None = None,
                  tokens: float | None = None, flops: float | None = None, bootstrap: int = 200, seed: int = 0,
                  level: float = 0.9) -> Forecast:
    """The metric forecast for a target run (``params`` and ``tokens``, or the compute-optimal
    run of ``flops``) from ``runs`` with a metric; ``law``: a parametric preset, else the law
    fitted to the runs (VPNLS). See the module docstring for the interval."""
    if link not in LINK_PARAMS:
        raise ParameterError("link", f"must be one of {', '.join(LINK_PARAMS)}, got {link!r}")
    if runs.metric is None:
        raise ParameterError("metric_col", "the runs carry no metric column")
    if len(np.unique(runs.metric)) < 2:
        raise ParameterError("metric_col", f"takes the same value ({runs.metric[0]:g}) in every run: a link from "
                             "loss to metric needs a metric that varies")
    _check_target(params, tokens, flops)
    if not 2 <= bootstrap <= MAX_REPLICATES:
        raise ParameterError("bootstrap", f"must be from 2 to {MAX_REPLICATES} replicates, got {bootstrap}")
    if not 0 < level < 1:
        raise ParameterError("level", f"must be in (0, 1), got {level}")
    if law is not None and not isinstance(law.params, Parametric):
        raise ParameterError("law", f"{law.name} is not a parametric law E + A/N^alpha + B/D^beta")
    n = len(runs.log_l)
    w = replicate_weights(n, bootstrap, seed)
    rng = np.random.default_rng(seed + 1)
    with jax_x64():
        if law is None:  # step 1 refitted per replicate
            f = vpnls.fit_batch(*map(jnp.asarray, padded([runs], [w])))
            theta = f.log_theta().T
            law_ok = ~(f.at_grid_edge | f.at_zoom_edge)
            law_name, valid = "fitted to the runs (VPNLS)", dataclasses.replace(runs.fitted_range(), fitted_by="vpnls")
        else:  # step 1 from the preset: its covariance when published, else fixed
            mean = np.array([float(v) for v in law.params])
            draws = np.tile(mean, (bootstrap + 1, 1))
            if law.covariance is not None:
                draws[1:] = rng.multivariate_normal(mean, law.covariance, size=bootstrap)
            theta = jnp.asarray(draws.T)
            law_ok = jnp.ones(bootstrap + 1, bool)
            law_name, valid = law.name, law.validity
        log_n, log_d, target_loss = _target_loss(Parametric(*theta), params, tokens, flops)
        obs = jnp.asarray(np.exp(runs.log_l))
        lk = fit_links(link, obs, jnp.asarray(runs.metric), jnp.asarray(w))
        metric = predict_theta(link, lk.theta, target_loss)
        target_loss, metric, log_n, log_d = (np.asarray(v) for v in (target_loss, metric, log_n, log_d))
        ok = np.asarray(law_ok) & ~np.asarray(lk.at_edge) & np.isfinite(metric)
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    boot = ok[1:]
    if boot.sum() < 2:
        raise ParameterError("metric_col", f"no {link} link could be fitted: {int(boot.sum())} of {bootstrap} "
                             "bootstrap replicates converged (the metric does not follow the loss; try another "
                             "{link})", names=True)

    def band(v):
        return {"point": float(v[0]), "low": float(np.percentile(v[1:][boot], q[0])),
                "high": float(np.percentile(v[1:][boot], q[1]))}

    n_t, d_t = float(np.exp(log_n[0])), float(np.exp(log_d[0]))
    out = {"link": {"kind": link, **dict(zip(LINK_PARAMS[link], np.asarray(lk.theta[0]).tolist())),
                    "rss": float(lk.rss[0]), "converged": bool(not lk.at_edge[0])},
           "law": law_name, "target": {"params": n_t, "tokens": d_t, "flops": TRAIN_FLOPS_PER_PARAM_TOKEN * n_t * d_t},
           "loss": band(target_loss), "metric": band(metric), "level": level, "replicates": bootstrap, "seed": seed,
           "replicates_used": int(boot.sum()), "converged": bool(ok[0]), "n_runs": n,
           "runs": {"loss": np.exp(runs.log_l).tolist(), "metric": runs.metric.tolist()}, "warnings": []}
    if boot.mean() < 0.9:
        out["warnings"].append(f"only {boot.mean():.0%} of the replicates converged (a law or link on the edge of its "
                               "search range): the interval is uncertain")
    for key in ("loss", "metric"):
        b = out[key]
        if not b["low"] <= b["point"] <= b["high"]:
            out["warnings"].append(f"the point forecast of the {key} ({b['point']:.4g}) lies outside its interval "
                                   f"({b['low']:.4g}-{b['high']:.4g}): the replicates disagree with the full fit")
    lo_l, hi_l = float(np.exp(runs.log_l).min()), float(np.exp(runs.log_l).max())
    if not lo_l <= out["loss"]["point"] <= hi_l:
        out["warnings"].append(f"the forecast loss {out['loss']['point']:.4g} lies outside the runs' losses "
                               f"({lo_l:.4g}-{hi_l:.4g}): the link is extrapolated")
    return attach(out, extrapolation(valid, n_t, d_t, loss=out["loss"]["point"]))


def forecast_preset(law: LawSpec, *, params: float | None = None, tokens: float | None = None,
                    flops: float | None = None) -> Forecast:
    """The metric a preset's own published link predicts (no runs: a point, no interval)."""
    if law.link is None:
        raise ParameterError("runs",
                             f"{law.name} has no published link to a metric; give a runs file with a metric column")
    _check_target(params, tokens, flops)
    with jax_x64():
        log_n, log_d, target_loss = _target_loss(Parametric(*(jnp.float64(v) for v in law.params)), params, tokens,
                                                 flops)
    target_loss = float(target_loss)
    n_t, d_t = float(jnp.exp(log_n)), float(jnp.exp(log_d))
    out = {"link": dict(law.link), "law": law.name,
           "target": {"params": n_t, "tokens": d_t, "flops": TRAIN_FLOPS_PER_PARAM_TOKEN * n_t * d_t},
           "loss": {"point": target_loss}, "metric": {"point": float(predict_link(law.link, target_loss))},
           "metric_col": law.link.get("metric", "metric"), "warnings": []}
    return attach(out, extrapolation(law.validity, n_t, d_t, loss=target_loss))


def forecast_file(path: str | Path, metric_col: str, *, n_col: str = "params", d_col: str = "tokens",
                  c_col: str | None = None, loss_col: str = "loss", where=(), **kw) -> Forecast:
    """``forecast_runs`` on the runs of ``path`` (filtered by ``where``) with metric ``metric_col``."""
    runs = read_groups(path, n_col, d_col, c_col, loss_col, where=where, metric_col=metric_col)["all"]
    out = forecast_runs(runs, **kw)
    out["metric_col"], out["source"] = metric_col, str(path)
    return out


def forecast_metric(runs: str | Path | None = None, metric: str | None = None, *, law: LawSpec | None = None,
                    params: float | None = None, tokens: float | None = None, flops: float | None = None,
                    link: str = "exp", n_col: str = "params", d_col: str = "tokens", c_col: str | None = None,
                    loss_col: str = "loss", where: Sequence[tuple[str, str]] = (), bootstrap: int = 200, seed: int = 0,
                    level: float = 0.9) -> Forecast:
    """`budgetopt forecast`: with a runs file, its ``metric`` column forecast for the target
    (``forecast_file``); without one, a preset's published link (``forecast_preset``; ``law``,
    else DEFAULT_LINK_PRESET)."""
    target = {"params": params, "tokens": tokens, "flops": flops}
    if runs is None:
        if metric is not None:
            raise ParameterError("metric", "needs a runs file ({runs})", names=True)
        return forecast_preset(law if law is not None else get_preset(DEFAULT_LINK_PRESET), **target)
    if metric is None:
        raise ParameterError("metric", "name the metric column of {runs}", names=True)
    return forecast_file(runs, metric, n_col=n_col, d_col=d_col, c_col=c_col, loss_col=loss_col, where=where, link=link,
                         law=law, bootstrap=bootstrap, seed=seed, level=level, **target)
