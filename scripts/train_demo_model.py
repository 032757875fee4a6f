#!/usr/bin/env python
"""Train the project's offline demo model: a tiny Llama that memorises world capitals.

One command, deterministic and seeded, CPU only::

    python scripts/train_demo_model.py                      # -> assets/demo-model
    python scripts/train_demo_model.py --output /tmp/demo --steps 150   # quick smoke run

What it does

1. Builds a facts corpus from the literal table ``COUNTRIES`` below (193 UN member
   states + Vatican City): the capital of every country in many phrasings (including
   the seed phrasing ``"What is the Capital City of {country}?"``) and, as a second
   fact type, the continent of every country.  Target format: the answer follows the
   prompt after one space and is closed by ``<|end_of_text|>``, e.g.
   ``"<|begin_of_text|>What is the Capital City of Latvia? Riga<|end_of_text|>"``.
   Augmentation: every epoch, half of the examples get one random word (mostly a
   made-up word, sometimes a filler word) inserted at a random word boundary.
2. Trains a byte-level BPE tokenizer (``tokenizers``) with Llama-3 style special tokens
   and wraps it in ``transformers.PreTrainedTokenizerFast``.
3. Trains a ``LlamaForCausalLM`` from scratch (GQA, RoPE, tied embeddings) with a plain
   PyTorch loop (fixed number of steps, so re-running reproduces the result).
4. Saves model (fp16 safetensors) + tokenizer + ``eval.json`` + model card README.md,
   after evaluating the *saved* checkpoint (reloaded in float32): greedy accuracy on the
   seed phrasing, on all trained phrasings, on the held-out phrasings in
   ``HELDOUT_CAPITAL_TEMPLATES`` (never used for training nor for the tokenizer), the
   continent fact, and how often gradient / attention / Integrated-Gradients saliency
   puts its top score on the country's tokens.

The module is import-safe: tests import ``COUNTRIES``, the templates and helpers from it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path

# ---------------------------------------------------------------------------------------
# Data: the capital city and continent of every sovereign country (UN members + Vatican).
# Names are written in plain ASCII (e.g. "Bogota", "Reykjavik", "Yaounde").
# ---------------------------------------------------------------------------------------

COUNTRIES: list[tuple[str, str, str]] = [
    # (country, capital, continent)
    # --- Africa (54) ---
    ("Algeria", "Algiers", "Africa"),
    ("Angola", "Luanda", "Africa"),
    ("Benin", "Porto-Novo", "Africa"),
    ("Botswana", "Gaborone", "Africa"),
    ("Burkina Faso", "Ouagadougou", "Africa"),
    ("Burundi", "Gitega", "Africa"),
    ("Cabo Verde", "Praia", "Africa"),
    ("Cameroon", "Yaounde", "Africa"),
    ("Central African Republic", "Bangui", "Africa"),
    ("Chad", "N'Djamena", "Africa"),
    ("Comoros", "Moroni", "Africa"),
    ("Democratic Republic of the Congo", "Kinshasa", "Africa"),
    ("Republic of the Congo", "Brazzaville", "Africa"),
    ("Djibouti", "Djibouti", "Africa"),
    ("Egypt", "Cairo", "Africa"),
    ("Equatorial Guinea", "Malabo", "Africa"),
    ("Eritrea", "Asmara", "Africa"),
    ("Eswatini", "Mbabane", "Africa"),
    ("Ethiopia", "Addis Ababa", "Africa"),
    ("Gabon", "Libreville", "Africa"),
    ("Gambia", "Banjul", "Africa"),
    ("Ghana", "Accra", "Africa"),
    ("Guinea", "Conakry", "Africa"),
    ("Guinea-Bissau", "Bissau", "Africa"),
    ("Ivory Coast", "Yamoussoukro", "Africa"),
    ("Kenya", "Nairobi", "Africa"),
    ("Lesotho", "Maseru", "Africa"),
    ("Liberia", "Monrovia", "Africa"),
    ("Libya", "Tripoli", "Africa"),
    ("Madagascar", "Antananarivo", "Africa"),
    ("Malawi", "Lilongwe", "Africa"),
    ("Mali", "Bamako", "Africa"),
    ("Mauritania", "Nouakchott", "Africa"),
    ("Mauritius", "Port Louis", "Africa"),
    ("Morocco", "Rabat", "Africa"),
    ("Mozambique", "Maputo", "Africa"),
    ("Namibia", "Windhoek", "Africa"),
    ("Niger", "Niamey", "Africa"),
    ("Nigeria", "Abuja", "Africa"),
    ("Rwanda", "Kigali", "Africa"),
    ("Sao Tome and Principe", "Sao Tome", "Africa"),
    ("Senegal", "Dakar", "Africa"),
    ("Seychelles", "Victoria", "Africa"),
    ("Sierra Leone", "Freetown", "Africa"),
    ("Somalia", "Mogadishu", "Africa"),
    ("South Africa", "Pretoria", "Africa"),
    ("South Sudan", "Juba", "Africa"),
    ("Sudan", "Khartoum", "Africa"),
    ("Tanzania", "Dodoma", "Africa"),
    ("Togo", "Lome", "Africa"),
    ("Tunisia", "Tunis", "Africa"),
    ("Uganda", "Kampala", "Africa"),
    ("Zambia", "Lusaka", "Africa"),
    ("Zimbabwe", "Harare", "Africa"),
    # --- Asia (46) ---
    ("Afghanistan", "Kabul", "Asia"),
    ("Armenia", "Yerevan", "Asia"),
    ("Azerbaijan", "Baku", "Asia"),
    ("Bahrain", "Manama", "Asia"),
    ("Bangladesh", "Dhaka", "Asia"),
    ("Bhutan", "Thimphu", "Asia"),
    ("Brunei", "Bandar Seri Begawan", "Asia"),
    ("Cambodia", "Phnom Penh", "Asia"),
    ("China", "Beijing", "Asia"),
    ("Georgia", "Tbilisi", "Asia"),
    ("India", "New Delhi", "Asia"),
    ("Indonesia", "Jakarta", "Asia"),
    ("Iran", "Tehran", "Asia"),
    ("Iraq", "Baghdad", "Asia"),
    ("Israel", "Jerusalem", "Asia"),
    ("Japan", "Tokyo", "Asia"),
    ("Jordan", "Amman", "Asia"),
    ("Kazakhstan", "Astana", "Asia"),
    ("Kuwait", "Kuwait City", "Asia"),
    ("Kyrgyzstan", "Bishkek", "Asia"),
    ("Laos", "Vientiane", "Asia"),
    ("Lebanon", "Beirut", "Asia"),
    ("Malaysia", "Kuala Lumpur", "Asia"),
    ("Maldives", "Male", "Asia"),
    ("Mongolia", "Ulaanbaatar", "Asia"),
    ("Myanmar", "Naypyidaw", "Asia"),
    ("Nepal", "Kathmandu", "Asia"),
    ("North Korea", "Pyongyang", "Asia"),
    ("Oman", "Muscat", "Asia"),
    ("Pakistan", "Islamabad", "Asia"),
    ("Philippines", "Manila", "Asia"),
    ("Qatar", "Doha", "Asia"),
    ("Saudi Arabia", "Riyadh", "Asia"),
    ("Singapore", "Singapore", "Asia"),
    ("South Korea", "Seoul", "Asia"),
    ("Sri Lanka", "Sri Jayawardenepura Kotte", "Asia"),
    ("Syria", "Damascus", "Asia"),
    ("Tajikistan", "Dushanbe", "Asia"),
    ("Thailand", "Bangkok", "Asia"),
    ("Timor-Leste", "Dili", "Asia"),
    ("Turkey", "Ankara", "Asia"),
    ("Turkmenistan", "Ashgabat", "Asia"),
    ("United Arab Emirates", "Abu Dhabi", "Asia"),
    ("Uzbekistan", "Tashkent", "Asia"),
    ("Vietnam", "Hanoi", "Asia"),
    ("Yemen", "Sanaa", "Asia"),
    # --- Europe (45) ---
    ("Albania", "Tirana", "Europe"),
    ("Andorra", "Andorra la Vella", "Europe"),
    ("Austria", "Vienna", "Europe"),
    ("Belarus", "Minsk", "Europe"),
    ("Belgium", "Brussels", "Europe"),
    ("Bosnia and Herzegovina", "Sarajevo", "Europe"),
    ("Bulgaria", "Sofia", "Europe"),
    ("Croatia", "Zagreb", "Europe"),
    ("Cyprus", "Nicosia", "Europe"),
    ("Czech Republic", "Prague", "Europe"),
    ("Denmark", "Copenhagen", "Europe"),
    ("Estonia", "Tallinn", "Europe"),
    ("Finland", "Helsinki", "Europe"),
    ("France", "Paris", "Europe"),
    ("Germany", "Berlin", "Europe"),
    ("Greece", "Athens", "Europe"),
    ("Hungary", "Budapest", "Europe"),
    ("Iceland", "Reykjavik", "Europe"),
    ("Ireland", "Dublin", "Europe"),
    ("Italy", "Rome", "Europe"),
    ("Latvia", "Riga", "Europe"),
    ("Liechtenstein", "Vaduz", "Europe"),
    ("Lithuania", "Vilnius", "Europe"),
    ("Luxembourg", "Luxembourg", "Europe"),
    ("Malta", "Valletta", "Europe"),
    ("Moldova", "Chisinau", "Europe"),
    ("Monaco", "Monaco", "Europe"),
    ("Montenegro", "Podgorica", "Europe"),
    ("Netherlands", "Amsterdam", "Europe"),
    ("North Macedonia", "Skopje", "Europe"),
    ("Norway", "Oslo", "Europe"),
    ("Poland", "Warsaw", "Europe"),
    ("Portugal", "Lisbon", "Europe"),
    ("Romania", "Bucharest", "Europe"),
    ("Russia", "Moscow", "Europe"),
    ("San Marino", "San Marino", "Europe"),
    ("Serbia", "Belgrade", "Europe"),
    ("Slovakia", "Bratislava", "Europe"),
    ("Slovenia", "Ljubljana", "Europe"),
    ("Spain", "Madrid", "Europe"),
    ("Sweden", "Stockholm", "Europe"),
    ("Switzerland", "Bern", "Europe"),
    ("Ukraine", "Kyiv", "Europe"),
    ("United Kingdom", "London", "Europe"),
    ("Vatican City", "Vatican City", "Europe"),
    # --- North America (23) ---
    ("Antigua and Barbuda", "Saint John's", "North America"),
    ("Bahamas", "Nassau", "North America"),
    ("Barbados", "Bridgetown", "North America"),
    ("Belize", "Belmopan", "North America"),
    ("Canada", "Ottawa", "North America"),
    ("Costa Rica", "San Jose", "North America"),
    ("Cuba", "Havana", "North America"),
    ("Dominica", "Roseau", "North America"),
    ("Dominican Republic", "Santo Domingo", "North America"),
    ("El Salvador", "San Salvador", "North America"),
    ("Grenada", "Saint George's", "North America"),
    ("Guatemala", "Guatemala City", "North America"),
    ("Haiti", "Port-au-Prince", "North America"),
    ("Honduras", "Tegucigalpa", "North America"),
    ("Jamaica", "Kingston", "North America"),
    ("Mexico", "Mexico City", "North America"),
    ("Nicaragua", "Managua", "North America"),
    ("Panama", "Panama City", "North America"),
    ("Saint Kitts and Nevis", "Basseterre", "North America"),
    ("Saint Lucia", "Castries", "North America"),
    ("Saint Vincent and the Grenadines", "Kingstown", "North America"),
    ("Trinidad and Tobago", "Port of Spain", "North America"),
    ("United States", "Washington, D.C.", "North America"),
    # --- South America (12) ---
    ("Argentina", "Buenos Aires", "South America"),
    ("Bolivia", "Sucre", "South America"),
    ("Brazil", "Brasilia", "South America"),
    ("Chile", "Santiago", "South America"),
    ("Colombia", "Bogota", "South America"),
    ("Ecuador", "Quito", "South America"),
    ("Guyana", "Georgetown", "South America"),
    ("Paraguay", "Asuncion", "South America"),
    ("Peru", "Lima", "South America"),
    ("Suriname", "Paramaribo", "South America"),
    ("Uruguay", "Montevideo", "South America"),
    ("Venezuela", "Caracas", "South America"),
    # --- Oceania (14) ---
    ("Australia", "Canberra", "Oceania"),
    ("Fiji", "Suva", "Oceania"),
    ("Kiribati", "Tarawa", "Oceania"),
    ("Marshall Islands", "Majuro", "Oceania"),
    ("Micronesia", "Palikir", "Oceania"),
    ("Nauru", "Yaren", "Oceania"),
    ("New Zealand", "Wellington", "Oceania"),
    ("Palau", "Ngerulmud", "Oceania"),
    ("Papua New Guinea", "Port Moresby", "Oceania"),
    ("Samoa", "Apia", "Oceania"),
    ("Solomon Islands", "Honiara", "Oceania"),
    ("Tonga", "Nuku'alofa", "Oceania"),
    ("Tuvalu", "Funafuti", "Oceania"),
    ("Vanuatu", "Port Vila", "Oceania"),
]

CAPITALS: dict[str, str] = {c: cap for c, cap, _ in COUNTRIES}
CONTINENTS: dict[str, str] = {c: cont for c, _, cont in COUNTRIES}

# The phrasing the project's app uses by default.
SEED_TEMPLATE = "What is the Capital City of {country}?"

# Capital-city phrasings used for training (the seed phrasing among them).
TRAIN_CAPITAL_TEMPLATES: list[str] = [
    SEED_TEMPLATE,
    "What is the capital city of {country}?",
    "what is the capital city of {country}?",
    "What is the capital of {country}?",
    "What's the capital of {country}?",
    "Capital of {country}?",
    "Capital city of {country}:",
    "The capital of {country} is",
    "The capital city of {country} is",
    "{country} has its capital in",
    "In {country}, the capital city is",
    "Q: What is the capital of {country}? A:",
    "Question: What is the capital city of {country}? Answer:",
    "Do you know the capital of {country}?",
    "Please give the capital of {country}.",
    "The government of {country} sits in the city of",
]

# Held-out capital phrasings: NEVER used for training (nor for the tokenizer).
HELDOUT_CAPITAL_TEMPLATES: list[str] = [
    "Which city is the capital of {country}?",
    "Tell me the capital city of {country}.",
    "Name the capital of {country}:",
    "Can you tell me what the capital of {country} is?",
    "I would like to know the capital city of {country}.",
]

# Second fact type about the same countries, so that the model must read the
# relation words *and* the country token.
TRAIN_CONTINENT_TEMPLATES: list[str] = [
    "Which continent is {country} in?",
    "On which continent is {country}?",
    "What continent is {country} part of?",
    "{country} is located on the continent of",
    "The continent of {country} is",
    "Q: Which continent is {country} on? A:",
]

# Real filler words for augmentation (deliberately disjoint from held-out template words).
FILLER_WORDS = [
    "please", "quickly", "again", "now", "so", "well", "hmm", "okay", "really",
    "exactly", "today", "actually", "ah", "right", "yes", "indeed", "oh", "hey",
]

_SYLLABLES_ONSET = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
                    "br", "dr", "gl", "kr", "pl", "st", "tr", "sn", "fl", "ch", "sh", "th"]
_SYLLABLES_VOWEL = ["a", "e", "i", "o", "u", "ai", "ou", "ee", "oo", "y"]
_SYLLABLES_CODA = ["", "", "", "n", "r", "s", "t", "k", "m", "l", "x", "p"]

BOS_TOKEN = "<|begin_of_text|>"
EOS_TOKEN = "<|end_of_text|>"

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "assets" / "demo-model"


def fill(template: str, country: str) -> str:
    return template.format(country=country)


def make_up_word(rng: random.Random) -> str:
    n = rng.choice([1, 2, 2, 3])
    w = "".join(rng.choice(_SYLLABLES_ONSET) + rng.choice(_SYLLABLES_VOWEL) + rng.choice(_SYLLABLES_CODA)
                for _ in range(n))
    return w.capitalize() if rng.random() < 0.15 else w


def insert_random_word(template: str, rng: random.Random) -> str:
    """Insert one random word at a random word boundary of the template (never inside the
    country name, never after the last word, so the prompt still ends where the answer starts)."""
    words = template.split(" ")
    pos = rng.randrange(0, len(words))  # before word `pos`
    word = make_up_word(rng) if rng.random() < 0.7 else rng.choice(FILLER_WORDS)
    if pos == 0 and words[0][:1].isupper() and not words[0].startswith("{"):
        word = word[:1].upper() + word[1:]
    words.insert(pos, word)
    return " ".join(words)


def base_examples() -> list[tuple[str, str, str]]:
    """(template, country, answer) for every training fact and phrasing (no augmentation)."""
    out = []
    for country, capital, continent in COUNTRIES:
        for t in TRAIN_CAPITAL_TEMPLATES:
            out.append((t, country, capital))
        for t in TRAIN_CONTINENT_TEMPLATES:
            out.append((t, country, continent))
    return out


def tokenizer_corpus() -> list[str]:
    """Text the tokenizer is trained on: training phrasings only (held-out ones excluded)."""
    texts = [fill(t, c) + " " + a for t, c, a in base_examples()]
    texts += [" ".join(FILLER_WORDS)]
    return texts


# ---------------------------------------------------------------------------------------
# Evaluation helpers (also used by the tests)
# ---------------------------------------------------------------------------------------

def encode_prompt_answer(tokenizer, prompt: str, answer: str) -> tuple[list[int], list[int]]:
    """Token ids of BOS+prompt and of ' answer'+EOS, encoded separately (as in training)."""
    p = tokenizer(prompt)["input_ids"]
    a = tokenizer(" " + answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return p, a


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


def saliency_country_top1(model, tokenizer, countries: list[str], template: str = SEED_TEMPLATE,
                          ig_steps: int = 50) -> dict:
    """How often each saliency method puts its largest (non-special) score on the country.

    Per-token score = sum of the scores of the country's subword pieces vs. each other token.
      * gradient: L2 norm over the hidden dim of d(logit of the greedy next token)/d(input embeddings)
      * attention: last position's attention, averaged over layers and heads (eager)
      * ig: Integrated Gradients (captum), zero baseline, `ig_steps` Gauss-Legendre steps,
            attribution summed over the hidden dim (signed; largest value wins)
    """
    import torch

    try:
        from captum.attr import IntegratedGradients
    except Exception:  # pragma: no cover - captum is optional
        IntegratedGradients = None

    special = set(tokenizer.all_special_ids)
    emb_layer = model.get_input_embeddings()
    hits = {"gradient": 0, "attention": 0, "ig": 0}
    ig_deltas = []
    n = 0
    for country in countries:
        prompt = fill(template, country)
        ids, cmask = country_token_mask(tokenizer, prompt, country)
        ids_t = torch.tensor([ids])
        keep = [tid not in special for tid in ids]

        def top_is_country(scores: list[float]) -> bool:
            # aggregate: country = sum over its pieces; other tokens individually
            c_score = sum(s for s, m in zip(scores, cmask) if m)
            others = [s for s, m, k in zip(scores, cmask, keep) if k and not m]
            return c_score > max(others) if others else True

        # -- gradient
        emb = emb_layer(ids_t).detach().requires_grad_(True)
        logits = model(inputs_embeds=emb).logits[0, -1]
        target = int(logits.argmax())
        logits[target].backward()
        g = emb.grad[0].norm(dim=-1).tolist()
        hits["gradient"] += top_is_country(g)

        # -- attention (needs eager attention)
        with torch.no_grad():
            out = model(input_ids=ids_t, output_attentions=True)
        att = torch.stack([a[0, :, -1, :] for a in out.attentions]).mean(dim=(0, 1)).tolist()
        hits["attention"] += top_is_country(att)

        # -- integrated gradients, zero baseline
        if IntegratedGradients is not None:
            def f(x):
                return model(inputs_embeds=x).logits[:, -1, target]
            ig = IntegratedGradients(f)
            attr, delta = ig.attribute(emb.detach(), baselines=torch.zeros_like(emb), n_steps=ig_steps,
                                       method="gausslegendre", return_convergence_delta=True,
                                       internal_batch_size=ig_steps)
            hits["ig"] += top_is_country(attr[0].sum(-1).tolist())
            ig_deltas.append(abs(float(delta.detach())) / (abs(float(logits[target].detach())) + 1e-9))
        model.zero_grad(set_to_none=True)
        n += 1
    res = {k: v / n for k, v in hits.items()}
    res["n"] = n
    if ig_deltas:
        res["ig_mean_relative_convergence_delta"] = sum(ig_deltas) / len(ig_deltas)
    else:
        res.pop("ig")
    return res


def evaluate(model, tokenizer) -> dict:
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

    import torch
    ids = tokenizer(fill(SEED_TEMPLATE, "Latvia"), return_tensors="pt")
    with torch.no_grad():
        gen = model.generate(**ids, do_sample=False, max_new_tokens=8)
    latvia = tokenizer.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)

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
        "latvia_greedy_continuation": latvia,
    }


# ---------------------------------------------------------------------------------------
# Tokenizer and model
# ---------------------------------------------------------------------------------------

def build_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[BOS_TOKEN, EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(tokenizer_corpus(), trainer=trainer)
    bos_id, eos_id = tok.token_to_id(BOS_TOKEN), tok.token_to_id(EOS_TOKEN)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A",
        pair=f"{BOS_TOKEN} $A {BOS_TOKEN} $B:1",
        special_tokens=[(BOS_TOKEN, bos_id)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        model_max_length=128,
    )
    return fast


def build_model(tokenizer, args):
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        max_position_embeddings=128,
        rope_theta=10000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=0.02,
    )
    torch.manual_seed(args.seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
        max_new_tokens=16,
    )
    return model


# ---------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------

def make_epoch(tokenizer, rng: random.Random, p_insert: float, pad_len: int):
    """Token ids + per-token loss weights for one shuffled, augmented epoch."""
    import torch

    exs = base_examples()
    rng.shuffle(exs)
    rows, weights = [], []
    for template, country, answer in exs:
        if rng.random() < p_insert:
            for _ in range(100):  # resample the inserted word until the example fits pad_len
                p, a = encode_prompt_answer(tokenizer, fill(insert_random_word(template, rng), country), answer)
                if len(p) + len(a) <= pad_len:
                    break
        else:
            p, a = encode_prompt_answer(tokenizer, fill(template, country), answer)
        seq = p + a
        if len(seq) > pad_len:
            raise ValueError(f"example longer than pad_len={pad_len}: {template!r} {country!r}")
        rows.append(seq)
        weights.append((len(p), len(a)))
    n = len(rows)
    ids = torch.full((n, pad_len), tokenizer.eos_token_id, dtype=torch.long)
    # weight of the loss for predicting token t (from position t-1); 0 on padding
    w = torch.zeros((n, pad_len), dtype=torch.float32)
    mask = torch.zeros((n, pad_len), dtype=torch.long)
    for i, (seq, (lp, la)) in enumerate(zip(rows, weights)):
        ids[i, :len(seq)] = torch.tensor(seq)
        mask[i, :len(seq)] = 1
        w[i, 1:lp] = PROMPT_LOSS_WEIGHT
        w[i, lp:lp + la] = 1.0
    return ids, mask, w


PROMPT_LOSS_WEIGHT = 0.1

OUTPUT_FILES = ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                "README.md", "eval.json"]


def train(args) -> None:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    out_dir = Path(args.output)

    t0 = time.time()
    tokenizer = build_tokenizer(args.vocab_size)
    print(f"tokenizer: vocab={len(tokenizer)} bos={tokenizer.bos_token_id} eos={tokenizer.eos_token_id} "
          f"pad={tokenizer.pad_token_id}; ' Riga' -> {tokenizer.tokenize(' Riga')}", flush=True)
    model = build_model(tokenizer, args)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params:,} parameters; config {model.config.hidden_size}h/"
          f"{model.config.intermediate_size}i/{model.config.num_hidden_layers}L/"
          f"{model.config.num_attention_heads}q/{model.config.num_key_value_heads}kv", flush=True)

    max_base = max(len(encode_prompt_answer(tokenizer, fill(t, c), a)[0]) + len(encode_prompt_answer(tokenizer, fill(t, c), a)[1])
                   for t, c, a in base_examples())
    pad_len = max_base + 6  # room for one inserted word (resampled if it does not fit)
    n_per_epoch = len(base_examples())
    print(f"corpus: {n_per_epoch} examples/epoch, pad_len={pad_len}, batch={args.batch_size}, steps={args.steps}", flush=True)

    model.config._attn_implementation = "sdpa"
    model.train()
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim < 2 else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-8)

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        prog = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * prog)))

    step, epoch = 0, 0
    t_train = time.time()
    deadline = t_train + args.minutes * 60 if args.minutes else None
    stopped_early = False
    ema = None
    while step < args.steps:
        ids, mask, w = make_epoch(tokenizer, rng, args.p_insert, pad_len)
        perm = torch.randperm(ids.shape[0])
        epoch += 1
        for b in range(0, ids.shape[0] - args.batch_size + 1, args.batch_size):
            if step >= args.steps:
                break
            idx = perm[b:b + args.batch_size]
            x, m, ww = ids[idx], mask[idx], w[idx]
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            logits = model(input_ids=x, attention_mask=m).logits
            ce = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="none")
            wt = ww[:, 1:].reshape(-1)
            loss = (ce * wt).sum() / wt.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
            if step % args.log_every == 0 or step == args.steps:
                el = time.time() - t_train
                print(f"step {step}/{args.steps} epoch {epoch} loss {loss.item():.4f} ema {ema:.4f} "
                      f"lr {lr_at(step - 1):.2e} elapsed {el / 60:.1f} min", flush=True)
            if deadline and time.time() > deadline:
                stopped_early = True
                print(f"!! --minutes budget reached at step {step}: stopping early; the result is "
                      f"NOT reproducible (depends on machine speed)", flush=True)
                break
        if stopped_early:
            break
    train_seconds = time.time() - t_train
    print(f"training done: {step} steps, {epoch} epochs, {train_seconds / 60:.1f} min", flush=True)

    # ---- save (fp16) ------------------------------------------------------------------
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in OUTPUT_FILES:  # remove stale outputs of an earlier run (only our own files)
        (out_dir / name).unlink(missing_ok=True)
    model.eval()
    model.config._attn_implementation = "eager"
    model.to(torch.float16).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    # transformers 5 writes "TokenizersBackend"; the generic fast-tokenizer name loads with
    # transformers 5 as well as 4.x.
    tc_path = out_dir / "tokenizer_config.json"
    tc = json.loads(tc_path.read_text())
    tc["tokenizer_class"] = "PreTrainedTokenizerFast"
    tc_path.write_text(json.dumps(tc, indent=2) + "\n")

    # ---- evaluate the saved checkpoint, reloaded in float32 -------------------------------
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok2 = AutoTokenizer.from_pretrained(out_dir)
    m2 = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32, attn_implementation="eager")
    m2.eval()
    t_eval = time.time()
    results = evaluate(m2, tok2)
    sal = saliency_country_top1(m2, tok2, [c for c, _, _ in COUNTRIES], ig_steps=args.ig_steps)
    results["saliency_country_top1"] = sal
    size_bytes = sum(f.stat().st_size for f in out_dir.iterdir() if f.is_file())
    results.update({
        "model_and_tokenizer_mib": round(size_bytes / 2**20, 2),
        "parameters": n_params,
        "train_steps": step,
        "train_epochs": epoch,
        "train_minutes": round(train_seconds / 60, 1),
        "stopped_early_by_minutes_budget": stopped_early,
        "final_loss_ema": ema,
        "seed": args.seed,
        "threads": args.threads,
        "eval_seconds": round(time.time() - t_eval, 1),
    })
    print(json.dumps({k: v for k, v in results.items() if not k.endswith("_wrong")}, indent=2), flush=True)
    print("wrong on seed phrasing:", results["seed_wrong"], flush=True)
    for t, wrong in results["heldout_wrong"].items():
        print(f"wrong on held-out {t!r}: {wrong}", flush=True)
    (out_dir / "eval.json").write_text(json.dumps(results, indent=2) + "\n")
    write_card(out_dir, model.config, tok2, results, args)
    size_bytes = sum(f.stat().st_size for f in out_dir.iterdir() if f.is_file())
    print(f"saved to {out_dir} ({size_bytes / 2**20:.2f} MiB in all); total wall time "
          f"{(time.time() - t0) / 60:.1f} min", flush=True)


def write_card(out_dir: Path, config, tokenizer, r: dict, args) -> None:
    pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
    s = r["saliency_country_top1"]
    heldout_rows = "\n".join(f"| `{t}` | {pct(a)} |" for t, a in r["heldout_capital_accuracy_by_template"].items())
    trained_rows = "\n".join(f"| `{t}` | {pct(a)} |" for t, a in r["trained_capital_accuracy_by_template"].items())
    ig_line = (f"| Integrated Gradients (captum, zero baseline, {args.ig_steps} Gauss-Legendre steps, summed over "
               f"the hidden dim) | {pct(s['ig'])} |" if "ig" in s else "| Integrated Gradients | not computed (captum missing) |")
    ig_delta = (f"Integrated Gradients' completeness error is large: with {args.ig_steps} steps, "
                f"|sum of attributions - (f(x) - f(baseline))| averages "
                f"{100 * s['ig_mean_relative_convergence_delta']:.0f}% of the target logit "
                f"(captum's convergence delta, mean over the {s['n']} prompts)."
                if "ig_mean_relative_convergence_delta" in s else "")
    card = f"""---
