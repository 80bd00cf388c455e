"""The IR: types, validation, JSON, dimension expressions, the op registry."""

import dataclasses
import json
import re

import numpy as np
import pytest

from unigraph import dims
from unigraph.errors import GraphError
from unigraph.ir import Graph, Node, Source, TensorType, Variable
from unigraph.ops import REGISTRY
from unigraph.ops.registry import Registry, _opdef, conforms, SymShape


def mlp_graph() -> Graph:
    return Graph(
        inputs=("x",),
        outputs=("y",),
        nodes=(
            Node("dense", ("x", "params/l/kernel", "params/l/bias"), ("h",), {}, Source("l", "m.py:3")),
            Node("leaky_relu", ("h",), ("y",), {"alpha": 0.1}),
        ),
        types={
            "x": TensorType(("batch", 4), "float32"),
            "params/l/kernel": TensorType((4, 3), "float32"),
            "params/l/bias": TensorType((3,), "float32"),
            "h": TensorType(("batch", 3), "float32"),
            "y": TensorType(("batch", 3), "float32"),
        },
        variables={
            "params/l/kernel": Variable("params", ("l", "kernel")),
            "params/l/bias": Variable("params", ("l", "bias")),
        },
    ).validate()


def test_tensor_type_prints_and_round_trips():
    t = TensorType(("batch", "2*seq + 1", 3), "bfloat16")
    assert str(t) == "bfloat16[batch,2*seq + 1,3]"
    assert TensorType.from_json(json.loads(json.dumps(t.to_json()))) == t
    with pytest.raises(ValueError, match="dimension"):
        TensorType(("batch; import os",), "float32")
    with pytest.raises(ValueError, match="dtype"):
        TensorType((1,), "float33")


def test_dimension_expressions():
    env = {"batch": 3, "seq": 5}
    assert dims.evaluate("2*batch + seq", env) == 11
    assert dims.evaluate("floordiv(seq, 2)", env) == 2
    assert dims.evaluate("mod(seq, 3)", env) == 2
    assert dims.evaluate("max(batch, seq) - min(batch, seq)", env) == 2
    assert dims.symbols("2*batch + floordiv(seq, 2)") == {"batch", "seq"}
    assert dims.is_symbol("batch") and not dims.is_symbol("batch + 1")
    assert dims.same_dim("2*batch", "batch + batch")
    with pytest.raises(ValueError):
        dims.check_dim("__import__('os')")
    with pytest.raises(KeyError):
        dims.evaluate("batch * heads", env)


def test_graph_prints_every_node_with_its_source():
    text = str(mlp_graph())
    assert "h: float32[batch,3] = dense(x, params/l/kernel, params/l/bias)" in text
    assert "# in l, m.py:3" in text
    assert "leaky_relu(h, alpha=0.1)" in text


def test_graph_json_round_trip_keeps_everything():
    graph = mlp_graph()
    constant = np.arange(3, dtype=np.float32)
    graph = Graph(
        inputs=graph.inputs,
        outputs=("z",),
        nodes=(*graph.nodes, Node("add", ("y", "c"), ("z",))),
        types={**graph.types, "c": TensorType((3,), "float32"), "z": TensorType(("batch", 3), "float32")},
        variables=graph.variables,
        constants={"c": constant},
    ).validate()
    again = Graph.from_json(json.loads(json.dumps(graph.to_json())))
    assert again.to_json() == graph.to_json()
    np.testing.assert_array_equal(again.constants["c"], constant)
    store = {}
    data = graph.to_json(constant_store=store)
    assert "data" not in data["constants"]["c"] and store["c"] is constant
    assert Graph.from_json(data, store).to_json() == graph.to_json()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda n: Node("no_such_op", n.inputs, n.outputs), "unknown op"),
        (lambda n: Node(n.op, ("nope",), n.outputs, n.attrs), "not defined before use"),
        (lambda n: Node(n.op, n.inputs, ("x",), n.attrs), "defined twice"),
        (lambda n: Node(n.op, n.inputs, n.outputs, {"alpha": "big"}), "alpha='big' is not"),
        (lambda n: Node(n.op, n.inputs, n.outputs, {"beta": 1.0}), "unknown attribute 'beta'"),
        (lambda n: Node(n.op, ("h", "h"), n.outputs, n.attrs), "takes 1 inputs, got 2"),
    ],
)
def test_validation_names_the_problem(change, message):
    graph = mlp_graph()
    broken = Graph(
        inputs=graph.inputs,
        outputs=graph.outputs,
        nodes=(graph.nodes[0], change(graph.nodes[1])),
        types=graph.types,
        variables=graph.variables,
    )
    with pytest.raises(GraphError, match=message):
        broken.validate()


