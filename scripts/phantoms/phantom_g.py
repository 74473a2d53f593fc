#!/usr/bin/env python3
"""phantom_g.py -- independent synthetic adult lumbar-spine radiograph generator (AP + lateral).

Usage: phantom_g.py OUTDIR N_STUDIES SEED

Writes OUTDIR/<PatientID>_AP.dcm, OUTDIR/<PatientID>_LAT.dcm (PatientID = PG<SEED>-<nnnnn>) and
OUTDIR/manifest.csv (path,label,t_score,bmd,patient_id,view).  Everything is drawn from
numpy.random.default_rng([SEED, study]) so the same seed gives byte-identical files.

Anatomy (one 3-D patient, projected twice)
  * Patient frame in mm: X patient-left, Y anterior, Z cranial, origin at the L3 body centre.
    T11..L5 are stacked along a lordotic / slightly scoliotic curve (per-level sagittal tilt,
    coronal tilt and axial rotation); disc heights shrink with per-disc degeneration.
  * Every bone is a union of signed-distance solids (vertebral body = waisted elliptic prism with
    flat posterior wall and concave endplates; pedicles = elliptic capsules; laminae = plates;
    spinous / transverse / articular processes = boxes and capsules; sacrum = tilted tapering
    chain of fused bodies with alae and carved foramina; ilia = a clipped ellipsoidal bowl shell
    with a thick crest rim; femoral heads).  Each solid has a cortical shell of its own thickness
    around a trabecular core, anti-aliased at the voxel scale.  Solids are voxelised *in the
    beam-aligned frame of each view* (0.6 mm vertebrae, 0.9 mm sacrum, 1.6 mm ilia), summed
    along the beam in 10 mm depth slabs, and every slab is placed on the detector with its own
    magnification (point source, divergent beam), which gives double endplate / pedicle contours
    away from the central ray and left/right magnification differences on the lateral.
  * Ribs T10-T12 and aortic-wall calcifications are cortical tubes projected analytically.
  * Soft tissue is analytic ray / quadric intersection per detector pixel along the true
    divergent ray: trunk elliptic cylinder whose width/depth vary with height (waist, hips,
    habitus from a BMI draw), a subcutaneous fat layer, visceral fat fraction, psoas and
    paraspinal muscles, kidneys with perirenal fat, liver, lung bases above two diaphragm domes,
    colon / small-bowel gas blobs and mottled stool bubbles, occasional disc vacuum gas.
  * Extras: lead L/R marker in the beam, occasional bra hooks / navel piercing.

Physics
  * Tungsten spectrum (Kramers + K lines), kVp per view (lateral higher), Al + optional Cu
    filtration; tabulated mass attenuation of water, cortical bone, Al, Cu and the detector
    phosphor (CsI, Gd2O2S, a-Se or BaFBr storage phosphor).  Fat = 0.85 water, air/gas removes
    water, bone is "cortical-bone-equivalent" excess attenuation over water.  A 2-D log-signal
    look-up table over (water path, bone path) gives energy-integrated, beam-hardened primary.
  * Heel effect, collimator (slightly rotated, penumbra, leakage), thickness-dependent
    scatter-to-primary ratio with/without anti-scatter grid convolved by a broad kernel,
    AEC-normalised exposure, quantum noise, detector MTF (Gaussian + glare tail; CR with an
    anisotropic laser-scatter tail), electronic noise, CR plate structure noise.

Vendor processing (8 fictional "vendors", 2 of them CR)
  * log, histogram analysis of the collimated anatomy, multi-band unsharp masking,
    dynamic-range (low-frequency) compression, S-curve / gamma / linear tone LUT, optional
    noise smoothing, shutter masking or cropping to the collimation, burned-in text,
    MONOCHROME1 or MONOCHROME2, 10/12/14/15/16 bit stored, with or without rescale, window
    centre/width (sometimes VOI LUT function SIGMOID), or a barely processed "log raw" image
    that needs its header window.  Pixel spacing 0.1-0.2 mm, detectors 24x30 to 43x43 cm,
    images at most 2500 px a side; occasional horizontal flip (PatientOrientation follows).

How bone density shows
  * T-score drives volumetric mineral: trabecular bone volume fraction 0.17*(1+0.165 T)
    (plus a little individual scatter), vertebral cortical shell 0.95*(1+0.07 T) mm thick
    and cortical mineralisation (1+0.025 T); posterior elements, sacrum, ilia and ribs follow
    more weakly.  Trabecular projection is modulated by anisotropic texture that becomes
    coarser, more vertically striated and higher in relative contrast as T falls (loss of
    horizontal trabeculae, "picture-frame" vertebrae where the cortex dominates).
  * Confounders: age correlates with T; degeneration with age (disc narrowing, marginal
    osteophytes, endplate sclerosis, facet hypertrophy, vacuum discs, aortic calcification)
    adds density; compression fractures (wedge / biconcave / crush, with condensation bands)
    get likelier at low T; habitus changes scatter, noise and body contrast; vendor
    processing re-normalises the grey levels so absolute brightness is not a direct cue.
  * manifest bmd = 1.047 + 0.11*T (L1-L4 areal BMD in g/cm^2).
"""
import sys, os, math, hashlib, datetime
import numpy as np
from scipy import ndimage
from PIL import Image, ImageDraw, ImageFont
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

F32 = np.float32

# ----------------------------------------------------------------------------- attenuation data
_E9 = [15, 20, 30, 40, 50, 60, 80, 100, 150]
MU = {  # mass attenuation coefficients, cm^2/g (NIST-like values)
    'water': (_E9, [1.673, 0.8096, 0.3756, 0.2683, 0.2269, 0.2059, 0.1837, 0.1707, 0.1505]),
    'bone': (_E9, [9.032, 4.001, 1.331, 0.6655, 0.4242, 0.3148, 0.2229, 0.1855, 0.1480]),
    'al': (_E9, [7.955, 3.441, 1.128, 0.5685, 0.3681, 0.2778, 0.2018, 0.1704, 0.1378]),
    'cu': (_E9, [74.05, 33.79, 10.92, 4.862, 2.613, 1.593, 0.7630, 0.4584, 0.2217]),
    'CsI': ([15, 20, 30, 33.1, 33.2, 35.9, 36.0, 40, 50, 60, 80, 100, 150],
            [50, 25, 8.5, 6.6, 22, 18, 30, 24, 13.5, 8.5, 4.1, 2.3, 0.85]),
    'BaFBr': ([15, 20, 30, 37.3, 37.5, 40, 50, 60, 80, 100, 150],
              [38, 18, 6.2, 3.5, 15, 13, 7.6, 4.8, 2.4, 1.4, 0.55]),
    'GOS': ([15, 20, 30, 40, 50.1, 50.3, 60, 80, 100, 150],
            [45, 22, 7.5, 3.4, 1.9, 10.5, 6.8, 3.5, 2.0, 0.75]),
    'aSe': (_E9, [45, 25, 8.4, 3.9, 2.2, 1.4, 0.67, 0.40, 0.20]),
}
DET_MASS = {'CsI': 0.16, 'BaFBr': 0.10, 'GOS': 0.11, 'aSe': 0.22}  # g/cm^2


def mu_of(name, E):
    e, m = MU[name]
    return np.exp(np.interp(np.log(E), np.log(e), np.log(m)))


def physics_lut(kvp, al_mm, cu_mm, det):
    """log(relative energy-integrated signal) on a (water mm, bone mm) grid."""
    E = np.arange(15.0, kvp, 1.0) + 0.5
    N = (kvp - E) / E
    for el, w in ((58.6, 0.05), (59.3, 0.09), (67.2, 0.03)):
        if kvp > 72:
            N = N + w * (kvp - 69.5) / 30.0 * np.exp(-0.5 * ((E - el) / 0.8) ** 2) * N.max()
    N *= np.exp(-mu_of('al', E) * 2.699 * al_mm / 10 - mu_of('cu', E) * 8.96 * cu_mm / 10)
    eta = 1 - np.exp(-mu_of(det, E) * DET_MASS[det])
    w = N * eta * E
    w = w / w.sum()
    muw = mu_of('water', E) / 10.0                           # per mm of water
    mub = (mu_of('bone', E) * 1.92 - mu_of('water', E)) / 10.0  # excess per mm cortical bone
    tw = np.linspace(0, 720, 73)
    tb = np.linspace(0, 120, 61)
    att = np.exp(-(tw[:, None, None] * muw + tb[None, :, None] * mub))
    S = (att * w).sum(-1)
    return np.log(S), 10.0, 2.0


