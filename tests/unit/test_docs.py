"""The docs stand alone and say what the code does: phases, the tutorial's router, links.

Docs drift silently; these tests make the checkable parts fail instead: the phases table lists
exactly the phases the code defines, the tutorial's router and spec run against lockgate's own
code, every relative link resolves, and nothing cites a file outside the repository.
"""

from __future__ import annotations

import os
import re
import threading
import types
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from activities.contracts import Route, RouteMode
from activities.errors import RouteConflict
from activities.routers.http_router import HttpTrafficRouter
from rollout_specs import Guardrails, HttpRouter, PolicyVersion, load_spec
from workflows.state import TERMINAL_PHASES, Phase

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
VERBS = {"approve", "pause", "resume", "promote", "rollback", "abandon"}


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted(DOCS.glob("*.md"))]


def _phase_rows() -> dict[str, list[str]]:
    """The phases table of docs/phases.md: phase -> its cells."""
    rows: dict[str, list[str]] = {}
    for line in (DOCS / "phases.md").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\| `([a-z_]+)` \|(.*)\|$", line)
        if match:
            assert match.group(1) not in rows, f"phase {match.group(1)} is listed twice"
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split(" | ")]
    return rows


def test_the_phases_table_lists_exactly_the_phases_of_the_code() -> None:
    assert set(_phase_rows()) == {phase.value for phase in Phase}


def test_each_phase_row_names_only_real_verbs_and_terminal_phases_accept_none() -> None:
    for phase, (meaning, verbs, moves_on) in _phase_rows().items():
        assert meaning, phase
        assert moves_on, phase
        named = set(re.findall(r"`([a-z]+)(?: --force)?`", verbs))
        assert named <= VERBS, (phase, named - VERBS)
        if Phase(phase) in TERMINAL_PHASES:
            assert verbs == "none", phase
            assert meaning.startswith("Terminal."), phase
        else:
            assert named, f"{phase} accepts no verb, yet it has not ended"
            assert "abandon" in named, f"{phase}: abandon (at least with --force) ends any phase"


def _code_block(path: Path, language: str, starting: str) -> str:
    text = path.read_text(encoding="utf-8")
    blocks: list[str] = re.findall(
        rf"^```{language}\n(.*?)^```$", text, flags=re.DOTALL | re.MULTILINE
    )
    found = [block for block in blocks if block.startswith(starting)]
    assert len(found) == 1, f"{path.name}: expected one {language} block starting {starting!r}"
    return found[0]


