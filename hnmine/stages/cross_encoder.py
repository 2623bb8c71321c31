"""Cross-encoder scoring and denoising.

A cross-encoder reads query and passage together, so it is far better than the retriever at telling an
unlabelled positive from a hard negative (RocketQA's denoising). Positives are scored by the same model,
so relative thresholds compare like with like.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa

from hnmine.candidates import CE_SCORE, CandidateBatch, set_column
from hnmine.engines.encoder import looks_like_missing_path
from hnmine.errors import MAX_RANK, InputError
from hnmine.stage import Phase, Stage, batch_size_option, option, same_as
from hnmine.stages.false_negatives import FalseNegativeFilter, TeacherRules, false_negative_mask

if TYPE_CHECKING:
    from hnmine.engines.base import Engine


def _check_is_cross_encoder(name: str) -> None:
    """A bi-encoder folder would load as a CrossEncoder with a random head and score noise: refuse it."""
    config = Path(name) / "config.json"
    if not config.exists():
        return
    try:
        doc = json.loads(config.read_text())
    except (OSError, ValueError):
        return
    archs = (doc.get("architectures") or []) if isinstance(doc, dict) else []
    if not isinstance(archs, list):
        archs = [str(archs)]
    if archs and not any("SequenceClassification" in a for a in archs):
        raise InputError(
            f"cross-encoder {name!r}: not a cross-encoder (architectures {', '.join(archs)}; "
            "expected a *ForSequenceClassification model)"
        )


@contextmanager
def _loading_report() -> Iterator[list[str]]:
    """What transformers logs while loading a checkpoint, captured instead of printed.

    transformers logs (does not raise) when a checkpoint lacks weights the architecture needs and fills them
    in at random; for a cross-encoder that is the relevance head, so its scores would be noise.
    """
    messages: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger = logging.getLogger("transformers")
    handlers, level = logger.handlers[:], logger.level
    logger.handlers = [Capture(logging.WARNING)]
    if logger.getEffectiveLevel() > logging.WARNING:
        logger.setLevel(logging.WARNING)
    try:
        yield messages
    finally:
        logger.handlers, logger.level = handlers, level


def _newly_initialised(messages: list[str]) -> list[str]:
    """Parameter names transformers reports as missing from the checkpoint (4.x prose and 5.x table)."""
    names: list[str] = []
    for message in messages:
        text = re.sub(r"\x1b\[[0-9;]*m", "", message)
        if "newly initialized" not in text and "newly initialised" not in text:
            continue
        names += re.findall(r"^\s*([\w.]+)\s*\|\s*MISSING", text, flags=re.M)
        for listed in re.findall(r"newly initialized: \[([^\]]*)\]", text):
            names += [n.strip(" '\"") for n in listed.split(",") if n.strip()]
        names = names or ["(unnamed)"]
    return names


@lru_cache(maxsize=2)
def load_cross_encoder(name: str, device: str | None = None, max_length: int | None = None) -> Any:
    from sentence_transformers import CrossEncoder

    if looks_like_missing_path(name):
        raise InputError(f"cross-encoder {name!r}: path not found")
    name = str(Path(name).expanduser()) if name.startswith("~") else name
    _check_is_cross_encoder(name)
    try:
        with _loading_report() as messages:
            model = CrossEncoder(name, device=device, max_length=max_length)
    except (OSError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cross-encoder {name!r}: could not be loaded ({first})") from None
    missing = _newly_initialised(messages)
    if missing:
        shown = ", ".join(missing[:4]) + (f", ... (+{len(missing) - 4})" if len(missing) > 4 else "")
        raise InputError(f"cross-encoder {name!r}: the checkpoint lacks weights the model needs ({shown}), which "
                         "transformers would initialise at random; it is not a trained cross-encoder")
    labels = getattr(model, "num_labels", 1)
    if labels != 1:
        raise InputError(f"cross-encoder {name!r}: has {labels} output labels, expected a 1-label relevance model")
    return model


def predict(model: Any, pairs: list[tuple[str, str]], batch_size: int) -> np.ndarray:
    """A loaded cross-encoder's score of each (query, passage) pair, in order, as float64 (wherever it runs)."""
    if not pairs:
        return np.zeros(0, dtype=np.float64)
    scores = model.predict(pairs, batch_size=batch_size,
                           show_progress_bar=False)  # the run's display counts queries, not pairs
    return np.asarray(scores, dtype=np.float64).reshape(-1)


