"""YAML to RolloutSpec, with errors a release engineer can act on.

Every problem becomes one line `file: field.path: what is wrong; the fix`, all problems at once,
so a spec repo's CI shows the whole list in one run.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import ValidationError
from pydantic.json_schema import GenerateJsonSchema

from rollout_specs.durations import format_duration
from rollout_specs.models import (
    SLUG_HINT,
    SLUG_PATTERN,
    URL_PATTERN,
    MonitoringConfig,
    RolloutSpec,
    RouterConfig,
)

__all__ = ["SpecError", "dump_schema", "format_location", "load_spec", "parse_spec"]


class SpecError(ValueError):
    """A spec that cannot run: unreadable, not YAML, or invalid. `problems` holds one line each."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {line}" for line in problems))


def format_location(loc: tuple[str | int, ...]) -> str:
    """Render a pydantic location as `spec.stages[2].percent`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(document)"


def _type_tags(config: Any) -> list[str]:
    """The `type` values a discriminated block accepts, e.g. ['prometheus', 'http']."""
    union = get_args(config)[0]
    members = get_args(union) or (union,)
    return [get_args(member.model_fields["type"].annotation)[0] for member in members]


_TYPE_TAGS = {"router": _type_tags(RouterConfig), "monitoring": _type_tags(MonitoringConfig)}
_TAG_PARTS = {tag for tags in _TYPE_TAGS.values() for tag in tags}
"""Pydantic puts the chosen tag in error locations (`spec.monitoring.http.url`); paths drop it."""
_PATTERN_HINTS = {
    SLUG_PATTERN: f"is not a valid name; {SLUG_HINT}",
    URL_PATTERN: "is not an http(s) URL; write it like http://127.0.0.1:8080",
}


def _yaml_kind(value: Any) -> str:
    """Name a parsed YAML value the way the engineer wrote it."""
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, bool):
        return f"a boolean ({value!r})"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _friendly_message(error: Any, loc: tuple[str | int, ...]) -> str:
    """Pydantic's message for one error, rephrased to name the fix in the spec's terms."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return f"unknown key {loc[-1]!r}; check its spelling against `lockgate schema`"
    if kind == "missing":
        return "required field is missing"
    if kind == "union_tag_invalid":
        return f"unknown type {ctx['tag']!r}; use one of {ctx['expected_tags']}"
    if kind == "union_tag_not_found":  # loc ends with the `type` key the loader added
        tags = _TYPE_TAGS.get(str(loc[-2]) if len(loc) > 1 else "")
        choice = f"use one of {', '.join(map(repr, tags))}" if tags else "see `lockgate schema`"
        return f"required field is missing; {choice}"
    if kind in ("literal_error", "enum"):
        return f"use {ctx['expected']} (got {error.get('input')!r})"
    if kind == "string_pattern_mismatch" and ctx.get("pattern") in _PATTERN_HINTS:
        return f"{error.get('input')!r} {_PATTERN_HINTS[ctx['pattern']]}"
    if kind == "model_type":
        return f"expected a mapping (key: value), got {_yaml_kind(error.get('input'))}"
    return str(error["msg"])


def _problem_line(error: Any) -> str:
    loc: tuple[str | int, ...] = tuple(part for part in error["loc"] if part not in _TAG_PARTS)
    if error["type"] == "union_tag_not_found":
        loc = (*loc, "type")
    ctx = error.get("ctx") or {}
    path = format_location(loc)
    if error["type"] == "lockgate_rule":
        sub = ctx["field"]
        path = f"{path}.{sub}" if not sub.startswith("[") else f"{path}{sub}"
        if path.startswith("(document)"):
            path = sub
        return f"{path}: {ctx['message']}"
    return f"{path}: {_friendly_message(error, loc)}"


def parse_spec(document: Any, source: str = "<spec>") -> RolloutSpec:
    """Validate an already parsed YAML document; raise SpecError with every problem."""
    if document is None:
        raise SpecError(source, ["the file is empty; a spec starts with `apiVersion: lockgate/v1`"])
    if not isinstance(document, dict):
        raise SpecError(source, ["a spec is a YAML mapping with apiVersion, kind, metadata, spec"])
    try:
        return RolloutSpec.model_validate(document)
    except ValidationError as exc:
        raise SpecError(source, [_problem_line(e) for e in exc.errors(include_url=False)]) from exc


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys, which plain YAML silently resolves to the last.

    `percent: 5` followed later by `percent: 50` is almost always an editing mistake; loading
    it as 50 would roll out ten times the traffic the reviewer read.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"duplicate key {key!r} (first at line {seen[key].start_mark.line + 1}); "
                    "keep one",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def load_spec(path: str | Path) -> RolloutSpec:
    """Read, parse and validate a spec file; raise SpecError naming the file on any problem."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(source, [f"cannot read the file: {exc.strerror or exc}"]) from exc
    try:
        document = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(source, [f"{where}not valid YAML: {problem}"]) from exc
    return parse_spec(document, source)


class _SpecJsonSchema(GenerateJsonSchema):
    """Writes duration defaults as the spec does (`30s`), so they match the schema's pattern."""

    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, timedelta):
            return format_duration(dft)
        return super().encode_default(dft)


def dump_schema() -> str:
    """The JSON Schema of the spec, for editors and for `lockgate schema`."""
    schema = RolloutSpec.model_json_schema(by_alias=True, schema_generator=_SpecJsonSchema)
    return json.dumps(schema, indent=2)
