"""Fuzzing the spec loader: any input is a RolloutSpec or a SpecError, each judged within 1 s.

`lockgate validate` runs on whatever a spec repo holds, and the CLI maps SpecError to exit 2; any
other exception is a traceback and exit 1, and a slow input stalls CI. Two kinds of generators
feed the loader:

- text: random YAML documents, mutations of the shipped examples (odd scalars, stray
  characters, cut lines), alias bombs (lists, mappings, `<<` merges, self-references), deep
  nesting, raw bytes (invalid UTF-8, UTF-16, BOMs) and oversized files, through `load_spec`;
- structure: documents shaped like the examples with hostile values put anywhere (NaN,
  infinities, 5,000-digit integers, megabyte strings, odd keys, self-containing lists), through
  `parse_spec`.

Every input must give a RolloutSpec or a SpecError (one not raised for an internal error), with
short single-line problems, within a second. A spec that loads must also cross the workflow's
JSON converter unchanged and render every query with the values a check uses. Hypothesis is
derandomized, so the same tree and test selection run the same inputs every time (Hypothesis also
draws a few values from constants in the loaded local modules, so editing code can change some
inputs). The counts (inputs, crashes, the slowest input) are printed in pytest's terminal summary.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rollout_specs
from rollout_specs import (
    DriftTrigger,
    RolloutSpec,
    ShadowTrigger,
    SpecError,
    TemplateError,
    ThresholdTrigger,
    load_spec,
    parse_spec,
    render,
)
from rollout_specs.loader import INTERNAL_PROBLEM, MAX_SPEC_BYTES

pytestmark = pytest.mark.filterwarnings(
    "ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning"
)
LIMIT = 1.0
"""Seconds within which every input must be judged."""
EXAMPLES = sorted((Path(rollout_specs.__file__).parent / "examples").glob("*.yaml"))
TEXTS = [path.read_text(encoding="utf-8") for path in EXAMPLES]
DOCUMENTS: list[dict[str, Any]] = [yaml.safe_load(text) for text in TEXTS]
RANKER = (Path(rollout_specs.__file__).parent / "examples" / "ranker-canary.yaml").read_text(
    encoding="utf-8"
)
DEMO = (Path(rollout_specs.__file__).parent / "examples" / "demo.yaml").read_text(encoding="utf-8")

FUZZ = settings(
    derandomize=True,  # the same inputs on every run: CI is reproducible, never flaky
    database=None,  # and writes no .hypothesis directory into the tree
    deadline=None,  # judge() times the judging itself (1 s); generation may take longer on load
    print_blob=False,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
)


# ----------------------------------------------------------------------------- the tally


@dataclass
class Tally:
    """What the fuzz tests tried, shown in the terminal summary so CI logs carry it."""

    tried: int = 0
    loaded: int = 0
    refused: int = 0
    crashes: list[str] = field(default_factory=list)
    slowest: float = 0.0
    slowest_input: str = ""
    kinds: Counter[str] = field(default_factory=Counter)

    def lines(self) -> list[str]:
        """The summary, one line each."""
        kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(self.kinds.items()))
        out = [
            f"inputs tried: {self.tried} ({kinds})",
            f"loaded: {self.loaded}, refused with a SpecError: {self.refused}",
            f"crashes: {len(self.crashes)}",
            f"slowest input: {self.slowest * 1000:.1f} ms ({self.slowest_input})",
        ]
        return out + [f"  crash: {crash}" for crash in self.crashes[:10]]


TALLY = Tally()


class _Summary:
    """A pytest plugin registered by this module: hooks in a test module are never called."""

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Print the tally after the run, with or without `-s`."""
        if TALLY.tried:
            terminalreporter.write_sep("-", "spec fuzz (tests/unit/test_spec_fuzz.py)")
            for line in TALLY.lines():
                terminalreporter.write_line(line)


