import math

import numpy as np
import pyarrow as pa
import pytest

from hnmine.candidates import CandidateBatch, set_column
from hnmine.errors import InputError
from hnmine.evaluation.diff import diff_mined
from hnmine.stages.clusters import QueryClusters, kmeans_assign
from hnmine.stages.fill import RandomFill
from hnmine.stages.positives_cap import PositivesPerQuery
from hnmine.stages.tiers import DifficultyTiers, split_by_tier, tier_labels
from hnmine.stages.triplet_margin import TripletMarginFilter, triplet_margin_mask
from tests.conftest import make_data
from tests.test_exclusion import batch_with

# ---------------------------------------------------------------- triplet margin


def test_triplet_margin_mask_boundaries_are_exact():
    # p = 0.75, margin = 0.25: delta = p - s is -0.25, 0, 0.125, 0.25, 0.5 for these scores.
    s = np.array([1.0, 0.75, 0.625, 0.5, 0.25])
    p = np.full(5, 0.75)
    assert triplet_margin_mask(s, p, "hard", 0.25).tolist() == [True, True, False, False, False]
    assert triplet_margin_mask(s, p, "semihard", 0.25).tolist() == [False, False, True, True, False]
    assert triplet_margin_mask(s, p, "easy", 0.25).tolist() == [False, False, False, False, True]
    assert triplet_margin_mask(s, p, "all", 0.25).tolist() == [True, True, True, True, False]


def test_triplet_types_partition_the_candidates():
    rng = np.random.default_rng(0)
    s, p = rng.random(200), rng.random(200)
    hard, semi, easy = (triplet_margin_mask(s, p, t, 0.25) for t in ("hard", "semihard", "easy"))
    assert (hard.astype(int) + semi + easy == 1).all()
    assert (triplet_margin_mask(s, p, "all", 0.25) == (hard | semi)).all()


def test_triplet_margin_mask_drops_unscored():
    assert not triplet_margin_mask(np.array([0.5]), np.array([np.nan]), "all", 0.25).any()


def scored_batch(scores, positive_score, queries=1):
    """One query per block of ``scores``; its positive (doc 0) scored ``positive_score``."""
    n = len(scores)
    data = make_data({f"q{i}": f"query {i}" for i in range(queries)},
                     {f"d{i}": f"doc {i}" for i in range(n + 1)},
                     {f"q{i}": ["d0"] for i in range(queries)})
    rows = [(q, r + 1, r + 1, s) for q in range(queries) for r, s in enumerate(scores)]
    batch = batch_with(data, rows)
    return batch.with_positives(set_column(batch.positives, "score", [positive_score] * queries, pa.float32()))


def test_triplet_margin_filter_uses_the_query_positive():
    batch = scored_batch([1.0, 0.75, 0.625, 0.5, 0.25], 0.75)
    out = TripletMarginFilter(triplet_type="semihard", margin=0.25).apply(batch)
    assert out.candidates.column("doc_idx").to_pylist() == [3, 4]
    out = TripletMarginFilter(triplet_type="hard", margin=0.25).apply(batch)
    assert out.candidates.column("doc_idx").to_pylist() == [1, 2]


def test_triplet_margin_filter_prefers_ce_score_and_refuses_bad_options():
    batch = scored_batch([0.1, 0.1], 0.75)
    batch = batch.with_candidates(set_column(batch.candidates, "ce_score", [5.0, 1.0], pa.float32()))
    batch = batch.with_positives(set_column(batch.positives, "ce_score", [4.0], pa.float32()))
    assert TripletMarginFilter(triplet_type="hard").apply(batch).candidates.column("doc_idx").to_pylist() == [1]
    with pytest.raises(InputError, match="triplet-type"):
        TripletMarginFilter(triplet_type="hardest")
    with pytest.raises(InputError):
        TripletMarginFilter(margin=-0.1)
    with pytest.raises(InputError, match="semihard"):
        TripletMarginFilter(triplet_type="semihard", margin=0.0)


# ---------------------------------------------------------------- tiers


def test_tier_labels_boundaries_inclusive():
    assert tier_labels(np.array([-0.5, 0.25, 0.375, 0.5, 0.75, np.nan]), 0.25, 0.5) == \
        ["hard", "hard", "medium", "medium", "easy", None]


def test_tiers_by_rank_label_without_dropping():
    batch = scored_batch([0.9 - i / 100 for i in range(6)], 0.95)
    out = DifficultyTiers(by="rank", hard=2, medium=4).apply(batch)
    assert out.num_candidates == 6
    assert out.candidates.column("tier").to_pylist() == ["hard", "hard", "medium", "medium", "easy", "easy"]


