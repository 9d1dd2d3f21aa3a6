"""Measuring a `Language` adapter on a labelled set: route accuracy and signal F1.

Pure arithmetic over labels and predictions, plus the reading of labelled JSON lines
(`{"text", "route", "wants_human", "frustrated"}`), so the CLI and the quality-floor tests
measure the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from routing.language import Candidate, Language


class DatasetError(ValueError):
    """A labelled file cannot be used; the message names the line and what to fix."""


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled message; `route` None means no routing answer is expected."""

    text: str
    route: str | None
    wants_human: bool
    frustrated: bool


@dataclass(frozen=True, slots=True)
class Prediction:
    """What an adapter said about one message."""

    route: str | None
    wants_human: bool
    frustrated: bool


@dataclass(frozen=True, slots=True)
class BinaryScore:
    """Precision, recall and F1 of one yes/no signal."""

    true_positive: int
    false_positive: int
    false_negative: int

    @property
    def precision(self) -> float:
        found = self.true_positive + self.false_positive
        return self.true_positive / found if found else 1.0

    @property
    def recall(self) -> float:
        actual = self.true_positive + self.false_negative
        return self.true_positive / actual if actual else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass(frozen=True, slots=True)
class Report:
    """The figures for one labelled set."""

    items: int
    routed_items: int
    route_correct: int
    wants_human: BinaryScore
    frustrated: BinaryScore
    misses: tuple[str, ...]

    @property
    def route_accuracy(self) -> float:
        return self.route_correct / self.routed_items if self.routed_items else 1.0

    def as_dict(self) -> dict[str, object]:
        """The figures as plain JSON values (rounded to 4 places)."""

        def binary(score: BinaryScore) -> dict[str, float]:
            return {
                "precision": round(score.precision, 4),
                "recall": round(score.recall, 4),
                "f1": round(score.f1, 4),
            }

        return {
            "items": self.items,
            "routed_items": self.routed_items,
            "route_accuracy": round(self.route_accuracy, 4),
            "wants_human": binary(self.wants_human),
            "frustrated": binary(self.frustrated),
        }


def _binary(pairs: Iterable[tuple[bool, bool]]) -> BinaryScore:
    tp = fp = fn = 0
    for expected, got in pairs:
        tp += expected and got
        fp += got and not expected
        fn += expected and not got
    return BinaryScore(tp, fp, fn)


def score(examples: Sequence[Example], predictions: Sequence[Prediction]) -> Report:
    """Route accuracy over examples with a route label; P/R/F1 for both signals."""
    if len(examples) != len(predictions):
        raise ValueError("one prediction per example")
    pairs = list(zip(examples, predictions, strict=True))
    routed = [(e, p) for e, p in pairs if e.route is not None]
    misses = tuple(
        f"{e.text!r}: "
        + ", ".join(
            f"{name} expected {want!r} got {got!r}"
            for name, want, got in (
                ("route", e.route, p.route),
                ("wants_human", e.wants_human, p.wants_human),
                ("frustrated", e.frustrated, p.frustrated),
            )
            if want != got and not (name == "route" and e.route is None)
        )
        for e, p in pairs
        if (e.route is not None and e.route != p.route)
        or e.wants_human != p.wants_human
        or e.frustrated != p.frustrated
    )
    return Report(
        items=len(pairs),
        routed_items=len(routed),
        route_correct=sum(e.route == p.route for e, p in routed),
        wants_human=_binary((e.wants_human, p.wants_human) for e, p in pairs),
        frustrated=_binary((e.frustrated, p.frustrated) for e, p in pairs),
        misses=misses,
    )


async def predict(language: Language, text: str, candidates: Sequence[Candidate]) -> Prediction:
    """Ask `language` about one message, as the gateway would for a first message."""
    choice = await language.route(text, candidates)
    signals = await language.signals(text, ())
    return Prediction(choice.address, signals.wants_human, signals.frustrated)


async def evaluate(
    language: Language, examples: Sequence[Example], candidates: Sequence[Candidate]
) -> Report:
    """Run `language` over `examples` and score it."""
    predictions = [await predict(language, e.text, candidates) for e in examples]
    return score(examples, predictions)


def parse_examples(lines: Iterable[str], source: str = "<input>") -> list[Example]:
    """Labelled examples from JSON lines; blank lines are skipped."""
    examples: list[Example] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{source}:{number}: not valid JSON ({exc.msg})") from exc
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise DatasetError(f'{source}:{number}: expected an object with a "text" string')
        route = item.get("route")
        human, upset = item.get("wants_human", False), item.get("frustrated", False)
        if route is not None and not isinstance(route, str):
            raise DatasetError(f'{source}:{number}: "route" must be an address or null')
        if not isinstance(human, bool) or not isinstance(upset, bool):
            raise DatasetError(f'{source}:{number}: "wants_human"/"frustrated" must be booleans')
        examples.append(Example(item["text"], route, human, upset))
    return examples


def load_examples(path: str | Path) -> list[Example]:
    """Labelled examples from a JSON-lines file; `DatasetError` when unusable."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return parse_examples(text.splitlines(), str(path))
