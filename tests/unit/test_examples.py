"""The shipped example specs load, and a spec crosses Temporal's data converter unchanged."""

from __future__ import annotations

import json
import re
import types
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel
from temporalio.contrib.pydantic import pydantic_data_converter

import rollout_specs
from rollout_specs import RolloutSpec, dump_schema, format_duration, load_spec, parse_spec
from rollout_specs.durations import DURATION_PATTERN

EXAMPLES = sorted((Path(rollout_specs.__file__).parent / "examples").glob("*.yaml"))


def test_examples_are_found() -> None:
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_example_loads(path: Path) -> None:
    load_spec(path)  # raises SpecError listing every problem


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_example_survives_the_temporal_data_converter(path: Path) -> None:
    spec = load_spec(path)
    converter = pydantic_data_converter.payload_converter

    payloads = converter.to_payloads([spec])
    (back,) = converter.from_payloads(payloads, [RolloutSpec])

    assert isinstance(back, RolloutSpec)
    assert back == spec
    written = json.loads(payloads[0].data)
    assert written["apiVersion"] == "lockgate/v1"
    assert written["spec"]["check_interval"] == format_duration(spec.spec.check_interval)


def _models_and_durations(annotation: Any) -> tuple[list[type[BaseModel]], bool]:
    """The spec models an annotation refers to, and whether it holds a duration."""
    if get_origin(annotation) is Annotated:
        return _models_and_durations(get_args(annotation)[0])
    if annotation is timedelta:
        return [], True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation], False
    models: list[type[BaseModel]] = []
    duration = False
    if get_origin(annotation) in (Union, types.UnionType, list, dict):
        for arg in get_args(annotation):
            found, is_duration = _models_and_durations(arg)
            models += found
            duration = duration or is_duration
    return models, duration


def _duration_fields() -> list[tuple[str, str]]:
    """(model name, schema property) of every duration field reachable from RolloutSpec."""
    fields: list[tuple[str, str]] = []
    todo: list[type[BaseModel]] = [RolloutSpec]
    seen: set[type[BaseModel]] = set()
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            models, is_duration = _models_and_durations(field.annotation)
            todo += models
            if is_duration:
                fields.append((model.__name__, field.alias or name))
    return sorted(fields)


def test_schema_is_json_with_the_document_keys() -> None:
    schema = json.loads(dump_schema())

    assert list(schema["properties"]) == ["apiVersion", "kind", "metadata", "spec"]
    assert schema["required"] == ["apiVersion", "kind", "metadata", "spec"]
    assert schema["additionalProperties"] is False


def test_schema_writes_durations_as_patterned_strings() -> None:
    definitions = json.loads(dump_schema())["$defs"]
    fields = _duration_fields()
    assert ("RolloutSpecBody", "check_interval") in fields
    assert ("Stage", "min_duration") in fields
    assert ("Stage", "max_duration") in fields

    for model, name in fields:
        prop = definitions[model]["properties"][name]
        (branch,) = [b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"]
        assert (branch["type"], branch["pattern"]) == ("string", DURATION_PATTERN), (model, name)
        default = prop.get("default")
        assert default is None or re.fullmatch(DURATION_PATTERN, default), (model, name, default)


def test_schema_duration_defaults_are_spec_notation() -> None:
    definitions = json.loads(dump_schema())["$defs"]

    assert definitions["RolloutSpecBody"]["properties"]["check_interval"]["default"] == "30s"
    assert definitions["HttpRouter"]["properties"]["timeout"]["default"] == "5s"


def test_the_spec_reference_example_loads() -> None:
    reference = Path(__file__).resolve().parents[2] / "docs" / "spec-reference.md"
    blocks = re.findall(r"```yaml\n(.*?)```", reference.read_text(encoding="utf-8"), re.DOTALL)
    assert blocks

    spec = parse_spec(yaml.safe_load(blocks[0]), str(reference))

    assert [stage.name for stage in spec.spec.stages] == ["shadow", "canary", "full"]
