"""The page's default analysis on a real model, stage by stage: what a visitor of the Space waits for.

    python benchmarks/real_model.py [--model HuggingFaceTB/SmolLM2-135M-Instruct] [--repeats 1] [--json out.json]
        [--cases a,b] [--prompt TEXT] [--no-peer]

Runs `attribution.analyze` with the page's default settings (every method, 20 new tokens, IG 50 steps
from the seed's zero baseline, the answer map and the trust panel; the chat template for a chat model) on
the seed prompt (or `--prompt`), with and without the chat template, and the gradient-only analysis of the
same prompt in the same run (the issue's 10× yardstick). Each stage's seconds come from the engine's own progress
events; the first highlighted tokens are the first partial result with a method in it (the page shows
each partial result as it comes), timed from the start and from the answer (the partial result after
generation). The peer row: Inseq's IG (50 steps, zero baseline, as the seed's) on the same chat prompt
and target in the same run, beside the engine's IG with the same settings; skipped, with the reason, when
inseq does not import. Prints a Markdown table and the machine's load average before and after. Settings
are passed as keywords, so the same script times an older checkout (PYTHONPATH=that checkout).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if os.environ.get("PYTHONPATH") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import attribution  # noqa: E402

SEED_PROMPT = "What is the Capital City of Latvia?"
#: The page's defaults (ui/settings.py SETTINGS), as library keywords.
PAGE_DEFAULTS = dict(
    methods=list(attribution.METHODS), max_new_tokens=20, n_steps=50, baseline="zero", aggregation="l2",
    score="logit", hold_context=False, all_targets=True, trust=True,
)


#: What the page computes by default for a chat model (ui/settings.py): IG that converges there (mean
#: baseline, held context, signed sum, 50 steps) and the answer map without IG (one click adds it).
CHAT_DEFAULTS = dict(chat=True, baseline="mean", hold_context=True, aggregation="sum",
                     answer_map_methods=["gradient", "attention", "input_x_gradient"])
#: short name → (what it is, analyze() keywords); all on the seed prompt.
CASES = {
    "chat-page": ("chat, page defaults", dict(PAGE_DEFAULTS, chat=True)),
    "chat-affordable": ("chat, affordable defaults", dict(PAGE_DEFAULTS, **CHAT_DEFAULTS)),
    "chat-affordable-auto": ("chat, affordable defaults, IG auto steps to 1%",
                             dict(PAGE_DEFAULTS, **CHAT_DEFAULTS, n_steps="auto")),
    "raw-page": ("raw, page defaults", dict(PAGE_DEFAULTS, chat=False)),
    "chat-gradient": ("chat, gradient only", dict(methods=["gradient"], max_new_tokens=20, chat=True)),
}


def page_chat_defaults() -> dict:
    """What the page of this checkout computes for a chat model, read from ui/settings.py (so the row
    cannot drift from the page): its defaults through the page's own translation into Settings."""
    from ui.inputs import page_settings
    from ui.settings import page_defaults

    values = page_defaults("benchmark", chat=True)
    return page_settings({**values, "prompt": SEED_PROMPT}).to_dict()


def page_chat_gradient() -> dict:
    """The gradient-only analysis of the same prompt and target as `page_chat_defaults` (the 10× yardstick)."""
    settings = page_chat_defaults()
    return dict(methods=["gradient"], max_new_tokens=settings["max_new_tokens"], chat=True,
                target=settings["target"], all_targets=False, trust=False)


def page_chat_recommended_ig() -> dict:
    """The page's chat defaults with IG refined to the recommended preset's target (1%) instead of the
    trust panel's tolerance (5%): what the stricter target costs on the page."""
    return dict(page_chat_defaults(), target_error=attribution.PRESETS["recommended"].target_error)


