"""A tiny, random Wan 2.1 image-to-video pipeline, built offline for tests.

``build_tiny_wan_i2v(path)`` makes every component of a ``diffusers.WanImageToVideoPipeline``
from configs alone (no weights are downloaded), with ``torch.manual_seed(0)`` before each
one so the result is the same on every machine, and saves it with ``save_pretrained``.
``WanImageToVideoPipeline.from_pretrained(path, local_files_only=True)`` loads it back.

The model is random: what it makes is noise shaped like a video. It exercises the real
loading, conditioning, denoising and decoding code paths of the generative pass, at a size
that runs on a CPU in seconds (the folder is well under 1 MB).

Smallest frame it accepts: 16x16 (height and width must be multiples of 16 = VAE factor 8
times the transformer's 2x2 patch); ``num_frames`` must be 4k+1 (9 -> 3 latent frames).
"""

from __future__ import annotations

from pathlib import Path

# Words the tiny tokenizer knows; anything else maps to <unk>. T5's ids for the specials.
_VOCAB_WORDS = (
    "a the of and in on with to from is rock rocks cliff collapse dust debris falls falling "
    "slow motion camera static wide shot boulder slope mountain sky cloud light shadow video "
    "frame blurry low quality"
).split()


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for w in _VOCAB_WORDS:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    # Append </s> like T5 does.
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="</s>"
    ), len(vocab)


def _clip_image_processor():
    import transformers

    # transformers >= 5 without torchvision: CLIPImageProcessor is an alias that warns and
    # falls back to the PIL backend; use that backend directly where it exists.
    cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    return cls(crop_size=32, size=32)


def build_tiny_wan_i2v(path: Path) -> Path:
    """Build a tiny random Wan 2.1 I2V pipeline and save it to ``path``; return ``path``."""
    import torch
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanImageToVideoPipeline,
        WanTransformer3DModel,
    )
    from transformers import CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    path = Path(path)

    torch.manual_seed(0)
    vae = AutoencoderKLWan(
        base_dim=3,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )

    torch.manual_seed(0)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=7.0)

    tokenizer, vocab_size = _tokenizer()
    torch.manual_seed(0)
    text_encoder = UMT5EncoderModel(
        UMT5Config(d_model=32, num_layers=2, num_heads=2, d_kv=8, d_ff=64, vocab_size=vocab_size,
                   pad_token_id=0, eos_token_id=1)
    )

    torch.manual_seed(0)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=36,  # 16 noisy latents + 4 mask + 16 condition latents
        out_channels=16,
        text_dim=32,  # = text_encoder d_model
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
        image_dim=4,  # = image_encoder hidden_size (the pipeline uses hidden_states[-2])
    )

    torch.manual_seed(0)
    image_encoder = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=4,
            projection_dim=4,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            intermediate_size=16,
            patch_size=1,
        )
    )
    image_processor = _clip_image_processor()

    pipe = WanImageToVideoPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        scheduler=scheduler,
        image_processor=image_processor,
        image_encoder=image_encoder,
        transformer=transformer,
    )
    path.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(path)
    return path


if __name__ == "__main__":  # python tests/tiny_wan.py OUT_DIR
    import sys

    print(build_tiny_wan_i2v(Path(sys.argv[1] if len(sys.argv) > 1 else "tiny-wan-i2v")))
