"""How long to wait between reconnect attempts."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: attempt ``n`` (from 0) waits
    ``min(maximum, initial * multiplier**n)``, randomised by ±``jitter`` (a fraction), so that
    many clients dropped together do not reconnect together. ``max_attempts`` failed attempts
    in a row end the client with :class:`~herald_events.ConnectionFailedError` (None: never)."""

    initial: float = 0.1
    maximum: float = 10.0
    multiplier: float = 2.0
    jitter: float = 0.2
    max_attempts: int | None = None

    def delay(self, attempt: int) -> float:
        base = min(self.maximum, self.initial * self.multiplier ** min(attempt, 64))
        return max(0.0, base * (1 + random.uniform(-self.jitter, self.jitter)))
