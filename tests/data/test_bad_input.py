"""Bad input to ``python -m pipelines.prepare`` (generic path): exit 1, a message naming the file,
the column and the first bad row, and no output directory or temporary directory left behind.

Every input is a small CSV in ``tmp_path``; a bad cell is planted in data rows 3 and 5 (1-based,
header not counted) so the message must name row 3, the first one.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.data import build
from pipelines.data.prepare import main
from pipelines.data.prepared import SPLITS, DataError

REPO_ROOT = Path(__file__).resolve().parents[2]
HEADER = ["uid", "iid", "t", "r", "dwell", "clicked"]
ROWS = [
    ["1", "10", "100", "4", "1.5", "1"],
    ["1", "11", "200", "3", "2.0", "0"],
    ["2", "12", "150", "5", "0.5", "1"],
    ["2", "10", "150", "2", "1.0", "0"],
    ["3", "13", "300", "1", "3.0", "0"],
    ["3", "14", "400", "4", "2.5", "1"],
    ["1", "12", "250", "5", "1.0", "1"],
    ["2", "11", "500", "4", "0.1", "1"],
]
ITEMS = "iid,cat,title\n10,a,Ten\n11,b,Eleven\n12,a,Twelve\n13,c,Thirteen\n14,b,Fourteen\n"
MAP = "user=uid,item=iid,ts=t,category=cat"


def events_csv(bad: dict[str, str] | None = None, rows: tuple[int, ...] = (3, 5)) -> str:
    """The base events as CSV text, with ``bad`` cells written into data ``rows`` (1-based)."""
    lines = [",".join(HEADER)]
    for number, row in enumerate(ROWS, start=1):
        cells = dict(zip(HEADER, row))
        if bad and number in rows:
            cells.update(bad)
        lines.append(",".join(cells[c] for c in HEADER))
    return "\n".join(lines) + "\n"


def write_inputs(
    folder: Path, events: str | None = None, items: str | None = ITEMS
) -> tuple[Path, Path]:
    events_path, items_path = folder / "events.csv", folder / "items.csv"
    events_path.write_text(events_csv() if events is None else events)
    if items is not None:
        items_path.write_text(items)
    return events_path, items_path


def argv(events: Path, items: Path, out: Path, *extra: str, label: str = "r>=4") -> list[str]:
    return [
        "--events", str(events), "--items", str(items), "--map", MAP, "--label", label,
        "--numeric", "dwell", "--item-text", "title", "--out", str(out), *extra,
    ]  # fmt: skip


def assert_fails_cleanly(
    capsys: pytest.CaptureFixture[str],
    folder: Path,
    args: list[str],
    path: Path,
    column: str | None = None,
    row: int | None = None,
) -> str:
    """Run the CLI in-process; check exit 1, the message, and that nothing was written."""
    before = sorted(p.name for p in folder.iterdir())
    assert main(args) == 1
    err = capsys.readouterr().err
    assert str(path) in err, err
    if column is not None:
        assert f"column '{column}'" in err, err
    if row is not None:
        assert f"row {row}:" in err, err
        assert f"row {row + 2}:" not in err, err
    assert sorted(p.name for p in folder.iterdir()) == before  # no output, no temp dir
    return err


@pytest.mark.parametrize("which", ["events", "items"])
def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], which: str) -> None:
    events, items = write_inputs(tmp_path)
    missing = tmp_path / f"no_{which}.csv"
    if which == "events":
        args = argv(missing, items, tmp_path / "out")
    else:
        args = argv(events, missing, tmp_path / "out")
    err = assert_fails_cleanly(capsys, tmp_path, args, missing)
    assert "not found" in err


def test_missing_file_as_a_subprocess(tmp_path: Path) -> None:
    _, items = write_inputs(tmp_path)
    missing = tmp_path / "absent.csv"
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.prepare", *argv(missing, items, tmp_path / "out")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert str(missing) in done.stderr and "not found" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.csv", "items.csv"]


@pytest.mark.parametrize(
    ("where", "column"),
    [("events", "userid"), ("events", "score"), ("items", "subtitle")],
)
def test_missing_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str, column: str
) -> None:
    events, items = write_inputs(tmp_path)
    args = argv(events, items, tmp_path / "out")
    if column == "userid":
        args[args.index(MAP)] = MAP.replace("uid", "userid")
    elif column == "score":
        args[args.index("r>=4")] = "score>=4"
    else:
        args[args.index("title")] = "title,subtitle"
    path = events if where == "events" else items
    err = assert_fails_cleanly(capsys, tmp_path, args, path, column)
    assert "missing" in err


@pytest.mark.parametrize(("column", "value"), [("r", "four"), ("dwell", "long"), ("r", "4 stars")])
def test_non_numeric_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], column: str, value: str
) -> None:
    events, items = write_inputs(tmp_path, events_csv({column: value}))
    err = assert_fails_cleanly(
        capsys, tmp_path, argv(events, items, tmp_path / "out"), events, column, row=3
    )
    assert repr(value) in err and "not a number" in err


def test_wrong_dtype_in_a_parquet_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A parquet events file whose label column holds strings, one of them not a number."""
    frame = pd.DataFrame(ROWS, columns=HEADER).astype({"uid": int, "iid": int, "t": int})
    frame.loc[[2, 4], "r"] = "high"  # data rows 3 and 5
    events = tmp_path / "events.parquet"
    frame.to_parquet(events)
    _, items = write_inputs(tmp_path)
    (tmp_path / "events.csv").unlink()
    args = argv(events, items, tmp_path / "out")
    assert_fails_cleanly(capsys, tmp_path, args, events, "r", row=3)


