"""The typer CLI: every command parses its flags, calls one library function and prints.
No maths and no validation here: the library checks its arguments and names them by their
parameter names (``errors.ParameterError``), which ``flag_of`` turns into the flag a user typed.

Every usage error or bad input ends as one line ``error: <field>: <what is allowed>`` on
stderr with exit code 2 — never a traceback, never a partial output file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

from .errors import InputError, ParameterError
from .files import load_json, write_atomic
from .interrupts import EXIT_INTERRUPTED, resume_hint, set_resume_hint
from .report import (
    audit_notes,
    bench_report,
    check_format,
    convergence_warning,
    emit,
    fit_report,
    forecast_report,
    ladder_report,
    launch_report,
    record_table,
    sweep_report,
    to_csv,
    to_json,
    to_table,
)
from .units import parse_number

EXIT_OK, EXIT_NOT_CONVERGED, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 70

#: library parameter names a command takes under another name (arguments, short flags)
_NAMES = {"output": "-o", "runs": "RUNS", "results": "FILES", "kind": "KIND", "scenario": "SCENARIO",
          "sweep_file": "--sweep", "forecast_file": "--forecast", "ladder_file": "--ladder"}
_COMMAND_NAMES = {"convert": {"flops": "VALUE"}, "fit": {"target": "--at"}, "ladder": {"target": "--at"}}


def flag_of(name: str, command: str | None = None) -> str:
    """The flag or argument through which ``command`` takes the library parameter ``name``
    (``max_params`` -> ``--max-params``; ``law_params.E`` -> ``--law-params.E``). A name that
    is already a flag, an argument or a file field is returned as it is."""
    if not name[:1].islower():
        return name
    head, dot, rest = name.partition(".")
    special = {**_NAMES, **_COMMAND_NAMES.get(command or "", {})}.get(head)
    return (special or "--" + head.replace("_", "-")) + dot + rest


def _command(args) -> str | None:
    return next((a for a in (sys.argv[1:] if args is None else args) if not a.startswith("-")), None)


class _OneLineErrors(TyperGroup):
    """Run the command non-standalone and turn every usage error into one line, exit 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        from typer._click import exceptions as cx
        from typer.exceptions import Abort

        try:
            rv = super().main(args=args, prog_name=prog_name or "budgetopt", complete_var=complete_var,
                              standalone_mode=False, **extra)
        except ParameterError as e:
            e = e.rename(lambda name: flag_of(name, _command(args)))
            _fail(f"{e.field}: {e.message}")
        except InputError as e:
            _fail(f"{e.field}: {e.message}")
        except cx.NoSuchOption as e:
            _fail(_negative_argument(e) or " ".join(e.format_message().split()))
        except cx.UsageError as e:
            _fail(" ".join(e.format_message().split()))
        except cx.ClickException as e:
            _fail(" ".join(e.format_message().split()))
        except (Abort, KeyboardInterrupt):
            _interrupted("interrupted")
        except Exception as e:  # a bug, not bad input: say so in one line, keep the traceback on request
            if os.environ.get("BUDGETOPT_DEBUG"):
                raise
            print(f"internal error: {type(e).__name__}: {e} (a bug in budgetopt; rerun with BUDGETOPT_DEBUG=1 "
                  "for the traceback, and please report it)", file=sys.stderr)
            sys.exit(EXIT_INTERNAL)
        if rv == EXIT_INTERRUPTED:  # typer turns Ctrl-C inside a command into exit code 130
            _interrupted("interrupted")
        sys.exit(rv if isinstance(rv, int) else 0)


def _negative_argument(e) -> str | None:
    """``convert -1`` reaches click as an unknown option "-1": name the argument instead."""
    try:
        float(e.option_name)
    except (TypeError, ValueError):
        return None
    args = [p for p in (e.ctx.command.params if e.ctx else []) if p.param_type_name == "argument"]
    name = args[0].name.upper() if len(args) == 1 else "argument"
    return f"{name}: must be positive, got {e.option_name}"


def _interrupted(msg: str) -> None:
    """Ctrl-C: say so and leave at once. os._exit skips interpreter teardown, which can crash
    (SIGSEGV) while XLA's threads are still inside an interrupted computation; every file
    budgetopt writes is already whole (written atomically), so nothing is lost."""
    print(msg, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)


def _fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


app = typer.Typer(cls=_OneLineErrors, add_completion=False, no_args_is_help=True,
                  pretty_exceptions_enable=False,
                  help="Compute-optimal LLM pre-training budgets: how big a model, how many tokens, how sure.")


