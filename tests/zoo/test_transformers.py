"""Hugging Face transformers built from tiny configs with random weights (no download)."""

import pytest
import torch

from tests.zoo import models
from tests.zoo.util import assert_zoo_converts

pytestmark = pytest.mark.slow


def test_bert():
    case = models.bert()
    conv = assert_zoo_converts(case)
    args, kwargs = case.make_inputs(2)
    with torch.no_grad():
        expected = case.model(*args, **kwargs)
    assert list(conv(*args, **kwargs)) == list(expected.keys())


def test_gpt2():
    conv = assert_zoo_converts(models.gpt2())
    assert "dense" in conv.graph.op_histogram()  # Conv1D's addmm kept as a dense layer


def test_llama_rotary_rmsnorm_gqa_causal():
    conv = assert_zoo_converts(models.llama())
    assert "attention" in conv.graph.op_histogram()


def test_t5_encoder_decoder():
    assert_zoo_converts(models.t5())


def test_whisper():
    assert_zoo_converts(models.whisper())


def test_wav2vec2():
    assert_zoo_converts(models.wav2vec2())
