"""Every file hnmine writes follows the umask, like any file a tool writes (issue #15, item 2).

A temporary file made by ``tempfile.mkstemp`` is 0600 whatever the umask, and the rename onto the output keeps
that mode, so a training job running as another user could not read the negatives. These tests write every kind
of output (Parquet, jsonl, manifest, eval report and plots, caches, directory outputs) under umask 022 and 077.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hnmine.cli import app
from hnmine.io.cache_files import sidecar, write_entry
from hnmine.io.writers import atomic_dir, atomic_path

runner = CliRunner()


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


def test_helpers_follow_the_umask(tmp_path, umask):
    with atomic_path(tmp_path / "f.bin") as tmp:
        tmp.write_bytes(b"x")
    with atomic_dir(tmp_path / "d") as tmp:
        (tmp / "part.bin").write_bytes(b"x")
    write_entry(tmp_path / "cache" / "e.npy", lambda f: np.save(f, np.zeros(3, np.float32)), {})
    assert mode(tmp_path / "f.bin") == 0o666 & ~umask
    assert mode(tmp_path / "d") == 0o777 & ~umask
    assert mode(tmp_path / "cache" / "e.npy") == 0o666 & ~umask
    assert mode(sidecar(tmp_path / "cache" / "e.npy")) == 0o666 & ~umask
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary left behind"


def test_every_cli_output_follows_the_umask(sample_dir, tmp_path, umask):
    out, cache = tmp_path / "out", tmp_path / "cache"
    out.mkdir()
    inputs = ["--queries", str(sample_dir / "queries.parquet"), "--corpus", str(sample_dir / "corpus.parquet"),
              "--qrels", str(sample_dir / "qrels.parquet")]
    for name, fmt in (("t.parquet", "triplet"), ("t.jsonl", "flagembedding")):
        result = runner.invoke(app, ["mine", *inputs, "--retriever", "bm25", "--format", fmt, "--quiet",
                                     "--cache-dir", str(cache), "--output", str(out / name)])
        assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["eval", str(out / "t.parquet"), "--qrels", str(sample_dir / "qrels.parquet"),
                                 "--report", str(out / "report"), "--json", str(out / "metrics.json")])
    assert result.exit_code == 0, result.output

    written = files_under(out) + files_under(cache)
    names = {p.name for p in written}
    assert {"t.parquet", "t.parquet.manifest.json", "t.jsonl", "t.jsonl.manifest.json", "report.md",
            "metrics.json"} <= names
    assert any(p.suffix == ".png" for p in written), "eval report plots"
    assert any(p.suffix == ".npz" for p in files_under(cache)), "BM25 index cache"
    assert {p.name: oct(mode(p)) for p in written} == {p.name: oct(0o666 & ~umask) for p in written}
