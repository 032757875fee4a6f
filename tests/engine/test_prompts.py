"""Prompts through chat templates on the tiny model: which tokens the user typed is exact (checked
against the template's pieces, written out by hand and tokenised apart in helpers.chat_template_ids),
the raw path is the seed's tokenisation, and every template problem is a clear ValueError (library and
CLI)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import attribution
from attribution.models import LoadedModel
from attribution.prompts import encode_prompt
from attribution.targets import display_tokens
from conftest import SEED_PROMPT
from helpers import CHAT_TEMPLATE, NO_SYSTEM_TEMPLATE, chat_template_ids


def with_template(loaded: LoadedModel, template: str | None, name: str = "tiny-chat") -> LoadedModel:
    """The same model with a copy of its tokenizer that has this chat template."""
    tokenizer = copy.deepcopy(loaded.tokenizer)
    tokenizer.chat_template = template
    return LoadedModel(name=name, model=loaded.model, tokenizer=tokenizer, device=loaded.device, dtype=loaded.dtype)


class SlowView:
    """The tokenizer as a slow one looks to the encoder: no character offsets."""

    is_fast = False

    def __init__(self, fast):
        self._fast = fast

    def __getattr__(self, name):
        return getattr(self._fast, name)

    def __call__(self, text, **options):
        if options.get("return_offsets_mapping"):
            raise NotImplementedError("slow tokenizers have no offsets")
        return self._fast(text, **options)


@pytest.fixture(scope="module")
def chat_loaded(tiny_loaded) -> LoadedModel:
    return with_template(tiny_loaded, CHAT_TEMPLATE)


@pytest.fixture(scope="module", params=["fast", "slow"])
def chat_variants(request, chat_loaded) -> LoadedModel:
    if request.param == "fast":
        return chat_loaded
    return LoadedModel(name="tiny-chat-slow", model=chat_loaded.model, tokenizer=SlowView(chat_loaded.tokenizer),
                       device=chat_loaded.device, dtype=chat_loaded.dtype)


def flagged_text(loaded: LoadedModel, encoded) -> str:
    tokens = display_tokens(loaded, encoded.ids.tolist())
    return "".join(token for token, user in zip(tokens, encoded.user_tokens) if user)


# The tiny vocabulary has no whitespace merges, so no token can join the template's newline to the
# prompt's first character (real vocabularies can: see test_real_model.py).
PROMPTS = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126) | st.sampled_from("\n\t"),
                  min_size=1, max_size=60).filter(str.strip)


@settings(max_examples=40, deadline=None)
@given(prompt=PROMPTS, system=st.one_of(st.none(), st.just("same"), PROMPTS))
def test_user_tokens_spell_exactly_the_prompt(chat_variants, prompt, system):
    system = prompt if system == "same" else system  # a system prompt holding the very same text
    encoded = encode_prompt(chat_variants, prompt, chat=True, system=system)
    ids, user = chat_template_ids(chat_variants.tokenizer, prompt, system)
    assert encoded.ids.tolist() == ids
    assert encoded.user_tokens.tolist() == user
    assert flagged_text(chat_variants, encoded) == prompt


def test_a_system_prompt_with_the_same_text_is_not_the_users(chat_loaded):
    encoded = encode_prompt(chat_loaded, SEED_PROMPT, chat=True, system=SEED_PROMPT)
    assert encoded.text.count(SEED_PROMPT) == 2
    flagged = np.flatnonzero(encoded.user_tokens)
    # Exactly the second copy: the flagged run starts after the system turn's copy and spells the prompt.
    assert chat_loaded.tokenizer.decode(encoded.ids[: flagged[0]].tolist()).count(SEED_PROMPT) == 1
    assert flagged_text(chat_loaded, encoded) == SEED_PROMPT


@pytest.mark.parametrize("variant", ["fast", "slow"])
def test_the_raw_prompt_is_tokenised_as_the_seed_does(tiny_loaded, variant):
    loaded = tiny_loaded if variant == "fast" else LoadedModel(
        name="tiny-slow", model=tiny_loaded.model, tokenizer=SlowView(tiny_loaded.tokenizer),
        device=tiny_loaded.device, dtype=tiny_loaded.dtype)
    encoded = encode_prompt(loaded, SEED_PROMPT)
    ids = tiny_loaded.tokenizer(SEED_PROMPT)["input_ids"]
    assert encoded.ids.tolist() == ids and encoded.text == SEED_PROMPT
    special = set(tiny_loaded.tokenizer.all_special_ids)
    assert encoded.user_tokens.tolist() == [token not in special for token in ids]
    assert flagged_text(loaded, encoded) == SEED_PROMPT


def test_analyze_with_a_template_records_the_users_tokens(chat_loaded, tiny_loaded):
    analysis = attribution.analyze(chat_loaded, SEED_PROMPT, chat=True, system="Be brief.",
                                   methods=["gradient"], max_new_tokens=2)
    ids, user = chat_template_ids(chat_loaded.tokenizer, SEED_PROMPT, "Be brief.")
    assert analysis.input_ids.tolist() == ids and analysis.user_tokens.tolist() == user
    np.testing.assert_array_equal(analysis.template_tokens, ~analysis.user_tokens & ~analysis.special_tokens)
    exported = analysis.to_dict()
    assert exported["chat"] is True and exported["user_tokens"] == user

    raw = attribution.analyze(tiny_loaded, SEED_PROMPT, methods=["gradient"], max_new_tokens=2)
    assert raw.input_ids.tolist() == tiny_loaded.tokenizer(SEED_PROMPT)["input_ids"]
    assert raw.to_dict()["chat"] is False and not raw.template_tokens.any()


def test_a_template_that_refuses_system_prompts_says_so(tiny_loaded):
    loaded = with_template(tiny_loaded, NO_SYSTEM_TEMPLATE, name="tiny-no-system")
    with pytest.raises(ValueError, match="refused a system prompt.*leave the system prompt empty"):
        encode_prompt(loaded, SEED_PROMPT, chat=True, system="Be brief.")
    encoded = encode_prompt(loaded, SEED_PROMPT, chat=True)  # without one it works
    assert (encoded.ids.tolist(), encoded.user_tokens.tolist()) == chat_template_ids(loaded.tokenizer, SEED_PROMPT)


def test_a_template_that_does_not_place_the_message_once_is_refused(tiny_loaded):
    loaded = with_template(tiny_loaded, "{% for m in messages %}{{ m['content'] }} {{ m['content'] }}{% endfor %}")
    with pytest.raises(ValueError, match="does not place the user's message once"):
        encode_prompt(loaded, SEED_PROMPT, chat=True)


def test_chat_without_a_template_and_system_without_chat_are_refused(tiny_loaded, chat_loaded):
    assert not getattr(tiny_loaded.tokenizer, "chat_template", None)
    with pytest.raises(ValueError, match="has no chat template"):
        attribution.analyze(tiny_loaded, SEED_PROMPT, chat=True)
    with pytest.raises(ValueError, match="a system prompt needs the chat template"):
        attribution.analyze(chat_loaded, SEED_PROMPT, system="Be brief.")


def test_the_cli_refuses_chat_on_a_model_without_a_template(run_main):
    demo = str(attribution.DEMO_MODEL_PATH)
    for arguments, message in [
        (["--chat"], "has no chat template"),
        (["--system", "Be brief."], "a system prompt needs the chat template"),
    ]:
        status, _, stderr = run_main(SEED_PROMPT, "--model", demo, *arguments)
        lines = stderr.strip().splitlines()
        assert status == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], stderr
