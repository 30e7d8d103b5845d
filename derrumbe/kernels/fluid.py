"""Numba kernels of the dust solver: a 3D stable-fluids grid (Stam 1999, Fedkiw 2001).

Layout: a MAC grid of n cells of size h. Scalars live at cell centres, arrays indexed
[k, j, i] = [z, y, x] so they upload to an OpenGL 3D texture without a transpose.
Face velocities: u (nz, ny, nx+1) on x-faces, v (nz, ny+1, nx) on y-faces, w (nz+1,
ny, nx) on z-faces. Positions inside a kernel are in cell units from the grid origin
(cell (i, j, k) spans [i, i+1] x [j, j+1] x [k, k+1]).

Boundaries: the ground (y = 0) is a wall; the other five sides are open (zero pressure
on the boundary face, air and dust flow out, ambient air with no dust flows in).

The pressure projection is exact and direct: with those boundaries the discrete Laplacian
of a box is diagonal in a sine basis across the open axes (DST-II) and a quarter-wave
cosine basis up from the ground (DCT-IV), so a projection is six real FFTs and a divide
(scipy.fft), instead of tens of relaxation sweeps that leave divergence behind.
The dust and the other carried quantities move by a conservative finite-volume scheme
(MUSCL fluxes with a van Leer limiter, one axis at a time): what leaves one cell enters
its neighbour, so mass is conserved to rounding without any rescaling.

Every kernel writes each output cell from one thread and reads only its inputs, so the
results do not depend on the thread count: same input, same bits.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_OPTS = dict(cache=True, fastmath=False, nogil=True)


@njit(inline="always", **_OPTS)
def _sample(f, x, y, z, zero_outside):
    """Trilinear sample of f at index-space (x, y, z) (f[k, j, i] sits at (i, j, k)).
    Outside the array: the nearest edge value, or 0 beyond half a cell when zero_outside."""
    nz, ny, nx = f.shape
    if zero_outside:
        if x < -0.5 or y < -0.5 or z < -0.5 or x > nx - 0.5 or y > ny - 0.5 or z > nz - 0.5:
            return 0.0
    x = min(max(x, 0.0), nx - 1.0)
    y = min(max(y, 0.0), ny - 1.0)
    z = min(max(z, 0.0), nz - 1.0)
    i0 = min(int(x), max(nx - 2, 0))
    j0 = min(int(y), max(ny - 2, 0))
    k0 = min(int(z), max(nz - 2, 0))
    i1 = min(i0 + 1, nx - 1)
    j1 = min(j0 + 1, ny - 1)
    k1 = min(k0 + 1, nz - 1)
    fx, fy, fz = x - i0, y - j0, z - k0
    c00 = f[k0, j0, i0] * (1 - fx) + f[k0, j0, i1] * fx
    c01 = f[k0, j1, i0] * (1 - fx) + f[k0, j1, i1] * fx
    c10 = f[k1, j0, i0] * (1 - fx) + f[k1, j0, i1] * fx
    c11 = f[k1, j1, i0] * (1 - fx) + f[k1, j1, i1] * fx
    return (c00 * (1 - fy) + c01 * fy) * (1 - fz) + (c10 * (1 - fy) + c11 * fy) * fz


@njit(inline="always", **_OPTS)
def _velocity(u, v, w, x, y, z):
    return (_sample(u, x, y - 0.5, z - 0.5, False),
            _sample(v, x - 0.5, y, z - 0.5, False),
            _sample(w, x - 0.5, y - 0.5, z, False))


@njit(inline="always", **_OPTS)
def _backtrace(u, v, w, x, y, z, dt_h):
    """Where the fluid at (x, y, z) was dt ago (midpoint rule), in cell units."""
    a, b, c = _velocity(u, v, w, x, y, z)
    a, b, c = _velocity(u, v, w, x - 0.5 * dt_h * a, y - 0.5 * dt_h * b, z - 0.5 * dt_h * c)
    return x - dt_h * a, y - dt_h * b, z - dt_h * c


@njit(parallel=True, **_OPTS)
def advect_scalars(fields, out, u, v, w, dt_h, zero_outside):
    """Semi-Lagrangian advection of stacked cell-centred fields (m, nz, ny, nx)."""
    m, nz, ny, nx = fields.shape
    for k_ in prange(nz):
        k = np.int64(k_)
        for j in range(ny):
            for i in range(nx):
                x, y, z = _backtrace(u, v, w, i + 0.5, j + 0.5, k + 0.5, dt_h)
                for c in range(m):
                    out[c, k, j, i] = _sample(fields[c], x - 0.5, y - 0.5, z - 0.5, zero_outside[c])


@njit(inline="always", **_OPTS)
def _sample_limited(f, lim, x, y, z):
    """Trilinear sample of f, clamped to the range of lim's eight surrounding values
    (the BFECC limiter: the correction may sharpen, never overshoot)."""
    nz, ny, nx = f.shape
    x = min(max(x, 0.0), nx - 1.0)
    y = min(max(y, 0.0), ny - 1.0)
    z = min(max(z, 0.0), nz - 1.0)
    i0 = min(int(x), max(nx - 2, 0))
    j0 = min(int(y), max(ny - 2, 0))
    k0 = min(int(z), max(nz - 2, 0))
    i1, j1, k1 = min(i0 + 1, nx - 1), min(j0 + 1, ny - 1), min(k0 + 1, nz - 1)
    lo = lim[k0, j0, i0]
    hi = lo
    for kk in (k0, k1):
        for jj in (j0, j1):
            for ii in (i0, i1):
                a = lim[kk, jj, ii]
                lo = min(lo, a)
                hi = max(hi, a)
    v = _sample(f, x, y, z, False)
    return min(max(v, lo), hi)


@njit(parallel=True, **_OPTS)
def advect_faces(su, sv, sw, u, v, w, u2, v2, w2, dt_h, lu, lv, lw, limit):
    """Semi-Lagrangian advection of the face fields (su, sv, sw) by the velocity (u, v, w);
    with `limit`, samples are clamped to the range of (lu, lv, lw) around the departure
    point."""
    nz, ny, nx = u.shape[0], u.shape[1], v.shape[2]
    for k_ in prange(nz + 1):
        k = np.int64(k_)
        for j in range(ny + 1):
            for i in range(nx + 1):
                if k < nz and j < ny:
                    x, y, z = _backtrace(u, v, w, i, j + 0.5, k + 0.5, dt_h)
                    if limit:
                        u2[k, j, i] = _sample_limited(su, lu, x, y - 0.5, z - 0.5)
                    else:
                        u2[k, j, i] = _sample(su, x, y - 0.5, z - 0.5, False)
                if k < nz and i < nx:
                    x, y, z = _backtrace(u, v, w, i + 0.5, j, k + 0.5, dt_h)
                    if limit:
                        v2[k, j, i] = _sample_limited(sv, lv, x - 0.5, y, z - 0.5)
                    else:
                        v2[k, j, i] = _sample(sv, x - 0.5, y, z - 0.5, False)
                if j < ny and i < nx:
                    x, y, z = _backtrace(u, v, w, i + 0.5, j + 0.5, k, dt_h)
                    if limit:
                        w2[k, j, i] = _sample_limited(sw, lw, x - 0.5, y - 0.5, z)
                    else:
                        w2[k, j, i] = _sample(sw, x - 0.5, y - 0.5, z, False)
    # The ground is a wall.
    for k_ in prange(nz):
        k = np.int64(k_)
        for i in range(nx):
            v2[k, 0, i] = 0.0


def advect_velocity(u, v, w, u2, v2, w2, dt_h, tmp):
    """Self-advection of the velocity with BFECC (Kim et al. 2005): forward, back, and
    forward again from a field corrected by half the round trip's error. The plain
    semi-Lagrangian step loses much of a jet's momentum to numerical diffusion on a
    coarse grid; this keeps the dust front moving. tmp: two triples of face arrays."""
    (a_u, a_v, a_w), (b_u, b_v, b_w) = tmp
    advect_faces(u, v, w, u, v, w, a_u, a_v, a_w, dt_h, u, v, w, False)
    advect_faces(a_u, a_v, a_w, u, v, w, b_u, b_v, b_w, -dt_h, u, v, w, False)
    b_u[:] = 1.5 * u - 0.5 * b_u
    b_v[:] = 1.5 * v - 0.5 * b_v
    b_w[:] = 1.5 * w - 0.5 * b_w
    advect_faces(b_u, b_v, b_w, u, v, w, u2, v2, w2, dt_h, u, v, w, True)


@njit(parallel=True, **_OPTS)
def buoyancy(v, q, dt, g_per_gm3, g_per_k):
    """Boussinesq buoyancy on the vertical faces: dust-laden air (q[0] fine dust and q[1]
    coarse load, g/m^3) is heavier than clear air, g' = g (rho_c - rho_a) / rho_a, so it
    slumps and spreads as a gravity current; warm air (q[2], kelvin above ambient) rises,
    g' = g dT / T."""
    nz, ny1, nx = v.shape
    ny = ny1 - 1
    for k_ in prange(nz):
        k = np.int64(k_)
        for j in range(1, ny):
            for i in range(nx):
                rho = 0.5 * (q[0, k, j - 1, i] + q[0, k, j, i] + q[1, k, j - 1, i] + q[1, k, j, i])
                t = 0.5 * (q[2, k, j - 1, i] + q[2, k, j, i])
                v[k, j, i] += dt * (g_per_k * t - g_per_gm3 * rho)


