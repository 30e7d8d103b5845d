"""Wan 2.1 / 2.2 image-to-video (diffusers' WanImageToVideoPipeline) as the refiner.

Conditioning on the coarse animation without training, with two clocks (in the spirit of
"Time-to-Move"): the coarse window is encoded by the model's own VAE (x0), and denoising
starts part-way down the noise schedule from x0 noised with the shot's warped noise, so
the model keeps the simulated motion and timing and only adds what a renderer lacks.
Inside the effect matte it starts at `strength` (freedom to add realism); outside, each
step puts back x0 noised to the current level until the schedule is at half of that, so
the plate side is held close to the coarse render (and the comp restores it exactly
afterwards). The first frame is the plate (or, for a later window, the last window's
refined frame) through the pipeline's own image conditioning.

Flow matching: x_sigma = (1 - sigma) * x0 + sigma * noise (diffusers' FlowMatchEuler).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from derrumbe.errors import DerrumbeError
from derrumbe.generative import require_torch

PIPELINE_CLASS = "WanImageToVideoPipeline"
# Below this much GPU memory the pipeline's parts take turns on the GPU (model CPU
# offload): a 14B transformer in bf16 alone is 28 GB.
OFFLOAD_BELOW_GB = 60


def check_weights(model_dir: str | Path) -> dict:
    """The folder's model_index.json, or one line saying what was expected."""
    d = Path(model_dir)
    expect = (f"expected a diffusers {PIPELINE_CLASS} folder (model_index.json with transformer/, vae/, "
              f"text_encoder/, tokenizer/, scheduler/, e.g. Wan-AI/Wan2.1-I2V-14B-480P-Diffusers)")
    if not d.is_dir():
        raise DerrumbeError(f"--model {d} is not a folder; {expect}")
    mi = d / "model_index.json"
    if not mi.exists():
        raise DerrumbeError(f"--model {d} has no model_index.json; {expect}")
    try:
        index = json.loads(mi.read_text())
    except ValueError:
        raise DerrumbeError(f"{mi} is not valid JSON; {expect}") from None
    if index.get("_class_name") != PIPELINE_CLASS:
        raise DerrumbeError(f"--model {d} holds a {index.get('_class_name')!r}, not a {PIPELINE_CLASS}; {expect}")
    missing = [k for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and v[0] is not None
               and not (d / k).is_dir()]
    if missing:
        raise DerrumbeError(f"--model {d} lacks {', '.join(missing)}/; {expect}")
    return index


