"""The generative pass (optional): a local video-diffusion model makes the coarse render
photoreal while the simulation keeps the motion, timing and framing.

torch and diffusers are an extra (`pip install -e .[gen]`, or `make gen`): nothing here
imports them at module level, so the rest of derrumbe runs without them.
"""

from derrumbe.errors import DerrumbeError

EXTRA_HINT = "install the generative extra: .venv/bin/pip install -e '.[gen]' (or `make gen`)"


def require_torch():
    """torch and diffusers, or a one-line error naming the extra to install."""
    import os
    # Never reach for the Hub: weights come from a local folder only.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        import torch  # noqa: F401
        import diffusers  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        raise DerrumbeError(f"derrumbe refine needs torch and diffusers ({e.name} is missing); {EXTRA_HINT}") from None
    return torch, diffusers
