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

from .. import reference as ref

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
            hi = min(hi, math.log(ref.joint_moe_active_cap(cap, e)))
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


# ----------------------------------------------------------------------------------------------
# The papers' own compute-optimal tables. Krajewski et al. write a model as "E x N_act" (their
# section 5: expansion rate times active non-embedding parameters 12·d²·n_blocks), so
# "64 x 1B" is 1B active, 43B total non-embedding.

#: Krajewski et al. 2024, Table 2 (E = 64): (N_act, D, G, FLOPs, loss)
KRAJEWSKI_TABLE_2 = [(100e6, 4.37e9, 8, 2.95e18, 3.133), (1e9, 28.94e9, 16, 1.93e20, 2.491),
                     (3e9, 72.90e9, 16, 1.41e21, 2.245), (7e9, 137.60e9, 32, 6.46e21, 2.076),
                     (70e9, 941.07e9, 32, 4.16e23, 1.694), (300e9, 2.96e12, 64, 5.69e24, 1.503),
                     (1e12, 7.94e12, 64, 4.97e25, 1.367)]
#: their bootstrap 10th-90th percentiles of the optimum's D and G at each N_act: Table 6 (E = 64)
#: and Table 9 (E = 16, the Appendix D fit)
KRAJEWSKI_BOOTSTRAP = {
    "krajewski2024-moe": [(100e6, 2.97e9, 5.98e9, 8, 8), (1e9, 21.17e9, 40.73e9, 16, 16),
                          (3e9, 50.20e9, 105.88e9, 16, 32), (7e9, 101.06e9, 205.40e9, 32, 32),
                          (70e9, 638.49e9, 1.59e12, 32, 64), (300e9, 1.99e12, 5.62e12, 64, 64),
                          (1e12, 5.29e12, 16.87e12, 64, 64)],
    "krajewski2024-moe-e16": [(100e6, 10.29e9, 17.73e9, 8, 16), (1e9, 53.74e9, 103.54e9, 16, 32),
                              (3e9, 106.22e9, 261.04e9, 16, 32), (7e9, 177.65e9, 511.43e9, 16, 32),
                              (70e9, 721.60e9, 3.22e12, 32, 64), (300e9, 1.73e12, 10.69e12, 32, 64),
                              (1e12, 3.60e12, 28.22e12, 32, 128)]}


def test_krajewski_table_2_is_reproduced():
    """At each budget of Table 2 the optimum picks the table's granularity exactly; N_act and D
    agree within 3 % and the loss within 1 %, ours below (Table 1 prints alpha to 3 decimals:
    0.0005 of alpha moves the N term by ~1 % at 4e9 total parameters, ~0.015 nats — the size of
    the gap, 0.011-0.024); eq. 10 gives the table's FLOPs from its own (N_act, D, G) within 0.5 %."""
    for n_act, d, g, flops, loss in KRAJEWSKI_TABLE_2:
        res = optimize_moe(FINE, flops=flops)
        assert res["converged"] and res["granularity"] == g, (flops, res["granularity"])
        assert res["params_active"] == pytest.approx(n_act, rel=0.03)
        assert res["tokens"] == pytest.approx(d, rel=0.03)
        assert 0.0 < loss - res["loss"] < 0.01 * loss
        total = n_act * (8 * 64 + 4) / 12
        assert fine_flops_per_token_np(total, g) * d == pytest.approx(flops, rel=0.005)


