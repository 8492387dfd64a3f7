"""Load and score a split lifelongrec export with torch and torchrec only (no lifelongrec code).

``python -m pipelines.export --split DIR`` writes this file into DIR as ``load.py``, next to::

    manifest.json   what was exported: encoder, inputs, dense kind (aoti / torch.export), why
    sparse.pt       the EmbeddingBagCollections: table configs + weights (torch.load weights_only)
    dense.pt2       the dense part: an AOTInductor package or a torch.export program

Usage, from any directory, with only torch + torchrec installed::

    import importlib.util
    spec = importlib.util.spec_from_file_location("lifelongrec_load", "DIR/load.py")
    load = importlib.util.module_from_spec(spec); spec.loader.exec_module(load)
    ranker = load.StandaloneRanker("DIR")
    probabilities = ranker(user, candidate_item, candidate_category, history_lengths,
                           history_item, history_category, history_behavior, history_age,
                           history_numeric)          # [B, C]

Shapes: ``user [B]``, ``candidate_item / candidate_category [B, C]`` int64 ids; the histories
jagged (``history_lengths [B]``, then every user's rows concatenated, oldest -> newest):
``history_item / history_category / history_behavior [N]`` int64, ``history_age [N]`` float32
seconds before the request, ``history_numeric [N, F]`` float32 raw values.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor, PoolingType

FORMAT = "lifelongrec.split"
ITEM_KEYS = ("item_id", "category_id", "behavior_id")


def load_collection(payload: dict, name: str) -> EmbeddingBagCollection:
    """The EmbeddingBagCollection ``name`` ("user" or "item") of a ``sparse.pt`` payload."""
    tables = [
        EmbeddingBagConfig(
            name=t["name"],
            embedding_dim=t["embedding_dim"],
            num_embeddings=t["num_embeddings"],
            feature_names=list(t["feature_names"]),
            pooling=PoolingType[t["pooling"]],
        )
        for t in payload["collections"][name]
    ]
    collection = EmbeddingBagCollection(tables=tables)
    collection.load_state_dict(payload["weights"][name])
    return collection.eval()


class StandaloneRanker:
    """The exported model: sparse lookups (TorchRec EBCs over KeyedJaggedTensors), then the
    dense program. ``__call__`` returns click probabilities ``[B, C]``."""

    def __init__(self, directory: str | Path) -> None:
        directory = Path(directory)
        self.manifest = json.loads((directory / "manifest.json").read_text())
        if self.manifest.get("format") != FORMAT:
            raise ValueError(f"{directory}: not a lifelongrec split export")
        payload = torch.load(directory / "sparse.pt", weights_only=True, map_location="cpu")
        self.user_ebc = load_collection(payload, "user")
        self.item_ebc = load_collection(payload, "item")
        dense = directory / self.manifest["dense"]["file"]
        if self.manifest["dense"]["kind"] == "aoti":
            self.dense = torch._inductor.aoti_load_package(str(dense))
        else:
            self.dense = torch.export.load(str(dense)).module()

    @torch.no_grad()
    def __call__(
        self,
        user: torch.Tensor,
        candidate_item: torch.Tensor,
        candidate_category: torch.Tensor,
        history_lengths: torch.Tensor,
        history_item: torch.Tensor,
        history_category: torch.Tensor,
        history_behavior: torch.Tensor,
        history_age: torch.Tensor,
        history_numeric: torch.Tensor,
    ) -> torch.Tensor:
        inputs = sparse_lookup(
            self.user_ebc,
            self.item_ebc,
            user,
            candidate_item,
            candidate_category,
            history_item,
            history_category,
            history_behavior,
        )
        return self.dense(*inputs, history_lengths, history_age, history_numeric)


def sparse_lookup(
    user_ebc: EmbeddingBagCollection,
    item_ebc: EmbeddingBagCollection,
    user: torch.Tensor,
    candidate_item: torch.Tensor,
    candidate_category: torch.Tensor,
    history_item: torch.Tensor,
    history_category: torch.Tensor,
    history_behavior: torch.Tensor,
) -> tuple[torch.Tensor, ...]:
    """The sparse part: ids -> the dense program's first inputs ``(user_emb [B, E],
    candidate_emb [B, C, D], candidate_item, candidate_category, history_emb [N, D],
    history_behavior_emb [N, D_b], history_item, history_category, history_behavior)``, each id
    one bag of one id (KeyedJaggedTensor lengths 1) in the model's EmbeddingBagCollections."""
    b, c = candidate_item.shape
    one = torch.ones_like(user)
    user_emb = user_ebc(KeyedJaggedTensor.from_lengths_sync(["user_id"], user, one))["user_id"]
    rows = {  # every candidate (behavior 0, as in training), then every history row
        "item_id": torch.cat([candidate_item.flatten(), history_item]),
        "category_id": torch.cat([candidate_category.flatten(), history_category]),
        "behavior_id": torch.cat([torch.zeros_like(candidate_item.flatten()), history_behavior]),
    }
    values = torch.cat([rows[key] for key in ITEM_KEYS])
    kjt = KeyedJaggedTensor.from_lengths_sync(list(ITEM_KEYS), values, torch.ones_like(values))
    looked_up = item_ebc(kjt)
    item_side = torch.cat([looked_up["item_id"], looked_up["category_id"]], dim=1)
    behavior = looked_up["behavior_id"]
    return (
        user_emb,
        item_side[: b * c].view(b, c, -1),
        candidate_item,
        candidate_category,
        item_side[b * c :],
        behavior[b * c :],
        history_item,
        history_category,
        history_behavior,
    )
