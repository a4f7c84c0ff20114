"""Loss curves from CSV files: one run per file, or several per file (a run column).

Columns: ``step`` (optimizer step, whole, strictly increasing within a run), ``loss`` (> 0) and
``lr`` (the learning rate at the logged step, >= 0). A run's every-step learning rate comes from
its schedule spec (``--schedule NAME=SPEC``, ``schedules.parse_schedule``), checked against the
logged ``lr`` where the file has it, or is rebuilt from the logged values (``schedules.from_logged``).
A run's model size (the fit's group) is a column's value, its file's folder, or one for all.
Every bad cell is named by file, row (1 = first data row) and column.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..core.errors import InputError, ParameterError
from ..core.files import csv_table, require_columns
from .curve_fit import Curve
from .schedules import Schedule, from_logged, learning_rates, parse_schedule

#: a logged learning rate agrees with the schedule's within this relative difference (the shipped
#: files log 16 digits; a rounded log, 4 digits, still agrees)
LR_AGREEMENT = 1e-3


def named_spec(item: str) -> tuple[str | None, str]:
    """``NAME=SPEC`` -> (NAME, SPEC); a bare ``SPEC`` (its first ``=`` comes after the kind's
    colon) -> (None, SPEC)."""
    head, eq, spec = item.partition("=")
    return (head.strip(), spec) if eq and ":" not in head else (None, item)


def parse_schedule_flags(items: Sequence[str], field: str = "schedule") -> dict[str | None, Schedule]:
    """``NAME=SPEC`` items (or one bare ``SPEC``, for every run) -> {name: Schedule}."""
    out: dict[str | None, Schedule] = {}
    for item in items:
        name, spec = named_spec(item)
        if name in out:
            raise ParameterError(field, f"a schedule for {name or 'every run'!r} given twice")
        out[name] = parse_schedule(spec, field)
    if None in out and len(out) > 1:
        raise ParameterError(field, "give one bare SPEC (every run) or NAME=SPEC items, not both")
    return out


def _cell(row: list[str], i: int, where: str, *, low: float, strict: bool, whole: bool = False) -> float:
    cell = row[i].strip() if i < len(row) else ""
    try:
        v = float(cell)
    except ValueError:
        raise InputError(where, f"cannot read {cell!r} as a number") from None
    if not math.isfinite(v) or v < low or (strict and v == low):
        raise InputError(where, f"must be a finite number {'>' if strict else '>='} {low:g}, got {cell!r}")
    if whole and v != int(v):
        raise InputError(where, f"must be a whole number of steps, got {cell!r}")
    return v


def read_curve_files(paths: Sequence[str | Path], *, holdout: Sequence[str | Path] = (),
                     schedules: dict[str | None, Schedule] | None = None,
                     step_col: str = "step", lr_col: str = "lr", loss_col: str = "loss", run_col: str | None = None,
                     size_col: str | None = None, by_folder: bool = False, warmup: int | None = None,
                     field: str = "curves") -> list[Curve]:
    """Every run in ``paths`` and then in ``holdout`` (errors about a holdout file name
    ``holdout``) as a Curve (file order, then first appearance in a file); ``schedules`` may
    name runs of either."""
    schedules = dict(schedules or {})
    files = [(Path(p), field) for p in paths] + [(Path(p), "holdout") for p in holdout]
    stems = [p.stem for p, _ in files]
    curves: list[Curve] = []
    for path, path_field in files:
        rows, header, col = csv_table(path, path_field, "a CSV of loss curves")
        named = [(step_col, "step_col"), (loss_col, "loss_col")] + ([(run_col, "run_col")] if run_col else []) \
            + ([(size_col, "size_col")] if size_col else [])
        require_columns(path, header, col, named)
        runs: dict[str, list[tuple[int, list[str]]]] = {}
        for r, row in enumerate(rows[1:], start=1):
            if not any(c.strip() for c in row):
                continue
            name = row[col[run_col]].strip() if run_col and col[run_col] < len(row) else ""
            if not run_col:
                name = path.stem if stems.count(path.stem) == 1 else f"{path.parent.name}/{path.stem}"
            runs.setdefault(name, []).append((r, row))
        if not runs:
            raise ParameterError(path_field, f"{path} has no rows of data")
        for name, items in runs.items():
            if any(c.name == name for c in curves):
                raise ParameterError(path_field, f"run {name!r} appears in two files ({path.name} and another); name "
                                            "runs uniquely")
            curves.append(_curve(path, name, items, col, step_col, lr_col, loss_col, size_col, by_folder,
                                 schedules.get(name, schedules.get(None)), warmup))
    unknown = sorted(k for k in schedules if k is not None and all(c.name != k for c in curves))
    if unknown:
        raise ParameterError("schedule", f"no run named {unknown[0]!r}; runs: {', '.join(c.name for c in curves)}")
    return curves


def _curve(path: Path, name: str, items: list, col: dict[str, int], step_col: str, lr_col: str, loss_col: str,
           size_col: str | None, by_folder: bool, schedule: Schedule | None, warmup: int | None) -> Curve:
    at = lambda r, c: f"{path.name}, row {r}, column {c!r}"  # noqa: E731
    steps = np.array([_cell(row, col[step_col], at(r, step_col), low=0, strict=False, whole=True)
                      for r, row in items], np.int64)
    loss = np.array([_cell(row, col[loss_col], at(r, loss_col), low=0, strict=True) for r, row in items])
    rows = np.array([r for r, _ in items])
    bad = np.nonzero(np.diff(steps) <= 0)[0]
    if len(bad):
        i = bad[0] + 1
        raise InputError(at(rows[i], step_col), f"run {name!r}: step {steps[i]} does not follow step {steps[i - 1]} "
                                                "(steps must increase)")
    if len(steps) < 3:
        raise ParameterError("curves", f"run {name!r} in {path.name} has {len(steps)} logged points; a curve needs 3")
    logged = None
    if lr_col in col:
        logged = np.array([_cell(row, col[lr_col], at(r, lr_col), low=0, strict=False) for r, row in items])
    if schedule is not None:
        lrs = learning_rates(schedule)
        if steps[-1] >= len(lrs):
            i = int(np.argmax(steps >= len(lrs)))
            raise InputError(at(rows[i], step_col), f"run {name!r}: step {steps[i]} is past its schedule's "
                                                    f"{len(lrs)} steps ({schedule.text})")
        if logged is not None:
            want = lrs[steps]
            off = np.abs(want - logged) > LR_AGREEMENT * np.maximum(np.abs(want), 1e-3 * lrs.max())
            if off.any():
                i = int(np.argmax(off))
                raise InputError(at(rows[i], lr_col), f"run {name!r}: the schedule {schedule.text!r} gives "
                                                      f"{want[i]:.6g} at step {steps[i]}; the file logs "
                                                      f"{logged[i]:.6g}")
        text = schedule.text
    else:
        if logged is None:
            raise ParameterError("schedule", f"run {name!r}: {path.name} has no {lr_col!r} column; give its "
                                             f"schedule (--schedule {name}=SPEC) or the column (--lr-col)")
        if warmup is not None and warmup > steps[0]:
            raise ParameterError("warmup", f"{warmup} steps is past run {name!r}'s first logged step ({steps[0]})")
        lrs = from_logged(steps, logged, warmup)
        text = "logged"
    if lrs[1:].min() <= 0:
        raise ParameterError("schedule", f"run {name!r}: the learning rate reaches 0 after step 0 ({text}); the "
                                         "multi-power law needs it positive")
    if size_col:
        sizes = {row[col[size_col]].strip() for _, row in items}
        if len(sizes) > 1:
            raise InputError(at(rows[0], size_col), f"run {name!r} has several sizes: {', '.join(sorted(sizes))}")
        group = sizes.pop()
    else:
        group = path.resolve().parent.name if by_folder else "all"
    return Curve(name, group, steps, loss, lrs, text, str(path), rows)
