"""The one vocabulary every judgement speaks: a verdict is pass, fail, inconclusive or error.

Every analysis returns an `Outcome`, and the check activities record it as is, so no layer
translates one word for another (an `ok` here and a `pass` there is how a rollback gets missed).
The string values are persisted in workflow histories: they never change.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Outcome"]


class Outcome(StrEnum):
    """What one judgement concluded. Only FAIL counts towards a rollback.

    INCONCLUSIVE means not enough evidence yet (no data, burn-in, an interval that straddles the
    limit); ERROR means the system could not tell (monitoring down, an ambiguous answer, a log
    the offline gate refuses to judge). Neither is ever a pass.
    """

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    ERROR = "error"
