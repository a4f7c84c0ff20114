"""The precision law (model/precision.py; Kumar et al. 2024, Appendix K constants) against the
paper's equations written out here in plain Python: the effective-parameter factors and the loss
at hand-picked precisions, the compute-optimal training precision against a brute-force search
over P (and the paper's "7-8 bits" for the offset form, ~3.5 for the main-text form),
post-training-quantisation degradation and the critical data size; float32 against float64."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from budgetopt.core.runtime import jax_x64
from budgetopt.model import precision as pr
from budgetopt.model.laws import get_preset

K = {"A": 4.299e3, "alpha": 0.4965, "B": 1.806e4, "beta": 0.4965, "E": 2.7648, "gamma_w": 2.6745, "n_w": 0.3037,
     "gamma_a": 2.2102, "n_a": 1.4072, "gamma_kv": 0.9578, "n_kv": 2.4185, "c_t": 0.0598, "gamma_d": 0.5068,
     "gamma_n": 0.3439, "gamma_post": 0.5907}  # Appendix K, as DESIGN §15 prints them
LAW = get_preset("kumar2024-precision").params


def f(p, x, form):
    """One tensor's factor, from the paper: 1 - e^(n_x - P/gamma_x) clipped at 0 (offset), or 1 - e^(-P/gamma_x)."""
    if form == "offset":
        return max(0.0, 1 - math.exp(K[f"n_{x}"] - p / K[f"gamma_{x}"]))
    return 1 - math.exp(-p / K[f"gamma_{x}"])


def loss(n, d, pw, pa, pkv, form):
    neff = n * f(pw, "w", form) * f(pa, "a", form) * f(pkv, "kv", form)
    if neff == 0:  # a tensor clipped to nothing: no effective parameters
        return math.inf
    return K["A"] * neff ** -K["alpha"] + K["B"] * d ** -K["beta"] + K["E"]


def test_the_preset_holds_the_appendix_constants():
    assert math.exp(LAW.log_A) == pytest.approx(K["A"]) and math.exp(LAW.log_B) == pytest.approx(K["B"])
    assert math.exp(LAW.log_E) == pytest.approx(K["E"])
    for k in ("alpha", "beta", "gamma_w", "n_w", "gamma_a", "n_a", "gamma_kv", "n_kv", "c_t", "gamma_d", "gamma_n",
              "gamma_post"):
        assert getattr(LAW, k) == K[k], k


@pytest.mark.parametrize("form", pr.PRECISION_FORMS)
@pytest.mark.parametrize("bits", [(16, 16, 16), (8, 8, 8), (4, 8, 16), (3, 3, 3), (6, 4, 2)])
def test_factors_and_loss_equal_the_papers_equations(form, bits):
    pw, pa, pkv = bits
    with jax_x64():
        got_f = math.exp(float(pr.log_factor(LAW, pw, pa, pkv, form)))
        got_l = float(pr.precision_loss(LAW, jnp.log(1e8), jnp.log(2e9), pw, pa, pkv, form))
    want_f = f(pw, "w", form) * f(pa, "a", form) * f(pkv, "kv", form)
    assert got_f == pytest.approx(want_f, rel=1e-12, abs=1e-300)
    assert got_l == pytest.approx(loss(1e8, 2e9, pw, pa, pkv, form), rel=1e-12)


def test_a_precision_below_the_offset_leaves_no_effective_parameters():
    """Offset form: at P <= n_kv gamma_kv (~2.3 bits) the KV factor is clipped to 0: N_eff = 0."""
    with jax_x64():
        assert float(pr.log_factor(LAW, 8.0, 8.0, 2.0, "offset")) == -math.inf
        assert math.isinf(float(pr.optimal_loss_at(LAW, jnp.log(1e21), 2.0, "offset")))


def brute_force_bits(c: float, form: str) -> tuple[float, float]:
    """The compute-optimal P by a 0.0005-bit grid, each P's optimum N by a fine grid in log N
    (cost 6 N D P/16 = c), in NumPy float64."""
    best = (math.inf, math.nan)
    for p in np.arange(2.0, 12.0, 0.0005):
        fac = f(p, "w", form) * f(p, "a", form) * f(p, "kv", form)
        if fac <= 0:
            continue
        c6 = c * 16 / p / 6
        # closed form of the Chinchilla law with A' = A fac^-alpha
        a_eff = K["A"] * fac ** -K["alpha"]
        g = (K["alpha"] * a_eff / (K["beta"] * K["B"])) ** (1 / (K["alpha"] + K["beta"]))
        n = g * c6 ** (K["beta"] / (K["alpha"] + K["beta"]))
        val = a_eff * n ** -K["alpha"] + K["B"] * (c6 / n) ** -K["beta"] + K["E"]
        if val < best[0]:
            best = (val, p)
    return best[1], best[0]


@pytest.mark.parametrize("form,paper", [("offset", (7.0, 8.0)), ("main-text", (3.0, 4.0))])
def test_the_compute_optimal_precision_is_the_brute_force_one_and_the_papers(form, paper):
    """Offset form: ~7.0 bits (the paper: "around 7-8 bits"); main text: ~3.47 bits (~3.5). The
    same at every budget (alpha = beta), to the brute force's grid."""
    for c in (1e19, 1e23):
        with jax_x64():
            o = pr.optimal_precision(LAW, jnp.log(c), form)
        want_bits, want_loss = brute_force_bits(c, form)
        assert bool(o.converged) and not bool(o.at_bound)
        assert float(o.bits) == pytest.approx(want_bits, abs=1e-3)
        assert float(o.loss) == pytest.approx(want_loss, rel=1e-9)
        assert paper[0] <= float(o.bits) <= paper[1]
        n, d = math.exp(float(o.log_n)), math.exp(float(o.log_d))
        assert 6 * n * d * float(o.bits) / 16 == pytest.approx(c, rel=1e-9)  # the budget is spent


