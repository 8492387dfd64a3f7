"""Random inputs that satisfy the encoder contract (``components.encoders.base``).

For docstring examples, smoke tests and shape checks of a new encoder: every id is inside the
spec's vocabularies (0 only where the vocabulary has nothing else), ages are positive and
decrease within each history (oldest behavior first), and the jagged offsets match the lengths.
The values carry no signal; nothing here is meant for training.

Example:
    >>> spec = EncoderSpec(embedding_dim=8, behavior_dim=4, num_behaviors=3, num_groups=5)
    >>> history = random_history(spec, [3, 0, 5])
    >>> history.embeddings.shape, history.offsets.tolist()
    (torch.Size([8, 8]), [0, 3, 3, 8])
    >>> random_query(spec, 3).embeddings.shape
    torch.Size([3, 8])
    >>> random_query(spec, 3, candidates=10).group_ids.shape
    torch.Size([3, 10])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from components.encoders.base import EncoderSpec, History, Query
from components.ops.jagged import lengths_to_offsets


def random_ids(vocab: int, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """int64 ids in ``[1, vocab)``; all 0 when the vocabulary holds only the padding index."""
    if vocab <= 1:
        return torch.zeros(shape, dtype=torch.int64)
    return torch.randint(1, vocab, shape, generator=generator)


def random_ages(lengths: Sequence[int], generator: torch.Generator) -> torch.Tensor:
    """``[sum(lengths)]`` seconds before the query time (> 1), decreasing within each history,
    so the oldest behavior comes first."""
    age = torch.cat(
        [torch.empty(0)]
        + [torch.sort(torch.rand(k, generator=generator), descending=True).values for k in lengths]
    )
    return 1.0 + age * 1e7


def random_history(
    spec: EncoderSpec,
    lengths: Sequence[int],
    *,
    num_items: int = 1000,
    num_categories: int = 20,
    seed: int = 0,
    requires_grad: bool = False,
) -> History:
    """A jagged :class:`History` of ``len(lengths)`` users with ``lengths[i]`` behaviors each.

    Args:
        spec: dims and vocabularies (D, D_b, behaviors, F, groups) of the encoder to feed.
        lengths: history length per user (0 allowed).
        num_items, num_categories: id vocabularies of ``item_ids`` / ``category_ids``.
        seed: seed of a private generator (the global RNG is not touched).
        requires_grad: make ``embeddings`` a leaf that records gradients.
    """
    if any(k < 0 for k in lengths):
        raise ValueError(f"lengths must be >= 0, got {list(lengths)}")
    generator = torch.Generator().manual_seed(seed)
    lengths_t = torch.tensor(list(lengths), dtype=torch.int64)
    n = int(lengths_t.sum())
    age = random_ages(lengths, generator)
    return History(
        embeddings=torch.randn(n, spec.embedding_dim, generator=generator).requires_grad_(
            requires_grad
        ),
        lengths=lengths_t,
        offsets=lengths_to_offsets(lengths_t),
        item_ids=random_ids(num_items, (n,), generator),
        category_ids=random_ids(num_categories, (n,), generator),
        group_ids=random_ids(spec.num_groups, (n,), generator),
        behavior_ids=random_ids(spec.num_behaviors, (n,), generator),
        age=age,
        numeric=torch.rand(n, spec.num_numeric, generator=generator),
        behavior_embeddings=torch.randn(n, spec.behavior_dim, generator=generator),
    )


def random_query(
    spec: EncoderSpec,
    batch_size: int,
    *,
    candidates: int | None = None,
    num_items: int = 1000,
    num_categories: int = 20,
    seed: int = 1,
    requires_grad: bool = False,
) -> Query:
    """One candidate per user (fields ``[B]``, embeddings ``[B, D]``), or with ``candidates=C``
    a grid for cached scoring (fields ``[B, C]``, embeddings ``[B, C, D]``).

    Args:
        spec: dims and vocabularies of the encoder to feed.
        batch_size: B, the number of users.
        candidates: C candidates per user, or None for the one-candidate training layout.
        num_items, num_categories: id vocabularies of ``item_ids`` / ``category_ids``.
        seed: seed of a private generator (the global RNG is not touched).
        requires_grad: make ``embeddings`` a leaf that records gradients.
    """
    generator = torch.Generator().manual_seed(seed)
    shape = (batch_size,) if candidates is None else (batch_size, candidates)
    return Query(
        embeddings=torch.randn(*shape, spec.embedding_dim, generator=generator).requires_grad_(
            requires_grad
        ),
        item_ids=random_ids(num_items, shape, generator),
        category_ids=random_ids(num_categories, shape, generator),
        group_ids=random_ids(spec.num_groups, shape, generator),
    )
