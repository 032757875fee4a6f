"""Documents on the page: passages and a question become the prompt (`attribution.documents.document_prompt`)
and run the normal analysis per sentence or per passage, explaining the whole answer; the top sources table
is read from the stored result (`attribution.documents.top_sources`), never computed here.

"Ask about the documents" fills the prompt box, Scores per, the separator (blank lines) and Explain (the
whole answer), then runs the page's analyze event: every tab, the downloads and the trust panel follow the
granularity as after any analysis, and a click on the answer explains one of its tokens with the same prompt.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from attribution.display.documents import FIXED_HEADERS, source_headers, source_rows, sources_note
from attribution.display.labels import method_label
from attribution.documents import document_prompt, source_methods, split_passages, top_sources

from . import store

#: "Sources are": (label, granularity).
SOURCE_CHOICES = [("sentences", "sentence"), ("passages", "segment")]
#: The Example button's document: scripts/documents.py's document(8), one of those measured (README, "Which
#: sentence answered"; SmolLM2 answered "Nadia plays the trumpet."). tests/ui/test_documents_page.py checks
#: that it is still that document.
EXAMPLE_PASSAGES = ("Nadia lives in Rome. Nadia works as a dentist. Nadia has a pet parrot. Nadia's favourite "
                    "colour is pink. Nadia plays the trumpet.")
EXAMPLE_QUESTION = "Which instrument does Nadia play?"
HELP = ("Paste passages (separated by blank lines) and a question. **Ask about the documents** writes them into "
        "the prompt (the passages, then the question, each after a blank line), scores per sentence or per "
        "passage, explains the whole answer, and runs the analysis: the tabs colour the sentences or passages, "
        "the trust panel ranks them, and the table below lists the top sources. Click a token of the answer to "
        "explain just that token (on SmolLM2, context ablation ranked the answer's sentence first for the "
        "answer's token in every measured document: README, *Which sentence answered*).")
WAITING = "**Top sources:** press **Ask about the documents** to see which passages the answer rests on."


def build() -> dict[str, Any]:
    """The Documents accordion's components (inside the open gr.Blocks)."""
    parts: dict[str, Any] = {}
    with gr.Accordion("Ask about documents", open=False, elem_id="documents"):
        gr.Markdown(HELP, elem_classes=["legend-note"])
        with gr.Row(equal_height=False):
            parts["passages"] = gr.Textbox(label="Passages (separated by blank lines)", lines=6, max_lines=20,
                                           scale=3, elem_id="doc-passages",
                                           placeholder="First passage…\n\nSecond passage…")
            with gr.Column(scale=2, min_width=280):
                parts["question"] = gr.Textbox(label="Question", lines=2, max_lines=4, elem_id="doc-question",
                                               placeholder="What does the answer rest on?")
                parts["sources"] = gr.Radio(SOURCE_CHOICES, value="sentence", label="Sources are",
                                            elem_id="doc-sources")
                with gr.Row(equal_height=True):
                    parts["ask"] = gr.Button("Ask about the documents", variant="primary", scale=2,
                                             elem_id="doc-ask")
                    parts["example"] = gr.Button("Example", scale=1, min_width=90, elem_id="doc-example")
        parts["note"] = gr.Markdown(WAITING, elem_id="doc-note")
        parts["rank_by"] = gr.Dropdown([], value=None, label="Rank by", interactive=True, elem_id="doc-rank-by",
                                       info="the method whose scores order the sources (context ablation first "
                                            "when it ran)")
        parts["table"] = gr.Dataframe(headers=FIXED_HEADERS, label="Top sources", interactive=False, wrap=True,
                                      elem_id="doc-table")
    return parts


def compose(passages: Any, question: Any, sources: Any) -> list[Any]:
    """The documents as the analysis's inputs: the prompt, Scores per, the separator (blank lines) and
    Explain (the whole answer). gr.Error naming what is missing (the library's ValueError)."""
    try:
        choices = [value for _label, value in SOURCE_CHOICES]
        if sources not in choices:
            raise ValueError(f"unknown sources {sources!r}; valid choices: {', '.join(choices)}")
        prompt = document_prompt(split_passages(passages if passages is not None else ""),
                                 question if question is not None else "")
    except ValueError as error:
        raise gr.Error(str(error)) from None
    return [prompt, sources, "", "reply"]


def example() -> list[Any]:
    """The Example button: the measured document, its question, sources per sentence."""
    return [EXAMPLE_PASSAGES, EXAMPLE_QUESTION, "sentence"]


def sources_view(state: Any, by: Any = None) -> list[Any]:
    """The Rank by choices, the note and the top sources table of the session's stored result, at the
    granularity shown (Scores per); a hint for a result that is not of a documents prompt."""
    stored = store.lookup(state, warn=False)
    empty = pd.DataFrame([], columns=FIXED_HEADERS)
    if stored is None:
        return [gr.update(choices=[], value=None), WAITING, empty]
    analysis, granularity = stored.analysis, stored.view.granularity
    methods = source_methods(analysis)
    choices = [(method_label(name), name) for name in methods]
    by = by if by in methods else (methods[0] if methods else None)
    try:
        sources = top_sources(analysis, granularity, by=by)
    except ValueError as error:
        return [gr.update(choices=choices, value=by), f"**Top sources:** {error}.", empty]
    table = pd.DataFrame(source_rows(analysis, sources), columns=source_headers(analysis))
    return [gr.update(choices=choices, value=by), sources_note(analysis, granularity, by), table]


def wire(parts: dict[str, Any], controls: dict[str, Any], state: gr.State, run: dict[str, Any],
         private: dict[str, Any]) -> Any:
    """The accordion's events; returns the Ask event (Stop cancels it). `run`: the page's analyze event."""
    parts["example"].click(example, None, [parts["passages"], parts["question"], parts["sources"]], queue=False,
                           **private)
    filled = [controls["prompt"], controls["granularity"], controls["separator"], controls["target"]]
    asked = parts["ask"].click(compose, [parts["passages"], parts["question"], parts["sources"]], filled,
                               queue=False, **private).success(**run, **private)
    outputs = [parts["rank_by"], parts["note"], parts["table"]]
    # Each new result (or stage of one, or Scores per) ranks by its first method again: context ablation once
    # it is done, not the method a stage before it was ranked by.
    state.change(sources_view, state, outputs, concurrency_limit=None, show_progress="hidden", **private)
    parts["rank_by"].input(sources_view, [state, parts["rank_by"]], outputs, show_progress="hidden", **private)
    return asked
