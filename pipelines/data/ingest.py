"""Generic ingestion: any events CSV/parquet with a header (+ optional items file) by a column map.

Example::

    python -m pipelines.prepare --events ratings.csv --items movies.csv \
        --map user=userId,item=movieId,ts=timestamp,behavior=rating,category=genre \
        --label "rating>=4" --numeric rating --item-text title,genres --out data/ml

``--map`` keys: user, item, ts (required), behavior (integer codes or names), category (looked up
in the items file when it has that column, else in the events file). ``--label`` is either
``COLUMN OP NUMBER`` (OP one of >=, >, <=, <, ==) or a bare column holding 0/1. Every event is a
sample labeled by that rule (explicit-label protocol).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.data.build import RawLog
from pipelines.data.prepared import DataError
from pipelines.data.readers import (
    id_column,
    numeric_column,
    read_table,
    require_columns,
    timestamp_column,
)

# a column name is any text without the operator characters (RecBole headers hold ':')
_LABEL = re.compile(r"^\s*([^<>=]*[^<>=\s])\s*(>=|<=|==|>|<)\s*(-?\d+(?:\.\d+)?)\s*$")
_OPS = {">=": np.greater_equal, ">": np.greater, "<=": np.less_equal, "<": np.less, "==": np.equal}


@dataclass
class LabelRule:
    column: str
    op: str | None = None
    threshold: float | None = None

    @staticmethod
    def parse(text: str) -> LabelRule:
        match = _LABEL.match(text)
        if match:
            return LabelRule(match.group(1), match.group(2), float(match.group(3)))
        if text.strip() and re.fullmatch(r"[^<>=]+", text.strip()):
            return LabelRule(text.strip())
        raise ValueError(
            f"--label {text!r}: expected COLUMN OP NUMBER (OP in >=, >, <=, <, ==) or COLUMN"
        )

    def apply(self, frame: pd.DataFrame, path: str) -> np.ndarray:
        values = numeric_column(frame, path, self.column)
        if self.op is None:
            bad = (values != 0) & (values != 1)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise DataError(
                    path,
                    self.column,
                    f"row {row + 1}: label {frame[self.column].iloc[row]!r} is not 0 or 1",
                )
            return values.astype(np.float32)
        return _OPS[self.op](values, self.threshold).astype(np.float32)

    def __str__(self) -> str:
        return (
            self.column
            if self.op is None
            else f"{self.column} {self.op} {self.threshold:g} -> 1, else 0"
        )


def parse_mapping(text: str) -> dict[str, str]:
    mapping = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise ValueError(f"--map entry {part!r}: expected key=column")
        key, column = part.split("=", 1)
        if key not in ("user", "item", "ts", "behavior", "category"):
            raise ValueError(f"--map key {key!r}: expected user, item, ts, behavior or category")
        mapping[key] = column
    for key in ("user", "item", "ts"):
        if key not in mapping:
            raise ValueError(f"--map must name the {key} column ({key}=COLUMN)")
    return mapping


def read_generic(
    events_path: Path,
    mapping: dict[str, str],
    label: str,
    items_path: Path | None = None,
    item_text: list[str] | None = None,
    numeric: list[str] | None = None,
    sep: str = ",",
    name: str | None = None,
) -> RawLog:
    rule = LabelRule.parse(label)
    events = read_table(events_path, sep=sep)
    numeric = numeric or []
    needed = [mapping["user"], mapping["item"], mapping["ts"], rule.column, *numeric]
    if "behavior" in mapping:
        needed.append(mapping["behavior"])
    items_frame = read_table(items_path, sep=sep) if items_path is not None else None
    category_in_items = (
        items_frame is not None
        and "category" in mapping
        and mapping["category"] in items_frame.columns
    )
    if "category" in mapping and not category_in_items:
        needed.append(mapping["category"])
    require_columns(events, events_path, list(dict.fromkeys(needed)))
    ts = timestamp_column(events, str(events_path), mapping["ts"])
    labels = rule.apply(events, str(events_path))
    if "behavior" in mapping:
        raw_behavior = events[mapping["behavior"]].astype(str).str.strip()
        as_number = pd.to_numeric(raw_behavior, errors="coerce")
        if (
            not as_number.isna().any()
            and (as_number == np.round(as_number)).all()
            and as_number.min() >= 1
        ):
            behavior = as_number.to_numpy(np.int64)
            behaviors = [str(b) for b in range(1, int(behavior.max()) + 1)]
        else:
            codes, uniques = pd.factorize(raw_behavior, sort=True)
            behavior, behaviors = codes.astype(np.int64) + 1, [str(u) for u in uniques]
    else:
        behavior, behaviors = np.ones(len(events), dtype=np.int64), ["event"]
    frame = pd.DataFrame(
        {
            "user_raw": id_column(events, events_path, mapping["user"]),
            "item_raw": id_column(events, events_path, mapping["item"]),
            "ts": ts,
            "behavior": behavior,
            "label": labels,
        }
    )
    for column in numeric:
        frame[column] = numeric_column(events, events_path, column).astype(np.float32)
    text = item_text or []
    if items_frame is not None:
        item_col = mapping["item"] if mapping["item"] in items_frame.columns else None
        if item_col is None:
            raise DataError(
                items_path,
                mapping["item"],
                f"column missing; the file has {list(items_frame.columns)}",
            )
        require_columns(items_frame, items_path, text)
        items = pd.DataFrame({"item_raw": id_column(items_frame, items_path, item_col)})
        if category_in_items:
            items["category_raw"] = items_frame[mapping["category"]].astype(str).to_numpy()
        else:
            items["category_raw"] = "none"
        for column in text:
            items[column] = items_frame[column].astype(str).to_numpy()
    else:
        if text:
            raise ValueError("--item-text needs --items")
        first = frame.drop_duplicates("item_raw")
        items = pd.DataFrame({"item_raw": first["item_raw"].to_numpy()})
        if "category" in mapping:
            items["category_raw"] = (
                events.loc[first.index, mapping["category"]].astype(str).to_numpy()
            )
        else:
            items["category_raw"] = "none"
    if "category" in mapping and not category_in_items and items_frame is not None:
        first = frame.assign(
            cat=events[mapping["category"]].astype(str).to_numpy()
        ).drop_duplicates("item_raw")
        items["category_raw"] = (
            items["item_raw"].map(first.set_index("item_raw")["cat"]).fillna("none")
        )
    return RawLog(
        name=name or Path(events_path).stem,
        events=frame,
        items=items,
        samples=None,
        behaviors=behaviors,
        numeric_fields=numeric,
        text_fields=text,
        source={
            "files": [str(events_path)] + ([str(items_path)] if items_path else []),
            "map": mapping,
        },
        label_rule=str(rule),
        events_path=str(events_path),
        items_path=str(items_path) if items_path else str(events_path),
        columns={"user": mapping["user"], "item": mapping["item"]},
    )
