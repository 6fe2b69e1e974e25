"""Decision logs for off-policy evaluation: JSON Lines or Parquet, read into arrays or streamed.

One row per logged decision:

    context      object of feature -> number (a JSON object; a Parquet struct or map)
    action       the action the logging policy took (a string; integers are read as strings)
    propensity   the probability with which it took it, in (0, 1]
    reward       the reward observed, a finite number
    segment      optional: the segment (region, surface...) support is judged within
    <column>     optional, named by the spec's `candidate_probabilities`: the candidate's
                 {action: probability} in this row's context; absent actions have probability 0

Both formats are read with pyarrow (`pyarrow.json` for JSON Lines), column by column, so a
million rows load in a fraction of a second. A Parquet log may also be a directory of Parquet
files (a partitioned dataset, read in the order of the files' paths; `key=value` directories are
columns, so `segment=us-east-1/` gives its rows that segment). A Parquet log with the candidate's
probabilities can be streamed (`stream_decision_log`): read in record batches, each decoded and
checked on its own, so memory does not grow with the log. Every problem is a DecisionLogError
naming the file, the column or the first bad row (counted from 1, the line number of a JSON Lines
file; within its file for a directory) and the fix, because the engineer reading it has to repair
a log, not a program.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.json as pj  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from analysis.offline import DecisionBatch, LoggedDecisions

__all__ = [
    "JSON_SUFFIXES",
    "PARQUET_SUFFIXES",
    "REQUIRED_COLUMNS",
    "DecisionLog",
    "DecisionLogError",
    "DecisionStream",
    "check_probabilities",
    "is_streamable",
    "read_decision_log",
    "stream_decision_log",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

JSON_SUFFIXES: Final = (".jsonl", ".ndjson", ".json")
PARQUET_SUFFIXES: Final = (".parquet", ".pq")
REQUIRED_COLUMNS: Final = ("context", "action", "propensity", "reward")
SEGMENT_COLUMN: Final = "segment"
NO_SEGMENT: Final = "(none)"
"""The segment of rows whose segment is null."""
PROBABILITY_TOLERANCE: Final = 1e-3
"""How far a row's candidate probabilities may sum from 1 (rounding in the writer)."""
STREAM_BATCH_ROWS: Final = 1 << 17
"""Rows per streamed record batch: about 40 MiB of working arrays, whatever the log's length."""
_JSON_BLOCK_BYTES: Final = 8 << 20
"""pyarrow parses JSON in blocks; a row must fit in one, so allow large contexts."""
_ROW_FORMAT: Final = (
    "every row needs context (object of feature -> number), action, propensity (in (0, 1]) "
    "and reward; segment is optional"
)


class DecisionLogError(ValueError):
    """A decision log cannot be evaluated; the message names the file, where, and the fix."""


@dataclass(frozen=True)
class DecisionLog:
    """A decision log as the offline gate uses it.

    Attributes:
        path: The file read.
        decisions: The arrays the estimators read.
        candidate: The candidate's probabilities from the log's column, shape (rows, actions),
            or None when the log has no such column (ask the candidate's policy server).
        candidate_actions: The actions naming `candidate`'s columns.
        contexts: The context column as read (pyarrow), for sending to a policy server.
    """

    path: Path
    decisions: LoggedDecisions
    candidate: FloatArray | None
    candidate_actions: tuple[str, ...]
    contexts: Any

    @property
    def rows(self) -> int:
        """Number of logged decisions."""
        return self.decisions.rows

    def context_batch(self, start: int, stop: int) -> list[dict[str, Any]]:
        """Rows [start, stop) as JSON-ready context objects (absent features left out)."""
        batch = self.contexts.slice(start, stop - start).to_pylist()
        if pa.types.is_map(self.contexts.type):
            return [dict(entries or ()) for entries in batch]
        return [{k: v for k, v in (row or {}).items() if v is not None} for row in batch]


