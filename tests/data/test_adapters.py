"""Named adapters on the real data in ../shared/data (skipped without it).

* counts: every prepared dataset matches the statistics its shared-data README documents;
* leakage: a sample's history (CSR slice, loader gather with ``max_len``, built Batch) is exactly
  the user's events strictly before the sample's ts, checked against a naive pandas filter;
* order: events.parquet is the input file stably sorted by (user, ts);
* generic path: ``--events/--items/--map/--label`` on the raw MovieLens-100k files reproduces the
  ``movielens-100k`` adapter.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.data.loader import build_batch, gather_histories
from pipelines.data.prepare import main
from pipelines.data.prepared import SPLITS, EventLog, PreparedDataset

NAMES = (
    "movielens-100k",
    "movielens-1m-u2999",
    "instacart-u593",
    "taobao-tail10k",
    "taobao-slice",
    "spotify-streaming-u13",
)

# Documented statistics, copied from the READMEs in ../shared/data (a fact check of the adapters).
DOCUMENTED: dict[str, dict[str, float]] = {
    # movielens-100k/README.md, "Stats (measured): 943 users, 1,682 items, 100,000 ratings;
    # events/user mean 106, median 65, p90 244, max 737"
    "movielens-100k": dict(events=100_000, users=943, items=1_682, mean=106, median=65, max=737),
    # movielens-1m-u2999/README.md, "Stats (measured): 2,999 users, 3,615 rated movies, 487,650
    # ratings; events/user mean 163, median 89, p90 403, max 1,850"; "(3,883 movies, 18 genres)"
    "movielens-1m-u2999": dict(
        events=487_650, users=2_999, items=3_615, mean=163, median=89, max=1_850, catalogue=3_883
    ),
    # instacart-u593/README.md, "Stats (measured): 593 users, 14,190 products, 150,000 purchases";
    # "events/user mean 253, median 176, p90 553, max 1,571"; data/README.md table row
    # instacart-u593: "aisle (134), department (21)"
    "instacart-u593": dict(
        events=150_000, users=593, items=14_190, categories=134, mean=253, median=176, max=1_571
    ),
    # taobao-userbehavior/README.md, tail10k "Stats (measured): 10,000 events, 114 users, 7,623
    # items, 1,096 categories"; "events/user mean 88, median 62, max 404"
    "taobao-tail10k": dict(
        events=10_000, users=114, items=7_623, categories=1_096, mean=88, median=62, max=404
    ),
    # taobao-userbehavior/README.md, slice "Stats (measured): 110,300 events, 66,454 users, 84,793
    # items, 3,913 categories"; "events/user mean 1.7, max 20"
    "taobao-slice": dict(events=110_300, users=66_454, items=84_793, categories=3_913, max=20),
    # spotify-streaming-u13/README.md: "13 / 381,684" users / events; "events per user: mean /
    # median / min / max 29,360 / 23,370 / 11,966 / 62,492"; "distinct (artist, track) items /
    # artists 47,084 / 13,272"
    "spotify-streaming-u13": dict(
        events=381_684,
        users=13,
        items=47_084,
        categories=13_272,
        mean=29_360,
        median=23_370,
        max=62_492,
    ),
}
# spotify-streaming-u13/README.md: "plays with msPlayed < 30,000 ("skip") 33.8%"
LABEL_ZERO_SHARE = {"spotify-streaming-u13": 0.338}
# taobao-userbehavior/README.md: "pv 9,046 / cart 536 / fav 212 / buy 206" (tail10k) and
# "pv 98,361 / cart 6,063 / fav 3,383 / buy 2,493" (slice)
BEHAVIOR_COUNTS = {
    "taobao-tail10k": {"pv": 9_046, "cart": 536, "fav": 212, "buy": 206},
    "taobao-slice": {"pv": 98_361, "cart": 6_063, "fav": 3_383, "buy": 2_493},
}
# time spans (UTC) from the READMEs: movielens-100k "Time span 1997-09 .. 1998-04";
# tail10k "2017-11-24 .. 2017-12-03"; slice "2017-11-26 01:00:00 .. 03:10:11 UTC"
TIME_SPANS = {
    "movielens-100k": ("1997-09", "1998-04", "%Y-%m"),
    "taobao-tail10k": ("2017-11-24", "2017-12-03", "%Y-%m-%d"),
    "taobao-slice": ("2017-11-26 01:00:00", "2017-11-26 03:10:11", "%Y-%m-%d %H:%M:%S"),
}
# share of events whose (user, ts) repeats an earlier event of the user: movielens-100k README
# "~50% of a user's events share a timestamp", movielens-1m-u2999 README "~53% of events share"
TIE_SHARE = {"movielens-100k": 0.50, "movielens-1m-u2999": 0.53}

SAMPLES_PER_SPLIT = 200
MAX_LEN = 50


@pytest.fixture(scope="module")
def prepared(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``prepared(name)`` runs the prepare CLI once per adapter and returns the directory."""
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            out = tmp_path_factory.mktemp(name) / "prepared"
            argv = ["--dataset", name, "--data-root", str(shared_data), "--out", str(out)]
            assert main(argv) == 0
            cache[name] = out
        return cache[name]

    return get


