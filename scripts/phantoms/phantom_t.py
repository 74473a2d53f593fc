#!/usr/bin/env python3
"""phantom_t.py -- procedural voxel-volume lumbar-spine radiograph phantom (AP + lateral).

Usage:  phantom_t.py OUTDIR N SEED [--workers W]

How it draws
------------
Every patient is ONE 3-D anatomy in patient coordinates (z cranial, x patient-left,
y anterior, mm).  A 1.5 mm trunk voxel grid holds water-equivalent density (subcutaneous
and visceral fat, muscle, liver/spleen, kidneys in perirenal fat, psoas in retroperitoneal
fat, lung bases, colon/small-bowel gas and mottled stool) and a hydroxyapatite (HA) channel
for lower ribs, sacrum (tapered curved plate with foramina), iliac wings (flaring cylindrical
shells with a crest rim) and aortic plaques.  The spine's centre curve is traced upward from
the S1 endplate (sacral slope, lordosis, mild scoliosis); each vertebra T11-L5 is built in its
own 0.5 mm sub-volume from parametric masks: the body is a waisted, rounded cylinder with
concave endplates, the pedicles, laminae, spinous, transverse and articular processes are
thickened line segments (capsules from point-to-segment distances), the cortex is carved by
binary erosion and the trabecular core is filled with a 3-D procedural texture (band-pass
filtered Fourier noise, zero-level sheets thresholded: vertical plates elongated along z plus
horizontal struts).  Each view is a parallel projection of these volumes in which lordotic
tilt, scoliosis and patient rotation become shears/in-plane rotations; every trunk depth slab
and every vertebra is pasted onto the detector with its own divergent-beam magnification.
Polyenergetic two-material (water + HA) attenuation, broad-kernel scatter (with or without a
grid), heel effect, quantum/electronic noise and detector blur give a log image processed by
one of four invented vendor pipelines (high-end multi-scale DR, CR, bedside portable without
grid, classic DR), with collimation, shutters, burned-in text and an L/R marker, saved as
DX (For Presentation) or CR DICOM, MONOCHROME1 in ~20 % of studies.

How bone density shows
----------------------
Trabecular volumetric BMD of each vertebral body is (165 + 27*T) mg/cm3 HA times a patient
(~6 %) and a per-level (~4 %) log-normal factor.  It sets the bone-volume fraction of the
thresholded texture (sparser at low T) and the mean mineral of the core exactly, so the
projected HA (and the bodies' radiographic density) falls with T.  At low T the texture is
coarser (longer band-pass wavelength), more vertically striated (longer vertical correlation)
and loses horizontal struts first; the cortical shell thins mildly with T, posterior elements,
sacrum and ilium lose some mineral too.  Confounders drawn independently of T given age: BMI
(trunk size, fat), exposure, vendor processing, degeneration (osteophytes, endplate
sclerosis, disc narrowing), aortic plaques.  Age ~ 62 - 2T +- 10; fractures (wedge,
biconcave, crush) become more frequent at low T.
"""
import argparse
import csv
import math
import os
import sys
import types

for _v in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):
    os.environ.setdefault(_v, '1')

import numpy as np  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402
from scipy import fft as sfft  # noqa: E402

F32 = np.float32
TRUNK_VOX = 1.5
VERT_VOX = 0.5

# mass attenuation coefficients (cm2/g), approximate (NIST-like) for water, HA and Al
E_BINS = np.array([30., 40., 50., 60., 70., 80., 90., 100., 110.])
MU_W = np.array([0.3756, 0.2683, 0.2269, 0.2059, 0.1948, 0.1837, 0.1769, 0.1707, 0.1654])
MU_HA = np.array([2.30, 1.08, 0.635, 0.445, 0.345, 0.285, 0.248, 0.222, 0.204])
MU_AL = np.array([1.128, 0.5685, 0.3681, 0.2778, 0.2273, 0.2018, 0.1865, 0.1704, 0.160])

LEVELS = ('T11', 'T12', 'L1', 'L2', 'L3', 'L4', 'L5')
BH = np.array([21.5, 23.5, 25.5, 26.5, 27.5, 27.5, 26.5])      # body height
WXB = np.array([16.5, 18.0, 20.0, 21.0, 22.0, 23.0, 24.5])     # half width (LR)
WYB = np.array([13.5, 14.5, 15.5, 16.0, 16.5, 17.0, 17.0])     # half depth (AP)
DISC = np.array([5.5, 6.5, 8.0, 9.0, 10.0, 11.0, 11.0])        # disc below each level
TPL = np.array([9.0, 5.0, 14.0, 20.0, 27.0, 22.0, 17.0])       # transverse process length
TILT = np.array([-13., -11., -8., -3., 4., 12., 21.])          # deg, + = top leans anterior

VENDORS = {
    'A': dict(maker='Halvorsen Medical', model='AuroraDR 9', modality='DX', ps=(0.25, 0.28),
              grid=True, dose=900., mtf=0.6, bits=(12, 14), proc='multiscale', shutter=True,
              flip_lat=True, inst='ST ELSEWHERE GENERAL'),
    'B': dict(maker='Kestrel Imaging', model='KCR-750', modality='CR', ps=(0.30, 0.35),
              grid=True, dose=380., mtf=1.1, bits=(10, 12), proc='cr', shutter=False,
              flip_lat=False, inst='NORTHFIELD CLINIC'),
    'C': dict(maker='Nordlys Mobile', model='Mobil-X M40', modality='DX', ps=(0.28, 0.32),
              grid=False, dose=160., mtf=0.8, bits=(12, 12), proc='portable', shutter=False,
              flip_lat=True, inst='WARD 7 BEDSIDE'),
    'D': dict(maker='Tessaract Systems', model='DR-Classic 2', modality='DX', ps=(0.27, 0.31),
              grid=True, dose=520., mtf=0.7, bits=(15, 16), proc='classic', shutter=True,
              flip_lat=False, inst='RIVERBEND IMAGING'),
}
SURN = ['MORVAN', 'KELDAR', 'TIRREL', 'OSWEN', 'BRACKLE', 'DUNMOR', 'FELLIS', 'HARROW',
        'QUILLAN', 'VESTRA', 'LOMBARD', 'PRESK']
GIVF = ['ANYA', 'MIREL', 'TESSA', 'ODILE', 'KARIN', 'LISBET', 'NORA', 'ILSE']
GIVM = ['BORIS', 'KAEL', 'TOMAS', 'EVAN', 'RURIK', 'OTTO', 'LUCAN', 'PIET']


# ----------------------------------------------------------------------------- helpers
class Grid:
    """Regular grid, axes (z, x, y); lo = coordinates (mm) of voxel index 0."""

    def __init__(self, lo, shape, vox):
        self.lo = np.asarray(lo, float)
        self.shape = tuple(int(s) for s in shape)
        self.vox = float(vox)

    def axis(self, i):
        return (self.lo[i] + np.arange(self.shape[i]) * self.vox).astype(F32)

    def sub(self, bmin, bmax):
        i0 = np.floor((np.asarray(bmin, float) - self.lo) / self.vox).astype(int)
        i1 = np.ceil((np.asarray(bmax, float) - self.lo) / self.vox).astype(int) + 1
        i0 = np.maximum(i0, 0)
        i1 = np.minimum(i1, self.shape)
        if np.any(i1 <= i0):
            return None
        sl = tuple(slice(a, b) for a, b in zip(i0, i1))
        z = (self.lo[0] + np.arange(i0[0], i1[0]) * self.vox).astype(F32)[:, None, None]
        x = (self.lo[1] + np.arange(i0[1], i1[1]) * self.vox).astype(F32)[None, :, None]
        y = (self.lo[2] + np.arange(i0[2], i1[2]) * self.vox).astype(F32)[None, None, :]
        return sl, z, x, y


