"""The offline gate's activity: judge a candidate on the incumbent's decision log, once.

It reads the log (JSON Lines or Parquet), gets the candidate's probabilities in every logged
context (from a column of the log, or from the candidate's policy server in batches), and hands
both to `analysis.offline.evaluate`. A Parquet log (a file, or a directory of files) with the
candidate's probabilities in a column is streamed instead (`evaluate_batches`, two passes of
record batches), so its memory does not grow with its length; JSON Lines logs and logs scored
by a policy server are read whole. Like every judge in lockgate it runs in an activity, so the
verdict is recorded in the workflow's history and a better estimator never breaks a replay.

Bad input is never an exception and never a pass: a missing or malformed log, a candidate
without a policy server, a server that answers nonsense, and every refusal of the estimators
(no exploration, no support, too small an effective sample, broken propensities) come back as
an ERROR verdict whose detail says what is wrong and how to fix it.

The work is CPU-heavy (a million rows), so it runs in a thread (`asyncio.to_thread`) while the
event loop keeps heartbeating: a worker busy with a large log still looks alive to Temporal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import numpy.typing as npt
from temporalio import activity

from activities.contracts import (
    OFFLINE_EVAL,
    Evidence,
    OfflineEvalInput,
    Outcome,
    TriggerVerdict,
)
from activities.decision_log import (
    DecisionLog,
    check_probabilities,
    is_streamable,
    read_decision_log,
    stream_decision_log,
)
from activities.http_boundary import READ_RETRIES, ReadRetries, Unreachable, send
from analysis.offline import GateRule, OfflineEvaluation, evaluate, evaluate_batches
from rollout_specs import OfflineEval, PolicyVersion, Threshold

__all__ = ["CandidateScoringError", "OfflineEvalActivities"]

T = TypeVar("T")
FloatArray = npt.NDArray[np.float64]


class CandidateScoringError(Exception):
    """Raised when the candidate's probabilities cannot be had from its policy server."""


