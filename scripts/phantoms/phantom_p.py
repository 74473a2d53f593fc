#!/usr/bin/env python3
"""phantom_p -- polygon/mesh synthetic lumbar-spine radiograph generator.

Every anatomical part (vertebral bodies, pedicles, laminae, articular and
transverse/spinous processes, ribs, sacrum, ilia, psoas, kidneys, liver, lung
bases, bowel gas, aortic plaques) is a closed 2-D outline per view: a periodic
cubic spline through control points of a parametric anatomy (per-patient size,
lordosis, scoliosis, axial rotation, obliquity, degeneration, fractures).  Each
outline is rasterised with 4x4 super-sampled anti-aliasing in its own local
frame, turned into path-length maps (cortical bone, trabecular bone, fat,
muscle/water, gas) by an analytic thickness profile (elliptic chord across
rows for vertebral bodies with an explicit cortical shell and obliquely
projected endplates; circular-chord profile from the distance transform for
tubular/plate parts; end-on tubes for AP pedicles) and then placed into the
detector plane with an affine warp.  The material maps are combined with a
polychromatic tungsten spectrum (Kramers + K lines, Al/Cu filtration, ~10
energy bins, CsI absorption weighting), heel effect, scatter as a blurred
fraction of the primary, scintillator blur, quantum + electronic + coloured
noise, a lead L/R marker and collimation, then processed by one of four
invented vendor pipelines into a DICOM Part-10 file.

Usage: phantom_p.py OUTDIR N SEED [--workers W]
"""
import argparse
import csv
import math
import os
import sys

import numpy as np
from scipy import interpolate, ndimage
from PIL import Image, ImageDraw, ImageFont

import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

# --------------------------------------------------------------------------
# physics tables (mass attenuation coefficients, cm^2/g; approximate NIST)
# --------------------------------------------------------------------------
_E = np.array([15, 20, 30, 40, 50, 60, 80, 100, 150.0])
_MU = {
    'water': [1.673, 0.8096, 0.3756, 0.2683, 0.2269, 0.2059, 0.1837, 0.1707, 0.1505],
    'fat': [1.20, 0.600, 0.310, 0.236, 0.206, 0.191, 0.175, 0.164, 0.146],
    'cort': [9.00, 4.001, 1.331, 0.6655, 0.4242, 0.3148, 0.2229, 0.1855, 0.1480],
    # hydroxyapatite-like mineral, derived from cortical bone minus 40 % matrix
    'ha': [13.9, 6.13, 1.965, 0.930, 0.555, 0.387, 0.249, 0.195, 0.147],
    'al': [7.955, 3.441, 1.128, 0.5685, 0.3681, 0.2778, 0.2018, 0.1704, 0.1378],
    'cu': [74.05, 33.79, 10.92, 4.862, 2.613, 1.593, 0.763, 0.4584, 0.2217],
}
_CSI_E = np.array([15, 20, 30, 33.1, 33.2, 36.0, 36.1, 40, 50, 60, 80, 100, 150.0])
_CSI_MU = np.array([52, 19.5, 6.6, 5.0, 16.0, 12.5, 27.0, 21.0, 12.3, 7.7, 3.6, 2.0, 0.75])


def mu_of(name, e):
    return np.exp(np.interp(np.log(e), np.log(_E), np.log(_MU[name])))


def spectrum(kvp, al_mm, cu_mm, nb=10):
    """Energy bins, fluence weights (photons) and detector weights (energy absorbed)."""
    e = np.linspace(16.0, kvp - 1.0, 200)
    de = e[1] - e[0]
    phi = np.clip(kvp - e, 0, None) / e  # Kramers (photon number per keV)
    for line, amp in ((59.3, 0.05), (67.2, 0.02)):  # tungsten K lines
        if kvp > 70:
            phi += amp * (kvp - 69.5) / 20.0 * np.exp(-0.5 * ((e - line) / 0.8) ** 2) * phi.max()
    phi *= np.exp(-mu_of('al', e) * 2.70 * al_mm / 10 - mu_of('cu', e) * 8.96 * cu_mm / 10)
    csi = np.exp(np.interp(e, _CSI_E, np.log(_CSI_MU)))
    absorb = 1 - np.exp(-csi * 4.51 * 0.06)  # 0.6 mm CsI
    edges = np.linspace(e[0], e[-1] + de, nb + 1)
    eb, wq, wd = [], [], []
    for k in range(nb):
        m = (e >= edges[k]) & (e < edges[k + 1])
        if phi[m].sum() <= 0:
            continue
        ek = (phi[m] * e[m]).sum() / phi[m].sum()
        eb.append(ek)
        wq.append((phi[m] * absorb[m]).sum())
        wd.append((phi[m] * absorb[m] * e[m]).sum())
    eb, wq, wd = np.array(eb), np.array(wq), np.array(wd)
    return eb, wq / wq.sum(), wd / wd.sum()


# --------------------------------------------------------------------------
# geometry helpers: spline contours, anti-aliased rasterisation, placement
# --------------------------------------------------------------------------
def spline_closed(pts, n=96):
    pts = np.asarray(pts, float)
    x = np.r_[pts[:, 0], pts[0, 0]]
    y = np.r_[pts[:, 1], pts[0, 1]]
    tck, _ = interpolate.splprep([x, y], s=0, per=True, k=3)
    uu = np.linspace(0, 1, n, endpoint=False)
    xs, ys = interpolate.splev(uu, tck)
    return np.stack([xs, ys], 1)


def ellipse_pts(cx, cy, a, b, n=10, jitter=0.0, rng=None, rot=0.0):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.ones(n)
    if rng is not None and jitter > 0:
        r = 1 + jitter * rng.uniform(-1, 1, n)
    x = a * r * np.cos(t)
    y = b * r * np.sin(t)
    c, s = math.cos(rot), math.sin(rot)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], 1)


def raster(polys, shape, ss=None):
    """polys: list of (Nx2 array in pixel coords (x=col, y=row), fill 1/0)."""
    h, w = shape
    if ss is None:
        ss = 4 if h * w < 120000 else 2
    img = Image.new('L', (w * ss, h * ss), 0)
    dr = ImageDraw.Draw(img)
    for p, fill in polys:
        q = (np.asarray(p) + 0.5) * ss - 0.5
        dr.polygon([tuple(v) for v in q.tolist()], fill=255 if fill else 0)
    return np.asarray(img.resize((w, h), Image.BOX), np.float32) / 255.0


class Canvas:
    """Local drawing frame: contours given in local mm (u right, v down) about the origin."""

    def __init__(self, ps, half_w_mm, half_h_mm):
        self.ps = ps
        self.w = int(math.ceil(2 * half_w_mm / ps)) + 4
        self.h = int(math.ceil(2 * half_h_mm / ps)) + 4
        self.cx = (self.w - 1) / 2.0
        self.cy = (self.h - 1) / 2.0

    def px(self, pts_mm):
        p = np.asarray(pts_mm, float)
        return np.stack([p[:, 0] / self.ps + self.cx, p[:, 1] / self.ps + self.cy], 1)

    def cov(self, polys_mm):
        return raster([(self.px(p), f) for p, f in polys_mm], (self.h, self.w))

    def grid(self):
        v, u = np.mgrid[0:self.h, 0:self.w].astype(np.float32)
        return (u - self.cx) * self.ps, (v - self.cy) * self.ps


class Accum:
    """Per-view accumulators of path length (mm) / mineral mass (mg/cm2-like units)."""
    KEYS = ('water', 'fat', 'gas', 'cort', 'trab', 'mineral', 'calc')

    def __init__(self, h, w):
        self.h, self.w = h, w
        self.m = {k: np.zeros((h, w), np.float32) for k in self.KEYS}

    def place(self, maps, canvas, cx, cy, ang=0.0, scale=1.0):
        """Warp local maps into the image; (cx, cy) image pixel of the local origin,
        ang rotation (rad, +ve rotates local u toward image +y), scale magnification."""
        h, w = canvas.h, canvas.w
        ca, sa = abs(math.cos(ang)), abs(math.sin(ang))
        Rx = 0.5 * (ca * w + sa * h) * scale + 2
        Ry = 0.5 * (sa * w + ca * h) * scale + 2
        r0, r1 = int(max(0, math.floor(cy - Ry))), int(min(self.h, math.ceil(cy + Ry)))
        c0, c1 = int(max(0, math.floor(cx - Rx))), int(min(self.w, math.ceil(cx + Rx)))
        if r1 <= r0 or c1 <= c0:
            return
        c, s = math.cos(ang) / scale, math.sin(ang) / scale
        mat = np.array([[c, -s], [s, c]]) if ang != 0.0 else np.array([c, c])
        off = np.array([c * (r0 - cy) - s * (c0 - cx) + canvas.cy,
                        s * (r0 - cy) + c * (c0 - cx) + canvas.cx])
        for k, arr in maps.items():
            if not np.any(arr):
                continue
            out = ndimage.affine_transform(arr.astype(np.float32), mat, offset=off,
                                           output_shape=(r1 - r0, c1 - c0), order=1,
                                           mode='constant', cval=0.0)
            self.m[k][r0:r1, c0:c1] += out


# --------------------------------------------------------------------------
# thickness profiles
# --------------------------------------------------------------------------
def chord_body(cov, ps, depth, c_side, c_ep, spread_mm, tex=None, tex_amp=0.0, scl_band=0.0):
    """Vertebral-body-like profile: elliptic chord across each row, cortical shell of
    thickness c_side at the sides and endplates of thickness c_ep seen across a band
    spread_mm wide (oblique projection).  Returns cortical, trabecular and
    texture-weighted trabecular path maps (mm)."""
    h, w = cov.shape
    X = np.arange(w, dtype=np.float32)[None, :]
    Y = np.arange(h, dtype=np.float32)[:, None]
    rs = cov.sum(1)
    xc = (cov * X).sum(1) / np.maximum(rs, 1e-6)
    hw = np.maximum(rs / 2.0, 1e-3)
    u = (X - xc[:, None]) / hw[:, None]
    outer = depth * np.sqrt(np.clip(1 - u * u, 0, 1)) * cov
    hw_in = np.maximum(hw - c_side / ps, 1e-3)
    u_in = (X - xc[:, None]) / hw_in[:, None]
    trab_full = max(depth - 2 * c_side, 0) * np.sqrt(np.clip(1 - u_in * u_in, 0, 1))
    cs = cov.sum(0)
    yc = (cov * Y).sum(0) / np.maximum(cs, 1e-6)
    vh = cs / 2.0
    vdist = np.abs(Y - yc[None, :])
    band = (c_ep + abs(spread_mm)) / ps
    core = (vdist < (vh[None, :] - band)).astype(np.float32)
    inband = ((vdist >= vh[None, :] - band) & (vdist < vh[None, :])).astype(np.float32)
    fc = (c_ep / ps) / band
    trab = trab_full * (core + inband * (1 - fc)) * np.minimum(cov * 2, 1)
    cort = np.clip(outer - trab, 0, None)
    wt = trab
    if tex is not None:
        wt = trab * np.clip(1 + tex_amp * tex, 0.2, None)
    if scl_band > 0:  # subchondral sclerosis: denser trabecular bone near endplates
        near = np.clip(1 - (vh[None, :] - vdist) * ps / 4.0, 0, 1)
        wt = wt * (1 + scl_band * near)
    return cort, trab, wt


