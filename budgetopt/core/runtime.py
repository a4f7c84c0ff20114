"""Devices: splitting a CPU host into several, joining a multi-process run, and JAX's 64-bit
mode switched for one block.

On a CPU-only machine XLA exposes one device that threads its elementwise work; splitting the
host into one device per core (``set_host_device_count``) lets every core run its own share of
a batched while-loop, which ends as soon as that share has converged (measured ~15 % faster
on 2 cores, benchmarks/NOTES.md).
"""

from __future__ import annotations

import contextlib
import os
import re

import jax


def set_host_device_count(n: int) -> None:
    """Expose ``n`` CPU devices (numpyro's helper of the same name). Must run before JAX
    initialises its backends, i.e. before the first computation."""
    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", os.environ.get("XLA_FLAGS", ""))
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={int(n)}".strip()


def split_host(n: int | None = None) -> None:
    """Split a CPU host into ``n`` devices (default: one per core, unless XLA_FLAGS already
    sets a count); accelerators ignore it. Must run before JAX starts its backends."""
    from .errors import ParameterError

    if n is not None and n < 1:
        raise ParameterError("host_devices", f"must be >= 1, got {n}")
    if n is not None or "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        set_host_device_count(n or os.cpu_count() or 1)


def start_distributed(coordinator: str | None = None, num_processes: int | None = None,
                      process_id: int | None = None) -> None:
    """Join a multi-process run with JAX's own runtime (``jax.distributed``; Slurm and Open
    MPI environments are detected by JAX when no coordinator is given). CPU processes
    exchange the final merge over gloo."""
    kw = {}
    if coordinator is not None:
        kw = {"coordinator_address": coordinator, "num_processes": num_processes, "process_id": process_id}
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kw)


@contextlib.contextmanager
def jax_x64(enabled: bool = True):
    """JAX's 64-bit mode inside the block, the caller's setting restored after: library
    entry points that need int64 accumulators or a float64 fit must not flip it for the
    whole process."""
    prev = bool(jax.config.jax_enable_x64)
    jax.config.update("jax_enable_x64", enabled)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", prev)
