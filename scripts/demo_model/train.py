"""Tokenizer, model and training loop of the demo model, and saving the checkpoint (fp16).

The tokenizer and the seeded random initial weights come from the project's one builder of small
models (`attribution.testing`), with the demo model's own settings.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

from attribution.testing import EOS, byte_level_bpe, random_llama

from .data import base_examples, encode_prompt_answer, fill, insert_random_word, tokenizer_corpus

PROMPT_LOSS_WEIGHT = 0.1

OUTPUT_FILES = ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                "README.md", "eval.json"]


def build_tokenizer(vocab_size: int):
    """Byte-level BPE learnt from the training phrasings only (merges seen at least twice)."""
    return byte_level_bpe(tokenizer_corpus(), vocab_size, min_frequency=2, pair_type_id=1,
                          pad_token=EOS, model_max_length=128)


def build_model(tokenizer, args):
    """The untrained model: a small GQA Llama with tied embeddings, seeded with `args.seed`."""
    from transformers import GenerationConfig

    model = random_llama(
        tokenizer, args.seed,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        max_position_embeddings=128,
        rope_theta=10000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=0.02,
    )
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
        max_new_tokens=16,
    )
    return model


def make_epoch(tokenizer, rng: random.Random, p_insert: float, pad_len: int):
    """Token ids + per-token loss weights for one shuffled, augmented epoch."""
    import torch

    exs = base_examples()
    rng.shuffle(exs)
    rows, weights = [], []
    for template, country, answer in exs:
        if rng.random() < p_insert:
            for _ in range(100):  # resample the inserted word until the example fits pad_len
                p, a = encode_prompt_answer(tokenizer, fill(insert_random_word(template, rng), country), answer)
                if len(p) + len(a) <= pad_len:
                    break
        else:
            p, a = encode_prompt_answer(tokenizer, fill(template, country), answer)
        seq = p + a
        if len(seq) > pad_len:
            raise ValueError(f"example longer than pad_len={pad_len}: {template!r} {country!r}")
        rows.append(seq)
        weights.append((len(p), len(a)))
    n = len(rows)
    ids = torch.full((n, pad_len), tokenizer.eos_token_id, dtype=torch.long)
    # weight of the loss for predicting token t (from position t-1); 0 on padding
    w = torch.zeros((n, pad_len), dtype=torch.float32)
    mask = torch.zeros((n, pad_len), dtype=torch.long)
    for i, (seq, (lp, la)) in enumerate(zip(rows, weights)):
        ids[i, :len(seq)] = torch.tensor(seq)
        mask[i, :len(seq)] = 1
        w[i, 1:lp] = PROMPT_LOSS_WEIGHT
        w[i, lp:lp + la] = 1.0
    return ids, mask, w


def train(args):
    """Build and train the model with a fixed number of steps: (model, tokenizer, training figures)."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)

    tokenizer = build_tokenizer(args.vocab_size)
    print(f"tokenizer: vocab={len(tokenizer)} bos={tokenizer.bos_token_id} eos={tokenizer.eos_token_id} "
          f"pad={tokenizer.pad_token_id}; ' Riga' -> {tokenizer.tokenize(' Riga')}", flush=True)
    model = build_model(tokenizer, args)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params:,} parameters; config {model.config.hidden_size}h/"
          f"{model.config.intermediate_size}i/{model.config.num_hidden_layers}L/"
          f"{model.config.num_attention_heads}q/{model.config.num_key_value_heads}kv", flush=True)

    max_base = max(len(encode_prompt_answer(tokenizer, fill(t, c), a)[0]) + len(encode_prompt_answer(tokenizer, fill(t, c), a)[1])
                   for t, c, a in base_examples())
    pad_len = max_base + 6  # room for one inserted word (resampled if it does not fit)
    n_per_epoch = len(base_examples())
    print(f"corpus: {n_per_epoch} examples/epoch, pad_len={pad_len}, batch={args.batch_size}, steps={args.steps}", flush=True)

    model.config._attn_implementation = "sdpa"
    model.train()
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim < 2 else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-8)

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        prog = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * prog)))

    step, epoch = 0, 0
    t_train = time.time()
    deadline = t_train + args.minutes * 60 if args.minutes else None
    stopped_early = False
    ema = None
    while step < args.steps:
        ids, mask, w = make_epoch(tokenizer, rng, args.p_insert, pad_len)
        perm = torch.randperm(ids.shape[0])
        epoch += 1
        for b in range(0, ids.shape[0] - args.batch_size + 1, args.batch_size):
            if step >= args.steps:
                break
            idx = perm[b:b + args.batch_size]
            x, m, ww = ids[idx], mask[idx], w[idx]
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            logits = model(input_ids=x, attention_mask=m).logits
            ce = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="none")
            wt = ww[:, 1:].reshape(-1)
            loss = (ce * wt).sum() / wt.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
            if step % args.log_every == 0 or step == args.steps:
                el = time.time() - t_train
                print(f"step {step}/{args.steps} epoch {epoch} loss {loss.item():.4f} ema {ema:.4f} "
                      f"lr {lr_at(step - 1):.2e} elapsed {el / 60:.1f} min", flush=True)
            if deadline and time.time() > deadline:
                stopped_early = True
                print(f"!! --minutes budget reached at step {step}: stopping early; the result is "
                      f"NOT reproducible (depends on machine speed)", flush=True)
                break
        if stopped_early:
            break
    train_seconds = time.time() - t_train
    print(f"training done: {step} steps, {epoch} epochs, {train_seconds / 60:.1f} min", flush=True)
    figures = {
        "parameters": n_params,
        "train_steps": step,
        "train_epochs": epoch,
        "train_minutes": round(train_seconds / 60, 1),
        "stopped_early_by_minutes_budget": stopped_early,
        "final_loss_ema": ema,
    }
    return model, tokenizer, figures


def save(model, tokenizer, out_dir: Path) -> None:
    """The model in fp16 (eager attention in its config) and the tokenizer, replacing our earlier files."""
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    for name in OUTPUT_FILES:  # remove stale outputs of an earlier run (only our own files)
        (out_dir / name).unlink(missing_ok=True)
    model.eval()
    model.config._attn_implementation = "eager"
    model.to(torch.float16).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    # transformers 5 writes "TokenizersBackend"; the generic fast-tokenizer name loads with
    # transformers 5 as well as 4.x.
    tc_path = out_dir / "tokenizer_config.json"
    tc = json.loads(tc_path.read_text())
    tc["tokenizer_class"] = "PreTrainedTokenizerFast"
    tc_path.write_text(json.dumps(tc, indent=2) + "\n")
