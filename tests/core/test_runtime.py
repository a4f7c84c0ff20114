"""Multi-process flags (core.runtime.check_distributed, start_distributed): checked before
anything starts, and a run JAX cannot join is an input error naming --distributed."""

from __future__ import annotations

import jax
import pytest

from budgetopt.core import runtime
from budgetopt.core.errors import ParameterError


@pytest.mark.parametrize("kw, field", [
    (dict(distributed=False, coordinator="h:1"), "coordinator"),
    (dict(distributed=False, process_id=0), "process_id"),
    (dict(distributed=True, num_processes=2), "num_processes"),
    (dict(distributed=True, coordinator="h"), "coordinator"),
    (dict(distributed=True, coordinator="h:0", num_processes=1, process_id=0), "coordinator"),
    (dict(distributed=True, coordinator="h:70000", num_processes=1, process_id=0), "coordinator"),
    (dict(distributed=True, coordinator="h:1", process_id=0), "num_processes"),
    (dict(distributed=True, coordinator="h:1", num_processes=0, process_id=0), "num_processes"),
    (dict(distributed=True, coordinator="h:1", num_processes=2, process_id=-1), "process_id"),
    (dict(distributed=True, coordinator="h:1", num_processes=2, process_id=2), "process_id"),
])
def test_bad_multi_process_flags_are_named(kw, field):
    with pytest.raises(ParameterError) as e:
        runtime.check_distributed(**kw)
    assert e.value.param == field


@pytest.mark.parametrize("kw", [dict(distributed=False), dict(distributed=True),
                                dict(distributed=True, coordinator="[::1]:1234", num_processes=4, process_id=3)])
def test_good_multi_process_flags_pass(kw):
    runtime.check_distributed(**kw)


def test_no_cluster_to_join_is_an_input_error(monkeypatch):
    def refuse(**kw):
        raise ValueError("coordinator_address should be defined.")

    monkeypatch.setattr(jax.distributed, "initialize", refuse)
    monkeypatch.setattr(jax.config, "update", lambda *a: None)
    with pytest.raises(ParameterError) as e:
        runtime.start_distributed()
    assert e.value.param == "distributed" and "coordinator_address should be defined)" in e.value.message


@pytest.mark.parametrize("n", [0, runtime.MAX_HOST_DEVICES + 1])
def test_host_device_count_is_bounded(n):
    with pytest.raises(ParameterError) as e:
        runtime.split_host(n)
    assert e.value.param == "host_devices"
