"""OpenLineage reporting of the Hindsight operators."""

from __future__ import annotations
