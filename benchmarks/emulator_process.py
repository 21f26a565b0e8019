"""Run a ``HindsightEmulator`` in its own process for the benchmark, so it shares no memory or GIL with it.

Prints one JSON line ``{"base_url": ...}`` when ready, then answers commands on stdin, one a line:
``counts`` prints ``{"status_counts": {...}, "request_count": n}``; ``reset`` zeroes the counters.
It stops at end of input.
"""

from __future__ import annotations

import argparse
import json
import sys

from airflow_provider_hindsight.testing import HindsightEmulator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--requests-per-minute", type=float, default=None)
    parser.add_argument("--rate-window", type=float, default=60.0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0, help="interviews 1..N exist, status sent")
    parser.add_argument("--seed-completed", type=int, default=0, help="of which the first M are completed")
    parser.add_argument("--complete-after", type=float, default=None, help="seconds until one completes itself")
    args = parser.parse_args()
    emulator = HindsightEmulator(
        args.api_key,
        requests_per_minute=args.requests_per_minute,
        rate_window=args.rate_window,
        latency=args.latency,
        record_requests=False,
        complete_after=args.complete_after,
    )
    for interview_id in range(1, args.seed + 1):
        emulator.add_interview(interview_id, status="completed" if interview_id <= args.seed_completed else "sent")
    with emulator:
        print(json.dumps({"base_url": emulator.base_url}), flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == "counts":
                answer = {"status_counts": emulator.status_counts, "request_count": emulator.request_count}
                print(json.dumps(answer), flush=True)
            elif command == "reset":
                emulator.reset_requests()
                print(json.dumps({"reset": True}), flush=True)


if __name__ == "__main__":
    main()
