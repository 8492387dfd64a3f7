"""The CTR model with an encoder beats the same model with the encoder's output zeroed, on a
small synthetic task whose label needs the history.

Task: a candidate is clicked iff its category occurs in the user's history. Candidates are drawn
so that the candidate alone says nothing (clicked and not clicked candidates have the same
category distribution), the history length is constant and there is no user embedding: only the
sequence encoder can tell the two apart. 150 CPU steps on small tables (about 15 s for the three
encoders, with and without their output).
"""

from __future__ import annotations

import pytest
import torch

from components import LifelongCTRModel, ModelConfig, SequenceEncoder, Vocab
from pipelines.data.batch import make_batch

ITEMS, CATEGORIES, LENGTH, STEPS, BATCH = 120, 12, 12, 150, 64
VOCAB = Vocab(users=2, items=ITEMS, categories=CATEGORIES, behaviors=2, num_numeric=1)
ENCODERS = {
    "DMGIN": {"max_groups": 8, "max_per_group": 4, "hidden_dim": 16, "target_group_max_len": 8},
    "SIMHard": {"top_k": 8},
    "DIN": {"max_len": LENGTH},
    "TWIN": {"top_k": 8},
    "SDIM": {"num_hashes": 16, "hash_bits": 2},
    "TWINV2": {"branching": (4, 2)},
}
#: encoders whose only link between candidate and history is a dot product or a hash collision
#: (no hard search, no MLP activation unit) need more steps to learn "same category" from ids
STEPS_OF = {"TWIN": 400, "SDIM": 400, "TWINV2": 400}


def category_of(items: torch.Tensor) -> torch.Tensor:
    return items % (CATEGORIES - 1) + 1  # categories 1 .. CATEGORIES - 1


