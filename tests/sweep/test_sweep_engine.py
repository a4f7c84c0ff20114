"""The sweep engine itself: no collectives in the chunk kernel, one compile per sweep, the
typed state (exact merge, flat and JSON forms, validation), the decision subsample and its
Monte Carlo error, and the float32 uniform that must never reach 1."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import tomllib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from budgetopt import sweep as sw
from budgetopt.core.distributions import uniform
from budgetopt.core.errors import InputError
from budgetopt.core.runtime import jax_x64
from budgetopt.sweep import accumulators
from budgetopt.sweep import scenario as scn
from budgetopt.sweep import state as st
from budgetopt.sweep.driver import prepare
from budgetopt.sweep.sampling import complete_draw, make_sampler, sample_indices

from .. import reference as ref
from ..procs import ROOT, clean_env, strip_run

SCEN = """
name = "engine"
samples = 24000
seed = 3
[law]
preset = "besiroglu2024"
uncertainty = "covariance"
[budget]
gpu = "h100-sxm"
count = 1024
hours = { dist = "triangular", low = 400, mode = 700, high = 720 }
mfu = { dist = "uniform", low = 0.35, high = 0.45 }
[recommend]
candidates = 12
"""

COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "collective-permute", "all-to-all", "collective-broadcast")


def _scenario(**recommend) -> scn.Scenario:
    d = tomllib.loads(SCEN)
    d["recommend"].update(recommend)
    return scn.from_dict(d, "engine")


def test_the_chunk_kernel_compiles_without_collectives_on_four_devices():
    """Both programs of the kernel, compiled for a 4-device host, contain no collective op —
    and the same detector finds the all-reduce of a psum, so the check can fail."""
    code = textwrap.dedent("""
        import json, jax, jax.numpy as jnp, numpy as np
        from jax.sharding import Mesh, PartitionSpec as P
        from budgetopt.sweep import scenario as scn
        from budgetopt.sweep.accumulators import Ranges
        from budgetopt.sweep.kernel import make_kernel
        from budgetopt.sweep.pilot import make_pilot
        from budgetopt.core.runtime import jax_x64
        ops = OPS
        out = {}
        with jax_x64():
            for name in ("h100-cluster", "bloomberggpt", "serving"):
                sc = scn.example(name)
                pilot = make_pilot(sc, 10000, jnp.float32)
                k = make_kernel(sc, 4096, jnp.float32, jax.local_devices())
                lo = np.uint32(0)
                ranges = Ranges(*(jnp.asarray(v) for v in pilot.ranges))
                cands = jnp.asarray(pilot.candidates, jnp.float32)
                s = k.draw(lo, lo)
                texts = [k.draw.lower(lo, lo).compile().as_text(),
                         k.accumulate.lower(s, lo, np.uint32(4096), ranges, cands).compile().as_text()]
                out[name] = [op for t in texts for op in ops if op in t]
            mesh = Mesh(np.array(jax.local_devices()), ("dev",))
            f = jax.jit(jax.shard_map(lambda x: jax.lax.psum(x, "dev"), mesh=mesh, in_specs=P("dev"), out_specs=P()))
            out["psum"] = [op for op in ops if op in f.lower(jnp.ones(8)).compile().as_text()]
            out["devices"] = jax.device_count()
        print(json.dumps(out))
    """).replace("OPS", repr(COLLECTIVES))
    env = clean_env(XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr
    found = json.loads(r.stdout.strip().splitlines()[-1])
    assert found["devices"] == 4
    assert found["psum"] == ["all-reduce"]
    assert found["h100-cluster"] == found["bloomberggpt"] == found["serving"] == []


def test_the_kernel_compiles_once_for_every_chunk_and_tail():
    sc = _scenario()
    res = sw.run(sc, samples=10_001, chunk_size=4096)  # two full chunks and a tail
    with jax_x64():
        _, kernel = prepare(sc, 10_001, False, res["run"]["chunk_size"])
    assert kernel.draw._cache_size() == 1 and kernel.accumulate._cache_size() == 1
    assert res["samples"] == 10_001


# ---------------------------------------------------------------------------------------------- the state


def _random_state(rng, q=5, k=3) -> st.SweepState:
    def count(shape):
        return accumulators.Count(rng.integers(0, 10**6, shape))

    def wide(shape):
        return accumulators.WideSum(rng.integers(-(2**40), 2**40, shape), rng.integers(0, 2**32, shape))

    qs = accumulators.QuantityStats(count(q), count((q, accumulators.BINS + 2)), wide(q), wide(q),
                                    accumulators.Min(rng.normal(size=q)), accumulators.Max(rng.normal(size=q)))
    cs = st.CandidateStats(wide(k), count(k), count((k, st.REGRET_BINS + 2)), count(()), wide(()), count(k))
    return st.SweepState(count(()), count(()), qs, cs)


def _same(a, b) -> bool:
    fa, fb = st.flatten(a), st.flatten(b)
    return fa.keys() == fb.keys() and all(np.array_equal(fa[k], fb[k]) for k in fa)


def test_merge_is_exact_associative_commutative_with_the_empty_state_as_identity():
    rng = np.random.default_rng(0)
    a, b, c = (_random_state(rng) for _ in range(3))
    assert _same(accumulators.merge(a, b), accumulators.merge(b, a))
    assert _same(accumulators.merge(accumulators.merge(a, b), c), accumulators.merge(a, accumulators.merge(b, c)))
    assert _same(accumulators.merge(a, st.empty_state(5, 3)), a)
    got = st.flatten(accumulators.merge(a, b))  # a wide sum is the exact integer sum
    for path in ("quantities/sum", "candidates/regret_sum"):
        def wide(f, path=path):
            return int(f[path + "/hi"].ravel()[0]) * 2**32 + int(f[path + "/lo"].ravel()[0])

        assert wide(got) == sum(wide(f) for f in map(st.flatten, (a, b)))
    m = accumulators.merge(a, b)
    assert np.array_equal(m.quantities.vmin.v, np.minimum(a.quantities.vmin.v, b.quantities.vmin.v))
    assert np.array_equal(m.quantities.hist.n, a.quantities.hist.n + b.quantities.hist.n)


def test_device_stacked_state_merges_like_separate_states():
    rng = np.random.default_rng(1)
    parts = [_random_state(rng) for _ in range(4)]
    stacked = jax.tree_util.tree_map(lambda *v: np.stack(v), *parts)
    want = parts[0]
    for p in parts[1:]:
        want = accumulators.merge(want, p)
    assert _same(st.from_devices(stacked), want)


def test_flat_json_and_checkpoint_forms_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    s = _random_state(rng)
    empty = st.empty_state(5, 3)  # min/max of nothing are +-inf: JSON null, read back as inf
    for x in (s, empty):
        assert _same(st.unflatten(st.flatten(x), empty, ("F", "bad")), x)
        assert _same(st.state_from_json(json.loads(json.dumps(st.state_to_json(x))), empty, "f"), x)
        st.save_checkpoint(tmp_path / "ck.npz", x, {"next": 7})
        back, meta = st.load_checkpoint(tmp_path / "ck.npz", empty)
        assert _same(back, x) and meta == {"next": 7}
    assert set(st.flatten(s)) >= {"quantities/hist", "quantities/sum/hi", "quantities/sum/lo", "candidates/regret_hist"}


@pytest.mark.parametrize("damage", ["missing", "extra", "shape", "negative", "float count", "low word", "nan"])
def test_a_damaged_state_is_refused_not_merged(damage):
    rng = np.random.default_rng(3)
    flat = st.flatten(_random_state(rng))
    if damage == "missing":
        del flat["quantities/vmax"]
    elif damage == "extra":
        flat["quantities/extra"] = np.zeros(5)
    elif damage == "shape":
        flat["quantities/hist"] = flat["quantities/hist"][:, :-1]
    elif damage == "negative":
        flat["candidates/win"] = -flat["candidates/win"] - 1
    elif damage == "float count":
        flat["samples"] = np.asarray(1.5)
    elif damage == "low word":
        flat["quantities/sum/lo"] = flat["quantities/sum/lo"] + 2**32
    else:
        flat["quantities/vmin"] = np.full(5, np.nan)
    with pytest.raises(InputError) as e:
        st.unflatten(flat, st.empty_state(5, 3), ("FILES", "damaged"))
    assert e.value.field == "FILES"


# ---------------------------------------------------------------------------------------------- the decision


def _subsample_truth(sc, n: int, stride: int, cands: np.ndarray):
    """Float64 NumPy from the sweep's own float32 draws: every candidate's regret on the
    samples with global index = 0 mod stride (the decision subsample)."""
    law, b = complete_draw(sc, make_sampler(sc, jnp.float32)(*sample_indices(0, n)))
    th = [np.asarray(v, np.float64)[::stride] for v in law]
    E, A, B, al, be = np.exp(th[2]), np.exp(th[0]), np.exp(th[1]), th[3], th[4]
    s = np.exp(np.asarray(b.log_c, np.float64)[::stride]) / 6
    a = (be / (al + be))
    g = (al * A / (be * B)) ** (1 / (al + be))
    n_opt = g * s**a
    opt = ref.chinchilla(E, A, B, al, be, n_opt, s / n_opt)
    regrets = np.array([ref.chinchilla(E, A, B, al, be, math.exp(x), s / math.exp(x)) - opt for x in cands])
    return regrets, opt


@pytest.mark.parametrize("stride", [1, 8])
def test_the_recommendation_is_the_subsample_statistic_computed_independently(stride):
    sc = _scenario(subsample=stride)
    res = sw.run(sc, chunk_size=8192)
    cands = np.asarray(res["pilot"]["candidates"])
    regrets, opt = _subsample_truth(sc, res["samples"], stride, cands)
    curve = sorted(res["regret_curve"], key=lambda c: c["params"])
    order = np.argsort(cands)
    for c, k in zip(curve, order):
        assert c["expected_regret"] == pytest.approx(np.maximum(regrets[k], 0).mean(), rel=2e-3, abs=2e-7)
        assert c["p_regret_below_1pct"] == pytest.approx(np.mean(regrets[k] < 0.01 * opt), abs=2.0 / len(opt))
        q = np.quantile(regrets[k], 0.95)
        assert q <= c["p95_regret"] * 1.0001 + 1e-7 and c["p95_regret"] <= q * 1.08 + 1e-7
    best = int(np.argmin(np.maximum(regrets, 0).mean(axis=1)))
    assert res["recommendation"]["params"] == pytest.approx(math.exp(cands[best]), rel=1e-9)
    assert res["recommendation"]["scored_samples"] == len(opt)


def test_the_reported_monte_carlo_error_covers_the_full_sample_answer():
    """The 1-in-8 estimate of the recommended size's expected regret lies within 4 of its
    reported standard errors of the every-sample value, and the p95 interval holds the
    every-sample p95 (bin-edge estimates), for several seeds."""
    for seed in (1, 2, 3):
        d = tomllib.loads(SCEN)
        d["seed"], d["samples"] = seed, 40000
        sub = sw.run(scn.from_dict(d, "e"), chunk_size=8192)
        d["recommend"]["subsample"] = 1
        full = sw.run(scn.from_dict(d, "e"), chunk_size=8192)
        k = [c["params"] for c in full["regret_curve"]].index(sub["recommendation"]["params"])
        f, s = full["regret_curve"][k], sub["recommendation"]
        assert abs(s["expected_regret"] - f["expected_regret"]) <= 4 * s["expected_regret_se"] + 1e-7, seed
        lo, hi = s["p95_regret_ci95"]
        assert lo <= f["p95_regret"] <= hi * 1.08, seed
        assert 0 < s["expected_regret_se"] < 0.05 * s["expected_regret"]


def test_refine_false_recommends_from_the_grid_only():
    res = sw.run(_scenario(refine=False), samples=8000)
    assert len(res["pilot"]["candidates"]) == 12 and not any(c["refined"] for c in res["regret_curve"])
    assert res["recommendation"]["from"] == "grid" and res["refinement"]["refined"] is False


def test_p95_risk_chooses_the_argmin_of_p95_regret():
    """risk = "p95": the recommendation is the candidate whose p95 regret, computed in NumPy
    float64 from the same draws, is the smallest (up to one 7 %-wide histogram bin)."""
    sc = _scenario(risk="p95", refine=False, subsample=1)
    res = sw.run(sc, samples=16000, chunk_size=8192)
    p95 = [c["p95_regret"] for c in res["regret_curve"]]
    assert res["recommendation"]["p95_regret"] == min(p95) and res["recommendation"]["risk"] == "p95"
    cands = np.asarray(res["pilot"]["candidates"])
    regrets, _ = _subsample_truth(sc, res["samples"], 1, cands)
    q = np.quantile(regrets, 0.95, axis=1)
    chosen = int(np.argmin(np.abs(cands - math.log(res["recommendation"]["params"]))))
    assert q[chosen] <= q.min() * 1.08 + 1e-9


def test_bad_subsample_values_are_refused():
    for bad in (0, 3, 128, True, 8.0):
        with pytest.raises(InputError) as e:
            _scenario(subsample=bad)
        assert e.value.field == "recommend.subsample"


# ---------------------------------------------------------------------------------------------- sampling


def test_float32_uniforms_stay_inside_the_open_interval():
    """The top of the 24-bit grid, 1 - 2^-25, rounds to 1.0 in float32 (ndtri = inf: one law
    draw in ~3e6 was infinite); it is held at 1 - 2^-24."""
    key = (0, 0)
    idx = jnp.arange(1 << 16, dtype=jnp.uint32)
    from budgetopt.core import distributions

    bits_all_ones = jnp.full(4, 0xFFFFFFFF, jnp.uint32)
    orig = distributions.random_bits
    try:
        distributions.random_bits = lambda *a, **k: bits_all_ones
        u = uniform(key, bits_all_ones, bits_all_ones, 0, jnp.float32)
    finally:
        distributions.random_bits = orig
    assert float(u.max()) == 1.0 - 2.0**-24 and np.isfinite(np.asarray(jax.scipy.special.ndtri(u))).all()
    u = uniform(key, idx, jnp.zeros_like(idx), 0, jnp.float32)
    assert float(u.min()) > 0 and float(u.max()) < 1


def test_a_large_default_sweep_has_every_sample_converged():
    """3e6 samples of the built-in example: with the uniform held below 1, no law draw is
    infinite, so every sample converges (before the fix ~1 in 3e6 did not)."""
    res = sw.run(scn.example("h100-cluster"), samples=3_000_000, chunk_size=131072)
    assert res["not_converged"] == 0 and res["converged_fraction"] == 1.0


def test_results_do_not_depend_on_chunk_or_subsample_layout_of_the_quantities():
    sc = _scenario()
    a = sw.run(sc, chunk_size=1000)
    b = sw.run(sc, chunk_size=65536)
    assert json.dumps(strip_run(a), sort_keys=True) == json.dumps(strip_run(b), sort_keys=True)
    c = sw.run(_scenario(subsample=2), chunk_size=4096)
    assert c["quantiles"] == a["quantiles"] and c["stats"] == a["stats"]


# ---------------------------------------------------------------------------------------------- layout


def test_one_job_per_module_and_no_module_imports_a_later_one():
    """The sweep's modules in their layer order (the package docstring's): each imports only
    modules before it, none of the engine's is over 300 lines, and none reaches up into the CLI."""
    import ast
    from pathlib import Path

    order = ["scenario", "accumulators", "sampling", "state", "choices", "kernel", "pilot", "decision", "results",
             "driver"]
    pkg = Path(sw.__file__).parent
    assert sorted(p.stem for p in pkg.glob("*.py") if p.stem != "__init__") == sorted(order)
    for i, name in enumerate(order):
        src = (pkg / f"{name}.py").read_text()
        assert name == "scenario" or len(src.splitlines()) <= 300, name
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                mods = [node.module] if node.module else [a.name for a in node.names]
                assert all(m in order[:i] for m in mods), (name, mods)
            if isinstance(node, ast.ImportFrom) and node.level == 2:
                assert not (node.module or "").startswith("cli"), (name, node.module)
        assert sw.__doc__.index(f"``{name}``") >= 0
