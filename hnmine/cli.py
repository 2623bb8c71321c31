"""Command line: parse options, build a pipeline, run it, report. No mining logic lives here."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape

from hnmine import __version__, progress
from hnmine.config import load_pipeline, pipeline_to_toml
from hnmine.data import MiningData
from hnmine.errors import InputError, Terminated
from hnmine.io.inputs import ColumnNames, load_beir, load_pairs_input, load_qrels_inputs, read_beir
from hnmine.io.manifest import build_manifest, input_entry, manifest_path, print_summary
from hnmine.io.triplets import TripletColumns, denoise_triplets, read_triplets
from hnmine.io.writers import (
    FORMATS,
    MinedWriter,
    atomic_dir,
    atomic_path,
    check_output_path,
    deferred_signals,
    write_json_atomic,
)
from hnmine.jobs.checkpoint import ChunkCheckpoint, OutputLock, run_fingerprint
from hnmine.jobs.train_denoiser import DenoiserTraining
from hnmine.pipeline import MiningReport, Pipeline
from hnmine.recipe import MineOptions, build_denoiser, build_pipeline
from hnmine.stage import stage_options
from hnmine.stages.ambiguous import parse_zone
from hnmine.stages.cross_encoder import CrossEncoderDenoiser, CrossEncoderScorer
from hnmine.stages.dense import DenseRetriever
from hnmine.stages.exclusion import PositiveExcluder
from hnmine.stages.hidden_positives import hide_positives, with_probes
from hnmine.stages.window import RankWindow

app = typer.Typer(
    name="hnmine",
    help="Offline hard-negative mining for retrieval and embedding models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)

T = TypeVar("T")

INPUT = "Input"
COLUMNS = "Input columns"
RETRIEVAL = "Retrieval"
DENSE = "Dense encoder"
DENOISE = "False-negative filtering"
SELECT = "Zone and selection"
OUTPUT = "Output"
STRATEGY = "Strategies (metric learning, curriculum, topics)"

# Each option's default is the dataclass field it sets, defined there once (tests/test_registry.py checks them all).
MINE = MineOptions()
ENCODER = MINE.dense
COLUMN_NAMES = ColumnNames()
TRIPLET_COLUMNS = TripletColumns()
TEACHER = CrossEncoderScorer()
TRAINING = DenoiserTraining()


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(signum)


def _guarded(fn: Callable[[], T]) -> T:
    """Bad input is one line and a non-zero exit; Ctrl-C and SIGTERM leave no partial output.

    An OSError is the environment (a full disk, a vanished folder), not a bug: one line naming the file.
    """
    previous = None
    with contextlib.suppress(ValueError):  # not the main thread: leave SIGTERM alone
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return fn()
    except InputError as exc:
        _fail(str(exc))
    except KeyboardInterrupt as exc:
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        _fail(f"{what}; {getattr(exc, 'outcome', 'no output was written')}",
              code=128 + getattr(exc, "signum", signal.SIGINT))
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or exc}")
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    raise AssertionError("unreachable")


def _display(quiet: bool) -> progress.Display | None:
    """The run's one progress display (bars on a terminal, a line per phase elsewhere); libraries draw none."""
    progress.quiet_libraries()
    return progress.display_for(err, quiet)


def _read(load: Callable[[], MiningData]) -> MiningData:
    with progress.phase("read") as step:
        data = load()
        step.set_note(f"{data.num_queries:,} queries, {data.num_docs:,} documents")
    return data


def _ray_engine(engine: str, address: str | None, workers: int | None, shards: int | None) -> Any:
    """None for the local engine. The Ray engine is imported only when asked for, so Ray stays optional."""
    if engine == "local":
        given = [n for n, v in (("--ray-address", address), ("--ray-workers", workers), ("--ray-shards", shards))
                 if v is not None]
        if given:
            raise InputError(f"{', '.join(given)} needs --engine ray")
        return None
    if engine != "ray":
        raise InputError(f"--engine {engine!r}: expected local or ray")
    from hnmine.engines.ray import RayEngine

    return RayEngine(address=address, workers=workers, shards=shards)


def flagembedding_manifest(pipeline: Pipeline, unusable: int) -> dict[str, Any]:
    """What a FlagEmbedding user must know: the scale of pos_scores/neg_scores, and the queries left out."""
    retriever = pipeline.stages[0].kind if pipeline.stages else "unknown"
    if any(isinstance(s, CrossEncoderDenoiser) for s in pipeline.stages):
        scale = "cross-encoder score (the --cross-encoder model's own output scale)"
    else:
        scale = {"dense": "cosine similarity of the dense retriever", "bm25": "BM25 score",
                 "hybrid": "reciprocal-rank-fusion score"}.get(retriever, f"{retriever} retriever score")
    return {"scores": scale, "queries_without_negatives_not_written": unusable,
            "note": "records with no negative would crash FlagEmbedding's loader (it divides by len(neg))"}


def _load(queries: Path | None, corpus: Path | None, qrels: Path | None, pairs: Path | None,
          beir: Path | None, split: str, columns: ColumnNames, strict: bool) -> MiningData:
    given = [n for n, v in (("--pairs", pairs), ("--beir", beir), ("--queries/--qrels", queries or qrels)) if v]
    if len(given) > 1:
        raise InputError(f"give one input layout, not {' and '.join(given)}")
    if pairs is not None:
        data = load_pairs_input(pairs, corpus, columns)
    elif beir is not None:
        if corpus is not None:
            raise InputError("--beir brings its own corpus; drop --corpus")
        data = load_beir(beir, split)
    else:
        missing = [n for n, v in (("--queries", queries), ("--corpus", corpus), ("--qrels", qrels)) if v is None]
        if missing:
            raise InputError(f"missing {', '.join(missing)} (or give --pairs P.parquet, or --beir DIR)")
        assert queries and corpus and qrels
        data = load_qrels_inputs(queries, corpus, qrels, columns)
    lacking = int((data.positive_counts == 0).sum())
    if lacking and strict:
        first = data.query_ids[int(np.flatnonzero(data.positive_counts == 0)[0])]
        raise InputError(f"{lacking} queries have no positive in the qrels (first: {first!r}); "
                         "drop --strict to skip them with a warning")
    if lacking:
        err.print(f"[yellow]warning:[/] skipping {lacking} queries with no positive")
    return data.without_queries_lacking_positives()


# Flags the pipeline is built from; --config replaces them all (hide-fraction and split-tiers act around it).
PIPELINE_PANELS = (RETRIEVAL, DENSE, DENOISE, SELECT, STRATEGY)
NOT_PIPELINE_FLAGS = ("hide_fraction", "split_tiers")


def _flags_given(ctx: typer.Context, panels: tuple[str, ...], extra: tuple[str, ...] = (),
                 exclude: tuple[str, ...] = ()) -> list[str]:
    """The options of ``panels`` (and ``extra``) that the command line set, by their flag names."""
    given = []
    for param in ctx.command.params:
        if param.name in exclude or not param.opts:
            continue
        if getattr(param, "rich_help_panel", None) in panels or param.name in extra:
            source = ctx.get_parameter_source(param.name)  # by name: typer may bundle its own click
            if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
                given.append(param.opts[0])
    return given


