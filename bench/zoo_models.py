"""The models of ``bench/zoo.py``: built from configs with seeded random weights, no download.

Each entry names a family and a builder. A torch builder returns a
``tests.zoo.models.ZooModel`` (its constant-valued float tensors, BatchNorm
statistics, norm scales, layer scales and zero-initialized parameters,
given seeded random values by ``randomize``); a Keras builder returns a
``tests.zoo.test_keras_zoo.KerasCase`` (``keras_models.randomize``). The
frameworks are imported by the builders only, so listing the zoo is cheap.
Sizes are small (64×64 images, hidden sizes of 32, two layers) so that each
model converts in seconds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

VOCAB = 99


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    family: str
    source: str  # "torch" or "keras"
    build: Callable[[], object]


# ---- torch helpers -------------------------------------------------------------------------------


def _torch(factory: Callable[[], tuple]) -> Callable[[], object]:
    """A builder: ``factory() -> (module, make_inputs[, options])`` seeded, randomized, in eval mode."""

    def build():
        import torch

        from tests.zoo.models import ZooModel, randomize

        torch.manual_seed(0)
        model, make, *options = factory()
        randomize(model).eval()
        return ZooModel(model, make, batches=(1, 2), **(options[0] if options else {}))

    return build


def _image(size: int = 64, channels: int = 3):
    def make(batch):
        from tests.zoo.models import image

        return image(channels, size)(batch)

    return make


def _randn(*shape):
    def make(batch):
        import torch

        return (torch.randn(batch, *shape, generator=torch.Generator().manual_seed(batch)),), {}

    return make


def _pixels(size: int):
    def make(batch):
        import torch

        pixels = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
        return (), {"pixel_values": pixels}

    return make


def _tokens(seq: int = 10, **options):
    def make(batch):
        from tests.zoo.models import tokens

        return tokens(seq, **options)(batch)

    return make


def _existing(name: str) -> Callable[[], object]:
    """A model of the test zoo (tests/zoo/models.py), as it builds it (batch sizes (1, 2) here)."""

    def build():
        import dataclasses as dc

        from tests.zoo.models import MODELS

        return dc.replace(MODELS[name](), batches=(1, 2))

    return build


# ---- hand-written torch models -----------------------------------------------------------------


def _handwritten():
    import torch
    from torch import nn

    from tests.frontends.test_torch_cond import TensorPredicate

    class GRUTagger(nn.Module):
        """Embedding, bidirectional GRU, per-token head."""

        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(VOCAB, 16)
            self.gru = nn.GRU(16, 24, batch_first=True, bidirectional=True)
            self.head = nn.Linear(48, 5)

        def forward(self, ids):
            out, _ = self.gru(self.embed(ids))
            return self.head(out)

    class RNNCellLoop(nn.Module):
        """An LSTMCell unrolled over a fixed number of steps (a Python loop torch.export unrolls)."""

        def __init__(self):
            super().__init__()
            self.cell = nn.LSTMCell(8, 16)
            self.head = nn.Linear(16, 2)

        def forward(self, x):
            h = x.new_zeros(x.shape[0], 16)
            c = x.new_zeros(x.shape[0], 16)
            for t in range(x.shape[1]):
                h, c = self.cell(x[:, t], (h, c))
            return self.head(h)

    class EinsumMixer(nn.Module):
        """Bilinear and attention-like einsums, a batched outer product."""

        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(16, 8, 16) / 4)
            self.proj = nn.Linear(16, 16)

        def forward(self, x):
            scores = torch.einsum("bqd,bkd->bqk", x, self.proj(x)).softmax(-1)
            mixed = torch.einsum("bqk,bkd->bqd", scores, x)
            bilinear = torch.einsum("bnd,dhe,bne->bnh", mixed, self.w, x)
            return torch.einsum("bnh,bmh->bnm", bilinear, bilinear)

    class ScatterGather(nn.Module):
        """gather, scatter_add, index_select, index_put and a top-1 routing mask."""

        def __init__(self):
            super().__init__()
            self.router = nn.Linear(12, 4)
            self.experts = nn.Parameter(torch.randn(4, 12, 12) / 3.5)

        def forward(self, x, index):
            choice = self.router(x).argmax(-1)  # (b, n)
            routed = torch.einsum("bnd,bnde->bne", x, self.experts[choice])
            picked = torch.gather(routed, 1, index.unsqueeze(-1).expand(-1, -1, 12))
            counts = torch.zeros(x.shape[0], 4, dtype=x.dtype).scatter_add(1, choice, torch.ones_like(choice, dtype=x.dtype))
            summed = torch.zeros_like(routed).scatter_add(1, index.unsqueeze(-1).expand(-1, -1, 12), picked)
            return summed + torch.index_select(routed, 2, torch.tensor([0, 3, 5]).repeat(4)), counts

    class MaskedWhere(nn.Module):
        """Data-dependent values without data-dependent shapes: where, clamp, cumsum, sort."""

        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(8, 8)

        def forward(self, x):
            y = self.lin(x)
            y = torch.where(y > 0, y, 0.1 * y).cumsum(-1)
            values, order = torch.sort(y, dim=-1, descending=True)
            return values.clamp(-2, 2), order

    class PythonBranch(nn.Module):
        """A Python ``if`` on a tensor's value: torch.export cannot trace it (listed apart)."""

        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(6, 6)

        def forward(self, x):
            if x.mean() > 0:
                return self.lin(x)
            return -x

    def indices(batch):
        generator = torch.Generator().manual_seed(batch)
        x = torch.randn(batch, 7, 12, generator=generator)
        return (x, torch.randint(0, 7, (batch, 5), generator=generator)), {}

    def ids(batch):
        return (torch.randint(0, VOCAB, (batch, 9), generator=torch.Generator().manual_seed(batch)),), {}

    return {
        "gru_tagger": lambda: (GRUTagger(), ids),
        "lstm_cell_loop": lambda: (RNNCellLoop(), _randn(6, 8)),
        "einsum_mixer": lambda: (EinsumMixer(), _randn(6, 16)),
        "scatter_gather": lambda: (ScatterGather(), indices),
        "torch_cond": lambda: (TensorPredicate(), _randn(10)),  # torch.cond on the data: both branches traced
        "masked_where_sort": lambda: (MaskedWhere(), _randn(5, 8)),
        "python_branch": lambda: (PythonBranch(), _randn(6)),
    }


