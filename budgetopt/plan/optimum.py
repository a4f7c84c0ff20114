"""`budgetopt optimize` and `budgetopt convert`: one planning question -> one answer. Validate
the inputs, pick the law and method, allocate, and derive everything a user reads (PF-days,
GPU-hours, wall-days, penalties).

The CLI adds only parsing and printing, so the library and the command line give the same
numbers. Units: C in FLOPs, N parameters, D tokens, loss in nats per token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from ..core import units
from ..core.errors import ParameterError
from ..model.allocation import Allocation, Budget, allocate, compute_for_loss, method_for
from ..model.hardware import Cluster, ClusterRecord, check_price
from ..model.laws import (
    LawSpec,
    Parametric,
    data_constrained,
    data_constrained_constants,
    has_loss,
    irreducible_loss,
    loss,
    to_array_law,
)
from ..model.validity import extrapolation

MIN_FLOPS = 6.0  # one parameter trained on one token


class Optimum(ClusterRecord, total=False):
    """``optimize``'s answer: the JSON of `budgetopt optimize -f json` (README, "Output keys").
    Counts in parameters and tokens, compute in FLOPs, loss in nats per token; the hardware keys
    (gpu .. cost) with a cluster, ``extrapolation`` with a law that records where it was fitted."""

    law: str
    target_loss: float
    flops: float
    pf_days: float
    params: float
    tokens: float
    loss: float | None
    tokens_per_param: float
    unique_tokens: float
    epochs: float
    inference_tokens: float
    train_flops: float
    lifetime_flops: float
    unused_flops: float
    loss_penalty: float | None
    converged: bool
    method: str
    iterations: int
    grad_norm: float
    extrapolation: dict[str, Any]
    warnings: list[str]


@dataclass(frozen=True)
class Constraints:
    """Optional limits. Counts are plain numbers (parameters, tokens); None = no limit."""

    unique_tokens: float | None = None
    max_params: float | None = None
    max_tokens: float | None = None
    max_epochs: float | None = None
    inference_tokens: float | None = None

    def __post_init__(self):
        for name in ("unique_tokens", "max_params", "max_tokens", "max_epochs"):
            if getattr(self, name) is not None:
                units.require_positive(getattr(self, name), name)
        for name in ("unique_tokens", "max_params", "max_tokens"):  # counts: the model needs N >= 1, D >= 1
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ParameterError(name, f"must be at least 1, got {v!r}")
        if self.max_epochs is not None and self.unique_tokens is not None and self.max_epochs * self.unique_tokens < 1:
            raise ParameterError("max_epochs", "allows less than one training token: {max_epochs} x {unique_tokens} "
                                 "must be >= 1", names=True)
        if self.inference_tokens is not None:
            units.require_in(self.inference_tokens, "inference_tokens", 0.0, what="a number of tokens")
        if self.max_epochs is not None and self.unique_tokens is None:
            raise ParameterError("max_epochs", "needs {unique_tokens} (epochs are counted over the unique data)",
                                 names=True)

    @property
    def d_max(self) -> float:
        caps = [math.inf]
        if self.max_tokens is not None:
            caps.append(self.max_tokens)
        if self.max_epochs is not None:
            caps.append(self.max_epochs * self.unique_tokens)
        return min(caps)

    def budget(self, log_c) -> Budget:
        """The Budget pytree for these constraints at log compute ``log_c``."""
        log = lambda v, none: none if v is None else math.log(v) if v > 0 else -math.inf  # noqa: E731
        return Budget(jnp.asarray(log_c), jnp.asarray(log(self.unique_tokens, math.inf)),
                      jnp.asarray(log(self.max_params, math.inf)), jnp.asarray(math.log(self.d_max)),
                      jnp.asarray(log(self.inference_tokens, -math.inf)))

    @property
    def has_inference(self) -> bool:
        return bool(self.inference_tokens)


def law_for(spec: LawSpec, c: Constraints):
    """The law pytree the solver sees: the data-constrained form when unique tokens are given."""
    if c.unique_tokens is None:
        return spec.params
    if not isinstance(spec.params, Parametric):
        raise ParameterError("unique_tokens",
                             f"the data-constrained form needs a parametric law (E, A, B, alpha, beta); "
                                            f"{spec.name} is {spec.kind}")
    return data_constrained(spec.params)


def _alloc_record(law, c: Constraints, a: Allocation, flops: float) -> dict:
    n, d = math.exp(float(a.log_n)), math.exp(float(a.log_d))
    used = math.exp(float(a.log_c_used))
    unused = flops - used
    # float32 rounding of log C leaves ~1e-7 C of "unused" compute when nothing binds
    unused = unused if unused > 1e-5 * flops else 0.0
    rec = {"params": n, "tokens": d,
           "loss": float(a.loss) if has_loss(law) else None,
           "tokens_per_param": d / n}
    if c.unique_tokens is not None:
        rec["unique_tokens"] = c.unique_tokens
        rec["epochs"] = d / c.unique_tokens
    if c.has_inference:
        rec["inference_tokens"] = c.inference_tokens
        rec["train_flops"] = units.train_flops(n, d)
        rec["lifetime_flops"] = used
    rec["unused_flops"] = unused
    return rec


def reference_loss(spec: LawSpec, c: Constraints, log_c: float) -> float | None:
    """Optimal loss at the same budget with no caps and unlimited unique data (the reference
    for ``loss_penalty``); None for allocation rules."""
    if not has_loss(spec.params):
        return None
    free = Constraints(inference_tokens=c.inference_tokens)
    law = to_array_law(spec.params)
    a = allocate(law, free.budget(log_c), method=method_for(spec.params, free.has_inference))
    return float(a.loss)


def optimize(spec: LawSpec, *, flops: float | None = None, cluster: Cluster | None = None,
             constraints: Constraints = Constraints(), target_loss: float | None = None,
             price_per_hour: float | None = None) -> Optimum:
    """Answer one planning question. Give exactly one of ``flops``, ``cluster`` (with count and
    hours) or ``target_loss``. Returns a flat record (see README for the keys and units)."""
    c = constraints
    law = law_for(spec, c)
    method = method_for(law, c.has_inference)
    arr_law = to_array_law(law)
    given = [k for k, v in (("flops", flops), ("target_loss", target_loss)) if v is not None]
    if cluster is not None and cluster.hours is not None:
        given.append("hours")
    if len(given) > 1:
        raise ParameterError(given[1], f"give one budget: {' or '.join('{' + g + '}' for g in given)}, not both",
                             names=True)
    if not given:
        raise ParameterError("flops",
                             "missing budget: give {flops}, or {gpu} with {count} and {hours}, or {target_loss}",
                             names=True)
    check_price(price_per_hour)

    rec: Optimum = {"law": spec.name}
    if target_loss is not None:
        if not has_loss(law):
            raise ParameterError("target_loss", f"{spec.name} is an allocation rule without a loss surface")
        units.require_in(target_loss, "target_loss", what="a finite loss")
        floor = float(irreducible_loss(arr_law))
        if target_loss <= floor:
            raise ParameterError("target_loss",
                                 f"{target_loss} is at or below the law's irreducible loss E = {floor:.4g}; "
                             "no compute reaches it")
        b0 = c.budget(0.0)
        zero = jnp.zeros((), jnp.result_type(*jax.tree_util.tree_leaves(arr_law)))
        smallest = float(loss(arr_law, zero, zero, b0.log_u.astype(zero.dtype)))  # N = 1 parameter, D = 1 token
        if target_loss >= smallest:
            raise ParameterError("target_loss",
                                 f"{target_loss:g} is at or above the loss of a 1-parameter model trained on "
                             f"1 token ({smallest:.4g}): any compute reaches it; give a lower target")
        res = compute_for_loss(arr_law, target_loss, b0, method=method)
        if not bool(res.reachable):
            best = compute_for_loss(arr_law, 0.0, c.budget(0.0), method=method)  # loss at the search cap
            raise ParameterError("target_loss", f"{target_loss} is unreachable under these constraints "
                             f"(the best reachable loss is about {float(best.allocation.loss):.4g})")
        log_c = float(res.log_c)
        flops = math.exp(log_c)
        a = res.allocation
        converged = bool(res.converged)
        rec["target_loss"] = target_loss
    else:
        budget = "flops"  # the parameter the budget came from, named in its errors
        if flops is None:
            flops, budget = cluster.flops(), "hours"
        units.require_in(flops, budget, 0.0, low_open=True, what="a number of FLOPs")
        if flops < MIN_FLOPS:
            source = "got " if budget == "flops" else "the booking (devices x hours or days x throughput) gives "
            raise ParameterError(budget, f"{source}{flops:.6g} FLOPs; a run needs at least {MIN_FLOPS:g} (one "
                                 "parameter on one token)")
        if c.has_inference and flops <= units.INFER_FLOPS_PER_PARAM_TOKEN * c.inference_tokens + MIN_FLOPS:
            raise ParameterError("inference_tokens",
                                 f"serving {c.inference_tokens:.3g} tokens costs 2 FLOPs per parameter per token: "
                             f"a lifetime budget of {flops:.3g} FLOPs cannot train even one parameter")
        log_c = math.log(flops)
        a = allocate(arr_law, c.budget(log_c), method=method)
        converged = bool(a.converged)
    rec["flops"] = flops
    rec["pf_days"] = units.flops_to_pf_days(flops)
    rec.update(_alloc_record(law, c, a, flops))
    ref = reference_loss(spec, c, log_c)
    rec["loss_penalty"] = None if ref is None else max(rec["loss"] - ref, 0.0)
    rec["converged"] = converged
    rec["method"] = "closed-form" if method == "closed" else "newton-bisection"
    rec["iterations"] = int(a.iterations)
    rec["grad_norm"] = float(a.grad)
    if cluster is not None:
        train = rec.get("train_flops", flops - rec["unused_flops"])
        rec.update(cluster.describe(train, price_per_hour))
    ext = extrapolation(spec.validity, rec["params"], rec["tokens"],
                        rec.get("train_flops", flops - rec["unused_flops"]), rec.get("loss"))
    if ext is not None:
        rec["extrapolation"] = ext
    rec["warnings"] = answer_warnings(spec, rec)
    return rec


# tokens per parameter of published runs: ~1 (GPT-3 175B, 1.7) to ~1,900 (Llama 3 8B, 15T tokens)
PUBLISHED_RATIOS = (1.0, 2000.0)


def answer_warnings(spec: LawSpec, rec: dict) -> list[str]:
    """What an answer's own numbers say against it: data repeated past the point where the
    data-constrained law gives it any value (4 R_D* epochs: a repeated token is then worth
    exp(-4) < 2 % of a fresh one), and an allocation rule's ratio far outside published runs
    (a rule has no loss to show the cost)."""
    out = []
    if rec.get("epochs") is not None:
        rd_star = data_constrained_constants()[0]
        if rec["epochs"] > 4 * rd_star:
            out.append(f"{rec['epochs']:.3g} epochs over the unique data: beyond {4 * rd_star:.0f} (4 R_D*) a repeated "
                       "token is worth < 2 % of a fresh one under the data-constrained law; the loss is far from any "
                       "run the law was fitted on")
    lo, hi = PUBLISHED_RATIOS
    if not has_loss(spec.params) and not lo / 10 <= rec["tokens_per_param"] <= hi * 10:
        out.append(f"{rec['tokens_per_param']:.3g} tokens per parameter is far outside published runs ({lo:g} to "
                   f"{hi:,.0f}): {spec.name} is a rule with no loss to say what that costs")
    return out


#: ``convert`` quantities: the name a user asks for -> the record key
CONVERT_TO = {"flops": "flops", "pf-days": "pf_days", "gpu-hours": "gpu_hours", "wall-days": "wall_days",
              "cost": "cost"}


def convert(flops: float | None = None, *, params: float | None = None, tokens: float | None = None,
            flops_per_param_token: float = units.TRAIN_FLOPS_PER_PARAM_TOKEN, cluster: Cluster | None = None,
            price_per_hour: float | None = None, to: str | None = None) -> dict:
    """Compute as FLOPs and PF-days, and with a ``cluster`` as device-hours, wall-days and cost.
    Give ``flops``, or ``params`` with ``tokens`` (FLOPs = flops_per_param_token x N x D).
    ``to`` keeps one quantity (a key of CONVERT_TO)."""
    if flops is not None and (params is not None or tokens is not None):
        raise ParameterError("params", "give {flops} or {params} with {tokens}, not both", names=True)
    if to is not None and to not in CONVERT_TO:
        raise ParameterError("to", f"unknown quantity {to!r}; allowed: {', '.join(CONVERT_TO)}")
    check_price(price_per_hour)
    units.require_positive(flops_per_param_token, "flops_per_param_token")
    if flops is None:
        if params is None or tokens is None:
            raise ParameterError("flops", "give a compute {flops}, or {params} with {tokens}", names=True)
        flops = units.train_flops(units.require_positive(params, "params"), units.require_positive(tokens, "tokens"),
                                  flops_per_param_token)
    units.require_positive(flops, "flops")
    rec = {"flops": flops, "pf_days": units.flops_to_pf_days(flops)}
    if cluster is not None:
        rec.update(cluster.describe(flops, price_per_hour))
    if to is None:
        return rec
    if CONVERT_TO[to] not in rec:
        need = {"gpu-hours": "{gpu}", "wall-days": "{gpu} and {count}", "cost": "{gpu} and {price_per_hour}"}[to]
        raise ParameterError("to", f"{to} needs {need}", names=True)
    return {CONVERT_TO[to]: rec[CONVERT_TO[to]]}

