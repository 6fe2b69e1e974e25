"""The README's first command: `lockgate demo` runs a whole rollout and says how it ended."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from cli import render_status
from runtime.demo import DemoOptions, run_demo
from runtime.processes import port_open
from runtime.stack import StackPorts

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(420)
async def test_the_demo_promotes_a_healthy_candidate_and_stops_everything(tmp_path: Path) -> None:
    ports = StackPorts.free()
    screen = io.StringIO()
    options = DemoOptions(
        scenario="healthy",
        rate=200.0,
        data_dir=tmp_path / "demo",
        keep=False,
        fast=True,
        ports=ports,
    )

    as_expected = await run_demo(options, Console(file=screen, width=120), render_status)

    shown = screen.getvalue()
    assert as_expected, shown
    assert "PROMOTED after" in shown
    assert "42 is the incumbent of offers" in shown
    assert f"http://127.0.0.1:{ports.ui}/namespaces/default/workflows/rollout-offers" in shown
    assert not ports.busy(), "every process the demo started is gone"
    assert not port_open(ports.temporal)
