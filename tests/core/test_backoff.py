"""The one backoff of the project: doubling, jittered, and never above its cap."""

from __future__ import annotations

import random

import pytest

from core.backoff import Backoff
from core.reconnect import Backoff as ReconnectBackoff
from core.reconnect import Reconnect


def test_waits_double_up_to_the_cap_and_never_exceed_it() -> None:
    random.seed(5)
    backoff = Backoff(0.5, 30.0)
    waits = [backoff.next() for _ in range(200)]
    assert max(waits) <= 30.0
    assert max(waits) > 20.0  # the jitter stays below the cap, not far below it
    assert 0.25 <= waits[0] <= 0.5 and 0.5 <= waits[1] <= 1.0
    backoff.reset()
    assert backoff.next() <= 0.5


def test_reconnects_use_the_same_backoff_within_their_bounds() -> None:
    backoff = ReconnectBackoff(Reconnect(min_s=0.2, max_s=1.0))
    assert isinstance(backoff, Backoff)
    assert max(backoff.next() for _ in range(100)) <= 1.0


@pytest.mark.parametrize(("low", "high"), [(0, 1), (2, 1), (-1, 1)])
def test_bounds_must_make_sense(low: float, high: float) -> None:
    with pytest.raises(ValueError, match="min_s <= max_s"):
        Backoff(low, high)
