"""A tiny random Stable Diffusion pipeline, built offline and saved as a diffusers folder.

TOOLING-FACTS 3e: UNet2DConditionModel (32, 64), AutoencoderKL (32, 64), a 2-layer CLIP text
model 32 wide, a byte-level BPE tokenizer trained here on a few words, and DDIM. About 6 MB on
disk; 64 px in 4 steps takes a fraction of a second on a CPU. The weights are seeded, so the
same call builds the same pipeline. Its pictures are noise, but of the size and format asked
for, which is what the tests check.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SIZE = 64  # its default picture: the UNet's sample size (32) x the VAE's scale factor (2)
WORDS = ("a red bee on a blue flower in the sun, a green hive under the rain, the queen "
         "and her workers, honey, a cat, a dog, a painting of a tree ") * 4


def _tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<unk>", "<s>",
                                                                  "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator([WORDS], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", unk_token="<unk>",
                                   bos_token="<s>", eos_token="</s>", model_max_length=16)
    fast.save_pretrained(folder)


def build_tiny_pipeline(folder: Path) -> Path:
    """Write the pipeline to `folder` (created); returns it."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    _tokenizer(folder / "_tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(folder / "_tokenizer")
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
        norm_num_groups=32)
    vae = AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), latent_channels=4,
        norm_num_groups=32)
    text = CLIPTextModel(CLIPTextConfig(
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        vocab_size=len(tokenizer), max_position_embeddings=16, pad_token_id=0,
        bos_token_id=2, eos_token_id=3, projection_dim=32))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012,
                              beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text, tokenizer=tokenizer, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny pipeline's folder, built once per session."""
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd") / "pipeline")