def capsule(g, arr, a, b, r0, r1, val, rim_val=None, rim=1.0, op='max', rng=None):
    """Thickened line segment a->b (z,x,y) with radius r0->r1."""
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    rm = max(r0, r1)
    res = g.sub(np.minimum(a, b) - rm, np.maximum(a, b) + rm)
    if res is None:
        return
    sl, z, x, y = res
    ab = b - a
    L2 = max(float(ab @ ab), 1e-9)
    pz, px, py = z - a[0], x - a[1], y - a[2]
    t = np.clip((pz * ab[0] + px * ab[1] + py * ab[2]) / L2, 0.0, 1.0)
    d = np.sqrt((pz - t * ab[0]) ** 2 + (px - t * ab[1]) ** 2 + (py - t * ab[2]) ** 2)
    r = r0 + (r1 - r0) * t
    inside = d < r
    sub = arr[sl]
    if op == 'max':
        if rim_val is None:
            v = np.where(inside, F32(val), F32(0))
        else:
            v = np.where(inside, np.where(d > r - rim, F32(rim_val), F32(val)), F32(0))
        np.maximum(sub, v, out=sub)
    elif op == 'sdf':
        np.maximum(sub, (r - d).astype(F32), out=sub)
    elif op == 'set':
        m = inside & (sub > 0.931)
        sub[m] = val
    elif op == 'stool':
        m = inside & (sub > 0.931)
        mottle(sub, m, sl)
    elif op == 'fat':
        sub[inside & (sub > 0.5)] = val


def ellipsoid(g, arr, c, ax, val, only=None, op='set', rng=None):
    c = np.asarray(c, float)
    ax = np.asarray(ax, float)
    res = g.sub(c - ax, c + ax)
    if res is None:
        return
    sl, z, x, y = res
    q = ((z - c[0]) / ax[0]) ** 2 + ((x - c[1]) / ax[1]) ** 2 + ((y - c[2]) / ax[2]) ** 2
    m = q < 1.0
    sub = arr[sl]
    if only is not None:
        m &= (sub > only)
    if op == 'set':
        sub[m] = val
    elif op == 'stool':
        mottle(sub, m, sl)
    elif op == 'add':
        sub[m] += val


_MOT = {}


def mottle(sub, m, sl):
    """Stool: gas bubbles of a few mm from a small periodic smoothed-noise field."""
    if 'f' not in _MOT:
        r = np.random.default_rng(12345).standard_normal((20, 20, 20)).astype(F32)
        f = ndi.gaussian_filter(r, 1.3, mode='wrap')
        _MOT['f'] = np.where(f > np.quantile(f, 0.55), F32(0.08), F32(0.97))
    iz, ix, iy = np.nonzero(m)
    f = _MOT['f']
    sub[iz, ix, iy] = f[(iz + sl[0].start) % 20, (ix + sl[1].start) % 20, (iy + sl[2].start) % 20]


def fblur(img, sigma):
    """Gaussian blur; large sigmas through a block-mean pyramid."""
    if sigma <= 2.5:
        return ndi.gaussian_filter(img, sigma, mode='nearest')
    f = max(1, int(sigma / 2.0))
    h, w = img.shape
    H, W = -(-h // f) * f, -(-w // f) * f
    p = np.pad(img, ((0, H - h), (0, W - w)), mode='edge')
    s = p.reshape(H // f, f, W // f, f).mean(axis=(1, 3))
    s = ndi.gaussian_filter(s, sigma / f, mode='nearest')
    return upsample(s, f, (h, w))


def _lin_axis(a, f, n, axis):
    p = (np.arange(n) + 0.5) / f - 0.5
    i0 = np.clip(np.floor(p).astype(int), 0, a.shape[axis] - 1)
    i1 = np.minimum(i0 + 1, a.shape[axis] - 1)
    w = np.clip(p - np.floor(p), 0, 1).astype(F32)
    w = np.where(p < 0, F32(0), w)
    if axis == 0:
        return a[i0] * (1 - w)[:, None] + a[i1] * w[:, None]
    return a[:, i0] * (1 - w)[None, :] + a[:, i1] * w[None, :]


def upsample(a, f, shape):
    """Separable linear up-sampling by an integer factor (pixel-area aligned)."""
    return _lin_axis(_lin_axis(a.astype(F32), f, shape[0], 0), f, shape[1], 1).astype(F32)


def shear_project(vol, axis, g, shz, sho, j0=0, j1=None, depth_off=0.0):
    """Sum vol (z,x,y) along axis 1 (x) or 2 (y).  A voxel at depth d (mm) moves by
    d*shz along z and d*sho along the remaining in-plane axis.  Returns (proj, lo_z, lo_o)."""
    n = vol.shape[axis]
    if j1 is None:
        j1 = n
    vox = g.vox
    oax = 2 if axis == 1 else 1
    d = g.lo[axis] + np.arange(j0, j1) * vox + depth_off
    iz = np.rint(d * shz / vox).astype(int)
    io = np.rint(d * sho / vox).astype(int)
    nz, no = vol.shape[0], vol.shape[oax]
    if not iz.any() and not io.any():
        out = vol[:, :, j0:j1].sum(axis=2) if axis == 2 else vol[:, j0:j1, :].sum(axis=1)
        return out.astype(F32), g.lo[0], g.lo[oax]
    mz0, mo0 = iz.min(), io.min()
    out = np.zeros((nz + iz.max() - mz0, no + io.max() - mo0), F32)
    ch = np.nonzero((np.diff(iz) != 0) | (np.diff(io) != 0))[0] + 1
    starts = np.concatenate([[0], ch])
    ends = np.concatenate([ch, [j1 - j0]])
    sub = vol[:, :, j0:j1] if axis == 2 else vol[:, j0:j1, :]
    sums = np.add.reduceat(sub, starts, axis=axis)
    for gi, ka in enumerate(starts):
        sl = sums[:, :, gi] if axis == 2 else sums[:, gi, :]
        a = iz[ka] - mz0
        b = io[ka] - mo0
        out[a:a + nz, b:b + no] += sl
    return out, g.lo[0] + mz0 * vox, g.lo[oax] + mo0 * vox


def paste(acc, geo, M, proj, lo_z, lo_o, vox, cu, cz, A, scale):
    """Resample a 2-D projection (local coords (o, z) around object centre (cu, cz),
    world-plane = A @ local + c) onto the detector accumulator with magnification M."""
    R_, C_ = acc.shape
    ps, rc, cc, uc, zc = geo['ps'], geo['rc'], geo['cc'], geo['uc'], geo['zc']
    nz, no = proj.shape
    lo_c = np.array([[lo_o, lo_o, lo_o + no * vox, lo_o + no * vox],
                     [lo_z, lo_z + nz * vox, lo_z, lo_z + nz * vox]])
    w = A @ lo_c + np.array([[cu], [cz]])
    cols = cc + (w[0] - uc) * M / ps
    rows = rc - (w[1] - zc) * M / ps
    c0 = max(int(np.floor(cols.min())) - 1, 0)
    c1 = min(int(np.ceil(cols.max())) + 2, C_)
    r0 = max(int(np.floor(rows.min())) - 1, 0)
    r1 = min(int(np.ceil(rows.max())) + 2, R_)
    if c1 <= c0 or r1 <= r0:
        return
    du = (uc + (np.arange(c0, c1) - cc) * ps / M - cu)[None, :]
    dz = (zc + (rc - np.arange(r0, r1)) * ps / M - cz)[:, None]
    Ai = np.linalg.inv(A)
    io = ((Ai[0, 0] * du + Ai[0, 1] * dz) - lo_o) / vox
    iz = ((Ai[1, 0] * du + Ai[1, 1] * dz) - lo_z) / vox
    iz, io = np.broadcast_arrays(iz, io)
    vals = ndi.map_coordinates(proj, [iz.astype(F32), io.astype(F32)], order=1,
                               mode='constant', cval=0.0, prefilter=False)
    acc[r0:r1, c0:c1] += vals * F32(scale)


def rot2(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, s], [-s, c]])


