"""The validated mining input, held once and addressed by integer index.

Every stage works on integer query and document indices rather than string ids or texts: candidate
batches stay small fixed-width columns, and texts are looked up only when an output row is written.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from hnmine.errors import InputError


def normalize_text(text: str) -> str:
    """The form under which two texts count as the same document.

    Unicode-normalised, case-folded and whitespace-collapsed, so that a positive copied into the corpus with
    different spacing or casing is still recognised as that positive.
    """
    # str.split() splits on exactly the characters ``\s`` matches (Py_UNICODE_ISSPACE) and drops the ends, so
    # this equals ``re.sub(r"\s+", " ", t).strip()``, at a fraction of the cost (it ran once per candidate).
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def text_key(text: str) -> int:
    """A 63-bit fingerprint of the normalised text, cheap to compare across a million documents."""
    digest = hashlib.blake2b(normalize_text(text).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


@dataclass
class MiningData:
    """Queries, corpus and positives after validation.

    Positives are stored per query in CSR form (``positive_offsets`` / ``positive_docs``) so that queries
    with one positive and queries with fifty live side by side without padding, and a query's own lowest
    positive score can never be confused with another query's.
    """

    query_ids: list[str]
    query_texts: list[str]
    doc_ids: list[str]
    doc_texts: list[str]
    positive_offsets: np.ndarray
    positive_docs: np.ndarray
    source: dict[str, str] = field(default_factory=dict)
    skipped_queries: list[str] = field(default_factory=list)
    doc_titles: list[str] | None = None  # where the input keeps titles apart (BEIR); texts have them prepended
    synthetic_docs: dict[str, int] = field(default_factory=dict)  # generated text -> doc index (after the corpus)

    def __post_init__(self) -> None:
        self.positive_offsets = np.asarray(self.positive_offsets, dtype=np.int64)
        self.positive_docs = np.asarray(self.positive_docs, dtype=np.int32)
        if len(self.positive_offsets) != len(self.query_ids) + 1:
            raise ValueError("positive_offsets must have one entry per query plus one")

    @property
    def num_queries(self) -> int:
        return len(self.query_ids)

    @property
    def num_docs(self) -> int:
        return len(self.doc_ids)

    @property
    def corpus_size(self) -> int:
        """Documents of the corpus proper; generated negatives (``add_synthetic``) are numbered after them."""
        return self.num_docs - len(self.synthetic_docs)

    def add_synthetic(self, texts: list[str]) -> np.ndarray:
        """Doc indices for generated passages, appended after the corpus (a text already added keeps its index).

        Appending makes a synthetic negative an ordinary candidate row: every writer and later stage looks
        its text up by ``doc_idx`` as for a corpus passage. Its id is ``synthetic:`` + a hash of its text, so
        it is stable across runs and never collides with a corpus id. Retrievers never see these documents:
        their indexes are built over the corpus before any is added, and ``corpus_size`` bounds random draws.
        """
        out = np.empty(len(texts), dtype=np.int64)
        for i, text in enumerate(texts):
            idx = self.synthetic_docs.get(text)
            if idx is None:
                idx = self.synthetic_docs[text] = len(self.doc_ids)
                self.doc_ids.append(f"synthetic:{text_key(text):016x}")
                self.doc_texts.append(text)
            out[i] = idx
        cache = self.__dict__.get("_doc_key_cache")
        if cache is not None and len(cache) < self.num_docs:
            self.__dict__["_doc_key_cache"] = np.r_[cache, np.full(self.num_docs - len(cache), -1, np.int64)]
        return out

    def is_synthetic(self, doc_idx: np.ndarray) -> np.ndarray:
        return np.asarray(doc_idx) >= self.corpus_size

    def positives_of(self, query_idx: int) -> np.ndarray:
        return self.positive_docs[self.positive_offsets[query_idx] : self.positive_offsets[query_idx + 1]]

    @cached_property
    def positive_counts(self) -> np.ndarray:
        return np.diff(self.positive_offsets)

    @cached_property
    def _doc_key_cache(self) -> np.ndarray:
        return np.full(self.num_docs, -1, dtype=np.int64)  # keys are 63-bit, so -1 means "not computed"

    def doc_keys_of(self, doc_idx: np.ndarray) -> np.ndarray:
        """Text fingerprints of the given documents, computed on first use.

        Only candidates and positives are ever compared, so a million-passage corpus is not hashed up front. A
        corpus that lives elsewhere (``--ray-corpus workers``) fingerprints the rows it fetched itself, without
        a slot per passage here.
        """
        doc_idx = np.asarray(doc_idx, dtype=np.int64)
        keys_of = getattr(self.doc_texts, "keys_of", None)
        if keys_of is not None:
            return keys_of(doc_idx)
        cache = self._doc_key_cache
        missing = np.unique(doc_idx[cache[doc_idx] < 0])
        if len(missing):
            cache[missing] = np.fromiter((text_key(self.doc_texts[i]) for i in missing.tolist()), dtype=np.int64,
                                         count=len(missing))
        return cache[doc_idx]

    def doc_positions(self, wanted: set[str]) -> Mapping[str, int]:
        """The document index of each wanted id the corpus holds (ids it lacks are absent), to link a qrels file.

        A corpus that lives elsewhere (``--ray-corpus workers``) looks the ids up where its rows are."""
        locate = getattr(self.doc_ids, "locate", None)
        if locate is not None:
            return locate(wanted)
        return {d: i for i, d in enumerate(self.doc_ids) if d in wanted}

    @property
    def doc_keys(self) -> np.ndarray:
        return self.doc_keys_of(np.arange(self.num_docs))

    @cached_property
    def _queries_by_text(self) -> dict[int, list[int]]:
        groups: dict[int, list[int]] = {}
        for i, key in enumerate(self.query_keys.tolist()):
            groups.setdefault(key, []).append(i)
        return {k: v for k, v in groups.items() if len(v) > 1}

    def pooled_positives_of(self, query_idx: int) -> np.ndarray:
        """Positives of this query and of every query with the same normalised text.

        Datasets repeat queries under different ids (SciFact has two such pairs); a document labelled
        relevant to one copy must not come back as a negative of the other.
        """
        same = self._queries_by_text.get(int(self.query_keys[query_idx]))
        if not same:
            return self.positives_of(query_idx)
        return np.unique(np.concatenate([self.positives_of(q) for q in same]))

    @cached_property
    def query_keys(self) -> np.ndarray:
        return np.fromiter((text_key(t) for t in self.query_texts), dtype=np.int64, count=self.num_queries)

    @classmethod
    def from_pairs(
        cls,
        query_ids: list[str],
        query_texts: list[str],
        doc_ids: list[str],
        doc_texts: list[str],
        pairs: list[tuple[int, int]],
        source: dict[str, str] | None = None,
    ) -> MiningData:
        """Build from (query index, doc index) positive pairs, dropping repeats but keeping first-seen order."""
        per_query: list[list[int]] = [[] for _ in query_ids]
        for q, d in pairs:
            if d not in per_query[q]:
                per_query[q].append(d)
        offsets = np.zeros(len(query_ids) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(p) for p in per_query])
        docs = np.fromiter((d for p in per_query for d in p), dtype=np.int32, count=int(offsets[-1]))
        return cls(query_ids, query_texts, doc_ids, doc_texts, offsets, docs, source=dict(source or {}))

    def without_queries_lacking_positives(self) -> MiningData:
        """Queries with no positive cannot anchor a triplet: drop them and remember which, so they are reported."""
        keep = np.flatnonzero(self.positive_counts > 0)
        if len(keep) == self.num_queries:
            return self
        if len(keep) == 0:
            raise InputError(f"none of the {self.num_queries} queries has a positive (qrels rows with score <= 0 "
                             "are not positives): nothing to mine")
        skipped = [self.query_ids[i] for i in np.flatnonzero(self.positive_counts == 0)]
        pairs = [(new, int(d)) for new, old in enumerate(keep) for d in self.positives_of(int(old))]
        data = MiningData.from_pairs(
            [self.query_ids[i] for i in keep],
            [self.query_texts[i] for i in keep],
            self.doc_ids,
            self.doc_texts,
            pairs,
            self.source,
        )
        data.skipped_queries = self.skipped_queries + skipped
        data.doc_titles = self.doc_titles
        return data
