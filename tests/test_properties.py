"""Property tests on the pure stages, over generated small inputs.

The generated data is built to hit the cases that matter: positives sitting in the candidate list,
copies of a positive under another id and with other case / spacing / Unicode form, the query's own text
in the corpus, queries with one to five positives, and a small vocabulary so texts collide by accident too.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hnmine.candidates import CANDIDATE_SCHEMA, CandidateBatch, set_column
from hnmine.data import MiningData, normalize_text
from hnmine.io.writers import triplet_table
from hnmine.pipeline import Pipeline
from hnmine.stage import Phase, Stage
from hnmine.stages.ambiguous import AmbiguousZoneFilter
from hnmine.stages.exclusion import PositiveExcluder
from hnmine.stages.false_negatives import FalseNegativeFilter
from hnmine.stages.selection import STRATEGIES, NegativeSelector
from hnmine.stages.window import RankWindow

# CI draws the same examples every run (a red build must mean a change broke something); set
# HNMINE_EXPLORE=N locally to search N fresh random examples per property instead.
_EXPLORE = int(os.environ.get("HNMINE_EXPLORE", "0"))
SETTINGS = settings(max_examples=_EXPLORE or 60, derandomize=not _EXPLORE, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# Words whose normalised forms collide in the ways real corpora do: ß/ss, the ﬁ ligature, composed and
# decomposed accents.
WORDS = ["rain", "cloud", "Straße", "strasse", "ﬁle", "file", "café", "cafe\u0301", "magnet", "iron", "x"]
TEXT = st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(" ".join)


def _variants(text: str) -> list[str]:
    """Other spellings of ``text`` that normalise to the same thing (checked, not assumed)."""
    candidates = [text.upper(), f"  {text}\t", text.replace(" ", " \n "), unicodedata.normalize("NFD", text),
                  text.title()]
    return [v for v in candidates if normalize_text(v) == normalize_text(text)] or [text]


@dataclass
class Case:
    data: MiningData
    candidates: pa.Table  # all queries' candidate rows, ranks 1..k per query, scores descending
    positive_scores: dict[tuple[int, int], float]

    def batch(self, queries: np.ndarray | None = None) -> CandidateBatch:
        queries = np.arange(self.data.num_queries) if queries is None else queries
        batch = CandidateBatch.start(self.data, queries)
        cand = self.candidates.filter(pc.is_in(self.candidates.column("query_idx"),
                                               pa.array(queries, pa.int32())))
        pos = batch.positives
        scores = [self.positive_scores[(q, d)] for q, d in zip(pos.column("query_idx").to_pylist(),
                                                               pos.column("doc_idx").to_pylist())]
        return batch.with_candidates(cand).with_positives(set_column(pos, "score", scores, pa.float32()))


SCORE = st.floats(-5, 5, allow_nan=False, width=32)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    n_queries = draw(st.integers(1, 4))
    query_texts = draw(st.lists(TEXT, min_size=n_queries, max_size=n_queries))
    doc_texts = draw(st.lists(TEXT, min_size=5, max_size=12))
    n_base = len(doc_texts)
    positives: list[list[int]] = []
    for q in range(n_queries):
        k = draw(st.integers(1, 5))
        positives.append(draw(st.lists(st.integers(0, n_base - 1), min_size=k, max_size=k, unique=True)))
        for p in draw(st.lists(st.sampled_from(positives[q]), max_size=2)):  # a positive copied under a new id
            doc_texts.append(draw(st.sampled_from(_variants(doc_texts[p]))))
        if draw(st.booleans()):  # the query itself in the corpus
            doc_texts.append(draw(st.sampled_from(_variants(query_texts[q]))))
    n_docs = len(doc_texts)
    data = MiningData.from_pairs([f"q{i}" for i in range(n_queries)], query_texts,
                                 [f"d{i}" for i in range(n_docs)], doc_texts,
                                 [(q, d) for q, ps in enumerate(positives) for d in ps])
    rows: dict[str, list] = {"query_idx": [], "doc_idx": [], "rank": [], "score": [], "retriever": []}
    for q in range(n_queries):
        banned = _banned_keys(data, q)
        must = set(positives[q]) | {d for d in range(n_docs) if normalize_text(doc_texts[d]) in banned}
        extra = draw(st.sets(st.integers(0, n_docs - 1)))
        docs = draw(st.permutations(sorted(must | extra)))
        scores = sorted(draw(st.lists(SCORE, min_size=len(docs), max_size=len(docs))), reverse=True)
        rows["query_idx"] += [q] * len(docs)
        rows["doc_idx"] += list(docs)
        rows["rank"] += list(range(1, len(docs) + 1))
        rows["score"] += scores
        rows["retriever"] += ["fake"] * len(docs)
    positive_scores = {(q, d): draw(SCORE) for q, ps in enumerate(positives) for d in ps}
    return Case(data, pa.table(rows, schema=CANDIDATE_SCHEMA), positive_scores)


def _banned_keys(data: MiningData, q: int) -> set[str]:
    """What must never be a negative of query ``q``, as normalised text (ids are checked separately).

    Positives of another query with the same text count too (SciFact repeats claims under two ids).
    """
    return {normalize_text(data.doc_texts[int(p)]) for p in _pooled(data, q)} | {
        normalize_text(data.query_texts[q])}


def _pooled(data: MiningData, q: int) -> set[int]:
    """Positives of ``q`` and of every query whose normalised text equals ``q``'s (computed independently)."""
    key = normalize_text(data.query_texts[q])
    return {int(p) for other in range(data.num_queries) if normalize_text(data.query_texts[other]) == key
            for p in data.positives_of(other)}


