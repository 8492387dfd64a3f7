"""CiUBM's contract around its values: the similarity op on unnormalised, float64 and empty
inputs, ``masked_topk``'s edge cases, the SimTier histogram's clamping and dtypes, the SA-TA
attention's formula, and the encoder's construction and content checkpointing."""

from __future__ import annotations

import re

import pytest
import torch

from components.encoders.base import EncoderSpec
from components.encoders.ciubm import (
    CiUBM,
    CiUBMConfig,
    ContentAwareTargetAttention,
    SimilarityHistogram,
    content_similarity,
    masked_topk,
    masked_topk_reference,
)


def _cosine_loop(table, query_ids, history_ids, lengths) -> torch.Tensor:
    out, row = [], 0
    for b, n in enumerate(lengths):
        q = table[query_ids[b]].double()
        for _ in range(n):
            h = table[history_ids[row]].double()
            denominator = (q.norm() * h.norm()).clamp_min(1e-30)
            out.append(float((q @ h) / denominator) if h.norm() > 0 else 0.0)
            row += 1
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("chunk_rows", [None, 1, 3])
def test_similarity_is_the_cosine_whatever_the_row_norms(chunk_rows: int | None) -> None:
    g = torch.Generator().manual_seed(0)
    table = torch.randn(12, 5, generator=g) * torch.rand(12, 1, generator=g) * 0.1
    table[4] = 0.0  # an all-zero content row gives 0
    lengths = [4, 0, 6]
    query_ids = torch.tensor([1, 2, 3])
    history_ids = torch.tensor([4, 5, 6, 7, 8, 9, 10, 11, 0, 4])
    got = content_similarity(table, query_ids, history_ids, torch.tensor([0, 4, 4, 10]), chunk_rows)
    want = _cosine_loop(table, query_ids, history_ids, lengths)
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5)
    assert got.dtype == torch.float32
    double = content_similarity(table.double(), query_ids, history_ids, torch.tensor([0, 4, 4, 10]))
    assert double.dtype == torch.float64
    torch.testing.assert_close(double, want, atol=1e-12, rtol=1e-12)
    with torch.device("meta"):
        on_cpu = content_similarity(table, query_ids, history_ids, torch.tensor([0, 4, 4, 10]))
    assert on_cpu.device.type == "cpu"


def test_masked_topk_edges() -> None:
    scores = torch.tensor([0.3, 0.9, 0.1, 0.5, 0.7])
    offsets = torch.tensor([0, 3, 3, 5])
    # k >= the longest history: every row, in time order, 0 where masked
    for k in (3, 4, None):
        index, mask = masked_topk(scores, offsets, k)
        assert index.tolist() == [[0, 1, 2], [0, 0, 0], [3, 4, 0]]
        assert mask.tolist() == [[True] * 3, [False] * 3, [True, True, False]]
    index, mask = masked_topk(scores, offsets, 2)
    assert index.tolist() == [[1, 0], [0, 0], [4, 3]] and mask[1].tolist() == [False, False]
    kept = [index[b][mask[b]].tolist() for b in range(3)]
    assert kept == masked_topk_reference(scores, offsets, 2)
    empty_index, empty_mask = masked_topk(torch.zeros(0), torch.zeros(1, dtype=torch.int64), 2)
    assert empty_index.shape == (0, 0) and empty_mask.shape == (0, 0)
    with torch.device("meta"):
        index, _ = masked_topk(scores, offsets, 2)
    assert index.device.type == "cpu"


def test_histogram_defaults_clamping_and_dtypes() -> None:
    torch.manual_seed(0)
    histogram = SimilarityHistogram()
    assert histogram.bin_vectors.shape == (20, 8) and histogram.output_dim == 160
    assert 0.07 < float(histogram.bin_vectors.detach().std()) < 0.13  # initialised at 0.1 scale
    tiny = SimilarityHistogram(num_bins=4, bin_dim=2)
    similarity = torch.tensor([-1.5, -1.0, 0.2, 1.0, 1.7])  # outside [-1, 1]: the end bins
    counts = tiny.counts(similarity, torch.tensor([2, 3]))
    assert counts.tolist() == [[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 2.0]]
    assert counts.dtype == torch.float32
    half = tiny.counts(similarity.to(torch.bfloat16), torch.tensor([2, 3]))
    assert half.dtype == torch.float32 and torch.equal(half, counts)
    lengths = torch.tensor([2, 3])
    with torch.device("meta"):  # the counts stay on the inputs' device
        assert torch.equal(tiny.counts(similarity, lengths), counts)
    out = tiny.to(torch.bfloat16)(similarity.to(torch.bfloat16), lengths)
    assert out.dtype == torch.bfloat16


