"""Tensors of one rank: allocating them (empty_shards) and filling them from a
Hugging Face checkpoint as a Megatron trainer of that layout holds them
(load_shards). Conveniences for tests and examples: the engine never needs
them."""

from . import _refit


def torch_dtype(dtype):
    """The torch dtype that holds refit dtype ``dtype`` ("BF16", "F32",
    "F8_E4M3", "U8", ...). FP8 dtypes map to ``torch.uint8`` on a torch
    without float8 (refit then binds the bytes as FP8)."""
    import torch

    return getattr(torch, _refit.torch_dtype_name(dtype), torch.uint8)


def _numpy_dtype(dtype):
    import numpy as np

    names = {"BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "U16": np.uint16,
             "I16": np.int16, "U32": np.uint32, "I32": np.int32, "U64": np.uint64,
             "I64": np.int64, "F16": np.float16, "F32": np.float32,
             "F64": np.float64, "BF16": np.uint16, "F8_E4M3": np.uint8,
             "F8_E5M2": np.uint8}
    return names[dtype]


def empty_shards(spec, layout, rank, world_size, transform=None, device="cpu",
                 framework="torch", stacked_experts=False):
    """Zero-filled tensors for rank ``rank`` of ``layout``: {name: tensor} with
    the shapes and dtypes of :func:`shard_shapes` (``transform``: a
    destination format; ``stacked_experts``: each layer's routed experts as
    one stacked tensor per weight, vLLM's FusedMoE w13_weight / w2_weight).
    ``framework`` "torch" (on ``device``) or "numpy" (BF16 as uint16, FP8 as
    uint8)."""
    shapes = _refit.shard_shapes(spec, layout, rank, world_size, transform,
                                 stacked_experts)
    if framework not in ("torch", "numpy"):
        raise ValueError(f"framework {framework!r}: expected 'torch' or 'numpy'")
    if _refit.ParallelLayout(str(layout)).family == "hf":
        return _views_of_one_buffer(shapes, device, framework)
    if framework == "numpy":
        import numpy as np

        return {n: np.zeros(s, dtype=_numpy_dtype(d)) for n, (s, d) in shapes.items()}
    import torch

    return {n: torch.zeros(s, dtype=torch_dtype(d), device=device)
            for n, (s, d) in shapes.items()}


def _views_of_one_buffer(shapes, device, framework):
    """Zero-filled tensors that are views of one buffer, one after another in
    list order, each only aligned to its element size: the HF parts of one
    shard (q_proj, k_proj, v_proj; gate_proj, up_proj) are then adjacent, as
    binding them needs (family hf)."""
    itemsize = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1,
                "BF16": 2, "F16": 2, "U16": 2, "I16": 2, "F32": 4, "U32": 4,
                "I32": 4, "F64": 8, "U64": 8, "I64": 8}
    spans, at = [], 0
    for name, (shape, dtype) in shapes.items():
        size = itemsize[dtype]
        at = (at + size - 1) // size * size
        count = 1
        for d in shape:
            count *= d
        spans.append((name, shape, dtype, at, count * size))
        at += count * size
    if framework == "numpy":
        import numpy as np

        buf = np.zeros(max(at, 1), dtype=np.uint8)
        return {n: buf[o:o + b].view(_numpy_dtype(d)).reshape(s)
                for n, s, d, o, b in spans}
    import torch

    buf = torch.zeros(max(at, 1), dtype=torch.uint8, device=device)
    return {n: buf[o:o + b].view(torch_dtype(d)).view(s)
            for n, s, d, o, b in spans}


def load_shards(checkpoint_dir, layout, rank, world_size, framework="torch",
                stacked_experts=False, mtp=False):
    """The tensors rank ``rank`` of a Megatron trainer with ``layout`` (world
    ``world_size``) holds for the Hugging Face checkpoint in ``checkpoint_dir``
    (safetensors, with its config.json): {Megatron local name: tensor}, in the
    checkpoint's dtype, vocabulary padding rows zero. Block-FP8 checkpoints are
    dequantised. Experts may be stored per expert or stacked (transformers v5
    ``mlp.experts.gate_up_proj`` / ``down_proj``); ``stacked_experts`` returns
    each layer's routed experts stacked, as :func:`empty_shards`; ``mtp``
    adds the multi-token prediction layers (ModelSpec.from_config(mtp=True)).
    Raises FileNotFoundError / KeyError (no checkpoint, a
    missing tensor), ValueError (a layout that does not divide the model),
    RefitError (a tensor of the wrong shape or dtype, named)."""
    import os

    path = os.fspath(checkpoint_dir)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    ckpt = _refit._Checkpoint(path, mtp)
    tensors = empty_shards(ckpt.spec, layout, rank, world_size, framework=framework,
                           stacked_experts=stacked_experts)
    ckpt.fill(layout, rank, world_size, tensors)
    return tensors
