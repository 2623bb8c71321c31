"""How corpus encoding + sharded search time scales with Ray workers on one machine (1 vs 2 actors).

Runs the Ray engine's own stages (``RayEngine.encode`` over an encoder actor pool, ``RayEngine.search`` over
per-shard FAISS indexes) on a seeded subsample of SciFact, with the embedding cache off, once per worker
count, plus the local engine's encoder on the same texts for reference. Each CPU actor gets one CPU and
one torch thread, so "1 worker" uses one core and "2 workers" two; the local encoder uses torch's default
threads. The shard count is fixed, so only the number of workers changes between the Ray runs.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/ray_workers.py --docs 600 --queries 100
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--beir", default="/work/shared/datasets/scifact")
    parser.add_argument("--docs", type=int, default=600, help="corpus passages sampled (seeded)")
    parser.add_argument("--queries", type=int, default=100, help="queries sampled (seeded)")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--top-k", type=int, default=61)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs given to the local Ray instance")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "ray_workers.json"))
    args = parser.parse_args()

    import ray

    from hnmine.engines.encoder import Encoder
    from hnmine.engines.ray import RayEngine
    from hnmine.io.inputs import read_beir
    from hnmine.stages.dense import DenseRetriever

    queries, corpus, _ = read_beir(Path(args.beir), "test")
    titles = corpus.column("title").to_pylist() if "title" in corpus.column_names else [""] * corpus.num_rows
    docs = [f"{t} {x}".strip() for t, x in zip(titles, corpus.column("text").to_pylist())]
    rng = random.Random(0)
    docs = rng.sample(docs, min(args.docs, len(docs)))
    texts = queries.column("query").to_pylist()
    qs = rng.sample(texts, min(args.queries, len(texts)))
    dense = DenseRetriever(use_cache=False)
    print(f"{len(docs)} passages, {len(qs)} queries, {args.shards} shards, top-{args.top_k}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)

    results: dict = {"passages": len(docs), "queries": len(qs), "shards": args.shards, "top_k": args.top_k,
                     "cpus": args.cpus, "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU only",
                     "runs": []}
    start = time.perf_counter()
    local = Encoder(use_cache=False, show_progress=False)
    local.encode(docs)
    local.encode(qs)
    results["local_encode_seconds"] = round(time.perf_counter() - start, 2)
    print(f"local engine encoder (torch default threads): {results['local_encode_seconds']:.1f} s", flush=True)

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    reference = None
    for workers in [int(w) for w in args.workers.split(",")]:
        engine = RayEngine(workers=workers, shards=args.shards)
        engine.start()
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        doc_emb, _ = engine.encode(docs, dense, "")
        query_emb, _ = engine.encode(qs, dense, "")
        t1 = time.perf_counter()
        ids, _ = engine.search(doc_emb, query_emb, args.top_k)
        t2 = time.perf_counter()
        same = reference is None or bool(np.array_equal(ids, reference))
        reference = ids if reference is None else reference
        run = {"workers": workers, "encode_seconds": round(t1 - t0, 2), "search_seconds": round(t2 - t1, 2),
               "total_seconds": round(t2 - t0, 2), "load_average_at_start": round(load, 2),
               "same_neighbours_as_first_run": same}
        results["runs"].append(run)
        print(f"{workers} worker(s): encode {run['encode_seconds']:.1f} s, search {run['search_seconds']:.1f} s, "
              f"total {run['total_seconds']:.1f} s (load {load:.1f})", flush=True)
    ray.shutdown()
    runs = results["runs"]
    if len(runs) >= 2:
        results["speedup_total"] = round(runs[0]["total_seconds"] / runs[-1]["total_seconds"], 2)
        results["speedup_encode"] = round(runs[0]["encode_seconds"] / runs[-1]["encode_seconds"], 2)
        print(f"speedup {runs[0]['workers']} -> {runs[-1]['workers']} workers: total {results['speedup_total']}x, "
              f"encode {results['speedup_encode']}x")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
