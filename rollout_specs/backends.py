"""What each monitoring and router type declares, and where lockgate finds the declarations.

A backend type is one declaration: the spec model of its block (`spec.monitoring` or
`spec.router`), what its queries can answer (per-action tables for drift triggers, paired tables
for shadow triggers), the per-arm metrics it has built in, and where its implementation lives.
Spec validation asks the declaration, never a hard-coded type name, so a provider added by a
third-party package is validated exactly like Prometheus.

Declarations are registered as entry points (groups `lockgate.providers` and `lockgate.routers`),
the built-in ones in lockgate's own pyproject.toml. This module only reads them: it imports
nothing from `activities/`, and a declaration names its implementation as `module:attribute`
(loaded by the worker's `activities.registry`) or holds it directly (a plugin's own module).

The built-in types also resolve without reading any entry point, so validating a built-in spec
never touches the disk; that matters inside Temporal's workflow sandbox, which re-validates the
spec of every run it replays. Entry points are read once per process, on the first lookup of a
type that is not built in (the worker reads them at start-up, outside the sandbox).
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from rollout_specs.models import ArmMetric

__all__ = [
    "PROVIDER_GROUP",
    "ROUTER_GROUP",
    "BackendDeclarationError",
    "ConfigModel",
    "Implementation",
    "MonitoringBackend",
    "RouterBackend",
    "SegmentQueries",
    "UnknownBackendType",
    "forget_installed",
    "monitoring_backend",
    "monitoring_backends",
    "router_backend",
    "router_backends",
]

PROVIDER_GROUP = "lockgate.providers"
"""Entry-point group of monitoring providers: each entry's name is its `type` tag."""
ROUTER_GROUP = "lockgate.routers"
"""Entry-point group of traffic routers: each entry's name is its `type` tag."""

ConfigModel = type[BaseModel]
"""A backend block's pydantic model (named here, as `type` is a field of the declarations)."""
Implementation = str | Callable[..., Any]
"""`module:attribute` of a callable `(config, httpx.AsyncClient) -> backend`, or the callable."""


class BackendDeclarationError(Exception):
    """An installed backend entry point is broken; lockgate refuses to guess around it.

    A worker that skipped a broken plugin would judge that plugin's rollouts with nothing, so
    loading fails closed and the message names the entry point and its package.
    """


class UnknownBackendType(ValueError):
    """A spec names a backend type that no installed declaration provides.

    A ValueError (a spec error), not a KeyError: the message names the spec field and the known
    types, so the engineer can fix the spec or install the plugin.
    """


def _require_fields(config: type[BaseModel], names: tuple[str, ...], what: str) -> None:
    missing = [name for name in names if name not in config.model_fields]
    if missing:
        raise BackendDeclarationError(
            f"{what}: config model {config.__name__} has no field {', '.join(missing)}; a "
            f"backend's config needs {', '.join(names)}"
        )


def _check_tag(type_: str, config: type[BaseModel], what: str) -> None:
    """The config's `type` must be `Literal[type_]`, or a spec could name one type, get another."""
    _require_fields(config, ("type",), what)
    annotation = config.model_fields["type"].annotation
    if typing.get_args(annotation) != (type_,):
        raise BackendDeclarationError(
            f"{what}: {config.__name__}.type must be Literal[{type_!r}], not {annotation}"
        )


@dataclass(frozen=True)
class MonitoringBackend:
    """One monitoring type: its spec block, what its queries answer, its built-in metrics.

    Attributes:
        type: The spec's `monitoring.type` tag, also the entry point's name.
        config: The pydantic model of the `monitoring` block; it has `type: Literal[type]` and a
            `timeout` (the workflow derives its check deadlines from it).
        implementation: The provider factory, `(config, httpx.AsyncClient) -> MetricProvider`,
            or its `module:attribute` name.
        label: How messages name the backend to a human, e.g. `Prometheus`.
        by_label: True when `query_by` answers a value per label value (per-action tables);
            drift triggers need it.
        pairs: True when `query_pairs` answers a value per label pair (paired tables); shadow
            triggers need it.
        answers: What the provider answers when it lacks a capability, completing "the `type`
            provider ...", e.g. `answers one number per query`.
        metrics: Per-arm metrics a statistical trigger may name without defining them.
        segments: The per-segment queries segments triggers read, or None when the provider
            cannot answer them.
        spend: The query of one arm's spend (the sum of an action parameter the router counted)
            spend triggers read, or None when the provider cannot answer it.
    """

    type: str
    config: ConfigModel
    implementation: Implementation
    label: str
    by_label: bool = False
    pairs: bool = False
    answers: str = "answers one number per query"
    metrics: Mapping[str, ArmMetric] = field(default_factory=dict)
    segments: SegmentQueries | None = None
    spend: str | None = None

    def __post_init__(self) -> None:
        what = f"monitoring type {self.type!r}"
        _check_tag(self.type, self.config, what)
        _require_fields(self.config, ("type", "timeout"), what)


