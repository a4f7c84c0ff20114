"""A sweep that decides the expert count ([moe]): without uncertainty it recommends what
`optimize --law ludziejewski2025-moe` answers; under uncertainty its choice, expected loss,
regret and untrainable share are those of float64 NumPy scoring written here from the joint
law (Ludziejewski et al. 2025, eq. 1/6) on the sweep's own draws; results do not depend on the
chunking; the built-in example runs."""

from __future__ import annotations

import json
import math

import jax.numpy as jnp
import numpy as np
import pytest

from budgetopt import sweep as sw
from budgetopt.model.laws import get_preset
from budgetopt.plan.moe_optimum import optimize_moe
from budgetopt.sweep import scenario as scn
from budgetopt.sweep.sampling import complete_draw, make_sampler, sample_indices

from .. import reference as ref
from ..procs import strip_run

JOINT = get_preset("ludziejewski2025-moe")
POWERS = [1, 2, 4, 8, 16, 32, 64]


def _sweep(budget, moe, constraints=None, samples=4000, **recommend):
    d = {"samples": samples, "seed": 3, "law": {"preset": "ludziejewski2025-moe"}, "budget": budget, "moe": moe,
         "recommend": {"candidates": 56, "subsample": 1, **recommend}}
    if constraints:
        d["constraints"] = constraints
    sc = scn.from_dict(d, "moe-test")
    return sc, sw.run(sc, chunk_size=4096, x64=True)


def joint_at_numpy(e: float) -> tuple[float, float, float, float, float]:
    """(E, A, B, alpha, beta) of the joint law at E experts, written from eq. 1/6: A = a Ê^δ,
    alpha = -(α + γ ln Ê), B = b Ê^ω, beta = -(β + ζ ln Ê), E = c."""
    p = JOINT.params
    e_hat = 1.0 / (1.0 / (e - 1.0 + 1.0 / (1.0 / p.e_start - 1.0 / p.e_max)) + 1.0 / p.e_max)
    le = math.log(e_hat)
    return (p.c, math.exp(p.log_a) * e_hat ** p.delta, math.exp(p.log_b) * e_hat ** p.omega,
            -(p.alpha + p.gamma * le), -(p.beta + p.zeta * le))


@pytest.mark.parametrize("cap,inference,kv", [(2e11, None, None), (None, None, None), (4e11, 2e12, None),
                                               (1e11, None, 1e6)])
def test_without_uncertainty_the_moe_recommendation_is_optimizes(cap, inference, kv):
    """A fixed budget (and cap, serving compute, a serving KV cache in the cap): the robust
    (E, N_act) is `optimize`'s, to 1e-6."""
    moe = {"experts": POWERS, **({"max_total_params": cap} if cap else {}), **({"kv_tokens": kv} if kv else {})}
    _, res = _sweep({"flops": 1e23}, moe, {"inference_tokens": inference} if inference else None, samples=800)
    want = optimize_moe(JOINT, flops=1e23, max_total_params=cap, kv_tokens=kv, inference_tokens=inference,
                        max_experts=64)
    rec = res["recommendation"]
    assert rec["experts"] == want["experts"]
    assert rec["params"] == pytest.approx(want["params_active"], rel=1e-6)
    assert rec["expected_regret"] == pytest.approx(0.0, abs=1e-7)
    assert res["quantiles"]["experts"]["p50"] == pytest.approx(want["experts"], rel=1e-6)


def test_the_moe_decision_is_the_numpy_argmin_on_the_same_draws():
    """Uncertain hours, MFU and total-parameter cap: every candidate (E, N_act) scored in float64
    NumPy — D = C/6N where the model of N_act (eq. 9/10 on the paper's shape) fits the sample's
    cap, else the loss of N on one token (untrainable) — against each sample's optimum, the best
    expert count's closed form clipped to its cap. The sweep's choice is the argmin; its expected loss, regret and
    untrainable share agree."""
    budget = {"gpu": "h100-sxm", "count": 2048, "days": {"dist": "uniform", "low": 30, "high": 45},
              "mfu": {"dist": "uniform", "low": 0.25, "high": 0.4}}
    moe = {"experts": [1, 4, 16, 64], "max_total_params": {"dist": "loguniform", "low": 3e11, "high": 6e11}}
    sc, res = _sweep(budget, moe)
    _, b = complete_draw(sc, make_sampler(sc, jnp.float64)(*sample_indices(0, res["samples"])))
    c6 = np.exp(np.asarray(b.log_c, np.float64)) / 6
    total_cap = np.exp(np.asarray(b.log_n_max, np.float64))
    experts = sc.experts
    caps = [ref.joint_moe_active_cap(total_cap, e) for e in experts]
    opts = []
    for e, cap in zip(experts, caps):
        E, A, B, al, be = joint_at_numpy(e)
        n = np.minimum((al * A / (be * B)) ** (1 / (al + be)) * c6 ** (be / (al + be)), cap)
        opts.append(ref.chinchilla(E, A, B, al, be, n, c6 / n))
    opt = np.min(opts, axis=0)
    cands = np.asarray(res["pilot"]["candidates"])
    means, regrets, lost = [], [], []
    for x, j in cands:
        E, A, B, al, be = joint_at_numpy(experts[int(j)])
        n = math.exp(x)
        ok = n <= caps[int(j)]
        loss = ref.chinchilla(E, A, B, al, be, n, np.where(ok, c6 / n, 1.0))
        means.append(loss.mean())
        regrets.append((loss - opt).mean())
        lost.append(1 - ok.mean())
    best = int(np.argmin(means))
    rec = res["recommendation"]
    assert rec["experts"] == experts[int(cands[best][1])]
    assert rec["params"] == pytest.approx(math.exp(cands[best][0]), rel=1e-9)
    assert rec["expected_loss"] == pytest.approx(means[best], rel=1e-9)
    assert rec["expected_regret"] == pytest.approx(regrets[best], rel=1e-5, abs=1e-9)
    assert rec["expected_optimal_loss"] == pytest.approx(opt.mean(), rel=1e-9)
    assert rec["p_untrainable"] == pytest.approx(lost[best], abs=1e-12)
    by_expert = {(r["experts"], r["params"]): r for r in res["regret_curve"]}
    assert len(by_expert) == len(cands)
    for (x, j), m in zip(cands, means):
        assert by_expert[(experts[int(j)], math.exp(x))]["expected_loss"] == pytest.approx(m, rel=1e-9)