@dataclass
class CrossEncoderScorer(Stage):
    """Adds ``ce_score`` to candidates and positives, each distinct (query, doc) pair scored once."""

    kind: ClassVar[str] = "cross_encoder_score"
    summary_label: ClassVar[str] = "scored by cross-encoder"
    phase: ClassVar[Phase] = Phase.FILTER
    adds_columns: ClassVar[tuple[str, ...]] = (CE_SCORE,)
    model: str = ""
    batch_size: int = batch_size_option("--ce-batch-size")
    device: str | None = None
    max_length: int | None = option(None, flag="--ce-max-length", minimum=1, maximum=MAX_RANK)
    show_progress: bool = True
    pairs_scored: int = field(default=0, init=False)

    def score(self, batch: CandidateBatch, query_idx: np.ndarray, doc_idx: np.ndarray) -> np.ndarray:
        if len(query_idx) == 0:
            return np.zeros(0, dtype=np.float64)
        if not self.model:
            raise InputError("cross-encoder scoring needs a model (--cross-encoder NAME_OR_PATH)")
        pairs = np.stack([query_idx.astype(np.int64), doc_idx.astype(np.int64)], axis=1)
        uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
        data = batch.data
        inputs = [(data.query_texts[q], data.doc_texts[d]) for q, d in uniq.tolist()]
        scores = self.engine.score_pairs(self, inputs)  # this process, or an engine's actor pool
        self.pairs_scored += len(inputs)
        return np.asarray(scores, dtype=np.float64).reshape(-1)[inverse.reshape(-1)]

    def apply(self, batch: CandidateBatch) -> CandidateBatch:
        cand, pos = batch.candidates, batch.positives
        nc = cand.num_rows
        q = np.concatenate([cand.column("query_idx").to_numpy(), pos.column("query_idx").to_numpy()])
        d = np.concatenate([cand.column("doc_idx").to_numpy(), pos.column("doc_idx").to_numpy()])
        scores = self.score(batch, q, d)
        return batch.with_scored(set_column(cand, CE_SCORE, scores[:nc], pa.float32()),
                                 set_column(pos, CE_SCORE, scores[nc:], pa.float32()))


