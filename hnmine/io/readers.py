"""One reader for every input file of every command: Parquet, jsonl/json, csv/tsv, and Hugging Face datasets.

Users hold their data in whatever their trainer wrote last: sentence-transformers users in a ``datasets``
dataset (``save_to_disk`` or a Hub-style folder of data files), FlagEmbedding users in jsonl, IR people in
Parquet or TSV. Every command reads through :func:`read_table`, so each of them accepts all of these, and
every failure is one line naming the file and, where known, the line or row at fault.

CSV/TSV columns are read as strings (ids such as ``007`` keep their zeros; numbers are converted where a
number is expected). ``datasets`` is an optional extra (``pip install 'hnmine[datasets]'``): only dataset
folders need it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from hnmine.errors import InputError

PARQUET = (".parquet", ".pq")
JSONL = (".jsonl", ".ndjson")
JSON = (".json",)
DELIMITED = {".csv": ",", ".tsv": "\t"}
DATASETS_HINT = "pip install 'hnmine[datasets]'"


def read_table(path: str | Path, role: str, split: str | None = None) -> pa.Table:
    """The whole of ``path`` as an Arrow table, whatever its format; ``split`` picks a split of a dataset folder."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{role} file {path}: not found")
    if path.is_dir():
        return read_dataset_folder(path, role, split)
    suffix = path.suffix.lower()
    if suffix in PARQUET:
        return _read_parquet(path, role)
    if suffix in JSONL:
        return _read_jsonl(path, role)
    if suffix in JSON:
        return _read_json(path, role)
    if suffix in DELIMITED:
        return _read_delimited(path, role, DELIMITED[suffix])
    with path.open("rb") as f:
        magic = f.read(4)
    if magic == b"PAR1":
        return _read_parquet(path, role)
    raise InputError(f"{role} file {path}: unknown format {path.suffix or '(no extension)'!r}; expected .parquet, "
                     ".jsonl, .json, .csv, .tsv or a dataset folder")


def _read_parquet(path: Path, role: str) -> pa.Table:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{role} file {path}: not a readable Parquet file ({exc})") from None


def _decode_line(path: Path, raw: bytes, line_no: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: line {line_no} is not valid UTF-8 ({exc.reason} at byte {exc.start} "
                         "of the line)") from None


def _records_table(path: Path, records: list[dict], where: str = "line") -> pa.Table:
    """Records to a table; a field whose type changes between records is named with the first record at fault."""
    if not records:
        return pa.table({})
    try:
        return pa.Table.from_pylist(records)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        first: dict[str, type] = {}
        for n, record in enumerate(records, 1):
            for key, value in record.items():
                if value is None:
                    continue
                kind = type(value)
                if first.setdefault(key, kind) is not kind:
                    raise InputError(f"{path}: {where} {n}: field '{key}' is a JSON {kind.__name__}, earlier "
                                     f"{where}s have a {first[key].__name__}") from None
        raise InputError(f"{path}: cannot build a table from its records ({exc})") from None


def jsonl_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) of each non-blank line. Python's parser, so a bad line is named by number,
    not by byte block."""
    with path.open("rb") as f:
        for line_no, raw in enumerate(f, 1):
            line = _decode_line(path, raw, line_no)
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}: line {line_no} is not valid JSON ({exc.msg})") from None


def _read_jsonl(path: Path, role: str) -> pa.Table:
    """One JSON object per line."""
    records: list[dict] = []
    for line_no, record in jsonl_lines(path):
        if not isinstance(record, dict):
            raise InputError(f"{path}: line {line_no} is a JSON {type(record).__name__}, expected an object")
        records.append(record)
    if not records:
        raise InputError(f"{role} file {path}: no records")
    return _records_table(path, records)


def _read_json(path: Path, role: str) -> pa.Table:
    """A JSON array of objects, a column-oriented object of equal-length lists, or jsonl named ``.json``."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        if text.lstrip().startswith("{"):
            return _read_jsonl(path, role)  # jsonl under a .json name, as `datasets.to_json` writes it
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if isinstance(payload, list):
        bad = next((i for i, r in enumerate(payload) if not isinstance(r, dict)), None)
        if bad is not None:
            raise InputError(f"{path}: item {bad} (0-based) of the array is not a JSON object")
        return _records_table(path, payload, where="item")
    if isinstance(payload, dict) and payload and all(isinstance(v, list) for v in payload.values()):
        lengths = {k: len(v) for k, v in payload.items()}
        if len(set(lengths.values())) > 1:
            raise InputError(f"{path}: columns have different lengths ({lengths})")
        try:
            return pa.table(payload)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InputError(f"{path}: cannot read its columns ({exc})") from None
    if isinstance(payload, dict):
        return _records_table(path, [payload])
    raise InputError(f"{path}: a JSON {type(payload).__name__}, expected records")


def _read_delimited(path: Path, role: str, delimiter: str) -> pa.Table:
    """CSV or TSV with a header row; every column as text so ids keep their exact spelling."""
    import pyarrow.csv as pacsv

    with path.open("rb") as f:
        header = _decode_line(path, f.readline(), 1)
    names = next(csv.reader([header], delimiter=delimiter), [])
    names = [n.strip() for n in names]
    if not names or not any(names):
        raise InputError(f"{role} file {path}: empty, expected a header row")
    try:
        return pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=delimiter == ",",
                                             quote_char='"' if delimiter == "," else False),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
        )
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: not readable as {'CSV' if delimiter == ',' else 'TSV'} ({exc})") from None


