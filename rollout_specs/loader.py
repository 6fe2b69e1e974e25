"""YAML to RolloutSpec, with errors a release engineer can act on.

Every problem becomes one line `file: field.path: what is wrong; the fix`, all problems at once,
so a spec repo's CI shows the whole list in one run.

Any input, however hostile, is judged quickly and becomes a SpecError (exit 2 in the CLI), never a
traceback or a hang: the file is at most MAX_SPEC_BYTES, it must be UTF-8, and the YAML loader
bounds nesting depth, the number of values once aliases are expanded (a "billion laughs" file is
refused, not expanded), the size of numbers, and refuses list or mapping keys. `parse_spec`
applies the same bounds to documents that were parsed elsewhere.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import GenerateJsonSchema

from rollout_specs.durations import format_duration, shown
from rollout_specs.models import (
    NAME_HINT,
    NAME_PATTERN,
    SLUG_HINT,
    SLUG_PATTERN,
    TEXT_HINT,
    TEXT_PATTERN,
    URI_HINT,
    URI_PATTERN,
    URL_PATTERN,
    VERSION_HINT,
    VERSION_PATTERN,
    MonitoringConfig,
    RolloutSpec,
    RouterConfig,
)

__all__ = [
    "INTERNAL_PROBLEM",
    "MAX_INTEGER",
    "MAX_PROBLEMS",
    "MAX_SPEC_BYTES",
    "MAX_YAML_DEPTH",
    "MAX_YAML_VALUES",
    "SCHEMA_DIALECT",
    "SCHEMA_ID",
    "SpecError",
    "dump_schema",
    "format_location",
    "load_spec",
    "parse_spec",
]

MAX_SPEC_BYTES = 256 * 1024
"""Largest spec file read (256 KiB). Real specs are a few KiB; the cap keeps the pure-Python YAML
parser well under a second on anything it is given, and nothing reads a 50 MB "spec"."""
MAX_YAML_DEPTH = 32
"""Deepest nesting of mappings and lists (a spec needs about 6); deeper would exhaust Python's
recursion limit in the YAML composer or in pydantic."""
MAX_YAML_VALUES = 10_000
"""Most values (keys, scalars, lists, mappings) a document may hold once its aliases are expanded.
A spec with 100 stages and 100 triggers holds about 6,000; a 1 KB "billion laughs" file expands
to 10^9 and is refused before anything is built."""
MAX_INTEGER = 10**18 - 1
"""Largest integer magnitude in a spec (18 digits): every count has a far smaller bound, and a
5,000-digit integer would crash Python's int/str conversion when an error message quotes it."""
MAX_PROBLEMS = 50
"""Problem lines shown at most; the rest are counted, so a 20,000-item list is not 20,000 lines."""
MAX_PROBLEM_CHARS = 600
"""Longest problem line kept whole: a line that quotes a 300 KB value is cut in its middle, so
a hostile spec cannot flood a terminal, a CI log or the workflow's failure text."""
INTERNAL_PROBLEM = "lockgate could not check this spec"
"""Starts the one line of a SpecError raised for an unexpected exception (a bug in lockgate, not in
the spec): the engineer still gets exit 2 and a line instead of a traceback, and the fuzz tests
count it as a crash."""
_MAX_NUMBER_TEXT = 64
"""Longest integer scalar converted at all; longer text is refused before `int()` sees it."""


class SpecError(ValueError):
    """A spec that cannot run: unreadable, not YAML, or invalid. `problems` holds one line each.

    At most MAX_PROBLEMS lines are kept; a last line counts the rest.
    """

    def __init__(self, source: str, problems: list[str]) -> None:
        if len(problems) > MAX_PROBLEMS:
            hidden = len(problems) - MAX_PROBLEMS
            problems = [*problems[:MAX_PROBLEMS], f"... and {hidden} more problem(s) like these"]
        problems = [_bounded_line(line) for line in problems]
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {line}" for line in problems))


def _bounded_line(line: str) -> str:
    """One problem line on one line, at most MAX_PROBLEM_CHARS long (its start names the field)."""
    line = line.replace("\r", " ").replace("\n", " ")
    if len(line) <= MAX_PROBLEM_CHARS:
        return line
    keep = MAX_PROBLEM_CHARS // 2 - 20
    return f"{line[:keep]} ... ({len(line) - 2 * keep:,} chars cut) ... {line[-keep:]}"


