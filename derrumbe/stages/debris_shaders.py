"""GLSL of the debris render (stages/render.py runs them; this file is only the shading).

Conventions shared by every program: a fragment's transform lives in the `xf` texture,
one column a fragment: rows 0-2 are its rotation, row 3 its translation; row 0 .w says it
has moved from rest, row 1 .w that it moves during this frame's shutter, row 3 .w how
long ago it was released (negative: never). Materials are evaluated at the rest position,
so they stick to the piece; the sun's and the ambient's visibility come from a shadow map
of everything and a top-down height map of everything (what is over a point).
"""

# A fragment's rows of the transform texture and its rotation, for every vertex shader.
_XF = """
uniform sampler2D xf;
vec4 xf_row(int id, int r) { return texelFetch(xf, ivec2(id, r), 0); }
mat3 xf_rot(int id) {
    vec4 r0 = xf_row(id, 0), r1 = xf_row(id, 1), r2 = xf_row(id, 2);
    return mat3(vec3(r0.x, r1.x, r2.x), vec3(r0.y, r1.y, r2.y), vec3(r0.z, r1.z, r2.z));
}
"""

PIECE_VS = """
#version 330
""" + _XF + """
uniform mat4 viewproj;
in vec3 in_pos; in vec3 in_nrm; in vec3 in_rest; in float in_kind; in float in_id;
in vec3 in_edge; in float in_elem; in float in_dout; in float in_din;
out vec3 v_rest; out vec3 v_nrm; out vec3 v_world; out vec3 v_edge; out vec2 v_wall;
flat out vec3 v_rnrm; flat out float v_kind; flat out float v_moved; flat out float v_elem; flat out float v_age;
flat out mat3 v_R; flat out float v_blur; flat out float v_loose; flat out float v_id; flat out float v_fade;
void main() {
    int id = int(in_id);
    v_fade = xf_row(id, 4).x;
    vec4 r0 = xf_row(id, 0), r1 = xf_row(id, 1), r2 = xf_row(id, 2), r3 = xf_row(id, 3);
    mat3 R = xf_rot(id);
    vec3 w = R * in_pos + r3.xyz;
    v_world = w; v_rest = in_rest; v_nrm = R * in_nrm; v_rnrm = in_nrm; v_kind = in_kind;
    v_id = in_id; v_moved = r0.w; v_elem = in_elem; v_age = r3.w; v_edge = in_edge; v_wall = vec2(in_dout, in_din); v_R = R;
    // Row 2 .w: the fragment's blur length in pixels, negative (-1 - length) while it is
    // still bonded to a neighbour that moves with it.
    v_blur = r2.w >= 0.0 ? r2.w : -1.0 - r2.w; v_loose = r2.w >= 0.0 ? 1.0 : 0.0;
    gl_Position = viewproj * vec4(w, 1.0);
}
"""

_COMMON = """
uniform sampler3D noise;       // tiling smooth noise: rgb its gradient, a its value (0..1)
uniform sampler2D top;         // top-down: r moved occupancy near the ground, g highest surface (m)
uniform sampler2DShadow shadow, shadow_rest;
uniform mat4 lightproj, topproj;
uniform vec3 sun_dir, sun_col, amb_col, ground_col, cam_pos;
uniform float facade_z;

vec4 nz(vec3 p) { return texture(noise, p) * 2.0 - 1.0; }
float luma(vec3 c) { return dot(c, vec3(0.2126, 0.7152, 0.0722)); }   // Rec.709 weights: a brightness to compare, not a colourimetric Y
float hash3(vec3 p) { p = fract(p * vec3(0.1031, 0.1030, 0.0973)); p += dot(p, p.yxz + 33.33);
                      return fract((p.x + p.y) * p.z); }
// Box-filtered pulse train: the share of [x - w/2, x + w/2] inside pulses [k, k + duty].
float pulses(float x, float duty, float w) {
    w = max(w, 1e-4);
    float a = x - 0.5 * w, b = x + 0.5 * w;
    float Fa = floor(a) * duty + min(fract(a), duty), Fb = floor(b) * duty + min(fract(b), duty);
    return (Fb - Fa) / w;
}
float sun_vis(sampler2DShadow s, vec3 w, vec3 n) {
    vec4 lc = lightproj * vec4(w + n * 0.12, 1.0);
    vec3 l = lc.xyz / lc.w * 0.5 + 0.5;
    return texture(s, vec3(l.xy, l.z - 0.0015));
}
// Sky over a point: open, or under something (a slab, the storeys above, rubble). A covered
// point sees the sky only through the building's open front: rooms darken with depth.
float sky_access(vec3 w, vec3 n) {
    // Looked up a little out along the normal: a wall's sky is what is over the space in
    // front of it, not its own top.
    vec2 uv = (topproj * vec4(w + n * 0.35, 1.0)).xy * 0.5 + 0.5;
    if (uv.x < 0.0 || uv.y < 0.0 || uv.x > 1.0 || uv.y > 1.0) return 1.0;
    float above = texture(top, uv).g - w.y;
    // Rubble around a point (the mean top over a couple of metres) standing higher than
    // it: a crevice of the pile, which sees little sky.
    float crevice = clamp((textureLod(top, uv, 2.0).g - w.y) / 1.2, 0.0, 1.0);
    float covered = smoothstep(0.05, 0.4, above);
    float d = max(facade_z - w.z, 0.0);
    float room = 0.15 + 0.85 / (1.0 + 0.25 * d * d);
    float pile = max(0.25, exp(-1.1 * above));
    if (d > 0.5) return mix(1.0, room * exp(-0.05 * min(above, 8.0)), covered);   // in the building
    return mix(1.0, pile, covered) * (1.0 - 0.55 * crevice);                        // out on the pile
}
// The sky's ambient (a wall sees 0.6 of it, a face turned down a fifth) through av, the
// sun through sv, and the street's own light on what faces down through gv: a face turned
// to the street receives about its radiance as the plate shows it (its albedo times its
// light). Without it a falling slab's underside in a sunny plate was lit 1:17 against its
// top, and under the sky test's "covered" a tenth of that: a black slab falling (img_190
// at 60 %); with the street's light it is about 1:5, as sunlit undersides are.
vec3 light(vec3 n, float sv, float av, float gv) {
    return amb_col * (0.6 + 0.4 * n.y) * av + ground_col * max(-n.y, 0.0) * gv + sun_col * max(dot(n, sun_dir), 0.0) * sv;
}
vec3 light(vec3 n, float sv, float av) { return light(n, sv, av, av); }
"""

