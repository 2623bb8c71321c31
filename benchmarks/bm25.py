"""Build and query time of the two BM25 backends on a synthetic corpus grown from SciFact.

SciFact has only 5,183 abstracts, too few to show how the backends scale, so the corpus is grown by sampling
abstracts with replacement and perturbing each copy (a random subset of its sentences plus one sentence from
another abstract, shuffled): documents then differ in their bags of words, not just in word order, which BM25
would ignore. Queries are SciFact's claims. rank-bm25 needs ~0.1 s per query at 20k documents, so it answers
only a subsample of the queries and its time is extrapolated to 1,000 queries; the top-k lists of both
backends are compared on that subsample.

    python benchmarks/bm25.py --docs 100000 --queries 1000 --k 100

``--vs-bm25s`` measures something else, side by side in alternated child processes: hnmine's whole BM25 mining
job through its CLI (read Parquet, tokenize, index, retrieve, exclude positives, rank window, select, write
triplets; no cache) against bm25s's bare ``tokenize`` + ``index`` + ``retrieve`` on the same texts (read from the
same Parquet files), both free to use every core (bm25s ``n_threads`` = cores), same ``k``, the same stopword
setting for both. Wall time and peak RSS per run, medians over ``--repeats``:

    python benchmarks/bm25.py --vs-bm25s --docs 200000 --queries 20000 --k 100 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hnmine.engines.bm25_index import build_bm25_index  # noqa: E402
from hnmine.engines.tokenize import tokenize_many  # noqa: E402

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


def write_inputs(out: Path, n_docs: int, n_queries: int, seed: int) -> None:
    """Corpus, queries and qrels as Parquet, from the scale benchmark's generator (distinct query texts)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sys.path.insert(0, str(REPO / "benchmarks"))
    from scale import read_jsonl as read
    from scale import synthetic_passages, synthetic_queries

    docs = synthetic_passages(read(DEFAULT_DIR / "corpus.jsonl"), n_docs, seed)
    claims = [q["text"] for q in read(DEFAULT_DIR / "queries.jsonl")]
    queries, pairs = synthetic_queries(claims, n_queries, n_docs, seed)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"doc_id": [f"d{i}" for i in range(n_docs)], "text": docs}), out / "corpus.parquet")
    pq.write_table(pa.table({"query_id": [f"q{i}" for i in range(n_queries)], "query": queries}),
                   out / "queries.parquet")
    pq.write_table(pa.table({"query_id": [f"q{q}" for q, _ in pairs], "doc_id": [f"d{d}" for _, d in pairs],
                             "score": [1] * len(pairs)}), out / "qrels.parquet")


def _bm25s_child(data: Path, k: int, stopwords: bool) -> dict:
    """bm25s's bare tokenize + index + retrieve (no exclusion, no window, nothing written)."""
    import os

    import bm25s
    import pyarrow.parquet as pq

    start = time.perf_counter()
    corpus = pq.read_table(data / "corpus.parquet", columns=["text"]).column("text").to_pylist()
    queries = pq.read_table(data / "queries.parquet", columns=["query"]).column("query").to_pylist()
    read = time.perf_counter() - start
    stop = "english" if stopwords else None
    t0 = time.perf_counter()
    corpus_tokens = bm25s.tokenize(corpus, stopwords=stop, show_progress=False)
    retriever = bm25s.BM25()
    retriever.index(corpus_tokens, show_progress=False)
    index = time.perf_counter() - t0
    t0 = time.perf_counter()
    query_tokens = bm25s.tokenize(queries, stopwords=stop, show_progress=False)
    docs, _ = retriever.retrieve(query_tokens, k=k, n_threads=len(os.sched_getaffinity(0)), show_progress=False)
    retrieve = time.perf_counter() - t0
    return {"read_s": read, "index_s": index, "retrieve_s": retrieve, "shape": list(docs.shape)}


def _hnmine_child(data: Path, k: int, stopwords: bool, out: Path) -> dict:
    """hnmine's CLI, exactly as a user runs it, in this process."""
    import runpy

    sys.argv = ["hnmine", "mine", "--queries", str(data / "queries.parquet"), "--corpus", str(data / "corpus.parquet"),
                "--qrels", str(data / "qrels.parquet"), "--output", str(out), "--overwrite", "--retriever", "bm25",
                "--top-k", str(k), "--no-cache", "--quiet", *(["--stopwords"] if stopwords else [])]
    try:
        runpy.run_module("hnmine", run_name="__main__")
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    return {"output_bytes": out.stat().st_size}


