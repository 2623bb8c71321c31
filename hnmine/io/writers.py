"""Writing mined negatives in the layouts trainers read, atomically.

Output goes to a temporary file beside the target and is renamed only when the run finished, so a
pipeline step downstream can never pick up a half-written file, and a failed run leaves an existing
output untouched.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hnmine.candidates import CE_SCORE, SCORE, CandidateBatch
from hnmine.data import MiningData
from hnmine.errors import InputError
from hnmine.stage import score_columns

FORMATS = ("triplet", "n-tuple", "labeled-pair", "flagembedding", "tevatron")
JSONL_FORMATS = ("flagembedding", "tevatron")
ROW_GROUP_ROWS = 16_384


# The longest name hnmine derives from an output's: ".NAME.manifest.json.XXXXXXXX.tmp" (the manifest's
# temporary file); the checkpoint folder ".NAME.partial" and the output's own ".NAME.XXXXXXXX.tmp" are shorter.
DERIVED_NAME_EXTRA = len("..manifest.json.") + 8 + len(".tmp")


def check_writable_target(path: Path, role: str = "output") -> None:
    """The folder exists, is a folder, takes a new file of this name: everything a write could trip on later.

    Probed with a real temporary file, because permission bits say nothing about /proc, read-only mounts or
    ACLs; the probe is removed at once.
    """
    parent = path.parent
    if not parent.exists():
        raise InputError(f"{role} {path}: directory {parent} does not exist")
    if not parent.is_dir():
        raise InputError(f"{role} {path}: {parent} is not a directory")
    if path.is_dir():
        raise InputError(f"{role} {path}: is a directory")
    try:
        name_max = os.pathconf(parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    longest = len(path.name.encode("utf-8", "surrogateescape")) + DERIVED_NAME_EXTRA
    if longest > name_max:
        raise InputError(f"{role} {path}: the file name is too long ({longest - DERIVED_NAME_EXTRA} bytes; with "
                         f"its temporary and manifest files it must stay within {name_max - DERIVED_NAME_EXTRA})")
    try:
        os.unlink(_temp_sibling(parent / ".hnmine-probe", _create_file))
    except OSError as exc:
        raise InputError(f"{role} {path}: cannot create files in {parent} ({exc.strerror or exc})") from None


def check_output_path(path: str | Path, overwrite: bool, companions: tuple[Path, ...] = ()) -> Path:
    """Fail before any work is done, not after an hour of encoding.

    ``companions`` are files published with the output (its manifest): they must not be folders either, or
    the run would fail after the output was already in place.
    """
    path = Path(path)
    check_writable_target(path)
    if path.exists() and not overwrite:
        raise InputError(f"output {path}: already exists (pass --overwrite to replace it)")
    for companion in companions:
        if companion.is_dir():
            raise InputError(f"output {path}: {companion} is a directory, so it could not be written")
    return path


def _temp_sibling(path: Path, create: Callable[[Path], None]) -> Path:
    """A fresh hidden name beside ``path``, created by ``create`` (which must fail if the name exists).

    Not ``tempfile.mkstemp``/``mkdtemp``: those create mode 0600/0700 whatever the umask, and a rename keeps
    the mode, so every output would be unreadable to a training job running as another user. Created with
    0666/0777 here, the kernel applies the umask as it does for any file a tool writes.
    """
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            create(tmp)
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"could not create a temporary file beside {path}")


def _create_file(path: Path) -> None:
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))


def _fsync(path: Path) -> None:
    if not path.is_file():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path in the target's directory, renamed onto ``path`` only if the block succeeds.

    The one helper every output file goes through (triplets, manifests, eval reports and plots, caches,
    checkpoints): its mode follows the umask.
    """
    path = Path(path)
    tmp = _temp_sibling(path, _create_file)
    try:
        yield tmp
        _fsync(tmp)  # the rename must never publish a name whose bytes are still only in memory
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def deferred_signals(outcome: str) -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block ends, then interrupt with ``outcome`` as the truth to tell.

    Publishing (renaming the output into place, writing its manifest) must not stop half-way: an output
    without its manifest, reported as "no output was written", is worse than finishing the last step.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    wanted = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in wanted}
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if caught and not failed:
            from hnmine.errors import Terminated

            exc = Terminated(caught[0]) if caught[0] == signal.SIGTERM else KeyboardInterrupt()
            exc.outcome = outcome  # type: ignore[attr-defined]
            raise exc


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """``atomic_path`` for a directory output (Parquet parts, a trained model): renamed onto ``path`` on success.

    An existing ``path`` is moved aside first and removed after the rename, so a failure leaves it untouched.
    """
    path = Path(path)
    tmp = _temp_sibling(path, lambda p: p.mkdir(0o777))
    try:
        yield tmp
        old = None
        if path.exists() or path.is_symlink():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _texts(values: list[str], idx: np.ndarray) -> pa.Array:
    return pa.array([values[i] for i in idx.tolist()], pa.string())