@dataclass(frozen=True)
class SegmentQueries:
    """Query templates answering one value per segment for one arm (`query_by` on `segment`).

    Each is rendered with the check's variables plus `version` (the arm) and `segment_label`
    (the unit attribute the trigger splits by). `decisions` answers per (segment, action).
    """

    count: str
    total: str
    total_squares: str
    decisions: str


@dataclass(frozen=True)
class RouterBackend:
    """One router type: its spec block and where its implementation lives.

    Attributes:
        type: The spec's `router.type` tag, also the entry point's name.
        config: The pydantic model of the `router` block; it has `type: Literal[type]`, a
            `timeout` (route changes are bounded by it) and a `url` (named in status lines).
        implementation: The router factory, `(config, httpx.AsyncClient) -> TrafficRouter`, or
            its `module:attribute` name.
        label: How messages name the backend to a human.
        reviews: True when the router holds the candidate's proposals for review
            (guardrails.review) and takes verdicts on them.
    """

    type: str
    config: ConfigModel
    implementation: Implementation
    label: str
    reviews: bool = False

    def __post_init__(self) -> None:
        what = f"router type {self.type!r}"
        _check_tag(self.type, self.config, what)
        _require_fields(self.config, ("type", "timeout", "url"), what)


Declaration = TypeVar("Declaration", MonitoringBackend, RouterBackend)


@dataclass(frozen=True)
class _Group(Generic[Declaration]):
    """One entry-point group: its built-in declarations and the field that selects a type."""

    name: str
    kind: type[Declaration]
    field: str

    def builtin(self) -> Mapping[str, Declaration]:
        from rollout_specs import builtin_backends  # lazily: it imports models, which imports us

        found: Mapping[str, Any] = (
            builtin_backends.PROVIDERS
            if self.kind is MonitoringBackend
            else builtin_backends.ROUTERS
        )
        return found

    def lookup(self, type_: str) -> Declaration:
        builtin = self.builtin()
        if type_ in builtin:
            return builtin[type_]
        installed = self.installed()
        if type_ in installed:
            return installed[type_]
        raise UnknownBackendType(
            f"{self.field}: unknown type {type_!r}; use one of "
            f"{', '.join(map(repr, installed))} (or install the package that provides it)"
        )

    def installed(self) -> Mapping[str, Declaration]:
        return _installed(self)


def _load(group: _Group[Declaration], entry: EntryPoint) -> Declaration:
    where = f"entry point {entry.name!r} of group {group.name!r} ({entry.value})"
    package = entry.dist.name if entry.dist is not None else "an unknown package"
    try:
        declaration: object = entry.load()
    except Exception as exc:
        raise BackendDeclarationError(
            f"{where} from {package} failed to load ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(declaration, group.kind):
        raise BackendDeclarationError(
            f"{where} from {package} is a {type(declaration).__name__}, not a {group.kind.__name__}"
        )
    if declaration.type != entry.name:
        raise BackendDeclarationError(
            f"{where} from {package} declares type {declaration.type!r}; name the entry point "
            "after the type it declares"
        )
    return declaration


@functools.cache
def _installed(group: _Group[Declaration]) -> Mapping[str, Declaration]:
    """Built-ins first, then every installed entry point; a clash is an error, never a choice."""
    found: dict[str, Declaration] = dict(group.builtin())
    for entry in sorted(entry_points(group=group.name), key=lambda e: e.name):
        declaration = _load(group, entry)
        current = found.get(entry.name)
        if current is not None and current is not declaration:
            raise BackendDeclarationError(
                f"two packages declare {group.field} {entry.name!r} (the second is "
                f"{entry.value}); uninstall one of them"
            )
        found[entry.name] = declaration
    return found


_PROVIDERS = _Group(PROVIDER_GROUP, MonitoringBackend, "spec.monitoring.type")
_ROUTERS = _Group(ROUTER_GROUP, RouterBackend, "spec.router.type")


def monitoring_backends() -> Mapping[str, MonitoringBackend]:
    """Every installed monitoring type, built-ins first (reads the entry points once)."""
    return _PROVIDERS.installed()


def router_backends() -> Mapping[str, RouterBackend]:
    """Every installed router type, built-ins first (reads the entry points once)."""
    return _ROUTERS.installed()


def monitoring_backend(type_: str) -> MonitoringBackend:
    """The declaration of monitoring type `type_`, or UnknownBackendType naming the known ones."""
    return _PROVIDERS.lookup(type_)


def router_backend(type_: str) -> RouterBackend:
    """The declaration of router type `type_`, or UnknownBackendType naming the known ones."""
    return _ROUTERS.lookup(type_)


def forget_installed() -> None:
    """Read the entry points again on the next lookup (for tests that install a plugin)."""
    _installed.cache_clear()
