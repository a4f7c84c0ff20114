"""`budgetopt ladder`, ladder design by simulation: which ladder of small runs buys the most certain
forecast of the compute-optimal allocation at a target budget?

A **design** is a set of isoFLOP budgets, the model sizes per budget (count, log-spread, centre
relative to the prior's optimum) and repeats; every run of a budget-C curve costs C (6·N·D = C),
so the design costs repeats x points x the sum of its budgets. Ladder s of a design is simulated
as a pure function of (seed, s): draw the true law θ_s from the prior (a preset's covariance, a
fitted file's bootstrap draws, or the fixed law), draw each run's log loss as log L_θs(N, D) +
σ·z (+ a per-budget offset, + a deterministic bias for under-tuned small runs), fit the ladder
(VPNLS, Approach 3 or Approach 2) and forecast N̂* at the target. It is scored against θ_s's own
optimum: the error in log N*, the regret L_θs(N̂*, C/6N̂*) − L*_θs(C) in nats, and the compute
the regret is worth (the fraction of C the true optimum would not have needed to reach the same
loss). Every (design, ladder) pair of a chunk is one vmapped call, split over the local devices.

A **WSD design** (``schedule = "wsd"``; Hägele et al. 2024, arXiv 2405.18392) trains the same
points from warmup-stable-decay trunks: its sizes are snapped to one grid in log N (the design's
own spacing, anchored at the top budget's sizes; a budget's sizes move together by at most half a
step and stay on its isoFLOP curve), each size trains one constant-LR trunk to its largest D, and
every other D of that size is a branch whose last ``cooldown`` fraction of tokens decays. It costs
per trunk 6·N·D_max + Σ cooldown·6·N·D_i over its other points — C_max + cooldown·Σ C_i, since
each point keeps its budget — instead of Σ C_i as separate runs. A branch's final loss is not a
tuned run's: each WSD point's log loss carries extra noise ``wsd_sigma`` (default: how far the
multi-power curve law misses held-out schedules' final losses, ``data/curve_law_error.toml``,
0.0034 in log loss on Luo et al. 2025's curves).

Randomness is counter-based (``distributions.random_bits``): the law of ladder s is
``laws.draw_law`` at index s (ladder s and sweep sample s of a seed draw the same law), the
noise of run slot j of ladder s the counter (lo = s, hi = j) on its own stream, where j numbers
(budget, point, repeat) within fixed caps. So every design sees the same laws and
noise whatever the other designs (common random numbers: their differences are not Monte Carlo
noise), and the results do not depend on the chunk size or the device count, bit for bit.

Units: N parameters, D tokens, C FLOPs, L nats per token, regret in nats.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, NotRequired, TypedDict

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P
from jaxtyping import Array

from ..core.distributions import key_words, uniform
from ..core.errors import InputError, ParameterError
from ..core.files import data_toml, load_toml
from ..core.lbfgs import lbfgs_minimize
from ..core.runtime import jax_x64
from ..core.units import TRAIN_FLOPS_PER_PARAM_TOKEN, gpu_hours, number_at, require_in
from ..model.allocation import closed_form_x, log_compute_for_loss_closed_form
from ..model.hardware import Cluster
from ..model.laws import UNCERTAINTIES, LawSpec, Parametric, default_uncertainty, draw_law, loss, uncertainty_problem
from ..model.validity import MODEL_ERROR_ENTRY, attach, extrapolation
from . import vpnls
from .approach2 import fit_approach2_fixed
from .approach3 import irls_lm, objective
from .runs import APPROACHES

LADDER_APPROACHES = ("vpnls", "3", "2")  # how a simulated ladder can be fitted (keys of runs.APPROACHES)
#: what each approach does on a simulated ladder, beside its name in ``runs.APPROACHES``
APPROACH_NOTES = {"3": " (Huber: IRLS + L-BFGS from the VPNLS fit)"}
MAX_BUDGETS, MAX_POINTS, MAX_REPEATS = 16, 64, 16  # caps that number a run's noise slot
MAX_LADDERS = 1_000_000
MAX_CHUNK = 1 << 16  # pairs per compiled call; the default is 128 per device
# random streams; the law's: LAW_STREAM .. + 4 (laws.draw_law), hi = 0
NOISE_STREAM, CURVE_STREAM, MODEL_STREAM, WSD_STREAM = 20, 21, 22, 23
DEFAULT_SIGMA = 0.005  # log-loss noise per run without a fitted law's residuals
FAILURE_WARN = 0.05  # a design whose fits fail (or do not converge) more often is flagged, not recommended
HUBER_DELTA = 1e-3  # Approach 3's Huber threshold on log-loss residuals (Hoffmann et al. 2022)
IRLS_STEPS = 30
POLISH_STEPS = 200
GRAD_TOL = 1e-8  # Approach 3 converged: |grad| of the Huber objective below this (as `fit`)
MAX_NAME = 40  # a design's name is a table cell and a figure label
DESIGN_KEYS = {"name", "budgets", "points", "spread", "centre", "repeats", "schedule", "cooldown"}
SCHEDULES = ("final", "wsd")  # a point per separate run | WSD trunks with cooldown branches
DEFAULT_COOLDOWN = 0.2  # Hägele et al. 2024: a 20 % cooldown matches a cosine run's final loss


@dataclass(frozen=True)
class Design:
    """A ladder: isoFLOP ``budgets`` (FLOPs), ``points`` sizes per budget spaced evenly in log N
    from centre/spread to centre x spread around ``centre`` x the prior's N*(C), each trained
    ``repeats`` times: separate runs (``schedule`` "final") or WSD trunks per size with branches
    whose last ``cooldown`` fraction decays ("wsd"; see the module docstring). Validated on
    construction (errors name the field; a designs file renames them to its TOML path)."""

    name: str
    budgets: tuple[float, ...]
    points: int
    spread: float
    centre: float = 1.0
    repeats: int = 1
    schedule: str = "final"
    cooldown: float = DEFAULT_COOLDOWN

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip() or not self.name.isprintable() \
                or len(self.name) > MAX_NAME:
            raise ParameterError("name", f"must be a printable name of 1 to {MAX_NAME} characters, got {self.name!r}")
        if not self.budgets or len(self.budgets) > MAX_BUDGETS:
            raise ParameterError("budgets", f"must list 1 to {MAX_BUDGETS} compute budgets, got {len(self.budgets)}")
        for b in self.budgets:
            require_in(b, "budgets", 0.0, low_open=True, what="FLOPs")
        if len(set(self.budgets)) != len(self.budgets):
            raise ParameterError("budgets", "must be distinct")
        if not 3 <= self.points <= MAX_POINTS:
            raise ParameterError("points", f"must be an integer from 3 to {MAX_POINTS} (a parabola needs 3), "
                                 f"got {self.points}")
        require_in(self.spread, "spread", 1.0, 1000.0, low_open=True,
                   what="a factor (sizes from centre/spread to centre x spread)")
        require_in(self.centre, "centre", 0.01, 100.0, what="a factor of the prior's optimum")
        if not 1 <= self.repeats <= MAX_REPEATS:
            raise ParameterError("repeats", f"must be an integer from 1 to {MAX_REPEATS}, got {self.repeats}")
        if self.schedule not in SCHEDULES:
            raise ParameterError("schedule", f"must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        require_in(self.cooldown, "cooldown", 0.0, 1.0, low_open=True,
                   what="the fraction of a branch's tokens trained while the learning rate decays")

    @property
    def runs(self) -> int:
        return len(self.budgets) * self.points * self.repeats

    @property
    def size_step(self) -> float:
        """The step in ln N between a budget's neighbouring sizes."""
        return 2.0 * math.log(self.spread) / (self.points - 1)

    @property
    def separate_cost(self) -> float:
        """Σ 6·N·D over the points as separate runs, FLOPs: each run of a budget-C curve costs C
        (a final-loss design's cost; a WSD design's is ``design_cost``)."""
        return self.repeats * self.points * float(sum(self.budgets))