HANDWRITTEN = ("gru_tagger", "lstm_cell_loop", "einsum_mixer", "scatter_gather", "torch_cond", "masked_where_sort",
               "python_branch")


def _handwritten_model(name: str):
    return _torch(lambda: _handwritten()[name]())


# ---- torchvision -------------------------------------------------------------------------------------


def _tv(name: str, size: int = 64, **config):
    def factory():
        import torchvision.models as tvm

        return getattr(tvm, name)(weights=None, **config), _image(size)

    return _torch(factory)


def _tv_segmentation(name: str, **config):
    def factory():
        import torchvision.models.segmentation as seg

        return seg.__dict__[name](weights=None, weights_backbone=None, num_classes=5, **config), _image(64)

    return _torch(factory)


def _tv_fpn(backbone: str):
    def factory():
        from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

        return resnet_fpn_backbone(backbone_name=backbone, weights=None, trainable_layers=5), _image(64)

    return _torch(factory)


# ---- timm ----------------------------------------------------------------------------------------------


def _timm(name: str, size: int = 64, **config):
    def factory():
        import timm

        # No classifier: the pooled features are the output (some heads start at 1e-3 of the usual scale, which
        # leaves logits that are nearly the bias, whatever the trunk computes).
        return timm.create_model(name, pretrained=False, num_classes=0, **config), _image(size)

    return _torch(factory)


def _timm_vit(name: str, size: int = 64, **config):
    return _timm(name, size, img_size=size, **config)


# ---- Hugging Face transformers ---------------------------------------------------------------------------


def _hf(model_class: str, config_class: str, make, **config):
    def factory():
        import transformers as hf

        return getattr(hf, model_class)(getattr(hf, config_class)(**config)), make

    return _torch(factory)


_DECODER = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                max_position_embeddings=64, use_cache=False)
_ENCODER = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                max_position_embeddings=64)
_VISION = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


def _bart():
    import transformers as hf

    config = hf.BartConfig(
        vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
        use_cache=False,
    )

    def make(batch):
        _, kwargs = _tokens(10)(batch)
        kwargs["decoder_input_ids"] = kwargs["input_ids"][:, :6]
        return (), kwargs

    return hf.BartModel(config), make


def _hubert():
    import transformers as hf

    config = hf.HubertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
    )
    return hf.HubertModel(config), _randn(800)


# ---- Keras ------------------------------------------------------------------------------------------------


def _keras_existing(name: str):
    def build():
        from tests.zoo.test_keras_zoo import MODELS

        return MODELS[name]()

    return build


