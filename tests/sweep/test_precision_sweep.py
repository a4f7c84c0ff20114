"""A sweep that decides the training format ([precision]): without uncertainty it recommends
what `optimize --precision auto --gpu` answers (both penalties); under uncertain speed-ups,
penalties and budget its choice, expected loss, regret and the share of futures each format is
best in equal float64 NumPy scoring written here from the Chinchilla form on the sweep's own
draws; results do not depend on the chunking; the built-in example runs."""

from __future__ import annotations

import json
import math

import jax.numpy as jnp
import numpy as np
import pytest

from budgetopt import sweep as sw
from budgetopt.model.hardware import Cluster, get_accelerator
from budgetopt.model.laws import get_preset
from budgetopt.plan.precision_choice import choose_format
from budgetopt.sweep import scenario as scn
from budgetopt.sweep.sampling import complete_draw, make_sampler, sample_indices

from .. import reference as ref
from ..procs import strip_run

LAW = get_preset("besiroglu2024")


def _sweep(precision, budget=None, samples=4000, chunk=4096, **recommend):
    d = {"samples": samples, "seed": 5, "law": {"preset": "besiroglu2024"},
         "budget": budget or {"gpu": "b200", "count": 512, "days": 20, "mfu": 0.4}, "precision": precision,
         "recommend": {"candidates": 48, "subsample": 1, **recommend}}
    sc = scn.from_dict(d, "precision-test")
    return sc, sw.run(sc, chunk_size=chunk, x64=True)


@pytest.mark.parametrize("penalty,given", [("empirical", {}), ("law", {}), ("empirical", {"fp4": 2.2})])
def test_without_uncertainty_the_precision_recommendation_is_optimizes(penalty, given):
    """A fixed booking, speed-ups and penalties: the robust (format, N) is `optimize --precision
    auto`'s (choose_format), to 1e-6, with zero regret and the format best in every future."""
    prec = {"penalty": penalty, **({"speedup": given} if given else {})}
    _, res = _sweep(prec, samples=800)
    want = choose_format(LAW, Cluster(get_accelerator("b200"), "bf16", 0.4, 512, 20 * 24.0), penalty=penalty,
                         speedups=given)
    rec = res["recommendation"]
    assert rec["precision"] == want["precision"]
    assert rec["params"] == pytest.approx(want["params"], rel=1e-6)
    # summed in fixed point (kernel.LOSS_BITS = 24): identical samples share one rounding, 2^-24
    assert rec["expected_loss"] == pytest.approx(want["loss"], abs=2.0**-24)
    assert rec["expected_regret"] == pytest.approx(0.0, abs=1e-9)
    assert res["quantiles"]["flops"]["p50"] == pytest.approx(want["flops"], rel=1e-9)
    assert res["quantiles"]["precision_bits"]["p50"] == pytest.approx(want["precision_bits"], rel=1e-9)
    assert res["option_shares"][want["precision"]] == 1.0


def test_the_precision_decision_is_the_numpy_argmin_on_the_same_draws():
    """Uncertain days, MFU, FP8/FP4 speed-ups and penalties: every candidate (N, format) scored
    in float64 NumPy — D = C s_f / 6N, loss (1 + p_f) L(N, D / t_f) — against each sample's optimum
    (each format's closed form, the least penalised loss). The sweep's choice is the argmin; its
    expected loss, regret, and each format's share of futures agree. MXFP4 draws NVFP4's speed-up
    and needs 1.36x its tokens."""
    budget = {"gpu": "b200", "count": 2048, "days": {"dist": "uniform", "low": 30, "high": 45},
              "mfu": {"dist": "uniform", "low": 0.3, "high": 0.45}}
    prec = {"speedup": {"fp8": {"dist": "uniform", "low": 1.1, "high": 1.45},
                        "fp4": {"dist": "uniform", "low": 1.4, "high": 2.6}},
            "loss_penalty": {"fp8": {"dist": "uniform", "low": 0.0, "high": 0.004},
                             "fp4": {"dist": "loguniform", "low": 0.003, "high": 0.02}}}
    sc, res = _sweep(prec, budget)
    assert sc.precision.formats == ("bf16", "fp8", "fp4", "mxfp4")  # every format the B200 has
    d = make_sampler(sc, jnp.float64)(*sample_indices(0, res["samples"]))
    _, b = complete_draw(sc, d)
    c6 = np.exp(np.asarray(b.log_c, np.float64)) / 6
    speed = np.exp(np.asarray(d.option[0], np.float64))
    scale = np.asarray(d.option[1], np.float64)
    assert speed.shape == scale.shape == (4, res["samples"])
    assert np.ptp(speed[2]) > 1.0 and np.all(scale[0] == 1.0) and 1.003 <= scale[2].min() < scale[2].max() <= 1.02
    assert np.array_equal(speed[3], speed[2]) and np.all(scale[3] == 1.0175375)  # MXFP4: NVFP4's draws, its bound
    p = LAW.params
    E, A, B0, al, be = math.exp(p.log_E), math.exp(p.log_A), math.exp(p.log_B), p.alpha, p.beta

    def law_b(k):  # MXFP4 needs 1.36x the tokens: the law sees D / 1.36
        return B0 * (1.36 ** be if k == 3 else 1.0)

    def optimum(k):
        c, B = c6 * speed[k], law_b(k)
        n = (al * A / (be * B)) ** (1 / (al + be)) * c ** (be / (al + be))
        return scale[k] * ref.chinchilla(E, A, B, al, be, n, c / n)

    opts = [optimum(k) for k in range(4)]
    opt = np.min(opts, axis=0)
    best_fmt = np.argmin(opts, axis=0)
    cands = np.asarray(res["pilot"]["candidates"])
    means, regrets = [], []
    for x, j in cands:
        n = math.exp(x)
        loss = scale[int(j)] * ref.chinchilla(E, A, law_b(int(j)), al, be, n, c6 * speed[int(j)] / n)
        means.append(loss.mean())
        regrets.append((loss - opt).mean())
    best = int(np.argmin(means))
    rec = res["recommendation"]
    assert rec["precision"] == sc.precision.formats[int(cands[best][1])]
    assert rec["params"] == pytest.approx(math.exp(cands[best][0]), rel=1e-9)
    assert rec["expected_loss"] == pytest.approx(means[best], rel=1e-9)
    assert rec["expected_regret"] == pytest.approx(regrets[best], rel=1e-5, abs=1e-9)
    assert rec["expected_optimal_loss"] == pytest.approx(opt.mean(), rel=1e-9)
    shares = {f: float(np.mean(best_fmt == k)) for k, f in enumerate(sc.precision.formats)}
    assert res["option_shares"] == pytest.approx(shares, abs=1e-12)
    assert shares["mxfp4"] == 0.0  # NVFP4's speed and bound, fewer effective tokens: never the best
    assert 0.0 < min(shares[f] for f in ("bf16", "fp8", "fp4")) and max(shares.values()) < 1.0  # a real decision
    by_row = {(r["precision"], r["params"]): r for r in res["regret_curve"]}
    for (x, j), m in zip(cands, means):
        assert by_row[(sc.precision.formats[int(j)], math.exp(x))]["expected_loss"] == pytest.approx(m, rel=1e-9)


