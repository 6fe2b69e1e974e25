"""The notification activity: tell a webhook what a rollout just did.

A notification is a courtesy, never a gate: the workflow starts it beside the rollout and does not
wait for it. A webhook that answers 5xx, 429 or not at all is retried by the workflow's retry
policy; one that answers another 4xx will never accept this body, so that is final at once.
"""

from __future__ import annotations

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import NOTIFY, Notification
from activities.credentials import auth_headers, read_secret
from activities.errors import MissingCredential
from activities.http_boundary import Unreachable, excerpt, send

__all__ = ["NotifyActivities", "webhook_body"]


def webhook_body(notification: Notification) -> dict[str, str | None]:
    """The JSON body: `text` for Slack-compatible hooks, the fields for everything else."""
    return {
        "text": notification.text,
        "event": notification.event.value,
        "target": notification.target,
        "rollout": notification.rollout,
        "stage": notification.stage,
        "phase": notification.phase,
        "at": notification.at.isoformat(),
    }


class NotifyActivities:
    """Delivers rollout events to webhooks over the worker's shared HTTP client."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    @activity.defn(name=NOTIFY)
    async def notify(self, notification: Notification) -> None:
        """POST the event; raise (retryably unless the hook refuses the body) when not accepted."""
        webhook = notification.webhook
        where = webhook.describe()
        try:
            url = read_secret(webhook.url_from) if webhook.url_from else webhook.url
            headers = auth_headers(webhook.auth)
        except MissingCredential as exc:
            raise ApplicationError(f"webhook {where}: {exc}", type="WebhookDown") from None
        assert url is not None
        timeout = webhook.timeout.total_seconds()
        try:
            response = await send(
                self._client, "POST", url, json=webhook_body(notification), deadline=timeout,
                headers=headers,
            )  # fmt: skip
        except Unreachable as exc:
            raise ApplicationError(f"webhook {where} {exc}", type="WebhookDown") from None
        if response.is_success:
            activity.logger.info("notified %s of %s", where, notification.event.value)
            return
        status = response.status_code
        final = 400 <= status < 500 and status not in (408, 429)
        raise ApplicationError(
            f"webhook {where} answered {status}: {excerpt(response.text)}",
            type="WebhookRefused" if final else "WebhookDown",
            non_retryable=final,
        )
