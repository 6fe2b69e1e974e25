"""Unit attributes as bounded segment labels, so per-segment metrics cannot grow without limit.

A decide request's `attributes` (region, device, tier) say which segments a unit belongs to;
the `segments` trigger compares the arms' rewards per segment, so the gateway counts decisions
and rewards per (label, segment). Clients choose attributes, so both are bounded per target:

- at most MAX_LABELS labels (the first ones seen; later labels are not counted at all, since a
  label is a dimension the trigger names, and folding labels together would mean nothing);
- at most MAX_VALUES values per label (the first ones seen; later ones are counted under
  OTHER_SEGMENT, so the label's totals stay whole);
- a label name longer than MAX_LABEL_LENGTH is not counted, a value longer than
  MAX_VALUE_LENGTH is counted under OTHER_SEGMENT.

The strings handed back are the ones first stored, so a decision waiting for its reward holds
references to shared strings, never a client's copy.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "MAX_LABELS",
    "MAX_LABEL_LENGTH",
    "MAX_VALUES",
    "MAX_VALUE_LENGTH",
    "OTHER_SEGMENT",
    "SegmentLabels",
    "Segments",
]

MAX_LABELS = 8
"""Labels counted per target: a handful of dimensions (region, device, tier) is what is judged."""
MAX_VALUES = 32
"""Values counted per label; later new values are counted under OTHER_SEGMENT."""
MAX_LABEL_LENGTH = 64
"""Characters of a label name that is counted."""
MAX_VALUE_LENGTH = 128
"""Characters of a value that is counted as itself (longer: OTHER_SEGMENT)."""
OTHER_SEGMENT = "other"
"""The segment every value past a label's first MAX_VALUES is counted under."""

Segments = tuple[tuple[str, str], ...]
"""A decision's segments: (label, segment) pairs, at most MAX_LABELS."""


class _Label:
    """One counted label: its name as first stored, and its values (each mapped to itself)."""

    __slots__ = ("name", "values")

    def __init__(self, name: str) -> None:
        self.name = name
        self.values: dict[str, str] = {}


class SegmentLabels:
    """Per target, the labels and values counted so far (first seen, bounded)."""

    def __init__(self, max_labels: int = MAX_LABELS, max_values: int = MAX_VALUES) -> None:
        if max_labels < 1 or max_values < 1:
            raise ValueError("max_labels and max_values must be at least 1")
        self.max_labels = max_labels
        self.max_values = max_values
        self._targets: dict[str, dict[str, _Label]] = {}

    def segments(self, target: str, attributes: Mapping[str, str]) -> Segments:
        """The (label, segment) pairs a decision with these attributes is counted under."""
        labels = self._targets.get(target)
        if labels is None:
            labels = self._targets[target] = {}
        found: list[tuple[str, str]] = []
        for name, value in attributes.items():
            label = labels.get(name)
            if label is None:
                if len(labels) >= self.max_labels or len(name) > MAX_LABEL_LENGTH:
                    continue
                label = labels[name] = _Label(name)
            segment = label.values.get(value)
            if segment is None:
                if len(label.values) < self.max_values and len(value) <= MAX_VALUE_LENGTH:
                    segment = label.values[value] = value
                else:
                    segment = OTHER_SEGMENT
            found.append((label.name, segment))
        return tuple(found)
