"""The demo stack: every service a rollout needs, on one machine, as real processes.

The worker (with its embedded Temporal server), two policy servers, the reference gateway,
Prometheus when its binary is on PATH, and the simulated world driving traffic. `lockgate demo`
runs it for a person; the end-to-end tests run it on free ports. Stopping it stops every process
it started at once (SIGTERM, last started first, then SIGKILL for any still there after
`STOP_GRACE`), so a stop takes a few seconds whatever the number of services. Each service is a
`ManagedProcess`, so none outlives the process that started the stack, however that one ends.

The gateway's control plane (routes, stats, metrics) is on its own port behind a token the stack
draws at random for each run: it is written to a file only the user can read (for the gateway
and for Prometheus' scrape) and given to the worker as LOCKGATE_GATEWAY_TOKEN, which the demo
specs' `auth` blocks name. The simulated world only ever reaches the data plane.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from rollout_specs import RolloutSpec, load_spec, parse_spec
from runtime.processes import STOP_GRACE, ManagedProcess, free_port, port_open, stop_all
from simulator.offline_log import write_log
from simulator.scenarios import scenario as scenario_named

__all__ = ["GATEWAY_TOKEN_ENV", "PORTS_ENV", "DemoStack", "StackPorts", "demo_spec", "http_ok"]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "rollout_specs" / "examples"
ARTIFACTS = ROOT / "simulator" / "artifacts"

PORTS_ENV = "LOCKGATE_DEMO_PORTS"
"""Moves the demo's ports: `gateway=18080,temporal=17233` (see `StackPorts.parse`)."""

GATEWAY_TOKEN_ENV = "LOCKGATE_GATEWAY_TOKEN"
"""The worker's variable holding the gateway's control token; the demo specs' `auth` names it."""

PROMETHEUS_CONFIG = """\
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: gateway
    # /metrics is on the gateway's control plane, behind its token
    authorization: {{type: Bearer, credentials_file: "{token_file}"}}
    static_configs: [{{targets: ["127.0.0.1:{gateway_control}"]}}]
  - job_name: lockgate-worker
    static_configs: [{{targets: ["127.0.0.1:{worker_metrics}"]}}]
"""


