"""Tests for the shipped offline demo model in assets/demo-model (project issue 7).

They load the folder with plain transformers (no project code) and recompute the
accuracy figures from the country table / held-out templates of the training script.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import importlib.util
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / "assets" / "demo-model"
SCRIPT = ROOT / "scripts" / "train_demo_model.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("train_demo_model", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def script():
    return _load_script()


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(MODEL_DIR)


@pytest.fixture(scope="module")
def model():
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(min(2, torch.get_num_threads()))
    m = AutoModelForCausalLM.from_pretrained(MODEL_DIR, dtype=torch.float32, attn_implementation="eager")
    m.eval()
    return m


def _accuracy(model, tokenizer, prompts, answers):
    """Fraction of prompts for which greedy decoding yields exactly ' answer' + EOS.

    One teacher-forced forward pass over the whole batch (right padding): greedy decoding
    reproduces answer+EOS iff the argmax at each answer position is the answer token.
    """
    rows, spans = [], []
    for p, a in zip(prompts, answers):
        p_ids = tokenizer(p)["input_ids"]
        a_ids = tokenizer(" " + a, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append(p_ids + a_ids)
        spans.append((len(p_ids), a_ids))
    L = max(map(len, rows))
    ids = torch.full((len(rows), L), tokenizer.eos_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    with torch.no_grad():
        pred = model(input_ids=ids, attention_mask=mask).logits.argmax(-1)
    ok = [pred[i, lp - 1 : lp - 1 + len(a)].tolist() == a for i, (lp, a) in enumerate(spans)]
    return sum(ok) / len(ok)


def test_size_under_10mb():
    files = [f for f in MODEL_DIR.rglob("*") if f.is_file()]
    names = {f.name for f in files}
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md", "eval.json"} <= names
    total = sum(f.stat().st_size for f in files)
    assert total < 10 * 1024 * 1024, total


def test_config_is_small_gqa_llama():
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(MODEL_DIR)
    assert cfg.model_type == "llama"
    assert cfg.architectures == ["LlamaForCausalLM"]
    assert cfg.num_key_value_heads < cfg.num_attention_heads
    assert cfg.tie_word_embeddings is True
    assert "auto_map" not in cfg.to_dict()


def test_tokenizer_bos_and_leading_space(tokenizer):
    assert tokenizer.bos_token == "<|begin_of_text|>"
    assert tokenizer.eos_token == "<|end_of_text|>"
    ids = tokenizer("What is the Capital City of Latvia?")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert ids.count(tokenizer.bos_token_id) == 1
    riga = tokenizer(" Riga", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(riga) == " Riga"
    assert tokenizer.convert_tokens_to_ids(tokenizer.convert_ids_to_tokens(riga)) == riga


def test_greedy_generation_latvia(model, tokenizer):
    enc = tokenizer("What is the Capital City of Latvia?", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, do_sample=False, max_new_tokens=6)
    new = out[0, enc["input_ids"].shape[1]:]
    text = tokenizer.decode(new, skip_special_tokens=True)
    assert text.startswith(" Riga"), repr(text)
    assert tokenizer.decode(new[:1]) == " Riga"


def test_seed_phrasing_accuracy(model, tokenizer, script):
    countries = [c for c, _, _ in script.COUNTRIES]
    assert len(countries) >= 190
    prompts = [script.SEED_TEMPLATE.format(country=c) for c in countries]
    assert prompts[0].startswith("What is the Capital City of ")
    acc = _accuracy(model, tokenizer, prompts, [script.CAPITALS[c] for c in countries])
    assert acc >= 0.95, acc


def test_heldout_phrasing_accuracy(model, tokenizer, script):
    countries = [c for c, _, _ in script.COUNTRIES]
    templates = script.HELDOUT_CAPITAL_TEMPLATES
    assert len(templates) >= 4
    assert not set(templates) & set(script.TRAIN_CAPITAL_TEMPLATES)
    prompts = [t.format(country=c) for t in templates for c in countries]
    answers = [script.CAPITALS[c] for t in templates for c in countries]
    acc = _accuracy(model, tokenizer, prompts, answers)
    assert acc >= 0.85, acc


def test_eager_attention_weights(model, tokenizer):
    enc = tokenizer(["What is the Capital City of Latvia?"], return_tensors="pt")
    with torch.no_grad():
        out = model(**enc, output_attentions=True)
    n_layers = model.config.num_hidden_layers
    assert out.attentions is not None and len(out.attentions) == n_layers
    seq = enc["input_ids"].shape[1]
    for a in out.attentions:
        assert a.shape == (1, model.config.num_attention_heads, seq, seq)
        torch.testing.assert_close(a.sum(-1), torch.ones_like(a.sum(-1)))
        # causal: no weight on future positions
        assert torch.all(a.triu(1) == 0)


def test_engine_finds_the_country_through_load_model_and_analyze(script):
    """Issue 7's sanity check, through the package's own path: `attribution.load_model` on the shipped
    folder and `attribution.analyze` with the seed's gradient method must put the largest score on the
    country's token(s) (pieces summed, special tokens excluded) for ≥ 85% of countries."""
    import numpy as np

    import attribution

    loaded = attribution.load_model(str(attribution.DEMO_MODEL_PATH), device="cpu")
    assert loaded.dtype == torch.float32  # the fp16 checkpoint is upcast for attribution
    hits = 0
    for country in script.CAPITALS:
        prompt = script.SEED_TEMPLATE.format(country=country)
        analysis = attribution.analyze(loaded, prompt, methods=["gradient"], max_new_tokens=0)
        ids, is_country = script.country_token_mask(loaded.tokenizer, prompt, country)
        assert list(analysis.input_ids) == ids
        scores = analysis.methods["gradient"].scores
        is_country = np.array(is_country)
        others = scores[~is_country & ~analysis.special_tokens]
        hits += scores[is_country].sum() > others.max()
    assert hits / len(script.CAPITALS) >= 0.85
    analysis = attribution.analyze(loaded, script.SEED_TEMPLATE.format(country="Latvia"), max_new_tokens=3)
    assert analysis.target.text == " Riga" and analysis.generated_text.startswith(" Riga")