@pytest.fixture(scope="module", autouse=True)
def _summary(request: pytest.FixtureRequest) -> Iterator[None]:
    manager = request.config.pluginmanager
    if manager.get_plugin("lockgate-spec-fuzz") is None:
        manager.register(_Summary(), "lockgate-spec-fuzz")
    yield
    print("\n".join(["", "spec fuzz:", *TALLY.lines()]))


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One file the text-level inputs are written to in turn (a fixture per module, so
    Hypothesis does not share a function-scoped one across examples)."""
    return tmp_path_factory.mktemp("fuzz") / "spec.yaml"


def _label(content: object) -> str:
    text = repr(content)
    return text if len(text) <= 100 else f"{text[:60]}... ({len(text)} chars)"


def _check_loaded(spec: RolloutSpec) -> None:
    """What a spec that loads promises the workflow: it survives the JSON converter and every
    query renders with the values a check passes (no TemplateError on any check)."""
    assert RolloutSpec.model_validate_json(spec.model_dump_json()) == spec
    body = spec.spec
    for stage in body.stages:
        values = {
            "target": body.target,
            "incumbent": body.incumbent.version,
            "candidate": body.candidate.version,
            "rollout": spec.metadata.name,
            "stage": stage.name,
            "percent": f"{stage.percent or 0:g}",
            "stage_window": "5400s",
            "check_interval": "30s",
        }
        triggers = body.rollback_triggers
        templates = [t.query for t in triggers if isinstance(t, ThresholdTrigger)]
        templates += [t.drift.by_action for t in triggers if isinstance(t, DriftTrigger)]
        templates += [t.shadow.pairs for t in triggers if isinstance(t, ShadowTrigger)]
        for name in body.known_metrics():
            metric = body.metric(name)
            templates += [metric.count, metric.total, metric.total_squares or ""]
        for template in templates:
            for version in (body.incumbent.version, body.candidate.version):
                try:
                    render(template, {**values, "version": version})
                except TemplateError as exc:
                    raise AssertionError(f"a loaded spec cannot render {template!r}") from exc


def judge(kind: str, content: object, run: Callable[[], RolloutSpec]) -> RolloutSpec | None:
    """Run one input; record and assert the contract: a spec or a SpecError, within LIMIT."""
    TALLY.tried += 1
    TALLY.kinds[kind] += 1
    spec: RolloutSpec | None = None
    problems: list[str] = []
    started = time.perf_counter()
    try:
        spec = run()
    except SpecError as exc:
        problems = exc.problems
    except Exception as exc:  # the finding: anything but a SpecError is a crash
        TALLY.crashes.append(f"{kind}: {type(exc).__name__}: {str(exc)[:120]} <- {_label(content)}")
        raise AssertionError(f"{type(exc).__name__} for {_label(content)}") from exc
    elapsed = time.perf_counter() - started
    if spec is None:
        TALLY.refused += 1
        internal = [line for line in problems if line.startswith(INTERNAL_PROBLEM)]
        if internal:
            TALLY.crashes.append(f"{kind}: {internal[0]} <- {_label(content)}")
            raise AssertionError(f"{internal[0]} for {_label(content)}")
        assert problems, "a SpecError says what is wrong"
        for line in problems:
            assert "\n" not in line, f"problem line {line[:200]!r}"
            assert len(line) < 2000, f"problem line {line[:200]!r}"
    else:
        TALLY.loaded += 1
        assert isinstance(spec, RolloutSpec)
        _check_loaded(spec)
    if elapsed > LIMIT:  # a pause of the machine (GC, another process) does not repeat itself
        again = time.perf_counter()
        with contextlib.suppress(SpecError):
            run()
        elapsed = min(elapsed, time.perf_counter() - again)
    if elapsed > TALLY.slowest:
        TALLY.slowest, TALLY.slowest_input = elapsed, f"{kind}: {_label(content)}"
    assert elapsed <= LIMIT, f"{kind} input judged in {elapsed:.2f}s (twice): {_label(content)}"
    return spec


def judge_text(kind: str, content: str | bytes, path: Path) -> RolloutSpec | None:
    """Write `content` to `path` and judge `load_spec` on it."""
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode("utf-8", "surrogatepass"))
    return judge(kind, content, lambda: load_spec(path))


def judge_document(kind: str, document: object) -> RolloutSpec | None:
    """Judge `parse_spec` on an already built document."""
    return judge(kind, document, lambda: parse_spec(document, "fuzz.yaml"))


# ----------------------------------------------------------------------------- odd values

ODD_SCALARS = [
    ".nan",
    ".NaN",
    ".inf",
    "-.inf",
    "+.Inf",
    "1.0e+400",
    "-1.0e+400",
    "1.0e-400",
    "1e400",
    "1000000000d",
    "365d",
    "366d",
    "8761h",
    "0.0004s",
    "1.0005s",
    "PT30S",
    "P999999999999D",
    "-PT5M",
    "P400D",
    "1h-30m",
    "30 seconds",
    "9" * 5000,
    "-" + "9" * 30,
    "0x" + "f" * 80,
    "0o" + "7" * 70,
    "0b" + "1" * 200,
    "1_000_000",
    "190:20:30",
    "0",
    "-1",
    "1.5",
    "100.0000001",
    "~",
    "null",
    "''",
    '""',
    "yes",
    "no",
    "on",
    "off",
    "y",
    "2024-13-45",
    "2024-02-30",
    "2024-01-01",
    "2001-12-14t21:59:43.10-05:00",
    "12:30:00",
    "!!binary aGk=",
    "!!binary '@@'",
    "!!set {a, b}",
    "!!omap [{a: 1}, {b: 2}]",
    "!!pairs [{a: 1}]",
    "!!int x",
    "!!float x",
    "!!str 42",
    "!!python/object:os.system {}",
    "!!timestamp 2024-99-99",
    "!something x",
    "*undefined",
    "&anchor",
    "&anchor x",
    "[",
    "{",
    "}",
    "]",
    '"',
    "'",
    "? [a, b]",
    "[*a]",
    "{<<: [1]}",
    "{<<: *undefined}",
    "|",
    ">-",
    "|+\n  x",
    "'42\"}[5m])) * 0 or vector(0) #'",
    "'{{candidate}}'",
    "'{{ nope }}'",
    "'\\{{target}}'",
    "'x{v=`{{candidate}}`}'",
    '"a\\x00b"',
    '"\\u202e"',
    '"\\ud800"',
    '"٤٢"',
    '"\uff21\uff22"',  # fullwidth A and B
    '"🚀"',
    '"\\t"',
    "'a\tb'",
    "[1, [2, [3, [4]]]]",
    "{a: {b: {c: {d: {}}}}}",
    "[]",
    "{}",
    "'" + "x" * 5000 + "'",
    "eu-west-1",
    "v1.2.3",
    "ranker_V42",
    "-ranker",
    "http://x",
    "http://",
    "ftp://x",
]
"""YAML source for one value, each an edge the loader or a model has to handle."""

HOSTILE_VALUES: list[Any] = [
    math.nan,
    math.inf,
    -math.inf,
    -0.0,
    1e308,
    5e-324,
    10**5000,
    -(10**400),
    2**64,
    10**18 + 1,
    True,
    None,
    "",
    " ",
    "\x00",
    "\n",
    "x" * 300_000,
    '42"}[5m])) * 0 or vector(0) #',
    b"\xff",
    b"42",
    [],
    {},
    [[[[[]]]]],
    {None: 1},
    {1: 2},
    {(1, 2): 3},
    {1.5: 2},
    {True: 1},
    {1, 2},  # a set (of ints: string sets iterate in a per-process order)
    frozenset(),
    (1, 2),
    [math.nan],
    {"above": math.nan},
    {"margin": math.inf},
    "{{candidate}}",
    "1000000000d",
    "P400D",
    "0.0004s",
    "365d",
    "100",
    "-5",
    0,
    -1,
    0.5,
    100,
    101,
    1e-320,
]
"""Python values put anywhere in a document by the structure-level generator."""

SPEC_KEYS = [
    "apiVersion",
    "kind",
    "metadata",
    "spec",
    "name",
    "target",
    "incumbent",
    "candidate",
    "version",
    "uri",
    "router",
    "monitoring",
    "type",
    "url",
    "stages",
    "percent",
    "mode",
    "min_duration",
    "max_duration",
    "scope",
    "rollback_triggers",
    "query",
    "threshold",
    "above",
    "below",
    "compare",
    "metric",
    "max_drop",
    "advance_when",
    "margin",
    "<<",
]


# ----------------------------------------------------------------------------- text generators

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**15, max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["lockgate/v1", "Rollout", "http://127.0.0.1:1", "30s", "shadow", "split"]),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(
            st.one_of(st.sampled_from(SPEC_KEYS), st.text(max_size=8)), children, max_size=5
        ),
    ),
    max_leaves=25,
)


@st.composite
def random_documents(draw: st.DrawFn) -> str:
    """A random YAML document, sometimes wearing a spec's top-level keys."""
    value = draw(values)
    if draw(st.booleans()):
        value = {
            "apiVersion": "lockgate/v1",
            "kind": "Rollout",
            "metadata": value,
            "spec": draw(values),
        }
    return yaml.safe_dump(
        value,
        default_flow_style=draw(st.sampled_from([None, True, False])),
        allow_unicode=draw(st.booleans()),
        sort_keys=False,
    )