@dataclass(frozen=True)
class StackPorts:
    """Every port the stack listens on, all on 127.0.0.1."""

    temporal: int = 7233
    ui: int = 8233
    gateway: int = 8080
    incumbent: int = 8101
    candidate: int = 8102
    prometheus: int = 9090
    worker_metrics: int = 9464
    gateway_control: int = 8081
    """The gateway's control plane: routes, stats and metrics, behind the token."""

    @classmethod
    def parse(cls, text: str) -> StackPorts:
        """The default ports with some moved: `gateway=18080,temporal=17233` (LOCKGATE_DEMO_PORTS).

        For a machine where a default port is taken (8080 often is), and for tests that run a
        real `lockgate demo` beside a developer's. Raises ValueError naming what is wrong.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        moved: dict[str, int] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, _, value = item.partition("=")
            name = name.strip().replace("-", "_")
            if name not in names:
                raise ValueError(f"{PORTS_ENV}: unknown service {name!r}; use {', '.join(names)}")
            try:
                port = int(value)
            except ValueError:
                port = 0
            if not 0 < port < 65536:
                raise ValueError(f"{PORTS_ENV}: {item!r} needs a port number (1-65535)")
            moved[name] = port
        return cls(**moved)

    @classmethod
    def from_environment(cls) -> StackPorts:
        """The ports LOCKGATE_DEMO_PORTS asks for, or the defaults."""
        return cls.parse(os.environ.get(PORTS_ENV, ""))

    @classmethod
    def free(cls) -> StackPorts:
        """Ports nothing listens on now (tests run stacks side by side with a developer's)."""
        return cls(*(free_port() for _ in dataclasses.fields(cls)))

    def busy(self) -> list[int]:
        """The ports already taken, so the demo can say which instead of failing obscurely."""
        return [port for port in vars(self).values() if port_open(port)]


OFFLINE_LOG_ROWS = 50_000
"""Logged decisions for the demo's offline gate: DR's interval is about +-0.006 at this size."""
OFFLINE_LOG_SEED = 11


@dataclass
class DemoStack:
    """The processes of one demo, started in dependency order and stopped in reverse."""

    data_dir: Path
    ports: StackPorts = field(default_factory=StackPorts)
    prometheus: bool | None = None
    """Run Prometheus: None means when the binary is on PATH."""
    processes: list[ManagedProcess] = field(default_factory=list)
    control_token: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    """The gateway's control token, drawn for this stack; never shown."""
    _incumbent_artifact: str = field(default="", init=False, repr=False)
    """The artifact the incumbent's policy server serves now."""

    def __post_init__(self) -> None:
        # The processes run from the project's root; the paths they are given must not depend
        # on where the person started the demo.
        self.data_dir = self.data_dir.resolve()
        if self.prometheus is None:
            self.prometheus = shutil.which("prometheus") is not None

    @property
    def gateway_url(self) -> str:
        """Where the gateway's data plane (decide, feedback) listens: the simulated world's."""
        return f"http://127.0.0.1:{self.ports.gateway}"

    @property
    def control_url(self) -> str:
        """Where the gateway's control plane listens: the router and stats URL of the specs."""
        return f"http://127.0.0.1:{self.ports.gateway_control}"

    @property
    def control_headers(self) -> dict[str, str]:
        """The header the control plane needs, for the demo's own route and the tests."""
        return {"Authorization": f"Bearer {self.control_token}"}

    @property
    def token_file(self) -> Path:
        """The control token, readable by the user alone (the gateway's and Prometheus')."""
        return self.data_dir / "gateway-token"

    @property
    def prometheus_url(self) -> str:
        """Where Prometheus answers queries."""
        return f"http://127.0.0.1:{self.ports.prometheus}"

    @property
    def offline_log(self) -> Path:
        """The incumbent's logged decisions (Parquet), written when the stack starts."""
        return self.data_dir / "offers-log.parquet"

    @property
    def temporal_address(self) -> str:
        """The embedded Temporal server's gRPC address."""
        return f"127.0.0.1:{self.ports.temporal}"

    @property
    def ui_url(self) -> str:
        """The Temporal UI."""
        return f"http://127.0.0.1:{self.ports.ui}"

    async def start(self, scenario: str = "healthy") -> None:
        """Start everything but the traffic; `start_traffic` follows once a spec is chosen."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.write_token()
        # The incumbent's logged decisions (it explores a little), for the offline gate.
        await asyncio.to_thread(write_log, self.offline_log, OFFLINE_LOG_ROWS, OFFLINE_LOG_SEED)
        await self._start_worker()
        await self._start_incumbent(scenario)
        await self._start_candidate(scenario)
        await self._start_gateway()
        if self.prometheus:
            await self._start_prometheus()

    async def start_traffic(
        self,
        target: str,
        scenario: str,
        *,
        rate: float = 100.0,
        seed: int = 7,
        regression_fraction: float | None = None,
    ) -> ManagedProcess:
        """Start the simulated world sending decisions and rewards for `target`."""
        command = [
            sys.executable, "-m", "simulator", "run",
            "--gateway", self.gateway_url, "--target", target, "--scenario", scenario,
            "--rate", f"{rate:g}", "--seed", str(seed),
        ]  # fmt: skip
        if regression_fraction is not None:
            command += ["--regression-fraction", f"{regression_fraction:.6f}"]
        return self._spawn(f"simulator-{target}", command).start()

    async def restart_candidate(self, scenario: str) -> None:
        """Serve the policies of another scenario (e2e tests switch between them).

        The candidate always restarts; the incumbent only when the scenario has another one
        (the guardrail scenarios share an incumbent that knows their extra actions).
        """
        restart = {"candidate"}
        if scenario_named(scenario).incumbent_artifact != self._incumbent_artifact:
            restart.add("incumbent")
        for process in [p for p in self.processes if p.name in restart]:
            process.stop()
            self.processes.remove(process)
        if "incumbent" in restart:
            await self._start_incumbent(scenario)
        await self._start_candidate(scenario)

    async def _start_incumbent(self, scenario: str) -> None:
        self._incumbent_artifact = scenario_named(scenario).incumbent_artifact
        await self._start_policy("incumbent", self._incumbent_artifact, self.ports.incumbent)

    async def _start_candidate(self, scenario: str) -> None:
        artifact = scenario_named(scenario).candidate_artifact
        await self._start_policy("candidate", artifact, self.ports.candidate)

    def stop(self, timeout: float = STOP_GRACE) -> None:
        """Stop every process, last started first, within `timeout` seconds and a little."""
        processes, self.processes = self.processes[::-1], []
        stop_all(processes, timeout)

    # ----------------------------------------------------------------------------- services

    def write_token(self) -> None:
        """Write the control token where the gateway and Prometheus read it, for the user only."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(self.control_token + "\n")
        self.token_file.chmod(0o600)  # an older file keeps its mode through O_CREAT

    def _spawn(
        self, name: str, command: list[str], env: dict[str, str] | None = None
    ) -> ManagedProcess:
        process = ManagedProcess(
            name, command, self.data_dir / "logs" / f"{name}.log", env=env, cwd=ROOT
        )
        self.processes.append(process)
        return process

    async def _start_worker(self) -> None:
        env = {
            "LOCKGATE_DATA_DIR": str(self.data_dir),
            "LOCKGATE_TEMPORAL_PORT": str(self.ports.temporal),
            "LOCKGATE_UI_PORT": str(self.ports.ui),
            "LOCKGATE_METRICS_ADDRESS": f"127.0.0.1:{self.ports.worker_metrics}",
            GATEWAY_TOKEN_ENV: self.control_token,
            "PYTHONUNBUFFERED": "1",
        }
        worker = self._spawn("worker", [sys.executable, "worker.py"], env)
        # The demo's worker always embeds its own server: no operator setting or `temporal` CLI
        # profile (a default profile may name a remote address) may send it elsewhere.
        for name in [name for name in worker.env if name.startswith("TEMPORAL_")]:
            del worker.env[name]
        worker.env["TEMPORAL_CONFIG_FILE"] = os.devnull
        worker.start()

        async def polling() -> bool:
            return "polling task queue" in worker.output()

        await worker.wait_ready(polling, within=90)

    async def _start_policy(self, name: str, artifact: str, port: int) -> None:
        command = [
            sys.executable, "-m", "gateway.policy_server",
            "--policy", str(ARTIFACTS / artifact), "--port", str(port),
        ]  # fmt: skip
        process = self._spawn(name, command).start()
        await process.wait_ready(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"))

    def gateway_command(self) -> list[str]:
        """The gateway's command line: both planes, the token file, the two policy servers."""
        return [
            sys.executable, "-m", "gateway",
            "--port", str(self.ports.gateway), "--control-port", str(self.ports.gateway_control),
            "--control-token-file", str(self.token_file),
            "--policy-uri", f"http://127.0.0.1:{self.ports.incumbent}",
            "--policy-uri", f"http://127.0.0.1:{self.ports.candidate}",
            "--state-file", str(self.data_dir / "routes.json"),
        ]  # fmt: skip

    def prometheus_config(self) -> str:
        """Prometheus' scrape configuration: the gateway's control plane, with the token file.

        `/metrics` is on the control plane, behind the token, so the `gateway` job scrapes the
        control port with `authorization.credentials_file`; the worker's SDK metrics are open.
        """
        return PROMETHEUS_CONFIG.format(
            gateway_control=self.ports.gateway_control,
            token_file=self.token_file,
            worker_metrics=self.ports.worker_metrics,
        )

    async def _start_gateway(self) -> None:
        process = self._spawn("gateway", self.gateway_command()).start()

        async def both_planes_up() -> bool:
            urls = (f"{self.gateway_url}/healthz", f"{self.control_url}/healthz")
            return all([await http_ok(url) for url in urls])

        await process.wait_ready(both_planes_up)

    async def _start_prometheus(self) -> None:
        config = self.data_dir / "prometheus.yml"
        config.write_text(self.prometheus_config(), encoding="utf-8")
        command = [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={self.data_dir / 'prometheus'}",
            f"--web.listen-address=127.0.0.1:{self.ports.prometheus}",
            "--log.level=warn",
        ]
        process = self._spawn("prometheus", command).start()
        await process.wait_ready(lambda: http_ok(f"{self.prometheus_url}/-/ready"))


async def http_ok(url: str) -> bool:
    """Whether `url` answers 200 now: the readiness probe of a service this stack started."""
    async with httpx.AsyncClient(timeout=2.0) as client:
        try:
            return (await client.get(url)).status_code == 200
        except httpx.HTTPError:
            return False


def demo_spec(
    stack: DemoStack, *, target: str | None = None, fast: bool = False, guardrails: bool = False
) -> RolloutSpec:
    """The demo spec for this stack's ports: Prometheus-judged, or the gateway's JSON stats.

    The router (and, without Prometheus, the monitoring) is the gateway's control plane, with
    the bearer `auth` block naming GATEWAY_TOKEN_ENV, which the stack sets for the worker.
    `fast` shortens the bakes for end-to-end tests; the spec's rules stay the same.
    `guardrails` picks the guardrails demo (caps, review, segments, spend), which needs
    Prometheus.

    Raises:
        RuntimeError: The guardrails demo was asked for on a stack without Prometheus.
    """
    if guardrails and not stack.prometheus:
        raise RuntimeError(
            "the guardrail scenarios judge regions by Prometheus, which is not on PATH; "
            "install it (Debian/Ubuntu: apt-get install prometheus)"
        )
    name = (
        "demo-guardrails.yaml"
        if guardrails
        else "demo.yaml"
        if stack.prometheus
        else "demo-http-monitoring.yaml"
    )
    spec = load_spec(EXAMPLES / name)
    document = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    body = document["spec"]
    gateway_auth = {"type": "bearer", "token": {"env": GATEWAY_TOKEN_ENV}}
    body["router"]["url"] = stack.control_url
    body["router"]["auth"] = gateway_auth
    body["incumbent"]["uri"] = f"http://127.0.0.1:{stack.ports.incumbent}"
    body["candidate"]["uri"] = f"http://127.0.0.1:{stack.ports.candidate}"
    if stack.prometheus:
        body["monitoring"]["url"] = stack.prometheus_url
    else:
        body["monitoring"]["url"] = f"{stack.control_url}/v1/stats"
        body["monitoring"]["auth"] = gateway_auth
    for stage in body["stages"]:
        if "offline_eval" in stage:
            stage["offline_eval"]["log"] = str(stack.offline_log.resolve())
    if target is not None:
        body["target"] = target
        document["metadata"]["name"] = f"{target}-v{body['candidate']['version']}"
    if fast:
        body["check_interval"] = "2s"
        for stage in body["stages"]:
            if "offline_eval" not in stage:
                stage["min_duration"] = "6s"
    return parse_spec(yaml.safe_load(yaml.safe_dump(document)), f"{name} (for this stack)")