@pytest.mark.parametrize("name", sorted(KRAJEWSKI_BOOTSTRAP))
def test_krajewski_optimum_lies_in_the_papers_bootstrap_intervals(name):
    """At each model size of Table 6 (E = 64) and Table 9 (E = 16), the compute-optimal D lies
    inside the authors' bootstrap 10th-90th percentile interval and G within its bounds: the
    budgets whose optimum has that N_act are found on one vmapped grid of 2001 budgets x 9
    granularities (the optimum's N_act grows with the budget: checked)."""
    from budgetopt.model.laws import to_array_law
    from budgetopt.plan.moe_optimum import GRANULARITIES

    law = to_array_law(get_preset(name).params)
    log_c = np.linspace(math.log(1e17), math.log(1e27), 2001)
    g = np.asarray(GRANULARITIES)
    a = moe.allocate_fine_grained(law, jnp.asarray(log_c[:, None]), jnp.inf, -jnp.inf, jnp.asarray(g[None, :]))
    assert bool(np.all(np.asarray(a.converged)))
    best = np.asarray(a.loss).argmin(axis=1)
    rows = np.arange(len(log_c))
    log_act = np.log(np.asarray(moe.fine_grained_active_params(law, np.exp(np.asarray(a.log_n)))))[rows, best]
    log_d = np.asarray(a.log_d)[rows, best]
    assert np.all(np.diff(log_act) > 0)
    for n_act, d_lo, d_hi, g_lo, g_hi in KRAJEWSKI_BOOTSTRAP[name]:
        i = int(np.searchsorted(log_act, math.log(n_act)))
        assert d_lo < math.exp(np.interp(math.log(n_act), log_act, log_d)) < d_hi, n_act
        assert g_lo <= g[best[i]] <= g_hi and g_lo <= g[best[i - 1]] <= g_hi, n_act


#: Ludziejewski et al. 2025, Table 1: compute-optimal (E, N_act, D) at three budgets
LUDZIEJEWSKI_TABLE_1 = {
    1e20: [(1, 1.7e9, 9.7e9), (2, 1.5e9, 11.4e9), (4, 1.2e9, 13.9e9), (8, 990e6, 17e9), (16, 810e6, 20.7e9),
           (32, 669e6, 24.9e9)],
    1e21: [(1, 5.7e9, 29.3e9), (2, 5e9, 33e9), (4, 4.4e9, 38e9), (8, 3.8e9, 44.3e9), (16, 3.3e9, 51.2e9),
           (32, 2.85e9, 58.4e9)],
    1e22: [(1, 18.8e9, 88.6e9), (2, 17.4e9, 96e9), (4, 15.8e9, 105.4e9), (8, 14.4e9, 115.8e9), (16, 13.2e9, 126.5e9),
           (32, 12.2e9, 136.9e9)]}


@pytest.mark.parametrize("flops", sorted(LUDZIEJEWSKI_TABLE_1))
def test_ludziejewski_table_1_is_reproduced(flops):
    """Every cell of Table 1 from Table 3's constants: N_act within 2.5 % and D within 1.5 %
    (the table prints 2-3 significant digits, "1.7B" alone spans ±3 %; measured: ≤ 2.1 % and
    ≤ 1.2 %)."""
    res = optimize_moe(JOINT, flops=flops, max_experts=32)
    got = {c["experts"]: c for c in res["candidates"]}
    for e, n_act, d in LUDZIEJEWSKI_TABLE_1[flops]:
        assert got[e]["converged"]
        assert got[e]["params_active"] == pytest.approx(n_act, rel=0.025), e
        assert got[e]["tokens"] == pytest.approx(d, rel=0.015), e


def test_ludziejewski_table_4_is_the_joint_law_at_each_expert_count():
    """Table 4's per-E Chinchilla coefficients (m, µ, n, ν) from Table 3's joint constants:
    scales within 0.3 %, exponents within 0.1 % (both tables are rounded to 4-5 digits)."""
    table_4 = {1: (30.3640, -0.1817, 53.9838, -0.1965), 2: (27.7982, -0.1780, 66.8401, -0.2065),
               4: (24.8462, -0.1731, 87.7022, -0.2192), 8: (21.8330, -0.1676, 119.9126, -0.2338),
               16: (19.0159, -0.1617, 167.5073, -0.2494), 32: (16.5424, -0.1557, 234.6726, -0.2652)}
    for e, (m, mu, n, nu) in table_4.items():
        p = moe.joint_at(JOINT.params, float(e))
        assert math.exp(float(p.log_A)) == pytest.approx(m, rel=0.003)
        assert math.exp(float(p.log_B)) == pytest.approx(n, rel=0.003)
        assert -float(p.alpha) == pytest.approx(mu, rel=0.001) and -float(p.beta) == pytest.approx(nu, rel=0.001)


