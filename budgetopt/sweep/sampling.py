"""Sampling a scenario: sample i of a sweep as a pure function of (seed, i).

Every uncertain input is drawn on the device by the counter-based generator of
``distributions`` from the sample's 64-bit global index, given as two uint32 words: results do
not depend on chunk size, device count, shard or resume point.

What is fixed stays a Python constant rather than an array: inputs a scenario does not give
(unique tokens, caps, serving) are ``None`` in the sampled ``Budget`` and a law without
uncertainty is ``None`` in the draw. ``complete_draw`` fills both in as constants, so XLA folds them
and the candidate loop does not evaluate, per sample, corrections that are identically zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, UInt32

from ..core.distributions import Dist, key_words, sample_log, uniform
from ..model.allocation import Budget
from ..model.laws import LAW_STREAM, DataConstrained, Law, LawSpec, Parametric, data_constrained, draw_law
from .scenario import Scenario


class Streams(NamedTuple):
    """Stream ids of the counter-based generator, one per input (the law's five parameters use
    law .. law + 4: ``laws.draw_law``). Part of a sample's definition: never renumber."""

    law: int = LAW_STREAM
    flops: int = 10
    count: int = 11
    hours: int = 12
    mfu: int = 13
    unique_tokens: int = 14
    max_params: int = 15
    max_tokens: int = 16
    max_epochs: int = 17
    inference_tokens: int = 18
    max_total_params: int = 19  # [moe]: the total-parameter cap (``Budget.log_n_max`` holds it, in total parameters)
    # [precision]: the format at index i of data/precision_formats.toml (append-only) draws its
    # speed-up from stream format_speedup + 2 i and its loss penalty from format_speedup + 2 i + 1
    format_speedup: int = 20


STREAM = Streams()


class Draw(NamedTuple):
    """The sampled inputs of a batch: ``law`` (None when the law is fixed) and ``budget``
    (fields a scenario does not give are None). ``complete_draw`` makes them usable. ``time``: (log
    device count, log hours) when the budget is given as hardware, else None. ``option``: a
    [precision] sweep's per-format (log speed-up, loss scale 1 + penalty), each [formats, S]."""

    law: Law | None
    budget: Budget
    time: tuple[Array, Array] | None = None
    option: tuple[Array, Array] | None = None


def index_words(start_lo: UInt32[Array, ""], start_hi: UInt32[Array, ""], j: UInt32[Array, " s"]):
    """Global indices start + j as (lo, hi) uint32 words: a 64-bit counter with carry."""
    lo = start_lo + j
    return lo, start_hi + (lo < start_lo).astype(jnp.uint32)


def sample_indices(start: int, size: int):
    """Global sample indices start .. start + size - 1 as (lo, hi) uint32 words."""
    return index_words(jnp.uint32(start & 0xFFFFFFFF), jnp.uint32(start >> 32), jnp.arange(size, dtype=jnp.uint32))


def fixed_law(scenario: Scenario) -> Law:
    """The scenario's law with Python-float leaves (the data-constrained form when it has
    unique tokens). Under uncertainty its leaves are replaced by draws. A [moe] sweep's joint
    law is the Chinchilla-form law it is at each candidate expert count (``moe.joint_at``),
    stacked: leaves of shape [experts, 1], so every sample is solved at every expert count."""
    p = scenario.law.params
    if scenario.experts is not None:
        return expert_laws(scenario)
    if scenario.unique_tokens is None:
        return p
    return data_constrained(p)


def expert_laws(scenario: Scenario) -> Parametric:
    """The joint MoE law at each of the scenario's expert counts, leaves [experts, 1] (NumPy
    float64 constants)."""
    import jax

    from ..core.runtime import jax_x64
    from ..model.moe import joint_at

    with jax_x64(), jax.ensure_compile_time_eval():  # constants, also when called inside a trace
        law = joint_at(scenario.law.params, jnp.asarray(scenario.experts, jnp.float64))
        return Parametric(*(np.asarray(v, np.float64).reshape(-1, 1) for v in law))


def active_cap(scenario: Scenario, log_total_max):
    """[experts, ...]: the log active parameters a total-parameter cap (log, broadcast against
    the expert counts) leaves at each expert count beside the KV cache of ``moe.kv_tokens`` —
    eq. 9/10 on the paper's shape, as `optimize` (``model.moe.joint_log_active_cap``)."""
    from ..model.moe import joint_log_active_cap, joint_shape

    e = jnp.asarray(np.asarray(scenario.experts, np.float64).reshape(-1, 1), jnp.result_type(log_total_max, 1.0))
    return joint_log_active_cap(log_total_max, e, joint_shape(), scenario.kv_tokens)