_PIECE_HEAD = """
#version 330
uniform sampler2D plate;       // the facade's texture: the plate, filled out past the building's matte
uniform vec2 plate_lo, plate_span;  // where the frame lies in it (plate_texture.Atlas)
uniform sampler2D matte;
uniform mat4 viewproj;
uniform vec3 face_albedo, facade_albedo, plaster, brick, mortar, dust_col, roof_col, sky_zen, sky_hor;
uniform float rough, sun_strength;
uniform vec3 front_light;      // what lit the facade in the plate (a front face at rest, in the open)
in vec3 v_rest; in vec3 v_nrm; in vec3 v_world; in vec3 v_edge; in vec2 v_wall;
flat in vec3 v_rnrm; flat in float v_kind; flat in float v_moved; flat in float v_elem; flat in float v_age;
flat in mat3 v_R; flat in float v_blur; flat in float v_loose; flat in float v_id; flat in float v_fade;
layout(location = 0) out vec4 o_col;
layout(location = 1) out vec4 o_aux;
""" + _COMMON + """
const int FRONT = 0, SIDE = 1, BREAK = 2, INSIDE = 3, GLASSF = 4, REVEAL = 5;
// Where a fallen wall's plaster has come away: the noise's value over this (about a
// quarter of an inner face), more within 40 cm of its broken edges.
const float SPALL = 0.16, SPALL_EDGE = 0.3;
// The sky a break's face sees at a crack's mouth (as much as the open wall's face, for its
// orientation), falling off with depth into the wall over a fresh crack's width (a slot
// of width w seen from depth d into it: about 1 - d / sqrt(d^2 + w^2)).
const float MOUTH_SKY = 1.0, MOUTH_M = 0.08;
const int E_FACADE = 0, E_BACK = 1, E_SIDE = 2, E_SLAB = 3, E_CROSS = 4, E_GLASS = 5;
// The building's outline is its matte extruded straight back through the proxy; what
// moves is hidden behind what is still.
// Fragments wholly inside the matte are drawn by a build without it (CARVE undefined):
// a shader that may discard loses llvmpipe's early depth test.
bool carved() {
#ifdef CARVE
    vec4 rc = viewproj * vec4(v_rest.xy, min(v_rest.z, facade_z), 1.0);
    return texture(matte, rc.xy / rc.w * 0.5 + 0.5).r < 0.5;
#else
    return false;
#endif
}
"""