@pytest.mark.parametrize("name", NAMES)
def test_counts_match_the_documented_statistics(name: str, prepared: Callable[[str], Path]) -> None:
    root = prepared(name)
    doc = DOCUMENTED[name]
    manifest = json.loads((root / "manifest.json").read_text())
    events = pd.read_parquet(root / "events.parquet")
    items = pd.read_parquet(root / "items.parquet")
    lengths = events.groupby("user").size()
    # recounted from the parquet files, and as the manifest states them
    assert len(events) == manifest["counts"]["events"] == doc["events"]
    assert events["user"].nunique() == manifest["counts"]["users"] == doc["users"]
    assert events["item"].nunique() == manifest["counts"]["items"] == doc["items"]
    assert len(pd.read_parquet(root / "users.parquet")) == doc["users"]
    assert int(lengths.max()) == manifest["counts"]["history_max"] == doc["max"]
    if "categories" in doc:
        assert events["category"].nunique() == manifest["counts"]["categories"]
        assert manifest["counts"]["categories"] == doc["categories"]
    if "mean" in doc:  # the READMEs round to integers
        assert round(float(lengths.mean())) == doc["mean"]
    if "median" in doc:  # 114 users: the README's 62 is the lower of the two middle values
        assert abs(float(lengths.median()) - doc["median"]) <= 0.5
    if "catalogue" in doc:
        assert len(items) == doc["catalogue"]
        genres = set(" ".join(items["genres"]).split())
        assert len(genres) == 18
    if name == "instacart-u593":
        assert items["department"].nunique() == 21
    if name in BEHAVIOR_COUNTS:
        names = manifest["behaviors"]
        counts = events["behavior"].value_counts()
        assert {names[b - 1]: int(n) for b, n in counts.items()} == BEHAVIOR_COUNTS[name]
    if name in TIME_SPANS:
        first, last, fmt = TIME_SPANS[name]
        ts = pd.to_datetime(events["ts"], unit="s", utc=True)
        assert (ts.min().strftime(fmt), ts.max().strftime(fmt)) == (first, last)
    if name in LABEL_ZERO_SHARE:
        labels = pd.concat([pd.read_parquet(root / "samples" / f"{s}.parquet") for s in SPLITS])
        assert abs(float((labels["label"] == 0).mean()) - LABEL_ZERO_SHARE[name]) < 0.0005
    if name in TIE_SHARE:
        assert abs(events.duplicated(["user", "ts"]).mean() - TIE_SHARE[name]) < 0.01
    # every event kept, ids dense and 1-based
    assert events["item"].between(1, manifest["vocab"]["items"] - 1).all()
    assert events["user"].between(1, manifest["vocab"]["users"] - 1).all()
    assert sum(manifest["splits"][s]["rows"] for s in SPLITS) == manifest["counts"]["samples"]


