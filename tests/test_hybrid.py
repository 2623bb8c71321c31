import numpy as np

from hnmine.stages.hybrid import reciprocal_rank_fusion


def test_rrf_scores_and_order_known_answer():
    # list A: d1, d2, d3 ; list B: d3, d1, d4 (all query 0), k = 60
    q = np.zeros(6, dtype=np.int64)
    d = np.array([1, 2, 3, 3, 1, 4])
    r = np.array([1, 2, 3, 1, 2, 3])
    _uq, ud, fused = reciprocal_rank_fusion(q, d, r, k=60)
    got = dict(zip(ud.tolist(), fused.tolist()))
    assert np.isclose(got[1], 1 / 61 + 1 / 62)
    assert np.isclose(got[3], 1 / 63 + 1 / 61)
    assert np.isclose(got[2], 1 / 62) and np.isclose(got[4], 1 / 63)
    assert sorted(got, key=lambda k: -got[k]) == [1, 3, 2, 4]


def test_rrf_keeps_queries_apart():
    uq, _ud, fused = reciprocal_rank_fusion(np.array([0, 1]), np.array([5, 5]), np.array([1, 1]))
    assert uq.tolist() == [0, 1] and np.allclose(fused, [1 / 61, 1 / 61])