@st.composite
def mutated_examples(draw: st.DrawFn) -> str:
    """An example spec with one to four edits: odd values, stray text, cut or moved lines."""
    lines = draw(st.sampled_from(TEXTS)).splitlines()
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.integers(0, len(lines) - 1))
        line = lines[index]
        edit = draw(
            st.sampled_from(
                ["value", "value", "flow", "insert", "drop", "twice", "indent", "cut", "key"]
            )
        )
        if edit == "value" and ": " in line:
            key, _, _ = line.partition(": ")
            lines[index] = f"{key}: {draw(st.sampled_from(ODD_SCALARS))}"
        elif edit == "flow" and ": " in line:  # inside a {a: b, c: d} line, one value
            parts = line.split(", ")
            at = draw(st.integers(0, len(parts) - 1))
            key, sep, _ = parts[at].partition(": ")
            parts[at] = f"{key}{sep or ': '}{draw(st.sampled_from(ODD_SCALARS))}"
            lines[index] = ", ".join(parts)
        elif edit == "insert":
            at = draw(st.integers(0, len(line)))
            lines[index] = line[:at] + draw(st.text(max_size=6)) + line[at:]
        elif edit == "drop":
            del lines[index]
        elif edit == "twice":
            lines.insert(index, line)
        elif edit == "indent":
            lines[index] = " " * draw(st.integers(0, 6)) + line.lstrip()
        elif edit == "cut":
            lines = lines[:index]
        elif edit == "key":
            lines.insert(
                index, f"{draw(st.sampled_from(SPEC_KEYS))}: {draw(st.sampled_from(ODD_SCALARS))}"
            )
        if not lines:
            break
    return "\n".join(lines) + "\n"