@app.command()
def mine(
    ctx: typer.Context,
    queries: Annotated[Path | None, typer.Option(
        help="Queries file (query_id, query): Parquet, jsonl, json, csv, tsv or a datasets folder (save_to_disk or "
             "Hub layout). Default: none.", rich_help_panel=INPUT)] = None,
    corpus: Annotated[Path | None, typer.Option(
        help="Corpus file (doc_id or _id, text, optional title; title is prepended), any format --queries "
             "reads. With --pairs: extra documents. Default: none.",
        rich_help_panel=INPUT)] = None,
    qrels: Annotated[Path | None, typer.Option(
        help="Positives file (query_id, doc_id, optional score > 0; BEIR query-id/corpus-id read too). "
             "Default: none.",
                                               rich_help_panel=INPUT)] = None,
    pairs: Annotated[Path | None, typer.Option(
        help="One pairs file instead of queries/corpus/qrels: (anchor|query, positive|pos) columns, as "
             "sentence-transformers and FlagEmbedding (pos lists) write them; ids come from the text. "
             "Default: none.",
        rich_help_panel=INPUT)] = None,
    beir: Annotated[Path | None, typer.Option(help="A BEIR folder (corpus.jsonl, queries.jsonl, qrels). Default: none.",
                                              rich_help_panel=INPUT)] = None,
    split: Annotated[str, typer.Option(help="BEIR qrels split to mine.", rich_help_panel=INPUT)] = "train",
    strict: Annotated[bool, typer.Option(help="Fail, instead of warn and skip, on queries with no positive.",
                                         rich_help_panel=INPUT)] = False,
    query_id_column: Annotated[str, typer.Option(help="Query id column (queries and qrels).",
                                                 rich_help_panel=COLUMNS)] = COLUMN_NAMES.query_id,
    query_column: Annotated[str, typer.Option(help="Query text column (queries; anchor alias in pairs).",
                                              rich_help_panel=COLUMNS)] = COLUMN_NAMES.query,
    doc_id_column: Annotated[str, typer.Option(help="Document id column (corpus and qrels).",
                                               rich_help_panel=COLUMNS)] = COLUMN_NAMES.doc_id,
    text_column: Annotated[str, typer.Option(
        help="Document text column.", rich_help_panel=COLUMNS)] = COLUMN_NAMES.text,
    title_column: Annotated[str, typer.Option(help="Used if present.", rich_help_panel=COLUMNS)] = COLUMN_NAMES.title,
    qrels_score_column: Annotated[str, typer.Option(
        help="Used if present.", rich_help_panel=COLUMNS)] = COLUMN_NAMES.qrels_score,
    positive_column: Annotated[str, typer.Option(help="Pairs file positive column.",
                                                 rich_help_panel=COLUMNS)] = COLUMN_NAMES.pairs_positive,
    output: Annotated[Path | None, typer.Option(
        help="Output file (Parquet; jsonl for flagembedding and tevatron). Required.",
        rich_help_panel=OUTPUT)] = None,
    format: Annotated[str, typer.Option(help=f"Output layout: {' | '.join(FORMATS)}.",
                                        rich_help_panel=OUTPUT)] = "triplet",
    prompt: Annotated[str | None, typer.Option(
        help="--format flagembedding: a 'prompt' field on every record, the query instruction FlagEmbedding's "
             "trainer prepends (when query_instruction_for_retrieval is set). Default: none.",
        rich_help_panel=OUTPUT)] = None,
    audit_columns: Annotated[bool, typer.Option(
        help="Add ids, ranks and scores after the text columns. --no-audit-columns writes only what a trainer "
             "reads.", rich_help_panel=OUTPUT)] = True,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file.",
                                            rich_help_panel=OUTPUT)] = False,
    config: Annotated[Path | None, typer.Option(
        help="Pipeline TOML listing the stages in order; replaces the retrieval/filter/selection flags. "
             "Default: none (the flags build the pipeline).",
        rich_help_panel=OUTPUT)] = None,
    print_config: Annotated[bool, typer.Option(help="Print the effective pipeline as TOML and exit.",
                                               rich_help_panel=OUTPUT)] = False,
    chunk_size: Annotated[int, typer.Option(help="Queries per chunk; bounds memory.",
                                            rich_help_panel=OUTPUT)] = MINE.chunk_size,
    quiet: Annotated[bool, typer.Option(help="No progress bars or summary.", rich_help_panel=OUTPUT)] = False,
    resume: Annotated[bool, typer.Option(
        help="Keep finished chunks in .OUTPUT.partial/ so an interrupted run continues where it stopped (same "
             "inputs and options); --no-resume starts over.", rich_help_panel=OUTPUT)] = True,
    retriever: Annotated[str, typer.Option(help="Candidate source: bm25 | dense | hybrid (RRF of both).",
                                           rich_help_panel=RETRIEVAL)] = MINE.retriever,
    num_negatives: Annotated[int, typer.Option(
        help="Negatives per query.", rich_help_panel=RETRIEVAL)] = MINE.num_negatives,
    range_min: Annotated[int, typer.Option(
        help="Skip the top N non-positive candidates (false-negative guard). What the default window 11-50 buys, "
             "on NFCorpus dev with one known positive per query (5 negatives, dense MiniLM): 13.1 % false "
             "negatives at mean rank 13, where sentence-transformers' defaults emit 30.7 % (mean rank 2) and "
             "ranks 1-50 27.8 % (mean rank 3); 31-100: 7.0 % (mean rank 33). --sibling-percentile 60 "
             "--lexical-top 100 over ranks 1-100 halves it (6.4 %) at the same mean rank.",
        rich_help_panel=RETRIEVAL)] = MINE.range_min,
    range_max: Annotated[int, typer.Option(help="Consider candidates up to this rank (non-positives).",
                                           rich_help_panel=RETRIEVAL)] = MINE.range_max,
    top_k: Annotated[int | None, typer.Option(
        help="Candidates retrieved per query. Default: range-max + the most positives any query has + 1.",
        rich_help_panel=RETRIEVAL)] = None,
    bm25_k1: Annotated[float, typer.Option(help="BM25 k1.", rich_help_panel=RETRIEVAL)] = MINE.bm25_k1,
    bm25_b: Annotated[float, typer.Option(help="BM25 b.", rich_help_panel=RETRIEVAL)] = MINE.bm25_b,
    stopwords: Annotated[bool, typer.Option(help="Remove English stopwords before BM25.",
                                            rich_help_panel=RETRIEVAL)] = MINE.stopwords,
    bm25_backend: Annotated[str, typer.Option(
        help="sparse (fast, same scores) | rank-bm25 (the reference).", rich_help_panel=RETRIEVAL)] = MINE.bm25_backend,
    rrf_k: Annotated[float, typer.Option(help="Hybrid: RRF constant k in 1/(k+rank).",
                                         rich_help_panel=RETRIEVAL)] = MINE.rrf_k,
    model: Annotated[str, typer.Option(
        help="SentenceTransformer name or local path. The default is bundled (no download).",
        rich_help_panel=DENSE)] = ENCODER.model,
    query_prompt: Annotated[str, typer.Option(help="Prefix for queries, e.g. 'query: ' (e5/bge).",
                                              rich_help_panel=DENSE)] = ENCODER.query_prompt,
    corpus_prompt: Annotated[str, typer.Option(help="Prefix for passages, e.g. 'passage: '.",
                                               rich_help_panel=DENSE)] = ENCODER.corpus_prompt,
    query_prompt_name: Annotated[str | None, typer.Option(
        help="A prompt of the model's own (its 'prompts' config, e.g. 'query') for queries, instead of "
             "--query-prompt. Default: none.", rich_help_panel=DENSE)] = None,
    corpus_prompt_name: Annotated[str | None, typer.Option(
        help="A prompt of the model's own for passages (e.g. 'document'). Default: none.",
        rich_help_panel=DENSE)] = None,
    max_seq_length: Annotated[int | None, typer.Option(
        help="Tokens per text the encoder reads (longer texts are truncated; the summary counts them). "
             "Default: the model's own max_seq_length.", rich_help_panel=DENSE)] = None,
    batch_size: Annotated[int, typer.Option(help="Encoding batch size.", rich_help_panel=DENSE)] = ENCODER.batch_size,
    device: Annotated[str | None, typer.Option(
        help="cpu, cuda, cuda:1, mps; a comma-separated list (cuda:0,cuda:1 or cpu,cpu) encodes with one "
             "process per entry (sentence-transformers' multi-process pool). Default: best available.",
                                               rich_help_panel=DENSE)] = None,
    dtype: Annotated[str, typer.Option(
        help="Encoder precision: auto | float32 | bfloat16 | float16. Reduced precision applies to the linear "
             "layers only (LayerNorm, residuals, pooling and, on CPU, attention stay float32). auto = bfloat16 "
             "on GPUs and on CPUs with native bf16 (avx512_bf16/amx), float32 elsewhere. Default: auto.",
        rich_help_panel=DENSE)] = ENCODER.dtype,
    cache_dir: Annotated[Path | None, typer.Option(
        help="Embedding cache. Default: $HNMINE_CACHE or ~/.cache/hnmine.", rich_help_panel=DENSE)] = None,
    cache: Annotated[bool, typer.Option(
        help="Reuse and store embeddings on disk.", rich_help_panel=DENSE)] = ENCODER.use_cache,
    corpus_embeddings: Annotated[Path | None, typer.Option(
        help="Precomputed corpus embeddings instead of encoding: .npy in corpus row order, or Parquet with "
             "doc_id + embedding (list) columns. Default: none (encode).", rich_help_panel=DENSE)] = None,
    query_embeddings: Annotated[Path | None, typer.Option(
        help="Precomputed query embeddings: .npy in query row order, or Parquet with query_id + embedding. "
             "Default: none (encode).", rich_help_panel=DENSE)] = None,
    index: Annotated[str, typer.Option(
        help="FAISS index: flat (exact) | ivf | hnsw (approximate, for millions of passages).",
        rich_help_panel=DENSE)] = ENCODER.index,
    ivf_nlist: Annotated[int | None, typer.Option(help="IVF lists. Default: about 4 x sqrt(corpus size).",
                                                  rich_help_panel=DENSE)] = None,
    ivf_nprobe: Annotated[int, typer.Option(
        help="IVF lists probed per query.", rich_help_panel=DENSE)] = ENCODER.ivf_nprobe,
    hnsw_m: Annotated[int, typer.Option(help="HNSW neighbours per node.", rich_help_panel=DENSE)] = ENCODER.hnsw_m,
    hnsw_ef_search: Annotated[int, typer.Option(
        help="HNSW search depth.", rich_help_panel=DENSE)] = ENCODER.hnsw_ef_search,
    save_index: Annotated[Path | None, typer.Option(help="Write the FAISS index here. Default: none.",
                                                    rich_help_panel=DENSE)] = None,
    load_index: Annotated[Path | None, typer.Option(
        help="Read a FAISS index saved by --save-index instead of building one. Default: none.",
        rich_help_panel=DENSE)] = None,
    cross_encoder: Annotated[str | None, typer.Option(
        help="CrossEncoder name or path. When given, --max-score/--margin/--max-ratio apply to its scores. "
             "Default: none (no cross-encoder).",
        rich_help_panel=DENOISE)] = None,
    max_score: Annotated[float | None, typer.Option(
        help="Drop candidates scoring >= this. Scale: cross-encoder score if --cross-encoder, else the "
             "retriever's (cosine for dense/hybrid, BM25 for bm25). Default: off.", rich_help_panel=DENOISE)] = None,
    margin: Annotated[float | None, typer.Option(
        help="Drop candidates scoring >= the query's lowest positive score - M (same scale as --max-score). "
             "Default: off.",
        rich_help_panel=DENOISE)] = None,
    max_ratio: Annotated[float | None, typer.Option(
        help="Drop candidates scoring > R x the query's lowest positive score (NV-Retriever: 0.95; same scale "
             "as --max-score). Default: off.",
        rich_help_panel=DENOISE)] = None,
    max_z: Annotated[float | None, typer.Option(
        help="Per query: drop candidates whose score is >= Z standard deviations above the mean of the query's "
             "own candidates (scale-free: same meaning for any teacher or retriever). On NFCorpus dev at 10 % "
             "false alarms it catches more hidden positives than the positive-relative rules: on the mining "
             "model's cosine 31 % (--margin 15 %, --max-ratio 7 %), on BM25 36 % (--margin 32 %). Default: off.",
        rich_help_panel=DENOISE)] = None,
    spread_margin: Annotated[float | None, typer.Option(
        help="Per query: drop candidates scoring >= the query's lowest positive score - K x the standard deviation "
             "of the query's candidate scores (a margin in the query's own units). Default: off.",
        rich_help_panel=DENOISE)] = None,
    sibling_percentile: Annotated[float | None, typer.Option(
        help="No-teacher denoising: drop candidates whose cosine to the query's known positive (document to "
             "document, mining model) is at or above this percentile of the query's top --sibling-pool "
             "candidates. 60 with --lexical-top 100 and --range-min 0 --range-max 100: 6 % false negatives at "
             "mean rank 13 on NFCorpus dev, vs 13 % for ranks 11-50. Default: off.",
        rich_help_panel=DENOISE)] = None,
    sibling_pool: Annotated[int, typer.Option(
        help="Candidates (by rank) the --sibling-percentile threshold is computed over.",
        rich_help_panel=DENOISE)] = MINE.sibling_pool,
    lexical_top: Annotated[int | None, typer.Option(
        help="Retriever agreement: drop candidates that BM25 also ranks in its top N for the query (they are "
             "relevant 3-4x as often as dense-only ones on NFCorpus dev). Default: off.",
        rich_help_panel=DENOISE)] = None,
    relabel_false_negatives: Annotated[bool, typer.Option(
        help="RLHN: write the candidates the false-negative rules remove as extra positives of their query, "
             "flagged (positive_relabeled / relabeled / pos_relabeled in every --format). Default: off (drop them).",
        rich_help_panel=DENOISE)] = MINE.relabel_false_negatives,
    max_false_negatives: Annotated[int | None, typer.Option(
        help="RLHN: drop a query whole when the false-negative rules remove more than K of its candidates (its "
             "candidate list is mostly relevant). Default: off.", rich_help_panel=DENOISE)] = None,
    min_score: Annotated[float | None, typer.Option(
        help="Drop candidates scoring < this: too easy to teach anything (same scale as --max-score). "
             "Default: off.", rich_help_panel=DENOISE)] = None,
    include_positives: Annotated[bool, typer.Option(
        help="Keep the positives in the ranking instead of excluding them (a reranking evaluation set, as "
             "sentence-transformers' include_positives); needs --format n-tuple, whose negative_i columns are "
             "then the ranked candidates, positives included.", rich_help_panel=DENOISE)] = MINE.include_positives,
    ce_batch_size: Annotated[int, typer.Option(
        help="Cross-encoder batch size.", rich_help_panel=DENOISE)] = MINE.ce_batch_size,
    ce_max_length: Annotated[int | None, typer.Option(help="Cross-encoder max tokens. Default: the model's.",
                                                      rich_help_panel=DENOISE)] = None,
    zone: Annotated[str | None, typer.Option(
        help="SimANS ambiguous zone LOW:HIGH: keep p-LOW <= s <= p+HIGH (p: the query's lowest positive; "
             "s: cross-encoder score if any, else retriever score). Default: off.", rich_help_panel=SELECT)] = None,
    sampling: Annotated[str, typer.Option(help="top | random | simans.", rich_help_panel=SELECT)] = MINE.sampling,
    simans_a: Annotated[float, typer.Option(
        help="SimANS a in exp(-a(s-p-b)^2).", rich_help_panel=SELECT)] = MINE.simans_a,
    simans_b: Annotated[float, typer.Option(help="SimANS b (paper's sign).", rich_help_panel=SELECT)] = MINE.simans_b,
    seed: Annotated[int, typer.Option(help="Seed for random/simans sampling.", rich_help_panel=SELECT)] = MINE.seed,
    triplet_type: Annotated[str | None, typer.Option(
        help="Metric-learning triplet region on D = p - s: hard (D <= 0) | semihard (0 < D <= M) | easy (D > M) | "
             "all (D <= M). The opposite region from --margin. Default: off.", rich_help_panel=STRATEGY)] = None,
    triplet_margin: Annotated[float, typer.Option(
        help="M for --triplet-type.", rich_help_panel=STRATEGY)] = MINE.triplet_margin,
    positives_per_query: Annotated[int | None, typer.Option(
        help="Emit rows for at most K positives per query (sampled with --seed); each positive otherwise repeats "
             "the query's negatives. Default: all positives.", rich_help_panel=STRATEGY)] = None,
    fill: Annotated[str, typer.Option(
        help="none | random: top up short queries with random documents, flagged in a 'filled' column.",
        rich_help_panel=STRATEGY)] = MINE.fill,
    tiers: Annotated[str, typer.Option(
        help="Curriculum 'tier' column (hard/medium/easy): by rank | gap (p - s) | none.",
        rich_help_panel=STRATEGY)] = MINE.tiers,
    tier_hard: Annotated[float | None, typer.Option(
        help="Upper bound of the hard tier. Default: by rank, the first third of the ranks selection draws "
             "from (the window for random/simans, its first N ranks for top: 12 by default); by gap, 0.1.",
        rich_help_panel=STRATEGY)] = None,
    tier_medium: Annotated[float | None, typer.Option(
        help="Upper bound of the medium tier. Default: by rank, two thirds into the ranks selection draws "
             "from (13 by default); by gap, 0.2.", rich_help_panel=STRATEGY)] = None,
    split_tiers: Annotated[bool, typer.Option(
        help="Also write OUTPUT.hard/.medium/.easy.parquet (triplet format).", rich_help_panel=STRATEGY)] = False,
    hide_fraction: Annotated[float | None, typer.Option(
        help="Evaluation: hide this fraction of the positives of queries with several, mine, and report how many "
             "hidden positives survive each stage (the pipeline's false-negative catch rate). Default: off.",
        rich_help_panel=STRATEGY)] = None,
    query_clusters: Annotated[int | None, typer.Option(
        help="k-means the query embeddings into K topics (FAISS) and add a 'cluster_id' column (TAS-Balanced "
             "batches). Default: off.", rich_help_panel=STRATEGY)] = None,
    engine: Annotated[str, typer.Option(
        help="local (this process) | ray: corpus/query encoding, dense search and cross-encoder scoring run as "
             "Ray Data stages (pip install 'hnmine\\[ray]'); the output is then a directory of Parquet parts.",
        rich_help_panel="Engine")] = "local",
    ray_address: Annotated[str | None, typer.Option(
        help="With --engine ray: the cluster to attach to (auto, ray://HOST:10001). Default: none (start a "
             "local Ray, or use the one this process already initialised).", rich_help_panel="Engine")] = None,
    ray_workers: Annotated[int | None, typer.Option(
        help="With --engine ray: encoder / cross-encoder actors. Default: one per GPU of the cluster, or one "
             "per CPU where it has none.", rich_help_panel="Engine")] = None,
    ray_shards: Annotated[int | None, typer.Option(
        help="With --engine ray: corpus shards, each encoded and searched (one exact FAISS index) as one unit. "
             "Default: the number of workers, or one per 50,000 passages if more.",
        rich_help_panel="Engine")] = None,
) -> None:
    """Mine hard negatives: retrieve, exclude positives, filter, select, write."""
    started = time.time()
    columns = ColumnNames(query_id=query_id_column, query=query_column, doc_id=doc_id_column, text=text_column,
                          title=title_column, qrels_query_id=query_id_column, qrels_doc_id=doc_id_column,
                          qrels_score=qrels_score_column, pairs_positive=positive_column,
                          pairs_anchor=("anchor", query_column))
    opts = _guarded(lambda: MineOptions(  # stage options are checked as the stages are built
        retriever=retriever, num_negatives=num_negatives, range_min=range_min, range_max=range_max, top_k=top_k,
        dense=DenseRetriever(
            model=model, query_prompt=query_prompt, corpus_prompt=corpus_prompt,
            query_prompt_name=query_prompt_name, corpus_prompt_name=corpus_prompt_name,
            max_seq_length=max_seq_length, batch_size=batch_size,
            device=device, dtype=dtype, cache_dir=str(cache_dir) if cache_dir else None, use_cache=cache,
            index=index, ivf_nlist=ivf_nlist, ivf_nprobe=ivf_nprobe, hnsw_m=hnsw_m, hnsw_ef_search=hnsw_ef_search,
            corpus_embeddings=str(corpus_embeddings) if corpus_embeddings else None,
            query_embeddings=str(query_embeddings) if query_embeddings else None,
            save_index=str(save_index) if save_index else None, load_index=str(load_index) if load_index else None),
        bm25_k1=bm25_k1, bm25_b=bm25_b, stopwords=stopwords, bm25_backend=bm25_backend, rrf_k=rrf_k,
        cross_encoder=cross_encoder, ce_batch_size=ce_batch_size, ce_max_length=ce_max_length,
        max_score=max_score, margin=margin, max_ratio=max_ratio, max_z=max_z, spread_margin=spread_margin,
        relabel_false_negatives=relabel_false_negatives, max_false_negatives=max_false_negatives,
        min_score=min_score, include_positives=include_positives, zone=None, sampling=sampling,
        simans_a=simans_a, simans_b=simans_b, seed=seed, chunk_size=chunk_size, triplet_type=triplet_type,
        triplet_margin=triplet_margin, positives_per_query=positives_per_query, fill=fill, tiers=tiers,
        tier_hard=tier_hard, tier_medium=tier_medium, query_clusters=query_clusters, hide_fraction=hide_fraction,
        sibling_percentile=sibling_percentile, sibling_pool=sibling_pool, lexical_top=lexical_top))

    def build(max_positives: int = 10) -> Pipeline:
        if config is not None:
            ignored = _flags_given(ctx, PIPELINE_PANELS, extra=("chunk_size",), exclude=NOT_PIPELINE_FLAGS)
            if ignored:
                raise InputError(f"--config {config} sets the whole pipeline, so {', '.join(ignored)} would be "
                                 "ignored; set them in the file (or drop --config)")
            return load_pipeline(config)
        opts.zone = parse_zone(zone) if zone else None
        return build_pipeline(opts, max_positives)

    if print_config:
        has_input = any(v is not None for v in (queries, qrels, pairs, beir))
        data = _guarded(lambda: _load(queries, corpus, qrels, pairs, beir, split, columns, strict)) \
            if has_input else None
        pipeline = _guarded(lambda: build(int(data.positive_counts.max()) if data else 10))
        typer.echo(pipeline_to_toml(pipeline))
        return

    def run() -> tuple[MiningReport, Path]:
        with contextlib.ExitStack() as held:  # the output's lock, held until the run has published or failed
            return run_holding(held)

    def run_holding(held: contextlib.ExitStack) -> tuple[MiningReport, Path]:
        if output is None:
            raise InputError("missing --output")
        ray_run = _ray_engine(engine, ray_address, ray_workers, ray_shards)
        out = check_output_path(output, overwrite, (manifest_path(output),)) if ray_run is None else \
            ray_run.check_output(output, overwrite, format)
        if split_tiers and format == "triplet":
            for target in tier_paths(out):
                check_output_path(target, overwrite)
        if include_positives and format != "n-tuple":
            raise InputError("--include-positives needs --format n-tuple: in any other layout a positive would "
                             "be labelled a negative")
        if prompt is not None and format != "flagembedding":
            raise InputError("--prompt is FlagEmbedding's per-record field; it needs --format flagembedding")
        held.enter_context(OutputLock(out))  # a second run on this --output stops here, in one line
        build()  # options are checked before any data is read
        data = _read(lambda: _load(queries, corpus, qrels, pairs, beir, split, columns, strict))
        pipeline = build(int(data.positive_counts.max()))
        if hide_fraction is not None:
            data, hidden = hide_positives(data, hide_fraction, seed)
            pipeline.stages = with_probes(pipeline.stages, hidden)
            err.print(f"hid {len(hidden):,} positives of queries with several (--hide-fraction {hide_fraction})")
        n = pipeline.target_negatives
        if n is not None and data.num_docs - 1 < n:
            raise InputError(f"the corpus has {data.num_docs} documents: too few to mine {n} negatives per query")
        if ray_run is not None:
            ray_run.prepare_mine(pipeline, data)  # encode, search, cross-encode on Ray; stages get the results
        inputs = {k: input_entry(v) for k, v in data.source.items()}  # hashed now, as read, for the manifest
        checkpoint = ChunkCheckpoint(out, run_fingerprint(data, pipeline, {
            "version": __version__, "inputs": inputs, "format": format, "audit": audit_columns, "prompt": prompt,
        }), enabled=resume and hide_fraction is None)
        pipeline.start(data)
        chunks = pipeline.chunks(data)
        if not all(checkpoint.finished(i) for i in range(len(chunks))):
            pipeline.prepare(data)  # encoding and indexes are phases of their own, before mining starts
        publishing = held.enter_context(contextlib.ExitStack())
        with atomic_path(out) if ray_run is None else ray_run.output_dir(out) as tmp:
            writer = MinedWriter(tmp, format, n, audit_columns, prompt) if ray_run is None else ray_run.writer(
                tmp, format, n, audit_columns)
            with writer:
                with progress.phase("mine", total=data.num_queries, unit="queries") as step:
                    for i, chunk in enumerate(chunks):
                        done = checkpoint.load(i)
                        if done is not None:
                            payload, dropped, counts = done
                            pipeline.report.add_chunk(counts)
                        else:
                            batch, counts = pipeline.run_chunk(data, chunk)
                            payload, dropped = writer.format(batch)
                            checkpoint.save(i, payload, dropped, counts)
                        writer.write_formatted(payload, dropped)
                        step.advance(len(chunk))
                writing = progress.begin("write", unit="rows")
            # From the rename to the manifest, a signal waits: the output is never left without its manifest.
            publishing.enter_context(deferred_signals(f"{out} and its manifest were written and are complete"))
        checkpoint.clear()
        pipeline.collect_notes()
        if split_tiers:
            if format != "triplet":
                err.print("[yellow]warning:[/] --split-tiers needs --format triplet; no tier files written")
            else:
                written = write_tier_files(out, overwrite=overwrite)
                if not quiet:
                    err.print(f"wrote {', '.join(p.name for p in written)}")
        if checkpoint.resumed_chunks and not quiet:
            err.print(f"resumed: {checkpoint.resumed_chunks} finished chunks were read back from the checkpoint")
        report = pipeline.report
        report.rows_written, report.rows_dropped_by_format = writer.rows_written, writer.rows_dropped
        options = {k: v for k, v in vars(opts).items() if k != "dense"}
        options["dense"] = stage_options(opts.dense)
        options.update(format=format, audit_columns=audit_columns, config=str(config) if config else None,
                       prompt=prompt)
        manifest = build_manifest("mine", pipeline, report, options, inputs, out, started)
        if format == "flagembedding":
            manifest["flagembedding"] = flagembedding_manifest(pipeline, report.rows_dropped_by_format)
        if format == "tevatron":
            manifest["tevatron"] = {"queries_without_negatives_not_written": report.rows_dropped_by_format}
        manifest["cross_encoder_pairs_scored"] = sum(
            s.pairs_scored for s in pipeline.stages if isinstance(s, CrossEncoderDenoiser))
        if ray_run is not None:
            manifest["engine"] = ray_run.describe()
            ray_run.close()
        write_json_atomic(manifest_path(out), manifest)
        publishing.close()
        writing.advance(report.rows_written)
        writing.finish()
        return report, out

    def run_shown() -> tuple[MiningReport, Path]:
        with progress.use(_display(quiet)):
            return run()

    report, out = _guarded(run_shown)
    if not quiet:  # after the display has closed, so the summary follows its last line
        print_summary(report, err)
        err.print(f"wrote {out} ({report.rows_written:,} rows) and {manifest_path(out)}", highlight=False,
                  soft_wrap=True)


