"""Bad input: each case is one clear message naming the file, column and row."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hnmine.errors import InputError
from hnmine.io.inputs import load_beir, load_pairs_input, load_qrels_inputs


def write(path: Path, **columns) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


@pytest.fixture
def good(tmp_path):
    q = write(tmp_path / "q.parquet", query_id=["1", "2"], query=["what is a?", "what is b?"])
    c = write(tmp_path / "c.parquet", doc_id=["a", "b", "c"], text=["A is a letter.", "B too.", "C as well."],
              title=["A", "", "C"])
    r = write(tmp_path / "r.parquet", query_id=["1", "2", "2"], doc_id=["a", "b", "c"], score=[1, 1, 0])
    return q, c, r


def test_good_inputs_load_with_titles_prepended_and_zero_scores_ignored(good):
    data = load_qrels_inputs(*good)
    assert data.doc_texts == ["A A is a letter.", "B too.", "C C as well."]
    assert data.positives_of(0).tolist() == [0] and data.positives_of(1).tolist() == [1]


def test_integer_ids_are_accepted(tmp_path):
    q = write(tmp_path / "q.parquet", query_id=[1], query=["x?"])
    c = write(tmp_path / "c.parquet", doc_id=[10, 11], text=["ten", "eleven"])
    r = write(tmp_path / "r.parquet", query_id=[1], doc_id=[10])
    assert load_qrels_inputs(q, c, r).doc_ids == ["10", "11"]


def test_missing_file(good, tmp_path):
    with pytest.raises(InputError, match=r"queries file .*nope.parquet: not found"):
        load_qrels_inputs(tmp_path / "nope.parquet", good[1], good[2])


def test_not_parquet(good, tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_text("query_id,query\n1,x\n")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        load_qrels_inputs(bad, good[1], good[2])


def test_missing_column_lists_present_columns(good, tmp_path):
    c = write(tmp_path / "c2.parquet", doc_id=["a"], body=["x"])
    with pytest.raises(InputError, match=r"missing required column 'text' \(columns present: doc_id, body\)"):
        load_qrels_inputs(good[0], c, good[2])


def test_wrong_column_type(good, tmp_path):
    c = write(tmp_path / "c2.parquet", doc_id=["a"], text=[1.5])
    with pytest.raises(InputError, match="column 'text' has type double"):
        load_qrels_inputs(good[0], c, good[2])


@pytest.mark.parametrize("text,what", [(None, "null"), ("   ", "empty")])
def test_null_or_empty_text_names_row_and_id(good, tmp_path, text, what):
    c = write(tmp_path / "c2.parquet", doc_id=["a", "b"], text=pa.array(["fine", text], pa.string()))
    with pytest.raises(InputError, match=rf"column 'text' row 1 \(0-based\) \(doc_id='b'\) is {what}"):
        load_qrels_inputs(good[0], c, good[2])


def test_duplicate_ids(good, tmp_path):
    c = write(tmp_path / "c2.parquet", doc_id=["a", "b", "a"], text=["x", "y", "z"])
    with pytest.raises(InputError, match=r"duplicate doc_id 'a' in rows 0 and 2"):
        load_qrels_inputs(good[0], c, good[2])


@pytest.mark.parametrize("qid,did,what", [("9", "a", "query_id '9'"), ("1", "zz", "doc_id 'zz'")])
def test_qrels_naming_unknown_ids(good, tmp_path, qid, did, what):
    r = write(tmp_path / "r2.parquet", query_id=["1", qid], doc_id=["a", did])
    with pytest.raises(InputError, match=f"row 1 .*names {what}"):
        load_qrels_inputs(good[0], good[1], r)


def test_empty_corpus(good, tmp_path):
    c = write(tmp_path / "c2.parquet", doc_id=pa.array([], pa.string()), text=pa.array([], pa.string()))
    with pytest.raises(InputError, match="corpus is empty"):
        load_qrels_inputs(good[0], c, good[2])


def test_pairs_file_derives_ids_and_merges_positive_with_identical_corpus_text(tmp_path):
    p = write(tmp_path / "p.parquet", anchor=["q one", "q one", "q two"],
              positive=["Doc A.", "Doc B.", "Doc A."])
    c = write(tmp_path / "c.parquet", doc_id=["x1", "x2"], text=["doc a.", "Unrelated."])
    data = load_pairs_input(p, c)
    assert data.num_queries == 2
    assert data.doc_ids[:2] == ["x1", "x2"] and data.num_docs == 3  # "Doc A." is x1; "Doc B." is new
    assert data.positives_of(0).tolist() == [0, 2] and data.positives_of(1).tolist() == [0]
    assert data.query_ids[0].startswith("q") and data.doc_ids[2].startswith("d")


def test_pairs_file_accepts_query_column(tmp_path):
    p = write(tmp_path / "p.parquet", query=["q"], positive=["d"])
    assert load_pairs_input(p).num_queries == 1


def test_beir_folder_loads_split_only(tmp_path):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text(
        '{"_id": "d1", "title": "T", "text": "one"}\n{"_id": "d2", "title": "", "text": "two"}\n')
    (tmp_path / "queries.jsonl").write_text(
        '{"_id": "1", "text": "q1", "metadata": {"d1": []}}\n{"_id": "2", "text": "q2"}\n')
    (tmp_path / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\r\n1\td1\t1\r\n")
    data = load_beir(tmp_path, "train")
    assert data.query_ids == ["1"] and data.doc_texts == ["T one", "two"]
    with pytest.raises(InputError, match="no qrels for split 'test'"):
        load_beir(tmp_path, "test")
