"""Rendering results: every command's answer as a readable table, JSON or CSV (``render``), to
stdout or atomically to a file (``emit``), and the lines it says on stderr (``notices``).

Importable without typer or JAX (a notebook can render a record): what it needs from the
library it imports where it needs it."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..core.errors import ParameterError
from ..core.files import write_atomic
from ..core.units import format_count, format_float, format_sci

FORMATS = ("table", "json", "csv")

_COUNT_KEYS = {"params", "tokens", "optimal_params", "optimal_tokens", "unique_tokens", "max_params",
               "max_tokens", "inference_tokens", "params_active", "params_total", "max_total_params", "critical_tokens",
               "kv_tokens", "kv_cache"}

LABELS = {
    "law": "law", "flops": "compute (FLOPs)", "pf_days": "compute (PF-days)", "params": "parameters N",
    "tokens": "training tokens D", "loss": "predicted loss (nats/token)", "tokens_per_param": "tokens per parameter",
    "unique_tokens": "unique tokens U", "epochs": "epochs over U", "inference_tokens": "inference tokens",
    "train_flops": "training compute 6ND (FLOPs)", "lifetime_flops": "lifetime compute (FLOPs)",
    "unused_flops": "unused compute (FLOPs)", "loss_penalty": "loss above unconstrained optimum",
    "converged": "converged", "method": "method", "iterations": "solver iterations",
    "grad_norm": "|dL/dlog N| at answer", "gpu": "accelerator", "dtype": "dtype", "mfu": "MFU",
    "count": "devices", "gpu_hours": "device-hours", "wall_days": "wall-clock days", "energy_kwh": "energy (kWh)",
    "emissions_t": "emissions (t CO2e)", "cost": "cost",
    "target_loss": "target loss", "experts": "experts E", "granularity": "granularity G",
    "params_active": "active parameters", "params_total": "total parameters", "loss_gain": "loss below dense",
    "max_total_params": "memory cap: total parameters", "params_meaning": "parameter counts",
    "kv_tokens": "KV cache: serving tokens", "kv_cache": "KV cache (elements)",
    "verdict_dense": "verdict dense",
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
    if key.endswith("flops") and not key.endswith("tflops"):  # a FLOP count; TFLOP/s read as plain numbers
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
        cells = _clean(r).items()
        w.writerow({k: "" if v is None else json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in cells})
    return buf.getvalue()


def _para(text: str, width: int | None = None) -> str:
    """``text`` wrapped to ``width`` (default ``table_width()``) as lines of its own."""
    return textwrap.fill(text, width or table_width()) + "\n"


def warning_lines(warnings: Iterable[str], width: int | None = None, label: str = "") -> str:
    """Each warning as ``warning: <label><text>``, wrapped to ``width`` (never at a hyphen)."""
    return "".join(textwrap.fill(f"warning: {label}{w}", width or table_width(), break_on_hyphens=False) + "\n"
                   for w in warnings)


def table_width() -> int:
    """Columns to fit tables into: $COLUMNS, else the terminal's width, else 120 (a pipe or a
    file), at least 60."""
    return max(60, shutil.get_terminal_size((120, 24)).columns)


def _layout(rows: list[dict], cols: list[str], labels: dict[str, str], width: int):
    """(headers, cells, column widths, table width): a number or an id keeps its line and a
    header wraps at its spaces; prose (formulas, sources, names) shares what is left of
    ``width``, never narrower than its longest word."""
    headers = [labels.get(c, c.replace("_", " ")) for c in cols]
    cells = [[human(c, r.get(c)) for c in cols] for r in rows]
    longest_word, natural, prose = [], [], []
    for j, h in enumerate(headers):
        col = [row[j] for row in cells]
        longest_word.append(max(len(w) for w in [*h.split(), *(w for v in col for w in v.split())] or [""]))
        prose.append(not all(" " not in v and len(v) <= 14 for v in col))
        natural.append(max([len(v) for v in col] + [len(h) if prose[j] else longest_word[j]]))
    fixed = sum(n for n, p in zip(natural, prose) if not p) + 3 * len(cols) + 1
    share = (width - fixed) // max(1, sum(prose))
    widths = [max(longest_word[j], min(natural[j], share)) if prose[j] else natural[j] for j in range(len(cols))]
    # a prose column held at its longest word takes more than its share: the others give it back
    over = sum(widths) + 3 * len(cols) + 1 - width
    while over > 0:
        slack = [(widths[j] - longest_word[j], j) for j in range(len(cols)) if prose[j] and widths[j] > longest_word[j]]
        if not slack:
            break
        widths[max(slack)[1]] -= 1
        over -= 1
    return headers, cells, widths, sum(widths) + 3 * len(cols) + 1


def _render(headers: list[str], cells: list[list[str]], widths: list[int]) -> str:
    from rich.console import Console
    from rich.table import Table

    t = Table(show_lines=False)
    for h, w in zip(headers, widths):
        t.add_column(h, width=w, overflow="fold")
    for row in cells:
        t.add_row(*row)
    buf = io.StringIO()
    Console(file=buf, width=sum(widths) + 3 * len(widths) + 1, force_terminal=False, color_system=None).print(t)
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines())


def to_table(rows: list[dict], title: str | None = None, columns: Iterable[str] | None = None,
             labels: dict[str, str] | None = None, notes: Iterable[str] = (), width: int | None = None,
             optional: Iterable[str] = ()) -> str:
    """A rich table rendered to text (no colour codes) within ``width`` columns (default
    ``table_width()``): the ``optional`` columns are left out, last first, while it does not
    fit (a note names them); prose columns wrap at spaces. The title is a line of its own: as
    the table's caption it wrapped to the table's width, mid-phrase."""
    labels = labels or {}
    width = width or table_width()
    cols = list(columns) if columns is not None else list(dict.fromkeys(k for r in rows for k in r))
    droppable = [c for c in optional if c in cols]
    hidden: list[str] = []
    layout = _layout(rows, cols, labels, width)
    while droppable and layout[3] > width:
        hidden.insert(0, droppable.pop())
        cols.remove(hidden[0])
        layout = _layout(rows, cols, labels, width)
    text = _render(*layout[:3])
    if title:
        text = textwrap.fill(title, width) + "\n" + text
    if hidden:
        notes = [f"(not shown at {width} columns: {', '.join(hidden)}; widen the terminal or use -f json)", *notes]
    for n in notes:
        text += "\n" + textwrap.fill(n, width, break_on_hyphens=False)
    return text + "\n"


def record_table(record: dict, title: str | None = None, labels: dict[str, str] | None = None,
                 notes: Iterable[str] = (), width: int | None = None) -> str:
    """One record as a two-column quantity | value table."""
    labels = {**LABELS, **(labels or {})}
    rows = [{"quantity": labels.get(k, k), "value": human(k, v)} for k, v in record.items()
            if not isinstance(v, (dict, list))]
    return to_table(rows, title=title, columns=["quantity", "value"], notes=notes, width=width)


def sweep_report(res: dict) -> str:
    """A sweep result as text: quantiles per quantity, then the robust recommendation with its
    Monte Carlo error, then how it ran."""
    three = lambda v: format_float(v, 3)  # noqa: E731
    fmt = {"params": format_count, "tokens": format_count, "loss": lambda v: f"{v:.4f}", "tokens_per_param": three,
           "flops": format_sci, "epochs": three, "gpu_hours": format_count, "wall_days": three, "experts": three,
           "precision_bits": three}
    rows = [{"quantity": name, **{p: fmt[name](v) for p, v in q.items()}} for name, q in res["quantiles"].items()]
    text = to_table(rows, title=f"budgetopt sweep — {res['scenario']}: {res['samples']:,} samples, law {res['law']} "
                    f"(uncertainty: {res['uncertainty']}), converged {res['converged_fraction']:.2%}",
                    optional=["p01", "p99"])
    rec = res.get("recommendation")
    if rec:
        lo, hi = rec["p95_regret_ci95"]
        regret = f"{format_float(rec['expected_regret'], 3)} ± {format_float(rec['expected_regret_se'], 2)}"
        p95 = f"{format_float(rec['p95_regret'], 3)} (95% CI {format_float(lo, 3)}–{format_float(hi, 3)})"
        key = "experts" if "experts" in rec else "precision" if "precision" in rec else None
        r = {"recommended experts E" if key == "experts" else "recommended format": str(rec[key])} if key else {}
        size = "recommended active params" if key == "experts" else "recommended params"
        r.update({size: format_count(rec["params"]),
                  "expected loss": f"{rec['expected_loss']:.4f}",
             "expected regret (nats)": regret, "p95 regret (nats)": p95,
             "P(regret < 1 %)": f"{rec['p_regret_below_1pct']:.2%}",
             "futures it cannot be trained in": f"{rec['p_untrainable']:.2%}",
             "chosen by": f"{rec['risk']} loss, from {rec['from']}",
             "scored on": f"1 in {rec['subsample']} samples ({rec['scored_samples']:,})"})
        title = {None: "Robust recommendation: commit to N before hours, MFU and the law are known",
                 "experts": "Robust recommendation: commit to (E, N_act) before the budget is known",
                 "precision": "Robust recommendation: commit to (format, N) before speed-up, penalty and budget are "
                              "known"}[key]
        text += to_table([{"quantity": k, "value": v} for k, v in r.items()], title=title)
        if key:  # each option's best candidate: how far the runner-up is; how often each is the best
            shares = res.get("option_shares")
            best: dict = {}
            for row in res.get("regret_curve", []):  # sorted by option
                if row[key] not in best or row["expected_loss"] < best[row[key]]["expected_loss"]:
                    best[row[key]] = row
            size = "best active params" if key == "experts" else "best params"
            rows = [{key if key == "experts" else "format": str(e), size: format_count(b["params"]),
                     "expected loss": f"{b['expected_loss']:.4f}",
                     "expected regret": format_float(b["expected_regret"], 3),
                     "P(regret < 1 %)": f"{b['p_regret_below_1pct']:.1%}",
                     **({"P(best)": f"{shares[str(e)]:.1%}"} if shares else {}),
                     "untrainable": f"{b['p_untrainable']:.1%}"} for e, b in best.items()]
            text += to_table(rows, title="Each expert count's best candidate size (the decision's margin)"
                             if key == "experts" else "Each format's best candidate size (the decision's margin)")
    if res.get("recommendation_note"):
        text += f"note: {res['recommendation_note']}\n"
    if res.get("plan"):
        p = res["plan"]
        sh, mem, b = p["shape"], p["memory"], p["batch"]
        memory = f"{mem['total'] / 1e9:.1f} GB"
        if "device_memory" in mem:
            memory += f" of {mem['device_memory'] / 1e9:.0f} GB usable: {'fits' if mem['fits'] else 'DOES NOT FIT'}"
        routed = "experts" in p
        ffn = (f"{sh['experts']} experts of width {sh['d_expert']:,}, top-{sh['top_k']}" if routed else
               f"{sh['ffn']} {sh['d_ff']:,}")
        plan = {"shape": f"{sh['n_layer']} layers x d {sh['d_model']:,}, {sh['n_heads']} heads, {ffn}",
                **({"params total, active (the shape's)": f"{format_count(p['params_total'])}, "
                                                          f"{format_count(p['params'])}"} if routed else
                   {"params (the shape's)": format_count(p["params"])}),
                "tokens at the median budget": format_count(p["tokens"]),
                f"FLOPs/token ({p['flops_convention']}) vs 6N": f"x{p['flops_ratio_to_6n'][p['flops_convention']]:.3f}",
                "memory per device": memory,
                "batch, learning rate": f"{b['sequences']:,} x {sh['seq_len']:,} tokens, {b['learning_rate']:.3g} "
                                        f"({b['law']})",
                "optimizer steps": f"{b['steps']:,}"}
        if "wall_days" in p:
            plan["wall-clock days at the median"] = f"{p['wall_days']:.1f}"
        for key, label, fmt in (("wall_days", "wall-clock days", "{:.1f}"), ("energy_kwh", "energy (MWh)", "{:,.0f}")):
            if key in p.get("quantiles", {}):
                v = p["quantiles"][key]
                scale = 1e-3 if key == "energy_kwh" else 1.0
                plan[f"{label}, p5 / p50 / p95"] = " / ".join(fmt.format(v[k] * scale) for k in ("p05", "p50", "p95"))
        if routed:
            plan["memory per device"] += f" (ep {p['layout']['ep']})"
        text += to_table([{"quantity": k, "value": v} for k, v in plan.items()],
                         title="Run plan of the recommended size ([plan]; `budgetopt plan` for the full table)")
        text += "".join(f"warning: {w}\n" for w in p.get("warnings", []))
    if res.get("extrapolation"):
        ext = res["extrapolation"]
        text += _para(f"validity (the recommendation at the median budget): {ext['note']}")
        text += "".join(f"warning: {w}\n" for w in ext["warnings"])
    run = res["run"]
    text += (f"backend {run['backend']} × {run['devices']} device(s), {run['processes']} process(es), chunk "
             f"{run['chunk_size']:,}, {'float64' if run['x64'] else 'float32'}, {run['elapsed_s']:.1f} s\n")
    return text


def _fit_row(res: dict, group: str | None = None) -> dict:
    """One fit as a row of the grouped / side-by-side table."""
    at = res["at"]
    row = {"group": group} if group is not None else {}
    from ..fit.runs import APPROACHES

    row.update({"approach": APPROACHES[res["approach"]],
                "alpha": format_float(res["alpha"], 4) if "alpha" in res else "-",
                "beta": format_float(res["beta"], 4) if "beta" in res else "-", "a": f"{res['a']:.3f}",
                "N*": format_count(at["params"]),
                "N* 95% CI": (f"{format_count(at['ci95']['params'][0])}-{format_count(at['ci95']['params'][1])}"
                              if at.get("ci95") else "-"),
                "D*/N*": format_float(at["tokens_per_param"], 3),
                "runs": str(res["n_runs"]), "outliers": str(len(res.get("dropped", res.get("outliers", [])))),
                "converged": human("converged", res.get("converged", True))})
    return row


def form_report(res: dict | list, width: int | None = None) -> str:
    """A published form's fit (``fitting.fit_form_file``) as text: one row per parameter, one
    column per group (and its 95 % bootstrap interval, when there are replicates), then how each
    fit went and its warnings."""
    records = res if isinstance(res, list) else [res]
    first = records[0]
    label = lambda r: r.get("group", "fit")  # noqa: E731
    rows = []
    for p in first["params"]:
        row = {"parameter": p}
        for r in records:
            row[label(r)] = f"{r['params'][p]:.5g}"
            ci = r.get("bootstrap", {}).get("ci95", {}).get(p)
            if ci:
                row[f"{label(r)} 95% CI"] = f"{ci[0]:.4g} to {ci[1]:.4g}"
        rows.append(row)
    stats = {"rmse log loss": lambda r: f"{r['rmse_log_loss']:.4f}", "runs": lambda r: str(r["n_runs"]),
             "converged": lambda r: human("converged", r["converged"])}
    for name, f in stats.items():
        rows.append({"parameter": name, **{label(r): f(r) for r in records}})
    cis = [f"{label(r)} 95% CI" for r in records if r.get("bootstrap")]
    title = (f"budgetopt fit — {first['form']}, {len(records)} groups (runs per group below)" if "group" in first
             else f"budgetopt fit — {first['form']} on {first['n_runs']} runs")
    notes = [f"{first['formula']}; N: {first['params_meaning']}", f"{first['method']}; {first['reference']}"]
    if first.get("bootstrap"):
        b = first["bootstrap"]
        notes.append(f"95% CI: percentiles of {b['replicates']} bootstrap replicates (seed {b['seed']})")
    text = to_table(rows, title=title, notes=notes, width=width, optional=cis)
    for r in records:
        text += warning_lines(r.get("warnings", []), width, f"{r['group']}: " if "group" in r else "")
    return text


def backtest_report(res: dict, width: int | None = None) -> str:
    """`fit --backtest` (``fit.backtest``): per approach the drift of ln N* per decade
    extrapolated and its spread, then every (ladder, cut-off, forecast budget) row."""
    from ..fit.runs import APPROACHES

    def sig(v):
        return "-" if v is None else f"{v:+.3f}"

    summary = [{"approach": APPROACHES[r["approach"]], "forecasts": r["rows"],
                "up to (decades)": f"{r['max_decades']:.2f}",
                "drift ln N*": sig(r["n_star_drift_per_decade"]), "rms ln N*": f"{r['n_star_rms_per_decade']:.3f}",
                "drift ln L": sig(r.get("loss_drift_per_decade")),
                "rms ln L": "-" if "loss_rms_per_decade" not in r else f"{r['loss_rms_per_decade']:.4f}"}
               for r in res["summary"]]
    text = to_table(summary, title=f"budgetopt fit --backtest — {res['source']}: fit on the budgets up to each "
                    "cut-off, forecast every higher one (errors per decade extrapolated)", width=width)
    rows = [{**({"group": r["group"]} if len(res["budgets"]) > 1 else {}), "approach": APPROACHES[r["approach"]],
             "fit up to": format_sci(r["fit_up_to"]), "forecast at": format_sci(r["forecast_at"]),
             "decades": f"{r['decades']:.2f}", "ln N* error": sig(r["n_star_error"]),
             "ln L error": "-" if r["loss_error"] is None else f"{r['loss_error']:+.4f}"} for r in res["backtest"]]
    notes = [f"skipped: {s['group']} {APPROACHES[s['approach']]} up to {s['fit_up_to']:.3g} FLOPs: {s['reason']}"
             for s in res["skipped"]]
    notes.append("ln N* error: ln(forecast N* / N* fitted with every run up to that budget); ln L error: the mean "
                 "ln(predicted / observed loss) of the runs there")
    return text + to_table(rows, title="Every forecast", notes=notes, width=width)


def curves_report(res: dict, width: int | None = None) -> str:
    """`budgetopt curves` (``curves.curve_predict``): per model size the fitted parameters, each
    fitted and held-out curve's error, and the predicted schedules with their intervals."""
    groups = res["groups"] if "groups" in res else {res["group"]: res}
    text = ""
    for g, rec in groups.items():
        size = f" (size {g})" if len(groups) > 1 or g != "all" else ""
        ci = rec.get("params_interval", {})
        rows = [{"parameter": p, "value": f"{v:.5g}",
                 **({f"{rec['level']:.0%} interval": f"{ci[p][0]:.4g} – {ci[p][1]:.4g}"} if ci else {})}
                for p, v in rec["params"].items()]
        conv = "converged" if rec["converged"] else "NOT converged"
        text += to_table(rows, title=f"budgetopt curves — {rec['form']} law{size} fitted to {len(rec['fitted'])} "
                         f"curves ({conv}, ||grad|| {rec['grad_norm']:.1e})", width=width,
                         notes=[f"{rec['formula']}  [{rec['reference']}]"])
        for key, title in (("fitted", "Fitted curves"), ("holdout", "Held-out curves (not fitted): predicted "
                                                                      "from their schedules")):
            if key not in rec:
                continue
            rows = [{"run": h["run"], "points": h["points"], "last step": f"{h['last_step']:,}",
                     "final loss": f"{h['final_loss']:.4f}", "predicted": f"{h['predicted_final']:.4f}",
                     "error": f"{h['final_error']:+.4f}", "mean |error|": f"{h['mae']:.4f}"} for h in rec[key]]
            notes = []
            if key == "holdout":
                notes.append(f"mean |final error| {rec['holdout_mean_abs_final_error']:.4f} (error = predicted − "
                             "logged)")
            text += "\n" + to_table(rows, title=title, width=width, notes=notes)
        if rec.get("predictions"):
            me = rec["model_error"]
            # a spec wraps at its commas
            rows = [{"schedule": p["schedule"].replace(",", ", "), "steps": f"{p['steps']:,}",
                     "final loss": f"{p['final_loss']:.4f}", "low": f"{p['low']:.4f}", "high": f"{p['high']:.4f}",
                     "vs best": f"{p['vs_best']:+.4f}"} for p in rec["predictions"]]
            band = (f"the law's error on held-out schedules (±{me['band']:.4f}: z x rms {me['final_rms']:.4f}, "
                    "data/curve_law_error.toml)" if me["band"] else "no model error (--model-error none)")
            fit_part = "the bootstrap interval widened by " if any("fit_interval" in p for p in rec["predictions"]) \
                else "the fit (no --bootstrap) widened by "
            text += "\n" + to_table(rows, title="Predicted schedules", width=width,
                                     notes=[f"low/high ({rec['level']:.0%}): {fit_part}{band}"])
    return text  # warnings: on stderr (notices)


