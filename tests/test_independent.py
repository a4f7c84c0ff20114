"""Numbers checked against something the library did not compute: the sweep's draws rebuilt in
NumPy from the same uniforms, the fits against NumPy's own least squares on noise-free data,
penalties and multipliers against brute force, and every option's value through the CLI."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import ndtri
from typer.testing import CliRunner

from budgetopt.cli import plots
from budgetopt.cli.commands import app
from budgetopt.core.distributions import key_words, uniform
from budgetopt.fit import approach2, approach3
from budgetopt.fit import runs as runs_mod
from budgetopt.model.laws import LawSpec, data_constrained, get_preset
from budgetopt.plan.audit import Model, audit_model
from budgetopt.sweep import scenario as scn
from budgetopt.sweep.sampling import STREAM, make_sampler, sample_indices

from . import reference as ref

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()
_spec = importlib.util.spec_from_file_location("make_runs", ROOT / "scripts" / "make_runs.py")
make_runs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_runs)
BESIROGLU = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}


def run_json(*args) -> dict | list:
    r = runner.invoke(app, [*args, "-f", "json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


# ---------------------------------------------------------------------------------------------- sweep inputs

SCENARIO = {"law": {"preset": "besiroglu2024", "uncertainty": "covariance"},
            "budget": {"gpu": "h100-sxm", "count": 256, "mfu": {"dist": "uniform", "low": 0.3, "high": 0.5},
                       "hours": {"dist": "triangular", "low": 400, "mode": 700, "high": 720}}}
N_DRAWS = 200_000


@pytest.fixture(scope="module")
def draws():
    sc = scn.from_dict(SCENARIO)
    lo, hi = sample_indices(0, N_DRAWS)
    return sc, lo, hi, make_sampler(sc, jnp.float64)(lo, hi)


def _u(sc, lo, hi, stream) -> np.ndarray:
    return np.asarray(uniform(key_words(sc.seed), lo, hi, stream, jnp.float64))


def test_law_draws_are_the_cholesky_mix_of_the_same_uniforms(draws):
    """theta = mean + L z with L = numpy's Cholesky of the preset's covariance and z = SciPy's
    ndtri of the generator's uniforms: the sweep's unrolled 15 multiply-adds give the same."""
    sc, lo, hi, d = draws
    cov = sc.law.covariance
    z = np.stack([ndtri(_u(sc, lo, hi, STREAM.law + j)) for j in range(5)])
    mean = np.array([float(v) for v in sc.law.params])
    theta = mean[:, None] + np.linalg.cholesky(cov) @ z
    got = np.stack([np.asarray(v) for v in d.law])
    np.testing.assert_allclose(got, theta, rtol=1e-12, atol=1e-12)


def test_law_draws_have_the_presets_mean_and_covariance(draws):
    sc, _, _, d = draws
    got = np.stack([np.asarray(v) for v in d.law])
    cov = sc.law.covariance
    mean = np.array([float(v) for v in sc.law.params])
    se = np.sqrt(np.diag(cov) / N_DRAWS)
    assert np.all(np.abs(got.mean(axis=1) - mean) < 4 * se)
    emp = np.cov(got)
    sd = np.sqrt(np.diag(cov))
    # correlations to +-0.02 and variances to 2 % (the sampling error at 2e5 draws is ~0.3 %)
    np.testing.assert_allclose(emp / np.outer(sd, sd), cov / np.outer(sd, sd), atol=0.02)
    np.testing.assert_allclose(np.diag(emp), np.diag(cov), rtol=0.02)


def test_compute_is_count_hours_seconds_peak_mfu_of_the_same_uniforms(draws):
    sc, lo, hi, d = draws
    u_h, u_m = _u(sc, lo, hi, STREAM.hours), _u(sc, lo, hi, STREAM.mfu)
    low, mode, high = 400.0, 700.0, 720.0
    f = (mode - low) / (high - low)  # the triangular distribution's inverse CDF, written out
    hours = np.where(u_h < f, low + np.sqrt(u_h * (high - low) * (mode - low)),
                     high - np.sqrt((1 - u_h) * (high - low) * (high - mode)))
    mfu = 0.3 + 0.2 * u_m
    c = 256 * hours * 3600 * 989e12 * mfu  # the catalog's dense bf16 peak of an H100 SXM
    np.testing.assert_allclose(np.exp(np.asarray(d.budget.log_c)), c, rtol=1e-12)


# ---------------------------------------------------------------------------------------------- fits

@pytest.fixture(scope="module")
def noise_free():
    rows = make_runs.make_runs(**BESIROGLU, sizes_per_budget=9, noise=0.0)
    return runs_mod.Runs(*(np.log(np.array([r[i] for r in rows])) for i in (0, 1, 3))), rows


def test_approach3_recovers_all_five_parameters_from_noise_free_runs(noise_free):
    r = approach3.fit_approach3(noise_free[0])
    for k, v in BESIROGLU.items():
        assert r[k] == pytest.approx(v, rel=1e-6), k
    assert r["converged"]


def test_approach2_vertices_are_numpys_parabolas(noise_free):
    runs, rows = noise_free
    r = approach2.fit_approach2(runs)
    c = np.array([row[2] for row in rows])
    vertices = []
    for budget in np.unique(c):
        m = c == budget
        p2, p1, _ = np.polyfit(runs.log_n[m], np.exp(runs.log_l[m]), 2)
        vertices.append((budget, math.exp(-p1 / (2 * p2))))
    assert len(r["budgets"]) == len(vertices)
    for b, (budget, n_star) in zip(r["budgets"], vertices):
        assert b["flops"] == pytest.approx(budget, rel=1e-9)
        assert b["params_opt"] == pytest.approx(n_star, rel=1e-6)
    a, _ = np.polyfit(np.log([v[0] for v in vertices]), np.log([v[1] for v in vertices]), 1)
    assert r["a"] == pytest.approx(a, rel=1e-6) and r["b"] == pytest.approx(1 - a, rel=1e-6)


# --------------------------------------------------------------------------------------- penalties and multipliers

def test_loss_penalty_against_numpy():
    """Caps at N = 1e10, D = 1e12 under 1e24 FLOPs: the loss there minus the free optimum's,
    both from the plain formula (the optimum by brute force over log N)."""
    rec = run_json("optimize", "--flops", "1e24", "--max-params", "1e10", "--max-tokens", "1e12")
    E, A, B, al, be = BESIROGLU.values()
    capped = ref.chinchilla(E, A, B, al, be, 1e10, 1e12)
    s = 1e24 / 6
    _, best = ref.brute_force_min(lambda x: ref.chinchilla(E, A, B, al, be, np.exp(x), s / np.exp(x)), 10.0, 40.0)
    assert rec["loss"] == pytest.approx(capped, rel=1e-12)
    assert rec["loss_penalty"] == pytest.approx(capped - best, rel=1e-6)


def _multiplier(loss_at, c: float) -> float:
    """C / (least compute whose optimal allocation reaches loss_at), by brute force: the optimal
    loss over a grid of log N at each C, then bisection on log C."""
    def best(log_c):
        x = np.linspace(5.0, log_c - 5.0, 20_001)
        return loss_at(np.exp(x), np.exp(log_c) / 6 / np.exp(x)).min()

    target = loss_at(None, None)
    lo, hi = math.log(c) - 10, math.log(c)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if best(mid) > target else (lo, mid)
    return c / math.exp(hi)


def test_compute_multiplier_under_kaplan():
    spec = get_preset("kaplan2020")
    p = spec.params
    nc, dc, an, ad = math.exp(p.log_Nc), math.exp(p.log_Dc), p.alpha_N, p.alpha_D
    m = Model("x", "x", 175e9, 300e9)
    c = 6 * m.params * m.tokens
    model_loss = ref.kaplan(nc, dc, an, ad, m.params, m.tokens)
    mult = _multiplier(lambda n, d: model_loss if n is None else ref.kaplan(nc, dc, an, ad, n, d), c)
    r = audit_model(m, spec)
    assert r["loss"] == pytest.approx(model_loss, rel=1e-12)
    assert r["compute_multiplier"] == pytest.approx(mult, rel=2e-3)


def test_compute_multiplier_under_the_data_constrained_law():
    """Unlimited unique data, but a model larger than its tokens can use: the excess parameters
    are discounted (N'), so the multiplier differs from the base law's; brute force agrees."""
    base = get_preset("muennighoff2023")
    spec = LawSpec("dc", data_constrained(base.params))
    p = base.params
    E, A, B, al, be = math.exp(p.log_E), math.exp(p.log_A), math.exp(p.log_B), p.alpha, p.beta
    m = Model("x", "x", 70e9, 300e9)
    c = 6 * m.params * m.tokens
    model_loss = ref.data_constrained(E, A, B, al, be, m.params, m.tokens, np.inf)
    mult = _multiplier(lambda n, d: model_loss if n is None else ref.data_constrained(E, A, B, al, be, n, d, np.inf), c)
    r = audit_model(m, spec)
    assert r["loss"] == pytest.approx(model_loss, rel=1e-9)
    assert r["compute_multiplier"] == pytest.approx(mult, rel=2e-3)
    assert r["compute_multiplier"] > audit_model(m, base)["compute_multiplier"]


def test_the_audit_verdict_flips_at_the_125_boundary():
    """A model sized so that its compute multiplier (brute force) is 1.25: 0.01 % fewer
    parameters is near-optimal, 0.01 % more is under-trained."""
    E, A, B, al, be = 1.69, 406.4, 410.7, 0.34, 0.28
    c = 1e24

    def mult(n):
        model_loss = ref.chinchilla(E, A, B, al, be, n, c / (6 * n))
        return _multiplier(lambda nn, dd: model_loss if nn is None else ref.chinchilla(E, A, B, al, be, nn, dd), c)

    lo, hi = math.log(5e10), math.log(5e12)  # above N_opt: under-trained side, multiplier rising
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if mult(math.exp(mid)) < 1.25 else (lo, mid)
    n = math.exp(0.5 * (lo + hi))
    spec = get_preset("hoffmann2022")
    below, above = (audit_model(Model("x", "x", n * f, c / (6 * n * f), c), spec) for f in (1 - 1e-4, 1 + 1e-4))
    assert below["compute_multiplier"] < 1.25 < above["compute_multiplier"]
    assert below["verdict"] == "near-optimal" and above["verdict"] == "under-trained"


# ---------------------------------------------------------------------------------------------- options through the CLI

def test_price_per_hour_is_device_hours_times_price():
    r = run_json("optimize", "--gpu", "h100-sxm", "--count", "1024", "--days", "30", "--price-per-hour", "2.5")
    assert r["gpu_hours"] == pytest.approx(1024 * 720,
                                           rel=1e-12) and r["cost"] == pytest.approx(1024 * 720 * 2.5, rel=1e-12)


def test_max_epochs_binds_tokens_at_epochs_times_unique():
    free = run_json("optimize", "--flops", "1e24", "--unique-tokens", "1e11", "--law", "muennighoff2023")
    assert free["epochs"] > 4  # so a cap of 4 epochs binds
    r = run_json("optimize", "--flops", "1e24", "--unique-tokens", "1e11", "--max-epochs", "4", "--law",
                 "muennighoff2023")
    assert r["tokens"] == pytest.approx(4e11, rel=1e-9) and r["epochs"] == pytest.approx(4, rel=1e-9)


@pytest.mark.parametrize("dtype,tflops", [("fp8", 1979.0), ("fp32", 67.0), ("tf32", 494.5)])
def test_dtype_sets_the_peak(dtype, tflops):
    r = run_json("optimize", "--gpu", "h100-sxm", "--count", "8", "--hours", "10", "--dtype", dtype)
    assert r["flops"] == pytest.approx(8 * tflops * 1e12 * 0.4 * 10 * 3600, rel=1e-12) and r["dtype"] == dtype


def test_ratio_sets_tokens_per_parameter():
    r = run_json("optimize", "--law", "tokens-per-param", "--ratio", "30", "--flops", "1e23")
    assert r["tokens_per_param"] == pytest.approx(30, rel=1e-12)
    assert r["params"] == pytest.approx(math.sqrt(1e23 / (6 * 30)), rel=1e-12)


@pytest.mark.parametrize("to,value", [("flops", 1e23), ("pf-days", 1e23 / 8.64e19),
                                      ("gpu-hours", 1e23 / (989e12 * 0.4 * 3600)),
                                      ("wall-days", 1e23 / (989e12 * 0.4 * 3600) / 8 / 24),
                                      ("cost", 1e23 / (989e12 * 0.4 * 3600) * 2.0)])
def test_convert_to_each_quantity(to, value):
    args = ["convert", "1e23", "--gpu", "h100-sxm", "--count", "8", "--price-per-hour", "2", "--to", to]
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and float(r.stdout) == pytest.approx(value, rel=1e-5)  # printed to 6 digits
    assert next(iter(run_json(*args).values())) == pytest.approx(value, rel=1e-12)


def test_plot_options_reach_the_figure(tmp_path, monkeypatch):
    figs = {}
    monkeypatch.setattr(plots, "save", lambda fig, path, dpi=100: figs.__setitem__(Path(path).name, fig))
    runs = tmp_path / "runs.csv"
    rows = make_runs.make_runs(**BESIROGLU, sizes_per_budget=5, noise=0.0)
    runs.write_text("params,tokens,flops,loss\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    law = tmp_path / "mine.json"
    law.write_text('{"name": "mine", "E": 1.9, "A": 400, "B": 1500, "alpha": 0.33, "beta": 0.35}')
    assert runner.invoke(app, ["plot", "frontier", "-o", str(tmp_path / "f.png"), "--law-file", str(law),
                               "--min-flops", "1e20", "--max-flops", "1e24"]).exit_code == 0
    ax = figs["f.png"].axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert "mine" in lines
    x = lines["mine"].get_xdata()
    assert x.min() == pytest.approx(1e20) and x.max() == pytest.approx(1e24)
    assert runner.invoke(app, ["plot", "isoflop", "-o", str(tmp_path / "i.png"), "--runs", str(runs)]).exit_code == 0
    # every run drawn once, at its own (N, loss), in its budget's group (an optimum marker is one point)
    pts = np.vstack([c.get_offsets() for c in figs["i.png"].axes[0].collections if len(c.get_offsets()) > 1])
    np.testing.assert_allclose(pts[np.lexsort(pts.T[::-1])], sorted((r[0], r[3]) for r in rows), rtol=1e-12)


def test_fit_filters_and_options_through_the_cli(tmp_path):
    rows = make_runs.make_runs(**BESIROGLU, sizes_per_budget=9, noise=0.0)
    path = tmp_path / "runs.csv"
    path.write_text("params,tokens,flops,loss\n" + "".join(",".join(repr(float(v)) for v in r) + "\n" for r in rows))
    losses = np.array([r[3] for r in rows])
    lo, hi = np.quantile(losses, [0.1, 0.9])
    r = run_json("fit", str(path), "--loss-min", repr(float(lo)), "--loss-max", repr(float(hi)), "--delta", "0.01")
    assert r["n_runs"] == int(np.sum((losses >= lo) & (losses <= hi)))
    assert r["delta"] == 0.01
    # compute jittered by +-2 % within each budget: a 10 % tolerance groups the 7 budgets, a 1 % one
    # splits each into its +2 % and -2 % runs (14 groups, each with an interior minimum)
    jit = tmp_path / "jittered.csv"
    jit.write_text("params,tokens,loss\n" + "".join(
        f"{float(r[0])!r},{float(r[1]) * (1.02 if i % 2 else 0.98)!r},{float(r[3])!r}\n" for i, r in enumerate(rows)))
    assert len(run_json("fit", str(jit), "--approach", "2", "--tolerance", "0.1")["budgets"]) == 7
    assert len(run_json("fit", str(jit), "--approach", "2", "--tolerance", "0.01")["budgets"]) == 14


def test_sweep_shards_and_merge_table_through_the_cli(tmp_path):
    base = ["sweep", "--example", "h100-cluster", "--samples", "30000", "--candidates", "8", "-q", "--chunk-size",
            "8192"]
    whole = run_json(*base)
    parts = []
    for i in range(3):
        out = tmp_path / f"s{i}.json"
        assert runner.invoke(app, [*base, "--shard", f"{i}/3", "-f", "json", "-o", str(out)]).exit_code == 0
        parts.append(str(out))
    merged = run_json("merge", *parts)
    assert merged["state"] == whole["state"] and merged["quantiles"] == whole["quantiles"]
    table = runner.invoke(app, ["merge", *parts, "-f", "table"])
    assert table.exit_code == 0 and "30,000 samples" in table.stdout
    assert f"{whole['quantiles']['params']['p50'] / 1e9:.3g}B" in table.stdout
