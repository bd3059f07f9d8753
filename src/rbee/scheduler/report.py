"""Why a decision went the way it did: rejected candidates per reason, and the best scores."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

TOP = 5


@dataclass
class Report:
    evaluated: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    scores: list[tuple[str, float]] = field(default_factory=list)  # (candidate, score)
    policy: str = ""
    notes: list[str] = field(default_factory=list)
    # A script answered `false` (none of these may be used): final, no fallback, no eviction.
    refusal: Exception | None = None

    def reject(self, reason: str) -> None:
        self.rejected[reason] += 1

    def score(self, candidate: str, value: float) -> None:
        self.scores.append((candidate, value))

    def top(self) -> list[tuple[str, float]]:
        return sorted(self.scores, key=lambda s: -s[1])[:TOP]

    def explain(self) -> str:
        if not self.evaluated:
            return "no candidates"
        parts = ", ".join(f"{n} {reason}" for reason, n in self.rejected.most_common())
        return f"{self.evaluated} evaluated: {parts}" if parts else f"{self.evaluated} evaluated"

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "evaluated": self.evaluated,
                "rejected": dict(self.rejected.most_common()),
                "top": [{"candidate": c, "score": round(s, 4)} for c, s in self.top()],
                "notes": list(self.notes), "explain": self.explain(),
                "refused": self.refusal is not None}
