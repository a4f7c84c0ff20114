"""A sweep's result: the user-facing summary of a state, the exact merge of shard files, and
the run plan of the recommended size (a scenario's ``[plan]``).

``summarise`` is a pure function of (labels, pilot, state): shards merged from their JSON files
give the same result, to the bit, as the sweep run whole.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np

from ..core import units
from ..core.distributions import median
from ..core.errors import InputError, ParameterError
from ..model.hardware import Cluster
from ..model.memory import Layout
from ..model.validity import extrapolation, from_mapping
from ..plan.launch import launch_plan, moe_size_plan
from . import state as st
from .accumulators import QUANTILES, Ranges, merge, moments, quantile_from_hist
from .decision import recommend
from .kernel import LOG_QUANTITIES, QUANTITIES
from .pilot import Pilot
from .scenario import Scenario


class SweepResult(TypedDict, total=False):
    """A sweep's answer (``driver.run``, ``merge_results``): the JSON of `budgetopt sweep -f json`.
    ``quantiles``/``stats`` per quantity (params, tokens, loss, ... in natural units);
    ``recommendation`` the robust N with its regret and Monte Carlo error (None, with a
    ``recommendation_note``, when there is none); ``state`` the exact accumulators (what
    ``merge`` adds up); ``run`` how it ran; ``plan`` the run plan of a scenario's [plan]."""

    scenario: str
    law: str
    uncertainty: str
    samples: int
    converged_fraction: float
    not_converged: int
    quantiles: dict[str, dict[str, float]]
    stats: dict[str, dict[str, float]]
    fingerprint: str
    recommendation: dict[str, Any] | None
    recommendation_note: str
    refinement: dict[str, Any]
    regret_curve: list[dict[str, float]]
    extrapolation: dict[str, Any]
    pilot: dict[str, Any]
    labels: dict[str, Any]
    state: dict[str, Any]
    run: dict[str, Any]
    plan: dict[str, Any] | None


@dataclass(frozen=True)
class Labels:
    """The scenario facts a result carries besides its numbers."""

    scenario: str
    law: str
    uncertainty: str
    risk: str
    subsample: int
    validity: dict | None = None  # the law's fitted range (``to_mapping``): the result says how far it extrapolates
    option_key: str | None = None  # a discrete decision's row key: "experts" ([moe]) or "precision" ([precision])
    options: list | None = None  # its options, which the candidates index: expert counts or format names
    option_log_values: list[float] | None = None  # log of each option's summarised value (E, or bits)


def summarise(labels: Labels, pilot: Pilot, state: st.SweepState, fingerprint: str) -> SweepResult:
    """The result dict (JSON-ready except for NaN/inf, which the writer turns into null)."""
    q = state.quantities
    lo, hi, centre = (np.asarray(v, np.float64) for v in pilot.ranges)
    names = pilot.names
    quant, stats = {}, {}
    for k, name in enumerate(names):
        count = int(q.count.n[k])
        if count == 0:
            continue
        h, vmin, vmax = q.hist.n[k], float(q.vmin.v[k]), float(q.vmax.v[k])
        vals = {p: quantile_from_hist(h, lo[k], hi[k], f, vmin, vmax) for p, f in QUANTILES.items()}
        if labels.option_log_values and name in ("experts", "precision_bits"):  # a choice: one of its values
            opts = np.asarray(labels.option_log_values)
            vals = {p: float(opts[np.argmin(np.abs(opts - v))]) for p, v in vals.items()}
        mean, sd = moments(count, float(q.sum.value()[k]), float(q.sumsq.value()[k]), centre[k])
        log = name in LOG_QUANTITIES
        conv = math.exp if log else float
        quant[name] = {p: conv(v) for p, v in vals.items()}
        stats[name] = {"min": conv(vmin), "max": conv(vmax), ("geomean" if log else "mean"): conv(mean),
                       ("log_sd" if log else "sd"): sd, "outside_histogram": int(h[0] + h[-1])}
    shares = option_shares(labels, state)
    n = int(state.samples.n)
    converged = int(state.converged.n)
    result: SweepResult = {"scenario": labels.scenario, "law": labels.law, "uncertainty": labels.uncertainty,
                           "samples": n,
              "converged_fraction": converged / n if n else float("nan"), "not_converged": n - converged,
              "quantiles": quant, "stats": stats, "fingerprint": fingerprint}
    if shares is not None:
        result["option_shares"] = shares
    if pilot.note:
        result["recommendation"], result["recommendation_note"] = None, pilot.note
    elif state.candidates is not None and n:
        rec, curve, note = recommend(state.candidates, pilot.candidates, labels.risk, pilot.refined, labels.subsample,
                                     None if labels.options is None else (labels.option_key, labels.options))
        result["recommendation"] = rec
        if note:
            result["recommendation_note"] = note
        if rec is not None:
            result["refinement"] = pilot.refinement
            result["regret_curve"] = curve
    rec = result.get("recommendation")
    if rec and labels.validity and "flops" in quant:
        ext = extrapolation(from_mapping(labels.validity, "labels"), rec["params"],
                            quant["flops"]["p50"] / (units.TRAIN_FLOPS_PER_PARAM_TOKEN * rec["params"]))
        result["extrapolation"] = ext
    result["pilot"] = {"ranges": {names[k]: [float(lo[k]), float(hi[k])] for k in range(len(names))},
                       "centre": centre.tolist(), "candidates": pilot.candidates.tolist(), "size": pilot.size,
                       "dtype": str(np.asarray(pilot.ranges.lo).dtype), "refinement": pilot.refinement,
                       "note": pilot.note}
    result["labels"] = dataclasses.asdict(labels)
    result["state"] = st.state_to_json(state)
    return result


