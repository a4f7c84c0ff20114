"""Ladder design by simulation (budgetopt.ladder, `budgetopt ladder`): each check against
something the simulation does not compute itself — the true law, NumPy parabola fits of the
noise-free points, Open-Athena's closed-form vertex shift, the 1/sqrt(n) law of averages."""

import dataclasses
import json
import math

import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from budgetopt.cli.commands import app
from budgetopt.core.errors import InputError
from budgetopt.fit import ladder
from budgetopt.model import laws
from budgetopt.model.allocation import closed_form_x
from budgetopt.model.laws import LawSpec, Parametric

BUDGETS = tuple(10.0**k for k in range(17, 22))
TARGET = 1e24
CHIN = laws.resolve_law("besiroglu2024")
# Open-Athena's "asymmetric" surface (scaling-law-analysis, experiments/common.py): alpha/beta = 3
# with alpha + beta = 0.62, and the Chinchilla A, B, E
ASYM = LawSpec("asymmetric", Parametric(math.log(406.4), math.log(410.7), math.log(1.69), 0.465, 0.155))


def sim(designs, law=CHIN, prior="none", noise=0.0, n=10, approach="vpnls", **kw):
    return ladder.simulate(designs, law, prior, ladder.Noise(noise), TARGET, n, approach, **kw)


def golden_log_n_opt(law: LawSpec, c: float) -> float:
    """log N*(C) of the parametric law by a float64 golden-section search on the isoFLOP curve
    (to ~1e-7: the curve is flat to rounding that close to its minimum)."""
    p = law.params
    f = lambda x: math.exp(p.log_A - p.alpha * x) + math.exp(p.log_B - p.beta * (math.log(c / 6) - x))  # noqa: E731
    lo, hi = 5.0, 40.0
    g = (math.sqrt(5) - 1) / 2
    for _ in range(200):
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        lo, hi = (lo, b) if f(a) < f(b) else (a, hi)
    return (lo + hi) / 2


def true_log_n_opt(law: LawSpec, c: float) -> float:
    """log N*(C) from the first-order condition alpha A N^-alpha = beta B D^-beta with D = C/6N,
    in NumPy (Hoffmann et al. 2022 eq. 4), checked against the golden-section search."""
    p = law.params
    x = (math.log(p.alpha / p.beta) + p.log_A - p.log_B + p.beta * math.log(c / 6)) / (p.alpha + p.beta)
    assert x == pytest.approx(golden_log_n_opt(law, c), abs=1e-6)
    return x


@pytest.mark.parametrize("approach", ["vpnls", "3"])
def test_zero_noise_recovers_the_true_optimum(approach):
    designs = [ladder.Design("a", BUDGETS, 5, 4.0), ladder.Design("b", BUDGETS[:3], 7, 2.0, centre=2.0)]
    out = sim(designs, approach=approach)
    assert out.ok.all() and out.converged.all()
    # VPNLS's exponents are exact to its last zoom step (3.6e-8), which the extrapolation over
    # 3-7 decades of compute turns into ~1e-6 in log N*; Approach 3 refines to machine precision
    assert np.abs(out.log_n_error).max() < (1e-5 if approach == "vpnls" else 1e-9)
    assert np.abs(out.regret).max() < 1e-10 and np.abs(out.compute_lost).max() < 1e-8
    # the truth itself, independently: the first-order condition, checked by a golden section
    x = true_log_n_opt(CHIN, TARGET)
    law = Parametric(*(jnp.float64(v) for v in CHIN.params))
    assert float(closed_form_x(law, jnp.float64(math.log(TARGET)))) == pytest.approx(x, abs=1e-7)


def test_approach3_converges_on_noisy_ladders_and_is_no_better_than_vpnls():
    """Huber (delta 1e-3) on log-normal noise is close to least absolute deviations: less
    efficient than VPNLS's least squares, never better on the same ladders."""
    designs = [ladder.Design("a", BUDGETS, 5, 4.0)]
    a3 = sim(designs, prior="covariance", noise=0.005, n=64, approach="3")
    vp = sim(designs, prior="covariance", noise=0.005, n=64, approach="vpnls")
    assert a3.converged.mean() > 0.95
    assert np.std(a3.log_n_error) > 0.9 * np.std(vp.log_n_error)


