"""The CLI's flags, each declared once (typer ``Annotated`` aliases), and the one way a flag's
number is read: where typer reads the flag, as people type it (``5.76e23``, ``3.6e3pfd``,
``7B``), its errors named by the flag. Commands only list the aliases they take.

Standard library and typer only: importing this must not import JAX (the CLI starts, and bad
flags fail, before JAX loads).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from ..core.errors import InputError
from ..core.units import parse_number
from .report import FORMATS


class FlagError(Exception):
    """A flag's value that could not be read, raised where typer reads it. Not a ValueError, so
    typer passes it on untouched (it would wrap a ValueError in its own message); the CLI's
    error handler prints ``error`` (an InputError on the flag) as one line."""

    def __init__(self, error: InputError):
        super().__init__(str(error))
        self.error = error


def number(flag: str, units: str = "count") -> Callable[[str], float]:
    """typer's parser for ``flag``: a number with ``units`` (``units.parse_number``)."""

    def parse(text: str | float) -> float:
        try:
            return parse_number(text, flag, units=units)
        except InputError as e:
            raise FlagError(e) from None

    return parse


def choice(flag: str, allowed: tuple[str, ...], what: str) -> Callable[[str], str]:
    """typer's parser for ``flag``: one of ``allowed`` (``what`` names it in the error)."""

    def parse(text: str) -> str:
        if text not in allowed:
            raise FlagError(InputError(flag, f"unknown {what} {text!r}; allowed: {', '.join(allowed)}"))
        return text

    return parse


#: what help shows for a number flag of each kind of units
_METAVAR = {"count": "NUMBER", "flops": "FLOPS", "plain": "NUMBER"}


def number_option(flag: str, units: str, help: str, panel: str | None = None):
    """A number flag (``units`` as ``number``); a command's own ones are declared with this too;
    ``panel``: the help section it is listed under."""
    return typer.Option(flag, parser=number(flag, units), metavar=_METAVAR[units], help=help, rich_help_panel=panel)


def number_argument(name: str, units: str, help: str):
    """A number argument (``convert VALUE``), read as a number flag is."""
    return typer.Argument(parser=number(name, units), metavar=name, help=help)


# ---------------------------------------------------------------------------------------------
# The response: every command writes its report (-o) in one of the same formats

Fmt = Annotated[str, typer.Option("--format", "-f", parser=choice("--format", FORMATS, "format"),
                                  help="table | json | csv")]
Out = Annotated[Path | None, typer.Option("--output", "-o", help="write the report to this file (atomically) "
                                             "instead of stdout")]

# ---------------------------------------------------------------------------------------------
# The budget: compute, or hardware x time

Flops = Annotated[float | None, number_option("--flops", "flops", "compute budget in FLOPs (5.76e23) or PF-days "
                                                  "(3.6e3pfd), or give --gpu, --count and --hours/--days")]
Gpu = Annotated[str | None, typer.Option("--gpu", help="accelerator id (see `budgetopt hardware`)")]
DeviceCount = Annotated[float | None, number_option("--count", "count", "number of accelerators")]
Hours = Annotated[float | None, number_option("--hours", "plain", "wall-clock hours")]
Days = Annotated[float | None, number_option("--days", "plain", "wall-clock days")]
Mfu = Annotated[float | None, number_option("--mfu", "plain", "model-FLOPs utilisation in (0, 1] \\[default: 0.4]")]
Dtype = Annotated[str | None, typer.Option("--dtype", help="fp32 | tf32 | bf16 | fp16 | fp8 \\[default: bf16]")]
Price = Annotated[float | None, number_option("--price-per-hour", "plain", "price per device-hour, to report a cost")]
Pue = Annotated[float | None, number_option("--pue", "plain", "power usage effectiveness of the data centre, to "
                                                "report energy \\[default: 1.0]")]
Power = Annotated[float | None, number_option("--power-watts", "plain", "board power per device in watts "
                                                  "\\[default: the catalog's tdp_w]")]
