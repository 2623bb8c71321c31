"""One engine interface: the job gives its engine to every stage, and stages encode and score pairs through it.

A fake engine that encodes without a model and scores pairs by a known rule, run through the mining job, shows
that the dense retriever and the cross-encoder take their numbers from the engine and nowhere else; the local
engine's own encode / search / score_pairs are checked against known answers and against the libraries.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from hnmine.engines.encoder import Encoder
from hnmine.engines.local import LocalEngine
from hnmine.io.inputs import InputFiles
from hnmine.jobs.mine import MineJob, mine
from hnmine.pipeline import Pipeline
from hnmine.recipe import MineOptions
from hnmine.stages.bm25 import BM25Retriever
from hnmine.stages.cross_encoder import CrossEncoderDenoiser, CrossEncoderScorer
from hnmine.stages.dense import DenseRetriever
from hnmine.stages.hybrid import HybridRetriever


def unit_vector(text: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(16)
    return (v / np.linalg.norm(v)).astype(np.float32)


class ModelFreeEngine(LocalEngine):
    """Embeds a text as a vector drawn from its hash and scores a pair by its passage's length; records calls."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def encode(self, encoder: Encoder, texts: list[str], prompt: str = "", label: str = "encode") -> np.ndarray:
        self.calls.append(("encode", label, len(texts)))
        encoder.truncated = 0
        return np.stack([unit_vector(prompt + t) for t in texts])

    def score_pairs(self, scorer: CrossEncoderScorer, pairs: list[tuple[str, str]]) -> np.ndarray:
        self.calls.append(("score_pairs", len(pairs)))
        return np.array([len(passage) / 1000 for _, passage in pairs])


def test_stages_encode_and_score_pairs_through_the_engine_the_job_is_given(sample_dir: Path, tmp_path: Path,
                                                                            tiny_cross_encoder: str) -> None:
    inputs = InputFiles(queries=sample_dir / "queries.parquet", corpus=sample_dir / "corpus.parquet",
                        qrels=sample_dir / "qrels.parquet")
    options = MineOptions(retriever="dense", cross_encoder=tiny_cross_encoder, num_negatives=3, range_min=0,
                          range_max=10)
    engine = ModelFreeEngine()
    result = mine(MineJob(tmp_path / "out.parquet", options), inputs, engine)
    table = pq.read_table(result.output).to_pylist()
    assert table
    for row in table:  # the retriever's cosine and the cross-encoder's score are the engine's, on every row
        assert row["negative_score"] == pytest.approx(float(unit_vector(row["query"]) @ unit_vector(row["negative"])),
                                                      abs=1e-6)
        assert row["positive_score"] == pytest.approx(float(unit_vector(row["query"]) @ unit_vector(row["positive"])),
                                                      abs=1e-6)
        assert row["negative_ce_score"] == pytest.approx(len(row["negative"]) / 1000, abs=1e-6)
        assert row["positive_ce_score"] == pytest.approx(len(row["positive"]) / 1000, abs=1e-6)
    encoded = [c[1] for c in engine.calls if c[0] == "encode"]
    assert encoded == ["encode corpus", "encode queries"]
    pairs = sum(c[1] for c in engine.calls if c[0] == "score_pairs")
    manifest = json.loads(Path(f"{result.output}.manifest.json").read_text())
    assert pairs > 0 and manifest["cross_encoder_pairs_scored"] == pairs
    assert "engine" not in manifest  # a local-kind engine describes nothing


def test_use_engine_reaches_nested_stages_and_the_cross_encoders_scorer(tiny_cross_encoder: str) -> None:
    dense, bm25 = DenseRetriever(), BM25Retriever()
    denoiser = CrossEncoderDenoiser(model=tiny_cross_encoder)
    assert isinstance(dense.engine, LocalEngine)  # a stage never given an engine runs in this process
    engine = ModelFreeEngine()
    Pipeline([HybridRetriever(bm25=bm25, dense=dense), denoiser]).use_engine(engine)
    assert dense.engine is engine and bm25.engine is engine
    assert denoiser.engine is engine and denoiser.scorer.engine is engine


def test_local_search_is_exact_best_first_with_equal_scores_in_document_order() -> None:
    docs = np.array([[1, 0], [0, 1], [1, 0], [0.6, 0.8]], dtype=np.float32)
    queries = np.array([[1, 0], [0, 1]], dtype=np.float32)
    ids, scores = LocalEngine().search(docs, queries, 3)
    assert ids[0].tolist() == [0, 2, 3] and ids[1].tolist()[:2] == [1, 3]
    np.testing.assert_allclose(scores, [[1, 1, 0.6], [1, 0.8, 0]], atol=1e-6)
    ids, scores = LocalEngine().search(docs, queries, 10)  # no wider than the corpus
    assert ids.tolist() == [[0, 2, 3, 1], [1, 3, 0, 2]]
    np.testing.assert_allclose(scores, [[1, 1, 0.6, 0], [1, 0.8, 0, 0]], atol=1e-6)


def test_local_score_pairs_is_the_cross_encoders_predict(tiny_cross_encoder: str) -> None:
    from sentence_transformers import CrossEncoder

    pairs = [("what is a cat", "a cat is an animal"), ("rain", "water falling from clouds"),
             ("what is a cat", "a cat is an animal")]
    scores = LocalEngine().score_pairs(CrossEncoderScorer(model=tiny_cross_encoder), pairs)
    expected = CrossEncoder(tiny_cross_encoder).predict(pairs, show_progress_bar=False)
    assert scores.dtype == np.float64 and scores.shape == (3,)
    np.testing.assert_allclose(scores, expected, atol=1e-6)
    assert LocalEngine().score_pairs(CrossEncoderScorer(model=tiny_cross_encoder), []).shape == (0,)


def test_local_encode_is_the_encoder_with_its_deduplication(tiny_sentence_transformer: str) -> None:
    texts = ["alpha beta", "gamma", "alpha beta"]
    encoder = Encoder(model=tiny_sentence_transformer, use_cache=False, dtype="float32")
    emb = LocalEngine().encode(encoder, texts)
    assert emb.shape[0] == 3 and np.array_equal(emb[0], emb[2])
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(emb, Encoder(model=tiny_sentence_transformer, use_cache=False,
                                               dtype="float32").encode(texts))
