"""Running a sweep: the chunk loop over this process's sample range, checkpoints and resume,
local devices, and the one merge across processes at the end.

Layout of one run:
1. pilot (pilot.py): ranges and candidate sizes from the first samples;
2. main pass: fixed-shape chunks over [begin, end) — this shard's range, or under
   jax.distributed this process's part of it — each split over the local devices by the
   kernel (kernel.py, no collectives), its per-device accumulators merged exactly on the host
   (summary.merge); a checkpoint after each chunk;
3. under jax.distributed, one gather of every process's state, merged the same way;
4. summary (results.py).

Sample i is a pure function of (seed, i), so the result does not depend on chunk size, device
count, shards, processes or interruptions.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import ParameterError
from ..core.files import remove_stale_temps
from ..core.runtime import jax_x64
from ..model.validity import to_mapping
from . import state as st
from .accumulators import MAX_CHUNK_BITS, Ranges, merge
from .choices import option_axis
from .kernel import Kernel, make_kernel, quantity_names
from .pilot import Pilot, make_pilot
from .results import Labels, SweepResult, plan_for_sweep, summarise
from .scenario import Scenario, check_samples

FORMAT = 5  # of the state in checkpoints and result files; part of the fingerprint (5: each option's count)


def fingerprint(scenario: Scenario, n: int, x64: bool) -> str:
    """What must match for a checkpoint to resume or shards to merge."""
    blob = json.dumps({"scenario": scenario.raw,
                       "source": scenario.source if scenario.source.startswith("example:") else "",
                       "samples": n, "seed": scenario.seed, "x64": x64, "candidates": scenario.candidates,
                       "refine": scenario.refine,
                       "subsample": scenario.subsample, "format": FORMAT}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def parse_shard(text: str | None) -> tuple[int, int]:
    """"i/n" -> (i, n); None -> (0, 1)."""
    if text is None:
        return 0, 1
    try:
        i, n = (int(t) for t in text.split("/"))
    except ValueError:
        raise ParameterError("shard", f"expected i/n such as 0/3, got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ParameterError("shard", f"need 0 <= i < n, got {text!r}")
    return i, n


def chunk_layout(chunk_size: int, n_devices: int, stride: int) -> int:
    """The chunk actually run: a multiple of devices x the decision subsample's stride near
    ``chunk_size``, at most 2^MAX_CHUNK_BITS samples per device (the in-kernel int64 sums
    cannot overflow)."""
    unit = n_devices * stride
    chunk = max(unit, -(-chunk_size // unit) * unit)
    while chunk // n_devices > 2**MAX_CHUNK_BITS:
        chunk -= unit
    return chunk


def default_chunk(backend: str, n_devices: int) -> int:
    """Samples per chunk when none is asked for: 65536 per CPU device (the candidates' inputs
    stay in cache; measured in benchmarks/NOTES.md), 2^22 per accelerator (kernel launches
    amortised)."""
    return (65536 if backend == "cpu" else 2**22) * n_devices


def checkpoint_path(path: Path, process: int, processes: int) -> Path:
    """Each process of a multi-process run keeps its own checkpoint beside the named one."""
    return path if processes == 1 else path.with_name(f"{path.stem}.process{process}of{processes}{path.suffix}")


def run(scenario: Scenario, *, samples: float | None = None, chunk_size: float | None = None, x64: bool = False,
        checkpoint: str | Path | None = None, resume: bool = False, shard: tuple[int, int] = (0, 1),
        progress: Callable[[int, int], None] | None = None) -> SweepResult:
    """Run a sweep and return its result (summary + state); see the module docstring.
    Runs in JAX's 64-bit mode (int64 accumulators; the compute dtype stays explicit: float64
    when ``x64``, else float32) and restores the caller's setting."""
    n = check_samples(scenario.samples if samples is None else samples)
    if chunk_size is not None:
        if chunk_size != int(chunk_size) or not 1 <= chunk_size <= 2**MAX_CHUNK_BITS:
            raise ParameterError("chunk_size",
                                 f"must be a whole number from 1 to {2**MAX_CHUNK_BITS} samples, got {chunk_size:g}")
        chunk_size = int(chunk_size)
    if resume and not checkpoint:
        raise ParameterError("resume", "needs {checkpoint}", names=True)
    with jax_x64():
        return _run(scenario, n, chunk_size, x64, checkpoint, resume, shard, progress)


