"""Dust render: a ray march of the dust grid in GLSL (moderngl), with detail to the pixel.

Two passes. The march runs at a fraction of the output size (light, shadows, the cloud's
shape down to a few grid cells); a full-size pass then adds the finer octaves of the same
advected noise on the cloud's visible front and cuts its dense edges with a ramp of about
a pixel (as photographs of clouds and smoke have), at a fraction of the cost of marching
every pixel.

Per step of a ray, up to the first opaque thing (a debris piece, a holdout, the street,
the plate's own walls):
- density: the grid's extinction, shaped by advected multi-octave noise. The noise
  continues the grid's energy cascade below its resolution (as wavelet turbulence does,
  Kim et al. 2008): its octaves run from eight cells down to the pixel's footprint (mip
  level from the footprint, so nothing aliases), its strength follows the grid's own
  turbulence at the cutoff, it cuts a thinning cloud into cauliflower billows and pushes
  the current's nose sideways into lobes near the ground;
- sun: single scattering through the optical depth toward the sun (swept on the CPU, the
  cloud's shadow on itself) and a short shadow ray through the billows, Henyey-Greenstein
  phase; multiple scattering by Wrenninge's octaves (each octave: less energy, a fraction
  of the optical depth, a weaker phase) and, inside dense dust, the sunlight it diffuses,
  so dense dust is bright on its lit side, dark underneath and glows at thin sunlit edges;
- sky: the plate's ambient, dimmed by the dust above the point;
- colour: the dust's albedo (the building's material and facade, see pipeline).

Outputs, so the comp can be depth-correct against the debris and holdouts: front (dust
in front of the nearest opaque thing, premultiplied RGBA), back (between it and the
background), shade (optical depths toward sun and sky at both, from which the comp
darkens what the cloud covers: its shadow on the street, the debris and the walls), and
aux (the front's opacity-weighted depth, the EXR's dust.Z, and its motion on screen in
pixels per frame, for motion blur).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np
from numba import njit, prange
from scipy.ndimage import maximum_filter

from derrumbe.stages.camera import Camera
from derrumbe.stages.dust import DustFrame, Grid

NOISE_RES = 128
WORLEY_SMOOTH = 6.0          # 1/cell: the lumps' crevices are rounded over about a sixth of a lump
NOISE_TILE_CELLS = 32        # one noise tile spans this many grid cells (its lumps: 8 cells to 1)
FAR = 1e5
# The full-size pass leaves the march's own value where its opacity is under 1e-4 (see
# refine); a march pixel that thin is not shaded there at all (it adds under 0.03 of an
# 8-bit level).
DETAIL_MIN_ALPHA = 1e-4
DETAIL_TILE = 32          # output pixels a side of the full-size pass's tiles (even: whole 2x2 quads)


@njit(parallel=True, cache=True)
def _worley_billow(res, cells, pts):
    """Tileable inverted Worley noise (1 - distance to the nearest feature point, one
    point per cell of a cells^3 lattice), sampled on a res^3 grid. The nearest distance
    is a smooth minimum over the neighbouring points (-log sum exp(-k d) / k): where two
    lumps meet, plain Worley noise has a crease one texel wide, and lit as the lumps'
    crevices those creases drew thin dark contour lines across the cloud."""
    out = np.empty((res, res, res), np.float32)
    k = WORLEY_SMOOTH
    for a in prange(res):
        for b in range(res):
            for c in range(res):
                x, y, z = (c + 0.5) / res * cells, (b + 0.5) / res * cells, (a + 0.5) / res * cells
                ci, cj, ck = int(x), int(y), int(z)
                acc = 0.0
                for dk in range(-1, 2):
                    for dj in range(-1, 2):
                        for di in range(-1, 2):
                            ii, jj, kk = ci + di, cj + dj, ck + dk
                            p = pts[kk % cells, jj % cells, ii % cells]
                            dx = ii + p[0] - x
                            dy = jj + p[1] - y
                            dz = kk + p[2] - z
                            acc += np.exp(-k * np.sqrt(dx * dx + dy * dy + dz * dz))
                out[a, b, c] = 1.0 - min(max(-np.log(acc) / k, 0.0), 1.0)
    return out


@functools.lru_cache(maxsize=2)
def billow_noise(res: int = NOISE_RES, seed: int = 5) -> np.ndarray:
    """Tileable multi-octave billow noise, uniform in [0, 1] (histogram-equalised, so a
    threshold t keeps a share 1 - t of space): four octaves of inverted Worley noise
    (4 to 32 features per tile), each 0.6 the amplitude of the one before (a power
    spectrum falling about as k^-3 in 3D, as a passive scalar in turbulence roughly
    does); the rounded cells read as a dust cloud's cauliflower lumps."""
    rng = np.random.default_rng(seed)
    out = np.zeros((res, res, res), np.float32)
    for o, cells in enumerate((4, 8, 16, 32)):
        out += 0.6 ** o * _worley_billow(res, cells, rng.random((cells, cells, cells, 3)))
    flat = out.ravel()
    rank = np.empty(flat.size, np.float32)
    rank[np.argsort(flat, kind="stable")] = (np.arange(flat.size, dtype=np.float32) + 0.5) / flat.size
    return rank.reshape(out.shape)


# The advected detail coordinates are stretched at most this much per metre (the norm of
# their displacement's gradient since their last renewal): see unstretched().
STRETCH_MAX = 0.1


def unstretched(coords: np.ndarray, grid: Grid, drift) -> np.ndarray:
    """The detail coordinates (2, 3, nz, ny, nx) with, cell by cell, their displacement
    from their rest position scaled down where its gradient is steeper than STRETCH_MAX.
    In the 0.4 s a set lives, the sheared current stretched the noise it carries half as
    long again, twice in one cell in ten (img_190 at 100 %): its lumps were drawn out along
    the flow toward the lens, and thin dust integrated down the rays over the sky showed
    them as a sunburst of radial streaks. Where the flow only carries the lumps along,
    they move as it does."""
    centres, h = np.moveaxis(grid.centres(), -1, 0).astype(np.float32), grid.h
    drift = np.zeros((2, 3)) if drift is None else np.asarray(drift, float)
    out = np.empty(coords.shape, np.float32)
    for s in range(2):
        rest = centres - drift[s].astype(np.float32)[:, None, None, None]
        d = np.asarray(coords[s], np.float32) - rest
        grad = sum(np.square(g) for a in range(3) for g in np.gradient(d[a], h))
        scale = np.minimum(1.0, STRETCH_MAX / np.maximum(np.sqrt(grad), 1e-6))
        out[s] = rest + d * scale[None]
    return out


def carry_velocity(f: DustFrame) -> tuple[float, float, float]:
    """The cloud's drift velocity (m/s): the air's velocity averaged over the dust, as the
    simulation drifts the detail's rest positions (dust.py, _regenerate)."""
    w = np.asarray(f.sigma, np.float64)
    total = float(w.sum())
    if total <= 0:
        return (0.0, 0.0, 0.0)
    v = np.tensordot(np.asarray(f.vel, np.float64), w, axes=([1, 2, 3], [0, 1, 2])) / total
    return tuple(float(x) for x in v)


def backdrop_depth(cam: Camera, size: tuple, building: np.ndarray, skyness: np.ndarray, facade_depth: float) -> np.ndarray:
    """Depth (along -z) where the plate itself is opaque, per pixel at `size`: the street
    below the horizon, the sky far away, walls beside the building at the street line
    (so dust behind the neighbours' facades stays hidden), and what shows over the
    building's roofline far away: it is seen past the building, so it stands behind it.
    (Taken as a wall at the street line, the demo's tall brick block behind the roof hid
    the dust behind the facade plane, and the cloud ended in the roof's straight line.)"""
    W, H = size
    sx, sy = cam.width / W, cam.height / H
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    py = (ys + 0.5) * sy
    dy = -(py - cam.cy) / cam.f_px
    ground = np.where(dy < -1e-5, cam.eye_m / np.maximum(-dy, 1e-5), FAR)
    b = cv2.resize(building.astype(np.float32), (W, H), interpolation=cv2.INTER_AREA) > 0.02
    s = cv2.resize(skyness.astype(np.float32), (W, H), interpolation=cv2.INTER_AREA) > 0.02
    # Any pixel that touches the building or the sky is open: a wall there would let the
    # clean plate show through the dust at the building's edge.
    k = np.ones((3, 3), np.uint8)
    b = cv2.dilate(b.astype(np.uint8), k) > 0
    s = cv2.dilate(s.astype(np.uint8), k) > 0
    top = np.where(b.any(axis=0), np.argmax(b, axis=0), 0)
    beyond = ys < top[None, :]
    wall = np.where(~b & ~s & ~beyond, np.minimum(ground, facade_depth), ground)
    return np.where(s & (dy >= 0), FAR, wall).astype(np.float32)


_VS = """
#version 330
in vec2 in_xy; void main() { gl_Position = vec4(in_xy, 0.0, 1.0); }
"""

