"""The repeat-count reference: how often the sample's own history already holds its candidate.

A second no-model row beside the floor (``pipelines.evaluate.floor``). Where a label protocol rewards
buying again (Instacart: a basket's products are the positives, most of them reorders, the
negatives are products from the same aisle not in the basket), "has the user had this exact
item before" alone ranks samples well, and a sequence model is only worth its cost by how far it
gets past that. The prediction for a sample is the smoothed label rate, on the splits before the
scored one, of the samples whose candidate occurred as often (capped at ``max_count``) in the
history the model sees: the events strictly before the sample (``cutoff``), never its future.

With ``--by-behavior`` the cell is the count per behavior type instead: on Spotify (behavior =
the outcome of each earlier play) "played this track before, and how did it go", the reference
the dataset's README names.

Usage::

    python -m pipelines.evaluate.repeat_count --dataset data/instacart [--split test]
    python -m pipelines.evaluate.repeat_count --dataset data/spotify --by-behavior --max-count 10
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from pipelines.console import parse_cli
from pipelines.data.prepared import EventLog, PreparedDataset
from pipelines.evaluate.floor import smoothed_rate, splits_before
from pipelines.evaluate.metrics import compute_metrics


def repeat_counts_reference(
    events: EventLog,
    users: np.ndarray,
    items: np.ndarray,
    cutoffs: np.ndarray,
    behavior: int | None = None,
) -> np.ndarray:
    """``[S]`` occurrences of ``items[s]`` among user ``users[s]``'s first ``cutoffs[s]``
    events (only those of ``behavior`` when given); one slice per sample (the twin of
    :func:`repeat_counts`)."""
    out = []
    for u, i, c in zip(users, items, cutoffs):
        window = events.history_slice(int(u), int(c))
        hit = events.item[window] == i
        if behavior is not None:
            hit &= events.behavior[window] == behavior
        out.append(int(np.count_nonzero(hit)))
    return np.array(out, dtype=np.int64)


def repeat_counts(
    events: EventLog,
    users: np.ndarray,
    items: np.ndarray,
    cutoffs: np.ndarray,
    behavior: int | None = None,
) -> np.ndarray:
    """``[S]`` occurrences of ``items[s]`` among user ``users[s]``'s first ``cutoffs[s]`` events
    (only those of ``behavior`` when given: e.g. past plays of the track that were skipped).

    Vectorized: every event gets the key ``(user, item, position in the user's log)`` packed into
    one int64 and sorted once; a sample's count is the number of keys between ``(u, i, 0)`` and
    ``(u, i, cutoff)``, two binary searches. Falls back to the reference when the packed key
    would not fit in 63 bits.
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    cutoffs = np.asarray(cutoffs, dtype=np.int64)
    lengths = np.diff(events.offsets)
    span = int(lengths.max(initial=0)) + 1  # positions 0..max length (a cutoff may equal it)
    item_span = int(max(events.item.max(initial=0), items.max(initial=0))) + 1
    if (events.num_users + 2) * item_span * span >= 2**63:
        return repeat_counts_reference(events, users, items, cutoffs, behavior)
    event_user = np.repeat(np.arange(lengths.shape[0], dtype=np.int64), lengths)
    position = np.arange(events.item.shape[0], dtype=np.int64) - events.offsets[event_user]
    packed = (event_user * item_span + events.item) * span + position
    if behavior is not None:
        packed = packed[events.behavior == behavior]
    packed = np.sort(packed)
    base = (users * item_span + items) * span
    return np.searchsorted(packed, base + cutoffs) - np.searchsorted(packed, base)


def repeat_count_predictions(
    dataset: PreparedDataset,
    split: str,
    max_count: int = 20,
    alpha: float = 10.0,
    events: EventLog | None = None,
    by_behavior: bool = False,
) -> dict:
    """Fit the label rate per repeat count on every split before ``split``, predict ``split``.

    ``by_behavior``: the cell is the tuple of counts per behavior type (each capped at
    ``max_count``), e.g. how many earlier plays of the track were listened to and how many were
    skipped, rather than the total; ``counts`` is still the total.
    """
    events = events if events is not None else dataset.read_events()
    behaviors = (
        list(range(1, int(dataset.vocab["behaviors"]))) if by_behavior else [None]
    )  # ids 1.. (0 = padding)
    cells = (max_count + 1) ** len(behaviors)

    def counts_and_labels(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        table = dataset.read_samples(name)
        column = {c: table.column(c).to_numpy() for c in ("user", "item", "cutoff", "label")}
        per = [
            repeat_counts(events, column["user"], column["item"], column["cutoff"], b)
            for b in behaviors
        ]
        cell = np.zeros(len(column["user"]), dtype=np.int64)
        for counts in per:
            cell = cell * (max_count + 1) + np.minimum(counts, max_count)
        labels = column["label"].astype(np.float64)
        return cell, labels, column["user"], np.minimum(sum(per), max_count)

    fitted = [counts_and_labels(name) for name in splits_before(split)]
    fit_cells = np.concatenate([c for c, _, _, _ in fitted])
    fit_labels = np.concatenate([y for _, y, _, _ in fitted])
    rate = smoothed_rate(fit_cells, fit_labels, cells, alpha)
    cell, labels, users, counts = counts_and_labels(split)
    predictions = rate[cell]
    metrics = compute_metrics(labels, predictions, user_ids=users)
    return {"predictions": predictions, "labels": labels, "counts": counts, "metrics": metrics}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="prepared dataset directory")
    parser.add_argument("--split", default="test", choices=["valid", "test"])
    parser.add_argument("--max-count", type=int, default=20, help="counts above share a rate")
    parser.add_argument("--alpha", type=float, default=10.0, help="smoothing pseudo-count")
    parser.add_argument(
        "--by-behavior",
        action="store_true",
        help="one cell per tuple of counts by behavior type (e.g. past listens, past skips)",
    )
    args = parse_cli(parser, argv)
    dataset = PreparedDataset.open(args.dataset)
    result = repeat_count_predictions(
        dataset, args.split, args.max_count, args.alpha, by_behavior=args.by_behavior
    )
    seen = float(np.mean(result["counts"] > 0))
    metrics = {k: float(v) for k, v in result["metrics"].items()}
    print(json.dumps({"model": "repeat_count", "split": args.split, "seen_share": seen, **metrics}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
