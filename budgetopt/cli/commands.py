"""The typer CLI: every command reads its flags (``options``), calls one library function and
answers through one path (``respond``: the report in the chosen format, to stdout or ``-o``).
No maths and no validation here: the library checks its arguments and names them by their
parameter names (``errors.ParameterError``), which ``flag_of`` turns into the flag a user typed.

Every usage error or bad input ends as one line ``error: <field>: <what is allowed>`` on
stderr with exit code 2 — never a traceback, never a partial output file. The library loads
inside each command, so bad flags fail before JAX is imported.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from ..core.errors import InputError, ParameterError
from ..core.files import check_outputs, load_json, write_atomic
from ..core.interrupts import EXIT_INTERRUPTED, resume_hint, set_resume_hint
from ..core.units import parse_number
from .options import (
    Bootstrap,
    CCol,
    Days,
    DCol,
    DeviceCount,
    Dtype,
    Experts,
    FlagError,
    Flops,
    Fmt,
    Fp4Speedup,
    Fp8Speedup,
    Gpu,
    GridIntensity,
    HardwareFile,
    HostDevices,
    Hours,
    KvTokens,
    LawFile,
    LawParams,
    LawPreset,
    LossCol,
    MaxExperts,
    MaxParams,
    MaxTokens,
    MaxTotalParams,
    Mfu,
    NCol,
    Out,
    Params,
    Power,
    Price,
    Pue,
    Ratio,
    Seed,
    Tokens,
    UniqueTokens,
    Where,
    choice,
    number_argument,
    number_option,
)
from .report import audit_notes, emit, exit_code, notices, optimize_notes, render, to_json

EXIT_OK, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 2, 70  # 1 (no answer): report.exit_code

#: library parameter names a command takes under another name (arguments, short flags)
_NAMES = {"output": "-o", "runs": "RUNS", "results": "FILES", "kind": "KIND", "scenario": "SCENARIO",
          "sweep_file": "--sweep", "forecast_file": "--forecast", "ladder_file": "--ladder",
          "plan_file": "--plan", "backtest_file": "--backtest", "curves_file": "--curves"}
_COMMAND_NAMES = {"convert": {"flops": "VALUE"}, "fit": {"target": "--at"}, "ladder": {"target": "--at"},
                  "forecast": {"metric_col": "--metric"}, "plot": {"runs": "--runs"}, "curves": {"curves": "CURVES"}}


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
        except FlagError as e:  # a flag's value, read where typer reads it
            _fail(f"{e.error.field}: {e.error.message}")
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
            print(f"internal error: {type(e).__name__}: {e} (a bug in budgetopt; rerun with BUDGETOPT_DEBUG=1 for the "
                  "traceback, and please report it)", file=sys.stderr)
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


def _refuse(given: dict[str, Any], why) -> None:
    """Exit 2 on the first flag of ``given`` that was given (not None): it does not apply here;
    ``why`` says so (a string, or a function of the flag's parameter name)."""
    for name, v in given.items():
        if v is not None:
            raise ParameterError(name, why(name) if callable(why) else why)


def _no_effect(names: list[str], command: str, why: str) -> None:
    for name in names:
        print(f"note: {flag_of(name, command)} has no effect {why}", file=sys.stderr)


def respond(command: str, result: Any, fmt: str, output: Path | None, **table: Any) -> int:
    """The one way a command answers: its report in ``fmt`` to stdout, or atomically to
    ``output``; then its notices on stderr; the exit code (1: the answer is missing)."""
    emit(render(command, result, fmt, **table), output)
    for line in notices(command, result):
        print(line, file=sys.stderr)
    return exit_code(command, result)


app = typer.Typer(cls=_OneLineErrors, add_completion=False, no_args_is_help=True,
                  pretty_exceptions_enable=False,
                  help="Compute-optimal LLM pre-training budgets: how big a model, how many tokens, how sure.")

MaxEpochs = Annotated[float | None, number_option("--max-epochs", "plain", "cap on epochs over the unique tokens")]
InferenceTokens = Annotated[float | None, number_option("--inference-tokens", "count", "lifetime inference tokens; "
                                                           "the budget becomes lifetime FLOPs")]


@app.command("optimize")
def optimize_command(
    flops: Flops = None, gpu: Gpu = None, count: DeviceCount = None, hours: Hours = None, days: Days = None,
    mfu: Mfu = None, dtype: Dtype = None,
    law: LawPreset = None, law_params: LawParams = None, law_file: LawFile = None, ratio: Ratio = None,
    unique_tokens: UniqueTokens = None, max_params: MaxParams = None, max_tokens: MaxTokens = None,
    max_epochs: MaxEpochs = None, inference_tokens: InferenceTokens = None,
    target_loss: Annotated[float | None, number_option("--target-loss", "plain", "instead of a budget: the loss to "
                                                          "reach at least compute")] = None,
    price_per_hour: Price = None, pue: Pue = None, power_watts: Power = None, grid_intensity: GridIntensity = None,
    hardware_file: HardwareFile = None,
    x64: Annotated[bool | None, typer.Option("--x64/--x32", help="float64 / float32 \\[default: float64 on CPU, "
                                                "float32 on accelerators]")] = None,
    experts: Experts = None, max_experts: MaxExperts = None,
    granularity: Annotated[str | None, typer.Option(rich_help_panel="Mixture of experts",
                                                    help="granularity G = d_ff / d_expert (whole, >= 1) or auto: the "
                                                         "best of 1, 2, 4 .. 256; krajewski2024-moe "
                                                         "\\[default: auto]")] = None,
    max_total_params: MaxTotalParams = None, kv_tokens: KvTokens = None,
    precision: Annotated[str | None, typer.Option(rich_help_panel="Precision",
                                                  help="auto (the best), a format (bf16, fp8, fp4) or, with "
                                                       "kumar2024-precision, a number of bits")] = None,
    precision_penalty: Annotated[str | None, typer.Option(rich_help_panel="Precision",
                                                          help="a format's loss cost: empirical (published bounds: "
                                                               "FP8 0.25 %, NVFP4 +1.5 %) | law (kumar2024-precision) "
                                                               r"\[default: empirical]")] = None,
    precision_form: Annotated[str | None, typer.Option(rich_help_panel="Precision",
                                                       help="the precision law's form: offset (~7-8 bits "
                                                            r"compute-optimal) | main-text (~3.5 bits) \[default: "
                                                            "offset]")] = None,
    fp8_speedup: Fp8Speedup = None, fp4_speedup: Fp4Speedup = None,
    serve_precision: Annotated[float | None, number_option("--serve-precision", "plain", "bits the model is served "
                                                           "in (kumar2024-precision): minimise the loss after "
                                                           "quantisation, serving --inference-tokens in these bits",
                                                           panel="Precision")] = None,
    fmt: Fmt = "table", output: Out = None,
):
    """The compute-optimal model size and token count for a budget (with an MoE law: the expert count or granularity
    too, beside the dense answer; with --precision: the training precision too)."""
    from ..core import runtime
    from ..model.hardware import cluster_from
    from ..model.laws import is_moe, is_precision, resolve_law
    from ..plan.optimum import Constraints, optimize

    runtime.use_compile_cache()
    spec = resolve_law(law, law_params, law_file, ratio, moe=True, precision=True)
    cluster, unused = cluster_from(gpu, dtype=dtype, count=count, hours=hours, days=days, mfu=mfu,
                                   price_per_hour=price_per_hour, pue=pue, power_watts=power_watts,
                                   grid_intensity=grid_intensity, hardware_file=hardware_file)
    precision_flags = {"precision_penalty": precision_penalty, "precision_form": precision_form,
                       "fp8_speedup": fp8_speedup, "fp4_speedup": fp4_speedup, "serve_precision": serve_precision,
                       "inference_tokens": inference_tokens if is_precision(spec.params) else None}
    if precision is not None or is_precision(spec.params):
        return _optimize_precision(spec, cluster, unused, flops, precision, precision_flags, fmt, output, x64,
                                   {"unique_tokens": unique_tokens, "max_epochs": max_epochs,
                                    "inference_tokens": None if is_precision(spec.params) else inference_tokens,
                                    "target_loss": target_loss, "ratio": ratio,
                                    "experts": experts, "granularity": granularity, "max_experts": max_experts,
                                    "max_total_params": max_total_params, "kv_tokens": kv_tokens},
                                   Constraints(max_params=max_params, max_tokens=max_tokens), price_per_hour)
    _refuse(precision_flags, lambda name: "applies with --precision" + (" under kumar2024-precision"
                                                                        if name == "serve_precision" else ""))
    moe_flags = {"experts": experts, "granularity": granularity, "max_total_params": max_total_params,
                 "max_experts": max_experts, "kv_tokens": kv_tokens}
    if is_moe(spec.params):
        from ..plan.moe_optimum import optimize_moe
        from .report import moe_notes

        dense_only = {"unique_tokens": unique_tokens, "max_params": max_params, "max_tokens": max_tokens,
                      "max_epochs": max_epochs, "target_loss": target_loss, "ratio": ratio}
        _refuse(dense_only, lambda name: f"not supported with a mixture-of-experts law ({spec.name}) yet"
                + ("; its memory cap is --max-total-params" if name == "max_params" else ""))
        with runtime.precision("optimize", x64):
            rec = optimize_moe(spec, flops=flops, cluster=cluster,
                               experts=experts, granularity=granularity, max_experts=max_experts,
                               max_total_params=max_total_params, kv_tokens=kv_tokens,
                               inference_tokens=inference_tokens, price_per_hour=price_per_hour)
        _no_effect(unused, "optimize", "without --gpu")
        return respond("optimize", rec, fmt, output, notes=moe_notes(spec, rec))
    _refuse(moe_flags, f"needs a mixture-of-experts law (ludziejewski2025-moe: --experts; krajewski2024-moe: "
                       f"--granularity); {spec.name} is {spec.kind}")
    cons = Constraints(unique_tokens=unique_tokens, max_params=max_params, max_tokens=max_tokens, max_epochs=max_epochs,
                       inference_tokens=inference_tokens)
    with runtime.precision("optimize", x64):
        rec = optimize(spec, flops=flops, cluster=cluster, constraints=cons, target_loss=target_loss,
                       price_per_hour=price_per_hour)
    _no_effect(unused, "optimize", "without --gpu")
    return respond("optimize", rec, fmt, output, notes=optimize_notes(spec, rec))


def _optimize_precision(spec, cluster, unused, flops, precision, flags, fmt, output, x64, unsupported, cons, price):
    """`optimize --precision` (or with the precision law): the compute-optimal training precision
    under kumar2024-precision, or the best floating-point format on a device under a dense law."""
    from ..core import runtime
    from ..model.laws import is_precision
    from ..plan.precision_choice import choose_format, given_speedups, optimize_precision, parse_bits
    from .report import precision_notes

    _refuse(unsupported, "not supported with --precision yet")
    bits = parse_bits(precision)
    form = flags["precision_form"] or "offset"
    with runtime.precision("optimize", x64):
        if is_precision(spec.params):
            for name in ("precision_penalty", "fp8_speedup", "fp4_speedup"):
                if flags[name] is not None:
                    raise ParameterError(name, f"compares formats on a device under a dense law; {spec.name} prices "
                                         "precision by its cost model")
            if cons.max_params is not None or cons.d_max != float("inf"):
                raise ParameterError("max_params" if cons.max_params is not None else "max_tokens",
                                     "not supported with the precision law yet")
            rec = optimize_precision(spec, flops=flops, cluster=cluster, bits=bits or "auto", form=form,
                                     serve_bits=flags["serve_precision"], inference_tokens=flags["inference_tokens"])
        else:
            if cluster is None or cluster.hours is None or flops is not None:
                raise ParameterError("gpu", "--precision compares the formats a device has: give a booking ({gpu}, "
                                     "{count}, {days}) instead of {flops}", names=True)
            if not isinstance(bits, str):
                raise ParameterError("precision", f"a number of bits needs the precision law (kumar2024-precision); "
                                     f"with {spec.name}, give auto or a format")
            if flags["serve_precision"] is not None:
                raise ParameterError("serve_precision", "prices post-training quantisation by the precision law: give "
                                     "{law} kumar2024-precision", names=True)
            speedups = given_speedups(flags["fp8_speedup"], flags["fp4_speedup"])
            rec = choose_format(spec, cluster, precision=bits, penalty=flags["precision_penalty"] or "empirical",
                                speedups=speedups, form=form, constraints=cons, price_per_hour=price)
    _no_effect(unused, "optimize", "without --gpu")
    return respond("optimize", rec, fmt, output, notes=precision_notes(spec, rec))


@app.command("plan")
def plan_command(
    flops: Flops = None, params: Params = None, tokens: Tokens = None, gpu: Gpu = None, count: DeviceCount = None,
    hours: Hours = None, days: Days = None, mfu: Mfu = None, dtype: Dtype = None, law: LawPreset = None,
    law_params: LawParams = None, law_file: LawFile = None, unique_tokens: UniqueTokens = None,
    max_params: MaxParams = None, max_tokens: MaxTokens = None,
    n_layer: Annotated[int | None,
                       typer.Option(help="shape: layers \\[default: the llama-style shape nearest N]")] = None,
    d_model: Annotated[int | None, typer.Option(help="shape: hidden size")] = None,
    n_heads: Annotated[int | None, typer.Option(help="shape: attention heads \\[default: d_model / 128]")] = None,
    n_kv_heads: Annotated[int | None, typer.Option(help="shape: key/value heads (grouped-query attention) "
                                                      "\\[default: n_heads]")] = None,
    d_ff: Annotated[int | None, typer.Option(help="shape: FFN width \\[default: 8d/3 to a multiple of 256 (swiglu), "
                                                "4d (gelu)]")] = None,
    ffn: Annotated[str, typer.Option(help="swiglu | gelu")] = "swiglu",
    vocab: Annotated[int, typer.Option(help="vocabulary size")] = 32_000,
    untied: Annotated[bool, typer.Option("--untied/--tied", help="output head untied from the embeddings")] = True,
    seq_len: Annotated[int, typer.Option(help="training sequence length (context)")] = 4096,
    dp: Annotated[int | None,
                  typer.Option(help="data-parallel degree \\[default: --count / (tp x pp), else 1]")] = None,
    tp: Annotated[int, typer.Option(help="tensor-parallel degree")] = 1,
    pp: Annotated[int, typer.Option(help="pipeline-parallel degree")] = 1,
    zero: Annotated[int, typer.Option(help="ZeRO stage 0-3 (3 = FSDP)")] = 1,
    micro_batch: Annotated[int, typer.Option(help="sequences per device per micro-step")] = 1,
    recompute: Annotated[str, typer.Option(help="activation recomputation: none | full (the devices redo the forward "
                                           "pass: 4/3 the work, and time, at the same --mfu)")] = "none",
    flash: Annotated[bool,
                     typer.Option("--flash/--no-flash", help="flash attention (no stored attention scores)")] = True,
    reserve_gb: Annotated[float, typer.Option(help="device memory kept free for the framework and buffers (GB)")] = 4.0,
    flops_convention: Annotated[str, typer.Option(help="FLOPs per token for device time: "
                                                  "6n | kaplan | deepseek | chinchilla")] = "chinchilla",
    arch: Annotated[str | None, typer.Option(help="a released architecture: MoE (mixtral-8x7b, qwen3-235b-a22b, "
                                             "deepseek-v3, llama4-scout, llama4-maverick; loss under "
                                             "ludziejewski2025-moe) or dense (gpt-3, llama-3-8b, llama-3-70b, "
                                             "llama-3.1-405b)")] = None,
    precision: Annotated[str | None, typer.Option(help="training format: bf16 | fp8 | fp4 (time at its end-to-end "
                                                  "speed-up; memory as BF16 mixed precision) \\[default: "
                                                  "bf16]")] = None,
    fp8_speedup: Fp8Speedup = None, fp4_speedup: Fp4Speedup = None,
    ep: Annotated[int | None, typer.Option(help="expert-parallel degree of a routed model (--arch, or an MoE law): "
                                           "routed experts sharded over EP ranks taken from dp x tp "
                                           r"\[default: 1]")] = None,
    experts: Experts = None, max_experts: MaxExperts = None, max_total_params: MaxTotalParams = None,
    kv_tokens: KvTokens = None,
    batch_law: Annotated[str, typer.Option(help="batch size and learning rate: deepseek2024 | "
                                           "steplaw2025")] = "deepseek2024",
    price_per_hour: Price = None, pue: Pue = None, power_watts: Power = None, grid_intensity: GridIntensity = None,
    hardware_file: HardwareFile = None, fmt: Fmt = "table", output: Out = None,
):
    """What do we launch? A budget's model as a shape, its real FLOPs, memory per device, batch and learning rate,
    energy."""
    import dataclasses

    from ..core import runtime
    from ..model.hardware import cluster_from
    from ..model.laws import is_moe, resolve_law
    from ..model.memory import Layout
    from ..model.shape import shape_from
    from ..plan.launch import launch_plan
    from ..plan.optimum import Constraints

    runtime.use_compile_cache()
    if arch is not None:
        dense_only = {"params": params, "unique_tokens": unique_tokens, "max_params": max_params, "n_layer": n_layer,
                      "d_model": d_model, "n_heads": n_heads, "n_kv_heads": n_kv_heads, "d_ff": d_ff,
                      "ffn": None if ffn == "swiglu" else ffn, "vocab": None if vocab == 32_000 else vocab,
                      "untied": None if untied else False}
        _refuse(dense_only, "sets a dense model; --arch plans the released architecture's own shape")
    from ..model.moe_shape import MoEShape, architecture

    catalog_shape = architecture(arch)[0] if arch is not None else None
    routed = isinstance(catalog_shape, MoEShape)
    spec = resolve_law(law, law_params, law_file, default="ludziejewski2025-moe" if routed else "besiroglu2024",
                       moe=routed or arch is None)
    moe_optimum = arch is None and is_moe(spec.params)
    if ep is not None and not (routed or moe_optimum):
        raise ParameterError("ep", "applies to a routed model: give --arch with a mixture of experts (e.g. "
                             "deepseek-v3) or an MoE law (--law ludziejewski2025-moe)")
    if not moe_optimum:
        _refuse({"experts": experts, "max_experts": max_experts, "max_total_params": max_total_params,
                 "kv_tokens": kv_tokens},
                "--arch fixes the routed shape" if routed else "applies to an MoE optimum: plan --law "
                "ludziejewski2025-moe")
    cluster, unused = cluster_from(gpu, dtype=dtype, count=count, hours=hours, days=days, mfu=mfu,
                                   price_per_hour=price_per_hour, pue=pue, power_watts=power_watts,
                                   grid_intensity=grid_intensity, hardware_file=hardware_file)
    if moe_optimum:
        from ..plan.launch import moe_optimum_plan

        _refuse({"params": params, "tokens": tokens, "unique_tokens": unique_tokens, "max_params": max_params,
                 "n_layer": n_layer, "d_model": d_model, "n_heads": n_heads, "n_kv_heads": n_kv_heads, "d_ff": d_ff,
                 "ffn": None if ffn == "swiglu" else ffn, "untied": None if untied else False,
                 "precision": precision, "fp8_speedup": fp8_speedup, "fp4_speedup": fp4_speedup},
                lambda name: f"not supported when planning {spec.name}'s optimum: it shapes the law's own family "
                "(d_model = 64 layers, top-1 SwiGLU experts)" + ("; its memory cap is --max-total-params"
                                                                 if name == "max_params" else ""))
        layout = Layout(dp=1 if dp is None else dp, tp=tp, pp=pp, zero=zero, micro_batch=micro_batch,
                        recompute=recompute, flash=flash, ep=1 if ep is None else ep)
        with runtime.precision("plan"):
            rec = moe_optimum_plan(spec, flops=flops, cluster=cluster, experts=experts, max_experts=max_experts,
                                   max_total_params=max_total_params, kv_tokens=kv_tokens, seq_len=seq_len,
                                   vocab=vocab, layout=layout, convention=flops_convention, batch_law=batch_law,
                                   reserve_gb=reserve_gb, max_tokens=max_tokens, price_per_hour=price_per_hour)
        _no_effect(unused, "plan", "without --gpu")
        return respond("plan", rec, fmt, output)
    if routed:
        from ..plan.launch import moe_launch_plan

        layout = Layout(dp=1 if dp is None else dp, tp=tp, pp=pp, zero=zero, micro_batch=micro_batch,
                        recompute=recompute, flash=flash, ep=1 if ep is None else ep)
        with runtime.precision("plan"):
            rec = moe_launch_plan(arch, spec, flops=flops, cluster=cluster, tokens=tokens, seq_len=seq_len,
                                  layout=layout, convention=flops_convention, batch_law=batch_law,
                                  reserve_gb=reserve_gb, max_tokens=max_tokens, price_per_hour=price_per_hour)
        _no_effect(unused, "plan", "without --gpu")
        return respond("plan", rec, fmt, output)
    shape = (dataclasses.replace(catalog_shape, seq_len=seq_len) if catalog_shape is not None else
             shape_from(n_layer, d_model, n_heads, n_kv_heads=n_kv_heads, d_ff=d_ff, ffn=ffn, vocab=vocab,
                        tied=not untied, seq_len=seq_len))
    layout = Layout(dp=1 if dp is None else dp, tp=tp, pp=pp, zero=zero, micro_batch=micro_batch,
                    recompute=recompute, flash=flash)
    if dp is not None and cluster is not None and cluster.count is not None and layout.devices != cluster.count:
        raise ParameterError("dp", f"dp x tp x pp = {dp} x {tp} x {pp} = {layout.devices} devices, but the booking "
                             f"has {cluster.count:g} (--count); omit --dp to use {{count}} / (tp x pp)", names=True)
    cons = Constraints(unique_tokens=unique_tokens, max_params=max_params, max_tokens=max_tokens)
    fmt_given = None
    if precision is not None:
        from ..plan.precision_choice import given_speedups, training_format

        if cluster is not None and cluster.dtype != "bf16":
            raise ParameterError("dtype", "sets the peak; --precision sets the training format (its speed-up over "
                                 "the bf16 booking): give one", names=True)
        fmt_given = training_format(precision, cluster, given_speedups(fp8_speedup, fp4_speedup))
    else:
        _refuse({"fp8_speedup": fp8_speedup, "fp4_speedup": fp4_speedup}, "applies with --precision")
    if catalog_shape is not None and tokens is not None:  # a catalogued dense model on the tokens given
        params = float(shape.params()["total"])
    with runtime.precision("plan"):
        rec = launch_plan(spec, flops=flops, cluster=cluster, constraints=cons, params=params, tokens=tokens,
                          shape=shape, seq_len=seq_len, vocab=vocab, ffn=ffn, tied=not untied, n_kv_heads=n_kv_heads,
                          layout=layout,
                          convention=flops_convention, batch_law=batch_law, reserve_gb=reserve_gb,
                          price_per_hour=price_per_hour, precision=fmt_given)
    if catalog_shape is not None:
        rec = {"law": rec["law"], "arch": arch, "source": architecture(arch)[1]["source"], **rec}
    _no_effect(unused, "plan", "without --gpu")
    return respond("plan", rec, fmt, output)


@app.command("convert")
def convert_command(
    value: Annotated[float | None, number_argument("VALUE", "flops", "compute: FLOPs (3.14e23) or PF-days "
                                                      "(3.6e3pfd)")] = None,
    params: Params = None, tokens: Tokens = None,
    flops_per_param_token: Annotated[float, typer.Option(help="6 for a dense decoder; 3 for an encoder-decoder with "
                                                         "half its weights active")] = 6.0,
    to: Annotated[str | None, typer.Option(help="print only this quantity: flops | pf-days | gpu-hours | wall-days | "
                                              "cost")] = None,
    gpu: Gpu = None, count: DeviceCount = None, mfu: Mfu = None, dtype: Dtype = None, price_per_hour: Price = None,
    hardware_file: HardwareFile = None, fmt: Fmt = "table", output: Out = None,
):
    """Convert compute between FLOPs, PF-days, GPU-hours and wall-days."""
    from ..model.hardware import cluster_from
    from ..plan.optimum import convert

    cluster, unused = cluster_from(gpu, dtype=dtype, count=count, mfu=mfu, price_per_hour=price_per_hour,
                                   hardware_file=hardware_file)
    rec = convert(value, params=params, tokens=tokens, flops_per_param_token=flops_per_param_token, cluster=cluster,
                  price_per_hour=price_per_hour, to=to)
    _no_effect(unused, "convert", "without --gpu")
    return respond("convert", rec, fmt, output)


@app.command("hardware")
def hardware_command(hardware_file: HardwareFile = None, fmt: Fmt = "table", output: Out = None):
    """List the accelerator catalog: dense peak TFLOP/s per dtype, memory, bandwidth, source."""
    from ..model.hardware import DTYPES, catalog_rows

    rows = catalog_rows(hardware_file)
    cols = ["id"] + [f"{d}_tflops" for d in DTYPES] + ["memory_gb", "bandwidth_tbs", "tdp_w", "name"]
    return respond("hardware", rows, fmt, output, title="Accelerators (dense peak TFLOP/s per device)", columns=cols,
                   notes=["- = dtype not supported; sources: `budgetopt hardware --format json`"],
                   optional=["name", "tf32_tflops", "fp32_tflops", "bandwidth_tbs", "tdp_w"])


@app.command("laws")
def laws_command(fmt: Fmt = "table", output: Out = None):
    """List the scaling-law presets with their formulas and sources."""
    from ..model.laws import preset_rows

    return respond("laws", preset_rows(), fmt, output, title="Scaling laws (a, b: N_opt ∝ C^a, D_opt ∝ C^b)",
                   columns=["name", "kind", "formula", "a", "b", "uncertainty", "source"],
                   optional=["a", "source", "uncertainty", "b"])


@app.command("sweep")
def sweep_command(
    scenario: Annotated[Path | None, typer.Argument(help="scenario TOML file (see README)")] = None,
    example: Annotated[str | None, typer.Option(help="run a built-in scenario: h100-cluster | bloomberggpt | "
                                                   "serving")] = None,
    samples: Annotated[float | None, number_option("--samples", "count", "number of samples (overrides the "
                                                      "file)")] = None,
    seed: Annotated[int | None, typer.Option(help="random seed (overrides the file)")] = None,
    chunk_size: Annotated[float | None, number_option("--chunk-size", "count", "samples per compiled chunk; results "
                                                         "do not depend on it \\[default: 65536 per CPU device, 2^22 "
                                                         "per accelerator]")] = None,
    candidates: Annotated[int | None, typer.Option(help="candidate sizes in the robust grid (0 = no "
                                                      "recommendation)")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="write the merged state here after every chunk")] = None,
    resume: Annotated[bool, typer.Option(help="continue from --checkpoint")] = False,
    shard: Annotated[str | None, typer.Option(help="run only shard i of n (i/n); combine with `budgetopt "
                                                 "merge`")] = None,
    distributed: Annotated[bool, typer.Option(help="join a multi-process run (jax.distributed; Slurm/MPI "
                                              "auto-detected)")] = False,
    coordinator: Annotated[str | None, typer.Option(help="host:port of process 0, with --distributed")] = None,
    num_processes: Annotated[int | None, typer.Option(help="with --distributed and --coordinator")] = None,
    process_id: Annotated[int | None, typer.Option(help="with --distributed and --coordinator")] = None,
    host_devices: HostDevices = None,
    law: Annotated[str | None, typer.Option(help="without a scenario: the law preset \\[default: besiroglu2024]",
                                            rich_help_panel="Without a scenario file")] = None,
    law_file: Annotated[Path | None, typer.Option(help="without a scenario: a fitted law file",
                                                  rich_help_panel="Without a scenario file")] = None,
    uncertainty: Annotated[str | None, typer.Option(help="none | covariance | bootstrap \\[default: what the law "
                                                    "carries]", rich_help_panel="Without a scenario file")] = None,
    flops: Annotated[str | None, typer.Option(help="budget in FLOPs, or a range LO:HI (log-uniform)",
                                              rich_help_panel="Without a scenario file")] = None,
    gpu: Annotated[str | None, typer.Option(help="accelerator id (see `budgetopt hardware`)",
                                            rich_help_panel="Without a scenario file")] = None,
    dtype: Annotated[str | None, typer.Option(help="fp32 | tf32 | bf16 | fp16 | fp8 \\[default: bf16]",
                                              rich_help_panel="Without a scenario file")] = None,
    count: Annotated[str | None, typer.Option(help="devices, or a range LO:HI (uniform; draws rounded)",
                                              rich_help_panel="Without a scenario file")] = None,
    hours: Annotated[str | None, typer.Option(help="wall-clock hours, or a range LO:HI (uniform)",
                                              rich_help_panel="Without a scenario file")] = None,
    days: Annotated[str | None, typer.Option(help="wall-clock days, or a range LO:HI (uniform)",
                                             rich_help_panel="Without a scenario file")] = None,
    mfu: Annotated[str | None, typer.Option(help="model-FLOPs utilisation, or a range LO:HI (uniform)",
                                            rich_help_panel="Without a scenario file")] = None,
    unique_tokens: Annotated[str | None, typer.Option(help="unique tokens, or a range LO:HI (log-uniform)",
                                                      rich_help_panel="Without a scenario file")] = None,
    x64: Annotated[bool, typer.Option("--x64", help="compute in float64 (default float32)")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
    hardware_file: HardwareFile = None, fmt: Fmt = "table", output: Out = None,
):
    """Monte Carlo over everything uncertain: distributions of the optimum, and a robust N."""
    from ..core import runtime

    check_outputs({"output": output, "checkpoint": checkpoint}, {"scenario": scenario})
    runtime.check_distributed(distributed, coordinator, num_processes, process_id)
    if distributed:
        runtime.start_distributed(coordinator, num_processes, process_id)
    else:
        runtime.split_host(host_devices)
    runtime.use_compile_cache()
    import jax

    from ..sweep import scenario as scn
    from ..sweep.driver import parse_shard, run

    flags = {"law": law, "law_file": law_file, "uncertainty": uncertainty, "flops": flops, "gpu": gpu, "dtype": dtype,
             "count": count, "hours": hours, "days": days, "mfu": mfu, "unique_tokens": unique_tokens}
    given = [k for k, v in flags.items() if v is not None]
    if given and (scenario is not None or example is not None):
        raise ParameterError(given[0], "describes a sweep without a scenario; give a scenario (file or {example}) or "
                             "these flags, not both", names=True)
    base = scn.from_flags(hardware_file, **flags) if given else scn.resolve(scenario, example, hardware_file)
    sc = scn.with_overrides(base, seed=seed, candidates=candidates)
    shard_of = parse_shard(shard)
    progress = _Progress(quiet)
    set_resume_hint(f"; resume with --checkpoint {checkpoint} --resume" if checkpoint
                    else "; use --checkpoint to make runs resumable")
    try:
        with progress as tick:
            res = run(sc, samples=samples, chunk_size=chunk_size, x64=x64, checkpoint=checkpoint, resume=resume,
                      shard=shard_of, progress=tick)
    except KeyboardInterrupt:  # in-process callers (the console script routes signals instead)
        _interrupted(f"interrupted{resume_hint()}")
    if jax.process_index() != 0:
        return EXIT_OK
    return respond("sweep", res, fmt, output)


class _Progress:
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


@app.command("fit")
def fit_command(
    runs: Annotated[Path, typer.Argument(help="CSV of training runs: params, tokens (or flops), loss")],
    approach: Annotated[str | None, typer.Option(help="3: parametric Huber fit; 2: IsoFLOP parabolas; vpnls: "
                                                 "variable projection; all: the three side by side \\[default: "
                                                 "3]")] = None,
    form: Annotated[str, typer.Option(help="the law's form: chinchilla (--approach's fits), gadre2024, "
                                      "krajewski2024-moe, ludziejewski2025-moe, clark2022-routing")] = "chinchilla",
    e_col: Annotated[str, typer.Option("--e-col", help="column of expert counts (MoE forms)")] = "experts",
    g_col: Annotated[str, typer.Option("--g-col", help="column of granularities (krajewski2024-moe)")] = "granularity",
    baseline_group: Annotated[str | None, typer.Option(help="with --group: the group whose runs join every other "
                                                       "(e.g. Dense: the dense runs as E = 1 in each router's "
                                                       "fit)")] = None,
    last: Annotated[str | None, typer.Option(help="RUN,STEP: keep each run's row with the largest STEP (a file "
                                             "of loss curves -> final losses)")] = None,
    bootstrap: Bootstrap = 0, seed: Seed = 0, n_col: NCol = "params", d_col: DCol = "tokens", c_col: CCol = None,
    loss_col: LossCol = "loss",
    drop_highest: Annotated[int, typer.Option(help="drop the K highest losses")] = 0,
    loss_min: Annotated[float | None, typer.Option(help="keep runs with loss >= this")] = None,
    loss_max: Annotated[float | None, typer.Option(help="keep runs with loss <= this")] = None,
    delta: Annotated[float, typer.Option(help="Huber delta (Approach 3)")] = 1e-3,
    tolerance: Annotated[float, typer.Option(help="relative compute tolerance grouping runs into budgets "
                                             "(Approach 2)")] = 0.05,
    group: Annotated[str | None, typer.Option(help="fit each group of rows: COL or COL,COL (e.g. "
                                                 "experiment)")] = None,
    where: Where = None,
    at: Annotated[float | None, number_option("--at", "flops", "compare the allocations at this budget (FLOPs) "
                                                 "\\[default: 5.76e23]")] = None,
    outlier_k: Annotated[float, typer.Option(help="flag runs whose residual is over K robust SDs (1.4826 MAD) from "
                                             "the median")] = 5.0,
    exclude_outliers: Annotated[bool,
                                typer.Option("--exclude-outliers", help="refit without the flagged runs")] = False,
    law_out: Annotated[Path | None, typer.Option("--law-out", help="also write the fitted law here (JSON, for "
                                                    "`--law-file` and a scenario's law.file)")] = None,
    backtest: Annotated[bool, typer.Option("--backtest", help="fit on the budgets up to each cut-off and forecast "
                                           "every higher budget: the error in N* and the runs' losses against the "
                                           "decades extrapolated")] = False,
    fmt: Fmt = "table", output: Out = None,
):
    """Fit scaling laws to your own runs: Approach 3, Approach 2, VPNLS or all three, per group."""
    from ..fit.fitting import check_law_output, check_law_usable, fit_file, fit_form_file, fit_groups
    from ..fit.runs import parse_group, parse_last, parse_where

    check_outputs({"output": output, "law_out": law_out}, {"runs": runs})
    columns = parse_group(group)
    if form != "chinchilla":
        given = {"approach": approach, "c_col": c_col, "at": at, "drop_highest": drop_highest or None,
                 "loss_min": loss_min, "loss_max": loss_max, "exclude_outliers": exclude_outliers or None,
                 "tolerance": None if tolerance == 0.05 else tolerance, "outlier_k": None if outlier_k == 5.0 else 1,
                 "backtest": backtest or None}
        _refuse(given, f"applies to the chinchilla form (--approach's fits), not --form {form}")
        from ..fit.forms import FORM_NAMES, FORMS, law_mapping

        if form not in FORMS:
            raise ParameterError("form", f"unknown form {form!r}; known: {', '.join(FORM_NAMES)}")
        if law_out is not None and (columns or FORMS[form].law_kind is None):
            raise ParameterError("law_out", f"writes one fitted law: give it without {{group}}, for a form with a "
                                 f"token count ({form} {'has none' if FORMS[form].law_kind is None else 'has one'})",
                                 names=True)
        res = fit_form_file(runs, form, columns={"n": n_col, "d": d_col, "e": e_col, "g": g_col}, loss_col=loss_col,
                            group=columns, where=parse_where(where or []), baseline=baseline_group,
                            last=parse_last(last), delta=delta, bootstrap=bootstrap, seed=seed)
        if law_out is not None:
            write_atomic(law_out, to_json({**res, **law_mapping(res)}), "law_out")
            print(f"wrote {law_out} (use it with `optimize --law-file`)", file=sys.stderr)
        return respond("fit", res, fmt, output)
    _refuse({"baseline_group": baseline_group, "last": last},
            "applies with --form (gadre2024, the MoE forms, clark2022-routing)")
    approach = "3" if approach is None else approach
    if backtest:
        from ..fit.backtest import backtest_file

        given = {"law_out": law_out, "bootstrap": bootstrap or None, "at": at, "drop_highest": drop_highest or None,
                 "loss_min": loss_min, "loss_max": loss_max, "exclude_outliers": exclude_outliers or None,
                 "outlier_k": None if outlier_k == 5.0 else outlier_k}
        _refuse(given, "does not apply with --backtest (it fits every truncation of the ladder with the "
                       "approach's defaults)")
        res = backtest_file(runs, approach=approach, group=columns, n_col=n_col, d_col=d_col, c_col=c_col,
                            loss_col=loss_col, where=parse_where(where or []), delta=delta, seed=seed,
                            tolerance=tolerance)
        return respond("fit", res, fmt, output)
    check_law_output(law_out, approach, bool(columns))
    kw = dict(approach=approach, bootstrap=bootstrap, seed=seed, n_col=n_col, d_col=d_col, c_col=c_col,
              loss_col=loss_col, drop_highest=drop_highest, loss_min=loss_min, loss_max=loss_max, delta=delta,
              tolerance=tolerance, where=parse_where(where or []), target=at, outlier_k=outlier_k,
              exclude_outliers=exclude_outliers)
    res = fit_groups(runs, columns, **kw) if columns else fit_file(runs, **kw)
    if law_out is not None:
        check_law_usable(res)
        write_atomic(law_out, to_json(res), "law_out")
        print(f"wrote {law_out} (use it with `optimize --law-file` or a scenario's law.file)", file=sys.stderr)
    return respond("fit", res, fmt, output)


@app.command("forecast")
def forecast_command(
    runs: Annotated[Path | None, typer.Argument(help="CSV of runs with a metric column (omit to use a preset's "
                                                   "published link)")] = None,
    metric: Annotated[str | None, typer.Option(help="the metric column (e.g. an average accuracy or error)")] = None,
    link: Annotated[str, typer.Option(help="exp: err = eps - k exp(-gamma L) (Gadre et al.); sigmoid: "
                                      "a/(1+exp(-k(L-l0)))+b")] = "exp",
    params: Params = None, tokens: Tokens = None,
    flops: Annotated[float | None, number_option("--flops", "flops", "target: the compute-optimal run of this "
                                                    "budget")] = None,
    law: Annotated[str | None, typer.Option(help="a parametric preset for step 1 \\[default: the law fitted to the "
                                               "runs]")] = None,
    bootstrap: Annotated[int, typer.Option(help="bootstrap replicates: both steps refitted per replicate")] = 200,
    seed: Seed = 0,
    level: Annotated[float, typer.Option(help="interval level")] = 0.9,
    n_col: NCol = "params", d_col: DCol = "tokens",
    c_col: Annotated[str | None, typer.Option(help="column of compute (tokens = C/6N without a tokens column) "
                                              "\\[default: flops, when the file has it]")] = None,
    loss_col: LossCol = "loss", where: Where = None, fmt: Fmt = "table", output: Out = None,
):
    """Forecast a downstream metric of a target run: compute -> loss -> metric, with an interval."""
    from ..fit.forecast import forecast_metric
    from ..fit.runs import parse_where
    from ..model.laws import resolve_law

    check_outputs({"output": output}, {"runs": runs} if runs is not None else {})
    res = forecast_metric(runs, metric, law=resolve_law(law) if law is not None else None, params=params, tokens=tokens,
                          flops=flops, link=link, n_col=n_col, d_col=d_col, c_col=c_col, loss_col=loss_col,
                          where=parse_where(where or []), bootstrap=bootstrap, seed=seed, level=level)
    return respond("forecast", res, fmt, output)


@app.command("curves")
def curves_command(
    curves: Annotated[list[Path], typer.Argument(help="CSV files of loss curves: step, lr, loss (one run per file, "
                                                  "or a --run-col)")],
    form: Annotated[str, typer.Option(help="the curve law: multipower (Luo et al. 2025) or annealing (Tissue et al. "
                                      "2024)")] = "multipower",
    schedule: Annotated[list[str] | None, typer.Option("--schedule", help="RUN=SPEC: a run's schedule, e.g. "
                                                       "cosine:steps=24000,lr=3e-4,final=3e-5,warmup=2160 (kinds: "
                                                       "constant, cosine, wsd, two-stage); without it the logged lr "
                                                       "is interpolated (repeatable)")] = None,
    warmup: Annotated[int | None, typer.Option(help="linear warmup steps of runs without --schedule \\[default: up "
                                               "to the first logged step]")] = None,
    holdout: Annotated[list[Path] | None, typer.Option("--holdout", help="curves not fitted: predicted from their "
                                                       "schedules and scored (repeatable)")] = None,
    predict: Annotated[list[str] | None, typer.Option("--predict", help="[NAME=]SPEC: a schedule to predict "
                                                      "(repeatable; several are compared)")] = None,
    run_col: Annotated[str | None, typer.Option(help="column naming each row's run (several runs per file)")] = None,
    size_col: Annotated[str | None, typer.Option(help="column of each run's model size: one fit per size")] = None,
    by_folder: Annotated[bool, typer.Option("--by-folder", help="one fit per folder of the files (a folder per "
                                            "model size)")] = False,
    step_col: Annotated[str, typer.Option(help="column of optimizer steps")] = "step",
    lr_col: Annotated[str, typer.Option(help="column of logged learning rates")] = "lr",
    loss_col: Annotated[str, typer.Option(help="column of losses")] = "loss",
    bootstrap: Annotated[int, typer.Option(help="moving-block bootstrap replicates (the fit's own interval)")] = 0,
    seed: Seed = 0,
    level: Annotated[float, typer.Option(help="interval level")] = 0.9,
    delta: Annotated[float, typer.Option(help="Huber delta on log loss")] = 1e-3,
    model_error: Annotated[str, typer.Option(parser=choice("--model-error", ("calibrated", "none"), "model error"),
                                             help="calibrated: widen predictions by the law's measured error on "
                                             "held-out schedules; none: the fit's interval only")] = "calibrated",
    points_out: Annotated[Path | None, typer.Option("--points-out", help="also write final-loss points (params, "
                                                    "tokens, loss) for `budgetopt fit`: every curve that ends "
                                                    "decayed and every --predict")] = None,
    params: Annotated[list[str] | None, typer.Option("--params", help="with --points-out: the model's parameters, "
                                                     "N or SIZE=N per size (repeatable)")] = None,
    tokens_per_step: Annotated[float | None, number_option("--tokens-per-step", "count", "with --points-out: "
                                                           "tokens per optimizer step (batch x sequence)")] = None,
    fmt: Fmt = "table", output: Out = None,
):
    """Fit a loss-curve law to your runs' curves and predict other schedules' final losses."""
    from ..curves.curve_files import named_spec, parse_schedule_flags, read_curve_files
    from ..curves.curve_predict import check_fit_options, check_tokens_per_step, curves_result
    from ..curves.schedules import parse_schedule

    check_outputs({"output": output, "points_out": points_out},
                  {"curves": list(curves), "holdout": list(holdout or [])})
    sizes = _size_values(params or [], "params")
    if points_out is not None and (not sizes or tokens_per_step is None):
        raise ParameterError("points_out", "needs {params} and {tokens_per_step} (D = steps x tokens per step)",
                             names=True)
    _refuse({"params": params, "tokens_per_step": tokens_per_step} if points_out is None else {},
            "applies with --points-out")
    if tokens_per_step is not None:
        check_tokens_per_step(tokens_per_step)
    check_fit_options(bootstrap, level, delta)
    if size_col and by_folder:
        raise ParameterError("by_folder", "give {size_col} or {by_folder}, not both", names=True)
    specs = parse_schedule_flags(schedule or [])
    preds = []
    for item in predict or []:
        name, spec = named_spec(item)
        sched = parse_schedule(spec, "predict")
        preds.append((name or sched.text, sched))
    everything = read_curve_files(curves, holdout=holdout or [], schedules=specs, step_col=step_col, lr_col=lr_col,
                                  loss_col=loss_col, run_col=run_col, size_col=size_col, by_folder=by_folder,
                                  warmup=warmup)
    held = {str(p) for p in holdout or []}
    res = curves_result([c for c in everything if c.path not in held], form=form,
                        holdout=[c for c in everything if c.path in held], predict=preds, bootstrap=bootstrap,
                        seed=seed, level=level, delta=delta, model_error=model_error == "calibrated")
    if points_out is not None:
        from ..curves.curve_predict import ladder_points, points_csv

        points = ladder_points(res, sizes, tokens_per_step)
        write_atomic(points_out, points_csv(points), "points_out")
        print(f"wrote {len(points)} final-loss points to {points_out} (use it with `budgetopt fit`)", file=sys.stderr)
    return respond("curves", res, fmt, output)


def _size_values(items: list[str], field: str) -> dict[str | None, float]:
    """``N`` or ``SIZE=N`` items -> {size or None: N}."""
    out: dict[str | None, float] = {}
    for item in items:
        size, eq, value = item.rpartition("=")
        key = size.strip() if eq else None
        if key in out:
            raise ParameterError(field, f"{key or 'a bare N'!r} given twice")
        out[key] = parse_number(value, flag_of(field))
        if not out[key] > 0 or not math.isfinite(out[key]):
            raise ParameterError(field, f"must be a positive count, got {value!r}")
    return out


@app.command("ladder")
def ladder_command(
    at: Annotated[float, number_option("--at", "flops", "the target run's budget in FLOPs or PF-days: the ladder "
                                       "forecasts its N*")] = 1e24,
    designs: Annotated[Path | None, typer.Option(help="designs TOML (\\[\\[design]] tables) \\[default: the built-in "
                                                    "family of 24]")] = None,
    law: LawPreset = None, law_params: LawParams = None, law_file: LawFile = None,
    prior: Annotated[str | None, typer.Option(help="true laws drawn from the law's: covariance | bootstrap | none "
                                                 "\\[default: its covariance, else its bootstrap draws, else "
                                                 "none]")] = None,
    noise: Annotated[float | None, typer.Option(help="loss noise per run, sd of log loss \\[default: the law file's "
                                                   "rmse_log_loss, else 0.005]")] = None,
    curve_sigma: Annotated[float, typer.Option(help="sd of a log-loss offset shared by each budget's runs")] = 0.0,
    bias_per_decade: Annotated[float, typer.Option(help="log loss added per decade a budget lies below --at "
                                                   "(under-tuned small runs)")] = 0.0,
    approach: Annotated[str, typer.Option(help="how each simulated ladder is fitted: vpnls | 3 | 2")] = "vpnls",
    wsd: Annotated[float | None, typer.Option(help="add each design's WSD twin: one constant-LR trunk per size, "
                                              "branches whose last FRACTION of tokens decays (0.2: Hägele et al. "
                                              "2024)", metavar="FRACTION")] = None,
    wsd_noise: Annotated[float | None, typer.Option(help="sd of log loss added to each WSD point \\[default: the "
                                                    "curve law's held-out final-loss error, 0.0034]")] = None,
    model_error: Annotated[str, typer.Option(help="the forecast's error growing with the decades extrapolated: "
                                             "calibrated (backtests of real ladders, per approach) | none | a "
                                             "TOML file")] = "calibrated",
    ladders: Annotated[float, number_option("--ladders", "count", "simulated ladders per design")] = 1000,
    seed: Annotated[int, typer.Option(help="seed: ladder i draws the same law and noise for every design")] = 0,
    max_regret: Annotated[float | None, number_option("--max-regret", "plain", "recommend the cheapest design whose "
                                                         "p95 regret is at most this (nats)")] = None,
    ladder_budget: Annotated[float | None, number_option("--ladder-budget", "flops", "recommend the best design "
                                                            "costing at most this (FLOPs or PF-days)")] = None,
    gpu: Gpu = None, dtype: Dtype = None, mfu: Mfu = None, hardware_file: HardwareFile = None,
    host_devices: HostDevices = None,
    chunk: Annotated[int | None, typer.Option(help="(design, ladder) pairs per compiled call \\[default: 128 per "
                                                 "device]")] = None,
    fmt: Fmt = "table", output: Out = None,
):
    """Which ladder of small runs should we train? Simulate each design's forecast of N* at --at."""
    from ..core import runtime

    check_outputs({"output": output},
                  {k: v for k, v in (("designs", designs), ("law_file", law_file)) if v is not None})
    runtime.split_host(host_devices)
    runtime.use_compile_cache()
    from ..fit.ladder import Noise, design_ladders, model_error_noise, read_designs
    from ..model.hardware import cluster_from
    from ..model.laws import resolve_law

    spec = resolve_law(law, law_params, law_file)
    cluster, unused = cluster_from(gpu, dtype=dtype, mfu=mfu, hardware_file=hardware_file)
    _no_effect(unused, "ladder", "without --gpu")
    chosen = read_designs(designs) if designs is not None else None
    if wsd_noise is not None and wsd is None and not any(d.schedule == "wsd" for d in chosen or ()):
        _no_effect(["wsd_noise"], "ladder", "without WSD designs (--wsd, or schedule = \"wsd\" in --designs)")
    noise_model = model_error_noise(Noise(noise, curve_sigma, bias_per_decade, wsd_sigma=wsd_noise), model_error,
                                    approach)
    with runtime.precision("ladder"):
        res = design_ladders(spec, at, chosen, prior=prior, noise=noise_model,
                             approach=approach, ladders=ladders, seed=seed, max_regret=max_regret,
                             ladder_budget=ladder_budget, cluster=cluster, chunk=chunk, wsd=wsd)
    return respond("ladder", res, fmt, output)


@app.command("audit")
def audit_command(
    model: Annotated[list[str] | None, typer.Option(help="catalog model id(s) (default: all); see the table")] = None,
    params: Params = None, tokens: Tokens = None,
    flops: Annotated[float | None, number_option("--flops", "flops", "a given model's training compute if not "
                                                    "6ND")] = None,
    name: Annotated[str, typer.Option(help="label for --params/--tokens")] = "your model",
    law: LawPreset = None, law_params: LawParams = None, law_file: LawFile = None, ratio: Ratio = None,
    inference_tokens: InferenceTokens = None,
    near_multiplier: Annotated[float, typer.Option(help="near-optimal if the optimal allocation needs >= 1/this of "
                                                   "the compute")] = 1.25,
    near_ratio: Annotated[float, typer.Option(help="allocation rules: near-optimal within this factor of the rule's "
                                              "D/N")] = 2.0,
    serve_precision: Annotated[float | None, number_option("--serve-precision", "plain", "bits the model is served "
                                                           "in: the loss post-training quantisation adds "
                                                           "(kumar2024-precision) and its critical tokens")] = None,
    fmt: Fmt = "table", output: Out = None,
):
    """Was a model compute-optimal? Audit the catalog (GPT-3, Chinchilla, Llama ...) or your own."""
    from ..core import runtime
    from ..model.laws import resolve_law
    from ..plan.audit import audit_models, select_models

    runtime.use_compile_cache()
    spec = resolve_law(law, law_params, law_file, ratio, moe=True)
    models = select_models(model, params=params, tokens=tokens, flops=flops, name=name)
    with runtime.precision("audit"):
        rows = audit_models(models, spec, near_multiplier, near_ratio, inference_tokens, serve_precision)
    cols, notes = audit_notes(spec, near_multiplier, near_ratio, rows)
    return respond("audit", rows, fmt, output, title=f"budgetopt audit — law {spec.name}: {spec.describe()}",
                   columns=cols, notes=notes,
                   optional=["p_verdict", "loss", "tokens_per_param", "optimal_tokens", "flops", "loss_gap"])


@app.command("plot")
def plot_command(
    kind: Annotated[str, typer.Argument(help="frontier | isoflop | loss-vs-compute | sweep | forecast | memory | "
                                        "ladder | moe | backtest | curves")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="PNG or SVG file \\[default: "
                                                   "KIND.png]")] = None,
    law: Annotated[list[str] | None, typer.Option(help="law preset(s) \\[default: hoffmann2022 and "
                                                     "besiroglu2024]")] = None,
    law_file: Annotated[Path | None, typer.Option(help="a fitted law file (added to the laws)")] = None,
    sweep_file: Annotated[Path | None, typer.Option("--sweep", help="sweep JSON (`sweep -f json -o FILE`) for KIND "
                                                       "sweep")] = None,
    forecast_file: Annotated[Path | None, typer.Option("--forecast", help="forecast JSON (`forecast -f json -o "
                                                          "FILE`)")] = None,
    ladder_file: Annotated[Path | None, typer.Option("--ladder", help="ladder-design JSON (`ladder -f json -o "
                                                        "FILE`)")] = None,
    backtest_file: Annotated[Path | None, typer.Option("--backtest", help="backtest JSON (`fit RUNS --backtest -f "
                                                          "json -o FILE`)")] = None,
    curves_file: Annotated[Path | None, typer.Option("--curves", help="curves JSON (`curves FILES -f json -o "
                                                      "FILE`)")] = None,
    runs: Annotated[Path | None, typer.Option(help="runs CSV to overlay on the isoflop plot (params, tokens|flops, "
                                                 "loss)")] = None,
    max_total_params: Annotated[float | None, number_option("--max-total-params", "count", "memory cap of KIND moe "
                                                            "(total parameters) \\[default: 200B]")] = None,
    plan_file: Annotated[Path | None, typer.Option("--plan", help="plan JSON (`plan ... -f json -o FILE`) for KIND "
                                                      "memory \\[default: the README's 1024 x H100 plan]")] = None,
    min_flops: Annotated[float | None, number_option("--min-flops", "flops", "left end of the compute axis "
                                                     "\\[default: 1e18; moe 1e19]")] = None,
    max_flops: Annotated[float | None, number_option("--max-flops", "flops", "right end of the compute axis "
                                                     "\\[default: 1e27; moe 1e26]")] = None,
    width: Annotated[float, typer.Option(help="figure width in inches \\[default: per kind]")] = 0.0,
    height: Annotated[float, typer.Option(help="figure height in inches \\[default: per kind]")] = 0.0,
    dpi: Annotated[int, typer.Option(help="PNG resolution")] = 100,
):
    """Draw the figures: frontier, isoflop, loss-vs-compute, sweep, forecast, memory, ladder, moe, backtest, curves."""
    from ..core import runtime
    from .plots import draw, unused_inputs

    runtime.use_compile_cache()
    given = {"law": law, "law_file": law_file, "sweep_file": sweep_file, "forecast_file": forecast_file,
             "ladder_file": ladder_file, "runs": runs, "plan_file": plan_file, "max_total_params": max_total_params,
             "min_flops": min_flops, "max_flops": max_flops, "backtest_file": backtest_file, "curves_file": curves_file}
    with runtime.precision("plot"):
        out = draw(kind, output, law=law, law_file=law_file, sweep_file=sweep_file, runs=runs, min_flops=min_flops,
                   max_flops=max_flops, width=width, height=height, dpi=dpi, forecast_file=forecast_file,
                   ladder_file=ladder_file, plan_file=plan_file, max_total_params=max_total_params,
                   backtest_file=backtest_file, curves_file=curves_file)
    _no_effect(unused_inputs(kind, {k for k, v in given.items() if v}), "plot", f"on plot {kind}")
    print(f"wrote {out}", file=sys.stderr)
    return EXIT_OK