def make_samples(count: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    history_item = torch.randint(1, ITEMS, (count, LENGTH), generator=g)
    present = torch.zeros(count, CATEGORIES, dtype=torch.bool)
    present.scatter_(1, category_of(history_item), True)
    present[:, 0] = False
    labels = (torch.rand(count, generator=g) < 0.5).float()
    item = torch.empty(count, dtype=torch.int64)
    for s in range(count):
        allowed = present[s] if labels[s] > 0 else ~present[s]
        allowed[0] = False
        if not bool(allowed.any()):  # every category present: flip the label
            labels[s] = 1.0
            allowed = present[s]
        while True:
            candidate = int(torch.randint(1, ITEMS, (1,), generator=g))
            if bool(allowed[int(category_of(torch.tensor(candidate)))]):
                item[s] = candidate
                break
    return item, history_item, labels


def batch_of(item, history_item, labels):  # noqa: ANN001, ANN202
    b = item.shape[0]
    age = torch.arange(LENGTH, 0, -1, dtype=torch.float32).repeat(b) * 3600.0
    return make_batch(
        user=torch.ones(b, dtype=torch.int64),
        item=item,
        category=category_of(item),
        labels=labels,
        timestamps=torch.zeros(b, dtype=torch.int64),
        history_lengths=torch.full((b,), LENGTH, dtype=torch.int64),
        history_item=history_item.reshape(-1),
        history_category=category_of(history_item.reshape(-1)),
        history_behavior=torch.ones(b * LENGTH, dtype=torch.int64),
        history_age=age,
        history_numeric=torch.zeros(b * LENGTH, 1),
    )


def auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    pos, neg = scores[labels > 0], scores[labels == 0]
    greater = (pos.unsqueeze(1) > neg.unsqueeze(0)).float().mean()
    ties = (pos.unsqueeze(1) == neg.unsqueeze(0)).float().mean()
    return float(greater + 0.5 * ties)


class Zeroed(SequenceEncoder):
    """The wrapped encoder, its output multiplied by zero (same shapes, no information)."""

    def __init__(self, inner: SequenceEncoder) -> None:
        super().__init__()
        self.inner, self.output_dim = inner, inner.output_dim

    def forward_with_aux(self, query, history):  # noqa: ANN001, ANN201
        interest, aux = self.inner.forward_with_aux(query, history)
        return interest * 0.0, aux


def train_and_score(name: str, zeroed: bool, train, test) -> float:  # noqa: ANN001
    torch.manual_seed(0)
    config = ModelConfig(
        encoder=name,
        encoder_config=ENCODERS[name],
        embedding_dim=8,
        behavior_dim=2,
        over_arch=[32],
        use_user_embedding=False,
    )
    model = LifelongCTRModel(config, VOCAB)
    if zeroed:
        model.head.encoder = Zeroed(model.head.encoder)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(1)
    item, history_item, labels = train
    model.train()
    for _ in range(STEPS_OF.get(name, STEPS)):
        pick = torch.randint(0, item.shape[0], (BATCH,), generator=g)
        batch = batch_of(item[pick], history_item[pick], labels[pick])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            model(batch).logits, batch.labels
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        test_batch = batch_of(*test)
        return auc(model(test_batch).logits, test_batch.labels)


@pytest.fixture(scope="module")
def data():  # noqa: ANN201
    return make_samples(2048, seed=0), make_samples(512, seed=1)


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_the_encoder_beats_its_zeroed_output_on_a_task_that_needs_the_history(
    name: str, data
) -> None:  # noqa: ANN001
    train, test = data
    with_history = train_and_score(name, False, train, test)
    without = train_and_score(name, True, train, test)
    assert without < 0.6, f"{name}: the task leaks the label without the history ({without})"
    assert with_history > 0.8 and with_history > without + 0.2, (name, with_history, without)


def test_over_arch_dropout_acts_in_training_only() -> None:
    """``model.over_arch_dropout`` changes the training-mode output (random units dropped) and
    nothing in eval mode; 0 leaves training-mode outputs deterministic; >= 1 is refused."""
    batch = batch_of(*make_samples(32, seed=2))

    def model_with(dropout: float) -> LifelongCTRModel:
        torch.manual_seed(0)
        config = ModelConfig(
            encoder="DIN",
            encoder_config=ENCODERS["DIN"],
            embedding_dim=8,
            behavior_dim=2,
            over_arch=[32, 16],
            over_arch_dropout=dropout,
        )
        return LifelongCTRModel(config, VOCAB)

    plain, dropped = model_with(0.0), model_with(0.5)
    with torch.no_grad():
        plain.eval(), dropped.eval()
        assert torch.allclose(plain(batch).logits, dropped(batch).logits)
        plain.train(), dropped.train()
        assert torch.allclose(plain(batch).logits, plain(batch).logits)
        assert not torch.allclose(dropped(batch).logits, plain(batch).logits)
    with pytest.raises(ValueError, match="over_arch_dropout"):
        model_with(1.0)


@pytest.mark.parametrize("name", ["DIN", "SIMHard", "DMGIN", "TWIN", "TWINV2"])
def test_attention_dropout_acts_in_training_only(name: str) -> None:
    """``model.attention_dropout`` reaches the encoder's attention weights: training-mode
    outputs become random, eval-mode outputs equal the model without it."""
    batch = batch_of(*make_samples(32, seed=2))

    def model_with(p: float) -> LifelongCTRModel:
        torch.manual_seed(0)
        config = ModelConfig(
            encoder=name, encoder_config=ENCODERS[name], embedding_dim=8, behavior_dim=2,
            over_arch=[16], attention_dropout=p,
        )  # fmt: skip
        return LifelongCTRModel(config, VOCAB)

    plain, dropped = model_with(0.0), model_with(0.5)
    with torch.no_grad():
        plain.eval(), dropped.eval()
        torch.testing.assert_close(plain(batch).logits, dropped(batch).logits)
        plain.train(), dropped.train()
        torch.testing.assert_close(plain(batch).logits, plain(batch).logits)
        assert not torch.allclose(dropped(batch).logits, dropped(batch).logits)


def test_attention_dropout_on_an_encoder_without_attention_is_refused() -> None:
    config = ModelConfig(encoder="SDIM", embedding_dim=8, attention_dropout=0.1)
    with pytest.raises(ValueError, match="no attention weights to drop"):
        LifelongCTRModel(config, VOCAB)
    with pytest.raises(ValueError, match="attention_dropout must be in"):
        ModelConfig(encoder="DIN", attention_dropout=1.0)