def is_beir_folder(path: Path) -> bool:
    return (path / "corpus.jsonl").exists() and (path / "queries.jsonl").exists()


def read_dataset_folder(path: Path, role: str, split: str | None = None) -> pa.Table:
    """A ``datasets`` dataset: ``save_to_disk`` output, or any folder ``load_dataset`` reads (Hub layout)."""
    if is_beir_folder(path):
        raise InputError(f"{role} {path}: is a BEIR folder; pass it as --beir {path}")
    try:
        import datasets
    except ImportError:
        raise InputError(f"{role} {path}: a dataset folder; reading it needs the 'datasets' package "
                         f"({DATASETS_HINT})") from None
    saved = (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()
    try:
        loaded = datasets.load_from_disk(str(path)) if saved else datasets.load_dataset(str(path))
    except Exception as exc:  # datasets raises many types; each becomes one line naming the folder
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{role} {path}: not a readable dataset folder ({reason})") from None
    return dataset_table(loaded, f"{role} {path}", split)


def dataset_table(dataset: object, where: str, split: str | None = None) -> pa.Table:
    """The Arrow table behind a ``datasets.Dataset`` (or one split of a ``DatasetDict``), with no copy of text."""
    import datasets

    if isinstance(dataset, datasets.DatasetDict):
        splits = list(dataset)
        chosen = split or ("train" if "train" in splits else splits[0] if len(splits) == 1 else None)
        if chosen is None or chosen not in splits:
            asked = f"split {split!r} not found" if split else "several splits"
            raise InputError(f"{where}: {asked}; choose one of {', '.join(splits)} (--split)")
        dataset = dataset[chosen]
    if not isinstance(dataset, datasets.Dataset):
        raise InputError(f"{where}: a {type(dataset).__name__}, expected a datasets.Dataset")
    return dataset.flatten_indices().data.table if dataset._indices is not None else dataset.data.table


def first_present(table: pa.Table, names: tuple[str, ...] | list[str]) -> str | None:
    return next((n for n in names if n in table.column_names), None)


def pick_column(table: pa.Table, path: str | Path, given: str, default: str, aliases: tuple[str, ...]) -> str:
    """The column holding one role: the user's name if they gave one, else the first known alias present.

    Known aliases are the ecosystem's names for the role (sentence-transformers' ``anchor``, FlagEmbedding's
    ``pos``, BEIR's ``_id``), so their files load without naming columns.
    """
    names = (given,) if given != default else (default, *aliases)
    found = first_present(table, names)
    if found is None:
        have = ", ".join(table.column_names) or "none"
        also = f"; also accepted: {', '.join(names[1:])}" if len(names) > 1 else ""
        raise InputError(f"{path}: missing required column '{names[0]}' (columns present: {have}{also})")
    return found
