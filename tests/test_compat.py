"""hnmine.compat.mine_hard_negatives against sentence-transformers' own function, same arguments, tiny models.

Where the semantics agree (no threshold, or thresholds with range_min=0) the datasets must be equal row for
row: the same columns, the same texts, scores equal to float32 precision. Where they deliberately differ
(documented in hnmine/compat.py), the test checks hnmine's stated behaviour instead.
"""

from __future__ import annotations

import math

import pytest

datasets = pytest.importorskip("datasets")

from hnmine.compat import mine_hard_negatives  # noqa: E402

WORDS = ["river", "stone", "glass", "paper", "orange", "violin", "engine", "pocket", "garden", "silver", "thunder",
         "candle", "winter", "harbor", "marble", "feather", "ladder", "copper", "velvet", "lantern", "meadow",
         "compass", "saddle", "ribbon", "walnut"]


def _text(i: int, kind: str) -> str:
    w = [WORDS[(i * k + j) % len(WORDS)] for j, k in enumerate((3, 5, 7, 11, 13))]
    return f"{kind} {i}: " + " ".join(w)


@pytest.fixture(scope="module")
def pairs():
    anchors = [_text(i, "question") for i in range(24)] + [_text(0, "question")]  # query 0 has two positives
    positives = [_text(i, "answer") for i in range(24)] + [_text(99, "answer")]
    return datasets.Dataset.from_dict({"query": anchors, "answer": positives})


@pytest.fixture(scope="module")
def corpus():
    return [_text(i, "passage") for i in range(40)]


@pytest.fixture(scope="module")
def model():
    """The bundled MiniLM: a random tiny model scores every pair ~1.0, and ties would make the order arbitrary."""
    from sentence_transformers import SentenceTransformer

    from hnmine.engines.encoder import bundled_model_path

    return SentenceTransformer(bundled_model_path(), device="cpu")


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """Both functions key cached embeddings alike (model, prompt, texts): the module encodes each set once."""
    return str(tmp_path_factory.mktemp("compat-embeddings"))


def _both(pairs, model, corpus, cache, **kwargs):
    from sentence_transformers.util import mine_hard_negatives as st_mine

    kwargs.setdefault("cache_folder", cache)
    ours = mine_hard_negatives(pairs, model, corpus=corpus, verbose=False, **kwargs)
    theirs = st_mine(pairs, model, corpus=corpus, verbose=False, use_faiss=True, **kwargs)
    return ours, theirs


def _assert_same(ours, theirs) -> None:
    assert ours.column_names == theirs.column_names
    assert len(ours) == len(theirs) > 0
    for column in ours.column_names:
        a, b = ours[column], theirs[column]
        if column in ("scores", "score"):
            flat = lambda v: v if isinstance(v, list) else [v]  # noqa: E731
            for x, y in zip(a, b):
                assert all(math.isclose(u, w, abs_tol=1e-5) for u, w in zip(flat(x), flat(y)))
        else:
            assert a == b, column


@pytest.mark.parametrize("output_format", ["triplet", "n-tuple", "labeled-pair", "labeled-list"])
@pytest.mark.parametrize("output_scores", [False, True])
def test_same_rows_as_sentence_transformers(pairs, model, corpus, shared_cache, output_format, output_scores):
    ours, theirs = _both(pairs, model, corpus, shared_cache, anchor_column_name="query", positive_column_name="answer",
                         range_min=2, range_max=12, num_negatives=3, output_format=output_format,
                         output_scores=output_scores)
    _assert_same(ours, theirs)


def test_same_rows_with_thresholds_and_default_range(pairs, model, corpus, shared_cache):
    ours, theirs = _both(pairs, model, corpus, shared_cache, relative_margin=0.0005, max_score=0.9999, min_score=0.5,
                         num_negatives=2, output_format="n-tuple", output_scores=True)
    _assert_same(ours, theirs)


def test_include_positives_keeps_them_in_the_ranking(pairs, model, corpus, shared_cache):
    ours, theirs = _both(pairs, model, corpus, shared_cache, include_positives=True, num_negatives=4)
    _assert_same(ours, theirs)
    assert "negative_4" in ours.column_names


def test_prompts_and_cache_folder(pairs, model, corpus, tmp_path):
    model.prompts = {"query": "query: ", "document": "passage: "}
    try:
        ours, theirs = _both(pairs, model, corpus, str(tmp_path), query_prompt_name="query", corpus_prompt="doc: ")
        _assert_same(ours, theirs)
    finally:
        model.prompts = {}
    assert len(list(tmp_path.glob("*.npy"))) == 2


def test_random_sampling_is_seeded(pairs, model, corpus, shared_cache):
    kwargs = dict(corpus=corpus, sampling_strategy="random", range_max=15, verbose=False, cache_folder=shared_cache)
    a = mine_hard_negatives(pairs, model, **kwargs)
    b = mine_hard_negatives(pairs, model, **kwargs)
    c = mine_hard_negatives(pairs, model, seed=1, **kwargs)
    assert a["negative"] == b["negative"] != c["negative"]


def test_cross_encoder_thresholds_apply_on_its_scale(pairs, model, corpus, shared_cache, tiny_cross_encoder):
    """With a threshold, sentence-transformers and hnmine both rescore with the cross-encoder; the scores out are
    its scores, and every kept negative passes the threshold on that scale."""
    from sentence_transformers import CrossEncoder

    ce = CrossEncoder(tiny_cross_encoder, device="cpu")
    ours = mine_hard_negatives(pairs, model, corpus=corpus, cross_encoder=ce, max_score=0.9, num_negatives=2,
                               output_scores=True, verbose=False, cache_folder=shared_cache)
    assert ours.column_names == ["query", "answer", "negative", "scores"]
    scores = [s for _, s in ours["scores"]]
    expected = ce.predict(list(zip(ours["query"], ours["negative"])))
    assert all(math.isclose(a, float(b), abs_tol=1e-4) and a < 0.9 for a, b in zip(scores, expected))


def test_errors_are_value_errors_like_sentence_transformers(pairs, model):
    with pytest.raises(ValueError, match="Cannot mine 5 negatives"):
        mine_hard_negatives(pairs, model, range_min=3, range_max=6, num_negatives=5, verbose=False)
    with pytest.raises(ValueError, match="Invalid output_format"):
        mine_hard_negatives(pairs, model, output_format="pairs", verbose=False)
