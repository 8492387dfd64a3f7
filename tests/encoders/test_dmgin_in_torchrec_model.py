"""DMGIN inside a model written only with TorchRec's own modules and the user's own KJTs.

This is the README's "use DMGIN in your TorchRec model" example, trained on a toy task whose
label depends on how often the candidate's group appears in a long history.
"""

from __future__ import annotations

import torch
from torch import nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor

from components import DMGIN
from components.encoders.base import EncoderSpec, History, Query
from components.encoders.dmgin import DMGINConfig

ITEMS, GROUPS, DIM = 200, 10, 8


class MyModel(nn.Module):
    """A user's model: their EBC, their KJTs, DMGIN as the sequence block."""

    def __init__(self) -> None:
        super().__init__()
        # one table, one bag per history position ("seq_item") and per candidate ("item")
        self.ebc = EmbeddingBagCollection(
            tables=[
                EmbeddingBagConfig(
                    name="item",
                    embedding_dim=DIM,
                    num_embeddings=ITEMS,
                    feature_names=["seq_item"],
                ),
            ]
        )
        self.candidate_ebc = EmbeddingBagCollection(
            tables=[
                EmbeddingBagConfig(
                    name="candidate",
                    embedding_dim=DIM,
                    num_embeddings=ITEMS,
                    feature_names=["item"],
                )
            ]
        )
        self.register_buffer("group_of", torch.arange(ITEMS) % GROUPS)
        spec = EncoderSpec(embedding_dim=DIM, num_behaviors=2, num_groups=GROUPS)
        self.dmgin = DMGIN(spec, DMGINConfig(max_groups=GROUPS, max_per_group=8, hidden_dim=16))
        self.head = nn.Linear(self.dmgin.output_dim + DIM, 1)

    def forward(
        self, candidates: KeyedJaggedTensor, history: KeyedJaggedTensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        seq = self.ebc(history)["seq_item"]  # [N, DIM]: one bag per position
        cand = self.candidate_ebc(candidates)["item"]  # [B, DIM]
        items = history.values()
        n = items.shape[0]
        offsets = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
        position = torch.arange(n) - offsets[:-1].repeat_interleave(lengths)
        query = Query(
            cand, candidates.values(), candidates.values(), self.group_of[candidates.values()]
        )
        hist = History(
            embeddings=seq,
            lengths=lengths,
            offsets=offsets,
            item_ids=items,
            category_ids=items,
            group_ids=self.group_of[items],
            behavior_ids=torch.ones(n, dtype=torch.int64),
            age=(lengths.repeat_interleave(lengths) - position).float() * 3600.0,
            numeric=torch.zeros(n, 0),
            behavior_embeddings=torch.zeros(n, 0),
        )
        return self.head(torch.cat([self.dmgin(query, hist), cand], dim=1)).squeeze(1)


def toy_batch(g: torch.Generator, b: int = 64) -> tuple:
    lengths = torch.randint(50, 150, (b,), generator=g)
    favourite = torch.randint(0, GROUPS, (b,), generator=g)
    parts = []
    for i in range(b):  # history: 30% favourite group, early in time; rest random
        n = int(lengths[i])
        items = torch.randint(0, ITEMS, (n,), generator=g)
        fav = torch.rand(n, generator=g) < 0.3
        items[fav] = (
            torch.randint(0, ITEMS // GROUPS, (int(fav.sum()),), generator=g) * GROUPS
            + favourite[i]
        )
        parts.append(items)
    label = (torch.rand(b, generator=g) < 0.5).float()
    cand_group = torch.where(
        label > 0,
        favourite,
        (favourite + 1 + torch.randint(0, GROUPS - 1, (b,), generator=g)) % GROUPS,
    )
    cand = torch.randint(0, ITEMS // GROUPS, (b,), generator=g) * GROUPS + cand_group
    history = KeyedJaggedTensor.from_lengths_sync(
        keys=["seq_item"],
        values=torch.cat(parts),
        lengths=torch.ones(int(lengths.sum()), dtype=torch.int32),
    )
    candidates = KeyedJaggedTensor.from_lengths_sync(
        keys=["item"], values=cand, lengths=torch.ones(b, dtype=torch.int32)
    )
    return candidates, history, lengths, label


def test_dmgin_trains_inside_a_plain_torchrec_model() -> None:
    torch.manual_seed(0)
    model = MyModel()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(60):
        candidates, history, lengths, label = toy_batch(g)
        loss = nn.functional.binary_cross_entropy_with_logits(
            model(candidates, history, lengths), label
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.8 * first, (first, last)