@st.composite
def alias_bombs(draw: st.DrawFn) -> str:
    """Laughs in lists, mappings or `<<` merges; self-references; alone or inside a spec."""
    fanout, levels = draw(st.integers(2, 12)), draw(st.integers(1, 12))
    style = draw(st.sampled_from(["list", "map", "merge", "self"]))
    if style == "self":
        body = (
            draw(
                st.sampled_from(
                    ["a: &a [*a]", "a: &a {b: *a}", "a: &a [[[*a]]]", "a: &a {b: [c, {d: *a}]}"]
                )
            )
            + "\n"
        )
    else:
        body = "l0: &l0 [lol]\n" if style != "merge" else "l0: &l0 {k0: lol}\n"
        for level in range(1, levels + 1):
            refs = ", ".join([f"*l{level - 1}"] * fanout)
            if style == "list":
                body += f"l{level}: &l{level} [{refs}]\n"
            elif style == "map":
                refs = ", ".join(f"k{i}: *l{level - 1}" for i in range(fanout))
                body += f"l{level}: &l{level} {{{refs}}}\n"
            else:
                body += f"l{level}: &l{level}\n  <<: [{refs}]\n  k{level}: lol\n"
    if draw(st.booleans()):  # inside a spec: the bomb sits in the labels
        indented = "".join(f"    {line}\n" for line in body.splitlines())
        return RANKER.replace("metadata:", f"metadata:\n  labels:\n{indented}", 1)
    return body


