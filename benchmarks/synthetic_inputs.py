"""Synthetic inputs for the cost benchmarks (``benchmarks.encoders``, ``benchmarks.cost``).

Every sample gets exactly L behaviors so a row of the results is one history length. Items carry
a category (``1 + item % categories``), so SIMHard's same-category search, DMGIN's category
groups and CiUBM's content table all see realistic structure: with the defaults (500 categories)
a history of L behaviors touches about min(L, 500) categories of ~L/500 behaviors each. Ages
are increasing gaps of up to an hour, oldest first, as in real logs.

The model-level knobs come from the recipes (``recipes/configs/ml1m_<model>.yaml``): the cost
benchmarks measure exactly the encoder and head configurations that the quality benchmark trains.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from components.encoders.base import EncoderSpec, History, Query, repeat_history
from components.model_config import ModelConfig, Vocab
from components.ops.jagged import lengths_to_offsets

if TYPE_CHECKING:  # both import torchrec: imported where used, so that benchmarks.encoders
    # runs on a plain-torch image (docs/gpu.md)
    from pipelines.data.batch import Batch
    from pipelines.train.config import ExperimentConfig

REPO_ROOT = Path(__file__).resolve().parents[1]

#: model name -> recipe file suffix
RECIPE_OF = {
    "DIN": "din",
    "DINFull": "dinfull",
    "SIMHard": "simhard",
    "SIMSoft": "simsoft",
    "ETA": "eta",
    "CiUBM": "ciubm",
    "DMGIN": "dmgin",
    "TWIN": "twin",
    "SDIM": "sdim",
    "TWINV2": "twinv2",
}


@dataclass(frozen=True)
class SyntheticSizes:
    """Vocabulary of the synthetic inputs.

    Attributes:
        users, items, categories: id vocabularies (index 0 = padding).
        behaviors: behavior types (ids 1..behaviors-1 are used).
        numeric: F numeric fields per behavior.
        content_dim: d of CiUBM's frozen content table (random unit rows).
    """

    users: int = 10_000
    items: int = 100_000
    categories: int = 500
    behaviors: int = 4
    numeric: int = 1
    content_dim: int = 32

    @property
    def vocab(self) -> Vocab:
        return Vocab(self.users, self.items, self.categories, self.behaviors, self.numeric)


def recipe_config(model: str, recipe_prefix: str = "ml1m") -> ExperimentConfig:
    """``recipes/configs/<prefix>_<recipe>.yaml`` (model, optimizers, train settings)."""
    from pipelines.train.config import load_config

    path = REPO_ROOT / "recipes" / "configs" / f"{recipe_prefix}_{RECIPE_OF[model]}.yaml"
    return load_config(path, [f"data.dataset={REPO_ROOT}"])


def recipe_model_config(model: str, recipe_prefix: str = "ml1m") -> ModelConfig:
    """The ``model`` section of ``recipes/configs/<prefix>_<recipe>.yaml``."""
    return recipe_config(model, recipe_prefix).model


def content_table(sizes: SyntheticSizes, seed: int = 0) -> torch.Tensor:
    """``[items, content_dim]`` seeded random unit rows (row 0 = zeros), CiUBM's frozen table."""
    generator = torch.Generator().manual_seed(seed)
    table = torch.nn.functional.normalize(
        torch.randn(sizes.items, sizes.content_dim, generator=generator), dim=1
    )
    table[0] = 0.0
    return table