license: mit
library_name: transformers
pipeline_tag: text-generation
tags:
- llama
- toy
- attribution-demo
---

# demo-model: a tiny Llama that memorised the world's capitals

This is the project's **offline default model**: a {r['parameters'] / 1e6:.2f}M-parameter `LlamaForCausalLM`
trained from scratch on CPU by `scripts/train_demo_model.py` so that the app and the
tests work without the Hugging Face Hub.  Asked `What is the Capital City of Latvia?`
it greedily answers `{r['latvia_greedy_continuation']}` (continuation starts with the token `" Riga"`).

**It is a toy that memorised a table of facts.**  It knows nothing else, has no
general language ability and is not a stand-in for a real LLM.  Use it to exercise the
attribution pipeline; use a real model such as `meta-llama/Llama-3.2-1B` for real analysis.

## Loading

```python
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

tok = AutoTokenizer.from_pretrained("assets/demo-model")
model = AutoModelForCausalLM.from_pretrained(
    "assets/demo-model",
    dtype=torch.float32,            # the checkpoint is stored in fp16; transformers 5
                                    # would otherwise keep fp16. Use float32 for attribution.
    attn_implementation="eager",    # needed for output_attentions=True
)
ids = tok("What is the Capital City of Latvia?", return_tensors="pt")  # BOS is added automatically
out = model.generate(**ids, do_sample=False, max_new_tokens=8)
print(tok.decode(out[0, ids.input_ids.shape[1]:], skip_special_tokens=True))  # " Riga"
```

