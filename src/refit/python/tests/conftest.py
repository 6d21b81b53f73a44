"""Shared fixtures: the bundled real checkpoint and models built from it."""

import os
from pathlib import Path

import pytest
import torch

import refit

ROOT = Path(os.environ.get("REFIT_SOURCE_DIR", Path(__file__).resolve().parents[4]))
CKPT = ROOT / "data" / "checkpoints" / "agilerl-tiny-qwen3-moe"
SRC, DST, WORLD = "tp=2,ep=2", "tp=1,ep=4", 4


@pytest.fixture(autouse=True)
def fresh_caches():
    refit.clear_all_caches()
    yield


@pytest.fixture(scope="session")
def spec():
    return refit.ModelSpec.from_config(CKPT)


def trainer(spec, layout=SRC, world=WORLD, ranks=None):
    """Source tensors of every rank (from the checkpoint) and their models."""
    tensors = [refit.load_shards(CKPT, layout, r, world) for r in range(world)]
    models = [refit.ShardedModel(spec, layout, r, world, t) for r, t in enumerate(tensors)]
    return tensors, models


def engine(spec, layout=DST, world=WORLD, transform=None, fill=None):
    """Destination tensors of every rank (zeros, or `fill`) and their models."""
    tensors = [refit.empty_shards(spec, layout, r, world, transform) for r in range(world)]
    if fill is not None:
        for t in tensors:
            for v in t.values():
                v.fill_(fill)
    models = [refit.ShardedModel(spec, layout, r, world, t) for r, t in enumerate(tensors)]
    return tensors, models


def assert_equal_shards(actual, expected):
    assert actual.keys() == expected.keys()
    for name, t in expected.items():
        assert torch.equal(actual[name], t), name
