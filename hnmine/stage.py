"""What a stage is, the one registry of stages, and how a stage declares its options.

A stage is a plain dataclass that subclasses :class:`Stage` and implements one method, ``apply(batch) ->
batch``. Everything else a stage may offer (a whole-corpus ``prepare``, ``notes`` for the run summary, the
score columns it adds or reads, its place in the pipeline order) is named here, with a default, so no caller
has to ask whether a stage has it.

Subclassing registers the class under its ``kind``: that is the name pipeline files use, and the registry
(:func:`stage_kinds`) is filled by the stage classes themselves, from the modules of ``hnmine/stages/``. The
dataclass fields are the stage's options, each declared once with :func:`option` (its default and its valid
range); ``__post_init__`` checks them, pipeline files are read and written from them, and the CLI's defaults
are taken from them. Adding a strategy is one new file in ``hnmine/stages/``.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import importlib
import pkgutil
import types
import typing
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from hnmine.errors import MAX_RANK, MAX_SEED, InputError, check_float, check_int

if TYPE_CHECKING:
    from hnmine.candidates import CandidateBatch
    from hnmine.data import MiningData
    from hnmine.engines.base import Engine


class Phase(enum.IntEnum):
    """Where a stage may stand. A pipeline runs retrieve -> exclude positives -> filters -> select -> fill ->
    labels; any other order either emits known positives as negatives (no exclusion), has nothing to work on (no
    retriever first) or undoes an earlier step (a filter after selection leaves queries short for no reason)."""

    RETRIEVE = 0
    EXCLUDE = 1
    FILTER = 2
    SELECT = 3
    FILL = 4
    LABEL = 5


@dataclasses.dataclass(frozen=True)
class Check:
    """An option's valid values: a numeric range (integers refuse floats and booleans), or a set of choices."""

    flag: str | None = None  # how messages name it; default: the field name as a flag (--range-max)
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    choices: tuple[str, ...] | None = None

    def __call__(self, label: str, value: Any, hint: Any) -> None:
        if value is None and (hint is Any or _allows_none(hint)):
            return
        if self.choices is not None:
            if value not in self.choices:
                raise InputError(f"{label} {value!r}: expected one of {', '.join(self.choices)}")
        elif _number_kind(hint) is int:
            check_int(label, value, -(1 << 63) if self.minimum is None else int(self.minimum),
                      None if self.maximum is None else int(self.maximum))
        elif _number_kind(hint) is float:  # a float with no bounds must still be finite
            check_float(label, value, self.minimum, self.maximum, self.above)


