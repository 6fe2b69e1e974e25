"""Query templates: `{{variable}}` placeholders filled in at every check.

A monitoring query that silently renders `{{candidate}}` as an empty string matches every series
or none, and either way the rollout is judged on the wrong data. So the variables are a closed
set checked when the spec loads, and rendering refuses a missing value.

A value is also escaped for the place it lands, so no value can rewrite the query around it
(`42"}[5m])) * 0 or vector(0) #` must stay a label value, not zero the error rate). `render`
reads the template as PromQL text: inside a double- or single-quoted string the value is escaped
by PromQL's (Go's) string rules, and regex-escaped too after `=~` or `!~`; inside a backquoted
(raw) string it may not contain a backquote; outside quotes (a range such as `[{{stage_window}}]`,
or the http provider's `key={{value}}` words) it must be a plain token that needs no escaping in
PromQL, in `key=value` text or in a URL query string. The http provider sends the whole rendered
query as one URL query parameter, which its HTTP client percent-encodes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from enum import Enum

__all__ = [
    "TEMPLATE_VARIABLES",
    "TOKEN_CHARACTERS",
    "TemplateError",
    "placement_problem",
    "promql_string",
    "render",
    "unknown_variables",
    "variables_in",
]

TEMPLATE_VARIABLES: dict[str, str] = {
    "target": "the policy slot being rolled out (spec.target)",
    "incumbent": "the incumbent's version",
    "candidate": "the candidate's version",
    "rollout": "the rollout's name (metadata.name)",
    "stage": "the current stage's name",
    "percent": "the candidate's traffic share in the current stage, 0 in shadow",
    "stage_window": "time since the stage started, as a PromQL range such as 90s",
    "rollout_window": "time since the rollout's first live stage started, as a PromQL range",
    "check_interval": "the spec's check interval, as a PromQL range such as 30s",
    "version": "one arm's version, in a metric's per-arm queries (spec.metrics) only",
}
"""Every variable a query may use, with what it stands for (shown in error messages and docs)."""

# No nested quantifiers: the name is stripped in Python, so matching stays linear in the length
# of the template (a lazy `\s*(.*?)\s*` backtracks quadratically on `{{` and a long run of spaces).
_PLACEHOLDER = re.compile(r"\{\{([^{}]*)\}\}")

TOKEN_CHARACTERS = "letters, digits, '.', '_', '-' and ':'"
"""What a value placed outside quotes may hold (shown in errors and docs)."""
_TOKEN = re.compile(r"[A-Za-z0-9._:-]*")
_REGEX_SPECIAL = frozenset("\\.+*?()|[]{}^$")
"""RE2's metacharacters, as Go's regexp.QuoteMeta escapes them (PromQL regexes are RE2)."""
_SHORT_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


class _Place(Enum):
    """Where a placeholder sits in PromQL text, which decides how its value is escaped."""

    BARE = "outside quotes"
    DOUBLE = "in a double-quoted string"
    SINGLE = "in a single-quoted string"
    RAW = "in a backquoted string"
    COMMENT = "in a comment"


class TemplateError(ValueError):
    """A template names a variable that is unknown or has no value at render time."""


def variables_in(template: str) -> list[str]:
    """Return the placeholder names a template uses, in order of first use."""
    seen: dict[str, None] = {}
    for match in _PLACEHOLDER.finditer(template):
        seen.setdefault(match.group(1).strip(), None)
    return list(seen)


def unknown_variables(template: str) -> list[str]:
    """Return the placeholders that are not in TEMPLATE_VARIABLES."""
    return [name for name in variables_in(template) if name not in TEMPLATE_VARIABLES]


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill every placeholder, each value escaped for where it lands in the query.

    Raises TemplateError naming the placeholder that has no value, or whose value cannot be
    placed there safely (a backquote in a raw string, anything but a plain token outside quotes,
    a placeholder right after a backslash), so a hostile or odd value is an error verdict rather
    than a query that measures something else.
    """
    out: list[str] = []
    position = 0
    for match, place, regex in _placements(template):
        name = match.group(1).strip()
        if name not in values:
            raise TemplateError(f"query variable {{{{{name}}}}} has no value at this check")
        out.append(template[position : match.start()])
        out.append(_escape(name, values[name], place, regex))
        position = match.end()
    out.append(template[position:])
    return "".join(out)