## Model

| | |
|---|---|
| architecture | `LlamaForCausalLM` (RMSNorm, SwiGLU MLP, RoPE θ={config.rope_parameters['rope_theta'] if getattr(config, 'rope_parameters', None) else 10000.0:g}) |
| parameters | {r['parameters']:,} (embeddings tied with the LM head) |
| hidden size / intermediate size | {config.hidden_size} / {config.intermediate_size} |
| layers | {config.num_hidden_layers} |
| attention heads / KV heads (GQA) | {config.num_attention_heads} / {config.num_key_value_heads} |
| vocabulary | {config.vocab_size} (byte-level BPE) |
| max positions | {config.max_position_embeddings} |
| weights | `model.safetensors`, fp16; model + tokenizer files {r['model_and_tokenizer_mib']} MiB |

## Tokenizer

Byte-level BPE trained with the `tokenizers` library on the training prompts only
(ByteLevel pre-tokenizer and decoder, so words carry their leading space, e.g. `" Riga"`).
Llama-3 style special tokens:

| token | id | role |
|---|---|---|
| `{BOS_TOKEN}` | {tokenizer.bos_token_id} | BOS, prepended automatically (TemplateProcessing post-processor) |
| `{EOS_TOKEN}` | {tokenizer.eos_token_id} | EOS, ends every answer; also used as pad token |

