"""Every registered encoder inside the complete CTR model (components/model.py).

The model gets real batches from the loader of a tiny synthetic dataset; each encoder must
train (loss falls on a fixed batch), give every trainable parameter a gradient, and CiUBM must
receive its frozen content table through the model.
"""

from __future__ import annotations

import pytest
import torch

from components.encoders.registry import ENCODERS
from components.model import LifelongCTRModel, ModelConfig, Vocab
from pipelines.data.loader import LoaderConfig, SampleLoader
from pipelines.data.prepared import PreparedDataset
from pipelines.data.synthetic import SyntheticConfig, write_synthetic_dataset
from pipelines.train.model_wrapper import TrainWrapper

CONTENT_DIM = 12


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> PreparedDataset:
    config = SyntheticConfig(
        users=30, mean_length=80, max_length=200, items=150, groups=8, categories=16,
        samples_per_user=8, seed=5,
    )  # fmt: skip
    root = write_synthetic_dataset(tmp_path_factory.mktemp("data") / "tiny", config)
    return PreparedDataset.open(root)


def _vocab(dataset: PreparedDataset) -> Vocab:
    v = dataset.vocab
    return Vocab(
        v["users"], v["items"], v["categories"], v["behaviors"], len(dataset.numeric_fields)
    )


def _batch(dataset: PreparedDataset):  # noqa: ANN202 (a pipelines Batch)
    loader = SampleLoader(dataset.root, "train", LoaderConfig(batch_size=48, max_len=60, seed=2))
    return next(iter(loader))


def _model(name: str, vocab: Vocab) -> LifelongCTRModel:
    torch.manual_seed(0)
    config = ModelConfig(encoder=name, embedding_dim=8, behavior_dim=4, over_arch=[16])
    content = None
    if name == "CiUBM":
        content = torch.nn.functional.normalize(torch.randn(vocab.items, CONTENT_DIM), dim=1)
    return LifelongCTRModel(config, vocab, content_embeddings=content)


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_every_encoder_trains_inside_the_ctr_model(dataset: PreparedDataset, name: str) -> None:
    model = _model(name, _vocab(dataset))
    wrapper = TrainWrapper(model).train()
    batch = _batch(dataset)
    optimizer = torch.optim.Adam(wrapper.parameters(), lr=0.01)
    losses = []
    for step in range(25):
        optimizer.zero_grad()
        loss, (_, logits, *_rest) = wrapper(batch)
        assert logits.shape == (batch.batch_size,) and torch.isfinite(logits).all()
        loss.backward()
        if step == 0:
            missing = [
                n for n, p in wrapper.named_parameters() if p.requires_grad and p.grad is None
            ]
            assert not missing, f"{name}: no gradient for {missing}"
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0], f"{name}: loss {losses[0]:.4f} -> {losses[-1]:.4f}"


def test_ciubm_reads_the_models_frozen_content_table(dataset: PreparedDataset) -> None:
    vocab = _vocab(dataset)
    model = _model("CiUBM", vocab).eval()
    encoder = model.head.encoder
    assert encoder.content.shape == (vocab.items, CONTENT_DIM)
    assert "head.encoder.content" in model.state_dict()
    assert all("content" not in n for n, _ in model.named_parameters())
    batch = _batch(dataset)
    with torch.no_grad():
        before = model(batch).logits
        encoder.load_content(torch.randn(vocab.items, CONTENT_DIM))
        assert not torch.allclose(model(batch).logits, before)


def test_content_table_must_fit_the_item_vocabulary_and_the_encoder(
    dataset: PreparedDataset,
) -> None:
    vocab = _vocab(dataset)
    with pytest.raises(ValueError, match="expected one per item index"):
        LifelongCTRModel(
            ModelConfig(encoder="CiUBM"), vocab, content_embeddings=torch.zeros(3, CONTENT_DIM)
        )
    with pytest.raises(ValueError, match="does not read content embeddings"):
        LifelongCTRModel(
            ModelConfig(encoder="DIN"), vocab, content_embeddings=torch.zeros(vocab.items, 4)
        )


def test_split_item_side_matches_per_key_tables_and_their_gradients() -> None:
    from torchrec import KeyedTensor

    from components.model import ITEM_SIDE_KEYS, split_item_side

    generator = torch.Generator().manual_seed(0)
    values = torch.randn(7, 4 + 4 + 3, generator=generator, requires_grad=True)
    kt = KeyedTensor(keys=ITEM_SIDE_KEYS, length_per_key=[4, 4, 3], values=values)
    item_side, behavior = split_item_side(kt)
    torch.testing.assert_close(item_side, torch.cat([kt["item_id"], kt["category_id"]], dim=1))
    torch.testing.assert_close(behavior, kt["behavior_id"])
    weights = torch.randn(7, 11, generator=generator)
    (torch.cat([item_side, behavior], dim=1) * weights).sum().backward()
    torch.testing.assert_close(values.grad, weights)


def test_split_item_side_rejects_other_key_orders() -> None:
    from torchrec import KeyedTensor

    from components.model import split_item_side

    kt = KeyedTensor(
        keys=["category_id", "item_id", "behavior_id"],
        length_per_key=[4, 4, 3],
        values=torch.zeros(2, 11),
    )
    with pytest.raises(ValueError, match="category_id"):
        split_item_side(kt)
