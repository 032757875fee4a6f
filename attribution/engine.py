"""`analyze`: one prompt in, one `Analysis` out — tokenise once, generate once, run each method."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from .answer_map import compute_answer_map
from .integrated_gradients import special_token_mask
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


def _greedy(loaded: LoadedModel, prompt_ids: torch.Tensor, max_new_tokens: int, with_logits: bool):
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
        )


def generate(loaded: LoadedModel, prompt_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Greedy continuation [n_generated] (may end with EOS), as the seed's `model.generate` call."""
    if max_new_tokens == 0:
        return prompt_ids.new_empty(0)
    output = _greedy(loaded, prompt_ids, max_new_tokens, with_logits=False)
    # A clone made outside inference mode, so the ids can index tensors that autograd tracks.
    return output.sequences[0, prompt_ids.numel():].clone()


def generate_with_logits(
    loaded: LoadedModel, prompt_ids: torch.Tensor, max_new_tokens: int
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """`generate`, plus the raw next-token logits [vocab] (on the CPU) before each generated token:
    step k saw the prompt and k earlier tokens. They spare `top_predictions` a forward of its own."""
    if max_new_tokens == 0:
        return prompt_ids.new_empty(0), ()
    output = _greedy(loaded, prompt_ids, max_new_tokens, with_logits=True)
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


def _stages(settings: Settings) -> list[tuple[str, str | None]]:
    """The analysis's stages in order, as `Progress` numbers them."""
    stages = [("generate", None), *(("method", name) for name in settings.methods)]
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
    next_token_logits: torch.Tensor | None  # [vocab] at the target's position, when generation saw it
    request: AttributionRequest
    tokens: tuple[str, ...]  # the input tokens' display strings


def _prepare(loaded: LoadedModel, prompt: str, settings: Settings) -> _Prepared:
    """Encode, generate once, resolve the target and foil, and build the methods' request."""
    encoded = encode_prompt(loaded, prompt, chat=settings.chat, system=settings.system)
    prompt_ids = encoded.ids  # [n_prompt]
    generated_ids, step_logits = generate_with_logits(loaded, prompt_ids, settings.max_new_tokens)
    resolved = resolve_target(loaded, prompt_ids, generated_ids, settings.target)
    # Generation step k saw the prompt and k generated tokens: for the k-th target, the same input.
    step = resolved.input_ids.numel() - prompt_ids.numel()
    next_token_logits = step_logits[step] if step < len(step_logits) else None
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
        # The methods run in the order asked: work they share (IG's integration gives the gradient
        # methods their input gradient) is computed by whichever asks first.
        work=SharedWork(with_integration="integrated_gradients" in settings.methods),
    )
    tokens = tuple(display_tokens(loaded, resolved.input_ids.tolist()))
    return _Prepared(encoded, generated_ids, resolved, foil, special, user_tokens, held, next_token_logits, request,
                     tokens)


def _run_stages(
    loaded: LoadedModel, prepared: _Prepared, settings: Settings, report_stage: Callable[..., None]
) -> tuple[dict[str, MethodScores], dict[str, AnswerMap], TrustReport | None]:
    """Each method in the order asked, then the answer map and the trust panel when asked for."""
    request, n_prompt = prepared.request, prepared.encoded.ids.numel()
    results = {}
    for name in settings.methods:
        report_stage("method", name)
        results[name] = METHODS[name](loaded, request)
    answer_map = {}
    if settings.all_targets:
        report_stage("answer_map")
        answer_map = compute_answer_map(
            loaded, prepared.encoded.ids, prepared.generated_ids, request,
            held=prepared.held[:n_prompt] if settings.hold_context else None,
        )
    report = None
    if settings.trust:
        report_stage("trust")
        # Held context (the first position, special and template tokens): faithfulness never hides it,
        # agreement and the verdict leave it out.
        report = assess(loaded, request, prepared.tokens, results, prepared.held, user=prepared.user_tokens)
    return results, answer_map, report


def analyze(
    loaded: LoadedModel,
    prompt: str,
    settings: Settings | None = None,
    *,
    progress: Callable[[Progress], None] | None = None,
    **changes: Any,
) -> Analysis:
    """Explain which input tokens drove one predicted token, with `settings` (default: the seed's,
    `Settings()`); see `attribution.Settings` for each setting. Settings given as keywords
    (`analyze(loaded, prompt, n_steps="auto", trust=True)`) replace those of `settings`.

    `progress(Progress)` is called as each stage starts (for progress bars), with its kind, method,
    index and fraction. Attribution covers every input token; `Analysis.user_tokens` says which ones the
    user typed, and `Analysis.settings` what the analysis was computed with.
    """
    if settings is not None and not isinstance(settings, Settings):
        raise ValueError(f"settings must be an attribution.Settings, got {type(settings).__name__}")
    settings = (settings or Settings()).replace(**changes) if changes else (settings or Settings())
    prompt = validate_prompt(prompt)
    stages = _stages(settings)

    def report_stage(kind: str, method: str | None = None) -> None:
        if progress is not None:
            progress(Progress(kind, stages.index((kind, method)), len(stages), method))

    with loaded.lock, cpu_threads_for(loaded):
        report_stage("generate")
        prepared = _prepare(loaded, prompt, settings)
        results, answer_map, report = _run_stages(loaded, prepared, settings, report_stage)
        request = prepared.request
        predictions = top_predictions(loaded, request.input_ids, logits=prepared.next_token_logits)

    generated_ids = prepared.generated_ids
    return Analysis(
        model=loaded.name,
        prompt=prompt,
        input_tokens=prepared.tokens,
        input_ids=request.input_ids.cpu().numpy(),
        generated_text=loaded.tokenizer.decode(generated_ids.tolist(), skip_special_tokens=True),
        generated_ids=generated_ids.cpu().numpy(),
        target=prepared.resolved.target,
        methods=results,
        foil=prepared.foil,
        top_predictions=tuple(predictions),
        special_tokens=prepared.special,
        user_tokens=prepared.user_tokens,
        held_tokens=prepared.held,
        chat=settings.chat,
        n_prompt_tokens=int(prepared.encoded.ids.numel()),
        system=settings.system,
        answer_map=answer_map,
        trust=report,
        settings=settings,
    )