def read_decision_log(path: Path, candidate_column: str | None = None) -> DecisionLog:
    """Read and check a whole log; JSON Lines or Parquet by the file's suffix.

    Args:
        path: The log file (`.jsonl`, `.ndjson`, `.json`, `.parquet` or `.pq`), or a directory
            of Parquet files (read in path order).
        candidate_column: The column holding the candidate's probabilities, if any.

    Raises:
        DecisionLogError: The file is missing, unreadable, of an unknown format, lacks a column,
            or holds a bad value; the message says where and how to fix it.
    """
    table = _read_table(path, candidate_column)
    where = f"log {path}"
    if table.num_rows == 0:
        raise DecisionLogError(f"{where} has no rows; {_ROW_FORMAT}")
    decoded = _decode(table, where, candidate_column, 0)
    decisions = LoggedDecisions(
        actions=decoded.actions,
        action_names=decoded.action_names,
        propensities=decoded.propensities,
        rewards=decoded.rewards,
        features=decoded.features,
        segments=decoded.segments,
        segment_names=decoded.segment_names,
    )
    contexts = table["context"].combine_chunks()
    return DecisionLog(path, decisions, decoded.candidate, decoded.candidate_actions, contexts)


def is_streamable(path: Path) -> bool:
    """Whether `stream_decision_log` can read the log: a Parquet file, or a directory of them."""
    return path.is_dir() or path.suffix.lower() in PARQUET_SUFFIXES


@dataclass(frozen=True)
class DecisionStream:
    """A Parquet log (file or directory) with the candidate's probabilities, read in batches.

    Why not read it once: the offline gate passes over the log twice (`evaluate_batches`), and
    holding a log in memory costs about half a GiB per million rows; a stream costs one batch.

    Attributes:
        path: The file or directory.
        candidate_column: The column holding the candidate's probabilities.
        batch_rows: Rows per record batch.
    """

    path: Path
    candidate_column: str
    batch_rows: int = STREAM_BATCH_ROWS

    def batches(self) -> Iterator[DecisionBatch]:
        """One pass over the log, from its first row, each batch decoded and checked.

        Raises:
            DecisionLogError: A batch holds a bad value; the message names the file and the
                row within it (counted from 1).
        """
        wanted = [*REQUIRED_COLUMNS, SEGMENT_COLUMN, self.candidate_column]
        for file, first_row, batch in _record_batches(self.path, wanted, self.batch_rows):
            table = pa.Table.from_batches([batch])
            decoded = _decode(table, f"log {file}", self.candidate_column, first_row)
            assert decoded.candidate is not None  # the column is checked when the stream opens
            yield DecisionBatch(
                actions=decoded.actions,
                action_names=decoded.action_names,
                propensities=decoded.propensities,
                rewards=decoded.rewards,
                features=decoded.features,
                feature_names=decoded.feature_names,
                candidate=decoded.candidate,
                candidate_actions=decoded.candidate_actions,
                segments=decoded.segments,
                segment_names=decoded.segment_names,
            )


def stream_decision_log(
    path: Path, candidate_column: str, batch_rows: int = STREAM_BATCH_ROWS
) -> DecisionStream:
    """Open a Parquet log (a file, or a directory of files) for streaming; check its columns.

    Only the schema is read here (and every file's footer, for a directory): bad values are
    found batch by batch as the gate reads them, which fails as clearly, only later.

    Raises:
        DecisionLogError: The log is missing, not Parquet, has no rows, or lacks a column.
    """
    if batch_rows < 1:
        raise ValueError(f"batch_rows is {batch_rows}; read at least 1 row at a time")
    if not is_streamable(path):
        raise DecisionLogError(
            f"log {path}: only Parquet ({', '.join(PARQUET_SUFFIXES)}, or a directory of such "
            "files) is streamed; convert the log to Parquet or read it whole"
        )
    names, rows = _parquet_schema(path)
    _check_columns(path, names, candidate_column)
    if rows == 0:
        raise DecisionLogError(f"log {path} has no rows; {_ROW_FORMAT}")
    return DecisionStream(path, candidate_column, batch_rows)


@dataclass(frozen=True)
class _Decoded:
    actions: npt.NDArray[np.intp]
    action_names: tuple[str, ...]
    propensities: FloatArray
    rewards: FloatArray
    features: FloatArray
    feature_names: tuple[str, ...]
    segments: npt.NDArray[np.intp] | None
    segment_names: tuple[str, ...]
    candidate: FloatArray | None
    candidate_actions: tuple[str, ...]


