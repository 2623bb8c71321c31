"""``--engine ray`` against the local engine on sample_data/, on a local Ray (``ray.init(num_cpus=2)``).

Why "equal" means equal ids, ranks, order and non-float columns, and scores to 1e-5: the Ray engine encodes
the corpus in shards, and a transformer's float32 output for a text moves in the last bits with the batch it
is padded with (measured: <= 1.3e-7 on these embeddings); FAISS scores likewise move with the shape of the
matrix product. The same happens in the local engine when ``--chunk-size`` or ``--batch-size`` changes. Any
selection that could flip on such a difference would be a near-tie at 1e-7; the tests check that none did
on sample_data/ (same negatives, same order), and that every score agrees to 1e-5.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from hnmine.cli import app

runner = CliRunner()
REPO = Path(__file__).resolve().parent.parent
# Ray Data's own context object warns about its deprecated fields on every start; nothing hnmine sets.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")


def mine(sample_dir: Path, out: Path, *extra: str) -> None:
    args = ["mine", "--queries", str(sample_dir / "queries.parquet"), "--corpus", str(sample_dir / "corpus.parquet"),
            "--qrels", str(sample_dir / "qrels.parquet"), "--output", str(out), "--quiet", *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output


def assert_same_rows(local: pa.Table, ray_out: pa.Table) -> None:
    assert ray_out.schema == local.schema
    assert ray_out.num_rows == local.num_rows > 0
    for name in local.column_names:
        a, b = local.column(name), ray_out.column(name)
        if pa.types.is_floating(a.type):
            assert np.allclose(a.to_numpy(zero_copy_only=False), b.to_numpy(zero_copy_only=False), atol=1e-5,
                               equal_nan=True), name
        else:
            assert a.to_pylist() == b.to_pylist(), name


def assert_same_manifest(local: Path, ray_out: Path) -> None:
    a = json.loads(local.with_name(local.name + ".manifest.json").read_text())
    b = json.loads(ray_out.with_name(ray_out.name + ".manifest.json").read_text())
    assert set(b) - set(a) == {"engine"} and set(a) <= set(b)
    assert b["engine"]["kind"] == "ray"
    for key in ("hnmine_version", "command", "inputs"):
        assert a[key] == b[key], key
    assert _without_cache_flag(a["pipeline"]) == _without_cache_flag(b["pipeline"])
    counts_a, counts_b = a["counts"], b["counts"]
    for key in ("queries", "documents", "positives", "negatives_emitted", "queries_short_of_negatives",
                "queries_without_negatives", "rows_written"):
        assert counts_a[key] == counts_b[key], key
    assert [(s["kind"], s["rows_in"], s["rows_out"]) for s in counts_a["stages"]] == \
        [(s["kind"], s["rows_in"], s["rows_out"]) for s in counts_b["stages"]]


def _without_cache_flag(stages: list[dict]) -> list[dict]:
    """The Ray run below passes --no-cache so that it really encodes; nothing else may differ."""
    return [{k: v for k, v in s.items() if k != "use_cache"} for s in stages]


def test_ray_mine_equals_local_on_sample_data(ray_local, sample_dir: Path, tmp_path: Path) -> None:
    """Dense mining, seeded random sampling: corpus and queries encoded by 2 Ray actors (--no-cache, so the
    Ray encoding stage really runs), searched in 3 shards, against the local engine. float32: in bfloat16 an
    embedding moves by ~1e-3 with the batch it is padded in, enough to swap near-tie neighbours."""
    local, ray_out = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    options = ("--sampling", "random", "--seed", "7", "--dtype", "float32")
    mine(sample_dir, local, *options)
    mine(sample_dir, ray_out, *options, "--engine", "ray", "--no-cache", "--ray-workers", "2", "--ray-shards", "3")
    assert ray_out.is_dir()
    parts = sorted(p.name for p in ray_out.iterdir())
    assert parts and all(p.startswith("part-") and p.endswith(".parquet") for p in parts)
    assert_same_rows(pq.read_table(local), pq.read_table(ray_out))
    assert_same_manifest(local, ray_out)
    engine = json.loads((tmp_path / "ray.parquet.manifest.json").read_text())["engine"]
    assert engine["texts encoded on Ray"] > 0 and engine["corpus_shards"] == 3


def test_ray_mine_with_cross_encoder_equals_local(ray_local, sample_dir: Path, tmp_path: Path,
                                                  tiny_cross_encoder: str) -> None:
    """Cross-encoder scoring by a Ray actor pool; embeddings come from the driver's cache as in a local rerun."""
    local, ray_out = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    options = ("--cross-encoder", tiny_cross_encoder, "--margin", "0.0", "--range-max", "30")
    mine(sample_dir, local, *options)
    mine(sample_dir, ray_out, *options, "--engine", "ray", "--ray-workers", "2")
    local_rows = pq.read_table(local)
    assert "negative_ce_score" in local_rows.column_names
    assert_same_rows(local_rows, pq.read_table(ray_out))
    assert_same_manifest(local, ray_out)
    engine = json.loads((tmp_path / "ray.parquet.manifest.json").read_text())["engine"]
    assert engine["cross-encoder pairs scored on Ray"] > 0
    assert "texts encoded on Ray" not in engine  # a cache hit, as a local rerun


