"""The one error type users see: bad input, named by field."""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input. ``field`` names the flag, file field or column; the CLI prints
    ``error: <field>: <message>`` on one line and exits with code 2."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