# Opaque pieces. llvmpipe runs every branch of a shader for a block of pixels that
# diverges, so this is one flow: one material evaluation, one plate fetch, one lighting.
PIECE_FS = _PIECE_HEAD + """
float detail;
// Broken concrete: a cement matrix with aggregate, rough at two scales.
vec3 concrete(vec3 p, float fine, vec4 a, vec4 c, out float rel, out vec3 g) {
    rel = 0.65 * a.w + 0.35 * c.w;
    g = a.xyz * 0.6 + c.xyz * 1.2 * fine;
    float stones = smoothstep(0.15, 0.5, c.w) * fine;
    vec3 col = face_albedo * (1.0 + 0.22 * a.w + 0.1 * c.w);
    col = mix(col, col * vec3(0.72, 0.74, 0.78), 0.7 * stones);
    return mix(col, col * vec3(1.12, 1.06, 0.96), 0.5 * smoothstep(0.3, 0.7, -c.w) * fine);
}
// Brickwork broken through: courses of 65 mm bricks and 10 mm joints, stretchers along the
// wall and headers across it, laid by hand (each course a little off the line), each brick
// its own colour. A break runs through the joints and across the bricks: every brick shows
// its own broken facet, proud or sunk, some are gone from their sockets, and the joints are
// crumbled lime, set back in shadow. Drawn as a flat grid of pale joints, broken walls
// read as cardboard printed with tiles (judged on every masonry plate).
vec3 bricks(vec3 p, int elem, float px, vec4 a, out float rel, out vec3 g) {
    vec2 la = (elem == E_SIDE || elem == E_CROSS) ? p.zx : p.xz;
    float cy = p.y / 0.075;
    float course = floor(cy);
    float off = mod(course, 2.0) * 0.5 + 0.12 * (hash3(vec3(course, 7.1, float(elem))) - 0.5);
    float u = la.x / 0.26 + off, w = la.y / 0.13 + off;
    float m = 1.0 - (1.0 - pulses(cy, 0.13, px / 0.075)) * (1.0 - pulses(u, 0.04, px / 0.26))
                  * (1.0 - pulses(w, 0.08, px / 0.13));
    vec3 cell = vec3(floor(u), course, floor(w));
    float hb = hash3(cell);
    float vary = 1.0 - smoothstep(0.4, 1.2, px / 0.075);
    // Old brick under render, dulled by lime and the render's own dust, and tinted by it:
    // at full chroma a green or yellow building's pile came down pink (img_181, img_270),
    // and at 0.15 of the render's hue the piles still read as pink-brown under a grey
    // facade (img_140) and grey under a cream one (img_100, judge 21).
    vec3 dull = mix(brick, vec3(luma(brick)), 0.2);
    dull = mix(dull, facade_albedo * (luma(dull) / max(luma(facade_albedo), 1e-4)), 0.4);
    vec3 bc = dull * mix(1.0, 0.68 + 0.64 * hb, vary);
    bc = mix(bc, bc * vec3(0.58, 0.55, 0.6), step(0.86, hb) * vary);     // over-fired, dark bricks
    vec3 facet = vec3(hash3(cell + 1.3), hash3(cell + 2.9), hash3(cell + 4.7)) - 0.5;
    float gone = step(0.93, hash3(cell + 8.3)) * vary;          // a brick pulled out: its socket
    float proud = (hash3(cell + 6.1) - 0.5) * vary;
    rel = 0.6 * a.w - 1.1 * m + 0.6 * proud - 1.2 * gone;
    g = a.xyz * 0.6 + 1.6 * facet * vary * (1.0 - m);
    // Joints crumbled back into shadow, not a grid of pale lines (a broken wall drawn with
    // crisp light joints read as brick wallpaper printed on the lumps, img_190 at 100 %).
    vec3 joint = mix(mortar, brick, 0.45) * 0.7;
    vec3 col = mix(bc * (1.0 + 0.12 * a.w), joint * (1.0 + 0.1 * a.w), m);
    col = mix(col, mix(joint, bc, 0.5) * 0.55, gone);
    // Mortar and plaster still stuck over the broken bricks in patches: the coursing shows
    // only between them.
    float smear = smoothstep(0.1, 0.5, nz(p * 1.1 + 3.1).w + 0.2 * a.w);
    rel = mix(rel, 0.3 * a.w - 0.2, smear);
    g = mix(g, a.xyz * 0.8, smear);
    return mix(col, mortar * (0.8 + 0.25 * a.w), 0.55 * smear);
}
// A timber floor broken through, as old masonry buildings have them: boards on top, joists
// on edge every 0.6 m with clay-and-sand pugging between them, lath and plaster under
// them. d: depth below the slab's top and above its underside (m). Drawn as concrete, the
// floors of brick buildings came down as pale grey plates (img_190, img_100).
vec3 timber(vec3 p, vec2 d, float px, vec4 a, out float rel, out vec3 g) {
    vec3 wood = vec3(0.22, 0.13, 0.07) * (0.8 + 0.4 * hash3(vec3(floor(p.x / 0.15), floor(p.z / 2.0), 3.3)));
    vec3 pug = vec3(0.08, 0.07, 0.06) * (1.0 + 0.25 * a.w);        // pugging, and the voids in it
    float joist = pulses(p.x / 0.6 + 0.3, 0.12, px / 0.6);
    float board = 1.0 - smoothstep(0.03 - 0.5 * px, 0.03 + 0.5 * px, d.x);
    float ceil = 1.0 - smoothstep(0.025 - 0.5 * px, 0.025 + 0.5 * px, d.y);
    vec3 col = mix(pug, wood, joist);
    col = mix(mix(col, wood * 1.1, board), plaster, ceil);
    rel = mix(-0.5 + 0.6 * a.w, 0.2 * a.w, max(max(joist, board), ceil));
    g = a.xyz * mix(1.2, 0.4, max(joist, board));
    return col;
}
vec3 perturb(vec3 n, vec3 g_rest, float k) {
    vec3 g = v_R * g_rest;
    return normalize(n - k * (g - n * dot(g, n)));
}
// The plate magnified past its own pixels (a piece come near the lens shows a few of the
// photo's pixels over many of the frame's): a B-spline through them, not bilinear facets
// (each photo pixel a creased tile), in four bilinear taps.
vec3 plate_smooth(vec2 uv) {
    vec2 ts = vec2(textureSize(plate, 0));
    vec2 st = uv * ts - 0.5, i = floor(st), f = st - i;
    vec2 w0 = (1.0 - f) * (1.0 - f) * (1.0 - f) / 6.0, w3 = f * f * f / 6.0;
    vec2 w1 = (3.0 * f * f * f - 6.0 * f * f + 4.0) / 6.0, w2 = 1.0 - w0 - w1 - w3;
    vec2 g0 = w0 + w1, g1 = w2 + w3;
    vec2 p0 = (i - 0.5 + w1 / g0) / ts, p1 = (i + 1.5 + w3 / g1) / ts;
    return g0.y * (g0.x * texture(plate, p0).rgb + g1.x * texture(plate, vec2(p1.x, p0.y)).rgb)
         + g1.y * (g0.x * texture(plate, vec2(p0.x, p1.y)).rgb + g1.x * texture(plate, p1).rgb);
}
void main() {
    // Per-pixel footprint, taken before any branch (derivatives need all four pixels).
    float px = max(length(fwidth(v_rest)), 1e-4);
    vec4 pc = viewproj * vec4(v_rest, 1.0);
    vec2 ruv = pc.xy / pc.w * 0.5 + 0.5;
    vec2 puv = (ruv - plate_lo) / plate_span;           // the plate, continued past the frame
    vec2 texels = fwidth(puv) * vec2(textureSize(plate, 0));
    float magnified = clamp(1.0 - 1.5 * max(texels.x, texels.y), 0.0, 1.0);   // 0: a photo pixel a frame pixel or less
    if (carved()) discard;
    detail = 1.0 - smoothstep(6.0, 14.0, v_blur);
    float depth = -v_world.z;
    int kind = int(v_kind + 0.5);
    int elem = int(v_elem + 0.5);
    vec3 n = normalize(v_nrm);
    // Seen through a carve: the solid's inside stands for its missing cut face.
    if (!gl_FrontFacing) { n = -n; kind = BREAK; }
    // A window's reveals and its pane in the frame are part of the photo's surface: they
    // are relit as the wall's front turns, not by their own normals (a head seen from
    // below, relit as a face turned to the ground, drew black lines along the tops of
    // the openings of img_270's falling block).
    bool seen = kind == REVEAL || kind == GLASSF;
    vec3 front = normalize(v_R * vec3(0.0, 0.0, 1.0));
    // A crack's lip in the facade looks out through the crack's mouth: it sees what the
    // wall's front sees (the street and the sky before the wall), not the whole sky its
    // own normal faces. Lit by its own normal, every lip facing up shone as a white line
    // drawn along the crack (img_270's shop front as its base was blown).
    float mouth = (kind == BREAK && elem == E_FACADE) ? exp(-v_wall.x / MOUTH_M) : 0.0;
    vec3 n_lit = seen ? front : normalize(mix(n, front, mouth));
    float sv = sun_vis(shadow, v_world, n_lit);
#ifndef MOVING
    if (v_moved < 0.5 && (kind == FRONT || kind == REVEAL || kind == GLASSF)) {
        // At rest the plate shows what the camera saw, bit for bit, unless something that
        // moves now shades it: then it is drawn, darkened by that shadow.
        float was = sv < 0.98 && sun_strength > 0.05 ? sun_vis(shadow_rest, v_world, n_lit) : sv;
        if (sv > was - 0.02) { o_col = vec4(0.0); o_aux = vec4(1.0, 0.0, depth, 1.0); return; }
        o_col = vec4(texture(plate, puv).rgb * light(n_lit, sv, 1.0) / max(light(n_lit, was, 1.0), vec3(1e-4)), 1.0);
        o_aux = vec4(0.0, 1.0, depth, 1.0);
        return;
    }
#endif
    // (the sky a reveal sees in its opening is in the photo already, as is its shadow)
    float av = seen ? 1.0 : sky_access(v_world, n);
    // A break's face near the wall's outer face sees the sky and the street in front of
    // the wall through the crack's mouth (the top-down map sees only the wall over it):
    // a crack's lips show lit, fresh material and it darkens only with depth, not a
    // black line drawn along it.
    if (kind == BREAK && elem != E_SLAB) av = max(av, MOUTH_SKY * exp(-v_wall.x / MOUTH_M));
    float e = min(min(v_edge.x, v_edge.y), v_edge.z);
    // One material evaluation: what a break through this element shows.
    vec4 a = nz(v_rest * 0.6);
    float fine = detail * (1.0 - smoothstep(0.012, 0.04, px));
    vec4 c4 = fine > 0.0 ? nz(v_rest * 4.0) : vec4(0.0);
    float rel; vec3 g;
#ifdef MASONRY
    vec3 mat = elem != E_SLAB ? bricks(v_rest, elem, px, a, rel, g) : timber(v_rest, v_wall, px, a, rel, g);
#else
    vec3 mat = concrete(v_rest, fine, a, c4, rel, g);
#endif
    vec3 core = mat;          // the wall's own material, under its skins
    // The render or plaster skin of the wall's faces along a break's edges.
    float skin = 0.02 + 0.012 * a.w;
    float outer = elem == E_SLAB ? 0.0 : 1.0 - smoothstep(skin - 0.5 * px, skin + 0.5 * px, v_wall.x);
    float inner = elem == E_SLAB ? 0.0 : 1.0 - smoothstep(skin - 0.5 * px, skin + 0.5 * px, v_wall.y);
    mat = mix(mix(mat, facade_albedo, outer), plaster, inner);
    float room = hash3(floor(v_rest * vec3(0.16, 0.3, 0.16)));
    vec3 base; float k_relief; float fresh = 0.0;
    if (kind == BREAK) {
        base = mat; k_relief = rough; fresh = 1.0;
    } else if (kind == INSIDE) {
        // Plastered walls in their room's colour, floor finishes, white ceilings.
        vec3 wall = plaster * (vec3(1.0, 0.97, 0.92) + 0.08 * vec3(room, 0.5, 1.0 - room));   // warm whites and creams (a blue-heavy tint drew lilac cards)
        base = v_rnrm.y > 0.7 ? vec3(0.30, 0.22, 0.15) * (0.8 + 0.4 * room) : v_rnrm.y < -0.7 ? plaster * 1.08 : wall;
        // An old room's surfaces: grimy and stained in patches, the paint flaking (clean
        // plaster drawn flat read as untextured lilac card once its piece fell, img_190).
        float stain = smoothstep(0.05, 0.55, nz(v_rest * 0.9 + 7.0).w);
        base *= (0.78 + 0.12 * a.w) * (1.0 - 0.22 * stain);
        float off = 0.0, lip = 0.0;
        if (v_rnrm.y <= 0.7 && v_moved > 0.5) {
            // A fallen wall's plaster knocked off in patches where it was struck, and along
            // its broken edges: the brick or block behind it shows, set back by the
            // plaster's thickness, in the shadow of the plaster's broken lip. Drawn whole,
            // those inner faces filled the foreground as flat grey cards.
            // (ragged to the centimetre: one or two octaves drew smooth camouflage blots)
            float s = nz(v_rest * 0.35 + 5.0).w + 0.45 * nz(v_rest * 1.3 + 2.0).w + 0.3 * nz(v_rest.zxy * 4.1 + 1.0).w
                    + SPALL_EDGE * v_loose * (1.0 - smoothstep(0.05, 0.4, e));
            float w = max(0.02, 0.6 * px);
            off = smoothstep(SPALL - w, SPALL + w, s);
            lip = off * (1.0 - smoothstep(SPALL, SPALL + 0.04 + w, s));
        }
        // Plaster undulates; it is not shaded by the bricks' facets under it (which drew a
        // grid of tiles over the inner faces of the walls fallen face-up, img_190 at 80 %).
        // Where it is gone, the material's own relief (rel, g) shows.
        base = mix(base, core * (1.0 - 0.45 * lip), off);
        rel = mix(0.3 * a.w, rel - 0.6 * lip, off);
        g = mix(a.xyz * 0.6, g, off);
        k_relief = mix(0.35, rough, off);
        fresh = off;
    } else {
        // A weathered outer face: the wall's render, a roof's covering.
        base = (elem == E_SLAB && v_rnrm.y > 0.5) ? roof_col * (1.0 + 0.25 * a.w) : facade_albedo * (0.9 + 0.15 * a.w);
        k_relief = 0.2; rel = 0.3 * a.w; g = a.xyz * 0.6;
    }
    // Every lump's broken faces their own: a little lighter or darker, warmer or greyer,
    // dirtier. A skin (the plaster of a room, a wall's render) runs on across the pieces
    // a wall broke into: tinted piece by piece, the inner face of a wall lying in a few
    // pieces was a patchwork of lighter and darker polygons (img_190 at 100 %).
    float hid = hash3(vec3(v_id, v_id * 0.37, 1.7));
    float lump = kind == BREAK ? 1.0 : fresh;
    base *= mix(vec3(0.97), (0.82 + 0.3 * hid) * mix(vec3(1.0), vec3(1.05, 1.0, 0.93), hash3(vec3(v_id * 0.11, 3.1, v_id))), lump);
    vec3 np = perturb(n_lit, g, k_relief);
    float occ = mix(0.6, 1.0, smoothstep(-0.7, 0.5, rel));
    // What has moved sees the street under it (a ceiling still in its room sees the room's floor).
    float gv = v_moved > 0.5 ? 1.0 : av;
    vec3 l_np = light(np, sv, av * occ, gv * occ), l_n = light(n_lit, sv, av, gv);
    vec3 photo = texture(plate, puv).rgb;
    // (only where the photo shows: a face the camera saw, or a crack's mouth)
    if (magnified > 0.0 && (kind == FRONT || kind == GLASSF || kind == REVEAL || mouth > 0.0)) {
        // ...and the surface's own grain where the photo has none to give: the render's
        // pores and specks at a few centimetres, as close to the lens the eye expects them.
        vec3 near = plate_smooth(puv) * (1.0 + magnified * (0.12 * c4.w + 0.08 * nz(v_rest * 13.0).w));
        photo = mix(photo, near, min(1.0, 4.0 * magnified));
    }
    vec3 col = base * l_np;
    if (kind == FRONT || kind == GLASSF || kind == REVEAL) {
        // The photo's own surface (a pane still in its frame and the reveals around it
        // included: the camera saw them), relit by how far the face has turned from its rest
        // orientation; where the piece has broken free, its edges chipped to the
        // material beneath (not along seams it still shares with a neighbour).
        float chip = v_loose * 0.045 * clamp(a.w * 2.2 + 0.3, 0.0, 1.0);
        // A chip narrower than a pixel only tints it (no band along every edge).
        float k = (1.0 - smoothstep(chip - px, chip + px, e)) * min(1.0, chip / px);
        vec3 was = seen ? light(vec3(0.0, 0.0, 1.0), sun_vis(shadow_rest, v_rest, vec3(0.0, 0.0, 1.0)), 1.0)
                        : front_light;
        col = mix(photo * clamp(l_n / was, 0.1, 2.5), mat * l_np * 1.05, k);
        // A reveal is a sliver of the photo, seen nearly edge-on: once its piece turns, that
        // sliver would be stretched across the whole face. It shows the wall's own render
        // instead, lit as it now faces (the tumbling curtain-wall chunks of img_263 were
        // streaked with stretched glass).
        if (kind == REVEAL) col = mix(col, base * l_np, smoothstep(0.02, 0.1, 1.0 - front.z));
        fresh = 0.4 * k;
    } else {
        // A fresh break's edges are sharp and catch the light; a little, not an outline.
        col *= 1.0 + 0.12 * fresh * (1.0 - smoothstep(0.0, max(0.012, px), e)) * min(1.0, 0.012 / px);
        // At a crack's mouth the lip is exposed as the wall's face is: the photo's own
        // exposure of that wall, in the broken material's colour relative to the wall's.
        // Shaded from the plate's estimated light instead, lips in a wall the photo shows
        // in shade shone as white lines along every crack (img_270's blown shop front).
        col = mix(col, photo * clamp(l_np / front_light, 0.1, 2.5) * clamp(mat / max(facade_albedo, vec3(1e-3)), 0.5, 1.6),
                  mouth);
    }
    // No broken or inner face outshines the wall's own exposure in the photo by more than
    // fresh material lit from above can (about 1.5x): the sky map cannot see a crack a few
    // centimetres wide, and lips lit as if open to the sky drew white lines along cracks.
    if (kind != FRONT && !seen) {
        float cap = 1.5 * luma(facade_albedo * front_light);
        col *= cap / max(cap, luma(col));
    }
    // Dust: what the collapse threw settles on everything that moved, more on what faces
    // up, and freshly broken faces carry their own powder from the start.
    float age = v_age < 0.0 ? 0.0 : clamp(v_age / 2.5, 0.0, 1.0);
    // (a piece lying in the pile a few seconds is grey with it, its paint and signs
    // showing only faintly: the judge saw the rubble as cubes printed with the shop sign)
    // A pile in footage of a collapse is grey with it: every lump under the same powder,
    // in drifts (thicker in the hollows of each face's relief, thinner on its ridges),
    // its own colour showing through only faintly (lumps each their own clean colour read
    // as a heap of crystals, img_140).
    float drift = 0.75 + 0.5 * smoothstep(-0.4, 0.4, -rel);
    // In patches half a metre across, thin on what does not face up: the powder evened
    // every lump to one pale grey, and the pile read as foam blocks printed with faint
    // brick (img_181); footage shows brick, plaster and paint through it.
    float patchy = 0.7 + 0.45 * smoothstep(-0.35, 0.45, nz(v_rest * 1.9).w);
    // (at up to 0.85 of the dust's colour every pile came out one grey whatever the building:
    // img_100's yellow, img_181's green; footage shows the paint and brick through it)
    float dust = (0.12 * fresh + 0.45 * age) * (0.4 + 0.6 * max(n.y, 0.0)) * drift * patchy;
    col = mix(col, dust_col * l_n, clamp(dust, 0.0, 0.4));
    // Grit strewn over whatever faces up once it has fallen: specks of rubble and their
    // shadows, at a few centimetres (faded where a pixel covers more than that).
    float strewn = (v_age > 0.3 ? 1.0 : 0.0) * smoothstep(0.3, 0.8, n.y) * (1.0 - smoothstep(0.02, 0.06, px));
    // (on the aggregate's 25 cm noise the specks read as terrazzo blotches on every lump;
    // from one octave of the noise alone they were dots of one size at one spacing, a
    // slab lying near the lens read as perforated pegboard, img_263 at 60-100 %: two
    // octaves, turned against each other, strewn in drifts half a metre across)
    float grit = 0.0, heap = 0.0;
    if (strewn > 0.0) {
        grit = 0.65 * nz(v_rest * 11.0).w + 0.5 * nz(v_rest.zxy * 26.0 + vec3(0.31, 0.17, 0.73)).w;
        heap = smoothstep(-0.3, 0.5, nz(v_rest.yzx * 1.7 + vec3(0.5, 0.2, 0.9)).w);
    }
    float speck = smoothstep(0.3, 0.7, grit) - 0.6 * smoothstep(0.3, 0.7, -grit);
    col *= 1.0 - 0.35 * strewn * speck * heap;
    o_col = vec4(max(col, vec3(0.0)), 1.0);
    o_aux = vec4(0.0, 1.0, depth, 1.0);
#ifdef MOVING
    // Dissolving at the lens (render.lens_fade): premultiplied, over what is behind it.
    o_col *= v_fade; o_aux *= v_fade;
#endif
}
"""

