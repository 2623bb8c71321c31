"""The standard pipeline, built from the flat options of ``hnmine mine``.

retrieve -> exclude positives -> rank window -> (cross-encoder denoise | retriever-score filter)
-> (ambiguous zone) -> (triplet margin) -> (positives cap) -> select -> (random fill) -> tiers
-> (query clusters). The window comes before the cross-encoder on purpose: the expensive model
only scores candidates that could still be emitted.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from hnmine.engines.encoder import check_device, primary_device
from hnmine.errors import MAX_RANK, InputError, check_float, check_int
from hnmine.pipeline import Pipeline
from hnmine.stage import Stage
from hnmine.stages.ambiguous import AmbiguousZoneFilter
from hnmine.stages.bi_encoder_denoise import BiEncoderDenoiser
from hnmine.stages.bm25 import BM25Retriever
from hnmine.stages.clusters import QueryClusters
from hnmine.stages.cross_encoder import CrossEncoderDenoiser
from hnmine.stages.dense import DenseRetriever
from hnmine.stages.exclusion import PositiveExcluder
from hnmine.stages.false_negatives import FalseNegativeFilter
from hnmine.stages.fill import RandomFill
from hnmine.stages.hybrid import HybridRetriever
from hnmine.stages.positives_cap import PositivesPerQuery
from hnmine.stages.selection import NegativeSelector
from hnmine.stages.siblings import SiblingFilter
from hnmine.stages.tiers import DifficultyTiers, window_thirds
from hnmine.stages.triplet_margin import TripletMarginFilter
from hnmine.stages.window import RankWindow

RETRIEVERS = ("bm25", "dense", "hybrid")
SCORER_KINDS = ("cross-encoder", "bi-encoder")


@dataclass
class MineOptions:
    retriever: str = "dense"
    num_negatives: int = 5
    range_min: int = 10
    range_max: int = 50
    top_k: int | None = None
    # Encoder, index and precomputed-embedding options: one DenseRetriever, its top_k set at build time.
    dense: DenseRetriever = field(default_factory=DenseRetriever)
    bm25_k1: float = 1.5
    bm25_b: float = 0.75
    stopwords: bool = False
    bm25_backend: str = "sparse"
    rrf_k: float = 60.0
    cross_encoder: str | None = None
    ce_batch_size: int = 32
    ce_max_length: int | None = None
    max_score: float | None = None
    margin: float | None = None
    max_ratio: float | None = None
    max_z: float | None = None
    spread_margin: float | None = None
    relabel_false_negatives: bool = False
    max_false_negatives: int | None = None
    min_score: float | None = None
    include_positives: bool = False
    zone: tuple[float, float] | None = None
    sampling: str = "top"
    simans_a: float = 0.5
    simans_b: float = 0.0
    seed: int = 0
    chunk_size: int = 256
    triplet_type: str | None = None
    triplet_margin: float = 0.2
    positives_per_query: int | None = None
    fill: str = "none"
    tiers: str = "rank"
    tier_hard: float | None = None
    tier_medium: float | None = None
    query_clusters: int | None = None
    hide_fraction: float | None = None
    sibling_percentile: float | None = None
    sibling_pool: int = 100
    lexical_top: int | None = None

    def validate(self) -> None:
        # Options whose absence means "default" or "off" are None; 0 is refused like any other value below 1,
        # rather than quietly meaning "off" where -1 is an error.
        for option, value in (("--top-k", self.top_k), ("--positives-per-query", self.positives_per_query),
                              ("--query-clusters", self.query_clusters), ("--ce-max-length", self.ce_max_length)):
            if value is not None:
                check_int(option, value, 1, MAX_RANK)
        check_int("--ce-batch-size", self.ce_batch_size, 1, 1_000_000)
        check_int("--chunk-size", self.chunk_size, 1, 1 << 24)
        check_device(self.dense.device)  # here, not in the stage: a pipeline can be built for another machine
        check_int("--range-max", self.range_max, 1, 1 << 30)
        check_int("--num-negatives", self.num_negatives, 1, 1_000_000)
        # Checked even where the option is unused, so a typo'd value never waits for the day it matters.
        check_float("--rrf-k", self.rrf_k, minimum=0)
        check_float("--bm25-k1", self.bm25_k1, minimum=0)
        check_float("--bm25-b", self.bm25_b, minimum=0, maximum=1)
        check_float("--simans-a", self.simans_a, minimum=0)
        check_float("--simans-b", self.simans_b)
        check_float("--triplet-margin", self.triplet_margin, minimum=0)
        if self.retriever not in RETRIEVERS:
            raise InputError(f"--retriever {self.retriever!r}: expected one of {', '.join(RETRIEVERS)}")
        if self.range_max - self.range_min < self.num_negatives:
            raise InputError(
                f"--range-min {self.range_min} and --range-max {self.range_max} leave "
                f"{max(self.range_max - self.range_min, 0)} candidates, fewer than --num-negatives "
                f"{self.num_negatives}"
            )
        if self.cross_encoder is None and self.retriever == "bm25" and self.max_ratio is not None:
            raise InputError("--max-ratio on BM25 scores is meaningless; use --cross-encoder or a dense retriever")
        for flag, value in (("--max-score", self.max_score), ("--min-score", self.min_score)):
            if self.cross_encoder is None and self.retriever != "bm25" and value is not None \
                    and not -1.0 <= value <= 1.0:
                raise InputError(f"{flag} {value} applies to cosine similarity here (no --cross-encoder), "
                                 "which lies in [-1, 1]")
        if (self.relabel_false_negatives or self.max_false_negatives is not None) and all(
                v is None for v in (self.max_score, self.margin, self.max_ratio, self.max_z, self.spread_margin)):
            raise InputError("--relabel-false-negatives and --max-false-negatives act on the candidates a "
                             "false-negative rule removes: give --max-score, --margin, --max-ratio, --max-z or "
                             "--spread-margin")
        if self.fill not in ("none", "random"):
            raise InputError(f"--fill {self.fill!r}: expected none or random")
        if self.tiers not in ("none", "rank", "gap"):
            raise InputError(f"--tiers {self.tiers!r}: expected none, rank or gap")
        if self.dense.batch_size < 1 or self.ce_batch_size < 1 or self.chunk_size < 1:
            raise InputError("--batch-size, --ce-batch-size and --chunk-size must be >= 1")


def _needed_after_denoise(opts: MineOptions) -> int | None:
    """With plain top-N selection after denoising, only the N best survivors matter: score lazily."""
    if opts.sampling == "top" and opts.zone is None and opts.triplet_type is None and opts.hide_fraction is None:
        return opts.num_negatives
    return None


def build_pipeline(opts: MineOptions, max_positives: int = 10) -> Pipeline:
    """``top_k`` defaults to the window plus room for the query's positives and its own text."""
    opts.validate()
    top_k = opts.top_k or opts.range_max + max_positives + 1
    bm25 = BM25Retriever(top_k=top_k, k1=opts.bm25_k1, b=opts.bm25_b, stopwords=opts.stopwords,
                         backend=opts.bm25_backend, cache_dir=opts.dense.cache_dir, use_cache=opts.dense.use_cache)
    dense = replace(opts.dense, top_k=top_k)
    retriever: Stage
    if opts.retriever == "bm25":
        retriever = bm25
    elif opts.retriever == "dense":
        retriever = dense
    else:
        retriever = HybridRetriever(top_k=top_k, rrf_k=opts.rrf_k, bm25=bm25, dense=dense)
    # --include-positives (a reranking-evaluation set, as sentence-transformers' include_positives): the ranking
    # keeps the positives, so nothing is excluded; only the n-tuple layout is allowed to carry it (see cli).
    stages: list[Stage] = [retriever] if opts.include_positives else [retriever, PositiveExcluder()]
    if opts.sibling_percentile is not None or opts.lexical_top is not None:
        # Before the window: the percentile pool is the retriever's own top list. Shares the retrievers'
        # embeddings and index, so nothing is encoded or indexed twice.
        stages.append(SiblingFilter(percentile=opts.sibling_percentile, pool=opts.sibling_pool,
                                    lexical_top=opts.lexical_top, dense=dense, bm25=bm25))
    stages.append(RankWindow(opts.range_min, opts.range_max))
    if opts.cross_encoder:
        stages.append(CrossEncoderDenoiser(model=opts.cross_encoder, max_score=opts.max_score, margin=opts.margin,
                                           max_ratio=opts.max_ratio, max_z=opts.max_z,
                                           spread_margin=opts.spread_margin,
                                           relabel=opts.relabel_false_negatives,
                                           max_false_negatives=opts.max_false_negatives,
                                           batch_size=opts.ce_batch_size,
                                           device=primary_device(opts.dense.device), max_length=opts.ce_max_length,
                                           needed=_needed_after_denoise(opts), min_score=opts.min_score))
    elif any(v is not None for v in (opts.max_score, opts.margin, opts.max_ratio, opts.max_z, opts.spread_margin,
                                     opts.min_score)):
        stages.append(FalseNegativeFilter(opts.max_score, opts.margin, opts.max_ratio, score_column="score",
                                          max_z=opts.max_z, spread_margin=opts.spread_margin,
                                          relabel=opts.relabel_false_negatives,
                                          max_false_negatives=opts.max_false_negatives,
                                          min_score=opts.min_score))
    if opts.zone is not None:
        stages.append(AmbiguousZoneFilter(low=opts.zone[0], high=opts.zone[1]))
    if opts.triplet_type:
        stages.append(TripletMarginFilter(triplet_type=opts.triplet_type, margin=opts.triplet_margin))
    if opts.positives_per_query:
        stages.append(PositivesPerQuery(max_positives=opts.positives_per_query, seed=opts.seed))
    stages.append(NegativeSelector(num_negatives=opts.num_negatives, strategy=opts.sampling, seed=opts.seed,
                                   simans_a=opts.simans_a, simans_b=opts.simans_b))
    if opts.fill == "random":
        stages.append(RandomFill(num_negatives=opts.num_negatives, seed=opts.seed))
    if opts.tiers != "none":
        hard, medium = opts.tier_hard, opts.tier_medium
        if opts.tiers == "rank":  # bounds not given: thirds of the ranks selection draws from (see tiers.py)
            drawn_to = opts.range_max if opts.sampling != "top" else min(opts.range_max,
                                                                          opts.range_min + opts.num_negatives)
            thirds = window_thirds(opts.range_min, drawn_to)
            hard = thirds[0] if hard is None else hard
            medium = thirds[1] if medium is None else medium
        stages.append(DifficultyTiers(by=opts.tiers, hard=hard, medium=medium))
    if opts.query_clusters:
        # The retriever's own dense stage, so query embeddings are not computed twice.
        shared = dense if opts.retriever != "bm25" else replace(opts.dense, save_index=None, load_index=None)
        stages.append(QueryClusters(num_clusters=opts.query_clusters, seed=opts.seed, dense=shared))
    return Pipeline(stages, chunk_size=opts.chunk_size)


