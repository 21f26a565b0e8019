"""Run the Hindsight API emulator standalone: ``python -m airflow_provider_hindsight.testing --help``."""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import threading
from typing import TYPE_CHECKING, Any

from airflow_provider_hindsight.testing.emulator import HindsightEmulator

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType

DEFAULT_PORT = 9321
"""Clear of the ports Airflow uses by default (8080 API server or webserver, 8793 and 8794 log servers)."""
DEFAULT_API_KEY = "hindsight-demo-key"
"""Long enough for Airflow's secret masker, which warns about (and does not mask) values under 5 characters."""


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
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port to bind; 0 picks a free one (default: {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--api-key", default=DEFAULT_API_KEY, help=f"the API key clients must send (default: {DEFAULT_API_KEY})"
    )
    parser.add_argument(
        "--requests-per-minute",
        type=float,
        default=None,
        help="rate limit per API key; the printed connection paces at the same number (default: none)",
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


def connection_export(emulator: HindsightEmulator, requests_per_minute: float | None) -> str:
    """The shell line that points ``hindsight_default`` at ``emulator``, paced at its rate limit when it has one."""
    connection: dict[str, Any] = {"conn_type": "hindsight", "host": emulator.base_url, "password": emulator.api_key}
    if requests_per_minute is not None:
        pace = int(requests_per_minute) if float(requests_per_minute).is_integer() else requests_per_minute
        connection["extra"] = {"requests_per_minute": pace}
    return f"export AIRFLOW_CONN_HINDSIGHT_DEFAULT={shlex.quote(json.dumps(connection))}"


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
    except ValueError as error:
        parser.error(str(error))
    except OSError as error:
        parser.error(
            f"cannot serve on {args.host}:{args.port}: {error.strerror}; pick another --port (0 picks a free one)"
        )
    try:
        limit = (
            "no rate limit" if args.requests_per_minute is None else f"{args.requests_per_minute:g} requests a minute"
        )
        print(f"Hindsight emulator serving {emulator.base_url} ({limit}). Point Airflow at it with:", flush=True)
        print(connection_export(emulator, args.requests_per_minute), flush=True)
        while not stopping.wait(0.5):
            pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