def _decode(table: Any, where: str, candidate_column: str | None, first_row: int) -> _Decoded:
    """A table's columns as checked arrays; rows in messages are counted from `first_row` + 1."""
    actions, action_names = _codes(table, "action", where, first_row, required=True)
    propensities = _numbers(table, "propensity", where, first_row)
    bad = ~((propensities > 0) & (propensities <= 1))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DecisionLogError(
            f"{where} row {first_row + row + 1}: propensity {float(propensities[row])!r} is not "
            f"in (0, 1] ({int(bad.sum())} such row(s)); log the probability with which the "
            "logging policy chose the logged action, which is never 0"
        )
    rewards = _numbers(table, "reward", where, first_row)
    feature_names, features = _features(table["context"], where, first_row)
    segments, segment_names = (
        _codes(table, SEGMENT_COLUMN, where, first_row, required=False)
        if SEGMENT_COLUMN in table.column_names
        else (None, ())
    )
    candidate: FloatArray | None = None
    candidate_actions: tuple[str, ...] = ()
    if candidate_column is not None:
        candidate, candidate_actions = _candidate(
            table[candidate_column], candidate_column, where, first_row
        )
    return _Decoded(
        actions, action_names, propensities, rewards, features, feature_names, segments,
        segment_names, candidate, candidate_actions,
    )  # fmt: skip


def _parquet_schema(path: Path) -> tuple[list[str], int]:
    """Column names and row count of a Parquet file or directory, from footers only."""
    if not path.exists():
        raise DecisionLogError(
            f"log {path} does not exist (as the worker sees it); write the log there or fix "
            "offline_eval.log"
        )
    try:
        if path.is_dir():
            import pyarrow.dataset as ds  # type: ignore[import-untyped]

            dataset = ds.dataset(path, format="parquet", partitioning="hive")
            rows = sum(fragment.metadata.num_rows for fragment in dataset.get_fragments())
            return list(dataset.schema.names), rows
        with pq.ParquetFile(path) as parquet:
            return list(parquet.schema_arrow.names), parquet.metadata.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise DecisionLogError(f"log {path} is not readable as Parquet: {exc}") from exc


def _record_batches(
    path: Path, wanted: list[str], batch_rows: int
) -> Iterator[tuple[Path, int, Any]]:
    """(file, rows of that file before the batch, batch) over a Parquet file or directory."""
    try:
        if not path.is_dir():
            # pre_buffer off: buffering a row group's column chunks ahead doubled the peak
            with pq.ParquetFile(path, pre_buffer=False) as parquet:
                present = set(parquet.schema_arrow.names)
                columns = [c for c in wanted if c in present]
                first_row = 0
                for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
                    yield path, first_row, batch
                    first_row += batch.num_rows
            return
        import pyarrow.dataset as ds

        dataset = ds.dataset(path, format="parquet", partitioning="hive")
        columns = [c for c in wanted if c in dataset.schema.names]
        options = ds.ParquetFragmentScanOptions(pre_buffer=False)
        for fragment in sorted(dataset.get_fragments(), key=lambda fragment: fragment.path):
            first_row = 0
            # One file at a time, no read-ahead: the scanner's default reads 16 batches ahead.
            batches = fragment.to_batches(
                schema=dataset.schema,
                columns=columns,
                batch_size=batch_rows,
                use_threads=False,
                fragment_scan_options=options,
            )
            for batch in batches:
                yield Path(fragment.path), first_row, batch
                first_row += batch.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise DecisionLogError(f"log {path} is not readable as Parquet: {exc}") from exc


def _check_columns(path: Path, names: Sequence[str], candidate_column: str | None) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise DecisionLogError(
            f"log {path} has no column {', '.join(map(repr, missing))}; {_ROW_FORMAT}"
        )
    if candidate_column is not None and candidate_column not in names:
        raise DecisionLogError(
            f"log {path} has no column {candidate_column!r} (named by offline_eval."
            "candidate_probabilities); write each row's candidate {action: probability} there, "
            "or remove candidate_probabilities to ask the candidate's policy server"
        )


