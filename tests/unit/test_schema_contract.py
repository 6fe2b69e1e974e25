"""The spec's JSON Schema tells editors the truth: every key described, required where the loader
requires it, and the committed copy the examples point at equal to `lockgate schema`.

The schema is judged by a small structural validator below (the keywords lockgate's schema uses
for shape and presence: $ref, type, const, enum, required, properties, additionalProperties,
items, min/maxItems, allOf/anyOf/oneOf/not, if/then/else); value rules such as patterns and
numeric bounds are the loader's and are not compared here.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import rollout_specs
from rollout_specs import SpecError, dump_schema, parse_spec
from rollout_specs.loader import SCHEMA_DIALECT, SCHEMA_ID, format_location

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path(rollout_specs.__file__).parent
SCHEMA_FILE = PACKAGE / "schema.json"
EXAMPLES = sorted((PACKAGE / "examples").glob("*.yaml"))
SCHEMA: dict[str, Any] = json.loads(dump_schema())

# ------------------------------------------------------------------ a structural validator

_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _resolve(ref: str) -> dict[str, Any]:
    assert ref.startswith("#/$defs/"), ref
    definition: dict[str, Any] = SCHEMA["$defs"][ref.removeprefix("#/$defs/")]
    return definition


def schema_errors(schema: dict[str, Any], value: Any, path: str = "") -> Iterator[str]:
    """Why `value` breaks `schema` (shape and presence only); nothing when it conforms."""
    if "$ref" in schema:
        yield from schema_errors(_resolve(schema["$ref"]), value, path)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](value) for t in types):
            yield f"{path}: not {schema['type']}"
            return
    if "const" in schema and value != schema["const"]:
        yield f"{path}: not {schema['const']!r}"
    if "enum" in schema and value not in schema["enum"]:
        yield f"{path}: not one of {schema['enum']}"
    if isinstance(value, dict):
        yield from _object_errors(schema, value, path)
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            yield f"{path}: fewer than {schema['minItems']} items"
        if "items" in schema:
            for index, item in enumerate(value):
                yield from schema_errors(schema["items"], item, f"{path}[{index}]")
    yield from _combinators(schema, value, path)


def _object_errors(schema: dict[str, Any], value: dict[str, Any], path: str) -> Iterator[str]:
    for name in schema.get("required", []):
        if name not in value:
            yield f"{path}.{name}: required"
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    for name, item in value.items():
        if name in properties:
            yield from schema_errors(properties[name], item, f"{path}.{name}")
        elif extra is False:
            yield f"{path}.{name}: not allowed"
        elif isinstance(extra, dict):
            yield from schema_errors(extra, item, f"{path}.{name}")


def _combinators(schema: dict[str, Any], value: Any, path: str) -> Iterator[str]:
    def ok(sub: dict[str, Any]) -> bool:
        return not any(schema_errors(sub, value, path))

    for sub in schema.get("allOf", []):
        yield from schema_errors(sub, value, path)
    if "anyOf" in schema and not any(ok(sub) for sub in schema["anyOf"]):
        yield f"{path}: matches none of anyOf"
    if "oneOf" in schema and sum(ok(sub) for sub in schema["oneOf"]) != 1:
        yield f"{path}: does not match exactly one of oneOf"
    if "not" in schema and ok(schema["not"]):
        yield f"{path}: matches `not`"
    if "if" in schema:
        branch = schema.get("then") if ok(schema["if"]) else schema.get("else")
        if branch is not None:
            yield from schema_errors(branch, value, path)


def test_the_validator_can_fail() -> None:
    assert not list(schema_errors(SCHEMA, _example("ranker-canary.yaml")))
    assert list(schema_errors(SCHEMA, {"apiVersion": "lockgate/v1"}))


# ----------------------------------------------------------------------------- descriptions


def _properties(node: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, schema) of every property declared anywhere in the schema."""
    if isinstance(node, dict):
        for name, prop in (node.get("properties") or {}).items():
            yield f"{where}.{name}", prop
        for key, child in node.items():
            if key != "properties":
                yield from _properties(child, f"{where}/{key}")
        for name, prop in (node.get("properties") or {}).items():
            yield from _properties(prop, f"{where}.{name}")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _properties(child, f"{where}[{index}]")


def test_every_property_has_a_description() -> None:
    properties = list(_properties(SCHEMA, "#"))
    undescribed = [
        path
        for path, prop in properties
        if set(prop) - {"type", "const"}  # a property of an if/oneOf condition, not a field
        and not str(prop.get("description", "")).strip()
    ]

    assert len(properties) > 100
    assert undescribed == []


@pytest.mark.parametrize(
    ("model", "field"),
    [
        ("RolloutSpecBody", "stages"),
        ("RolloutSpecBody", "rollback_triggers"),
        ("ThresholdTrigger", "threshold"),
        ("HttpRouter", "type"),
        ("BasicAuth", "password"),
    ],
)
def test_fields_that_had_no_description_have_one(model: str, field: str) -> None:
    assert SCHEMA["$defs"][model]["properties"][field]["description"].strip()


def test_schema_names_its_dialect_and_a_stable_id() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema" == SCHEMA_DIALECT
    assert SCHEMA["$id"] == SCHEMA_ID == "urn:lockgate:schema:rollout:v1"


# --------------------------------------------------------- the committed copy and examples


