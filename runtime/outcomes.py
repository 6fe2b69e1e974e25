"""How a rollout's outcome maps to the exit code of `lockgate watch` and `lockgate submit --wait`.

A CI job gates on a process's exit code, so every outcome a job must tell apart has its own code,
and the table lives here, in one place, for the CLI, its tests and docs/ci.md:

| code | meaning |
|------|---------|
| 0 | completed: the candidate was promoted |
| 1 | error: Temporal unreachable, the rollout not found, a refused request |
| 2 | bad input: a usage error or an invalid spec |
| 3 | rolled back: by a trigger, a failed stage or a human |
| 4 | needs a human: escalated (or held when the timeout expires) |
| 5 | timed out: `--timeout` expired before any of the above |
| 6 | abandoned: a human ended the rollout with `lockgate abandon` |

Decisions a CI job relies on:

- Escalated is an outcome as soon as it is seen (a CI job cannot approve or decide), unless
  `--until-terminal` asks to wait for a terminal phase anyway.
- Waiting for approval is normal progress: when the timeout expires there it is 5 (timed out),
  not 4. Only once the approval's own timeout escalates the rollout does it become 4.
- Held (checks find no evidence, the stage cannot advance) is not an outcome by itself, since
  evidence may arrive at the next check; when the timeout expires while held, it is 4.
- A rollback or promotion the router keeps refusing carries an escalation while its phase stays
  `rolling_back`/`promoting`: that is 4 too (a human must fix the router).
- A holdback (phase `holdback`) is normal progress, however long its duration: the rollout ends
  completed (0) or reverted (3) only when it does, so a timeout there is 5.

Phases are compared as strings, so a phase this module does not name (a newer worker's) is never
mistaken for an outcome: it is just "still running".
"""

from __future__ import annotations

from enum import IntEnum

from workflows.state import Phase

__all__ = [
    "ExitCode",
    "outcome_of",
    "outcome_on_timeout",
]


class ExitCode(IntEnum):
    """The exit codes of lockgate's gating commands; documented in docs/ci.md."""

    COMPLETED = 0
    """The rollout completed: the candidate serves all traffic."""
    ERROR = 1
    """Anything that is not a rollout's outcome: no server, no such rollout, a refused request."""
    USAGE = 2
    """Bad input: an unknown option value, an invalid spec or duration."""
    ROLLED_BACK = 3
    """The rollout rolled back: all traffic is on the incumbent again."""
    NEEDS_HUMAN = 4
    """Escalated (or held at the timeout): someone must decide; a CI job cannot."""
    TIMED_OUT = 5
    """`--timeout` expired while the rollout was still progressing (or awaiting approval)."""
    ABANDONED = 6
    """A human abandoned the rollout (`lockgate abandon`): it ended without a verdict."""

    @property
    def label(self) -> str:
        """The outcome's name as printed and as the `outcome` key of JSON output."""
        return self.name.lower()


_TERMINAL: dict[str, ExitCode] = {
    Phase.COMPLETED: ExitCode.COMPLETED,
    Phase.ROLLED_BACK: ExitCode.ROLLED_BACK,
    Phase.ABANDONED: ExitCode.ABANDONED,
}
"""Terminal phases and their codes; looked up by the phase's string, as search attributes and
JSON carry it."""


def outcome_of(
    phase: str, *, escalation: str | None = None, until_terminal: bool = False
) -> ExitCode | None:
    """The exit code `phase` settles, or None while the rollout is still going.

    `escalation` is the status's "a human is needed" text: set while escalated, and also while a
    rollback or promotion the router refuses keeps its own phase. With `until_terminal`, only a
    terminal phase is an outcome (for a job that waits for a human's decision).
    """
    value = str(phase)
    if value in _TERMINAL:
        return _TERMINAL[value]
    if until_terminal:
        return None
    if value == Phase.ESCALATED or escalation:
        return ExitCode.NEEDS_HUMAN
    return None


def outcome_on_timeout(phase: str | None, *, escalation: str | None = None) -> ExitCode:
    """The exit code when the timeout expires in `phase` (None: never seen, e.g. no worker).

    Held or escalated (seen with `--until-terminal`) is 4, the rollout needs a human; any other
    phase, waiting for approval included, is 5.
    """
    value = None if phase is None else str(phase)
    if value in _TERMINAL:  # the last look already ended it
        return _TERMINAL[value]
    if value in (Phase.ESCALATED, Phase.HELD) or escalation:
        return ExitCode.NEEDS_HUMAN
    return ExitCode.TIMED_OUT
