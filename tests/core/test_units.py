import math

import pytest

from budgetopt.core import units
from budgetopt.core.errors import InputError
from budgetopt.model.hardware import get_accelerator


def test_pf_day_definition():
    assert units.PF_DAY_FLOPS == 8.64e19
    assert units.pf_days_to_flops(1.0) == 8.64e19
    assert units.flops_to_pf_days(8.64e19) == 1.0


def test_eight_v100_for_a_day_is_one_pf_day():
    v100 = get_accelerator("v100")
    c = units.hardware_flops(v100.peak_flops("fp16"), 8, 1.0, 24)
    assert units.flops_to_pf_days(c) == pytest.approx(1.00, rel=1e-12)


def test_two_a100_for_a_day():
    a100 = get_accelerator("a100-80gb")
    c = units.hardware_flops(a100.peak_flops("bf16"), 2, 1.0, 24)
    assert units.flops_to_pf_days(c) == pytest.approx(0.62, rel=0.01)


def test_gpt3_and_t5_compute():
    gpt3 = units.train_flops(174.6e9, 300e9)
    assert gpt3 == pytest.approx(3.14e23, rel=0.01)
    assert units.flops_to_pf_days(gpt3) == pytest.approx(3.64e3, rel=0.01)
    t5 = units.train_flops(3e9, 1e12, flops_per_param_token=3.0)
    assert t5 == pytest.approx(9e21, rel=0.01)
    assert units.flops_to_pf_days(t5) == pytest.approx(1.04e2, rel=0.01)


def test_gpu_hours_and_wall_days_invert_hardware_flops():
    c = units.hardware_flops(312e12, 512, 0.4, 720)
    assert units.gpu_hours(c, 312e12, 0.4) == pytest.approx(512 * 720, rel=1e-12)
    assert units.wall_days(c, 312e12, 0.4, 512) == pytest.approx(30.0, rel=1e-12)


@pytest.mark.parametrize("text,value", [
    ("5.76e23", 5.76e23), ("7B", 7e9), ("1.4T", 1.4e12), ("400M", 4e8), ("10_000_000", 1e7),
    ("3K", 3e3), (" 2.5e3 ", 2500.0), (".5B", 5e8),
])
def test_parse_counts(text, value):
    assert units.parse_number(text, "x") == pytest.approx(value, rel=1e-15)


def test_parse_pf_days():
    assert units.parse_number("3.6e3pfd", "--flops", units="flops") == pytest.approx(3.6e3 * 8.64e19)
    assert units.parse_number("1e23", "--flops", units="flops") == 1e23
    for spelled in ("3.6e3PF-days", "3.6e3 pf-day", "3600 PFD", "3.6e3PFdays"):  # the unit in any case
        assert units.parse_number(spelled, "--flops", units="flops") == 3.6e3 * 1e15 * 86_400
    assert units.parse_number("2e23 FLOPs", "--flops", units="flops") == 2e23
    assert units.parse_number("2T", "--flops", units="flops") == 2e12  # as counts read it
    assert units.parse_number("5.76e11K", "--flops", units="flops") == pytest.approx(5.76e14, rel=1e-15)
    with pytest.raises(InputError):  # counts keep their case: m is not M
        units.parse_number("7m", "--params")


@pytest.mark.parametrize("text", ["7Q", "abc", "", "1.4TT", "nan", "inf", "1e", "--3"])
def test_parse_rejects_malformed(text):
    with pytest.raises(InputError) as e:
        units.parse_number(text, "--params")
    assert e.value.field == "--params"


def test_plain_units_reject_suffixes():
    with pytest.raises(InputError):
        units.parse_number("7B", "--mfu", units="plain")


@pytest.mark.parametrize("x,text", [
    (70e9, "70.0B"), (1.4e12, "1.40T"), (400e6, "400M"), (8e9, "8.00B"), (20.2e9, "20.2B"),
    (999.7e9, "1.00T"), (5e3, "5.00K"), (2.16e16, "2.16e16"),
])
def test_format_count(x, text):
    assert units.format_count(x) == text


def test_format_sci():
    assert units.format_sci(5.76e23) == "5.76e23"
    assert units.format_sci(3.14e-5) == "3.14e-5"
    assert units.format_count(None) == "-"
    assert math.isclose(float(units.format_sci(1.234e23)), 1.23e23)
