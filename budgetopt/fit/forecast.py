"""Two-step forecast of a downstream metric (the OLMo ladder's and Llama 3's recipe): compute ->
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

import math
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from . import links, vpnls
from .allocation import closed_form_x
from .devices import jax_x64
from .errors import ParameterError
from .fit import padded, replicate_weights
from .laws import LawSpec, Parametric, loss
from .runs import Runs, read_groups
from .validity import extrapolation

MAX_REPLICATES = 10_000


def _check_target(params, tokens, flops) -> None:
    """A target is ``params`` with ``tokens``, or ``flops``: positive finite numbers."""
    if (params is None) != (tokens is None) or (params is None) == (flops is None):
        raise ParameterError("flops", "give the target as {params} with {tokens}, or as {flops}", names=True)
    for name, v in (("params", params), ("tokens", tokens), ("flops", flops)):
        if v is not None and not (v > 0 and math.isfinite(v)):
            raise ParameterError(name, f"must be a positive finite number, got {v!r}")


def _target_loss(law: Parametric, params, tokens, flops):
    """(log N, log D, loss) per law (leaves of any shape): the given model, or each law's
    compute-optimal one at ``flops``."""
    if params is not None:
        log_n, log_d = jnp.full_like(law.alpha, math.log(params)), jnp.full_like(law.alpha, math.log(tokens))
    else:
        log_n = closed_form_x(law, jnp.full_like(law.alpha, math.log(flops)))
        log_d = math.log(flops / 6.0) - log_n
    return log_n, log_d, loss(law, log_n, log_d)


def forecast_runs(runs: Runs, *, link: str = "exp", law: LawSpec | None = None, params: float | None = None,
                  tokens: float | None = None, flops: float | None = None, bootstrap: int = 200, seed: int = 0,
                  level: float = 0.9) -> dict:
    """The metric forecast for a target run (``params`` and ``tokens``, or the compute-optimal
    run of ``flops``) from ``runs`` with a metric; ``law``: a parametric preset, else the law
    fitted to the runs (VPNLS). See the module docstring for the interval."""
    if link not in links.PARAMS:
        raise ParameterError("link", f"must be one of {', '.join(links.PARAMS)}, got {link!r}")
    if runs.metric is None:
        raise ParameterError("metric_col", "the runs carry no metric column")
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
            f = vpnls.fit_batch(*padded([runs], [w]))
            theta = f.log_theta().T
            law_ok = ~(f.at_grid_edge | f.at_zoom_edge)
            law_name, valid = "fitted to the runs (VPNLS)", runs.fitted_range()
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
        lk = links.fit_batch(link, obs, jnp.asarray(runs.metric), jnp.asarray(w))
        metric = links.predict_theta(link, lk.theta, target_loss)
        target_loss, metric, log_n, log_d = (np.asarray(v) for v in (target_loss, metric, log_n, log_d))
        ok = np.asarray(law_ok) & ~np.asarray(lk.at_edge) & np.isfinite(metric)
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    boot = ok[1:]

    def band(v):
        return {"point": float(v[0]), "low": float(np.percentile(v[1:][boot], q[0])), "high": float(np.percentile(v[1:][boot], q[1]))}

    n_t, d_t = float(np.exp(log_n[0])), float(np.exp(log_d[0]))
    out = {"link": {"kind": link, **dict(zip(links.PARAMS[link], np.asarray(lk.theta[0]).tolist())),
                    "rss": float(lk.rss[0]), "converged": bool(not lk.at_edge[0])},
           "law": law_name, "target": {"params": n_t, "tokens": d_t, "flops": 6 * n_t * d_t},
           "loss": band(target_loss), "metric": band(metric), "level": level, "replicates": bootstrap, "seed": seed,
           "replicates_used": int(boot.sum()), "converged": bool(ok[0]), "n_runs": n,
           "runs": {"loss": np.exp(runs.log_l).tolist(), "metric": runs.metric.tolist()}, "warnings": []}
    if boot.mean() < 0.9:
        out["warnings"].append(f"only {boot.mean():.0%} of the replicates converged (a law or link on the edge of its "
                               "search range): the interval is uncertain")
    lo_l, hi_l = float(np.exp(runs.log_l).min()), float(np.exp(runs.log_l).max())
    if not lo_l <= out["loss"]["point"] <= hi_l:
        out["warnings"].append(f"the forecast loss {out['loss']['point']:.4g} lies outside the runs' losses "
                               f"({lo_l:.4g}-{hi_l:.4g}): the link is extrapolated")
    ext = extrapolation(valid, n_t, d_t)
    if ext is not None:
        out["extrapolation"] = ext
        out["warnings"] += ext["warnings"]
    return out


def forecast_preset(law: LawSpec, *, params: float | None = None, tokens: float | None = None,
                    flops: float | None = None) -> dict:
    """The metric a preset's own published link predicts (no runs: a point, no interval)."""
    if law.link is None:
        raise ParameterError("runs", f"{law.name} has no published link to a metric; give a runs file with a metric column")
    _check_target(params, tokens, flops)
    with jax_x64():
        log_n, log_d, target_loss = _target_loss(Parametric(*(jnp.float64(v) for v in law.params)), params, tokens, flops)
    target_loss = float(target_loss)
    n_t, d_t = float(jnp.exp(log_n)), float(jnp.exp(log_d))
    out = {"link": dict(law.link), "law": law.name, "target": {"params": n_t, "tokens": d_t, "flops": 6 * n_t * d_t},
           "loss": {"point": target_loss}, "metric": {"point": float(links.predict(law.link, target_loss))},
           "metric_col": law.link.get("metric", "metric"), "warnings": []}
    ext = extrapolation(law.validity, n_t, d_t)
    if ext is not None:
        out["extrapolation"] = ext
        out["warnings"] += ext["warnings"]
    return out


def forecast_file(path: str | Path, metric_col: str, *, n_col: str = "params", d_col: str = "tokens",
                  c_col: str = "flops", loss_col: str = "loss", where=(), **kw) -> dict:
    """``forecast_runs`` on the runs of ``path`` (filtered by ``where``) with metric ``metric_col``."""
    runs = read_groups(path, n_col, d_col, c_col, loss_col, where=where, metric_col=metric_col)["all"]
    out = forecast_runs(runs, **kw)
    out["metric_col"], out["source"] = metric_col, str(path)
    return out


__all__ = ["MAX_REPLICATES", "forecast_runs", "forecast_preset", "forecast_file"]