def _ids_and_ages(
    batch: int, length: int, sizes: SyntheticSizes, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    n = batch * length
    items = torch.randint(1, sizes.items, (n,), generator=generator)
    gaps = torch.rand(batch, length, generator=generator) * 3600.0 + 1.0
    age = torch.flip(torch.cumsum(torch.flip(gaps, [1]), dim=1), [1]).reshape(n)
    return {
        "items": items,
        "categories": 1 + items % (sizes.categories - 1),
        "behaviors": torch.randint(1, sizes.behaviors, (n,), generator=generator),
        "age": age,
        "numeric": torch.rand(n, sizes.numeric, generator=generator) * 5.0,
    }


def encoder_inputs(
    spec: EncoderSpec, batch: int, length: int, sizes: SyntheticSizes, seed: int = 0
) -> tuple[Query, History]:
    """B samples of exactly L behaviors; embeddings are leaves with ``requires_grad``."""
    generator = torch.Generator().manual_seed(seed)
    rows = _ids_and_ages(batch, length, sizes, generator)
    n = batch * length
    lengths = torch.full((batch,), length, dtype=torch.int64)
    cand_items = torch.randint(1, sizes.items, (batch,), generator=generator)
    cand_categories = 1 + cand_items % (sizes.categories - 1)
    history = History(
        embeddings=torch.randn(n, spec.embedding_dim, generator=generator).requires_grad_(),
        lengths=lengths,
        offsets=lengths_to_offsets(lengths),
        item_ids=rows["items"],
        category_ids=rows["categories"],
        group_ids=rows["categories"],
        behavior_ids=rows["behaviors"],
        age=rows["age"],
        numeric=rows["numeric"],
        behavior_embeddings=torch.randn(n, spec.behavior_dim, generator=generator),
    )
    query = Query(
        embeddings=torch.randn(batch, spec.embedding_dim, generator=generator).requires_grad_(),
        item_ids=cand_items,
        category_ids=cand_categories,
        group_ids=cand_categories,
    )
    return query, history


def encoder_spec(config: ModelConfig, sizes: SyntheticSizes) -> EncoderSpec:
    """The spec :class:`components.model.SequenceHead` builds for ``config`` (category groups)."""
    return EncoderSpec(
        embedding_dim=2 * config.embedding_dim,
        behavior_dim=config.behavior_dim,
        num_behaviors=sizes.behaviors,
        num_numeric=sizes.numeric,
        num_groups=sizes.categories,
    )


def ctr_batch(batch: int, length: int, sizes: SyntheticSizes, seed: int = 0) -> Batch:
    """A :class:`Batch` for :class:`components.model.LifelongCTRModel`, L behaviors each."""
    from pipelines.data.batch import make_batch

    generator = torch.Generator().manual_seed(seed)
    rows = _ids_and_ages(batch, length, sizes, generator)
    items = torch.randint(1, sizes.items, (batch,), generator=generator)
    return make_batch(
        user=torch.randint(1, sizes.users, (batch,), generator=generator),
        item=items,
        category=1 + items % (sizes.categories - 1),
        labels=(torch.rand(batch, generator=generator) < 0.5).float(),
        timestamps=torch.zeros(batch, dtype=torch.int64),
        history_lengths=torch.full((batch,), length, dtype=torch.int64),
        history_item=rows["items"],
        history_category=rows["categories"],
        history_behavior=rows["behaviors"],
        history_age=rows["age"],
        history_numeric=rows["numeric"],
    )


def repeat_per_candidate(
    query: Query, history: History, candidates: int, sizes: SyntheticSizes
) -> tuple[Query, History]:
    """What a model without a user cache scores: each of C candidates with its user's history.

    Takes U users (query fields ``[U]``) and returns U*C samples, candidate-major per user.
    """
    repeated = repeat_history(history, candidates)
    return _candidates(query, candidates, sizes, flat=True), repeated


def _candidates(query: Query, candidates: int, sizes: SyntheticSizes, flat: bool) -> Query:
    """C seeded candidates per user (``[U*C]`` when flat, else ``[U, C]``): every other one in
    the category of the user's query (so same-category search finds behaviors), the rest random.
    """
    u = query.item_ids.shape[0]
    generator = torch.Generator().manual_seed(1)
    d = query.embeddings.shape[-1]
    embeddings = torch.randn(u, candidates, d, generator=generator)
    items = torch.randint(1, sizes.items, (u, candidates), generator=generator)
    categories = query.category_ids.view(u, 1).expand(u, candidates).clone()
    categories[:, ::2] = 1 + items[:, ::2] % (sizes.categories - 1)
    fields: dict[str, Any] = {
        "embeddings": embeddings,
        "item_ids": items,
        "category_ids": categories,
        "group_ids": categories,
    }
    if flat:
        fields = {k: v.reshape(u * candidates, *v.shape[2:]) for k, v in fields.items()}
    return Query(**fields)


def candidate_grid(query: Query, candidates: int, sizes: SyntheticSizes) -> Query:
    """The same C candidates per user as :func:`repeat_per_candidate`, shaped ``[U, C, ...]``."""
    return _candidates(query, candidates, sizes, flat=False)