@dataclass
class CrossEncoderDenoiser(TeacherRules, Stage):
    """Score with a cross-encoder, then drop likely false negatives by thresholds on ``ce_score``."""

    kind: ClassVar[str] = "cross_encoder_denoise"
    summary_label: ClassVar[str] = "dropped by cross-encoder denoising"
    phase: ClassVar[Phase] = Phase.FILTER
    adds_columns: ClassVar[tuple[str, ...]] = (CE_SCORE,)
    score_column: ClassVar[str] = CE_SCORE  # type: ignore[misc]  # the column it adds is the one it reads
    batch_size: int = same_as(CrossEncoderScorer, "batch_size", flag="--ce-batch-size")
    device: str | None = None
    max_length: int | None = same_as(CrossEncoderScorer, "max_length", flag="--ce-max-length")
    needed: int | None = None
    min_score: float | None = None
    _scorer: CrossEncoderScorer | None = field(default=None, init=False, repr=False)
    _filter: FalseNegativeFilter | None = field(default=None, init=False, repr=False)
    _unscored: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.model and looks_like_missing_path(self.model):  # before any data is read or encoded
            raise InputError(f"cross-encoder {self.model!r}: path not found")
        if self.model:
            _check_is_cross_encoder(str(Path(self.model).expanduser()))
        self._scorer = CrossEncoderScorer(self.model, self.batch_size, self.device, self.max_length)
        self._filter = FalseNegativeFilter.for_teacher(self, CE_SCORE)

    @property
    def scorer(self) -> CrossEncoderScorer:
        """The scorer of the pairs (it scores them on this stage's engine)."""
        assert self._scorer is not None
        return self._scorer

    def use_backend(self, engine: Engine) -> None:
        super().use_backend(engine)
        self.scorer.use_backend(engine)

    @property
    def pairs_scored(self) -> int:
        return self._scorer.pairs_scored if self._scorer else 0

    def notes(self) -> dict[str, int]:
        notes = {"cross-encoder pair evaluations": self.pairs_scored, **(self._filter.notes() if self._filter else {})}
        if self.needed is not None and not (self._filter and self._filter.per_query):
            notes["candidates left unscored (ranked below the last needed survivor)"] = self._unscored
        return notes

    def prepare(self, data: object) -> None:
        """Load the model before any chunk, and refuse a threshold the model's scores can never reach."""
        model = load_cross_encoder(self.model, self.device, self.max_length)
        import torch

        if isinstance(getattr(model, "activation_fn", None), torch.nn.Sigmoid) and self.max_score is not None \
                and not 0.0 <= self.max_score <= 1.0:
            raise InputError(f"--max-score {self.max_score}: this cross-encoder's scores are sigmoid "
                             "probabilities in [0, 1], so the threshold would never apply")

    def apply(self, batch: CandidateBatch) -> CandidateBatch:
        assert self._scorer is not None and self._filter is not None
        if self.needed is None or self._filter.per_query:  # per-query rules read every candidate's score
            return self._filter.apply(self._scorer.apply(batch))
        return self._apply_in_rank_order(batch, self.needed)

    def _apply_in_rank_order(self, batch: CandidateBatch, needed: int) -> CandidateBatch:
        """Score each query's candidates best rank first, only until ``needed`` of them survive.

        When the next stage takes the top ``needed`` survivors by rank, candidates ranked below the
        ``needed``-th survivor can never be emitted, so scoring them is wasted: the result is identical to
        scoring everything, at a fraction of the cross-encoder pair evaluations (the expensive part).
        """
        assert self._scorer is not None
        cand, pos = batch.candidates, batch.positives
        pos_q, pos_d = pos.column("query_idx").to_numpy(), pos.column("doc_idx").to_numpy()
        pos_scores = self._scorer.score(batch, pos_q, pos_d)
        lowest = np.full(batch.data.num_queries, np.nan)
        np.fmin.at(lowest, pos_q, pos_scores)
        q, d = cand.column("query_idx").to_numpy(), cand.column("doc_idx").to_numpy()
        order = np.lexsort((cand.column("rank").to_numpy(), q))
        bounds = np.r_[0, np.flatnonzero(np.diff(q[order])) + 1, len(order)]
        next_row, ends = bounds[:-1].copy(), bounds[1:]
        survivors = np.zeros(len(next_row), dtype=np.int64)
        ce = np.full(len(q), np.nan)
        keep = np.zeros(len(q), dtype=bool)
        while True:
            take = []
            for g in range(len(next_row)):
                want = needed - survivors[g]
                if want > 0 and next_row[g] < ends[g]:
                    rows = order[next_row[g]:min(next_row[g] + want, ends[g])]
                    next_row[g] += len(rows)
                    take.append((g, rows))
            if not take:
                break
            rows = np.concatenate([r for _, r in take])
            scores = self._scorer.score(batch, q[rows], d[rows])
            ce[rows] = scores
            kept = ~false_negative_mask(scores, lowest[q[rows]], self.max_score, self.margin, self.max_ratio,
                                        min_score=self.min_score)
            keep[rows] = kept
            groups = np.concatenate([np.full(len(r), g) for g, r in take])
            survivors += np.bincount(groups, weights=kept, minlength=len(survivors)).astype(np.int64)
        self._unscored += int(np.isnan(ce).sum())
        positives = set_column(pos, CE_SCORE, pos_scores, pa.float32())
        candidates = set_column(cand, CE_SCORE, ce, pa.float32()).filter(pa.array(keep))
        return batch.with_scored(candidates, positives)
