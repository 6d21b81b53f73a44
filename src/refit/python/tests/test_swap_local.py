"""The "local" method: bit-exact, in place, cached, and every entry point."""

import sys
import threading

import numpy as np
import pytest
import torch

import refit
from conftest import CKPT, DST, SRC, WORLD, assert_equal_shards, engine, trainer


def expected(layout=DST, world=WORLD):
    return [refit.load_shards(CKPT, layout, r, world) for r in range(world)]


def test_swap_is_bit_exact_and_in_place(spec):
    _, src = trainer(spec)
    dst_t, dst = engine(spec)
    objects = [dict(t) for t in dst_t]
    ptrs = [{n: v.data_ptr() for n, v in t.items()} for t in dst_t]
    reports = refit.swap_model_weights(src, dst, "local")
    assert len(reports) == WORLD
    want = expected()
    for r in range(WORLD):
        assert_equal_shards(dst_t[r], want[r])
        for n, v in dst_t[r].items():
            assert v is objects[r][n] and v.data_ptr() == ptrs[r][n]
            assert dst[r][n] is v
    sent = sum(x.bytes_sent for x in reports)
    assert sent == sum(x.bytes_received for x in reports) and sent > 0
    assert all(x.plan_built for x in reports)
    assert len({x.weight_version for x in reports}) == 1


def test_plan_cache_and_clear(spec):
    _, src = trainer(spec)
    _, dst = engine(spec)
    first = refit.swap_model_weights(src, dst, "local")
    assert all(r.plan_built for r in first)
    again = refit.swap_model_weights(src, dst, "local")
    assert not any(r.plan_built for r in again)
    assert [r.weight_version for r in again] == [first[0].weight_version + 1] * WORLD
    refit.clear_plan_cache()
    assert all(r.plan_built for r in refit.swap_model_weights(src, dst, "local"))
    refit.clear_service_cache()
    third = refit.swap_model_weights(src, dst, "local")
    assert not any(r.plan_built for r in third)


def test_prepare_then_swap_builds_no_plan(spec):
    _, src = trainer(spec)
    dst_t, dst = engine(spec)
    assert refit.prepare_swap_model_weights(src, dst, "local") is None
    assert all(t.abs().sum() == 0 for d in dst_t for t in d.values())
    assert not any(r.plan_built for r in refit.swap_model_weights(src, dst, "local"))


def test_reshard_over_service(spec):
    group = refit.LocalGroup(WORLD)
    service = refit.get_or_create_service("local", group)
    assert service.group is group and service.method == "local"
    _, src = trainer(spec)
    dst_t, dst = engine(spec)
    reports = refit.reshard_model_weights(src, dst, service)
    assert [r.weight_version for r in reports] == [1] * WORLD
    assert group.weight_version == 1
    for got, want in zip(dst_t, expected()):
        assert_equal_shards(got, want)
    with pytest.raises(ValueError, match="CopyService"):
        refit.reshard_model_weights(src, dst, group)


def test_optimizer_step_is_carried(spec):
    src_t, src = trainer(spec)
    dst_t, dst = engine(spec)
    refit.swap_model_weights(src, dst, "local")
    for t in src_t:
        for v in t.values():
            v.mul_(-1.25)  # the optimizer's in-place update (padding stays 0)
    refit.swap_model_weights(src, dst, "local")
    back_t, back = engine(spec, SRC)
    refit.swap_model_weights(dst, back, "local")
    for got, want in zip(back_t, src_t):
        assert_equal_shards(got, want)


def test_non_collocated_with_offsets(spec):
    """Sources on group ranks 0-3, destinations on 4-7 of an 8-rank group."""
    _, src = trainer(spec)
    dst_t, dst = engine(spec)
    reports = refit.swap_model_weights(src + [None] * 4, [None] * 4 + dst, "local",
                                       src_rank_offset=0, dst_rank_offset=4)
    assert all(r.bytes_local == 0 for r in reports)
    assert sum(r.bytes_received for r in reports[:4]) == 0
    for got, want in zip(dst_t, expected()):
        assert_equal_shards(got, want)


def test_node_fanout(spec):
    """Sources on node 0 (ranks 0-3), two expert-parallel replicas of the
    destination on node 1 (ranks 4-7): with fan-out the sources send each
    byte once per node, a leader forwards it, and the shards are the same."""
    layout = "tp=1,ep=2"
    sent = {}
    for fanout in (0, 4):
        refit.clear_all_caches()
        _, src = trainer(spec)
        dst_t, dst = engine(spec, layout)
        reports = refit.swap_model_weights(src + [None] * 4, [None] * 4 + dst, "local",
                                           dst_rank_offset=4,
                                           fanout_gpus_per_node=fanout)
        sent[fanout] = sum(r.bytes_sent for r in reports[:4])
        for got, want in zip(dst_t, expected(layout)):
            assert_equal_shards(got, want)
    assert 0 < sent[4] < sent[0]
    with pytest.raises(ValueError, match="fanout_gpus_per_node"):
        refit.swap_model_weights(src + [None] * 4, [None] * 4 + dst, "local",
                                 dst_rank_offset=4, fanout_gpus_per_node=-1)