def _read_table(path: Path, candidate_column: str | None) -> Any:
    wanted = [*REQUIRED_COLUMNS, SEGMENT_COLUMN, *([candidate_column] if candidate_column else [])]
    if path.is_dir():  # a partitioned Parquet dataset, read whole
        names, _ = _parquet_schema(path)
        _check_columns(path, names, candidate_column)
        batches = [batch for _, _, batch in _record_batches(path, wanted, STREAM_BATCH_ROWS)]
        return pa.Table.from_batches(batches) if batches else pa.table({c: [] for c in names})
    suffix = path.suffix.lower()
    if suffix not in JSON_SUFFIXES + PARQUET_SUFFIXES:
        raise DecisionLogError(
            f"log {path}: unknown format {suffix or '(no suffix)'}; write JSON Lines "
            f"({', '.join(JSON_SUFFIXES)}) or Parquet ({', '.join(PARQUET_SUFFIXES)})"
        )
    if not path.is_file():
        raise DecisionLogError(
            f"log {path} does not exist (as the worker sees it); write the log there or fix "
            "offline_eval.log"
        )
    try:
        if suffix in PARQUET_SUFFIXES:
            # ParquetFile.read, not read_table: the latter imports pandas (a third of a second)
            with pq.ParquetFile(path) as parquet:
                present = set(parquet.schema_arrow.names)
                table = parquet.read(columns=[c for c in wanted if c in present])
        else:
            table = pj.read_json(path, read_options=pj.ReadOptions(block_size=_JSON_BLOCK_BYTES))
    except (pa.ArrowException, OSError) as exc:
        kind = "Parquet" if suffix in PARQUET_SUFFIXES else "JSON Lines (one object per line)"
        raise DecisionLogError(f"log {path} is not readable as {kind}: {exc}") from exc
    _check_columns(path, table.column_names, candidate_column)
    return table


def _first(bad: BoolArray, first_row: int = 0) -> int:
    return first_row + int(np.flatnonzero(bad)[0]) + 1


def _codes(
    table: Any, name: str, where: str, first_row: int, *, required: bool
) -> tuple[npt.NDArray[np.intp], tuple[str, ...]]:
    """A string-like column as (codes, names); integers are read as their decimal strings."""
    column = table[name]
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        try:
            column = pc.cast(column, pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise DecisionLogError(
                f"{where}: column {name!r} has type {column.type}; write strings"
            ) from exc
    nulls = column.is_null().to_numpy(zero_copy_only=False)
    if nulls.any():
        if required:
            raise DecisionLogError(
                f"{where} row {_first(nulls, first_row)}: {name} is missing "
                f"({int(nulls.sum())} such row(s)); {_ROW_FORMAT}"
            )
        column = pc.fill_null(column, NO_SEGMENT)
    encoded = pc.dictionary_encode(column).combine_chunks()
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.intp)
    return codes, tuple(encoded.dictionary.to_pylist())


def _numbers(table: Any, name: str, where: str, first_row: int) -> FloatArray:
    """A numeric column as float64; a missing, NaN or infinite value is an error."""
    column = table[name]
    try:
        values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DecisionLogError(
            f"{where}: column {name!r} has type {column.type}; write numbers"
        ) from exc
    values = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row = _first(bad)
        shown = "missing" if column.is_null().to_numpy(zero_copy_only=False)[row - 1] else "NaN"
        if shown == "NaN" and not np.isnan(values[row - 1]):
            shown = "infinite"
        row += first_row
        fix = (
            "drop rows whose reward is not known yet, or log it"
            if name == "reward"
            else f"log the {name} of every row"
        )
        raise DecisionLogError(
            f"{where} row {row}: {name} is {shown} ({int(bad.sum())} such row(s)); {fix}"
        )
    return values


