"""The mixture-of-experts laws (model/moe.py) and the joint optimum over (N, D, E) or (N, D, G)
(plan/moe_optimum.py), each checked against the papers' formulas written out here in NumPy
float64 and a brute-force grid over the model size; the memory-constrained trend; the CLI's
answer equal to the library's, with its JSON keys."""

from __future__ import annotations

import json
import math

import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from budgetopt.cli.commands import app
from budgetopt.core.errors import ParameterError
from budgetopt.model import moe
from budgetopt.model.laws import get_preset, preset_rows, resolve_law
from budgetopt.plan.moe_optimum import fine_grained_dense, optimize_moe

runner = CliRunner()
JOINT = get_preset("ludziejewski2025-moe")
FINE = get_preset("krajewski2024-moe")


def joint_np(n_act, d, e):
    """Ludziejewski et al. 2025 eq. 1 and 6 with Table 3's constants, as printed."""
    a, al, de, ga, b, be, om, ze, es, em, c = (35.91, -0.1889, -0.2285, 0.0098, 35.98, -0.1775, 0.5529, -0.0259,
                                               2.0732, 290.4521, 1.3637)
    e_hat = 1.0 / (1.0 / (e - 1.0 + 1.0 / (1.0 / es - 1.0 / em)) + 1.0 / em)
    le = np.log(e_hat)
    return a * e_hat ** de * n_act ** (al + ga * le) + b * e_hat ** om * d ** (be + ze * le) + c


def fine_np(n, d, g):
    """Krajewski et al. 2024 eq. 9 with Table 1's constants (E = 64)."""
    return 0.47 + (2.1 / g ** 0.58 + 18.1) * n ** -0.115 + 30.8 * d ** -0.147


def fine_flops_per_token_np(n, g, e=64.0):
    """Eq. 10-11 from the shape itself: N = (8E + 4) d^2 n_blocks with d = 64 n_blocks, so
    n_blocks = (N / (64^2 (8E + 4)))^(1/3); FLOPs per token (6 * 12 d^2 + 14 E G d) n_blocks."""
    blocks = (n / (64.0 ** 2 * (8 * e + 4))) ** (1 / 3)
    d = 64.0 * blocks
    return (6 * 12 * d ** 2 + 14 * e * g * d) * blocks


def test_the_presets_are_the_papers_tables():
    j, f = JOINT.params, FINE.params
    assert (math.exp(j.log_a), j.alpha, j.delta, j.gamma, math.exp(j.log_b), j.beta, j.omega, j.zeta, j.e_start,
            j.e_max, j.c) == pytest.approx((35.91, -0.1889, -0.2285, 0.0098, 35.98, -0.1775, 0.5529, -0.0259, 2.0732,
                                            290.4521, 1.3637), rel=1e-12)
    assert (f.a, f.alpha, f.b, f.beta, f.g, f.gamma, f.c, f.expansion, f.c_f, f.c_r) == (
        18.1, 0.115, 30.8, 0.147, 2.1, 0.58, 0.47, 64.0, 6.0, 14.0)
    dense = fine_grained_dense(FINE).params  # the paper's dense fit of the same form
    assert (math.exp(dense.log_A), dense.alpha, math.exp(dense.log_B), dense.beta, math.exp(dense.log_E)) == \
        pytest.approx((16.3, 0.126, 26.7, 0.127, 0.47), rel=1e-12)
    rows = {r["name"]: r for r in preset_rows()}
    assert rows["ludziejewski2025-moe"]["kind"] == "moe-joint" and rows["krajewski2024-moe"]["a"] is None
    assert JOINT.validity.params[1] == 1e10 and FINE.validity.params[1] == 1e10  # fitted below ~10B active


def test_effective_experts_transform():
    le = lambda e: float(moe.log_effective_experts(jnp.asarray(e), JOINT.params.e_start, JOINT.params.e_max))  # noqa: E731
    assert math.exp(le(1.0)) == pytest.approx(2.0732, rel=1e-12)  # dense: Ê = E_start
    assert math.exp(le(1e9)) == pytest.approx(290.4521, rel=1e-6)  # saturates at E_max
    assert le(8.0) < le(64.0) < math.log(290.4521)


