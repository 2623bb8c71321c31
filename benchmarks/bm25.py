"""Build and query time of the two BM25 backends on a synthetic corpus grown from SciFact.

SciFact has only 5,183 abstracts, too few to show how the backends scale, so the corpus is grown by sampling
abstracts with replacement and perturbing each copy (a random subset of its sentences plus one sentence from
another abstract, shuffled): documents then differ in their bags of words, not just in word order, which BM25
would ignore. Queries are SciFact's claims. rank-bm25 needs ~0.1 s per query at 20k documents, so it answers
only a subsample of the queries and its time is extrapolated to 1,000 queries; the top-k lists of both
backends are compared on that subsample.

    python benchmarks/bm25.py --docs 100000 --queries 1000 --k 100
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hnmine.bm25_index import build_bm25_index  # noqa: E402
from hnmine.tokenize import tokenize_many  # noqa: E402

DEFAULT_DIR = REPO.parent / "shared" / "datasets" / "scifact"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def synthetic_corpus(passages: list[dict], n_docs: int, rng: np.random.Generator) -> list[str]:
    """``n_docs`` documents, each a perturbed copy of a SciFact abstract drawn with replacement."""
    titles = [(p.get("title") or "").strip() for p in passages]
    sentences = [[s for s in _SENTENCE_END.split(p["text"]) if s] for p in passages]
    base = rng.integers(0, len(passages), size=n_docs)
    donor = rng.integers(0, len(passages), size=n_docs)
    docs = []
    for i, j in zip(base.tolist(), donor.tolist(), strict=True):
        own = sentences[i]
        keep = [s for s in own if rng.random() < 0.8] or [own[int(rng.integers(len(own)))]]
        extra = sentences[j][int(rng.integers(len(sentences[j])))]
        body = [*keep, extra]
        rng.shuffle(body)
        docs.append(f"{titles[i]} {' '.join(body)}".strip())
    return docs


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=100_000, help="synthetic corpus size")
    parser.add_argument("--queries", type=int, default=1000, help="queries for the sparse backend")
    parser.add_argument("--k", type=int, default=100, help="top-k per query")
    parser.add_argument("--rank-queries", type=int, default=50,
                        help="queries rank-bm25 answers (its time is extrapolated to 1k)")
    parser.add_argument("--corpus-jsonl", type=Path, default=DEFAULT_DIR / "corpus.jsonl")
    parser.add_argument("--queries-jsonl", type=Path, default=DEFAULT_DIR / "queries.jsonl")
    parser.add_argument("--stopwords", action="store_true", help="drop English stopwords when tokenizing")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    passages = read_jsonl(args.corpus_jsonl)
    claims = [q["text"] for q in read_jsonl(args.queries_jsonl)]
    query_texts = [claims[i % len(claims)] for i in range(args.queries)]  # cycles if more are asked for

    t0 = time.perf_counter()
    docs = synthetic_corpus(passages, args.docs, rng)
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    corpus_tokens = tokenize_many(docs, stopwords=args.stopwords)
    query_tokens = tokenize_many(query_texts, stopwords=args.stopwords)
    t_tok = time.perf_counter() - t0
    del docs
    n_tokens = sum(map(len, corpus_tokens))
    print(f"corpus: {args.docs:,} docs from {len(passages):,} SciFact abstracts, {n_tokens:,} tokens "
          f"({n_tokens / max(args.docs, 1):.0f}/doc), stopwords {'removed' if args.stopwords else 'kept'}; "
          f"{len(query_tokens):,} queries, k={args.k}")
    print(f"generate {t_gen:.1f} s, tokenize {t_tok:.1f} s; peak RSS so far {peak_rss_mib():,.0f} MiB")

    t0 = time.perf_counter()
    sparse = build_bm25_index(corpus_tokens, backend="sparse")
    sparse_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    sparse_idx, sparse_scores = sparse.top_k(query_tokens, args.k)
    sparse_query = time.perf_counter() - t0
    sparse_per_1k = sparse_query / max(len(query_tokens), 1) * 1000
    rss_sparse = peak_rss_mib()

    n_rank = min(args.rank_queries, len(query_tokens))
    t0 = time.perf_counter()
    ref = build_bm25_index(corpus_tokens, backend="rank-bm25")
    rank_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    rank_idx, rank_scores = ref.top_k(query_tokens[:n_rank], args.k)
    rank_query = time.perf_counter() - t0
    rank_per_1k = rank_query / max(n_rank, 1) * 1000
    rss_rank = peak_rss_mib()

    same_ids = bool(np.array_equal(sparse_idx[:n_rank], rank_idx))
    max_diff = float(np.max(np.abs(sparse_scores[:n_rank] - rank_scores), initial=0.0))
    close = bool(np.allclose(sparse_scores[:n_rank], rank_scores, rtol=1e-9, atol=1e-9))

    print()
    print(f"{'backend':<10} {'build (s)':>10} {'query (s/1k queries)':>22}  queried")
    print(f"{'sparse':<10} {sparse_build:>10.2f} {sparse_per_1k:>22.2f}  "
          f"{len(query_tokens):,} queries, measured")
    print(f"{'rank-bm25':<10} {rank_build:>10.2f} {rank_per_1k:>22.2f}  {n_rank:,} queries, "
          f"extrapolated to 1k ({rank_query:.1f} s measured)")
    print(f"{'speed-up':<10} {rank_build / sparse_build:>9.1f}x {rank_per_1k / sparse_per_1k:>21.1f}x  "
          f"(rank-bm25 / sparse)")
    print()
    print(f"top-{args.k} identical on the {n_rank} queries both ran: {same_ids}; "
          f"max |score diff| {max_diff:.3g}; allclose(rtol=1e-9, atol=1e-9): {close}")
    print(f"peak RSS: {rss_sparse:,.0f} MiB after sparse build+query, {rss_rank:,.0f} MiB after rank-bm25")
    return 0 if same_ids and close else 1


if __name__ == "__main__":
    raise SystemExit(main())
