"""The channels-last pass (unigraph/channels_last.py): same results, image ops channels-last, no stray transposes.

Every model has seeded random normalization statistics and affine
parameters (and a random ConvNeXt layer scale), so that no part of it
computes zeros or the identity. The new graph, fed the inputs transposed as
its ``Layout`` says, must give the original graph's outputs (transposed back).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable

import jax
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import unigraph as ug
from unigraph.channels_last import _SPATIAL_AXES, Layout, to_channels_last
from unigraph.flax import run
from unigraph.ops import REGISTRY

# ---- helpers ------------------------------------------------------------------------------------


def randomized(model: nn.Module) -> nn.Module:
    """``model`` in eval mode with random norm statistics and affine parameters (seeded)."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
            if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)):
                m.weight.copy_(torch.rand(m.weight.shape, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=generator) * 0.2)
    return model.eval()


def random_input(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def convert(factory: Callable[[], nn.Module], *inputs: np.ndarray) -> ug.Converted:
    """The model ``factory`` builds (seeded weights, ConvNeXt's layer scale too), randomized, converted."""
    torch.manual_seed(0)
    return ug.from_torch(randomized(factory()), tuple(torch.from_numpy(x) for x in inputs))


def outputs(conv: ug.Converted, inputs) -> list[np.ndarray]:
    """The graph's flat outputs, jitted, at the precision the converted model runs with."""
    flat = jax.jit(functools.partial(run, conv.graph, precision=conv.precision))(conv.variables, list(inputs))
    return [np.asarray(y) for y in flat]


def assert_equivalent(conv: ug.Converted, new: ug.Converted, layout: Layout, *inputs: np.ndarray) -> None:
    """``new`` on the inputs transposed per ``layout`` gives ``conv``'s outputs, transposed back."""
    fed = [np.transpose(x, layout.inputs[n]) if n in layout.inputs else x for n, x in zip(new.graph.inputs, inputs)]
    want, got = outputs(conv, inputs), outputs(new, fed)
    assert len(got) == len(want)
    for name, g, w in zip(new.graph.outputs, got, want):
        if name in layout.outputs:
            g = np.transpose(g, np.argsort(layout.outputs[name]))
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=name)


def transposes(conv: ug.Converted) -> list:
    return [node for node in conv.graph.nodes if node.op == "transpose"]


def channels_last_checked(factory: Callable[[], nn.Module], *inputs: np.ndarray) -> tuple:
    """``(conv, new, layout)`` for the model ``factory`` builds, checked: equivalent, every image op channels-last."""
    conv = convert(factory, *inputs)
    new, layout = to_channels_last(conv)
    assert_equivalent(conv, new, layout, *inputs)
    image_ops = [node for node in new.graph.nodes if node.op in _SPATIAL_AXES]
    assert image_ops and all(node.attrs["channels_last"] for node in image_ops)
    assert new.metadata["layout"] == layout.to_json()
    return conv, new, layout


NHWC = (0, 2, 3, 1)

# ---- models ---------------------------------------------------------------------------------------


