"""C-SFT: contrastive fine-tuning of a projection head over frozen content vectors, so that items
a user likes together end up close (after MIM's C-SFT stage; the recipe below is our
reconstruction, papers.md section 2.2).

* Head: ``z = normalize(x + MLP(x) - center)`` over the frozen ``DIR/content/embeddings.npy``
  (residual, last layer zero-initialized; centering prevents collapse, see ProjectionHead).
* Positives from behavior: each positive event of a user paired with the user's next ``window``
  positives in time order, plus every pair in the same basket (same user and same ts) when
  ``--baskets`` is on (default for Instacart). Positive = rating >= 4 when the dataset has a
  ``rating`` numeric field, every event for Instacart (purchases), otherwise the ``label == 1``
  rows of the sample splits.
* Time split: training pairs lie entirely before each user's first valid/test sample ts;
  held-out pairs = (positive, next positive) whose target lies in the user's test period.
* Loss: symmetric InfoNCE with a learnable temperature (init 0.07, clamped >= 0.01); negatives =
  the other in-batch items + a FIFO queue of item vectors from earlier steps; candidates with the
  same item id as the positive or the query are masked (false negatives).
* Metric: recall@k (k = 10, 50) of the held-out next positive among all items, raw vs aligned.

Writes ``DIR/content/aligned.{npy,parquet}`` (same layout as embeddings), ``csft_head.pt`` and
``csft_report.json``.

Usage::

    python -m pipelines.content.csft --dataset DIR [--epochs 3] [--window 3] [--baskets]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from torch import nn

from components.layers.mlp import MLP
from pipelines.console import parse_cli, progress
from pipelines.content.embed import (
    content_dir,
    load_item_matrix,
    write_files_atomically,
    write_item_embeddings,
)
from pipelines.data.prepared import DataError, PreparedDataset


@dataclass
class CSFTConfig:
    window: int = 3
    baskets: bool | None = None  # None = on for Instacart-like datasets
    max_basket: int = 30
    positives: str = "auto"  # auto | rating | events | samples
    rating_threshold: float = 4.0
    hidden: int = 512
    epochs: int = 3
    max_steps: int | None = None
    batch_size: int = 512
    queue_size: int = 4096
    lr: float = 1e-3
    init_temperature: float = 0.07
    min_temperature: float = 0.01
    seed: int = 0
    eval_ks: tuple[int, ...] = field(default=(10, 50))
    max_eval_pairs: int = 20000


class ProjectionHead(nn.Module):
    """``[..., d] -> [..., d]``: ``normalize(x + MLP(x) - center)``.

    The last MLP layer starts at zero, so training starts from the raw space. ``center`` is the
    mean of ``x + MLP(x)`` over the batch while training (with gradient) and an exponential
    moving average of it at eval time. Centering is our addition: without it the head
    collapses (every output the same vector) on MovieLens, because raw text neighbors score
    worse than chance as positives and a large constant offset is the quickest way down.

    Example:
        >>> head = ProjectionHead(8, hidden=16).eval()
        >>> head(torch.randn(4, 8)).shape
        torch.Size([4, 8])
    """

    def __init__(self, dim: int, hidden: int = 512, momentum: float = 0.99) -> None:
        super().__init__()
        self.mlp = MLP(dim, [hidden, dim], activation="gelu")
        last = self.mlp.layers[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.momentum = momentum
        self.register_buffer("center", torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x + self.mlp(x)
        if self.training:
            center = h.reshape(-1, h.shape[-1]).mean(dim=0)
            with torch.no_grad():
                self.center.mul_(self.momentum).add_((1 - self.momentum) * center)
        else:
            center = self.center
        return F.normalize(h - center, dim=-1)


def info_nce(
    query: torch.Tensor,
    positive: torch.Tensor,
    query_ids: torch.Tensor,
    positive_ids: torch.Tensor,
    queue: torch.Tensor,
    queue_ids: torch.Tensor,
    temperature: torch.Tensor,
) -> torch.Tensor:
    """InfoNCE of ``query [B, d]`` against ``positive [B, d]`` with in-batch + queue ``[Q, d]``
    negatives; a candidate whose item id equals the row's positive or query id (other than the
    row's own positive) is masked out. Returns the mean loss (scalar)."""
    b = query.shape[0]
    candidates = torch.cat([positive, queue])
    candidate_ids = torch.cat([positive_ids, queue_ids])
    logits = query @ candidates.T / temperature
    false_negative = (candidate_ids[None, :] == positive_ids[:, None]) | (
        candidate_ids[None, :] == query_ids[:, None]
    )
    own = torch.arange(b)
    false_negative[own, own] = False
    logits = logits.masked_fill(false_negative, float("-inf"))
    return F.cross_entropy(logits, own)


