"""One measurement of ``benchmarks.cost``: one model at one history length, in its own process.

``python -m benchmarks.cost_worker MODEL LENGTH [--batch B] [--users U] [--candidates C]
[--repeats R]`` prints one JSON object on its last stdout line:

* train step: the whole CTR model (``components.model.LifelongCTRModel`` with the model's
  ml-1m recipe) exactly as ``pipelines.train`` runs it: sharded by DistributedModelParallel
  (a 1-rank gloo group on CPU, nccl on CUDA) with the recipe's fused sparse optimizer applied
  in backward and its dense optimizer stepped after; the lookup plan (``train.lookup_plan``:
  the history rows the encoder reads, found from ids, counted in the step), EBC lookups,
  encoder, over-arch, BCE (+ auxiliary) loss, backward, optimizer; median ms of R steps after
  a warm-up; samples/s; the same step with every history row looked up (``lookup_plan=false``)
  and the fraction of the N history rows the plan looks up;
* inference per user with C candidates, at the encoder (embeddings looked up beforehand, eval
  mode, no grad): every model scores C copies of (candidate, user history), which is what a
  model without a user cache must do; DMGIN also scores them from its cached user state
  (``encode_user`` once + ``score_candidates``), checked equal to the full forward;
* serving per user with C candidates, the whole model (``LifelongCTRModel.rank_candidates`` on
  an unsharded copy, eval mode): the history looked up once, the encoder's
  ``forward_candidates`` (DMGIN: its cached user state; the others: C copies of the history),
  the over-arch;
* memory: RSS after the inputs exist, peak RSS (``VmHWM``) after training and at the end;
  the process is fresh, so the peak is this model's; and, exactly, the bytes the encoder's
  forward keeps for backward (storages of saved tensors, the inputs' own excluded): the
  activation memory of the sequence model itself, apart from the L looked-up embeddings every
  model holds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.common import peak_rss_mib, time_runs
from benchmarks.synthetic_inputs import (
    SyntheticSizes,
    candidate_grid,
    content_table,
    ctr_batch,
    encoder_inputs,
    recipe_config,
    repeat_per_candidate,
)
from components.model import LifelongCTRModel
from pipelines.console import parse_cli
from pipelines.train.config import ExperimentConfig
from pipelines.train.distributed import init_distributed, shutdown
from pipelines.train.lookup_plan import LookupPlanner
from pipelines.train.model_setup import shard_model


def current_rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return round(pages * resource.getpagesize() / 2**20, 1)


def on_device(inputs: Any, device: torch.device) -> Any:
    """A copy of an encoder input dataclass (Query, History, ...) with its tensors on ``device``."""
    moved = {
        f.name: value.to(device) if isinstance(value, torch.Tensor) else value
        for f in dataclasses.fields(inputs)
        for value in [getattr(inputs, f.name)]
    }
    return dataclasses.replace(inputs, **moved)


def timed(step: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """(median ms over ``repeats`` after one warm-up, last result)."""
    median, _, result = time_runs(step, repeats)
    return round(median, 3), result


def measure_train(
    model: LifelongCTRModel,
    config: ExperimentConfig,
    batch_size: int,
    length: int,
    repeats: int,
    sizes: SyntheticSizes,
) -> dict[str, Any]:
    ctx = init_distributed(config.train.device)
    planner = LookupPlanner(model)  # as pipelines.train: the unsharded head, before sharding
    dmp, optimizer, _ = shard_model(model, config, ctx)
    host_batch = ctr_batch(batch_size, length, sizes, seed=length)
    batch = host_batch.to(ctx.device)
    rss_inputs = current_rss_mib()
    dmp.train()

    def step(plan: bool) -> float:
        optimizer.zero_grad(set_to_none=True)
        loss, _ = dmp(planner(host_batch).to(ctx.device) if plan else batch)
        loss.backward()
        optimizer.step()
        return float(loss)

    full_ms, _ = timed(lambda: step(False), repeats)
    ms, loss = timed(lambda: step(True), repeats)
    rows = planner.model.history_rows(host_batch)
    n = int(host_batch.history_lengths.sum())
    looked_up = n if rows is None else int(rows.unique().numel())
    return {
        "train_step_ms": ms,
        "samples_per_s": round(batch_size / (ms / 1e3), 1),
        "train_step_full_lookup_ms": full_ms,
        "history_rows_looked_up": round(looked_up / max(n, 1), 4),
        "loss": loss,
        "rss_inputs_mib": rss_inputs,
        "train_peak_rss_mib": peak_rss_mib(),
        "train_peak_over_inputs_mib": round(peak_rss_mib() - rss_inputs, 1),
        "sparse_optimizer": config.optim.sparse,
        "dense_optimizer": config.optim.dense,
    }


def measure_encoder_activations(
    model: LifelongCTRModel, batch_size: int, length: int, sizes: SyntheticSizes
) -> dict[str, Any]:
    """MiB of the storages the encoder's training forward saves for backward, inputs excluded."""
    encoder = model.head.encoder.train()
    query, history = encoder_inputs(model.head.spec, batch_size, length, sizes, seed=length + 2)
    inputs = {
        value.untyped_storage().data_ptr()
        for part in (query, history)
        for f in dataclasses.fields(part)
        for value in [getattr(part, f.name)]
        if isinstance(value, torch.Tensor)
    }
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in inputs:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        encoder(query, history)
    return {"encoder_saved_mib": round(sum(saved.values()) / 2**20, 2)}


