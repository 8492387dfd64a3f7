"""The models the benchmarks compare, each one a recipe config plus ``key=value`` overrides.

Every variant starts from ``recipes/configs/<prefix>_<recipe>.yaml`` (``ml1m_*`` or
``instacart_*``), loaded with :func:`pipelines.train.config.load_config`, so the benchmarks train
exactly what the recipes train; only the overrides listed here (and the benchmark's own
dataset paths, learning rate, epochs and seed) change. DMGIN variants:

* ``DMGIN``: content-cluster groups (``model.group_key=cluster``; ``data.groups`` = K-means over
  the item content embeddings, ``pipelines.content.cluster``);
* ``DMGIN-category``: the recipe as written (category groups);
* ``DMGIN+item``: content-cluster groups plus the candidate item's own statistics
  (``use_target_item_statistics``: count per behavior type and recency of the history's
  behaviors on the candidate item);
* ``DGIN``: item-id groups (DGIN, arXiv 2311.10764);
* ``DMGIN-no-*``: the content-cluster DMGIN with one part switched off (ablations).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import REPO_ROOT

RECIPES = REPO_ROOT / "recipes" / "configs"


@dataclass(frozen=True)
class Variant:
    """Attributes:
    name: row name in tables and plots.
    recipe: recipe model suffix (``din``, ``dinfull``, ``simhard``, ``simsoft``, ``eta``,
        ``ciubm``, ``dmgin``, ``twin``, ``sdim``, ``twinv2``).
    overrides: extra ``key=value`` overrides on top of the recipe.
    groups: needs the benchmark's content-cluster table (``data.groups``).
    content: needs the frozen content embeddings (``data.content``, CiUBM).
    raw_content: with ``content``, the raw item text embeddings (``content/embeddings.npy``)
        instead of the C-SFT aligned ones (``content/aligned.npy``).
    note: what the variant is, for the tables.
    """

    name: str
    recipe: str
    overrides: tuple[str, ...] = ()
    groups: bool = False
    content: bool = False
    raw_content: bool = False
    note: str = ""


_CLUSTER = ("model.group_key=cluster",)


def _ablation(name: str, flags: str | tuple[str, ...], note: str) -> Variant:
    names = (flags,) if isinstance(flags, str) else flags
    overrides = tuple(f"model.encoder_config.{flag}=false" for flag in names)
    return Variant(name, "dmgin", (*_CLUSTER, *overrides), groups=True, note=note)


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("DIN", "din", note="target attention over the last 50"),
        Variant("DINFull", "dinfull", note="target attention over the whole history"),
        Variant("SIMHard", "simhard", note="same-category top-K + ESU"),
        Variant("SIMSoft", "simsoft", note="inner-product top-K + ESU + aux GSU loss"),
        Variant("ETA", "eta", note="SimHash Hamming top-K + ESU"),
        Variant("CiUBM", "ciubm", content=True, note="frozen content similarity + SimTier"),
        Variant(
            "CiUBM-raw",
            "ciubm",
            content=True,
            raw_content=True,
            note="CiUBM on the raw (not C-SFT aligned) content embeddings",
        ),
        Variant("TWIN", "twin", note="ESU-consistent attention top-K + ESU"),
        Variant("SDIM", "sdim", note="SimHash bucket sampling, no attention"),
        Variant(
            "TWIN-V2",
            "twinv2",
            content=True,
            note="per-user hierarchical clusters of the item content embeddings + cluster attention",
        ),
        Variant("TWIN-V2-id", "twinv2", note="per-user hierarchical clusters of the ID embeddings"),
        Variant("DMGIN", "dmgin", _CLUSTER, groups=True, note="content-cluster groups"),
        Variant(
            "DMGIN+item",
            "dmgin",
            (*_CLUSTER, "model.encoder_config.use_target_item_statistics=true"),
            groups=True,
            note="content-cluster groups + the candidate item's own statistics",
        ),
        Variant("DMGIN-category", "dmgin", ("model.group_key=category",), note="category groups"),
        Variant("DGIN", "dmgin", ("model.group_key=item",), note="item-id groups"),
        _ablation(
            "DMGIN-no-stats",
            ("use_statistics", "use_target_group_statistics"),
            "ablation: no group statistics (neither per group nor of the candidate's group)",
        ),
        _ablation(
            "DMGIN-no-intra", "use_intra_group_transformer", "ablation: no intra-group transformer"
        ),
        _ablation("DMGIN-no-hstu", "use_hstu", "ablation: no inter-group HSTU"),
        _ablation(
            "DMGIN-no-target-attn",
            "use_target_group_attention",
            "ablation: no attention over the candidate's group",
        ),
    )
}

#: the quality benchmark's default order (tables and plots follow it)
QUALITY_MODELS: tuple[str, ...] = tuple(VARIANTS)
#: the cost benchmark's default models
COST_MODELS: tuple[str, ...] = (
    "DIN", "DINFull", "SIMHard", "SIMSoft", "ETA", "CiUBM", "DMGIN", "TWIN", "SDIM", "TWINV2",
)  # fmt: skip


def parse_models(text: str, known: tuple[str, ...] = QUALITY_MODELS) -> list[str]:
    """``"DIN,DMGIN"`` or ``"all"`` -> validated names, in the given order."""
    if text == "all":
        return list(known)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; choose from {sorted(VARIANTS)}")
    return names


def recipe_path(prefix: str, variant: Variant) -> Path:
    """``recipes/configs/<prefix>_<recipe>.yaml`` (must exist)."""
    path = RECIPES / f"{prefix}_{variant.recipe}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the benchmark trains the recipes' configs")
    return path


def config_overrides(
    variant: Variant,
    dataset: Path | str,
    groups: Path | str | None = None,
    content: Path | str | None = None,
    raw_content: Path | str | None = None,
) -> list[str]:
    """The variant's overrides plus its data paths (``data.groups`` / ``data.content``: the
    aligned ``content``, or ``raw_content`` for a ``raw_content`` variant)."""
    overrides = [f"data.dataset={dataset}", *variant.overrides]
    if variant.groups:
        if groups is None:
            raise ValueError(f"{variant.name} needs a groups table")
        overrides.append(f"data.groups={groups}")
    if variant.content:
        path = raw_content if variant.raw_content else content
        if path is None:
            kind = "raw" if variant.raw_content else "aligned"
            raise ValueError(f"{variant.name} needs a {kind} content embedding file")
        overrides.append(f"data.content={path}")
    return overrides


def config_hash(config: Any, tokens: dict[str, str]) -> str:
    """Short hash of a resolved :class:`ExperimentConfig` with machine-specific paths replaced.

    ``train.output_dir`` and ``train.lookup_plan`` (how rows are looked up, not what is trained)
    are dropped and each path in ``tokens`` (path -> token) is replaced by its
    token, so the same experiment hashes the same on any checkout; a changed recipe (or override)
    changes the hash, which makes the benchmarks re-run the affected runs.
    """
    from pipelines.train.config import to_dict

    raw = to_dict(config)
    raw["train"].pop("output_dir", None)
    raw["train"].pop("lookup_plan", None)
    data = raw["data"]
    for key in ("dataset", "groups", "content"):
        if data.get(key) is not None:
            data[key] = tokens.get(str(data[key]), Path(str(data[key])).name)
    text = json.dumps(raw, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]