@pytest.mark.parametrize(
    ("column", "value"),
    [("uid", ""), ("iid", ""), ("t", ""), ("r", ""), ("r", "NaN"), ("dwell", "")],
)
def test_nan_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], column: str, value: str
) -> None:
    events, items = write_inputs(tmp_path, events_csv({column: value}))
    args = argv(events, items, tmp_path / "out")
    assert_fails_cleanly(capsys, tmp_path, args, events, column, row=3)


def test_nan_in_a_parquet_float_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = pd.DataFrame(ROWS, columns=HEADER).astype({"dwell": float})
    frame.loc[[2, 4], "dwell"] = np.nan
    events = tmp_path / "events.parquet"
    frame.to_parquet(events)
    _, items = write_inputs(tmp_path)
    (tmp_path / "events.csv").unlink()
    args = argv(events, items, tmp_path / "out")
    err = assert_fails_cleanly(capsys, tmp_path, args, events, "dwell", row=3)
    assert "missing value" in err


@pytest.mark.parametrize("value", ["2", "-1", "0.5"])
def test_label_out_of_range(tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str) -> None:
    events, items = write_inputs(tmp_path, events_csv({"clicked": value}))
    args = argv(events, items, tmp_path / "out", label="clicked")
    err = assert_fails_cleanly(capsys, tmp_path, args, events, "clicked", row=3)
    assert "not 0 or 1" in err


def test_label_column_of_zeros_and_ones_is_accepted(tmp_path: Path) -> None:
    events, items = write_inputs(tmp_path)
    assert main(argv(events, items, tmp_path / "out", label="clicked")) == 0
    samples = pd.concat(
        pd.read_parquet(tmp_path / "out" / "samples" / f"{s}.parquet") for s in SPLITS
    )
    assert sorted(samples["label"].tolist()) == sorted(float(r[5]) for r in ROWS)


@pytest.mark.parametrize(
    ("good", "bad"),
    [(None, "yesterday"), ("2017-11-26 01:00:00", "2017-13-45 10:00:00")],
)
def test_timestamp_does_not_parse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], good: str | None, bad: str
) -> None:
    text = events_csv({"t": bad})
    if good is not None:  # a column of datetime strings
        text = events_csv({"t": good}, rows=tuple(range(1, len(ROWS) + 1)))
        lines = text.splitlines()
        for number in (3, 5):
            lines[number] = lines[number].replace(good, bad)
        text = "\n".join(lines) + "\n"
    events, items = write_inputs(tmp_path, text)
    err = assert_fails_cleanly(
        capsys, tmp_path, argv(events, items, tmp_path / "out"), events, "t", row=3
    )
    assert repr(bad) in err


def test_datetime_strings_become_unix_seconds(tmp_path: Path) -> None:
    stamps = [f"2017-11-26 01:00:{s:02d}" for s in range(len(ROWS))]
    lines = events_csv().splitlines()
    for number, stamp in enumerate(stamps, start=1):
        cells = lines[number].split(",")
        cells[HEADER.index("t")] = stamp
        lines[number] = ",".join(cells)
    events, items = write_inputs(tmp_path, "\n".join(lines) + "\n")
    assert main(argv(events, items, tmp_path / "out")) == 0
    ts = pd.read_parquet(tmp_path / "out" / "events.parquet")["ts"]
    expected = pd.to_datetime(pd.Series(stamps), utc=True).map(lambda t: int(t.timestamp()))
    assert sorted(ts.tolist()) == sorted(expected.tolist())
    assert int(ts.min()) == 1_511_658_000  # 2017-11-26 01:00:00 UTC


