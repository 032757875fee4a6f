"""`analyze`: one prompt in, one `Analysis` out — tokenise once, generate once, run each method."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from .integrated_gradients import BASELINES
from .methods import AGGREGATIONS, METHODS
from .integrated_gradients import AUTO_FIRST_INTERVALS
from .passes import SCORES, AttributionRequest, SharedWork
from .settings import DEFAULT_METHODS
from .models import LoadedModel
from .prompts import encode_prompt, held_context
from .answer_map import compute_answer_map
from .integrated_gradients import special_token_mask
from .results import Analysis, Prediction
from .trust import assess
from .settings import DEFAULT_TARGET_ERROR, MAX_AUTO_STEPS, MAX_NEW_TOKENS_LIMIT, MAX_STEPS
from .targets import (
    display_tokens,
    resolve_foil,
    resolve_target,
    validate_choice,
    validate_fraction,
    validate_integer,
    validate_methods,
    validate_prompt,
    validate_steps,
)


# Below this size a CPU forward is a few small matmuls, and thread start-up and synchronisation cost
# more than they save: measured on the 2.7M-parameter demo model on 2 cores, a full analysis took
# 155 ms on one thread and 716 ms on two (benchmarks/RESULTS.md has the controlled figures).
SINGLE_THREAD_PARAMETERS = 20_000_000


@contextmanager
def cpu_threads_for(loaded: LoadedModel) -> Iterator[None]:
    """Run small CPU models on one thread; leave everything else to torch's own choice."""
    n_parameters = sum(parameter.numel() for parameter in loaded.model.parameters())
    if loaded.input_device.type != "cpu" or n_parameters >= SINGLE_THREAD_PARAMETERS:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


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


@dataclass(frozen=True)
class Progress:
    """One stage of `analyze`, as its `progress` callback receives it."""

    kind: str  # "generate" | "method" | "answer_map" | "trust"
    index: int  # 0-based among the analysis's stages
    total: int  # how many stages this analysis has
    method: str | None = None  # kind "method": the method's registered name

    @property
    def fraction(self) -> float:
        """The share of stages done before this one starts, in [0, 1)."""
        return self.index / self.total

    @property
    def description(self) -> str:
        if self.kind == "method":
            return f"computing {self.method}"
        return _STAGE_DESCRIPTIONS[self.kind]


_STAGE_DESCRIPTIONS = {
    "generate": "generating the answer", "answer_map": "building the answer map", "trust": "assessing trust",
}


