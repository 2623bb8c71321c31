"""Cache entries that are verified before use and repair themselves when they are not intact.

A cache is only worth having if a damaged entry can never change a result. Every entry (embeddings, BM25
weights) is one data file plus a JSON sidecar, ``NAME.meta.json``, holding the data file's size and SHA-256
and whatever the reader must check (rows, dimension, dtype). Writers fsync the data before renaming it into
place and write the sidecar last, so an entry is complete exactly when its sidecar matches its bytes. A reader
that finds no sidecar, a size or checksum that does not match, or a shape it did not ask for deletes the
entry and reports a miss: the caller recomputes and writes a good entry, and the next run is fast again.

Two runs writing the same entry race harmlessly: each writes its own temporary files and renames them; a
reader that catches a data file from one writer with the other's sidecar sees a mismatch and recomputes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

T = TypeVar("T")


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".meta.json")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_durably(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write through ``output.atomic_path``: a temporary beside ``path`` (mode from the umask), fsynced, renamed."""
    from hnmine.io.writers import atomic_path

    with atomic_path(path) as tmp, tmp.open("wb") as f:
        write(f)


def write_entry(path: Path, write: Callable[[IO[bytes]], None], meta: dict[str, Any]) -> None:
    """Publish a cache entry: data first (fsynced), then the sidecar that vouches for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sidecar(path).unlink(missing_ok=True)  # a reader never pairs the new data with an old sidecar
    _write_durably(path, write)
    record = {**meta, "bytes": path.stat().st_size, "sha256": file_sha256(path)}
    _write_durably(sidecar(path), lambda f: f.write(json.dumps(record, sort_keys=True).encode()))
    _fsync_dir(path.parent)


def discard(path: Path) -> None:
    for p in (path, sidecar(path)):
        with contextlib.suppress(OSError):
            p.unlink(missing_ok=True)


def read_or_build(path: Path, expect: dict[str, Any], load: Callable[[Path], T], build: Callable[[], T],
                  save: Callable[[T, IO[bytes]], None]) -> tuple[T, bool]:
    """The intact entry at ``path`` (``load`` may raise ``ValueError`` on a stale one), or ``build()``'s value
    written there; and whether it was read from the cache."""
    if verified_meta(path, expect) is not None:
        try:
            return load(path), True
        except (OSError, ValueError, KeyError, EOFError):
            discard(path)  # a damaged entry is rebuilt, never trusted
    value = build()
    with contextlib.suppress(OSError):  # an unwritable cache costs a rebuild next time, not this run
        write_entry(path, lambda f: save(value, f), expect)
    return value, False


def verified_meta(path: Path, expect: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The entry's sidecar if the data file is intact and matches ``expect``; else the entry is removed.

    Returns None for a miss (no entry) as for a damaged one, so every caller simply recomputes.
    """
    if not path.exists() and not sidecar(path).exists():
        return None
    try:
        meta = json.loads(sidecar(path).read_text())
        ok = (isinstance(meta, dict) and path.stat().st_size == meta.get("bytes")
              and all(meta.get(k) == v for k, v in (expect or {}).items())
              and file_sha256(path) == meta.get("sha256"))
    except (OSError, ValueError):
        ok = False
    if not ok:
        discard(path)
        return None
    return meta
