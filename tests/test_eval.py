"""`hnmine eval`: known answers on a hand-made mined table, then the CLI end to end on sample_data/."""

from __future__ import annotations

import importlib.util
import json
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pytest import approx

from hnmine.cli import app
from hnmine.errors import InputError
from hnmine.evaluation.metrics import evaluate, mined_pairs, summarize
from tests.test_cli import mine, runner

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def mined_table(extra_rows: list[dict] | None = None) -> pa.Table:
    """q1 (positives p1, p2; bm25) with negatives n1..n3, each written once per positive; q2 (p3; dense) with n4, n5.

    Five distinct (query, negative) pairs in eight rows. n3's text is p2's (other case and spacing).
    """
    pos = {"p1": ("Alpha passage", 0.9), "p2": ("Beta passage", 0.7), "p3": ("Gamma passage", 0.5)}
    neg = {"n1": ("one", 0.6, "hard"), "n2": ("two", 0.8, "hard"), "n3": ("  beta   PASSAGE ", 0.5, "easy"),
           "n4": ("four", 0.4, None), "n5": ("five", 0.2, "easy")}
    plan = [("q1", "what is alpha", "bm25", ["p1", "p2"], ["n1", "n2", "n3"]),
            ("q2", "what is gamma", "dense", ["p3"], ["n4", "n5"])]
    rows = []
    for qid, query, retriever, positives, negatives in plan:
        for p in positives:
            for rank, n in enumerate(negatives, 1):
                rows.append({"query": query, "positive": pos[p][0], "negative": neg[n][0], "query_id": qid,
                             "positive_id": p, "negative_id": n, "negative_rank": rank, "negative_score": neg[n][1],
                             "positive_score": pos[p][1], "retriever": retriever, "tier": neg[n][2]})
    rows += extra_rows or []
    return pa.Table.from_pylist(rows)


LABELS = pa.table({"query_id": ["q1", "q1", "q1", "q2", "q2", "q2", "q3"],
                   "doc_id": ["p1", "p2", "n2", "p3", "n5", "n4", "p9"],
                   "score": [1, 2, 1, 1, 1, 0, 1]})  # q2/n4 is judged non-relevant (score 0)


def test_false_negative_rate_overall_and_split():
    fn = evaluate(mined_table(), LABELS).metrics["false_negatives"]
    assert (fn["negatives"], fn["false_negatives"], fn["rate"]) == (5, 2, approx(0.4))
    assert fn["by_retriever"] == {"bm25": {"negatives": 3, "false_negatives": 1, "rate": approx(1 / 3)},
                                  "dense": {"negatives": 2, "false_negatives": 1, "rate": approx(0.5)}}
    assert fn["by_tier"] == {"(none)": {"negatives": 1, "false_negatives": 0, "rate": 0.0},
                             "easy": {"negatives": 2, "false_negatives": 1, "rate": 0.5},
                             "hard": {"negatives": 2, "false_negatives": 1, "rate": 0.5}}
    assert fn["queries_without_labels"] == 0
    assert [(w["query_id"], w["false_negatives"], w["false_negative_ids"]) for w in fn["worst_queries"]] == \
        [("q1", 1, ["n2"]), ("q2", 1, ["n5"])]


def test_row_repetition_is_not_double_counted():
    repeat = mined_table().slice(6, 1).to_pylist()  # (q2, p3, n4) once more
    m = evaluate(mined_table(repeat), LABELS).metrics
    assert m["inputs"]["mined_rows"] == 9
    assert (m["false_negatives"]["negatives"], m["false_negatives"]["rate"]) == (5, approx(0.4))
    assert m["duplicates"]["repeated_rows"] == 1  # the same negative twice for the same (query, positive)
    assert evaluate(mined_table(), LABELS).metrics["duplicates"]["repeated_rows"] == 0  # per-positive copies are fine


def test_gap_uses_the_querys_lowest_positive():
    hard = evaluate(mined_table(), LABELS).metrics["hardness"]
    # q1: p = min(0.9, 0.7) = 0.7, gaps 0.1, -0.1, 0.2; q2: p = 0.5, gaps 0.1, 0.3
    gap = hard["retriever"]["gap"]
    assert gap == {"n": 5, "min": approx(-0.1), "p25": approx(0.1), "median": approx(0.1), "p75": approx(0.2),
                   "max": approx(0.3), "mean": approx(0.12)}
    assert hard["retriever"]["negatives_above_positive"] == 1
    assert hard["retriever"]["negative_score"]["median"] == approx(0.5)
    assert "cross_encoder" not in hard
    assert hard["rank"]["max"] == 3


def test_cross_encoder_scale_is_reported_separately():
    table = mined_table()
    table = table.append_column("negative_ce_score", pa.array([0.1] * table.num_rows, pa.float32()))
    table = table.append_column("positive_ce_score", pa.array([0.9] * table.num_rows, pa.float32()))
    ce = evaluate(table, LABELS).metrics["hardness"]["cross_encoder"]
    assert ce["gap"]["n"] == 5 and ce["gap"]["median"] == approx(0.8)


