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
import numpy as np

from ..core import units
from ..core.distributions import key_words
from ..core.errors import ParameterError
from ..core.files import data_toml
from ..model.allocation import Budget, allocate, compute_for_loss, log_compute_for_loss, method_for
from ..model.laws import LawSpec, Parametric, draw_law, get_preset, has_loss, is_moe, loss, resolve_law, to_array_law
from ..model.validity import attach, extrapolation

NEAR_MULTIPLIER = 1.25  # the optimal allocation would reach the same loss with >= 80 % of the compute
NEAR_RATIO = 2.0  # allocation rules: D/N within a factor 2 of the rule's ratio


class AuditRow(TypedDict, total=False):
    """One audited model (``audit_model``): a row of `budgetopt audit -f json`. A law with a loss
    fills loss .. compute_multiplier; an allocation rule ``ratio_to_rule``; ``verdict`` is
    near-optimal, under-trained or over-trained; with a law's covariance ``p_under_trained``,
    ``p_near_optimal``, ``p_over_trained`` (the verdict's probability over law draws) and
    ``p_verdict`` (that of the verdict given); with inference tokens ``inference_tokens`` and
    ``lifetime_flops``, the compute the model is judged by; with a serving precision
    ``serve_precision``, ``ptq_degradation``, ``critical_tokens`` and ``past_critical_tokens``."""

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
    inference_tokens: float
    lifetime_flops: float
    p_under_trained: float
    serve_precision: float
    ptq_degradation: float
    critical_tokens: float
    past_critical_tokens: bool
    p_near_optimal: float
    p_over_trained: float
    p_verdict: float
    params_total: float
    experts: float
    verdict_dense: str
    dense_law: str


@dataclass(frozen=True)
class Model:
    id: str
    name: str
    params: float
    tokens: float
    flops: float | None = None
    hardware: str = ""
    source: str = ""
    params_total: float | None = None  # a mixture of experts: all experts (``params`` is the active count)
    experts: float = 1.0  # routed experts; 1 = dense
    top_k: int = 1


def model_catalog() -> dict[str, Model]:
    """The known models (``data/models.toml``, each with its source), by id."""
    data = data_toml("models.toml")
    return {k: Model(k, v["name"], float(v["params"]), float(v["tokens"]), v.get("flops"), v.get("hardware", ""),
                     v["source"], v.get("params_total"), float(v.get("experts", 1)), int(v.get("top_k", 1)))
            for k, v in data.items()}


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


UNCERTAINTY_DRAWS = 2000  # law draws behind a verdict's probabilities (seed 0: the same for every model)
VERDICTS = ("under-trained", "near-optimal", "over-trained")


def _judge(law, log_n: float, log_d: float, log_c: float, log_d_inf: float, near_multiplier: float):
    """(optimal log N, optimal loss, the model's loss, compute multiplier, verdict code) for a
    law whose leaves may be a batch of draws: the optimum at the model's (lifetime) compute, and
    the compute multiplier C / C_needed, C_needed the least (lifetime) compute whose optimal
    allocation reaches the model's loss. Verdict codes index VERDICTS."""
    serving = log_d_inf > -math.inf
    budget = Budget(jnp.asarray(log_c), log_d_inf=log_d_inf if serving else -math.inf)
    method = method_for(law, serving)
    opt = allocate(law, budget, method=method)
    l_model = loss(law, jnp.asarray(log_n), jnp.asarray(log_d))
    if isinstance(law, Parametric) and not serving:
        log_need = log_compute_for_loss(law, l_model)
    else:
        zero = budget._replace(log_c=jnp.zeros_like(budget.log_c))
        log_need = compute_for_loss(law, l_model, zero, method=method).log_c
    mult = jnp.exp(log_c - log_need)
    code = jnp.where(mult <= near_multiplier, 1, jnp.where(log_n > opt.log_n, 0, 2))
    return opt.log_n, opt.log_d, opt.loss, l_model, mult, code


def moe_audit_law(spec: LawSpec, m: Model) -> LawSpec:
    """The law a model is judged by under an MoE law: Ludziejewski et al.'s joint law at the
    model's own expert count (a dense model: E = 1), as the Chinchilla law it is at that E.
    The joint law was fitted on top-1 routing with granularity 1: a top-k, fine-grained model
    is placed at its routed expert count, a reading the paper does not test (README)."""
    from ..model.laws import JointMoE
    from ..model.moe import joint_at

    if not isinstance(spec.params, JointMoE):
        raise ParameterError("law", f"{spec.name} varies the granularity at a fixed 64x expansion; the audit judges "
                             "mixtures of experts under ludziejewski2025-moe (a model's own expert count)")
    p = joint_at(spec.params, m.experts)
    return LawSpec(f"{spec.name} at E = {m.experts:g}", Parametric(*(float(v) for v in p)), spec.source,
                   validity=spec.validity)


