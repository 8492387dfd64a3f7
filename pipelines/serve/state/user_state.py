""":class:`ServingModel`: a trained model ranking candidates from cached per-user states.

It turns a user's :class:`~pipelines.serve.state.events.Events` into the encoder's inputs (the
item-side table lookups, groups, ages before the state's reference time, scaled numeric
fields), builds and appends to the encoder's serving state (DMGIN:
``components.encoders.dmgin_state``; SIMHard, ETA: ``components.encoders.search_state``) and
runs the over-arch on the state's scores. Other encoders have no state: each ranking
recomputes from the log (:meth:`ServingModel.rank_from_log`, which is also the reference every
state is tested against).

The model version (:func:`model_version`) is a SHA-256 of the config and every weight; a
state of another version, or one covering another log length, is rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import torch

from components.encoders.base import History, Query
from components.encoders.dmgin import DMGIN
from components.encoders.dmgin_state import (
    DMGINServingState,
    append_dmgin_events,
    build_dmgin_state,
    score_dmgin_state,
)
from components.encoders.eta import ETA
from components.encoders.search_state import (
    SearchServingState,
    append_search_events,
    build_search_state,
    score_search_state,
)
from components.encoders.sim import SIMHard
from components.head import split_item_side
from components.model import LifelongCTRModel
from components.ops.jagged import lengths_to_offsets
from pipelines.data.batch import make_batch
from pipelines.serve.scorer import one_id_lookup
from pipelines.serve.state.cached import CachedState
from pipelines.serve.state.events import Events


def model_version(model: torch.nn.Module, config: dict[str, Any]) -> str:
    """SHA-256 (first 16 hex digits) of ``config`` (JSON) and every tensor of ``model``."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