def test_negative_equal_to_positive_or_query_text_is_counted():
    dup = evaluate(mined_table(), LABELS).metrics["duplicates"]
    assert dup["negative_equals_positive"] == 1  # n3 is p2 (normalised), counted once though written twice
    assert dup["negative_equals_query"] == 0
    extra = [{**mined_table().slice(6, 1).to_pylist()[0], "negative_id": "n6", "negative": "What is  GAMMA"}]
    dup = evaluate(mined_table(extra), LABELS).metrics["duplicates"]
    assert (dup["negative_equals_query"], dup["repeated_rows"], dup["same_text_negatives"]) == (1, 0, 0)


def test_coverage_and_lengths():
    m = evaluate(mined_table(), LABELS).metrics
    cov = m["coverage"]
    assert cov["negatives_per_query_histogram"] == {"2": 1, "3": 1}
    assert (cov["queries"], cov["target_negatives"], cov["short_queries"], cov["short_query_ids"]) == \
        (2, 3, 1, ["q2"])
    assert cov["label_queries_not_in_mined"] == 1  # q3
    assert evaluate(mined_table(), LABELS, num_negatives=2).metrics["coverage"]["short_queries"] == 0
    assert m["lengths"]["negative_chars"]["max"] == len("  beta   PASSAGE ")


def test_integer_label_ids_match_string_ids():
    labels = pa.table({"query_id": [1], "doc_id": [7]})
    mined = pa.table({"query_id": ["1", "1"], "negative_id": ["7", "8"]})
    m = evaluate(mined, labels).metrics
    assert m["false_negatives"]["rate"] == 0.5
    assert m["hardness"] == {} and m["lengths"] is None and m["duplicates"]["repeated_rows"] is None


def test_summarize_and_dedupe_basics():
    assert summarize([float("nan")]) == {"n": 0, "min": None, "p25": None, "median": None, "p75": None,
                                         "max": None, "mean": None}
    assert summarize([1, 2, 3, 4, 5])["p25"] == 2.0
    assert mined_pairs(mined_table()).num_pairs == 5


def test_missing_columns_are_input_errors():
    with pytest.raises(InputError, match="negative_id"):
        evaluate(pa.table({"query_id": ["q"]}), LABELS)
    with pytest.raises(InputError, match="doc_id"):
        evaluate(mined_table(), pa.table({"query_id": ["q1"]}))


# ------------------------------------------------------------------------------------------------ CLI


