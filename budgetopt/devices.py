"""Local devices: how many, and how to spread a batch over them with jax.sharding.

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
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def set_host_device_count(n: int) -> None:
    """Expose ``n`` CPU devices (numpyro's helper of the same name). Must run before JAX
    initialises its backends, i.e. before the first computation."""
    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", os.environ.get("XLA_FLAGS", ""))
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={int(n)}".strip()


def batch_sharding() -> NamedSharding:
    """Shard axis 0 over every device (all processes' under jax.distributed; on one host,
    its local devices)."""
    return NamedSharding(Mesh(np.array(jax.devices()), ("batch",)), PartitionSpec("batch"))


def shard_batch(tree, size: int):
    """Broadcast every leaf to shape (size,) and place it split over the local devices.
    ``size`` must be a multiple of the device count (pad the batch first)."""
    import jax.numpy as jnp

    n_dev = jax.device_count()
    if size % n_dev:
        raise ValueError(f"batch of {size} does not split over {n_dev} devices; pad it to a multiple")
    sharding = batch_sharding()
    return jax.tree_util.tree_map(lambda v: jax.device_put(jnp.broadcast_to(jnp.asarray(v), (size,)), sharding), tree)


@contextlib.contextmanager
def x64(enabled: bool = True):
    """JAX's 64-bit mode inside the block, the caller's setting restored after: library
    entry points that need int64 accumulators or a float64 fit must not flip it for the
    whole process."""
    prev = bool(jax.config.jax_enable_x64)
    jax.config.update("jax_enable_x64", enabled)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", prev)
