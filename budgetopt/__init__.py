"""budgetopt: compute-optimal LLM pre-training budgets with scaling laws, in JAX.

Packages by layer, each importing only the ones below it (docs/architecture.md has the map):
``core`` (no scaling-law knowledge) <- ``model`` (laws, allocation, hardware, shapes) <-
``plan`` and ``fit`` (siblings: one-shot questions; a team's runs) <- ``sweep`` (Monte Carlo
over a scenario) <- ``cli`` (the typer commands, reports and figures).

Public API (everything else is internal):
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

from .core.lazy import lazy_face

__version__ = "0.1.0"

_getattr, __dir__, __all__ = lazy_face(__name__, {
    "units": "core.units", "InputError": "core.errors", "ParameterError": "core.errors",
    **dict.fromkeys(["Allocation", "Budget", "ComputeForLoss", "allocate", "compute_for_loss", "log_compute_for_loss",
                     "optimal_loss"], "model.allocation"),
    **dict.fromkeys(["Accelerator", "Cluster", "get_accelerator", "load_catalog"], "model.hardware"),
    **dict.fromkeys(["DataConstrained", "Kaplan", "LawSpec", "Parametric", "TokensPerParam", "get_preset",
                     "law_from_file", "law_from_params", "loss", "preset_names", "resolve_law", "to_array_law"],
                    "model.laws"),
    "Constraints": "plan.optimum", "optimize": "plan.optimum",
    **dict.fromkeys(["Design", "Noise", "design_ladders"], "fit.ladder"),
})
#: old name -> new name; still served, with a DeprecationWarning (removed in 0.3): the one
#: deprecation path of the package
_DEPRECATED = {"Hardware": "Cluster"}


def __getattr__(name: str):
    if name in _DEPRECATED:
        new = _DEPRECATED[name]
        warnings.warn(f"budgetopt.{name} is renamed budgetopt.{new} (it collided with the hardware module's name); "
                      "the old name goes in 0.3", DeprecationWarning, stacklevel=2)
        return _getattr(new)
    return _getattr(name)
