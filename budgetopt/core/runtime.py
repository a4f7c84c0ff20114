"""The process's runtime, in one place (numpyro's ``util`` pattern): devices — splitting a CPU
host into several, joining a multi-process run —, JAX's 64-bit mode switched for one block, the
persistent compile cache, and the precision policy of every command.

On a CPU-only machine XLA exposes one device that threads its elementwise work; splitting the
host into one device per core (``set_host_device_count``) lets every core run its own share of
a batched while-loop, which ends as soon as that share has converged (measured ~15 % faster
on 2 cores, benchmarks/NOTES.md).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path

import jax

from .errors import ParameterError


def set_host_device_count(n: int) -> None:
    """Expose ``n`` CPU devices (numpyro's helper of the same name). Must run before JAX
    initialises its backends, i.e. before the first computation."""
    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", os.environ.get("XLA_FLAGS", ""))
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={int(n)}".strip()


MAX_HOST_DEVICES = 256  # measured here: 256 CPU devices start and pmap in 2.4 s, 0.57 GB; 1024 take 8.6 s, 1.5 GB


def split_host(n: int | None = None) -> None:
    """Split a CPU host into ``n`` devices (default: one per core, unless XLA_FLAGS already
    sets a count); accelerators ignore it. Must run before JAX starts its backends."""
    if n is not None and not 1 <= n <= MAX_HOST_DEVICES:
        raise ParameterError("host_devices", f"must be from 1 to {MAX_HOST_DEVICES}, got {n} (each device is a "
                             "thread pool and a copy of every compiled program)")
    if n is not None or "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        set_host_device_count(n or os.cpu_count() or 1)


def check_distributed(distributed: bool, coordinator: str | None = None, num_processes: int | None = None,
                      process_id: int | None = None) -> None:
    """The flags of a multi-process run, checked before anything starts: ``coordinator``
    (host:port of process 0) with ``num_processes`` >= 1 and 0 <= ``process_id`` <
    ``num_processes``, or none of the three (the cluster's environment then gives them)."""
    given = {k: v for k, v in (("coordinator", coordinator), ("num_processes", num_processes),
                               ("process_id", process_id)) if v is not None}
    if given and not distributed:
        raise ParameterError(next(iter(given)), "only with {distributed}", names=True)
    if not given:
        return
    if coordinator is None:
        raise ParameterError(next(iter(given)), "needs {coordinator} (host:port of process 0); without the three, "
                             "the cluster's environment (Slurm, Open MPI) gives them", names=True)
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ParameterError("coordinator", f"must be host:port with a port from 1 to 65535, got {coordinator!r}")
    for name, value in (("num_processes", num_processes), ("process_id", process_id)):
        if value is None:
            raise ParameterError(name, "is needed with {coordinator}", names=True)
    if num_processes < 1:
        raise ParameterError("num_processes", f"must be a whole number >= 1, got {num_processes}")
    if not 0 <= process_id < num_processes:
        raise ParameterError("process_id", f"must be from 0 to {num_processes - 1} ({{num_processes}} - 1), got "
                             f"{process_id}", names=True)


def start_distributed(coordinator: str | None = None, num_processes: int | None = None,
                      process_id: int | None = None) -> None:
    """Join a multi-process run with JAX's own runtime (``jax.distributed``; Slurm and Open
    MPI environments are detected by JAX when no coordinator is given). CPU processes
    exchange the final merge over gloo. A run JAX cannot join is a ParameterError on
    ``distributed``."""
    check_distributed(True, coordinator, num_processes, process_id)
    kw = {}
    if coordinator is not None:
        kw = {"coordinator_address": coordinator, "num_processes": num_processes, "process_id": process_id}
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(**kw)
    except ValueError as e:  # JAX found no cluster environment to take the coordinator from
        reason = str(e).rstrip(".")
        raise ParameterError("distributed", f"cannot join a multi-process run ({reason}); give {{coordinator}}, "
                             "{num_processes} and {process_id}, or run under Slurm or Open MPI", names=True) from None


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


def compile_cache_dir() -> Path | None:
    """Where JAX's persistent compile cache lives: $BUDGETOPT_CACHE_DIR ("off" disables it),
    else $XDG_CACHE_HOME/budgetopt/jax, else ~/.cache/budgetopt/jax. The cache holds compiled
    executables that JAX loads and runs, so a directory another user could write to is refused
    (with a warning): that would let them run code as you. New directories are made 0700."""
    env = os.environ.get("BUDGETOPT_CACHE_DIR")
    if env is not None and env.strip().lower() in ("", "off", "0", "none"):
        return None
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = Path(env) if env else base / "budgetopt" / "jax"
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = path.stat()
    except OSError:
        return None  # a read-only home just means no cache
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        print(f"warning: not using the compile cache {path}: it is writable by other users or not yours "
              "(chmod go-w it, or set BUDGETOPT_CACHE_DIR)", file=sys.stderr)
        return None
    return path


def use_compile_cache() -> None:
    """Turn on JAX's persistent compile cache (``compile_cache_dir``): compiles dominate a
    one-shot CLI call, and a second call with the same shapes loads them."""
    cache = compile_cache_dir()
    if cache is not None:
        jax.config.update("jax_compilation_cache_dir", str(cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


#: How each command computes, stated once. None: float64 on CPU (free for a handful of
#: problems) and float32 on accelerators, ``--x64``/``--x32`` forcing either where a command
#: has them; True: float64 always (the ladder's simulated fits need it); False: float32 always
#: (``bench`` measures the fast path). Commands not listed choose inside the library: ``sweep``
#: runs in 64-bit mode for its int64 accumulators with an explicit compute dtype (float32, or
#: float64 with ``--x64``); ``fit`` and ``forecast`` fit in float64 on any device; ``convert``,
#: ``hardware``, ``laws`` and ``merge`` compute on the host.
PRECISION: dict[str, bool | None] = {"optimize": None, "plan": None, "audit": None, "plot": None, "ladder": True,
                                     "bench": False}


def precision(command: str, x64: bool | None = None):
    """A context in which ``command`` computes at its precision (``PRECISION``), or at ``x64``
    when the user forced it; the process's setting is restored after."""
    policy = PRECISION[command] if x64 is None else bool(x64)
    return jax_x64(jax.default_backend() == "cpu" if policy is None else policy)
