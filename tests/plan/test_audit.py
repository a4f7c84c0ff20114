import json
import math

import pytest
from typer.testing import CliRunner

from budgetopt.cli.commands import app
from budgetopt.core.errors import InputError
from budgetopt.model.laws import get_preset
from budgetopt.plan.audit import Model, audit_model, audit_models, get_model, model_catalog

from .. import reference as ref

runner = CliRunner()


def verdicts(law):
    return {r["name"]: r["verdict"] for r in audit_models(list(model_catalog().values()), get_preset(law))}


@pytest.mark.parametrize("law", ["hoffmann2022", "tokens-per-param"])
def test_the_source_materials_claims(law):
    v = verdicts(law)
    for name in ("GPT-3 175B", "OPT-175B", "BLOOM 176B"):
        assert v[name] == "under-trained", name
    assert v["LLaMA-65B"] == "near-optimal"
    assert v["Llama 3 8B"] == "over-trained"


def test_chinchilla_beats_gopher_at_the_same_compute():
    E, A, B, a, b = 1.69, 406.4, 410.7, 0.34, 0.28
    c = 5.76e23  # the budget both were trained at (Chinchilla paper)
    chin = ref.chinchilla(E, A, B, a, b, 70e9, c / (6 * 70e9))
    goph = ref.chinchilla(E, A, B, a, b, 280e9, c / (6 * 280e9))
    assert chin < goph
    rows = {r["name"]: r for r in audit_models([get_model("chinchilla"), get_model("gopher")],
                                               get_preset("hoffmann2022"))}
    assert rows["Chinchilla 70B"]["loss"] < rows["Gopher 280B"]["loss"]


@pytest.mark.parametrize("law", ["hoffmann2022", "besiroglu2024"])
def test_a_model_on_the_optimum_has_no_gap(law):
    p = get_preset(law).params
    A, B, al, be = math.exp(p.log_A), math.exp(p.log_B), p.alpha, p.beta
    c = 1e24
    G = (al * A / (be * B)) ** (1 / (al + be))
    n = G * (c / 6) ** (be / (al + be))
    r = audit_model(Model("opt", "on the optimum", n, c / (6 * n)), get_preset(law))
    assert r["loss_gap"] == pytest.approx(0.0, abs=1e-12)
    assert r["compute_multiplier"] == pytest.approx(1.0, rel=1e-9)
    assert r["verdict"] == "near-optimal"


def test_numbers_against_plain_formulas():
    E, A, B, a, b = 1.69, 406.4, 410.7, 0.34, 0.28
    r = audit_model(get_model("gpt-3"), get_preset("hoffmann2022"))
    assert r["flops"] == 3.14e23 and r["flops_published"]
    assert r["loss"] == pytest.approx(ref.chinchilla(E, A, B, a, b, 174.6e9, 300e9), rel=1e-12)
    G = (a * A / (b * B)) ** (1 / (a + b))
    s = 3.14e23 / 6
    n_opt = G * s ** (b / (a + b))
    assert r["optimal_params"] == pytest.approx(n_opt, rel=1e-9)
    # compute needed for the same loss: invert L*(C) = E + K (C/6)^(-ab/(a+b)) by bisection
    K = A * G ** -a + B * G ** b
    g = a * b / (a + b)
    need = 6 * ((r["loss"] - E) / K) ** (-1 / g)
    assert r["compute_multiplier"] == pytest.approx(3.14e23 / need, rel=1e-9)
    assert r["loss_gap"] == pytest.approx(r["loss"] - (E + K * s ** -g), rel=1e-9)


