"""The integrity options: verify="checksum", dst_digests, atomic (a shadow
copy published only after every rank succeeded), partial_tensors."""

import ctypes
import ctypes.util

import pytest
import torch

import refit
from conftest import CKPT, DST, WORLD, assert_equal_shards, engine, trainer

EMBED = "embedding.word_embeddings.weight"  # 7 rows of weights, padded to 128


def xxh3():
    """XXH3_64bits (seed 0) of a tensor's bytes, from the xxhash module or the
    system's libxxhash; None when neither exists."""
    try:
        import xxhash

        return lambda t: xxhash.xxh3_64_intdigest(t.numpy().tobytes())
    except ImportError:
        pass
    name = ctypes.util.find_library("xxhash")
    if name is None:
        return None
    f = ctypes.CDLL(name).XXH3_64bits
    f.restype, f.argtypes = ctypes.c_uint64, [ctypes.c_void_p, ctypes.c_size_t]
    return lambda t: f(t.data_ptr(), t.numel() * t.element_size())


def test_atomic_publishes_the_plain_refits_bytes(spec):
    _, src = trainer(spec)
    plain_t, plain = engine(spec, fill=3.0)
    group = refit.LocalGroup(WORLD)
    refit.swap_model_weights(src, plain, "local", group=group)
    dst_t, dst = engine(spec, fill=3.0)
    reports = refit.swap_model_weights(src, dst, "local", group=group, atomic=True)
    for r in range(WORLD):
        assert_equal_shards(dst_t[r], plain_t[r])
        # The padding rows the plan does not write are published unchanged.
        assert bool((dst_t[r][EMBED][7:] == 3.0).all())
        nbytes = sum(t.numel() * t.element_size() for t in dst_t[r].values())
        assert reports[r].shadow_bytes == nbytes
    assert [r.weight_version for r in reports] == [2] * WORLD
    assert group.weight_version == 2
    assert group.partial_tensors == [[]] * WORLD
    # Without atomic, no shadow.
    again = refit.swap_model_weights(src, plain, "local", group=group)
    assert [r.shadow_bytes for r in again] == [0] * WORLD
    assert [r.publish_ms for r in again] == [0.0] * WORLD


def test_verify_checksum_is_bit_exact(spec):
    _, src = trainer(spec)
    dst_t, dst = engine(spec)
    reports = refit.swap_model_weights(src, dst, "local", verify="checksum",
                                       atomic=True)
    for r in range(WORLD):
        assert_equal_shards(dst_t[r], refit.load_shards(CKPT, DST, r, WORLD))
    assert [x.weight_version for x in reports] == [reports[0].weight_version] * WORLD
    assert all(x.verified for x in reports)


def test_verify_defaults_to_checksums_on_host_tensors(spec):
    """verify="auto" (the default) checksums host refits; "none" and None
    trust the transport."""
    _, src = trainer(spec)
    _, dst = engine(spec)
    assert all(r.verified for r in refit.swap_model_weights(src, dst, "local"))
    for off in ("none", None):
        reports = refit.swap_model_weights(src, dst, "local", verify=off)
        assert not any(r.verified for r in reports)


def test_dst_digests(spec):
    _, src = trainer(spec)
    dst_t, dst = engine(spec)
    group = refit.LocalGroup(WORLD)
    first = refit.swap_model_weights(src, dst, "local", group=group, dst_digests=True)
    for r in range(WORLD):
        names = [n for n, _ in first[r].dst_digests]
        assert names == sorted(dst_t[r])
        assert all(0 <= d < 2**64 for _, d in first[r].dst_digests)
    h = xxh3()
    if h is not None:
        for r in range(WORLD):
            assert first[r].dst_digests == [(n, h(dst_t[r][n])) for n in sorted(dst_t[r])]
    # The same refit again: the same digests; one changed source byte: the
    # tensors it reaches change digest.
    again = refit.swap_model_weights(src, dst, "local", group=group, dst_digests=True)
    assert [x.dst_digests for x in again] == [x.dst_digests for x in first]
    src_t, src = trainer(spec)
    for t in src_t:
        t[EMBED][0, 0] += 1.0
    changed = refit.swap_model_weights(src, dst, "local", group=group, dst_digests=True)
    for r in range(WORLD):
        before, after = dict(first[r].dst_digests), dict(changed[r].dst_digests)
        assert before[EMBED] != after[EMBED]
        assert {n for n in before if before[n] != after[n]} == {EMBED}
    assert refit.swap_model_weights(src, dst, "local", group=group)[0].dst_digests == []


def test_a_failure_before_bytes_move_names_no_partial_tensor(spec):
    _, src = trainer(spec)
    dst_t, _ = engine(spec, fill=3.0)
    dst_t[1].pop(EMBED)
    dst = [refit.ShardedModel(spec, DST, r, WORLD, t) for r, t in enumerate(dst_t)]
    group = refit.LocalGroup(WORLD)
    with pytest.raises(KeyError, match=f"rank 1: destination tensor {EMBED}"):
        refit.swap_model_weights(src, dst, "local", group=group, atomic=True)
    assert group.partial_tensors == [[]] * WORLD
    assert group.weight_version == 0
    assert all(bool((v == 3.0).all()) for t in dst_t for v in t.values())


@pytest.mark.parametrize("kwargs, match", [
    ({"verify": "crc"}, "verify"),
    ({"verify": "off"}, "verify"),
    ({"verify": True}, "verify"),
    ({"dst_digests": 1}, "dst_digests"),
    ({"dst_digests": None}, "dst_digests"),
    ({"atomic": "yes"}, "atomic"),
    ({"atomic": 0}, "atomic"),
])
def test_bad_values(spec, kwargs, match):
    _, src = trainer(spec)
    dst_t, dst = engine(spec, fill=3.0)
    group = refit.LocalGroup(WORLD)
    service = refit.get_or_create_service("local", group)
    calls = [
        lambda: refit.swap_model_weights(src, dst, "local", group=group, **kwargs),
        lambda: refit.prepare_swap_model_weights(src, dst, "local", group=group,
                                                 **kwargs),
        lambda: refit.reshard_model_weights(src, dst, service, **kwargs),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=match):
            call()
    assert group.weight_version == 0
    assert all(bool((v == 3.0).all()) for t in dst_t for v in t.values())


def test_prepare_with_the_same_options_builds_no_plan(spec):
    _, src = trainer(spec)
    _, dst = engine(spec)
    refit.prepare_swap_model_weights(src, dst, "local", verify="checksum", atomic=True)
    reports = refit.swap_model_weights(src, dst, "local", verify="checksum", atomic=True)
    assert not any(r.plan_built for r in reports)
