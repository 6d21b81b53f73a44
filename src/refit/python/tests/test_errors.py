"""Bad input: one clear exception naming the rank and tensor, raised before any
destination byte changes."""

import numpy as np
import pytest
import torch

import refit
from conftest import CKPT, DST, SRC, WORLD, engine, trainer

QKV = "decoder.layers.0.self_attention.linear_qkv.weight"


def untouched(dst_t, value=3.0):
    return all(bool((v == value).all()) for t in dst_t for v in t.values())


def spoil_and_swap(spec, spoil, exc, match, rank=2):
    _, src = trainer(spec)
    dst_t, _ = engine(spec, fill=3.0)
    spoil(dst_t[rank])
    dst = [refit.ShardedModel(spec, DST, r, WORLD, t) for r, t in enumerate(dst_t)]
    group = refit.LocalGroup(WORLD)
    with pytest.raises(exc, match=match):
        refit.swap_model_weights(src, dst, "local", group=group)
    assert untouched([t for r, t in enumerate(dst_t) if r != rank])
    assert group.weight_version == 0  # failed everywhere: nothing published


@pytest.mark.parametrize("spoil, exc, match", [
    (lambda t: t.__setitem__(QKV, torch.zeros(193, 64)), ValueError,
     rf"rank 2: destination tensor {QKV}: shape \[193, 64\], expected \[192, 64\]"),
    (lambda t: t.__setitem__(QKV, torch.zeros(192, 64, dtype=torch.float16)), ValueError,
     rf"rank 2: destination tensor {QKV}: dtype F16, expected F32"),
    (lambda t: t.__setitem__(QKV, torch.zeros(64, 192).t()), ValueError,
     rf"rank 2: destination tensor {QKV}: not contiguous"),
    (lambda t: t.pop(QKV), KeyError, rf"rank 2: destination tensor {QKV}: missing"),
    (lambda t: t.__setitem__("decoder.layers.0.bogus", torch.zeros(1)), ValueError,
     "rank 2: destination tensor decoder.layers.0.bogus: not a tensor of this rank's model"),
    (lambda t: t.__setitem__(QKV, torch.zeros(192, 64, dtype=torch.complex64)), ValueError,
     rf"rank 2: destination tensor {QKV}: dtype torch.complex64 has no refit equivalent"),
    (lambda t: t.__setitem__(QKV, torch.zeros(192, 64, device="meta")), ValueError,
     rf"rank 2: destination tensor {QKV}: on device meta"),
    (lambda t: t.__setitem__(QKV, "weights"), ValueError,
     rf"rank 2: destination tensor {QKV}: a str, not a torch.Tensor or numpy.ndarray"),
])
def test_bad_destination_tensor(spec, spoil, exc, match):
    spoil_and_swap(spec, spoil, exc, match)


def test_read_only_numpy_destination(spec):
    def spoil(t):
        a = np.zeros((192, 64), np.float32)
        a.flags.writeable = False
        t[QKV] = a
    spoil_and_swap(spec, spoil, ValueError, "read-only numpy array")


def test_bad_source_tensor_names_source(spec):
    src_t, _ = trainer(spec)
    src_t[1][QKV] = torch.zeros(96, 65)
    src = [refit.ShardedModel(spec, SRC, r, WORLD, t) for r, t in enumerate(src_t)]
    dst_t, dst = engine(spec, fill=3.0)
    with pytest.raises(ValueError, match=f"rank 1: source tensor {QKV}: shape"):
        refit.swap_model_weights(src, dst, "local")
    assert untouched(dst_t)


def test_bad_arguments(spec):
    _, src = trainer(spec)
    dst_t, dst = engine(spec, fill=3.0)
    with pytest.raises(ValueError, match="lists of 4 entries"):
        refit.swap_model_weights(src, dst[:3], "local", group=4)
    with pytest.raises(ValueError, match="refit_method 'gloo'"):
        refit.swap_model_weights(src, dst, "gloo")
    with pytest.raises(ValueError, match='"nccl" refit: group is a list'):
        refit.swap_model_weights(src, dst, "nccl", group=[0, 1])
    with pytest.raises(ValueError, match="fp9"):
        refit.swap_model_weights(src, dst, "local", transform="fp9")
    with pytest.raises(ValueError, match="not a refit.ShardedModel"):
        refit.swap_model_weights(src, [{}] * 4, "local")
    with pytest.raises(ValueError, match="layout"):
        refit.ShardedModel(spec, "tp=3", 0, 3, {})
    with pytest.raises(ValueError, match="rank offset|offset"):
        refit.swap_model_weights(src, dst, "local", dst_rank_offset=2)
    with pytest.raises(ValueError, match='refit_method "local"'):
        refit.WeightReceiver(dst[0]).init_weight_transfer_engine("local")
    assert untouched(dst_t)


def test_quantised_destination_needs_its_scales(spec):
    _, src = trainer(spec)
    q_t, _ = engine(spec, transform="fp8-block")
    del q_t[0][QKV + "_scale_inv"]
    q = [refit.ShardedModel(spec, DST, r, WORLD, t) for r, t in enumerate(q_t)]
    with pytest.raises(KeyError, match=f"rank 0: destination tensor {QKV}_scale_inv: missing"):
        refit.swap_model_weights(src, q, "local", transform="fp8-block")
    # Without the transform the FP8 tensors are the wrong dtype.
    with pytest.raises(ValueError, match="expected F32"):
        refit.swap_model_weights(src, q, "local")