def fit_report(res: dict | list, width: int | None = None) -> str:
    """A fit result (``fitting.fit_file``, or ``fit_groups``'s list) as text: one law or the
    IsoFLOP exponents with the allocation at the target budget, or a table with a row per group
    and approach; then the outliers (or what was dropped, and how far that moved the answer)
    and the warnings."""
    from ..fit.runs import APPROACHES

    records = res if isinstance(res, list) else [res]
    if "form" in records[0]:
        return form_report(res, width)
    if "backtest" in records[0]:
        return backtest_report(res, width)
    single = not isinstance(res, list) and res["approach"] != "all"
    text = ""
    if single and res["approach"] in ("3", "vpnls"):
        keys = ("E", "A", "B", "alpha", "beta", "objective" if res["approach"] == "3" else "rss", "rmse_log_loss",
                "n_runs", "converged")
        rec = {k: res[k] for k in keys}
        for k, v in res.get("bootstrap", {}).get("ci95", {}).items():
            rec[f"{k} 95% CI"] = f"[{v[0]:.4g}, {v[1]:.4g}]"
        title = f"budgetopt fit — {APPROACHES[res['approach']]} on {res['n_runs']} runs"
        text = record_table(rec, title=title, width=width)
        text += _para(f"compute-optimal N ∝ C^{res['a']:.3f}; {res['method']}", width)
    elif single:
        rec = {k: res[k] for k in ("a", "b", "n_runs")}
        rec["grouped by"] = res["grouped_by"]
        title = f"budgetopt fit — Approach 2 (IsoFLOP) on {len(res['budgets'])} budgets"
        text = record_table(rec, title=title, width=width)
    else:
        rows = []
        for r in records:
            fits = r["fits"].values() if r["approach"] == "all" else [r]
            rows += [_fit_row(f, r.get("group")) for f in fits]
        target = records[0]["at"] if records[0]["approach"] == "all" else records[0]["at"]["flops"]
        title = (f"budgetopt fit — {len(records)} group(s), " if "group" in records[0] else "budgetopt fit — ") + \
                f"N* and D*/N* at {format_sci(target)} FLOPs"
        notes = [f"{r['group'] + ': ' if 'group' in r else ''}N* differs by "
                 f"x{r['spread']['params_max_over_min']:.3g} between the approaches "
                 "(max / min), an uncertainty of the method" for r in records if r["approach"] == "all"]
        if all(r["N* 95% CI"] == "-" for r in rows):
            for r in rows:
                del r["N* 95% CI"]
        text = to_table(rows, title=title, notes=notes, width=width, optional=["runs", "converged", "beta",
                                                                                "N* 95% CI"])
    for r in records:
        label = f"{r['group']}: " if "group" in r else ""
        fits = list(r["fits"].values()) if r["approach"] == "all" else [r]
        if single:
            at = r["at"]
            text += (f"at {format_sci(at['flops'])} FLOPs: N* = {format_count(at['params'])}, D* = "
                     f"{format_count(at['tokens'])} ({format_float(at['tokens_per_param'], 3)} tokens per parameter)\n")
            if at.get("ci95"):
                ci = at["ci95"]
                text += _para(f"95 % bootstrap interval ({ci['draws']} draws of the law): N* "
                              f"{format_count(ci['params'][0])}-{format_count(ci['params'][1])}, D* "
                              f"{format_count(ci['tokens'][0])}-{format_count(ci['tokens'][1])}, D*/N* "
                              f"{format_float(ci['tokens_per_param'][0], 3)}-"
                              f"{format_float(ci['tokens_per_param'][1], 3)}", width)
            if at.get("model_error"):
                text += _para(f"{at['model_error']['note']}: what real ladders' forecasts did at that distance, not "
                              "a correction (`--backtest` measures your own ladder's)", width)
        for f in fits:
            name = "" if single else f"{APPROACHES[f['approach']]}: "
            if f.get("dropped"):
                m = f["moved_by_exclusion"]
                rows_ = ", ".join(str(d["row"]) for d in f["dropped"])
                text += _para(f"{label}{name}dropped {len(f['dropped'])} outlier(s) ({f['outlier_rule']}): rows "
                              f"{rows_}; N* at the target moved {m['params_at_target']:+.2%}", width)
            elif f.get("outliers"):
                rows_ = ", ".join(str(d["row"]) for d in f["outliers"])
                text += _para(f"{label}{name}{len(f['outliers'])} outlier(s) ({f['outlier_rule']}): rows {rows_}; "
                              "--exclude-outliers refits without them", width)
        text += warning_lines(r.get("warnings", []), width, label)
    return text


