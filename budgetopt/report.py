"""Rendering results: a readable table, JSON or CSV, to stdout or atomically to a file."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import InputError
from .files import write_atomic
from .units import format_count, format_float, format_sci

FORMATS = ("table", "json", "csv")

_COUNT_KEYS = {"params", "tokens", "optimal_params", "optimal_tokens", "unique_tokens", "max_params",
               "max_tokens", "inference_tokens"}

LABELS = {
    "law": "law", "flops": "compute (FLOPs)", "pf_days": "compute (PF-days)", "params": "parameters N",
    "tokens": "training tokens D", "loss": "predicted loss (nats/token)", "tokens_per_param": "tokens per parameter",
    "unique_tokens": "unique tokens U", "epochs": "epochs over U", "inference_tokens": "inference tokens",
    "train_flops": "training compute 6ND (FLOPs)", "lifetime_flops": "lifetime compute (FLOPs)",
    "unused_flops": "unused compute (FLOPs)", "loss_penalty": "loss above unconstrained optimum",
    "converged": "converged", "method": "method", "iterations": "solver iterations",
    "grad_norm": "|dL/dlog N| at answer", "gpu": "accelerator", "dtype": "dtype", "mfu": "MFU",
    "count": "devices", "gpu_hours": "device-hours", "wall_days": "wall-clock days", "cost": "cost",
    "target_loss": "target loss",
}


def human(key: str, value: Any) -> str:
    """Format one value for a table by what its key holds."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, str):
        return value
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    if key in _COUNT_KEYS:
        return format_count(value)
    if key.endswith("flops"):
        return format_sci(value)
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15):
        return f"{int(value):,}" if abs(value) >= 1e4 else str(int(value))
    if key in ("loss", "target_loss"):
        return f"{value:.4f}"
    if 1e4 <= abs(value) < 1e15:
        return f"{value:,.0f}"
    return format_float(value)


def _clean(v: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def to_json(data: Any) -> str:
    return json.dumps(_clean(data), indent=2) + "\n"


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in _clean(r).items()})
    return buf.getvalue()


def to_table(rows: list[dict], title: str | None = None, columns: Iterable[str] | None = None,
             labels: dict[str, str] | None = None, notes: Iterable[str] = ()) -> str:
    """A rich table rendered to text (no colour codes when not on a terminal)."""
    from rich.console import Console
    from rich.table import Table

    labels = labels or {}
    cols = list(columns) if columns is not None else list(dict.fromkeys(k for r in rows for k in r))
    t = Table(title=title, title_justify="left", show_lines=False)
    for c in cols:
        t.add_column(labels.get(c, c), overflow="fold")
    for r in rows:
        t.add_row(*[human(c, r.get(c)) for c in cols])
    buf = io.StringIO()
    Console(file=buf, width=200, force_terminal=False, color_system=None).print(t)
    text = "\n".join(line.rstrip() for line in buf.getvalue().splitlines())
    for n in notes:
        text += "\n" + n
    return text + "\n"


def record_table(record: dict, title: str | None = None, labels: dict[str, str] | None = None,
                 notes: Iterable[str] = ()) -> str:
    """One record as a two-column quantity | value table."""
    labels = {**LABELS, **(labels or {})}
    rows = [{"quantity": labels.get(k, k), "value": human(k, v)} for k, v in record.items()
            if not isinstance(v, (dict, list))]
    return to_table(rows, title=title, columns=["quantity", "value"], notes=notes)


def sweep_report(res: dict) -> str:
    """A sweep result as text: quantiles per quantity, then the robust recommendation with its
    Monte Carlo error, then how it ran."""
    fmt = {"params": format_count, "tokens": format_count, "loss": lambda v: f"{v:.4f}",
           "tokens_per_param": lambda v: format_float(v, 3), "flops": format_sci, "epochs": lambda v: format_float(v, 3)}
    rows = [{"quantity": name, **{p: fmt[name](v) for p, v in q.items()}} for name, q in res["quantiles"].items()]
    text = to_table(rows, title=f"budgetopt sweep — {res['scenario']}: {res['samples']:,} samples, law {res['law']} "
                    f"(uncertainty: {res['uncertainty']}), converged {res['converged_fraction']:.2%}")
    rec = res.get("recommendation")
    if rec:
        lo, hi = rec["p95_regret_ci95"]
        r = {"recommended params": format_count(rec["params"]), "expected loss": f"{rec['expected_loss']:.4f}",
             "expected regret (nats)": f"{format_float(rec['expected_regret'], 3)} ± {format_float(rec['expected_regret_se'], 2)}",
             "p95 regret (nats)": f"{format_float(rec['p95_regret'], 3)} (95% CI {format_float(lo, 3)}–{format_float(hi, 3)})",
             "P(regret < 1 %)": f"{rec['p_regret_below_1pct']:.2%}", "chosen by": f"{rec['risk']} loss, from {rec['from']}",
             "scored on": f"1 in {rec['subsample']} samples ({rec['scored_samples']:,})"}
        text += to_table([{"quantity": k, "value": v} for k, v in r.items()],
                         title="Robust recommendation: commit to N before hours, MFU and the law are known")
    if res.get("recommendation_note"):
        text += f"note: {res['recommendation_note']}\n"
    run = res["run"]
    text += (f"backend {run['backend']} × {run['devices']} device(s), {run['processes']} process(es), chunk {run['chunk_size']:,}, "
             f"{'float64' if run['x64'] else 'float32'}, {run['elapsed_s']:.1f} s\n")
    return text


def emit(text: str, out: str | Path | None) -> None:
    """Print to stdout, or write atomically to ``out``."""
    if out is None:
        sys.stdout.write(text)
    else:
        write_atomic(out, text)


def check_format(fmt: str, allowed: tuple[str, ...] = FORMATS) -> str:
    if fmt not in allowed:
        raise InputError("--format", f"unknown format {fmt!r}; allowed: {', '.join(allowed)}")
    return fmt
