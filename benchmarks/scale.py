"""How hnmine's time and peak memory grow with the corpus: 10k -> 100k -> 1M passages, BM25 and dense.

What is measured, per corpus size and per pipeline, each in its own fresh child process (so that a peak RSS
belongs to exactly one size and one pipeline; the child reports ``getrusage(RUSAGE_SELF).ru_maxrss``):

* ``data``: building the synthetic input, i.e. sampling SciFact abstracts into passages and
  ``MiningData.from_pairs``. It stands in for reading a corpus from disk and is benchmark code, not hnmine;
* ``prepare``: ``Pipeline.prepare``, split into its two parts. BM25: tokenizing the queries
  (``tokenize_many``) and building the sparse index (``build_bm25_index``, which tokenizes the corpus as a
  stream while it indexes). Dense: loading the precomputed
  embeddings (``load_embeddings``) and building the exact FAISS index (``IndexFlatIP``);
* ``mine``: every chunk through ``Pipeline.run_chunk``: the wall time, and per stage kind the sum of the
  seconds the pipeline report records (retrieve, exclude_positives, rank_window, select). The exclude_positives
  stage fingerprints candidate and positive texts on demand (``MiningData.doc_keys_of``); that part is reported
  separately;
* ``write``: triplet Parquet (audit columns on) through ``MinedWriter`` inside ``atomic_path``, the way the CLI
  writes, including close and rename;
* peak RSS of the child, and the peak after each phase, so the phase that sets the peak is visible. Linux
  starts a child's ``ru_maxrss`` from its parent's peak at spawn time, so the parent stays small (the
  embeddings are written by a process of their own); ``VmHWM`` of the child is recorded as a cross-check.

The pipelines are (a) ``BM25Retriever(top_k=61) -> PositiveExcluder -> RankWindow(10, 50) ->
NegativeSelector(5)`` and (b) the same with ``DenseRetriever(top_k=61, index="flat")`` fed precomputed
embeddings. The embeddings are seeded random unit vectors (dim 384, float32, written to .npy in a temporary
directory beforehand), so no encoder runs: encoding 1M passages on a CPU would take hours and would measure
the model, not hnmine. Dense candidates are therefore meaningless; their cost is that of real ones.

Why: the question is whether mining a 1M-passage corpus end to end fits a laptop-class machine. The target
checked is 1M passages mined (BM25, and dense from precomputed embeddings) under 8 GiB peak RSS; the script
prints PASS/FAIL for it.

Input: passages are SciFact abstracts drawn with replacement, each copy perturbed (about 80% of its sentences
kept, one sentence of another abstract added, all shuffled) so that documents differ as bags of words, not
only in word order. Queries are SciFact claims (sampled with replacement when more are asked for than exist),
each with one random positive passage, about 10% with 2 or 3.

Memory safety: the machine may be shared and has no swap to fall back on, so the parent polls each child's
RSS and kills it (SIGKILL, that child only) when it passes ``--mem-limit-gib`` (default: the memory available
at start minus 2 GiB) or when the host's available memory drops under 1 GiB; the run is then reported as
failed with the RSS it had reached and the phase it was in. A child is also stopped after ``--child-timeout``.

    .venv/bin/python benchmarks/scale.py --sizes 10000,100000,1000000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SCIFACT = REPO.parent / "shared" / "datasets" / "scifact"
RESULTS = REPO / "benchmarks" / "results"
TARGET_SIZE = 1_000_000
TARGET_MIB = 8 * 1024
PIPELINES = ("bm25", "dense")
STAGE_KINDS = ("bm25", "dense", "exclude_positives", "rank_window", "select")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_MIB = 2**20


# --------------------------------------------------------------------------------------------------- helpers


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def rss_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def proc_status_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MiB; (0, 0) once it is gone."""
    rss = hwm = 0.0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) / 1024
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) / 1024
    except OSError:
        pass
    return rss, hwm


def mem_available_mib() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ------------------------------------------------------------------------------------------- synthetic input


