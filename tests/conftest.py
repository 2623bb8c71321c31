"""Shared fixtures: tiny in-memory data with known answers, a tiny local cross-encoder, the sample data."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# No machine here reaches a model hub; everything loads from local paths.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from hnmine.data import MiningData

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "sample_data"


@pytest.fixture(scope="session", autouse=True)
def _embedding_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One embedding cache for the session: the suite encodes the sample corpus once, not once per test."""
    path = tmp_path_factory.mktemp("hnmine-cache")
    os.environ["HNMINE_CACHE"] = str(path)
    return path


def make_data(queries: dict[str, str], docs: dict[str, str], positives: dict[str, list[str]]) -> MiningData:
    qids, dids = list(queries), list(docs)
    pairs = [(qids.index(q), dids.index(d)) for q, ds in positives.items() for d in ds]
    return MiningData.from_pairs(qids, list(queries.values()), dids, list(docs.values()), pairs)


@pytest.fixture(scope="session")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 1-layer BERT with a 1-label head, saved to disk and later loaded through CrossEncoder(path).

    Random weights: its scores are arbitrary but deterministic, which is all the tests need; they read the
    scores back through the same loading code and set thresholds from them.
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    from hnmine.engines.encoder import bundled_model_path

    path = tmp_path_factory.mktemp("tiny-cross-encoder")
    vocab = path / "vocab.txt"
    shutil.copy(Path(bundled_model_path()) / "vocab.txt", vocab)
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True, model_max_length=128)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128, num_labels=1)
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray of 2 CPUs per test module (skipped without Ray); the engine attaches to it and leaves it
    running, and it is shut down when the module's tests are done."""
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE


def build_tiny_sentence_transformer(root: Path) -> str:
    """A 1-layer BERT sentence-transformer (mean pooling) saved under ``root``; loads by path, encodes in a blink.

    Random weights: for tests of plumbing (progress, README commands), never of retrieval quality.
    """
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from hnmine.engines.encoder import bundled_model_path

    bert = root / "bert"
    bert.mkdir(parents=True)
    shutil.copy(Path(bundled_model_path()) / "vocab.txt", bert / "vocab.txt")
    # 512 positions like MiniLM's, so any max length a command asks for (train-denoiser: 256) fits
    tokenizer = BertTokenizerFast(vocab_file=str(bert / "vocab.txt"), do_lower_case=True, model_max_length=512)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(bert)
    tokenizer.save_pretrained(bert)
    word = models.Transformer(str(bert), max_seq_length=128)
    model = SentenceTransformer(modules=[word, models.Pooling(word.get_word_embedding_dimension())])
    model.save(str(root / "st"))
    return str(root / "st")


@pytest.fixture(scope="session")
def tiny_sentence_transformer(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_tiny_sentence_transformer(tmp_path_factory.mktemp("tiny-st"))


@pytest.fixture(scope="session")
def tiny_bi_encoder(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 1-layer BERT saved to disk; SentenceTransformer(path) loads it with mean pooling, like any local model."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from hnmine.engines.encoder import bundled_model_path

    path = tmp_path_factory.mktemp("tiny-bi-encoder")
    vocab = path / "vocab.txt"
    shutil.copy(Path(bundled_model_path()) / "vocab.txt", vocab)
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True, model_max_length=128)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)
