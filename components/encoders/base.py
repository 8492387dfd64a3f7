"""The one contract every sequence encoder follows (DESIGN.md section 5).

``encoder(query, history) -> interest [B, output_dim]``

and, to rank C candidates per user, ``encoder.forward_candidates(candidates [B, C, ...],
history) -> [B, C, output_dim]`` (same values, per-user work done once).

Shapes: B batch, N = sum of history lengths (jagged, no padding), D embedding dim shared by
query and history, F numeric fields per behavior. Histories are time ordered, oldest -> newest,
per sample. Encoders pad internally, as late as possible, only up to the batch max (capped by
their own config).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from components.ops.jagged import lengths_to_offsets, repeat_segments


@dataclass(frozen=True)
class EncoderSpec:
    """What an encoder needs to know about its inputs; every encoder's constructor is
    ``Encoder(spec: EncoderSpec, config: EncoderConfig | None = None)``.

    Attributes:
        embedding_dim: D of ``Query.embeddings`` and ``History.embeddings``.
        behavior_dim: D_b of ``History.behavior_embeddings``.
        num_behaviors: behavior-type vocabulary size (index 0 = none/padding).
        num_numeric: F, numeric fields per behavior.
        num_groups: interest-group vocabulary size (index 0 = padding/unknown).
    """

    embedding_dim: int
    behavior_dim: int = 0
    num_behaviors: int = 1
    num_numeric: int = 0
    num_groups: int = 1


@dataclass
class Query:
    """The candidate side.

    Attributes:
        embeddings: ``[B, D]`` candidate embedding.
        item_ids: ``[B]`` int64 candidate item index.
        category_ids: ``[B]`` int64 candidate category index.
        group_ids: ``[B]`` int64 interest-group index of the candidate (the same key the
            history's ``group_ids`` use: content cluster, category or item id).
    """

    embeddings: torch.Tensor
    item_ids: torch.Tensor
    category_ids: torch.Tensor
    group_ids: torch.Tensor


@dataclass
class History:
    """A batch of behavior sequences in jagged form.

    Attributes:
        embeddings: ``[N, D]`` embedding of each behavior (same D as ``Query.embeddings``).
        lengths: ``[B]`` int64 history length of each sample.
        offsets: ``[B + 1]`` int64 exclusive prefix sum of ``lengths``.
        item_ids: ``[N]`` int64.
        category_ids: ``[N]`` int64.
        group_ids: ``[N]`` int64 interest group of each behavior.
        behavior_ids: ``[N]`` int64 behavior type (>= 1).
        age: ``[N]`` float32 seconds between the behavior and the query time (> 0).
        numeric: ``[N, F]`` float32 numeric fields (raw values, e.g. rating, dwell).
        behavior_embeddings: ``[N, D_b]`` embedding of the behavior type (may have D_b = 0).
    """

    embeddings: torch.Tensor
    lengths: torch.Tensor
    offsets: torch.Tensor
    item_ids: torch.Tensor
    category_ids: torch.Tensor
    group_ids: torch.Tensor
    behavior_ids: torch.Tensor
    age: torch.Tensor
    numeric: torch.Tensor
    behavior_embeddings: torch.Tensor


class SequenceEncoder(nn.Module):
    """Base class: subclasses set ``output_dim`` and implement ``forward``.

    Encoders that train an auxiliary task (SIMSoft's GSU) override ``forward_with_aux``;
    the model adds ``BCE(aux_logits[name], labels)`` for every entry to the loss.
    """

    output_dim: int

    def forward(self, query: Query, history: History) -> torch.Tensor:  # [B, output_dim]
        raise NotImplementedError

    def forward_with_aux(
        self, query: Query, history: History
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Returns ``(interest [B, output_dim], {name: aux_logits [B]})``."""
        return self.forward(query, history), {}

    def forward_candidates(self, candidates: Query, history: History) -> torch.Tensor:
        """C candidates per user: ``candidates`` fields ``[B, C, ...]`` -> ``[B, C, output_dim]``.

        Row ``[b, c]`` equals ``forward`` on user b's history with candidate c. This default
        repeats each history C times (O(C * L) rows per user); encoders override it to do their
        candidate-independent work once per user (DMGIN's user state, SIMHard's key index, ETA's
        hashes, SIMSoft's projection, CiUBM's id-only similarity).
        """
        b, c = candidates.item_ids.shape
        return self.forward(flatten_candidates(candidates), repeat_history(history, c)).view(
            b, c, -1
        )


def flatten_candidates(candidates: Query) -> Query:
    """A ``[B, C, ...]`` candidate grid as ``B * C`` single candidates (user-major)."""
    b, c = candidates.item_ids.shape
    return Query(
        embeddings=candidates.embeddings.reshape(b * c, -1),
        item_ids=candidates.item_ids.reshape(b * c),
        category_ids=candidates.category_ids.reshape(b * c),
        group_ids=candidates.group_ids.reshape(b * c),
    )


def take_history_rows(
    history: History, rows: torch.Tensor | slice, lengths: torch.Tensor
) -> History:
    """A new jagged batch from ``history``'s rows ``rows`` (an index ``[R]`` or a slice, in that
    order), split into samples of ``lengths`` (summing to R)."""
    return History(
        embeddings=history.embeddings[rows],
        lengths=lengths,
        offsets=lengths_to_offsets(lengths),
        item_ids=history.item_ids[rows],
        category_ids=history.category_ids[rows],
        group_ids=history.group_ids[rows],
        behavior_ids=history.behavior_ids[rows],
        age=history.age[rows],
        numeric=history.numeric[rows],
        behavior_embeddings=history.behavior_embeddings[rows],
    )


def repeat_history(history: History, times: int) -> History:
    """Every sample's history ``times`` times in a row (``[B]`` samples -> ``[B * times]``,
    sample-major), e.g. to pair each of C candidates with its user's history."""
    rows, lengths = repeat_segments(history.offsets, times)
    return take_history_rows(history, rows, lengths)
