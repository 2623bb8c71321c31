"""Resumable runs: each finished chunk is kept on disk until the whole output is published.

A mining run inside a scheduler can be killed at any time. Finished chunks live in a hidden folder next to
the output (``.NAME.partial/``), keyed by a fingerprint of everything that can change the result (see
``run_fingerprint``); a rerun with the same fingerprint reads them back instead of recomputing, and the final
file is assembled from the same formatted chunks in the same order, so it is byte-identical to an
uninterrupted run's. A different fingerprint (changed input, option, model or embeddings file) discards the
folder. A damaged folder is repaired, never fatal: a chunk whose files are missing, unreadable or do not
match the checksum saved with them is recomputed; a folder whose state cannot be read is started afresh.

Only one run may write an output at a time: ``OutputLock`` holds an exclusive lock on ``.NAME.lock`` for the
whole run, and a second run on the same ``--output`` stops at once with one line naming the first.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from hnmine.errors import InputError
from hnmine.io.writers import atomic_path


def fingerprint(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def update_texts(h: Any, values: list[str]) -> None:
    h.update(len(values).to_bytes(8, "little"))
    for value in values:
        raw = value.encode("utf-8", "surrogatepass")
        h.update(len(raw).to_bytes(8, "little"))
        h.update(raw)


def data_digest(data: Any) -> str:
    """The mined data itself: ids, texts (titles joined in), positives.

    Hashing what was *read* rather than the files covers every way the same files can give other data:
    column options (``--title-column``, ``--text-column``), a BEIR folder's files, a pairs file's corpus.
    """
    h = hashlib.sha256(b"hnmine-data-v1")
    for values in (data.query_ids, data.query_texts, data.doc_ids, data.doc_texts):
        # A corpus left on Ray workers is hashed there, shard by shard (ShardedCorpus.content_digest)
        digest = getattr(values, "content_digest", None)
        h.update(digest.encode()) if digest is not None else update_texts(h, values)
    h.update(data.positive_offsets.astype("<i8").tobytes())
    h.update(data.positive_docs.astype("<i4").tobytes())
    return h.hexdigest()


def path_digest(value: str) -> str | None:
    """What a path-valued option points at: a file's SHA-256, a folder's files (name, size, mtime)."""
    from hnmine.engines.encoder import model_fingerprint, resolve_model

    path = Path(value).expanduser()
    if path.is_file():
        from hnmine.io.cache_files import file_sha256

        return f"sha256:{file_sha256(path)}"
    if path.is_dir():
        return f"dir:{model_fingerprint(str(path))}"
    resolved = resolve_model(value)  # the bundled model answers to its hub name
    return f"dir:{model_fingerprint(resolved)}" if resolved != value and Path(resolved).is_dir() else None


# Stage options that name a file or folder whose contents shape the result.
PATH_OPTIONS = ("model", "corpus_embeddings", "query_embeddings", "load_index")


def _path_values(options: dict[str, Any], found: dict[str, str]) -> None:
    for key, value in options.items():
        if isinstance(value, dict):
            _path_values(value, found)
        elif key in PATH_OPTIONS and isinstance(value, str) and value:
            digest = path_digest(value)
            if digest is not None:
                found[value] = digest


def run_fingerprint(data: Any, pipeline: Any, extra: dict[str, Any]) -> str:
    """Everything that can change a run's output: the data as read, every stage option, and the contents of
    every file or folder a stage option names (models, cross-encoders, precomputed embeddings, FAISS indexes)."""
    from hnmine.config import pipeline_to_toml
    from hnmine.stage import stage_options

    files: dict[str, str] = {}
    for stage in pipeline.stages:
        _path_values(stage_options(stage), files)
    return fingerprint({"data": data_digest(data), "pipeline": pipeline_to_toml(pipeline), "files": files, **extra})


class OutputLock:
    """An exclusive, non-blocking lock on ``.NAME.lock`` beside the output, held for the whole run.

    ``flock`` is released by the kernel when the process dies, so a killed run never leaves a stale lock; the
    file itself is removed on a clean exit. Checked again after locking, because a run that is finishing
    removes the file: a lock on a removed file would protect nothing.
    """

    def __init__(self, output: Path) -> None:
        self.path = output.parent / f".{output.name}.lock"
        self._fd: int | None = None

    def __enter__(self) -> OutputLock:
        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                holder = ""
                with contextlib.suppress(OSError, ValueError):
                    holder = f" (pid {int(self.path.read_text().strip())})"
                raise InputError(f"output {output_of(self.path)}: another hnmine run{holder} is writing it; wait "
                                 "for that run to finish or choose another --output") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self._fd = fd
                return self
            os.close(fd)
        raise InputError(f"output {output_of(self.path)}: could not lock {self.path}")

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self._fd)
            self._fd = None


def output_of(lock_path: Path) -> Path:
    return lock_path.with_name(lock_path.name[1:-len(".lock")])


class ChunkCheckpoint:
    def __init__(self, output: Path, fingerprint: str, enabled: bool = True) -> None:
        self.dir = output.parent / f".{output.name}.partial"
        self.fingerprint = fingerprint
        self.enabled = enabled
        self.resumed_chunks = 0
        self.repaired_chunks = 0
        self._opened = False

    def _state_file(self) -> Path:
        return self.dir / "state.json"

    def _open(self, create: bool) -> None:
        """Discard a folder left by a run with other inputs or options (or damaged); create one when saving."""
        if not self._opened and (self.dir.exists() or self.dir.is_symlink()):
            if not self.dir.is_dir() or self.dir.is_symlink():
                self.dir.unlink()  # a plain file (or link) under the checkpoint's hidden name is damage
            else:
                try:
                    state = json.loads(self._state_file().read_text())
                except (OSError, ValueError):
                    state = {}
                if not isinstance(state, dict) or state.get("fingerprint") != self.fingerprint:
                    shutil.rmtree(self.dir)
        self._opened = True
        if create and not self.dir.exists():
            self.dir.mkdir()
            with atomic_path(self._state_file()) as tmp:
                tmp.write_text(json.dumps({"fingerprint": self.fingerprint}))

    def _paths(self, chunk: int) -> tuple[Path, Path, Path]:
        stem = self.dir / f"chunk-{chunk:07d}"
        return stem.with_suffix(".parquet"), stem.with_suffix(".jsonl"), stem.with_suffix(".json")

    def finished(self, chunk: int) -> bool:
        """Whether ``chunk`` is in the checkpoint (``load`` would return it)."""
        if not self.enabled:
            return False
        self._open(create=False)
        return self._paths(chunk)[2].exists()

    def load(self, chunk: int) -> tuple[pa.Table | list[str], int, dict] | None:
        """A finished chunk's formatted output, rows dropped by the format, and counts; None if not finished.

        A chunk whose files do not match the checksum written with them is deleted and recomputed.
        """
        if not self.enabled:
            return None
        self._open(create=False)
        table_path, lines_path, counts_path = self._paths(chunk)
        if not counts_path.exists():  # written last: its presence means the chunk is complete
            return None
        payload: pa.Table | list[str]
        try:
            meta = json.loads(counts_path.read_text())
            path = lines_path if meta["kind"] == "lines" else table_path
            raw = path.read_bytes()
            if hashlib.sha256(raw).hexdigest() != meta["sha256"]:
                raise ValueError("checksum mismatch")
            if meta["kind"] == "lines":
                payload = raw.decode("utf-8").split("\n")[:-1]
            else:
                payload = pq.read_table(pa.BufferReader(raw))
            dropped, counts = int(meta["dropped"]), meta["counts"]
            if not isinstance(counts, dict):
                raise ValueError("bad counts")
        except (OSError, ValueError, KeyError, TypeError, pa.ArrowException):
            for p in (table_path, lines_path, counts_path):
                with contextlib.suppress(OSError):
                    p.unlink(missing_ok=True)
            self.repaired_chunks += 1
            return None
        self.resumed_chunks += 1
        return payload, dropped, counts

    def save(self, chunk: int, payload: pa.Table | list[str], dropped: int, counts: dict) -> None:
        if not self.enabled:
            return
        self._open(create=True)
        table_path, lines_path, counts_path = self._paths(chunk)
        if isinstance(payload, list):
            with atomic_path(lines_path) as tmp:
                tmp.write_text("".join(line + "\n" for line in payload), encoding="utf-8")
            kind, written = "lines", lines_path
        else:
            with atomic_path(table_path) as tmp:
                pq.write_table(payload, tmp)
            kind, written = "table", table_path
        digest = hashlib.sha256(written.read_bytes()).hexdigest()
        with atomic_path(counts_path) as tmp:
            tmp.write_text(json.dumps({"kind": kind, "dropped": dropped, "counts": counts, "sha256": digest}))

    def clear(self) -> None:
        if self.dir.is_dir() and not self.dir.is_symlink():
            shutil.rmtree(self.dir)
        elif self.dir.exists() or self.dir.is_symlink():
            self.dir.unlink()
