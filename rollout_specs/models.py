"""The rollout spec: what a release engineer writes, as pydantic models.

The models are the contract between the engineer, the CLI and the workflow, so they are strict:
unknown keys are errors, cross-field rules run at load time, and every message names the field
and the fix. A spec that loads is a spec the workflow can run to the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from rollout_specs.durations import Duration
from rollout_specs.templates import TEMPLATE_VARIABLES, unknown_variables

__all__ = [
    "API_VERSION",
    "SLUG_HINT",
    "SLUG_PATTERN",
    "URL_PATTERN",
    "Guardrails",
    "HttpMonitoring",
    "HttpRouter",
    "Metadata",
    "MissingDataPolicy",
    "MonitoringConfig",
    "PolicyVersion",
    "PrometheusMonitoring",
    "RollbackTrigger",
    "RolloutSpec",
    "RolloutSpecBody",
    "RouterConfig",
    "Stage",
    "StageMode",
    "Threshold",
    "workflow_id_for",
]

API_VERSION = "lockgate/v1"
SLUG_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
SLUG_HINT = "use lowercase letters, digits and '-' (like ranker-v42), at most 63 characters"
URL_PATTERN = r"^https?://"
MIN_CHECK_INTERVAL = timedelta(seconds=1)


def rule_error(field: str, message: str) -> PydanticCustomError:
    """A cross-field error that carries the path of the field it is about.

    Model validators can only fail the whole model; the loader appends `ctx["field"]` to the
    location so the engineer still reads `spec.stages[2].percent`, not just `spec`.
    """
    return PydanticCustomError("lockgate_rule", "{message}", {"message": message, "field": field})


def raise_rule_errors(model: BaseModel, errors: list[PydanticCustomError]) -> None:
    """Report every broken cross-field rule of `model` at once, not only the first one."""
    if errors:
        raise ValidationError.from_exception_data(
            type(model).__name__,
            [InitErrorDetails(type=error, loc=(), input=model) for error in errors],
        )


class SpecModel(BaseModel):
    """Base of every spec model: unknown keys are typos, and specs never change once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class Metadata(SpecModel):
    """Who owns the rollout and what it is called in lists and audit trails."""

    name: Annotated[str, Field(pattern=SLUG_PATTERN, max_length=63)]
    """Rollout name, shown in the UI and the audit trail."""
    owner: str | None = None
    """Team or person accountable for the rollout."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Free-form labels, kept with the rollout."""


class PolicyVersion(SpecModel):
    """One policy version the router can send decisions to."""

    version: Annotated[str, Field(min_length=1, max_length=128)]
    """Version label, as the serving stack and the metrics know it."""
    uri: str | None = None
    """Where the router finds this version (model registry URI or policy server URL)."""


class HttpRouter(SpecModel):
    """A router that implements lockgate's HTTP route contract (docs/router-contract.md)."""

    type: Literal["http"]
    url: Annotated[
        str, Field(pattern=URL_PATTERN, description="Base URL, e.g. http://127.0.0.1:8080")
    ]
    """Base URL of the router; routes live under /v1/targets/{target}/route."""
    timeout: Duration = timedelta(seconds=5)
    """Per-request timeout. Default 5s."""


class PrometheusMonitoring(SpecModel):
    """Prometheus's instant-query API (`/api/v1/query`)."""

    type: Literal["prometheus"]
    url: Annotated[str, Field(pattern=URL_PATTERN)]
    """Base URL of the Prometheus server, e.g. http://127.0.0.1:9090."""
    timeout: Duration = timedelta(seconds=10)
    """Per-query timeout. Default 10s."""


class HttpMonitoring(SpecModel):
    """Any HTTP endpoint that answers a query with JSON holding one number."""

    type: Literal["http"]
    url: Annotated[str, Field(pattern=URL_PATTERN)]
    """Endpoint; each trigger's rendered query is sent as the `query` parameter of a GET."""
    value_path: Annotated[str, Field(min_length=1)] = "value"
    """Dotted path to the number in the JSON answer, e.g. `data.value` or `results.0.v`."""
    timeout: Duration = timedelta(seconds=10)
    """Per-query timeout. Default 10s."""


RouterConfig = Annotated[HttpRouter, Field(discriminator="type")]
MonitoringConfig = Annotated[PrometheusMonitoring | HttpMonitoring, Field(discriminator="type")]


class StageMode(StrEnum):
    """How a stage uses the candidate: `shadow` logs its actions, `split` serves them."""

    SHADOW = "shadow"
    SPLIT = "split"


class MissingDataPolicy(StrEnum):
    """What to do when checks keep finding no evidence: never advance, either way."""

    HOLD = "hold"
    ROLLBACK = "rollback"


