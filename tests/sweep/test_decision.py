"""The robust decision counts every future and respects every cap: the recommended size is one
the scenario permits, scored on what that size really reaches in each sample (the tokens the
sample affords, at most its cap; a stated penalty where it cannot be trained), never a size
moved into the sample's feasible interval; every decision sample with an optimum is scored; a
scenario without uncertainty recommends what `optimize` answers; nothing to recommend is an
error. Checked against NumPy float64 scoring written here from the rule."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from budgetopt import sweep as sw
from budgetopt.cli.commands import app
from budgetopt.model.laws import get_preset
from budgetopt.plan.optimum import Constraints, optimize
from budgetopt.sweep import scenario as scn
from budgetopt.sweep.sampling import complete_draw, make_sampler, sample_indices

from .. import reference as ref

runner = CliRunner()
HARDWARE = {"gpu": "h100-sxm", "count": 1024, "hours": {"dist": "triangular", "low": 400, "mode": 700, "high": 720},
            "mfu": {"dist": "uniform", "low": 0.35, "high": 0.45}}


def _sweep(budget, constraints=None, samples=16000, uncertainty="covariance", **recommend):
    d = {"samples": samples, "seed": 5, "law": {"preset": "besiroglu2024", "uncertainty": uncertainty},
         "budget": budget, "recommend": {"candidates": 16, "subsample": 1, **recommend}}
    if constraints:
        d["constraints"] = constraints
    sc = scn.from_dict(d, "decision")
    return sc, sw.run(sc, chunk_size=4096, x64=True)


def _numpy_scores(sc, n, cands, d_max=None, n_max=None):
    """Float64 NumPy from the sweep's own draws: each candidate's regret per sample and whether
    the sample can train it, by the rule: D = min(C/6N, D_max); N above the cap -> the loss of N
    on one token. The optimum: the closed form clipped into the feasible interval (convex)."""
    law, b = complete_draw(sc, make_sampler(sc, jnp.float64)(*sample_indices(0, n)))
    a_, b_, e_, al, be = (np.asarray(v, np.float64) for v in law)
    E, A, B = np.exp(e_), np.exp(a_), np.exp(b_)
    c6 = np.exp(np.asarray(b.log_c, np.float64)) / 6
    g = (al * A / (be * B)) ** (1 / (al + be))
    n_opt = g * c6 ** (be / (al + be))
    lo = c6 / d_max if d_max else np.ones_like(c6)
    n_opt = np.clip(n_opt, lo, n_max if n_max else np.inf)
    opt = ref.chinchilla(E, A, B, al, be, n_opt, np.minimum(c6 / n_opt, d_max or np.inf))
    regrets, trainable = [], []
    for x in cands:
        n_k = math.exp(x)
        ok = np.full_like(c6, n_k <= (n_max or np.inf), dtype=bool) & (n_k >= 1)
        d = np.where(ok, np.minimum(c6 / n_k, d_max or np.inf), 1.0)
        regrets.append(ref.chinchilla(E, A, B, al, be, n_k, d) - opt)
        trainable.append(ok)
    return np.array(regrets), np.array(trainable)


def test_a_binding_token_cap_is_scored_at_the_tokens_it_allows():
    """max_tokens = 1e12 binds in every sample (optima 100-190B): each candidate's expected regret
    equals NumPy's with D = min(C/6N, 1e12) — a small model is no longer 'clipped' up to the
    sample's smallest feasible size and scored as ~0 — and the recommendation is NumPy's argmin."""
    sc, res = _sweep(HARDWARE, {"max_tokens": 1e12})
    cands = np.asarray(res["pilot"]["candidates"])
    regrets, _ = _numpy_scores(sc, res["samples"], cands, d_max=1e12)
    curve = {c["params"]: c for c in res["regret_curve"]}
    for k, x in enumerate(cands):
        assert curve[math.exp(x)]["expected_regret"] == pytest.approx(np.maximum(regrets[k], 0).mean(), rel=1e-3,
                                                                      abs=1e-6)
    best = int(np.argmin(np.maximum(regrets, 0).mean(axis=1)))
    assert res["recommendation"]["params"] == pytest.approx(math.exp(cands[best]), rel=1e-9)
    q = res["quantiles"]["params"]
    assert q["p01"] * 0.9 < res["recommendation"]["params"] < q["p99"] * 1.1  # not the 49B for ~100-188B optima


def test_the_recommendation_never_exceeds_a_fixed_parameter_cap():
    for cap in (70e9, 1.0):
        _, res = _sweep(HARDWARE, {"max_params": cap}, samples=8000)
        assert max(res["pilot"]["candidates"]) <= math.log(cap) + 1e-12
        assert res["recommendation"]["params"] <= cap * (1 + 1e-12)
        assert res["recommendation"]["p_untrainable"] == 0.0
    assert res["recommendation"]["params"] == pytest.approx(1.0)  # one parameter, not the 0.5


def test_an_uncertain_cap_counts_the_futures_a_size_cannot_be_trained_in():
    """max_params ~ U(40B, 120B): a candidate above a sample's cap is scored at its one-token
    loss and counted; the untrainable shares equal NumPy's counts exactly."""
    sc, res = _sweep(HARDWARE, {"max_params": {"dist": "uniform", "low": 40e9, "high": 120e9}})
    law, b = complete_draw(sc, make_sampler(sc, jnp.float64)(*sample_indices(0, res["samples"])))
    caps = np.exp(np.asarray(b.log_n_max, np.float64))
    for c in res["regret_curve"]:
        assert c["p_untrainable"] == pytest.approx(np.mean(c["params"] > caps), abs=1e-12)
    assert any(c["p_untrainable"] > 0 for c in res["regret_curve"])
    assert res["recommendation"]["p_untrainable"] < 0.01


