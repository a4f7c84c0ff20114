"""Fitting laws from runs: recovery on synthetic data, the published Chinchilla refit on the
real points, agreement with a SciPy L-BFGS-B loop, the bootstrap, Approach 2, bad CSVs."""

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from budgetopt.cli.commands import app
from budgetopt.fit import approach2, approach3
from budgetopt.fit import runs as runs_mod

ROOT = Path(__file__).resolve().parent.parent.parent
DATA = ROOT.parent / "shared" / "data" / "chinchilla_fig4_epoch.csv"
TRUE = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
runner = CliRunner()

_spec = importlib.util.spec_from_file_location("make_runs", ROOT / "scripts" / "make_runs.py")
make_runs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_runs)


def write_runs(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["params", "tokens", "flops", "loss"])
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    rows = make_runs.make_runs(**TRUE, sizes_per_budget=12, noise=0.001, seed=1)
    return runs_mod.read_runs(write_runs(tmp_path_factory.mktemp("runs") / "runs.csv", rows))


@pytest.fixture(scope="module")
def synthetic_fit(synthetic):
    return approach3.fit_approach3(synthetic, bootstrap=40, seed=3)


def test_recovers_a_known_law(synthetic_fit):
    r = synthetic_fit
    for k in ("E", "alpha", "beta"):
        assert r[k] == pytest.approx(TRUE[k], rel=0.01), k
    for k in ("A", "B"):
        assert r[k] == pytest.approx(TRUE[k], rel=0.10), k
    assert r["converged"] and r["grad_norm"] < 1e-8 and not r["warnings"]
    assert r["rmse_log_loss"] == pytest.approx(0.001, rel=0.3)  # the noise put in


def test_bootstrap_reproducible_and_shrinks_with_more_data(synthetic, synthetic_fit):
    again = approach3.fit_approach3(synthetic, bootstrap=40, seed=3)
    assert again["bootstrap"]["draws"] == synthetic_fit["bootstrap"]["draws"]
    b = synthetic_fit["bootstrap"]
    cov = np.array(b["cov"])
    assert cov.shape == (5, 5) and np.allclose(cov, cov.T) and b["order"] == ["log_A", "log_B", "log_E", "alpha",
                                                                              "beta"]
    assert np.allclose(np.sqrt(cov[3, 3]), b["se"]["alpha"], rtol=1e-9)
    for k, (lo, hi) in b["ci95"].items():
        assert lo <= synthetic_fit[k] * 1.02 and synthetic_fit[k] * 0.98 <= hi
    four = runs_mod.Runs(*(np.tile(v, 4) for v in synthetic))
    big = approach3.fit_approach3(four, bootstrap=40, seed=3)["bootstrap"]["se"]
    for k in ("E", "alpha", "beta"):
        assert 1.4 < b["se"][k] / big[k] < 2.9, k  # ~ sqrt(4) = 2


@pytest.mark.skipif(not DATA.exists(), reason=f"real data not found at {DATA} (Epoch AI's Chinchilla Figure 4 points)")
def test_reproduces_the_published_chinchilla_refit():
    runs = runs_mod.read_runs(DATA, n_col="Model Size", c_col="Training FLOP", drop_highest=5)
    assert len(runs.log_l) == 240
    r = approach3.fit_approach3(runs)
    assert r["E"] == pytest.approx(1.817, abs=0.005)
    assert r["alpha"] == pytest.approx(0.347, abs=0.003)
    assert r["beta"] == pytest.approx(0.367, abs=0.003)
    assert r["A"] == pytest.approx(478, rel=0.03)
    assert r["B"] == pytest.approx(2144, rel=0.05)
    # the same optimum as SciPy's L-BFGS-B from a subset of the same starts, to 1e-8 in the objective
    minimize = pytest.importorskip("scipy.optimize").minimize

    x, y, z = runs[:3]

    def f(t):
        a, b, e, al, be = t
        u = np.stack([a - al * x, b - be * y, np.full_like(x, e)])
        m = u.max(axis=0)
        p = np.exp(u - m)
        pred = m + np.log(p.sum(axis=0))
        r_ = pred - z
        d = 1e-3
        psi = np.clip(r_, -d, d)
        hub = np.where(np.abs(r_) <= d, 0.5 * r_**2, d * (np.abs(r_) - 0.5 * d))
        w = p / p.sum(axis=0)
        grad = np.array([(psi * w[0]).sum(), (psi * w[1]).sum(), (psi * w[2]).sum(), -(psi * w[0] * x).sum(),
                         -(psi * w[1] * y).sum()])
        return hub.sum(), grad

    best = min(minimize(f, s, jac=True, method="L-BFGS-B", options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 5000}).fun
               for s in approach3.start_grid()[::75])
    assert r["objective"] == pytest.approx(best, rel=1e-8)


