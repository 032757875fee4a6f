"""`analyze`: one prompt in, one `Analysis` out — tokenise once, generate once, run each method."""

from __future__ import annotations

from typing import Iterable

import torch

from .integrated_gradients import BASELINES
from .methods import AGGREGATIONS, METHODS
from .passes import AttributionRequest
from .models import LoadedModel
from .results import Analysis
from .targets import (
    MAX_NEW_TOKENS_LIMIT,
    MAX_STEPS,
    display_tokens,
    resolve_target,
    tokenize_prompt,
    validate_choice,
    validate_integer,
    validate_methods,
    validate_prompt,
)

DEFAULT_METHODS = ("gradient", "attention", "integrated_gradients")


def generate(loaded: LoadedModel, prompt_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Greedy continuation [n_generated] (may end with EOS), as the seed's `model.generate` call."""
    if max_new_tokens == 0:
        return prompt_ids.new_empty(0)
    with torch.inference_mode():
        output = loaded.model.generate(
            prompt_ids.unsqueeze(0),
            attention_mask=torch.ones_like(prompt_ids).unsqueeze(0),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=loaded.tokenizer.pad_token_id,
        )
    return output[0, prompt_ids.numel():]


def analyze(
    loaded: LoadedModel,
    prompt: str,
    *,
    methods: Iterable[str] = DEFAULT_METHODS,
    max_new_tokens: int = 20,
    n_steps: int = 50,
    baseline: str = "zero",
    aggregation: str = "l2",
    target: None | str | int = None,
) -> Analysis:
    """Explain which input tokens drove one predicted token.

    `target`: None for the model's greedy next token (the seed's "predicted token"); text such as
    " Riga" for that text's first token at the next position; an int k ≥ 1 for the k-th generated
    token, attributed over the prompt plus the k − 1 tokens generated before it.
    """
    prompt = validate_prompt(prompt)
    chosen = validate_methods(methods, METHODS)
    max_new_tokens = validate_integer(max_new_tokens, "max_new_tokens", 0, MAX_NEW_TOKENS_LIMIT)
    n_steps = validate_integer(n_steps, "n_steps", 1, MAX_STEPS)
    baseline = validate_choice(baseline, "baseline", BASELINES)
    aggregation = validate_choice(aggregation, "aggregation", AGGREGATIONS)

    with loaded.lock:
        prompt_ids = tokenize_prompt(loaded, prompt)  # [n_prompt]
        generated_ids = generate(loaded, prompt_ids, max_new_tokens)  # [n_generated]
        resolved = resolve_target(loaded, prompt_ids, generated_ids, target)
        request = AttributionRequest(
            input_ids=resolved.input_ids,
            target_id=resolved.target.id,
            n_steps=n_steps,
            baseline=baseline,
            aggregation=aggregation,
        )
        results = {name: METHODS[name](loaded, request) for name in chosen}

    input_ids = resolved.input_ids.cpu().numpy()
    return Analysis(
        model=loaded.name,
        prompt=prompt,
        input_tokens=tuple(display_tokens(loaded, input_ids)),
        input_ids=input_ids,
        generated_text=loaded.tokenizer.decode(generated_ids.tolist(), skip_special_tokens=True),
        generated_ids=generated_ids.cpu().numpy(),
        target=resolved.target,
        methods=results,
    )
