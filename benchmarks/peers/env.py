"""The peer's own virtual environment: ``.peers/venv`` in the repository (gitignored).

FuxiCTR pins nothing that fits the project's stack (it wants ray, polars, pandas of its own),
so it gets a separate interpreter: ``python -m venv .peers/venv``, then one ``pip install`` of
``torch==<the project's torch release>`` (a constraints file pins it, so no other torch build is
ever pulled in) and FuxiCTR (the PyPI release, or a wheel file given with ``--wheel``).
The project's venv is never touched; the benchmark talks to the peer only through files and a
child process (:mod:`benchmarks.peers.fuxictr_worker`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.common import REPO_ROOT

PEER_DIR = REPO_ROOT / ".peers"
VENV = PEER_DIR / "venv"
MARKER = VENV / "peers-installed.json"
FUXICTR_RELEASE = "fuxictr==2.3.10"
WORKER = Path(__file__).resolve().parent / "fuxictr_worker.py"


def peer_python(venv: Path = VENV) -> Path:
    return venv / "bin" / "python"


def peer_ready(venv: Path = VENV) -> str | None:
    """None when the peer venv is installed and imports FuxiCTR's LongCTR zoo, else the reason."""
    marker = venv / MARKER.name
    if not peer_python(venv).is_file() or not marker.is_file():
        return f"no peer environment at {venv} (run: python -m benchmarks.peers setup)"
    check = subprocess.run(
        [str(peer_python(venv)), "-c", "import fuxictr, model_zoo.LongCTR"],
        capture_output=True, text=True,
    )  # fmt: skip
    if check.returncode != 0:
        return f"{venv}: FuxiCTR does not import: {check.stderr.strip()[-500:]}"
    return None


def torch_release() -> str:
    """The project's torch release without its local build tag (``2.13.0+cpu`` -> ``2.13.0``)."""
    return metadata.version("torch").split("+")[0]


def setup(wheel: Path | None = None, venv: Path = VENV) -> dict[str, Any]:
    """Create ``venv`` and install torch (pinned to the project's release) and FuxiCTR into it."""
    if wheel is not None and not wheel.is_file():
        raise SystemExit(f"--wheel {wheel}: no such file")
    venv.parent.mkdir(parents=True, exist_ok=True)
    if not peer_python(venv).is_file():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pin = f"torch=={torch_release()}"
    constraints = venv / "peers-constraints.txt"
    constraints.write_text(pin + "\n")
    fuxictr = str(wheel.resolve()) if wheel is not None else FUXICTR_RELEASE
    command = [str(peer_python(venv)), "-m", "pip", "install", "--quiet", "-c", str(constraints),
               pin, fuxictr]  # fmt: skip
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True)
    versions = subprocess.run(
        [str(peer_python(venv)), "-c",
         "import json, importlib.metadata as m; "
         "print(json.dumps({d: m.version(d) for d in ('fuxictr', 'torch', 'ray', 'pandas')}))"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    info = {"versions": json.loads(versions.stdout), "fuxictr_source": fuxictr, "pin": pin}
    (venv / MARKER.name).write_text(json.dumps(info, indent=2) + "\n")
    return info


def installed_info(venv: Path = VENV) -> dict[str, Any] | None:
    marker = venv / MARKER.name
    return json.loads(marker.read_text()) if marker.is_file() else None
