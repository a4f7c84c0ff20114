"""Scaling laws: pure, jittable, vmappable loss functions in log space, and their presets.

N = parameters, D = training tokens, U = unique tokens, L = loss (nats/token).
Every law is a NamedTuple of arrays (a pytree), so a batch of laws is the same NamedTuple with
a leading batch axis, and ``jax.vmap`` / broadcasting work unchanged.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ..core.distributions import uniform
from ..core.errors import InputError, ParameterError
from ..core.files import data_toml, load_json, load_toml
from ..core.units import TRAIN_FLOPS_PER_PARAM_TOKEN, number_at, require_in
from .links import check_link
from .validity import MODEL_ERROR_ENTRY, Validity, from_mapping

LOG6 = math.log(TRAIN_FLOPS_PER_PARAM_TOKEN)  # C = 6ND


class Parametric(NamedTuple):
    """L = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022), stored as logs of A, B, E.
    Field order is the covariance order (log A, log B, log E, alpha, beta)."""

    log_A: Float[ArrayLike, "*b"]
    log_B: Float[ArrayLike, "*b"]
    log_E: Float[ArrayLike, "*b"]
    alpha: Float[ArrayLike, "*b"]
    beta: Float[ArrayLike, "*b"]


class Kaplan(NamedTuple):
    """L = [(Nc/N)^(alpha_N/alpha_D) + Dc/D]^alpha_D (Kaplan et al. 2020)."""

    log_Nc: Float[ArrayLike, "*b"]
    log_Dc: Float[ArrayLike, "*b"]
    alpha_N: Float[ArrayLike, "*b"]
    alpha_D: Float[ArrayLike, "*b"]


class DataConstrained(NamedTuple):
    """Muennighoff et al. 2023: a parametric base law evaluated at effective data D' and
    effective parameters N', which discount repeated tokens and excess parameters."""

    base: Parametric
    rd_star: Float[ArrayLike, "*b"]
    rn_star: Float[ArrayLike, "*b"]


class TokensPerParam(NamedTuple):
    """Allocation rule without a loss surface: D = ratio * N."""

    ratio: Float[ArrayLike, "*b"]


Law = Parametric | Kaplan | DataConstrained | TokensPerParam


class JointMoE(NamedTuple):
    """Ludziejewski et al. 2025, eq. 1/6; exponents signed as printed (alpha, beta < 0)."""

    log_a: Float[ArrayLike, "*b"]
    alpha: Float[ArrayLike, "*b"]
    delta: Float[ArrayLike, "*b"]
    gamma: Float[ArrayLike, "*b"]
    log_b: Float[ArrayLike, "*b"]
    beta: Float[ArrayLike, "*b"]
    omega: Float[ArrayLike, "*b"]
    zeta: Float[ArrayLike, "*b"]
    e_start: Float[ArrayLike, "*b"]
    e_max: Float[ArrayLike, "*b"]
    c: Float[ArrayLike, "*b"]


class FineGrainedMoE(NamedTuple):
    """Krajewski et al. 2024, eq. 9 at expansion rate ``expansion`` (their E = 64); the FLOPs
    constants c_f, c_r of eq. 10-11."""

    a: Float[ArrayLike, "*b"]
    alpha: Float[ArrayLike, "*b"]
    b: Float[ArrayLike, "*b"]
    beta: Float[ArrayLike, "*b"]
    g: Float[ArrayLike, "*b"]
    gamma: Float[ArrayLike, "*b"]
    c: Float[ArrayLike, "*b"]
    expansion: Float[ArrayLike, "*b"]
    c_f: Float[ArrayLike, "*b"]
    c_r: Float[ArrayLike, "*b"]


MoELaw = JointMoE | FineGrainedMoE  # their variables differ from the dense laws' (N, D): model/moe.py


