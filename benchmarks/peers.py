"""The peers the project is measured against on the same weights: the seed notebook's way
(benchmarks/notebook_reference.py on a second model object sharing the weights) and Inseq's IG."""

from __future__ import annotations

import time
from pathlib import Path

from .plan import METHOD_NAMES, TOLERANCES, relative_error


def shared_weight_view(model, attn_implementation: str):
    """A second model object on the same weight storage, as `from_pretrained` would hand it over:
    parameters requiring grad (not frozen), the given attention implementation. No weight is copied,
    so the 1B comparison needs one copy of the weights (plus the notebook's parameter .grad)."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(model.config)
    with torch.device("meta"):
        view = AutoModelForCausalLM.from_config(config, attn_implementation=attn_implementation)
    state = model.state_dict(keep_vars=False)  # detached tensors sharing storage with `model`
    view.load_state_dict(state, strict=True, assign=True)
    # Non-persistent buffers (rotary inv_freq) are not in the state dict: share them too.
    for name, buffer in model.named_buffers():
        owner_name, _, leaf = name.rpartition(".")
        owner = view.get_submodule(owner_name) if owner_name else view
        owner._buffers[leaf] = buffer
    for name in ("original_inv_freq",):  # plain attributes some rotary modules keep
        for (_, source), (_, target) in zip(model.named_modules(), view.named_modules()):
            if hasattr(source, name) and isinstance(getattr(source, name), torch.Tensor):
                setattr(target, name, getattr(source, name))
    if getattr(config, "tie_word_embeddings", False):
        view.tie_weights()
    view.requires_grad_(True)
    view.eval()
    view.generation_config = copy.deepcopy(model.generation_config)
    if any(parameter.is_meta for parameter in view.parameters()) or any(b.is_meta for b in view.buffers()):
        raise RuntimeError("shared_weight_view left a tensor on the meta device")
    view.config._attn_implementation = attn_implementation
    return view


def notebook_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    tokenizer.pad_token = tokenizer.eos_token  # as the notebook
    return tokenizer


def load_notebook_model(folder: Path):
    """The model exactly as the notebook loads it on CPU: fp32, eager attention, not frozen."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, attn_implementation="eager")
    model.eval()
    return model


def run_notebook(model, tokenizer, prompt: str, n_steps: int, max_new_tokens: int):
    from benchmarks import notebook_reference

    return notebook_reference.notebook_pipeline(
        model, tokenizer, prompt, n_steps=n_steps, max_new_tokens=max_new_tokens, baseline_type="zero"
    )


def check_scores(analysis, notebook_results) -> dict:
    """Project vs notebook on one prompt: same ids, same target, scores within tolerance."""
    import numpy as np

    check = {
        "input_ids_equal": bool(np.array_equal(analysis.input_ids, notebook_results["input_ids"])),
        "generated_equal": bool(np.array_equal(analysis.generated_ids, notebook_results["generated_ids"])),
        "target_equal": int(analysis.target.id) == int(notebook_results["predicted_id"])
        == int(notebook_results["ig_predicted_id"]),
        "relative_error": {
            name: relative_error(analysis.methods[name].scores, notebook_results[name]) for name in METHOD_NAMES
        },
    }
    check["relative_error"]["attention_per_layer"] = relative_error(
        analysis.methods["attention"].per_layer, notebook_results["attention_per_layer"]
    )
    check["ok"] = (
        check["input_ids_equal"] and check["target_equal"]
        and all(check["relative_error"][name] <= TOLERANCES[name] for name in METHOD_NAMES)
        and check["relative_error"]["attention_per_layer"] <= TOLERANCES["attention"]
    )
    return check


def inseq_unavailable_reason() -> str | None:
    try:
        import inseq  # noqa: F401
    except Exception as error:  # ImportError, or an import-time incompatibility
        first = (str(error).splitlines() or [type(error).__name__])[0]
        return f"not available: inseq does not import here ({type(error).__name__}: {first}); " \
               "install it with `pip install -r requirements-bench.txt`"
    return None


def make_inseq(model_view, tokenizer):
    """An Inseq IG model on the given weights, its baseline set to zero embeddings.

    Inseq has no baseline argument: it always uses the UNK token's embedding. The seed's (and the
    project's) zero baseline is substituted where Inseq hands Captum its arguments."""
    import inseq
    import torch
    from inseq.models.decoder_only import DecoderOnlyInputFormatter

    original = DecoderOnlyInputFormatter.format_attribution_args
    if not getattr(original, "_zero_baseline", False):
        def format_with_zero_baseline(*args, **kwargs):
            arguments = original(*args, **kwargs)
            if "baselines" in arguments:
                arguments["baselines"] = tuple(torch.zeros_like(x) for x in arguments["inputs"])
            return arguments

        format_with_zero_baseline._zero_baseline = True
        DecoderOnlyInputFormatter.format_attribution_args = staticmethod(format_with_zero_baseline)
    return inseq.load_model(model_view, "integrated_gradients", tokenizer=tokenizer)


def run_inseq(inseq_model, prompt: str, target_text: str, n_steps: int, batch_size: int):
    """IG of the logit of the token after `prompt` (forced to `target_text`); returns (L2 scores, seconds)."""
    started = time.perf_counter()
    output = inseq_model.attribute(
        prompt, prompt + target_text, n_steps=n_steps, attributed_fn="logit",
        internal_batch_size=batch_size, show_progress=False,
    )
    seconds = time.perf_counter() - started
    attributions = output.sequence_attributions[0].target_attributions  # [prefix + 1, 1, d_model]
    scores = attributions[:-1, 0, :].double().norm(dim=-1).numpy()
    return scores, seconds, output
