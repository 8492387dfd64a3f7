"""SequenceHead's contract around the encoder: ranking C candidates equals scoring each one
alone for every over-arch input layout, what ``history_rows`` hands the encoder (ids only,
width-0 embeddings of the right rows, on the ids' device), and the item -> group table's checks
at their boundaries (exact messages, empty inputs, traced calls)."""

from __future__ import annotations

import math

import pytest
import torch

from components import LifelongCTRModel, ModelConfig, Vocab
from components.encoders.base import History, Query
from components.head import groups_of_items
from pipelines.data.batch import random_batch

from .test_ranking import _with_candidate

VOCAB = Vocab(users=20, items=60, categories=6, behaviors=3, num_numeric=2)


def _batch():  # noqa: ANN202
    return random_batch(
        [35, 0, 12], users=20, items=60, categories=6, behaviors=3, num_numeric=2, seed=3
    )


@pytest.mark.parametrize("candidates", [1, 2, 3])
@pytest.mark.parametrize(
    ("user", "summary"), [(False, True), (True, False), (False, False), (True, True)]
)
def test_ranking_equals_each_candidate_alone_for_every_over_arch_layout(
    candidates: int, user: bool, summary: bool
) -> None:
    """With or without the user embedding and the history summary, C = 1, 2, 3 candidates: the
    user-side parts are repeated once per candidate, in the candidates' order."""
    torch.manual_seed(0)
    config = ModelConfig(
        encoder="DIN",
        embedding_dim=8,
        behavior_dim=4,
        over_arch=[16],
        use_user_embedding=user,
        numeric_summary=summary,
    )
    model = LifelongCTRModel(config, VOCAB).eval()
    with torch.no_grad():  # spread the id tables: users and items must differ
        for param in [*model.user_ebc.parameters(), *model.item_ebc.parameters()]:
            param.add_(torch.randn_like(param) * 0.3)
    batch = _batch()
    generator = torch.Generator().manual_seed(5)
    items = torch.randint(1, 60, (3, candidates), generator=generator)
    categories = torch.randint(1, 6, (3, candidates), generator=generator)
    with torch.no_grad():
        ranked = model.rank_candidates(batch, items, categories)
        assert ranked.shape == (3, candidates)
        for c in range(candidates):
            alone = model(_with_candidate(batch, items[:, c], categories[:, c])).logits
            torch.testing.assert_close(ranked[:, c], alone, atol=1e-5, rtol=1e-4)


def test_history_rows_hands_the_encoder_ids_and_width_zero_embeddings() -> None:
    """The encoder's ``history_rows`` gets B queries and N behaviors with every id field, the
    scaled numeric fields and embeddings of width 0 (float, on the ids' device even when torch's
    default device is another one), and its answer is returned as is."""
    torch.manual_seed(0)
    model = LifelongCTRModel(ModelConfig(encoder="SIMHard", embedding_dim=8), VOCAB).eval()
    batch = _batch()
    seen: list[tuple[Query, History]] = []
    encoder = model.head.encoder
    answer = torch.tensor([4, 1, 40])

    def spy(query: Query, history: History) -> torch.Tensor:
        seen.append((query, history))
        return answer

    encoder.history_rows = spy  # type: ignore[method-assign]
    b, n = 3, int(batch.history_lengths.sum())
    with torch.device("meta"):  # tensors made without the ids' device would land on meta
        rows = model.head.history_rows(
            batch.item_ids, batch.history_lengths, batch.history_age, batch.history_numeric
        )
    assert rows is answer
    ((query, history),) = seen
    assert query.embeddings.shape == (b, 0) and query.embeddings.device.type == "cpu"
    for emb in (history.embeddings, history.behavior_embeddings):
        assert emb.shape == (n, 0) and emb.dtype == torch.float32 and emb.device.type == "cpu"
    assert history.embedding_rows is None
    ids = batch.item_ids.view(3, -1)
    assert torch.equal(query.item_ids, ids[0, :b]) and torch.equal(query.category_ids, ids[1, :b])
    assert torch.equal(history.item_ids, ids[0, b:])
    assert torch.equal(history.behavior_ids, ids[2, b:])
    assert torch.equal(history.lengths, batch.history_lengths)
    assert history.numeric.shape == (n, 2)