class KumarPrecision(NamedTuple):
    """Kumar et al. 2024 (Appendix K): a Chinchilla-form law in (N_eff, D) with N_eff = N times
    a factor per quantised tensor (weights w, activations a, KV cache kv), and the
    post-training-quantisation degradation constants (C_T, gamma_D, gamma_N, gamma_post)."""

    log_A: Float[ArrayLike, "*b"]
    alpha: Float[ArrayLike, "*b"]
    log_B: Float[ArrayLike, "*b"]
    beta: Float[ArrayLike, "*b"]
    log_E: Float[ArrayLike, "*b"]
    gamma_w: Float[ArrayLike, "*b"]
    n_w: Float[ArrayLike, "*b"]
    gamma_a: Float[ArrayLike, "*b"]
    n_a: Float[ArrayLike, "*b"]
    gamma_kv: Float[ArrayLike, "*b"]
    n_kv: Float[ArrayLike, "*b"]
    c_t: Float[ArrayLike, "*b"]
    gamma_d: Float[ArrayLike, "*b"]
    gamma_n: Float[ArrayLike, "*b"]
    gamma_post: Float[ArrayLike, "*b"]


def has_loss(law: Law | MoELaw | KumarPrecision) -> bool:
    """Whether the law predicts a loss (allocation rules do not)."""
    return not isinstance(law, TokensPerParam)


# ----------------------------------------------------------------------------------------------
# Loss functions (log N, log D in; loss out). All in log space: 1e25 FLOPs never overflows.


def parametric_loss(p: Parametric, log_n: Array, log_d: Array) -> Array:
    """E + A N^-alpha + B D^-beta, evaluated as exp(log A - alpha log N) etc."""
    return jnp.exp(p.log_E) + jnp.exp(p.log_A - p.alpha * log_n) + jnp.exp(p.log_B - p.beta * log_d)


def kaplan_loss(p: Kaplan, log_n: Array, log_d: Array) -> Array:
    """[(Nc/N)^(aN/aD) + Dc/D]^aD, the bracket as a log-sum-exp."""
    inner = jnp.logaddexp(p.alpha_N / p.alpha_D * (p.log_Nc - log_n), p.log_Dc - log_d)
    return jnp.exp(p.alpha_D * inner)


def _log_effective(log_unique: Array, log_total: Array, r_star: ArrayLike) -> Array:
    """log of U + U R* (1 - exp(-R/R*)) with R = total/U - 1 >= 0 (repetitions past the first).

    The difference is clipped at 60: past that exp(-R/R*) is 0 to any precision, and the clip
    keeps float32 gradients finite for absurd repetition counts."""
    r = jnp.expm1(jnp.minimum(log_total - log_unique, 60.0))
    return log_unique + jnp.log1p(-r_star * jnp.expm1(-r / r_star))


def data_constrained_loss(p: DataConstrained, log_n: Array, log_d: Array, log_u: ArrayLike) -> Array:
    """Muennighoff et al. 2023, eq. 5-7, with U_N from the base law's closed form.

    U_D = min(D, U); D' = U_D + U_D R_D* (1 - exp(-R_D/R_D*)), R_D = D/U_D - 1.
    U_N = min(N, N_opt(U_D)), N_opt(U_D) = compute-optimal size for training once on U_D tokens;
    N' = U_N + U_N R_N* (1 - exp(-R_N/R_N*)), R_N = N/U_N - 1.  L = base(N', D').
    ``log_u = +inf`` means unlimited unique data."""
    log_ud = jnp.minimum(log_d, log_u)
    log_g, a, b = closed_form_coefficients(p.base)
    # D_opt(C) = (C/6)^b / G  =>  C/6 = (G U_D)^(1/b);  N_opt = G (C/6)^a
    log_n_opt = log_g + a / b * (log_g + log_ud)
    log_un = jnp.minimum(log_n, log_n_opt)
    return parametric_loss(p.base, _log_effective(log_un, log_n, p.rn_star),
                           _log_effective(log_ud, log_d, p.rd_star))


def loss(law: Law, log_n: Array, log_d: Array, log_u: Array | float = jnp.inf) -> Array:
    """Predicted loss of ``law`` at (N, D) given as logs; ``log_u`` only for DataConstrained."""
    if isinstance(law, Parametric):
        return parametric_loss(law, log_n, log_d)
    if isinstance(law, Kaplan):
        return kaplan_loss(law, log_n, log_d)
    if isinstance(law, DataConstrained):
        return data_constrained_loss(law, log_n, log_d, log_u)
    raise TypeError(f"{type(law).__name__} has no loss surface")


def irreducible_loss(law: Law) -> Array:
    """The loss as N, D -> infinity (E; 0 for Kaplan)."""
    if isinstance(law, Parametric):
        return jnp.exp(law.log_E)
    if isinstance(law, DataConstrained):
        return jnp.exp(law.base.log_E)
    if isinstance(law, Kaplan):
        return jnp.zeros_like(law.alpha_D)
    raise TypeError(f"{type(law).__name__} has no loss surface")


