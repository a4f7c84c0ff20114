"""`fit --backtest` (DESIGN §17): every truncated fit is the fit `budgetopt fit` makes of the
truncated file (the forecast N*, the reference N* and the runs' loss error recomputed from
direct fits); on a ladder generated from an exact law every forecast is exact; the summary's
drift per decade is the least-squares slope through the origin written out; bad input."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from budgetopt.cli.commands import app
from budgetopt.fit.backtest import backtest_file
from budgetopt.fit.fitting import fit_file
from budgetopt.model.laws import get_preset

from .. import reference as ref

runner = CliRunner()
LAW = get_preset("besiroglu2024").params
E, A, B, AL, BE = (math.exp(LAW.log_E), math.exp(LAW.log_A), math.exp(LAW.log_B), LAW.alpha, LAW.beta)
BUDGETS = (1e17, 3e17, 1e18, 3e18)


def ladder(path, budgets=BUDGETS, noise=0.0, seed=0, drop=()):
    """An isoFLOP ladder of the exact law: 7 sizes from N*/4 to 4 N* per budget, D = C/6N,
    the loss times exp(noise x N(0, 1))."""
    rng = np.random.default_rng(seed)
    g = (AL * A / (BE * B)) ** (1 / (AL + BE))
    rows = []
    for c in budgets:
        n_star = g * (c / 6) ** (BE / (AL + BE))
        for f in np.geomspace(0.25, 4.0, 7):
            n = n_star * f
            d = c / (6 * n)
            loss = ref.chinchilla(E, A, B, AL, BE, n, d) * math.exp(noise * rng.standard_normal())
            rows.append({"params": n, "tokens": d, "budget": c, "loss": loss})
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["params", "tokens", "budget", "loss"])
        w.writeheader()
        w.writerows(r for r in rows if r["budget"] not in drop)
    return rows


@pytest.mark.parametrize("approach", ["3", "2"])
def test_the_backtest_fits_are_the_fits_of_the_truncated_files(tmp_path, approach):
    rows = ladder(tmp_path / "all.csv", noise=0.01, seed=1)
    res = backtest_file(tmp_path / "all.csv", approach=approach, c_col="budget")
    assert res["budgets"]["all"] == pytest.approx(BUDGETS, rel=1e-12)
    direct = {}
    for k in range(1, len(BUDGETS)):
        path = tmp_path / f"upto{k}.csv"
        ladder(path, noise=0.01, seed=1, drop=BUDGETS[k + 1:])
        direct[k] = fit_file(path, approach=approach, c_col="budget")
    want = [(k, j) for k in range(1, len(BUDGETS) - 1) for j in range(k + 1, len(BUDGETS))]
    got = [(r["fit_up_to"], r["forecast_at"]) for r in res["backtest"]]
    assert got == [(pytest.approx(BUDGETS[k], rel=1e-12), pytest.approx(BUDGETS[j], rel=1e-12)) for k, j in want]
    def n_star(f, c):  # the fit's compute-optimal N at c, written out
        if approach == "2":
            return f["n_opt_coefficient"] * c ** f["a"]
        g = (f["alpha"] * f["A"] / (f["beta"] * f["B"])) ** (1 / (f["alpha"] + f["beta"]))
        return g * (c / 6) ** (f["beta"] / (f["alpha"] + f["beta"]))

    for r, (k, j) in zip(res["backtest"], want):
        n_hat, n_ref = n_star(direct[k], BUDGETS[j]), n_star(direct[j], BUDGETS[j])
        assert r["n_star_error"] == pytest.approx(math.log(n_hat / n_ref), rel=1e-6, abs=1e-9)
        assert r["decades"] == pytest.approx(math.log10(BUDGETS[j] / BUDGETS[k]), rel=1e-12)
        if approach == "3":
            at = [x for x in rows if x["budget"] == BUDGETS[j]]
            f = direct[k]
            pred = [math.log(ref.chinchilla(f["E"], f["A"], f["B"], f["alpha"], f["beta"], x["params"], x["tokens"]))
                    - math.log(x["loss"]) for x in at]
            assert r["loss_error"] == pytest.approx(np.mean(pred), rel=1e-6, abs=1e-9)
            assert r["loss_rmse"] == pytest.approx(math.sqrt(np.mean(np.square(pred))), rel=1e-6, abs=1e-9)
        else:
            assert r["loss_error"] is None


def test_on_an_exact_law_every_forecast_is_exact(tmp_path):
    ladder(tmp_path / "exact.csv")
    res = backtest_file(tmp_path / "exact.csv", approach="3", c_col="budget")
    assert len(res["backtest"]) == 3 and not res["skipped"]
    for r in res["backtest"]:
        assert abs(r["n_star_error"]) < 1e-4 and abs(r["loss_error"]) < 1e-6
    s = res["summary"][0]
    d = np.array([r["decades"] for r in res["backtest"]])
    e = np.array([r["n_star_error"] for r in res["backtest"]])
    assert s["n_star_drift_per_decade"] == pytest.approx(float(d @ e / (d @ d)), rel=1e-12)
    assert abs(s["n_star_drift_per_decade"]) < 1e-4


def test_backtest_cli_json_table_and_bad_input(tmp_path):
    ladder(tmp_path / "l.csv", noise=0.01)
    r = runner.invoke(app, ["fit", str(tmp_path / "l.csv"), "--c-col", "budget", "--backtest", "-f", "json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert set(out["backtest"][0]) >= {"fit_up_to", "forecast_at", "decades", "approach", "n_star_error", "loss_error"}
    r = runner.invoke(app, ["fit", str(tmp_path / "l.csv"), "--c-col", "budget", "--backtest"], env={"COLUMNS": "80"})
    assert r.exit_code == 0 and "Every forecast" in r.stdout
    assert max(len(line) for line in r.stdout.splitlines()) <= 80
    ladder(tmp_path / "one.csv", budgets=(1e18,))
    r = runner.invoke(app, ["fit", str(tmp_path / "one.csv"), "--c-col", "budget", "--backtest"])
    assert r.exit_code == 2 and "backtest" in r.output and "two budgets" in r.output


def test_calibrate_recovers_an_injected_drift_and_weighs_every_ladder_alike():
    """Forecast errors made as (drift + sd z) x decades: the calibration gives the drift back
    exactly without spread and within its Monte Carlo error with it; a ladder with many forecasts
    counts no more than one with few (weights written out)."""
    from budgetopt.fit.backtest import calibrate, calibration_interval

    rng = np.random.default_rng(0)

    def rows(drift, sd, per):
        out = []
        for g, n in per.items():
            for _ in range(n):
                d = rng.uniform(0.2, 2.0)
                out.append({"group": g, "approach": "3", "decades": d,
                            "n_star_error": (drift + sd * rng.standard_normal()) * d, "loss_error": 0.02 * d})
        return out

    exact = calibrate(rows(-0.2, 0.0, {"a": 30, "b": 3, "c": 7}), "3")
    assert exact["n_star_drift_per_decade"] == pytest.approx(-0.2, rel=1e-12)
    assert exact["n_star_sd_per_decade"] == pytest.approx(0.0, abs=1e-12)
    assert exact["loss_drift_per_decade"] == pytest.approx(0.02, rel=1e-12) and exact["ladders"] == 3
    noisy = rows(-0.2, 0.1, {g: 400 for g in "abcdefgh"})
    cal = calibrate(noisy, "3")
    assert cal["n_star_drift_per_decade"] == pytest.approx(-0.2, abs=0.02)
    assert cal["n_star_sd_per_decade"] == pytest.approx(0.1, rel=0.1)
    ci = calibration_interval(noisy, "3", resamples=200)
    lo, hi = ci["n_star_drift_per_decade_ci"]
    assert lo < -0.2 < hi
    two = [{"group": "a", "approach": "2", "decades": 1.0, "n_star_error": 1.0, "loss_error": None}] * 3 + [
        {"group": "b", "approach": "2", "decades": 2.0, "n_star_error": -1.0, "loss_error": None}]
    w, d, e = np.array([1 / 3] * 3 + [1.0]), np.array([1.0] * 3 + [2.0]), np.array([1.0] * 3 + [-1.0])
    assert calibrate(two, "2")["n_star_drift_per_decade"] == pytest.approx(float(np.sum(w * d * e) / np.sum(w * d * d)))
    assert "loss_drift_per_decade" not in calibrate(two, "2")


LADDERS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ladders" / "isoflops.csv"


@pytest.mark.skipif(not LADDERS.exists(), reason="shared ladder data not present")
def test_the_calibration_script_reproduces_the_stored_entry():
    """scripts/calibrate_model_error.py --check: the backtest of the four real ladders gives back
    the Approach 2 and VPNLS entries of budgetopt/data/model_error.toml (20 s). Approach 3's takes
    4-8 minutes on 2 cores, half of CI's time: `python scripts/calibrate_model_error.py --check`
    reproduces every entry (it did on 2026-12-02)."""
    import importlib.util

    script = Path(__file__).resolve().parents[2] / "scripts" / "calibrate_model_error.py"
    spec = importlib.util.spec_from_file_location("calibrate_model_error", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--ladders", str(LADDERS), "--check", "--approach", "2,vpnls"]) == 0
    assert mod.main(["--ladders", str(LADDERS), "--approach", "2"]) == 2  # a subset never writes the file


def test_a_ladder_whose_optimum_bends_gives_the_drift_numpy_line_fits_predict(tmp_path):
    """A drift injected into a ladder: five budgets a decade apart whose isoFLOP curves are exact
    parabolas in ln N (Approach 2's vertex is then exactly the optimum) with ln N*(C) = ln N0 +
    0.5 ln(C / C0) + q x², x = log10(C / C0): the exponent grows by 2q per decade. Each backtest
    row's error equals ln N* from a NumPy line fitted to the optima up to the cut-off minus that
    of the line fitted up to the forecast budget (the backtest's reference is a refit, not the
    truth), and the summary's drift is their least-squares slope through the origin: negative for
    q > 0 (forecasts fall short, as on the real ladders), zero for q = 0, and linear in q."""
    budgets = [10.0 ** k for k in range(17, 22)]
    x = np.log10(np.array(budgets) / budgets[0])

    def write(q: float) -> np.ndarray:
        log_n = math.log(3e7) + 0.5 * np.log(np.array(budgets) / budgets[0]) + q * x ** 2
        with open(tmp_path / f"bend{q}.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["params", "tokens", "budget", "loss"])
            w.writeheader()
            for c, ln in zip(budgets, log_n):
                for off in np.linspace(-1.5, 1.5, 7):
                    n = math.exp(ln + off)
                    w.writerow({"params": n, "tokens": c / (6 * n), "budget": c, "loss": 3.0 - 0.1 * x[budgets.index(c)]
                                + 0.05 * off * off})
        return log_n

    drifts = {}
    for q in (0.0, 0.05, 0.1):
        log_n = write(q)
        res = backtest_file(tmp_path / f"bend{q}.csv", approach="2", c_col="budget")
        lc = np.log(budgets)
        want = []
        for k in range(1, len(budgets) - 1):
            for j in range(k + 1, len(budgets)):
                fc = np.polyval(np.polyfit(lc[:k + 1], log_n[:k + 1], 1), lc[j])
                rf = np.polyval(np.polyfit(lc[:j + 1], log_n[:j + 1], 1), lc[j])
                want.append((budgets[k], budgets[j], fc - rf))
        got = sorted((r["fit_up_to"], r["forecast_at"], r["n_star_error"]) for r in res["backtest"])
        assert len(got) == len(want) == 6
        for (c1, c2, e), (w1, w2, we) in zip(got, sorted(want)):
            assert (c1, c2) == pytest.approx((w1, w2), rel=1e-12) and e == pytest.approx(we, abs=1e-9)
        d = np.array([math.log10(b / a) for a, b, _ in want])
        e = np.array([v for _, _, v in want])
        drifts[q] = res["summary"][0]["n_star_drift_per_decade"]
        assert drifts[q] == pytest.approx(float(d @ e / (d @ d)), abs=1e-9)
    assert abs(drifts[0.0]) < 1e-9 and drifts[0.05] < -0.01
    assert drifts[0.1] == pytest.approx(2 * drifts[0.05], rel=1e-6)
