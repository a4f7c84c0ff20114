"""What an answer's own numbers say against it (plan.optimum.answer_warnings): data repeated
past any value under the data-constrained law, and an allocation rule far outside published
ratios; the budget's source named in its error."""

from __future__ import annotations

import math

import pytest
from typer.testing import CliRunner

from budgetopt.cli.commands import app
from budgetopt.core.errors import ParameterError
from budgetopt.model.hardware import cluster_from
from budgetopt.model.laws import data_constrained_constants, resolve_law
from budgetopt.plan.optimum import Constraints, optimize

runner = CliRunner()


def test_epochs_past_any_value_are_a_warning():
    rd_star = data_constrained_constants()[0]
    assert rd_star == pytest.approx(15.387756)  # Muennighoff et al. 2023, the fitted R_D*
    assert math.exp(-4) < 0.02  # the marginal value of a repeated token at 4 R_D* epochs
    law = resolve_law("besiroglu2024")
    one = optimize(law, flops=1e23, constraints=Constraints(unique_tokens=1.0))
    assert one["epochs"] == pytest.approx(one["tokens"], rel=1e-12) and one["epochs"] > 4 * rd_star
    assert any("4 R_D*" in w for w in one["warnings"])
    plenty = optimize(law, flops=1e23, constraints=Constraints(unique_tokens=1e11))
    assert plenty["epochs"] < 4 * rd_star and plenty["warnings"] == []
    r = runner.invoke(app, ["optimize", "--flops", "1e23", "--unique-tokens", "1"])
    assert r.exit_code == 0 and "warning: " in r.stderr and "4 R_D*" in r.stderr


@pytest.mark.parametrize("ratio, warned", [(20.0, False), (1e4, False), (1e9, True), (1e-6, True)])
def test_a_rule_far_outside_published_ratios_is_a_warning(ratio, warned):
    rec = optimize(resolve_law("tokens-per-param", ratio=ratio), flops=1e23)
    assert rec["tokens_per_param"] == pytest.approx(ratio, rel=1e-9)
    assert any("far outside published runs" in w for w in rec["warnings"]) == warned


def test_a_budget_from_hardware_names_the_hardware_in_its_error():
    cluster, _ = cluster_from("h100-sxm", count=1, hours=1e-30)
    with pytest.raises(ParameterError) as e:
        optimize(resolve_law("besiroglu2024"), cluster=cluster)
    assert e.value.param == "hours" and "booking" in e.value.message
    with pytest.raises(ParameterError) as e:
        optimize(resolve_law("besiroglu2024"), flops=5.0)
    assert e.value.param == "flops"
