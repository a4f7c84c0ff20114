"""Scenario files (TOML) -> a typed, validated Scenario. Any scalar input may be a
distribution; unknown keys, wrong types, bad ranges are InputErrors naming the field path
(e.g. ``budget.mfu.high``).

    samples = 1_000_000          # optional; --samples overrides
    seed = 0
    [law]                        # preset | params | file, and the law's uncertainty
    preset = "besiroglu2024"
    uncertainty = "covariance"   # none | covariance | bootstrap (a `budgetopt fit` file's draws)
    [budget]                     # flops, or gpu + count + hours|days + mfu (+ dtype)
    gpu = "h100-sxm"
    count = 1024
    hours = { dist = "triangular", low = 400, mode = 700, high = 720 }
    mfu   = { dist = "uniform", low = 0.35, high = 0.45 }
    [data]
    unique_tokens = { dist = "lognormal", median = 7e11, sigma = 0.3 }
    [constraints]                # max_params, max_tokens, max_epochs, inference_tokens
    [recommend]                  # candidates (grid size), risk = "mean" | "p95", refine, subsample
    [moe]                        # with a joint MoE law: the expert counts to choose among, and
    experts = [1, 8, 32, 64]     # optionally max_total_params (every expert held; may be uncertain), kv_tokens
    [precision]                  # with a dense law on budget.gpu (booked in bf16): the training
    formats = ["bf16", "fp8"]    # formats to choose among (default: every format the device has),
    penalty = "empirical"        # the loss each costs (empirical | law, and form with law) and
    [precision.speedup]          # per format its end-to-end speed-up over BF16 and (empirical)
    fp8 = { dist = "uniform", low = 1.2, high = 1.45 }   # relative loss penalty, each fixed or
    [precision.loss_penalty]     # uncertain (defaults: the sourced values of
    fp8 = { dist = "uniform", low = 0.0, high = 0.0025 } # data/precision_formats.toml)
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.distributions import Dist, median
from ..core.errors import InputError, ParameterError
from ..core.files import data_names, data_toml, load_toml
from ..core.units import number_at
from ..model.hardware import Accelerator, get_accelerator, load_catalog
from ..model.laws import (
    JointMoE,
    LawSpec,
    Parametric,
    default_uncertainty,
    get_preset,
    is_moe,
    law_from_file,
    parametric_from_mapping,
    resolve_law,
    uncertainty_problem,
)
from ..plan.launch import check_plan_options

DIST_PARAMS = {"uniform": ("low", "high"), "loguniform": ("low", "high"), "normal": ("mean", "sd"),
               "lognormal": ("median", "sigma"), "triangular": ("low", "mode", "high")}
# field -> (lowest allowed, highest allowed, lowest is exclusive)
DOMAINS = {"flops": (0.0, math.inf, True), "count": (1.0, math.inf, False), "hours": (0.0, math.inf, True),
           "days": (0.0, math.inf, True), "mfu": (0.0, 1.0, True), "unique_tokens": (1.0, math.inf, False),
           "max_params": (1.0, math.inf, False), "max_tokens": (1.0, math.inf, False),
           "max_epochs": (0.0, math.inf, True), "inference_tokens": (0.0, math.inf, True),
           "max_total_params": (1.0, math.inf, False), "speedup": (0.0, math.inf, True),
           "loss_penalty": (0.0, 1.0, False)}
SECTIONS = {
    "": {"samples", "seed", "name", "description", "law", "budget", "data", "constraints", "recommend", "plan", "moe",
         "precision"},
    "law": {"preset", "params", "file", "uncertainty", "ratio"},
    "budget": {"flops", "gpu", "dtype", "count", "hours", "days", "mfu"},
    "data": {"unique_tokens"},
    "constraints": {"max_params", "max_tokens", "max_epochs", "inference_tokens"},
    "recommend": {"candidates", "risk", "refine", "subsample"},
    "moe": {"experts", "max_total_params", "kv_tokens"},
    "precision": {"formats", "penalty", "form", "speedup", "loss_penalty"},
    "plan": {"seq_len", "vocab", "ffn", "flops_convention", "batch_law", "tp", "pp", "zero", "micro_batch", "recompute",
             "flash", "pue", "ep"},
}
MAX_SAMPLES = 10**13
MAX_CANDIDATES = 1024
#: the library's parameter names -> where a scenario file gives them (errors are renamed here)
TOML_PATHS = {"hardware_file": "--hardware-file", "law": "law.preset", "ratio": "law.ratio", "law_file": "law.file",
              "gpu": "budget.gpu",
              "dtype": "budget.dtype", "flops": "budget.flops", "count": "budget.count", "hours": "budget.hours",
              "mfu": "budget.mfu", "unique_tokens": "data.unique_tokens",
              **{k: f"constraints.{k}" for k in ("max_params", "max_tokens", "max_epochs", "inference_tokens")},
              **{k: f"recommend.{k}" for k in ("candidates", "risk", "refine", "subsample")},
              "experts": "moe.experts", "max_total_params": "moe.max_total_params", "kv_tokens": "moe.kv_tokens",
              **{k: f"plan.{k}" for k in ("seq_len", "vocab", "ffn", "flops_convention", "batch_law", "tp", "pp",
                                          "zero", "micro_batch", "recompute", "flash", "pue", "ep")}}
# the decision subsample: candidates are scored on the samples with global index = 0 mod this
SUBSAMPLES = (1, 2, 4, 8, 16, 32, 64)
# A lognormal's 4-sigma range is a factor exp(8 sigma); beyond sigma = 10 (1e34) it is no longer
# a belief about a budget, and in float32 sigma * ndtri(u) overflows.
MAX_SIGMA = 10.0


@dataclass(frozen=True)
class PrecisionChoice:
    """A [precision] sweep's formats (in the catalog's order) and, per format, its bits, its
    end-to-end speed-up over BF16 and relative loss penalty (Dists; bf16 is the reference: 1 and
    0), its catalog index (which names its random streams: ``sampling.Streams``) and, under
    ``penalty = "law"``, log F(bits)/F(16) of the precision law (``precision_choice``), under
    ``"empirical"`` the log of its token factor (MXFP4's 1.36)."""

    formats: tuple[str, ...]
    bits: tuple[float, ...]
    speedup: tuple[Dist, ...]
    loss_penalty: tuple[Dist, ...]
    catalog_index: tuple[int, ...]
    speedup_index: tuple[int, ...]  # the catalog index whose stream draws the speed-up (mxfp4: fp4's)
    penalty: str = "empirical"
    form: str = "offset"
    log_factor_rel: tuple[float, ...] = ()
    log_token_factor: tuple[float, ...] = ()  # empirical: log of the tokens a format needs for the same loss


@dataclass(frozen=True)
class Scenario:
    """A validated sweep specification. Inputs are Dists in natural units (FLOPs, hours...)."""

    law: LawSpec
    uncertainty: str = "none"
    samples: int = 1_000_000
    seed: int = 0
    name: str = "scenario"
    flops: Dist | None = None
    accelerator: Accelerator | None = None
    dtype: str = "bf16"
    count: Dist | None = None
    hours: Dist | None = None
    mfu: Dist | None = None
    unique_tokens: Dist | None = None
    max_params: Dist | None = None
    max_tokens: Dist | None = None
    max_epochs: Dist | None = None
    inference_tokens: Dist | None = None
    candidates: int = 64
    risk: str = "mean"
    refine: bool = True
    subsample: int = 8
    plan: dict | None = None  # [plan]: report the recommendation as a run plan (results.plan_for_sweep)
    experts: tuple[int, ...] | None = None  # [moe]: the expert counts the decision chooses among (joint MoE law)
    max_total_params: Dist | None = None  # [moe]: total parameters (all experts) a run may hold
    kv_tokens: float = 0.0  # [moe]: serving tokens whose KV cache shares max_total_params (optimize --kv-tokens)
    precision: PrecisionChoice | None = None  # [precision]: the training formats the decision chooses among
    source: str = ""
    raw: dict = field(default_factory=dict, compare=False)


def _where(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _check_keys(table: dict, section: str, path: str) -> None:
    for k in table:
        if k not in SECTIONS[section]:
            raise InputError(_where(path, k), f"unknown key; allowed here: {', '.join(sorted(SECTIONS[section]))}")


def _toml_number(v: Any, where: str) -> float:
    return number_at(v, where, units="count", expected="a number or a distribution table")


def _in_domain(x: float, name: str, where: str) -> None:
    lo, hi, excl = DOMAINS[name]
    if (x <= lo if excl else x < lo) or x > hi:
        rng = (f"{'(' if excl else '['}{lo:g}, {hi:g}]" if hi < math.inf else f"> {lo:g}" if excl
               else f">= {lo:g}")
        raise InputError(where, f"must be {rng}, got {x:g}")


def parse_dist(v: Any, name: str, where: str) -> Dist:
    """A number (fixed) or a table {dist = ..., params}; checked against the field's domain."""
    if not isinstance(v, dict):
        x = _toml_number(v, where)
        _in_domain(x, name, where)
        return Dist("fixed", x)
    kind = v.get("dist")
    if kind not in DIST_PARAMS:
        raise InputError(_where(where, "dist"), f"unknown distribution {kind!r}; allowed: {', '.join(DIST_PARAMS)}")
    names = DIST_PARAMS[kind]
    for k in v:
        if k != "dist" and k not in names:
            raise InputError(_where(where, k), f"unknown key for a {kind} distribution; allowed: {', '.join(names)}")
    vals = []
    for k in names:
        if k not in v:
            raise InputError(_where(where, k), f"missing; a {kind} distribution needs {', '.join(names)}")
        vals.append(_toml_number(v[k], _where(where, k)))
    lo, hi, excl = DOMAINS[name]
    if kind in ("uniform", "loguniform", "triangular"):
        low, high = vals[0], vals[-1]
        if not low < high:
            raise InputError(_where(where, "high"), f"must be greater than low ({low:g}), got {high:g}")
        if kind == "triangular" and not low <= vals[1] <= high:
            raise InputError(_where(where, "mode"), f"must lie in [low, high] = [{low:g}, {high:g}], got {vals[1]:g}")
        _in_domain(low, name, _where(where, "low"))
        _in_domain(high, name, _where(where, "high"))
    elif kind == "normal":
        mean, sd = vals
        if not sd > 0:
            raise InputError(_where(where, "sd"), f"must be > 0, got {sd:g}")
        if mean - 4 * sd <= lo or mean + 4 * sd > hi:
            raise InputError(_where(where, "sd"),
                             f"a normal({mean:g}, {sd:g}) reaches outside the allowed range within 4 sd; use a smaller "
                             "sd, or a uniform/triangular/lognormal distribution")
    else:  # lognormal
        median, sigma = vals
        _in_domain(median, name, _where(where, "median"))
        if not 0 < sigma <= MAX_SIGMA:
            raise InputError(_where(where, "sigma"), f"must be in (0, {MAX_SIGMA:g}], got {sigma:g}")
        if hi < math.inf and median * math.exp(4 * sigma) > hi:
            raise InputError(_where(where, "sigma"), f"a lognormal reaches above {hi:g} within 4 sigma")
    return Dist(kind, *vals)


def _law(t: dict, base_dir: Path, moe: bool) -> tuple[LawSpec, str]:
    _check_keys(t, "law", "law")
    given = [k for k in ("preset", "params", "file") if k in t]
    if len(given) > 1:
        raise InputError(f"law.{given[1]}", "give one of law.preset, law.params, law.file")
    if "params" in t:
        if not isinstance(t["params"], dict):
            raise InputError("law.params", "must be a table with E, A, B, alpha, beta")
        spec = LawSpec("custom", parametric_from_mapping(t["params"], "law.params"), "scenario parameters")
    elif "file" in t:
        if not isinstance(t["file"], str):
            raise InputError("law.file", "must be a path string")
        p = Path(t["file"])
        try:
            spec = law_from_file(p if p.is_absolute() else base_dir / p)
        except InputError as e:
            raise InputError("law.file", e.message) from None
    else:
        preset = t.get("preset", "besiroglu2024")
        if not isinstance(preset, str):
            raise InputError("law.preset", "must be a preset name string")
        ratio = t.get("ratio")
        if ratio is not None:
            ratio = _toml_number(ratio, "law.ratio")
        spec = get_preset(preset, ratio)
    where = "law.file" if "file" in t else "law.preset"
    if is_moe(spec.params) and not moe:
        raise InputError(where, f"{spec.name} is a mixture-of-experts law: give the expert counts to choose among in "
                         "[moe] (experts = [1, 8, 32])")
    if moe and not isinstance(spec.params, JointMoE):
        raise InputError(where, f"[moe] chooses an expert count under a joint MoE law (ludziejewski2025-moe, or a file "
                         f"fitted in its form); {spec.name} is {spec.kind}")
    unc = t.get("uncertainty", "none")
    problem = uncertainty_problem(spec, unc)
    if problem is not None:
        raise InputError("law.uncertainty", problem)
    return spec, unc


MAX_EXPERT_CHOICES = 16


def check_experts(v: object) -> tuple[int, ...]:
    """[moe] experts: distinct whole numbers >= 1 (1 = dense), at most MAX_EXPERT_CHOICES, sorted."""
    if not isinstance(v, list) or not v:
        raise InputError("moe.experts", "must be a list of expert counts, e.g. [1, 8, 32, 64] (1 = dense)")
    if len(v) > MAX_EXPERT_CHOICES:
        raise InputError("moe.experts", f"at most {MAX_EXPERT_CHOICES} expert counts, got {len(v)}")
    for e in v:
        if isinstance(e, bool) or not isinstance(e, int) or not 1 <= e <= 65536:
            raise InputError("moe.experts", f"each must be a whole number from 1 to 65536, got {e!r}")
    if len(set(v)) != len(v):
        raise InputError("moe.experts", f"each expert count once, got {v}")
    return tuple(sorted(v))


def _precision(t: object, kw: dict) -> PrecisionChoice:
    """[precision]: the formats to choose among on budget.gpu (booked in bf16) under a dense
    parametric law, each format's speed-up and loss penalty (a number or a distribution)."""
    from ..model.hardware import Cluster
    from ..model.precision import PRECISION_FORMS
    from ..plan.precision_choice import PENALTIES, device_formats, formats, relative_log_factor

    if not isinstance(t, dict):
        raise InputError("precision", "must be a table ([precision])")
    _check_keys(t, "precision", "precision")
    if kw.get("accelerator") is None:
        raise InputError("precision", "chooses a training format on a device: give the budget as budget.gpu, count, "
                         "hours (or days) and mfu, booked in bf16")
    if kw.get("dtype", "bf16") != "bf16":
        raise InputError("budget.dtype", "sets one format; [precision] compares formats: book the device in bf16 (the "
                         "reference the speed-ups are measured against)")
    if not isinstance(kw["law"].params, Parametric):
        raise InputError("law.preset", f"[precision] compares formats under a dense parametric law; "
                         f"{kw['law'].name} is {kw['law'].kind}")
    table = formats()
    has = device_formats(Cluster(kw["accelerator"], "bf16", 0.5, 1))
    names = t.get("formats", has)
    if not isinstance(names, list) or not names or not all(isinstance(f, str) for f in names):
        raise InputError("precision.formats", f"must be a list of format names, e.g. {has}")
    for f in names:
        if f not in table:
            raise InputError("precision.formats", f"unknown format {f!r}; allowed: {', '.join(table)}")
        if f not in has:
            raise InputError("precision.formats", f"{kw['accelerator'].id} has no {f} (its formats: {', '.join(has)})")
    if len(set(names)) != len(names):
        raise InputError("precision.formats", f"each format once, got {names}")
    order = list(table)
    names = sorted(names, key=order.index)
    penalty = t.get("penalty", "empirical")
    if penalty not in PENALTIES:
        raise InputError("precision.penalty", f"unknown {penalty!r}; allowed: {', '.join(PENALTIES)}")
    form = t.get("form", "offset")
    if form not in PRECISION_FORMS:
        raise InputError("precision.form", f"unknown {form!r}; allowed: {', '.join(PRECISION_FORMS)}")
    if "form" in t and penalty != "law":
        raise InputError("precision.form", "applies to penalty = \"law\" (the precision law's form)")
    dists = {}
    for key in ("speedup", "loss_penalty"):
        given = t.get(key, {})
        if not isinstance(given, dict):
            raise InputError(f"precision.{key}", "must be a table of formats, e.g. { fp8 = 1.3 }")
        for f in given:
            if f not in names:
                raise InputError(f"precision.{key}.{f}", f"not one of the formats chosen among ({', '.join(names)})")
            if f == "bf16":
                raise InputError(f"precision.{key}.bf16", "bf16 is the reference (speed-up 1, no penalty)")
        if key == "loss_penalty" and given and penalty != "empirical":
            raise InputError("precision.loss_penalty", "applies to penalty = \"empirical\" (the law sets the loss "
                             "cost under penalty = \"law\")")
        dists[key] = {f: parse_dist(given[f], key, f"precision.{key}.{f}") for f in given}
    # a format that shares another's speed-up (mxfp4: fp4's) shares its distribution and draws
    speed_of = {f: f if f in dists["speedup"] else table[f].get("speedup_of", f) for f in names}
    speedup = tuple(dists["speedup"].get(speed_of[f], Dist("fixed", float(table[speed_of[f]]["speedup"])))
                    for f in names)
    penalty_dists = tuple(dists["loss_penalty"].get(f, Dist("fixed", float(table[f]["loss_penalty"]))) for f in names)
    bits = tuple(float(table[f]["bits"]) for f in names)
    rel = tuple(relative_log_factor(b, form) for b in bits) if penalty == "law" else ()
    tokens = tuple(math.log(float(table[f].get("token_factor", 1.0))) if penalty == "empirical" else 0.0
                   for f in names)
    return PrecisionChoice(tuple(names), bits, speedup, penalty_dists, tuple(order.index(f) for f in names),
                           tuple(order.index(speed_of[f]) for f in names), penalty, form, rel, tokens)


def toml_path_of(name: str) -> str:
    """Where a scenario file gives the library's parameter ``name``."""
    return TOML_PATHS.get(name, name)


def check_samples(n: object) -> int:
    """A sample count: a whole number from 1 to MAX_SAMPLES."""
    if isinstance(n, bool) or not isinstance(n, (int, float)) or n != int(n) or not 1 <= n <= MAX_SAMPLES:
        raise ParameterError("samples", f"must be a whole number from 1 to {MAX_SAMPLES:.0e}, got {n!r}")
    return int(n)


def check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise ParameterError("seed", f"must be a whole number in [0, 2^31), got {seed!r}")
    return seed


def check_candidates(c: object) -> int:
    if isinstance(c, bool) or not isinstance(c, int) or not (c == 0 or 2 <= c <= MAX_CANDIDATES):
        raise ParameterError("candidates", f"must be 0 (no recommendation) or a whole number from 2 to "
                             f"{MAX_CANDIDATES}, got {c!r}")
    return c


# a sweep from flags: each flag's scenario field (errors on a field are named by the flag)
FLAG_FIELDS = {"law": ("law", "preset"), "law_file": ("law", "file"), "uncertainty": ("law", "uncertainty"),
               "flops": ("budget", "flops"), "gpu": ("budget", "gpu"), "dtype": ("budget", "dtype"),
               "count": ("budget", "count"), "hours": ("budget", "hours"), "days": ("budget", "days"),
               "mfu": ("budget", "mfu"), "unique_tokens": ("data", "unique_tokens")}
LOG_RANGES = {"flops", "unique_tokens"}  # a LO:HI range of these is log-uniform; of the others uniform


def range_value(text: str, name: str) -> Any:
    """A flag's value as a scenario field: ``LO:HI`` a uniform range (log-uniform for a budget
    in FLOPs or a token count), anything else as typed (a fixed value, read as the file's is)."""
    lo, sep, hi = str(text).partition(":")
    if not sep:
        return text
    return {"dist": "loguniform" if name in LOG_RANGES else "uniform", "low": lo.strip(), "high": hi.strip()}


def from_flags(hardware_file: str | Path | None = None, **given: str | Path | None) -> Scenario:
    """The common sweep without a file: ``given`` maps FLAG_FIELDS' names (law, law_file,
    uncertainty, flops, gpu, dtype, count, hours, days, mfu, unique_tokens) to what was typed;
    ranges ``LO:HI`` (``range_value``). Validated as a scenario file is; an error names the
    parameter (``hours``), never a TOML path."""
    d: dict[str, dict[str, Any]] = {}
    for name, value in given.items():
        if name not in FLAG_FIELDS:
            raise ParameterError(name, f"not a sweep flag; allowed: {', '.join(FLAG_FIELDS)}")
        if value is not None:
            section, key = FLAG_FIELDS[name]
            d.setdefault(section, {})[key] = str(value) if key == "file" else range_value(value, name)
    law = d.setdefault("law", {})
    if "preset" in law and "file" in law:
        raise ParameterError("law", "give {law} or {law_file}, not both", names=True)
    if "uncertainty" not in law:  # what the law carries (resolve_law checks the flags and the file)
        law["uncertainty"] = default_uncertainty(resolve_law(law.get("preset"), None, law.get("file")))
    by_field = {f"{sec}.{key}": name for name, (sec, key) in FLAG_FIELDS.items()}
    try:
        return from_dict({"name": "flags", **d}, "flags", Path("."), hardware_file)
    except InputError as e:  # budget.hours.high -> hours
        if e.field == "budget":
            raise ParameterError("flops", "a sweep needs a budget: {flops}, or {gpu} with {count}, {hours} (or "
                                 "{days}) and {mfu}", names=True) from None
        head = next((f for f in by_field if e.field == f or e.field.startswith(f + ".")), None)
        if head is None:
            raise
        part = e.field[len(head) + 1:]
        said = re.sub(r"\b(?:law|budget|data)\.\w+", lambda m: f"{{{by_field[m[0]]}}}" if m[0] in by_field
                      else m[0], e.message.replace("{", "(").replace("}", ")"))  # the fields as the flags
        raise ParameterError(by_field[head], (f"{part} of the range: " if part in ("low", "high") else "") + said,
                             names=True) from None


def with_overrides(sc: Scenario, *, samples: float | None = None, seed: int | None = None,
                   candidates: int | None = None) -> Scenario:
    """``sc`` with the given fields replaced, each checked as the file's own value is."""
    kw: dict[str, Any] = {}
    if samples is not None:
        kw["samples"] = check_samples(samples)
    if seed is not None:
        kw["seed"] = check_seed(seed)
    if candidates is not None:
        kw["candidates"] = check_candidates(candidates)
    return dataclasses.replace(sc, **kw)


def resolve(path: str | Path | None = None, example_name: str | None = None,
            hardware_file: str | Path | None = None) -> Scenario:
    """The scenario a user names: a TOML file, or a built-in example (exactly one of them)."""
    if (path is None) == (example_name is None):
        raise ParameterError("scenario", "give a scenario file or {example} NAME (one of them)", names=True)
    return example(example_name) if example_name is not None else load(path, hardware_file)


def from_dict(d: dict, source: str = "", base_dir: Path | None = None,
              hardware_file: str | Path | None = None) -> Scenario:
    """Validate a parsed TOML document; errors name the TOML path."""
    try:
        return _from_dict(d, source, base_dir or Path("."), hardware_file)
    except ParameterError as e:  # a library check: say where in the file
        raise e.rename(toml_path_of) from None


def _from_dict(d: dict, source: str, base_dir: Path, hardware_file: str | Path | None) -> Scenario:
    _check_keys(d, "", "")
    for sec in ("law", "budget", "data", "constraints", "recommend", "plan"):
        if sec in d and not isinstance(d[sec], dict):
            raise InputError(sec, "must be a table ([" + sec + "])")
    kw: dict[str, Any] = {"source": source, "raw": d}
    if "samples" in d:
        if not isinstance(d["samples"], int):  # 1e6 in TOML is a float: ask for an integer literal
            raise InputError("samples",
                             f"must be a whole number (an integer literal such as 1_000_000), got {d['samples']!r}")
        kw["samples"] = check_samples(d["samples"])
    if "seed" in d:
        kw["seed"] = check_seed(d["seed"])
    if "name" in d:
        kw["name"] = str(d["name"])
    if "moe" in d:
        if not isinstance(d["moe"], dict):
            raise InputError("moe", "must be a table ([moe])")
        _check_keys(d["moe"], "moe", "moe")
        kw["experts"] = check_experts(d["moe"].get("experts"))
        if "max_total_params" in d["moe"]:
            kw["max_total_params"] = parse_dist(d["moe"]["max_total_params"], "max_total_params",
                                                "moe.max_total_params")
        if "kv_tokens" in d["moe"]:
            t = number_at(d["moe"]["kv_tokens"], "moe.kv_tokens", units="count", expected="a number of tokens")
            if not (math.isfinite(t) and t >= 0):
                raise InputError("moe.kv_tokens", f"must be a number of tokens >= 0, got {t!r}")
            if "max_total_params" not in d["moe"]:
                raise InputError("moe.kv_tokens", "counts the KV cache in the memory cap: give moe.max_total_params "
                                 "too")
            kw["kv_tokens"] = t
    kw["law"], kw["uncertainty"] = _law(d.get("law", {}), base_dir, "moe" in d)
    if "precision" in d and "moe" in d:
        raise InputError("precision", "one discrete decision per sweep: [moe] or [precision], not both")

    b = d.get("budget")
    if b is None:
        raise InputError("budget", "missing; give budget.flops, or budget.gpu with count, hours (or days) and mfu")
    _check_keys(b, "budget", "budget")
    if "flops" in b:
        extra = [k for k in ("gpu", "count", "hours", "days", "mfu", "dtype") if k in b]
        if extra:
            raise InputError(f"budget.{extra[0]}", "give budget.flops or hardware (gpu, count, hours, mfu), not both")
        kw["flops"] = parse_dist(b["flops"], "flops", "budget.flops")
    else:
        if "gpu" not in b:
            raise InputError("budget.gpu",
                             "missing; give budget.flops, or budget.gpu with count, hours (or days) and mfu")
        if not isinstance(b["gpu"], str):
            raise InputError("budget.gpu", "must be an accelerator id string")
        acc = get_accelerator(b["gpu"], load_catalog(hardware_file))
        dtype = b.get("dtype", "bf16")
        acc.peak_flops(dtype)
        kw["accelerator"], kw["dtype"] = acc, dtype
        for k in ("count", "mfu"):
            if k not in b:
                raise InputError(f"budget.{k}", "missing; hardware budgets need gpu, count, hours (or days) and mfu")
            kw[k] = parse_dist(b[k], k, f"budget.{k}")
        if kw["count"].fixed and kw["count"].a != int(kw["count"].a):
            raise InputError("budget.count",
                             f"must be a whole number of devices, got {kw['count'].a:g} (a distribution over count is "
                             "allowed: its draws are rounded to whole devices)")
        if ("hours" in b) == ("days" in b):
            raise InputError("budget.hours", "give exactly one of budget.hours and budget.days")
        if "hours" in b:
            kw["hours"] = parse_dist(b["hours"], "hours", "budget.hours")
        else:
            days = parse_dist(b["days"], "days", "budget.days")
            scale = {"fixed": (24, 1, 1), "uniform": (24, 24, 1), "loguniform": (24, 24, 1), "normal": (24, 24, 1),
                     "lognormal": (24, 1, 1), "triangular": (24, 24, 24)}[days.kind]
            kw["hours"] = Dist(days.kind, days.a * scale[0], days.b * scale[1], days.c * scale[2])
    data = d.get("data", {})
    _check_keys(data, "data", "data")
    if "unique_tokens" in data:
        kw["unique_tokens"] = parse_dist(data["unique_tokens"], "unique_tokens", "data.unique_tokens")
    cons = d.get("constraints", {})
    _check_keys(cons, "constraints", "constraints")
    for k in SECTIONS["constraints"]:
        if k in cons:
            kw[k] = parse_dist(cons[k], k, f"constraints.{k}")
    if "max_epochs" in kw and "unique_tokens" not in kw:
        raise InputError("constraints.max_epochs", "needs data.unique_tokens (epochs are counted over the unique data)")
    if "unique_tokens" in kw and not isinstance(kw["law"].params, Parametric):
        raise InputError("data.unique_tokens",
                         f"the data-constrained form needs a parametric law; {kw['law'].name} is {kw['law'].kind}")
    rec = d.get("recommend", {})
    _check_keys(rec, "recommend", "recommend")
    if "candidates" in rec:
        kw["candidates"] = check_candidates(rec["candidates"])
    if "risk" in rec:
        if rec["risk"] not in ("mean", "p95"):
            raise InputError("recommend.risk", f"unknown {rec['risk']!r}; allowed: mean, p95")
        kw["risk"] = rec["risk"]
    if "subsample" in rec:
        k = rec["subsample"]
        if isinstance(k, bool) or not isinstance(k, int) or k not in SUBSAMPLES:
            raise InputError("recommend.subsample", f"must be one of {', '.join(map(str, SUBSAMPLES))} (1 = every "
                             f"sample scores the candidates), got {k!r}")
        kw["subsample"] = k
    if "refine" in rec:
        if not isinstance(rec["refine"], bool):
            raise InputError("recommend.refine", "must be true or false")
        kw["refine"] = rec["refine"]
    if "moe" in d:
        for sec, key in (("data", "unique_tokens"), ("constraints", "max_params"), ("constraints", "max_epochs")):
            if key in d.get(sec, {}):
                raise InputError(f"{sec}.{key}", "is not part of a [moe] sweep (the joint law has no repeated-data "
                                 "form; cap the parameters with moe.max_total_params)")
        if d.get("plan", {}).get("ffn", "swiglu") != "swiglu":
            raise InputError("plan.ffn", "a [moe] sweep plans the joint law's family, whose experts are SwiGLU: "
                             "leave it out")
    if "precision" in d:
        kw["precision"] = _precision(d["precision"], kw)
        if "plan" in d:
            raise InputError("plan", "a [precision] sweep's run plan is not made yet: plan the chosen size with "
                             "`budgetopt plan --precision FORMAT`")
    if "plan" in d:
        _check_keys(d["plan"], "plan", "plan")
        kw["plan"] = check_plan_options(d["plan"])
        if kw["plan"]["ep"] != 1 and "moe" not in d:
            raise InputError("plan.ep", "expert parallelism applies to a [moe] sweep's routed model")
        if "count" in kw:  # the plan is made on the median device count (results.plan_for_sweep)
            count, split = max(1, round(median(kw["count"]))), kw["plan"]["tp"] * kw["plan"]["pp"]
            if count % split:
                raise InputError("plan.tp", f"tp x pp = {split} must divide the device count the plan uses "
                                 f"({count}: the median of budget.count)")
    return Scenario(**kw)


def load(path: str | Path, hardware_file: str | Path | None = None) -> Scenario:
    """Read and validate a scenario file."""
    path = Path(path)
    d = load_toml(path, "SCENARIO", "a TOML scenario file")
    return from_dict(d, str(path), path.parent, hardware_file)


def example_names() -> list[str]:
    """The built-in scenarios (``budgetopt/data/scenarios``)."""
    return data_names("scenarios")


def example(name: str) -> Scenario:
    """A scenario shipped with the package (``budgetopt sweep --example NAME``)."""
    if name not in example_names():
        raise ParameterError("example", f"unknown example {name!r}; known: {', '.join(example_names())}")
    return from_dict(data_toml(f"scenarios/{name}.toml"), f"example:{name}")
