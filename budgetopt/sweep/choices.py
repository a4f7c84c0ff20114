"""A sweep's discrete decision beside the model size: the expert count of a [moe] sweep or the
training format of a [precision] sweep. Each option k turns a sample's (law, budget) into its own
problem, and may scale the loss it reaches:

- [moe] (DESIGN §14): the joint law at E_k (the Chinchilla form it is at a fixed E,
  ``sampling.expert_laws``) and the total-parameter cap turned into the active-parameter cap it
  leaves at E_k (``sampling.active_cap_shift``); no loss scale.
- [precision] (DESIGN §15): the booking's BF16 compute times the format's end-to-end speed-up
  (drawn per sample); the loss times (1 + the format's relative penalty) under the empirical
  penalty (drawn per sample), or the law's A scaled by the precision law's effective-parameter
  factor at the format's bits relative to 16 (``plan.precision_choice.penalised_log_a``) — the
  same problems `optimize --precision auto --gpu` solves for one booking.

``Problems`` holds every option's problem at once: each array leaf has a leading option axis
(size K, or 1 when the options share it) and a trailing sample axis (size S, or 1 when the
samples share it); Python scalars are shared by all.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ..model.allocation import Budget
from ..model.laws import DataConstrained, Law
from .sampling import active_cap_shift
from .scenario import Scenario


class Problems(NamedTuple):
    """Every option's (law, budget) and the factor on the loss it reaches (1: none)."""

    law: Law
    budget: Budget
    loss_scale: Array | float = 1.0


class OptionAxis(NamedTuple):
    """What the options are called: ``key`` (a result row's key: "experts" or "precision"),
    ``labels`` (each option's value there), ``quantity`` (the summarised per-sample choice:
    "experts" or "precision_bits") and ``log_values`` (its log per option)."""

    key: str
    labels: tuple
    quantity: str
    log_values: tuple[float, ...]


def option_axis(scenario: Scenario) -> OptionAxis | None:
    """The scenario's discrete decision, or None for a size-only sweep."""
    if scenario.experts is not None:
        return OptionAxis("experts", tuple(scenario.experts), "experts",
                          tuple(math.log(e) for e in scenario.experts))
    if scenario.precision is not None:
        p = scenario.precision
        return OptionAxis("precision", tuple(p.formats), "precision_bits", tuple(math.log(b) for b in p.bits))
    return None


def _lift(v):
    """A leaf with a leading option axis of size 1 (scalars stay shared)."""
    return v if jnp.ndim(v) == 0 else jnp.asarray(v)[None]


def option_problems(scenario: Scenario, law: Law, b: Budget, option_draw) -> Problems:
    """Every option's problem for the samples of (law, b) (``complete_draw``'s); ``option_draw``:
    the draw's per-format (log speed-up, loss scale) of a [precision] sweep, else None."""
    dt = b.log_c.dtype
    if scenario.experts is not None:  # the law is already stacked per expert count ([K, 1] leaves)
        shift = jnp.asarray(active_cap_shift(scenario), dt)
        b_k = jax.tree_util.tree_map(_lift, b)._replace(log_n_max=b.log_n_max + shift)
        return Problems(law, b_k)
    p = scenario.precision
    log_speedup, scale = option_draw
    b_k = jax.tree_util.tree_map(_lift, b)._replace(log_c=b.log_c + log_speedup)
    law_k = jax.tree_util.tree_map(_lift, law)
    if p.penalty == "law":  # A' = A (F(bits) / F(16))^-alpha: log A' = log A - alpha rel
        rel = jnp.asarray(np.reshape(p.log_factor_rel, (-1, 1)), dt)
        base = law_k.base if isinstance(law_k, DataConstrained) else law_k
        base = base._replace(log_A=base.log_A - base.alpha * rel)
        law_k = law_k._replace(base=base) if isinstance(law_k, DataConstrained) else base
        return Problems(law_k, b_k)
    return Problems(law_k, b_k, scale)


def at_option(problems: Problems, k) -> Problems:
    """Option ``k``'s problem (leaves over the samples; a traced index is fine)."""
    def pick(v):
        if jnp.ndim(v) == 0:
            return v
        v = jnp.asarray(v)
        return v[0] if v.shape[0] == 1 else v[k]

    return jax.tree_util.tree_map(pick, problems)


def subsample_last(tree, stride: int, offset: Array):
    """``kernel.decision_subsample`` for ``Problems``: leaves with a sample axis (last, longer
    than 1) at positions offset, offset + stride, ...; shared leaves unchanged."""
    def take(v):
        if jnp.ndim(v) == 0 or stride == 1 or jnp.shape(v)[-1] == 1:
            return v
        return jnp.take(v.reshape(*v.shape[:-1], -1, stride), offset, axis=-1)

    return jax.tree_util.tree_map(take, tree)