def edt_profile(cov, ps, depth, c, r=None):
    """Elliptic/circular chord profile from the distance to the outline."""
    m = cov > 0.5
    if not m.any():
        z = np.zeros_like(cov)
        return z, z
    d = ndimage.distance_transform_edt(m).astype(np.float32) * ps + 0.5 * ps * cov
    if r is None:
        r = float(d.max())
    r = max(r, ps)
    s = np.clip(d / r, 0, 1)
    outer = depth * np.sqrt(np.clip(1 - (1 - s) ** 2, 0, 1)) * np.where(m, 1.0, cov)
    rin = max(r - c, 0.3 * ps)
    din = d - c
    sin_ = np.clip(din / rin, 0, 1)
    inner = max(depth - 2 * c, 0) * np.sqrt(np.clip(1 - (1 - sin_) ** 2, 0, 1)) * (din > 0)
    return np.clip(outer - inner, 0, None).astype(np.float32), inner.astype(np.float32)


def trab_texture(rng, shape, ps, q):
    """Oriented band-pass noise: coarser and more vertical at low T (q in [0, 1])."""
    n = rng.standard_normal(shape).astype(np.float32)
    sx = (0.55 + 0.45 * q) / ps
    sy = sx * (1.2 + 1.8 * q)
    a = ndimage.gaussian_filter(n, (sy, sx))
    b = ndimage.gaussian_filter(n, (sy * 2.5, sx * 2.5))
    t = a - 0.8 * b
    t /= t.std() + 1e-6
    return t