def _dataset_name(manifest: dict) -> str:
    return " ".join(str(manifest.get(k, "")) for k in ("name", "dataset", "source")).lower()


def positive_events(ds: PreparedDataset, rule: str = "auto", threshold: float = 4.0):
    """``(user, item, ts)`` of positive events, sorted by (user, ts, original order)."""
    name = _dataset_name(ds.manifest)
    if rule == "auto":
        if "rating" in ds.numeric_fields:
            rule = "rating"
        elif "instacart" in name:
            rule = "events"
        else:
            rule = "samples"
    if rule in ("rating", "events"):
        ev = ds.read_events()
        user = np.repeat(np.arange(ev.offsets.size - 1), np.diff(ev.offsets))
        keep = np.ones(ev.item.size, bool)
        if rule == "rating":
            if "rating" not in ds.numeric_fields:
                raise DataError(ds.root / "events.parquet", "num_rating", "no rating field")
            keep = ev.numeric[:, ds.numeric_fields.index("rating")] >= threshold
        return user[keep], ev.item[keep], ev.ts[keep]
    if rule != "samples":
        raise ValueError(f"unknown positives rule {rule!r}")
    parts = [
        ds.read_samples(s).select(["user", "item", "ts", "label"])
        for s in ("train", "valid", "test")
        if ds.samples_path(s).is_file()
    ]
    cols = {
        c: np.concatenate([p.column(c).to_numpy() for p in parts])
        for c in ("user", "item", "ts", "label")
    }
    keep = cols["label"] == 1
    order = np.lexsort((cols["ts"][keep], cols["user"][keep]))
    return (
        cols["user"][keep][order].astype(np.int64),
        cols["item"][keep][order].astype(np.int64),
        cols["ts"][keep][order].astype(np.int64),
    )


def split_starts(ds: PreparedDataset, num_users: int) -> tuple[np.ndarray, np.ndarray]:
    """Per user: ``train_end`` (first valid/test sample ts) and ``test_start`` (first test sample
    ts); users without such samples get int64 max (everything is train)."""
    big = np.iinfo(np.int64).max
    train_end = np.full(num_users + 1, big, np.int64)
    test_start = np.full(num_users + 1, big, np.int64)
    for split in ("valid", "test"):
        if not ds.samples_path(split).is_file():
            continue
        t = pq.read_table(ds.samples_path(split), columns=["user", "ts"])
        u, ts = t.column("user").to_numpy(), t.column("ts").to_numpy().astype(np.int64)
        np.minimum.at(train_end, u, ts)
        if split == "test":
            np.minimum.at(test_start, u, ts)
    return train_end, test_start


def behavior_pairs(user, item, ts, window: int, baskets: bool, max_basket: int = 30):
    """``(query_index, target_index)`` position pairs into the sorted positive arrays: the next
    1..``window`` positives of the same user, plus same-user same-ts pairs (``baskets``)."""
    qs, ps = [], []
    n = user.size
    for j in range(1, max(window, max_basket if baskets else 0) + 1):
        if j >= n:
            break
        same_user = user[:-j] == user[j:]
        mask = same_user if j <= window else np.zeros_like(same_user)
        if baskets:
            mask = mask | (same_user & (ts[:-j] == ts[j:]))
        idx = np.flatnonzero(mask & (item[:-j] != item[j:]))
        qs.append(idx)
        ps.append(idx + j)
    if not qs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(qs).astype(np.int64), np.concatenate(ps).astype(np.int64)