def test_approach2_recovers_the_exponent_on_noise_free_isoflops():
    rows = make_runs.make_runs(**TRUE, sizes_per_budget=15, span=1.2, noise=0.0)
    runs = runs_mod.Runs(*(np.log(np.array([r[i] for r in rows])) for i in (0, 1, 3)))
    r = approach2.fit_approach2(runs)
    assert r["a"] == pytest.approx(TRUE["beta"] / (TRUE["alpha"] + TRUE["beta"]), abs=0.01)
    assert r["a"] + r["b"] == pytest.approx(1.0, abs=1e-9)
    assert len(r["budgets"]) == 7


def test_cli_writes_a_law_file_that_optimize_and_sweep_read(tmp_path):
    src = write_runs(tmp_path / "runs.csv", make_runs.make_runs(**TRUE, sizes_per_budget=6, noise=0.002, seed=2))
    law = tmp_path / "law.json"
    r = runner.invoke(app, ["fit", str(src), "--bootstrap", "20", "--law-out", str(law)])
    assert r.exit_code == 0, r.output
    res = json.loads(law.read_text())
    for k in ("E", "A", "B", "alpha", "beta", "objective", "rmse_log_loss", "n_runs"):
        assert k in res
    for k in ("draws", "cov", "se", "ci95"):
        assert k in res["bootstrap"]
    assert set(res["bootstrap"]["se"]) == {"E", "A", "B", "alpha", "beta"}
    o = runner.invoke(app, ["optimize", "--flops", "1e23", "--law-file", str(law), "-f", "json"])
    assert o.exit_code == 0, o.output
    G = (res["alpha"] * res["A"] / (res["beta"] * res["B"])) ** (1 / (res["alpha"] + res["beta"]))
    n_closed = G * (1e23 / 6) ** (res["beta"] / (res["alpha"] + res["beta"]))
    assert json.loads(o.stdout)["params"] == pytest.approx(n_closed, rel=1e-9)
    scen = tmp_path / "s.toml"
    scen.write_text(f'samples = 2000\n[law]\nfile = "{law.name}"\nuncertainty = "bootstrap"\n[budget]\nflops = 1e23\n'
                    '[recommend]\ncandidates = 4\n')
    s = runner.invoke(app, ["sweep", str(scen), "-f", "json", "-q"])
    assert s.exit_code == 0, s.output
    assert json.loads(s.stdout)["uncertainty"] == "bootstrap"


def test_a_fit_that_is_no_law_is_not_converged_and_no_law_file_is_written(tmp_path):
    from budgetopt.core.errors import ParameterError
    from budgetopt.fit import fitting

    good = {"approach": "3", "E": 1.8, "A": 400.0, "B": 400.0, "alpha": 0.3, "beta": 0.3,
            "theta": [np.log(400.0), np.log(400.0), np.log(1.8), 0.3, 0.3]}  # log A, log B, log E, alpha, beta
    assert fitting.law_problem(good) is None
    fitting.check_law_usable(good)
    bad = {**good, "alpha": 12.0}  # beyond (0, 10): laws.parametric_from_mapping refuses it
    assert "alpha" in fitting.law_problem(bad)
    with pytest.raises(ParameterError) as e:
        fitting.check_law_usable(bad)
    assert e.value.param == "law_out"
    at = fitting.allocation_at(bad, 1e23)
    assert np.isnan(at["params"]) and np.isnan(at["tokens"])
    G = (0.3 * 400 / (0.3 * 400)) ** (1 / 0.6)  # the closed form, equal exponents: N* = G (C/6)^(1/2)
    assert fitting.allocation_at(good, 1e23)["params"] == pytest.approx(G * (1e23 / 6) ** 0.5, rel=1e-9)


def test_excluding_outliers_never_leaves_fewer_runs_than_a_fit_needs(tmp_path):
    from budgetopt.core.errors import ParameterError
    from budgetopt.fit import fitting

    rows = make_runs.make_runs(**TRUE, budgets=(1e18, 1e19), sizes_per_budget=3, noise=0.02, seed=4)
    src = write_runs(tmp_path / "runs.csv", rows)
    with pytest.raises(ParameterError) as e:  # k = 0.01 flags nearly every run of six
        fitting.fit_file(src, outlier_k=0.01, exclude_outliers=True)
    assert e.value.param == "exclude_outliers" and "at least 5" in e.value.message
    r = runner.invoke(app, ["fit", str(src), "--outlier-k", "0.01", "--exclude-outliers"])
    assert r.exit_code == 2 and r.stderr.startswith("error: --exclude-outliers:"), r.output


