"""One planning question -> one answer: validate inputs, pick the law and method, allocate,
and derive everything a user reads (PF-days, GPU-hours, wall-days, penalties).

This is the layer the CLI calls; the CLI adds only parsing and printing, so the library and
the command line give the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from . import units
from .allocation import Allocation, Budget, allocate, compute_for_loss, method_for
from .errors import ParameterError
from .hardware import Accelerator, check_dtype, get_accelerator, load_catalog
from .laws import LawSpec, Parametric, data_constrained, has_loss, irreducible_loss, loss, to_array_law
from .validity import extrapolation

DEFAULT_MFU = 0.4
MIN_FLOPS = 6.0  # one parameter trained on one token
HOURS_PER_DAY = 24.0


def check_mfu(mfu: float) -> float:
    """Model-FLOPs utilisation: a fraction in (0, 1]."""
    if not (0 < mfu <= 1):
        raise ParameterError("mfu", f"must be in (0, 1], got {mfu!r}")
    return mfu


def check_energy(pue: float | None, power_watts: float | None, grid_intensity: float | None) -> None:
    """PUE in [1, 10); board power in (0, 1e5) W; grid intensity in [0, 10) kg CO2e per kWh."""
    if pue is not None and not (1.0 <= pue < 10.0):
        raise ParameterError("pue", f"must be a power usage effectiveness in [1, 10), got {pue!r}")
    if power_watts is not None and not (0 < power_watts < 1e5):
        raise ParameterError("power_watts", f"must be a positive number of watts, got {power_watts!r}")
    if grid_intensity is not None and not (0 <= grid_intensity < 10):
        raise ParameterError("grid_intensity", f"must be kg CO2e per kWh in [0, 10), got {grid_intensity!r}")


def check_price(price_per_hour: float | None) -> float | None:
    """A price per device-hour: a non-negative finite number (or None)."""
    if price_per_hour is not None and not (price_per_hour >= 0 and math.isfinite(price_per_hour)):
        raise ParameterError("price_per_hour", f"must be a non-negative number, got {price_per_hour!r}")
    return price_per_hour


@dataclass(frozen=True)
class Cluster:
    """Where the compute comes from: ``count`` accelerators for ``hours`` at ``mfu``. ``count``
    and ``hours`` may be None when only a rate is needed (e.g. converting a target's compute
    into GPU-hours)."""

    accelerator: Accelerator
    dtype: str = "bf16"
    mfu: float = DEFAULT_MFU
    count: float | None = None
    hours: float | None = None
    pue: float = 1.0
    power_watts: float | None = None  # board power; None: the catalog's tdp_w
    grid_intensity: float | None = None  # kg CO2e per kWh; None: no emissions reported

    def __post_init__(self):
        self.accelerator.peak_flops(self.dtype)  # validates the dtype
        check_mfu(self.mfu)
        check_energy(self.pue, self.power_watts, self.grid_intensity)
        if self.count is not None and not (math.isfinite(self.count) and self.count >= 1 and self.count == int(self.count)):
            raise ParameterError("count", f"must be a whole number of devices >= 1, got {self.count!r}")
        if self.hours is not None and not (self.hours > 0 and math.isfinite(self.hours)):
            raise ParameterError("hours", f"must be a positive number of hours, got {self.hours!r}")

    @property
    def peak_flops(self) -> float:
        """Dense peak FLOP/s per device at ``dtype``."""
        return self.accelerator.peak_flops(self.dtype)

    def flops(self) -> float:
        """Delivered FLOPs: count x peak x MFU x hours."""
        if self.count is None or self.hours is None:
            raise ParameterError("count" if self.count is None else "hours",
                                 "required to turn hardware into a compute budget")
        return units.hardware_flops(self.peak_flops, self.count, self.mfu, self.hours)

    @property
    def watts(self) -> float | None:
        """Board power per device (W): the override, else the catalog's, else unknown."""
        return self.power_watts if self.power_watts is not None else self.accelerator.tdp_w

    def describe(self, train_flops: float, price_per_hour: float | None = None) -> dict:
        """GPU-hours, wall-days, energy (kWh: device-hours x board power x PUE), emissions
        (t CO2e, with a grid intensity) and cost of delivering ``train_flops`` on this hardware."""
        gh = units.gpu_hours(train_flops, self.peak_flops, self.mfu)
        out = {"gpu": self.accelerator.id, "dtype": self.dtype, "mfu": self.mfu, "count": self.count,
               "gpu_hours": gh}
        if self.count is not None:
            out["wall_days"] = units.wall_days(train_flops, self.peak_flops, self.mfu, self.count)
        if self.watts is not None:
            out["energy_kwh"] = units.energy_kwh(gh, self.watts, self.pue)
            if self.grid_intensity is not None:
                out["emissions_t"] = out["energy_kwh"] * self.grid_intensity / 1000.0
        if price_per_hour is not None:
            out["cost"] = gh * price_per_hour
        return out