@app.command()
def denoise(
    input: Annotated[Path, typer.Argument(
        help="Triplets in any input format: query|anchor / positive / negative columns (hnmine, "
             "sentence-transformers), negative_1..n n-tuples or FlagEmbedding query/pos/neg records (both "
             "written back as one row per negative).")],
    output: Annotated[Path, typer.Option(help="Where to write the kept rows (Parquet).")],
    cross_encoder: Annotated[str | None, typer.Option(
        help="CrossEncoder name or local path; the same as --scorer cross-encoder:NAME.")] = None,
    scorer: Annotated[str | None, typer.Option(
        help="The teacher: cross-encoder:NAME (scores in *_ce_score) or bi-encoder:NAME, any "
             "SentenceTransformer (cosine similarity in *_teacher_cosine; cheaper, weaker). "
             "Give this or --cross-encoder.")] = None,
    max_score: Annotated[float | None, typer.Option(
        help="Drop rows whose negative's teacher score >= T (the teacher's scale). Default: off.")]
    = None,
    margin: Annotated[float | None, typer.Option(
        help="Drop rows whose negative scores >= the query's lowest positive score - M. Default: off.")] = None,
    max_ratio: Annotated[float | None, typer.Option(
        help="Drop rows whose negative scores > R x the query's lowest positive score. Default: off.")] = None,
    max_z: Annotated[float | None, typer.Option(
        help="Per query: drop rows whose negative scores >= Z standard deviations above the mean of the query's "
             "distinct negatives (scale-free). Default: off.")] = None,
    spread_margin: Annotated[float | None, typer.Option(
        help="Per query: drop rows whose negative scores >= the query's lowest positive score - K x the standard "
             "deviation of the query's negative scores. Default: off.")] = None,
    min_score: Annotated[float | None, typer.Option(
        help="Drop rows whose negative's teacher score < T: too easy (the teacher's scale). Default: off.")]
    = None,
    query_column: Annotated[str, typer.Option(help="Query text column.")] = TRIPLET_COLUMNS.query,
    positive_column: Annotated[str, typer.Option(help="Positive text column.")] = TRIPLET_COLUMNS.positive,
    negative_column: Annotated[str, typer.Option(help="Negative text column.")] = TRIPLET_COLUMNS.negative,
    batch_size: Annotated[int, typer.Option(help="Teacher batch size.")] = TEACHER.batch_size,
    max_length: Annotated[int | None, typer.Option(help="Cross-encoder max tokens. Default: the model's.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, ... Default: best available.")] = None,
    dtype: Annotated[str, typer.Option(help="Bi-encoder teacher precision: auto|float32|bfloat16|float16 (see "
                                            "`mine --help`). Default: auto.")] = ENCODER.dtype,
    chunk_size: Annotated[int, typer.Option(help="Queries scored per chunk.")] = MINE.chunk_size,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars or summary.")] = False,
    engine: Annotated[str, typer.Option(
        help="local (this process) | ray: cross-encoder scoring runs as a Ray Data "
             "stage (pip install 'hnmine\\[ray]'); the output is then a directory of Parquet parts.")] = "local",
    ray_address: Annotated[str | None, typer.Option(
        help="With --engine ray: the cluster to attach to (auto, ray://HOST:10001). Default: none (start a "
             "local Ray, or use the one this process already initialised).")] = None,
    ray_workers: Annotated[int | None, typer.Option(
        help="With --engine ray: encoder / cross-encoder actors. Default: one per GPU of the cluster, or one "
             "per CPU where it has none.")] = None,
) -> None:
    """Clean an existing triplet file with a teacher model: drop rows whose negative is a likely positive.

    The teacher is a cross-encoder (best) or any SentenceTransformer (--scorer bi-encoder:NAME). Rows whose
    negative equals the query or one of the query's positives (by normalised text) are always dropped.
    Each distinct (query, passage) pair is scored once.
    """
    started = time.time()

    def run() -> tuple[MiningReport, str]:
        ray_run = _ray_engine(engine, ray_address, ray_workers, None)
        out = check_output_path(output, overwrite, (manifest_path(output),)) if ray_run is None else \
            ray_run.check_output(output, overwrite, "triplet")
        if (cross_encoder is None) == (scorer is None):
            raise InputError("give exactly one of --cross-encoder NAME and --scorer KIND:NAME")
        teacher = scorer if scorer is not None else f"cross-encoder:{cross_encoder}"
        denoiser = build_denoiser(teacher, max_score, margin, max_ratio, batch_size=batch_size, device=device,
                                  max_length=max_length, dtype=dtype, max_z=max_z, spread_margin=spread_margin,
                                  min_score=min_score)
        pipeline = Pipeline([PositiveExcluder(), denoiser], chunk_size=chunk_size)
        with progress.phase("read") as step:
            triplets = read_triplets(input, TripletColumns(query_column, positive_column, negative_column))
            step.set_note(f"{triplets.table.num_rows:,} rows, {triplets.data.num_queries:,} queries")
        data = triplets.data
        if ray_run is not None:
            ray_run.prepare_denoise(pipeline, triplets, chunk_size)  # every pair scored on Ray, in one pass
        report: MiningReport = pipeline.report
        pipeline.prepare(data)  # a bi-encoder teacher encodes here, as phases of its own
        with progress.phase("denoise", total=data.num_queries, unit="queries") as step:
            table, kept_pairs = denoise_triplets(triplets, pipeline, chunk_size, on_chunk=step.advance,
                                                 score_column=denoiser.score_column)
        writing = progress.begin("write", unit="rows")
        with atomic_path(out) if ray_run is None else ray_run.output_dir(out) as tmp:
            import pyarrow.parquet as pq

            if ray_run is None:
                pq.write_table(table, tmp)
            else:
                with ray_run.writer(tmp, "triplet", None, True) as parts:
                    parts.write_formatted(table)
        report.rows_written = table.num_rows
        report.negatives_emitted = kept_pairs
        options: dict[str, Any] = {"scorer": teacher, "score_column": denoiser.score_column,
                                   "max_score": max_score, "min_score": min_score, "margin": margin,
                                   "max_ratio": max_ratio, "max_z": max_z, "spread_margin": spread_margin,
                                   "batch_size": batch_size, "max_length": max_length}
        manifest = build_manifest("denoise", pipeline, report, options, {"triplets": str(input)}, out, started)
        manifest["rows_in"] = triplets.table.num_rows
        pairs_scored = denoiser.pairs_scored
        if pairs_scored is not None:
            manifest["cross_encoder_pairs_scored"] = pairs_scored
        if ray_run is not None:
            manifest["engine"] = ray_run.describe()
            ray_run.close()
        write_json_atomic(manifest_path(out), manifest)
        writing.advance(table.num_rows)
        writing.finish()
        scored = f"{pairs_scored:,} cross-encoder pair evaluations; " if pairs_scored is not None else ""
        return report, (f"kept {table.num_rows:,} of {triplets.table.num_rows:,} rows; {scored}wrote {out} and "
                        f"{manifest_path(out)}")

    def run_shown() -> tuple[MiningReport, str]:
        with progress.use(_display(quiet)):
            return run()

    report, done = _guarded(run_shown)
    if not quiet:  # after the display has closed, so the summary follows its last line
        print_summary(report, err, title="hnmine denoise")
        err.print(done, highlight=False, soft_wrap=True)