@torch.no_grad()
def measure_inference(
    model: LifelongCTRModel,
    users: int,
    length: int,
    candidates: int,
    repeats: int,
    sizes: SyntheticSizes,
) -> dict[str, Any]:
    encoder = model.head.encoder.eval()
    device = next(model.head.parameters()).device
    query, history = encoder_inputs(model.head.spec, users, length, sizes, seed=length + 1)
    flat_query, repeated = repeat_per_candidate(query, history, candidates, sizes)
    grid = on_device(candidate_grid(query, candidates, sizes), device)  # [U, C] candidates
    query, history, flat_query, repeated = (
        on_device(x, device) for x in (query, history, flat_query, repeated)
    )
    full_ms, full = timed(lambda: encoder(flat_query, repeated), repeats)
    out: dict[str, Any] = {
        "inference_users": users,
        "candidates": candidates,
        "inference_ms_per_user": round(full_ms / users, 3),
        "inference_ms_per_candidate": round(full_ms / users / candidates, 4),
    }
    if hasattr(encoder, "encode_user"):

        def cached() -> torch.Tensor:
            return encoder.score_candidates(encoder.encode_user(history), grid)

        cached_ms, scores = timed(cached, repeats)
        encode_ms, state = timed(lambda: encoder.encode_user(history), repeats)
        score_ms, _ = timed(lambda: encoder.score_candidates(state, grid), repeats)
        difference = (scores.reshape(full.shape) - full).abs().max()
        out.update(
            cached_inference_ms_per_user=round(cached_ms / users, 3),
            cached_inference_ms_per_candidate=round(cached_ms / users / candidates, 4),
            cached_encode_user_ms_per_user=round(encode_ms / users, 3),
            cached_score_ms_per_user=round(score_ms / users, 3),
            cached_over_full_per_candidate=round(cached_ms / full_ms, 4),
            cached_max_abs_difference=float(difference),
        )
    return out


@torch.no_grad()
def measure_serving(
    model: LifelongCTRModel,
    users: int,
    length: int,
    candidates: int,
    repeats: int,
    sizes: SyntheticSizes,
) -> dict[str, Any]:
    """The whole model ranking C candidates per user (``rank_candidates``, unsharded, eval):
    one lookup of the history, the encoder's ``forward_candidates``, the over-arch."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device).eval()
    batch = ctr_batch(users, length, sizes, seed=length + 3).to(device)
    generator = torch.Generator().manual_seed(3)
    items = torch.randint(1, sizes.items, (users, candidates), generator=generator)
    categories = 1 + items % (sizes.categories - 1)
    items, categories = items.to(device), categories.to(device)
    ms, _ = timed(lambda: model.rank_candidates(batch, items, categories), repeats)
    return {"serving_ms_per_user": round(ms / users, 3)}


def measure(
    model_name: str, length: int, batch: int, users: int, candidates: int, repeats: int
) -> dict[str, Any]:
    """Every figure of one (model, L) row."""
    torch.manual_seed(0)
    sizes = SyntheticSizes()
    config = recipe_config(model_name)
    content = content_table(sizes) if config.model.encoder == "CiUBM" else None
    model = LifelongCTRModel(config.model, sizes.vocab, content_embeddings=content)
    row: dict[str, Any] = {"model": model_name, "length": length, "batch": batch}
    row.update(measure_encoder_activations(model, batch, length, sizes))
    row.update(measure_train(model, config, batch, length, repeats, sizes))
    row.update(measure_inference(model, users, length, candidates, repeats, sizes))
    torch.manual_seed(0)  # a plain (unsharded) copy of the model for serving
    plain = LifelongCTRModel(config.model, sizes.vocab, content_embeddings=content)
    row.update(measure_serving(plain, users, length, candidates, repeats, sizes))
    row["peak_rss_mib"] = peak_rss_mib()
    row["torch_threads"] = torch.get_num_threads()
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("length", type=int)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--users", type=int, default=1)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parse_cli(parser, argv)
    try:
        row = measure(
            args.model, args.length, args.batch, args.users, args.candidates, args.repeats
        )
    finally:
        shutdown()
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