@dataclass(frozen=True)
class Constraints:
    """Optional limits. Counts are plain numbers (parameters, tokens); None = no limit."""

    unique_tokens: float | None = None
    max_params: float | None = None
    max_tokens: float | None = None
    max_epochs: float | None = None
    inference_tokens: float | None = None

    def __post_init__(self):
        for name in ("unique_tokens", "max_params", "max_tokens", "max_epochs"):
            v = getattr(self, name)
            if v is not None and (math.isnan(v) or v <= 0 or math.isinf(v)):
                raise ParameterError(name, f"must be a positive finite number, got {v!r}")
        for name in ("unique_tokens", "max_params", "max_tokens"):  # counts: the model needs N >= 1, D >= 1
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ParameterError(name, f"must be at least 1, got {v!r}")
        if self.max_epochs is not None and self.unique_tokens is not None and self.max_epochs * self.unique_tokens < 1:
            raise ParameterError("max_epochs", "allows less than one training token: {max_epochs} x {unique_tokens} "
                                 "must be >= 1", names=True)
        v = self.inference_tokens
        if v is not None and (math.isnan(v) or v < 0 or math.isinf(v)):
            raise ParameterError("inference_tokens", f"must be a non-negative finite number, got {v!r}")
        if self.max_epochs is not None and self.unique_tokens is None:
            raise ParameterError("max_epochs", "needs {unique_tokens} (epochs are counted over the unique data)", names=True)

    @property
    def d_max(self) -> float:
        caps = [math.inf]
        if self.max_tokens is not None:
            caps.append(self.max_tokens)
        if self.max_epochs is not None:
            caps.append(self.max_epochs * self.unique_tokens)
        return min(caps)

    def budget(self, log_c) -> Budget:
        """The Budget pytree for these constraints at log compute ``log_c``."""
        log = lambda v, none: none if v is None else math.log(v) if v > 0 else -math.inf  # noqa: E731
        return Budget(jnp.asarray(log_c), jnp.asarray(log(self.unique_tokens, math.inf)),
                      jnp.asarray(log(self.max_params, math.inf)), jnp.asarray(math.log(self.d_max)),
                      jnp.asarray(log(self.inference_tokens, -math.inf)))

    @property
    def has_inference(self) -> bool:
        return bool(self.inference_tokens)


def law_for(spec: LawSpec, c: Constraints):
    """The law pytree the solver sees: the data-constrained form when unique tokens are given."""
    if c.unique_tokens is None:
        return spec.params
    if not isinstance(spec.params, Parametric):
        raise ParameterError("unique_tokens", f"the data-constrained form needs a parametric law (E, A, B, alpha, beta); "
                                            f"{spec.name} is {spec.kind}")
    return data_constrained(spec.params)


def _alloc_record(law, c: Constraints, a: Allocation, flops: float) -> dict:
    n, d = math.exp(float(a.log_n)), math.exp(float(a.log_d))
    used = math.exp(float(a.log_c_used))
    unused = flops - used
    # float32 rounding of log C leaves ~1e-7 C of "unused" compute when nothing binds
    unused = unused if unused > 1e-5 * flops else 0.0
    rec = {"params": n, "tokens": d,
           "loss": float(a.loss) if has_loss(law) else None,
           "tokens_per_param": d / n}
    if c.unique_tokens is not None:
        rec["unique_tokens"] = c.unique_tokens
        rec["epochs"] = d / c.unique_tokens
    if c.has_inference:
        rec["inference_tokens"] = c.inference_tokens
        rec["train_flops"] = units.train_flops(n, d)
        rec["lifetime_flops"] = used
    rec["unused_flops"] = unused
    return rec


def reference_loss(spec: LawSpec, c: Constraints, log_c: float) -> float | None:
    """Optimal loss at the same budget with no caps and unlimited unique data (the reference
    for ``loss_penalty``); None for allocation rules."""
    if not has_loss(spec.params):
        return None
    free = Constraints(inference_tokens=c.inference_tokens)
    law = to_array_law(spec.params)
    a = allocate(law, free.budget(log_c), method=method_for(spec.params, free.has_inference))
    return float(a.loss)