def audit_notes(spec, near_multiplier: float, near_ratio: float, rows: list[dict] = ()) -> tuple[list[str], list[str]]:
    """(columns, notes) of the audit table under ``spec``: allocation rules are judged by D/N,
    laws with a loss by the compute multiplier; a last note names the models outside the law's
    fitted range in shape (tokens per parameter, or size below the smallest fitted)."""
    shape = [r["name"] for r in rows if r.get("extrapolation", {}).get("warnings")]
    validity = ([f"validity: {spec.name} was fitted on {spec.validity.fitted_on}; outside it in shape (verdicts "
                 f"untested): {', '.join(shape)}"] if shape else [])

    cols = ["name", "params", "tokens", "tokens_per_param", "flops", "optimal_params", "optimal_tokens"]
    if spec.kind == "rule":  # an allocation rule: no loss surface
        return (cols + ["ratio_to_rule", "verdict"],
                [f"near-optimal: D/N within ×{near_ratio:g} of the rule's {float(spec.params.ratio):g}"] + validity)
    serving = ([f"serving {rows[0]['inference_tokens']:.3g} tokens per model: judged by lifetime compute (training + "
                "2·N per served token) against the inference-aware optimum"] if rows and "inference_tokens" in rows[0]
               else [])
    odds = (["p verdict: the share of 2,000 draws of the law's covariance giving the same verdict"]
            if any("p_verdict" in r for r in rows) else [])
    moe = ([f"each model judged at its own routed expert count E (dense: E = 1) and, beside it, under "
            f"{rows[0]['dense_law']} by its active parameters (verdict dense); the law was fitted on top-1 routing "
            "of granularity 1: a top-8 fine-grained model at its E is a reading it does not test"]
           if rows and "verdict_dense" in rows[0] else [])
    ptq = ([f"serving in {rows[0]['serve_precision']:g} bits: ptq_degradation is the loss post-training "
            "quantisation adds and critical_tokens the training tokens past which more data made the quantised "
            "model worse (kumar2024-precision, eq. 2 and 13; fitted on 30M-220M-parameter integer runs: at this "
            "scale a reading of the trend)"] if rows and "ptq_degradation" in rows[0] else [])
    return (cols + ["loss", "loss_gap", "compute_multiplier", "verdict"] + (["p_verdict"] if odds else [])
            + (["experts", "verdict_dense"] if moe else []) + (["ptq_degradation", "critical_tokens"] if ptq else []),
            [f"near-optimal: the optimal allocation needs ≥ 1/{near_multiplier:g} of the compute for the same "
             "predicted loss; else under-trained (too many parameters, too few tokens) or over-trained (the reverse)",
             "compute: published figure where there is one, else 6ND; compute_multiplier = C / C needed for the same "
             "loss"] + serving + odds + moe + ptq + validity)