class OfflineEvalActivities:
    """Off-policy evaluation of candidates, around one shared HTTP client.

    Args:
        client: The worker's pooled HTTP client (for the candidate's policy server).
        batch_size: Contexts per `POST /act` batch request.
        concurrency: Batch requests in flight at once.
        heartbeat_every: Seconds between heartbeats while a step runs in a thread.
        retries: In-call retries of one batch on connection errors and 5xx (scoring is a pure
            read, so repeating it is safe); Temporal's retry policy stays the durable layer.
        timeout: Seconds allowed for each batch request, its in-call retries included.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        batch_size: int = 2000,
        concurrency: int = 4,
        heartbeat_every: float = 2.0,
        retries: ReadRetries = READ_RETRIES,
        timeout: float = 30.0,
    ) -> None:
        if batch_size < 1 or concurrency < 1:
            raise ValueError("batch_size and concurrency must be at least 1")
        self._client = client
        self._batch_size = batch_size
        self._concurrency = concurrency
        self._heartbeat_every = heartbeat_every
        self._retries = retries
        self._timeout = timeout

    @activity.defn(name=OFFLINE_EVAL)
    async def offline_eval(self, request: OfflineEvalInput) -> TriggerVerdict:
        """Judge the candidate against the incumbent on the logged decisions.

        PASS and FAIL judge the gate; INCONCLUSIVE when the interval straddles the margin; ERROR
        when lockgate refuses to judge. Never raises for bad input.
        """
        offline = request.offline
        label = f"offline {offline.estimator.value} on {offline.log}"
        threshold = Threshold(below=-offline.max_regression)
        try:
            evaluation = await self._evaluate(request)
        except (ValueError, CandidateScoringError) as exc:  # DecisionLogError is a ValueError
            activity.logger.info("offline eval %s: error (%s)", request.stage, exc)
            return TriggerVerdict(
                trigger=OFFLINE_EVAL,
                outcome=Outcome.ERROR,
                threshold=threshold,
                query=label,
                detail=f"{type(exc).__name__}: {exc}",
            )
        verdict = _verdict(evaluation, threshold, label)
        activity.logger.info(
            "offline eval %s: %s (%s)", request.stage, verdict.outcome.value, verdict.detail
        )
        return verdict

    async def _evaluate(self, request: OfflineEvalInput) -> OfflineEvaluation:
        offline = request.offline
        path, column = Path(offline.log), offline.candidate_probabilities
        if column is not None and is_streamable(path):
            stream = await self._working(
                f"opening {offline.log}", asyncio.to_thread(stream_decision_log, path, column)
            )
            return await self._working(
                f"estimating over {offline.log} (streamed)",
                asyncio.to_thread(evaluate_batches, stream.batches, _rule(offline)),
            )
        log = await self._working(
            f"reading {offline.log}",
            asyncio.to_thread(
                read_decision_log, Path(offline.log), offline.candidate_probabilities
            ),
        )
        if log.candidate is not None:
            candidate, actions = log.candidate, log.candidate_actions
        else:
            candidate, actions = await self._score(log, request.candidate)
        return await self._working(
            f"estimating over {log.rows} rows",
            asyncio.to_thread(evaluate, log.decisions, candidate, actions, _rule(offline)),
        )

    async def _working(self, step: str, work: Awaitable[T]) -> T:
        """Await `work`, heartbeating every `heartbeat_every` seconds until it is done."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                activity.heartbeat(step)
                done, _ = await asyncio.wait({task}, timeout=self._heartbeat_every)
                if done:
                    return task.result()
        except asyncio.CancelledError:
            task.cancel()
            raise

    async def _score(
        self, log: DecisionLog, candidate: PolicyVersion
    ) -> tuple[FloatArray, tuple[str, ...]]:
        """The candidate's probabilities in every logged context, from its policy server."""
        uri = candidate.uri
        if uri is None or not uri.startswith(("http://", "https://")):
            raise CandidateScoringError(
                f"candidate {candidate.version} has no policy server URL (uri: {uri!r}); set "
                "candidate.uri to its policy server (http://host:port, serving POST /act) or "
                "name the log's column of candidate probabilities in "
                "offline_eval.candidate_probabilities"
            )
        scorer = _Scorer(
            self._client,
            f"{uri.rstrip('/')}/act",
            candidate.version,
            log,
            batch_size=self._batch_size,
            retries=self._retries,
            timeout=self._timeout,
        )
        return await scorer.run(self._concurrency)


