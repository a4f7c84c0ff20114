"""The sweep's state: typed accumulators for everything a sweep has seen, their exact merge,
and their two on-disk forms (checkpoint npz and the JSON of a result).

The state is a tree of NamedTuples whose leaves are ``summary`` accumulators (Count, WideSum,
Min, Max): ``summary.merge`` combines any two with one tree map, whatever their origin —
devices of a chunk, chunks, a resumed checkpoint, shards (``budgetopt merge``) or processes.
On disk the state is flattened by its paths (``quantities/hist``, ``candidates/regret_sum/hi``)
and read back against a template of the expected structure: anything else — other keys,
shapes or dtypes, negative counts — is refused, never merged.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from ..core.errors import ParameterError
from ..core.files import to_bytes, write_atomic
from .accumulators import Count, QuantityStats, WideSum, is_accumulator, merge, to_host

REGRET_BINS = 256  # log-spaced bins of regret per candidate, plus "below range" and overflow


class CandidateStats(NamedTuple):
    """The robust recommendation's evidence, per candidate size k (K of them), over the scored
    samples of the decision subsample: ``regret_sum``, the fixed-point sum of regret
    L(N_k) - L*; ``win``, samples with regret below 1 % of L*; ``regret_hist``, the histogram of
    regret. ``scored``: how many samples were scored; ``optimal_loss_sum``: the fixed-point sum
    of their L*; ``untrainable``, per candidate, the scored samples in which that size cannot be
    trained (above the sample's max_params, or no token left by its budget)."""

    regret_sum: WideSum
    win: Count
    regret_hist: Count
    scored: Count
    optimal_loss_sum: WideSum
    untrainable: Count

    @staticmethod
    def empty(k: int) -> CandidateStats:
        return CandidateStats(WideSum.empty(k), Count.empty(k), Count.empty((k, REGRET_BINS + 2)), Count.empty(()),
                              WideSum.empty(()), Count.empty(k))


class SweepState(NamedTuple):
    """Everything a sweep accumulates: sample counts, per-quantity statistics, when a
    recommendation is asked for the candidates' statistics (else None) and, with a discrete
    decision, per option the converged samples whose best it is (else None)."""

    samples: Count
    converged: Count
    quantities: QuantityStats
    candidates: CandidateStats | None
    chosen: Count | None = None


def empty_state(n_quantities: int, n_candidates: int, n_options: int = 0) -> SweepState:
    """The state of no samples: the identity of ``merge``."""
    return SweepState(Count.empty(()), Count.empty(()), QuantityStats.empty(n_quantities),
                      CandidateStats.empty(n_candidates) if n_candidates else None,
                      Count.empty(n_options) if n_options else None)


def from_devices(stacked: SweepState) -> SweepState:
    """Host state from a kernel's output, whose every array has a leading device axis: each
    device's share is merged like any other state."""
    host = to_host(jax.device_get(stacked))
    n = np.shape(host.samples.n)[0]
    per_device = [jax.tree_util.tree_map(lambda v, i=i: v[i], host) for i in range(n)]
    return functools.reduce(merge, per_device)


# ----------------------------------------------------------------------------------------------
# Flat form: {"quantities/hist": array, "quantities/sum/hi": array, ...}


def _key(path) -> str:
    return "/".join(str(getattr(k, "name", getattr(k, "key", k))) for k in path)


def flatten(state: SweepState) -> dict[str, np.ndarray]:
    """The state as {path: array}; a WideSum contributes ``path/hi`` and ``path/lo``."""
    flat = {}
    for path, acc in jax.tree_util.tree_flatten_with_path(state, is_leaf=is_accumulator)[0]:
        if isinstance(acc, WideSum):
            flat[_key(path) + "/hi"], flat[_key(path) + "/lo"] = np.asarray(acc.hi), np.asarray(acc.lo)
        else:
            flat[_key(path)] = np.asarray(acc[0])
    return flat


def unflatten(flat: dict[str, Any], template: SweepState, bad: tuple[str, str]) -> SweepState:
    """The inverse of ``flatten``, checked against ``template``'s structure: the same keys and
    shapes, numbers of the right kind, counts and low words non-negative, low words < 2^32.
    Anything else raises ``ParameterError`` on the field and message of ``bad`` = (field, message)."""
    field, message = bad
    want = flatten(template)
    if set(flat) != set(want):
        raise ParameterError(field, message)
    out = {}
    for k, w in want.items():
        v = flat[k]
        try:
            raw = np.asarray(v)
            if w.dtype.kind == "i" and raw.size and raw.dtype.kind not in "iu":  # 1.5 or 1e30 as a count
                raise ParameterError(field, message)
            v = np.asarray(v, dtype=w.dtype)
        except (TypeError, ValueError, OverflowError):
            raise ParameterError(field, message) from None
        if v.shape != w.shape:
            raise ParameterError(field, message)
        if v.dtype.kind == "i" and (v < 0).any() and not k.endswith("/hi"):
            raise ParameterError(field, f"{message}: negative counts")
        if k.endswith("/lo") and (v > 0xFFFFFFFF).any():
            raise ParameterError(field, message)
        if v.dtype.kind == "f" and np.isnan(v).any():
            raise ParameterError(field, message)
        out[k] = v

    def rebuild(path, acc):
        k = _key(path)
        if isinstance(acc, WideSum):
            return WideSum(out[k + "/hi"], out[k + "/lo"])
        return type(acc)(out[k])

    return jax.tree_util.tree_map_with_path(rebuild, template, is_leaf=is_accumulator)


# ----------------------------------------------------------------------------------------------
# JSON (a result file's "state") and checkpoints


def state_to_json(state: SweepState) -> dict:
    """Nested dict of lists (a Min/Max that saw nothing is ±inf, written as null)."""
    tree: dict = {}
    for k, v in flatten(state).items():
        *parents, leaf = k.split("/")
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = [None if isinstance(x, float) and not np.isfinite(x) else x for x in v.ravel().tolist()] \
            if v.dtype.kind == "f" else v.tolist()
        if v.dtype.kind == "f" and v.ndim == 0:
            node[leaf] = node[leaf][0]
    return tree


def state_from_json(d, template: SweepState, name: str) -> SweepState:
    """A result file's state, validated against ``template`` (a ParameterError on ``results``)."""
    bad = ("results", f"{name}: its state does not match the sweep's (edited or damaged)")
    empty = flatten(template)
    flat = {}
    for k, w in empty.items():
        node = d
        for p in k.split("/"):
            if not isinstance(node, dict) or p not in node:
                raise ParameterError(*bad)
            node = node[p]
        if w.dtype.kind == "f":  # null = the empty value of a Min (+inf) or Max (-inf)
            fill = float(w.ravel()[0]) if w.size else 0.0
            node = np.asarray([fill if x is None else x for x in np.ravel(np.asarray(node, dtype=object))],
                              dtype=object).reshape(np.shape(node))
        flat[k] = node
    return unflatten(flat, template, bad)


def save_checkpoint(path: Path, state: SweepState, meta: dict) -> None:
    """The merged state and ``meta`` (fingerprint, next index, shard), written atomically."""
    meta_bytes = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    write_atomic(path, to_bytes(np.savez, __meta__=meta_bytes, **flatten(state)), field="checkpoint")


def load_checkpoint(path: Path, template: SweepState) -> tuple[SweepState, dict]:
    """The state and meta saved by ``save_checkpoint``, validated against ``template``;
    anything else, a file that is not an npz included, is a ParameterError on ``checkpoint``."""
    bad = ("checkpoint", f"{path} is not a checkpoint of this sweep (damaged, or written by another version)")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["__meta__"]).decode())
            flat = {k: np.asarray(z[k]) for k in z.files if k != "__meta__"}
    except Exception:  # zipfile, npy-format, JSON and key errors all mean the same to the user
        raise ParameterError(*bad) from None
    if not isinstance(meta, dict):
        raise ParameterError(*bad)
    want = flatten(template)
    if any(k in flat and flat[k].dtype != want[k].dtype for k in want):
        raise ParameterError(*bad)
    return unflatten(flat, template, bad), meta
