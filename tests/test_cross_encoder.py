"""Cross-encoder denoising through the real CrossEncoder loading path (a tiny local model)."""

import numpy as np

from hnmine import (
    BM25Retriever,
    CrossEncoderDenoiser,
    NegativeSelector,
    Pipeline,
    PositiveExcluder,
    RankWindow,
    load_qrels_inputs,
)


def run(sample_dir, model, needed, max_score):
    data = load_qrels_inputs(sample_dir / "queries.parquet", sample_dir / "corpus.parquet",
                             sample_dir / "qrels.parquet")
    denoiser = CrossEncoderDenoiser(model=model, max_score=max_score, needed=needed)
    pipeline = Pipeline([BM25Retriever(top_k=40), PositiveExcluder(), RankWindow(0, 30), denoiser,
                         NegativeSelector(num_negatives=3)])
    batches = list(pipeline.run(data))
    pairs = sorted((q, d) for b in batches for q, d in zip(b.candidates.column("query_idx").to_pylist(),
                                                           b.candidates.column("doc_idx").to_pylist()))
    scores = np.concatenate([b.candidates.column("ce_score").to_numpy() for b in batches])
    return pairs, scores, denoiser.pairs_scored


def test_rank_order_scoring_selects_exactly_what_full_scoring_selects_with_fewer_evaluations(
        sample_dir, tiny_cross_encoder):
    _, all_scores, _ = run(sample_dir, tiny_cross_encoder, needed=None, max_score=1.0)
    threshold = float(np.median(all_scores))  # drops about half: later ranks must be scored too
    full_pairs, full_scores, full_evals = run(sample_dir, tiny_cross_encoder, needed=None, max_score=threshold)
    lazy_pairs, lazy_scores, lazy_evals = run(sample_dir, tiny_cross_encoder, needed=3, max_score=threshold)
    assert lazy_pairs == full_pairs and full_pairs
    assert np.allclose(np.sort(lazy_scores), np.sort(full_scores), atol=1e-6)
    assert lazy_evals < full_evals


def test_rank_order_scoring_stops_at_the_needed_survivors(sample_dir, tiny_cross_encoder):
    data = load_qrels_inputs(sample_dir / "queries.parquet", sample_dir / "corpus.parquet",
                             sample_dir / "qrels.parquet")
    _, _, full_evals = run(sample_dir, tiny_cross_encoder, needed=None, max_score=1.0)
    _, _, lazy_evals = run(sample_dir, tiny_cross_encoder, needed=3, max_score=1.0)  # nothing is dropped
    assert lazy_evals == int(data.positive_counts.sum()) + 3 * data.num_queries
    assert full_evals == int(data.positive_counts.sum()) + 30 * data.num_queries


def test_per_query_rule_scores_every_candidate_even_when_only_a_few_are_needed(sample_dir, tiny_cross_encoder):
    """max_z reads the query's whole candidate list, so rank-order (lazy) scoring must not cut it short."""
    data = load_qrels_inputs(sample_dir / "queries.parquet", sample_dir / "corpus.parquet",
                             sample_dir / "qrels.parquet")
    denoiser = CrossEncoderDenoiser(model=tiny_cross_encoder, max_z=1.0, needed=3)
    pipeline = Pipeline([BM25Retriever(top_k=40), PositiveExcluder(), RankWindow(0, 30), denoiser])
    kept = sum(b.num_candidates for b in pipeline.run(data))
    assert denoiser.pairs_scored == int(data.positive_counts.sum()) + 30 * data.num_queries
    assert 0 < kept < 30 * data.num_queries
