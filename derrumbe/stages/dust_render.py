"""Dust render: a single-scattering ray march of the dust grid, in GLSL (moderngl).

Per pixel (at half the output resolution; the cloud is soft at that scale, the detail
noise is not) a ray from the camera crosses the grid up to the first opaque thing: a
debris piece, the standing building, the street, or the plate's own walls. Each step
adds light scattered toward the camera:
- sun: the plate's sun colour x transmittance toward the sun (an optical-depth volume
  swept on the CPU each frame, so the cloud shadows itself) x a Henyey-Greenstein phase
  (dust scatters forward: back-lit dust glows) x a short local shadow from the detail;
- sky: the plate's ambient colour x how much sky the point still sees;
- colour: the spec's dust colour (its albedo).
Detail finer than the grid comes from a tileable billow noise looked up through two
sets of coordinates that the solver advects with the air and renews in turn (so the
noise moves with the flow and never stretches for long); the noise erodes the cloud's
edges into billows and modulates its inside.

Outputs per pixel, so the comp can be depth-correct against the debris layer:
front: dust in front of the nearest opaque piece (premultiplied RGBA); back: dust
between that piece and the background; shade: optical depths toward sun and sky at
the piece and at the background, from which the comp darkens what the cloud covers.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import maximum_filter
from scipy.spatial import cKDTree

from derrumbe.stages.camera import Camera
from derrumbe.stages.dust import DustFrame, Grid

NOISE_RES = 64
NOISE_PERIOD_M = 20.0        # one tile of the detail noise, in metres
FAR = 1e5


@functools.lru_cache(maxsize=2)
def billow_noise(res: int = NOISE_RES, seed: int = 5) -> np.ndarray:
    """Tileable 3D billow noise in [0, 1]: three octaves of inverted Worley (cellular)
    noise, whose rounded cells read as the cauliflower lumps of a dust cloud."""
    rng = np.random.default_rng(seed)
    g = (np.stack(np.meshgrid(*[np.arange(res)] * 3, indexing="ij"), -1).reshape(-1, 3) + 0.5) / res
    out = np.zeros(len(g))
    for cells, wgt in ((5, 0.55), (10, 0.3), (20, 0.15)):
        pts = rng.random((cells ** 3, 3))
        d, _ = cKDTree(pts, boxsize=1.0).query(g)
        out += wgt * (1.0 - np.clip(d * cells / 0.9, 0, 1))
    out = (out - out.min()) / (out.max() - out.min())
    return out.reshape(res, res, res).astype(np.float32)


def backdrop_depth(cam: Camera, size: tuple, building: np.ndarray, skyness: np.ndarray, facade_depth: float) -> np.ndarray:
    """Depth (along -z) where the plate itself is opaque, per pixel at `size`: the street
    below the horizon, the sky far away, and walls beside the building at the street line
    (so dust behind the neighbours' facades stays hidden)."""
    W, H = size
    sx, sy = cam.width / W, cam.height / H
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    py = (ys + 0.5) * sy
    dy = -(py - cam.cy) / cam.f_px
    ground = np.where(dy < -1e-5, cam.eye_m / np.maximum(-dy, 1e-5), FAR)
    b = cv2.resize(building.astype(np.float32), (W, H), interpolation=cv2.INTER_AREA) > 0.02
    s = cv2.resize(skyness.astype(np.float32), (W, H), interpolation=cv2.INTER_AREA) > 0.02
    # Any march pixel that touches the building or the sky is open: the comp upsamples the
    # march, and a wall there would let the clean plate show through the dust at the
    # building's edge.
    k = np.ones((3, 3), np.uint8)
    b = cv2.dilate(b.astype(np.uint8), k) > 0
    s = cv2.dilate(s.astype(np.uint8), k) > 0
    wall = np.where(~b & ~s, np.minimum(ground, facade_depth), ground)
    return np.where(s & (dy >= 0), FAR, wall).astype(np.float32)


_VS = """
#version 330
in vec2 in_xy; void main() { gl_Position = vec4(in_xy, 0.0, 1.0); }
"""

_FS = """
#version 330
uniform sampler3D vol;        // r: extinction 1/m, g: optical depth to the sun, b: to the sky
uniform sampler3D coordA;     // advected detail coordinates (m)
uniform sampler3D coordB;
uniform sampler3D occ;        // coarse max extinction, for skipping empty space
uniform sampler3D noise;
uniform sampler2D opaque;     // depth of the nearest piece (0: none), half resolution
uniform sampler2D backdrop;   // depth where the plate is opaque
uniform vec3 origin, extent;  // grid corner and size (m)
uniform vec4 intr;            // f, f, cx, cy of the output camera
uniform vec2 scale;           // output pixels per march pixel
uniform float H, eye, step_m, wA, wB, wnorm, period, erosion;
uniform vec3 sun_dir, sun_col, amb_col, albedo;
uniform float g_hg, sigma_cap, sigma_min;
uniform bool use_detail;
layout(location = 0) out vec4 o_front;
layout(location = 1) out vec4 o_back;
layout(location = 2) out vec4 o_shade;


float hash12(vec2 p) { vec3 p3 = fract(vec3(p.xyx) * 0.1031); p3 += dot(p3, p3.yzx + 33.33); return fract((p3.x + p3.y) * p3.z); }

float detail(vec3 ca, vec3 cb) {
    float na = texture(noise, ca / period).r;
    float nb = texture(noise, cb / period).r;
    // Two coordinate sets cross-fade; renormalised so the contrast does not pulse.
    return clamp(0.5 + (wA * (na - 0.5) + wB * (nb - 0.5)) / wnorm, 0.0, 1.0);
}

float erode(float s, float n) {
    float c = 1.0 - exp(-s * 1.5);                 // how solid the cloud is here, 0..1
    float e = erosion * (1.0 - n);
    float c2 = clamp((c - e) / max(1.0 - e, 1e-3), 0.0, 1.0);
    return s * c2 / max(c, 1e-4) * (0.6 + 0.8 * n);
}

vec2 shadeAt(vec3 p) {
    vec3 uvw = (p - origin) / extent;
    if (any(lessThan(uvw, vec3(0.0))) || any(greaterThan(uvw, vec3(1.0)))) return vec2(0.0);
    return texture(vol, uvw).gb;
}

void main() {
    vec2 fc = gl_FragCoord.xy * scale;                       // output pixel, GL origin bottom-left
    vec2 px = vec2(fc.x, H - fc.y);
    vec3 d = vec3((px.x - intr.z) / intr.x, -(px.y - intr.w) / intr.y, -1.0);
    vec3 o = vec3(0.0, eye, 0.0);
    vec2 tc = gl_FragCoord.xy / vec2(textureSize(opaque, 0));
    float z_op = texture(opaque, tc).r;
    float z_bg = texture(backdrop, tc).r;
    bool has_op = z_op > 0.0 && z_op < z_bg;
    float z_near = has_op ? z_op : z_bg;
    // Slab test against the grid box; t is the view depth because d.z = -1.
    vec3 inv = 1.0 / d;
    vec3 t0 = (origin - o) * inv, t1 = (origin + extent - o) * inv;
    vec3 tmin = min(t0, t1), tmax = max(t0, t1);
    float ta = max(max(max(tmin.x, tmin.y), tmin.z), 0.3);
    float tb = min(min(min(tmax.x, tmax.y), tmax.z), z_bg);
    float dl = length(d);
    float dt = step_m / dl;
    vec3 C = vec3(0.0); float T = 1.0;
    vec3 Cf = vec3(0.0); float Tf = 1.0; bool snap = false;
    float mu = dot(normalize(d), sun_dir);
    // Henyey-Greenstein (x 4 pi), half of it: light scattered many times in a dense cloud
    // has forgotten its direction, so the other half is isotropic.
    float ph = 0.5 + 0.5 * (1.0 - g_hg * g_hg) / pow(1.0 + g_hg * g_hg - 2.0 * g_hg * mu, 1.5);
    vec3 sun_ph = sun_col * ph;
    vec3 ldir = normalize(sun_dir + vec3(0.0, 1.2, 0.0));
    // Each step samples at a jittered point of its segment and integrates over the
    // segment's exact length (the last one is cut at the end), so a uniform medium
    // gives exactly exp(-sigma * length) whatever the step.
    float jit = hash12(gl_FragCoord.xy);
    float t = ta;
    for (int i = 0; i < 400; i++) {
        if (t >= tb - 1e-4 || T < 0.004) break;
        if (!snap && has_op && t >= z_op) { Cf = C; Tf = T; snap = true; }
        vec3 p = o + d * (t + min(dt, tb - t) * jit);
        vec3 uvw = (p - origin) / extent;
        if (texture(occ, uvw).r < sigma_min) {
            // Empty block: jump to where the ray leaves it (exactly, so no dense block
            // behind it is stepped over, which would show as banding along the blocks).
            vec3 dims = vec3(textureSize(occ, 0));
            vec3 cell = floor(uvw * dims);
            vec3 bmin = origin + cell / dims * extent, bmax = origin + (cell + 1.0) / dims * extent;
            vec3 te = max((bmin - o) * inv, (bmax - o) * inv);
            float t_exit = min(min(te.x, te.y), te.z);
            t = max(t + 0.01 * dt, t_exit + 0.02 * dt);
            continue;
        }
        vec4 v = texture(vol, uvw);
        // Saturated like the light: the cloud's edge stays a metre or so soft, so the
        // detail shows instead of a hard shell at the grid's resolution.
        float s = sigma_cap > 1e6 ? v.r : sigma_cap * (1.0 - exp(-v.r / sigma_cap));
        // Thin dust is sampled more coarsely: it has little to show.
        float seg = min((s < 0.05 ? 2.0 : 1.0) * dt, tb - t);
        if (has_op && !snap && t + seg > z_op) seg = max(z_op - t, 1e-4);
        if (s > 1e-6) {
            float se = s;
            float loc = 1.0;
            if (use_detail) {
                vec3 ca = texture(coordA, uvw).xyz, cb = texture(coordB, uvw).xyz;
                float n = detail(ca, cb);
                se = erode(s, n);
                if (se > 1e-5) {
                    // Self-shadow of the billows, which the grid is too coarse to cast: the
                    // eroded density a metre and a half toward the light, taken between
                    // the sun and the zenith, so the lumps are lit on top and shadowed
                    // underneath even when the sun is behind the camera.
                    vec3 q = p + ldir * 1.5;
                    float s2 = sigma_cap * (1.0 - exp(-texture(vol, (q - origin) / extent).r / sigma_cap));
                    float n2 = detail(ca + ldir * 1.5, cb + ldir * 1.5);
                    loc = exp(-erode(s2, n2) * 1.5 * 1.2);
                }
            }
            if (se > 1e-6) {
                float Ts = exp(-v.g) + 0.3 * exp(-0.25 * v.g);    // a second, softer octave: multiple scattering
                float Tk = 0.25 + 0.75 * exp(-0.35 * v.b);
                vec3 L = albedo * (sun_ph * Ts * loc + amb_col * Tk * (0.35 + 0.65 * loc));
                float a = 1.0 - exp(-se * seg * dl);
                C += T * a * L;
                T *= 1.0 - a;
            }
        }
        t += seg;
    }
    if (!snap) { Cf = C; Tf = T; }
    o_front = vec4(Cf, 1.0 - Tf);
    float tf = max(Tf, 1e-4);
    o_back = vec4((C - Cf) / tf, 1.0 - T / tf);
    o_shade = vec4(shadeAt(o + d * z_near), shadeAt(o + d * min(z_bg, 3000.0)));
}
"""


@dataclass
class DustLayers:
    """The dust as the comp needs it (at the march's size from render(), brought to the
    output size by the pipeline)."""
    front: np.ndarray        # H x W x 4 premultiplied linear RGBA, dust in front of the nearest piece
    back: np.ndarray         # H x W x 4 premultiplied, between that piece and the background
    shade_near: np.ndarray   # H x W x 2 optical depth toward sun and sky at the nearest surface
    shade_far: np.ndarray    # H x W x 2 the same at the background
    sun_share: float = 0.0   # the sun's share of the light on the ground


class DustRenderer:
    def __init__(self, ctx, cam: Camera, grid: Grid, light, albedo, backdrop: np.ndarray, march_size: tuple,
                 detail: bool = True, sigma_cap: float = 2.0):
        """detail=False, sigma_cap=inf: the plain physical march (tests check its
        transmittance against exp(-sigma d))."""
        import moderngl
        self.ctx, self.mgl = ctx, moderngl
        self.cam, self.grid = cam, grid
        self.size = march_size
        W, H = march_size
        nz, ny, nx = grid.shape
        self.prog = ctx.program(vertex_shader=_VS, fragment_shader=_FS)
        quad = ctx.buffer(np.array([-1, -1, 3, -1, -1, 3], np.float32).tobytes())
        self.vao = ctx.vertex_array(self.prog, [(quad, "2f", "in_xy")])

        def tex3(comp, data=None, shape=(nx, ny, nz)):
            t = ctx.texture3d(shape, comp, data, dtype="f4")
            t.filter = (moderngl.LINEAR, moderngl.LINEAR)
            t.repeat_x = t.repeat_y = t.repeat_z = False
            return t
        self.vol = tex3(3)
        self.cA = tex3(3)
        self.cB = tex3(3)
        self.occ_cells = 4
        self.occ_shape = tuple(int(np.ceil(s / self.occ_cells)) for s in (nz, ny, nx))
        self.occ = ctx.texture3d(self.occ_shape[::-1], 1, dtype="f4")
        self.occ.filter = (moderngl.NEAREST, moderngl.NEAREST)
        self.occ.repeat_x = self.occ.repeat_y = self.occ.repeat_z = False
        nz_ = billow_noise()
        self.noise = ctx.texture3d((NOISE_RES,) * 3, 1, nz_.tobytes(), dtype="f4")
        self.noise.filter = (moderngl.LINEAR, moderngl.LINEAR)
        self.noise.repeat_x = self.noise.repeat_y = self.noise.repeat_z = True
        self.opaque = ctx.texture((W, H), 1, dtype="f4")
        self.opaque.filter = (moderngl.NEAREST, moderngl.NEAREST)
        self.backdrop = ctx.texture((W, H), 1, np.ascontiguousarray(backdrop[::-1]).tobytes(), dtype="f4")
        self.backdrop.filter = (moderngl.NEAREST, moderngl.NEAREST)
        self.outs = [ctx.texture((W, H), 4, dtype="f4") for _ in range(3)]
        self.fbo = ctx.framebuffer(color_attachments=self.outs)
        p = self.prog
        for name, unit in (("vol", 0), ("coordA", 1), ("coordB", 2), ("occ", 3), ("noise", 4), ("opaque", 5),
                           ("backdrop", 6)):
            p[name].value = unit
        p["origin"].value = tuple(map(float, grid.origin))
        p["extent"].value = tuple(map(float, grid.size_m))
        p["intr"].value = (cam.f_px, cam.f_px, cam.cx, cam.cy)
        p["scale"].value = (cam.width / W, cam.height / H)
        p["H"].value = float(cam.height)
        p["eye"].value = float(cam.eye_m)
        p["step_m"].value = float(grid.h * 0.5)
        p["period"].value = NOISE_PERIOD_M
        p["erosion"].value = 0.75
        p["sun_dir"].value = tuple(map(float, light.sun_dir))
        p["sun_col"].value = tuple(map(float, light.sun_col))
        p["amb_col"].value = tuple(map(float, light.amb_col))
        p["albedo"].value = tuple(map(float, albedo))
        p["g_hg"].value = 0.35
        p["sigma_cap"].value = float(min(sigma_cap, 1e7))
        p["use_detail"].value = bool(detail)
        # Blocks thinner than this (transmittance > 0.98 across a block) are skipped.
        p["sigma_min"].value = float(0.02 / (grid.h * self.occ_cells))

    def render(self, f: DustFrame, opaque_depth: np.ndarray) -> DustLayers:
        ctx = self.ctx
        W, H = self.size
        vol = np.stack([f.sigma, f.tau_sun, f.tau_sky], -1)
        self.vol.write(np.ascontiguousarray(vol, np.float32).tobytes())
        self.cA.write(np.ascontiguousarray(np.moveaxis(f.coords[0], 0, -1), np.float32).tobytes())
        self.cB.write(np.ascontiguousarray(np.moveaxis(f.coords[1], 0, -1), np.float32).tobytes())
        self.occ.write(self._occupancy(f.sigma).tobytes())
        self.opaque.write(np.ascontiguousarray(opaque_depth[::-1], np.float32).tobytes())
        wa, wb = f.coord_w
        p = self.prog
        p["wA"].value, p["wB"].value = float(wa), float(wb)
        p["wnorm"].value = float(max(np.sqrt(wa * wa + wb * wb), 1e-3))
        for unit, tex in enumerate((self.vol, self.cA, self.cB, self.occ, self.noise, self.opaque, self.backdrop)):
            tex.use(unit)
        self.fbo.use()
        self.fbo.clear(0, 0, 0, 0)
        ctx.disable(self.mgl.DEPTH_TEST)
        ctx.disable(self.mgl.BLEND)
        self.vao.render()
        out = [np.frombuffer(t.read(), np.float32).reshape(H, W, 4)[::-1] for t in self.outs]
        return DustLayers(out[0], out[1], out[2][..., :2], out[2][..., 2:])

    def _occupancy(self, sigma: np.ndarray) -> np.ndarray:
        """Max extinction per block of cells, grown by one cell so trilinear taps at a
        block's edge are never skipped."""
        c = self.occ_cells
        s = maximum_filter(sigma, size=3, mode="nearest")
        nz, ny, nx = self.occ_shape
        pad = np.zeros((nz * c, ny * c, nx * c), np.float32)
        pad[: s.shape[0], : s.shape[1], : s.shape[2]] = s
        return np.ascontiguousarray(pad.reshape(nz, c, ny, c, nx, c).max(axis=(1, 3, 5)))

    def release(self):
        for t in (self.vol, self.cA, self.cB, self.occ, self.noise, self.opaque, self.backdrop, *self.outs):
            t.release()
        self.fbo.release()
