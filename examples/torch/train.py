"""A small GPT-style character model on examples/data/walking-notes.txt, trained with DynMuon on the hidden
matrices and AdamW on the rest, watched by Muonscope.

    pip install ./trainer/python                          # torch >= 2.2
    npx muonscope run -- python examples/torch/train.py   # host + dashboard (prints the dashboard URL)
    python examples/torch/train.py --steps 300             # or on its own (docs/python.md §4)

The Muonscope part is three lines: the import, the DynMuon optimizer and `muonscope.watch(...)` (the
`run.log(...)` calls and `run.should_stop` belong to the run it returns). Everything else is an ordinary
PyTorch loop. On the CPU with a fixed --seed two runs give the same losses.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import muonscope

DATA = Path(__file__).resolve().parent.parent / "data" / "walking-notes.txt"


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300, help="optimizer steps (default 300)")
    ap.add_argument("--batch-size", type=int, default=32, help="sequences per step (default 32)")
    ap.add_argument("--context", type=int, default=64, help="characters per sequence (default 64)")
    ap.add_argument("--width", type=int, default=64, help="model width (default 64)")
    ap.add_argument("--layers", type=int, default=3, help="transformer blocks (default 3)")
    ap.add_argument("--n-heads", type=int, default=4, help="attention heads per block (default 4)")
    ap.add_argument("--lr", type=float, default=0.02, help="DynMuon's lr for the hidden matrices (default 0.02)")
    ap.add_argument("--adamw-lr", type=float, default=3e-3, help="AdamW's lr for the rest (default 3e-3)")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: cuda when available")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-every", type=int, default=50, help="validation loss every N steps (default 50)")
    ap.add_argument("--diagnostics-every", type=int, default=100, help="Muonscope's diagnostics cadence (default 100)")
    ap.add_argument("--out", default="runs", help="run folder root when no Muonscope host runs this script")
    ap.add_argument("--no-watch", action="store_true", help="train without Muonscope (for timing the overhead)")
    args = ap.parse_args(argv)
    for name in ("steps", "batch_size", "context", "width", "layers", "n_heads", "eval_every", "diagnostics_every"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.width % args.n_heads:
        ap.error(f"--width ({args.width}) must be a multiple of --n-heads ({args.n_heads})")
    return args


# ---- data ----------------------------------------------------------------------------------------


class CharData:
    """The corpus as character ids; the last 10% held out (validation, and the probes' batches)."""

    def __init__(self, path: Path, context: int):
        text = path.read_text(encoding="utf-8")
        self.alphabet = sorted(set(text))
        index = {c: i for i, c in enumerate(self.alphabet)}
        ids = torch.tensor([index[c] for c in text], dtype=torch.long)
        cut = int(len(ids) * 0.9)
        self.train, self.val = ids[:cut], ids[cut:]
        self.context = context
        if len(self.val) <= context + 1:
            raise SystemExit(f"{path}: too short for a context of {context}")

    @property
    def vocab_size(self) -> int:
        return len(self.alphabet)

    def batch(self, split: torch.Tensor, size: int, gen: torch.Generator):
        """`size` random windows of `split`: inputs and next-character targets."""
        starts = torch.randint(0, len(split) - self.context - 1, (size,), generator=gen)
        rows = starts[:, None] + torch.arange(self.context + 1)
        windows = split[rows]
        return windows[:, :-1], windows[:, 1:]


# ---- model ---------------------------------------------------------------------------------------
# Parameter names matter to Muonscope's display only: names with embed/head/norm/bias are shown as
# non-matrices. The attention's projections are `qkv` and `proj` (not "heads").


class SelfAttention(nn.Module):
    def __init__(self, width: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_heads, c // self.n_heads).transpose(1, 2) for z in (q, k, v))
        # Written out rather than F.scaled_dot_product_attention: the diagnostics' curvature and the mode
        # probe differentiate the loss twice (Hessian-vector products), and the fused CPU/flash kernels
        # have no double backward.
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        y = scores.masked_fill(~causal, float("-inf")).softmax(dim=-1) @ v
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    def __init__(self, width: int, n_heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, n_heads)
        self.norm2 = nn.LayerNorm(width)
        self.fc = nn.Linear(width, 4 * width)
        self.out = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.out(F.gelu(self.fc(self.norm2(x))))


class GPT(nn.Module):
    def __init__(self, vocab: int, context: int, width: int, layers: int, n_heads: int):
        super().__init__()
        self.tok_embed = nn.Embedding(vocab, width)
        self.pos_embed = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, n_heads) for _ in range(layers))
        self.norm_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)  # separate (untied) output head
        for name, p in self.named_parameters():
            if p.ndim == 2:
                nn.init.normal_(p, std=0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.tok_embed(idx) + self.pos_embed(pos)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm_f(x))

    def hidden_matrices(self):
        """The 2-D weights inside the blocks: DynMuon's. Embeddings, head, norms and biases go to AdamW."""
        return [p for p in self.blocks.parameters() if p.ndim == 2]


