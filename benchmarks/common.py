"""Shared helpers for the benchmarks: timing (median/min/max after warm-up), machine facts,
and appending a markdown block to benchmarks/RESULTS.md."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path


def shard_batch(tree, size: int):
    """Broadcast every leaf to shape (size,) and place it split over the local devices
    (``size`` a multiple of the device count): the solver benchmark's batch."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    n_dev = jax.device_count()
    if size % n_dev:
        raise ValueError(f"batch of {size} does not split over {n_dev} devices; pad it to a multiple")
    sharding = NamedSharding(Mesh(np.array(jax.devices()), ("batch",)), PartitionSpec("batch"))
    return jax.tree_util.tree_map(lambda v: jax.device_put(jnp.broadcast_to(jnp.asarray(v), (size,)), sharding), tree)


RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def timeit(fn, repeats: int = 3, warmup: int = 1) -> dict:
    """Run ``fn`` (which must block until done) warmup + repeats times; seconds per run."""
    first = None
    for i in range(warmup):
        t0 = time.perf_counter()
        fn()
        if i == 0:
            first = time.perf_counter() - t0
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return {"median": statistics.median(runs), "min": min(runs), "max": max(runs), "first": first, "runs": runs}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    import jax
    import numpy as np

    devs = jax.devices()
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "jax": jax.__version__, "numpy": np.__version__, "backend": jax.default_backend(),
            "devices": [f"{d.platform}:{getattr(d, 'device_kind', '')}" for d in devs]}
    try:
        import scipy

        info["scipy"] = scipy.__version__
    except ImportError:
        pass
    return info


def record(title: str, table_md: str, data: dict, path: Path = RESULTS) -> None:
    """Append a dated block (machine, command, table, raw JSON) to RESULTS.md."""
    m = machine()
    when = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cmd = "python " + " ".join([Path(sys.argv[0]).as_posix().split("/main/")[-1]] + sys.argv[1:])
    block = (f"\n## {title} — {when}\n\n"
             f"Machine: {m['cpu']}, {m['cores']} cores; backend {m['backend']} {m['devices']}; "
             f"jax {m['jax']}, numpy {m['numpy']}" + (f", scipy {m['scipy']}" if "scipy" in m else "") +
             f", Python {m['python']}.\n\nCommand: `{cmd}`\n\n{table_md}\n\n"
             f"<details><summary>raw</summary>\n\n```json\n{json.dumps(data, indent=1, default=float)}\n```\n</details>\n")
    if not path.exists():
        path.write_text("# Benchmark results\n\nNewest last. Each block: date, machine, command, figures.\n")
    with path.open("a") as f:
        f.write(block)
