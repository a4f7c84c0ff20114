"""Model shape: a decoder-only transformer's parameter count, its training FLOPs per token under
named conventions, and the nearest shape of a family for a target parameter count.

Counts are exact for the shape as given: attention Q, O (d x h*d_h) and K, V (d x h_kv*d_h);
FFN 2*d*f (GELU) or 3*d*f (SwiGLU); two norms per layer and a final one (RMSNorm: a weight,
LayerNorm: weight and bias); optional biases; embeddings V*d, doubled when the output head is
untied; learned positions n_ctx*d where the model has them. Checks (tests): Llama 2 7B = 6.74B,
GPT-3 175B = 174.6B.

FLOPs per token of training (forward + backward = 3 x forward), all per token:
- ``6n``: 6 N, what the scaling laws assume (Kaplan et al. 2020; Hoffmann et al. 2022);
- ``kaplan``: 6 N_ne + 6 L n_ctx d_attn (Kaplan et al. 2020, Table 1);
- ``deepseek``: 6 N_ne + 12 L d_attn l_seq, DeepSeek LLM's M (72 L d^2 + 12 L d l_seq for a
  12 L d^2 body) with the shape's own non-embedding weights;
- ``chinchilla``: Hoffmann et al. 2022 Appendix F, the full count with embeddings, logits and
  softmax, backward twice the forward.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..core.errors import ParameterError
from ..core.units import require_positive

FFN_KINDS = ("swiglu", "gelu")
NORMS = ("rmsnorm", "layernorm")
CONVENTIONS = ("6n", "kaplan", "deepseek", "chinchilla")
#: llama-style family defaults (a convention, not a law: Kaplan et al. found loss nearly flat
#: over a wide band of aspect ratios)
HEAD_DIM = 128
ASPECT = 128  # d_model / n_layer, as GPT-3 175B (12288/96) and Llama 2 7B (4096/32)
FF_MULTIPLE = 256
GQA_KV_HEADS = 8  # Llama 3 (all sizes) and Llama 2 34B/70B: 8 key/value heads


@dataclass(frozen=True)
class Shape:
    """A decoder-only transformer. ``d_ff`` is the FFN's inner width (for SwiGLU the width of
    each of its three matrices); ``positions`` > 0 for learned position embeddings."""

    n_layer: int
    d_model: int
    n_heads: int
    n_kv_heads: int | None = None
    d_ff: int | None = None
    ffn: str = "swiglu"
    vocab: int = 32_000
    tied: bool = False
    seq_len: int = 4096
    norm: str = "rmsnorm"
    bias: bool = False
    positions: int = 0

    def __post_init__(self):
        for name in ("n_layer", "d_model", "n_heads", "vocab", "seq_len"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ParameterError(name, f"must be a whole number >= 1, got {v!r}")
        if self.d_model % self.n_heads:
            raise ParameterError("n_heads", f"must divide d_model ({self.d_model}), got {self.n_heads}")
        kv = self.kv_heads
        if isinstance(kv, bool) or not isinstance(kv, int) or kv < 1 or self.n_heads % kv:
            raise ParameterError("n_kv_heads", f"must be a whole number dividing n_heads ({self.n_heads}), got {kv!r}")
        if self.ffn not in FFN_KINDS:
            raise ParameterError("ffn", f"unknown FFN {self.ffn!r}; allowed: {', '.join(FFN_KINDS)}")
        if self.norm not in NORMS:
            raise ParameterError("norm", f"unknown norm {self.norm!r}; allowed: {', '.join(NORMS)}")
        if self.d_ff is not None and (isinstance(self.d_ff, bool) or not isinstance(self.d_ff, int) or self.d_ff < 1):
            raise ParameterError("d_ff", f"must be a whole number >= 1, got {self.d_ff!r}")
        if not isinstance(self.positions, int) or self.positions < 0:
            raise ParameterError("positions", f"must be a whole number >= 0, got {self.positions!r}")

    @property
    def kv_heads(self) -> int:
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def ff(self) -> int:
        """The FFN width: given, else 4d (GELU) or 8d/3 rounded up to a multiple of 256 (SwiGLU)."""
        if self.d_ff is not None:
            return self.d_ff
        if self.ffn == "gelu":
            return 4 * self.d_model
        return -(-(8 * self.d_model) // (3 * FF_MULTIPLE)) * FF_MULTIPLE

    def layer_weights(self) -> int:
        """The weight matrices of one layer (attention and FFN), without norms and biases."""
        d, dh = self.d_model, self.head_dim
        attention = 2 * d * self.n_heads * dh + 2 * d * self.kv_heads * dh
        return attention + (3 if self.ffn == "swiglu" else 2) * d * self.ff

    def layer_params(self) -> int:
        """One layer: weights, two norms, and biases when the shape has them."""
        d, dh = self.d_model, self.head_dim
        norm = (2 if self.norm == "layernorm" else 1) * d
        biases = 0
        if self.bias:
            biases = (self.n_heads + 2 * self.kv_heads) * dh + d + (2 if self.ffn == "swiglu" else 1) * self.ff + d
        return self.layer_weights() + 2 * norm + biases

    def params(self) -> dict[str, int]:
        """Parameter counts: ``total``, ``non_embedding`` (layers and the final norm) and
        ``embedding`` (token embeddings, an untied output head, learned positions)."""
        final_norm = (2 if self.norm == "layernorm" else 1) * self.d_model
        non_embedding = self.n_layer * self.layer_params() + final_norm
        embedding = self.vocab * self.d_model * (1 if self.tied else 2) + self.positions * self.d_model
        return {"total": non_embedding + embedding, "non_embedding": non_embedding, "embedding": embedding}

    def flops_per_token(self) -> dict[str, float]:
        """Training FLOPs per token under every convention (see the module docstring)."""
        p = self.params()
        L, d, s, V = self.n_layer, self.d_model, self.seq_len, self.vocab
        d_attn = self.n_heads * self.head_dim
        body = L * self.layer_weights()  # the matmul weights every token passes through
        kv = self.kv_heads * self.head_dim
        per_layer = (2 * s * d * (d_attn + 2 * kv)        # Q, K, V projections
                     + 2 * s * s * d_attn                 # Q K^T
                     + 3 * self.n_heads * s * s           # softmax
                     + 2 * s * s * d_attn                 # scores @ V
                     + 2 * s * d_attn * d                 # output projection
                     + 2 * s * (3 if self.ffn == "swiglu" else 2) * d * self.ff)
        forward = 2 * s * V * d + L * per_layer + 2 * s * d * V
        return {"6n": 6.0 * p["total"], "kaplan": 6.0 * p["non_embedding"] + 6.0 * L * s * d_attn,
                "deepseek": 6.0 * body + 12.0 * L * d_attn * s, "chinchilla": 3.0 * forward / s}

    def describe(self) -> dict:
        """The shape's fields, its FFN width and its parameter counts (a flat record)."""
        rec = {k: v for k, v in asdict(self).items() if k not in ("d_ff", "n_kv_heads")}
        rec.update({"n_kv_heads": self.kv_heads, "d_ff": self.ff})
        p = self.params()
        rec.update({"params_total": p["total"], "params_non_embedding": p["non_embedding"],
                    "params_embedding": p["embedding"]})
        return rec