def wsd_twin(design: Design, cooldown: float) -> Design:
    """The WSD design of the same points as ``design`` (named ``NAME/wsd``)."""
    return dataclasses.replace(design, name=f"{design.name[:MAX_NAME - 4]}/wsd", schedule="wsd", cooldown=cooldown)


def design_sizes(design: Design, prior: Parametric) -> np.ndarray:
    """[budgets, points] ln N of a design's sizes: ``points`` evenly in ln N from centre/spread to
    centre x spread around ``centre`` x the prior's N*(C). A WSD design's are snapped to the grid
    of the same spacing anchored at the top budget's sizes (each budget's sizes move together, by
    at most half a step), so that budgets share trunks."""
    with jax_x64():
        lc = np.log(np.asarray(design.budgets, np.float64))
        centre = np.asarray(closed_form_x(Parametric(*(jnp.float64(v) for v in prior)),
                                          jnp.asarray(lc))) + math.log(design.centre)
    log_n = centre[:, None] + math.log(design.spread) * np.linspace(-1.0, 1.0, design.points)
    if design.schedule == "wsd":
        step = design.size_step
        anchor = log_n[int(np.argmax(lc)), 0]
        # floor(x + 1/2), not round-half-even: a budget's sizes share one fractional part and must move together
        log_n = anchor + step * np.floor((log_n - anchor) / step + 0.5 + 1e-9)
    return log_n


class DesignCost(NamedTuple):
    """What a design costs (FLOPs): ``cost`` as trained, ``separate`` as separate runs, and the
    number of runs started (``trunks``: WSD trunks, or every run of a final-loss design)."""

    cost: float
    separate: float
    trunks: int


def design_cost(design: Design, prior: Parametric) -> DesignCost:
    """A design's cost. WSD: per trunk (one size, one repeat) C_max + cooldown x Σ C_i over its
    other budgets (6·N·D_max for the trunk, cooldown·6·N·D_i per branch; D = C / 6N)."""
    if design.schedule == "final":
        return DesignCost(design.separate_cost, design.separate_cost, design.runs)
    log_n = design_sizes(design, prior)
    grid = np.rint((log_n - log_n.min()) / design.size_step).astype(int)  # a size's grid index: its trunk
    cost = 0.0
    trunks = np.unique(grid)
    for k in trunks:
        c = np.array([b for b, row in zip(design.budgets, grid) if k in row])
        cost += c.max() + design.cooldown * (c.sum() - c.max())
    return DesignCost(design.repeats * cost, design.separate_cost, design.repeats * len(trunks))