@st.composite
def deep_nesting(draw: st.DrawFn) -> str:
    """Lists or mappings nested 1 to 100,000 deep, flow or block, alone or in a spec."""
    depth = draw(st.one_of(st.integers(1, 40), st.integers(41, 3000), st.just(100_000)))
    style = draw(st.sampled_from(["flow-list", "flow-map", "block-map", "block-list"]))
    if style == "flow-list":
        value = "[" * depth + "1" + "]" * depth
    elif style == "flow-map":
        value = "{a: " * depth + "1" + "}" * depth
    elif style == "block-map":
        depth = min(depth, 700)
        value = (
            "\n"
            + "".join(" " * (2 + i) + f"k{i}:\n" for i in range(depth))
            + " " * (2 + depth)
            + "v"
        )
    else:
        depth = min(depth, 700)
        value = (
            "\n" + "".join(" " * (2 + i) + "-\n" for i in range(depth)) + " " * (2 + depth) + "v"
        )
    if draw(st.booleans()):
        return RANKER.replace("owner: ranking-team", f"owner: {value}", 1)
    return f"a: {value}\n"


@st.composite
def raw_bytes(draw: st.DrawFn) -> bytes:
    """Bytes that are not (all) UTF-8: random, re-encoded examples, BOMs, stray bytes."""
    text = draw(st.sampled_from(TEXTS)).replace("ranking-team", "équipe-naïve")
    choice = draw(st.sampled_from(["random", "latin-1", "utf-16", "utf-32", "bom", "stray"]))
    if choice == "random":
        return draw(st.binary(max_size=2000))
    if choice == "bom":
        return draw(st.sampled_from([b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"])) + text.encode()
    if choice == "stray":
        data = bytearray(text.encode())
        at = draw(st.integers(0, len(data)))
        return bytes(data[:at]) + draw(st.binary(min_size=1, max_size=4)) + bytes(data[at:])
    return text.encode(choice)


@st.composite
def oversized(draw: st.DrawFn) -> str:
    """A spec with one long value: from a few KiB to past the file-size cap."""
    size = draw(st.integers(0, MAX_SPEC_BYTES + 40_000))
    where = draw(st.sampled_from(["owner: ranking-team", "target: ranker", 'version: "41"']))
    key = where.split(":")[0]
    return RANKER.replace(where, f"{key}: '{'x' * size}'", 1)


# ----------------------------------------------------------------------------- structure


def _paths(
    node: Any, path: tuple[Any, ...] = (), above: frozenset[int] = frozenset()
) -> Iterator[tuple[Any, ...]]:
    """Every place in a document, once; a container that holds itself is not walked again."""
    yield path
    if id(node) in above or len(path) > 40:
        return
    inside = above | {id(node)}
    if isinstance(node, dict):
        for key, child in node.items():
            yield from _paths(child, (*path, key), inside)
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _paths(child, (*path, index), inside)


@st.composite
def hostile_documents(draw: st.DrawFn) -> dict[str, Any]:
    """An example's document with hostile values put at one to three places."""
    document: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(DOCUMENTS)))
    hostile = st.one_of(
        st.sampled_from(HOSTILE_VALUES),
        st.floats(),
        st.integers(),
        st.text(max_size=50),
        values,
        st.just("self"),
    )
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(_paths(document))))
        if not path:
            continue
        parent: Any = document
        for part in path[:-1]:
            parent = parent[part]
        value = draw(hostile)
        if isinstance(value, (list, dict, set)):
            value = copy.deepcopy(value)
        if draw(st.integers(0, 9)) == 0 and isinstance(parent, dict):  # drop the key instead
            del parent[path[-1]]
            continue
        if value == "self":  # the container holds itself: a recursive alias, by hand
            value = parent
        if isinstance(parent, dict) and draw(st.integers(0, 4)) == 0:  # an extra, odd key
            parent[draw(st.sampled_from([None, 1, 1.5, (1,), "x" * 300, "type"]))] = value
        else:
            parent[path[-1]] = value
    return document