def complete_draw(scenario: Scenario, draw: Draw) -> tuple[Law, Budget]:
    """(law, budget) with the fixed law and the absent budget fields filled in as constants."""
    law = fixed_law(scenario)
    if draw.law is not None:
        law = DataConstrained(draw.law, law.rd_star, law.rn_star) if isinstance(law, DataConstrained) else draw.law
    b = draw.budget
    if scenario.experts is not None:  # the stacked laws in the sweep's precision
        law = Parametric(*(jnp.asarray(v, b.log_c.dtype) for v in law))
    defaults = Budget._field_defaults
    return law, b._replace(**{k: defaults[k] for k, v in b._asdict().items() if v is None})


def law_sampler(law: LawSpec, uncertainty: str, dtype) -> Callable:
    """(key, idx_lo, idx_hi) -> a parametric law with leaves of shape idx_lo.shape drawn from
    ``law``'s covariance (``uncertainty`` "covariance") or bootstrap draws ("bootstrap"), or
    None for a fixed law ("none"): ``laws.draw_law`` with the prior as Python constants, which
    XLA folds into the program."""
    if uncertainty == "covariance":
        spread = [[float(c) for c in row] for row in np.linalg.cholesky(law.covariance)]
        mean = [float(v) for v in law.params]
    elif uncertainty == "bootstrap":
        spread, mean = jnp.asarray(law.draws, dtype), None
    else:
        spread = mean = None

    def draw(key, lo, hi):
        theta = draw_law(uncertainty, mean, spread, key, lo, hi, dtype)
        return None if theta is None else Parametric(*[t.astype(dtype) for t in theta])

    return draw


def _field(d: Dist | None, key, lo, hi, stream: int, dtype, domain=(-math.inf, math.inf)) -> Float[Array, " s"] | None:
    """log of a scenario input for each index (None when the scenario does not give it)."""
    if d is None:
        return None
    u = uniform(key, lo, hi, stream, dtype) if not d.fixed else jnp.full(lo.shape, 0.5, dtype)
    return sample_log(d, u, *domain)


def _log_count(d: Dist, key, lo, hi, dtype) -> Float[Array, " s"]:
    """log of the device count: a drawn count is rounded to whole devices (at least one); a
    fixed count is whole by validation and is used as given."""
    log_count = _field(d, key, lo, hi, STREAM.count, dtype)
    if d.fixed:
        return log_count
    return jnp.log(jnp.maximum(jnp.round(jnp.exp(log_count)), 1.0)).astype(dtype)


def make_sampler(scenario: Scenario, dtype) -> Callable[..., Draw]:
    """(idx_lo, idx_hi) uint32 arrays -> the Draw of those global sample indices."""
    key = key_words(scenario.seed)
    law_draw = law_sampler(scenario.law, scenario.uncertainty, dtype)

    def sample(lo, hi) -> Draw:
        time = None
        if scenario.flops is not None:
            log_c = _field(scenario.flops, key, lo, hi, STREAM.flops, dtype)
        else:  # C = count x peak FLOP/s x 3600 s/h x hours x MFU, in logs
            peak = math.log(scenario.accelerator.peak_flops(scenario.dtype)) + math.log(3600.0)
            time = (_log_count(scenario.count, key, lo, hi, dtype),
                    _field(scenario.hours, key, lo, hi, STREAM.hours, dtype))
            log_c = time[0] + time[1] + _field(scenario.mfu, key, lo, hi, STREAM.mfu, dtype, (-math.inf, 0.0)) + peak
        log_u = _field(scenario.unique_tokens, key, lo, hi, STREAM.unique_tokens, dtype)
        log_d_max = _field(scenario.max_tokens, key, lo, hi, STREAM.max_tokens, dtype)
        if scenario.max_epochs is not None:
            log_epochs_cap = _field(scenario.max_epochs, key, lo, hi, STREAM.max_epochs, dtype) + log_u
            log_d_max = log_epochs_cap if log_d_max is None else jnp.minimum(log_d_max, log_epochs_cap)
        log_n_max = (_field(scenario.max_params, key, lo, hi, STREAM.max_params, dtype) if scenario.experts is None
                     else _field(scenario.max_total_params, key, lo, hi, STREAM.max_total_params, dtype))
        return Draw(law_draw(key, lo, hi),
                    Budget(log_c, log_u, log_n_max, log_d_max,
                           _field(scenario.inference_tokens, key, lo, hi, STREAM.inference_tokens, dtype)), time,
                    None if scenario.precision is None else _format_draws(scenario, key, lo, hi, dtype))

    return sample


def _format_draws(scenario: Scenario, key, lo, hi, dtype) -> tuple[Array, Array]:
    """A [precision] sweep's (log speed-up, 1 + relative loss penalty) per format: [formats, S]."""
    p = scenario.precision
    log_speedup = jnp.stack([_field(d, key, lo, hi, STREAM.format_speedup + 2 * i, dtype)
                             for d, i in zip(p.speedup, p.speedup_index)])
    scale = jnp.stack([1.0 + jnp.exp(_field(d, key, lo, hi, STREAM.format_speedup + 2 * i + 1, dtype))
                       for d, i in zip(p.loss_penalty, p.catalog_index)])
    return log_speedup, scale.astype(dtype)
