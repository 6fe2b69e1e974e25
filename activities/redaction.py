"""One redaction function for every text that leaves the worker: errors, verdicts and logs.

Secrets reach the worker only by reference (`auth` blocks name an environment variable or a
file); the values it reads are remembered here, and `redact` replaces them, and any
`user:password@` in a URL, wherever they appear. A hostile or careless backend may echo a
request's `Authorization` header in its error body; that text passes through here before it
reaches an exception, a verdict, the workflow history, a webhook or a log line.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from temporalio.exceptions import ApplicationError
from temporalio.exceptions import CancelledError as FailureCancelledError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

__all__ = [
    "REDACTED",
    "RedactingFilter",
    "RedactingInterceptor",
    "forget_all",
    "redact",
    "redact_value",
    "remember",
]

REDACTED = "[redacted]"
MIN_SECRET_LENGTH = 4
"""Shorter values are not remembered: replacing every `abc` in every message helps nobody."""
_USERINFO = re.compile(r"(?<=://)[^/@\s\"'<>]+@")

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def remember(secret: str) -> None:
    """Redact `secret` from everything from now on (the worker calls it as it reads secrets)."""
    global _pattern
    if len(secret) < MIN_SECRET_LENGTH:
        return
    with _lock:
        if secret in _secrets:
            return
        _secrets.add(secret)
        ordered = sorted(_secrets, key=len, reverse=True)  # a secret inside another: longest first
        _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def forget_all() -> None:
    """Forget every remembered secret (tests that need a clean slate)."""
    global _pattern
    with _lock:
        _secrets.clear()
        _pattern = None


def redact(text: str) -> str:
    """`text` with every remembered secret and every URL's `user:password@` replaced."""
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    return _USERINFO.sub(f"{REDACTED}@", text)


def redact_value(value: Any) -> Any:
    """`value` with `redact` applied to every string inside it (dicts, lists, tuples)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {key: redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(item) for item in value)
    return value


class RedactingFilter(logging.Filter):
    """A logging filter that redacts a record's message and traceback before any handler.

    Installed on the worker's handlers, so a secret echoed into an exception is not written to
    the service's log either.
    """

    def __init__(self) -> None:
        super().__init__()
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the message and its traceback now, redacted; keep the record."""
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = redact(self._formatter.formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class RedactingInterceptor(Interceptor):
    """Passes every activity's result and error through `redact` before Temporal records it.

    The one place where text leaves an activity for the workflow's history (and from there the
    status, the UI, webhooks and reports): an error is re-raised as an ApplicationError with a
    redacted message and no chained cause (a cause's text and traceback would be recorded too),
    keeping its type and retry semantics.
    """

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        """Wrap every activity of the worker."""
        return _RedactingActivity(next)


class _RedactingActivity(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            result = await super().execute_activity(input)
        except (asyncio.CancelledError, FailureCancelledError):
            raise
        except ApplicationError as exc:
            raise ApplicationError(
                redact(exc.message),
                *redact_value(list(exc.details)),
                type=exc.type,
                non_retryable=exc.non_retryable,
                next_retry_delay=exc.next_retry_delay,
                category=exc.category,
            ) from None
        except Exception as exc:
            raise ApplicationError(redact(str(exc)), type=type(exc).__name__) from None
        if isinstance(result, BaseModel):
            return type(result).model_validate(redact_value(result.model_dump()))
        return result
