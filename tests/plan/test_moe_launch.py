"""`plan --arch`: a released routed architecture's run plan against arithmetic written out here —
FLOPs per token on the active path (Mixtral 8x7B by hand), states per device with expert
parallelism (DeepSeek-V3's own layout: PP 16, EP 64, ZeRO-1 on 2048 devices), the tokens a
budget or a booking buys, and the loss under the joint MoE law at the model's expert count."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from budgetopt.cli.commands import app
from budgetopt.core.errors import ParameterError
from budgetopt.model.hardware import cluster_from
from budgetopt.model.laws import get_preset
from budgetopt.model.memory import Layout, moe_memory
from budgetopt.model.moe_shape import architecture

runner = CliRunner()


def plan(*args) -> dict:
    r = runner.invoke(app, ["plan", *args, "-f", "json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_mixtral_flops_per_token_by_hand():
    """Mixtral 8x7B at 4096 tokens: per layer the Q, K, V, O projections (4096 x (4096 + 2 x
    1024 + 4096)), two of eight SwiGLU experts (2 x 3 x 4096 x 14336) and the router (4096 x 8);
    QK^T and AV 2 x 2 x s x 4096, softmax 3 x 32 x s; embeddings and head 2 x 32000 x 4096 each."""
    d, s, L, V = 4096, 4096, 32, 32000
    layer = d * (d + 2 * 1024 + d) + 2 * 3 * d * 14336 + d * 8
    forward = 2 * V * d + 2 * L * layer + L * (4 * s * d + 3 * 32 * s) + 2 * V * d
    shape, _ = architecture("mixtral-8x7b")
    f = shape.flops_per_token(s)
    assert f["chinchilla"] == 3 * forward
    assert f["6n"] == 6 * shape.counts()["params_active"]
    assert f["deepseek"] == 6 * L * layer + 12 * L * d * s
    assert f["kaplan"] == 6 * shape.counts()["params_active_non_embedding"] + 6 * L * s * d


def test_deepseek_v3_states_with_expert_parallelism_by_hand():
    """DeepSeek-V3's layout (2048 devices: PP 16 x DP 128, EP 64, ZeRO-1): 58 MoE layers x 256
    experts x 3 x 7168 x 2048 routed parameters over EP 64 x PP 16 with Adam states over the
    expert-data-parallel 128 / 64 = 2; the other parameters over PP 16, Adam states over DP 128."""
    shape, _ = architecture("deepseek-v3")
    routed = 58 * 256 * 3 * 7168 * 2048
    rest = shape.counts()["params_total"] - routed
    m = moe_memory(shape, Layout(dp=128, pp=16, ep=64, zero=1), 4096, 80.0)
    assert m["weights"] == pytest.approx(2 * routed / 1024 + 2 * rest / 16, rel=1e-12)
    assert m["gradients"] == pytest.approx(m["weights"], rel=1e-12)
    assert m["optimizer"] == pytest.approx(12 * routed / 1024 / 2 + 12 * rest / 16 / 128, rel=1e-12)
    assert m["experts"] == pytest.approx(routed / 1024 * (2 + 2 + 12 / 2), rel=1e-12)
    assert m["total"] == pytest.approx(m["weights"] + m["gradients"] + m["optimizer"] + m["activations"])
    # more expert parallelism: the routed states shrink in proportion, the rest does not move
    wider = moe_memory(shape, Layout(dp=128, pp=16, ep=128, zero=1), 4096)
    assert wider["experts"] == pytest.approx(routed / 2048 * (2 + 2 + 12), rel=1e-12)


def test_a_booking_buys_the_tokens_its_hardware_flops_pay_for():
    """1024 H100 x 30 days at the default MFU: tokens x FLOPs per token (chinchilla) x 4/3 (full
    recomputation) = device-seconds x peak x MFU; the plan takes the booked days exactly."""
    res = plan("--arch", "qwen3-235b-a22b", "--gpu", "h100-sxm", "--count", "1024", "--days", "30", "--pp", "8",
               "--ep", "16", "--recompute", "full")
    cluster, _ = cluster_from("h100-sxm", count=1024, days=30)
    assert res["tokens"] * res["flops_per_token"]["chinchilla"] * 4 / 3 == pytest.approx(cluster.flops(), rel=1e-9)
    assert res["wall_days"] == pytest.approx(30) and res["fits_booking"]
    shape, _ = architecture("qwen3-235b-a22b")
    assert res["shape"]["params_total"] == shape.counts()["params_total"]
    assert res["shape"]["params_active"] == res["params"] == shape.counts()["params_active"]
    assert res["layout"]["ep"] == 16 and res["layout"]["dp"] == 128


def test_the_loss_is_the_joint_law_at_the_models_expert_count():
    """Llama 4 Scout on 40T tokens (its model card's): Ludziejewski et al.'s eq. 1 at E = 16 and
    the active parameters with embeddings, written out in NumPy."""
    res = plan("--arch", "llama4-scout", "--tokens", "40T")
    p = get_preset("ludziejewski2025-moe").params
    shift = 1 / (1 / p.e_start - 1 / p.e_max)
    le = -math.log(1 / (16 - 1 + shift) + 1 / p.e_max)
    n, d = res["params"], 40e12
    want = (math.exp(p.log_a) * math.exp(p.delta * le) * n ** (p.alpha + p.gamma * le)
            + math.exp(p.log_b) * math.exp(p.omega * le) * d ** (p.beta + p.zeta * le) + p.c)
    assert res["loss"] == pytest.approx(want, rel=1e-9)
    assert res["flops"] == pytest.approx(res["flops_per_token"]["chinchilla"] * 40e12, rel=1e-12)
    assert not res["warnings"] or all("top-1" in w for w in res["warnings"])


def test_a_flops_budget_and_a_token_cap():
    res = plan("--arch", "mixtral-8x7b", "--flops", "1e23", "--flops-convention", "6n")
    assert res["tokens"] == pytest.approx(1e23 / (6 * res["params"]), rel=1e-12)
    capped = plan("--arch", "mixtral-8x7b", "--flops", "1e23", "--max-tokens", "1T")
    assert capped["tokens"] == 1e12 and any("--max-tokens" in w for w in capped["warnings"])
    assert capped["batch"]["steps"] * capped["batch"]["tokens"] <= 1e12


@pytest.mark.parametrize("ep,field", [(3, "ep"), (0, "ep")])
def test_expert_parallelism_that_cannot_split_the_experts_is_refused(ep, field):
    shape, _ = architecture("mixtral-8x7b")
    with pytest.raises(ParameterError) as e:
        moe_memory(shape, Layout(dp=8, ep=ep), 4096)
    assert e.value.field == field
    with pytest.raises(ParameterError, match="dp x tp"):
        moe_memory(shape, Layout(dp=2, ep=8), 4096)


def test_expert_states_shrink_with_ep_unless_zero_already_shards_them():
    """Without ZeRO the routed states per device fall as 1/EP; under ZeRO-3 they are spread over
    EP x (dp x tp / EP) = dp x tp ranks whatever EP is (EP then buys communication, not memory)."""
    shape, _ = architecture("qwen3-235b-a22b")
    eps = [1, 2, 4, 8, 16]
    plain = np.array([moe_memory(shape, Layout(dp=16, ep=e, zero=0), 4096)["experts"] for e in eps])
    np.testing.assert_allclose(plain[0] / plain, eps, rtol=1e-12)
    sharded = np.array([moe_memory(shape, Layout(dp=16, ep=e, zero=3), 4096)["experts"] for e in eps])
    np.testing.assert_allclose(sharded, sharded[0], rtol=1e-12)


def test_a_catalogued_dense_model_is_planned_as_its_own_shape():
    """`plan --arch llama-3-8b --tokens 15T`: Llama 3 8B's own shape (8.03B) on the tokens given,
    its FLOPs under the shape's count; on a booking, the tokens the booking buys for that shape."""
    res = plan("--arch", "llama-3-8b", "--tokens", "15T")
    shape, entry = architecture("llama-3-8b")
    assert res["arch"] == "llama-3-8b" and res["source"] == entry["source"]
    assert res["params"] == shape.params()["total"] and res["tokens"] == 15e12
    assert res["shape"]["n_kv_heads"] == 8 and res["shape"]["d_ff"] == 14336
    booked = plan("--arch", "llama-3-8b", "--gpu", "h100-sxm", "--count", "512", "--days", "10")
    assert booked["params"] == shape.params()["total"] and booked["fits_booking"]
    assert booked["wall_days"] == pytest.approx(10.0, rel=1e-9)


@pytest.mark.parametrize("args", [["--flops", "1e22"], ["--params", "7e9", "--tokens", "2e12"],
                                  ["--arch", "llama-3-8b", "--tokens", "1T"],
                                  ["--arch", "deepseek-v3", "--tokens", "1T", "--dp", "64", "--ep", "64"]])
def test_every_kind_of_plan_prints_its_table(args):
    """The table of each way to ask for a plan renders (a given model's plan once crashed on a
    loss change it does not have)."""
    r = runner.invoke(app, ["plan", *args], env={"COLUMNS": "100"})
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("budgetopt plan —") and "Memory per device" in r.stdout


# ----------------------------------------------------------------------------------------------
# `plan --law ludziejewski2025-moe`: the optimum's MoE, shaped as the family the law was fitted on


def test_the_joint_family_counts_eq_9_10_plus_router_and_norms():
    """d_model = 64 L, L heads, top-1 SwiGLU experts of width 3d, untied head: active = 2dV + 13 L d²
    (eq. 10) + the router's d·E and two norms per layer + the final norm; total = the same with
    (4 + 9E) L d² (eq. 9)."""
    from budgetopt.model.moe_shape import joint_family

    for n_layer, e, v in ((4, 1, 50257), (26, 4, 50257), (104, 8, 32000)):
        c = joint_family(n_layer, e, v).counts()
        d = 64 * n_layer
        extra = n_layer * (d * e + 2 * d) + d
        assert c["params_active"] == 2 * d * v + 13 * n_layer * d * d + extra
        assert c["params_total"] == 2 * d * v + (4 + 9 * e) * n_layer * d * d + extra


@pytest.mark.parametrize("tp,cap,kv", [(1, None, 0.0), (8, 4e11, 0.0), (4, 2e11, 32768.0)])
def test_the_shape_is_the_familys_nearest_that_splits_and_fits(tp, cap, kv):
    """Against a brute force over every layer count: the nearest member in log N_act among those
    whose heads split over tp and whose total plus KV cache (2·T·L·d) fits the cap."""
    from budgetopt.model.moe_shape import joint_family, joint_shape_for

    target = 6.9e10
    got = joint_shape_for(target, 8, vocab=32000, tp=tp, max_total=cap, kv_tokens=kv)
    ok = []
    for n_layer in range(1, 400):
        c = joint_family(n_layer, 8, 32000).counts()
        if n_layer % tp == 0 and (cap is None or c["params_total"] + 2 * kv * n_layer * 64 * n_layer <= cap):
            ok.append((abs(math.log(c["params_active"] / target)), n_layer))
    assert got.n_layer == min(ok)[1]


def test_an_moe_optimum_plan_spends_its_budget_on_the_optimizes_answer():
    """`plan --law ludziejewski2025-moe --flops C` with a cap: its optimum is `optimize`'s (the
    same flags, the same answer); the shape's N_act trains on the tokens the optimum's 6·N·D buys;
    its loss is eq. 1 at the shape's N_act and E (NumPy), loss_change the difference; every expert
    fits the cap; the MoE learning-rate rule is eq. 8 written out."""
    from budgetopt.plan.moe_optimum import optimize_moe

    res = plan("--law", "ludziejewski2025-moe", "--flops", "1e23", "--max-total-params", "60B", "--max-experts", "32")
    want = optimize_moe(get_preset("ludziejewski2025-moe"), flops=1e23, max_total_params=6e10, max_experts=32)
    o = res["optimum"]
    assert (o["experts"], o["params_active"], o["tokens"], o["loss"]) == (
        want["experts"], want["params_active"], want["tokens"], want["loss"])
    assert res["experts"] == want["experts"] and res["params_total"] <= 6e10
    assert 6 * res["params"] * res["tokens"] == pytest.approx(6 * o["params_active"] * o["tokens"], rel=1e-12)
    p = get_preset("ludziejewski2025-moe").params
    le = -math.log(1 / (res["experts"] - 1 + 1 / (1 / p.e_start - 1 / p.e_max)) + 1 / p.e_max)
    n, d = res["params"], res["tokens"]
    loss = (math.exp(p.log_a + p.delta * le) * n ** (p.alpha + p.gamma * le)
            + math.exp(p.log_b + p.omega * le) * d ** (p.beta + p.zeta * le) + p.c)
    assert res["loss"] == pytest.approx(loss, rel=1e-9)
    assert res["loss_change"] == pytest.approx(loss - o["loss"], abs=1e-12)
    assert abs(math.log(n / o["params_active"])) < 0.05  # the family is 3 % apart at this size
    lr = math.exp(8.39 - 0.81 * math.log(res["shape"]["params_active_non_embedding"]) - 0.25 * math.log(res["experts"]))
    assert res["batch"]["learning_rate_moe"]["learning_rate"] == pytest.approx(lr, rel=1e-12)
    assert res["batch"]["learning_rate_moe"]["extrapolates"]  # > 2.7B active non-embedding
    small = plan("--law", "ludziejewski2025-moe", "--flops", "1e20", "--experts", "8")
    assert small["experts"] == 8 and not small["batch"]["learning_rate_moe"]["extrapolates"]


def test_an_moe_optimum_plan_fits_its_booking():
    """A booking is spent at the shape's real cost (chinchilla FLOPs per token, x 4/3 with full
    recomputation): the run takes the booked days exactly, on the layout asked for."""
    res = plan("--law", "ludziejewski2025-moe", "--gpu", "h100-sxm", "--count", "512", "--days", "20",
               "--max-total-params", "200B", "--kv-tokens", "16384", "--tp", "4", "--ep", "8", "--zero", "3",
               "--recompute", "full")
    cluster, _ = cluster_from("h100-sxm", count=512, days=20)
    assert res["tokens"] * res["flops_per_token"]["chinchilla"] * 4 / 3 == pytest.approx(cluster.flops(), rel=1e-6)
    assert res["fits_booking"] and res["wall_days"] == pytest.approx(20, rel=1e-6)
    sh = res["shape"]
    assert sh["n_heads"] % 4 == 0 and res["layout"]["ep"] == 8 and res["layout"]["dp"] == 128
    assert res["params_total"] + 2 * 16384 * sh["n_layer"] * sh["d_model"] <= 2e11
