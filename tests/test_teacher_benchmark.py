"""benchmarks/teacher_denoise.py: the frontier of a teacher and its neighbourhood signals, on known answers."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))
spec = importlib.util.spec_from_file_location("teacher_denoise_bench", BENCH / "teacher_denoise.py")
bench = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = bench
spec.loader.exec_module(bench)


def _candidates(num_queries: int = 4, depth: int = 10):
    q = np.repeat(np.arange(num_queries), depth)
    rank = np.tile(np.arange(1, depth + 1), num_queries)
    hidden = rank <= 2                       # the two best candidates of every query are hidden positives
    half = q % 2                             # queries 0, 2 in one half, 1, 3 in the other
    return q, rank, hidden, half


def test_a_perfect_teacher_removes_every_hidden_positive_and_the_top_is_clean(monkeypatch):
    q, rank, hidden, half = _candidates()
    scores = {"perfect": np.where(hidden, 5.0, -1.0) + 0.01 * rank}
    positive = {"perfect": np.full(len(q), 6.0)}
    args = argparse.Namespace(depth=10, num_negatives=3)
    monkeypatch.setattr(bench, "TEACHERS", ("perfect",))
    rows = bench.teacher_frontier(scores, positive, q, rank, hidden, half, args, 4)
    first = next(r for r in rows if r["rule"] == "max_score" and r["false_alarm_budget"] == 0.1)
    assert first["catch_rate"] == 1.0 and first["false_alarm_rate"] <= 0.1
    assert first["mined"]["fn_rate"] == 0.0 and first["mined"]["negatives"] == 12
    # the emitted negatives are ranks 3-5 of each query: the hardest true negatives
    assert first["mined"]["mean_rank"] == pytest.approx(4.0)


def test_a_useless_teacher_leaves_the_top_as_it_is():
    q, rank, hidden, half = _candidates()
    scores = {"bi": np.ones(len(q))}   # the same score everywhere: nothing can be told apart
    positive = {"bi": np.full(len(q), 1.0)}
    rows = bench.teacher_frontier(scores, positive, q, rank, hidden, half,
                                  argparse.Namespace(depth=10, num_negatives=3), 4)
    ten = next(r for r in rows if r["rule"] == "max_score" and r["false_alarm_budget"] == 0.1)
    assert ten["false_alarm_rate"] <= 0.1
    assert ten["mined"]["fn_rate"] == pytest.approx(2 / 3)  # ranks 1-3: two hidden positives of three


def test_neighbourhood_signals_on_hand_made_embeddings():
    doc = np.array([[1, 0], [0.8, 0.6], [0, 1]], np.float32)
    query = np.array([[1, 0], [0, 1]], np.float32)
    dense = SimpleNamespace(_doc_emb=doc, _query_emb=query)
    q, d, rank = np.array([0, 0, 0]), np.array([0, 1, 2]), np.array([1, 2, 3])
    central, reverse, csls = bench.neighbourhood_signals(dense, q, d, rank).T
    # centrality: mean cosine to the query's best candidates (all three here)
    assert central == pytest.approx([(1 + 0.8 + 0) / 3, (0.8 + 1 + 0.6) / 3, (0 + 0.6 + 1) / 3])
    # doc 2 is closer to query 1 than to query 0: one query beats its own
    assert reverse == pytest.approx(np.log1p([0, 0, 1]))
    # CSLS: cos(q, d) minus the mean of d's closest queries (both of the two queries here)
    assert csls == pytest.approx([1 - 0.5, 0.8 - 0.7, 0 - 0.5])