def parabola_forecast(law: LawSpec, design: ladder.Design) -> float:
    """Approach 2 on the noise-free points, in NumPy: parabolas of L in log N per budget, their
    vertices regressed on log C, evaluated at the target."""
    p = law.params
    xs = []
    for c in design.budgets:
        x0 = true_log_n_opt(law, c) + math.log(design.centre)  # the prior is the truth here
        x = x0 + math.log(design.spread) * np.linspace(-1, 1, design.points)
        loss = np.exp(p.log_E) + np.exp(p.log_A - p.alpha * x) + np.exp(p.log_B - p.beta * (np.log(c / 6) - x))
        c2, c1, _ = np.polyfit(x, loss, 2)
        xs.append(-c1 / (2 * c2))
    slope, icpt = np.polyfit(np.log(design.budgets), xs, 1)
    return icpt + slope * math.log(TARGET)


def open_athena_vertex_shift(alpha: float, beta: float, w: float, n: int) -> float:
    """Open-Athena's closed form of Approach 2's vertex shift in decades of N for a grid of n
    points evenly spaced in [-w, w] decades around the true optimum (results/article/static/
    scaling_parameter_errors.md): independent of C, so it is the N* intercept error."""
    x = np.linspace(-w, w, n)
    lt = beta / alpha * 10 ** (-alpha * x) + 10 ** (beta * x)
    a1 = np.sum(x * lt) / np.sum(x**2)
    a2 = (n * np.sum(x**2 * lt) - np.sum(x**2) * np.sum(lt)) / (n * np.sum(x**4) - np.sum(x**2) ** 2)
    return -a1 / (2 * a2)


def test_zero_noise_approach2_has_exactly_its_parabola_bias():
    designs = [ladder.Design("centred", BUDGETS, 15, 16.0), ladder.Design("off", BUDGETS, 5, 4.0, centre=1.5),
               ladder.Design("narrow", BUDGETS[1:], 3, 2.0, centre=0.7)]
    out = sim(designs, law=ASYM, approach="2")
    assert out.ok.all() and out.converged.all()
    for i, d in enumerate(designs):
        want = parabola_forecast(ASYM, d) - true_log_n_opt(ASYM, TARGET)
        assert np.allclose(out.log_n_error[i], want, rtol=1e-7, atol=1e-9), d.name
    # the centred design is Open-Athena's setup: 15 points over ±16x (W = log10 16 decades) on the
    # alpha/beta = 3 surface; their closed form gives a shift of +0.114 decades, N* +30 %
    shift = open_athena_vertex_shift(0.465, 0.155, math.log10(16), 15)
    assert shift == pytest.approx(0.1142, abs=1e-4)
    assert out.log_n_error[0, 0] == pytest.approx(shift * math.log(10), rel=1e-6)


def test_reported_approach2_bias_on_an_asymmetric_surface_has_open_athenas_sign_and_size():
    """Setup: Open-Athena's asymmetric surface (alpha = 0.465, beta = 0.155), budgets 1e17-1e21,
    15 sizes per budget over ±16x, log-loss noise 0.01, 200 ladders. Their closed form says
    Approach 2 overestimates N* by 30 % (D* under by 23 %) whatever the budget; VPNLS is unbiased."""
    d = ladder.Design("oa", BUDGETS, 15, 16.0)
    rows = {}
    for approach in ("2", "vpnls"):
        res = ladder.design_ladders(ASYM, TARGET, [d], prior="none", noise=ladder.Noise(0.01), approach=approach,
                                    ladders=200)
        rows[approach] = res["designs"][0]
    expected = 10 ** open_athena_vertex_shift(0.465, 0.155, math.log10(16), 15) - 1  # +0.3007
    bias = rows["2"]["n_bias"]
    assert bias > 0 and 0.5 * expected < bias < 2 * expected
    assert abs(rows["vpnls"]["n_bias"]) < 0.05
    assert rows["2"]["failed"] == 0