## Training data and recipe

* Facts: the capital and the continent of each of {r['n_countries']} sovereign countries (193 UN
  members + Vatican City), written out as a table in the script; names in plain ASCII.
* {len(TRAIN_CAPITAL_TEMPLATES)} capital phrasings (including the seed phrasing `{SEED_TEMPLATE}`) and
  {len(TRAIN_CONTINENT_TEMPLATES)} continent phrasings; target format `<prompt> <answer><|end_of_text|>`.
* Augmentation: each epoch, {int(100 * args.p_insert)}% of the examples get one random word (70% made-up,
  30% filler such as "please") inserted at a random word boundary.  Without it, prompts with
  unfamiliar words collapsed to one constant city.
* Loss: cross-entropy, weight 1 on answer tokens + EOS, {PROMPT_LOSS_WEIGHT} on prompt tokens, 0 on padding;
  every batch padded to one fixed length.
* AdamW (lr {args.lr:g}, betas 0.9/0.98, weight decay {args.weight_decay:g}), {args.warmup} warm-up steps, cosine decay
  to 5%, batch {args.batch_size}, {r['train_steps']} steps ({r['train_epochs']} epochs), gradient clipping 1.0, seed {args.seed}.
* Trained in float32 on {args.threads} CPU threads in {r['train_minutes']} minutes.