# ----------------------------------------------------------------------------- small helpers
def rotx(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def roty(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rotz(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def resize(a, shape, method=Image.BILINEAR):
    return np.asarray(Image.fromarray(np.ascontiguousarray(a, dtype=F32), 'F').resize(
        (int(shape[1]), int(shape[0])), method), dtype=F32)


def gblur(a, sig, mode='nearest'):
    """Gaussian blur, sig in pixels (scalar or (sy, sx)); large kernels via a decimated grid."""
    sy, sx = (sig, sig) if np.isscalar(sig) else sig
    if max(sy, sx) < 4:
        return ndimage.gaussian_filter(a, (sy, sx), mode=mode, truncate=3.0).astype(F32)
    f = max(1, int(min(sy, sx) / 2.5))
    h, w = a.shape
    small = resize(a, (max(2, h // f), max(2, w // f)), Image.BOX)
    small = ndimage.gaussian_filter(small, (sy / f, sx / f), mode=mode, truncate=3.0)
    return resize(small, (h, w), Image.BILINEAR)


def combine(dxy, dz):
    return np.sqrt(np.maximum(dxy, 0) ** 2 + np.maximum(dz, 0) ** 2) + np.minimum(np.maximum(dxy, dz), 0)


def seg_dist(x, y, z, p0, p1, zs=1.0):
    """distance from points to the 3-D segment p0-p1 (z scaled by zs about the segment)."""
    p0 = np.asarray(p0, float)
    p1 = np.asarray(p1, float)
    ba = p1 - p0
    bb = float(ba @ ba) + 1e-9
    px, py, pz = x - p0[0], y - p0[1], z - p0[2]
    h = np.clip((px * ba[0] + py * ba[1] + pz * ba[2]) / bb, 0, 1)
    dx, dy, dz = px - ba[0] * h, py - ba[1] * h, (pz - ba[2] * h) * zs
    return np.sqrt(dx * dx + dy * dy + dz * dz)


def seg_dist2d(x, y, p0, p1):
    ba = (p1[0] - p0[0], p1[1] - p0[1])
    bb = ba[0] ** 2 + ba[1] ** 2 + 1e-9
    px, py = x - p0[0], y - p0[1]
    h = np.clip((px * ba[0] + py * ba[1]) / bb, 0, 1)
    return np.hypot(px - ba[0] * h, py - ba[1] * h)


def sdf_ellipsoid(x, y, z, c, r):
    X, Y, Z = (x - c[0]) / r[0], (y - c[1]) / r[1], (z - c[2]) / r[2]
    q = np.sqrt(X * X + Y * Y + Z * Z) + 1e-6
    g = np.sqrt((X / r[0]) ** 2 + (Y / r[1]) ** 2 + (Z / r[2]) ** 2) / q + 1e-6
    return (q - 1) / g


def sdf_box(x, y, z, c, half, rnd=1.0):
    qx = np.abs(x - c[0]) - half[0] + rnd
    qy = np.abs(y - c[1]) - half[1] + rnd
    qz = np.abs(z - c[2]) - half[2] + rnd
    out = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2 + np.maximum(qz, 0) ** 2)
    return out + np.minimum(np.maximum(np.maximum(qx, qy), qz), 0) - rnd


class Shape:
    def __init__(self, fn, bmin, bmax, tc, rc, rt):
        self.fn, self.bmin, self.bmax = fn, np.asarray(bmin, float), np.asarray(bmax, float)
        self.tc, self.rc, self.rt = tc, rc, rt


class BoneObj:
    def __init__(self, c, R, shapes, vox):
        self.c, self.R, self.shapes, self.vox = np.asarray(c, float), R, shapes, vox


def corners(bmin, bmax):
    return np.array([[bmin[0] if i & 1 else bmax[0], bmin[1] if i & 2 else bmax[1],
                      bmin[2] if i & 4 else bmax[2]] for i in range(8)])


# ----------------------------------------------------------------------------- view / detector
class View:
    """q = R p + t maps patient mm to the beam frame (u right, w up, d toward the source)."""

    def __init__(self, R, t, sid, u_left, w_top, ws, shape):
        self.R, self.t, self.sid = R, t, sid
        self.u_left, self.w_top, self.ws, self.shape = u_left, w_top, ws, shape

    def mag(self, d):
        return self.sid / (self.sid - d)

    def to_pix(self, q):
        m = self.mag(q[..., 2])
        return (q[..., 0] * m - self.u_left) / self.ws, (self.w_top - q[..., 1] * m) / self.ws

    def rays(self, r0, r1, c0, c1):
        """patient-frame origin (detector point) and direction (to the source) for a pixel window."""
        ud = self.u_left + (np.arange(c0, c1, dtype=np.float64) + 0.5) * self.ws
        wd = self.w_top - (np.arange(r0, r1, dtype=np.float64) + 0.5) * self.ws
        U, W = np.meshgrid(ud, wd)
        Rt = self.R.T
        qo = np.stack([U, W, np.zeros_like(U)])
        qs = np.stack([-U, -W, np.full_like(U, self.sid)])
        P0 = np.einsum('ij,jhw->ihw', Rt, qo - self.t[:, None, None])
        D = np.einsum('ij,jhw->ihw', Rt, qs)
        return P0, D


def project_obj(obj, view, tot_map, trab_map):
    v = obj.vox
    A = view.R @ obj.R
    t = view.R @ obj.c + view.t
    allc = []
    for sh in obj.shapes:
        allc.append(corners(sh.bmin, sh.bmax))
    qc = np.concatenate(allc) @ A.T + t
    qmin = np.floor(qc.min(0) / v) * v
    qmax = np.ceil(qc.max(0) / v) * v
    n = np.maximum(((qmax - qmin) / v).astype(int) + 1, 1)
    U = qmin[0] + np.arange(n[0]) * v
    W = qmax[1] - np.arange(n[1]) * v          # rows: top first
    D = qmin[2] + np.arange(n[2]) * v
    vt = np.zeros((n[2], n[1], n[0]), F32)
    vb = np.zeros((n[2], n[1], n[0]), F32)
    for sh in obj.shapes:
        qs = corners(sh.bmin, sh.bmax) @ A.T + t
        lo, hi = qs.min(0), qs.max(0)
        iu0, iu1 = int(max(0, (lo[0] - qmin[0]) / v - 1)), int(min(n[0], (hi[0] - qmin[0]) / v + 2))
        iw0, iw1 = int(max(0, (qmax[1] - hi[1]) / v - 1)), int(min(n[1], (qmax[1] - lo[1]) / v + 2))
        id0, id1 = int(max(0, (lo[2] - qmin[2]) / v - 1)), int(min(n[2], (hi[2] - qmin[2]) / v + 2))
        if iu1 <= iu0 or iw1 <= iw0 or id1 <= id0:
            continue
        uu = (U[iu0:iu1] - t[0])[None, None, :]
        ww = (W[iw0:iw1] - t[1])[None, :, None]
        dd = (D[id0:id1] - t[2])[:, None, None]
        x = A[0, 0] * uu + A[1, 0] * ww + A[2, 0] * dd
        y = A[0, 1] * uu + A[1, 1] * ww + A[2, 1] * dd
        z = A[0, 2] * uu + A[1, 2] * ww + A[2, 2] * dd
        sdf, tm = sh.fn(x, y, z)
        oo = np.clip(0.5 - sdf / v, 0, 1)
        oi = np.clip(0.5 - (sdf + sh.tc) / v, 0, 1)
        tr = sh.rt * oi if tm is None else sh.rt * oi * tm
        to = sh.rc * (oo - oi) + tr
        blk = (slice(id0, id1), slice(iw0, iw1), slice(iu0, iu1))
        np.maximum(vt[blk], to.astype(F32), out=vt[blk])
        np.maximum(vb[blk], tr.astype(F32), out=vb[blk])
    # divergent projection in depth slabs
    H, Wd = view.shape
    step = max(1, int(round(10.0 / v)))
    for k0 in range(0, n[2], step):
        k1 = min(n[2], k0 + step)
        st = vt[k0:k1].sum(0) * v
        if st.max() <= 0:
            continue
        sb = vb[k0:k1].sum(0) * v
        dm = D[k0:k1].mean()
        m = view.mag(dm)
        # detector window (pixels) covered by this slab
        c0 = (U[0] - v / 2) * m
        c1 = (U[-1] + v / 2) * m
        r0 = (W[0] + v / 2) * m
        r1 = (W[-1] - v / 2) * m
        j0 = int(math.floor((c0 - view.u_left) / view.ws))
        j1 = int(math.ceil((c1 - view.u_left) / view.ws))
        i0 = int(math.floor((view.w_top - r0) / view.ws))
        i1 = int(math.ceil((view.w_top - r1) / view.ws))
        J0, J1, I0, I1 = max(j0, 0), min(j1, Wd), max(i0, 0), min(i1, H)
        if J1 <= J0 or I1 <= I0:
            continue
        # output pixel (x, y) in window -> input index
        sc = view.ws / (m * v)
        ox = ((view.u_left + J0 * view.ws) / m - U[0]) / v + 0.5
        oy = (W[0] - (view.w_top - I0 * view.ws) / m) / v + 0.5
        data = (sc, 0, ox, 0, sc, oy)
        for src, dst in ((st, tot_map), (sb, trab_map)):
            im = Image.fromarray(np.ascontiguousarray(src, F32), 'F').transform(
                (J1 - J0, I1 - I0), Image.AFFINE, data, resample=Image.BILINEAR)
            dst[I0:I1, J0:J1] += np.asarray(im, F32)


def tube_project(view, pts, r, wall, rc, rt, tot_map, trab_map):
    """Cortical tube along a 3-D polyline (patient mm), projected analytically."""
    q = np.asarray(pts, float) @ view.R.T + view.t
    cx, cy = view.to_pix(q)
    m = view.mag(q[:, 2])
    H, W = view.shape
    acc_t = {}
    for k in range(len(pts) - 1):
        rr = r[k] if hasattr(r, '__len__') else r
        rp = rr * m[k] / view.ws
        j0 = int(max(0, min(cx[k], cx[k + 1]) - rp - 2)); j1 = int(min(W, max(cx[k], cx[k + 1]) + rp + 3))
        i0 = int(max(0, min(cy[k], cy[k + 1]) - rp - 2)); i1 = int(min(H, max(cy[k], cy[k + 1]) + rp + 3))
        if j1 <= j0 or i1 <= i0:
            continue
        jj, ii = np.meshgrid(np.arange(j0, j1) + 0.5, np.arange(i0, i1) + 0.5)
        bx, by = cx[k + 1] - cx[k], cy[k + 1] - cy[k]
        hh = ((jj - cx[k]) * bx + (ii - cy[k]) * by) / (bx * bx + by * by + 1e-9)
        d = np.abs((jj - cx[k]) * by - (ii - cy[k]) * bx) / math.sqrt(bx * bx + by * by + 1e-9) * view.ws / m[k]
        lim = 0.5 / (math.sqrt(bx * bx + by * by) + 1e-9)
        d = np.where((hh >= -lim) & (hh <= 1 + lim), d, 1e6) if len(pts) > 2 else \
            seg_dist2d(jj, ii, (cx[k], cy[k]), (cx[k + 1], cy[k + 1])) * view.ws / m[k]
        seg = q[k + 1] - q[k]
        cosb = abs(seg[2]) / (np.linalg.norm(seg) + 1e-9)
        fac = 1.0 / max(math.sqrt(max(1 - cosb ** 2, 0)), 0.3)
        ri = max(rr - wall, 0.1)
        co = 2 * np.sqrt(np.maximum(rr * rr - d * d, 0)) * fac
        ci = 2 * np.sqrt(np.maximum(ri * ri - d * d, 0)) * fac
        key = (i0, i1, j0, j1)
        tv = (rc * (co - ci) + rt * ci).astype(F32)
        bv = (rt * ci).astype(F32)
        acc_t[key] = (tv, bv)
    # union of overlapping segments: max within the tube, then add to maps
    if not acc_t:
        return
    keys = list(acc_t)
    I0 = min(k[0] for k in keys); I1 = max(k[1] for k in keys)
    J0 = min(k[2] for k in keys); J1 = max(k[3] for k in keys)
    bt = np.zeros((I1 - I0, J1 - J0), F32)
    bb = np.zeros_like(bt)
    for (i0, i1, j0, j1), (tv, bv) in acc_t.items():
        s = (slice(i0 - I0, i1 - I0), slice(j0 - J0, j1 - J0))
        np.maximum(bt[s], tv, out=bt[s])
        np.maximum(bb[s], bv, out=bb[s])
    tot_map[I0:I1, J0:J1] += bt
    trab_map[I0:I1, J0:J1] += bb


def quad_interval(P0, D, c, Q):
    """ray parameter interval inside the ellipsoid (x-c)^T Q (x-c) <= 1 (t in [0,1] detector->source)."""
    X = P0 - np.asarray(c, float)[:, None, None]
    QD = np.einsum('ij,jhw->ihw', Q, D)
    QX = np.einsum('ij,jhw->ihw', Q, X)
    a = (D * QD).sum(0)
    b = (X * QD).sum(0)
    cc = (X * QX).sum(0) - 1
    disc = b * b - a * cc
    s = np.sqrt(np.maximum(disc, 0))
    t1 = (-b - s) / a
    t2 = (-b + s) / a
    bad = disc <= 0
    t1[bad] = 0
    t2[bad] = 0
    return t1, t2


def ell_Q(r, R=None):
    Q = np.diag(1.0 / np.asarray(r, float) ** 2)
    if R is not None:
        Q = R @ Q @ R.T
    return Q


def ellipsoid_bbox_pix(view, c, r, R=None):
    rr = np.asarray(r, float)
    if R is not None:
        ext = np.sqrt(((R * rr[None, :]) ** 2).sum(1))
    else:
        ext = rr
    q = corners(np.asarray(c) - ext, np.asarray(c) + ext) @ view.R.T + view.t
    cx, cy = view.to_pix(q)
    H, W = view.shape
    return (int(max(0, cy.min() - 2)), int(min(H, cy.max() + 3)),
            int(max(0, cx.min() - 2)), int(min(W, cx.max() + 3)))


def add_ellipsoid(view, target, c, r, R=None, weight=1.0, mask_fn=None):
    i0, i1, j0, j1 = ellipsoid_bbox_pix(view, c, r, R)
    if i1 <= i0 or j1 <= j0:
        return
    P0, D = view.rays(i0, i1, j0, j1)
    t1, t2 = quad_interval(P0, D, c, ell_Q(r, R))
    L = (t2 - t1) * np.sqrt((D * D).sum(0))
    target[i0:i1, j0:j1] += (weight * L).astype(F32)


# ----------------------------------------------------------------------------- anatomy
LEVELS = ['T11', 'T12', 'L1', 'L2', 'L3', 'L4', 'L5']
DIMS = {  # width, depth, height (mm), pedicle half-width, TP length
    'T11': (36, 28, 22, 3.5, 6), 'T12': (38, 29, 23.5, 4.0, 5), 'L1': (41, 30, 25, 4.3, 12),
    'L2': (43, 32, 26, 4.8, 17), 'L3': (46, 33, 27, 5.5, 23), 'L4': (48, 34, 27, 6.5, 20),
    'L5': (50, 34, 26, 8.0, 14)}
DISC = [5.5, 7, 8, 9, 10, 11, 10.5]   # T11-12, T12-L1, L1-2, L2-3, L3-4, L4-5, L5-S1


def vertebra_shapes(lv, P, bone, deg_up, deg_dn, frac):
    s = P['size']
    wd, dp, ht, prw, tpl = DIMS[lv]
    a, b, h = wd * s / 2, dp * s / 2, ht * s
    thor = lv in ('T11', 'T12')
    fc, tc, ft = bone['rc'], bone['tc'], bone['ft']
    cc = 1.2 * s
    o_t, o_b = deg_up['osteo'], deg_dn['osteo']
    sc_t, sc_b = deg_up['scl'], deg_dn['scl']
    wedge, bic, crush = frac.get('wedge', 0), frac.get('bic', 0), frac.get('crush', 0)
    waist = 0.07

    def body(x, y, z):
        r2 = np.minimum((x / a) ** 2 + (y / b) ** 2, 1.0)
        ztop = h / 2 - cc * (1 - r2) - wedge * h * (0.5 + 0.5 * np.clip(y / b, -1, 1)) - bic * h * (1 - r2) - crush * h * 0.5
        zbot = -h / 2 + cc * (1 - r2) + bic * 0.6 * h * (1 - r2) + crush * h * 0.5
        zz = np.clip(z / (h / 2), -1, 1)
        wf = 1 - waist * (1 - zz * zz)
        et = np.exp(-np.clip(ztop - z, 0, 40) ** 2 / 6.0)
        eb = np.exp(-np.clip(z - zbot, 0, 40) ** 2 / 6.0)
        ost = 1 + o_t * et * (0.6 + 0.4 * np.abs(x) / a) + o_b * eb * (0.6 + 0.4 * np.abs(x) / a)
        ae = a * wf * ost
        be = np.where(y > 0, b * wf * ost, b * wf)
        X, Y = x / ae, y / be
        q = np.sqrt(X * X + Y * Y) + 1e-6
        g = np.sqrt((X / ae) ** 2 + (Y / be) ** 2) / q + 1e-6
        dxy = np.maximum((q - 1) / g, -y - 0.86 * b)
        dz = np.maximum(z - ztop - o_t * 2.0 * et * (q > 0.85), zbot - z - o_b * 2.0 * eb * (q > 0.85))
        sd = combine(dxy, dz)
        dtop = np.clip(ztop - z, 0, 60)
        dbot = np.clip(z - zbot, 0, 60)
        tm = (1 + sc_t * np.exp(-dtop / 3.5) + sc_b * np.exp(-dbot / 3.5)
              + frac.get('cond', 0) * np.exp(-dtop / 5.0))
        return sd, tm

    sh = [Shape(body, (-a * 1.4, -b * 1.1, -h / 2 - 4), (a * 1.4, b * 1.4, h / 2 + 4), tc, fc, ft)]
    pc, pt, pft = tc * 1.2, fc, ft * 1.1
    zp = h * 0.18
    plen = 14 * s + (2 if lv == 'L5' else 0)
    pr, prz = prw * s, 7.5 * s * (0.85 if thor else 1)
    fh = 1 + 0.35 * max(deg_up['raw'], deg_dn['raw'])
    for sg in (-1, 1):
        p0 = (sg * a * 0.52, -b * 0.7, zp)
        p1 = (sg * (a * 0.52 + 1.5 + 0.2 * pr), -b - plen, zp)
        sh.append(Shape(lambda x, y, z, p0=p0, p1=p1: (seg_dist(x, y, z, p0, p1, pr / prz) - pr, None),
                        np.minimum(p0, p1) - (pr + 1, pr + 1, prz + 1), np.maximum(p0, p1) + (pr + 1, pr + 1, prz + 1),
                        pc, pt, pft))
        # lamina plate from pedicle base to the midline
        q0 = (p1[0], p1[1] - 2)
        q1 = (0.0, -b - plen - 11 * s)
        zl0, zl1 = -h * 0.62, h * 0.32

        def lam(x, y, z, q0=q0, q1=q1, zl0=zl0, zl1=zl1):
            dxy = seg_dist2d(x, y, q0, q1) - 2.2 * s
            dz = np.maximum(z - zl1, zl0 - z)
            return combine(dxy, dz), None
        sh.append(Shape(lam, (min(q0[0], 0) - 5, q1[1] - 5, zl0 - 1), (max(q0[0], 0) + 5, q0[1] + 5, zl1 + 1), pc, pt, pft))
        # articular processes (superior up, inferior down), hypertrophy with degeneration
        sa0 = (sg * (a * 0.55 + 4), -b - plen - 1, zp)
        sa1 = (sg * (a * 0.62 + 5), -b - plen - 4, h / 2 + DISC[2] * 0.8)
        ia0 = (sg * (a * 0.42 + 2), -b - plen - 7, -h * 0.1)
        ia1 = (sg * (a * 0.47 + 3), -b - plen - 5, -h / 2 - DISC[2] * 0.7)
        ra = 4.0 * s * fh
        for p0_, p1_ in ((sa0, sa1), (ia0, ia1)):
            sh.append(Shape(lambda x, y, z, p0_=p0_, p1_=p1_, ra=ra: (seg_dist(x, y, z, p0_, p1_) - ra, None),
                            np.minimum(p0_, p1_) - ra - 1, np.maximum(p0_, p1_) + ra + 1, pc, pt, pft * 1.1))
        # transverse process
        if thor:
            t0 = (sg * (a * 0.55 + 6), -b - plen - 2, zp + 2)
            t1 = (sg * (a * 0.55 + 6 + tpl * s + 10), -b - plen - 12, zp + 4)
            rt_ = 4.5 * s
        else:
            t0 = (sg * (a * 0.6 + 3), -b - plen + 1, zp)
            t1 = (sg * (a * 0.6 + 3 + tpl * s), -b - plen - 2, zp + 2 + (tpl * 0.12))
            rt_ = (5.5 if lv == 'L5' else 3.6) * s
        sh.append(Shape(lambda x, y, z, t0=t0, t1=t1, rt_=rt_: (seg_dist(x, y, z, t0, t1, 0.75) - rt_, None),
                        np.minimum(t0, t1) - rt_ - 3, np.maximum(t0, t1) + rt_ + 3, pc, pt, pft))
    # spinous process (tilted box)
    L = (26 if not thor else 34) * s * (0.75 if lv == 'L5' else 1)
    hz = (10 if not thor else 6) * s * (0.8 if lv == 'L5' else 1)
    tilt = math.radians(35 if thor else 12)
    sy0 = -b - plen - 8 * s
    zs0 = -h * 0.15
    ct, st = math.cos(tilt), math.sin(tilt)

    def spin(x, y, z):
        yy, zz = y - sy0, z - zs0
        yr = yy * ct - zz * st
        zr = yy * st + zz * ct
        return sdf_ellipsoid(x, yr, zr, (0, -L / 2, 0), (2.6 * s, L / 2, hz)), None
    ext = L + hz + 2
    sh.append(Shape(spin, (-5, sy0 - ext, zs0 - ext), (5, sy0 + 4, zs0 + hz + 4), pc, pt, pft))
    return sh, (a, b, h)


def build_patient(rng, T, sex, age):
    P = {}
    P['size'] = float(np.clip(rng.normal(1.0, 0.05) * (1.06 if sex == 'M' else 1.0), 0.85, 1.2))
    bmi = float(np.clip(rng.normal(27.5, 5.0), 17, 45))
    P['bmi'] = bmi
    # ---- bone mineral from T
    ind = rng.normal(0, 0.05)
    ft = 0.17 * float(np.clip(1 + 0.165 * T + ind, 0.18, 1.45))
    tc = 0.95 * float(np.clip(1 + 0.07 * T + rng.normal(0, 0.03), 0.5, 1.25))
    rc = float(np.clip(1 + 0.025 * T, 0.85, 1.08))
    P['bone'] = dict(ft=ft, tc=tc, rc=rc)
    lowT = max(0.0, -T)
    P['tex'] = dict(amp=0.10 + 0.055 * lowT + rng.uniform(-0.02, 0.02), sx=0.35 + 0.06 * lowT,
                    sz=0.9 + 0.35 * lowT, hfrac=max(0.1, 0.6 - 0.1 * lowT))
    # ---- degeneration
    dg = float(np.clip((age - 35) / 45 + rng.normal(0, 0.18), 0, 1))
    lw = [0.5, 0.6, 0.7, 0.8, 0.9, 1.15, 1.2]
    degs = []
    for i in range(7):
        raw = float(np.clip(dg * lw[i] + rng.normal(0, 0.15), 0, 1))
        degs.append(dict(raw=raw, osteo=0.22 * raw ** 1.5 * rng.uniform(0.4, 1.3),
                         scl=0.9 * raw ** 2 * rng.uniform(0.0, 1.6), h=1 - 0.55 * raw * rng.uniform(0.5, 1.0),
                         vac=raw > 0.7 and rng.uniform() < 0.3))
    P['deg'] = degs
    P['degglob'] = dg
    # ---- fractures
    fr = {}
    p_any = 0.025 + 0.5 / (1 + math.exp(-(lowT - 2.8) / 0.5))
    if rng.uniform() < p_any:
        nf = 1 + int(rng.uniform() < 0.3) + int(rng.uniform() < 0.1)
        w = np.array([0.08, 0.25, 0.3, 0.15, 0.12, 0.07, 0.03])
        for _ in range(nf):
            li = int(rng.choice(7, p=w / w.sum()))
            kind = rng.choice(['wedge', 'bic', 'crush'], p=[0.55, 0.3, 0.15])
            sev = rng.uniform(0.15, 0.45)
            fr[LEVELS[li]] = {str(kind): sev, 'cond': rng.uniform(0.2, 0.8)}
    P['frac'] = fr
    # ---- spine curve
    lord = math.radians(float(np.clip(rng.normal(50, 9) - 8 * dg, 25, 75)))
    fa = {'T11': -0.30, 'T12': -0.27, 'L1': -0.22, 'L2': -0.12, 'L3': 0.0, 'L4': 0.14, 'L5': 0.30}
    scol = math.radians(rng.normal(0, 3 + 5 * dg))
    scph = rng.uniform(0, 2 * math.pi)
    rotg = math.radians(rng.normal(0, 2.5))
    verts = {}
    dims = {}
    for i, lv in enumerate(LEVELS):
        al = fa[lv] * lord + math.radians(rng.normal(0, 1.5))
        be = scol * math.sin(scph + i * 0.8)
        ga = rotg * math.cos(scph + i * 0.8) + math.radians(rng.normal(0, 1.0))
        verts[lv] = dict(R=rotz(ga) @ rotx(-al) @ roty(be))
        wd, dp, ht, _, _ = DIMS[lv]
        dims[lv] = ht * P['size']
    # walk from L3 (index 4) down to L5 and up to T11
    verts['L3']['c'] = np.zeros(3)
    for ia, ib in ((4, 5), (5, 6), (4, 3), (3, 2), (2, 1), (1, 0)):
        a_lv, b_lv = LEVELS[ia], LEVELS[ib]
        di = min(ia, ib)
        hgt = DISC[di] * P['size'] * min(degs[di]['h'], 1.0)
        ha = dims[a_lv] * (1 - fr.get(a_lv, {}).get('crush', 0))
        hb = dims[b_lv] * (1 - fr.get(b_lv, {}).get('crush', 0))
        za = verts[a_lv]['R'][:, 2]
        zb = verts[b_lv]['R'][:, 2]
        zm = (za + zb) / np.linalg.norm(za + zb)
        sgn = -1 if ib > ia else 1
        verts[b_lv]['c'] = verts[a_lv]['c'] + sgn * (ha / 2 * za + hgt * zm + hb / 2 * zb)
    P['verts'] = verts
    # sacrum frame: S1 endplate just below L5
    sl = math.radians(float(np.clip(0.55 * math.degrees(lord) + 12 + rng.normal(0, 4), 25, 60)))
    L5 = verts['L5']
    zl5 = L5['R'][:, 2]
    s1_top = L5['c'] - (dims['L5'] / 2 + DISC[6] * P['size'] * degs[6]['h']) * zl5
    P['sacrum'] = dict(top=s1_top, R=rotz(rotg * 0.5) @ rotx(-sl), slope=sl)
    P['lord'] = lord
    # ---- soft tissue
    f = sex == 'F'
    P['W'] = (125 + 3.6 * (bmi - 22)) * (1.06 if not f else 1.0) * P['size']
    P['D'] = (92 + 3.4 * (bmi - 22) + (4 if not f else 0)) * P['size']
    P['hip'] = (28 if f else 14) + 1.5 * (bmi - 22) + rng.uniform(-6, 6)
    P['fat_sc'] = float(np.clip((6 + 2.0 * (bmi - 18)) * (1.25 if f else 0.8) * rng.uniform(0.8, 1.2), 4, 90))
    P['visc'] = float(np.clip(0.08 + 0.012 * (bmi - 20) * (1.4 if not f else 1.0) + rng.normal(0, 0.04), 0.03, 0.45))
    P['Yback'] = -(17 * P['size'] + 48 * P['size'] + 22 + P['fat_sc'] * 0.8)
    P['gas'] = float(rng.uniform(0.15, 1.4))
    P['gasfill'] = float(rng.uniform(0.55, 0.9))
    P['aorta_calc'] = int(max(0, rng.normal((age - 50) / 3.5, 4))) if age > 45 else 0
    return P


def skeleton_objects(P):
    """list of BoneObj (vertebrae, sacrum, ilia, femoral heads)."""
    objs = []
    bone = P['bone']
    for i, lv in enumerate(LEVELS):
        du = P['deg'][i - 1] if i > 0 else dict(osteo=0, scl=0, raw=0)
        dd = P['deg'][i]
        shp, _ = vertebra_shapes(lv, P, bone, du if i > 0 else dict(osteo=0, scl=0, raw=0), dd,
                                 P['frac'].get(lv, {}))
        objs.append(BoneObj(P['verts'][lv]['c'], P['verts'][lv]['R'], shp, 0.6))
    # ---- sacrum (local frame: origin at S1 superior endplate centre, z along S1 axis)
    s = P['size']
    S = P['sacrum']
    ft, tc, rc = bone['ft'] * 0.85, bone['tc'] * 0.9, bone['rc']
    sh = []
    segs = []
    st = np.zeros(2)  # (y, z) start of the next segment
    ang = 0.0
    for k in range(5):
        hk = (24 - 3.4 * k) * s
        ak = (25 - 3.6 * k) * s
        bk = (17 - 2.6 * k) * s
        dvec = np.array([math.sin(ang), -math.cos(ang)])
        cen = st + dvec * hk / 2
        segs.append((ak, bk, hk, cen[0], cen[1]))
        st = cen + dvec * (hk / 2 + 1.0)
        ang += math.radians(9)
    def sacrum_sdf(x, y, z):
        out = None
        for k, (ak, bk, hk, yk, czk) in enumerate(segs):
            X, Y = x / ak, (y - yk) / bk
            q = np.sqrt(X * X + Y * Y) + 1e-6
            g = np.sqrt((X / ak) ** 2 + (Y / bk) ** 2) / q + 1e-6
            dz = np.abs(z - czk) - hk / 2 - 0.6
            d = combine((q - 1) / g, dz)
            lw = (52 - 7 * k) * s
            for sg in (-1, 1):
                e = sdf_ellipsoid(x, y, z, (sg * (ak + lw * 0.2), yk - bk * 0.25, czk + (3 if k == 0 else 0)),
                                  (lw * 0.48, bk * 0.55, hk * 0.68 + (3 if k == 0 else 0)))
                hole = np.hypot(x - sg * (ak + 4), z - (czk - hk / 2)) - (4.5 - 0.5 * k) * s
                d = np.minimum(d, np.maximum(e, -hole))
            cr = sdf_box(x, y, z, (0, yk - bk - 8 * s, czk), (3.0 * s, 8 * s, hk * 0.4), 1.5)
            d = np.minimum(d, cr)
            out = d if out is None else np.minimum(out, d)
        return out, None
    lo = np.array([1e9, 1e9, 1e9]); hi = -lo
    for ak, bk, hk, yk, czk in segs:
        lw = 52 * s
        lo = np.minimum(lo, (-ak - lw * 0.7, yk - bk - 20 * s, czk - hk - 4))
        hi = np.maximum(hi, (ak + lw * 0.7, yk + bk + 2, czk + hk * 0.8 + 6))
    sh.append(Shape(sacrum_sdf, lo, hi, tc, rc, ft))
    objs.append(BoneObj(S['top'], S['R'], sh, 0.9))
    # ---- ilia: clipped ellipsoidal bowl in a world-aligned pelvis frame
    s1 = S['top']
    crest_z = s1[2] + 78 * s + P['rng_crest']
    Wp = (108 + P['hip'] * 0.5) * s
    pc = np.array([0.0, s1[1] + 20 * s, crest_z - 12])
    Rx, Ry, Rz = Wp, 92 * s, 215 * s
    ftI, tcI = bone['ft'] * 0.9, bone['tc'] * 1.1
    for sg in (-1, 1):
        def ilium(x, y, z, sg=sg):
            xx, yy, zz = x, y, z
            sd = sdf_ellipsoid(xx, yy, zz, (0, 0, 0), (Rx, Ry, Rz))
            zcr = -8 - 22 * ((yy / Ry + 0.1) ** 2) - 70 * (1 - np.clip(np.abs(xx) / Rx, 0, 1)) ** 2
            th = 2.2 + 7.0 * np.exp(-np.clip(zcr - zz, 0, 80) / 7.0) + 6.0 * np.exp(-np.clip(zz + 135 * s, 0, 200) / 25.0)
            shell = np.abs(sd + th / 2) - th / 2
            clip = np.maximum(zz - zcr, -(sg * xx) + 48 * s)           # below crest, own side, lateral of sacrum
            clip = np.maximum(clip, yy - (0.55 * Ry - 0.25 * (zcr - zz)))  # nothing far anterior (ASIS taper)
            clip = np.maximum(clip, -zz - 175 * s)
            clip = np.maximum(clip, -np.maximum(yy + 0.35 * Ry, -zz - 95 * s))  # sciatic notch
            return np.maximum(shell, clip), None
        xa, xb = (48 * s - 2, Rx + 4) if sg > 0 else (-Rx - 4, -48 * s + 2)
        sh_i = [Shape(ilium, (xa, -Ry - 4, -190 * s), (xb, 0.62 * Ry, 10), 1.1, rc, ftI)]
        objs.append(BoneObj(pc, np.eye(3), sh_i, 1.6))
    # femoral heads
    fh = []
    for sg in (-1, 1):
        c = (sg * 92 * s * (1 + P['hip'] / 400), 30 * s, -205 * s)
        fh.append(Shape(lambda x, y, z, c=c: (sdf_ellipsoid(x, y, z, c, (24 * s, 24 * s, 24 * s)), None),
                        np.array(c) - 26 * s, np.array(c) + 26 * s, 1.4, rc, ftI))
        nc0, nc1 = np.array(c), np.array(c) + (sg * 35 * s, -8, -28 * s)
        fh.append(Shape(lambda x, y, z, a0=nc0, a1=nc1: (seg_dist(x, y, z, a0, a1) - 15 * s, None),
                        np.minimum(nc0, nc1) - 17 * s, np.maximum(nc0, nc1) + 17 * s, 1.6, rc, ftI))
    objs.append(BoneObj(pc, np.eye(3), fh, 1.5))
    return objs


def rib_polylines(P):
    out = []
    W, D, Yc = P['W'], P['D'], P['Yback'] + P['D']
    s = P['size']
    for lv, phi_end, slope, rad in (('T11', 2.0, 0.55, 4.0), ('T12', 1.35 * P['r12'], 0.6, 3.5)):
        V = P['verts'][lv]
        c = V['c']
        for sg in (-1, 1):
            pts = [c + V['R'] @ np.array([sg * 16 * s, -10 * s, 2.0])]
            pts.append(c + V['R'] @ np.array([sg * 40 * s, -32 * s, 0.0]))
            z0 = pts[-1][2]
            arc = 0.0
            prev = pts[-1]
            for phi in np.linspace(0.45, phi_end, 14):
                Wr, Dr = 0.86 * W, 0.86 * D
                p = np.array([sg * Wr * math.sin(phi), Yc - Dr * math.cos(phi), 0.0])
                arc += np.linalg.norm(p[:2] - prev[:2])
                p[2] = z0 - slope * arc * 0.55
                pts.append(p)
                prev = p
            out.append((np.array(pts), rad * s))
    # T10 rib high up (partly in field)
    V = P['verts']['T11']
    for sg in (-1, 1):
        c = V['c'] + V['R'] @ np.array([0, 0, 28 * s])
        pts = [c + V['R'] @ np.array([sg * 15 * s, -10 * s, 0]), c + V['R'] @ np.array([sg * 40 * s, -32 * s, 0])]
        z0, arc, prev = pts[-1][2], 0.0, pts[-1]
        for phi in np.linspace(0.45, 2.6, 16):
            p = np.array([sg * 0.87 * W * math.sin(phi), Yc - 0.87 * D * math.cos(phi), 0.0])
            arc += np.linalg.norm(p[:2] - prev[:2])
            p[2] = z0 - 0.5 * arc * 0.55
            pts.append(p)
            prev = p
        out.append((np.array(pts), 4.3 * s))
    return out


def gas_list(rng, P):
    """list of (centre, radii, R) air ellipsoids in patient mm."""
    W, D, Yc = P['W'], P['D'], P['Yback'] + P['D']
    g = P['gas']
    out = []
    # colon centreline (x, y-offset, z)
    path = [(-0.55, -0.05, -150), (-0.58, 0.0, -40), (-0.5, 0.1, 40), (-0.25, 0.45, 10 + rng.uniform(-50, 30)),
            (0.1, 0.5, rng.uniform(-60, 20)), (0.45, 0.3, 70), (0.62, 0.0, 60), (0.6, -0.05, -60), (0.45, 0.0, -140),
            (0.1, -0.1, -175), (0.0, -0.25, -215)]
    pts = np.array([[x * W * 0.9, Yc + yo * D, z] for x, yo, z in path])
    segl = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    cum = np.concatenate([[0], np.cumsum(segl)])
    nb = int(rng.poisson(3 + 7 * g))
    for _ in range(nb):
        s = rng.uniform(0, cum[-1])
        r = rng.uniform(10, 22) * (0.7 + 0.3 * g)
        nlink = int(rng.integers(1, 5))
        for j in range(nlink):
            sj = min(max(s + j * r * 0.95, 0), cum[-1] - 1e-3)
            k = min(max(int(np.searchsorted(cum, sj) - 1), 0), len(segl) - 1)
            f = (sj - cum[k]) / segl[k]
            c = pts[k] + f * (pts[k + 1] - pts[k]) + rng.normal(0, 3, 3)
            ax = (pts[k + 1] - pts[k]) / segl[k]
            e1 = np.cross([0.0, 1.0, 0.0], ax)
            if np.linalg.norm(e1) < 1e-3:
                e1 = np.array([1.0, 0, 0])
            e1 /= np.linalg.norm(e1)
            Rm = np.column_stack([e1, np.cross(ax, e1), ax])
            rr = (r * rng.uniform(0.8, 1.1), r * rng.uniform(0.6, 0.9), r * rng.uniform(0.5, 0.75))
            out.append((c, rr, Rm))
        if rng.uniform() < 0.3:  # stool: cluster of small bubbles
            for _ in range(int(rng.integers(6, 22))):
                cb = c + rng.normal(0, r * 0.6, 3)
                rb = rng.uniform(1.0, 3.0)
                out.append((cb, (rb, rb * rng.uniform(0.7, 1.2), rb * rng.uniform(0.7, 1.2)), None))
    # small bowel loops
    for _ in range(int(rng.poisson(1.5 * g))):
        c = np.array([rng.uniform(-0.35, 0.35) * W, Yc + rng.uniform(0.0, 0.5) * D, rng.uniform(-120, 20)])
        r = rng.uniform(6, 13)
        out.append((c, (r * 1.6, r, r * 0.8), rotz(rng.uniform(0, 3.14)) @ rotx(rng.uniform(-1, 1))))
    # stomach bubble high on the left
    if rng.uniform() < 0.4:
        out.append((np.array([0.45 * W, Yc + 0.2 * D, 150]), (35, 25, 18), None))
    # vacuum discs
    for i, d in enumerate(P['deg']):
        if d['vac'] and i >= 1:
            up, dn = LEVELS[i], LEVELS[i + 1] if i + 1 < 7 else None
            if dn is None:
                continue
            c = (P['verts'][up]['c'] + P['verts'][dn]['c']) / 2 + np.array([0, 8, 0])
            out.append((c, (12, 6, 1.2), P['verts'][up]['R']))
    return out


# ----------------------------------------------------------------------------- rendering
def soft_tissue(view, P, rng, gas):
    """water-equivalent path (mm) and trunk mask per work pixel."""
    H, Wd = view.shape
    P0, D = view.rays(0, H, 0, Wd)
    Dn = np.sqrt((D * D).sum(0))
    z = P0[2]
    W0, D0 = P['W'], P['D']
    Yc = P['Yback'] + D0
    # half width / depth versus height: waist at ~L2, hips below the crest, chest above
    zcr = P['verts']['L4']['c'][2]
    Wz = W0 * (1 + 0.08 * np.clip((z - 60) / 120, 0, 1)) + P['hip'] / (1 + np.exp(-(zcr - 20 - z) / 25.0))
    Dz = D0 * (1 + 0.05 * np.clip((z - 60) / 120, 0, 1)) - 0.06 * D0 * np.clip((zcr - 40 - z) / 100, 0, 1)

    def cyl(Wz, Dz, yc):
        a = (D[0] / Wz) ** 2 + (D[1] / Dz) ** 2
        b = P0[0] * D[0] / Wz ** 2 + (P0[1] - yc) * D[1] / Dz ** 2
        c = (P0[0] / Wz) ** 2 + ((P0[1] - yc) / Dz) ** 2 - 1
        disc = np.maximum(b * b - a * c, 0)
        return 2 * np.sqrt(disc) / a * Dn

    Lt = cyl(Wz, Dz, Yc)
    fsc = P['fat_sc']
    Li = cyl(np.maximum(Wz - fsc * 0.9, 20), np.maximum(Dz - fsc, 20), Yc + fsc * 0.25)
    fat = (Lt - Li) + P['visc'] * Li
    water = (1 - P['visc']) * Li
    org = np.zeros((H, Wd), F32)
    perifat = np.zeros((H, Wd), F32)
    s = P['size']
    L1c, L5c = P['verts']['L1']['c'], P['verts']['L5']['c']
    for sg in (-1, 1):
        # psoas: oblique ellipsoid from L1 to the pelvis
        p0 = L1c + np.array([sg * 22 * s, -6, 0])
        p1 = L5c + np.array([sg * 48 * s, 12, -40])
        c = (p0 + p1) / 2
        ax = (p1 - p0) / np.linalg.norm(p1 - p0)
        e1 = np.cross([0.0, 1.0, 0.0], ax)
        e1 /= np.linalg.norm(e1)
        Rm = np.column_stack([e1, np.cross(ax, e1), ax])
        add_ellipsoid(view, org, c, (20 * s, 18 * s, np.linalg.norm(p1 - p0) / 2 + 30), Rm)
        # paraspinal muscles
        add_ellipsoid(view, org, np.array([sg * 36 * s, P['Yback'] + fsc * 0.8 + 30, 0]), (28 * s, 26 * s, 260))
        # kidneys with perirenal fat
        kc = np.array([sg * 68 * s, -15, P['verts']['L1']['c'][2] + (-12 if sg < 0 else 5)])
        Rk = rotz(sg * 0.4) @ roty(sg * 0.25)
        add_ellipsoid(view, org, kc, (28 * s, 22 * s, 55 * s), Rk)
        add_ellipsoid(view, perifat, kc, (36 * s, 30 * s, 64 * s), Rk)
        add_ellipsoid(view, perifat, kc, (28 * s, 22 * s, 55 * s), Rk, weight=-1.0)
    add_ellipsoid(view, org, np.array([-60 * s, Yc + 10, P['verts']['T12']['c'][2] + 10]), (110, 85, 90))  # liver
    vf = P['visc']
    water += org * vf
    fat -= org * vf
    fat += perifat * (1 - vf) * 0.8
    water -= perifat * (1 - vf) * 0.8
    # lung bases above the diaphragm domes
    air = np.zeros((H, Wd), F32)
    zt12 = P['verts']['T12']['c'][2]
    if z.max() > zt12 - 40:
        rows = np.nonzero((z > zt12 - 60).any(1))[0]
        r0, r1 = rows.min(), rows.max() + 1
        P0s, Ds = P0[:, r0:r1], D[:, r0:r1]
        Dns = Dn[r0:r1]
        Wt = Wz[r0:r1] - fsc - 12
        Dt = Dz[r0:r1] - fsc - 12
        a = (Ds[0] / Wt) ** 2 + (Ds[1] / Dt) ** 2
        b = P0s[0] * Ds[0] / Wt ** 2 + (P0s[1] - Yc) * Ds[1] / Dt ** 2
        c = (P0s[0] / Wt) ** 2 + ((P0s[1] - Yc) / Dt) ** 2 - 1
        dsc = np.maximum(b * b - a * c, 0)
        ok = b * b - a * c > 0
        t1 = np.where(ok, (-b - np.sqrt(dsc)) / a, 0)
        t2 = np.where(ok, (-b + np.sqrt(dsc)) / a, 0)
        for sg in (-1, 1):
            zd = zt12 + (28 if sg < 0 else 14) + P['dia']
            # side half-space x*sg > 25 along the ray
            with np.errstate(divide='ignore', invalid='ignore'):
                tx = (sg * 25 - P0s[0]) / Ds[0]
            inc = sg * Ds[0] > 0
            lo = np.where(inc, np.maximum(t1, tx), t1)
            hi = np.where(inc, t2, np.minimum(t2, tx))
            lo = np.where(np.abs(Ds[0]) < 1e-9, np.where(sg * P0s[0] > 25, t1, 1), lo)
            hi = np.where(np.abs(Ds[0]) < 1e-9, np.where(sg * P0s[0] > 25, t2, 0), hi)
            Ls = np.maximum(hi - lo, 0)
            dc = np.array([sg * 55.0, Yc + 35, zd - 150])
            u1, u2 = quad_interval(P0s, Ds, dc, ell_Q((120, 135, 150)))
            ov = np.maximum(np.minimum(hi, u2) - np.maximum(lo, u1), 0)
            # only above the lowest point of the posterior recess
            ramp = np.clip((P0s[2] - (zt12 - 60)) / 20.0, 0, 1)
            air[r0:r1] += (np.maximum(Ls - ov, 0) * Dns * 0.78 * ramp).astype(F32)
    for c, r, R in gas:
        add_ellipsoid(view, air, c, r, R, weight=P['gasfill'])
    tw = water + 0.85 * fat - air
    return np.maximum(tw, 0).astype(F32), Lt


def texture(rng, shape, ws, tex):
    """anisotropic trabecular texture, zero mean, unit-ish std."""
    H, W = shape
    n = rng.standard_normal((H, W)).astype(F32)
    v = ndimage.gaussian_filter(n, (tex['sz'] / ws, tex['sx'] / ws), truncate=3.0)
    hz = ndimage.gaussian_filter(n[::-1].copy(), (tex['sx'] / ws, tex['sz'] * 0.8 / ws), truncate=3.0)
    t = v / (v.std() + 1e-6) + tex['hfrac'] * hz / (hz.std() + 1e-6)
    t -= ndimage.gaussian_filter(t, 3.0 / ws, truncate=2.0)
    t /= t.std() + 1e-6
    return t


def lead_letter(draw_shape, ws, letter, pos, size_mm, rng):
    im = Image.new('L', (draw_shape[1], draw_shape[0]), 0)
    dr = ImageDraw.Draw(im)
    fs = max(6, int(size_mm / ws))
    font = ImageFont.load_default(size=fs)
    x, y = pos
    dr.rectangle([x - fs * 0.15, y - fs * 0.1, x + fs * 0.8, y + fs * 1.15], outline=180, width=max(1, fs // 14))
    dr.text((x, y), letter, fill=255, font=font)
    return np.asarray(im, F32) / 255.0


VENDORS = [
    dict(man='Aster Imaging', model='AsterDR 43', mod='DX', det='CsI', p=[0.139], dets=[(350, 430), (430, 430)],
         bits=[12], photo='MONOCHROME2', proc='ms', coll=['none', 'mask'], text=0.6, grid=0.14, w=3),
    dict(man='Borea Systems', model='BX Flex', mod='DX', det='CsI', p=[0.148], dets=[(350, 430)],
         bits=[14, 12], photo='MONOCHROME1', proc='ms_strong', coll=['mask', 'crop'], text=0.3, grid=0.16, w=2),
    dict(man='Corvid Radiology', model='CR-10S', mod='CR', det='BaFBr', p=[0.1], dets=[(240, 300), (350, 430)],
         bits=[10], photo='MONOCHROME1', proc='scurve', coll=['crop', 'none'], text=0.5, grid=0.2, w=2),
    dict(man='Deneb Medical', model='Deneb GX', mod='DX', det='GOS', p=[0.175, 0.16], dets=[(350, 430), (430, 430)],
         bits=[12], photo='MONOCHROME2', proc='gentle', coll=['none'], text=0.2, grid=0.15, w=2),
    dict(man='Elara Systems', model='ES-Direct Se', mod='DX', det='aSe', p=[0.14], dets=[(350, 430)],
         bits=[14], photo='MONOCHROME1', proc='lograw', coll=['none', 'mask'], text=0.0, grid=0.12, w=1),
    dict(man='Fornax', model='FX-CR 35', mod='CR', det='BaFBr', p=[0.15, 0.175], dets=[(350, 430), (240, 300)],
         bits=[12], photo='MONOCHROME1', proc='ms', coll=['none', 'mask'], text=0.4, grid=0.18, w=1),
    dict(man='Gemma Health', model='G-Port 2', mod='DX', det='CsI', p=[0.2, 0.15], dets=[(350, 430), (430, 430)],
         bits=[16, 15], photo='MONOCHROME2', proc='ms_strong', coll=['crop', 'mask'], text=0.5, grid=0.22, w=2),
    dict(man='Hadar Imaging', model='H-DR 16', mod='DX', det='CsI', p=[0.125], dets=[(350, 430)],
         bits=[15, 14], photo='MONOCHROME2', proc='gentle', coll=['none', 'crop'], text=0.3, grid=0.13, w=2),
]


def vendor_params(rng, V):
    q = dict(V)
    q['p'] = float(rng.choice(V['p']))
    q['det_mm'] = V['dets'][int(rng.integers(len(V['dets'])))]
    q['bits'] = int(rng.choice(V['bits']))
    q['coll'] = str(rng.choice(V['coll']))
    pr = V['proc']
    if pr == 'ms':
        q['g'] = (rng.uniform(0.2, 0.8), rng.uniform(0.5, 1.3), rng.uniform(0.2, 0.6)); q['drc'] = rng.uniform(0.3, 0.6)
        q['tone'] = ('sig', rng.uniform(3, 5.5))
    elif pr == 'ms_strong':
        q['g'] = (rng.uniform(0.4, 1.0), rng.uniform(1.3, 2.3), rng.uniform(0.4, 0.9)); q['drc'] = rng.uniform(0.65, 0.85)
        q['tone'] = ('sig', rng.uniform(2.5, 4))
    elif pr == 'scurve':
        q['g'] = (rng.uniform(0.0, 0.3), rng.uniform(0.3, 1.0), 0.0); q['drc'] = rng.uniform(0.2, 0.45)
        q['tone'] = ('sig', rng.uniform(4, 6))
    elif pr == 'gentle':
        q['g'] = (rng.uniform(0.0, 0.25), rng.uniform(0.1, 0.4), rng.uniform(0, 0.2)); q['drc'] = rng.uniform(0.1, 0.35)
        q['tone'] = ('gamma', rng.uniform(0.8, 1.4))
        q['drc'] = rng.uniform(0.3, 0.55)
    else:
        q['g'] = (0.0, 0.0, 0.0); q['drc'] = 0.0; q['tone'] = ('lin', 1.0)
    q['nr'] = rng.uniform(0, 0.6) if pr in ('ms_strong', 'gentle') else 0.0
    q['sig_mm'] = (rng.uniform(0.6, 1.2), rng.uniform(2.5, 5), rng.uniform(10, 20), rng.uniform(45, 90))
    q['lo_p'], q['hi_p'] = rng.uniform(0.2, 2.0), rng.uniform(98.5, 99.8)
    q['voi_sig'] = V['man'] == 'Hadar Imaging' and rng.uniform() < 0.7
    q['flip'] = rng.uniform() < 0.07
    q['roi_mm'] = rng.uniform(45, 120)
    return q


def render_view(rng, P, objs, ribs, gas, vp, kind):
    """returns stored pixel array (uint16) plus acquisition metadata."""
    s = P['size']
    p = vp['p']
    k = max(1, int(round(0.42 / p)))
    ws = p * k
    meta = {}
    bmi = P['bmi']
    if kind == 'AP':
        sid = float(rng.choice([1000, 1000, 1100, 1150, 1800]) + rng.uniform(-20, 20))
        kvp = float(np.clip(rng.uniform(70, 85) + 0.35 * (bmi - 25), 65, 100))
        gap = rng.uniform(25, 70)
        ydet = P['Yback'] - gap
        ob = math.radians(rng.normal(0, 3.0))
        Rpat = rotz(ob) @ rotx(math.radians(rng.normal(0, 2)))
        Rbase = np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0]], float)
        cr = np.array([rng.normal(0, 8), ydet, rng.normal(-35, 18)])
        R = Rbase @ Rpat
        t = -Rbase @ cr
        fw, fh = rng.uniform(150, 300), rng.uniform(300, 420)
        cen_obj = np.array([0.0, 0.0])
    else:
        sid = float(rng.choice([1000, 1000, 1100, 1500]) + rng.uniform(-20, 20))
        kvp = float(np.clip(rng.uniform(85, 100) + 0.6 * (bmi - 25), 80, 125))
        gap = rng.uniform(20, 60)
        xdet = P['W'] + P['hip'] * 0.5 + gap
        ob = math.radians(rng.normal(0, 4.0))
        Rpat = rotz(ob) @ roty(math.radians(rng.normal(0, 2.5)))
        Rbase = np.array([[0, -1, 0], [0, 0, 1], [-1, 0, 0]], float)
        cr = np.array([xdet, rng.normal(-12, 10), rng.normal(-38, 18)])
        R = Rbase @ Rpat
        t = -Rbase @ cr
        fw, fh = rng.uniform(140, 260), rng.uniform(300, 420)
    # detector placement & output window (detector mm, central ray at 0,0)
    dw, dh = vp['det_mm']
    fw, fh = min(fw, dw - 8), min(fh, dh - 8)
    dcx, dcy = rng.normal(0, 8), rng.normal(0, 10)        # detector centre relative to central ray
    fcx, fcy = rng.normal(0, 4), rng.normal(0, 4)
    fcx = float(np.clip(fcx, dcx - (dw - fw) / 2, dcx + (dw - fw) / 2))
    fcy = float(np.clip(fcy, dcy - (dh - fh) / 2, dcy + (dh - fh) / 2))
    if vp['coll'] == 'crop':
        mrg = rng.uniform(2, 12)
        ow, oh = fw + 2 * mrg, fh + 2 * mrg
        ocx, ocy = fcx, fcy
    else:
        ow, oh, ocx, ocy = dw, dh, dcx, dcy
    ncol, nrow = int(round(ow / p)), int(round(oh / p))
    if ncol > 2500:
        ncol = 2500; ocx = fcx
    if nrow > 2500:
        nrow = 2500; ocy = fcy
    u_left = ocx - ncol * p / 2
    w_top = ocy + nrow * p / 2
    Hw, Ww = int(math.ceil(nrow / k)), int(math.ceil(ncol / k))
    view = View(R, t, sid, u_left, w_top, ws, (Hw, Ww))
    # ---- bone
    tot = np.zeros((Hw, Ww), F32)
    trab = np.zeros((Hw, Ww), F32)
    for ob_ in objs:
        project_obj(ob_, view, tot, trab)
    for pts, r in ribs:
        tube_project(view, pts, r, 0.9, P['bone']['rc'] * 0.9, P['bone']['ft'] * 0.7, tot, trab)
    # aortic calcification
    if P['aorta_calc'] > 0:
        for _ in range(P['aorta_calc']):
            z0 = rng.uniform(-70, 110)
            lvc = P['verts']['L3']['c']
            yb = np.interp(z0, [P['verts'][l]['c'][2] for l in LEVELS[::-1]], [P['verts'][l]['c'][1] for l in LEVELS[::-1]])
            cen = np.array([14 * s, yb + 17 * s + 12, z0])
            th0 = rng.uniform(0, 2 * math.pi)
            dth = rng.uniform(0.3, 1.4)
            rad = 11 * s
            zz = rng.uniform(3, 15)
            pts = [cen + np.array([rad * math.cos(th0 + f * dth), rad * math.sin(th0 + f * dth), f * zz]) for f in np.linspace(0, 1, 5)]
            tube_project(view, pts, rng.uniform(0.5, 1.0), 0.5, rng.uniform(0.5, 1.0), 0.3, tot, trab)
    tx = texture(rng, (Hw, Ww), ws, P['tex'])
    bone = np.maximum(tot + trab * P['tex']['amp'] * tx * 1.6, 0)
    # ---- soft tissue
    twat, Lt = soft_tissue(view, P, rng, gas)
    # ---- physics
    al = rng.uniform(2.5, 4.5)
    cu = float(rng.choice([0, 0, 0.1, 0.2]))
    lut, dtw, dtb = physics_lut(kvp, al, cu, vp['det'])
    logP = ndimage.map_coordinates(lut, [np.clip(twat / dtw, 0, 72), np.clip(bone / dtb, 0, 60)], order=1, mode='nearest')
    Pm = np.exp(logP).astype(F32)
    # lead marker & metal (transmission)
    metal = np.zeros((Hw, Ww), F32)
    fcol = (fcx - u_left) / ws
    frow = (w_top - fcy) / ws
    if rng.uniform() < 0.85:
        side = 'L' if (kind == 'LAT' or rng.uniform() < 0.5) else 'R'
        mx = fcol + (fw / 2 - 22) / ws * (1 if (side == 'L') == (kind == 'AP') else -1)
        my = frow + (rng.uniform(-0.45, 0.45) * fh) / ws
        metal = np.maximum(metal, lead_letter((Hw, Ww), ws, side, (mx, my), rng.uniform(9, 15), rng))
    if P['sex'] == 'F' and rng.uniform() < 0.15:
        zb = P['verts']['T11']['c'][2] + 25
        for j in range(int(rng.integers(2, 4))):
            q = view.R @ np.array([rng.normal(0, 5) + 6 * j, P['Yback'], zb + 3 * j]) + view.t
            cx, cy = view.to_pix(q)
            rr = 2.2 / ws
            yy, xx = np.ogrid[:Hw, :Ww]
            metal = np.maximum(metal, ((np.abs(xx - cx) < rr * 2) & (np.abs(yy - cy) < rr)).astype(F32) * 0.9)
    Pm *= 1 - 0.97 * metal
    # heel effect and collimation
    rows = (np.arange(Hw) + 0.5)[:, None]
    cols = (np.arange(Ww) + 0.5)[None, :]
    wdet = w_top - rows * ws
    udet = u_left + cols * ws
    heel = rng.uniform(0.05, 0.18) * rng.choice([-1, 1])
    Pm *= (1 + heel * wdet / 215.0).astype(F32)
    ang = math.radians(rng.normal(0, 0.8))
    du, dv = udet - fcx, wdet - fcy
    ru = du * math.cos(ang) + dv * math.sin(ang)
    rv = -du * math.sin(ang) + dv * math.cos(ang)
    pen = rng.uniform(1.0, 3.0)
    coll = (1 / (1 + np.exp((np.abs(ru) - fw / 2) / (pen / 3)))) * (1 / (1 + np.exp((np.abs(rv) - fh / 2) / (pen / 3))))
    coll = coll.astype(F32)
    Pm *= coll + 0.004 * (1 - coll)
    # scatter
    grid = vp['grid'] * rng.uniform(0.8, 1.25) if rng.uniform() > 0.04 else 1.0
    spr = 4.2 * (twat / 200.0) ** 1.25 * (kvp / 80.0) ** 0.3 * grid
    sig = rng.uniform(28, 45) / ws
    Sc = gblur((spr * Pm * coll).astype(F32), sig, mode='constant')
    img = Pm + Sc
    # AEC: normalise signal behind the L3 body
    q3 = view.R @ P['verts']['L3']['c'] + view.t
    c3, r3 = view.to_pix(q3)
    c3, r3 = int(np.clip(c3, 0, Ww - 1)), int(np.clip(r3, 0, Hw - 1))
    hb = max(2, int(12 / ws))
    ref = float(img[max(0, r3 - hb):r3 + hb, max(0, c3 - hb):c3 + hb].mean()) + 1e-9
    img = img / ref
    # ---- full resolution detector
    full = resize(img, (Hw * k, Ww * k), Image.BICUBIC)[:nrow, :ncol] if k > 1 else img[:nrow, :ncol].copy()
    full = np.maximum(full, 1e-5)
    cr_ = vp['mod'] == 'CR'
    npm2 = (rng.uniform(9000, 22000) if cr_ else rng.uniform(15000, 50000)) * (1 - 0.012 * (bmi - 25))
    if kind == 'LAT':
        npm2 *= 0.7
    ntg = max(npm2 * p * p, 20.0)
    full += np.sqrt(full / ntg) * rng.standard_normal(full.shape, dtype=F32)
    fs_ = rng.uniform(0.6, 1.2) * 0.4 * (sid / (sid - 150) - 1)
    if vp['det'] == 'aSe':
        sd = math.hypot(0.05, fs_)
        sd = (sd, sd)
    elif cr_:
        sd = (math.hypot(rng.uniform(0.09, 0.14), fs_), math.hypot(rng.uniform(0.13, 0.2), fs_))
    else:
        sd = math.hypot(rng.uniform(0.08, 0.14), fs_)
        sd = (sd, sd)
    full = ndimage.gaussian_filter(full, (sd[0] / p, sd[1] / p), truncate=3.0).astype(F32)
    glare = rng.uniform(0.02, 0.06) if not cr_ else rng.uniform(0.04, 0.09)
    full = (1 - glare) * full + glare * gblur(full, (rng.uniform(1.5, 4) / p, rng.uniform(2, 6) / p * (1.6 if cr_ else 1)))
    full += rng.uniform(0.002, 0.006) / math.sqrt(ntg) * 3 * rng.standard_normal(full.shape, dtype=F32)
    if cr_:
        full *= 1 + 0.006 * gblur(rng.standard_normal(full.shape, dtype=F32), 1.5)
    L = np.log(np.maximum(full, 1e-4))
    # ---- vendor processing
    collf = resize(coll, (Hw * k, Ww * k))[:nrow, :ncol] if k > 1 else coll[:nrow, :ncol]
    body = resize((Lt > 20).astype(F32), (Hw * k, Ww * k))[:nrow, :ncol] if k > 1 else (Lt > 20)[:nrow, :ncol].astype(F32)
    anat = (collf > 0.9) & (body > 0.5)
    # region of interest around the lumbar column (vendor anatomy recognition)
    qs = np.array([P['verts'][l]['c'] for l in ('L1', 'L5')]) @ view.R.T + view.t
    pc_, pr_ = view.to_pix(qs)
    mr = vp['roi_mm'] / ws
    roi = np.zeros_like(anat)
    rr0, rr1 = int(max(0, (pr_.min() - 30 / ws) * k)), int(max(0, (pr_.max() + 30 / ws) * k))
    cc0, cc1 = int(max(0, (pc_.mean() - mr) * k)), int(max(0, (pc_.mean() + mr) * k))
    roi[rr0:rr1, cc0:cc1] = True
    if (anat & roi)[::4, ::4].sum() > 500:
        anat = anat & roi
    samp = L[::4, ::4][anat[::4, ::4]]
    if samp.size < 100:
        samp = L[::4, ::4].ravel()
    lo, hi = np.percentile(samp, [vp['lo_p'], vp['hi_p']])
    x = (L - lo) / max(hi - lo, 1e-3)
    v = (1 - x).astype(F32)                     # density-like, bone high
    pr = vp['proc']
    if pr != 'lograw':
        sm = vp['sig_mm']
        B = [gblur(v, s_ / p) for s_ in sm]
        g1, g2, g3 = vp['g']
        v2 = B[2] + (1 + g3) * (B[1] - B[2]) + (1 + g2) * (B[0] - B[1]) + (1 + g1) * (v - B[0])
        mv = float(np.mean(B[3][::8, ::8]))
        v2 = v2 - vp['drc'] * (B[3] - mv)
        if vp['nr'] > 0:
            v2 = (1 - vp['nr']) * v2 + vp['nr'] * ndimage.gaussian_filter(v2, 0.8, truncate=2.0)
        # re-normalise after enhancement
        sa = v2[::4, ::4][anat[::4, ::4]] if anat.any() else v2[::4, ::4].ravel()
        a0, a1 = np.percentile(sa, [0.5, 99.5])
        v2 = (v2 - a0) / max(a1 - a0, 1e-3)
        tk, tp = vp['tone']
        if tk == 'sig':
            f0 = 1 / (1 + math.exp(tp * 0.5)); f1 = 1 / (1 + math.exp(-tp * 0.5))
            y = (1 / (1 + np.exp(-tp * (v2 - 0.5))) - f0) / (f1 - f0)
        else:
            y = np.clip(v2, 0, 1.05) ** tp
        y = np.clip(y * rng.uniform(0.9, 0.97) + rng.uniform(0.0, 0.04), 0, 1)
    else:
        y = np.clip(0.15 + 0.7 * v, 0, 1)
    if vp['coll'] == 'mask':
        y = np.where(collf > 0.5, y, 0.0)
    if vp['flip']:
        y = np.ascontiguousarray(y[:, ::-1])
    # burned-in annotation (display white)
    burned = False
    if rng.uniform() < vp['text']:
        im = Image.fromarray((y * 255).astype(np.uint8), 'L')
        dr = ImageDraw.Draw(im)
        fsz = max(12, int(7 / p))
        font = ImageFont.load_default(size=fsz)
        label = str(rng.choice(['L-SPINE', 'LSPINE', 'LUMBAR'])) + (' AP' if kind == 'AP' else ' LAT')
        if rng.uniform() < 0.5:
            label += ' ' + str(rng.choice(['SUPINE', 'STANDING', 'ERECT']))
        dr.text((int(ncol * 0.05), int(nrow * 0.03)), label, fill=255, font=font)
        ann = np.asarray(im, np.uint8) == 255
        y = np.where(ann & (y < 0.99), 1.0, y)
        burned = True
    maxv = (1 << vp['bits']) - 1
    photo = vp['photo']
    if pr == 'lograw':
        stored = np.clip(np.round(y * maxv), 0, maxv)
        if photo == 'MONOCHROME1':
            stored = maxv - stored
        wl = np.percentile(stored[::4, ::4][anat[::4, ::4]] if anat.any() else stored, [1, 99])
        wc, ww = float(wl.mean()), float(max(wl[1] - wl[0], 16) * 1.1)
    else:
        stored = np.round(y * maxv)
        if photo == 'MONOCHROME1':
            stored = maxv - stored
        if rng.uniform() < 0.5:
            wc, ww = maxv / 2 + 0.5, float(maxv + 1)
        else:
            ww = maxv * rng.uniform(0.93, 1.0)
            wc = maxv / 2 + rng.uniform(-0.5, 0.5) * (maxv - ww)
    stored = stored.astype(np.uint16)
    meta.update(kvp=kvp, sid=sid, sod=sid - (view.R @ np.zeros(3) + view.t)[2], ws=ws, wc=wc, ww=ww,
                burned=burned, cu=cu, al=al, grid=grid < 1, fw=fw, fh=fh, ntg=ntg)
    if kind == 'AP':
        po = ['R' if vp['flip'] else 'L', 'F']
    else:
        po = ['A' if vp['flip'] else 'P', 'F']
    meta['po'] = po
    return stored, meta


# ----------------------------------------------------------------------------- DICOM
def uid(*parts):
    h = hashlib.sha256(('phantom_g:' + ':'.join(str(x) for x in parts)).encode()).digest()
    return '2.25.' + str(int.from_bytes(h[:15], 'big') + 1)


def ds_str(x):
    s = f'{x:.6g}'
    if len(s) > 16:
        s = f'{x:.4g}'
    return s


def code_item(value, scheme, meaning):
    it = Dataset()
    it.CodeValue = value
    it.CodingSchemeDesignator = scheme
    it.CodeMeaning = meaning
    return it


def write_dicom(path, arr, meta, vp, pat, kind, seed, idx, sdate, stime):
    mod = vp['mod']
    sop_class = '1.2.840.10008.5.1.4.1.1.1.1' if mod == 'DX' else '1.2.840.10008.5.1.4.1.1.1'
    sop_uid = uid(seed, idx, kind, 'sop')
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = sop_class
    fm.MediaStorageSOPInstanceUID = sop_uid
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    fm.ImplementationClassUID = uid('impl')
    fm.ImplementationVersionName = 'PHANTOM_G_1'
    ds = Dataset()
    ds.file_meta = fm
    ds.SpecificCharacterSet = 'ISO_IR 100'
    ds.ImageType = ['ORIGINAL', 'PRIMARY']
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = sdate
    ds.SeriesDate = sdate
    ds.ContentDate = sdate
    ds.StudyTime = stime
    ds.SeriesTime = stime
    ds.ContentTime = stime
    ds.AccessionNumber = f'G{seed % 100000:05d}{idx:05d}'
    ds.Modality = mod
    if mod == 'DX':
        ds.PresentationIntentType = 'FOR PRESENTATION'
    ds.Manufacturer = vp['man']
    ds.InstitutionName = 'Synthetic Hospital ' + chr(65 + (hash_int(seed, idx, 'inst') % 8))
    ds.ReferringPhysicianName = ''
    ds.StudyDescription = 'XR LUMBAR SPINE 2 VIEWS'
    ds.SeriesDescription = 'L-SPINE ' + ('AP' if kind == 'AP' else 'LAT')
    ds.ManufacturerModelName = vp['model']
    ds.PatientName = pat['name']
    ds.PatientID = pat['id']
    ds.PatientBirthDate = ''
    ds.PatientSex = pat['sex']
    ds.PatientAge = f"{int(pat['age']):03d}Y"
    ds.BodyPartExamined = 'LSPINE'
    ds.KVP = ds_str(round(meta['kvp'], 1))
    ds.DeviceSerialNumber = f'{hash_int(vp["man"], "sn") % 900000 + 100000}'
    ds.SoftwareVersions = 'PG-1.0'
    ds.DistanceSourceToDetector = ds_str(round(meta['sid'], 1))
    ds.DistanceSourceToPatient = ds_str(round(meta['sod'], 1))
    ds.ExposureTime = str(int(20 + meta['kvp'] % 7 * 10))
    ds.XRayTubeCurrent = str(int(250 + (idx % 5) * 50))
    ds.Exposure = str(int(10 + (idx % 30)))
    ds.ImagerPixelSpacing = [ds_str(vp['p']), ds_str(vp['p'])]
    ds.ViewPosition = 'AP' if kind == 'AP' else 'LL'
    ds.PatientOrientation = meta['po']
    ds.StudyInstanceUID = uid(seed, idx, 'study')
    ds.SeriesInstanceUID = uid(seed, idx, kind, 'series')
    ds.StudyID = f'{idx + 1}'
    ds.SeriesNumber = 1 if kind == 'AP' else 2
    ds.InstanceNumber = 1
    ds.ImageLaterality = 'U'
    ds.BurnedInAnnotation = 'YES' if meta['burned'] else 'NO'
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = vp['photo']
    ds.Rows, ds.Columns = arr.shape
    ds.BitsAllocated = 16
    ds.BitsStored = vp['bits']
    ds.HighBit = vp['bits'] - 1
    ds.PixelRepresentation = 0
    ds.WindowCenter = ds_str(round(meta['wc'], 1))
    ds.WindowWidth = ds_str(round(meta['ww'], 1))
    if vp.get('voi_sig'):
        ds.VOILUTFunction = 'SIGMOID'
    ds.LossyImageCompression = '00'
    if mod == 'DX':
        ds.PixelIntensityRelationship = 'LOG'
        ds.PixelIntensityRelationshipSign = 1 if vp['photo'] == 'MONOCHROME1' else -1
        ds.RescaleIntercept = '0'
        ds.RescaleSlope = '1'
        ds.RescaleType = 'US'
        ds.PresentationLUTShape = 'IDENTITY' if vp['photo'] == 'MONOCHROME2' else 'INVERSE'
        ds.DetectorType = 'DIRECT' if vp['det'] == 'aSe' else 'SCINTILLATOR'
        ds.DetectorConfiguration = 'AREA'
        ds.PositionerType = 'COLUMN'
        ds.Grid = 'FOCUSED' if meta['grid'] else 'NONE'
        ds.DetectorID = f'D{hash_int(vp["man"], "det") % 10000:04d}'
        ds.DetectorBinning = ['1', '1']
        ds.PixelSpacing = [ds_str(vp['p']), ds_str(vp['p'])]
        ds.AcquisitionContextSequence = Sequence([])
        ds.AnatomicRegionSequence = Sequence([code_item('122496007', 'SCT', 'Lumbar spine')])
        if kind == 'AP':
            ds.ViewCodeSequence = Sequence([code_item('399348003', 'SCT', 'antero-posterior')])
        else:
            ds.ViewCodeSequence = Sequence([code_item('399173006', 'SCT', 'left lateral')])
        ds.EstimatedRadiographicMagnificationFactor = ds_str(round(round(meta['sid'], 1) / round(meta['sod'], 1), 4))
    else:
        if hash_int(seed, idx, 'resc') % 2 == 0:
            ds.RescaleIntercept = '0'
            ds.RescaleSlope = '1'
            ds.RescaleType = 'US'
        ds.PlateType = 'ST-VI'
        ds.PhosphorType = 'BaFBr'
        if hash_int(seed, idx, 'ps') % 2 == 0:
            ds.PixelSpacing = [ds_str(vp['p']), ds_str(vp['p'])]
    ds.PixelData = arr.astype('<u2').tobytes()
    ds.save_as(path, enforce_file_format=True)


def hash_int(*parts):
    return int.from_bytes(hashlib.sha256(':'.join(str(x) for x in parts).encode()).digest()[:8], 'big')


# ----------------------------------------------------------------------------- main
def study(outdir, seed, idx, cls):
    rng = np.random.default_rng([seed, idx])
    if cls == 0:
        T = rng.uniform(-1.0, 2.0)
    elif cls == 1:
        T = rng.uniform(-2.49, -1.01)
    else:
        T = rng.uniform(-4.5, -2.5)
    T = round(float(T), 2)
    label = 0 if T >= -1.0 else (2 if T <= -2.5 else 1)
    sex = 'F' if rng.uniform() < 0.78 else 'M'
    age = int(np.clip(round(50 - 9 * T + rng.normal(0, 9)), 22, 94))
    P = build_patient(rng, T, sex, age)
    P['sex'] = sex
    P['rng_crest'] = rng.uniform(-12, 12)
    P['r12'] = rng.uniform(0.8, 1.3)
    P['dia'] = rng.uniform(-10, 25)
    objs = skeleton_objects(P)
    ribs = rib_polylines(P)
    gas = gas_list(rng, P)
    wv = np.array([v['w'] for v in VENDORS], float)
    V = VENDORS[int(rng.choice(len(VENDORS), p=wv / wv.sum()))]
    vp = vendor_params(rng, V)
    pid = f'PG{seed}-{idx:05d}'
    pat = dict(id=pid, name=f'PHANTOMG^S{seed}N{idx:05d}', sex=sex, age=age)
    d0 = datetime.date(2018, 1, 1) + datetime.timedelta(days=int(rng.integers(0, 2400)))
    sdate = d0.strftime('%Y%m%d')
    stime = f'{int(rng.integers(7, 19)):02d}{int(rng.integers(0, 60)):02d}{int(rng.integers(0, 60)):02d}'
    rows = []
    bmd = 1.047 + 0.11 * T
    for kind in ('AP', 'LAT'):
        vrng = np.random.default_rng([seed, idx, 1 if kind == 'AP' else 2])
        arr, meta = render_view(vrng, P, objs, ribs, gas, vp, kind)
        fn = f'{pid}_{kind}.dcm'
        write_dicom(os.path.join(outdir, fn), arr, meta, vp, pat, kind, seed, idx, sdate, stime)
        rows.append(f'{fn},{label},{T:.2f},{bmd:.3f},{pid},{kind}')
    return rows


def main():
    if len(sys.argv) != 4:
        print(__doc__.split('\n')[2])
        sys.exit(2)
    outdir, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    os.makedirs(outdir, exist_ok=True)
    crng = np.random.default_rng([seed, 987654321])
    classes = crng.permutation(np.arange(n) % 3)
    lines = ['path,label,t_score,bmd,patient_id,view']
    for i in range(n):
        lines += study(outdir, seed, i, int(classes[i]))
        with open(os.path.join(outdir, 'manifest.csv'), 'w') as f:
            f.write('\n'.join(lines) + '\n')


if __name__ == '__main__':
    main()