def test_approach_2_says_it_has_no_bootstrap(tmp_path):
    from budgetopt.fit import fitting

    src = write_runs(tmp_path / "runs.csv", make_runs.make_runs(**TRUE, noise=0.002, seed=5))
    res = fitting.fit_file(src, approach="2", bootstrap=10)
    assert any("bootstrap" in w for w in res["warnings"])
    assert not any("bootstrap" in w for w in fitting.fit_file(src, approach="2")["warnings"])


def test_the_compute_column_is_flops_when_present_and_must_exist_when_named(tmp_path):
    from budgetopt.core.errors import ParameterError

    rows = make_runs.make_runs(**TRUE, noise=0.0, seed=6)
    src = write_runs(tmp_path / "runs.csv", rows)
    runs = runs_mod.read_runs(src)  # default: the file's flops column
    assert np.allclose(np.exp(runs.log_c), [r[2] for r in rows], rtol=1e-12)
    with pytest.raises(ParameterError) as e:
        runs_mod.read_runs(src, c_col="budget")
    assert e.value.param == "c_col"
    one = write_runs(tmp_path / "one.csv", [(1e8, d, 6e8 * d, 3.0 - 0.01 * i) for i, d in
                                            enumerate([1e9, 2e9, 4e9, 8e9, 16e9, 32e9])])
    with pytest.raises(ParameterError, match="one model size") as e:
        runs_mod.read_runs(one)


def test_batched_starts_give_each_start_the_same_answer(tmp_path):
    """Approach 3's 4500 starts run in batches when the runs are many (memory stops growing
    with rows); a start's IRLS path does not depend on the batch: all at once, 7 at a time and
    the default agree (float64, to rounding), and a 2,000-run file gets a batch below 4500."""
    import jax.numpy as jnp

    from budgetopt.core.runtime import jax_x64

    rows = make_runs.make_runs(**TRUE, sizes_per_budget=5, noise=0.01, seed=7)
    runs = runs_mod.read_runs(write_runs(tmp_path / "r.csv", rows))
    with jax_x64():
        args = [jnp.asarray(v)[None] for v in (runs.log_n, runs.log_d, runs.log_l, np.ones(len(runs.log_l)))]
        starts = jnp.asarray(approach3.start_grid()[::50], jnp.float64)  # 90 starts
        whole = approach3.fit_starts(starts, *args, 1e-3, iters=20, batch=len(starts))
        for batch in (7, None):
            part = approach3.fit_starts(starts, *args, 1e-3, iters=20, batch=batch)
            for a, b in zip(whole, part):
                np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-9, atol=1e-12)
    assert approach3.START_RUN_PAIRS // 2000 < 4500


def test_fit_at_a_budget_gives_the_bootstrap_interval_of_the_allocation(tmp_path):
    """`fit --at C --bootstrap R`: N*, D* and D*/N* at C for every bootstrap draw of the law by
    the closed form written here in NumPy, their 2.5 and 97.5 percentiles = at.ci95; shown in
    the table; none without draws."""
    from budgetopt.fit import fitting

    src = write_runs(tmp_path / "runs.csv", make_runs.make_runs(**TRUE, sizes_per_budget=6, noise=0.01, seed=8))
    for approach in ("3", "vpnls"):
        res = fitting.fit_file(src, approach=approach, bootstrap=30, target=1e24)
        d = np.asarray(res["bootstrap"]["draws"])  # log A, log B, log E, alpha, beta
        A, B, al, be = np.exp(d[:, 0]), np.exp(d[:, 1]), d[:, 3], d[:, 4]
        n = (al * A / (be * B)) ** (1 / (al + be)) * (1e24 / 6) ** (be / (al + be))
        ci = res["at"]["ci95"]
        assert ci["draws"] == len(d)
        assert ci["params"] == pytest.approx(np.percentile(n, [2.5, 97.5]).tolist(), rel=1e-8)
        assert ci["tokens"] == pytest.approx(np.percentile(1e24 / 6 / n, [2.5, 97.5]).tolist(), rel=1e-8)
        assert ci["params"][0] < res["at"]["params"] < ci["params"][1]
    assert "ci95" not in fitting.fit_file(src, approach="3", target=1e24)["at"]
    r = runner.invoke(app, ["fit", str(src), "--bootstrap", "30", "--at", "1e24"])
    assert r.exit_code == 0 and "95 % bootstrap interval (30 draws of the law): N* " in r.stdout, r.output
