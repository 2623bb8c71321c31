"""benchmarks/false_negatives.py: the frontier's measures on hand-made data with known answers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import make_data

spec = importlib.util.spec_from_file_location(
    "false_negatives_bench", Path(__file__).resolve().parent.parent / "benchmarks" / "false_negatives.py")
bench = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = bench  # dataclasses look their module up by name
spec.loader.exec_module(bench)


@pytest.fixture()
def setting():
    """Two queries; q0's known positive is p, whose exact-text twin p2 must not count as a harder document;
    d1 is relevant to q0 (hidden), d3 is an exact-text twin of d1 and so relevant too."""
    data = make_data({"q0": "query zero", "q1": "query one"},
                     {"p": "Positive text", "p2": "positive   TEXT", "d1": "one", "d2": "two", "d3": "ONE"},
                     {"q0": ["p"], "q1": ["d2"]})
    s = bench.Setting("tiny", data, bench._with_twins(data, {(0, 0), (0, 2)}))
    s.doc_emb = np.array([[1, 0], [1, 0], [0.8, 0.6], [0.6, 0.8], [0.8, 0.6]], np.float32)
    s.query_emb = np.array([[1, 0], [0, 1]], np.float32)
    return s


def test_twins_of_relevant_documents_count_as_relevant(setting):
    assert setting.relevant == {(0, 0), (0, 1), (0, 2), (0, 4)}


def test_rank_and_gap_ignore_the_known_positive_and_its_twin(setting):
    ranks, gaps = setting.hardness(np.array([0, 0, 1]), np.array([3, 2, 2]))
    # q0: d1 0.8, d3 0.8, d2 0.6 (p and its twin p2 excluded)
    # q1: d2 is its positive (0.8), d1 and d3 0.6 (a tie does not outrank)
    assert ranks.tolist() == [3, 1, 1] and np.allclose(gaps, [0.4, 0.2, 0.2])


def test_measure_counts_distinct_pairs_and_short_queries(setting):
    def run(_setting, _work):
        return bench.Mined(np.array([0, 0, 0, 1]), np.array([2, 2, 3, 4]), 0.5, pairs_scored=7)

    row = bench.measure(bench.Recipe("fixed", "test", run=run), setting, Path("."))
    assert (row["negatives"], row["false_negatives"], row["pairs_scored"]) == (3, 1, 7)
    assert row["fn_rate"] == pytest.approx(1 / 3) and row["short_share"] == 1.0
    bench.add_intervals([row], "fixed")
    low, high = row["fn_rate_ci95"]
    assert 0 <= low <= 1 / 3 <= high <= 1 and row["fn_diff_vs_defaults_ci95"] == [0.0, 0.0]


def test_label_graph_points_build_the_stage_and_need_nfcorpus(tmp_path):
    from hnmine.recipe import MineOptions, build_pipeline

    for name in ("queries.jsonl", "qrels-train.tsv"):
        (tmp_path / name).write_text("")
    recipes = bench.label_graph_recipes(tmp_path)
    thresholds = []
    for recipe in recipes:
        stages = build_pipeline(MineOptions(**recipe.options)).stages
        teacher = [s for s in stages if s.kind == "label_graph"]
        assert len(teacher) == 1 and teacher[0].qrels == str(tmp_path / "qrels-train.tsv")
        thresholds.append((teacher[0].max_probability, recipe.options.get("range_min")))
    assert thresholds == [(0.25, 0), (0.1, 0), (0.25, None)]
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--settings", "nfcorpus,scifact", "--label-graph", "--nfcorpus", str(tmp_path)])
    assert exit_info.value.code == 2
