"""Reading and validating inputs: queries / corpus / qrels, or one pairs file, or a BEIR folder.

Files are read by ``readers.read_table`` (Parquet, jsonl/json, csv/tsv, ``datasets`` folders), and columns are
found by name, including the ecosystem's own names (BEIR's ``_id``/``query-id``/``corpus-id``,
sentence-transformers' ``anchor``/``positive``, FlagEmbedding's ``query``/``pos`` lists).

Every check names the file, the column and an example row, because a mining run that dies an hour in on
row 3,000,017 of a corpus is the failure users remember. Nothing here writes; see ``output`` for that.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hnmine.data import MiningData, text_key
from hnmine.errors import InputError
from hnmine.io.readers import jsonl_lines, pick_column, read_table

# The ecosystem's names for each role, tried when the user kept hnmine's default name.
ID_ALIASES = ("_id", "id")
QRELS_QUERY_ALIASES = ("query-id", "qid")
QRELS_DOC_ALIASES = ("corpus-id", "doc-id", "docid")
QUERY_TEXT_ALIASES = ("text",)
ANCHOR_ALIASES = ("anchor", "query", "question")
POSITIVE_ALIASES = ("positive", "pos")


@dataclass(frozen=True)
class ColumnNames:
    """Input column names; every one can be overridden from the command line."""

    query_id: str = "query_id"
    query: str = "query"
    doc_id: str = "doc_id"
    text: str = "text"
    title: str = "title"
    qrels_query_id: str = "query_id"
    qrels_doc_id: str = "doc_id"
    qrels_score: str = "score"
    pairs_anchor: Sequence[str] = ("anchor", "query")
    pairs_positive: str = "positive"


def read_parquet(path: str | Path, role: str) -> pa.Table:
    """Any input file or dataset folder as a table (the name is historical: every format goes through here)."""
    return read_table(path, role)


def _require(table: pa.Table, path: str | Path, names: Sequence[str]) -> None:
    for name in names:
        if name not in table.column_names:
            have = ", ".join(table.column_names) or "none"
            raise InputError(f"{path}: missing required column '{name}' (columns present: {have})")


def _plain_strings(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Dictionary-encoded strings (pandas categoricals) and ``string_view`` columns, as plain strings."""
    kind = column.type
    if pa.types.is_dictionary(kind) and (pa.types.is_string(kind.value_type) or pa.types.is_large_string(
            kind.value_type) or pa.types.is_integer(kind.value_type)):
        return column.cast(kind.value_type)
    if getattr(pa.types, "is_string_view", lambda t: False)(kind):
        return column.cast(pa.string())
    return column


def id_column(table: pa.Table, path: str | Path, name: str, first_row: int = 0) -> list[str]:
    """Ids may be strings or integers in the file; internally they are strings so joins never mix types.

    ``first_row``: the file row of the table's first row, where the table is a slice (a corpus shard), so an
    error names the row of the file."""
    column = _plain_strings(table.column(name))
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
            or pa.types.is_integer(column.type)):
        raise InputError(f"{path}: column '{name}' has type {column.type}, expected string or integer ids")
    nulls = pc.is_null(column)
    if pc.any(nulls).as_py():
        row = pc.index(nulls, True).as_py() + first_row
        raise InputError(f"{path}: column '{name}' row {row} (0-based) is null")
    try:
        values = column.to_pylist()
    except (UnicodeDecodeError, pa.ArrowInvalid) as exc:
        raise InputError(f"{path}: column '{name}' holds ids that are not valid UTF-8 ({exc})") from None
    return [str(v) for v in values]


