"""The README's example (DMGIN inside someone's TorchRec model) runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_dmgin_example_runs_and_reads_the_history() -> None:
    (block,) = readme_python_blocks()
    scope: dict = {}
    torch.manual_seed(0)
    exec(compile(block, str(README), "exec"), scope)
    interest, dmgin = scope["interest"], scope["dmgin"]
    assert interest.shape == (2, dmgin.output_dim)
    assert torch.isfinite(interest).all()
    # the same call again gives the same output; other history embeddings, another output
    history_call = re.search(r"interest = dmgin\((.*)\)\s+#", block, flags=re.S)
    assert history_call is not None
    call = f"dmgin({history_call.group(1)})"
    torch.testing.assert_close(eval(call, scope), interest)
    scope["seq"] = scope["seq"] + 1.0
    assert not torch.allclose(eval(call, scope), interest)
