"""A SentenceTransformer as the denoising teacher (``--scorer bi-encoder:NAME``), through the real loading path."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from hnmine import BM25Retriever, NegativeSelector, Pipeline, PositiveExcluder
from hnmine.cli import app
from hnmine.engines.encoder import Encoder
from hnmine.stages.bi_encoder_denoise import BiEncoderDenoiser
from tests.conftest import make_data
from tests.test_cli import mine

runner = CliRunner()
MODEL = "all-MiniLM-L6-v2"  # resolves to the bundled copy; no hub access


@pytest.fixture(scope="module")
def mined(sample_dir, tmp_path_factory):
    """BM25 triplets of sample_data/, mined once for every denoise test here."""
    path = tmp_path_factory.mktemp("mined") / "m.parquet"
    mine(sample_dir, path, "--retriever", "bm25")
    return path


def test_near_copy_of_the_positive_is_dropped_and_an_unrelated_passage_kept():
    data = make_data(
        {"q": "how do vaccines train the immune system"},
        {"pos": "Vaccines expose the immune system to an antigen so it learns to recognise the pathogen.",
         "copy": "Vaccines expose the immune system to an antigen, so that it learns to recognise the pathogen.",
         "far": "The recipe needs two cups of flour, an egg and a pinch of salt.",
         "mid": "Antibiotics treat bacterial infections but do not work against viruses."},
        {"q": ["pos"]},
    )
    denoiser = BiEncoderDenoiser(model=MODEL, margin=0.1, dtype="float32")  # the oracle below is float32
    pipeline = Pipeline([BM25Retriever(top_k=10), PositiveExcluder(), denoiser, NegativeSelector(num_negatives=5)])
    kept = next(iter(pipeline.run(data)))
    kept_docs = {data.doc_ids[d] for d in kept.candidates.column("doc_idx").to_pylist()}
    emb = Encoder(MODEL, dtype="float32").encode(list(data.doc_texts) + list(data.query_texts))
    cos = dict(zip(data.doc_ids, (emb[:4] @ emb[4]).tolist()))
    # The known answer: exactly the candidates scoring more than 0.1 below the positive survive.
    assert kept_docs == {d for d in ("copy", "far", "mid") if cos[d] < cos["pos"] - 0.1}
    assert kept_docs == {"far", "mid"}
    got = dict(zip((data.doc_ids[d] for d in kept.candidates.column("doc_idx").to_pylist()),
                   kept.candidates.column("teacher_cosine").to_pylist()))
    assert all(abs(got[d] - cos[d]) < 1e-5 for d in got)
    assert "ce_score" not in kept.candidates.column_names


def test_denoise_command_with_a_bi_encoder_teacher_keeps_exactly_the_rows_below_the_positive(mined, tmp_path):
    out = tmp_path / "d.parquet"
    result = runner.invoke(app, ["denoise", str(mined), "--scorer", f"bi-encoder:{MODEL}", "--margin", "0.05",
                                 "--dtype", "float32", "--output", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    src = pq.read_table(mined).to_pydict()
    texts = sorted(set(src["query"]) | set(src["positive"]) | set(src["negative"]))
    emb = dict(zip(texts, Encoder(MODEL, dtype="float32").encode(texts)))
    lowest: dict[str, float] = {}
    for q, p in zip(src["query"], src["positive"]):
        lowest[q] = min(lowest.get(q, 9.0), float(emb[q] @ emb[p]))
    expected = [(q, n) for q, n in zip(src["query"], src["negative"])
                if float(emb[q] @ emb[n]) < lowest[q] - 0.05]
    t = pq.read_table(out).to_pydict()
    assert list(zip(t["query"], t["negative"])) == expected
    assert 0 < len(expected) < len(src["query"])  # the threshold bites: rows were dropped and rows were kept
    assert "negative_teacher_cosine" in t and "positive_teacher_cosine" in t and "negative_ce_score" not in t
    manifest = json.loads((tmp_path / "d.parquet.manifest.json").read_text())
    assert manifest["options"]["scorer"] == f"bi-encoder:{MODEL}"
    assert manifest["options"]["score_column"] == "teacher_cosine"


def test_denoise_teacher_options_are_checked(mined, tmp_path, tiny_cross_encoder):
    out = tmp_path / "d.parquet"
    cases = [
        (["--cross-encoder", tiny_cross_encoder, "--scorer", f"bi-encoder:{MODEL}", "--margin", "0"], "exactly one"),
        (["--margin", "0"], "exactly one"),
        (["--scorer", "bi-encoder:", "--margin", "0"], "expected cross-encoder:NAME or bi-encoder:NAME"),
        (["--scorer", f"bi-encoder:{MODEL}", "--max-score", "3"], "cosine similarity"),
        (["--scorer", "bi-encoder:./no/such/model", "--margin", "0"], "path not found"),
    ]
    for extra, message in cases:
        result = runner.invoke(app, ["denoise", str(mined), "--output", str(out), "--quiet", *extra])
        assert result.exit_code == 2, (extra, result.output)
        assert message in result.output and "Traceback" not in result.output, (extra, result.output)
        assert not out.exists()


def test_scorer_without_a_kind_prefix_means_a_cross_encoder(mined, tmp_path, tiny_cross_encoder):
    out = tmp_path / "d.parquet"
    result = runner.invoke(app, ["denoise", str(mined), "--scorer", tiny_cross_encoder, "--max-score", "1.0",
                                 "--output", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "negative_ce_score" in pq.read_table(out).column_names
    assert np.isfinite(pq.read_table(out).column("negative_ce_score").to_numpy()).all()