def check_convention(name: str) -> str:
    if name not in CONVENTIONS:
        raise ParameterError("flops_convention", f"unknown convention {name!r}; allowed: {', '.join(CONVENTIONS)}")
    return name


def llama_shape(n_layer: int, *, vocab: int = 32_000, seq_len: int = 4096, tied: bool = False,
                n_kv_heads: int | None = None, ffn: str = "swiglu", tp: int = 1, d_model: int | None = None) -> Shape:
    """The llama-style shape with ``n_layer`` layers: d = 128 L (or ``d_model``) rounded to a
    multiple of the head dim (128) x ``tp``, so the heads split over tensor parallelism; SwiGLU
    with d_ff = 8d/3 rounded up to a multiple of 256 (or GELU, 4d). Attention is grouped-query as
    the family's current generation has it at every size above 8 heads (Llama 3: 8 KV heads at
    8B, 70B and 405B; Llama 2 from 34B): 8 KV heads, or ``tp`` when that is more (each
    tensor-parallel rank keeps a whole KV head), the query heads a multiple of them;
    ``n_kv_heads`` sets them."""
    target = ASPECT * n_layer if d_model is None else d_model
    groups = n_kv_heads if n_kv_heads is not None else GQA_KV_HEADS if round(target / HEAD_DIM) > GQA_KV_HEADS else 1
    unit = HEAD_DIM * math.lcm(tp, groups)  # query heads: a multiple of tp and of the KV heads
    d = max(unit, round(target / unit) * unit)
    heads = d // HEAD_DIM
    if n_kv_heads is None:
        kv = max(GQA_KV_HEADS, tp) if heads > GQA_KV_HEADS else None
    else:
        kv = math.gcd(heads, n_kv_heads)
    return Shape(n_layer, d, heads, kv, None, ffn, vocab, tied, seq_len)


