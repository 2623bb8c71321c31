"""How a job talks to whoever runs it. The CLI prints these lines on stderr; from Python, warnings go through
:mod:`warnings` and the rest is dropped unless the caller passes its own ``Messages``."""

from __future__ import annotations

import warnings
from typing import Protocol


class Messages(Protocol):
    def warn(self, message: str) -> None:
        """Something the user should act on (skipped queries, an option that had no effect); always shown."""
        ...

    def notice(self, message: str) -> None:
        """A fact about the run shown even in quiet mode (it changes what the output means)."""
        ...

    def info(self, message: str) -> None:
        """A fact about the run that a quiet run leaves out."""
        ...


class PythonMessages:
    """For jobs run from Python: warnings as ``UserWarning``, nothing printed."""

    def warn(self, message: str) -> None:
        warnings.warn(message, stacklevel=3)

    def notice(self, message: str) -> None:
        pass

    def info(self, message: str) -> None:
        pass