def test_a_moe_sweep_does_not_depend_on_the_chunking():
    d = {"samples": 3000, "seed": 1, "law": {"preset": "ludziejewski2025-moe"},
         "budget": {"flops": {"dist": "loguniform", "low": 1e22, "high": 1e24}},
         "moe": {"experts": [1, 8, 32], "max_total_params": 3e11}, "recommend": {"candidates": 24}}
    sc = scn.from_dict(d, "chunks")
    a, b = sw.run(sc, chunk_size=1024), sw.run(sc, chunk_size=2048)
    assert json.dumps(strip_run(a), sort_keys=True) == json.dumps(strip_run(b), sort_keys=True)
    merged = sw.merge_results([json.loads(json.dumps(sw.run(sc, chunk_size=1024, shard=(i, 2)))) for i in (1, 0)])
    assert json.dumps(strip_run(merged), sort_keys=True) == json.dumps(strip_run(a), sort_keys=True)


def test_the_moe_example_recommends_an_expert_count():
    sc = scn.example("moe")
    res = sw.run(scn.with_overrides(sc, samples=20_000))
    rec = res["recommendation"]
    assert rec["experts"] in sc.experts and rec["p_untrainable"] == 0.0
    assert res["converged_fraction"] == 1.0
    assert set(res["quantiles"]) >= {"params", "tokens", "loss", "experts"}


def test_a_moe_sweeps_plan_is_the_recommendations_plan():
    """[moe] with [plan]: the plan is `plan`'s for the recommended (E, N_act) on the median
    budget's tokens (D = C_p50 / 6 N): the joint family's member nearest N_act under the fixed cap
    with heads over tp, on the scenario's devices; a plan.ep that does not divide the chosen E is
    lowered to their common divisor and said so."""
    from budgetopt.model.hardware import Cluster, get_accelerator
    from budgetopt.model.memory import Layout
    from budgetopt.plan.launch import moe_size_plan

    d = {"samples": 2000, "seed": 2, "law": {"preset": "ludziejewski2025-moe"},
         "budget": {"gpu": "h100-sxm", "count": 1024, "mfu": 0.4, "days": {"dist": "uniform", "low": 20, "high": 30}},
         "moe": {"experts": [1, 4, 16], "max_total_params": 3e11}, "recommend": {"candidates": 24},
         "plan": {"tp": 8, "ep": 16, "zero": 3}}
    sc = scn.from_dict(d, "moe-plan")
    res = sw.run(sc, chunk_size=1024, x64=True)
    rec, plan = res["recommendation"], res["plan"]
    e, n = int(rec["experts"]), rec["params"]
    tokens = res["quantiles"]["flops"]["p50"] / (6 * n)
    cluster = Cluster(get_accelerator("h100-sxm"), "bf16", 0.4, 1024)
    ep = math.gcd(16, e)
    want = moe_size_plan(JOINT, n, e, tokens, cluster=cluster, max_total_params=3e11,
                         layout=Layout(tp=8, zero=3, ep=ep))
    assert plan["experts"] == e and plan["shape"] == want["shape"] and plan["tokens"] == pytest.approx(tokens)
    assert plan["params_total"] <= 3e11 and plan["shape"]["n_heads"] % 8 == 0 and plan["layout"]["ep"] == ep
    assert plan["memory"] == want["memory"] and plan["loss"] == pytest.approx(want["loss"], rel=1e-12)
    assert (ep != 16) == any("plan.ep" in w for w in plan["warnings"])