def closed_form_coefficients(p: Parametric) -> tuple[ArrayLike, ArrayLike, ArrayLike]:
    """(log G, a, b) of the compute-optimal allocation under C = 6ND:
    G = (alpha A / (beta B))^(1/(alpha+beta)), a = beta/(alpha+beta), b = alpha/(alpha+beta);
    N_opt = G (C/6)^a, D_opt = (C/6)^b / G."""
    s = p.alpha + p.beta
    log_g = (jnp.log(p.alpha) + p.log_A - jnp.log(p.beta) - p.log_B) / s
    return log_g, p.beta / s, p.alpha / s


# ----------------------------------------------------------------------------------------------
# Presets and user laws (host side).


@dataclass(frozen=True)
class LawSpec:
    """A named law: its parameters (a pytree of floats), source, and optional uncertainty. A
    validated host input (frozen, as every host input is; pytrees that cross jit are
    NamedTuples)."""

    name: str
    params: Law | MoELaw | KumarPrecision
    source: str = ""
    covariance: np.ndarray | None = None  # (log A, log B, log E, alpha, beta) order
    draws: np.ndarray | None = None  # bootstrap draws, rows in the covariance order
    validity: Validity | None = None  # the range of the runs it was fitted on
    link: dict | None = None  # a published loss -> downstream-metric link (``links``)
    residual_sd: float | None = None  # a fitted file's rmse of log-loss residuals (the noise of its runs)

    @property
    def kind(self) -> str:
        return {Parametric: "parametric", Kaplan: "kaplan", DataConstrained: "data-constrained",
                TokensPerParam: "rule", JointMoE: "moe-joint", FineGrainedMoE: "moe-fine-grained",
                KumarPrecision: "precision"}[type(self.params)]

    def describe(self) -> str:
        """Human-readable formula with its numbers."""
        p = self.params
        if isinstance(p, Parametric):
            return (f"L = {math.exp(p.log_E):.4g} + {math.exp(p.log_A):.4g}/N^{p.alpha:.4g} + "
                    f"{math.exp(p.log_B):.4g}/D^{p.beta:.4g}")
        if isinstance(p, Kaplan):
            return (f"L = [({math.exp(p.log_Nc):.3g}/N)^({p.alpha_N:.3g}/{p.alpha_D:.3g}) + "
                    f"{math.exp(p.log_Dc):.3g}/D]^{p.alpha_D:.3g}")
        if isinstance(p, TokensPerParam):
            return f"D = {p.ratio:g} x N (no loss surface)"
        if isinstance(p, JointMoE):
            sign = lambda v: f"{'+' if v >= 0 else '-'} {abs(v):.4g}"  # noqa: E731
            return (f"L = {math.exp(p.log_a):.4g} Ê^{p.delta:.4g} N_act^({p.alpha:.4g} {sign(p.gamma)} ln Ê) + "
                    f"{math.exp(p.log_b):.4g} Ê^{p.omega:.4g} D^({p.beta:.4g} {sign(p.zeta)} ln Ê) + {p.c:.4g}")
        if isinstance(p, FineGrainedMoE):
            return (f"L = {p.c:.4g} + ({p.g:.4g}/G^{p.gamma:.4g} + {p.a:.4g})/N^{p.alpha:.4g} + "
                    f"{p.b:.4g}/D^{p.beta:.4g} (E = {p.expansion:g})")
        if isinstance(p, KumarPrecision):
            return (f"L = {math.exp(p.log_A):.4g}/N_eff^{p.alpha:.4g} + {math.exp(p.log_B):.4g}/D^{p.beta:.4g} + "
                    f"{math.exp(p.log_E):.4g}, N_eff = N f_w f_a f_kv")
        return "data-constrained"


_PARAMETRIC_KEYS = ("E", "A", "B", "alpha", "beta")
#: the constants of each mixture-of-experts law kind, as published (a and b of the joint law as
#: themselves, not logs)
MOE_KEYS = {"moe-joint": ("a", "alpha", "delta", "gamma", "b", "beta", "omega", "zeta", "e_start", "e_max", "c"),
            "moe-fine-grained": ("a", "alpha", "b", "beta", "g", "gamma", "c", "expansion", "c_f", "c_r")}
