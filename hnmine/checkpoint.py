"""Resumable runs: each finished chunk is kept on disk until the whole output is published.

A mining run inside a scheduler can be killed at any time. Finished chunks live in a hidden folder next to
the output (``.NAME.partial/``), keyed by a fingerprint of the inputs and of every option that changes the
result; a rerun with the same fingerprint reads them back instead of recomputing, and the final file is
assembled from the same formatted chunks in the same order, so it is byte-identical to an uninterrupted
run's. A different fingerprint (changed input or option) discards the folder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from hnmine.output import atomic_path


def fingerprint(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class ChunkCheckpoint:
    def __init__(self, output: Path, fingerprint: str, enabled: bool = True) -> None:
        self.dir = output.parent / f".{output.name}.partial"
        self.fingerprint = fingerprint
        self.enabled = enabled
        self.resumed_chunks = 0
        self._opened = False

    def _state_file(self) -> Path:
        return self.dir / "state.json"

    def _open(self, create: bool) -> None:
        """Discard a folder left by a run with other inputs or options; create one only when saving."""
        if not self._opened and self.dir.exists():
            try:
                state = json.loads(self._state_file().read_text())
            except (OSError, json.JSONDecodeError):
                state = {}
            if state.get("fingerprint") != self.fingerprint:
                shutil.rmtree(self.dir)
        self._opened = True
        if create and not self.dir.exists():
            self.dir.mkdir()
            self._state_file().write_text(json.dumps({"fingerprint": self.fingerprint}))

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
        """A finished chunk's formatted output, rows dropped by the format, and counts; None if not finished."""
        if not self.enabled:
            return None
        self._open(create=False)
        table_path, lines_path, counts_path = self._paths(chunk)
        if not counts_path.exists():  # written last: its presence means the chunk is complete
            return None
        meta = json.loads(counts_path.read_text())
        payload: pa.Table | list[str]
        if meta["kind"] == "lines":
            payload = lines_path.read_bytes().decode("utf-8").split("\n")[:-1]
        else:
            payload = pq.read_table(table_path)
        self.resumed_chunks += 1
        return payload, meta["dropped"], meta["counts"]

    def save(self, chunk: int, payload: pa.Table | list[str], dropped: int, counts: dict) -> None:
        if not self.enabled:
            return
        self._open(create=True)
        table_path, lines_path, counts_path = self._paths(chunk)
        if isinstance(payload, list):
            with atomic_path(lines_path) as tmp:
                tmp.write_text("".join(line + "\n" for line in payload), encoding="utf-8")
            kind = "lines"
        else:
            with atomic_path(table_path) as tmp:
                pq.write_table(payload, tmp)
            kind = "table"
        with atomic_path(counts_path) as tmp:
            tmp.write_text(json.dumps({"kind": kind, "dropped": dropped, "counts": counts}))

    def clear(self) -> None:
        if self.dir.exists():
            shutil.rmtree(self.dir)