@njit(parallel=True, **_OPTS)
def cell_velocity(u, v, w, out):
    nz, ny, nx = out.shape[1:]
    for k_ in prange(nz):
        k = np.int64(k_)
        for j in range(ny):
            for i in range(nx):
                out[0, k, j, i] = 0.5 * (u[k, j, i] + u[k, j, i + 1])
                out[1, k, j, i] = 0.5 * (v[k, j, i] + v[k, j + 1, i])
                out[2, k, j, i] = 0.5 * (w[k, j, i] + w[k + 1, j, i])


@njit(inline="always", **_OPTS)
def _nbrs(i, n):
    """The neighbours of index i along an axis of n cells, clamped at the ends (one-sided
    differences there)."""
    return min(i + 1, n - 1), max(i - 1, 0)


@njit(parallel=True, **_OPTS)
def vorticity_force(c, force, eps_h, omega):
    """Vorticity confinement (Fedkiw, Stam, Jensen 2001): puts back the small swirls the
    grid's numerical diffusion smears out. c: cell velocities (3, nz, ny, nx)."""
    nz, ny, nx = c.shape[1:]
    for k_ in prange(nz):
        k = np.int64(k_)
        for j in range(ny):
            for i in range(nx):
                ip, im = _nbrs(i, nx)
                jp, jm = _nbrs(j, ny)
                kp, km = _nbrs(k, nz)
                dwdy = (c[2, k, jp, i] - c[2, k, jm, i]) / max(jp - jm, 1)
                dvdz = (c[1, kp, j, i] - c[1, km, j, i]) / max(kp - km, 1)
                dudz = (c[0, kp, j, i] - c[0, km, j, i]) / max(kp - km, 1)
                dwdx = (c[2, k, j, ip] - c[2, k, j, im]) / max(ip - im, 1)
                dvdx = (c[1, k, j, ip] - c[1, k, j, im]) / max(ip - im, 1)
                dudy = (c[0, k, jp, i] - c[0, k, jm, i]) / max(jp - jm, 1)
                omega[0, k, j, i] = dwdy - dvdz
                omega[1, k, j, i] = dudz - dwdx
                omega[2, k, j, i] = dvdx - dudy
    for k_ in prange(nz):
        k = np.int64(k_)
        for j in range(ny):
            for i in range(nx):
                ip, im = _nbrs(i, nx)
                jp, jm = _nbrs(j, ny)
                kp, km = _nbrs(k, nz)
                gx = (_norm3(omega, k, j, ip) - _norm3(omega, k, j, im)) / max(ip - im, 1)
                gy = (_norm3(omega, k, jp, i) - _norm3(omega, k, jm, i)) / max(jp - jm, 1)
                gz = (_norm3(omega, kp, j, i) - _norm3(omega, km, j, i)) / max(kp - km, 1)
                gl = np.sqrt(gx * gx + gy * gy + gz * gz) + 1e-9
                nx_, ny_, nz_ = gx / gl, gy / gl, gz / gl
                ox, oy, oz = omega[0, k, j, i], omega[1, k, j, i], omega[2, k, j, i]
                force[0, k, j, i] = eps_h * (ny_ * oz - nz_ * oy)
                force[1, k, j, i] = eps_h * (nz_ * ox - nx_ * oz)
                force[2, k, j, i] = eps_h * (nx_ * oy - ny_ * ox)