def test_content_aware_attention_formula() -> None:
    """Bias-free projections, g = (1, 1, 0) at the start (a_ID + r), content on by default."""
    torch.manual_seed(0)
    attention = ContentAwareTargetAttention(6, 5, 4)
    assert attention.use_content
    assert attention.q.bias is None and attention.k.bias is None and attention.v.bias is None
    assert attention.gamma.tolist() == [1.0, 1.0, 0.0]
    query, keys = torch.randn(2, 6), torch.randn(2, 3, 5)
    similarity = torch.rand(2, 3)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    logits = torch.einsum("bka,ba->bk", attention.k(keys), attention.q(query)) / 2.0 + similarity
    weights = torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=1)
    want = torch.einsum("bk,bka->ba", weights, attention.v(keys))
    torch.testing.assert_close(attention(query, keys, similarity, mask), want)


SPEC = EncoderSpec(embedding_dim=8, behavior_dim=2)


def test_construction() -> None:
    with pytest.raises(ValueError, match="^CiUBM needs use_histogram or use_attention$"):
        CiUBM(SPEC, CiUBMConfig(use_histogram=False, use_attention=False))
    bare = CiUBM(SPEC, CiUBMConfig(bin_dim=3, num_bins=5, output_hidden=(), attention_dim=6))
    assert bare.histogram.bin_vectors.shape == (5, 3) and bare.output_mlp is None
    assert bare.output_dim == 5 * 3 + 6
    assert bare.content.shape == (0, 0) and "content" in bare.state_dict()
    plain = CiUBM(SPEC, CiUBMConfig(content_in_attention=False))
    assert plain.attention.use_content is False and plain.output_dim == 64
    message = "CiUBM has no content table: pass content_embeddings or call load_content"
    with pytest.raises(RuntimeError, match=f"^{re.escape(message)}$"):
        plain.history_rows(None, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=re.escape("must be [num_items, d], got (4,)")):
        plain.load_content(torch.zeros(4))
    plain.load_content(torch.ones(4, 3, dtype=torch.float64))
    assert plain.content.dtype == torch.float32


def test_content_checkpoint_round_trip() -> None:
    """A model built without a table takes the checkpoint's (as float32); one with a table of
    another shape refuses it."""
    saved = CiUBM(SPEC, content_embeddings=torch.randn(7, 3)).state_dict()
    saved["content"] = saved["content"].double()
    fresh = CiUBM(SPEC)
    fresh.load_state_dict(saved)
    assert fresh.content.dtype == torch.float32 and fresh.content.shape == (7, 3)
    torch.testing.assert_close(fresh.content, saved["content"].float())
    other = CiUBM(SPEC, content_embeddings=torch.randn(9, 3))
    with pytest.raises(RuntimeError, match="size mismatch for content"):
        other.load_state_dict(saved)


def test_one_behavior_dim_reaches_the_attention() -> None:
    from components.encoders.example_inputs import random_history, random_query

    spec = EncoderSpec(embedding_dim=8, behavior_dim=1)
    torch.manual_seed(0)
    encoder = CiUBM(spec, CiUBMConfig(top_k=3), content_embeddings=torch.randn(1000, 4)).eval()
    query, history = random_query(spec, 2), random_history(spec, [6, 3])
    out = encoder(query, history)
    history.behavior_embeddings = history.behavior_embeddings + 1.0
    assert not torch.allclose(encoder(query, history), out)


class _Similarity(torch.nn.Module):
    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table)

    def forward(self, history_ids: torch.Tensor, offsets: torch.Tensor):
        query_ids = torch.arange(offsets.numel() - 1) % self.table.shape[0]
        similarity = content_similarity(self.table, query_ids, history_ids, offsets)
        return similarity, *masked_topk(similarity, offsets, None)


def test_exported_similarity_and_topk_equal_eager() -> None:
    """The traced branches (one chunk; a bounded symbolic longest history) compute what the
    eager ones do, on unnormalised content and batches of other sizes than the example's."""
    from pipelines.serve.dense import export_size_oblivious

    g = torch.Generator().manual_seed(0)
    table = torch.randn(9, 4, generator=g) * torch.rand(9, 1, generator=g) * 0.2
    module = _Similarity(table)
    example = (torch.tensor([1, 2, 3, 4, 5, 6, 7]), torch.tensor([0, 3, 3, 7]))
    dynamic = ({0: torch.export.Dim("N", min=0)}, {0: torch.export.Dim("B1", min=1)})
    exported = export_size_oblivious(module, example, dynamic).module()
    for ids, bounds in (([2, 0, 5, 8, 1], [0, 1, 5]), ([3, 3, 4, 1, 7, 2, 6, 5, 0], [0, 9])):
        args = (torch.tensor(ids), torch.tensor(bounds))
        for got, want in zip(exported(*args), module(*args), strict=True):
            torch.testing.assert_close(got, want)