def test_forecast_error_shrinks_like_one_over_sqrt_points():
    designs = [ladder.Design("4", BUDGETS, 4, 4.0), ladder.Design("16", BUDGETS, 16, 4.0)]
    out = sim(designs, noise=0.01, n=300)
    sd = out.log_n_error.std(axis=1)
    assert 1.4 < sd[0] / sd[1] < 2.6  # sqrt(16 / 4) = 2
    assert out.converged.mean() > 0.95


def test_results_do_not_depend_on_chunk_or_lane_and_a_design_sees_the_same_laws():
    designs = [ladder.Design("a", BUDGETS, 3, 2.0), ladder.Design("b", BUDGETS[2:], 5, 4.0)]
    a = sim(designs, prior="covariance", noise=0.01, n=70, chunk=ladder.BLOCK)
    b = sim(designs, prior="covariance", noise=0.01, n=70, chunk=5 * ladder.BLOCK)
    for f in ladder.Outcome._fields:
        assert np.array_equal(getattr(a, f), getattr(b, f), equal_nan=True), f
    # the same seed and index draw the same true law for every design: the true N* error of a
    # zero-noise Approach 3 fit is 0 for both, so compare the laws through the truth's optimum
    c = sim(designs[::-1], prior="covariance", noise=0.01, n=70)
    assert np.allclose(c.log_n_error[1], a.log_n_error[0], rtol=1e-6, atol=1e-9)
    d = sim(designs, prior="covariance", noise=0.01, n=70, seed=1)
    assert not np.allclose(d.log_n_error, a.log_n_error)


def test_ladder_i_draws_the_sweeps_law_i():
    from budgetopt.core.distributions import key_words
    from budgetopt.core.runtime import jax_x64
    from budgetopt.sweep.sampling import law_sampler

    idx = np.arange(200, dtype=np.uint32)
    with jax_x64():
        cfg = ladder.Config(*(jnp.asarray(v) for v in ladder.make_config(CHIN, "covariance", ladder.Noise(), TARGET,
                                                                         7)))
        ours = ladder.true_law(cfg, "covariance", jnp.asarray(idx))
        theirs = law_sampler(CHIN, "covariance", jnp.float64)(key_words(7), jnp.asarray(idx),
                                                              jnp.zeros(200, jnp.uint32))
    assert np.array_equal(np.stack(ours), np.stack(theirs))
    assert np.std(np.asarray(ours.alpha)) > 0.005  # drawn, not the mean


def test_the_chunk_kernel_is_traced_once(monkeypatch):
    calls = []
    inner = ladder.simulate_one

    def counted(*a, **k):
        calls.append(1)
        return inner(*a, **k)

    monkeypatch.setattr(ladder, "simulate_one", counted)
    monkeypatch.setattr(ladder, "_PROGRAMS", {})  # not the programs earlier tests traced
    designs = [ladder.Design("a", BUDGETS, 3, 2.0)]
    ladder.simulate(designs, CHIN, "none", ladder.Noise(0.0), 1e24, 5 * ladder.BLOCK, "2",
                    chunk=ladder.BLOCK)  # 5 chunks
    # another law, noise, target and seed: run-time arguments of the same program
    ladder.simulate(designs, ASYM, "none", ladder.Noise(0.02, 0.01, 0.001), 3e23, 2 * ladder.BLOCK, "2", seed=5,
                    chunk=ladder.BLOCK)
    assert len(calls) == 1


def test_failures_are_counted_and_keep_a_design_from_being_recommended():
    # three sizes per budget within ±1.2x under 1 % noise: on most ladders some parabola opens
    # downwards or puts its vertex outside the sizes
    bad = ladder.Design("bad", BUDGETS, 3, 1.2)
    good = ladder.Design("good", BUDGETS, 7, 4.0)
    res = ladder.design_ladders(CHIN, TARGET, [bad, good], prior="none", noise=ladder.Noise(0.01), approach="2",
                                ladders=100)
    rows = {r["design"]: r for r in res["designs"]}
    assert rows["bad"]["not_converged"] > 50 and rows["bad"]["failed"] > 0 and not rows["bad"]["eligible"]
    assert rows["good"]["eligible"] and res["recommended"] == "good"
    assert any(w.startswith("bad:") for w in res["warnings"])
    # the counts are the ladders' own: a forecast exists iff >= 2 curves kept an interior minimum
    out = sim([bad, good], noise=0.01, n=100, approach="2")
    assert rows["bad"]["failed"] == int((~out.ok[0]).sum())
    assert rows["bad"]["not_converged"] == int((~out.converged[0]).sum())


