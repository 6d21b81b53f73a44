"""The "local" method over torch CUDA tensors: refit in place on the device,
converted by the device kernels, ordered against the caller's stream.

Every test runs once over host tensors (the reference, and a check of the
test itself on machines without a GPU) and once over CUDA tensors, skipped
with "skipped: no CUDA device" where torch sees none. scripts/gpu_check.sh
runs this file on the GPU machine."""

import pytest
import torch

import refit
from conftest import CKPT, DST, SRC, WORLD, trainer

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="skipped: no CUDA device"))]

# The destination formats as refit run's flags name them, the device
# kernels' every path: a cast, block FP8 with F32 and UE8M0 scales
# (quantised on the receiver and on the sender), MXFP8 plain and swizzled.
TRANSFORMS = {
    "none": None,
    "f16": "f16",
    "fp8-block": "fp8-block",
    "fp8-block-ue8m0": {"dst_dtype": "fp8-block", "fp8_scale": "ue8m0"},
    "fp8-block-on-send": {"dst_dtype": "fp8-block", "quantize_on": "send"},
    "mxfp8": "mxfp8",
    "mxfp8-swizzled": {"dst_dtype": "mxfp8", "mxfp8_swizzled": True},
}


def on(device, tensors):
    """Copies on `device`, landed (the copies ran on torch's current stream,
    which a refit on another stream does not wait for)."""
    out = [{n: v.to(device, copy=True) for n, v in t.items()} for t in tensors]
    if device == "cuda":
        torch.cuda.synchronize()
    return out


def as_bytes(tensors):
    """Each tensor's bytes on the host (float8 has no CPU equality)."""
    return [{n: v.detach().cpu().contiguous().view(torch.uint8) for n, v in t.items()}
            for t in tensors]


def assert_same_bytes(got, want, what=""):
    assert len(got) == len(want)
    for r, (g, w) in enumerate(zip(got, want)):
        assert g.keys() == w.keys()
        for n in w:
            assert torch.equal(g[n], w[n]), f"rank {r} {n} {what}"


def refit_into(spec, src_t, device, transform=None, stream=None):
    """The engine tensors on `device` after one refit of `src_t` into DST."""
    src = [refit.ShardedModel(spec, SRC, r, WORLD, t) for r, t in enumerate(src_t)]
    dst_t = on(device, [refit.empty_shards(spec, DST, r, WORLD, transform)
                        for r in range(WORLD)])
    ptrs = [{n: v.data_ptr() for n, v in t.items()} for t in dst_t]
    dst = [refit.ShardedModel(spec, DST, r, WORLD, t) for r, t in enumerate(dst_t)]
    assert dst[0].device == device
    reports = refit.swap_model_weights(src, dst, "local", transform=transform,
                                       stream=stream)
    assert len({r.weight_version for r in reports}) == 1
    for r, t in enumerate(dst_t):
        assert all(v.data_ptr() == ptrs[r][n] for n, v in t.items()), "not in place"
    return dst_t


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", TRANSFORMS)
def test_device_refit_matches_the_host_refit(spec, device, name):
    """Byte for byte the host refit's result, for every destination format."""
    transform = TRANSFORMS[name]
    src_t, _ = trainer(spec)
    want = as_bytes(refit_into(spec, src_t, "cpu", transform))
    got = as_bytes(refit_into(spec, on(device, src_t), device, transform))
    assert_same_bytes(got, want, f"({name})")
    if transform is None:
        load = [refit.load_shards(CKPT, DST, r, WORLD) for r in range(WORLD)]
        assert_same_bytes(got, as_bytes(load), "(against the checkpoint)")


def add_one(tensors):
    for t in tensors:
        for v in t.values():
            v.add_(1)


@pytest.mark.parametrize("device", DEVICES)
def test_refit_waits_for_the_callers_stream(spec, device):
    """The source update queued on the caller's stream behind a long kernel
    (an optimizer step) lands in the destination: the refit waits for it."""
    host_t, _ = trainer(spec)
    src_t = on(device, host_t)
    stream = None
    if device == "cuda":
        stream = torch.cuda.Stream()
        with torch.cuda.stream(stream):
            torch.cuda._sleep(200_000_000)  # about 0.1 s of spinning first
            add_one(src_t)
    else:
        add_one(src_t)
    got = as_bytes(refit_into(spec, src_t, device, stream=stream))
    add_one(host_t)
    want = as_bytes(refit_into(spec, host_t, "cpu"))
    assert_same_bytes(got, want, "(stale bytes: the refit ran ahead of the stream)")


@pytest.mark.parametrize("device", DEVICES)
def test_repeated_refits_carry_each_step(spec, device):
    """A cached plan: each refit carries the source's current values."""
    host_t, _ = trainer(spec)
    src_t = on(device, host_t)
    src = [refit.ShardedModel(spec, SRC, r, WORLD, t) for r, t in enumerate(src_t)]
    dst_t = on(device, [refit.empty_shards(spec, DST, r, WORLD) for r in range(WORLD)])
    dst = [refit.ShardedModel(spec, DST, r, WORLD, t) for r, t in enumerate(dst_t)]
    for step in range(3):
        reports = refit.swap_model_weights(src, dst, "local")
        assert all(r.plan_built == (step == 0) for r in reports)
        want = as_bytes(refit_into(spec, host_t, "cpu"))
        assert_same_bytes(as_bytes(dst_t), want, f"(step {step})")
        add_one(src_t)
        add_one(host_t)
