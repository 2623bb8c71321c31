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

from hnmine.errors import InputError, check_int
from hnmine.pipeline import Pipeline
from hnmine.stage import Stage, stage_options
from hnmine.stages.ambiguous import AmbiguousZoneFilter
from hnmine.stages.bi_encoder_denoise import BiEncoderDenoiser
from hnmine.stages.bm25 import BM25Retriever
from hnmine.stages.clusters import QueryClusters
from hnmine.stages.cross_encoder import CrossEncoderDenoiser, CrossEncoderScorer
from hnmine.stages.dense import DenseRetriever
from hnmine.stages.exclusion import PositiveExcluder
from hnmine.stages.false_negatives import FalseNegativeFilter
from hnmine.stages.fill import RandomFill
from hnmine.stages.hybrid import HybridRetriever
from hnmine.stages.positives_cap import PositivesPerQuery
from hnmine.stages.selection import NegativeSelector
from hnmine.stages.siblings import SiblingFilter
from hnmine.stages.synthetic import SyntheticNegatives
from hnmine.stages.tiers import DifficultyTiers
from hnmine.stages.triplet_margin import TripletMarginFilter
from hnmine.stages.window import RankWindow

STAGE_KINDS: dict[str, type] = {
    cls.kind: cls
    for cls in (BM25Retriever, DenseRetriever, HybridRetriever, PositiveExcluder, RankWindow,
                CrossEncoderScorer, CrossEncoderDenoiser, BiEncoderDenoiser, FalseNegativeFilter, AmbiguousZoneFilter,
                NegativeSelector, TripletMarginFilter, DifficultyTiers, RandomFill, PositivesPerQuery, QueryClusters,
                SiblingFilter, SyntheticNegatives)
}


# Where each stage may stand. A pipeline runs retrieve -> exclude positives -> filters -> select -> fill ->
# labels; anything else either emits known positives as negatives (no exclusion), has nothing to work on (no
# retriever first) or undoes an earlier step (a filter after selection leaves queries short for no reason).
PHASES: dict[str, int] = {
    "bm25": 0, "dense": 0, "hybrid": 0,
    "exclude_positives": 1,
    "rank_window": 2, "cross_encoder_score": 2, "cross_encoder_denoise": 2, "bi_encoder_denoise": 2,
    "false_negative_filter": 2, "ambiguous_zone": 2, "triplet_margin": 2, "positives_per_query": 2,
    "sibling_filter": 2,
    # synthetic_negatives mixes generated rows into the selected ones, so it stands where fill does
    "select": 3, "fill_random": 4, "synthetic_negatives": 4, "tiers": 5, "query_clusters": 5,
}
PHASE_NAMES = ("a retriever", "exclude_positives", "filters", "select", "fill (fill_random, synthetic_negatives)",
               "labels (tiers, clusters)")
# Score columns beyond the retriever's ``score``, and the stages that add them.
SCORE_COLUMN_SOURCES = {"ce_score": ("cross_encoder_score", "cross_encoder_denoise"),
                        "teacher_cosine": ("bi_encoder_denoise",), "bm25_score": ("hybrid",),
                        "rrf_score": ("hybrid",)}


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
    if kind not in STAGE_KINDS:
        raise InputError(f"{where}: stage kind {kind!r} is unknown (known: {', '.join(STAGE_KINDS)})")
    cls = STAGE_KINDS[kind]
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
    if not kinds or PHASES.get(kinds[0]) != 0:
        raise InputError(f"{where}: the first stage must be a retriever (bm25, dense or hybrid), not "
                         f"{kinds[0] if kinds else 'nothing'!r}")
    for name, wanted in (("a retriever", 0), ("exclude_positives", 1), ("select", 3)):
        found = [k for k in kinds if PHASES.get(k) == wanted]
        if len(found) > 1:
            raise InputError(f"{where}: {len(found)} stages of {name}; a pipeline has exactly one")
    if "exclude_positives" not in kinds:
        raise InputError(f"{where}: no exclude_positives stage; without it known positives are written as "
                         "negatives")
    for i, (before, after) in enumerate(itertools.pairwise(kinds), start=2):
        if PHASES.get(after, 2) < PHASES.get(before, 2):
            raise InputError(f"{where}: stage #{i} {after!r} comes after {before!r}; stages run in the order "
                             f"{' -> '.join(PHASE_NAMES)}")
    if "fill_random" in kinds and "select" not in kinds:
        raise InputError(f"{where}: fill_random tops queries up to the select stage's count; add a select stage")
    for i, stage in enumerate(stages):
        column = getattr(stage, "score_column", None)
        sources = SCORE_COLUMN_SOURCES.get(column) if isinstance(column, str) else None
        if sources and not any(k in sources for k in kinds[:i + 1]):  # a stage may read the column it adds
            raise InputError(f"{where}: stage #{i + 1} {stage.kind!r} reads score_column {column!r}, which only "
                             f"{' or '.join(sources)} adds, and none runs before it")


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
    chunk_size = doc.get("chunk_size", 256)
    check_int(f"pipeline file {path}: chunk_size", chunk_size, 1, 1 << 24)
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