def synthetic_passages(abstracts: list[dict], n: int, seed: int) -> list[str]:
    """``n`` passages, each a perturbed copy of a SciFact abstract drawn with replacement.

    Per passage: its abstract's title, about 80% of its sentences and one sentence of another abstract, in
    shuffled order. Python's ``random`` is used per passage: numpy's per-call overhead costs seconds at 1M, and
    drawing every number up front in bulk would itself take gigabytes at that size.
    """
    rnd = random.Random(f"{seed}-{n}-passages")
    titles = [(a.get("title") or "").strip() for a in abstracts]
    sentences = [[s for s in _SENTENCE_END.split(a["text"]) if s] or [a["text"]] for a in abstracts]
    n_abstracts = len(abstracts)
    out = []
    for _ in range(n):
        i = rnd.randrange(n_abstracts)
        own, extra = sentences[i], sentences[rnd.randrange(n_abstracts)]
        body = [s for s in own if rnd.random() >= 0.2] or [own[rnd.randrange(len(own))]]
        body.append(extra[rnd.randrange(len(extra))])
        rnd.shuffle(body)
        out.append(f"{titles[i]} {' '.join(body)}")
    return out


def synthetic_queries(claims: list[str], n_queries: int, n_docs: int, seed: int) -> tuple[list[str], list]:
    """Query texts and (query, doc) positive pairs: one random positive each, about 10% with 2 or 3."""
    rng = np.random.default_rng([seed, n_docs, 2])
    replace = n_queries > len(claims)
    texts = [claims[i] for i in rng.choice(len(claims), size=n_queries, replace=replace).tolist()]
    if replace:
        # More queries than claims: each query is a claim plus three words of another claim, so that the texts
        # stay distinct (no tool can answer a repeated query from a cache) and BM25 scores different term sets.
        words = [c.split() for c in claims]
        donors = rng.integers(0, len(claims), size=n_queries).tolist()
        picks = rng.random((n_queries, 3))
        texts = [f"{t} {' '.join(words[j][int(r * len(words[j]))] for r in pick)}"
                 for t, j, pick in zip(texts, donors, picks.tolist())]
    counts = np.ones(n_queries, dtype=np.int64)
    multi = rng.random(n_queries) < 0.10
    counts[multi] = rng.integers(2, 4, size=int(multi.sum()))
    pairs = []
    for q, c in enumerate(counts.tolist()):
        for d in rng.choice(n_docs, size=c, replace=False).tolist():
            pairs.append((q, d))
    return texts, pairs


def write_unit_embeddings(path: Path, n: int, dim: int, seed: int, chunk: int = 65_536) -> None:
    """Seeded random unit vectors, float32, written chunk by chunk so the writer never holds them all."""
    rng = np.random.default_rng(seed)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    for start in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - start), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:start + len(block)] = block
    out.flush()
    del out


# --------------------------------------------------------------------------------------------------- child


def _instrument(detail: dict, save) -> None:
    """Time the parts of ``prepare`` and the corpus fingerprinting from outside, without changing them."""
    import functools

    import hnmine.stages.bm25 as bm25_mod
    import hnmine.stages.dense as dense_mod
    from hnmine.data import MiningData

    def timed(name: str, func, count_tokens: bool = False):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            _say(f"prepare: {name}" if name != "doc_keys" else "mine+write: doc_keys")
            start = time.perf_counter()
            result = func(*args, **kwargs)
            detail[name] = detail.get(name, 0.0) + time.perf_counter() - start
            if count_tokens:
                detail["tokens"] = detail.get("tokens", 0) + sum(map(len, result))
            detail[f"rss_peak_after_{name}_mib"] = round(rss_peak_mib(), 1)
            save()
            return result
        return wrapper

    bm25_mod.tokenize_many = timed("tokenize", bm25_mod.tokenize_many, count_tokens=True)
    bm25_mod.build_bm25_index = timed("bm25_index", bm25_mod.build_bm25_index)
    dense_mod.load_embeddings = timed("load_embeddings", dense_mod.load_embeddings)
    dense_mod.DenseRetriever._build_index = timed("faiss_index", dense_mod.DenseRetriever._build_index)
    MiningData.doc_keys_of = timed("doc_keys", MiningData.doc_keys_of)


def _say(msg: str) -> None:
    print(f"@{msg}", flush=True)


