"""Score a split with the sharded model on every rank and compute AUC/GAUC/logloss on rank 0."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any, cast

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.distributed.train_pipeline import EvalPipelineSparseDist

from pipelines.data.batch import Batch
from pipelines.data.loader import SampleLoader
from pipelines.evaluate.metrics import compute_metrics
from pipelines.train.distributed import DistributedContext
from pipelines.train.lookup_plan import LookupPlanner


@torch.no_grad()
def evaluate(
    dmp: DistributedModelParallel,
    loader: SampleLoader,
    ctx: DistributedContext,
    planner: LookupPlanner | None = None,
) -> tuple[dict[str, float], pd.DataFrame | None]:
    """Score a split on every rank, gather to rank 0, compute metrics there, share them.

    Batches go through TorchRec's ``EvalPipelineSparseDist``: a background thread loads the next
    batch and the sharded tables' input dist of batch i + 1 overlaps the forward of batch i.
    The pipeline returns only the model output (``TrainWrapper``'s tuple), so the sample columns
    of each batch (user, candidate item, ts, label, weight: ``[B]`` each) are recorded as the
    pipeline pulls it; batches come back in order, and the user ids of every output are checked
    against the recorded ones. Weight-0 rows (padding that keeps ranks' batch counts equal) are
    dropped on rank 0; the metrics are broadcast, the predictions frame stays on rank 0.
    ``planner``: look up only the history rows the model reads (``pipelines.train.lookup_plan``).
    """
    dmp.eval()
    pulled: deque[dict[str, np.ndarray]] = deque()  # appended by the pipeline's loading thread

    def recorded() -> Iterator[Batch]:
        for batch in loader:
            b = batch.batch_size
            pulled.append(
                {
                    "user": batch.user_ids.numpy().copy(),
                    "item": batch.item_ids[0, :b].numpy().copy(),
                    "ts": batch.timestamps.numpy().copy(),
                    "label": batch.labels.numpy().copy(),
                    "w": batch.weights.numpy().copy(),
                }
            )
            yield batch if planner is None else planner(batch)

    # the eval pipeline never steps an optimizer
    pipeline: EvalPipelineSparseDist = EvalPipelineSparseDist(
        dmp, cast(torch.optim.Optimizer, None), ctx.device
    )
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("user", "item", "ts", "label", "pred", "w")
    }
    batches = recorded()
    try:
        while True:
            try:
                _, logits, _, _, users = pipeline.progress(batches)
            except StopIteration:
                break
            meta = pulled.popleft()
            if not np.array_equal(users.cpu().numpy(), meta["user"]):
                raise RuntimeError("eval pipeline returned batches out of order")
            for key, value in meta.items():
                parts[key].append(value)
            parts["pred"].append(torch.sigmoid(logits.float()).cpu().numpy())
    finally:
        pipeline.reset()  # stops the loading thread
        pipeline.detach()  # restores the sharded modules' forwards for the next train pipeline
    local = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, local)
    result: list[Any] = [None, None]
    if ctx.is_main:
        merged = {k: np.concatenate([g[k] for g in gathered]) for k in local}
        keep = merged["w"] > 0
        frame = pd.DataFrame(
            {
                "user": merged["user"][keep].astype(np.int64),
                "item": merged["item"][keep].astype(np.int64),
                "ts": merged["ts"][keep].astype(np.int64),
                "label": merged["label"][keep].astype(np.float32),
                "prediction": merged["pred"][keep].astype(np.float64),
            }
        )
        metrics = compute_metrics(frame["label"], frame["prediction"], user_ids=frame["user"])
        result = [metrics, frame]
    dist.broadcast_object_list(result, src=0)
    dmp.train()
    return result[0], result[1] if ctx.is_main else None
