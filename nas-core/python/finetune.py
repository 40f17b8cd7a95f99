"""LoRA fine-tuning of the proposer on `nas-core corpus pairs` output.

Run by `nas-core finetune` (which writes this file into its output directory, so a run
records the exact script it used) with the interpreter of `scripts/finetune-env.sh`.

Tokenization goes through the serving stack itself: a llama-server running on the base GGUF
renders chat prompts (`POST /apply-template`, the template the search's server uses) and
tokenizes them (`POST /tokenize`, with the special-token handling the server applies to a
prompt). The ids a model is trained on are therefore exactly the ids it sees when it serves
the search (Hugging Face's tokenizer built from a GGUF splits words differently).

Progress goes to standard output as JSON lines (`{"event": ...}`); everything else (warnings of
the libraries) to standard error; a failure is an `error` line with its reason.
"""

import argparse
import json
import math
import os
import random
import resource
import sys
import time
import urllib.error
import urllib.request


def emit(event, **fields):
    print(json.dumps({"event": event, **fields}), flush=True)


def fail(msg, code=2):
    emit("error", message=msg)
    sys.exit(code)


class ServerTokenizer:
    """The llama-server's own template and tokenizer."""

    def __init__(self, url):
        self.url = url.rstrip("/")

    def _post(self, path, body):
        req = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return json.loads(r.read())
        except (urllib.error.URLError, OSError, ValueError) as e:
            fail(f"the tokenizer server at {self.url} did not answer {path}: {e}", 3)

    def render_chat(self, messages):
        # add_generation_prompt is the server's default for chat requests.
        return self._post("/apply-template", {"messages": messages})["prompt"]

    def ids(self, text, add_special):
        return self._post(
            "/tokenize",
            {"content": text, "add_special": add_special, "parse_special": True},
        )["tokens"]


def read_pairs(path):
    """(kind, prompt messages or text, answer) per line. The file's form is checked by
    `nas-core finetune` (finetune::check_pairs) before this script starts."""
    pairs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            v = json.loads(line)
            if isinstance(v.get("prompt"), str) and isinstance(v.get("completion"), str):
                pairs.append(("raw", v["prompt"], v["completion"]))
            else:
                m = v["messages"]
                pairs.append(("chat", m[:-1], m[-1]["content"]))
    return pairs


def encode(tok, pairs, eos_ids, max_len, record):
    """Token ids and the answer's start per pair; pairs longer than max_len are left out.
    Every pair's ids go to `record` (JSON lines, in file order)."""
    out, dropped = [], 0
    for kind, prompt, answer in pairs:
        if kind == "raw":
            p = tok.ids(prompt, True)
            a = tok.ids(answer, False) + eos_ids["raw"]
        else:
            p = tok.ids(tok.render_chat(prompt), True)
            a = tok.ids(answer, False) + eos_ids["chat"]
        record.write(json.dumps({"prompt_ids": p, "answer_ids": a}) + "\n")
        if len(p) + len(a) > max_len:
            dropped += 1
            continue
        out.append((p + a, len(p)))
    return out, dropped


def batches(data, batch, rng):
    """Endless batches of `batch` pairs (batch <= len(data)), reshuffled every pass."""
    order = list(range(len(data)))
    while True:
        rng.shuffle(order)
        for i in range(0, len(order) - batch + 1, batch):
            yield [data[j] for j in order[i : i + batch]]


def collate(torch, items, pad_id, device):
    width = max(len(ids) for ids, _ in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), -100, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for r, (seq, start) in enumerate(items):
        ids[r, : len(seq)] = torch.tensor(seq)
        labels[r, start : len(seq)] = torch.tensor(seq[start:])
        mask[r, : len(seq)] = 1
    return ids.to(device), labels.to(device), mask.to(device)


