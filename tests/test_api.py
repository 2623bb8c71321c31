"""The Python API as the README shows it: stages composed by hand, no CLI."""

import pyarrow.parquet as pq

from hnmine import BM25Retriever, NegativeSelector, Pipeline, PositiveExcluder, RankWindow, load_qrels_inputs


def test_readme_api_example(sample_dir):
    data = load_qrels_inputs(sample_dir / "queries.parquet", sample_dir / "corpus.parquet",
                             sample_dir / "qrels.parquet")
    pipeline = Pipeline([BM25Retriever(top_k=40), PositiveExcluder(), RankWindow(range_min=5, range_max=30),
                         NegativeSelector(num_negatives=3)])
    triplets = pipeline.triplets(data)
    assert triplets.column_names[:3] == ["query", "positive", "negative"]
    qrels = pq.read_table(sample_dir / "qrels.parquet").to_pydict()
    positives = set(zip(qrels["query_id"], qrels["doc_id"]))
    rows = triplets.to_pydict()
    assert not positives & set(zip(rows["query_id"], rows["negative_id"]))
    assert set(rows["negative_rank"]) <= set(range(6, 31))
    assert pipeline.report.negatives_emitted == len(set(zip(rows["query_id"], rows["negative_id"])))