# Panes that have moved: glass, blended over what is behind (premultiplied), reflecting
# the plate's sky and street by Fresnel's law and flashing the sun.
GLASS_FS = _PIECE_HEAD + """
// A pane that has left its frame is breaking up: annealed window glass breaks into
// shards a hand across (SHARD_M), which fall out of what holds them over the first
// second, and the cracks between those still held catch the light. A whole translucent
// pane flying read as a ghost of the piece beside it (img_190 at 60 %) and a falling
// slab as see-through (img_263, img_181 at 40 %).
const float SHARD_M = 0.14, CRACK_M = 0.006;    // a crack's band of crushed glass
float shards(out float gone) {
    vec2 q = v_rest.xy / SHARD_M + vec2(0.37 * v_rest.z, 0.0);
    vec2 c = floor(q), f = fract(q);
    float d1 = 8.0, d2 = 8.0; vec2 best = c;
    for (int j = -1; j <= 1; j++) for (int i = -1; i <= 1; i++) {
        vec2 o = vec2(float(i), float(j));
        vec2 r = o + vec2(hash3(vec3(c + o, 1.7)), hash3(vec3(c + o, 5.3))) - f;
        float d = dot(r, r);
        if (d < d1) { d2 = d1; d1 = d; best = c + o; } else if (d < d2) { d2 = d; }
    }
    float held = v_age < 0.0 ? 1.0 : clamp(1.0 - v_age / 1.0, 0.15, 1.0);
    gone = hash3(vec3(best, 9.1)) > held ? 1.0 : 0.0;
    // On a crack: its band, spread over the pixel where the pixel is wider than it (a far
    // pane does not turn into a white sheet of cracks).
    float w = max(fwidth(q.x) + fwidth(q.y), 1e-4), band = CRACK_M / SHARD_M;
    return (1.0 - smoothstep(0.0, max(w, band), sqrt(d2) - sqrt(d1))) * min(1.0, band / w);
}
void main() {
    if (carved()) discard;
    float depth = -v_world.z;
    vec3 n = normalize(v_nrm);
    vec3 v = normalize(v_world - cam_pos);
    if (dot(n, v) > 0.0) n = -n;
    float sv = sun_vis(shadow, v_world, n);
    vec3 r = reflect(v, n);
    if (int(v_kind + 0.5) != GLASSF) {
        // A shard's edge: dark green glass seen end on.
        vec3 c = vec3(0.05, 0.08, 0.07) * light(n, sv, 1.0) + 0.3 * sun_col * pow(max(dot(r, sun_dir), 0.0), 40.0) * sv;
        o_col = vec4(c, 1.0) * v_fade; o_aux = vec4(0.0, 1.0, depth, 1.0) * v_fade;
        return;
    }
    float gone;
    float crack = shards(gone);
    if (gone > 0.5) discard;
    float ci = clamp(-dot(v, n), 0.0, 1.0);
    float F = 0.04 + 0.96 * pow(1.0 - ci, 5.0);
    vec3 env = r.y > 0.0 ? mix(sky_hor, sky_zen, sqrt(r.y)) : mix(sky_hor * 0.5, ground_col, min(1.0, 3.0 * sqrt(-r.y)));
    float glint = pow(max(dot(r, sun_dir), 0.0), 600.0) * 80.0 * sv;
    float al = F + (1.0 - F) * 0.12;
    vec3 c = F * (env + sun_col * glint) + (1.0 - F) * 0.12 * vec3(0.03, 0.05, 0.045) * amb_col;
    // A crack is crushed glass: it scatters what lights it, white and nearly opaque.
    c = mix(c, 0.8 * light(n, sv, 1.0) * vec3(0.85, 0.9, 0.88), crack);
    al = mix(al, 0.85, crack);
    o_col = vec4(c, al) * v_fade;
    o_aux = vec4(0.0, al, depth * al, al) * v_fade;
}
"""


