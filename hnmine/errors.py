"""The one exception type that means "the user's input is wrong, not the program".

The CLI prints these as a single line and exits non-zero; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input or conflicting options, with a message that names the file, column and row at fault."""