@njit(inline="always", **_OPTS)
def _norm3(a, k, j, i):
    return np.sqrt(a[0, k, j, i] ** 2 + a[1, k, j, i] ** 2 + a[2, k, j, i] ** 2)


@njit(parallel=True, **_OPTS)
def add_cell_force(u, v, w, f, dt):
    """Adds a cell-centred acceleration (3, nz, ny, nx) to the faces."""
    nz, ny, nx = f.shape[1:]
    for k_ in prange(nz):
        k = np.int64(k_)
        for j in range(ny):
            for i in range(1, nx):
                u[k, j, i] += dt * 0.5 * (f[0, k, j, i - 1] + f[0, k, j, i])
            if j > 0:
                for i in range(nx):
                    v[k, j, i] += dt * 0.5 * (f[1, k, j - 1, i] + f[1, k, j, i])
            if k > 0:
                for i in range(nx):
                    w[k, j, i] += dt * 0.5 * (f[2, k - 1, j, i] + f[2, k, j, i])


@njit(parallel=True, **_OPTS)
def blend_faces(u, v, w, target, weight):
    """Pulls face velocities toward a cell-centred target velocity with a cell weight in
    [0, 1]: how solids (falling pieces, the standing building) and sources drive the air."""
    nz, ny, nx = weight.shape
    for k_ in prange(nz):
        k = np.int64(k_)
        for j in range(ny):
            for i in range(nx + 1):
                a, b = max(i - 1, 0), min(i, nx - 1)
                wt = 0.5 * (weight[k, j, a] + weight[k, j, b])
                if wt > 0:
                    u[k, j, i] += wt * (0.5 * (target[0, k, j, a] + target[0, k, j, b]) - u[k, j, i])
            if j > 0:
                for i in range(nx):
                    wt = 0.5 * (weight[k, j - 1, i] + weight[k, j, i])
                    if wt > 0:
                        v[k, j, i] += wt * (0.5 * (target[1, k, j - 1, i] + target[1, k, j, i]) - v[k, j, i])
    for k_ in prange(nz + 1):
        k = np.int64(k_)
        ka, kb = max(k - 1, 0), min(k, nz - 1)
        for j in range(ny):
            for i in range(nx):
                wt = 0.5 * (weight[ka, j, i] + weight[kb, j, i])
                if wt > 0:
                    w[k, j, i] += wt * (0.5 * (target[2, ka, j, i] + target[2, kb, j, i]) - w[k, j, i])


