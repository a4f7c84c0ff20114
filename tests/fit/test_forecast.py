"""Downstream forecasts: the links against SciPy's curve_fit (Gadre et al. fit theirs with it),
the Gadre RedPajama preset through the CLI, the two-step interval's coverage on simulated
ladders drawn from a known law and link, and the CLI and figure end to end."""

from __future__ import annotations

import csv
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import curve_fit
from typer.testing import CliRunner

from budgetopt.cli.commands import app
from budgetopt.fit import forecast
from budgetopt.fit.runs import Runs
from budgetopt.model import links

runner = CliRunner()
LAW = {"E": 1.8, "A": 400.0, "B": 2000.0, "alpha": 0.34, "beta": 0.37}
LINK = (0.85699, 2.2065, 0.71459)  # Gadre et al.'s (epsilon, k, gamma)
TARGET = (7e9, 1.4e11)  # 7B parameters, 20 tokens each: 70x the ladder's largest budget


def true_loss(n, d):
    return LAW["E"] + LAW["A"] * n ** -LAW["alpha"] + LAW["B"] * d ** -LAW["beta"]


def ladder(rng, sigma=0.005, sigma_metric=0.005) -> Runs:
    """5 isoFLOP budgets (1e18-1e20) x 7 sizes of LAW; log-normal loss noise, normal metric
    noise around Gadre's link at the true loss."""
    s = LAW["alpha"] + LAW["beta"]
    g = (LAW["alpha"] * LAW["A"] / (LAW["beta"] * LAW["B"])) ** (1 / s)
    spread = np.exp(np.linspace(-1, 1, 7))
    n = np.concatenate([g * (c / 6) ** (LAW["beta"] / s) * spread for c in (1e18, 3e18, 1e19, 3e19, 1e20)])
    d = np.repeat([1e18, 3e18, 1e19, 3e19, 1e20], 7) / (6 * n)
    loss = true_loss(n, d)
    metric = np.asarray(links.exp_link(loss, *LINK)) + sigma_metric * rng.normal(size=n.size)
    return Runs(np.log(n), np.log(d), np.log(loss) + sigma * rng.normal(size=n.size), metric=metric)


@pytest.mark.parametrize("kind", ["exp", "sigmoid"])
def test_link_fits_match_scipy_curve_fit(kind):
    rng = np.random.default_rng(0)
    loss = rng.uniform(2.4, 4.0, 60)
    truth = LINK if kind == "exp" else (-0.5, 3.0, 3.2, 0.8)
    y = np.asarray(links.LINK_FUNCTIONS[kind](loss, *truth)) + 0.005 * rng.normal(size=60)
    got = links.fit_links(kind, jnp.asarray(loss), jnp.asarray(y), jnp.ones((1, 60)))
    ref, _ = curve_fit(lambda x, *p: np.asarray(links.LINK_FUNCTIONS[kind](x, *p)), loss, y, p0=truth, maxfev=20000)
    assert np.allclose(np.asarray(got.theta[0]), ref, rtol=1e-5) and not bool(got.at_edge[0])
    # padding (weight 0) changes nothing
    pad = links.fit_links(kind, jnp.asarray(np.append(loss, 9.0)), jnp.asarray(np.append(y, 5.0)),
                          jnp.asarray(np.append(np.ones(60), 0.0))[None])
    assert np.allclose(np.asarray(pad.theta[0]), np.asarray(got.theta[0]), rtol=1e-9)


def test_gadre_preset_forecast_through_the_cli():
    r = runner.invoke(app,
                      ["forecast", "--law", "gadre2024-rpj", "--params", "6.9e9", "--tokens", "138e9", "-f", "json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert round(res["loss"]["point"], 4) == 2.4425 and round(res["metric"]["point"], 4) == 0.4718
    assert res["extrapolation"]["warnings"] == []


def test_point_forecast_is_the_two_steps_chained():
    """Replicate 0 is the fit to all runs: its forecast is the fitted link at the fitted law's
    loss, recomputed here from the reported parameters."""
    res = forecast.forecast_runs(ladder(np.random.default_rng(1)), params=TARGET[0], tokens=TARGET[1], bootstrap=20)
    lk = res["link"]
    assert res["metric"]["point"] == pytest.approx(float(links.exp_link(res["loss"]["point"], lk["epsilon"], lk["k"],
                                                                        lk["gamma"])), rel=1e-12)
    assert res["loss"]["low"] <= res["loss"]["point"] <= res["loss"]["high"]
    assert any("extrapolated" in w for w in res["warnings"])  # 2.13 nats is below every run's loss


@pytest.mark.slow
def test_interval_covers_the_truth_at_its_nominal_rate():
    """200 simulated ladders (loss noise 0.5 %, metric noise 0.005), 60 bootstrap replicates
    each, 90 % intervals for a 7B model on 140B tokens (70x the ladder's largest budget). The
    count covering the true metric must be consistent with 90 %: within 3 binomial standard
    deviations (0.836-0.964). Measured: see tests/README.md."""
    rng = np.random.default_rng(123)
    truth_loss = true_loss(*TARGET)
    truth = float(links.exp_link(truth_loss, *LINK))
    hits = hits_loss = 0
    k = 200
    for i in range(k):
        r = forecast.forecast_runs(ladder(rng), params=TARGET[0], tokens=TARGET[1], bootstrap=60, seed=i, level=0.9)
        hits += r["metric"]["low"] <= truth <= r["metric"]["high"]
        hits_loss += r["loss"]["low"] <= truth_loss <= r["loss"]["high"]
    sd = math.sqrt(0.9 * 0.1 / k)
    assert abs(hits / k - 0.9) <= 3 * sd, hits / k
    assert abs(hits_loss / k - 0.9) <= 3 * sd, hits_loss / k


def test_forecast_cli_and_figure(tmp_path):
    r = ladder(np.random.default_rng(7))
    path = tmp_path / "runs.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["params", "tokens", "loss", "avg_err"])
        for row in zip(np.exp(r.log_n), np.exp(r.log_d), np.exp(r.log_l), r.metric):
            w.writerow([f"{v:.9g}" for v in row])
    out = tmp_path / "fc.json"
    res = runner.invoke(app, ["forecast", str(path), "--metric", "avg_err", "--flops", "1e23", "--bootstrap", "30",
                              "-f", "json", "-o", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["target"]["flops"] == pytest.approx(1e23) and data["replicates"] == 30
    table = runner.invoke(app, ["forecast", str(path), "--metric", "avg_err", "--flops", "1e23", "--bootstrap", "30"],
                          env={"COLUMNS": "80"})
    assert table.exit_code == 0 and "forecast avg_err" in table.stdout
    assert all(len(line) <= 80 for line in table.stdout.splitlines())
    png = tmp_path / "fc.png"
    fig = runner.invoke(app, ["plot", "forecast", "--forecast", str(out), "-o", str(png)])
    assert fig.exit_code == 0 and png.stat().st_size > 10_000
    jax.clear_caches()