def option_shares(labels: Labels, state: st.SweepState) -> dict | None:
    """With a discrete decision: the share of the converged samples whose own best option is
    each option (exact counts), else None."""
    if labels.options is None or state.chosen is None:
        return None
    n = np.asarray(state.chosen.n, np.float64)
    return {str(o): float(c / n.sum()) if n.sum() else math.nan for o, c in zip(labels.options, n)}


def _pilot_from(r: dict) -> Pilot:
    p = r["pilot"]
    names = [q for q in QUANTITIES if q in p["ranges"]]
    dtype = np.dtype(p["dtype"])
    if len(names) != len(p["ranges"]) or dtype not in (np.float32, np.float64):
        raise ValueError("unknown quantities or dtype")
    ranges = Ranges(*(np.asarray(v, np.float64).astype(dtype) for v in (
        [p["ranges"][q][0] for q in names], [p["ranges"][q][1] for q in names], p["centre"])))
    if not all(len(v) == len(names) for v in ranges):
        raise ValueError("ranges and centres differ in length")
    cands = np.asarray(p["candidates"], np.float64)
    cands = cands.reshape(-1) if cands.size == 0 or cands.ndim == 1 else cands  # [K]; [K, 2] with options
    return Pilot(tuple(names), ranges, cands, dict(p["refinement"]),
                 int(p["size"]),
                 p["note"])


def merge_results(results: list[Any], names: list[str] | None = None) -> SweepResult:
    """Merge the results of the shards of one sweep (``--shard i/n``) exactly. ``names`` label
    them in errors (file names). A result that is not a sweep output, or whose state no longer
    matches the others', is a ParameterError on ``results``."""
    if not results:
        raise ParameterError("results", "nothing to merge")
    names = names or [f"result {i}" for i in range(len(results))]
    for r, name in zip(results, names):
        if not isinstance(r, dict) or not all(isinstance(r.get(k), dict) for k in ("state", "run")):
            raise ParameterError("results", f"{name} is not a sweep JSON output (no 'state'); write one with "
                             "`budgetopt sweep ... -f json -o FILE`")
    odd = next((name for r, name in zip(results, names) if r.get("fingerprint") != results[0].get("fingerprint")), None)
    if odd is not None:
        raise ParameterError("results", f"{odd} comes from a different sweep than {names[0]} (their fingerprints "
                             "differ: another scenario, seed, sample count, precision or state format)")
    given = [str(r["run"].get("shard")) for r in results]
    twice = next((name for i, (g, name) in enumerate(zip(given, names)) if g in given[:i]), None)
    if twice is not None:
        raise ParameterError("results", f"{twice} is shard {given[names.index(twice)]}, given twice")
    shards = sorted(given)
    n_sh = shards[0].split("/")[-1]
    if not n_sh.isdigit() or shards != sorted(f"{i}/{n_sh}" for i in range(int(n_sh))):
        raise ParameterError("results",
                             f"need each shard 0/{n_sh} .. {int(n_sh) - 1 if n_sh.isdigit() else 'n-1'}/{n_sh} "
                         f"exactly once, got {', '.join(shards)}")
    r0 = results[0]
    try:
        pilot = _pilot_from(r0)
        lab = r0["labels"]
        key, options = lab.get("option_key"), lab.get("options")
        if (key, options) != (None, None) and (key not in ("experts", "precision") or not isinstance(options, list)):
            raise ValueError("options")
        labels = Labels(str(lab["scenario"]), str(lab["law"]), str(lab["uncertainty"]), str(lab["risk"]),
                        int(lab["subsample"]), lab.get("validity"), key, options, lab.get("option_log_values"))
        if labels.validity is not None:
            from_mapping(labels.validity, "labels")
        if labels.risk not in ("mean", "p95") or labels.subsample < 1:
            raise ValueError("risk or subsample")
    except (KeyError, TypeError, ValueError, InputError):
        raise ParameterError("results", f"{names[0]} is not an intact sweep JSON output (its pilot or labels are "
                             "damaged)") from None
    template = st.empty_state(len(pilot.ranges.lo), len(pilot.candidates) if r0["state"].get("candidates") else 0,
                              len(labels.options or ()))
    state = None
    for r, name in zip(results, names):
        s = st.state_from_json(r["state"], template, name)
        state = s if state is None else merge(state, s)
    out = summarise(labels, pilot, state, r0["fingerprint"])
    out["run"] = dict(r0["run"], shard=f"merged {n_sh}",
                      elapsed_s=sum(float(r["run"].get("elapsed_s", 0.0)) for r in results))
    return out


