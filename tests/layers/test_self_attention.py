"""The intra-group transformer's layers against a naive loop: per sequence and head,
``softmax(q k^T / sqrt(d))`` over the valid keys only; a sequence with no valid key attends to
nothing (its output is the out-projection's bias); dropout acts in training only; the block is
``x + attn(norm1(x))`` then, when asked, ``+ ffn(x)``, with padded positions zeroed."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from components.layers.self_attention import MultiHeadSelfAttention, SelfAttentionBlock


def _naive(attn: MultiHeadSelfAttention, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    s, m, d = x.shape
    h = attn.num_heads
    dh = d // h
    out = torch.zeros(s, m, d)
    for i in range(s):
        q, k, v = attn.qkv(x[i]).chunk(3, dim=-1)
        valid = [j for j in range(m) if mask[i, j]]
        rows = torch.zeros(m, d)
        for head in range(h):
            cols = slice(head * dh, (head + 1) * dh)
            for p in range(m):
                if not valid:
                    continue
                logits = torch.stack([q[p, cols] @ k[j, cols] / math.sqrt(dh) for j in valid])
                weights = torch.softmax(logits, dim=0)
                rows[p, cols] = sum(w * v[j, cols] for w, j in zip(weights, valid, strict=True))
        out[i] = attn.out(rows)
    return out


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 8, generator=g)
    mask = torch.tensor([[1, 1, 0, 1], [0, 0, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    return x, mask


def test_attention_equals_the_naive_loop_and_ignores_padded_keys() -> None:
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(8).eval()
    assert attn.num_heads == 2 and attn.dropout == 0.0
    x, mask = _inputs()
    with torch.no_grad():
        got = attn(x, mask)
        torch.testing.assert_close(got, _naive(attn, x, mask), atol=1e-5, rtol=1e-5)
        assert torch.allclose(got[1], attn.out.bias.expand(4, -1))  # no valid key
        changed = x.clone()
        changed[0, 2] += 5.0  # a padded key of sequence 0
        assert torch.allclose(attn(changed, mask)[0, [0, 1, 3]], got[0, [0, 1, 3]], atol=1e-6)


def test_dropout_acts_in_training_only() -> None:
    torch.manual_seed(0)
    x, mask = _inputs()
    mask[1] = True
    plain = MultiHeadSelfAttention(8).train()  # default: no dropout
    assert torch.equal(plain(x, mask), plain(x, mask))
    attn = MultiHeadSelfAttention(8, dropout=0.5)
    attn.train()
    assert not torch.equal(attn(x, mask), attn(x, mask))
    attn.eval()
    with torch.no_grad():
        torch.testing.assert_close(attn(x, mask), _naive(attn, x, mask), atol=1e-5, rtol=1e-5)


def test_heads_must_divide_the_dimension() -> None:
    with pytest.raises(ValueError, match=r"^dim 6 must be divisible by num_heads 4$"):
        MultiHeadSelfAttention(6, num_heads=4)


@pytest.mark.parametrize("feed_forward", [False, True])
def test_block_is_pre_norm_residual_with_padded_positions_zeroed(feed_forward: bool) -> None:
    torch.manual_seed(0)
    block = SelfAttentionBlock(8, num_heads=4, feed_forward=feed_forward).eval()
    assert block.attention.num_heads == 4 and block.attention.dropout == 0.0
    x, mask = _inputs()
    with torch.no_grad():
        want = x + block.attention(block.norm1(x), mask)
        if feed_forward:
            kinds = [type(layer) for layer in block.ffn]
            assert kinds == [nn.LayerNorm, nn.Linear, nn.GELU, nn.Linear]
            assert block.ffn[1].out_features == 16 and block.ffn[3].in_features == 16
            ln, up, act, down = block.ffn
            want = want + down(act(up(ln(want))))
        else:
            assert block.ffn is None
        want = want * mask.unsqueeze(-1)
        torch.testing.assert_close(block(x, mask), want)


def test_block_defaults_and_dropout_reach_the_attention() -> None:
    assert SelfAttentionBlock(8).ffn is None
    assert SelfAttentionBlock(8).attention.num_heads == 2
    assert SelfAttentionBlock(8, dropout=0.3).attention.dropout == 0.3
