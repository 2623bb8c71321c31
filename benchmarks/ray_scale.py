"""Driver memory of ``--engine ray --ray-corpus workers`` as the corpus grows: it must stay flat.

For each corpus size, a seeded synthetic corpus (Parquet: doc_id, text) with precomputed unit embeddings (.npy,
input row order) and a fixed query set is mined with dense retrieval on a local Ray of ``--workers`` CPUs, the
corpus in ``--workers`` shard actors. Each run is its own driver process (``python -m hnmine mine``), so its
peak RSS (``ru_maxrss`` of that child, from ``wait4``) is the driver's alone; the Ray workers are other
processes, reported apart (their summed RSS at its highest during the run, sampled). With ``--local`` the
local engine runs on the same inputs for reference: its peak RSS grows with the corpus, the bound the Ray mode
removes.

    .venv/bin/python benchmarks/ray_scale.py --sizes 50000,100000,200000 --queries 1000

Per-stage seconds come from the run manifest's ``engine`` entry (read, embed+index, search on Ray) and the
job's own totals. Done means: driver peak RSS grows by < 100 MB from the smallest to the largest corpus.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
WORDS = ("protein", "cell", "gene", "binding", "receptor", "tumour", "immune", "response", "signal", "pathway",
         "expression", "mutation", "clinical", "trial", "dose", "patient", "cohort", "risk", "factor", "therapy",
         "model", "sample", "analysis", "data", "effect", "level", "increase", "decrease", "membrane", "enzyme",
         "activity", "structure", "function", "tissue", "growth")


def write_synthetic_corpus(root: Path, passages: int, queries: int, dim: int = 384, words: int = 60,
                           seed: int = 0) -> dict[str, Path]:
    """queries/corpus/qrels Parquet + corpus/query embeddings .npy (unit rows), deterministic in ``seed``.

    The first ``queries`` passages are the positives (query i -> doc i); a query's embedding is its positive's
    plus noise, so retrieval is meaningful. Texts are random words, about ``6 * words`` characters each.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    vocab = np.array(WORDS)
    writer = pq.ParquetWriter(root / "corpus.parquet", pa.schema([("doc_id", pa.string()), ("text", pa.string())]))
    emb = np.lib.format.open_memmap(root / "corpus_emb.npy", mode="w+", dtype=np.float32, shape=(passages, dim))
    block = 20_000
    for lo in range(0, passages, block):
        hi = min(passages, lo + block)
        picks = vocab[rng.integers(0, len(vocab), size=(hi - lo, words))]
        texts = [f"passage {i}: " + " ".join(row) for i, row in zip(range(lo, hi), picks.tolist())]
        writer.write_table(pa.table({"doc_id": [f"d{i}" for i in range(lo, hi)], "text": texts}),
                           row_group_size=8192)
        vectors = rng.standard_normal((hi - lo, dim), dtype=np.float32)
        emb[lo:hi] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    writer.close()
    query_emb = np.asarray(emb[:queries]) + 0.5 * rng.standard_normal((queries, dim), dtype=np.float32) / np.sqrt(dim)
    emb.flush()
    del emb
    np.save(root / "query_emb.npy", query_emb / np.linalg.norm(query_emb, axis=1, keepdims=True))
    pq.write_table(pa.table({"query_id": [f"q{i}" for i in range(queries)],
                             "query": [f"question {i} about " + " ".join(vocab[rng.integers(0, len(vocab), 8)])
                                       for i in range(queries)]}), root / "queries.parquet")
    pq.write_table(pa.table({"query_id": [f"q{i}" for i in range(queries)], "doc_id": [f"d{i}" for i in
                                                                                          range(queries)]}),
                   root / "qrels.parquet")
    return {name: root / name for name in ("queries.parquet", "corpus.parquet", "qrels.parquet", "corpus_emb.npy",
                                           "query_emb.npy")}


def mine_args(files: dict[str, Path], out: Path) -> list[str]:
    return ["mine", "--queries", str(files["queries.parquet"]), "--corpus", str(files["corpus.parquet"]),
            "--qrels", str(files["qrels.parquet"]), "--corpus-embeddings", str(files["corpus_emb.npy"]),
            "--query-embeddings", str(files["query_emb.npy"]), "--output", str(out), "--quiet", "--overwrite"]


