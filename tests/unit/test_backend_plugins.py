"""Backend types are declarations found by entry point: built-ins and plugins validate alike."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Literal

import httpx
import pytest

import rollout_specs.backends as backends
from activities.errors import UnknownBackendError
from activities.http_boundary import Ladder, request
from activities.providers.base import Sample
from activities.registry import build_provider, installed_providers
from rollout_specs import (
    BUILTIN_METRICS,
    ArmMetric,
    Duration,
    MonitoringBackend,
    PrometheusMonitoring,
    RolloutSpec,
    RolloutSpecBody,
    SpecError,
    SpecModel,
    parse_spec,
)
from rollout_specs.backends import (
    BackendDeclarationError,
    UnknownBackendType,
    forget_installed,
    monitoring_backend,
    monitoring_backends,
    router_backends,
)
from rollout_specs.builtin_backends import HTTP_MONITORING, HTTP_ROUTER, PROMETHEUS
from tests.conftest import spec_document


class FakeMonitoring(SpecModel):
    """A plugin's `monitoring` block."""

    type: Literal["fake"]
    url: str
    region: str = "eu"
    timeout: Duration = timedelta(seconds=3)


class FakeProvider:
    def __init__(self, config: FakeMonitoring, client: httpx.AsyncClient) -> None:
        self.config = config

    async def query(self, query: str) -> Sample:
        return Sample(value=0.0)

    async def query_by(self, query: str, label: str) -> dict[str, float]:
        raise NotImplementedError

    async def query_pairs(
        self, query: str, first: str, second: str
    ) -> dict[tuple[str, str], float]:
        raise NotImplementedError


FAKE = MonitoringBackend(
    type="fake",
    config=FakeMonitoring,
    implementation=FakeProvider,
    label="Fake",
    pairs=True,
    answers="answers one number per query, or a paired table",
    metrics={"latency": ArmMetric(count="n {{version}}", total="sum {{version}}")},
)
NOT_A_DECLARATION = object()
IMPOSTOR = MonitoringBackend(
    type="prometheus", config=PrometheusMonitoring, implementation=FakeProvider, label="Fake"
)


def _install(monkeypatch: pytest.MonkeyPatch, *extra: tuple[str, str]) -> None:
    """Make `entry_points` also list `extra` (name, value) in lockgate.providers."""
    real = entry_points

    def listed(*, group: str) -> list[EntryPoint]:
        found = list(real(group=group))
        if group == backends.PROVIDER_GROUP:
            found += [EntryPoint(name, value, group) for name, value in extra]
        return found

    monkeypatch.setattr(backends, "entry_points", listed)
    forget_installed()


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    forget_installed()
    yield
    forget_installed()


def _plugin_document(**monitoring: Any) -> dict[str, Any]:
    document = spec_document("http://127.0.0.1:1", "http://127.0.0.1:2")
    document["spec"]["monitoring"] = {"type": "fake", "url": "http://127.0.0.1:3", **monitoring}
    return document


def test_the_builtin_types_are_registered_as_entry_points_of_lockgate() -> None:
    providers = {e.name: e.load() for e in entry_points(group=backends.PROVIDER_GROUP)}
    routers = {e.name: e.load() for e in entry_points(group=backends.ROUTER_GROUP)}
    assert providers == {"prometheus": PROMETHEUS, "http": HTTP_MONITORING}
    assert routers == {"http": HTTP_ROUTER}
    assert dict(monitoring_backends()) == providers
    assert dict(router_backends()) == routers
    metrics = {"prometheus": PROMETHEUS.metrics, "http": HTTP_MONITORING.metrics}
    assert metrics == BUILTIN_METRICS


def test_capabilities_come_from_the_declarations() -> None:
    assert (PROMETHEUS.by_label, PROMETHEUS.pairs) == (True, True)
    assert (HTTP_MONITORING.by_label, HTTP_MONITORING.pairs) == (False, False)


def test_an_unknown_type_is_a_spec_error_naming_the_field_and_the_known_types() -> None:
    with pytest.raises(UnknownBackendType) as raised:
        monitoring_backend("datadog")
    assert not isinstance(raised.value, KeyError)
    assert str(raised.value).startswith(
        "spec.monitoring.type: unknown type 'datadog'; use one of 'prometheus', 'http'"
    )
    body = parse_spec(spec_document("http://127.0.0.1:1", "http://127.0.0.1:2"), "s").spec
    broken = RolloutSpecBody.model_construct(
        **{**dict(body), "monitoring": body.monitoring.model_copy(update={"type": "datadog"})}
    )
    with pytest.raises(UnknownBackendType, match=r"spec\.monitoring\.type: unknown type 'datadog'"):
        broken.known_metrics()


def test_a_plugin_type_validates_with_the_plugin_model(monkeypatch: pytest.MonkeyPatch) -> None:
    _install(monkeypatch, ("fake", f"{__name__}:FAKE"))
    spec = parse_spec(_plugin_document(region="us"), "plugin.yaml")
    monitoring: Any = spec.spec.monitoring
    assert isinstance(monitoring, FakeMonitoring)
    assert (monitoring.region, monitoring.timeout) == ("us", timedelta(seconds=3))
    assert spec.spec.known_metrics() == ["latency"]

    again = RolloutSpec.model_validate_json(spec.model_dump_json())
    assert again == spec, "a plugin block survives the round trip through workflow history"
    assert spec.model_dump(mode="json")["spec"]["monitoring"]["region"] == "us"


