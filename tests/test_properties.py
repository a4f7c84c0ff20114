"""Properties of the allocation over budgets 1e12-1e30 FLOPs and law parameters across the
plausible range (hypothesis): finite everywhere, loss falls and N*, D* grow with compute,
6 N* D* = C (or C minus what caps leave unused), float32 = float64 in N to 1e-3, and the
data-constrained loss never beats the base law.

The oracle is independent of the solver where one exists: the parametric closed form
(N* = G (C/6)^(beta/(alpha+beta)), computed here in NumPy float64), otherwise properties any
correct optimum must satisfy. Each example is a batch of sorted budgets, so one compile serves
every example of a test."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from budgetopt.model.allocation import Budget, allocate
from budgetopt.model.laws import DataConstrained, Kaplan, Parametric, data_constrained_constants

N_BUDGETS = 8
RD, RN, _ = data_constrained_constants()

# Published fits span E 1.69-1.82, A 406-482 (besiroglu), B 410-2085, alpha 0.34-0.35,
# beta 0.28-0.37; the ranges below are several times wider in every direction.
laws = st.builds(
    lambda E, A, B, alpha, beta: (E, A, B, alpha, beta),
    E=st.floats(0.5, 4.0), A=st.floats(10.0, 1e5), B=st.floats(10.0, 1e5),
    alpha=st.floats(0.1, 0.9), beta=st.floats(0.1, 0.9))
budgets = st.lists(st.floats(12.0, 30.0), min_size=N_BUDGETS, max_size=N_BUDGETS).map(sorted)


def parametric(p, dtype=jnp.float64) -> Parametric:
    E, A, B, alpha, beta = p
    f = lambda v: jnp.asarray(v, dtype)  # noqa: E731
    return Parametric(f(math.log(A)), f(math.log(B)), f(math.log(E)), f(alpha), f(beta))


def log_c(log10c, dtype=jnp.float64):
    return jnp.asarray(np.array(log10c) * math.log(10.0), dtype)


def closed_form_n(p, log10c) -> np.ndarray:
    """N* of L = E + A/N^a + B/D^b under 6ND = C, in plain NumPy float64 (Hoffmann eq. 4)."""
    E, A, B, a, b = p
    G = (a * A / (b * B)) ** (1.0 / (a + b))
    return G * (10.0 ** np.array(log10c) / 6.0) ** (b / (a + b))


def plausible(p, log10c) -> None:
    """Skip laws whose optimum at the smallest budget is under 1000 parameters or tokens: the
    N >= 1, D >= 1 bounds would bind and the unconstrained closed form would not apply."""
    n = closed_form_n(p, log10c[:1])[0]
    assume(n >= 1e3 and 10.0 ** log10c[0] / (6 * n) >= 1e3)


def assert_finite(alloc):
    for name, v in alloc._asdict().items():
        assert np.all(np.isfinite(np.asarray(v))), (name, v)
    assert bool(jnp.all(alloc.converged))


def assert_monotone(alloc, rtol=1e-9):
    n, d, loss = (np.exp(np.asarray(alloc.log_n)), np.exp(np.asarray(alloc.log_d)), np.asarray(alloc.loss))
    assert np.all(np.diff(loss) <= rtol * loss[1:]), loss
    assert np.all(np.diff(n) >= -rtol * n[1:]), n
    assert np.all(np.diff(d) >= -rtol * d[1:]), d


def assert_spends_budget(alloc, log10c, rtol=1e-6):
    c = 10.0 ** np.array(log10c)
    spent = 6.0 * np.exp(np.asarray(alloc.log_n, np.float64) + np.asarray(alloc.log_d, np.float64))
    np.testing.assert_allclose(spent, c, rtol=rtol)
    np.testing.assert_allclose(np.exp(np.asarray(alloc.log_c_used, np.float64)), c, rtol=rtol)


def test_an_unservable_budget_is_not_reported_converged():
    law = parametric((1.69, 406.4, 410.7, 0.34, 0.28))
    a = allocate(law, Budget(log_c([12.0]), log_d_inf=jnp.asarray([math.log(1e12)], jnp.float64)))
    assert not bool(a.converged[0])


@pytest.mark.parametrize("method,rtol", [("solve", 1e-6), ("closed", 1e-9)])
@given(p=laws, log10c=budgets)
def test_parametric_optimum_is_finite_monotone_spends_the_budget_and_matches_numpy(method, rtol, p, log10c):
    plausible(p, log10c)
    a = allocate(parametric(p), Budget(log_c(log10c)), method=method)
    assert_finite(a)
    assert_monotone(a)
    assert_spends_budget(a, log10c)
    np.testing.assert_allclose(np.exp(np.asarray(a.log_n)), closed_form_n(p, log10c), rtol=rtol)


@given(laws, budgets)
def test_float32_agrees_with_float64_in_n(p, log10c):
    plausible(p, log10c)
    a32 = allocate(parametric(p, jnp.float32), Budget(log_c(log10c, jnp.float32)), method="solve")
    assert a32.log_n.dtype == jnp.float32
    assert_finite(a32)
    np.testing.assert_allclose(np.exp(np.asarray(a32.log_n, np.float64)), closed_form_n(p, log10c), rtol=1e-3)


@given(laws, budgets, st.floats(8.0, 14.0))
def test_data_constrained_never_beats_the_base_law(p, log10c, log10u):
    plausible(p, log10c)
    base = parametric(p)
    dc = DataConstrained(base, jnp.asarray(RD, jnp.float64), jnp.asarray(RN, jnp.float64))
    b = Budget(log_c(log10c), log_u=jnp.asarray(log10u * math.log(10.0), jnp.float64))
    a = allocate(dc, b, method="solve")
    assert_finite(a)
    assert_spends_budget(a, log10c)
    loss = np.asarray(a.loss)
    assert np.all(np.diff(loss) <= 1e-9 * loss[1:]), loss  # more compute never hurts
    free = np.asarray(allocate(base, Budget(log_c(log10c)), method="closed").loss)
    assert np.all(loss >= free * (1 - 1e-12)), (loss, free)
    a32 = allocate(jax_tree_f32(dc),
                   Budget(log_c(log10c, jnp.float32), log_u=jnp.asarray(log10u * math.log(10.0), jnp.float32)))
    assert_finite(a32)
    # float32 finds the same loss; N itself is not identifiable where the loss is flat
    np.testing.assert_allclose(np.asarray(a32.loss, np.float64), loss, rtol=1e-5)


@given(laws, budgets, st.floats(6.0, 14.0))
def test_caps_leave_compute_unused_never_overspent(p, log10c, log10cap):
    plausible(p, log10c)
    cap = jnp.asarray(log10cap * math.log(10.0), jnp.float64)
    a = allocate(parametric(p), Budget(log_c(log10c), log_n_max=cap, log_d_max=cap + 2.0), method="solve")
    assert_finite(a)
    n, d = np.exp(np.asarray(a.log_n)), np.exp(np.asarray(a.log_d))
    assert np.all(n <= 10.0 ** log10cap * (1 + 1e-9))
    assert np.all(d <= 10.0 ** (log10cap + 2 / math.log(10)) * (1 + 1e-9))
    used = np.exp(np.asarray(a.log_c_used))
    np.testing.assert_allclose(6.0 * n * d, used, rtol=1e-6)
    assert np.all(used <= 10.0 ** np.array(log10c) * (1 + 1e-9))
    assert_monotone(a)


@given(laws, budgets, st.floats(6.0, 16.0))
def test_inference_tokens_spend_the_lifetime_budget(p, log10c, log10inf):
    plausible(p, log10c)
    d_inf = 10.0 ** log10inf
    assume(2 * 1e3 * d_inf < 10.0 ** log10c[0])  # a 1000-parameter model can at least be served
    b = Budget(log_c(log10c), log_d_inf=jnp.asarray(math.log(d_inf), jnp.float64))
    a = allocate(parametric(p), b, method="solve")
    assert_finite(a)
    n, d = np.exp(np.asarray(a.log_n)), np.exp(np.asarray(a.log_d))
    np.testing.assert_allclose(6 * n * d + 2 * n * d_inf, 10.0 ** np.array(log10c), rtol=1e-6)
    # serving costs push toward a smaller model than the training-only optimum
    assert np.all(n <= closed_form_n(p, log10c) * (1 + 1e-6))
    loss = np.asarray(a.loss)
    assert np.all(np.diff(loss) <= 1e-9 * loss[1:])


@given(st.floats(0.05, 0.12), st.floats(0.05, 0.12), st.floats(28.0, 34.0), st.floats(28.0, 34.0), budgets)
def test_kaplan_is_finite_monotone_and_spends_the_budget(a_n, a_d, log_nc, log_dc, log10c):
    law = Kaplan(*(jnp.asarray(v, jnp.float64) for v in (log_nc, log_dc, a_n, a_d)))
    a = allocate(law, Budget(log_c(log10c)), method="solve")
    assert_finite(a)
    assert_monotone(a)
    assert_spends_budget(a, log10c)
    # analytic: N* ∝ C^(a_D/(a_N+a_D)) along 6ND = C
    k = a_d / (a_n + a_d)
    n = np.exp(np.asarray(a.log_n))
    np.testing.assert_allclose(np.log(n[1:] / n[:-1]), k * np.log(10.0) * np.diff(log10c), atol=1e-7)


def jax_tree_f32(law):
    import jax

    return jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float32), law)
