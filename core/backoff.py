"""The one backoff every retry loop uses (reconnecting inputs, the historian writer, detection).

Delays double from `min_s` to `max_s`; each pause is jittered within the lower half of the
current delay, so that many clients that lost the same server do not come back in lockstep, and
no pause is ever longer than `max_s`: the cap is a cap.
"""

from __future__ import annotations

import random


class Backoff:
    """Pauses between attempts: doubling from `min_s` up to `max_s`, jittered, never above it."""

    def __init__(self, min_s: float, max_s: float) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError(f"backoff needs 0 < min_s <= max_s (got {min_s}, {max_s})")
        self.min_s = min_s
        self.max_s = max_s
        self._delay = min_s

    def next(self) -> float:
        """The pause before the next attempt: within [delay / 2, delay], delay <= max_s."""
        delay = self._delay
        self._delay = min(delay * 2, self.max_s)
        return random.uniform(delay / 2, delay)

    def reset(self) -> None:
        """The attempt worked: the next failure starts again from the shortest pause."""
        self._delay = self.min_s
