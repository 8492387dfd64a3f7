"""Spotify streaming histories of 13 listeners (``spotify-streaming-u13``): skip prediction.

Every play is an event *and* a sample: label 1 when ``msPlayed >= 30000`` (listened), 0 when
skipped, as the dataset's README proposes. Item = (artistName, trackName); category = the artist;
item text ``"trackName - artistName"`` (fields ``track``, ``artist``, ``text``). The behavior of a
past play is its own outcome (``listened`` / ``skipped``), so a model sees how the user's earlier
plays went, never the one it predicts. ``endTime`` has minute resolution: plays that share a
minute share a ts, and a sample's history stops strictly before its ts, so they never see each
other. Items: every (artist, track) played. No numeric field: ``msPlayed`` *is* the label of its
own play, and the behavior id already carries its outcome for past plays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.data.build import RawLog
from pipelines.data.readers import (
    id_column,
    numeric_column,
    read_table,
    require_columns,
    timestamp_column,
)

LISTENED_MS = 30_000
LABEL_RULE = f"msPlayed >= {LISTENED_MS} -> 1 (listened), else 0 (skipped); every play is a sample"
BEHAVIORS = ["skipped", "listened"]
#: joins artist and track into one item key; it cannot occur in either name
SEPARATOR = "\x1f"


def spotify_frames(path: Path) -> RawLog:
    frame = read_table(path)
    require_columns(frame, path, ["user_id", "endTime", "artistName", "trackName", "msPlayed"])
    artist = id_column(frame, path, "artistName")
    track = id_column(frame, path, "trackName")
    played = numeric_column(frame, path, "msPlayed")
    if (played < 0).any():
        from pipelines.data.prepared import DataError

        row = int(np.flatnonzero(played < 0)[0])
        raise DataError(path, "msPlayed", f"row {row + 1}: negative {played[row]}")
    listened = played >= LISTENED_MS
    item = pd.Series(artist, dtype=object) + SEPARATOR + pd.Series(track, dtype=object)
    events = pd.DataFrame(
        {
            "user_raw": id_column(frame, path, "user_id"),
            "item_raw": item.to_numpy(),
            "ts": timestamp_column(frame, path, "endTime"),
            "behavior": listened.astype(np.int64) + 1,
            "label": listened.astype(np.float32),
        }
    )
    items = (
        pd.DataFrame({"item_raw": item, "artist": artist, "track": track})
        .drop_duplicates("item_raw")
        .reset_index(drop=True)
    )
    items["category_raw"] = items["artist"]
    items["text"] = items["track"] + " - " + items["artist"]
    return RawLog(
        name="spotify-streaming-u13",
        events=events,
        items=items[["item_raw", "category_raw", "text", "track", "artist"]],
        samples=None,
        behaviors=BEHAVIORS,
        text_fields=["text"],
        source={"files": [str(path)]},
        label_rule=LABEL_RULE,
        events_path=str(path),
        items_path=str(path),
        columns={"user": "user_id", "item": "artistName+trackName"},
    )


def read_spotify(root: Path, seed: int = 0) -> RawLog:
    return spotify_frames(root / "spotify-streaming-u13" / "streaming_history.csv.gz")