def _rows(table: pa.Table) -> list[tuple]:
    cols = [table.column(c).to_pylist() for c in ("query_idx", "doc_idx", "rank", "score")]
    return list(zip(*cols))


def _pairs(table: pa.Table) -> set[tuple[int, int]]:
    return set(zip(table.column("query_idx").to_pylist(), table.column("doc_idx").to_pylist()))


def _per_query(table: pa.Table) -> dict[int, int]:
    counts: dict[int, int] = {}
    for q in table.column("query_idx").to_pylist():
        counts[q] = counts.get(q, 0) + 1
    return counts


# (a) exclusion -------------------------------------------------------------------------------------------


@SETTINGS
@given(cases())
def test_excluder_drops_exactly_positives_their_copies_and_the_query(case: Case):
    data = case.data
    out = PositiveExcluder().apply(case.batch()).candidates
    for q, d in _pairs(out):
        assert d not in _pooled(data, q)
        assert normalize_text(data.doc_texts[d]) not in _banned_keys(data, q)
    # ... and nothing else: every other candidate survives, in its original order, re-ranked 1..n.
    expected: dict[int, list[int]] = {}
    for q, d, _, _ in _rows(case.candidates):
        if d not in _pooled(data, q) and normalize_text(data.doc_texts[d]) not in _banned_keys(data, q):
            expected.setdefault(q, []).append(d)
    got: dict[int, list[tuple[int, int]]] = {}
    for q, d, rank, _ in _rows(out):
        got.setdefault(q, []).append((rank, d))
    assert {q: [d for _, d in sorted(v)] for q, v in got.items()} == expected
    assert all(sorted(r for r, _ in v) == list(range(1, len(v) + 1)) for v in got.values())


# (b) selection -------------------------------------------------------------------------------------------


@SETTINGS
@given(cases(), st.integers(1, 6), st.sampled_from(STRATEGIES), st.integers(0, 2**32 - 1))
def test_selector_keeps_at_most_n_of_its_own_candidates_deterministically(case, n, strategy, seed):
    batch = PositiveExcluder().apply(case.batch())
    selector = NegativeSelector(num_negatives=n, strategy=strategy, seed=seed)
    out = selector.apply(batch).candidates
    counts_in, counts_out = _per_query(batch.candidates), _per_query(out)
    for q, available in counts_in.items():
        assert counts_out.get(q, 0) == min(n, available)
    assert set(_rows(out)) <= set(_rows(batch.candidates))
    assert len(set(_rows(out))) == out.num_rows  # no row chosen twice
    again = NegativeSelector(num_negatives=n, strategy=strategy, seed=seed).apply(batch).candidates
    assert _rows(again) == _rows(out)
    if strategy == "top":  # exactly the best-ranked n
        for q in counts_in:
            ranks_in = sorted(r for qq, _, r, _ in _rows(batch.candidates) if qq == q)
            assert sorted(r for qq, _, r, _ in _rows(out) if qq == q) == ranks_in[:n]


@SETTINGS
@given(cases(), st.integers(1, 4), st.sampled_from(STRATEGIES), st.integers(0, 1000))
def test_selection_does_not_depend_on_which_queries_share_a_batch(case, n, strategy, seed):
    selector = NegativeSelector(num_negatives=n, strategy=strategy, seed=seed)
    together = _rows(selector.apply(PositiveExcluder().apply(case.batch())).candidates)
    alone = []
    for q in range(case.data.num_queries):
        batch = PositiveExcluder().apply(case.batch(np.array([q], dtype=np.int32)))
        alone += _rows(selector.apply(batch).candidates)
    assert sorted(together) == sorted(alone)


# (c) monotone thresholds ---------------------------------------------------------------------------------

THRESHOLD = st.floats(-6, 6, allow_nan=False)


def _kept(stage, case: Case) -> set[tuple[int, int]]:
    return _pairs(stage.apply(case.batch()).candidates)


