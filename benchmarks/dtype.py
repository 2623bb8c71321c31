"""Encoder precision: what ``--dtype`` buys in speed and what it costs in neighbours, on BEIR SciFact.

Reduced precision must never silently change results much, so for each ``--dtype`` this encodes the train
queries and the whole corpus through hnmine's own ``Encoder`` (cache off, same batch size), and reports:

* encoding wall time and passages per second, and the speed ratio against float32 measured in this run;
* per query, the overlap of its top-50 (and top-10) exact inner-product neighbours with float32's
  (|A ∩ B| / k, mean and worst query). The target is a mean top-50 overlap of at least 0.99.

float16 is measured only where a GPU is present unless asked for: CPUs compute it slowly or not at all.

    .venv/bin/python benchmarks/dtype.py --json benchmarks/results/dtype.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SCIFACT = REPO.parent / "shared" / "datasets" / "scifact"


def load_1min() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def texts(scifact: Path, split: str, max_docs: int | None) -> tuple[list[str], list[str]]:
    from hnmine.io.inputs import load_beir

    data = load_beir(scifact, split)
    docs = list(data.doc_texts)[:max_docs] if max_docs else list(data.doc_texts)
    return list(data.query_texts), docs


def top_k(queries: np.ndarray, docs: np.ndarray, k: int) -> np.ndarray:
    import faiss

    index = faiss.IndexFlatIP(docs.shape[1])
    index.add(np.ascontiguousarray(docs, dtype=np.float32))
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)[1]


def overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row: the share of ``a``'s ids that ``b`` also has (order ignored)."""
    return np.array([len(set(x.tolist()) & set(y.tolist())) / len(x) for x, y in zip(a, b, strict=True)])


def measure(dtype: str, queries: list[str], docs: list[str], batch_size: int, device: str | None) -> dict[str, Any]:
    from hnmine.engines.encoder import Encoder, load_sentence_transformer, resolve_dtype

    resolved = resolve_dtype(dtype, device)
    load_sentence_transformer("all-MiniLM-L6-v2", device, resolved)  # model load is not encoding time
    encoder = Encoder(device=device, batch_size=batch_size, dtype=dtype, use_cache=False, show_progress=False)
    load_before = load_1min()
    start = time.perf_counter()
    doc_emb = encoder.encode(docs)
    doc_s = time.perf_counter() - start
    query_emb = encoder.encode(queries)
    return {"dtype": dtype, "resolved": resolved, "doc_emb": doc_emb, "query_emb": query_emb,
            "encode_docs_s": doc_s, "passages_per_s": len(docs) / doc_s,
            "load_before": load_before, "load_after": load_1min()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scifact", type=Path, default=DEFAULT_SCIFACT)
    parser.add_argument("--split", default="train")
    parser.add_argument("--dtypes", default=None, help="Comma-separated; default float32,bfloat16 (+float16 on GPU).")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default=None)
    parser.add_argument("--max-docs", type=int, default=None, help="Encode only the first N passages (quick runs).")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    gpu = torch.cuda.is_available() and (args.device is None or args.device.startswith("cuda"))
    dtypes = args.dtypes.split(",") if args.dtypes else ["float32", "bfloat16", *(["float16"] if gpu else [])]
    if dtypes[0] != "float32":
        dtypes = ["float32", *[d for d in dtypes if d != "float32"]]
    queries, docs = texts(args.scifact, args.split, args.max_docs)
    print(f"{len(queries):,} queries, {len(docs):,} passages, batch {args.batch_size}, "
          f"device {args.device or ('cuda' if gpu else 'cpu')}, torch threads {torch.get_num_threads()}", flush=True)
    runs = []
    for dtype in dtypes:
        run = measure(dtype, queries, docs, args.batch_size, args.device)
        print(f"  {dtype}: {run['encode_docs_s']:.1f} s ({run['passages_per_s']:.1f} passages/s), "
              f"load {run['load_before']:.2f}->{run['load_after']:.2f}", flush=True)
        runs.append(run)
    base = runs[0]
    ref50, ref10 = top_k(base["query_emb"], base["doc_emb"], 50), top_k(base["query_emb"], base["doc_emb"], 10)
    rows = []
    for run in runs:
        o50 = overlap(ref50, top_k(run["query_emb"], run["doc_emb"], 50))
        o10 = overlap(ref10, top_k(run["query_emb"], run["doc_emb"], 10))
        rows.append({k: v for k, v in run.items() if not k.endswith("_emb")} | {
            "speedup_vs_float32": base["encode_docs_s"] / run["encode_docs_s"],
            "top50_overlap_mean": float(o50.mean()), "top50_overlap_min": float(o50.min()),
            "top10_overlap_mean": float(o10.mean()), "max_abs_embedding_diff": float(
                np.abs(run["doc_emb"] - base["doc_emb"]).max())})
    print(f"\n{'dtype':<10}{'docs s':>9}{'pass/s':>9}{'vs fp32':>9}{'top-50 overlap':>16}{'worst q':>9}"
          f"{'top-10':>8}")
    for r in rows:
        print(f"{r['dtype']:<10}{r['encode_docs_s']:>9.1f}{r['passages_per_s']:>9.1f}{r['speedup_vs_float32']:>8.2f}x"
              f"{r['top50_overlap_mean']:>16.4f}{r['top50_overlap_min']:>9.2f}{r['top10_overlap_mean']:>8.4f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "gpu": gpu,
                        "torch": torch.__version__},
            "queries": len(queries), "passages": len(docs), "batch_size": args.batch_size, "rows": rows,
            "command": "benchmarks/dtype.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                                                          if v is not None and k not in ("scifact",)),
        }, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
