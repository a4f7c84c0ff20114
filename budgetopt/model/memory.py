"""Training memory per device: mixed-precision AdamW states sharded by ZeRO over the
data-parallel degree and split by tensor and pipeline parallelism, plus activations.

States (Rajbhandari et al. 2020, ZeRO): bf16 weights 2 bytes/parameter, bf16 gradients 2, and
K = 12 of optimizer states (fp32 master weights, Adam m and v). ZeRO-1 divides the optimizer
states by the data-parallel degree N_d, ZeRO-2 the gradients too, ZeRO-3 (FSDP) the weights
too; tensor (t) and pipeline (p) parallelism divide all three by t*p. Their Figure 1 (7.5B
parameters, N_d = 64): 120, 31.4, 16.6 and 1.9 GB.

Activations (Korthikanti et al. 2022, 16-bit), per layer for a micro-batch b of sequences of s
tokens, hidden size h, a heads: s*b*h*(34 + 5*a*s/h) bytes; tensor parallelism with sequence
parallelism divides it by t; flash attention keeps no a*s^2 scores (the 5*a*s/h term goes);
full recomputation keeps each layer's input, 2*s*b*h, plus one layer's working set. A pipeline
stage holds L/p layers and, under 1F1B, up to p micro-batches in flight.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..core.errors import ParameterError
from .moe_shape import MoEShape
from .shape import Shape

GB = 1e9
ZERO_STAGES = (0, 1, 2, 3)
RECOMPUTE = ("none", "full")


@dataclass(frozen=True)
class Layout:
    """How a run is split: data-parallel degree ``dp``, tensor ``tp`` and pipeline ``pp``,
    ZeRO stage, micro-batch (sequences per device per step), activation recomputation, flash
    attention, sequence parallelism (with tp), and bytes per parameter of each state."""

    dp: int = 1
    tp: int = 1
    pp: int = 1
    zero: int = 1
    ep: int = 1  # expert parallelism (routed experts only; ``moe_memory``)
    micro_batch: int = 1
    recompute: str = "none"
    flash: bool = True
    sequence_parallel: bool = True
    weight_bytes: float = 2.0
    grad_bytes: float = 2.0
    optimizer_bytes: float = 12.0

    def __post_init__(self):
        for name in ("dp", "tp", "pp", "micro_batch", "ep"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ParameterError(name, f"must be a whole number >= 1, got {v!r}")
        if self.zero not in ZERO_STAGES:
            raise ParameterError("zero", f"must be a ZeRO stage 0, 1, 2 or 3, got {self.zero!r}")
        if self.recompute not in RECOMPUTE:
            raise ParameterError("recompute", f"must be one of {', '.join(RECOMPUTE)}, got {self.recompute!r}")
        for name in ("weight_bytes", "grad_bytes", "optimizer_bytes"):
            if not getattr(self, name) >= 0:
                raise ParameterError(name, f"must be >= 0 bytes per parameter, got {getattr(self, name)!r}")

    @property
    def devices(self) -> int:
        return self.dp * self.tp * self.pp


def states(params: float, layout: Layout) -> dict[str, float]:
    """Bytes per device of weights, gradients and optimizer states."""
    split = layout.tp * layout.pp
    dp = layout.dp
    return {"weights": params * layout.weight_bytes / split / (dp if layout.zero >= 3 else 1),
            "gradients": params * layout.grad_bytes / split / (dp if layout.zero >= 2 else 1),
            "optimizer": params * layout.optimizer_bytes / split / (dp if layout.zero >= 1 else 1)}


def activations_per_layer(shape: Shape, layout: Layout) -> float:
    """Bytes of one layer's stored activations for one micro-batch (Korthikanti et al. 2022)."""
    s, b, h, a = shape.seq_len, layout.micro_batch, shape.d_model, shape.n_heads
    scores = 0.0 if layout.flash else 5.0 * a * s / h
    full = s * b * h * (34.0 + scores)
    if layout.sequence_parallel or layout.tp == 1:
        return full / layout.tp
    return 10.0 * s * b * h + (full - 10.0 * s * b * h) / layout.tp


