"""Real services for the test suite and the benchmarks (a throw-away PostgreSQL server)."""

from __future__ import annotations