def blur_big(x, sigma):
    if sigma < 6:
        return ndimage.gaussian_filter(x, sigma)
    f = int(sigma // 3)
    h, w = x.shape
    hh, ww = -(-h // f) * f, -(-w // f) * f
    xp = np.pad(x, ((0, hh - h), (0, ww - w)), mode='edge')
    small = xp.reshape(hh // f, f, ww // f, f).mean((1, 3))
    small = ndimage.gaussian_filter(small, sigma / f, mode='nearest')
    big = ndimage.zoom(small, f, order=1, mode='nearest', grid_mode=True)
    return big[:h, :w]


# --------------------------------------------------------------------------
# patient model
# --------------------------------------------------------------------------
LEVELS = ['T11', 'T12', 'L1', 'L2', 'L3', 'L4', 'L5']
BODY_H = np.array([22.0, 23.5, 25.5, 26.5, 27.5, 28.0, 27.0])
BODY_W = np.array([36.0, 38.5, 42.0, 44.5, 47.0, 49.5, 52.0])
BODY_D = np.array([28.0, 29.5, 31.0, 32.5, 33.5, 34.0, 33.0])
DISC_H = np.array([6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 10.5])  # disc below each level
TP_LEN = np.array([4.0, 6.0, 12.0, 20.0, 27.0, 22.0, 16.0])

VENDORS = [
    dict(name='Halvorsen Medical', model='Lumina DX-470', modality='DX', bits=12, ps=0.40,
         sw='LMX 4.2.1', mono1=0.12, proc='multiband'),
    dict(name='Kestrel Imaging Systems', model='KX-4300 CR', modality='CR', bits=10, ps=0.35,
         sw='KIS-CR 2.08', mono1=0.55, proc='drc'),
    dict(name='Orvane Radiographics', model='Velo 43', modality='DX', bits=14, ps=0.43,
         sw='VeloView 7.1', mono1=0.12, proc='clahe'),
    dict(name='Taiyo-Brandt', model='TB-Flex 35', modality='DX', bits=16, ps=0.38,
         sw='TBF 11.3', mono1=0.15, proc='mixed'),
]


def make_patient(seed, i):
    rng = np.random.default_rng([int(seed), int(i), 0x5350])
    P = {'rng': rng, 'index': i}
    T = float(np.clip(rng.normal(-1.8, 1.4), -5.0, 2.5))
    zT = (T + 1.8) / 1.4
    age = int(np.clip(round(67 + 11 * (-0.25 * zT + 0.968 * rng.normal())), 45, 90))
    female = rng.random() < 0.75
    P.update(T=T, age=age, female=female)
    P['bmi'] = float(np.clip(rng.lognormal(math.log(27.0), 0.17), 17.5, 48))
    P['size'] = (0.93 if female else 1.0) * float(np.clip(rng.normal(1, 0.045), 0.85, 1.15))
    # bone density: trabecular vBMD (mg/cm3) from T, patient and level noise
    v_pat = (165 + 27 * T) * (1 + 0.08 * rng.normal())
    P['vbmd'] = np.clip(v_pat * (1 + 0.05 * rng.standard_normal(7)), 25, 330)
    P['vbmd_sacrum'] = max(25.0, v_pat * 0.8 * (1 + 0.05 * rng.normal()))
    P['cort_rho'] = 1.85 * (1 + 0.012 * T) * (1 + 0.03 * rng.normal())  # g/cm3
    P['cort_t'] = float(np.clip(1.0 * (1 + 0.04 * T) * (1 + 0.1 * rng.normal()), 0.55, 1.5))
    P['q'] = float(np.clip((0.5 - T) / 4.5 + 0.08 * rng.normal(), 0, 1))  # texture coarseness
    P['tex_amp'] = 0.14 + 0.12 * P['q']
    P['marrow_fat'] = float(np.clip(0.35 + 0.004 * (age - 60) - 0.04 * T + 0.05 * rng.normal(), 0.15, 0.8))
    # degeneration (age-driven, independent of T given age)
    dg = float(np.clip((age - 45) / 40.0 + 0.25 * rng.normal(), 0, 1.3))
    P['degen'] = dg
    lvl_deg = np.clip(dg * rng.uniform(0.2, 1.0, 7) * np.array([0.4, 0.5, 0.6, 0.8, 0.9, 1.1, 1.0]), 0, 1.4)
    P['lvl_deg'] = lvl_deg
    disc_narrow = np.clip(1 - lvl_deg * rng.uniform(0.0, 0.45, 7), 0.35, 1)
    s = P['size']
    P['bh'] = BODY_H * s * rng.normal(1, 0.03, 7)
    P['bw'] = BODY_W * s * rng.normal(1, 0.03, 7)
    P['bd'] = BODY_D * s * rng.normal(1, 0.03, 7)
    P['dh'] = DISC_H * s * disc_narrow * rng.normal(1, 0.06, 7)
    P['osteo'] = lvl_deg[:, None] * rng.uniform(0, 6, (7, 4))  # osteophyte size per corner (mm)
    P['scler'] = lvl_deg * rng.uniform(0, 0.8, 7)
    # fractures (more likely at low T)
    p_fx = float(np.clip(0.03 + 0.09 * max(0.0, -1.0 - T) + 0.002 * (age - 60), 0.01, 0.45))
    P['ant_h'] = np.ones(7)
    P['mid_h'] = np.ones(7)
    P['post_h'] = np.ones(7)
    P['fx'] = []
    if rng.random() < p_fx:
        nfx = 1 + int(rng.random() < 0.3)
        w = np.array([0.4, 1.5, 1.6, 1.0, 0.8, 0.6, 0.3])
        lv = rng.choice(7, size=nfx, replace=False, p=w / w.sum())
        for j in lv:
            kind = rng.choice(['wedge', 'biconcave', 'crush'], p=[0.6, 0.25, 0.15])
            sev = rng.uniform(0.15, 0.45)
            if kind == 'wedge':
                P['ant_h'][j] = 1 - sev
                P['mid_h'][j] = 1 - 0.5 * sev
            elif kind == 'biconcave':
                P['mid_h'][j] = 1 - sev
            else:
                P['ant_h'][j] = P['mid_h'][j] = 1 - sev
                P['post_h'][j] = 1 - 0.7 * sev
            P['fx'].append((LEVELS[j], str(kind), round(float(sev), 2)))
    # posture
    P['lordosis'] = float(np.clip(rng.normal(50 - 0.15 * (age - 65), 10), 20, 78))
    P['tilt'] = float(rng.normal(0, 4))
    P['sac_slope'] = float(np.clip(P['lordosis'] * 0.75 + rng.normal(4, 6), 20, 62))
    sc = abs(rng.normal(0, 4 + 0.12 * max(0, age - 55)))
    P['scol_amp'] = float(min(sc, 30)) * (1 if rng.random() < 0.5 else -1)
    P['scol_phase'] = float(rng.uniform(-0.5, 0.5))
    P['scol_freq'] = float(rng.uniform(0.8, 1.5))
    P['axial_rot'] = float(rng.normal(0, 2.5))  # patient obliquity, deg
    P['lat_obliq'] = float(rng.normal(0, 2.5))
    # soft tissue
    bmi = P['bmi']
    P['half_width'] = (118 + 4.2 * bmi) * (0.97 if female else 1.03) * rng.normal(1, 0.04)
    P['ap_thick'] = (95 + 5.6 * bmi) * (0.96 if female else 1.04) * rng.normal(1, 0.05)
    P['body_pe'] = float(rng.uniform(2.3, 3.4))  # superellipse exponent of the trunk section
    P['fat_sc'] = float(np.clip((bmi - 17) * (2.1 if female else 1.4) * rng.normal(1, 0.2), 4, 90))
    P['visc_fat'] = float(np.clip(0.10 + 0.012 * (bmi - 20) + (0.06 if not female else 0) + 0.04 * rng.normal(), 0.04, 0.55))
    # aortic calcification (age-driven)
    lam = max(0.0, (age - 48) / 5.0) * rng.lognormal(0, 0.6)
    P['plaques'] = []
    for _ in range(int(min(rng.poisson(lam), 40))):
        P['plaques'].append(dict(s=rng.uniform(0.0, 1.0), th=rng.uniform(0, 2 * np.pi),
                                 L=rng.uniform(2, 14), t=rng.uniform(0.5, 1.8),
                                 dens=rng.uniform(0.6, 1.0)))
    P['aorta_gap'] = float(rng.uniform(2, 8) + 0.15 * max(0, age - 60))
    P['aorta_r'] = float(rng.uniform(9, 12.5) * (1 + 0.005 * max(0, age - 60)))
    # bowel content: list of blobs in a generic abdominal frame (x lateral, z AP, level s)
    P['bowel'] = make_bowel(rng)
    P['vendor'] = int(rng.integers(0, len(VENDORS)))
    P['hist_seed'] = int(rng.integers(0, 2 ** 31))
    return P


def make_bowel(rng):
    """Gas/stool blobs in patient space: x (lateral mm, +patient left), y (mm from L3
    centre, down +), z (AP mm from vertebral-body centre, -ve anterior)."""
    blobs = []
    g = rng.uniform(0.1, 1.0)  # overall gassiness
    # colon frame: ascending (patient right), transverse, descending (patient left)
    yflex_r = rng.uniform(-60, 0)
    yflex_l = rng.uniform(-95, -40)
    sag = rng.uniform(20, 110)
    pts = []
    for t in np.linspace(0, 1, 9):  # ascending
        pts.append((-rng.uniform(85, 120), 150 - t * (150 - yflex_r), rng.uniform(-60, -10)))
    for t in np.linspace(0, 1, 11)[1:]:  # transverse (sagging)
        x = -95 + t * 190
        y = yflex_r + (yflex_l - yflex_r) * t + sag * math.sin(math.pi * t)
        pts.append((x, y, rng.uniform(-110, -60)))
    for t in np.linspace(0, 1, 9)[1:]:  # descending
        pts.append((rng.uniform(90, 125), yflex_l + t * (170 - yflex_l), rng.uniform(-50, 0)))
    for (x, y, z) in pts:
        if rng.random() < 0.75:
            gf = float(np.clip(rng.beta(1.2, 2.0) * g * 1.4, 0, 1))
            blobs.append(dict(x=x + rng.normal(0, 6), y=y + rng.normal(0, 6), z=z,
                              a=rng.uniform(16, 30), b=rng.uniform(14, 26), rot=rng.uniform(0, np.pi),
                              depth=rng.uniform(25, 55), gas=gf, stool=rng.uniform(0.2, 0.9)))
    # small-bowel gas loops and rectosigmoid
    for _ in range(int(rng.poisson(4 * g))):
        blobs.append(dict(x=rng.normal(0, 55), y=rng.uniform(-20, 150), z=rng.uniform(-120, -40),
                          a=rng.uniform(8, 20), b=rng.uniform(5, 12), rot=rng.uniform(0, np.pi),
                          depth=rng.uniform(12, 30), gas=float(rng.uniform(0.4, 1.0) * g), stool=0.0))
    if rng.random() < 0.5:
        blobs.append(dict(x=rng.normal(0, 15), y=rng.uniform(150, 190), z=rng.uniform(-30, 10),
                          a=rng.uniform(15, 30), b=rng.uniform(12, 25), rot=rng.uniform(0, np.pi),
                          depth=rng.uniform(20, 40), gas=float(rng.uniform(0.3, 1.0)), stool=rng.uniform(0.3, 0.9)))
    return blobs


def spine_geometry(P):
    """Arc-length layout of body centres; sagittal (y, z) and coronal (x) centre lines."""
    bh = P['bh'] * np.array([min(a, m, p) * 0.0 + (a + 2 * m + p) / 4 for a, m, p in
                             zip(P['ant_h'], P['mid_h'], P['post_h'])])
    dh = P['dh']
    s_top = np.zeros(7)
    s = 0.0
    for j in range(7):
        s_top[j] = s
        s += bh[j] + dh[j]
    S = s  # to S1 endplate
    s_c = s_top + bh / 2
    lam = math.radians(P['lordosis'])
    tilt = math.radians(P['tilt'])
    # tangent angle from vertical (+ = going down toward posterior); lordosis over L1..S1
    ss = np.linspace(0, S, 400)
    sL1 = s_top[2]
    frac = np.clip((ss - sL1) / (S - sL1), 0, 1)
    phi = tilt - 0.45 * lam + lam * frac ** 1.15 + math.radians(6) * (1 - np.clip(ss / sL1, 0, 1))
    y = np.concatenate([[0], np.cumsum(np.cos(phi[1:]) * np.diff(ss))])
    z = np.concatenate([[0], np.cumsum(np.sin(phi[1:]) * np.diff(ss))])
    yc = np.interp(s_c, ss, y)
    zc = np.interp(s_c, ss, z)
    phic = np.interp(s_c, ss, phi)
    yS1, zS1 = np.interp(S, ss, y), np.interp(S, ss, z)
    # coronal: scoliosis
    A = P['scol_amp']
    xs = A * np.sin(np.pi * P['scol_freq'] * (ss / S) + P['scol_phase'])
    xs = xs - np.interp(S, ss, xs)  # pinned at sacrum
    xc = np.interp(s_c, ss, xs)
    dx = np.gradient(xs, ss)
    psi = np.arctan(np.interp(s_c, ss, dx))  # coronal tilt
    rot = np.radians(0.35 * xc + P['axial_rot']) + np.radians(P['rng'].normal(0, 1.2, 7))
    ref = yc[4]
    G = dict(bh=bh, yc=yc - ref, zc=zc - zc[4], phi=phic, xc=xc, psi=psi, rot=rot,
             yS1=yS1 - ref, zS1=zS1 - zc[4], phiS1=math.radians(P['sac_slope']),
             top_y=y[0] - ref)
    return G


# --------------------------------------------------------------------------
# view rendering: anatomy -> material maps
# --------------------------------------------------------------------------
def body_contour(W, H, ant, mid, post, waist, conc, flip=1):
    """Vertebral body outline (local mm). u: -W/2 anterior (LAT) / patient right (AP)."""
    hs = lambda f: H * f / 2
    pts = []
    # top edge from u=-W/2 to +W/2 (v negative)
    for uu, f in ((-0.5, ant), (-0.25, 0.5 * (ant + mid)), (0.0, mid), (0.25, 0.5 * (mid + post)), (0.5, post)):
        u = uu * W * 0.96
        cc = conc * (1 - (2 * uu) ** 2)
        pts.append((u, -hs(f) + cc))
    pts.append((W / 2 * (1 - waist), 0.0))
    for uu, f in ((0.5, post), (0.25, 0.5 * (mid + post)), (0.0, mid), (-0.25, 0.5 * (ant + mid)), (-0.5, ant)):
        u = uu * W * 0.96
        cc = conc * (1 - (2 * uu) ** 2)
        pts.append((u, hs(f) - cc))
    pts.append((-W / 2 * (1 - waist), 0.0))
    p = spline_closed(pts, 120)
    p[:, 0] *= flip
    return p


def add_part(acc, canvas, cort, trab, wt, cx, cy, ang, scale, rho_c, vbmd, marrow_fat, extra=None):
    maps = {'cort': cort, 'trab': trab, 'mineral': wt * (vbmd / 1000.0)}
    if extra:
        maps.update(extra)
    acc.place(maps, canvas, cx, cy, ang, scale)


def render_spine(P, G, acc, view, ps, org, M, flip, alpha_fn):
    """Draw vertebrae T11-L5 with posterior elements.  org: image pixel of patient
    origin (L3 centre); M magnification; flip: +1 anterior/patient-right left."""
    rng = P['rng']
    ct = P['cort_t']
    for j in range(7):
        W, D, H = P['bw'][j], P['bd'][j], P['bh'][j]
        a_h, m_h, p_h = P['ant_h'][j], P['mid_h'][j], P['post_h'][j]
        comp = 1 + 0.6 * (1 - min(a_h, m_h, p_h))  # compaction of fractured body
        vb = P['vbmd'][j] * comp
        ldeg = P['lvl_deg'][j]
        yc = G['yc'][j]
        alpha = alpha_fn(yc)
        if view == 'AP':
            cx = org[0] + G['xc'][j] * M / ps
            cy = org[1] + yc * M / ps
            ang = -G['psi'][j]
            Wb, Hb = W, H * math.cos(G['phi'][j]) * (a_h + 2 * m_h + p_h) / 4
            spread = D * abs(math.sin(G['phi'][j] - alpha)) * 0.8
            depth = D
            am = (1.0, m_h / max((a_h + p_h) / 2, 0.3), 1.0)
            if m_h >= (a_h + p_h) / 2:
                am = (1.0, 1.0, 1.0)
            cont = body_contour(Wb, Hb, am[0], am[1], am[2], rng.uniform(0.04, 0.09), rng.uniform(0.3, 1.2))
        else:
            cx = org[0] + flip * G['zc'][j] * M / ps
            cy = org[1] + yc * M / ps
            ang = -flip * G['phi'][j]
            Wb, Hb = D, H
            spread = W * abs(math.sin(G['psi'][j] + 0.5 * math.radians(P['lat_obliq']))) * 0.8 \
                + W * abs(math.sin(alpha)) * 0.8
            depth = W * 0.92
            cont = body_contour(D, H, a_h, m_h, p_h, rng.uniform(0.02, 0.06), rng.uniform(0.5, 1.6), flip)
        cv = Canvas(ps, Wb * 0.75 + 10, Hb * 0.75 + 10)
        polys = [(cont, 1)]
        # osteophytes at the four corners (cortical spurs)
        ost = []
        for k, (su, sv) in enumerate(((-1, -1), (1, -1), (-1, 1), (1, 1))):
            o = P['osteo'][j, k]
            if view == 'LAT' and su > 0:
                o *= 0.3  # posterior osteophytes are small
            if o > 1.0:
                bu, bv = su * Wb / 2 * 0.97, sv * Hb / 2 * 0.97
                if view == 'LAT':
                    bu *= flip
                sx = (su * flip if view == 'LAT' else su)
                tri = [(bu - sx * 2.5, bv - sv * 3.0), (bu + sx * o * 0.8, bv + sv * o * 0.6),
                       (bu + sx * 0.5, bv - sv * 0.5), (bu - sx * 3.5, bv + sv * 0.5)]
                ost.append(spline_closed(tri, 40))
        cov = cv.cov(polys)
        tex = trab_texture(rng, cov.shape, ps, P['q'])
        cort, trab, wt = chord_body(cov, ps, depth, ct, ct * (1 + 0.6 * P['scler'][j]) + 0.3,
                                    spread, tex, P['tex_amp'], scl_band=0.5 * P['scler'][j])
        if ost:
            oc = cv.cov([(o, 1) for o in ost]) * (1 - np.minimum(cov * 3, 1))
            cort = cort + oc * depth * 0.35
        add_part(acc, cv, cort, trab, wt, cx, cy, ang, M, P['cort_rho'], vb, P['marrow_fat'])
        # posterior elements
        if view == 'AP':
            render_post_ap(P, G, acc, j, ps, cx, cy, ang, M)
        else:
            render_post_lat(P, G, acc, j, ps, cx, cy, ang, M, flip)


def _edt_add(acc, cv, polys, depth, c, cx, cy, ang, M, vb, P, r=None, mult=1.0, tex=False):
    cov = cv.cov(polys)
    if cov.max() <= 0:
        return
    cort, trab = edt_profile(cov, cv.ps, depth, c, r)
    wt = trab
    if tex:
        t = trab_texture(P['rng'], cov.shape, cv.ps, P['q'])
        wt = trab * np.clip(1 + P['tex_amp'] * t, 0.2, None)
    add_part(acc, cv, cort * mult, trab * mult, wt * mult, cx, cy, ang, M, P['cort_rho'], vb, P['marrow_fat'])


def render_post_ap(P, G, acc, j, ps, cx, cy, ang, M):
    rng = P['rng']
    W, D, H = P['bw'][j], P['bd'][j], P['bh'][j]
    rot = G['rot'][j]
    vb = P['vbmd'][j] * 1.1
    ldeg = P['lvl_deg'][j]
    cv = Canvas(ps, W / 2 + TP_LEN[j] * P['size'] + 25, H / 2 + 25)
    zp = D / 2 + 8  # pedicle AP position behind body centre
    pw = W / 2 - 7.5 - 0.5 * j * 0  # pedicle lateral position
    pa, pb = 3.2 + 0.55 * j, 6.5 + 0.25 * j
    ct = P['cort_t'] * 1.3
    ped_u = [-pw * math.cos(rot) + zp * math.sin(rot), pw * math.cos(rot) + zp * math.sin(rot)]
    vped = -H * 0.2
    for k, pu in enumerate(ped_u):
        sc = 1 + (0.12 * math.sin(rot) * (1 if k else -1))
        out = ellipse_pts(pu, vped, pa * sc * abs(math.cos(rot)) + 0.5, pb, 12)
        inn = ellipse_pts(pu, vped, max(pa * sc * abs(math.cos(rot)) + 0.5 - ct, 0.5), max(pb - ct, 0.5), 12)
        co = cv.cov([(spline_closed(out), 1)])
        ci = cv.cov([(spline_closed(inn), 1)])
        L = 8 + 0.6 * j
        ring = ndimage.gaussian_filter(np.clip(co - ci, 0, 1), 0.8 / ps)
        add_part(acc, cv, L * ring, L * ci, L * ci, cx, cy, ang, M,
                 P['cort_rho'], vb, P['marrow_fat'])
    zs = D / 2 + 38
    us = zs * math.sin(rot)
    # spinous process: teardrop below pedicle line
    sp = [(us - 4.5, -H * 0.05), (us + 4.5, -H * 0.05), (us + 6, H * 0.3), (us + 3, H * 0.62),
          (us - 3, H * 0.62), (us - 6, H * 0.3)]
    _edt_add(acc, cv, [(spline_closed(sp), 1)], 18, 1.0, cx, cy, ang, M, vb, P)
    # laminae (oblique plates between pedicles and spinous base)
    for k, pu in enumerate(ped_u):
        sgn = -1 if k == 0 else 1
        lam = [(pu - sgn * 1.0, vped + pb * 0.6), (pu + sgn * 0.5 * pa, vped + pb + 6),
               (us + sgn * 5, H * 0.5), (us + sgn * 3.5, H * 0.18)]
        _edt_add(acc, cv, [(spline_closed(lam, 40), 1)], 9, 0.9, cx, cy, ang, M, vb, P, mult=1.0)
        # articular processes (superior above, inferior below the body margin)
        fs = 1 + 0.5 * ldeg
        for vv, hh in ((-H / 2 - 3.5, 7.0), (H / 2 + 4.5, 7.5)):
            ua = pu + sgn * 1.5 - (sgn * 4.0 if vv > 0 else 0)
            ap = ellipse_pts(ua, vv, 5.0 * fs ** 0.5, hh, 10, 0.12, rng)
            _edt_add(acc, cv, [(spline_closed(ap), 1)], 13 * fs, 1.1 * fs, cx, cy, ang, M, vb, P)
        # transverse process
        tl = TP_LEN[j] * P['size'] * rng.uniform(0.85, 1.15)
        if tl > 3:
            u0 = pu + sgn * 2
            u1 = sgn * (W / 2 + tl)
            up = rng.uniform(-0.15, 0.25) * tl
            th = (5.5 if j < 6 else 9.0) * P['size']
            tp = [(u0, vped - th * 0.9), ((u0 + u1) / 2, vped - th * 0.5 - up * 0.5), (u1, vped - th * 0.3 - up),
                  (u1 + sgn * 1.5, vped - up), (u1, vped + th * 0.3 - up), ((u0 + u1) / 2, vped + th * 0.45 - up * 0.5),
                  (u0, vped + th * 0.9)]
            _edt_add(acc, cv, [(spline_closed(tp, 60), 1)], 9 if j < 6 else 14, 0.9, cx, cy, ang, M, vb, P)


def render_post_lat(P, G, acc, j, ps, cx, cy, ang, M, flip):
    rng = P['rng']
    W, D, H = P['bw'][j], P['bd'][j], P['bh'][j]
    vb = P['vbmd'][j] * 1.1
    ldeg = P['lvl_deg'][j]
    cv = Canvas(ps, D / 2 + 70, H / 2 + 22)
    b = D / 2
    obl = math.radians(P['lat_obliq']) + G['rot'][j]
    for side in (-1, 1):
        du = side * (W / 2) * math.sin(obl) * 0.8  # bilateral offset from obliquity
        mg = 1 + side * 0.035  # divergent magnification of near/far side
        f = lambda pts: [((u + du) * mg * flip, v * mg) for (u, v) in pts]
        # pedicle (upper half of body), then articular pillar / pars
        ped = [(b - 2, -H / 2 + 1.5), (b + 16, -H / 2 + 3), (b + 17, -H * 0.02), (b + 8, H * 0.02),
               (b - 2, -H * 0.05)]
        _edt_add(acc, cv, [(spline_closed(f(ped), 60), 1)], 9.0, 1.0, cx, cy, ang, M, vb, P, r=5.0)
        fs = 1 + 0.5 * ldeg
        pil = [(b + 13, -H / 2 - 7), (b + 21, -H / 2 - 5), (b + 25, H * 0.0), (b + 27, H / 2 + 6),
               (b + 21, H / 2 + 9), (b + 16, H * 0.1), (b + 12, -H / 2 + 1)]
        _edt_add(acc, cv, [(spline_closed(f(pil), 70), 1)], 11 * fs, 1.1 * fs, cx, cy, ang, M, vb, P, r=5.5)
        # transverse process seen end-on (oval over the pedicle/pillar junction)
        tpo = ellipse_pts(b + 15, -H * 0.15, 6, 4.5 + 0.5 * (j == 6), 10)
        _edt_add(acc, cv, [(spline_closed(f(tpo)), 1)], 4 + TP_LEN[j] * 0.4, 0.8, cx, cy, ang, M, vb, P, tex=False)
    # lamina + spinous process (midline)
    sl = rng.uniform(26, 34) * P['size']
    sp = [(b + 18, -H * 0.35), (b + 30, -H * 0.3), (b + 26 + sl, -H * 0.22), (b + 30 + sl, H * 0.02),
          (b + 26 + sl, H * 0.3), (b + 30, H * 0.32), (b + 20, H * 0.5)]
    sp = [(u * flip, v) for (u, v) in sp]
    _edt_add(acc, cv, [(spline_closed(sp, 80), 1)], 8.0, 1.0, cx, cy, ang, M, vb, P, r=6.0)


def render_pelvis(P, G, acc, view, ps, org, M, flip):
    rng = P['rng']
    s = P['size'] * (1.04 if P['female'] else 1.0)
    yS = G['yS1']
    vb = P['vbmd_sacrum']
    ct = P['cort_t']
    sl = G['phiS1']
    if view == 'AP':
        fore = math.cos(sl)
        cx = org[0]
        cy = org[1] + yS * M / ps
        cv = Canvas(ps, 150 * s, 130 * s)
        L = 105 * s * fore
        sac = [(-26 * s, 2), (-55 * s, 6 * fore), (-50 * s, 35 * fore), (-30 * s, L * 0.6), (-12 * s, L),
               (12 * s, L), (30 * s, L * 0.6), (50 * s, 35 * fore), (55 * s, 6 * fore), (26 * s, 2)]
        cov = cv.cov([(spline_closed(sac, 120), 1)])
        cort, trab = edt_profile(cov, ps, 36, ct * 1.2, r=18)
        # sacral foramina reduce the bone path
        hole = np.zeros_like(cov)
        for k in range(4):
            for sg in (-1, 1):
                e = ellipse_pts(sg * (16 - 1.5 * k) * s, (20 + 19 * k) * s * fore, 4.5 - 0.5 * k, (4.0 - 0.4 * k) * max(fore, 0.5), 10)
                hole += cv.cov([(spline_closed(e), 1)])
        hole = np.clip(hole, 0, 1)
        tex = trab_texture(rng, cov.shape, ps, P['q'])
        trab = trab * (1 - 0.55 * hole)
        cort = cort * (1 - 0.5 * hole) + 10 * ct * np.clip(ndimage.gaussian_filter(hole, 1.0) - hole, 0, 1)
        wt = trab * np.clip(1 + P['tex_amp'] * tex, 0.2, None)
        add_part(acc, cv, cort, trab, wt, cx, cy, 0.0, M, P['cort_rho'], vb, P['marrow_fat'])
        # S1 body with its obliquely projected superior endplate
        Wb = P['bw'][6] * 1.0
        cont = body_contour(Wb, 24 * s * fore + 4, 1, 1, 1, 0.05, 0.5)
        cv2 = Canvas(ps, Wb * 0.75 + 6, 30)
        c2 = cv2.cov([(cont, 1)])
        co, tr, wt2 = chord_body(c2, ps, 30, ct, ct + 0.3 + 0.6 * P['scler'][6], 32 * abs(math.sin(sl)) * 0.6)
        add_part(acc, cv2, co * 0.6, tr * 0.3, wt2 * 0.3, cx, cy + (12 * s * fore + 2) * M / ps, 0.0, M,
                 P['cort_rho'], vb, P['marrow_fat'])
        # ilia (face-on plates) with crest rim and thick auricular part
        crest_y = G['yc'][5] + 0.5 * P['bh'][5] + rng.normal(0, 8) - yS  # near L4/5 disc
        for sg in (-1, 1):
            fl = rng.uniform(0.9, 1.1)
            pts = [(sg * 52 * s, 8 * fore), (sg * 60 * s, crest_y + 10), (sg * 85 * s * fl, crest_y - 4),
                   (sg * 118 * s * fl, crest_y + 4), (sg * 142 * s * fl, crest_y + 26), (sg * 140 * s * fl, crest_y + 50),
                   (sg * 128 * s, crest_y + 120), (sg * 122 * s, 230), (sg * 96 * s, 230), (sg * 84 * s, 150),
                   (sg * 64 * s, 100), (sg * 54 * s, 60 * fore)]
            cvi = Canvas(ps, 150 * s, 240)
            ci = cvi.cov([(spline_closed(pts, 140), 1)])
            d = ndimage.distance_transform_edt(ci > 0.5).astype(np.float32) * ps
            U, V = cvi.grid()
            med = np.clip(1 - (np.abs(U) - 55 * s) / 40.0, 0, 1)
            plate = (2.5 + 2.5 * rng.random() + 11 * np.exp(-d / 4.0) + 26 * med ** 2) * np.minimum(ci * 1.5, 1)
            plate *= (ci > 0.02)
            cort_i = np.minimum(plate, 2.6 + 6 * np.exp(-d / 3.0))
            trab_i = plate - cort_i
            add_part(acc, cvi, cort_i, trab_i, trab_i, cx, cy, 0.0, M, P['cort_rho'], vb, P['marrow_fat'])
    else:
        cx = org[0] + flip * G['zS1'] * M / ps
        cy = org[1] + yS * M / ps
        cv = Canvas(ps, 120 * s, 130 * s)
        ang = -flip * sl
        # sacrum in a frame aligned with its axis (u: AP, v: along sacrum), curved kyphotic
        pts = []
        n = 6
        for k in range(n + 1):
            t = k / n
            v = t * 105 * s
            bend = 18 * s * t ** 2
            half = (24 - 14 * t) * s
            pts.append((-half + bend, v))
        for k in range(n, -1, -1):
            t = k / n
            v = t * 105 * s
            bend = 18 * s * t ** 2
            half = (22 - 16 * t) * s
            pts.append((half + bend + 6 * (1 - t), v))
        pts = [(u * flip, v - 2) for (u, v) in pts]
        cov = cv.cov([(spline_closed(pts, 120), 1)])
        cort, trab = edt_profile(cov, ps, 60 * s, ct * 1.3, r=14)
        U, V = cv.grid()
        taper = np.clip(1 - V / (140 * s), 0.3, 1)
        tex = trab_texture(rng, cov.shape, ps, P['q'])
        wt = trab * taper * np.clip(1 + P['tex_amp'] * tex, 0.2, None)
        add_part(acc, cv, cort * taper, trab * taper, wt, cx, cy, ang, M, P['cort_rho'], vb, P['marrow_fat'])
        # S1 endplate line
        cont = body_contour(P['bd'][6] * 1.05, 26 * s, 1, 1, 1, 0.03, 0.6, flip)
        cv2 = Canvas(ps, 40, 30)
        c2 = cv2.cov([(cont, 1)])
        co, tr, wt2 = chord_body(c2, ps, 55 * s, ct, ct + 0.4 + 0.6 * P['scler'][6], 3)
        ca, sa = math.cos(ang), math.sin(ang)
        add_part(acc, cv2, co * 0.5, tr * 0.0, wt2 * 0.0, cx - sa * 13 * s * M / ps, cy + ca * 13 * s * M / ps,
                 ang, M, P['cort_rho'], vb, P['marrow_fat'])
        # ilia: two superimposed wings with slight offset (obliquity + divergence)
        crest_y = G['yc'][5] + rng.normal(0, 8)
        for side in (-1, 1):
            mg = 1 + side * 0.05
            du = side * 65 * math.sin(math.radians(P['lat_obliq'] + 2 * rng.normal()))
            ip = [(30, crest_y + 15), (15, crest_y - 2), (-20, crest_y - 12), (-60, crest_y - 5),
                  (-85, crest_y + 20), (-80, crest_y + 50), (-55, yS + 80), (-10, yS + 95),
                  (25, yS + 60), (38, yS + 20)]
            ip = [((G['zS1'] + u * s + du) * mg * flip, (y - yS) * mg + yS) for (u, y) in ip]
            zs = np.array(ip)
            zs[:, 1] -= yS  # relative to sacrum centre
            cvi = Canvas(ps, 150 * s, 150 * s)
            ci = cvi.cov([(spline_closed(zs, 140), 1)])
            d = ndimage.distance_transform_edt(ci > 0.5).astype(np.float32) * ps
            plate = (5 + 4 * rng.random() + 12 * np.exp(-d / 4.0)) * np.minimum(ci * 1.5, 1) * (ci > 0.02)
            cort_i = np.minimum(plate, 2.6 + 6 * np.exp(-d / 2.5))
            trab_i = plate - cort_i
            add_part(acc, cvi, cort_i, trab_i, trab_i, org[0], cy, 0.0, M, P['cort_rho'], vb, P['marrow_fat'])


def render_ribs(P, G, acc, view, ps, org, M, flip):
    rng = P['rng']
    s = P['size']
    for j, L in ((0, rng.uniform(110, 190)), (1, rng.uniform(50, 150))):
        yc = G['yc'][j]
        for side in (-1, 1):
            if view == 'AP':
                x0 = G['xc'][j] + side * (P['bw'][j] / 2 + 6)
                ang = math.radians(rng.uniform(14, 30) + 6 * j)
                pts_c = []
                for t in np.linspace(0, 1, 8):
                    d = t * L * s
                    pts_c.append((x0 + side * d * (1 - 0.25 * t * t), yc - 6 + d * math.tan(ang) * (0.5 + 0.5 * t)))
            else:
                mg = 1 + side * 0.04
                z0 = G['zc'][j] + P['bd'][j] / 2 + 10
                R = rng.uniform(70, 110)
                pts_c = []
                for t in np.linspace(0, 1, 8):
                    th = t * L * s / R
                    pts_c.append(((z0 + R * math.sin(th) * 0.35 - 0.6 * R * (1 - math.cos(th))) * mg,
                                  (yc - 8 + R * math.sin(th) * 0.85) * mg))
            pc = np.array(pts_c)
            wdt = np.linspace(7, 4, len(pc)) * s
            tang = np.gradient(pc, axis=0)
            nrm = np.stack([-tang[:, 1], tang[:, 0]], 1)
            nrm /= np.linalg.norm(nrm, axis=1, keepdims=True) + 1e-9
            poly = np.concatenate([pc + nrm * wdt[:, None] / 2, (pc - nrm * wdt[:, None] / 2)[::-1]])
            if view == 'LAT':
                poly[:, 0] *= flip
            ctr = poly.mean(0)
            cvr = Canvas(ps, np.abs(poly[:, 0] - ctr[0]).max() + 6, np.abs(poly[:, 1] - ctr[1]).max() + 6)
            cov = cvr.cov([(poly - ctr, 1)])
            cort, trab = edt_profile(cov, ps, 9 * s, 1.0, r=3.5 * s)
            add_part(acc, cvr, cort, trab, trab, org[0] + ctr[0] * M / ps, org[1] + ctr[1] * M / ps, 0.0, M,
                     P['cort_rho'], P['vbmd'][j] * 0.9, P['marrow_fat'])


def render_aorta(P, G, acc, view, ps, org, M, flip):
    if not P['plaques']:
        return
    y0, y1 = G['yc'][0], G['yc'][5] + 0.3 * P['bh'][5]
    r = P['aorta_r']
    for pq in P['plaques']:
        y = y0 + (y1 - y0) * (0.25 + 0.75 * pq['s'] ** 0.7)
        j = int(np.clip(np.searchsorted(G['yc'], y), 0, 6))
        if view == 'AP':
            xa = G['xc'][j] + 0.4 * P['bw'][j] - 3 + 2 * (pq['s'])  # left of midline
            x = xa + r * math.sin(pq['th'])
            path = pq['t'] * (1 + 2.5 * abs(math.sin(pq['th'])))
            cxp, cyp = org[0] + x * M / ps, org[1] + y * M / ps
            wdt = pq['t'] + 1.0 * abs(math.cos(pq['th']))
        else:
            za = G['zc'][j] - P['bd'][j] / 2 - P['aorta_gap'] - r
            z = za + r * math.cos(pq['th'])
            path = pq['t'] * (1 + 2.5 * abs(math.cos(pq['th'])))
            cxp, cyp = org[0] + flip * z * M / ps, org[1] + y * M / ps
            wdt = pq['t'] + 1.0 * abs(math.sin(pq['th']))
        cv = Canvas(ps, 3, pq['L'] / 2 + 3)
        e = ellipse_pts(0, 0, wdt / 2 + 0.2, pq['L'] / 2, 10, 0.2, P['rng'])
        cov = cv.cov([(spline_closed(e), 1)])
        acc.place({'calc': cov * path * pq['dens']}, cv, cxp, cyp, math.radians(P['rng'].normal(0, 6)), M)


def sechord(u, p):
    """Chord of a superellipse |u|^p + |t|^p = 1 (normalised to 1 at u = 0)."""
    return np.clip(1 - np.abs(u) ** p, 0, 1) ** (1.0 / p)


def soft_tissue(P, G, acc, view, ps, org, M, flip):
    """Analytic body cross-section chords + organ outlines (mm of path)."""
    rng = P['rng']
    h, w = acc.h, acc.w
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    X = (xx - org[0]) * ps / M  # patient mm (AP: lateral x; LAT: z*flip)
    Y = (yy - org[1]) * ps / M
    a = P['half_width']
    tap = P['ap_thick']
    fsc = P['fat_sc']
    vf = P['visc_fat']
    pe = P['body_pe']
    # body widens toward the hips below L4, narrower at the waist
    wf = 1 + 0.10 * np.clip((Y - 40) / 120, 0, 1) - 0.04 * np.exp(-((Y + 20) / 60) ** 2)
    if view == 'AP':
        aa = a * wf
        u = X / aa
        outer = tap * sechord(u, pe)
        ui = X / np.maximum(aa - fsc, 10)
        inner = (tap - 2 * fsc) * sechord(ui, pe)
    else:
        z_spine_post = 75.0
        z_post = z_spine_post + 20 + fsc  # posterior skin (mm posterior of body centre)
        z_ant = z_post - tap
        # egg-shaped trunk section: widest near the spine, tapering anteriorly
        zw = float(np.clip(rng.uniform(-10, 25), z_ant + 60, z_post - 40))
        Z = X * flip
        hz = np.where(Z < zw, zw - z_ant, z_post - zw)
        u = (Z - zw) / hz
        pe = 2.0 + 0.3 * (pe - 2.3)
        outer = 2 * a * wf * sechord(u, pe)
        ui = (Z - zw) / np.maximum(hz - fsc, 10)
        inner = (2 * a * wf - 2 * fsc) * sechord(ui, pe)
    fat = outer - inner + vf * inner
    water = (1 - vf) * inner
    gas = np.zeros_like(water)
    acc.m['water'] += water
    acc.m['fat'] += fat
    # organs via outlines (converting fat <-> water), lung bases (gas)
    top = G['yc'][0] - 10
    dome_y = G['yc'][1] + rng.uniform(-25, 15)
    if view == 'AP':
        for sg in (-1, 1):
            # psoas: widening triangle from L1 to L5
            ps_pts = []
            for k, jj in enumerate(range(2, 7)):
                ps_pts.append((G['xc'][jj] + sg * (P['bw'][jj] / 2 - 6), G['yc'][jj] - 12))
            for jj in range(6, 1, -1):
                ps_pts.append((G['xc'][jj] + sg * (P['bw'][jj] / 2 + 6 + 9 * (jj - 1)), G['yc'][jj] + 12))
            organ(acc, ps, org, M, ps_pts, 55 * P['size'], 0.7, 'psoas')
            # kidneys with perirenal fat
            kx = sg * rng.uniform(55, 75)
            ky = G['yc'][3] + (18 if sg < 0 else 0) + rng.normal(0, 10)
            ke = ellipse_pts(kx, ky, 28, 55, 12, 0.08, rng, rot=sg * math.radians(-15))
            organ(acc, ps, org, M, ke, 45, -0.45, 'halo', halo=12)
            organ(acc, ps, org, M, ke, 45, 0.6, 'kidney')
            # lung bases: posterior costophrenic recesses above the diaphragm
            lung = [(sg * 30, top - 80), (sg * (a + 20), top - 80), (sg * (a - 5), dome_y + 70 + sg * 8),
                    (sg * 90, dome_y + 20), (sg * 40, dome_y - 10)]
            gas_organ(acc, ps, org, M, lung, rng.uniform(40, 90), edge=35)
        # liver (patient right = image left)
        lv = [(-20, top - 60), (-a + 10, top - 60), (-a + 12, G['yc'][3] + rng.uniform(-10, 40)),
              (-70, G['yc'][2] + 10), (-10, G['yc'][1])]
        organ(acc, ps, org, M, lv, 110, 0.35, 'liver')
    else:
        # lung bases posteriorly at the top, diaphragm crus
        lung = [(40, top - 90), (60 + fsc, top - 90), (70, dome_y + 40), (40, dome_y + 25), (10, dome_y - 30)]
        lung = [(u * flip, v) for (u, v) in lung]
        gas_organ(acc, ps, org, M, lung, rng.uniform(80, 160), edge=40)
        # paraspinal (erector) muscle mass behind the spine displaces fat
        em = [(45, top - 40), (70 + 0.3 * fsc, top - 40), (80 + 0.3 * fsc, 200), (45, 200)]
        organ(acc, ps, org, M, [(u * flip, v) for (u, v) in em], 2 * 60, 0.3, 'erector', soft=6)
    bowel(acc, P, view, ps, org, M, flip, X, Y)


def organ(acc, ps, org, M, pts, depth, conv, kind, halo=0, soft=0):
    pts = np.array(pts, float)
    ctr = pts.mean(0)
    ext = np.abs(pts - ctr).max(0) + 4 + halo
    cv = Canvas(ps, ext[0], ext[1])
    c = spline_closed(pts - ctr, 100)
    cov = cv.cov([(c, 1)])
    if halo:
        cov = np.clip(ndimage.maximum_filter(cov, int(halo / ps) | 1) - cov, 0, 1)
        cov = ndimage.gaussian_filter(cov, 2.0)
    _, prof = edt_profile(cov, ps, depth, 0.0)
    if soft:
        prof = ndimage.gaussian_filter(prof, soft / ps)
    t = (prof + 0.0) * abs(conv)
    cx, cy = org[0] + ctr[0] * M / ps, org[1] + ctr[1] * M / ps
    if conv > 0:  # fat -> water
        acc.place({'water': t, 'fat': -t}, cv, cx, cy, 0.0, M)
    else:
        acc.place({'water': -t, 'fat': t}, cv, cx, cy, 0.0, M)


def gas_organ(acc, ps, org, M, pts, depth, edge):
    pts = np.array(pts, float)
    ctr = pts.mean(0)
    ext = np.abs(pts - ctr).max(0) + 4
    cv = Canvas(ps, ext[0], ext[1])
    cov = cv.cov([(spline_closed(pts - ctr, 100), 1)])
    d = ndimage.distance_transform_edt(cov > 0.5).astype(np.float32) * ps
    g = depth * np.clip(d / edge, 0, 1) ** 0.6 * np.minimum(cov * 2, 1)
    acc.place({'gas': g}, cv, org[0] + ctr[0] * M / ps, org[1] + ctr[1] * M / ps, 0.0, M)


def bowel(acc, P, view, ps, org, M, flip, X, Y):
    rng = np.random.default_rng(P['hist_seed'] + (0 if view == 'AP' else 7))
    for b in P['bowel']:
        if b['gas'] <= 0.02:
            continue
        if view == 'AP':
            u0, a_, b_ = b['x'], b['a'], b['b']
        else:
            u0, a_, b_ = b['z'] * flip, b['b'], b['a']
        v0 = b['y']
        cv = Canvas(ps, max(a_, b_) + 3, max(a_, b_) + 3)
        e = ellipse_pts(0, 0, a_, b_, 12, 0.15, rng, rot=b['rot'])
        cov = cv.cov([(spline_closed(e), 1)])
        _, prof = edt_profile(cov, ps, b['depth'], 0.0)
        g = prof * b['gas']
        if b['stool'] > 0:  # mottled stool: bubbly gas inside faecal material
            n = ndimage.gaussian_filter(rng.standard_normal(cov.shape).astype(np.float32), 1.6 / ps)
            n /= n.std() + 1e-6
            mott = np.clip(0.5 + 0.8 * n, 0, 1)
            g = g * (1 - b['stool'] + b['stool'] * mott)
        acc.place({'gas': g}, cv, org[0] + u0 * M / ps, org[1] + v0 * M / ps, 0.0, M)


# --------------------------------------------------------------------------
# X-ray image formation
# --------------------------------------------------------------------------
def text_mask(txt, height_px, upscale=1):
    font = ImageFont.load_default()
    bbox = font.getbbox(txt)
    w, h = bbox[2] - bbox[0] + 2, bbox[3] - bbox[1] + 2
    im = Image.new('L', (w, h), 0)
    ImageDraw.Draw(im).text((1 - bbox[0], 1 - bbox[1]), txt, fill=255, font=font)
    sc = max(1, int(round(height_px / max(h, 1))))
    if upscale and sc > 1:
        im = im.resize((w * sc, h * sc), Image.NEAREST)
    return np.asarray(im, np.float32) / 255.0


def form_image(P, acc, view, ps, org, M, flip, kvp, rng, coll):
    m = acc.m
    water = np.clip(m['water'] - m['gas'] - m['cort'] - m['trab'] - m['calc'] * 0.5, 0, None)
    water += m['trab'] * (1 - P['marrow_fat'])
    fat = np.clip(m['fat'], 0, None) + m['trab'] * P['marrow_fat']
    h, w = water.shape
    cu = 0.1 if rng.random() < 0.5 else 0.0
    eb, wq, wd = spectrum(kvp, rng.uniform(2.5, 3.5), cu)
    # line integrals per bin: water/fat in cm * density; cortical cm * rho; mineral g/cm2
    cort_mass = m['cort'] / 10.0 * P['cort_rho'] + m['calc'] / 10.0 * 1.7
    mineral = m['mineral'] / 10.0  # (mm * g/cm3)/10 -> g/cm2
    I = np.zeros((h, w), np.float32)
    for k in range(len(eb)):
        mu = (mu_of('water', eb[k]) * 1.04 * water / 10 + mu_of('fat', eb[k]) * 0.95 * fat / 10
              + mu_of('cort', eb[k]) * cort_mass + mu_of('ha', eb[k]) * mineral)
        I += wd[k] * np.exp(-mu)
    # lead L/R marker: lead letter in a plastic holder, near a field corner
    mk = view == 'AP' and rng.random() < 0.5
    letter = ('R' if mk else 'L') if view == 'AP' else ('L' if rng.random() < 0.75 else 'R')
    if rng.random() < 0.93:
        tm = text_mask(letter, int(11 / ps))
        th, tw = tm.shape
        th2, tw2 = int(14 / ps), int(14 / ps)
        tm = np.asarray(Image.fromarray((tm * 255).astype(np.uint8)).resize((tw2 - 6, th2 - 6), Image.BILINEAR), np.float32) / 255
        y0 = coll[0] + int(rng.uniform(8, 30) / ps)
        x0 = (coll[2] + int(rng.uniform(8, 30) / ps)) if (rng.random() < 0.5) else (coll[3] - tw2 - int(rng.uniform(8, 30) / ps))
        y0 = int(np.clip(y0, 0, h - th2)); x0 = int(np.clip(x0, 0, w - tw2))
        reg = I[y0:y0 + th2, x0:x0 + tw2]
        reg *= 0.82  # acrylic holder
        reg[3:3 + tm.shape[0], 3:3 + tm.shape[1]] *= (1 - 0.97 * tm)
    # heel effect (anode-cathode along columns) and mild field falloff
    yy = (np.arange(h, dtype=np.float32)[:, None] - h / 2) / h
    xx = (np.arange(w, dtype=np.float32)[None, :] - w / 2) / w
    heel = rng.uniform(0.06, 0.2) * (1 if rng.random() < 0.5 else -1)
    field = (1 + heel * yy) * (1 - 0.05 * (xx ** 2 + yy ** 2)) * np.exp(-0.12 * heel * yy ** 2)
    prim = I * field
    # scatter: blurred fraction of the primary, SPR grows with patient thickness
    # scatter generated in the patient ~ primary x local thickness, spread by a broad kernel
    thick = (water + fat + 1.9 * m['cort'] + 1.2 * m['trab']) / 10.0  # cm
    spr = 0.028 * rng.uniform(0.7, 1.3) * (1.0 if rng.random() < 0.85 else 2.2)  # per cm (with grid)
    sc = blur_big(prim * thick, rng.uniform(25, 55) / ps)
    sig = prim + spr * sc
    # collimation: outside the blades only leakage + scatter
    r0, r1, c0, c1 = coll
    cm = np.zeros((h, w), np.float32)
    cm[r0:r1, c0:c1] = 1
    cm = ndimage.gaussian_filter(cm, 1.5 / ps)
    sig = sig * (0.015 + 0.985 * cm) + 0.25 * spr * blur_big(sig * cm, 20 / ps) * (1 - cm)
    # exposure (AEC on the spine) and quanta
    roi = sig[int(org[1] - 40 / ps):int(org[1] + 40 / ps), int(org[0] - 25 / ps):int(org[0] + 25 / ps)]
    target = rng.lognormal(math.log(900 if view == 'AP' else 600), 0.35)
    q = sig * (target / max(float(np.median(roi)), 1e-12))
    noise = rng.standard_normal((h, w)).astype(np.float32) * np.sqrt(np.maximum(q, 0.5))
    q = q + noise
    # scintillator blur (signal + quantum noise become correlated)
    bl = rng.uniform(0.35, 0.7)
    q = 0.8 * ndimage.gaussian_filter(q, bl) + 0.2 * ndimage.gaussian_filter(q, 3 * bl + 1.5)
    # electronic noise: white + coloured (1/f-like) + faint line banding
    en = rng.uniform(1.0, 4.0)
    col = blur_big(rng.standard_normal((h, w)).astype(np.float32), 6.0) * 6
    band = np.repeat(rng.standard_normal((h, 1)).astype(np.float32), w, 1) * rng.uniform(0, 0.6)
    q = q + en * (rng.standard_normal((h, w)).astype(np.float32) + col + band)
    q = np.maximum(q, 0.3)
    cal = dict(kvp=kvp, cu=cu, target=target, letter=letter)
    return q, cal


# --------------------------------------------------------------------------
# vendor processing
# --------------------------------------------------------------------------
def clahe(img, mask, tiles=(8, 6), clip=2.5, nbins=256):
    h, w = img.shape
    q = np.clip((img * (nbins - 1)).astype(np.int32), 0, nbins - 1)
    ty, tx = tiles
    ys = np.linspace(0, h, ty + 1).astype(int)
    xs = np.linspace(0, w, tx + 1).astype(int)
    luts = np.zeros((ty, tx, nbins), np.float32)
    for i in range(ty):
        for j in range(tx):
            blk = q[ys[i]:ys[i + 1], xs[j]:xs[j + 1]]
            mk = mask[ys[i]:ys[i + 1], xs[j]:xs[j + 1]]
            vals = blk[mk] if mk.sum() > 50 else blk.ravel()
            hist = np.bincount(vals, minlength=nbins).astype(np.float32)
            lim = clip * hist.sum() / nbins
            ex = np.clip(hist - lim, 0, None).sum()
            hist = np.minimum(hist, lim) + ex / nbins
            cdf = np.cumsum(hist)
            luts[i, j] = cdf / cdf[-1]
    cy = (ys[:-1] + ys[1:]) / 2.0
    cx = (xs[:-1] + xs[1:]) / 2.0
    yi = np.interp(np.arange(h), cy, np.arange(ty))
    xi = np.interp(np.arange(w), cx, np.arange(tx))
    y0 = np.floor(yi).astype(int); y1 = np.minimum(y0 + 1, ty - 1); fy = (yi - y0)[:, None]
    x0 = np.floor(xi).astype(int); x1 = np.minimum(x0 + 1, tx - 1); fx = (xi - x0)[None, :]
    Y0, X0 = y0[:, None], x0[None, :]
    Y1, X1 = y1[:, None], x1[None, :]
    out = ((1 - fy) * ((1 - fx) * luts[Y0, X0, q] + fx * luts[Y0, X1, q])
           + fy * ((1 - fx) * luts[Y1, X0, q] + fx * luts[Y1, X1, q]))
    return out


def process(q, vendor, rng, coll, mask_mode, roi, ps):
    h, w = q.shape
    L = -np.log(q)
    r0, r1, c0, c1 = coll
    inner = np.zeros((h, w), bool)
    m = int(6 / ps)
    inner[r0 + m:r1 - m, c0 + m:c1 - m] = True
    # exposure recognition: histogram of the anatomy region around the spine
    rmask = np.zeros((h, w), bool)
    rmask[roi[0]:roi[1], roi[2]:roi[3]] = True
    rmask &= inner
    if rmask.sum() < 1000:
        rmask = inner
    lo, hi = np.percentile(L[rmask], [rng.uniform(0.5, 2.0), rng.uniform(99.3, 99.9)])
    x = (L - lo) / max(hi - lo, 1e-6)
    # global dynamic-range compression of the large-scale soft-tissue gradient
    sg = rng.uniform(15, 30) / ps
    fm = inner.astype(np.float32)  # normalised convolution: ignore the collimated border
    lp = blur_big(np.clip(x, -1.5, 2.5) * fm, sg) / np.maximum(blur_big(fm, sg), 0.05)
    x = x - rng.uniform(0.6, 0.85) * (lp - float(np.median(lp[rmask])))
    inner = rmask
    proc = vendor['proc']
    if proc in ('multiband', 'mixed'):
        g1 = ndimage.gaussian_filter(x, 1.2)
        g2 = ndimage.gaussian_filter(x, 4.0)
        g3 = blur_big(x, 16.0)
        g4 = blur_big(x, 60.0)
        k = [rng.uniform(1.1, 1.6), rng.uniform(1.3, 2.0), rng.uniform(1.0, 1.5),
             rng.uniform(0.35, 0.7)]
        x = (x - g1) * k[0] + (g1 - g2) * k[1] + (g2 - g3) * k[2] + (g3 - g4) * 1.0 + g4 * k[3] + \
            (1 - k[3]) * float(np.mean(g4[inner]))
    if proc in ('drc', 'mixed'):
        lp = blur_big(x, rng.uniform(25, 60))
        d = rng.uniform(0.3, 0.6)
        x = x - d * (lp - float(np.mean(lp[inner])))
        us = ndimage.gaussian_filter(x, 2.5)
        x = x + rng.uniform(0.3, 0.8) * (x - us)
    if proc == 'clahe':
        lo2, hi2 = np.percentile(x[inner], [0.5, 99.5])
        xn = np.clip((x - lo2) / (hi2 - lo2), 0, 1)
        ce = clahe(xn, inner, clip=rng.uniform(1.8, 3.0))
        x = 0.45 * xn + 0.55 * ce
        us = ndimage.gaussian_filter(x, 1.5)
        x = x + rng.uniform(0.3, 0.7) * (x - us)
    # re-normalise and tone curve
    lo3, hi3 = np.percentile(x[inner], [0.3, 99.7])
    x = (x - lo3) / max(hi3 - lo3, 1e-6)
    x = np.clip(x, -0.2, 1.2)
    if proc in ('multiband', 'mixed'):
        k = rng.uniform(4.0, 6.5)
        c = rng.uniform(0.45, 0.55)
        f = lambda t: 1 / (1 + np.exp(-k * (t - c)))
        x = (f(x) - f(0.0)) / (f(1.0) - f(0.0))
    else:
        x = np.clip(x, 0, 1) ** rng.uniform(0.8, 1.25)
    x = np.clip(x, 0, 1)
    if mask_mode == 'black':
        out = np.zeros((h, w), bool)
        out[r0:r1, c0:c1] = True
        x = np.where(out, x, 0.0)
    return x


def burn_text(x, lines, corner, ps, val):
    h, w = x.shape
    tm = [text_mask(t, int(3.2 / ps)) for t in lines]
    th = sum(t.shape[0] + 2 for t in tm)
    tw = max(t.shape[1] for t in tm)
    m = int(4 / ps)
    y = m if corner[0] == 't' else h - m - th
    for t in tm:
        xx = m if corner[1] == 'l' else w - m - t.shape[1]
        if y < 0 or y + t.shape[0] > h or xx < 0 or xx + t.shape[1] > w:
            continue
        reg = x[y:y + t.shape[0], xx:xx + t.shape[1]]
        reg[:] = reg * (1 - t) + val * t
        y += t.shape[0] + 2


# --------------------------------------------------------------------------
# one study
# --------------------------------------------------------------------------
def render_view(P, view, vendor, rng):
    ps = vendor['ps'] * rng.uniform(0.98, 1.02) if False else vendor['ps']
    if view == 'AP':
        fw, fh = rng.uniform(270, 330), rng.uniform(360, 420)
    else:
        fw, fh = rng.uniform(280, 340), rng.uniform(360, 420)
    cols = int(min(1100, fw / ps)) // 2 * 2
    rows = int(min(1100, fh / ps)) // 2 * 2
    M = (1.12 if view == 'AP' else 1.22) * rng.uniform(0.97, 1.03)
    G = P['G']
    flip = 1
    if view == 'LAT':
        flip = 1 if rng.random() < 0.8 else -1  # +1: anterior on image left
    # centring: AP on the spine (x) and L3 (y); LAT somewhat anterior of bodies
    ocx = cols / 2 + rng.normal(0, 10) / ps
    if view == 'LAT':
        ocx = cols / 2 - flip * rng.uniform(5, 30) * M / ps
    ocy = rows / 2 + rng.normal(-15, 15) * M / ps
    org = (ocx, ocy)
    acc = Accum(rows, cols)
    SID = 1000 * rng.uniform(1.0, 1.3)
    alpha_fn = lambda y: math.atan2((y * M / ps + ocy - rows / 2) * ps, SID)
    soft_tissue(P, G, acc, view, ps, org, M, flip)
    render_spine(P, G, acc, view, ps, org, M, flip, alpha_fn)
    render_pelvis(P, G, acc, view, ps, org, M, flip)
    render_ribs(P, G, acc, view, ps, org, M, flip)
    render_aorta(P, G, acc, view, ps, org, M, flip)
    # collimation
    mode = rng.choice(['white', 'black', 'open'], p=[0.5, 0.3, 0.2])
    if mode == 'open':
        coll = (0, rows, 0, cols)
    else:
        mx = rng.uniform(8, 45, 2) / ps
        my = rng.uniform(5, 30, 2) / ps
        coll = (int(my[0]), int(rows - my[1]), int(mx[0]), int(cols - mx[1]))
    bmi = P['bmi']
    kvp = float(np.clip((78 if view == 'AP' else 90) + 0.35 * (bmi - 26) + rng.normal(0, 4), 65, 110))
    q, cal = form_image(P, acc, view, ps, org, M, flip, kvp, rng, coll)
    # slight whole-image rotation (detector/patient misalignment)
    if rng.random() < 0.35:
        q = ndimage.rotate(q, rng.normal(0, 1.8), reshape=False, order=1, mode='nearest')
    if view == 'AP':
        hw_, hh_ = 75 * M / ps, 130 * M / ps
    else:
        hw_, hh_ = 55 * M / ps, 120 * M / ps
    roi = (int(max(0, org[1] - hh_)), int(min(rows, org[1] + hh_)),
           int(max(0, org[0] - hw_)), int(min(cols, org[0] + hw_)))
    x = process(q, vendor, rng, coll, mode, roi, ps)
    cal['roi'] = roi
    cal.update(ps=ps, M=M, SID=SID, flip=flip, mode=mode, rows=rows, cols=cols, coll=coll)
    return x, cal


def uid(rng, tag):
    return generate_uid(entropy_srcs=[str(int(rng.integers(0, 2 ** 62))), tag])


def write_dicom(path, x, P, view, vendor, cal, uids, rng, study_dt):
    bits = vendor['bits']
    maxv = 2 ** bits - 1
    mono1 = P['mono1']
    v = x.copy()
    # burned-in annotation (display-white)
    lines1 = [vendor['name'].upper(), 'LUMBAR SPINE %s' % ('AP' if view == 'AP' else 'LAT'),
              '%s  %s' % (study_dt[0], study_dt[1][:2] + ':' + study_dt[1][2:4])]
    lines2 = ['%.0f kV  %.1f mAs' % (cal['kvp'], cal['mas']), 'SID %d cm' % int(cal['SID'] / 10)]
    corners = ['tl', 'tr', 'bl', 'br']
    k = int(rng.integers(0, 4))
    if rng.random() < 0.85:
        burn_text(v, lines1, corners[k], cal['ps'], 1.0)
    if rng.random() < 0.6:
        burn_text(v, lines2, corners[(k + 3) % 4], cal['ps'], 1.0)
    st = np.round(v * maxv).astype(np.uint16)
    if mono1:
        st = (maxv - st).astype(np.uint16)
    r0, r1, c0, c1 = cal['roi']
    inner = st[r0:r1, c0:c1]
    lo, hi = np.percentile(inner, [0.5, 99.5])
    wc, ww = float((lo + hi) / 2), float(max(hi - lo, 16) * 1.05)

    meta = FileMetaDataset()
    sop_class = '1.2.840.10008.5.1.4.1.1.1.1' if vendor['modality'] == 'DX' else '1.2.840.10008.5.1.4.1.1.1'
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = uids['sop']
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = '1.2.826.0.1.3680043.8.498.1'
    meta.ImplementationVersionName = 'PHANTOM_P_1'
    ds = FileDataset(path, {}, file_meta=meta, preamble=b'\0' * 128)
    ds.SpecificCharacterSet = 'ISO_IR 100'
    ds.ImageType = ['ORIGINAL', 'PRIMARY'] if vendor['modality'] == 'DX' else ['DERIVED', 'PRIMARY']
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uids['sop']
    ds.StudyDate = study_dt[0]
    ds.SeriesDate = study_dt[0]
    ds.ContentDate = study_dt[0]
    ds.StudyTime = study_dt[1]
    ds.SeriesTime = study_dt[1]
    ds.ContentTime = study_dt[1]
    ds.AccessionNumber = uids['acc']
    ds.Modality = vendor['modality']
    if vendor['modality'] == 'DX':
        ds.PresentationIntentType = 'FOR PRESENTATION'
    ds.Manufacturer = vendor['name']
    ds.InstitutionName = 'Synthetic Radiology P'
    ds.ReferringPhysicianName = ''
    ds.StudyDescription = 'XR Lumbar Spine 2 Views'
    ds.SeriesDescription = 'Lumbar Spine AP' if view == 'AP' else 'Lumbar Spine Lateral'
    ds.ManufacturerModelName = vendor['model']
    ds.PatientName = 'PHANTOM^%s' % P['pid']
    ds.PatientID = P['pid']
    ds.PatientBirthDate = ''
    ds.PatientSex = 'F' if P['female'] else 'M'
    ds.PatientAge = '%03dY' % P['age']
    ds.BodyPartExamined = 'LSPINE'
    ds.KVP = '%.0f' % cal['kvp']
    ds.DistanceSourceToDetector = '%.0f' % cal['SID']
    ds.ExposureTime = str(int(cal['ms']))
    ds.XRayTubeCurrent = str(int(cal['mA']))
    ds.Exposure = str(int(round(cal['mas'])))
    ds.SoftwareVersions = vendor['sw']
    ds.ProtocolName = 'Lumbar Spine %s' % ('AP' if view == 'AP' else 'LAT')
    ds.ImagerPixelSpacing = [round(cal['ps'], 4), round(cal['ps'], 4)]
    ds.EstimatedRadiographicMagnificationFactor = round(cal['M'], 3)
    ds.ViewPosition = 'AP' if view == 'AP' else cal['vpos']
    ds.StudyInstanceUID = uids['study']
    ds.SeriesInstanceUID = uids['series']
    ds.StudyID = uids['acc'][-6:]
    ds.SeriesNumber = 1 if view == 'AP' else 2
    ds.InstanceNumber = 1
    if view == 'AP':
        ds.PatientOrientation = ['L', 'F']
    else:
        ds.PatientOrientation = ['P', 'F'] if cal['flip'] > 0 else ['A', 'F']
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = 'MONOCHROME1' if mono1 else 'MONOCHROME2'
    ds.Rows, ds.Columns = st.shape
    ds.PixelSpacing = [round(cal['ps'], 4), round(cal['ps'], 4)]
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.WindowCenter = '%.1f' % wc
    ds.WindowWidth = '%.1f' % ww
    ds.RescaleIntercept = '0'
    ds.RescaleSlope = '1'
    ds.RescaleType = 'US'
    ds.LossyImageCompression = '00'
    ds.PixelData = st.astype('<u2').tobytes()
    ds.save_as(path, enforce_file_format=True)


def make_study(args):
    outdir, seed, i = args
    P = make_patient(seed, i)
    rng = P['rng']
    P['pid'] = 'PHP%d-%05d' % (seed, i)
    vendor = VENDORS[P['vendor']]
    P['G'] = spine_geometry(P)
    P['mono1'] = bool(rng.random() < vendor['mono1'])
    y = int(rng.integers(2014, 2024))
    doy = int(rng.integers(0, 365))
    d = np.datetime64('%d-01-01' % y) + np.timedelta64(doy, 'D')
    date = str(d).replace('-', '')
    tm = '%02d%02d%02d' % (int(rng.integers(7, 19)), int(rng.integers(0, 60)), int(rng.integers(0, 60)))
    study_uid = uid(rng, 'study')
    acc = 'A%07d' % int(rng.integers(0, 10 ** 7))
    rows = []
    label = 0 if P['T'] >= -1.0 else (2 if P['T'] <= -2.5 else 1)
    bmd = 1.047 + 0.11 * P['T']
    for view in ('AP', 'LAT'):
        x, cal = render_view(P, view, vendor, rng)
        cal['mas'] = float(cal['target'] / 900 * (8 if view == 'AP' else 22) * math.exp(0.05 * (P['bmi'] - 26)))
        cal['mA'] = float(rng.choice([200, 250, 320, 400, 500]))
        cal['ms'] = max(1.0, cal['mas'] / cal['mA'] * 1000)
        cal['vpos'] = str(rng.choice(['LL', 'RL', 'LATERAL'], p=[0.7, 0.2, 0.1]))
        uids = dict(study=study_uid, series=uid(rng, 'series' + view), sop=uid(rng, 'sop' + view), acc=acc)
        fn = '%s_%s.dcm' % (P['pid'], view)
        write_dicom(os.path.join(outdir, fn), x, P, view, vendor, cal, uids, rng, (date, tm))
        rows.append([fn, label, '%.2f' % P['T'], '%.3f' % bmd, P['pid'], view])
    return i, rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('outdir')
    ap.add_argument('n', type=int)
    ap.add_argument('seed', type=int)
    ap.add_argument('--workers', type=int, default=1)
    a = ap.parse_args()
    os.makedirs(a.outdir, exist_ok=True)
    jobs = [(a.outdir, a.seed, i) for i in range(a.n)]
    results = []
    if a.workers > 1:
        import multiprocessing as mp
        with mp.get_context('spawn').Pool(a.workers) as pool:
            for r in pool.imap_unordered(make_study, jobs):
                results.append(r)
    else:
        for j in jobs:
            results.append(make_study(j))
    results.sort(key=lambda r: r[0])
    with open(os.path.join(a.outdir, 'manifest.csv'), 'w', newline='') as f:
        wr = csv.writer(f, lineterminator='\n')
        wr.writerow(['path', 'label', 't_score', 'bmd', 'patient_id', 'view'])
        for _, rows in results:
            for r in rows:
                wr.writerow(r)
    return 0


if __name__ == '__main__':
    sys.exit(main())
