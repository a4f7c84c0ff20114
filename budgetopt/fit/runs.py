"""Training runs from a CSV file: one ladder, or several in one file (``group`` columns), rows
filtered by value (``where``), with the nominal compute budget of each run's isoFLOP curve when
the file gives one; the fitting approaches; runs padded to a common length and bootstrap
weights, so that groups and replicates fit in one vmapped call.

Units: parameters and tokens are counts, the budget is FLOPs, the loss is nats per token; all
are stored as natural logs in float64. Errors name the row (1 = first data row) and column.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..core.errors import InputError, ParameterError
from ..core.files import csv_table, require_columns
from ..core.units import TRAIN_FLOPS_PER_PARAM_TOKEN
from ..model.validity import Validity, from_runs

MIN_RUNS = 5
#: The fitting approaches: the id a user types (``fit --approach``, ``ladder --approach``), the
#: same string in every record, -> the name reports print.
APPROACHES = {"2": "Approach 2", "3": "Approach 3", "vpnls": "VPNLS"}
DEFAULT_TARGET = 5.76e23  # Chinchilla's budget (FLOPs): where fits report their allocation unless told
PAD = 32  # runs are padded (weight 0) to a multiple of this, so ladders of similar length share a compile


class Runs(NamedTuple):
    """Training runs: natural logs of parameters, tokens and final loss; ``log_c``: log of the
    budget the file gives (FLOPs; None when it gives none: then 6·N·D is the budget); ``rows``:
    where each run came from."""

    log_n: np.ndarray
    log_d: np.ndarray
    log_l: np.ndarray
    log_c: np.ndarray | None = None
    rows: np.ndarray | None = None  # each run's data row in the file (1 = first), for the reports
    metric: np.ndarray | None = None  # a downstream metric per run (``metric_col``), as given

    @property
    def log_budget(self) -> np.ndarray:
        """The budget of each run: the file's, else log(6·N·D)."""
        return self.log_c if self.log_c is not None else math.log(TRAIN_FLOPS_PER_PARAM_TOKEN) + self.log_n + self.log_d

    def fitted_range(self) -> Validity:
        """The range of these runs, as a law fitted on them records it."""
        return from_runs(*(np.exp(v).tolist() for v in (self.log_n, self.log_d, self.log_budget)))

    def subset(self, keep: np.ndarray) -> Runs:
        """The runs where ``keep`` (a boolean mask or index array)."""
        return Runs(*(None if v is None else v[keep] for v in self))


