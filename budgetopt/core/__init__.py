"""budgetopt's foundations: nothing here knows a scaling law. Modules, lowest first (none
imports a module after it):

- ``lazy``: package faces that load on first use;
- ``errors``: ``InputError`` and ``ParameterError``, the errors users see;
- ``interrupts``: Ctrl-C and SIGTERM, one line and a clean exit;
- ``files``: the one reader and atomic writer of user files, and the package's data files;
- ``units``: FLOPs, PF-days, device-hours; numbers as people type them;
- ``runtime``: devices, JAX's 64-bit mode, the compile cache and the precision policy;
- ``distributions``: the counter-based generator and inverse-CDF sampling;
- ``lbfgs``: the package's one L-BFGS loop (optax).
"""

from .lazy import lazy_face

__getattr__, __dir__, __all__ = lazy_face(__name__, {
    "InputError": "errors", "ParameterError": "errors", "parse_number": "units", "write_atomic": "files",
    "lbfgs_minimize": "lbfgs",
})
