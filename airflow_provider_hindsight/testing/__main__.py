"""Run the Hindsight API emulator standalone: ``python -m airflow_provider_hindsight.testing --help``.

It serves ``POST /api/v1/interviews``, ``GET`` and ``PATCH /api/v1/interviews/{id}``, prints where
and an ``export AIRFLOW_CONN_HINDSIGHT_DEFAULT=...`` line whose pace matches what it serves (its
``--requests-per-minute``, or a fast pace when it has no limit), and serves until SIGINT or SIGTERM;
then it prints one summary line, ``Received 58 requests: {200: 58}``.

``--log-requests`` prints one access line per API request: a UTC timestamp, method, path and status
(``0`` for a dropped connection), never the key, the query string or a body (bodies hold personal
data). ``--complete-after SECONDS`` completes each interview that long after it was created;
``--answer-median``, ``--answer-spread``, ``--never-complete`` and ``--seed`` draw each one's time
instead (:class:`CompletionModel`). ``--state-file PATH`` keeps the interviews and contacts across
restarts.

Beside the API it serves, without a key: ``GET /_emulator/interviews`` (the stored fields),
``GET /_emulator/requests`` (the recorded requests, key masked), ``GET /_emulator/stats``
(request counters and ``creates_by_contact``) and ``POST /_emulator/reset``
(forget the recorded requests and zero the counters).
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import signal
import threading
from typing import TYPE_CHECKING

from airflow_provider_hindsight.testing.emulator import CompletionModel, HindsightEmulator

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


def non_negative_seconds(text: str) -> float:
    """``--complete-after``, ``--answer-median``, ``--answer-spread``: a number, 0 or more."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not seconds >= 0 or seconds == float("inf"):  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be a finite number, 0 or more: {text!r}")
    return seconds


def share(text: str) -> float:
    """``--never-complete``: a share from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a share from 0 to 1, such as 0.2: {text!r}")
    return value


def completion_model(args: argparse.Namespace) -> CompletionModel | None:
    """The completion model the options ask for: ``--complete-after`` or ``--answer-median`` (and its companions)."""
    if args.answer_median is None:
        if args.answer_spread or args.never_complete:
            raise ValueError("--answer-spread and --never-complete need --answer-median")
        return None if args.complete_after is None else CompletionModel(median=args.complete_after)
    return CompletionModel(
        median=args.answer_median, sigma=args.answer_spread, never_share=args.never_complete, seed=args.seed
    )


def utc_timestamp() -> str:
    """``2026-05-15T10:00:00.123Z``: the time of an access log line."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_hindsight.testing",
        description=(
            "Serve a local emulator of the Hindsight API "
            "(POST /api/v1/interviews, GET and PATCH /api/v1/interviews/{id})."
        ),
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
        help="rate limit per API key; the printed connection paces at the same number "
        "(default: no limit, and the printed connection paces fast)",
    )
    parser.add_argument(
        "--rate-window", type=float, default=60.0, help="seconds of the sliding rate window (default: 60)"
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait before each answer")
    parser.add_argument(
        "--interview-ids",
        type=parse_ids,
        default=None,
        help="ids that exist, e.g. 1-500 or 4821,4822 (default: PATCH accepts every positive id)",
    )
    answers = parser.add_mutually_exclusive_group()
    answers.add_argument(
        "--complete-after",
        type=non_negative_seconds,
        default=None,
        metavar="SECONDS",
        help="complete each interview (with a generated transcript) SECONDS after it was created (default: never)",
    )
    answers.add_argument(
        "--answer-median",
        type=non_negative_seconds,
        default=None,
        metavar="SECONDS",
        help="complete interviews after a lognormal spread of times with this median (default: never)",
    )
    parser.add_argument(
        "--answer-spread",
        type=non_negative_seconds,
        default=0.0,
        metavar="SIGMA",
        help="with --answer-median: sigma of the lognormal spread (default: 0, every one at the median)",
    )
    parser.add_argument(
        "--never-complete",
        type=share,
        default=0.0,
        metavar="SHARE",
        help="with --answer-median: the share of interviews that never complete, 0 to 1 (default: 0)",
    )
    parser.add_argument("--seed", type=int, default=0, help="with --answer-median: the seed of the draws (default: 0)")
    parser.add_argument(
        "--state-file",
        default=None,
        metavar="PATH",
        help="keep interviews and contacts in this JSON file across restarts (default: in memory only)",
    )
    parser.add_argument(
        "--log-requests",
        action="store_true",
        help="print one line per API request: UTC time, method, path, status (never the key or a body)",
    )
    return parser


def connection_export(emulator: HindsightEmulator, conn_id: str = "hindsight_default") -> str:
    """The shell line that points ``conn_id`` at ``emulator``, paced at what it serves (see ``connection()``)."""
    name, value = emulator.connection_env(conn_id)
    return f"export {name}={shlex.quote(value)}"


def summary(status_counts: dict[int, int]) -> str:
    """``Received 58 requests: {200: 58}`` (statuses in order; 0 counts dropped connections)."""
    total = sum(status_counts.values())
    return f"Received {total} request{'' if total == 1 else 's'}: {dict(sorted(status_counts.items()))}"


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGINT or SIGTERM, then stop cleanly, print the summary and return 0."""
    parser = build_parser()
    args = parser.parse_args(argv)
    stopping = threading.Event()
    printing = threading.Lock()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    def log_request(method: str, path: str, status: int) -> None:
        with printing:
            print(f"{utc_timestamp()} {method} {path} {status}", flush=True)

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
            completion=completion_model(args),
            on_request=log_request if args.log_requests else None,
            state_file=args.state_file,
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
        with printing:
            print(f"Hindsight emulator serving {emulator.base_url} ({limit}). Point Airflow at it with:", flush=True)
            print(connection_export(emulator), flush=True)
        while not stopping.wait(0.5):
            pass
    finally:
        emulator.stop()
        with printing:
            print(summary(emulator.status_counts), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
