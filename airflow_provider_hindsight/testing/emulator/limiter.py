"""The emulator's rate limiter: a sliding window shared by every API route."""

from __future__ import annotations

import math
import threading
from collections import deque


class SlidingWindowLimiter:
    """Allows ``capacity`` requests in any span of ``window`` seconds; rejected requests do not count."""

    def __init__(self, capacity: int, window: float) -> None:
        self._capacity = capacity
        self._window = window
        self._accepted: deque[float] = deque(maxlen=capacity)
        self._lock = threading.Lock()

    @classmethod
    def per_minute(cls, requests_per_minute: float, window: float) -> SlidingWindowLimiter:
        """``requests_per_minute`` counted over ``window`` seconds; refuses a limit that allows nothing."""
        capacity = math.floor(requests_per_minute * window / 60 + 1e-9)
        if capacity < 1:
            raise ValueError(
                f"requests_per_minute={requests_per_minute} allows no request in a window of "
                f"{window} s; use a longer rate_window"
            )
        return cls(capacity, window)

    def acquire(self, now: float) -> float:
        """Take a slot at monotonic time ``now``; return 0.0, or the seconds until a slot frees."""
        with self._lock:
            while self._accepted and self._accepted[0] <= now - self._window:
                self._accepted.popleft()
            if len(self._accepted) < self._capacity:
                self._accepted.append(now)
                return 0.0
            return self._accepted[0] + self._window - now

    def clear(self) -> None:
        with self._lock:
            self._accepted.clear()
