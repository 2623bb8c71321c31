"""hnmine against sentence-transformers' ``mine_hard_negatives`` on one GPU: SciFact and a 100k-passage corpus.

Self-contained (SciFact from ``../shared``, the bundled all-MiniLM-L6-v2, no hub access) and sized to finish in
under 8 minutes on one modern GPU. Per corpus, each run in a fresh process (``vs_sentence_transformers.py``'s
runners, the same settings: 5 negatives from ranks 11..50, top sampling, triplets, batch size 32):

* ``cold``: hnmine with its GPU defaults (``--dtype auto`` = bfloat16 linear layers, exact search as torch
  products on the GPU), hnmine ``--dtype float32``, sentence-transformers at its defaults (float32 model, exact
  torch search) and sentence-transformers with the model cast to bfloat16; every run encodes from scratch;
* ``warm``: the same job with a changed filter (margin 0.05): hnmine from its embedding cache, and
  sentence-transformers from its ``cache_folder`` (written by its float32 cold run).

Figures per run: wall time of the whole command, peak host RSS (``getrusage`` of the child), peak GPU memory
(device memory in use, polled every 0.2 s with ``nvidia-smi``, minus what was in use before the run; torch's
own ``max_memory_allocated`` for sentence-transformers too), and the overlap of the chosen (query, negative)
pairs with hnmine's cold run.

The 100k corpus is SciFact's 5,183 abstracts plus perturbed copies (``scale.py``'s generator: a subset of an
abstract's sentences plus one sentence of another, shuffled), with SciFact's train queries and positives.

Without a CUDA device the benchmark says so and exits 0, unless ``--allow-cpu`` runs it on the CPU (for
checking the script itself; use ``--docs 8000`` or so there).

    .venv/bin/python benchmarks/gpu.py --json benchmarks/results/gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))

import vs_sentence_transformers as vs  # noqa: E402

WARM_MARGIN = 0.05


class GpuMemoryPoller:
    """Peak device memory in use while a run lasts, minus the baseline before it (nvidia-smi, device-wide)."""

    def __init__(self, device: int = 0) -> None:
        self.device = device
        self.peak = self.baseline = self._used()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _used(self) -> float:
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i",
                                  str(self.device)], capture_output=True, text=True, timeout=10, check=True).stdout
            return float(out.strip().splitlines()[0])
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            return float("nan")

    def _poll(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, self._used())

    def __enter__(self) -> GpuMemoryPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mib(self) -> float | None:
        value = self.peak - self.baseline
        return None if value != value else round(value, 1)  # NaN: no nvidia-smi


def build_100k(inputs: Path, out: Path, n_docs: int, seed: int) -> None:
    """SciFact's corpus grown to ``n_docs`` passages with perturbed copies; SciFact's train queries and qrels."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from scale import synthetic_passages

    corpus = pq.read_table(inputs / "corpus.parquet")
    extra = max(0, n_docs - corpus.num_rows)
    rows = [{"title": t or "", "text": x} for t, x in zip(corpus.column("title").to_pylist(),
                                                          corpus.column("text").to_pylist(), strict=True)]
    copies = synthetic_passages(rows, extra, seed)
    grown = pa.table({"doc_id": corpus.column("doc_id").to_pylist() + [f"synthetic-{i}" for i in range(extra)],
                      "title": corpus.column("title").to_pylist() + [""] * extra,
                      "text": corpus.column("text").to_pylist() + copies})
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(grown, out / "corpus.parquet")
    for name in ("queries", "qrels"):
        shutil.copy(inputs / f"{name}.parquet", out / f"{name}.parquet")


