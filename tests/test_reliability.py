"""Bad input and interrupted runs through the CLI: one line, a non-zero exit, and nothing half-written.

Complements test_io.py (loader messages) and test_cli.py (bad options): every case here goes through
``hnmine mine`` and checks what is left in the output folder afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from hnmine.cli import app
from hnmine.errors import InputError
from hnmine.pipeline import Pipeline
from tests.conftest import REPO

runner = CliRunner()

TOPICS = ["rain clouds water", "magnets iron spin", "volcano lava rock", "protein cell membrane"]


def write(path: Path, **columns) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def make_inputs(folder: Path, n_docs: int = 30, positives: dict[str, list[str]] | None = None,
                scores: list[int] | None = None) -> tuple[Path, Path, Path]:
    """Three queries over a small corpus; ``positives`` maps query id to doc ids (default: one each)."""
    folder.mkdir(exist_ok=True)
    q = write(folder / "queries.parquet", query_id=["q1", "q2", "q3"],
              query=["why does rain fall from clouds", "how do magnets attract iron", "what is lava made of"])
    c = write(folder / "corpus.parquet", doc_id=[f"d{i}" for i in range(n_docs)],
              text=[f"document {i} on {TOPICS[i % len(TOPICS)]} number {i}" for i in range(n_docs)])
    positives = positives if positives is not None else {"q1": ["d0"], "q2": ["d1"], "q3": ["d2"]}
    pairs = [(qid, d) for qid, docs in positives.items() for d in docs]
    columns: dict = {"query_id": [p[0] for p in pairs], "doc_id": [p[1] for p in pairs]}
    if scores is not None:
        columns["score"] = scores
    r = write(folder / "qrels.parquet", **columns)
    return q, c, r


def mine(inputs: tuple[Path, Path, Path], out: Path, *extra: str):
    q, c, r = inputs
    args = ["mine", "--queries", str(q), "--corpus", str(c), "--qrels", str(r), "--retriever", "bm25",
            "--range-min", "0", "--range-max", "10", "--num-negatives", "3", "--output", str(out), "--quiet", *extra]
    return runner.invoke(app, args)


def leftovers(out: Path) -> list[str]:
    """Anything the run left beside the output: temp files (``.NAME.*.tmp``) or a checkpoint folder."""
    return sorted(p.name for p in out.parent.glob(f".{out.name}*"))


def assert_failed_cleanly(result, out: Path, message: str, code: int = 2) -> None:
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    assert message in errors[0], result.output
    assert "Traceback" not in result.output
    assert not out.exists()
    assert leftovers(out) == []


# Queries without a positive --------------------------------------------------------------------------------


def test_query_without_positive_is_skipped_with_a_warning(tmp_path):
    out = tmp_path / "t.parquet"
    result = mine(make_inputs(tmp_path / "in", positives={"q1": ["d0"], "q2": ["d1"]}), out)
    assert result.exit_code == 0, result.output
    assert "warning: skipping 1 queries with no positive" in result.output
    assert set(pq.read_table(out).column("query_id").to_pylist()) == {"q1", "q2"}
    manifest = json.loads((tmp_path / "t.parquet.manifest.json").read_text())
    assert manifest["counts"]["queries_skipped_no_positive"] == ["q3"]
    assert leftovers(out) == []


def test_query_without_positive_fails_with_strict(tmp_path):
    out = tmp_path / "t.parquet"
    result = mine(make_inputs(tmp_path / "in", positives={"q1": ["d0"], "q2": ["d1"]}), out, "--strict")
    assert_failed_cleanly(result, out, "1 queries have no positive in the qrels (first: 'q3')")


def test_qrels_judging_every_query_non_relevant_is_an_error_not_a_crash(tmp_path):
    """Every query skipped used to reach ``positive_counts.max()`` on an empty array (a ValueError traceback)."""
    out = tmp_path / "t.parquet"
    result = mine(make_inputs(tmp_path / "in", scores=[0, 0, 0]), out)
    assert_failed_cleanly(result, out, "none of the 3 queries has a positive")


# Corpus too small ------------------------------------------------------------------------------------------


def test_corpus_smaller_than_num_negatives(tmp_path):
    out = tmp_path / "t.parquet"
    result = mine(make_inputs(tmp_path / "in", n_docs=4), out, "--num-negatives", "5")
    assert_failed_cleanly(result, out, "the corpus has 4 documents: too few to mine 5 negatives per query")


def test_corpus_just_large_enough_gives_every_query_all_its_negatives(tmp_path):
    out = tmp_path / "t.parquet"
    result = mine(make_inputs(tmp_path / "in", n_docs=6), out, "--num-negatives", "5")
    assert result.exit_code == 0, result.output
    rows = pq.read_table(out).to_pydict()
    per_query = {q: rows["query_id"].count(q) for q in ("q1", "q2", "q3")}
    assert per_query == {"q1": 5, "q2": 5, "q3": 5}


# --zone ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("zone", ["abc", "0.3", "1:2:3", ":", "0.3;0.05", "0.3:x", "0.3:"])
def test_malformed_zone(tmp_path, zone):
    out = tmp_path / "t.parquet"
    result = mine(make_inputs(tmp_path / "in"), out, f"--zone={zone}")
    assert_failed_cleanly(result, out, f"--zone {zone!r}: expected LOW:HIGH")


@pytest.mark.parametrize("zone,message", [("-1:0.5", "must be >= 0"), ("0.3:-0.5", "is empty")])
def test_empty_zone(tmp_path, zone, message):
    out = tmp_path / "t.parquet"
    result = mine(make_inputs(tmp_path / "in"), out, f"--zone={zone}")
    assert_failed_cleanly(result, out, message)


def test_error_messages_keep_their_square_brackets(tmp_path):
    out = tmp_path / "t.parquet"
    result = mine(make_inputs(tmp_path / "in"), out, "--zone=0.2:-0.5")
    assert "[p-0.2, p-0.5]" in result.output, result.output


@pytest.mark.parametrize("zone", ["nan:0.1", "0.3:nan"])
def test_nan_zone_is_refused(tmp_path, zone):
    out = tmp_path / "t.parquet"
    result = mine(make_inputs(tmp_path / "in"), out, f"--zone={zone}")
    assert_failed_cleanly(result, out, "--zone")


# Output path -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_directory_as_output(tmp_path, overwrite):
    out = tmp_path / "out.parquet"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    result = mine(make_inputs(tmp_path / "in"), out, *overwrite)
    assert result.exit_code == 2, result.output
    assert "is a directory" in result.output and "Traceback" not in result.output
    assert out.is_dir() and (out / "keep.txt").read_text() == "x"
    assert leftovers(out) == []


def test_existing_output_without_overwrite_keeps_its_bytes(tmp_path):
    out = tmp_path / "t.parquet"
    out.write_bytes(b"precious \x00 bytes")
    result = mine(make_inputs(tmp_path / "in"), out)
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert out.read_bytes() == b"precious \x00 bytes"
    assert leftovers(out) == []


@pytest.mark.parametrize("exc,code", [(InputError("chunk went wrong"), 2), (KeyboardInterrupt(), 130)])
def test_run_failing_midway_with_overwrite_keeps_the_old_file(tmp_path, monkeypatch, exc, code):
    """--overwrite replaces the file only when the new one is complete."""
    out = tmp_path / "t.parquet"
    out.write_bytes(b"old output")
    real = Pipeline.run_chunk
    calls = []

    def failing(self, data, queries):
        calls.append(1)
        if len(calls) == 2:
            raise exc
        return real(self, data, queries)

    monkeypatch.setattr(Pipeline, "run_chunk", failing)
    result = mine(make_inputs(tmp_path / "in"), out, "--overwrite", "--chunk-size", "1", "--no-resume")
    assert result.exit_code == code, result.output
    assert len(calls) == 2
    assert out.read_bytes() == b"old output"
    assert leftovers(out) == []


# Text that is not clean ------------------------------------------------------------------------------------


def invalid_utf8(values: list[bytes]) -> pa.Array:
    """A string column holding bytes that are not UTF-8, as a buggy writer produces; skip if pyarrow refuses."""
    try:
        return pa.array(values, pa.binary()).view(pa.string())
    except (pa.ArrowInvalid, NotImplementedError) as exc:  # pragma: no cover - depends on the pyarrow version
        pytest.skip(f"pyarrow will not build an invalid UTF-8 string column: {exc}")


@pytest.mark.parametrize("file,column", [("corpus", "text"), ("corpus", "doc_id"), ("queries", "query"),
                                         ("queries", "query_id"), ("qrels", "doc_id")])
def test_non_utf8_bytes_in_a_string_column(tmp_path, file, column):
    q, c, r = make_inputs(tmp_path / "in")
    path = {"queries": q, "corpus": c, "qrels": r}[file]
    table = pq.read_table(path)
    values = [v.encode() for v in table.column(column).to_pylist()]
    values[1] = values[1] + b" \xff\xfe"
    table = table.set_column(table.column_names.index(column), column, invalid_utf8(values))
    try:
        pq.write_table(table, path)
    except (pa.ArrowInvalid, OSError) as exc:  # pragma: no cover - depends on the pyarrow version
        pytest.skip(f"pyarrow will not write invalid UTF-8: {exc}")
    out = tmp_path / "t.parquet"
    result = mine((q, c, r), out)
    assert_failed_cleanly(result, out, f"{path}: column '{column}' holds")
    assert "not valid UTF-8" in result.output


def test_non_utf8_bytes_in_pairs_file(tmp_path):
    p = tmp_path / "p.parquet"
    pq.write_table(pa.table({"anchor": ["a question", "another one"],
                             "positive": invalid_utf8([b"fine answer", b"broken \xc3\x28 answer"])}), p)
    out = tmp_path / "t.parquet"
    result = runner.invoke(app, ["mine", "--pairs", str(p), "--retriever", "bm25", "--output", str(out), "--quiet"])
    assert_failed_cleanly(result, out, "column 'positive' holds text that is not valid UTF-8")


def beir_folder(root: Path, corpus: bytes, qrels: bytes = b"query-id\tcorpus-id\tscore\n1\td1\t1\n") -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_bytes(corpus)
    (root / "queries.jsonl").write_bytes(b'{"_id": "1", "text": "what is one?"}\n')
    (root / "qrels" / "train.tsv").write_bytes(qrels)
    return root


GOOD_CORPUS = b'{"_id": "d1", "text": "one"}\n{"_id": "d2", "text": "two"}\n{"_id": "d3", "text": "three"}\n'


@pytest.mark.parametrize("corpus,qrels,message", [
    (b'{"_id": "d1", "text": "one"}\n{"_id": "d2", "text": "t\xffwo"}\n', None,
     "corpus.jsonl: line 2 is not valid UTF-8"),
    (GOOD_CORPUS, b"query-id\tcorpus-id\tscore\n1\td1\t1\n1\td2\t\xff1\n", "train.tsv: line 3 is not valid UTF-8"),
    (b'{"_id": "d1", "text": "one"}\n{"text": "no id"}\n', None, "line 2 is not a JSON object with an '_id'"),
    (b'{"_id": "d1", "text": "one"}\n["a", "list"]\n', None, "line 2 is not a JSON object with an '_id'"),
    (b'{"_id": "d1", "text": "one"}\n{"_id": "d2", "text": 5}\n', None, "line 2: field 'text' is a JSON int"),
])
def test_malformed_beir_folder(tmp_path, corpus, qrels, message):
    """These used to end in a UnicodeDecodeError / KeyError / TypeError / ArrowTypeError traceback."""
    root = beir_folder(tmp_path / "beir", corpus, *([qrels] if qrels else []))
    out = tmp_path / "t.parquet"
    result = runner.invoke(app, ["mine", "--beir", str(root), "--retriever", "bm25", "--num-negatives", "1",
                                 "--range-min", "0", "--range-max", "1", "--output", str(out), "--quiet"])
    assert_failed_cleanly(result, out, message)


NASTY = ["nul\x00byte and \x01\x02 control \x1b[31m escape rain", "!!!", "line\u2028separator\x85nel\r\ncrlf rain",
         "[bold red]markup[/] rain", "rtl \u202e reversed rain", "rain " * 50_000]


@pytest.mark.parametrize("fmt", ["triplet", "flagembedding"])
def test_control_characters_and_very_long_texts_round_trip(tmp_path, fmt):
    folder = tmp_path / "in"
    q, c, r = make_inputs(folder, n_docs=20)
    table = pq.read_table(c).to_pydict()
    table["text"][4:4 + len(NASTY)] = NASTY
    write(c, **table)
    write(q, query_id=["q1", "q2", "q3"], query=["rain?", "???", "\x00 rain \u2028 clouds"])
    out = tmp_path / ("t.jsonl" if fmt == "flagembedding" else "t.parquet")
    result = mine((q, c, r), out, "--format", fmt)
    assert result.exit_code == 0, result.output
    texts = set(table["text"])
    if fmt == "flagembedding":
        lines = out.read_bytes().split(b"\n")
        assert lines[-1] == b"" and len(lines) == 4  # one record per line, whatever the texts hold
        assert len(out.read_text(encoding="utf-8").splitlines()) == 3  # U+2028 / U+0085 escaped, not raw
        negatives = [n for line in lines[:-1] for n in json.loads(line)["neg"]]
    else:
        negatives = pq.read_table(out).column("negative").to_pylist()
    assert negatives and set(negatives) <= texts
    assert set(negatives) & set(NASTY)  # the odd texts were retrieved and written back unchanged


# Determinism -----------------------------------------------------------------------------------------------


def sample_args(sample_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["mine", "--queries", str(sample_dir / "queries.parquet"), "--corpus", str(sample_dir / "corpus.parquet"),
            "--qrels", str(sample_dir / "qrels.parquet"), "--retriever", "bm25", "--output", str(out), "--quiet",
            *extra]


def test_simans_same_seed_is_byte_identical(sample_dir, tmp_path):
    runs = {}
    for name, seed in (("a", "11"), ("b", "11"), ("c", "12")):
        out = tmp_path / f"{name}.parquet"
        result = runner.invoke(app, sample_args(sample_dir, out, "--sampling", "simans", "--seed", seed))
        assert result.exit_code == 0, result.output
        runs[name] = out.read_bytes()
    assert runs["a"] == runs["b"]
    assert runs["a"] != runs["c"]  # the seed does reach the sampler


def test_interrupted_then_resumed_run_is_byte_identical(tmp_path, monkeypatch):
    """Ctrl-C keeps finished chunks; the rerun reads them back. Texts hold line separators (U+2028, U+0085),
    which must survive the checkpoint's jsonl round trip."""
    folder = tmp_path / "in"
    q, c, r = make_inputs(folder, n_docs=20)
    table = pq.read_table(c).to_pydict()
    table["text"] = [f"{t} \u2028 part two \x85 part three" for t in table["text"]]
    write(c, **table)
    reference = tmp_path / "reference.jsonl"
    extra = ("--format", "flagembedding", "--chunk-size", "1")
    assert mine((q, c, r), reference, *extra, "--no-resume").exit_code == 0

    out = tmp_path / "t.jsonl"
    real = Pipeline.run_chunk
    calls = []

    def interrupted(self, data, queries):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, data, queries)

    monkeypatch.setattr(Pipeline, "run_chunk", interrupted)
    result = mine((q, c, r), out, *extra)
    assert result.exit_code == 130 and "interrupted" in result.output
    assert not out.exists() and leftovers(out) == [".t.jsonl.partial"]
    monkeypatch.setattr(Pipeline, "run_chunk", real)
    result = runner.invoke(app, ["mine", "--queries", str(q), "--corpus", str(c), "--qrels", str(r), "--retriever",
                                 "bm25", "--range-min", "0", "--range-max", "10", "--num-negatives", "3",
                                 "--output", str(out), *extra])
    assert result.exit_code == 0, result.output
    assert "resumed: 2 finished chunks" in result.output
    assert out.read_bytes() == reference.read_bytes()
    assert leftovers(out) == []


