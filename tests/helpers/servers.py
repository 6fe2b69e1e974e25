"""Real loopback HTTP servers that stand in for a router and for Prometheus in tests.

Workflow and end-to-end tests run the real activity classes, so they need real sockets to talk
to. Each server binds 127.0.0.1 on a port the OS picks, serves from a background thread, and is a
context manager that shuts the thread down on exit:

    with RouterServer() as router, MetricsServer() as metrics:
        metrics.set("error_rate", 0.001)
        ...  # point the spec's router.url / monitoring.url at router.url / metrics.url

The servers speak HTTP/1.0, so every request uses a fresh connection and a closed server really
refuses the next request instead of serving it on a pooled keep-alive connection.
"""

from __future__ import annotations

import copy
import json
import math
import re
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, Self, cast
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["MetricValue", "MetricsServer", "RouterServer", "WebhookServer", "metric_key"]

START_TIMEOUT: Final = 5.0
"""Seconds a server may take to start serving (or to stop) before the test fails."""

MetricValue = float | str | None
"""A float (one series), None (no data), or one of the special values: "nan", "down", "multi",
"hang", "slow", "drip", "partial" (see MetricsServer)."""

Reply = tuple[int, object]
"""An HTTP status and a JSON-serialisable body."""

_ROUTE_PATH = re.compile(r"^/v1/targets/([^/]+)/route$")
_ROUTE_KEYS = frozenset(
    {"rollout_id", "generation", "incumbent", "candidate", "mode", "percent", "scope", "guardrails"}
)
_MODES = frozenset({"off", "shadow", "split"})
_SPECIAL_VALUES = frozenset({"nan", "down", "multi", "hang", "slow", "drip", "partial"})
SLOW_SECONDS: Final = 30.0
"""By default, how long a "slow" metric takes to answer, and a "drip" one its whole body."""


class _Hung(Exception):
    """Raised by a fake once a request it held open is released: send no answer."""


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, app: _BackgroundServer) -> None:
        self.app = app
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        """Keep per-request lines out of the test output; assertions use the recorded state."""

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        app = cast(_HttpServer, self.server).app
        app.request.headers = dict(self.headers.items())
        try:
            status, payload = app.respond(method, url.path, parse_qs(url.query), body)
        except _Hung:
            return  # the test made this request hang until the server closed: no answer at all
        except Exception:
            # A bug in the fixture must fail the test visibly, not hang the client.
            status, payload = 500, {"detail": traceback.format_exc()}
        data = json.dumps(payload).encode()
        if isinstance(payload, _Dripped):
            self._drip(data, app, payload.seconds)
            return
        try:
            self._send_head(status, len(data))
            self.wfile.write(data)
        except OSError:
            return  # the client gave up first (a deadline does that to a slow answer)

    def _send_head(self, status: int, length: int) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _drip(self, data: bytes, app: _BackgroundServer, seconds: float) -> None:
        """Send `data` a byte at a time over `seconds`: each read is quick, the whole is not."""
        pause = seconds / max(1, len(data))
        try:
            self._send_head(200, len(data))
            for index in range(len(data)):
                self.wfile.write(data[index : index + 1])
                self.wfile.flush()
                if app.released.wait(pause):
                    return
        except OSError:
            return  # the client gave up, as a deadline should make it


class _Dripped(dict[str, object]):
    """A JSON body the handler sends one byte at a time, over `seconds`."""

    def __init__(self, body: dict[str, object], seconds: float) -> None:
        super().__init__(body)
        self.seconds = seconds