def option(default: Any = dataclasses.MISSING, *, flag: str | None = None, minimum: float | None = None,
           maximum: float | None = None, above: float | None = None, choices: Sequence[str] | None = None,
           default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with its default and its valid values, declared once; ``check_options`` enforces it."""
    check = Check(flag, minimum, maximum, above, tuple(choices) if choices is not None else None)
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"check": check})


def same_as(cls: type, name: str, *, default: Any = dataclasses.MISSING, **overrides: Any) -> Any:
    """A field that mirrors another dataclass's option: the same default and the same valid values.

    Flat option sets (``MineOptions``) use it, so a default or a range is never written a second time; the
    message names this field (``--bm25-k1``), not the stage's (``k1``). ``default`` is for an option whose
    recipe default differs on purpose from the stage's (``--range-min 10`` where a bare window starts at 0).
    """
    source = {f.name: f for f in dataclasses.fields(cls)}[name]
    check = source.metadata.get("check")
    if check is not None or overrides:  # an option its stage checks in its own way stays unchecked here
        check = dataclasses.replace(check or Check(), **{"flag": None, **overrides})
    metadata = {"check": check} if check is not None else {}
    if default is not dataclasses.MISSING:
        return dataclasses.field(default=default, metadata=metadata)
    return dataclasses.field(default=source.default, default_factory=source.default_factory, metadata=metadata)


# Options several stages share, each declared here once: the same default and range wherever it appears.
def top_k_option() -> Any:
    return option(100, flag="--top-k", minimum=1, maximum=MAX_RANK)


def seed_option() -> Any:
    return option(0, flag="--seed", minimum=0, maximum=MAX_SEED)


def num_negatives_option() -> Any:
    return option(5, flag="--num-negatives", minimum=1, maximum=1_000_000)


def batch_size_option(flag: str) -> Any:
    return option(32, flag=flag, minimum=1, maximum=1_000_000)


def check_options(obj: Any) -> None:
    """Every declared range and choice of a dataclass, in field order; the first violation is one InputError."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        check = f.metadata.get("check")
        if check is not None:
            hint = hints.get(f.name, Any if f.default in (None, dataclasses.MISSING) else type(f.default))
            check(check.flag or "--" + f.name.replace("_", "-"), getattr(obj, f.name), hint)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """Field annotations, resolved; {} where one names a type only a type checker imports (checked by default)."""
    try:
        return typing.get_type_hints(cls)
    except NameError:
        return {}


def _allows_none(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)


def _number_kind(hint: Any) -> type | None:
    """int, float (an int is accepted where a float is), or None for options that are not numbers."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    return float if float in args else int if int in args else None


class Stage:
    """The base of every stage: what a stage may offer, each with the default a plain stage needs.

    Subclasses are dataclasses with a ``kind`` (their name in pipeline files) and a ``phase`` (their place in the
    pipeline order); defining one registers it. ``register=False`` keeps a helper stage out of pipeline files
    (the hidden-positive probes).
    """

    kind: ClassVar[str]
    phase: ClassVar[Phase]
    # Score columns this stage adds to candidates and positives (see ``hnmine.candidates``).
    adds_columns: ClassVar[tuple[str, ...]] = ()
    # How the run summary names the rows this stage drops (a retriever: the rows it found); default: its kind.
    summary_label: ClassVar[str] = ""
    # Stage kinds that must run before this one (fill_random tops queries up to the select stage's count).
    needs: ClassVar[tuple[str, ...]] = ()
    # The score column this stage reads; None: the best one present (ce_score, else the retriever's score).
    score_column: str | None = None
    # Model pair evaluations, for stages that run a pair scorer (the run manifest reports them); None: none.
    pairs_scored: int | None = None

    def __init_subclass__(cls, register: bool = True, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if register and "kind" in cls.__dict__:
            if not isinstance(getattr(cls, "phase", None), Phase):
                raise TypeError(f"stage {cls.__qualname__} (kind {cls.kind!r}) needs a phase: ClassVar[Phase]")
            other = _KINDS.get(cls.kind)
            if other is not None and (other.__module__, other.__qualname__) != (cls.__module__, cls.__qualname__):
                raise TypeError(f"stage kind {cls.kind!r} is defined twice: {other.__qualname__} and "
                                f"{cls.__qualname__}")
            _KINDS[cls.kind] = cls  # a module imported again replaces its own class

    def __post_init__(self) -> None:
        check_options(self)

    def apply(self, batch: CandidateBatch) -> CandidateBatch:
        raise NotImplementedError(f"stage {type(self).__name__} does not implement apply()")

    def check_data(self, data: MiningData) -> None:
        """Refuse, before any encoding or index, what this stage cannot use with this data (a file of its own
        naming documents the corpus lacks); called by the jobs once the data is read. Default: nothing to check."""

    def prepare(self, data: MiningData) -> None:
        """Whole-corpus setup (an index, corpus embeddings), done once before any chunk; default: none."""

    def use_backend(self, engine: Engine) -> None:
        """The engine this stage's heavy work runs on (``hnmine.engines.base.Engine``: encode distinct texts,
        search, score pairs), given by the job before any work; the stages this one holds get it too.

        A stage that encodes or scores pairs does it through :attr:`engine`, so the same stage runs in this
        process or on a Ray cluster without asking which; a stage that does neither just ignores it.
        """
        self.__dict__["_engine"] = engine  # not a dataclass field: no option, not compared, not in pipeline files
        for part in self.parts():
            part.use_backend(engine)

    @property
    def engine(self) -> Engine:
        """The engine given by :meth:`use_backend`; the local engine (this process) when none was."""
        engine = self.__dict__.get("_engine")
        if engine is None:
            from hnmine.engines.local import LocalEngine

            engine = self.__dict__["_engine"] = LocalEngine()
        return engine

    def notes(self) -> dict[str, Any]:
        """Counts that are not rows (truncated texts, pairs scored), for the summary and the manifest."""
        return {}

    def take_chunk_counters(self) -> dict[str, int]:
        """Counts of the chunk just run, kept in its checkpoint so a resumed run still reports them."""
        return {}

    def parts(self) -> list[Stage]:
        """The stages this one holds as options (a hybrid's bm25 and dense), shared rather than copied."""
        return [v for f in dataclasses.fields(self)  # type: ignore[arg-type]
                if f.init and isinstance(v := getattr(self, f.name), Stage)]


_KINDS: dict[str, type[Stage]] = {}
_STAGE_PACKAGE = "hnmine.stages"


def stage_kinds() -> dict[str, type[Stage]]:
    """Every stage class by its ``kind``: the modules of ``hnmine/stages/`` are imported, and register themselves."""
    package = importlib.import_module(_STAGE_PACKAGE)
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        importlib.import_module(f"{_STAGE_PACKAGE}.{info.name}")
    return dict(sorted(_KINDS.items()))  # by kind, whatever order the modules were imported in


def score_columns() -> tuple[str, ...]:
    """Every score column a stage adds, in the order outputs write them: the built-in ones first (a fixed order,
    so output bytes never depend on which modules exist), then any another registered stage declares."""
    from hnmine.candidates import ADDED_SCORE_COLUMNS

    extra = [c for cls in stage_kinds().values() for c in cls.adds_columns if c not in ADDED_SCORE_COLUMNS]
    return (*ADDED_SCORE_COLUMNS, *dict.fromkeys(extra))


def kinds_in(phase: Phase) -> list[str]:
    return [kind for kind, cls in stage_kinds().items() if cls.phase == phase]


def stage_options(stage: Any) -> dict[str, Any]:
    """A stage's options as plain values, nested stages included, for pipeline files and run manifests."""
    options: dict[str, Any] = {}
    for f in dataclasses.fields(stage):
        if not f.init or f.name.startswith("_") or f.metadata.get("config") is False:
            continue
        value = getattr(stage, f.name)
        if dataclasses.is_dataclass(value):
            value = {"kind": value.kind, **stage_options(value)}
        options[f.name] = value
    return options