def test_every_serving_future_is_scored():
    """The serving example: inference tokens 1e11-1e13 on a 5e23 lifetime budget. Every
    decision sample whose optimum converged is scored (the issue's run scored 14,132 of 25,000),
    and the largest candidates, which some futures cannot train, carry their untrainable share."""
    sc = scn.with_overrides(scn.example("serving"), candidates=32)
    res = sw.run(sc, samples=40000, chunk_size=8192)
    rec = res["recommendation"]
    decision_samples = len(range(0, res["samples"], sc.subsample))
    assert rec["scored_samples"] == decision_samples and res["converged_fraction"] == 1.0
    assert "p_untrainable" in rec


@pytest.mark.parametrize("constraints", [None, {"max_tokens": 1e12}, {"max_params": 70e9},
                                         {"inference_tokens": 2e12}, {"inference_tokens": 5e13}])
def test_without_uncertainty_the_recommendation_is_the_optimum(constraints):
    """A fixed budget and law: every future is the same, so the robust size is `optimize`'s
    answer for the same inputs (also where a cap binds, at its kink), and the refinement says it
    converged."""
    _, res = _sweep({"flops": 1e24}, constraints, samples=2000, uncertainty="none")
    want = optimize(get_preset("besiroglu2024"), flops=1e24, constraints=Constraints(**(constraints or {})))
    assert res["recommendation"]["params"] == pytest.approx(want["params"], rel=1e-6)
    assert res["recommendation"]["expected_regret"] == pytest.approx(0.0, abs=1e-6)
    assert res["refinement"]["converged"]


def test_nothing_to_recommend_is_an_error(tmp_path):
    """A budget no model fits (1 FLOP): the summary is still printed, then one error line and
    exit code 1 — not a note and exit 0."""
    f = tmp_path / "tiny.toml"
    f.write_text("samples = 2000\n[budget]\nflops = 1.0\n")
    r = runner.invoke(app, ["sweep", str(f), "-q"])
    assert r.exit_code == 1
    assert "budgetopt sweep" in r.stdout
    assert r.stderr.strip().splitlines()[-1].startswith("error: nothing to recommend: ")
    no_grid = runner.invoke(app, ["sweep", str(f), "-q", "--candidates", "0"])
    assert no_grid.exit_code == 0  # no recommendation asked for, none missing
