"""The page's settings, in one ordered list: it gives the /analyze parameters' order and defaults, the
deep-link keys, the share link, the example rows, and which `attribution.Settings` field each input fills.
New settings are only ever appended, so that API callers passing values by position keep working.

Most inputs fill one Settings field of the same meaning (`Setting.field`). Three fields are filled by
more than one input, and `ui.inputs.page_settings` combines them (`COMBINED`):

- `n_steps` from ig_steps and ig_auto: "auto" while Auto steps is ticked, else the step count;
- `target` from target, target_k, target_text and target_span: None (the next token), k, the text, or the
  stretch (k, m) that target_span "k-m" names;
- `contrast` from contrast_text and the page's picked foil (`contrast_pick`, not an API parameter): the
  picked token's id while the box still shows its text, else the text, None when empty;
- `answer_map_methods` from answer_map_ig (and the chosen methods): None (every chosen method that has an
  answer map) while it is ticked, else the chosen methods but the costly ones (IG, catalog `costly`).

`prompt` and `model` are the analysis' own arguments, and `hide_special` is a display choice (the
scores do not change): those have no field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from attribution.catalog import CATALOG
from attribution.limits import COMPLETENESS_TOLERANCE
from attribution.settings import PRESETS, Settings

SEED_PROMPT = "What is the Capital City of Latvia?"
EXAMPLE_PROMPTS = (
    SEED_PROMPT,
    "The capital of France is",
    "Which city is the capital of Germany?",
    "The Eiffel Tower is located in the city of",
)
SEED = PRESETS["seed"]


@dataclass(frozen=True)
class Setting:
    """One input of the analysis: its /analyze parameter name, its deep-link key, its default, how the
    share link writes it, and the `attribution.Settings` field it fills."""

    name: str
    link: str
    default: Any
    # How the share link writes it: "text" (always), "value" (left out when at the default), "list"
    # (comma-separated, left out when at the default), "flag" (1 or 0, left out when at the default),
    # "chat" (a flag, also written whenever the model is not the page's default).
    kind: str
    # The Settings field it fills; None for the page's own inputs (prompt, model, hide_special). A field
    # named by several settings is one of COMBINED.
    field: str | None
    # Written only while another setting has this value: (its name, the value).
    only_with: tuple[str, Any] | None = None


SETTINGS: tuple[Setting, ...] = (
    Setting("prompt", "prompt", SEED_PROMPT, "text", None),
    Setting("model", "model", None, "value", None),  # None: the page's default model
    # Every registered method, so every tab has something to show. This also keeps the cached examples
    # free of empty outputs: gradio's example cache writes None as '' and cannot read it back.
    Setting("methods", "methods", list(CATALOG), "list", "methods"),
    Setting("max_new_tokens", "max_new_tokens", 20, "value", "max_new_tokens"),
    # The seed notebook's IG settings (the seed preset's), so that its numbers appear.
    Setting("ig_steps", "steps", SEED.n_steps, "value", "n_steps"),
    Setting("ig_baseline", "baseline", SEED.baseline, "value", "baseline"),
    Setting("aggregation", "aggregation", SEED.aggregation, "value", "aggregation"),
    Setting("target", "target", "next", "value", "target"),
    Setting("target_k", "k", 1, "text", "target", only_with=("target", "generated")),
    Setting("target_text", "text", "", "text", "target", only_with=("target", "text")),
    Setting("contrast_text", "contrast", "", "value", "contrast"),  # "" = no contrast
    # Both cost well under a second of compute on the demo model (measured: about 0.15 s CPU for the
    # answer map and 0.2 s for the trust panel, on top of 0.1 s for the six methods), so both are on.
    Setting("all_targets", "answer_map", True, "flag", "all_targets"),
    Setting("trust", "trust", True, "flag", "trust"),
    # Display only (the scores are the same either way): the held context (first position, special and
    # template tokens) stays grey, out of the colour scaling, so one attention sink does not wash out every
    # other colour. The Seed settings button unticks it: the seed's view, every token scaled.
    Setting("hide_special", "hide_special", True, "flag", None),
    # The API's default: the raw prompt, as before chat templates. The page ticks Chat template for chat
    # models (`chat_default`) instead; a share link for another model always says chat.
    Setting("chat", "chat", SEED.chat, "chat", "chat"),
    Setting("system", "system", "", "value", "system"),  # "" = the chat template's default system prompt
    Setting("ig_auto", "auto", False, "flag", "n_steps"),  # True: IG steps to `target_error` (n_steps="auto")
    Setting("target_error", "target_error", SEED.target_error, "value", "target_error",
            only_with=("ig_auto", True)),
    Setting("score", "score", SEED.score, "value", "score"),
    Setting("hold_context", "hold_context", SEED.hold_context, "flag", "hold_context"),
    # The answer map with IG too: off, for every model. IG per generated token: on SmolLM2-135M-Instruct
    # without the chat template (as a base model's page runs), "The capital of Latvia is Riga. The capital of
    # France is", 20 new tokens, the seed's other settings, the page took 97.6 s with it, 87.9 s of them
    # the IG map; without it the map took 1.4 s and the page 12.0 s (2 CPU cores). The Answer map tab offers
    # it with its estimated cost. (The API's default too: gradio's /analyze defaults are the page's values.)
    Setting("answer_map_ig", "answer_map_ig", False, "flag", "answer_map_methods"),
    # Explain → a stretch of the answer: generated tokens "k-m", typed or picked by clicking the answer twice.
    Setting("target_span", "span", "", "text", "target", only_with=("target", "span")),
    Setting("continuation", "continuation", "", "value", "continuation"),  # "" = none; else explained as a span
    # Context ablation's random ablations (one forward pass each; the library's default, chosen by
    # measurement: README, "Which sentence answered").
    Setting("n_ablations", "ablations", SEED.n_ablations, "value", "n_ablations"),
    # Scores per token, word, sentence or segment: the trust panel and the downloads at Analyze; switching it
    # afterwards redraws the stored result per group (the model is not run: occlusion has hidden every
    # granularity's groups already).
    Setting("granularity", "granularity", SEED.granularity, "value", "granularity"),
    Setting("separator", "separator", "", "value", "separator"),  # "" = segments split at blank lines
)

#: The Settings fields filled by several inputs (see the module's docstring): field → those inputs.
COMBINED: dict[str, tuple[str, ...]] = {
    "n_steps": ("ig_steps", "ig_auto"),
    "target": ("target", "target_k", "target_text", "target_span"),
    "contrast": ("contrast_text",),  # and the page's contrast_pick
    "answer_map_methods": ("answer_map_ig",),  # and the chosen methods
}

#: The page's defaults on a chat model (`ui.inputs.chat_default`), where the seed's IG settings do not
#: converge (zero baseline: 50 steps off by far, so the trust panel reruns IG): the recommended preset's IG
#: settings (mean baseline, held context, signed sum, auto steps), with the answer map without IG (as every
#: page). Auto steps stop at the completeness the trust panel calls converged (COMPLETENESS_TOLERANCE, 5%),
#: so the panel cites IG and reruns nothing; the recommended preset's 1% is one click away (its button, or the
#: Target error field). Measured on SmolLM2's 12 chat capital questions (`scripts/measure_ig_target.py`,
#: the scores against a reference to 0.05%): to 5%, a median of 57 path points (worst 81) and token scores
#: within 2.5% of the reference (L2, median; worst 3.9%); to 1%, 72 points (worst 135) and 1.2% (worst
#: 4.1%); the top token is the reference's at either target on all 12. On the seed prompt 5% takes 39
#: points (3.2%) against 75 (0.65%): the page 8.4 s quiet and 13.2-13.3 s beside another job, 5.9-6.0x and
#: 8.2-8.7x the gradient-only analysis, against 11.1-12.6 s and 17.3-17.6 s (7.7-9.1x, 11.6x) to 1%
#: (`benchmarks/real_model.py`, 2-core CPU; RESULTS.md). Explaining
#: the reply's first token "The" (an earlier default) a fixed 50 steps missed completeness by 6.8%; 214 s
#: with the seed's settings.
CHAT_MODEL_DEFAULTS: dict[str, Any] = {
    # Occlusion (one forward per input token: 8.3 s of a 45 s chat page at load 3.9) and context ablation
    # (it ranks sentences; a chat question is one) are one tick away, not run on every real-model analysis.
    "methods": [name for name in CATALOG if name not in ("occlusion", "context_ablation")],
    "ig_steps": 50,  # what IG runs if Auto steps is unticked
    "ig_auto": True,
    "target_error": COMPLETENESS_TOLERANCE,
    "ig_baseline": PRESETS["recommended"].baseline,
    "aggregation": PRESETS["recommended"].aggregation,
    "hold_context": PRESETS["recommended"].hold_context,
    # A chat reply's first token is filler ("The"): explain the first token of the answer's first content
    # word (" Riga"; SmolLM2 splits it " Rig" + "a").
    "target": "answer",
}
#: Settings fields the page never sets: they stay at the library's defaults.
LIBRARY_ONLY = tuple(name for name in Settings.names() if name not in {setting.field for setting in SETTINGS})

#: /analyze's parameters in order, and their defaults.
SETTING_KEYS = tuple(setting.name for setting in SETTINGS)
DEFAULTS: dict[str, Any] = {setting.name: setting.default for setting in SETTINGS
                           if setting.name not in ("prompt", "model")}  # those two: the page's own
#: A deep link's parameters, in the order of the settings they fill.
DEEP_LINK_KEYS = tuple(setting.link for setting in SETTINGS)

# The share button: the settings' values (SETTINGS order) → a deep link holding the prompt and every
# setting not at the page's default (copied to the clipboard where the page may).
_SHARE_JS = """
(...values) => {
  const settings = SETTINGS_JSON;
  const defaults = DEFAULTS_JSON;
  const value = Object.fromEntries(settings.map((setting, index) => [setting.name, values[index]]));
  const params = new URLSearchParams();
  params.set("prompt", value.prompt ?? "");
  const same = (a, b) => String(a ?? "") === String(b ?? "");
  for (const setting of settings.slice(1)) {
    const current = value[setting.name];
    const fallback = defaults[setting.name];
    if (setting.only_with && !same(value[setting.only_with[0]], setting.only_with[1])) continue;
    if (setting.kind === "text") {
      params.set(setting.link, String(current ?? ""));
    } else if (setting.kind === "list") {
      const joined = (current ?? []).join(",");
      if (!same(joined, (fallback ?? []).join(","))) params.set(setting.link, joined);
    } else if (setting.kind === "flag") {
      if (Boolean(current) !== Boolean(fallback)) params.set(setting.link, current ? "1" : "0");
    } else if (setting.kind === "chat") {
      // Another model has its own chat default: say chat then, so the link opens as shared.
      if (!same(value.model, defaults.model) || Boolean(current) !== Boolean(fallback)) {
        params.set(setting.link, current ? "1" : "0");
      }
    } else if (!same(current, fallback)) {
      params.set(setting.link, String(current ?? ""));
    }
  }
  const url = window.location.origin + window.location.pathname + "?" + params.toString();
  if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(url).catch(() => {});
  return url;
}
"""


def model_defaults(chat_model: bool) -> dict[str, Any]:
    """The settings' defaults for a chat model (CHAT_MODEL_DEFAULTS over the API's) or any other (the API's,
    the seed's)."""
    return {**DEFAULTS, **(CHAT_MODEL_DEFAULTS if chat_model else {})}


def page_defaults(default_model: str, chat: bool) -> dict[str, Any]:
    """The defaults as the page starts: the API's, with its model and that model's chat default (`chat`:
    the model is a chat model, `ui.inputs.chat_default`), and a chat model's affordable IG settings."""
    return {**model_defaults(chat), "model": default_model, "chat": chat}


def share_js(defaults: Mapping[str, Any]) -> str:
    """The share button's JavaScript for a page that starts at `defaults` (`page_defaults`)."""
    settings = [{"name": s.name, "link": s.link, "kind": s.kind, "only_with": s.only_with} for s in SETTINGS]
    return (_SHARE_JS.replace("SETTINGS_JSON", json.dumps(settings))
            .replace("DEFAULTS_JSON", json.dumps(dict(defaults))))


def example_rows(defaults: Mapping[str, Any]) -> list[list[Any]]:
    """The Examples table: each example prompt with every other setting at the page's default."""
    return [[{**defaults, "prompt": text}[key] for key in SETTING_KEYS] for text in EXAMPLE_PROMPTS]
