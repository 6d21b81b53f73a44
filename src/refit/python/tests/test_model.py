"""ModelSpec, ParallelLayout, shard_shapes, rank_coordinates, load_shards."""

import json

import numpy as np
import pytest
import torch

import refit
from conftest import CKPT


def test_spec_from_folder_file_and_dict():
    a = refit.ModelSpec.from_config(CKPT)
    b = refit.ModelSpec.from_config(str(CKPT / "config.json"))
    c = refit.ModelSpec.from_config(json.loads((CKPT / "config.json").read_text()))
    for s in (a, b, c):
        assert s.architecture == "Qwen3MoeForCausalLM"
        assert (s.num_layers, s.num_experts, s.hidden_size, s.vocab_size) == (2, 4, 64, 7)
    assert a.param_names == c.param_names
    assert a.total_params == 83712
    p = {d["name"]: d for d in a.params}
    qkv = p["decoder.layers.0.self_attention.linear_qkv.weight"]
    assert qkv["shard"] == "column" and qkv["tp_group"] == "dense"
    assert qkv["shape"] == (192, 64) and qkv["dtype"] == "F32"
    fc1 = p["decoder.layers.1.mlp.experts.linear_fc1.weight3"]
    assert (fc1["shard"], fc1["tp_group"], fc1["expert"]) == ("gated_column", "expert", 3)


def test_spec_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        refit.ModelSpec.from_config(tmp_path)
    cfg = json.loads((CKPT / "config.json").read_text())
    with pytest.raises(NotImplementedError, match="NoSuchForCausalLM"):
        refit.ModelSpec.from_config(dict(cfg, architectures=["NoSuchForCausalLM"]))
    del cfg["hidden_size"]
    with pytest.raises(ValueError, match="hidden_size"):
        refit.ModelSpec.from_config(cfg)


def test_parallel_layout():
    l = refit.ParallelLayout.parse("ep=2,tp=2")
    assert (l.tp, l.pp, l.ep, l.etp, l.cp) == (2, 1, 2, 2, 1)
    assert str(l) == "tp=2,pp=1,ep=2,etp=2"
    assert l == refit.ParallelLayout("tp=2,ep=2")
    with pytest.raises(ValueError, match="tq"):
        refit.ParallelLayout.parse("tq=2")


def test_shard_shapes_match_load_shards(spec):
    shapes = refit.shard_shapes(spec, "tp=2,ep=2", 1, 4)
    tensors = refit.load_shards(CKPT, "tp=2,ep=2", 1, 4)
    assert list(shapes) == list(tensors)
    for name, (shape, dtype) in shapes.items():
        assert tuple(tensors[name].shape) == shape
        assert dtype == "F32" and tensors[name].dtype == torch.float32
    # Rank 1 of tp=2,ep=2: experts 0-1 (ep rank 0), half of every TP split.
    assert "decoder.layers.0.mlp.experts.linear_fc1.weight1" in shapes
    assert "decoder.layers.0.mlp.experts.linear_fc1.weight2" not in shapes
    assert shapes["decoder.layers.0.self_attention.linear_qkv.weight"][0] == (96, 64)
    # Vocabulary padded to 128 * tp rows, then split.
    assert shapes["embedding.word_embeddings.weight"][0] == (128, 64)


def test_shard_shapes_with_transform(spec):
    shapes = refit.shard_shapes(spec, "tp=1,ep=4", 0, 4, transform="fp8-block")
    w = "decoder.layers.0.self_attention.linear_qkv.weight"
    assert shapes[w] == ((192, 64), "F8_E4M3")
    assert shapes[w + "_scale_inv"] == ((2, 1), "F32")
    with pytest.raises(ValueError, match="fp9"):
        refit.shard_shapes(spec, "tp=1,ep=4", 0, 4, transform="fp9")
    with pytest.raises(ValueError):
        refit.shard_shapes(spec, "tp=3", 0, 3)


def test_rank_coordinates(spec):
    c = refit.rank_coordinates(spec, "tp=2,ep=2", 3, 4)
    assert (c["tp"], c["etp"], c["ep"], c["dp"], c["pp"]) == (1, 1, 1, 1, 0)
    assert c["experts_per_rank"] == 2
    with pytest.raises(ValueError, match="rank 4"):
        refit.rank_coordinates(spec, "tp=2,ep=2", 4, 4)


def test_load_shards_slices_the_checkpoint(spec):
    """Two TP shards of a row-parallel weight are the halves of the TP=1 one."""
    whole = refit.load_shards(CKPT, "tp=1", 0, 1)
    halves = [refit.load_shards(CKPT, "tp=2", r, 2) for r in range(2)]
    name = "decoder.layers.1.self_attention.linear_proj.weight"
    assert torch.equal(torch.cat([h[name] for h in halves], dim=1), whole[name])
    as_numpy = refit.load_shards(CKPT, "tp=2", 1, 2, framework="numpy")
    assert isinstance(as_numpy[name], np.ndarray)
    assert np.array_equal(as_numpy[name], halves[1][name].numpy())
    with pytest.raises(FileNotFoundError):
        refit.load_shards(CKPT / "missing", "tp=1", 0, 1)


def test_transform_as_choices(spec):
    """A dict of `refit run`'s format flags, spelled as Python keys."""
    w = "decoder.layers.0.self_attention.linear_qkv.weight"
    small = refit.shard_shapes(spec, "tp=1", 0, 1, {"dst_dtype": "fp8-block", "fp8_block": 64})
    assert small[w + "_scale_inv"] == ((3, 1), "F32")
    mx = refit.shard_shapes(spec, "tp=1", 0, 1, {"dst_dtype": "mxfp8", "mxfp8_swizzled": True})
    assert mx[w][1] == "F8_E4M3" and mx[w + "_scale"][1] == "U8"
    cast = refit.shard_shapes(spec, "tp=1", 0, 1, {"cast": ["*.linear_qkv.weight=bf16"]})
    assert cast[w][1] == "BF16" and cast["decoder.final_layernorm.weight"][1] == "F32"
    with pytest.raises(ValueError, match='unknown key "fp8_scales"'):
        refit.shard_shapes(spec, "tp=1", 0, 1, {"dst_dtype": "fp8-block", "fp8_scales": "ue8m0"})
    with pytest.raises(ValueError, match=r'transform\["fp8_scale"\]: unknown value \'e4m3\''):
        refit.shard_shapes(spec, "tp=1", 0, 1, {"dst_dtype": "fp8-block", "fp8_scale": "e4m3"})
    with pytest.raises(ValueError, match=r'transform\["fp8_block"\]: 1.5 has the wrong type'):
        refit.shard_shapes(spec, "tp=1", 0, 1, {"fp8_block": 1.5})


def test_stubs_cover_the_api():
    """refit/__init__.pyi declares every public name, with the same signatures."""
    import ast
    import inspect
    from pathlib import Path

    stub = ast.parse((Path(refit.__file__).with_name("__init__.pyi")).read_text())
    declared = {n.name: n for n in stub.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    assert set(refit.__all__) <= set(declared), set(refit.__all__) - set(declared)
    for name in refit.__all__:
        obj = getattr(refit, name)
        node = declared[name]
        if isinstance(node, ast.FunctionDef) and inspect.isfunction(obj):
            want = list(inspect.signature(obj).parameters)
            assert [a.arg for a in node.args.args] == want, name
        assert obj.__doc__, f"{name} has no docstring"