def _location_part(part: object) -> str:
    """A key as a path shows it: plain when printable, else quoted; cut short past 64 chars."""
    text = part if isinstance(part, str) and part.isprintable() else shown(part)
    return text if len(text) <= 64 else f"{text[:30]}...{text[-30:]}"


def format_location(loc: Iterable[object]) -> str:
    """Render a pydantic location as `spec.stages[2].percent` (over-long keys cut short)."""
    out = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            text = _location_part(part)
            out += f".{text}" if out else text
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
    VERSION_PATTERN: f"is not a valid version or label value; {VERSION_HINT}",
    NAME_PATTERN: f"is not a valid metric or label name; {NAME_HINT}",
    TEXT_PATTERN: TEXT_HINT,
    URI_PATTERN: URI_HINT,
}


def _yaml_kind(value: Any) -> str:
    """Name a parsed YAML value the way the engineer wrote it."""
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({shown(value)})"
    if isinstance(value, str):
        return f"a string ({shown(value)})"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping (key: value)"
    return type(value).__name__


def _scalar_text(value: Any) -> str:
    """A YAML scalar as the engineer typed it (`true`, not `True`), for a quoted suggestion."""
    return str(value).lower() if isinstance(value, bool) else shown(value)


def _expected_text(error: Any, loc: tuple[str | int, ...]) -> str:
    """`expected text ...` for a number or boolean where text belongs: quote it."""
    value = error.get("input")
    got = _yaml_kind(value)
    if not isinstance(value, bool | int | float):
        return f"expected text, got {got}"
    typed = _scalar_text(value)
    if loc and loc[-1] == "version":
        return f'expected text (a version like "{typed}" in quotes), got {got}'
    return f'expected text (write it in quotes, like "{typed}"), got {got}'


def _length_message(error: Any) -> str:
    """A list or mapping with too few or too many entries."""
    ctx = error.get("ctx") or {}
    what = "entr" if ctx.get("field_type") == "Dictionary" else "item"
    actual = ctx.get("actual_length")
    got = f", got {actual}" if actual is not None else ""
    if error["type"] == "too_short":
        bound = ctx.get("min_length")
        return f"needs at least {bound} {_plural(what, bound)}{got}"
    bound = ctx.get("max_length")
    return f"may hold at most {bound} {_plural(what, bound)}{got}; remove some"


def _plural(stem: str, count: Any) -> str:
    """`1 item`, `2 items`, `1 entry`, `16 entries`."""
    if stem == "entr":
        return "entry" if count == 1 else "entries"
    return stem if count == 1 else f"{stem}s"


def _bound_message(error: Any) -> str:
    """A number outside its range, with the bound in the spec's words."""
    ctx = error.get("ctx") or {}
    bound = {
        "greater_than": ("greater than", "gt"),
        "greater_than_equal": ("at least", "ge"),
        "less_than": ("less than", "lt"),
        "less_than_equal": ("at most", "le"),
    }
    words, key = bound[error["type"]]
    return f"must be {words} {_number(ctx.get(key))}, got {_number(error.get('input'))}"