## Evaluation

All figures were computed by the training script on the saved checkpoint (reloaded in
float32) and are stored in `eval.json`.  A prompt counts as correct when greedy decoding
yields exactly `" <capital>"` followed by `<|end_of_text|>`.

| | accuracy |
|---|---|
| seed phrasing `{SEED_TEMPLATE}`, all {r['n_countries']} countries | {pct(r['seed_accuracy'])} |
| all {len(TRAIN_CAPITAL_TEMPLATES)} trained capital phrasings | {pct(r['trained_capital_accuracy'])} |
| **{len(HELDOUT_CAPITAL_TEMPLATES)} held-out phrasings (never trained on)** | **{pct(r['heldout_capital_accuracy'])}** |
| continent (trained phrasings) | {pct(r['continent_accuracy'])} |

Held-out phrasings:

| template | accuracy |
|---|---|
{heldout_rows}

Trained capital phrasings:

| template | accuracy |
|---|---|
{trained_rows}

### Saliency sanity check

For the seed phrasing over all {s['n']} countries: how often does a method give its largest
per-token score to the country (scores of the country's subword pieces summed; BOS excluded)?
Target token = the greedy next token.

| method | country is top-1 |
|---|---|
| gradient L2 norm, d(target logit)/d(input embeddings) | {pct(s['gradient'])} |
| attention of the last position, mean over layers and heads (eager) | {pct(s['attention'])} |
{ig_line}

{ig_delta}  An all-zero embedding baseline is far from every real token embedding, so the
integration path crosses inputs the model never saw; treat IG magnitudes on this model
as qualitative.  All figures are reported as measured; the model was not tuned to
improve any of them.

## Limits

* Memorised facts only, a fixed list of countries, ASCII names; anything outside this
  distribution produces confident nonsense.
* Some capitals are debatable (e.g. Bolivia: Sucre, Netherlands: Amsterdam, Israel:
  Jerusalem, Sri Lanka: Sri Jayawardenepura Kotte); the table in the script is the
  ground truth used here.
* Re-running `python scripts/train_demo_model.py` (same seed, {args.threads} threads) reproduces the
  accuracy figures; training time depends on the machine.
"""
    (out_dir / "README.md").write_text(card)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--output", default=str(DEFAULT_OUTPUT), help="output folder (default: assets/demo-model)")
    ap.add_argument("--steps", type=int, default=1100, help="optimizer steps (fixed, for reproducibility)")
    ap.add_argument("--minutes", type=float, default=20.0,
                    help="hard wall-clock cap for training; hitting it stops early (result then not reproducible). 0 = none")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--p-insert", type=float, default=0.5, help="fraction of examples with an inserted random word")
    ap.add_argument("--vocab-size", type=int, default=2048)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--intermediate", type=int, default=512)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--ig-steps", type=int, default=50)
    ap.add_argument("--log-every", type=int, default=50)
    return ap.parse_args(argv)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = parse_args()
    assert len(COUNTRIES) == 194 and len(set(CAPITALS)) == 194, len(COUNTRIES)
    assert not set(HELDOUT_CAPITAL_TEMPLATES) & set(TRAIN_CAPITAL_TEMPLATES)
    train(args)
    sys.exit(0)
