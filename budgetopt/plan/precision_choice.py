"""`budgetopt optimize --precision`: in what precision to train (DESIGN §15).

- Under the precision law (``kumar2024-precision``): the compute-optimal training precision of a
  budget under the paper's cost model (compute ∝ N·D·P; the budget is BF16-equivalent FLOPs), or
  the optimum at a given number of bits (``model/precision.py``).
- Under a dense law with a device (``--gpu``): the discrete choice among the floating-point
  formats the device has (bf16, fp8, fp4 = NVFP4, mxfp4; ``data/precision_formats.toml``). Each format buys the
  BF16 compute of the booking times its end-to-end speed-up (sourced defaults, overridable; never
  the peak ratio) and costs a loss penalty: ``empirical`` (default: the published bounds, a
  relative loss over BF16, and for MXFP4 a token factor: the 1.36x tokens it needs to match
  NVFP4) or ``law`` (the precision law's effective-parameter factor at the
  format's bits, relative to 16 bits, applied to the dense law's A). The best format is the one
  with the least loss.

Units: N parameters, D tokens, C FLOPs, P bits, loss in nats per token.
"""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp

from ..core.errors import ParameterError
from ..core.files import data_toml
from ..core.units import require_in
from ..model.hardware import Cluster, ClusterRecord
from ..model.laws import KumarPrecision, LawSpec, Parametric, get_preset
from ..model.precision import (
    PRECISION_FORMS,
    REFERENCE_BITS,
    log_factor,
    optimal_precision,
    optimum_at,
    penalised_law,
)
from ..model.validity import attach, extrapolation
from .optimum import Constraints, optimize

PENALTIES = ("empirical", "law")


class PrecisionAnswer(ClusterRecord, total=False):
    """`budgetopt optimize --precision -f json`: under the precision law (``optimize_precision``)
    the bits, form and cost model; under a dense law on a device (``choose_format``) the chosen
    ``precision`` and every format's row in ``precisions`` with the sources of its speed-up and
    penalty; both the allocation (params, tokens, loss, flops) and the hardware keys."""

    law: str
    precision: str
    precision_bits: float
    precision_form: str
    precision_penalty: str
    precisions: list[dict[str, Any]]
    speedup_sources: dict[str, str]
    penalty_sources: dict[str, str]
    flops: float
    params: float
    tokens: float
    tokens_per_param: float
    loss: float
    effective_params_fraction: float
    serve_precision: float
    ptq_degradation: float
    loss_before_quantisation: float
    critical_tokens: float
    inference_tokens: float
    converged: bool
    at_bound: bool
    cost_model: str
    warnings: list[str]
    extrapolation: dict[str, Any]


def formats() -> dict[str, dict]:
    """The floating-point training formats (``data/precision_formats.toml``)."""
    return data_toml("precision_formats.toml")


def check_form(form: str) -> str:
    if form not in PRECISION_FORMS:
        raise ParameterError("precision_form", f"unknown {form!r}; allowed: {', '.join(PRECISION_FORMS)}")
    return form


def parse_bits(text: str | None) -> float | str | None:
    """``--precision``: auto, a format name, or a number of bits > 0."""
    if text is None or text == "auto" or text in formats():
        return text
    try:
        bits = float(text)
    except ValueError:
        raise ParameterError("precision", f"must be auto, a format ({', '.join(formats())}) or a number of bits, "
                             f"got {text!r}") from None
    return require_in(bits, "precision", 0.0, 64.0, low_open=True, what="bits")


#: what a plan in a low-precision format keeps in memory (the convention `plan --precision` states)
MEMORY_CONVENTION = ("weights, gradients and Adam states counted as BF16 mixed precision (2 + 2 + 12 bytes per "
                     "parameter): FP8 training keeps master weights, weight gradients and optimizer states in higher "
                     "precision (DeepSeek-V3 Technical Report, arXiv 2412.19437, section 3.3); activations cached in "
                     "FP8 are not credited (conservative)")


