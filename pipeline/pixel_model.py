"""A small transformer over pixels, proprioception and action tokens, as a Hugging Face causal LM.

A robot episode is one token sequence, like a dialogue: `<|obs|> a_0^0 .. a_0^{D-1} <|obs|> a_1^0 ...`.
Every `<|obs|>` position's embedding is replaced by the encoding of that step's camera image and
proprioception; action positions hold RT-1 style bin tokens (one per action dimension). The output is
next-token logits, so BC, the Q-SFT loss, the target network, checkpoints and policy extraction apply
exactly as for text:

    e_t = Linear([SpatialSoftmax(Conv(image_t / 255)), (proprio_t - mu) / sigma])   observation embedding
    h   = GPT2Model(inputs_embeds = [e_0, wte(a_0^0), ...])     causal transformer over the history
    p(x_{i+1} | x_<=i) = softmax(W h_i)

Registered with `AutoConfig` / `AutoModelForCausalLM` (model type `qsft_pixel_gpt2`), so a checkpoint is
an ordinary `save_pretrained` folder that `AutoModelForCausalLM.from_pretrained` loads once this module
is imported (`pipeline.models` imports it). The images of a batch are passed packed, one per `<|obs|>`
token in row-major order: `images` (N_obs, H, W, 3) uint8 and `proprio` (N_obs, P) float.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, GPT2Config, GPT2Model, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast


class PixelGPTConfig(GPT2Config):
    model_type = "qsft_pixel_gpt2"

    def __init__(self, image_size: int = 64, proprio_dim: int = 4, observation_token_id: int = 2,
                 proprio_mean: list[float] | None = None, proprio_std: list[float] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.image_size = image_size
        self.proprio_dim = proprio_dim
        self.observation_token_id = observation_token_id
        # the training data's proprio statistics (`pipeline.train.proprio_statistics`): the encoder standardises
        # with them, so that centimetre differences in metre-valued positions are not lost in the projection
        self.proprio_mean = list(proprio_mean) if proprio_mean is not None else [0.0] * proprio_dim
        self.proprio_std = list(proprio_std) if proprio_std is not None else [1.0] * proprio_dim


def spatial_softmax(features: torch.Tensor, temperature: torch.Tensor | float = 1.0) -> torch.Tensor:
    """(N, C, H, W) -> (N, 2C): each channel's expected image coordinates in [-1, 1] under the softmax of its
    activations (Levine et al. 2016), i.e. where in the image the feature it detects is:

        w_c = softmax(temperature * (f_c - mean(f_c)) / std(f_c)),   keypoint_c = sum_{(y, x)} w_c(y, x) (y, x)

    Each channel is standardised over the image, so that the softmax is as peaked as the feature's contrast, not
    its raw scale: a small conv stem's raw activations vary by ~1e-3 across a 64x64 view of a table, and their
    softmax is flat, every keypoint the centre. The softmax is shift-invariant, so the mean is never subtracted,
    and the coordinate sums are one matrix product: the same keypoints at half the cost on CPU."""
    h, w = features.shape[-2:]
    flat = features.flatten(2)
    weights = (flat * (temperature / (flat.std(-1, keepdim=True) + 1e-5))).softmax(-1)
    ys = torch.linspace(-1.0, 1.0, h, device=features.device, dtype=features.dtype)
    xs = torch.linspace(-1.0, 1.0, w, device=features.device, dtype=features.dtype)
    grid = torch.stack([ys.repeat_interleave(w), xs.repeat(h)], dim=-1)  # (H*W, 2): each pixel's (y, x)
    keypoints = weights @ grid                                            # (N, C, 2)
    return torch.cat([keypoints[..., 0], keypoints[..., 1]], dim=-1)


class ObservationEncoder(nn.Module):
    """(N, H, W, 3) uint8 images + (N, P) proprioception -> (N, n_embd).

    A small conv stack keeps a 16x16 feature map (a quarter of the image's side); spatial-softmax keypoints (where
    each feature is) and a pooled summary (how strongly it is present) are concatenated with the proprioception,
    standardised with the training data's statistics (config `proprio_mean`, `proprio_std`), and projected.
    """

    KEYPOINTS = 32

    def __init__(self, config: PixelGPTConfig):
        super().__init__()
        self.register_buffer("proprio_mean", torch.tensor(config.proprio_mean, dtype=torch.float32))
        std = torch.tensor(config.proprio_std, dtype=torch.float32)
        self.register_buffer("proprio_std", torch.where(std > 1e-6, std, 1.0))  # a constant dimension stays put
        self.conv = nn.Sequential(
            nn.Conv2d(3, 16, kernel_size=5, stride=2, padding=2), nn.GELU(),
            nn.Conv2d(16, 32, kernel_size=3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(32, self.KEYPOINTS, kernel_size=3, padding=1),
        )
        self.log_temperature = nn.Parameter(torch.zeros(()))   # spatial softmax's sharpness, learned
        self.project = nn.Linear(3 * self.KEYPOINTS + config.proprio_dim, config.n_embd)

    def forward(self, images: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
        dtype = self.project.weight.dtype
        features = self.conv(images.permute(0, 3, 1, 2).to(dtype) / 255.0)
        proprio = (proprio.to(self.proprio_mean.dtype) - self.proprio_mean) / self.proprio_std
        keypoints = spatial_softmax(features, self.log_temperature.exp())
        summary = [keypoints, features.mean(dim=(2, 3)), proprio.to(dtype)]
        return self.project(torch.cat(summary, dim=-1))


class PixelGPTBackbone(nn.Module):
    """Token embeddings with observation embeddings put in at `<|obs|>` positions, then GPT-2 blocks."""

    def __init__(self, config: PixelGPTConfig):
        super().__init__()
        self.observation_token_id = config.observation_token_id
        self.encoder = ObservationEncoder(config)
        self.gpt = GPT2Model(config)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                images: torch.Tensor | None = None, proprio: torch.Tensor | None = None, **kwargs):
        embeds = self.gpt.wte(input_ids)
        is_observation = input_ids == self.observation_token_id
        count = int(is_observation.sum())
        if count:
            if images is None or proprio is None or len(images) != count or len(proprio) != count:
                raise ValueError(f"{count} <|obs|> tokens need as many images and proprio rows, got "
                                 f"{None if images is None else len(images)} and "
                                 f"{None if proprio is None else len(proprio)}")
            embeds = embeds.masked_scatter(is_observation[..., None], self.encoder(images, proprio).to(embeds.dtype))
        return self.gpt(inputs_embeds=embeds, attention_mask=attention_mask, **kwargs)


class PixelGPT(PreTrainedModel):
    """Causal LM over the robot sequence; `base_model` is the backbone, `lm_head` gives token logits."""

    config_class = PixelGPTConfig
    base_model_prefix = "backbone"
    main_input_name = "input_ids"

    def __init__(self, config: PixelGPTConfig):
        super().__init__(config)
        self.backbone = PixelGPTBackbone(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """GPT-2's init (N(0, 0.02)) for the transformer and the head; the observation encoder keeps PyTorch's
        fan-in init, because N(0, 0.02) through three convolutions leaves its features ~1e-3 of the pixels, so
        flat that spatial softmax puts every keypoint at the centre and the policy cannot see the cube."""
        if any(module is m for m in self.backbone.encoder.modules()):
            return
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.gpt.wte

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, cache=None, use_cache: bool | None = None,
                images: torch.Tensor | None = None, proprio: torch.Tensor | None = None, **kwargs):
        out = self.backbone(input_ids, attention_mask=attention_mask, images=images, proprio=proprio,
                            position_ids=position_ids, cache=cache, use_cache=use_cache)
        return CausalLMOutputWithPast(logits=self.lm_head(out.last_hidden_state), cache=out.cache)


AutoConfig.register(PixelGPTConfig.model_type, PixelGPTConfig, exist_ok=True)
AutoModelForCausalLM.register(PixelGPTConfig, PixelGPT, exist_ok=True)
