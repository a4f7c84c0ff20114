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
from .allocate import Allocation, Budget, allocate, compute_for_loss, method_for
from .errors import InputError
from .hardware import Accelerator
from .laws import DataConstrained, LawSpec, Parametric, TokensPerParam, data_constrained_constants, irreducible_loss, loss, to_array_law

DEFAULT_MFU = 0.4
MIN_FLOPS = 6.0  # one parameter trained on one token


@dataclass(frozen=True)
class Hardware:
    """Where the compute comes from. ``count`` and ``hours`` may be None when only a rate is
    needed (e.g. converting a target's compute into GPU-hours)."""

    accelerator: Accelerator
    dtype: str = "bf16"
    mfu: float = DEFAULT_MFU
    count: float | None = None
    hours: float | None = None

    def __post_init__(self):
        self.accelerator.peak_flops(self.dtype)  # validates the dtype
        if not (0 < self.mfu <= 1):
            raise InputError("--mfu", f"must be in (0, 1], got {self.mfu!r}")
        if self.count is not None and not (self.count > 0 and math.isfinite(self.count)):
            raise InputError("--count", f"must be a positive number of devices, got {self.count!r}")
        if self.hours is not None and not (self.hours > 0 and math.isfinite(self.hours)):
            raise InputError("--hours", f"must be a positive number of hours, got {self.hours!r}")

    @property
    def peak_flops(self) -> float:
        """Dense peak FLOP/s per device at ``dtype``."""
        return self.accelerator.peak_flops(self.dtype)

    def flops(self) -> float:
        """Delivered FLOPs: count x peak x MFU x hours."""
        if self.count is None or self.hours is None:
            raise InputError("--count" if self.count is None else "--hours",
                             "required to turn hardware into a compute budget")
        return units.hardware_flops(self.peak_flops, self.count, self.mfu, self.hours)

    def describe(self, train_flops: float, price_per_hour: float | None = None) -> dict:
        """GPU-hours, wall-days and cost of delivering ``train_flops`` on this hardware."""
        gh = units.gpu_hours(train_flops, self.peak_flops, self.mfu)
        out = {"gpu": self.accelerator.id, "dtype": self.dtype, "mfu": self.mfu, "count": self.count,
               "gpu_hours": gh}
        if self.count is not None:
            out["wall_days"] = units.wall_days(train_flops, self.peak_flops, self.mfu, self.count)
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
                raise InputError("--" + name.replace("_", "-"), f"must be a positive finite number, got {v!r}")
        for name in ("unique_tokens", "max_params", "max_tokens"):  # counts: the model needs N >= 1, D >= 1
            v = getattr(self, name)
            if v is not None and v < 1:
                raise InputError("--" + name.replace("_", "-"), f"must be at least 1, got {v!r}")
        if self.max_epochs is not None and self.unique_tokens is not None and self.max_epochs * self.unique_tokens < 1:
            raise InputError("--max-epochs", "allows less than one training token: --max-epochs x --unique-tokens must be >= 1")
        v = self.inference_tokens
        if v is not None and (math.isnan(v) or v < 0 or math.isinf(v)):
            raise InputError("--inference-tokens", f"must be a non-negative finite number, got {v!r}")
        if self.max_epochs is not None and self.unique_tokens is None:
            raise InputError("--max-epochs", "needs --unique-tokens (epochs are counted over the unique data)")

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
        raise InputError("--unique-tokens", f"the data-constrained form needs a parametric law (E, A, B, alpha, beta); "
                                            f"{spec.name} is {spec.kind}")
    rd, rn, _ = data_constrained_constants()
    return DataConstrained(spec.params, rd, rn)


def _alloc_record(law, c: Constraints, a: Allocation, flops: float) -> dict:
    n, d = math.exp(float(a.log_n)), math.exp(float(a.log_d))
    used = math.exp(float(a.log_c_used))
    unused = flops - used
    # float32 rounding of log C leaves ~1e-7 C of "unused" compute when nothing binds
    unused = unused if unused > 1e-5 * flops else 0.0
    rec = {"params": n, "tokens": d,
           "loss": None if isinstance(law, TokensPerParam) else float(a.loss),
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
    if isinstance(spec.params, TokensPerParam):
        return None
    free = Constraints(inference_tokens=c.inference_tokens)
    law = to_array_law(spec.params)
    a = allocate(law, free.budget(log_c), method=method_for(spec.params, free.has_inference))
    return float(a.loss)


def optimize(spec: LawSpec, *, flops: float | None = None, hardware: Hardware | None = None,
             constraints: Constraints = Constraints(), target_loss: float | None = None,
             price_per_hour: float | None = None) -> dict:
    """Answer one planning question. Give exactly one of ``flops``, ``hardware`` (with count and
    hours) or ``target_loss``. Returns a flat record (see README for the keys and units)."""
    c = constraints
    law = law_for(spec, c)
    method = method_for(law, c.has_inference)
    arr_law = to_array_law(law)
    given = [k for k, v in (("--flops", flops), ("--target-loss", target_loss)) if v is not None]
    if hardware is not None and hardware.hours is not None:
        given.append("--hours/--days")
    if len(given) > 1:
        raise InputError(given[1], f"give one budget: {' or '.join(given)}, not both")
    if not given:
        raise InputError("--flops", "missing budget: give --flops, or --gpu with --count and --hours/--days, or --target-loss")
    if price_per_hour is not None and not (price_per_hour >= 0 and math.isfinite(price_per_hour)):
        raise InputError("--price-per-hour", f"must be a non-negative number, got {price_per_hour!r}")

    rec: dict = {"law": spec.name}
    if target_loss is not None:
        if isinstance(law, TokensPerParam):
            raise InputError("--target-loss", f"{spec.name} is an allocation rule without a loss surface")
        if not math.isfinite(target_loss):
            raise InputError("--target-loss", f"must be a finite number, got {target_loss!r}")
        floor = float(irreducible_loss(arr_law))
        if target_loss <= floor:
            raise InputError("--target-loss", f"{target_loss} is at or below the law's irreducible loss E = {floor:.4g}; "
                             "no compute reaches it")
        b0 = c.budget(0.0)
        zero = jnp.zeros((), jnp.result_type(*jax.tree_util.tree_leaves(arr_law)))
        smallest = float(loss(arr_law, zero, zero, b0.log_u.astype(zero.dtype)))  # N = 1 parameter, D = 1 token
        if target_loss >= smallest:
            raise InputError("--target-loss", f"{target_loss:g} is at or above the loss of a 1-parameter model trained on "
                             f"1 token ({smallest:.4g}): any compute reaches it; give a lower target")
        res = compute_for_loss(arr_law, target_loss, b0, method=method)
        if not bool(res.reachable):
            best = compute_for_loss(arr_law, 0.0, c.budget(0.0), method=method)  # loss at the search cap
            raise InputError("--target-loss", f"{target_loss} is unreachable under these constraints "
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
            raise InputError("--flops", f"must be a positive finite number of FLOPs, got {flops!r}")
        if flops < MIN_FLOPS:
            raise InputError("--flops", f"must be at least {MIN_FLOPS:g} FLOPs (one parameter on one token), got {flops!r}")
        if c.has_inference and flops <= 2 * c.inference_tokens + MIN_FLOPS:
            raise InputError("--inference-tokens", f"serving {c.inference_tokens:.3g} tokens costs 2 FLOPs per parameter per token: "
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
    return rec
