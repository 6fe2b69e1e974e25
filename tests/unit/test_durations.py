"""The spec's duration notation: parsing, formatting, and the ISO form Temporal writes."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from pydantic import TypeAdapter, ValidationError
from temporalio.contrib.pydantic import pydantic_data_converter

from rollout_specs import Duration, format_duration, parse_duration

HINT = "write a duration like 30s, 5m, 1h or 1h30m"
DURATION = TypeAdapter(Duration)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h", timedelta(hours=1)),
        ("2d", timedelta(days=2)),
        ("500ms", timedelta(milliseconds=500)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1.5h", timedelta(hours=1, minutes=30)),
        ("0.25s", timedelta(milliseconds=250)),
        ("1m30s500ms", timedelta(minutes=1, seconds=30, milliseconds=500)),
        (" 1h 30m ", timedelta(hours=1, minutes=30)),
        ("0s", timedelta(0)),
    ],
)
def test_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["30 seconds", "5", "", "   ", "1.5", "h", "-5s", "1w", "30S", "1h-30m", "PT30S"]
)
def test_parse_rejects_with_the_fix(text: str) -> None:
    expected = f"{text!r} is not a duration; {HINT}"
    with pytest.raises(ValueError, match=re.escape(expected)) as caught:
        parse_duration(text)

    assert str(caught.value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=30), "30s"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(hours=1), "1h"),
        (timedelta(days=1, hours=2, minutes=3, seconds=4), "1d2h3m4s"),
        (timedelta(milliseconds=500), "500ms"),
        (timedelta(seconds=1, milliseconds=500), "1500ms"),
    ],
)
def test_format(value: timedelta, expected: str) -> None:
    assert format_duration(value) == expected


@pytest.mark.parametrize("text", ["0s", "30s", "5m", "1h30m", "1d2h3m4s", "500ms", "1500ms"])
def test_canonical_text_round_trips_unchanged(text: str) -> None:
    assert format_duration(parse_duration(text)) == text


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("90s", "1m30s"), ("1.5h", "1h30m"), ("60m", "1h"), ("24h", "1d"), ("1s500ms", "1500ms")],
)
def test_other_spellings_format_to_the_canonical_one(text: str, canonical: str) -> None:
    assert format_duration(parse_duration(text)) == canonical
    assert parse_duration(canonical) == parse_duration(text)


@pytest.mark.parametrize(
    "value",
    [timedelta(milliseconds=ms) for ms in (1, 999, 1000, 59_999, 3_600_000, 90_061_001)],
)
def test_formatted_text_parses_back_to_the_same_value(value: timedelta) -> None:
    assert parse_duration(format_duration(value)) == value


@pytest.mark.parametrize(
    ("iso", "expected"),
    [
        ("PT30S", timedelta(seconds=30)),
        ("PT1H30M", timedelta(hours=1, minutes=30)),
        ("P1DT2H", timedelta(days=1, hours=2)),
        ("PT0.5S", timedelta(milliseconds=500)),
    ],
)
def test_duration_type_accepts_iso_8601(iso: str, expected: timedelta) -> None:
    assert DURATION.validate_python(iso) == expected


@pytest.mark.parametrize("value", [timedelta(seconds=30), timedelta(hours=26, milliseconds=5)])
def test_duration_type_reads_what_the_temporal_converter_writes_for_a_timedelta(
    value: timedelta,
) -> None:
    (payload,) = pydantic_data_converter.payload_converter.to_payloads([value])
    written = json.loads(payload.data)
    assert written.startswith("P")

    assert DURATION.validate_python(written) == value


def test_duration_type_serializes_to_spec_notation_in_json() -> None:
    assert DURATION.dump_json(timedelta(hours=1, minutes=30)) == b'"1h30m"'
    assert DURATION.dump_python(timedelta(seconds=30)) == timedelta(seconds=30)


def test_duration_type_accepts_a_timedelta() -> None:
    assert DURATION.validate_python(timedelta(minutes=2)) == timedelta(minutes=2)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (5, f"5 has no unit; {HINT}"),
        (2.5, f"2.5 has no unit; {HINT}"),
        (True, f"True is not a duration; {HINT}"),
        (None, f"None is not a duration; {HINT}"),
        ("5", f"'5' is not a duration; {HINT}"),
        ("-PT5S", f"'-PT5S' is not a duration; {HINT}"),
        (timedelta(seconds=-1), f"a duration cannot be negative; {HINT}"),
    ],
)
def test_duration_type_rejects(value: object, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        DURATION.validate_python(value)

    (error,) = caught.value.errors(include_url=False)
    assert error["msg"] == f"Value error, {message}"