@pytest.mark.parametrize("e", [1.0, 2.0, 8.0, 64.0, 256.0])
def test_the_joint_law_at_an_expert_count_is_a_chinchilla_law(e):
    from budgetopt.model.laws import loss

    rng = np.random.default_rng(int(e))
    n, d = np.exp(rng.uniform(np.log(1e7), np.log(1e12), 50)), np.exp(rng.uniform(np.log(1e9), np.log(1e14), 50))
    ref = joint_np(n, d, e)
    printed = np.asarray(moe.joint_loss(JOINT.params, jnp.log(n), jnp.log(d), e))
    reduced = np.asarray(loss(moe.joint_at(JOINT.params, jnp.asarray(e)), jnp.log(n), jnp.log(d)))
    np.testing.assert_allclose(printed, ref, rtol=1e-12)
    np.testing.assert_allclose(reduced, ref, rtol=1e-12)


def test_fine_grained_flops_follow_the_shape():
    n = np.array([1e8, 6.45e9, 3e11, 2e13])
    for g in (1.0, 8.0, 256.0):
        got = np.exp(np.asarray(moe.fine_grained_log_flops_per_token(FINE.params, jnp.log(n), g)))
        np.testing.assert_allclose(got, fine_flops_per_token_np(n, g), rtol=1e-12)
    active = np.asarray(moe.fine_grained_active_params(FINE.params, n))
    np.testing.assert_allclose(6 * active, fine_flops_per_token_np(n, 0.0), rtol=1e-12)  # no router: 6 N_act
    np.testing.assert_allclose(np.asarray(moe.fine_grained_loss(FINE.params, jnp.log(n), jnp.log(n), 4.0)),
                               fine_np(n, n, 4.0), rtol=1e-12)


def _grid_min(loss_of_log_n, lo, hi, points=200_001):
    """The minimum over a uniform grid in log N, then over a grid 1000x finer around it (a
    minimum on a steep bound, e.g. where serving leaves one training token, needs it)."""
    x = np.linspace(lo, hi, points)
    i = int(np.nanargmin(loss_of_log_n(x)))
    step = x[1] - x[0]
    fine = np.linspace(max(lo, x[i] - step), min(hi, x[i] + step), 2001)
    y = loss_of_log_n(fine)
    j = int(np.nanargmin(y))
    return fine[j], y[j], fine[1] - fine[0]


@pytest.mark.parametrize("flops", [1e19, 1e22, 1e25])
@pytest.mark.parametrize("cap", [None, 3e10])
def test_joint_optimum_equals_a_brute_force_grid(flops, cap):
    res = optimize_moe(JOINT, flops=flops, max_total_params=cap, max_experts=256)
    assert res["converged"] and all(c["converged"] for c in res["candidates"] if c["feasible"])
    best = None
    for c in res["candidates"]:
        e = c["experts"]
        hi = math.log(flops / 6)
        if cap is not None:
            hi = min(hi, math.log(cap * 13 / (4 + 9 * e)))
        x, y, step = _grid_min(lambda x, e=e: joint_np(np.exp(x), flops / 6 / np.exp(x), e), 0.0, hi)
        assert c["loss"] == pytest.approx(y, abs=1e-9)
        assert math.log(c["params_active"]) == pytest.approx(x, abs=2 * step + 1e-6)
        assert c["tokens"] * c["params_active"] * 6 == pytest.approx(flops, rel=1e-9)
        if cap is not None:
            assert c["params_total"] <= cap * (1 + 1e-9)
        best = c if best is None or y < best["loss"] else best
    assert res["experts"] == best["experts"] and res["loss"] == best["loss"]
    dense = res["candidates"][0]  # E = 1 of the same law is the dense answer
    assert res["dense"] == {"params": dense["params_active"], "tokens": dense["tokens"], "loss": dense["loss"]}
    assert res["loss_gain"] == pytest.approx(dense["loss"] - res["loss"], abs=1e-15)


@pytest.mark.parametrize("flops", [1e19, 1e22, 1e25])
@pytest.mark.parametrize("inference", [None, 1e13])
def test_fine_grained_optimum_equals_a_brute_force_grid(flops, inference):
    res = optimize_moe(FINE, flops=flops, inference_tokens=inference)
    assert res["converged"]
    for c in res["candidates"]:
        g = c["granularity"]

        def along(x, g=g):
            k = fine_flops_per_token_np(np.exp(x), g)
            d = flops / k - (inference or 0.0) / 3
            return np.where(d >= 1, fine_np(np.exp(x), np.maximum(d, 1.0), g), np.nan)

        x, y, step = _grid_min(along, 0.0, math.log(flops / 6))
        assert c["loss"] == pytest.approx(y, abs=1e-9), g
        assert math.log(c["params_total"]) == pytest.approx(x, abs=2 * step + 1e-6)
        spent = c["flops_per_token"] * (c["tokens"] + (inference or 0.0) / 3)
        assert spent == pytest.approx(flops, rel=1e-9)  # the whole budget, training plus serving
    assert res["granularity"] == min(res["candidates"], key=lambda c: c["loss"])["granularity"]