def tier_paths(path: Path) -> list[Path]:
    """OUTPUT.hard/.medium/.easy(.untiered) beside the output: checked up front, written after."""
    from hnmine.stages.tiers import TIERS, UNTIERED

    return [path.with_name(f"{path.stem}.{tier}{path.suffix}") for tier in (*TIERS, UNTIERED)]


def write_tier_files(path: Path, overwrite: bool, column: str = "tier") -> list[Path]:
    import pyarrow.parquet as pq

    from hnmine.stages.tiers import split_by_tier

    table = pq.read_table(path)
    written = []
    for tier, part in split_by_tier(table, column=column).items():
        target = check_output_path(path.with_name(f"{path.stem}.{tier}{path.suffix}"), overwrite)
        with atomic_path(target) as tmp:
            pq.write_table(part, tmp)
        written.append(target)
    return written


@app.command()
def split(
    input: Annotated[Path, typer.Argument(help="Mined triplet Parquet with a 'tier' column.")],
    overwrite: Annotated[bool, typer.Option(help="Replace existing tier files.")] = False,
) -> None:
    """Write one file per curriculum tier (INPUT.hard/.medium/.easy.parquet) for easy -> hard training."""

    def run() -> None:
        from hnmine.io.inputs import read_parquet

        read_parquet(input, "mined")
        for path in write_tier_files(input, overwrite):
            err.print(f"wrote {path}")

    _guarded(run)


