"""Render stage: the debris layer, rasterised with OpenGL (moderngl on EGL).

On a CPU this runs through Mesa's llvmpipe; the same shaders run on a GPU. Per frame:
- a sun shadow map of the pieces (and one of the building at rest, made once);
- the pieces, several times across the shutter interval (motion blur by accumulating
  sub-frames), into premultiplied RGBA. Front faces show the plate projected from the
  camera at their rest pose (what the viewer sees of the facade is the real photo),
  relit by how far each face has turned from its rest orientation; fracture faces show
  the material; side faces a facade tint. Fragments whose rest position lies outside
  the building's matte are discarded, which carves every piece to the silhouette.
  Pieces that have not moved write only "static" coverage: the comp shows the plate's
  own pixels there, bit for bit;
- a ground pass: extra sun shadow and contact occlusion the moving pieces throw on
  the street, as a multiplier for the comp.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from derrumbe.errors import DerrumbeError
from derrumbe.stages.camera import Camera
from derrumbe.stages.fracture import Fracture
from derrumbe.stages.lighting import Lighting
from derrumbe.stages.poses import quat_to_mat, sample_pose
from derrumbe.stages.simulate import SimResult

NEAR, FAR = 0.5, 2000.0


@dataclass
class FrameLayers:
    debris: np.ndarray       # H x W x 4 premultiplied linear RGBA of moving pieces
    static: np.ndarray       # H x W coverage by pieces still at rest (plate shows through)
    ground: np.ndarray       # H x W multiplier for the street (shadow, contact occlusion)
    samples: int             # motion-blur sub-frames used
    depth_sum: np.ndarray    # H x W view depth of the nearest piece, summed over covered sub-frames
    depth_n: np.ndarray      # H x W number of sub-frames in which a piece covered the pixel
    static_z: np.ndarray | None = None   # H x W view depth of the pieces at rest (0 where none)

    def depth(self) -> np.ndarray:
        """Mean view depth of the nearest piece (0 where none)."""
        return np.where(self.depth_n > 0, self.depth_sum / np.maximum(self.depth_n, 1e-6), 0.0).astype(np.float32)


_PIECE_VS = """
#version 330
uniform sampler2D xf;          // 3 rows x N: rows of [R|t]; row 0 .w = moved flag
uniform mat4 viewproj;
uniform int static_pass;
in vec3 in_pos; in vec3 in_nrm; in vec3 in_rest; in float in_kind; in float in_id;
out vec3 v_rest; out vec3 v_nrm; out vec3 v_world; flat out float v_kind; flat out float v_moved;
void main() {
    int id = int(in_id);
    vec4 r0 = texelFetch(xf, ivec2(id, 0), 0);
    vec4 r1 = texelFetch(xf, ivec2(id, 1), 0);
    vec4 r2 = texelFetch(xf, ivec2(id, 2), 0);
    mat3 R = mat3(vec3(r0.x, r1.x, r2.x), vec3(r0.y, r1.y, r2.y), vec3(r0.z, r1.z, r2.z));
    vec3 t = vec3(texelFetch(xf, ivec2(id, 3), 0).xyz);
    vec3 w = R * in_pos + t;
    v_world = w; v_rest = in_rest; v_nrm = R * in_nrm; v_kind = in_kind; v_moved = r0.w;
    gl_Position = viewproj * vec4(w, 1.0);
    // The static pass wants only pieces at rest: moving ones are clipped away before
    // they are rasterised (on llvmpipe, a discarded fragment costs nearly a shaded one).
    if (static_pass == 1 && r0.w > 0.5) gl_Position = vec4(0.0, 0.0, 2.0, 1.0);
}
"""

_PIECE_FS = """
#version 330
uniform sampler2D plate;       // linear RGB at output size, mirrored beyond the frame
uniform sampler2D matte;       // building matte at output size
uniform sampler2DShadow shadow;
uniform mat4 viewproj; uniform mat4 lightproj;
uniform vec3 sun_dir, sun_col, amb_col, face_albedo, facade_albedo;
uniform float rough;
uniform int static_pass;   // 1: only pieces at rest, writing their coverage
in vec3 v_rest; in vec3 v_nrm; in vec3 v_world; flat in float v_kind; flat in float v_moved;
layout(location = 0) out vec4 o_col;
layout(location = 1) out vec4 o_aux;
float hash(vec3 p) { p = fract(p * 0.3183099 + 0.1); p *= 17.0; return fract(p.x * p.y * p.z * (p.x + p.y + p.z)); }
float vnoise(vec3 x) {
    vec3 i = floor(x); vec3 f = fract(x); f = f * f * (3.0 - 2.0 * f);
    return mix(mix(mix(hash(i), hash(i + vec3(1,0,0)), f.x), mix(hash(i + vec3(0,1,0)), hash(i + vec3(1,1,0)), f.x), f.y),
               mix(mix(hash(i + vec3(0,0,1)), hash(i + vec3(1,0,1)), f.x), mix(hash(i + vec3(0,1,1)), hash(i + vec3(1,1,1)), f.x), f.y), f.z);
}
float fbm(vec3 p) { return 0.6 * vnoise(p) + 0.4 * vnoise(p * 3.1); }
vec3 shade(vec3 n, float vis) {
    return amb_col * (0.6 + 0.4 * n.y) + sun_col * max(dot(n, sun_dir), 0.0) * vis;
}
void main() {
    vec4 rc = viewproj * vec4(v_rest, 1.0);
    vec2 ruv = rc.xy / rc.w * 0.5 + 0.5;
    if (texture(matte, ruv).r < 0.5) discard;
    // Pieces at rest only occlude in the beauty pass (the plate shows through there);
    // the static pass draws them alone, as coverage.
    if (static_pass == 1 && v_moved > 0.5) discard;
    // aux: static coverage, moving coverage, view depth (summed over the shutter), count.
    // A piece at rest shows the plate only through its outer face, which is what the
    // photo saw; a face the photo never saw (a slab edge, a room once the facade has
    // gone) is shaded like any moving face.
    float depth = -v_world.z;
    int kind = int(v_kind + 0.5);
    if (v_moved < 0.5 && kind == 0) { o_col = vec4(0.0); o_aux = vec4(1.0, 0.0, depth, 1.0); return; }
    if (static_pass == 1) { o_col = vec4(0.0); o_aux = vec4(0.0); return; }
    vec3 n = normalize(v_nrm);
    if (!gl_FrontFacing) n = -n;
    vec4 lc = lightproj * vec4(v_world + n * 0.05, 1.0);
    vec3 l = lc.xyz / lc.w * 0.5 + 0.5;
    // One bilinear (2x2) shadow tap: on llvmpipe the piece pass is fill-rate bound.
    float vis = texture(shadow, vec3(l.xy, l.z - 0.0015));
    vec3 c;
    if (kind == 0) {
        vec3 rest_n = vec3(0.0, 0.0, 1.0);
        vec3 ratio = shade(n, vis) / max(shade(rest_n, 1.0), vec3(1e-4));
        // Mirrored beyond the frame: hidden floors above it continue the facade.
        vec2 m = mod(ruv, 2.0);
        vec2 puv = mix(m, 2.0 - m, step(1.0, m));
        c = texture(plate, puv).rgb * clamp(ratio, 0.15, 2.5);
    } else if (kind == 1) {
        c = facade_albedo * (0.85 + 0.3 * fbm(v_rest * 1.7)) * shade(n, vis);
    } else if (kind == 2) {
        float g = fbm(v_rest * 3.1) + 0.35 * vnoise(v_rest * 23.0);
        c = face_albedo * (1.0 + rough * (g - 0.6) * 1.6) * shade(n, vis);
    } else {
        // Inside faces: plastered walls, floors and ceilings, lit only by what reaches
        // into a room, so darker than the street.
        vec3 plaster = vec3(0.50, 0.47, 0.42);
        c = plaster * (0.85 + 0.3 * fbm(v_rest * 2.3)) * shade(n, vis) * 0.75;
    }
    o_col = vec4(max(c, vec3(0.0)), 1.0);
    o_aux = vec4(0.0, 1.0, depth, 1.0);
}
"""

_DEPTH_VS = """
#version 330
uniform sampler2D xf; uniform mat4 lightproj; uniform float moved_only;
in vec3 in_pos; in float in_id;
out float v_skip;
void main() {
    int id = int(in_id);
    vec4 r0 = texelFetch(xf, ivec2(id, 0), 0); vec4 r1 = texelFetch(xf, ivec2(id, 1), 0);
    vec4 r2 = texelFetch(xf, ivec2(id, 2), 0); vec3 t = texelFetch(xf, ivec2(id, 3), 0).xyz;
    mat3 R = mat3(vec3(r0.x, r1.x, r2.x), vec3(r0.y, r1.y, r2.y), vec3(r0.z, r1.z, r2.z));
    v_skip = (moved_only > 0.5 && r0.w < 0.5) ? 1.0 : 0.0;
    gl_Position = lightproj * vec4(R * in_pos + t, 1.0);
    if (v_skip > 0.5) gl_Position = vec4(0.0, 0.0, 2.0, 1.0);   // clipped, never rasterised
}
"""
_DEPTH_FS = """
#version 330
in float v_skip; out vec4 o;
void main() { if (v_skip > 0.5) discard; o = vec4(1.0); }
"""

# Forward motion vectors and depth at the frame's own time, for the EXR: each fragment
# knows where its point of the piece is now (xf) and one frame later (xf_next); both are
# interpolated in clip space and divided per fragment, so the vector is exact for that
# point, not interpolated across the triangle in screen space.
_VEC_VS = """
#version 330
uniform sampler2D xf; uniform sampler2D xf_next; uniform mat4 viewproj;
in vec3 in_pos; in vec3 in_rest; in float in_id;
out vec4 v_c0; out vec4 v_c1; out vec3 v_rest; out float v_depth;
vec3 place(sampler2D x, int id, vec3 p) {
    vec4 r0 = texelFetch(x, ivec2(id, 0), 0); vec4 r1 = texelFetch(x, ivec2(id, 1), 0);
    vec4 r2 = texelFetch(x, ivec2(id, 2), 0); vec3 t = texelFetch(x, ivec2(id, 3), 0).xyz;
    return mat3(vec3(r0.x, r1.x, r2.x), vec3(r0.y, r1.y, r2.y), vec3(r0.z, r1.z, r2.z)) * p + t;
}
void main() {
    int id = int(in_id);
    vec3 w0 = place(xf, id, in_pos);
    v_c0 = viewproj * vec4(w0, 1.0);
    v_c1 = viewproj * vec4(place(xf_next, id, in_pos), 1.0);
    v_rest = in_rest; v_depth = -w0.z;
    gl_Position = v_c0;
}
"""
_VEC_FS = """
#version 330
uniform sampler2D matte; uniform mat4 viewproj; uniform vec2 size;
in vec4 v_c0; in vec4 v_c1; in vec3 v_rest; in float v_depth;
out vec4 o;
void main() {
    vec4 rc = viewproj * vec4(v_rest, 1.0);
    if (texture(matte, rc.xy / rc.w * 0.5 + 0.5).r < 0.5) discard;   // as the beauty does
    // NDC y is up, like Nuke's and Blender's vectors: u right, v up, in pixels.
    vec2 d = (v_c1.xy / v_c1.w - v_c0.xy / v_c0.w) * 0.5 * size;
    o = vec4(d, v_depth, 1.0);
}
"""

_GRIT_VS = """
#version 330
// One screen-space capsule per particle: the streak it draws during this sub-frame.
uniform mat4 viewproj; uniform vec2 size;
in vec2 in_corner;
in vec3 in_p0; in vec3 in_p1; in float in_r; in vec3 in_alb;
out vec3 v_alb; out float v_cov; out vec2 v_uv; out float v_depth;
void main() {
    vec4 c0 = viewproj * vec4(in_p0, 1.0), c1 = viewproj * vec4(in_p1, 1.0);
    vec2 s0 = (c0.xy / c0.w * 0.5 + 0.5) * size, s1 = (c1.xy / c1.w * 0.5 + 0.5) * size;
    float f = 0.5 * size.y * viewproj[1][1];                   // focal length in pixels
    float r_px = in_r * f / max(c0.w, 0.1);
    float w = max(r_px, 0.7);                                  // never thinner than a pixel
    vec2 ax = s1 - s0; float len = length(ax);
    vec2 dir = len > 1e-3 ? ax / len : vec2(1.0, 0.0);
    vec2 nrm = vec2(-dir.y, dir.x);
    float a = in_corner.x * 0.5 + 0.5;
    vec2 s = mix(s0, s1, a) + dir * in_corner.x * w + nrm * in_corner.y * w;
    // Coverage: the particle's own area spread over the streak it sweeps.
    v_cov = clamp(3.14159 * r_px * r_px / ((len + 2.0 * w) * 2.0 * w), 0.0, 1.0);
    v_alb = in_alb; v_uv = in_corner; v_depth = mix(c0.w, c1.w, a);
    vec4 cc = mix(c0, c1, a);
    gl_Position = vec4((s / size * 2.0 - 1.0) * cc.w, cc.z, cc.w);
}
"""
_GRIT_FS = """
#version 330
uniform vec3 sun_dir, sun_col, amb_col;
in vec3 v_alb; in float v_cov; in vec2 v_uv; in float v_depth;
layout(location = 0) out vec4 o_col;
layout(location = 1) out vec4 o_aux;
void main() {
    float edge = 1.0 - smoothstep(0.6, 1.0, abs(v_uv.y));      // soft across the streak
    float a = v_cov * edge;
    if (a < 1e-4) discard;
    // A rough grain lit from all sides: half its surface sees the sun.
    vec3 c = v_alb * (amb_col * 0.8 + sun_col * 0.5 * max(sun_dir.y, 0.2));
    o_col = vec4(c * a, a);
    o_aux = vec4(0.0, a, v_depth * a, a);
}
"""

_QUAD_VS = """
#version 330
in vec2 in_xy; out vec2 v_uv;
void main() { v_uv = in_xy * 0.5 + 0.5; gl_Position = vec4(in_xy, 0.0, 1.0); }
"""
_ACCUM_FS = """
#version 330
uniform sampler2D a; uniform sampler2D b; in vec2 v_uv;
layout(location = 0) out vec4 o0; layout(location = 1) out vec4 o1;
void main() { o0 = texture(a, v_uv); o1 = texture(b, v_uv); }
"""
_GROUND_FS = """
#version 330
uniform sampler2DShadow shadow; uniform sampler2DShadow shadow_rest;
uniform sampler2D occ;          // top-down contact occupancy of moving pieces
uniform mat4 lightproj; uniform vec4 intr; uniform vec2 size; uniform float eye, sun_share;
uniform vec4 occ_rect;          // x0, z0, x1, z1 of the occupancy map
in vec2 v_uv; out vec4 o;
float pcf(sampler2DShadow s, vec3 l) {
    // Four bilinear (hardware-filtered 2x2) taps a texel and a half apart: a 5x5-texel
    // soft penumbra for the price of four lookups.
    float v = 0.0;
    for (int i = 0; i < 2; i++) for (int j = 0; j < 2; j++)
        v += texture(s, vec3(l.xy + (vec2(i, j) - 0.5) * 1.5 / 1536.0, l.z - 0.002));
    return v / 4.0;
}
void main() {
    vec2 px = vec2(gl_FragCoord.x, size.y - gl_FragCoord.y);
    vec3 d = vec3((px.x - intr.z) / intr.x, -(px.y - intr.w) / intr.y, -1.0);
    if (d.y >= -1e-5) { o = vec4(1.0); return; }
    float t = eye / -d.y;
    vec3 p = vec3(0.0, eye, 0.0) + t * d;
    vec4 lc = lightproj * vec4(p, 1.0);
    vec3 l = lc.xyz / lc.w * 0.5 + 0.5;
    float extra = max(pcf(shadow_rest, l) - pcf(shadow, l), 0.0);
    vec2 ouv = (p.xz - occ_rect.xy) / (occ_rect.zw - occ_rect.xy);
    float ao = (ouv.x > 0.0 && ouv.x < 1.0 && ouv.y > 0.0 && ouv.y < 1.0) ? texture(occ, ouv).r : 0.0;
    o = vec4(vec3((1.0 - sun_share * extra) * (1.0 - 0.55 * ao)), 1.0);
}
"""


def _perspective(cam: Camera) -> np.ndarray:
    W, H, f = cam.width, cam.height, cam.f_px
    P = np.zeros((4, 4))
    P[0, 0] = 2 * f / W
    P[0, 2] = -(2 * cam.cx / W - 1)
    P[1, 1] = 2 * f / H
    P[1, 2] = -(1 - 2 * cam.cy / H)
    P[2, 2] = -(FAR + NEAR) / (FAR - NEAR)
    P[2, 3] = -2 * FAR * NEAR / (FAR - NEAR)
    P[3, 2] = -1
    V = np.eye(4)
    V[1, 3] = -cam.eye_m
    return P @ V


def _light_matrix(sun_dir, center, radius) -> np.ndarray:
    f = -sun_dir / np.linalg.norm(sun_dir)
    up = np.array([0, 1.0, 0]) if abs(f[1]) < 0.95 else np.array([0, 0, 1.0])
    s = np.cross(f, up)
    s /= np.linalg.norm(s)
    u = np.cross(s, f)
    eye = center - f * radius * 2
    V = np.eye(4)
    V[0, :3], V[1, :3], V[2, :3] = s, u, -f
    V[:3, 3] = -V[:3, :3] @ eye
    P = np.eye(4)
    P[0, 0] = P[1, 1] = 1 / radius
    # Orthographic: eye-space depth 0..-4r maps to NDC -1..1.
    P[2, 2] = -2.0 / (4 * radius)
    P[2, 3] = -1.0
    return P @ V


class DebrisRenderer:
    def __init__(self, fr: Fracture, cam: Camera, plate_lin: np.ndarray, matte: np.ndarray, light: Lighting,
                 face_albedo, rough: float, rest_pos: np.ndarray, rest_quat: np.ndarray):
        try:
            import moderngl
        except ImportError as e:  # pragma: no cover - a core dependency
            raise DerrumbeError(f"moderngl is not installed: {e}") from None
        try:
            self.ctx = moderngl.create_standalone_context(backend="egl")
        except Exception as e:
            raise DerrumbeError(
                f"cannot open an OpenGL context through EGL ({e}); install libegl1 and libgl1-mesa-dri") from None
        ctx = self.ctx
        self.mgl = moderngl
        self.cam, self.fr, self.light = cam, fr, light
        W, H = cam.width, cam.height
        self.size = (W, H)
        self.n = fr.n
        self.rest_pos, self.rest_quat = rest_pos, rest_quat

        # Geometry: one flat-shaded triangle soup for all pieces.
        chunks = []
        for i in range(fr.n):
            v, t, k = fr.verts[i], fr.tris[i], fr.kinds[i]
            a, b, c = v[t[:, 0]], v[t[:, 1]], v[t[:, 2]]
            nrm = np.cross(b - a, c - a)
            nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-9)
            tri = np.stack([a, b, c], 1).reshape(-1, 3)
            rest = tri + fr.centroid[i]
            nn = np.repeat(nrm, 3, 0)
            kk = np.repeat(k, 3)[:, None].astype(np.float32)
            ii = np.full((len(tri), 1), i, np.float32)
            chunks.append(np.hstack([tri, nn, rest, kk, ii]).astype(np.float32))
        data = np.vstack(chunks)
        self.vbo = ctx.buffer(data.tobytes())
        # Which fragment each triangle belongs to and which one covers it: the faces
        # inside an intact body are not drawn (see _visible_triangles).
        self.tri_frag = np.concatenate([np.full(len(t), i) for i, t in enumerate(fr.tris)])
        nb = fr.face_neighbour or [np.full(len(t), -1) for t in fr.tris]
        self.tri_nb = np.concatenate(nb).astype(np.int64)
        self.n_tri = len(self.tri_frag)
        self.ibo = ctx.buffer(reserve=self.n_tri * 3 * 4)
        self.n_idx = 0
        self.prog = ctx.program(vertex_shader=_PIECE_VS, fragment_shader=_PIECE_FS)
        self.vao = ctx.vertex_array(self.prog, [(self.vbo, "3f 3f 3f 1f 1f", "in_pos", "in_nrm", "in_rest",
                                                 "in_kind", "in_id")], index_buffer=self.ibo, index_element_size=4)
        self.dprog = ctx.program(vertex_shader=_DEPTH_VS, fragment_shader=_DEPTH_FS)
        self.dvao = ctx.vertex_array(self.dprog, [(self.vbo, "3f 28x 1f", "in_pos", "in_id")],
                                     index_buffer=self.ibo, index_element_size=4)
        self.xf = ctx.texture((fr.n, 4), 4, dtype="f4")
        self.xf.filter = (moderngl.NEAREST, moderngl.NEAREST)
        self.xf_next = ctx.texture((fr.n, 4), 4, dtype="f4")
        self.xf_next.filter = (moderngl.NEAREST, moderngl.NEAREST)
        self._vec = None        # built on first use: only --exr needs it

        self.plate_tex = ctx.texture((W, H), 3, np.ascontiguousarray(plate_lin[::-1]).astype(np.float32).tobytes(),
                                     dtype="f4")
        self.plate_tex.repeat_x = self.plate_tex.repeat_y = True
        self.plate_tex.filter = (moderngl.LINEAR, moderngl.LINEAR)
        self.matte_tex = ctx.texture((W, H), 1, np.ascontiguousarray(matte[::-1]).astype(np.float32).tobytes(),
                                     dtype="f4")
        self.matte_tex.repeat_x = self.matte_tex.repeat_y = False
        self.matte_tex.filter = (moderngl.NEAREST, moderngl.NEAREST)

        self.viewproj = _perspective(cam).astype(np.float32)
        lo, hi = fr.box_lo, fr.box_hi
        center = np.array([(lo[0] + hi[0]) / 2, hi[1] * 0.3, (lo[2] + hi[2]) / 2 + 8])
        radius = float(max(hi[0] - lo[0], hi[1], hi[2] - lo[2]) * 1.6 + 20)
        self.lightproj = _light_matrix(light.sun_dir, center, radius).astype(np.float32)
        self.shadow = ctx.depth_texture((1536, 1536))
        self.shadow.compare_func = "<="
        self.shadow.filter = (moderngl.LINEAR, moderngl.LINEAR)
        self.shadow_fbo = ctx.framebuffer(color_attachments=[ctx.texture((1536, 1536), 1, dtype="f1")],
                                          depth_attachment=self.shadow)
        self.shadow_rest = ctx.depth_texture((1536, 1536))
        self.shadow_rest.compare_func = "<="
        self.shadow_rest.filter = (moderngl.LINEAR, moderngl.LINEAR)
        rest_fbo = ctx.framebuffer(color_attachments=[ctx.texture((1536, 1536), 1, dtype="f1")],
                                   depth_attachment=self.shadow_rest)
        self._upload(rest_pos, rest_quat, np.zeros(fr.n, bool))
        self._visible_triangles(rest_pos, rest_quat, np.ones(fr.n, bool))
        self._shadow_pass(rest_fbo, moved_only=False)

        self.sub_col = ctx.texture((W, H), 4, dtype="f4")
        self.sub_aux = ctx.texture((W, H), 4, dtype="f4")
        self.sub_fbo = ctx.framebuffer(color_attachments=[self.sub_col, self.sub_aux],
                                       depth_attachment=ctx.depth_renderbuffer((W, H)))
        self.acc_col = ctx.texture((W, H), 4, dtype="f4")
        self.acc_aux = ctx.texture((W, H), 4, dtype="f4")
        self.acc_fbo = ctx.framebuffer(color_attachments=[self.acc_col, self.acc_aux])
        self.grit_prog = ctx.program(vertex_shader=_GRIT_VS, fragment_shader=_GRIT_FS)
        self.grit_corners = ctx.buffer(np.array([-1, -1, 1, -1, -1, 1, 1, 1], np.float32).tobytes())
        self.grit_vbo = None
        g = self.grit_prog
        g["viewproj"].write(self.viewproj.T.tobytes())
        g["size"].value = (float(W), float(H))
        g["sun_dir"].value = tuple(map(float, light.sun_dir))
        g["sun_col"].value = tuple(map(float, light.sun_col))
        g["amb_col"].value = tuple(map(float, light.amb_col))
        quad = ctx.buffer(np.array([-1, -1, 3, -1, -1, 3], np.float32).tobytes())
        self.accum_prog = ctx.program(vertex_shader=_QUAD_VS, fragment_shader=_ACCUM_FS)
        self.accum_vao = ctx.vertex_array(self.accum_prog, [(quad, "2f", "in_xy")])
        self.ground_prog = ctx.program(vertex_shader=_QUAD_VS, fragment_shader=_GROUND_FS)
        self.ground_vao = ctx.vertex_array(self.ground_prog, [(quad, "2f", "in_xy")])
        self.ground_tex = ctx.texture((W, H), 1, dtype="f4")
        self.ground_fbo = ctx.framebuffer(color_attachments=[self.ground_tex])
        # Contact occlusion map: a top-down footprint of the moving pieces near the ground.
        self.occ_rect = np.array([lo[0] - 30, lo[2] - 10, hi[0] + 30, hi[2] + 45], np.float32)
        self.occ_res = 256
        self.occ_tex = ctx.texture((self.occ_res, self.occ_res), 1, dtype="f4")
        self.occ_tex.filter = (moderngl.LINEAR, moderngl.LINEAR)
        self.occ_fbo = ctx.framebuffer(color_attachments=[ctx.texture((self.occ_res, self.occ_res), 1, dtype="f1")],
                                       depth_attachment=ctx.depth_renderbuffer((self.occ_res, self.occ_res)))
        x0, z0, x1, z1 = self.occ_rect
        O = np.eye(4)
        # Look straight down: world x -> u, world z -> v, heights 0..2.5 m kept.
        O[0] = [2 / (x1 - x0), 0, 0, -(x1 + x0) / (x1 - x0)]
        O[1] = [0, 0, 2 / (z1 - z0), -(z1 + z0) / (z1 - z0)]
        O[2] = [0, 2 / 2.5, 0, -1]
        self.occproj = O.astype(np.float32)

        p = self.prog
        p["plate"].value, p["matte"].value, p["shadow"].value, p["xf"].value = 0, 1, 2, 3
        p["viewproj"].write(self.viewproj.T.tobytes())
        p["lightproj"].write(self.lightproj.T.tobytes())
        p["sun_dir"].value = tuple(map(float, light.sun_dir))
        p["sun_col"].value = tuple(map(float, light.sun_col))
        p["amb_col"].value = tuple(map(float, light.amb_col))
        p["facade_albedo"].value = tuple(map(float, light.facade_albedo))
        p["face_albedo"].value = tuple(map(float, face_albedo))
        p["rough"].value = float(rough)
        p["static_pass"].value = 0
        g = self.ground_prog
        g["shadow"].value, g["shadow_rest"].value, g["occ"].value = 0, 1, 2
        g["lightproj"].write(self.lightproj.T.tobytes())
        g["intr"].value = (cam.f_px, cam.f_px, cam.cx, cam.cy)
        g["size"].value = (float(W), float(H))
        g["eye"].value = float(cam.eye_m)
        sun_irr = float(np.mean(light.sun_col) * max(light.sun_dir[1], 0.05))
        g["sun_share"].value = sun_irr / (sun_irr + float(np.mean(light.amb_col)))
        g["occ_rect"].value = tuple(map(float, self.occ_rect))

    def vectors(self, sim: SimResult, t: float, dt: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Forward motion (pixels to the frame at t + dt, u right, v up), the nearest
        piece's view depth (m) and its coverage at time t, unblurred: the EXR's vector
        and Z data, which a compositor's vector blur and depth tools expect sharp."""
        ctx, mgl = self.ctx, self.mgl
        W, H = self.size
        if self._vec is None:
            prog = ctx.program(vertex_shader=_VEC_VS, fragment_shader=_VEC_FS)
            prog["xf"].value, prog["xf_next"].value, prog["matte"].value = 0, 1, 2
            prog["viewproj"].write(self.viewproj.T.tobytes())
            prog["size"].value = (float(W), float(H))
            vao = ctx.vertex_array(prog, [(self.vbo, "3f 12x 3f 4x 1f", "in_pos", "in_rest", "in_id")],
                                   index_buffer=self.ibo, index_element_size=4)
            tex = ctx.texture((W, H), 4, dtype="f4")
            fbo = ctx.framebuffer(color_attachments=[tex], depth_attachment=ctx.depth_renderbuffer((W, H)))
            self._vec = (prog, vao, tex, fbo)
        prog, vao, tex, fbo = self._vec
        p1, q1 = sample_pose(sim, t + dt)
        self._upload(p1, q1, np.zeros(self.n, bool), sim.visible(t + dt))
        self.xf.use(0)
        # Copy through the CPU: two small textures (N x 4), cheaper than a second upload path.
        self.xf_next.write(self.xf.read())
        p0, q0 = sample_pose(sim, t)
        self._upload(p0, q0, np.zeros(self.n, bool), sim.visible(t))
        self._visible_triangles(p0, q0, sim.visible(t))
        self._begin(fbo)
        self.xf.use(0)
        self.xf_next.use(1)
        self.matte_tex.use(2)
        self._draw(vao)
        ctx.disable(mgl.DEPTH_TEST)
        o = np.frombuffer(tex.read(), np.float32).reshape(H, W, 4)[::-1]
        return o[..., :2].copy(), o[..., 2].copy(), o[..., 3].copy()

    def _begin(self, fbo):
        """A cleared target for an opaque, depth-tested raster of both faces."""
        fbo.use()
        fbo.clear(0, 0, 0, 0, depth=1.0)
        self.ctx.enable(self.mgl.DEPTH_TEST)
        self.ctx.disable(self.mgl.BLEND)
        self.ctx.disable(self.mgl.CULL_FACE)

    def _visible_triangles(self, pos, quat, visible) -> None:
        """Fills the index buffer with the triangles worth drawing: not those between two
        fragments that still move as one (same rotation, same relative offset as at
        rest), nor those of pulverised fragments."""
        fr = self.fr
        i, j = self.tri_frag, self.tri_nb
        has = j >= 0
        jj = np.where(has, j, i)
        same_q = np.abs((quat[i] * quat[jj]).sum(1)) > 1 - 1e-6
        R = quat_to_mat(quat[i])
        off = np.einsum("nij,nj->ni", R, fr.centroid[jj] - fr.centroid[i])
        same_p = np.linalg.norm(pos[jj] - pos[i] - off, axis=1) < 2e-3
        inner = has & same_q & same_p & visible[jj]
        keep = np.nonzero(~inner & visible[i])[0]
        idx = (3 * keep[:, None] + np.arange(3)).astype(np.uint32).ravel()
        self.n_idx = len(idx)
        if self.n_idx:
            self.ibo.write(idx.tobytes())

    def _draw(self, vao) -> None:
        if self.n_idx:
            vao.render(vertices=self.n_idx)

    def _upload(self, pos, quat, moved, visible=None):
        R = quat_to_mat(quat)
        if visible is not None:
            R = R * visible[:, None, None]        # a pulverised fragment collapses to a point: not drawn
        rows = np.zeros((4, self.n, 4), np.float32)
        rows[0, :, :3] = R[:, 0]
        rows[1, :, :3] = R[:, 1]
        rows[2, :, :3] = R[:, 2]
        rows[0, :, 3] = moved
        rows[3, :, :3] = pos
        self.xf.write(rows.tobytes())

    def _shadow_pass(self, fbo, moved_only: bool):
        ctx = self.ctx
        fbo.use()
        fbo.clear(depth=1.0)
        ctx.enable(self.mgl.DEPTH_TEST)
        ctx.disable(self.mgl.BLEND)
        self.xf.use(0)
        self.dprog["xf"].value = 0
        self.dprog["lightproj"].write(self.lightproj.T.tobytes())
        self.dprog["moved_only"].value = 1.0 if moved_only else 0.0
        self._draw(self.dvao)

    def _grit(self, particles, ta: float, tb: float):
        """Draws the particles' streaks from ta to tb into the bound sub-frame, depth-tested
        against the pieces (which occlude them) but not writing depth."""
        p0, alive0 = particles.at(ta)
        p1, alive1 = particles.at(tb)
        live = alive0 & alive1
        if not live.any():
            return
        data = np.hstack([p0[live], p1[live], particles.radius[live, None], particles.albedo[live]]).astype(np.float32)
        if self.grit_vbo is None or self.grit_vbo.size < data.nbytes:
            if self.grit_vbo is not None:
                self.grit_vao.release()
                self.grit_vbo.release()
            # Sized for every particle at once, so it is made once a shot.
            self.grit_vbo = self.ctx.buffer(reserve=max(particles.n * data.shape[1] * 4, data.nbytes, 1024))
            self.grit_vao = self.ctx.vertex_array(
                self.grit_prog, [(self.grit_corners, "2f", "in_corner"),
                                 (self.grit_vbo, "3f 3f 1f 3f/i", "in_p0", "in_p1", "in_r", "in_alb")])
        self.grit_vbo.write(data.tobytes())
        ctx, mgl = self.ctx, self.mgl
        ctx.enable(mgl.DEPTH_TEST | mgl.BLEND)
        ctx.blend_func = (mgl.ONE, mgl.ONE_MINUS_SRC_ALPHA)
        ctx.depth_mask = False
        self.grit_vao.render(mgl.TRIANGLE_STRIP, instances=int(live.sum()))
        ctx.depth_mask = True
        ctx.disable(mgl.BLEND)

    def render(self, sim: SimResult, t: float, shutter_s: float, max_samples: int, particles=None,
               px_per_sample: float = 3.0) -> FrameLayers:
        ctx, mgl = self.ctx, self.mgl
        W, H = self.size
        # Sub-frames across the shutter: enough that no piece jumps more than ~3 px.
        p0, q0 = sample_pose(sim, t - shutter_s / 2)
        p1, q1 = sample_pose(sim, t + shutter_s / 2)
        pc, qc = sample_pose(sim, t)
        uv0, uv1 = self.cam.project(p0.astype(np.float64)), self.cam.project(p1.astype(np.float64))
        travel = float(np.nanmax(np.linalg.norm(uv1 - uv0, axis=1))) if self.n else 0.0
        samples = int(np.clip(np.ceil(travel / px_per_sample), 1, max_samples))
        moved = self._moved(pc, qc) | self._moved(p0, q0) | self._moved(p1, q1)

        # One shadow map a frame, of the moving pieces only: it shades the debris and the
        # street. (Standing parts no longer shadow falling debris: a cost cut, 2 cores.)
        vis = sim.visible(t)
        self._visible_triangles(pc, qc, vis)
        self._upload(pc, qc, moved, vis)
        self._shadow_pass(self.shadow_fbo, moved_only=True)

        self.acc_fbo.use()
        self.acc_fbo.clear(0, 0, 0, 0)
        for s in range(samples):
            ts = t + shutter_s * ((s + 0.5) / samples - 0.5) if samples > 1 else t
            p, q = sample_pose(sim, ts)
            self._upload(p, q, moved, sim.visible(ts))
            self._begin(self.sub_fbo)
            self.plate_tex.use(0)
            self.matte_tex.use(1)
            self.shadow.use(2)
            self.xf.use(3)
            self._draw(self.vao)
            if particles is not None and particles.n:
                half = shutter_s / samples / 2 if samples > 1 else shutter_s / 2
                self._grit(particles, ts - half, ts + half)
            self.acc_fbo.use()
            ctx.disable(mgl.DEPTH_TEST)
            ctx.enable(mgl.BLEND)
            ctx.blend_func = (mgl.ONE, mgl.ONE)
            self.sub_col.use(0)
            self.sub_aux.use(1)
            self.accum_prog["a"].value, self.accum_prog["b"].value = 0, 1
            self.accum_vao.render()
        ctx.disable(mgl.BLEND)
        col = np.frombuffer(self.acc_col.read(), np.float32).reshape(H, W, 4)[::-1] / samples
        aux = np.frombuffer(self.acc_aux.read(), np.float32).reshape(H, W, 4)[::-1]

        # Static coverage: the pieces still at rest, without the moving ones in front.
        self._upload(pc, qc, moved, vis)
        self._begin(self.sub_fbo)
        self.prog["static_pass"].value = 1
        self.xf.use(3)
        self._draw(self.vao)
        self.prog["static_pass"].value = 0
        static_aux = np.frombuffer(self.sub_aux.read(), np.float32).reshape(H, W, 4)[::-1]
        static, static_z = static_aux[..., 0], static_aux[..., 2]

        # Ground: sun shadow and contact occlusion from the moving pieces at mid-shutter.
        self._begin(self.occ_fbo)
        self.dprog["lightproj"].write(self.occproj.T.tobytes())
        self.dprog["moved_only"].value = 1.0
        self.xf.use(0)
        self._draw(self.dvao)
        occ = np.frombuffer(self.occ_fbo.color_attachments[0].read(), np.uint8).reshape(
            self.occ_res, self.occ_res).astype(np.float32) / 255.0
        sigma = self.occ_res / (self.occ_rect[2] - self.occ_rect[0]) * 1.2   # ~1.2 m penumbra
        occ = np.clip(cv2.GaussianBlur(occ, (0, 0), sigma) * 1.5, 0, 1)
        self.occ_tex.write(occ.astype(np.float32).tobytes())
        self.ground_fbo.use()
        ctx.disable(mgl.DEPTH_TEST)
        self.shadow.use(0)
        self.shadow_rest.use(1)
        self.occ_tex.use(2)
        self.ground_vao.render()
        ground = np.frombuffer(self.ground_tex.read(), np.float32).reshape(H, W)[::-1].copy()
        return FrameLayers(debris=col.copy(), static=static.copy(), ground=ground, samples=samples,
                           depth_sum=aux[..., 2].copy(), depth_n=aux[..., 3].copy(), static_z=static_z.copy())

    def _moved(self, p, q) -> np.ndarray:
        dp = np.linalg.norm(p - self.rest_pos, axis=1)
        dq = 1.0 - np.abs((q * self.rest_quat).sum(1))
        return (dp > 1e-3) | (dq > 1e-7)

    def release(self):
        if self.grit_vbo is not None:
            self.grit_vao.release()
            self.grit_vbo.release()
        self.ctx.release()