def analyze(
    loaded: LoadedModel,
    prompt: str,
    *,
    methods: Iterable[str] = DEFAULT_METHODS,
    max_new_tokens: int = 20,
    n_steps: int | str = 50,
    baseline: str = "zero",
    aggregation: str = "l2",
    score: str = "logit",
    hold_context: bool = False,
    target_error: float = DEFAULT_TARGET_ERROR,
    max_steps: int = MAX_STEPS,
    target: None | str | int = None,
    contrast: str | int | None = None,
    all_targets: bool = False,
    trust: bool = False,
    chat: bool = False,
    system: str | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> Analysis:
    """Explain which input tokens drove one predicted token.

    `target`: None for the model's greedy next token (the seed's "predicted token"); text such as
    " Riga" for that text's first token at the next position; an int k ≥ 1 for the k-th generated
    token, attributed over the prompt plus the k − 1 tokens generated before it.

    `contrast`: text whose first token is the foil (or the foil's token id) — explain logit(target) − logit(foil), "why Riga
    rather than Tallinn?" (attention-based scores do not depend on the target and stay as they are).
    `all_targets`: also build the answer map (every generated token × its sources).
    `trust`: also compute the trust panel (completeness, faithfulness, agreement, verdict).
    `n_steps`: IG path points, or "auto": refine (nested Romberg rule) until the relative
    completeness error is at most `target_error` or `max_steps` points are spent.
    `score`: what the gradient methods and IG explain: "logit" (the seed's), "probability" or
    "log_probability" (see `attribution.SCORES` for the contrastive forms).
    `hold_context`: IG's baseline keeps the held context (first position, special and chat-template
    tokens) at its real embeddings, so the path never switches the attention sink off.
    `chat`: make the prompt the user message of the model's chat template (with the generation prompt);
    `system` replaces the template's default system prompt. Attribution covers every input token;
    `Analysis.user_tokens` says which ones the user typed.
    `progress(Progress)` is called as each stage starts (for progress bars), with its kind, method,
    index and fraction.
    """
    prompt = validate_prompt(prompt)
    chosen = validate_methods(methods, METHODS)
    max_new_tokens = validate_integer(max_new_tokens, "max_new_tokens", 0, MAX_NEW_TOKENS_LIMIT)
    n_steps = validate_steps(n_steps)
    target_error = validate_fraction(target_error, "target_error")
    max_steps = validate_integer(max_steps, "max_steps", AUTO_FIRST_INTERVALS, MAX_AUTO_STEPS)
    score = validate_choice(score, "score", SCORES)
    if not isinstance(hold_context, bool):
        raise ValueError(f"hold_context must be True or False, got {hold_context!r}")
    baseline = validate_choice(baseline, "baseline", BASELINES)
    aggregation = validate_choice(aggregation, "aggregation", AGGREGATIONS)
    if not isinstance(chat, bool):
        raise ValueError(f"chat must be True or False, got {chat!r}")
    if system is not None:
        system = validate_prompt(system, what="system prompt")

    # The methods run in the order asked: work they share (IG's integration gives the gradient methods
    # their input gradient) lives in the request's SharedWork, computed by whichever asks first.
    stages = [("generate", None), *(("method", name) for name in chosen)]
    stages += [("answer_map", None)] * all_targets + [("trust", None)] * trust

    def report_stage(kind: str, method: str | None = None) -> None:
        if progress is not None:
            progress(Progress(kind, stages.index((kind, method)), len(stages), method))

    with loaded.lock, cpu_threads_for(loaded):
        encoded = encode_prompt(loaded, prompt, chat=chat, system=system)
        prompt_ids = encoded.ids  # [n_prompt]
        report_stage("generate")
        generated_ids, step_logits = generate_with_logits(loaded, prompt_ids, max_new_tokens)  # [n_generated]
        resolved = resolve_target(loaded, prompt_ids, generated_ids, target)
        # Generation step k saw the prompt and k generated tokens: for the k-th target, the same input.
        step = resolved.input_ids.numel() - prompt_ids.numel()
        next_token_logits = step_logits[step] if step < len(step_logits) else None  # [vocab]
        del step_logits  # the other steps' logits are not needed
        foil = None if contrast is None else resolve_foil(loaded, contrast, resolved.target)
        special = special_token_mask(loaded, resolved.input_ids).cpu().numpy()
        # Generated tokens before the target (target=k) are the model's, not the user's.
        user_tokens = np.zeros(resolved.input_ids.numel(), dtype=bool)
        user_tokens[: encoded.user_tokens.size] = encoded.user_tokens
        held = held_context(special, user_tokens, prompt_ids.numel(), chat)
        request = AttributionRequest(
            input_ids=resolved.input_ids,
            target_id=resolved.target.id,
            foil_id=None if foil is None else foil.id,
            n_steps=n_steps,
            baseline=baseline,
            aggregation=aggregation,
            score=score,
            held=torch.from_numpy(held) if hold_context else None,
            target_error=target_error,
            max_steps=max_steps,
            work=SharedWork(with_integration="integrated_gradients" in chosen),
        )
        results = {}
        for name in chosen:
            report_stage("method", name)
            results[name] = METHODS[name](loaded, request)
        tokens = tuple(display_tokens(loaded, resolved.input_ids.tolist()))
        answer_map = {}
        if all_targets:
            report_stage("answer_map")
            answer_map = compute_answer_map(
                loaded, prompt_ids, generated_ids, chosen, request=request,
                held=held[: prompt_ids.numel()] if hold_context else None,
            )
        report = None
        if trust:
            report_stage("trust")
            # Held context (the first position, special and template tokens): faithfulness never hides it,
            # agreement and the verdict leave it out.
            report = assess(loaded, request, tokens, results, held, user=user_tokens)
        predictions = top_predictions(loaded, resolved.input_ids, logits=next_token_logits)

    input_ids = resolved.input_ids.cpu().numpy()
    return Analysis(
        model=loaded.name,
        prompt=prompt,
        input_tokens=tokens,
        input_ids=input_ids,
        generated_text=loaded.tokenizer.decode(generated_ids.tolist(), skip_special_tokens=True),
        generated_ids=generated_ids.cpu().numpy(),
        target=resolved.target,
        methods=results,
        foil=foil,
        top_predictions=tuple(predictions),
        special_tokens=special,
        user_tokens=user_tokens,
        held_tokens=held,
        chat=chat,
        n_prompt_tokens=int(prompt_ids.numel()),
        system=system,
        answer_map=answer_map,
        trust=report,
    )
