"""Downstream quality on NFCorpus: do negatives with fewer false negatives train a better retriever?

SciFact cannot decide this (about one labelled positive per query, so a false negative is invisible); NFCorpus
can: its labels are dense. The setting matches ``benchmarks/false_negatives.py``:

* **Training data**: NFCorpus **train** queries, each with **one** known positive (seeded choice; train's
  grades are all 1), everything else unlabelled, exactly what a user with (query, positive) pairs has. Each
  strategy mines ``--negatives`` (3, sentence-transformers' default) negatives per query from the train
  queries; the rows are (query, positive, negative) triplets.
* **Model**: the bundled all-MiniLM-L6-v2 fine-tuned for one epoch with MultipleNegativesRankingLoss (in-batch
  negatives plus the mined one), the same seed, batch size, learning rate and sequence length for every row.
* **Evaluation**: nDCG@10 on NFCorpus **dev** (324 queries) against the full 3,633-document corpus with dev's
  full graded labels (gain = grade, BEIR / pytrec_eval definition). Dev is never mined or trained on.

Rows (``--rows``): ``zero-shot`` (not trained), ``random`` (seeded random non-positive documents),
``st`` (sentence-transformers' ``mine_hard_negatives`` at its defaults, run for real), ``hnmine``
(``hnmine mine`` defaults), ``best`` (``--best-recipe``: a recipe of the frontier benchmark by name),
``teacher`` (``--teacher DIR``: dense ranks ``--teacher-window`` denoised by that cross-encoder with
``--teacher-rule``, e.g. a ``hnmine train-denoiser`` model trained on NFCorpus train), ``labels`` (dense ranks
1-50 denoised by the label-graph teacher of ``benchmarks/teacher_denoise.py``, reading the labels of the train
queries not mined here; ``--label-drop``), ``lg`` (``hnmine mine`` itself with the label-graph stage over
dense ranks 1-50, labelled set = the train queries not mined here, default threshold) and ``lg-relabel``
(the same with ``--relabel-false-negatives``: the dropped candidates at ``--relabel-probability`` or above
become extra positives, each in one more row with one of its query's mined negatives) and ``lg-more``, its
control: the same rows, with the query's known positive where ``lg-relabel`` puts an extra one (as many
training steps, no relabeled information).
Every trained row runs at each seed of ``--seeds``; the report gives mean ± standard deviation over seeds and
the **paired** per-seed differences (same seed = same initial shuffling and dropout), and calls a difference
real only when it is larger than twice its spread.

Sizing. CPU (default): ``--train-queries 800`` (of 2,590), training sequences cut to 128 tokens, evaluation at
128 tokens, 3 seeds: about 6 minutes per (row, seed) on a quiet 2-core CPU, the whole table (4 trained rows x 3
seeds + zero-shot) in about 1.5-2 hours. ``--gpu``: every train query, 256 tokens, 8 seeds, on CUDA; sized to
finish in well under 8 minutes on one data-centre GPU (each run is ~2,600 x 3 triplets, 1 epoch).

Every (row, seed) result lands in ``OUT/runs/ROW__seedN.json`` as soon as it finishes and the report is
rewritten after each, so rerunning the same command continues an interrupted table.

    nice -n 10 .venv/bin/python benchmarks/downstream_nfcorpus.py --out-dir /tmp/hnmine-downstream-nf
    .venv/bin/python benchmarks/downstream_nfcorpus.py --gpu --out-dir /tmp/hnmine-downstream-nf-gpu
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from false_negatives import (
    RECIPES,
    Recipe,
    Setting,
    nfcorpus_one_positive,
    sentence_transformers_recipe,
)

ROOT = Path(__file__).resolve().parents[1]
NFCORPUS = ROOT.parent / "shared" / "datasets" / "nfcorpus"
ROWS = ("zero-shot", "random", "st", "hnmine", "best", "teacher", "labels", "lg", "lg-relabel", "lg-more")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------------------------ mining

def subsample(setting: Setting, n: int | None, seed: int) -> Setting:
    """A seeded sample of ``n`` train queries (their one known positive each); the corpus stays whole."""
    data = setting.data
    if not n or n >= data.num_queries:
        return setting
    return restrict(setting, sorted(random.Random(seed).sample(range(data.num_queries), n)))


def restrict(setting: Setting, keep: list[int]) -> Setting:
    """Only the queries ``keep`` (indices), with their known positives and hidden labels."""
    from hnmine.data import MiningData

    data = setting.data
    pairs = [(i, int(d)) for i, q in enumerate(keep) for d in data.positives_of(q)]
    small = MiningData.from_pairs([data.query_ids[q] for q in keep], [data.query_texts[q] for q in keep],
                                  data.doc_ids, data.doc_texts, pairs, data.source)
    new_of = {q: i for i, q in enumerate(keep)}
    relevant = {(new_of[q], d) for q, d in setting.relevant if q in new_of}
    return Setting(setting.name, small, relevant)


def random_negatives(setting: Setting, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    data = setting.data
    rng = np.random.default_rng(seed)
    q_out, d_out = [], []
    for q in range(data.num_queries):
        known = set(data.positives_of(q).tolist())
        picks: list[int] = []
        while len(picks) < k:
            d = int(rng.integers(data.num_docs))
            if d not in known and d not in picks:
                picks.append(d)
        q_out += [q] * k
        d_out += picks
    return np.array(q_out), np.array(d_out)


def label_graph_negatives(setting: Setting, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """The ``labels`` row: dense ranks 1-50, minus the ``--label-drop`` share of candidates that the label-graph
    teacher of ``benchmarks/teacher_denoise.py`` scores most likely relevant, then the top ``--negatives``.

    The teacher reads the labels of the train queries that are **not** mined here (the mined ones are
    unlabelled in this setting) and is fitted on those other queries, fold-wise, as in that benchmark. The
    removal share is a budget, not a threshold tuned on labels: 25 % of ranks 1-50 is about where the teacher
    removes 20 % of the true negatives on dev."""
    import teacher_denoise as td

    mined_ids = frozenset(setting.data.query_ids)
    full = nfcorpus_one_positive(args.data, "train", args.mine_seed)
    fit = restrict(full, [i for i, qid in enumerate(full.data.query_ids) if qid not in mined_ids])
    ns = argparse.Namespace(depth=50, ce_max_length=128, cache=None)
    tq, tdoc, trank, thidden, tscores, tpositive, _, textra = td.score_candidates(fit.data, fit.relevant, ns, None)
    fit_graph = td.label_graph_fit_features(args.data, fit.data, tq, tdoc, trank, 3, args.mine_seed, mined_ids)
    model = td.fit_learned(np.c_[td.features(tscores, tpositive, tq, trank), textra, fit_graph], thidden, "hgb")
    q, d, rank, _, scores, positive, _, extra = td.score_candidates(setting.data, setting.relevant, ns, None)
    graph = td.label_graph_features(args.data, setting.data, q, d, rank, mined_ids)
    s = model(np.c_[td.features(scores, positive, q, rank), extra, graph])
    chosen, _ = td.top_per_query(q, s < np.quantile(s, 1.0 - args.label_drop), args.negatives,
                                 setting.data.num_queries)
    return q[chosen], d[chosen]


def recipe_for(row: str, args: argparse.Namespace) -> Recipe:
    if row == "st":
        return sentence_transformers_recipe("sentence-transformers defaults", num_negatives=args.negatives)
    if row == "hnmine":
        return Recipe("hnmine defaults", "window", {"num_negatives": args.negatives})
    if row in ("lg", "lg-relabel"):
        # NFCorpus train as the labelled set: the stage itself leaves out the labelled queries mined here
        return Recipe(f"label graph, dense 1-50{', relabel' if row == 'lg-relabel' else ''}", "teacher",
                      {"num_negatives": args.negatives, "range_min": 0, "range_max": 50,
                       "label_graph_queries": str(args.data / "queries.jsonl"),
                       "label_graph_qrels": str(args.data / "qrels-train.tsv"), "seed": args.mine_seed,
                       "relabel_false_negatives": row == "lg-relabel",
                       "label_graph_relabel_probability": args.relabel_probability})
    if row == "teacher":
        if not args.teacher:
            raise SystemExit("--rows teacher needs --teacher DIR (a cross-encoder, e.g. from hnmine train-denoiser)")
        rule, value = args.teacher_rule.split("=")
        lo, hi = (int(x) for x in args.teacher_window.split(":"))
        return Recipe(f"teacher {args.teacher_rule}", "teacher",
                      {"num_negatives": args.negatives, "range_min": lo, "range_max": hi,
                       "cross_encoder": args.teacher, "ce_max_length": 128, rule.replace("-", "_"): float(value)})
    matches = [r for r in RECIPES if r.name == args.best_recipe]
    if not matches:
        raise SystemExit(f"--best-recipe {args.best_recipe!r}: not a recipe of benchmarks/false_negatives.py "
                         f"({', '.join(r.name for r in RECIPES)})")
    best = matches[0]
    return Recipe(best.name, best.family, {**(best.options or {}), "num_negatives": args.negatives}, best.pipeline)


def mine(row: str, setting: Setting, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Triplets (query, positive, negative) for ``row``, cached as Parquet with the train-set FN rate."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = out / "mined" / f"{row}.parquet"
    info_path = path.with_suffix(".json")
    if path.exists() and info_path.exists():
        return json.loads(info_path.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    if row == "lg-more":
        return more_rows_control(setting, args, out, path)
    start = time.perf_counter()
    relabeled = None
    if row == "random":
        q, d = random_negatives(setting, args.negatives, args.mine_seed)
    elif row == "labels":
        q, d = label_graph_negatives(setting, args)
    else:
        mined = recipe_for(row, args).mine(setting, out / "work")
        q, d, relabeled = mined.query_idx, mined.doc_idx, mined.relabeled
    seconds = time.perf_counter() - start
    data = setting.data
    positive = np.array([int(data.positives_of(int(a))[0]) for a in q], dtype=np.int64)
    is_fn = [(int(a), int(b)) in setting.relevant for a, b in zip(q, d)]
    info = {"rows": len(q), "mine_seconds": round(seconds, 1),
            "train_fn_rate": float(np.mean(is_fn)) if len(q) else None,
            "queries_with_negatives": len(set(q.tolist()))}
    if relabeled is not None:
        # Each extra positive in one more row, with its query's mined negatives in turn. (The triplet layout pairs
        # it with every one of them; once each keeps this row's training time near the others'.)
        rq, rd = relabeled
        info.update({"relabeled": len(rq), "relabeled_truly_relevant": float(np.mean(
            [(int(a), int(b)) in setting.relevant for a, b in zip(rq, rd)])) if len(rq) else None})
        rows_of, seen = {int(a): np.flatnonzero(q == a) for a in np.unique(rq)}, dict.fromkeys(rq.tolist(), 0)
        pick, extra = [], []
        for a, b in zip(rq.tolist(), rd.tolist()):
            if len(rows_of[a]):  # a query with no negative left has no row to add to
                pick.append(rows_of[a][seen[a] % len(rows_of[a])])
                extra.append(b)
                seen[a] += 1
        pick_rows = np.array(pick, dtype=np.int64)
        positive = np.concatenate([positive, np.array(extra, dtype=np.int64)])
        q, d = np.concatenate([q, q[pick_rows]]), np.concatenate([d, d[pick_rows]])
        info.update({"rows": len(q), "extra_rows": len(pick)})
    pq.write_table(pa.table({"query": [data.query_texts[a] for a in q],
                             "positive": [data.doc_texts[p] for p in positive],
                             "negative": [data.doc_texts[b] for b in d]}), path)
    info_path.write_text(json.dumps(info, indent=1))
    log(f"mined {row}: {info}")
    return info


def more_rows_control(setting: Setting, args: argparse.Namespace, out: Path, path: Path) -> dict[str, Any]:
    """``lg-relabel``'s very rows (mined once), with each extra positive replaced by its query's known positive:
    the same negatives and training steps without the relabeled documents. Derived from that file rather than
    mined again, since a second mine may differ in the last float where the thread count differs."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    info = mine("lg-relabel", setting, args, out)
    rows = pq.read_table(path.with_name("lg-relabel.parquet")).to_pydict()
    first = len(rows["query"]) - info["extra_rows"]  # the extra rows follow the (query, known, negative) ones
    known: dict[str, str] = {}
    for query, positive in zip(rows["query"][:first], rows["positive"][:first]):
        known.setdefault(query, positive)
    positives = rows["positive"][:first] + [known[query] for query in rows["query"][first:]]
    pq.write_table(pa.table({"query": rows["query"], "positive": positives, "negative": rows["negative"]}), path)
    info = {**info, "control": "lg-relabel's rows, the query's known positive in place of each extra one"}
    path.with_suffix(".json").write_text(json.dumps(info, indent=1))
    return info