POSITIVE_MOE_KEYS = {"a", "b", "c", "g", "e_start", "e_max", "expansion", "c_f", "c_r"}


def parametric_from_mapping(m: dict, where: str) -> Parametric:
    """Build a Parametric law from E, A, B, alpha, beta (or log_E, log_A, log_B)."""
    vals = {}
    for k in ("E", "A", "B"):
        if f"log_{k}" in m:
            vals[f"log_{k}"] = number_at(m[f"log_{k}"], f"{where}.log_{k}", units=None)
            if abs(vals[f"log_{k}"]) > 700:  # exp must stay a float64
                raise InputError(f"{where}.log_{k}", f"must be in [-700, 700], got {vals[f'log_{k}']:g}")
        elif k in m:
            v = number_at(m[k], f"{where}.{k}", units=None)
            if v <= 0:
                raise InputError(f"{where}.{k}", f"must be > 0, got {v}")
            vals[f"log_{k}"] = math.log(v)
        else:
            raise InputError(f"{where}.{k}", "missing; a parametric law needs E, A, B, alpha, beta")
    for k in ("alpha", "beta"):
        if k not in m:
            raise InputError(f"{where}.{k}", "missing; a parametric law needs E, A, B, alpha, beta")
        v = number_at(m[k], f"{where}.{k}", units=None)
        if not 0 < v < 10:
            raise InputError(f"{where}.{k}", f"must be in (0, 10), got {v}")
        vals[k] = v
    return Parametric(**vals)


def moe_from_mapping(kind: str, m: dict, where: str) -> MoELaw:
    """A mixture-of-experts law of ``kind`` ("moe-joint" or "moe-fine-grained") from its
    published constants (``MOE_KEYS``); scales, E_start < E_max and the FLOPs constants must be
    positive. Errors name ``where.key``."""
    vals = {}
    for k in MOE_KEYS[kind]:
        if k not in m:
            raise InputError(f"{where}.{k}", f"missing; a {kind} law needs {', '.join(MOE_KEYS[kind])}")
        vals[k] = number_at(m[k], f"{where}.{k}", units=None)
        if k in POSITIVE_MOE_KEYS and vals[k] <= 0:
            raise InputError(f"{where}.{k}", f"must be > 0, got {vals[k]:g}")
    if kind == "moe-fine-grained":
        return FineGrainedMoE(**vals)
    if not vals["e_start"] < vals["e_max"]:
        raise InputError(f"{where}.e_max", f"must be greater than e_start ({vals['e_start']:g}), got {vals['e_max']:g}")
    return JointMoE(log_a=math.log(vals.pop("a")), log_b=math.log(vals.pop("b")), **vals)


def _matrix(v: Any, where: str, rows: int | None) -> np.ndarray:
    """A finite float64 matrix with 5 columns (the covariance order) and ``rows`` rows (any if None)."""
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(where,
                         "must be a matrix of numbers with 5 columns (log A, log B, log E, alpha, beta)") from None
    if a.ndim != 2 or a.shape[1] != 5 or a.shape[0] < 1 or (rows is not None and a.shape[0] != rows):
        shape = "5x5" if rows else "k x 5 (k >= 1)"
        raise InputError(where, f"must be a {shape} matrix, got shape {'x'.join(map(str, a.shape)) or 'scalar'}")
    if not np.isfinite(a).all():
        raise InputError(where, "must hold finite numbers only")
    return a


def data_constrained_constants() -> tuple[float, float, str]:
    """(R_D*, R_N*, source) of the data-constrained law."""
    d = data_toml("laws.toml")["data_constrained"]
    return float(d["rd_star"]), float(d["rn_star"]), d["source"]


def data_constrained(base: Parametric) -> DataConstrained:
    """``base`` under repeated data: the Muennighoff et al. 2023 form with its fitted R_D*, R_N*."""
    rd, rn, _ = data_constrained_constants()
    return DataConstrained(base, rd, rn)


