"""HSTULayer and its relative position / time-gap bias: what the layer means.

Every test draws the bias tables at random (they start at zero, so a model at init cannot show
whether the time-gap or the position path is wired right) and checks the layer against a plain
loop written from its docstring, plus the properties a causal, masked layer must have.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from components.layers.hstu import HSTULayer, RelativeTimePositionBias

DIM, HEADS, MAX_LEN = 8, 2, 6


def make_layer(causal: bool = True, seed: int = 0, num_heads: int = HEADS) -> HSTULayer:
    torch.manual_seed(seed)
    layer = HSTULayer(DIM, num_heads=num_heads, max_len=MAX_LEN, causal=causal).eval()
    with torch.no_grad():  # non-zero bias tables: both bias paths must show in the output
        layer.bias.position.normal_(0.0, 1.0)
        layer.bias.time.normal_(0.0, 1.0)
    return layer


def make_inputs(lengths: list[int], width: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    b = len(lengths)
    x = torch.randn(b, width, DIM, generator=g)
    mask = torch.arange(width).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    # seconds, increasing along the sequence, gaps from seconds to months (many buckets)
    gaps = torch.exp(torch.rand(b, width, generator=g) * 16.0)
    timestamps = torch.cumsum(gaps, dim=1)
    return x, mask, timestamps


def naive_bucket(gap_seconds: float, num_buckets: int) -> int:
    return min(int(math.floor(math.log2(1.0 + abs(gap_seconds) / 60.0))), num_buckets - 1)


def naive_hstu(layer: HSTULayer, x: torch.Tensor, mask: torch.Tensor, t: torch.Tensor):
    """The layer's docstring, one sample, one query position and one key at a time."""
    b, length, dim = x.shape
    h, d = layer.num_heads, layer.head_dim
    bias = layer.bias
    out = torch.zeros_like(x)
    for s in range(b):
        valid = [i for i in range(length) if bool(mask[s, i])]
        u, v, q, k = F.silu(layer.f1(layer.norm_in(x[s]))).split(dim, dim=-1)
        for i in valid:
            keys = [j for j in valid if j <= i or not layer.causal]
            heads = []
            for head in range(h):
                cols = slice(head * d, (head + 1) * d)
                acc = torch.zeros(d)
                for j in keys:
                    logit = (q[i, cols] * k[j, cols]).sum() / math.sqrt(d)
                    logit = logit + bias.position[head, j - i + bias.max_len - 1]
                    gap = float(t[s, i] - t[s, j])
                    logit = logit + bias.time[head, naive_bucket(gap, bias.num_time_buckets)]
                    acc = acc + F.silu(logit) / len(keys) * v[j, cols]
                heads.append(acc)
            attended = torch.cat(heads)
            out[s, i] = x[s, i] + layer.f2(layer.norm_attn(attended) * u[i])
    return out


