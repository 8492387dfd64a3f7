"""Seeded synthetic lifelong behavior logs in the prepared-dataset format.

No public log here is long enough for the cost axis of the benchmarks (L up to 50k), so this
generator makes one with the properties that matter to lifelong models:

* history lengths per user are heavy-tailed (log-normal with the configured mean, capped);
* items belong to latent interest groups (categories nested inside groups) and are drawn with a
  Zipf law inside a group, so users revisit items;
* each user has an *early* and a *late* interest profile (a few favourite groups each) and drifts
  from one to the other over the timeline;
* behavior types have different frequencies; dwell (the numeric field) is longer on groups the
  user currently likes;
* labels depend on **long-range** history: half of the candidates come from the user's early
  profile, and a candidate is positive with a probability that grows with how often its group
  appears in the *whole* history before the sample. The last 50 events mostly reflect the late
  profile, so a model that reads the whole history beats one that reads the last 50.

Everything is vectorized numpy: 200 users x mean 10k events generate in seconds.

Usage::

    python -m pipelines.prepare --synthetic --users 200 --mean-length 1000 --out data/syn
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.data.build import SPLIT_RULE, split_per_user
from pipelines.data.prepared import MANIFEST_VERSION, write_atomically, write_json

BEHAVIOR_NAMES = ("view", "click", "cart", "buy", "fav", "share", "review", "return")


@dataclass
class SyntheticConfig:
    """Size and shape of a synthetic log.

    Attributes:
        users: number of users.
        mean_length: mean events per user (log-normal, sigma 0.8).
        max_length: cap on events per user.
        min_length: floor on events per user.
        items: catalogue size.
        groups: latent interest groups (K-means-like clusters of the catalogue).
        categories: categories (nested in groups; >= groups).
        behaviors: behavior types (<= 8).
        favourites: favourite groups per profile.
        samples_per_user: (candidate, ts) samples per user.
        seed: everything is a function of this seed.
    """

    users: int = 200
    mean_length: int = 1000
    max_length: int = 5000
    min_length: int = 20
    items: int = 20000
    groups: int = 64
    categories: int = 256
    behaviors: int = 4
    favourites: int = 4
    samples_per_user: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.categories < self.groups:
            raise ValueError("categories must be >= groups (categories nest inside groups)")
        if not 1 <= self.behaviors <= len(BEHAVIOR_NAMES):
            raise ValueError(f"behaviors must be in [1, {len(BEHAVIOR_NAMES)}]")
        if self.items < self.groups:
            raise ValueError("items must be >= groups")
        if min(self.users, self.min_length, self.samples_per_user) < 1:
            raise ValueError("users, min_length and samples_per_user must be >= 1")
        if self.max_length < self.min_length:
            raise ValueError("max_length must be >= min_length")


@dataclass
class SyntheticData:
    events: pd.DataFrame  # user, item, category, ts, behavior, num_dwell (sorted by user, ts)
    items: pd.DataFrame  # item, item_raw, category, category_raw, latent_group
    samples: pd.DataFrame  # user, item, category, ts, label, cutoff, split


def generate_synthetic(config: SyntheticConfig) -> SyntheticData:
    """Build the synthetic log in memory (see module docstring for its properties)."""
    cfg = config
    rng = np.random.default_rng(cfg.seed)
    # --- catalogue: items -> latent group -> category nested in the group
    item_group = rng.integers(0, cfg.groups, cfg.items)
    cats_per_group = cfg.categories // cfg.groups
    item_category = item_group * cats_per_group + rng.integers(0, cats_per_group, cfg.items)
    order = np.argsort(item_group, kind="stable")  # items of each group contiguous
    group_start = np.searchsorted(item_group[order], np.arange(cfg.groups + 1))
    group_size = np.diff(group_start)

    # --- users: lengths, two profiles of favourite groups, drift from early to late
    sigma = 0.8
    mu = np.log(cfg.mean_length) - sigma**2 / 2
    lengths = np.clip(
        rng.lognormal(mu, sigma, cfg.users).astype(np.int64), cfg.min_length, cfg.max_length
    )
    early = rng.integers(0, cfg.groups, (cfg.users, cfg.favourites))
    late = rng.integers(0, cfg.groups, (cfg.users, cfg.favourites))
    user = np.repeat(np.arange(cfg.users), lengths)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    position = np.arange(user.shape[0]) - offsets[user]
    progress = position / lengths[user]
    use_late = rng.random(user.shape[0]) < progress
    fav_slot = np.minimum(rng.geometric(0.5, user.shape[0]) - 1, cfg.favourites - 1)
    fav_group = np.where(use_late, late[user, fav_slot], early[user, fav_slot])
    explore = rng.random(user.shape[0]) < 0.15
    group = np.where(explore, rng.integers(0, cfg.groups, user.shape[0]), fav_group)
    # Zipf rank inside the group -> repeated items
    rank = np.minimum(rng.zipf(1.6, user.shape[0]) - 1, group_size[group] - 1)
    item = order[group_start[group] + rank]

    gaps = rng.exponential(3600.0, user.shape[0]).astype(np.int64) + 1
    start = rng.integers(1_500_000_000, 1_600_000_000, cfg.users)
    cum = np.cumsum(gaps)
    ts = cum - np.repeat(cum[offsets[:-1]] - gaps[offsets[:-1]], lengths) + start[user]
    behavior_p = np.array([0.75, 0.13, 0.07, 0.05, 0.03, 0.02, 0.01, 0.01])[: cfg.behaviors]
    behavior = rng.choice(cfg.behaviors, user.shape[0], p=behavior_p / behavior_p.sum()) + 1
    liked = ~explore
    dwell = rng.lognormal(2.5 + 0.8 * liked + 0.3 * (behavior - 1), 0.5).astype(np.float32)

    events = pd.DataFrame(
        {
            "user": user + 1,
            "item": item + 1,
            "category": item_category[item] + 1,
            "ts": ts.astype(np.int64),
            "behavior": behavior.astype(np.int64),
            "num_dwell": dwell,
        }
    )
    samples = _samples(
        cfg,
        rng,
        events,
        group,
        offsets,
        lengths,
        early,
        order,
        group_start,
        group_size,
        item_category,
    )
    items = pd.DataFrame(
        {
            "item": np.arange(1, cfg.items + 1, dtype=np.int64),
            "item_raw": [f"i{i}" for i in range(cfg.items)],
            "category": (item_category + 1).astype(np.int64),
            "category_raw": [f"c{c}" for c in item_category],
            "latent_group": (item_group + 1).astype(np.int64),
        }
    )
    return SyntheticData(events=events, items=items, samples=samples)


def _samples(
    cfg, rng, events, group, offsets, lengths, early, order, group_start, group_size, item_category
):
    """Candidates at late positions; labels from group frequency in the whole past history."""
    s = cfg.samples_per_user
    users = np.repeat(np.arange(cfg.users), s)
    # cutoff = sample position p: the sample happens 1 s after event p-1 (events before: p)
    frac = rng.uniform(0.5, 1.0, users.shape[0])
    cutoff = np.maximum((frac * lengths[users]).astype(np.int64), 1)
    cand_group = np.where(
        rng.random(users.shape[0]) < 0.5,
        early[users, rng.integers(0, cfg.favourites, users.shape[0])],
        rng.integers(0, cfg.groups, users.shape[0]),
    )
    # count of the candidate's group among the user's first `cutoff` events (vectorized)
    span = int(lengths.max()) + 1
    position = np.arange(group.shape[0]) - offsets[events["user"].to_numpy() - 1]
    key = (events["user"].to_numpy() - 1) * cfg.groups + group
    combined = np.sort(key.astype(np.int64) * span + position)
    query = (users * cfg.groups + cand_group).astype(np.int64) * span
    count = np.searchsorted(combined, query + cutoff) - np.searchsorted(combined, query)
    share = count / cutoff
    logit = 2.5 * (np.log1p(200 * share) - np.log1p(200 * 0.02))
    label = (rng.random(users.shape[0]) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    rank = rng.integers(0, 5, users.shape[0])
    cand_item = order[group_start[cand_group] + np.minimum(rank, group_size[cand_group] - 1)]
    ts_prev = events["ts"].to_numpy()[offsets[users] + cutoff - 1]
    frame = pd.DataFrame(
        {
            "user": users + 1,
            "item": cand_item + 1,
            "category": item_category[cand_item] + 1,
            "ts": ts_prev + 1,
            "label": label,
            "cutoff": cutoff,
        }
    )
    frame = frame.sort_values(["user", "ts"], kind="stable").reset_index(drop=True)
    frame["split"] = split_per_user(frame["user"].to_numpy(), frame["ts"].to_numpy())
    return frame


def write_synthetic_dataset(out_dir: str | os.PathLike[str], config: SyntheticConfig) -> Path:
    """Generate and write a prepared directory atomically; returns its path."""
    data = generate_synthetic(config)

    def write(tmp: Path) -> None:
        pq.write_table(
            pa.Table.from_pandas(data.events, preserve_index=False), tmp / "events.parquet"
        )
        pq.write_table(
            pa.Table.from_pandas(data.items, preserve_index=False), tmp / "items.parquet"
        )
        users = pd.DataFrame(
            {
                "user": np.arange(1, config.users + 1),
                "user_raw": [f"u{u}" for u in range(config.users)],
            }
        )
        pq.write_table(pa.Table.from_pandas(users, preserve_index=False), tmp / "users.parquet")
        (tmp / "samples").mkdir()
        splits = {}
        for split in ("train", "valid", "test"):
            part = data.samples[data.samples["split"] == split].drop(columns="split")
            pq.write_table(
                pa.Table.from_pandas(part, preserve_index=False),
                tmp / "samples" / f"{split}.parquet",
                row_group_size=65536,
            )
            splits[split] = {
                "rows": len(part),
                "ts_min": int(part["ts"].min()) if len(part) else None,
                "ts_max": int(part["ts"].max()) if len(part) else None,
                "positive_rate": float(part["label"].mean()) if len(part) else None,
            }
        lengths = data.events.groupby("user").size()
        write_json(
            tmp / "manifest.json",
            {
                "version": MANIFEST_VERSION,
                "dataset": "synthetic",
                "source": {"generator": "pipelines.data.synthetic", **asdict(config)},
                "label_rule": "P(label=1) rises with the share of the candidate's latent group in "
                "the whole history before the sample (long-range signal)",
                "split_rule": SPLIT_RULE,
                "numeric_fields": ["dwell"],
                "text_fields": [],
                "item_side_fields": ["latent_group"],
                "behaviors": list(BEHAVIOR_NAMES[: config.behaviors]),
                "vocab": {
                    "users": config.users + 1,
                    "items": config.items + 1,
                    "categories": config.categories + 1,
                    "behaviors": config.behaviors + 1,
                },
                "counts": {
                    "events": len(data.events),
                    "users": config.users,
                    "items": int(data.events["item"].nunique()),
                    "history_mean": float(lengths.mean()),
                    "history_max": int(lengths.max()),
                },
                "splits": splits,
            },
        )

    return write_atomically(out_dir, write)