def shape_for(params: float, *, vocab: int = 32_000, seq_len: int = 4096, tied: bool = False,
              n_kv_heads: int | None = None, ffn: str = "swiglu", tp: int = 1, at_most: float | None = None) -> Shape:
    """The llama-style shape (``llama_shape``) whose total parameter count is nearest ``params``:
    for each number of layers the widths on either side of 128 per layer (in ``llama_shape``'s
    steps), so a coarse width step does not force a distant size; among those with at most
    ``at_most`` parameters when a cap is given (the smallest shape when none is under it)."""
    require_positive(params, "params")
    best = None
    step = HEAD_DIM * math.lcm(tp, n_kv_heads or GQA_KV_HEADS)  # the width step of a grouped-query shape
    for n_layer in range(1, 513):
        shapes = {llama_shape(n_layer, vocab=vocab, seq_len=seq_len, tied=tied, n_kv_heads=n_kv_heads, ffn=ffn, tp=tp,
                              d_model=ASPECT * n_layer + k * step) for k in (-1, 0, 1)}
        for s in sorted(shapes, key=lambda s: s.d_model):
            total = s.params()["total"]
            if at_most is not None and total > at_most and best is not None:
                continue
            gap = abs(math.log(total / params))
            if best is None or gap < best[0] - 1e-12:
                best = (gap, s)
        if min(s.params()["total"] for s in shapes) > 4 * params:
            break
    return best[1]


def shape_from(n_layer: int | None = None, d_model: int | None = None, n_heads: int | None = None, *,
               n_kv_heads: int | None = None, d_ff: int | None = None, ffn: str = "swiglu", vocab: int = 32_000,
               tied: bool = False, seq_len: int = 4096) -> Shape | None:
    """A shape from its dimensions; None when none of ``n_layer``, ``d_model``, ``n_heads`` is
    given (the caller then derives the family's shape from N, with ``n_kv_heads`` if given).
    Heads default to d_model / 128."""
    if ffn not in FFN_KINDS:
        raise ParameterError("ffn", f"unknown FFN {ffn!r}; allowed: {', '.join(FFN_KINDS)}")
    if n_layer is None and d_model is None and n_heads is None:
        if d_ff is not None:  # n_kv_heads alone sets the family shape's KV heads (``shape_for``)
            raise ParameterError("d_ff", "give the shape's {n_layer} and {d_model} with it", names=True)
        return None
    if n_layer is None or d_model is None:
        raise ParameterError("n_layer" if n_layer is None else "d_model", "a shape needs {n_layer} and {d_model}",
                             names=True)
    if n_heads is None:
        if d_model % HEAD_DIM:
            raise ParameterError("n_heads",
                                 f"needed: d_model {d_model} is not a multiple of the default head dim {HEAD_DIM}")
        n_heads = d_model // HEAD_DIM
    return Shape(n_layer, d_model, n_heads, n_kv_heads, d_ff, ffn, vocab, tied, seq_len)
