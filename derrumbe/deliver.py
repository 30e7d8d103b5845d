"""The finishing stages, once every frame is on disk: movies, the dust's VDBs, the USD, the manifest.

They read only the shot folder (the frames' files, the stage cache), so they run the same
after a local render, after a cluster's chunks and as a farm's last task.
"""

from __future__ import annotations

import platform
import resource
from pathlib import Path

import cv2
import numpy as np

from derrumbe import __version__, colour
from derrumbe.errors import DerrumbeError
from derrumbe.files import sha256_file
from derrumbe.frames import FrameRenderer, dust_thinning, frame_files
from derrumbe.graph import library_version
from derrumbe.scene import Scene
from derrumbe.stages import exr as exr_out
from derrumbe.stages import movies, outputs
from derrumbe.stages.manifest import write_manifest
from derrumbe.stages.particles import debris_sizes
from derrumbe.stages.vdb import dust_grids, vdb_path, write_vdb

EXR_LAYERS = ["R,G,B,A (beauty)", "debris.R,G,B,A", "dust.R,G,B,A", "dust.Z", "matte.building", "matte.holdout",
              "matte.effect", "depth.Z", "forward.u,v"]


def movie_kinds(s: Scene) -> tuple[str, ...]:
    return ("h264", "prores") if s.spec.prores else ("h264",)


def encode(s: Scene) -> dict[str, str]:
    """The review movies from the frame PNGs; {file: sha256}."""
    sp = s.spec
    paths = [s.frame_path(i) for i in range(s.n_frames)]
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        raise DerrumbeError(f"{len(missing)} frames are not rendered yet (first: {missing[0]}); "
                            f"render them before encoding")
    burn = movies.BurnIn(sp.name, sp.version, s.out_size, sp.fps, sp.first_frame) if sp.burn_in else None
    rate = s.src.rate if s.src.moving and s.src.rate else sp.fps
    made = movies.encode_movies(s.out, sp.stem, paths, rate, s.out_size, movie_kinds(s), burn, s.progress.advance,
                                sp.first_frame)
    return {p.name: sha256_file(p) for p in made}


def write_vdbs(s: Scene) -> tuple[dict, dict]:
    """The dust's OpenVDB sequence: ({frame: relative path}, {file: sha256})."""
    vdb_files, files = {}, {}
    if not (s.spec.vdb and s.spec.dust > 0):
        return vdb_files, files
    first = s.spec.first_frame
    for i in range(s.n_frames):
        state = s.cache.load_dust_frame(s.keys["dust"], i)
        if state is None:
            raise DerrumbeError(f"the cached dust of frame {first + i} is damaged; "
                                f"run `derrumbe cache clean {s.cache.root.parent}` and render again")
        vpath = vdb_path(s.out, s.spec.stem, first + i)
        write_vdb(vpath, *dust_grids(state))
        rel = vpath.relative_to(s.out).as_posix()
        vdb_files[first + i] = rel
        files[rel] = sha256_file(vpath)
        s.progress.advance(i + 1, s.n_frames)
    return vdb_files, files


def write_usd_file(s: Scene, vdb_files: dict) -> tuple[dict | None, dict]:
    if not s.spec.usd:
        return None, {}
    from derrumbe.stages.usd_export import write_usd
    usd_path = s.out / f"{s.spec.stem}.usdc"
    info = write_usd(usd_path, s["fracture"], s["simulate"], s["view"].ocam, s.spec.fps, s.spec.first_frame,
                     s.n_frames, s.spec.name, vdb_files)
    return info, {usd_path.name: sha256_file(usd_path)}


def frame_digests(s: Scene, known: dict) -> dict:
    """Every frame file's sha256: those the renderers reported, the rest read back."""
    out = {}
    for i in range(s.n_frames):
        for p in frame_files(s, i):
            rel = p.relative_to(s.out).as_posix()
            out[rel] = known.get(rel) or sha256_file(p)
    return out


