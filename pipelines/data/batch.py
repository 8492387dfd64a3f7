"""`Batch`: what the loader yields and every model in `components` reads.

Shapes: B samples in the batch, N = sum of history lengths (after truncation to ``max_len``),
F numeric fields per behavior.

The item-side ids of candidates *and* history positions travel in one KeyedJaggedTensor with
one bag per position (``items``, stride B + N, every length 1): rows ``[0, B)`` are the B
candidates, rows ``[B, B + N)`` are the histories of samples 0..B-1 concatenated, each oldest
-> newest. One EmbeddingBagCollection lookup therefore embeds candidates and behaviors with
the same tables, and on CPU it is ~4x faster than an EmbeddingCollection (DESIGN.md section 7).
Because ``items`` and ``users`` are attributes of the batch, TorchRec's train pipeline can
input-dist them ahead of the forward pass. :func:`restrict_item_lookup` (the lookup plan) keeps
only the history rows the model reads in ``items``; ``item_ids`` always holds every id.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor
from torchrec.streamable import Pipelineable

#: keys of ``Batch.users`` (one id per sample)
USER_KEYS: tuple[str, ...] = ("user_id",)
#: keys of ``Batch.items`` (one id per candidate row and per history row)
ITEM_KEYS: tuple[str, ...] = ("item_id", "category_id", "behavior_id")


@dataclass
class Batch(Pipelineable):
    """One training/eval batch.

    Attributes:
        users: KJT, keys ``USER_KEYS``, stride B, every length 1.
        items: KJT, keys ``ITEM_KEYS``, every length 1: what the item-side
            EmbeddingBagCollection looks up. Stride B + N (candidates, then every history row),
            or B + R after :func:`restrict_item_lookup` (candidates, then the R history rows
            ``history_rows`` names). Candidate rows carry behavior id 0 ("no behavior").
        item_ids: ``[3, B + N]`` int64, the item, category and behavior id of the B candidates
            and of every history row, always complete: what the model groups and searches the
            history by.
        history_lengths: ``[B]`` int64, history length of each sample (sums to N).
        history_age: ``[N]`` float32, seconds between each behavior and its sample's ts (> 0).
        history_numeric: ``[N, F]`` float32 numeric fields of each behavior (raw values).
        labels: ``[B]`` float32 in {0, 1}.
        weights: ``[B]`` float32; 1 for real samples, 0 for padding rows that only keep ranks'
            batch counts equal in distributed eval.
        timestamps: ``[B]`` int64 sample ts (seconds).
        history_rows: None (``items`` holds every history row), or ``[R]`` int64 ascending
            indices into N of the history rows ``items`` holds; the model reads zeros for the
            others (:func:`restrict_item_lookup`).
    """

    users: KeyedJaggedTensor
    items: KeyedJaggedTensor
    item_ids: torch.Tensor
    history_lengths: torch.Tensor
    history_age: torch.Tensor
    history_numeric: torch.Tensor
    labels: torch.Tensor
    weights: torch.Tensor
    timestamps: torch.Tensor
    history_rows: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return int(self.labels.shape[0])

    @property
    def user_ids(self) -> torch.Tensor:
        """``[B]`` int64 user index of each sample (for GAUC)."""
        return self.users.values()

    def to(self, device: torch.device, non_blocking: bool = False) -> Batch:
        return Batch(
            users=self.users.to(device=device, non_blocking=non_blocking),
            items=self.items.to(device=device, non_blocking=non_blocking),
            item_ids=self.item_ids.to(device=device, non_blocking=non_blocking),
            history_lengths=self.history_lengths.to(device=device, non_blocking=non_blocking),
            history_age=self.history_age.to(device=device, non_blocking=non_blocking),
            history_numeric=self.history_numeric.to(device=device, non_blocking=non_blocking),
            labels=self.labels.to(device=device, non_blocking=non_blocking),
            weights=self.weights.to(device=device, non_blocking=non_blocking),
            timestamps=self.timestamps.to(device=device, non_blocking=non_blocking),
            history_rows=None
            if self.history_rows is None
            else self.history_rows.to(device=device, non_blocking=non_blocking),
        )

    def record_stream(self, stream: torch.Stream) -> None:
        self.users.record_stream(stream)
        self.items.record_stream(stream)
        for tensor in (
            self.item_ids,
            self.history_lengths,
            self.history_age,
            self.history_numeric,
            self.labels,
            self.weights,
            self.timestamps,
        ):
            tensor.record_stream(stream)
        if self.history_rows is not None:
            self.history_rows.record_stream(stream)

    def pin_memory(self) -> Batch:
        return Batch(
            users=self.users.pin_memory(),
            items=self.items.pin_memory(),
            item_ids=self.item_ids.pin_memory(),
            history_lengths=self.history_lengths.pin_memory(),
            history_age=self.history_age.pin_memory(),
            history_numeric=self.history_numeric.pin_memory(),
            labels=self.labels.pin_memory(),
            weights=self.weights.pin_memory(),
            timestamps=self.timestamps.pin_memory(),
            history_rows=None if self.history_rows is None else self.history_rows.pin_memory(),
        )


def make_batch(
    user: torch.Tensor,
    item: torch.Tensor,
    category: torch.Tensor,
    labels: torch.Tensor,
    timestamps: torch.Tensor,
    history_lengths: torch.Tensor,
    history_item: torch.Tensor,
    history_category: torch.Tensor,
    history_behavior: torch.Tensor,
    history_age: torch.Tensor,
    history_numeric: torch.Tensor,
    weights: torch.Tensor | None = None,
) -> Batch:
    """Assemble a :class:`Batch` from flat tensors (B candidates, N history rows)."""
    b = int(user.shape[0])
    n = int(history_item.shape[0])
    if int(history_lengths.sum()) != n:
        raise ValueError(f"history_lengths sum to {int(history_lengths.sum())}, but N = {n}")
    ones_b = torch.ones(b, dtype=torch.int32)
    users = KeyedJaggedTensor(
        keys=list(USER_KEYS), values=user.to(torch.int64), lengths=ones_b, stride=b
    )
    rows = b + n
    candidate_behavior = torch.zeros(b, dtype=torch.int64)
    values = torch.cat(
        [
            item.to(torch.int64),
            history_item.to(torch.int64),
            category.to(torch.int64),
            history_category.to(torch.int64),
            candidate_behavior,
            history_behavior.to(torch.int64),
        ]
    )
    items = KeyedJaggedTensor(
        keys=list(ITEM_KEYS),
        values=values,
        lengths=torch.ones(rows * len(ITEM_KEYS), dtype=torch.int32),
        stride=rows,
    )
    return Batch(
        users=users,
        items=items,
        item_ids=values.view(len(ITEM_KEYS), rows),
        history_lengths=history_lengths.to(torch.int64),
        history_age=history_age.to(torch.float32),
        history_numeric=_rows(history_numeric.to(torch.float32), n),
        labels=labels.to(torch.float32),
        weights=torch.ones(b) if weights is None else weights.to(torch.float32),
        timestamps=timestamps.to(torch.int64),
    )


def restrict_item_lookup(batch: Batch, history_rows: torch.Tensor) -> Batch:
    """``batch`` whose ``items`` KJT holds the B candidate rows and only the history rows
    ``history_rows`` (``[R]`` int64 indices into N, any order, repeats allowed): the item
    EmbeddingBagCollection looks up, and its fused optimizer updates, B + R rows instead of
    B + N. ``Batch.history_rows`` records which (ascending, unique); ``item_ids`` and the rest
    are unchanged. The model hands the encoder the R embeddings with the row of each behavior
    among them (``History.embedding_rows``).

    Example:
        >>> batch = random_batch([4, 3], users=10, items=50, categories=5, behaviors=3)
        >>> small = restrict_item_lookup(batch, torch.tensor([6, 3, 6]))
        >>> small.items.stride(), small.history_rows.tolist()
        (4, [3, 6])
    """
    ids = batch.item_ids  # [3, B + N]
    b = batch.batch_size
    n = ids.shape[1] - b
    rows = torch.unique(history_rows.to(device=ids.device, dtype=torch.int64))  # sorted
    if rows.numel() and (int(rows[0]) < 0 or int(rows[-1]) >= n):
        raise ValueError(f"history_rows must index the N = {n} history rows")
    kept = torch.cat([torch.arange(b, device=ids.device), b + rows])  # [B + R]
    items = KeyedJaggedTensor(
        keys=list(ITEM_KEYS),
        values=ids.index_select(1, kept).reshape(-1),
        lengths=torch.ones(kept.numel() * len(ITEM_KEYS), dtype=torch.int32, device=ids.device),
        stride=int(kept.numel()),
    )
    return dataclasses.replace(batch, items=items, history_rows=rows)


def _rows(numeric: torch.Tensor, n: int) -> torch.Tensor:
    """``[N, F]`` numeric fields; a flat ``[N * F]`` tensor is reshaped (N = 0 keeps F)."""
    if numeric.dim() == 2:
        if numeric.shape[0] != n:
            raise ValueError(f"history_numeric has {numeric.shape[0]} rows, but N = {n}")
        return numeric
    if n == 0:
        return numeric.reshape(0, 0)
    return numeric.reshape(n, -1)


def random_batch(
    history_lengths: Sequence[int],
    *,
    users: int,
    items: int,
    categories: int,
    behaviors: int,
    num_numeric: int = 0,
    seed: int = 0,
) -> Batch:
    """A valid :class:`Batch` of random ids and labels, for examples and smoke tests.

    Ids are drawn in ``[1, vocabulary)`` (the sizes of :class:`components.model.Vocab`), ages
    decrease within each history (oldest first); the values carry no signal.

    Example:
        >>> batch = random_batch([4, 0, 2], users=10, items=50, categories=5, behaviors=3)
        >>> batch.items.stride(), batch.history_lengths.tolist(), batch.labels.shape
        (9, [4, 0, 2], torch.Size([3]))
    """
    # imported here: loader workers import this module and need none of components
    from components.encoders.example_inputs import random_ages, random_ids

    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(list(history_lengths), dtype=torch.int64)
    if bool((lengths < 0).any()):
        raise ValueError(f"history_lengths must be >= 0, got {lengths.tolist()}")
    b, n = int(lengths.shape[0]), int(lengths.sum())

    def ids(vocabulary: int, count: int) -> torch.Tensor:
        return random_ids(vocabulary, (count,), generator)

    age = random_ages(lengths.tolist(), generator)
    return make_batch(
        user=ids(users, b),
        item=ids(items, b),
        category=ids(categories, b),
        labels=(torch.rand(b, generator=generator) < 0.5).float(),
        timestamps=torch.zeros(b, dtype=torch.int64),
        history_lengths=lengths,
        history_item=ids(items, n),
        history_category=ids(categories, n),
        history_behavior=ids(behaviors, n),
        history_age=age,
        history_numeric=torch.rand(n, num_numeric, generator=generator),
    )
