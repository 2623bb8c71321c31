"""Pipeline files: the stages of a run, in order, with their options, as TOML.

A pipeline file is what makes a mining run reproducible and reviewable: ``hnmine mine --print-config``
writes the effective pipeline of any command line, and ``--config`` runs it again.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path
from typing import Any

from hnmine.ambiguous import AmbiguousZoneFilter
from hnmine.bi_encoder_denoise import BiEncoderDenoiser
from hnmine.bm25 import BM25Retriever
from hnmine.clusters import QueryClusters
from hnmine.cross_encoder import CrossEncoderDenoiser, CrossEncoderScorer
from hnmine.dense import DenseRetriever
from hnmine.errors import InputError
from hnmine.exclusion import PositiveExcluder
from hnmine.false_negatives import FalseNegativeFilter
from hnmine.fill import RandomFill
from hnmine.hybrid import HybridRetriever
from hnmine.pipeline import Pipeline
from hnmine.positives_cap import PositivesPerQuery
from hnmine.selection import NegativeSelector
from hnmine.siblings import SiblingFilter
from hnmine.stage import Stage, stage_options
from hnmine.stages.synthetic import SyntheticNegatives
from hnmine.tiers import DifficultyTiers
from hnmine.triplet_margin import TripletMarginFilter
from hnmine.window import RankWindow

STAGE_KINDS: dict[str, type] = {
    cls.kind: cls
    for cls in (BM25Retriever, DenseRetriever, HybridRetriever, PositiveExcluder, RankWindow,
                CrossEncoderScorer, CrossEncoderDenoiser, BiEncoderDenoiser, FalseNegativeFilter, AmbiguousZoneFilter,
                NegativeSelector, TripletMarginFilter, DifficultyTiers, RandomFill, PositivesPerQuery, QueryClusters,
                SiblingFilter, SyntheticNegatives)
}


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
    for name, value in spec.items():
        if isinstance(value, dict):
            spec[name] = stage_from_dict(value, f"{where}.{name}")
    try:
        return cls(**spec)
    except TypeError as exc:
        raise InputError(f"{where}: stage {kind!r}: {exc}") from None


def load_pipeline(path: str | Path) -> Pipeline:
    path = Path(path)
    if not path.exists():
        raise InputError(f"pipeline file {path}: not found")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"pipeline file {path}: not valid TOML ({exc})") from None
    stages = doc.get("stage")
    if not isinstance(stages, list) or not stages:
        raise InputError(f"pipeline file {path}: needs at least one [[stage]] table")
    built = [stage_from_dict(s, f"{path} [[stage]] #{i + 1}") for i, s in enumerate(stages)]
    return Pipeline(built, chunk_size=int(doc.get("chunk_size", 256)))


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
