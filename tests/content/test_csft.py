"""C-SFT: pair mining, InfoNCE masking, recall twin, and a real ml-100k alignment run."""

from __future__ import annotations

import json

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.content.csft import (
    CSFTConfig,
    ProjectionHead,
    behavior_pairs,
    info_nce,
    recall_at_k,
    recall_at_k_reference,
    train_csft,
)


def test_behavior_pairs_window_and_baskets():
    user = np.array([1, 1, 1, 1, 2, 2])
    item = np.array([10, 11, 12, 13, 20, 21])
    ts = np.array([0, 5, 5, 9, 1, 2])
    q, p = behavior_pairs(user, item, ts, window=1, baskets=False)
    assert sorted(zip(item[q], item[p])) == [(10, 11), (11, 12), (12, 13), (20, 21)]
    q, p = behavior_pairs(user, item, ts, window=2, baskets=False)
    assert (10, 12) in set(zip(item[q], item[p])) and (10, 13) not in set(zip(item[q], item[p]))
    assert np.all(user[q] == user[p])  # never across users
    ts2 = np.array([0, 0, 0, 0, 1, 1])  # one basket of 4 for user 1
    q, p = behavior_pairs(user, item, ts2, window=1, baskets=True)
    assert (10, 13) in set(zip(item[q], item[p]))


def test_info_nce_masks_false_negatives():
    torch.manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(3, 4), dim=-1)
    ids = torch.tensor([1, 2, 3])
    queue = z[:1].clone()  # a queue copy of row 0's positive = false negative for row 0
    tau = torch.tensor(0.1)
    masked = info_nce(z, z, ids, ids, queue, torch.tensor([1]), tau)
    unmasked = info_nce(z, z, ids, ids, queue, torch.tensor([99]), tau)
    assert masked < unmasked
    logits = z @ torch.cat([z, queue]).T / tau
    logits[0, 3] = float("-inf")  # only row 0 has the queue item as a false negative
    expected = torch.nn.functional.cross_entropy(logits, torch.arange(3))
    torch.testing.assert_close(masked, expected)


def test_projection_head_starts_as_identity_and_outputs_unit_vectors():
    head = ProjectionHead(6, hidden=8).eval()
    x = torch.nn.functional.normalize(torch.randn(5, 6), dim=-1)
    torch.testing.assert_close(head(x), x)
    head.train()
    out = head(torch.randn(7, 6))
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(7))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(3, 20), pairs=st.integers(1, 10), seed=st.integers(0, 999))
def test_recall_matches_reference(n, pairs, seed):
    rng = np.random.default_rng(seed)
    matrix = rng.normal(size=(n + 1, 4)).astype(np.float32)
    matrix[1 : n // 2 + 1] = matrix[1]  # ties
    candidates = np.arange(1, n + 1)
    queries = rng.integers(1, n + 1, pairs)
    targets = (queries % n) + 1  # always a different item
    got = recall_at_k(matrix, candidates, queries, targets, (1, 3))
    want = recall_at_k_reference(matrix, candidates, queries, targets, (1, 3))
    assert got == want


def test_csft_on_ml100k_lowers_loss_and_beats_raw_recall(ml100k_embedded):
    cfg = CSFTConfig(epochs=1, max_steps=300, batch_size=256, queue_size=1024, lr=1e-3, seed=0)
    result = train_csft(ml100k_embedded, cfg)
    report = result.report
    assert report["train_pairs"] > 10_000 and report["heldout_pairs"] > 1_000
    assert report["loss_last"] < report["loss_first"]
    assert report["aligned"]["recall@10"] > report["raw"]["recall@10"]
    assert report["aligned"]["recall@50"] > report["raw"]["recall@50"]
    content = ml100k_embedded / "content"
    aligned = np.load(content / "aligned.npy")
    assert np.all(aligned[0] == 0)
    np.testing.assert_allclose(np.linalg.norm(aligned[1:], axis=1), 1.0, rtol=1e-5)
    saved = json.loads((content / "csft_report.json").read_text())
    assert saved["aligned"] == report["aligned"]