@SETTINGS
@given(cases(), THRESHOLD, THRESHOLD)
def test_max_score_is_monotone(case, a, b):
    strict, loose = sorted((a, b))  # a lower ceiling is stricter
    kept_strict = _kept(FalseNegativeFilter(max_score=strict), case)
    assert kept_strict <= _kept(FalseNegativeFilter(max_score=loose), case)
    scores = {(q, d): s for q, d, _, s in _rows(case.candidates)}
    assert all(scores[k] < strict for k in kept_strict)


@SETTINGS
@given(cases(), st.floats(0, 6), st.floats(0, 6))
def test_margin_is_monotone(case, a, b):
    loose, strict = sorted((a, b))  # a wider margin below the positive is stricter
    kept_strict = _kept(FalseNegativeFilter(margin=strict), case)
    assert kept_strict <= _kept(FalseNegativeFilter(margin=loose), case)
    batch = case.batch()
    lowest = dict(zip(_pairs_list(batch.candidates), batch.lowest_positive("score")))
    scores = {(q, d): s for q, d, _, s in _rows(case.candidates)}
    assert all(scores[k] < lowest[k] - strict for k in kept_strict)


def _pairs_list(table: pa.Table) -> list[tuple[int, int]]:
    return list(zip(table.column("query_idx").to_pylist(), table.column("doc_idx").to_pylist()))


@SETTINGS
@given(cases(), st.floats(0.01, 1), st.floats(0.01, 1))
def test_max_ratio_is_monotone(case, a, b):
    strict, loose = sorted((a, b))  # a lower ratio of the positive is stricter, for any sign of the positive
    assert _kept(FalseNegativeFilter(max_ratio=strict), case) <= _kept(FalseNegativeFilter(max_ratio=loose), case)


@SETTINGS
@given(cases(), st.floats(0, 3), st.floats(0, 3), st.floats(-1, 3), st.floats(0, 3))
def test_ambiguous_zone_is_monotone(case, low, widen_low, high, widen_high):
    high = max(high, -low)  # a non-empty zone
    narrow = AmbiguousZoneFilter(low=low, high=high)
    wide = AmbiguousZoneFilter(low=low + widen_low, high=high + widen_high)
    kept_narrow = _kept(narrow, case)
    assert kept_narrow <= _kept(wide, case)
    batch = case.batch()
    lowest = dict(zip(_pairs_list(batch.candidates), batch.lowest_positive("score")))
    scores = {(q, d): s for q, d, _, s in _rows(case.candidates)}
    assert all(lowest[k] - low <= scores[k] <= lowest[k] + high for k in kept_narrow)


# (d) the composed pipeline -------------------------------------------------------------------------------


@dataclass
class TableRetriever(Stage, register=False):
    """A retriever stand-in: hands out the prepared candidate rows of the batch's queries, positives scored."""

    kind: ClassVar[str] = "fake"
    phase: ClassVar[Phase] = Phase.RETRIEVE
    case: Case = field(repr=False)

    def apply(self, batch: CandidateBatch) -> CandidateBatch:
        return self.case.batch(batch.queries)


WINDOWS = st.integers(0, 3).flatmap(lambda lo: st.tuples(st.just(lo), st.one_of(st.none(), st.integers(lo + 1, 12))))


@SETTINGS
@given(cases(), WINDOWS, st.integers(1, 5), st.sampled_from(STRATEGIES), st.integers(0, 1000), st.integers(1, 2))
def test_pipeline_never_emits_a_positive_and_at_most_n_per_query(case, window, n, strategy, seed, chunk_size):
    data = case.data

    def run(chunk: int) -> list[pa.Table]:
        stages = [TableRetriever(case), PositiveExcluder(), RankWindow(*window),
                  NegativeSelector(num_negatives=n, strategy=strategy, seed=seed)]
        return [b.candidates for b in Pipeline(stages, chunk_size=chunk).run(data)]

    tables = run(chunk_size)
    out = pa.concat_tables(tables)
    for q, d, rank, _ in _rows(out):
        assert d not in data.positives_of(q).tolist()
        assert normalize_text(data.doc_texts[d]) not in _banned_keys(data, q)
        assert rank > window[0] and (window[1] is None or rank <= window[1])
    assert all(c <= n for c in _per_query(out).values())
    # Chunking changes nothing, sampling included.
    assert _rows(pa.concat_tables(run(100))) == _rows(out)
    # The written form agrees: no triplet pairs a query with one of its positives (or a copy) as negative.
    triplets = pa.concat_tables([triplet_table(b) for b in Pipeline(
        [TableRetriever(case), PositiveExcluder(), RankWindow(*window),
         NegativeSelector(num_negatives=n, strategy=strategy, seed=seed)], chunk_size=chunk_size).run(data)])
    for qid, neg, pos_text in zip(*(triplets.column(c).to_pylist() for c in ("query_id", "negative", "positive"))):
        q = data.query_ids.index(qid)
        assert normalize_text(neg) not in _banned_keys(data, q)
        assert normalize_text(neg) != normalize_text(pos_text)
