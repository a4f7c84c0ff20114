"""Mixture-of-experts shapes: exact total and active parameter counts of a routed transformer
(routed experts with top-k, shared experts, dense layers first or every other layer, GQA or
multi-head latent attention), and the catalog of released architectures in
``data/architectures.toml`` with their developers' published totals.

Counted per layer: attention (GQA: Q, O d x h*d_h and K, V d x h_kv*d_h, optional per-head
q/k norms; MLA as DeepSeek-V2/V3: the low-rank Q and joint KV projections with their norms, the
decoupled rotary key, the output), two RMSNorm weights, and the FFN: dense SwiGLU 3*d*d_ff, or
the MoE: routed experts E * 3*d*d_expert, shared experts S * 3*d*d_shared and the router d*E.
Active: the same with top_k of the E routed experts. Embeddings V*d, doubled when the output
head is untied; the final norm d. Units: parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from ..core.errors import InputError, ParameterError
from ..core.files import data_toml
from .shape import Shape

ATTENTION_KINDS = ("gqa", "mla")


@dataclass(frozen=True)
class MoEShape:
    """A routed decoder-only transformer (field names as in ``data/architectures.toml``)."""

    n_layer: int
    d_model: int
    n_heads: int
    vocab: int
    experts: int
    top_k: int
    d_expert: int
    n_kv_heads: int | None = None
    head_dim: int | None = None
    tied: bool = False
    shared_experts: int = 0
    d_shared: int | None = None
    dense_layers: int = 0
    d_ff: int | None = None
    moe_every: int = 1
    attention: str = "gqa"
    qk_norm: bool = False
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type.startswith("int") and v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise ParameterError(f.name, f"must be a whole number >= 0, got {v!r}")
        for name in ("n_layer", "d_model", "n_heads", "vocab", "experts", "top_k", "d_expert", "moe_every"):
            if getattr(self, name) < 1:
                raise ParameterError(name, f"must be a whole number >= 1, got {getattr(self, name)!r}")
        if self.top_k > self.experts:
            raise ParameterError("top_k", f"must be at most the routed experts ({self.experts}), got {self.top_k}")
        if self.attention not in ATTENTION_KINDS:
            raise ParameterError("attention", f"unknown {self.attention!r}; allowed: {', '.join(ATTENTION_KINDS)}")
        if self.dense_layers and not self.d_ff:
            raise ParameterError("d_ff", "dense layers need their FFN width d_ff")
        if self.dense_layers > self.n_layer:
            raise ParameterError("dense_layers", f"must be at most n_layer ({self.n_layer}), got {self.dense_layers}")
        if self.moe_every > 1 and not self.d_ff:
            raise ParameterError("d_ff", "layers between MoE layers are dense: give their FFN width d_ff")

    @property
    def moe_layers(self) -> int:
        """Layers with an MoE FFN: after the first ``dense_layers``, every ``moe_every``-th."""
        after = range(1, self.n_layer - self.dense_layers + 1)
        return sum(1 for i in after if i % self.moe_every == 0)

    def attention_matmul(self) -> int:
        """Weights of one layer's attention projections (every token multiplies by all of them)."""
        d, h = self.d_model, self.n_heads
        if self.attention == "mla":
            qk = self.qk_nope_head_dim + self.qk_rope_head_dim
            q = d * self.q_lora_rank + self.q_lora_rank * h * qk if self.q_lora_rank else d * h * qk
            kv = (d * (self.kv_lora_rank + self.qk_rope_head_dim)
                  + self.kv_lora_rank * h * (self.qk_nope_head_dim + self.v_head_dim))
            return q + kv + h * self.v_head_dim * d
        hd = self.head_dim or d // h
        return 2 * d * h * hd + 2 * d * (self.n_kv_heads or h) * hd

    def attention_params(self) -> int:
        """One layer's attention parameters: the projections and their norms (MLA's low-rank
        norms; per-head q/k norms with ``qk_norm``)."""
        if self.attention == "mla":
            return self.attention_matmul() + (self.q_lora_rank if self.q_lora_rank else 0) + self.kv_lora_rank
        return self.attention_matmul() + (2 * (self.head_dim or self.d_model // self.n_heads) if self.qk_norm else 0)

    def score_widths(self) -> tuple[int, int]:
        """(query-key width, value width) of one layer's attention scores: heads x head dims."""
        h = self.n_heads
        if self.attention == "mla":
            return h * (self.qk_nope_head_dim + self.qk_rope_head_dim), h * self.v_head_dim
        hd = self.head_dim or self.d_model // h
        return h * hd, h * hd

    def routed_params(self) -> int:
        """Parameters of the routed experts (what expert parallelism shards)."""
        return self.moe_layers * self.experts * 3 * self.d_model * self.d_expert

    def flops_per_token(self, seq_len: int) -> dict[str, float]:
        """Training FLOPs per token on the active path (the top_k routed experts, the shared
        experts, the router, dense FFNs, attention projections) under the dense shapes'
        conventions (``shape.Shape.flops_per_token``): 6n = 6 x active parameters; kaplan = 6 x
        active non-embedding + 6 L s d_attn; deepseek = 6 x active layer matmuls + 6 L s (d_qk +
        d_v); chinchilla = 3 x the forward pass with the embedding and head matmuls and the full
        s x s attention scores and softmax. Per token at sequence length ``seq_len``."""
        d, s, h, L = self.d_model, seq_len, self.n_heads, self.n_layer
        c = self.counts()
        moe, dense = c["moe_layers"], L - c["moe_layers"]
        shared = self.shared_experts * 3 * d * (self.d_shared or self.d_expert)
        ffn = moe * (self.top_k * 3 * d * self.d_expert + shared + d * self.experts) + dense * 3 * d * (self.d_ff or 0)
        layers = L * self.attention_matmul() + ffn
        d_qk, d_v = self.score_widths()
        scores = L * (2 * s * d_qk + 2 * s * d_v + 3 * h * s)
        forward = 2 * self.vocab * d + 2 * layers + scores + 2 * d * self.vocab
        return {"6n": 6.0 * c["params_active"], "kaplan": 6.0 * c["params_active_non_embedding"] + 6.0 * L * s * d_qk,
                "deepseek": 6.0 * layers + 6.0 * L * s * (d_qk + d_v), "chinchilla": 3.0 * forward}

    def describe(self) -> dict:
        """The shape's fields and its counts (a flat record; ``params_total``, ``params_active``)."""
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, **self.counts(),
                "params_routed": self.routed_params()}

    def counts(self) -> dict:
        """Total and active parameters, with and without embeddings (``params_embedding``: the
        input table plus an untied head)."""
        d = self.d_model
        expert = 3 * d * self.d_expert
        shared = self.shared_experts * 3 * d * (self.d_shared or self.d_expert)
        router = d * self.experts
        moe = self.moe_layers
        dense = self.n_layer - moe
        common = self.n_layer * (self.attention_params() + 2 * d) + dense * 3 * d * (self.d_ff or 0) + d
        total_ne = common + moe * (self.experts * expert + shared + router)
        active_ne = common + moe * (self.top_k * expert + shared + router)
        emb = self.vocab * d * (1 if self.tied else 2)
        return {"params_total": total_ne + emb, "params_active": active_ne + emb, "params_embedding": emb,
                "params_total_non_embedding": total_ne, "params_active_non_embedding": active_ne,
                "moe_layers": moe}


def architecture_names(kind: str | None = None) -> list[str]:
    """The catalog's names (``kind``: "moe" or "dense" only)."""
    cat = data_toml("architectures.toml")
    return [k for k, v in cat.items() if kind is None or v.get("kind", "moe") == kind]


def architecture(name: str) -> tuple[MoEShape | Shape, dict]:
    """A released architecture by name: its shape (an ``MoEShape``, or a dense ``Shape`` for an
    entry of kind "dense") and its catalog entry (source, published totals and their convention)."""
    cat = data_toml("architectures.toml")
    if name not in cat:
        raise ParameterError("arch", f"unknown architecture {name!r}; known: {', '.join(cat)}")
    entry = cat[name]
    cls = Shape if entry.get("kind", "moe") == "dense" else MoEShape
    keys = {f.name for f in fields(cls)}
    try:
        return cls(**{k: v for k, v in entry.items() if k in keys}), entry
    except ParameterError as e:
        raise InputError(f"architectures.{name}.{e.field}", e.message) from None


def published_active(entry: dict, counts: dict) -> float:
    """The active count in the developer's convention: without the input embedding table where
    they leave it out (a lookup, not a matmul)."""
    if entry.get("active_counts_input_embedding", True):
        return counts["params_active"]
    return counts["params_active"] - entry["vocab"] * entry["d_model"]


#: the widest family member ``joint_shape_for`` considers: 1,024 layers of width 65,536
MAX_JOINT_LAYERS = 1024


def joint_family(n_layer: int, experts: int, vocab: int) -> MoEShape:
    """The routed models Ludziejewski et al. 2025 trained (their §5.1 and Appendix A.3):
    d_model = 64·n_blocks, as many heads of width 64 as blocks, top-1 Switch experts whose SwiGLU
    hidden width is 3·d_model, an MoE FFN in every layer, an untied output head."""
    return MoEShape(n_layer=n_layer, d_model=64 * n_layer, n_heads=n_layer, vocab=vocab, experts=experts, top_k=1,
                    d_expert=3 * 64 * n_layer)


def joint_shape_for(params_active: float, experts: int, *, vocab: int, tp: int = 1, max_total: float | None = None,
                    kv_tokens: float = 0.0) -> MoEShape:
    """The member of ``joint_family`` with E experts whose active parameters (embeddings
    included, the law's convention) are nearest ``params_active`` in log, among those whose heads
    split over ``tp`` and whose total parameters plus the KV cache of ``kv_tokens`` serving tokens
    (2·T·layers·d_model elements) fit ``max_total``; the smallest member if none fits."""
    best, best_gap = None, math.inf
    for n_layer in range(tp, MAX_JOINT_LAYERS + 1, tp):
        sh = joint_family(n_layer, experts, vocab)
        c = sh.counts()
        if max_total is not None and c["params_total"] + 2.0 * kv_tokens * n_layer * sh.d_model > max_total:
            break  # the total only grows with the layers
        gap = abs(math.log(c["params_active"] / params_active))
        if gap < best_gap:
            best, best_gap = sh, gap
        elif c["params_active"] > params_active:
            break
    return best if best is not None else joint_family(tp, experts, vocab)