def run_driver(args: list[str], log: Path) -> tuple[float, float, float]:
    """One ``hnmine`` driver process: (wall seconds, its own peak RSS from ``wait4``, and the Ray workers' summed
    RSS at its highest while it ran, sampled every 0.2 s), in MiB."""
    start = time.perf_counter()
    workers_peak = 0.0
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "hnmine", *args], cwd=REPO, stdout=err, stderr=err)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            workers_peak = max(workers_peak, worker_rss_mib())
            time.sleep(0.2)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"hnmine failed:\n{log.read_text()[-3000:]}")
    return seconds, usage.ru_maxrss / 1024, workers_peak


def worker_rss_mib() -> float:
    """Summed RSS of this machine's Ray worker processes now (the shard actors hold the corpus); Linux /proc."""
    total = 0
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
            if b"default_worker.py" in cmd or cmd.startswith(b"ray::"):
                total += int((proc / "statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    return total / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="50000,100000,200000", help="corpus passages, comma-separated")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--workers", type=int, default=2, help="CPUs of the local Ray, and shard actors")
    parser.add_argument("--local", action="store_true", help="also run the local engine (its RSS for reference)")
    parser.add_argument("--data", default=None, help="where the synthetic inputs go (default: a temp dir)")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "ray_scale.json"))
    args = parser.parse_args()

    import ray

    sizes = [int(s) for s in args.sizes.split(",")]
    root = Path(args.data or tempfile.mkdtemp(prefix="hnmine-ray-scale-"))
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    address = ray.get_runtime_context().gcs_address
    results: dict = {"queries": args.queries, "dim": args.dim, "workers": args.workers,
                     "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU only", "runs": []}
    print(f"sizes {sizes}, {args.queries} queries, dim {args.dim}, {args.workers} workers; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    try:
        for size in sizes:
            files = write_synthetic_corpus(root / str(size), size, args.queries, args.dim)
            engines = [("ray-workers", ["--engine", "ray", "--ray-corpus", "workers", "--ray-address", address,
                                        "--ray-workers", str(args.workers)])]
            if args.local:
                engines.append(("local", []))
            for name, extra in engines:
                out = root / f"out-{name}-{size}.parquet"
                load = os.getloadavg()[0]
                seconds, peak, workers_peak = run_driver([*mine_args(files, out), *extra], root / f"{name}-{size}.log")
                manifest = json.loads(Path(f"{out}.manifest.json").read_text())
                run = {"engine": name, "passages": size, "seconds": round(seconds, 1),
                       "driver_peak_rss_mib": round(peak, 1), "load_average": round(load, 1),
                       "stages": {k: v for k, v in manifest.get("engine", {}).items() if "seconds" in k},
                       "rows_written": manifest["counts"]["rows_written"]}
                if name == "ray-workers":
                    run["ray_workers_peak_rss_mib"] = round(workers_peak, 1)
                    run["rows_fetched_to_driver"] = manifest["engine"].get("rows fetched to the driver")
                    run["largest_chunk_of_rows_on_driver"] = manifest["engine"].get(
                        "largest chunk of rows held by the driver")
                results["runs"].append(run)
                print(json.dumps(run), flush=True)
    finally:
        ray.shutdown()
    ray_runs = [r for r in results["runs"] if r["engine"] == "ray-workers"]
    growth = ray_runs[-1]["driver_peak_rss_mib"] - ray_runs[0]["driver_peak_rss_mib"]
    results["ray_driver_peak_rss_growth_mib"] = round(growth, 1)
    print(f"ray-workers driver peak RSS: {ray_runs[0]['driver_peak_rss_mib']:.0f} MiB at {ray_runs[0]['passages']:,} "
          f"-> {ray_runs[-1]['driver_peak_rss_mib']:.0f} MiB at {ray_runs[-1]['passages']:,} passages "
          f"(+{growth:.0f} MiB; done means < 100 MB)")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