def child_main(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    if args.child == "bm25s":
        result = _bm25s_child(args.data, args.k, args.stopwords)
    else:
        result = _hnmine_child(args.data, args.k, args.stopwords, args.data / "hnmine_out.parquet")
    result["wall_s"] = time.perf_counter() - start
    result["peak_rss_mib"] = peak_rss_mib()
    result["peak_rss_children_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    result["cpu_s"] = sum(u.ru_utime + u.ru_stime for u in usage)  # both cores' seconds, worker processes included
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def vs_bm25s(args: argparse.Namespace) -> int:
    import statistics
    import subprocess
    import tempfile

    data = Path(tempfile.mkdtemp(prefix="hnmine-bm25s-", dir=args.tmp_dir))
    t0 = time.perf_counter()
    write_inputs(data, args.docs, args.queries, args.seed)
    print(f"inputs: {args.docs:,} passages, {args.queries:,} queries (distinct texts) in {data} "
          f"({time.perf_counter() - t0:.0f} s, not timed); k={args.k}, stopwords "
          f"{'removed (English list)' if args.stopwords else 'kept'} for both", flush=True)
    runs: dict[str, list[dict]] = {"hnmine": [], "bm25s": []}
    for rep in range(args.repeats):
        for tool in (("hnmine", "bm25s") if rep % 2 == 0 else ("bm25s", "hnmine")):
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", tool, "--data", str(data), "--k",
                   str(args.k), *(["--stopwords"] if args.stopwords else [])]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                print(proc.stdout[-2000:], proc.stderr[-4000:])
                raise SystemExit(f"{tool} run failed")
            result = json.loads(line[len("RESULT "):])
            result["load_avg"] = os.getloadavg()[0]
            runs[tool].append(result)
            print(f"repeat {rep + 1} {tool:>6}: {result['wall_s']:.1f} s, peak RSS {result['peak_rss_mib']:,.0f} MiB "
                  f"(+ workers {result['peak_rss_children_mib']:,.0f} MiB), load {result['load_avg']:.1f}", flush=True)
    med = {tool: statistics.median(r["wall_s"] for r in rs) for tool, rs in runs.items()}
    rss = {tool: statistics.median(r["peak_rss_mib"] for r in rs) for tool, rs in runs.items()}
    print()
    print(f"hnmine end to end (read, index, retrieve, exclude, window, select, write): {med['hnmine']:.1f} s, "
          f"peak RSS {rss['hnmine']:,.0f} MiB")
    b = runs["bm25s"][0]
    print(f"bm25s tokenize + index + retrieve only: {med['bm25s']:.1f} s (index {b['index_s']:.1f} s, retrieve "
          f"{b['retrieve_s']:.1f} s in the first run), peak RSS {rss['bm25s']:,.0f} MiB")
    print(f"ratio bm25s / hnmine: {med['bm25s'] / med['hnmine']:.2f}x (medians of {args.repeats} alternated runs)")
    if args.json:
        args.json.write_text(json.dumps({"docs": args.docs, "queries": args.queries, "k": args.k,
                                         "stopwords": args.stopwords, "runs": runs, "median_wall_s": med,
                                         "median_peak_rss_mib": rss, "cpus": os.cpu_count(),
                                         "ratio_bm25s_over_hnmine": med["bm25s"] / med["hnmine"]}, indent=2) + "\n",
                             encoding="utf-8")
    import shutil

    shutil.rmtree(data, ignore_errors=True)
    return 0


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
    parser.add_argument("--vs-bm25s", action="store_true", help="hnmine's whole BM25 job vs bm25s, side by side")
    parser.add_argument("--repeats", type=int, default=2, help="alternated runs per tool (--vs-bm25s)")
    parser.add_argument("--json", type=Path, default=None, help="write the --vs-bm25s results here")
    parser.add_argument("--tmp-dir", default=None, help="where --vs-bm25s writes its inputs (deleted after)")
    parser.add_argument("--child", choices=["hnmine", "bm25s"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(args)
    if args.vs_bm25s:
        return vs_bm25s(args)

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