def _naive_history(events: pd.DataFrame, user: int, ts: int) -> pd.DataFrame:
    """The user's events strictly before ``ts``, by (ts, original order): no CSR, no cutoff."""
    past = events[(events["user"] == user) & (events["ts"] < ts)]
    return past.sort_values(["ts", "order"], kind="stable")


@pytest.mark.parametrize("name", NAMES)
def test_history_is_exactly_the_past(name: str, prepared: Callable[[str], Path]) -> None:
    root = prepared(name)
    dataset = PreparedDataset.open(root)
    log: EventLog = dataset.read_events()
    events = pd.read_parquet(root / "events.parquet")
    events["order"] = np.arange(len(events))  # stored order = (user, ts, original order)
    numeric = [f"num_{f}" for f in dataset.numeric_fields]
    rng = np.random.default_rng(0)
    checked_truncation = False
    for split in SPLITS:
        samples = dataset.read_samples(split).to_pandas()
        user, ts, cutoff = (samples[c].to_numpy() for c in ("user", "ts", "cutoff"))
        # all samples: the last history event is before ts and the next event is not
        start = log.offsets[user]
        has = cutoff > 0
        assert (log.ts[(start + cutoff - 1)[has]] < ts[has]).all()
        nxt = start + cutoff
        inside = nxt < log.offsets[user + 1]
        assert (log.ts[nxt[inside]] >= ts[inside]).all()

        pick = rng.choice(len(samples), min(SAMPLES_PER_SPLIT, len(samples)), replace=False)
        part = samples.iloc[np.sort(pick)].reset_index(drop=True)
        # writable copies: torch.from_numpy warns on pandas' read-only arrays
        names = ("user", "item", "category", "ts", "label", "cutoff")
        columns = {c: np.array(part[c].to_numpy()) for c in names}
        rows, lengths = gather_histories(log, columns["user"], columns["cutoff"], MAX_LEN)
        batch = build_batch(log, columns, MAX_LEN, np.ones(len(part), dtype=np.float32))
        b = batch.batch_size
        batch_items = batch.items.values()[b : b + int(batch.history_lengths.sum())].numpy()
        assert batch.history_lengths.tolist() == lengths.tolist()
        ends = np.cumsum(lengths)
        for i, sample in enumerate(part.itertuples()):
            naive = _naive_history(events, sample.user, sample.ts)
            assert sample.cutoff == len(naive)
            full = log.history_slice(sample.user, sample.cutoff)  # the CSR slice, untruncated
            np.testing.assert_array_equal(log.item[full], naive["item"].to_numpy())
            np.testing.assert_array_equal(log.ts[full], naive["ts"].to_numpy())
            recent = naive.tail(MAX_LEN)
            got = rows[ends[i] - lengths[i] : ends[i]]
            checked_truncation |= len(naive) > MAX_LEN
            assert (log.ts[got] < sample.ts).all()
            for column in ("item", "category", "ts", "behavior"):
                np.testing.assert_array_equal(
                    getattr(log, column)[got], recent[column].to_numpy(), err_msg=column
                )
            if numeric:
                np.testing.assert_array_equal(log.numeric[got], recent[numeric].to_numpy())
            np.testing.assert_array_equal(
                batch_items[ends[i] - lengths[i] : ends[i]], recent["item"].to_numpy()
            )
        age = batch.history_age.numpy()
        assert (age > 0).all()  # no history event at or after its sample's ts
    if name != "taobao-slice":  # the slice's histories are at most 20 long
        assert checked_truncation


def _raw_movielens_100k(root: Path) -> pd.DataFrame:
    raw = pd.read_csv(root / "movielens-100k" / "ml-100k.inter", sep="\t", dtype=str)
    raw.columns = ["user", "item", "rating", "ts"]
    return raw.assign(behavior=raw["rating"].astype(float).astype(int))


def _raw_taobao_tail10k(root: Path) -> pd.DataFrame:
    path = root / "taobao-userbehavior" / "UserBehavior_tail10k_u114.csv"
    raw = pd.read_csv(path, names=["user", "item", "category", "name", "ts"], dtype=str)
    return raw.assign(behavior=raw["name"].map({"pv": 1, "cart": 2, "fav": 3, "buy": 4}))


