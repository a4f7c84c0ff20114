"""`budgetopt fit FILE --backtest`: how far a ladder's fit can be trusted (DESIGN §17).

For each ladder (group of runs) and each cut-off budget B_k (the second lowest upwards), fit on
the runs at budgets <= B_k only, and forecast every higher budget B_j of the same ladder:

- ``decades`` = log10(B_j / B_k), the distance extrapolated;
- ``n_star_error`` = ln(N*_k(B_j) / N*_j(B_j)): the forecast compute-optimal size against the
  optimum the same approach fits with all runs up to B_j (the best the ladder itself can say at
  B_j), in natural log (0.1 = 10.5 % too large);
- ``loss_error`` (Approach 3, VPNLS): the mean over the runs at B_j of ln(L_predicted / L), and
  ``loss_rmse`` their root mean square (Approach 2 has no loss surface: None).

Budgets are the isoFLOP curves of Approach 2 (``approach2.curves``: the file's budget column, or
6·N·D, grouped within ``tolerance``). Every truncated fit is the fit `budgetopt fit` runs on the
truncated file (same function, same options), all truncations of one approach in one batched
call. ``summary`` gives per approach the least-squares drift of ``n_star_error`` per decade
(through the origin: no error at zero distance) and the root mean square of the error per
decade extrapolated.

Units: FLOPs, natural-log errors, decades (log10).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..core.errors import ParameterError
from .approach2 import check_tolerance, curves
from .fitting import allocation_at, check_bootstrap_delta, fit_residuals, fit_run_groups, law_problem
from .runs import APPROACHES, MIN_RUNS, Runs, read_groups


def _truncations(name: str, runs: Runs, tolerance: float) -> tuple[list[float], dict[int, Runs], list[np.ndarray]]:
    """(each budget of the ladder, {k: its runs at budgets <= B_k} for k >= 1, each budget's run
    indices)."""
    idx = curves(runs, tolerance)
    if len(idx) < 2:
        where = "" if name == "all" else f" (group {name!r})"
        raise ParameterError("backtest", f"needs runs at two budgets or more{where}; found one "
                             f"({math.exp(float(np.mean(runs.log_budget))):.3g} FLOPs)")
    budgets = [float(np.exp(np.mean(runs.log_budget[i]))) for i in idx]
    subsets = {k: runs.subset(np.sort(np.concatenate(idx[:k + 1]))) for k in range(1, len(idx))}
    return budgets, {k: r for k, r in subsets.items() if len(r.log_l) >= MIN_RUNS}, idx


def backtest_groups(groups: dict[str, Runs], approaches: Sequence[str], *, delta: float = 1e-3, seed: int = 0,
             tolerance: float = 0.05) -> dict:
    """The backtest of every ladder in ``groups`` under each approach: ``backtest`` rows
    (group, approach, fit_up_to, forecast_at, decades, n_star_error, loss_error, loss_rmse),
    ``summary`` per approach, ``skipped`` truncations (too few runs, or a fit that is no law)."""
    plan = {name: _truncations(name, runs, tolerance) for name, runs in groups.items()}
    rows, skipped = [], []
    for a in approaches:
        batch = {(name, k): r for name, (_, subs, _) in plan.items() for k, r in subs.items()}
        label = {key: f"{key[0]} up to budget {key[1]}" for key in batch}  # the fitters key groups by name
        if a == "2":  # one fit per truncation: one whose curves have no two minima is skipped, not fatal
            fits = {}
            for key, r in batch.items():
                try:
                    fits[key] = fit_run_groups({label[key]: r}, a, 0, seed, delta, tolerance)[label[key]]
                except ParameterError as e:
                    skipped.append({"group": key[0], "approach": a, "fit_up_to": plan[key[0]][0][key[1]],
                                    "reason": e.message})
        else:
            done = fit_run_groups({label[key]: r for key, r in batch.items()}, a, 0, seed, delta, tolerance)
            fits = {key: done[label[key]] for key in batch}
            for key, f in list(fits.items()):
                problem = law_problem(f)
                if problem is not None or not f.get("converged", True):
                    skipped.append({"group": key[0], "approach": a, "fit_up_to": plan[key[0]][0][key[1]],
                                    "reason": problem or "the fit did not converge"})
                    del fits[key]
        for name, (budgets, _, idx) in plan.items():
            runs = groups[name]
            for k in range(1, len(budgets) - 1):
                for j in range(k + 1, len(budgets)):
                    if (name, k) not in fits or (name, j) not in fits:
                        continue
                    n_hat = allocation_at(fits[(name, k)], budgets[j])["params"]
                    n_ref = allocation_at(fits[(name, j)], budgets[j])["params"]
                    row = {"group": name, "approach": a, "fit_up_to": budgets[k], "forecast_at": budgets[j],
                           "decades": math.log10(budgets[j] / budgets[k]), "n_star_error": math.log(n_hat / n_ref),
                           "loss_error": None, "loss_rmse": None, "runs_fitted": int(fits[(name, k)]["n_runs"]),
                           "runs_forecast": int(len(idx[j]))}
                    if a != "2":
                        r = fit_residuals(fits[(name, k)], runs.subset(idx[j]))
                        row["loss_error"] = float(np.mean(r))
                        row["loss_rmse"] = float(np.sqrt(np.mean(r * r)))
                    rows.append(row)
    return {"backtest": rows, "summary": backtest_summary(rows, approaches), "skipped": skipped,
            "budgets": {name: p[0] for name, p in plan.items()}}


def backtest_summary(rows: list[dict], approaches: Sequence[str]) -> list[dict]:
    """Per approach: rows, the drift of ln N* per decade (least squares through the origin) and
    the root mean square error per decade, for ln N* and the runs' log loss."""
    out = []
    for a in approaches:
        rs = [r for r in rows if r["approach"] == a]
        if not rs:
            continue
        d = np.array([r["decades"] for r in rs])
        e = np.array([r["n_star_error"] for r in rs])
        rec = {"approach": a, "rows": len(rs), "max_decades": float(d.max()),
               "n_star_drift_per_decade": float(np.sum(d * e) / np.sum(d * d)),
               "n_star_rms_per_decade": float(np.sqrt(np.mean((e / d) ** 2)))}
        if a != "2":
            le = np.array([r["loss_error"] for r in rs])
            rec["loss_drift_per_decade"] = float(np.sum(d * le) / np.sum(d * d))
            rec["loss_rms_per_decade"] = float(np.sqrt(np.mean((le / d) ** 2)))
        out.append(rec)
    return out