@dataclass(frozen=True)
class Noise:
    """The loss noise of a simulated run, in log loss: ``sigma`` per run (seed-to-seed and fit
    residual; None: the law file's ``rmse_log_loss``, else DEFAULT_SIGMA), ``curve_sigma`` an
    offset shared by a budget's runs (a learning-rate schedule tuned per budget),
    ``bias_per_decade`` added per decade a budget lies below the target (small runs under-tuned:
    their losses too high). Validated on construction: each in [0, 1]. And the model error of
    the forecast (``model_error``, DESIGN §17): ln N̂* moved by (drift + sd z) x the decades from
    the design's top budget to the target, z ~ N(0, 1) per ladder — the law's form not holding
    across scales, as backtests of real ladders measure it (``data/model_error.toml``). A WSD
    design's points add ``wsd_sigma`` (log loss; None: the multi-power curve law's held-out
    final-loss error, ``data/curve_law_error.toml``)."""

    sigma: float | None = None
    curve_sigma: float = 0.0
    bias_per_decade: float = 0.0
    model_drift_per_decade: float = 0.0
    model_sd_per_decade: float = 0.0
    model_error: str = "none"  # where the model error comes from: none, calibrated (approach), or a file
    wsd_sigma: float | None = None

    def __post_init__(self):
        for name in ("sigma", "curve_sigma", "bias_per_decade", "wsd_sigma"):
            v = getattr(self, name)
            if v is not None:
                require_in(v, {"sigma": "noise", "wsd_sigma": "wsd_noise"}.get(name, name), 0.0, 1.0,
                           what="a log-loss standard deviation or bias")
        require_in(self.model_drift_per_decade, "model_error", -2.0, 2.0, what="a drift of ln N* per decade")
        require_in(self.model_sd_per_decade, "model_error", 0.0, 2.0, what="a spread of ln N* per decade")

    def for_law(self, law: LawSpec) -> Noise:
        """This noise with ``sigma`` decided (as given, else the law file's residuals, else
        DEFAULT_SIGMA) and ``wsd_sigma`` (as given, else the curve law's calibrated error)."""
        sigma = self.sigma if self.sigma is not None else \
            law.residual_sd if law.residual_sd is not None else DEFAULT_SIGMA
        wsd = self.wsd_sigma if self.wsd_sigma is not None else \
            float(data_toml("curve_law_error.toml")["form"]["multipower"]["final_rms_log"])
        return dataclasses.replace(self, sigma=sigma, wsd_sigma=wsd)


def check_ladder_approach(approach: str) -> str:
    """One of LADDER_APPROACHES (how a simulated ladder is fitted)."""
    if approach not in LADDER_APPROACHES:
        raise ParameterError("approach", f"must be one of {', '.join(LADDER_APPROACHES)}, got {approach!r}")
    return approach


MODEL_ERRORS = ("calibrated", "none")


def model_error_noise(noise: Noise, spec: str, approach: str) -> Noise:
    """``noise`` with the model error ``spec`` names: "none"; "calibrated", the entry of
    ``data/model_error.toml`` for ``approach`` (backtests of real ladders); or a TOML file with
    ``n_star_drift_per_decade`` and ``n_star_sd_per_decade`` (top level, or in a table named
    like the calibration's: approach2, approach3, vpnls)."""
    check_ladder_approach(approach)
    if spec == "none":
        return dataclasses.replace(noise, model_drift_per_decade=0.0, model_sd_per_decade=0.0, model_error="none")
    if spec == "calibrated":
        entry, where = data_toml("model_error.toml")[MODEL_ERROR_ENTRY[approach]], "model_error.toml"
        label = f"calibrated ({MODEL_ERROR_ENTRY[approach]}: {entry['source']})"
    else:
        path = Path(spec)
        if not path.suffix == ".toml":
            raise ParameterError("model_error", f"must be {' | '.join(MODEL_ERRORS)} or a .toml file, got {spec!r}")
        d = load_toml(path, "model_error", "a model-error TOML file")
        entry = d.get(MODEL_ERROR_ENTRY[approach], d)
        where, label = path.name, f"file {path.name}"
    for k in ("n_star_drift_per_decade", "n_star_sd_per_decade"):
        v = entry.get(k) if isinstance(entry, dict) else None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ParameterError("model_error", f"{where}: {k} must be a number, got {v!r}")
    return dataclasses.replace(noise, model_drift_per_decade=float(entry["n_star_drift_per_decade"]),
                               model_sd_per_decade=float(entry["n_star_sd_per_decade"]), model_error=label)


class Outcome(NamedTuple):
    """One simulated ladder's forecast (leaves gain leading axes): error in log N* (forecast -
    truth), regret (nats), fraction of the target compute the regret is worth, whether a forecast
    exists, and whether the fit converged."""

    log_n_error: Array
    regret: Array
    compute_lost: Array
    ok: Array
    converged: Array


def _sci(x: float) -> str:
    m, e = f"{x:.0e}".split("e")
    return f"{m}e{int(e)}"


def family(target: float) -> list[Design]:
    """The built-in designs: 5 budgets over two decades ending at 1e-5, 1e-4 or 1e-3 of the
    target, 3, 5, 7 or 9 sizes per budget, spread ±2x or ±4x around the prior's optimum
    (24 designs, 0.004 % to 1.3 % of the target), named largest budget/sizes/spread."""
    out = []
    for top in (1e-5, 1e-4, 1e-3):
        hi = target * top
        budgets = tuple(float(hi * 10 ** (k / 2 - 2)) for k in range(5))
        for points in (3, 5, 7, 9):
            for spread in (2.0, 4.0):
                out.append(Design(f"{_sci(hi)}/{points}/±{spread:g}x", budgets, points, spread))
    return out