def forecast_report(res: dict, width: int | None = None) -> str:
    """A forecast (``forecast.forecast_metric``) as a table: the target,
    the loss and the metric with their intervals, the link; then the notes and warnings."""
    t, lo, me, lk = res["target"], res["loss"], res["metric"], res["link"]

    def with_band(v, digits):
        return f"{v['point']:.{digits}f}" + (f" [{v['low']:.{digits}f}, {v['high']:.{digits}f}]" if "low" in v else "")

    from ..model.links import LINK_PARAMS

    rec = {"target parameters N": format_count(t["params"]), "target tokens D": format_count(t["tokens"]),
           "target compute (FLOPs)": format_sci(t["flops"]), "loss law": res["law"],
           "forecast loss (nats/token)": with_band(lo, 4),
           f"forecast {res.get('metric_col', 'metric')}": with_band(me, 4),
           "link": f"{lk['kind']}: " + ", ".join(f"{k} = {lk[k]:.4g}" for k in LINK_PARAMS[lk["kind"]])}
    title = "budgetopt forecast — " + (f"{res['n_runs']} runs, " if "n_runs" in res else "published link, ")
    if "level" in res:
        notes = [f"{res['level']:.0%} bootstrap interval over {res['replicates_used']} of {res['replicates']} "
                 "replicates, both steps refitted per replicate"]
    else:
        notes = ["no runs: the preset's published link, no interval"]
    if res.get("extrapolation"):
        notes.append(f"validity: {res['extrapolation']['note']}")
    text = record_table(rec, title=title + "compute -> loss -> metric", notes=notes, width=width)
    return text + "".join(textwrap.fill(f"warning: {w}", width or table_width(), break_on_hyphens=False) + "\n"
                          for w in res.get("warnings", []))


