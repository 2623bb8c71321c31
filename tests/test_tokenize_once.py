"""Every text is tokenized once: the ids of the first pass feed the model, and the embeddings do not change.

The reference is the path every text took before: lengths from a tokenizer pass of their own, then
``SentenceTransformer.encode`` on the same token-length batches, which tokenizes each batch again.
"""

from __future__ import annotations

import numpy as np
import pytest

import hnmine.engines.encoder as encoder_module
from hnmine.engines.encoder import Encoder, TokenizedTexts, load_sentence_transformer, token_lengths

TEXTS = [
    "Aspirin lowers the risk of a second heart attack in adults with coronary disease.",
    "Statins",
    "Gut bacteria influence the response to immunotherapy in melanoma patients. " * 30,  # past 256 tokens
    "Vitamin D supplements did not change fracture rates in older women.",
    "protein folding " * 128,  # 256 words: cut by a few tokens
    "Short sleep is associated with higher blood pressure.",
    "Short sleep is associated with higher blood pressure.",  # a repeat: encoded once
    "Mitochondria produce most of the cell's ATP.",
]


def twice_tokenized(monkeypatch, texts: list[str], prompt: str, batch_size: int) -> tuple[np.ndarray, int]:
    """The previous path: TokenizedTexts unavailable, so lengths come first and encode tokenizes again."""
    with monkeypatch.context() as m:
        m.setattr(encoder_module.TokenizedTexts, "build", classmethod(lambda cls, *a, **k: None))
        enc = Encoder(dtype="float32", batch_size=batch_size, use_cache=False, show_progress=False)
        out = enc.encode(texts, prompt=prompt)
        assert not enc.tokenized_once
        return out, enc.truncated


@pytest.mark.parametrize("prompt", ["", "query: "])
def test_one_pass_gives_identical_embeddings_and_truncation_counts(monkeypatch, prompt):
    encoder = Encoder(dtype="float32", batch_size=3, use_cache=False, show_progress=False)
    once = encoder.encode(TEXTS, prompt=prompt)
    assert encoder.tokenized_once
    reference, truncated = twice_tokenized(monkeypatch, TEXTS, prompt, batch_size=3)
    np.testing.assert_array_equal(once, reference)
    assert encoder.truncated == truncated == 2
    assert encoder.tokenize_seconds > 0


def test_features_equal_the_models_own_preprocessing():
    model = load_sentence_transformer("all-MiniLM-L6-v2", None, "float32")
    tokens = TokenizedTexts.build(model, TEXTS, model.max_seq_length)
    assert tokens is not None and tokens.ids.dtype == np.uint16
    lengths = token_lengths(model, TEXTS)
    np.testing.assert_array_equal(tokens.lengths, np.minimum(lengths, model.max_seq_length))
    np.testing.assert_array_equal(tokens.truncated, lengths > model.max_seq_length)
    rows = np.array([2, 0, 5])
    assert tokens.matching_extras(model, rows, [TEXTS[i] for i in rows], "") == {"modality": "text"}


def test_a_model_whose_preprocessing_differs_falls_back_to_encode(monkeypatch):
    model = load_sentence_transformer("all-MiniLM-L6-v2", None, "float32")
    original = model.preprocess

    def shifted(texts, prompt=None, **kwargs):
        features = original(texts, prompt=prompt, **kwargs)
        features["input_ids"] = features["input_ids"].clone()
        features["input_ids"][:, 0] = 0  # not what TokenizedTexts would build
        return features

    monkeypatch.setattr(model, "preprocess", shifted)
    encoder = Encoder(dtype="float32", batch_size=4, use_cache=False, show_progress=False)
    encoder.encode(TEXTS[:4])
    assert not encoder.tokenized_once  # the check caught the difference; encode tokenized as usual
