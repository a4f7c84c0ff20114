"""On-device sampling: a counter-based hash generator and inverse-CDF distributions.

Every random number is a pure function of (seed, global sample index, stream id): sample i of
stream j is the same whatever the chunk size, device count, shard or resume point, which is
what makes sweep results identical across all of them. The hash is three rounds of
MurmurHash3's 32-bit finaliser over the key words, the 64-bit index (two 32-bit words) and the
stream id — about 6x the throughput of threefry on CPU (benchmarks/NOTES.md); its uniformity and
independence are tested in tests/test_distributions.py.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtri
from jaxtyping import Array, Float, UInt32

_M1 = 0x85EBCA6B
_M2 = 0xC2B2AE35
_GOLDEN = 0x9E3779B9
_STREAM = 0x632BE5AB


def _u32(x):
    return jnp.asarray(x, jnp.uint32)


def _fmix32(h: UInt32[Array, "*b"]) -> UInt32[Array, "*b"]:
    """MurmurHash3's finaliser: a bijection on uint32 with full avalanche."""
    h = h ^ (h >> 16)
    h = h * _u32(_M1)
    h = h ^ (h >> 13)
    h = h * _u32(_M2)
    return h ^ (h >> 16)


def key_words(seed: int) -> tuple[int, int]:
    """Two 32-bit key words from a seed, via jax.random's fold_in (threefry) once per sweep."""
    data = jax.random.key_data(jax.random.fold_in(jax.random.PRNGKey(0), seed))
    return int(data[0]), int(data[1])


def random_bits(key: tuple, index_lo, index_hi, stream: int) -> UInt32[Array, "*b"]:
    """32 random bits for each (global index = index_hi * 2^32 + index_lo) of ``stream``."""
    k0, k1 = key
    h = _fmix32(_u32(index_lo) ^ _u32(k0))
    h = _fmix32(h ^ (_u32(index_hi) * _u32(_GOLDEN)) ^ _u32(k1))
    return _fmix32(h ^ _u32((stream * _STREAM + 0x85157AF5) & 0xFFFFFFFF))


def uniform(key: tuple, index_lo, index_hi, stream: int, dtype=jnp.float32) -> Float[Array, "*b"]:
    """Uniform on the open interval (0, 1): 24 bits for float32, 32 bits for float64.

    The float32 grid (k + 1/2) 2^-24 ends at 1 - 2^-25, which float32 rounds to 1.0 (where
    ndtri is +inf: one law draw in ~3e6 was infinite); that top point is kept at 1 - 2^-24."""
    bits = random_bits(key, index_lo, index_hi, stream)
    if jnp.dtype(dtype) == jnp.float64:
        return (bits.astype(jnp.float64) + 0.5) * (2.0 ** -32)
    u = ((bits >> 8).astype(jnp.float32) + jnp.float32(0.5)) * jnp.float32(2.0 ** -24)
    return jnp.minimum(u, jnp.float32(1.0 - 2.0 ** -24))


class Dist(NamedTuple):
    """A scalar input: ``kind`` in fixed|uniform|loguniform|normal|lognormal|triangular and its
    parameters a, b, c (fixed: a = value; uniform/loguniform: a = low, b = high; normal:
    a = mean, b = sd; lognormal: a = median, b = sigma; triangular: a = low, b = mode, c = high)."""

    kind: str
    a: float
    b: float = 0.0
    c: float = 0.0

    @property
    def fixed(self) -> bool:
        return self.kind == "fixed"


def sample_log(d: Dist, u: Float[Array, "*b"], lo: float = -math.inf, hi: float = math.inf) -> Float[Array, "*b"]:
    """The natural log of a draw of ``d`` by inverse CDF from uniforms ``u``, clipped to the
    field's domain (lo, hi) — a normal's tails beyond it are rare by validation (< 4 sigma)."""
    dt = u.dtype
    if d.kind == "fixed":
        out = jnp.full_like(u, math.log(d.a) if d.a > 0 else -math.inf)
    elif d.kind == "loguniform":
        out = math.log(d.a) + u * (math.log(d.b) - math.log(d.a))
    elif d.kind == "lognormal":
        out = math.log(d.a) + d.b * ndtri(u)
    else:
        if d.kind == "uniform":
            v = d.a + u * (d.b - d.a)
        elif d.kind == "normal":
            v = d.a + d.b * ndtri(u)
        elif d.kind == "triangular":
            low, mode, high = d.a, d.b, d.c
            f = (mode - low) / (high - low)
            left = low + jnp.sqrt(u * (high - low) * (mode - low))
            right = high - jnp.sqrt((1 - u) * (high - low) * (high - mode))
            v = jnp.where(u < f, left, right)
        else:
            raise ValueError(f"unknown distribution {d.kind!r}")
        tiny = jnp.finfo(dt).tiny
        out = jnp.log(jnp.maximum(v, tiny))
    return jnp.clip(out, lo, hi).astype(dt)


def median(d: Dist) -> float:
    """The median of ``d`` in closed form (natural units)."""
    if d.kind in ("fixed", "normal", "lognormal"):
        return d.a
    if d.kind == "uniform":
        return 0.5 * (d.a + d.b)
    if d.kind == "loguniform":
        return math.sqrt(d.a * d.b)
    if d.kind == "triangular":
        low, mode, high = d.a, d.b, d.c
        if mode >= 0.5 * (low + high):
            return low + math.sqrt((high - low) * (mode - low) / 2)
        return high - math.sqrt((high - low) * (high - mode) / 2)
    raise ValueError(f"unknown distribution {d.kind!r}")
