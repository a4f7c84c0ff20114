"""The typer CLI: parse, call the library, print. No maths here.

Every usage error or bad input ends as one line ``error: <field>: <what is allowed>`` on
stderr with exit code 2 — never a traceback, never a partial output file.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

from .errors import InputError
from .files import load_json, same_file, write_atomic
from .interrupts import EXIT_INTERRUPTED, resume_hint, set_resume_hint
from .report import check_format, emit, record_table, sweep_report, to_csv, to_json, to_table
from .units import parse_number

EXIT_OK, EXIT_NOT_CONVERGED, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 70


class _OneLineErrors(TyperGroup):
    """Run the command non-standalone and turn every usage error into one line, exit 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        from typer._click import exceptions as cx
        from typer.exceptions import Abort

        try:
            rv = super().main(args=args, prog_name=prog_name or "budgetopt", complete_var=complete_var,
                              standalone_mode=False, **extra)
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


def _setup(x64: Optional[bool]) -> None:
    """Precision and the persistent compile cache (compiles dominate a one-shot CLI call).

    Precision: float64 on CPU, where it costs nothing for a handful of problems; float32 on
    accelerators; ``--x64`` / ``--x32`` force either."""
    import jax

    if x64 is None:
        x64 = jax.default_backend() == "cpu"
    jax.config.update("jax_enable_x64", bool(x64))
    cache = compile_cache_dir()
    if cache is not None:
        jax.config.update("jax_compilation_cache_dir", str(cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


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


def _host_devices(n: Optional[int]) -> None:
    """Split a CPU host into ``n`` devices (default one per core, unless XLA_FLAGS already
    says); accelerators ignore it. Must run before JAX starts its backends."""
    from .devices import set_host_device_count

    if n is not None and n < 1:
        raise InputError("--host-devices", f"must be >= 1, got {n}")
    if n is not None or "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        set_host_device_count(n or os.cpu_count() or 1)


def _num(text: Optional[str], field: str, units: str = "count") -> Optional[float]:
    return None if text is None else parse_number(text, field, units=units)


def _hardware(gpu, dtype, count, hours, days, mfu, hardware_file):
    from .hardware import get_accelerator, load_catalog
    from .plan import DEFAULT_MFU, Hardware

    if gpu is None:
        for flag, v in (("--count", count), ("--hours", hours), ("--days", days)):
            if v is not None:
                raise InputError(flag, "needs --gpu (the accelerator id; see `budgetopt hardware`)")
        return None
    if hours is not None and days is not None:
        raise InputError("--days", "give --hours or --days, not both")
    h = _num(hours, "--hours", "plain")
    if days is not None:
        h = _num(days, "--days", "plain") * 24.0
        if not (h > 0 and math.isfinite(h)):
            raise InputError("--days", f"must be a positive number of days, got {days!r}")
    m = DEFAULT_MFU if mfu is None else _num(mfu, "--mfu", "plain")
    acc = get_accelerator(gpu, load_catalog(hardware_file))
    return Hardware(acc, dtype, m, _num(count, "--count"), h)


def _print(record_or_rows, fmt: str, out: Optional[Path], title: str, notes=(), columns=None):
    check_format(fmt)
    if fmt == "json":
        text = to_json(record_or_rows)
    elif fmt == "csv":
        rows = record_or_rows if isinstance(record_or_rows, list) else [record_or_rows]
        text = to_csv(rows)
    elif isinstance(record_or_rows, list):
        text = to_table(record_or_rows, title=title, columns=columns, notes=notes)
    else:
        text = record_table(record_or_rows, title=title, notes=notes)
    emit(text, out)


FMT = typer.Option("table", "--format", "-f", help="table | json | csv")
OUT = typer.Option(None, "--output", "-o", help="write to this file (atomically) instead of stdout")


@app.command()
def optimize(
    flops: Optional[str] = typer.Option(None, help="compute budget in FLOPs (5.76e23) or PF-days (3.6e3pfd)"),
    gpu: Optional[str] = typer.Option(None, help="accelerator id (see `budgetopt hardware`)"),
    count: Optional[str] = typer.Option(None, help="number of accelerators"),
    hours: Optional[str] = typer.Option(None, help="wall-clock hours"),
    days: Optional[str] = typer.Option(None, help="wall-clock days"),
    mfu: Optional[str] = typer.Option(None, help="model-FLOPs utilisation in (0, 1] [default: 0.4]"),
    dtype: str = typer.Option("bf16", help="fp32 | tf32 | bf16 | fp16 | fp8"),
    law: Optional[str] = typer.Option(None, help="law preset (see `budgetopt laws`) [default: besiroglu2024]"),
    law_params: Optional[str] = typer.Option(None, help="own parametric law: E=..,A=..,B=..,alpha=..,beta=.."),
    law_file: Optional[Path] = typer.Option(None, help="law file (JSON from `budgetopt fit`, or TOML)"),
    ratio: Optional[float] = typer.Option(None, help="tokens per parameter for --law tokens-per-param [default: 20]"),
    unique_tokens: Optional[str] = typer.Option(None, help="unique training tokens available (data-constrained law)"),
    max_params: Optional[str] = typer.Option(None, help="cap on parameters (memory, serving)"),
    max_tokens: Optional[str] = typer.Option(None, help="cap on training tokens"),
    max_epochs: Optional[str] = typer.Option(None, help="cap on epochs over the unique tokens"),
    inference_tokens: Optional[str] = typer.Option(None, help="lifetime inference tokens; the budget becomes lifetime FLOPs"),
    target_loss: Optional[str] = typer.Option(None, help="instead of a budget: the loss to reach at least compute"),
    price_per_hour: Optional[str] = typer.Option(None, help="price per device-hour, to report a cost"),
    hardware_file: Optional[Path] = typer.Option(None, help="extra accelerator catalog (TOML)"),
    x64: Optional[bool] = typer.Option(None, "--x64/--x32", help="float64 / float32 [default: float64 on CPU, float32 on accelerators]"),
    fmt: str = FMT,
    output: Optional[Path] = OUT,
):
    """The compute-optimal model size and token count for a budget."""
    check_format(fmt)
    _setup(x64)
    from .laws import resolve_law
    from .plan import Constraints
    from .plan import optimize as plan_optimize

    spec = resolve_law(law, law_params, str(law_file) if law_file else None, ratio)
    hw = _hardware(gpu, dtype, count, hours, days, mfu, hardware_file)
    cons = Constraints(unique_tokens=_num(unique_tokens, "--unique-tokens"), max_params=_num(max_params, "--max-params"),
                       max_tokens=_num(max_tokens, "--max-tokens"), max_epochs=_num(max_epochs, "--max-epochs", "plain"),
                       inference_tokens=_num(inference_tokens, "--inference-tokens"))
    rec = plan_optimize(spec, flops=_num(flops, "--flops", "flops"), hardware=hw, constraints=cons,
                        target_loss=_num(target_loss, "--target-loss", "plain"),
                        price_per_hour=_num(price_per_hour, "--price-per-hour", "plain"))
    notes = [f"law: {spec.name} — {spec.describe()}", f"source: {spec.source}"]
    if cons.has_inference:
        notes.append("with inference tokens the budget is lifetime FLOPs = 6·N·D + 2·N·D_inference")
    _print(rec, fmt, output, "budgetopt optimize", notes)
    if not rec["converged"]:
        print("warning: the solve did not converge; the answer is not reliable", file=sys.stderr)
        return EXIT_NOT_CONVERGED
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
    mfu: Optional[str] = typer.Option(None, help="model-FLOPs utilisation in (0, 1] [default: 0.4]"),
    dtype: str = typer.Option("bf16", help="fp32 | tf32 | bf16 | fp16 | fp8"),
    price_per_hour: Optional[str] = typer.Option(None, help="price per device-hour"),
    hardware_file: Optional[Path] = typer.Option(None, help="extra accelerator catalog (TOML)"),
    fmt: str = FMT,
    output: Optional[Path] = OUT,
):
    """Convert compute between FLOPs, PF-days, GPU-hours and wall-days."""
    from . import units

    check_format(fmt)
    if value is not None and (params is not None or tokens is not None):
        raise InputError("--params", "give VALUE or --params with --tokens, not both")
    if value is None:
        if params is None or tokens is None:
            raise InputError("VALUE", "give a compute VALUE, or --params with --tokens")
        n = units.require_positive(_num(params, "--params"), "--params")
        d = units.require_positive(_num(tokens, "--tokens"), "--tokens")
        units.require_positive(flops_per_param_token, "--flops-per-param-token")
        flops = units.train_flops(n, d, flops_per_param_token)
    else:
        flops = units.require_positive(_num(value, "VALUE", "flops"), "VALUE")
    rec = {"flops": flops, "pf_days": units.flops_to_pf_days(flops)}
    hw = _hardware(gpu, dtype, count, None, None, mfu, hardware_file)
    pph = _num(price_per_hour, "--price-per-hour", "plain")
    if hw is not None:
        rec.update(hw.describe(flops, pph))
    keys = {"flops": "flops", "pf-days": "pf_days", "gpu-hours": "gpu_hours", "wall-days": "wall_days", "cost": "cost"}
    if to is not None:
        if to not in keys:
            raise InputError("--to", f"unknown quantity {to!r}; allowed: {', '.join(keys)}")
        if keys[to] not in rec:
            need = {"gpu-hours": "--gpu", "wall-days": "--gpu and --count", "cost": "--gpu and --price-per-hour"}[to]
            raise InputError("--to", f"{to} needs {need}")
        if fmt == "table":
            emit(f"{rec[keys[to]]:.6g}\n", output)
            return 0
        rec = {keys[to]: rec[keys[to]]}
    _print(rec, fmt, output, "budgetopt convert")
    return 0


@app.command()
def hardware(
    hardware_file: Optional[Path] = typer.Option(None, help="extra accelerator catalog (TOML), same format"),
    fmt: str = FMT,
    output: Optional[Path] = OUT,
):
    """List the accelerator catalog: dense peak TFLOP/s per dtype, memory, bandwidth, source."""
    from .hardware import DTYPES, load_catalog

    check_format(fmt)
    rows = []
    for acc in load_catalog(hardware_file).values():
        row = {"id": acc.id, "name": acc.name}
        row.update({f"{d}_tflops": acc.peak_tflops.get(d) for d in DTYPES})
        row.update({"memory_gb": acc.memory_gb, "bandwidth_tbs": acc.bandwidth_tbs, "source": acc.source})
        rows.append(row)
    cols = ["id"] + [f"{d}_tflops" for d in DTYPES] + ["memory_gb", "bandwidth_tbs", "name"]
    _print(rows, fmt, output, "Accelerators (dense peak TFLOP/s per device)", columns=cols,
           notes=["- = dtype not supported; sources: `budgetopt hardware --format json`"])
    return 0


@app.command()
def laws(fmt: str = FMT, output: Optional[Path] = OUT):
    """List the scaling-law presets with their formulas and sources."""
    import jax.numpy as jnp

    from .laws import Parametric, closed_form_coefficients, get_preset, preset_names, to_array_law

    check_format(fmt)
    rows = []
    for name in preset_names():
        spec = get_preset(name)
        row = {"name": name, "kind": spec.kind, "formula": spec.describe()}
        if isinstance(spec.params, Parametric):
            _, a, b = closed_form_coefficients(to_array_law(spec.params))
            row.update({"a": round(float(a), 4), "b": round(float(b), 4)})
            row.update(dict(zip(("E", "A", "B", "alpha", "beta"),
                                [float(jnp.exp(spec.params.log_E)), float(jnp.exp(spec.params.log_A)),
                                 float(jnp.exp(spec.params.log_B)), spec.params.alpha, spec.params.beta])))
        elif spec.kind == "kaplan":  # under C = 6ND: N_opt ∝ C^(aD/(aD+aN)) (not the paper's 0.73, see README)
            a = spec.params.alpha_D / (spec.params.alpha_D + spec.params.alpha_N)
            row.update({"a": round(a, 4), "b": round(1 - a, 4)})
        else:
            row.update({"a": 0.5, "b": 0.5})
        row["uncertainty"] = "covariance" if spec.covariance is not None else None
        row["source"] = spec.source
        rows.append(row)
    _print(rows, fmt, output, "Scaling laws (a, b: N_opt ∝ C^a, D_opt ∝ C^b)",
           columns=["name", "kind", "formula", "a", "b", "uncertainty", "source"])
    return 0


@app.command()
def sweep(
    scenario: Optional[Path] = typer.Argument(None, help="scenario TOML file (see README)"),
    example: Optional[str] = typer.Option(None, help="run a built-in scenario: h100-cluster | bloomberggpt | serving"),
    samples: Optional[str] = typer.Option(None, help="number of samples (overrides the file)"),
    seed: Optional[int] = typer.Option(None, help="random seed (overrides the file)"),
    chunk_size: Optional[str] = typer.Option(None, help="samples per compiled chunk; results do not depend on it "
                                             "[default: 65536 per CPU device, 2^22 per accelerator]"),
    candidates: Optional[int] = typer.Option(None, help="candidate sizes in the robust grid (0 = no recommendation)"),
    checkpoint: Optional[Path] = typer.Option(None, help="write the merged state here after every chunk"),
    resume: bool = typer.Option(False, help="continue from --checkpoint"),
    shard: Optional[str] = typer.Option(None, help="run only shard i of n (i/n); combine with `budgetopt merge`"),
    distributed: bool = typer.Option(False, help="join a multi-process run (jax.distributed; Slurm/MPI auto-detected)"),
    coordinator: Optional[str] = typer.Option(None, help="host:port of process 0, with --distributed"),
    num_processes: Optional[int] = typer.Option(None, help="with --distributed and --coordinator"),
    process_id: Optional[int] = typer.Option(None, help="with --distributed and --coordinator"),
    host_devices: Optional[int] = typer.Option(None, help="split a CPU host into this many devices [default: one per core on CPU]"),
    x64: bool = typer.Option(False, "--x64", help="compute in float64 (default float32)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    hardware_file: Optional[Path] = typer.Option(None, help="extra accelerator catalog (TOML)"),
    fmt: str = typer.Option("table", "--format", "-f", help="table | json"),
    output: Optional[Path] = OUT,
):
    """Monte Carlo over everything uncertain: distributions of the optimum, and a robust N."""
    import dataclasses

    check_format(fmt, ("table", "json"))
    if (scenario is None) == (example is None):
        raise InputError("SCENARIO", "give a scenario file or --example NAME (one of them)")
    if output is not None and not output.parent.is_dir():
        raise InputError("-o", f"directory {output.parent} does not exist")
    if output is not None and scenario is not None and same_file(output, scenario):
        raise InputError("-o", f"{output} is the SCENARIO file; write the result elsewhere")
    if checkpoint is not None and scenario is not None and same_file(checkpoint, scenario):
        raise InputError("--checkpoint", f"{checkpoint} is the SCENARIO file; keep the checkpoint elsewhere")
    if output is not None and checkpoint is not None and Path(output).absolute() == Path(checkpoint).absolute():
        raise InputError("-o", "the result and --checkpoint must be different files")
    if distributed:
        import jax

        kw = {}
        if coordinator is not None:
            kw = {"coordinator_address": coordinator, "num_processes": num_processes, "process_id": process_id}
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(**kw)
    else:
        _host_devices(host_devices)
    _setup(None)
    from . import scenario as scn
    from . import sweep as sw

    sc = scn.example(example) if example else scn.load(scenario, str(hardware_file) if hardware_file else None)
    if seed is not None:
        if not 0 <= seed < 2**31:
            raise InputError("--seed", f"must be in [0, 2^31), got {seed}")
        sc = dataclasses.replace(sc, seed=seed)
    if candidates is not None:
        if candidates != 0 and not 2 <= candidates <= 1024:
            raise InputError("--candidates", f"must be 0 or from 2 to 1024, got {candidates}")
        sc = dataclasses.replace(sc, candidates=candidates)
    n = None if samples is None else parse_number(samples, "--samples")
    if n is not None and (n != int(n) or not 1 <= n <= 1e13):
        raise InputError("--samples", f"must be a whole number from 1 to 1e13, got {samples}")
    chunk = None if chunk_size is None else parse_number(chunk_size, "--chunk-size")
    if chunk is not None and (chunk != int(chunk) or chunk < 1):
        raise InputError("--chunk-size", f"must be a positive whole number, got {chunk_size}")
    if resume and checkpoint is None:
        raise InputError("--resume", "needs --checkpoint PATH")
    i_sh, n_sh = sw.parse_shard(shard)
    progress = _progress(quiet)
    set_resume_hint(f"; resume with --checkpoint {checkpoint} --resume" if checkpoint
                    else "; use --checkpoint to make runs resumable")
    try:
        with progress as tick:
            res = sw.run(sc, samples=None if n is None else int(n), chunk_size=None if chunk is None else int(chunk), x64=x64,
                         checkpoint=checkpoint, resume=resume, shard=(i_sh, n_sh), progress=tick)
    except KeyboardInterrupt:  # in-process callers (the console script routes signals instead)
        _interrupted(f"interrupted{resume_hint()}")
    except InputError as e:  # the library names its parameters; say which flag that is
        raise InputError({"samples": "--samples", "chunk_size": "--chunk-size", "resume": "--resume"}.get(e.field, e.field),
                         e.message) from None
    import jax

    if jax.process_index() != 0:
        return 0
    if fmt == "json":
        emit(to_json(res), output)
    else:
        emit(sweep_report(res), output)
    bad = res.get("not_converged", 0)
    if bad:
        print(f"warning: {bad:,} of {res['samples']:,} samples ({bad / res['samples']:.2g} of the total) did not "
              "converge; they are left out of the summaries", file=sys.stderr)
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
    approach: int = typer.Option(3, help="3: parametric Huber fit; 2: IsoFLOP parabolas"),
    bootstrap: int = typer.Option(0, help="bootstrap replicates (Approach 3)"),
    seed: int = typer.Option(0, help="seed of the bootstrap resampling"),
    n_col: str = typer.Option("params", help="column of parameter counts"),
    d_col: str = typer.Option("tokens", help="column of training tokens"),
    c_col: str = typer.Option("flops", help="column of compute (used when there is no tokens column)"),
    loss_col: str = typer.Option("loss", help="column of final losses"),
    drop_highest: int = typer.Option(0, help="drop the K highest losses"),
    loss_min: Optional[float] = typer.Option(None, help="keep runs with loss >= this"),
    loss_max: Optional[float] = typer.Option(None, help="keep runs with loss <= this"),
    delta: float = typer.Option(1e-3, help="Huber delta (Approach 3)"),
    tolerance: float = typer.Option(0.05, help="relative compute tolerance grouping runs into budgets (Approach 2)"),
    fmt: str = typer.Option("table", "--format", "-f", help="table | json"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="write the fitted law (JSON) here"),
):
    """Fit a scaling law to your own training runs (Approach 3 with bootstrap, or Approach 2)."""
    check_format(fmt, ("table", "json"))
    if approach not in (2, 3):
        raise InputError("--approach", f"must be 2 or 3, got {approach}")
    if not 0 <= bootstrap <= 10_000:
        raise InputError("--bootstrap", f"must be from 0 to 10000 replicates, got {bootstrap}")
    if not (delta > 0 and math.isfinite(delta)):
        raise InputError("--delta", f"must be a positive finite Huber delta, got {delta}")
    if not 0 < tolerance < 1:
        raise InputError("--tolerance", f"must be a relative tolerance in (0, 1), got {tolerance}")
    for flag, v in (("--loss-min", loss_min), ("--loss-max", loss_max)):
        if v is not None and not math.isfinite(v):
            raise InputError(flag, f"must be a finite loss, got {v}")
    if loss_min is not None and loss_max is not None and not loss_min < loss_max:
        raise InputError("--loss-max", f"must be greater than --loss-min ({loss_min:g}), got {loss_max:g}")
    if output is not None and not output.parent.is_dir():
        raise InputError("-o", f"directory {output.parent} does not exist")
    if output is not None and same_file(output, runs):
        raise InputError("-o", f"{output} is the RUNS file; write the law elsewhere")
    from . import fit as F

    data = F.read_runs(runs, n_col, d_col, c_col, loss_col, drop_highest, loss_min, loss_max)
    res = F.fit_approach3(data, delta, bootstrap, seed) if approach == 3 else F.fit_approach2(data, tolerance)
    res["source"] = str(runs)
    if output is not None:
        write_atomic(output, to_json(res))
    if fmt == "json":
        sys.stdout.write(to_json(res))
    else:
        if approach == 3:
            rec = {k: res[k] for k in ("E", "A", "B", "alpha", "beta", "objective", "rmse_log_loss", "n_runs", "converged")}
            if "bootstrap" in res:
                for k, v in res["bootstrap"]["ci95"].items():
                    rec[f"{k} 95% CI"] = f"[{v[0]:.4g}, {v[1]:.4g}]"
            text = record_table(rec, title=f"budgetopt fit — Approach 3 on {res['n_runs']} runs")
            a = res["beta"] / (res["alpha"] + res["beta"])
            text += f"compute-optimal N ∝ C^{a:.3f}; {res['method']}\n"
        else:
            rec = {k: res[k] for k in ("a", "b", "tokens_per_param_at_5.76e23", "n_runs")}
            text = record_table(rec, title=f"budgetopt fit — Approach 2 (IsoFLOP) on {len(res['budgets'])} budgets")
        for w in res.get("warnings", []):
            text += f"warning: {w}\n"
        sys.stdout.write(text)
        if output is not None:
            sys.stdout.write(f"wrote {output} (use it with `optimize --law-file` or a scenario's law.file)\n")
    return 0


@app.command()
def audit(
    model: Optional[list[str]] = typer.Option(None, help="catalog model id(s) (default: all); see the table"),
    params: Optional[str] = typer.Option(None, help="your model: parameters (with --tokens)"),
    tokens: Optional[str] = typer.Option(None, help="your model: training tokens (with --params)"),
    flops: Optional[str] = typer.Option(None, help="your model: training compute if not 6ND"),
    name: str = typer.Option("your model", help="label for --params/--tokens"),
    law: Optional[str] = typer.Option(None, help="law preset [default: hoffmann2022]"),
    law_params: Optional[str] = typer.Option(None, help="own parametric law: E=..,A=..,B=..,alpha=..,beta=.."),
    law_file: Optional[Path] = typer.Option(None, help="law file (JSON from `budgetopt fit`)"),
    ratio: Optional[float] = typer.Option(None, help="tokens per parameter for --law tokens-per-param"),
    near_multiplier: float = typer.Option(1.25, help="near-optimal if the optimal allocation needs >= 1/this of the compute"),
    near_ratio: float = typer.Option(2.0, help="allocation rules: near-optimal within this factor of the rule's D/N"),
    fmt: str = FMT,
    output: Optional[Path] = OUT,
):
    """Was a model compute-optimal? Audit the catalog (GPT-3, Chinchilla, Llama ...) or your own."""
    from . import audit as A
    from .laws import resolve_law

    check_format(fmt)
    _setup(None)
    spec = resolve_law(law, law_params, str(law_file) if law_file else None, ratio, default="hoffmann2022")
    if params is not None or tokens is not None:
        if params is None or tokens is None:
            raise InputError("--params" if params is None else "--tokens", "give both --params and --tokens")
        if model:
            raise InputError("--model", "give catalog models or --params/--tokens, not both")
        f = _num(flops, "--flops", "flops")
        if f is not None and not (f > 0 and math.isfinite(f)):
            raise InputError("--flops", f"must be a positive finite number, got {flops}")
        models = [A.Model("custom", name, _num(params, "--params"), _num(tokens, "--tokens"), f)]
    else:
        models = [A.get_model(m) for m in model] if model else list(A.catalog().values())
    rows = A.audit(models, spec, near_multiplier, near_ratio)
    rule = spec.kind == "rule"
    cols = ["name", "params", "tokens", "tokens_per_param", "flops", "optimal_params", "optimal_tokens"]
    cols += ["ratio_to_rule", "verdict"] if rule else ["loss", "loss_gap", "compute_multiplier", "verdict"]
    crit = (f"near-optimal: D/N within ×{near_ratio:g} of the rule's {float(spec.params.ratio):g}" if rule else
            f"near-optimal: the optimal allocation needs ≥ 1/{near_multiplier:g} of the compute for the same predicted loss; "
            "else under-trained (too many parameters, too few tokens) or over-trained (the reverse)")
    _print(rows, fmt, output, f"budgetopt audit — law {spec.name}: {spec.describe()}", columns=cols,
           notes=[crit, "compute: published figure where there is one, else 6ND; compute_multiplier = C / C needed for the same loss"])
    return 0


@app.command()
def plot(
    kind: str = typer.Argument(..., help="frontier | isoflop | loss-vs-compute | sweep"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="PNG or SVG file [default: KIND.png]"),
    law: Optional[list[str]] = typer.Option(None, help="law preset(s) [default: hoffmann2022 and besiroglu2024]"),
    law_file: Optional[Path] = typer.Option(None, help="a fitted law file (added to the laws)"),
    sweep_file: Optional[Path] = typer.Option(None, "--sweep", help="sweep JSON (`sweep -f json -o FILE`) for KIND sweep"),
    runs: Optional[Path] = typer.Option(None, help="runs CSV to overlay on the isoflop plot (params, tokens|flops, loss)"),
    min_flops: str = typer.Option("1e18", help="left end of the compute axis"),
    max_flops: str = typer.Option("1e27", help="right end of the compute axis"),
    width: float = typer.Option(0.0, help="figure width in inches [default: per kind]"),
    height: float = typer.Option(0.0, help="figure height in inches [default: per kind]"),
    dpi: int = typer.Option(100, help="PNG resolution"),
):
    """Draw the figures: frontier, isoflop, loss-vs-compute, sweep."""
    from . import plots as P
    from .laws import law_from_file, resolve_law

    if kind not in P.KINDS:
        raise InputError("KIND", f"unknown plot {kind!r}; allowed: {', '.join(P.KINDS)}")
    out = output or Path(f"{kind}.png")
    if out.suffix.lower() not in (".png", ".svg"):
        raise InputError("-o", f"unsupported figure type {out.suffix!r}; use .png or .svg")
    if not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise InputError("-o", f"directory {out.parent} does not exist")
    if not 10 <= dpi <= 1200:
        raise InputError("--dpi", f"must be from 10 to 1200, got {dpi}")
    if width < 0 or height < 0 or width > 100 or height > 100:
        raise InputError("--width", "width and height must be in (0, 100] inches")
    _setup(None)
    specs = [resolve_law(name) for name in (law or ["hoffmann2022", "besiroglu2024"])]
    if law_file is not None:
        specs.append(law_from_file(law_file))
    cmin, cmax = _num(min_flops, "--min-flops", "flops"), _num(max_flops, "--max-flops", "flops")
    if not 0 < cmin < cmax or not math.isfinite(cmax):
        raise InputError("--max-flops", f"need 0 < --min-flops < --max-flops, got {min_flops} and {max_flops}")
    size = {k: v for k, v in (("width", width), ("height", height)) if v}
    if kind == "frontier":
        fig = P.frontier(specs, cmin, cmax, **size)
    elif kind == "loss-vs-compute":
        fig = P.loss_vs_compute(specs, cmin, cmax, **size)
    elif kind == "isoflop":
        from .fit import read_runs

        fig = P.isoflop(specs[-1], runs=read_runs(runs) if runs else None, **size)
    else:
        if sweep_file is not None:
            res = load_json(sweep_file, "--sweep", "a sweep JSON output")
        else:  # a small built-in sweep, so `budgetopt plot sweep` works as is
            import dataclasses

            from . import scenario as scn
            from . import sweep as sw

            res = sw.run(dataclasses.replace(scn.example("h100-cluster"), candidates=32), samples=200_000)
        fig = P.sweep(res, **size)
    P.save(fig, out, dpi)
    print(f"wrote {out}", file=sys.stderr)
    return 0


@app.command()
def bench(
    samples: str = typer.Option("2e6", help="sweep samples per timed run"),
    problems: str = typer.Option("1048576", help="solver problems per timed run"),
    host_devices: Optional[int] = typer.Option(None, help="split a CPU host into this many devices [default: one per core]"),
    fmt: str = typer.Option("table", "--format", "-f", help="table | json"),
):
    """Quick speed check of this machine: sweep samples/s, solver problems/s, devices."""
    check_format(fmt, ("table", "json"))
    _host_devices(host_devices)
    n, m = parse_number(samples, "--samples"), parse_number(problems, "--problems")
    for v, f in ((n, "--samples"), (m, "--problems")):
        if v != int(v) or not 1024 <= v <= 1e10:
            raise InputError(f, f"must be a whole number from 1024 to 1e10, got {v:g}")
    _setup(False)
    from .bench import quick

    res = quick(int(n), int(m))
    if fmt == "json":
        sys.stdout.write(to_json(res))
    else:
        rec = {"backend": res["backend"], "devices": f"{len(res['devices'])} × {', '.join(res['device_kinds'])}",
               "parametric sweep (samples/s)": f"{res['sweep_samples_per_s']:.3g}",
               "data-constrained solver (problems/s)": f"{res['solver_problems_per_s']:.3g}", "jax": res["jax_version"]}
        sys.stdout.write(record_table(rec, title="budgetopt bench (float32, compile excluded; full suite: benchmarks/run.py)"))
    return 0


@app.command()
def merge(
    files: list[Path] = typer.Argument(..., help="sweep JSON outputs of --shard 0/n .. n-1/n"),
    fmt: str = typer.Option("json", "--format", "-f", help="json | table"),
    output: Optional[Path] = OUT,
):
    """Merge the shards of one sweep into the summary of the whole (exact)."""
    from . import sweep as sw

    check_format(fmt, ("table", "json"))
    if output is not None and any(same_file(output, f) for f in files):
        raise InputError("-o", f"{output} is one of the FILES being merged; write the merge elsewhere")
    results = [load_json(f, "FILES", "a sweep JSON output") for f in files]
    res = sw.merge_results(results, [str(f) for f in files])
    emit(to_json(res) if fmt == "json" else sweep_report(res), output)
    return 0


def main(argv: Optional[list[str]] = None) -> None:
    """Run one command (``budgetopt.__main__.main`` routes signals first, then calls this)."""
    app(args=argv, prog_name="budgetopt")


if __name__ == "__main__":
    main()