def _keras_app(name: str, size: int = 32):
    def build():
        from tests.zoo.test_keras_zoo import _application

        return _application(name, size)()

    return build


def _hub(name: str, inputs: tuple = (), **config):
    """A keras_hub text backbone with a tiny config, converted on example inputs of 8 tokens."""

    def build():
        import keras
        import keras_hub

        from tests.frontends import keras_models
        from tests.zoo.test_keras_zoo import KerasCase, _tokens as keras_tokens

        keras.utils.set_random_seed(0)
        model = getattr(keras_hub.models, name)(**config)
        return KerasCase(keras_models.randomize(model), keras_tokens(60, 8, *inputs), example=True)

    return build


def _hub_image(name: str, size: int = 32, **config):
    def build():
        import keras
        import keras_hub
        import numpy as np

        from tests.frontends import keras_models
        from tests.zoo.test_keras_zoo import KerasCase

        keras.utils.set_random_seed(0)
        model = getattr(keras_hub.models, name)(image_shape=(size, size, 3), **config)

        def make(batch):
            return np.random.default_rng(batch).normal(size=(batch, size, size, 3)).astype(np.float32)

        return KerasCase(keras_models.randomize(model), make)

    return build


_HUB_TEXT = dict(vocabulary_size=60, num_layers=2, hidden_dim=16, intermediate_dim=32)


# ---- the zoo ---------------------------------------------------------------------------------------------