@njit(parallel=True, **_OPTS)
def close_solid_faces(u, v, w, solid):
    """Zero velocity on every face of a solid cell (walls of the street): nothing flows
    into a wall, so what the flux scheme carries stays in the air."""
    nz, ny, nx = solid.shape
    for k_ in prange(nz):
        k = np.int64(k_)
        for j in range(ny):
            for i in range(nx):
                if solid[k, j, i]:
                    # (neighbouring slabs may both zero a shared w face: the same value, so
                    # the result does not depend on the threads)
                    u[k, j, i] = 0.0
                    u[k, j, i + 1] = 0.0
                    v[k, j, i] = 0.0
                    v[k, j + 1, i] = 0.0
                    w[k, j, i] = 0.0
                    w[k + 1, j, i] = 0.0


def ground_drag(u, w, c):
    """Quadratic drag of the street on the lowest layer of cells: u -= c |u| u (c: drag
    coefficient x dt / h), never reversing the flow."""
    _drag_lowest_layer(u, c)
    _drag_lowest_layer(w, c)


@njit(parallel=True, **_OPTS)
def _drag_lowest_layer(v, c):
    nz, ny, nx = v.shape
    for k_ in prange(nz):
        k = np.int64(k_)
        for i in range(nx):
            a = v[k, 0, i]
            v[k, 0, i] = a / (1.0 + c * abs(a))


