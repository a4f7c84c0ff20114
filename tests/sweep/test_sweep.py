"""The Monte Carlo sweep: exactness of the streaming summaries, determinism across chunkings,
devices, interruptions and shards, the robust recommendation, and bad scenario files."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from budgetopt import sweep as sw
from budgetopt.cli.commands import app
from budgetopt.model.laws import get_preset
from budgetopt.plan.optimum import optimize
from budgetopt.sweep import accumulators
from budgetopt.sweep import scenario as scn
from budgetopt.sweep.kernel import LOG_QUANTITIES, QUANTITIES, quantities, solve_samples
from budgetopt.sweep.sampling import complete_draw, make_sampler, sample_indices

from .. import reference as ref
from ..procs import cli, strip_run

runner = CliRunner()

SCEN = """
name = "test"
samples = 20000
seed = 7
[law]
preset = "besiroglu2024"
uncertainty = "covariance"
[budget]
gpu = "h100-sxm"
count = 1024
hours = { dist = "triangular", low = 400, mode = 700, high = 720 }
mfu = { dist = "uniform", low = 0.35, high = 0.45 }
[recommend]
candidates = 16
"""


strip = strip_run


@pytest.fixture(scope="module")
def sc():
    import tomllib

    return scn.from_dict(tomllib.loads(SCEN), "test")


@pytest.fixture(scope="module")
def base(sc):
    return sw.run(sc, chunk_size=65536)


def _raw(sc, n, dtype=jnp.float32):
    """The same samples and per-sample optima, computed directly (no streaming)."""
    sampler = make_sampler(sc, dtype)
    law, b = complete_draw(sc, sampler(*sample_indices(0, n)))
    law, b = jax.tree_util.tree_map(lambda v: jnp.broadcast_to(jnp.asarray(v, dtype), (n,)), (law, b))
    a = solve_samples(sc, law, b)
    return law, b, a


def test_streaming_quantiles_match_exact_quantiles(sc, base):
    n = base["samples"]
    _, b, a = _raw(sc, n)
    vals, ok = quantities(a, b, QUANTITIES[:5])
    vals = np.asarray(vals, np.float64)
    ranges = base["pilot"]["ranges"]
    for k, name in enumerate(QUANTITIES[:5]):
        v = vals[k]
        lo, hi = ranges[name]
        width = (hi - lo) / accumulators.BINS
        for p, f in accumulators.QUANTILES.items():
            exact = np.quantile(v, f)
            got = base["quantiles"][name][p]
            got_t = math.log(got) if name in LOG_QUANTITIES else got
            assert abs(got_t - exact) <= width * 1.0001, (name, p)
            exact_n = math.exp(exact) if name in LOG_QUANTITIES else exact
            assert got == pytest.approx(exact_n, rel=5e-3)


def test_moments_and_counts(sc, base):
    _, b, a = _raw(sc, base["samples"])
    ln = np.asarray(a.log_n, np.float64)
    assert base["stats"]["params"]["geomean"] == pytest.approx(math.exp(ln.mean()), rel=1e-5)
    assert base["stats"]["params"]["log_sd"] == pytest.approx(ln.std(), rel=1e-3)
    assert base["stats"]["params"]["min"] == pytest.approx(math.exp(ln.min()), rel=1e-5)  # f32 ulps of log N
    assert base["samples"] == 20000 and base["converged_fraction"] == 1.0
    assert base["stats"]["loss"]["outside_histogram"] == 0


def test_chunk_size_does_not_change_the_result(sc, base):
    from budgetopt.sweep.driver import chunk_layout

    other = sw.run(sc, chunk_size=1000)
    # 1000 rounded to whole blocks of devices x subsample: 1000 on one device, 1008 on two (the
    # process's device count depends on which test set up JAX first)
    assert other["run"]["chunk_size"] == chunk_layout(1000, other["run"]["local_devices"], sc.subsample)
    assert other["run"]["chunk_size"] != base["run"]["chunk_size"]
    assert json.dumps(strip(other), sort_keys=True) == json.dumps(strip(base), sort_keys=True)


def test_shards_merge_to_the_single_run(sc, base):
    parts = [sw.run(sc, chunk_size=4096, shard=(i, 3)) for i in range(3)]
    merged = sw.merge_results([json.loads(json.dumps(p)) for p in parts[::-1]])
    assert json.dumps(strip(merged), sort_keys=True) == json.dumps(strip(base), sort_keys=True)


def test_resume_from_checkpoint_matches(sc, base, tmp_path):
    ck = tmp_path / "ck.npz"
    calls = []

    def stop_after_two(done, total):
        calls.append(done)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sw.run(sc, chunk_size=4096, checkpoint=ck, progress=stop_after_two)
    assert ck.exists()
    resumed = sw.run(sc, chunk_size=4096, checkpoint=ck, resume=True)
    assert json.dumps(strip(resumed), sort_keys=True) == json.dumps(strip(base), sort_keys=True)


def test_recommendation_matches_brute_force(sc, base):
    """Every candidate's mean loss over the decision subsample (global index = 0 mod 8), in
    float64 NumPy from the same sampled inputs: the sweep's choice is the argmin and its
    expected loss agrees."""
    law, b, a = _raw(sc, base["samples"])
    th = [np.asarray(v, np.float64)[::8] for v in law]
    E, A, B, al, be = np.exp(th[2]), np.exp(th[0]), np.exp(th[1]), th[3], th[4]
    s = np.exp(np.asarray(b.log_c, np.float64)[::8]) / 6
    cands = np.array(base["pilot"]["candidates"])
    means = np.array([ref.chinchilla(E, A, B, al, be, np.exp(x), s / np.exp(x)).mean() for x in cands])
    best = int(np.argmin(means))
    rec = base["recommendation"]
    assert rec["params"] == pytest.approx(math.exp(cands[best]), rel=1e-9)
    assert rec["expected_loss"] == pytest.approx(means[best], rel=1e-6)
    grid_best = means[:-1].min()
    assert rec["expected_loss"] <= grid_best + 1e-6  # the refinement never ends worse
    opt = ref.chinchilla(E, A, B, al, be, np.exp(np.asarray(a.log_n, np.float64)[::8]),
                         np.exp(np.asarray(a.log_d, np.float64)[::8]))
    regret = ref.chinchilla(E, A, B, al, be, rec["params"], s / rec["params"]) - opt
    assert rec["expected_regret"] == pytest.approx(regret.mean(), rel=1e-3, abs=1e-6)
    assert rec["p_regret_below_1pct"] == pytest.approx(np.mean(regret < 0.01 * opt), abs=1e-12)
    p95 = np.quantile(regret, 0.95)
    assert p95 <= rec["p95_regret"] <= p95 * 1.08 + 1e-7
    curve = base["regret_curve"]
    assert len(curve) == len(cands) and all(c1["params"] <= c2["params"] for c1, c2 in zip(curve, curve[1:]))


def test_degenerate_scenario_equals_optimize():
    import tomllib

    jax.config.update("jax_enable_x64", True)
    sc = scn.from_dict(tomllib.loads('samples = 1000\n[law]\npreset = "hoffmann2022"\n[budget]\nflops = 5.76e23\n'
                                     '[recommend]\ncandidates = 4\n'), "degenerate")
    res = sw.run(sc, x64=True)
    opt = optimize(get_preset("hoffmann2022"), flops=5.76e23)
    for k in ("params", "tokens", "loss", "tokens_per_param", "flops"):
        for p, v in res["quantiles"][k].items():
            assert v == pytest.approx(opt[k], rel=1e-12), (k, p)
    assert res["recommendation"]["expected_regret"] == pytest.approx(0.0, abs=1e-9)


def test_data_constrained_example_converges():
    res = sw.run(scn.example("bloomberggpt"), samples=8192)
    assert res["converged_fraction"] == 1.0
    assert res["quantiles"]["epochs"]["p50"] > 1
    for name in ("h100-cluster", "serving"):
        assert sw.run(scn.example(name), samples=4096)["converged_fraction"] == 1.0


@pytest.mark.slow
def test_device_count_does_not_change_the_result_via_cli(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text(SCEN.replace("samples = 20000", "samples = 400000"))
    outs = {}
    for dev in (1, 4):
        out = tmp_path / f"d{dev}.json"
        r = cli(["sweep", str(f), "--host-devices", str(dev), "--chunk-size", "65536", "-f", "json", "-o", str(out),
                 "-q"])
        assert r.returncode == 0, r.stderr
        outs[dev] = strip(json.loads(out.read_text()))
    assert json.dumps(outs[1], sort_keys=True) == json.dumps(outs[4], sort_keys=True)


def test_sweep_cli_json_keys(tmp_path):
    r = runner.invoke(app,
                      ["sweep", "--example", "h100-cluster", "--samples", "5000", "--candidates", "8", "-f", "json",
                       "-q"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert set(res["quantiles"]["params"]) == set(accumulators.QUANTILES)
    for k in ("params", "expected_loss", "expected_regret", "p95_regret", "p_regret_below_1pct"):
        assert k in res["recommendation"]
    for k in ("seed", "chunk_size", "devices", "backend", "jax_version", "x64"):
        assert k in res["run"]
    assert res["samples"] == 5000 and res["converged_fraction"] == 1.0


def test_bootstrap_draws_from_a_law_file(tmp_path):
    """uncertainty = "bootstrap" samples whole rows of the file's draws (log A, log B, log E,
    alpha, beta), each with probability 1/B."""
    import tomllib

    rows = np.array([[6.18, 7.64, 0.597, 0.348, 0.366], [6.0, 7.9, 0.60, 0.33, 0.38], [6.3, 7.5, 0.59, 0.36, 0.35]])
    law = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658,
           "bootstrap": {"draws": rows.tolist(), "cov": np.cov(rows.T).tolist()}}
    (tmp_path / "law.json").write_text(json.dumps(law))
    sc = scn.from_dict(tomllib.loads('samples = 3000\n[law]\nfile = "law.json"\nuncertainty = "bootstrap"\n'
                                     '[budget]\nflops = 1e24\n[recommend]\ncandidates = 0\n'), "boot", tmp_path)
    law_s, b, a = _raw(sc, 3000, jnp.float64)
    got = np.stack([np.asarray(v) for v in law_s], axis=1)
    match = (np.abs(got[:, None, :] - rows[None]) < 1e-12).all(axis=2)
    assert match.any(axis=1).all()
    assert np.allclose(match.mean(axis=0), 1 / 3, atol=0.03)
    res = sw.run(sc)
    assert res["uncertainty"] == "bootstrap" and res["converged_fraction"] == 1.0
    # three laws -> at most three distinct optimal sizes at a fixed budget
    assert res["quantiles"]["params"]["p01"] < res["quantiles"]["params"]["p99"]


def test_wide_sums_stay_exact_past_int64():
    """Loss sums at 2^24 overflow one int64 after ~3e11 samples: the host adds wide integers."""
    rng = np.random.default_rng(0)
    parts = [int(v) for v in rng.integers(-(2**62), 2**62, 64)] + [2**62 - 1] * 64  # legal chunk sums
    acc = accumulators.WideSum.empty(1)
    for c in parts:
        acc = acc.merge(accumulators.WideSum(np.array([c >> 32]), np.array([c & 0xFFFFFFFF])))
    assert int(acc.hi[0]) * 2**32 + int(acc.lo[0]) == sum(parts) and abs(sum(parts)) > 2**63
    assert acc.value()[0] == pytest.approx(float(sum(parts)), rel=1e-15)
    # the device side: a chunk's fixed-point sum, split into the same words
    x = jnp.asarray(rng.uniform(-3000, 3000, 1000))
    w = accumulators.fixed_point_sum(x, 24, jnp.ones(1000, bool))
    exact = sum(int(round(float(v) * 2**24)) for v in np.asarray(x))
    assert int(w.hi) * 2**32 + int(w.lo) == exact


def test_samples_without_a_usable_optimum_are_counted_not_summarised():
    """Budgets under 6 FLOPs fit no model (N >= 1, D >= 1): such samples count as not
    converged and stay out of the quantiles and the regret; the budget itself is summarised."""
    sc = scn.from_dict({"samples": 8192, "budget": {"flops": {"dist": "loguniform", "low": 1.0, "high": 1e24}},
                        "recommend": {"candidates": 8}}, "test")
    res = sw.run(sc)
    p_bad = math.log(6.0) / math.log(1e24)  # P(C < 6) under the log-uniform
    sd = math.sqrt(p_bad * (1 - p_bad) / 8192)
    assert abs((1 - res["converged_fraction"]) - p_bad) < 4 * sd
    assert res["stats"]["params"]["min"] >= 1.0 and res["stats"]["flops"]["min"] < 6.0
    rec = res["recommendation"]
    assert rec["expected_regret"] >= 0 and math.isfinite(rec["expected_loss"])
    assert rec["expected_loss"] >= rec["expected_optimal_loss"]
    none = sw.run(scn.from_dict({"samples": 2000, "budget": {"flops": 1.0}}, "test"))
    assert none["converged_fraction"] == 0 and none["recommendation"] is None
    assert "no pilot sample" in none["recommendation_note"]
    assert set(none["quantiles"]) == {"flops"}


def test_run_leaves_the_callers_precision_setting_alone():
    jax.config.update("jax_enable_x64", False)
    try:
        res = sw.run(scn.from_dict({"samples": 1000, "budget": {"flops": 1e23}, "recommend": {"candidates": 0}}, "t"))
        assert not jax.config.jax_enable_x64 and res["samples"] == 1000
    finally:
        jax.config.update("jax_enable_x64", True)


def test_a_sweep_from_flags_is_the_scenario_it_describes():
    """`sweep --gpu --count --hours LO:HI --mfu LO:HI` (no file) = the same scenario written as
    TOML: the same quantiles to the bit; without ranges and uncertainty it is `optimize`'s answer;
    the law's own uncertainty is the default; errors name the flags."""
    import tomllib

    flags = ["--gpu", "h100-sxm", "--count", "1024", "--hours", "500:800", "--mfu", "0.35:0.45", "--samples", "20000",
             "-q", "-f", "json"]
    a = runner.invoke(app, ["sweep", *flags])
    assert a.exit_code == 0, a.output
    toml = ('samples = 20000\n[law]\npreset = "besiroglu2024"\nuncertainty = "covariance"\n[budget]\n'
            'gpu = "h100-sxm"\ncount = 1024\nhours = { dist = "uniform", low = 500, high = 800 }\n'
            'mfu = { dist = "uniform", low = 0.35, high = 0.45 }\n')
    b = sw.run(scn.from_dict(tomllib.loads(toml), "same"))
    got = json.loads(a.stdout)
    assert got["uncertainty"] == "covariance" and got["quantiles"] == b["quantiles"]
    assert got["recommendation"]["params"] == b["recommendation"]["params"]
    fixed = runner.invoke(app, ["sweep", "--flops", "5.76e23", "--law", "hoffmann2022", "--samples", "1000", "--x64",
                                "-q", "-f", "json"])
    assert fixed.exit_code == 0, fixed.output
    opt = optimize(get_preset("hoffmann2022"), flops=5.76e23)
    assert json.loads(fixed.stdout)["quantiles"]["params"]["p50"] == pytest.approx(opt["params"], rel=1e-9)
    sc = scn.from_flags(flops="1e23:1e24")  # a FLOP range is log-uniform
    assert sc.flops.kind == "loguniform" and (sc.flops.a, sc.flops.b) == (1e23, 1e24)
    for args, flag in ((["--gpu", "h100-sxm", "--count", "8", "--mfu", "0.4", "--hours", "800:500"], "--hours"),
                       (["--law", "hoffmann2022"], "--flops"),
                       (["--flops", "1e23", "--uncertainty", "bootstrap"], "--uncertainty"),
                       (["--example", "serving", "--gpu", "h100-sxm"], "--gpu")):
        r = runner.invoke(app, ["sweep", *args])
        assert r.exit_code == 2 and r.stderr.startswith(f"error: {flag}:"), r.output