def _entries() -> list[Entry]:
    torch_models = {
        "handwritten": {
            **{name: _existing(name) for name in ("mlp", "cnn", "lstm", "multihead_attention")},
            **{name: _handwritten_model(name) for name in HANDWRITTEN},
        },
        "torchvision": {
            **{name: _existing(name) for name in ("resnet18", "mobilenet_v3_small", "efficientnet_b0",
                                                  "convnext_tiny", "vit_b_16")},
            "squeezenet1_1": _tv("squeezenet1_1"),
            "shufflenet_v2_x0_5": _tv("shufflenet_v2_x0_5"),
            "regnet_x_400mf": _tv("regnet_x_400mf"),
            "mnasnet0_5": _tv("mnasnet0_5"),
            "swin_t": _tv("swin_t"),
            "resnet18_fpn": _tv_fpn("resnet18"),
            "deeplabv3_mobilenet_v3_large": _tv_segmentation("deeplabv3_mobilenet_v3_large"),
            "lraspp_mobilenet_v3_large": _tv_segmentation("lraspp_mobilenet_v3_large"),
        },
        "timm": {
            "resnet10t": _timm("resnet10t"),
            "mobilenetv3_small_050": _timm("mobilenetv3_small_050"),
            "lcnet_050": _timm("lcnet_050"),
            "regnetx_002": _timm("regnetx_002"),
            "repvgg_a0": _timm("repvgg_a0"),
            "ghostnet_100": _timm("ghostnet_100"),
            "convnext_atto": _timm("convnext_atto"),
            "vit_tiny_patch16": _timm_vit("vit_tiny_patch16_224"),
            "deit_tiny_patch16": _timm_vit("deit_tiny_patch16_224"),
            "eva02_tiny_patch14": _timm_vit("eva02_tiny_patch14_224", 56),
            "mixer_s16": _timm_vit("mixer_s16_224"),
            "resmlp_12": _timm_vit("resmlp_12_224"),
            "poolformer_s12": _timm("poolformer_s12"),
            "caformer_s18": _timm("caformer_s18"),
            "mobilevit_xxs": _timm("mobilevit_xxs"),
            "inception_next_atto": _timm("inception_next_atto"),
            "edgenext_xx_small": _timm("edgenext_xx_small"),
            "fastvit_t8": _timm("fastvit_t8"),
            "levit_128s": _timm_vit("levit_128s"),
        },
        "transformers": {
            **{name: _existing(name) for name in ("bert", "gpt2", "llama", "t5", "whisper", "wav2vec2")},
            "roberta": _hf("RobertaModel", "RobertaConfig", _tokens(), **_ENCODER),
            "distilbert": _hf("DistilBertModel", "DistilBertConfig", _tokens(), vocab_size=VOCAB, dim=32, n_layers=2,
                              n_heads=4, hidden_dim=64, max_position_embeddings=64),
            "albert": _hf("AlbertModel", "AlbertConfig", _tokens(), embedding_size=16, **_ENCODER),
            "deberta_v2": _hf("DebertaV2Model", "DebertaV2Config", _tokens(), relative_attention=True,
                              position_buckets=16, max_relative_positions=32, pos_att_type=["p2c", "c2p"], **_ENCODER),
            "mistral": _hf("MistralModel", "MistralConfig", _tokens(), num_key_value_heads=2, sliding_window=6,
                           **_DECODER),
            "qwen3": _hf("Qwen3Model", "Qwen3Config", _tokens(), num_key_value_heads=2, head_dim=8, **_DECODER),
            "gemma": _hf("GemmaModel", "GemmaConfig", _tokens(), num_key_value_heads=1, head_dim=8, **_DECODER),
            "phi": _hf("PhiModel", "PhiConfig", _tokens(), partial_rotary_factor=0.5, **_DECODER),
            "gpt_neox": _hf("GPTNeoXModel", "GPTNeoXConfig", _tokens(), rotary_pct=0.25, **_DECODER),
            "bloom_alibi": _hf("BloomModel", "BloomConfig", _tokens(), vocab_size=VOCAB, hidden_size=32, n_layer=2,
                               n_head=4, use_cache=False),
            "falcon_alibi": _hf("FalconModel", "FalconConfig", _tokens(), vocab_size=VOCAB, hidden_size=32,
                                num_hidden_layers=2, num_attention_heads=4, alibi=True, use_cache=False),
            "opt": _hf("OPTModel", "OPTConfig", _tokens(), vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                       ffn_dim=64, num_attention_heads=4, word_embed_proj_dim=32, max_position_embeddings=64,
                       use_cache=False),
            "bart": _torch(_bart),
            "hubert": _torch(_hubert),
            "vit": _hf("ViTModel", "ViTConfig", _pixels(32), image_size=32, patch_size=8, **_VISION),
            "dinov2": _hf("Dinov2Model", "Dinov2Config", _pixels(32), image_size=32, patch_size=8, **_VISION),
            "clip_vision": _hf("CLIPVisionModel", "CLIPVisionConfig", _pixels(32), image_size=32, patch_size=8,
                               **_VISION),
            "convnext_hf": _hf("ConvNextModel", "ConvNextConfig", _pixels(32), hidden_sizes=[16, 32],
                               depths=[1, 1], num_stages=2),
            "swin_hf": _hf("SwinModel", "SwinConfig", _pixels(32), image_size=32, patch_size=4, embed_dim=16,
                           depths=[1, 1], num_heads=[2, 2], window_size=4),
            "segformer": _hf("SegformerModel", "SegformerConfig", _pixels(32), num_encoder_blocks=2, depths=[1, 1],
                             sr_ratios=[2, 1], hidden_sizes=[16, 32], patch_sizes=[7, 3], strides=[4, 2],
                             num_attention_heads=[1, 2], mlp_ratios=[2, 2]),
        },
    }
    keras_models = {
        "keras.applications": {
            **{name: _keras_existing(name) for name in ("mobilenet_v2", "resnet50", "efficientnet_b0", "densenet121",
                                                         "convnext_tiny", "inception_v3")},
            "mobilenet_v3_small": _keras_app("MobileNetV3Small"),
            "resnet50_v2": _keras_app("ResNet50V2"),
            "efficientnet_v2_b0": _keras_app("EfficientNetV2B0"),
        },
        "keras_hub": {
            "bert": _keras_existing("bert"),
            "gpt2": _keras_existing("gpt2"),
            "distilbert": _hub("DistilBertBackbone", num_heads=2, max_sequence_length=16, **_HUB_TEXT),
            "llama": _hub("LlamaBackbone", num_query_heads=4, num_key_value_heads=2, **_HUB_TEXT),
            "mistral": _hub("MistralBackbone", num_query_heads=4, num_key_value_heads=2, **_HUB_TEXT),
            "gemma": _hub("GemmaBackbone", num_query_heads=2, num_key_value_heads=1, head_dim=8, **_HUB_TEXT),
            "vit": _hub_image("ViTBackbone", patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32),
        },
        "keras": {
            "text_lstm": _keras_existing("text_lstm"),
            "subclassed": _keras_existing("subclassed"),
        },
    }
    entries = []
    for source, families in (("torch", torch_models), ("keras", keras_models)):
        for family, builders in families.items():
            entries += [Entry(f"{family}/{name}", family, source, build) for name, build in builders.items()]
    return entries


#: Every model of the zoo by its id (``family/name``).
ZOO: dict[str, Entry] = {entry.name: entry for entry in _entries()}