def optimal_exponents(law: Law | KumarPrecision) -> tuple[float, float]:
    """(a, b) with N_opt ∝ C^a and D_opt ∝ C^b under C = 6ND (a + b = 1). Parametric:
    a = beta/(alpha+beta); Kaplan: a = alpha_D/(alpha_D+alpha_N) (not the paper's 0.73, which
    it measured under a different compute count; README); a rule: 1/2."""
    if isinstance(law, DataConstrained):
        law = law.base
    if isinstance(law, Parametric | KumarPrecision):  # the precision law at any fixed precision
        a = float(law.beta) / (float(law.alpha) + float(law.beta))
    elif isinstance(law, Kaplan):
        a = float(law.alpha_D) / (float(law.alpha_D) + float(law.alpha_N))
    else:
        a = 0.5
    return a, 1.0 - a


def preset_rows() -> list[dict]:
    """One row per preset (``budgetopt laws``): name, kind, formula, exponents a and b, the
    parameters of a parametric law, whether it carries a covariance, and its source."""
    rows = []
    for name in preset_names():
        spec = get_preset(name)
        if is_moe(spec.params):  # N* depends on the expert count or granularity too: no one exponent
            row = {"name": name, "kind": spec.kind, "formula": spec.describe(), "a": None, "b": None}
        else:
            a, b = optimal_exponents(spec.params)
            row = {"name": name, "kind": spec.kind, "formula": spec.describe(), "a": round(a, 4), "b": round(b, 4)}
        if isinstance(spec.params, Parametric):
            p = spec.params
            row.update({"E": math.exp(p.log_E), "A": math.exp(p.log_A), "B": math.exp(p.log_B),
                        "alpha": float(p.alpha), "beta": float(p.beta)})
        row["uncertainty"] = "covariance" if spec.covariance is not None else None
        row["source"] = spec.source
        rows.append(row)
    return rows


def preset_names() -> list[str]:
    return [k for k, v in data_toml("laws.toml").items() if "kind" in v]


def get_preset(name: str, ratio: float | None = None) -> LawSpec:
    """A preset by name (see ``budgetopt laws``); unknown names are an InputError."""
    data = data_toml("laws.toml")
    if name not in data or "kind" not in data[name]:
        raise ParameterError("law", f"unknown law {name!r}; known: {', '.join(preset_names())}")
    e = data[name]
    valid = from_mapping(e["validity"], name) if "validity" in e else None
    if e["kind"] == "parametric":
        cov = np.asarray(e["covariance"], dtype=np.float64) if "covariance" in e else None
        return LawSpec(name, parametric_from_mapping(e, name), e["source"], covariance=cov, validity=valid,
                       link=check_link(e["link"], f"{name}.link") if "link" in e else None)
    if e["kind"] in MOE_KEYS:
        return LawSpec(name, moe_from_mapping(e["kind"], e, name), e["source"], validity=valid)
    if e["kind"] == "precision":
        logs = {f"log_{k}": math.log(e[k]) for k in ("A", "B", "E")}
        rest = {k: float(e[k]) for k in KumarPrecision._fields if not k.startswith("log_")}
        return LawSpec(name, KumarPrecision(**logs, **rest), e["source"], validity=valid)
    if e["kind"] == "kaplan":
        return LawSpec(name, Kaplan(math.log(e["Nc"]), math.log(e["Dc"]), e["alpha_N"], e["alpha_D"]), e["source"],
                       validity=valid)
    r = require_in(float(e["ratio"] if ratio is None else ratio), "ratio", 0.0, low_open=True,
                   what="tokens per parameter")
    return LawSpec(name if ratio is None else f"{name}:{r:g}", TokensPerParam(r), e["source"])


_KV = re.compile(r"^\s*([A-Za-z_]+)\s*=\s*(\S+)\s*$")


def law_from_params(text: str) -> LawSpec:
    """``E=1.69,A=406.4,B=410.7,alpha=0.34,beta=0.28`` -> a custom parametric law."""
    m: dict[str, float] = {}
    for part in text.split(","):
        kv = _KV.match(part)
        if not kv:
            raise ParameterError("law_params",
                                 f"cannot read {part.strip()!r}; expected KEY=VALUE with keys E, A, B, alpha, beta")
        key = kv.group(1)
        if key not in _PARAMETRIC_KEYS:
            raise ParameterError("law_params", f"unknown key {key!r}; allowed: E, A, B, alpha, beta")
        if key in m:
            raise ParameterError(f"law_params.{key}", "given twice; give each of E, A, B, alpha, beta once")
        try:
            m[key] = float(kv.group(2))
        except ValueError:
            raise ParameterError(f"law_params.{key}", f"cannot read {kv.group(2)!r} as a number") from None
    try:
        params = parametric_from_mapping(m, "law_params")
    except InputError as e:  # a missing or out-of-range key: name it under the parameter
        raise ParameterError(e.field, e.message) from None
    return LawSpec("custom", params, "user-supplied parameters")


