"""MovieLens adapters (DIN's protocol).

Every rating is an event *and* a sample: label 1 if rating >= 4 else 0 (explicit negatives).
The behavior id is the star value (1..5) and the numeric field ``rating`` carries it too, so a
model sees the user's past ratings but never the one it predicts (its history stops strictly
before the sample's ts; ~50% of ratings share a timestamp with another of the user's ratings and
those are excluded as well). Category = the movie's first genre; text fields: title, genres
(+ year). Items: every movie of the movie file.
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

LABEL_RULE = "rating >= 4 -> 1, else 0 (every rating is a sample)"
STARS = ["1", "2", "3", "4", "5"]


def ratings_to_events(
    ratings: pd.DataFrame, path: Path | str, user: str, item: str, rating: str, ts: str
) -> pd.DataFrame:
    stars = numeric_column(ratings, path, rating)
    bad = (stars < 1) | (stars > 5) | (stars != np.round(stars))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        from pipelines.data.prepared import DataError

        raise DataError(
            path, rating, f"row {row + 1}: rating {ratings[rating].iloc[row]!r} outside 1..5"
        )
    return pd.DataFrame(
        {
            "user_raw": id_column(ratings, path, user),
            "item_raw": id_column(ratings, path, item),
            "ts": timestamp_column(ratings, path, ts),
            "behavior": stars.astype(np.int64),
            "rating": stars.astype(np.float32),
            "label": (stars >= 4).astype(np.float32),
        }
    )


def movielens_100k_frames(inter: Path, item: Path) -> RawLog:
    ratings = read_table(inter, sep="\t")
    ratings.columns = [c.split(":")[0] for c in ratings.columns]
    require_columns(ratings, inter, ["user_id", "item_id", "rating", "timestamp"])
    movies = read_table(item, sep="\t")
    movies.columns = [c.split(":")[0] for c in movies.columns]
    require_columns(movies, item, ["item_id", "movie_title", "release_year", "class"])
    genres = movies["class"].astype(str)
    items = pd.DataFrame(
        {
            "item_raw": movies["item_id"].astype(str),
            "category_raw": genres.str.split(" ").str[0].replace("", "unknown"),
            "title": movies["movie_title"].astype(str),
            "year": movies["release_year"].astype(str),
            "genres": genres,
        }
    )
    return RawLog(
        name="movielens-100k",
        events=ratings_to_events(ratings, inter, "user_id", "item_id", "rating", "timestamp"),
        items=items,
        samples=None,
        behaviors=STARS,
        numeric_fields=["rating"],
        text_fields=["title", "genres", "year"],
        source={"files": [str(inter), str(item)]},
        label_rule=LABEL_RULE,
        events_path=str(inter),
        items_path=str(item),
    )


def read_movielens_100k(root: Path, seed: int = 0) -> RawLog:
    folder = root / "movielens-100k"
    return movielens_100k_frames(folder / "ml-100k.inter", folder / "ml-100k.item")


def read_movielens_1m(root: Path, seed: int = 0) -> RawLog:
    folder = root / "movielens-1m-u2999"
    ratings_path, movies_path = folder / "ratings.dat.gz", folder / "movies.dat"
    ratings = read_table(
        ratings_path, sep="::", header=False, names=["user", "item", "rating", "ts"]
    )
    movies = read_table(
        movies_path,
        sep="::",
        header=False,
        names=["item", "title", "genres"],
        encoding="ISO-8859-1",
    )
    genres = movies["genres"].astype(str)
    items = pd.DataFrame(
        {
            "item_raw": movies["item"].astype(str),
            "category_raw": genres.str.split("|").str[0],
            "title": movies["title"].astype(str),
            "genres": genres.str.replace("|", " ", regex=False),
        }
    )
    return RawLog(
        name="movielens-1m-u2999",
        events=ratings_to_events(ratings, ratings_path, "user", "item", "rating", "ts"),
        items=items,
        samples=None,
        behaviors=STARS,
        numeric_fields=["rating"],
        text_fields=["title", "genres"],
        source={"files": [str(ratings_path), str(movies_path)]},
        label_rule=LABEL_RULE,
        events_path=str(ratings_path),
        items_path=str(movies_path),
    )