def test_a_plugin_block_is_as_strict_as_a_builtin_one(monkeypatch: pytest.MonkeyPatch) -> None:
    _install(monkeypatch, ("fake", f"{__name__}:FAKE"))
    with pytest.raises(SpecError) as raised:
        parse_spec(_plugin_document(regoin="us"), "plugin.yaml")
    [problem] = raised.value.problems
    assert problem.startswith("spec.monitoring.regoin: unknown key"), problem

    document = _plugin_document()
    document["spec"]["monitoring"]["type"] = "datadog"
    with pytest.raises(SpecError) as raised:
        parse_spec(document, "plugin.yaml")
    assert raised.value.problems == [
        "spec.monitoring: unknown type 'datadog'; use one of 'prometheus', 'http', 'fake'"
    ]


def test_a_trigger_the_plugin_cannot_answer_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _install(monkeypatch, ("fake", f"{__name__}:FAKE"))
    document = _plugin_document()
    document["spec"]["rollback_triggers"].append({"name": "drift", "drift": {"max_js": 0.1}})
    with pytest.raises(SpecError) as raised:
        parse_spec(document, "plugin.yaml")
    assert raised.value.problems == [
        "spec.rollback_triggers[1].drift: a drift trigger reads decisions by action, which needs "
        "Prometheus monitoring; the fake provider answers one number per query, or a paired table"
    ]


async def test_the_registry_builds_the_plugin_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    _install(monkeypatch, ("fake", f"{__name__}:FAKE"))
    spec = parse_spec(_plugin_document(), "plugin.yaml")
    providers = installed_providers()
    assert providers["fake"] is FakeProvider
    async with httpx.AsyncClient() as client:
        provider = build_provider(spec.spec.monitoring, client, providers)
        assert isinstance(provider, FakeProvider)
        with pytest.raises(UnknownBackendError, match="no monitoring provider of type 'fake'"):
            build_provider(spec.spec.monitoring, client)  # the registry read at import has none


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        pytest.param(("fake", "no_such_module_xyz:FAKE"), "failed to load", id="import-error"),
        pytest.param(
            ("fake", f"{__name__}:NOT_A_DECLARATION"),
            "not a MonitoringBackend",
            id="not-a-declaration",
        ),
        pytest.param(("other", f"{__name__}:FAKE"), "declares type 'fake'", id="misnamed"),
        pytest.param(
            ("prometheus", f"{__name__}:IMPOSTOR"), "two packages declare", id="claims-builtin"
        ),
    ],
)
def test_a_broken_plugin_fails_closed(
    monkeypatch: pytest.MonkeyPatch, entry: tuple[str, str], message: str
) -> None:
    _install(monkeypatch, entry)
    with pytest.raises(BackendDeclarationError, match=message):
        monitoring_backends()
    with pytest.raises(BackendDeclarationError, match=message):
        installed_providers()
    # A built-in spec still loads: its type never needs the entry points.
    parse_spec(spec_document("http://127.0.0.1:1", "http://127.0.0.1:2"), "builtin.yaml")
    with pytest.raises(SpecError, match=message):
        parse_spec(_plugin_document(), "plugin.yaml")


def test_a_declaration_must_match_its_config_model() -> None:
    class Untagged(SpecModel):
        type: str
        timeout: Duration = timedelta(seconds=1)

    class NoTimeout(SpecModel):
        type: Literal["x"]

    with pytest.raises(BackendDeclarationError, match=r"must be Literal\['x'\]"):
        MonitoringBackend(type="x", config=Untagged, implementation="m:f", label="X")
    with pytest.raises(BackendDeclarationError, match="has no field timeout"):
        MonitoringBackend(type="x", config=NoTimeout, implementation="m:f", label="X")


class _Down(Exception):
    pass


class _No(Exception):
    pass


def _ladder() -> Ladder:
    return Ladder(
        who="svc at http://svc",
        unavailable=_Down,
        refused=_No,
        slow_fix="raise the timeout",
        down_fix="check it is up",
        server_error=lambda response: f"5xx {response.status_code}",
        refusal=lambda response: f"refused {response.status_code}",
    )


@pytest.mark.parametrize(
    ("status", "passes", "raised", "message"),
    [
        pytest.param(200, (), None, "", id="ok"),
        pytest.param(404, (404,), None, "", id="passed-to-the-caller"),
        pytest.param(503, (), _Down, "5xx 503", id="server-error"),
        pytest.param(400, (), _No, "refused 400", id="refusal"),
        pytest.param(302, (), _No, "refused 302", id="redirect-is-a-refusal"),
    ],
)
async def test_every_backend_climbs_one_ladder(
    status: int, passes: tuple[int, ...], raised: type[Exception] | None, message: str
) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(status, text="body"))
    async with httpx.AsyncClient(transport=transport) as client:
        call = request(client, "GET", "http://svc/x", ladder=_ladder(), deadline=2, passes=passes)
        if raised is None:
            assert (await call).status_code == status
        else:
            with pytest.raises(raised, match=f"^{message}$"):
                await call


async def test_no_answer_is_unavailable_with_the_backends_fix() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        with pytest.raises(_Down, match=r"^svc at http://svc could not be reached .*; check it"):
            await request(client, "GET", "http://svc/x", ladder=_ladder(), deadline=2)
