"""MoE shapes (model/moe_shape.py): every released architecture in the catalog counted from its
configuration, against its developer's published totals to the rounding they print, in the
convention they use (DeepSeek's 37B active leaves out the input embedding table; Llama 4's
totals count the vision encoder the text decoder lacks: the text count is within 1.5 % of them:
Scout 107.8B of 109B, Maverick 400.7B of a rounded 400B)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from budgetopt.core.errors import ParameterError
from budgetopt.model.moe_shape import MoEShape, architecture, architecture_names, published_active


def half_unit(printed: float) -> float:
    """Half a unit in the last digit the developer printed (46.7B -> 0.05B, 671B -> 0.5B)."""
    exponent = Decimal(repr(printed / 1e9)).normalize().as_tuple().exponent
    return 0.5 * 10.0 ** min(exponent, 0) * 1e9


@pytest.mark.parametrize("name", architecture_names("dense"))
def test_dense_catalog_counts_are_the_published_totals(name):
    """The dense models `plan --arch` knows: their count within half a printed unit of the total
    (Llama 3.1 405B within its stated tolerance: the count is 405.85B)."""
    shape, entry = architecture(name)
    total = shape.params()["total"]
    tol = entry.get("published_total_tolerance")
    if tol:
        assert abs(1 - total / entry["published_total"]) <= tol
    else:
        assert abs(total - entry["published_total"]) <= half_unit(entry["published_total"]), total
    assert entry["source"]


@pytest.mark.parametrize("name", architecture_names("moe"))
def test_counts_are_the_published_totals(name):
    shape, entry = architecture(name)
    c = shape.counts()
    if "published_total_tolerance" in entry:  # Llama 4: the published total counts a vision encoder too
        assert abs(1 - c["params_total"] / entry["published_total"]) <= entry["published_total_tolerance"], c
    else:
        assert abs(c["params_total"] - entry["published_total"]) <= half_unit(entry["published_total"]), c
    assert abs(published_active(entry, c) - entry["published_active"]) <= half_unit(entry["published_active"]), c
    assert c["params_total"] == c["params_total_non_embedding"] + c["params_embedding"]
    assert entry["source"]


def test_mixtral_counted_by_hand():
    """Mixtral 8x7B written out: per layer Q, O 4096^2, K, V 4096 x 1024, 8 SwiGLU experts of
    3 x 4096 x 14336, a 4096 x 8 router and two norms; 32 layers; untied 32000 x 4096 twice."""
    d, f, layers = 4096, 14336, 32
    attn = 2 * d * d + 2 * d * 1024
    per_layer_total = attn + 8 * 3 * d * f + d * 8 + 2 * d
    per_layer_active = attn + 2 * 3 * d * f + d * 8 + 2 * d
    emb = 2 * 32000 * d
    c = architecture("mixtral-8x7b")[0].counts()
    assert c["params_total"] == layers * per_layer_total + d + emb
    assert c["params_active"] == layers * per_layer_active + d + emb


def test_llama4_maverick_counted_by_hand():
    """Maverick written out: 48 layers, GQA 40/8 heads of 128, every second layer MoE (128 routed
    SwiGLU experts of 8192 + one shared, a 5120 x 128 router), the others dense SwiGLU of 16384;
    untied 202048 x 5120 embeddings; the weightless L2 q/k norm adds nothing."""
    d = 5120
    attn = 2 * d * 40 * 128 + 2 * d * 8 * 128 + 2 * d
    moe_total = 128 * 3 * d * 8192 + 3 * d * 8192 + d * 128
    moe_active = 3 * d * 8192 + 3 * d * 8192 + d * 128
    dense = 3 * d * 16384
    emb = 2 * 202048 * d
    c = architecture("llama4-maverick")[0].counts()
    assert c["moe_layers"] == 24
    assert c["params_total"] == 48 * attn + 24 * (moe_total + dense) + d + emb
    assert c["params_active"] == 48 * attn + 24 * (moe_active + dense) + d + emb


def test_dense_layers_and_interleaving_count_as_dense():
    every = MoEShape(4, 64, 4, 100, experts=4, top_k=1, d_expert=32)
    first = MoEShape(4, 64, 4, 100, experts=4, top_k=1, d_expert=32, dense_layers=1, d_ff=128)
    alternate = MoEShape(4, 64, 4, 100, experts=4, top_k=1, d_expert=32, moe_every=2, d_ff=128)
    assert (every.moe_layers, first.moe_layers, alternate.moe_layers) == (4, 3, 2)
    dense_ffn, moe_ffn = 3 * 64 * 128, 4 * 3 * 64 * 32 + 64 * 4
    assert first.counts()["params_total"] - every.counts()["params_total"] == dense_ffn - moe_ffn


@pytest.mark.parametrize("kwargs,field", [({"top_k": 9}, "top_k"), ({"experts": 0}, "experts"),
                                          ({"attention": "mqa"}, "attention"), ({"dense_layers": 2}, "d_ff")])
def test_bad_shapes_name_the_field(kwargs, field):
    base = {"n_layer": 4, "d_model": 64, "n_heads": 4, "vocab": 100, "experts": 8, "top_k": 2, "d_expert": 32}
    with pytest.raises(ParameterError) as e:
        MoEShape(**{**base, **kwargs})
    assert e.value.field == field
    with pytest.raises(ParameterError) as e:
        architecture("gpt-5")
    assert e.value.field == "arch"


def test_the_audits_models_name_catalog_shapes_that_count_their_parameters():
    """Every audit model that names an architecture (data/models.toml `arch`) is the catalog's
    shape: its parameters (active, for a routed model, in its developer's convention) within
    1.5 % of the catalog's count."""
    from budgetopt.core.files import data_toml

    named = {k: m for k, m in data_toml("models.toml").items() if "arch" in m}
    assert len(named) >= 8
    for key, m in named.items():
        shape, entry = architecture(m["arch"])
        if isinstance(shape, MoEShape):
            counted = published_active(entry, shape.counts())
            assert abs(1 - shape.counts()["params_total"] / m["params_total"]) <= 0.015, key
        else:
            counted = shape.params()["total"]
        assert abs(1 - counted / m["params"]) <= 0.015, (key, counted, m["params"])
