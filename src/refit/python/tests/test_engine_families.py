"""Refit straight into inference-engine layouts (layout family=vllm, sglang,
hf; docs/LAYOUTS.md §2): the destination tensors carry the engine's names and
layout, and equal the checkpoint's HF tensors cut by the engine's loading
rules, sliced here with numpy from the safetensors file."""

import json
import struct
import zlib

import numpy as np
import pytest
import torch

import refit
from conftest import CKPT, SRC, WORLD, engine, trainer

VLLM = "tp=2,ep=2,family=vllm"


def hf_tensors():
    """{HF name: numpy array} of the bundled checkpoint (F32)."""
    raw = (CKPT / "model.safetensors").read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        assert h["dtype"] == "F32"
        a, b = h["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], np.float32).reshape(h["shape"])
    return out


def config():
    return json.loads((CKPT / "config.json").read_text())


def expected_vllm(hf, rank, tp=2, ep=2):
    """Some of rank `rank`'s vLLM tensors by vLLM's loader rules."""
    c = config()
    r, e = rank % tp, (rank // tp) % ep
    nh, kv, d = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    p = "model.layers.0."
    q = hf[p + "self_attn.q_proj.weight"][r * nh // tp * d:(r + 1) * nh // tp * d]
    k = hf[p + "self_attn.k_proj.weight"][r * kv // tp * d:(r + 1) * kv // tp * d]
    v = hf[p + "self_attn.v_proj.weight"][r * kv // tp * d:(r + 1) * kv // tp * d]
    experts = c.get("num_experts", c.get("num_local_experts"))
    local, inter = experts // ep, c["moe_intermediate_size"] // tp
    w13 = []
    for j in range(local):
        x = f"{p}mlp.experts.{e * local + j}."
        rows = slice(r * inter, (r + 1) * inter)
        w13.append(np.concatenate([hf[x + "gate_proj.weight"][rows],
                                   hf[x + "up_proj.weight"][rows]]))
    emb = hf["model.embed_tokens.weight"]
    padded = -(-emb.shape[0] // 64) * 64
    full = np.zeros((padded, emb.shape[1]), np.float32)
    full[:emb.shape[0]] = emb
    per = padded // tp
    return {p + "self_attn.qkv_proj.weight": np.concatenate([q, k, v]),
            p + "mlp.experts.w13_weight": np.stack(w13),
            "model.embed_tokens.weight": full[r * per:(r + 1) * per]}


def test_vllm_shapes_are_the_engines(spec):
    shapes = refit.shard_shapes(spec, VLLM, 0, WORLD)
    assert "model.layers.0.mlp.experts.w13_weight" in shapes  # stacked always
    assert "model.layers.0.self_attn.qkv_proj.weight" in shapes
    assert not any(n.startswith("decoder.") for n in shapes)
    assert refit.ParallelLayout(VLLM).family == "vllm"


@pytest.mark.parametrize("family", ["vllm", "sglang"])
def test_engine_destination_equals_the_loaders_slices(spec, family):
    hf = hf_tensors()
    _, src = trainer(spec)
    layout = VLLM.replace("vllm", family)
    got_t, got = engine(spec, layout=layout)
    refit.swap_model_weights(src, got, "local")
    for rank in range(WORLD):
        for name, want in expected_vllm(hf, rank).items():
            assert np.array_equal(got_t[rank][name].numpy(), want), (rank, name)


def test_hf_destination_is_the_checkpoint(spec):
    hf = hf_tensors()
    _, src = trainer(spec)
    layout = "tp=1,ep=2,family=hf"
    got_t, got = engine(spec, layout=layout)
    refit.swap_model_weights(src, got, "local")
    seen = set()
    for t in got_t:
        for name, v in t.items():
            assert np.array_equal(v.numpy(), hf[name]), name
            seen.add(name)
        q = t["model.layers.0.self_attn.q_proj.weight"]
        k = t["model.layers.0.self_attn.k_proj.weight"]
        assert k.data_ptr() == q.data_ptr() + q.numel() * q.element_size()
    assert seen == set(hf)


def test_hf_parts_apart_are_refused(spec):
    _, src = trainer(spec)
    layout = "tp=1,ep=2,family=hf"
    tensors = [{n: v.clone() for n, v in
                refit.empty_shards(spec, layout, r, WORLD).items()} for r in range(WORLD)]
    models = [refit.ShardedModel(spec, layout, r, WORLD, t) for r, t in enumerate(tensors)]
    with pytest.raises(ValueError, match="views of one buffer"):
        refit.swap_model_weights(src, models, "local")


def test_eplb_placement_with_replicas(spec):
    """vLLM's EPLB physical_to_logical_map in the layout (placement=...):
    each EP rank's w13_weight slot j holds the logical expert the map names,
    replicated experts included."""
    hf = hf_tensors()
    placement = [0, 1, 2, 3, 1, 2, 3, 0, 2, 3, 0, 1]  # 3 slots on each of 4 ranks
    layout = "tp=1,ep=4,etp=1,family=vllm,placement=" + ":".join(map(str, placement))
    assert refit.shard_shapes(spec, layout, 0, WORLD)[
        "model.layers.1.mlp.experts.w13_weight"][0] == (3, 64, 64)
    _, src = trainer(spec)
    got_t, got = engine(spec, layout=layout)
    refit.swap_model_weights(src, got, "local")
    for rank in range(WORLD):
        w13 = got_t[rank]["model.layers.1.mlp.experts.w13_weight"].numpy()
        for j in range(3):
            e = placement[rank * 3 + j]
            x = f"model.layers.1.mlp.experts.{e}."
            want = np.concatenate([hf[x + "gate_proj.weight"], hf[x + "up_proj.weight"]])
            assert np.array_equal(w13[j], want), (rank, j, e)


def test_mtp_layers_are_part_of_the_spec_on_request():
    """ModelSpec.from_config(mtp=True): DeepSeek-V3's MTP layer joins the
    model (mtp.layers.0.*, refit with it); without it the spec is unchanged."""
    config = CKPT.parents[1] / "model-configs" / "deepseek-v3"
    main = refit.ModelSpec.from_config(config)
    with_mtp = refit.ModelSpec.from_config(config, mtp=True)
    assert (main.mtp_layers, with_mtp.mtp_layers) == (0, 1)
    shapes = refit.shard_shapes(with_mtp, "tp=8,ep=32,etp=1", 0, 32)
    assert shapes["mtp.layers.0.eh_proj.weight"] == ((896, 14336), "BF16")
    engine = refit.shard_shapes(with_mtp, "tp=8,ep=32,etp=1,family=vllm", 0, 32)
    assert engine["model.layers.61.eh_proj.weight"] == ((7168, 14336), "BF16")
    assert "model.layers.61.mtp_block.mlp.experts.w13_weight" in engine


def test_kv_a_proj_without_q_lora_stays_unfused():
    """DeepSeek-V2-Lite-style MLA (no q LoRA): vLLM keeps kv_a_proj_with_mqa
    whole and unfused at every TP (a fused group missing its q_a member used
    to pick up an unrelated tensor and drop this one)."""
    dsv2 = refit.ModelSpec.from_config(CKPT.parent / "neural-api-tiny" / "deepseek_v2")
    for layout in ("tp=1,ep=4,family=vllm", "tp=2,ep=2,etp=1,family=sglang"):
        shapes = refit.shard_shapes(dsv2, layout, 0, 4)
        assert shapes["model.layers.0.self_attn.kv_a_proj_with_mqa.weight"] == ((9, 8), "F32")
        assert not any("fused_qkv_a" in n for n in shapes), layout


def test_engine_layouts_hold_routers_in_the_engines_dtype():
    """A BF16 model's router is F32 in Megatron and BF16 in vLLM and SGLang
    (ReplicatedLinear without params_dtype): the engine layouts list it in
    BF16 and the refit casts it on the sender, with no transform asked."""
    c = dict(config(), torch_dtype="bfloat16")
    spec = refit.ModelSpec.from_config(c)
    gate = "model.layers.0.mlp.gate.weight"
    router = "decoder.layers.0.mlp.router.weight"
    for family in ("vllm", "sglang"):
        shapes = refit.shard_shapes(spec, f"tp=2,ep=2,family={family}", 0, WORLD)
        assert shapes[gate][1] == "BF16", family
    assert refit.shard_shapes(spec, SRC, 0, WORLD)[router][1] == "F32"
    src = [refit.empty_shards(spec, SRC, r, WORLD) for r in range(WORLD)]
    for t in src:  # the same values on every rank that holds a tensor
        for name, v in t.items():
            gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
            v.copy_(torch.randn(v.shape, generator=gen).to(v.dtype))
    src_models = [refit.ShardedModel(spec, SRC, r, WORLD, t) for r, t in enumerate(src)]
    dst, dst_models = engine(spec, VLLM)
    refit.swap_model_weights(src_models, dst_models, "local")
    for r in range(WORLD):
        assert dst[r][gate].dtype == torch.bfloat16
        assert torch.equal(dst[r][gate], src[0][router].to(torch.bfloat16))