def given_speedups(fp8: float | None = None, fp4: float | None = None) -> dict[str, float]:
    """The speed-ups a user gave (``--fp8-speedup``, ``--fp4-speedup``), by format."""
    return {k: v for k, v in (("fp8", fp8), ("fp4", fp4)) if v is not None}


def check_speedups(speedups: dict[str, float] | None) -> dict[str, float]:
    """Every given speed-up a positive number (named by its flag)."""
    for name, v in (speedups or {}).items():
        require_in(v, f"{name}_speedup", 0.0, low_open=True, what="a speed-up over BF16")
    return speedups or {}


def device_formats(cluster: Cluster) -> list[str]:
    """The formats ``cluster``'s device has a catalog peak for."""
    return [f for f, e in formats().items() if e["catalog_dtype"] in cluster.accelerator.peak_tflops]


def training_format(name: str, cluster: Cluster | None = None, speedups: dict[str, float] | None = None) -> dict:
    """A floating-point training format: its bits, end-to-end speed-up over BF16 (``speedups``
    override the sourced default), empirical loss penalty and sources; refused when
    ``cluster``'s device lacks it."""
    table = formats()
    if name not in table:
        raise ParameterError("precision", f"unknown format {name!r}; allowed: {', '.join(table)}")
    if cluster is not None and name not in device_formats(cluster):
        raise ParameterError("precision", f"{cluster.accelerator.id} has no {name} (its formats: "
                             f"{', '.join(device_formats(cluster))})")
    e = table[name]
    speed_of = e.get("speedup_of", name)  # mxfp4 runs at fp4's speed
    given = check_speedups(speedups).get(speed_of)
    speedup = given if given is not None else table[speed_of]["speedup"]
    return {"format": name, "bits": e["bits"], "speedup": float(speedup), "speedup_of": speed_of,
            "speedup_given": given is not None, "loss_penalty_relative": e["loss_penalty"],
            "token_factor": float(e.get("token_factor", 1.0)),
            "speedup_source": e.get("speedup_source", table[speed_of].get("speedup_source", e["source"])),
            "penalty_source": e["source"],
            "memory": MEMORY_CONVENTION}


def bits_of(bits: float | str) -> float:
    """A number of bits, or a format's (``--precision fp8``: 8)."""
    return float(formats()[bits]["bits"]) if isinstance(bits, str) else float(bits)


def optimize_precision(spec: LawSpec, *, flops: float | None = None, cluster: Cluster | None = None,
                       bits: float | str = "auto", form: str = "offset", serve_bits: float | None = None,
                       inference_tokens: float | None = None) -> PrecisionAnswer:
    """Under the precision law: the compute-optimal training precision of a BF16-equivalent
    budget (``bits`` "auto"), or the optimum trained in ``bits`` (a number, or a format's bits).
    With ``serve_bits``: the model minimising the loss after post-training quantisation to that
    precision (δ_PTQ in the objective), under a lifetime budget that also serves
    ``inference_tokens`` in ``serve_bits`` (``precision.serving_optimum``)."""
    law = spec.params
    if not isinstance(law, KumarPrecision):
        raise ParameterError("law", f"{spec.name} is not the precision law")
    check_form(form)
    if (flops is None) == (cluster is None or cluster.hours is None):
        raise ParameterError("flops", "give one budget: {flops}, or a booking ({gpu}, {count}, {days})", names=True)
    c = flops if flops is not None else cluster.flops()
    log_c = jnp.log(jnp.float64(c))
    if inference_tokens is not None and serve_bits is None:
        raise ParameterError("inference_tokens", "with the precision law, serving needs its precision: give "
                             "{serve_precision}", names=True)
    if serve_bits is not None:
        return _serving_answer(spec, c, bits, form, serve_bits, inference_tokens, cluster)
    o = optimal_precision(law, log_c, form) if bits == "auto" else optimum_at(law, log_c, bits_of(bits), form)
    p, log_n, log_d, loss = float(o.bits), float(o.log_n), float(o.log_d), float(o.loss)
    converged, at_bound = bool(o.converged), bool(o.at_bound)
    rec = {"law": spec.name, "precision_form": form, "flops": c, "precision_bits": p, "params": math.exp(log_n),
           "tokens": math.exp(log_d), "tokens_per_param": math.exp(log_d - log_n), "loss": loss,
           "effective_params_fraction": math.exp(float(log_factor(law, p, p, p, form))),
           "converged": converged, "at_bound": at_bound,
           "cost_model": f"compute = 6 N D P / {REFERENCE_BITS:g} (the paper's compute proportional to N D P; a "
                         "16-bit run costs 6ND)", "warnings": []}
    if at_bound:
        rec["warnings"].append("the best precision is at the end of the searched 1-32 bits")
    attach(rec, extrapolation(spec.validity, rec["params"], rec["tokens"], c))
    if cluster is not None:
        rec.update({k: v for k, v in cluster.describe(c).items() if k not in rec})
    return rec


