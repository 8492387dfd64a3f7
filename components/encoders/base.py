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

# ops imported by name are FX leaves only where this module registers them (torch.fx.wrap
# patches the calling module's globals): the encoder then traces symbolically, op calls as nodes
torch.fx.wrap("lengths_to_offsets")


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
        embeddings: ``[N, D]`` embedding of each behavior (same D as ``Query.embeddings``), or
            ``[R + 1, D]`` when ``embedding_rows`` is set.
        lengths: ``[B]`` int64 history length of each sample.
        offsets: ``[B + 1]`` int64 exclusive prefix sum of ``lengths``.
        item_ids: ``[N]`` int64.
        category_ids: ``[N]`` int64.
        group_ids: ``[N]`` int64 interest group of each behavior.
        behavior_ids: ``[N]`` int64 behavior type (>= 1).
        age: ``[N]`` float32 seconds between the behavior and the query time (> 0).
        numeric: ``[N, F]`` float32 numeric fields (raw values, e.g. rating, dwell).
        behavior_embeddings: ``[N, D_b]`` embedding of the behavior type (may have D_b = 0),
            or ``[R + 1, D_b]`` when ``embedding_rows`` is set.
        embedding_rows: None, or ``[N]`` int64: the row of ``embeddings`` and
            ``behavior_embeddings`` that holds each behavior, when the model looked up only the
            R rows the encoder's :meth:`SequenceEncoder.history_rows` names (row R is zeros,
            for every other behavior). Read embeddings through :meth:`embedding_index`; only
            encoders that override ``history_rows`` ever get it set.
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
    embedding_rows: torch.Tensor | None = None

    def embedding_index(self, index: torch.Tensor) -> torch.Tensor:
        """Rows of ``embeddings`` holding the behaviors ``index`` (rows into N, any shape)."""
        return embedding_index(self.embedding_rows, index)


def embedding_index(embedding_rows: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor:
    """``index`` (rows into N) -> rows of the looked-up embeddings (:class:`History`'s
    ``embedding_rows``; None: the same). Out-of-range entries (masked slots) are clamped to
    the first or last behavior's row (row 0 when there is none): the caller masks their values."""
    if embedding_rows is None:
        return index
    if embedding_rows.numel() == 0:  # no behaviors: every slot is masked
        return torch.zeros_like(index)
    return embedding_rows[index.clamp(0, embedding_rows.numel() - 1)]


torch.fx.wrap("embedding_index")  # branches on the number of looked-up rows


#: the group id that is no group: an item missing from the ``item -> group`` table (content
#: clusters are 1..K), an unknown category or item. It never makes a DMGIN group slot, and a
#: candidate of group 0 finds no same-group behaviors (DMGIN's target group, SIMHard by group).
NO_GROUP = 0


def searched_groups(groups: torch.Tensor) -> torch.Tensor:
    """Candidate group ids to search a history for: :data:`NO_GROUP` becomes -1, which no
    behavior has (history group ids are >= 0), so it matches nothing."""
    return torch.where(groups == NO_GROUP, torch.full_like(groups, -1), groups)


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

    def history_rows(self, query: Query, history: History) -> torch.Tensor | None:
        """``[R]`` int64 rows of ``history`` (indices into N; any order, repeats allowed) whose
        ``embeddings`` and ``behavior_embeddings`` :meth:`forward` reads for these queries;
        None (the default) means all of them. An encoder that names rows gets, in training,
        only those looked up: ``history.embedding_rows`` maps behaviors to them, and
        :meth:`History.embedding_index` must translate every row index before a gather.

        Runs before the embedding lookup, so it may use ids, lengths, offsets, ages and
        numeric fields only: ``query.embeddings`` and ``history.embeddings`` have width 0
        there. The contract (tested for every encoder): zeroing the embeddings of every other
        row changes neither the output nor any gradient. A model then looks up R rows, not N
        (``LifelongCTRModel.history_rows``)."""
        return None

    def forward_candidates(self, candidates: Query, history: History) -> torch.Tensor:
        """C candidates per user: ``candidates`` fields ``[B, C, ...]`` -> ``[B, C, output_dim]``.

        Row ``[b, c]`` equals ``forward`` on user b's history with candidate c. This default
        repeats each history C times (O(C * L) rows per user); encoders override it to do their
        candidate-independent work once per user (DMGIN's user state, SIMHard's key index, ETA's
        hashes, SIMSoft's projection, CiUBM's id-only similarity).
        """
        b, c = candidates.item_ids.shape
        return self.forward(flatten_candidates(candidates), repeat_history(history, c)).unflatten(
            0, (b, c)
        )


def flatten_candidates(candidates: Query) -> Query:
    """A ``[B, C, ...]`` candidate grid as ``B * C`` single candidates (user-major)."""
    b, c = candidates.item_ids.shape
    return Query(
        embeddings=candidates.embeddings.flatten(0, 1),
        item_ids=candidates.item_ids.flatten(),
        category_ids=candidates.category_ids.flatten(),
        group_ids=candidates.group_ids.flatten(),
    )


def take_history_rows(
    history: History, rows: torch.Tensor | slice, lengths: torch.Tensor
) -> History:
    """A new jagged batch from ``history``'s rows ``rows`` (an index ``[R]`` or a slice, in that
    order), split into samples of ``lengths`` (summing to R)."""
    if history.embedding_rows is not None:
        raise ValueError("take_history_rows needs one embedding per behavior (embedding_rows)")
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
    rows, lengths = repeat_segments(history.offsets, times, history.item_ids.shape[0])
    return take_history_rows(history, rows, lengths)