def text_column(table: pa.Table, path: str | Path, name: str, ids: list[str] | None = None,
                id_name: str = "", allow_empty: bool = False, first_row: int = 0) -> list[str]:
    """Texts must be non-empty strings: an empty passage would become a meaningless negative."""
    column = _plain_strings(table.column(name))
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise InputError(f"{path}: column '{name}' has type {column.type}, expected string")
    try:
        values = column.to_pylist()
    except (UnicodeDecodeError, pa.ArrowInvalid) as exc:
        raise InputError(f"{path}: column '{name}' holds text that is not valid UTF-8 ({exc})") from None
    if allow_empty:  # an optional field (a title): missing in some records is the same as empty
        return ["" if v is None else v for v in values]
    for row, value in enumerate(values):
        if value is None or not value.strip():
            what = "null" if value is None else "empty"
            at = f" ({id_name}={ids[row]!r})" if ids is not None else ""
            raise InputError(f"{path}: column '{name}' row {row + first_row} (0-based){at} is {what}")
    return values


def _check_unique(ids: list[str], path: str | Path, name: str, first_row: int = 0) -> None:
    seen: dict[str, int] = {}
    for row, value in enumerate(ids, start=first_row):
        if value in seen:
            raise InputError(
                f"{path}: duplicate {name} {value!r} in rows {seen[value]} and {row} (0-based)"
            )
        seen[value] = row


def read_corpus(path: str | Path, columns: ColumnNames = ColumnNames()) -> tuple[list[str], list[str]]:
    """Corpus ids and retrieval texts, with the title prepended where there is one (the BEIR convention)."""
    table = read_table(path, "corpus")
    if table.num_rows == 0:
        corpus_rows(table, path, columns)  # a missing column is named first
        raise InputError(f"{path}: the corpus is empty")
    return corpus_rows(table, path, columns)


def corpus_rows(table: pa.Table, path: str | Path, columns: ColumnNames = ColumnNames(),
                first_row: int = 0) -> tuple[list[str], list[str]]:
    """Ids and retrieval texts of corpus rows, checked: the whole file, or one shard of it (``first_row``:
    the file row of the table's first row, so errors name the file's row). The Ray engine's corpus shards read
    their rows through here, so a shard is validated and titled exactly as a local run's corpus."""
    id_name = pick_column(table, path, columns.doc_id, ColumnNames.doc_id, ID_ALIASES)
    _require(table, path, [columns.text])
    ids = id_column(table, path, id_name, first_row)
    _check_unique(ids, path, id_name, first_row)
    texts = text_column(table, path, columns.text, ids, id_name, first_row=first_row)
    if columns.title in table.column_names:
        titles = text_column(table, path, columns.title, ids, id_name, allow_empty=True)
        texts = [f"{t.strip()} {x}" if t and t.strip() else x for t, x in zip(titles, texts)]
    return ids, texts


def read_queries(path: str | Path, columns: ColumnNames = ColumnNames()) -> tuple[list[str], list[str]]:
    table = read_table(path, "queries")
    id_name = pick_column(table, path, columns.query_id, ColumnNames.query_id, ID_ALIASES)
    text_name = pick_column(table, path, columns.query, ColumnNames.query, QUERY_TEXT_ALIASES)
    if table.num_rows == 0:
        raise InputError(f"{path}: no queries")
    ids = id_column(table, path, id_name)
    _check_unique(ids, path, id_name)
    return ids, text_column(table, path, text_name, ids, id_name)


def _numbers(table: pa.Table, path: str | Path, name: str) -> list[float | None]:
    """A numeric column; text columns (CSV/TSV) are parsed, and the first unparsable row is named."""
    column = table.column(name)
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        return column.to_pylist()
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        values: list[float | None] = []
        for row, raw in enumerate(column.to_pylist()):
            try:
                values.append(None if raw is None or not raw.strip() else float(raw))
            except ValueError:
                raise InputError(f"{path}: column '{name}' row {row} (0-based): {raw!r} is not a number") from None
        return values
    raise InputError(f"{path}: column '{name}' has type {column.type}, expected a number")


def read_qrels(path: str | Path, columns: ColumnNames = ColumnNames()) -> list[tuple[str, str]]:
    """(query id, doc id) positives. Rows with score <= 0 are judged non-relevant and are not positives."""
    return qrels_pairs(read_table(path, "qrels"), path, columns)


