"""When interviews complete by themselves: a seeded model of how long contacts take to answer.

Each interview's fate depends only on the model and its id, never on the order of requests, so two
runs with the same seed complete the same interviews at the same ages, and a restarted emulator
keeps them.
"""

from __future__ import annotations

import dataclasses
import math
import random


@dataclasses.dataclass(frozen=True)
class CompletionModel:
    """How long after its creation each interview completes, or that it never does.

    A share ``never_share`` (0 to 1) of the interviews never completes. The others complete
    ``median`` seconds after their creation times ``exp(N(0, sigma))``: a lognormal spread whose
    median is ``median`` (half answer sooner); ``sigma=0`` completes each one exactly ``median``
    seconds after its creation (what ``complete_after=median`` does). ``seed`` picks the draws.
    """

    median: float
    sigma: float = 0.0
    never_share: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.median) and self.median >= 0):
            raise ValueError(f"median must be 0 or more seconds, got {self.median!r}")
        if not (math.isfinite(self.sigma) and self.sigma >= 0):
            raise ValueError(f"sigma must be 0 or more, got {self.sigma!r}")
        if not 0 <= self.never_share <= 1:
            raise ValueError(f"never_share must be between 0 and 1, got {self.never_share!r}")

    def answer_delay(self, interview_request_id: int) -> float | None:
        """Seconds from the interview's creation to its completion; None when it never completes."""
        draws = random.Random(f"{self.seed}:{interview_request_id}")
        if draws.random() < self.never_share:
            return None
        if self.sigma == 0:
            return self.median
        return self.median * math.exp(draws.gauss(0.0, self.sigma))