def test_event_item_not_in_the_items_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events, items = write_inputs(tmp_path, events_csv({"iid": "99"}))
    args = argv(events, items, tmp_path / "out")
    err = assert_fails_cleanly(capsys, tmp_path, args, events, "iid", row=3)
    assert "'99'" in err and str(items) in err


@pytest.mark.parametrize(
    ("which", "text"),
    [("events", ""), ("events", ",".join(HEADER) + "\n"), ("items", ""), ("items", "iid,cat\n")],
)
def test_empty_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], which: str, text: str
) -> None:
    if which == "events":
        events, items = write_inputs(tmp_path, events=text)
    else:
        events, items = write_inputs(tmp_path, items=text)
    path = events if which == "events" else items
    err = assert_fails_cleanly(capsys, tmp_path, argv(events, items, tmp_path / "out"), path)
    assert ("empty" in err) if not text else ("no rows" in err)


def test_failure_while_writing_leaves_nothing_and_keeps_the_old_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last step (manifest) fails after the parquet files are written: no temp dir left,
    and an existing output directory is left exactly as it was."""
    events, items = write_inputs(tmp_path)
    out = tmp_path / "out"
    assert main(argv(events, items, out)) == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def fail(path: Path, payload: dict) -> None:
        assert (path.parent / "events.parquet").is_file()  # really mid-way
        raise DataError(path, None, "disk full (simulated)")

    monkeypatch.setattr(build, "write_json", fail)
    assert main(argv(events, items, out)) == 1
    assert "disk full" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.csv", "items.csv", "out"]
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before


def _shuffle_keeping_ties(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """A random row order in which events sharing a (user, ts) keep their relative order
    (their original order is the documented tie-breaker, so it must not change)."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(frame))
    key = (frame["user"].astype(str) + "|" + frame["ts"].astype(str)).to_numpy()[perm]
    by_position = np.lexsort((np.arange(len(perm)), key))
    by_original = np.lexsort((perm, key))
    rows = np.empty(len(perm), dtype=np.int64)
    rows[by_position] = perm[by_original]
    return frame.iloc[rows]


def _by_raw_ids(root: Path, name: str) -> pd.DataFrame:
    """A prepared table with user indices replaced by raw ids, in (user_raw, stored) order."""
    users = pd.read_parquet(root / "users.parquet").set_index("user")["user_raw"]
    table = pd.read_parquet(root / name)
    table.insert(0, "user_raw", users.loc[table["user"]].to_numpy())
    table = table.drop(columns="user").sort_values("user_raw", kind="stable")
    return table.reset_index(drop=True)


def test_unsorted_input_gives_the_sorted_result(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 600
    frame = pd.DataFrame(
        {
            "user": rng.integers(1, 25, n),
            "item": rng.integers(10, 15, n),
            "ts": rng.integers(0, 40, n),  # many (user, ts) ties
            "r": rng.integers(1, 6, n),
            "dwell": rng.random(n).round(3),
        }
    )
    assert frame.duplicated(["user", "ts"]).sum() > 50
    ordered = frame.sort_values(["user", "ts"], kind="stable")
    shuffled = _shuffle_keeping_ties(ordered, seed=1)
    assert not shuffled["user"].is_monotonic_increasing
    items = tmp_path / "items.csv"
    items.write_text(ITEMS.replace("iid", "item"))
    outputs = {}
    for name, table in (("sorted", ordered), ("unsorted", shuffled)):
        path = tmp_path / f"{name}.csv"
        table.to_csv(path, index=False)
        outputs[name] = tmp_path / f"out_{name}"
        args = argv(path, items, outputs[name])
        args[args.index(MAP)] = "user=user,item=item,ts=ts,category=cat"
        assert main(args) == 0
    a, b = outputs["sorted"], outputs["unsorted"]
    for name in ["events.parquet"] + [f"samples/{split}.parquet" for split in SPLITS]:
        pd.testing.assert_frame_equal(_by_raw_ids(a, name), _by_raw_ids(b, name))
    pd.testing.assert_frame_equal(
        pd.read_parquet(a / "items.parquet"), pd.read_parquet(b / "items.parquet")
    )
    assert len(pd.read_parquet(a / "samples" / "test.parquet")) > 0
