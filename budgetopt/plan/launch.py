"""`budgetopt plan`: from a budget to what a team launches: the model's shape, its real FLOPs per token, memory
per device on a parallel layout, batch size and learning rate from published fits, steps,
device-hours, wall-clock, energy, emissions and cost.

The allocation comes from ``optimum.optimize`` (or is given as params/tokens); the shape nearest
the optimal N is re-solved at its realised N (D = C / 6N, so the budget is still spent) and the
loss change is reported. Device time uses the FLOPs convention the user picks (default: the
shape's full count, ``chinchilla``), so a long context is paid for.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, TypedDict

import jax.numpy as jnp

from ..core import units
from ..core.errors import ParameterError
from ..core.files import data_toml
from ..model.hardware import Cluster, check_energy
from ..model.laws import LawSpec, has_loss, loss, to_array_law
from ..model.memory import Layout, memory, moe_memory, smallest_fit
from ..model.shape import Shape, check_convention, shape_for
from ..model.validity import attach, extrapolation
from .optimum import Constraints, law_for, optimize

RECOMPUTE_FACTOR = 4.0 / 3.0  # full recomputation runs the forward twice: (1 + 1 + 2) / 3


class RunPlan(TypedDict, total=False):
    """``launch_plan``'s answer: the JSON of `budgetopt plan -f json`. ``optimum``: the allocation
    before the shape was chosen (budgets only); ``params``/``tokens``: the shape's real N and the
    tokens its budget buys; ``flops``: the run's model FLOPs under ``flops_convention``;
    ``hardware_flops`` with recomputation; ``layout``, ``memory`` (bytes per device), ``batch``;
    the hardware keys with a cluster; ``quantiles`` (device-hours, wall-clock, energy) when a
    sweep's [plan] varies them."""

    law: str
    arch: str
    source: str
    optimum: dict[str, Any]
    shape: dict[str, Any]
    params: float
    params_total: float
    experts: int
    precision: dict[str, Any]
    tokens: float
    tokens_per_param: float
    loss: float
    loss_change: float
    flops_per_token: dict[str, float]
    flops_ratio_to_6n: dict[str, float]
    flops_convention: str
    flops: float
    hardware_flops: float
    layout: dict[str, Any]
    memory: dict[str, Any]
    batch: dict[str, Any]
    warnings: list[str]
    extrapolation: dict[str, Any]
    gpu_hours: float
    wall_days: float
    energy_kwh: float
    emissions_t: float
    cost: float
    gpu: str
    mfu: float
    hfu: float
    booked_days: float
    fits_booking: bool
    quantiles: dict[str, dict[str, float]]


def batch_and_lr(law: str, shape: Shape, tokens: float) -> dict:
    """Peak learning rate and batch (tokens) of a preset (``data/batch_laws.toml``) for a
    model of ``shape`` trained on ``tokens``."""
    return batch_from(law, shape.flops_per_token(), shape.params(), tokens)


def batch_from(law: str, per_token: dict[str, float], params: dict[str, float], tokens: float) -> dict:
    """``batch_and_lr`` from a model's FLOPs per token (by convention) and parameter counts
    (``total``, ``non_embedding``): a routed model passes its active path's."""
    laws = data_toml("batch_laws.toml")
    if law not in laws:
        raise ParameterError("batch_law", f"unknown batch law {law!r}; allowed: {', '.join(laws)}")
    e = laws[law]
    c = per_token[e.get("compute", "6n")] * tokens
    n = params[e.get("params", "total")]

    def power(prefix):
        return (e[f"{prefix}_coef"] * c ** e.get(f"{prefix}_c", 0.0) * n ** e.get(f"{prefix}_n", 0.0)
                * tokens ** e.get(f"{prefix}_d", 0.0))

    return {"law": law, "learning_rate": power("lr"), "tokens": power("batch"), "source": e["source"]}


