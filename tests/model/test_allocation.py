import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from budgetopt.model.allocation import Budget, allocate, compute_for_loss, log_compute_for_loss, optimal_loss
from budgetopt.model.laws import DataConstrained, Parametric, data_constrained_constants, get_preset, to_array_law

from .. import reference as ref

PARAMETRIC = ["hoffmann2022", "besiroglu2024", "muennighoff2023"]


def law64(name):
    return to_array_law(get_preset(name).params, jnp.float64)


def dc_law(dtype=jnp.float64):
    rd, rn, _ = data_constrained_constants()
    return to_array_law(DataConstrained(get_preset("muennighoff2023").params, rd, rn), dtype)


def natural(p):
    return (math.exp(float(p.log_E)), math.exp(float(p.log_A)), math.exp(float(p.log_B)), float(p.alpha), float(p.beta))


# ---------------------------------------------------------------------------------------------
# Duals


@pytest.mark.parametrize("name", PARAMETRIC)
def test_closed_form_dual_inverts_primal(name):
    law = law64(name)
    log_c = jnp.log(jnp.logspace(18, 27, 19))
    target = optimal_loss(law, log_c)
    back = log_compute_for_loss(law, target)
    np.testing.assert_allclose(np.exp(np.asarray(back - log_c)), 1.0, rtol=1e-9, atol=0)
    # and the loss at the closed-form allocation is the closed-form optimal loss
    a = allocate(law, Budget(log_c), method="closed")
    np.testing.assert_allclose(np.asarray(a.loss), np.asarray(target), rtol=1e-13)


def test_bisection_dual_matches_closed_form_dual():
    law = law64("besiroglu2024")
    targets = jnp.array([3.0, 2.5, 2.2, 2.0, 1.95, 1.9])
    want = log_compute_for_loss(law, targets)
    got = compute_for_loss(law, targets, Budget(0.0), method="solve")
    assert bool(jnp.all(got.converged)) and bool(jnp.all(got.reachable))
    np.testing.assert_allclose(np.exp(np.asarray(got.log_c - want)), 1.0, rtol=1e-9, atol=0)
    np.testing.assert_allclose(np.asarray(got.allocation.loss), np.asarray(targets), rtol=1e-10)


def test_dual_under_data_constraint_inverts_primal_and_reports_unreachable():
    law = dc_law()
    b = Budget(0.0, log_u=jnp.log(1e11))
    for target in (2.3, 2.2, 2.15):
        res = compute_for_loss(law, target, b)
        assert bool(res.reachable) and bool(res.converged)
        primal = allocate(law, b._replace(log_c=res.log_c))
        assert float(primal.loss) == pytest.approx(target, rel=1e-9)
    # with 1e11 unique tokens the loss cannot go below E + B / (U (1 + R_D*))^beta
    E, A, B, a, b_ = natural(law.base)
    floor = E + B / (1e11 * (1 + 15.387756)) ** b_
    assert not bool(compute_for_loss(law, floor * 0.999, b).reachable)


# ---------------------------------------------------------------------------------------------
# Numerical solver vs closed form


def besiroglu_draws(n, seed=0):
    """Law parameters within +-3 sigma of the besiroglu2024 covariance (whitened z clipped)."""
    spec = get_preset("besiroglu2024")
    mean = np.array([float(v) for v in spec.params])
    chol = np.linalg.cholesky(spec.covariance)
    z = np.clip(np.random.default_rng(seed).standard_normal((n, 5)), -3, 3)
    return mean + z @ chol.T


@pytest.mark.parametrize("dtype,rtol", [(jnp.float64, 1e-6), (jnp.float32, 1e-3)])
def test_solver_matches_closed_form(dtype, rtol):
    draws = besiroglu_draws(200)
    log_c = np.log(np.logspace(15, 28, 27))
    P = Parametric(*[jnp.asarray(draws[:, i][:, None], dtype) for i in range(5)])
    b = Budget(jnp.asarray(log_c[None, :], dtype))
    num = allocate(P, b, method="solve")
    closed = allocate(P, b, method="closed")
    assert num.log_n.shape == (200, 27) and num.log_n.dtype == dtype
    assert bool(jnp.all(num.converged))
    rel = np.abs(np.expm1(np.asarray(num.log_n, np.float64) - np.asarray(closed.log_n, np.float64)))
    assert rel.max() < rtol, rel.max()


