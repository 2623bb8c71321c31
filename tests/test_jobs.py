"""The job layer from Python: the same bytes as the CLI, and the checks that come before any work."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hnmine import InputError
from hnmine.cli import app
from hnmine.io.inputs import InputFiles
from hnmine.jobs.denoise import DenoiseJob, denoise
from hnmine.jobs.mine import MineJob, mine
from hnmine.recipe import MineOptions

runner = CliRunner()


def sample_inputs(sample_dir: Path) -> InputFiles:
    return InputFiles(queries=sample_dir / "queries.parquet", corpus=sample_dir / "corpus.parquet",
                      qrels=sample_dir / "qrels.parquet")


def cli(*args: str) -> None:
    result = runner.invoke(app, [*args, "--quiet"])
    assert result.exit_code == 0, result.output


def test_mine_from_python_writes_the_cli_bytes(sample_dir: Path, tmp_path: Path) -> None:
    by_cli, by_python = tmp_path / "cli.parquet", tmp_path / "py.parquet"
    cli("mine", "--queries", str(sample_dir / "queries.parquet"), "--corpus", str(sample_dir / "corpus.parquet"),
        "--qrels", str(sample_dir / "qrels.parquet"), "--output", str(by_cli), "--retriever", "bm25",
        "--num-negatives", "3", "--sampling", "random", "--seed", "7", "--zone", "5:5", "--split-tiers")
    options = MineOptions(retriever="bm25", num_negatives=3, sampling="random", seed=7)
    options.zone = "5:5"  # type: ignore[assignment]  # parsed as the pipeline is built, as --zone is
    result = mine(MineJob(by_python, options, split_tiers=True), sample_inputs(sample_dir))
    assert result.output == by_python and by_python.read_bytes() == by_cli.read_bytes()
    assert result.tier_files
    assert sorted(p.name.replace("py.", "cli.") for p in result.tier_files) == sorted(
        p.name for p in tmp_path.glob("cli.*.parquet"))
    for tier_file in result.tier_files:
        assert tier_file.read_bytes() == tier_file.with_name(tier_file.name.replace("py.", "cli.")).read_bytes()
    written = json.loads((tmp_path / "py.parquet.manifest.json").read_text())
    assert written["counts"] == result.manifest["counts"]
    assert result.report.rows_written == written["counts"]["rows_written"] > 0
    assert written["pipeline"] == json.loads((tmp_path / "cli.parquet.manifest.json").read_text())["pipeline"]


def test_mine_checks_the_output_and_options_before_reading_any_data(tmp_path: Path) -> None:
    out = tmp_path / "o.parquet"
    out.write_bytes(b"keep")
    missing = InputFiles(queries=tmp_path / "missing.parquet")  # reading it would fail differently
    with pytest.raises(InputError, match="already exists"):
        mine(MineJob(out), missing)
    with pytest.raises(InputError, match="--include-positives needs --format n-tuple"):
        mine(MineJob(tmp_path / "new.parquet", MineOptions(include_positives=True)), missing)
    with pytest.raises(InputError, match="--zone"):
        options = MineOptions()
        options.zone = "nonsense"  # type: ignore[assignment]
        mine(MineJob(tmp_path / "new.parquet", options), missing)
    assert out.read_bytes() == b"keep" and not (tmp_path / "new.parquet").exists()


def test_mine_from_python_warns_instead_of_printing(sample_dir: Path, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    queries = pq.read_table(sample_dir / "queries.parquet")
    extra = pa.table({name: [f"lonely {name}"] for name in queries.column_names})
    pq.write_table(pa.concat_tables([queries, extra.cast(queries.schema)]), tmp_path / "queries.parquet")
    inputs = sample_inputs(sample_dir)
    inputs.queries = tmp_path / "queries.parquet"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mine(MineJob(tmp_path / "o.parquet", MineOptions(retriever="bm25")), inputs)
    assert any("skipping 1 queries with no positive" in str(w.message) for w in caught)


def test_denoise_from_python_writes_the_cli_bytes(sample_dir: Path, tmp_path: Path, tiny_cross_encoder: str) -> None:
    mined = tmp_path / "mined.parquet"
    mine(MineJob(mined, MineOptions(retriever="bm25", num_negatives=3)), sample_inputs(sample_dir))
    by_cli, by_python = tmp_path / "cli.parquet", tmp_path / "py.parquet"
    cli("denoise", str(mined), "--output", str(by_cli), "--cross-encoder", tiny_cross_encoder, "--margin", "0")
    result = denoise(DenoiseJob(mined, by_python, f"cross-encoder:{tiny_cross_encoder}", margin=0.0))
    assert by_python.read_bytes() == by_cli.read_bytes()
    assert result.rows_in >= result.rows_kept == result.manifest["counts"]["rows_written"]
    assert result.pairs_scored is not None and result.pairs_scored > 0


def test_an_interrupted_denoise_resumes_to_the_same_bytes(sample_dir: Path, tmp_path: Path, tiny_cross_encoder: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from hnmine.engines.local import LocalEngine

    mined = tmp_path / "mined.parquet"
    mine(MineJob(mined, MineOptions(retriever="bm25", num_negatives=3)), sample_inputs(sample_dir))

    def job(out: Path) -> DenoiseJob:
        return DenoiseJob(mined, out, f"cross-encoder:{tiny_cross_encoder}", margin=0.0, chunk_size=2)

    straight = tmp_path / "straight.parquet"
    denoise(job(straight))
    real = LocalEngine.score_pairs
    calls: list[int] = []
    interrupt_at = {"call": 2}

    def score_pairs(self: LocalEngine, scorer, pairs):
        calls.append(len(pairs))
        if len(calls) == interrupt_at["call"]:
            raise KeyboardInterrupt
        return real(self, scorer, pairs)

    monkeypatch.setattr(LocalEngine, "score_pairs", score_pairs)
    resumed = tmp_path / "resumed.parquet"
    with pytest.raises(KeyboardInterrupt):
        denoise(job(resumed))
    partial = tmp_path / ".resumed.parquet.partial"
    assert not resumed.exists() and partial.is_dir()  # the first chunk's scores are kept
    calls.clear()
    interrupt_at["call"] = 0
    result = denoise(job(resumed))
    assert resumed.read_bytes() == straight.read_bytes()
    chunks = -(-result.report.queries // 2)
    assert len(calls) == chunks - 1 > 0  # every chunk but the first was scored again
    assert not partial.exists()
    assert result.manifest["counts"]["rows_written"] == json.loads(
        (tmp_path / "straight.parquet.manifest.json").read_text())["counts"]["rows_written"]
