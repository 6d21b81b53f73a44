"""Routed experts bound stacked, as vLLM's FusedMoE holds them (w13_weight
[E_local, 2*I_etp, H], w2_weight [E_local, H, I_etp], and their block-FP8
scales): shard_shapes / empty_shards(stacked_experts=True), and refits into
and out of stacked tensors bit-exact against the per-expert refit."""

import re

import pytest
import torch

import refit
from conftest import CKPT, DST, SRC, WORLD, engine, trainer

EXPERT = re.compile(r"(.*\.mlp\.experts\.linear_fc[12]\.weight)(\d+)(_scale_inv|_scale)?$")
FC1 = "decoder.layers.0.mlp.experts.linear_fc1.weight"


def stacked(tensors):
    """The per-expert tensors of one rank stacked: {stacked name: tensor}."""
    groups, out = {}, {}
    for name, t in tensors.items():
        m = EXPERT.match(name)
        if m is None:
            out[name] = t
        else:
            groups.setdefault(m[1] + (m[3] or ""), {})[int(m[2])] = t
    for name, slots in groups.items():
        parts = [slots[i].view(torch.uint8) for i in range(len(slots))]  # FP8 too
        out[name] = torch.stack(parts).view(slots[0].dtype)
    return out


def models(spec, layout, tensors):
    return [refit.ShardedModel(spec, layout, r, WORLD, t) for r, t in enumerate(tensors)]


def test_shard_shapes_stacked(spec):
    shapes = refit.shard_shapes(spec, SRC, 0, WORLD, stacked_experts=True)
    assert shapes[FC1] == ((2, 32, 64), "F32")  # ETP 2 halves I = 32
    assert shapes["decoder.layers.0.mlp.experts.linear_fc2.weight"] == ((2, 64, 16), "F32")
    assert FC1 + "0" not in shapes
    q = refit.shard_shapes(spec, SRC, 0, WORLD, "fp8-block", stacked_experts=True)
    assert q[FC1] == ((2, 32, 64), "F8_E4M3")
    # w13_weight_scale_inv: 2 * ceil(I_etp / 128) rows, gate and up blocked apart.
    assert q[FC1 + "_scale_inv"] == ((2, 2, 1), "F32")
    per_expert = refit.shard_shapes(spec, SRC, 0, WORLD)
    assert per_expert[FC1 + "1"] == ((32, 64), "F32")
    t = refit.empty_shards(spec, SRC, 0, WORLD, stacked_experts=True)
    assert t[FC1].shape == (2, 32, 64) and t[FC1].dtype == torch.float32


@pytest.mark.parametrize("transform", [None, "fp8-block"])
def test_stacked_destination_is_bit_exact(spec, transform):
    _, src = trainer(spec)
    want_t, want = engine(spec, transform=transform)
    refit.swap_model_weights(src, want, "local", transform=transform)
    got_t = [refit.empty_shards(spec, DST, r, WORLD, transform, stacked_experts=True)
             for r in range(WORLD)]
    ptrs = [{n: v.data_ptr() for n, v in t.items()} for t in got_t]
    reports = refit.swap_model_weights(src, models(spec, DST, got_t), "local",
                                       transform=transform)
    assert len({r.weight_version for r in reports}) == 1
    for r in range(WORLD):
        expected = stacked(want_t[r])
        assert got_t[r].keys() == expected.keys()
        for name, t in expected.items():
            assert torch.equal(got_t[r][name].view(torch.uint8), t.view(torch.uint8)), name
            assert got_t[r][name].data_ptr() == ptrs[r][name]


def test_stacked_source_is_bit_exact(spec):
    src_t, _ = trainer(spec, layout=DST)
    src = models(spec, DST, [stacked(t) for t in src_t])
    got_t, got = engine(spec, layout=SRC)
    refit.swap_model_weights(src, got, "local")
    _, plain_src = trainer(spec, layout=DST)
    want_t, want = engine(spec, layout=SRC)
    refit.swap_model_weights(plain_src, want, "local")
    for g, w in zip(got_t, want_t):
        for name in w:
            assert torch.equal(g[name], w[name]), name


def test_load_shards_stacked(spec):
    for r in range(WORLD):
        got = refit.load_shards(CKPT, SRC, r, WORLD, stacked_experts=True)
        want = stacked(refit.load_shards(CKPT, SRC, r, WORLD))
        assert got.keys() == want.keys()
        for name, t in want.items():
            assert torch.equal(got[name], t), name


def test_stack_bound_both_ways_is_named(spec):
    _, src = trainer(spec)
    dst_t = [refit.empty_shards(spec, DST, r, WORLD, stacked_experts=True) for r in range(WORLD)]
    dst_t[1][FC1 + "0"] = dst_t[1][FC1][0]
    with pytest.raises(ValueError, match=re.escape(
            f"rank 1: destination tensor {FC1}: bound both stacked and per expert "
            f"(as {FC1}0)")):
        refit.swap_model_weights(src, models(spec, DST, dst_t), "local")
    assert all(t.abs().sum() == 0 for d in dst_t for t in d.values())


def test_stack_of_the_wrong_shape_is_named(spec):
    _, src = trainer(spec)
    dst_t = [refit.empty_shards(spec, DST, r, WORLD, stacked_experts=True) for r in range(WORLD)]
    dst_t[2][FC1] = torch.zeros(2, 64, 64)
    with pytest.raises(ValueError, match=re.escape(
            f"rank 2: destination tensor {FC1}: shape [2, 64, 64], expected [1, 64, 64]")):
        refit.swap_model_weights(src, models(spec, DST, dst_t), "local")
