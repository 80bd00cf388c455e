"""``python -m unigraph.cli.demo``: convert a built-in model, check it against torch, print the report.

The default model is torchvision's ResNet-18 with seeded random weights (no
download): it is converted once with a dynamic batch dimension, then checked
against torch eager at batch 1 and batch 4.
"""

from __future__ import annotations

import argparse
import sys
import time


def _models():
    import torch

    def resnet18():
        import torchvision

        return torchvision.models.resnet18(), (3, 224, 224)

    def mlp():
        model = torch.nn.Sequential(
            torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 10)
        )
        return model, (64,)

    return {"resnet18": resnet18, "mlp": mlp}


def _randomize_batch_norms(model) -> None:
    """Random running statistics and affine parameters: fresh ones (mean 0, variance 1) would make every
    batch norm nearly the identity, and the check would prove less."""
    import torch

    for module in model.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            with torch.no_grad():
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unigraph.cli.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(_models()), default="resnet18")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4], metavar="N")
    options = parser.parse_args(argv)

    import torch

    import unigraph as ug

    with torch.random.fork_rng(devices=[]):  # seeded weights; the process's generator as it was
        torch.manual_seed(0)
        model, sample_shape = _models()[options.model]()
        _randomize_batch_norms(model)
    model.eval()
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(options.batches[0], *sample_shape, generator=generator)

    start = time.perf_counter()
    conv = ug.from_torch(model, (example,))
    print(f"converted in {time.perf_counter() - start:.1f} s")
    print(conv.summary())
    print("\nfirst parameters (Flax variable ← torch tensor):")
    print("\n".join(str(conv.param_map).splitlines()[:6]))

    ok = True
    for batch in options.batches:
        x = torch.randn(batch, *sample_shape, generator=generator)
        report = ug.check(model, conv, (x,))
        print(f"\nbatch {batch}:\n{report}")
        ok &= report.ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