def test_ludziejewski_table_2_memory_optimal_expert_counts():
    """Table 2: the best E (of 1 .. 32; "≥ 32" is 32) under 24, 80 and 640 GB, with the paper's
    accounting (bf16 weights and KV cache, 16k serving tokens, eq. 9/10 on its shape). 9 of the
    12 cells match exactly. The other three differ by one power of two, in both directions, and
    the paper's E is then within 0.4 % of our loss: the table rests on memory details the paper
    does not state (DESIGN §14), so those cells are named here rather than hidden."""
    paper = {1e21: (16, 32, 32), 1e22: (4, 16, 32), 1e23: (1, 8, 32), 1e24: (1, 1, 16)}
    differs = {(1e21, 24): 32, (1e23, 80): 4, (1e24, 640): 8}
    for flops, row in paper.items():
        for gb, want in zip((24, 80, 640), row):
            cap = gb * 1e9 / 2  # bf16: two bytes an element
            res = optimize_moe(JOINT, flops=flops, max_total_params=cap, kv_tokens=16384, max_experts=32)
            assert res["converged"] and res["experts"] == differs.get((flops, gb), want), (flops, gb)
            assert res["params_total"] + res["kv_cache"] <= cap * (1 + 1e-9)
            theirs = next(c for c in res["candidates"] if c["experts"] == want)
            assert theirs["loss"] <= res["loss"] * 1.004


def test_the_joint_counts_are_eq_9_10_on_the_papers_shape():
    """Total parameters and KV cache of every candidate from its N_act (d from eq. 10, then eq.
    9 and 2·T·n·d), against a NumPy Newton solve of the same cubic; the memory cap binds
    exactly where it binds; the cap on N_act equals the reference over random (M, E, T)."""
    res = optimize_moe(JOINT, flops=1e24, max_total_params=3e11, kv_tokens=32768, max_experts=256)
    for c in res["candidates"]:
        n = c["params_active"]
        d = np.roots([13 / 64, 0, 2 * 50257, -n]).real.max()  # the one real root
        assert c["params_total"] == pytest.approx(2 * d * 50257 + (4 + 9 * c["experts"]) * d ** 3 / 64, rel=1e-9)
        assert c["kv_cache"] == pytest.approx(2 * 32768 * d * d / 64, rel=1e-9)
        assert c["params_total"] + c["kv_cache"] <= 3e11 * (1 + 1e-9)
    rng = np.random.default_rng(7)
    m, e, t = np.exp(rng.uniform(np.log(1e6), np.log(1e13), 64)), 2.0 ** rng.integers(0, 9, 64), rng.uniform(0, 1e6, 64)
    got = np.exp(np.asarray(moe.joint_log_active_cap(jnp.log(m), e, moe.joint_shape(), t)))
    np.testing.assert_allclose(got, ref.joint_moe_active_cap(m, e, t), rtol=1e-9)


def test_a_serving_kv_cache_shares_the_fine_grained_memory_cap():
    """krajewski2024-moe with --kv-tokens: N (total non-embedding) plus the KV cache 2·T·n·d of
    its own shape (N = (8E + 4)·d³/64, d = 64·n) fills a binding cap exactly; the dense
    comparison holds its own KV cache (N = 12·d³/64); more serving tokens leave a smaller model."""
    cap, t = 2e10, 1e6
    res = optimize_moe(FINE, flops=1e24, max_total_params=cap, kv_tokens=t)
    for c in res["candidates"]:
        d = (64 * c["params_total"] / (8 * 64 + 4)) ** (1 / 3)
        assert c["kv_cache"] == pytest.approx(2 * t * (d / 64) * d, rel=1e-9)
        assert c["params_total"] + c["kv_cache"] == pytest.approx(cap, rel=1e-9)  # binding at 1e24 FLOPs
    d_dense = (64 * res["dense"]["params"] / 12) ** (1 / 3)
    assert res["dense"]["params"] + 2 * t * d_dense ** 2 / 64 == pytest.approx(cap, rel=1e-9)
    assert optimize_moe(FINE, flops=1e24, max_total_params=cap, kv_tokens=4 * t)["params_total"] < res["params_total"]
