"""budgetopt: compute-optimal LLM pre-training budgets with scaling laws, in JAX.

Public API (everything else is internal):
- laws: Parametric, Kaplan, DataConstrained, TokensPerParam, loss, get_preset, resolve_law, LawSpec
- allocation: Budget, Allocation, allocate, compute_for_loss, optimal_loss, log_compute_for_loss
- planning: optimize, Constraints, Hardware
- hardware and units: load_catalog, get_accelerator, units
"""

from . import units
from .allocate import Allocation, Budget, ComputeForLoss, allocate, compute_for_loss, log_compute_for_loss, optimal_loss
from .errors import InputError
from .hardware import Accelerator, get_accelerator, load_catalog
from .laws import (DataConstrained, Kaplan, LawSpec, Parametric, TokensPerParam, get_preset, law_from_file,
                   law_from_params, loss, preset_names, resolve_law, to_array_law)
from .plan import Constraints, Hardware, optimize

__version__ = "0.1.0"

__all__ = [
    "Accelerator", "Allocation", "Budget", "ComputeForLoss", "Constraints", "DataConstrained", "Hardware",
    "InputError", "Kaplan", "LawSpec", "Parametric", "TokensPerParam", "allocate", "compute_for_loss",
    "get_accelerator", "get_preset", "law_from_file", "law_from_params", "load_catalog", "log_compute_for_loss",
    "loss", "optimal_loss", "optimize", "preset_names", "resolve_law", "to_array_law", "units",
]
