"""`budgetopt curves`: fit a loss-curve law per model size, score it on every fitted and held-out
curve, and predict other schedules' losses with an interval.

A prediction's interval joins two errors. The fit's own (``--bootstrap``: moving-block replicates,
their percentile interval at ``level``) is small: the curves are smooth and long. The law's error
on a schedule it was not fitted to is not: on the shipped curves (Luo et al.'s 25M and 100M
models) the held-out final losses miss by a few 1e-3 to 0.02 (DESIGN §16). That error, measured
by ``scripts/calibrate_curve_error.py`` and stored in ``data/curve_law_error.toml``, widens every
interval: low/high = the bootstrap interval ∓ z_level × its rms (0 with ``model_error=False``).

Points (``ladder_points``): each curve that ends decayed (its last learning rate at most half its
peak: a cosine, a WSD cooldown branch, a two-stage run's second stage) and each predicted schedule
becomes a final-loss point (N, D, loss) for ``budgetopt fit``, D = steps x tokens per step; a
constant-LR trunk's last point is not a final loss and is left out. So a ladder is built from a
trunk per size and its cooldown branches, measured or predicted (Hägele et al. 2024).
"""

from __future__ import annotations

import csv
import io
import math
from statistics import NormalDist

import numpy as np

from ..core.errors import ParameterError
from ..core.files import data_toml
from .curve_fit import Curve, CurveFit, evaluate, fit_curve_groups
from .curve_laws import LAWS, at_bound, curve_pairs, to_params
from .schedules import Schedule, learning_rates

CURVE_POINTS = 64  # steps of a predicted curve in the JSON (evenly spaced, the last step included)
LOGGED_POINTS = 200  # at most this many logged points of a run in the JSON (every k-th, the last included)
#: a prediction longer than this many times the longest fitted curve is flagged as an extrapolation
EXTRAPOLATION_RATIO = 2.0


#: a curve whose last learning rate is at most this fraction of its peak ended decayed: a final-loss point
DECAYED = 0.5


def law_error(form: str) -> dict:
    """The stored held-out error of ``form`` (``data/curve_law_error.toml``)."""
    table = data_toml("curve_law_error.toml")
    return table["form"][form]


