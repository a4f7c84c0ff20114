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