def page_chat_long_answer() -> dict:
    """The page's answer map over a longer reply (60 new tokens at most), without IG and the trust panel:
    the answer map's row of this case is what a visitor who asks for a long answer waits for."""
    settings = page_chat_defaults()
    return dict(settings, max_new_tokens=60, trust=False,
                methods=[name for name in settings["methods"] if name != "integrated_gradients"])


#: Cases whose settings come from this checkout's page (`--cases` names them like the others).
PAGE_CASES = {
    "chat-page-now": ("chat, the page's defaults (from ui/settings.py)", page_chat_defaults),
    "chat-gradient-now": ("chat, gradient only, the page's target", page_chat_gradient),
    "chat-long-answer-now": ("chat, the page's answer map over up to 60 new tokens, no IG or trust panel",
                             page_chat_long_answer),
    "chat-page-recommended-ig-now": ("chat, the page's defaults with IG to the recommended preset's target",
                                     page_chat_recommended_ig),
}
#: Rows of a case that are not seconds.
COUNTS = ("IG path points", "IG completeness error", "answer tokens")
#: Inseq's IG and the engine's beside it: the seed's IG (zero baseline, 50 steps, nothing held).
PEER_STEPS = 50


def timed_stages(loaded, prompt: str, settings: dict) -> dict[str, float]:
    """Seconds per stage (from the progress events) and in all."""
    marks: list[tuple[float, str]] = []
    shown: dict[str, float] = {}

    def progress(stage) -> None:
        marks.append((time.perf_counter(), stage.description))

    def partial(analysis) -> None:  # the page renders each of these as it comes
        now = time.perf_counter()
        shown.setdefault("answer", now)  # the first: after generation, no method yet
        if analysis.methods:
            shown.setdefault("highlights", now)

    # An older checkout has no partial results: then no first-highlight figure.
    streams = "partial" in inspect.signature(attribution.analyze).parameters
    cpu_started = time.process_time()  # this process's CPU seconds: the work, less exposed to other jobs
    started = time.perf_counter()
    analysis = attribution.analyze(loaded, prompt, progress=progress, **settings,
                                   **({"partial": partial} if streams else {}))
    ended = time.perf_counter()
    cpu = time.process_time() - cpu_started
    marks.append((ended, "end"))
    stages = {name: later - at for (at, name), (later, _) in zip(marks, marks[1:])}
    if "highlights" in shown:
        stages["first highlights"] = shown["highlights"] - started
        stages["first highlights after the answer"] = shown["highlights"] - shown["answer"]
    stages["answer tokens"] = int(analysis.generated_ids.size)  # a count (the reply may stop early)
    ig = analysis.methods.get("integrated_gradients")
    if ig is not None:  # what IG reached: path points and completeness (not seconds)
        stages["IG path points"] = ig.n_steps
        stages["IG completeness error"] = ig.relative_completeness_error
    return {**stages, "total": ended - started, "CPU seconds": cpu}


