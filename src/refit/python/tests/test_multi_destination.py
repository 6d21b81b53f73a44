"""Several destinations in one refit pass: a DeepSeek-V3-style main model and
its MTP draft (part=main / part=mtp) on the same ranks, and prefill and decode
pools on their own ranks; each destination must hold exactly the bytes a refit
into it alone writes."""

import json
import zlib

import pytest
import torch

import refit

# DeepSeek-V3's structure at toy widths, with one MTP layer.
CONFIG = {
    "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
    "vocab_size": 500, "hidden_size": 64, "intermediate_size": 96,
    "moe_intermediate_size": 32, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 4,
    "n_routed_experts": 8, "n_shared_experts": 1, "num_experts_per_tok": 2,
    "first_k_dense_replace": 1, "moe_layer_freq": 1, "n_group": 1,
    "topk_group": 1, "q_lora_rank": 32, "kv_lora_rank": 16,
    "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16,
    "tie_word_embeddings": False, "num_nextn_predict_layers": 1,
    "torch_dtype": "bfloat16"}
MAIN = "tp=2,ep=2,etp=1,family=vllm,part=main"
DRAFT = "tp=2,family=vllm,part=mtp"


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    d = tmp_path_factory.mktemp("dsv3")
    (d / "config.json").write_text(json.dumps(CONFIG))
    return refit.ModelSpec.from_config(d, mtp=True)


def sources(spec, layout, world):
    """Random source shards, seeded by name: replicas of a tensor agree."""
    models = []
    for r in range(world):
        t = refit.empty_shards(spec, layout, r, world)
        for name, v in t.items():
            g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
            v.copy_(torch.randn(v.shape, generator=g).to(v.dtype))
        models.append(refit.ShardedModel(spec, layout, r, world, t))
    return models


def targets(spec, layout, world):
    tensors = [refit.empty_shards(spec, layout, r, world) for r in range(world)]
    return tensors, [refit.ShardedModel(spec, layout, r, world, t)
                     for r, t in enumerate(tensors)]


def assert_same(a, b):
    for ta, tb in zip(a, b):
        assert ta.keys() == tb.keys()
        for name in ta:
            assert torch.equal(ta[name], tb[name]), name


def test_main_and_draft_in_one_pass(spec):
    src = sources(spec, "tp=1,ep=2", 2)
    main_t, main = targets(spec, MAIN, 2)
    draft_t, draft = targets(spec, DRAFT, 2)
    reports = refit.swap_model_weights(src, [[main[r], draft[r]] for r in range(2)],
                                       "local")
    assert sum(r.bytes_copied for r in reports) == 2 * 500 * 64 * 2
    assert "lm_head.weight" in draft_t[0] and "model.layers.2.eh_proj.weight" in draft_t[0]
    assert not any(n.startswith("model.layers.2.") for n in main_t[0])
    alone_main_t, alone_main = targets(spec, MAIN, 2)
    alone_draft_t, alone_draft = targets(spec, DRAFT, 2)
    refit.swap_model_weights(src, alone_main, "local")
    refit.swap_model_weights(src, alone_draft, "local")
    assert_same(main_t, alone_main_t)
    assert_same(draft_t, alone_draft_t)


def test_prefill_and_decode_pools_in_one_pass(spec):
    src = sources(spec, "tp=2", 2) + [None] * 6
    prefill_t, prefill = targets(spec, "tp=2,ep=2,etp=1,family=vllm", 2)
    decode_t, decode = targets(spec, "tp=1,ep=4,family=vllm", 4)
    entries = [None, None] + [(m, 2) for m in prefill] + [(m, 4) for m in decode]
    reports = refit.swap_model_weights(src, entries, "local", verify="checksum")
    assert all(r.verified and r.weight_version == 1 for r in reports)
    alone_t, alone = targets(spec, "tp=1,ep=4,family=vllm", 4)
    refit.swap_model_weights(src, [None] * 4 + alone, "local", dst_rank_offset=4)
    assert_same(decode_t, alone_t)


def test_bad_entries_raise(spec):
    src = sources(spec, "tp=1,ep=2", 2)
    _, main = targets(spec, MAIN, 2)
    _, draft = targets(spec, DRAFT, 2)
    with pytest.raises(ValueError, match="rank_offset"):
        refit.swap_model_weights(src, [(main[0], "0"), main[1]], "local")
    with pytest.raises(refit.RefitError, match="rank 1's inputs differ"):
        refit.swap_model_weights(src, [[main[0], draft[0]], main[1]], "local")
    with pytest.raises(ValueError, match="atomic takes one per rank"):
        refit.swap_model_weights(src, [[main[r], draft[r]] for r in range(2)], "local",
                                 atomic=True)