def test_kaplan_solver_matches_its_analytic_optimum():
    """Under C = 6ND, minimising [(Nc/N)^p + 6 Dc N / C]^aD gives N^(1+p) = p Nc^p C / (6 Dc)."""
    law = law64("kaplan2020")
    log_c = jnp.log(jnp.logspace(15, 28, 14))
    got = allocate(law, Budget(log_c))
    p = 0.076 / 0.103
    want = (math.log(p) + p * math.log(6.4e13) + np.asarray(log_c) - math.log(6) - math.log(1.8e13)) / (1 + p)
    assert bool(jnp.all(got.converged))
    np.testing.assert_allclose(np.exp(np.asarray(got.log_n) - want), 1.0, rtol=1e-9)


# ---------------------------------------------------------------------------------------------
# Data-constrained and inference-aware vs brute force (float64, plain NumPy reference)

DC_CASES = [(2.36e23, 5.69e11), (1e24, 1e11), (1e22, 1e12), (1e21, 1e9), (1e25, 3e12), (3e23, 1e14)]


@pytest.mark.parametrize("flops,unique", DC_CASES)
def test_data_constrained_matches_brute_force(flops, unique):
    law = dc_law()
    got = allocate(law, Budget(jnp.log(flops), log_u=jnp.log(unique)))
    assert bool(got.converged)
    E, A, B, a, b = natural(law.base)
    s = flops / 6

    def f(x):
        n = np.exp(x)
        return ref.data_constrained(E, A, B, a, b, n, s / n, unique)

    x_star, l_star = ref.brute_force_min(f, 0.0, math.log(s))
    assert math.exp(float(got.log_n)) == pytest.approx(math.exp(x_star), rel=1e-3)
    assert float(got.loss) == pytest.approx(l_star, rel=1e-7)
    assert float(got.loss) <= l_star * (1 + 1e-12)


