"""The curve-law fit: a zero-noise synthetic set recovers its law (two sizes in one vmapped call:
tests/curves/test_curves_cli.py), the block bootstrap's weights, and on the shipped curves (skipped when
../shared/data is absent) the paper's split predicts the held-out schedules to the paper's order
with an objective no worse than the official fit's."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from budgetopt.curves.curve_fit import Curve, block_weights, evaluate, fit_curve_groups
from budgetopt.curves.curve_laws import curve_pairs, to_params
from budgetopt.curves.schedules import learning_rates, parse_schedule

from .reference import OFFICIAL, multipower

ROOT = Path(__file__).resolve().parents[2]
CURVES = ROOT.parent / "shared" / "data" / "curves"
needs_curves = pytest.mark.skipif(not CURVES.exists(), reason="shared curve data not present")
W = "warmup=400"
TRAIN = {"constant": f"constant:steps=4000,lr=3e-4,{W}", "cosine": f"cosine:steps=4000,lr=3e-4,final=3e-5,{W}",
         "two-stage": f"two-stage:steps=4000,lr=3e-4,switch=2000,lr2=6e-5,{W}"}
HELD = {"wsd": f"wsd:steps=4000,lr=3e-4,cooldown=800,shape=1-sqrt,final=1e-5,{W}",
        "long-cosine": f"cosine:steps=8000,lr=3e-4,final=3e-5,{W}"}


def synthetic(params, specs, group="all", noise=0.0, seed=0, every=32):
    rng = np.random.default_rng(seed)
    out = []
    for name, spec in specs.items():
        lrs = learning_rates(parse_schedule(spec, "s"))
        steps = np.arange(every * 13, len(lrs), every)
        loss = multipower(params, lrs, steps) * np.exp(noise * rng.standard_normal(len(steps)))
        out.append(Curve(name, group, steps, loss, lrs, spec, "", np.arange(1, len(steps) + 1)))
    return out


def test_zero_noise_curves_recover_their_law():
    truth = OFFICIAL["25"]
    fit = fit_curve_groups("multipower", {"all": synthetic(truth, TRAIN)})["all"]
    assert fit.grad_norm < 1e-6 and fit.objective < 1e-10
    for c in synthetic(truth, HELD):  # schedules it never saw, one twice as long
        np.testing.assert_allclose(evaluate("multipower", fit.theta, curve_pairs(c.lrs, c.steps))[0], c.loss,
                                   rtol=2e-5)
    # every parameter: six to 1e-3 (measured: 4 digits); C, the weakest identified, moves 0.46 % (measured) under the
    # merged pairs' 2e-6 approximation of the loss
    got = to_params("multipower", fit.theta)
    np.testing.assert_allclose(np.delete(got, 4), np.delete(truth, 4), rtol=1e-3)
    assert got[4] == pytest.approx(truth[4], rel=0.01)


def test_block_bootstrap_weights():
    w = block_weights([100, 37], 50, seed=3)
    assert w.shape == (50, 137)
    np.testing.assert_array_equal(w[:, :100].sum(1), 100)
    np.testing.assert_array_equal(w[:, 100:].sum(1), 37)
    assert np.array_equal(w, block_weights([100, 37], 50, seed=3)) and not np.array_equal(w, block_weights(
        [100, 37], 50, seed=4))
    # blocks of ceil(sqrt(100)) = 10 consecutive points: a point's neighbour is drawn with it
    assert np.mean(w[:, 40] == w[:, 41]) > 0.75


def _calibration():
    spec = importlib.util.spec_from_file_location("calibrate_curve_error",
                                                  ROOT / "scripts" / "calibrate_curve_error.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@needs_curves
def test_shipped_curves_paper_split_predicts_held_out_schedules_as_the_stored_error_says():
    """scripts/calibrate_curve_error.py's measurement, run once (both laws, both sizes fitted on
    the paper's split, 6 held-out schedules each): it reproduces budgetopt/data/curve_law_error.toml
    (as its --check does); the multi-power law's held-out final losses are within the paper's
    order (a few 1e-3 on average, up to 0.02–0.03 after a decay); and its training objective is
    no worse than the official fit's parameters give (src/config.py PARAMS, scored by the
    reference loop)."""
    from budgetopt.core.files import data_toml
    from budgetopt.core.lbfgs import huber
    from budgetopt.curves.curve_files import read_curve_files

    cal = _calibration()
    m = cal.measure(CURVES)
    stored = data_toml("curve_law_error.toml")["form"]
    for form in m:
        for k in ("final_rms", "final_mean", "final_max_abs", "final_rms_log", "mae_mean"):
            assert abs(stored[form][k] - m[form][k]) <= 1e-4, (form, k)
    errors = np.abs([r["final_error"] for r in m["multipower"]["rows"]])
    print("held-out |final error|", errors.round(4))
    assert errors.mean() < 0.015 and errors.max() < 0.03
    schedules = {n: parse_schedule(cal.SPECS[n], "s") for n in cal.TRAIN}
    for size in ("25", "100"):
        train = read_curve_files([CURVES / size / f"{n}.csv" for n in cal.TRAIN], schedules=schedules)
        official = sum(float(np.sum(huber(np.log(multipower(OFFICIAL[size], c.lrs, c.steps)) - np.log(c.loss), 1e-3)))
                       for c in train)
        assert m["multipower"]["objective"][size] <= official * (1 + 1e-6), size
