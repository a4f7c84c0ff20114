"""A sweep's discrete decision beside the model size: the expert count of a [moe] sweep or the
training format of a [precision] sweep. Each option k turns a sample's (law, budget) into its own
problem, and may scale the loss it reaches:

- [moe] (DESIGN §14): the joint law at E_k (the Chinchilla form it is at a fixed E,
  ``sampling.expert_laws``) and the total-parameter cap turned into the active-parameter cap it
  leaves at E_k (``sampling.active_cap``); no loss scale.
- [precision] (DESIGN §15): the booking's BF16 compute times the format's end-to-end speed-up
  (drawn per sample); under the empirical penalty the loss times (1 + the format's relative
  penalty, drawn per sample) and the law's B times its token factor^beta (MXFP4's 1.36x tokens);
  under the law penalty the law's A times the precision law's effective-parameter factor at the
  format's bits relative to 16, ^-alpha (both ``model.precision.penalised_law``) — the
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
from jaxtyping import Array, Int

from ..model.allocation import Allocation, Budget
from ..model.laws import DataConstrained, Law
from ..model.precision import penalised_law
from .sampling import active_cap
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
        b_k = jax.tree_util.tree_map(_lift, b)._replace(log_n_max=active_cap(scenario, b.log_n_max).astype(dt))
        return Problems(law, b_k)
    p = scenario.precision
    log_speedup, scale = option_draw
    b_k = jax.tree_util.tree_map(_lift, b)._replace(log_c=b.log_c + log_speedup)
    law_k = jax.tree_util.tree_map(_lift, law)
    rel = p.log_factor_rel if p.penalty == "law" else ()  # per format, [formats, 1]; 0 where none
    if any(rel) or any(p.log_token_factor):  # else every format has the dense law: leave it shared
        column = lambda v: jnp.asarray(np.reshape(v, (-1, 1)), dt) if any(v) else 0.0  # noqa: E731
        base = penalised_law(law_k.base if isinstance(law_k, DataConstrained) else law_k, column(rel),
                             column(p.log_token_factor))
        law_k = law_k._replace(base=base) if isinstance(law_k, DataConstrained) else base
    return Problems(law_k, b_k, scale if p.penalty == "empirical" else 1.0)


def at_option(problems: Problems, k) -> Problems:
    """Option ``k``'s problem (leaves over the samples; a traced index is fine)."""
    def pick(v):
        if jnp.ndim(v) == 0:
            return v
        v = jnp.asarray(v)
        return v[0] if v.shape[0] == 1 else v[k]

    return jax.tree_util.tree_map(pick, problems)


def best_option(a: Allocation) -> tuple[Allocation, Int[Array, " s"]]:
    """Per sample, the option with the lowest converged loss: (its allocation, its index)."""
    # the barrier keeps XLA from constant-folding the argmin when every input is fixed (seconds at 65536 samples)
    score = jax.lax.optimization_barrier(jnp.where(a.converged & jnp.isfinite(a.loss), a.loss, jnp.inf))
    k = jnp.argmin(score, axis=0)
    pick = lambda v: jnp.take_along_axis(jnp.broadcast_to(v, score.shape), k[None], axis=0)[0]  # noqa: E731
    return Allocation(*(pick(v) for v in a)), k


def choose(axis, per: Allocation, p: Problems) -> tuple[Allocation, tuple[Array, Array]]:
    """From every option's optimum ``per`` (``solve_options`` of ``p``): each sample's best
    option's allocation, and (its index, log of the compute it trains on)."""
    a, k = best_option(per)
    log_c = jnp.broadcast_to(p.budget.log_c, (len(axis.labels),) + a.log_n.shape)
    return a, (k, jnp.take_along_axis(log_c, k[None], axis=0)[0])


def chosen_values(axis, chosen: tuple[Array, Array], dtype) -> tuple[Array, Array]:
    """``choose``'s (index, log compute) as ``quantities`` summarises them: (log of the chosen
    option's value, log compute)."""
    return jnp.asarray(axis.log_values, dtype)[chosen[0]], chosen[1]
