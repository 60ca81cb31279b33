"""The Markdown table: metric, Verdaccio, Gatehouse, ratio, target."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Metric:
    id: str
    label: str
    unit: str
    higher_is_better: bool
    verdaccio: float | None = None
    gatehouse: float | None = None
    # Shown instead of a number when the value is missing, e.g. "n/a (no proxy yet)".
    verdaccio_note: str = ""
    gatehouse_note: str = ""
    # Gatehouse's advantage must be at least this (×), or its value within `limit`.
    target_ratio: float | None = None
    limit: float | None = None
    detail: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """How many times better Gatehouse is: G/V when higher is better, V/G otherwise."""
        v, g = self.verdaccio, self.gatehouse
        if v is None or g is None or v <= 0 or g <= 0:
            return None
        return g / v if self.higher_is_better else v / g

    @property
    def met(self) -> bool | None:
        if self.target_ratio is not None:
            return None if self.ratio is None else self.ratio >= self.target_ratio
        if self.limit is not None:
            if self.gatehouse is None:
                return None
            return self.gatehouse >= self.limit if self.higher_is_better else self.gatehouse <= self.limit
        return None

    def target_text(self) -> str:
        if self.target_ratio is not None:
            return f"≥ {self.target_ratio:g}×"
        if self.limit is not None:
            return f"{'≥' if self.higher_is_better else '≤'} {fmt(self.limit)} {self.unit}"
        return ""

    def to_json(self) -> dict:
        return {
            "id": self.id, "label": self.label, "unit": self.unit, "higher_is_better": self.higher_is_better,
            "verdaccio": self.verdaccio, "gatehouse": self.gatehouse,
            "verdaccio_note": self.verdaccio_note or None, "gatehouse_note": self.gatehouse_note or None,
            "ratio": self.ratio, "target_ratio": self.target_ratio, "limit": self.limit, "met": self.met,
            "detail": self.detail,
        }


def fmt(x: float) -> str:
    if x >= 1000:
        return f"{x:,.0f}"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def cell(value: float | None, note: str, unit: str) -> str:
    if value is None:
        return note or "—"
    text = f"{fmt(value)} {unit}"
    return f"{text} ({note})" if note else text


def table(metrics: list[Metric], left: str = "Verdaccio", right: str = "Gatehouse") -> str:
    rows = [f"| Metric | {left} | {right} | Ratio | Target | Met |",
            "| --- | ---: | ---: | ---: | --- | :---: |"]
    for m in metrics:
        ratio = f"{m.ratio:.1f}×" if m.ratio is not None else "—"
        met = {True: "yes", False: "**no**", None: ""}[m.met]
        rows.append(f"| {m.label} | {cell(m.verdaccio, m.verdaccio_note, m.unit)} | "
                    f"{cell(m.gatehouse, m.gatehouse_note, m.unit)} | {ratio} | {m.target_text()} | {met} |")
    return "\n".join(rows)


def table_alone(metrics: list[Metric], column: str = "Gatehouse") -> str:
    """The table of a workload on Gatehouse alone: no other registry, no ratio."""
    rows = [f"| Metric | {column} | Target | Met |", "| --- | ---: | --- | :---: |"]
    for m in metrics:
        met = {True: "yes", False: "**no**", None: ""}[m.met]
        rows.append(f"| {m.label} | {cell(m.gatehouse, m.gatehouse_note, m.unit)} | {m.target_text()} | {met} |")
    return "\n".join(rows)