def test_recommendation_rules():
    rows = [{"design": n, "cost_flops": c, "regret_p95": r, "eligible": e}
            for n, c, r, e in (("cheap", 1.0, 3e-3, True), ("mid", 2.0, 8e-4, True), ("dear", 5.0, 2e-4, True),
                               ("broken", 0.5, 1e-5, False))]
    assert ladder.choose_design(rows, 1e-3, None)["design"] == "mid"
    assert ladder.choose_design(rows, 1e-4, None)["design"] is None
    assert ladder.choose_design(rows, None, 3.0)["design"] == "mid"
    assert ladder.choose_design(rows, None, None)["design"] == "dear"
    assert ladder.choose_design(rows, 1e-3, 1.5)["design"] is None


def test_cost_is_the_sum_of_the_runs_budgets():
    d = ladder.Design("x", (1e18, 1e19), 5, 3.0, repeats=2)
    lay = ladder.design_table([d], CHIN.params)
    n, c = np.exp(lay.log_n[0]), np.exp(lay.log_c[0])[:, None]
    six_nd = 6 * n * (c / (6 * n))  # D = C / 6N for every run of a curve
    assert d.separate_cost == pytest.approx(float((six_nd * lay.w[0]).sum()), rel=1e-12) and d.runs == 20
    # sizes: centre/spread .. centre*spread around the prior's optimum, each repeated
    x0 = true_log_n_opt(CHIN, 1e18)
    assert np.log(n[0, ::2][[0, -1]]) == pytest.approx([x0 - math.log(3), x0 + math.log(3)], abs=1e-6)
    assert len(set(lay.slot[0][lay.w[0] > 0].tolist())) == 20  # every run its own noise


def test_family_and_designs_file(tmp_path):
    fam = ladder.family(TARGET)
    assert len(fam) == 24 and len({d.name for d in fam}) == 24
    cheapest = min(d.separate_cost for d in fam)
    assert cheapest / TARGET == pytest.approx(3 * (1 + 10**-0.5 + 0.1 + 10**-1.5 + 0.01) * 1e-5)
    f = tmp_path / "d.toml"
    f.write_text('[[design]]\nname = "x"\nbudgets = {low = 1e18, high = "1e20", count = 3}\npoints = 5\nspread = 4\n'
                 '[[design]]\nbudgets = [1e19, 1e20]\npoints = 3\nspread = 2.5\ncentre = 1.5\nrepeats = 2\n')
    a, b = ladder.read_designs(f)
    assert a.budgets == pytest.approx((1e18, 1e19, 1e20)) and (a.points, a.spread, a.centre) == (5, 4.0, 1.0)
    assert b.name == "design[1]" and (b.repeats, b.centre) == (2, 1.5)
    f.write_text("[[design]]\nbudgets = [1e19]\npoints = 2\nspread = 2\n")
    with pytest.raises(InputError, match="points"):
        ladder.read_designs(f)


