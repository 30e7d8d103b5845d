"""Compute kernels, kept apart from the stages that call them.

fluid.py holds the dust solver's numba kernels; the GLSL shaders live beside the
renderers that run them (stages/render.py, stages/dust_render.py). Keeping the inner
loops here is what lets them move to a GPU later (numba.cuda, warp, or GLSL compute)
without touching the stage logic.
"""