def _setup() -> None:
    """The persistent compile cache (compiles dominate a one-shot CLI call)."""
    import jax

    cache = compile_cache_dir()
    if cache is not None:
        jax.config.update("jax_compilation_cache_dir", str(cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def _precision(x64: Optional[bool]):
    """JAX's 64-bit mode for one command, the process's setting restored after: float64 on
    CPU, where it costs nothing for a handful of problems; float32 on accelerators; ``--x64`` /
    ``--x32`` force either."""
    import jax

    from .devices import jax_x64

    return jax_x64(jax.default_backend() == "cpu" if x64 is None else bool(x64))


def compile_cache_dir() -> Optional[Path]:
    """Where JAX's persistent compile cache lives: $BUDGETOPT_CACHE_DIR ("off" disables it),
    else $XDG_CACHE_HOME/budgetopt/jax, else ~/.cache/budgetopt/jax. The cache holds compiled
    executables that JAX loads and runs, so a directory another user could write to is refused
    (with a warning): that would let them run code as you. New directories are made 0700."""
    env = os.environ.get("BUDGETOPT_CACHE_DIR")
    if env is not None and env.strip().lower() in ("", "off", "0", "none"):
        return None
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = Path(env) if env else base / "budgetopt" / "jax"
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = path.stat()
    except OSError:
        return None  # a read-only home just means no cache
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        print(f"warning: not using the compile cache {path}: it is writable by other users or not yours "
              "(chmod go-w it, or set BUDGETOPT_CACHE_DIR)", file=sys.stderr)
        return None
    return path


def _num(text: Optional[str], field: str, units: str = "count") -> Optional[float]:
    return None if text is None else parse_number(text, field, units=units)


def _no_effect(names: list[str], command: str, why: str) -> None:
    for name in names:
        print(f"note: {flag_of(name, command)} has no effect {why}", file=sys.stderr)


def _print(record_or_rows, fmt: str, out: Optional[Path], title: str, notes=(), columns=None, optional=()):
    check_format(fmt)
    if fmt == "json":
        text = to_json(record_or_rows)
    elif fmt == "csv":
        rows = record_or_rows if isinstance(record_or_rows, list) else [record_or_rows]
        text = to_csv(rows)
    elif isinstance(record_or_rows, list):
        text = to_table(record_or_rows, title=title, columns=columns, notes=notes, optional=optional)
    else:
        text = record_table(record_or_rows, title=title, notes=notes)
    emit(text, out)


FMT = typer.Option("table", "--format", "-f", help="table | json | csv")
# flags that fit and forecast share (a runs file's columns and row filter)
N_COL = typer.Option("params", help="column of parameter counts")
D_COL = typer.Option("tokens", help="column of training tokens")
LOSS_COL = typer.Option("loss", help="column of final losses")
WHERE = typer.Option(None, help="keep rows where COL=VALUE (repeatable)")
# flags that optimize and plan share
GPU = typer.Option(None, help="accelerator id (see `budgetopt hardware`)")
COUNT = typer.Option(None, help="number of accelerators")
HOURS = typer.Option(None, help="wall-clock hours")
DAYS = typer.Option(None, help="wall-clock days")
MFU = typer.Option(None, help="model-FLOPs utilisation in (0, 1] \\[default: 0.4]")
DTYPE = typer.Option(None, help="fp32 | tf32 | bf16 | fp16 | fp8 \\[default: bf16]")
LAW = typer.Option(None, help="law preset (see `budgetopt laws`) \\[default: besiroglu2024]")
LAW_PARAMS = typer.Option(None, help="own parametric law: E=..,A=..,B=..,alpha=..,beta=..")
LAW_FILE = typer.Option(None, help="law file (JSON from `budgetopt fit`, or TOML)")
UNIQUE_TOKENS = typer.Option(None, help="unique training tokens available (data-constrained law)")
MAX_PARAMS = typer.Option(None, help="cap on parameters (memory, serving)")
MAX_TOKENS = typer.Option(None, help="cap on training tokens")
PRICE = typer.Option(None, help="price per device-hour, to report a cost")
HARDWARE_FILE = typer.Option(None, help="extra accelerator catalog (TOML)")
PUE = typer.Option(None, help="power usage effectiveness of the data centre, to report energy \\[default: 1.0]")
POWER = typer.Option(None, help="board power per device in watts \\[default: the catalog's tdp_w]")
GRID = typer.Option(None, help="grid carbon intensity, kg CO2e per kWh, to report emissions")


def _cluster(gpu, dtype, count, mfu, price_per_hour, hardware_file, hours=None, days=None, pue=None, power_watts=None,
             grid_intensity=None):
    """The hardware flags parsed and turned into (Cluster or None, names of flags without effect);
    ``price_per_hour`` comes parsed (the caller also prices the run with it)."""
    from .plan import hardware_from

    return hardware_from(gpu, dtype=dtype, count=_num(count, "--count"), hours=_num(hours, "--hours", "plain"),
                         days=_num(days, "--days", "plain"), mfu=_num(mfu, "--mfu", "plain"),
                         price_per_hour=price_per_hour,
                         pue=_num(pue, "--pue", "plain"), power_watts=_num(power_watts, "--power-watts", "plain"),
                         grid_intensity=_num(grid_intensity, "--grid-intensity", "plain"),
                         hardware_file=str(hardware_file) if hardware_file else None)
OUT = typer.Option(None, "--output", "-o", help="write to this file (atomically) instead of stdout")


@app.command()
def optimize(
    flops: Optional[str] = typer.Option(None, help="compute budget in FLOPs (5.76e23) or PF-days (3.6e3pfd)"),
    gpu: Optional[str] = GPU,
    count: Optional[str] = COUNT,
    hours: Optional[str] = HOURS,
    days: Optional[str] = DAYS,
    mfu: Optional[str] = MFU,
    dtype: Optional[str] = DTYPE,
    law: Optional[str] = LAW,
    law_params: Optional[str] = LAW_PARAMS,
    law_file: Optional[Path] = LAW_FILE,
    ratio: Optional[float] = typer.Option(None, help="tokens per parameter for --law tokens-per-param \\[default: 20]"),
    unique_tokens: Optional[str] = UNIQUE_TOKENS,
    max_params: Optional[str] = MAX_PARAMS,
    max_tokens: Optional[str] = MAX_TOKENS,
    max_epochs: Optional[str] = typer.Option(None, help="cap on epochs over the unique tokens"),
    inference_tokens: Optional[str] = typer.Option(None, help="lifetime inference tokens; the budget becomes lifetime FLOPs"),
    target_loss: Optional[str] = typer.Option(None, help="instead of a budget: the loss to reach at least compute"),
    price_per_hour: Optional[str] = PRICE,
    pue: Optional[str] = PUE,
    power_watts: Optional[str] = POWER,
    grid_intensity: Optional[str] = GRID,
    hardware_file: Optional[Path] = HARDWARE_FILE,
    x64: Optional[bool] = typer.Option(None, "--x64/--x32", help="float64 / float32 \\[default: float64 on CPU, float32 on accelerators]"),
    fmt: str = FMT,
    output: Optional[Path] = OUT,
):
    """The compute-optimal model size and token count for a budget."""
    check_format(fmt)
    _setup()
    from .laws import resolve_law
    from .plan import Constraints
    from .plan import optimize as plan_optimize

    spec = resolve_law(law, law_params, str(law_file) if law_file else None, ratio)
    pph = _num(price_per_hour, "--price-per-hour", "plain")
    hw, unused = _cluster(gpu, dtype, count, mfu, pph, hardware_file, hours, days, pue, power_watts, grid_intensity)
    cons = Constraints(unique_tokens=_num(unique_tokens, "--unique-tokens"), max_params=_num(max_params, "--max-params"),
                       max_tokens=_num(max_tokens, "--max-tokens"), max_epochs=_num(max_epochs, "--max-epochs", "plain"),
                       inference_tokens=_num(inference_tokens, "--inference-tokens"))
    with _precision(x64):
        rec = plan_optimize(spec, flops=_num(flops, "--flops", "flops"), hardware=hw, constraints=cons,
                            target_loss=_num(target_loss, "--target-loss", "plain"), price_per_hour=pph)
    _no_effect(unused, "optimize", "without --gpu")
    notes = [f"law: {spec.name} — {spec.describe()}", f"source: {spec.source}"]
    if cons.has_inference:
        notes.append("with inference tokens the budget is lifetime FLOPs = 6·N·D + 2·N·D_inference")
    ext = rec.get("extrapolation")
    if ext is not None:
        notes.append(f"validity: {ext['note']}")
    _print(rec, fmt, output, "budgetopt optimize", notes)
    for w in (ext or {}).get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)
    if not rec["converged"]:
        print("warning: the solve did not converge; the answer is not reliable", file=sys.stderr)
        return EXIT_NOT_CONVERGED
    return 0


@app.command()
def plan(
    flops: Optional[str] = typer.Option(None, help="compute budget in FLOPs or PF-days (or use --gpu ... --days)"),
    params: Optional[str] = typer.Option(None, help="plan this model instead of the optimum: parameters (with --tokens)"),
    tokens: Optional[str] = typer.Option(None, help="training tokens, with --params"),
    gpu: Optional[str] = GPU,
    count: Optional[str] = COUNT,
    hours: Optional[str] = HOURS,
    days: Optional[str] = DAYS,
    mfu: Optional[str] = MFU,
    dtype: Optional[str] = DTYPE,
    law: Optional[str] = LAW,
    law_params: Optional[str] = LAW_PARAMS,
    law_file: Optional[Path] = LAW_FILE,
    unique_tokens: Optional[str] = UNIQUE_TOKENS,
    max_params: Optional[str] = MAX_PARAMS,
    max_tokens: Optional[str] = MAX_TOKENS,
    n_layer: Optional[int] = typer.Option(None, help="shape: layers \\[default: the llama-style shape nearest N]"),
    d_model: Optional[int] = typer.Option(None, help="shape: hidden size"),
    n_heads: Optional[int] = typer.Option(None, help="shape: attention heads \\[default: d_model / 128]"),
    n_kv_heads: Optional[int] = typer.Option(None, help="shape: key/value heads (grouped-query attention) \\[default: n_heads]"),
    d_ff: Optional[int] = typer.Option(None, help="shape: FFN width \\[default: 8d/3 to a multiple of 256 (swiglu), 4d (gelu)]"),
    ffn: str = typer.Option("swiglu", help="swiglu | gelu"),
    vocab: int = typer.Option(32_000, help="vocabulary size"),
    untied: bool = typer.Option(True, "--untied/--tied", help="output head untied from the embeddings"),
    seq_len: int = typer.Option(4096, help="training sequence length (context)"),
    dp: Optional[int] = typer.Option(None, help="data-parallel degree \\[default: --count / (tp x pp), else 1]"),
    tp: int = typer.Option(1, help="tensor-parallel degree"),
    pp: int = typer.Option(1, help="pipeline-parallel degree"),
    zero: int = typer.Option(1, help="ZeRO stage 0-3 (3 = FSDP)"),
    micro_batch: int = typer.Option(1, help="sequences per device per micro-step"),
    recompute: str = typer.Option("none", help="activation recomputation: none | full"),
    flash: bool = typer.Option(True, "--flash/--no-flash", help="flash attention (no stored attention scores)"),
    reserve_gb: float = typer.Option(4.0, help="device memory kept free for the framework and buffers (GB)"),
    flops_convention: str = typer.Option("chinchilla", help="FLOPs per token for device time: 6n | kaplan | deepseek | chinchilla"),
    batch_law: str = typer.Option("deepseek2024", help="batch size and learning rate: deepseek2024 | steplaw2025"),
    price_per_hour: Optional[str] = PRICE,
    pue: Optional[str] = PUE,
    power_watts: Optional[str] = POWER,
    grid_intensity: Optional[str] = GRID,
    hardware_file: Optional[Path] = HARDWARE_FILE,
    fmt: str = typer.Option("table", "--format", "-f", help="table | json"),
    output: Optional[Path] = OUT,
):
    """What do we launch? A budget's model as a shape, its real FLOPs, memory per device, batch and learning rate, energy."""
    check_format(fmt, ("table", "json"))
    _setup()
    from .launch import launch_plan
    from .laws import resolve_law
    from .memory import Layout
    from .plan import Constraints
    from .shape import shape_from

    spec = resolve_law(law, law_params, str(law_file) if law_file else None)
    pph = _num(price_per_hour, "--price-per-hour", "plain")
    hw, unused = _cluster(gpu, dtype, count, mfu, pph, hardware_file, hours, days, pue, power_watts, grid_intensity)
    shape = shape_from(n_layer, d_model, n_heads, n_kv_heads=n_kv_heads, d_ff=d_ff, ffn=ffn, vocab=vocab, tied=not untied,
                       seq_len=seq_len)
    layout = Layout(dp=dp or 1, tp=tp, pp=pp, zero=zero, micro_batch=micro_batch, recompute=recompute, flash=flash)
    cons = Constraints(unique_tokens=_num(unique_tokens, "--unique-tokens"), max_params=_num(max_params, "--max-params"),
                       max_tokens=_num(max_tokens, "--max-tokens"))
    with _precision(None):
        rec = launch_plan(spec, flops=_num(flops, "--flops", "flops"), hardware=hw, constraints=cons,
                          params=_num(params, "--params"), tokens=_num(tokens, "--tokens"), shape=shape, seq_len=seq_len,
                          vocab=vocab, ffn=ffn, tied=not untied, layout=layout, convention=flops_convention, batch_law=batch_law,
                          reserve_gb=reserve_gb, price_per_hour=pph)
    _no_effect(unused, "plan", "without --gpu")
    emit(to_json(rec) if fmt == "json" else launch_report(rec), output)
    return 0


@app.command()
def convert(
    value: Optional[str] = typer.Argument(None, help="compute: FLOPs (3.14e23) or PF-days (3.6e3pfd)"),
    params: Optional[str] = typer.Option(None, help="instead of VALUE: parameters, with --tokens"),
    tokens: Optional[str] = typer.Option(None, help="training tokens, with --params"),
    flops_per_param_token: float = typer.Option(6.0, help="6 for a dense decoder; 3 for an encoder-decoder with half its weights active"),
    to: Optional[str] = typer.Option(None, help="print only this quantity: flops | pf-days | gpu-hours | wall-days | cost"),
    gpu: Optional[str] = typer.Option(None, help="accelerator id, to report GPU-hours"),
    count: Optional[str] = typer.Option(None, help="number of accelerators, to report wall-days"),
    mfu: Optional[str] = typer.Option(None, help="model-FLOPs utilisation in (0, 1] \\[default: 0.4]"),
    dtype: Optional[str] = typer.Option(None, help="fp32 | tf32 | bf16 | fp16 | fp8 \\[default: bf16]"),
    price_per_hour: Optional[str] = typer.Option(None, help="price per device-hour"),
    hardware_file: Optional[Path] = typer.Option(None, help="extra accelerator catalog (TOML)"),
    fmt: str = FMT,
    output: Optional[Path] = OUT,
):
    """Convert compute between FLOPs, PF-days, GPU-hours and wall-days."""
    from .plan import convert as plan_convert

    check_format(fmt)
    pph = _num(price_per_hour, "--price-per-hour", "plain")
    hw, unused = _cluster(gpu, dtype, count, mfu, pph, hardware_file)
    rec = plan_convert(_num(value, "VALUE", "flops"), params=_num(params, "--params"), tokens=_num(tokens, "--tokens"),
                       flops_per_param_token=flops_per_param_token, hardware=hw, price_per_hour=pph, to=to)
    _no_effect(unused, "convert", "without --gpu")
    if to is not None and fmt == "table":
        emit(f"{next(iter(rec.values())):.6g}\n", output)
        return 0
    _print(rec, fmt, output, "budgetopt convert")
    return 0


@app.command()
def hardware(
    hardware_file: Optional[Path] = typer.Option(None, help="extra accelerator catalog (TOML), same format"),
    fmt: str = FMT,
    output: Optional[Path] = OUT,
):
    """List the accelerator catalog: dense peak TFLOP/s per dtype, memory, bandwidth, source."""
    from .hardware import DTYPES, catalog_rows

    check_format(fmt)
    rows = catalog_rows(hardware_file)
    cols = ["id"] + [f"{d}_tflops" for d in DTYPES] + ["memory_gb", "bandwidth_tbs", "tdp_w", "name"]
    _print(rows, fmt, output, "Accelerators (dense peak TFLOP/s per device)", columns=cols,
           notes=["- = dtype not supported; sources: `budgetopt hardware --format json`"],
           optional=["name", "tf32_tflops", "fp32_tflops", "bandwidth_tbs", "tdp_w"])
    return 0


@app.command()
def laws(fmt: str = FMT, output: Optional[Path] = OUT):
    """List the scaling-law presets with their formulas and sources."""
    from .laws import preset_rows

    check_format(fmt)
    _print(preset_rows(), fmt, output, "Scaling laws (a, b: N_opt ∝ C^a, D_opt ∝ C^b)",
           columns=["name", "kind", "formula", "a", "b", "uncertainty", "source"], optional=["source", "uncertainty", "b"])
    return 0


@app.command()
def sweep(
    scenario: Optional[Path] = typer.Argument(None, help="scenario TOML file (see README)"),
    example: Optional[str] = typer.Option(None, help="run a built-in scenario: h100-cluster | bloomberggpt | serving"),
    samples: Optional[str] = typer.Option(None, help="number of samples (overrides the file)"),
    seed: Optional[int] = typer.Option(None, help="random seed (overrides the file)"),
    chunk_size: Optional[str] = typer.Option(None, help="samples per compiled chunk; results do not depend on it "
                                             "\\[default: 65536 per CPU device, 2^22 per accelerator]"),
    candidates: Optional[int] = typer.Option(None, help="candidate sizes in the robust grid (0 = no recommendation)"),
    checkpoint: Optional[Path] = typer.Option(None, help="write the merged state here after every chunk"),
    resume: bool = typer.Option(False, help="continue from --checkpoint"),
    shard: Optional[str] = typer.Option(None, help="run only shard i of n (i/n); combine with `budgetopt merge`"),
    distributed: bool = typer.Option(False, help="join a multi-process run (jax.distributed; Slurm/MPI auto-detected)"),
    coordinator: Optional[str] = typer.Option(None, help="host:port of process 0, with --distributed"),
    num_processes: Optional[int] = typer.Option(None, help="with --distributed and --coordinator"),
    process_id: Optional[int] = typer.Option(None, help="with --distributed and --coordinator"),
    host_devices: Optional[int] = typer.Option(None, help="split a CPU host into this many devices \\[default: one per core on CPU]"),
    x64: bool = typer.Option(False, "--x64", help="compute in float64 (default float32)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    hardware_file: Optional[Path] = typer.Option(None, help="extra accelerator catalog (TOML)"),
    fmt: str = typer.Option("table", "--format", "-f", help="table | json"),
    output: Optional[Path] = OUT,
):
    """Monte Carlo over everything uncertain: distributions of the optimum, and a robust N."""
    from .devices import split_host, start_distributed
    from .files import check_outputs

    check_format(fmt, ("table", "json"))
    check_outputs({"output": output, "checkpoint": checkpoint}, {"scenario": scenario})
    if distributed:
        start_distributed(coordinator, num_processes, process_id)
    else:
        split_host(host_devices)
    _setup()
    from . import scenario as scn
    from . import sweep as sw

    sc = scn.with_overrides(scn.resolve(scenario, example, str(hardware_file) if hardware_file else None),
                            seed=seed, candidates=candidates)
    shard_of = sw.parse_shard(shard)
    progress = _progress(quiet)
    set_resume_hint(f"; resume with --checkpoint {checkpoint} --resume" if checkpoint
                    else "; use --checkpoint to make runs resumable")
    try:
        with progress as tick:
            res = sw.run(sc, samples=_num(samples, "--samples"), chunk_size=_num(chunk_size, "--chunk-size"), x64=x64,
                         checkpoint=checkpoint, resume=resume, shard=shard_of, progress=tick)
    except KeyboardInterrupt:  # in-process callers (the console script routes signals instead)
        _interrupted(f"interrupted{resume_hint()}")
    import jax

    if jax.process_index() != 0:
        return 0
    if fmt == "json":
        emit(to_json(res), output)
    else:
        emit(sweep_report(res), output)
    warning = convergence_warning(res)
    if warning:
        print(warning, file=sys.stderr)
    return 0


class _progress:
    """A rich progress bar on stderr when it is a terminal (one tick per chunk); else silent."""

    def __init__(self, quiet: bool):
        self.enabled = not quiet and sys.stderr.isatty()

    def __enter__(self):
        if not self.enabled:
            return None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self.p = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                          TimeRemainingColumn(), console=Console(stderr=True), transient=True)
        self.p.__enter__()
        self.task = self.p.add_task("samples", total=None)
        return lambda done, total: self.p.update(self.task, completed=done, total=total)

    def __exit__(self, *exc):
        if self.enabled:
            self.p.__exit__(*exc)
        return False


@app.command()
def fit(
    runs: Path = typer.Argument(..., help="CSV of training runs: params, tokens (or flops), loss"),
    approach: str = typer.Option("3", help="3: parametric Huber fit; 2: IsoFLOP parabolas; vpnls: variable projection; "
                                           "all: the three side by side"),
    bootstrap: int = typer.Option(0, help="bootstrap replicates (Approach 3, VPNLS)"),
    seed: int = typer.Option(0, help="seed of the bootstrap resampling"),
    n_col: str = N_COL,
    d_col: str = D_COL,
    c_col: str = typer.Option("flops", help="column of each run's compute budget: groups isoFLOP curves (Approach 2); "
                                            "gives tokens = C/6N when there is no tokens column"),
    loss_col: str = LOSS_COL,
    drop_highest: int = typer.Option(0, help="drop the K highest losses"),
    loss_min: Optional[float] = typer.Option(None, help="keep runs with loss >= this"),
    loss_max: Optional[float] = typer.Option(None, help="keep runs with loss <= this"),
    delta: float = typer.Option(1e-3, help="Huber delta (Approach 3)"),
    tolerance: float = typer.Option(0.05, help="relative compute tolerance grouping runs into budgets (Approach 2)"),
    group: Optional[str] = typer.Option(None, help="fit each group of rows: COL or COL,COL (e.g. experiment)"),
    where: Optional[list[str]] = WHERE,
    at: Optional[str] = typer.Option(None, help="compare the allocations at this budget (FLOPs) \\[default: 5.76e23]"),
    outlier_k: float = typer.Option(5.0, help="flag runs whose residual is over K robust SDs (1.4826 MAD) from the median"),
    exclude_outliers: bool = typer.Option(False, "--exclude-outliers", help="refit without the flagged runs"),
    fmt: str = typer.Option("table", "--format", "-f", help="table | json"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="write the fitted law (JSON) here"),
):
    """Fit scaling laws to your own runs: Approach 3, Approach 2, VPNLS or all three, per group."""
    from .files import check_outputs
    from .fit import fit_file
    from .runs import parse_group, parse_where

    check_format(fmt, ("table", "json"))
    check_outputs({"output": output}, {"runs": runs})
    res = fit_file(runs, approach=approach, bootstrap=bootstrap, seed=seed, n_col=n_col, d_col=d_col, c_col=c_col,
                   loss_col=loss_col, drop_highest=drop_highest, loss_min=loss_min, loss_max=loss_max, delta=delta,
                   tolerance=tolerance, group=parse_group(group), where=parse_where(where or []),
                   target=None if at is None else parse_number(at, "at", units="flops"), outlier_k=outlier_k,
                   exclude_outliers=exclude_outliers)
    if output is not None:
        write_atomic(output, to_json(res))
    if fmt == "json":
        sys.stdout.write(to_json(res))
        return 0
    sys.stdout.write(fit_report(res))
    if output is not None:
        use = isinstance(res, dict) and res["approach"] in (3, "vpnls")
        sys.stdout.write(f"wrote {output}" + (" (use it with `optimize --law-file` or a scenario's law.file)" if use else "") + "\n")
    return 0


@app.command()
def forecast(
    runs: Optional[Path] = typer.Argument(None, help="CSV of runs with a metric column (omit to use a preset's published link)"),
    metric: Optional[str] = typer.Option(None, help="the metric column (e.g. an average accuracy or error)"),
    link: str = typer.Option("exp", help="exp: err = eps - k exp(-gamma L) (Gadre et al.); sigmoid: a/(1+exp(-k(L-l0)))+b"),
    params: Optional[str] = typer.Option(None, help="target model: parameters (with --tokens)"),
    tokens: Optional[str] = typer.Option(None, help="target model: training tokens (with --params)"),
    flops: Optional[str] = typer.Option(None, help="target: the compute-optimal run of this budget"),
    law: Optional[str] = typer.Option(None, help="a parametric preset for step 1 \\[default: the law fitted to the runs]"),
    bootstrap: int = typer.Option(200, help="bootstrap replicates: both steps refitted per replicate"),
    seed: int = typer.Option(0, help="seed of the bootstrap"),
    level: float = typer.Option(0.9, help="interval level"),
    n_col: str = N_COL,
    d_col: str = D_COL,
    c_col: str = typer.Option("flops", help="column of compute (tokens = C/6N without a tokens column)"),
    loss_col: str = LOSS_COL,
    where: Optional[list[str]] = WHERE,
    fmt: str = typer.Option("table", "--format", "-f", help="table | json"),
    output: Optional[Path] = OUT,
):
    """Forecast a downstream metric of a target run: compute -> loss -> metric, with an interval."""
    from .files import check_outputs
    from .forecast import forecast_file, forecast_preset
    from .laws import resolve_law
    from .runs import parse_where

    check_format(fmt, ("table", "json"))
    check_outputs({"output": output}, {"runs": runs} if runs is not None else {})
    target = {"params": _num(params, "--params"), "tokens": _num(tokens, "--tokens"), "flops": _num(flops, "--flops", "flops")}
    spec = resolve_law(law) if law is not None else None
    if runs is None:
        if metric is not None:
            raise InputError("--metric", "needs a runs file (RUNS)")
        res = forecast_preset(spec if spec is not None else resolve_law("gadre2024-rpj"), **target)
    else:
        if metric is None:
            raise InputError("--metric", "name the metric column of RUNS")
        res = forecast_file(runs, metric, n_col=n_col, d_col=d_col, c_col=c_col, loss_col=loss_col,
                            where=parse_where(where or []), link=link, law=spec, bootstrap=bootstrap, seed=seed,
                            level=level, **target)
    emit(to_json(res) if fmt == "json" else forecast_report(res), output)
    return 0


@app.command()
def ladder(
    at: str = typer.Option("1e24", "--at", help="the target run's budget in FLOPs or PF-days: the ladder forecasts its N*"),
    designs: Optional[Path] = typer.Option(None, help="designs TOML (\\[\\[design]] tables) \\[default: the built-in family of 24]"),
    law: Optional[str] = LAW,
    law_params: Optional[str] = LAW_PARAMS,
    law_file: Optional[Path] = LAW_FILE,
    prior: Optional[str] = typer.Option(None, help="true laws drawn from the law's: covariance | bootstrap | none "
                                        "\\[default: its covariance, else its bootstrap draws, else none]"),
    noise: Optional[float] = typer.Option(None, help="loss noise per run, sd of log loss \\[default: the law file's "
                                          "rmse_log_loss, else 0.005]"),
    curve_sigma: float = typer.Option(0.0, help="sd of a log-loss offset shared by each budget's runs"),
    bias_per_decade: float = typer.Option(0.0, help="log loss added per decade a budget lies below --at (under-tuned small runs)"),
    approach: str = typer.Option("vpnls", help="how each simulated ladder is fitted: vpnls | 3 | 2"),
    ladders: str = typer.Option("1000", help="simulated ladders per design"),
    seed: int = typer.Option(0, help="seed: ladder i draws the same law and noise for every design"),
    max_regret: Optional[str] = typer.Option(None, help="recommend the cheapest design whose p95 regret is at most this (nats)"),
    ladder_budget: Optional[str] = typer.Option(None, help="recommend the best design costing at most this (FLOPs or PF-days)"),
    gpu: Optional[str] = typer.Option(None, help="accelerator id, to report each design's GPU-hours"),
    dtype: Optional[str] = DTYPE,
    mfu: Optional[str] = MFU,
    hardware_file: Optional[Path] = HARDWARE_FILE,
    host_devices: Optional[int] = typer.Option(None, help="split a CPU host into this many devices \\[default: one per core]"),
    chunk: Optional[int] = typer.Option(None, help="(design, ladder) pairs per compiled call \\[default: 128 per device]"),
    fmt: str = FMT,
    output: Optional[Path] = OUT,
):
    """Which ladder of small runs should we train? Simulate each design's forecast of N* at --at."""
    from .devices import split_host
    from .files import check_outputs

    check_format(fmt)
    check_outputs({"output": output}, {k: v for k, v in (("designs", designs), ("law_file", law_file)) if v is not None})
    split_host(host_devices)
    _setup()
    from .ladder import DEFAULT_NOISE, Noise, design_ladders, read_designs
    from .laws import resolve_law

    target = parse_number(at, "--at", units="flops")
    spec = resolve_law(law, law_params, str(law_file) if law_file else None)
    cluster, unused = _cluster(gpu, dtype, None, mfu, None, hardware_file)
    _no_effect(unused, "ladder", "without --gpu")
    sigma = noise if noise is not None else spec.residual_sd if spec.residual_sd is not None else DEFAULT_NOISE.sigma
    chosen = read_designs(designs) if designs is not None else None
    with _precision(True):
        res = design_ladders(spec, target, chosen, prior=prior, noise=Noise(sigma, curve_sigma, bias_per_decade),
                             approach=approach, ladders=parse_number(ladders, "--ladders"), seed=seed,
                             max_regret=_num(max_regret, "--max-regret", "plain"),
                             ladder_budget=_num(ladder_budget, "--ladder-budget", "flops"), cluster=cluster, chunk=chunk)
    if fmt == "json":
        emit(to_json(res), output)
    elif fmt == "csv":
        emit(to_csv([{k: v for k, v in r.items() if not isinstance(v, list)} for r in res["designs"]]), output)
    else:
        emit(ladder_report(res), output)
    return 0


@app.command()
def audit(
    model: Optional[list[str]] = typer.Option(None, help="catalog model id(s) (default: all); see the table"),
    params: Optional[str] = typer.Option(None, help="your model: parameters (with --tokens)"),
    tokens: Optional[str] = typer.Option(None, help="your model: training tokens (with --params)"),
    flops: Optional[str] = typer.Option(None, help="your model: training compute if not 6ND"),
    name: str = typer.Option("your model", help="label for --params/--tokens"),
    law: Optional[str] = typer.Option(None, help="law preset \\[default: hoffmann2022]"),
    law_params: Optional[str] = typer.Option(None, help="own parametric law: E=..,A=..,B=..,alpha=..,beta=.."),
    law_file: Optional[Path] = typer.Option(None, help="law file (JSON from `budgetopt fit`)"),
    ratio: Optional[float] = typer.Option(None, help="tokens per parameter for --law tokens-per-param"),
    near_multiplier: float = typer.Option(1.25, help="near-optimal if the optimal allocation needs >= 1/this of the compute"),
    near_ratio: float = typer.Option(2.0, help="allocation rules: near-optimal within this factor of the rule's D/N"),
    fmt: str = FMT,
    output: Optional[Path] = OUT,
):
    """Was a model compute-optimal? Audit the catalog (GPT-3, Chinchilla, Llama ...) or your own."""
    from . import audit as audit_lib
    from .laws import resolve_law

    check_format(fmt)
    _setup()
    spec = resolve_law(law, law_params, str(law_file) if law_file else None, ratio, default="hoffmann2022")
    models = audit_lib.select_models(model, params=_num(params, "--params"), tokens=_num(tokens, "--tokens"),
                                     flops=_num(flops, "--flops", "flops"), name=name)
    with _precision(None):
        rows = audit_lib.audit(models, spec, near_multiplier, near_ratio)
    cols, notes = audit_notes(spec, near_multiplier, near_ratio, rows)
    _print(rows, fmt, output, f"budgetopt audit — law {spec.name}: {spec.describe()}", columns=cols, notes=notes,
           optional=["loss", "tokens_per_param", "optimal_tokens", "flops", "loss_gap"])
    return 0


@app.command()
def plot(
    kind: str = typer.Argument(..., help="frontier | isoflop | loss-vs-compute | sweep | forecast | memory | ladder"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="PNG or SVG file \\[default: KIND.png]"),
    law: Optional[list[str]] = typer.Option(None, help="law preset(s) \\[default: hoffmann2022 and besiroglu2024]"),
    law_file: Optional[Path] = typer.Option(None, help="a fitted law file (added to the laws)"),
    sweep_file: Optional[Path] = typer.Option(None, "--sweep", help="sweep JSON (`sweep -f json -o FILE`) for KIND sweep"),
    forecast_file: Optional[Path] = typer.Option(None, "--forecast", help="forecast JSON (`forecast -f json -o FILE`)"),
    ladder_file: Optional[Path] = typer.Option(None, "--ladder", help="ladder-design JSON (`ladder -f json -o FILE`)"),
    runs: Optional[Path] = typer.Option(None, help="runs CSV to overlay on the isoflop plot (params, tokens|flops, loss)"),
    min_flops: str = typer.Option("1e18", help="left end of the compute axis"),
    max_flops: str = typer.Option("1e27", help="right end of the compute axis"),
    width: float = typer.Option(0.0, help="figure width in inches \\[default: per kind]"),
    height: float = typer.Option(0.0, help="figure height in inches \\[default: per kind]"),
    dpi: int = typer.Option(100, help="PNG resolution"),
):
    """Draw the figures: frontier, isoflop, loss-vs-compute, sweep, forecast, memory, ladder."""
    from .plots import draw

    _setup()
    with _precision(None):
        out = draw(kind, output, law=law, law_file=law_file, sweep_file=sweep_file, runs=runs,
                   min_flops=parse_number(min_flops, "--min-flops", units="flops"),
                   max_flops=parse_number(max_flops, "--max-flops", units="flops"), width=width, height=height, dpi=dpi,
                   forecast_file=forecast_file, ladder_file=ladder_file)
    print(f"wrote {out}", file=sys.stderr)
    return 0


@app.command()
def bench(
    samples: str = typer.Option("2e6", help="sweep samples per timed run"),
    problems: str = typer.Option("1048576", help="solver problems per timed run"),
    host_devices: Optional[int] = typer.Option(None, help="split a CPU host into this many devices \\[default: one per core]"),
    fmt: str = typer.Option("table", "--format", "-f", help="table | json"),
):
    """Quick speed check of this machine: sweep samples/s, solver problems/s, devices."""
    from .devices import split_host

    check_format(fmt, ("table", "json"))
    split_host(host_devices)
    _setup()
    from .bench import quick

    with _precision(False):
        res = quick(parse_number(samples, "--samples"), parse_number(problems, "--problems"))
    sys.stdout.write(to_json(res) if fmt == "json" else bench_report(res))
    return 0


@app.command()
def merge(
    files: list[Path] = typer.Argument(..., help="sweep JSON outputs of --shard 0/n .. n-1/n"),
    fmt: str = typer.Option("json", "--format", "-f", help="json | table"),
    output: Optional[Path] = OUT,
):
    """Merge the shards of one sweep into the summary of the whole (exact)."""
    from . import sweep as sw
    from .files import check_outputs

    check_format(fmt, ("table", "json"))
    check_outputs({"output": output}, {"results": list(files)})
    results = [load_json(f, "FILES", "a sweep JSON output") for f in files]
    res = sw.merge_results(results, [str(f) for f in files])
    emit(to_json(res) if fmt == "json" else sweep_report(res), output)
    return 0


def main(argv: Optional[list[str]] = None) -> None:
    """Run one command (``budgetopt.__main__.main`` routes signals first, then calls this)."""
    app(args=argv, prog_name="budgetopt")


if __name__ == "__main__":
    main()