def recall_at_k(
    matrix: np.ndarray,
    candidates: np.ndarray,
    queries: np.ndarray,
    targets: np.ndarray,
    ks: tuple[int, ...],
    chunk: int = 2048,
) -> dict[str, float]:
    """Share of pairs whose target ranks in the top k of ``candidates`` (item indices) by cosine
    to the query item (the query item itself is excluded; ties count against the target)."""
    if queries.size == 0:
        return {f"recall@{k}": float("nan") for k in ks}
    cand = torch.from_numpy(matrix[candidates])
    pos_of = np.full(matrix.shape[0], -1, np.int64)
    pos_of[candidates] = np.arange(candidates.size)
    hits = {k: 0 for k in ks}
    for s in range(0, queries.size, chunk):
        q, t = queries[s : s + chunk], targets[s : s + chunk]
        scores = torch.from_numpy(matrix[q]) @ cand.T
        rows = torch.arange(q.size)
        qpos = torch.from_numpy(pos_of[q])
        scores[rows[qpos >= 0], qpos[qpos >= 0]] = float("-inf")
        target_score = scores[rows, torch.from_numpy(pos_of[t])]
        rank = (scores >= target_score[:, None]).sum(dim=1) - 1  # minus the target itself
        for k in ks:
            hits[k] += int((rank < k).sum())
    return {f"recall@{k}": hits[k] / queries.size for k in ks}


def recall_at_k_reference(matrix, candidates, queries, targets, ks) -> dict[str, float]:
    """Per-pair sort twin of :func:`recall_at_k`."""
    hits = {k: 0 for k in ks}
    for q, t in zip(queries, targets):
        others = [c for c in candidates if c != q]
        score = {c: float(matrix[q] @ matrix[c]) for c in others}
        better = sum(1 for c in others if c != t and score[c] >= score[t])
        for k in ks:
            hits[k] += better < k
    return {f"recall@{k}": hits[k] / max(1, len(queries)) for k in ks}


@dataclass
class CSFTResult:
    aligned: np.ndarray  # [vocab_items, d]
    report: dict