def child(args: argparse.Namespace) -> int:
    args.queries = int(args.queries)
    result: dict = {"size": args.size, "queries": args.queries, "pipeline": args.pipeline, "status": "error",
                    "seconds": {}, "rss_peak_after_mib": {}, "detail": {}}
    phase = "start"

    def save(final: bool = False) -> None:
        """The result so far, so that a child stopped by the memory guard still tells what it had done."""
        result["phase"] = phase
        result["peak_rss_mib"] = round(rss_peak_mib(), 1)
        result["peak_rss_vmhwm_mib"] = round(proc_status_mib(os.getpid())[1], 1)
        Path(args.result).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    try:
        sys.path.insert(0, str(REPO))
        from hnmine.data import MiningData
        from hnmine.io.writers import MinedWriter, atomic_path
        from hnmine.pipeline import Pipeline
        from hnmine.stages.bm25 import BM25Retriever
        from hnmine.stages.dense import DenseRetriever
        from hnmine.stages.exclusion import PositiveExcluder
        from hnmine.stages.selection import NegativeSelector
        from hnmine.stages.window import RankWindow

        detail = result["detail"]
        _instrument(detail, save)
        seconds, peaks = result["seconds"], result["rss_peak_after_mib"]
        peaks["imports"] = round(rss_peak_mib(), 1)

        phase = "data"
        _say(phase)
        start = time.perf_counter()
        abstracts = read_jsonl(args.scifact / "corpus.jsonl")
        claims = [q["text"] for q in read_jsonl(args.scifact / "queries.jsonl")]
        doc_texts = synthetic_passages(abstracts, args.size, args.seed)
        del abstracts
        doc_ids = [f"d{i}" for i in range(args.size)]
        query_texts, pairs = synthetic_queries(claims, args.queries, args.size, args.seed)
        query_ids = [f"q{i}" for i in range(args.queries)]
        data = MiningData.from_pairs(query_ids, query_texts, doc_ids, doc_texts, pairs, {"synthetic": "scifact"})
        del doc_texts, doc_ids
        seconds["data"] = time.perf_counter() - start
        peaks["data"] = round(rss_peak_mib(), 1)
        detail["positives"] = int(data.positive_counts.sum())
        detail["queries_with_2_or_3_positives"] = int((data.positive_counts > 1).sum())
        detail["corpus_chars"] = sum(map(len, data.doc_texts))
        save()

        if args.pipeline == "st":
            phase = "st"
            _say(phase)
            st_child(args, data, pairs, result, save)
            phase = "done"
            save()
            return 0 if result["status"] == "ok" else 1
        if args.pipeline == "bm25":
            retriever = BM25Retriever(top_k=args.top_k)
        else:
            retriever = DenseRetriever(corpus_embeddings=str(args.emb_dir / f"corpus_{args.size}.npy"),
                                       query_embeddings=str(args.emb_dir / f"queries_{args.size}_{args.queries}.npy"),
                                       top_k=args.top_k, index="flat")
        pipeline = Pipeline([retriever, PositiveExcluder(), RankWindow(10, 50), NegativeSelector(5)],
                            chunk_size=args.chunk_size)
        pipeline.start(data)

        phase = "prepare"
        _say(phase)
        start = time.perf_counter()
        pipeline.prepare(data)
        seconds["prepare"] = time.perf_counter() - start
        peaks["prepare"] = round(rss_peak_mib(), 1)
        save()
        if args.pipeline == "bm25":
            detail["index_nnz"] = int(retriever._index._weights.nnz)
            detail["vocab"] = len(retriever._index._vocab)

        phase = "mine+write"
        _say(phase)
        out = args.emb_dir / f"triplets_{args.size}_{args.pipeline}.parquet"
        mine = write = 0.0
        block_start = time.perf_counter()
        with atomic_path(out) as tmp:
            writer = MinedWriter(tmp, "triplet", pipeline.target_negatives, audit=True)
            with writer:
                for chunk in pipeline.chunks(data):
                    start = time.perf_counter()
                    batch, _ = pipeline.run_chunk(data, chunk)
                    mine += time.perf_counter() - start
                    start = time.perf_counter()
                    writer.write(batch)
                    write += time.perf_counter() - start
        block = time.perf_counter() - block_start
        seconds["mine"] = mine
        seconds["write"] = block - mine  # writer.write, plus creating, closing and renaming the file
        detail["write_calls"] = write
        peaks["mine+write"] = round(rss_peak_mib(), 1)

        report = pipeline.report
        report.rows_written, report.rows_dropped_by_format = writer.rows_written, writer.rows_dropped
        by_kind = {kind: 0.0 for kind in STAGE_KINDS}
        for s in report.stages:
            kind = s.kind.split(":", 1)[1]
            by_kind[kind] = by_kind.get(kind, 0.0) + s.seconds
        result["stage_seconds"] = by_kind
        result["report"] = {k: v for k, v in report.as_dict().items()
                            if k not in ("queries_short_of_negatives", "queries_without_negatives")}
        result["report"]["queries_short_of_negatives"] = len(report.short_queries)
        result["rows_written"] = writer.rows_written
        result["output_bytes"] = out.stat().st_size
        seconds["total"] = sum(seconds[k] for k in ("data", "prepare", "mine", "write"))
        result["queries_per_s"] = {"mine+write": round(args.queries / (seconds["mine"] + seconds["write"]), 1),
                                   "end_to_end": round(args.queries / seconds["total"], 1)}
        result["status"] = "ok"
    except BaseException as exc:  # any failure is a result to report, MemoryError included
        result["error"] = f"{type(exc).__name__} in {phase}: {exc}"
        result["traceback"] = traceback.format_exc()[-3000:]
    save()
    return 0 if result["status"] == "ok" else 1