def law_from_file(path: str | Path) -> LawSpec:
    """A parametric law from a JSON (as written by ``budgetopt fit``) or TOML file with keys
    E, A, B, alpha, beta; bootstrap draws and covariance are kept when present."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        m = load_json(path, "law_file", "a JSON law file")
    else:
        m = load_toml(path, "law_file", "a TOML law file")
    if not isinstance(m, dict):
        raise ParameterError("law_file", f"{path} must hold an object with E, A, B, alpha, beta")
    if m.get("kind") in MOE_KEYS:  # a mixture-of-experts law (`fit --form ... --law-out`): its constants
        consts = m.get("constants")
        if not isinstance(consts, dict):
            raise InputError(f"{path.name}.constants", f"must be a table of the {m['kind']} law's constants")
        valid = from_mapping(m["validity"], path.name) if isinstance(m.get("validity"), dict) else None
        return LawSpec(str(m.get("name", path.stem)), moe_from_mapping(m["kind"], consts, f"{path.name}.constants"),
                       f"fitted file {path}", validity=valid)
    params = parametric_from_mapping(m, f"{path.name}")
    boot = m.get("bootstrap") or {}
    if not isinstance(boot, dict):
        raise InputError(f"{path.name}.bootstrap", "must be an object with draws and/or cov")
    draws = _matrix(boot["draws"], f"{path.name}.bootstrap.draws", None) if "draws" in boot else None
    cov = _matrix(boot["cov"], f"{path.name}.bootstrap.cov", 5) if "cov" in boot else None
    if cov is not None and (not np.allclose(cov, cov.T, rtol=1e-6, atol=1e-12)
                            or np.linalg.eigvalsh(0.5 * (cov + cov.T)).min() < -1e-9 * max(1.0, np.abs(cov).max())):
        raise InputError(f"{path.name}.bootstrap.cov", "must be a symmetric positive semi-definite 5x5 matrix")
    valid = from_mapping(m["validity"], path.name) if isinstance(m.get("validity"), dict) else None
    if valid is not None and not valid.fitted_by and m.get("approach") in MODEL_ERROR_ENTRY:
        valid = dataclasses.replace(valid, fitted_by=m["approach"])  # a file written before fitted_by was recorded
    sd = m.get("rmse_log_loss")
    if sd is not None and (isinstance(sd, bool) or not isinstance(sd, (int, float)) or not 0 <= sd < 1):
        raise InputError(f"{path.name}.rmse_log_loss", f"must be a log-loss standard deviation in [0, 1), got {sd!r}")
    return LawSpec(str(m.get("name", path.stem)), params, f"fitted file {path}", covariance=cov, draws=draws,
                   validity=valid, residual_sd=None if sd is None else float(sd))


UNCERTAINTIES = ("none", "covariance", "bootstrap")  # where a law's parameter uncertainty comes from


def uncertainty_problem(spec: LawSpec, kind: str) -> str | None:
    """Why ``spec`` cannot carry the parameter uncertainty ``kind`` (one of UNCERTAINTIES), or
    None: the one check behind a scenario's ``law.uncertainty`` and the ladder's prior."""
    if kind not in UNCERTAINTIES:
        return f"unknown {kind!r}; allowed: {', '.join(UNCERTAINTIES)}"
    if kind == "covariance" and spec.covariance is None:
        return f"{spec.name} has no covariance; use 'none', or a fitted file with 'bootstrap'"
    if kind == "bootstrap" and spec.draws is None:
        return f"{spec.name} has no bootstrap draws; write a law file with `budgetopt fit --bootstrap`"
    if kind != "none" and not isinstance(spec.params, Parametric):
        return "only parametric laws carry parameter uncertainty"
    return None


def default_uncertainty(spec: LawSpec) -> str:
    """The parameter uncertainty a law carries: its covariance, else its bootstrap draws, else
    none (the law fixed). The default of the ladder's prior and of a sweep from flags."""
    return "covariance" if spec.covariance is not None else "bootstrap" if spec.draws is not None else "none"


