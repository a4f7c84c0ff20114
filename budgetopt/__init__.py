"""budgetopt: compute-optimal LLM pre-training budgets with scaling laws, in JAX.

Public API (everything else is internal; docs/architecture.md maps the modules):
- laws: Parametric, Kaplan, DataConstrained, TokensPerParam, loss, get_preset, resolve_law, LawSpec
- allocation: Budget, Allocation, allocate, compute_for_loss, optimal_loss, log_compute_for_loss
- planning: optimize, Constraints, Cluster
- ladder design: design_ladders, Design, Noise
- hardware and units: load_catalog, get_accelerator, units
- errors: InputError, ParameterError

The names load on first use (PEP 562), so ``import budgetopt`` and the CLI start without
importing JAX: bad flags fail fast, and a Ctrl-C during start-up meets the CLI's handler
rather than an import in progress.
"""

import warnings
from importlib import import_module

__version__ = "0.1.0"

_WHERE = {
    "units": None,
    "Allocation": "allocation", "Budget": "allocation", "ComputeForLoss": "allocation", "allocate": "allocation",
    "compute_for_loss": "allocation", "log_compute_for_loss": "allocation", "optimal_loss": "allocation",
    "InputError": "errors", "ParameterError": "errors",
    "Accelerator": "hardware", "get_accelerator": "hardware", "load_catalog": "hardware",
    "DataConstrained": "laws", "Kaplan": "laws", "LawSpec": "laws", "Parametric": "laws", "TokensPerParam": "laws",
    "get_preset": "laws", "law_from_file": "laws", "law_from_params": "laws", "loss": "laws", "preset_names": "laws",
    "resolve_law": "laws", "to_array_law": "laws",
    "Cluster": "plan", "Constraints": "plan", "optimize": "plan",
    "Design": "ladder", "Noise": "ladder", "design_ladders": "ladder",
}
#: old name -> new name; still served, with a DeprecationWarning (removed in 0.3)
_DEPRECATED = {"Hardware": "Cluster"}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _DEPRECATED:
        new = _DEPRECATED[name]
        warnings.warn(f"budgetopt.{name} is renamed budgetopt.{new} (plan.{name} collided with the hardware "
                      "module's name); the old name goes in 0.3", DeprecationWarning, stacklevel=2)
        return __getattr__(new)
    if name not in _WHERE:
        raise AttributeError(f"module 'budgetopt' has no attribute {name!r}")
    module = import_module(f".{_WHERE[name] or name}", __name__)
    value = module if _WHERE[name] is None else getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_WHERE))
