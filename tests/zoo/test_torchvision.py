"""torchvision classifiers with random weights (no download), at 64×64 inputs."""

import pytest

from tests.zoo import models
from tests.zoo.util import assert_zoo_converts

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", sorted(models.TORCHVISION))
def test_torchvision(name):
    assert_zoo_converts(models.TORCHVISION[name]())
