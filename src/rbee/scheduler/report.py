"""Why a decision went the way it did: rejected candidates per reason, and the best scores."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

TOP = 5
# A dry run lists candidates one by one; a cluster of thousands lists this many, then counts.
DETAIL_LIMIT = 200


@dataclass
class Report:
    evaluated: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    scores: list[tuple[str, float]] = field(default_factory=list)  # (candidate, score)
    policy: str = ""
    notes: list[str] = field(default_factory=list)
    # A script answered `false` (none of these may be used): final, no fallback, no eviction.
    refusal: Exception | None = None
    # Explain only (`detailed`): each rejected candidate with its reason, and the candidates
    # that passed every filter. Requests keep the counts alone: no list grows on the hot path.
    rejections: list[tuple[str, str]] | None = None
    eligible: list[str] | None = None
    omitted: int = 0  # candidates past DETAIL_LIMIT, counted but not listed

    @classmethod
    def of(cls, policy: str, *, detailed: bool = False) -> Report:
        """A report; `detailed` also lists every candidate (a dry run's)."""
        if not detailed:
            return cls(policy=policy)
        return cls(policy=policy, rejections=[], eligible=[])

    @property
    def detailed(self) -> bool:
        return self.rejections is not None

    def reject(self, reason: str, candidate: str = "") -> None:
        self.rejected[reason] += 1
        if self.rejections is not None:
            self._listed(self.rejections, (candidate, reason))

    def passed(self, candidates: list[str]) -> None:
        """The candidates every filter kept (listed only in a detailed report)."""
        if self.eligible is not None:
            for c in candidates:
                self._listed(self.eligible, c)

    def refuse_eligible(self, reason: str) -> None:
        """A script refused them all: in a detailed report each passed one is now rejected."""
        if self.rejections is not None and self.eligible:
            self.rejections.extend((c, reason) for c in self.eligible)
            self.eligible = []

    def clear_rejections(self) -> None:
        """Start the count again (a `prefer` placement that falls back to anywhere)."""
        self.evaluated, self.rejected, self.omitted = 0, Counter(), 0
        if self.rejections is not None:
            self.rejections, self.eligible = [], []

    def _listed(self, into: list[Any], item: Any) -> None:
        if len(self.rejections or ()) + len(self.eligible or ()) < DETAIL_LIMIT:
            into.append(item)
        else:
            self.omitted += 1

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
        out: dict[str, Any] = {
            "policy": self.policy, "evaluated": self.evaluated,
               "rejected": dict(self.rejected.most_common()),
               "top": [{"candidate": c, "score": round(s, 4)} for c, s in self.top()],
               "notes": list(self.notes), "explain": self.explain(),
               "refused": self.refusal is not None}
        if self.rejections is not None:
            out["candidates"] = [
                *({"candidate": c, "verdict": "rejected", "reason": r}
                  for c, r in self.rejections),
                *({"candidate": c, "verdict": "eligible", "reason": None}
                  for c in self.eligible or ())]
            out["candidates_omitted"] = self.omitted
        return out
