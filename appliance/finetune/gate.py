"""The promotion gate: a candidate adapter may replace the served one only if, on the same
question set, its answer accuracy and its citation precision are each no more than `margin`
below the served one's (the base model's alone when no adapter is promoted).

Citation precision is undefined for a run that cited nothing: against a run that did cite,
it counts as 0 (an adapter that stops citing has regressed); when neither cited, it is not
compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from appliance.evaluation import compare

GATED = ("answer_accuracy", "citation_precision")


@dataclass(frozen=True)
class GateCheck:
    metric: str
    current: float | None
    candidate: float | None
    regressed: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "current": self.current,
            "candidate": self.candidate,
            "delta": _delta(self.current, self.candidate),
            "regressed": self.regressed,
        }


@dataclass(frozen=True)
class GateVerdict:
    margin: float
    checks: tuple[GateCheck, ...]
    comparison: tuple[dict[str, Any], ...]  # every metric, current vs candidate

    @property
    def passed(self) -> bool:
        return not any(c.regressed for c in self.checks)

    @property
    def regressions(self) -> list[str]:
        return [c.metric for c in self.checks if c.regressed]

    def reason(self) -> str:
        """One line naming each regression with both numbers."""
        worse = [
            f"{c.metric} {_shown(c.candidate)} against {_shown(c.current)}"
            for c in self.checks
            if c.regressed
        ]
        if not worse:
            return f"no metric fell by more than {self.margin}"
        return f"{'; '.join(worse)} (allowed drop {self.margin})"

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "margin": self.margin,
            "checks": [c.to_json() for c in self.checks],
            "comparison": list(self.comparison),
        }


def judge(current: dict[str, Any], candidate: dict[str, Any], margin: float) -> GateVerdict:
    """Compare two `Scoreboard.summary()`s of the same question set."""
    checks = tuple(
        _check(name, _value(current, name), _value(candidate, name), margin) for name in GATED
    )
    rows = tuple(
        {
            "metric": r["metric"],
            "current": r["base"],
            "candidate": r["adapter"],
            "delta": r["delta"],
        }
        for r in compare(current, candidate)
    )
    return GateVerdict(margin, checks, rows)


def _check(name: str, current: float | None, candidate: float | None, margin: float) -> GateCheck:
    if current is None:  # nothing to fall from (no citations, or no answerable question)
        return GateCheck(name, current, candidate, False)
    fallen = current - (candidate if candidate is not None else 0.0)
    # Rounded: summaries hold 4 decimals, and 0.5 - 0.48 must not exceed a 0.02 margin.
    return GateCheck(name, current, candidate, round(fallen, 6) > margin)


def _value(summary: dict[str, Any], name: str) -> float | None:
    value = summary.get(name)
    return float(value) if isinstance(value, int | float) else None


def _delta(current: float | None, candidate: float | None) -> float | None:
    return round(candidate - current, 4) if current is not None and candidate is not None else None


def _shown(value: float | None) -> str:
    return "none" if value is None else f"{value:.4g}"
