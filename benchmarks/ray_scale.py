"""Driver memory of ``--engine ray --ray-corpus workers`` as the corpus grows: it must stay flat.

For each corpus size, a seeded synthetic corpus (Parquet: doc_id, text) with precomputed unit embeddings (.npy,
input row order) and a fixed query set is mined with dense retrieval on a local Ray of ``--workers`` CPUs, the
corpus in ``--workers`` shard actors. Each run is its own driver process (``python -m hnmine mine``), so its
peak RSS (its own ``VmHWM``, written at exit) is the driver's alone; the Ray workers are other
processes, reported apart (their summed RSS at its highest during the run, sampled). With ``--local`` the
local engine runs on the same inputs for reference: its peak RSS grows with the corpus, the bound the Ray mode
removes.

    .venv/bin/python benchmarks/ray_scale.py --sizes 50000,100000,200000 --queries 1000 --repeats 3 --local

Per-stage seconds come from the run manifest's ``engine`` entry (read, embed+index, search on Ray) and the
driver's wall time. A driver's peak RSS moves by tens of MiB from run to run (Ray's threads and object store
pages, malloc), so each size runs ``--repeats`` times, sizes alternated, and medians are compared. Done means:
the median driver peak RSS grows by < 100 MB from the smallest to the largest corpus.
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


# The driver reports its own high-water mark (VmHWM, reset at exec): the rusage of a child would not do, since
# Linux carries the parent's peak into the child's ru_maxrss across fork/exec.
DRIVER = """
import atexit, runpy, sys
target = sys.argv[1]
def report():
    with open(target, "w") as f:
        f.write(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM")))
atexit.register(report)
sys.argv = ["hnmine", *sys.argv[2:]]
runpy.run_module("hnmine", run_name="__main__")
"""


def run_driver(args: list[str], log: Path) -> tuple[float, float, float]:
    """One ``hnmine`` driver process: (wall seconds, its own peak RSS, and the Ray workers' summed RSS at its
    highest while it ran, sampled every 0.2 s), in MiB."""
    start = time.perf_counter()
    workers_peak = 0.0
    hwm = log.with_suffix(".hwm")
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(hwm), *args], cwd=REPO, stdout=err, stderr=err)
        while proc.poll() is None:
            workers_peak = max(workers_peak, worker_rss_mib())
            time.sleep(0.2)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"hnmine failed:\n{log.read_text()[-3000:]}")
    return seconds, int(hwm.read_text()) / 1024, workers_peak


def worker_rss_mib() -> float:
    """Summed RSS of this benchmark's Ray processes (its descendants: the raylet's workers, the shard actors
    among them) now, from Linux /proc; a driver's own process tree is not counted."""
    parent: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                parent[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    mine, frontier = set(), [os.getpid()]
    while frontier:
        children = [pid for pid, ppid in parent.items() if ppid in frontier and pid not in mine]
        mine.update(children)
        frontier = children
    total = 0
    for pid in mine:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"default_worker.py" in cmd or cmd.startswith(b"ray::"):
                total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    return total / 2**20


def run_once(name: str, size: int, files: dict[str, Path], extra: list[str], root: Path, repeat: int) -> dict:
    out = root / f"out-{name}-{size}.parquet"
    load = os.getloadavg()[0]
    seconds, peak, workers_peak = run_driver([*mine_args(files, out), *extra], root / f"{name}-{size}-{repeat}.log")
    manifest = json.loads(Path(f"{out}.manifest.json").read_text())
    run = {"engine": name, "passages": size, "repeat": repeat, "seconds": round(seconds, 1),
           "driver_peak_rss_mib": round(peak, 1), "load_average": round(load, 1),
           "stages": {k: v for k, v in manifest.get("engine", {}).items() if "seconds" in k},
           "rows_written": manifest["counts"]["rows_written"]}
    if name == "ray-workers":
        run["ray_workers_peak_rss_mib"] = round(workers_peak, 1)
        run["rows_fetched_to_driver"] = manifest["engine"].get("rows fetched to the driver")
        run["largest_chunk_of_rows_on_driver"] = manifest["engine"].get("largest chunk of rows held by the driver")
    print(json.dumps(run), flush=True)
    return run


def summarize(runs: list[dict], sizes: list[int]) -> dict:
    """Per engine and size: median and range of the driver's peak RSS and of the seconds, over the repeats."""
    table: dict = {}
    for name in dict.fromkeys(r["engine"] for r in runs):
        for size in sizes:
            rows = [r for r in runs if r["engine"] == name and r["passages"] == size]
            if not rows:
                continue
            rss = [r["driver_peak_rss_mib"] for r in rows]
            secs = [r["seconds"] for r in rows]
            table.setdefault(name, {})[size] = {
                "repeats": len(rows), "driver_peak_rss_mib_median": round(float(np.median(rss)), 1),
                "driver_peak_rss_mib_range": [min(rss), max(rss)], "seconds_median": round(float(np.median(secs)), 1),
                "seconds_range": [min(secs), max(secs)]}
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="50000,100000,200000", help="corpus passages, comma-separated")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--workers", type=int, default=2, help="CPUs of the local Ray, and shard actors")
    parser.add_argument("--repeats", type=int, default=3, help="Ray runs per size, sizes alternated (up, down, ...)")
    parser.add_argument("--local", action="store_true", help="also run the local engine once per size (reference)")
    parser.add_argument("--data", default=None, help="where the synthetic inputs go (default: a temp dir)")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "ray_scale.json"))
    args = parser.parse_args()

    import ray

    sizes = [int(s) for s in args.sizes.split(",")]
    root = Path(args.data or tempfile.mkdtemp(prefix="hnmine-ray-scale-"))
    files = {size: write_synthetic_corpus(root / str(size), size, args.queries, args.dim) for size in sizes}
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    address = ray.get_runtime_context().gcs_address
    on_workers = ["--engine", "ray", "--ray-corpus", "workers", "--ray-address", address, "--ray-workers",
                  str(args.workers)]
    results: dict = {"queries": args.queries, "dim": args.dim, "workers": args.workers, "repeats": args.repeats,
                     "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU only", "runs": []}
    print(f"sizes {sizes}, {args.queries} queries, dim {args.dim}, {args.workers} workers, {args.repeats} repeats; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    try:
        for repeat in range(args.repeats):
            for size in (sizes if repeat % 2 == 0 else sizes[::-1]):
                results["runs"].append(run_once("ray-workers", size, files[size], on_workers, root, repeat))
        if args.local:
            for size in sizes:
                results["runs"].append(run_once("local", size, files[size], [], root, 0))
    finally:
        ray.shutdown()
    if args.local:  # the same rows, every column: the Ray run's parts against the local file
        import pyarrow.parquet as pq

        results["rows_equal_local"] = {size: pq.read_table(root / f"out-ray-workers-{size}.parquet").equals(
            pq.read_table(root / f"out-local-{size}.parquet")) for size in sizes}
        print(f"rows equal to the local engine's: {results['rows_equal_local']}", flush=True)
    results["summary"] = summary = summarize(results["runs"], sizes)
    first, last = summary["ray-workers"][sizes[0]], summary["ray-workers"][sizes[-1]]
    growth = last["driver_peak_rss_mib_median"] - first["driver_peak_rss_mib_median"]
    results["ray_driver_peak_rss_growth_mib"] = round(growth, 1)
    print(json.dumps(summary, indent=1))
    print(f"ray-workers driver peak RSS (median of {args.repeats}): {first['driver_peak_rss_mib_median']:.0f} MiB at "
          f"{sizes[0]:,} -> {last['driver_peak_rss_mib_median']:.0f} MiB at {sizes[-1]:,} passages "
          f"({growth:+.0f} MiB; done means < 100 MB)")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
