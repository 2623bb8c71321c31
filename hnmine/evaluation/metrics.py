"""Judging a mined file after the fact: false negatives against a fuller label set, hardness, coverage, honesty.

Everything is computed on distinct (query_id, negative_id) pairs. Triplet rows repeat each negative once per
positive of its query, so counting rows would let a query with many positives dominate every figure.

* **False negatives**: a distinct emitted negative that LABELS (qrels: ``query_id``, ``doc_id``, optional
  ``score``; relevant when ``score > 0`` or when there is no score) marks relevant. LABELS is typically a
  fuller or held-out judgement set than the one mined with, so this estimates how many emitted "negatives"
  are really positives. Split by ``retriever`` and ``tier`` when those columns are present.
* **Hardness**: per score scale present (the retriever's ``negative_score``/``positive_score``, the
  cross-encoder's ``negative_ce_score``/``positive_ce_score``): the distribution of negative scores and of
  the gap ``p - s`` (``p``: the query's lowest positive score, ``s``: the negative's). Small or negative
  gaps are hard negatives; very small gaps are where false negatives live.
* **Coverage**: queries, negatives per query, queries short of a target count.
* **Duplicates / honesty**: the same negative twice for the same (query, positive); negatives whose
  normalised text (``data.normalize_text``, the form hnmine excludes by) equals one of the query's positives
  or the query itself. hnmine never emits either, so both counts should be 0 for its output.

The functions here are pure (tables in, dicts out); ``write_report`` is the only one that writes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hnmine.candidates import CE_SCORE, SCORE, TEACHER_COSINE
from hnmine.data import normalize_text
from hnmine.errors import InputError
from hnmine.io.inputs import id_column

# scale name -> (negative score column, positive score column), as every output layout names them
SCORE_SCALES: dict[str, tuple[str, str]] = {
    scale: (f"negative_{column}", f"positive_{column}")
    for scale, column in (("retriever", SCORE), ("cross_encoder", CE_SCORE), ("teacher_cosine", TEACHER_COSINE))
}
SCALE_LABELS = {"retriever": "retriever score", "cross_encoder": "cross-encoder score",
                "teacher_cosine": "bi-encoder teacher cosine"}
NO_VALUE = "(none)"
WORST_QUERIES = 10


# ---------------------------------------------------------------------------------------------------- helpers


def summarize(values: Iterable[float] | np.ndarray) -> dict[str, Any]:
    """n, min, p25, median, p75, max, mean of the finite values (NaN dropped); None for each when n is 0.

    Percentiles use numpy's default linear interpolation.
    """
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if len(arr) == 0:
        return {"n": 0, "min": None, "p25": None, "median": None, "p75": None, "max": None, "mean": None}
    p25, median, p75 = np.percentile(arr, [25, 50, 75])
    return {"n": len(arr), "min": float(arr.min()), "p25": float(p25), "median": float(median),
            "p75": float(p75), "max": float(arr.max()), "mean": float(arr.mean())}


def _rate(count: int, total: int) -> float | None:
    return count / total if total else None


def _codes(values: list[str]) -> tuple[np.ndarray, list[str]]:
    """Integer codes (first-seen order) and the distinct values."""
    if not values:
        return np.zeros(0, np.int64), []
    encoded = pc.dictionary_encode(pa.array(values, pa.string()))
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), encoded.dictionary.to_pylist()


def _floats(table: pa.Table, name: str, path: str | Path) -> np.ndarray | None:
    if name not in table.column_names:
        return None
    column = table.column(name)
    if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type) or pa.types.is_null(column.type)):
        raise InputError(f"{path}: column '{name}' has type {column.type}, expected a number")
    filled = pc.fill_null(pc.cast(column, pa.float64()), float("nan"))
    return np.asarray(filled.to_numpy(), dtype=np.float64)


def _text_array(table: pa.Table, name: str, path: str | Path) -> pa.Array:
    column = table.column(name)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise InputError(f"{path}: column '{name}' has type {column.type}, expected text")
    return column.combine_chunks()


def _strings(table: pa.Table, name: str) -> list[str | None] | None:
    if name not in table.column_names:
        return None
    return [None if v is None else str(v) for v in table.column(name).to_pylist()]


# ---------------------------------------------------------------------------------------------------- inputs


def relevant_pairs(labels: pa.Table, path: str | Path = "labels") -> set[tuple[str, str]]:
    """(query_id, doc_id) pairs LABELS marks relevant: ``score > 0``, or every row when there is no score."""
    from hnmine.io.inputs import qrels_pairs

    return set(qrels_pairs(labels, path))


@dataclass
class MinedPairs:
    """A triplet table reduced to distinct (query, negative) pairs, plus the per-row arrays still needed."""

    table: pa.Table
    path: str
    query_ids: list[str]                 # distinct query ids, indexed by query code
    doc_ids: list[str]                   # distinct negative ids, indexed by doc code
    row_query: np.ndarray                # per row: query code
    row_negative: np.ndarray             # per row: negative code
    first_row: np.ndarray                # per distinct pair: the first row holding it (file order)
    pair_query: np.ndarray               # per distinct pair: query code
    pair_negative: np.ndarray            # per distinct pair: negative code

    @property
    def num_pairs(self) -> int:
        return len(self.first_row)

    @property
    def num_queries(self) -> int:
        return len(self.query_ids)

    def pair_values(self, name: str) -> list | None:
        """A column's value on each distinct pair (taken from the pair's first row)."""
        if name not in self.table.column_names:
            return None
        return self.table.column(name).take(pa.array(self.first_row, pa.int64())).to_pylist()

    def pair_floats(self, name: str) -> np.ndarray | None:
        values = _floats(self.table, name, self.path)
        return None if values is None else values[self.first_row]


def mined_pairs(mined: pa.Table, path: str | Path = "mined") -> MinedPairs:
    """Deduplicate (query_id, negative_id): triplet rows repeat each negative once per positive."""
    for name in ("query_id", "negative_id"):
        if name not in mined.column_names:
            raise InputError(f"{path}: missing required column '{name}' (columns present: "
                             f"{', '.join(mined.column_names) or 'none'}); evaluate a --format triplet file "
                             "written with audit columns")
    for name in ("query", "positive", "negative"):
        if name in mined.column_names:
            _text_array(mined, name, path)
    row_q, qids = _codes(id_column(mined, path, "query_id"))
    row_n, dids = _codes(id_column(mined, path, "negative_id"))
    key = row_q * max(len(dids), 1) + row_n
    _, first = np.unique(key, return_index=True)
    first = np.sort(first)
    return MinedPairs(mined, str(path), qids, dids, row_q, row_n, first, row_q[first], row_n[first])


# ---------------------------------------------------------------------------------------------------- metrics


def false_negatives(pairs: MinedPairs, relevant: set[tuple[str, str]], worst: int = WORST_QUERIES) -> dict[str, Any]:
    """Share of distinct emitted negatives that LABELS marks relevant, overall, per retriever/tier, worst queries."""
    qids, dids = pairs.query_ids, pairs.doc_ids
    is_fn = np.fromiter(((qids[q], dids[d]) in relevant for q, d in zip(pairs.pair_query.tolist(),
                                                                      pairs.pair_negative.tolist())),
                        bool, count=pairs.num_pairs)
    labelled_queries = {q for q, _ in relevant}
    result: dict[str, Any] = {
        "negatives": pairs.num_pairs,
        "false_negatives": int(is_fn.sum()),
        "rate": _rate(int(is_fn.sum()), pairs.num_pairs),
        "queries_without_labels": sum(q not in labelled_queries for q in qids),
    }
    for column, key in (("retriever", "by_retriever"), ("tier", "by_tier"), ("filled", "by_filled")):
        values = pairs.pair_values(column)
        if values is None:
            continue
        groups: dict[str, list[int]] = {}
        for value, fn in zip(values, is_fn.tolist()):
            name = NO_VALUE if value is None else str(value).lower() if isinstance(value, bool) else str(value)
            counts = groups.setdefault(name, [0, 0])
            counts[0] += 1
            counts[1] += fn
        result[key] = {name: {"negatives": n, "false_negatives": f, "rate": _rate(f, n)}
                       for name, (n, f) in sorted(groups.items())}
    per_query_fn = np.bincount(pairs.pair_query[is_fn], minlength=pairs.num_queries)
    per_query_n = np.bincount(pairs.pair_query, minlength=pairs.num_queries)
    query_text = _first_per_query(pairs, "query")
    order = sorted(np.flatnonzero(per_query_fn).tolist(), key=lambda q: (-per_query_fn[q], qids[q]))
    result["worst_queries"] = [
        {"query_id": qids[q], **({"query": query_text[q]} if query_text is not None else {}),
         "negatives": int(per_query_n[q]), "false_negatives": int(per_query_fn[q]),
         "false_negative_ids": [dids[d] for d in pairs.pair_negative[is_fn & (pairs.pair_query == q)].tolist()]}
        for q in order[:worst]
    ]
    result["queries_with_false_negatives"] = len(order)
    return result


def catch_rates(before: MinedPairs, after: MinedPairs, relevant: set[tuple[str, str]]) -> dict[str, Any]:
    """What a filter removed, judged by LABELS: BEFORE is the run without it, AFTER the run with it.

    * **catch rate**: the share of BEFORE's labelled-relevant (query, negative) pairs that AFTER no longer has
      (false negatives the filter caught);
    * **false-alarm rate**: the share of BEFORE's other pairs that AFTER no longer has (true negatives it threw
      away, which costs hardness and coverage).

    Both files must list every candidate the filter saw (mine them with ``--num-negatives`` at least the rank
    window's width), or "not written" would count selection as removal. Pairs in AFTER but not in BEFORE mean
    the two runs did not share candidates; they are counted, not ignored.
    """
    def as_set(pairs: MinedPairs) -> set[tuple[str, str]]:
        return {(pairs.query_ids[q], pairs.doc_ids[d])
                for q, d in zip(pairs.pair_query.tolist(), pairs.pair_negative.tolist())}

    b, a = as_set(before), as_set(after)
    removed = b - a
    hidden = {p for p in b if p in relevant}
    caught = len(removed & hidden)
    false_alarms = len(removed) - caught
    return {
        "candidates_before": len(b), "candidates_after": len(a & b), "removed": len(removed),
        "relevant_before": len(hidden), "caught": caught, "catch_rate": _rate(caught, len(hidden)),
        "false_alarms": false_alarms, "false_alarm_rate": _rate(false_alarms, len(b) - len(hidden)),
        "after_not_in_before": len(a - b),
    }


def _first_per_query(pairs: MinedPairs, name: str) -> list[str | None] | None:
    if name not in pairs.table.column_names:
        return None
    _, first = np.unique(pairs.row_query, return_index=True)  # query codes are 0..n-1, so one row per code
    return [None if v is None else str(v) for v in pairs.table.column(name).take(pa.array(first)).to_pylist()]


def lowest_positive_scores(pairs: MinedPairs, column: str) -> np.ndarray:
    """Per query code: the lowest positive score over its rows (NaN where none is known)."""
    scores = _floats(pairs.table, column, pairs.path)
    low = np.full(pairs.num_queries, np.inf)
    if scores is not None and len(scores):
        finite = np.isfinite(scores)
        np.minimum.at(low, pairs.row_query[finite], scores[finite])
    low[np.isinf(low)] = np.nan
    return low


@dataclass
class ScaleValues:
    """The raw numbers behind one scale's hardness figures (kept for plots)."""

    negative: np.ndarray
    positive: np.ndarray          # per query: lowest positive score
    gap: np.ndarray
    retriever: list[str] = field(default_factory=list)


def scale_values(pairs: MinedPairs) -> dict[str, ScaleValues]:
    """Negative scores and gaps ``p - s`` per distinct pair, for each score scale the file carries."""
    out: dict[str, ScaleValues] = {}
    retrievers = pairs.pair_values("retriever")
    for scale, (neg_col, pos_col) in SCORE_SCALES.items():
        negative = pairs.pair_floats(neg_col)
        if negative is None or not np.isfinite(negative).any():
            continue
        positive = lowest_positive_scores(pairs, pos_col)
        gap = positive[pairs.pair_query] - negative
        names = [NO_VALUE if r is None else str(r) for r in retrievers] if retrievers is not None else []
        out[scale] = ScaleValues(negative, positive, gap, names)
    return out


def hardness(pairs: MinedPairs, values: dict[str, ScaleValues] | None = None) -> dict[str, Any]:
    """Score and gap distributions per scale; retriever scores also per retriever when several are mixed
    (BM25 and cosine scores are not comparable). ``rank`` summarises ``negative_rank`` when present."""
    values = scale_values(pairs) if values is None else values
    result: dict[str, Any] = {}
    for scale, v in values.items():
        entry: dict[str, Any] = {"negative_score": summarize(v.negative),
                                 "lowest_positive_score": summarize(v.positive), "gap": summarize(v.gap),
                                 "negatives_above_positive": int((v.gap < 0).sum())}
        if scale == "retriever" and len(set(v.retriever)) > 1:
            names = np.array(v.retriever, dtype=object)
            entry["by_retriever"] = {name: {"negative_score": summarize(v.negative[names == name]),
                                            "gap": summarize(v.gap[names == name])}
                                     for name in sorted(set(v.retriever))}
        result[scale] = entry
    ranks = pairs.pair_floats("negative_rank")
    if ranks is not None:
        result["rank"] = summarize(ranks)
    return result


def negatives_per_query(pairs: MinedPairs) -> np.ndarray:
    return np.bincount(pairs.pair_query, minlength=pairs.num_queries)


def coverage(pairs: MinedPairs, relevant: set[tuple[str, str]] | None = None,
             num_negatives: int | None = None, listed: int = 20) -> dict[str, Any]:
    """Queries, the negatives-per-query histogram, and queries with fewer than ``num_negatives`` negatives
    (default: the most any query has). A query mined with no negative has no triplet row, so it cannot
    show up here; ``label_queries_not_in_mined`` counts LABELS queries absent from MINED instead."""
    counts = negatives_per_query(pairs)
    target = int(counts.max()) if num_negatives is None and len(counts) else (num_negatives or 0)
    short = np.flatnonzero(counts < target)
    values, freq = np.unique(counts, return_counts=True)
    result: dict[str, Any] = {
        "queries": pairs.num_queries,
        "rows": pairs.table.num_rows,
        "negatives": pairs.num_pairs,
        "distinct_negative_documents": len(pairs.doc_ids),
        "negatives_per_query": summarize(counts),
        "negatives_per_query_histogram": {str(int(k)): int(n) for k, n in zip(values, freq)},
        "target_negatives": target,
        "short_queries": len(short),
        "short_query_ids": [pairs.query_ids[q] for q in short[:listed].tolist()],
    }
    filled = pairs.pair_values("filled")
    if filled is not None:
        result["filled_negatives"] = sum(bool(f) for f in filled)
    if relevant is not None:
        mined = set(pairs.query_ids)
        result["label_queries_not_in_mined"] = len({q for q, _ in relevant} - mined)
    return result


def duplicates(pairs: MinedPairs) -> dict[str, Any]:
    """Honesty checks; each count should be 0 for hnmine's own output.

    * ``repeated_rows``: rows repeating a (query, positive, negative) already seen, i.e. the same negative
      twice for the same positive (the per-positive repetition of triplet files is not counted). Needs
      ``positive_id`` or ``positive``; None otherwise.
    * ``negative_equals_positive`` / ``negative_equals_query``: distinct (query, negative) pairs whose
      normalised negative text equals one of that query's positive texts / the query text.
    * ``same_text_negatives``: distinct pairs whose normalised text repeats another negative of the same
      query under a different id (near-duplicate documents in the corpus).
    """
    table = pairs.table
    result: dict[str, Any] = {"rows": table.num_rows, "repeated_rows": None, "negative_equals_positive": None,
                              "negative_equals_query": None, "same_text_negatives": None}
    pos_name = "positive_id" if "positive_id" in table.column_names else (
        "positive" if "positive" in table.column_names else None)
    if pos_name is not None:
        pos_codes, _ = _codes([NO_VALUE if v is None else v for v in _strings(table, pos_name) or []])
        triples = np.stack([pairs.row_query, pos_codes, pairs.row_negative], axis=1) if table.num_rows else \
            np.zeros((0, 3), np.int64)
        result["repeated_rows"] = int(table.num_rows - len(np.unique(triples, axis=0)))
    negatives = pairs.pair_values("negative")
    if negatives is None:
        return result
    neg_norm = [None if t is None else normalize_text(t) for t in negatives]
    if "positive" in table.column_names:
        # normalise each distinct text once, and each (query, positive text) once, not once per row
        encoded = pc.dictionary_encode(_text_array(table, "positive", pairs.path))
        valid = pc.is_valid(encoded.indices).to_numpy(zero_copy_only=False)
        codes = pc.fill_null(encoded.indices, 0).to_numpy(zero_copy_only=False).astype(np.int64)
        normal = [normalize_text(t) for t in encoded.dictionary.to_pylist()]
        pos_texts: list[set[str]] = [set() for _ in range(pairs.num_queries)]
        for q, c in np.unique(np.stack([pairs.row_query[valid], codes[valid]], axis=1), axis=0).tolist():
            pos_texts[q].add(normal[c])
        result["negative_equals_positive"] = sum(
            n is not None and n in pos_texts[q] for q, n in zip(pairs.pair_query.tolist(), neg_norm))
    queries = _first_per_query(pairs, "query")
    if queries is not None:
        q_norm = [None if t is None else normalize_text(t) for t in queries]
        result["negative_equals_query"] = sum(
            n is not None and n == q_norm[q] for q, n in zip(pairs.pair_query.tolist(), neg_norm))
    distinct_texts = {(q, n) for q, n in zip(pairs.pair_query.tolist(), neg_norm) if n is not None}
    result["same_text_negatives"] = sum(n is not None for n in neg_norm) - len(distinct_texts)
    return result


def lengths(pairs: MinedPairs) -> dict[str, Any] | None:
    """Characters of the distinct negatives' texts (None without a ``negative`` column)."""
    negatives = pairs.pair_values("negative")
    if negatives is None:
        return None
    return {"negative_chars": summarize(np.array([len(t) for t in negatives if t is not None], dtype=np.float64))}


# ---------------------------------------------------------------------------------------------------- all


@dataclass
class Evaluation:
    metrics: dict[str, Any]
    pairs: MinedPairs
    scales: dict[str, ScaleValues]


def evaluate(mined: pa.Table, labels: pa.Table, num_negatives: int | None = None, mined_path: str | Path = "mined",
             labels_path: str | Path = "labels", worst: int = WORST_QUERIES, before: pa.Table | None = None,
             before_path: str | Path = "before") -> Evaluation:
    """Every figure of ``hnmine eval`` as one JSON-able dict (plus the raw values the plots need)."""
    if num_negatives is not None and num_negatives < 1:
        raise InputError(f"--num-negatives {num_negatives}: expected at least 1")
    pairs = mined_pairs(mined, mined_path)
    relevant = relevant_pairs(labels, labels_path)
    labelled_queries = {q for q, _ in relevant}
    if pairs.num_queries and not labelled_queries.intersection(pairs.query_ids):
        # A false-negative rate of 0.00 % here would only mean the ids differ (another split, another id scheme).
        example = ", ".join(repr(q) for q in pairs.query_ids[:3])
        raise InputError(f"{labels_path}: none of the {pairs.num_queries:,} mined queries has a label there "
                         f"(mined query ids such as {example}); nothing to measure: check the split and the id columns")
    scales = scale_values(pairs)
    metrics = {
        "inputs": {"mined": str(mined_path), "labels": str(labels_path), "mined_rows": mined.num_rows,
                   "relevant_label_pairs": len(relevant)},
        "false_negatives": false_negatives(pairs, relevant, worst),
        "hardness": hardness(pairs, scales),
        "coverage": coverage(pairs, relevant, num_negatives),
        "duplicates": duplicates(pairs),
        "lengths": lengths(pairs),
    }
    if before is not None:
        metrics["inputs"]["before"] = str(before_path)
        metrics["filter"] = catch_rates(mined_pairs(before, before_path), pairs, relevant)
    synthetic = synthetic_negatives(pairs, scales, read_run_notes(mined_path))
    if synthetic is not None:
        metrics["synthetic"] = synthetic
    return Evaluation(metrics, pairs, scales)


def read_run_notes(mined_path: str | Path) -> dict[str, Any]:
    """The counts notes of the run that wrote MINED (its manifest beside it), or {} when there is none."""
    import json

    path = Path(f"{mined_path}.manifest.json")
    try:
        return json.loads(path.read_text(encoding="utf-8"))["counts"]["notes"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def synthetic_negatives(pairs: MinedPairs, scales: dict[str, ScaleValues],
                        notes: dict[str, Any]) -> dict[str, Any] | None:
    """Synthetic negatives apart from mined ones: how many, what each verification check rejected (from the run
    manifest), and their score and gap distributions next to the mined ones' on every scale the file carries.

    LABELS cannot judge a generated passage (it has no id in any qrels), so their false-negative count is 0 by
    construction; the teacher's and the mining model's scores are the evidence there is.
    """
    sources = pairs.pair_values("source")
    checks = {k.removeprefix("synthetic "): v for k, v in notes.items() if k.startswith("synthetic ")}
    if sources is None or ("synthetic" not in sources and not checks):
        return None
    src = np.array([s or "mined" for s in sources], dtype=object)
    result: dict[str, Any] = {"negatives": {name: int((src == name).sum()) for name in ("mined", "synthetic")},
                              "checks": checks or None, "by_scale": {}}
    for scale, v in scales.items():
        result["by_scale"][scale] = {name: {"negative_score": summarize(v.negative[src == name]),
                                            "gap": summarize(v.gap[src == name])} for name in ("mined", "synthetic")}
    return result


# ---------------------------------------------------------------------------------------------------- report


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.4f}" if abs(value) < 1e5 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def _md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


STAT_KEYS = ("n", "min", "p25", "median", "p75", "max", "mean")


def _stats_rows(named: Iterable[tuple[str, dict[str, Any]]]) -> list[str]:
    return _md_table(["", *STAT_KEYS], ([name, *(stats[k] for k in STAT_KEYS)] for name, stats in named))


def _short(text: str | None, n: int = 80) -> str:
    if text is None:
        return ""
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _synthetic_markdown(syn: dict[str, Any]) -> list[str]:
    out = ["## Synthetic negatives", "",
           f"{syn['negatives']['synthetic']:,} synthetic and {syn['negatives']['mined']:,} mined distinct negatives. "
           "Labels cannot judge generated passages; the teacher and mining-model scores below are the evidence.", ""]
    if syn["checks"]:
        out += ["Verification, from the run manifest (each candidate counted at the first check it failed):", ""]
        out += _md_table(["", "count"], [[k, v] for k, v in syn["checks"].items()])
    for scale, groups in syn["by_scale"].items():
        out += [f"### {SCALE_LABELS[scale]}: mined vs synthetic", ""]
        out += _stats_rows([(f"{name} negative score", g["negative_score"]) for name, g in groups.items()]
                           + [(f"{name} gap p − s", g["gap"]) for name, g in groups.items()])
    return out


def render_markdown(metrics: dict[str, Any], plots: dict[str, str], plot_note: str | None = None) -> str:
    inputs = metrics["inputs"]
    out = ["# hnmine eval", "", f"- mined: `{inputs['mined']}` ({inputs['mined_rows']:,} rows)",
           f"- labels: `{inputs['labels']}` ({inputs['relevant_label_pairs']:,} relevant (query, doc) pairs)",
           "- every figure counts distinct (query_id, negative_id) pairs: triplet rows repeat a negative once "
           "per positive of its query", ""]
    if plot_note:
        out += [f"> {plot_note}", ""]
    out += _false_negatives_markdown(metrics)
    out += _hardness_markdown(metrics["hardness"], plots)
    if "synthetic" in metrics:
        out += _synthetic_markdown(metrics["synthetic"])
    out += _coverage_markdown(metrics["coverage"], plots)
    out += _checks_markdown(metrics["duplicates"], metrics["lengths"])
    return "\n".join(out)


def _false_negatives_markdown(metrics: dict[str, Any]) -> list[str]:
    fn = metrics["false_negatives"]
    out: list[str] = []
    out += ["## False negatives", "",
            "Distinct emitted negatives that LABELS marks relevant (`score > 0`).", ""]
    out += _md_table(["group", "negatives", "false negatives", "rate"],
                     [["all", fn["negatives"], fn["false_negatives"], _pct(fn["rate"])]])
    for key, title in (("by_retriever", "retriever"), ("by_tier", "tier"), ("by_filled", "filled (random fill)")):
        if key in fn:
            out += [f"By {title}:", ""]
            out += _md_table([title, "negatives", "false negatives", "rate"],
                             [[name, g["negatives"], g["false_negatives"], _pct(g["rate"])]
                              for name, g in fn[key].items()])
    if "filter" in metrics:
        f = metrics["filter"]
        out += ["## Filter (against --before)", "",
                "Of the candidates in the run without the filter: the labelled-relevant ones it removed (catch) and "
                "the others it removed (false alarm).", ""]
        out += _md_table(["", "removed", "of", "rate"],
                         [["relevant (catch rate)", f["caught"], f["relevant_before"], _pct(f["catch_rate"])],
                          ["other (false-alarm rate)", f["false_alarms"], f["candidates_before"] - f["relevant_before"],
                           _pct(f["false_alarm_rate"])]])
    if fn["queries_without_labels"]:
        out += [f"{fn['queries_without_labels']:,} mined queries have no relevant document in LABELS, so a false "
                "negative there cannot be detected.", ""]
    if fn["worst_queries"]:
        out += [f"Worst queries ({len(fn['worst_queries'])} of {fn['queries_with_false_negatives']:,} with any "
                "false negative):", ""]
        out += _md_table(["query_id", "query", "negatives", "false negatives", "false-negative ids"],
                         [[w["query_id"], _short(w.get("query")), w["negatives"], w["false_negatives"],
                           ", ".join(w["false_negative_ids"])] for w in fn["worst_queries"]])
    return out


def _hardness_markdown(hard: dict[str, Any], plots: dict[str, str]) -> list[str]:
    out: list[str] = []
    out += ["## Hardness", "",
            "gap = p − s, with p the query's lowest positive score and s the negative's, on the same scale. "
            "A small gap is a hard negative; a negative gap scores above a positive.", ""]
    scales = [s for s in SCORE_SCALES if s in hard]
    if not scales:
        out += ["No score columns (`negative_score`, `negative_ce_score`) in the mined file.", ""]
    for scale in scales:
        entry = hard[scale]
        out += [f"### {SCALE_LABELS[scale]}", ""]
        out += _stats_rows([("negative score", entry["negative_score"]),
                            ("lowest positive score (per query)", entry["lowest_positive_score"]),
                            ("gap p − s", entry["gap"])])
        out += [f"Negatives scoring above the query's lowest positive: {entry['negatives_above_positive']:,}.", ""]
        for name, sub in entry.get("by_retriever", {}).items():
            out += [f"Retriever `{name}`:", ""]
            out += _stats_rows([("negative score", sub["negative_score"]), ("gap p − s", sub["gap"])])
        for kind in ("scores", "gaps"):
            if f"{kind}_{scale}" in plots:
                out += [f"![{kind} ({SCALE_LABELS[scale]})]({plots[f'{kind}_{scale}']})", ""]
    if "rank" in hard:
        out += ["Retriever rank of the negatives (`negative_rank`):", ""]
        out += _stats_rows([("rank", hard["rank"])])
    return out


def _coverage_markdown(cov: dict[str, Any], plots: dict[str, str]) -> list[str]:
    out: list[str] = []
    out += ["## Coverage", ""]
    rows = [["queries", cov["queries"]], ["rows", cov["rows"]], ["distinct (query, negative) pairs", cov["negatives"]],
            ["distinct negative documents", cov["distinct_negative_documents"]],
            [f"queries with fewer than {cov['target_negatives']} negatives", cov["short_queries"]]]
    if "filled_negatives" in cov:
        rows.append(["negatives added by random fill", cov["filled_negatives"]])
    if "label_queries_not_in_mined" in cov:
        rows.append(["LABELS queries with no row in MINED", cov["label_queries_not_in_mined"]])
    out += _md_table(["", "count"], rows)
    if cov["short_query_ids"]:
        more = cov["short_queries"] - len(cov["short_query_ids"])
        out += ["Short queries: " + ", ".join(f"`{q}`" for q in cov["short_query_ids"])
                + (f" (+{more:,} more)" if more else ""), ""]
    out += ["Negatives per query:", ""]
    out += _md_table(["negatives", "queries"], sorted(cov["negatives_per_query_histogram"].items(),
                                                      key=lambda kv: int(kv[0])))
    if "negatives_per_query" in plots:
        out += [f"![negatives per query]({plots['negatives_per_query']})", ""]
    return out


def _checks_markdown(dup: dict[str, Any], lens: dict[str, Any] | None) -> list[str]:
    out: list[str] = []
    out += ["## Duplicates and honesty checks", "", "All should be 0 for hnmine output.", ""]
    out += _md_table(["check", "count"], [
        ["same negative twice for the same (query, positive), rows", dup["repeated_rows"]],
        ["negative text equals one of the query's positives", dup["negative_equals_positive"]],
        ["negative text equals the query", dup["negative_equals_query"]],
        ["negative text repeats another negative of the query (different id)", dup["same_text_negatives"]],
    ])
    out += ["Texts are compared after Unicode normalisation, case folding and whitespace collapsing; "
            "– means the column needed is absent.", ""]

    out += ["## Negative text length (characters)", ""]
    if lens is None:
        out += ["No `negative` text column.", ""]
    else:
        out += _stats_rows([("negative", lens["negative_chars"])])
    return out


def _plot_hist(path: Path, series: list[tuple[str, np.ndarray]], xlabel: str, title: str,
               vline: float | None = None) -> bool:
    from matplotlib.figure import Figure  # no pyplot: no global state

    series = [(label, v[np.isfinite(v)]) for label, v in series]
    series = [(label, v) for label, v in series if len(v)]
    if not series:
        return False
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.add_subplot()
    both = np.concatenate([v for _, v in series])
    bins = np.histogram_bin_edges(both, bins=min(40, max(5, int(np.sqrt(len(both))))))
    for label, v in series:
        ax.hist(v, bins=bins, alpha=0.6 if len(series) > 1 else 0.9, label=f"{label} (n={len(v):,})")
    if vline is not None:
        ax.axvline(vline, color="black", linewidth=1, linestyle="--")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    _save(fig, path)
    return True


def _save(fig: Any, path: Path) -> None:
    from hnmine.io.writers import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def counts_figure(histogram: dict[str, int], target: int | None = None) -> Any:
    """Bar chart of queries per negative count: one bar per integer from 0 to the largest count (or the target),
    zero bars included, integer ticks. A bar per *observed* count alone (often a single bar at the target)
    gave matplotlib a fractional axis around one value, which reads as nothing."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    observed = {int(k): int(n) for k, n in histogram.items()}
    top = max([*observed, target or 0])
    keys = list(range(top + 1))
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.add_subplot()
    ax.bar(keys, [observed.get(k, 0) for k in keys], width=0.9)
    if target:
        ax.axvline(target, color="black", linewidth=1, linestyle="--", label=f"target ({target})")
        ax.legend(fontsize="small")
    ax.set_xlim(-0.5, top + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("distinct negatives per query")
    ax.set_ylabel("queries")
    ax.set_title("negatives per query")
    fig.tight_layout()
    return fig


def _plot_counts(path: Path, histogram: dict[str, int], target: int | None) -> bool:
    if not histogram:
        return False
    _save(counts_figure(histogram, target), path)
    return True


def write_plots(evaluation: Evaluation, out_dir: Path) -> dict[str, str]:
    """PNG histograms into ``out_dir``; name -> file name. Raises ImportError without matplotlib."""
    import matplotlib  # noqa: F401  (fail early and clearly in an environment that lacks it)

    plots: dict[str, str] = {}
    for scale, v in evaluation.scales.items():
        label = SCALE_LABELS[scale]
        series = [("negatives", v.negative), ("lowest positive per query", v.positive)]
        if _plot_hist(out_dir / f"scores_{scale}.png", series, label, f"{label}: negatives vs positives"):
            plots[f"scores_{scale}"] = f"scores_{scale}.png"
        if _plot_hist(out_dir / f"gaps_{scale}.png", [("gap p − s", v.gap)], f"gap ({label})",
                      f"{label}: gap to the query's lowest positive", vline=0.0):
            plots[f"gaps_{scale}"] = f"gaps_{scale}.png"
    coverage = evaluation.metrics["coverage"]
    if _plot_counts(out_dir / "negatives_per_query.png", coverage["negatives_per_query_histogram"],
                    coverage["target_negatives"]):
        plots["negatives_per_query"] = "negatives_per_query.png"
    return plots


def write_report(evaluation: Evaluation, out_dir: str | Path) -> tuple[list[Path], str | None]:
    """report.md, metrics.json and the PNG plots in ``out_dir`` (created if missing).

    Returns the files written and, when matplotlib is missing, a note saying the plots were skipped.
    """
    from hnmine.io.writers import atomic_path, write_json_atomic

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--report {out_dir}: exists and is not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--report {out_dir}: cannot create the directory ({exc.strerror})") from None
    note = None
    try:
        plots = write_plots(evaluation, out_dir)
    except ImportError:
        plots = {}
        note = ("matplotlib is not installed, so this report has no plots; it is a dependency of hnmine: "
                "reinstall hnmine or pip install 'matplotlib>=3.8'.")
    written = [out_dir / name for name in plots.values()]
    report = out_dir / "report.md"
    with atomic_path(report) as tmp:
        tmp.write_text(render_markdown(evaluation.metrics, plots, note) + "\n", encoding="utf-8")
    metrics_path = out_dir / "metrics.json"
    write_json_atomic(metrics_path, evaluation.metrics)
    return [report, metrics_path, *written], note
