"""How long an analysis takes: each stage timed as it runs, and each stage's speed kept per model, so that the
progress line can say how long is left and the answer map's offer of IG what it would cost.

A stage's cost is counted in what it is roughly proportional to (`Clock.units`): generated tokens for the
generation, the explained position's tokens for a cheap method, tokens × path points for IG (and for the
trust panel when IG has fixed steps and may rerun at twice them; with n_steps="auto" it never reruns, and
its faithfulness rows grow with the tokens alone), tokens × ablations for context ablation (catalog `scales_with`),
and the same summed over every generated token for the answer map. Its speed (seconds per unit) is measured on each run and kept per model for the next ones (`SPEEDS`). A
stage never run on a model yet is estimated from what this run has measured (`Clock.fallback`): roughly, and
said to be so; with nothing measured at all the time left is not guessed.
"""

from __future__ import annotations

import threading
import time
from typing import Iterable

from attribution.catalog import CATALOG
from attribution.engine import run_order
from attribution.reports import Progress
from attribution.results import Analysis
from attribution.settings import Settings

#: IG's path rows are batched: on SmolLM2-135M (CPU) one row cost about a quarter of a gradient pass.
ROW_PER_GRADIENT = 0.25
#: A method's answer map measured against that method's own time × the answer's tokens × their longer
#: inputs, on SmolLM2-135M chat (20 tokens, CPU): IG's (50 steps) 60 s against 43 s; the cheap methods' maps
#: are batched, 2.3 s against 6.5 s (10 s against 48 s on a loaded machine).
MAP_OVERHEAD = {True: 1.4, False: 0.3}
#: The trust panel without a measured speed, when IG has fixed steps: IG's rerun at twice the steps when it
#: has not converged, plus faithfulness's batched forward passes, about one cheap method's time per method.
TRUST_RERUN_FACTOR = 2.0
#: ... and with n_steps="auto" (no rerun): faithfulness's removal rows against the gradient's pass, on
#: SmolLM2's chat seed prompt with the page's defaults: 2.01 s against 0.29 s on two quiet threads, 3.30 s
#: against 0.34 s on one (6.9× and 9.7×).
TRUST_PER_GRADIENT = 8.0
#: n_steps="auto" before any run on the model has said how many path points it takes.
AUTO_STEPS_GUESS = 64

_lock = threading.Lock()
#: (model, stage key) → seconds per unit, the latest measured.
SPEEDS: dict[tuple[str, str], float] = {}
#: model → IG path points that n_steps="auto" took last.
AUTO_STEPS: dict[str, int] = {}


def stage_key(kind: str, method: str | None = None) -> str:
    return f"method:{method}" if kind == "method" else kind


def costly(name: str) -> bool:
    return CATALOG[name].costly


def on_path(name: str) -> bool:
    """Whether the method runs IG's path (its cost grows with the path points, catalog `scales_with`)."""
    return CATALOG[name].scales_with == "n_steps"


def seconds_text(seconds: float) -> str:
    """A duration as a reader takes it in: 'under a second', '12 s', '3 min 20 s'."""
    if seconds < 1:
        return "under a second"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest:02d} s" if minutes < 10 else f"{minutes} min"