def test_tiers_by_gap_default_bounds_and_validation():
    tiers = DifficultyTiers(by="gap")
    assert (tiers.hard, tiers.medium) == (0.1, 0.2)
    assert (DifficultyTiers().hard, DifficultyTiers().medium) == (10, 30)
    # p = 0.75: gaps -0.25, 0, 0.125, 0.25, 0.5 with bounds 0.125 / 0.25
    batch = scored_batch([1.0, 0.75, 0.625, 0.5, 0.25], 0.75)
    out = DifficultyTiers(by="gap", hard=0.125, medium=0.25).apply(batch)
    assert out.candidates.column("tier").to_pylist() == ["hard", "hard", "hard", "medium", "easy"]
    with pytest.raises(InputError, match="smaller"):
        DifficultyTiers(by="gap", hard=0.3)
    with pytest.raises(InputError):
        DifficultyTiers(by="score")


def test_split_by_tier_keeps_every_row_in_order():
    table = pa.table({"x": [1, 2, 3, 4, 5], "tier": ["easy", "hard", None, "hard", "easy"]})
    parts = split_by_tier(table)
    assert list(parts) == ["hard", "medium", "easy", "untiered"]
    assert parts["hard"].column("x").to_pylist() == [2, 4]
    assert parts["medium"].num_rows == 0
    assert parts["easy"].column("x").to_pylist() == [1, 5]
    assert parts["untiered"].column("x").to_pylist() == [3]
    with pytest.raises(InputError):
        split_by_tier(table, "negative_tier")


# ---------------------------------------------------------------- random fill


def fill_data():
    return make_data(
        {"q1": "what causes rain", "q2": "how do magnets work"},
        {"p1": "Rain forms when vapour condenses.", "dup": "rain forms when VAPOUR condenses.",
         "self": "What causes rain", "c1": "clouds", "r1": "iron", "r2": "salt", "r3": "sand",
         "p2": "Magnets align spins."},
        {"q1": ["p1"], "q2": ["p2"]},
    )


def test_fill_tops_up_short_queries_with_eligible_documents_only():
    data = fill_data()
    batch = batch_with(data, [(0, 3, 4, 0.5)])  # q1 has one candidate (c1) at rank 4, q2 none
    out = RandomFill(num_negatives=3, seed=1).apply(batch).candidates.to_pydict()
    q1 = [i for i, q in enumerate(out["query_idx"]) if q == 0]
    assert out["doc_idx"][q1[0]] == 3 and [out["filled"][i] for i in q1] == [False, True, True]
    assert [out["rank"][i] for i in q1] == [4, 5, 6]
    for i in q1[1:]:
        assert out["doc_idx"][i] in {4, 5, 6, 7}  # never p1, its duplicate, the query's text, or c1 again
        assert math.isnan(out["score"][i]) and out["retriever"][i] == "random"
    q2 = [out["doc_idx"][i] for i, q in enumerate(out["query_idx"]) if q == 1]
    assert len(q2) == 3 and len(set(q2)) == 3 and 7 not in q2
    assert [out["rank"][i] for i, q in enumerate(out["query_idx"]) if q == 1] == [1, 2, 3]


def test_fill_adds_what_exists_when_the_corpus_runs_out():
    data = fill_data()
    out = RandomFill(num_negatives=10).apply(batch_with(data, [(0, 3, 1, 0.5)]))
    q1 = out.candidates.filter(pa.compute.equal(out.candidates.column("query_idx"), 0))
    assert sorted(q1.column("doc_idx").to_pylist()) == [3, 4, 5, 6, 7]


def test_fill_is_seeded_per_query_and_leaves_full_queries_alone():
    data = make_data({f"q{i}": f"query {i}" for i in range(3)}, {f"d{i}": f"doc {i}" for i in range(200)},
                     {f"q{i}": [f"d{i}"] for i in range(3)})
    full = [(2, d, r, 0.5) for r, d in enumerate(range(10, 15), start=1)]
    both = RandomFill(num_negatives=5, seed=3).apply(batch_with(data, [(0, 9, 1, 0.5), *full]))
    alone = CandidateBatch.start(data, np.array([0])).with_candidates(batch_with(data, [(0, 9, 1, 0.5)]).candidates)
    alone = RandomFill(num_negatives=5, seed=3).apply(alone)
    pick = both.candidates.filter(pa.compute.equal(both.candidates.column("query_idx"), 0))
    assert pick.column("doc_idx").to_pylist() == alone.candidates.column("doc_idx").to_pylist()
    q1 = both.candidates.filter(pa.compute.equal(both.candidates.column("query_idx"), 1))
    assert len(set(pick.column("doc_idx").to_pylist()) & set(q1.column("doc_idx").to_pylist())) <= 1  # own stream
    q2 = both.candidates.filter(pa.compute.equal(both.candidates.column("query_idx"), 2))
    assert q2.column("doc_idx").to_pylist() == list(range(10, 15)) and not any(q2.column("filled").to_pylist())
    other = RandomFill(num_negatives=5, seed=4).apply(batch_with(data, [(0, 9, 1, 0.5), *full]))
    assert other.candidates.column("doc_idx").to_pylist() != both.candidates.column("doc_idx").to_pylist()