def st_child(args: argparse.Namespace, data, pairs: list, result: dict, save) -> None:
    """sentence-transformers' ``mine_hard_negatives`` on the same queries, corpus and embeddings.

    Same settings as hnmine's pipeline: ranks (10, 50] (``range_min=10, range_max=50``), 5 negatives, top
    sampling, triplets; its defaults otherwise (exact torch search, ``faiss_batch_size=16384``). The precomputed
    embeddings reach it through its own ``cache_folder`` (files named by its hash of model name, prompt and
    texts), so it encodes nothing, like hnmine here. It keeps every query's positive(s) as rows of a
    ``datasets.Dataset`` of (anchor, positive) pairs, its input format.
    """
    import hashlib

    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    from hnmine.engines.encoder import bundled_model_path

    seconds, peaks = result["seconds"], result["rss_peak_after_mib"]
    start = time.perf_counter()
    model = SentenceTransformer(bundled_model_path(), device="cpu")
    q_idx = np.array([q for q, _ in pairs], dtype=np.int64)
    d_idx = np.array([d for _, d in pairs], dtype=np.int64)
    anchors = [data.query_texts[i] for i in q_idx.tolist()]
    positives = [data.doc_texts[i] for i in d_idx.tolist()]
    dataset = Dataset.from_dict({"anchor": anchors, "positive": positives})
    corpus = list(data.doc_texts)
    # ST deduplicates queries (dict.fromkeys) and appends the positives to the corpus before hashing: mirror it.
    queries = list(dict.fromkeys(anchors))
    full_corpus = list(dict.fromkeys(corpus + positives))
    cache = args.emb_dir / "st_cache"
    cache.mkdir(exist_ok=True)
    name = model.model_card_data.base_model or ""
    q_hash = hashlib.sha256(repr((name, None, None, queries)).encode(), usedforsecurity=False).hexdigest()
    c_hash = hashlib.sha256(repr((name, None, None, full_corpus)).encode(), usedforsecurity=False).hexdigest()
    q_emb = np.load(args.emb_dir / f"queries_{args.size}_{args.queries}.npy", mmap_mode="r")
    first = {}
    for i, q in zip(q_idx.tolist(), anchors):
        first.setdefault(q, i)
    np.save(cache / f"query_embeddings_{q_hash}.npy", np.asarray(q_emb[[first[q] for q in queries]]))
    c_emb = np.load(args.emb_dir / f"corpus_{args.size}.npy", mmap_mode="r")
    pos_of = {t: i for i, t in enumerate(corpus)}
    rows = np.fromiter((pos_of[t] for t in full_corpus), dtype=np.int64, count=len(full_corpus))
    np.save(cache / f"corpus_embeddings_{c_hash}.npy", np.asarray(c_emb[rows]))
    del c_emb, q_emb, rows, pos_of
    seconds["prepare"] = time.perf_counter() - start  # model load + cache files: not ST's own work
    peaks["prepare"] = round(rss_peak_mib(), 1)
    result["detail"]["st_cache_written"] = True
    save()
    start = time.perf_counter()
    mined = mine_hard_negatives(dataset, model, corpus=corpus, range_min=10, range_max=50, num_negatives=5,
                                sampling_strategy="top", output_format="triplet", cache_folder=str(cache),
                                verbose=False)
    seconds["mine"] = time.perf_counter() - start
    seconds["write"] = 0.0
    hits = sum(1 for p in cache.glob("*.npy"))
    result["detail"]["st_cache_files"] = hits
    result["rows_written"] = len(mined)
    peaks["mine+write"] = round(rss_peak_mib(), 1)
    seconds["total"] = seconds["data"] + seconds["mine"]
    result["queries_per_s"] = {"mine+write": round(args.queries / seconds["mine"], 1),
                               "end_to_end": round(args.queries / seconds["total"], 1)}
    result["status"] = "ok"


# -------------------------------------------------------------------------------------------------- parent