@app.command()
def diff(
    old: Annotated[Path, typer.Argument(help="Earlier mined triplet Parquet (needs query_id, negative_id).")],
    new: Annotated[Path, typer.Argument(help="Newer mined triplet Parquet, e.g. from a newer checkpoint.")],
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the figures as JSON here.")] = None,
) -> None:
    """How many negatives changed between two mining rounds, and how their scores moved (ANCE-style refresh)."""

    def run() -> None:

        from hnmine.evaluation.diff import diff_mined
        from hnmine.io.inputs import read_parquet

        result = diff_mined(read_parquet(old, "old mined"), read_parquet(new, "new mined"))
        from rich.table import Table

        table = Table(title=f"hnmine diff {old.name} -> {new.name}")
        table.add_column("")
        table.add_column("value", justify="right")
        for key, value in result.items():
            table.add_row(key.replace("_", " "), "-" if value is None else
                          (f"{value:.4f}" if isinstance(value, float) else f"{value:,}"))
        Console().print(table)
        if json_out is not None:
            write_json_atomic(json_out, result)

    _guarded(run)


@app.command()
def convert(
    beir: Annotated[Path, typer.Argument(help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv.")],
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Folder for queries/corpus/qrels .parquet.")],
    split: Annotated[str, typer.Option(help="Qrels split to convert.")] = "train",
    overwrite: Annotated[bool, typer.Option(help="Replace existing files.")] = False,
) -> None:
    """Convert a BEIR folder to hnmine's Parquet inputs (queries of the split only)."""

    def run() -> None:
        import pyarrow.parquet as pq

        tables = read_beir(beir, split)
        if not out_dir.exists():
            os.makedirs(out_dir)
        names = ("queries.parquet", "corpus.parquet", "qrels.parquet")
        targets = [check_output_path(out_dir / n, overwrite) for n in names]
        for table, target in zip(tables, targets):
            with atomic_path(target) as tmp:
                pq.write_table(table, tmp)
        err.print(f"wrote {', '.join(str(t) for t in targets)} "
                  f"({tables[0].num_rows:,} queries, {tables[1].num_rows:,} docs, {tables[2].num_rows:,} qrels)")

    _guarded(run)


@app.command("eval")
def eval_mined(
    mined: Annotated[Path, typer.Argument(help="Mined triplet file (needs query_id, negative_id).")],
    qrels: Annotated[Path | None, typer.Option(
        "--qrels", help="Labels file (query_id, doc_id, optional score > 0 = relevant; BEIR's query-id/corpus-id "
                        "also read), typically fuller or held-out judgements. Give this or --beir. Default: none.")]
    = None,
    beir: Annotated[Path | None, typer.Option(
        "--beir", help="Labels from a BEIR folder's qrels of --split instead of --qrels. Default: none.")] = None,
    split: Annotated[str, typer.Option(help="BEIR qrels split with --beir.")] = "train",
    before: Annotated[Path | None, typer.Option(
        "--before", help="The same run without the filter being judged (e.g. without --cross-encoder or "
                         "--sibling-percentile), both mined with --num-negatives at least the rank window's width "
                         "so every candidate is written: adds the filter's catch rate (share of labelled-relevant "
                         "candidates it removed) and false-alarm rate (share of the others it removed). "
                         "Default: none.")] = None,
    report_dir: Annotated[Path | None, typer.Option(
        "--report", help="Write report.md, metrics.json and PNG plots into this folder (created if missing). "
                         "Default: print a summary only.")] = None,
    num_negatives: Annotated[int | None, typer.Option(
        help="Count queries with fewer negatives than this. Default: the most any query has.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write metrics.json here.")] = None,
) -> None:
    """Audit a mined file: false-negative rate against LABELS, hardness (scores, gaps), coverage, duplicates."""

    def run() -> None:
        from rich.table import Table

        from hnmine.evaluation.metrics import evaluate, write_report
        from hnmine.io.inputs import read_beir_qrels
        from hnmine.io.readers import read_table

        json_path = check_output_path(json_out, overwrite=True) if json_out is not None else None
        if (qrels is None) == (beir is None):
            raise InputError("give exactly one of --qrels LABELS and --beir DIR")
        if beir is not None:
            labels, labels_path = read_beir_qrels(beir, split)
        else:
            assert qrels is not None
            labels, labels_path = read_table(qrels, "labels"), qrels
        result = evaluate(read_table(mined, "mined"), labels, num_negatives,
                          mined_path=mined, labels_path=labels_path,
                          before=read_table(before, "before") if before is not None else None, before_path=before)
        m = result.metrics
        fn, cov, dup = m["false_negatives"], m["coverage"], m["duplicates"]

        def pct(rate: float | None) -> str:
            return "-" if rate is None else f"{100 * rate:.2f}%"

        def num(value: Any) -> str:
            return "-" if value is None else (f"{value:.4f}" if isinstance(value, float) else f"{value:,}")

        table = Table(title=f"hnmine eval {mined.name} vs {Path(labels_path).name}")
        table.add_column("")
        table.add_column("value", justify="right")
        table.add_row("queries", num(cov["queries"]))
        table.add_row("distinct (query, negative) pairs", num(fn["negatives"]))
        table.add_row("false negatives (relevant in labels)", f"{fn['false_negatives']:,} ({pct(fn['rate'])})")
        for key, label in (("by_retriever", "retriever"), ("by_tier", "tier")):
            for name, g in fn.get(key, {}).items():
                table.add_row(f"  {label} {name}", f"{g['false_negatives']:,} / {g['negatives']:,} ({pct(g['rate'])})")
        if fn["queries_without_labels"]:
            table.add_row("queries with no label (undetectable)", num(fn["queries_without_labels"]))
        for scale, entry in m["hardness"].items():
            if scale != "rank":
                table.add_row(f"median {scale.replace('_', '-')} score / gap",
                              f"{num(entry['negative_score']['median'])} / {num(entry['gap']['median'])}")
        syn = m.get("synthetic")
        if syn is not None:
            table.add_row("synthetic / mined negatives", f"{syn['negatives']['synthetic']:,} / "
                                                          f"{syn['negatives']['mined']:,}")
            for check, count in (syn["checks"] or {}).items():
                table.add_row(f"  synthetic {check.replace('_', ' ')}", num(count))
            for scale, groups in syn["by_scale"].items():
                table.add_row(f"  median {scale.replace('_', '-')} score mined / synthetic",
                              f"{num(groups['mined']['negative_score']['median'])} / "
                              f"{num(groups['synthetic']['negative_score']['median'])}")
        table.add_row(f"queries with < {cov['target_negatives']} negatives", num(cov["short_queries"]))
        if "filter" in m:
            f = m["filter"]
            table.add_row("filter catch rate (relevant candidates removed)",
                          f"{f['caught']:,} / {f['relevant_before']:,} ({pct(f['catch_rate'])})")
            table.add_row("filter false-alarm rate (other candidates removed)",
                          f"{f['false_alarms']:,} / {f['candidates_before'] - f['relevant_before']:,} "
                          f"({pct(f['false_alarm_rate'])})")
            if f["after_not_in_before"]:
                err.print(f"[yellow]warning:[/] {f['after_not_in_before']:,} pairs of {mined} are not in {before}: "
                          "the two runs did not share candidates", highlight=False)
        table.add_row("repeated (query, positive, negative) rows", num(dup["repeated_rows"]))
        table.add_row("negative text = a positive's", num(dup["negative_equals_positive"]))
        table.add_row("negative text = the query", num(dup["negative_equals_query"]))
        Console().print(table)
        if fn["worst_queries"]:
            worst = ", ".join(f"{w['query_id']} ({w['false_negatives']})" for w in fn["worst_queries"][:5])
            err.print(f"[yellow]most false negatives[/]: {worst}", highlight=False)
        if report_dir is not None:
            written, note = write_report(result, report_dir)
            if note:
                err.print(f"[yellow]warning:[/] {escape(note)}", highlight=False)
            err.print(f"wrote {', '.join(str(p) for p in written)}", highlight=False)
        if json_path is not None:
            write_json_atomic(json_path, m)
            err.print(f"wrote {json_path}", highlight=False)

    _guarded(run)


@app.command("train-denoiser")
def train_denoiser_command(
    output: Annotated[Path, typer.Option(help="Folder to save the cross-encoder in (must not exist).")],
    queries: Annotated[Path | None, typer.Option(help="Training queries Parquet. Default: none.")] = None,
    corpus: Annotated[Path | None, typer.Option(help="Corpus Parquet. Default: none.")] = None,
    qrels: Annotated[Path | None, typer.Option(help="Training positives Parquet. Default: none.")] = None,
    pairs: Annotated[Path | None, typer.Option(help="Or a pairs file (anchor, positive). Default: none.")] = None,
    beir: Annotated[Path | None, typer.Option(help="Or a BEIR folder. Default: none.")] = None,
    split: Annotated[str, typer.Option(help="BEIR split: use the training split only.")] = "train",
    base_model: Annotated[str, typer.Option(help="Checkpoint to start from (bundled by default).")]
    = TRAINING.base_model,
    negatives_per_positive: Annotated[int, typer.Option(
        help="BM25 negatives per query.")] = TRAINING.negatives_per_positive,
    range_min: Annotated[int, typer.Option(help="Skip the top N BM25 candidates as negatives.")] = TRAINING.range_min,
    range_max: Annotated[int, typer.Option(help="Draw negatives up to this BM25 rank.")] = TRAINING.range_max,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = TRAINING.epochs,
    batch_size: Annotated[int, typer.Option(help="Training batch size.")] = TRAINING.batch_size,
    learning_rate: Annotated[float, typer.Option(help="Learning rate.")] = TRAINING.learning_rate,
    max_length: Annotated[int, typer.Option(help="Max tokens per (query, passage) pair.")] = TRAINING.max_length,
    max_queries: Annotated[int | None, typer.Option(help="Train on a seeded sample of queries. Default: all.")]
    = None,
    seed: Annotated[int, typer.Option(help="Seed for negatives, shuffling and initialisation.")] = TRAINING.seed,
    max_positives_per_query: Annotated[int | None, typer.Option(
        help="Train on a seeded sample of at most N positives per query (dense labels). Default: all.")] = None,
    negatives_from: Annotated[str, typer.Option(
        help="Retriever the negatives come from: bm25, or dense (the bundled bi-encoder's neighbours).")]
    = TRAINING.negatives_from,
) -> None:
    """Fine-tune a cross-encoder for denoising on your training split (positives vs BM25 negatives, RocketQA)."""

    def run() -> None:
        import shutil

        from hnmine.jobs.train_denoiser import train_denoiser

        if output.exists():
            raise InputError(f"output {output}: already exists")
        if not output.parent.exists():
            raise InputError(f"output {output}: directory {output.parent} does not exist")
        cfg = DenoiserTraining(base_model=base_model, negatives_per_positive=negatives_per_positive,
                               range_min=range_min, range_max=range_max, epochs=epochs, batch_size=batch_size,
                               learning_rate=learning_rate, max_length=max_length, seed=seed, max_queries=max_queries,
                               max_positives_per_query=max_positives_per_query, negatives_from=negatives_from)
        RankWindow(range_min, range_max)  # validates the window before any work
        data = _load(queries, corpus, qrels, pairs, beir, split, ColumnNames(), strict=False)
        with atomic_dir(output) as tmp:
            info = train_denoiser(data, tmp, cfg)
            shutil.rmtree(tmp / "checkpoints", ignore_errors=True)
        err.print(f"trained on {info['pairs']:,} pairs ({info['positives']:,} positive) from "
                  f"{info['queries']:,} queries; saved {output} (use: --cross-encoder {output})")

    _guarded(run)


from hnmine.commands.synth import synth as _synth  # noqa: E402  (the command module imports this one lazily)

app.command("synth")(_synth)


def main() -> None:  # pragma: no cover - console entry point
    app(prog_name="hnmine")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
