"""What-if: edit the prompt of an analysis and run the model again.

`edit(loaded, analysis, remove=..., replace=...)` removes or replaces tokens or words of the user's
prompt (their characters, found by `attribution.alignment`), encodes the new prompt as the analysis did
(chat template and system prompt kept), generates again and measures the explained token's probability at
its place before and after. `remove_top` and `remove_random` pick what to remove: a method's top k units or
k random ones. `deletion_curve` is the faithfulness measurement drawn out: the explained token's
log-probability as 0, 1, 2, … units are removed in a method's order and in random orders, by the same
batched removal as the trust panel (`attribution.faithfulness.removed_log_probabilities`).

Unit keys: with unit="token" an input position (a token the user typed); with unit="word" the index of
the word in `attribution.alignment.word_units(analysis)`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from .alignment import Unit, token_spans, word_units
from .diff import unit_scores
from .engine import generate
from .faithfulness import content_order, random_orders, removed_log_probabilities
from .models import LoadedModel
from .passes import AttributionRequest
from .prompts import encode_prompt
from .reports import DEFAULT_REMOVAL, validate_removal
from .results import Analysis
from .targets import display_tokens
from .threads import cpu_threads_for
from .validation import validate_choice, validate_integer, validate_prompt
from .whatif_results import DeletionCurve, Edit

UNITS = {"token": "one token the user typed", "word": "a word of the prompt (its tokens together)"}
RANDOM_CURVES = 20  # random orders a deletion curve is compared against by default


def editable_units(analysis: Analysis, unit: str) -> dict[int, Unit]:
    """Key → unit for everything of the user's prompt that can be removed or replaced."""
    unit = validate_choice(unit, "unit", UNITS)
    if unit == "word":
        return dict(enumerate(word_units(analysis)))
    spans = token_spans(analysis, positions=analysis.user_tokens)
    return {index: Unit(analysis.input_tokens[index], start, stop, (index,)) for index, (start, stop) in spans.items()}


def ranked_units(analysis: Analysis, unit: str) -> dict[int, Unit]:
    """The editable units outside the held context (those a method's order ranks), by key."""
    return {key: item for key, item in editable_units(analysis, unit).items()
            if item.positions and not analysis.context_tokens[list(item.positions)].all()}


def _keys(values: object, units: Mapping[int, Unit], unit: str, what: str) -> list[int]:
    keys = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) not in units:
            valid = ", ".join(map(str, units)) or "none"
            raise ValueError(f"{what} {value!r} is not a {unit} of the prompt that can be edited; valid: {valid}")
        keys.append(int(value))
    return keys


def edited_prompt(analysis: Analysis, unit: str, remove: Sequence[int] = (),
                  replace: Mapping[int, str] | None = None) -> tuple[str, tuple[str, ...], tuple[tuple[str, str], ...]]:
    """The prompt with the units `remove` taken out (with the space before them, so no double space is
    left) and those of `replace` replaced (a token's leading whitespace kept: replacing " Latvia" by
    "Estonia" gives " Estonia"); the removed texts and (old, new) pairs."""
    units = editable_units(analysis, unit)
    replace = dict(replace or {})
    removed, replaced = _keys(remove, units, unit, "remove"), _keys(replace, units, unit, "replace")
    if set(removed) & set(replaced):
        raise ValueError(f"{unit}s {sorted(set(removed) & set(replaced))} are both removed and replaced; pick one")
    for key in replaced:
        if not isinstance(replace[key], str):
            raise ValueError(f"the replacement for {unit} {key} must be text, got {type(replace[key]).__name__}")
    if not removed and not replaced:
        raise ValueError(f"nothing to edit: name the {unit}s to remove or replace")
    edits = sorted([(units[key].start, units[key].stop, None) for key in set(removed)]
                   + [(units[key].start, units[key].stop, replace[key]) for key in replaced], reverse=True)
    text = analysis.prompt
    for start, stop, new in edits:
        if new is not None:
            start += len(text[start:stop]) - len(text[start:stop].lstrip())
            text = text[:start] + new + text[stop:]
            continue
        if start == 0:
            while stop < len(text) and text[stop].isspace():
                stop += 1
        elif text[start - 1] == " " and (stop == len(text) or text[stop].isspace() or not text[stop].isalnum()):
            start -= 1
        text = text[:start] + text[stop:]
    return (text, tuple(units[key].text for key in sorted(set(removed))),
            tuple((units[key].text, replace[key]) for key in replaced))