def run_child(cmd: list[str], mem_limit_mib: float, timeout_s: float) -> dict:
    """Run one child under the memory guard; returns what the guard saw (kill reason, RSS at kill)."""
    seen = {"phase": "start", "lines": []}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)

    def relay() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            if line.startswith("@"):
                seen["phase"] = line[1:]
                print(f"    .. {line[1:]} ({time.strftime('%H:%M:%S')})", flush=True)
            else:
                seen["lines"].append(line)
                print(f"    | {line}", flush=True)

    reader = threading.Thread(target=relay, daemon=True)
    reader.start()
    start = time.monotonic()
    killed, max_rss, hwm = None, 0.0, 0.0
    while proc.poll() is None:
        rss, hwm_now = proc_status_mib(proc.pid)
        max_rss, hwm = max(max_rss, rss), max(hwm, hwm_now)
        if rss > mem_limit_mib:
            killed = f"memory guard: RSS {rss:,.0f} MiB passed the {mem_limit_mib:,.0f} MiB limit"
        elif mem_available_mib() < 1024:
            killed = f"memory guard: host MemAvailable under 1 GiB at child RSS {rss:,.0f} MiB"
        elif time.monotonic() - start > timeout_s:
            killed = f"timeout after {timeout_s:.0f} s"
        if killed:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            break
        time.sleep(0.1)
    reader.join(timeout=5)
    return {"killed": killed, "guard_max_rss_mib": round(max(max_rss, hwm), 1), "phase": seen["phase"],
            "wall_s": round(time.monotonic() - start, 2), "returncode": proc.returncode}


