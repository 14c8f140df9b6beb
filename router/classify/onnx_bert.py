"""Build the ONNX graph of a BERT encoder straight from its safetensors and config.json, without torch.

The embedder that sentence-transformers packages ship (all-MiniLM-L6-v2) is a plain BERT: embeddings,
N layers of self-attention and a GELU feed-forward block, post-LayerNorm. Writing that graph with
`onnx.helper` from the weights takes a second and needs only `onnx`, `safetensors` and numpy, so the
default install runs the embedder on onnxruntime without torch (a multi-GB install) at any point. The
graph maps token ids and the attention mask to the last layer's token states, the same contract the
torch export had; pooling stays in numpy. The vectors match sentence-transformers' to cosine ≥ 0.9999
(tests/classify/test_onnx_bert.py).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

OPSET = 17  # LayerNormalization arrived in opset 17


class _Graph:
    """Collects nodes and initialisers; every helper returns the name of its output."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.weights = weights
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def constant(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(value, name=name))
        return name

    def weight(self, name: str, transpose: bool = False) -> str:
        value = self.weights[name]
        return self.constant(name, np.ascontiguousarray(value.T if transpose else value))

    def op(self, op_type: str, inputs: list[str], hint: str = "", **attributes: Any) -> str:
        from onnx import helper

        output = self._name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [output], **attributes))
        return output

    def linear(self, x: str, prefix: str) -> str:
        """x @ W.T + b, the torch Linear convention (the weight is stored as out-by-in)."""
        product = self.op("MatMul", [x, self.weight(f"{prefix}.weight", transpose=True)])
        return self.op("Add", [product, self.weight(f"{prefix}.bias")])

    def layer_norm(self, x: str, prefix: str, epsilon: float) -> str:
        scale, bias = self.weight(f"{prefix}.weight"), self.weight(f"{prefix}.bias")
        return self.op("LayerNormalization", [x, scale, bias], axis=-1, epsilon=epsilon)


def _attention(g: _Graph, x: str, prefix: str, heads: int, head_size: int, mask_bias: str) -> str:
    split_shape = g.constant(f"{prefix}.split_shape", np.array([0, 0, heads, head_size], dtype=np.int64))

    def heads_first(name: str) -> str:  # (batch, tokens, hidden) → (batch, heads, tokens, head_size)
        projected = g.linear(x, f"{prefix}.self.{name}")
        return g.op("Transpose", [g.op("Reshape", [projected, split_shape])], perm=[0, 2, 1, 3])

    query, key, value = heads_first("query"), heads_first("key"), heads_first("value")
    scale = g.constant(f"{prefix}.scale", np.array(1.0 / math.sqrt(head_size), dtype=np.float32))
    scores = g.op("Mul", [g.op("MatMul", [query, g.op("Transpose", [key], perm=[0, 1, 3, 2])]), scale])
    weights = g.op("Softmax", [g.op("Add", [scores, mask_bias])], axis=-1)
    context = g.op("Transpose", [g.op("MatMul", [weights, value])], perm=[0, 2, 1, 3])
    merge_shape = g.constant(f"{prefix}.merge_shape", np.array([0, 0, heads * head_size], dtype=np.int64))
    return g.linear(g.op("Reshape", [context, merge_shape]), f"{prefix}.output.dense")


def _gelu(g: _Graph, x: str, prefix: str) -> str:
    """The exact (erf) GELU that BERT's `gelu` means: x · ½ · (1 + erf(x / √2))."""
    root2 = g.constant(f"{prefix}.sqrt2", np.array(math.sqrt(2.0), dtype=np.float32))
    one = g.constant(f"{prefix}.one", np.array(1.0, dtype=np.float32))
    half = g.constant(f"{prefix}.half", np.array(0.5, dtype=np.float32))
    erf = g.op("Erf", [g.op("Div", [x, root2])])
    return g.op("Mul", [g.op("Mul", [x, g.op("Add", [erf, one])]), half])


def build_bert_onnx(model_dir: Path) -> bytes:
    """The serialised ONNX model: (input_ids, attention_mask) int64 [batch, tokens] → token_states float32."""
    from onnx import TensorProto, checker, helper
    from safetensors.numpy import load_file

    config = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") != "bert" or config.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"{model_dir}: only BERT encoders with GELU are built without torch")
    weights = {k.removeprefix("bert."): v for k, v in load_file(str(model_dir / "model.safetensors")).items()}
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    epsilon = float(config.get("layer_norm_eps", 1e-12))
    g = _Graph(weights)

    # Embeddings: word + position + token type (all zeros: one segment), then LayerNorm.
    words = g.op("Gather", [g.weight("embeddings.word_embeddings.weight"), "input_ids"], axis=0)
    shape = g.op("Shape", ["input_ids"])
    tokens = g.op("Gather", [shape, g.constant("one_index", np.array(1, dtype=np.int64))], axis=0)
    zero = g.constant("zero_i64", np.array(0, dtype=np.int64))
    step = g.constant("one_i64", np.array(1, dtype=np.int64))
    positions = g.op("Range", [zero, tokens, step])
    position_vectors = g.op("Gather", [g.weight("embeddings.position_embeddings.weight"), positions], axis=0)
    segment = g.constant("segment0", weights["embeddings.token_type_embeddings.weight"][0].astype(np.float32))
    summed = g.op("Add", [g.op("Add", [words, position_vectors]), segment])
    x = g.layer_norm(summed, "embeddings.LayerNorm", epsilon)

    # Padding positions get -10000 added to their attention scores, as BERT does: (1 - mask) · -10000.
    mask = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    mask = g.op("Unsqueeze", [mask, g.constant("mask_axes", np.array([1, 2], dtype=np.int64))])
    ones = g.constant("mask_one", np.array(1.0, dtype=np.float32))
    large = g.constant("mask_large", np.array(-10000.0, dtype=np.float32))
    mask_bias = g.op("Mul", [g.op("Sub", [ones, mask]), large])

    for layer in range(int(config["num_hidden_layers"])):
        prefix = f"encoder.layer.{layer}"
        attended = _attention(g, x, f"{prefix}.attention", heads, hidden // heads, mask_bias)
        x = g.layer_norm(g.op("Add", [attended, x]), f"{prefix}.attention.output.LayerNorm", epsilon)
        expanded = _gelu(g, g.linear(x, f"{prefix}.intermediate.dense"), prefix)
        x = g.layer_norm(
            g.op("Add", [g.linear(expanded, f"{prefix}.output.dense"), x]), f"{prefix}.output.LayerNorm", epsilon
        )

    g.nodes.append(helper.make_node("Identity", [x], ["token_states"]))
    graph = helper.make_graph(
        g.nodes,
        "bert-token-states",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info("token_states", TensorProto.FLOAT, ["batch", "tokens", hidden])],
        g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="hybrid-router")
    model.ir_version = 8  # readable by every onnxruntime since 1.10
    checker.check_model(model)
    return model.SerializeToString()
