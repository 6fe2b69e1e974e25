"""A traffic router that speaks lockgate's HTTP route contract.

`PUT {url}/v1/targets/{target}/route` applies a route and answers with the route applied; the
same generation twice is a no-op and an older generation is refused with 409. `GET` on the same
path answers the route applied now, or 404 when the target has none.

Only the read is retried here. A PUT that fails is reported at once and retried by Temporal,
whose history records each attempt; that is safe because the router is idempotent per generation,
and every change is read back afterwards anyway.

The review endpoints (guardrails.review) follow the same rules: `GET {url}/v1/targets/{target}/
reviews?limit=N` lists the pending proposals (a read, retried briefly), `POST .../reviews/{id}`
records a verdict (a write, sent once: 404 is an unknown proposal, 409 one already judged).
"""

from __future__ import annotations

from urllib.parse import quote

import httpx
from pydantic import ValidationError

from activities.contracts import Route
from activities.credentials import auth_headers
from activities.errors import RouteConflict, RouterError, RouterUnavailable
from activities.http_boundary import READ_RETRIES, Ladder, ReadRetries, excerpt, request
from activities.reviews import PendingProposals, RecordedVerdict, Verdict
from rollout_specs import HttpRouter

__all__ = ["HttpTrafficRouter"]


class HttpTrafficRouter:
    """Sets and reads a target's route on a router that implements the HTTP contract.

    Built by the backend registry around the worker's shared client; unit tests pass a client
    over `httpx.MockTransport`.
    """

    def __init__(
        self,
        config: HttpRouter,
        client: httpx.AsyncClient,
        *,
        read_retries: ReadRetries = READ_RETRIES,
    ) -> None:
        self._base = config.url.rstrip("/")
        self._timeout = config.timeout.total_seconds()
        self._client = client
        self._retries = read_retries
        self._auth = config.auth

    async def put_route(self, target: str, route: Route) -> Route:
        """Apply `route` to `target`, once; Temporal owns the retries of this write.

        Args:
            target: The policy slot whose traffic moves.
            route: The route to apply; its generation orders it against earlier changes.

        Returns:
            The route as the router acknowledged it (for the same generation sent twice, the
            route it already held).

        Raises:
            RouteConflict: The router holds a newer generation (409); its detail says which.
            RouterUnavailable: The router could not be reached, timed out, or answered 5xx.
            RouterError: The router refused the route (another 4xx) or answered something that
                is not a route.
        """
        url = self._route_url(target)
        response = await request(
            self._client, "PUT", url, ladder=self._ladder(url, f"generation {route.generation}"),
            json=route.model_dump(mode="json"), deadline=self._timeout,
            headers=auth_headers(self._auth), passes=(409,),
        )  # fmt: skip
        if response.status_code == 409:
            raise RouteConflict(
                f"router at {url} refused generation {route.generation} of rollout "
                f"{route.rollout_id!r} for target {target!r} (HTTP 409: {_detail(response)}); "
                "a newer change owns the route, so this one must not be applied"
            )
        return self._parse(response, url)

    async def get_route(self, target: str) -> Route | None:
        """Read the route `target` has now, retrying briefly since a read is harmless to repeat.

        Args:
            target: The policy slot to read.

        Returns:
            The applied route, or None when the router has no route for `target` (404).

        Raises:
            RouterUnavailable: The router could not be reached, timed out, or answered 5xx on
                every attempt.
            RouterError: The router refused the read (a 4xx other than 404) or answered
                something that is not a route.
        """
        url = self._route_url(target)
        response = await request(
            self._client, "GET", url, ladder=self._ladder(url, "the read"),
            deadline=self._timeout, retries=self._retries, headers=auth_headers(self._auth),
            passes=(404,),
        )  # fmt: skip
        if response.status_code == 404:
            return None
        return self._parse(response, url)

    async def pending_reviews(self, target: str, limit: int) -> PendingProposals:
        """The target's oldest `limit` pending proposals; a read, so retried briefly.

        Raises:
            RouterUnavailable: The router could not be reached, timed out, or answered 5xx on
                every attempt.
            RouterError: The router refused the read or answered something that is not a list
                of proposals.
        """
        url = self._reviews_url(target)
        response = await request(
            self._client, "GET", url, ladder=self._ladder(url, "the list of proposals"),
            deadline=self._timeout, retries=self._retries, headers=auth_headers(self._auth),
            params={"limit": str(limit)},
        )  # fmt: skip
        try:
            return PendingProposals.model_validate(response.json())
        except ValueError as exc:
            raise RouterError(
                f"router at {url} answered with something that is not a list of proposals "
                f"({_problems(exc)}); check that router.url implements the review endpoints"
            ) from exc

    async def record_review(
        self, target: str, proposal_id: str, verdict: Verdict, actor: str, reason: str
    ) -> RecordedVerdict:
        """Record a verdict on one proposal, once; Temporal owns the retries of this write.

        A 409 that names this very verdict by this very actor is the answer to a retry whose
        first attempt landed, and counts as recorded; any other 409 is a refusal.

        Raises:
            RouterUnavailable: The router could not be reached, timed out, or answered 5xx.
            RouterError: No such proposal (404), already judged by someone else (409), or the
                verdict was refused (another 4xx) or acknowledged with something unreadable.
        """
        url = f"{self._reviews_url(target)}/{quote(proposal_id, safe='')}"
        body = {"verdict": verdict.value, "actor": actor, "reason": reason}
        response = await request(
            self._client, "POST", url, ladder=self._ladder(url, f"the verdict on {proposal_id}"),
            json=body, deadline=self._timeout, headers=auth_headers(self._auth),
            passes=(404, 409),
        )  # fmt: skip
        if response.status_code == 404:
            raise RouterError(
                f"no proposal {proposal_id!r} is waiting for target {target!r} at the router "
                f"({_detail(response)}); `lockgate review {target}` lists the pending ones"
            )
        if response.status_code == 409:
            earlier = _earlier_verdict(response)
            if earlier is not None and earlier.verdict is verdict and earlier.actor == actor:
                return earlier
            raise RouterError(f"{_detail(response)}; a proposal takes one verdict")
        try:
            answer = response.json()
            if not isinstance(answer, dict):
                raise ValueError(f"a JSON {type(answer).__name__}, not an object")
            # The answer is the proposal with its verdict: both models read it.
            return RecordedVerdict.model_validate({**answer, "proposal": answer})
        except ValueError as exc:
            raise RouterError(
                f"router at {url} acknowledged the verdict with something unreadable "
                f"({_problems(exc)}); the verdict may be recorded there: check `lockgate review` "
                "before judging it again"
            ) from exc

    def _route_url(self, target: str) -> str:
        return f"{self._base}/v1/targets/{quote(target, safe='')}/route"

    def _reviews_url(self, target: str) -> str:
        return f"{self._base}/v1/targets/{quote(target, safe='')}/reviews"

    def _ladder(self, url: str, what: str) -> Ladder:
        return Ladder(
            who=f"router at {url}",
            unavailable=RouterUnavailable,
            refused=RouterError,
            slow_fix="check the router, or raise router.timeout",
            down_fix="check router.url and that the router is up",
            server_error=lambda response: (
                f"router at {url} failed {what} with HTTP {response.status_code} "
                f"({_detail(response)})"
            ),
            refusal=lambda response: (
                f"router at {url} refused {what} with HTTP {response.status_code} "
                f"({_detail(response)})"
            ),
        )

    def _parse(self, response: httpx.Response, url: str) -> Route:
        try:
            return Route.model_validate(response.json())
        except ValueError as exc:  # JSONDecodeError and pydantic's ValidationError alike
            raise RouterError(
                f"router at {url} answered with something that is not a route "
                f"({_problems(exc)}); check that router.url implements lockgate's route contract"
            ) from exc


def _detail(response: httpx.Response) -> str:
    """The router's `detail` text, which names the generation it holds on a 409."""
    try:
        body: object = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return excerpt(response.text) or "empty body"


def _earlier_verdict(response: httpx.Response) -> RecordedVerdict | None:
    """The verdict a 409 names (`verdict`, `actor`, `reason`), or None when it names none."""
    try:
        return RecordedVerdict.model_validate(response.json())
    except ValueError:
        return None


def _problems(exc: ValueError) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
            for error in exc.errors(include_url=False)
        )
    return f"not JSON: {exc}"