def launch_plan(spec: LawSpec, *, flops: float | None = None, cluster: Cluster | None = None,
                constraints: Constraints | None = None, params: float | None = None, tokens: float | None = None,
                shape: Shape | None = None, seq_len: int = 4096, vocab: int = 32_000, ffn: str = "swiglu",
                tied: bool = False, n_kv_heads: int | None = None, layout: Layout | None = None,
                convention: str = "chinchilla", batch_law: str = "deepseek2024", reserve_gb: float = 4.0,
                price_per_hour: float | None = None, precision: dict | None = None) -> RunPlan:
    """The run plan for a budget (``flops``, or a ``cluster`` booked for ``hours``) or for a
    given model (``params`` and ``tokens``). ``shape``: the model's; else the llama-style shape
    nearest the optimal N (``shape_for`` at ``seq_len``, ``vocab``, ``ffn``, ``tied``,
    ``n_kv_heads``, its heads split over the layout's tp, within ``max_params``).

    A booking is spent, not 6·N·D: the allocation's budget is the booked hardware FLOPs divided
    by what the run really costs per 6·N·D — the shape's FLOPs per token under ``convention`` over
    6N, times 4/3 with full recomputation — re-solved until the shape stops changing, so the run
    fits the booked days exactly (``fits_booking``). ``cluster.mfu`` is the fraction of peak the
    devices achieve on the work they do: recomputation adds work, so it adds time (the record's
    ``mfu`` is then lower than its ``hfu``). A given model with a booking is checked against it.
    ``precision`` (``precision_choice.training_format``): the run trains in that format — the
    devices do the BF16 work ``speedup`` times faster (a booking buys that much more), memory
    keeps the stated convention, and the format's empirical loss penalty is reported.
    Returns a nested record (README keys)."""
    check_convention(convention)
    constraints = constraints or Constraints()
    speedup = 1.0 if precision is None else precision["speedup"]
    layout = layout or Layout()
    if (params is None) != (tokens is None):
        raise ParameterError("params" if params is None else "tokens", "give both {params} and {tokens}", names=True)
    units.require_in(reserve_gb, "reserve_gb", 0.0, what="GB")
    rework = RECOMPUTE_FACTOR if layout.recompute == "full" else 1.0
    booked = cluster is not None and cluster.hours is not None
    if booked and flops is not None:
        raise ParameterError("hours", "give one budget: {flops} or {hours}, not both", names=True)

    def family(n: float) -> Shape:
        return shape_for(n, vocab=vocab, seq_len=seq_len, ffn=ffn, tied=tied, n_kv_heads=n_kv_heads, tp=layout.tp,
                         at_most=constraints.max_params)

    def cost_per_6nd(sh: Shape) -> float:
        return sh.flops_per_token()[convention] / (units.TRAIN_FLOPS_PER_PARAM_TOKEN * sh.params()["total"]) * rework

    rec: RunPlan = {"law": spec.name}
    warnings: list[str] = []
    if params is not None:
        units.require_positive(params, "params")
        units.require_positive(tokens, "tokens")
        n_target, d_target = params, tokens
        if shape is None:
            shape = family(params)
        elif abs(math.log(shape.params()["total"] / params)) > math.log(1.05):
            warnings.append(f"the shape has {shape.params()['total']:.4g} parameters, not the {params:.4g} given: the "
                            "plan is the shape's, on the tokens given")
        d_real = tokens
    else:
        scale, budget = 1.0, flops
        for _ in range(12):  # the shape's cost per 6ND, then the allocation that cost allows, to a fixed point
            opt = optimize(spec, flops=cluster.flops() * speedup / scale if booked else budget,
                           cluster=None if booked else cluster, constraints=constraints)
            sh = shape if shape is not None else family(opt["params"])
            new = cost_per_6nd(sh) if booked else 1.0
            if abs(new / scale - 1.0) < 1e-12:
                break
            scale = new
        shape = sh
        n_target, d_target = opt["params"], opt["tokens"]
        budget = opt.get("train_flops", opt["flops"] - opt["unused_flops"])
        rec["optimum"] = {"params": n_target, "tokens": d_target, "loss": opt["loss"], "converged": opt["converged"]}
        d_real = min(budget / (units.TRAIN_FLOPS_PER_PARAM_TOKEN * shape.params()["total"]), constraints.d_max)
    n_real = float(shape.params()["total"])
    if abs(math.log(n_real / n_target)) > math.log(4.0):
        warnings.append(f"the shape has {n_real:.3g} parameters, {max(n_real / n_target, n_target / n_real):.3g}x "
                        f"from the {n_target:.3g} planned: it is planned on the budget's tokens (see loss_change)")
    rec["shape"] = shape.describe()
    rec["params"], rec["tokens"], rec["tokens_per_param"] = n_real, d_real, d_real / n_real
    if has_loss(spec.params):
        law = to_array_law(law_for(spec, constraints))
        log_u = math.inf if constraints.unique_tokens is None else math.log(constraints.unique_tokens)
        l_real = float(loss(law, jnp.log(n_real), jnp.log(d_real), log_u))
        rec["loss"] = l_real
        if params is None:
            rec["loss_change"] = l_real - float(loss(law, jnp.log(n_target), jnp.log(d_target), log_u))
    per_token = shape.flops_per_token()
    rec["flops_per_token"] = per_token
    rec["flops_ratio_to_6n"] = {k: v / per_token["6n"] for k, v in per_token.items()}
    rec["flops_convention"] = convention
    rec["flops"] = per_token[convention] * d_real  # model FLOPs of the run
    rec["hardware_flops"] = rec["flops"] * rework

    device_gb = cluster.accelerator.memory_gb if cluster is not None else None
    layout = _layout_for(layout, cluster)
    rec["layout"] = _layout_record(layout)
    rec["memory"] = memory(shape, layout, device_gb, reserve_gb)
    if device_gb is not None and not rec["memory"]["fits"]:
        fit = smallest_fit(shape, layout, layout.devices, device_gb, reserve_gb)
        rec["memory"]["smallest_fit"] = None if fit is None else {"dp": fit.dp, "tp": fit.tp, "pp": fit.pp,
                                                                  "zero": fit.zero}

    rec["warnings"] = warnings
    rec["batch"] = _steps(batch_and_lr(batch_law, shape, d_real), layout, shape.seq_len, d_real, constraints.d_max,
                          rec["warnings"])
    attach(rec, extrapolation(spec.validity, n_real, d_real))
    if precision is not None:
        rec["precision"] = dict(precision)
        if "loss" in rec:
            rec["precision"]["loss_penalty"] = rec["loss"] * precision["loss_penalty_relative"]
    _hardware(rec, cluster, booked, price_per_hour, speedup)
    return rec


