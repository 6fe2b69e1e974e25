"""Query templates: every placeholder is filled, and a missing value is an error, never ""."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollout_specs import TEMPLATE_VARIABLES, TemplateError, render
from rollout_specs.templates import unknown_variables, variables_in

VALUES = {
    "target": "ranker",
    "incumbent": "41",
    "candidate": "42",
    "rollout": "ranker-v42",
    "stage": "canary",
    "percent": "5",
    "stage_window": "1h30m",
    "rollout_window": "3h",
    "check_interval": "30s",
    "version": "42",
}


def test_the_test_values_cover_every_variable() -> None:
    assert set(VALUES) == set(TEMPLATE_VARIABLES)


def test_render_fills_every_variable() -> None:
    template = " ".join("{{" + name + "}}" for name in TEMPLATE_VARIABLES)

    assert render(template, VALUES) == " ".join(VALUES[name] for name in TEMPLATE_VARIABLES)


def test_render_a_promql_query() -> None:
    query = (
        'sum(rate(lockgate_decision_errors_total{target="{{target}}",version="{{candidate}}"}'
        "[{{stage_window}}]))"
    )

    assert render(query, VALUES) == (
        'sum(rate(lockgate_decision_errors_total{target="ranker",version="42"}[1h30m]))'
    )


@pytest.mark.parametrize(
    "placeholder", ["{{target}}", "{{ target }}", "{{  target}}", "{{target }}"]
)
def test_render_allows_spaces_inside_the_braces(placeholder: str) -> None:
    assert render(f"t={placeholder}", VALUES) == "t=ranker"


def test_render_fills_a_variable_used_twice() -> None:
    assert render("{{candidate}}/{{ candidate }}", VALUES) == "42/42"


def test_render_refuses_a_missing_value_and_names_it() -> None:
    values = {name: value for name, value in VALUES.items() if name != "candidate"}

    with pytest.raises(TemplateError) as caught:
        render('x{target="{{target}}",version="{{ candidate }}"}', values)

    assert str(caught.value) == "query variable {{candidate}} has no value at this check"


def test_render_does_not_expand_placeholders_inside_values() -> None:
    # Quoted: outside quotes only plain tokens may land (tests/unit/test_spec_hardening.py).
    assert render('x{s="{{stage}}"}', {"stage": "{{target}}"}) == 'x{s="{{target}}"}'


def test_render_leaves_text_without_placeholders_alone() -> None:
    query = 'sum(rate(x{a="b"}[5m]))'

    assert render(query, {}) == query


def test_variables_in_lists_first_use_order_once_each() -> None:
    template = "{{stage_window}} {{ target }} {{candidate}} {{target}} {{stage_window}}"

    assert variables_in(template) == ["stage_window", "target", "candidate"]


def test_variables_in_finds_nothing_in_plain_text() -> None:
    assert variables_in("rate(x[5m]) {not a placeholder}") == []


def test_unknown_variables_are_the_ones_outside_the_closed_set() -> None:
    assert unknown_variables("{{target}} {{candiate}} {{ arm }} {{percent}}") == [
        "candiate",
        "arm",
    ]


def test_every_variable_is_documented_in_the_spec_reference() -> None:
    reference = (Path(__file__).resolve().parents[2] / "docs" / "spec-reference.md").read_text(
        encoding="utf-8"
    )

    for name in TEMPLATE_VARIABLES:
        assert f"| `{{{{{name}}}}}` |" in reference, name
