"""The rollout spec: what a release engineer writes, as pydantic models.

The models are the contract between the engineer, the CLI and the workflow, so they are strict:
unknown keys are errors, cross-field rules run at load time, and every message names the field
and the fix. A spec that loads is a spec the workflow can run to the end.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    Tag,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapSerializer,
    WrapValidator,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError, PydanticKnownError

from rollout_specs.auth import Auth, SecretRef, refuse_credentials_in_url
from rollout_specs.backends import (
    BackendDeclarationError,
    MonitoringBackend,
    UnknownBackendType,
    monitoring_backend,
    monitoring_backends,
    router_backend,
    router_backends,
)
from rollout_specs.durations import Duration, format_duration
from rollout_specs.templates import (
    TEMPLATE_VARIABLES,
    placement_problem,
    unknown_variables,
    variables_in,
)

__all__ = [
    "API_VERSION",
    "HOLDBACK_STAGE",
    "MAX_QUERY_LENGTH",
    "NAME_HINT",
    "NAME_PATTERN",
    "SLUG_HINT",
    "SLUG_PATTERN",
    "TEXT_HINT",
    "TEXT_PATTERN",
    "TRIGGER_KINDS",
    "URI_HINT",
    "URI_PATTERN",
    "URL_PATTERN",
    "VERSION_HINT",
    "VERSION_PATTERN",
    "Approval",
    "BudgetTrigger",
    "Cap",
    "CompareTrigger",
    "DriftTrigger",
    "Fairness",
    "Guardrails",
    "Holdback",
    "HttpMonitoring",
    "HttpRouter",
    "Metadata",
    "MissingDataPolicy",
    "MonitoringConfig",
    "NotifyConfig",
    "NotifyEvent",
    "OfflineEstimator",
    "OfflineEval",
    "PolicyVersion",
    "PrometheusMonitoring",
    "Review",
    "ReviewRule",
    "ReviewTrigger",
    "RollbackTrigger",
    "RolloutSpec",
    "RolloutSpecBody",
    "RouterConfig",
    "SegmentsRule",
    "SegmentsTrigger",
    "ShadowRule",
    "ShadowTrigger",
    "ShareCap",
    "SpendRule",
    "SpendTrigger",
    "Stage",
    "StageMode",
    "Threshold",
    "ThresholdTrigger",
    "TriggerBase",
    "TriggerKind",
    "ValueCap",
    "Webhook",
    "trigger_kind_of",
    "workflow_id_for",
]

API_VERSION = "lockgate/v1"
SLUG_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
SLUG_HINT = "use lowercase letters, digits and '-' (like ranker-v42), at most 63 characters"
URL_PATTERN = r"^https?://[^\x00-\x20\x7f/?#][^\x00-\x20\x7f]{0,2039}$"
"""http(s), a host, no spaces or control characters anywhere, at most 2048 characters."""
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
"""Versions and scope label values: they land in PromQL label values, the http provider's
`key=value` words, search attributes and router bodies, so they hold nothing that needs quoting."""
VERSION_HINT = (
    "use letters, digits, '.', '_' and '-', starting with a letter or digit (like 42, v1.2.3 or "
    "eu-west-1), at most 128 characters"
)
"""The fix shown when a version or scope value breaks VERSION_PATTERN."""
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
"""Metric names and scope label names: Prometheus's label-name grammar."""
NAME_HINT = (
    "use letters, digits and '_', starting with a letter or '_' (like reward or region), at "
    "most 63 characters"
)
"""The fix shown when a metric or label name breaks NAME_PATTERN."""
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"
"""One line of free text: no line breaks, tabs or other control characters."""
TEXT_HINT = "holds a line break, tab or other control character; write it on one line"
"""The fix shown when free text breaks TEXT_PATTERN."""
URI_PATTERN = r"^[^\x00-\x20\x7f]*$"
"""A policy's URI (registry or server): no spaces or control characters, which no URI holds."""
URI_HINT = (
    "holds a space or control character; write a URI like http://127.0.0.1:8102 or "
    "models:/ranker/42"
)
"""The fix shown when a URI breaks URI_PATTERN."""
MAX_QUERY_LENGTH = 16_384
"""Longest query template (16 KiB): PromQL that long is a mistake, and it bounds the work."""
MAX_TEXT_LENGTH = 256
"""Longest free-text value (an owner, a label value, an action name)."""
MIN_CHECK_INTERVAL = timedelta(seconds=1)
BackendUrl = Annotated[str, Field(pattern=URL_PATTERN), AfterValidator(refuse_credentials_in_url)]
"""An http(s) URL without user:password@ (credentials go in an `auth` block)."""


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


def _any_of_keys(*names: str) -> dict[str, Any]:
    """JSON Schema: at least one of the keys `names` is present (as a model validator demands)."""
    return {"anyOf": [{"required": [name]} for name in names]}


def _one_of_keys(*groups: tuple[str, ...]) -> dict[str, Any]:
    """JSON Schema: exactly one group of keys is present and no key of another group."""
    keys = [name for group in groups for name in group]
    return {
        "oneOf": [
            {
                "required": list(group),
                "not": {"anyOf": [{"required": [k]} for k in keys if k not in group]},
            }
            for group in groups
        ]
    }


Version = Annotated[str, Field(min_length=1, max_length=128, pattern=VERSION_PATTERN)]
"""A policy version or a scope label value, e.g. `42`, `v1.2.3` or `eu-west-1`."""
Name = Annotated[str, Field(min_length=1, max_length=63, pattern=NAME_PATTERN)]
"""A metric name or a scope label name, e.g. `reward` or `region`."""
Text = Annotated[str, Field(max_length=MAX_TEXT_LENGTH, pattern=TEXT_PATTERN)]
"""One line of free text, at most 256 characters."""
Word = Annotated[str, Field(min_length=1, max_length=MAX_TEXT_LENGTH, pattern=TEXT_PATTERN)]
"""A non-empty name written by a human (an approver, an action, a log column)."""
Query = Annotated[str, Field(min_length=1, max_length=MAX_QUERY_LENGTH)]
"""A query template with {{variable}} placeholders, at most 16 KiB (line breaks allowed)."""
Scope = Annotated[
    dict[Name, Annotated[list[Version], Field(max_length=1000)]], Field(max_length=16)
]
"""A stage's label selector: at most 16 labels, each with at most 1000 values."""


class SpecModel(BaseModel):
    """Base of every spec model: unknown keys are typos, and specs never change once loaded.

    Numbers are finite everywhere (`allow_inf_nan=False`): `.nan` as a threshold judges every
    value healthy and `.inf` as a margin makes every check an error, so both are refused at load.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, use_attribute_docstrings=True, allow_inf_nan=False
    )


class Metadata(SpecModel):
    """Who owns the rollout and what it is called in lists and audit trails."""

    name: Annotated[str, Field(pattern=SLUG_PATTERN, max_length=63)]
    """Rollout name, shown in the UI and the audit trail."""
    owner: Text | None = None
    """Team or person accountable for the rollout."""
    labels: Annotated[
        dict[Annotated[str, Field(min_length=1, max_length=63, pattern=TEXT_PATTERN)], Text],
        Field(max_length=64),
    ] = Field(default_factory=dict)
    """Free-form labels, kept with the rollout (at most 64, one line each)."""


class PolicyVersion(SpecModel):
    """One policy version the router can send decisions to."""

    version: Version
    """Version label, as the serving stack and the metrics know it. It reaches PromQL label
    values, workflow search attributes and router requests, hence VERSION_PATTERN."""
    uri: Annotated[str, Field(max_length=2048, pattern=URI_PATTERN)] | None = None
    """Where the router finds this version (model registry URI or policy server URL)."""


class HttpRouter(SpecModel):
    """A router that implements lockgate's HTTP route contract (docs/router-contract.md)."""

    type: Literal["http"]
    """The router kind: `http`, lockgate's HTTP route contract (the only kind today)."""
    url: BackendUrl
    """Base URL of the router, e.g. http://127.0.0.1:8080; routes live under
    /v1/targets/{target}/route."""
    timeout: Duration = timedelta(seconds=5)
    """Deadline of one request, its whole answer and any retries included. Default 5s."""
    auth: Auth | None = None
    """Credentials the worker sends (a bearer token for the reference gateway's control plane);
    the spec names where the worker reads the secret, never the secret."""