@pytest.mark.parametrize(
    ("name", "read_raw"),
    [("movielens-100k", _raw_movielens_100k), ("taobao-tail10k", _raw_taobao_tail10k)],
)
def test_events_are_the_input_stably_sorted(
    name: str,
    read_raw: Callable[[Path], pd.DataFrame],
    prepared: Callable[[str], Path],
    shared_data: Path,
) -> None:
    root = prepared(name)
    raw = read_raw(shared_data)
    user_index = pd.read_parquet(root / "users.parquet").set_index("user_raw")["user"]
    item_index = pd.read_parquet(root / "items.parquet").set_index("item_raw")["item"]
    expected = pd.DataFrame(
        {
            "user": user_index.loc[raw["user"]].to_numpy(),
            "item": item_index.loc[raw["item"]].to_numpy(),
            "ts": raw["ts"].astype(np.int64).to_numpy(),
            "behavior": raw["behavior"].astype(np.int64).to_numpy(),
        }
    )
    expected = expected.sort_values(["user", "ts"], kind="stable").reset_index(drop=True)
    events = pd.read_parquet(root / "events.parquet")
    pd.testing.assert_frame_equal(events[list(expected.columns)], expected)


def _read(root: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(root / name)


def test_generic_path_reproduces_the_movielens_100k_adapter(
    prepared: Callable[[str], Path], shared_data: Path, tmp_path: Path
) -> None:
    """The raw RecBole files through --events/--map: same events, items and samples.

    The one intended difference: the adapter's category is the first genre, the generic path's
    is the whole ``class`` column (it maps columns, it does not split them).
    """
    folder = shared_data / "movielens-100k"
    out = tmp_path / "generic"
    argv = [
        "--events", str(folder / "ml-100k.inter"),
        "--items", str(folder / "ml-100k.item"),
        "--sep", "\t",
        "--map", "user=user_id:token,item=item_id:token,ts=timestamp:float,"
        "behavior=rating:float,category=class:token_seq",
        "--label", "rating:float>=4",
        "--numeric", "rating:float",
        "--item-text", "movie_title:token_seq,class:token_seq,release_year:token",
        "--out", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    named = prepared("movielens-100k")
    pd.testing.assert_frame_equal(_read(out, "users.parquet"), _read(named, "users.parquet"))
    g_items, n_items = _read(out, "items.parquet"), _read(named, "items.parquet")
    renamed = {"movie_title:token_seq": "title", "class:token_seq": "genres"}
    renamed["release_year:token"] = "year"
    compare = ["item", "item_raw", "title", "genres", "year"]
    pd.testing.assert_frame_equal(g_items.rename(columns=renamed)[compare], n_items[compare])
    first_genre = g_items["category_raw"].str.split(" ").str[0].replace("", "unknown")
    assert (first_genre == n_items["category_raw"]).all()
    # category index -> first genre is a function, so both agree on every event and sample
    to_named = dict(zip(g_items["category"], n_items["category"]))
    assert len(set(zip(g_items["category"], n_items["category"]))) == len(to_named)

    g_events, n_events = _read(out, "events.parquet"), _read(named, "events.parquet")
    g_events = g_events.rename(columns={"num_rating:float": "num_rating"})
    same = ["user", "item", "ts", "behavior", "num_rating"]
    pd.testing.assert_frame_equal(g_events[same], n_events[same])
    assert (g_events["category"].map(to_named) == n_events["category"]).all()
    for split in SPLITS:
        g, n = _read(out, f"samples/{split}.parquet"), _read(named, f"samples/{split}.parquet")
        same = ["user", "item", "ts", "label", "cutoff"]
        pd.testing.assert_frame_equal(g[same], n[same])
        assert (g["category"].map(to_named) == n["category"]).all()
    g_manifest = json.loads((out / "manifest.json").read_text())
    n_manifest = json.loads((named / "manifest.json").read_text())
    assert g_manifest["behaviors"] == n_manifest["behaviors"]
    assert g_manifest["splits"] == n_manifest["splits"]
