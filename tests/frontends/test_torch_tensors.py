"""torch tensors and NumPy arrays both ways (``unigraph.frontends.torch_tensors``), bfloat16 included."""

import ml_dtypes
import numpy as np
import pytest
import torch

import unigraph as ug
from unigraph.frontends.torch_tensors import as_tensor, from_numpy, numpy_dtype, to_numpy

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.uint8, torch.bool]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_round_trips_are_bit_exact(dtype):
    generator = torch.Generator().manual_seed(0)
    t = (torch.randn(3, 4, generator=generator) * 100).to(dtype)
    array = to_numpy(t)
    assert array.dtype == numpy_dtype(dtype) and array.shape == (3, 4)
    back = from_numpy(array)
    assert back.dtype == dtype and torch.equal(back, t)


def test_bfloat16_is_ml_dtypes_and_shares_memory():
    t = torch.arange(6, dtype=torch.float32).to(torch.bfloat16)
    array = to_numpy(t)
    assert array.dtype == np.dtype(ml_dtypes.bfloat16)
    np.testing.assert_array_equal(array.astype(np.float32), np.arange(6, dtype=np.float32))
    t[0] = 7
    assert float(array[0]) == 7.0  # a view, not a copy


def test_tensors_that_need_grad_or_a_transpose_convert():
    weight = torch.nn.Parameter(torch.randn(3, 4))
    np.testing.assert_array_equal(to_numpy(weight), weight.detach().numpy())
    transposed = to_numpy(torch.randn(3, 4)).T
    assert torch.equal(from_numpy(transposed), torch.from_numpy(np.ascontiguousarray(transposed)))


def test_read_only_arrays_are_copied_writable_ones_shared():
    array = np.arange(4, dtype=np.float32)
    array.flags.writeable = False
    t = from_numpy(array)
    t[0] = 9  # torch tensors are writable: a copy
    assert array[0] == 0
    writable = np.arange(4, dtype=np.float32)
    from_numpy(writable)[1] = 5
    assert writable[1] == 5


def test_as_tensor_takes_array_likes_and_leaves_the_rest():
    import jax.numpy as jnp

    assert torch.equal(as_tensor(jnp.arange(3)), torch.arange(3, dtype=torch.int32))
    t = torch.ones(2)
    assert as_tensor(t) is t and as_tensor(3) == 3 and as_tensor(None) is None


def test_a_converted_model_takes_bfloat16_tensors():
    """``Converted.__call__`` converts torch arguments with this module (the core imports no torch)."""
    model = torch.nn.Linear(4, 3).to(torch.bfloat16).eval()
    x = torch.randn(2, 4).to(torch.bfloat16)
    conv = ug.from_torch(model, (x,))
    got = np.asarray(conv(x)).astype(np.float32)
    with torch.no_grad():
        want = model(x).float().numpy()
    np.testing.assert_allclose(got, want, rtol=2e-2, atol=2e-2)