def test_the_group_table_check_names_the_first_bad_id_at_the_boundary() -> None:
    table = torch.arange(30) % 4 + 1
    assert groups_of_items(table, torch.tensor([29, 0])).tolist() == [table[29].item(), 1]
    message = (
        "item id 30 is outside the item -> group table (30 items, ids 0..29): build the table "
        "for this item vocabulary"
    )
    with pytest.raises(ValueError) as caught:
        groups_of_items(table, torch.tensor([3, 30]))
    assert str(caught.value) == message
    with pytest.raises(ValueError, match=r"^item id 31 is outside"):  # too high wins over < 0
        groups_of_items(table, torch.tensor([-2, 31]))
    with pytest.raises(ValueError, match=r"^item id -2 is outside"):
        groups_of_items(table, torch.tensor([-2, 5]))
    empty = groups_of_items(table, torch.zeros(0, dtype=torch.int64))
    assert empty.shape == (0,) and empty.dtype == torch.int64


def test_the_group_table_lookup_exports_without_reading_the_ids() -> None:
    """Under torch.export the range check (which reads the ids' values) is skipped and the
    exported lookup equals the eager one on other ids."""

    class Lookup(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("table", torch.arange(30) * 3)

        def forward(self, items: torch.Tensor) -> torch.Tensor:
            return groups_of_items(self.table, items)

    batch = torch.export.Dim("n", min=2, max=1000)
    exported = torch.export.export(
        Lookup(), (torch.tensor([1, 2, 3]),), dynamic_shapes={"items": {0: batch}}
    )
    items = torch.tensor([29, 0, 7, 7, 11])
    assert torch.equal(exported.module()(items), items * 3)


# -- construction: tables, scaling, group vocabularies, errors --------------------------------


def _head(**fields):  # noqa: ANN003, ANN202
    from components.head import SequenceHead

    table = fields.pop("item_to_group", None)
    scaling = fields.pop("numeric_scaling", None)
    content = fields.pop("content", None)
    config = ModelConfig(**{"encoder": "SIMHard", "embedding_dim": 4, **fields})
    return SequenceHead(config, VOCAB, table, content, scaling)


@pytest.mark.parametrize("enabled", [True, False])
def test_the_head_scales_numeric_fields_with_the_given_statistics(enabled: bool) -> None:
    from components.head import SequenceHead
    from components.layers.numeric import NumericScaler

    center, scale = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 3.0])
    config = ModelConfig(encoder="SIMHard", embedding_dim=4, numeric_scaling=enabled)
    head = SequenceHead(config, VOCAB, None, None, (center, scale))
    values = torch.randn(7, 2) * 1000.0
    want = NumericScaler(2, center, scale, enabled=enabled).scale_values(values)
    torch.testing.assert_close(head.numeric_scaler.scale_values(values), want)
    plain = SequenceHead(config, VOCAB, None, None, None)
    if enabled:  # the statistics are used, not only the signed log
        assert not torch.allclose(plain.numeric_scaler.scale_values(values), want)
    else:
        torch.testing.assert_close(head.numeric_scaler.scale_values(values), values)


def test_group_vocabularies_and_group_ids_follow_the_group_key() -> None:
    items, categories = torch.tensor([3, 7, 59]), torch.tensor([1, 5, 2])
    table = (torch.arange(60) % 7).to(torch.int32)  # groups 0..6, an int32 table
    cluster = _head(group_key="cluster", item_to_group=table)
    assert cluster.spec.num_groups == 7
    assert cluster.item_to_group.dtype == torch.int64
    assert torch.equal(cluster.groups_of(items, categories), (items % 7))
    by_category = _head(group_key="category")
    assert by_category.spec.num_groups == VOCAB.categories
    assert torch.equal(by_category.groups_of(items, categories), categories)
    by_item = _head(group_key="item")
    assert by_item.spec.num_groups == VOCAB.items
    assert torch.equal(by_item.groups_of(items, categories), items)
    for head in (by_category, by_item):  # no table: an empty int64 buffer
        assert head.item_to_group.shape == (0,) and head.item_to_group.dtype == torch.int64


