"""Run the Hindsight API emulator standalone: ``python -m airflow_provider_hindsight.testing --help``."""

from __future__ import annotations

import argparse
import json
import signal
import threading
from typing import TYPE_CHECKING

from airflow_provider_hindsight.testing.emulator import HindsightEmulator

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType


def parse_ids(text: str) -> list[int]:
    """Parse ``"1-500"``, ``"7,9,12"`` or a mix (``"1-3,10"``) into a list of interview ids."""
    ids: list[int] = []
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        try:
            low, high = int(first), int(last or first)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an id or an id range: {part!r}") from None
        if low < 1 or high < low:
            raise argparse.ArgumentTypeError(f"not a range of positive ids: {part!r}")
        ids.extend(range(low, high + 1))
    return ids


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_hindsight.testing",
        description="Serve a local emulator of the Hindsight API (PATCH /api/v1/interviews/{id}).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to bind; 0 picks a free one (default: 8080)")
    parser.add_argument("--api-key", default="demo", help="the API key clients must send (default: demo)")
    parser.add_argument(
        "--requests-per-minute", type=float, default=None, help="rate limit per API key (default: none)"
    )
    parser.add_argument(
        "--rate-window", type=float, default=60.0, help="seconds of the sliding rate window (default: 60)"
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait before each answer")
    parser.add_argument(
        "--interview-ids",
        type=parse_ids,
        default=None,
        help="ids that exist, e.g. 1-500 or 4821,4822 (default: every positive id)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGINT or SIGTERM, then stop cleanly and return 0."""
    parser = build_parser()
    args = parser.parse_args(argv)
    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        emulator = HindsightEmulator(
            args.api_key,
            host=args.host,
            port=args.port,
            requests_per_minute=args.requests_per_minute,
            rate_window=args.rate_window,
            latency=args.latency,
            interview_ids=args.interview_ids,
        ).start()
    except (ValueError, OSError) as error:
        parser.error(str(error))
    try:
        connection = {"conn_type": "hindsight", "host": emulator.base_url, "password": emulator.api_key}
        print(
            f"Hindsight emulator serving {emulator.base_url}  "
            f"AIRFLOW_CONN_HINDSIGHT_DEFAULT='{json.dumps(connection)}'",
            flush=True,
        )
        while not stopping.wait(0.5):
            pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