class Clock:
    """One analysis's stages, timed as the engine reports them (`stage`, `tokens`, `partial`, `finish`), and
    estimates of the stages to come (`left`, `map_estimate`)."""

    def __init__(self, model: str, settings: Settings, now: float | None = None) -> None:
        self.model, self.settings = model, settings
        self.started = time.monotonic() if now is None else now
        self.stages = [("generate", None), *(("method", name) for name in run_order(settings.methods))]
        self.stages += [("answer_map", None)] * settings.all_targets + [("trust", None)] * settings.trust
        self.current: int | None = None  # index into stages
        self.current_started = self.started
        self.measured: dict[str, float] = {}  # stage key → seconds, this run
        self.n_tokens: int | None = None  # the explained position's tokens (known after generation)
        self.n_prompt: int | None = None
        self.n_generated: int | None = None
        self.tokens_so_far = 0
        self.ig_steps: int | None = settings.n_steps if isinstance(settings.n_steps, int) else None
        self.ended: float | None = None
        self.step: Progress | None = None  # the running stage, as the engine reported it

    # --- what the engine reports -------------------------------------------------------------------

    def stage(self, progress: Progress, now: float | None = None) -> None:
        """A stage starts: the one before it is done."""
        now = time.monotonic() if now is None else now
        self._close(now)
        self.current, self.current_started, self.step = progress.index, now, progress

    def tokens(self, count: int) -> None:
        """Tokens generated so far (the generation's live speed)."""
        self.tokens_so_far = count

    def partial(self, analysis: Analysis) -> None:
        """The result so far: the sizes the estimates need."""
        self.n_tokens = len(analysis.input_tokens)
        self.n_prompt = analysis.n_prompt_tokens or len(analysis.input_tokens)
        self.n_generated = len(analysis.generated_ids)
        ig = next((result for name, result in analysis.methods.items() if on_path(name)), None)
        if ig is not None and getattr(ig, "n_steps", None):
            self.ig_steps = int(ig.n_steps)
            if self.settings.n_steps == "auto":
                with _lock:
                    AUTO_STEPS[self.model] = self.ig_steps

    def finish(self, analysis: Analysis, now: float | None = None) -> None:
        """The analysis is done: the last stage closes and every measured speed is kept for the model."""
        now = time.monotonic() if now is None else now
        self.partial(analysis)
        self._close(now)
        self.current, self.ended = None, now
        self.keep()

    def keep(self) -> None:
        """Keep the speed of every stage done so far for the model (also of a stopped analysis)."""
        with _lock:
            for key, seconds in self.measured.items():
                key = self.map_key() if key == "answer_map" else key
                units = self.units(key)
                if units:
                    SPEEDS[(self.model, key)] = seconds / units

    def _close(self, now: float) -> None:
        if self.current is not None:
            self.measured[stage_key(*self.stages[self.current])] = now - self.current_started

    # --- estimates -----------------------------------------------------------------------------------

    def _steps(self) -> int:
        if self.ig_steps is not None:
            return self.ig_steps
        with _lock:
            return AUTO_STEPS.get(self.model, AUTO_STEPS_GUESS)

    def _map_units(self, methods: Iterable[str]) -> int | None:
        """Σ over the generated tokens of the tokens each is explained from, × IG's steps when mapped."""
        if self.n_prompt is None or self.n_generated is None:
            return None
        total = sum(self.n_prompt + index for index in range(self.n_generated))
        return total * (self._steps() if any(on_path(name) for name in methods) else 1)

    def map_key(self, methods: Iterable[str] | None = None) -> str:
        methods = self.settings.mapped_methods if methods is None else tuple(methods)
        return "answer_map:" + "+".join(sorted(methods))

    def units(self, key: str) -> float | None:
        """How many units of work a stage is (None while its sizes are not known)."""
        if key == "generate":
            return max(self.n_generated or 0, 1) if self.n_generated is not None else None
        if self.n_tokens is None:
            return None
        if key.startswith("method:"):
            return self.n_tokens * self._multiplier(key.split(":", 1)[1])
        if key.startswith("answer_map"):
            return self._map_units(key.split(":", 1)[1].split("+") if ":" in key else self.settings.mapped_methods)
        if key == "trust":
            return self.n_tokens * (self._steps() if self._trust_reruns_ig() else 1)
        return None

    def _trust_reruns_ig(self) -> bool:
        """Whether the trust panel may rerun IG (`attribution.trust.completeness`): fixed steps only."""
        return self.settings.n_steps != "auto" and any(on_path(name) for name in self.settings.methods)

    def _multiplier(self, name: str) -> int:
        """How many rows a method runs per token of input: IG's path points, context ablation's ablations."""
        scales_with = CATALOG[name].scales_with
        if scales_with == "n_steps":
            return self._steps()
        if scales_with == "n_ablations":
            return self.settings.n_ablations
        return 1

    def _kept(self, key: str) -> float | None:
        with _lock:
            return SPEEDS.get((self.model, key))

    def _seconds(self, key: str) -> float | None:
        """A stage's time: measured on this run, else its kept speed × its units, else `fallback`."""
        if key in self.measured:
            return self.measured[key]
        if key == "answer_map":
            key = self.map_key()
        units, speed = self.units(key), self._kept(key)
        if units is not None and speed is not None:
            return speed * units
        return self.fallback(key)

    def fallback(self, key: str) -> float | None:
        """A rough time for a stage this model has not run yet, from this run's measured stages."""
        if key == "generate":
            return None
        if key.startswith("method:"):
            name = key.split(":", 1)[1]
            if not costly(name):
                cheap = self._cheap_seconds()
                return sum(cheap) / len(cheap) if cheap else None
            gradient = self._gradient_seconds()
            return None if gradient is None else gradient * self._multiplier(name) * ROW_PER_GRADIENT
        if key.startswith("answer_map"):
            methods = key.split(":", 1)[1].split("+") if ":" in key else self.settings.mapped_methods
            if self.n_prompt is None or self.n_generated is None or not self.n_tokens:
                return None
            growth = sum(self.n_prompt + index for index in range(self.n_generated)) / self.n_tokens
            total = 0.0
            for name in methods:
                seconds = self._seconds(f"method:{name}")
                if seconds is None:
                    return None
                total += seconds * growth * MAP_OVERHEAD[costly(name)]
            return total
        if key == "trust":
            if not self._trust_reruns_ig():
                gradient = self._gradient_seconds()
                return None if gradient is None else gradient * TRUST_PER_GRADIENT
            total = 0.0
            for name in self.settings.methods:
                seconds = self._seconds(f"method:{name}")
                if seconds is None:
                    return None
                total += seconds * TRUST_RERUN_FACTOR if on_path(name) else seconds
            return total
        return None

    def _cheap_seconds(self) -> list[float]:
        """This run's measured times of the cheap methods."""
        return [seconds for done, seconds in self.measured.items()
                if done.startswith("method:") and not costly(done.split(":", 1)[1])]

    def _gradient_seconds(self) -> float | None:
        """This run's gradient pass, or its slowest cheap method when the gradient is not among them."""
        cheap = self._cheap_seconds()
        return self.measured.get("method:gradient") or (max(cheap) if cheap else None)

    def left(self, now: float | None = None) -> float | None:
        """Seconds until the analysis ends (None: not known yet)."""
        now = time.monotonic() if now is None else now
        if self.ended is not None:
            return 0.0
        start = 0 if self.current is None else self.current
        total = 0.0
        for index in range(start, len(self.stages)):
            kind, method = self.stages[index]
            if kind == "generate" and index == self.current:
                seconds = self._generation_left(now)
                if seconds is None:
                    return None
                total += seconds
                continue
            seconds = self._seconds(stage_key(kind, method))
            if seconds is None:
                return None
            if index == self.current:
                seconds = max(seconds - (now - self.current_started), 0.0)
            total += seconds
        return total

    def _generation_left(self, now: float) -> float | None:
        elapsed = now - self.current_started
        wanted = self.settings.max_new_tokens
        if self.tokens_so_far:
            return elapsed / self.tokens_so_far * max(wanted - self.tokens_so_far, 0)
        speed = self._kept("generate")
        return None if speed is None else max(speed * wanted - elapsed, 0.0)

    def overrun(self, now: float | None = None) -> bool:
        """Whether the running stage has taken longer than estimated."""
        if self.current is None or self.ended is not None:
            return False
        kind, method = self.stages[self.current]
        if kind == "generate":
            return False
        seconds = self._seconds(stage_key(kind, method))
        return seconds is not None and (time.monotonic() if now is None else now) - self.current_started > seconds

    def elapsed(self, now: float | None = None) -> float:
        return ((time.monotonic() if now is None else now) if self.ended is None else self.ended) - self.started

    def map_estimate(self, methods: Iterable[str]) -> float | None:
        """Seconds the answer map would take with `methods` (kept speed, else `fallback`)."""
        key = self.map_key(methods)
        units, speed = self.units(key), self._kept(key)
        if units is not None and speed is not None:
            return speed * units
        return self.fallback(key)
