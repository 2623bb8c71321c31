"""The one exception type that means "the user's input is wrong, not the program".

The CLI prints these as a single line and exits non-zero; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input or conflicting options, with a message that names the file, column and row at fault."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's stop, ``kill``) raised like Ctrl-C, so the same cleanup runs for both.

    A KeyboardInterrupt subclass on purpose: every ``except BaseException`` cleanup (temporary files, the
    multi-process encoding pool's workers) already handles Ctrl-C, and now handles SIGTERM the same way.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


def check_int(option: str, value: object, minimum: int = 0, maximum: int | None = None) -> None:
    """An integer option in range; ``bool`` and floats (TOML ``top_k = 2.5``) are refused, not truncated."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{option} must be an integer, got {value!r}")
    if value < minimum:
        raise InputError(f"{option} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise InputError(f"{option} must be <= {maximum}, got {value}")


def check_float(option: str, value: object, minimum: float | None = None, maximum: float | None = None,
                above: float | None = None) -> None:
    """A finite number in range: NaN compares false with every bound, so it is refused explicitly."""
    import math

    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{option} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise InputError(f"{option} must be a finite number, got {value}")
    if minimum is not None and value < minimum:
        raise InputError(f"{option} must be >= {minimum}, got {value}")
    if above is not None and value <= above:
        raise InputError(f"{option} must be > {above}, got {value}")
    if maximum is not None and value > maximum:
        raise InputError(f"{option} must be <= {maximum}, got {value}")


# Ranks and indices are int32 columns; larger options cannot mean anything and would size huge arrays.
MAX_RANK = 2**31 - 1
# numpy's generators take seeds in [0, 2**63); a negative seed is an error there, so it is one here too.
MAX_SEED = 2**63 - 1