def qrels_pairs(table: pa.Table, path: str | Path, columns: ColumnNames = ColumnNames()) -> list[tuple[str, str]]:
    """The positives of a qrels table, by hnmine's or BEIR's column names (``query-id``, ``corpus-id``)."""
    return [(q, d) for q, d, _ in graded_qrels(table, path, columns)]


def graded_qrels(table: pa.Table, path: str | Path,
                 columns: ColumnNames = ColumnNames()) -> list[tuple[str, str, float]]:
    """(query id, doc id, grade) of each positive (grade > 0; 1.0 for every row when there is no score column)."""
    q_name = pick_column(table, path, columns.qrels_query_id, ColumnNames.qrels_query_id, QRELS_QUERY_ALIASES)
    d_name = pick_column(table, path, columns.qrels_doc_id, ColumnNames.qrels_doc_id, QRELS_DOC_ALIASES)
    qids = id_column(table, path, q_name)
    dids = id_column(table, path, d_name)
    if columns.qrels_score in table.column_names:
        scores = _numbers(table, path, columns.qrels_score)
        bad = next((i for i, s in enumerate(scores) if s is not None and not math.isfinite(s)), None)
        if bad is not None:
            raise InputError(f"{path}: column '{columns.qrels_score}' row {bad} (0-based) is {scores[bad]}; "
                             "a relevance score must be a finite number (or null)")
        return [(q, d, float(s)) for q, d, s in zip(qids, dids, scores) if s is not None and s > 0]
    return [(q, d, 1.0) for q, d in zip(qids, dids)]


def _link_qrels(qrels: list[tuple[str, str]], query_ids: list[str], dpos: Mapping[str, int],
                path: str | Path) -> list[tuple[int, int]]:
    """Positives as (query index, doc index); ``dpos`` maps at least every doc id the qrels name to its index."""
    qpos = {q: i for i, q in enumerate(query_ids)}
    pairs = []
    for row, (q, d) in enumerate(qrels):
        if q not in qpos:
            raise InputError(f"{path}: row {row} (0-based) names query_id {q!r}, which is not in the queries")
        if d not in dpos:
            raise InputError(f"{path}: row {row} (0-based) names doc_id {d!r}, which is not in the corpus")
        pairs.append((qpos[q], dpos[d]))
    return pairs


class CorpusReader(Protocol):
    """Reads a corpus file for ``load_qrels_inputs``: its ids and texts, and where some ids are.

    The default reads the whole file here; the Ray engine's ``ShardedCorpus`` leaves it on the workers and
    returns sequences that fetch rows on demand, so the driver never holds the corpus.
    """

    def __call__(self, path: str | Path, columns: ColumnNames) -> tuple[Sequence[str], Sequence[str],
                                                                       Callable[[set[str]], Mapping[str, int]]]:
        ...


def read_whole_corpus(path: str | Path, columns: ColumnNames) -> tuple[
        list[str], list[str], Callable[[set[str]], Mapping[str, int]]]:
    doc_ids, doc_texts = read_corpus(path, columns)
    return doc_ids, doc_texts, lambda _wanted: {d: i for i, d in enumerate(doc_ids)}


def load_qrels_inputs(queries: str | Path, corpus: str | Path, qrels: str | Path,
                      columns: ColumnNames = ColumnNames(), corpus_reader: CorpusReader = read_whole_corpus,
                      ) -> MiningData:
    """Queries + corpus + qrels, the layout of IR datasets."""
    query_ids, query_texts = read_queries(queries, columns)
    doc_ids, doc_texts, locate = corpus_reader(corpus, columns)
    positives = read_qrels(qrels, columns)
    pairs = _link_qrels(positives, query_ids, locate({d for _, d in positives}), qrels)
    return MiningData.from_pairs(
        query_ids, query_texts, doc_ids, doc_texts, pairs,
        source={"queries": str(queries), "corpus": str(corpus), "qrels": str(qrels)},
    )