@pytest.fixture
def tutorial_router() -> Iterator[tuple[str, types.ModuleType]]:
    """The tutorial's router.py, served on a free loopback port."""
    module = types.ModuleType("tutorial_router")
    code = _code_block(DOCS / "tutorial.md", "python", '"""router.py')
    exec(compile(code, "docs/tutorial.md:router.py", "exec"), module.__dict__)
    module.RouteHandler.log_message = lambda *args: None  # quiet: no line per request
    server = ThreadingHTTPServer(("127.0.0.1", 0), module.RouteHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", module
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _route(generation: int, percent: float, **changes: Any) -> Route:
    fields: dict[str, Any] = {
        "rollout_id": "rollout-ranker/run-1",
        "generation": generation,
        "incumbent": PolicyVersion(version="v1"),
        "candidate": PolicyVersion(version="v2", uri="http://ranker-v2.internal"),
        "mode": RouteMode.SPLIT,
        "percent": percent,
        "guardrails": Guardrails(blocked_actions=["discount_90"]),
    }
    return Route(**(fields | changes))


async def test_the_tutorial_router_keeps_the_route_contract(
    tutorial_router: tuple[str, types.ModuleType],
) -> None:
    url, _ = tutorial_router
    async with httpx.AsyncClient() as client:
        router = HttpTrafficRouter(HttpRouter(type="http", url=url), client)
        assert await router.get_route("ranker") is None

        first = _route(10, 5.0)
        assert await router.put_route("ranker", first) == first
        assert await router.get_route("ranker") == first
        # The same generation again: answered with the stored route, nothing changes.
        assert await router.put_route("ranker", _route(10, 50.0)) == first
        newer = _route(11, 50.0, scope={"region": ["eu-west-1"]})
        assert await router.put_route("ranker", newer) == newer
        with pytest.raises(RouteConflict, match="holding generation 11 of rollout-ranker/run-1"):
            await router.put_route("ranker", _route(9, 100.0))
        assert await router.get_route("ranker") == newer
        assert await router.get_route("other") is None


async def test_the_tutorial_router_chooses_sticky_scoped_shares(
    tutorial_router: tuple[str, types.ModuleType],
) -> None:
    url, module = tutorial_router
    async with httpx.AsyncClient() as client:
        router = HttpTrafficRouter(HttpRouter(type="http", url=url), client)
        assert module.choose("ranker", "u1", {}) is None
        await router.put_route("ranker", _route(1, 20.0, scope={"region": ["eu"]}))
        eu = [module.choose("ranker", f"u{i}", {"region": "eu"})["version"] for i in range(2000)]
        assert 300 < eu.count("v2") < 500  # about 20%
        assert {
            module.choose("ranker", f"u{i}", {"region": "us"})["version"] for i in range(200)
        } == {"v1"}
        await router.put_route("ranker", _route(2, 60.0, scope={"region": ["eu"]}))
        later = [module.choose("ranker", f"u{i}", {"region": "eu"})["version"] for i in range(2000)]
        # Raising the share keeps every unit already on the candidate there.
        assert all(after == "v2" for before, after in zip(eu, later, strict=True) if before == "v2")
        assert 1100 < later.count("v2") < 1300
        await router.put_route("ranker", _route(3, 0.0, mode=RouteMode.OFF, candidate=None))
        assert module.choose("ranker", "u1", {"region": "eu"})["version"] == "v1"


def test_the_tutorial_spec_is_valid(tmp_path: Path) -> None:
    spec_text = _code_block(DOCS / "tutorial.md", "yaml", "apiVersion: lockgate/v1")
    path = tmp_path / "ranker-v2.yaml"
    path.write_text(spec_text, encoding="utf-8")
    spec = load_spec(path)
    assert (spec.spec.target, spec.spec.candidate.version) == ("ranker", "v2")


def test_the_deployment_files_exist_and_match_the_guide() -> None:
    guide = (DOCS / "deployment.md").read_text(encoding="utf-8")
    unit = (ROOT / "deploy" / "lockgate-worker.service").read_text(encoding="utf-8")
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    for setting in ("Restart=always", "KillSignal=SIGTERM", "EnvironmentFile="):
        assert re.search(rf"^{setting}", unit, flags=re.MULTILINE), setting
    assert unit in guide, "the guide quotes deploy/lockgate-worker.service as it is"
    assert re.search(r'^CMD \["python", "worker.py"\]$', dockerfile, flags=re.MULTILINE)


LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", _markdown_files(), ids=lambda p: p.name)
def test_every_relative_link_resolves(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    text = re.sub(r"^```.*?^```$", "", text, flags=re.DOTALL | re.MULTILINE)
    text = re.sub(r"`[^`\n]*`", "", text)
    for link in LINK.findall(text):
        if re.match(r"^[a-z]+:", link) or link.startswith("#"):
            continue
        target = (page.parent / link.split("#", 1)[0]).resolve()
        assert target.exists(), f"{page.name} links to {link}, which does not exist"


# Spelled in pieces so that this file does not match itself.
OUTSIDE = [
    re.compile("DES" + "IGN"),
    re.compile("design" + "'s target shape"),
    re.compile("rese" + r"arch/"),
    re.compile(r"\.\./" + "shared"),
    re.compile("the " + r"note(?:'s)?\b", re.IGNORECASE),
    re.compile("not implemented " + "yet"),
]


def _sources() -> Iterator[Path]:
    skip = {".venv", "build", "test-artifacts", ".git", "node_modules", "__pycache__"}
    for directory, subdirectories, files in os.walk(ROOT):
        subdirectories[:] = [d for d in subdirectories if d not in skip and not d.startswith(".")]
        subdirectories[:] = [d for d in subdirectories if not d.endswith(".egg-info")]
        for name in files:
            path = Path(directory) / name
            if path.suffix in {".py", ".md", ".yaml", ".yml", ".toml"} and path != Path(__file__):
                yield path


def test_nothing_cites_a_file_outside_the_repository() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in _sources()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if any(pattern.search(line) for pattern in OUTSIDE)
    ]
    assert found == []
