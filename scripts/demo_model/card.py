"""The demo model's card (README.md in its folder), written from the evaluation figures."""

from __future__ import annotations

from pathlib import Path

from attribution.testing import BOS as BOS_TOKEN, EOS as EOS_TOKEN

from .data import HELDOUT_CAPITAL_TEMPLATES, SEED_TEMPLATE, TRAIN_CAPITAL_TEMPLATES, TRAIN_CONTINENT_TEMPLATES
from .train import PROMPT_LOSS_WEIGHT


def write_card(out_dir: Path, config, tokenizer, r: dict, args) -> None:
    """README.md in `out_dir`: the model card, every figure taken from `r` (eval.json's content)."""
    pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
    s = r["saliency_country_top1"]
    heldout_rows = "\n".join(f"| `{t}` | {pct(a)} |" for t, a in r["heldout_capital_accuracy_by_template"].items())
    trained_rows = "\n".join(f"| `{t}` | {pct(a)} |" for t, a in r["trained_capital_accuracy_by_template"].items())
    ig_line = (f"| Integrated Gradients (zero baseline, {args.ig_steps} Gauss-Legendre steps as Captum's, summed over "
               f"the hidden dim) | {pct(s['ig'])} |")
    ig_delta = (f"Integrated Gradients' completeness error is large: with {args.ig_steps} steps, "
                f"|sum of attributions - (f(x) - f(baseline))| averages "
                f"{100 * s['ig_mean_relative_convergence_delta']:.0f}% of the target logit "
                f"(the convergence delta, mean over the {s['n']} prompts).")
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

For the seed phrasing over all {s['n']} countries: how often does a method of `attribution.analyze`
give its largest per-token score to the country (scores of the country's subword pieces summed;
BOS excluded)?  Target token = the greedy next token.

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

