"""One progress display for a run: a phase per step (read, encode corpus, encode queries, index, mine, write).

Library code reports through ``phase(name, total, unit)`` and never draws anything itself, so the libraries it
calls (sentence-transformers, transformers, FAISS) are asked for no bars of their own: their tqdm bars, drawn
inside a live display, turned every update into a new line. A command installs one display with ``use``:

* ``RichDisplay`` on a terminal: one bar per phase with its count, rate and time; finished phases stay on screen.
* ``LineDisplay`` elsewhere (a log file, CI): one line per finished phase, and a line every ``interval``
  seconds while a long phase runs, never a carriage-return bar.

Without a display (the Python API, tests) phases cost nothing and print nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class Phase:
    """A running step. ``advance`` as work is done; ``total`` may be unknown (None) or set later."""

    name: str
    total: int | None = None
    unit: str = "items"
    done: int = 0
    note: str = ""
    started: float = field(default_factory=time.perf_counter)
    ended: float | None = None
    failed: bool = False
    _display: Display | None = field(default=None, repr=False)
    _handle: Any = field(default=None, repr=False)

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._display is not None:
            self._display.update(self)

    def set_total(self, total: int) -> None:
        self.total = total
        if self._display is not None:
            self._display.update(self)

    def set_note(self, note: str) -> None:
        """A few words shown beside the bar, e.g. ``cached`` when nothing had to be computed."""
        self.note = note
        if self._display is not None:
            self._display.update(self)

    def finish(self) -> None:
        """The step is over: a known total counts as reached, and the display shows its final line."""
        if self.ended is not None:
            return
        self.ended = time.perf_counter()
        if self.total is not None and self.done < self.total and not self.failed:
            self.done = self.total
        if self._display is not None:
            self._display.finish(self)

    @property
    def seconds(self) -> float:
        return (self.ended or time.perf_counter()) - self.started


class Display(Protocol):
    def start(self, phase: Phase) -> None: ...
    def update(self, phase: Phase) -> None: ...
    def finish(self, phase: Phase) -> None: ...
    def close(self) -> None: ...


_display: Display | None = None


def begin(name: str, total: int | None = None, unit: str = "items") -> Phase:
    """Start a step that ends somewhere a ``with`` block cannot span; call ``finish`` on it."""
    p = Phase(name=name, total=total, unit=unit, _display=_display)
    if _display is not None:
        _display.start(p)
    return p


@contextmanager
def phase(name: str, total: int | None = None, unit: str = "items") -> Iterator[Phase]:
    """A step of the run, shown by the installed display; it ends with the block."""
    p = begin(name, total, unit)
    try:
        yield p
    except BaseException:
        p.failed = True  # the error is the run's last line, not a phase that seems to have finished
        p.finish()
        raise
    p.finish()


def active() -> bool:
    """Whether a display is installed: libraries' own progress bars stay off either way."""
    return _display is not None


@contextmanager
def use(display: Display | None) -> Iterator[None]:
    """Install ``display`` (None: silent) for the block, and close it after."""
    global _display
    previous, _display = _display, display
    try:
        yield
    finally:
        _display = previous
        if display is not None:
            display.close()


def quiet_libraries() -> None:
    """No bars from the libraries hnmine calls: hnmine's own display (or nothing) is the only one.

    The environment switches work for libraries not imported yet (the CLI imports them lazily); the calls for
    those already imported (a Python session, the test suite).
    """
    import os
    import sys

    os.environ["TQDM_DISABLE"] = "1"  # tqdm reads it when imported (sentence-transformers' encode/predict bars)
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # huggingface_hub, and transformers' loading bars follow it
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].utils.disable_progress_bars()
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()
    if "datasets" in sys.modules and hasattr(sys.modules["datasets"], "disable_progress_bars"):
        sys.modules["datasets"].disable_progress_bars()


def _rate(phase: Phase) -> str:
    seconds = phase.seconds
    if phase.done == 0 or seconds <= 0 or phase.note == "cached":
        return ""
    rate = phase.done / seconds
    return f"{rate:,.0f} {phase.unit}/s" if rate >= 10 else f"{rate:,.1f} {phase.unit}/s"


def _count(phase: Phase) -> str:
    if phase.total is None:
        return f"{phase.done:,} {phase.unit}" if phase.done else ""
    return f"{phase.done:,}/{phase.total:,} {phase.unit}"


class LineDisplay:
    """Plain lines for logs: ``encode corpus: 5,183/5,183 texts in 131.2 s (40 texts/s)``."""

    def __init__(self, console: Any, interval: float = 30.0) -> None:
        self.console = console
        self.interval = interval
        self._last: dict[int, float] = {}

    def _line(self, phase: Phase, finished: bool) -> str:
        parts = [p for p in (_count(phase), phase.note) if p]
        head = f"{phase.name}: {', '.join(parts)}" if parts else phase.name
        rate = _rate(phase)
        verb = "in" if finished else "after"
        return f"{head} {verb} {phase.seconds:.1f} s" + (f" ({rate})" if rate else "")

    def start(self, phase: Phase) -> None:
        self._last[id(phase)] = time.perf_counter()

    def update(self, phase: Phase) -> None:
        now = time.perf_counter()
        if now - self._last.get(id(phase), now) >= self.interval:
            self._last[id(phase)] = now
            self.console.print(self._line(phase, finished=False), highlight=False, markup=False, soft_wrap=True)

    def finish(self, phase: Phase) -> None:
        self._last.pop(id(phase), None)
        if phase.failed:
            return
        self.console.print(self._line(phase, finished=True), highlight=False, markup=False, soft_wrap=True)

    def close(self) -> None:
        pass


class RichDisplay:
    """Bars on a terminal: one row per phase (name, bar, count, rate, elapsed); finished rows stay."""

    def __init__(self, console: Any) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("{task.description:<15}"), BarColumn(bar_width=30),
            TextColumn("{task.fields[count]}"), TextColumn("{task.fields[rate]}", style="cyan"),
            TimeElapsedColumn(), TextColumn("{task.fields[note]}", style="dim"),
            console=console, transient=False)
        self._started = False

    def _fields(self, phase: Phase) -> dict[str, Any]:
        return {"count": _count(phase), "rate": _rate(phase), "note": phase.note}

    def start(self, phase: Phase) -> None:
        if not self._started:
            self.progress.start()
            self._started = True
        phase._handle = self.progress.add_task(phase.name, total=phase.total, completed=phase.done,
                                               **self._fields(phase))

    def update(self, phase: Phase) -> None:
        self.progress.update(phase._handle, total=phase.total, completed=phase.done, **self._fields(phase))

    def finish(self, phase: Phase) -> None:
        if phase.failed:
            self.progress.remove_task(phase._handle)
            return
        total = phase.total if phase.total is not None else max(phase.done, 1)
        self.progress.update(phase._handle, total=total, completed=max(phase.done, total) if phase.total is None
                             else phase.done, **self._fields(phase))
        self.progress.stop_task(phase._handle)

    def close(self) -> None:
        if self._started:
            self.progress.stop()
            self._started = False


def display_for(console: Any, quiet: bool) -> Display | None:
    """The display a command uses: none with ``--quiet``, bars on a terminal, plain lines elsewhere."""
    if quiet:
        return None
    return RichDisplay(console) if console.is_terminal else LineDisplay(console)
