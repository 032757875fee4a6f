"""`analyze`: one prompt in, one `Analysis` out — tokenise once, generate once, run each method."""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np
import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from .answer_map import compute_answer_map
from .cancel import cancellable, check as check_cancelled, requested as cancellation_requested
from .catalog import CATALOG
from .groups import GRANULARITIES, Grouping, TokenSpans, groups_from_spans, token_spans
from .integrated_gradients import special_token_mask
from .budget import check_prompt, prompt_cap
from .methods import METHODS
from .models import LoadedModel
from .passes import AttributionRequest, SharedWork
from .prompts import EncodedPrompt, encode_prompt, held_context
from .reports import Progress, TrustReport
from .results import Analysis, AnswerMap, MethodScores, Prediction, Target
from .settings import Settings
from .threads import cpu_threads_for
from .targets import ResolvedTarget, display_tokens, resolve_foil, resolve_target, validate_prompt
from .trust import assess


class _Watch(StoppingCriteria):
    """Called after every generated token: passes the tokens so far to `on_tokens` (the page shows the
    answer as it is generated) and stops generating once the analysis is cancelled."""

    def __init__(self, n_prompt: int, on_tokens: Callable[[torch.Tensor], None] | None) -> None:
        self.n_prompt, self.on_tokens = n_prompt, on_tokens

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        if self.on_tokens is not None:
            self.on_tokens(input_ids[0, self.n_prompt:].clone())
        return torch.full((input_ids.shape[0],), cancellation_requested(), dtype=torch.bool, device=input_ids.device)


def _greedy(loaded: LoadedModel, prompt_ids: torch.Tensor, max_new_tokens: int, with_logits: bool,
            on_tokens: Callable[[torch.Tensor], None] | None = None):
    with torch.inference_mode():
        return loaded.model.generate(
            prompt_ids.unsqueeze(0),
            attention_mask=torch.ones_like(prompt_ids).unsqueeze(0),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,  # greedy, whatever the model's generation_config says
            pad_token_id=loaded.tokenizer.pad_token_id,
            return_dict_in_generate=True,
            output_logits=with_logits,
            stopping_criteria=StoppingCriteriaList([_Watch(prompt_ids.numel(), on_tokens)]),
        )