# ------------------------------------------------------------------------------------------------ train / eval

class DevSet:
    def __init__(self, root: Path) -> None:
        from hnmine.io.inputs import load_beir, read_beir

        data = load_beir(root, "dev")
        _, _, qrels = read_beir(root, "dev")
        self.queries, self.docs, self.doc_ids, self.query_ids = data.query_texts, data.doc_texts, data.doc_ids, \
            data.query_ids
        self.grades: dict[str, dict[str, int]] = {}
        for q, d, s in zip(*(qrels.column(c).to_pylist() for c in ("query_id", "doc_id", "score"))):
            if s > 0:
                self.grades.setdefault(q, {})[d] = s


def ndcg_at_10(model: Any, dev: DevSet, max_seq_length: int, device: str) -> float:
    """Exact search; nDCG@10 with graded gains (BEIR / pytrec_eval: gain = grade, log2 discount)."""
    import torch

    model.max_seq_length = max_seq_length
    with torch.inference_mode():
        docs = model.encode(dev.docs, batch_size=64, convert_to_tensor=True, normalize_embeddings=True,
                            show_progress_bar=False, device=device).float()
        queries = model.encode(dev.queries, batch_size=64, convert_to_tensor=True, normalize_embeddings=True,
                               show_progress_bar=False, device=device).float()
    top = torch.topk(queries @ docs.T, k=10, dim=1).indices.tolist()
    scores = []
    for qid, ranked in zip(dev.query_ids, top):
        grades = dev.grades[qid]
        dcg = sum(grades.get(dev.doc_ids[i], 0) / math.log2(r + 2) for r, i in enumerate(ranked))
        ideal = sorted(grades.values(), reverse=True)[:10]
        idcg = sum(g / math.log2(r + 2) for r, g in enumerate(ideal))
        scores.append(dcg / idcg)
    return float(np.mean(scores))


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

    from hnmine.engines.encoder import resolve_model

    dataset = Dataset(pq.read_table(triplets))
    if args.quick:
        dataset = dataset.select(range(min(64, len(dataset))))
    torch.manual_seed(seed)
    model = SentenceTransformer(resolve_model("all-MiniLM-L6-v2"), device=args.device)
    model.max_seq_length = args.train_max_seq_length
    targs = SentenceTransformerTrainingArguments(
        output_dir=str(work), num_train_epochs=1, per_device_train_batch_size=args.batch_size,
        learning_rate=2e-5, warmup_ratio=0.1, seed=seed, data_seed=seed, save_strategy="no", report_to="none",
        logging_steps=20, use_cpu=args.device == "cpu", disable_tqdm=True,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
    )
    if args.loss == "gist":  # in-batch negatives that the frozen guide scores above the positive are masked
        guide = SentenceTransformer(resolve_model("all-MiniLM-L6-v2"), device=args.device)
        guide.max_seq_length = args.train_max_seq_length
        loss = losses.GISTEmbedLoss(model, guide)
    elif args.loss == "triplet":  # only the mined negative teaches: no in-batch negatives (library defaults)
        loss = losses.TripletLoss(model)
    else:
        loss = losses.MultipleNegativesRankingLoss(model)
    trainer = SentenceTransformerTrainer(model=model, args=targs, train_dataset=dataset, loss=loss)
    start = time.perf_counter()
    out = trainer.train()
    shutil.rmtree(work, ignore_errors=True)
    return model, {"train_s": round(time.perf_counter() - start, 1), "train_rows": len(dataset),
                   "steps": out.global_step, "train_loss": out.training_loss}


