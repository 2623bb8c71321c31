"""One reader for every input: each format and each ecosystem layout gives the same mining input as Parquet."""

from __future__ import annotations

import csv
import json
import re
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from hnmine.cli import app
from hnmine.errors import InputError
from hnmine.io.inputs import load_beir, load_pairs_input, load_qrels_inputs
from hnmine.io.readers import read_table
from hnmine.io.triplets import read_triplets

runner = CliRunner()


def _same(a, b) -> None:
    assert a.query_ids == b.query_ids and a.query_texts == b.query_texts
    assert a.doc_ids == b.doc_ids and a.doc_texts == b.doc_texts
    assert a.positive_offsets.tolist() == b.positive_offsets.tolist()
    assert a.positive_docs.tolist() == b.positive_docs.tolist()


def _tsv_safe(table: pa.Table) -> pa.Table:
    """TSV has no quoting: keep the rows whose texts hold no tab, line break or backslash."""
    keep = [all(not isinstance(v, str) or not set(v) & set("\t\n\r\\") for v in row.values())
            for row in table.to_pylist()]
    return table.filter(pa.array(keep))


def _write_all_formats(table: pa.Table, folder, stem: str) -> list:
    """The same rows as jsonl, json array, csv, tsv, a saved dataset and a Hub-style folder."""
    import datasets

    rows = table.to_pylist()
    paths = []
    p = folder / f"{stem}.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    paths.append(p)
    p = folder / f"{stem}.json"
    p.write_text(json.dumps(rows), encoding="utf-8")
    paths.append(p)
    p = folder / f"{stem}.csv"
    with p.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(table.column_names)
        writer.writerows([[r[c] for c in table.column_names] for r in rows])
    paths.append(p)
    p = folder / f"{stem}.tsv"
    lines = ["\t".join(table.column_names)] + ["\t".join(str(r[c]) for c in table.column_names) for r in rows]
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    paths.append(p)
    saved = folder / f"{stem}_saved"
    datasets.Dataset(table).save_to_disk(str(saved))
    paths.append(saved)
    hub = folder / f"{stem}_hub"
    (hub / "data").mkdir(parents=True)
    pq.write_table(table, hub / "data" / "train-00000-of-00001.parquet")
    paths.append(hub)
    return paths


def test_pairs_in_every_format_load_like_parquet(sample_dir, tmp_path):
    table = pq.read_table(sample_dir / "pairs.parquet")
    table = _tsv_safe(table)
    pq.write_table(table, tmp_path / "pairs.parquet")
    reference = load_pairs_input(tmp_path / "pairs.parquet")
    for path in _write_all_formats(table, tmp_path, "pairs"):
        _same(load_pairs_input(path), reference)


def test_qrels_inputs_in_every_format_load_like_parquet(sample_dir, tmp_path):
    names = ("queries", "corpus", "qrels")
    tables = {n: _tsv_safe(pq.read_table(sample_dir / f"{n}.parquet")) for n in names}
    for n in names:
        pq.write_table(tables[n], tmp_path / f"{n}.parquet")
    reference = load_qrels_inputs(*(tmp_path / f"{n}.parquet" for n in names))
    written = {n: _write_all_formats(tables[n], tmp_path, n) for n in names}
    for i in range(len(written["queries"])):
        _same(load_qrels_inputs(*(written[n][i] for n in names)), reference)


def test_beir_column_names_are_recognised_in_plain_files(tmp_path):
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "what is a?"}\n')
    (tmp_path / "corpus.jsonl").write_text('{"_id": "a", "title": "", "text": "A."}\n{"_id": "b", "text": "B."}\n')
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\ta\t1\n")
    data = load_qrels_inputs(tmp_path / "queries.jsonl", tmp_path / "corpus.jsonl", tmp_path / "qrels.tsv")
    assert data.query_ids == ["q1"] and data.doc_ids == ["a", "b"] and data.positives_of(0).tolist() == [0]


def test_flagembedding_jsonl_as_pairs_explodes_pos_lists_and_never_splits_a_string(tmp_path):
    path = tmp_path / "fe.jsonl"
    path.write_text(json.dumps({"query": "q1", "pos": ["p1", "p2"], "neg": ["n1"]}) + "\n"
                    + json.dumps({"query": "q2", "pos": ["p3"], "neg": []}) + "\n")
    data = load_pairs_input(path)
    assert data.query_texts == ["q1", "q2"] and data.doc_texts == ["p1", "p2", "p3"]
    assert data.positive_counts.tolist() == [2, 1]
    path.write_text(json.dumps({"query": "q1", "pos": "a whole passage"}) + "\n")
    assert load_pairs_input(path).doc_texts == ["a whole passage"]


def test_sentence_transformers_triplets_need_no_column_flags(tmp_path):
    path = tmp_path / "st.parquet"
    pq.write_table(pa.table({"anchor": ["q1", "q1"], "positive": ["p", "p"], "negative": ["n1", "n2"]}), path)
    triplets = read_triplets(path)
    assert triplets.data.query_texts == ["q1"] and triplets.table.column_names == ["anchor", "positive", "negative"]