def test_fill_sets_ce_score_nan():
    data = fill_data()
    batch = batch_with(data, [(0, 3, 1, 0.5)])
    batch = batch.with_candidates(set_column(batch.candidates, "ce_score", [2.0], pa.float32()))
    out = RandomFill(num_negatives=2).apply(batch).candidates.to_pydict()
    assert out["ce_score"][0] == 2.0 and all(math.isnan(x) for x in out["ce_score"][1:])


# ---------------------------------------------------------------- positives cap


def many_positives_batch():
    data = make_data({"a": "query a", "b": "query b"}, {f"d{i}": f"doc {i}" for i in range(8)},
                     {"a": ["d0", "d1", "d2", "d3", "d4"], "b": ["d5"]})
    return batch_with(data, [(0, 6, 1, 0.5), (1, 7, 1, 0.5)])


def test_positives_cap_keeps_at_most_n_in_original_order():
    batch = many_positives_batch()
    out = PositivesPerQuery(max_positives=2, seed=0).apply(batch)
    pos = out.positives.to_pydict()
    a = [d for q, d in zip(pos["query_idx"], pos["doc_idx"]) if q == 0]
    assert len(a) == 2 and a == sorted(a) and set(a) <= {0, 1, 2, 3, 4}
    assert [d for q, d in zip(pos["query_idx"], pos["doc_idx"]) if q == 1] == [5]
    assert out.candidates.equals(batch.candidates)
    again = PositivesPerQuery(max_positives=2, seed=0).apply(batch)
    assert again.positives.equals(out.positives)
    picks = {tuple(PositivesPerQuery(max_positives=2, seed=s).apply(batch).positives.column("doc_idx")
                   .to_pylist()) for s in range(10)}
    assert len(picks) > 1


def test_positives_cap_refuses_zero():
    with pytest.raises(InputError):
        PositivesPerQuery(max_positives=0)


# ---------------------------------------------------------------- query clusters


def test_two_obvious_clusters_get_two_ids():
    emb = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [10.0, 10.0], [10.1, 10.0], [10.0, 10.1]])
    data = make_data({f"q{i}": f"query {i}" for i in range(6)}, {f"d{i}": f"doc {i}" for i in range(7)},
                     {f"q{i}": ["d6"] for i in range(6)})
    batch = batch_with(data, [(q, q, 1, 0.5) for q in range(6)] + [(0, 5, 2, 0.4)])
    stage = QueryClusters(num_clusters=2, seed=0, embeddings=emb)
    stage.prepare(data)
    ids = stage.apply(batch).candidates.column("cluster_id")
    assert ids.type == pa.int32()
    ids = ids.to_pylist()
    assert ids[0] == ids[1] == ids[2] == ids[6] and ids[3] == ids[4] == ids[5] and ids[0] != ids[3]
    assert kmeans_assign(emb, 2, seed=0).tolist() == kmeans_assign(emb, 2, seed=0).tolist()


def test_clusters_clamp_k_and_take_an_embedder():
    data = make_data({"a": "x", "b": "y"}, {"d": "doc"}, {"a": ["d"], "b": ["d"]})
    stage = QueryClusters(num_clusters=8, embedder=lambda texts: np.eye(len(texts)))
    out = stage.apply(batch_with(data, [(0, 0, 1, 0.5), (1, 0, 1, 0.5)]))
    assert sorted(out.candidates.column("cluster_id").to_pylist()) == [0, 1]
    with pytest.raises(InputError, match="shape"):
        QueryClusters(embeddings=np.zeros((3, 2))).prepare(data)


# ---------------------------------------------------------------- diff


def test_diff_counts_distinct_pairs_and_score_shift():
    old = pa.table({"query_id": ["a", "a", "a", "a", "b", "c"],
                    "negative_id": ["n1", "n2", "n1", "n2", "n3", "n9"],  # a's rows repeat (two positives)
                    "negative_score": [0.5, 0.25, 0.5, 0.25, 0.75, 0.5]})
    new = pa.table({"query_id": ["a", "a", "b", "d"],
                    "negative_id": ["n1", "n4", "n3", "n5"],
                    "negative_score": [0.75, 0.5, 0.75, 0.25]})
    report = diff_mined(old, new)
    assert report == {
        "queries_compared": 2, "queries_only_old": 1, "queries_only_new": 1, "queries_changed": 1,
        "negatives_old": 4, "negatives_new": 4, "negatives_kept": 2, "negatives_added": 2,
        "negatives_removed": 2, "changed_fraction": 0.5, "score_shift_mean": 0.125, "score_shift_median": 0.125,
    }


def test_diff_without_scores_and_identical_files():
    t = pa.table({"query_id": ["a", "b"], "negative_id": ["n1", "n2"]})
    report = diff_mined(t, t)
    assert report["changed_fraction"] == 0.0 and report["queries_changed"] == 0
    assert report["score_shift_mean"] is None and report["score_shift_median"] is None
    with pytest.raises(InputError, match="negative_id"):
        diff_mined(pa.table({"query_id": ["a"]}), t)
