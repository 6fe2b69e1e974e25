"""The demo stack's paths: the demo runs from any directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.stack import ROOT, DemoStack


def test_a_relative_data_dir_is_anchored_where_the_demo_was_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    stack = DemoStack(Path(".lockgate/demo"), prometheus=False)
    # Its processes run from the project's root, so a relative path would point there instead.
    assert stack.data_dir == tmp_path / ".lockgate" / "demo"
    assert stack.offline_log.parent == tmp_path / ".lockgate" / "demo"
    assert tmp_path != ROOT
