"""SDIM (Cao et al., arXiv 2205.10249): sampling-based deep interest modeling, no attention over
the history at all.

``m`` SimHash functions of ``tau`` bits each (fixed random hyperplanes, sampled once from a seed,
never trained) put every behavior and the candidate into one of ``2**tau`` buckets per hash. Under
hash j the candidate gathers the behaviors that collide with it; the sum of their values is
L2-normalised; the user interest is the mean over the m hashes. A behavior's expected weight is
its collision probability ``(1 - angle / pi) ** tau``, which approximates a target attention
(the paper's argument). The behavior side, the sums per (hash, bucket), is computed once per
user (:func:`components.ops.hashing.bucket_sums`), so ranking C candidates costs O(C * m * D)
after it, whatever the history length.

Choices the paper leaves open: the value of a behavior is ``[e_i, behavior embedding]``; the
hash reads the item embedding ``e_i`` only (the candidate has no behavior type); a hash under
which nothing collides contributes a zero vector to the mean; the paper's defaults m = 48,
tau = 3. Only the lifelong part is here (the paper's short-term DIN block is a separate encoder).

Shapes: B batch, N jagged rows, m hashes, V = 2**tau buckets, D + D_b value dim.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from components.encoders.base import EncoderSpec, History, Query, SequenceEncoder
from components.ops.hashing import bucket_sums, simhash_codes

# ops imported by name are FX leaves only where this module registers them (torch.fx.wrap
# patches the calling module's globals): the encoder then traces symbolically, op calls as nodes
torch.fx.wrap("simhash_codes")
torch.fx.wrap("bucket_sums")


@dataclass
class SDIMConfig:
    """Attributes:
    num_hashes: m hash functions (the paper uses 48).
    hash_bits: tau bits per hash, 2**tau buckets (the paper uses 3).
    hash_seed: seed of the fixed random hyperplanes.
    """

    num_hashes: int = 48
    hash_bits: int = 3
    hash_seed: int = 0

    def __post_init__(self) -> None:
        if self.num_hashes < 1 or not 1 <= self.hash_bits <= 16:
            raise ValueError(
                f"num_hashes must be >= 1 and hash_bits in [1, 16], got {self.num_hashes}, "
                f"{self.hash_bits}"
            )


class SDIM(SequenceEncoder):
    """``(query [B, D], history) -> [B, D + D_b]``: mean over hashes of the normalised sum of the
    behaviors that share the candidate's bucket.

    Example:
        >>> from components.encoders.example_inputs import random_history, random_query
        >>> spec = EncoderSpec(embedding_dim=32, behavior_dim=8)
        >>> enc = SDIM(spec)
        >>> enc(random_query(spec, 2), random_history(spec, [500, 30])).shape
        torch.Size([2, 40])
    """

    config_class = SDIMConfig

    def __init__(self, spec: EncoderSpec, config: SDIMConfig | None = None) -> None:
        super().__init__()
        self.config = config or SDIMConfig()
        cfg = self.config
        planes = torch.randn(
            spec.embedding_dim,
            cfg.num_hashes * cfg.hash_bits,
            generator=torch.Generator().manual_seed(cfg.hash_seed),
        )
        self.register_buffer("planes", planes)
        self.num_buckets = 2**cfg.hash_bits
        self.output_dim = spec.embedding_dim + spec.behavior_dim

    def user_buckets(self, history: History) -> torch.Tensor:
        """``[B, m, V, D + D_b]`` sum of the behavior values in each (hash, bucket) per user,
        the candidate-independent part (computed once per user)."""
        codes = simhash_codes(history.embeddings, self.planes, self.config.hash_bits)
        values = torch.cat([history.embeddings, history.behavior_embeddings], dim=1)
        return bucket_sums(values, history.offsets, codes, self.num_buckets)[0]

    def read(self, buckets: torch.Tensor, query_embeddings: torch.Tensor) -> torch.Tensor:
        """``buckets [B, m, V, Dv]``, candidates ``[B, C, D]`` -> ``[B, C, Dv]``."""
        codes = simhash_codes(query_embeddings, self.planes, self.config.hash_bits)  # [B, C, m]
        b, c, m = codes.shape
        users = torch.arange(b, device=codes.device).view(b, 1, 1).expand(b, c, m)
        hashes = torch.arange(m, device=codes.device).view(1, 1, m).expand(b, c, m)
        collided = buckets[users, hashes, codes]  # [B, C, m, Dv]
        norm = collided.norm(dim=-1, keepdim=True)
        normalised = collided / norm.clamp_min(1e-12)  # an empty bucket stays 0
        return normalised.mean(dim=2)

    def forward(self, query: Query, history: History) -> torch.Tensor:
        return self.read(self.user_buckets(history), query.embeddings.unsqueeze(1)).squeeze(1)

    def forward_candidates(self, candidates: Query, history: History) -> torch.Tensor:
        """``[B, C, D + D_b]``: the bucket sums once per user, then m lookups per candidate."""
        return self.read(self.user_buckets(history), candidates.embeddings)