def plan_for_sweep(scenario: Scenario, result: dict) -> dict | None:
    """The run plan of a sweep's recommended size N at the median budget (D = C_p50 / 6N), on
    the scenario's accelerator at its median MFU and device count; None without a
    recommendation or a [plan] table. When the budget's device-hours and wall-clock vary (the
    sweep summarised them), the plan's ``quantiles`` give the run's: a sample's budget C buys
    D = C / 6N tokens whose real work is r x C (r: the convention's FLOPs per token over 6N, x 4/3
    with full recomputation), so its device-hours, wall-clock and energy are r x its budget's,
    whatever its MFU."""
    rec = result.get("recommendation")
    if scenario.plan is None or not rec or "flops" not in result["quantiles"]:
        return None
    o = scenario.plan
    n = rec["params"]
    d = result["quantiles"]["flops"]["p50"] / (units.TRAIN_FLOPS_PER_PARAM_TOKEN * n)
    cluster = None
    if scenario.accelerator is not None:
        count = max(1, round(median(scenario.count)))
        cluster = Cluster(scenario.accelerator, scenario.dtype, median(scenario.mfu), count, pue=o["pue"])
    layout = Layout(tp=o["tp"], pp=o["pp"], zero=o["zero"], micro_batch=o["micro_batch"], recompute=o["recompute"],
                    flash=o["flash"], ep=o["ep"])
    warnings = []
    if scenario.experts is not None:  # the recommended (E, N_act), shaped as the joint law's family
        cap, e = scenario.max_total_params, int(result["recommendation"]["experts"])
        if e % layout.ep:  # the recommendation was not known when plan.ep was written
            warnings.append(f"plan.ep = {layout.ep} does not divide the recommended E = {e}: planned with ep "
                            f"{math.gcd(e, layout.ep)}")
            layout = dataclasses.replace(layout, ep=math.gcd(e, layout.ep))
        rec = moe_size_plan(scenario.law, n, e, d, cluster=cluster,
                            max_total_params=cap.a if cap is not None and cap.fixed else None,
                            kv_tokens=scenario.kv_tokens, seq_len=o["seq_len"],
                            vocab=o["vocab"], layout=layout, convention=o["flops_convention"],
                            batch_law=o["batch_law"])
    else:
        rec = launch_plan(scenario.law, params=n, tokens=d, cluster=cluster, layout=layout, seq_len=o["seq_len"],
                          vocab=o["vocab"], ffn=o["ffn"], convention=o["flops_convention"], batch_law=o["batch_law"])
    rec["warnings"] = warnings + rec.get("warnings", [])
    q = result["quantiles"]
    if "gpu_hours" in q and "wall_days" in q:
        # the run's work per 6ND: its FLOPs per token over 6N, with recomputation
        r = rec["hardware_flops"] / (units.TRAIN_FLOPS_PER_PARAM_TOKEN * rec["params"] * rec["tokens"])
        rec["quantiles"] = {"gpu_hours": {p: r * v for p, v in q["gpu_hours"].items()},
                            "wall_days": {p: r * v for p, v in q["wall_days"].items()}}
        if cluster.watts is not None:
            rec["quantiles"]["energy_kwh"] = {p: units.energy_kwh(v, cluster.watts, cluster.pue)
                                              for p, v in rec["quantiles"]["gpu_hours"].items()}
    return rec
