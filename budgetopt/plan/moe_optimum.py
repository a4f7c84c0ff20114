"""`budgetopt optimize` with a mixture-of-experts law: the joint optimum over (N, D, E) or
(N, D, G) under compute, an optional memory cap on total parameters and optional inference
tokens, beside the dense optimum of the same budget — so the answer is a comparison.

The discrete axis (expert count E, or granularity G) is enumerated and the continuous solve
runs for every candidate at once in one vmapped call (model/allocation.py's Newton-bisection
for the joint law at each E, model/moe.py's bisection for the fine-grained law at each G); the
best feasible candidate wins. Units: FLOPs, parameters, tokens, loss in nats/token (DESIGN §14).
"""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp
import numpy as np

from ..core import units
from ..core.errors import ParameterError
from ..core.files import data_toml
from ..model.allocation import Budget, allocate
from ..model.hardware import Cluster, ClusterRecord, check_price
from ..model.laws import FineGrainedMoE, JointMoE, LawSpec, parametric_from_mapping, to_array_law
from ..model.moe import (
    allocate_fine_grained,
    allocate_joint,
    fine_grained_active_params,
    fine_grained_log_flops_per_token,
    fine_grained_log_total_cap,
    joint_counts,
    joint_log_width,
    joint_shape,
)
from ..model.validity import extrapolation

#: candidate expert counts of ``--experts auto``: powers of two from 1 (dense) to the cap
DEFAULT_MAX_EXPERTS = 64
#: candidate granularities of ``--granularity auto`` (Krajewski et al.: G in 1, 2, 4, ..., 256)
GRANULARITIES = tuple(2.0 ** k for k in range(9))


class MoEOptimum(ClusterRecord, total=False):
    """``optimize``'s answer under an MoE law (`-f json`): the chosen candidate, every candidate
    solved, and the dense optimum of the same budget (``dense``: params, tokens, loss)."""

    law: str
    params_meaning: str
    flops: float
    pf_days: float
    experts: float
    granularity: float
    params_active: float
    params_total: float
    tokens: float
    tokens_per_param: float
    loss: float
    loss_gain: float
    max_total_params: float
    kv_tokens: float
    kv_cache: float
    inference_tokens: float
    converged: bool
    method: str
    candidates: list[dict[str, Any]]
    dense: dict[str, float]
    extrapolation: dict[str, Any]
    warnings: list[str]


def _choice(value: str | float | None, name: str, auto: tuple[float, ...]) -> tuple[float, ...]:
    """The candidates of ``--experts`` / ``--granularity``: "auto" (``auto``) or one whole number >= 1."""
    if value is None or value == "auto":
        return auto
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ParameterError(name, f"must be a whole number >= 1 or 'auto', got {value!r}") from None
    if not (math.isfinite(v) and v >= 1 and v == int(v)):
        raise ParameterError(name, f"must be a whole number >= 1 or 'auto', got {value!r}")
    return (v,)


#: the published preset of each MoE law kind: what its parameter count means and (fine-grained)
#: the dense fit it is compared with, for the preset and for a law a team fitted in its form
PUBLISHED = {"moe-joint": "ludziejewski2025-moe", "moe-fine-grained": "krajewski2024-moe"}


def fine_grained_dense(spec: LawSpec) -> LawSpec:
    """The dense law Krajewski et al. fitted with the same form (their Table 1), the comparison
    the fine-grained answer is read against: N = its (all active) non-embedding parameters. (A
    fine-grained law fitted by a team is compared with the paper's dense fit too.)"""
    name = PUBLISHED[spec.kind]
    table = data_toml("laws.toml")[name]["dense"]
    return LawSpec(f"{name} (dense fit)", parametric_from_mapping(table, f"{name}.dense"), spec.source)