def parse_scorer(spec: str) -> tuple[str, str]:
    """``cross-encoder:NAME`` or ``bi-encoder:NAME``; a bare NAME means a cross-encoder, as ``--cross-encoder``."""
    kind, sep, name = spec.partition(":")
    if not sep or kind not in SCORER_KINDS:
        kind, name = "cross-encoder", spec
    if not name.strip():
        raise InputError(f"--scorer {spec!r}: expected cross-encoder:NAME or bi-encoder:NAME")
    return kind, name


def build_denoiser(scorer: str, max_score: float | None, margin: float | None, max_ratio: float | None,
                   batch_size: int = 32, device: str | None = None, max_length: int | None = None,
                   dtype: str = "auto", max_z: float | None = None, spread_margin: float | None = None,
                   min_score: float | None = None) -> CrossEncoderDenoiser | BiEncoderDenoiser:
    """The teacher of ``hnmine denoise``: a cross-encoder (``ce_score``) or a bi-encoder (``teacher_cosine``)."""
    if all(v is None for v in (max_score, margin, max_ratio, max_z, spread_margin, min_score)):
        raise InputError("give at least one of --max-score, --min-score, --margin, --max-ratio, --max-z, "
                         "--spread-margin")
    kind, name = parse_scorer(scorer)
    rules = {"max_score": max_score, "margin": margin, "max_ratio": max_ratio, "max_z": max_z,
             "spread_margin": spread_margin, "min_score": min_score}
    if kind == "bi-encoder":
        return BiEncoderDenoiser(model=name, **rules, batch_size=batch_size, device=device, dtype=dtype)
    return CrossEncoderDenoiser(model=name, **rules, batch_size=batch_size, device=device, max_length=max_length)