@njit(parallel=True, **_OPTS)
def divergence(u, v, w, div):
    nz, ny, nx = div.shape
    for k_ in prange(nz):
        k = np.int64(k_)
        for j in range(ny):
            for i in range(nx):
                div[k, j, i] = (u[k, j, i + 1] - u[k, j, i] + v[k, j + 1, i] - v[k, j, i]
                                + w[k + 1, j, i] - w[k, j, i])


def laplacian_eigenvalues(shape) -> np.ndarray:
    """Eigenvalues of the 7-point Laplacian (cell units) of a box with open sides (p = 0
    on their faces: odd about the face, DST-II) and a wall at the ground (even about it)
    below an open top (DCT-IV); all negative, so every mode is solvable."""
    nz, ny, nx = shape
    lx = -4 * np.sin(np.pi * (np.arange(nx) + 1) / (2 * nx)) ** 2
    ly = -4 * np.sin(np.pi * (np.arange(ny) + 0.5) / (2 * ny)) ** 2
    lz = -4 * np.sin(np.pi * (np.arange(nz) + 1) / (2 * nz)) ** 2
    return (lz[:, None, None] + ly[None, :, None] + lx[None, None, :]).astype(np.float64)


def project(u, v, w, div, lam, workers=2, source=None):
    """Makes the face velocities divergence-free (in place) and returns the pressure;
    with a source (cell field, m/s: a cell's volume flux over its face area), the
    divergence is the source instead (air appearing there, as out of a crushed storey).
    Deterministic for any thread count: each 1D transform is computed whole by one thread."""
    from scipy import fft
    v[:, 0, :] = 0.0                                   # the ground
    divergence(u, v, w, div)
    if source is not None:
        div -= source
    d = fft.dst(div.astype(np.float64), type=2, axis=2, norm="ortho", workers=workers)
    d = fft.dct(d, type=4, axis=1, norm="ortho", workers=workers, overwrite_x=True)
    d = fft.dst(d, type=2, axis=0, norm="ortho", workers=workers, overwrite_x=True)
    d /= lam
    d = fft.idst(d, type=2, axis=0, norm="ortho", workers=workers, overwrite_x=True)
    d = fft.idct(d, type=4, axis=1, norm="ortho", workers=workers, overwrite_x=True)
    p = fft.idst(d, type=2, axis=2, norm="ortho", workers=workers, overwrite_x=True).astype(np.float32)
    subtract_gradient(u, v, w, p)
    return p


@njit(parallel=True, **_OPTS)
def subtract_gradient(u, v, w, p):
    """Face velocity -= pressure difference; outside an open side the pressure is the
    mirror image with the opposite sign (zero on the face)."""
    nz, ny, nx = p.shape
    for k_ in prange(nz + 1):
        k = np.int64(k_)
        for j in range(ny + 1):
            for i in range(nx + 1):
                if k < nz and j < ny:
                    a = p[k, j, i - 1] if i > 0 else -p[k, j, 0]
                    b = p[k, j, i] if i < nx else -p[k, j, nx - 1]
                    u[k, j, i] -= b - a
                if k < nz and i < nx and j > 0:
                    a = p[k, j - 1, i]
                    b = p[k, j, i] if j < ny else -p[k, ny - 1, i]
                    v[k, j, i] -= b - a
                if j < ny and i < nx:
                    a = p[k - 1, j, i] if k > 0 else -p[0, j, i]
                    b = p[k, j, i] if k < nz else -p[nz - 1, j, i]
                    w[k, j, i] -= b - a


