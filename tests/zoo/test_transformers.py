"""Hugging Face transformers built from tiny configs with random weights (no download)."""

import pytest
import torch
import transformers as hf

from tests.zoo.util import assert_converts

pytestmark = pytest.mark.slow

VOCAB = 99


def _tokens(seq: int, *, mask: bool = True, token_types: bool = False):
    def make(batch):
        generator = torch.Generator().manual_seed(batch)
        kwargs = {"input_ids": torch.randint(0, VOCAB, (batch, seq), generator=generator)}
        if mask:
            attention = torch.ones(batch, seq, dtype=torch.long)
            attention[0, seq - 2 :] = 0  # padding in the first row exercises the mask
            kwargs["attention_mask"] = attention
        if token_types:
            kwargs["token_type_ids"] = torch.randint(0, 2, (batch, seq), generator=generator)
        return (), kwargs

    return make


def _check_keys(conv, model, make):
    args, kwargs = make(2)
    with torch.no_grad():
        expected = model(*args, **kwargs)
    assert list(conv(*args, **kwargs)) == list(expected.keys())


def test_bert():
    config = hf.BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64
    )
    model = hf.BertModel(config)
    make = _tokens(10, token_types=True)
    conv = assert_converts(model, make)
    _check_keys(conv, model, make)


def test_gpt2():
    config = hf.GPT2Config(
        vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, use_cache=False,
        bos_token_id=0, eos_token_id=0,
    )
    model = hf.GPT2Model(config)
    conv = assert_converts(model, _tokens(10))
    assert "dense" in conv.graph.op_histogram()  # Conv1D's addmm kept as a dense layer


def test_llama_rotary_rmsnorm_gqa_causal():
    config = hf.LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64, use_cache=False,
    )
    conv = assert_converts(hf.LlamaModel(config), _tokens(10))
    assert "attention" in conv.graph.op_histogram()


def test_t5_encoder_decoder():
    config = hf.T5Config(
        vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, use_cache=False,
        decoder_start_token_id=0,
    )

    def make(batch):
        _, kwargs = _tokens(10)(batch)
        kwargs["decoder_input_ids"] = kwargs["input_ids"][:, :6]
        return (), kwargs

    assert_converts(hf.T5Model(config), make)


def test_whisper():
    config = hf.WhisperConfig(
        vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=16,
        max_source_positions=32, max_target_positions=32, use_cache=False, pad_token_id=0,
        bos_token_id=1, eos_token_id=2, decoder_start_token_id=3,
    )

    def make(batch):
        generator = torch.Generator().manual_seed(batch)
        features = torch.randn(batch, 16, 64, generator=generator)
        decoder_ids = torch.randint(0, VOCAB, (batch, 5), generator=generator)
        return (), {"input_features": features, "decoder_input_ids": decoder_ids}

    assert_converts(hf.WhisperModel(config), make)


def test_wav2vec2():
    config = hf.Wav2Vec2Config(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
    )

    def make(batch):
        return (torch.randn(batch, 800, generator=torch.Generator().manual_seed(batch)),), {}

    assert_converts(hf.Wav2Vec2Model(config), make)