def mean_loss(torch, model, data, pad_id, device, batch):
    """Mean per-token answer loss over data."""
    if not data:
        return None
    model.eval()
    total, tokens = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(data), batch):
            ids, labels, mask = collate(torch, data[i : i + batch], pad_id, device)
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
            target = labels[:, 1:]
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(),
                target.reshape(-1),
                ignore_index=-100,
                reduction="sum",
            )
            total += loss.item()
            tokens += int((target != -100).sum())
    model.train()
    return total / max(tokens, 1)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    # Every setting comes from `nas-core finetune` (finetune::Settings holds the defaults).
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--out", required=True)
    base = ap.add_mutually_exclusive_group(required=True)
    base.add_argument("--base-gguf")
    base.add_argument("--base-hf")
    ap.add_argument("--tokenizer-url", required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--lora-rank", type=int, required=True)
    ap.add_argument("--lora-alpha", type=float, required=True)
    ap.add_argument("--lora-dropout", type=float, required=True)
    ap.add_argument("--targets", required=True)
    ap.add_argument("--lr", type=float, required=True)
    ap.add_argument("--max-seq-len", type=int, required=True)
    ap.add_argument("--holdout", type=float, required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    args = ap.parse_args()

    tok = ServerTokenizer(args.tokenizer_url)
    pairs = read_pairs(args.pairs)

    import torch  # noqa: E402  (after the input checks: importing torch takes seconds)
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    emit("start", device=device, pairs=len(pairs), threads=torch.get_num_threads())

    t0 = time.monotonic()
    # A GPU trains a bfloat16 base (PEFT keeps the adapter in float32); a CPU, float32.
    dtype = torch.float32
    if device == "cuda" and torch.cuda.is_bf16_supported():
        dtype = torch.bfloat16
    if args.base_hf:
        model = AutoModelForCausalLM.from_pretrained(args.base_hf, dtype=dtype)
    else:
        gguf = os.path.abspath(args.base_gguf)
        model = AutoModelForCausalLM.from_pretrained(
            os.path.dirname(gguf), gguf_file=os.path.basename(gguf), dtype=dtype
        )
    emit("loaded", seconds=round(time.monotonic() - t0, 1), parameters=model.num_parameters())

    # Gemma's chat turn ends in <end_of_turn>; a raw completion ends in the model's EOS.
    eos = model.config.eos_token_id
    eos = eos[0] if isinstance(eos, list) else eos
    end_of_turn = tok.ids("<end_of_turn>", False)
    eos_ids = {"raw": [eos], "chat": end_of_turn}
    pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else eos

    with open(os.path.join(args.out, "tokens.jsonl"), "w") as record:
        data, dropped = encode(tok, pairs, eos_ids, args.max_seq_len, record)
    if not data:
        fail(f"every pair is longer than --max-seq-len {args.max_seq_len} tokens")
    rng = random.Random(args.seed)
    rng.shuffle(data)
    n_hold = int(round(len(data) * args.holdout)) if len(data) >= 10 else 0
    held, train = data[:n_hold], data[n_hold:]
    lengths = sorted(len(s) for s, _ in data)
    emit(
        "tokenized",
        train=len(train),
        held_out=len(held),
        dropped_too_long=dropped,
        median_tokens=lengths[len(lengths) // 2],
        max_tokens=lengths[-1],
    )

    cfg = LoraConfig(
        r=args.lora_rank,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=[t for t in args.targets.split(",") if t],
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, cfg)
    model.to(device)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    warmup = max(1, args.steps // 10)

    def lr_at(step):  # linear warm-up, cosine decay to zero
        if step < warmup:
            return args.lr * (step + 1) / warmup
        frac = (step - warmup) / max(1, args.steps - warmup)
        return args.lr * 0.5 * (1 + math.cos(math.pi * frac))

    eval_batch = max(1, args.batch)
    before_train = mean_loss(torch, model, train[:64], pad_id, device, eval_batch)
    before_held = mean_loss(torch, model, held, pad_id, device, eval_batch)
    emit("eval", step=0, train_loss=before_train, held_out_loss=before_held, trainable=trainable)

    model.train()
    stream = batches(train, min(args.batch, len(train)), rng)
    start = time.monotonic()
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        ids, labels, mask = collate(torch, next(stream), pad_id, device)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        if not math.isfinite(loss.item()):
            fail(f"the loss is {loss.item()} at step {step + 1}: lower --lr", 4)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        emit(
            "step",
            step=step + 1,
            steps=args.steps,
            loss=loss.item(),
            lr=lr_at(step),
            tokens=int(mask.sum()),
            seconds=round(time.monotonic() - start, 2),
        )

    after_train = mean_loss(torch, model, train[:64], pad_id, device, eval_batch)
    after_held = mean_loss(torch, model, held, pad_id, device, eval_batch)
    emit("eval", step=args.steps, train_loss=after_train, held_out_loss=after_held)

    adapter = os.path.join(args.out, "adapter")
    model.save_pretrained(adapter)
    # The adapter's converter reads the base's config.json; one saved from a GGUF-loaded model
    # lacks `architectures`, without which the converter cannot tell the model.
    base_cfg = os.path.join(args.out, "base-config")
    model.get_base_model().config.save_pretrained(base_cfg)
    path = os.path.join(base_cfg, "config.json")
    with open(path) as f:
        c = json.load(f)
    if not c.get("architectures"):
        c["architectures"] = [type(model.get_base_model()).__name__]
    with open(path, "w") as f:
        json.dump(c, f, indent=2)
    emit(
        "done",
        seconds=round(time.monotonic() - start, 1),
        peak_rss_mb=round(peak_rss_mb()),
        adapter=adapter,
        base_config=base_cfg,
        train_loss_before=before_train,
        train_loss_after=after_train,
        held_out_loss_before=before_held,
        held_out_loss_after=after_held,
    )


if __name__ == "__main__":
    main()