def test_ntuple_and_flagembedding_triplet_inputs_are_exploded(tmp_path):
    nt = tmp_path / "nt.parquet"
    pq.write_table(pa.table({"anchor": ["q1"], "positive": ["p"], "negative_1": ["n1"], "negative_2": ["n2"]}), nt)
    fe = tmp_path / "fe.jsonl"
    fe.write_text(json.dumps({"query": "q1", "pos": ["p"], "neg": ["n1", "n2"]}) + "\n")
    for path in (nt, fe):
        t = read_triplets(path).table.to_pydict()
        assert t == {"query": ["q1", "q1"], "positive": ["p", "p"], "negative": ["n1", "n2"]}


def test_cli_denoise_reads_sentence_transformers_output(tmp_path, tiny_cross_encoder):
    path = tmp_path / "st.jsonl"
    rows = [{"anchor": "what is a?", "positive": "A is a letter.", "negative": n} for n in ("B too.", "what is a?")]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.parquet"
    result = runner.invoke(app, ["denoise", str(path), "--output", str(out), "--cross-encoder", tiny_cross_encoder,
                                 "--max-score", "1.0", "--quiet"])
    assert result.exit_code == 0, result.output
    kept = pq.read_table(out).to_pydict()
    assert kept["anchor"] == ["what is a?"] and kept["negative"] == ["B too."]  # the query itself is dropped


def test_cli_mine_reads_pairs_jsonl(sample_dir, tmp_path):
    rows = pq.read_table(sample_dir / "pairs.parquet").slice(0, 40).to_pylist()
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "o.parquet"
    result = runner.invoke(app, ["mine", "--pairs", str(pairs), "--corpus", str(sample_dir / "corpus.parquet"),
                                 "--retriever", "bm25", "--output", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert pq.read_table(out).num_rows > 0


def test_cli_eval_takes_beir_labels(tmp_path):
    mined = tmp_path / "mined.parquet"
    pq.write_table(pa.table({"query": ["x", "x"], "positive": ["p", "p"], "negative": ["n1", "n2"],
                             "query_id": ["q1", "q1"], "negative_id": ["d1", "d2"]}), mined)
    (tmp_path / "beir" / "qrels").mkdir(parents=True)
    (tmp_path / "beir" / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td2\t1\nq1\tp\t1\n")
    report = tmp_path / "m.json"
    result = runner.invoke(app, ["eval", str(mined), "--beir", str(tmp_path / "beir"), "--split", "dev",
                                 "--json", str(report)])
    assert result.exit_code == 0, result.output
    assert json.loads(report.read_text())["false_negatives"]["false_negatives"] == 1
    result = runner.invoke(app, ["eval", str(mined)])
    assert result.exit_code == 2 and "give exactly one of --qrels LABELS and --beir DIR" in result.output


@pytest.mark.parametrize("content, suffix, message", [
    ('{"anchor": "a", "positive": "p"}\n{"anchor": "b", \n', ".jsonl", "line 2 is not valid JSON"),
    ('{"anchor": "a", "positive": "p"}\n{"anchor": 3, "positive": "p"}\n', ".jsonl",
     "line 2: field 'anchor' is a JSON int, earlier lines have a str"),
    ('[{"anchor": "a", "positive": "p"}, 4]', ".json", "item 1 (0-based) of the array is not a JSON object"),
    ("anchor,positive\na,\n", ".csv", "column 'positive' row 0 (0-based) is empty"),
    ("x", ".xlsx", "unknown format '.xlsx'"),
])
def test_bad_inputs_name_the_file_and_line(tmp_path, content, suffix, message):
    path = tmp_path / f"pairs{suffix}"
    path.write_text(content)
    with pytest.raises(InputError, match=re.escape(message)) as info:
        load_pairs_input(path)
    assert str(path) in str(info.value)


def test_bad_qrels_score_in_csv_names_the_row(tmp_path):
    (tmp_path / "q.csv").write_text("query_id,query\n1,x?\n")
    (tmp_path / "c.csv").write_text("doc_id,text\na,A\n")
    (tmp_path / "r.csv").write_text("query_id,doc_id,score\n1,a,high\n")
    with pytest.raises(InputError, match=r"r.csv: column 'score' row 0 \(0-based\): 'high' is not a number"):
        load_qrels_inputs(tmp_path / "q.csv", tmp_path / "c.csv", tmp_path / "r.csv")


def test_dataset_folder_without_datasets_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "ds").mkdir()
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(InputError, match=r"needs the 'datasets' package \(pip install 'hnmine\[datasets\]'\)"):
        read_table(tmp_path / "ds", "pairs")


def test_beir_folder_given_as_a_file_input_says_use_beir(tmp_path):
    (tmp_path / "corpus.jsonl").write_text('{"_id": "a", "text": "A"}\n')
    (tmp_path / "queries.jsonl").write_text('{"_id": "q", "text": "Q"}\n')
    with pytest.raises(InputError, match="is a BEIR folder; pass it as --beir"):
        load_pairs_input(tmp_path)
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "train.tsv").write_text("q\ta\t1\n")
    assert load_beir(tmp_path).num_queries == 1


def test_dataset_dict_split_is_chosen_or_named(tmp_path):
    import datasets

    table = pa.table({"anchor": ["a"], "positive": ["p"]})
    dd = datasets.DatasetDict({"dev": datasets.Dataset(table), "test": datasets.Dataset(table)})
    dd.save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(InputError, match="several splits; choose one of dev, test"):
        read_table(tmp_path / "dd", "pairs")
    assert read_table(tmp_path / "dd", "pairs", split="test").num_rows == 1