_FS = """
#version 330
uniform sampler3D vol;        // r: extinction 1/m, g: optical depth to the sun, b: to the sky, a: turbulence m/s
uniform sampler3D coordA;     // advected detail coordinates (m)
uniform sampler3D coordB;
uniform vec3 driftA, driftB;  // each set's drift at its last reset (m): a point's rest point is p - drift
uniform vec3 carry;           // the cloud's drift velocity now (m/s): how its drawn lumps move (motion blur)
uniform sampler3D velo;       // xyz: air velocity m/s; w: how far the thinned dust is gathered into clumps (windows)
uniform sampler3D occ;        // coarse max extinction, for skipping empty space
uniform sampler3D shade;      // optical depth to the sun and the sky through the dust alone (surfaces' shadow)
uniform sampler3D noise;      // multi-octave billow noise, mipmapped
uniform sampler2D opaque;     // depth of the nearest piece (0: none), at this pass's size
uniform sampler2D backdrop;   // depth where the plate is opaque, at this pass's size
uniform sampler2D lo_front;   // the march's results (detail pass only)
uniform sampler2D lo_back;
uniform sampler2D lo_stop;    // per march pixel: the depth its ray stopped at, and the plate's (detail pass only)
uniform sampler2D lo_aux;
uniform int mode;             // 0: the march; 1: detail at the output size
uniform vec3 origin, extent;  // grid corner and size (m)
uniform vec4 intr;            // f, f, cx, cy of the output camera
uniform vec2 scale;           // output pixels per pixel of this pass
uniform float H, eye, step_m, wA, wB, wnorm, period, frame_s;
uniform vec3 sun_dir, sun_col, amb_col, albedo;
uniform float g_hg, sigma_cap, sigma_min, turb_ref, edge_gain, warp;
uniform float thin;             // the see-through's thinning of the extinction (1: none)
uniform vec2 clear_m;           // near the lens (fully within clear_m.x, not at all past clear_m.y) ...
uniform vec2 clear_tau;         // ...the first clear_tau.x-clear_tau.y of optical depth from the lens fades out
uniform bool use_detail;
layout(location = 0) out vec4 o_front;
layout(location = 1) out vec4 o_back;
layout(location = 2) out vec4 o_shade;
layout(location = 3) out vec4 o_aux;

const float AMB_OPEN = 0.6;
// The sunlight a dense cloud diffuses (see march): at 1.3 a dense face with the sun behind
// the camera comes out 0.7-0.8 of a wall of the dust's colour in the same light, as the
// sky-lit face does (tests/test_dust_render.py); without it, 0.21, and sunny plates' dust
// read as brown smoke. It sinks in as the last octave does (exp(-0.16 tau)): the grid puts
// a dense face's first cells a few optical depths into the sun's shadow.
const float MS_SUN = 1.3;
const float MS_LEN = 2.0;        // m: how much dust round a point makes it diffuse light
const float SIDE_SKY = 0.75;     // diffuse skylight on the lens side sinks in as exp(-0.37 tau): diffusion in dust of
                                 // single-scattering albedo 0.9, g 0.6 (sqrt(3 (1 - w)(1 - g w)) = 0.37)
const float LOBE_PX = 9.0;       // march pixels: how far either side a lump's edge is judged (see lobe_light)
const float LOBE_SHADE = 0.65;   // a crown's light over a flat face's (1 + this), a belly's (1 - this)
const vec2 BELLY_ALPHA = vec2(0.7, 0.97);  // a belly is shaded only under a lump this opaque (eased from the first)
const float HAZE_PX = 3.0;       // march pixels: how far beside a cloud's edge its haze is judged (see haze_floor)
const vec2 LAYER_M = vec2(3.0, 6.0);    // m: dust this close in front of a piece lies on it (see lying_on)
const float NOSE_M = 3.0;        // height of a gravity current's nose: its lobes fade out above it

float hash12(vec2 p) { vec3 p3 = fract(vec3(p.xyx) * 0.1031); p3 += dot(p3, p3.yzx + 33.33); return fract((p3.x + p3.y) * p3.z); }

// The noise tile at scale `per` (m), filtered to the footprint px_m (mip level), through
// both coordinate sets, cross-faded (renormalised so the contrast does not pulse);
// centred on zero, about unit spread where it is resolved, fading to 0 where not.
float band(vec3 ca, vec3 cb, float per, float px_m, vec3 off) {
    float lod = log2(max(px_m * float(textureSize(noise, 0).x) / per, 1e-4));
    float na = textureLod(noise, ca / per + off, lod).r - 0.5;
    float nb = textureLod(noise, cb / per + off, lod).r - 0.5;
    return 3.4 * (wA * na + wB * nb) / wnorm;
}

// A cloud cut into billows by the noise n (about unit spread): a solid cloud keeps nearly
// all of it, a thin one only the tops of the noise, with a rim a fraction of a billow
// wide; what is kept is denser, so the mean optical depth stays about the grid's. A cloud
// thinned for the see-through is judged thinner still (its thinned density times
// thin^0.25), so it opens into lumps with clear gaps between them, and more of the
// building shows through, in patches (the test cloud thinned to 0.05: mean opacity 0.32
// before, 0.14). Judged by its full density it stayed solid, a uniform veil over the
// frame (img_100 and img_288 from 60 %); judged half way (in log) toward its thinned
// density, the veil only rippled (img_181 from 40 %, the reviews' "flat beige veil").
float billow(float s, float n, float amp) {
    float c = 1.0 - exp(-1.5 * s * pow(thin, 0.25));      // how solid the cloud is
    float thr = mix(1.1, -1.8, c);
    float m = smoothstep(thr - 0.2, thr + 0.2, n * amp);
    return s * mix(1.0, m * (1.0 + 0.25 * n) / max(mix(0.25, 1.0, c), 0.25), 0.85);
}

// A thinned cloud gathered into clumps with clear windows between them (1 in a clump, 0
// in a window, WIN_COVER of the sightlines in clumps). The windows run along the lens's
// rays: the noise is looked up at the advected rest point's direction from the lens (four
// lumps a WIN_RAD-radian tile) and barely at its depth (log depth, WIN_LOGZ tiles an
// e-fold), so one window opens through the whole depth of the cloud. Thinned evenly, a
// cloud of optical depth 10-30 between the lens and the building became a flat beige
// veil over the whole frame that lifted the plate's blacks (the reviews, every plate from
// 40 %); footage of a collapse seen through its dust shows the building through gaps
// between dense billows.
const float FINE_CUT = 0.6;          // the finer tile's share of the march's billow cut
const float WIN_RAD = 1.1;
const float WIN_LOGZ = 0.03;
const float WIN_COVER = 0.4;
const vec2 WIN_NEAR = vec2(3.0, 7.0);    // m from the lens: no windows nearer, all from the second
float win_at(vec3 c) {
    vec3 r = c - vec3(0.0, eye, 0.0);
    float z = max(-r.z, 1.0);
    vec3 q = vec3(r.x / z / WIN_RAD, r.y / z / WIN_RAD, log(z) * WIN_LOGZ);
    return textureLod(noise, q + vec3(0.43, 0.19, 0.61), 2.5).r;
}
float windows(vec3 ca, vec3 cb) {
    float n = (wA * win_at(ca) + wB * win_at(cb)) / max(wA + wB, 1e-3);
    return smoothstep(1.0 - WIN_COVER - 0.15, 1.0 - WIN_COVER + 0.15, n);
}

// The thin dust the current's gust carries ahead of its dense head, low over the street:
// the head's density looked up SKIRT_M back along the air's motion (four steps), a share
// SKIRT_K of it, fading SKIRT_H up. The grid's head is dense down to the street, and seen
// across the street its foot was a ruler-straight line on the kerb (img_100 at 20-40 %,
// the reviews since the start): photographs show it ragged, thinning onto the road.
const float SKIRT_M = 3.0;
const float SKIRT_K = 0.3;
const float SKIRT_H = 0.6;
float skirt(vec3 p, vec3 uvw) {
    if (p.y > 4.0 * SKIRT_H) return 0.0;
    vec2 vh = texture(velo, uvw).xz;
    float sp = length(vh);
    if (sp < 0.3) return 0.0;
    vec3 back = vec3(vh.x, 0.0, vh.y) / sp * (0.25 * SKIRT_M);
    float acc = 0.0;
    for (int k = 1; k <= 4; k++) acc += texture(vol, (p - back * float(k) - origin) / extent).r;
    return SKIRT_K * 0.25 * acc * exp(-max(p.y, 0.0) / SKIRT_H);
}

float hg(float mu, float g) {
    return (1.0 - g * g) / pow(1.0 + g * g - 2.0 * g * mu, 1.5);
}

vec2 shadeAt(vec3 p) {
    vec3 uvw = (p - origin) / extent;
    if (any(lessThan(uvw, vec3(0.0))) || any(greaterThan(uvw, vec3(1.0)))) return vec2(0.0);
    return texture(shade, uvw).rg;
}

vec3 ray_dir(vec2 px) { return vec3((px.x - intr.z) / intr.x, -(px.y - intr.w) / intr.y, -1.0); }

// The march: single scattering of the sun through the swept optical depth (the cloud's
// shadow on itself), Wrenninge's multiple-scattering octaves, the sky dimmed by the dust
// above; the density shaped by the coarse noise octaves (billows a few cells across).
void march(vec2 px, vec2 tc, float jit) {
    vec3 d = ray_dir(px);
    vec3 o = vec3(0.0, eye, 0.0);
    float z_op = texture(opaque, tc).r;
    float z_bg = texture(backdrop, tc).r;
    bool has_op = z_op > 0.0 && z_op < z_bg;
    float z_near = has_op ? z_op : z_bg;
    vec3 inv = 1.0 / d;
    vec3 t0 = (origin - o) * inv, t1 = (origin + extent - o) * inv;
    vec3 tmin = min(t0, t1), tmax = max(t0, t1);
    float ta = max(max(max(tmin.x, tmin.y), tmin.z), 0.3);
    float tb = min(min(min(tmax.x, tmax.y), tmax.z), z_bg);
    float dl = length(d);
    vec3 C = vec3(0.0); float T = 1.0; float tau_lens = 0.0;
    vec3 Cf = vec3(0.0); float Tf = 1.0; bool snap = false;
    float zw = 0.0, zs = 0.0, sw = 0.0, zwb = 0.0, zsb = 0.0;
    float mu = dot(normalize(d), sun_dir);
    // Each octave carries half the energy, sees 40 % of the optical depth and a phase
    // half as peaked as the one before.
    float ph0 = hg(mu, g_hg), ph1 = hg(mu, 0.5 * g_hg), ph2 = hg(mu, 0.25 * g_hg);
    float pxa = scale.x / intr.x;                      // this pass's pixel footprint per metre of depth
    vec3 ldir = normalize(sun_dir + vec3(0.0, 0.6, 0.0));
    float t = ta;
    for (int i = 0; i < 256; i++) {
        if (t >= tb - 1e-4 || T < 0.003) break;
        if (!snap && has_op && t >= z_op) { Cf = C; Tf = T; snap = true; }
        float dt = max(step_m, 0.7 * pxa * t) / dl;
        vec3 p = o + d * (t + min(dt, tb - t) * jit);
        vec3 uvw = (p - origin) / extent;
        if (texture(occ, uvw).r < sigma_min) {
            vec3 dims = vec3(textureSize(occ, 0));
            vec3 cellc = floor(uvw * dims);
            vec3 bmin = origin + cellc / dims * extent, bmax = origin + (cellc + 1.0) / dims * extent;
            vec3 te = max((bmin - o) * inv, (bmax - o) * inv);
            float t_exit = min(min(te.x, te.y), te.z);
            t = max(t + 0.01 * dt, t_exit + 0.02 * dt);
            continue;
        }
        vec4 v = texture(vol, uvw);
        // (not before a piece or a holdout: the skirt is the foot's over the street; run on
        // before a parked car, it greyed its wheels before the cloud reached it, img_140)
        float sk = use_detail && !has_op ? skirt(p, uvw) : 0.0;
        v.r = max(v.r, sk);
        float s = sigma_cap > 1e6 ? v.r : sigma_cap * (1.0 - exp(-v.r / sigma_cap));
        float seg = min((s < 0.03 ? 2.0 : 1.0) * dt, tb - t);
        if (has_op && !snap && t + seg > z_op) seg = max(z_op - t, 1e-4);
        if (s > 1e-6) {
            float se = s;
            float tau_loc = 0.0;
            float gather = 1.0;
            if (use_detail) {
                // Billows a few cells across, continuing the grid's own structure: they
                // cut a thin cloud into lumps and modulate a dense one, more strongly
                // where the grid's turbulence is high; each lump shades itself (one
                // tap toward the light, between the sun and the zenith, so lumps are lit
                // on top even with the sun behind the camera).
                vec3 ca = texture(coordA, uvw).xyz, cb = texture(coordB, uvw).xyz;
                float amp = clamp(0.5 + v.a / turb_ref, 0.5, 1.4);
                float n = band(ca, cb, period, pxa * t, vec3(0.0));
                // The cut also through the tile a quarter the size (lumps of 2 m to 0.25 m):
                // cut by the coarse tile alone, whose 8 m lumps carry most of its spread, a
                // dense patch was one smooth cotton-wool lump, and a step in the grid's
                // density between two columns a straight vertical edge (img_100 at 20-30 %).
                // A cloud thinned for the see-through keeps the coarse clumps its windows need.
                float fc = FINE_CUT * thin;
                n = (n + fc * band(ca, cb, 0.25 * period, pxa * t, vec3(0.53, 0.29, 0.07))) / sqrt(1.0 + fc * fc);
                // The current's nose pushed sideways by a coarser noise (lobes and clefts two
                // billows across): its foot on the street is never the grid's straight, even
                // front. Only near the ground, where the nose is: higher up the grid's density
                // is layered, and a domain warp of layers is marble (the white veins the
                // reviews saw over img_270 and img_288 from 60 %, with a vertical push of the
                // cloud's surface that drew them too).
                float nl = band(ca, cb, 2.0 * period, pxa * t, vec3(0.37, 0.11, 0.73));
                vec3 push = vec3(0.5 * nl, 0.0, nl) * (1.5 * warp) * exp(-max(p.y, 0.0) / NOSE_M);
                vec3 uw = (p - push - origin) / extent;
                float sw = uw.y > 1.0 ? 0.0 : max(texture(vol, vec3(uw.x, max(uw.y, 0.0), uw.z)).r, sk);
                sw = sigma_cap * (1.0 - exp(-sw / sigma_cap));
                se = billow(sw, n, amp);
                // (not within WIN_NEAR of the lens: the dust there fills rays that climb over
                // the building into the sky, and cut into windows it tore into dripping
                // patches there, img_270 at 100 %)
                float wk = texture(velo, uvw).w * smoothstep(WIN_NEAR.x, WIN_NEAR.y, t);
                gather = wk > 0.01 ? mix(1.0, windows(ca, cb) / WIN_COVER, wk) : 1.0;
                se *= gather;
                if (se > 0.03) {
                    // A thinned lump shades itself through more than its thinned density
                    // (thin^-0.25 of it): through just that, its crown and belly were one
                    // flat beige; through its square root, as the grid's light is, the
                    // lumps went sooty, near-black columns (img_100 from 75 %).
                    float dd = 0.1 * period;
                    vec3 q = p + ldir * dd;
                    float s2 = texture(vol, (q - origin) / extent).r;
                    s2 = sigma_cap * (1.0 - exp(-s2 / sigma_cap));
                    tau_loc = 4.0 * gather * billow(s2, band(ca + ldir * dd, cb + ldir * dd, period, 2.0 * pxa * t, vec3(0.0)), amp) * dd
                              / pow(thin, 0.25);
                }
            }
            // Near the lens, the first stretch of optical depth from it fades out: thin
            // dust there stays see-through (a haze over the whole frame would be a flat
            // card), a dense front right there still reads once it is thicker than that.
            float near = 1.0 - smoothstep(clear_m.x, clear_m.y, t);
            float keep = mix(1.0, smoothstep(clear_tau.x, clear_tau.y, tau_lens), near);
            tau_lens += se * seg * dl;
            se *= keep;
            if (se > 1e-6) {
                float tau = v.g + tau_loc;
                // Past the octaves, the sunlight a dense cloud diffuses: inside dust thick
                // around a point (MS_LEN of its density saturating) the light has been
                // scattered many times and comes from all sides, sinking in as diffusion
                // does; a thin wisp has none of it.
                float thick = 1.0 - exp(-s * MS_LEN);
                vec3 Ls = sun_col * (ph0 * exp(-tau) + 0.35 * ph1 * exp(-0.4 * tau) + 0.12 * ph2 * exp(-0.16 * tau)
                                     + MS_SUN * thick * exp(-0.16 * tau));
                // The sky's light: what reaches the point straight (dimmed by the dust and the
                // building above) plus what the surrounding cloud scatters in, less under a
                // thick layer or a roof (a floor under a building is near dark). A grain of
                // dust in the open sees the sky over its upper half and the street below,
                // so it gets AMB_OPEN of what a face turned up to the sky gets (amb_col is
                // that), as a facing wall does in lighting.py: dust lit as if every grain
                // faced the whole sky read half again brighter than the plate's walls.
                // The sky reaches a point through the cloud above it (v.b) or, on the
                // face toward the lens, through the dust between it and that face; a
                // lump's own shadow (tau_loc, one tap toward the sun's side) takes a
                // quarter of it at most, the sky lighting it from the whole dome. Lit only
                // from above and through each lump's shadow, a dense face under an overcast
                // sky got 0.24 of a wall's light, the near-black of smoke (the demo's plume).
                float b = min(v.b, SIDE_SKY * -log(max(T, 1e-4)));
                float sky_in = 0.3 * exp(-0.03 * b) + 0.7 * exp(-0.5 * b) * (0.75 + 0.25 * exp(-tau_loc));
                vec3 L = albedo * (Ls + AMB_OPEN * amb_col * sky_in);
                float a = 1.0 - exp(-se * seg * dl);
                float wgt = T * a;
                C += wgt * L;
                if (!snap) { zw += wgt; zs += wgt * t; sw += wgt * se / gather; }
                else { zwb += wgt; zsb += wgt * t; }
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
    // The front's depth and density (opacity-weighted), and its motion on screen in
    // pixels a frame (v down the image): the motion of what is drawn there, the lumps,
    // which travel with the cloud's drift. Not the air's own velocity at the front: where
    // the current streams toward the lens or up a column, the drawn lumps and the grid's
    // density stay nearly where they are (0.2-0.7 px a frame, measured by optical flow
    // between frames of img_270 at 40 %) while the air passes at 9-15 px a frame, and a
    // blur that long drew fine streaks across a still cloud (the radial "sunburst").
    // (with no dust in front of the nearest opaque thing, the depth of the dust behind it:
    // the EXR's dust.Z is where the visible dust is)
    float zf = zw > 1e-4 ? zs / zw : (zwb > 1e-4 ? zsb / zwb : 0.0);
    vec2 mv = vec2(0.0);
    if (zw > 1e-4) {
        vec3 pf = o + d * zf;
        vec3 p2 = pf + carry * frame_s;
        vec2 a0 = vec2(intr.x * pf.x / -pf.z, -intr.y * (pf.y - eye) / -pf.z);
        vec2 a1 = vec2(intr.x * p2.x / -p2.z, -intr.y * (p2.y - eye) / -p2.z);
        mv = a1 - a0;
    }
    o_aux = vec4(zf, mv, zw > 1e-4 ? sw / zw : 0.0);
}

// Detail at the output size, on the cloud's visible front: the finer octaves of the
// same advected noise, down to the pixel's footprint. A dense cloud's edge is cut through
// them with a ramp of about a pixel (a photographed cloud's edge), thin dust keeps its
// soft gradient; the lumps are lit on the sun's side and shadowed on the other, so the
// cauliflower reads at every scale.
// The noise is not looked up through the front point itself: the front's depth jumps
// from one layer of a wound-up cloud to the next, and noise sampled on that stepped sheet
// drew the steps' contours as thin bands (the "oil on water" marble the reviews saw over
// img_270 and img_288 from 60 %). Instead, on two fixed planes, the half-octaves of
// depth either side of the front, the ray's point takes the advected coordinates there
// (so the lumps move with the cloud across the screen), carried along their ray back
// onto the plane; the two lookups are blended by the front's depth, so a jump in depth
// only shifts the blend, and the lumps keep about their size in metres at the front.
// Coordinates are only stored near dust (the rest are blanks). They carry the flow's
// drift as a whole (dust.py, _regenerate), so a stored one may lie metres from its point.
float sheet_band(vec3 o, vec3 d, float z, float per, vec3 off, bool advected) {
    vec3 q = o + d * z;
    vec3 uvw = clamp((q - origin) / extent, 0.0, 1.0);
    // Where the grid holds dust at q, all eight cells of the lookup are stored (each
    // within a cell of dust); elsewhere they may be blanks, and q takes its rest point
    // (the same noise the stored ones started from, so a front that moves onto a plane
    // without dust, as beside a piece, keeps its lumps).
    bool stored = advected && texture(vol, uvw).r > 1e-6;
    vec3 qa = stored ? texture(coordA, uvw).xyz : q - driftA;
    vec3 qb = stored ? texture(coordB, uvw).xyz : q - driftB;
    qa = o + (qa - o) * (z / max(o.z - qa.z, 0.3));
    qb = o + (qb - o) * (z / max(o.z - qb.z, 0.3));
    // The lookup's footprint is a pixel at the plane. (Not the screen derivative of the
    // carried point: across a 2x2 quad whose pixels lie on different planes it is the
    // planes' distance, and filtering the noise to its mean there drew the planes'
    // boundaries as dotted lines.)
    return band(qa, qb, per, z / intr.x, off);
}

float sheets(vec3 o, vec3 d, float zf, float per, vec3 off, bool advected) {
    float lz = 2.0 * log2(max(zf, 1.0));
    float k = floor(lz), f = lz - k;
    // Each plane its own draw of the noise, by its index (the plane a front point moves
    // onto as it recedes shows the lumps it showed as the further of the two).
    float n0 = sheet_band(o, d, exp2(0.5 * k), per, off + fract(vec3(0.31, 0.67, 0.13) * k), advected);
    float n1 = sheet_band(o, d, exp2(0.5 * (k + 1.0)), per, off + fract(vec3(0.31, 0.67, 0.13) * (k + 1.0)), advected);
    return ((1.0 - f) * n0 + f * n1) / sqrt((1.0 - f) * (1.0 - f) + f * f);
}

// The finer octaves at the front (noise n, its amplitude): the front and the back layer
// share the point (aux), so they are looked up once for both.
vec2 detail(vec4 aux, vec2 px) {
    vec3 d = ray_dir(px);
    vec3 o = vec3(0.0, eye, 0.0);
    float turb = texture(vol, (o + d * aux.x - origin) / extent).a;
    float amp = clamp(0.5 + turb / turb_ref, 0.5, 1.4);
    // Two finer tiles: lumps of 2 cells down to 1/4, and 1/4 down to 1/32 (the pixel, at
    // street distances), the finer at 0.44 the amplitude of the coarser (about k^-3 in 3D
    // once the footprint filter has taken its share: photographed clouds' luminance falls
    // as k^-2.6 to k^-3.9, tests/test_dust_render.py; at 0.28, once the noise moved with
    // the cloud, the test cloud measured -3.92 to -3.94, and at 0.36, once the march's
    // dither no longer left per-pixel blocks, -3.92: both had been fine power the noise
    // now has to give).
    // The finer tile moves with the cloud as a whole (its drift), not through the stored
    // coordinates: in dust lifted from the street they all trace back to the street, the
    // noise is stretched up the column, and at this scale it drew vertical streaks down
    // the current's foot (img_100 and the demo from 40 %). Lumps a few pixels across
    // sliding a little against the flow do not show; streaks do.
    float p1 = period / 8.0, p2 = period / 64.0;
    float n = 0.5 * sheets(o, d, aux.x, p1, vec3(0.11, 0.53, 0.29), true)
            + 0.22 * sheets(o, d, aux.x, p2, vec3(0.71, 0.17, 0.43), false);
    return vec2(n, amp);
}

vec4 refine(vec4 c, vec4 aux, vec2 nd, float dense_gain, float a_near, float a_span, float foot, float floor_a,
            float lie) {
    float n = nd.x, amp = nd.y;
    // How dense the cloud is here: next to opaque dust (a_near: the most opaque coarse
    // pixel around) an edge is a dense cloud's and is cut sharp; thin dust on its own
    // (low extinction, nothing opaque near) keeps its soft gradient.
    float dense = max(smoothstep(0.02, 0.3, aux.w), smoothstep(0.3, 0.85, a_near)) * dense_gain;
    // The edge is steepened up to the opacity of a see-through cloud beside it (top), not
    // to opaque: a clump of a thinned cloud is itself see-through, and steepened to opaque
    // its edge stood out as a ring denser than the clump inside it. Next to a cloud
    // nearly opaque at the march's size the edge goes to opaque, as a dense cloud's does,
    // and an unthinned cloud's edges are steepened to opaque (capped at the march's
    // neighbours, a dense cloud's outermost pixels, between a neighbour of 0.5 and the
    // sky, kept a 4 px ramp).
    float top = mix(1.0, mix(clamp(max(a_near, c.a), 1e-3, 1.0), 1.0, smoothstep(0.75, 0.95, a_near)), 1.0 - thin);
    // ... and down to the haze beside it (floor), not to clear: steepened to clear, a
    // cloud's edge against a haze over the facade had a band of bare plate round it, a
    // dark outline (img_270 at 20 %).
    float lo = min(floor_a * smoothstep(0.15, 0.5, a_span), 0.95 * top);
    float a = clamp((c.a - lo) / (top - lo), 1e-4, 1.0 - 1e-4);
    float lg = log(a / (1.0 - a));
    // Only across an edge (the coarse opacity changing over a march pixel or two, a_span)
    // is the ramp steepened: inside a cloud of even, middling opacity the alpha stays what
    // the march found, so thin dust reads as thin instead of being pushed to opaque.
    // Not at the cloud's foot on the street (foot: 1): there the current's head churns
    // over the ground and thins onto the road ahead of it (the skirt), and cut sharp its
    // foot was a ruler-straight line with a dark rim along the kerb (img_100 at 30 %).
    float g = 1.0 + edge_gain * dense * smoothstep(0.15, 0.5, a_span) * (1.0 - max(foot, lie));
    // The noise cuts an edge into lumps; across a see-through stretch it only ripples it
    // (at full strength there it drew oil-on-water squiggles through thin dust over a sky).
    // A layer lying on a piece (lie, see lying_on) is neither steepened nor cut at full
    // strength: the noise's cut alone gave its thin spots paper edges.
    float cut = mix(0.35, 1.0, smoothstep(0.15, 0.5, a_span)) * (1.0 - 0.5 * lie);
    float a2 = lo + (top - lo) / (1.0 + exp(-(g * lg + amp * dense * cut * 2.2 * n)));
    a2 = mix(c.a, a2, min(1.0, dense * 1.5 + 0.3));
    // Crevices between the small lumps darker, their crowns brighter.
    // (each lump's crown sees more of the sky and the sun than the crevice between it and
    // the next: photographs of dust clouds show 1.3-2x between them at this scale)
    // Only a dense front is a surface with crowns and crevices: through thin dust the eye
    // sees a depth-average, and noise shaded on the front point's curved sheet there
    // reads as marbled bands. A cloud thinned for the see-through is the physical cloud
    // made faint: its lumps are judged half way (in log) toward their full density, as
    // the light judges them (dust_frame). Judged by their faint density they went
    // unshaded, flat fog (img_181 from 60 %).
    float solid = smoothstep(0.1, 1.2, aux.w / sqrt(thin));
    float lit = clamp(1.0 + amp * 0.22 * n * solid, 0.55, 1.45);
    return vec4(c.rgb / max(c.a, 1e-4) * a2 * lit, a2);
}

// Whether the ray of the output pixel px (its backdrop looked up at tc) ends on the
// ground plane (the backdrop there is the street's depth).
float on_street_at(vec2 px, vec2 tc) {
    if (px.y <= intr.w + 1.0) return 0.0;
    float ground = intr.y * eye / (px.y - intr.w);
    float zb = texture(backdrop, tc).r;
    return 1.0 - smoothstep(0.03, 0.08, abs(zb - ground) / ground);
}
float on_street(vec2 px) { return on_street_at(px, gl_FragCoord.xy / vec2(textureSize(backdrop, 0))); }

// How much this pixel's edge is the cloud's foot on the street: its ray ends there and
// the cloud is denser a march pixel above than below (n4: right, left, above, below).
float foot_at(vec2 px, vec4 n4) {
    return on_street(px) * smoothstep(0.05, 0.3, n4.z - n4.w);
}

// How much the dust in front (its opacity-weighted depth zf) is a layer lying on the piece
// behind it at depth zs (the building's own front, standing or falling, is pieces): within
// LAYER_M of it. Its edge there is where the layer thins, not a lump's outline against
// what lies far behind it, so it keeps the march's soft ramp: cut sharp, every thin spot
// in the dust jetted along a blown base was a hole with a paper edge through which the
// dark shop front showed (judge 41, img_270 at 20 %). (Not against the plate's own walls
// and street: the street has the foot's ramp, and a cloud over the walls beside the
// building stands metres off them, its lumps' outlines sharp.)
float lying_on(float zf, float zs) {
    return zf > 0.0 ? 1.0 - smoothstep(LAYER_M.x, LAYER_M.y, zs - zf) : 0.0;
}

// A march pixel's whole cloud along its ray: its front over its back.
vec4 whole_at(ivec2 q) {
    q = clamp(q, ivec2(0), textureSize(lo_front, 0) - 1);
    vec4 f = texelFetch(lo_front, q, 0), b = texelFetch(lo_back, q, 0);
    return f + (1.0 - f.a) * b;
}

// The whole cloud, interpolated between march pixels. Where no piece is at this output
// pixel its dust is all in front; interpolating the split layers instead mixed a
// neighbour's front (the dust before a piece) with the cloud without one, and the front
// over the back came out thinner than either along every silhouette: a bright line of
// plate round each piece in the dust (img_190, img_288).
vec4 whole_lerp(vec2 tc) {
    vec2 x = tc * vec2(textureSize(lo_front, 0)) - 0.5;
    ivec2 i = ivec2(floor(x));
    vec2 w = fract(x);
    return mix(mix(whole_at(i), whole_at(i + ivec2(1, 0)), w.x),
               mix(whole_at(i + ivec2(0, 1)), whole_at(i + ivec2(1, 1)), w.x), w.y);
}

// The march's opacity d away along the axes (+x, -x, +y, -y): the whole cloud there, or
// its front alone.
vec4 alpha4(vec2 tc, vec2 d, bool whole) {
    return whole ? vec4(whole_lerp(tc + vec2(d.x, 0.0)).a, whole_lerp(tc - vec2(d.x, 0.0)).a,
                        whole_lerp(tc + vec2(0.0, d.y)).a, whole_lerp(tc - vec2(0.0, d.y)).a)
                 : vec4(texture(lo_front, tc + vec2(d.x, 0.0)).a, texture(lo_front, tc - vec2(d.x, 0.0)).a,
                        texture(lo_front, tc + vec2(0.0, d.y)).a, texture(lo_front, tc - vec2(0.0, d.y)).a);
}

// A lump's face lit as a lump is: where the cloud's edge faces up (the cloud below it,
// clear above, judged LOBE_PX march pixels either side) it is a crown that sees the whole
// sky and the sun, where it faces down a belly that sees the street; LOBE_SHADE either
// way, fading in as the edge sharpens. The march lights the cloud through the grid's
// optical depths, metres across, and the full-size pass cuts its edges into lumps a few
// pixels across: those lumps came out one flat beige, cut-outs laid over the wall (the
// reviews' "jigsaw" edges, img_270 at 20 %). Blind A/Bs over five plates at 20-60 %:
// lit at 0.5 over 5 march pixels against unlit 11 of 12 frames, at 0.65 over 9 against
// that 11 of 12. At 0.8 over 14 (8 to 3 over 0.65) the dense cloud's luminance spectrum
// fell as k^-4.07, steeper than photographed clouds' (tests/test_dust_render.py).
float lobe_light(vec2 tc, vec2 ts, vec2 px) {
    // (the whole cloud's shape, not the front's: a piece splitting it is no edge of a lump,
    // and read from the front the pieces in the dust got blocky light outlines, img_288)
    vec4 n4 = alpha4(tc, LOBE_PX * ts, true);
    vec2 g = vec2(n4.y - n4.x, n4.w - n4.z);        // toward the clearer side: the edge's outward normal
    float len = length(g);
    float up = g.y / max(len, 1e-3);
    // (no belly where the cloud ends on the street: that is the current's foot over the
    // road, and darkened it stood as a hard dark band along the ground, demo and img_100;
    // nor where the ray LOBE_PX below ends there while this one reaches the building: the
    // cloud is thinner below only because those rays stop short of it, at the street, and
    // that ledge along the building's base line drew the same band there, ending in the
    // base line's straight edge across the demo's parked cars at 20 %)
    if (up < 0.0) {
        float dy = LOBE_PX * ts.y;
        float st = on_street_at(px + vec2(0.0, dy * float(textureSize(backdrop, 0).y)), tc - vec2(0.0, dy));
        up *= 1.0 - max(on_street(px), st);
        // A belly is in the shadow of the lump over it, as deep as that lump is opaque
        // (n4.z, LOBE_PX above): a see-through puff in the sky, 0.6-0.85 opaque, kept the
        // full shade under it and floated as a dark-bottomed saucer (img_140 at 40 %,
        // judge 50); a dense front's belly is shaded as before.
        up *= smoothstep(BELLY_ALPHA.x, BELLY_ALPHA.y, n4.z);
    }
    return 1.0 + LOBE_SHADE * up * smoothstep(0.05, 0.5, len);
}

// The haze beside a cloud's edge, which the edge's steepening must keep: the least
// opaque of the march pixels HAZE_PX away, where that is about what the nearest ones
// (am: their least) hold, a plateau of thinner dust. Where it is much clearer further
// out, the nearest ones are the edge's own blurred ramp, which is cut (floor 0): a dense
// cloud against the sky keeps its sharp edge.
float haze_floor(vec2 tc, vec2 ts, bool whole, float am) {
    vec4 f4 = alpha4(tc, HAZE_PX * ts, whole);
    float far = min(min(f4.x, f4.y), min(f4.z, f4.w));
    return min(am, far) * smoothstep(0.5, 0.85, far / max(am, 1e-3));
}

// Cubic B-spline weights of the four texels around a point a fraction f past the second.
void bspline(vec2 f, out vec2 w0, out vec2 w1, out vec2 w2, out vec2 w3) {
    vec2 f2 = f * f, f3 = f2 * f;
    w0 = (1.0 - 3.0 * f + 3.0 * f2 - f3) / 6.0;
    w1 = (4.0 - 6.0 * f2 + 3.0 * f3) / 6.0;
    w2 = (1.0 + 3.0 * f + 3.0 * f2 - 3.0 * f3) / 6.0;
    w3 = f3 / 6.0;
}

// The depth a march pixel's ray stopped at: its nearest opaque thing, else the plate's.
float lo_depth(ivec2 q) {
    return texelFetch(lo_stop, q, 0).r;
}

// The march's front and back at an output pixel where a piece or a holdout stands at
// depth z, from the march pixels whose ray stopped at about that depth. A march pixel
// stops at the nearest thing touching it, so along a car's roof it stopped at the car;
// read plainly, the debris just above the roof took the dust in front of the car (next to
// none, that close to the lens) and its dark underside showed as a jagged black line of
// march-sized steps along the car's outline (img_140, img_190 at 60-100 %). The four
// bilinear neighbours are weighted by how near each one's stop is to z; where none is
// near, the nearest in depth is taken, with its dust behind counted in front in the
// share of the way from its stop to the backdrop that z lies. Returns whether the plain
// bilinear read was right (all four stopped near z).
bool split_at(vec2 tc, float z, out vec4 f, out vec4 b) {
    vec2 x = tc * vec2(textureSize(lo_front, 0)) - 0.5;
    ivec2 top = textureSize(lo_front, 0) - 1, i = ivec2(floor(x));
    ivec2 q0 = clamp(i, ivec2(0), top), q1 = clamp(i + 1, ivec2(0), top);
    ivec2 q[4] = ivec2[4](q0, ivec2(q1.x, q0.y), ivec2(q0.x, q1.y), q1);
    vec2 w = fract(x);
    vec4 bw = vec4((1.0 - w.x) * (1.0 - w.y), w.x * (1.0 - w.y), (1.0 - w.x) * w.y, w.x * w.y);
    vec4 dz = (vec4(lo_depth(q[0]), lo_depth(q[1]), lo_depth(q[2]), lo_depth(q[3])) - z) / max(0.05 * z, 0.3);
    vec4 s = exp(-dz * dz);
    if (min(min(s.x, s.y), min(s.z, s.w)) > 0.6) {
        f = texture(lo_front, tc); b = texture(lo_back, tc);
        return true;
    }
    vec4 wq = bw * s;
    float ws = wq.x + wq.y + wq.z + wq.w;
    if (ws > 0.05) {
        f = vec4(0.0); b = vec4(0.0);
        for (int k = 0; k < 4; k++) { f += wq[k] * texelFetch(lo_front, q[k], 0); b += wq[k] * texelFetch(lo_back, q[k], 0); }
        f /= ws; b /= ws;
        return false;
    }
    int kn = 0;
    for (int k = 1; k < 4; k++) if (s[k] > s[kn]) kn = k;
    f = texelFetch(lo_front, q[kn], 0); b = texelFetch(lo_back, q[kn], 0);
    float zq = lo_depth(q[kn]), zb = texelFetch(lo_stop, q[kn], 0).g;
    float share = zb > zq ? clamp((z - zq) / (zb - zq), 0.0, 1.0) : 0.0;
    f += (1.0 - f.a) * share * b;
    b *= 1.0 - share;
    return false;
}

// The march's front where no piece splits it, smoothed across march pixels by a cubic
// B-spline (four bilinear taps). Steepened into the cloud's edge, the bilinear ramp drew
// the march's grid: a staircase of 3-4 px blocks along the cloud's edge against the sky,
// "posterized into 8-bit blocks" (judge 23, img_270 at 100 %); the spline's level lines
// are smooth curves.
void spline_taps(vec2 tc, out vec2 g0, out vec2 g1, out vec2 h0, out vec2 h1) {
    vec2 size = vec2(textureSize(lo_front, 0));
    vec2 x = tc * size - 0.5, i = floor(x);
    vec2 w0, w1, w2, w3;
    bspline(x - i, w0, w1, w2, w3);
    g0 = w0 + w1; g1 = w2 + w3;
    h0 = (i - 0.5 + w1 / g0) / size; h1 = (i + 1.5 + w3 / g1) / size;
}

vec4 front_smooth(vec2 tc) {
    vec2 g0, g1, h0, h1;
    spline_taps(tc, g0, g1, h0, h1);
    return g0.y * (g0.x * texture(lo_front, h0) + g1.x * texture(lo_front, vec2(h1.x, h0.y))) +
           g1.y * (g0.x * texture(lo_front, vec2(h0.x, h1.y)) + g1.x * texture(lo_front, h1));
}

// Whether any march pixel the spline reaches has a piece splitting its cloud (dust behind
// it): there front_smooth would mix in the dust before that piece only, and the cloud
// thinned along the piece's outline, a line of plate a pixel or two off it where the dust
// is dense and steep (the street's current at a piece's foot).
bool split_near(vec2 tc) {
    vec2 g0, g1, h0, h1;
    spline_taps(tc, g0, g1, h0, h1);
    return texture(lo_back, h0).a + texture(lo_back, vec2(h1.x, h0.y)).a +
           texture(lo_back, vec2(h0.x, h1.y)).a + texture(lo_back, h1).a > 0.0;
}

// The whole cloud (front over back) smoothed the same way, where a piece splits the
// march nearby but not this pixel: the same cloud front_smooth gives without the piece.
vec4 whole_smooth(vec2 tc) {
    vec2 x = tc * vec2(textureSize(lo_front, 0)) - 0.5, i = floor(x);
    vec2 w[4];
    bspline(x - i, w[0], w[1], w[2], w[3]);
    vec4 acc = vec4(0.0);
    for (int v = 0; v < 4; v++)
        for (int u = 0; u < 4; u++)
            acc += w[u].x * w[v].y * whole_at(ivec2(i) + ivec2(u - 1, v - 1));
    return acc;
}

void main() {
    vec2 fc = gl_FragCoord.xy * scale;                       // output pixel, GL origin bottom-left
    vec2 px = vec2(fc.x, H - fc.y);
    vec2 tc = gl_FragCoord.xy / vec2(textureSize(opaque, 0));
    // The march's first step is dithered a little per pixel (against banding where the
    // step is long); dithered over 0.3 of a step, each march pixel differed from the next,
    // and at the output size the cloud's thin edges showed them as 3-4 px blocks
    // ("posterized", judge 23, img_270 at 100 %).
    if (mode == 0) { march(px, tc, 0.5 + 0.08 * (hash12(gl_FragCoord.xy) - 0.5)); return; }
    vec4 f = texture(lo_front, tc), b = texture(lo_back, tc), aux = texture(lo_aux, tc);
    float z_op = texture(opaque, tc).r;
    bool piece = z_op > 0.0 && z_op < texture(backdrop, tc).r;
    bool whole = !piece && (b.a > 0.0 || split_near(tc));
    if (whole) { f = whole_smooth(tc); b = vec4(0.0); }
    else if (!piece) f = front_smooth(tc);
    bool plain = true;
    if (piece) plain = split_at(tc, z_op, f, b);
    o_aux = aux;
    // Only where the march left dust (refine keeps anything thinner as it is): the
    // neighbour taps and the noise are most of this pass's cost, and most pixels have no
    // dust behind a piece.
    bool hf = f.a >= 1e-4 && aux.x > 0.0, hb = b.a >= 1e-4 && aux.x > 0.0;
    o_front = f;
    o_back = b;
    if (!hf && !hb) return;
    vec2 nd = detail(aux, px);
    vec2 ts = 1.0 / vec2(textureSize(lo_front, 0));
    if (hf) {
        // Beside a piece, the neighbours' front is only the dust before that piece: read
        // against it, the whole cloud here looked like a cloud's edge and was steepened
        // to opaque, a dense rim round every piece in the dust (img_190 at 100 %). There
        // the neighbours are read whole too.
        vec4 n4 = whole || plain ? alpha4(tc, ts, whole) : vec4(f.a);
        float an = max(max(n4.x, n4.y), max(n4.z, n4.w)), am = min(min(n4.x, n4.y), min(n4.z, n4.w));
        o_front = refine(f, aux, nd, 1.0, max(an, f.a), max(an, f.a) - min(am, f.a), piece ? 0.0 : foot_at(px, n4),
                         whole || plain ? haze_floor(tc, ts, whole, min(am, f.a)) : 0.0,
                         piece ? lying_on(aux.x, z_op) : 0.0);
        o_front.rgb *= lobe_light(tc, ts, px);
    }
    if (hb) {
        vec4 n4 = vec4(texture(lo_back, tc + vec2(ts.x, 0.0)).a, texture(lo_back, tc - vec2(ts.x, 0.0)).a,
                       texture(lo_back, tc + vec2(0.0, ts.y)).a, texture(lo_back, tc - vec2(0.0, ts.y)).a);
        // At a piece's outline a neighbour without the piece has no back layer (its cloud
        // is all in front): read against it, the back looked like a cloud's edge and was
        // steepened to opaque, a dense dashed line round every piece seen through its
        // anti-aliased edge (img_190 at 100 %). There the neighbours are read whole.
        float here = b.a;
        if (min(min(n4.x, n4.y), min(n4.z, n4.w)) < 1e-3) {
            n4 = vec4(whole_lerp(tc + vec2(ts.x, 0.0)).a, whole_lerp(tc - vec2(ts.x, 0.0)).a,
                      whole_lerp(tc + vec2(0.0, ts.y)).a, whole_lerp(tc - vec2(0.0, ts.y)).a);
            here = whole_lerp(tc).a;
        }
        float bn = max(max(n4.x, n4.y), max(n4.z, n4.w)), bm = min(min(n4.x, n4.y), min(n4.z, n4.w));
        o_back = refine(b, aux, nd, 0.7, b.a, max(bn, here) - min(bm, here), 0.0, 0.0, 0.0);
    }
}
"""