def derived_id(prefix: str, text: str) -> str:
    """Ids for pairs files, which have none: stable across runs because they come from the text."""
    return f"{prefix}{text_key(text):016x}"


def pair_texts(table: pa.Table, path: str | Path, columns: ColumnNames = ColumnNames()) -> tuple[list[str], list[str]]:
    """(anchor, positive) texts of a pairs table, one entry per pair.

    Recognised by column names: sentence-transformers' ``anchor``/``positive``, hnmine's ``query``/``positive``,
    FlagEmbedding's ``query``/``pos`` where ``pos`` is a list (one pair per element; a plain string is one
    positive, never split into characters).
    """
    anchor = next((n for n in (*columns.pairs_anchor, *ANCHOR_ALIASES) if n in table.column_names), None)
    if anchor is None:
        have = ", ".join(table.column_names) or "none"
        wanted = ", ".join(f"'{n}'" for n in dict.fromkeys((*columns.pairs_anchor, *ANCHOR_ALIASES)))
        raise InputError(f"{path}: missing required column, one of {wanted} (columns present: {have})")
    positive = pick_column(table, path, columns.pairs_positive, ColumnNames.pairs_positive, POSITIVE_ALIASES)
    if table.num_rows == 0:
        raise InputError(f"{path}: no pairs")
    anchors = text_column(table, path, anchor)
    pos_type = table.schema.field(positive).type
    if not (pa.types.is_list(pos_type) or pa.types.is_large_list(pos_type)):
        return anchors, text_column(table, path, positive)
    if not (pa.types.is_string(pos_type.value_type) or pa.types.is_large_string(pos_type.value_type)):
        raise InputError(f"{path}: column '{positive}' has type {pos_type}, expected string or list of strings")
    out_a, out_p = [], []
    for row, (a, ps) in enumerate(zip(anchors, table.column(positive).to_pylist())):
        if not ps:
            raise InputError(f"{path}: column '{positive}' row {row} (0-based) is {'null' if ps is None else 'empty'}")
        for p in ps:
            if p is None or not p.strip():
                raise InputError(f"{path}: column '{positive}' row {row} (0-based) holds an empty positive")
            out_a.append(a)
            out_p.append(p)
    return out_a, out_p


def pairs_data(anchors: list[str], positives: list[str], doc_ids: list[str] | None = None,
               doc_texts: list[str] | None = None, source: dict[str, str] | None = None) -> MiningData:
    """Mining input from (anchor, positive) texts; the corpus is the positives plus ``doc_texts``.

    A positive whose text equals a corpus document *is* that document, so it keeps the corpus id and can
    never come back as its own negative under a different id.
    """
    doc_ids = list(doc_ids or [])
    doc_texts = list(doc_texts or [])
    by_key: dict[int, int] = {}
    for i, t in enumerate(doc_texts):
        by_key.setdefault(text_key(t), i)
    query_ids: list[str] = []
    query_texts: list[str] = []
    query_by_text: dict[str, int] = {}
    pair_idx = []
    for a, p in zip(anchors, positives):
        if a not in query_by_text:
            query_by_text[a] = len(query_ids)
            query_ids.append(derived_id("q", a))
            query_texts.append(a)
        key = text_key(p)
        if key not in by_key:
            by_key[key] = len(doc_ids)
            doc_ids.append(derived_id("d", p))
            doc_texts.append(p)
        pair_idx.append((query_by_text[a], by_key[key]))
    return MiningData.from_pairs(query_ids, query_texts, doc_ids, doc_texts, pair_idx, source=source or {})


def load_pairs_input(pairs: str | Path, corpus: str | Path | None = None,
                     columns: ColumnNames = ColumnNames()) -> MiningData:
    """A pairs file in any layout ``pair_texts`` recognises; the corpus is the positives plus ``corpus``."""
    anchors, positives = pair_texts(read_table(pairs, "pairs"), pairs, columns)
    doc_ids, doc_texts = read_corpus(corpus, columns) if corpus is not None else ([], [])
    source = {"pairs": str(pairs)}
    if corpus is not None:
        source["corpus"] = str(corpus)
    return pairs_data(anchors, positives, doc_ids, doc_texts, source)


