"""docs/cli-reference.md is what scripts/cli_reference.py writes, and `lockgate version` answers."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from scripts import cli_reference
from scripts.cli_reference import COMMAND, TARGET, render

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_reference_is_the_generated_one() -> None:
    committed = TARGET.read_text(encoding="utf-8")
    assert committed == render(), f"docs/cli-reference.md is out of date: run {COMMAND}"


def test_the_reference_names_every_command_and_option() -> None:
    import typer

    from cli import app

    group: Any = typer.main.get_command(app)
    context = group.context_class(group, info_name="lockgate")
    page = render()
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        if command.hidden:
            continue
        assert f"## lockgate {name}\n" in page
        for param in command.params:
            for opt in [*param.opts, *param.secondary_opts]:
                if opt.startswith("-"):
                    assert f"`{opt}`" in page, (name, opt)


def test_check_mode_fails_on_a_stale_page_and_writing_fixes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "cli-reference.md"
    page.write_text("# CLI reference\n\nstale\n", encoding="utf-8")
    monkeypatch.setattr(cli_reference, "TARGET", page)

    assert cli_reference.main(["--check"]) == 1
    assert (
        "is out of date; run .venv/bin/python scripts/cli_reference.py" in capsys.readouterr().err
    )
    assert cli_reference.main([]) == 0
    assert page.read_text(encoding="utf-8") == render()
    assert cli_reference.main(["--check"]) == 0


def test_lockgate_version_prints_lockgate_and_the_sdk() -> None:
    result = subprocess.run(
        [sys.executable, "cli.py", "version"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"lockgate {version('lockgate')}",
        f"temporalio {version('temporalio')}",
    ]
