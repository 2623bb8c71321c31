"""Pipeline files: the stages of a run, in order, with their options, as TOML.

A pipeline file is what makes a mining run reproducible and reviewable: ``hnmine mine --print-config``
writes the effective pipeline of any command line, and ``--config`` runs it again.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from hnmine.errors import InputError
from hnmine.pipeline import CHUNK_SIZE, CHUNK_SIZE_CHECK, Pipeline
from hnmine.stage import Phase, Stage, kinds_in, stage_kinds, stage_options

PHASE_NAMES = {Phase.RETRIEVE: "a retriever", Phase.EXCLUDE: "exclude_positives", Phase.FILTER: "filters",
               Phase.SELECT: "select", Phase.FILL: "fill", Phase.LABEL: "labels"}


def _phase_label(phase: Phase) -> str:
    """``fill (fill_random, synthetic_negatives)``: the registry's stages of the phase, named in the message."""
    if phase in (Phase.FILL, Phase.LABEL):
        return f"{PHASE_NAMES[phase]} ({', '.join(kinds_in(phase))})"
    return PHASE_NAMES[phase]


def score_column_sources() -> dict[str, list[str]]:
    """Each score column a stage adds, and the stage kinds that add it."""
    sources: dict[str, list[str]] = {}
    for kind, cls in stage_kinds().items():
        for column in cls.adds_columns:
            sources.setdefault(column, []).append(kind)
    return sources


def _matches(value: Any, hint: Any) -> bool:
    """Whether a TOML value fits a stage field's annotation (unknown annotations accept anything)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return isinstance(value, hint)
    return True


def _type_name(hint: Any) -> str:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return " or ".join(getattr(a, "__name__", str(a)) for a in args) if args else getattr(hint, "__name__", str(hint))


def stage_from_dict(spec: dict[str, Any], where: str = "pipeline") -> Stage:
    spec = dict(spec)
    kind = spec.pop("kind", None)
    kinds = stage_kinds()
    if kind not in kinds:
        raise InputError(f"{where}: stage kind {kind!r} is unknown (known: {', '.join(kinds)})")
    cls = kinds[kind]
    allowed = {f.name for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")}
    unknown = set(spec) - allowed
    if unknown:
        raise InputError(f"{where}: stage {kind!r} has no option {', '.join(sorted(unknown))} "
                         f"(options: {', '.join(sorted(allowed))})")
    hints = typing.get_type_hints(cls)
    for name, value in spec.items():
        if isinstance(value, dict):
            spec[name] = value = stage_from_dict(value, f"{where}.{name}")
        if not _matches(value, hints.get(name, Any)):
            raise InputError(f"{where}: stage {kind!r} option {name} = {value!r}: expected "
                             f"{_type_name(hints[name])}")
    try:
        return cls(**spec)
    except TypeError as exc:
        raise InputError(f"{where}: stage {kind!r}: {exc}") from None


def check_composition(stages: list[Stage], where: str) -> None:
    """Required stages and a legal order; a pipeline file that breaks them is refused before any work."""
    kinds = [s.kind for s in stages]
    if not stages or stages[0].phase != Phase.RETRIEVE:
        raise InputError(f"{where}: the first stage must be a retriever ({', '.join(kinds_in(Phase.RETRIEVE))}), "
                         f"not {kinds[0] if kinds else 'nothing'!r}")
    for phase in (Phase.RETRIEVE, Phase.EXCLUDE, Phase.SELECT):
        found = [s for s in stages if s.phase == phase]
        if len(found) > 1:
            raise InputError(f"{where}: {len(found)} stages of {PHASE_NAMES[phase]}; a pipeline has exactly one")
    if not any(s.phase == Phase.EXCLUDE for s in stages):
        raise InputError(f"{where}: no exclude_positives stage; without it known positives are written as "
                         "negatives")
    for i, (before, after) in enumerate(itertools.pairwise(stages), start=2):
        if after.phase < before.phase:
            raise InputError(f"{where}: stage #{i} {after.kind!r} comes after {before.kind!r}; stages run in the "
                             f"order {' -> '.join(_phase_label(p) for p in Phase)}")
    for i, stage in enumerate(stages):
        for needed in stage.needs:
            if needed not in kinds[:i]:
                raise InputError(f"{where}: {stage.kind} needs a {needed} stage before it; add a {needed} stage")
    sources = score_column_sources()
    for i, stage in enumerate(stages):
        column = stage.score_column
        adders = sources.get(column) if isinstance(column, str) else None
        if adders and not any(k in adders for k in kinds[:i + 1]):  # a stage may read the column it adds
            raise InputError(f"{where}: stage #{i + 1} {stage.kind!r} reads score_column {column!r}, which only "
                             f"{' or '.join(adders)} adds, and none runs before it")


def load_pipeline(path: str | Path) -> Pipeline:
    path = Path(path)
    if not path.exists():
        raise InputError(f"pipeline file {path}: not found")
    if path.is_dir():
        raise InputError(f"pipeline file {path}: is a directory")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"pipeline file {path}: not valid TOML ({exc})") from None
    unknown = set(doc) - {"chunk_size", "stage"}
    if unknown:
        raise InputError(f"pipeline file {path}: unknown top-level key {', '.join(sorted(unknown))} "
                         "(expected chunk_size and [[stage]] tables)")
    stages = doc.get("stage")
    if not isinstance(stages, list) or not stages or not all(isinstance(s, dict) for s in stages):
        raise InputError(f"pipeline file {path}: needs at least one [[stage]] table")
    chunk_size = doc.get("chunk_size", CHUNK_SIZE)
    CHUNK_SIZE_CHECK(f"pipeline file {path}: chunk_size", chunk_size, int)
    built = [stage_from_dict(s, f"{path} [[stage]] #{i + 1}") for i, s in enumerate(stages)]
    check_composition(built, f"pipeline file {path}")
    return Pipeline(built, chunk_size=chunk_size)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def pipeline_to_toml(pipeline: Pipeline) -> str:
    """Options left at ``None`` are omitted (TOML has no null), which reads back as the same default."""
    lines = ["# hnmine pipeline: stages run in this order on each chunk of queries",
             f"chunk_size = {pipeline.chunk_size}", ""]
    for stage in pipeline.stages:
        options = stage_options(stage)
        lines.append("[[stage]]")
        lines.append(f"kind = {_toml_value(stage.kind)}")
        nested = {k: v for k, v in options.items() if isinstance(v, dict)}
        for key, value in options.items():
            if value is not None and key not in nested:
                lines.append(f"{key} = {_toml_value(value)}")
        for key, sub in nested.items():
            lines.append(f"[stage.{key}]")
            for k, v in sub.items():
                if v is not None:
                    lines.append(f"{k} = {_toml_value(v)}")
        lines.append("")
    return "\n".join(lines)
