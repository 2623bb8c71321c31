import numpy as np
import pyarrow as pa
import pytest

from hnmine.errors import InputError
from hnmine.stages.false_negatives import FalseNegativeFilter, false_negative_mask
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


def test_max_z_drops_only_outliers_of_each_querys_own_candidates():
    # query 0: scores 1, 2, 3, 6 -> mean 3, sd sqrt(3.5) = 1.87; z of 6 is 1.60, of 3 is 0.
    # query 1: the same shape shifted to negative logits and stretched x10: the same rows go.
    s = np.array([1.0, 2.0, 3.0, 6.0, -50.0, -40.0, -30.0, 0.0])
    q = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.full(8, np.nan)  # the rule does not look at the positive
    assert false_negative_mask(s, p, query=q, max_z=1.5).tolist() == [False, False, False, True] * 2
    assert false_negative_mask(s, p, query=q, max_z=1.7).tolist() == [False] * 8
    assert false_negative_mask(s, p, query=q, max_z=0.0).tolist() == [False, False, True, True] * 2


def test_spread_margin_is_sign_safe_with_negative_positive_scores():
    # query 0: candidates -5, -4, -3, -1 (mean -3.25, sd 1.479), positive -2: drop s >= -2 - 0.5 * 1.479 = -2.74
    # query 1: positive scores above every candidate on a positive scale: drop s >= 4 - 0.5 * sd
    s = np.array([-5.0, -4.0, -3.0, -1.0, 1.0, 2.0, 3.0, 10.0])
    q = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([-2.0] * 4 + [4.0] * 4)
    assert false_negative_mask(s, p, query=q, spread_margin=0.5).tolist() == \
        [False, False, False, True, False, False, True, True]
    # a negative K keeps everything up to K spreads *above* the positive
    assert false_negative_mask(s, p, query=q, spread_margin=-0.5).tolist() == \
        [False, False, False, True, False, False, False, True]


def test_per_query_rules_do_not_change_when_a_model_shifts_or_rescales_its_scores():
    rng = np.random.default_rng(1)
    q = np.repeat(np.arange(20), 10)
    s, p = rng.normal(size=200), np.repeat(rng.normal(size=20), 10)
    for kw in ({"max_z": 1.0}, {"spread_margin": 0.3}):
        base = false_negative_mask(s, p, query=q, **kw)
        assert base.any() and not base.all()
        for a, b in ((3.0, -7.0), (0.01, 2.0)):
            assert (false_negative_mask(a * s + b, a * p + b, query=q, **kw) == base).all()


def test_per_query_rules_spare_a_query_whose_candidates_all_tie():
    s = np.array([0.5, 0.5, 0.5])
    assert not false_negative_mask(s, np.full(3, 0.4), query=np.zeros(3), max_z=0.0, spread_margin=1.0).any()


def test_per_query_rules_read_the_batch_query_column():
    data = make_data({"a": "qa", "b": "qb"}, {f"d{i}": f"doc {i}" for i in range(8)}, {"a": ["d0"], "b": ["d1"]})
    batch = batch_with(data, [(0, 2, 1, 0.9), (0, 3, 2, 0.2), (0, 4, 3, 0.1),
                              (1, 5, 1, -0.3), (1, 6, 2, -0.31), (1, 7, 3, -0.32)])
    batch = batch.with_positives(batch.positives.append_column("score", pa.array([0.95, 0.0], pa.float32())))
    out = FalseNegativeFilter(max_z=1.0).apply(batch).candidates.to_pydict()
    # a: 0.9 is 1.41 sd above its query's mean; b: -0.3 is 1.22 sd above its own (tiny) spread
    assert list(zip(out["query_idx"], out["doc_idx"])) == [(0, 3), (0, 4), (1, 6), (1, 7)]


@pytest.mark.parametrize("kwargs", [{"max_z": float("nan")}, {"spread_margin": float("inf")}])
def test_per_query_rules_refuse_non_finite_values(kwargs):
    with pytest.raises(InputError):
        FalseNegativeFilter(**kwargs)
