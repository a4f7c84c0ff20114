"""Learning-rate schedules, step by step: what a loss-curve law reads (DESIGN §16).

A schedule is written ``KIND:key=value,...`` (a ``--schedule`` or ``--predict`` spec) and becomes
the learning rate of every optimizer step 0 .. steps − 1 (float64). Kinds and keys:

- every kind: ``steps`` (total optimizer steps, required), ``lr`` (peak learning rate, required),
  ``warmup`` (steps of linear warmup from 0, default 0);
- ``constant``: ``lr`` after the warmup;
- ``cosine``: from ``lr`` down to ``final`` (default lr/10) at the last step,
  lr_s = final + ½(lr − final)(1 + cos(π (s − warmup)/(steps − warmup)));
- ``wsd``: warmup, stable at ``lr``, then a cooldown of ``cooldown`` steps (a number ≥ 1) or that
  fraction of the steps (< 1; default 0.2, Hägele et al. 2024) to ``final`` (default 0), of
  ``shape`` ``linear`` (default), ``1-sqrt`` (Hägele et al.: final + (lr − final)(1 − √x)) or
  ``geometric`` (lr^(1−x) final^x, final > 0), x = (s − start)/cooldown;
- ``two-stage``: ``lr`` until step ``switch``, then ``lr2``.

The warmup is ``numpy.linspace(0, lr, warmup)`` over steps 0 .. warmup − 1 and every formula is
written as in the official multi-power-law code (thu-yao-01-luo/MultiPowerLaw,
``src/lr_schedules.py``), so the shipped curves' schedules (``../shared/data/curves/README.md``)
are rebuilt exactly (tests/curves/test_schedules.py checks their logged learning rates).

``from_logged``: without a spec, the learning rate between logged steps is interpolated linearly
(a change between two flat stretches is a jump half-way), and the warmup (linear from 0,
``warmup`` steps, by default up to the first logged step) is assumed. A jump is then placed within
half a logging interval; give the spec where that matters.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..core.errors import InputError, ParameterError
from ..core.units import parse_number

SCHEDULE_KINDS = ("constant", "cosine", "wsd", "two-stage")
SHAPES = ("linear", "1-sqrt", "geometric")
_KEYS = {"constant": (), "cosine": ("final",), "wsd": ("final", "cooldown", "shape"),
         "two-stage": ("switch", "lr2")}
COMMON_KEYS = ("steps", "lr", "warmup")


class Schedule(NamedTuple):
    """A parsed schedule: its kind, its keys' values (numbers, or ``shape``'s name) and the text
    it was read from (its name in reports)."""

    kind: str
    values: dict
    text: str


def parse_schedule(text: str, field: str) -> Schedule:
    """``KIND:key=value,...`` -> Schedule; an error names ``field`` (a parameter name, renamed
    to its flag at the edge) and the key."""
    kind, _, rest = str(text).strip().partition(":")
    kind = kind.strip()
    if kind not in SCHEDULE_KINDS:
        raise ParameterError(field, f"unknown schedule {kind!r} in {text!r}; expected KIND:key=value,... with KIND one "
                                f"of {', '.join(SCHEDULE_KINDS)} (e.g. "
                                "cosine:steps=24000,lr=3e-4,final=3e-5,warmup=2160)")
    allowed = COMMON_KEYS + _KEYS[kind]
    values: dict = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, val = (s.strip() for s in item.partition("="))
        if not eq or key not in allowed:
            raise ParameterError(field, f"{kind}: cannot read {item!r}; keys: {', '.join(allowed)}")
        if key in values:
            raise ParameterError(field, f"{kind}: {key} given twice")
        if key == "shape":
            if val not in SHAPES:
                raise ParameterError(field, f"{kind}: shape {val!r}; allowed: {', '.join(SHAPES)}")
            values[key] = val
            continue
        try:
            v = parse_number(val, field)
        except InputError as e:
            raise ParameterError(field, f"{kind}: {key}: {e.message}") from None
        if not math.isfinite(v) or v < 0:
            raise ParameterError(field, f"{kind}: {key} must be a finite number >= 0, got {val!r}")
        values[key] = v
    for key in ("steps", "lr"):
        if key not in values:
            raise ParameterError(field, f"{kind}: {key}= is required (keys: {', '.join(allowed)})")
    steps, lr, warmup = values["steps"], values["lr"], values.setdefault("warmup", 0.0)
    for key in ("steps", "warmup", "switch"):
        if key in values and values[key] != int(values[key]):
            raise ParameterError(field, f"{kind}: {key} must be a whole number of steps, got {values[key]:g}")
    if steps < 2 or lr <= 0:
        raise ParameterError(field, f"{kind}: needs steps >= 2 and lr > 0")
    if warmup >= steps:
        raise ParameterError(field, f"{kind}: warmup ({warmup:g}) must be shorter than steps ({steps:g})")
    if kind == "cosine":
        values.setdefault("final", lr / 10)
    if kind == "wsd":
        values.setdefault("final", 0.0)
        values.setdefault("shape", "linear")
        cd = values.setdefault("cooldown", 0.2)
        cd_steps = round(cd * steps) if cd < 1 else cd
        if cd_steps != int(cd_steps) or not 1 <= cd_steps <= steps - warmup:
            raise ParameterError(field, f"wsd: cooldown {cd:g} gives {cd_steps:g} steps; it must be whole and "
                                        f"between 1 and steps − warmup ({steps - warmup:g})")
        values["cooldown_steps"] = float(cd_steps)
        if values["shape"] == "geometric" and values["final"] <= 0:
            raise ParameterError(field, "wsd: a geometric cooldown needs final > 0")
    if kind in ("cosine", "wsd") and values["final"] > lr:
        raise ParameterError(field, f"{kind}: final ({values['final']:g}) must not exceed lr ({lr:g})")
    if kind == "two-stage":
        for key in ("switch", "lr2"):
            if key not in values:
                raise ParameterError(field, f"two-stage: {key}= is required")
        if not warmup <= values["switch"] < steps or values["lr2"] <= 0:
            raise ParameterError(field, "two-stage: needs warmup <= switch < steps and lr2 > 0")
    return Schedule(kind, values, str(text).strip())


def learning_rates(s: Schedule) -> np.ndarray:
    """The learning rate of every step 0 .. steps − 1 (float64)."""
    v = s.values
    steps, lr, warmup = int(v["steps"]), float(v["lr"]), int(v["warmup"])
    i = np.arange(steps, dtype=np.float64)
    out = np.full(steps, lr)
    if s.kind == "cosine":
        out = v["final"] + 0.5 * (lr - v["final"]) * (1 + np.cos(np.pi * (i - warmup) / (steps - warmup)))
    elif s.kind == "wsd":
        start = steps - int(v["cooldown_steps"])
        x = np.clip((i - start) / (steps - start), 0.0, None)
        decay = {"linear": lambda: lr * (1 - x) + v["final"] * x,
                 "1-sqrt": lambda: v["final"] + (lr - v["final"]) * (1 - np.sqrt(x)),
                 "geometric": lambda: lr ** (1 - x) * v["final"] ** x}[v["shape"]]()
        out = np.where(i >= start, decay, lr)
    elif s.kind == "two-stage":
        out = np.where(i >= v["switch"], v["lr2"], lr)
    if warmup:
        out[:warmup] = np.linspace(0.0, lr, warmup)
    return out


def from_logged(steps: np.ndarray, lrs: np.ndarray, warmup: int | None = None) -> np.ndarray:
    """Every step's learning rate 0 .. steps[-1] rebuilt from logged (step, lr) pairs: linear
    between logged steps, except a change between two flat stretches (the value logged twice
    before it and twice after, as a two-stage schedule logs), which is a jump half-way between
    the two logged steps; a linear warmup from 0 over ``warmup`` steps (default: up to the first
    logged step), then the first logged value up to the first logged step."""
    first = int(steps[0])
    w = first if warmup is None else int(warmup)
    i = np.arange(int(steps[-1]) + 1, dtype=np.float64)
    out = np.interp(i, steps.astype(np.float64), lrs)
    for j in range(1, len(steps) - 2):
        if lrs[j] != lrs[j + 1] and lrs[j - 1] == lrs[j] and lrs[j + 1] == lrs[j + 2]:
            mid = (int(steps[j]) + int(steps[j + 1]) + 1) // 2
            out[int(steps[j]):mid] = lrs[j]
            out[mid:int(steps[j + 1]) + 1] = lrs[j + 1]
    if w:
        out[:w] = np.linspace(0.0, float(lrs[0]), w)
    return out
