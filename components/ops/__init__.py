"""Functional ops over jagged lifelong behavior sequences (no parameters, no modules).

- :mod:`components.ops.jagged`: offsets, segment ids, jagged -> padded, gather into slots.
- :mod:`components.ops.grouping`: DMGIN's bucketing of a history into interest groups.
- :mod:`components.ops.retrieval`: GSU selection (SIM hard/soft search, ETA SimHash).

Every fast op has a ``*_reference`` twin written with plain loops. The fast ops are
``torch.fx.wrap``-ed leaves: call them as module attributes (``jagged.jagged_to_padded``) or
add ``torch.fx.wrap("name")`` after a ``from ... import name`` in the calling module, and
symbolic tracing records them as single calls instead of tracing their data-dependent code.
"""

from components.ops.grouping import (
    SECONDS_PER_DAY,
    GroupedBehaviors,
    group_behaviors,
    group_behaviors_reference,
    group_stats_dim,
)
from components.ops.jagged import (
    gather_padded,
    gather_padded_reference,
    jagged_to_padded,
    jagged_to_padded_reference,
    last_rows,
    last_rows_reference,
    lengths_to_offsets,
    lengths_to_offsets_reference,
    padded_rows,
    repeat_segments,
    repeat_segments_reference,
    segment_ids,
    segment_ids_reference,
)
from components.ops.retrieval import (
    hamming_topk,
    hamming_topk_reference,
    hard_search,
    hard_search_reference,
    simhash_signatures,
    topk_by_score,
    topk_by_score_reference,
)

__all__ = [
    "SECONDS_PER_DAY",
    "GroupedBehaviors",
    "gather_padded",
    "gather_padded_reference",
    "group_behaviors",
    "group_behaviors_reference",
    "group_stats_dim",
    "hamming_topk",
    "hamming_topk_reference",
    "hard_search",
    "hard_search_reference",
    "jagged_to_padded",
    "jagged_to_padded_reference",
    "last_rows",
    "last_rows_reference",
    "lengths_to_offsets",
    "lengths_to_offsets_reference",
    "padded_rows",
    "repeat_segments",
    "repeat_segments_reference",
    "segment_ids",
    "segment_ids_reference",
    "simhash_signatures",
    "topk_by_score",
    "topk_by_score_reference",
]