def _serving_answer(spec: LawSpec, c: float, bits: float | str, form: str, serve_bits: float,
                    inference_tokens: float | None, cluster: Cluster | None) -> PrecisionAnswer:
    """``optimize_precision``'s answer for a model served in ``serve_bits``."""
    from ..model.precision import critical_data_size, serving_optimum

    law = spec.params
    require_in(serve_bits, "serve_precision", 0.0, 64.0, low_open=True, what="bits")
    if inference_tokens is not None:
        require_in(inference_tokens, "inference_tokens", 0.0, low_open=True, what="a number of tokens")
    fixed = None if bits == "auto" else bits_of(bits)
    log_d_inf = -math.inf if inference_tokens is None else math.log(inference_tokens)
    o = serving_optimum(law, jnp.log(jnp.float64(c)), form, float(serve_bits), log_d_inf, fixed)
    p, log_n, log_d = float(o.bits), float(o.log_n), float(o.log_d)
    rec = {"law": spec.name, "precision_form": form, "flops": c, "precision_bits": p, "serve_precision": serve_bits,
           "params": math.exp(log_n), "tokens": math.exp(log_d), "tokens_per_param": math.exp(log_d - log_n),
           "loss": float(o.loss), "ptq_degradation": float(o.ptq), "loss_before_quantisation": float(o.loss - o.ptq),
           "critical_tokens": float(critical_data_size(law, log_n, serve_bits)),
           "effective_params_fraction": math.exp(float(log_factor(law, p, p, p, form))),
           "converged": bool(o.converged), "at_bound": bool(o.at_bound),
           "cost_model": f"lifetime compute = (6 N D P + 2 N D_inference P_serve) / {REFERENCE_BITS:g} (the paper's "
                         "compute proportional to N D P, serving in its own precision)", "warnings": []}
    if inference_tokens is not None:
        rec["inference_tokens"] = inference_tokens
    if bool(o.at_bound):
        rec["warnings"].append("the answer is at the end of a searched range (1-32 bits, or the sizes the budget "
                               "allows)")
    attach(rec, extrapolation(spec.validity, rec["params"], rec["tokens"], c))
    if cluster is not None:
        rec.update({k: v for k, v in cluster.describe(c).items() if k not in rec})
    return rec


def relative_log_factor(bits: float, form: str) -> float:
    """log(F(bits) / F(16)): the precision law's (``kumar2024-precision``) effective-parameter
    factor at ``bits`` relative to 16 bits; a dense law penalised by it has A' = A e^(−alpha rel)
    (``precision.penalised_law``)."""
    law = get_preset("kumar2024-precision").params
    ref = REFERENCE_BITS
    return float(log_factor(law, bits, bits, bits, form) - log_factor(law, ref, ref, ref, form))


