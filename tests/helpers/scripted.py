"""A scripted httpx transport for unit tests of one backend (httpx.MockTransport's handler)."""

from __future__ import annotations

import dataclasses

import httpx

from activities.http_boundary import READ_RETRIES

Reply = httpx.Response | httpx.HTTPError

NO_WAIT = dataclasses.replace(READ_RETRIES, first_wait=0, max_wait=0)
"""The production read-retry policy without its waits: same attempts, no sleeping in tests."""


class Scripted:
    """Answers requests with the scripted replies in order, repeating the last one."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.requests: list[httpx.Request] = []

    def script(self, *replies: Reply) -> None:
        self.replies = list(replies)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        if isinstance(reply, httpx.HTTPError):
            raise reply
        return httpx.Response(reply.status_code, headers=reply.headers, content=reply.content)