def test_numpy_and_module_params(spec):
    src_np = [refit.load_shards(CKPT, SRC, r, WORLD, framework="numpy") for r in range(WORLD)]
    src = [refit.ShardedModel(spec, SRC, r, WORLD, t) for r, t in enumerate(src_np)]
    modules = []
    for r in range(WORLD):
        m = torch.nn.Module()
        for i, (name, (shape, dtype)) in enumerate(refit.shard_shapes(spec, DST, r, WORLD).items()):
            holder = m
            *path, leaf = ("module." + name).split(".")  # a DDP-style wrapper
            for part in path:
                if not hasattr(holder, part):
                    holder.add_module(part, torch.nn.Module())
                holder = getattr(holder, part)
            holder.register_parameter(leaf, torch.nn.Parameter(
                torch.zeros(shape, dtype=refit.torch_dtype(dtype)), requires_grad=False))
        m.register_buffer("rotary_inv_freq", torch.ones(4))  # not a weight: ignored
        modules.append(m)
    dst = [refit.ShardedModel(spec, DST, r, WORLD, m) for r, m in enumerate(modules)]
    refit.swap_model_weights(src, dst, "local")
    for r, want in enumerate(expected()):
        got = {n.removeprefix("module."): p for n, p in modules[r].named_parameters()}
        assert_equal_shards(got, want)


def test_quantised_destination(spec):
    """fp8-block: the same bytes from any source layout, and close to BF16."""
    _, src = trainer(spec)
    q_t, q = engine(spec, transform="fp8-block")
    refit.swap_model_weights(src, q, "local", transform="fp8-block")
    direct_src = [refit.ShardedModel(spec, DST, r, WORLD, t) for r, t in enumerate(expected())]
    d_t, d = engine(spec, transform="fp8-block")
    refit.swap_model_weights(direct_src, d, "local", transform="fp8-block")
    for a, b in zip(q_t, d_t):
        assert_equal_shards(a, b)
    w = "decoder.layers.0.self_attention.linear_qkv.weight"
    fp8, scale = q_t[0][w], q_t[0][w + "_scale_inv"]
    assert fp8.dtype in (torch.uint8, getattr(torch, "float8_e4m3fn", torch.uint8))
    values = e4m3_values()[fp8.view(torch.uint8).numpy().astype(np.int64)]
    blocks = np.kron(scale.numpy(), np.ones((128, 128), np.float32))[:192, :64]
    want = expected()[0][w].numpy()
    err = np.abs(values * blocks - want)
    assert np.all(err <= np.maximum(np.abs(want) * 2.0**-4, blocks * 2.0**-9) * 1.0001)


def e4m3_values():
    """Every OCP FP8 E4M3 (fn) code as a float32 (NaN codes as NaN)."""
    codes = np.arange(256)
    sign = np.where(codes & 0x80, -1.0, 1.0)
    exp, man = (codes >> 3) & 0xF, codes & 0x7
    mag = np.where(exp == 0, man / 8.0 * 2.0**-6, (1 + man / 8.0) * 2.0 ** (exp - 7.0))
    mag = np.where((exp == 15) & (man == 7), np.nan, mag)
    return (sign * mag).astype(np.float32)


def test_gil_is_released(spec):
    """Another Python thread runs while a refit moves bytes.

    No timing: with a switch interval of an hour CPython never takes the GIL
    from a running thread, so the main thread can only run while the worker
    is inside a call that releases the GIL. The worker refits until the main
    thread says it ran (or 200 refits, when the GIL is never released)."""
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
           "hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 2,
           "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 128,
           "torch_dtype": "bfloat16", "tie_word_embeddings": False}
    big = refit.ModelSpec.from_config(cfg)
    src = [refit.ShardedModel(big, "tp=1", 0, 1, refit.empty_shards(big, "tp=1", 0, 1))]
    dst = [refit.ShardedModel(big, "tp=1", 0, 1, refit.empty_shards(big, "tp=1", 0, 1))]
    refit.swap_model_weights(src, dst, "local")  # plan and copy service cached
    started, main_ran = threading.Event(), threading.Event()
    refits = []

    def worker():
        started.set()
        while not main_ran.is_set() and len(refits) < 200:
            refit.swap_model_weights(src, dst, "local")
            refits.append(1)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(3600.0)
    try:
        thread = threading.Thread(target=worker)
        thread.start()
        started.wait()
        # Here only if the worker released the GIL: inside a refit, or when
        # it finished its 200 refits.
        finished_first = len(refits) >= 200
        main_ran.set()
        thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert not finished_first, "the main thread never ran during 200 refits"
    assert len(refits) < 200


def test_cuda_group_without_a_device(spec):
    with pytest.raises(ValueError, match="device 'gpu'"):
        refit.LocalGroup(4, device="gpu")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present (test_cuda.py covers it)")
    _, src = trainer(spec)
    dst_t, dst = engine(spec, fill=3.0)
    group = refit.LocalGroup(WORLD, device="cuda")
    assert group.device == "cuda" and dst[0].device == "cpu"
    with pytest.raises((refit.RefitError, NotImplementedError), match="(?i)cuda"):
        refit.swap_model_weights(src, dst, "local", group=group)
    assert group.weight_version == 0