def _pct(v: float, signed: bool = False) -> str:
    if not math.isfinite(v):
        return "-"
    a = abs(v) * 100
    text = f"{a:.2g}%" if a < 10 else f"{a:.0f}%"
    return ("+" if v >= 0 else "-") + text if signed else text


def ladder_report(res: dict, width: int | None = None) -> str:
    """A ladder-design result (``ladder.design_ladders``) as a table, cheapest design first:
    cost, the forecast's bias and error in N*, the regret, the failures; the recommended design
    marked; then the rule that chose it and the warnings."""
    rows = []
    wsd = any(r.get("schedule") == "wsd" for r in res["designs"])
    for r in sorted(res["designs"], key=lambda r: (r["cost_flops"], r["design"])):
        row = {"": "*" if r["design"] == res["recommended"] else "", "design": r["design"], "runs": r["runs"]}
        if wsd:
            row["trunks"] = r["trunks"] if r["schedule"] == "wsd" else "-"
        row.update({"cost (FLOPs)": format_sci(r["cost_flops"]), "% of target": _pct(r["cost_fraction"])})
        if "gpu_hours" in r:
            row["GPU-hours"] = format_count(r["gpu_hours"])
        row.update({"N* bias": _pct(r["n_bias"], signed=True), "N* err p50": _pct(r["n_error_p50"]),
                    "N* err p95": _pct(r["n_error_p95"]), "regret p95 (nats)": f"{r['regret_p95']:.2g}",
                    "compute lost p95": _pct(r["compute_lost_p95"]),
                    "failed": f"{r['not_converged']}" + ("!" if not r["eligible"] else "")})
        rows.append(row)
    noise = res["noise"]
    title = (f"budgetopt ladder — which ladder for a {format_sci(res['target_flops'])}-FLOP run? {res['ladders']} "
             f"simulated ladders per design: true laws from {res['law']} "
             f"({'fixed' if res['prior'] == 'none' else res['prior']}), noise {noise['sigma']:g} in log loss"
             + (f" (+ {noise['wsd_sigma']:.2g} on WSD points)" if wsd else "") + f", fitted by {res['approach']}")
    rec = res["recommended"]
    chosen = next((r for r in res["designs"] if r["design"] == rec), None)
    notes = [f"recommended (*): {rec} — {res['rule']}; its p95 regret {chosen['regret_p95']:.3g} nats, 95 % Monte "
             f"Carlo interval [{chosen['regret_p95_ci'][0]:.3g}, {chosen['regret_p95_ci'][1]:.3g}]"
             if rec else f"no recommendation: {res['rule']}",
             "design: the built-in ones are named largest budget/sizes per budget/spread (5 budgets over two decades); "
             "N* bias: median forecast / true N* - 1; err: |forecast / true - 1| quantiles; regret: loss of the "
             "forecast allocation above the true optimum's; compute lost: the share of the target the true optimum "
             "would not need to reach that loss; failed: fits with no forecast or not converged (! over 5%)"]
    if wsd:
        cooldowns = sorted({r["cooldown"] for r in res["designs"] if r["schedule"] == "wsd"})
        notes.append("/wsd: the same points from warmup-stable-decay trunks — sizes snapped to one grid, one "
                     "constant-LR trunk per size to its largest D, a branch at each other D whose last "
                     f"{', '.join(f'{c:.0%}' for c in cooldowns)} of tokens decays (cost: each trunk's budget "
                     "plus that share of each branch's; trunks: runs started); each WSD point's log loss carries "
                     f"{noise['wsd_sigma']:.2g} more noise, the curve law's held-out final-loss error "
                     "(--wsd-noise)")
    if noise.get("model_error", "none") != "none":
        notes.append(f"model error: ln N* forecast moved by ({noise['model_drift_per_decade']:+.3f} ± "
                     f"{noise['model_sd_per_decade']:.3f}) per decade from a design's top budget to the target — "
                     f"{noise['model_error']}; --model-error none assumes the law exact at every scale")
    if res.get("extrapolation"):
        notes.append(f"validity (the target's optimum under {res['law']}): {res['extrapolation']['note']}")
    t = res["timing"]
    notes.append(f"{t['fits']} simulated fits in {t['seconds']:.1f} s ({t['fits_per_second']:.0f} fits/s, "
                 f"{t['devices']} device{'s' if t['devices'] > 1 else ''})")
    optional = ["N* err p50", "GPU-hours", "compute lost p95", "% of target", "trunks"]
    text = to_table(rows, title=title, notes=notes, width=width, optional=optional)
    if res.get("wsd_versus_final"):
        pairs = [{"p95 regret at most": f"{q['regret_p95']:.2g}", "final-loss design": q["final"],
                  "cost": format_sci(q["final_cost_flops"]), "cheapest WSD design": q["wsd"] or "none",
                  "WSD cost": format_sci(q["wsd_cost_flops"]) if q["wsd"] else "-",
                  "WSD p95 regret": f"{q['wsd_regret_p95']:.2g}" if q["wsd"] else "-",
                  "WSD / final cost": f"{q['cost_ratio']:.2f}" if q["wsd"] else "-"} for q in res["wsd_versus_final"]]
        text += "\n" + to_table(pairs, title="WSD and final-loss designs at equal forecast quality: each final-loss "
                                "design no cheaper one beats, and the cheapest WSD design whose p95 regret is within "
                                "its 95 % Monte Carlo interval", width=width)
    return text + "".join(textwrap.fill(f"warning: {w}", width or table_width(), break_on_hyphens=False) + "\n"
                          for w in res.get("warnings", []))


