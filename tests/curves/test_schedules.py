"""Schedule specs: every kind against the official code's schedule functions, the shipped curves'
logged learning rates, the rebuild from logged values, and bad specs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from budgetopt.core.errors import InputError
from budgetopt.curves.schedules import from_logged, learning_rates, parse_schedule

from .reference import official_lrs

CURVES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "curves"
needs_curves = pytest.mark.skipif(not CURVES.exists(), reason="shared curve data not present")


def lrs(spec):
    return learning_rates(parse_schedule(spec, "spec"))


def test_each_kind_equals_the_official_schedule_functions():
    w = "warmup=2160"
    pairs = [(f"cosine:steps=24000,lr=3e-4,final=3e-5,{w}", official_lrs("cosine", 2160, 24000, 3e-4, 3e-5)),
             (f"constant:steps=24000,lr=3e-4,{w}", official_lrs("constant", 2160, 24000, 3e-4)),
             (f"two-stage:steps=16000,lr=3e-4,switch=8000,lr2=9e-5,{w}",
              official_lrs("two-stage", 2160, 16000, 3e-4, lr_b=9e-5, stage_a=8000)),
             (f"wsd:steps=24000,lr=3e-4,final=3e-5,cooldown=4000,shape=geometric,{w}",
              official_lrs("wsd", 2160, 24000, 3e-4, 3e-5, decay=20000)),
             (f"wsd:steps=24000,lr=3e-4,final=3e-5,cooldown=0.1666666667,{w}",
              official_lrs("wsdld", 2160, 24000, 3e-4, 3e-5, decay=20000))]
    for spec, want in pairs:
        got = lrs(spec)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=0, err_msg=spec)


def test_1_sqrt_cooldown_and_defaults_by_hand():
    x = lrs("wsd:steps=1000,lr=1e-3,shape=1-sqrt")  # cooldown 0.2 -> 200 steps from step 800, final 0
    assert x[799] == 1e-3
    assert x[800 + 50] == pytest.approx(1e-3 * (1 - np.sqrt(50 / 200)), rel=1e-14)
    c = lrs("cosine:steps=1000,lr=1e-3")  # final lr/10
    assert c[0] == 1e-3 and c[500] == pytest.approx(1e-4 + 0.5 * 9e-4, rel=1e-14)


@needs_curves
@pytest.mark.parametrize("size", ["25", "100"])
def test_every_logged_learning_rate_of_the_shipped_curves(size):
    import importlib.util
    spec = importlib.util.spec_from_file_location("cal", Path(__file__).resolve().parents[2] / "scripts" /
                                                  "calibrate_curve_error.py")
    cal = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cal)
    for name, text in cal.SPECS.items():
        d = np.loadtxt(CURVES / size / f"{name}.csv", delimiter=",", skiprows=1)
        got = lrs(text)[d[:, 0].astype(int)]
        np.testing.assert_allclose(got, d[:, 1], rtol=1e-12, err_msg=name)


def test_rebuilt_from_logged_values():
    true = lrs("two-stage:steps=16000,lr=3e-4,switch=8000,lr2=9e-5,warmup=2160")
    steps = np.arange(2176, 16000, 128)
    got = from_logged(steps, true[steps], warmup=2160)
    assert np.sum(got != true[:len(got)]) <= 64  # the jump lands within half a logging interval
    assert got[7920] == 3e-4 and got[8048] == 9e-5
    cos = lrs("cosine:steps=24000,lr=3e-4,final=3e-5,warmup=2160")
    st = np.arange(2160, 24000, 128)
    rebuilt = from_logged(st, cos[st], warmup=2160)
    assert np.max(np.abs(rebuilt - cos[:len(rebuilt)])) < 1e-3 * 3e-4  # linear between logs of a smooth curve


@pytest.mark.parametrize("spec, says", [
    ("linear:steps=10,lr=1", "unknown schedule 'linear'"),
    ("cosine:lr=1e-3", "steps= is required"),
    ("cosine:steps=100,lr=1e-3,cooldown=3", "cannot read 'cooldown=3'"),
    ("wsd:steps=100,lr=1e-3,shape=geometric", "geometric cooldown needs final > 0"),
    ("wsd:steps=100,lr=1e-3,cooldown=500", "cooldown 500"),
    ("cosine:steps=100,lr=1e-3,warmup=100", "warmup (100) must be shorter"),
    ("two-stage:steps=100,lr=1e-3,lr2=1e-4", "switch= is required"),
    ("cosine:steps=100.5,lr=1e-3", "whole number"),
    ("cosine:steps=100,lr=-1", "finite number >= 0"),
    ("cosine:steps=100,lr=1e-3,final=1e-2", "must not exceed lr"),
    ("cosine:steps=100,lr=nan", "cannot read 'nan'"),
])
def test_bad_specs_are_named(spec, says):
    with pytest.raises(InputError) as e:
        parse_schedule(spec, "--predict")
    assert e.value.field == "--predict" and says in e.value.message
