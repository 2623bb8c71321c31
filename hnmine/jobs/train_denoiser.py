"""Training a domain cross-encoder to denoise with, the RocketQA way.

Domain teams often have no reranker for their data, and none can be downloaded on an air-gapped box. A
cross-encoder fine-tuned from a small bi-encoder checkpoint on the *training* split alone (each positive
against BM25 negatives, binary cross-entropy) is already a far better judge of "is this passage relevant"
than the retriever, which is all denoising needs. Training uses sentence-transformers' own
CrossEncoderTrainer, so the result loads anywhere with ``CrossEncoder(path)``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from hnmine.data import MiningData
from hnmine.engines.encoder import DEFAULT_MODEL, resolve_model
from hnmine.errors import MAX_RANK, InputError
from hnmine.pipeline import Pipeline
from hnmine.stage import check_options, option, seed_option
from hnmine.stages.bm25 import BM25Retriever
from hnmine.stages.exclusion import PositiveExcluder
from hnmine.stages.selection import NegativeSelector
from hnmine.stages.window import RankWindow

NEGATIVE_SOURCES = ("bm25", "dense")


@dataclass
class DenoiserTraining:
    """The options of ``hnmine train-denoiser``, each with its default and valid range (the CLI reads both)."""

    base_model: str = DEFAULT_MODEL
    negatives_per_positive: int = option(4, minimum=1, maximum=10_000)
    range_min: int = 3
    range_max: int = 30
    epochs: int = option(1, minimum=1, maximum=10_000)
    batch_size: int = option(16, minimum=1, maximum=1_000_000)
    learning_rate: float = option(2e-5, above=0)
    max_length: int = option(256, minimum=1, maximum=MAX_RANK)
    seed: int = seed_option()
    max_queries: int | None = option(None, minimum=1, maximum=MAX_RANK)
    max_positives_per_query: int | None = option(None, minimum=1, maximum=MAX_RANK)
    negatives_from: str = option("bm25", choices=NEGATIVE_SOURCES)

    def __post_init__(self) -> None:
        check_options(self)  # the window (range_min, range_max) is RankWindow's to check


def _retriever(cfg: DenoiserTraining, top_k: int):
    """BM25 negatives teach lexical traps; dense ones (the bundled bi-encoder's neighbours) are the very
    candidates a dense miner later asks the teacher to judge, so they match the denoising task."""
    if cfg.negatives_from == "dense":
        from hnmine.stages.dense import DenseRetriever

        return DenseRetriever(top_k=top_k)
    return BM25Retriever(top_k=top_k)


def training_pairs(data: MiningData, cfg: DenoiserTraining) -> tuple[list[str], list[str], list[float]]:
    """(query, passage, label) rows: positives (1.0) and retrieved negatives from a rank window (0.0).

    Skipping the top ranks keeps the likeliest unlabelled positives out of the negative labels. With dense
    labels (dozens of positives per query) ``max_positives_per_query`` keeps a seeded sample of each query's
    positives, so a few topic pages with hundreds of positives do not swamp the training set.
    """
    rng = random.Random(cfg.seed)
    pipeline = Pipeline([
        _retriever(cfg, cfg.range_max + int(data.positive_counts.max()) + 1),
        PositiveExcluder(),
        RankWindow(cfg.range_min, cfg.range_max),
        NegativeSelector(num_negatives=cfg.negatives_per_positive, strategy="random", seed=cfg.seed),
    ])
    queries, passages, labels = [], [], []
    for batch in pipeline.run(data):
        negatives: dict[int, list[int]] = {}
        cand = batch.candidates
        for q, d in zip(cand.column("query_idx").to_pylist(), cand.column("doc_idx").to_pylist()):
            negatives.setdefault(q, []).append(d)
        for q in batch.queries.tolist():
            positives = data.positives_of(q).tolist()
            if cfg.max_positives_per_query is not None and len(positives) > cfg.max_positives_per_query:
                positives = rng.sample(positives, cfg.max_positives_per_query)
            for d in positives:
                queries.append(data.query_texts[q])
                passages.append(data.doc_texts[d])
                labels.append(1.0)
            for d in negatives.get(q, []):
                queries.append(data.query_texts[q])
                passages.append(data.doc_texts[d])
                labels.append(0.0)
    return queries, passages, labels


def subsample(data: MiningData, max_queries: int | None, seed: int) -> MiningData:
    if not max_queries or max_queries >= data.num_queries:
        return data
    keep = sorted(random.Random(seed).sample(range(data.num_queries), max_queries))
    pairs = [(i, int(d)) for i, q in enumerate(keep) for d in data.positives_of(q)]
    return MiningData.from_pairs([data.query_ids[q] for q in keep], [data.query_texts[q] for q in keep],
                                 data.doc_ids, data.doc_texts, pairs, data.source)


def train_denoiser(data: MiningData, output_dir: str | Path, cfg: DenoiserTraining) -> dict:
    """Fine-tune and save a 1-label cross-encoder; returns what was trained on, for the manifest."""
    try:
        from datasets import Dataset
        from sentence_transformers import CrossEncoder
        from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
        from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
    except ImportError as exc:
        raise InputError(f"train-denoiser needs the training extra: pip install 'hnmine[train]' ({exc})") from None
    import torch

    data = subsample(data, cfg.max_queries, cfg.seed)
    queries, passages, labels = training_pairs(data, cfg)
    torch.manual_seed(cfg.seed)
    try:
        model = CrossEncoder(resolve_model(cfg.base_model), num_labels=1, max_length=cfg.max_length)
    except (OSError, ValueError) as exc:
        raise InputError(f"--base-model {cfg.base_model!r}: could not be loaded ({exc})") from None
    dataset = Dataset.from_dict({"query": queries, "passage": passages, "label": labels}).shuffle(seed=cfg.seed)
    output_dir = Path(output_dir)
    args = CrossEncoderTrainingArguments(
        output_dir=str(output_dir / "checkpoints"), num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size, learning_rate=cfg.learning_rate, warmup_ratio=0.1,
        seed=cfg.seed, save_strategy="no", logging_steps=50, report_to="none", use_cpu=not torch.cuda.is_available(),
    )
    positives = sum(labels)
    pos_weight = torch.tensor((len(labels) - positives) / max(positives, 1.0))
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset,
                                  loss=BinaryCrossEntropyLoss(model, pos_weight=pos_weight))
    trainer.train()
    model.save_pretrained(str(output_dir))
    return {"queries": data.num_queries, "pairs": len(labels), "positives": int(positives),
            "negatives": int(len(labels) - positives)}
