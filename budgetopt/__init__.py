"""budgetopt: compute-optimal LLM pre-training budgets with scaling laws, in JAX.

Public API (everything else is internal):
- laws: Parametric, Kaplan, DataConstrained, TokensPerParam, loss, get_preset, resolve_law, LawSpec
- allocation: Budget, Allocation, allocate, compute_for_loss, optimal_loss, log_compute_for_loss
- planning: optimize, Constraints, Hardware
- hardware and units: load_catalog, get_accelerator, units

The names load on first use (PEP 562), so ``import budgetopt`` and the CLI start without
importing JAX: bad flags fail fast, and a Ctrl-C during start-up meets the CLI's handler
rather than an import in progress.
"""

import sys
import types
from importlib import import_module

__version__ = "0.1.0"

_WHERE = {
    "units": None,
    "Allocation": "allocate", "Budget": "allocate", "ComputeForLoss": "allocate", "allocate": "allocate",
    "compute_for_loss": "allocate", "log_compute_for_loss": "allocate", "optimal_loss": "allocate",
    "InputError": "errors",
    "Accelerator": "hardware", "get_accelerator": "hardware", "load_catalog": "hardware",
    "DataConstrained": "laws", "Kaplan": "laws", "LawSpec": "laws", "Parametric": "laws", "TokensPerParam": "laws",
    "get_preset": "laws", "law_from_file": "laws", "law_from_params": "laws", "loss": "laws", "preset_names": "laws",
    "resolve_law": "laws", "to_array_law": "laws",
    "Constraints": "plan", "Hardware": "plan", "optimize": "plan",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'budgetopt' has no attribute {name!r}")
    module = import_module(f".{_WHERE[name] or name}", __name__)
    value = module if _WHERE[name] is None else getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_WHERE))


class _Package(types.ModuleType):
    """The import system binds each loaded submodule on its package (``budgetopt.allocate =
    <module>``); where a public function has the submodule's name, the function wins."""

    def __setattr__(self, name, value):
        if isinstance(value, types.ModuleType) and _WHERE.get(name) == name:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
