"""The error types users see: bad input, named by field.

The library names what it was given by its own parameter names (``ParameterError``); the edge
that read the value — a CLI flag, a scenario TOML path — renames them in one place
(``cli.flag_of``, ``scenario.toml_path_of``), so a user reads the name they typed.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_NAME = re.compile(r"\{([a-z][a-z0-9_]*)\}")


class InputError(ValueError):
    """Bad user input. ``field`` names the flag, file field or column; the CLI prints
    ``error: <field>: <message>`` on one line and exits with code 2."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ParameterError(InputError):
    """A library argument outside its domain. ``param`` is the argument's name
    (``max_params``); with ``names=True`` the message names other arguments as
    ``{unique_tokens}`` (off by default: most messages quote user text, which must never be
    read as a name). Python callers read the plain names; ``rename`` gives the same error in an
    edge's vocabulary."""

    def __init__(self, param: str, message: str, *, names: bool = False):
        self.param, self.template, self.names = param, message, names
        super().__init__(param, _NAME.sub(lambda m: m.group(1), message) if names else message)

    def rename(self, name_of: Callable[[str], str]) -> InputError:
        """The error with every parameter name replaced by ``name_of(name)``."""
        message = _NAME.sub(lambda m: name_of(m.group(1)), self.template) if self.names else self.message
        return InputError(name_of(self.param), message)
