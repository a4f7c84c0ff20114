"""Where a law was fitted, and how far an answer extrapolates from there.

Every preset records the range of its runs (``data/laws.toml``, with sources); a law fitted by
``budgetopt fit`` records its own runs' range. Every real plan at 1e24+ FLOPs extrapolates the
published fits by orders of magnitude in compute and model size: that is said once, plainly, as
a note. A warning is kept for answers that leave the fitted region in *shape* — tokens per
parameter outside the fitted range, or a model smaller than the smallest fitted — by more
than SHAPE_FACTOR: there the law's functional form itself is untested.

A law fitted from a team's runs (``fitted_by`` an approach) that is asked beyond its largest run
also carries a **model-error band** (DESIGN §17): backtests of real ladders (``fit --backtest``,
``data/model_error.toml``) found the forecast ln N* off by (drift + sd z) per decade
extrapolated, and the runs' ln loss likewise; so the true value lies in forecast x exp(-(drift ±
z sd) x decades) at MODEL_ERROR_LEVEL. It rests on four ladders within two decades: a scale of
what to expect, carried linearly beyond, not a correction to apply.

Units: parameters and tokens are counts, compute is FLOPs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from ..core.errors import InputError
from ..core.files import data_toml
from ..core.units import TRAIN_FLOPS_PER_PARAM_TOKEN

SHAPE_FACTOR = 2.0  # tolerated excursion in tokens per parameter, or below the smallest model
MODEL_ERROR_ENTRY = {"2": "approach2", "3": "approach3", "vpnls": "vpnls"}  # fitted_by -> model_error.toml
MODEL_ERROR_LEVEL = 0.9
Range = tuple[float, float]


@dataclass(frozen=True)
class Validity:
    """Ranges (low, high) a law was fitted on; None where unknown. ``tokens_per_param``: when
    not stated, the widest the params and tokens ranges allow."""

    params: Range | None = None
    tokens: Range | None = None
    flops: Range | None = None
    tokens_per_param: Range | None = None
    fitted_on: str = ""
    fitted_by: str = ""  # the approach that fitted a law to these runs (a MODEL_ERROR_ENTRY key); "" for a preset

    def ratio_range(self) -> Range | None:
        if self.tokens_per_param is not None:
            return self.tokens_per_param
        if self.params is None or self.tokens is None:
            return None
        return self.tokens[0] / self.params[1], self.tokens[1] / self.params[0] if self.params[0] > 0 else math.inf


def from_mapping(m: dict, where: str) -> Validity:
    """A preset's ``[name.validity]`` table: params, tokens, flops, tokens_per_param as [low,
    high] (any may be absent), ``fitted_on`` (what the runs were) and, for a law fitted by
    `budgetopt fit`, ``fitted_by`` (its approach: 2, 3 or vpnls)."""
    out = {}
    for key in ("params", "tokens", "flops", "tokens_per_param"):
        if key not in m:
            continue
        v = m[key]
        if not (isinstance(v,
                           list) and len(v) == 2 and all(isinstance(x,
                                                                    (int,
                                                                     float)) and not isinstance(x, bool) for x in v)
                and 0 <= v[0] <= v[1] and 0 < v[1] and math.isfinite(v[1])):
            raise InputError(f"{where}.validity.{key}",
                             f"must be [low, high] with 0 <= low <= high (0: not stated), got {v!r}")
        out[key] = (float(v[0]), float(v[1]))
    by = m.get("fitted_by", "")
    if by != "" and by not in MODEL_ERROR_ENTRY:
        raise InputError(f"{where}.validity.fitted_by", f"must be one of {', '.join(MODEL_ERROR_ENTRY)}, got {by!r}")
    return Validity(**out, fitted_on=str(m.get("fitted_on", "")), fitted_by=by)


def from_runs(params: list[float], tokens: list[float], flops: list[float]) -> Validity:
    """The range of a team's own runs (what ``budgetopt fit`` records with a fitted law)."""
    ratios = [d / n for n, d in zip(params, tokens)]
    return Validity((min(params), max(params)), (min(tokens), max(tokens)), (min(flops), max(flops)),
                    (min(ratios), max(ratios)), f"{len(params)} runs")


def to_mapping(v: Validity) -> dict:
    """JSON/TOML form (the inverse of ``from_mapping``)."""
    return {k: list(getattr(v, k)) for k in ("params", "tokens", "flops",
                                             "tokens_per_param") if getattr(v, k) is not None} | (
        {"fitted_on": v.fitted_on} if v.fitted_on else {}) | ({"fitted_by": v.fitted_by} if v.fitted_by else {})


def _beyond(x: float, r: Range | None) -> float:
    """x / high above the range, x / low (< 1) below it, 1 inside (or no range)."""
    if r is None:
        return 1.0
    return x / r[1] if x > r[1] else x / r[0] if x < r[0] and r[0] > 0 else 1.0