def _number(value: Any) -> str:
    """A bound or a value as the spec writes it: 0, not 0.0; anything else cut short."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return _scalar_text(value)


_TYPE_MESSAGES: dict[str, str] = {
    "int_type": "expected a whole number like 5, got {got}",
    "int_parsing": "expected a whole number like 5, got {got}",
    "int_parsing_size": "expected a whole number of at most 18 digits, got {got}",
    "int_from_float": "expected a whole number like 5, got {got}; drop the fraction",
    "float_type": "expected a number like 0.01, got {got}",
    "float_parsing": "expected a number like 0.01, got {got}",
    "bool_type": "expected true or false, got {got}",
    "bool_parsing": "expected true or false, got {got}",
    "list_type": "expected a list ([a, b] or one `- item` per line), got {got}",
    "dict_type": "expected a mapping (key: value), got {got}",
    "model_type": "expected a mapping (key: value), got {got}",
    "model_attributes_type": "expected a mapping (key: value), got {got}",
    "none_required": "expected nothing here (an empty value), got {got}",
    "time_delta_type": "expected a duration like 30s, 5m, 1h or 1h30m, got {got}",
    "time_delta_parsing": "expected a duration like 30s, 5m, 1h or 1h30m, got {got}",
}
"""What a value of the wrong type should have been, in the spec's words (`{got}` names the value
that was written). Text (`string_type`) has its own message that says how to quote."""


def _friendly_message(error: Any, loc: tuple[str | int, ...]) -> str:
    """Pydantic's message for one error, rephrased to name the fix in the spec's terms."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return _unknown_key_message(error, loc)
    if kind == "missing":
        return "required field is missing"
    if kind == "union_tag_invalid":
        return f"unknown type {shown(ctx['tag'])}; use one of {ctx['expected_tags']}"
    if kind == "union_tag_not_found":  # loc ends with the `type` key the loader added
        tags = _TYPE_TAGS.get(str(loc[-2]) if len(loc) > 1 else "")
        choice = f"use one of {', '.join(map(repr, tags))}" if tags else "see `lockgate schema`"
        return f"required field is missing; {choice}"
    if kind in ("literal_error", "enum"):
        return f"use {ctx['expected']} (got {shown(error.get('input'))})"
    if kind == "string_pattern_mismatch":
        if ctx.get("pattern") in _PATTERN_HINTS:
            return _pattern_message(error.get("input"), ctx["pattern"])
        return f"{shown(error.get('input'))} does not match the pattern {ctx.get('pattern')}"
    if kind == "finite_number":
        return (
            "must be a finite number, not .nan or .inf (which would disarm the check); write a "
            "number like 0.01"
        )
    if kind == "invalid_key":
        return f"key {shown(loc[-1])} is not text; keys are names, so quote it: '{loc[-1]}': ..."
    return _value_message(error, loc) or str(error["msg"])


def _value_message(error: Any, loc: tuple[str | int, ...]) -> str | None:
    """A value of the wrong type, out of range, or of the wrong length; None for other errors."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "string_type":
        return _expected_text(error, loc)
    if kind in _TYPE_MESSAGES:
        return _TYPE_MESSAGES[kind].format(got=_yaml_kind(error.get("input")))
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return _bound_message(error)
    if kind in ("too_short", "too_long"):
        return _length_message(error)
    if kind == "string_too_short":
        if ctx.get("min_length") == 1:
            return "must not be empty; write a value or remove the key"
        return f"must be at least {ctx.get('min_length')} characters long"
    if kind == "string_too_long":
        length = len(value) if isinstance(value := error.get("input"), str) else None
        got = f" (it has {length:,})" if length is not None else ""
        return f"must be at most {ctx.get('max_length')} characters long{got}; shorten it"
    return None


def _unknown_key_message(error: Any, loc: tuple[str | int, ...]) -> str:
    """`unknown key 'x'`, with the closest key of the block it was written in, if any."""
    key = loc[-1] if loc else ""
    keys = _keys_at(tuple(error["loc"])[:-1])
    close = difflib.get_close_matches(str(key), keys, n=1, cutoff=0.6) if keys else []
    if close:
        return f"unknown key {shown(key)}; did you mean `{close[0]}`?"
    if keys:
        return f"unknown key {shown(key)}; the keys here are {', '.join(sorted(keys))}"
    return f"unknown key {shown(key)}; check its spelling against `lockgate schema`"


def _models_in(annotation: Any) -> list[Any]:
    """The concrete types an annotation stands for: Annotated and unions unwrapped, None dropped."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _models_in(get_args(annotation)[0])
    if origin is Union or origin is UnionType:
        return [t for arg in get_args(annotation) for t in _models_in(arg)]
    return [] if annotation is type(None) else [annotation]


def _step(annotation: Any, part: str | int) -> list[Any]:
    """The types found one location part below `annotation` (a field, an item or a tag)."""
    found: list[Any] = []
    for kind in _models_in(annotation):
        origin = get_origin(kind)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            for name, field in kind.model_fields.items():
                if part in (name, field.alias):
                    found.append(field.annotation)
            tag = kind.model_fields.get("type")
            if tag is not None and part in get_args(tag.annotation):
                found.append(kind)  # pydantic puts a discriminated union's tag in the path
        elif origin is list and isinstance(part, int):
            found.append(get_args(kind)[0])
        elif origin is dict and isinstance(part, str):
            found.append(get_args(kind)[1])
    return found


