"""The seed notebook's three methods, kept as the notebook wrote them (only its globals made arguments).

This is the reference the tests hold the package to and the baseline the benchmark races against:
full-vocabulary logits at every position, IG one step at a time (internal_batch_size=1), no
attention switch (the model given must already use eager attention).
"""

from __future__ import annotations

import torch
from captum.attr import IntegratedGradients


def generate_answer(model, tokenizer, input_ids, max_new_tokens=20):
    with torch.no_grad():
        outputs = model.generate(
            input_ids,
            max_new_tokens=max_new_tokens,
            do_sample=False,  # Use greedy decoding for reproducibility
            pad_token_id=tokenizer.eos_token_id,
        )
    return outputs, tokenizer.decode(outputs[0][len(input_ids[0]):], skip_special_tokens=True)


def gradient_based_attribution(model, input_ids, target_token_idx=-1):
    with torch.enable_grad():
        embeddings_layer = model.get_input_embeddings()
        embedding_matrix = embeddings_layer.weight
        token_embeddings = embedding_matrix[input_ids]
        token_embeddings = token_embeddings.detach().clone()
        token_embeddings.requires_grad_(True)
        outputs = model(inputs_embeds=token_embeddings)
        logits = outputs.logits
        target_logits = logits[0, target_token_idx]
        predicted_token_id = target_logits.argmax(dim=-1)
        target_score = target_logits[predicted_token_id]
        target_score.backward()
        gradients = token_embeddings.grad
        if gradients is None:
            raise RuntimeError("Gradients were not computed.")
        attribution_scores = gradients.norm(dim=-1).squeeze().cpu().detach().numpy()
    return attribution_scores, predicted_token_id.item()


def extract_attention_weights(model, input_ids):
    with torch.no_grad():
        outputs = model(input_ids, output_attentions=True)
    attentions = outputs.attentions
    all_attention = torch.stack(attentions)  # (num_layers, batch, num_heads, seq_len, seq_len)
    avg_attention = all_attention.mean(dim=(0, 2))
    last_token_attention = avg_attention[0, -1, :].cpu().numpy()
    return last_token_attention, all_attention


def layer_attention(all_attention):
    """The seed's per-layer heatmap values: heads averaged, last token's row. [num_layers, seq_len]"""
    return all_attention[:, 0, :, -1, :].mean(dim=1).cpu().numpy()


def compute_integrated_gradients(model, tokenizer, input_ids, baseline_type="zero", n_steps=50):
    def model_forward(embeddings, attention_mask=None):
        outputs = model(inputs_embeds=embeddings, attention_mask=attention_mask)
        return outputs.logits[:, -1, :]

    embeddings_layer = model.get_input_embeddings()
    embedding_matrix = embeddings_layer.weight
    input_embeddings = embedding_matrix[input_ids].detach().clone()
    if baseline_type == "zero":
        baseline_embeddings = torch.zeros_like(input_embeddings)
    else:  # 'pad'
        pad_token_id = tokenizer.pad_token_id
        baseline_ids = torch.full_like(input_ids, pad_token_id)
        baseline_embeddings = embedding_matrix[baseline_ids].detach().clone()
    with torch.no_grad():
        outputs = model(input_ids)
        predicted_token_id = outputs.logits[0, -1].argmax().item()
    ig = IntegratedGradients(model_forward)
    attributions = ig.attribute(
        inputs=input_embeddings,
        baselines=baseline_embeddings,
        target=predicted_token_id,
        n_steps=n_steps,
        internal_batch_size=1,
    )
    attribution_scores = attributions.norm(dim=-1).squeeze().cpu().detach().numpy()
    return attribution_scores, predicted_token_id


def normalize_scores(scores):
    return (scores - scores.min()) / (scores.max() - scores.min() + 1e-10)


def notebook_pipeline(model, tokenizer, prompt, n_steps=50, max_new_tokens=20, baseline_type="zero", clock=None):
    """The notebook's cells in its order — tokenize, generate, method A, B, C — timing each stage.

    Returns (results, seconds): results holds what the cells produce (input_ids, generated ids,
    predicted id, gradient / attention / IG scores); seconds maps stage name → wall time."""
    import time

    clock = clock or time.perf_counter
    seconds = {}
    started = clock()
    inputs = tokenizer(prompt, return_tensors="pt")
    input_ids = inputs["input_ids"]
    outputs, answer = generate_answer(model, tokenizer, input_ids, max_new_tokens=max_new_tokens)
    seconds["generate"] = clock() - started
    mark = clock()
    grad_scores, predicted_id = gradient_based_attribution(model, input_ids)
    seconds["gradient"] = clock() - mark
    mark = clock()
    attention_scores, all_attention = extract_attention_weights(model, input_ids)
    layer_scores = layer_attention(all_attention)
    del all_attention
    seconds["attention"] = clock() - mark
    mark = clock()
    ig_scores, ig_predicted_id = compute_integrated_gradients(model, tokenizer, input_ids, baseline_type, n_steps)
    seconds["integrated_gradients"] = clock() - mark
    seconds["total"] = clock() - started
    results = {
        "input_ids": input_ids[0].numpy(),
        "generated_ids": outputs[0, input_ids.shape[1]:].numpy(),
        "answer": answer,
        "predicted_id": predicted_id,
        "ig_predicted_id": ig_predicted_id,
        "gradient": grad_scores,
        "attention": attention_scores,
        "attention_per_layer": layer_scores,
        "integrated_gradients": ig_scores,
    }
    return results, seconds
