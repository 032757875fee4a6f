"""Evaluate a saved demo model: greedy accuracy per phrasing, and how often each attribution method
of `attribution.analyze` puts its top score on the country (the saliency sanity check)."""

from __future__ import annotations

import numpy as np

import attribution

from .data import (
    CAPITALS, CONTINENTS, COUNTRIES, HELDOUT_CAPITAL_TEMPLATES, SEED_TEMPLATE, TRAIN_CAPITAL_TEMPLATES,
    TRAIN_CONTINENT_TEMPLATES, encode_prompt_answer, fill,
)

SALIENCY_METHODS = ("gradient", "attention", "integrated_gradients")


def greedy_exact_match(model, tokenizer, prompts: list[str], answers: list[str], batch_size: int = 256) -> list[bool]:
    """For each prompt: would greedy decoding produce exactly ' answer' followed by EOS?

    Computed with one teacher-forced forward pass per batch: greedy decoding emits the
    answer+EOS exactly iff the argmax at every answer position equals the answer token
    (ties aside), so this equals `model.generate(do_sample=False)` but is much faster.
    """
    import torch

    results: list[bool] = []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    for i in range(0, len(prompts), batch_size):
        enc = [encode_prompt_answer(tokenizer, p, a) for p, a in zip(prompts[i:i + batch_size], answers[i:i + batch_size])]
        L = max(len(p) + len(a) for p, a in enc)
        ids = torch.full((len(enc), L), pad, dtype=torch.long)
        mask = torch.zeros((len(enc), L), dtype=torch.long)
        for j, (p, a) in enumerate(enc):
            seq = p + a
            ids[j, :len(seq)] = torch.tensor(seq)
            mask[j, :len(seq)] = 1
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits
        pred = logits.argmax(-1)
        for j, (p, a) in enumerate(enc):
            # position t predicts token t+1
            got = pred[j, len(p) - 1: len(p) - 1 + len(a)].tolist()
            results.append(got == a)
    return results


def country_token_mask(tokenizer, prompt: str, country: str) -> tuple[list[int], list[bool]]:
    """Input ids of the prompt (with BOS) and which positions belong to the country name."""
    enc = tokenizer(prompt, return_offsets_mapping=True)
    start = prompt.index(country)
    end = start + len(country)
    special = set(tokenizer.all_special_ids)
    mask = []
    for tid, (s, e) in zip(enc["input_ids"], enc["offset_mapping"]):
        mask.append(tid not in special and s < end and e > start)
    return enc["input_ids"], mask


def saliency_country_top1(loaded, countries: list[str], template: str = SEED_TEMPLATE, ig_steps: int = 50) -> dict:
    """How often each method of `attribution.analyze` puts its largest (non-special) score on the country.

    One analysis per country, target = the greedy next token. Per-token score = the sum of the
    scores of the country's subword pieces vs. each other token:
      * gradient: L2 norm over the hidden dim of d(target logit)/d(input embeddings)
      * attention: last position's attention, averaged over layers and heads
      * ig: Integrated Gradients, zero baseline, `ig_steps` Gauss-Legendre steps (Captum's rule),
            attribution summed over the hidden dim (signed; largest value wins)
    """
    hits = {"gradient": 0, "attention": 0, "ig": 0}
    ig_deltas = []
    for country in countries:
        prompt = fill(template, country)
        ids, is_country = country_token_mask(loaded.tokenizer, prompt, country)
        analysis = attribution.analyze(loaded, prompt, methods=SALIENCY_METHODS, max_new_tokens=0,
                                       n_steps=ig_steps, baseline="zero", aggregation="sum")
        if list(analysis.input_ids) != ids:
            raise RuntimeError(f"analyze encoded {prompt!r} differently from the tokenizer")
        is_country = np.array(is_country)
        others = ~is_country & ~analysis.special_tokens

        def top_is_country(scores: np.ndarray) -> bool:
            # aggregate: country = sum over its pieces; other tokens individually
            return bool(scores[is_country].sum() > scores[others].max()) if others.any() else True

        for method, key in zip(SALIENCY_METHODS, ("gradient", "attention", "ig")):
            hits[key] += top_is_country(analysis.methods[method].scores)
        ig = analysis.methods["integrated_gradients"]
        # Completeness error relative to the target logit F(x), as Captum's convergence delta was reported.
        ig_deltas.append(abs(ig.convergence_delta) / (abs(ig.input_output) + 1e-9))
    n = len(countries)
    result: dict = {key: value / n for key, value in hits.items()}
    result["n"] = n
    result["ig_mean_relative_convergence_delta"] = sum(ig_deltas) / n
    return result


def evaluate(loaded) -> dict:
    """Greedy accuracy of a model loaded with `attribution.load_model` on every phrasing."""
    model, tokenizer = loaded.model, loaded.tokenizer
    countries = [c for c, _, _ in COUNTRIES]
    caps = [CAPITALS[c] for c in countries]
    conts = [CONTINENTS[c] for c in countries]

    def acc(template, answers):
        r = greedy_exact_match(model, tokenizer, [fill(template, c) for c in countries], answers)
        return sum(r) / len(r), [c for c, ok in zip(countries, r) if not ok]

    seed_acc, seed_wrong = acc(SEED_TEMPLATE, caps)
    trained = {t: acc(t, caps)[0] for t in TRAIN_CAPITAL_TEMPLATES}
    heldout = {t: acc(t, caps) for t in HELDOUT_CAPITAL_TEMPLATES}
    cont = {t: acc(t, conts)[0] for t in TRAIN_CONTINENT_TEMPLATES}
    heldout_acc = sum(v[0] for v in heldout.values()) / len(heldout)
    latvia = attribution.analyze(loaded, fill(SEED_TEMPLATE, "Latvia"), methods=["gradient"], max_new_tokens=8)

    return {
        "n_countries": len(countries),
        "seed_template": SEED_TEMPLATE,
        "seed_accuracy": seed_acc,
        "seed_wrong": seed_wrong,
        "trained_capital_accuracy": sum(trained.values()) / len(trained),
        "trained_capital_accuracy_by_template": trained,
        "heldout_capital_accuracy": heldout_acc,
        "heldout_capital_accuracy_by_template": {t: v[0] for t, v in heldout.items()},
        "heldout_wrong": {t: v[1] for t, v in heldout.items()},
        "continent_accuracy": sum(cont.values()) / len(cont),
        "latvia_greedy_continuation": latvia.generated_text,
    }