def audit_model(m: Model, spec: LawSpec, near_multiplier: float = NEAR_MULTIPLIER, near_ratio: float = NEAR_RATIO,
                inference_tokens: float | None = None, draws: int = UNCERTAINTY_DRAWS) -> AuditRow:
    """One audit row (units: FLOPs, parameters, tokens, nats/token). With ``inference_tokens``
    the model is judged by its lifetime compute (training + 2·N per served token) against the
    inference-aware optimum (Sardana et al. 2023): a model trained past Chinchilla to serve
    cheaply is then not over-trained by construction. A law with a covariance also gives each
    verdict's probability over ``draws`` draws of the law (``laws.draw_law``)."""
    for v, f in ((m.params, "params"), (m.tokens, "tokens")):
        units.require_positive(v, f)
    if is_moe(spec.params):  # judged at its own expert count, beside the dense default law by active parameters
        row = audit_model(m, moe_audit_law(spec, m), near_multiplier, near_ratio, inference_tokens, draws)
        default = resolve_law()
        dense = audit_model(m, default, near_multiplier, near_ratio, inference_tokens, draws=0)
        row.update({"experts": m.experts, "verdict_dense": dense["verdict"], "dense_law": default.name})
        return row
    c = m.flops if m.flops else units.train_flops(m.params, m.tokens)
    log_d_inf = -math.inf if not inference_tokens else math.log(inference_tokens)
    c_judged = c + (units.INFER_FLOPS_PER_PARAM_TOKEN * m.params * inference_tokens if inference_tokens else 0.0)
    law = to_array_law(spec.params)
    log_n, log_d, log_c = math.log(m.params), math.log(m.tokens), math.log(c_judged)
    row: AuditRow = {"name": m.name, "params": m.params, "tokens": m.tokens, "flops": c,
                     "flops_published": m.flops is not None, "tokens_per_param": m.tokens / m.params}
    if m.params_total is not None:
        row.update({"params_total": m.params_total, "experts": m.experts})
    if inference_tokens:
        row.update({"inference_tokens": inference_tokens, "lifetime_flops": c_judged})
    attach(row, extrapolation(spec.validity, m.params, m.tokens, c), warn=False)
    if not has_loss(spec.params):
        opt = allocate(law, Budget(jnp.asarray(math.log(c))), method=method_for(spec.params))
        k = float(spec.params.ratio)
        ratio = (m.tokens / m.params) / k
        row.update({"optimal_params": math.exp(float(opt.log_n)), "optimal_tokens": math.exp(float(opt.log_d)),
                    "loss": None, "optimal_loss": None, "loss_gap": None, "compute_multiplier": None,
                    "ratio_to_rule": ratio})
        row["verdict"] = ("near-optimal" if 1 / near_ratio <= ratio <= near_ratio
                          else "under-trained" if ratio < 1 else "over-trained")
        return row
    x_opt, d_opt, l_opt, l_model, mult, code = (float(v) for v in _judge(law, log_n, log_d, log_c, log_d_inf,
                                                                          near_multiplier))
    row.update({"optimal_params": math.exp(x_opt), "optimal_tokens": math.exp(d_opt), "loss": l_model,
                "optimal_loss": l_opt, "loss_gap": max(l_model - l_opt, 0.0), "compute_multiplier": mult,
                "ratio_to_rule": None, "verdict": VERDICTS[int(code)]})
    if spec.covariance is not None and isinstance(spec.params, Parametric) and draws:
        chol = np.linalg.cholesky(spec.covariance)
        idx = jnp.arange(draws, dtype=jnp.uint32)
        drawn = draw_law("covariance", law, jnp.asarray(chol), key_words(0), idx, jnp.zeros_like(idx), jnp.float64)
        codes = np.asarray(_judge(drawn, log_n, log_d, log_c, log_d_inf, near_multiplier)[-1])
        row.update({f"p_{v.replace('-', '_')}": float(np.mean(codes == i)) for i, v in enumerate(VERDICTS)})
        row["p_verdict"] = float(np.mean(codes == code))
    return row


def serving_quantisation(m: Model, bits: float) -> dict[str, Any]:
    """What serving ``m`` quantised to ``bits`` costs under the precision law (Kumar et al. 2024,
    eq. 2 and 13): δ_PTQ at its (N, D) and the critical data size beyond which more tokens
    made it worse after quantisation. The law's constants come from 30M-220M-parameter integer
    runs: at frontier scale a reading of the trend (a model trained far past D_crit is fragile)."""
    from ..model.precision import critical_data_size, ptq_degradation

    law = get_preset("kumar2024-precision").params
    log_n, log_d = math.log(m.params), math.log(m.tokens)
    d_crit = float(critical_data_size(law, log_n, bits))
    return {"serve_precision": bits, "ptq_degradation": float(ptq_degradation(law, log_n, log_d, bits)),
            "critical_tokens": d_crit, "past_critical_tokens": m.tokens > d_crit}


def audit_models(models: list[Model], spec: LawSpec, near_multiplier: float = NEAR_MULTIPLIER,
                 near_ratio: float = NEAR_RATIO, inference_tokens: float | None = None,
                 serve_precision: float | None = None) -> list[AuditRow]:
    """One audit row per model under ``spec`` (``audit_model``), the thresholds checked once;
    with ``serve_precision`` (bits) each row also says what post-training quantisation costs."""
    units.require_in(near_multiplier, "near_multiplier", 1.0, what="a compute multiplier")
    units.require_in(near_ratio, "near_ratio", 1.0, what="a ratio")
    if inference_tokens is not None:
        units.require_in(inference_tokens, "inference_tokens", 0.0, what="a number of tokens")
    if serve_precision is not None:
        units.require_in(serve_precision, "serve_precision", 0.0, 64.0, low_open=True, what="bits")
    rows = [audit_model(m, spec, near_multiplier, near_ratio, inference_tokens) for m in models]
    if serve_precision is not None:
        for row, m in zip(rows, models):
            row.update(serving_quantisation(m, serve_precision))
    return rows