def _col(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy(zero_copy_only=False)


def written_positives(batch: CandidateBatch) -> tuple[pa.Table, np.ndarray | None]:
    """The positives every layout writes, and each one's ``relabeled`` flag (None when relabeling is off).

    With relabeling, a query's likely false negatives (``batch.relabeled``) follow its known positives, in
    rank order; score columns a relabeled row lacks are null.
    """
    pos = batch.positives
    if batch.relabeled is None:
        return pos, None
    extra = batch.relabeled
    extra = pa.table({f.name: (extra.column(f.name).cast(f.type) if f.name in extra.column_names
                               else pa.nulls(extra.num_rows, f.type)) for f in pos.schema}, schema=pos.schema)
    both = pa.concat_tables([pos, extra])
    flag = np.r_[np.zeros(pos.num_rows, bool), np.ones(extra.num_rows, bool)]
    order = np.lexsort((np.arange(len(flag)), _col(both, "query_idx")))
    return both.take(pa.array(order, pa.int64())), flag[order]


def _expand_by_positive(cand: pa.Table, pos: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(candidate row, positive row) index pairs: each negative once per positive of its query.

    Ordered by query, then positive (in input order), then negative rank.
    """
    cand_q = _col(cand, "query_idx")
    pos_q = _col(pos, "query_idx")
    pos_rows_of: dict[int, np.ndarray] = {}
    for q in np.unique(pos_q):
        pos_rows_of[int(q)] = np.flatnonzero(pos_q == q)
    cand_rows, pos_rows = [], []
    start = 0
    n = len(cand_q)
    while start < n:
        q = int(cand_q[start])
        end = start
        while end < n and cand_q[end] == q:
            end += 1
        for p in pos_rows_of.get(q, np.zeros(0, np.int64)):
            cand_rows.append(np.arange(start, end))
            pos_rows.append(np.full(end - start, p))
        start = end
    if not cand_rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(cand_rows), np.concatenate(pos_rows)


LABEL_COLUMNS = ("tier", "filled", "cluster_id")


def _label_columns(batch: CandidateBatch) -> list[str]:
    """Columns later stages add to each negative (curriculum tier, random-fill flag, topic cluster)."""
    return [c for c in LABEL_COLUMNS if c in batch.candidates.column_names]


def _score_columns(batch: CandidateBatch) -> list[str]:
    return [c for c in score_columns() if c in batch.candidates.column_names]


def _sources(data: MiningData, doc_idx: np.ndarray) -> pa.Array:
    """``mined`` (a corpus passage) or ``synthetic`` (written by a generator) for each negative."""
    return pa.array(np.where(data.is_synthetic(doc_idx), "synthetic", "mined").tolist(), pa.string())


def triplet_table(batch: CandidateBatch, audit: bool = True) -> pa.Table:
    """One row per (query, positive, negative); the audit columns say where each negative came from."""
    data, cand = batch.data, batch.candidates
    pos, relabeled = written_positives(batch)
    ci, pi = _expand_by_positive(cand, pos)
    q = _col(cand, "query_idx")[ci]
    neg = _col(cand, "doc_idx")[ci]
    posd = _col(pos, "doc_idx")[pi]
    cols: dict[str, pa.Array] = {
        "query": _texts(data.query_texts, q),
        "positive": _texts(data.doc_texts, posd),
        "negative": _texts(data.doc_texts, neg),
    }
    if relabeled is not None:
        cols["positive_relabeled"] = pa.array(relabeled[pi], pa.bool_())
    if audit:
        cols.update({
            "query_id": _texts(data.query_ids, q),
            "positive_id": _texts(data.doc_ids, posd),
            "negative_id": _texts(data.doc_ids, neg),
            "negative_rank": pa.array(_col(cand, "rank")[ci], pa.int32()),
            f"negative_{SCORE}": pa.array(_col(cand, SCORE)[ci], pa.float32()),
            f"positive_{SCORE}": pa.array(_col(pos, SCORE)[pi] if SCORE in pos.column_names
                                       else np.full(len(pi), np.nan), pa.float32()),
            "retriever": pa.array(_col(cand, "retriever")[ci].tolist(), pa.string()),
            "source": _sources(data, neg),
        })
        for name in _score_columns(batch):
            cols[f"negative_{name}"] = pa.array(_col(cand, name)[ci], pa.float32())
            if name in pos.column_names:
                cols[f"positive_{name}"] = pa.array(_col(pos, name)[pi], pa.float32())
    for name in _label_columns(batch) if audit else []:
        cols[name] = cand.column(name).take(pa.array(ci, pa.int64())).combine_chunks()
    return pa.table(cols)


def ntuple_table(batch: CandidateBatch, num_negatives: int, audit: bool = True) -> tuple[pa.Table, int]:
    """One row per (query, positive) with exactly ``num_negatives`` negatives, best first.

    Trainers need a fixed width, so queries with fewer negatives cannot be written in this layout; the
    number of rows left out is returned so the run summary reports it.
    """
    data, cand = batch.data, batch.candidates
    pos, relabeled = written_positives(batch)
    cq, cd, crank = _col(cand, "query_idx"), _col(cand, "doc_idx"), _col(cand, "rank")
    pq_, pd_ = _col(pos, "query_idx"), _col(pos, "doc_idx")
    rows: list[tuple[int, int, np.ndarray]] = []
    dropped = 0
    for p_row, (q, _d) in enumerate(zip(pq_.tolist(), pd_.tolist())):
        negs = np.flatnonzero(cq == q)
        if len(negs) < num_negatives:
            dropped += 1
            continue
        rows.append((q, p_row, negs[:num_negatives]))
    qs = np.array([r[0] for r in rows], dtype=np.int64)
    prow = np.array([r[1] for r in rows], dtype=np.int64)
    negm = np.array([r[2] for r in rows], dtype=np.int64).reshape(len(rows), num_negatives)
    cols: dict[str, pa.Array] = {
        "query": _texts(data.query_texts, qs),
        "positive": _texts(data.doc_texts, pd_[prow] if len(rows) else prow),
    }
    for j in range(num_negatives):
        cols[f"negative_{j + 1}"] = _texts(data.doc_texts, cd[negm[:, j]] if len(rows) else prow)
    if relabeled is not None:
        cols["positive_relabeled"] = pa.array(relabeled[prow], pa.bool_())
    if audit:
        cols["query_id"] = _texts(data.query_ids, qs)
        cols["positive_id"] = _texts(data.doc_ids, pd_[prow] if len(rows) else prow)
        cols["negative_ids"] = pa.array([[data.doc_ids[i] for i in cd[r]] for r in negm], pa.list_(pa.string()))
        cols["negative_ranks"] = pa.array([crank[r].tolist() for r in negm], pa.list_(pa.int32()))
        cols["negative_sources"] = pa.array([_sources(data, cd[r]).to_pylist() for r in negm], pa.list_(pa.string()))
        for name in [SCORE, *_score_columns(batch)]:
            values = _col(cand, name)
            cols[f"negative_{name}s"] = pa.array([values[r].tolist() for r in negm], pa.list_(pa.float32()))
    for name in _label_columns(batch) if audit else []:
        values = cand.column(name).to_pylist()
        cols[f"negative_{name}s"] = pa.array([[values[i] for i in r] for r in negm.tolist()],
                                             pa.list_(cand.schema.field(name).type))
    return pa.table(cols), dropped


def labeled_pair_table(batch: CandidateBatch, audit: bool = True) -> pa.Table:
    """(query, passage, label): each positive once with label 1, each negative once with label 0."""
    data, cand = batch.data, batch.candidates
    pos, relabeled = written_positives(batch)
    q = np.concatenate([_col(pos, "query_idx"), _col(cand, "query_idx")]).astype(np.int64)
    d = np.concatenate([_col(pos, "doc_idx"), _col(cand, "doc_idx")]).astype(np.int64)
    label = np.r_[np.ones(pos.num_rows, np.int8), np.zeros(cand.num_rows, np.int8)]
    order = np.lexsort((-label, q), )
    q, d, label = q[order], d[order], label[order]
    cols: dict[str, pa.Array] = {
        "query": _texts(data.query_texts, q),
        "passage": _texts(data.doc_texts, d),
        "label": pa.array(label, pa.int8()),
    }
    if relabeled is not None:
        cols["relabeled"] = pa.array(np.r_[relabeled, np.zeros(cand.num_rows, bool)][order], pa.bool_())
    if audit:
        cols["query_id"] = _texts(data.query_ids, q)
        cols["passage_id"] = _texts(data.doc_ids, d)
        rank = np.r_[np.full(pos.num_rows, -1), _col(cand, "rank")][order]
        cols["rank"] = pa.array(np.where(rank < 0, None, rank).tolist(), pa.int32())
        cols["source"] = pa.array([None if lab else src for lab, src in
                                   zip(label.tolist(), _sources(data, d).to_pylist())], pa.string())
        for name in [SCORE, *_score_columns(batch)]:
            pv = _col(pos, name) if name in pos.column_names else np.full(pos.num_rows, np.nan)
            cols[name] = pa.array(np.r_[pv, _col(cand, name)][order], pa.float32())
    return pa.table(cols)


def flagembedding_score_column(batch: CandidateBatch) -> str:
    """The scale ``pos_scores`` / ``neg_scores`` carry: the cross-encoder's where there is one, else the retriever's."""
    cand, pos = batch.candidates, batch.positives
    return CE_SCORE if CE_SCORE in cand.column_names and CE_SCORE in pos.column_names else SCORE


def _json_scores(values: np.ndarray) -> list[float | None]:
    """Rounded scores; a negative without a score (random fill) is null, since JSON has no NaN."""
    return [round(float(s), 6) if np.isfinite(s) else None for s in values]


def _query_records(batch: CandidateBatch, positives: pa.Table,
                   record: Callable[[int, np.ndarray, np.ndarray], dict]) -> tuple[list[str], int]:
    """One jsonl line per query, ``record(query, rows of positives, rows of candidates)``, for the record layouts.

    Only queries with a positive and a negative are written: both trainers that read these layouts crash on an
    empty list (FlagEmbedding divides by ``len(neg)``, Tevatron draws ``random.choices`` from it). The others
    are counted and returned, so the summary and the manifest report them.
    """
    cq, pq_ = _col(batch.candidates, "query_idx"), _col(positives, "query_idx")
    lines = []
    unusable = 0
    for q in batch.queries.tolist():
        prow, nrow = np.flatnonzero(pq_ == q), np.flatnonzero(cq == q)
        if not len(prow) or not len(nrow):
            unusable += 1
            continue
        lines.append(json.dumps(record(q, prow, nrow), ensure_ascii=False).translate(_LINE_BREAKS))
    return lines, unusable


def flagembedding_lines(batch: CandidateBatch, audit: bool = True, prompt: str | None = None) -> tuple[list[str], int]:
    """FlagEmbedding's training jsonl: ``{"query", "pos": [...], "neg": [...], "pos_scores", "neg_scores"}``.

    Scores are always written (``knowledge_distillation=True`` requires them), on the scale
    ``flagembedding_score_column`` names; the manifest says which. ``prompt`` is FlagEmbedding's per-record query
    instruction. Queries without a negative are counted, not written (see ``_query_records``).
    """
    data, cand = batch.data, batch.candidates
    pos, relabeled = written_positives(batch)
    cd, pd_ = _col(cand, "doc_idx"), _col(pos, "doc_idx")
    column = flagembedding_score_column(batch)
    cand_scores = _col(cand, column) if column in cand.column_names else np.full(cand.num_rows, np.nan)
    pos_scores = _col(pos, column) if column in pos.column_names else np.full(pos.num_rows, np.nan)

    def record(q: int, prow: np.ndarray, nrow: np.ndarray) -> dict:
        out: dict = {"query": data.query_texts[q], "pos": [data.doc_texts[i] for i in pd_[prow]],
                     "neg": [data.doc_texts[i] for i in cd[nrow]],
                     "pos_scores": _json_scores(pos_scores[prow]), "neg_scores": _json_scores(cand_scores[nrow])}
        if relabeled is not None:
            out["pos_relabeled"] = relabeled[prow].tolist()
        if prompt is not None:
            out["prompt"] = prompt
        if audit:
            out["query_id"] = data.query_ids[q]
            out["pos_ids"] = [data.doc_ids[i] for i in pd_[prow]]
            out["neg_ids"] = [data.doc_ids[i] for i in cd[nrow]]
            out["neg_sources"] = _sources(data, cd[nrow]).to_pylist()
        return out

    return _query_records(batch, pos, record)


def tevatron_lines(batch: CandidateBatch, audit: bool = True) -> tuple[list[str], int]:
    """Tevatron's self-contained training jsonl, one record per query::

        {"query_id", "query", "positive_passages": [{"docid", "text"}], "negative_passages": [{"docid", "text"}]}

    As read by Tevatron's ``TrainDataset`` (``src/tevatron/retriever/dataset.py``, its legacy text format).
    Passages carry no ``title`` key: hnmine's text already starts with the title, and Tevatron would prepend it
    again. With relabeling, a relabeled positive passage carries ``"relabeled": true``; with audit columns, each
    negative passage carries its ``source`` (``mined`` / ``synthetic``). Queries without a negative
    are counted, not written (see ``_query_records``).
    """
    data, cand = batch.data, batch.candidates
    pos, relabeled = written_positives(batch)
    cd, pd_ = _col(cand, "doc_idx"), _col(pos, "doc_idx")

    def passage(i: int) -> dict:
        return {"docid": data.doc_ids[i], "text": data.doc_texts[i]}

    def record(q: int, prow: np.ndarray, nrow: np.ndarray) -> dict:
        positives = [passage(i) for i in pd_[prow]]
        if relabeled is not None:
            for p, flag in zip(positives, relabeled[prow].tolist()):
                p["relabeled"] = flag
        out: dict = {"query_id": data.query_ids[q], "query": data.query_texts[q],
                     "positive_passages": positives, "negative_passages": [passage(i) for i in cd[nrow]]}
        if audit:
            for p, source in zip(out["negative_passages"], _sources(data, cd[nrow]).to_pylist()):
                p["source"] = source
            out["negative_ranks"] = [int(r) for r in _col(cand, "rank")[nrow]]
            out["negative_scores"] = _json_scores(_col(cand, SCORE)[nrow])
        return out

    return _query_records(batch, pos, record)


# json.dumps escapes control characters but leaves these raw with ensure_ascii=False; str.splitlines (and so
# any reader, or checkpoint, that splits the file with it) breaks a record at each. Escaped, they decode to
# the same text and every record is exactly one line whichever way the file is split.
_LINE_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


class MinedWriter:
    """Streams batches into one output file of the chosen layout; call ``close`` to publish it."""

    def __init__(self, tmp_path: Path, fmt: str, num_negatives: int | None = None, audit: bool = True,
                 prompt: str | None = None) -> None:
        if fmt not in FORMATS:
            raise InputError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
        if fmt == "n-tuple" and not num_negatives:
            raise InputError("--format n-tuple needs --num-negatives")
        if prompt is not None and fmt != "flagembedding":
            raise InputError("--prompt is FlagEmbedding's per-record field; it needs --format flagembedding")
        self.tmp_path, self.fmt, self.num_negatives, self.audit = tmp_path, fmt, num_negatives, audit
        self.prompt = prompt
        self.rows_written = 0
        self.rows_dropped = 0
        self._parquet: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._jsonl = tmp_path.open("w", encoding="utf-8") if fmt in JSONL_FORMATS else None

    def format(self, batch: CandidateBatch) -> tuple[pa.Table | list[str], int]:
        """The batch in this layout, and how many (query, positive) rows the layout could not hold."""
        if self.fmt == "flagembedding":
            return flagembedding_lines(batch, self.audit, self.prompt)
        if self.fmt == "tevatron":
            return tevatron_lines(batch, self.audit)
        if self.fmt == "triplet":
            return triplet_table(batch, self.audit), 0
        if self.fmt == "labeled-pair":
            return labeled_pair_table(batch, self.audit), 0
        assert self.num_negatives is not None
        return ntuple_table(batch, self.num_negatives, self.audit)

    def write(self, batch: CandidateBatch) -> None:
        payload, dropped = self.format(batch)
        self.write_formatted(payload, dropped)

    def write_formatted(self, payload: pa.Table | list[str], dropped: int = 0) -> None:
        self.rows_dropped += dropped
        if isinstance(payload, list):
            assert self._jsonl is not None
            for line in payload:
                self._jsonl.write(line + "\n")
            self.rows_written += len(payload)
            return
        table = payload
        if self._parquet is None:
            self._schema = table.schema
            self._parquet = pq.ParquetWriter(self.tmp_path, table.schema)
        if table.num_rows:
            self._pending.append(table.cast(self._schema))
            self._pending_rows += table.num_rows
            self.rows_written += table.num_rows
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        """Fixed-size row groups, so the file's bytes do not depend on how queries were chunked."""
        assert self._parquet is not None
        while self._pending_rows >= ROW_GROUP_ROWS or (final and self._pending_rows):
            table = pa.concat_tables(self._pending)
            head, rest = table.slice(0, ROW_GROUP_ROWS), table.slice(ROW_GROUP_ROWS)
            self._parquet.write_table(head, row_group_size=ROW_GROUP_ROWS)
            self._pending = [rest] if rest.num_rows else []
            self._pending_rows = rest.num_rows

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
        elif self._parquet is not None:
            self._flush(final=True)
            self._parquet.close()

    def __enter__(self) -> MinedWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_json_atomic(path: Path, payload: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
