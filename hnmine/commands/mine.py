"""``hnmine mine``: flags -> a :class:`~hnmine.jobs.mine.MineJob` -> :func:`hnmine.jobs.mine.mine` -> summary."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from hnmine.commands import common
from hnmine.commands.common import (
    DENOISE,
    DENSE,
    ENGINE,
    OUTPUT,
    RETRIEVAL,
    SELECT,
    STRATEGY,
    CliMessages,
    Format,
    InputFlags,
    Overwrite,
    Quiet,
    RayAddress,
    RayWorkers,
    flags_given,
    guarded,
    shown,
    takes,
)
from hnmine.config import pipeline_to_toml
from hnmine.engines.base import engine_for
from hnmine.io.manifest import manifest_path, print_summary
from hnmine.jobs.mine import MineJob, MineResult
from hnmine.jobs.mine import mine as run_mine
from hnmine.recipe import MineOptions
from hnmine.stages.dense import DenseRetriever

# Flags the pipeline is built from; --config replaces them all (hide-fraction and split-tiers act around it).
PIPELINE_PANELS = (RETRIEVAL, DENSE, DENOISE, SELECT, STRATEGY)
NOT_PIPELINE_FLAGS = ("hide_fraction", "split_tiers")

# Each option's default is the dataclass field it sets, defined there once (tests/test_registry.py checks them).
MINE = MineOptions()
ENCODER = MINE.dense


@dataclass
class MineFlags(InputFlags):
    output: Annotated[Path | None, typer.Option(
        help="Output file (Parquet; jsonl for flagembedding and tevatron). Required.",
        rich_help_panel=OUTPUT)] = None
    format: Format = "triplet"
    prompt: Annotated[str | None, typer.Option(
        help="--format flagembedding: a 'prompt' field on every record, the query instruction FlagEmbedding's "
             "trainer prepends (when query_instruction_for_retrieval is set). Default: none.",
        rich_help_panel=OUTPUT)] = None
    audit_columns: Annotated[bool, typer.Option(
        help="Add ids, ranks and scores after the text columns. --no-audit-columns writes only what a trainer "
             "reads.", rich_help_panel=OUTPUT)] = True
    overwrite: Overwrite = False
    config: Annotated[Path | None, typer.Option(
        help="Pipeline TOML listing the stages in order; replaces the retrieval/filter/selection flags. "
             "Default: none (the flags build the pipeline).",
        rich_help_panel=OUTPUT)] = None
    print_config: Annotated[bool, typer.Option(help="Print the effective pipeline as TOML and exit.",
                                               rich_help_panel=OUTPUT)] = False
    chunk_size: Annotated[int, typer.Option(help="Queries per chunk; bounds memory.",
                                            rich_help_panel=OUTPUT)] = MINE.chunk_size
    quiet: Quiet = False
    resume: Annotated[bool, typer.Option(
        help="Keep finished chunks in .OUTPUT.partial/ so an interrupted run continues where it stopped (same "
             "inputs and options); --no-resume starts over.", rich_help_panel=OUTPUT)] = True
    retriever: Annotated[str, typer.Option(help="Candidate source: bm25 | dense | hybrid (RRF of both).",
                                           rich_help_panel=RETRIEVAL)] = MINE.retriever
    num_negatives: Annotated[int, typer.Option(
        help="Negatives per query.", rich_help_panel=RETRIEVAL)] = MINE.num_negatives
    range_min: Annotated[int, typer.Option(
        help="Skip the top N non-positive candidates (false-negative guard). What the default window 11-50 buys, "
             "on NFCorpus dev with one known positive per query (5 negatives, dense MiniLM): 13.1 % false "
             "negatives at mean rank 13, where sentence-transformers' defaults emit 30.7 % (mean rank 2) and "
             "ranks 1-50 27.8 % (mean rank 3); 31-100: 7.0 % (mean rank 33). --sibling-percentile 60 "
             "--lexical-top 100 over ranks 1-100 halves it (6.4 %) at the same mean rank.",
        rich_help_panel=RETRIEVAL)] = MINE.range_min
    range_max: Annotated[int, typer.Option(help="Consider candidates up to this rank (non-positives).",
                                           rich_help_panel=RETRIEVAL)] = MINE.range_max
    top_k: Annotated[int | None, typer.Option(
        help="Candidates retrieved per query. Default: range-max + the most positives any query has + 1.",
        rich_help_panel=RETRIEVAL)] = None
    bm25_k1: Annotated[float, typer.Option(help="BM25 k1.", rich_help_panel=RETRIEVAL)] = MINE.bm25_k1
    bm25_b: Annotated[float, typer.Option(help="BM25 b.", rich_help_panel=RETRIEVAL)] = MINE.bm25_b
    stopwords: Annotated[bool, typer.Option(help="Remove English stopwords before BM25.",
                                            rich_help_panel=RETRIEVAL)] = MINE.stopwords
    bm25_backend: Annotated[str, typer.Option(
        help="sparse (fast, same scores) | rank-bm25 (the reference).", rich_help_panel=RETRIEVAL)] = MINE.bm25_backend
    rrf_k: Annotated[float, typer.Option(help="Hybrid: RRF constant k in 1/(k+rank).",
                                         rich_help_panel=RETRIEVAL)] = MINE.rrf_k
    model: Annotated[str, typer.Option(
        help="SentenceTransformer name or local path. The default is bundled (no download).",
        rich_help_panel=DENSE)] = ENCODER.model
    query_prompt: Annotated[str, typer.Option(help="Prefix for queries, e.g. 'query: ' (e5/bge).",
                                              rich_help_panel=DENSE)] = ENCODER.query_prompt
    corpus_prompt: Annotated[str, typer.Option(help="Prefix for passages, e.g. 'passage: '.",
                                               rich_help_panel=DENSE)] = ENCODER.corpus_prompt
    query_prompt_name: Annotated[str | None, typer.Option(
        help="A prompt of the model's own (its 'prompts' config, e.g. 'query') for queries, instead of "
             "--query-prompt. Default: none.", rich_help_panel=DENSE)] = None
    corpus_prompt_name: Annotated[str | None, typer.Option(
        help="A prompt of the model's own for passages (e.g. 'document'). Default: none.",
        rich_help_panel=DENSE)] = None
    max_seq_length: Annotated[int | None, typer.Option(
        help="Tokens per text the encoder reads (longer texts are truncated; the summary counts them). "
             "Default: the model's own max_seq_length.", rich_help_panel=DENSE)] = None
    batch_size: Annotated[int, typer.Option(help="Encoding batch size.", rich_help_panel=DENSE)] = ENCODER.batch_size
    device: Annotated[str | None, typer.Option(
        help="cpu, cuda, cuda:1, mps; a comma-separated list (cuda:0,cuda:1 or cpu,cpu) encodes with one "
             "process per entry (sentence-transformers' multi-process pool). Default: best available.",
                                               rich_help_panel=DENSE)] = None
    dtype: Annotated[str, typer.Option(
        help="Encoder precision: auto | float32 | bfloat16 | float16. Reduced precision applies to the linear "
             "layers only (LayerNorm, residuals, pooling and, on CPU, attention stay float32). auto = bfloat16 "
             "on GPUs and on CPUs with native bf16 (avx512_bf16/amx), float32 elsewhere. Default: auto.",
        rich_help_panel=DENSE)] = ENCODER.dtype
    cache_dir: Annotated[Path | None, typer.Option(
        help="Embedding cache. Default: $HNMINE_CACHE or ~/.cache/hnmine.", rich_help_panel=DENSE)] = None
    cache: Annotated[bool, typer.Option(
        help="Reuse and store embeddings on disk.", rich_help_panel=DENSE)] = ENCODER.use_cache
    corpus_embeddings: Annotated[Path | None, typer.Option(
        help="Precomputed corpus embeddings instead of encoding: .npy in corpus row order, or Parquet with "
             "doc_id + embedding (list) columns. Default: none (encode).", rich_help_panel=DENSE)] = None
    query_embeddings: Annotated[Path | None, typer.Option(
        help="Precomputed query embeddings: .npy in query row order, or Parquet with query_id + embedding. "
             "Default: none (encode).", rich_help_panel=DENSE)] = None
    index: Annotated[str, typer.Option(
        help="FAISS index: flat (exact) | ivf | hnsw (approximate, for millions of passages).",
        rich_help_panel=DENSE)] = ENCODER.index
    ivf_nlist: Annotated[int | None, typer.Option(help="IVF lists. Default: about 4 x sqrt(corpus size).",
                                                  rich_help_panel=DENSE)] = None
    ivf_nprobe: Annotated[int, typer.Option(
        help="IVF lists probed per query.", rich_help_panel=DENSE)] = ENCODER.ivf_nprobe
    hnsw_m: Annotated[int, typer.Option(help="HNSW neighbours per node.", rich_help_panel=DENSE)] = ENCODER.hnsw_m
    hnsw_ef_search: Annotated[int, typer.Option(
        help="HNSW search depth.", rich_help_panel=DENSE)] = ENCODER.hnsw_ef_search
    save_index: Annotated[Path | None, typer.Option(help="Write the FAISS index here. Default: none.",
                                                    rich_help_panel=DENSE)] = None
    load_index: Annotated[Path | None, typer.Option(
        help="Read a FAISS index saved by --save-index instead of building one. Default: none.",
        rich_help_panel=DENSE)] = None
    cross_encoder: Annotated[str | None, typer.Option(
        help="CrossEncoder name or path. When given, --max-score/--margin/--max-ratio apply to its scores. "
             "Default: none (no cross-encoder).",
        rich_help_panel=DENOISE)] = None
    max_score: Annotated[float | None, typer.Option(
        help="Drop candidates scoring >= this. Scale: cross-encoder score if --cross-encoder, else the "
             "retriever's (cosine for dense/hybrid, BM25 for bm25). Default: off.", rich_help_panel=DENOISE)] = None
    margin: Annotated[float | None, typer.Option(
        help="Drop candidates scoring >= the query's lowest positive score - M (same scale as --max-score). "
             "Default: off.",
        rich_help_panel=DENOISE)] = None
    max_ratio: Annotated[float | None, typer.Option(
        help="Drop candidates scoring > R x the query's lowest positive score (NV-Retriever: 0.95; same scale "
             "as --max-score). Default: off.",
        rich_help_panel=DENOISE)] = None
    max_z: Annotated[float | None, typer.Option(
        help="Per query: drop candidates whose score is >= Z standard deviations above the mean of the query's "
             "own candidates (scale-free: same meaning for any teacher or retriever). On NFCorpus dev at 10 % "
             "false alarms it catches more hidden positives than the positive-relative rules: on the mining "
             "model's cosine 31 % (--margin 15 %, --max-ratio 7 %), on BM25 36 % (--margin 32 %). Default: off.",
        rich_help_panel=DENOISE)] = None
    spread_margin: Annotated[float | None, typer.Option(
        help="Per query: drop candidates scoring >= the query's lowest positive score - K x the standard deviation "
             "of the query's candidate scores (a margin in the query's own units). Default: off.",
        rich_help_panel=DENOISE)] = None
    sibling_percentile: Annotated[float | None, typer.Option(
        help="No-teacher denoising: drop candidates whose cosine to the query's known positive (document to "
             "document, mining model) is at or above this percentile of the query's top --sibling-pool "
             "candidates. 60 with --lexical-top 100 and --range-min 0 --range-max 100: 6 % false negatives at "
             "mean rank 13 on NFCorpus dev, vs 13 % for ranks 11-50. Default: off.",
        rich_help_panel=DENOISE)] = None
    sibling_pool: Annotated[int, typer.Option(
        help="Candidates (by rank) the --sibling-percentile threshold is computed over.",
        rich_help_panel=DENOISE)] = MINE.sibling_pool
    lexical_top: Annotated[int | None, typer.Option(
        help="Retriever agreement: drop candidates that BM25 also ranks in its top N for the query (they are "
             "relevant 3-4x as often as dense-only ones on NFCorpus dev). Default: off.",
        rich_help_panel=DENOISE)] = None
    label_graph_queries: Annotated[Path | None, typer.Option(
        help="Label-graph teacher: the queries file of a labelled set over the same corpus (any format --queries "
             "reads), e.g. the train split of a densely labelled data set. With --label-graph-qrels, a teacher "
             "is fitted on that set (seeded gradient-boosted trees over which documents its queries mark "
             "relevant together; a labelled query with a mined query's id is left out) and drops the candidates "
             "it judges likely relevant. No model download: on NFCorpus (2,590 labelled train queries) the run "
             "takes about 20 s on 2 CPU cores instead of 5. Default: off.",
        rich_help_panel=DENOISE)] = None
    label_graph_qrels: Annotated[Path | None, typer.Option(
        help="Label-graph teacher: the labelled set's qrels (query_id, doc_id, optional score; score > 0 is "
             "relevant; doc ids must be corpus doc ids). Default: off.", rich_help_panel=DENOISE)] = None
    label_graph_max_probability: Annotated[float, typer.Option(
        help="Label-graph teacher: drop candidates whose estimated probability of being relevant (the teacher's "
             "scale, 0-1; the label_graph_probability column) is >= this. Lower drops more. On NFCorpus dev (one "
             "known positive per query, labelled set NFCorpus train, --range-min 0 --range-max 50, top 5, 3 "
             "seeds): 0.25 removes 65 % of the hidden positives among the candidates at 8 % false alarms and emits "
             "8.3 % false negatives at mean rank 5.9 (27.5 % at mean rank 3.0 without the teacher, 13.1 % at 13 "
             "with hnmine's defaults); 0.1 emits 4.3 % at mean rank 8.4, with 4-5 of 324 queries short. In "
             "hnmine's default window 11-50, 0.25 emits 5.1 % at mean rank 14.2.",
        rich_help_panel=DENOISE)] = MINE.label_graph_max_probability
    label_graph_relabel_probability: Annotated[float, typer.Option(
        help="Label-graph teacher with --relabel-false-negatives: of the candidates it drops, those whose "
             "probability (the same 0-1 scale) is >= this are written as extra positives; the others are only "
             "dropped. On NFCorpus dev (ranks 1-50), 0.5 flags 47 % of the hidden positives at 2 % false alarms.",
        rich_help_panel=DENOISE)] = MINE.label_graph_relabel_probability
    relabel_false_negatives: Annotated[bool, typer.Option(
        help="RLHN: write the candidates the false-negative rules remove (and those the label-graph teacher "
             "drops at >= --label-graph-relabel-probability) as extra positives of their query, flagged "
             "(positive_relabeled / relabeled / pos_relabeled in every --format). Default: off (drop them).",
        rich_help_panel=DENOISE)] = MINE.relabel_false_negatives
    max_false_negatives: Annotated[int | None, typer.Option(
        help="RLHN: drop a query whole when the false-negative rules remove more than K of its candidates (its "
             "candidate list is mostly relevant). Default: off.", rich_help_panel=DENOISE)] = None
    min_score: Annotated[float | None, typer.Option(
        help="Drop candidates scoring < this: too easy to teach anything (same scale as --max-score). "
             "Default: off.", rich_help_panel=DENOISE)] = None
    include_positives: Annotated[bool, typer.Option(
        help="Keep the positives in the ranking instead of excluding them (a reranking evaluation set, as "
             "sentence-transformers' include_positives); needs --format n-tuple, whose negative_i columns are "
             "then the ranked candidates, positives included.", rich_help_panel=DENOISE)] = MINE.include_positives
    ce_batch_size: Annotated[int, typer.Option(
        help="Cross-encoder batch size.", rich_help_panel=DENOISE)] = MINE.ce_batch_size
    ce_max_length: Annotated[int | None, typer.Option(help="Cross-encoder max tokens. Default: the model's.",
                                                      rich_help_panel=DENOISE)] = None
    zone: Annotated[str | None, typer.Option(
        help="SimANS ambiguous zone LOW:HIGH: keep p-LOW <= s <= p+HIGH (p: the query's lowest positive; "
             "s: cross-encoder score if any, else retriever score). Default: off.", rich_help_panel=SELECT)] = None
    sampling: Annotated[str, typer.Option(help="top | random | simans.", rich_help_panel=SELECT)] = MINE.sampling
    simans_a: Annotated[float, typer.Option(
        help="SimANS a in exp(-a(s-p-b)^2).", rich_help_panel=SELECT)] = MINE.simans_a
    simans_b: Annotated[float, typer.Option(help="SimANS b (paper's sign).", rich_help_panel=SELECT)] = MINE.simans_b
    seed: Annotated[int, typer.Option(help="Seed for random/simans sampling.", rich_help_panel=SELECT)] = MINE.seed
    triplet_type: Annotated[str | None, typer.Option(
        help="Metric-learning triplet region on D = p - s: hard (D <= 0) | semihard (0 < D <= M) | easy (D > M) | "
             "all (D <= M). The opposite region from --margin. Default: off.", rich_help_panel=STRATEGY)] = None
    triplet_margin: Annotated[float, typer.Option(
        help="M for --triplet-type.", rich_help_panel=STRATEGY)] = MINE.triplet_margin
    positives_per_query: Annotated[int | None, typer.Option(
        help="Emit rows for at most K positives per query (sampled with --seed); each positive otherwise repeats "
             "the query's negatives. Default: all positives.", rich_help_panel=STRATEGY)] = None
    fill: Annotated[str, typer.Option(
        help="none | random: top up short queries with random documents, flagged in a 'filled' column.",
        rich_help_panel=STRATEGY)] = MINE.fill
    tiers: Annotated[str, typer.Option(
        help="Curriculum 'tier' column (hard/medium/easy): by rank | gap (p - s) | none.",
        rich_help_panel=STRATEGY)] = MINE.tiers
    tier_hard: Annotated[float | None, typer.Option(
        help="Upper bound of the hard tier. Default: by rank, the first third of the ranks selection draws "
             "from (the window for random/simans, its first N ranks for top: 12 by default); by gap, 0.1.",
        rich_help_panel=STRATEGY)] = None
    tier_medium: Annotated[float | None, typer.Option(
        help="Upper bound of the medium tier. Default: by rank, two thirds into the ranks selection draws "
             "from (13 by default); by gap, 0.2.", rich_help_panel=STRATEGY)] = None
    split_tiers: Annotated[bool, typer.Option(
        help="Also write OUTPUT.hard/.medium/.easy.parquet (triplet format).", rich_help_panel=STRATEGY)] = False
    hide_fraction: Annotated[float | None, typer.Option(
        help="Evaluation: hide this fraction of the positives of queries with several, mine, and report how many "
             "hidden positives survive each stage (the pipeline's false-negative catch rate). Default: off.",
        rich_help_panel=STRATEGY)] = None
    query_clusters: Annotated[int | None, typer.Option(
        help="k-means the query embeddings into K topics (FAISS) and add a 'cluster_id' column (TAS-Balanced "
             "batches). Default: off.", rich_help_panel=STRATEGY)] = None
    engine: Annotated[str, typer.Option(
        help="local (this process) | ray: corpus/query encoding, dense search and cross-encoder scoring run as "
             "Ray Data stages (pip install 'hnmine\\[ray]'); the output is then a directory of Parquet parts.",
        rich_help_panel=ENGINE)] = "local"
    ray_address: RayAddress = None
    ray_workers: RayWorkers = None
    ray_shards: Annotated[int | None, typer.Option(
        help="With --engine ray: corpus shards, each encoded and searched (one exact FAISS index) as one unit. "
             "Default: the number of workers, or one per 50,000 passages if more.",
        rich_help_panel=ENGINE)] = None
    ray_corpus: Annotated[str | None, typer.Option(
        help="With --engine ray: where the corpus lives. driver: read here, encoded and searched on Ray. workers: "
             "each corpus shard is read from the --corpus Parquet (any pyarrow.fs path), embedded and indexed by a "
             "Ray actor, and the driver holds only query-side state (dense, BM25 and hybrid retrieval, the label-graph "
             "teacher; not synthetic negatives or a bi-encoder teacher). Default: driver.",
        rich_help_panel=ENGINE)] = None

    def dense(self) -> DenseRetriever:
        def text(path: Path | None) -> str | None:
            return str(path) if path else None

        return DenseRetriever(
            model=self.model, query_prompt=self.query_prompt, corpus_prompt=self.corpus_prompt,
            query_prompt_name=self.query_prompt_name, corpus_prompt_name=self.corpus_prompt_name,
            max_seq_length=self.max_seq_length, batch_size=self.batch_size, device=self.device, dtype=self.dtype,
            cache_dir=text(self.cache_dir), use_cache=self.cache, index=self.index, ivf_nlist=self.ivf_nlist,
            ivf_nprobe=self.ivf_nprobe, hnsw_m=self.hnsw_m, hnsw_ef_search=self.hnsw_ef_search,
            corpus_embeddings=text(self.corpus_embeddings), query_embeddings=text(self.query_embeddings),
            save_index=text(self.save_index), load_index=text(self.load_index))

    def options(self) -> MineOptions:
        """The flat options (stage options are checked as the stages are built); the zone is parsed then too."""
        names = [n for n in MineOptions.__dataclass_fields__ if n not in ("dense", "zone")]
        options = MineOptions(dense=self.dense(), zone=None, **{n: getattr(self, n) for n in names})
        options.zone = self.zone or None  # type: ignore[assignment]  # "LOW:HIGH", parsed by MineJob.build
        return options

    def job(self, ctx: typer.Context) -> MineJob:
        conflicts = flags_given(ctx, PIPELINE_PANELS, extra=("chunk_size",), exclude=NOT_PIPELINE_FLAGS) \
            if self.config is not None else []
        return MineJob(output=self.output, options=guarded(self.options), config=self.config, format=self.format,
                       prompt=self.prompt, audit_columns=self.audit_columns, overwrite=self.overwrite,
                       resume=self.resume, split_tiers=self.split_tiers, config_conflicts=tuple(conflicts))


@takes(MineFlags, context=True)
def mine(ctx: typer.Context, flags: MineFlags) -> None:
    """Mine hard negatives: retrieve, exclude positives, filter, select, write."""
    job = flags.job(ctx)
    messages = CliMessages(flags.quiet)
    if flags.print_config:
        inputs = flags.inputs()
        data = guarded(lambda: inputs.load(messages.warn)) if inputs.given else None
        pipeline = guarded(lambda: job.build(int(data.positive_counts.max()) if data else 10))
        typer.echo(pipeline_to_toml(pipeline))
        return

    def run() -> MineResult:
        engine = engine_for(flags.engine, flags.ray_address, flags.ray_workers, flags.ray_shards, flags.ray_corpus)
        return run_mine(job, flags.inputs(), engine, messages)

    render(shown(flags.quiet, run), flags.quiet)


def render(result: MineResult, quiet: bool) -> None:
    """The run summary and what was written, after the display has closed (so it follows its last line)."""
    if quiet:
        return
    print_summary(result.report, common.err)
    out = result.output
    common.err.print(f"wrote {out} ({result.report.rows_written:,} rows) and {manifest_path(out)}",
                     highlight=False, soft_wrap=True)