# ----------------------------------------------------------------------------- patient
def sample_patient(seed, idx):
    rng = np.random.default_rng([seed, idx, 7771])
    perm = np.random.default_rng([seed, idx // 3, 99]).permutation(3)
    cls = int(perm[idx % 3])
    if cls == 0:
        T = rng.uniform(-1.0, 2.2)
    elif cls == 1:
        T = rng.uniform(-2.49, -1.01)
    else:
        T = rng.uniform(-4.6, -2.5)
    T = round(float(T), 2)
    p = types.SimpleNamespace()
    p.T = T
    p.label = 0 if T >= -1.0 else (2 if T <= -2.5 else 1)
    p.bmd = round(1.047 + 0.110 * T, 3)
    p.pid = 'PHT%d-%04d' % (seed, idx)
    p.sex = 'F' if rng.random() < 0.75 else 'M'
    p.age = int(np.clip(round(62 - 2 * T + rng.normal(0, 10)), 22, 95))
    p.bmi = float(np.clip(rng.normal(27, 5), 17, 46))
    p.sz = float(rng.normal(1.0 if p.sex == 'F' else 1.07, 0.045))
    p.H = BH * p.sz * rng.normal(1, 0.03, 7)
    p.wx = WXB * p.sz * rng.normal(1, 0.03, 7)
    p.wy = WYB * p.sz * rng.normal(1, 0.03, 7)
    p.deg = float(np.clip((p.age - 40) / 45.0 + rng.normal(0, 0.2), 0, 1))
    narrow = 1 - 0.5 * p.deg * rng.random(7) * np.linspace(0.4, 1.0, 7)
    p.disc = DISC * p.sz * narrow
    pf = math.exp(rng.normal(0, 0.06))
    base = max(165.0 + 27.0 * T, 22.0) * pf
    p.vbmd = base * np.exp(rng.normal(0, 0.04, 7)) * np.linspace(0.97, 1.03, 7)
    p.conc = float(rng.uniform(0.8, 1.8))
    p.waist = float(rng.uniform(0.05, 0.10))
    p.osteo = [(rng.random() < 0.8 * p.deg) if k >= 2 else False for k in range(7)]
    p.scl = [float(0.25 * p.deg * rng.random()) if rng.random() < p.deg else 0.0 for k in range(7)]
    p.fract = {}
    pfr = float(np.clip(0.04 + 0.14 * max(0.0, -T - 1.0), 0, 0.6))
    if rng.random() < pfr:
        nfr = 2 if (T < -3 and rng.random() < 0.35) else 1
        ks = rng.choice(np.arange(1, 7), size=nfr, replace=False,
                        p=np.array([3, 3, 2, 1.5, 1, 0.6]) / 11.1)
        for k in ks:
            typ = rng.choice(['wedge', 'biconcave', 'crush'], p=[0.6, 0.25, 0.15])
            p.fract[int(k)] = (str(typ), float(rng.uniform(0.2, 0.45)))
    p.ss = float(rng.normal(38, 6))
    p.lord = float(np.clip(rng.normal(1.0, 0.2), 0.5, 1.5))
    p.scol = float(rng.normal(0, 2.5))
    p.scol_ph = float(rng.uniform(-0.5, 0.5))
    # trunk
    dB = p.bmi - 24.0
    p.a0 = float(np.clip(148 + 4.2 * dB + rng.normal(0, 6), 105, 235))
    p.bb = float(np.clip(92 + 2.4 * dB + rng.normal(0, 5), 70, 150))
    p.bf = float(np.clip(112 + 4.6 * dB + (8 if p.sex == 'M' else 0) + rng.normal(0, 7), 75, 210))
    p.ft = float(np.clip(9 + 2.3 * (p.bmi - 19) + rng.normal(0, 3), 4, 65))
    p.hip = 0.16 if p.sex == 'F' else 0.07
    lam = max(0.0, (p.age - 45) / 6.0) * (1.4 if p.sex == 'M' else 1.0)
    p.nplaq = int(rng.poisson(lam))
    p.given = str(rng.choice(GIVF if p.sex == 'F' else GIVM))
    p.surname = str(rng.choice(SURN))
    p.date = '%04d%02d%02d' % (2015 + rng.integers(0, 10), 1 + rng.integers(0, 12), 1 + rng.integers(0, 28))
    p.time = '%02d%02d%02d' % (7 + rng.integers(0, 12), rng.integers(0, 60), rng.integers(0, 60))
    return p


def trace_spine(p, rng):
    tilt = TILT * p.lord + rng.normal(0, 1.5, 7)
    tilt[6] = min(tilt[6], p.ss - 5)
    psi = p.scol * np.sin(np.linspace(0, math.pi, 7) + p.scol_ph) + rng.normal(0, 0.7, 7)

    def axis(phi, ps_):
        a, s = math.radians(phi), math.radians(ps_)
        v = np.array([math.cos(a) * math.cos(s), math.sin(s), math.sin(a) * math.cos(s)])
        return v / np.linalg.norm(v)

    top = np.zeros(3)
    u_prev = axis(p.ss, 0.0)
    cents = np.zeros((7, 3))
    for k in range(6, -1, -1):
        u = axis(tilt[k], psi[k])
        ud = u_prev + u
        ud /= np.linalg.norm(ud)
        c = top + ud * p.disc[k] + u * p.H[k] / 2
        cents[k] = c
        top = c + u * p.H[k] / 2
        u_prev = u
    d_back = 48 + 0.9 * p.ft + 0.1 * p.bb
    y3 = -p.bb + d_back
    shift = np.array([0.0, 0.0, y3]) - cents[4]
    sp = types.SimpleNamespace()
    sp.c = cents + shift
    sp.s1 = shift.copy()
    sp.phi = np.radians(tilt)
    sp.psi = np.radians(psi)
    sp.ss = math.radians(p.ss)
    zz = np.concatenate([[sp.s1[0] - 200], [sp.s1[0]], sp.c[::-1, 0], [sp.c[0, 0] + 200]])
    yy = np.concatenate([[sp.s1[2] - 40], [sp.s1[2]], sp.c[::-1, 2], [sp.c[0, 2] - 30]])
    sp.zz, sp.yy = zz, yy
    sp.y3 = y3
    return sp


# ----------------------------------------------------------------------------- trunk
def build_trunk(p, sp, rng):
    v = TRUNK_VOX
    z = np.arange(-205.0, 205.0 + 1e-6, v)
    ys = np.interp(z, sp.zz, sp.yy)
    yoff = ys - sp.y3                                  # trunk follows the spine's curve
    zL4, zT12, zS1 = sp.c[5, 0], sp.c[1, 0], sp.s1[0]
    a = p.a0 * (1 + p.hip / (1 + np.exp(-(zL4 - z) / 25.0))) * (1 + 0.04 / (1 + np.exp(-(z - zT12) / 20.0)))
    bf = p.bf * (1 + 0.08 * np.exp(-((z - zL4) / 90.0) ** 2) * (p.bmi / 27.0))
    amax = a.max() + 6
    x = np.arange(-amax, amax + 1e-6, v)
    y = np.arange((yoff - p.bb).min() - 6, (yoff + bf).max() + 6, v)
    g = Grid((z[0], x[0], y[0]), (len(z), len(x), len(y)), v)
    Yc = y[None, :] - yoff[:, None]
    xa = ((x[None, :] / a[:, None]) ** 2).astype(F32)
    yb = ((Yc / np.where(Yc > 0, bf[:, None], p.bb)) ** 2).astype(F32)
    W = np.where(xa[:, :, None] + yb[:, None, :] < 1, F32(0.93), F32(0))
    ai = a - p.ft
    bfi, bbi = bf - p.ft * 1.1, p.bb - p.ft * 0.8
    xa = ((x[None, :] / ai[:, None]) ** 2).astype(F32)
    yb = ((Yc / np.where(Yc > 0, bfi[:, None], bbi)) ** 2).astype(F32)
    W[xa[:, :, None] + yb[:, None, :] < 1] = 1.05
    del xa, yb
    B = np.zeros(W.shape, F32)
    wyL = p.wy
    c = sp.c
    y3 = sp.y3
    # visceral fat
    nvf = int(max(0, p.bmi - 20) * 0.8) + 3
    for _ in range(nvf):
        cz = rng.uniform(zS1 - 40, zT12)
        ellipsoid(g, W, (cz, rng.uniform(-0.6, 0.6) * p.a0, y3 + rng.uniform(30, 0.8 * p.bf)),
                  rng.uniform(12, 35, 3), 0.935, only=1.0)
    # liver & spleen
    ellipsoid(g, W, (zT12 + 35, -0.45 * p.a0, y3 + 0.35 * p.bf), (85, 0.55 * p.a0, 0.75 * p.bf), 1.065, only=1.0)
    ellipsoid(g, W, (zT12 + 30, 0.55 * p.a0, y3 + 10), (50, 0.25 * p.a0, 40), 1.06, only=1.0)
    # lung bases (posterior costophrenic recesses)
    res = g.sub((zT12 - 40, -amax, y[0]), (z[-1], amax, y3 + 40))
    if res is not None:
        sl, zz, xx, yy = res
        zd = (c[1, 0] + 22 - 40 * np.clip((np.abs(xx) - 30) / (0.8 * p.a0), 0, 1)
              + 0.5 * (yy - y3))
        m = (zz > zd) & (np.abs(xx) > 38) & (W[sl] > 1.0) & (yy < y3 + 25)
        W[sl][m] = 0.45
    # perirenal fat, kidneys, psoas with retroperitoneal fat
    for s, dz in ((1, 0.0), (-1, -15.0)):
        kc = (c[3, 0] + dz + 8, s * (p.wx[3] + 55), y3 + 5)
        ellipsoid(g, W, kc, (68, 42, 36), 0.93, only=0.99)
        ellipsoid(g, W, kc, (54, 27, 23), 1.045, only=0.92)
        a0 = (c[2, 0], s * (p.wx[2] + 4), c[2, 2] - 4)
        a1 = (zS1 - 25, s * 62, sp.s1[2] + 30)
        capsule(g, W, a0, a1, 11, 28, 0.93, op='fat')
        capsule(g, W, a0, a1, 7, 22, 1.05, op='fat')
    # bowel: colon frame and small-bowel gas
    yA = y3 + 30
    aI = p.a0 - p.ft
    pts = [(c[6, 0], -0.55 * aI, yA), (c[2, 0] - 10, -0.55 * aI, yA),
           (c[4, 0] + rng.uniform(-30, 20), 0.0, y3 + 0.55 * (p.bf - p.ft)),
           (c[2, 0], 0.6 * aI, yA), (c[6, 0], 0.6 * aI, yA - 5),
           (zS1 - 30, 0.2 * aI, sp.s1[2] + 45), (zS1 - 60, 0.0, sp.s1[2] + 30)]
    for i in range(len(pts) - 1):
        p0, p1 = np.array(pts[i]), np.array(pts[i + 1])
        nseg = max(1, int(np.linalg.norm(p1 - p0) / 40))
        for j in range(nseg):
            q0 = p0 + (p1 - p0) * j / nseg
            q1 = p0 + (p1 - p0) * (j + 1) / nseg
            u = rng.random()
            r = rng.uniform(11, 22)
            if u < 0.25:
                capsule(g, W, q0, q0 + (q1 - q0) * rng.uniform(0.3, 0.8), r * 0.8, r * rng.uniform(0.5, 0.9),
                        0.03, op='set')
            elif u < 0.75:
                capsule(g, W, q0, q1, r, r, 0.0, op='stool', rng=rng)
    for _ in range(rng.integers(2, 11)):
        ellipsoid(g, W, (rng.uniform(zS1 - 20, c[2, 0]), rng.uniform(-0.5, 0.5) * aI,
                         rng.uniform(y3 + 45, y3 + 45 + 0.5 * p.bf)),
                  rng.uniform(5, 16, 3), 0.03, only=0.931)
    # --- mineral: ribs
    bfac = float(np.clip(1 + 0.07 * p.T, 0.6, 1.2))
    for k, ext, drop in ((-1, 2.0, 70), (0, 1.6, 55), (1, 1.1, 40)):
        if k < 0:
            kc = c[0] + (c[0] - c[1])
            wxk, wyk = p.wx[0] * 0.97, p.wy[0] * 0.97
        else:
            kc = c[k]
            wxk, wyk = p.wx[k], p.wy[k]
        zi = int(np.clip((kc[0] - z[0]) / v, 0, len(z) - 1))
        Ain, Bin, yo = (a[zi] - p.ft) * 0.9, (p.bb - p.ft * 0.8) * 0.9, yoff[zi]
        for s in (-1, 1):
            path = [(kc[0] + 2, s * (wxk + 5), kc[2] - wyk - 6),
                    (kc[0], s * (wxk + 24), kc[2] - wyk - 20)]
            g0 = math.asin(min(0.95, (wxk + 30) / Ain))
            for gm in np.linspace(g0, ext, 6):
                f = (gm - g0) / (ext - g0)
                path.append((kc[0] - 8 - drop * f ** 0.8, s * Ain * math.sin(gm),
                             yo - Bin * math.cos(gm)))
            n = len(path)
            for i in range(n - 1):
                r0 = 5.0 - 1.8 * i / n
                capsule(g, B, path[i], path[i + 1], r0, r0 - 1.8 / n, 0.30 * bfac, 0.62 * bfac, 1.6)
    # sacrum
    ss = sp.ss
    nz_, ny_ = math.cos(ss), math.sin(ss)          # S1 endplate normal (z, y)
    ez, ey = -math.sin(ss), math.cos(ss)           # anterior-down in-plane direction
    L = 100 * p.sz
    ps1 = sp.s1
    res = g.sub(ps1 - np.array([125, 75, 70]), ps1 + np.array([15, 75, 110]))
    if res is not None:
        sl, zz, xx, yy = res
        rz, ry, ax_ = zz - ps1[0], yy - ps1[2], np.abs(xx - ps1[1])
        s_ = -(rz * nz_ + ry * ny_)
        t_ = rz * ez + ry * ey
        sn = np.clip(s_ / L, 0, 1)
        tc = 0.0016 * s_ ** 2
        wy6 = p.wy[6]
        wx6 = p.wx[6]
        t_hi = tc + wy6 * (1 - 0.55 * sn)
        t_lo = tc - (wy6 + 8) * (1 - 0.5 * sn)
        w_ = 12 + 43 * (1 - sn) ** 0.9
        ala = np.clip((ax_ - wx6) / 25.0, 0, 1)
        tm = 0.5 * (t_lo + t_hi)
        M = ((s_ >= 0) & (s_ <= L) & (ax_ < w_) & (t_ > tm + (t_lo - tm) * (1 - 0.45 * ala))
             & (t_ < tm + (t_hi - tm) * (1 - 0.45 * ala)))
        M &= ~((ax_ > wx6) & (s_ < 0.18 * (ax_ - wx6)))
        for j, sj in enumerate((0.22, 0.43, 0.62, 0.78)):
            xj = 14 + 10 * (1 - sj)
            M &= ~(((s_ - sj * L) ** 2 + (ax_ - xj) ** 2) < (5.2 - 0.6 * j) ** 2)
        M &= ~((t_ > t_lo + 3) & (t_ < t_lo + 12) & (ax_ < 8) & (s_ > 5))
        core = ndi.binary_erosion(M)
        hs = 0.7 * float(np.mean(p.vbmd)) / 1000.0
        val = np.where(core, F32(hs), np.where(M, F32(0.45 * bfac), F32(0)))
        np.maximum(B[sl], val, out=B[sl])
    # iliac wings: flaring cylindrical shells
    zcr = c[5, 0] + rng.uniform(-8, 8)
    for s in (-1, 1):
        xc, yc = s * 60 * p.sz, ps1[2] + 55
        R0 = 75 * p.sz * (1 + p.hip * 0.6)
        res = g.sub((zS1 - 130, min(s * 35, s * 175), ps1[2] - 45),
                    (zcr + 30, max(s * 35, s * 175), ps1[2] + 120))
        if res is None:
            continue
        sl, zz, xx, yy = res
        dx, dy = s * (xx - xc), yy - yc
        rho = np.sqrt(dx * dx + dy * dy)
        beta = np.arctan2(dy, dx)
        b0, b1 = -1.75, 0.35
        bn = np.clip((beta - b0) / (b1 - b0), 0, 1)
        Rz = R0 + 0.28 * np.clip(zz - zS1, -60, 80)
        zc_ = zcr - 25 + 28 * np.sin(math.pi * bn)
        inb = (beta > b0) & (beta < b1)
        low = zz < zS1 - 40
        inb = inb & ~(low & ((bn < 0.15) | (bn > 0.75)))
        pvv = np.clip((3.0 - np.abs(rho - Rz)) / 1.5 + 0.5, 0, 1)
        shell = (pvv > 0) & inb & (zz < zc_) & (zz > zS1 - 130)
        crest = shell & (zz > zc_ - 7)
        val = (np.where(crest, F32(0.5 * bfac), np.where(shell, F32(0.3 * bfac), F32(0))) * pvv).astype(F32)
        np.maximum(B[sl], val, out=B[sl])
    # aortic plaques
    for _ in range(p.nplaq):
        zp = rng.uniform(zS1 - 20, c[0, 0])
        kk = int(np.argmin(np.abs(c[:, 0] - zp)))
        if zp > c[5, 0]:
            cx, cy = 14.0, c[kk, 2] + p.wy[kk] + 13
        else:
            f = (c[5, 0] - zp) / max(c[5, 0] - zS1 + 20, 1)
            cx, cy = 14.0 * rng.choice([-1, 1]) * (1 + 2.5 * f), c[5, 2] + p.wy[5] + 13 + 15 * f
        ang = rng.uniform(0, 2 * math.pi)
        px_, py_ = cx + 9 * math.cos(ang), cy + 9 * math.sin(ang)
        ln = rng.uniform(2, 9)
        r = rng.uniform(0.8, 1.8)
        reff = max(r, 1.1)
        capsule(g, B, (zp, px_, py_), (zp + ln, px_, py_), reff, reff, 0.9 * (r / reff) ** 2)
    return g, W, B, a, yoff


# ----------------------------------------------------------------------------- vertebrae
def make_texture(shape, T, rng):
    vox = VERT_VOX
    lam = float(np.clip(1.35 - 0.13 * T, 1.1, 2.1))
    k0 = 1.0 / lam
    kz = sfft.fftfreq(shape[0], vox).astype(F32)[:, None, None]
    kx = sfft.fftfreq(shape[1], vox).astype(F32)[None, :, None]
    ky = sfft.fftfreq(shape[2], vox).astype(F32)[None, None, :]
    kh = np.sqrt(kx * kx + ky * ky)
    kk = np.sqrt(kh * kh + kz * kz)
    bw = 0.45 * k0
    kzw = float(np.clip(0.10 + 0.02 * T, 0.025, 0.14))
    Gv = (np.exp(-0.5 * ((kh - k0) / bw) ** 2) * np.exp(-0.5 * (kz / kzw) ** 2)).astype(F32)
    Gh = (np.exp(-0.5 * ((kk - k0) / bw) ** 2) * (kz * kz / (kk * kk + 1e-6)) ** 1.5).astype(F32)
    N = np.empty(shape, np.complex64)
    N.real = rng.standard_normal(shape, dtype=F32)
    N.imag = rng.standard_normal(shape, dtype=F32)
    V = sfft.ifftn(N * Gv).real
    Hh = sfft.ifftn(N * Gh).imag
    sv = 1 - np.abs(V) / (V.std() + 1e-12)
    sh = 1 - np.abs(Hh) / (Hh.std() + 1e-12)
    hw = float(np.clip(0.72 + 0.1 * T, 0.15, 0.95))
    return np.maximum(sv, sh - (1 - hw)).astype(F32)


def body_box(H, wx, wy):
    return ((-H / 2 - 1.5, -wx * 1.08 - 1, -wy * 0.86 - 1), (H / 2 + 1.5, wx * 1.08 + 1, wy * 1.02 + 1))


def build_vertebra(k, p, tex, rng):
    H, wx, wy, sc = p.H[k], p.wx[k], p.wy[k], p.sz
    tpl = TPL[k] * sc
    vb = p.vbmd[k] / 1000.0
    T = p.T
    vox = VERT_VOX
    lo = np.array([-(H / 2 + 16), -(wx + tpl + 8), -(wy + 62 * sc)])
    hi = np.array([H / 2 + 15, wx + tpl + 8, wy + 8])
    g = Grid(lo, np.ceil((hi - lo) / vox).astype(int), vox)
    cort = float(np.clip(0.92 * (1 + 0.05 * T), 0.6, 1.0))
    f2 = float(np.clip(0.45 + 0.12 * T, 0.05, 0.8))
    # ---- body
    bl, bh = body_box(H, wx, wy)
    sl, z, x, y = g.sub(bl, bh)
    wyy = np.where(y > 0, wy, wy * 0.84)
    r2 = (x / wx) ** 2 + (y / wyy) ** 2
    bowl = np.clip(1 - r2, 0, 1)
    ztop = H / 2 - p.conc * bowl
    zbot = -H / 2 + p.conc * bowl
    fr = p.fract.get(k)
    dm = 1.0
    if fr is not None:
        typ, loss = fr
        if typ == 'wedge':
            ztop = ztop - loss * H * np.clip((y / wy + 1) / 2, 0, 1) ** 1.3
        elif typ == 'biconcave':
            dd = loss * H * 0.5 * bowl ** 0.7
            ztop, zbot = ztop - dd, zbot + dd
        else:
            ztop, zbot = ztop - loss * H * 0.5, zbot + loss * H * 0.5
        dm = 1 + 0.6 * loss
    ztop = np.maximum(ztop, 1.0)
    zbot = np.minimum(zbot, -1.0)
    sw = 1 - p.waist * (1 - np.clip(z / (H / 2), -1, 1) ** 2)
    zn = np.where(z > 0, z / ztop, z / zbot)
    inside = (np.sqrt(r2) / sw) ** 8 + zn ** 8 < 1
    core1 = ndi.binary_erosion(inside)
    core2 = ndi.binary_erosion(core1)
    n0, n1, n2 = inside.shape
    oz = rng.integers(0, tex.shape[0] - n0 + 1)
    ox = rng.integers(0, tex.shape[1] - n1 + 1)
    oy = rng.integers(0, tex.shape[2] - n2 + 1)
    sc_ = tex[oz:oz + n0, ox:ox + n1, oy:oy + n2]
    if rng.random() < 0.5:
        sc_ = sc_[:, ::-1, :]
    if rng.random() < 0.5:
        sc_ = sc_[::-1, :, :]
    vals = sc_[core2]
    target = vb * dm
    bvtv = float(np.clip(target / 1.05, 0.03, 0.4))
    kq = int((1 - bvtv) * (vals.size - 1))
    q = np.partition(vals, kq)[kq]
    strut = np.clip((sc_ - q) / 0.12 + 0.5, 0, 1).astype(F32)
    strut *= core2
    strut *= (1 + 0.12 * zn ** 4).astype(F32)
    mean = float(strut[core2].mean()) if core2.any() else 1.0
    tr = strut * F32(target / max(mean, 1e-3))
    bv = (y > -0.8 * wy) & (y < -0.25 * wy) & (np.abs(z) < 1.8) & (np.abs(x) < 4.5)
    tr = np.where(bv, tr * 0.35, tr)
    if p.scl[k] > 0:
        tr = tr + F32(p.scl[k]) * ((zn > 1 - 2.5 / (H / 2)) & core2)
    if fr is not None:
        tr = tr + F32(0.12 * fr[1]) * ((zn > 0.78) & (z > 0) & core2)
    shell2 = core1 & ~core2
    body = np.where(core2, tr, np.where(shell2, f2 * cort + (1 - f2) * tr,
                                        np.where(inside, F32(cort), F32(0)))).astype(F32)
    body_sl, body_in, body_val = sl, inside, body
    # ---- posterior elements
    ai, rim = 0.05 + 0.55 * vb, 0.72 * cort
    yb = -wy
    big = 1.25 if k == 6 else 1.0
    th = k < 2
    S = np.full(g.shape, -3.0, F32)
    for s in (-1, 1):
        for zp in np.linspace(H * 0.22, H * 0.22 - 6.5, 4):
            capsule(g, S, (zp, s * wx * 0.6, -wy * 0.55), (zp, s * wx * 0.66, yb - 14 * sc),
                    4.3 * sc * big, 4.0 * sc * big, 0, op='sdf')
        for zl in np.linspace(H * 0.22, H * 0.22 - 12, 5):
            capsule(g, S, (zl, s * wx * 0.64, yb - 16 * sc), (zl - 4, s * 3.5, yb - 27 * sc),
                    3.4 * sc, 3.2 * sc, 0, op='sdf')
        tp_up = 4.0 if th else 1.0
        capsule(g, S, (H * 0.17, s * wx * 0.68, yb - 12 * sc),
                (H * 0.17 + tp_up, s * (wx + tpl), yb - (16 if th else 9) * sc),
                3.6 * sc * big, 2.7 * sc * big, 0, op='sdf')
        capsule(g, S, (H * 0.22 + 1, s * (wx * 0.7 + 2), yb - 18 * sc),
                (H / 2 + 9, s * (wx * 0.78 + 3.5), yb - 20 * sc), 4.2 * sc, 3.8 * sc, 0, op='sdf')
        capsule(g, S, (-H * 0.05, s * wx * 0.42, yb - 25 * sc),
                (-H / 2 - 9, s * wx * 0.5, yb - 22 * sc), 4.0 * sc, 3.6 * sc, 0, op='sdf')
    spd = 16 if th else 5
    for zsp in np.linspace(H * 0.12 + 3, H * 0.12 - 7, 5):
        capsule(g, S, (zsp, 0, yb - 25 * sc), (zsp - spd, 0, yb - 56 * sc),
                3.3 * sc, 4.2 * sc, 0, op='sdf')
    pv = np.clip(S / VERT_VOX + 0.5, 0, 1)
    A = np.where(S > 0.8, F32(ai), F32(rim) * pv).astype(F32)
    del S
    sub = A[body_sl]
    sub[body_in] = body_val[body_in]
    # ---- osteophytes
    if p.osteo[k]:
        for _ in range(rng.integers(1, 5)):
            gm = rng.uniform(-0.3, math.pi + 0.3)
            sgn = rng.choice([-1, 1])
            px_, py_ = wx * math.cos(gm) * 0.98, wy * math.sin(gm) * 0.98
            ln = rng.uniform(2, 6)
            capsule(g, A, (sgn * (H / 2 - 2), px_, py_),
                    (sgn * (H / 2 + ln * 0.6), px_ * (1 + ln / 40), py_ * (1 + ln / 40)),
                    2.6, 1.0, 0.5, 0.75, 0.8)
    return g, A


# ----------------------------------------------------------------------------- study
def sample_study(p, seed, idx):
    rng = np.random.default_rng([seed, idx, 4242])
    vk = str(rng.choice(['A', 'B', 'C', 'D'], p=[0.3, 0.25, 0.2, 0.25]))
    V = VENDORS[vk]
    st = types.SimpleNamespace(vk=vk, V=V, bmi=p.bmi)
    st.mono1 = bool(rng.random() < 0.2)
    st.bits = int(rng.integers(V['bits'][0], V['bits'][1] + 1))
    st.ps = float(round(rng.uniform(*V['ps']), 3))
    st.portable = V['proc'] == 'portable'
    st.views = {}
    for view in ('AP', 'LAT'):
        vg = {}
        vg['theta'] = math.radians(rng.uniform(4, 12) * rng.choice([-1, 1]) if st.portable
                                   else rng.normal(0, 2.0))
        vg['sid'] = float(rng.uniform(950, 1000) if st.portable else rng.uniform(1000, 1150))
        vg['gap'] = float(rng.uniform(55, 80) if st.portable else rng.uniform(40, 65))
        base = 80 if view == 'AP' else 92
        vg['kvp'] = int(round(base + rng.uniform(-6, 8) - (6 if st.portable else 0)))
        vg['al'] = float(rng.uniform(2.5, 4.0))
        vg['du'] = float(rng.normal(0, 8))
        vg['dz'] = float(rng.normal(0, 12))
        vg['heel'] = float(rng.uniform(0.05, 0.18) * rng.choice([-1, 1]))
        vg['dose'] = float(V['dose'] * rng.uniform(0.7, 1.4))
        if st.portable:
            vg['fw'] = float(rng.uniform(0.6, 0.95))
            vg['fh'] = float(rng.uniform(0.75, 1.0))
            vg['fdx'] = float(rng.uniform(-0.15, 0.15))
            vg['fdy'] = float(rng.uniform(-0.1, 0.1))
            vg['frot'] = float(rng.uniform(-6, 6))
        else:
            vg['fw'] = float(rng.uniform(0.55, 0.8) if view == 'AP' else rng.uniform(0.6, 0.9))
            vg['fh'] = float(rng.uniform(0.85, 1.05))
            vg['fdx'] = float(rng.uniform(-0.04, 0.04))
            vg['fdy'] = float(rng.uniform(-0.03, 0.03))
            vg['frot'] = float(rng.normal(0, 1.0))
        st.views[view] = vg
    return st


def spectrum(kvp, al_mm):
    w = np.clip(kvp - E_BINS, 0, None) * np.exp(-MU_AL * 2.7 * al_mm / 10.0)
    w *= 1 - np.exp(-2.5 * (60.0 / E_BINS) ** 2.5)
    return w / w.sum()


def detector_geometry(st, view, sp, p):
    ps = st.ps
    R = min(1400, int(round(430 / ps)))
    C = min(1400, int(round(355 / ps)))
    vg = st.views[view]
    th = vg['theta']
    c3 = sp.c[4]
    if view == 'AP':
        uc = c3[1] * math.cos(th) + c3[2] * math.sin(th) + vg['du']
    else:
        uc = -c3[1] * math.sin(th) + c3[2] * math.cos(th) - 12 + vg['du']
    return dict(R=R, C=C, ps=ps, rc=(R - 1) / 2.0, cc=(C - 1) / 2.0, uc=uc, zc=c3[0] + vg['dz'])


LOWF = 3


def half_geo(geo):
    h = dict(geo)
    h['ps'] = geo['ps'] * LOWF
    h['rc'] = (geo['rc'] - (LOWF - 1) / 2.0) / LOWF
    h['cc'] = (geo['cc'] - (LOWF - 1) / 2.0) / LOWF
    return h


def magn(vg, oid):
    return vg['sid'] / (vg['sid'] - max(oid, 5.0))


# ----------------------------------------------------------------------------- render
def project_all(p, sp, st, rng):
    g, W, B, a_z, yoff = build_trunk(p, sp, rng)
    out = {}
    for view in ('AP', 'LAT'):
        vg = st.views[view]
        geo = detector_geometry(st, view, sp, p)
        hg = half_geo(geo)
        Rh, Ch = -(-geo['R'] // LOWF), -(-geo['C'] // LOWF)
        Wh = np.zeros((Rh, Ch), F32)
        Bh = np.zeros((Rh, Ch), F32)
        th = vg['theta']
        if view == 'AP':
            axis, sho, nax = 2, math.tan(th), W.shape[2]
            back = (yoff - p.bb).min()
        else:
            axis, sho, nax = 1, -math.tan(th), W.shape[1]
            back = -a_z.max()
        A2 = np.diag([math.cos(th), 1.0])
        nsl = 5
        edges = np.linspace(0, nax, nsl + 1).astype(int)
        for i in range(nsl):
            j0, j1 = edges[i], edges[i + 1]
            dmid = g.lo[axis] + (j0 + j1) / 2 * g.vox
            if view == 'AP':
                oid = dmid * math.cos(th) - back + vg['gap']
            else:
                oid = -back - dmid * math.cos(th) + vg['gap']
            M = magn(vg, oid)
            for arr, acc in ((W, Wh), (B, Bh)):
                pr, lz, lo_ = shear_project(arr, axis, g, 0.0, sho, j0, j1)
                paste(acc, hg, M, pr, lz, lo_, g.vox, 0.0, 0.0, A2, g.vox / 10 / math.cos(th))
        out[view] = dict(geo=geo, Wh=Wh, Bh=Bh, Bf=np.zeros((geo['R'], geo['C']), F32),
                         back=back)
    del W, B
    # vertebrae
    shapes = [np.ceil((np.array(body_box(p.H[k], p.wx[k], p.wy[k])[1]) -
                       np.array(body_box(p.H[k], p.wx[k], p.wy[k])[0])) / VERT_VOX).astype(int) + 2
              for k in range(7)]
    tshape = tuple(int(sfft.next_fast_len(int(s) + 8)) for s in np.max(shapes, axis=0))
    tex = make_texture(tshape, p.T, rng)
    for k in range(7):
        vg_, A = build_vertebra(k, p, tex, rng)
        ck = sp.c[k]
        phi, psi = sp.phi[k], sp.psi[k]
        for view in ('AP', 'LAT'):
            o = out[view]
            vg = st.views[view]
            th = vg['theta']
            if view == 'AP':
                pr, lz, lo_ = shear_project(A, 2, vg_, -math.tan(phi), math.tan(th))
                Amat = rot2(psi) @ np.diag([math.cos(th), math.cos(phi)])
                cu = ck[1] * math.cos(th) + ck[2] * math.sin(th)
                depth = -ck[1] * math.sin(th) + ck[2] * math.cos(th)
                oid = depth - o['back'] + vg['gap']
                sc = VERT_VOX / 10 / (math.cos(phi) * math.cos(th))
            else:
                pr, lz, lo_ = shear_project(A, 1, vg_, -math.tan(psi), -math.tan(th))
                Amat = rot2(phi) @ np.diag([math.cos(th), math.cos(psi)])
                cu = -ck[1] * math.sin(th) + ck[2] * math.cos(th)
                depth = ck[1] * math.cos(th) + ck[2] * math.sin(th)
                oid = -o['back'] - depth + vg['gap']
                sc = VERT_VOX / 10 / (math.cos(psi) * math.cos(th))
            paste(o['Bf'], o['geo'], magn(vg, oid), pr, lz, lo_, VERT_VOX, cu, ck[0], Amat, sc)
        del A
    for view in ('AP', 'LAT'):
        o = out[view]
        R, C = o['geo']['R'], o['geo']['C']
        o['W'] = upsample(o.pop('Wh'), LOWF, (R, C))
        o['B'] = upsample(o.pop('Bh'), LOWF, (R, C)) + o.pop('Bf')
    return out


def field_mask(R, C, vg, ps):
    rr = (np.arange(R, dtype=F32) - (R - 1) / 2 - vg['fdy'] * R)[:, None]
    cc = (np.arange(C, dtype=F32) - (C - 1) / 2 - vg['fdx'] * C)[None, :]
    a = math.radians(vg['frot'])
    u = cc * math.cos(a) + rr * math.sin(a)
    w = -cc * math.sin(a) + rr * math.cos(a)
    pen = 1.2 / ps
    fu = np.clip((vg['fw'] * C / 2 - np.abs(u)) / pen + 0.5, 0, 1)
    fv = np.clip((vg['fh'] * R / 2 - np.abs(w)) / pen + 0.5, 0, 1)
    return (fu * fv).astype(F32)


def expose(o, st, view, rng):
    V, vg = st.V, st.views[view]
    W, B = o['W'], o['B']
    R, C = W.shape
    ps = st.ps
    if st.portable:
        W = W + F32(rng.uniform(1.5, 3.0))          # mattress / bed
    w = spectrum(vg['kvp'], vg['al'])
    P = np.zeros_like(W)
    for e in range(len(E_BINS)):
        if w[e] < 1e-3:
            continue
        P += F32(w[e]) * np.exp(-F32(MU_W[e]) * W - F32(MU_HA[e]) * B)
    fld = field_mask(R, C, vg, ps)
    P *= fld
    body = W > 4.0
    wmean = float(W[body].mean()) if body.any() else 15.0
    if V['grid']:
        spr = (0.35 if view == 'AP' else 0.6) * (wmean / 20.0) ** 0.8
        if V['proc'] == 'cr':
            P *= (1 + 0.012 * np.sin(2 * math.pi * 0.23 * np.arange(C, dtype=F32)))[None, :]
    else:
        spr = min(4.0, (1.6 if view == 'AP' else 2.2) * (wmean / 20.0) ** 0.5)
    S = F32(spr) * fblur(P * np.clip(W / 15.0, 0, 1), 70.0 / ps)
    rn = (np.arange(R, dtype=F32) / R - 0.5)[:, None]
    cn = (np.arange(C, dtype=F32) / C - 0.5)[None, :]
    heel = (1 + vg['heel'] * rn) * (1 - 0.08 * (rn * rn + cn * cn))
    I = (P + S + 2e-5) * heel
    cen = body[R // 3:2 * R // 3, C // 3:2 * C // 3]
    ic = I[R // 3:2 * R // 3, C // 3:2 * C // 3][cen]
    med = float(np.median(ic)) if ic.size else 0.01
    N0 = vg['dose'] / max(med, 1e-5)
    if st.portable:                                  # no AEC: heavy patients get noisier
        N0 *= min(1.5, (27.0 / st.bmi) ** 2)
    q = I * F32(N0)
    q = q + np.sqrt(q + 4.0) * rng.standard_normal(q.shape, dtype=F32)
    q = ndi.gaussian_filter(np.maximum(q, 0.5), V['mtf'])
    D = -np.log(q / F32(N0))
    return D.astype(F32), fld, body


def sigm(y, c, gain):
    return 1.0 / (1.0 + np.exp(-(y - c) * gain))


def process(D, fld, body, st, rng):
    proc = st.V['proc']
    R, C = D.shape
    m = (fld > 0.5) & body
    sub = D[::3, ::3][m[::3, ::3]]
    if sub.size < 100:
        sub = D[::3, ::3].ravel()
    lo, hi = np.percentile(sub, [0.5, 99.8])
    x = np.clip((D - lo) / max(hi - lo, 1e-3), -0.3, 1.3).astype(F32)
    ps = st.ps
    if proc == 'multiscale':
        g1, g2, g3, g4 = (fblur(x, s / ps) for s in (0.4, 1.5, 5.0, 16.0))
        base = fblur(x, 45.0 / ps)
        y = 0.45 * base + 1.5 * (g4 - base) + 2.0 * (g3 - g4) + 2.0 * (g2 - g3) + 1.2 * (g1 - g2) + 0.6 * (x - g1)
        gain = 6.0
    elif proc == 'cr':
        y = x + 0.7 * (x - fblur(x, 2.5 / ps))
        y = y - 0.5 * (fblur(y, 35.0 / ps) - 0.5)
        gain = 5.5
    elif proc == 'portable':
        y = x + 0.3 * (x - fblur(x, 6.0 / ps))
        y = y - 0.3 * (fblur(y, 40.0 / ps) - 0.5)
        gain = 4.6
    else:
        y = x + 0.55 * (x - fblur(x, 1.3 / ps))
        y = y - 0.6 * (fblur(y, 30.0 / ps) - 0.5)
        gain = 6.0
    ctr = y[int(R * 0.3):int(R * 0.7), int(C * 0.4):int(C * 0.6)]
    cm = m[int(R * 0.3):int(R * 0.7), int(C * 0.4):int(C * 0.6)]
    c0 = float(np.median(ctr[cm])) if cm.any() else 0.5
    c0 = c0 - 0.05 + 0.05 * rng.standard_normal()
    v = sigm(y, c0, gain)
    v0, v1 = sigm(np.float32(-0.1), c0, gain), sigm(np.float32(1.2), c0, gain)
    v = (v - v0) / (v1 - v0)
    if proc == 'portable':
        v = 0.08 + 0.8 * v
    v = np.clip(v, 0, 1).astype(F32)
    if st.V['shutter']:
        v = np.where(fld < 0.5, F32(1.0), v)
    return v


def burn_text(v, lines, r0, c0, scale, val, right=False):
    from PIL import Image, ImageDraw, ImageFont
    font = ImageFont.load_default()
    im = Image.new('L', (520, 14 * len(lines) + 6), 0)
    d = ImageDraw.Draw(im)
    for i, s in enumerate(lines):
        d.text((2, 2 + 13 * i), s, fill=255, font=font)
    a = np.array(im) > 80
    ys, xs = np.nonzero(a)
    if ys.size == 0:
        return
    a = a[:ys.max() + 2, :xs.max() + 2]
    a = np.kron(a, np.ones((scale, scale), bool))
    R, C = v.shape
    h, w = a.shape
    if right:
        c0 = C - c0 - w
    r0, c0 = max(0, min(r0, R - h)), max(0, min(c0, C - w))
    a = a[:R - r0, :C - c0]
    reg = v[r0:r0 + a.shape[0], c0:c0 + a.shape[1]]
    reg[a] = F32(0.03) if float(reg.mean()) > 0.55 else F32(val)


def marker(v, letter, r0, c0, scale):
    from PIL import Image, ImageDraw, ImageFont
    font = ImageFont.load_default()
    im = Image.new('L', (14, 16), 0)
    d = ImageDraw.Draw(im)
    d.rectangle((0, 0, 13, 15), outline=255)
    d.text((4, 2), letter, fill=255, font=font)
    a = np.kron(np.array(im) > 80, np.ones((scale, scale), bool))
    R, C = v.shape
    r0, c0 = max(0, min(r0, R - a.shape[0])), max(0, min(c0, C - a.shape[1]))
    v[r0:r0 + a.shape[0], c0:c0 + a.shape[1]][a] = 0.97


def finish(v, p, st, view, rng):
    R, C = v.shape
    V = st.V
    if view == 'LAT' and V['flip_lat']:
        v = v[:, ::-1].copy()
    sc = max(2, int(round(0.9 / st.ps)))
    tv = 0.95 if st.vk != 'B' else 0.85
    lines = [V['inst'], '%s  %s' % (p.surname, p.pid), '%s %s' % (p.date, 'L-SPINE ' + ('AP' if view == 'AP' else 'LAT'))]
    if st.portable:
        lines.append('PORTABLE  SUPINE')
    burn_text(v, lines, int(12 / st.ps), int(10 / st.ps), sc, tv)
    burn_text(v, ['%d kV' % st.views[view]['kvp'], V['model']], R - int(20 / st.ps) - 30 * sc, int(10 / st.ps), sc, tv, right=True)
    vg = st.views[view]
    fc = (C - 1) / 2 + (-1 if (view == 'LAT' and V['flip_lat']) else 1) * vg['fdx'] * C
    half = vg['fw'] * C / 2
    mw = 14 * (sc + 2)
    if view == 'AP':
        cm = fc - half + rng.uniform(0.02, 0.06) * C
        marker(v, 'R', int(rng.uniform(0.12, 0.3) * R), int(max(cm, 0)), sc + 2)
    else:
        cm = fc + half - mw - rng.uniform(0.02, 0.06) * C
        marker(v, 'L', int(rng.uniform(0.12, 0.3) * R), int(min(cm, C - mw)), sc + 2)
    maxv = (1 << st.bits) - 1
    img = np.rint(v * maxv).astype(np.uint16)
    if st.mono1:
        img = (maxv - img).astype(np.uint16)
    return img


# ----------------------------------------------------------------------------- DICOM
def write_dicom(path, img, p, st, view, seed, idx):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    V = st.V
    dx = V['modality'] == 'DX'
    sop_class = '1.2.840.10008.5.1.4.1.1.1.1' if dx else '1.2.840.10008.5.1.4.1.1.1'
    ent = ['phantom_t', str(seed), str(idx)]
    study_uid = generate_uid(entropy_srcs=ent + ['study'])
    series_uid = generate_uid(entropy_srcs=ent + ['series', view])
    sop_uid = generate_uid(entropy_srcs=ent + ['sop', view])
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = sop_class
    fm.MediaStorageSOPInstanceUID = sop_uid
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    fm.ImplementationClassUID = generate_uid(entropy_srcs=['phantom_t implementation'])
    fm.ImplementationVersionName = 'PHANTOM_T_1'
    ds = FileDataset(path, {}, file_meta=fm, preamble=b'\0' * 128)
    vg = st.views[view]
    maxv = (1 << st.bits) - 1
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.ImageType = ['ORIGINAL', 'PRIMARY']
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = p.date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = p.time
    ds.AccessionNumber = 'A%d%05d' % (seed % 1000, idx)
    ds.Modality = V['modality']
    ds.Manufacturer = V['maker']
    ds.ManufacturerModelName = V['model']
    ds.InstitutionName = V['inst'].title()
    ds.ReferringPhysicianName = ''
    ds.StudyDescription = 'LUMBAR SPINE 2 VIEWS'
    ds.SeriesDescription = 'L-SPINE ' + ('AP' if view == 'AP' else 'LATERAL')
    ds.PatientName = '%s^%s' % (p.surname, p.given)
    ds.PatientID = p.pid
    ds.PatientBirthDate = ''
    ds.PatientSex = p.sex
    ds.PatientAge = '%03dY' % p.age
    ds.StudyID = '%d' % (idx + 1)
    ds.SeriesNumber = 1 if view == 'AP' else 2
    ds.InstanceNumber = 1
    ds.BodyPartExamined = 'LSPINE'
    ds.ViewPosition = 'AP' if view == 'AP' else 'LL'
    ds.PatientPosition = ''
    flip = view == 'LAT' and V['flip_lat']
    ds.PatientOrientation = ['L', 'F'] if view == 'AP' else (['P', 'F'] if flip else ['A', 'F'])
    ds.KVP = str(vg['kvp'])
    ds.DistanceSourceToDetector = '%.1f' % vg['sid']
    ds.ImagerPixelSpacing = ['%.4f' % st.ps, '%.4f' % st.ps]
    ds.PixelSpacing = ['%.4f' % st.ps, '%.4f' % st.ps]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = 'MONOCHROME1' if st.mono1 else 'MONOCHROME2'
    ds.Rows, ds.Columns = int(img.shape[0]), int(img.shape[1])
    ds.BitsAllocated = 16
    ds.BitsStored = st.bits
    ds.HighBit = st.bits - 1
    ds.PixelRepresentation = 0
    ds.WindowCenter = str(int(maxv // 2))
    ds.WindowWidth = str(int(maxv))
    ds.RescaleIntercept = '0'
    ds.RescaleSlope = '1'
    ds.BurnedInAnnotation = 'YES'
    ds.LossyImageCompression = '00'
    if dx:
        ds.RescaleType = 'US'
        ds.PresentationIntentType = 'FOR PRESENTATION'
        ds.PresentationLUTShape = 'INVERSE' if st.mono1 else 'IDENTITY'
        ds.DetectorType = 'SCINTILLATOR'
        ds.PixelIntensityRelationship = 'LOG'
        ds.PixelIntensityRelationshipSign = 1 if st.mono1 else -1
        ds.Grid = 'IN' if V['grid'] else 'NONE'
    ds.PixelData = img.astype('<u2').tobytes()
    ds.save_as(path, enforce_file_format=True)


# ----------------------------------------------------------------------------- driver
def make_patient(args):
    outdir, seed, idx = args
    p = sample_patient(seed, idx)
    st = sample_study(p, seed, idx)
    rng = np.random.default_rng([seed, idx, 1])
    sp = trace_spine(p, rng)
    proj = project_all(p, sp, st, rng)
    rows = []
    for vi, view in enumerate(('AP', 'LAT')):
        vr = np.random.default_rng([seed, idx, 10 + vi])
        D, fld, body = expose(proj[view], st, view, vr)
        v = process(D, fld, body, st, vr)
        img = finish(v, p, st, view, vr)
        fn = '%s_%s.dcm' % (p.pid, view)
        write_dicom(os.path.join(outdir, fn), img, p, st, view, seed, idx)
        rows.append([fn, p.label, '%.2f' % p.T, '%.3f' % p.bmd, p.pid, view])
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description='Voxel-volume lumbar-spine radiograph phantom.')
    ap.add_argument('outdir')
    ap.add_argument('n', type=int)
    ap.add_argument('seed', type=int)
    ap.add_argument('--workers', type=int, default=1)
    a = ap.parse_args(argv)
    os.makedirs(a.outdir, exist_ok=True)
    jobs = [(a.outdir, a.seed, i) for i in range(a.n)]
    if a.workers > 1 and a.n > 1:
        import multiprocessing as mp
        with mp.get_context('spawn').Pool(a.workers) as pool:
            res = pool.map(make_patient, jobs, chunksize=1)
    else:
        res = [make_patient(j) for j in jobs]
    with open(os.path.join(a.outdir, 'manifest.csv'), 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['path', 'label', 't_score', 'bmd', 'patient_id', 'view'])
        for rows in res:
            w.writerows(rows)
    return 0


if __name__ == '__main__':
    sys.dont_write_bytecode = True
    sys.exit(main())
