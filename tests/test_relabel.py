"""RLHN: likely false negatives written as flagged extra positives, and queries with too many of them dropped."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hnmine.cli import app
from hnmine.io.writers import flagembedding_lines, labeled_pair_table, ntuple_table, triplet_table
from hnmine.stages.false_negatives import FalseNegativeFilter
from tests.conftest import make_data
from tests.test_cli import mine, qrels, runner  # noqa: F401  (qrels is a fixture)
from tests.test_exclusion import batch_with


def scored_batch():
    data = make_data({"a": "qa", "b": "qb"}, {f"d{i}": f"doc {i}" for i in range(10)},
                     {"a": ["d0"], "b": ["d1"]})
    batch = batch_with(data, [(0, 2, 1, 0.9), (0, 3, 2, 0.7), (0, 4, 3, 0.3), (0, 5, 4, 0.2),
                              (1, 6, 1, 0.8), (1, 7, 2, 0.75), (1, 8, 3, 0.6), (1, 9, 4, 0.1)])
    return batch.with_positives(batch.positives.append_column("score", pa.array([0.95, 0.9], pa.float32())))


def test_relabel_moves_the_removed_candidates_to_flagged_positives():
    out = FalseNegativeFilter(max_score=0.65, relabel=True).apply(scored_batch())
    assert list(zip(*(out.candidates.column(c).to_pylist() for c in ("query_idx", "doc_idx")))) == \
        [(0, 4), (0, 5), (1, 8), (1, 9)]
    assert list(zip(*(out.relabeled.column(c).to_pylist() for c in ("query_idx", "doc_idx")))) == \
        [(0, 2), (0, 3), (1, 6), (1, 7)]
    t = triplet_table(out).to_pydict()
    # each query: 1 known + 2 relabeled positives, each paired with its 2 negatives
    assert len(t["query"]) == 12
    by_positive = {(q, p): flag for q, p, flag in zip(t["query_id"], t["positive_id"], t["positive_relabeled"])}
    assert by_positive == {("a", "d0"): False, ("a", "d2"): True, ("a", "d3"): True,
                           ("b", "d1"): False, ("b", "d6"): True, ("b", "d7"): True}
    assert not set(t["negative_id"]) & {"d2", "d3", "d6", "d7"}


def test_max_false_negatives_drops_a_query_whose_list_is_mostly_relevant():
    filt = FalseNegativeFilter(max_score=0.65, max_false_negatives=1)
    batch = scored_batch()
    batch = batch.with_candidates(batch.candidates.filter(pa.array([True, False, True, True] + [True] * 4)))
    out = filt.apply(batch)  # a: 1 likely false negative (kept); b: 2 (> 1: the query goes)
    assert set(out.candidates.column("query_idx").to_pylist()) == {0}
    assert set(out.positives.column("query_idx").to_pylist()) == {0}
    assert filt.notes() == {"queries dropped: more than 1 likely false negatives": 1}


def test_every_layout_flags_relabeled_positives_in_memory():
    out = FalseNegativeFilter(max_score=0.65, relabel=True).apply(scored_batch())
    nt, dropped = ntuple_table(out, 2)
    assert dropped == 0 and nt.column("positive_relabeled").to_pylist() == [False, True, True] * 2
    lp = labeled_pair_table(out).to_pydict()
    flagged = {(q, p) for q, p, f in zip(lp["query_id"], lp["passage_id"], lp["relabeled"]) if f}
    assert flagged == {("a", "d2"), ("a", "d3"), ("b", "d6"), ("b", "d7")}
    assert all(label == 1 for label, f in zip(lp["label"], lp["relabeled"]) if f)
    lines, unusable = flagembedding_lines(out)
    assert unusable == 0
    records = [json.loads(x) for x in lines]
    assert [r["pos_relabeled"] for r in records] == [[False, True, True]] * 2
    assert [r["pos_ids"] for r in records] == [["d0", "d2", "d3"], ["d1", "d6", "d7"]]


def test_without_relabeling_no_flag_column_appears():
    out = FalseNegativeFilter(max_score=0.65).apply(scored_batch())
    assert out.relabeled is None and "positive_relabeled" not in triplet_table(out).column_names


@pytest.mark.parametrize("fmt", ["triplet", "n-tuple", "labeled-pair", "flagembedding"])
def test_cli_relabels_in_every_layout_and_readers_load_it(sample_dir, tmp_path, qrels, fmt):  # noqa: F811
    out = tmp_path / ("o.jsonl" if fmt == "flagembedding" else "o.parquet")
    mine(sample_dir, out, "--retriever", "dense", "--range-min", "0", "--range-max", "20", "--num-negatives", "3",
         "--max-z", "1.0", "--relabel-false-negatives", "--format", fmt)
    if fmt == "flagembedding":
        records = [json.loads(x) for x in out.read_text().splitlines()]
        pairs = [(r["query_id"], p, f) for r in records for p, f in zip(r["pos_ids"], r["pos_relabeled"])]
        negatives = {(r["query_id"], n) for r in records for n in r["neg_ids"]}
    else:
        rows = pq.read_table(out).to_pydict()
        pid = "passage_id" if fmt == "labeled-pair" else "positive_id"
        flag = "relabeled" if fmt == "labeled-pair" else "positive_relabeled"
        keep = rows["label"] if fmt == "labeled-pair" else [1] * len(rows[pid])
        pairs = [(q, p, f) for q, p, f, k in zip(rows["query_id"], rows[pid], rows[flag], keep) if k == 1]
        if fmt == "triplet":
            negatives = set(zip(rows["query_id"], rows["negative_id"]))
        elif fmt == "n-tuple":
            negatives = {(q, n) for q, ns in zip(rows["query_id"], rows["negative_ids"]) for n in ns}
        else:
            negatives = {(q, p) for q, p, k in zip(rows["query_id"], rows[pid], rows["label"]) if k == 0}
    relabeled = {(q, p) for q, p, f in pairs if f}
    known = {(q, p) for q, p, f in pairs if not f}
    assert relabeled, "max-z 1.0 over 20 candidates must flag some"
    assert all(p not in qrels[q] for q, p in relabeled)
    assert all(p in qrels[q] for q, p in known)
    assert not relabeled & negatives


def test_cli_max_false_negatives_zero_drops_every_query_with_one(sample_dir, tmp_path, qrels):  # noqa: F811
    out = tmp_path / "o.parquet"
    mine(sample_dir, out, "--retriever", "dense", "--range-min", "0", "--range-max", "20", "--num-negatives", "3",
         "--max-z", "2.5", "--max-false-negatives", "0")
    written = set(pq.read_table(out).column("query_id").to_pylist())
    assert written and len(written) < len(qrels)
    manifest = json.loads((tmp_path / "o.parquet.manifest.json").read_text())
    assert manifest["counts"]["notes"]["queries dropped: more than 0 likely false negatives"] \
        == len(qrels) - len(written)


def test_relabel_without_a_rule_is_refused_before_work(sample_dir, tmp_path):
    out = tmp_path / "o.parquet"
    result = runner.invoke(app, [
        "mine", "--queries", str(sample_dir / "queries.parquet"), "--corpus", str(sample_dir / "corpus.parquet"),
        "--qrels", str(sample_dir / "qrels.parquet"), "--output", str(out), "--relabel-false-negatives"])
    assert result.exit_code != 0 and "--relabel-false-negatives" in result.output and not out.exists()