def test_data_constrained_with_unlimited_data_is_the_base_optimum():
    law = dc_law()
    log_c = jnp.log(jnp.logspace(18, 27, 10))
    got = allocate(law, Budget(log_c))
    base = allocate(law.base, Budget(log_c), method="closed")
    assert bool(jnp.all(got.converged))
    np.testing.assert_allclose(np.exp(np.asarray(got.log_n - base.log_n)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(got.loss), np.asarray(base.loss), rtol=1e-12)


INF_CASES = [(1e24, 1e11), (1e24, 1e12), (1e24, 1e13), (1e24, 1e14), (1e22, 2e12), (1e26, 1e15)]


@pytest.mark.parametrize("name", ["hoffmann2022", "besiroglu2024"])
@pytest.mark.parametrize("flops,d_inf", INF_CASES)
def test_inference_aware_fixed_lifetime_budget_matches_brute_force(name, flops, d_inf):
    law = law64(name)
    got = allocate(law, Budget(jnp.log(flops), log_d_inf=jnp.log(d_inf)))
    assert bool(got.converged)
    E, A, B, a, b = natural(law)

    def f(x):
        n = np.exp(x)
        d = (flops - 2 * n * d_inf) / (6 * n)
        with np.errstate(invalid="ignore"):
            return np.where(d > 1, ref.chinchilla(E, A, B, a, b, n, np.maximum(d, 1)), np.inf)

    x_star, l_star = ref.brute_force_min(f, 0.0, math.log(flops / (2 * d_inf)))
    assert math.exp(float(got.log_n)) == pytest.approx(math.exp(x_star), rel=1e-3)
    assert float(got.loss) == pytest.approx(l_star, rel=1e-7)
    n, d = math.exp(float(got.log_n)), math.exp(float(got.log_d))
    assert 6 * n * d + 2 * n * d_inf == pytest.approx(flops, rel=1e-12)


@pytest.mark.parametrize("target,d_inf", [(2.1, 1e12), (2.0, 1e13), (1.95, 2e12), (2.2, 1e14)])
def test_inference_aware_min_lifetime_flops_for_target_matches_brute_force(target, d_inf):
    law = law64("besiroglu2024")
    res = compute_for_loss(law, target, Budget(0.0, log_d_inf=jnp.log(d_inf)))
    assert bool(res.converged) and bool(res.reachable)
    E, A, B, a, b = natural(law)

    def lifetime(x):
        n = np.exp(x)
        gap = target - E - A / n**a
        with np.errstate(invalid="ignore", divide="ignore"):
            d = (B / gap) ** (1 / b)
            return np.where(gap > 0, 6 * n * d + 2 * n * d_inf, np.inf)

    x_star, c_star = ref.brute_force_min(lifetime, 10.0, 40.0)
    assert math.exp(float(res.log_c)) == pytest.approx(c_star, rel=1e-7)
    assert math.exp(float(res.allocation.log_n)) == pytest.approx(math.exp(x_star), rel=1e-3)
    assert float(res.allocation.loss) == pytest.approx(target, rel=1e-9)


# ---------------------------------------------------------------------------------------------
# Monotonic sanity, caps, precision, compilation


def test_more_unique_data_never_raises_optimal_loss():
    law = dc_law()
    u = jnp.log(jnp.logspace(9, 14, 60))
    got = allocate(law, Budget(jnp.log(1e24), log_u=u))
    assert bool(jnp.all(got.converged))
    assert np.all(np.diff(np.asarray(got.loss)) <= 1e-13)


def test_more_inference_tokens_never_increase_optimal_n():
    law = law64("besiroglu2024")
    d_inf = jnp.log(jnp.logspace(8, 14.5, 60))
    got = allocate(law, Budget(jnp.log(1e24), log_d_inf=d_inf))
    assert bool(jnp.all(got.converged))
    assert np.all(np.diff(np.asarray(got.log_n)) <= 1e-12)


@pytest.mark.parametrize("method", ["closed", "solve"])
def test_tighter_max_params_never_lowers_loss(method):
    law = law64("besiroglu2024")
    caps = jnp.log(jnp.logspace(12, 8, 40))  # tightening
    got = allocate(law, Budget(jnp.log(1e24), log_n_max=caps), method=method)
    assert np.all(np.diff(np.asarray(got.loss)) >= -1e-13)
    n = np.exp(np.asarray(got.log_n))
    assert np.all(n <= np.exp(np.asarray(caps)) * (1 + 1e-12))


def test_caps_that_bind_both_sides_leave_compute_unused():
    law = law64("besiroglu2024")
    b = Budget(jnp.log(1e24), log_n_max=jnp.log(1e10), log_d_max=jnp.log(1e12))
    for method in ("closed", "solve"):
        got = allocate(law, b, method=method)
        assert math.exp(float(got.log_n)) == pytest.approx(1e10, rel=1e-12)
        assert math.exp(float(got.log_d)) == pytest.approx(1e12, rel=1e-12)
        assert math.exp(float(got.log_c_used)) == pytest.approx(6e22, rel=1e-12)
        assert bool(got.converged)


def test_max_params_cap_moves_the_rest_into_tokens():
    law = law64("besiroglu2024")
    got = allocate(law, Budget(jnp.log(1e24), log_n_max=jnp.log(2e10)))
    assert math.exp(float(got.log_n)) == pytest.approx(2e10, rel=1e-12)
    assert math.exp(float(got.log_d)) == pytest.approx(1e24 / 6 / 2e10, rel=1e-12)


def test_allocate_compiles_once_per_shape():
    law = law64("hoffmann2022")
    before = allocate._cache_size()
    for c in (1e20, 3e21, 1e24, 7e25):
        allocate(law, Budget(jnp.full((8,), math.log(c))), method="solve")
    assert allocate._cache_size() - before <= 1


def test_float32_matches_float64_on_the_data_constrained_law():
    b64 = Budget(jnp.log(jnp.array([2.36e23, 1e24])), log_u=jnp.log(jnp.array([5.69e11, 1e11])))
    b32 = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float32), b64)
    r64, r32 = allocate(dc_law(), b64), allocate(dc_law(jnp.float32), b32)
    assert r32.log_n.dtype == jnp.float32 and bool(jnp.all(r32.converged))
    np.testing.assert_allclose(np.exp(np.asarray(r32.log_n, np.float64) - np.asarray(r64.log_n)), 1.0, rtol=1e-3)