# ----------------------------------------------------------------------------- the fuzz tests


@settings(FUZZ, max_examples=300)
@given(text=random_documents())
def test_random_yaml_documents(spec_path: Path, text: str) -> None:
    judge_text("random-yaml", text, spec_path)


@settings(FUZZ, max_examples=2200)
@given(text=mutated_examples())
def test_mutated_examples(spec_path: Path, text: str) -> None:
    judge_text("mutated-example", text, spec_path)


@settings(FUZZ, max_examples=200)
@given(text=alias_bombs())
def test_alias_bombs(spec_path: Path, text: str) -> None:
    judge_text("aliases", text, spec_path)


@settings(FUZZ, max_examples=150)
@given(text=deep_nesting())
def test_deep_nesting(spec_path: Path, text: str) -> None:
    judge_text("nesting", text, spec_path)


@settings(FUZZ, max_examples=300)
@given(data=raw_bytes())
def test_raw_bytes(spec_path: Path, data: bytes) -> None:
    judge_text("bytes", data, spec_path)


@settings(FUZZ, max_examples=30)
@given(text=oversized())
def test_oversized_values(spec_path: Path, text: str) -> None:
    judge_text("oversized", text, spec_path)


@settings(FUZZ, max_examples=1800)
@given(document=hostile_documents())
def test_hostile_structures(document: dict[str, Any]) -> None:
    judge_document("structure", document)


@pytest.mark.parametrize("index", range(len(TEXTS)), ids=[path.name for path in EXAMPLES])
def test_the_unmutated_examples_load_and_keep_their_promises(spec_path: Path, index: int) -> None:
    assert judge_text("example", TEXTS[index], spec_path) is not None


def _laughs() -> str:
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


def _example(old: str, new: str, text: str = RANKER) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


REGRESSIONS: list[Any] = [
    pytest.param(
        _example(
            'candidate: {version: "42"', "candidate: {version: '42\"}[5m])) * 0 or vector(0) #'"
        ),
        id="promql-injection",
    ),
    pytest.param(_example("threshold: {above: 0.01}", "threshold: {above: .nan}"), id="nan"),
    pytest.param(_example("margin: 0.03", "margin: .inf", DEMO), id="infinite-margin"),
    pytest.param(_laughs(), id="billion-laughs"),
    pytest.param(_example("min_duration: 30m", "min_duration: 1000000000d"), id="billion-days"),
    pytest.param(_example("ranking-team", "\xe9quipe").encode("latin-1"), id="not-utf8"),
    pytest.param("a: " + "{b: " * 1000 + "1" + "}" * 1000 + "\n", id="1000-deep"),
    pytest.param("? [a, b]\n: c\n", id="unhashable-key"),
    pytest.param(
        _example("missing_data_limit: 5", "missing_data_limit: " + "9" * 5000), id="5000-digits"
    ),
    pytest.param(
        _example("owner: ranking-team", "owner: '" + "x" * 50_000_000 + "'"), id="50MB-string"
    ),
]


@pytest.mark.parametrize("content", REGRESSIONS)
def test_each_reported_input_is_a_spec_error(spec_path: Path, content: str | bytes) -> None:
    assert judge_text("regression", content, spec_path) is None
