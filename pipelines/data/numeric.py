"""Fit the scaling of a prepared dataset's numeric event fields on what training sees.

The statistics come from the events that some training sample's history contains: for each
user, the events before the largest ``cutoff`` among the user's train samples (valid and test
events never enter). :class:`components.layers.numeric.NumericScaler` applies them inside the
model, so they are saved with every checkpoint and export.
"""

from __future__ import annotations

import numpy as np
import torch

from components.layers.numeric import fit_numeric_scaling
from pipelines.data.prepared import EventLog, PreparedDataset


def training_event_mask(dataset: PreparedDataset, events: EventLog) -> np.ndarray:
    """``[E]`` bool: the events inside at least one train sample's history."""
    samples = dataset.read_samples("train")
    user = samples.column("user").to_numpy().astype(np.int64)
    cutoff = samples.column("cutoff").to_numpy().astype(np.int64)
    longest = np.zeros(events.offsets.shape[0] - 1, dtype=np.int64)
    np.maximum.at(longest, user, cutoff)
    position = np.arange(events.item.shape[0], dtype=np.int64)
    owner = np.repeat(np.arange(longest.shape[0]), np.diff(events.offsets))
    return position - events.offsets[owner] < longest[owner]


def numeric_scaling(dataset: PreparedDataset) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(center [F], scale [F])`` fit on the training events, None without numeric fields."""
    if not dataset.numeric_fields:
        return None
    events = dataset.read_events()
    values = events.numeric[training_event_mask(dataset, events)]
    return fit_numeric_scaling(torch.from_numpy(np.ascontiguousarray(values)))