class PrometheusMonitoring(SpecModel):
    """Prometheus's instant-query API (`/api/v1/query`)."""

    type: Literal["prometheus"]
    """The monitoring kind: `prometheus`, its instant-query API."""
    url: BackendUrl
    """Base URL of the Prometheus server, e.g. http://127.0.0.1:9090."""
    timeout: Duration = timedelta(seconds=10)
    """Deadline of one query, its whole answer and any retries included. Default 10s."""
    auth: Auth | None = None
    """Credentials for Prometheus or the proxy in front of it, read by the worker."""


class HttpMonitoring(SpecModel):
    """Any HTTP endpoint that answers a query with JSON holding one number."""

    type: Literal["http"]
    """The monitoring kind: `http`, any endpoint answering JSON with one number."""
    url: BackendUrl
    """Endpoint; each trigger's rendered query is sent as the `query` parameter of a GET."""
    value_path: Word = "value"
    """Dotted path to the number in the JSON answer, e.g. `data.value` or `results.0.v`."""
    timeout: Duration = timedelta(seconds=10)
    """Deadline of one query, its whole answer and any retries included. Default 10s."""
    auth: Auth | None = None
    """Credentials for the endpoint, read by the worker."""


_UNKNOWN_TAG = (
    "Input tag '{tag}' found using {discriminator} does not match any of the expected tags: "
    "{expected_tags}"
)