def _mapping_columns(
    column: Any, name: str, where: str
) -> tuple[tuple[str, ...], FloatArray, BoolArray]:
    """A struct or map column of numbers as (keys, values with NaN where absent, row present)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(array)
    present = ~array.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_struct(array.type):
        numeric = [
            (field.name, child)
            for field, child in zip(array.type, array.flatten(), strict=True)
            if pa.types.is_integer(field.type)
            or pa.types.is_floating(field.type)
            or pa.types.is_boolean(field.type)
        ]
        # Filled column by column into (keys, rows) and returned transposed: a column-major
        # (rows, keys) matrix, without the strided copy of a row-major stack.
        values = np.empty((len(numeric), n), dtype=np.float64)
        for index, (_, child) in enumerate(numeric):
            values[index] = pc.cast(child, pa.float64()).to_numpy(zero_copy_only=False)
        return tuple(name for name, _ in numeric), values.T, present
    if pa.types.is_map(array.type) and (
        pa.types.is_integer(array.type.item_type) or pa.types.is_floating(array.type.item_type)
    ):
        offsets = array.offsets.to_numpy()
        start, stop = int(offsets[0]), int(offsets[-1])
        encoded = pc.dictionary_encode(array.keys.slice(start, stop - start))
        items = pc.cast(array.items.slice(start, stop - start), pa.float64())
        values = np.full((n, len(encoded.dictionary)), np.nan)
        rows = np.repeat(np.arange(n), np.diff(offsets))
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        values[rows, codes] = items.to_numpy(zero_copy_only=False)
        return tuple(encoded.dictionary.to_pylist()), values, present
    raise DecisionLogError(
        f"{where}: column {name!r} has type {array.type}; write an object of name -> number "
        "in every row (a Parquet struct or map<string, double>)"
    )


def _features(column: Any, where: str, first_row: int) -> tuple[tuple[str, ...], FloatArray]:
    """Numeric context features for the reward model: an absent (or NaN) feature counts as 0.

    Why not an error: the features feed only DR's reward model, which changes the estimate's
    variance and never its bias, and sparse contexts (features present only when they apply)
    are common. Non-numeric features are left out of the model for the same reason.
    """
    names, values, present = _mapping_columns(column, "context", where)
    if not present.all():
        raise DecisionLogError(
            f"{where} row {_first(~present, first_row)}: context is missing; {_ROW_FORMAT}"
        )
    infinite = np.asarray(np.isinf(values).any(axis=1), dtype=np.bool_)
    if infinite.any():
        raise DecisionLogError(
            f"{where} row {_first(infinite, first_row)}: a context feature is infinite; log "
            "finite numbers"
        )
    values[np.isnan(values)] = 0.0
    return names, values


def _candidate(
    column: Any, name: str, where: str, first_row: int
) -> tuple[FloatArray, tuple[str, ...]]:
    actions, values, present = _mapping_columns(column, name, where)
    if not present.all():
        raise DecisionLogError(
            f"{where} row {_first(~present, first_row)}: {name} is missing; write the candidate's "
            "{action: probability} in every row"
        )
    values[np.isnan(values)] = 0.0  # an action absent from a row has probability 0
    try:
        return check_probabilities(values, actions, f"{where} column {name!r}", first_row), actions
    except ValueError as exc:
        raise DecisionLogError(str(exc)) from exc


def check_probabilities(
    values: FloatArray, actions: Sequence[str], where: str, first_row: int = 0
) -> FloatArray:
    """Check that each row is a probability distribution; return `values` unchanged.

    Why: a candidate whose probabilities do not sum to 1 gives importance weights of the wrong
    scale, and the estimate would be off by that factor without any other sign.

    Raises:
        ValueError: A probability is negative or not finite, or a row does not sum to 1
            within PROBABILITY_TOLERANCE; the message names the row (from 1) and the action.
    """
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{where} row {first_row + row + 1}: the probability of {actions[column]!r} is "
            f"{float(values[row, column])!r}; probabilities are finite and at least 0"
        )
    sums = values.sum(axis=1)
    off = np.abs(sums - 1.0) > PROBABILITY_TOLERANCE
    if off.any():
        row = int(np.flatnonzero(off)[0])
        raise ValueError(
            f"{where} row {first_row + row + 1}: probabilities sum to {sums[row]:.6g}, not 1; "
            "write the candidate's probability of every action it may take"
        )
    return values
