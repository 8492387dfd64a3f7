"""SimHash bucket aggregation for SDIM (Cao et al., arXiv 2205.10249): sample behaviors by
hash collision with the candidate instead of attending over them.

Each of ``m`` hash functions maps an embedding to a bucket: ``tau`` random hyperplanes, the
signs of the projections read as a ``tau``-bit code (``2**tau`` buckets). The behaviors that fall
into the candidate's bucket under hash j are the ones it "attends" to under that hash: two
vectors collide with probability ``(1 - angle / pi) ** tau``, a weight that falls with the angle
as attention does. Per user, the sums of behavior values per (hash, bucket) are computed once
(:func:`bucket_sums`); a candidate then reads ``m`` of them, whatever the history length.

Shapes: N jagged behavior rows, B users, m hashes, tau bits, V = 2**tau buckets, Dv value dim.

Example:
    >>> planes = torch.randn(4, 2 * 3)  # D = 4, m = 2 hashes of tau = 3 bits
    >>> codes = simhash_codes(torch.randn(5, 4), planes, bits=3)
    >>> codes.shape, bool(((codes >= 0) & (codes < 8)).all())
    (torch.Size([5, 2]), True)
"""

from __future__ import annotations

import torch

from components.ops.jagged import segment_ids
from components.ops.retrieval import simhash_signatures
from components.ops.symbolic import check_offsets, check_range

__all__ = ["bucket_sums", "bucket_sums_reference", "simhash_codes", "simhash_codes_reference"]


@torch.fx.wrap
@torch.no_grad()
def simhash_codes(embeddings: torch.Tensor, planes: torch.Tensor, bits: int) -> torch.Tensor:
    """``[..., D]`` -> ``[..., m]`` int64 bucket of each hash, in ``[0, 2**bits)``.

    Args:
        embeddings: ``[..., D]``.
        planes: ``[D, m * bits]`` fixed random hyperplanes; hash j uses columns
            ``j * bits .. (j + 1) * bits - 1``, bit t of its code is ``e . planes[:, j*bits + t] > 0``.
        bits: tau, bits per hash.
    """
    if bits < 1 or planes.shape[1] % bits:
        raise ValueError(f"planes [D, m * bits] has {planes.shape[1]} columns, bits={bits}")
    signs = simhash_signatures(embeddings, planes)  # [..., m * bits], ETA's fingerprint bits
    signs = signs.unflatten(-1, (planes.shape[1] // bits, bits)).to(torch.float32)
    # the code as a float32 product with the bit weights (exact: at most 2**16 - 1 < 2**24);
    # the int64 form (signs * 2**t).sum() compiles to garbage codes under AOTInductor (CPU)
    weights = torch.tensor([2.0**t for t in range(bits)], device=embeddings.device)
    return (signs @ weights).to(torch.int64)


def simhash_codes_reference(
    embeddings: torch.Tensor, planes: torch.Tensor, bits: int
) -> torch.Tensor:
    """Loop twin of :func:`simhash_codes` for ``[N, D]`` embeddings."""
    m = planes.shape[1] // bits
    out = torch.zeros(embeddings.shape[0], m, dtype=torch.int64)
    for n in range(embeddings.shape[0]):
        for j in range(m):
            code = 0
            for t in range(bits):
                if float(embeddings[n] @ planes[:, j * bits + t]) > 0:
                    code += 2**t
            out[n, j] = code
    return out


def bucket_sums(
    values: torch.Tensor, offsets: torch.Tensor, codes: torch.Tensor, num_buckets: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per user, hash and bucket: the sum of its behaviors' values and their count.

    Args:
        values: ``[N, Dv]`` (gradients flow to them).
        offsets: ``[B + 1]`` int64 jagged offsets of the N rows.
        codes: ``[N, m]`` int64 bucket of each row under each hash, in ``[0, num_buckets)``.
        num_buckets: V.

    Returns:
        ``(sums [B, m, V, Dv], counts [B, m, V] int64)``. One ``index_add`` per hash, so
        memory stays O(N * Dv + B * m * V * Dv), never O(N * m * Dv).
    """
    n, batch = values.shape[0], offsets.numel() - 1
    check_offsets(offsets, n)
    if codes.dim() != 2 or codes.shape[0] != n:
        raise ValueError(f"codes must be [N={n}, m], got {tuple(codes.shape)}")
    check_range(codes, 0, num_buckets, "codes")
    m = codes.shape[1]
    user = segment_ids(offsets, n)
    sums = values.new_zeros(batch * m * num_buckets, values.shape[1])
    counts = torch.zeros(batch * m * num_buckets, dtype=torch.int64, device=values.device)
    ones = torch.ones(n, dtype=torch.int64, device=values.device)
    for j in range(m):  # m is static: one pass over the N rows per hash
        slot = (user * m + j) * num_buckets + codes[:, j]
        sums = sums.index_add(0, slot, values)
        counts = counts.index_add(0, slot, ones)
    return sums.view(batch, m, num_buckets, -1), counts.view(batch, m, num_buckets)


def bucket_sums_reference(
    values: torch.Tensor, offsets: torch.Tensor, codes: torch.Tensor, num_buckets: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loop twin of :func:`bucket_sums`."""
    batch, m = offsets.numel() - 1, codes.shape[1]
    sums = torch.zeros(batch, m, num_buckets, values.shape[1], dtype=values.dtype)
    counts = torch.zeros(batch, m, num_buckets, dtype=torch.int64)
    for b in range(batch):
        for row in range(int(offsets[b]), int(offsets[b + 1])):
            for j in range(m):
                sums[b, j, int(codes[row, j])] += values[row]
                counts[b, j, int(codes[row, j])] += 1
    return sums, counts