def build_manifest(s: Scene, files: dict, frames_info: dict, usd_info, vdb_files: dict, timings: dict,
                   cpu: dict, rss: dict) -> dict:
    sp, n = s.spec, s.n_frames
    out, out_w, out_h = s.out, *s.out_size
    stem, first = sp.stem, sp.first_frame
    fr, sim, grit, (cam, place), matte = s["fracture"], s["simulate"], s["particles"], s["camera"], s["matte"]
    look = FrameRenderer(s)             # the per-shot tracks, as the frames were rendered with
    manifest = {
        "derrumbe_version": __version__,
        "spec": sp.to_dict(relative_to=out),
        "seed": sp.seed,
        "size": [out_w, out_h],
        "fps": sp.fps,
        "name": sp.name,
        "version": sp.version,
        "stem": stem,
        "first_frame": first,
        "last_frame": first + n - 1,
        "frames": [s.frame_path(i).name for i in range(n)],
        "passes": [f"passes/{p.name}" for i in range(n) for p in outputs.pass_paths(out, stem, i, first)]
        if sp.passes else [],
        "movie": movies.movie_path(out, stem, "h264").name,
        "movies": [movies.movie_path(out, stem, k).name for k in movie_kinds(s)],
        "burn_in": bool(sp.burn_in),
        "exr": {"files": [exr_out.exr_path(out, stem, first + i).relative_to(out).as_posix()
                          for i in range(n)], "colourspace": colour.WORKING,
                "layers": EXR_LAYERS, "compression": exr_out.COMPRESSION, "depth": "depth.Z and dust.Z: view depth "
                f"in metres, 32-bit float, {exr_out.FAR_Z:g} where there is no surface", "motion": "forward.u/"
                "forward.v: pixels to the next frame, u right, v up, at the frame's time (unblurred); shake and "
                "grain are not in the EXRs",
                } if sp.exr else None,
        "usd": usd_info,
        "vdb": {"files": list(vdb_files.values()), "grids": ["density (extinction, 1/m)", "temperature (K above "
                "ambient)", "velocity (m/s)"], "axes": "metres, y up, camera at the origin looking down -z"}
        if vdb_files else None,
        "plate": s.src.info(),
        "colour": {"ocio_config": colour.config_name(), "working": colour.WORKING, "display": colour.SRGB,
                   "display_note": "the inverse of the plate's sRGB input transform, untone-mapped, so the plate "
                                   "comes back as it went in"},
        "estimates": {
            "height_m": round(place.height_m, 2), "height_source": place.height_source,
            "height_sigma_log": round(place.height_sigma, 3),
            "height_range_m": [round(place.height_m * float(np.exp(s * place.height_sigma)), 2) for s in (-1, 1)],
            "storeys": round(place.storeys, 2), "storey_m": round(place.storey_m, 2),
            "ground_floor_m": round(place.ground_floor_m, 2), "scale": place.scale,
            "distance_m": round(place.depth_m, 2), "focal_mm": round(cam.focal_mm, 2),
            "horizon_y": round(cam.cy, 1), "floors": round(place.floors, 2), **look.light_info,
            "material": s["material"].name,
        },
        "holdouts": {"auto": not sp.no_auto_holdouts, "objects": matte.objects.as_list(),
                     "moving_tracks": frames_info.get("moving_tracks", 0)},
        "fracture": {"bonds": int(len(fr.bonds)), **fr.info},
        "simulation": sim.info,
        "particles": {"count": grit.n},
        "debris_sizes": debris_sizes(sim, fr, grit),
        "dust": {**s["dust"], "thinned_to": round(dust_thinning(sp.see_through, s["dust"], sp.fps), 4)}
        if s["dust"].get("enabled") else s["dust"],
        "cache": {"keys": s.keys, "stages": {st: e for st, e in s.cache.events}},
        "render": {"motion_blur_samples_max": frames_info.get("samples_max", 1), "shutter_deg": sp.shutter,
                   "shutter_s": round(look.shutter_s, 6),
                   "grain_sigma": [round(float(g), 4) for g in look.grain_model.sigma[1]],
                   "grain": look.grain_model.as_dict()},
        "runner": frames_info.get("runner", {"kind": "local"}),
        "timings_s": timings,
        "cpu_s": cpu,
        "peak_rss_mb_after": rss,
        "peak_rss_mb": peak_mb(),
        "software": {"python": platform.python_version(), "rapier3d": library_version("rapier3d"),
                     "numpy": np.__version__, "opencv": cv2.__version__},
    }
    # Every file this render wrote or kept, with its sha256 (manifest.json itself aside).
    manifest["files"] = {k: files[k] for k in sorted(files)}
    write_manifest(out, manifest, stem)
    return manifest


def peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def manifest_path(out: Path) -> Path:
    return out / "manifest.json"