def optimize_moe(spec: LawSpec, *, flops: float | None = None, cluster: Cluster | None = None,
                 experts: str | float | None = None, granularity: str | float | None = None,
                 max_experts: int | None = None, max_total_params: float | None = None,
                 kv_tokens: float | None = None, inference_tokens: float | None = None,
                 price_per_hour: float | None = None) -> MoEOptimum:
    """The compute-optimal MoE for a budget (``flops``, or a ``cluster`` with count and hours)
    under ``spec`` (a JointMoE or FineGrainedMoE law), with the dense optimum beside it.
    ``max_total_params``: a memory cap in parameters that every expert, and the KV cache of
    ``kv_tokens`` serving tokens (counted in elements of the same width), must fit."""
    law = spec.params
    joint = isinstance(law, JointMoE)
    if not joint and not isinstance(law, FineGrainedMoE):
        raise ParameterError("law", f"{spec.name} is not a mixture-of-experts law")
    if joint and granularity is not None:
        raise ParameterError("granularity", f"{spec.name} models top-1 experts of granularity 1 and varies the "
                             "expert count: use {experts}", names=True)
    if not joint and experts is not None:
        raise ParameterError("experts", f"{spec.name} fixes the expansion rate E = {law.expansion:g} and varies the "
                             "granularity: use {granularity}", names=True)
    max_experts = DEFAULT_MAX_EXPERTS if max_experts is None else max_experts
    if not (isinstance(max_experts, int) and 1 <= max_experts <= 4096):
        raise ParameterError("max_experts", f"must be a whole number from 1 to 4096, got {max_experts!r}")
    check_price(price_per_hour)
    booked = cluster is not None and cluster.hours is not None
    if flops is not None and booked:
        raise ParameterError("hours", "give one budget: {flops} or {hours}, not both", names=True)
    if flops is None and not booked:
        raise ParameterError("flops", "missing budget: give {flops}, or {gpu} with {count} and {hours}", names=True)
    budget = "flops"
    if flops is None:
        flops, budget = cluster.flops(), "hours"
    units.require_in(flops, budget, 6.0, what="a number of FLOPs (at least one parameter on one token)")
    if max_total_params is not None:
        units.require_in(max_total_params, "max_total_params", 1.0, what="a number of parameters")
    if kv_tokens is not None:
        units.require_in(kv_tokens, "kv_tokens", 0.0, what="a number of tokens")
        if max_total_params is None:
            raise ParameterError("kv_tokens", "counts the KV cache in the memory cap: give {max_total_params} too",
                                 names=True)
    kv = float(kv_tokens or 0.0)
    if inference_tokens is not None:
        units.require_in(inference_tokens, "inference_tokens", 0.0, what="a number of tokens")
    log_c = math.log(flops)
    log_cap = math.log(max_total_params) if max_total_params else math.inf
    log_inf = math.log(inference_tokens) if inference_tokens else -math.inf
    if joint:
        cands = _choice(experts, "experts", tuple(2.0 ** k for k in range(int(math.log2(max_experts)) + 1)))
        rows, dense = _joint(spec, np.asarray(cands), log_c, log_cap, log_inf, kv)
        key = "experts"
    else:
        cands = _choice(granularity, "granularity", GRANULARITIES)
        rows, dense = _fine_grained(spec, np.asarray(cands), log_c, log_cap, log_inf, kv)
        key = "granularity"
    feasible = [r for r in rows if r["feasible"]]
    if not feasible:
        raise ParameterError("max_total_params" if max_total_params else budget,
                             f"no {key} candidate trains a model under this budget"
                             + (" and memory cap" if max_total_params else ""))
    best = min(feasible, key=lambda r: r["loss"])
    rec: MoEOptimum = {"law": spec.name,
                       "params_meaning": data_toml("laws.toml")[PUBLISHED[spec.kind]]["params_meaning"],
                       "flops": flops, "pf_days": units.flops_to_pf_days(flops), key: best[key],
                       "params_active": best["params_active"], "params_total": best["params_total"],
                       "tokens": best["tokens"], "tokens_per_param": best["tokens"] / best["params_active"],
                       "loss": best["loss"], "loss_gain": dense["loss"] - best["loss"]}
    if max_total_params:
        rec["max_total_params"] = max_total_params
    if kv:
        rec["kv_tokens"], rec["kv_cache"] = kv, best["kv_cache"]
    if inference_tokens:
        rec["inference_tokens"] = inference_tokens
    rec["converged"] = bool(best["converged"])
    rec["method"] = ("newton-bisection on N_act per expert count" if joint else
                     "bisection on N along the FLOPs of eq. 10-11 per granularity")
    rec["candidates"] = rows
    rec["dense"] = dense
    if cluster is not None:
        rec.update(cluster.describe(flops, price_per_hour))
    ext = extrapolation(spec.validity, rec["params_active"], rec["tokens"], flops)
    if ext is not None:
        rec["extrapolation"] = ext
    rec["warnings"] = [] if rec["converged"] else [f"the solve at {key} {best[key]:g} did not converge"]
    return rec


