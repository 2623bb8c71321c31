"""Synthetic hard negatives (SyNeg): passages an LLM writes to look like the positive without answering the query.

They help where the corpus holds no good hard negative (a small or narrow corpus), and they bring two risks the
stage manages rather than hides: a generated passage can be relevant after all (a false negative by
construction), and it can be a copy of something that is not a negative (the positive, the query, a corpus
passage). So every candidate passes four checks before it is kept, and each rejection is counted by check:

* **empty / duplicate**: nothing left after cleaning, or the same text as another candidate of the query;
* **copy**: a near-copy (character 5-gram Jaccard >= ``max_overlap``, or the same normalised text) of the query,
  of any of the query's positives, of the query's remaining candidates, or of its nearest corpus passages by the
  mining model (``corpus_neighbours``; exact copies of any corpus passage are always caught);
* **easy**: the mining model's cosine similarity to the query is below ``min_similarity``: not hard enough;
* **teacher**: the teacher (``scorer``: ``cross-encoder:NAME`` or ``bi-encoder:NAME``, as ``hnmine denoise``)
  scores it relevant by the same threshold rules as denoising (``max_score``, ``margin``, ``max_ratio`` against
  the query's lowest positive teacher score).

The stage runs after selection: it takes the query's ``num_negatives`` mined negatives, replaces up to
``round(synthetic_ratio * num_negatives)`` of the lowest-ranked ones with verified synthetic negatives (the
hardest first, by the mining model), and tops up with mined ones when too few pass. Synthetic rows are ordinary
candidate rows (``retriever = "synthetic"``, texts appended to the data after the corpus, ``doc_idx`` beyond
it): ``score`` is the mining model's cosine, the teacher's score goes in the teacher's column, ranks continue
after the query's mined ones, and columns without a meaning for them (tier, BM25 score) are left empty.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from hnmine.candidates import CE_SCORE, TEACHER_COSINE, CandidateBatch, set_column, sort_candidates
from hnmine.data import MiningData, normalize_text, text_key
from hnmine.engines.encoder import DEFAULT_MODEL, Encoder, EncoderSettings, primary_device
from hnmine.errors import InputError
from hnmine.generators import GenerationError, GenerationRequest, Generator, Sampling, build_generator
from hnmine.generators.cache import GenerationCache, generation_key
from hnmine.generators.prompts import clean_answer, load_template, render
from hnmine.stage import Phase, Stage, num_negatives_option, same_as, seed_option
from hnmine.stages.false_negatives import FalseNegativeFilter, false_negative_mask

SYNTHETIC = "synthetic"
CHECKS = ("empty", "duplicate", "copy", "easy", "teacher")
SHINGLE = 5
GENERATE_BLOCK = 64  # requests per generator call: each block's answers reach the cache before the next starts


def shingles(text: str) -> set[str]:
    t = normalize_text(text)
    return {t[i:i + SHINGLE] for i in range(max(1, len(t) - SHINGLE + 1))}


def overlap(a: set[str], b: set[str]) -> float:
    """Jaccard similarity of two shingle sets: 1.0 for the same text, near 0 for unrelated ones."""
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def request_seed(seed: int, prompt: str, sample: int) -> int:
    """A sample's seed from the run's seed, its prompt and its number; 31 bits, which every server accepts."""
    digest = hashlib.blake2b(f"{seed}|{sample}|{prompt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF


@dataclass
class SyntheticNegatives(EncoderSettings, Stage):
    """Generate, verify and mix in synthetic negatives; ``model`` (inherited) is the mining model."""

    kind: ClassVar[str] = "synthetic_negatives"
    summary_label: ClassVar[str] = "mined negatives replaced by synthetic ones"
    # It mixes generated rows into the selected ones, so it stands where fill does.
    phase: ClassVar[Phase] = Phase.FILL
    generator: str = ""
    generator_url: str | None = None
    prompt_template: str = "qa"
    num_candidates: int = 4
    positives_per_query: int = 1
    temperature: float = same_as(Sampling, "temperature")  # the generators' sampling defaults, not a copy
    top_p: float = same_as(Sampling, "top_p")
    max_new_tokens: int = same_as(Sampling, "max_new_tokens")
    seed: int = seed_option()
    generator_batch_size: int = 8
    concurrency: int = 4
    timeout: float = 60.0
    max_retries: int = 3
    max_passage_chars: int = 2000
    scorer: str = f"bi-encoder:{DEFAULT_MODEL}"
    max_score: float | None = None
    margin: float | None = None
    max_ratio: float | None = 0.95
    min_similarity: float | None = 0.3
    max_overlap: float = 0.8
    corpus_neighbours: int = 3
    num_negatives: int = num_negatives_option()
    synthetic_ratio: float = 0.5
    counts: dict[str, int] = field(default_factory=dict, init=False, metadata={"config": False})
    _data: MiningData | None = field(default=None, init=False, repr=False)
    _generator: Generator | None = field(default=None, init=False, repr=False)
    _template: str = field(default="", init=False, repr=False)
    _cache: GenerationCache | None = field(default=None, init=False, repr=False)
    _corpus_index: Any = field(default=None, init=False, repr=False)
    _corpus_keys: set[int] = field(default_factory=set, init=False, repr=False)
    _reported: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        from hnmine.recipe import parse_scorer

        super().__post_init__()
        if not 0 <= self.synthetic_ratio <= 1:
            raise InputError(f"--synthetic-ratio must be in [0, 1], got {self.synthetic_ratio}")
        for name in ("num_candidates", "positives_per_query", "max_passage_chars"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.max_overlap <= 1:
            raise InputError(f"--max-overlap must be in (0, 1], got {self.max_overlap}")
        if self.corpus_neighbours < 0:
            raise InputError(f"--corpus-neighbours must be >= 0, got {self.corpus_neighbours}")
        self._teacher_kind, self._teacher_name = parse_scorer(self.scorer)
        # The denoise rules and their checks, on the teacher's own scale.
        FalseNegativeFilter(self.max_score, self.margin, self.max_ratio)
        if all(v is None for v in (self.max_score, self.margin, self.max_ratio)):
            raise InputError("synthetic negatives need a teacher threshold: give --max-score, --margin or --max-ratio")
        self.sampling = Sampling(self.temperature, self.top_p, self.max_new_tokens)
        self._template = load_template(self.prompt_template)
        self.counts = dict.fromkeys(["pairs", "generated", "from_cache", *(f"rejected_{c}" for c in CHECKS),
                                     "verified", "used"], 0)

    # ------------------------------------------------------------------ setup

    @property
    def teacher_column(self) -> str:
        return CE_SCORE if self._teacher_kind == "cross-encoder" else TEACHER_COSINE

    def build_generator(self) -> Generator:
        if self._generator is None:
            self._generator = build_generator(self.generator, self.generator_url, self.sampling,
                                              device=primary_device(self.device),
                                              batch_size=self.generator_batch_size, concurrency=self.concurrency,
                                              timeout=self.timeout, max_retries=self.max_retries)
        return self._generator

    def check(self) -> None:
        """Fail in one line, before any corpus is encoded, when the generator cannot be used."""
        self.build_generator().check()

    def describe(self) -> dict[str, Any]:
        """Generator, prompt and sampling settings, for the run manifest."""
        return {"generator": self.build_generator().describe(), "prompt_template": self.prompt_template,
                "prompt_sha256": hashlib.sha256(self._template.encode()).hexdigest(),
                "sampling": {**self.sampling.as_dict(), "seed": self.seed}, "candidates_per_pair": self.num_candidates,
                "teacher": self.scorer, "synthetic_ratio": self.synthetic_ratio}

    def prepare(self, data: MiningData) -> None:
        if self._data is data:
            return
        self.build_generator().check()
        self._cache = GenerationCache(self.cache_dir, self.use_cache)
        corpus = data.doc_texts[:data.corpus_size]
        self._corpus_keys = set(data.doc_keys_of(np.arange(data.corpus_size)).tolist())
        if self.corpus_neighbours:
            import faiss

            emb = np.ascontiguousarray(self.engine.encode(self.encoder(), corpus, self.corpus_prompt), dtype=np.float32)
            self._corpus_index = faiss.IndexFlatIP(emb.shape[1])
            self._corpus_index.add(emb)
        self._data = data

    def take_chunk_counters(self) -> dict[str, int]:
        """This chunk's counts, labelled for the summary; kept with the chunk's checkpoint, so a resumed run's
        manifest still counts what every chunk generated and rejected."""
        delta = {f"synthetic {k.replace('_', ' ')}": v - self._reported.get(k, 0) for k, v in self.counts.items()}
        self._reported = dict(self.counts)
        return delta

    # ------------------------------------------------------------------ generation

    def _pairs(self, batch: CandidateBatch) -> list[tuple[int, int]]:
        """(query, positive) pairs to write from: each query's first ``positives_per_query`` positives."""
        pairs = []
        for q in batch.queries.tolist():
            pairs.extend((q, int(d)) for d in batch.data.positives_of(q)[:self.positives_per_query])
        return pairs

    def _prompt(self, data: MiningData, q: int, d: int) -> str:
        title = data.doc_titles[d] if data.doc_titles is not None else ""
        return render(self._template, data.query_texts[q], data.doc_texts[d][:self.max_passage_chars], title)

    def generate(self, data: MiningData, pairs: list[tuple[int, int]]) -> list[list[str]]:
        """``num_candidates`` cleaned texts per pair; cached answers are reused, the rest generated in blocks."""
        assert self._cache is not None
        generator = self.build_generator()
        sampling = {**self.sampling.as_dict(), "seed": self.seed}
        requests, keys = [], []
        for q, d in pairs:
            prompt = self._prompt(data, q, d)
            for k in range(self.num_candidates):
                requests.append(GenerationRequest(prompt, request_seed(self.seed, prompt, k)))
                keys.append(generation_key(generator.identity(), prompt, sampling, k))
        found = self._cache.get_many(list(dict.fromkeys(keys)))
        self.counts["from_cache"] += sum(k in found for k in keys)
        missing = [i for i, k in enumerate(keys) if k not in found]
        for start in range(0, len(missing), GENERATE_BLOCK):
            block = missing[start:start + GENERATE_BLOCK]
            texts = generator.generate([requests[i] for i in block])
            if len(texts) != len(block):
                raise GenerationError(f"generator {self.generator!r}: {len(texts)} answers to {len(block)} prompts")
            new = {keys[i]: t for i, t in zip(block, texts)}
            self._cache.put_many(new)
            found.update(new)
        self.counts["generated"] += len(missing)
        texts = [clean_answer(found[k]) for k in keys]
        n = self.num_candidates
        return [texts[i * n:(i + 1) * n] for i in range(len(pairs))]

    # ------------------------------------------------------------------ verification

    def _teacher_scores(self, queries: list[str], passages: list[str]) -> np.ndarray:
        if not passages:
            return np.zeros(0)
        if self._teacher_kind == "cross-encoder":
            from hnmine.stages.cross_encoder import CrossEncoderScorer

            scorer = CrossEncoderScorer(self._teacher_name, self.batch_size, primary_device(self.device))
            return self.engine.score_pairs(scorer, list(zip(queries, passages)))
        teacher = Encoder(model=self._teacher_name, device=self.device, batch_size=self.batch_size, dtype=self.dtype,
                          use_cache=False, show_progress=False)
        q = self.engine.encode(teacher, queries, self.query_prompt)
        p = self.engine.encode(teacher, passages, self.corpus_prompt)
        return np.einsum("ij,ij->i", q, p).astype(np.float64)

    def _copy_of(self, text: str, others: list[set[str]]) -> bool:
        if text_key(text) in self._corpus_keys:
            return True
        mine = shingles(text)
        return any(overlap(mine, o) >= self.max_overlap for o in others)

    def verify(self, batch: CandidateBatch, pairs: list[tuple[int, int]], texts: list[list[str]]) -> dict[int, list]:
        """Per query, its verified candidates as (text, mining cosine, teacher score), hardest first."""
        data = batch.data
        cand_q = batch.candidates.column("query_idx").to_numpy()
        cand_d = batch.candidates.column("doc_idx").to_numpy()
        survivors: list[tuple[int, str]] = []
        seen: dict[int, set[str]] = {}
        lexical: dict[int, list[set[str]]] = {}
        for (q, _), group in zip(pairs, texts):
            if q not in lexical:
                near = [data.query_texts[q], *(data.doc_texts[i] for i in data.pooled_positives_of(q)),
                        *(data.doc_texts[i] for i in cand_d[cand_q == q])]
                lexical[q] = [shingles(t) for t in near]
            for text in group:
                if not text:
                    self.counts["rejected_empty"] += 1
                elif normalize_text(text) in seen.setdefault(q, set()):
                    self.counts["rejected_duplicate"] += 1
                elif self._copy_of(text, lexical[q]):
                    self.counts["rejected_copy"] += 1
                else:
                    seen[q].add(normalize_text(text))
                    survivors.append((q, text))
        if not survivors:
            return {}
        sq = np.array([q for q, _ in survivors], dtype=np.int64)
        passages = [t for _, t in survivors]
        encoder = self.encoder()
        encoder.use_cache, encoder.show_progress = False, False
        emb = self.engine.encode(encoder, passages, self.corpus_prompt)
        query_emb = self.engine.encode(encoder, [data.query_texts[q] for q in sq.tolist()], self.query_prompt)
        cosine = np.einsum("ij,ij->i", emb, query_emb).astype(np.float64)
        ok = np.ones(len(survivors), dtype=bool)
        if self._corpus_index is not None:
            _, neighbours = self._corpus_index.search(np.ascontiguousarray(emb, dtype=np.float32),
                                                      min(self.corpus_neighbours, data.corpus_size))
            for i, row in enumerate(neighbours.tolist()):
                mine = shingles(passages[i])
                if any(overlap(mine, shingles(data.doc_texts[j])) >= self.max_overlap for j in row if j >= 0):
                    ok[i] = False
            self.counts["rejected_copy"] += int((~ok).sum())
        easy = ok & (cosine < self.min_similarity) if self.min_similarity is not None else np.zeros_like(ok)
        self.counts["rejected_easy"] += int(easy.sum())
        ok &= ~easy
        rows = np.flatnonzero(ok)
        teacher = np.full(len(survivors), np.nan)
        teacher[rows] = self._teacher_scores([data.query_texts[q] for q in sq[rows].tolist()],
                                             [passages[i] for i in rows.tolist()])
        lowest = self._lowest_positive_teacher(batch)
        relevant = ok & false_negative_mask(teacher, lowest[sq], self.max_score, self.margin, self.max_ratio)
        self.counts["rejected_teacher"] += int(relevant.sum())
        ok &= ~relevant
        self.counts["verified"] += int(ok.sum())
        kept: dict[int, list] = {}
        for i in np.flatnonzero(ok)[np.argsort(-cosine[ok], kind="stable")].tolist():
            kept.setdefault(int(sq[i]), []).append((passages[i], cosine[i], teacher[i]))
        return kept

    def _lowest_positive_teacher(self, batch: CandidateBatch) -> np.ndarray:
        """Each query's lowest positive score under the teacher (NaN for queries not in the batch)."""
        scores = self._positive_teacher_scores(batch)
        lowest = np.full(batch.data.num_queries, np.nan)
        np.fmin.at(lowest, batch.positives.column("query_idx").to_numpy(), scores)
        return lowest

    def _positive_teacher_scores(self, batch: CandidateBatch) -> np.ndarray:
        cache = getattr(self, "_positive_scores", None)
        if cache is not None and cache[0] is batch.positives:
            return cache[1]
        data, pos = batch.data, batch.positives
        q, d = pos.column("query_idx").to_numpy(), pos.column("doc_idx").to_numpy()
        scores = self._teacher_scores([data.query_texts[i] for i in q.tolist()],
                                      [data.doc_texts[i] for i in d.tolist()])
        self._positive_scores = (batch.positives, scores)
        return scores

    # ------------------------------------------------------------------ mixing

    def apply(self, batch: CandidateBatch) -> CandidateBatch:
        self.prepare(batch.data)
        pairs = self._pairs(batch)
        self.counts["pairs"] += len(pairs)
        kept = self.verify(batch, pairs, self.generate(batch.data, pairs))
        return self.mix(batch, kept)

    def mix(self, batch: CandidateBatch, kept: dict[int, list]) -> CandidateBatch:
        """At most ``round(ratio x num_negatives)`` synthetic rows per query; mined ones (best rank first) fill up."""
        table = batch.candidates
        quota = round(self.synthetic_ratio * self.num_negatives)
        q, rank = table.column("query_idx").to_numpy(), table.column("rank").to_numpy()
        keep = np.zeros(table.num_rows, dtype=bool)
        new_q, new_text, new_rank, new_cos, new_teacher = [], [], [], [], []
        for query in batch.queries.tolist():
            rows = np.flatnonzero(q == query)
            rows = rows[np.argsort(rank[rows], kind="stable")]
            synthetic = kept.get(query, [])[:quota]
            mined = rows[:max(self.num_negatives - len(synthetic), 0)]
            keep[mined] = True
            last = int(rank[mined].max()) if len(mined) else 0
            for j, (text, cos, score) in enumerate(synthetic):
                new_q.append(query)
                new_text.append(text)
                new_rank.append(last + 1 + j)
                new_cos.append(cos)
                new_teacher.append(score)
        self.counts["used"] += len(new_q)
        table = table.filter(pa.array(keep))
        positives = batch.positives
        column = self.teacher_column
        if column not in table.column_names:
            table = set_column(table, column, np.full(table.num_rows, np.nan), pa.float32())
        if column not in positives.column_names:
            positives = set_column(positives, column, self._positive_teacher_scores(batch), pa.float32())
        if not new_q:
            return batch.with_scored(table, positives)
        values = {"query_idx": np.array(new_q), "doc_idx": batch.data.add_synthetic(new_text),
                  "rank": np.array(new_rank), "score": np.array(new_cos), "retriever": [SYNTHETIC] * len(new_q),
                  column: np.array(new_teacher), "filled": np.zeros(len(new_q), dtype=bool)}
        added = {}
        for f in table.schema:
            if f.name in values:
                added[f.name] = pa.array(values[f.name], f.type)
            elif pa.types.is_floating(f.type):
                added[f.name] = pa.array(np.full(len(new_q), np.nan), f.type)
            else:
                added[f.name] = pa.nulls(len(new_q), f.type)
        synthetic_rows = pa.table(added, schema=table.schema)
        return batch.with_scored(sort_candidates(pa.concat_tables([table, synthetic_rows])), positives)