def _steps(batch: dict, layout: Layout, seq_len: int, tokens: float, d_max: float, warnings: list[str]) -> dict:
    """The batch law's batch as whole sequences per step (a multiple of dp, at least dp x
    micro-batch), the optimizer steps that train ``tokens`` (never past the cap ``d_max``) and
    the gradient accumulation; what cannot be honoured goes to ``warnings``."""
    per_step = layout.dp * layout.micro_batch  # sequences one optimizer step takes without accumulation
    sequences = max(per_step, round(batch["tokens"] / seq_len / layout.dp) * layout.dp)
    steps = math.ceil(tokens / (sequences * seq_len))
    if steps * sequences * seq_len > d_max:  # a token cap holds for the steps run, not only D
        steps = max(1, math.floor(d_max / (sequences * seq_len)))
    batch.update({"sequences": sequences, "tokens": float(sequences * seq_len), "tokens_law": batch["tokens"],
                  "steps": steps, "grad_accumulation": sequences / per_step})
    if sequences % per_step:
        warnings.append(f"the batch of {sequences} sequences is not a whole number of steps of dp x micro-batch "
                        f"= {per_step}: gradient accumulation of {sequences / per_step:.3g} micro-steps is not "
                        "possible; choose a micro-batch that divides it")
    if batch["tokens_law"] < per_step * seq_len:
        warnings.append(f"the batch law asks for {batch['tokens_law']:.3g} tokens per step, fewer than the "
                        f"layout's {per_step} x {seq_len} (dp x micro-batch x sequence): the batch is "
                        "rounded up to it")
    return batch