def bench_report(res: dict) -> str:
    """``bench.quick``'s rates as a table."""
    rec = {"backend": res["backend"], "devices": f"{len(res['devices'])} × {', '.join(res['device_kinds'])}",
           "parametric sweep (samples/s)": f"{res['sweep_samples_per_s']:.3g}",
           "data-constrained solver (problems/s)": f"{res['solver_problems_per_s']:.3g}", "jax": res["jax_version"]}
    return record_table(rec, title="budgetopt bench (float32, compile excluded; full suite: benchmarks/run.py)")


def launch_report(rec: dict, width: int | None = None) -> str:
    """A run plan (``launch.launch_plan``) as four short tables: model, compute, memory, batch."""
    sh = rec["shape"]
    if "experts" in rec:  # a released routed architecture
        kind = "MLA" if sh["attention"] == "mla" else "GQA" if sh.get("n_kv_heads") else "MHA"
        attention = f"{kind}, {sh['n_heads']} heads" + (f" ({sh['n_kv_heads']} kv)" if sh.get("n_kv_heads") else "")
        model = {"layers x d_model": f"{sh['n_layer']} x {sh['d_model']:,}", "attention": attention,
                 "routed experts": f"{sh['experts']} of width {sh['d_expert']:,}, top-{sh['top_k']}"
                                   + (f", {sh['shared_experts']} shared" if sh["shared_experts"] else ""),
                 "MoE layers": f"{sh['moe_layers']} of {sh['n_layer']}",
                 "vocab": f"{sh['vocab']:,}{'' if sh['tied'] else ' (untied head)'}",
                 "sequence length": f"{sh['seq_len']:,}", "params total": format_count(rec["params_total"]),
                 "params active": format_count(rec["params"]), "tokens": rec["tokens"],
                 "tokens per active param": format_float(rec["tokens_per_param"], 4),
                 f"loss at E = {rec['experts']}": rec["loss"]}
        if "optimum" in rec:  # an optimum's MoE: what it asked for, what rounding to a shape cost
            o = rec["optimum"]
            model = {"optimum: E, active, total": f"{o['experts']:g}, {format_count(o['params_active'])}, "
                                                  f"{format_count(o['params_total'])}",
                     "optimum: tokens, loss": f"{format_count(o['tokens'])}, {o['loss']:.4f}", **model,
                     "loss change from the shape": f"{rec['loss_change']:+.2e}"}
            if "max_total_params" in rec:
                model["memory cap: total parameters"] = format_count(rec["max_total_params"]) + (
                    f" (+ KV cache of {format_count(rec['kv_tokens'])} tokens)" if "kv_tokens" in rec else "")
            title = f"budgetopt plan — the optimum's MoE (d_model = 64 layers, top-1), law {rec['law']}"
        else:
            title = f"budgetopt plan — {rec['arch']}, law {rec['law']}"
    else:
        model = {"layers x d_model": f"{sh['n_layer']} x {sh['d_model']:,}",
                 "heads (kv)": f"{sh['n_heads']} ({sh['n_kv_heads']})",
                 "FFN": f"{sh['ffn']} {sh['d_ff']:,}",
                 "vocab": f"{sh['vocab']:,}{'' if sh['tied'] else ' (untied head)'}",
                 "sequence length": f"{sh['seq_len']:,}", "params": rec["params"],
                 "params non-embedding": format_count(sh["params_non_embedding"]), "tokens": rec["tokens"],
                 "tokens_per_param": rec["tokens_per_param"]}
        if "loss" in rec:
            model["loss"] = rec["loss"]
        if "loss_change" in rec:  # a budget's plan: what rounding N to a shape cost
            model["loss change from the shape"] = f"{rec['loss_change']:+.2e}"
        title = f"budgetopt plan — {rec['arch'] + ', ' if 'arch' in rec else ''}law {rec['law']}"
    text = record_table(model, title=title, width=width)
    fpt = rec["flops_per_token"]
    comp = {f"FLOPs/token {k}": f"{v:.4g} (x{rec['flops_ratio_to_6n'][k]:.3f})" for k, v in fpt.items()}
    comp["run FLOPs (" + rec["flops_convention"] + ")"] = rec["flops"]
    comp["hardware FLOPs (recompute)"] = rec["hardware_flops"]
    if "precision" in rec:
        pr = rec["precision"]
        comp["training format"] = f"{pr['format']} (x{pr['speedup']:g} the bf16 speed)"
        if "loss_penalty" in pr:
            comp["format's loss penalty (bound)"] = f"+{pr['loss_penalty']:.4f}"
    for k in ("gpu", "mfu", "hfu", "gpu_hours", "wall_days", "booked_days", "fits_booking", "energy_kwh", "emissions_t",
              "cost"):
        if k in rec:
            comp[k] = rec[k]
    labels = {"hfu": "HFU (hardware FLOPs utilisation)", "booked_days": "booked days",
              "fits_booking": "fits the booking"}
    text += record_table(comp, title="Compute", labels=labels, width=width)
    mem, lay = rec["memory"], rec["layout"]
    m = {k: f"{mem[k] / 1e9:.1f} GB" for k in ("weights", "gradients", "optimizer", "activations", "total")}
    if "experts" in mem:
        m["of which routed experts' states"] = f"{mem['experts'] / 1e9:.1f} GB"
    if "device_memory" in mem:
        m["usable device memory"] = f"{mem['device_memory'] / 1e9:.1f} GB"
        m["fits"] = mem["fits"]
    if mem.get("smallest_fit"):
        f = mem["smallest_fit"]
        m["smallest layout that fits"] = f"dp {f['dp']}, tp {f['tp']}, pp {f['pp']}, ZeRO-{f['zero']}"
    title = (f"Memory per device: dp {lay['dp']} x tp {lay['tp']} x pp {lay['pp']}"
             + (f" (ep {lay['ep']})" if "experts" in rec else "") + f", ZeRO-{lay['zero']}, micro-batch "
             f"{lay['micro_batch']}, recompute {lay['recompute']}, flash {'on' if lay['flash'] else 'off'}")
    text += record_table(m, title=title, width=width)
    b = rec["batch"]
    rows = {"peak learning rate": f"{b['learning_rate']:.3g}", "batch (sequences)": f"{b['sequences']:,}",
            "batch (tokens)": f"{b['tokens']:,.0f}", "optimizer steps": f"{b['steps']:,}",
            "gradient accumulation": f"{b['grad_accumulation']:g}"}
    notes = [f"source: {b['source']}"]
    if "learning_rate_moe" in b:  # the MoE law's own rule, beside the batch law's
        m = b["learning_rate_moe"]
        rows["peak learning rate, MoE rule"] = f"{m['learning_rate']:.3g}" + (" (extrapolated)" if m["extrapolates"]
                                                                               else "")
        notes.append(f"MoE rule: {m['source']}" + ("; this model is outside that range: read it as a trend, not a "
                                                   "setting" if m["extrapolates"] else ""))
    text += record_table(rows, title=f"Batch and learning rate: {b['law']}", notes=notes, width=width)
    if rec.get("extrapolation"):
        text += textwrap.fill(f"validity: {rec['extrapolation']['note']}", width or table_width()) + "\n"
    return text + warning_lines(rec.get("warnings", []), width)