@njit(inline="always", **_OPTS)
def _vanleer(dm, dp):
    if dm * dp <= 0.0:
        return 0.0
    return 2.0 * dm * dp / (dm + dp)


@njit(inline="always", **_OPTS)
def _face_flux(qm2, qm1, q0, q1, c):
    """Flux through the face between cells m1 and 0 (c: Courant number of the face
    velocity, positive toward cell 0), MUSCL with a van Leer limiter: second order where
    smooth, never a new extremum."""
    if c > 0.0:
        return c * (qm1 + 0.5 * (1.0 - c) * _vanleer(qm1 - qm2, q0 - qm1))
    return c * (q0 - 0.5 * (1.0 + c) * _vanleer(q0 - qm1, q1 - q0))


@njit(inline="always", **_OPTS)
def _limit_outgoing(fl, line, n):
    """A cell never gives more than it holds: where a diverging flow would empty a cell
    past zero its outgoing fluxes are scaled down together. Each face's flux leaves
    exactly one cell, so the sum stays exact."""
    for t in range(n):
        o = (fl[t + 1] if fl[t + 1] > 0 else 0.0) - (fl[t] if fl[t] < 0 else 0.0)
        have = line[t + 2]
        if o > have:
            r = have / o if o > 0 else 0.0
            if fl[t + 1] > 0:
                fl[t + 1] *= r
            if fl[t] < 0:
                fl[t] *= r


@njit(parallel=True, **_OPTS)
def _flux_sweep(q, vel, dt_h, sink, ground, lost):
    """One conservative sweep along the last axis of q (m, a, b, n) (a view with the
    sweep's axis last) by the face velocities vel (a, b, n + 1). sink[c]: a settling
    speed of field c, toward index 0; with `ground`, index 0's face is the street, which
    only the settling crosses (deposited there). lost[c, a] gets what left each line."""
    m, na, nb, n = q.shape
    for a_ in prange(na):
        a = np.int64(a_)
        line = np.zeros(n + 4)
        fl = np.empty(n + 1)
        for c in range(m):
            for b in range(nb):
                for t in range(n):
                    line[t + 2] = q[c, a, b, t]
                for f in range(n + 1):
                    vf = (0.0 if ground and f == 0 else vel[a, b, f]) - sink[c]
                    fl[f] = _face_flux(line[f], line[f + 1], line[f + 2], line[f + 3], vf * dt_h)
                _limit_outgoing(fl, line, n)
                lost[c, a] += (-fl[0] if fl[0] < 0 else 0.0) + (fl[n] if fl[n] > 0 else 0.0)
                for t in range(n):
                    q[c, a, b, t] = line[t + 2] + fl[t] - fl[t + 1]


@njit(parallel=True, **_OPTS)
def _diffuse_axis(q, kappa, c, out):
    """Conservative explicit diffusion along the last axis of views q (m, a, b, n) and
    kappa (a, b, n) (diffusivity x dt / h^2 per cell): a face's coefficient is the
    smaller of its two cells' (a wall, at zero, lets nothing through), none through the
    ends (so nothing is lost or gained)."""
    m, na, nb, n = q.shape
    for a_ in prange(na):
        a = np.int64(a_)
        for ch in range(m):
            for b in range(nb):
                for t in range(n):
                    f_in = 0.0
                    if t > 0:
                        f_in += min(kappa[a, b, t - 1], kappa[a, b, t], c) * (q[ch, a, b, t - 1] - q[ch, a, b, t])
                    if t < n - 1:
                        f_in += min(kappa[a, b, t + 1], kappa[a, b, t], c) * (q[ch, a, b, t + 1] - q[ch, a, b, t])
                    out[ch, a, b, t] = q[ch, a, b, t] + f_in


