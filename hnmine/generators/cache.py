"""The generation cache: every generated text kept on disk, keyed by generator, prompt, sampling and sample.

Generation is the slowest and, against a hosted API, the only paid part of a synthetic run. Each answer is
stored as soon as its batch returns, so a re-run with another verification threshold, another ratio or
another output layout never calls the model again, and an interrupted run continues with the prompts not yet
answered. SQLite (standard library) gives atomic commits and one file however many answers there are.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from hnmine.engines.encoder import default_cache_dir


def generation_key(generator: str, prompt: str, sampling: dict[str, Any], sample: int) -> str:
    payload = json.dumps({"generator": generator, "prompt": prompt, "sampling": sampling, "sample": sample},
                         sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class GenerationCache:
    """``get_many`` / ``put_many`` over a SQLite file; a disabled cache stores nothing and finds nothing."""

    def __init__(self, cache_dir: str | Path | None = None, enabled: bool = True) -> None:
        self.enabled = enabled
        self.path = Path(cache_dir or default_cache_dir()) / "generations.sqlite"
        self._db: sqlite3.Connection | None = None
        self.hits = 0
        self.misses = 0

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=60)
            self._db.execute("CREATE TABLE IF NOT EXISTS generation (key TEXT PRIMARY KEY, text TEXT NOT NULL)")
        return self._db

    def get_many(self, keys: list[str]) -> dict[str, str]:
        if not self.enabled or not keys:
            self.misses += len(keys)
            return {}
        db = self._connect()
        found: dict[str, str] = {}
        for start in range(0, len(keys), 500):
            part = keys[start:start + 500]
            rows = db.execute(f"SELECT key, text FROM generation WHERE key IN ({','.join('?' * len(part))})", part)
            found.update(rows.fetchall())
        self.hits += len(found)
        self.misses += len(keys) - len(found)
        return found

    def put_many(self, items: dict[str, str]) -> None:
        if not self.enabled or not items:
            return
        db = self._connect()
        with db:
            db.executemany("INSERT OR REPLACE INTO generation (key, text) VALUES (?, ?)", list(items.items()))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
