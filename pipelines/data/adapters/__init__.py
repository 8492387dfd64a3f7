"""Named adapters for the real logs in ../shared/data: name -> function(data_root, seed) -> RawLog."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipelines.data.adapters.instacart import read_instacart
from pipelines.data.adapters.movielens import read_movielens_1m, read_movielens_100k
from pipelines.data.adapters.spotify import read_spotify
from pipelines.data.adapters.taobao import read_taobao_slice, read_taobao_tail10k
from pipelines.data.build import RawLog

ADAPTERS: dict[str, Callable[[Path, int], RawLog]] = {
    "movielens-100k": read_movielens_100k,
    "movielens-1m-u2999": read_movielens_1m,
    "instacart-u593": read_instacart,
    "taobao-tail10k": read_taobao_tail10k,
    "taobao-slice": read_taobao_slice,
    "spotify-streaming-u13": read_spotify,
}
