"""ETA (Chen et al., arXiv 2108.04468): SimHash retrieval kept in sync with the model's embeddings.

Fingerprints are ``sign(e @ H)`` of the current item embeddings with a fixed random ``H [D, m]``
(sampled once from a seed, never trained); the K behaviors with the smallest Hamming distance to
the candidate are kept (no gradient through the selection), then SIM's exact search unit
(target attention with time-interval embeddings) attends over them. Default m = 2D bits (the
paper's Fig. 3: quality grows until about twice the embedding size).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from components.encoders.base import (
    EncoderSpec,
    History,
    Query,
    SequenceEncoder,
    flatten_candidates,
)
from components.encoders.sim import ExactSearchUnit, SIMConfig
from components.ops import jagged
from components.ops.retrieval import hamming_topk, simhash_signatures

# ops imported by name are FX leaves only where this module registers them (torch.fx.wrap
# patches the calling module's globals): the encoder then traces symbolically, op calls as nodes
torch.fx.wrap("hamming_topk")
torch.fx.wrap("simhash_signatures")


@dataclass
class ETAConfig(SIMConfig):
    """SIMConfig plus: hash_bits (0 = 2 * D), hash_seed."""

    hash_bits: int = 0
    hash_seed: int = 0


class ETA(SequenceEncoder):
    """``(query [B, D], history) -> [B, D]``: SimHash top-K + ESU.

    Example:
        >>> from components.encoders.example_inputs import random_history, random_query
        >>> spec = EncoderSpec(embedding_dim=32, behavior_dim=8)
        >>> enc = ETA(spec)
        >>> enc(random_query(spec, 2), random_history(spec, [500, 30])).shape
        torch.Size([2, 32])
    """

    def __init__(self, spec: EncoderSpec, config: ETAConfig | None = None) -> None:
        super().__init__()
        self.config = config or ETAConfig()
        bits = self.config.hash_bits or 2 * spec.embedding_dim
        planes = torch.randn(
            spec.embedding_dim, bits, generator=torch.Generator().manual_seed(self.config.hash_seed)
        )
        self.register_buffer("planes", planes)
        self.esu = ExactSearchUnit(spec, self.config)
        self.output_dim = self.esu.output_dim

    def forward(self, query: Query, history: History) -> torch.Tensor:
        with torch.no_grad():
            history_sig = simhash_signatures(history.embeddings, self.planes)
            query_sig = simhash_signatures(query.embeddings, self.planes)
            index, mask = hamming_topk(history_sig, history.offsets, query_sig, self.config.top_k)
        return self.esu(query, history, index, mask)

    def forward_candidates(self, candidates: Query, history: History) -> torch.Tensor:
        """``[B, C, output_dim]``: the history is hashed once per user (ETA's point: signatures
        are computed once and compared per candidate); each candidate's Hamming top-K is taken
        over its user's signatures and the ESU reads only those K rows."""
        b, c = candidates.item_ids.shape
        flat = flatten_candidates(candidates)
        with torch.no_grad():
            history_sig = simhash_signatures(history.embeddings, self.planes)  # [N, m], once
            rows, lengths = jagged.repeat_segments(
                history.offsets, c, history_sig.shape[0]
            )  # the signatures' copies
            index, mask = hamming_topk(
                history_sig[rows],
                jagged.lengths_to_offsets(lengths),
                simhash_signatures(flat.embeddings, self.planes),
                self.config.top_k,
            )
            index = jagged.gather_padded(rows, index, mask)  # back to rows of the one history
        return self.esu(flat, history, index, mask).unflatten(0, (b, c))