@settings(max_examples=20, deadline=None)
@given(
    lengths=st.lists(st.integers(0, MAX_LEN), min_size=1, max_size=3),
    causal=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_layer_equals_a_naive_loop(lengths: list[int], causal: bool, seed: int) -> None:
    layer = make_layer(causal, seed)
    x, mask, t = make_inputs(lengths, MAX_LEN, seed)
    with torch.no_grad():
        torch.testing.assert_close(layer(x, mask, t), naive_hstu(layer, x, mask, t))


@pytest.mark.parametrize("causal", [True, False])
def test_layer_equals_a_naive_loop_on_a_fixed_batch(causal: bool) -> None:
    layer = make_layer(causal, seed=11)
    x, mask, t = make_inputs([6, 0, 3, 1], MAX_LEN, seed=11)
    with torch.no_grad():
        torch.testing.assert_close(layer(x, mask, t), naive_hstu(layer, x, mask, t))


def test_bias_equals_a_naive_table_lookup() -> None:
    torch.manual_seed(0)
    bias = RelativeTimePositionBias(max_len=4, num_heads=3, num_time_buckets=5)
    with torch.no_grad():
        bias.position.normal_()
        bias.time.normal_()
    # gaps of 0 s, 59 s (bucket 0), 60 s (1), 3 min (2), 1 day (10 -> capped at 4)
    t = torch.tensor([[0.0, 59.0, 60.0, 180.0], [0.0, 86400.0, 86400.0 + 120.0, 1e9]])
    out = bias(t)
    assert out.shape == (2, 3, 4, 4)
    for s in range(2):
        for head in range(3):
            for i in range(4):
                for j in range(4):
                    gap = float(t[s, i] - t[s, j])
                    expected = (
                        bias.position[head, j - i + 3] + bias.time[head, naive_bucket(gap, 5)]
                    )
                    torch.testing.assert_close(out[s, head, i, j], expected)
    assert naive_bucket(59.0, 32) == 0 and naive_bucket(60.0, 32) == 1


@settings(max_examples=15, deadline=None)
@given(length=st.integers(2, MAX_LEN), cut=st.integers(0, MAX_LEN - 2), seed=st.integers(0, 999))
def test_causal_output_at_i_ignores_every_later_position(length: int, cut: int, seed: int) -> None:
    cut = min(cut, length - 2)  # positions 0..cut are kept, cut+1.. change
    layer = make_layer(True, seed)
    x, mask, t = make_inputs([length], MAX_LEN, seed)
    base = layer(x, mask, t)
    x2, t2 = x.clone(), t.clone()
    x2[:, cut + 1 :] = torch.randn_like(x2[:, cut + 1 :]) * 3.0
    t2[:, cut + 1 :] += 1e6  # later groups happen much later
    changed = layer(x2, mask, t2)
    torch.testing.assert_close(changed[:, : cut + 1], base[:, : cut + 1])
    assert not torch.allclose(changed[:, cut + 1 : length], base[:, cut + 1 : length])


def test_non_causal_output_reads_later_positions() -> None:
    layer = make_layer(False)
    x, mask, t = make_inputs([5], MAX_LEN)
    base = layer(x, mask, t)
    x2 = x.clone()
    x2[:, 4] = torch.randn(DIM) * 3.0  # (a constant shift would vanish in the LayerNorm)
    assert not torch.allclose(layer(x2, mask, t)[:, 0], base[:, 0])


@pytest.mark.parametrize("causal", [True, False])
def test_padded_positions_change_nothing_and_come_out_zero(causal: bool) -> None:
    layer = make_layer(causal)
    x, mask, t = make_inputs([3, 6, 0, 1], MAX_LEN, seed=3)
    base = layer(x, mask, t)
    assert torch.equal(base[~mask], torch.zeros_like(base[~mask]))
    x2, t2 = x.clone(), t.clone()
    x2[~mask] = torch.randn_like(x2[~mask]) * 5.0
    t2[~mask] = -1e7
    torch.testing.assert_close(layer(x2, mask, t2), base)
    # fewer padded columns (a narrower batch) changes nothing for the valid positions
    short = layer(x[:1, :3], mask[:1, :3], t[:1, :3])
    torch.testing.assert_close(short[0], base[0, :3])


def test_each_sample_is_alone_in_the_batch() -> None:
    layer = make_layer(True)
    x, mask, t = make_inputs([2, 6, 4], MAX_LEN, seed=4)
    batched = layer(x, mask, t)
    for s in range(3):
        alone = layer(x[s : s + 1], mask[s : s + 1], t[s : s + 1])
        torch.testing.assert_close(alone[0], batched[s])


def test_time_gaps_and_positions_both_matter() -> None:
    layer = make_layer(True)
    x, mask, t = make_inputs([6], MAX_LEN, seed=5)
    base = layer(x, mask, t)
    # the same order, other gaps: the time-gap path changes the output
    assert not torch.allclose(layer(x, mask, t * 50.0), base)
    # a shift of every timestamp keeps every gap: nothing changes
    torch.testing.assert_close(layer(x, mask, t + 12345.0), base)
    # with the time table flat, gaps do not matter; the position table still does
    with torch.no_grad():
        layer.bias.time.zero_()
    flat = layer(x, mask, t)
    torch.testing.assert_close(layer(x, mask, t * 50.0), flat)
    with torch.no_grad():
        layer.bias.position.zero_()
    assert not torch.allclose(layer(x, mask, t), flat)


def test_one_training_step_moves_the_time_and_position_tables() -> None:
    """From the zero init (as constructed), a gradient reaches several time-gap buckets and
    several relative positions: the bias paths learn from the data's gaps and order."""
    torch.manual_seed(0)
    layer = HSTULayer(DIM, num_heads=HEADS, max_len=MAX_LEN).train()
    x, mask, t = make_inputs([6, 4], MAX_LEN, seed=6)
    layer(x, mask, t).pow(2).sum().backward()
    time_grad = layer.bias.time.grad.abs().sum(dim=0)
    position_grad = layer.bias.position.grad.abs().sum(dim=0)
    assert int((time_grad > 0).sum()) >= 3
    assert int((position_grad > 0).sum()) >= 3
    # causal: no key after the query, so offsets j - i > 0 get no gradient
    assert torch.equal(position_grad[MAX_LEN:], torch.zeros(MAX_LEN - 1))


def test_constructor_defaults_and_errors() -> None:
    layer = HSTULayer(8)
    assert (layer.num_heads, layer.head_dim, layer.causal) == (2, 4, True)
    assert layer.bias.position.shape == (2, 2 * 256 - 1)
    assert layer.bias.time.shape == (2, 32)
    with pytest.raises(ValueError, match="dim 10 must be divisible by num_heads 3"):
        HSTULayer(10, num_heads=3)


def test_offsets_beyond_max_len_share_the_outermost_position_entry() -> None:
    """A sequence longer than ``max_len``: offsets past +-(max_len - 1) read the table's edge."""
    torch.manual_seed(0)
    bias = RelativeTimePositionBias(max_len=3, num_heads=2, num_time_buckets=4)
    with torch.no_grad():
        bias.position.normal_()
    out = bias(torch.zeros(1, 6))  # no time gap: only positions differ
    for head in range(2):
        for i in range(6):
            for j in range(6):
                offset = max(-2, min(2, j - i))
                want = bias.position[head, offset + 2] + bias.time[head, 0]
                torch.testing.assert_close(out[0, head, i, j], want)


def test_bias_positions_follow_the_timestamps_device() -> None:
    """The offsets are made on the timestamps' device, not torch's default one."""
    bias = RelativeTimePositionBias(max_len=4, num_heads=2)
    t = torch.tensor([[0.0, 60.0, 3600.0]])
    want = bias(t)
    with torch.device("meta"):
        got = bias(t)
    assert got.device.type == "cpu" and torch.equal(got, want)