def choose_format(spec: LawSpec, cluster: Cluster, *, precision: str = "auto", penalty: str = "empirical",
                  speedups: dict[str, float] | None = None, form: str = "offset",
                  constraints: Constraints | None = None, price_per_hour: float | None = None) -> PrecisionAnswer:
    """Under a dense law on ``cluster`` (booked in BF16): every floating-point format the device
    has (or the one named), the compute it buys, its allocation and loss with its penalty; the
    best (least loss) chosen. ``speedups`` override the formats' end-to-end speed-ups."""
    if not isinstance(spec.params, Parametric):
        raise ParameterError("law", f"--precision compares formats under a parametric law; {spec.name} is "
                             f"{spec.kind}")
    if cluster.dtype != "bf16":
        raise ParameterError("dtype", "sets one format; --precision compares formats: book the device in bf16 (the "
                             "reference the speed-ups are measured against)")
    if penalty not in PENALTIES:
        raise ParameterError("precision_penalty", f"unknown {penalty!r}; allowed: {', '.join(PENALTIES)}")
    check_form(form)
    check_speedups(speedups)
    if precision != "auto" and precision not in formats():
        raise ParameterError("precision", f"with a dense law, one of auto, {', '.join(formats())}; bits apply to the "
                             "precision law (kumar2024-precision)")
    asked = [training_format(f, cluster, speedups) for f in (device_formats(cluster) if precision == "auto"
                                                               else [precision])]
    constraints = constraints if constraints is not None else Constraints()
    bf16 = cluster.flops()  # the booking's compute in BF16 at its MFU
    rows = []
    for e in asked:
        c = bf16 * e["speedup"]
        base = optimize(spec, flops=c, constraints=constraints)  # the same compute without a penalty
        rel = relative_log_factor(e["bits"], form) if penalty == "law" else 0.0
        log_tokens = math.log(e["token_factor"]) if penalty == "empirical" else 0.0
        opt = base if rel == 0.0 and log_tokens == 0.0 else optimize(
            LawSpec(spec.name, penalised_law(spec.params, rel, log_tokens), spec.source, validity=spec.validity),
            flops=c, constraints=constraints)
        loss = opt["loss"] * (1.0 + e["loss_penalty_relative"]) if penalty == "empirical" else opt["loss"]
        rows.append({"format": e["format"], "bits": e["bits"], "speedup": e["speedup"],
                     "speedup_given": e["speedup_given"], "flops": c, "params": opt["params"], "tokens": opt["tokens"],
                     "loss": loss, "loss_penalty": loss - base["loss"], "converged": opt["converged"],
                     **({"token_factor": e["token_factor"]} if penalty == "empirical" and e["token_factor"] != 1.0
                        else {})})
    best = min(rows, key=lambda r: r["loss"])
    rec = {"law": spec.name, "precision": best["format"], "precision_bits": best["bits"],
           "precision_penalty": penalty, **{k: best[k] for k in ("flops", "params", "tokens", "loss", "converged")},
           "tokens_per_param": best["tokens"] / best["params"], "precisions": rows,
           "speedup_sources": {e["format"]: e["speedup_source"] for e in asked},
           "penalty_sources": {e["format"]: (e["penalty_source"] if penalty == "empirical" else
                                             f"kumar2024-precision ({form} form) effective parameters at {e['bits']} "
                                             "bits relative to 16") for e in asked}, "warnings": []}
    if penalty == "law":
        rec["warnings"].append("the precision law was fitted on integer fake-quantised training of 30M-220M "
                               "parameters: it over-states floating-point formats' cost (FP8 within 0.25 % in "
                               "DeepSeek-V3); --precision-penalty empirical uses the published bounds")
    attach(rec, extrapolation(spec.validity, best["params"], best["tokens"], best["flops"]))
    rec.update({k: v for k, v in cluster.describe(bf16, price_per_hour).items() if k not in rec})
    return rec
