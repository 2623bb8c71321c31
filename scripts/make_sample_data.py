"""Build sample_data/ from the BEIR SciFact train split (see sample_data/SOURCE.md).

Takes a seeded sample of train queries, their positives, and each query's BM25 neighbours, so that the
small corpus still holds real hard negatives. Run from the repo root:
    python scripts/make_sample_data.py ../shared/datasets/scifact sample_data
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from rank_bm25 import BM25Okapi

from hnmine.engines.tokenize import tokenize_many
from hnmine.io.inputs import read_beir

NUM_QUERIES = 120
NEIGHBOURS = 4


def main(src: str, dst: str) -> None:
    queries, corpus, qrels = read_beir(src, "train")
    rng = random.Random(13)
    qids = sorted(set(qrels.column("query_id").to_pylist()), key=int)
    multi = [q for q in qids if qrels.column("query_id").to_pylist().count(q) > 1]
    chosen = sorted(set(rng.sample(multi, 15)) | set(rng.sample(qids, NUM_QUERIES - 15)), key=int)
    chosen_set = set(chosen)
    qrel_rows = [i for i, q in enumerate(qrels.column("query_id").to_pylist()) if q in chosen_set]
    qrels = qrels.take(qrel_rows)
    docs = set(qrels.column("doc_id").to_pylist())
    doc_ids = corpus.column("doc_id").to_pylist()
    texts = [f"{t} {x}" for t, x in zip(corpus.column("title").to_pylist(), corpus.column("text").to_pylist())]
    bm25 = BM25Okapi(tokenize_many(texts, stopwords=True))
    qtext = dict(zip(queries.column("query_id").to_pylist(), queries.column("query").to_pylist()))
    for q in chosen:
        scores = bm25.get_scores(tokenize_many([qtext[q]], stopwords=True)[0])
        top = sorted(range(len(scores)), key=lambda i: -scores[i])[:NEIGHBOURS]
        docs.update(doc_ids[i] for i in top)
    keep = [i for i, d in enumerate(doc_ids) if d in docs]
    corpus = corpus.take(keep)
    qrows = [i for i, q in enumerate(queries.column("query_id").to_pylist()) if q in chosen_set]
    queries = queries.take(qrows)
    out = Path(dst)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(queries, out / "queries.parquet")
    pq.write_table(corpus, out / "corpus.parquet")
    pq.write_table(qrels, out / "qrels.parquet")
    pos_text = dict(zip(corpus.column("doc_id").to_pylist(), [
        f"{t} {x}" for t, x in zip(corpus.column("title").to_pylist(), corpus.column("text").to_pylist())]))
    pairs = pa.table({
        "anchor": [qtext[q] for q in qrels.column("query_id").to_pylist()],
        "positive": [pos_text[d] for d in qrels.column("doc_id").to_pylist()],
    })
    pq.write_table(pairs, out / "pairs.parquet")
    print(f"{queries.num_rows} queries, {corpus.num_rows} docs, {qrels.num_rows} qrels, {pairs.num_rows} pairs")


if __name__ == "__main__":
    main(*sys.argv[1:3])