def _keys_at(loc: tuple[Any, ...]) -> list[str]:
    """Every key the block at `loc` accepts (field names and aliases), for "did you mean"."""
    types: list[Any] = [RolloutSpec]
    for part in loc:
        types = [found for kind in types for found in _step(kind, part)]
    keys: set[str] = set()
    for kind in types:
        for model in _models_in(kind):
            if isinstance(model, type) and issubclass(model, BaseModel):
                for name, field in model.model_fields.items():
                    keys.add(field.alias or name)
    return sorted(keys)


def _pattern_message(value: Any, pattern: str) -> str:
    """What is wrong with a value that failed one of the spec's patterns, and the fix."""
    if (
        pattern == URL_PATTERN
        and isinstance(value, str)
        and value.startswith(("http://", "https://"))
    ):
        return (
            f"{shown(value)} is not a usable URL: it has no host, holds a space or control "
            "character, or is longer than 2048 characters; write it like http://127.0.0.1:8080"
        )
    return f"{shown(value)} {_PATTERN_HINTS[pattern]}"


def _problem_line(error: Any) -> str:
    loc: tuple[str | int, ...] = tuple(part for part in error["loc"] if part not in _TAG_PARTS)
    if loc and loc[-1] == "[key]":  # a mapping key failed its pattern: the path ends at the key
        loc = loc[:-1]
    if error["type"] == "invalid_key":  # the last part is the offending key, not a list index
        return f"{format_location(loc[:-1])}: {_friendly_message(error, loc)}"
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


class _ShapeError(Exception):
    """A document too deep, too large, self-referencing, or holding a huge integer."""

    def __init__(self, path: tuple[object, ...], message: str) -> None:
        super().__init__(f"{format_location(path)}: {message}")


_TOO_DEEP = (
    f"nests deeper than {MAX_YAML_DEPTH} levels; a spec needs about 6, so look for a runaway "
    "structure"
)
_TOO_LARGE = (
    f"holds more than {MAX_YAML_VALUES:,} values once aliases are expanded; a spec needs a few "
    "hundred, so write it out without so many aliases"
)
_TOO_BIG = "is too large; integers in a spec are at most 18 digits long"


def _check_shape(document: Any) -> None:
    """Apply the loader's bounds to a parsed document: depth, expanded size, cycles, integers.

    Shared containers (YAML aliases) are measured once and counted at every use, so the work is
    linear in the distinct containers while the bound is on the document pydantic would walk.
    """
    measured: dict[int, tuple[int, int]] = {}  # id -> (values, height)
    active: set[int] = set()

    def visit(value: Any, path: tuple[object, ...], depth: int) -> tuple[int, int]:
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER:
            raise _ShapeError(path, f"{shown(value)} {_TOO_BIG}")
        if not isinstance(value, dict | list | tuple | set | frozenset):
            return 1, 0
        key = id(value)
        if key in active:
            raise _ShapeError(path, "refers to itself (a recursive alias); write the value out")
        if key in measured:
            size, height = measured[key]
        else:
            if depth >= MAX_YAML_DEPTH:
                raise _ShapeError(path, _TOO_DEEP)
            active.add(key)
            size, height = 1, 0
            items: Iterable[tuple[Any, Any]]
            if isinstance(value, dict):
                items = value.items()
                for child_key in value:
                    visit(child_key, (*path, child_key), depth + 1)
            else:
                items = enumerate(value)
            for child_key, child in items:
                child_size, child_height = visit(child, (*path, child_key), depth + 1)
                size += child_size
                height = max(height, child_height + 1)
                if size > MAX_YAML_VALUES:
                    raise _ShapeError(path, _TOO_LARGE)
            active.discard(key)
            measured[key] = (size, height)
        if depth + height > MAX_YAML_DEPTH:
            raise _ShapeError(path, _TOO_DEEP)
        return size, height

    visit(document, (), 0)


