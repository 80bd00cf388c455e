"""The zoo: whole models with seeded random weights and their example inputs.

The spine tests (test_basic, test_torchvision, test_transformers) and every
backend's zoo test take their models from here, so a model added once is
checked through every path. Each factory builds a fresh model, seeded, in
eval mode; torchvision and transformers are imported only by their factories.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import nn

VOCAB = 99


@dataclasses.dataclass
class ZooModel:
    model: nn.Module
    make_inputs: Callable[[int], tuple[tuple, dict]]  # batch size -> (args, kwargs), seeded
    batches: tuple[int, ...] = (1, 3)  # converted at the first, checked at each
    no_grad: bool = False  # convert under torch.no_grad() (torch takes some fast paths only there)


def image(channels: int = 3, size: int = 64):
    def make(batch: int):
        generator = torch.Generator().manual_seed(batch)
        return (torch.randn(batch, channels, size, size, generator=generator),), {}

    return make


def _seeded(factory: Callable[[], ZooModel]) -> Callable[[], ZooModel]:
    def build() -> ZooModel:
        torch.manual_seed(0)
        case = factory()
        randomize(case.model).eval()
        return case

    build.__name__ = build.__qualname__ = factory.__name__
    build.__doc__ = factory.__doc__
    return build


# ---- small models built here --------------------------------------------------------------


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(torch.flatten(self.pool(self.features(x)), 1))


def randomize(model: nn.Module) -> nn.Module:
    """Seeded random values for what a fresh model holds constant: BatchNorm statistics, norm scales and
    offsets, layer scales (ConvNeXt's are 1e-6), and every parameter initialized to zeros (biases,
    torchvision ViT's head, which makes its output all zeros), so that a conversion which drops or swaps
    one of them cannot pass."""
    generator = torch.Generator().manual_seed(1)

    def uniform(t, low, high):
        return low + (high - low) * torch.rand(t.shape, generator=generator)

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=generator))
                m.running_var.copy_(uniform(m.running_var, 0.5, 1.5))
            if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)):
                if getattr(m, "weight", None) is not None:
                    m.weight.copy_(uniform(m.weight, 0.5, 1.5))
                if getattr(m, "bias", None) is not None:
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=generator))
        for name, p in model.named_parameters():
            if name.rsplit(".", 1)[-1] == "layer_scale":
                p.copy_(uniform(p, 0.1, 0.5))
            elif p.numel() and not p.any():
                fan_in = p[0].numel() if p.ndim > 1 else 100
                p.copy_(torch.randn(p.shape, generator=generator) / fan_in**0.5)
    return model


class LSTMModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(12, 24, num_layers=2, batch_first=True)
        self.head = nn.Linear(24, 3)

    def forward(self, x):
        out, (h, c) = self.lstm(x)
        return self.head(out[:, -1]), h


class AttentionModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = nn.MultiheadAttention(32, 4, batch_first=True)
        self.norm = nn.LayerNorm(32)

    def forward(self, x, padding):
        y, weights = self.attention(x, x, x, key_padding_mask=padding)
        return self.norm(x + y), weights


def _randn(*shape):
    def make(batch):
        return (torch.randn(batch, *shape, generator=torch.Generator().manual_seed(batch)),), {}

    return make


@_seeded
def mlp() -> ZooModel:
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 5))
    return ZooModel(model, _randn(20), batches=(1, 7))


@_seeded
def cnn() -> ZooModel:
    """BatchNorm, ReLU, MaxPool and AdaptiveAvgPool."""
    return ZooModel(CNN(), image(size=32), batches=(1, 7))


@_seeded
def lstm() -> ZooModel:
    """A two-layer nn.LSTM and a linear head."""
    return ZooModel(LSTMModel(), _randn(9, 12), batches=(1, 4))


@_seeded
def multihead_attention() -> ZooModel:
    """nn.MultiheadAttention with a key padding mask, converted under no_grad (torch's fused path)."""

    def make(batch):
        generator = torch.Generator().manual_seed(batch)
        padding = torch.zeros(batch, 6, dtype=torch.bool)
        padding[:, -1] = True
        return (torch.randn(batch, 6, 32, generator=generator), padding), {}

    return ZooModel(AttentionModel(), make, batches=(1, 5), no_grad=True)


# ---- torchvision (random weights, no download) ----------------------------------------------------


def _torchvision(name: str, **config) -> Callable[[], ZooModel]:
    def factory() -> ZooModel:
        import torchvision.models as tvm

        return ZooModel(getattr(tvm, name)(**config), image(size=64))

    factory.__name__ = name
    return _seeded(factory)


resnet18 = _torchvision("resnet18")
mobilenet_v3_small = _torchvision("mobilenet_v3_small")
efficientnet_b0 = _torchvision("efficientnet_b0")
convnext_tiny = _torchvision("convnext_tiny")
vit_b_16 = _torchvision("vit_b_16", image_size=64)


# ---- Hugging Face transformers (tiny configs, random weights, no download) -----------------------


def tokens(seq: int, *, mask: bool = True, token_types: bool = False):
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


@_seeded
def bert() -> ZooModel:
    import transformers as hf

    config = hf.BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64
    )
    return ZooModel(hf.BertModel(config), tokens(10, token_types=True))


@_seeded
def gpt2() -> ZooModel:
    import transformers as hf

    config = hf.GPT2Config(
        vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, use_cache=False,
        bos_token_id=0, eos_token_id=0,
    )
    return ZooModel(hf.GPT2Model(config), tokens(10))


@_seeded
def llama() -> ZooModel:
    """Rotary embeddings, RMSNorm, grouped-query attention, causal mask."""
    import transformers as hf

    config = hf.LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64, use_cache=False,
    )
    return ZooModel(hf.LlamaModel(config), tokens(10))


@_seeded
def t5() -> ZooModel:
    """Encoder-decoder."""
    import transformers as hf

    config = hf.T5Config(
        vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, use_cache=False,
        decoder_start_token_id=0,
    )

    def make(batch):
        _, kwargs = tokens(10)(batch)
        kwargs["decoder_input_ids"] = kwargs["input_ids"][:, :6]
        return (), kwargs

    return ZooModel(hf.T5Model(config), make)


@_seeded
def whisper() -> ZooModel:
    import transformers as hf

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

    return ZooModel(hf.WhisperModel(config), make)


@_seeded
def wav2vec2() -> ZooModel:
    import transformers as hf

    config = hf.Wav2Vec2Config(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
    )
    return ZooModel(hf.Wav2Vec2Model(config), _randn(800))


BASIC = {f.__name__: f for f in (mlp, cnn, lstm, multihead_attention)}
TORCHVISION = {f.__name__: f for f in (resnet18, mobilenet_v3_small, efficientnet_b0, convnext_tiny, vit_b_16)}
TRANSFORMERS = {f.__name__: f for f in (bert, gpt2, llama, t5, whisper, wav2vec2)}
#: Every end-to-end model, by name.
MODELS = {**BASIC, **TORCHVISION, **TRANSFORMERS}