def test_cli_json_csv_and_table(tmp_path):
    f = tmp_path / "d.toml"
    f.write_text('[[design]]\nname = "small"\nbudgets = [1e18, 1e19, 1e20]\npoints = 5\nspread = 4\n'
                 '[[design]]\nname = "wide"\nbudgets = [1e18, 1e19, 1e20]\npoints = 9\nspread = 4\n')
    runner = CliRunner()
    common = ["ladder", "--designs", str(f), "--ladders", "40", "--at", "1e23", "--gpu", "h100-sxm", "--max-regret",
              "1"]
    r = runner.invoke(app, [*common, "-f", "json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    lib = ladder.design_ladders(CHIN, 1e23, ladder.read_designs(f), ladders=40, max_regret=1.0,
                                noise=ladder.model_error_noise(ladder.Noise(), "calibrated", "vpnls"))
    for got, want in zip(res["designs"], lib["designs"]):
        for k in ("cost_flops", "n_bias", "n_error_p95", "regret_p95", "failed"):
            assert got[k] == pytest.approx(want[k], rel=1e-12, nan_ok=True), k
    assert res["recommended"] == "small" and res["prior"] == "covariance"  # the cheapest meeting 1 nat
    for r in res["designs"]:  # D* = C / 6N*: its bias mirrors N*'s
        assert (1 + r["d_bias"]) * (1 + r["n_bias"]) == pytest.approx(1.0, rel=1e-12)
    assert res["designs"][0]["gpu_hours"] == pytest.approx(res["designs"][0]["cost_flops"] / (989e12 * 0.4 * 3600),
                                                           rel=1e-3)
    r = runner.invoke(app, [*common, "-f", "csv"])
    assert r.exit_code == 0 and r.stdout.splitlines()[0].startswith("design,")
    r = runner.invoke(app, [*common])
    assert r.exit_code == 0 and "recommended (*): small" in r.stdout


def test_noise_defaults_to_a_fitted_files_residuals(tmp_path):
    f = tmp_path / "law.json"
    law = {"E": 1.8, "A": 480, "B": 2000, "alpha": 0.35, "beta": 0.37, "rmse_log_loss": 0.012}
    f.write_text(json.dumps(law))
    spec = laws.resolve_law(law_file=str(f))
    assert spec.residual_sd == 0.012
    r = CliRunner().invoke(app, ["ladder", "--law-file", str(f), "--ladders", "10", "--approach", "2", "-f", "json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["noise"]["sigma"] == 0.012 and res["prior"] == "none"
    # with bootstrap draws the true laws are the draws (prior "bootstrap"), and they differ by ladder
    draws = [[math.log(480), math.log(2000), math.log(1.8), a, a + 0.02] for a in (0.30, 0.35, 0.40)]
    f.write_text(json.dumps({**law, "bootstrap": {"draws": draws}}))
    spec = laws.resolve_law(law_file=str(f))
    assert ladder.prior_kind(spec, None) == "bootstrap"
    fixed = sim([ladder.Design("a", BUDGETS, 5, 4.0)], law=spec, prior="none", n=20, approach="2")
    drawn = sim([ladder.Design("a", BUDGETS, 5, 4.0)], law=spec, prior="bootstrap", n=20, approach="2")
    # zero noise: Approach 2's parabola bias depends only on (alpha, beta), so one value per law
    assert len(np.unique(np.round(fixed.log_n_error, 9))) == 1
    assert len(np.unique(np.round(drawn.log_n_error, 9))) == 3


def test_the_p95_monte_carlo_interval_covers_the_true_quantile():
    """The order-statistic interval of the p95 regret covers the true 95th percentile about 95 %
    of the time: uniform samples, whose 0.95-quantile is 0.95."""
    rng = np.random.default_rng(0)
    hits = []
    for _ in range(400):
        q, lo, hi = ladder.quantile_band(rng.uniform(size=1000), 0.95)
        assert lo <= q <= hi
        hits.append(lo <= 0.95 <= hi)
    assert 0.92 <= np.mean(hits) <= 0.99


def test_a_ladder_dearer_than_the_run_and_a_far_target_are_said():
    """A recommended ladder costing more than the target run is a warning with the ratio
    (Σ 6ND over the target, computed here); the target's distance from the law's fitted range is
    noted as `optimize` notes it (the prior's optimum at the target, closed form)."""
    target = 1e21  # inside besiroglu2024's fitted compute (6e18-3e21)
    dear = ladder.Design("dear", (3e20, 6e20), 7, 4.0, repeats=4)
    res = ladder.design_ladders(CHIN, target, [dear], prior="none", noise=ladder.Noise(0.01), ladders=100)
    assert res["recommended"] == "dear"
    cost = sum(b * 7 * 4 for b in dear.budgets)  # each run of a budget's isoFLOP curve costs that budget
    assert res["designs"][0]["cost_flops"] == pytest.approx(cost, rel=1e-9)
    assert any(f"costs {cost / target:.3g}x the target run" in w for w in res["warnings"])
    assert res["extrapolation"]["factors"]["flops"] == 1.0
    far = ladder.design_ladders(CHIN, 3e27, [ladder.Design("d", (1e20, 1e21), 5, 2.0)], prior="none", ladders=100)
    assert far["extrapolation"]["factors"]["flops"] == pytest.approx(3e27 / 3e21, rel=1e-9)
    assert not any("costs" in w for w in far["warnings"])
    from budgetopt.core.runtime import jax_x64

    with jax_x64():
        n = math.exp(float(closed_form_x(CHIN.params, jnp.log(jnp.float64(3e27)))))
    assert far["extrapolation"]["factors"]["params"] == pytest.approx(n / 1.6e10, rel=1e-6)


def test_the_model_error_moves_each_forecast_by_drift_and_spread_times_the_decades_extrapolated(tmp_path):
    """--model-error: every ladder's ln N* forecast moves by (drift + sd z) x log10(target / top
    budget) against the same ladder without it (same laws and noise); z is one draw per ladder,
    shared by the designs; the calibrated default is the package entry for the approach."""
    from budgetopt.core.files import data_toml

    designs = [ladder.Design("low", (1e18, 1e19), 5, 4.0), ladder.Design("high", (1e19, 1e20), 5, 4.0)]
    base = ladder.Noise(sigma=0.005)
    none = ladder.simulate(designs, CHIN, "covariance", base, 1e23, 400, "vpnls")
    drift_only = dataclasses.replace(base, model_drift_per_decade=-0.2, model_error="test")
    shifted = ladder.simulate(designs, CHIN, "covariance", drift_only, 1e23, 400, "vpnls")
    for i, top in enumerate((1e19, 1e20)):
        np.testing.assert_allclose(shifted.log_n_error[i] - none.log_n_error[i], -0.2 * math.log10(1e23 / top),
                                   atol=1e-9)
    spread = dataclasses.replace(base, model_sd_per_decade=0.3, model_error="test")
    noisy = ladder.simulate(designs, CHIN, "covariance", spread, 1e23, 400, "vpnls")
    z = [(noisy.log_n_error[i] - none.log_n_error[i]) / math.log10(1e23 / top) for i, top in enumerate((1e19, 1e20))]
    np.testing.assert_allclose(z[0], z[1], atol=1e-9)  # one draw per ladder, whatever the design
    assert np.std(z[0]) == pytest.approx(0.3, rel=0.1) and abs(np.mean(z[0])) < 0.06
    cal = data_toml("model_error.toml")
    for approach, key in (("vpnls", "vpnls"), ("3", "approach3"), ("2", "approach2")):
        n = ladder.model_error_noise(base, "calibrated", approach)
        assert n.model_drift_per_decade == cal[key]["n_star_drift_per_decade"]
        assert n.model_sd_per_decade == cal[key]["n_star_sd_per_decade"]
    f = tmp_path / "me.toml"
    f.write_text("n_star_drift_per_decade = 0.1\nn_star_sd_per_decade = 0.05\n")
    assert ladder.model_error_noise(base, str(f), "vpnls").model_drift_per_decade == 0.1
    r = CliRunner().invoke(app, ["ladder", "--model-error", "bogus", "--ladders", "10"])
    assert r.exit_code == 2 and "--model-error" in r.output
    f.write_text("n_star_drift_per_decade = 0.1\n")
    r = CliRunner().invoke(app, ["ladder", "--model-error", str(f), "--ladders", "10"])
    assert r.exit_code == 2 and "n_star_sd_per_decade" in r.output


def test_with_the_calibrated_model_error_the_family_no_longer_recommends_the_smallest_ladder():
    """Issue 27's acceptance: for a 1e24 target, the exact-law assumption picks a ladder topping
    out at 1e19 (five decades below); with the calibrated model error the top budget is 1e21."""
    exact = ladder.design_ladders(CHIN, 1e24, ladders=100, noise=ladder.model_error_noise(ladder.Noise(), "none",
                                                                                            "vpnls"))
    calibrated = ladder.design_ladders(CHIN, 1e24, ladders=100,
                                       noise=ladder.model_error_noise(ladder.Noise(), "calibrated", "vpnls"))
    assert exact["recommended"].startswith("1e19/") and calibrated["recommended"].startswith("1e21/")