def train_csft(dataset: str | os.PathLike[str], config: CSFTConfig | None = None) -> CSFTResult:
    """Train the head, evaluate raw vs aligned recall, write ``DIR/content/aligned.*``."""
    cfg = config or CSFTConfig()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    ds = PreparedDataset.open(dataset)
    raw = load_item_matrix(dataset, "embeddings")
    item_index = ds.read_items().column("item").to_numpy().astype(np.int64)
    user, item, ts = positive_events(ds, cfg.positives, cfg.rating_threshold)
    baskets = cfg.baskets if cfg.baskets is not None else "instacart" in _dataset_name(ds.manifest)
    qi, pi = behavior_pairs(user, item, ts, cfg.window, baskets, cfg.max_basket)
    train_end, test_start = split_starts(ds, int(ds.vocab["users"]) - 1)
    train = ts[pi] < train_end[user[pi]]
    held = (pi == qi + 1) & (ts[pi] >= test_start[user[pi]]) & (user[qi] == user[pi])
    train_q, train_p = item[qi[train]], item[pi[train]]
    held_q, held_p = item[qi[held]], item[pi[held]]
    if held_q.size > cfg.max_eval_pairs:
        pick = rng.choice(held_q.size, cfg.max_eval_pairs, replace=False)
        held_q, held_p = held_q[pick], held_p[pick]
    if train_q.size == 0:
        raise DataError(ds.root / "events.parquet", None, "no positive training pairs found")

    x = torch.from_numpy(raw)
    head = ProjectionHead(raw.shape[1], cfg.hidden)
    log_tau = nn.Parameter(torch.tensor(float(np.log(cfg.init_temperature))))
    opt = torch.optim.AdamW([*head.parameters(), log_tau], lr=cfg.lr, weight_decay=0.0)
    queue = torch.zeros(0, raw.shape[1])
    queue_ids = torch.zeros(0, dtype=torch.int64)
    steps_per_epoch = int(np.ceil(train_q.size / cfg.batch_size))
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    losses: list[float] = []
    bar = progress(total=total, desc="c-sft", unit="step")
    step = 0
    while step < total:
        order = torch.from_numpy(rng.permutation(train_q.size))
        for s in range(0, order.numel(), cfg.batch_size):
            if step >= total:
                break
            batch = order[s : s + cfg.batch_size].numpy()
            q_ids = torch.from_numpy(train_q[batch])
            p_ids = torch.from_numpy(train_p[batch])
            zq, zp = head(torch.cat([x[q_ids], x[p_ids]])).split(q_ids.numel())
            tau = log_tau.exp().clamp(min=cfg.min_temperature)
            loss = 0.5 * (
                info_nce(zq, zp, q_ids, p_ids, queue, queue_ids, tau)
                + info_nce(zp, zq, p_ids, q_ids, queue, queue_ids, tau)
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            queue = torch.cat([zq.detach(), zp.detach(), queue])[: cfg.queue_size]
            queue_ids = torch.cat([q_ids, p_ids, queue_ids])[: cfg.queue_size]
            losses.append(loss.item())
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}", tau=f"{tau.item():.3f}")
    bar.close()

    head.eval()
    with torch.no_grad():
        aligned_items = head(x[torch.from_numpy(item_index)]).numpy()
    aligned = np.zeros_like(raw)
    aligned[item_index] = aligned_items
    candidates = np.unique(item_index)
    filled = min(len(losses) - 1, int(np.ceil(cfg.queue_size / (2 * cfg.batch_size))))
    window = max(1, (len(losses) - filled) // 10)
    report = {
        "config": asdict(cfg),
        "baskets": baskets,
        "positives": int(item.size),
        "train_pairs": int(train_q.size),
        "heldout_pairs": int(held_q.size),
        "steps": step,
        # loss depends on the number of negatives: compare windows taken once the queue is full
        "loss_first": float(np.mean(losses[filled : filled + window])),
        "loss_last": float(np.mean(losses[-window:])),
        "loss_curve": losses[:: max(1, len(losses) // 200)],
        "temperature": log_tau.detach().exp().clamp(min=cfg.min_temperature).item(),
        "raw": recall_at_k(raw, candidates, held_q, held_p, cfg.eval_ks),
        "aligned": recall_at_k(aligned, candidates, held_q, held_p, cfg.eval_ks),
    }
    out = content_dir(dataset)
    write_item_embeddings(out, "aligned", item_index, aligned_items, int(ds.vocab["items"]))
    report_json = json.dumps(report, indent=2, sort_keys=True) + "\n"
    state = {"head": head.state_dict(), "log_temperature": log_tau.detach(), "config": asdict(cfg)}
    write_files_atomically(
        out,
        {
            "csft_head.pt": lambda tmp: torch.save(state, tmp),
            "csft_report.json": lambda tmp: tmp.write_text(report_json),
        },
    )
    return CSFTResult(aligned=aligned, report=report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="C-SFT: align content embeddings to behavior.")
    parser.add_argument("--dataset", required=True, help="prepared dataset directory")
    parser.add_argument("--epochs", type=int, default=CSFTConfig.epochs)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--window", type=int, default=CSFTConfig.window)
    parser.add_argument("--baskets", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument(
        "--positives", default="auto", choices=["auto", "rating", "events", "samples"]
    )
    parser.add_argument("--batch-size", type=int, default=CSFTConfig.batch_size)
    parser.add_argument("--queue-size", type=int, default=CSFTConfig.queue_size)
    parser.add_argument("--lr", type=float, default=CSFTConfig.lr)
    parser.add_argument("--seed", type=int, default=0)
    args = parse_cli(parser, argv)
    cfg = CSFTConfig(
        window=args.window,
        baskets=args.baskets,
        positives=args.positives,
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        queue_size=args.queue_size,
        lr=args.lr,
        seed=args.seed,
    )
    try:
        result = train_csft(args.dataset, cfg)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    r = result.report
    print(
        f"pairs train={r['train_pairs']} heldout={r['heldout_pairs']} steps={r['steps']} "
        f"loss {r['loss_first']:.3f} -> {r['loss_last']:.3f} tau={r['temperature']:.3f}"
    )
    for name in ("raw", "aligned"):
        print(f"{name:8s} " + " ".join(f"{k}={v:.4f}" for k, v in r[name].items()))
    print(f"-> {content_dir(args.dataset)}/aligned.npy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