def test_the_law_penalty_scales_a_by_the_precision_laws_factor():
    """penalty = "law": each format's optimum is the closed form of the law with A times
    (F(bits)/F(16))^-alpha (F from kumar2024-precision's offset form, by hand from its
    constants), and no loss scale."""
    from budgetopt.sweep.choices import option_problems

    sc, _ = _sweep({"penalty": "law"}, samples=8, candidates=0)
    kp = get_preset("kumar2024-precision").params

    def log_f(bits):  # the offset form: prod over w, a, kv of 1 - e^(n - P/gamma), clipped at 0
        return sum(math.log(max(1 - math.exp(n - bits / gm), 0.0)) for n, gm in
                   ((kp.n_w, kp.gamma_w), (kp.n_a, kp.gamma_a), (kp.n_kv, kp.gamma_kv)))

    d = make_sampler(sc, jnp.float64)(*sample_indices(0, 8))
    law, b = complete_draw(sc, d)
    probs = option_problems(sc, law, b, d.option)
    for k, bits in enumerate(sc.precision.bits):
        want = LAW.params.log_A - LAW.params.alpha * (log_f(bits) - log_f(16.0))
        assert float(np.asarray(probs.law.log_A).reshape(-1)[k]) == pytest.approx(want, rel=1e-12)
    assert probs.loss_scale == 1.0


def test_a_precision_sweep_does_not_depend_on_the_chunking():
    """Also the paths the other tests leave: an uncertain law (the law penalty then shifts A per
    sample and format) and serving (each format's optimum by the iterative solve)."""
    d = {"samples": 3000, "seed": 2, "law": {"preset": "besiroglu2024", "uncertainty": "covariance"},
         "budget": {"gpu": "h100-sxm", "count": 1024, "days": {"dist": "uniform", "low": 20, "high": 40},
                    "mfu": 0.4},
         "constraints": {"inference_tokens": 1e12},
         "precision": {"penalty": "law", "speedup": {"fp8": {"dist": "uniform", "low": 1.0, "high": 1.5}}},
         "recommend": {"candidates": 24}}
    sc = scn.from_dict(d, "chunks")
    a, b = sw.run(sc, chunk_size=1024), sw.run(sc, chunk_size=2048)
    assert json.dumps(strip_run(a), sort_keys=True) == json.dumps(strip_run(b), sort_keys=True)
    merged = sw.merge_results([json.loads(json.dumps(sw.run(sc, chunk_size=1024, shard=(i, 2)))) for i in (1, 0)])
    assert json.dumps(strip_run(merged), sort_keys=True) == json.dumps(strip_run(a), sort_keys=True)
    assert sum(a["option_shares"].values()) == pytest.approx(1.0, abs=1e-12)


def test_the_precision_example_recommends_a_format():
    sc = scn.example("precision")
    res = sw.run(scn.with_overrides(sc, samples=20_000))
    rec = res["recommendation"]
    assert rec["precision"] in sc.precision.formats and rec["p_untrainable"] == 0.0
    assert res["converged_fraction"] == 1.0
    assert set(res["quantiles"]) >= {"params", "tokens", "loss", "precision_bits"}
    assert set(res["option_shares"]) == {"bf16", "fp8", "fp4"}