class WanRefiner:
    name = "wan-i2v"

    def __init__(self, model_dir: str | Path, device: str | None, log=lambda s: None):
        torch, diffusers = require_torch()
        self.torch = torch
        index = check_weights(model_dir)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise DerrumbeError("--device cuda: no CUDA device is available to torch here; use --device cpu")
        self.device = device
        # bf16 on the GPU (what Wan is trained and served in); float32 on the CPU, where
        # bf16 matmuls are slow and results would differ between machines.
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        self.dtype_name = str(dtype).replace("torch.", "")
        try:
            pipe = diffusers.WanImageToVideoPipeline.from_pretrained(
                str(model_dir), dtype=dtype, local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DerrumbeError(f"cannot load --model {model_dir}: {str(e).splitlines()[0][:200]}") from None
        # The VAE and the CLIP image encoder stay in float32, as Wan's own example loads
        # them: in bf16 the VAE's decoder bands and shifts colour.
        pipe.vae.to(torch.float32)
        if getattr(pipe, "image_encoder", None) is not None:
            pipe.image_encoder.to(torch.float32)
        # Sampling is always Euler flow matching with the checkpoint's own shift (Wan's
        # diffusers checkpoints ship UniPC, a multistep sampler whose history can't start
        # part-way down the schedule).
        cfg = dict(pipe.scheduler.config)
        shift = float(cfg.get("flow_shift") or cfg.get("shift") or 5.0)
        pipe.scheduler = diffusers.FlowMatchEulerDiscreteScheduler(shift=shift)
        self.shift = shift
        self.offload = False
        if device == "cuda":
            total = torch.cuda.get_device_properties(0).total_memory / 2**30
            if total < OFFLOAD_BELOW_GB:
                pipe.enable_model_cpu_offload()
                self.offload = True
            else:
                pipe.to("cuda")
            if hasattr(pipe.vae, "enable_tiling"):
                pipe.vae.enable_tiling()
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe
        self.scheduler = pipe.scheduler           # the untruncated original
        self.spatial = int(getattr(pipe, "vae_scale_factor_spatial", 8))
        self.temporal = int(getattr(pipe, "vae_scale_factor_temporal", 4))
        self.latent_channels = int(pipe.vae.config.z_dim)
        h = hashlib.sha256(json.dumps(index, sort_keys=True).encode())
        for sub in ("transformer", "vae"):
            cfg = Path(model_dir) / sub / "config.json"
            if cfg.exists():
                h.update(cfg.read_bytes())
        self.model_id = h.hexdigest()[:16]
        log(f"{self.name}: {Path(model_dir).name} on {device} ({self.dtype_name}"
            f"{', model CPU offload' if self.offload else ''})")

    # ---- latents ----------------------------------------------------------------------
    def _norm(self):
        torch, vae = self.torch, self.pipe.vae
        mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
        inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
        return mean, inv_std

    def encode(self, frames_u8: np.ndarray):
        """T x H x W x 3 uint8 (display sRGB) -> normalised latents 1 x C x T' x h x w,
        the same way the pipeline encodes its condition: (mode - mean) / std."""
        torch, vae = self.torch, self.pipe.vae
        dev = self.pipe._execution_device
        x = torch.from_numpy(frames_u8).float().div(127.5).sub(1.0)          # -1..1
        x = x.permute(3, 0, 1, 2).unsqueeze(0).to(dev, torch.float32)         # 1 x 3 x T x H x W
        with torch.no_grad():
            lat = vae.encode(x).latent_dist.mode()
        mean, inv_std = self._norm()
        return (lat - mean.to(lat)) * inv_std.to(lat)

    def latent_mask(self, mattes: np.ndarray, lat_shape) -> np.ndarray:
        """Effect matte (T x H x W, 0..1) to the latent grid: a latent cell is the
        effect's if any pixel of its 8x8 x (4 frames) footprint is, plus one cell."""
        import cv2
        _, _, Tl, h, w = lat_shape
        T = mattes.shape[0]
        groups = [[0]] + [list(range(max(1, 4 * j - 3), min(T, 4 * j + 1))) for j in range(1, Tl)]
        out = np.zeros((Tl, h, w), np.float32)
        for j, g in enumerate(groups):
            m = mattes[g].max(0) > 0.02
            cell = cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) > 0
            out[j] = cv2.dilate(cell.astype(np.uint8), np.ones((3, 3), np.uint8))
        return out

    # ---- one window -----------------------------------------------------------------
    def refine_window(self, frames_u8: np.ndarray, mattes: np.ndarray, first_u8: np.ndarray, noise: np.ndarray,
                      settings) -> np.ndarray:
        """frames_u8: T x H x W x 3 (T = 4k+1) at the model's size; mattes: T x H x W;
        first_u8: the image the window starts from; noise: C x T' x h x w (warped).
        Returns T x H x W x 3 uint8."""
        import PIL.Image
        torch, pipe = self.torch, self.pipe
        T, H, W = frames_u8.shape[:3]
        sigma_in, sigma_out = settings.clocks
        x0 = self.encode(frames_u8)
        eps = torch.from_numpy(np.ascontiguousarray(noise)).unsqueeze(0).to(x0)
        if eps.shape != x0.shape:
            raise DerrumbeError(f"internal: noise {tuple(eps.shape)} does not match the latents {tuple(x0.shape)}")
        mask = torch.from_numpy(self.latent_mask(mattes, x0.shape))[None, None].to(x0)

        sched = _truncated_scheduler(self.scheduler, sigma_in)
        pipe.scheduler = sched
        sched.set_timesteps(settings.steps, device=x0.device)
        sigmas = sched.sigmas.detach().cpu().float().numpy()
        s0 = float(sigmas[0])
        start = (1 - s0) * x0 + s0 * eps

        def hold_plate_side(p, i, t, kw):
            # After step i the latents are at sigmas[i + 1]: outside the effect, put back
            # the coarse render at that noise level while the plate's clock is still running.
            # (Blended in float32: with a bf16 transformer the latents come back bf16.)
            nxt = float(sigmas[min(i + 1, len(sigmas) - 1)])
            lat = kw["latents"]
            if nxt > sigma_out:
                ref = (1 - nxt) * x0 + nxt * eps
                m = mask
                lat = (m * lat.float() + (1 - m) * ref.to(lat.device)).to(lat.dtype)
            return {"latents": lat}

        gen = torch.Generator(device="cpu").manual_seed(int(settings.seed))
        with torch.no_grad():
            out = pipe(image=PIL.Image.fromarray(first_u8), prompt=settings.prompt,
                       negative_prompt=_negative(), height=H, width=W, num_frames=T,
                       num_inference_steps=settings.steps, guidance_scale=settings.guidance, generator=gen,
                       latents=start, output_type="np",
                       callback_on_step_end=hold_plate_side, callback_on_step_end_tensor_inputs=["latents"])
        video = np.asarray(out.frames[0], np.float32)          # T x H x W x 3, 0..1
        return np.clip(np.rint(video * 255.0), 0, 255).astype(np.uint8)


def _negative() -> str:
    from derrumbe.refine import NEGATIVE_PROMPT
    return NEGATIVE_PROMPT


def _truncated_scheduler(base, sigma_max: float):
    """A copy of the pipeline's own scheduler that starts at sigma_max instead of 1: the
    pipeline calls set_timesteps itself and steps through whatever schedule it gets,
    like an image-to-image strength."""
    cls = type(base)

    class Truncated(cls):
        def set_timesteps(self, *a, **k):
            super().set_timesteps(*a, **k)
            sig = self.sigmas
            keep = min(int((sig[:-1] > sigma_max + 1e-6).sum()), len(self.timesteps) - 1)
            self.timesteps = self.timesteps[keep:]
            self.sigmas = sig[keep:]
            self._step_index = None
            self._begin_index = None

    return Truncated.from_config(base.config)