def _run(scenario, n, chunk_size, x64, checkpoint, resume, shard, progress) -> SweepResult:
    t0 = time.perf_counter()
    devices = jax.local_devices()
    if chunk_size is None:
        chunk_size = default_chunk(jax.default_backend(), len(devices))
    chunk = chunk_layout(chunk_size, len(devices), scenario.subsample)
    i_shard, n_shards = shard
    p, n_proc = jax.process_index(), jax.process_count()
    s_begin, s_end = n * i_shard // n_shards, n * (i_shard + 1) // n_shards
    begin, end = s_begin + (s_end - s_begin) * p // n_proc, s_begin + (s_end - s_begin) * (p + 1) // n_proc
    fp = fingerprint(scenario, n, x64)
    dtype = jnp.float64 if x64 else jnp.float32
    pilot, kernel = prepare(scenario, n, x64, chunk)
    n_cand = len(pilot.candidates)
    axis = option_axis(scenario)
    template = st.empty_state(len(quantity_names(scenario)), n_cand, 0 if axis is None else len(axis.labels))
    ranges = Ranges(*(jnp.asarray(v) for v in pilot.ranges))
    cands = jnp.asarray(pilot.candidates, dtype)
    ckpt = checkpoint_path(Path(checkpoint), p, n_proc) if checkpoint else None
    meta_want = {"fingerprint": fp, "shard": [i_shard, n_shards], "process": [p, n_proc]}
    state, pos = template, begin
    if resume:
        remove_stale_temps(ckpt)  # a SIGKILL between write and rename leaves one
        if ckpt.exists():
            state, meta = st.load_checkpoint(ckpt, template)
            if any(meta.get(k, [0, 1] if k != "fingerprint" else None) != v for k, v in meta_want.items()):
                raise ParameterError("resume", f"{ckpt} belongs to a different sweep (scenario, samples, seed, "
                                 "precision, shard or process differ)")
            pos = meta.get("next")
            if isinstance(pos, bool) or not isinstance(pos, int) or not begin <= pos <= end:
                raise ParameterError("checkpoint", f"{ckpt} is damaged: its position {pos!r} is outside this shard")
    # One chunk in flight while the host merges the previous one (JAX dispatches asynchronously):
    # the devices never wait for the host's merge, checkpoint or progress bar.
    in_flight = None
    while pos < end or in_flight is not None:
        launched = None
        if pos < end:
            valid = min(chunk, end - pos)
            launched = (kernel.run(pos, valid, ranges, cands), pos + valid)
            pos += valid
        if in_flight is not None:
            out, done = in_flight
            state = merge(state, st.from_devices(out))
            if ckpt is not None:
                st.save_checkpoint(ckpt, state, dict(meta_want, next=done))
            if progress is not None:
                progress(done - begin, end - begin)
        in_flight = launched
    if n_proc > 1:
        state = _merge_processes(state, template)
    labels = Labels(scenario.name, scenario.law.name, scenario.uncertainty, scenario.risk, scenario.subsample,
                    None if scenario.law.validity is None else to_mapping(scenario.law.validity),
                    *((None, None, None) if axis is None else (axis.key, list(axis.labels), list(axis.log_values))))
    result = summarise(labels, pilot, state, fp)
    result["run"] = {"seed": scenario.seed, "samples_requested": n, "chunk_size": chunk, "devices": jax.device_count(),
                     "local_devices": len(devices), "processes": n_proc, "backend": jax.default_backend(),
                     "jax_version": jax.__version__, "x64": x64, "shard": f"{i_shard}/{n_shards}",
                     "elapsed_s": time.perf_counter() - t0}
    if scenario.plan is not None:
        result["plan"] = plan_for_sweep(scenario, result)
    return result


def _merge_processes(state: st.SweepState, template: st.SweepState) -> st.SweepState:
    """Every process's state, gathered once (JAX's multi-process runtime) and merged exactly."""
    from jax.experimental import multihost_utils

    gathered = multihost_utils.process_allgather(st.flatten(state))
    parts = [st.unflatten({k: np.asarray(v[i]) for k, v in gathered.items()}, template,
                          ("--distributed", "a process sent a damaged state"))
             for i in range(jax.process_count())]
    out = parts[0]
    for s in parts[1:]:
        out = merge(out, s)
    return out


_CACHE: dict = {}


def prepare(scenario: Scenario, n: int, x64: bool, chunk: int) -> tuple[Pilot, Kernel]:
    """The pilot and the chunk kernel of a sweep of ``n`` samples over this process's devices
    (``chunk`` from ``chunk_layout``), kept per (sweep, chunk, devices) so that repeated runs in
    one process (benchmarks, resumes) compile once. Under jax.distributed every process uses
    process 0's pilot, so all of them bin and score alike even on different hardware. Call
    inside JAX's 64-bit mode (``run`` does)."""
    devices = jax.local_devices()
    dtype = jnp.float64 if x64 else jnp.float32
    key = (fingerprint(scenario, n, x64), chunk, tuple(str(d) for d in devices))
    if key not in _CACHE:
        pilot = make_pilot(scenario, n, dtype)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            ranges, cands = multihost_utils.broadcast_one_to_all((tuple(pilot.ranges), pilot.candidates))
            pilot = pilot._replace(ranges=Ranges(*(np.asarray(v) for v in ranges)), candidates=np.asarray(cands))
        _CACHE.clear()  # one sweep at a time: compiled kernels hold device memory
        _CACHE[key] = (pilot, make_kernel(scenario, chunk, dtype, devices))
    return _CACHE[key]
