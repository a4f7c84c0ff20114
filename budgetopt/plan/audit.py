"""`budgetopt audit`: was a trained model compute-optimal?

Audit of trained models: was the allocation compute-optimal under a given law?

For a model (N, D, C) and a law with a loss surface: the predicted loss, the compute-optimal
(N*, D*) at the same C, the loss gap L(N, D) - L*(C), and the compute multiplier
C / C_needed, where C_needed is the least compute whose optimal allocation reaches the
model's predicted loss (> 1 means the model spent more compute than the loss needed). The
verdict uses the multiplier (the tokens/param ratio alone misleads: under hoffmann2022 the
optimal ratio grows with compute) and the side: too few tokens -> under-trained, too many ->
over-trained. For an allocation rule, the verdict is the ratio of D/N to the rule's ratio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypedDict

import jax.numpy as jnp

from ..core import units
from ..core.errors import ParameterError
from ..core.files import data_toml
from ..model.allocation import Budget, allocate, compute_for_loss, log_compute_for_loss, method_for
from ..model.laws import LawSpec, Parametric, has_loss, loss, to_array_law
from ..model.validity import attach, extrapolation

NEAR_MULTIPLIER = 1.25  # the optimal allocation would reach the same loss with >= 80 % of the compute
NEAR_RATIO = 2.0  # allocation rules: D/N within a factor 2 of the rule's ratio


class AuditRow(TypedDict, total=False):
    """One audited model (``audit_model``): a row of `budgetopt audit -f json`. A law with a loss
    fills loss .. compute_multiplier; an allocation rule ``ratio_to_rule``; ``verdict`` is
    near-optimal, under-trained or over-trained."""

    name: str
    params: float
    tokens: float
    flops: float
    flops_published: bool
    tokens_per_param: float
    optimal_params: float
    optimal_tokens: float
    extrapolation: dict[str, Any]
    loss: float | None
    optimal_loss: float | None
    loss_gap: float | None
    compute_multiplier: float | None
    ratio_to_rule: float | None
    verdict: str


@dataclass(frozen=True)
class Model:
    id: str
    name: str
    params: float
    tokens: float
    flops: float | None = None
    hardware: str = ""
    source: str = ""


def model_catalog() -> dict[str, Model]:
    """The known models (``data/models.toml``, each with its source), by id."""
    data = data_toml("models.toml")
    return {k: Model(k, v["name"], float(v["params"]), float(v["tokens"]), v.get("flops"), v.get("hardware", ""),
                     v["source"]) for k, v in data.items()}


def get_model(name: str) -> Model:
    cat = model_catalog()
    key = name.strip().lower()
    if key in cat:
        return cat[key]
    raise ParameterError("model", f"unknown model {name!r}; known: {', '.join(cat)}")


def select_models(ids: list[str] | None = None, *, params: float | None = None, tokens: float | None = None,
                  flops: float | None = None, name: str = "your model") -> list[Model]:
    """What to audit: catalog models by id (default: all), or one model of ``params`` and
    ``tokens`` (and its training compute ``flops`` when it is not 6ND), never both."""
    if params is None and tokens is None:
        if flops is not None:
            raise ParameterError("flops", "applies to {params} with {tokens}", names=True)
        return [get_model(m) for m in ids] if ids else list(model_catalog().values())
    if params is None or tokens is None:
        raise ParameterError("params" if params is None else "tokens", "give both {params} and {tokens}", names=True)
    if ids:
        raise ParameterError("model", "give catalog models or {params}/{tokens}, not both", names=True)
    if flops is not None:
        units.require_positive(flops, "flops")
    return [Model("custom", name, units.require_positive(params, "params"), units.require_positive(tokens, "tokens"),
                  flops)]


def audit_model(m: Model, spec: LawSpec, near_multiplier: float = NEAR_MULTIPLIER,
                near_ratio: float = NEAR_RATIO) -> AuditRow:
    """One audit row (units: FLOPs, parameters, tokens, nats/token)."""
    for v, f in ((m.params, "params"), (m.tokens, "tokens")):
        units.require_positive(v, f)
    c = m.flops if m.flops else units.train_flops(m.params, m.tokens)
    law = to_array_law(spec.params)
    log_c = math.log(c)
    opt = allocate(law, Budget(jnp.asarray(log_c)), method=method_for(spec.params))
    n_opt, d_opt = math.exp(float(opt.log_n)), math.exp(float(opt.log_d))
    row: AuditRow = {"name": m.name, "params": m.params, "tokens": m.tokens, "flops": c,
           "flops_published": m.flops is not None, "tokens_per_param": m.tokens / m.params,
           "optimal_params": n_opt, "optimal_tokens": d_opt}
    attach(row, extrapolation(spec.validity, m.params, m.tokens, c), warn=False)
    if not has_loss(spec.params):
        k = float(spec.params.ratio)
        ratio = (m.tokens / m.params) / k
        row.update({"loss": None, "optimal_loss": None, "loss_gap": None, "compute_multiplier": None,
                    "ratio_to_rule": ratio})
        row["verdict"] = ("near-optimal" if 1 / near_ratio <= ratio <= near_ratio
                          else "under-trained" if ratio < 1 else "over-trained")
        return row
    # The model's predicted loss at its own (N, D); its optimum at the same compute C.
    l_model = float(loss(law, jnp.log(m.params), jnp.log(m.tokens)))
    l_opt = float(opt.loss)
    if isinstance(spec.params, Parametric):
        log_need = float(log_compute_for_loss(law, l_model))
    else:
        log_need = float(compute_for_loss(law, l_model, Budget(jnp.asarray(0.0))).log_c)
    mult = math.exp(log_c - log_need)
    row.update({"loss": l_model, "optimal_loss": l_opt, "loss_gap": max(l_model - l_opt, 0.0),
                "compute_multiplier": mult, "ratio_to_rule": None})
    side = "under-trained" if m.params > n_opt else "over-trained"
    row["verdict"] = "near-optimal" if mult <= near_multiplier else side
    return row


def audit_models(models: list[Model], spec: LawSpec, near_multiplier: float = NEAR_MULTIPLIER,
                 near_ratio: float = NEAR_RATIO) -> list[AuditRow]:
    """One audit row per model under ``spec`` (``audit_model``), the thresholds checked once."""
    units.require_in(near_multiplier, "near_multiplier", 1.0, what="a compute multiplier")
    units.require_in(near_ratio, "near_ratio", 1.0, what="a ratio")
    return [audit_model(m, spec, near_multiplier, near_ratio) for m in models]