def optimize(spec: LawSpec, *, flops: float | None = None, hardware: Cluster | None = None,
             constraints: Constraints = Constraints(), target_loss: float | None = None,
             price_per_hour: float | None = None) -> dict:
    """Answer one planning question. Give exactly one of ``flops``, ``hardware`` (with count and
    hours) or ``target_loss``. Returns a flat record (see README for the keys and units)."""
    c = constraints
    law = law_for(spec, c)
    method = method_for(law, c.has_inference)
    arr_law = to_array_law(law)
    given = [k for k, v in (("flops", flops), ("target_loss", target_loss)) if v is not None]
    if hardware is not None and hardware.hours is not None:
        given.append("hours")
    if len(given) > 1:
        raise ParameterError(given[1], f"give one budget: {' or '.join('{' + g + '}' for g in given)}, not both", names=True)
    if not given:
        raise ParameterError("flops", "missing budget: give {flops}, or {gpu} with {count} and {hours}, or {target_loss}", names=True)
    check_price(price_per_hour)

    rec: dict = {"law": spec.name}
    if target_loss is not None:
        if not has_loss(law):
            raise ParameterError("target_loss", f"{spec.name} is an allocation rule without a loss surface")
        if not math.isfinite(target_loss):
            raise ParameterError("target_loss", f"must be a finite number, got {target_loss!r}")
        floor = float(irreducible_loss(arr_law))
        if target_loss <= floor:
            raise ParameterError("target_loss", f"{target_loss} is at or below the law's irreducible loss E = {floor:.4g}; "
                             "no compute reaches it")
        b0 = c.budget(0.0)
        zero = jnp.zeros((), jnp.result_type(*jax.tree_util.tree_leaves(arr_law)))
        smallest = float(loss(arr_law, zero, zero, b0.log_u.astype(zero.dtype)))  # N = 1 parameter, D = 1 token
        if target_loss >= smallest:
            raise ParameterError("target_loss", f"{target_loss:g} is at or above the loss of a 1-parameter model trained on "
                             f"1 token ({smallest:.4g}): any compute reaches it; give a lower target")
        res = compute_for_loss(arr_law, target_loss, b0, method=method)
        if not bool(res.reachable):
            best = compute_for_loss(arr_law, 0.0, c.budget(0.0), method=method)  # loss at the search cap
            raise ParameterError("target_loss", f"{target_loss} is unreachable under these constraints "
                             f"(the best reachable loss is about {float(best.allocation.loss):.4g})")
        log_c = float(res.log_c)
        flops = math.exp(log_c)
        a = res.allocation
        converged = bool(res.converged)
        rec["target_loss"] = target_loss
    else:
        if flops is None:
            flops = hardware.flops()
        if math.isnan(flops) or flops <= 0 or math.isinf(flops):
            raise ParameterError("flops", f"must be a positive finite number of FLOPs, got {flops!r}")
        if flops < MIN_FLOPS:
            raise ParameterError("flops", f"must be at least {MIN_FLOPS:g} FLOPs (one parameter on one token), got {flops!r}")
        if c.has_inference and flops <= units.INFER_FLOPS_PER_PARAM_TOKEN * c.inference_tokens + MIN_FLOPS:
            raise ParameterError("inference_tokens", f"serving {c.inference_tokens:.3g} tokens costs 2 FLOPs per parameter per token: "
                             f"a lifetime budget of {flops:.3g} FLOPs cannot train even one parameter")
        log_c = math.log(flops)
        a = allocate(arr_law, c.budget(log_c), method=method)
        converged = bool(a.converged)
    rec["flops"] = flops
    rec["pf_days"] = units.flops_to_pf_days(flops)
    rec.update(_alloc_record(law, c, a, flops))
    ref = reference_loss(spec, c, log_c)
    rec["loss_penalty"] = None if ref is None else max(rec["loss"] - ref, 0.0)
    rec["converged"] = converged
    rec["method"] = "closed-form" if method == "closed" else "newton-bisection"
    rec["iterations"] = int(a.iterations)
    rec["grad_norm"] = float(a.grad)
    if hardware is not None:
        train = rec.get("train_flops", flops - rec["unused_flops"])
        rec.update(hardware.describe(train, price_per_hour))
    ext = extrapolation(spec.validity, rec["params"], rec["tokens"], rec.get("train_flops", flops - rec["unused_flops"]))
    if ext is not None:
        rec["extrapolation"] = ext
    return rec