def _int(v: Any, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise InputError(where, f"must be an integer, got {v!r}")
    return v


def _budgets(v: Any, where: str) -> tuple[float, ...]:
    """A list of FLOPs, or {low, high, count} log-spaced."""
    if isinstance(v, dict):
        extra = set(v) - {"low", "high", "count"}
        if extra or set(v) != {"low", "high", "count"}:
            raise InputError(where, "must be a list of FLOPs or a table {low, high, count}")
        lo = number_at(v["low"], f"{where}.low", units="flops")
        hi = number_at(v["high"], f"{where}.high", units="flops")
        n = _int(v["count"], f"{where}.count")
        if not (0 < lo < hi) or not 2 <= n <= MAX_BUDGETS:
            raise InputError(where, f"needs 0 < low < high and count from 2 to {MAX_BUDGETS}")
        return tuple(float(x) for x in np.geomspace(lo, hi, n))
    if not isinstance(v, list):
        raise InputError(where, "must be a list of FLOPs or a table {low, high, count}")
    return tuple(number_at(x, f"{where}[{i}]", units="flops") for i, x in enumerate(v))


def design_from_mapping(m: Any, where: str) -> Design:
    """A design from a TOML table (keys: name, budgets, points, spread, centre, repeats, schedule,
    cooldown)."""
    if not isinstance(m, dict):
        raise InputError(where, "must be a table")
    for k in m:
        if k not in DESIGN_KEYS:
            raise InputError(f"{where}.{k}", f"unknown key; allowed: {', '.join(sorted(DESIGN_KEYS))}")
    for k in ("budgets", "points", "spread"):
        if k not in m:
            raise InputError(f"{where}.{k}", "required")
    for k, default in (("name", where), ("schedule", "final")):
        if not isinstance(m.get(k, default), str):
            raise InputError(f"{where}.{k}", f"must be a string, got {m[k]!r}")
    try:
        return Design(m.get("name", where), _budgets(m["budgets"], f"{where}.budgets"),
                      _int(m["points"], f"{where}.points"), number_at(m["spread"], f"{where}.spread"),
                      number_at(m.get("centre", 1.0), f"{where}.centre"), _int(m.get("repeats", 1), f"{where}.repeats"),
                      m.get("schedule", "final"), number_at(m.get("cooldown", DEFAULT_COOLDOWN), f"{where}.cooldown"))
    except ParameterError as e:  # a field out of range: name it by its TOML path
        raise e.rename(lambda name: f"{where}.{name}") from None


def repeated_name(designs: Sequence[Design]) -> tuple[str, int] | None:
    """The first name two designs share and the index of its second design (None: all unique)."""
    names = [d.name for d in designs]
    dup = next((n for n in names if names.count(n) > 1), None)
    return None if dup is None else (dup, names.index(dup, names.index(dup) + 1))


def read_designs(path: str | Path) -> list[Design]:
    """Designs from a TOML file: an array of tables ``[[design]]``."""
    data = load_toml(path, "designs", "a designs TOML file")
    for k in data:
        if k != "design":
            raise InputError(k, "unknown section; a designs file holds [[design]] tables")
    items = data.get("design")
    if not isinstance(items, list) or not items:
        raise InputError("design", "the file must hold at least one [[design]] table")
    designs = [design_from_mapping(m, f"design[{i}]") for i, m in enumerate(items)]
    dup = repeated_name(designs)
    if dup is not None:
        raise InputError(f"design[{dup[1]}].name", f"{dup[0]!r} is used twice")
    return designs


# ----------------------------------------------------------------------------------------------
# the simulation


class DesignTable(NamedTuple):
    """Every design as padded rows (NumPy, float64): ``log_c`` [designs, budgets], ``log_n``,
    ``w`` (1 = a run, 0 = padding) and ``slot`` (the run's noise counter) [designs, budgets,
    runs per budget], ``curve`` [designs, budgets] (a real curve), ``wsd`` [designs] (1: a WSD
    design, whose points carry the extra noise)."""

    log_c: np.ndarray
    log_n: np.ndarray
    w: np.ndarray
    slot: np.ndarray
    curve: np.ndarray
    wsd: np.ndarray


def design_table(designs: Sequence[Design], prior: Parametric) -> DesignTable:
    """The runs of every design, sizes placed around the prior's optimum N*(C) (``design_sizes``)."""
    nb = max(len(d.budgets) for d in designs)
    m = max(d.points * d.repeats for d in designs)
    shape = (len(designs), nb, m)
    log_c, curve = np.zeros(shape[:2]), np.zeros(shape[:2], bool)
    log_n, w, slot = np.zeros(shape), np.zeros(shape), np.zeros(shape, np.uint32)
    for i, d in enumerate(designs):
        lc = np.log(np.asarray(d.budgets, np.float64))
        sizes = design_sizes(d, prior)
        k = d.points * d.repeats
        for b in range(len(d.budgets)):
            log_c[i, b], curve[i, b] = lc[b], True
            log_n[i, b, :k] = np.repeat(sizes[b], d.repeats)
            w[i, b, :k] = 1.0
            slots = [(b * MAX_POINTS + p) * MAX_REPEATS + r for p in range(d.points) for r in range(d.repeats)]
            slot[i, b, :k] = slots
        log_c[i, len(d.budgets):] = lc[-1]  # padding rows: any budget, weight 0
        log_n[i, :, k:] = log_n[i, :, :1]
        log_n[i, len(d.budgets):] = log_n[i, 0]
    wsd = np.array([d.schedule == "wsd" for d in designs], np.float64)
    return DesignTable(log_c, log_n, w, slot, curve, wsd)


def _outcome(law: Parametric, log_n_hat, log_target, converged) -> Outcome:
    """Score a forecast N̂* against the true law."""
    log_target = jnp.asarray(log_target, log_n_hat.dtype)
    log_c6 = log_target - math.log(TRAIN_FLOPS_PER_PARAM_TOKEN)
    x_true = closed_form_x(law, log_target)
    best = loss(law, x_true, log_c6 - x_true)
    got = loss(law, log_n_hat, log_c6 - log_n_hat)
    ok = jnp.isfinite(log_n_hat) & jnp.isfinite(got)
    regret = jnp.where(ok, got - best, jnp.nan)
    # the compute that reaches the forecast's loss on the true optimum: C' = C (excess)^(-1/g)
    lost = -jnp.expm1(log_compute_for_loss_closed_form(law, got) - log_target)
    return Outcome(jnp.where(ok, log_n_hat - x_true, jnp.nan), regret, jnp.where(ok, lost, jnp.nan), ok, converged & ok)


class Simulated(NamedTuple):
    """One simulated ladder's runs (leaves gain leading axes): the true law, the budgets
    [budgets], and per run [budgets, runs per budget] log N, log D, the observed loss (nats) and
    the weight (0 = padding); ``curve`` marks real budgets."""

    law: Parametric
    log_c: Array
    log_n: Array
    log_d: Array
    loss: Array
    w: Array
    curve: Array


class Config(NamedTuple):
    """The run-time inputs of the chunk program, as arrays, so that one compiled program (per
    approach, prior kind and layout shape) serves every law, noise, target and seed — and the
    persistent compile cache serves the next `budgetopt ladder` with other flags. ``spread``:
    the covariance's Cholesky factor [5, 5], the bootstrap draws [k, 5], or zeros [1, 5]."""

    key: Array
    mean: Array
    spread: Array
    sigma: Array
    curve_sigma: Array
    bias_per_decade: Array
    log_target: Array
    model_drift: Array
    model_sd: Array
    wsd_sigma: Array


def make_config(prior: LawSpec, uncertainty: str, noise: Noise, target: float, seed: int) -> Config:
    """The Config of a simulation (NumPy float64; the key words of ``seed`` as uint32); the
    noise's ``sigma`` as ``Noise.for_law`` decides it."""
    noise = noise.for_law(prior)
    spread = (np.linalg.cholesky(prior.covariance) if uncertainty == "covariance"
              else np.asarray(prior.draws, np.float64) if uncertainty == "bootstrap" else np.zeros((1, 5)))
    return Config(np.asarray(key_words(seed), np.uint32), np.array([float(v) for v in prior.params]), spread,
                  *(np.float64(v) for v in (noise.sigma, noise.curve_sigma, noise.bias_per_decade, math.log(target),
                                            noise.model_drift_per_decade, noise.model_sd_per_decade,
                                            noise.wsd_sigma)))


def true_law(cfg: Config, uncertainty: str, index: Array) -> Parametric:
    """Ladder ``index``'s true law: ``laws.draw_law`` with the prior as run-time arrays (the
    sweep's draw with the prior as constants), so ladder i and sweep sample i (same seed) draw
    the same law; the prior's mean when it is fixed."""
    law = draw_law(uncertainty, cfg.mean, cfg.spread, (cfg.key[0], cfg.key[1]), index, jnp.zeros_like(index),
                   cfg.mean.dtype)
    return Parametric(*cfg.mean) if law is None else law


def draw_ladder(design: Array, index: Array, tables: DesignTable, cfg: Config, uncertainty: str) -> Simulated:
    """Ladder ``index`` of design row ``design``: its true law and its runs' noisy losses (a WSD
    design's with ``wsd_sigma`` more, on its own stream: the final-loss twin's draws are the
    same). Pure."""
    log_c, log_n, w, slot, curve, wsd = (jnp.asarray(t)[design] for t in tables)
    dtype = log_n.dtype
    key = (cfg.key[0], cfg.key[1])
    law = true_law(cfg, uncertainty, index)
    log_d = log_c[:, None] - math.log(TRAIN_FLOPS_PER_PARAM_TOKEN) - log_n
    z = jax.scipy.special.ndtri(uniform(key, index, slot, NOISE_STREAM, dtype))
    zc = jax.scipy.special.ndtri(uniform(key, index, jnp.arange(log_c.shape[0], dtype=jnp.uint32), CURVE_STREAM, dtype))
    zw = jax.scipy.special.ndtri(uniform(key, index, slot, WSD_STREAM, dtype))
    log_obs = (jnp.log(loss(law, log_n, log_d)) + cfg.sigma * z + cfg.curve_sigma * zc[:, None]
               + cfg.bias_per_decade * ((cfg.log_target - log_c) / math.log(10.0))[:, None]
               + wsd * cfg.wsd_sigma * zw)
    return Simulated(law, log_c, log_n, log_d, jnp.exp(log_obs), w, curve)


def model_error(cfg: Config, index: Array, log_c: Array, curve: Array) -> Array:
    """Ladder ``index``'s model error in ln N̂*: (drift + sd z) x decades from the design's top
    budget to the target, z on its own stream (one per ladder, the same for every design)."""
    top = jnp.max(jnp.where(curve, log_c, -jnp.inf))
    z = jax.scipy.special.ndtri(uniform((cfg.key[0], cfg.key[1]), index, jnp.zeros_like(index), MODEL_STREAM,
                                        log_c.dtype))
    return (cfg.model_drift + cfg.model_sd * z) * (cfg.log_target - top) / math.log(10.0)


def simulate_one(design: Array, index: Array, tables: DesignTable, cfg: Config, approach: str,
                 uncertainty: str) -> Outcome:
    """Ladder ``index`` of design row ``design``: draw, fit, forecast (with the model error), score.
    Pure; vmapped by ``simulate``."""
    law, log_c, log_n, log_d, obs, w, curve = draw_ladder(design, index, tables, cfg, uncertainty)
    log_target = cfg.log_target
    shift = model_error(cfg, index, log_c, curve)
    if approach == "2":
        f = fit_approach2_fixed(log_c, log_n, obs, w, curve, log_target)
        converged = f.ok & (f.curves_used == jnp.sum(curve).astype(jnp.int32))  # every curve kept
        return _outcome(law, f.log_n_target + shift, log_target, converged)
    flat = [v.reshape(-1) for v in (log_n, jnp.broadcast_to(log_d, log_n.shape), obs, w)]
    f = vpnls.fit_one(*flat)
    theta = f.log_theta()
    converged = ~(f.at_grid_edge | f.at_zoom_edge) & ~jnp.any(f.clamped)
    if approach == "3":
        # as `fit`: IRLS-LM into the basin, then L-BFGS to the gradient tolerance (IRLS alone stalls
        # near 1e-9 on the Huber kinks)
        log_l = jnp.log(flat[2])
        theta, _, _ = irls_lm(theta, flat[0], flat[1], log_l, flat[3], HUBER_DELTA, IRLS_STEPS)
        fun = lambda t: objective(t, flat[0], flat[1], log_l, flat[3], HUBER_DELTA)  # noqa: E731
        theta, _, gn, _ = lbfgs_minimize(theta, fun, POLISH_STEPS, 1e-11)
        converged = converged & (gn < GRAD_TOL)
    fitted = Parametric(*theta)
    return _outcome(law, closed_form_x(fitted, log_target) + shift, log_target, converged)


BLOCK = 64  # (design, ladder) pairs vmapped together: every pair is computed at the same lane of a
# block of this size whatever the chunk or device count (XLA's rounding differs with the batch shape)


def pairs_per_call() -> int:
    """(design, ladder) pairs per call: 4 blocks per device (VPNLS's grid, 1600 exponent
    pairs x 7 supports per fit, stays in cache-sized pieces)."""
    return 4 * BLOCK * jax.local_device_count()


_PROGRAMS: dict = {}  # compiled chunk programs: a second simulate() does not retrace


def _program(approach: str, uncertainty: str):
    """The jitted chunk program of an approach and prior kind (the layout and the Config are
    arguments: jit retraces per shape only): the chunk split over the local devices
    (``shard_map``), each device mapping blocks of ``BLOCK`` (design, ladder) pairs, vmapped."""
    ident = (approach, uncertainty, tuple(d.id for d in jax.local_devices()))
    if ident not in _PROGRAMS:
        mesh = Mesh(np.array(jax.local_devices()), ("dev",))

        def block(d, s, tab, cfg):
            one = lambda ds: simulate_one(ds[0], ds[1], tab, cfg, approach, uncertainty)  # noqa: E731
            return jax.lax.map(one, (d, s), batch_size=BLOCK)

        _PROGRAMS[ident] = jax.jit(jax.shard_map(block, mesh=mesh, in_specs=(P("dev"), P("dev"), P(), P()),
                                                 out_specs=P("dev"), check_vma=False))
    return _PROGRAMS[ident]


def simulate(designs: Sequence[Design], prior: LawSpec, uncertainty: str, noise: Noise, target: float,
             ladders: int, approach: str = "vpnls", seed: int = 0, chunk: int | None = None) -> Outcome:
    """Simulate ``ladders`` ladders of every design: an Outcome of [designs, ladders] NumPy
    arrays. One compiled program runs every chunk: the chunk is split over the local devices
    (``shard_map``), each device maps blocks of ``BLOCK`` pairs, vmapped. A pair's block and
    lane are fixed by its index (chunks are whole blocks per device), so any ``chunk`` and any
    device count give the same numbers, bit for bit."""
    check_ladder_approach(approach)
    if uncertainty not in UNCERTAINTIES:
        raise ParameterError("prior", f"must be one of {', '.join(UNCERTAINTIES)}, got {uncertainty!r}")
    devices = jax.local_devices()
    step = BLOCK * len(devices)
    chunk = -(-(chunk or pairs_per_call()) // step) * step
    with jax_x64():
        tables = design_table(designs, prior.params)
        cfg = Config(*(jnp.asarray(v) for v in make_config(prior, uncertainty, noise, target, seed)))
        run = _program(approach, uncertainty)
        pairs_d = np.repeat(np.arange(len(designs), dtype=np.int32), ladders)
        pairs_s = np.tile(np.arange(ladders, dtype=np.uint32), len(designs))
        total = len(pairs_d)
        parts = []
        tab = DesignTable(*(jnp.asarray(t) for t in tables))
        for start in range(0, total, chunk):
            d = np.resize(pairs_d[start:start + chunk], chunk)  # the last chunk padded with repeats
            s = np.resize(pairs_s[start:start + chunk], chunk)
            out = run(d, s, tab, cfg)
            keep = min(chunk, total - start)
            parts.append(jax.tree.map(lambda v, k=keep: np.asarray(v)[:k], out))
    return Outcome(*(np.concatenate([getattr(p, f) for p in parts]).reshape(len(designs), ladders)
                     for f in Outcome._fields))


# ----------------------------------------------------------------------------------------------
# summaries and the choice


def quantile_band(v: np.ndarray, q: float) -> tuple[float, float, float]:
    """The q-quantile of v and a 95 % confidence interval from order statistics (binomial)."""
    n = len(v)
    if n == 0:
        return (math.nan,) * 3
    s = np.sort(v)
    half = 1.96 * math.sqrt(n * q * (1 - q))
    lo, hi = int(max(0, math.floor(n * q - half))), int(min(n - 1, math.ceil(n * q + half)))
    return float(np.quantile(v, q)), float(s[lo]), float(s[hi])


def design_row(design: Design, out: Outcome, target: float, cost: DesignCost, cluster: Cluster | None = None) -> dict:
    """One design's row: cost (``design_cost``), bias and quantiles of the forecast error and the
    regret over the ladders whose fit gave a forecast, and how many did not (``failed``) or did
    not converge."""
    ok = out.ok
    err, regret, lost = out.log_n_error[ok], out.regret[ok], out.compute_lost[ok]
    n = len(ok)
    r95, r95_lo, r95_hi = quantile_band(regret, 0.95)
    row = {"design": design.name, "budgets": list(design.budgets), "points": design.points, "spread": design.spread,
           "centre": design.centre, "repeats": design.repeats, "schedule": design.schedule, "runs": design.runs,
           "trunks": cost.trunks, "cost_flops": cost.cost, "separate_cost_flops": cost.separate,
           "cost_fraction": cost.cost / target}
    if design.schedule == "wsd":
        row["cooldown"] = design.cooldown
    if cluster is not None:
        row["gpu_hours"] = gpu_hours(cost.cost, cluster.peak_flops, cluster.mfu)
    abs_err = np.abs(err)
    row.update({
        "n_bias": float(np.expm1(np.median(err))) if ok.any() else math.nan,
        "d_bias": float(np.expm1(-np.median(err))) if ok.any() else math.nan,  # D = C / 6N: the mirror image
        "n_error_p50": float(np.expm1(np.quantile(abs_err, 0.5))) if ok.any() else math.nan,
        "n_error_p95": float(np.expm1(np.quantile(abs_err, 0.95))) if ok.any() else math.nan,
        "log_n_error_sd": float(np.std(err)) if ok.any() else math.nan,
        "regret_p50": float(np.quantile(regret, 0.5)) if ok.any() else math.nan,
        "regret_p95": r95, "regret_p95_ci": [r95_lo, r95_hi],
        "compute_lost_p95": float(np.quantile(lost, 0.95)) if ok.any() else math.nan,
        "ladders": n, "failed": int(n - ok.sum()), "not_converged": int(n - out.converged.sum()),
    })
    row["eligible"] = bool(row["not_converged"] <= FAILURE_WARN * n)
    return row


def choose_design(rows: list[dict], max_regret: float | None, ladder_budget: float | None) -> dict:
    """The choice: with ``max_regret`` (nats, p95) the cheapest eligible design that meets it
    (within ``ladder_budget`` if given); with ``ladder_budget`` alone the eligible design of
    lowest p95 regret that costs no more; with neither, the lowest p95 regret."""
    pool = [r for r in rows if r["eligible"] and math.isfinite(r["regret_p95"])]
    if ladder_budget is not None:
        pool = [r for r in pool if r["cost_flops"] <= ladder_budget]
    if max_regret is not None:
        meets = [r for r in pool if r["regret_p95"] <= max_regret]
        if meets:
            best = min(meets, key=lambda r: (r["cost_flops"], r["regret_p95"]))
            return {"design": best["design"], "rule": f"cheapest design with p95 regret <= {max_regret:g} nats"
                    + (f" within {ladder_budget:.3g} FLOPs" if ladder_budget is not None else "")}
        return {"design": None, "rule": f"no design{' within the ladder budget' if ladder_budget is not None else ''} "
                f"reaches p95 regret <= {max_regret:g} nats"
                + (f" (the best reaches {min(r['regret_p95'] for r in pool):.3g})" if pool else "")}
    if not pool:
        return {"design": None, "rule": "no design fits the ladder budget with fits that converge"
                if ladder_budget is not None else "no design's fits converge"}
    best = min(pool, key=lambda r: (r["regret_p95"], r["cost_flops"]))
    rule = f"lowest p95 regret within {ladder_budget:.3g} FLOPs" if ladder_budget is not None else "lowest p95 regret"
    return {"design": best["design"], "rule": rule}


def wsd_versus_final(rows: list[dict]) -> list[dict]:
    """WSD and final-loss designs at equal forecast quality: for each final-loss design on the
    cost-regret front (no cheaper one has a lower p95 regret), the cheapest WSD design whose p95
    regret is within that design's (at most the upper end of its 95 % Monte Carlo interval: the
    two are not told apart by the simulation), and the ratio of their costs (None: no WSD design
    reaches it)."""
    usable = [r for r in rows if r["eligible"] and math.isfinite(r["regret_p95"])]
    final = sorted((r for r in usable if r["schedule"] == "final"), key=lambda r: (r["cost_flops"], r["regret_p95"]))
    wsd = [r for r in usable if r["schedule"] == "wsd"]
    out, best = [], math.inf
    for f in final:
        if f["regret_p95"] >= best:
            continue
        best = f["regret_p95"]
        as_good = [r for r in wsd if r["regret_p95"] <= f["regret_p95_ci"][1]]
        w = min(as_good, key=lambda r: (r["cost_flops"], r["regret_p95"]), default=None)
        out.append({"regret_p95": best, "final": f["design"], "final_cost_flops": f["cost_flops"],
                    "wsd": None if w is None else w["design"], "wsd_cost_flops": None if w is None else w["cost_flops"],
                    "wsd_regret_p95": None if w is None else w["regret_p95"],
                    "cost_ratio": None if w is None else w["cost_flops"] / f["cost_flops"]})
    return out


def prior_kind(law: LawSpec, prior: str | None) -> str:
    """The law's uncertainty to draw true laws from: given, else its covariance, else its
    bootstrap draws, else none (the law fixed)."""
    if prior is None:
        return default_uncertainty(law)
    problem = uncertainty_problem(law, prior)
    if problem is not None:
        raise ParameterError("prior", problem)
    return prior


class LadderDesigns(TypedDict):
    """``design_ladders``'s answer: the JSON of `budgetopt ladder -f json`. ``designs``: one row
    per design (``design_row``: cost, N* bias and error quantiles, regret, failures);
    ``recommended`` the chosen design's name (None: none qualifies) by ``rule``; with WSD and
    final-loss designs both, ``wsd_versus_final`` (their costs at equal forecast quality; None
    without both kinds)."""

    target_flops: float
    law: str
    prior: str
    approach: str
    noise: dict[str, float]
    ladders: int
    seed: int
    designs: list[dict[str, Any]]
    recommended: str | None
    rule: str
    max_regret: float | None
    ladder_budget: float | None
    warnings: list[str]
    cluster: dict[str, Any] | None
    timing: dict[str, float]
    extrapolation: NotRequired[dict[str, Any]]
    wsd_versus_final: list[dict[str, Any]] | None


def design_ladders(law: LawSpec, target: float, designs: Sequence[Design] | None = None, *, prior: str | None = None,
                   noise: Noise = Noise(), approach: str = "vpnls", ladders: float = 1000, seed: int = 0,
                   max_regret: float | None = None, ladder_budget: float | None = None, cluster: Cluster | None = None,
                   chunk: int | None = None, wsd: float | None = None) -> LadderDesigns:
    """``budgetopt ladder``: simulate every design (``family(target)`` by default; with ``wsd`` a
    cooldown fraction, each final-loss design beside its WSD twin), summarise and recommend. See
    the module docstring."""
    if not isinstance(law.params, Parametric):
        raise ParameterError("law", f"{law.name} is not a parametric law E + A/N^alpha + B/D^beta")
    require_in(target, "target", 0.0, low_open=True, what="FLOPs")
    if isinstance(ladders, bool) or not isinstance(ladders, (int, float)) or ladders != int(ladders) \
            or not 10 <= ladders <= MAX_LADDERS:
        raise ParameterError("ladders", f"must be a whole number of ladders from 10 to {MAX_LADDERS}, got {ladders!r}")
    ladders = int(ladders)
    if not 0 <= seed < 2**32:
        raise ParameterError("seed", f"must be an integer from 0 to 2^32 - 1, got {seed}")
    if max_regret is not None:
        require_in(max_regret, "max_regret", 0.0, low_open=True, what="nats")
    if ladder_budget is not None:
        require_in(ladder_budget, "ladder_budget", 0.0, low_open=True, what="FLOPs")
    if chunk is not None and not 1 <= chunk <= MAX_CHUNK:
        raise ParameterError("chunk", f"must be from 1 to {MAX_CHUNK} (design, ladder) pairs per call, got {chunk}")
    check_ladder_approach(approach)
    noise = noise.for_law(law)
    kind = prior_kind(law, prior)
    designs = list(designs) if designs is not None else family(target)
    if wsd is not None:
        require_in(wsd, "wsd", 0.0, 1.0, low_open=True, what="a cooldown fraction of each branch's tokens")
        designs = [t for d in designs for t in ((d, wsd_twin(d, wsd)) if d.schedule == "final" else (d,))]
        dup = repeated_name(designs)
        if dup is not None:
            raise ParameterError("wsd", f"the WSD twin's name {dup[0]!r} is a design's name already")
    for i, d in enumerate(designs):
        if max(d.budgets) >= target:
            raise InputError(f"design[{i}].budgets",
                             f"must lie below the target {target:.3g} FLOPs (a ladder is small runs)")
    t0 = time.perf_counter()
    out = simulate(designs, law, kind, noise, target, ladders, approach, seed, chunk)
    seconds = time.perf_counter() - t0
    rows = [design_row(d, Outcome(*(v[i] for v in out)), target, design_cost(d, law.params), cluster)
            for i, d in enumerate(designs)]
    choice = choose_design(rows, max_regret, ladder_budget)
    warnings = [f"{r['design']}: {r['not_converged']} of {r['ladders']} fits failed or did not converge ({r['failed']} "
                "without a forecast); not recommended" for r in rows if not r["eligible"]]
    chosen = next((r for r in rows if r["design"] == choice["design"]), None)
    if chosen is not None and max_regret is not None and chosen["regret_p95_ci"][1] > max_regret:
        warnings.append(f"{chosen['design']}'s p95 regret is within Monte Carlo error of the target {max_regret:g} "
                        f"nats (95 % interval up to {chosen['regret_p95_ci'][1]:.3g}): more ladders would tell")
    if chosen is not None and chosen["cost_flops"] > target:
        warnings.append(f"the recommended ladder {chosen['design']} costs {chosen['cost_flops'] / target:.3g}x the "
                        "target run: a cheaper design (a ladder budget) or the run itself may be the better buy")
    with jax_x64():  # where the target lies from the law's fitted range (the prior's mean optimum)
        n_star = math.exp(float(closed_form_x(Parametric(*(jnp.float64(v) for v in law.params)),
                                              jnp.log(jnp.float64(target)))))
    fits = len(designs) * ladders
    cluster_rec = None if cluster is None else {"gpu": cluster.accelerator.id, "dtype": cluster.dtype,
                                                "mfu": cluster.mfu}
    out = {"target_flops": target, "law": law.name, "prior": kind,
            "approach": APPROACHES[approach] + APPROACH_NOTES.get(approach, ""), "noise": dataclasses.asdict(noise),
            "ladders": ladders, "seed": seed, "designs": rows, "recommended": choice["design"], "rule": choice["rule"],
            "max_regret": max_regret, "ladder_budget": ladder_budget, "warnings": warnings, "cluster": cluster_rec,
            "timing": {"seconds": seconds, "fits": fits, "fits_per_second": fits / seconds,
                       "devices": jax.local_device_count()}}
    out["wsd_versus_final"] = wsd_versus_final(rows) if {"wsd", "final"} <= {r["schedule"] for r in rows} else None
    return attach(out, extrapolation(law.validity, n_star, target / (TRAIN_FLOPS_PER_PARAM_TOKEN * n_star), target),
                  warn=False)