def test_committed_schema_is_what_lockgate_schema_prints() -> None:
    printed = subprocess.run(
        [sys.executable, "cli.py", "schema"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout

    assert SCHEMA_FILE.read_text(encoding="utf-8") == printed, (
        "rollout_specs/schema.json is stale; regenerate it: lockgate schema > "
        "rollout_specs/schema.json"
    )


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_example_points_editors_at_the_committed_schema(path: Path) -> None:
    first = path.read_text(encoding="utf-8").splitlines()[0]

    assert first.startswith("# yaml-language-server: $schema=")
    target = (path.parent / first.split("$schema=", 1)[1].strip()).resolve()
    assert target == SCHEMA_FILE.resolve()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_example_conforms_to_the_schema(path: Path) -> None:
    assert list(schema_errors(SCHEMA, _example(path.name))) == []


# ------------------------------------------------------------- required where the loader requires


def _example(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((PACKAGE / "examples" / name).read_text("utf-8"))
    return document


def _keys(node: Any, loc: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """The location of every mapping key in a document."""
    if isinstance(node, dict):
        for key, child in node.items():
            yield (*loc, key)
            yield from _keys(child, (*loc, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _keys(child, (*loc, index))


def _without(document: dict[str, Any], loc: tuple[str | int, ...]) -> dict[str, Any]:
    copied = copy.deepcopy(document)
    node: Any = copied
    for part in loc[:-1]:
        node = node[part]
    del node[loc[-1]]
    return copied


def _problems(document: dict[str, Any]) -> list[str]:
    try:
        parse_spec(document, "spec.yaml")
    except SpecError as error:
        return error.problems
    return []


def _complains_about(problems: list[str], loc: tuple[str | int, ...]) -> bool:
    """Whether the loader rejects the spec for the missing key at `loc` itself."""
    path, parent, key = format_location(loc), format_location(loc[:-1]), str(loc[-1])
    return any(
        line.startswith(f"{path}: ")
        or (
            line.startswith(f"{parent}: ")
            and (f"`{key}`" in line or f" {key} " in line or f" {key}," in line)
        )
        for line in problems
    )


@pytest.mark.parametrize("name", [path.name for path in EXAMPLES])
def test_a_key_the_loader_needs_is_required_by_the_schema(name: str) -> None:
    """Drop each key of an example in turn: when the loader rejects the spec for that missing key,
    the schema must reject it too (and when the schema rejects it, so must the loader)."""
    document = _example(name)
    mismatched = []
    for loc in _keys(document):
        reduced = _without(document, loc)
        problems = _problems(reduced)
        schema_rejects = bool(list(schema_errors(SCHEMA, reduced)))
        if _complains_about(problems, loc) and not schema_rejects:
            mismatched.append(f"{format_location(loc)}: loader needs it, schema does not")
        if schema_rejects and not problems:
            mismatched.append(f"{format_location(loc)}: schema needs it, loader does not")

    assert mismatched == []


def _spec(**changes: Any) -> dict[str, Any]:
    document = _example("ranker-canary.yaml")
    document["spec"].update(changes)
    return document


OFFLINE = {"log": "decisions.jsonl", "max_regression": 0.05, "candidate_probabilities": "probs"}
LIVE_WITHOUT_BAKE = {"name": "canary", "percent": 5}
FULL = {"name": "full", "percent": 100, "min_duration": "1h"}


@pytest.mark.parametrize(
    ("document", "schema_says"),
    [
        pytest.param(
            _spec(stages=[LIVE_WITHOUT_BAKE, FULL]),
            ".spec.stages[0].min_duration: required",
            id="split-stage-without-min-duration",
        ),
        pytest.param(
            _spec(stages=[{"name": "shadow", "mode": "shadow"}, FULL]),
            ".spec.stages[0].min_duration: required",
            id="shadow-stage-without-min-duration",
        ),
        pytest.param(
            _spec(stages=[{"name": "canary", "min_duration": "1h"}, FULL]),
            ".spec.stages[0].percent: required",
            id="split-stage-without-percent",
        ),
        pytest.param(
            {
                **_spec(),
                "spec": {k: v for k, v in _spec()["spec"].items() if k != "rollback_triggers"},
            },
            ".spec.rollback_triggers: required",
            id="no-rollback-triggers",
        ),
        pytest.param(
            _spec(rollback_triggers=[]),
            ".spec.rollback_triggers: fewer than 1 items",
            id="empty-rollback-triggers",
        ),
    ],
)
def test_schema_and_loader_both_reject(document: dict[str, Any], schema_says: str) -> None:
    assert schema_says in list(schema_errors(SCHEMA, document))
    assert _problems(document)


@pytest.mark.parametrize(
    "stages",
    [
        pytest.param([{"name": "offline", "offline_eval": OFFLINE}, FULL], id="implied-offline"),
        pytest.param(
            [{"name": "offline", "mode": "offline", "offline_eval": OFFLINE}, FULL],
            id="explicit-offline",
        ),
        pytest.param(
            [{"name": "shadow", "mode": "shadow", "min_duration": "1h"}, FULL], id="shadow"
        ),
    ],
)
def test_stages_the_loader_accepts_the_schema_accepts(stages: list[dict[str, Any]]) -> None:
    document = _spec(stages=stages)

    assert _problems(document) == []
    assert list(schema_errors(SCHEMA, document)) == []