def test_float32_finds_the_same_optimum_as_float64():
    """The loss is flat at the optimum (1e-9 relative over 0.002 bits): float32 cannot place the
    bits closer than ~0.01 (measured: 7.0000 against float64's 7.0021), but its optimal loss is
    float64's to float32 resolution."""
    with jax_x64():
        o64 = pr.optimal_precision(LAW, jnp.log(1e21), "offset")
    law32 = jax.tree_util.tree_map(lambda v: jnp.float32(v), LAW)
    o32 = pr.optimal_precision(law32, jnp.float32(math.log(1e21)), "offset")
    assert float(o32.bits) == pytest.approx(float(o64.bits), abs=1e-2)
    assert float(o32.loss) == pytest.approx(float(o64.loss), rel=1e-6)


def test_ptq_degradation_and_the_critical_data_size_follow_the_equations():
    """delta_PTQ = C_T D^gamma_D N^-gamma_N e^(-P/gamma_post) (eq. 2); D_crit (eq. 13) is where
    B D^-beta + delta_PTQ(D) stops falling: its numerical derivative is zero there, negative
    before, positive after."""
    n, p = 1e8, 4.0
    with jax_x64():
        got = float(pr.ptq_degradation(LAW, math.log(n), math.log(1e10), p))
        d_crit = float(pr.critical_data_size(LAW, math.log(n), p))
    assert got == pytest.approx(K["c_t"] * 1e10 ** K["gamma_d"] / n ** K["gamma_n"] * math.exp(-p / K["gamma_post"]),
                                rel=1e-12)
    want = (K["beta"] * K["B"] * n ** K["gamma_n"] * math.exp(p / K["gamma_post"]) / (K["gamma_d"] * K["c_t"])
            ) ** (1 / (K["gamma_d"] + K["beta"]))
    assert d_crit == pytest.approx(want, rel=1e-12)

    def post(d):
        return K["B"] * d ** -K["beta"] + K["c_t"] * d ** K["gamma_d"] / n ** K["gamma_n"] * math.exp(
            -p / K["gamma_post"])

    h = 1e-4
    slope = (post(d_crit * (1 + h)) - post(d_crit * (1 - h))) / (2 * h * d_crit)
    assert abs(slope) * d_crit < 1e-7 * post(d_crit)
    assert post(0.5 * d_crit) > post(d_crit) < post(2 * d_crit)


def test_serving_in_16_bits_is_the_plain_optimum_and_quantised_serving_wants_fewer_tokens():
    """δ_PTQ at 16 bits is ~1e-11: the serving optimum is the compute-optimal one; served in 4
    bits the model is trained on fewer tokens per parameter (δ_PTQ grows with D/N)."""
    with jax_x64():
        plain = pr.optimal_precision(LAW, jnp.log(1e21), "offset")
        same = pr.serving_optimum(LAW, jnp.log(1e21), "offset", 16.0)
        four = pr.serving_optimum(LAW, jnp.log(1e21), "offset", 4.0)
    assert float(same.loss) == pytest.approx(float(plain.loss), rel=1e-9)
    assert float(same.log_n) == pytest.approx(float(plain.log_n), abs=1e-4)
    assert float(four.log_d - four.log_n) < float(plain.log_d - plain.log_n) - 0.1
    assert bool(four.converged) and not bool(four.at_bound)


def test_the_serving_optimum_is_the_brute_force_one_on_the_lifetime_budget():
    """Minimise L(N, D, P) + δ_PTQ(N, D, 4) over P and N under (6 N D P + 2 N D_inf 4)/16 = C by
    a NumPy grid (P every 0.01 bit, log N every 0.0005), with D_inf = 1e12 serving tokens."""
    c, d_inf, ps = 1e21, 1e12, 4.0
    with jax_x64():
        o = pr.serving_optimum(LAW, jnp.log(c), "offset", ps, math.log(d_inf))
    x = np.arange(math.log(1e8), math.log(1e11), 0.0005)
    best = (math.inf, None, None)
    for p in np.arange(6.0, 14.0, 0.01):
        n = np.exp(x)
        d = (16 * c - 2 * n * d_inf * ps) / (6 * n * p)
        ok = d >= 1
        fac = f(p, "w", "offset") * f(p, "a", "offset") * f(p, "kv", "offset")
        dd = np.where(ok, d, 1.0)
        loss = (K["A"] * (n * fac) ** -K["alpha"] + K["B"] * dd ** -K["beta"] + K["E"]
                + K["c_t"] * dd ** K["gamma_d"] / n ** K["gamma_n"] * math.exp(-ps / K["gamma_post"]))
        loss = np.where(ok, loss, np.inf)
        k = int(np.argmin(loss))
        if loss[k] < best[0]:
            best = (float(loss[k]), p, n[k])
    assert float(o.loss) <= best[0] * (1 + 1e-9)
    assert float(o.loss) == pytest.approx(best[0], rel=1e-7)
    assert float(o.bits) == pytest.approx(best[1], abs=0.02)
    assert math.exp(float(o.log_n)) == pytest.approx(best[2], rel=0.01)
    n, d = math.exp(float(o.log_n)), math.exp(float(o.log_d))
    assert (6 * n * d * float(o.bits) + 2 * n * d_inf * ps) / 16 == pytest.approx(c, rel=1e-9)