class Guardrails(SpecModel):
    """Hard limits the router enforces on the candidate whatever the stage."""

    blocked_actions: list[str] = Field(default_factory=list)
    """Actions the candidate may never take; the router serves the incumbent's instead."""


class Stage(SpecModel):
    """One lock of the canal: a traffic setting held until it has earned the next."""

    name: Annotated[str, Field(pattern=SLUG_PATTERN, max_length=63)]
    """Stage name, unique in the spec."""
    mode: StageMode = StageMode.SPLIT
    """`shadow`: the candidate sees mirrored traffic, never serves. `split`: it serves `percent`."""
    percent: Annotated[float, Field(gt=0, le=100)] | None = None
    """Share of decisions (in `scope`) served by the candidate. Required for split stages."""
    scope: dict[str, list[str]] | None = None
    """Label selector limiting the stage to matching units, e.g. {region: [eu-west-1]}."""
    min_duration: Duration
    """Bake time: the stage ends no sooner, and only with every trigger passing."""
    max_duration: Duration | None = None
    """After this long without earning its gate the stage escalates to a human."""

    @model_validator(mode="after")
    def _mode_matches_percent(self) -> Stage:
        errors: list[PydanticCustomError] = []
        if self.mode is StageMode.SPLIT and self.percent is None:
            errors.append(
                rule_error("percent", "a split stage needs `percent` (0 < percent <= 100)")
            )
        if self.mode is StageMode.SHADOW and self.percent is not None:
            errors.append(
                rule_error(
                    "percent",
                    "a shadow stage serves no traffic; remove `percent` or use `mode: split`",
                )
            )
        if self.max_duration is not None and self.max_duration < self.min_duration:
            errors.append(
                rule_error(
                    "max_duration",
                    "max_duration is shorter than min_duration; make it at least as long",
                )
            )
        raise_rule_errors(self, errors)
        return self

    @field_validator("scope")
    @classmethod
    def _scope_has_values(cls, scope: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        if scope is not None:
            if not scope:
                raise ValueError("an empty scope selects nothing; remove `scope` or add a label")
            for label, values in scope.items():
                if not values:
                    raise ValueError(f"scope label {label!r} has no values; list at least one")
        return scope


class Threshold(SpecModel):
    """The values a trigger tolerates: above `above` or below `below` fails the check."""

    above: float | None = None
    """Fail when the value is greater than this."""
    below: float | None = None
    """Fail when the value is less than this."""

    @model_validator(mode="after")
    def _bounded(self) -> Threshold:
        if self.above is None and self.below is None:
            raise ValueError("a threshold needs `above`, `below`, or both (a range)")
        if self.above is not None and self.below is not None and self.below >= self.above:
            raise ValueError(
                f"below ({self.below}) must be less than above ({self.above}); "
                "the healthy range is between them"
            )
        return self


class RollbackTrigger(SpecModel):
    """A monitoring query and the threshold whose breach rolls the candidate back."""

    name: Annotated[str, Field(pattern=SLUG_PATTERN, max_length=63)]
    """Trigger name, unique in the spec; shown with every verdict."""
    query: Annotated[str, Field(min_length=1)]
    """Query for the monitoring backend, with {{variable}} placeholders."""
    threshold: Threshold
    failure_limit: Annotated[int, Field(ge=1)] = 1
    """Consecutive failing checks that roll back. Default 1."""
    modes: Annotated[list[StageMode], Field(min_length=1)] = Field(
        default_factory=lambda: [StageMode.SHADOW, StageMode.SPLIT]
    )
    """Stage modes this trigger judges. Default both; a reward comparison, say, needs `split`."""

    def applies_to(self, stage: Stage) -> bool:
        """Whether this trigger judges `stage` (a shadow stage has no candidate rewards)."""
        return stage.mode in self.modes

    @field_validator("query")
    @classmethod
    def _known_variables(cls, query: str) -> str:
        unknown = unknown_variables(query)
        if unknown:
            allowed = ", ".join("{{" + name + "}}" for name in TEMPLATE_VARIABLES)
            raise ValueError(
                f"unknown query variable {{{{{unknown[0]}}}}}; the variables are {allowed}"
            )
        return query


class RolloutSpecBody(SpecModel):
    """What is rolled out, through which stages, and what rolls it back."""

    target: Annotated[str, Field(pattern=SLUG_PATTERN, max_length=63)]
    """The policy slot; one rollout may run per target at a time."""
    incumbent: PolicyVersion
    candidate: PolicyVersion
    router: RouterConfig
    monitoring: MonitoringConfig
    check_interval: Duration = timedelta(seconds=30)
    """Time between checks. Default 30s; at least 1s."""
    on_missing_data: MissingDataPolicy = MissingDataPolicy.HOLD
    """When checks find no evidence `missing_data_limit` times in a row: hold or roll back."""
    missing_data_limit: Annotated[int, Field(ge=1)] = 5
    """Consecutive checks without evidence before escalating (or rolling back). Default 5."""
    guardrails: Guardrails = Field(default_factory=Guardrails)
    stages: Annotated[list[Stage], Field(min_length=1)]
    rollback_triggers: list[RollbackTrigger] = Field(default_factory=list)

    @field_validator("check_interval")
    @classmethod
    def _interval_floor(cls, value: timedelta) -> timedelta:
        if value < MIN_CHECK_INTERVAL:
            raise ValueError("check_interval must be at least 1s (the server's timer resolution)")
        return value

    @model_validator(mode="after")
    def _coherent(self) -> RolloutSpecBody:
        errors = [*self._check_versions(), *self._check_stages(), *self._check_triggers()]
        raise_rule_errors(self, errors)
        return self

    def _check_versions(self) -> Iterator[PydanticCustomError]:
        if self.candidate.version == self.incumbent.version:
            yield rule_error(
                "candidate.version",
                f"the candidate is the incumbent ({self.incumbent.version!r}); "
                "roll out a different version",
            )

    def _check_stages(self) -> Iterator[PydanticCustomError]:
        names: set[str] = set()
        previous: float | None = None
        seen_split = False
        for index, stage in enumerate(self.stages):
            if stage.name in names:
                yield rule_error(
                    f"stages[{index}].name", f"stage name {stage.name!r} is used twice; rename one"
                )
            names.add(stage.name)
            if stage.mode is StageMode.SHADOW:
                if seen_split:
                    yield rule_error(
                        f"stages[{index}].mode",
                        "a shadow stage after a split stage would take traffic away from a "
                        "serving candidate; put shadow stages first",
                    )
                continue
            seen_split = True
            assert stage.percent is not None  # guaranteed by Stage's own validator
            if previous is not None and stage.percent <= previous:
                yield rule_error(
                    f"stages[{index}].percent",
                    f"{stage.percent:g} is not greater than the previous stage's {previous:g}; "
                    "percentages must strictly increase",
                )
            previous = stage.percent
        last = self.stages[-1]
        if last.mode is not StageMode.SPLIT or last.percent != 100 or last.scope:
            yield rule_error(
                f"stages[{len(self.stages) - 1}]",
                "the last stage must serve percent: 100 with no scope, so the candidate is "
                "proven at full traffic before it becomes the incumbent; add a stage like "
                "{name: full, percent: 100, min_duration: 1h}",
            )

    def _check_triggers(self) -> Iterator[PydanticCustomError]:
        if not self.rollback_triggers:
            yield rule_error(
                "rollback_triggers",
                "a rollout needs at least one rollback trigger; add one, e.g. "
                "{name: error-rate, query: '...', threshold: {above: 0.01}}",
            )
        names: set[str] = set()
        for index, trigger in enumerate(self.rollback_triggers):
            if trigger.name in names:
                yield rule_error(
                    f"rollback_triggers[{index}].name",
                    f"trigger name {trigger.name!r} is used twice; rename one",
                )
            names.add(trigger.name)
        for index, stage in enumerate(self.stages):
            if self.rollback_triggers and not self.triggers_for(stage):
                yield rule_error(
                    f"stages[{index}]",
                    f"no rollback trigger judges {stage.mode.value} stages, so stage "
                    f"{stage.name!r} could only advance on silence; add {stage.mode.value!r} to "
                    "a trigger's `modes`",
                )

    def triggers_for(self, stage: Stage) -> list[RollbackTrigger]:
        """The triggers that judge `stage`, in spec order."""
        return [trigger for trigger in self.rollback_triggers if trigger.applies_to(stage)]


class RolloutSpec(SpecModel):
    """A whole rollout spec document (`apiVersion: lockgate/v1`, `kind: Rollout`)."""

    api_version: Literal["lockgate/v1"] = Field(alias="apiVersion")
    kind: Literal["Rollout"]
    metadata: Metadata
    spec: RolloutSpecBody

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    @property
    def workflow_id(self) -> str:
        """The workflow id; Temporal's id uniqueness is the one-rollout-per-target lock."""
        return workflow_id_for(self.spec.target)


def workflow_id_for(target: str) -> str:
    """The workflow id of the rollout of `target`: the CLI finds a rollout by its target."""
    return f"rollout-{target}"