def diffuse(q, kappa, tmp):
    """Turbulent (eddy) diffusion of the stacked fields q (m, nz, ny, nx) with a per-cell
    coefficient kappa = K dt / h^2, one axis at a time, conservative; the coefficient is
    capped at 1/7 a face (explicit stability). Returns q's new buffer (q or tmp)."""
    views = ((0, 1, 2, 3), (0, 1, 3, 2), (0, 2, 3, 1))
    kv = ((0, 1, 2), (0, 2, 1), (1, 2, 0))
    src, dst = q, tmp
    for qp, kp in zip(views, kv):
        _diffuse_axis(src.transpose(qp), kappa.transpose(kp), 1.0 / 7.0, dst.transpose(qp))
        src, dst = dst, src
    return src, dst


def advect_conservative(q, u, v, w, dt_h, sink=None, order=0) -> np.ndarray:
    """Moves the stacked cell fields q (m, nz, ny, nx) in place by the face velocities,
    conserving each one's total to rounding; returns per field what left through the open
    sides and (settling) the ground. One sweep per axis, the order alternating from step
    to step to cancel the splitting's bias; a sweep whose Courant number exceeds 1/2 is
    split into sub-steps. sink: settling speed per field (m/s, like the velocities),
    None for none."""
    m, nz, ny, nx = q.shape
    sink = np.zeros(m) if sink is None else np.asarray(sink, np.float64)
    none = np.zeros(m)
    lost = np.zeros(m)
    # Views with the sweep's axis last (x: as stored; y: (z, x, y); z: (y, x, z)).
    views = {2: ((0, 1, 2, 3), (0, 1, 2)), 1: ((0, 1, 3, 2), (0, 2, 1)), 0: ((0, 2, 3, 1), (1, 2, 0))}
    for ax in ((2, 1, 0) if order % 2 == 0 else (0, 1, 2)):
        vel = u if ax == 2 else (v if ax == 1 else w)
        qp, vp = views[ax]
        qv, vv = q.transpose(qp), vel.transpose(vp)
        c = (float(np.abs(vel).max()) + (float(sink.max()) if ax == 1 else 0.0)) * dt_h
        n_sub = max(1, int(np.ceil(c / 0.5)))
        acc = np.zeros((m, qv.shape[1]))
        for _ in range(n_sub):
            _flux_sweep(qv, vv, dt_h / n_sub, sink if ax == 1 else none, ax == 1, acc)
        lost += acc.sum(axis=1)
    return lost


@njit(**_OPTS)
def splat_spheres(centres, radii, values, weights_out, acc_out, strength):
    """Accumulates, per cell, a weight (soft sphere, 1 at the centre) and weight * value
    for spheres in cell units; used for solids and for sources. Serial: deterministic."""
    nz, ny, nx = weights_out.shape
    m = values.shape[1]
    for s in range(centres.shape[0]):
        cx, cy, cz, r = centres[s, 0], centres[s, 1], centres[s, 2], radii[s]
        r = max(r, 0.75)
        i0, i1 = max(int(cx - r), 0), min(int(cx + r) + 1, nx - 1)
        j0, j1 = max(int(cy - r), 0), min(int(cy + r) + 1, ny - 1)
        k0, k1 = max(int(cz - r), 0), min(int(cz + r) + 1, nz - 1)
        for k in range(k0, k1 + 1):
            for j in range(j0, j1 + 1):
                for i in range(i0, i1 + 1):
                    d = np.sqrt((i + 0.5 - cx) ** 2 + (j + 0.5 - cy) ** 2 + (k + 0.5 - cz) ** 2)
                    if d < r:
                        wgt = strength[s] * min(1.0, 1.5 * (1.0 - d / r))
                        weights_out[k, j, i] += wgt
                        for c in range(m):
                            acc_out[c, k, j, i] += wgt * values[s, c]


