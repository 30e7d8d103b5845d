"""The frame side of a shot: everything at the output size, and the render of any set of frames.

Each frame depends only on the sim side's stored results and its own index (its grain
comes from a generator seeded with (seed, frame)), so frames can be rendered in any
order, in chunks, by many processes, and come out the same bytes. The one thing that
runs forward in time, a video plate's tracker of moving holdouts, is replayed from the
first frame up to a chunk's start.
"""

from __future__ import annotations

import functools
import time
import cv2
import numpy as np

from derrumbe import colour
from derrumbe.colour import linear_to_u8, u8_to_linear
from derrumbe.errors import DerrumbeError
from derrumbe.graph import (BLUR_SAMPLES, BLUR_STEP_PX, CLEAR_TAU, DUST_MARCH_DIV, face_albedo, frame_key,
                            standing_obstacles)
from derrumbe.scene import Scene
from derrumbe.spec import DUST_SRGB, ShotSpec
from derrumbe.stages import exr as exr_out
from derrumbe.stages import outputs
from derrumbe.stages.comp import (composite, degrain, estimate_grain_model, regrained, room_darkness, rooms_behind,
                                  settled_dust, shake_track)
from derrumbe.stages.dust import Sightline, collapse_tops, crush_veils, dust_frame
from derrumbe.stages.dust_render import FAR as FAR_DUST
from derrumbe.stages.dust_render import DustLayers, backdrop_depth, vector_blur
from derrumbe.stages.heap import Heap
from derrumbe.stages.moving_holdouts import MovingHoldouts
from derrumbe.stages.view import min_pool
from derrumbe.stages.plate import resize_linear

TIMED = ("render", "dust_render", "comp", "write", "vectors")
FACADE_TINT = 0.06                 # how far the dust takes the facade's colour (dust_albedo)
RECOVER_PER_S = 2.0                # a thinned cloud's factor at most doubles a second (thinning_track)


def shutter_seconds(shutter_deg: float, fps: float) -> float:
    """How long each frame is exposed: a 180-degree shutter is open half the frame time
    (1/48 s at 24 fps). Everything that moves blurs over this time."""
    return float(shutter_deg) / 360.0 / float(fps)


def frame_files(s: Scene, i: int) -> list:
    """Frame i's files: the PNG, then its passes and EXR when asked for."""
    out, stem, first = s.out, s.spec.stem, s.spec.first_frame
    return ([s.frame_path(i)] + (outputs.pass_paths(out, stem, i, first) if s.spec.passes else [])
            + ([exr_out.exr_path(out, stem, first + i)] if s.spec.exr else []))


def reusable(s: Scene, i: int, fkey: str | None = None) -> bool:
    """Frame i was finished with this exact key and its files are whole (a killed or
    interrupted render resumes; a damaged or edited frame is rendered again)."""
    fkey = fkey or frame_key(s, i)
    p = s.frame_path(i)
    rec = s.cache.frame_record(s.frame_rel(i))
    if not rec.startswith(fkey + ":") or not p.exists():
        return False
    if rec.split(":")[1] != s.cache.frame_digest(p):           # changed or damaged since
        return False
    return all(q.exists() for q in frame_files(s, i)[1:])