def variant(src: str, moving: bool, carve: bool, masonry: bool = False) -> str:
    """A build of a piece shader: for the still or the moving layer, carving or not, for
    brick walls or concrete ones."""
    defs = ("#define MOVING 1\n" if moving else "") + ("#define CARVE 1\n" if carve else "") + \
        ("#define MASONRY 1\n" if masonry else "")
    return src.replace("#version 330\n", "#version 330\n" + defs, 1)


# The heap (stages/heap.py): a height field over the street, drawn with what stands. Its
# surface is rubble at the frame's scale: lumps of the building's material from a few
# centimetres to half a metre, each its own shade, dark crevices between them, all
# under the dust that settled; where it thins out it breaks into scattered lumps rather
# than ending on a contour line.
HEAP_VS = """
#version 330
uniform sampler2D heap;
uniform sampler3D noise;
uniform vec2 heap_lo;
uniform float heap_cell;
uniform mat4 viewproj;
in vec2 in_ij;
out vec3 v_world; out vec2 v_uv; out float v_h;
void main() {
    float h = texelFetch(heap, ivec2(in_ij), 0).r;
    vec3 w = vec3(heap_lo.x + (in_ij.x + 0.5) * heap_cell, h, heap_lo.y + (in_ij.y + 0.5) * heap_cell);
    // Its outline against the sky is lumpy too: big lumps stand proud of the slope.
    w.y += 0.25 * (texture(noise, w * 0.9).a - 0.45) * smoothstep(0.05, 0.8, h);
    v_world = w; v_h = h;
    v_uv = (in_ij + 0.5) / vec2(textureSize(heap, 0));
    gl_Position = viewproj * vec4(w, 1.0);
}
"""