def loss_of(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = model(x)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


# ---- training ------------------------------------------------------------------------------------


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device")
    return torch.device("cuda" if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()) else "cpu")


def main(argv=None) -> None:
    args = parse_args(argv)
    device = pick_device(args.device)
    torch.manual_seed(args.seed)
    data = CharData(DATA, args.context)
    model = GPT(data.vocab_size, args.context, args.width, args.layers, args.n_heads).to(device)

    matrices = model.hidden_matrices()
    chosen = {id(p) for p in matrices}
    rest = [p for p in model.parameters() if id(p) not in chosen]
    dynmuon = muonscope.DynMuon(matrices, total_steps=args.steps, lr=args.lr)
    adamw = torch.optim.AdamW(rest, lr=args.adamw_lr, betas=(0.9, 0.95), weight_decay=0.0)
    optimizers = [dynmuon, adamw]  # DynMuon first: the run's lr and p are the first optimizer's

    # Fixed held-out batches (the validation split) for the validation loss and the diagnostics' probes.
    val_gen = torch.Generator().manual_seed(args.seed + 1)
    val_x, val_y = (t.to(device) for t in data.batch(data.val, 64, val_gen))
    microbatches, microbatch_size = 8, 8
    noise_x, noise_y = (t.to(device) for t in data.batch(data.val, microbatches * microbatch_size, val_gen))

    # Curvature along the update: a differentiable held-out loss, on a training batch's worth of the
    # validation batch. Its Hessian-vector products cost about 3.5 training steps (measured, CPU), once
    # per diagnostics point at most; on all 64 sequences they cost twice that, which a 300-step run feels.
    probe_x, probe_y = val_x[:args.batch_size], val_y[:args.batch_size]

    def probe() -> torch.Tensor:
        return loss_of(model, probe_x, probe_y)

    def noise_probe(i: int) -> torch.Tensor:  # gradient noise: the i-th microbatch of a held-out batch
        s = slice(i * microbatch_size, (i + 1) * microbatch_size)
        return loss_of(model, noise_x[s], noise_y[s])

    config = {"task": {"name": "walking-notes (characters)"}, "model": {**vars(args), "vocab": data.vocab_size},
              "diagnostics": {"every": args.diagnostics_every, "microbatches": microbatches}}
    # The one Muonscope line: hooks on the optimizers' step(); records go to the host or a run folder.
    watching = contextlib.nullcontext() if args.no_watch else muonscope.watch(
        model, optimizers, total_steps=args.steps, name="torch-gpt", config=config, probe=probe,
        noise_probe=noise_probe, microbatch_size=microbatch_size, batch_size=args.batch_size, out=args.out)
    started = time.perf_counter()
    # `with`: a stop from the dashboard raises muonscope.StopTraining in step() after a final checkpoint,
    # and the block ends quietly; an exception marks the run crashed; Ctrl-C stops it as `stopped`.
    with watching as run:
        val = train(args, model, optimizers, data, device, run, lambda: loss_of(model, val_x, val_y), started)
    if val is not None:
        print(f"done in {time.perf_counter() - started:.1f}s; val loss {val:.4f} "
              f"(uniform guess: {math.log(data.vocab_size):.3f})", flush=True)


def train(args, model, optimizers, data, device, run, val_loss, started):
    """The ordinary loop; `run` is None without Muonscope. Returns the last validation loss."""
    gen = torch.Generator().manual_seed(args.seed)
    tokens = args.batch_size * args.context
    val = None
    for step in range(args.steps):
        if run is not None and run.should_stop:  # a stop already asked for: end now (close() carries it out)
            break
        x, y = (t.to(device) for t in data.batch(data.train, args.batch_size, gen))
        loss = loss_of(model, x, y)
        for o in optimizers:
            o.zero_grad(set_to_none=True)
        loss.backward()
        if run is not None:
            run.log(loss=loss, tokens=tokens)  # before step(): the step's record is written at once
        for o in optimizers:
            o.step()
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            with torch.no_grad():
                val = val_loss().item()
            if run is not None:
                run.log(val_loss=val)  # an `eval` record for the step just completed
            print(f"step {step + 1}/{args.steps}  loss {loss.item():.4f}  val {val:.4f}  "
                  f"{time.perf_counter() - started:.1f}s", flush=True)
    return val


if __name__ == "__main__":
    main()