def test_typecheck_passes_a_correct_graph():
    graph = mlp_graph()
    assert graph.typecheck() is graph


@pytest.mark.parametrize(
    "value, wrong, message",
    [
        ("y", TensorType(("batch", 4), "float32"), "node 1 (leaky_relu -> y; unknown source): output 'y' is "
         "recorded as float32[batch,4], but its inputs and attributes give float32[batch,3]"),
        ("y", TensorType(("batch", 3), "float16"), "recorded as float16[batch,3], but its inputs and attributes "
         "give float32[batch,3]"),
        ("h", TensorType((2, 3), "float32"), "node 0 (dense -> h; in l, m.py:3): output 'h' is recorded as "
         "float32[2,3], but its inputs and attributes give float32[batch,3]"),
        ("params/l/kernel", TensorType((5, 3), "float32"), "node 0 (dense -> h; in l, m.py:3): its types cannot "
         "be inferred from its inputs (float32[batch,4], float32[5,3], float32[3])"),
    ],
)
def test_typecheck_names_the_first_node_that_disagrees(value, wrong, message):
    graph = mlp_graph()
    broken = dataclasses.replace(graph, types={**graph.types, value: wrong}).validate()
    with pytest.raises(GraphError, match=re.escape(message)):
        broken.typecheck()


def test_typecheck_compares_symbolic_dimensions_as_expressions():
    def graph(sliced: str) -> Graph:
        return Graph(
            inputs=("x",),
            outputs=("h", "s"),
            nodes=(
                Node("reshape", ("x",), ("h",), {"shape": ("batch", "seq*4")}),  # JAX gives 4*seq
                Node("concat", ("x", "x"), ("c",), {"axis": 1}),  # 2*seq
                Node("slice", ("c",), ("s",), {"axis": 1, "step": 4}),  # floordiv(2*seq + 3, 4)
            ),
            types={
                "x": TensorType(("batch", "seq", 4), "float32"),
                "h": TensorType(("batch", "seq*4"), "float32"),
                "c": TensorType(("batch", "seq + seq", 4), "float32"),
                "s": TensorType(("batch", sliced, 4), "float32"),
            },
        )

    # JAX cannot prove this form equal to its own, but they agree on every sample size.
    graph("floordiv(seq + 1, 2)").typecheck()
    with pytest.raises(GraphError, match=re.escape(
        "node 2 (slice -> s; unknown source): output 's' is recorded as float32[batch,floordiv(seq, 2),4], "
        "but its inputs and attributes give float32[batch,floordiv(2*seq + 3, 4),4]"
    )):
        graph("floordiv(seq, 2)").typecheck()


def test_registry_reads_the_schema_from_the_signature():
    def lowering(x, bias=None, /, *, axes: tuple[int, ...], shape: SymShape, scale: float = 1.0):
        return x

    opdef = _opdef("example", lowering)
    assert opdef.inputs == ("x", "bias") and opdef.optional == {"bias"}
    assert opdef.attrs["axes"].required and not opdef.attrs["scale"].required
    assert opdef.attrs["shape"].symbolic and not opdef.attrs["axes"].symbolic
    assert opdef.check_attrs({"axes": (1,), "shape": ("batch", 4)}) == []
    assert opdef.check_attrs({"axes": [1], "shape": ("b",)})  # lists are not tuples
    assert opdef.resolve({"axes": (1,), "shape": ("2*batch", -1)}, {"batch": 3}) == {
        "axes": (1,), "shape": (6, -1), "scale": 1.0,
    }
    registry = Registry("op")
    registry.register(opdef.name, opdef)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(opdef.name, opdef)


def test_attribute_conformance():
    assert conforms(3, float) and not conforms(True, int) and not conforms(1.5, int)
    assert conforms(None, int | None) and conforms((1, 2), tuple[int, ...])
    assert not conforms((1, "a"), tuple[int, ...])


def test_every_op_documents_itself():
    undocumented = [name for name in REGISTRY.names() if not REGISTRY.get(name).doc]
    assert not undocumented


def test_non_finite_attributes_survive_strict_json():
    graph = mlp_graph()
    node = Node("softplus", ("h",), ("y",), {"beta": 1.0, "threshold": float("inf")})
    graph = Graph(graph.inputs, graph.outputs, (graph.nodes[0], node), graph.types, graph.variables).validate()
    again = Graph.from_json(json.loads(graph.dumps()))
    assert again.nodes[1].attrs["threshold"] == float("inf")
