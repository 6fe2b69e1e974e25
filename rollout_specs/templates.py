"""Query templates: `{{variable}}` placeholders filled in at every check.

A monitoring query that silently renders `{{candidate}}` as an empty string matches every series
or none, and either way the rollout is judged on the wrong data. So the variables are a closed
set checked when the spec loads, and rendering refuses a missing value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["TEMPLATE_VARIABLES", "TemplateError", "render", "unknown_variables", "variables_in"]

TEMPLATE_VARIABLES: dict[str, str] = {
    "target": "the policy slot being rolled out (spec.target)",
    "incumbent": "the incumbent's version",
    "candidate": "the candidate's version",
    "rollout": "the rollout's name (metadata.name)",
    "stage": "the current stage's name",
    "percent": "the candidate's traffic share in the current stage, 0 in shadow",
    "stage_window": "time since the stage started, as a PromQL range such as 90s",
    "check_interval": "the spec's check interval, as a PromQL range such as 30s",
    "version": "one arm's version, in a metric's per-arm queries (spec.metrics) only",
}
"""Every variable a query may use, with what it stands for (shown in error messages and docs)."""

_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")


class TemplateError(ValueError):
    """A template names a variable that is unknown or has no value at render time."""


def variables_in(template: str) -> list[str]:
    """Return the placeholder names a template uses, in order of first use."""
    seen: dict[str, None] = {}
    for match in _PLACEHOLDER.finditer(template):
        seen.setdefault(match.group(1), None)
    return list(seen)


def unknown_variables(template: str) -> list[str]:
    """Return the placeholders that are not in TEMPLATE_VARIABLES."""
    return [name for name in variables_in(template) if name not in TEMPLATE_VARIABLES]


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill every placeholder, or raise TemplateError naming the one that has no value."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise TemplateError(f"query variable {{{{{name}}}}} has no value at this check")
        return values[name]

    return _PLACEHOLDER.sub(substitute, template)
