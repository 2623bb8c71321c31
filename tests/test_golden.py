"""Golden outputs: the CLI on sample_data/ must write byte-identical data files from one commit to the next.

Why: refactors (moving modules, a job layer, one engine interface) must not change a single output byte. Each
case below runs ``hnmine`` in process and records the sha256 of every data file it writes (manifests, with
their timestamps and paths, are left out). ``tests/golden/expected.json`` holds the expected digests.

When a change alters outputs ON PURPOSE, regenerate the expected values and say why in the commit message::

    HNMINE_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py

Exact bytes depend on the CPU's floating point paths (e.g. bfloat16 on CPUs with avx512_bf16) and on library
versions. The expected file records the machine it was made on (``platform``). On that platform the test
compares raw file bytes. Elsewhere (another CI runner) it compares a content digest with floats rounded to 4
decimals instead, and skips the cases that encode text (``CPU_DEPENDENT``: default ``--dtype auto``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from hnmine.cli import app

GOLDEN = Path(__file__).resolve().parent / "golden" / "expected.json"
UPDATE = os.environ.get("HNMINE_UPDATE_GOLDEN") == "1"
runner = CliRunner()

WINDOW = ("--num-negatives", "3", "--range-min", "2", "--range-max", "20")
# Cases that run the tiny cross-encoder score every candidate in the window: a narrower one keeps them quick.
CE_WINDOW = ("--num-negatives", "3", "--range-min", "2", "--range-max", "8")

# name -> (mine args after the inputs, output suffix)
# "{ce}" is replaced by the tiny local cross-encoder's path.
MINE_CASES: dict[str, tuple[tuple[str, ...], str]] = {
    "bm25_triplet": (("--retriever", "bm25", *WINDOW), "parquet"),
    "dense_triplet": (("--retriever", "dense", *WINDOW), "parquet"),
    "hybrid_triplet": (("--retriever", "hybrid", *WINDOW), "parquet"),
    "dense_n_tuple": (("--format", "n-tuple", *WINDOW), "parquet"),
    "dense_labeled_pair": (("--format", "labeled-pair", *WINDOW), "parquet"),
    "dense_flagembedding": (("--format", "flagembedding", *WINDOW), "jsonl"),
    "bm25_tevatron": (("--retriever", "bm25", "--format", "tevatron", *WINDOW), "jsonl"),
    "bm25_no_audit": (("--retriever", "bm25", "--no-audit-columns", *WINDOW), "parquet"),
    "bm25_rank_bm25_stopwords": (("--retriever", "bm25", "--bm25-backend", "rank-bm25", "--stopwords", *WINDOW),
                                 "parquet"),
    "cross_encoder_denoise": (("--cross-encoder", "{ce}", "--margin", "0", *CE_WINDOW), "parquet"),
    "retriever_score_filter": (("--max-ratio", "0.95", *WINDOW), "parquet"),
    "simans_zone": (("--zone", "0.3:0.1", "--sampling", "simans", "--seed", "2", *WINDOW), "parquet"),
    "triplet_type_semihard": (("--triplet-type", "semihard", "--triplet-margin", "0.3", "--range-min", "0",
                              ), "parquet"),
    "tiers_gap_split": (("--retriever", "bm25", "--tiers", "gap", "--split-tiers", "--range-min", "0"), "parquet"),
    "strategies": (("--retriever", "bm25", "--sampling", "random", "--seed", "3", "--fill", "random",
                    "--positives-per-query", "1", "--query-clusters", "3", "--tiers", "none"), "parquet"),
    "hidden_positive_probes": (("--retriever", "bm25", "--hide-fraction", "0.5", *WINDOW), "parquet"),
}
# Cases that encode with the default --dtype auto (bfloat16 on CPUs with native bf16, float32 elsewhere): their
# rankings depend on the CPU, so they are compared only on the platform the expected values were recorded on.
# They use the default on purpose: the suite's other CLI tests encode the sample corpus the same way, so the
# session embedding cache makes them cheap.
CPU_DEPENDENT = {name for name, (args, _) in MINE_CASES.items() if "bm25" not in args} | {
    "strategies", "config_round_trip", "denoise_bi-encoder"}  # strategies: --query-clusters encodes queries


def machine() -> str:
    """What decides exact float bytes here: CPU features that pick kernels, and the numeric libraries."""
    import faiss
    import numpy
    import pyarrow
    import torch

    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "fma")
                flags = ",".join(f for f in wanted if f in line.split())
                break
    except OSError:
        pass
    return (f"{platform.machine()} [{flags}] numpy {numpy.__version__} torch {torch.__version__} "
            f"faiss {faiss.__version__} pyarrow {pyarrow.__version__}")


def _rounded(value):
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 4)
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def content_digest(path: Path) -> str:
    """A digest of the rows with floats rounded: equal across machines whose float paths differ in the last bits."""
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        rows = {"columns": table.column_names, "types": [str(t) for t in table.schema.types],
                "rows": _rounded(table.to_pydict())}
    elif path.suffix == ".jsonl":
        rows = {"lines": [_rounded(json.loads(line)) for line in path.read_text().splitlines()]}
    else:
        rows = {"text": path.read_text()}
    return hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()


def digests(paths: list[Path]) -> dict[str, dict[str, str]]:
    return {p.name: {"sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "content": content_digest(p)}
            for p in sorted(paths)}


def data_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_file() and not p.name.endswith(".json")]


def invoke(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


def mine_args(sample_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["mine", "--queries", str(sample_dir / "queries.parquet"), "--corpus", str(sample_dir / "corpus.parquet"),
            "--qrels", str(sample_dir / "qrels.parquet"), "--output", str(out), "--quiet", *extra]


@pytest.fixture(scope="module")
def golden():
    """Expected digests; with HNMINE_UPDATE_GOLDEN=1 the observed ones are collected and written at the end."""
    expected = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {"platform": None, "cases": {}}
    observed: dict[str, dict] = {}
    yield expected, observed
    if UPDATE:
        GOLDEN.parent.mkdir(exist_ok=True)
        cases = {**expected["cases"], **observed}
        GOLDEN.write_text(json.dumps({"platform": machine(), "cases": dict(sorted(cases.items()))}, indent=1)
                          + "\n")


def check(golden, name: str, files: list[Path]) -> None:
    expected, observed = golden
    got = digests(files)
    assert got, f"{name}: no data file written"
    if UPDATE:
        observed[name] = got
        return
    same_machine = expected["platform"] == machine()
    if not same_machine and name in CPU_DEPENDENT:
        pytest.skip("encoder precision depends on this CPU; recorded on another platform")
    want = expected["cases"].get(name)
    assert want is not None, f"{name}: no expected digests; regenerate (see this module's docstring)"
    key = "sha256" if same_machine else "content"
    assert {n: d[key] for n, d in got.items()} == {n: d[key] for n, d in want.items()}, (
        f"{name}: output changed; if on purpose, regenerate (see tests/test_golden.py docstring) and say why")


def test_cases_cover_every_format_and_retriever():
    """A new output layout or retriever needs a golden case, or a refactor could change its bytes unseen."""
    from hnmine.io.writers import FORMATS

    used = {args[i + 1] for args, _ in MINE_CASES.values() for i, a in enumerate(args)
            if a in ("--format", "--retriever")}
    assert set(FORMATS) - {"triplet"} <= used and {"bm25", "dense", "hybrid"} <= used


@pytest.mark.parametrize("name", list(MINE_CASES))
def test_mine_golden(name, golden, sample_dir, tmp_path, tiny_cross_encoder):
    extra, suffix = MINE_CASES[name]
    extra = tuple(a.replace("{ce}", tiny_cross_encoder) for a in extra)
    invoke(mine_args(sample_dir, tmp_path / f"out.{suffix}", *extra))
    check(golden, name, data_files(tmp_path))


def test_pairs_input_golden(golden, sample_dir, tmp_path):
    out = tmp_path / "out.parquet"
    invoke(["mine", "--pairs", str(sample_dir / "pairs.parquet"), "--output", str(out), "--quiet",
            "--retriever", "bm25", *WINDOW])
    check(golden, "pairs_input", data_files(tmp_path))


def test_config_round_trip_golden(golden, sample_dir, tmp_path, tiny_cross_encoder):
    """--print-config of a flag-built pipeline, then --config of that file: the same data as the flags."""
    flags = ("--retriever", "hybrid", "--cross-encoder", tiny_cross_encoder, "--max-ratio", "0.99",
             "--tiers", "gap", *CE_WINDOW)
    toml = invoke(mine_args(sample_dir, tmp_path / "unused.parquet", "--print-config", *flags))
    (tmp_path / "cfg").mkdir()
    config = tmp_path / "cfg" / "pipeline.toml"
    config.write_text(toml.replace(tiny_cross_encoder, "TINY_CE"))  # the path differs between runs
    by_config = tmp_path / "by_config"
    by_config.mkdir()
    config_run = tmp_path / "cfg" / "run.toml"
    config_run.write_text(toml)
    invoke(mine_args(sample_dir, by_config / "out.parquet", "--config", str(config_run)))
    by_flags = tmp_path / "by_flags"
    by_flags.mkdir()
    invoke(mine_args(sample_dir, by_flags / "out.parquet", *flags))
    assert (by_config / "out.parquet").read_bytes() == (by_flags / "out.parquet").read_bytes()
    check(golden, "config_round_trip", [config, by_config / "out.parquet"])


@pytest.mark.parametrize("teacher", ["cross-encoder", "bi-encoder"])
def test_denoise_golden(teacher, golden, sample_dir, tmp_path, tiny_cross_encoder):
    mined = tmp_path / "mined" / "t.parquet"
    mined.parent.mkdir()
    invoke(mine_args(sample_dir, mined, "--retriever", "bm25", *WINDOW))
    out_dir = tmp_path / "denoised"
    out_dir.mkdir()
    scorer = (["--cross-encoder", tiny_cross_encoder, "--margin", "0"] if teacher == "cross-encoder"
              else ["--scorer", "bi-encoder:all-MiniLM-L6-v2", "--max-score", "0.5"])
    invoke(["denoise", str(mined), "--output", str(out_dir / "kept.parquet"), "--quiet", *scorer])
    check(golden, f"denoise_{teacher}", data_files(out_dir))