def test_more_memory_buys_more_experts():
    """Ludziejewski et al.'s memory-constrained trend (the trend, not their table's cells:
    DESIGN §14): at a fixed budget a larger total-parameter cap never chooses fewer experts,
    and from 50B to 1T it chooses strictly more."""
    caps = [2e10, 5e10, 1e11, 2e11, 5e11, 1e12, 5e12]
    chosen = [optimize_moe(JOINT, flops=1e23, max_total_params=m, max_experts=256)["experts"] for m in caps]
    assert chosen == sorted(chosen) and chosen[1] < chosen[5], chosen
    losses = [optimize_moe(JOINT, flops=1e23, max_total_params=m, max_experts=256)["loss"] for m in caps]
    assert all(a >= b - 1e-12 for a, b in zip(losses, losses[1:]))  # more memory never hurts


def test_a_given_expert_count_or_granularity_is_solved_alone():
    one = optimize_moe(JOINT, flops=1e22, experts="8")
    assert [c["experts"] for c in one["candidates"]] == [8.0] and one["experts"] == 8.0
    auto = optimize_moe(JOINT, flops=1e22)
    eight = next(c for c in auto["candidates"] if c["experts"] == 8.0)
    assert one["loss"] == pytest.approx(eight["loss"], rel=1e-12)
    g = optimize_moe(FINE, flops=1e22, granularity=16)
    assert g["granularity"] == 16.0 and len(g["candidates"]) == 1


@pytest.mark.parametrize("kwargs,field", [
    ({"experts": "0"}, "experts"), ({"experts": "2.5"}, "experts"), ({"experts": "many"}, "experts"),
    ({"granularity": 4}, "granularity"), ({"max_experts": 0}, "max_experts"),
    ({"max_total_params": 0.5}, "max_total_params"),
])
def test_bad_moe_inputs_name_the_parameter(kwargs, field):
    with pytest.raises(ParameterError) as e:
        optimize_moe(JOINT, flops=1e22, **kwargs)
    assert e.value.field == field
    with pytest.raises(ParameterError) as e:
        optimize_moe(FINE, flops=1e22, experts=8)
    assert e.value.field == "experts"


def test_the_dense_commands_refuse_an_moe_law():
    with pytest.raises(ParameterError) as e:
        resolve_law("ludziejewski2025-moe")
    assert e.value.field == "law" and "optimize" in e.value.message
    assert resolve_law("ludziejewski2025-moe", moe=True).kind == "moe-joint"


def test_cli_answer_is_the_library_answer():
    r = runner.invoke(app, ["optimize", "--law", "ludziejewski2025-moe", "--flops", "1e23", "--max-total-params",
                            "200B", "-f", "json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    want = optimize_moe(JOINT, flops=1e23, max_total_params=2e11)
    for key in ("params_active", "params_total", "tokens", "experts", "loss", "flops"):
        assert got[key] == pytest.approx(want[key], rel=1e-12), key
    assert set(got["dense"]) == {"params", "tokens", "loss"}
    table = runner.invoke(app, ["optimize", "--law", "krajewski2024-moe", "--flops", "1e22"])
    assert table.exit_code == 0 and "granularity" in table.stdout and "dense" in table.stdout
    bad = runner.invoke(app, ["optimize", "--flops", "1e22", "--experts", "8"])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: --experts:")


@pytest.mark.parametrize("law", [JOINT, FINE])
def test_float32_answers_equal_float64_and_say_they_converged(law):
    """The accelerators' float32 solve against float64 (both converged, the same candidate,
    N within 1e-4 and the loss within 1e-6 relative)."""
    import jax

    from budgetopt.core import runtime

    kw = {"max_total_params": 4e11} if law is JOINT else {"inference_tokens": 1e13}
    with runtime.precision("optimize", False):
        assert jax.numpy.zeros(()).dtype == jnp.float32
        lo = optimize_moe(law, flops=1e24, **kw)
    hi = optimize_moe(law, flops=1e24, **kw)
    key = "experts" if law is JOINT else "granularity"
    assert lo["converged"] and hi["converged"] and lo[key] == hi[key]
    assert lo["params_total"] == pytest.approx(hi["params_total"], rel=1e-4)
    assert lo["loss"] == pytest.approx(hi["loss"], rel=1e-6)