# Ctrl-C on a real process ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_workload(sample_dir, tmp_path_factory) -> tuple[Path, Path, Path]:
    """The sample queries repeated 20 times under new ids: long enough at --chunk-size 1 to interrupt."""
    folder = tmp_path_factory.mktemp("big")
    queries = pq.read_table(sample_dir / "queries.parquet").to_pydict()
    qrels = pq.read_table(sample_dir / "qrels.parquet").to_pydict()
    copies = range(20)
    q = write(folder / "queries.parquet", query_id=[f"{i}#{k}" for k in copies for i in queries["query_id"]],
              query=[t for _ in copies for t in queries["query"]])
    r = write(folder / "qrels.parquet", query_id=[f"{i}#{k}" for k in copies for i in qrels["query_id"]],
              doc_id=[d for _ in copies for d in qrels["doc_id"]])
    return q, sample_dir / "corpus.parquet", r


# `python -m hnmine` with every chunk slowed (by $SLOW_CHUNK_S, default 20 ms): the run is certainly still in its
# chunk loop when the signal arrives, however fast the machine, so a test does not race the run's end. Ctrl-C
# gets Python's usual handler even when the test runner was started in the background (`cmd &` in a script),
# where SIGINT is inherited as ignored.
SLOW_CHUNKS_HNMINE = """
import os, signal, time
signal.signal(signal.SIGINT, signal.default_int_handler)
import hnmine.pipeline
run_chunk = hnmine.pipeline.Pipeline.run_chunk
def slow_run_chunk(self, *args, **kwargs):
    time.sleep(float(os.environ.get("SLOW_CHUNK_S", "0.02")))
    return run_chunk(self, *args, **kwargs)
hnmine.pipeline.Pipeline.run_chunk = slow_run_chunk
from hnmine.cli import main
main()
"""