def _hardware(rec: dict, cluster: Cluster | None, booked: bool, price_per_hour: float | None,
              speedup: float = 1.0) -> None:
    """The cluster's keys of a plan (device-hours, wall-clock, energy, cost; MFU against HFU;
    whether a booking holds the run), from ``rec``'s model and hardware FLOPs; a format's
    ``speedup`` does the work that much faster than BF16 at cluster.mfu."""
    if cluster is None:
        return
    hw = cluster.describe(rec["hardware_flops"] / speedup, price_per_hour)  # the devices' work, at cluster.mfu of peak
    rec.update({k: v for k, v in hw.items() if k not in ("dtype", "mfu", "count", "gpu")})
    rec["gpu"], rec["mfu"] = cluster.accelerator.id, cluster.mfu * rec["flops"] / rec["hardware_flops"]
    rec["hfu"] = cluster.mfu
    if booked and cluster.count is not None:
        rec["booked_days"] = cluster.hours / units.HOURS_PER_DAY
        rec["fits_booking"] = bool(rec["wall_days"] <= rec["booked_days"] * (1 + 1e-9))
        if not rec["fits_booking"]:
            rec["warnings"].append(f"the run needs {rec['wall_days']:.4g} days; the booking has "
                                   f"{rec['booked_days']:.4g}")