class ServingModel:
    """A :class:`LifelongCTRModel` (eval, CPU) that ranks C candidates of one user.

    ``metadata``: the model file's (``vocab``, ``config``); ``version`` defaults to
    :func:`model_version`.
    """

    def __init__(self, model: LifelongCTRModel, metadata: dict[str, Any]) -> None:
        self.model = model.eval()
        self.head = model.head
        self.encoder = model.head.encoder
        self.metadata = metadata
        self.vocab = metadata["vocab"]
        self.num_numeric = int(self.vocab.get("num_numeric", 0))
        self.encoder_name = type(self.encoder).__name__
        self.stateful = isinstance(self.encoder, (DMGIN, SIMHard, ETA))
        self.version = model_version(model, metadata.get("config", {}))

    # -- inputs -------------------------------------------------------------------------------

    def check_events(self, events: Events) -> None:
        """Raise ``ValueError`` naming the field and the bad value."""
        v = self.vocab
        for name, values, size in (
            ("item", events.item, v["items"]),
            ("category", events.category, v["categories"]),
            ("behavior", events.behavior, v["behaviors"]),
        ):
            _check_ids(name, values, size)
        if not np.isfinite(events.ts).all():
            raise ValueError("ts: every behavior needs a finite unix time")
        if events.numeric.shape[1] != self.num_numeric:
            raise ValueError(
                f"numeric: each behavior needs {self.num_numeric} values, "
                f"got {events.numeric.shape[1]}"
            )
        if not np.isfinite(events.numeric).all():
            raise ValueError("numeric: values must be finite")
        groups = self.head.item_to_group.numel()
        if self.head.config.group_key == "cluster" and len(events):
            _check_ids("item", events.item, groups)

    def check_candidates(self, items: np.ndarray, categories: np.ndarray) -> None:
        _check_ids("items", items, self.vocab["items"])
        _check_ids("categories", categories, self.vocab["categories"])
        if self.head.config.group_key == "cluster":
            _check_ids("items", items, self.head.item_to_group.numel())

    def check_user(self, user: int) -> None:
        if not 0 <= user < self.vocab["users"]:
            raise ValueError(
                f"user: id {user} is outside the model's users 0..{self.vocab['users'] - 1}"
            )

    def _item_side(
        self, item: torch.Tensor, category: torch.Tensor, behavior: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        kt = one_id_lookup(
            self.model.item_ebc, {"item_id": item, "category_id": category, "behavior_id": behavior}
        )
        return split_item_side(kt)

    def history(self, events: Events, as_of: float) -> tuple[History, torch.Tensor]:
        """``(one-user History, scaled numeric [k, F])`` of ``events`` at reference ``as_of``."""
        item = torch.from_numpy(events.item)
        category = torch.from_numpy(events.category)
        behavior = torch.from_numpy(events.behavior)
        item_side, behavior_emb = self._item_side(item, category, behavior)
        numeric = self.head.numeric_scaler.scale_values(torch.from_numpy(events.numeric))
        lengths = torch.tensor([len(events)])
        history = History(
            embeddings=item_side,
            lengths=lengths,
            offsets=lengths_to_offsets(lengths),
            item_ids=item,
            category_ids=category,
            group_ids=self.head.groups_of(item, category),
            behavior_ids=behavior,
            age=torch.from_numpy(as_of - events.ts).to(torch.float32),
            numeric=numeric,
            behavior_embeddings=behavior_emb,
        )
        return history, numeric

    # -- states -------------------------------------------------------------------------------

    @torch.no_grad()
    def build(self, log: Events, as_of: float) -> CachedState:
        """The state of a user's whole log, ages before ``as_of``."""
        history, numeric = self.history(log, as_of)
        if isinstance(self.encoder, DMGIN):
            tensors = build_dmgin_state(self.encoder, history).to_dict()
        else:
            tensors = build_search_state(self.encoder, history).to_dict()
        return CachedState(
            self.version, self.encoder_name, as_of, len(log), numeric.sum(dim=0), tensors
        )

    @torch.no_grad()
    def append(self, state: CachedState, events: Events) -> CachedState:
        """``state`` after ``events`` (same reference time): incremental, O(k)."""
        history, numeric = self.history(events, state.as_of)
        if isinstance(self.encoder, DMGIN):
            grown = append_dmgin_events(
                self.encoder, DMGINServingState.from_dict(state.tensors), history
            )
        else:
            grown = append_search_events(
                self.encoder, SearchServingState.from_dict(state.tensors), history
            )
        return CachedState(
            self.version,
            self.encoder_name,
            state.as_of,
            state.length + len(events),
            state.numeric_sum + numeric.sum(dim=0),
            grown.to_dict(),
        )

    def usable(self, state: CachedState | None, log_length: int) -> bool:
        """Whether ``state`` was computed by this model for a log of ``log_length``."""
        return (
            state is not None
            and state.version == self.version
            and state.encoder == self.encoder_name
            and state.length == log_length
        )

    # -- ranking ------------------------------------------------------------------------------

    def _candidates(self, items: np.ndarray, categories: np.ndarray) -> Query:
        item, category = torch.from_numpy(items), torch.from_numpy(categories)
        embeddings, _ = self._item_side(item, category, torch.zeros_like(item))
        return Query(
            embeddings=embeddings.unsqueeze(0),
            item_ids=item.unsqueeze(0),
            category_ids=category.unsqueeze(0),
            group_ids=self.head.groups_of(item, category).unsqueeze(0),
        )

    @torch.no_grad()
    def rank(
        self, user: int, state: CachedState, items: np.ndarray, categories: np.ndarray
    ) -> np.ndarray:
        """Click probabilities ``[C]`` of the candidates, from the user's state."""
        cands = self._candidates(items, categories)
        if isinstance(self.encoder, DMGIN):
            interest = score_dmgin_state(
                self.encoder,
                DMGINServingState.from_dict(state.tensors),
                cands.embeddings[0],
                cands.group_ids[0],
                cands.item_ids[0],
            )
        else:
            interest = score_search_state(
                self.encoder, SearchServingState.from_dict(state.tensors), cands
            )
        c = interest.shape[0]
        parts = [interest, cands.embeddings[0]]
        if self.head.config.use_user_embedding:
            user_emb = one_id_lookup(self.model.user_ebc, {"user_id": torch.tensor([user])})[
                "user_id"
            ]
            parts.append(user_emb.expand(c, -1))
        if self.head.config.numeric_summary:
            length = torch.tensor([float(state.length)])
            means = state.numeric_sum / length.clamp_min(1.0)
            parts.append(torch.cat([means, torch.log1p(length)]).expand(c, -1))
        logits = self.head.over_arch(torch.cat(parts, dim=1)).squeeze(1)
        return torch.sigmoid(logits.float()).numpy()

    @torch.no_grad()
    def rank_from_log(
        self, user: int, log: Events, as_of: float, items: np.ndarray, categories: np.ndarray
    ) -> np.ndarray:
        """The same probabilities recomputed from the whole log with the model's own
        ``rank_candidates`` (no state; the reference)."""
        c = items.shape[0]
        batch = make_batch(
            user=torch.tensor([user]),
            item=torch.from_numpy(items[:1]) if c else torch.zeros(1, dtype=torch.int64),
            category=torch.from_numpy(categories[:1]) if c else torch.zeros(1, dtype=torch.int64),
            labels=torch.zeros(1),
            timestamps=torch.zeros(1, dtype=torch.int64),
            history_lengths=torch.tensor([len(log)]),
            history_item=torch.from_numpy(log.item),
            history_category=torch.from_numpy(log.category),
            history_behavior=torch.from_numpy(log.behavior),
            history_age=torch.from_numpy(as_of - log.ts).to(torch.float32),
            history_numeric=torch.from_numpy(log.numeric),
        )
        logits = self.model.rank_candidates(
            batch, torch.from_numpy(items).view(1, c), torch.from_numpy(categories).view(1, c)
        )
        return torch.sigmoid(logits[0].float()).numpy()


def _check_ids(name: str, values: np.ndarray, size: int) -> None:
    if values.size and (values.min() < 0 or values.max() >= size):
        bad = values[(values < 0) | (values >= size)][0]
        raise ValueError(f"{name}: id {int(bad)} is unknown (the model has ids 0..{size - 1})")