def _scores(pred: np.ndarray, c: Curve) -> dict:
    err = pred - c.loss
    decayed = bool(c.lrs[c.steps[-1]] <= DECAYED * c.lrs.max())
    keep = np.unique(np.append(np.arange(0, len(c.steps), -(-len(c.steps) // LOGGED_POINTS)), len(c.steps) - 1))
    return {"run": c.name, "group": c.group, "schedule": c.schedule, "decayed": decayed, "points": len(c.steps),
            "last_step": int(c.steps[-1]), "final_loss": float(c.loss[-1]), "predicted_final": float(pred[-1]),
            "final_error": float(err[-1]), "mae": float(np.mean(np.abs(err))), "max_error": float(np.max(np.abs(err))),
            "curve": {"step": c.steps[keep].tolist(), "loss": c.loss[keep].tolist(), "fitted": pred[keep].tolist(),
                      "lr": c.lrs[c.steps[keep]].tolist()}}


def _interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    q = (1 - level) / 2
    return float(np.quantile(draws, q)), float(np.quantile(draws, 1 - q))


def curves_result(curves: list[Curve], *, form: str = "multipower", holdout: list[Curve] = (),
                  predict: list[tuple[str, Schedule]] = (), bootstrap: int = 0, seed: int = 0, level: float = 0.9,
                  delta: float = 1e-3, model_error: bool = True) -> dict:
    """The record `budgetopt curves` prints (one model size at the top level; several under
    ``groups``)."""
    if form not in LAWS:
        raise ParameterError("form", f"unknown curve law {form!r}; known: {', '.join(LAWS)}")
    check_fit_options(bootstrap, level, delta)
    groups: dict[str, list[Curve]] = {}
    for c in curves:
        groups.setdefault(c.group, []).append(c)
    for c in holdout:
        if c.group not in groups:
            raise ParameterError("holdout", f"run {c.name!r} is of size {c.group!r}; fitted sizes: {', '.join(groups)}")
    fits = fit_curve_groups(form, groups, delta=delta, bootstrap=bootstrap, seed=seed)
    err = law_error(form)
    z = NormalDist().inv_cdf(0.5 + level / 2)
    band = z * err["final_rms"] if model_error else 0.0
    out = {}
    for g, members in groups.items():
        out[g] = _group_record(form, g, members, [c for c in holdout if c.group == g], predict, fits[g], level, band,
                               err, bootstrap, seed, delta)
    if len(out) == 1:
        return next(iter(out.values()))
    return {"form": form, "formula": LAWS[form].formula, "reference": LAWS[form].source, "groups": out}


def _group_record(form: str, group: str, curves: list[Curve], holdout: list[Curve], predict, fit: CurveFit,
                  level: float, band: float, err: dict, bootstrap: int, seed: int, delta: float) -> dict:
    law = LAWS[form]
    thetas = np.vstack([fit.theta[None], fit.replicates])
    natural = to_params(form, fit.theta)
    params = {p: float(v) for p, v in zip(law.params, natural)}
    rec = {"form": form, "formula": law.formula, "reference": law.source, "group": group, "params": params}
    if len(fit.replicates):
        draws = np.stack([to_params(form, t) for t in fit.replicates])
        rec["params_interval"] = {p: list(_interval(draws[:, i], level)) for i, p in enumerate(law.params)}
    rec.update({"objective": fit.objective, "converged": fit.grad_norm < 1e-6, "grad_norm": fit.grad_norm,
                "steps": fit.steps, "delta": delta, "level": level,
                "method": f"Huber (delta {delta:g}) on log loss over every logged point, L-BFGS from seeded starts, "
                          "float64" + (f"; {bootstrap} moving-block bootstrap replicates (seed {seed})"
                                       if bootstrap else ""),
                "fitted": [_scores(evaluate(form, fit.theta, curve_pairs(c.lrs, c.steps))[0], c) for c in curves]})
    if holdout:
        rec["holdout"] = [_scores(evaluate(form, fit.theta, curve_pairs(c.lrs, c.steps))[0], c) for c in holdout]
        rec["holdout_mean_abs_final_error"] = float(np.mean([abs(h["final_error"]) for h in rec["holdout"]]))
    longest = max(int(c.steps[-1]) for c in curves)
    warnings = []
    preds = []
    for name, sched in predict:
        lrs = learning_rates(sched)
        t = len(lrs)
        at = np.unique(np.linspace(min(t - 1, max(1, int(sched.values["warmup"]))), t - 1, CURVE_POINTS).astype(int))
        values = evaluate(form, thetas, curve_pairs(lrs, at))
        final = float(values[0, -1])
        lo, hi = _interval(values[1:, -1], level) if len(values) > 1 else (final, final)
        p = {"schedule": name, "spec": sched.text, "steps": t, "final_loss": final,
             "low": min(lo, final) - band, "high": max(hi, final) + band}
        if len(values) > 1:
            p["fit_interval"] = [lo, hi]
        q = (1 - level) / 2
        lo_c, hi_c = ((np.quantile(values[1:], q, axis=0), np.quantile(values[1:], 1 - q, axis=0)) if len(values) > 1
                      else (values[0], values[0]))
        p["curve"] = {"step": at.tolist(), "loss": values[0].tolist(), "lr": lrs[at].tolist(),
                      "low": (np.minimum(lo_c, values[0]) - band).tolist(),
                      "high": (np.maximum(hi_c, values[0]) + band).tolist()}
        if t > EXTRAPOLATION_RATIO * longest:
            warnings.append(f"{name}: {t:,} steps is {t / longest:.1f}x the longest fitted curve ({longest:,} steps); "
                            "the law is extrapolated")
        preds.append(p)
    if preds:
        best = min(p["final_loss"] for p in preds)
        for p in preds:
            p["vs_best"] = p["final_loss"] - best
        rec["predictions"] = preds
        rec["model_error"] = {"band": band, "final_rms": err["final_rms"], "source": err["source"]}
    loose = at_bound(form, natural)
    if loose:
        warnings.append(f"the loss-drop shape is at its bound ({', '.join(loose)}): these curves do not pin it; "
                        "fit a curve with a gradual decay (a cosine) too, or read predictions of other decays with "
                        "care")
    if not rec["converged"]:
        warnings.append(f"the fit stopped with ||grad|| = {fit.grad_norm:.2g} after {fit.steps} steps: not converged")
    if len(fit.replicates) and fit.replicate_converged < 0.9:
        warnings.append(f"{1 - fit.replicate_converged:.0%} of the bootstrap replicates did not converge")
    rec["warnings"] = warnings
    return rec


def check_tokens_per_step(tokens_per_step: float) -> None:
    if not 0 < tokens_per_step < math.inf:
        raise ParameterError("tokens_per_step", f"must be a positive number, got {tokens_per_step:g}")


def check_fit_options(bootstrap: int, level: float, delta: float) -> None:
    """The options of ``curves_result`` (checked before any file is read by the CLI)."""
    if bootstrap < 0:
        raise ParameterError("bootstrap", f"must be >= 0, got {bootstrap}")
    if not 0 < level < 1:
        raise ParameterError("level", f"must be between 0 and 1, got {level:g}")
    if not delta > 0:
        raise ParameterError("delta", f"must be > 0, got {delta:g}")


def ladder_points(res: dict, params: dict[str | None, float], tokens_per_step: float) -> list[dict]:
    """The final-loss points of a `curves` result: every decayed fitted or held-out curve
    (measured) and every prediction, per size; ``params`` maps a size (None: every size) to N."""
    check_tokens_per_step(tokens_per_step)
    recs = res["groups"] if "groups" in res else {res["group"]: res}
    out = []
    for g, rec in recs.items():
        n = params.get(g, params.get(None))
        if n is None:
            raise ParameterError("params", f"no parameter count for size {g!r}; give --params {g}=N")
        for kind in ("fitted", "holdout"):
            for c in rec.get(kind, []):
                if c["decayed"]:
                    out.append({"run": c["run"], "size": g, "params": n,
                                "tokens": (c["last_step"] + 1) * tokens_per_step, "loss": c["final_loss"],
                                "source": "measured", "schedule": c["schedule"]})
        for p in rec.get("predictions", []):
            out.append({"run": p["schedule"], "size": g, "params": n, "tokens": p["steps"] * tokens_per_step,
                        "loss": p["final_loss"], "source": "predicted", "schedule": p["spec"]})
    if not out:
        raise ParameterError("points_out", "no final-loss point: no curve ends decayed (a constant trunk's last point "
                             "is not a final loss) and no --predict was given")
    return out


def points_csv(points: list[dict]) -> str:
    """The points as a runs CSV ``budgetopt fit`` reads (params, tokens, loss, ...)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(points[0]), lineterminator="\n")
    w.writeheader()
    for p in points:
        w.writerow({k: repr(v) if isinstance(v, float) else v for k, v in p.items()})
    return buf.getvalue()