def _layout_for(layout: Layout, cluster: Cluster | None) -> Layout:
    """The layout on the cluster's devices: dp = count / (tp x pp)."""
    if cluster is not None and cluster.count is not None and layout.devices != cluster.count:
        if cluster.count % (layout.tp * layout.pp):
            raise ParameterError("tp",
                                 f"tp x pp = {layout.tp * layout.pp} must divide the device count {cluster.count:g}")
        layout = dataclasses.replace(layout, dp=int(cluster.count) // (layout.tp * layout.pp))
    return layout


def _layout_record(layout: Layout) -> dict:
    return {"dp": layout.dp, "tp": layout.tp, "pp": layout.pp, "ep": layout.ep, "zero": layout.zero,
            "micro_batch": layout.micro_batch, "recompute": layout.recompute, "flash": layout.flash}


def moe_launch_plan(arch: str, spec: LawSpec, *, flops: float | None = None, cluster: Cluster | None = None,
                    tokens: float | None = None, seq_len: int = 4096, layout: Layout | None = None,
                    convention: str = "chinchilla", batch_law: str = "deepseek2024", reserve_gb: float = 4.0,
                    max_tokens: float | None = None, price_per_hour: float | None = None) -> RunPlan:
    """The run plan of a released routed architecture (``data/architectures.toml``) for a budget
    (``flops``, or a ``cluster`` booked for ``hours``: the tokens it pays for at the shape's
    FLOPs per token under ``convention``, x 4/3 with full recomputation) or for ``tokens``:
    total and active parameters, FLOPs per token on the active path, memory per device with
    expert parallelism (``layout.ep``), batch and steps, device time; the loss under ``spec``
    (a joint MoE law) at the architecture's routed expert count and active parameters with
    embeddings (its convention)."""
    from ..model.laws import JointMoE
    from ..model.moe_shape import MoEShape, architecture

    check_convention(convention)
    if not isinstance(spec.params, JointMoE):
        raise ParameterError("law", f"{spec.name} is not a joint MoE law: `plan --arch` judges a routed model's loss "
                             "under ludziejewski2025-moe (or a law file fitted in its form)")
    shape, entry = architecture(arch)
    if not isinstance(shape, MoEShape):
        raise ParameterError("arch", f"{arch} is a dense model: plan it with launch_plan(shape=...) (`plan --arch` "
                             "does)")
    layout = _layout_for(layout or Layout(), cluster)
    units.require_in(reserve_gb, "reserve_gb", 0.0, what="GB")
    rework = RECOMPUTE_FACTOR if layout.recompute == "full" else 1.0
    booked = cluster is not None and cluster.hours is not None
    given = [k for k, v in (("tokens", tokens), ("flops", flops), ("hours", cluster.hours if cluster else None))
             if v is not None]
    if len(given) != 1:
        raise ParameterError("tokens", "give one of {tokens}, {flops}, or a booking ({gpu}, {count}, {days})"
                             + (f"; got {', '.join(given)}" if given else ""), names=True)
    per_token = shape.flops_per_token(seq_len)
    d_max = math.inf if max_tokens is None else units.require_positive(max_tokens, "max_tokens")
    if tokens is not None:
        d = units.require_positive(tokens, "tokens")
    elif flops is not None:
        d = units.require_positive(flops, "flops") / per_token[convention]
    else:
        d = cluster.flops() / (per_token[convention] * rework)
    rec: RunPlan = {"law": spec.name, "arch": arch, "source": entry["source"]}
    _routed_run(rec, spec, shape, d, seq_len=seq_len, layout=layout, convention=convention, batch_law=batch_law,
                reserve_gb=reserve_gb, cluster=cluster, d_max=d_max)
    if shape.top_k > 1 or shape.shared_experts:
        rec["warnings"].append(f"{spec.name} was fitted on top-1 routing without shared experts: {arch} (top-"
                               f"{shape.top_k}{', shared experts' if shape.shared_experts else ''}) is placed at its "
                               f"routed expert count E = {shape.experts}, a reading the law does not test")
    _hardware(rec, cluster, booked, price_per_hour)
    return rec


def moe_optimum_plan(spec: LawSpec, *, flops: float | None = None, cluster: Cluster | None = None,
                     experts: str | float | None = None, max_experts: int | None = None,
                     max_total_params: float | None = None, kv_tokens: float | None = None, seq_len: int = 4096,
                     vocab: int = 32_000, layout: Layout | None = None, convention: str = "chinchilla",
                     batch_law: str = "deepseek2024", reserve_gb: float = 4.0, max_tokens: float | None = None,
                     price_per_hour: float | None = None) -> RunPlan:
    """The run plan of the MoE a budget should train under a joint MoE law: the optimum
    (``moe_optimum.optimize_moe``: the expert count, or the one given, and N_act under the memory
    cap and serving KV cache) shaped as the family the law was fitted on (``joint_shape_for``:
    d_model = 64 layers, top-1, SwiGLU experts of width 3·d_model) nearest its N_act, with its
    heads split over tp and every expert and the KV cache under the cap. As the dense plan, a
    booking is spent: the allocation's budget is the booked FLOPs over the shape's real cost per
    6·N_act·D (its FLOPs per token under ``convention``, x 4/3 with full recomputation), to a fixed
    point; a FLOPs budget is 6·N_act·D. The shape's own N_act then trains on the tokens its budget
    buys, and ``loss_change`` is what rounding to a shape cost."""
    from ..model.laws import JointMoE
    from ..model.moe_shape import joint_shape_for
    from .moe_optimum import optimize_moe

    check_convention(convention)
    if not isinstance(spec.params, JointMoE):
        raise ParameterError("law", f"{spec.name} is not a joint MoE law: `plan` shapes the top-1 routed models of "
                             "ludziejewski2025-moe (or a law file fitted in its form); ask `optimize` for "
                             f"{spec.name}'s answer")
    layout = layout or Layout()
    units.require_in(reserve_gb, "reserve_gb", 0.0, what="GB")
    rework = RECOMPUTE_FACTOR if layout.recompute == "full" else 1.0
    booked = cluster is not None and cluster.hours is not None
    if booked and flops is not None:
        raise ParameterError("hours", "give one budget: {flops} or {hours}, not both", names=True)
    d_max = math.inf if max_tokens is None else units.require_positive(max_tokens, "max_tokens")
    kv = float(kv_tokens or 0.0)
    scale = 1.0
    for _ in range(12):  # the shape's cost per 6·N_act·D, then the allocation that cost allows, to a fixed point
        opt = optimize_moe(spec, flops=cluster.flops() / scale if booked else flops,
                           cluster=None if booked else cluster, experts=experts, max_experts=max_experts,
                           max_total_params=max_total_params, kv_tokens=kv_tokens)
        shape = joint_shape_for(opt["params_active"], int(opt["experts"]), vocab=vocab, tp=layout.tp,
                                max_total=max_total_params, kv_tokens=kv)
        n_act = float(shape.counts()["params_active"])
        new = shape.flops_per_token(seq_len)[convention] / (units.TRAIN_FLOPS_PER_PARAM_TOKEN * n_act) * rework
        if not booked or abs(new / scale - 1.0) < 1e-12:
            break
        scale = new
    d = opt["params_active"] * opt["tokens"] / n_act  # the optimum's 6·N_act·D, spent by the shape
    rec: RunPlan = {"law": spec.name, "optimum": {k: opt[k] for k in ("experts", "params_active", "params_total",
                                                                         "tokens", "loss", "converged")}}
    layout = _layout_for(layout, cluster)
    _routed_run(rec, spec, shape, d, seq_len=seq_len, layout=layout, convention=convention, batch_law=batch_law,
                reserve_gb=reserve_gb, cluster=cluster, d_max=d_max)
    rec["loss_change"] = rec["loss"] - opt["loss"]
    if max_total_params is not None:
        rec["max_total_params"] = max_total_params
    if kv:
        rec["kv_tokens"] = kv
    _hardware(rec, cluster, booked, price_per_hour)
    return rec


def moe_size_plan(spec: LawSpec, params_active: float, experts: int, tokens: float, *,
                  cluster: Cluster | None = None, max_total_params: float | None = None, kv_tokens: float = 0.0,
                  seq_len: int = 4096, vocab: int = 32_000, layout: Layout | None = None,
                  convention: str = "chinchilla", batch_law: str = "deepseek2024", reserve_gb: float = 4.0) -> RunPlan:
    """The run plan of a chosen (E, N_act) on ``tokens`` (a [moe] sweep's recommendation at its
    median budget): ``joint_shape_for``'s member nearest N_act (heads over tp, every expert and
    the KV cache of ``kv_tokens`` under the cap), trained on the tokens given; ``loss_change``
    against the law at (N_act, D) itself."""
    from ..model.moe import joint_loss
    from ..model.moe_shape import joint_shape_for

    check_convention(convention)
    units.require_in(reserve_gb, "reserve_gb", 0.0, what="GB")
    layout = _layout_for(layout or Layout(), cluster)
    shape = joint_shape_for(params_active, experts, vocab=vocab, tp=layout.tp, max_total=max_total_params,
                            kv_tokens=kv_tokens)
    rec: RunPlan = {"law": spec.name}
    _routed_run(rec, spec, shape, tokens, seq_len=seq_len, layout=layout, convention=convention, batch_law=batch_law,
                reserve_gb=reserve_gb, cluster=cluster, d_max=math.inf)
    asked = float(joint_loss(to_array_law(spec.params), jnp.log(params_active), jnp.log(tokens), float(experts)))
    rec["loss_change"] = rec["loss"] - asked
    _hardware(rec, cluster, False, None)
    return rec


def _routed_run(rec: RunPlan, spec: LawSpec, shape, d: float, *, seq_len: int, layout: Layout, convention: str,
                batch_law: str, reserve_gb: float, cluster: Cluster | None, d_max: float) -> None:
    """A routed model's run on ``d`` tokens (held to ``d_max``, with a warning), into ``rec``: its
    counts, the joint law's loss at its expert count and active parameters with embeddings, FLOPs
    per token on the active path, memory per device with expert parallelism, batch and steps, the
    MoE learning-rate rule beside the batch law's, validity."""
    from ..model.moe import joint_loss

    warnings: list[str] = []
    if d > d_max:
        warnings.append(f"the budget pays for {d:.4g} tokens; --max-tokens holds the run to {d_max:.4g}")
        d = d_max
    c = shape.counts()
    per_token = shape.flops_per_token(seq_len)
    rec.update({"shape": {**shape.describe(), "seq_len": seq_len}, "params": float(c["params_active"]),
                "params_total": float(c["params_total"]), "experts": shape.experts, "tokens": d,
                "tokens_per_param": d / c["params_active"]})
    law = to_array_law(spec.params)
    rec["loss"] = float(joint_loss(law, jnp.log(float(c["params_active"])), jnp.log(d), float(shape.experts)))
    rec["flops_per_token"] = per_token
    rec["flops_ratio_to_6n"] = {k: v / per_token["6n"] for k, v in per_token.items()}
    rec["flops_convention"] = convention
    rec["flops"] = per_token[convention] * d
    rec["hardware_flops"] = rec["flops"] * (RECOMPUTE_FACTOR if layout.recompute == "full" else 1.0)
    rec["layout"] = _layout_record(layout)
    rec["memory"] = moe_memory(shape, layout, seq_len, cluster.accelerator.memory_gb if cluster else None, reserve_gb)
    params = {"total": float(c["params_active"]), "non_embedding": float(c["params_active_non_embedding"])}
    rec["warnings"] = warnings
    rec["batch"] = _steps(batch_from(batch_law, per_token, params, d), layout, seq_len, d, d_max, rec["warnings"])
    rec["batch"]["learning_rate_moe"] = moe_learning_rate(float(c["params_active_non_embedding"]), shape.experts)
    attach(rec, extrapolation(spec.validity, rec["params"], d))


def moe_learning_rate(params_active_non_embedding: float, experts: int) -> dict:
    """Ludziejewski et al. 2025's peak learning rate (eq. 8, ``data/laws.toml``):
    exp(c0 + c_n ln N_act,non-emb + c_e ln E), with whether it extrapolates beyond the expert
    counts and sizes it was fitted on."""
    e = data_toml("laws.toml")["ludziejewski2025-moe"]["learning_rate"]
    lr = math.exp(e["log_coef"] + e["n_exponent"] * math.log(params_active_non_embedding)
                  + e["e_exponent"] * math.log(experts))
    lo_e, hi_e = e["experts"]
    inside = lo_e <= experts <= hi_e and params_active_non_embedding <= e["params_max"]
    return {"learning_rate": lr, "source": e["source"], "extrapolates": not inside}


#: a scenario's [plan] keys and their defaults (the `budgetopt plan` flags of the same names)
PLAN_DEFAULTS = {"seq_len": 4096, "vocab": 32_000, "ffn": "swiglu", "flops_convention": "chinchilla",
                 "batch_law": "deepseek2024", "tp": 1, "pp": 1, "zero": 1, "micro_batch": 1, "recompute": "none",
                 "flash": True, "pue": 1.0, "ep": 1}


def check_plan_options(options: dict) -> dict:
    """A scenario's [plan] table, completed with the defaults and validated as ``budgetopt plan``
    validates its flags (errors name the key)."""
    opts = {**PLAN_DEFAULTS, **options}
    for k, v in opts.items():
        want = type(PLAN_DEFAULTS[k])
        if want is float and isinstance(v, int) and not isinstance(v, bool):
            opts[k] = v = float(v)
        if isinstance(v, bool) != (want is bool) or not isinstance(v, want):
            kind = {bool: "true or false", int: "a whole number", float: "a number"}.get(want, "a string")
            raise ParameterError(k, f"must be {kind}, got {v!r}")
    check_energy(opts["pue"], None, None)
    Shape(1, 128, 1, ffn=opts["ffn"], vocab=opts["vocab"], seq_len=opts["seq_len"])
    Layout(tp=opts["tp"], pp=opts["pp"], zero=opts["zero"], micro_batch=opts["micro_batch"],
           recompute=opts["recompute"], flash=opts["flash"], ep=opts["ep"])
    check_convention(opts["flops_convention"])
    laws = data_toml("batch_laws.toml")
    if opts["batch_law"] not in laws:
        raise ParameterError("batch_law", f"unknown batch law {opts['batch_law']!r}; allowed: {', '.join(laws)}")
    return opts
