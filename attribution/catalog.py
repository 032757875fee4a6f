"""The method catalog: every fact about every attribution method, in one entry each.

Torch-free on purpose: the display layer (figures, tables, text) reads labels, colours and signedness
from here without importing the engine. The engine's registry `attribution.methods.METHODS` maps the
same names to the functions named in `function`, and a test checks that both list the same methods
and that every entry is complete. Adding a method: one new file with its function, one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


#: How a method's token scores become group scores (`MethodInfo.combine`): the rules of
#: `attribution.groups.COMBINE_RULES`, or "remove" (run on the groups themselves).
COMBINE = ("sum", "l2", "remove")

#: What a method's number can be about (`MethodInfo.explains`).
EXPLAINS = ("score", "log_probability", "none")
#: Which kind of model pass bounds a method's memory (`MethodInfo.memory`, `attribution.budget`): forwards
#: and backwards (gradients), forwards only, the attention-rows pass, or that pass keeping queries and keys.
MEMORY_PASSES = ("backward", "forward", "attention_rows", "rollout")
#: What a method's cost grows with (MethodInfo.scales_with): one pass, or the Settings field named.
SCALES_WITH = ("one_pass", "n_steps", "n_ablations")


@dataclass(frozen=True)
class MethodInfo:
    name: str  # the registered name, as in METHODS and the JSON
    function: str  # "module:function" inside the attribution package, for the engine's registry
    label: str  # display name
    description: str  # one sentence: what the number measures
    help: str  # a paragraph for the app's tab
    color: str  # matplotlib colour of its bars and lines; never purple, the colour of negative scores
    # Scores can be negative by construction: True, False, or the IG aggregations under which they are
    # (IG's L2 norm is never negative, its signed sum is). `is_signed` is the one place that decides.
    signed: bool | tuple[str, ...]
    target_dependent: bool  # a contrast (or another target) changes the scores
    layered: bool  # its result keeps per-layer and per-head weights (a layers × tokens heatmap)
    # The answer map (every generated token × its sources): False (not offered), True (built by running
    # the method once per generated token), or "module:function" of a builder that does all tokens in
    # batched passes, `builder(loaded, AnswerMapRequest) -> [T, S] array` (attribution.answer_map).
    answer_map: bool | str
    axis_label: str  # the bar chart's y-axis label; "{label}" and "{aggregation}" are filled in
    # What its number is about: "score" (the analysis's score — logit, probability or log-probability —
    # of the target, minus the foil's when contrastive), "log_probability" (always the target's
    # log-probability, minus the foil's when contrastive), or "none" (no target: where the last position reads).
    explains: str = "score"
    # Runs a path of many forward and backward passes (IG): the engine runs it after the cheap methods, so
    # that their results show first (`analyze(..., partial=...)`); its cost is what the page estimates.
    costly: bool = False
    # The Settings field its cost grows with, for the page's time estimates (ui.timing): "n_steps" (one
    # row per IG path point), "n_ablations" (one forward row per ablation), or "one_pass".
    scales_with: str = "one_pass"
    # How its token scores become one score per word, sentence or segment (attribution.groups): "sum" (a
    # signed share or a first-order term adds), "l2" (a norm over embeddings: the group's norm is that of
    # its tokens' concatenated vectors, √Σ s²), "remove" (a perturbation: the engine hides whole groups), or
    # per IG aggregation ((aggregation, rule), ...). `combine_rule(name, aggregation)` is the one place that
    # reads it; no default, so a new method must say.
    combine: str | tuple[tuple[str, str], ...] = ""
    # The pass whose activations bound its memory (MEMORY_PASSES): what the prompt limit estimates.
    memory: str = "backward"

    def __post_init__(self) -> None:
        if self.scales_with not in SCALES_WITH:
            raise ValueError(f"method catalog entry {self.name!r}: unknown scales_with {self.scales_with!r}; "
                             f"valid choices: {', '.join(SCALES_WITH)}")
        if self.memory not in MEMORY_PASSES:
            raise ValueError(f"method catalog entry {self.name!r}: unknown memory {self.memory!r}; "
                             f"valid choices: {', '.join(MEMORY_PASSES)}")
        if self.explains not in EXPLAINS:
            raise ValueError(f"method catalog entry {self.name!r}: unknown explains {self.explains!r}; "
                             f"valid choices: {', '.join(EXPLAINS)}")
        if self.target_dependent != (self.explains != "none"):
            raise ValueError(f"method catalog entry {self.name!r}: target_dependent must be "
                             f"{self.explains != 'none'} when it explains {self.explains!r}")
        rules = [self.combine] if isinstance(self.combine, str) else [rule for _, rule in self.combine]
        if any(rule not in COMBINE for rule in rules):
            raise ValueError(f"method catalog entry {self.name!r}: combine must be one of {', '.join(COMBINE)} "
                             f"(or per aggregation), got {self.combine!r}")
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, str) and not value.strip():
                raise ValueError(f"method catalog entry {self.name!r} has an empty {item.name}")


CATALOG: dict[str, MethodInfo] = {
    info.name: info
    for info in (
        MethodInfo(
            name="gradient",
            function="methods:gradient",
            label="Gradient",
            description="L2 norm of d(target logit)/d(token embedding): how sensitive the prediction is to each token.",
            help=(
                "How sensitive the explained token's logit is to each input token: the L2 norm of the "
                "gradient with respect to that token's embedding (the seed's method A). Fast, but noisy."
            ),
            color="steelblue",
            signed=False,
            target_dependent=True,
            layered=False,
            answer_map="answer_map:gradient_rows",
            axis_label="Attribution score (gradient L2 norm)",
            # The norm of the gradient over all the group's embeddings: √Σ of its tokens' squared norms.
            combine="l2",
        ),
        MethodInfo(
            name="attention",
            function="methods:attention",
            label="Attention",
            description="Attention from the last position, averaged over all layers and heads.",
            help=(
                "How much the last position attends to each input token, averaged over every head and layer "
                "(the seed's method B). It shows where information is read from, not how it is used; the first "
                "token often soaks up attention that means little."
            ),
            color="coral",
            signed=False,
            target_dependent=False,
            layered=True,
            answer_map="answer_map:attention_rows",
            axis_label="Attention weight (mean of heads and layers)",
            explains="none",
            # A share of the last position's attention: a group's share is its tokens' shares added.
            combine="sum",
            memory="attention_rows",
        ),
        MethodInfo(
            name="integrated_gradients",
            function="methods:integrated_gradients",
            label="Integrated Gradients",
            description="Gradients integrated along a path from a baseline to the input (Sundararajan et al. 2017).",
            help=(
                "Gradients averaged along a straight path from a baseline (an input with the information "
                "removed; see Settings) to the real prompt, times the difference (the seed's method C, with "
                "Captum's rule). Slower, but its signed scores account for the whole change in the logit: see "
                "the check below."
            ),
            color="mediumseagreen",
            signed=("sum",),
            target_dependent=True,
            layered=False,
            answer_map="answer_map:integrated_gradients_rows",
            costly=True,
            scales_with="n_steps",
            axis_label="{label} score ({aggregation})",
            # With sum, signed terms that add up to F(x) − F(x′): grouped, they still do (completeness);
            # with l2, each token's norm over d_model: a group's is the norm over all its dimensions.
            combine=(("sum", "sum"), ("l2", "l2")),
        ),
        MethodInfo(
            name="input_x_gradient",
            function="methods:input_x_gradient",
            label="Input × Gradient",
            description="Embedding × gradient, summed: signed first-order contribution of each token.",
            help=(
                "Each token's embedding times the gradient, summed: a signed first-order estimate of how much "
                "the token adds to (red) or takes from (purple) the explained token's logit. Fast."
            ),
            color="goldenrod",
            signed=True,
            target_dependent=True,
            layered=False,
            answer_map="answer_map:input_x_gradient_rows",
            axis_label="{label} score",
            # First-order Taylor terms of the logit: a group's term is the sum of its tokens'.
            combine="sum",
        ),
        MethodInfo(
            name="attention_rollout",
            function="methods:attention_rollout",
            label="Attention Rollout",
            description="Attention composed through the layers with the residual path (Abnar & Zuidema 2020).",
            help=(
                "Attention composed through every layer with the residual path (Abnar & Zuidema 2020): how much "
                "of the last position's representation flows from each token. Never negative."
            ),
            color="teal",
            signed=False,
            target_dependent=False,
            layered=False,
            answer_map=False,
            axis_label="Rollout share of the last position",
            explains="none",
            # A share of the flow into the last position (each row of the rollout sums to 1): shares add.
            combine="sum",
            memory="rollout",
        ),
        MethodInfo(
            name="occlusion",
            function="methods:occlusion",
            label="Occlusion",
            description="Drop in the target's log-probability when the token is hidden (leave one out).",
            help=(
                "Hide one token at a time (by the attention mask) and measure how much the explained token's "
                "log-probability drops: red tokens were needed, purple ones were in the way. One forward pass "
                "per token, batched."
            ),
            color="slategray",
            signed=True,
            target_dependent=True,
            layered=False,
            answer_map=False,
            axis_label="Log-probability drop when hidden",
            explains="log_probability",
            # Hiding two tokens is not the sum of hiding each (they interact): a group's drop is measured
            # by hiding the whole group.
            combine="remove",
            memory="forward",
        ),
        MethodInfo(
            name="context_ablation",
            function="context_ablation:context_ablation",
            label="Context ablation",
            description="Each sentence's weight in a sparse linear model of the target's log-probability, "
                        "fitted on random removals of sentences (ContextCite).",
            help=(
                "Removes random halves of the prompt's sentences (or segments, words: the granularity) many "
                "times, and fits a sparse linear model (lasso) of the explained token's log-probability over "
                "which sentences were kept, as ContextCite does: a sentence's weight is how much keeping it "
                "raises (red) or lowers (purple) the log-probability. Every token of a sentence shows its "
                "sentence's weight; held context (template, special tokens) is never removed. Its own trust "
                "figure is the held-out fit (LDS): how well the linear model ranks ablations it was not fitted "
                "on. One forward pass per ablation, batched."
            ),
            color="olivedrab",  # not purple: purple bars are negative scores (figure_style.NEGATIVE_COLOR)
            signed=True,
            target_dependent=True,
            layered=False,
            answer_map=False,
            axis_label="{label}: weight of the token's sentence (log-probability)",
            explains="log_probability",
            costly=True,
            scales_with="n_ablations",
            # Its weights are measured per group by removing whole groups (never summed from tokens); another
            # grouping reads them through `ContextAblationScores.weights_per`.
            combine="remove",
            memory="forward",
        ),
    )
}

#: Display facts as plain dicts, for the modules that read one fact for many methods.
METHOD_LABELS: dict[str, str] = {name: info.label for name, info in CATALOG.items()}
METHOD_DESCRIPTIONS: dict[str, str] = {name: info.description for name, info in CATALOG.items()}
METHOD_HELP: dict[str, str] = {name: info.help for name, info in CATALOG.items()}
METHOD_COLORS: dict[str, str] = {name: info.color for name, info in CATALOG.items()}
TARGET_FREE_METHODS = tuple(name for name, info in CATALOG.items() if not info.target_dependent)
LAYERED_METHODS = tuple(name for name, info in CATALOG.items() if info.layered)
ANSWER_MAP_METHODS = tuple(name for name, info in CATALOG.items() if info.answer_map is not False)


def method_info(name: str) -> MethodInfo:
    """The catalog entry of a registered method; ValueError listing the valid names otherwise."""
    if name not in CATALOG:
        raise ValueError(f"unknown method {name!r}; valid choices: {', '.join(CATALOG)}")
    return CATALOG[name]


def combine_rule(name: str, aggregation: str | None = None) -> str:
    """How a method's token scores combine into group scores ("sum", "l2" or "remove"), with the analysis's
    IG `aggregation` for methods whose rule depends on it. The one place that decides."""
    combine = method_info(name).combine
    if isinstance(combine, str):
        return combine
    rules = dict(combine)
    if aggregation not in rules:
        raise ValueError(f"method {name!r} combines per aggregation; valid choices: {', '.join(rules)}")
    return rules[aggregation]


def is_signed(name: str, aggregation: str | None = None) -> bool:
    """Whether a method's scores can be negative by construction (diverging colours, a zero line), with
    the analysis's IG `aggregation` for methods whose sign depends on it. The one place that decides."""
    signed = method_info(name).signed
    return signed if isinstance(signed, bool) else aggregation in signed