class FlattenCNN(nn.Module):
    """Convolutions, then a flatten of (N, C, H, W) into a Linear layer: its weights expect NCHW order."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 12, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(12), nn.ReLU(),
        )
        self.head = nn.Linear(12 * 4 * 4, 10)

    def forward(self, x):
        return self.head(torch.flatten(self.features(x), 1))


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeezed: int):
        super().__init__()
        self.reduce, self.expand = nn.Conv2d(channels, squeezed, 1), nn.Conv2d(squeezed, channels, 1)

    def forward(self, x):
        scale = F.adaptive_avg_pool2d(x, 1)
        return x * F.hardsigmoid(self.expand(F.relu(self.reduce(scale))))


class MobileBlockNet(nn.Module):
    """Input normalization by (1, 3, 1, 1) buffers, an inverted residual block (depthwise conv, ReLU6,
    squeeze-and-excite), then a global pool and a Linear head."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1))
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.Hardswish())
        self.block = nn.Sequential(
            nn.Conv2d(16, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6(),
            nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False), nn.BatchNorm2d(32), nn.ReLU6(),
            SqueezeExcite(32, 8),
            nn.Conv2d(32, 16, 1, bias=False), nn.BatchNorm2d(16),
        )
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        x = self.stem((x - self.mean) / self.std)
        x = x + self.block(x)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class TwoBranchSegmenter(nn.Module):
    """Two branches concatenated over channels, split again, padded, sliced, upsampled (transposed conv
    and interpolation), group-normalized, softmax over channels: returns a segmentation map and a vector."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1), nn.Conv2d(3, 8, 1))
        self.down = nn.Conv2d(16, 16, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(8, 8, 2, stride=2)
        self.norm = nn.GroupNorm(4, 16)
        self.classes = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        y = torch.cat([F.relu(self.a(x)), torch.sigmoid(self.b(x))], dim=1)
        y = self.down(y)
        first, second = torch.chunk(y, 2, dim=1)
        gate = torch.softmax(second.mean(dim=(2, 3), keepdim=True), dim=1)
        z = F.pad(first * gate, (1, 1, 1, 1))[:, :, 1:-1, 1:-1]
        z = torch.cat([self.up(z), F.interpolate(second, scale_factor=2.0, mode="nearest")], dim=1)
        logits = self.classes(F.gelu(self.norm(z)))
        return logits, logits.amax(dim=(2, 3))


class LayerNorm2d(nn.LayerNorm):
    """torchvision's: LayerNorm over channels by permuting them last and back."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.gamma = nn.Parameter(torch.rand(dim, 1, 1) + 0.5)

    def forward(self, x):
        y = self.mlp(self.norm(self.dwconv(x).permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        return x + self.gamma * y


class ConvNeXtLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 4, stride=4), LayerNorm2d(16, eps=1e-6))
        self.stage = nn.Sequential(ConvNeXtBlock(16), LayerNorm2d(16, eps=1e-6), nn.Conv2d(16, 24, 2, stride=2), ConvNeXtBlock(24))
        self.head = nn.Sequential(nn.LayerNorm(24), nn.Linear(24, 7))

    def forward(self, x):
        return self.head(self.stage(self.stem(x)).mean(dim=(-2, -1)))


class Conv1dFeatures(nn.Module):
    """(N, C, L) sequences: returns its feature map, which comes back channels-last too."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(6, 12, 5, padding=2), nn.BatchNorm1d(12), nn.SiLU(), nn.MaxPool1d(2), nn.Conv1d(12, 8, 3, padding=1)
        )

    def forward(self, x):
        return self.body(x)


class PatchTokens(nn.Module):
    """A ViT-style patch embedding (conv, flatten(2), transpose) into attention-like matmuls."""

    def __init__(self):
        super().__init__()
        self.patches = nn.Conv2d(3, 16, 4, stride=4)
        self.norm = nn.LayerNorm(16)

    def forward(self, x):
        tokens = self.norm(self.patches(x).flatten(2).transpose(1, 2))
        mixed = torch.softmax(tokens @ tokens.transpose(1, 2), dim=-1) @ tokens
        return mixed.mean(dim=1)


class PermutedOutputs(nn.Module):
    """Returns a conv's output permuted channels-last (what the new graph holds) and permuted otherwise."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        y = self.conv(x)
        return y.permute(0, 2, 3, 1), y.permute(0, 2, 1, 3)


# ---- tests ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flatten_cnn():
    return channels_last_checked(FlattenCNN, random_input(2, 3, 16, 16))


def test_flatten_cnn_keeps_one_transpose_before_the_flatten(flatten_cnn):
    conv, new, layout = flatten_cnn
    assert layout == Layout({"x": NHWC}, {})
    (transpose,) = transposes(new)
    assert transpose.attrs["perm"] == (0, 3, 1, 2)
    (reshape,) = [node for node in new.graph.nodes if node.op == "reshape"]
    assert reshape.inputs[0] == transpose.outputs[0]