@njit(**_OPTS)
def deposit(points, amounts, field):
    """Adds amounts at points (cell units) to a cell field with trilinear weights, so
    the total added equals the sum of amounts when the point is inside the grid."""
    nz, ny, nx = field.shape
    for s in range(points.shape[0]):
        x = min(max(points[s, 0] - 0.5, 0.0), nx - 1.0)
        y = min(max(points[s, 1] - 0.5, 0.0), ny - 1.0)
        z = min(max(points[s, 2] - 0.5, 0.0), nz - 1.0)
        i0, j0, k0 = min(int(x), max(nx - 2, 0)), min(int(y), max(ny - 2, 0)), min(int(z), max(nz - 2, 0))
        fx, fy, fz = x - i0, y - j0, z - k0
        for dk in range(2):
            for dj in range(2):
                for di in range(2):
                    wgt = ((fx if di else 1 - fx) * (fy if dj else 1 - fy) * (fz if dk else 1 - fz))
                    field[min(k0 + dk, nz - 1), min(j0 + dj, ny - 1), min(i0 + di, nx - 1)] += wgt * amounts[s]


def sun_depth(sigma, tau, d, h):
    """Optical depth from every cell toward the sun (unit direction d, world axes x, y,
    z), swept slice by slice along the direction's dominant axis: each slice reads the
    one before it, a step toward the sun, bilinearly. O(cells) per frame instead of a
    ray march per cell. sigma in 1/m, h in m. The arrays are viewed with the sweep axis
    second, so one kernel serves all three directions."""
    d = np.asarray(d, np.float64)
    ax = int(np.argmax(np.abs(d)))                     # 0: x, 1: y, 2: z
    # Array axes are (z, y, x); put the sweep axis in the middle.
    perm = {1: (0, 1, 2), 0: (0, 2, 1), 2: (1, 0, 2)}[ax]
    world = (2, 1, 0)                                  # world axis of each array axis
    other = (world[perm[2]], world[perm[0]])           # ... of the viewed arrays' axes 2 and 0
    s_v = np.ascontiguousarray(sigma.transpose(perm))
    t_v = np.empty_like(s_v)
    da = d[ax]
    _sweep(s_v, t_v, d[other[0]] / abs(da), d[other[1]] / abs(da), 1 if da > 0 else -1, h / abs(da))
    tau[...] = t_v.transpose(np.argsort(perm))


@njit(parallel=True, **_OPTS)
def _sweep(sigma, tau, o2, o0, sgn, step):
    n0, n1, n2 = sigma.shape
    first = n1 - 1 if sgn > 0 else 0
    for s_i in range(n1):
        s = first - sgn * s_i
        prev = s + sgn
        for a_ in prange(n0):
            a = np.int64(a_)
            for b in range(n2):
                here = sigma[a, s, b]
                if prev < 0 or prev >= n1:
                    tau[a, s, b] = 0.5 * here * step
                    continue
                x, z = b + o2, a + o0
                if x < -1.0 or z < -1.0 or x > n2 or z > n0:
                    tau[a, s, b] = 0.5 * here * step   # the sun-ward ray has left the grid: clear air
                    continue
                # Bilinear, with clear air (zero) in a ring of ghost cells outside the grid,
                # so rays running out through a side fade out instead of sticking to it.
                i0, k0 = int(np.floor(x)), int(np.floor(z))
                fx, fz = x - i0, z - k0
                t = 0.0
                sg = 0.0
                for dk in range(2):
                    kk = k0 + dk
                    if kk < 0 or kk >= n0:
                        continue
                    wz = fz if dk else 1.0 - fz
                    for di in range(2):
                        ii = i0 + di
                        if ii < 0 or ii >= n2:
                            continue
                        wgt = wz * (fx if di else 1.0 - fx)
                        t += wgt * tau[kk, prev, ii]
                        sg += wgt * sigma[kk, prev, ii]
                tau[a, s, b] = t + 0.5 * (here + sg) * step


@njit(parallel=True, **_OPTS)
def sky_depth(sigma, tau, h):
    """Optical depth straight up from every cell: how much of the sky a cell still sees."""
    nz, ny, nx = sigma.shape
    for k_ in prange(nz):
        k = np.int64(k_)
        for i in range(nx):
            acc = 0.0
            for j in range(ny - 1, -1, -1):
                acc += 0.5 * sigma[k, j, i] * h
                tau[k, j, i] = acc
                acc += 0.5 * sigma[k, j, i] * h