def _joint(spec: LawSpec, experts: np.ndarray, log_c: float, log_cap: float, log_inf: float, kv: float):
    """Every expert count at once: the joint law at E is a Chinchilla-form law in (N_act, D), its
    memory cap a cap on N_act (eq. 9/10 on the paper's shape, KV cache included); E = 1 of the same
    law is the dense answer."""
    shape = joint_shape()
    e = np.concatenate([experts, [1.0]])  # the dense model rides along as the last problem
    a = allocate_joint(to_array_law(spec.params), jnp.full(e.shape, log_c), log_cap, e,
                       log_inf if math.isfinite(log_inf) else -math.inf, shape, kv)
    counts = joint_counts(joint_log_width(a.log_n, shape), e, shape, kv)
    n, d, lo, ok, tot, cache = (np.asarray(v, np.float64) for v in (a.log_n, a.log_d, a.loss, a.converged,
                                                                     counts.log_total, counts.log_kv))
    rows = []
    for i, ex in enumerate(e):
        feasible = bool(np.isfinite(lo[i]) and n[i] >= 0 and d[i] >= 0)
        rows.append({"experts": float(ex), "params_active": math.exp(n[i]), "params_total": math.exp(tot[i]),
                     "tokens": math.exp(d[i]), "loss": float(lo[i]), "converged": bool(ok[i]), "feasible": feasible,
                     **({"kv_cache": math.exp(cache[i])} if kv else {})})
    dense = rows.pop()
    return rows, {"params": dense["params_active"], "tokens": dense["tokens"], "loss": dense["loss"]}


def _fine_grained(spec: LawSpec, granularity: np.ndarray, log_c: float, log_cap: float, log_inf: float, kv: float):
    """Every granularity at once (model/moe.py), N the total non-embedding parameters under the
    memory cap (less the KV cache); the dense law of the same paper at the same budget and
    memory beside it."""
    law = to_array_law(spec.params)
    log_n_max = fine_grained_log_total_cap(law, jnp.asarray(log_cap), kv)
    a = allocate_fine_grained(law, jnp.full(granularity.shape, log_c), log_n_max, jnp.asarray(log_inf),
                              jnp.asarray(granularity))
    log_k = fine_grained_log_flops_per_token(law, a.log_n, jnp.asarray(granularity))
    active = fine_grained_active_params(law, jnp.exp(a.log_n))
    n, d, lo, ok, fe, k, act = (np.asarray(v) for v in (a.log_n, a.log_d, a.loss, a.converged, a.feasible, log_k,
                                                        active))
    width = 8.0 * float(spec.params.expansion) + 4.0
    rows = [{"granularity": float(g), "params_active": float(act[i]), "params_total": math.exp(float(n[i])),
             "tokens": math.exp(float(d[i])), "loss": float(lo[i]), "flops_per_token": math.exp(float(k[i])),
             "converged": bool(ok[i]), "feasible": bool(fe[i]),
             # KV = 2·T·n·d with d = 64·n and N = (8E + 4)·d³/64
             **({"kv_cache": 2.0 * kv * (64.0 * math.exp(float(n[i])) / width) ** (2.0 / 3.0) / 64.0} if kv else {})}
            for i, g in enumerate(granularity)]
    dense_spec = fine_grained_dense(spec)
    dl = to_array_law(dense_spec.params)
    dense_cap = fine_grained_log_total_cap(law._replace(expansion=1.0), jnp.asarray(log_cap), kv)
    da = allocate(dl, Budget(jnp.asarray(log_c), log_n_max=dense_cap, log_d_inf=log_inf), method="solve")
    dense = {"params": math.exp(float(da.log_n)), "tokens": math.exp(float(da.log_d)), "loss": float(da.loss)}
    return rows, dense