def _check_model(loaded: LoadedModel, analysis: Analysis) -> None:
    if loaded.name != analysis.model:
        raise ValueError(f"the analysis was computed with {analysis.model!r}, not {loaded.name!r}: load that model")


def _explained_ids(analysis: Analysis) -> list[int]:
    """What the analysis explains: its target token, or every token of its span (the last is the target)."""
    return [analysis.target.id] if analysis.span is None else list(analysis.span.ids)


def _explained(loaded: LoadedModel, input_ids: torch.Tensor, explained: list[int]) -> tuple[float, int | None, int]:
    """After `input_ids` [seq] (which ends with the explained stretch's earlier tokens, teacher-forced): the
    probability of the explained token, or of the whole stretch (the product over its tokens); the first
    place (index into `explained`) where another token is the likeliest, or None; and that token (or, when
    every one is still the likeliest, the one at the last place)."""
    with torch.inference_mode():
        logits = loaded.model(input_ids=input_ids.unsqueeze(0), logits_to_keep=len(explained), use_cache=False).logits[0]
    log_probabilities = torch.log_softmax(logits.double(), dim=-1)  # [S, vocab]: row i predicts explained[i]
    wanted = torch.tensor(explained, device=log_probabilities.device)
    probability = float(torch.exp(log_probabilities.gather(1, wanted[:, None]).sum()))
    greedy = log_probabilities.argmax(dim=-1)
    missed = [index for index in range(len(explained)) if int(greedy[index]) != explained[index]]
    first = missed[0] if missed else None
    return probability, first, int(greedy[len(explained) - 1 if first is None else first])


def edit(loaded: LoadedModel, analysis: Analysis, *, remove: Sequence[int] = (),
         replace: Mapping[int, str] | None = None, unit: str = "token") -> Edit:
    """The analysis's prompt edited and run again (see the module's docstring). The explained token is
    measured at its place: after the edited prompt and the generated tokens that preceded it (target=k). For
    a span target, the probability is the whole stretch's (its tokens teacher-forced, as the analysis explains
    their summed log-probability), and it is "still predicted" when each of its tokens is still the likeliest."""
    _check_model(loaded, analysis)
    prompt, removed, replaced = edited_prompt(analysis, unit, remove, replace)
    validate_prompt(prompt, what="the edited prompt")
    max_new_tokens = analysis.settings.max_new_tokens if analysis.settings is not None else len(analysis.generated_ids)
    n_prompt = analysis.n_tokens if analysis.n_prompt_tokens is None else analysis.n_prompt_tokens
    with loaded.lock, cpu_threads_for(loaded):
        encoded = encode_prompt(loaded, prompt, chat=analysis.chat, system=analysis.system)
        generated = generate(loaded, encoded.ids, max_new_tokens)
        original = torch.tensor(analysis.input_ids, device=loaded.input_device)
        after = torch.cat([encoded.ids, original[n_prompt:]])  # the generated tokens before the target kept
        probability_before, _missed, _greedy = _explained(loaded, original, _explained_ids(analysis))
        probability_after, missed, greedy = _explained(loaded, after, _explained_ids(analysis))
    return Edit(
        prompt_before=analysis.prompt, prompt_after=prompt, removed=removed, replaced=replaced,
        answer_before=analysis.generated_text,
        answer_after=loaded.tokenizer.decode(generated.tolist(), skip_special_tokens=True),
        target=analysis.target.text if analysis.span is None else analysis.span.text,
        probability_before=probability_before, probability_after=probability_after,
        greedy_after=display_tokens(loaded, [greedy])[0], still_predicted=missed is None,
    )


