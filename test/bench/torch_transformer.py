"""PyTorch CPU reference for the trainer benchmark: the same tiny decoder-only transformer as
trainer/models/transformer.ts (pre-norm LayerNorm blocks, fused qkv, causal softmax attention, tanh-GELU
MLP, learned token + position embeddings, untied head, no biases in linear layers), timed over full
training steps: forward, backward, AdamW step.

Run: python3 test/bench/torch_transformer.py '{"vocabSize":32,"contextLength":64,"width":128,"layers":2,"heads":4,"mlpRatio":4,"batchSize":16}'
Optional keys: "steps" (timed steps, default 30), "warmup" (default 5), "seed" (default 0).
Prints one JSON line: {"tokens_per_s", "ms_per_step", "torch", "threads", "config"}.
"""
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width, eps=1e-5)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)
        self.ln2 = nn.LayerNorm(width, eps=1e-5)
        self.fc = nn.Linear(width, mlp_ratio * width, bias=False)
        self.mlp_proj = nn.Linear(mlp_ratio * width, width, bias=False)

    def attention(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, w = x.shape
        d = w // self.heads
        q, k, v = self.qkv(x).split(w, dim=2)
        q, k, v = (z.view(b, t, self.heads, d).transpose(1, 2) for z in (q, k, v))
        # Written out (not scaled_dot_product_attention) to match the TF.js model's arithmetic.
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(d) + mask[:t, :t]
        out = F.softmax(scores, dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, t, w))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.ln1(x), mask)
        return x + self.mlp_proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class Transformer(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        w, t = c["width"], c["contextLength"]
        self.tok_embed = nn.Embedding(c["vocabSize"], w)
        self.pos_embed = nn.Parameter(torch.randn(t, w) * 0.02)
        self.blocks = nn.ModuleList(Block(w, c["heads"], c["mlpRatio"]) for _ in range(c["layers"]))
        self.ln_f = nn.LayerNorm(w, eps=1e-5)
        self.lm_head = nn.Linear(w, c["vocabSize"], bias=False)
        self.register_buffer("mask", torch.triu(torch.full((t, t), -1e9), diagonal=1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = tokens.shape[1]
        x = self.tok_embed(tokens) + self.pos_embed[:t]
        for block in self.blocks:
            x = block(x, self.mask)
        return self.lm_head(self.ln_f(x))


def main() -> None:
    c = {"mlpRatio": 4, "steps": 30, "warmup": 5, "seed": 0, **json.loads(sys.argv[1])}
    # The cores this process may use (taskset/cgroup aware), else all of them.
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(threads)
    torch.manual_seed(c["seed"])
    model = Transformer(c)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    b, t, v = c["batchSize"], c["contextLength"], c["vocabSize"]
    tokens = torch.randint(0, v, (b, t + 1))

    def step() -> None:
        logits = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, v), tokens[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(c["warmup"]):
        step()
    start = time.perf_counter()
    for _ in range(c["steps"]):
        step()
    seconds = (time.perf_counter() - start) / c["steps"]
    print(json.dumps({
        "tokens_per_s": b * t / seconds,
        "ms_per_step": seconds * 1e3,
        "torch": torch.__version__,
        "threads": threads,
        "config": {k: c[k] for k in ("vocabSize", "contextLength", "width", "layers", "heads", "mlpRatio", "batchSize")},
    }))


if __name__ == "__main__":
    main()