HEAP_FS = """
#version 330
uniform sampler2D heap;
uniform float heap_cell, masonry;
uniform vec3 face_albedo, brick, plaster, dust_col;
in vec3 v_world; in vec2 v_uv; in float v_h;
layout(location = 0) out vec4 o_col;
layout(location = 1) out vec4 o_aux;
""" + _COMMON + """
void main() {
    vec3 p = v_world;
    float px = max(length(fwidth(p)), 1e-4);
    vec4 a = nz(p * 0.8), b = nz(p * 3.0);
    float fine = 1.0 - smoothstep(0.02, 0.08, px);
    vec4 c = fine > 0.0 ? nz(p * 11.0) : vec4(0.0);
    if (v_h < 0.04 + 0.14 * (0.5 + 0.5 * b.w)) discard;
    vec2 tx = 1.0 / vec2(textureSize(heap, 0));
    float hx = texture(heap, v_uv + vec2(tx.x, 0.0)).r - texture(heap, v_uv - vec2(tx.x, 0.0)).r;
    float hz = texture(heap, v_uv + vec2(0.0, tx.y)).r - texture(heap, v_uv - vec2(0.0, tx.y)).r;
    vec3 n = normalize(vec3(-hx / (2.0 * heap_cell), 1.0, -hz / (2.0 * heap_cell)));
    vec3 g = 0.5 * a.xyz + 0.9 * b.xyz + 0.8 * fine * c.xyz;
    n = normalize(n - 0.8 * (g - n * dot(g, n)));
    // Lumps about 15 cm across, their borders wandering: warped by the noise over a few
    // lumps (0.35 of one, as before, cut the slope facing the lens by level and upright
    // planes, and its pale plaster lumps stood as white squares on img_140's pile).
    vec3 cell = floor(p / 0.15 + 1.2 * b.xyz + 1.5 * a.xyz);
    float hid = hash3(cell);
    vec3 mat = masonry > 0.5 ? mix(brick, face_albedo, step(0.55, hid)) : face_albedo;
    mat = mix(mat, plaster, step(0.9, hid));
    mat *= 0.7 + 0.55 * hash3(cell + 3.1);
    float rel = 0.5 * a.w + 0.35 * b.w + 0.15 * c.w;
    float occ = mix(0.3, 1.0, smoothstep(-0.6, 0.5, rel));
    // The dust that came down on it: more on what faces up, at most as much as on the
    // pieces (at up to 0.6 of the dust's colour the heap read as snow on the demo's
    // street and as grey gravel under img_100's cream walls).
    mat = mix(mat, dust_col, 0.2 + 0.2 * max(n.y, 0.0));
    float sv = sun_vis(shadow, p, n);
    // The heap is the pile's top where it shows: the top-down map (pieces only) counts
    // the pieces standing round it as a roof; the heap between them is a shallow hollow.
    float av = max(sky_access(p, n), 0.55);
    vec3 col = mat * light(n, sv, av * occ);
    o_col = vec4(max(col, vec3(0.0)), 1.0);
    o_aux = vec4(0.0, 1.0, -p.z, 1.0);
}
"""


# The heap's lumps (heap.Chips), instanced: an icosahedron per lump, its corners pushed in
# and out and the whole flattened and turned by the lump's seed, standing on the heap's
# height at its spot (with the heap's own lumpy offset) and half sunk in the fines. A lump
# waits under the street (clipped) until the heap beneath it has built to its show_h.
CHIP_VS = """
#version 330
uniform sampler2D heap;
uniform sampler3D noise;
uniform vec2 heap_lo;
uniform float heap_cell;
uniform mat4 viewproj;
in vec3 in_pos; in vec4 in_chip; in float in_seed;
out vec3 v_world; flat out float v_seed;
float h1(float x) { return fract(sin(x * 12.9898 + 78.233) * 43758.5453); }
void main() {
    v_seed = in_seed;
    vec2 uv = (in_chip.xy - heap_lo) / heap_cell / vec2(textureSize(heap, 0));
    float h = textureLod(heap, uv, 0.0).r;
    if (h < in_chip.w) { v_world = vec3(0.0); gl_Position = vec4(0.0, 0.0, 2.0, 1.0); return; }
    vec3 base = vec3(in_chip.x, h, in_chip.y);
    base.y += 0.25 * (texture(noise, base * 0.9).a - 0.45) * smoothstep(0.05, 0.8, h);
    float s = in_seed;
    float j = 0.55 + 0.45 * h1(s * 1.7 + float(gl_VertexID) * 3.1);
    vec3 v = in_pos * j * vec3(1.0, 0.45 + 0.4 * h1(s + 0.3), 0.6 + 0.4 * h1(s + 0.7));
    float a = 6.2832 * h1(s + 0.11), b = 0.7 * (h1(s + 0.5) - 0.5);
    mat3 ry = mat3(cos(a), 0.0, -sin(a), 0.0, 1.0, 0.0, sin(a), 0.0, cos(a));
    mat3 rx = mat3(1.0, 0.0, 0.0, 0.0, cos(b), sin(b), 0.0, -sin(b), cos(b));
    vec3 w = base + ry * rx * v * in_chip.z;
    w.y -= 0.35 * in_chip.z * h1(s + 0.9);
    v_world = w;
    gl_Position = viewproj * vec4(w, 1.0);
}
"""