class _Scorer:
    """Scores one log against one policy server: batches, a few in flight, in row order."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str,
        version: str,
        log: DecisionLog,
        *,
        batch_size: int,
        retries: ReadRetries,
        timeout: float,
    ) -> None:
        self.client = client
        self.url = url
        self.version = version
        self.log = log
        self.retries = retries
        self.timeout = timeout
        size = batch_size
        self.batches = [(start, min(start + size, log.rows)) for start in range(0, log.rows, size)]
        self.results: list[dict[str, FloatArray]] = [{} for _ in self.batches]
        self.next_batch = 0
        self.scored = 0

    async def run(self, concurrency: int) -> tuple[FloatArray, tuple[str, ...]]:
        """Every row's probabilities (columns: actions in the server's order) and the actions."""
        workers = min(concurrency, len(self.batches))
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(workers):
                    group.create_task(self._work())
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None
        actions: list[str] = []
        for columns in self.results:
            actions.extend(a for a in columns if a not in actions)
        matrix = np.zeros((self.log.rows, len(actions)))
        for (start, stop), columns in zip(self.batches, self.results, strict=True):
            for index, action in enumerate(actions):
                if action in columns:
                    matrix[start:stop, index] = columns[action]
        return matrix, tuple(actions)

    async def _work(self) -> None:
        while self.next_batch < len(self.batches):
            index = self.next_batch
            self.next_batch += 1
            start, stop = self.batches[index]
            self.results[index] = await self._batch(start, stop)
            self.scored += stop - start
            activity.heartbeat(f"scored {self.scored} of {self.log.rows} rows at {self.url}")

    async def _batch(self, start: int, stop: int) -> dict[str, FloatArray]:
        where = f"candidate policy server {self.url} (rows {start + 1}-{stop})"
        response = await self._post({"contexts": self.log.context_batch(start, stop)}, where)
        if response.status_code != 200:
            raise CandidateScoringError(f"{where} answered HTTP {response.status_code}: "
                                        f"{response.text[:300]}")  # fmt: skip
        try:
            body = response.json()
        except ValueError as exc:
            raise CandidateScoringError(f"{where} answered with a body that is not JSON") from exc
        rows = body.get("probabilities") if isinstance(body, dict) else None
        if not isinstance(rows, list) or len(rows) != stop - start:
            raise CandidateScoringError(
                f'{where} did not answer {{"probabilities": [...]}} with one entry per context; '
                "is it a lockgate policy server (POST /act, batch form)?"
            )
        if body.get("version") != self.version:
            raise CandidateScoringError(
                f"{where} serves version {body.get('version')!r}, not the candidate's "
                f"{self.version!r}; point candidate.uri at the candidate's policy server"
            )
        return self._columns(rows, where, start)

    def _columns(self, rows: list[Any], where: str, start: int) -> dict[str, FloatArray]:
        if not all(isinstance(row, dict) for row in rows):
            raise CandidateScoringError(f"{where}: every probabilities entry must be an object")
        actions: list[str] = []
        for row in rows:
            actions.extend(a for a in row if a not in actions)
        try:
            values = np.array(
                [[row.get(action, 0.0) for action in actions] for row in rows], dtype=np.float64
            ).reshape(len(rows), len(actions))
        except (TypeError, ValueError) as exc:
            raise CandidateScoringError(f"{where}: probabilities must be numbers ({exc})") from exc
        try:
            check_probabilities(values, actions, where, first_row=start)
        except ValueError as exc:
            raise CandidateScoringError(str(exc)) from exc
        return {action: values[:, index] for index, action in enumerate(actions)}

    async def _post(self, body: dict[str, Any], where: str) -> httpx.Response:
        # Scoring is a pure read of the policy server, so its POST may be retried in the call.
        try:
            return await send(
                self.client, "POST", self.url, json=body, deadline=self.timeout,
                retries=self.retries,
            )  # fmt: skip
        except Unreachable as exc:
            raise CandidateScoringError(
                f"{where} {exc}; start it, or name the log's column of candidate "
                "probabilities in offline_eval.candidate_probabilities"
            ) from exc


def _rule(offline: OfflineEval) -> GateRule:
    return GateRule(
        max_regression=offline.max_regression,
        estimator=offline.estimator.value,
        alpha=offline.alpha,
        clip=offline.clip,
        min_ess=offline.min_ess,
        max_weight_error=offline.max_weight_error,
    )


def _finite(value: float) -> float | None:
    return value if np.isfinite(value) else None


def _verdict(evaluation: OfflineEvaluation, threshold: Threshold, label: str) -> TriggerVerdict:
    """The evaluation as the contract's verdict: the judged difference and its evidence."""
    judged = evaluation.judged
    outcome = evaluation.verdict
    rows = evaluation.diagnostics.rows
    return TriggerVerdict(
        trigger=OFFLINE_EVAL,
        outcome=outcome,
        value=_finite(judged.value),
        threshold=threshold,
        query=label,
        detail=evaluation.detail,
        evidence=Evidence(
            estimate=_finite(judged.value),
            lower=_finite(judged.lower),
            upper=_finite(judged.upper),
            statistic=evaluation.diagnostics.ess,
            n_incumbent=rows,
            n_candidate=rows,
            alpha=evaluation.rule.alpha,
        ),
        awaiting_evidence=outcome is Outcome.INCONCLUSIVE,
    )