def _order(analysis: Analysis, method: str, units: Mapping[int, Unit]) -> list[int]:
    """Unit keys by the method's summed score, largest first (ties: earlier first), as faithfulness orders."""
    if method not in analysis.methods:
        raise ValueError(f"method {method!r} was not run in this analysis; valid: {', '.join(analysis.methods)}")
    keys = list(units)
    scores = unit_scores(analysis, method, tuple(units[key] for key in keys))
    return [keys[index] for index in content_order(scores, np.ones(len(keys), dtype=bool))]


def remove_top(analysis: Analysis, method: str, k: int, unit: str = "word") -> tuple[int, ...]:
    """The keys of the method's k highest-scoring units outside the held context (for `edit(remove=...)`)."""
    units = ranked_units(analysis, unit)
    k = validate_integer(k, "k", 1, max(1, len(units)))
    return tuple(_order(analysis, method, units)[:k])


def remove_random(analysis: Analysis, k: int, unit: str = "word", seed: int = 0) -> tuple[int, ...]:
    """The keys of k units drawn at random (seeded) from those `remove_top` chooses among."""
    units = ranked_units(analysis, unit)
    k = validate_integer(k, "k", 1, max(1, len(units)))
    keys = list(units)
    order = random_orders(np.ones(len(keys), dtype=bool), 1, seed=seed)[0]
    return tuple(keys[index] for index in order[:k])


def _curve_units(analysis: Analysis, unit: str) -> list[Unit]:
    """What a deletion curve removes: every token outside the held context (as faithfulness), or words."""
    if validate_choice(unit, "unit", UNITS) == "word":
        return [item for item in word_units(analysis) if item.positions]
    return [Unit(analysis.input_tokens[index], -1, -1, (int(index),)) for index in np.flatnonzero(~analysis.context_tokens)]


def deletion_curve(loaded: LoadedModel, analysis: Analysis, method: str, *, n_random: int = RANDOM_CURVES,
                   unit: str = "token", removal: str = DEFAULT_REMOVAL, seed: int = 0) -> DeletionCurve:
    """The explained token's log-probability as the method's top units are removed one by one, against
    `n_random` random orders (see the module's docstring); one batched pass."""
    _check_model(loaded, analysis)
    removal = validate_removal(removal)
    n_random = validate_integer(n_random, "n_random", 1, 1000)
    units = _curve_units(analysis, unit)
    keyed = dict(enumerate(units))
    orders = [_order(analysis, method, keyed), *random_orders(np.ones(len(units), dtype=bool), n_random, seed=seed)]
    rows = []
    for order in orders:
        hidden = np.zeros(analysis.n_tokens, dtype=bool)
        rows.append(hidden.copy())
        for index in order:
            hidden[list(units[index].positions)] = True
            rows.append(hidden.copy())
    explained = _explained_ids(analysis)
    span = {} if analysis.span is None else {  # the span's token i is predicted at position n − S + i
        "span_ids": torch.tensor(explained), "span_positions": torch.arange(len(explained)) + analysis.n_tokens - len(explained)}
    request = AttributionRequest(
        input_ids=torch.tensor(analysis.input_ids, device=loaded.input_device), target_id=analysis.target.id,
        foil_id=None if analysis.foil is None else analysis.foil.id, **span,
        **({} if analysis.settings is None else {"settings": analysis.settings}))
    with loaded.lock, cpu_threads_for(loaded):
        values = removed_log_probabilities(loaded, request, np.stack(rows), removal).reshape(len(orders), len(units) + 1)
    return DeletionCurve(method=method, unit=unit, units=tuple(units[index].text for index in orders[0]),
                         method_values=values[0], random_values=values[1:], removal=removal,
                         contrastive=analysis.foil is not None)
