"""Accelerator catalog: dense peak FLOP/s per dtype, memory and bandwidth, from a data file."""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .errors import InputError, ParameterError
from .files import load_toml

DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8")


def check_dtype(dtype: str) -> str:
    """A dtype budgetopt knows (one of DTYPES), whatever the device."""
    if dtype not in DTYPES:
        raise ParameterError("dtype", f"unknown dtype {dtype!r}; allowed: {', '.join(DTYPES)}")
    return dtype


@dataclass(frozen=True)
class Accelerator:
    """One device. ``peak_tflops`` maps dtype -> dense peak TFLOP/s per device."""

    id: str
    name: str
    memory_gb: float
    bandwidth_tbs: float
    peak_tflops: dict[str, float] = field(default_factory=dict)
    source: str = ""
    tdp_w: float | None = None  # board power (W) from the datasheet; None where none is published

    def peak_flops(self, dtype: str = "bf16") -> float:
        """Dense peak in FLOP/s for ``dtype``; InputError if the device lacks it."""
        check_dtype(dtype)
        if dtype not in self.peak_tflops:
            have = ", ".join(k for k in DTYPES if k in self.peak_tflops)
            raise ParameterError("dtype", f"{self.id} has no {dtype} peak; it has: {have}")
        return self.peak_tflops[dtype] * 1e12


def _parse_catalog(data: dict, origin: str) -> dict[str, Accelerator]:
    out = {}
    for hid, entry in data.items():
        where = f"{origin}: [{hid}]"
        if not isinstance(entry, dict):
            raise InputError(where, "each accelerator must be a table")
        unknown = set(entry) - {"name", "memory_gb", "bandwidth_tbs", "peak_tflops", "source", "tdp_w"}
        if unknown:
            raise InputError(f"{where}.{sorted(unknown)[0]}",
                             "unknown key; allowed: name, memory_gb, bandwidth_tbs, peak_tflops, source, tdp_w")
        peaks = entry.get("peak_tflops")
        if not isinstance(peaks, dict) or not peaks:
            raise InputError(f"{where}.peak_tflops", f"required table of dtype -> TFLOP/s ({', '.join(DTYPES)})")
        for k, v in peaks.items():
            if k not in DTYPES:
                raise InputError(f"{where}.peak_tflops.{k}", f"unknown dtype; allowed: {', '.join(DTYPES)}")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < float("inf"):
                raise InputError(f"{where}.peak_tflops.{k}", "must be a positive number of TFLOP/s")
        tdp = entry.get("tdp_w")
        if tdp is not None and (isinstance(tdp, bool) or not isinstance(tdp, (int, float)) or not 0 < tdp < float("inf")):
            raise InputError(f"{where}.tdp_w", "must be a positive number of watts")
        for k in ("memory_gb", "bandwidth_tbs"):
            v = entry.get(k, 0.0)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < float("inf"):
                raise InputError(f"{where}.{k}", "must be a non-negative number")
        out[hid] = Accelerator(id=hid, name=str(entry.get("name", hid)),
                               memory_gb=float(entry.get("memory_gb", 0.0)),
                               bandwidth_tbs=float(entry.get("bandwidth_tbs", 0.0)),
                               peak_tflops={k: float(v) for k, v in peaks.items()},
                               source=str(entry.get("source", origin)),
                               tdp_w=None if tdp is None else float(tdp))
    return out


def load_catalog(extra_file: str | Path | None = None) -> dict[str, Accelerator]:
    """The built-in catalog, with entries of ``extra_file`` (same TOML format) added or overriding."""
    text = resources.files("budgetopt").joinpath("data/hardware.toml").read_text()
    catalog = _parse_catalog(tomllib.loads(text), "built-in hardware.toml")
    if extra_file is not None:
        path = Path(extra_file)
        data = load_toml(path, "hardware_file", "a TOML accelerator catalog")
        catalog.update(_parse_catalog(data, str(path)))
    return catalog


def get_accelerator(hid: str, catalog: dict[str, Accelerator] | None = None) -> Accelerator:
    """Look up ``hid``; an unknown id is an InputError that suggests the closest ids."""
    catalog = load_catalog() if catalog is None else catalog
    key = hid.strip().lower()
    if key in catalog:
        return catalog[key]
    prefix = [k for k in catalog if k.startswith(key)]
    close = (prefix + [k for k in difflib.get_close_matches(key, list(catalog), n=3, cutoff=0.4) if k not in prefix])[:3]
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ParameterError("gpu", f"unknown accelerator {hid!r}; {hint}known: {', '.join(catalog)}")


def catalog_rows(extra_file: str | Path | None = None) -> list[dict]:
    """One row per accelerator (``budgetopt hardware``): id, name, dense peak TFLOP/s per
    dtype (None where unsupported), memory (GB), bandwidth (TB/s), source."""
    rows = []
    for acc in load_catalog(extra_file).values():
        row = {"id": acc.id, "name": acc.name}
        row.update({f"{d}_tflops": acc.peak_tflops.get(d) for d in DTYPES})
        row.update({"memory_gb": acc.memory_gb, "bandwidth_tbs": acc.bandwidth_tbs, "tdp_w": acc.tdp_w, "source": acc.source})
        rows.append(row)
    return rows
