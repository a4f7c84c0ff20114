"""`budgetopt fit`: from a runs file to fitted laws. One approach or all three side by side
(Approach 2, Approach 3, VPNLS), per group of runs, each with the allocation it implies at a
target budget and its diagnostics: robust-residual outliers, and refits without them.

Units: N parameters, D tokens, C FLOPs, L nats per token.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypedDict

import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import InputError, ParameterError
from ..core.runtime import jax_x64
from ..core.units import TRAIN_FLOPS_PER_PARAM_TOKEN, require_in
from ..model.allocation import closed_form_x
from ..model.laws import Parametric, optimal_exponents, parametric_from_mapping
from ..model.validity import extrapolation, from_runs, to_mapping
from . import forms, vpnls
from .approach2 import check_tolerance, curve_residuals, fit_approach2
from .approach3 import bootstrap_summary, fit_approach3_groups, log_predicted
from .runs import APPROACHES, DEFAULT_TARGET, MIN_RUNS, Runs, padded, read_groups, read_table, replicate_weights

MAX_BOOTSTRAP = 10_000


class FitRecord(TypedDict, total=False):
    """One fit (``fit_file``; one per group from ``fit_groups``): the JSON of `budgetopt fit -f json`.
    Approach 3 and VPNLS give the law (E, A, B, alpha, beta; ``theta`` in the covariance order),
    Approach 2 the exponents and the curves' minima; every approach gives a, b, the allocation
    ``at`` the target, the runs' range and the outliers; "all" holds the three under ``fits``
    (``at`` is then the target's FLOPs). Approach 2 also writes a key
    ``tokens_per_param_at_<target>`` (kept for compatibility; ``at`` holds the same)."""

    group: str
    approach: str
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    a: float
    b: float
    theta: list[float]
    objective: float
    rss: float
    rmse_log_loss: float
    n_runs: int
    delta: float
    converged: bool
    grad_norm: float
    method: str
    starts: int
    starts_at_best_fraction: float
    hessian_condition: float
    bootstrap: dict[str, Any]
    n_opt_coefficient: float
    d_opt_coefficient: float
    budgets: list[dict[str, Any]]
    excluded: list[dict[str, Any]]
    grouped_by: str
    tolerance: float
    at: dict[str, float] | float
    validity: dict[str, Any]
    outliers: list[dict[str, Any]]
    outlier_rule: str
    dropped: list[dict[str, Any]]
    before_exclusion: dict[str, Any]
    moved_by_exclusion: dict[str, float]
    fits: dict[str, Any]
    spread: dict[str, float]
    warnings: list[str]
    source: str


# ----------------------------------------------------------------------------------------------
# VPNLS records: every group and replicate in one call


def _vp_result(f: dict, theta: list[float], runs: Runs) -> dict:
    """One VPNLS fit (host floats; ``theta`` its ``VPFit.log_theta``) as a fit record."""
    pred = np.asarray(log_predicted(jnp.asarray(theta), runs.log_n, runs.log_d))
    out = {"approach": "vpnls", **{k: f[k] for k in ("E", "A", "B", "alpha", "beta")}, "rss": f["rss"],
           "rmse_log_loss": float(np.sqrt(np.mean((pred - runs.log_l) ** 2))), "n_runs": len(runs.log_l),
           "converged": not (f["at_grid_edge"] or f["at_zoom_edge"]), "grad_norm": f["grad_norm"],
           "method": f"variable projection: NNLS for (E, A, B) inside, a {vpnls.GRID_POINTS}x{vpnls.GRID_POINTS} grid "
                     f"of (alpha, beta) in [{vpnls.EXPONENT_RANGE[0]:g}, {vpnls.EXPONENT_RANGE[1]:g}] and "
                     f"{vpnls.ZOOM_LEVELS} zoom levels outside",
           "theta": theta, "warnings": []}
    out["a"], out["b"] = optimal_exponents(Parametric(*theta))
    if f["at_grid_edge"]:
        out["warnings"].append(f"alpha = {f['alpha']:.3g}, beta = {f['beta']:.3g}: the best exponents are on the edge "
                               f"of the searched range {list(vpnls.EXPONENT_RANGE)}; the fit is not trustworthy")
    if f["at_zoom_edge"]:
        out["warnings"].append("the local search did not settle (its best point stayed on the window's edge)")
    for name, c in zip("EAB", f["clamped"]):
        if c:
            out["warnings"].append(f"{name} is held at 0 by the non-negativity constraint: the data do not support "
                                   "that term")
    return out


def fit_vpnls(groups: dict[str, Runs], bootstrap: int = 0, seed: int = 0) -> dict[str, dict]:
    """VPNLS of every group (and ``bootstrap`` replicates of each) in one vmapped call."""
    keys = list(groups)
    runs_list = [groups[k] for k in keys]
    weights = [replicate_weights(len(r.log_l), bootstrap, seed) for r in runs_list]
    with jax_x64():
        fitted = vpnls.fit_batch(*map(jnp.asarray, padded(runs_list, weights)))
        thetas = np.asarray(fitted.log_theta())
    res = {k: np.asarray(v) for k, v in jax.device_get(fitted)._asdict().items()}
    out, pos = {}, 0
    for key, runs, w in zip(keys, runs_list, weights):
        f = {k: (v[pos].tolist() if v[pos].ndim else v[pos].item()) for k, v in res.items()}
        rec = _vp_result(f, thetas[pos].tolist(), runs)
        if bootstrap:
            sl = slice(pos + 1, pos + len(w))
            ok = ~(res["at_grid_edge"][sl] | res["at_zoom_edge"][sl])
            rec["bootstrap"] = bootstrap_summary(thetas[sl], ok, seed, 1)
        out[key] = rec
        pos += len(w)
    return out


# ----------------------------------------------------------------------------------------------
# Diagnostics shared by the approaches


def robust_outliers(resid: np.ndarray, k: float) -> np.ndarray:
    """Runs whose residual is more than k robust standard deviations (1.4826 x MAD) from the
    median residual."""
    med = np.median(resid)
    mad = 1.4826 * np.median(np.abs(resid - med))
    return np.abs(resid - med) > k * max(mad, 1e-12)


def fit_residuals(res: dict, runs: Runs) -> np.ndarray:
    """Each run's log-loss residual (predicted - observed) under a fit; NaN where the fit says
    nothing (Approach 2: runs of curves left out)."""
    if res["approach"] == "2":
        return curve_residuals(runs, res["tolerance"])
    with jax_x64():  # float64 whatever the process's default: the residuals are reported
        pred = log_predicted(jnp.asarray(res["theta"], jnp.float64), jnp.asarray(runs.log_n, jnp.float64),
                             jnp.asarray(runs.log_d, jnp.float64))
        return np.asarray(pred) - runs.log_l


def law_problem(res: dict) -> str | None:
    """Why a fit of Approach 3 or VPNLS is not a law budgetopt can plan with (``laws.
    parametric_from_mapping``'s rules: E, A, B > 0, alpha and beta in (0, 10)), or None."""
    if res["approach"] not in ("3", "vpnls"):
        return None
    try:
        parametric_from_mapping({k: res[k] for k in ("E", "A", "B", "alpha", "beta")}, "law")
    except InputError as e:
        return f"{e.field.removeprefix('law.')} {e.message}"
    return None


def allocation_interval(res: dict, target: float) -> dict | None:
    """The 95 % bootstrap percentile interval of N*, D* and D*/N* at ``target`` FLOPs: the
    closed-form optimum of every bootstrap draw of the law (Approach 3 and VPNLS with
    ``bootstrap``); None without draws or for a fit that is no usable law."""
    draws = np.asarray(res.get("bootstrap", {}).get("draws", []), np.float64).reshape(-1, 5)
    if len(draws) < 2 or law_problem(res) is not None:
        return None
    with jax_x64():
        log_n = np.asarray(closed_form_x(Parametric(*jnp.asarray(draws.T)), jnp.log(jnp.float64(target))))
    log_d = math.log(target / TRAIN_FLOPS_PER_PARAM_TOKEN) - log_n
    ok = np.isfinite(log_n)
    band = lambda v: [float(np.percentile(np.exp(v[ok]), q)) for q in (2.5, 97.5)]  # noqa: E731  (as the law's ci95)
    return {"params": band(log_n), "tokens": band(log_d), "tokens_per_param": band(log_d - log_n),
            "draws": int(ok.sum())}


def allocation_at(res: dict, target: float) -> dict:
    """The compute-optimal N and D a fit implies at ``target`` FLOPs (C = 6ND); NaN when the fit
    is not a usable law (``law_problem``)."""
    if res["approach"] == "2":
        n = res["n_opt_coefficient"] * target ** res["a"]
        d = res["d_opt_coefficient"] * target ** res["b"]
    elif law_problem(res) is not None:
        n = d = math.nan
    else:
        with jax_x64():
            n = float(np.exp(closed_form_x(Parametric(*(jnp.float64(t) for t in res["theta"])),
                                           jnp.log(jnp.float64(target)))))
        d = target / (TRAIN_FLOPS_PER_PARAM_TOKEN * n)
    return {"flops": target, "params": float(n), "tokens": float(d), "tokens_per_param": float(d / n)}


# ----------------------------------------------------------------------------------------------
# One call from a runs file to fitted laws


def fit_run_groups(groups: dict[str, Runs], approach: str, bootstrap: int, seed: int, delta: float,
                tolerance: float) -> dict[str, dict]:
    if approach == "vpnls":
        return fit_vpnls(groups, bootstrap, seed)
    if approach == "2":
        return {k: fit_approach2(r, tolerance) for k, r in groups.items()}
    out = dict(zip(groups, fit_approach3_groups(list(groups.values()), delta, bootstrap, seed)))
    for res in out.values():
        res["a"], res["b"] = optimal_exponents(Parametric(*res["theta"]))
    return out


def _with_diagnostics(groups: dict[str, Runs], approach: str, fits: dict[str, dict], target: float, outlier_k: float,
                      exclude: bool, refit) -> dict[str, dict]:
    """Each fit with its allocation at ``target``, flagged outliers, and (``exclude``) the refit
    without them, with how far that moved the answer."""
    out = {}
    for key, res in fits.items():
        runs = groups[key]
        problem = law_problem(res)
        if problem is not None:  # a fit, but no law to plan with: say so, and it does not count as converged
            res["converged"] = False
            res["warnings"].append(f"the fitted law cannot be planned with ({problem}): no allocation at the target")
        res["at"] = allocation_at(res, target)
        interval = allocation_interval(res, target)
        if interval is not None:
            res["at"]["ci95"] = interval
        fitted = dataclasses.replace(runs.fitted_range(), fitted_by=res["approach"])  # its model error by approach
        res["validity"] = to_mapping(fitted)
        ext = extrapolation(fitted, res["at"]["params"], res["at"]["tokens"], target)
        if ext is not None and np.isfinite(res["at"]["params"]):
            res["at"]["extrapolation"] = ext["note"]
            if "model_error" in ext:
                res["at"]["model_error"] = ext["model_error"]
        r = fit_residuals(res, runs)
        flag = np.zeros(len(r), bool)
        ok = np.isfinite(r)
        flag[ok] = robust_outliers(r[ok], outlier_k)
        res["outliers"] = [{"row": int(runs.rows[i]) if runs.rows is not None else int(i) + 1,
                            "params": float(np.exp(runs.log_n[i])), "tokens": float(np.exp(runs.log_d[i])),
                            "loss": float(np.exp(runs.log_l[i])),
                            "residual_log_loss": float(r[i])} for i in np.flatnonzero(flag)]
        res["outlier_rule"] = f"|residual - median| > {outlier_k:g} x 1.4826 x MAD"
        if exclude and flag.any():
            if len(r) - flag.sum() < MIN_RUNS:
                where_ = "" if key == "all" else f" of group {key!r}"
                raise ParameterError("exclude_outliers", f"would leave {len(r) - int(flag.sum())} runs{where_}; a fit "
                                     f"needs at least {MIN_RUNS}: raise {{outlier_k}}", names=True)
            kept = runs.subset(~flag)
            new = refit({key: kept})[key]
            new["at"] = allocation_at(new, target)
            new["validity"] = to_mapping(dataclasses.replace(kept.fitted_range(), fitted_by=new["approach"]))
            moved = {"params_at_target": new["at"]["params"] / res["at"]["params"] - 1.0}
            for k in ("alpha", "beta", "a"):
                if k in res and k in new:
                    moved[k] = new[k] - res[k]
            new.update({"dropped": res["outliers"], "outliers": [], "before_exclusion": {"at": res["at"], **{
                k: res[k] for k in ("alpha", "beta", "a", "b") if k in res}}, "moved_by_exclusion": moved,
                "outlier_rule": res["outlier_rule"]})
            res = new
        out[key] = res
    return out


def check_law_output(law_out: str | Path | None, approach: str, grouped: bool) -> None:
    """A law file is written for one fitted law: Approach 3 or VPNLS on ungrouped runs."""
    if law_out is not None and (grouped or str(approach) not in ("3", "vpnls")):
        raise ParameterError("law_out", "writes one fitted law: it needs {approach} 3 or vpnls, without {group}",
                             names=True)


def check_law_usable(record: FitRecord) -> None:
    """Refuse to write a law file of a fit that is not a usable law: a file `optimize --law-file`
    would then reject is never written."""
    problem = law_problem(record)
    if problem is not None:
        raise ParameterError("law_out", f"the fitted law cannot be used ({problem}); nothing written")


def check_bootstrap_delta(bootstrap: int, delta: float) -> None:
    """A fit's bootstrap replicates (0, or 2 to MAX_BOOTSTRAP) and Huber delta (> 0)."""
    if not 0 <= bootstrap <= MAX_BOOTSTRAP:
        raise ParameterError("bootstrap", f"must be from 0 to {MAX_BOOTSTRAP} replicates, got {bootstrap}")
    require_in(delta, "delta", 0.0, low_open=True, what="a Huber delta")
    if bootstrap == 1:
        raise ParameterError("bootstrap", "needs at least 2 replicates, got 1")


def _check_fit_options(approach: str, bootstrap: int, delta: float, tolerance: float, loss_min: float | None,
                       loss_max: float | None, target: float | None, outlier_k: float) -> None:
    """Every option of a fit, checked before the file is read."""
    if approach not in (*APPROACHES, "all"):
        raise ParameterError("approach", f"must be one of {', '.join(APPROACHES)}, all, got {approach}")
    check_bootstrap_delta(bootstrap, delta)
    check_tolerance(tolerance)
    for name, v in (("loss_min", loss_min), ("loss_max", loss_max)):
        if v is not None:
            require_in(v, name, what="a finite loss")
    if loss_min is not None and loss_max is not None and not loss_min < loss_max:
        raise ParameterError("loss_max", f"must be greater than {{loss_min}} ({loss_min:g}), got {loss_max:g}",
                             names=True)
    if target is not None:
        require_in(target, "target", 0.0, low_open=True, what="a number of FLOPs")
    require_in(outlier_k, "outlier_k", 0.0, low_open=True, what="a number of robust standard deviations")


def _fit_records(path: str | Path, approach: str, bootstrap: int, seed: int, n_col: str, d_col: str,
                 c_col: str | None,
                 loss_col: str, drop_highest: int, loss_min: float | None, loss_max: float | None, delta: float,
                 tolerance: float, group: Sequence[str], where: Sequence[tuple[str, str]], target: float | None,
                 outlier_k: float, exclude_outliers: bool) -> list[dict]:
    """The fit records of every group of ``path`` (one, "all", without ``group``)."""
    approach = str(approach)
    _check_fit_options(approach, bootstrap, delta, tolerance, loss_min, loss_max, target, outlier_k)
    target = DEFAULT_TARGET if target is None else target
    groups = read_groups(path, n_col, d_col, c_col, loss_col, group, where, drop_highest, loss_min, loss_max)
    names = tuple(APPROACHES) if approach == "all" else (approach,)
    per = {}
    for a in names:
        fits = fit_run_groups(groups, a, bootstrap, seed, delta, tolerance)
        if a == "2" and bootstrap:
            for res in fits.values():
                res["warnings"].append("bootstrap replicates are for Approach 3 and VPNLS; Approach 2 has none")
        per[a] = _with_diagnostics(groups, a, fits, target, outlier_k, exclude_outliers,
                                   lambda g, a=a: fit_run_groups(g, a, bootstrap, seed, delta, tolerance))
    records = []
    for key in groups:
        if approach == "all":
            fits = {a: per[a][key] for a in names}
            ns = [f["at"]["params"] for f in fits.values()]
            rec = {"approach": "all", "fits": fits, "at": target, "n_runs": len(groups[key].log_l),
                   "spread": {"params_max_over_min": max(ns) / min(ns)},
                   "warnings": [f"{APPROACHES[a]}: {w}" for a, f in fits.items() for w in f.get("warnings", [])]}
        else:
            rec = per[approach][key]
        rec["source"] = str(path)
        if group:
            rec = {"group": key, **rec}
        records.append(rec)
    return records


def fit_file(path: str | Path, *, approach: str = "3", bootstrap: int = 0, seed: int = 0, n_col: str = "params",
             d_col: str = "tokens", c_col: str | None = None, loss_col: str = "loss", drop_highest: int = 0,
             loss_min: float | None = None, loss_max: float | None = None, delta: float = 1e-3,
             tolerance: float = 0.05, where: Sequence[tuple[str, str]] = (), target: float | None = None,
             outlier_k: float = 5.0, exclude_outliers: bool = False) -> FitRecord:
    """Read the runs in ``path`` (``runs.read_groups``, rows kept by ``where``) and fit them:
    Approach 3 (Huber, with ``bootstrap`` replicates), Approach 2 (IsoFLOP parabolas), VPNLS
    (variable projection, all replicates in one call) or all three side by side
    (``approach="all"``: ``fits`` by approach and the ``spread`` of N* at the target between
    them), with the allocation each implies at ``target`` FLOPs and its outlier diagnostics.
    Every argument is checked before the file is read. ``approach`` is the flag's string, and
    the record carries the same string. One record; ``fit_groups`` fits each group of a file."""
    return _fit_records(path, approach, bootstrap, seed, n_col, d_col, c_col, loss_col, drop_highest, loss_min,
                        loss_max, delta, tolerance, (), where, target, outlier_k, exclude_outliers)[0]


def fit_groups(path: str | Path, group: Sequence[str], *, approach: str = "3", bootstrap: int = 0, seed: int = 0,
               n_col: str = "params", d_col: str = "tokens", c_col: str | None = None, loss_col: str = "loss",
               drop_highest: int = 0, loss_min: float | None = None, loss_max: float | None = None,
               delta: float = 1e-3, tolerance: float = 0.05, where: Sequence[tuple[str, str]] = (),
               target: float | None = None, outlier_k: float = 5.0, exclude_outliers: bool = False) -> list[FitRecord]:
    """``fit_file`` for each group of ``path`` (the rows sharing the values of the ``group``
    columns; each stage of every approach fits all groups in one vmapped call): one record per
    group, in file order, keyed ``group`` ("a/b" for two columns)."""
    if not group:
        raise ParameterError("group", "name the column(s) that group the runs, e.g. experiment")
    return _fit_records(path, approach, bootstrap, seed, n_col, d_col, c_col, loss_col, drop_highest, loss_min,
                        loss_max, delta, tolerance, group, where, target, outlier_k, exclude_outliers)


def fit_form_file(path: str | Path, form: str, *, columns: dict[str, str] | None = None, loss_col: str = "loss",
                  group: Sequence[str] = (), where: Sequence[tuple[str, str]] = (), baseline: str | None = None,
                  last: tuple[str, str] | None = None, delta: float = 1e-3, bootstrap: int = 0,
                  seed: int = 0) -> dict | list[dict]:
    """Fit the published form ``form`` (``forms.FORMS``) to the runs of ``path``: ``columns``
    maps the form's variables (n, d, e, g) to column names (default params, tokens, experts,
    granularity); ``group``, ``where``, ``baseline`` (a group joining every other) and ``last``
    (run, step columns: each run's final row) as ``runs.read_table``. One record, or one per
    group (keyed ``group``) when ``group`` is given."""
    if form not in forms.FORMS:
        raise ParameterError("form", f"unknown form {form!r}; known: {', '.join(forms.FORM_NAMES)}")
    check_bootstrap_delta(bootstrap, delta)
    names = {"n": "params", "d": "tokens", "e": "experts", "g": "granularity", **(columns or {})}
    need = {v: (names[v], forms.VARIABLES[v]) for v in forms.FORMS[form].variables}
    tables = read_table(path, need, loss_col, group, where, baseline, last)
    for key, t in tables.items():
        for v in forms.FORMS[form].variables:
            if len(np.unique(t.values[v])) < 2:
                where_ = f" in group {key!r}" if group else ""
                raise ParameterError(forms.VARIABLES[v], f"column {names[v]!r} has one value{where_}: {form} needs "
                                     "runs that vary in it")
    fits = forms.fit_form(form, tables, delta, bootstrap, seed)
    records = []
    for key, rec in fits.items():
        t = tables[key]
        if {"n", "d"} <= set(t.values):  # the range a fitted law was fitted on, for its extrapolation notes
            n, d = t.values["n"], t.values["d"]
            c = TRAIN_FLOPS_PER_PARAM_TOKEN * n * d
            rec["validity"] = to_mapping(from_runs(n.tolist(), d.tolist(), c.tolist()))
        rec["columns"] = {v: names[v] for v in forms.FORMS[form].variables} | {"loss": loss_col}
        rec["source"] = str(path)
        records.append({"group": key, **rec} if group else rec)
    return records if group else records[0]