def model_error_band(v: Validity, params: float, tokens: float, flops: float, loss: float | None = None) -> dict | None:
    """The model-error band of an answer (params, tokens, loss) of a law ``fitted_by`` an
    approach, ``flops`` beyond its largest run: at MODEL_ERROR_LEVEL, true = answer x
    exp(-(drift ± z sd) x decades) with the approach's backtest entry; tokens mirror params
    (D = C / 6N); loss where the entry has a loss drift. None for a preset or within range."""
    if not v.fitted_by or v.flops is None or not flops > v.flops[1]:
        return None
    entry = data_toml("model_error.toml")[MODEL_ERROR_ENTRY[v.fitted_by]]
    z = NormalDist().inv_cdf((1 + MODEL_ERROR_LEVEL) / 2)
    dec = math.log10(flops / v.flops[1])

    def band(x: float, drift: float, sd: float) -> list[float]:
        return [x * math.exp(-(drift + z * sd) * dec), x * math.exp(-(drift - z * sd) * dec)]

    n_lo, n_hi = band(params, entry["n_star_drift_per_decade"], entry["n_star_sd_per_decade"])
    out = {"decades": dec, "level": MODEL_ERROR_LEVEL, "entry": MODEL_ERROR_ENTRY[v.fitted_by],
           "source": entry["source"], "params": [n_lo, n_hi],
           "tokens": [tokens * params / n_hi, tokens * params / n_lo]}
    text = f"N* {n_lo:.3g}-{n_hi:.3g}, D* {out['tokens'][0]:.3g}-{out['tokens'][1]:.3g}"
    if loss is not None and "loss_drift_per_decade" in entry:
        out["loss"] = band(loss, entry["loss_drift_per_decade"], entry["loss_sd_per_decade"])
        text += f", loss {out['loss'][0]:.4g}-{out['loss'][1]:.4g}"
    out["note"] = (f"model error {dec:.2g} decades past the largest fitted run ({MODEL_ERROR_LEVEL:.0%}, from "
                   f"backtests of real ladders, {out['entry']}): {text}")
    return out


def extrapolation(v: Validity | None, params: float, tokens: float, flops: float | None = None,
                  loss: float | None = None) -> dict | None:
    """How far (params, tokens, compute) lies from where the law was fitted: factors (1 inside,
    > 1 above, < 1 below), one plain ``note`` on scale, and ``warnings`` on shape; for a law
    fitted from runs beyond its largest, the ``model_error`` band (``model_error_band``; its
    note joins the note)."""
    if v is None:
        return None
    flops = TRAIN_FLOPS_PER_PARAM_TOKEN * params * tokens if flops is None else flops
    ratio = tokens / params
    f = {"params": _beyond(params, v.params), "tokens": _beyond(tokens, v.tokens), "flops": _beyond(flops, v.flops),
         "tokens_per_param": _beyond(ratio, v.ratio_range())}
    scale = [f"{k} x{f[k]:.3g} beyond the largest fitted ({getattr(v, k)[1]:.3g})" for k in ("flops", "params")
             if f[k] > 1.0]
    below = [f"{k} x{1 / f[k]:.3g} below the smallest fitted" for k in ("params", "tokens",
                                                                        "tokens_per_param") if f[k] < 1.0]
    note = ("extrapolates " + "; ".join(scale + below) if scale or below else "within the range the law was fitted on")
    warnings = []
    lo_n = v.params[0] if v.params else 0.0
    if lo_n > 0 and params < lo_n / SHAPE_FACTOR:
        warnings.append(f"N = {params:.3g} is x{lo_n / params:.3g} below the smallest model the law was fitted on "
                        f"({lo_n:.3g}): the law is untested there")
    rr = v.ratio_range()
    if rr is not None and not (rr[0] / SHAPE_FACTOR <= ratio <= rr[1] * SHAPE_FACTOR):
        warnings.append(f"{ratio:.3g} tokens per parameter is outside the fitted range {rr[0]:.3g}-{rr[1]:.3g} by more "
                        f"than x{SHAPE_FACTOR:g}: the law's shape is untested there")
    out = {"factors": f, "note": note + (f" (fitted on {v.fitted_on})" if v.fitted_on else ""), "warnings": warnings}
    band = model_error_band(v, params, tokens, flops, loss)
    if band is not None:
        out["model_error"] = band
        out["note"] += "; " + band["note"]
    return out



def attach(record: dict, ext: dict | None, warn: bool = True) -> dict:
    """``record`` with ``ext`` (``extrapolation``'s answer) as its ``extrapolation`` and, with
    ``warn``, its shape warnings added to the record's ``warnings``; unchanged without ``ext``."""
    if ext is not None:
        record["extrapolation"] = ext
        if warn:
            record.setdefault("warnings", []).extend(ext["warnings"])
    return record
