"""Decision logs for off-policy evaluation: JSON Lines or Parquet, read into arrays.

One row per logged decision:

    context      object of feature -> number (a JSON object; a Parquet struct or map)
    action       the action the logging policy took (a string; integers are read as strings)
    propensity   the probability with which it took it, in (0, 1]
    reward       the reward observed, a finite number
    segment      optional: the segment (region, surface...) support is judged within
    <column>     optional, named by the spec's `candidate_probabilities`: the candidate's
                 {action: probability} in this row's context; absent actions have probability 0

Both formats are read with pyarrow (`pyarrow.json` for JSON Lines), column by column, so a
million rows load in a fraction of a second. Every problem is a DecisionLogError naming the file,
the column or the first bad row (counted from 1, the line number of a JSON Lines file) and the
fix, because the engineer reading it has to repair a log, not a program.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.json as pj  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from analysis.offline import LoggedDecisions

__all__ = [
    "JSON_SUFFIXES",
    "PARQUET_SUFFIXES",
    "REQUIRED_COLUMNS",
    "DecisionLog",
    "DecisionLogError",
    "check_probabilities",
    "read_decision_log",
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
    """Read and check a log; JSON Lines or Parquet by the file's suffix.

    Args:
        path: The log file (`.jsonl`, `.ndjson`, `.json`, `.parquet` or `.pq`).
        candidate_column: The column holding the candidate's probabilities, if any.

    Raises:
        DecisionLogError: The file is missing, unreadable, of an unknown format, lacks a column,
            or holds a bad value; the message says where and how to fix it.
    """
    table = _read_table(path, candidate_column)
    where = f"log {path}"
    if table.num_rows == 0:
        raise DecisionLogError(f"{where} has no rows; {_ROW_FORMAT}")
    actions, action_names = _codes(table, "action", where, required=True)
    propensities = _numbers(table, "propensity", where)
    bad = ~((propensities > 0) & (propensities <= 1))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DecisionLogError(
            f"{where} row {row + 1}: propensity {float(propensities[row])!r} is not in (0, 1] "
            f"({int(bad.sum())} such row(s)); log the probability with which the logging policy "
            "chose the logged action, which is never 0"
        )
    rewards = _numbers(table, "reward", where)
    features = _features(table["context"], where)
    segments, segment_names = (
        _codes(table, SEGMENT_COLUMN, where, required=False)
        if SEGMENT_COLUMN in table.column_names
        else (None, ())
    )
    candidate: FloatArray | None = None
    candidate_actions: tuple[str, ...] = ()
    if candidate_column is not None:
        candidate, candidate_actions = _candidate(table[candidate_column], candidate_column, where)
    decisions = LoggedDecisions(
        actions=actions,
        action_names=action_names,
        propensities=propensities,
        rewards=rewards,
        features=features,
        segments=segments,
        segment_names=segment_names,
    )
    contexts = table["context"].combine_chunks()
    return DecisionLog(path, decisions, candidate, candidate_actions, contexts)


def _read_table(path: Path, candidate_column: str | None) -> Any:
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
    wanted = [*REQUIRED_COLUMNS, SEGMENT_COLUMN, *([candidate_column] if candidate_column else [])]
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
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise DecisionLogError(
            f"log {path} has no column {', '.join(map(repr, missing))}; {_ROW_FORMAT}"
        )
    if candidate_column is not None and candidate_column not in table.column_names:
        raise DecisionLogError(
            f"log {path} has no column {candidate_column!r} (named by offline_eval."
            "candidate_probabilities); write each row's candidate {action: probability} there, "
            "or remove candidate_probabilities to ask the candidate's policy server"
        )
    return table


def _first(bad: BoolArray) -> int:
    return int(np.flatnonzero(bad)[0]) + 1


def _codes(
    table: Any, name: str, where: str, *, required: bool
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
                f"{where} row {_first(nulls)}: {name} is missing ({int(nulls.sum())} such "
                f"row(s)); {_ROW_FORMAT}"
            )
        column = pc.fill_null(column, NO_SEGMENT)
    encoded = pc.dictionary_encode(column).combine_chunks()
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.intp)
    return codes, tuple(encoded.dictionary.to_pylist())


def _numbers(table: Any, name: str, where: str) -> FloatArray:
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


def _features(column: Any, where: str) -> FloatArray:
    """Numeric context features for the reward model: an absent (or NaN) feature counts as 0.

    Why not an error: the features feed only DR's reward model, which changes the estimate's
    variance and never its bias, and sparse contexts (features present only when they apply)
    are common. Non-numeric features are left out of the model for the same reason.
    """
    _, values, present = _mapping_columns(column, "context", where)
    if not present.all():
        raise DecisionLogError(f"{where} row {_first(~present)}: context is missing; {_ROW_FORMAT}")
    infinite = np.asarray(np.isinf(values).any(axis=1), dtype=np.bool_)
    if infinite.any():
        raise DecisionLogError(
            f"{where} row {_first(infinite)}: a context feature is infinite; log finite numbers"
        )
    values[np.isnan(values)] = 0.0
    return values


def _candidate(column: Any, name: str, where: str) -> tuple[FloatArray, tuple[str, ...]]:
    actions, values, present = _mapping_columns(column, name, where)
    if not present.all():
        raise DecisionLogError(
            f"{where} row {_first(~present)}: {name} is missing; write the candidate's "
            "{action: probability} in every row"
        )
    values[np.isnan(values)] = 0.0  # an action absent from a row has probability 0
    try:
        return check_probabilities(values, actions, f"{where} column {name!r}"), actions
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