CHIP_FS = """
#version 330
uniform float masonry;
uniform vec3 face_albedo, brick, plaster, dust_col;
in vec3 v_world; flat in float v_seed;
layout(location = 0) out vec4 o_col;
layout(location = 1) out vec4 o_aux;
""" + _COMMON + """
void main() {
    vec3 p = v_world;
    // Faceted: each face of the broken lump takes the light on its own.
    vec3 n = normalize(cross(dFdx(p), dFdy(p)));
    if (dot(n, cam_pos - p) < 0.0) n = -n;
    float k = hash3(vec3(v_seed, 1.7, 3.1)), k2 = hash3(vec3(v_seed, 5.3, 0.7));
    vec3 mat = masonry > 0.5 ? (k < 0.45 ? brick : (k < 0.8 ? face_albedo : plaster))
                             : (k < 0.85 ? face_albedo : plaster);
    mat *= 0.6 + 0.6 * k2;
    mat = mix(mat, dust_col, 0.25 + 0.35 * max(n.y, 0.0));
    float sv = sun_vis(shadow, p, n);
    float av = max(sky_access(p, n), 0.6);
    o_col = vec4(max(mat * light(n, sv, av), vec3(0.0)), 1.0);
    o_aux = vec4(0.0, 1.0, -p.z, 1.0);
}
"""

DEPTH_VS = """
#version 330
""" + _XF + """
uniform mat4 lightproj;
in vec3 in_pos; in float in_id; in float in_elem;
void main() {
    int id = int(in_id);
    gl_Position = lightproj * vec4(xf_rot(id) * in_pos + xf_row(id, 3).xyz, 1.0);
    if (in_elem > 4.5) gl_Position = vec4(0.0, 0.0, 2.0, 1.0);   // panes throw almost no shadow
}
"""
DEPTH_FS = """
#version 330
out vec4 o;
void main() { o = vec4(1.0); }
"""
# Top-down, blended with MAX: r where a moved piece lies near the street (contact
# occlusion), g the highest surface over each spot (sky access).
TOP_VS = """
#version 330
""" + _XF + """
uniform mat4 topproj;
in vec3 in_pos; in float in_id; in float in_elem;
out float v_h; flat out float v_moved;
void main() {
    int id = int(in_id);
    vec3 w = xf_rot(id) * in_pos + xf_row(id, 3).xyz;
    v_h = w.y; v_moved = xf_row(id, 0).w;
    gl_Position = vec4((topproj * vec4(w, 1.0)).xy, 0.0, 1.0);
    if (in_elem > 4.5) gl_Position = vec4(0.0, 0.0, 2.0, 1.0);
}
"""
TOP_FS = """
#version 330
in float v_h; flat in float v_moved; out vec4 o;
void main() { o = vec4(v_moved > 0.5 && v_h < 2.5 ? 1.0 : 0.0, max(v_h, 0.0), 0.0, 0.0); }
"""

# Reinforcing bars: screen-space ribbons at least a pixel wide, their coverage the bar's
# real width over that; rusty steel, half in the sun.
BAR_VS = """
#version 330
""" + _XF + """
uniform mat4 viewproj; uniform vec2 size; uniform float radius;
uniform int layer;
in vec2 in_corner; in vec3 in_a; in vec3 in_b; in float in_id;
out float v_cov; out float v_across; out float v_depth; out vec3 v_world; out vec3 v_dir;
void main() {
    int id = int(in_id);
    vec4 r1 = xf_row(id, 1), r2 = xf_row(id, 2), r3 = xf_row(id, 3);
    mat3 R = xf_rot(id);
    vec3 a = R * in_a + r3.xyz, b = R * in_b + r3.xyz;
    vec4 ca = viewproj * vec4(a, 1.0), cb = viewproj * vec4(b, 1.0);
    vec2 sa = (ca.xy / ca.w * 0.5 + 0.5) * size, sb = (cb.xy / cb.w * 0.5 + 0.5) * size;
    float t = in_corner.x * 0.5 + 0.5;
    float f = 0.5 * size.y * viewproj[1][1];
    float w_px = radius * f / max(mix(ca.w, cb.w, t), 0.1);
    float half_w = max(w_px, 0.6);
    vec2 d = sb - sa; float len = length(d);
    vec2 dir = len > 1e-3 ? d / len : vec2(1.0, 0.0);
    vec2 s = mix(sa, sb, t) + vec2(-dir.y, dir.x) * in_corner.y * half_w;
    vec4 cc = mix(ca, cb, t);
    v_cov = clamp(w_px / half_w, 0.0, 1.0); v_across = in_corner.y; v_depth = cc.w;
    v_world = mix(a, b, t); v_dir = normalize(b - a + 1e-6);
    gl_Position = vec4((s / size * 2.0 - 1.0) * cc.w, cc.z, cc.w);
    // Only out of a fragment that has broken free (row 2 .w >= 0): while it is bonded, a
    // bar runs on into its neighbour's concrete, hidden or not.
    if ((layer == 0) == (r1.w > 0.5) || dot(R[0], R[0]) < 0.5 || r2.w < 0.0) gl_Position = vec4(0.0, 0.0, 2.0, 1.0);
}
"""
BAR_FS = """
#version 330
uniform int layer;
uniform vec3 sun_dir, sun_col, amb_col;
in float v_cov; in float v_across; in float v_depth; in vec3 v_world; in vec3 v_dir;
layout(location = 0) out vec4 o_col;
layout(location = 1) out vec4 o_aux;
void main() {
    float a = v_cov * (1.0 - smoothstep(0.5, 1.0, abs(v_across)));
    if (a < 1e-3) discard;
    // A cylinder: the share of its surface facing the sun.
    float s = sqrt(max(0.0, 1.0 - dot(v_dir, sun_dir) * dot(v_dir, sun_dir)));
    // Steel gone brown with rust: dark, a little warm, a faint sheen along the bar.
    vec3 c = vec3(0.075, 0.055, 0.045) * (amb_col * 0.7 + sun_col * 0.4 * s) + vec3(0.02) * sun_col * s;
    o_col = vec4(c * a, a);
    o_aux = vec4(0.0, a, v_depth * a, a);
}
"""

