"""Deterministic orchestration of rollouts. Only constants live here."""

TASK_QUEUE = "lockgate"
"""Default task queue of the worker and the CLI."""
WORKFLOW_NAME = "Rollout"
"""The workflow type; stable across Python renames so running rollouts keep replaying."""