def convergence_warning(res: dict) -> str | None:
    """A sweep's samples that did not converge, as a count and a share with the digits it
    needs (a share rounded to "0.000%" said nothing); None when every sample converged."""
    bad = res.get("not_converged", 0)
    if not bad:
        return None
    return (f"warning: {bad:,} of {res['samples']:,} samples ({bad / res['samples']:.2g} of the total) did not "
            "converge; they are left out of the summaries")


def optimize_notes(spec, rec: dict) -> list[str]:
    """The notes under `optimize`'s table: the law and its source, what a budget means with
    inference tokens, and how far the answer extrapolates."""
    notes = [f"law: {spec.name} — {spec.describe()}", f"source: {spec.source}"]
    if rec.get("inference_tokens"):
        notes.append("with inference tokens the budget is lifetime FLOPs = 6·N·D + 2·N·D_inference")
    if rec.get("extrapolation") is not None:
        notes.append(f"validity: {rec['extrapolation']['note']}")
    return notes


def moe_notes(spec, rec: dict) -> list[str]:
    """The notes under an MoE answer: the law, what its parameter counts mean and how the total
    is counted, how far the answer extrapolates."""
    notes = [f"law: {spec.name} — {spec.describe()}", f"source: {spec.source}"]
    if "experts" in rec:
        notes.append("N_act includes embeddings; total and KV cache by eq. 9/10 on the paper's shape (d_model = 64 "
                     "layers, vocabulary 50,257); compute 6·N_act·D, routing neglected")
    else:
        notes.append(f"N = total non-embedding parameters at expansion E = {float(spec.params.expansion):g}, active = "
                     "12N/(8E + 4); FLOPs per token of eq. 10-11 with the router and d = 64 n_blocks; dense: the "
                     "paper's dense fit")
    if rec.get("inference_tokens"):
        notes.append("with inference tokens the budget is lifetime FLOPs: training plus one forward pass per "
                     "served token")
    if rec.get("extrapolation") is not None:
        notes.append(f"validity: {rec['extrapolation']['note']}")
    return notes


def flat_row(record: dict, prefix: str = "", skip: Iterable[str] = ()) -> dict:
    """A nested record as one CSV row: nested keys joined by "." (``shape.n_layer``), lists kept
    whole (``to_csv`` writes them as JSON); the top-level ``skip`` keys left out."""
    row: dict = {}
    for k, v in record.items():
        if k in skip:
            continue
        if isinstance(v, dict):
            row.update(flat_row(v, f"{prefix}{k}."))
        else:
            row[f"{prefix}{k}"] = v
    return row


def _fit_csv_rows(res: dict | list) -> list[dict]:
    """One row per fit (per group and approach): the law, its exponents and the allocation at
    the target."""
    rows = []
    for r in res if isinstance(res, list) else [res]:
        if "form" in r:  # a published form: its own parameters
            rows.append({**({"group": r["group"]} if "group" in r else {}), "form": r["form"], **r["params"],
                         **{k: r[k] for k in ("n_runs", "rmse_log_loss", "converged")}})
            continue
        for f in (r["fits"].values() if r["approach"] == "all" else [r]):
            row = {"group": r["group"]} if "group" in r else {}
            row.update({k: f.get(k) for k in ("approach", "E", "A", "B", "alpha", "beta", "a", "b")})
            row.update({f"{k}_at_target": f["at"][k] for k in ("flops", "params", "tokens")})
            row.update({k: f.get(k) for k in ("n_runs", "rmse_log_loss", "converged")})
            row["outliers"] = len(f.get("dropped", f.get("outliers", [])))
            rows.append(row)
    return rows


def csv_rows(command: str, result: Any) -> list[dict]:
    """The rows ``command``'s result is as CSV: a sweep's quantiles, one row per fit or per
    ladder design, the rows of a listing, or the record (nested keys flattened)."""
    if command in ("sweep", "merge"):
        return [{"quantity": name, **q} for name, q in result["quantiles"].items()]
    if command == "fit":
        return result["backtest"] if isinstance(result, dict) and "backtest" in result else _fit_csv_rows(result)
    if command == "ladder":
        return [{k: v for k, v in r.items() if not isinstance(v, list)} for r in result["designs"]]
    if command == "curves":  # one row per (size, curve or prediction)
        recs = result["groups"].values() if "groups" in result else [result]
        return [{"group": r["group"], "kind": kind, **flat_row(x, skip=("curve", "fit_interval"))}
                for r in recs for kind in ("fitted", "holdout", "predictions") for x in r.get(kind, [])]
    if isinstance(result, list):
        return result
    if command in ("plan", "forecast", "bench"):
        return [flat_row(result, skip=("runs",))]
    if command == "optimize" and "candidates" in result:  # an MoE answer: every candidate, the dense one last
        key = "experts" if "experts" in result else "granularity"
        return [{**c, "chosen": c[key] == result[key]} for c in result["candidates"]] + [
            {key: "dense", "params_active": result["dense"]["params"], "params_total": result["dense"]["params"],
             "tokens": result["dense"]["tokens"], "loss": result["dense"]["loss"], "chosen": False}]
    return [result]


def moe_report(rec: dict, notes: Iterable[str] = (), width: int | None = None) -> str:
    """An MoE optimum (``plan.moe_optimum``): the answer beside the dense optimum of the same
    budget, then every candidate expert count or granularity solved."""
    key = "experts" if "experts" in rec else "granularity"
    d = rec["dense"]
    head = {k: rec[k] for k in ("flops", "pf_days", key, "params_active", "params_total", "tokens", "tokens_per_param",
                                "loss") if k in rec}
    head["dense: parameters, tokens"] = f"{format_count(d['params'])}, {format_count(d['tokens'])}"
    head["dense: loss"] = f"{d['loss']:.4f}"
    head["loss_gain"] = f"{rec['loss_gain']:.4f}"
    for k in ("max_total_params", "kv_tokens", "kv_cache", "inference_tokens", "converged", "method", "gpu", "mfu",
              "count", "gpu_hours", "wall_days", "cost"):
        if k in rec:
            head[k] = rec[k]
    text = record_table(head, title=f"budgetopt optimize — {rec['law']} ({rec['params_meaning']})", width=width)
    rows = [{key: f"{c[key]:g}" + (" *" if c[key] == rec[key] else ""), "active": format_count(c["params_active"]),
             "total": format_count(c["params_total"]), "tokens": format_count(c["tokens"]),
             "loss": f"{c['loss']:.4f}" if c["feasible"] else "-", "converged": human("converged", c["converged"])}
            for c in rec["candidates"]]
    return text + to_table(rows, title=f"Every {'expert count' if key == 'experts' else 'granularity'} solved "
                           "(* = chosen: the lowest loss)", notes=notes, width=width)


