"""Generated transcripts in the documented form: one ``**Name:** message`` paragraph per turn, Paige first."""

from __future__ import annotations

import json
import re
from typing import Any

INTERVIEWER = "Paige"
DEFAULT_COMPETITOR = "Competitor Z"
"""Named when neither the objective nor the contact's context names a competitor."""

_COMPETITOR_KEYS = ("competitor", "competitors", "lost_to", "chosen_vendor", "winner")
_COMPETITOR_NAME = re.compile(r"\bCompetitor [A-Z0-9][\w-]*")
_AFTER_VERB = re.compile(
    r"(?i:\blost to|\bchose|\bwent with|\bswitched to|\bpicked|\bselected|\bversus|\bvs\.?)\s+"
    r"(?P<name>[A-Z][\w&-]*(?: [A-Z][\w&-]*)*)"
)


def find_competitor(objective: str | None, context: str | dict[str, Any] | None) -> str:
    """The competitor the objective or context names, else :data:`DEFAULT_COMPETITOR`.

    In order: a ``competitor`` (``competitors``, ``lost_to``, ...) key of an object context; a name
    like ``Competitor X``; a capitalised name after "lost to", "chose", "went with", "vs" and the like.
    """
    if isinstance(context, dict):
        for key, value in context.items():
            if str(key).lower() not in _COMPETITOR_KEYS:
                continue
            if isinstance(value, list):
                value = next((item for item in value if isinstance(item, str) and item.strip()), None)
            if isinstance(value, str) and value.strip():
                return value.strip()
    context_text = context if isinstance(context, str) else json.dumps(context) if context else ""
    text = f"{objective or ''}\n{context_text}"
    for pattern in (_COMPETITOR_NAME, _AFTER_VERB):
        match = pattern.search(text)
        if match is not None:
            return match.group(match.lastgroup or 0)
    return DEFAULT_COMPETITOR


def generate_transcript(contact_name: str | None, objective: str | None, context: str | dict[str, Any] | None) -> str:
    """A short, plausible win-loss interview that names the competitor of :func:`find_competitor`."""
    name = (contact_name or "").strip() or "Contact"
    first = name.split()[0] if name != "Contact" else "there"
    competitor = find_competitor(objective, context)
    goal = f" Our goal today: {objective.strip()}" if objective and objective.strip() else ""
    turns = [
        (INTERVIEWER, f"Hi {first}, thanks for making time to talk with me about your recent decision.{goal}"),
        (name, f"Happy to help. We compared a few options, and {competitor} was the one we looked at most closely."),
        (INTERVIEWER, f"What made {competitor} stand out for your team?"),
        (name, f"Mostly integrations and price: {competitor} fitted our existing stack with less work."),
        (INTERVIEWER, "That is really helpful. Is there anything we could have done differently?"),
        (name, "Clearer pricing earlier in the process would have made a real difference."),
        (INTERVIEWER, "Thank you for your candour. That is everything I wanted to ask."),
    ]
    return "\n\n".join(f"**{speaker}:** {message}" for speaker, message in turns) + "\n"
