"""torchvision classifiers with random weights (no download), at 64×64 inputs."""

import pytest
import torchvision.models as tvm

from tests.zoo.util import assert_converts, image

pytestmark = pytest.mark.slow

MODELS = {
    "resnet18": lambda: tvm.resnet18(),
    "mobilenet_v3_small": lambda: tvm.mobilenet_v3_small(),
    "efficientnet_b0": lambda: tvm.efficientnet_b0(),
    "convnext_tiny": lambda: tvm.convnext_tiny(),
    "vit_b_16": lambda: tvm.vit_b_16(image_size=64),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_torchvision(name):
    import torch

    torch.manual_seed(0)
    assert_converts(MODELS[name](), image(size=64), batches=(1, 3))