def precision_notes(spec, rec: dict) -> list[str]:
    """The notes under a precision answer: the law or the formats' sources, how far it
    extrapolates."""
    notes = [f"law: {spec.name} — {spec.describe()}", f"source: {spec.source}"]
    if "precisions" not in rec:
        notes.append(f"{rec['precision_form']} form; {rec['cost_model']}; the constants are the paper's experimental "
                     "fit (integer fake-quantised training): its trends, not its constants, are the finding")
    else:
        for f, src in rec["speedup_sources"].items():
            if f != "bf16":
                notes.append(f"{f} speed-up: {src}")
        for f, src in rec["penalty_sources"].items():
            if f != "bf16":
                notes.append(f"{f} loss penalty: {src}")
        notes.append("each format buys the booking's BF16 compute times its end-to-end speed-up (never the peak ratio)")
    if rec.get("extrapolation") is not None:
        notes.append(f"validity: {rec['extrapolation']['note']}")
    return notes


def precision_report(rec: dict, notes: Iterable[str] = (), width: int | None = None) -> str:
    """A precision answer: the compute-optimal bits under the precision law, or every format's
    compute, allocation and loss on the device with the best marked."""
    if "precisions" not in rec:
        keys = ("flops", "precision_bits", "serve_precision", "inference_tokens", "params", "tokens",
                "tokens_per_param", "loss", "loss_before_quantisation", "ptq_degradation", "critical_tokens",
                "effective_params_fraction", "converged", "gpu", "mfu", "count", "gpu_hours", "wall_days")
        head = {k: rec[k] for k in keys if k in rec}
        head["precision_bits"] = f"{rec['precision_bits']:.3f}"
        head["effective_params_fraction"] = f"{rec['effective_params_fraction']:.4f}"
        return record_table(head, title=f"budgetopt optimize — {rec['law']}: training precision", notes=notes,
                            labels={"precision_bits": "training precision (bits)",
                                    "serve_precision": "serving precision (bits)",
                                    "loss": "loss (after quantisation)" if "serve_precision" in rec else "loss",
                                    "loss_before_quantisation": "loss before quantisation",
                                    "ptq_degradation": "quantisation's loss (δ_PTQ)",
                                    "critical_tokens": "critical tokens at that size",
                                    "effective_params_fraction": "N_eff / N at that precision"}, width=width)
    rows = [{"format": r["format"] + (" *" if r["format"] == rec["precision"] else ""), "bits": f"{r['bits']:g}",
             "speed-up": f"{r['speedup']:.3g}" + (" (given)" if r["speedup_given"] else ""),
             "compute": format_sci(r["flops"]), "params": format_count(r["params"]),
             "tokens": format_count(r["tokens"]), "loss": f"{r['loss']:.4f}", "penalty": f"{r['loss_penalty']:+.4f}",
             "converged": human("converged", r["converged"])} for r in rec["precisions"]]
    head = {k: rec[k] for k in ("gpu", "mfu", "count", "gpu_hours", "wall_days") if k in rec}
    text = record_table({"best format": rec["precision"], **{k: rec[k] for k in ("params", "tokens", "loss")},
                         **head}, title=f"budgetopt optimize — {rec['law']}: in what precision to train "
                         f"({rec['precision_penalty']} penalty)", width=width)
    return text + to_table(rows, title="Every format the device has (* = chosen: the least loss)", notes=notes,
                           width=width, optional=["converged", "penalty"])


def render(command: str, result: Any, fmt: str, *, title: str | None = None, notes: Iterable[str] = (),
           columns: Iterable[str] | None = None, optional: Iterable[str] = ()) -> str:
    """``command``'s result as ``fmt`` (one of FORMATS): the one response path of the CLI. A
    table uses the command's report, or a listing's ``title``, ``columns``, ``notes`` and
    droppable ``optional`` columns."""
    check_format(fmt)
    if fmt == "json":
        return to_json(result)
    if fmt == "csv":
        return to_csv(csv_rows(command, result))
    if command == "convert" and len(result) == 1:  # `convert --to X`: the number alone
        return f"{next(iter(result.values())):.6g}\n"
    reports = {"plan": launch_report, "sweep": sweep_report, "merge": sweep_report, "fit": fit_report,
               "forecast": forecast_report, "ladder": ladder_report, "bench": bench_report, "curves": curves_report}
    if command in reports:
        return reports[command](result)
    if command == "optimize" and "candidates" in result:
        return moe_report(result, notes)
    if command == "optimize" and "precision_bits" in result:
        return precision_report(result, notes)
    if isinstance(result, list):
        return to_table(result, title=title, columns=columns, notes=notes, optional=optional)
    return record_table(result, title=title or f"budgetopt {command}", notes=notes)


def notices(command: str, result: Any) -> list[str]:
    """What ``command`` says on stderr after its report: a solve that did not converge, a sweep's
    unconverged samples and a recommendation it has not, the shape warnings of an answer outside
    the law's fitted range."""
    if command == "sweep":
        lines = [w for w in (convergence_warning(result),) if w]
        rec = result.get("recommendation")
        if rec and rec.get("p_untrainable"):
            lines.append(f"warning: the recommended size cannot be trained in {rec['p_untrainable']:.2%} of the "
                         "futures (above their max_params, or left no token by serving); see p_untrainable")
        if "recommendation" in result and rec is None:
            lines.append(f"error: nothing to recommend: {result.get('recommendation_note', 'no size was scored')}")
        return lines
    if command == "curves":
        recs = result["groups"].values() if "groups" in result else [result]
        size = (lambda r: f"size {r['group']}: ") if "groups" in result else (lambda r: "")  # noqa: E731
        return [f"warning: {size(r)}{w}" for r in recs for w in r["warnings"]]
    if command != "optimize":
        return []
    shape = (result.get("extrapolation") or {}).get("warnings", [])
    lines = [f"warning: {w}" for w in shape + result.get("warnings", [])]
    if not result["converged"]:
        lines.append("warning: the solve did not converge; the answer is not reliable")
    return lines


def exit_code(command: str, result: Any) -> int:
    """0, or 1 when the answer is missing: ``optimize``'s solve did not converge, or a sweep asked
    for a recommendation has none (its summaries are still written)."""
    if command == "optimize":
        return 0 if result["converged"] else 1
    if command == "sweep" and "recommendation" in result and result["recommendation"] is None:
        return 1
    return 0


def emit(text: str, out: str | Path | None) -> None:
    """Print to stdout, or write atomically to ``out``."""
    if out is None:
        sys.stdout.write(text)
    else:
        write_atomic(out, text)


def check_format(fmt: str, allowed: tuple[str, ...] = FORMATS) -> str:
    if fmt not in allowed:
        raise ParameterError("format", f"unknown format {fmt!r}; allowed: {', '.join(allowed)}")
    return fmt
