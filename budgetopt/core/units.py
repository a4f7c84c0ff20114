"""Units of compute and what people type.

Compute is in FLOPs throughout. 1 PF-day = 1e15 FLOP/s x 86 400 s = 8.64e19 FLOPs.
Training a dense decoder costs C = 6 N D FLOPs; inference 2 N FLOPs per token.
Hardware compute is C = count x peak FLOP/s x MFU x seconds.
"""

from __future__ import annotations

import math
import re
from typing import Any

from .errors import InputError, ParameterError

PF_DAY_FLOPS = 1e15 * 86_400.0  # FLOPs in one petaFLOP/s-day
SECONDS_PER_HOUR = 3_600.0
HOURS_PER_DAY = 24.0
TRAIN_FLOPS_PER_PARAM_TOKEN = 6.0  # forward 2ND + backward 4ND
INFER_FLOPS_PER_PARAM_TOKEN = 2.0

_SUFFIX = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}
_FLOP_UNITS = {"": 1.0, "flop": 1.0, "flops": 1.0, "pfd": PF_DAY_FLOPS, "pf-day": PF_DAY_FLOPS,
               "pf-days": PF_DAY_FLOPS, "pfdays": PF_DAY_FLOPS,
               **{k.lower(): v for k, v in _SUFFIX.items() if k}}  # 2T FLOPs = 2e12 (read case-blind)
_NUMBER = re.compile(r"^\s*([+-]?(?:\d[\d_]*\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z-]*)\s*$")


def parse_number(text: str | float | int, field: str, *, units: str = "count") -> float:
    """Parse what people type into a float.

    ``units="count"`` accepts a plain number or a K/M/B/T suffix: ``7B`` -> 7e9, ``1.4T``.
    ``units="flops"`` accepts a plain number, a K/M/B/T suffix (``2T`` -> 2e12) or a PF-day unit,
    in any case: ``3.6e3pfd`` or ``3.6e3 PF-days`` -> 3.1104e23.
    ``units="plain"`` accepts only a number. Raises InputError naming ``field``.
    """
    if isinstance(text, (int, float)):
        return float(text)
    m = _NUMBER.match(str(text))
    table = {"count": _SUFFIX, "flops": _FLOP_UNITS, "plain": {"": 1.0}}[units]
    unit = m.group(2).lower() if m and units == "flops" else m.group(2) if m else ""  # PF-days, pfd, FLOPs
    if not m or unit not in table:
        allowed = {"count": "a number such as 5.76e23, or with a K/M/B/T suffix such as 7B or 1.4T",
                   "flops": "a number of FLOPs such as 5.76e23 (K/M/B/T suffixes too), or PF-days such as "
                            "3.6e3pfd",
                   "plain": "a number such as 0.4 or 1e3"}[units]
        raise InputError(field, f"cannot read {str(text)!r} as a number; expected {allowed}")
    return float(m.group(1).replace("_", "")) * table[unit]


def number_at(value: Any, where: str, *, units: str | None = "plain", expected: str = "a number") -> float:
    """A finite number from a parsed TOML or JSON document at ``where`` (``budget.mfu``): an int
    or a float (a JSON integer beyond float range counts as infinite), or, unless ``units`` is
    None, a string read by ``parse_number`` with those units. Booleans, other types and NaN/inf
    are InputErrors on ``where``; ``expected`` says what else the field may hold."""
    if isinstance(value, bool):
        raise InputError(where, f"must be {expected}, got {value!r}")
    if isinstance(value, (int, float)):
        try:
            x = float(value)
        except OverflowError:
            x = math.inf
    elif isinstance(value, str) and units is not None:
        x = parse_number(value, where, units=units)
    else:
        raise InputError(where, f"must be {expected}, got {value!r}" if units is None
                         else f"must be {expected}, got {type(value).__name__}")
    if not math.isfinite(x):
        raise InputError(where, f"must be finite, got {value!r}")
    return x