def _declared_block(
    builtin: tuple[type[SpecModel], ...],
    lookup: Callable[[str], Any],
    installed: Callable[[], Mapping[str, Any]],
) -> tuple[WrapValidator, WrapSerializer]:
    """Validation and serialization of a backend block: built-in models, else the declaration.

    A built-in `type` goes through the static discriminated union (its errors and the JSON
    schema stay pydantic's own); any other `type` is validated by the config model that the
    installed declaration of that type brings (rollout_specs/backends.py), so a plugin's block is
    as strict as a built-in one. An unknown type is pydantic's `union_tag_invalid`, listing every
    installed type.
    """
    tags = frozenset(typing.get_args(model.model_fields["type"].annotation)[0] for model in builtin)

    def validate(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        tag = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
        if not isinstance(tag, str) or tag in tags:
            return handler(value)
        try:
            config: type[BaseModel] = lookup(tag).config
        except UnknownBackendType:
            raise PydanticCustomError(
                "union_tag_invalid",
                _UNKNOWN_TAG,
                {
                    "discriminator": "'type'",
                    "tag": tag,
                    "expected_tags": ", ".join(map(repr, installed())),
                },
            ) from None
        except BackendDeclarationError as exc:
            raise ValueError(str(exc)) from exc
        return value if isinstance(value, config) else config.model_validate(value)

    def serialize(
        value: Any, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> Any:
        if isinstance(value, builtin) or not isinstance(value, BaseModel):
            return handler(value)
        return value.model_dump(
            mode=info.mode,
            by_alias=bool(info.by_alias),
            exclude_unset=info.exclude_unset,
            exclude_defaults=info.exclude_defaults,
            exclude_none=info.exclude_none,
            round_trip=info.round_trip,
        )

    return WrapValidator(validate), WrapSerializer(serialize)


_router_validator, _router_serializer = _declared_block(
    (HttpRouter,), router_backend, router_backends
)
_monitoring_validator, _monitoring_serializer = _declared_block(
    (PrometheusMonitoring, HttpMonitoring), monitoring_backend, monitoring_backends
)
RouterConfig = Annotated[
    HttpRouter, Field(discriminator="type"), _router_validator, _router_serializer
]
"""The `router` block: a built-in type, or one an installed plugin declares (docs/plugins.md)."""
MonitoringConfig = Annotated[
    PrometheusMonitoring | HttpMonitoring,
    Field(discriminator="type"),
    _monitoring_validator,
    _monitoring_serializer,
]
"""The `monitoring` block: a built-in type, or one an installed plugin declares."""


class StageMode(StrEnum):
    """How a stage uses the candidate: judged on logs, mirrored (never served), or serving."""

    OFFLINE = "offline"
    """No traffic moves: the candidate is evaluated on logged decisions (`offline_eval`)."""
    SHADOW = "shadow"
    SPLIT = "split"


class MissingDataPolicy(StrEnum):
    """What to do when checks keep finding no evidence: never advance, either way."""

    HOLD = "hold"
    ROLLBACK = "rollback"


class OfflineEstimator(StrEnum):
    """Off-policy estimators of a policy's value from logged decisions."""

    IPS = "ips"
    CLIPPED_IPS = "clipped_ips"
    SNIPS = "snips"
    DR = "dr"


class OfflineEval(SpecModel):
    """Counterfactual evaluation on logged decisions before any live exposure.

    The log's rows hold a context, the logged action, its logging propensity and its reward.
    The incumbent is taken to be the logging policy: its per-row value is the logged reward.
    """

    log: Annotated[str, Field(min_length=1, max_length=4096, pattern=TEXT_PATTERN)]
    """Path of the log as the worker sees it: JSON Lines (`.jsonl`), Parquet (`.parquet`), or a
    directory of Parquet files (a partitioned dataset); Parquet is read in batches."""
    estimator: OfflineEstimator = OfflineEstimator.DR
    """The estimator the gate judges with; every estimator is reported."""
    max_regression: Annotated[float, Field(gt=0)]
    """Largest tolerated drop of the candidate's value below the incumbent's (reward units)."""
    candidate_probabilities: Word | None = None
    """A log column holding the candidate's {action: probability}; default: ask the
    candidate's policy server (`candidate.uri`, `POST /act` in batches)."""
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.05
    """The gate's interval is two-sided at 1 - alpha."""
    clip: Annotated[float, Field(gt=1)] = 10.0
    """Importance-weight cap of `clipped_ips`."""
    min_ess: Annotated[float, Field(ge=1)] = 100.0
    """Kish effective sample size below which the gate refuses to judge."""
    max_weight_error: Annotated[float, Field(gt=0, lt=1)] = 0.1
    """Largest tolerated |mean importance weight - 1|; more means broken propensity logging."""


class Approval(SpecModel):
    """Humans who must approve a stage before its traffic moves (four eyes: never the submitter)."""

    approvers: Annotated[list[Word], Field(min_length=1, max_length=100)]
    """Who may approve; the rollout's submitter never counts, even when listed."""
    required: Annotated[int, Field(ge=1, le=100)] = 1
    """Distinct approvals needed. Default 1; at most the number of approvers listed."""
    timeout: Duration = timedelta(hours=8)
    """How long to wait for the approvals, e.g. 4h. Default 8h."""
    on_timeout: MissingDataPolicy = MissingDataPolicy.HOLD
    """Without the approvals in time: hold (escalate to a human) or roll back. Never advance."""

    @model_validator(mode="after")
    def _enough_approvers(self) -> Approval:
        if len(set(self.approvers)) != len(self.approvers):
            raise ValueError("an approver is listed twice; list each person once")
        if self.required > len(self.approvers):
            raise ValueError(
                f"required is {self.required} but only {len(self.approvers)} approver(s) are "
                "listed; lower `required` or add approvers"
            )
        return self


class NotifyEvent(StrEnum):
    """Moments of a rollout a human may want to hear about."""

    STAGE_STARTED = "stage_started"
    APPROVAL_NEEDED = "approval_needed"
    PAUSED = "paused"
    HELD = "held"
    """Checks find no evidence (or a human is needed); the rollout waits."""
    ROLLED_BACK = "rolled_back"
    COMPLETED = "completed"


class Webhook(SpecModel):
    """A JSON POST per event; its `text` field makes it a Slack-compatible incoming webhook."""

    model_config = ConfigDict(json_schema_extra=_one_of_keys(("url",), ("url_from",)))

    type: Literal["webhook"]
    """The notifier kind: `webhook`, a JSON POST per event (Slack-compatible)."""
    url: BackendUrl | None = None
    """The hook's URL, when it is not a secret (a local receiver)."""
    url_from: SecretRef | None = None
    """Where the worker reads the URL, when the URL is the secret (a Slack incoming webhook)."""
    events: Annotated[list[NotifyEvent], Field(min_length=1)] = Field(
        default_factory=lambda: list(NotifyEvent)
    )
    """Events to send; default all."""
    timeout: Duration = timedelta(seconds=5)
    """Deadline of one request, its whole answer and any retries included. Default 5s."""
    auth: Auth | None = None
    """Credentials the worker sends with each delivery."""

    @model_validator(mode="after")
    def _one_url(self) -> Webhook:
        if (self.url is None) == (self.url_from is None):
            raise ValueError(
                "give the hook's address as url (a plain URL) or url_from (where the worker "
                "reads a secret URL, e.g. {env: SLACK_HOOK_URL}), exactly one of them"
            )
        return self

    def describe(self) -> str:
        """The hook for messages: its URL, or where its secret URL lives (never the URL)."""
        if self.url is not None:
            return self.url
        assert self.url_from is not None
        return f"the webhook URL from {self.url_from.describe()}"


NotifyConfig = Annotated[Webhook, Field(discriminator="type")]


class ShareCap(SpecModel):
    """At most this share of the candidate's served decisions may be one action, over a window.

    Past the cap the router serves the incumbent's decision instead and counts an intervention,
    so an action that is fine now and then (a deep discount) cannot become the policy's habit.
    """

    action: Word
    """The capped action, as the policy names it."""
    max_share: Annotated[float, Field(gt=0, lt=1)]
    """Largest share (0 < max_share < 1) of the candidate's served decisions, in the window."""
    window: Duration = timedelta(minutes=10)
    """Sliding window the share is counted over, e.g. 10m (1s to 1d). Default 10m."""

    @field_validator("window")
    @classmethod
    def _window_range(cls, value: timedelta) -> timedelta:
        if not timedelta(seconds=1) <= value <= timedelta(days=1):
            raise ValueError("a cap's window is between 1s and 1d, e.g. window: 10m")
        return value


class ValueCap(SpecModel):
    """A numeric parameter of the candidate's actions may not exceed a maximum.

    Policies may answer parameters with their action (`{"action": "discount", "params":
    {"amount": 120}}`); one above the cap is never executed: the incumbent's decision is served.
    """

    field: Name
    """The action parameter, e.g. `amount`."""
    max: float = Field(allow_inf_nan=False)
    """Largest value served; a decision whose parameter is greater is overruled."""
    action: Word | None = None
    """Only this action's parameter is capped. Default: the parameter of every action."""


def _cap_kind(data: object) -> str:
    """The kind of a cap: a value cap names a `field`, a share cap does not."""
    if isinstance(data, ValueCap) or (isinstance(data, dict) and "field" in data):
        return "value"
    return "share"


def _validated_cap(data: object) -> object:
    """Validate a cap as the kind its keys select, at the keys the engineer wrote.

    Pydantic's tagged union would add the tag to every error's location: `caps[0].value.max`.
    """
    if isinstance(data, ShareCap | ValueCap) or not isinstance(data, dict):
        return data
    return (ValueCap if _cap_kind(data) == "value" else ShareCap).model_validate(data)


Cap = Annotated[
    Annotated[ShareCap, Tag("share")] | Annotated[ValueCap, Tag("value")],
    Discriminator(_cap_kind),
    BeforeValidator(_validated_cap),
    Field(
        description="A cap: `{action, max_share, window}` on an action's share of the "
        "candidate's decisions, or `{field, max}` on a numeric action parameter."
    ),
]
"""One cap the router enforces: an action's share, or a parameter's value."""


class Review(SpecModel):
    """Actions of the candidate that a human must see before they are ever executed."""

    actions: Annotated[list[Word], Field(min_length=1, max_length=100)]
    """Actions the candidate may only propose: the incumbent's decision is served and the
    proposal waits at the router for `lockgate review`."""
    max_pending: Annotated[int, Field(ge=1, le=100_000)] = 1000
    """Proposals the router keeps waiting per target; past it the oldest is dropped (and
    counted). Default 1000."""


class Guardrails(SpecModel):
    """Hard limits the router enforces on the candidate whatever the stage."""

    blocked_actions: Annotated[list[Word], Field(max_length=1000)] = Field(default_factory=list)
    """Actions the candidate may never take; the router serves the incumbent's instead."""
    caps: Annotated[list[Cap], Field(max_length=100)] = Field(default_factory=list)
    """Caps on the candidate's actions: an action's share over a window, or a numeric
    parameter's value. Past a cap the router serves the incumbent's decision and counts an
    intervention (lockgate_guardrail_interventions_total). Default none."""
    review: Review | None = None
    """Actions the candidate may only propose, for humans to approve or reject with
    `lockgate review`. Default none."""

    @model_serializer(mode="wrap")
    def _without_unused(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Leave out caps and review when unused.

        A router that predates them then reads the same body as before, and specs recorded in
        histories stay as they were.
        """
        data: dict[str, Any] = handler(self)
        if not self.caps:
            data.pop("caps", None)
        if self.review is None:
            data.pop("review", None)
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Guardrails:
        errors: list[PydanticCustomError] = []
        blocked = set(self.blocked_actions)
        shares: set[str] = set()
        for index, cap in enumerate(self.caps):
            if isinstance(cap, ShareCap):
                if cap.action in shares:
                    errors.append(rule_error(
                        f"caps[{index}].action",
                        f"{cap.action!r} is capped twice; keep one share cap per action",
                    ))  # fmt: skip
                shares.add(cap.action)
            action = cap.action
            if action is not None and action in blocked:
                errors.append(rule_error(
                    f"caps[{index}].action",
                    f"{action!r} is blocked outright; a cap on it changes nothing, remove one",
                ))  # fmt: skip
        if self.review is not None:
            for index, action in enumerate(self.review.actions):
                if action in blocked:
                    errors.append(rule_error(
                        f"review.actions[{index}]",
                        f"{action!r} is blocked outright, so it is never proposed; remove it "
                        "from review.actions or from blocked_actions",
                    ))  # fmt: skip
        raise_rule_errors(self, errors)
        return self


def _check_template(query: str, *, per_arm: bool) -> str:
    """Refuse unknown variables, {{version}} outside per-arm queries, and unsafe placements."""
    unknown = unknown_variables(query)
    if not per_arm and "version" in variables_in(query):
        raise ValueError(
            "{{version}} is only for a metric's per-arm queries (spec.metrics); use "
            "{{candidate}} or {{incumbent}} here"
        )
    if unknown:
        allowed = ", ".join("{{" + name + "}}" for name in TEMPLATE_VARIABLES)
        raise ValueError(
            f"unknown query variable {{{{{unknown[0]}}}}}; the variables are {allowed}"
        )
    problem = placement_problem(query)
    if problem is not None:
        raise ValueError(problem)
    return query


class ArmMetric(SpecModel):
    """How to read one arm's sufficient statistics: observations, their sum, sum of squares.

    Each query is rendered once per arm with {{version}}; statistical triggers compare the two.
    """

    count: Query
    """Number of observations of the arm over {{stage_window}} (e.g. rewarded decisions)."""
    total: Query
    """Sum of the observed values (e.g. rewards)."""
    total_squares: Query | None = None
    """Sum of squared values; leave out for 0/1 metrics (errors, conversions)."""
    higher_is_better: bool = True
    """False for metrics where more is worse (errors, violations)."""

    @field_validator("count", "total", "total_squares")
    @classmethod
    def _per_arm(cls, query: str | None) -> str | None:
        if query is not None:
            _check_template(query, per_arm=True)
        return query


class CompareRule(SpecModel):
    """Candidate vs incumbent on a metric: an always-valid sequential test of a regression."""

    metric: Name
    """A metric of spec.metrics or a built-in one (reward, errors, guardrail_violations)."""
    max_drop: Annotated[float, Field(gt=0)]
    """The largest tolerated drop (absolute, or relative with `relative: true`)."""
    relative: bool = False
    """Read `max_drop` as a fraction of the incumbent's mean (0.02 = 2%) instead of in the
    metric's own units. Default false."""


class BudgetRule(SpecModel):
    """A cap on the reward the candidate may cost relative to the incumbent."""

    metric: Name = "reward"
    """The metric whose loss is capped: spec.metrics or built-in. Default `reward`."""
    max_reward_loss: Annotated[float, Field(gt=0)]
    """Roll back when the upper confidence bound of n_candidate x (incumbent - candidate) mean
    exceeds this."""


class AdvanceWhen(SpecModel):
    """Evidence a stage needs before it advances: non-inferiority of a metric within a margin."""

    non_inferior: Name
    """The metric (spec.metrics or built-in) the candidate must be shown not worse on."""
    margin: Annotated[float, Field(gt=0)]
    """How much worse than the incumbent the candidate may be shown to be at most (metric
    units, or a fraction of the incumbent's mean with `relative: true`); greater than 0."""
    relative: bool = False
    """Read `margin` as a fraction of the incumbent's mean instead of in the metric's units.
    Default false."""


class _NoBake:
    """Marks a shadow or split stage written without `min_duration` (see Stage)."""


_NO_BAKE = _NoBake()


def _bake_given(value: object) -> object:
    """Fail, at `min_duration`, a live stage that was written without one."""
    if isinstance(value, _NoBake):
        raise ValueError(
            "a shadow or split stage needs `min_duration` (its bake time), e.g. min_duration: 30m"
        )
    return value


def _present(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """JSON Schema: the key `name` is present and its value matches `schema`."""
    return {"required": [name], "properties": {name: schema}}


def _absent(name: str) -> dict[str, Any]:
    """JSON Schema: the key `name` is not present."""
    return {"not": {"required": [name]}}


_OFFLINE_STAGE: dict[str, Any] = {
    "anyOf": [
        _present("mode", {"const": StageMode.OFFLINE.value}),
        {"allOf": [_absent("mode"), _present("offline_eval", {"type": "object"})]},
    ]
}
"""A stage the loader treats as offline: `mode: offline`, or no mode and an `offline_eval`."""
_SPLIT_STAGE: dict[str, Any] = {
    "anyOf": [
        _present("mode", {"const": StageMode.SPLIT.value}),
        {"allOf": [_absent("mode"), {"not": _present("offline_eval", {"type": "object"})}]},
    ]
}
"""A stage the loader treats as split: `mode: split`, or neither a mode nor an offline_eval."""
_STAGE_SCHEMA_RULES: dict[str, Any] = {
    "allOf": [
        {"if": _OFFLINE_STAGE, "else": {"required": ["min_duration"]}},
        {"if": _SPLIT_STAGE, "then": _present("percent", {"type": "number"})},
    ]
}
"""Stage's conditional requirements, in the schema as the loader applies them: live (shadow or
split) stages need `min_duration`, split stages need `percent`. Editors then flag a missing bake
time as the loader does, while offline stages stay valid without one."""


class Stage(SpecModel):
    """One lock of the canal: a traffic setting held until it has earned the next."""

    name: Annotated[str, Field(pattern=SLUG_PATTERN, max_length=63)]
    """Stage name, unique in the spec (lowercase letters, digits and '-', at most 63)."""
    mode: StageMode = StageMode.SPLIT
    """`split` (default): the candidate serves `percent`. `shadow`: it sees mirrored traffic and
    never serves. `offline`: judged on logged decisions (implied by `offline_eval`)."""
    percent: Annotated[float, Field(gt=0, le=100)] | None = None
    """Share of decisions (in `scope`) served by the candidate. Required for split stages."""
    scope: Scope | None = None
    """Label selector limiting the stage to matching units, e.g. {region: [eu-west-1]}."""
    min_duration: Annotated[Duration, BeforeValidator(_bake_given)] = timedelta(0)
    """Bake time, e.g. 30m: the stage ends no sooner, and only with every trigger passing.
    It counts from the router's confirmation of the stage's route to the end of the check,
    by the Temporal server's clock. Required for shadow and split stages; offline stages take
    none (0s)."""
    max_duration: Duration | None = None
    """After this long without earning its gate the stage escalates (or rolls back, see
    `on_inconclusive`). Default none: the stage waits as long as it takes."""
    advance_when: AdvanceWhen | None = None
    """Evidence the stage needs to advance, beyond every trigger passing."""
    on_inconclusive: MissingDataPolicy = MissingDataPolicy.HOLD
    """At max_duration without the evidence: hold for a human, or roll back. Never advance."""
    expected_samples: Annotated[int, Field(ge=10, le=10**12)] = 10_000
    """Observations (both arms) the stage should see; tunes its sequential tests."""
    offline_eval: OfflineEval | None = None
    """Makes this an offline stage: judged on logged decisions, no traffic moves."""
    approval: Approval | None = None
    """Approvals needed before this stage's traffic moves."""
    min_reviews: Annotated[int, Field(ge=1, le=10**6)] | None = None
    """Proposals (guardrails.review) reviewers must have judged during this stage before it
    advances. Split stages only. Default none."""

    model_config = ConfigDict(json_schema_extra=_STAGE_SCHEMA_RULES)

    @model_validator(mode="before")
    @classmethod
    def _offline_or_baked(cls, data: object) -> object:
        """Imply `mode: offline` from `offline_eval`; mark a live stage's missing bake time.

        The missing bake is not raised here: a before-validator that raises stops the model
        before its fields are checked, which hid every other problem of the stage (a typo like
        `min_durration` was reported only as "needs `min_duration`"). The marker fails in the
        field's own validation instead, alongside unknown keys and other field errors.
        """
        if not isinstance(data, dict):
            return data
        if data.get("offline_eval") is not None and "mode" not in data:
            return {**data, "mode": StageMode.OFFLINE.value}
        if data.get("mode", StageMode.SPLIT.value) != StageMode.OFFLINE.value and (
            "min_duration" not in data
        ):
            return {**data, "min_duration": _NO_BAKE}
        return data

    @model_validator(mode="after")
    def _mode_matches_percent(self) -> Stage:
        errors: list[PydanticCustomError] = []
        if (self.mode is StageMode.OFFLINE) != (self.offline_eval is not None):
            errors.append(
                rule_error(
                    "offline_eval" if self.offline_eval is None else "mode",
                    "an offline stage is the one with `offline_eval`; add offline_eval or "
                    "use mode shadow or split",
                )
            )
        if self.mode is StageMode.OFFLINE:
            for name in ("percent", "scope", "max_duration", "advance_when", "min_reviews"):
                if getattr(self, name) is not None:
                    errors.append(
                        rule_error(
                            name, f"an offline stage moves no traffic; remove `{name}` from it"
                        )
                    )
            raise_rule_errors(self, errors)
            return self
        if self.mode is StageMode.SPLIT and self.percent is None:
            errors.append(
                rule_error("percent", "a split stage needs `percent` (0 < percent <= 100)")
            )
        if self.mode is StageMode.SHADOW and self.min_reviews is not None:
            errors.append(
                rule_error(
                    "min_reviews",
                    "a shadow stage serves nothing, so the candidate proposes nothing to review; "
                    "move min_reviews to a split stage",
                )
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

    model_config = ConfigDict(json_schema_extra=_any_of_keys("above", "below"))

    above: float | None = None
    """Fail when the query's value is greater than this (in the query's own units)."""
    below: float | None = None
    """Fail when the query's value is less than this (in the query's own units)."""

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


class DriftRule(SpecModel):
    """Divergence of the candidate's action distribution from the incumbent's."""

    model_config = ConfigDict(
        json_schema_extra=_any_of_keys("max_js", "max_psi", "max_new_action_share")
    )

    max_js: Annotated[float, Field(gt=0, le=0.6931471805599453)] | None = None
    """Largest tolerated Jensen-Shannon divergence (nats, at most ln 2)."""
    max_psi: Annotated[float, Field(gt=0)] | None = None
    """Largest tolerated population stability index."""
    max_new_action_share: Annotated[float, Field(ge=0, lt=1)] | None = None
    """Largest share of candidate decisions on actions the incumbent never took."""
    smoothing: Annotated[float, Field(ge=0)] = 0.5
    """Pseudo-count added to every action on both sides (Jeffreys' 0.5 by default)."""
    min_samples: Annotated[int, Field(ge=1, le=10**9)] | None = None
    """Decisions per side before judging; default 20 x (actions - 1)."""
    by_action: Query = (
        'sum by (action) (increase(lockgate_decisions_total{target="{{target}}",'
        'version="{{version}}"}[{{stage_window}}]))'
    )
    """Per-arm decisions by action ({{version}} is the arm); a Prometheus query by default."""

    @model_validator(mode="after")
    def _some_limit(self) -> DriftRule:
        if self.max_js is None and self.max_psi is None and self.max_new_action_share is None:
            raise ValueError("a drift rule needs max_js, max_psi or max_new_action_share")
        _check_template(self.by_action, per_arm=True)
        return self


class ShadowRule(SpecModel):
    """The candidate's would-be actions against the incumbent's, on the same shadow requests.

    Judged on the paired table of (incumbent action, candidate action) once it holds
    `min_samples` pairs: fail on an agreement rate shown below `min_agreement` (the upper bound
    of its confidence sequence), on action shares that differ both as shown by the sequential
    Stuart-Maxwell test at `alpha` (both valid however often they are checked) and by
    more than `max_js`/`max_psi`, or on too many actions the incumbent never takes.
    """

    model_config = ConfigDict(
        json_schema_extra=_any_of_keys("min_agreement", "max_js", "max_psi", "max_out_of_support")
    )

    min_agreement: Annotated[float, Field(gt=0, le=1)] | None = None
    """Smallest tolerated share of decisions where the candidate picks the incumbent's action."""
    max_js: Annotated[float, Field(gt=0, le=0.6931471805599453)] | None = None
    """Largest tolerated Jensen-Shannon divergence of the two action shares (nats)."""
    max_psi: Annotated[float, Field(gt=0)] | None = None
    """Largest tolerated PSI of the two action shares."""
    max_out_of_support: Annotated[float, Field(ge=0, lt=1)] | None = None
    """Largest share of candidate actions the incumbent never took in the window."""
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.01
    """Level of the agreement's confidence sequence and of the sequential Stuart-Maxwell test
    (both valid at every check)."""
    min_samples: Annotated[int, Field(ge=1, le=10**9)] = 500
    """Pairs before judging; fewer is awaiting evidence, never a pass."""
    smoothing: Annotated[float, Field(ge=0)] = 0.5
    """Pseudo-count of the JS/PSI effect sizes (Jeffreys' 0.5 by default)."""
    pairs: Query = (
        "sum by (incumbent_action, candidate_action) (increase(lockgate_shadow_pairs_total"
        '{target="{{target}}"}[{{stage_window}}]))'
    )
    """Paired decisions by (incumbent_action, candidate_action); the gateway's by default."""

    @model_validator(mode="after")
    def _some_limit(self) -> ShadowRule:
        limits = (self.min_agreement, self.max_js, self.max_psi, self.max_out_of_support)
        if all(limit is None for limit in limits):
            raise ValueError(
                "a shadow rule needs min_agreement, max_js, max_psi or max_out_of_support"
            )
        _check_template(self.pairs, per_arm=False)
        return self


class Fairness(SpecModel):
    """How evenly the candidate treats segments: the four-fifths rule on the rate of an action.

    The rate is the share of a segment's candidate decisions that took `action` (an approval,
    an offer); the ratio is the lowest segment's rate over the highest's.
    """

    model_config = ConfigDict(json_schema_extra=_any_of_keys("min_ratio", "max_ratio_drop"))

    action: Word
    """The action whose rate is compared across segments, e.g. `approve`."""
    min_ratio: Annotated[float, Field(gt=0, le=1)] | None = None
    """Fail when the candidate's ratio is shown below this (0.8 is the four-fifths rule)."""
    max_ratio_drop: Annotated[float, Field(gt=0, lt=1)] | None = None
    """Fail when the candidate's ratio is shown below the incumbent's by more than this."""

    @model_validator(mode="after")
    def _some_limit(self) -> Fairness:
        if self.min_ratio is None and self.max_ratio_drop is None:
            raise ValueError("a fairness rule needs min_ratio, max_ratio_drop, or both")
        return self


class SegmentsRule(SpecModel):
    """The compare test run in every segment, so harm to one cannot hide in the average."""

    label: Name
    """The unit attribute whose values are the segments (e.g. region, device, tier), as units
    carry it in their decide requests."""
    max_drop: Annotated[float, Field(gt=0)]
    """The largest tolerated drop of reward in any one segment (absolute, or relative with
    `relative: true`)."""
    relative: bool = False
    """Read `max_drop` as a fraction of the incumbent's mean in that segment. Default false."""
    segments: Annotated[int, Field(ge=1, le=1000)] = 10
    """Segments the alpha is split across (at least the number seen): a fixed denominator, so
    a segment appearing late never inflates the false-rollback rate. Default 10."""
    min_samples: Annotated[int, Field(ge=1, le=10**9)] = 100
    """Rewarded decisions per arm before a segment is judged. Default 100."""
    fairness: Fairness | None = None
    """Also fail when the candidate treats the segments unevenly. Default none."""


class SpendRule(SpecModel):
    """A budget on what the candidate's decisions cost: the sum of a numeric action parameter."""

    field: Name
    """The action parameter summed as spend (e.g. `amount`), as the router counts it for the
    decisions it served (lockgate_action_value_total)."""
    budget: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    """Largest spend of the candidate's decisions over the whole rollout."""
    stage_budget: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    """Largest spend of the candidate's decisions within one stage. Default none."""

    @model_validator(mode="after")
    def _stage_within_rollout(self) -> SpendRule:
        if self.stage_budget is not None and self.stage_budget > self.budget:
            raise ValueError(
                f"stage_budget ({self.stage_budget:g}) is larger than budget ({self.budget:g}), "
                "so it never binds; lower it or remove it"
            )
        return self


class ReviewRule(SpecModel):
    """Reviewers' verdicts on the candidate's proposals (guardrails.review), as evidence."""

    max_reject_share: Annotated[float, Field(gt=0, lt=1)]
    """Roll back when the share of proposals reviewers reject is shown above this (a
    confidence bound valid however often it is checked, not the raw share)."""
    min_reviews: Annotated[int, Field(ge=1, le=10**6)] = 10
    """Verdicts before the share is judged; fewer is awaiting evidence. Default 10."""


STATISTICAL_MODES = [StageMode.SPLIT]
"""Statistical triggers compare arms that both serve: they judge split stages by default."""

TriggerKind = Literal[
    "threshold", "compare", "budget", "drift", "shadow", "segments", "spend", "review"
]
"""The kinds of rollback trigger; each names the key that selects it (`query` with `threshold`
for a threshold trigger)."""

_RULE_KEYS = ("compare", "budget", "drift", "shadow", "segments", "spend", "review")
"""The keys that each select one kind of trigger on their own."""
_KIND_KEYS = ("query", "threshold", *_RULE_KEYS)
"""Every key that belongs to one kind only; the kinds' shared keys are the base's fields."""
_KIND_OF_KEY: dict[str, TriggerKind] = {
    "query": "threshold",
    "compare": "compare",
    "budget": "budget",
    "drift": "drift",
    "shadow": "shadow",
    "segments": "segments",
    "spend": "spend",
    "review": "review",
}
"""The kind each kind-selecting key stands for."""


class TriggerBase(SpecModel):
    """What every rollback trigger has, and what the rest of lockgate may ask of any kind.

    Each kind states, once, how it is treated elsewhere: whether it spends alpha, whether it
    compares the arms, which per-arm metrics it reads, how its value is labelled and which
    limit a plot draws. Nothing outside the kind looks at its rule to guess these.
    """

    kind: ClassVar[TriggerKind]
    """The kind's name, as the spec, the logs and the report show it."""
    statistical: ClassVar[bool] = False
    """Whether the trigger spends a share of the rollout's alpha (a sequential test)."""
    compares_arms: ClassVar[bool] = True
    """Whether the trigger judges the candidate against the incumbent; at 100% with no scope
    no incumbent traffic is left, so such a trigger sits that stage out."""
    value_label: ClassVar[str] = "value"
    """What the judged value is, for the y axis of the trigger's plot."""

    name: Annotated[str, Field(pattern=SLUG_PATTERN, max_length=63)]
    """Trigger name, unique in the spec; shown with every verdict."""
    failure_limit: Annotated[int, Field(ge=1, le=1000)] = 1
    """Consecutive failing checks that roll back. Default 1; at most 1000 (more never fires)."""
    modes: Annotated[list[StageMode], Field(min_length=1)] = Field(
        default_factory=lambda: [StageMode.SHADOW, StageMode.SPLIT]
    )
    """Stage modes this trigger judges. Default both shadow and split."""

    @property
    def arm_metrics(self) -> tuple[str, ...]:
        """The per-arm metrics the trigger reads, so a check fetches their definitions."""
        return ()

    def limit(self) -> Threshold | None:
        """The limit a plot of the trigger's values draws, in the judged value's units."""
        return None

    def applies_to(self, stage: Stage) -> bool:
        """Whether this trigger judges `stage`.

        A shadow stage has no candidate outcomes, and a trigger that compares the arms has no
        incumbent traffic left at 100% with no scope.
        """
        if self.compares_arms and stage.percent == 100 and not stage.scope:
            return False
        return stage.mode in self.modes

    @field_validator("modes")
    @classmethod
    def _live_modes(cls, modes: list[StageMode]) -> list[StageMode]:
        if StageMode.OFFLINE in modes:
            raise ValueError(
                "offline stages are judged by their offline_eval, not by rollback triggers; "
                "use shadow and/or split"
            )
        return modes


class ThresholdTrigger(TriggerBase):
    """A query's value against a fixed healthy range: the simplest rule, for any monitoring."""

    kind: ClassVar[Literal["threshold"]] = "threshold"
    compares_arms: ClassVar[bool] = False

    query: Query
    """Query for the monitoring backend, with {{variable}} placeholders (with `threshold`)."""
    threshold: Threshold
    """The healthy range of the query's value (`above`/`below`); goes with `query`."""

    def limit(self) -> Threshold | None:
        """The healthy range itself."""
        return self.threshold

    @field_validator("query")
    @classmethod
    def _known_variables(cls, query: str) -> str:
        return _check_template(query, per_arm=False)


class CompareTrigger(TriggerBase):
    """The candidate against the incumbent on a metric, by an always-valid sequential test."""

    kind: ClassVar[Literal["compare"]] = "compare"
    statistical: ClassVar[bool] = True
    value_label: ClassVar[str] = "candidate - incumbent"

    compare: CompareRule
    """Roll back when the candidate is shown worse than the incumbent on a metric (a
    sequential test; split stages by default)."""
    modes: Annotated[list[StageMode], Field(min_length=1)] = Field(
        default_factory=lambda: list(STATISTICAL_MODES)
    )
    """Stage modes this trigger judges. Default split: in shadow the candidate serves nothing,
    so it has no outcomes to compare."""

    @property
    def arm_metrics(self) -> tuple[str, ...]:
        """The compared metric."""
        return (self.compare.metric,)

    def limit(self) -> Threshold | None:
        """The tolerated drop, below which the difference rolls back."""
        return Threshold(below=-self.compare.max_drop)


class BudgetTrigger(TriggerBase):
    """A cap on the reward the candidate may have cost, bounded always-validly."""

    kind: ClassVar[Literal["budget"]] = "budget"
    statistical: ClassVar[bool] = True
    value_label: ClassVar[str] = "reward loss"

    budget: BudgetRule
    """Roll back when the reward the candidate costs may exceed a cap (split stages by
    default)."""
    modes: Annotated[list[StageMode], Field(min_length=1)] = Field(
        default_factory=lambda: list(STATISTICAL_MODES)
    )
    """Stage modes this trigger judges. Default split: in shadow the candidate serves nothing,
    so it costs no reward."""

    @property
    def arm_metrics(self) -> tuple[str, ...]:
        """The metric whose loss is capped."""
        return (self.budget.metric,)

    def limit(self) -> Threshold | None:
        """The budget, above which the possible loss rolls back."""
        return Threshold(above=self.budget.max_reward_loss)


class DriftTrigger(TriggerBase):
    """The candidate's action distribution against the incumbent's, by divergence."""

    kind: ClassVar[Literal["drift"]] = "drift"
    value_label: ClassVar[str] = "Jensen-Shannon divergence"

    drift: DriftRule
    """Roll back when the candidate's action distribution drifts from the incumbent's
    (Prometheus monitoring only)."""

    def limit(self) -> Threshold | None:
        """The largest tolerated JS divergence, when the rule sets one (the plotted value)."""
        return None if self.drift.max_js is None else Threshold(above=self.drift.max_js)


class ShadowTrigger(TriggerBase):
    """The candidate's would-be actions against the incumbent's on the same shadow requests."""

    kind: ClassVar[Literal["shadow"]] = "shadow"
    value_label: ClassVar[str] = "agreement with the incumbent"

    shadow: ShadowRule
    """Roll back when the candidate's would-be actions disagree with the incumbent's on the same
    shadow requests (shadow stages only; Prometheus monitoring only)."""
    modes: Annotated[list[StageMode], Field(min_length=1)] = Field(
        default_factory=lambda: [StageMode.SHADOW]
    )
    """Stage modes this trigger judges: shadow, the default and the only one allowed."""

    def limit(self) -> Threshold | None:
        """The smallest tolerated agreement, when the rule sets one (the plotted value)."""
        floor = self.shadow.min_agreement
        return None if floor is None else Threshold(below=floor)

    @model_validator(mode="after")
    def _shadow_only(self) -> ShadowTrigger:
        if self.modes != [StageMode.SHADOW]:
            raise ValueError(
                "a shadow trigger judges paired shadow decisions only; set modes: [shadow]"
            )
        return self


class SegmentsTrigger(TriggerBase):
    """The candidate against the incumbent in every segment, and how evenly it treats them."""

    kind: ClassVar[Literal["segments"]] = "segments"
    statistical: ClassVar[bool] = True
    value_label: ClassVar[str] = "worst segment: candidate - incumbent"

    segments: SegmentsRule
    """Roll back when the candidate is shown worse than the incumbent in any one segment (a
    sequential test per segment, alpha split across them), or unfair across them (split stages
    by default; Prometheus monitoring only)."""
    modes: Annotated[list[StageMode], Field(min_length=1)] = Field(
        default_factory=lambda: list(STATISTICAL_MODES)
    )
    """Stage modes this trigger judges. Default split: in shadow the candidate serves nothing."""

    def limit(self) -> Threshold | None:
        """The tolerated drop, below which a segment's difference rolls back."""
        return Threshold(below=-self.segments.max_drop)


class SpendTrigger(TriggerBase):
    """What the candidate's decisions cost, against a budget for the rollout and per stage."""

    kind: ClassVar[Literal["spend"]] = "spend"
    compares_arms: ClassVar[bool] = False
    value_label: ClassVar[str] = "spend over the rollout"

    spend: SpendRule
    """Roll back when the candidate's cumulative spend exceeds its budget (split stages by
    default: in shadow nothing of the candidate's is served, so it spends nothing)."""
    modes: Annotated[list[StageMode], Field(min_length=1)] = Field(
        default_factory=lambda: list(STATISTICAL_MODES)
    )
    """Stage modes this trigger judges. Default split."""

    def limit(self) -> Threshold | None:
        """The rollout's budget."""
        return Threshold(above=self.spend.budget)


class ReviewTrigger(TriggerBase):
    """Reviewers' verdicts on the candidate's proposals: too many rejected rolls back."""

    kind: ClassVar[Literal["review"]] = "review"
    statistical: ClassVar[bool] = True
    compares_arms: ClassVar[bool] = False
    value_label: ClassVar[str] = "share of proposals rejected"

    review: ReviewRule
    """Roll back when reviewers are shown to reject more than a stated share of the
    candidate's proposals (needs guardrails.review; split stages by default)."""
    modes: Annotated[list[StageMode], Field(min_length=1)] = Field(
        default_factory=lambda: list(STATISTICAL_MODES)
    )
    """Stage modes this trigger judges. Default split: proposals come from served traffic."""

    def limit(self) -> Threshold | None:
        """The tolerated reject share."""
        return Threshold(above=self.review.max_reject_share)


TRIGGER_KINDS: dict[TriggerKind, type[TriggerBase]] = {
    kind.kind: kind
    for kind in (
        ThresholdTrigger,
        CompareTrigger,
        BudgetTrigger,
        DriftTrigger,
        ShadowTrigger,
        SegmentsTrigger,
        SpendTrigger,
        ReviewTrigger,
    )
}
"""Every kind of trigger by its name: what the spec's union, the judges and the tests cover."""
_TRIGGER_KEYS = frozenset(key for kind in TRIGGER_KINDS.values() for key in kind.model_fields)


def _rule_keys(data: dict[Any, Any]) -> list[str]:
    """The kind-selecting keys a trigger mapping holds (`query` stands for a threshold trigger)."""
    return [key for key in (*_RULE_KEYS, "query") if key in data]


def trigger_kind_of(data: object) -> TriggerKind | None:
    """The kind of a trigger: an instance's own, or the one kind key a mapping holds.

    This is the union's discriminator: a mapping with no kind key or with several has none.
    """
    if isinstance(data, TriggerBase):
        return data.kind
    if isinstance(data, dict):
        keys = _rule_keys(data)
        if len(keys) == 1:
            return _KIND_OF_KEY[keys[0]]
    return None


def _kind_problem(data: dict[Any, Any]) -> str | None:
    """Why a trigger mapping is not exactly one kind, or None when it is."""
    keys = _rule_keys(data)
    if len(keys) != 1:
        return (
            "a trigger is one of: `query` with `threshold`, `compare`, `budget`, `drift`, "
            "`shadow`, `segments`, `spend` or `review`; this one has "
            f"{' and '.join(keys) or 'none of them'}"
        )
    if ("query" in data) != ("threshold" in data):
        return "`query` and `threshold` go together; give both"
    return None


def _validated_trigger(data: object) -> object:
    """Validate a trigger as the kind its keys select, with errors at the paths the engineer wrote.

    Keys of other kinds that are null are dropped first: specs recorded in workflow histories
    carry every kind's key, the unused ones as null. The chosen kind validates the rest here,
    because pydantic's tagged union would put the kind's tag into every error's location
    (`rollback_triggers[0].compare.compare.metric`); the discriminator then only routes the
    finished instance. A mapping that is not one kind reports that, with any unknown key.
    """
    if isinstance(data, TriggerBase):
        return data
    if not isinstance(data, dict):
        raise PydanticKnownError("dict_type")
    given = {k: v for k, v in data.items() if not (k in _KIND_KEYS and v is None)}
    problem = _kind_problem(given)
    if problem is None:
        kind = trigger_kind_of(given)
        assert kind is not None  # one kind key, checked by _kind_problem
        return TRIGGER_KINDS[kind].model_validate(given)
    unknown: list[InitErrorDetails] = [
        InitErrorDetails(type="extra_forbidden", loc=(key,), input=value)
        for key, value in given.items()
        if key not in _TRIGGER_KEYS and isinstance(key, str)
    ]
    kind_error = PydanticCustomError("lockgate_trigger_kind", "{message}", {"message": problem})
    raise ValidationError.from_exception_data(
        "RollbackTrigger", [*unknown, InitErrorDetails(type=kind_error, loc=(), input=data)]
    )


RollbackTrigger = Annotated[
    Annotated[ThresholdTrigger, Tag("threshold")]
    | Annotated[CompareTrigger, Tag("compare")]
    | Annotated[BudgetTrigger, Tag("budget")]
    | Annotated[DriftTrigger, Tag("drift")]
    | Annotated[ShadowTrigger, Tag("shadow")]
    | Annotated[SegmentsTrigger, Tag("segments")]
    | Annotated[SpendTrigger, Tag("spend")]
    | Annotated[ReviewTrigger, Tag("review")],
    Discriminator(trigger_kind_of),
    BeforeValidator(_validated_trigger),
    Field(
        description="One rollback trigger: `query` with `threshold`, or `compare`, `budget`, "
        "`drift`, `shadow`, `segments`, `spend` or `review`, with a `name` and optional "
        "`failure_limit` and `modes`."
    ),
]
"""What rolls the candidate back: one kind of trigger, told apart by the key it holds."""


def _triggers_required(schema: dict[str, Any]) -> None:
    """Mark `rollback_triggers` required (at least one) in the schema, as the loader demands.

    The model keeps an empty default so that a missing list is reported by `_coherent` with the
    trigger to add, next to every other cross-field problem (a failing field would skip them).
    """
    schema["required"] = [*schema.get("required", []), "rollback_triggers"]
    triggers = schema["properties"]["rollback_triggers"]
    triggers.pop("default", None)
    triggers["minItems"] = 1


HOLDBACK_STAGE = "holdback"
"""Name of the stage a holdback runs as, after the spec's last stage (no spec stage may use it)."""


class Holdback(SpecModel):
    """A share of units kept on the previous incumbent after the last stage, still compared.

    Harm that drifts in over days is invisible at 100%: with no incumbent traffic left there is
    nothing to compare with. The holdback keeps a small control arm for `duration`, judged by the
    triggers that compare arms; if the new version is shown worse, the rollout reverts.
    """

    percent: Annotated[float, Field(gt=0, le=50)]
    """Share of decisions still served by the previous incumbent (0 < percent <= 50), e.g. 1."""
    duration: Duration
    """How long the holdback lasts, e.g. 7d; at least `check_interval`. The candidate becomes
    the incumbent once it has passed and the latest check passes (or on `lockgate promote`)."""


class RolloutSpecBody(SpecModel):
    """What is rolled out, through which stages, and what rolls it back."""

    model_config = ConfigDict(json_schema_extra=_triggers_required)

    target: Annotated[str, Field(pattern=SLUG_PATTERN, max_length=63)]
    """The policy slot; one rollout may run per target at a time."""
    incumbent: PolicyVersion
    """The version serving today; every rollback returns all traffic to it."""
    candidate: PolicyVersion
    """The version being rolled out; it must differ from the incumbent."""
    router: RouterConfig
    """The router lockgate drives to move traffic between the two versions."""
    monitoring: MonitoringConfig
    """Where the triggers' queries run (Prometheus or an HTTP JSON endpoint)."""
    check_interval: Duration = timedelta(seconds=30)
    """Time between checks. Default 30s; at least 1s."""
    on_missing_data: MissingDataPolicy = MissingDataPolicy.HOLD
    """When checks find no evidence `missing_data_limit` times in a row: hold or roll back."""
    missing_data_limit: Annotated[int, Field(ge=1, le=10_000)] = 5
    """Consecutive checks without evidence before escalating (or rolling back). Default 5."""
    guardrails: Guardrails = Field(default_factory=Guardrails)
    """Hard limits the router enforces on the candidate in every stage. Default none."""
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.05
    """False-rollback budget of the whole rollout, split evenly across statistical triggers."""
    metrics: Annotated[dict[Name, ArmMetric], Field(max_length=100)] = Field(default_factory=dict)
    """Per-arm metrics for statistical triggers, beyond (or replacing) the built-in ones."""
    stages: Annotated[list[Stage], Field(min_length=1, max_length=100)]
    """The locks, in order (1 to 100): offline gates first, then shadow, then split stages with
    strictly increasing percent; the last serves percent: 100 with no scope."""
    rollback_triggers: Annotated[list[RollbackTrigger], Field(max_length=100)] = Field(
        default_factory=list
    )
    """What rolls the candidate back: 1 to 100 triggers, required; each check runs every
    trigger that judges the current stage."""
    notify: Annotated[list[NotifyConfig], Field(max_length=20)] = Field(default_factory=list)
    """Where to tell humans about the rollout's events (webhooks)."""
    holdback: Holdback | None = Field(default=None, exclude_if=lambda value: value is None)
    """After the last stage, keep `percent` of decisions on the previous incumbent for
    `duration`, judged by the triggers that compare arms; reverts if the candidate is shown
    worse. Default none: the rollout completes after its last stage."""

    @field_validator("check_interval")
    @classmethod
    def _interval_floor(cls, value: timedelta) -> timedelta:
        if value < MIN_CHECK_INTERVAL:
            raise ValueError("check_interval must be at least 1s (the server's timer resolution)")
        return value

    @model_validator(mode="after")
    def _coherent(self) -> RolloutSpecBody:
        errors = [
            *self._check_versions(),
            *self._check_stages(),
            *self._check_triggers(),
            *self._check_holdback(),
        ]
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
        seen_live = False
        for index, stage in enumerate(self.stages):
            if stage.name in names:
                yield rule_error(
                    f"stages[{index}].name", f"stage name {stage.name!r} is used twice; rename one"
                )
            names.add(stage.name)
            if stage.mode is StageMode.OFFLINE:
                yield from self._check_offline(index, stage, seen_live)
                continue
            seen_live = True
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

    def _check_offline(
        self, index: int, stage: Stage, seen_live: bool
    ) -> Iterator[PydanticCustomError]:
        if seen_live:
            yield rule_error(
                f"stages[{index}].offline_eval",
                "an offline gate after a live stage comes too late: the candidate has already "
                "met users; put offline stages first",
            )
        offline = stage.offline_eval
        if (
            offline is not None
            and offline.candidate_probabilities is None
            and not (self.candidate.uri or "").startswith(("http://", "https://"))
        ):
            yield rule_error(
                f"stages[{index}].offline_eval.candidate_probabilities",
                "the candidate's action probabilities come from its policy server, but "
                "candidate.uri is not an http(s) URL; set candidate.uri or name the log column "
                "that holds them in candidate_probabilities",
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
        try:
            backend = self.monitoring_backend()
        except UnknownBackendType as exc:  # only a model built without validation gets here
            yield rule_error("monitoring.type", str(exc).removeprefix("spec.monitoring.type: "))
            return
        known = self.known_metrics()
        for index, trigger in enumerate(self.rollback_triggers):
            problem = _missing_capability(trigger, backend)
            if problem is not None:
                yield rule_error(f"rollback_triggers[{index}].{trigger.kind}", problem)
            for metric in trigger.arm_metrics:
                if metric not in known:
                    yield rule_error(
                        f"rollback_triggers[{index}].{trigger.kind}.metric",
                        f"unknown metric {metric!r}; define it in spec.metrics or use one of "
                        f"{', '.join(known)}",
                    )
        yield from self._check_stage_triggers(known)
        yield from self._check_reviews()

    def _check_reviews(self) -> Iterator[PydanticCustomError]:
        """Review triggers and stages' min_reviews judge proposals, which need guardrails.review.

        A router type that cannot hold proposals would leave them waiting for ever.
        """
        wanted = [
            f"rollback_triggers[{i}].review"
            for i, t in enumerate(self.rollback_triggers)
            if t.kind == "review"
        ] + [f"stages[{i}].min_reviews" for i, s in enumerate(self.stages) if s.min_reviews]
        if self.guardrails.review is None:
            for field in wanted:
                yield rule_error(
                    field,
                    "judges reviewers' verdicts on the candidate's proposals, but no action is "
                    "routed to a human; add guardrails.review: {actions: [...]}",
                )
            return
        try:
            router = router_backend(self.router.type)
        except UnknownBackendType:  # reported by the router block's own validation
            return
        if not router.reviews:
            yield rule_error(
                "guardrails.review",
                f"the {router.label} ({router.type}) cannot hold proposals for review; use a "
                "router type that can (the built-in `http` router does) or remove "
                "guardrails.review",
            )

    def _check_stage_triggers(self, known: list[str]) -> Iterator[PydanticCustomError]:
        for index, stage in enumerate(self.stages):
            gate = stage.advance_when
            if gate is not None and gate.non_inferior not in known:
                yield rule_error(
                    f"stages[{index}].advance_when.non_inferior",
                    f"unknown metric {gate.non_inferior!r}; define it in spec.metrics or use one "
                    f"of {', '.join(known)}",
                )
            if gate is not None and stage.mode is StageMode.SHADOW:
                yield rule_error(
                    f"stages[{index}].advance_when",
                    "a shadow stage has no candidate outcomes to show non-inferiority with; "
                    "move advance_when to a split stage",
                )
        for index, stage in enumerate(self.stages):
            if stage.mode is StageMode.OFFLINE:
                continue
            if self.rollback_triggers and not self.triggers_for(stage):
                yield rule_error(f"stages[{index}]", self._unjudged(stage))

    def _check_holdback(self) -> Iterator[PydanticCustomError]:
        """A holdback is checked at least once, named apart, and judged by a comparison.

        Only a trigger that compares the arms can show the new version worse than the held-back
        one; without one the holdback could only end on silence.
        """
        holdback = self.holdback_stage()
        if self.holdback is None or holdback is None:
            return
        if self.holdback.duration < self.check_interval:
            yield rule_error(
                "holdback.duration",
                f"{format_duration(self.holdback.duration)} is shorter than check_interval "
                f"({format_duration(self.check_interval)}), so the holdback would end before "
                "its first check; make it at least as long",
            )
        for index, stage in enumerate(self.stages):
            if stage.name == HOLDBACK_STAGE:
                yield rule_error(
                    f"stages[{index}].name",
                    f"stage name {HOLDBACK_STAGE!r} is the holdback's, which runs after the last "
                    "stage; rename the stage",
                )
        if self.rollback_triggers and not [
            t for t in self.triggers_for(holdback) if t.compares_arms
        ]:
            yield rule_error(
                "holdback",
                "no rollback trigger compares the candidate with the incumbent in split stages, "
                "so the holdback could only end on silence; add one, e.g. {name: reward, "
                "compare: {metric: reward, max_drop: 0.02, relative: true}}, or remove holdback",
            )

    def holdback_stage(self) -> Stage | None:
        """The holdback as the stage it runs as, or None without one.

        A split stage serving the candidate all but the held-back share, which cannot end
        before `duration`: the rollout judges, pauses and promotes it like any other stage.
        """
        if self.holdback is None:
            return None
        return Stage(
            name=HOLDBACK_STAGE,
            mode=StageMode.SPLIT,
            percent=100 - self.holdback.percent,
            min_duration=self.holdback.duration,
        )

    @property
    def course(self) -> list[Stage]:
        """The stages the rollout runs through: the spec's, then the holdback when it has one."""
        holdback = self.holdback_stage()
        return [*self.stages] if holdback is None else [*self.stages, holdback]

    def _unjudged(self, stage: Stage) -> str:
        """Why no trigger judges `stage`, and a fix the spec does not already hold.

        At 100% with no scope, triggers that compare the arms sit out (no incumbent traffic is
        left), so adding the stage's mode to their `modes` would change nothing: the fix is a
        query trigger, or adding the mode to an existing one.
        """
        mode = stage.mode.value
        silence = f"stage {stage.name!r} could only advance on silence"
        comparing = [t.name for t in self.rollback_triggers if stage.mode in t.modes]
        if not comparing:
            return (
                f"no rollback trigger judges {mode} stages, so {silence}; add {mode!r} to a "
                "trigger's `modes`"
            )
        queries = [t.name for t in self.rollback_triggers if t.kind == "threshold"]
        fix = (
            f"add {mode!r} to the `modes` of {', '.join(map(repr, queries))}"
            if queries
            else "add a trigger with `query` and `threshold` (e.g. {name: error-rate, query: "
            "'...', threshold: {above: 0.01}}); it judges shadow and split stages by default"
        )
        return (
            f"the triggers that judge {mode} stages ({', '.join(map(repr, comparing))}) compare "
            "the candidate with the incumbent, and at percent: 100 with no scope no incumbent "
            f"traffic is left to compare with, so {silence}; {fix}"
        )

    def monitoring_backend(self) -> MonitoringBackend:
        """The declaration of the monitoring type: its capabilities and built-in metrics.

        Raises:
            UnknownBackendType: No installed declaration has this type; the message names
                `spec.monitoring.type` and the known types.
        """
        return monitoring_backend(self.monitoring.type)

    def metric(self, name: str) -> ArmMetric:
        """The metric `name`: from spec.metrics, else built in for the monitoring type.

        Raises:
            KeyError: No metric has that name.
        """
        found = self.metrics.get(name) or self.monitoring_backend().metrics.get(name)
        if found is None:
            raise KeyError(name)
        return found

    def known_metrics(self) -> list[str]:
        """Every metric name a trigger or gate may use."""
        return sorted({*self.metrics, *self.monitoring_backend().metrics})

    def trigger_alpha(self, trigger: RollbackTrigger) -> float:
        """The trigger's share of the rollout's alpha (Bonferroni over statistical triggers)."""
        statistical = sum(1 for t in self.rollback_triggers if t.statistical)
        return self.alpha / max(1, statistical)

    def triggers_for(self, stage: Stage) -> list[RollbackTrigger]:
        """The triggers that judge `stage`, in spec order."""
        return [trigger for trigger in self.rollback_triggers if trigger.applies_to(stage)]


class RolloutSpec(SpecModel):
    """A whole rollout spec document (`apiVersion: lockgate/v1`, `kind: Rollout`)."""

    api_version: Literal["lockgate/v1"] = Field(alias="apiVersion")
    """The spec language's version: `lockgate/v1`."""
    kind: Literal["Rollout"]
    """The document kind: `Rollout`."""
    metadata: Metadata
    """The rollout's name, owner and labels."""
    spec: RolloutSpecBody
    """The rollout itself: target, versions, router, monitoring, stages and triggers."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    @property
    def workflow_id(self) -> str:
        """The workflow id; Temporal's id uniqueness is the one-rollout-per-target lock."""
        return workflow_id_for(self.spec.target)


def workflow_id_for(target: str) -> str:
    """The workflow id of the rollout of `target`: the CLI finds a rollout by its target."""
    return f"rollout-{target}"


def _missing_capability(trigger: RollbackTrigger, backend: MonitoringBackend) -> str | None:
    """Why `backend` cannot answer what `trigger` reads, from the backend's own declaration."""
    # Only a refusal reads the other declarations (entry points); a capable backend never does.
    if trigger.kind == "drift" and not backend.by_label:
        capable = [b.label for b in _installed() if b.by_label]
    elif trigger.kind == "shadow" and not backend.pairs:
        capable = [b.label for b in _installed() if b.pairs]
    elif trigger.kind == "segments" and backend.segments is None:
        capable = [b.label for b in _installed() if b.segments is not None]
    elif trigger.kind == "spend" and backend.spend is None:
        capable = [b.label for b in _installed() if b.spend is not None]
    else:
        return None
    reads = {
        "segments": "rewards and decisions by segment",
        "spend": "the spend the router counted",
    }.get(trigger.kind, "decisions by action")
    return (
        f"a {trigger.kind} trigger reads {reads}, which needs "
        f"{' or '.join(capable) or 'capable'} monitoring; the {backend.type} provider "
        f"{backend.answers}"
    )


def _installed() -> list[MonitoringBackend]:
    """The installed monitoring declarations, for naming the ones that can do what is asked."""
    try:
        return list(monitoring_backends().values())
    except BackendDeclarationError:  # a broken plugin must not hide the built-in advice
        from rollout_specs.builtin_backends import PROVIDERS

        return list(PROVIDERS.values())
