"""Comparing two mining runs: how many negatives a change of model, threshold or seed actually changed.

Two triplet files are compared as sets of (query_id, negative_id) pairs. Triplet rows repeat each negative
once per positive of its query, so pairs are deduplicated first; otherwise a query with many positives
would dominate every count. Where both files carry ``negative_score``, the score shift of the negatives
both runs kept shows whether the same documents were rescored (a new model) or only reselected.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from hnmine.errors import InputError


def _pairs(table: pa.Table, which: str) -> dict[tuple[str, str], float]:
    """(query_id, negative_id) -> first score seen (NaN when absent); rows with a null id are ignored."""
    for name in ("query_id", "negative_id"):
        if name not in table.column_names:
            raise InputError(f"{which} file: missing required column '{name}' (columns: "
                             f"{', '.join(table.column_names)}); write it with audit columns, --format triplet")
    queries = table.column("query_id").to_pylist()
    negatives = table.column("negative_id").to_pylist()
    if "negative_score" in table.column_names:
        scores = [np.nan if s is None else float(s) for s in table.column("negative_score").to_pylist()]
    else:
        scores = [np.nan] * len(queries)
    pairs: dict[tuple[str, str], float] = {}
    for q, n, s in zip(queries, negatives, scores):
        if q is not None and n is not None:
            pairs.setdefault((str(q), str(n)), s)
    return pairs


def _by_query(pairs: dict[tuple[str, str], float]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for q, n in pairs:
        out.setdefault(q, set()).add(n)
    return out


def diff_mined(old: pa.Table, new: pa.Table) -> dict[str, Any]:
    """Counts of kept, added and removed negatives between two triplet tables, and the score shift.

    ``negatives_*`` count distinct (query, negative) pairs over all queries, so negatives of a query found
    in only one file count as added or removed. ``queries_changed`` counts queries in both files whose
    negative sets differ. ``changed_fraction`` is ``1 - kept / negatives_old`` (None when old is empty).
    ``score_shift_*`` (new - old) are None when no kept negative has a score in both files.
    """
    old_pairs, new_pairs = _pairs(old, "old"), _pairs(new, "new")
    old_q, new_q = _by_query(old_pairs), _by_query(new_pairs)
    compared = old_q.keys() & new_q.keys()
    kept = old_pairs.keys() & new_pairs.keys()
    shifts = np.array([new_pairs[p] - old_pairs[p] for p in kept], dtype=np.float64)
    shifts = shifts[~np.isnan(shifts)]
    return {
        "queries_compared": len(compared),
        "queries_only_old": len(old_q.keys() - new_q.keys()),
        "queries_only_new": len(new_q.keys() - old_q.keys()),
        "queries_changed": sum(old_q[q] != new_q[q] for q in compared),
        "negatives_old": len(old_pairs),
        "negatives_new": len(new_pairs),
        "negatives_kept": len(kept),
        "negatives_added": len(new_pairs.keys() - old_pairs.keys()),
        "negatives_removed": len(old_pairs.keys() - new_pairs.keys()),
        "changed_fraction": 1.0 - len(kept) / len(old_pairs) if old_pairs else None,
        "score_shift_mean": float(shifts.mean()) if len(shifts) else None,
        "score_shift_median": float(np.median(shifts)) if len(shifts) else None,
    }