def test_resnet18_has_no_transposes():
    import torchvision

    conv, new, layout = channels_last_checked(torchvision.models.resnet18, random_input(2, 3, 64, 64))
    assert layout == Layout({"x": NHWC}, {})
    assert transposes(new) == []
    assert [node.attrs["axis"] for node in new.graph.nodes if node.op == "batch_norm"] == [3] * 20


@pytest.mark.parametrize("model", [MobileBlockNet, ConvNeXtLike], ids=lambda m: m.__name__)
def test_cnns_have_no_transposes(model):
    conv, new, layout = channels_last_checked(model, random_input(2, 3, 32, 32))
    assert layout == Layout({"x": NHWC}, {})
    assert transposes(new) == []


def test_feature_maps_come_back_channels_last():
    conv, new, layout = channels_last_checked(TwoBranchSegmenter, random_input(2, 3, 16, 16))
    logits, _ = new.graph.outputs
    assert layout == Layout({"x": NHWC}, {logits: NHWC})
    assert new.graph.types[logits].shape == ("batch", 16, 16, 4)
    assert transposes(new) == []


def test_sequences_come_back_channels_last():
    conv, new, layout = channels_last_checked(Conv1dFeatures, random_input(3, 6, 20))
    assert layout == Layout({"x": (0, 2, 1)}, {new.graph.outputs[0]: (0, 2, 1)})
    assert transposes(new) == []


def test_ops_it_does_not_rewrite_see_the_original_layout():
    """The patch embedding's flatten and transpose vanish; the matmuls keep theirs (one transpose, as before)."""
    conv, new, layout = channels_last_checked(PatchTokens, random_input(2, 3, 16, 16))
    assert layout == Layout({"x": NHWC}, {})
    assert len(transposes(new)) == len(transposes(conv)) - 1 == 1


def test_outputs_in_other_layouts_come_back_as_the_original_returns_them():
    conv, new, layout = channels_last_checked(PermutedOutputs, random_input(2, 3, 8, 8))
    assert layout == Layout({"x": NHWC}, {})
    (conv_node,) = [node for node in new.graph.nodes if node.op == "conv"]
    (transpose,) = transposes(new)
    assert new.graph.outputs == (conv_node.outputs[0], transpose.outputs[0])


def test_input_is_left_alone_and_layout_is_json(flatten_cnn):
    conv, new, layout = flatten_cnn
    assert "layout" not in conv.metadata and all(not node.attrs.get("channels_last") for node in conv.graph.nodes)
    assert new.param_map is conv.param_map
    assert jax.tree.all(jax.tree.map(lambda a, b: a is b, new.variables, conv.variables))
    assert Layout.from_json(json.loads(json.dumps(new.metadata["layout"]))) == layout


def test_channels_last_and_conv_free_graphs_come_back_unchanged(flatten_cnn):
    mlp = convert(lambda: nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2)), random_input(2, 5))
    for conv in (flatten_cnn[1], mlp):
        assert to_channels_last(conv) == (conv, Layout())


def test_flax_channels_last_graph_comes_back_unchanged():
    import flax.linen as fnn

    class Model(fnn.Module):
        @fnn.compact
        def __call__(self, x):
            x = fnn.max_pool(fnn.relu(fnn.Conv(8, (3, 3))(x)), (2, 2), (2, 2))
            return fnn.Dense(4)(x.mean(axis=(1, 2)))

    x = random_input(2, 8, 8, 3)
    model = Model()
    conv = ug.from_flax(model, model.init(jax.random.PRNGKey(0), x), x)
    assert to_channels_last(conv) == (conv, Layout())


def test_every_op_with_a_channels_last_attribute_is_an_image_op():
    with_attribute = {name for name in REGISTRY.names() if "channels_last" in REGISTRY[name].attrs}
    assert with_attribute == set(_SPATIAL_AXES)