def parse_spec(document: Any, source: str = "<spec>") -> RolloutSpec:
    """Validate an already parsed YAML document; raise SpecError with every problem.

    The document is first held to the loader's bounds (depth, expanded size, integer size), so
    a caller's own parsing cannot hand pydantic something it chokes on.
    """
    if document is None:
        raise SpecError(source, ["the file is empty; a spec starts with `apiVersion: lockgate/v1`"])
    if not isinstance(document, dict):
        raise SpecError(source, ["a spec is a YAML mapping with apiVersion, kind, metadata, spec"])
    try:
        _check_shape(document)
    except _ShapeError as exc:
        raise SpecError(source, [str(exc)]) from exc
    try:
        return RolloutSpec.model_validate(document)
    except ValidationError as exc:
        raise SpecError(source, [_problem_line(e) for e in exc.errors(include_url=False)]) from exc
    except (ValueError, TypeError, ArithmeticError, RecursionError) as exc:
        raise SpecError(source, [_internal(exc)]) from exc


def _internal(exc: BaseException) -> str:
    return f"{INTERNAL_PROBLEM} ({type(exc).__name__}: {shown(str(exc))}); please report this"


class _Refused(yaml.YAMLError):
    """Valid YAML the loader will not build: too deep, too large, an unusable key or number."""

    def __init__(self, mark: Any, message: str) -> None:  # yaml.Mark, or the C loader's Mark
        super().__init__(message)
        self.mark = mark
        self.message = message

    def line(self) -> str:
        """`line L, column C: message`, as the engineer reads it."""
        where = f"line {self.mark.line + 1}, column {self.mark.column + 1}: " if self.mark else ""
        return where + self.message


