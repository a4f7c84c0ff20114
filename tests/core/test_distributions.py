"""Statistical quality of the counter-based generator and the inverse-CDF distributions."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from budgetopt.core.distributions import Dist, key_words, random_bits, sample_log, uniform

N = 1 << 20
KEY = key_words(0)


def _u(stream=0, start=0, n=N, dtype=jnp.float64, key=KEY):
    i = jnp.arange(start, start + n, dtype=jnp.uint32)
    return np.asarray(uniform(key, i, jnp.uint32(0), stream, dtype))


def test_uniform_is_uniform():
    u = _u()
    assert 0 < u.min() and u.max() < 1
    counts = np.bincount((u * 1024).astype(int), minlength=1024)
    chi2 = ((counts - N / 1024) ** 2 / (N / 1024)).sum()
    # chi-square with 1023 dof: mean 1023, sd 45; 6 sd either way
    assert 750 < chi2 < 1300, chi2
    for m in (1, 2, 3, 4):
        assert np.mean(u**m) == pytest.approx(1 / (m + 1), abs=5 / math.sqrt(N))


def test_streams_indices_and_seeds_are_independent():
    a, b = _u(0), _u(1)
    assert abs(np.corrcoef(a, b)[0, 1]) < 5 / math.sqrt(N)
    assert abs(np.corrcoef(a[:-1], a[1:])[0, 1]) < 5 / math.sqrt(N)  # serial
    c = _u(0, key=key_words(1))
    assert abs(np.corrcoef(a, c)[0, 1]) < 5 / math.sqrt(N)
    # pairs (u_i, u_{i+1}) fill the unit square evenly (a 32 x 32 grid)
    h, _, _ = np.histogram2d(a[:-1], a[1:], bins=32)
    chi2 = ((h - h.mean()) ** 2 / h.mean()).sum()
    assert 800 < chi2 < 1300, chi2


def test_bits_avalanche():
    """Flipping one bit of the index flips each output bit with probability 1/2."""
    i = jnp.arange(1 << 16, dtype=jnp.uint32)
    base = np.asarray(random_bits(KEY, i, jnp.uint32(0), 0))
    for bit in (0, 7, 31):
        other = np.asarray(random_bits(KEY, i ^ np.uint32(1 << bit), jnp.uint32(0), 0))
        flips = np.unpackbits((base ^ other).view(np.uint8)).mean()
        assert flips == pytest.approx(0.5, abs=0.01)
    hi = np.asarray(random_bits(KEY, i, jnp.uint32(1), 0))
    assert np.unpackbits((base ^ hi).view(np.uint8)).mean() == pytest.approx(0.5, abs=0.01)


def test_float32_uniform_is_in_open_interval_and_matches_float64_bits():
    u32, u64 = _u(dtype=jnp.float32), _u(dtype=jnp.float64)
    assert u32.dtype == np.float32 and 0 < u32.min() and u32.max() < 1
    np.testing.assert_allclose(u32, u64, atol=2**-24)


@pytest.mark.parametrize("d,mean,var", [
    (Dist("uniform", 2.0, 5.0), 3.5, 9 / 12),
    (Dist("normal", 10.0, 2.0), 10.0, 4.0),
    (Dist("triangular", 400.0, 700.0, 720.0), (400 + 700 + 720) / 3,
     (400**2 + 700**2 + 720**2 - 400 * 700 - 400 * 720 - 700 * 720) / 18),
])
def test_linear_distributions_moments(d, mean, var):
    x = np.exp(np.asarray(sample_log(d, jnp.asarray(_u()))))
    assert x.mean() == pytest.approx(mean, rel=2e-3)
    assert x.var() == pytest.approx(var, rel=1e-2)


def test_log_distributions():
    u = jnp.asarray(_u())
    ln = np.asarray(sample_log(Dist("lognormal", 7e11, 0.3), u))
    assert np.median(ln) == pytest.approx(math.log(7e11), abs=2e-3)
    assert ln.std() == pytest.approx(0.3, rel=5e-3)
    lu = np.asarray(sample_log(Dist("loguniform", 1e9, 1e12), u))
    assert lu.min() >= math.log(1e9) and lu.max() <= math.log(1e12)
    assert lu.mean() == pytest.approx(0.5 * (math.log(1e9) + math.log(1e12)), rel=1e-3)
    f = np.asarray(sample_log(Dist("fixed", 3.0), u))
    assert np.all(f == math.log(3.0))


def test_triangular_cdf_at_mode():
    x = np.exp(np.asarray(sample_log(Dist("triangular", 400.0, 700.0, 720.0), jnp.asarray(_u()))))
    assert np.mean(x < 700) == pytest.approx((700 - 400) / (720 - 400), abs=3e-3)
    assert x.min() >= 400 - 1e-9 and x.max() <= 720 + 1e-9