GridIntensity = Annotated[float | None, number_option("--grid-intensity", "plain", "grid carbon intensity, kg CO2e "
                                                          "per kWh, to report emissions")]
HardwareFile = Annotated[Path | None, typer.Option("--hardware-file", help="extra accelerator catalog (TOML), "
                                                      "same format as the built-in one")]
HostDevices = Annotated[int | None, typer.Option("--host-devices", help="split a CPU host into this many devices "
                                                    "\\[default: one per core]")]

# ---------------------------------------------------------------------------------------------
# The law and the constraints

LawPreset = Annotated[str | None,
                      typer.Option("--law", help="law preset (see `budgetopt laws`) \\[default: besiroglu2024]")]
LawParams = Annotated[str | None, typer.Option("--law-params", help="own parametric law: "
                                                  "E=..,A=..,B=..,alpha=..,beta=..")]
LawFile = Annotated[Path | None, typer.Option("--law-file", help="law file (JSON from `budgetopt fit --law-out`, "
                                                 "or TOML)")]
Ratio = Annotated[float | None, typer.Option("--ratio", help="tokens per parameter for --law tokens-per-param "
                                                "\\[default: 20]")]
UniqueTokens = Annotated[float | None, number_option("--unique-tokens", "count", "unique training tokens available "
                                                         "(data-constrained law)")]
MaxParams = Annotated[float | None, number_option("--max-params", "count", "cap on parameters (memory, serving)")]
MaxTokens = Annotated[float | None, number_option("--max-tokens", "count", "cap on training tokens")]
Params = Annotated[float | None, number_option("--params", "count", "a given model's parameters N (with --tokens)")]
Tokens = Annotated[float | None, number_option("--tokens", "count", "a given model's training tokens D "
                                                   "(with --params)")]

# ---------------------------------------------------------------------------------------------
# Training precision (optimize, plan)

Fp8Speedup = Annotated[float | None, number_option("--fp8-speedup", "plain", "end-to-end FP8 training speed-up over "
                                                   "BF16 \\[default: 1.34, torchao]", panel="Precision")]
Fp4Speedup = Annotated[float | None, number_option("--fp4-speedup", "plain", "end-to-end FP4 training speed-up over "
                                                   "BF16 \\[default: 1.755]", panel="Precision")]

# ---------------------------------------------------------------------------------------------
# A runs file (fit, forecast)

NCol = Annotated[str, typer.Option("--n-col", help="column of parameter counts")]
DCol = Annotated[str, typer.Option("--d-col", help="column of training tokens")]
CCol = Annotated[str | None, typer.Option("--c-col", help="column of each run's compute budget: groups isoFLOP "
                                          "curves (Approach 2); gives tokens = C/6N when there is no tokens column "
                                          "\\[default: flops, when the file has it]")]
LossCol = Annotated[str, typer.Option("--loss-col", help="column of final losses")]
Where = Annotated[list[str] | None, typer.Option("--where", help="keep rows where COL=VALUE (repeatable)")]
Bootstrap = Annotated[int, typer.Option("--bootstrap", help="bootstrap replicates")]
Seed = Annotated[int, typer.Option("--seed", help="seed of the bootstrap resampling")]

# the mixture-of-experts flags `optimize` and `plan` share
Experts = Annotated[str | None, typer.Option(rich_help_panel="Mixture of experts",
                                             help="expert count E (whole, >= 1) or auto: the best power of two up to "
                                                  "--max-experts; ludziejewski2025-moe \\[default: auto]")]
MaxExperts = Annotated[int | None, typer.Option(rich_help_panel="Mixture of experts",
                                                help="largest expert count --experts auto tries \\[default: 64]")]
MaxTotalParams = Annotated[float | None, number_option("--max-total-params", "count",
                                                       "memory cap: all experts are held (total parameters)",
                                                       panel="Mixture of experts")]
KvTokens = Annotated[float | None, number_option("--kv-tokens", "count",
                                                 "tokens of serving context held in the KV cache, counted in "
                                                 "--max-total-params (2 x layers x width per token)",
                                                 panel="Mixture of experts")]