@app.command("bench")
def bench_command(
    samples: Annotated[float, number_option("--samples", "count", "sweep samples per timed run")] = 2e6,
    problems: Annotated[float, number_option("--problems", "count", "solver problems per timed run")] = 1048576,
    host_devices: HostDevices = None, fmt: Fmt = "table", output: Out = None,
):
    """Quick speed check of this machine: sweep samples/s, solver problems/s, devices."""
    from ..core import runtime

    check_outputs({"output": output}, {})
    runtime.split_host(host_devices)
    runtime.use_compile_cache()
    from .bench import quick

    with runtime.precision("bench"):
        res = quick(samples, problems)
    return respond("bench", res, fmt, output)


@app.command("merge")
def merge_command(
    files: Annotated[list[Path], typer.Argument(help="sweep JSON outputs of --shard 0/n .. n-1/n")],
    fmt: Fmt = "table", output: Out = None,
):
    """Merge the shards of one sweep into the summary of the whole (exact); -f json for a sweep JSON."""
    from ..sweep.results import merge_results

    check_outputs({"output": output}, {"results": list(files)})
    results = [load_json(f, "FILES", "a sweep JSON output") for f in files]
    return respond("merge", merge_results(results, [str(f) for f in files]), fmt, output)


def cli_main(argv: list[str] | None = None) -> None:
    """Run one command (``budgetopt.__main__.main`` routes signals first, then calls this)."""
    app(args=argv, prog_name="budgetopt")


if __name__ == "__main__":
    cli_main()
