"""The rollout spec language: models, loader and examples. Imports only pydantic, pyyaml, stdlib."""

from rollout_specs.durations import Duration, format_duration, parse_duration
from rollout_specs.loader import SpecError, dump_schema, load_spec, parse_spec
from rollout_specs.models import (
    API_VERSION,
    Guardrails,
    HttpMonitoring,
    HttpRouter,
    Metadata,
    MissingDataPolicy,
    MonitoringConfig,
    PolicyVersion,
    PrometheusMonitoring,
    RollbackTrigger,
    RolloutSpec,
    RolloutSpecBody,
    RouterConfig,
    Stage,
    StageMode,
    Threshold,
    workflow_id_for,
)
from rollout_specs.templates import TEMPLATE_VARIABLES, TemplateError, render

__all__ = [
    "API_VERSION",
    "TEMPLATE_VARIABLES",
    "Duration",
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
    "SpecError",
    "Stage",
    "StageMode",
    "TemplateError",
    "Threshold",
    "dump_schema",
    "format_duration",
    "load_spec",
    "parse_duration",
    "parse_spec",
    "render",
    "workflow_id_for",
]
