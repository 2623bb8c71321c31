"""Denoising with a bi-encoder teacher: a cheaper judge than a cross-encoder.

Domain teams often have no reranker for their data, but do have a stronger (or differently trained)
embedding model than the one that retrieved the candidates. Its cosine similarity is a weaker relevance
signal than a cross-encoder's, yet it costs one encoding per distinct text instead of one forward pass per
(query, passage) pair, and disagreement between two embedding models is exactly where false negatives hide.

Scores land in ``teacher_cosine``, never in ``ce_score``: the two live on different scales, and every
threshold says which score it applies to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pyarrow as pa

from hnmine.candidates import TEACHER_COSINE, CandidateBatch, set_column
from hnmine.data import MiningData
from hnmine.engines.encoder import EncoderSettings
from hnmine.errors import InputError
from hnmine.stage import Phase, Stage
from hnmine.stages.false_negatives import FalseNegativeFilter, TeacherRules


@dataclass
class BiEncoderDenoiser(TeacherRules, EncoderSettings, Stage):
    """Add ``teacher_cosine`` from a SentenceTransformer to candidates and positives, then drop likely positives."""

    kind: ClassVar[str] = "bi_encoder_denoise"
    phase: ClassVar[Phase] = Phase.FILTER
    adds_columns: ClassVar[tuple[str, ...]] = (TEACHER_COSINE,)
    score_column: ClassVar[str] = TEACHER_COSINE  # type: ignore[misc]  # the column it adds is the one it reads
    min_score: float | None = None
    _data: MiningData | None = field(default=None, init=False, repr=False)
    _query_emb: np.ndarray | None = field(default=None, init=False, repr=False)
    _doc_emb: np.ndarray | None = field(default=None, init=False, repr=False)
    _filter: FalseNegativeFilter | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.model:
            raise InputError("bi-encoder denoising needs a model (--scorer bi-encoder:NAME_OR_PATH)")
        if self.max_score is not None and not -1.0 <= self.max_score <= 1.0:
            raise InputError(f"--max-score {self.max_score} applies to the bi-encoder teacher's cosine "
                             "similarity here, which lies in [-1, 1]")
        self._filter = FalseNegativeFilter.for_teacher(self, TEACHER_COSINE)

    def notes(self) -> dict[str, int]:
        return self._filter.notes() if self._filter else {}

    def prepare(self, data: MiningData) -> None:
        """Encode every query and passage once (through the embedding cache), before any chunk."""
        if self._data is data:
            return
        encoder = self.encoder()
        query_prompt, corpus_prompt = self.prompts(encoder)
        self._doc_emb = self.engine.encode(encoder, data.doc_texts, corpus_prompt, "teacher: passages")
        self._query_emb = self.engine.encode(encoder, data.query_texts, query_prompt, "teacher: queries")
        if self._query_emb.shape[1] != self._doc_emb.shape[1]:
            raise InputError(f"bi-encoder {self.model!r}: query and passage embeddings differ in dimension")
        self._data = data

    def score(self, query_idx: np.ndarray, doc_idx: np.ndarray) -> np.ndarray:
        assert self._query_emb is not None and self._doc_emb is not None, "prepare() first"
        if len(query_idx) == 0:
            return np.zeros(0, dtype=np.float64)
        return np.einsum("ij,ij->i", self._query_emb[query_idx], self._doc_emb[doc_idx]).astype(np.float64)

    def apply(self, batch: CandidateBatch) -> CandidateBatch:
        assert self._filter is not None
        self.prepare(batch.data)
        cand, pos = batch.candidates, batch.positives
        cand = set_column(cand, TEACHER_COSINE, self.score(cand.column("query_idx").to_numpy(),
                                                         cand.column("doc_idx").to_numpy()), pa.float32())
        pos = set_column(pos, TEACHER_COSINE, self.score(pos.column("query_idx").to_numpy(),
                                                       pos.column("doc_idx").to_numpy()), pa.float32())
        return self._filter.apply(batch.with_scored(cand, pos))