def shrink_corpus(folder: Path, keep: int) -> None:
    """The positives and the first ``keep`` other passages (for a quick check of the script on a CPU)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    corpus = pq.read_table(folder / "corpus.parquet")
    positives = pc.is_in(corpus.column("doc_id"), value_set=pq.read_table(folder / "qrels.parquet").column("doc_id"))
    first = pc.less(pc.cumulative_sum(pc.cast(pc.invert(positives), "int64")), keep + 1)
    pq.write_table(corpus.filter(pc.or_(positives, first)), folder / "corpus.parquet")


# What the defaults pick (precision, search backend) depends on the machine; each run's manifest says what ran.
HNMINE_DEFAULTS = "hnmine (defaults)"


def run_notes(run: dict[str, Any]) -> dict[str, Any]:
    """What an hnmine run's manifest says about itself (encoder precision, search backend, encoder seconds)."""
    return ((run.get("manifest") or {}).get("counts") or {}).get("notes") or {}


def size_label(n: int) -> str:
    """100000 -> '100k', 2500 -> '2.5k', 800 -> '800' (a corpus label, never '0k')."""
    return f"{n / 1000:g}k" if n >= 1000 else str(n)


def run_corpus(label: str, inputs: Path, out_dir: Path, snapshot: Path, device: str) -> list[dict[str, Any]]:
    work = out_dir / label
    work.mkdir(parents=True, exist_ok=True)
    runner = vs.Runner(work, snapshot)
    for cache in (runner.hnmine_cache, runner.st_cache):
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True)
    files = ["--queries", str(inputs / "queries.parquet"), "--corpus", str(inputs / "corpus.parquet"),
             "--qrels", str(inputs / "qrels.parquet")]
    gpu = ["--device", device]
    runs: list[dict[str, Any]] = []

    def measured(scenario: str, name: str, call) -> None:
        with GpuMemoryPoller() as poller:
            run = call()
        run.update(scenario=scenario, label=name, corpus=label, gpu_peak_mib=poller.peak_mib)
        runs.append(run)

    margin = ["--margin", str(WARM_MARGIN)]
    st_margin = ["--absolute-margin", str(WARM_MARGIN)]
    measured("cold", HNMINE_DEFAULTS, lambda: runner.hnmine(f"{label}-cold-hnmine", files, gpu))
    measured("cold", "ST defaults (float32)", lambda: runner.st(f"{label}-cold-st", inputs, [], cache=True))
    measured("cold", "hnmine --dtype float32",
             lambda: runner.hnmine(f"{label}-cold-hnmine-fp32", files, gpu, dtype="float32"))
    measured("cold", "ST bfloat16", lambda: runner.st(f"{label}-cold-st-bf16", inputs, ["--bfloat16"], cache=False))
    measured("warm", "hnmine (cache)", lambda: runner.hnmine(f"{label}-warm-hnmine", files, gpu + margin))
    measured("warm", "ST cache_folder", lambda: runner.st(f"{label}-warm-st", inputs, st_margin, cache=True))
    import pyarrow.parquet as pq

    corpus = pq.read_table(inputs / "corpus.parquet")
    doc_id_of = dict(zip(vs.corpus_texts(corpus), corpus.column("doc_id").to_pylist(), strict=True))
    base = next(r for r in runs if r["label"] == HNMINE_DEFAULTS)
    for run in runs:
        if run["rc"] == 0:
            run["pairs"] = vs.chosen_pairs(run, doc_id_of)[0]
    for run in runs:
        if run["rc"] == 0 and base["rc"] == 0:
            common, union = len(run["pairs"] & base["pairs"]), len(run["pairs"] | base["pairs"])
            run["jaccard_vs_hnmine_cold"] = round(common / union, 4) if union else 1.0
            run["negatives"] = len(run["pairs"])
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scifact", type=Path, default=vs.DEFAULT_SCIFACT)
    parser.add_argument("--docs", type=int, default=100_000, help="size of the grown corpus")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--allow-cpu", action="store_true", help="run without a GPU (to check the script)")
    parser.add_argument("--scifact-docs", type=int, default=None,
                        help="keep only the positives and this many more SciFact passages (a quick check on CPU)")
    parser.add_argument("--out-dir", type=Path, default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        print("benchmarks/gpu.py: no CUDA device here (torch.cuda.is_available() is False), so there is nothing "
              "to measure; skipped. Run it on a machine with a GPU (pass --allow-cpu to check the script on a CPU).")
        return 0
    device = args.device if torch.cuda.is_available() else "cpu"
    card = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU run)"
    out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="hnmine-gpu-"))
    start = time.perf_counter()
    snapshot = vs.snapshot_hnmine(out_dir)
    info = vs.write_inputs(args.scifact, out_dir, None, args.seed)
    scifact = out_dir / "inputs" / "full"
    if args.scifact_docs is not None:
        shrink_corpus(scifact, args.scifact_docs)
        info["docs"] = args.scifact_docs
    grown = out_dir / "inputs" / "grown"
    build_100k(scifact, grown, args.docs, args.seed)
    print(f"GPU: {card}; {info['queries']} SciFact train queries; corpora: SciFact ({info['docs']:,} passages) and "
          f"{args.docs:,} passages built from it; out dir {out_dir}", flush=True)
    runs = run_corpus("scifact", scifact, out_dir, snapshot, device)
    runs += run_corpus(size_label(args.docs), grown, out_dir, snapshot, device)
    total = time.perf_counter() - start

    print()
    print(f"{'corpus':<8} {'scenario':<6} {'run':<40} {'wall s':>8} {'host RSS MiB':>13} {'GPU MiB':>8} "
          f"{'torch GPU MiB':>13} {'negatives':>9} {'Jaccard':>8}")
    for r in runs:
        torch_gpu = r.get("stats", {}).get("gpu_peak_allocated_mib")
        print(f"{r['corpus']:<8} {r['scenario']:<6} {r['label']:<40} {r['wall_s']:>8.1f} {r['peak_rss_mib']:>13,.0f} "
              f"{vs.fmt(r.get('gpu_peak_mib'), ',.0f'):>8} {vs.fmt(torch_gpu, ',.0f'):>13} "
              f"{vs.fmt(r.get('negatives'), ','):>9} {vs.fmt(r.get('jaccard_vs_hnmine_cold'), '.3f'):>8}"
              + ("" if r["rc"] == 0 else f"  FAILED, see {r['log']}"))
    for corpus in dict.fromkeys(r["corpus"] for r in runs):
        mine = {r["label"]: r for r in runs if r["corpus"] == corpus and r["rc"] == 0}
        notes = run_notes(mine.get(HNMINE_DEFAULTS, {}))
        print(f"{corpus}: {HNMINE_DEFAULTS} ran with encoder precision {notes.get('encoder precision', '?')}, "
              f"search {notes.get('exact search', 'FAISS flat index on CPU')}")
        pairs = [(HNMINE_DEFAULTS, "ST defaults (float32)"),
                 ("hnmine --dtype float32", "ST defaults (float32)"),
                 (HNMINE_DEFAULTS, "ST bfloat16"), ("hnmine (cache)", "ST cache_folder")]
        ratios = [f"{a} vs {b}: {mine[b]['wall_s'] / mine[a]['wall_s']:.2f}x" for a, b in pairs
                  if a in mine and b in mine]
        print(f"{corpus}: ST time / hnmine time: " + "; ".join(ratios))
    print(f"whole benchmark: {total:.0f} s on {card}")
    if args.json:
        keep = ("corpus", "scenario", "label", "wall_s", "cpu_s", "peak_rss_mib", "gpu_peak_mib", "rc", "negatives",
                "jaccard_vs_hnmine_cold", "load_before", "load_after")
        args.json.write_text(json.dumps({"card": card, "device": device, "docs": args.docs, "total_s": total,
                                         "runs": [{**{k: r.get(k) for k in keep}, "stats": r.get("stats"),
                                                   "notes": run_notes(r)}
                                                  for r in runs]}, indent=2, default=str) + "\n", encoding="utf-8")
    if args.out_dir is None:
        shutil.rmtree(out_dir, ignore_errors=True)
    return 0 if all(r["rc"] == 0 for r in runs) else 1


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    raise SystemExit(main())
