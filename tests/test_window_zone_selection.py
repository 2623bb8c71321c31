import numpy as np
import pyarrow as pa
import pytest

from hnmine.errors import InputError
from hnmine.stages.ambiguous import AmbiguousZoneFilter, parse_zone
from hnmine.stages.selection import NegativeSelector, sample_without_replacement, simans_weights
from hnmine.stages.window import RankWindow
from tests.conftest import make_data
from tests.test_exclusion import batch_with


def ranked_batch(n=10, queries=1):
    data = make_data({f"q{i}": f"query {i}" for i in range(queries)},
                     {f"d{i}": f"doc {i}" for i in range(n + 1)},
                     {f"q{i}": ["d0"] for i in range(queries)})
    rows = [(q, r, r, 1.0 - r / 20) for q in range(queries) for r in range(1, n + 1)]
    batch = batch_with(data, rows)
    return batch.with_positives(batch.positives.append_column(
        "score", pa.array([0.9] * queries, pa.float32())))


def test_rank_window_keeps_ranks_after_min_up_to_max():
    out = RankWindow(range_min=2, range_max=5).apply(ranked_batch())
    assert out.candidates.column("rank").to_pylist() == [3, 4, 5]


def test_rank_window_refuses_empty_window():
    with pytest.raises(InputError, match="smaller than"):
        RankWindow(range_min=5, range_max=5)


def test_zone_keeps_band_around_lowest_positive_inclusive():
    batch = ranked_batch()  # scores 0.95, 0.90, ..., 0.50; positive 0.9
    out = AmbiguousZoneFilter(low=0.22, high=0.0).apply(batch)
    scores = np.round(out.candidates.column("score").to_numpy().astype(np.float64), 4).tolist()
    assert scores == [0.9, 0.85, 0.8, 0.75, 0.7]


def test_parse_zone():
    assert parse_zone("0.3:0.05") == (0.3, 0.05)
    with pytest.raises(InputError):
        parse_zone("0.3")


def test_top_selection_takes_best_ranks():
    out = NegativeSelector(num_negatives=3).apply(ranked_batch())
    assert out.candidates.column("rank").to_pylist() == [1, 2, 3]


def test_random_selection_is_seeded_and_independent_of_batch_composition():
    one = NegativeSelector(num_negatives=3, strategy="random", seed=7).apply(ranked_batch(queries=1))
    three = NegativeSelector(num_negatives=3, strategy="random", seed=7).apply(ranked_batch(queries=3))
    first = three.candidates.filter(pa.compute.equal(three.candidates.column("query_idx"), 0))
    assert sorted(one.candidates.column("doc_idx").to_pylist()) == sorted(first.column("doc_idx").to_pylist())
    other = NegativeSelector(num_negatives=3, strategy="random", seed=8).apply(ranked_batch(queries=3))
    assert other.candidates.column("doc_idx").to_pylist() != three.candidates.column("doc_idx").to_pylist()


def test_simans_weights_follow_the_paper_formula():
    w = simans_weights(np.array([0.5, 0.7, 0.9]), positive=0.7, a=2.0, b=0.2)
    assert np.allclose(w, np.exp(-2.0 * (np.array([0.5, 0.7, 0.9]) - 0.7 - 0.2) ** 2))
    assert w.argmax() == 2  # b > 0 centres the sampling above the positive


def test_simans_sampling_prefers_scores_near_the_positive():
    rng = np.random.default_rng(0)
    w = simans_weights(np.array([0.0, 0.9]), positive=0.9, a=20.0)
    picks = [sample_without_replacement(rng, w, 1)[0] for _ in range(500)]
    assert np.mean(picks) > 0.95


def test_never_more_than_num_negatives_and_never_padded():
    out = NegativeSelector(num_negatives=20).apply(ranked_batch(n=4))
    assert out.num_candidates == 4


def test_unknown_strategy_refused():
    with pytest.raises(InputError, match="sampling"):
        NegativeSelector(strategy="best")