def is_moe(law) -> bool:
    """Whether a law is a mixture-of-experts law (its variables are not the dense (N, D))."""
    return isinstance(law, MoELaw)


def is_precision(law) -> bool:
    """Whether a law is the precision law (its loss needs the training precision too)."""
    return isinstance(law, KumarPrecision)


def resolve_law(law: str | None = None, law_params: str | None = None, law_file: str | Path | None = None,
                ratio: float | None = None, default: str = "besiroglu2024", moe: bool = False,
                precision: bool = False) -> LawSpec:
    """The one way the CLI and library pick a law: a preset name, explicit parameters, or a file.
    ``moe``: whether the caller takes a mixture-of-experts law (``optimize`` and ``audit`` do);
    ``precision``: whether it takes the precision law (``optimize`` does)."""
    given = [x for x in (law, law_params, law_file) if x is not None]
    if len(given) > 1:
        raise ParameterError("law", "give only one of {law}, {law_params}, {law_file}", names=True)
    if law_params is not None:
        return law_from_params(law_params)
    if law_file is not None:
        spec = law_from_file(law_file)
        if is_moe(spec.params) and not moe:
            raise ParameterError("law_file", f"{law_file} holds a mixture-of-experts law: `budgetopt optimize` (with "
                                 "--experts or --granularity) and `budgetopt audit` use it so far")
        return spec
    name = law if law is not None else default
    if ratio is not None and name != "tokens-per-param":
        raise ParameterError("ratio", "only applies to {law} tokens-per-param", names=True)
    spec = get_preset(name, ratio)
    if is_moe(spec.params) and not moe:
        raise ParameterError("law", f"{name} is a mixture-of-experts law: `budgetopt optimize` (with --experts or "
                             "--granularity) and `budgetopt audit` use it so far")
    if is_precision(spec.params) and not precision:
        raise ParameterError("law", f"{name} is the precision law: `budgetopt optimize --precision` uses it")
    return spec


def to_array_law(law: Law | MoELaw, dtype=None) -> Law | MoELaw:
    """Leaves as jnp arrays of ``dtype`` (default: JAX's default float)."""
    return jax.tree_util.tree_map(lambda v: jnp.asarray(v, dtype=dtype or jnp.result_type(float)), law)


# ----------------------------------------------------------------------------------------------
# A law drawn from a prior (device side): the sweep's samples and the ladder's true laws.

#: Stream ids of the counter-based generator the law draw uses: LAW_STREAM .. LAW_STREAM + 4
#: (one per parameter). Part of a sample's definition: never renumber.
LAW_STREAM = 0


def draw_law(kind: str, mean, spread, key: tuple, index_lo, index_hi, dtype) -> Parametric | None:
    """The parametric law of each global index (``index_hi`` * 2^32 + ``index_lo``; leaves of
    their shape) drawn from a prior of ``kind`` (one of UNCERTAINTIES): "covariance" — ``mean``
    (5 values) plus the lower-triangular Cholesky factor ``spread`` [5][5] times five normals;
    "bootstrap" — a row of the draws ``spread`` [k, 5]; "none" — None (the law is fixed). The
    one law draw of the package: ``sweep`` passes Python floats (XLA folds them into the
    program), ``ladder`` run-time arrays (one program serves every prior), with the same
    arithmetic, so sweep sample i and ladder i of a seed draw the same law, bit for bit."""
    if kind == "covariance":
        z = [jax.scipy.special.ndtri(uniform(key, index_lo, index_hi, LAW_STREAM + j, dtype)) for j in range(5)]
        # theta = mean + L z written as the 15 multiply-adds of the lower triangle: as a 5x5 dot,
        # XLA CPU recomputed the draw inside every consumer (measured 14x slower)
        return Parametric(*[sum((spread[i][k] * z[k] for k in range(1, i + 1)), spread[i][0] * z[0]) + mean[i]
                            for i in range(5)])
    if kind == "bootstrap":
        u = uniform(key, index_lo, index_hi, LAW_STREAM, jnp.float32)
        n = spread.shape[0]
        return Parametric(*spread[jnp.minimum((u * n).astype(jnp.int32), n - 1)].T)
    return None