@dataclass
class DustLayers:
    """The dust as the comp needs it, at the output size."""
    front: np.ndarray        # H x W x 4 premultiplied linear RGBA, dust in front of the nearest piece
    back: np.ndarray         # H x W x 4 premultiplied, between that piece and the background
    shade_near: np.ndarray   # H x W x 2 optical depth toward sun and sky at the nearest surface
    shade_far: np.ndarray    # H x W x 2 the same at the background
    sun_share: float = 0.0   # the sun's share of the light on the ground
    depth: np.ndarray | None = None    # H x W depth of the cloud's front (opacity-weighted; 0: none)
    motion: np.ndarray | None = None   # H x W x 2 the front's motion in pixels a frame (u right, v down)


class DustRenderer:
    def __init__(self, ctx, cam: Camera, light, albedo, backdrop: np.ndarray, march_size: tuple,
                 detail: bool = True, sigma_cap: float = 2.0, fps: float = 24.0,
                 backdrop_full: np.ndarray | None = None, two_pass: bool = True,
                 clear_m: tuple = (0.0, 0.0), clear_tau: tuple = (0.0, 0.0)):
        """backdrop: the plate's opaque depth at march_size; backdrop_full: at the output
        size (the full-size pass). detail=False, sigma_cap=inf, two_pass=False: the plain
        physical march (tests check its transmittance against exp(-sigma d)).
        clear_m, clear_tau: within clear_m of the lens (fully to the first distance, fading
        out by the second), the first clear_tau of optical depth from the lens is thinned
        away (from none at the first to whole at the second): thin dust near the camera
        stays see-through, a dense front there still covers the frame (none by default)."""
        import moderngl
        self.ctx, self.mgl = ctx, moderngl
        self.cam = cam
        self.size = march_size
        self.out_size = (cam.width, cam.height)
        self.two_pass = two_pass and tuple(march_size) != tuple(self.out_size)
        self.prog = ctx.program(vertex_shader=_VS, fragment_shader=_FS)
        quad = ctx.buffer(np.array([-1, -1, 3, -1, -1, 3], np.float32).tobytes())
        self.vao = ctx.vertex_array(self.prog, [(quad, "2f", "in_xy")])
        self.tiles_vbo = self.tiles_vao = None
        self.grid_shape = None
        self.textures3d = []
        nz_ = billow_noise()
        self.noise = ctx.texture3d((NOISE_RES,) * 3, 1, nz_.astype(np.float16).tobytes(), dtype="f2")
        self.noise.build_mipmaps()
        # One mip level a lookup (not two blended): half the cost on a CPU rasteriser, and
        # the level is picked per pixel footprint anyway.
        self.noise.filter = (moderngl.LINEAR_MIPMAP_NEAREST, moderngl.LINEAR)
        self.noise.repeat_x = self.noise.repeat_y = self.noise.repeat_z = True
        self.targets = {}
        self._target("lo", march_size, backdrop)
        self.backdrop_lo = np.asarray(backdrop, np.float32)
        self.lo_stop = ctx.texture(tuple(march_size), 2, dtype="f4")
        self.lo_stop.filter = (moderngl.NEAREST, moderngl.NEAREST)
        if self.two_pass:
            full = backdrop_full if backdrop_full is not None else cv2.resize(
                backdrop, self.out_size, interpolation=cv2.INTER_NEAREST)
            # Only the two layers at the full size, in half floats: on a CPU rasteriser the
            # bytes written per pixel are much of the pass's cost; the shading and the
            # front's depth and motion are smooth and are upsampled on the CPU.
            self._target("full", self.out_size, full, n_out=2, dtype="f2")
        p = self.prog
        for name, unit in (("vol", 0), ("coordA", 1), ("coordB", 2), ("velo", 3), ("occ", 4), ("noise", 5),
                           ("opaque", 6), ("backdrop", 7), ("lo_front", 8), ("lo_back", 9), ("lo_stop", 10),
                           ("lo_aux", 11), ("shade", 12)):
            if name in p:
                p[name].value = unit
        p["intr"].value = (cam.f_px, cam.f_px, cam.cx, cam.cy)
        p["H"].value = float(cam.height)
        p["eye"].value = float(cam.eye_m)
        p["sun_dir"].value = tuple(map(float, light.sun_dir))
        p["sun_col"].value = tuple(map(float, light.sun_col))
        p["amb_col"].value = tuple(map(float, light.amb_col))
        p["albedo"].value = tuple(map(float, albedo))
        p["g_hg"].value = 0.5
        p["sigma_cap"].value = float(min(sigma_cap, 1e7))
        p["use_detail"].value = bool(detail)
        p["turb_ref"].value = 3.0
        p["frame_s"].value = 1.0 / float(fps)
        p["edge_gain"].value = 10.0
        p["clear_m"].value = (float(clear_m[0]), float(max(clear_m[1], clear_m[0] + 1e-3)))
        p["clear_tau"].value = (float(clear_tau[0]), float(max(clear_tau[1], clear_tau[0] + 1e-3)))

    def _target(self, name, size, backdrop, n_out=4, dtype="f4"):
        ctx, mgl = self.ctx, self.mgl
        W, H = size
        outs = [ctx.texture((W, H), 4, dtype=dtype) for _ in range(n_out)]
        for t in outs:
            t.filter = (mgl.LINEAR, mgl.LINEAR)
            t.repeat_x = t.repeat_y = False
        opaque = ctx.texture((W, H), 1, dtype="f4")
        opaque.filter = (mgl.NEAREST, mgl.NEAREST)
        back = ctx.texture((W, H), 1, np.ascontiguousarray(backdrop[::-1], np.float32).tobytes(), dtype="f4")
        back.filter = (mgl.NEAREST, mgl.NEAREST)
        self.targets[name] = dict(size=size, outs=outs, fbo=ctx.framebuffer(color_attachments=outs), opaque=opaque,
                                  backdrop=back)

    def _grid_textures(self, shape):
        """3D textures for a grid of this shape (the grid grows during a shot: a new
        size gets new textures)."""
        if shape == self.grid_shape:
            return
        for t in self.textures3d:
            t.release()
        mgl = self.mgl
        nz, ny, nx = shape

        def tex3(comp, dims=(nx, ny, nz), filt=mgl.LINEAR):
            t = self.ctx.texture3d(dims, comp, dtype="f4")
            t.filter = (filt, filt)
            t.repeat_x = t.repeat_y = t.repeat_z = False
            return t
        self.vol, self.cA, self.cB, self.velo = tex3(4), tex3(3), tex3(3), tex3(4)
        self.occ_cells = 4
        self.occ_shape = tuple(int(np.ceil(s / self.occ_cells)) for s in shape)
        self.occ = tex3(1, self.occ_shape[::-1], mgl.NEAREST)
        self.shade = tex3(2)
        self.textures3d = [self.vol, self.cA, self.cB, self.velo, self.occ, self.shade]
        self.grid_shape = shape

    def render(self, f: DustFrame, opaque_depth: np.ndarray, opaque_full: np.ndarray | None = None) -> DustLayers:
        """opaque_depth: the nearest piece's depth (0: none) at the march size; opaque_full:
        the same at the output size (for the full-size pass)."""
        g = f.grid
        self._grid_textures(tuple(g.shape))
        vol = np.stack([f.sigma, f.tau_sun, f.tau_sky, f.turb], -1)
        self.vol.write(np.ascontiguousarray(vol, np.float32).tobytes())
        coords = unstretched(f.coords, g, f.drift)
        self.cA.write(np.ascontiguousarray(np.moveaxis(coords[0], 0, -1), np.float32).tobytes())
        self.cB.write(np.ascontiguousarray(np.moveaxis(coords[1], 0, -1), np.float32).tobytes())
        gather = np.zeros_like(f.sigma) if f.gather is None else f.gather
        self.velo.write(np.ascontiguousarray(np.moveaxis(np.concatenate([f.vel, gather[None]]), 0, -1),
                                             np.float32).tobytes())
        self.occ.write(self._occupancy(f.sigma).tobytes())
        shade = np.stack([f.tau_sun, f.tau_sky]) if f.shade is None else f.shade
        self.shade.write(np.ascontiguousarray(np.moveaxis(shade, 0, -1), np.float32).tobytes())
        p = self.prog
        p["origin"].value = tuple(map(float, g.origin))
        p["extent"].value = tuple(map(float, g.size_m))
        p["step_m"].value = float(g.h * 0.9)
        p["warp"].value = float(1.5 * g.h)
        p["thin"].value = float(f.thin)
        p["period"].value = float(NOISE_TILE_CELLS * g.h)
        p["sigma_min"].value = float(0.02 / (g.h * self.occ_cells))
        wa, wb = f.coord_w
        drift = np.zeros((2, 3)) if f.drift is None else np.asarray(f.drift, float)
        p["driftA"].value, p["driftB"].value = tuple(map(float, drift[0])), tuple(map(float, drift[1]))
        p["carry"].value = carry_velocity(f)
        p["wA"].value, p["wB"].value = float(wa), float(wb)
        p["wnorm"].value = float(max(np.sqrt(wa * wa + wb * wb), 1e-3))
        for unit, tex in enumerate((self.vol, self.cA, self.cB, self.velo, self.occ, self.noise)):
            tex.use(unit)
        self.shade.use(12)
        lo = self._pass("lo", 0, opaque_depth)
        if not self.two_pass:
            return self._layers(lo)
        for k, tex in enumerate(self.targets["lo"]["outs"]):
            tex.use(8 + k)
        # (the detail pass has no use for the march's shading, upsampled on the CPU: its
        # unit carries where each march pixel's ray stopped instead; a sampler more cost
        # llvmpipe 3 s of compiling a shot)
        stop = np.where(opaque_depth > 0, opaque_depth, self.backdrop_lo)
        self.lo_stop.write(np.ascontiguousarray(np.stack([stop, self.backdrop_lo], -1)[::-1], np.float32).tobytes())
        self.lo_stop.use(10)
        if opaque_full is None:
            opaque_full = cv2.resize(opaque_depth, self.out_size, interpolation=cv2.INTER_NEAREST)
        lo = [np.frombuffer(t.read(), np.float32).reshape(self.size[1], self.size[0], 4)[::-1]
              for t in self.targets["lo"]["outs"]]
        W, H = self.out_size
        up = lambda a: cv2.resize(a, (W, H), interpolation=cv2.INTER_LINEAR)
        tiles = self._dust_tiles(np.maximum(lo[0][..., 3], lo[1][..., 3]))
        full = self._detail_pass(opaque_full, tiles)
        return self._layers([full[0], full[1], up(lo[2]), self._upsample_aux(lo[3], (W, H))])

    def _dust_tiles(self, alpha_lo: np.ndarray) -> np.ndarray:
        """The output's DETAIL_TILE-pixel tiles (row, column; rows down) the full-size pass
        must shade: those within reach of any march pixel with dust (its bilinear lookup
        and the neighbour taps of the edge ramp reach two march pixels). Elsewhere that
        pass returns the march's own zero, so it is not run there: on a CPU rasteriser
        the pass costs as much as the march, and before the cloud has grown most of the
        frame is clear."""
        W, H = self.out_size
        k = DETAIL_TILE
        m = cv2.dilate((alpha_lo >= DETAIL_MIN_ALPHA).astype(np.uint8), np.ones((5, 5), np.uint8))
        m = cv2.resize(m, (W, H), interpolation=cv2.INTER_NEAREST)
        ty, tx = -(-H // k), -(-W // k)
        pad = np.zeros((ty * k, tx * k), np.uint8)
        pad[:H, :W] = m
        return np.argwhere(pad.reshape(ty, k, tx, k).max(axis=(1, 3)) > 0)

    def _detail_pass(self, opaque_full: np.ndarray, tiles: np.ndarray) -> list:
        """The full-size pass over the given tiles only (the rest stays cleared to no
        dust), read back over their bounding box: front and back, float32, H x W x 4."""
        W, H = self.out_size
        out = [np.zeros((H, W, 4), np.float32) for _ in range(2)]
        tg = self.targets["full"]
        if not len(tiles):
            return out
        k = DETAIL_TILE
        y0, x0 = tiles.min(0) * k
        y1, x1 = np.minimum((tiles.max(0) + 1) * k, (H, W))
        # Two triangles a tile in clip space (GL's rows run up); tiles are whole 2x2 pixel
        # quads, so the derivatives the pass takes are the ones a full-frame draw gets.
        xa, xb = tiles[:, 1] * k, np.minimum(tiles[:, 1] * k + k, W)
        ya, yb = H - np.minimum(tiles[:, 0] * k + k, H), H - tiles[:, 0] * k
        X = lambda x: 2.0 * x / W - 1.0
        Y = lambda y: 2.0 * y / H - 1.0
        quads = np.stack([X(xa), Y(ya), X(xb), Y(ya), X(xb), Y(yb), X(xa), Y(ya), X(xb), Y(yb), X(xa), Y(yb)], -1)
        data = quads.astype(np.float32).tobytes()
        if self.tiles_vbo is None or self.tiles_vbo.size < len(data):
            if self.tiles_vbo is not None:
                self.tiles_vao.release()
                self.tiles_vbo.release()
            self.tiles_vbo = self.ctx.buffer(reserve=max(len(data), 1024))
            self.tiles_vao = self.ctx.vertex_array(self.prog, [(self.tiles_vbo, "2f", "in_xy")])
        self.tiles_vbo.write(data)
        self._pass("full", 1, opaque_full, read=False, vao=self.tiles_vao, vertices=6 * len(tiles))
        for a, o in enumerate(out):
            buf = tg["fbo"].read(viewport=(int(x0), int(H - y1), int(x1 - x0), int(y1 - y0)), components=4,
                                 attachment=a, dtype="f2")
            o[y0:y1, x0:x1] = np.frombuffer(buf, np.float16).reshape(y1 - y0, x1 - x0, 4)[::-1]
        return out

    @staticmethod
    def _upsample_aux(aux, size):
        """The front's depth and motion at the output size: nearest where the coarse
        pixel has no dust (no depth to blend with), linear elsewhere."""
        W, H = size
        # A coarse pixel without dust next to one with it takes its neighbour's depth: the
        # full-size edge can reach past the coarse one (the cloud's lobes are pushed at
        # the full size), and a depth of 0 there would put the dust at the lens.
        aux = aux.copy()
        empty = aux[..., 0] <= 0
        aux[..., 0] = np.where(empty, cv2.dilate(aux[..., 0], np.ones((3, 3), np.uint8)), aux[..., 0])
        lin = cv2.resize(aux, (W, H), interpolation=cv2.INTER_LINEAR)
        has = cv2.resize((aux[..., 0] > 0).astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR)
        near = cv2.resize(aux, (W, H), interpolation=cv2.INTER_NEAREST)
        return np.where((has > 0.999)[..., None], lin, near)

    def _pass(self, name, mode, opaque, read=None, dtype=np.float32, vao=None, vertices=-1):
        tg = self.targets[name]
        W, H = tg["size"]
        tg["opaque"].write(np.ascontiguousarray(opaque[::-1], np.float32).tobytes())
        tg["opaque"].use(6)
        tg["backdrop"].use(7)
        p = self.prog
        p["mode"].value = mode
        p["scale"].value = (self.cam.width / W, self.cam.height / H)
        tg["fbo"].use()
        tg["fbo"].clear(0, 0, 0, 0)
        self.ctx.disable(self.mgl.DEPTH_TEST)
        self.ctx.disable(self.mgl.BLEND)
        (vao or self.vao).render(vertices=vertices)
        if read is False or (read is None and self.two_pass):
            return None
        return [np.frombuffer(t.read(), dtype).reshape(H, W, 4)[::-1] for t in tg["outs"]]

    @staticmethod
    def _layers(out) -> DustLayers:
        aux = out[3]
        # Screen motion: the shader's v runs down the image already (pixel rows).
        return DustLayers(out[0], out[1], out[2][..., :2], out[2][..., 2:], depth=aux[..., 0].copy(),
                          motion=aux[..., 1:3].copy())

    def _occupancy(self, sigma: np.ndarray) -> np.ndarray:
        """Max extinction per block of cells, grown by one cell so trilinear taps at a
        block's edge are never skipped, by the noise's vertical push (up to 3.6 cells) up
        and down, or the bulging tops would be cut square at the blocks, and by its
        sideways push (about 4 cells), or the lobes of the front would be."""
        c = self.occ_cells
        s = maximum_filter(sigma, size=(9, 11, 9), mode="nearest")
        nz, ny, nx = self.occ_shape
        pad = np.zeros((nz * c, ny * c, nx * c), np.float32)
        pad[: s.shape[0], : s.shape[1], : s.shape[2]] = s
        return np.ascontiguousarray(pad.reshape(nz, c, ny, c, nx, c).max(axis=(1, 3, 5)))

    def release(self):
        if self.tiles_vbo is not None:
            self.tiles_vao.release()
            self.tiles_vbo.release()
        for t in self.textures3d + [self.noise, self.lo_stop]:
            t.release()
        for tg in self.targets.values():
            for t in tg["outs"] + [tg["opaque"], tg["backdrop"]]:
                t.release()
            tg["fbo"].release()


@njit(parallel=True, cache=True)
def vector_blur(rgba, motion, shutter, out):
    """Motion blur of a premultiplied layer along its own screen motion (pixels a frame):
    each pixel averages the layer along the path its dust sweeps while the shutter is
    open (up to 9 taps), the usual post-process blur of a volume pass."""
    H, W, C = rgba.shape
    for y_ in prange(H):
        y = np.int64(y_)
        for x in range(W):
            mx = motion[y, x, 0] * shutter
            my = motion[y, x, 1] * shutter
            L = np.sqrt(mx * mx + my * my)
            if L < 0.5:
                for c in range(C):
                    out[y, x, c] = rgba[y, x, c]
                continue
            n = min(9, int(L) + 2)
            for c in range(C):
                out[y, x, c] = 0.0
            for s in range(n):
                f = s / (n - 1) - 0.5
                xx = min(max(int(x + f * mx + 0.5), 0), W - 1)
                yy = min(max(int(y + f * my + 0.5), 0), H - 1)
                for c in range(C):
                    out[y, x, c] += rgba[yy, xx, c] / n