# ------------------------------------------------------------------------------------------------------ report

def report(out: Path, args: argparse.Namespace, mined: dict[str, dict]) -> str:
    runs: dict[str, dict[int, float]] = {}
    for path in sorted((out / "runs").glob("*.json")):
        r = json.loads(path.read_text())
        runs.setdefault(r["row"], {})[r["seed"]] = r["ndcg@10"]

    def ms(values: list[float]) -> str:
        if not values:
            return "-"
        sd = statistics.stdev(values) if len(values) > 1 else None
        return f"{statistics.fmean(values):.4f}" + (f" ± {sd:.4f}" if sd is not None else " (1 seed)")

    lines = ["# Downstream on NFCorpus (train -> dev nDCG@10, full graded dev labels)", "",
             f"Command: `{' '.join(sys.argv)}`", "",
             f"{args.train_queries or 'all'} train queries, one known positive each, {args.negatives} mined "
             f"negatives per query; {args.loss.upper()}, 1 epoch, batch {args.batch_size}, lr 2e-5, train max length "
             f"{args.train_max_seq_length}, eval max length {args.eval_max_seq_length}, device {args.device}.", "",
             "| row | seeds | nDCG@10 (mean ± sd over seeds) | train-set FN rate of the mined negatives | "
             "paired diff vs st (mean ± sd) | paired diff vs hnmine (mean ± sd) |", "|---|---|---|---|---|---|"]

    def paired(row: str, base: str) -> str:
        common = sorted(set(runs.get(row, {})) & set(runs.get(base, {})))
        if row == base or len(common) < 2:
            return "-"
        diffs = [runs[row][s] - runs[base][s] for s in common]
        m, sd = statistics.fmean(diffs), statistics.stdev(diffs)
        verdict = "real" if abs(m) > 2 * sd else "within spread"
        return f"{m:+.4f} ± {sd:.4f} ({len(common)} seeds, {verdict})"

    for row in args.rows:
        values = list(runs.get(row, {}).values())
        fn = mined.get(row, {}).get("train_fn_rate")
        lines.append(f"| {row} | {len(values)} | {ms(values)} | {'-' if fn is None else f'{fn:.1%}'} | "
                     f"{paired(row, 'st')} | {paired(row, 'hnmine')} |")
    lines += ["", "Train-set FN rate: share of mined (query, negative) pairs that NFCorpus train's full labels mark "
              "relevant (the miner saw one positive per query).", ""]
    text = "\n".join(lines)
    (out / "downstream_nfcorpus.md").write_text(text)
    (out / "downstream_nfcorpus.json").write_text(json.dumps({"runs": runs, "mined": mined,
                                                              "args": {k: str(v) for k, v in vars(args).items()}},
                                                             indent=1))
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=NFCORPUS)
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--rows", default=None, help=f"comma-separated, of {', '.join(ROWS)} (default: all; "
                                                  "'teacher' only with --teacher)")
    ap.add_argument("--best-recipe", default="siblings p60 + lexical 100, dense 1-100",
                    help="name of a recipe in benchmarks/false_negatives.py")
    ap.add_argument("--teacher", default=None, help="cross-encoder folder for the 'teacher' row")
    ap.add_argument("--teacher-rule", default="max_z=1.0", help="RULE=VALUE of the teacher row (max_z, max_score, "
                                                                "spread_margin, max_ratio, margin)")
    ap.add_argument("--teacher-window", default="0:50", help="RANGE_MIN:RANGE_MAX the teacher row draws from")
    ap.add_argument("--label-drop", type=float, default=0.25,
                    help="the 'labels' row removes this share of ranks 1-50 that the label-graph teacher scores "
                         "most likely relevant")
    ap.add_argument("--relabel-probability", type=float, default=0.5,
                    help="the 'lg-relabel' row's --label-graph-relabel-probability")
    ap.add_argument("--loss", choices=("mnrl", "gist", "triplet"), default="mnrl",
                    help="mnrl: MultipleNegativesRankingLoss (in-batch negatives unfiltered); gist: GISTEmbedLoss "
                         "with the frozen bundled model as guide (in-batch and mined negatives it scores above the "
                         "positive are masked); triplet: TripletLoss with its defaults (Euclidean, margin 5), where "
                         "only each row's mined negative teaches, so its false negatives act undiluted")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--train-queries", type=int, default=800, help="seeded sample of train queries (0: all)")
    ap.add_argument("--negatives", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--train-max-seq-length", type=int, default=128)
    ap.add_argument("--eval-max-seq-length", type=int, default=128)
    ap.add_argument("--mine-seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--gpu", action="store_true",
                    help="all train queries, 256 tokens, seeds 0-7, on cuda (overrides those options)")
    ap.add_argument("--quick", action="store_true", help="64 training rows per run: a smoke test of the plumbing")
    args = ap.parse_args()
    if args.gpu:
        args.device, args.train_queries, args.seeds = "cuda", 0, "0,1,2,3,4,5,6,7"
        args.train_max_seq_length = args.eval_max_seq_length = 256
        args.batch_size = 64
    if args.rows is None:
        args.rows = ",".join(r for r in ROWS if r != "teacher" or args.teacher)
    args.rows = [r.strip() for r in args.rows.split(",")]
    unknown = set(args.rows) - set(ROWS)
    if unknown:
        raise SystemExit(f"--rows: unknown {', '.join(sorted(unknown))} (expected {', '.join(ROWS)})")
    seeds = [int(s) for s in args.seeds.split(",")]
    out = args.out_dir
    (out / "runs").mkdir(parents=True, exist_ok=True)

    setting = subsample(nfcorpus_one_positive(args.data, "train", args.mine_seed), args.train_queries,
                        args.mine_seed)
    dev = DevSet(args.data)
    mined: dict[str, dict] = {}
    for row in args.rows:
        if row != "zero-shot":
            mined[row] = mine(row, setting, args, out)
    for seed in seeds:  # seeds outermost: an interrupted table still has every row at the first seeds
        for row in args.rows:
            path = out / "runs" / f"{row}__seed{seed}.json"
            if path.exists() or (row == "zero-shot" and seed != seeds[0]):
                continue
            start = time.perf_counter()
            if row == "zero-shot":
                from sentence_transformers import SentenceTransformer

                from hnmine.engines.encoder import resolve_model

                model, info = SentenceTransformer(resolve_model("all-MiniLM-L6-v2"), device=args.device), {}
            else:
                model, info = train(out / "mined" / f"{row}.parquet", seed, args, out / "work" / f"{row}-{seed}")
            score = ndcg_at_10(model, dev, args.eval_max_seq_length, args.device)
            result = {"row": row, "seed": seed, "ndcg@10": score, **info,
                      "seconds": round(time.perf_counter() - start, 1)}
            path.write_text(json.dumps(result, indent=1))
            log(f"{row} seed {seed}: nDCG@10 {score:.4f} ({result['seconds']} s)")
            print(report(out, args, mined))
    print(report(out, args, mined))


if __name__ == "__main__":
    main()