def fmt_s(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def print_table(runs: list[dict]) -> None:
    cols = ["size", "queries", "pipeline", "data", "prep:A", "prep:B", "retrieve", "exclude", "window", "select",
            "mine", "write", "total", "q/s", "peak RSS MiB", "status"]
    widths = [9, 8, 8, 6, 7, 7, 8, 7, 6, 6, 6, 6, 7, 7, 12, 6]
    print("  ".join(f"{c:>{w}}" for c, w in zip(cols, widths)))
    for r in runs:
        s, d, st = r.get("seconds", {}), r.get("detail", {}), r.get("stage_seconds", {})
        a, b = ("tokenize", "bm25_index") if r["pipeline"] == "bm25" else ("load_embeddings", "faiss_index")
        ok = r["status"] == "ok"
        peak = r["peak_rss_mib"] if ok else r.get("guard_max_rss_mib", r.get("peak_rss_mib", 0))
        qps = r.get("queries_per_s", {}).get("mine+write")
        cells = [f"{r['size']:,}", f"{r.get('queries', 0):,}", r["pipeline"], fmt_s(s.get("data")),
                 fmt_s(d.get(a)), fmt_s(d.get(b)),
                 fmt_s(st.get(r["pipeline"])), fmt_s(st.get("exclude_positives")), fmt_s(st.get("rank_window")),
                 fmt_s(st.get("select")), fmt_s(s.get("mine")), fmt_s(s.get("write")), fmt_s(s.get("total")),
                 "-" if qps is None else f"{qps:,.0f}", f"{'' if ok else '>='}{peak:,.0f}", "ok" if ok else "FAIL"]
        print("  ".join(f"{c:>{w}}" for c, w in zip(cells, widths)))
    print("seconds; prep:A = tokenize corpus+queries (bm25) | load .npy embeddings (dense); prep:B = BM25 sparse "
          "index | FAISS IndexFlatIP; retrieve..select = per-stage seconds from the pipeline report, summed over "
          "chunks; mine = run_chunk wall time; write = triplet Parquet via MinedWriter+atomic_path; total = data + "
          "prepare + mine + write; q/s = queries / (mine + write); a failed run's RSS is what the guard saw when it "
          "stopped it; pipeline st = sentence-transformers' mine_hard_negatives (its time is all under mine)")
    for r in runs:
        if r["status"] == "ok" and r.get("detail", {}).get("doc_keys") is not None:
            print(f"  {r['size']:>9,} {r['pipeline']:<5}: exclude_positives includes {r['detail']['doc_keys']:.1f} s "
                  "of text fingerprinting (MiningData.doc_keys_of, on demand)")
        if r["status"] != "ok":
            d = r.get("detail", {})
            done = [f"{k} {r['seconds'][k]:.1f} s" for k in ("data", "prepare") if k in r.get("seconds", {})]
            done += [f"{k} {d[k]:.1f} s" for k in ("tokenize", "bm25_index", "load_embeddings", "faiss_index")
                     if k in d]
            if "tokens" in d:
                done.append(f"{d['tokens']:,} tokens")
            print(f"  {r['size']:>9,} {r['pipeline']:<5}: FAILED: {r.get('error')}; finished before that: "
                  f"{', '.join(done) or 'nothing'}")


def _size_label(n: int) -> str:
    for div, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= div:
            return f"{n / div:g}{suffix}"
    return str(n)


def _seconds_label(x: float) -> str:
    return f"{x:.1f} s" if x < 10 else f"{x:,.0f} s"


def plot(runs: list[dict], path: Path, title: str) -> None:
    """Time and peak RSS against the corpus size, or against the query count when only that varies."""
    by_queries = len({r["size"] for r in runs}) == 1 and len({r.get("queries") for r in runs}) > 1
    xkey = "queries" if by_queries else "size"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 5.8))
    colors = {"bm25": "tab:blue", "dense": "tab:orange", "st": "tab:green"}
    labels = {"bm25": "BM25 (sparse index)", "dense": "dense (FAISS flat, precomputed embeddings)",
              "st": "sentence-transformers mine_hard_negatives (same embeddings)"}
    gib = [(r.get("peak_rss_mib") if r["status"] == "ok" else r.get("guard_max_rss_mib") or 0) / 1024
           for r in runs]
    for name in (*PIPELINES, "st"):
        mine = sorted((r for r in runs if r["pipeline"] == name), key=lambda r: r[xkey])
        ok = [r for r in mine if r["status"] == "ok"]
        if ok:
            xs = [r[xkey] for r in ok]
            ts = [r["seconds"]["total"] for r in ok]
            ms = [r["peak_rss_mib"] / 1024 for r in ok]
            ax_t.plot(xs, ts, "o-", color=colors[name], label=labels[name])
            ax_m.plot(xs, ms, "o-", color=colors[name], label=labels[name])
            dy = 8 if name == "bm25" else -14
            for x, t, m, r in zip(xs, ts, ms, ok):
                qps = r.get("queries_per_s", {}).get("mine+write")
                tlabel = _seconds_label(t) + (f", {qps:,.0f} q/s" if by_queries and qps else "")
                ax_t.annotate(tlabel, (x, t), textcoords="offset points", xytext=(6, dy), fontsize=8,
                              color=colors[name])
                ax_m.annotate(f"{m:.2f} GiB", (x, m), textcoords="offset points", xytext=(6, dy), fontsize=8,
                              color=colors[name])
        for r in mine:
            if r["status"] == "ok":
                continue
            rss = (r.get("guard_max_rss_mib") or r.get("peak_rss_mib") or 0) / 1024
            ax_m.plot([r[xkey]], [rss], "X", ms=12, color=colors[name], ls="none",
                      label=f"{name} at {_size_label(r['size'])}: stopped by the memory guard at {rss:.1f} GiB")
            ax_m.annotate(f"stopped at {rss:.1f} GiB by the guard\n({r.get('phase')}),\nneeded more; did not finish",
                          (r[xkey], rss),
                          textcoords="offset points", xytext=(-12, 8), ha="right", fontsize=8, color=colors[name])
            ax_t.axvline(r[xkey], color=colors[name], ls=":", lw=1)
            ax_t.annotate(f"{name} {_size_label(r[xkey])}: did not finish", (r[xkey], 0.5),
                          xycoords=("data", "axes fraction"), rotation=90, ha="right", va="center", fontsize=8,
                          color=colors[name])
    ax_m.axhline(TARGET_MIB / 1024, color="red", ls="--", lw=1.2, label="8 GiB target")
    sizes = sorted({r[xkey] for r in runs})
    for ax in (ax_t, ax_m):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sizes)
        ax.set_xticklabels([_size_label(n) for n in sizes])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlim(min(sizes) / 1.6, max(sizes) * 1.6)
        ax.set_xlabel("queries mined" if by_queries else "corpus size (passages)")
        ax.grid(True, which="both", alpha=0.3)
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax_t.yaxis.set_major_formatter(FuncFormatter(lambda y, _: _seconds_label(y)))
    ax_m.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g} GiB"))
    ax_m.set_ylim(min([*gib, 1]) / 2, max([*gib, TARGET_MIB / 1024]) * 2.5)
    for ax in (ax_t, ax_m):
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)
    ax_t.margins(y=0.15)
    ax_t.set_ylabel("end-to-end seconds (data + prepare + mine + write)")
    ax_t.set_title("Total time (log-log)")
    ax_m.set_ylabel("peak RSS of the child process")
    ax_m.set_title("Peak memory (log-log)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def verdict(runs: list[dict]) -> tuple[str, list[str]]:
    at_target = [r for r in runs if r["size"] == TARGET_SIZE]
    if not at_target:
        return "NOT EVALUATED", [f"no run at {TARGET_SIZE:,} passages (pass it in --sizes)"]
    lines, passed = [], True
    for name in PIPELINES:
        r = next((r for r in at_target if r["pipeline"] == name), None)
        if r is None:
            lines.append(f"{name}: not run")
        elif r["status"] != "ok":
            passed = False
            rss = r.get("guard_max_rss_mib") or r.get("peak_rss_mib") or 0
            lines.append(f"{name}: FAIL, did not finish ({r.get('error')}); RSS reached >= {rss:,.0f} MiB")
        else:
            ok = r["peak_rss_mib"] < TARGET_MIB
            passed &= ok
            lines.append(f"{name}: {'PASS' if ok else 'FAIL'}, peak RSS {r['peak_rss_mib']:,.0f} MiB "
                         f"({r['peak_rss_mib'] / 1024:.2f} GiB) in {r['seconds']['total']:.0f} s")
    return ("PASS" if passed else "FAIL"), lines


def parent(args: argparse.Namespace) -> int:
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    query_counts = [int(q) for q in str(args.queries).split(",") if q.strip()]
    pipelines = [p.strip() for p in args.pipelines.split(",") if p.strip()]
    if bad := [p for p in pipelines if p not in (*PIPELINES, "st")]:
        raise SystemExit(f"--pipelines: unknown {bad}; expected some of {', '.join(PIPELINES)}")
    available = mem_available_mib()
    mem_limit = args.mem_limit_gib * 1024 if args.mem_limit_gib else available - 2048
    work = Path(tempfile.mkdtemp(prefix="hnmine-scale-", dir=args.tmp_dir))
    env = {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
           "mem_total_mib": round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / _MIB),
           "mem_available_at_start_mib": round(available), "mem_limit_mib": round(mem_limit),
           "load_avg_at_start": load_avg(), "tmp": str(work)}
    print(f"hnmine scale benchmark: sizes {sizes}, pipelines {pipelines}, queries {query_counts}, "
          f"top_k={args.top_k}, chunk_size={args.chunk_size}")
    print("Embeddings are precomputed seeded random unit vectors (dim "
          f"{args.dim}, float32, .npy): no encoder runs, so dense timings exclude encoding.")
    print(f"{env['cpus']} CPUs, {env['mem_total_mib']:,} MiB RAM ({env['mem_available_at_start_mib']:,} available); "
          f"load average {env['load_avg_at_start']}; child memory guard at {mem_limit:,.0f} MiB RSS; temp {work}")
    runs: list[dict] = []
    try:
        for size, n_queries in ((s, q) for s in sizes for q in query_counts):
            if "dense" in pipelines or "st" in pipelines:
                # In a process of its own: a child's ru_maxrss starts from its parent's peak at spawn time
                # (Linux carries it across fork and exec), so the parent must never hold the embeddings.
                start = time.perf_counter()
                subprocess.run([sys.executable, str(Path(__file__).resolve()), "--write-embeddings", "--size",
                                str(size), "--queries", str(n_queries), "--dim", str(args.dim), "--seed",
                                str(args.seed), "--emb-dir", str(work)], check=True)
                print(f"[{size:,}] wrote random embeddings in {time.perf_counter() - start:.1f} s (not timed below)")
            for name in pipelines:
                result_path = work / f"result_{size}_{n_queries}_{name}.json"
                cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--size", str(size), "--pipeline",
                       name, "--result", str(result_path), "--emb-dir", str(work), "--scifact", str(args.scifact),
                       "--queries", str(n_queries), "--top-k", str(args.top_k), "--chunk-size",
                       str(args.chunk_size), "--seed", str(args.seed)]
                before = load_avg()
                print(f"[{size:,} x {n_queries:,} {name}] started {time.strftime('%H:%M:%S')}, "
                      f"load average {before}", flush=True)
                guard = run_child(cmd, mem_limit, args.child_timeout)
                run = json.loads(result_path.read_text()) if result_path.exists() else {
                    "size": size, "queries": n_queries, "pipeline": name, "status": "killed", "seconds": {},
                    "detail": {}}
                if run["status"] != "ok":  # the child's last saved figure is stale; the guard's is not
                    run["peak_rss_at_last_save_mib"] = run.pop("peak_rss_mib", None)
                run.update(guard_max_rss_mib=guard["guard_max_rss_mib"], child_wall_s=guard["wall_s"],
                           load_avg_before=before, load_avg_after=load_avg())
                if guard["killed"]:
                    run.update(status="killed", phase=guard["phase"],
                               error=f"{guard['killed']} during {guard['phase']}")
                elif run["status"] != "ok" and "error" not in run:
                    run["error"] = f"child exited {guard['returncode']} during {guard['phase']}"
                runs.append(run)
                tail = (f"total {run['seconds']['total']:.1f} s, peak RSS {run['peak_rss_mib']:,.0f} MiB"
                        if run["status"] == "ok" else run.get("error"))
                print(f"[{size:,} x {n_queries:,} {name}] {run['status']}: {tail}; "
                      f"load average after {run['load_avg_after']}",
                      flush=True)
                result_path.unlink(missing_ok=True)
                (work / f"triplets_{size}_{name}.parquet").unlink(missing_ok=True)
                for f in (work / "st_cache").glob("*.npy"):
                    f.unlink()
            for f in [*work.glob(f"corpus_{size}.npy"), *work.glob(f"queries_{size}_*.npy")]:
                f.unlink()
    finally:
        env["load_avg_at_end"] = load_avg()
        import shutil

        shutil.rmtree(work, ignore_errors=True)

    print()
    print_table(runs)
    overall, lines = verdict(runs)
    print()
    print(f"Target: {TARGET_SIZE:,} passages mined end to end under 8 GiB peak RSS: {overall}")
    for line in lines:
        print(f"  {line}")

    args.out_dir.mkdir(parents=True, exist_ok=True)
    qlabel = ", ".join(f"{q:,}" for q in query_counts)
    title = (f"hnmine scaling: {qlabel} queries, top_k={args.top_k}, rank window (10, 50], 5 negatives, "
             f"triplet Parquet\nrandom precomputed embeddings (no encoder); {env['cpus']} CPUs, load average "
             f"{env['load_avg_at_start'][0]} at start, {env['load_avg_at_end'][0]} at end (shared machine)")
    payload = {"what": __doc__.split("\n\n")[0], "settings": {k: str(v) if isinstance(v, Path) else v
                                                               for k, v in vars(args).items()},
               "environment": env, "target": {"size": TARGET_SIZE, "peak_rss_mib": TARGET_MIB, "result": overall,
                                              "lines": lines},
               "runs": runs}
    (args.out_dir / f"{args.name}.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    plot(runs, args.out_dir / f"{args.name}.png", title)
    print(f"wrote {args.out_dir / (args.name + '.json')} and {args.out_dir / (args.name + '.png')}")
    return 0 if overall != "FAIL" else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated corpus sizes")
    parser.add_argument("--pipelines", default="bm25,dense", help="comma-separated: bm25, dense")
    parser.add_argument("--queries", default="1000",
                        help="comma-separated query counts (the query axis), each run at every corpus size")
    parser.add_argument("--top-k", type=int, default=61)
    parser.add_argument("--chunk-size", type=int, default=256, help="Pipeline chunk size (hnmine's default)")
    parser.add_argument("--dim", type=int, default=384, help="embedding dimension")
    parser.add_argument("--scifact", type=Path, default=DEFAULT_SCIFACT, help="folder with corpus/queries.jsonl")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mem-limit-gib", type=float, default=None,
                        help="kill a child past this RSS (default: available memory at start minus 2 GiB)")
    parser.add_argument("--child-timeout", type=float, default=3600, help="seconds before a child is stopped")
    parser.add_argument("--tmp-dir", default=None, help="where embeddings and outputs are written (deleted after)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help="where NAME.json and NAME.png go")
    parser.add_argument("--name", default="scale", help="result file stem (scale_queries for the query axis)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--pipeline", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--emb-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--write-embeddings", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.write_embeddings:
        corpus_file = args.emb_dir / f"corpus_{args.size}.npy"
        if not corpus_file.exists():
            write_unit_embeddings(corpus_file, args.size, args.dim, args.seed * 1000 + 1)
        write_unit_embeddings(args.emb_dir / f"queries_{args.size}_{args.queries}.npy", int(args.queries), args.dim,
                              args.seed * 1000 + 2)
        return 0
    return child(args) if args.child else parent(args)


if __name__ == "__main__":
    raise SystemExit(main())
