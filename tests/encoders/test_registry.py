"""Your own encoder by ``"package.module:ClassName"``: built, validated and trained like a built-in."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import torch

from components.encoders.registry import ENCODERS, build_encoder, resolve_encoder
from components.model import LifelongCTRModel, ModelConfig, Vocab
from pipelines.data.batch import random_batch
from pipelines.train.config import ConfigError, load_config
from pipelines.train.model_wrapper import TrainWrapper

CUSTOM_MODULE = textwrap.dedent(
    '''
    from dataclasses import dataclass

    import torch
    from torch import nn

    from components.encoders.base import EncoderSpec, History, Query, SequenceEncoder


    @dataclass
    class RecentMeanConfig:
        window: int = 5


    class RecentMean(SequenceEncoder):
        """Mean of the last ``window`` behavior embeddings, gated by the candidate."""

        config_class = RecentMeanConfig

        def __init__(self, spec: EncoderSpec, config: RecentMeanConfig | None = None) -> None:
            super().__init__()
            self.config = config or RecentMeanConfig()
            self.gate = nn.Linear(spec.embedding_dim, spec.embedding_dim)
            self.output_dim = spec.embedding_dim

        def forward(self, query: Query, history: History) -> torch.Tensor:
            out = torch.zeros_like(query.embeddings)
            for b in range(history.lengths.shape[0]):
                end = int(history.offsets[b + 1])
                start = max(int(history.offsets[b]), end - self.config.window)
                if end > start:
                    out[b] = history.embeddings[start:end].mean(dim=0)
            return out * torch.sigmoid(self.gate(query.embeddings))


    class NotAnEncoder:
        config_class = RecentMeanConfig


    class ConfigInstance(RecentMean):
        config_class = RecentMeanConfig()


    class ConfigNotDataclass(RecentMean):
        config_class = dict
    '''
)


@pytest.fixture()
def custom_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "my_recent_mean.py").write_text(CUSTOM_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_recent_mean"


def test_own_encoder_trains_and_ranks_inside_the_model(custom_module: str) -> None:
    torch.manual_seed(0)
    vocab = Vocab(users=20, items=60, categories=6, behaviors=3, num_numeric=1)
    config = ModelConfig(
        encoder=f"{custom_module}:RecentMean",
        encoder_config={"window": 3},
        embedding_dim=8,
        over_arch=[16],
    )
    model = LifelongCTRModel(config, vocab)
    assert model.head.encoder.config.window == 3
    batch = random_batch(
        [9, 0, 4, 7], users=20, items=60, categories=6, behaviors=3, num_numeric=1, seed=2
    )
    wrapper = TrainWrapper(model).train()
    optimizer = torch.optim.Adam(wrapper.parameters(), lr=0.05)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss, _ = wrapper(batch)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    items = torch.randint(1, 60, (4, 3))
    ranked = model.eval().rank_candidates(batch, items, items % 5 + 1)
    assert ranked.shape == (4, 3) and bool(torch.isfinite(ranked).all())


def test_resolve_names_built_ins_and_module_paths(custom_module: str) -> None:
    for name in ENCODERS:
        encoder_class, config_class = resolve_encoder(name)
        assert encoder_class.__name__ == ENCODERS[name][1]
        assert config_class.__name__ == ENCODERS[name][2]
    encoder_class, config_class = resolve_encoder(f"{custom_module}:RecentMean")
    assert (encoder_class.__name__, config_class.__name__) == ("RecentMean", "RecentMeanConfig")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Nope", "or give your own as 'package.module:ClassName'"),
        ("no_such_module_xyz:Thing", "cannot import module 'no_such_module_xyz'"),
        ("{module}:Missing", "has no 'Missing'"),
        ("{module}:NotAnEncoder", "NotAnEncoder is not a SequenceEncoder subclass"),
        ("components.encoders.base:SequenceEncoder", "config_class must be its config"),
        ("{module}:ConfigInstance", "ConfigInstance.config_class must be its config"),
        ("{module}:ConfigNotDataclass", "ConfigNotDataclass.config_class must be its config"),
        (":RecentMean", "or give your own as 'package.module:ClassName'"),
        ("{module}:", "or give your own as 'package.module:ClassName'"),
        ("{module}:RecentMean:x", "module '{module}' has no 'RecentMean:x'"),
    ],
)
def test_bad_encoder_names_say_what_is_wrong(custom_module: str, name: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message.format(module=custom_module))):
        build_encoder(name.format(module=custom_module), None)  # type: ignore[arg-type]


def test_config_validates_own_encoder_and_its_fields(custom_module: str, tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(
        f"data: {{dataset: d}}\nmodel: {{encoder: '{custom_module}:RecentMean', "
        "encoder_config: {window: 7}}\n"
    )
    assert load_config(path).model.encoder_config == {"window": 7}
    path.write_text(
        f"data: {{dataset: d}}\nmodel: {{encoder: '{custom_module}:RecentMean', "
        "encoder_config: {windw: 7}}\n"
    )
    with pytest.raises(ConfigError, match="model.encoder_config"):
        load_config(path)
    path.write_text("data: {dataset: d}\nmodel: {encoder: 'absent_mod_q:X'}\n")
    with pytest.raises(ConfigError, match="model.encoder: encoder 'absent_mod_q:X': cannot import"):
        load_config(path)
