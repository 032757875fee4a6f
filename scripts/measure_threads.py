"""The thread probe under load: the page's affordable chat analysis on SmolLM2 with the count the probe
chooses, with 1 thread and with 2, on a quiet machine and beside a process spinning on one core.

    python scripts/measure_threads.py
"""
import os, sys, time, subprocess
os.environ["HF_HUB_OFFLINE"]="1"
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
import attribution, torch
from attribution import threads
loaded = attribution.load_model("HuggingFaceTB/SmolLM2-135M-Instruct")
s = attribution.Settings(methods=tuple(attribution.METHODS), max_new_tokens=20, chat=True, baseline="mean", hold_context=True,
    aggregation="sum", all_targets=True, answer_map_methods=("gradient","attention","input_x_gradient"), trust=True)
prompt = "What is the Capital City of Latvia?"
def run(mode):
    if mode == "auto": os.environ.pop("ATTRIBUTION_THREADS", None)
    else: os.environ["ATTRIBUTION_THREADS"] = mode
    threads._choices.clear()
    t = time.perf_counter(); attribution.analyze(loaded, prompt, s); return time.perf_counter() - t
for busy in (False, True):
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        times = {m: [] for m in ("auto", "1", "2")}
        for _ in range(2):
            for m in times: times[m].append(run(m))
        print("busy" if busy else "quiet-ish", {m: round(min(v), 2) for m, v in times.items()},
              "auto chose", threads.measured_threads(loaded, 2), "load", os.getloadavg()[0], flush=True)
    finally:
        if hog: hog.kill()