@pytest.mark.parametrize("resume", ["--no-resume", "--resume"])
def test_sigint_mid_run_leaves_no_output_and_no_temp_file(big_workload, tmp_path, resume):
    q, c, r = big_workload
    out = tmp_path / "t.parquet"
    cmd = [sys.executable, "-c", SLOW_CHUNKS_HNMINE, "mine", "--queries", str(q), "--corpus", str(c), "--qrels",
           str(r), "--retriever", "bm25", "--chunk-size", "1", "--output", str(out), "--quiet", resume]

    def writing() -> bool:
        """A chunk reached the output: the temp file has bytes, or (--resume) a chunk was checkpointed."""
        return (any(p.stat().st_size > 0 for p in tmp_path.glob(".t.parquet.*.tmp"))
                or any(tmp_path.glob(".t.parquet.partial/chunk-*.json")))

    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline and not writing():
            time.sleep(0.005)
        assert proc.poll() is None, f"the run ended (rc={proc.returncode}) before it could be interrupted"
        assert time.monotonic() < deadline, "the run never started writing"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert stderr.strip().count("\n") == 0
    assert not out.exists() and not (tmp_path / "t.parquet.manifest.json").exists()
    assert not list(tmp_path.rglob("*.tmp"))
    if resume == "--no-resume":
        assert leftovers(out) == []
    else:  # finished chunks are kept for the rerun, each one complete
        assert leftovers(out) == [".t.parquet.partial"]
        partial = tmp_path / ".t.parquet.partial"
        counts = sorted(partial.glob("chunk-*.json"))
        assert counts, "no chunk was checkpointed before the interrupt"
        assert all(p.with_suffix(".parquet").exists() for p in counts)