class _StrictLoader(yaml.SafeLoader):
    """A bounded safe loader that also refuses duplicate keys.

    Plain YAML silently keeps the last of two equal keys: `percent: 5` followed later by
    `percent: 50` is almost always an editing mistake, and loading it as 50 would roll out ten
    times the traffic the reviewer read. Beyond that it refuses, with line and column, what
    would crash or stall the load: nesting deeper than MAX_YAML_DEPTH (the composer recurses),
    more than MAX_YAML_VALUES values with aliases expanded (billion laughs, also through `<<`
    merges), self-referencing aliases, list or mapping keys (unhashable), integers beyond
    MAX_INTEGER, and scalars Python cannot build (`2024-13-45` as a date, `!!timestamp x`).
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._values = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        """Compose one node, counting depth and values as the document is read."""
        if self.check_event(yaml.AliasEvent):
            return super().compose_node(parent, index)
        event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]
        mark = event.start_mark
        self._values += 1
        if self._values > MAX_YAML_VALUES:
            raise _Refused(mark, f"the document {_TOO_LARGE}")
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _Refused(mark, f"the document {_TOO_DEEP}")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> yaml.Node | None:
        """Compose the document, then measure it with every alias expanded."""
        node = super().compose_document()
        if node is not None:
            _measure(node, 0, {}, set())
        return node

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """Build one value; a scalar Python cannot build is refused where it was written."""
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, ArithmeticError, LookupError, AttributeError) as exc:
            # PyYAML's own constructors fail in these ways on a value their tag cannot hold
            # (`!!timestamp 2024-99-99` is an AttributeError inside PyYAML).
            raise _Refused(
                node.start_mark,
                f"cannot read {shown(getattr(node, 'value', ''))} as a value ({exc}); quote it "
                "to make it text",
            ) from exc

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        """An integer, refused past MAX_INTEGER before Python converts 5,000 digits of it."""
        text = str(node.value)
        if len(text) > _MAX_NUMBER_TEXT:
            raise _Refused(node.start_mark, f"{shown(text)} {_TOO_BIG}")
        value: int = super().construct_yaml_int(node)
        if abs(value) > MAX_INTEGER:
            raise _Refused(node.start_mark, f"{shown(text)} {_TOO_BIG}")
        return value

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """A mapping with plain, distinct keys."""
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise _Refused(
                    key_node.start_mark,
                    "a key must be a plain name, not a list or a mapping (`? [a, b]: c`); "
                    "write the key as text",
                )
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"duplicate key {shown(key)} (first at line {seen[key].start_mark.line + 1}); "
                    "keep one",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _measure(
    node: yaml.Node, depth: int, measured: dict[int, tuple[int, int]], active: set[int]
) -> tuple[int, int]:
    """(values, height) of `node` with aliases expanded; each distinct node is walked once."""
    key = id(node)
    if key in active:
        raise _Refused(node.start_mark, "an alias refers to the node it is in; write it out")
    if key in measured:
        size, height = measured[key]
    else:
        active.add(key)
        size, height = 1, 0
        for child in _children(node):
            if depth + 1 >= MAX_YAML_DEPTH:
                raise _Refused(child.start_mark, f"the document {_TOO_DEEP}")
            child_size, child_height = _measure(child, depth + 1, measured, active)
            size += child_size
            height = max(height, child_height + 1)
            if size > MAX_YAML_VALUES:
                raise _Refused(node.start_mark, f"the document {_TOO_LARGE}")
        active.discard(key)
        measured[key] = (size, height)
    if depth + height > MAX_YAML_DEPTH:
        raise _Refused(node.start_mark, f"the document {_TOO_DEEP}")
    return size, height


def _read(path: str | Path, source: str) -> str:
    """The file's text: at most MAX_SPEC_BYTES, and UTF-8."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_SPEC_BYTES + 1)
            size = os.fstat(handle.fileno()).st_size
    except OSError as exc:
        raise SpecError(source, [f"cannot read the file: {exc.strerror or exc}"]) from exc
    if len(data) > MAX_SPEC_BYTES:
        how_big = f"{size:,} bytes" if size > MAX_SPEC_BYTES else "larger than that"
        raise SpecError(
            source,
            [
                f"the file is {how_big}; a spec may be at most {MAX_SPEC_BYTES // 1024} KiB "
                f"({MAX_SPEC_BYTES:,} bytes), and a real one is a few KiB, so check that this is "
                "the right file"
            ],
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SpecError(
            source,
            [
                f"line {line}, column {column}: the file is not UTF-8 text (byte "
                f"0x{data[exc.start]:02x} cannot be decoded); save it as UTF-8"
            ],
        ) from exc


def _yaml_problem(exc: yaml.YAMLError, text: str) -> str:
    """One line for a YAML error: where, then what."""
    if isinstance(exc, _Refused):
        return exc.line()
    if isinstance(exc, yaml.reader.ReaderError):  # a control character: no mark, a position
        position = exc.position
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        return (
            f"line {line}, column {column}: not valid YAML: character U+{code:04X} (a control "
            "character) is not allowed; remove it"
        )
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return f"{where}not valid YAML: {problem}"


def load_spec(path: str | Path) -> RolloutSpec:
    """Read, parse and validate a spec file; raise SpecError naming the file on any problem.

    Whatever the file holds, the answer is a RolloutSpec or a SpecError, in well under a second.
    """
    source = str(path)
    text = _read(path, source)
    try:
        document = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise SpecError(source, [_yaml_problem(exc, text)]) from exc
    except (ValueError, TypeError, ArithmeticError, RecursionError) as exc:
        raise SpecError(source, [_internal(exc)]) from exc
    return parse_spec(document, source)


class _SpecJsonSchema(GenerateJsonSchema):
    """Writes duration defaults as the spec does (`30s`), so they match the schema's pattern."""

    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, timedelta):
            return format_duration(dft)
        return super().encode_default(dft)


SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
"""The JSON Schema dialect pydantic writes (`$defs`, `if`/`then`/`else`)."""
SCHEMA_ID = "urn:lockgate:schema:rollout:v1"
"""The schema's stable identity: one per spec language version (`apiVersion: lockgate/v1`),
independent of where a copy of the file is served from."""


def dump_schema() -> str:
    """The JSON Schema of the spec, for editors and for `lockgate schema`.

    Its committed copy, rollout_specs/schema.json, is what the examples' yaml-language-server
    comment points at; a unit test keeps the two equal.
    """
    schema = RolloutSpec.model_json_schema(by_alias=True, schema_generator=_SpecJsonSchema)
    return json.dumps({"$schema": SCHEMA_DIALECT, "$id": SCHEMA_ID, **schema}, indent=2)
