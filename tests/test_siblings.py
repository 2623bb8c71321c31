"""SiblingFilter: candidates close to the known positive (per-query percentile) or in BM25's top list are dropped."""

from __future__ import annotations

import numpy as np
import pytest

from hnmine.candidates import CandidateBatch
from hnmine.config import load_pipeline, pipeline_to_toml
from hnmine.errors import InputError
from hnmine.recipe import MineOptions, build_pipeline
from hnmine.stages.dense import DenseRetriever
from hnmine.stages.exclusion import PositiveExcluder
from hnmine.stages.siblings import SiblingFilter, nearest_positive_cosine, sibling_mask
from tests.conftest import make_data


def test_mask_drops_at_or_above_each_querys_own_percentile():
    q = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    rank = np.array([1, 2, 3, 4, 5, 1, 2, 3])
    cos = np.array([0.1, 0.2, 0.3, 0.4, 0.9, -0.5, -0.4, -0.3])
    # query 0: 60th percentile of [.1 .2 .3 .4 .9] = 0.34; query 1: of [-.5 -.4 -.3] = -0.38 (sign-safe)
    assert sibling_mask(q, rank, cos, 60, pool=5).tolist() == [False, False, False, True, True, False, False, True]
    # the pool is the query's top ranks only: 60th percentile of [.1 .2 .3] = 0.22
    assert sibling_mask(q, rank, cos, 60, pool=3)[:5].tolist() == [False, False, True, True, True]
    # a value exactly at the threshold is dropped (100th percentile = the pool's maximum)
    assert sibling_mask(q, rank, cos, 100, pool=5)[:5].tolist() == [False, False, False, False, True]


def test_mask_ors_lexical_hits_and_never_drops_unscored_candidates():
    q = np.array([0, 0, 0])
    rank = np.array([1, 2, 3])
    cos = np.array([0.1, np.nan, 0.9])
    lexical = np.array([True, False, False])
    assert sibling_mask(q, rank, cos, 50, pool=3, lexical_hit=lexical).tolist() == [True, False, True]
    assert sibling_mask(q, rank, cos, None, pool=3, lexical_hit=lexical).tolist() == [True, False, False]


def test_nearest_positive_cosine_takes_the_closest_positive_of_the_candidates_own_query():
    emb = np.eye(4, dtype=np.float32)
    emb[3] = [0.6, 0.8, 0, 0]
    # query 0 has positives 0 and 1; query 1 has positive 2; doc 3 is a candidate of both
    out = nearest_positive_cosine(emb, np.array([0, 1, 2]), np.array([3, 3, 3]), np.array([0, 0, 1]),
                                  np.array([0, 1, 2]))
    assert np.allclose(out[:2], [0.8, 0.0]) and np.isnan(out[2])


def test_options_are_checked():
    for kwargs, flag in (({"percentile": 0}, "--sibling-percentile"), ({"percentile": 101}, "--sibling-percentile"),
                         ({"pool": 0}, "--sibling-pool"), ({"lexical_top": 0}, "--lexical-top")):
        with pytest.raises(InputError, match=flag):
            SiblingFilter(**kwargs)


@pytest.fixture()
def siblings_data(tmp_path):
    """One query; doc 0 is its positive. Doc 1 is a sibling of the positive (cosine 0.99 to it) that the
    query ranks first; doc 2 ranks second but points elsewhere; docs 3-5 are weaker, unrelated candidates."""
    queries = {"q": "vitamin d and bone health"}
    docs = {"p": "vitamin d supplements and fractures", "sib": "calcium intake and hip fracture",
            "far": "sleep apnea", "x3": "coffee", "x4": "tea", "x5": "sugar"}
    data = make_data(queries, docs, {"q": ["p"]})
    doc_emb = np.array([[1, 0, 0], [0.99, 0.14, 0], [0.6, -0.1, 0.79], [0.3, -0.9, 0.3], [0.2, -0.9, 0.4],
                        [0.1, -0.9, 0.42]], np.float32)
    query_emb = np.array([[0.9, 0.1, 0.42]], np.float32)
    np.save(tmp_path / "docs.npy", doc_emb)
    np.save(tmp_path / "queries.npy", query_emb)
    dense = DenseRetriever(top_k=6, corpus_embeddings=str(tmp_path / "docs.npy"),
                           query_embeddings=str(tmp_path / "queries.npy"))
    return data, dense


def test_stage_drops_the_sibling_but_keeps_a_hard_unrelated_candidate(siblings_data):
    data, dense = siblings_data
    batch = PositiveExcluder().apply(dense.apply(CandidateBatch.start(data, np.arange(1))))
    order = [data.doc_ids[i] for i in batch.candidates.column("doc_idx").to_pylist()]
    assert order[:2] == ["sib", "far"]  # the sibling is the dense retriever's hardest candidate
    out = SiblingFilter(percentile=80, pool=5, lexical_top=None, dense=dense).apply(batch)
    kept = [data.doc_ids[i] for i in out.candidates.column("doc_idx").to_pylist()]
    assert "sib" not in kept and "far" in kept
    assert out.candidates.column("rank").to_pylist()[0] == 2  # ranks stay the retriever's


def test_lexical_agreement_drops_what_bm25_also_ranks_top(siblings_data):
    data, dense = siblings_data
    batch = PositiveExcluder().apply(dense.apply(CandidateBatch.start(data, np.arange(1))))
    # BM25's top 2 for the query: the positive (shares "vitamin", "and") and the sibling (shares "and" only)
    out = SiblingFilter(percentile=None, lexical_top=2, dense=dense).apply(batch)
    kept = {data.doc_ids[i] for i in out.candidates.column("doc_idx").to_pylist()}
    assert kept == {"far", "x3", "x4", "x5"}


def test_recipe_places_the_filter_before_the_window_and_round_trips_through_toml(siblings_data, tmp_path):
    data, dense = siblings_data
    opts = MineOptions(num_negatives=2, range_min=0, range_max=5, dense=dense, sibling_percentile=80.0,
                       sibling_pool=5, tiers="none")
    pipeline = build_pipeline(opts, max_positives=1)
    kinds = [s.kind for s in pipeline.stages]
    assert kinds.index("sibling_filter") == kinds.index("exclude_positives") + 1 < kinds.index("rank_window")
    sibling = pipeline.stages[kinds.index("sibling_filter")]
    assert sibling.dense is pipeline.stages[0]  # shares the retriever's embeddings
    emitted = [data.doc_ids[i] for b in pipeline.run(data) for i in b.candidates.column("doc_idx").to_pylist()]
    assert emitted == ["far", "x3"]
    (tmp_path / "p.toml").write_text(pipeline_to_toml(pipeline))
    again = load_pipeline(tmp_path / "p.toml")
    assert [s.kind for s in again.stages] == kinds
