"""A tiny AnimateDiff text-to-video pipeline, built offline with random weights (TOOLING-FACTS
section 0): a 2-block UNet, a MotionAdapter, a 2-layer CLIP text encoder with a byte-level
vocabulary, a DDIM scheduler. Saved as a diffusers folder (model_index.json); 64×64, 8 frames,
4 steps take about a second on a CPU. The pictures are noise: tests check shapes, not art."""

from __future__ import annotations

import json
from pathlib import Path


def _tokenizer(folder: Path) -> object:
    from transformers import CLIPTokenizer

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = {t: i for i, t in enumerate(
        ["<|startoftext|>", "<|endoftext|>", "!", *letters, *(f"{c}</w>" for c in letters)])}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                         model_max_length=16)


def build_tiny_video_pipeline(folder: Path) -> Path:
    """Save the pipeline into `folder` (made if needed); returns it."""
    import torch
    from diffusers import (
        AnimateDiffPipeline,
        AutoencoderKL,
        DDIMScheduler,
        MotionAdapter,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    blocks = (8, 16)
    unet = UNet2DConditionModel(
        block_out_channels=blocks, layers_per_block=1, sample_size=8, in_channels=4,
        out_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
        attention_head_dim=4, norm_num_groups=4)
    adapter = MotionAdapter(block_out_channels=blocks, motion_layers_per_block=1,
                            motion_norm_num_groups=4, motion_num_attention_heads=2,
                            motion_max_seq_length=32)
    vae = AutoencoderKL(block_out_channels=blocks, in_channels=3, out_channels=3,
                        down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4,
                        norm_num_groups=4)
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
        pad_token_id=1))
    scheduler = DDIMScheduler(beta_schedule="linear", steps_offset=1, clip_sample=False)
    pipe = AnimateDiffPipeline(unet=unet, motion_adapter=adapter, vae=vae, text_encoder=text,
                               tokenizer=_tokenizer(folder), scheduler=scheduler,
                               feature_extractor=None, image_encoder=None)
    pipe.save_pretrained(folder)
    return folder
