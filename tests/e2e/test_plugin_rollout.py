"""A monitoring provider from another package: installed, found by entry point, and rolled out.

The plugin (tests/fixtures/lockgate_plugin_example) is installed with `pip install --target`
into a temporary directory that only the child process sees, so lockgate's own environment never
holds it; the child runs two real rollouts on a Temporal dev server, judged by the plugin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"

pytestmark = pytest.mark.e2e


def _install_plugin(target: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--disable-pip-version-check", "--target", str(target),
         str(FIXTURES / "lockgate_plugin_example")],
        check=True, timeout=120, capture_output=True,
    )  # fmt: skip


def test_a_plugin_provider_judges_real_rollouts(tmp_path: Path) -> None:
    plugin = tmp_path / "site"
    _install_plugin(plugin)
    assert (plugin / "lockgate_plugin_example").is_dir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), str(ROOT)])}

    finished = subprocess.run(
        [sys.executable, str(FIXTURES / "plugin_rollout.py")],
        cwd=ROOT, env=env, timeout=150, capture_output=True, text=True,
    )  # fmt: skip

    assert finished.returncode == 0, finished.stderr[-4000:]
    report = json.loads(finished.stdout.strip().splitlines()[-1])
    assert report["providers"] == ["http", "prometheus", "static"]
    healthy, breaching = report["healthy"], report["breaching"]
    assert healthy["monitoring"] == breaching["monitoring"] == "StaticMonitoring"
    assert healthy["phase"] == "completed"
    assert healthy["routes"] == [["split", 10.0], ["split", 100.0], ["off", 0.0]]
    assert breaching["phase"] == "rolled_back"
    assert breaching["routes"][-1] == ["off", 0.0]
    assert report["document_reads"] >= 3, "every check read the plugin's document"


def test_the_plugin_is_not_installed_here() -> None:
    names = {entry.name for entry in entry_points(group="lockgate.providers")}
    assert names == {"prometheus", "http"}, "the plugin test leaked its package into lockgate's"
