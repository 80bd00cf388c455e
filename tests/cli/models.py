"""Factories the command-line tests convert as ``tests.cli.models:NAME`` (or ``tests/cli/models.py:NAME``)."""

from __future__ import annotations

import torch
from torch import nn


class CNN(nn.Module):
    """Convolution, batch norm (non-trivial statistics), ReLU, pooling and a linear head."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 5)
        with torch.no_grad():
            self.bn.running_mean.normal_(0, 0.1)
            self.bn.running_var.uniform_(0.5, 1.5)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


def cnn() -> nn.Module:
    return CNN().eval()


def cnn_with_example():
    """A factory that also says what to trace with: ``(module, example_args)``."""
    return CNN().eval(), (torch.randn(2, 3, 16, 16),)


class Tagger(nn.Module):
    """Token ids through an embedding, plus an integer flag that indexes nothing."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(7, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, ids, flags):
        return self.head(self.embed(ids)) * flags.unsqueeze(-1)


def tagger() -> nn.Module:
    return Tagger().eval()


class Unsupported(nn.Module):
    def forward(self, x):
        return torch.linalg.det(x)


def unsupported() -> nn.Module:
    return Unsupported()


def broken():
    raise RuntimeError("this factory always fails")