def peer_row(loaded, prompt: str) -> dict:
    """Inseq's IG and the engine's, same weights, chat prompt, target (the greedy next token) and settings."""
    from benchmarks.peers import inseq_unavailable_reason, make_inseq, run_inseq, shared_weight_view

    reason = inseq_unavailable_reason()
    if reason:
        return {"unavailable": reason}
    # The engine's IG alone through the public API: nothing generated (the target is the greedy next
    # token, one forward), no answer map, no trust panel; its time includes that one forward.
    settings = dict(methods=["integrated_gradients"], max_new_tokens=0, chat=True, n_steps=PEER_STEPS,
                    baseline="zero", aggregation="l2", all_targets=False, trust=False)
    attribution.analyze(loaded, prompt, **dict(settings, n_steps=4))  # warm-up
    started = time.perf_counter()
    ours = attribution.analyze(loaded, prompt, **settings)
    engine_seconds = time.perf_counter() - started
    ids = [int(token) for token in ours.input_ids]
    target = int(ours.target.id)
    text = loaded.tokenizer.decode(ids)  # the template's text, special tokens included
    tokenizer = loaded.tokenizer
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # as the notebook (Inseq pads its batches)
    model = make_inseq(shared_weight_view(loaded.model, loaded.model.config._attn_implementation), tokenizer)
    target_text = tokenizer.decode([target])
    run_inseq(model, text, target_text, 4, 4)  # warm-up
    scores, inseq_seconds, output = run_inseq(model, text, target_text, PEER_STEPS, PEER_STEPS)
    engine_scores = ours.methods["integrated_gradients"].scores
    # Decoder-only: Inseq's target sequence is the prompt and the explained token.
    sequence = [int(token.id) for token in output.sequence_attributions[0].target]
    same_tokens = sequence == ids + [target]
    difference = float(abs(scores - engine_scores).max() / abs(engine_scores).max()) if same_tokens else None
    # Inseq drops the end-of-turn tokens (<|im_end|>, SmolLM2's EOS) from a chat prompt's text: measured,
    # 36 of the seed prompt's 38 tokens, so it attributes a slightly different input.
    return {"inseq IG": inseq_seconds, "engine IG": engine_seconds, "tokens": len(ids),
            "inseq tokens": len(sequence) - 1, "same tokens": same_tokens, "max |Δ| / max |score|": difference}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--cases", default=",".join([*CASES, *PAGE_CASES]),
                        help=f"some of: {', '.join([*CASES, *PAGE_CASES])}")
    parser.add_argument("--no-peer", action="store_true", help="leave out the Inseq peer row")
    parser.add_argument("--prompt", default=SEED_PROMPT, help="the prompt every case runs (default: the seed's)")
    arguments = parser.parse_args()
    loaded = attribution.load_model(arguments.model)
    load_before = os.getloadavg()[0]
    known = {**CASES, **PAGE_CASES}
    unknown = sorted(set(arguments.cases.split(",")) - set(known))
    if unknown:
        parser.error(f"unknown cases {unknown}; valid choices: {', '.join(known)}")
    rows = {}
    for key in arguments.cases.split(","):
        name, settings = known[key]
        settings = settings() if callable(settings) else settings
        prompt = arguments.prompt
        try:
            runs = [timed_stages(loaded, prompt, settings) for _ in range(arguments.repeats)]
        except (TypeError, ValueError) as error:  # an older checkout without a setting this case uses
            print(f"{name}: not supported by this checkout ({error})", flush=True)
            continue
        rows[name] = {key: min(run[key] for run in runs) for key in runs[0]}
        print(f"{name}: " + ", ".join(f"{key} {value:.4g}" if key in COUNTS else f"{key} {value:.2f} s"
                                      for key, value in rows[name].items()), flush=True)
    gradient = PAGE_CASES["chat-gradient-now"][0]
    for case, label in (("chat-page-now", "page defaults"), ("chat-page-recommended-ig-now", "page with IG to 1%")):
        page = PAGE_CASES[case][0]
        if page in rows and gradient in rows:  # the yardstick, in wall and in CPU seconds
            print(f"{label} / gradient only: {rows[page]['total'] / rows[gradient]['total']:.1f}x wall, "
                  f"{rows[page]['CPU seconds'] / rows[gradient]['CPU seconds']:.1f}x CPU", flush=True)
    if not arguments.no_peer:
        try:
            peer = peer_row(loaded, arguments.prompt)
        except Exception as error:  # noqa: BLE001 — a peer's failure must not sink the benchmark
            peer = {"unavailable": f"Inseq failed ({type(error).__name__}: {str(error).splitlines()[0][:200]})"}
        rows["peer: Inseq IG and the engine's, chat, 50 steps, zero baseline"] = peer
        print(f"peer: {peer}", flush=True)
    print(f"\nload average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after; torch threads "
          f"{__import__('torch').get_num_threads()}; code: {Path(attribution.__file__).parent}")
    if arguments.json is not None:
        arguments.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
