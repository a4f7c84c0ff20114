"""The edge: the typer commands, the flags they share, the reports and figures they draw, and
the quick benchmark. Modules, lowest first (none imports a module after it):

- ``report``: tables, JSON and CSV of every command's answer (importable without typer or JAX);
- ``options``: the flags, declared once, and the number type people type;
- ``plots``: the figures (matplotlib), labels placed without overlap;
- ``bench``: `budgetopt bench`, a one-minute speed check of this machine;
- ``commands``: the typer app: parse, call one library function, respond.
"""

from ..core.lazy import lazy_face

__getattr__, __dir__, __all__ = lazy_face(__name__, {"app": "commands", "cli_main": "commands", "flag_of": "commands"})