class FrameRenderer:
    """Renders frames of one scene in this process: its OpenGL context, the renderers and
    the per-shot tracks (shake, grain) are made once and reused for every frame."""

    def __init__(self, s: Scene):
        self.s = s
        sp = s.spec
        v, sim, fr = s["view"], s["simulate"], s["fracture"]
        self.light, self.light_info = s["lighting"]
        self.shutter_s = shutter_seconds(sp.shutter, sp.fps)
        self.first_motion = float(np.min(sim.released)) if np.isfinite(sim.released).any() else np.inf
        potential = float((sim.mass * 9.81 * fr.centroid[:, 1]).sum())
        self.shake = shake_track(sim.times, sim.dissipated, potential, sp.shake, s.frame_times,
                                 3.0 * s.out_size[0] / 1280.0, sp.seed)
        # Grain from a real frame: a moving plate's median has had its noise averaged away.
        self.grain_model = estimate_grain_model(self.plate_frame(0)[1] if s.src.moving else v.plate_u8)
        # A still's grain is frozen: it is taken out once and every frame gets its own.
        self.live = not s.src.moving and sp.grain > 0
        if self.live:
            u8 = degrain(v.plate_u8, self.grain_model)
            self.still = (u8_to_linear(u8), u8)
        self.room = room_darkness(v.plate_out, v.bmatte)
        info = s.cache.dust_info(s.keys["dust"]) if sp.dust > 0 else {}
        self.dust_colour = dust_albedo(sp, self.light, s["material"])     # the cloud's, and the powder's hue
        self.settled = settled_dust(v.still_objects, v.plate_out, info.get("holdout_deposit", {}),
                                    self.dust_colour, self.light)
        self.thin = thinning_track(sp.see_through, info, sp.fps) if sp.dust > 0 else np.ones(1)
        self.tops = collapse_tops(sim, fr, s.frame_times, s["camera"][1].proxy_height_m)
        self.crushes = crush_veils(sim, s.frame_times)
        self.back_m = float(-fr.centroid[:, 2].min())
        self.front_m = float(-fr.facade_z)
        self.building_m = float(s["camera"][1].proxy_height_m)
        self.renderer = self.dust_r = None
        self.movers = None
        self.tracked = 0                # the next frame the moving-holdout tracker expects
        self.samples_used: list[int] = []
        self.stage_t = {k: np.zeros(2) for k in TIMED}

    # ---- per-shot parts made on first use ------------------------------------------------
    def _open(self) -> None:
        s, sp, q = self.s, self.s.spec, self.s.quality
        v, sim, fr, (cam, place) = s["view"], s["simulate"], s["fracture"], s["camera"]
        out_w, out_h = s.out_size
        # A moving plate: what moves in front of the building is held out frame by frame.
        self.movers = MovingHoldouts(s.plate.srgb, s["matte"].building, cam, place.depth_m) if s.src.moving and \
            not sp.no_auto_holdouts else None
        material = s["material"]
        light = self.light
        self.renderer = s.backends.render.debris(fr, v.ocam, self.plate_frame(0)[0], v.bmatte, light,
                                                 face_albedo(material),
                                                 material.face_rough, sim.pos[0], sim.quat[0], holdout=v.hold_still,
                                                 masonry=material.name == "masonry", seed=sp.seed,
                                                 heap=Heap(fr, sim, standing_obstacles(s)), dust=self.dust_colour)
        self.sun_share = 0.0
        back_full = backdrop_depth(v.ocam, (out_w, out_h), v.bmatte, v.skyness, place.depth_m) \
            if sp.dust > 0 or sp.exr else None
        if sp.dust > 0:
            march = (out_w // DUST_MARCH_DIV[q], out_h // DUST_MARCH_DIV[q])
            back = backdrop_depth(v.ocam, march, v.bmatte, v.skyness, place.depth_m)
            # Near the lens (fully within a quarter of the building's distance or 3 m, not
            # past 85 % or 10 m) the first 0.5-1.5 of optical depth from it thins away: a
            # haze around the camera does not veil the frame, a dense front there still
            # reads. Within 45 % of the distance, the cloud that had rolled over the camera
            # showed its coarse cells, metres across, as streaks fanning over the frame
            # (img_270 from 60 %); footage shows dust that close as a featureless haze.
            d = place.depth_m
            self.dust_r = s.backends.render.dust(self.renderer, v.ocam, light, self.dust_colour, back, march,
                                                 fps=sp.fps, backdrop_full=back_full, clear_tau=CLEAR_TAU,
                                                 clear_m=(max(0.25 * d, 3.0), max(0.85 * d, 10.0)))
            sun_irr = float(np.mean(light.sun_col) * max(light.sun_dir[1], 0.05))
            self.sun_share = sun_irr / (sun_irr + float(np.mean(light.amb_col)))
        # EXR: depth where no piece is (street, walls, sky) from the camera and the plate.
        if sp.exr:
            self.back_z = np.where(back_full >= 0.5 * FAR_DUST, exr_out.FAR_Z, back_full).astype(np.float32)
            _, rest_z, rest_cov = self.renderer.vectors(sim, 0.0, 0.0)
            self.rest_z = np.where(rest_cov > 0, rest_z, self.back_z)
        self.zeros4 = np.zeros((out_h, out_w, 4), np.float32)
        self.zeros2 = np.zeros((out_h, out_w, 2), np.float32)

    def release(self) -> None:
        if self.dust_r is not None:
            self.dust_r.release()
        if self.renderer is not None:
            self.renderer.release()
        self.renderer = self.dust_r = None

    # ---- the plate and the holdouts of a frame ---------------------------------------------
    def plate_frame(self, i):
        """A moving plate: each frame's own pixels under the effect (the analysis saw its
        temporal median). A still: the same arrays every frame, degrained when its grain
        is made live."""
        s, v = self.s, self.s["view"]
        if not s.src.moving:
            return self.still if self.live else (v.plate_out, v.plate_u8)
        f = s.src.frame(i)
        po = resize_linear(f.linear(), s.out_size)
        return po, (f.srgb if s.out_size == s.plate.size else linear_to_u8(po))

    def holdouts_of(self, i, frame_srgb):
        v = self.s["view"]
        if self.movers is None:
            return v.hold_still, v.hold_z_still
        # The tracker runs forward in time: a chunk that starts later replays it from
        # where it stands (from the first frame if it stands past i), so every track has
        # the id an uninterrupted render gives it.
        if i < self.tracked:
            cam, place = self.s["camera"]
            self.movers = MovingHoldouts(self.s.plate.srgb, self.s["matte"].building, cam, place.depth_m)
            self.tracked = 0
        for k in range(self.tracked, i):
            self.movers.frame(k, self.plate_frame(k)[1])
        self.tracked = i + 1
        mh, mz = self.movers.frame(i, frame_srgb)
        return 1 - (1 - v.hold_still) * (1 - mh), np.minimum(v.hold_z_still, mz)

    def per_object(self, i):
        """Each holdout's own matte for the EXR (holdout.<id>), the moving ones of frame i too."""
        objs = {f"{oid:03d}": a for oid, _, a in self.s["view"].still_objects}
        if self.movers is not None:
            objs.update({f"m{tid:03d}": a for tid, a in self.movers.objects_of(i)})
        return objs

    # ---- one frame ------------------------------------------------------------------------
    def render(self, i: int) -> tuple:
        """Frame i: (image, (debris, dust) layers or (None, None), the EXR job or None,
        the holdout matte)."""
        if self.renderer is None:
            self._open()
        s, sp, q = self.s, self.s.spec, self.s.quality
        sim, v, light = s["simulate"], s["view"], self.light
        t = float(s.frame_times[i])
        t0 = _clock()
        passes, exr = (None, None), None
        p_lin, p_u8 = self.plate_frame(i)
        hold_i, hold_z = self.holdouts_of(i, p_u8)
        if t + self.shutter_s / 2 < self.first_motion:
            # Before the collapse: the plate, with this frame's grain on a still.
            img = regrained(p_lin, self.grain_model, sp.grain, np.random.default_rng([sp.seed, i])) if self.live else p_u8
            if sp.exr:
                # The EXR's beauty is the plate as shot (a still's, not its degrained copy).
                exr = (functools.partial(exr_out.frame_channels, v.plate_out if self.live else p_lin, self.zeros4, self.zeros4, v.bmatte, hold_i,
                                         self.rest_z, self.zeros2, holdouts=self.per_object(i)),
                       None if s.src.moving else "plate")
            return img, passes, exr, hold_i
        layers = self.renderer.render(sim, t, self.shutter_s, BLUR_SAMPLES[q], s["particles"], BLUR_STEP_PX[q])
        self.samples_used.append(layers.samples)
        t1 = _clock()
        self.stage_t["render"] += t1 - t0
        dl = None
        if self.dust_r is not None:
            state = s.cache.load_dust_frame(s.keys["dust"], i)
            if state is None:
                raise DerrumbeError(f"the cached dust of frame {s.spec.first_frame + i} is damaged; "
                                    f"run `derrumbe cache clean {s.cache.root.parent}` and render again")
            thin = float(self.thin[min(i, len(self.thin) - 1)])
            sight = Sightline(float(self.tops[i]), self.back_m, self.front_m, self.building_m, self.crushes[i])
            dl = dust_layers(self.dust_r, dust_frame(state, light.sun_dir, thin, sight), layers, self.sun_share,
                             sp.shutter / 360.0, solid_depth(hold_i, hold_z))
            t2 = _clock()
            self.stage_t["dust_render"] += t2 - t1
            t1 = t2
        rng = np.random.default_rng([sp.seed, i])
        clean = rooms_behind(s["cleanplate"], v.bmatte, layers.static, layers.debris[..., 3], self.room)
        res = composite(p_lin, p_u8, clean, v.bmatte, hold_i, layers, self.grain_model, sp.grain,
                        self.shake[i], rng, dl, hold_z, shot=v.plate_out if self.live else None,
                        coat=self.settled.at(i))
        img, passes = res.frame, (res.debris, res.dust)
        t0 = _clock()
        self.stage_t["comp"] += t0 - t1
        if sp.exr:
            vec, z, cov = self.renderer.vectors(sim, t, 1.0 / sp.fps)
            z = np.where(cov > 0, z, self.back_z)
            exr = (functools.partial(exr_out.frame_channels, res.linear, res.debris, res.dust, v.bmatte,
                                     hold_i, z, vec, res.touched, visible_dust_depth(dl, self.back_z),
                                     holdouts=self.per_object(i)), None)
            self.stage_t["vectors"] += _clock() - t0
        return img, passes, exr, hold_i


def render_frames(s: Scene, frames, renderer: FrameRenderer | None = None, on_frame=None) -> dict:
    """Renders the frames (indices) of the scene that are not already finished with this
    key, writes their files atomically and records each as done once its files are in
    place. Returns what the manifest and the runners need: the files' sha256s, the frames
    rendered and reused, the most motion-blur samples, the timings."""
    own = renderer is None
    r = renderer or FrameRenderer(s)
    fkeys = {i: frame_key(s, i) for i in frames}
    rendered, reused = [], []

    def done(i):
        p = s.frame_path(i)
        s.cache.record_frame(s.frame_rel(i), fkeys[i], s.cache.frame_digest(p))
    sink = outputs.FrameSink(s.out, s.spec.stem, s.spec.passes, on_written=done,
                             exr_meta={"derrumbe:shot": s.spec.name, "derrumbe:version": s.spec.version},
                             first=s.spec.first_frame)
    write_t = np.zeros(2)
    try:
        for i in frames:
            if reusable(s, i, fkeys[i]):
                reused.append(i)
            else:
                img, passes, exr, hold_i = r.render(i)
                t0 = _clock()
                sink.submit(i, img, *passes, exr=exr, holdout=hold_i if s.spec.passes else None)
                write_t += _clock() - t0
                rendered.append(i)
            if on_frame is not None:
                on_frame(i)
        t0 = _clock()
        sink.close()
        write_t += _clock() - t0
    except BaseException:
        sink.abort()
        if own:
            r.release()
        raise
    if own:
        r.release()
    st = {k: v.copy() for k, v in r.stage_t.items()}
    st["write"] = st["write"] + write_t
    return {"digests": dict(sink.digests), "rendered": rendered, "reused": reused,
            "samples_max": int(max(r.samples_used, default=1)),
            "moving_tracks": r.movers.next_id - 1 if r.movers is not None else 0,
            "wall_s": {k: round(float(v[0]), 3) for k, v in st.items()},
            "cpu_s": {k: round(float(v[1]), 3) for k, v in st.items()}}


def _clock() -> np.ndarray:
    return np.array([time.perf_counter(), time.process_time()])


def dust_thinning(see_through: float, dust_info: dict, fps: float = 24.0) -> float:
    """The factor the cloud's extinction is scaled by at render, at its smallest: see
    thinning_track."""
    return float(thinning_track(see_through, dust_info, fps).min())


def thinning_track(see_through: float, dust_info: dict, fps: float = 24.0) -> np.ndarray:
    """Per frame, the factor the cloud's extinction is scaled by at render so that no more
    than `see_through` of optical depth stands between the lens and the building
    (`lens_tau_frames`, measured by the dust stage each frame). Physically, a camera
    10-20 m from a collapse is swallowed by a cloud of optical depth 10-30 within 2-3 s
    (img_270, 17 m away: 29) and the rest of the shot is a grey card; a camera 40 m away
    sees 2-4. The first bursts at the building, before the cloud reaches toward the lens,
    keep their physical density (one factor for the whole shot, set by its worst moment,
    thinned them to a faint haze). Once the cloud has passed the lens (img_190: it rolls
    over the camera at 2.3 s, then rises and drifts off) the factor recovers, at most
    doubling a second (RECOVER_PER_S), never past what the see-through allows: a cloud
    kept at its worst moment's thinning vanished from the rest of the shot, and one let
    back at once would thicken in a frame. Thinning keeps the cloud's shape and motion;
    only its opacity and its shadow change. 0: the physical cloud."""
    taus = np.asarray(dust_info.get("lens_tau_frames") or [dust_info.get("lens_tau", 0.0) or 0.0], float)
    if see_through <= 0:
        return np.ones(len(taus))
    need = np.minimum(1.0, see_through / np.maximum(taus, 1e-9))
    grow = RECOVER_PER_S ** (1.0 / max(fps, 1e-3))
    track = need.copy()
    for i in range(1, len(track)):
        track[i] = min(need[i], track[i - 1] * grow)
    return track


def describe_thinning(see_through: float, dust_info: dict, fps: float = 24.0) -> str | None:
    """One line for the log when the cloud is thinned."""
    track = thinning_track(see_through, dust_info, fps)
    if track.min() >= 1.0:
        return None
    first, worst = int(np.argmax(track < 1.0)), int(np.argmin(track))
    return (f"dust: thinned from frame {first + 1} of {len(track)}, to {track[worst]:.2f} of its density at frame "
            f"{worst + 1} and {track[-1]:.2f} at the last, so the building shows through it (optical depth "
            f"{dust_info['lens_tau']:.1f} between the lens and the building at {dust_info.get('lens_tau_at_s', 0):.1f} s, "
            f"--see-through {see_through:g}; --see-through 0 renders the physical cloud)")


def dust_albedo(spec: ShotSpec, light, material=None) -> np.ndarray:
    """The dust's colour: the user's, or the material's crushed walls and floors (concrete's
    grey-beige, old brickwork's light tan; concrete's without a material) tinted
    FACADE_TINT of the way toward the facade's own colour as the plate shows it under its
    light; the plate's sun and sky light it, so it carries the plate's white balance. The
    tint is small: what is crushed is the bulk of the walls and floors, not their paint or
    glass (a third of the way made a green-painted building's dust yellow-green and a
    curtain wall's lavender, from the sky it reflects)."""
    if spec.dust_color:
        return colour.srgb_colour(spec.dust_color)
    base = colour.srgb_colour(material.dust_srgb if material is not None else DUST_SRGB)
    fac = np.clip(np.asarray(light.facade_albedo, float), 1e-3, 1.0)
    tint = fac / max(float(fac.mean()), 1e-3) * float(base.mean())
    return ((1.0 - FACADE_TINT) * base + FACADE_TINT * tint).astype(np.float32)


def visible_dust_depth(dl: DustLayers | None, backdrop_z: np.ndarray) -> np.ndarray | None:
    """The cloud front's depth for dust.Z, never behind the street or wall the pixel sees:
    the march is coarser than the frame, so near the horizon a march cell's depth is the
    mean over rows whose street lies nearer than that mean."""
    if dl is None:
        return None
    return np.where(dl.depth > 0, np.minimum(dl.depth, backdrop_z), dl.depth).astype(np.float32)


def opaque_depth(layers, holdout_z: np.ndarray | None, size) -> np.ndarray:
    """Depth of the nearest opaque thing per march pixel (0: none): the nearest moving
    piece (its mean depth over the pixels it covers), a standing one or a holdout, whichever is nearer, so
    the dust is split into front and back where the comp puts that thing."""
    W, H = size
    ds = cv2.resize(layers.depth_sum, (W, H), interpolation=cv2.INTER_AREA)
    dn = cv2.resize(layers.depth_n, (W, H), interpolation=cv2.INTER_AREA)
    debris = np.where(dn > 1e-3, ds / np.maximum(dn, 1e-6), np.inf)
    if layers.static_z is not None:
        # The standing building hides the dust behind it (the comp shows the plate or the
        # still piece there), so the dust is split at its walls too: behind a standing
        # corner nearer than the facade, the cloud must not be drawn as in front.
        still = layers.static_z > 0
        st = cv2.resize(still.astype(np.float32), (W, H), interpolation=cv2.INTER_AREA)
        sz = min_pool(np.where(still, layers.static_z, np.inf), (W, H))
        debris = np.minimum(debris, np.where(st > 0.5, sz, np.inf))
    if holdout_z is not None:
        # The nearest holdout touching a march pixel: the dust in front of it covers it.
        debris = np.minimum(debris, min_pool(holdout_z, (W, H)))
    return np.where(np.isfinite(debris) & (debris < 1e29), debris, 0.0).astype(np.float32)


def solid_depth(hold: np.ndarray, hold_z: np.ndarray | None) -> np.ndarray | None:
    """The holdouts' depth where they are at least half opaque: where the dust is split.
    Their soft fringe (a few pixels of 1-15 % matte) carries their depth too; split there,
    the debris seen through the fringe got only the little dust in front of the car, and
    its dark underside showed as a jagged black line along img_140's car roof."""
    if hold_z is None:
        return None
    return np.where(hold >= 0.5, hold_z, np.inf).astype(np.float32)


def dust_layers(dust_r, frame, layers, sun_share: float, shutter: float,
                 holdout_z: np.ndarray | None = None) -> DustLayers | None:
    """Marches the dust against the nearest opaque depth (debris or holdout; coarse, then
    the full-size edges) and blurs it along its own motion over the shutter."""
    if not frame.sigma.any():
        return None
    opaque = opaque_depth(layers, holdout_z, dust_r.size)
    full = opaque_depth(layers, holdout_z, dust_r.out_size)
    d = dust_r.render(frame, opaque, full)
    # The motion of the dust spread a little beyond it, so blur reaches past its edges.
    a = np.maximum(d.front[..., 3], d.back[..., 3])
    wa = cv2.GaussianBlur(a, (0, 0), 3.0) + 1e-6
    mo = np.stack([cv2.GaussianBlur(d.motion[..., c] * a, (0, 0), 3.0) / wa for c in range(2)], -1).astype(np.float32)
    front, back = np.empty_like(d.front), np.empty_like(d.back)
    for src, dst in ((d.front, front), (d.back, back)):
        # (no dust behind any piece, as in most frames before debris lands: nothing to blur)
        if src.any():
            vector_blur(np.ascontiguousarray(src), mo, shutter, dst)
        else:
            dst[...] = 0.0
    np.clip(front[..., 3], 0.0, 1.0, out=front[..., 3])
    np.clip(back[..., 3], 0.0, 1.0, out=back[..., 3])
    return DustLayers(front, back, d.shade_near, d.shade_far, sun_share, d.depth, mo)