def generate(loaded: LoadedModel, prompt_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Greedy continuation [n_generated] (may end with EOS), as the seed's `model.generate` call."""
    if max_new_tokens == 0:
        return prompt_ids.new_empty(0)
    output = _greedy(loaded, prompt_ids, max_new_tokens, with_logits=False)
    # A clone made outside inference mode, so the ids can index tensors that autograd tracks.
    return output.sequences[0, prompt_ids.numel():].clone()


def generate_with_logits(
    loaded: LoadedModel, prompt_ids: torch.Tensor, max_new_tokens: int,
    on_tokens: Callable[[torch.Tensor], None] | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """`generate`, plus the raw next-token logits [vocab] (on the CPU) before each generated token:
    step k saw the prompt and k earlier tokens. They spare `top_predictions` a forward of its own.
    `on_tokens(ids)` receives the tokens generated so far after each step."""
    if max_new_tokens == 0:
        return prompt_ids.new_empty(0), ()
    output = _greedy(loaded, prompt_ids, max_new_tokens, with_logits=True, on_tokens=on_tokens)
    check_cancelled()  # a cancelled generation stopped early: its answer is not the model's
    return output.sequences[0, prompt_ids.numel():].clone(), tuple(step[0].cpu() for step in output.logits)


def top_predictions(
    loaded: LoadedModel, input_ids: torch.Tensor, count: int = 10, logits: torch.Tensor | None = None
) -> list[Prediction]:
    """The model's most likely next tokens after `input_ids`, with probabilities (foil candidates).
    `logits` [vocab]: that position's logits when already computed (by generation)."""
    if logits is None:
        with torch.inference_mode():
            logits = loaded.model(input_ids=input_ids.unsqueeze(0), logits_to_keep=1, use_cache=False).logits[0, -1]
    probabilities = torch.softmax(logits.float(), dim=-1)
    values, ids = probabilities.topk(min(count, probabilities.numel()))
    texts = display_tokens(loaded, ids.tolist())
    return [Prediction(text, int(token), float(value)) for text, token, value in zip(texts, ids, values)]


def run_order(methods: tuple[str, ...]) -> tuple[str, ...]:
    """The order the methods run in: the cheap ones as asked, then the costly ones (IG, catalog `costly`),
    so that the cheap results can be shown while IG runs. The result lists them as asked."""
    return tuple(sorted(methods, key=lambda name: CATALOG[name].costly))


def _stages(settings: Settings) -> list[tuple[str, str | None]]:
    """The analysis's stages in order, as `Progress` numbers them."""
    stages = [("generate", None), *(("method", name) for name in run_order(settings.methods))]
    return stages + [("answer_map", None)] * settings.all_targets + [("trust", None)] * settings.trust


@dataclass(frozen=True)
class _Prepared:
    """What the methods explain, from the prompt and the generation: the request and its context."""

    encoded: EncodedPrompt
    generated_ids: torch.Tensor  # [n_generated]
    resolved: ResolvedTarget
    foil: Target | None
    special: np.ndarray  # [seq] bool
    user_tokens: np.ndarray  # [seq] bool: typed by the user (generated tokens before the target are not)
    held: np.ndarray  # [seq] bool: the held context
    predictions: tuple[Prediction, ...]  # the likeliest tokens at the target's position
    request: AttributionRequest
    tokens: tuple[str, ...]  # the input tokens' display strings
    spans: TokenSpans | None  # the input tokens' places in the decoded text (None: this tokenizer's cannot be read)


def _prepare(loaded: LoadedModel, prompt: str, settings: Settings,
             on_tokens: Callable[[torch.Tensor], None] | None = None) -> _Prepared:
    """Encode, generate once, resolve the target and foil, and build the methods' request."""
    encoded = encode_prompt(loaded, prompt, chat=settings.chat, system=settings.system)
    # Before any work: a prompt beyond the model's context, or whose analysis cannot fit, is refused.
    check_prompt(loaded, settings, encoded.ids.numel(),
                 "prompt with its chat template" if settings.chat else "prompt")
    prompt_ids = encoded.ids  # [n_prompt]
    if settings.granularity != "token":  # a separator the prompt lacks is refused before generating
        groups_from_spans(token_spans(loaded.tokenizer, prompt_ids.tolist()), settings.granularity,
                          separator=settings.separator, template=~encoded.user_tokens if settings.chat else None)
    generated_ids, step_logits = generate_with_logits(loaded, prompt_ids, settings.max_new_tokens, on_tokens)
    resolved = resolve_target(loaded, prompt_ids, generated_ids, settings.target, prompt, settings.continuation)
    # Generation step k saw the prompt and k generated tokens: for the k-th target, the same input.
    step = resolved.input_ids.numel() - prompt_ids.numel()
    reusable = resolved.from_generation and step < len(step_logits)  # not after a continuation's own tokens
    next_token_logits = step_logits[step] if reusable else None  # [vocab]
    predictions = tuple(top_predictions(loaded, resolved.input_ids, logits=next_token_logits))
    foil = None if settings.contrast is None else resolve_foil(loaded, settings.contrast, resolved.target)
    special = special_token_mask(loaded, resolved.input_ids).cpu().numpy()
    user_tokens = np.zeros(resolved.input_ids.numel(), dtype=bool)
    user_tokens[: encoded.user_tokens.size] = encoded.user_tokens
    held = held_context(special, user_tokens, prompt_ids.numel(), settings.chat)
    request = AttributionRequest(
        input_ids=resolved.input_ids,
        target_id=resolved.target.id,
        foil_id=None if foil is None else foil.id,
        settings=settings,
        held=torch.from_numpy(held) if settings.hold_context else None,
        removable=torch.from_numpy(user_tokens & ~held),
        # The cheap methods run before IG (`run_order`) so that they can be shown while it runs: the
        # gradient methods then take their input gradient from a pass of their own (one forward and
        # backward, against IG's 50 or more rows) rather than from IG's input row.
        work=SharedWork(with_integration=False),
        span_ids=None if resolved.span is None else torch.tensor(resolved.span.ids, device=resolved.input_ids.device),
        span_positions=resolved.span_positions,
    )
    tokens = tuple(display_tokens(loaded, resolved.input_ids.tolist()))
    try:
        spans = token_spans(loaded.tokenizer, resolved.input_ids.tolist())
    except ValueError:
        if settings.granularity != "token":
            raise
        spans = None  # the result then shows tokens only, and says why when asked for words
    return _Prepared(encoded, generated_ids, resolved, foil, special, user_tokens, held, predictions, request,
                     tokens, spans)


def _groupings(analysis: Analysis) -> dict[str, Grouping]:
    """The analysis's tokens grouped at every granularity its text allows (for occlusion, which hides
    whole groups): the chosen one must be possible (its error is the analysis's); another that is not
    (segments by a separator the text lacks) is left out, and asking the result for it gives that error."""
    groupings = {}
    for granularity in GRANULARITIES[1:]:
        try:
            groupings[granularity] = analysis.grouping(granularity)
        except ValueError:
            if granularity == analysis.granularity:
                raise
    return groupings


def _assemble(loaded: LoadedModel, prompt: str, settings: Settings, prepared: _Prepared,
              results: dict[str, MethodScores], answer_map: dict[str, AnswerMap] | None = None,
              report: TrustReport | None = None) -> Analysis:
    """The `Analysis` of what is done so far (the methods listed in the order asked)."""
    generated_ids, request = prepared.generated_ids, prepared.request
    return Analysis(
        model=loaded.name,
        prompt=prompt,
        input_tokens=prepared.tokens,
        input_ids=request.input_ids.cpu().numpy(),
        generated_text=loaded.tokenizer.decode(generated_ids.tolist(), skip_special_tokens=True),
        generated_ids=generated_ids.cpu().numpy(),
        target=prepared.resolved.target,
        methods={name: results[name] for name in settings.methods if name in results},
        foil=prepared.foil,
        top_predictions=prepared.predictions,
        special_tokens=prepared.special,
        user_tokens=prepared.user_tokens,
        held_tokens=prepared.held,
        chat=settings.chat,
        n_prompt_tokens=int(prepared.encoded.ids.numel()),
        system=settings.system,
        answer_map=answer_map or {},
        trust=report,
        settings=settings,
        span=prepared.resolved.span,
        token_spans=prepared.spans,
    )


def analyze(
    loaded: LoadedModel,
    prompt: str,
    settings: Settings | None = None,
    *,
    progress: Callable[[Progress], None] | None = None,
    partial: Callable[[Analysis], None] | None = None,
    answer: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
    **changes: Any,
) -> Analysis:
    """Explain which input tokens drove one predicted token, with `settings` (default: the seed's,
    `Settings()`); see `attribution.Settings` for each setting. Settings given as keywords
    (`analyze(loaded, prompt, n_steps="auto", trust=True)`) replace those of `settings`.

    `progress(Progress)` is called as each stage starts (for progress bars), with its kind, method,
    index and fraction. `answer(text)` receives the answer as it is generated, token by token, and
    `partial(Analysis)` the result as it grows: after generation (no methods yet), after each method
    (the cheap ones first, then IG), after the answer map; the last partial is the result. Setting
    `cancel` stops the analysis within one batch's time with `attribution.Cancelled`. Attribution covers
    every input token; `Analysis.user_tokens` says which ones the user typed, and `Analysis.settings`
    what the analysis was computed with.
    """
    if settings is not None and not isinstance(settings, Settings):
        raise ValueError(f"settings must be an attribution.Settings, got {type(settings).__name__}")
    settings = (settings or Settings()).replace(**changes) if changes else (settings or Settings())
    prompt = validate_prompt(prompt, limit=prompt_cap(loaded, settings)[0])
    stages = _stages(settings)

    def report_stage(kind: str, method: str | None = None) -> None:
        check_cancelled()
        if progress is not None:
            progress(Progress(kind, stages.index((kind, method)), len(stages), method))

    def show(analysis: Analysis) -> Analysis:
        if partial is not None:
            partial(analysis)
        return analysis

    on_tokens = None
    if answer is not None:
        def on_tokens(ids: torch.Tensor) -> None:
            answer(loaded.tokenizer.decode(ids.tolist(), skip_special_tokens=True))

    with cancellable(cancel), loaded.lock, cpu_threads_for(loaded):
        report_stage("generate")
        prepared = _prepare(loaded, prompt, settings, on_tokens)
        results: dict[str, MethodScores] = {}
        generated = show(_assemble(loaded, prompt, settings, prepared, results))
        request = prepared.request
        if prepared.spans is not None:
            request = replace(request, groupings=_groupings(generated))
        for name in run_order(settings.methods):
            report_stage("method", name)
            results[name] = METHODS[name](loaded, request)
            show(_assemble(loaded, prompt, settings, prepared, results))
        answer_map = {}
        if settings.all_targets:
            report_stage("answer_map")
            n_prompt = prepared.encoded.ids.numel()
            answer_map = compute_answer_map(
                loaded, prepared.encoded.ids, prepared.generated_ids, request,
                held=prepared.held[:n_prompt] if settings.hold_context else None,
            )
            show(_assemble(loaded, prompt, settings, prepared, results, answer_map))
        report = None
        if settings.trust:
            report_stage("trust")
            # Held context (the first position, special and template tokens): faithfulness never hides it,
            # agreement and the verdict leave it out.
            in_order = {name: results[name] for name in settings.methods}  # the verdict breaks ties in this order
            if settings.granularity == "token":
                report = assess(loaded, request, prepared.tokens, in_order, prepared.held, user=prepared.user_tokens)
            else:  # per word, sentence or segment: faithfulness removes whole groups
                so_far = _assemble(loaded, prompt, settings, prepared, results, answer_map)
                grouped, grouping = so_far.regrouped(), so_far.grouping()
                report = assess(loaded, request, grouped.input_tokens, {name: grouped.methods[name] for name in in_order},
                                grouping.any_of(prepared.held), user=grouping.any_of(prepared.user_tokens),
                                grouping=grouping)
        return show(_assemble(loaded, prompt, settings, prepared, results, answer_map, report))