@pytest.fixture(scope="module")
def mined_bm25(sample_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "bm25.parquet"
    mine(sample_dir, out, "--retriever", "bm25")
    return out


def test_cli_eval_on_sample_has_no_false_negatives(sample_dir, mined_bm25, tmp_path):
    report = tmp_path / "report" / "nested"
    result = runner.invoke(app, ["eval", str(mined_bm25), "--qrels", str(sample_dir / "qrels.parquet"),
                                 "--report", str(report), "--json", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics == json.loads((tmp_path / "m.json").read_text())
    fn = metrics["false_negatives"]
    assert fn["false_negatives"] == 0 and fn["rate"] == 0.0 and fn["negatives"] > 0
    assert set(fn["by_retriever"]) == {"bm25"}
    dup = metrics["duplicates"]
    assert dup["repeated_rows"] == dup["negative_equals_positive"] == dup["negative_equals_query"] == 0
    assert metrics["coverage"]["queries"] == pq.read_table(sample_dir / "queries.parquet").num_rows
    text = (report / "report.md").read_text()
    assert "## False negatives" in text and "## Hardness" in text
    if HAS_MATPLOTLIB:
        pngs = list(report.glob("*.png"))
        assert pngs and all(f"]({p.name})" in text for p in pngs)


def test_cli_eval_without_matplotlib_still_writes_the_report(sample_dir, mined_bm25, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    result = runner.invoke(app, ["eval", str(mined_bm25), "--qrels", str(sample_dir / "qrels.parquet"),
                                 "--report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "matplotlib is not installed" in (tmp_path / "report.md").read_text()
    assert not list(tmp_path.glob("*.png")) and (tmp_path / "metrics.json").exists()


def test_cli_eval_prints_a_summary_without_report(sample_dir, mined_bm25):
    result = runner.invoke(app, ["eval", str(mined_bm25), "--qrels", str(sample_dir / "qrels.parquet"),
                                 "--num-negatives", "10"])
    assert result.exit_code == 0, result.output
    assert "false negatives" in result.output and "queries with < 10 negatives" in result.output


@pytest.mark.parametrize("make,message", [
    (lambda d, t: ["eval", str(t / "nope.parquet"), "--qrels", str(d / "qrels.parquet")], "not found"),
    (lambda d, t: ["eval", str(d / "queries.parquet"), "--qrels", str(d / "qrels.parquet")],
     "missing required column 'negative_id'"),
])
def test_cli_eval_bad_input_is_one_line(sample_dir, tmp_path, make, message):
    result = runner.invoke(app, make(sample_dir, tmp_path))
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_cli_eval_bad_labels(sample_dir, mined_bm25, tmp_path):
    labels = tmp_path / "labels.parquet"
    pq.write_table(pa.table({"query_id": ["x"]}), labels)
    result = runner.invoke(app, ["eval", str(mined_bm25), "--qrels", str(labels)])
    assert result.exit_code == 2 and "missing required column 'doc_id'" in result.output
    result = runner.invoke(app, ["eval", str(mined_bm25), "--qrels", str(tmp_path / "none.parquet")])
    assert result.exit_code == 2 and "labels file" in result.output and "not found" in result.output
    (tmp_path / "file").write_text("x")
    result = runner.invoke(app, ["eval", str(mined_bm25), "--qrels", str(sample_dir / "qrels.parquet"),
                                 "--report", str(tmp_path / "file")])
    assert result.exit_code == 2 and "not a directory" in result.output


# ------------------------------------------------------------------------------------------------ filter (--before)


def test_catch_and_false_alarm_rates_of_a_filter():
    """BEFORE has five candidates: q1/n2 and q2/n5 are relevant. The filter removed q1/n2 (caught) and q1/n1
    (a false alarm): catch 1/2, false alarm 1/3."""
    before = mined_table()
    after = before.filter(pa.compute.invert(pa.compute.is_in(before.column("negative_id"), pa.array(["n1", "n2"]))))
    f = evaluate(after, LABELS, before=before).metrics["filter"]
    assert (f["candidates_before"], f["removed"], f["relevant_before"], f["caught"], f["false_alarms"]) == \
        (5, 2, 2, 1, 1)
    assert f["catch_rate"] == approx(0.5) and f["false_alarm_rate"] == approx(1 / 3)
    assert f["after_not_in_before"] == 0
    # a file that is not a subset of BEFORE is counted, not silently judged
    extra = [{**before.slice(0, 1).to_pylist()[0], "negative_id": "n9"}]
    assert evaluate(mined_table(extra), LABELS, before=before).metrics["filter"]["after_not_in_before"] == 1


def test_cli_eval_reports_the_catch_rate_of_a_filter_from_beir_labels(sample_dir, tmp_path):
    """Mine the sample twice (all 30 candidates, then through the BM25-agreement filter); labels that mark
    exactly the removed candidates relevant must give catch 100 % and no false alarm, from Parquet or BEIR."""
    window = ["--retriever", "bm25", "--range-min", "0", "--range-max", "30", "--num-negatives", "30"]
    before, after = tmp_path / "before.parquet", tmp_path / "after.parquet"
    mine(sample_dir, before, *window)
    mine(sample_dir, after, *window, "--lexical-top", "3")
    b, a = (pq.read_table(p) for p in (before, after))
    kept = set(zip(a.column("query_id").to_pylist(), a.column("negative_id").to_pylist()))
    removed = sorted(set(zip(b.column("query_id").to_pylist(), b.column("negative_id").to_pylist())) - kept)
    assert removed
    labels = tmp_path / "labels.parquet"
    pq.write_table(pa.table({"query_id": [q for q, _ in removed], "doc_id": [d for _, d in removed]}), labels)
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\n" +
                                            "".join(f"{q}\t{d}\t1\n" for q, d in removed))
    for name in ("corpus.jsonl", "queries.jsonl"):
        (beir / name).write_text("")
    for source in (["--qrels", str(labels)], ["--beir", str(beir), "--split", "dev"]):
        result = runner.invoke(app, ["eval", str(after), *source, "--before", str(before),
                                     "--json", str(tmp_path / "m.json")])
        assert result.exit_code == 0, result.output
        f = json.loads((tmp_path / "m.json").read_text())["filter"]
        assert f["catch_rate"] == 1.0 and f["false_alarm_rate"] == 0.0 and f["caught"] == len(removed)
        assert "filter catch rate" in result.output
    result = runner.invoke(app, ["eval", str(after), "--qrels", str(labels), "--before", str(tmp_path / "no.parquet")])
    assert result.exit_code == 2 and "not found" in result.output


def test_labels_for_other_queries_are_an_error_not_a_zero_rate(sample_dir, mined_bm25, tmp_path):
    """Labels whose query ids match none of the mined queries used to report 0.00 % false negatives."""
    with pytest.raises(InputError, match="none of the 2 mined queries has a label"):
        evaluate(mined_table(), pa.table({"query_id": ["x1", "x2"], "doc_id": ["n1", "n2"], "score": [1, 1]}))
    labels = tmp_path / "other.parquet"
    pq.write_table(pa.table({"query_id": ["other-1"], "doc_id": ["d"], "score": [1]}), labels)
    result = runner.invoke(app, ["eval", str(mined_bm25), "--qrels", str(labels)])
    assert result.exit_code == 2 and "has a label there" in result.output and "Traceback" not in result.output