def placement_problem(template: str) -> str | None:
    """Why a placeholder of `template` can never be filled safely, or None when all can.

    Checked when the spec loads: a placeholder right after a backslash inside a quoted string
    would have its value's first character swallowed by the template's own escape.
    """
    for match, place, _ in _placements(template):
        if place is None:
            name = match.group(1).strip()
            return (
                f"{{{{{name}}}}} follows a backslash inside a quoted string, which would escape "
                "the first character of its value; remove the backslash"
            )
    return None


def promql_string(value: str, quote: str = '"') -> str:
    r"""`value` as the inside of a PromQL string quoted with `quote` (Go's escaping rules).

    Backslash and the quote are escaped, line breaks and tabs as `\n` `\t` `\r`, any other
    control character (or lone surrogate) as `\xHH` (`\uHHHH`); other text is kept as is. Used
    by `render`; exported for code that builds PromQL around spec values by hand.
    """
    out: list[str] = []
    for char in value:
        code = ord(char)
        if char == "\\" or char == quote:
            out.append("\\" + char)
        elif char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


def _regex_literal(value: str) -> str:
    """`value` matched literally by an RE2 regex (PromQL's `=~` and `!~`)."""
    return "".join("\\" + char if char in _REGEX_SPECIAL else char for char in value)


def _escape(name: str, value: str, place: _Place | None, regex: bool) -> str:
    if place is None:
        raise TemplateError(
            f"query variable {{{{{name}}}}} follows a backslash inside a quoted string; remove "
            "the backslash"
        )
    if regex:
        value = _regex_literal(value)
    if place is _Place.DOUBLE:
        return promql_string(value, '"')
    if place is _Place.SINGLE:
        return promql_string(value, "'")
    if place is _Place.RAW:
        if "`" in value:
            raise TemplateError(
                f"query variable {{{{{name}}}}} sits in a backquoted string but its value holds "
                "a backquote, which such a string cannot escape; quote it with double quotes"
            )
        return value
    if _TOKEN.fullmatch(value) is None:
        raise TemplateError(
            f"query variable {{{{{name}}}}} is {place.value} but its value {value[:80]!r} is "
            f"not a plain token ({TOKEN_CHARACTERS}); put the placeholder in a quoted label "
            'value, e.g. version="{{' + name + '}}"'
        )
    return value


_OPENS = {'"': _Place.DOUBLE, "'": _Place.SINGLE, "`": _Place.RAW, "#": _Place.COMMENT}
_CLOSES = {_Place.DOUBLE: '"', _Place.SINGLE: "'", _Place.RAW: "`", _Place.COMMENT: "\n"}


class _Lexer:
    """PromQL's quoting state, fed the template one character at a time.

    Strings in `"` or `'` take backslash escapes, backquoted (raw) strings take none, and `#`
    starts a comment that ends with the line. That is all `render` needs to know where a
    placeholder sits.
    """

    def __init__(self, template: str) -> None:
        self.template = template
        self.place = _Place.BARE
        self.escaped = False
        self.regex = False

    def feed(self, index: int) -> None:
        """Move past the character at `index`."""
        char = self.template[index]
        if self.escaped:
            self.escaped = False
        elif self.place is _Place.BARE:
            if char in _OPENS:
                self.place = _OPENS[char]
                self.regex = _follows_match_operator(self.template, index)
        elif char == _CLOSES[self.place]:
            self.place = _Place.BARE
        elif char == "\\" and self.place in (_Place.DOUBLE, _Place.SINGLE):
            self.escaped = True

    def in_regex(self) -> bool:
        """Whether the current place is a string that is a regex matcher's operand."""
        return self.regex and self.place in (_Place.DOUBLE, _Place.SINGLE, _Place.RAW)


def _placements(template: str) -> Iterator[tuple[re.Match[str], _Place | None, bool]]:
    """Each placeholder, where it sits and whether it sits in a regex (`=~`/`!~` operand).

    The place is None right after a backslash inside a string. One pass, linear in the length.
    """
    lexer = _Lexer(template)
    position = 0
    for match in _PLACEHOLDER.finditer(template):
        for index in range(position, match.start()):
            lexer.feed(index)
        yield match, (None if lexer.escaped else lexer.place), lexer.in_regex()
        lexer.escaped = False
        position = match.end()


def _follows_match_operator(template: str, quote: int) -> bool:
    """Whether the quote at `quote` opens a regex (`=~ "..."` or `!~ "..."`)."""
    index = quote - 1
    while index >= 0 and template[index].isspace():
        index -= 1
    return index >= 1 and template[index] == "~" and template[index - 1] in "=!"
