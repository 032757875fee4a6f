"""The one plain sentence that says what changed between two analyses (`Diff.sentence`): what was
changed, what happened to the answer, whether the methods' rankings of the words held, and the biggest
shift. Every number is read from the `Diff`; nothing is recomputed here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .catalog import METHOD_LABELS

if TYPE_CHECKING:
    from .diff import Diff

AGREE = 0.7  # ρ at or above: the rankings "largely agree"
DISAGREE = 0.3  # ρ below: they "differ"


def _quote(text: str, limit: int = 40) -> str:
    text = " ".join(text.split())
    return f"“{text if len(text) <= limit else text[: limit - 1] + '…'}”"


def _label(name: str) -> str:
    return METHOD_LABELS.get(name, name)


def _changes(diff: "Diff") -> list[str]:
    changes = []
    if diff.models[0] != diff.models[1]:
        changes.append(f"the model ({diff.models[0]} → {diff.models[1]})")
    if diff.prompts[0] != diff.prompts[1]:
        changes.append("the prompt")
    names = [name for name in diff.settings if name != "methods"]
    if names:
        changes.append(f"the setting{'s' if len(names) > 1 else ''} {', '.join(names)}")
    if "methods" in diff.settings:
        changes.append("the methods run")
    return changes


def _answer(diff: "Diff") -> str:
    if not diff.answer_changed:
        return f"the answer stayed {_quote(diff.answers[0])}"
    return f"the answer changed from {_quote(diff.answers[0])} to {_quote(diff.answers[1])}"


def _rankings(diff: "Diff") -> str | None:
    rated = [(name, item.spearman) for name, item in diff.methods.items() if item.spearman is not None]
    if not rated:
        return None
    unit = f"{diff.alignment.by}s"
    low_name, low = min(rated, key=lambda pair: pair[1])
    high_name, high = max(rated, key=lambda pair: pair[1])
    if low >= AGREE:
        return f"every method ranks the {unit} much as before (lowest ρ {low:.2f}, {_label(low_name)})"
    if high < DISAGREE:
        return f"every method ranks the {unit} differently (highest ρ {high:.2f}, {_label(high_name)})"
    return (f"{_label(high_name)} ranks the {unit} most alike (ρ {high:.2f}) and {_label(low_name)} least "
            f"(ρ {low:.2f})")


def _biggest_shift(diff: "Diff") -> str | None:
    best = None
    for name, item in diff.methods.items():
        index = item.largest_change
        if index is not None and (best is None or abs(item.difference[index]) > abs(best[2])):
            best = (name, index, float(item.difference[index]))
    if best is None or best[2] == 0:
        return None
    name, index, _change = best
    item = diff.methods[name]
    return (f"the biggest shift: {_quote(diff.units[index].strip() or diff.units[index])}'s share of "
            f"{_label(name)}'s total went from {item.shares_a[index]:.0%} to {item.shares_b[index]:.0%}")


def describe(diff: "Diff") -> str:
    """One sentence: what was changed; the answer; the rankings; the biggest shift."""
    changes = _changes(diff)
    if not changes and diff.is_zero:
        return f"Nothing differs: the same answer ({_quote(diff.answers[0])}) and the same scores for every method."
    parts = [f"Changing {' and '.join(changes)}" if changes else "With nothing changed in what was run"]
    parts[0] += f", {_answer(diff)}"
    for part in (_rankings(diff), _biggest_shift(diff)):
        if part is not None:
            parts.append(part)
    return "; ".join(parts) + "."