GRIT_VS = """
#version 330
// One screen-space capsule per particle: the streak it draws during this sub-frame.
uniform mat4 viewproj; uniform vec2 size;
in vec2 in_corner;
in vec3 in_p0; in vec3 in_p1; in float in_r; in vec3 in_alb;
out vec3 v_alb; out float v_cov; out vec2 v_q; out float v_depth;
flat out float v_half; flat out float v_w;
// A grain nearer the lens than this is not drawn: a chip of a few centimetres passing
// within a metre and a half would fill a quarter of the frame as a blurred blot, and a
// camera that close to a collapse would be behind a shield anyway.
const float NEAR_M = 1.5;
void main() {
    vec4 c0 = viewproj * vec4(in_p0, 1.0), c1 = viewproj * vec4(in_p1, 1.0);
    vec2 s0 = (c0.xy / c0.w * 0.5 + 0.5) * size, s1 = (c1.xy / c1.w * 0.5 + 0.5) * size;
    float f = 0.5 * size.y * viewproj[1][1];                   // focal length in pixels
    float r_px = in_r * f / max(c0.w, 0.1);
    // Drawn at no less than half a pixel's radius, with an edge a pixel and a half wide
    // centred on that radius (so the soft edge neither adds nor loses coverage).
    float rr = max(r_px, 0.5), soft = 0.7, w = rr + soft;
    vec2 ax = s1 - s0; float len = length(ax);
    vec2 dir = len > 1e-3 ? ax / len : vec2(1.0, 0.0);
    vec2 nrm = vec2(-dir.y, dir.x);
    float a = in_corner.x * 0.5 + 0.5;
    vec2 s = mix(s0, s1, a) + dir * in_corner.x * w + nrm * in_corner.y * w;
    // Coverage: the particle's own area spread over the capsule it sweeps.
    v_cov = clamp(3.14159 * r_px * r_px / (2.0 * rr * len + 3.14159 * rr * rr), 0.0, 1.0);
    // Where this corner lies from the streak's middle, in pixels along and across it:
    // the fragment shader rounds the ends (a grain sweeps a capsule, not a box).
    v_q = vec2((a - 0.5) * len + in_corner.x * w, in_corner.y * w);
    v_half = 0.5 * len; v_w = rr;
    v_alb = in_alb; v_depth = mix(c0.w, c1.w, a);
    vec4 cc = mix(c0, c1, a);
    gl_Position = vec4((s / size * 2.0 - 1.0) * cc.w, cc.z, cc.w);
    if (min(c0.w, c1.w) < NEAR_M) gl_Position = vec4(0.0, 0.0, 2.0, 1.0);   // clipped
}
"""
GRIT_FS = """
#version 330
uniform vec3 sun_dir, sun_col, amb_col;
in vec3 v_alb; in float v_cov; in vec2 v_q; in float v_depth;
flat in float v_half; flat in float v_w;
layout(location = 0) out vec4 o_col;
layout(location = 1) out vec4 o_aux;
void main() {
    float d = length(vec2(max(abs(v_q.x) - v_half, 0.0), v_q.y));
    float edge = 1.0 - smoothstep(v_w - 0.7, v_w + 0.7, d);    // soft across the streak and round at its ends
    float a = v_cov * edge;
    if (a < 1e-4) discard;
    // A rough grain lit from all sides: half its surface sees the sun.
    vec3 c = v_alb * (amb_col * 0.8 + sun_col * 0.5 * max(sun_dir.y, 0.2));
    o_col = vec4(c * a, a);
    o_aux = vec4(0.0, a, v_depth * a, a);
}
"""

QUAD_VS = """
#version 330
in vec2 in_xy; out vec2 v_uv;
void main() { v_uv = in_xy * 0.5 + 0.5; gl_Position = vec4(in_xy, 0.0, 1.0); }
"""
ACCUM_FS = """
#version 330
uniform sampler2D a; uniform sampler2D b; in vec2 v_uv;
layout(location = 0) out vec4 o0; layout(location = 1) out vec4 o1;
void main() { o0 = texture(a, v_uv); o1 = texture(b, v_uv); }
"""
# The still layer, drawn once, shows wherever the moving pieces of each sub-frame did not:
# sum(moving) + (samples - sum(moving coverage)) * still, over the samples.
COMBINE_FS = """
#version 330
uniform sampler2D acc_col, acc_aux, still_col, still_aux; uniform float samples;
in vec2 v_uv;
layout(location = 0) out vec4 o0; layout(location = 1) out vec4 o1; layout(location = 2) out float o2;
void main() {
    ivec2 p = ivec2(gl_FragCoord.xy);
    vec4 ac = texelFetch(acc_col, p, 0), aa = texelFetch(acc_aux, p, 0);
    vec4 sc = texelFetch(still_col, p, 0), sa = texelFetch(still_aux, p, 0);
    float free = samples - aa.y;
    o0 = (ac + free * sc) / samples;
    o1 = vec4(sa.x, aa.y + free * sa.y, aa.z + free * sa.z, aa.w + free * sa.w);
    // The still layer's own depth (static_z): where the dust is split at standing walls.
    o2 = sa.w > 1e-6 ? sa.z / sa.w : 0.0;
}
"""
GROUND_FS = """
#version 330
uniform sampler2DShadow shadow; uniform sampler2DShadow shadow_rest;
uniform sampler2D top;
uniform mat4 lightproj, topproj; uniform vec4 intr; uniform vec2 size; uniform float eye, sun_share;
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
    // Only shadow the plate did not already have (the building's own is in the photo).
    float extra = max(pcf(shadow_rest, l) - pcf(shadow, l), 0.0);
    vec2 uv = (topproj * vec4(p, 1.0)).xy * 0.5 + 0.5;
    float ao = (uv.x > 0.0 && uv.x < 1.0 && uv.y > 0.0 && uv.y < 1.0) ? textureLod(top, uv, 2.0).r : 0.0;
    ao = clamp(ao * 1.6, 0.0, 1.0);
    o = vec4(vec3((1.0 - sun_share * extra) * (1.0 - 0.55 * ao)), 1.0);
}
"""

# Forward motion vectors and depth at the frame's own time, for the EXR: each fragment
# knows where its point of the piece is now (xf) and one frame later (xf_next); both are
# interpolated in clip space and divided per fragment, so the vector is exact for that
# point, not interpolated across the triangle in screen space.
VEC_VS = """
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
VEC_FS = """
#version 330
uniform sampler2D matte; uniform mat4 viewproj; uniform vec2 size; uniform float facade_z;
in vec4 v_c0; in vec4 v_c1; in vec3 v_rest; in float v_depth;
out vec4 o;
void main() {
    vec4 rc = viewproj * vec4(v_rest.xy, min(v_rest.z, facade_z), 1.0);
    if (texture(matte, rc.xy / rc.w * 0.5 + 0.5).r < 0.5) discard;   // as the beauty does
    // NDC y is up, like Nuke's and Blender's vectors: u right, v up, in pixels.
    vec2 d = (v_c1.xy / v_c1.w - v_c0.xy / v_c0.w) * 0.5 * size;
    o = vec4(d, v_depth, 1.0);
}
"""