def require_in(value: float, name: str, low: float = -math.inf, high: float = math.inf, *, low_open: bool = False,
               high_open: bool = False, what: str = "a number") -> float:
    """``value`` if it is a finite number from ``low`` to ``high`` (each end closed unless
    ``*_open``), else a ParameterError on ``name`` saying ``what`` was expected and the range:
    the one check of "a finite number in range" (``require_positive`` is its commonest case)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not (ok and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)):
        if high == math.inf:
            rng = f"{'>' if low_open else '>='} {low:g}"
        elif low == -math.inf:
            rng = f"{'<' if high_open else '<='} {high:g}"
        else:
            rng = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ParameterError(name, f"must be {what} {rng}, got {value!r}")
    return value


def require_positive(value: float, field: str, *, allow_inf: bool = False) -> float:
    """Check ``value`` is a finite (or, if allowed, infinite) number > 0."""
    if math.isnan(value) or value <= 0 or (math.isinf(value) and not allow_inf):
        raise ParameterError(field, f"must be a positive finite number, got {value!r}")
    return value


def flops_to_pf_days(flops: float) -> float:
    """FLOPs -> PF-days."""
    return flops / PF_DAY_FLOPS


def pf_days_to_flops(pf_days: float) -> float:
    """PF-days -> FLOPs."""
    return pf_days * PF_DAY_FLOPS


def train_flops(params: float, tokens: float, flops_per_param_token: float = TRAIN_FLOPS_PER_PARAM_TOKEN) -> float:
    """Training compute in FLOPs: 6 N D for a dense decoder (3 N D for an encoder-decoder
    that activates half its parameters per token)."""
    return flops_per_param_token * params * tokens


def hardware_flops(peak_flops_per_s: float, count: float, mfu: float, hours: float) -> float:
    """Delivered compute in FLOPs: count x peak FLOP/s x MFU x hours x 3600."""
    return count * peak_flops_per_s * mfu * hours * SECONDS_PER_HOUR


def gpu_hours(flops: float, peak_flops_per_s: float, mfu: float) -> float:
    """Device-hours (summed over devices) needed to deliver ``flops`` at ``mfu`` of peak."""
    return flops / (peak_flops_per_s * mfu * SECONDS_PER_HOUR)


def wall_days(flops: float, peak_flops_per_s: float, mfu: float, count: float) -> float:
    """Wall-clock days for ``count`` devices to deliver ``flops``."""
    return gpu_hours(flops, peak_flops_per_s, mfu) / count / HOURS_PER_DAY


def energy_kwh(device_hours: float, watts: float, pue: float = 1.0) -> float:
    """Energy of a run: device-hours x board power (W) x PUE, in kWh."""
    return device_hours * watts * pue / 1000.0


def format_count(x: float | None) -> str:
    """Parameters or tokens for humans: ``70.0B``, ``1.40T``, ``400M``; scientific beyond 1e15."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x == 0:
        return "0"
    if not math.isfinite(x) or abs(x) >= 1e15 or abs(x) < 1:
        return format_sci(x)
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K"), (1.0, "")):
        if abs(x) >= scale * 0.9995:  # so 999.7e9 reads 1.00T, not 1000B
            return _three_sig(abs(x) / scale) + suffix if x > 0 else "-" + _three_sig(-x / scale) + suffix
    return format_sci(x)


def _three_sig(v: float) -> str:
    """Three significant figures keeping trailing zeros: 70 -> 70.0, 1.4 -> 1.40, 400 -> 400."""
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def format_sci(x: float | None) -> str:
    """FLOPs for humans: ``5.76e23``."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x == 0:
        return "0"
    if not math.isfinite(x):
        return str(x)
    mant, exp = f"{x:.2e}".split("e")
    return f"{mant}e{int(exp)}"


def format_float(x: float | None, digits: int = 4) -> str:
    """A plain quantity (loss, ratio, days) with ``digits`` significant figures."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x != 0 and (abs(x) >= 1e6 or abs(x) < 1e-3):
        return format_sci(x)
    return f"{x:.{digits}g}"