class _BackgroundServer:
    """Threaded server lifecycle plus the `refuse_next` control every fake shares."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refusals = 0
        self._refusal_status = 503
        self._closed = False
        self.request = threading.local()
        """The request being answered on this thread (`headers`), for fakes that check them."""
        self.required_headers: dict[str, str] = {}
        """Headers every request must carry (e.g. Authorization), else 401."""
        self.echo_headers = False
        """When on, every refusal quotes the request's headers back (a careless backend)."""
        self._released = threading.Event()
        """Set on close: requests the test made hang give up then (no answer is sent)."""
        self._started = threading.Event()
        self._httpd = _HttpServer(self)
        self._thread = threading.Thread(
            target=self._serve, name=f"{type(self).__name__}-{self.port}", daemon=True
        )
        self._thread.start()
        if not self._started.wait(START_TIMEOUT):
            self._httpd.server_close()
            raise RuntimeError(f"{type(self).__name__} did not start within {START_TIMEOUT}s")

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:43817 (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    def refuse_next(self, n: int, status: int = 503) -> None:
        """Answer the next `n` requests, of any method and path, with `status`."""
        if n < 0:
            raise ValueError(f"n is {n}; refuse a non-negative number of requests")
        with self._lock:
            self._refusals = n
            self._refusal_status = status

    def close(self) -> None:
        """Stop serving, release the port and join the thread; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._released.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(START_TIMEOUT)
        if self._thread.is_alive():
            raise RuntimeError(f"{type(self).__name__} did not stop within {START_TIMEOUT}s")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def respond(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> Reply:
        """Answer one request; called from the server's request threads."""
        headers = {k.lower(): v for k, v in getattr(self.request, "headers", {}).items()}
        missing = [k for k, v in self.required_headers.items() if headers.get(k.lower()) != v]
        if missing:
            return 401, self._error_body(f"missing or wrong credentials: {', '.join(missing)}")
        with self._lock:
            if self._refusals > 0:
                self._refusals -= 1
                message = (
                    f"{type(self).__name__} refusing {method} {path} as the test asked "
                    f"({self._refusals} more to refuse)"
                )
                if self.echo_headers:
                    message += f"; request headers: {getattr(self.request, 'headers', {})}"
                return self._refusal_status, self._error_body(message)
        return self._handle(method, path, query, body)

    def _handle(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> Reply:
        raise NotImplementedError

    @property
    def released(self) -> threading.Event:
        """Set when the server closes: whatever the test held open lets go then."""
        return self._released

    def _hang(self) -> None:
        """Hold the request open, unanswered, until the server closes."""
        self._released.wait()
        raise _Hung

    def _error_body(self, message: str) -> object:
        return {"detail": message}

    def _serve(self) -> None:
        self._started.set()
        self._httpd.serve_forever(poll_interval=0.05)


class RouterServer(_BackgroundServer):
    """The gateway's side of the router contract, with switches for failure tests.

    `PUT /v1/targets/{target}/route` stores the route: an older generation than the stored one is
    refused with 409, the same generation is acknowledged with the stored route (idempotent), a
    newer one is stored, recorded in `history`, and echoed. `GET` answers the stored route or 404.
    """

    def __init__(self) -> None:
        self._routes: dict[str, dict[str, Any]] = {}
        self._history: list[dict[str, Any]] = []
        self._stored_at: list[tuple[float, str]] = []
        self._corrupt_reads = False
        self._hung_modes: frozenset[str] = frozenset()
        super().__init__()

    @property
    def history(self) -> list[dict[str, Any]]:
        """Copies of every stored route body, oldest first (idempotent repeats not included)."""
        with self._lock:
            return copy.deepcopy(self._history)

    @property
    def timed_history(self) -> list[tuple[float, str, dict[str, Any]]]:
        """`history` as (`time.monotonic()` when stored, target, route), oldest first."""
        with self._lock:
            routes = copy.deepcopy(self._history)
            return [(at, t, r) for (at, t), r in zip(self._stored_at, routes, strict=True)]

    def current(self, target: str) -> dict[str, Any] | None:
        """A copy of the route stored for `target`, or None."""
        with self._lock:
            return copy.deepcopy(self._routes.get(target))

    def hang_puts(self, *modes: str) -> None:
        """PUTs of these route modes get no answer (a router stuck mid-change) until close."""
        with self._lock:
            self._hung_modes = frozenset(modes)

    def impose(self, target: str, route: dict[str, Any]) -> None:
        """Store `route` as another writer would, whatever its generation (a takeover)."""
        with self._lock:
            self._routes[target] = copy.deepcopy(route)

    def drop(self, target: str) -> None:
        """Forget `target`'s route, as an operator clearing a stray writer would."""
        with self._lock:
            self._routes.pop(target, None)

    def corrupt_reads(self, value: bool) -> None:
        """While on, GET answers the stored route with a different percent (a lying router)."""
        with self._lock:
            self._corrupt_reads = value

    def _handle(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> Reply:
        match = _ROUTE_PATH.match(path)
        if match is None:
            return 404, {"detail": f"no such path {path}; routes live at /v1/targets/<t>/route"}
        target = unquote(match[1])
        if method == "GET":
            return self._get(target)
        if method == "PUT":
            return self._put(target, body)
        return 405, {"detail": f"{method} is not allowed; use GET or PUT"}

    def _get(self, target: str) -> Reply:
        with self._lock:
            route = copy.deepcopy(self._routes.get(target))
            corrupt = self._corrupt_reads
        if route is None:
            return 404, {"detail": f"target {target} has no route"}
        if corrupt:
            route["percent"] = route["percent"] + 1 if route["percent"] < 100 else 99
        return 200, route

    def _put(self, target: str, body: bytes) -> Reply:
        try:
            route = json.loads(body)
        except ValueError:
            return 400, {"detail": "the body is not JSON"}
        problem = _route_problem(route)
        if problem is not None:
            return 422, {"detail": problem}
        with self._lock:
            hung = route["mode"] in self._hung_modes
        if hung:
            self._hang()
        with self._lock:
            stored = self._routes.get(target)
            if stored is not None and route["generation"] < stored["generation"]:
                return 409, {
                    "detail": (
                        f"target {target} holds generation {stored['generation']} "
                        f"(rollout {stored['rollout_id']}); refusing older generation "
                        f"{route['generation']}"
                    )
                }
            if stored is not None and route["generation"] == stored["generation"]:
                return 200, copy.deepcopy(stored)
            self._routes[target] = route
            self._history.append(copy.deepcopy(route))
            self._stored_at.append((time.monotonic(), target))
            return 200, copy.deepcopy(route)


def _route_problem(route: object) -> str | None:
    if not isinstance(route, dict):
        return "the body must be a JSON object"
    missing = sorted(_ROUTE_KEYS - route.keys())
    if missing:
        return f"the route lacks {', '.join(missing)}"
    generation = route["generation"]
    if isinstance(generation, bool) or not isinstance(generation, int) or generation < 1:
        return f"generation must be an integer >= 1, not {generation!r}"
    if route["mode"] not in _MODES:
        return f"mode must be one of {sorted(_MODES)}, not {route['mode']!r}"
    percent = route["percent"]
    if isinstance(percent, bool) or not isinstance(percent, int | float) or not 0 <= percent <= 100:
        return f"percent must be a number from 0 to 100, not {percent!r}"
    return None


class MetricsServer(_BackgroundServer):
    """A Prometheus instant-query API (and a plain JSON endpoint) answering from a table.

    A query is looked up by its metric key: the text before the first `{` or `(`, stripped, so
    `error_rate{target="ranker"}` reads the value set for `error_rate`. Values are a float (one
    series with that value), None (no series), "nan" (a NaN sample), "down" (503), "multi"
    (two series), "hang" (no answer until the server closes), "slow" (the answer after
    `slow_seconds`), "drip" (a 0 sent a byte at a time over `slow_seconds`) or "partial" (a 0 with
    a partial-response warning). An unset metric answers like None.

    `GET /api/v1/query?query=...` answers in Prometheus's JSON format. `GET /v1/stats?query=...`
    answers `{"value": <number or null>}` from the same table ("multi" gives a list there).
    """

    def __init__(self, slow_seconds: float = SLOW_SECONDS) -> None:
        self._values: dict[str, MetricValue] = {}
        self._queries: list[str] = []
        self.slow_seconds = slow_seconds
        """How long a "slow" metric takes to answer, and a "drip" one its whole body."""
        super().__init__()

    @property
    def queries(self) -> list[str]:
        """Every query received on either endpoint, oldest first."""
        with self._lock:
            return list(self._queries)

    def set(self, metric: str, value: MetricValue) -> None:
        """Make queries whose metric key is `metric` answer `value` from now on."""
        key = metric.strip()
        if not key or "{" in key or "(" in key:
            raise ValueError(f"metric key {metric!r} must be a bare name such as error_rate")
        if isinstance(value, str) and value not in _SPECIAL_VALUES:
            raise ValueError(f"value {value!r} must be a float, None, or one of {_SPECIAL_VALUES}")
        with self._lock:
            self._values[key] = value

    def _handle(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> Reply:
        if method != "GET":
            return 405, self._error_body(f"{method} is not supported here; use GET")
        if path not in ("/api/v1/query", "/v1/stats"):
            return 404, self._error_body(f"no such path {path}")
        texts = query.get("query")
        if not texts or not texts[0].strip():
            return 400, self._error_body('invalid parameter "query": the query is missing')
        text = texts[0]
        with self._lock:
            self._queries.append(text)
            value = self._values.get(metric_key(text))
        if value == "down":
            return 503, self._error_body(f"the test marked {metric_key(text)!r} down")
        if value == "hang":
            self._hang()
        if value == "slow" and self._released.wait(self.slow_seconds):
            raise _Hung
        if path == "/v1/stats":
            return 200, {"value": _stats_value(value)}
        answer: dict[str, object] = {"status": "success", "data": _vector(value)}
        if value == "drip":
            return 200, _Dripped(answer, self.slow_seconds)
        if value == "partial":  # what a Prometheus behind a federating proxy says of a gap
            answer["warnings"] = ["partial response: 1 of 3 stores did not answer"]
        return 200, answer

    def _error_body(self, message: str) -> object:
        return {"status": "error", "errorType": "unavailable", "error": message}


def metric_key(query: str) -> str:
    """The table key of `query`: its text before the first `{` or `(`, stripped."""
    return re.split(r"[{(]", query, maxsplit=1)[0].strip()


def _vector(value: MetricValue) -> dict[str, object]:
    now = round(time.time(), 3)
    if value is None:
        series: list[dict[str, object]] = []
    elif value == "multi":
        series = [
            {"metric": {"arm": "incumbent"}, "value": [now, "1"]},
            {"metric": {"arm": "candidate"}, "value": [now, "2"]},
        ]
    elif value == "nan":
        series = [{"metric": {}, "value": [now, "NaN"]}]
    elif value in ("drip", "partial", "slow"):
        series = [{"metric": {}, "value": [now, "0"]}]  # a healthy-looking 0
    else:
        series = [{"metric": {}, "value": [now, _prometheus_number(float(value))]}]
    return {"resultType": "vector", "result": series}


def _stats_value(value: MetricValue) -> object:
    if value in ("drip", "partial", "slow"):
        return 0.0
    if value == "multi":
        return [1.0, 2.0]
    if value == "nan":
        return math.nan
    return value


def _prometheus_number(value: float) -> str:
    """Prometheus's spelling of a sample value (`NaN`, `+Inf`, `-Inf`, `0.25`)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


class WebhookServer(_BackgroundServer):
    """A webhook receiver (a Slack-style incoming hook): keeps every JSON body POSTed to it.

    `refuse_next(n, 500)` makes it fail deliveries, to show a broken hook never delays a
    rollout; refused deliveries are counted in `refused` but not kept.
    """

    def __init__(self) -> None:
        self._received: list[dict[str, Any]] = []
        self.refused = 0
        super().__init__()

    @property
    def received(self) -> list[dict[str, Any]]:
        """Every accepted body, oldest first."""
        with self._lock:
            return copy.deepcopy(self._received)

    def events(self) -> list[str]:
        """The `event` field of every accepted body, oldest first."""
        return [str(body.get("event")) for body in self.received]

    def respond(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> Reply:
        with self._lock:
            if self._refusals > 0:
                self.refused += 1
        return super().respond(method, path, query, body)

    def _handle(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> Reply:
        if method != "POST":
            return 405, self._error_body(f"{method} is not supported here; POST JSON")
        try:
            document = json.loads(body)
        except ValueError:
            return 400, self._error_body("the body is not JSON")
        if not isinstance(document, dict) or not isinstance(document.get("text"), str):
            return 400, self._error_body("a Slack-compatible body needs a `text` string")
        with self._lock:
            self._received.append(document)
        return 200, {"ok": True}