def activations(shape: Shape, layout: Layout) -> float:
    """Bytes of activations on the busiest device (the first pipeline stage)."""
    layers = -(-shape.n_layer // layout.pp)
    in_flight = layout.pp  # 1F1B: the first stage holds up to p micro-batches
    per_layer = activations_per_layer(shape, layout)
    if layout.recompute == "full":
        split = layout.tp if layout.sequence_parallel else 1
        inputs = 2.0 * shape.seq_len * layout.micro_batch * shape.d_model / split
        return layers * in_flight * inputs + per_layer
    return layers * in_flight * per_layer


def memory(shape: Shape, layout: Layout, device_gb: float | None = None, reserve_gb: float = 4.0) -> dict:
    """Bytes per device by part, their total, the device's usable memory (its catalog memory
    minus ``reserve_gb`` for the framework, buffers and fragmentation) and whether it fits."""
    rec = states(shape.params()["total"], layout)
    rec["activations"] = activations(shape, layout)
    rec["total"] = sum(rec.values())
    if device_gb is not None:
        rec["device_memory"] = max(device_gb - reserve_gb, 0.0) * GB
        rec["fits"] = rec["total"] <= rec["device_memory"]
    return rec


def smallest_fit(shape: Shape, layout: Layout, devices: int, device_gb: float,
                 reserve_gb: float = 4.0) -> Layout | None:
    """The least-changed layout on ``devices`` devices that fits: the given tensor and pipeline
    degrees with higher ZeRO stages, then with full recomputation (no extra communication on the
    critical path); only then more tensor parallelism within a node (up to 8) and more pipeline
    stages; None when nothing fits."""
    given = (layout.tp, layout.pp)
    splits = {(tp, pp) for tp in (layout.tp, 1, 2, 4, 8) for pp in (layout.pp, 1, 2, 4, 8, 16, 32, 64)
              if tp >= layout.tp and pp >= layout.pp}
    for tp, pp in sorted(splits, key=lambda s: (s != given, s[0] * s[1], s)):
        if devices % (tp * pp) or shape.n_heads % tp or pp > shape.n_layer:
            continue
        for recompute in dict.fromkeys((layout.recompute, "full")):
            for zero in ZERO_STAGES[layout.zero:]:
                cand = dataclasses.replace(layout, dp=devices // (tp * pp), tp=tp, pp=pp, zero=zero,
                                           recompute=recompute)
                if memory(shape, cand, device_gb, reserve_gb)["fits"]:
                    return cand
    return None


def moe_memory(shape: MoEShape, layout: Layout, seq_len: int, device_gb: float | None = None,
               reserve_gb: float = 4.0) -> dict:
    """Bytes per device of a routed transformer. The routed experts are sharded over ``layout.ep``
    ranks drawn from the data- and tensor-parallel ones (Megatron-Core's expert parallelism with
    expert tensor parallelism 1: ep divides dp x tp, and the experts' ZeRO group is the
    expert-data-parallel dp x tp / ep) and over the pipeline stages; everything else (attention,
    shared experts, router, dense layers, embeddings) as a dense model's weights: over tp x pp,
    ZeRO over dp. Activations as the dense layer of the same width, heads and sequence
    (Korthikanti et al.): the routed tokens' dispatch buffers are not counted."""
    if shape.experts % layout.ep:
        raise ParameterError("ep", f"must divide the routed experts ({shape.experts}), got {layout.ep}")
    if (layout.dp * layout.tp) % layout.ep:
        raise ParameterError("ep", f"must divide dp x tp ({layout.dp} x {layout.tp}): expert-parallel ranks are "
                             f"data- or tensor-parallel ranks, got {layout.ep}")
    routed = shape.routed_params()
    rest = states(shape.counts()["params_total"] - routed, layout)
    edp = layout.dp * layout.tp // layout.ep
    experts = states(routed, dataclasses.replace(layout, dp=edp, tp=layout.ep))
    rec = {k: rest[k] + experts[k] for k in rest}
    rec["experts"] = sum(experts.values())
    proxy = Shape(shape.n_layer, shape.d_model, shape.n_heads, vocab=shape.vocab, seq_len=seq_len)
    rec["activations"] = activations(proxy, layout)
    rec["total"] = sum(v for k, v in rec.items() if k != "experts")
    if device_gb is not None:
        rec["device_memory"] = max(device_gb - reserve_gb, 0.0) * GB
        rec["fits"] = rec["total"] <= rec["device_memory"]
    return rec