def test_sigkill_mid_run_then_rerun_equals_an_uninterrupted_run(big_workload, tmp_path):
    """A killed process (no chance to clean up) resumes from its finished chunks to the same bytes."""
    q, c, r = big_workload
    out, reference = tmp_path / "t.parquet", tmp_path / "ref.parquet"

    def cmd(target: Path) -> list[str]:
        return [sys.executable, "-m", "hnmine", "mine", "--queries", str(q), "--corpus", str(c), "--qrels", str(r),
                "--retriever", "bm25", "--sampling", "random", "--seed", "7", "--chunk-size", "64",
                "--output", str(target), "--quiet"]

    slow = [sys.executable, "-c", SLOW_CHUNKS_HNMINE, *cmd(out)[3:]]  # 38 chunks of 0.2 s or more each
    proc = subprocess.Popen(slow, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "SLOW_CHUNK_S": "0.2"})
    partial = tmp_path / ".t.parquet.partial"
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline and len(list(partial.glob("chunk-*.json"))) < 3:
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not out.exists() and len(list(partial.glob("chunk-*.json"))) >= 3
    done = subprocess.run(cmd(out), cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    subprocess.run(cmd(reference), cwd=REPO, check=True, capture_output=True)
    assert out.read_bytes() == reference.read_bytes()
    assert not partial.exists()
