"""Hardware: the accelerator catalog (dense peak FLOP/s per dtype, memory, bandwidth, board
power, from a data file with sources) and a ``Cluster`` of them — count x hours x MFU — with
the device-hours, wall-clock, energy, emissions and cost of delivering a number of FLOPs."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from ..core import units
from ..core.errors import InputError, ParameterError
from ..core.files import data_toml, load_toml
from ..core.units import require_in

DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8", "fp4")


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
        if tdp is not None and (isinstance(tdp, bool) or not isinstance(tdp, (int, float))
                                or not 0 < tdp < float("inf")):
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
    catalog = _parse_catalog(data_toml("hardware.toml"), "built-in hardware.toml")
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
    similar = difflib.get_close_matches(key, list(catalog), n=3, cutoff=0.4)
    close = (prefix + [k for k in similar if k not in prefix])[:3]
    hint = f"did you mean {', '.join(close)}? " if close else ""
    shown = hid if len(hid) <= 40 else hid[:37] + "..."  # an error is one line, whatever was typed
    raise ParameterError("gpu", f"unknown accelerator {shown!r}; {hint}known: {', '.join(catalog)}")


def catalog_rows(extra_file: str | Path | None = None) -> list[dict]:
    """One row per accelerator (``budgetopt hardware``): id, name, dense peak TFLOP/s per
    dtype (None where unsupported), memory (GB), bandwidth (TB/s), source."""
    rows = []
    for acc in load_catalog(extra_file).values():
        row = {"id": acc.id, "name": acc.name}
        row.update({f"{d}_tflops": acc.peak_tflops.get(d) for d in DTYPES})
        row.update({"memory_gb": acc.memory_gb, "bandwidth_tbs": acc.bandwidth_tbs, "tdp_w": acc.tdp_w,
                    "source": acc.source})
        rows.append(row)
    return rows


DEFAULT_MFU = 0.4


def check_mfu(mfu: float) -> float:
    """Model-FLOPs utilisation: a fraction in (0, 1]."""
    return require_in(mfu, "mfu", 0.0, 1.0, low_open=True, what="a model-FLOPs utilisation")


def check_energy(pue: float | None, power_watts: float | None, grid_intensity: float | None) -> None:
    """PUE in [1, 10); board power in (0, 1e5) W; grid intensity in [0, 10) kg CO2e per kWh."""
    if pue is not None:
        require_in(pue, "pue", 1.0, 10.0, high_open=True, what="a power usage effectiveness")
    if power_watts is not None:
        require_in(power_watts, "power_watts", 0.0, 1e5, low_open=True, high_open=True, what="a number of watts")
    if grid_intensity is not None:
        require_in(grid_intensity, "grid_intensity", 0.0, 10.0, high_open=True, what="kg CO2e per kWh")


def check_price(price_per_hour: float | None) -> float | None:
    """A price per device-hour: a non-negative finite number (or None)."""
    return None if price_per_hour is None else require_in(price_per_hour, "price_per_hour", 0.0, what="a price")


class ClusterRecord(TypedDict, total=False):
    """What ``Cluster.describe`` adds to an answer (``optimize``'s, dense or MoE): the
    accelerator and dtype, MFU, device count, device-hours, wall-clock days, energy (kWh),
    emissions (t CO2e) and cost."""

    gpu: str
    dtype: str
    mfu: float
    count: float | None
    gpu_hours: float
    wall_days: float
    energy_kwh: float
    emissions_t: float
    cost: float


@dataclass(frozen=True)
class Cluster:
    """Where the compute comes from: ``count`` accelerators for ``hours`` at ``mfu``. ``count``
    and ``hours`` may be None when only a rate is needed (e.g. converting a target's compute
    into GPU-hours)."""

    accelerator: Accelerator
    dtype: str = "bf16"
    mfu: float = DEFAULT_MFU
    count: float | None = None
    hours: float | None = None
    pue: float = 1.0
    power_watts: float | None = None  # board power; None: the catalog's tdp_w
    grid_intensity: float | None = None  # kg CO2e per kWh; None: no emissions reported

    def __post_init__(self):
        self.accelerator.peak_flops(self.dtype)  # validates the dtype
        check_mfu(self.mfu)
        check_energy(self.pue, self.power_watts, self.grid_intensity)
        whole = self.count is None or (math.isfinite(self.count) and self.count >= 1 and self.count == int(self.count))
        if not whole:
            raise ParameterError("count", f"must be a whole number of devices >= 1, got {self.count!r}")
        if self.hours is not None:
            require_in(self.hours, "hours", 0.0, low_open=True, what="a number of hours")

    @property
    def peak_flops(self) -> float:
        """Dense peak FLOP/s per device at ``dtype``."""
        return self.accelerator.peak_flops(self.dtype)

    def flops(self) -> float:
        """Delivered FLOPs: count x peak x MFU x hours."""
        if self.count is None or self.hours is None:
            raise ParameterError("count" if self.count is None else "hours",
                                 "required to turn hardware into a compute budget")
        return units.hardware_flops(self.peak_flops, self.count, self.mfu, self.hours)

    @property
    def watts(self) -> float | None:
        """Board power per device (W): the override, else the catalog's, else unknown."""
        return self.power_watts if self.power_watts is not None else self.accelerator.tdp_w

    def describe(self, train_flops: float, price_per_hour: float | None = None) -> ClusterRecord:
        """GPU-hours, wall-days, energy (kWh: device-hours x board power x PUE), emissions
        (t CO2e, with a grid intensity) and cost of delivering ``train_flops`` on this hardware."""
        gh = units.gpu_hours(train_flops, self.peak_flops, self.mfu)
        out: ClusterRecord = {"gpu": self.accelerator.id, "dtype": self.dtype, "mfu": self.mfu, "count": self.count,
                              "gpu_hours": gh}
        if self.count is not None:
            out["wall_days"] = units.wall_days(train_flops, self.peak_flops, self.mfu, self.count)
        if self.watts is not None:
            out["energy_kwh"] = units.energy_kwh(gh, self.watts, self.pue)
            if self.grid_intensity is not None:
                out["emissions_t"] = out["energy_kwh"] * self.grid_intensity / 1000.0
        if price_per_hour is not None:
            out["cost"] = gh * price_per_hour
        return out


def cluster_from(gpu: str | None = None, *, dtype: str | None = None, count: float | None = None,
                  hours: float | None = None, days: float | None = None, mfu: float | None = None,
                  price_per_hour: float | None = None, pue: float | None = None, power_watts: float | None = None,
                  grid_intensity: float | None = None, hardware_file: str | Path | None = None
                  ) -> tuple[Cluster | None, list[str]]:
    """The Cluster a user describes (accelerator id, dtype, device count, hours or days, MFU,
    PUE, board power, grid intensity), and the names of the given arguments that have no effect
    (those about the hardware, without a ``gpu``). Every given value is validated, used or not."""
    check_price(price_per_hour)
    if mfu is not None:
        check_mfu(mfu)
    if dtype is not None:
        check_dtype(dtype)
    if days is not None:
        require_in(days, "days", 0.0, low_open=True, what="a number of days")
    if gpu is None:
        for name, v in (("count", count), ("hours", hours), ("days", days)):
            if v is not None:
                raise ParameterError(name, "needs {gpu} (the accelerator id; see `budgetopt hardware`)", names=True)
        check_energy(pue, power_watts, grid_intensity)
        energy = {"pue": pue, "power_watts": power_watts, "grid_intensity": grid_intensity}
        return None, [name for name, v in (("mfu", mfu), ("dtype", dtype), ("price_per_hour", price_per_hour),
                                           *energy.items()) if v is not None]
    if hours is not None and days is not None:
        raise ParameterError("days", "give {hours} or {days}, not both", names=True)
    if days is not None:
        hours = days * units.HOURS_PER_DAY
    acc = get_accelerator(gpu, load_catalog(hardware_file))
    return Cluster(acc, dtype or "bf16", DEFAULT_MFU if mfu is None else mfu, count, hours, 1.0 if pue is None else pue,
                   power_watts, grid_intensity), []