def test_cli_audit_json_and_own_model():
    out = runner.invoke(app, ["audit", "--format", "json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)
    assert len(rows) == len(model_catalog())
    for k in ("name", "params", "tokens", "flops", "tokens_per_param", "loss", "optimal_params", "optimal_tokens",
              "loss_gap", "compute_multiplier", "verdict"):
        assert k in rows[0]
    own = runner.invoke(app, ["audit", "--params", "7B", "--tokens", "2T", "--law", "besiroglu2024", "-f", "json"])
    row = json.loads(own.stdout)[0]
    assert row["flops"] == pytest.approx(6 * 7e9 * 2e12) and row["verdict"] in ("near-optimal", "over-trained")
    t = runner.invoke(app, ["audit"])
    assert "near-optimal:" in t.stdout and "LLaMA-65B" in t.stdout


def test_unknown_model_lists_known():
    with pytest.raises(InputError) as e:
        get_model("gpt-5")
    assert "gpt-3" in e.value.message


# ---------------------------------------------------------------------------------------------- one default law, stated


def test_audit_uses_the_default_law_of_every_other_command():
    rows = json.loads(runner.invoke(app, ["audit", "-f", "json"]).stdout)
    opt = json.loads(runner.invoke(app, ["optimize", "--flops", "1e24", "-f", "json"]).stdout)
    assert opt["law"] == "besiroglu2024"
    want = {r["name"]: r["verdict"] for r in audit_models(list(model_catalog().values()), get_preset("besiroglu2024"))}
    assert {r["name"]: r["verdict"] for r in rows} == want
    v = verdicts("besiroglu2024")  # the source material's claims hold under the default law too
    assert all(v[n] == "under-trained" for n in ("GPT-3 175B", "OPT-175B", "BLOOM 176B"))
    assert v["LLaMA-65B"] == "near-optimal" and v["Llama 3 8B"] == "over-trained"


def test_a_verdicts_probability_under_the_laws_covariance():
    """The probability of each verdict over draws of the law, against NumPy: 40,000 draws from
    the preset's covariance (another generator), each judged by the plain formulas — the closed
    form optimum and the compute its optimal allocation needs for the model's loss."""
    import numpy as np

    spec = get_preset("besiroglu2024")
    rng = np.random.default_rng(1)
    th = rng.multivariate_normal([float(v) for v in spec.params], spec.covariance, size=40_000)
    A, B, E, al, be = np.exp(th[:, 0]), np.exp(th[:, 1]), np.exp(th[:, 2]), th[:, 3], th[:, 4]
    G = (al * A / (be * B)) ** (1 / (al + be))
    g = al * be / (al + be)
    K = A * G ** -al + B * G ** be
    for key in ("bloomberggpt", "gpt-3", "llama-3-70b"):
        m = get_model(key)
        row = audit_model(m, spec)
        c = m.flops or 6 * m.params * m.tokens
        n_opt = G * (c / 6) ** (be / (al + be))
        loss = ref.chinchilla(E, A, B, al, be, m.params, m.tokens)
        need = 6 * ((loss - E) / K) ** (-1 / g)
        code = np.where(c / need <= 1.25, 1, np.where(m.params > n_opt, 0, 2))
        for i, name in enumerate(("p_under_trained", "p_near_optimal", "p_over_trained")):
            p = np.mean(code == i)
            se = math.sqrt(max(p * (1 - p), 1e-4) / 2000)  # the audit's own 2,000 draws
            assert abs(row[name] - p) < 4 * se + 1e-3, (key, name, row[name], p)
        assert row["p_verdict"] == row["p_" + row["verdict"].replace("-", "_")]


def test_a_model_trained_for_serving_is_judged_by_its_lifetime_compute():
    """The inference-aware optimum at a lifetime budget audits as near-optimal with no gap;
    Llama 3 8B (15T tokens) looks far less over-trained once its serving is counted."""
    spec = get_preset("besiroglu2024")
    from budgetopt.plan.optimum import Constraints, optimize

    o = optimize(spec, flops=1e24, constraints=Constraints(inference_tokens=5e12))
    r = audit_model(Model("served", "served", o["params"], o["tokens"]), spec, inference_tokens=5e12)
    assert r["lifetime_flops"] == pytest.approx(1e24, rel=1e-6)
    assert r["loss_gap"] == pytest.approx(0.0, abs=1e-9) and r["compute_multiplier"] == pytest.approx(1.0, rel=1e-6)
    assert r["verdict"] == "near-optimal"
    alone = audit_model(get_model("llama-3-8b"), spec)
    served = audit_model(get_model("llama-3-8b"), spec, inference_tokens=2e13)
    assert served["compute_multiplier"] < alone["compute_multiplier"]
    cli = runner.invoke(app, ["audit", "--model", "llama-3-8b", "--inference-tokens", "2e13", "-f", "json"])
    assert json.loads(cli.stdout)[0]["compute_multiplier"] == pytest.approx(served["compute_multiplier"], rel=1e-9)


def test_an_moe_model_is_judged_at_its_own_expert_count_and_by_the_dense_law():
    """Under ludziejewski2025-moe each model is audited by the joint law at its routed expert
    count (the Chinchilla law it is at that E, written here from the paper's eq. 6), and beside
    it by the default dense law at its active parameters; the MoE entries' totals are those of
    their architecture in architectures.toml."""
    from budgetopt.core.errors import ParameterError
    from budgetopt.model.laws import LawSpec, Parametric, resolve_law
    from budgetopt.model.moe_shape import architecture

    joint = resolve_law("ludziejewski2025-moe", moe=True)
    ds = get_model("deepseek-v3")
    assert (ds.params, ds.params_total, ds.experts, ds.top_k) == (37e9, 671e9, 256.0, 8)
    e_hat = 1.0 / (1.0 / (256 - 1.0 + 1.0 / (1.0 / 2.0732 - 1.0 / 290.4521)) + 1.0 / 290.4521)
    le = math.log(e_hat)
    at_e = LawSpec("joint at 256", Parametric(math.log(35.91) - 0.2285 * le, math.log(35.98) + 0.5529 * le,
                                              math.log(1.3637), 0.1889 - 0.0098 * le, 0.1775 + 0.0259 * le))
    row = audit_model(ds, joint)
    direct = audit_model(ds, at_e)
    for key in ("loss", "optimal_params", "optimal_tokens", "compute_multiplier"):
        assert row[key] == pytest.approx(direct[key], rel=1e-9), key
    assert row["verdict"] == direct["verdict"]
    assert row["verdict_dense"] == audit_model(ds, get_preset("besiroglu2024"))["verdict"]
    assert row["experts"] == 256.0 and row["params_total"] == 671e9
    dense_row = audit_model(get_model("chinchilla"), joint)
    assert dense_row["experts"] == 1.0 and "params_total" not in dense_row
    for mid in ("deepseek-v3", "qwen3-235b-a22b"):
        m = get_model(mid)
        assert architecture(mid)[1]["published_total"] == m.params_total
    with pytest.raises(ParameterError) as e:
        audit_model(ds, resolve_law("krajewski2024-moe", moe=True))
    assert e.value.field == "law"
    r = runner.invoke(app, ["audit", "--law", "ludziejewski2025-moe", "--model", "deepseek-v3", "-f", "json"])
    assert r.exit_code == 0 and json.loads(r.stdout)[0]["verdict_dense"] == row["verdict_dense"]