def hardware_from(gpu: str | None = None, *, dtype: str | None = None, count: float | None = None,
                  hours: float | None = None, days: float | None = None, mfu: float | None = None,
                  price_per_hour: float | None = None, pue: float | None = None, power_watts: float | None = None,
                  grid_intensity: float | None = None, hardware_file: str | None = None
                  ) -> tuple[Cluster | None, list[str]]:
    """The Cluster a user describes (accelerator id, dtype, device count, hours or days, MFU,
    PUE, board power, grid intensity), and the names of the given arguments that have no effect
    (those about the hardware, without a ``gpu``). Every given value is validated, used or not."""
    check_price(price_per_hour)
    if mfu is not None:
        check_mfu(mfu)
    if dtype is not None:
        check_dtype(dtype)
    if days is not None and not (days > 0 and math.isfinite(days)):
        raise ParameterError("days", f"must be a positive number of days, got {days!r}")
    if gpu is None:
        for name, v in (("count", count), ("hours", hours), ("days", days)):
            if v is not None:
                raise ParameterError(name, "needs {gpu} (the accelerator id; see `budgetopt hardware`)", names=True)
        check_energy(pue, power_watts, grid_intensity)
        energy = {"pue": pue, "power_watts": power_watts, "grid_intensity": grid_intensity}
        return None, [name for name, v in (("mfu", mfu), ("dtype", dtype), ("price_per_hour", price_per_hour),
                                           *energy.items()) if v is not None]
    if hours is not None and days is not None:
        raise ParameterError("days", "give {hours} or {days}, not both", names=True)
    if days is not None:
        hours = days * HOURS_PER_DAY
    acc = get_accelerator(gpu, load_catalog(hardware_file))
    return Cluster(acc, dtype or "bf16", DEFAULT_MFU if mfu is None else mfu, count, hours, 1.0 if pue is None else pue,
                   power_watts, grid_intensity), []


#: ``convert`` quantities: the name a user asks for -> the record key
CONVERT_TO = {"flops": "flops", "pf-days": "pf_days", "gpu-hours": "gpu_hours", "wall-days": "wall_days", "cost": "cost"}


def convert(flops: float | None = None, *, params: float | None = None, tokens: float | None = None,
            flops_per_param_token: float = units.TRAIN_FLOPS_PER_PARAM_TOKEN, hardware: Cluster | None = None,
            price_per_hour: float | None = None, to: str | None = None) -> dict:
    """Compute as FLOPs and PF-days, and with ``hardware`` as device-hours, wall-days and cost.
    Give ``flops``, or ``params`` with ``tokens`` (FLOPs = flops_per_param_token x N x D).
    ``to`` keeps one quantity (a key of CONVERT_TO)."""
    if flops is not None and (params is not None or tokens is not None):
        raise ParameterError("params", "give {flops} or {params} with {tokens}, not both", names=True)
    if to is not None and to not in CONVERT_TO:
        raise ParameterError("to", f"unknown quantity {to!r}; allowed: {', '.join(CONVERT_TO)}")
    check_price(price_per_hour)
    units.require_positive(flops_per_param_token, "flops_per_param_token")
    if flops is None:
        if params is None or tokens is None:
            raise ParameterError("flops", "give a compute {flops}, or {params} with {tokens}", names=True)
        flops = units.train_flops(units.require_positive(params, "params"), units.require_positive(tokens, "tokens"),
                                  flops_per_param_token)
    units.require_positive(flops, "flops")
    rec = {"flops": flops, "pf_days": units.flops_to_pf_days(flops)}
    if hardware is not None:
        rec.update(hardware.describe(flops, price_per_hour))
    if to is None:
        return rec
    if CONVERT_TO[to] not in rec:
        need = {"gpu-hours": "{gpu}", "wall-days": "{gpu} and {count}", "cost": "{gpu} and {price_per_hour}"}[to]
        raise ParameterError("to", f"{to} needs {need}", names=True)
    return {CONVERT_TO[to]: rec[CONVERT_TO[to]]}


def __getattr__(name: str):
    if name == "Hardware":  # the old name, which read as the hardware module's
        import warnings

        warnings.warn("budgetopt.plan.Hardware is renamed Cluster; the old name goes in 0.3", DeprecationWarning, stacklevel=2)
        return Cluster
    raise AttributeError(f"module 'budgetopt.plan' has no attribute {name!r}")
