"""The curve laws against the official code's arithmetic (tests/curves/reference.py, loops in
float64): exact pairs at every step, merged pairs within their stated error."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from budgetopt.curves.curve_laws import Pairs, curve_loss, curve_pairs, join_pairs, to_coords, to_params
from budgetopt.curves.schedules import learning_rates, parse_schedule

from .reference import OFFICIAL, annealing, multipower

SPECS = ["cosine:steps=24000,lr=3e-4,final=3e-5,warmup=2160",
         "wsd:steps=24000,lr=3e-4,final=3e-5,cooldown=4000,shape=geometric,warmup=2160",
         "two-stage:steps=16000,lr=3e-4,switch=8000,lr2=9e-5,warmup=2160"]


def law(name, params, lrs, steps, resolution):
    p = curve_pairs(lrs, steps, resolution)
    return np.asarray(curve_loss(name, jnp.asarray(to_coords(name, params)), Pairs(*map(jnp.asarray, p)), len(steps)))


def test_multipower_at_every_step_of_a_schedule():
    """A 3000-step cosine with warmup and a WSD tail, every step 1..2999, exact pairs."""
    lrs = learning_rates(parse_schedule("cosine:steps=3000,lr=3e-4,final=3e-5,warmup=300", "s"))
    lrs[2500:] = np.linspace(lrs[2499], 1e-6, 500)
    steps = np.arange(1, 3000)
    got = law("multipower", OFFICIAL["25"], lrs, steps, 0.0)
    np.testing.assert_allclose(got, multipower(OFFICIAL["25"], lrs, steps), rtol=1e-12)


@pytest.mark.parametrize("spec", SPECS)
def test_multipower_on_the_real_schedules_at_logged_steps(spec):
    lrs = learning_rates(parse_schedule(spec, "s"))
    steps = np.arange(2176, len(lrs), 128)
    want = multipower(OFFICIAL["100"], lrs, steps)
    np.testing.assert_allclose(law("multipower", OFFICIAL["100"], lrs, steps, 0.0), want, rtol=1e-12)
    # the merged pairs the fits use: within the error RESOLUTION's comment states (2.3e-6)
    assert np.max(np.abs(law("multipower", OFFICIAL["100"], lrs, steps, 0.1) - want)) < 3e-6


def test_a_decay_lowers_the_loss_and_a_constant_run_has_no_drop_after_warmup():
    cos = learning_rates(parse_schedule(SPECS[0], "s"))
    const = learning_rates(parse_schedule("constant:steps=24000,lr=3e-4,warmup=2160", "s"))
    steps = np.array([3000, 12000, 23999])
    lc, lk = law("multipower", OFFICIAL["25"], cos, steps, 0.0), law("multipower", OFFICIAL["25"], const, steps, 0.0)
    assert lc[-1] < lk[-1]
    l0, a, alpha, b = OFFICIAL["25"][:4]
    # the constant run's loss-drop term is the warmup's rise alone: B x sum of the rises x G, G in (0, 1) and growing
    # with the distance, so positive, increasing and below B x peak
    drop = lk - (l0 + a * np.cumsum(const)[steps] ** -alpha)
    assert np.all(np.diff(drop) > 0) and 0 < drop[0] and drop[-1] < b * 3e-4


def test_annealing_area_law():
    lrs = learning_rates(parse_schedule(SPECS[1], "s"))
    steps = np.arange(100, 24000, 97)
    params = [2.9, 0.5, 0.5, 80.0]
    np.testing.assert_allclose(law("annealing", params, lrs, steps, 0.1), annealing(params, lrs, steps), rtol=1e-12)


def test_joined_and_padded_pairs_equal_each_curve_alone():
    parts, want = [], []
    for spec in SPECS:
        lrs = learning_rates(parse_schedule(spec, "s"))
        steps = np.arange(2200, len(lrs), 1000)
        parts.append(curve_pairs(lrs, steps))
        want.append(law("multipower", OFFICIAL["25"], lrs, steps, 0.1))
    rows = sum(len(p.s1) for p in parts)
    q = join_pairs(parts, pad_rows=rows + 7, pad_pairs=sum(len(p.row) for p in parts) + 13)
    theta = jnp.asarray(to_coords("multipower", OFFICIAL["25"]))
    got = np.asarray(curve_loss("multipower", theta, Pairs(*map(jnp.asarray, q)), rows + 7))
    np.testing.assert_allclose(got[:rows], np.concatenate(want), rtol=1e-14)


def test_fitting_coordinates_round_trip_and_bound_the_shape():
    p = np.array(OFFICIAL["100"])
    np.testing.assert_allclose(to_params("multipower", to_coords("multipower", p)), p, rtol=1e-12)
    far = to_params("multipower", np.array([0, 0, 0, 0, -1e4, 1e4, 1e4], float))
    assert np.exp(-12) <= far[4] < np.exp(-11.9) and far[5] <= 3 and far[6] <= 3
    np.testing.assert_allclose(to_params("annealing", to_coords("annealing", [2.9, 0.5, 0.5, 80.0])),
                               [2.9, 0.5, 0.5, 80.0], rtol=1e-14)