def backtest_file(path: str | Path, *, approach: str = "3", group: Sequence[str] = (), n_col: str = "params",
                  d_col: str = "tokens", c_col: str | None = None, loss_col: str = "loss",
                  where: Sequence[tuple[str, str]] = (), delta: float = 1e-3, seed: int = 0,
                  tolerance: float = 0.05) -> dict:
    """``backtest_groups`` of the runs in ``path`` (per ``group``; ``approach`` one of 2, 3, vpnls or
    all). Options are checked before the file is read."""
    approach = str(approach)
    if approach not in (*APPROACHES, "all"):
        raise ParameterError("approach", f"must be one of {', '.join(APPROACHES)}, all, got {approach}")
    check_bootstrap_delta(0, delta)
    check_tolerance(tolerance)
    groups = read_groups(path, n_col, d_col, c_col, loss_col, group, where)
    res = backtest_groups(groups, tuple(APPROACHES) if approach == "all" else (approach,), delta=delta, seed=seed,
                   tolerance=tolerance)
    return {"source": str(path), "approach": approach, "tolerance": tolerance, **res}


def calibrate(rows: list[dict], approach: str) -> dict:
    """A model error from backtest rows of one approach: the forecast error of ln N* (and of the
    runs' mean log loss) as (drift + sd z) x decades extrapolated, z ~ N(0, 1). Every ladder
    (``group``) weighs the same however many forecasts it has: drift = Σ w d e / Σ w d², sd² =
    Σ w ((e - drift d) / d)² / Σ w, with w = 1 / (the ladder's forecasts)."""
    rs = [r for r in rows if r["approach"] == approach]
    if not rs:
        raise ParameterError("approach", f"no backtest rows of approach {approach}")
    per = {}
    for r in rs:
        per[r["group"]] = per.get(r["group"], 0) + 1
    w = np.array([1.0 / per[r["group"]] for r in rs])
    d = np.array([r["decades"] for r in rs])
    out = {"approach": approach, "ladders": len(per), "forecasts": len(rs), "max_decades": float(d.max())}
    for name, key in (("n_star", "n_star_error"), ("loss", "loss_error")):
        if rs[0][key] is None:
            continue
        e = np.array([r[key] for r in rs])
        drift = float(np.sum(w * d * e) / np.sum(w * d * d))
        out[f"{name}_drift_per_decade"] = drift
        out[f"{name}_sd_per_decade"] = float(np.sqrt(np.sum(w * ((e - drift * d) / d) ** 2) / np.sum(w)))
    return out


def calibration_interval(rows: list[dict], approach: str, resamples: int = 2000, seed: int = 0,
                         level: float = 0.9) -> dict:
    """``level`` intervals of ``calibrate``'s numbers from resampling whole ladders with
    replacement (a handful of ladders: the honest uncertainty is wide). Keys: each number's
    name with ``_ci``."""
    rs = [r for r in rows if r["approach"] == approach]
    names = sorted({r["group"] for r in rs})
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(resamples):
        pick = rng.choice(len(names), len(names))
        sample = [{**r, "group": f"{names[i]}#{m}"} for m, i in enumerate(pick) for r in rs if r["group"] == names[i]]
        for k, v in calibrate(sample, approach).items():
            if k.endswith("_per_decade"):
                draws.setdefault(k, []).append(v)
    q = (100 * (1 - level) / 2, 100 * (1 + level) / 2)
    return {f"{k}_ci": [float(np.percentile(v, q[0])), float(np.percentile(v, q[1]))] for k, v in draws.items()}
