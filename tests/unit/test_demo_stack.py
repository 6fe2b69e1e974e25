"""The demo stack's paths (the demo runs from any directory) and its gateway wiring: the
control plane on its own port, behind a token drawn per stack."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from rollout_specs import BearerAuth
from runtime.stack import GATEWAY_TOKEN_ENV, ROOT, DemoStack, StackPorts, demo_spec


def test_a_relative_data_dir_is_anchored_where_the_demo_was_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    stack = DemoStack(Path(".lockgate/demo"), prometheus=False)
    # Its processes run from the project's root, so a relative path would point there instead.
    assert stack.data_dir == tmp_path / ".lockgate" / "demo"
    assert stack.offline_log.parent == tmp_path / ".lockgate" / "demo"
    assert tmp_path != ROOT


def test_each_stack_draws_its_own_control_token_and_never_shows_it(tmp_path: Path) -> None:
    first, second = (DemoStack(tmp_path / n, prometheus=False) for n in ("a", "b"))
    assert first.control_token != second.control_token
    assert len(first.control_token) >= 32
    assert first.control_token not in repr(first)
    assert first.control_headers == {"Authorization": f"Bearer {first.control_token}"}


def test_the_token_file_is_the_users_alone(tmp_path: Path) -> None:
    stack = DemoStack(tmp_path / "demo", prometheus=False)
    stack.token_file.parent.mkdir(parents=True)
    stack.token_file.write_text("an older token\n", encoding="utf-8")
    stack.token_file.chmod(0o644)
    stack.write_token()
    assert stack.token_file.read_text(encoding="utf-8") == stack.control_token + "\n"
    assert stat.S_IMODE(stack.token_file.stat().st_mode) == 0o600


def test_the_gateway_gets_its_control_port_token_file_and_policy_servers(tmp_path: Path) -> None:
    ports = StackPorts.free()
    assert len(set(vars(ports).values())) == len(vars(ports)), "every service has its own port"
    stack = DemoStack(tmp_path, ports, prometheus=False)
    command = stack.gateway_command()
    options = dict(zip(command[3::2], command[4::2], strict=False))
    assert options["--port"] == str(ports.gateway)
    assert options["--control-port"] == str(ports.gateway_control)
    assert options["--control-token-file"] == str(stack.token_file)
    assert "--insecure-control-plane" not in command
    assert stack.control_token not in " ".join(command), "never on a command line"
    uris = [command[i + 1] for i, word in enumerate(command) if word == "--policy-uri"]
    assert uris == [f"http://127.0.0.1:{ports.incumbent}", f"http://127.0.0.1:{ports.candidate}"]


def test_prometheus_scrapes_the_control_plane_with_the_token_file(tmp_path: Path) -> None:
    stack = DemoStack(tmp_path, StackPorts.free(), prometheus=True)
    config = yaml.safe_load(stack.prometheus_config())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    gateway = jobs["gateway"]
    assert gateway["static_configs"] == [{"targets": [f"127.0.0.1:{stack.ports.gateway_control}"]}]
    assert gateway["authorization"] == {"type": "Bearer", "credentials_file": str(stack.token_file)}
    assert stack.control_token not in stack.prometheus_config()


@pytest.mark.parametrize("prometheus", [True, False])
def test_the_demo_spec_drives_the_control_plane_with_the_workers_token(
    tmp_path: Path, prometheus: bool
) -> None:
    stack = DemoStack(tmp_path, StackPorts.free(), prometheus=prometheus)
    spec = demo_spec(stack).spec
    assert spec.router.url == stack.control_url
    assert isinstance(spec.router.auth, BearerAuth)
    assert spec.router.auth.token.env == GATEWAY_TOKEN_ENV
    if prometheus:
        assert spec.monitoring.url == stack.prometheus_url
    else:
        assert spec.monitoring.url == f"{stack.control_url}/v1/stats"
        assert isinstance(spec.monitoring.auth, BearerAuth)
        assert spec.monitoring.auth.token.env == GATEWAY_TOKEN_ENV
    assert stack.control_token not in demo_spec(stack).model_dump_json()