def _read_jsonl(path: Path) -> list[dict]:
    """BEIR records: one JSON object with an ``_id`` per line; ``title`` and ``text``, where given, are strings."""
    if not path.exists():
        raise InputError(f"BEIR file {path}: not found")
    rows = []
    for line_no, row in jsonl_lines(path):
        if not isinstance(row, dict) or "_id" not in row:
            raise InputError(f"{path}: line {line_no} is not a JSON object with an '_id' field")
        for key in ("title", "text"):
            value = row.get(key)
            if value is not None and not isinstance(value, str):
                raise InputError(f"{path}: line {line_no}: field '{key}' is a JSON {type(value).__name__}, "
                                 "expected a string")
        rows.append(row)
    return rows


def _beir_qrels_path(root: Path, split: str) -> Path:
    for candidate in (root / "qrels" / f"{split}.tsv", root / f"qrels-{split}.tsv"):
        if candidate.exists():
            return candidate
    raise InputError(f"BEIR folder {root}: no qrels for split {split!r} (looked for qrels/{split}.tsv "
                     f"and qrels-{split}.tsv)")


def _parse_beir_qrels(qrels_path: Path) -> pa.Table:
    """A BEIR qrels TSV (query-id, corpus-id, score; header optional) as (query_id, doc_id, score)."""
    qrels: list[tuple[str, str, int]] = []
    raw = qrels_path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_no = raw[:exc.start].count(b"\n") + 1
        raise InputError(f"{qrels_path}: line {line_no} is not valid UTF-8 ({exc.reason})") from None
    with io.StringIO(text, newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        for row_no, row in enumerate(reader):
            row = [c.strip() for c in row]
            if row_no == 0 and row and row[0] in ("query-id", "query_id", "qid"):
                continue
            if not row or not any(row):
                continue
            if len(row) < 3:
                raise InputError(f"{qrels_path}: line {row_no + 1} has {len(row)} fields, expected 3")
            try:
                qrels.append((row[0], row[1], int(float(row[2]))))
            except (ValueError, OverflowError):  # "x", "nan" and "inf" alike
                raise InputError(f"{qrels_path}: line {row_no + 1}: score {row[2]!r} is not a number") from None
    return pa.table({"query_id": [q for q, _, _ in qrels], "doc_id": [d for _, d, _ in qrels],
                     "score": pa.array([s for _, _, s in qrels], pa.int32())})


def read_beir(root: str | Path, split: str = "train") -> tuple[pa.Table, pa.Table, pa.Table]:
    """A BEIR folder as the three input tables, keeping only the queries the split judges.

    Query metadata is dropped on purpose: in some BEIR sets (SciFact) it holds the relevance evidence.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"BEIR folder {root}: not found")
    qrels_path = _beir_qrels_path(root, split)
    qrels_table = _parse_beir_qrels(qrels_path)
    qrels = list(zip(*(qrels_table.column(c).to_pylist() for c in ("query_id", "doc_id", "score"))))
    wanted = {q for q, _, _ in qrels}
    queries = [r for r in _read_jsonl(root / "queries.jsonl") if str(r.get("_id")) in wanted]
    corpus = _read_jsonl(root / "corpus.jsonl")
    corpus_table = pa.table({
        "doc_id": [str(r["_id"]) for r in corpus],
        "title": [r.get("title") or "" for r in corpus],
        "text": [r.get("text") or "" for r in corpus],
    })
    queries_table = pa.table({"query_id": [str(r["_id"]) for r in queries],
                              "query": [r.get("text") or "" for r in queries]})
    return queries_table, corpus_table, qrels_table


def read_beir_qrels(root: str | Path, split: str = "train") -> tuple[pa.Table, Path]:
    """Only the qrels of a BEIR folder (for ``eval --beir``): the corpus is not read."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"BEIR folder {root}: not found")
    path = _beir_qrels_path(root, split)
    return _parse_beir_qrels(path), path


def load_beir(root: str | Path, split: str = "train") -> MiningData:
    queries_t, corpus_t, qrels_t = read_beir(root, split)
    tag = f"{root} (BEIR, split {split})"
    query_ids = queries_t.column("query_id").to_pylist()
    query_texts = text_column(queries_t, f"{root}/queries.jsonl", "query", query_ids, "_id")
    doc_ids = corpus_t.column("doc_id").to_pylist()
    _check_unique(doc_ids, f"{root}/corpus.jsonl", "_id")
    texts = text_column(corpus_t, f"{root}/corpus.jsonl", "text", doc_ids, "_id")
    titles = corpus_t.column("title").to_pylist()
    texts = [f"{t.strip()} {x}" if t.strip() else x for t, x in zip(titles, texts)]
    qrels = [(q, d) for q, d, s in zip(*(qrels_t.column(c).to_pylist() for c in ("query_id", "doc_id", "score")))
             if s > 0]
    qrels_path = _beir_qrels_path(Path(root), split)
    pairs = _link_qrels(qrels, query_ids, {d: i for i, d in enumerate(doc_ids)}, qrels_path)
    # The files themselves, so the manifest hashes them and a resumed run notices when one changed.
    source = {"beir": tag, "corpus": str(Path(root) / "corpus.jsonl"), "queries": str(Path(root) / "queries.jsonl"),
              "qrels": str(qrels_path)}
    data = MiningData.from_pairs(query_ids, query_texts, doc_ids, texts, pairs, source=source)
    data.doc_titles = [t.strip() for t in titles]
    return data


@dataclass
class InputFiles:
    """Where a mining run's data comes from: queries + corpus + qrels files, one pairs file, or a BEIR folder.

    The one place the three layouts are told apart, for ``hnmine mine``, ``synth`` and ``train-denoiser`` and
    for Python callers of the job layer alike.
    """

    queries: Path | None = None
    corpus: Path | None = None
    qrels: Path | None = None
    pairs: Path | None = None
    beir: Path | None = None
    split: str = "train"
    columns: ColumnNames = field(default_factory=ColumnNames)
    strict: bool = False
    corpus_reader: CorpusReader = read_whole_corpus  # the Ray engine's: the corpus stays on its workers

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.queries, self.qrels, self.pairs, self.beir))

    def load(self, warn: Callable[[str], None] | None = None) -> MiningData:
        """The data, without queries lacking a positive (an error with ``strict``, else ``warn``-ed about)."""
        data = self._read()
        lacking = int((data.positive_counts == 0).sum())
        if lacking and self.strict:
            first = data.query_ids[int(np.flatnonzero(data.positive_counts == 0)[0])]
            raise InputError(f"{lacking} queries have no positive in the qrels (first: {first!r}); "
                             "drop --strict to skip them with a warning")
        if lacking and warn is not None:
            warn(f"skipping {lacking} queries with no positive")
        return data.without_queries_lacking_positives()

    def _read(self) -> MiningData:
        given = [n for n, v in (("--pairs", self.pairs), ("--beir", self.beir),
                                ("--queries/--qrels", self.queries or self.qrels)) if v]
        if len(given) > 1:
            raise InputError(f"give one input layout, not {' and '.join(given)}")
        if self.pairs is not None:
            return load_pairs_input(self.pairs, self.corpus, self.columns)
        if self.beir is not None:
            if self.corpus is not None:
                raise InputError("--beir brings its own corpus; drop --corpus")
            return load_beir(self.beir, self.split)
        missing = [n for n, v in (("--queries", self.queries), ("--corpus", self.corpus), ("--qrels", self.qrels))
                   if v is None]
        if missing:
            raise InputError(f"missing {', '.join(missing)} (or give --pairs P.parquet, or --beir DIR)")
        assert self.queries and self.corpus and self.qrels
        return load_qrels_inputs(self.queries, self.corpus, self.qrels, self.columns, self.corpus_reader)
