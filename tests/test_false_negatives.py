import numpy as np
import pyarrow as pa
import pytest

from hnmine.errors import InputError
from hnmine.false_negatives import FalseNegativeFilter, false_negative_mask
from tests.conftest import make_data
from tests.test_exclusion import batch_with


def test_max_score_boundary_is_inclusive():
    s = np.array([0.25, 0.5, 0.75])
    assert false_negative_mask(s, np.full(3, 1.0), max_score=0.5).tolist() == [False, True, True]


def test_margin_boundary_drops_candidate_exactly_at_positive_minus_margin():
    s = np.array([0.25, 0.5, 0.625])
    pos = np.full(3, 0.75)
    assert false_negative_mask(s, pos, margin=0.25).tolist() == [False, True, True]


def test_max_ratio_keeps_exactly_ratio_times_positive_and_is_sign_safe():
    pos = np.array([0.5, 0.5, -2.0, -2.0])
    s = np.array([0.25, 0.25 + 1e-9, -2.5, -2.25])
    # threshold: 0.5*0.5 = 0.25 for p >= 0; p - |p|(1-r) = -3.0 for p = -2, r = 0.5
    assert false_negative_mask(s, pos, max_ratio=0.5).tolist() == [False, True, True, True]


def test_margin_uses_each_querys_own_lowest_positive_with_1_2_and_5_positives():
    """The peer bug: positives of different queries misaligned. Here each query's threshold is distinct."""
    data = make_data(
        {"a": "qa", "b": "qb", "c": "qc"},
        {f"d{i}": f"doc {i}" for i in range(12)},
        {"a": ["d0"], "b": ["d1", "d2"], "c": ["d3", "d4", "d5", "d6", "d7"]},
    )
    batch = batch_with(data, [(0, 8, 1, 0.55), (0, 9, 2, 0.45),
                              (1, 8, 1, 0.35), (1, 9, 2, 0.25),
                              (2, 10, 1, 0.15), (2, 11, 2, 0.05)])
    # Positive scores: a -> 0.6; b -> 0.9 and 0.4 (lowest 0.4); c -> 0.9, 0.8, 0.2, 0.7, 0.6 (lowest 0.2).
    pos_scores = [0.6, 0.9, 0.4, 0.9, 0.8, 0.2, 0.7, 0.6]
    batch = batch.with_positives(batch.positives.append_column("score", pa.array(pos_scores, pa.float32())))
    out = FalseNegativeFilter(margin=0.1).apply(batch).candidates.to_pydict()
    # a: drop s >= 0.5 -> keeps 0.45; b: drop s >= 0.3 -> keeps 0.25; c: drop s >= 0.1 -> keeps 0.05
    assert list(zip(out["query_idx"], out["doc_idx"])) == [(0, 9), (1, 9), (2, 11)]


def test_filter_on_missing_column_names_the_column():
    data = make_data({"q": "a"}, {"p": "pos", "x": "x"}, {"q": ["p"]})
    batch = batch_with(data, [(0, 1, 1, .5)])
    with pytest.raises(KeyError, match="ce_score"):
        FalseNegativeFilter(max_score=0.1, score_column="ce_score").apply(batch)


def test_filters_are_monotone_in_their_thresholds():
    rng = np.random.default_rng(0)
    s, p = rng.random(200), rng.random(200)
    for lo, hi in [(0.1, 0.2), (0.3, 0.6)]:
        assert (false_negative_mask(s, p, margin=hi) >= false_negative_mask(s, p, margin=lo)).all()
        assert (false_negative_mask(s, p, max_score=lo) >= false_negative_mask(s, p, max_score=hi)).all()
        assert (false_negative_mask(s, p, max_ratio=lo) >= false_negative_mask(s, p, max_ratio=hi)).all()


@pytest.mark.parametrize("kwargs", [{"margin": -0.1}, {"max_ratio": 0.0}, {"max_ratio": 1.5}])
def test_nonsense_thresholds_are_refused(kwargs):
    with pytest.raises(InputError):
        FalseNegativeFilter(**kwargs)
