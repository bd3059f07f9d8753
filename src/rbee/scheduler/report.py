"""Why a decision went the way it did: rejected candidates per reason."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Report:
    evaluated: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    def reject(self, reason: str) -> None:
        self.rejected[reason] += 1

    def explain(self) -> str:
        if not self.evaluated:
            return "no candidates"
        parts = ", ".join(f"{n} {reason}" for reason, n in self.rejected.most_common())
        return f"{self.evaluated} evaluated: {parts}" if parts else f"{self.evaluated} evaluated"