def test_construction_errors_say_what_is_wrong() -> None:
    with pytest.raises(ValueError) as caught:
        _head(group_key="cluster")
    assert str(caught.value) == "group_key 'cluster' needs an item_to_group table"
    with pytest.raises(ValueError) as caught:
        _head(encoder="SDIM", attention_dropout=0.1)
    assert str(caught.value) == (
        "model.attention_dropout=0.1: encoder SDIM has no attention weights to drop "
        "(no AttentionDropout layer)"
    )
    with pytest.raises(ValueError) as caught:
        _head(content=torch.zeros(VOCAB.items, 5))
    assert str(caught.value) == "encoder SIMHard does not read content embeddings"
    with pytest.raises(ValueError) as caught:
        _head(encoder="CiUBM", content=torch.zeros(7, 5))
    assert str(caught.value) == (
        f"content_embeddings has 7 rows, expected one per item index ({VOCAB.items})"
    )


def test_the_item_side_keys_are_checked() -> None:
    from torchrec import KeyedTensor

    from components.head import split_item_side

    kt = KeyedTensor(["category_id", "item_id", "behavior_id"], [2, 2, 1], torch.zeros(3, 5))
    with pytest.raises(ValueError) as caught:
        split_item_side(kt)
    assert str(caught.value) == (
        "item KeyedTensor keys ['category_id', 'item_id', 'behavior_id'], expected "
        "['item_id', 'category_id', 'behavior_id']"
    )


def test_the_history_summary_is_the_mean_of_each_field_and_log1p_length() -> None:
    from components.head import _numeric_summary

    lengths = torch.tensor([0, 1, 3])
    numeric = torch.tensor([[4.0, -2.0], [1.0, 1.0], [2.0, 3.0], [3.0, 5.0]])
    history = History(
        embeddings=torch.zeros(4, 0), lengths=lengths, offsets=torch.tensor([0, 0, 1, 4]),
        item_ids=torch.ones(4, dtype=torch.int64), category_ids=torch.ones(4, dtype=torch.int64),
        group_ids=torch.ones(4, dtype=torch.int64), behavior_ids=torch.ones(4, dtype=torch.int64),
        age=torch.ones(4), numeric=numeric, behavior_embeddings=torch.zeros(4, 0),
    )  # fmt: skip
    want = torch.tensor([[0.0, 0.0, 0.0], [4.0, -2.0, math.log(2.0)], [2.0, 3.0, math.log(4.0)]])
    torch.testing.assert_close(_numeric_summary(history), want)


def test_forward_hands_the_encoder_the_lookup_plans_rows_and_returns_its_aux_logits() -> None:
    """With a lookup plan the encoder gets ``embedding_rows`` of length N (int64, R where a row
    was not looked up) on the ids' device; SIMSoft's auxiliary logits reach the output."""
    from pipelines.data.batch import restrict_item_lookup

    torch.manual_seed(0)
    model = LifelongCTRModel(ModelConfig(encoder="SIMHard", embedding_dim=8), VOCAB).eval()
    batch = _batch()
    rows = model.history_rows(batch)
    assert rows is not None
    seen: list[History] = []
    encoder = model.head.encoder
    original = encoder.forward_with_aux

    def spy(query: Query, history: History):  # noqa: ANN202
        seen.append(history)
        return original(query, history)

    encoder.forward_with_aux = spy  # type: ignore[method-assign]
    with torch.no_grad(), torch.device("meta"):
        model(restrict_item_lookup(batch, rows))
    (history,) = seen
    n, r = int(batch.history_lengths.sum()), rows.numel()
    mapped = history.embedding_rows
    assert mapped.shape == (n,) and mapped.dtype == torch.int64 and mapped.device.type == "cpu"
    assert torch.equal(mapped[rows], torch.arange(r))
    assert int((mapped == r).sum()) == n - r
    soft = LifelongCTRModel(ModelConfig(encoder="SIMSoft", embedding_dim=8), VOCAB).eval()
    with torch.no_grad():
        out = soft(batch)
    assert out.aux_logits and all(v.shape == (3,) for v in out.aux_logits.values())