@pytest.mark.parametrize("retriever", ["bm25", "hybrid"])
def test_ray_bm25_and_hybrid_equal_local(ray_local, sample_dir: Path, tmp_path: Path, retriever: str) -> None:
    """BM25 runs on the driver as locally; hybrid's dense half reads the embeddings a local run cached (as a
    local rerun would), searched in shards on Ray: every column equals the local run's, floats included."""
    local, ray_out = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    options = ("--retriever", retriever, "--sampling", "random", "--seed", "3")
    mine(sample_dir, local, *options)
    mine(sample_dir, ray_out, *options, "--engine", "ray", "--ray-workers", "2", "--ray-shards", "3")
    assert pq.read_table(ray_out).equals(pq.read_table(local))
    assert_same_manifest(local, ray_out)


@pytest.mark.parametrize("teacher", ["cross-encoder", "bi-encoder"])
def test_ray_denoise_equals_local(ray_local, sample_dir: Path, tmp_path: Path, tiny_cross_encoder: str,
                                  tiny_sentence_transformer: str, teacher: str,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The cross-encoder teacher scores each chunk's pairs on Ray actors; the bi-encoder teacher embeds the
    file's distinct texts with the Ray encoder pool (float32: the same floats up to the batch a text is
    padded in; each engine with an empty embedding cache of its own, so both really encode)."""
    mined = tmp_path / "mined.parquet"
    mine(sample_dir, mined, "--retriever", "bm25", "--range-max", "20")
    scorer = ["--cross-encoder", tiny_cross_encoder] if teacher == "cross-encoder" else [
        "--scorer", f"bi-encoder:{tiny_sentence_transformer}", "--dtype", "float32"]
    outputs = {}
    for engine in ("local", "ray"):
        out = tmp_path / f"{engine}.parquet"
        monkeypatch.setenv("HNMINE_CACHE", str(tmp_path / f"cache-{engine}"))
        result = runner.invoke(app, ["denoise", str(mined), *scorer, "--margin", "0.0", "--output", str(out),
                                     "--quiet", "--engine", engine])
        assert result.exit_code == 0, result.output
        outputs[engine] = out
    local_rows = pq.read_table(outputs["local"])
    assert 0 < local_rows.num_rows < pq.read_metadata(mined).num_rows  # the teacher kept some rows, not all
    assert_same_rows(local_rows, pq.read_table(outputs["ray"]))
    if teacher == "bi-encoder":
        engine_entry = json.loads((tmp_path / "ray.parquet.manifest.json").read_text())["engine"]
        assert engine_entry["texts encoded on Ray"] > 0


@pytest.mark.parametrize(("extra", "message"), [
    (["--engine", "ray", "--index", "hnsw"], "--index hnsw is not supported"),
    (["--engine", "ray", "--format", "flagembedding"], "--format flagembedding"),
    (["--engine", "spark"], "--engine 'spark': expected local or ray"),
    (["--ray-address", "auto"], "--ray-address needs --engine ray"),
    (["--engine", "ray", "--ray-workers", "0"], "--ray-workers must be >= 1"),
])
def test_unsupported_ray_options_are_one_line_errors(sample_dir: Path, tmp_path: Path, extra: list[str],
                                                     message: str) -> None:
    args = ["mine", "--queries", str(sample_dir / "queries.parquet"), "--corpus", str(sample_dir / "corpus.parquet"),
            "--qrels", str(sample_dir / "qrels.parquet"), "--output", str(tmp_path / "out.parquet"), "--quiet",
            *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out.parquet").exists()


def test_partitioned_writer_parts_are_the_local_rows_in_order(tmp_path: Path) -> None:
    """Fixed-size parts: read in name order they are the local file's rows, however the chunks were cut."""
    from hnmine.engines.ray import PartitionedWriter

    table = pa.table({"query": [f"q{i}" for i in range(25)], "n": np.arange(25)})
    writer = PartitionedWriter(tmp_path, "labeled-pair", rows_per_part=10)
    for start, end in ((0, 3), (3, 17), (17, 25)):
        writer.write_formatted(table.slice(start, end - start))
    writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-00000.parquet", "part-00001.parquet",
                                                          "part-00002.parquet"]
    assert pq.read_table(tmp_path).to_pydict() == table.to_pydict()


def test_local_engine_never_imports_ray(sample_dir: Path, tmp_path: Path) -> None:
    """Ray is an optional extra: importing hnmine and mining locally must not load it."""
    code = f"""
import sys
import hnmine, hnmine.cli
from typer.testing import CliRunner
d = {str(sample_dir)!r}
r = CliRunner().invoke(hnmine.cli.app, ["mine", "--queries", d + "/queries.parquet", "--corpus",
    d + "/corpus.parquet", "--qrels", d + "/qrels.parquet", "--retriever", "bm25", "--quiet",
    "--output", {str(tmp_path / "out.parquet")!r}])
assert r.exit_code == 0, r.output
loaded = sorted(m for m in sys.modules if m == "ray" or m.startswith(("ray.", "hnmine.engines.ray")))
assert not loaded, loaded
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
