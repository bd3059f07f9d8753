"""Reading a Prometheus text scrape in tests: one sample's value by name and labels."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text)
            for s in family.samples]


def value(text: str, name: str, **labels: str) -> float:
    """The value of the one sample named `name` whose labels include `labels`; 0.0 when the
    series does not exist (yet), as Prometheus would treat a missing counter."""
    found = [v for n, ls, v in samples(text) if n == name
             and all(ls.get(k) == want for k, want in labels.items())]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else 0.0


def label_values(text: str, name: str, label: str) -> set[str]:
    return {ls[label] for n, ls, _ in samples(text) if n == name and label in ls}
