"""The standard pipeline, built from the flat options of ``hnmine mine``.

retrieve -> exclude positives -> rank window -> (cross-encoder denoise | retriever-score filter)
-> (ambiguous zone) -> (triplet margin) -> (positives cap) -> select -> (random fill) -> tiers
-> (query clusters). The window comes before the cross-encoder on purpose: the expensive model
only scores candidates that could still be emitted.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from hnmine.candidates import SCORE
from hnmine.engines.encoder import check_device, primary_device
from hnmine.errors import InputError
from hnmine.pipeline import CHUNK_SIZE, CHUNK_SIZE_CHECK, Pipeline
from hnmine.stage import Stage, check_options, option, same_as
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
from hnmine.stages.label_graph import LabelGraphDenoiser
from hnmine.stages.positives_cap import PositivesPerQuery
from hnmine.stages.selection import NegativeSelector
from hnmine.stages.siblings import SiblingFilter
from hnmine.stages.tiers import TIER_MODES, DifficultyTiers, window_thirds
from hnmine.stages.triplet_margin import TripletMarginFilter
from hnmine.stages.window import RankWindow

RETRIEVERS = ("bm25", "dense", "hybrid")
SCORER_KINDS = ("cross-encoder", "bi-encoder")


@dataclass
class MineOptions:
    """The flat options of ``hnmine mine``. Each mirrors the stage option it sets (``same_as``): one default and
    one valid range per option, written on the stage; the CLI takes its defaults from here."""

    retriever: str = option("dense", choices=RETRIEVERS)
    num_negatives: int = same_as(NegativeSelector, "num_negatives")
    range_min: int = same_as(RankWindow, "range_min", default=10)
    range_max: int = same_as(RankWindow, "range_max", default=50, maximum=1 << 30)
    top_k: int | None = same_as(BM25Retriever, "top_k", default=None)
    # Encoder, index and precomputed-embedding options: one DenseRetriever, its top_k set at build time.
    dense: DenseRetriever = field(default_factory=DenseRetriever)
    bm25_k1: float = same_as(BM25Retriever, "k1")
    bm25_b: float = same_as(BM25Retriever, "b")
    stopwords: bool = same_as(BM25Retriever, "stopwords")
    bm25_backend: str = same_as(BM25Retriever, "backend")
    rrf_k: float = same_as(HybridRetriever, "rrf_k")
    cross_encoder: str | None = None
    ce_batch_size: int = same_as(CrossEncoderDenoiser, "batch_size")
    ce_max_length: int | None = same_as(CrossEncoderDenoiser, "max_length")
    max_score: float | None = same_as(FalseNegativeFilter, "max_score")
    margin: float | None = same_as(FalseNegativeFilter, "margin")
    max_ratio: float | None = same_as(FalseNegativeFilter, "max_ratio")
    max_z: float | None = same_as(FalseNegativeFilter, "max_z")
    spread_margin: float | None = same_as(FalseNegativeFilter, "spread_margin")
    relabel_false_negatives: bool = same_as(FalseNegativeFilter, "relabel")
    max_false_negatives: int | None = same_as(FalseNegativeFilter, "max_false_negatives")
    min_score: float | None = same_as(FalseNegativeFilter, "min_score")
    include_positives: bool = False
    zone: tuple[float, float] | None = None
    sampling: str = same_as(NegativeSelector, "strategy")
    simans_a: float = same_as(NegativeSelector, "simans_a")
    simans_b: float = same_as(NegativeSelector, "simans_b")
    seed: int = same_as(NegativeSelector, "seed")
    chunk_size: int = field(default=CHUNK_SIZE, metadata={"check": CHUNK_SIZE_CHECK})
    triplet_type: str | None = None
    triplet_margin: float = same_as(TripletMarginFilter, "margin")
    positives_per_query: int | None = same_as(PositivesPerQuery, "max_positives", default=None)
    fill: str = option("none", choices=("none", "random"))
    tiers: str = option("rank", choices=("none", *TIER_MODES))
    tier_hard: float | None = same_as(DifficultyTiers, "hard")
    tier_medium: float | None = same_as(DifficultyTiers, "medium")
    query_clusters: int | None = same_as(QueryClusters, "num_clusters", default=None)
    hide_fraction: float | None = None
    sibling_percentile: float | None = same_as(SiblingFilter, "percentile", default=None)
    sibling_pool: int = same_as(SiblingFilter, "pool")
    lexical_top: int | None = same_as(SiblingFilter, "lexical_top", default=None)
    label_graph_queries: str | None = None
    label_graph_qrels: str | None = None
    label_graph_max_probability: float = same_as(LabelGraphDenoiser, "max_probability")
    label_graph_relabel_probability: float = same_as(LabelGraphDenoiser, "relabel_probability")

    def validate(self) -> None:
        # Every range and choice, checked even where the option is unused, so a typo'd value never waits for the
        # day it matters. Options whose absence means "default" or "off" are None; 0 is refused like any other
        # value below 1, rather than quietly meaning "off" where -1 is an error.
        check_options(self)
        check_device(self.dense.device)  # here, not in the stage: a pipeline can be built for another machine
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
        graph = {"--label-graph-queries": self.label_graph_queries, "--label-graph-qrels": self.label_graph_qrels}
        if any(v is not None for v in graph.values()):
            missing = [flag for flag, v in graph.items() if v is None]
            if missing:
                raise InputError(f"the label-graph teacher needs a labelled set: give {missing[0]} too")
            if self.retriever != "dense":
                raise InputError(f"--label-graph-qrels with --retriever {self.retriever}: the teacher is fitted on "
                                 "the dense retriever's ranks and cosines; use --retriever dense")
        rules = any(v is not None for v in (self.max_score, self.margin, self.max_ratio, self.max_z,
                                            self.spread_margin))
        if self.relabel_false_negatives and not rules and self.label_graph_qrels is None:
            raise InputError("--relabel-false-negatives acts on the candidates a false-negative rule or the "
                             "label-graph teacher removes: give --max-score, --margin, --max-ratio, --max-z, "
                             "--spread-margin or --label-graph-qrels")
        if self.max_false_negatives is not None and not rules:
            raise InputError("--max-false-negatives acts on the candidates a false-negative rule removes: give "
                             "--max-score, --margin, --max-ratio, --max-z or --spread-margin")


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
    if opts.label_graph_qrels is not None:
        # After the window (only candidates that could be emitted are judged), before any cross-encoder (which
        # then scores fewer pairs); the retriever's own dense stage, so nothing is encoded twice.
        stages.append(LabelGraphDenoiser(queries=str(opts.label_graph_queries), qrels=str(opts.label_graph_qrels),
                                         max_probability=opts.label_graph_max_probability, seed=opts.seed,
                                         relabel=opts.relabel_false_negatives,
                                         relabel_probability=opts.label_graph_relabel_probability, dense=dense))
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
        stages.append(FalseNegativeFilter(opts.max_score, opts.margin, opts.max_ratio, score_column=SCORE,
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
                   batch_size: int = CrossEncoderDenoiser.batch_size, device: str | None = None,
                   max_length: int | None = None, dtype: str = BiEncoderDenoiser.dtype, max_z: float | None = None,
                   spread_margin: float | None = None,
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