def parse_where(items: list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
    """``COL=VALUE`` filters -> (column, value) pairs."""
    out = []
    for item in items:
        col, sep, value = item.partition("=")
        if not sep or not col.strip():
            raise ParameterError("where", f"expected COL=VALUE, got {item!r}")
        out.append((col.strip(), value.strip()))
    return out


def parse_group(text: str | None) -> list[str]:
    """``COL[,COL]`` -> column names (empty: one group)."""
    if text is None:
        return []
    cols = [c.strip() for c in text.split(",")]
    if not all(cols):
        raise ParameterError("group", f"expected COL or COL,COL, got {text!r}")
    return cols


def parse_last(text: str | None) -> tuple[str, str] | None:
    """``RUN,STEP`` -> (run column, step column); None stays None."""
    if text is None:
        return None
    cols = [c.strip() for c in text.split(",")]
    if len(cols) != 2 or not all(cols):
        raise ParameterError("last", f"expected RUN,STEP (e.g. hyper_id,step), got {text!r}")
    return cols[0], cols[1]


def _cell_number(row: list[str], i: int, r: int, name: str, positive: bool = True) -> float:
    cell = row[i].strip() if i < len(row) else ""
    try:
        v = float(cell)
    except ValueError:
        raise InputError(f"row {r}, column {name!r}", f"cannot read {cell!r} as a number") from None
    if not positive and not math.isfinite(v):
        raise InputError(f"row {r}, column {name!r}", f"must be a finite number, got {cell!r}")
    if positive and (not math.isfinite(v) or v <= 0):
        raise InputError(f"row {r}, column {name!r}", f"must be a positive finite number, got {cell!r}")
    return v


def _selected(path: Path, rows: list[list[str]], col: dict[str, int], group: Sequence[str],
              where: Sequence[tuple[str, str]], min_runs: int) -> dict[str, list[tuple[int, list[str]]]]:
    """The data rows (1 = first) kept by ``where``, per group key ("all" without groups)."""
    cell = lambda row, c: row[col[c]].strip() if col[c] < len(row) else ""  # noqa: E731
    kept: dict[str, list[tuple[int, list[str]]]] = {}
    seen: dict[str, set] = {w: set() for w, _ in where}
    for r, row in enumerate(rows[1:], start=1):
        if not any(c.strip() for c in row):
            continue
        for w in seen:
            seen[w].add(cell(row, w))
        if any(cell(row, w) != v for w, v in where):
            continue
        kept.setdefault("/".join(cell(row, g) for g in group) or "all", []).append((r, row))
    if not kept:
        w, v = next(((w, v) for w, v in where if v not in seen[w]), where[0] if where else ("", ""))
        values = ", ".join(sorted(seen.get(w, ()))[:12]) or "none"
        raise ParameterError("where" if where else "runs", f"no row has {w} = {v!r}; values: {values}" if where
                             else f"{path} has no runs; a fit needs at least {min_runs}")
    return kept


def read_groups(path: str | Path, n_col: str = "params", d_col: str = "tokens", c_col: str | None = None,
                loss_col: str = "loss", group: Sequence[str] = (), where: Sequence[tuple[str, str]] = (),
                drop_highest: int = 0, loss_min: float | None = None, loss_max: float | None = None,
                min_runs: int = MIN_RUNS, metric_col: str | None = None) -> dict[str, Runs]:
    """The runs of ``path`` per group (key: the ``group`` columns' values joined by "/"; "all"
    without groups), in file order. Tokens come from ``d_col`` or, when absent, from the budget:
    D = C/(6N). The budget column ``c_col``, when present, is kept as each run's nominal budget.
    ``where``: keep rows whose column equals the value (text, stripped). ``metric_col``: a
    downstream metric to read too (any finite number). ``drop_highest``,
    ``loss_min`` and ``loss_max`` filter each group; each must keep ``min_runs``."""
    path = Path(path)
    rows, header, col = csv_table(path)
    named = [(n_col, "n_col"), (loss_col, "loss_col")] + [(g, "group") for g in group]
    named += [(w, "where") for w, _ in where]
    require_columns(path, header, col, named + ([(metric_col, "metric_col")] if metric_col is not None else []))
    if c_col is not None:  # named: it must be there
        require_columns(path, header, col, [(c_col, "c_col")])
    c_col = c_col or "flops"
    use_d, use_c = d_col in col, c_col in col
    if not use_d and not use_c:
        raise ParameterError("d_col",
                             f"need a tokens column ({d_col!r}) or a compute column ({c_col!r}); columns: "
                             f"{', '.join(header)}")
    cells: dict[str, list] = {}
    for key, kept in _selected(path, rows, col, group, where, min_runs).items():
        for r, row in kept:
            n = _cell_number(row, col[n_col], r, n_col)
            c = _cell_number(row, col[c_col], r, c_col) if use_c else None
            d = _cell_number(row, col[d_col], r, d_col) if use_d else c / (6 * n)
            m = _cell_number(row, col[metric_col], r, metric_col, positive=False) if metric_col is not None else None
            cells.setdefault(key, []).append((n, d, _cell_number(row, col[loss_col], r, loss_col), c, r, m))
    if drop_highest < 0:
        raise ParameterError("drop_highest", f"must be >= 0, got {drop_highest}")
    out = {}
    for key, vals in cells.items():
        a = np.array([v[:3] for v in vals], np.float64)
        keep = np.ones(len(a), bool)
        if drop_highest:
            keep[np.argsort(-a[:, 2], kind="stable")[:drop_highest]] = False
        if loss_min is not None:
            keep &= a[:, 2] >= loss_min
        if loss_max is not None:
            keep &= a[:, 2] <= loss_max
        where_ = f" in group {key!r}" if group else ""
        if keep.sum() < min_runs:
            raise ParameterError("runs", f"{int(keep.sum())} runs left{where_} after filtering; a fit needs at least "
                                 f"{min_runs}")
        if len(np.unique(a[keep, 0])) < 2 or len(np.unique(a[keep, 1])) < 2:
            raise ParameterError("runs", f"the runs{where_} have one model size or one token count: a law needs "
                                 "runs that vary in both")
        log_c = np.log(np.array([v[3] for v in vals], np.float64))[keep] if use_c else None
        metric = np.array([v[5] for v in vals], np.float64)[keep] if metric_col is not None else None
        out[key] = Runs(*np.log(a[keep].T), log_c, np.array([v[4] for v in vals])[keep], metric)
    return out


class Table(NamedTuple):
    """Runs as named variables (a law form's columns): ``values[name]`` per run as given (float64),
    ``log_l`` the natural log of the loss, ``rows`` each run's data row (1 = first)."""

    values: dict[str, np.ndarray]
    log_l: np.ndarray
    rows: np.ndarray

    def subset(self, keep: np.ndarray) -> Table:
        return Table({k: v[keep] for k, v in self.values.items()}, self.log_l[keep], self.rows[keep])


def read_table(path: str | Path, columns: dict[str, tuple[str, str]], loss_col: str = "loss",
               group: Sequence[str] = (), where: Sequence[tuple[str, str]] = (), baseline: str | None = None,
               last: tuple[str, str] | None = None, min_runs: int = MIN_RUNS) -> dict[str, Table]:
    """The runs of ``path`` as the variables a law form needs, per group. ``columns``: variable ->
    (column, flag that named it); every value must be a positive finite number. ``where`` keeps
    rows as in ``read_groups``. ``last`` = (run column, step column): keep each run's row with the
    largest step (a file of whole loss curves -> final losses). ``baseline``: the group whose runs
    join every other group (e.g. the dense runs, E = 1, in each router type's fit)."""
    path = Path(path)
    rows, header, col = csv_table(path)
    named = ([(c, flag) for c, flag in columns.values()] + [(loss_col, "loss_col")] + [(g, "group") for g in group]
             + [(w, "where") for w, _ in where] + ([(last[0], "last"), (last[1], "last")] if last else []))
    require_columns(path, header, col, named)
    kept = _selected(path, rows, col, group, where, min_runs)
    if last is not None:
        run_c, step_c = col[last[0]], col[last[1]]
        for key, items in kept.items():
            best: dict[str, tuple[float, int, list[str]]] = {}
            for r, row in items:
                run = row[run_c].strip() if run_c < len(row) else ""
                step = _cell_number(row, step_c, r, last[1], positive=False)
                if run not in best or step > best[run][0]:
                    best[run] = (step, r, row)
            kept[key] = sorted(((r, row) for _, r, row in best.values()), key=lambda t: t[0])
    if baseline is not None:
        if not group:
            raise ParameterError("baseline_group", "needs {group}: the baseline's runs join every other group",
                                 names=True)
        if baseline not in kept:
            raise ParameterError("baseline_group", f"no group {baseline!r}; groups: {', '.join(kept)}")
        base = kept.pop(baseline)
        if not kept:
            raise ParameterError("baseline_group", f"{baseline!r} is the only group: nothing to join it to")
        kept = {k: sorted(base + v, key=lambda t: t[0]) for k, v in kept.items()}
    out = {}
    for key, items in kept.items():
        if len(items) < min_runs:
            where_ = f" in group {key!r}" if group else ""
            raise ParameterError("runs", f"{len(items)} runs{where_}; a fit needs at least {min_runs}")
        vals = {v: np.array([_cell_number(row, col[c], r, c) for r, row in items]) for v, (c, _) in columns.items()}
        loss = np.array([_cell_number(row, col[loss_col], r, loss_col) for r, row in items])
        out[key] = Table(vals, np.log(loss), np.array([r for r, _ in items]))
    return out


def read_runs(path: str | Path, n_col: str = "params", d_col: str = "tokens", c_col: str | None = None,
              loss_col: str = "loss", drop_highest: int = 0, loss_min: float | None = None,
              loss_max: float | None = None) -> Runs:
    """The runs of ``path`` as one ladder (``read_groups`` without groups or filters)."""
    return read_groups(path, n_col, d_col, c_col, loss_col, drop_highest=drop_highest, loss_min=loss_min,
                       loss_max=loss_max)["all"]


def bootstrap_weights(n: int, replicates: int, seed: int) -> np.ndarray:
    """[replicates, n] integer weights: resamples of n runs with replacement. The same for a
    group whatever the other groups, so a grouped fit equals the group fitted alone."""
    rng = np.random.default_rng(seed)
    return np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(replicates)]).astype(np.float64)


def replicate_weights(n: int, bootstrap: int, seed: int) -> np.ndarray:
    """[1 + bootstrap, n]: the fit to all runs once, then ``bootstrap_weights``."""
    ones = np.ones((1, n))
    return np.vstack([ones, bootstrap_weights(n, bootstrap, seed)]) if bootstrap else ones


def padded(runs_list: list[Runs], weights_list: list[np.ndarray]) -> list[np.ndarray]:
    """(log N, log D, L, w) stacked to [sum of replicates, n_max padded] (weight 0 past a
    ladder's runs), float64 (NumPy: the jitted fits take them as they are)."""
    n_max = -(-max(len(r.log_l) for r in runs_list) // PAD) * PAD
    cols = [[], [], [], []]
    for runs, w in zip(runs_list, weights_list):
        n = len(runs.log_l)
        for k, v in enumerate((runs.log_n, runs.log_d, np.exp(runs.log_l))):
            cols[k].append(np.broadcast_to(np.pad(v, (0, n_max - n), constant_values=v[0]), (len(w), n_max)))
        cols[3].append(np.pad(w, ((0, 0), (0, n_max - n))))
    return [np.concatenate(c).astype(np.float64) for c in cols]
