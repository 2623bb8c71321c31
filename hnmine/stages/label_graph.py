"""A teacher read off the labels of *other* queries: drop candidates that a labelled set says are likely relevant.

With one known positive per query, the false negatives among the hard candidates are documents nobody labelled
for *this* query. A set of queries with dense labels over the same corpus (NFCorpus train; a team's own judged
queries) knows which documents keep being marked relevant together: a candidate that the labelled queries
closest to this query mark relevant, or that is co-relevant with this query's known positive, is probably a
hidden positive. ``hnmine.evaluation.label_graph.LabelGraph`` turns those labels into signals; this stage learns
how to combine them, on the labelled set itself, and drops the candidates it judges likely relevant.

How it learns, without ever letting a query's own labels judge it:

* the graph is built from the labelled queries' positives (grade > 0), minus every labelled query whose id is
  also a mined query's id;
* each labelled query (or a seeded sample of ``fit_queries`` of them, from a large labelled set) plays a mined
  one: one known positive (its highest grade, ties broken with ``seed``),
  candidates = its dense top ``depth`` minus that positive, label = whether a candidate is one of its other
  positives. Its signals come from the graph of the *other* folds' labelled queries (``folds``), so it is
  judged the way a mined query is, by labels that are not its own;
* seeded gradient-boosted trees (scikit-learn's ``HistGradientBoostingClassifier``) learn the probability that
  a candidate is relevant from the signals, each one's per-query z-score, log rank, the mining model's cosine
  and its per-query z-score. Mined candidates get the same features from the full graph.

The probability is written as ``label_graph_probability``; candidates with probability >= ``max_probability``
are dropped. Measured through ``hnmine mine`` on NFCorpus dev with NFCorpus train as the labelled set (README,
"Teachers"): it catches 70.8 +- 0.8 % of the hidden positives among ranks 1-50 at 10 % false alarms (a
probability near 0.20; AUC 0.91), and the default 0.25 emits 8.3 % false negatives at mean rank 5.9 where the
same window without it emits 27.5 % at 3.0.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from hnmine.candidates import LABEL_GRAPH_PROBABILITY, CandidateBatch, set_column
from hnmine.data import MiningData
from hnmine.errors import MAX_RANK, InputError
from hnmine.evaluation.label_graph import SIGNALS, LabelGraph
from hnmine.stage import Phase, Stage, option, seed_option
from hnmine.stages.dense import DenseRetriever
from hnmine.stages.false_negatives import query_spread


@dataclass(frozen=True)
class LabelledSet:
    """The labelled queries a graph is built from: ids, texts, and one (query, doc, grade) row per positive."""

    query_ids: list[str]
    query_texts: list[str]
    query_idx: np.ndarray
    doc_idx: np.ndarray
    grade: np.ndarray
    excluded: int  # labelled queries left out because a mined query has the same id

    @property
    def num_queries(self) -> int:
        return len(self.query_ids)


def read_labelled_set(queries: str, qrels: str, data: MiningData) -> LabelledSet:
    """The labelled set, read by the project's input readers (any format ``--queries``/``--qrels`` read).

    A qrels row naming a query the queries file lacks, or a document the corpus lacks, is an error naming the
    file and the row, as for the mining input: the graph is over *this* corpus, and a silently dropped label
    would weaken the teacher without a word.
    """
    from hnmine.io.inputs import _link_qrels, graded_qrels, read_queries
    from hnmine.io.readers import read_table

    query_ids, query_texts = read_queries(queries)
    rows = graded_qrels(read_table(qrels, "qrels"), qrels)
    pairs = _link_qrels([(q, d) for q, d, _ in rows], query_ids, data.doc_positions({d for _, d, _ in rows}), qrels)
    mined = set(data.query_ids)
    used = sorted({q for q, _ in pairs if query_ids[q] not in mined})
    excluded = len({q for q, _ in pairs}) - len(used)
    if not used:
        why = f" ({excluded} share an id with a mined query)" if excluded else ""
        raise InputError(f"--label-graph-qrels {qrels}: no labelled query with a positive (score > 0) is left to "
                         f"learn from{why}")
    new = {q: i for i, q in enumerate(used)}
    keep = [(new[q], d, g) for (q, d), (_, _, g) in zip(pairs, rows) if q in new]
    q_idx, d_idx, grade = (np.array(c) for c in zip(*keep))
    if not (np.bincount(q_idx) >= 2).any():
        raise InputError(f"--label-graph-qrels {qrels}: no labelled query has two or more positives; the teacher "
                         "learns what a hidden positive looks like from a query's other positives")
    return LabelledSet([query_ids[q] for q in used], [query_texts[q] for q in used], q_idx.astype(np.int64),
                       d_idx.astype(np.int64), grade.astype(np.float64), excluded)


def per_query_z(values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """(value - the query's mean) / the query's standard deviation (1 where it is 0)."""
    mean, sd = query_spread(values, query)
    return (values - mean) / np.where(sd > 0, sd, 1.0)


def signal_features(graph: LabelGraph, query_emb: np.ndarray, query_texts: list[str], q: np.ndarray,
                    d: np.ndarray, known: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """The graph's signals and each one's per-query z-score (a signal read against the query's other candidates).

    ``q`` indexes ``query_emb``, ``query_texts`` and ``known`` (each query's known positive, a document index)."""
    raw = graph.signals(query_emb, q, d, known, rank, query_texts)
    zs = np.stack([per_query_z(raw[:, j], q) for j in range(len(SIGNALS))], axis=1)
    return np.nan_to_num(np.c_[raw, zs])


def teacher_features(graph: LabelGraph, query_emb: np.ndarray, query_texts: list[str], q: np.ndarray,
                     d: np.ndarray, known: np.ndarray, rank: np.ndarray, cosine: np.ndarray) -> np.ndarray:
    """One row per candidate: ``signal_features``, log rank, the mining model's cosine and its per-query z."""
    cosine = np.asarray(cosine, dtype=np.float64)
    extra = np.stack([np.log(np.maximum(rank, 1)), cosine, per_query_z(cosine, q)], axis=1)
    return np.c_[signal_features(graph, query_emb, query_texts, q, d, known, rank), extra]


@dataclass
class LabelGraphDenoiser(Stage):
    """Drops candidates whose estimated probability of being relevant, learned from a labelled set, is at or
    above ``max_probability``. ``dense`` is the pipeline's own retriever, so nothing is encoded twice."""

    kind: ClassVar[str] = "label_graph"
    phase: ClassVar[Phase] = Phase.FILTER
    summary_label: ClassVar[str] = "dropped by the label-graph teacher"
    adds_columns: ClassVar[tuple[str, ...]] = (LABEL_GRAPH_PROBABILITY,)
    queries: str | None = None  # the labelled set: a queries file and its qrels (checked in __post_init__)
    qrels: str | None = None
    max_probability: float = option(0.25, flag="--label-graph-max-probability", above=0.0, maximum=1.0)
    depth: int = option(50, flag="--label-graph-depth", minimum=1, maximum=MAX_RANK)
    folds: int = option(3, flag="--label-graph-folds", minimum=2, maximum=1000)
    fit_queries: int = option(5000, flag="--label-graph-fit-queries", minimum=10, maximum=10_000_000)
    # RLHN with this teacher: the dropped candidates it is surest of become flagged extra positives. A threshold
    # of its own, above the drop threshold by default: at 0.25 half of what it drops is truly relevant on NFCorpus
    # dev, at 0.5 about three quarters (a wrong extra positive teaches the opposite of a wrong negative).
    relabel: bool = False
    relabel_probability: float = option(0.5, flag="--label-graph-relabel-probability", above=0.0, maximum=1.0)
    seed: int = seed_option()
    dense: DenseRetriever = field(default_factory=DenseRetriever)
    _labelled: LabelledSet | None = field(default=None, init=False, repr=False)
    _for: MiningData | None = field(default=None, init=False, repr=False)
    _graph: LabelGraph | None = field(default=None, init=False, repr=False)
    _model: Any = field(default=None, init=False, repr=False)
    _notes: dict = field(default_factory=dict, init=False, repr=False)
    _relabeled: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        for flag, value in (("--label-graph-queries", self.queries), ("--label-graph-qrels", self.qrels)):
            if value is None:
                raise InputError("the label-graph teacher needs a labelled set: give --label-graph-queries and "
                                 "--label-graph-qrels")
            if not Path(value).exists():
                raise InputError(f"{flag} {value}: not found")

    def notes(self) -> dict[str, Any]:
        if self.relabel:
            return {**self._notes, "label-graph teacher: likely false negatives written as extra positives "
                                   "(relabeled)": self._relabeled}
        return dict(self._notes)

    def check_data(self, data: MiningData) -> None:
        """Read the labelled set against the mining data: unknown ids fail here, before any encoding.

        The two files join the data's sources, so the run manifest lists and hashes them with the other inputs
        (a resumed run already notices a changed one: the checkpoint fingerprint hashes every file a stage names)."""
        if self._labelled is None or self._for is not data:
            self._labelled, self._for, self._model = read_labelled_set(self.queries, self.qrels, data), data, None
            data.source.update({"label_graph_queries": str(self.queries), "label_graph_qrels": str(self.qrels)})

    def prepare(self, data: MiningData) -> None:
        self.check_data(data)
        if self._model is not None:
            return
        self.dense.prepare(data)
        start = time.perf_counter()
        labelled = self._labelled
        assert labelled is not None
        encoder = self.dense.encoder()
        query_prompt, _ = self.dense.prompts(encoder)
        emb = self.engine.encode(encoder, labelled.query_texts, query_prompt, "encode labelled queries")
        dim = self.dense.corpus_dimension()
        if emb.shape[1] != dim:
            raise InputError(f"the labelled queries' embeddings (model {self.dense.model}) have dimension "
                             f"{emb.shape[1]}, the corpus embeddings {dim}")
        n = labelled.num_queries
        # The queries that play mined ones: all, or a seeded sample of fit_queries (the trees need thousands of
        # queries, not a large labelled set's hundreds of thousands; every labelled query still votes in the graph).
        fit = np.arange(n) if n <= self.fit_queries else np.sort(
            np.random.default_rng([self.seed, 1]).choice(n, self.fit_queries, replace=False))
        idx, scores = self.dense.search_vectors(emb[fit], self.depth + 1)
        known = self._known_positives(labelled)
        q, d, rank, cosine, y = _fitting_candidates(labelled, fit, known[fit], idx, scores, self.depth)
        if y.all() or not y.any():
            raise InputError(f"--label-graph-qrels {self.qrels}: the labelled queries' top {self.depth} "
                             f"candidates hold {'only' if y.all() else 'none of'} their other positives; nothing "
                             "to learn from")
        fold = np.random.default_rng(self.seed).permutation(len(fit)) % self.folds
        x = np.zeros((len(q), 2 * len(SIGNALS) + 3))
        for k in range(self.folds):
            rows, positions = fold[q] == k, np.flatnonzero(fold == k)
            if rows.any():
                local = np.searchsorted(positions, q[rows])
                members = fit[positions]
                others = np.ones(n, dtype=bool)
                others[members] = False
                graph = self._graph_of(labelled, emb, others, data.num_docs)
                texts = [labelled.query_texts[i] for i in members]
                x[rows] = teacher_features(graph, emb[members], texts, local, d[rows], known[members], rank[rows],
                                           cosine[rows])
        from sklearn.ensemble import HistGradientBoostingClassifier

        with _one_thread():
            self._model = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05,
                                                         random_state=self.seed % (1 << 32)).fit(x, y)
        self._graph = self._graph_of(labelled, emb, np.ones(n, dtype=bool), data.num_docs)
        self._notes.update({
            "label-graph teacher: labelled queries": n,
            "label-graph teacher: labelled queries left out (same id as a mined query)": labelled.excluded,
            "label-graph teacher: fitting queries": len(fit),
            "label-graph teacher: fitting candidates": len(q),
            "label-graph teacher: hidden positives among them": f"{y.mean():.1%}",
            "label-graph teacher: fit seconds": round(time.perf_counter() - start, 2),
        })

    def _known_positives(self, labelled: LabelledSet) -> np.ndarray:
        """Each labelled query's one known positive: its highest grade, ties broken by ``default_rng([seed, i])``."""
        known = np.empty(labelled.num_queries, dtype=np.int64)
        order = np.argsort(labelled.query_idx, kind="stable")
        bounds = np.searchsorted(labelled.query_idx[order], np.arange(labelled.num_queries + 1))
        for i in range(labelled.num_queries):
            rows = order[bounds[i]:bounds[i + 1]]
            grades = labelled.grade[rows]
            best = labelled.doc_idx[rows][grades == grades.max()]
            known[i] = int(np.random.default_rng([self.seed, i]).choice(best))
        return known

    @staticmethod
    def _graph_of(labelled: LabelledSet, emb: np.ndarray, columns: np.ndarray, num_docs: int) -> LabelGraph:
        """The graph of the labelled queries where ``columns`` is True."""
        new = np.cumsum(columns) - 1
        rows = columns[labelled.query_idx]
        texts = [t for t, keep in zip(labelled.query_texts, columns) if keep]
        return LabelGraph.from_pairs(labelled.doc_idx[rows], new[labelled.query_idx[rows]], num_docs, emb[columns],
                                     texts)

    def apply(self, batch: CandidateBatch) -> CandidateBatch:
        if batch.num_candidates == 0:
            # the flag column of every output layout depends on the option, never on a chunk's data
            return batch.add_relabeled(batch.candidates.slice(0, 0)) if self.relabel else batch
        self.prepare(batch.data)
        assert self._graph is not None and self.dense._query_emb is not None
        cand = batch.candidates
        q = cand.column("query_idx").to_numpy()
        d = cand.column("doc_idx").to_numpy()
        rank = cand.column("rank").to_numpy()
        queries, local = np.unique(q, return_inverse=True)
        cosine = self.dense.score_pairs(q, d)
        positives = batch.positives
        pq, pd = positives.column("query_idx").to_numpy(), positives.column("doc_idx").to_numpy()
        known_of = [pd[pq == i] for i in queries]
        texts = [batch.data.query_texts[i] for i in queries]
        # Several known positives: the candidate's highest probability over them (the most cautious reading).
        # Slot s judges only the queries with more than s positives, all their candidates together (every feature
        # is read within its query), so the work is the number of (candidate, positive) pairs. A query without
        # a positive has nothing to compare with: not judged (NaN), kept.
        probability = np.full(len(q), np.nan)
        for slot in range(max((len(k) for k in known_of), default=0)):
            judged = np.flatnonzero([len(k) > slot for k in known_of])
            rows = np.isin(local, judged)
            known = np.array([known_of[i][slot] for i in judged], dtype=np.int64)
            x = teacher_features(self._graph, self.dense._query_emb[queries[judged]], [texts[i] for i in judged],
                                 np.searchsorted(judged, local[rows]), d[rows], known, rank[rows], cosine[rows])
            with _one_thread():
                probability[rows] = np.fmax(probability[rows], self._model.predict_proba(x)[:, 1])
        cand = set_column(cand, LABEL_GRAPH_PROBABILITY, probability, pa.float32())
        with np.errstate(invalid="ignore"):
            drop = probability >= self.max_probability
            likely = drop & (probability >= self.relabel_probability)
        out = batch.with_candidates(cand).keep(~drop)
        if self.relabel:
            self._relabeled += int(likely.sum())
            out = out.add_relabeled(cand.filter(pa.array(likely)))
        return out


def _one_thread() -> Any:
    """scikit-learn's trees on one OpenMP thread. Its threads spin while they wait, and on cores shared with
    other work that is ruinous: fitting 3,350 rows took 172 s with the default threads on a busy 2-core machine,
    5 s on one. The fit is seconds on one thread at NFCorpus scale, small next to encoding the corpus."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="openmp")


def _fitting_candidates(labelled: LabelledSet, fit: np.ndarray, known: np.ndarray, idx: np.ndarray,
                        scores: np.ndarray, depth: int) -> tuple[np.ndarray, ...]:
    """The top ``depth`` minus the known positive of each fitting query (labelled query ``fit[i]``, search row
    ``i``): (position i, doc, rank, cosine, is-positive)."""
    positive = set(zip(labelled.query_idx.tolist(), labelled.doc_idx.tolist()))
    cols: list[list] = [[], [], [], [], []]
    for i in range(len(idx)):
        ok = (idx[i] >= 0) & (idx[i] != known[i])
        docs, sims = idx[i][ok][:depth], scores[i][ok][:depth]
        cols[0].extend([i] * len(docs))
        cols[1].extend(docs.tolist())
        cols[2].extend(range(1, len(docs) + 1))
        cols[3].extend(sims.tolist())
        cols[4].extend((int(fit[i]), int(doc)) in positive for doc in docs)
    q, d, rank = (np.array(c, dtype=np.int64) for c in cols[:3])
    return q, d, rank, np.array(cols[3], dtype=np.float64), np.array(cols[4], dtype=bool)
