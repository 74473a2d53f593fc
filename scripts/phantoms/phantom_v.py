#!/usr/bin/env python3
"""phantom_v -- independent lumbar-spine radiograph phantom generator (AP + lateral DICOM pairs).

How a radiograph is drawn: each patient is a 3-D model in millimetres.  T11-L5 and four sacral
segments are voxelised (0.5 mm) from signed-distance primitives (superelliptic vertebral bodies with
waist, concave endplates, cortical shell, pedicles, laminae, spinous/transverse/articular processes,
osteophytes, fractures) placed along a lordotic / scoliotic chain; iliac wings are splatted
parametric plates, ribs 11-12 tapered hollow tubes, aortic plaques shell patches, and the abdomen is
analytic (elliptic body following the lordosis, subcutaneous/visceral fat, psoas and paraspinal
muscles, kidneys in perirenal fat, liver, colon/small-bowel/stool/disc-vacuum gas ellipsoids).  Each
view (AP, lateral; with positioning rotation) is a parallel projection into lean, fat and
hydroxyapatite (HA) areal-density maps on a ~0.5 mm grid, attenuated with a polyenergetic tungsten
spectrum (Kramers + K lines, Al/Cu filtration, XCOM-like tables, CsI/GOS/BaFBr detector absorption)
plus kernel scatter with or without grid, heel effect, collimation, a lead L/R marker and AEC; it is
upsampled to the detector pitch where trabecular texture, quantum/electronic noise and detector blur
are added, then one of four invented vendor chains is applied (multi-scale pyramid with contrast
equalisation, unsharp-mask DRC, CR latitude readout + film LUT, lightly processed 16-bit + window),
with shutters, burned-in text, DX/CR headers and ~25 % MONOCHROME1.

How bone density shows: T sets an L1-L4 areal BMD (1.047 + 0.110*T g/cm2 for women, 1.064 + 0.118*T
for men) and the vertebral HA densities are scaled so that a DXA-like AP region of interest over the
non-fractured L1-L4 bodies (+ half discs, including posterior elements, osteophytes and endplate
sclerosis, as a real DXA would see them) integrates to exactly that BMD.  Loss is trabecular-first:
nominal trabecular vBMD scales ~ (BMD/BMD_young)^2 while cortical shell thickness/density fall more
slowly, so low-T bodies are radiolucent with relatively accentuated endplates and cortex ("picture
frame"), and their projected trabecular texture becomes coarser, higher-contrast and vertically
striated.  The same systemic factor thins the posterior elements, sacrum, pelvis and ribs; vertebral
fractures (wedge / biconcave / crush, Genant-like grades) become far more frequent at low T, whereas
habitus, gas, degeneration (age-linked, hence only weakly T-linked), positioning, exposure and
processing are drawn independently of T.

Usage: phantom_v.py OUTDIR N_STUDIES SEED   (PHV_DEBUG=2: OUTDIR.debug/info.csv, =1: also coarse maps)
"""
import csv
import math
import os
import sys
import time

import numpy as np
from scipy import ndimage as ndi
from scipy.interpolate import CubicSpline
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid, PYDICOM_IMPLEMENTATION_UID

F32 = np.float32
VOX = 0.5  # mm, bone voxel size
UID_ROOT = "1.2.826.0.1.3680043.8.498."

# --------------------------------------------------------------------------------------------
# attenuation data (mass attenuation, cm^2/g, coherent included; approximate NIST XCOM values)
# --------------------------------------------------------------------------------------------
E_TAB = np.array([10, 15, 20, 30, 40, 50, 60, 80, 100, 150], float)
_MU = {
    'lean': [5.356, 1.693, 0.8205, 0.3783, 0.2685, 0.2262, 0.2048, 0.1823, 0.1693, 0.1492],
    'fat': [3.268, 1.083, 0.5677, 0.3010, 0.2361, 0.2095, 0.1950, 0.1774, 0.1654, 0.1462],
    'Al': [26.23, 7.955, 3.441, 1.128, 0.5685, 0.3681, 0.2778, 0.2018, 0.1704, 0.1378],
    'Cu': [215.9, 74.05, 33.79, 10.92, 4.862, 2.613, 1.593, 0.7630, 0.4584, 0.2217],
    'Ca': [95.85, 30.99, 14.04, 4.479, 2.057, 1.163, 0.7530, 0.4020, 0.2714, 0.1708],
    'P': [49.52, 15.39, 6.949, 2.264, 1.083, 0.6564, 0.4603, 0.2944, 0.2298, 0.1678],
    'O': [5.952, 1.836, 0.8651, 0.3779, 0.2585, 0.2132, 0.1907, 0.1678, 0.1551, 0.1361],
    'H': [0.3854, 0.3764, 0.3695, 0.3570, 0.3458, 0.3355, 0.3260, 0.3091, 0.2944, 0.2651],
}
_MU['HA'] = list(0.3989 * np.array(_MU['Ca']) + 0.1850 * np.array(_MU['P'])
                 + 0.4141 * np.array(_MU['O']) + 0.0020 * np.array(_MU['H']))


def mu(name, E):
    return np.exp(np.interp(np.log(E), np.log(E_TAB), np.log(np.array(_MU[name]))))


# detector absorbers: (K edge keV, mu/rho just above edge-scaled at 40 keV, jump ratio, g/cm2)
DETECTORS = {
    'CsI': (33.17, 24.0, 5.0, 0.20),
    'GOS': (50.24, 11.0, 5.5, 0.11),
    'BaFBr': (37.44, 19.0, 5.2, 0.12),
}


def det_eta(E, kind):
    edge, c40, jump, mass = DETECTORS[kind]
    m = c40 * (E / 40.0) ** -2.75
    if edge > 40.0:  # table value given below edge for GOS
        m = np.where(E >= edge, m * jump, m)
    else:
        m = np.where(E < edge, m / jump, m)
    m = m + 0.12
    return 1.0 - np.exp(-m * mass)


def spectrum(kvp, al_mm, cu_mm, det):
    E = np.arange(15.0, kvp, 2.0) + 1.0
    E = E[E < kvp]
    phi = np.clip((kvp - E) / E, 0, None)
    if kvp > 69.5:
        amp = 0.07 * phi.sum() * ((kvp - 69.5) / 30.0) ** 1.4
        for e_line, f in ((58.9, 0.78), (67.2, 0.22)):
            k = int(np.argmin(np.abs(E - e_line)))
            phi[k] += amp * f
    phi = phi * np.exp(-mu('Al', E) * 2.699 * al_mm / 10.0 - mu('Cu', E) * 8.96 * cu_mm / 10.0)
    w = phi * det_eta(E, det) * E
    w = w / w.sum()
    return E, w


# --------------------------------------------------------------------------------------------
# small geometry helpers
# --------------------------------------------------------------------------------------------
def rot_x(t):
    c, s = math.cos(t), math.sin(t)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_y(t):
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rot_z(t):
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def rot_axis(axis, t):
    a = np.asarray(axis, float)
    a = a / np.linalg.norm(a)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(t) * K + (1 - math.cos(t)) * K @ K


def rad(d):
    return d * math.pi / 180.0


class Grid3:
    def __init__(self, lo, hi, h):
        self.h = h
        self.lo = np.asarray(lo, float)
        self.n = (np.ceil((np.asarray(hi, float) - self.lo) / h).astype(int) + 1)
        self.ax = [(self.lo[k] + h * np.arange(self.n[k])).astype(F32) for k in range(3)]

    def sub(self, lo, hi):
        sl, co = [], []
        for k in range(3):
            i0 = max(0, int(math.floor((lo[k] - self.lo[k]) / self.h)))
            i1 = min(int(self.n[k]), int(math.ceil((hi[k] - self.lo[k]) / self.h)) + 1)
            if i1 <= i0:
                return None
            sl.append(slice(i0, i1))
            co.append(self.ax[k][i0:i1])
        return tuple(sl), co[0][:, None, None], co[1][None, :, None], co[2][None, None, :]


def combine(a, b):
    """intersection-style merge of two signed distances (box-like corners)."""
    return np.sqrt(np.maximum(a, 0) ** 2 + np.maximum(b, 0) ** 2) + np.minimum(np.maximum(a, b), 0)


def sd_ellipse2(u, v, ru, rv):
    k0 = np.sqrt((u / ru) ** 2 + (v / rv) ** 2)
    k1 = np.sqrt((u / ru ** 2) ** 2 + (v / rv ** 2) ** 2) + 1e-6
    return k0 * (k0 - 1.0) / k1


def sd_ellipsoid(X, Y, Z, c, r):
    u, v, w = X - c[0], Y - c[1], Z - c[2]
    k0 = np.sqrt((u / r[0]) ** 2 + (v / r[1]) ** 2 + (w / r[2]) ** 2)
    k1 = np.sqrt((u / r[0] ** 2) ** 2 + (v / r[1] ** 2) ** 2 + (w / r[2] ** 2) ** 2) + 1e-6
    return k0 * (k0 - 1.0) / k1


def sd_capsule(X, Y, Z, p0, p1, r, r1=None):
    p0 = np.asarray(p0, float)
    ba = np.asarray(p1, float) - p0
    bb = float(ba @ ba) + 1e-9
    px, py, pz = X - p0[0], Y - p0[1], Z - p0[2]
    t = np.clip((px * ba[0] + py * ba[1] + pz * ba[2]) / bb, 0, 1)
    rr = r if r1 is None else r + (r1 - r) * t
    return np.sqrt((px - t * ba[0]) ** 2 + (py - t * ba[1]) ** 2 + (pz - t * ba[2]) ** 2) - rr


def seg2d_dist(u, v, a, b):
    du, dv = b[0] - a[0], b[1] - a[1]
    pu, pv = u - a[0], v - a[1]
    t = np.clip((pu * du + pv * dv) / (du * du + dv * dv + 1e-9), 0, 1)
    return np.sqrt((pu - t * du) ** 2 + (pv - t * dv) ** 2)


def sd_body(X, Y, Z, s):
    rr = s.get('round', 1.5)
    a, b, H, p = s['a'] - rr, s['b'] - rr, s['H'] - 2 * rr, s['p']
    zn = np.clip(2.0 * Z / H, -1, 1)
    sc = 1.0 - s['waist'] * (1.0 - zn * zn)
    ax = a * sc
    by = np.where(Y >= 0, b, b * s['post']) * sc
    ux = np.abs(X) / ax + 1e-4
    uy = np.abs(Y) / by + 1e-4
    n = (ux ** p + uy ** p) ** (1.0 / p)
    g = n ** (1.0 - p) * np.sqrt((ux ** (p - 1) / ax) ** 2 + (uy ** (p - 1) / by) ** 2) + 1e-6
    sdxy = (n - 1.0) / g
    if s.get('bump') is not None:
        th = np.arctan2(Y / b, X / a)
        bp = 0.0
        for (kk, amp, ph, kz, phz) in s['bump']:
            bp = bp + amp * np.sin(kk * th + ph) * (1 + 0.5 * np.sin(kz * Z / H * math.pi + phz))
        sdxy = sdxy - bp
    nn = np.minimum(n, 1.0)
    yy = np.clip(Y / b, -1, 1)
    ztop = H / 2 - s['cup_t'] * (1 - nn * nn) - s['drop_t'] * (yy + 1) / 2
    zbot = -H / 2 + s['cup_b'] * (1 - nn * nn) + s['drop_b'] * (yy + 1) / 2
    sdz = np.maximum(Z - ztop, zbot - Z)
    return combine(sdxy, sdz) - rr


def occ(sd, w):
    return np.clip(0.5 - sd / w, 0.0, 1.0)


# --------------------------------------------------------------------------------------------
# anatomy tables (women, height 165 cm; mm)
# --------------------------------------------------------------------------------------------
LEV = ['T11', 'T12', 'L1', 'L2', 'L3', 'L4', 'L5', 'S1', 'S2', 'S3', 'S4']
IDX = {k: i for i, k in enumerate(LEV)}
#          a     b     H    prx  prz  Lt    rt   Ls   spinous angle
DIMS = {'T11': (18.0, 14.5, 22.0, 3.6, 7.0, 13.0, 4.0, 24.0, 38),
        'T12': (19.5, 15.5, 23.5, 3.9, 7.5, 9.0, 3.8, 25.0, 26),
        'L1': (21.0, 16.0, 25.0, 4.2, 7.5, 14.0, 3.6, 26.0, 14),
        'L2': (22.0, 16.5, 26.0, 4.6, 7.5, 20.0, 3.8, 27.0, 11),
        'L3': (23.5, 17.0, 26.5, 5.2, 7.5, 26.0, 4.0, 27.0, 9),
        'L4': (24.5, 17.5, 26.5, 6.2, 7.5, 22.0, 4.6, 25.0, 7),
        'L5': (26.0, 17.5, 25.5, 8.0, 7.5, 16.0, 6.5, 20.0, 4)}
DISC = [6.0, 7.0, 8.5, 9.5, 10.5, 11.0, 10.5, -0.6, -0.6, -0.6]  # below each level (T11-12 ... S3-4)
#          a-fac b-fac  H    ala   mass-thickness
SACR = {'S1': (0.98, 0.95, 27.0, 50.0, 24.0), 'S2': (0.80, 0.78, 23.0, 44.0, 19.0),
        'S3': (0.62, 0.62, 19.0, 34.0, 14.0), 'S4': (0.46, 0.48, 15.0, 23.0, 10.0)}
DEG_W = [0.35, 0.45, 0.55, 0.7, 0.85, 1.0, 1.0]  # disc below T11 ... L5


# --------------------------------------------------------------------------------------------
# patient model
# --------------------------------------------------------------------------------------------
def draw_T(rng, cls):
    if cls == 0:
        vals = np.round(np.arange(-1.0, 1.501, 0.1), 1)
        w = np.exp(-0.5 * ((vals + 0.15) / 0.9) ** 2)
    elif cls == 1:
        vals = np.round(np.arange(-2.4, -1.05, 0.1), 1)
        w = np.ones_like(vals)
    else:
        vals = np.round(np.arange(-4.5, -2.45, 0.1), 1)
        w = np.exp(-(-2.5 - vals) / 1.1)
    return float(rng.choice(vals, p=w / w.sum()))


def t_label(T):
    if T >= -1.0:
        return 0
    if T > -2.5:
        return 1
    return 2


class Patient:
    pass


def make_patient(rng, seed, idx, cls):
    p = Patient()
    p.pid = "PHV%d-%04d" % (seed, idx + 1)
    p.sex = 'F' if rng.random() < 0.72 else 'M'
    p.T = draw_T(rng, cls)
    p.label = t_label(p.T)
    age = 64.0 - 2.1 * (p.T + 1.4) + rng.normal(0, 10.5) + (2.0 if p.sex == 'M' else 0.0)
    p.age = int(np.clip(round(age), 35, 92))
    ref, sd = (1.047, 0.110) if p.sex == 'F' else (1.064, 0.118)
    p.bmd = round(ref + sd * p.T, 3)
    p.q = p.bmd / ref                      # fraction of young-adult bone mass
    # habitus, independent of T
    p.height = rng.normal(161, 6.5) if p.sex == 'F' else rng.normal(175, 7.0)
    p.bmi = float(np.clip(rng.normal(27.5, 5.0), 17.5, 46))
    male = p.sex == 'M'
    p.W0 = 0.5 * (290 + 10.5 * (p.bmi - 25) + (18 if male else 0)) * rng.normal(1, 0.05)
    p.D0 = 0.5 * (205 + 9.5 * (p.bmi - 25) + (12 if male else 0)) * rng.normal(1, 0.06)
    p.D0 = max(p.D0, 72.0)
    p.W0 = max(p.W0, 105.0)
    sf = (12 + 3.6 * (p.bmi - 22)) if not male else (8 + 2.6 * (p.bmi - 22))
    p.sf = max(3.5, sf * rng.lognormal(0, 0.2))
    p.visc = float(np.clip(0.10 + 0.012 * (p.bmi - 22) + (0.07 if male else 0) + 0.0012 * (p.age - 50)
                           + rng.normal(0, 0.04), 0.04, 0.45))
    p.hip_gain = (0.16 if not male else 0.07) * rng.normal(1, 0.25)
    # skeleton scaling
    sh = p.height / 165.0 * rng.normal(1, 0.025)
    p.sw = sh * (1.07 if male else 1.0) * rng.normal(1, 0.04)
    p.sh = sh * (1.03 if male else 1.0)
    # bone quality: trabecular falls faster than cortical
    p.qt = max(0.18, p.q ** 2.0 * rng.lognormal(0, 0.08))
    p.qc = p.q ** 0.75 * rng.lognormal(0, 0.04)
    # degeneration (age driven)
    agef = np.clip((p.age - 33) / 40.0, 0, 1.4)
    prop = rng.lognormal(0, 0.45)
    p.deg = [float(np.clip(agef * prop * DEG_W[i] + rng.normal(0, 0.08), 0, 1.4)) for i in range(7)]
    # fractures
    pf = 0.03 if p.T > -1.0 else 0.04 + 0.12 * (-1.0 - p.T)
    pf = float(np.clip(pf + 0.003 * (p.age - 60), 0.01, 0.5))
    p.fract = {}
    if rng.random() < pf:
        nfr = 1 + (rng.poisson(0.35 if p.T > -2.5 else 0.7))
        levs = ['T11', 'T12', 'L1', 'L2', 'L3', 'L4', 'L5']
        wl = np.array([0.10, 0.24, 0.26, 0.15, 0.11, 0.09, 0.05])
        for lv in rng.choice(levs, size=min(nfr, 4), replace=False, p=wl / wl.sum()):
            if p.T > -1.0:
                loss = rng.uniform(0.16, 0.26)
            else:
                g = rng.choice([0, 1, 2], p=[0.45, 0.35, 0.20] if p.T > -2.5 else [0.35, 0.38, 0.27])
                loss = [rng.uniform(0.18, 0.25), rng.uniform(0.25, 0.40), rng.uniform(0.40, 0.58)][g]
            kind = rng.choice(['wedge', 'biconcave', 'crush'], p=[0.6, 0.25, 0.15])
            p.fract[str(lv)] = (str(kind), float(loss))
    # sagittal / coronal alignment
    p.ss = float(np.clip(rng.normal(38, 7), 20, 58))
    p.ll = float(np.clip(p.ss + rng.normal(13, 7) - (4 if p.T < -2.5 else 0), 15, 80))
    p.scol = None
    if rng.random() < 0.05 + 0.25 * np.clip((p.age - 50) / 30.0, 0, 1):
        p.scol = (float(rng.uniform(7, 32)), float(rng.uniform(2.5, 4.0)), float(rng.choice([-1, 1])))
    p.listh = None
    if rng.random() < (0.11 if (p.sex == 'F' and p.age > 58) else 0.04):
        p.listh = (('L4' if rng.random() < 0.7 else 'L5'), float(rng.uniform(3, 9)))
    p.aorta = float(np.clip((p.age - 45) / 35.0, 0, 0.9)) if rng.random() < np.clip((p.age - 42) / 38.0, 0.02, 0.85) else 0.0
    p.gas = float(rng.beta(1.6, 2.4))
    p.bone_island = rng.random() < 0.05
    return p


def vertebra_specs(p, rng):
    specs = []
    L5a = DIMS['L5'][0] * p.sw
    L5b = DIMS['L5'][1] * p.sw
    tcb = 0.55 * p.q ** 0.8 * rng.lognormal(0, 0.1)
    tcp = 1.25 * p.q ** 0.7 * rng.lognormal(0, 0.1)
    for i, lev in enumerate(LEV):
        d_above = DISC[i - 1] * p.sh if i > 0 else 6.0
        d_below = DISC[i] * p.sh if i < len(DISC) else 1.0
        if i >= 1 and i - 1 < 7:
            d_above *= max(0.3, 1 - 0.55 * p.deg[i - 1])
        if i < 7:
            d_below *= max(0.3, 1 - 0.55 * p.deg[i])
        deg_a = p.deg[i - 1] if 1 <= i <= 7 else 0.0
        deg_b = p.deg[i] if i < 7 else 0.0
        s = dict(level=lev, tcb=tcb, tcp=tcp, d_above=d_above, d_below=d_below, waist=rng.uniform(0.07, 0.12), p=2.4,
                 post=0.88, cup_t=1.2, cup_b=1.0, drop_t=0.0, drop_b=0.0, ost=[], scl_t=0.0, scl_b=0.0,
                 frac=None, deg_a=deg_a, deg_b=deg_b)
        if lev in DIMS:
            a, b, H, prx, prz, Lt, rt, Ls, spang = DIMS[lev]
            s.update(kind='T' if lev[0] == 'T' else 'L', a=a * p.sw * rng.normal(1, 0.02),
                     b=b * p.sw * rng.normal(1, 0.02), H=H * p.sh * rng.normal(1, 0.02),
                     prx=prx * p.sw, prz=prz * p.sh, Lt=Lt * p.sw * rng.normal(1, 0.1), rt=rt * p.sw,
                     Ls=Ls * p.sw * rng.normal(1, 0.08), spang=spang + rng.normal(0, 4))
            s['cup_t'] = rng.uniform(0.8, 2.0) * p.sh
            s['cup_b'] = rng.uniform(0.8, 2.0) * p.sh
            if lev == 'L5':
                s['drop_t'] = -rng.uniform(1.0, 3.0)   # anterior taller
            if lev in ('T11', 'T12'):
                s['drop_t'] = rng.uniform(0.3, 1.5)
            # degeneration: osteophytes at rims, endplate sclerosis
            for top, dg in ((True, deg_a), (False, deg_b)):
                if dg > 0.35:
                    n_o = int(rng.integers(1, 3 + int(4 * dg)))
                    for _ in range(n_o):
                        ang = rng.choice([rng.uniform(20, 160), rng.uniform(-25, 25), rng.uniform(155, 205)])
                        ang = rad(ang)
                        size = rng.uniform(1.5, 3.5) * dg * p.sw
                        zc = (s['H'] / 2 - 0.5) if top else (-s['H'] / 2 + 0.5)
                        cx = (s['a'] + size * 0.4) * math.cos(ang)
                        cy = (s['b'] + size * 0.4) * math.sin(ang)
                        s['ost'].append(((cx, cy, zc + (1 if top else -1) * size * 0.35),
                                         (size * 1.1, size * 1.1, size * 0.8)))
                scl = max(0.0, dg - 0.3) * rng.uniform(0.4, 1.2)
                if top:
                    s['scl_t'] = scl
                else:
                    s['scl_b'] = scl
            fr = p.fract.get(lev)
            if fr:
                kind, loss = fr
                s['frac'] = fr
                Hh = s['H']
                if kind == 'wedge':
                    s['drop_t'] += loss * Hh * (1.0 if rng.random() < 0.8 else 0.5)
                    s['cup_t'] += 1.0
                    s['scl_t'] += rng.uniform(0.5, 1.2)
                elif kind == 'biconcave':
                    s['cup_t'] += loss * Hh * 0.55
                    s['cup_b'] += loss * Hh * 0.45
                    s['scl_t'] += rng.uniform(0.3, 0.8)
                    s['scl_b'] += rng.uniform(0.3, 0.8)
                else:
                    s['H'] = Hh * (1 - loss)
                    s['a'] *= 1.04
                    s['b'] *= 1.05
                    s['scl_t'] += rng.uniform(0.6, 1.4)
                    s['scl_b'] += rng.uniform(0.3, 0.8)
        else:
            af, bf, H, ala, mt = SACR[lev]
            nxt = {'S1': 'S2', 'S2': 'S3', 'S3': 'S4'}.get(lev)
            ala_b = SACR[nxt][3] if nxt else 14.0
            fw = p.sw * (1.04 if p.sex == 'F' else 1.0)
            s.update(kind='S', a=L5a * af, b=L5b * bf, H=H * p.sh, ala=ala * fw, ala_b=ala_b * fw,
                     mt=mt * p.sw, cup_t=0.6, cup_b=0.4, waist=0.03, sc_w={'S1': 1.0, 'S2': 0.8, 'S3': 0.6, 'S4': 0.45}[lev])
            if lev == 'S1':
                s['scl_t'] = max(0.0, p.deg[6] - 0.3) * rng.uniform(0.4, 1.2)
        s['facet'] = 1.0 + 0.45 * max(deg_a, deg_b) ** 1.2
        s['bump'] = [(int(rng.integers(2, 9)), rng.uniform(0.1, 0.45), rng.uniform(0, 6.3), rng.uniform(0.5, 2.0),
                      rng.uniform(0, 6.3)) for _ in range(4)]
        s['trab_f'] = 0.62 if s['kind'] == 'S' else 1.0
        specs.append(s)
    return specs


def build_bone(s):
    """voxelise one vertebra / sacral segment in its local frame; returns point list + channels."""
    h = VOX
    a, b, H = s['a'], s['b'], s['H']
    da, db = s['d_above'], s['d_below']
    if s['kind'] == 'S':
        xm = s['ala'] + 4
        lo = (-xm, -b - s['mt'] - 16, -H / 2 - 4)
        hi = (xm, b + 4, H / 2 + (da + 10 if s['level'] == 'S1' else 3))
    else:
        xp = 0.6 * a
        xm = max(a + 8, xp + s['Lt'] + s['rt'] + 3)
        Lp = 0.45 * b + 2
        Ll = 9 + 0.1 * a
        ymin = -(b + Lp + Ll + s['Ls'] + 10)
        lo = (-xm, ymin, -H / 2 - 0.9 * db - 7 - s['Ls'] * math.tan(rad(s['spang'])))
        hi = (xm, b + 8, H / 2 + 0.95 * da + 7)
    G = Grid3(lo, hi, h)
    sdB = np.full(tuple(G.n), 50.0, F32)
    sdP = np.full(tuple(G.n), 50.0, F32)

    def add(arr, blo, bhi, fn, mode='union'):
        r = G.sub(blo, bhi)
        if r is None:
            return
        sl, X, Y, Z = r
        v = fn(X, Y, Z).astype(F32)
        v = np.broadcast_to(v, arr[sl].shape)
        if mode == 'union':
            np.minimum(arr[sl], v, out=arr[sl])
        else:
            np.maximum(arr[sl], -v, out=arr[sl])

    add(sdB, (-a - 3, -b - 3, -H / 2 - 3), (a + 3, b + 3, H / 2 + 3), lambda X, Y, Z: sd_body(X, Y, Z, s))
    for c, r in s['ost']:
        c = np.array(c)
        r = np.array(r)
        add(sdB, c - r - 2, c + r + 2, lambda X, Y, Z, c=c, r=r: sd_ellipsoid(X, Y, Z, c, r))
    fac = s['facet']
    if s['kind'] in ('L', 'T'):
        prx, prz = s['prx'], s['prz']
        zp = 0.15 * H
        y0, y1 = -b * 0.5, -b - Lp
        for sg in (-1, 1):
            add(sdP, (sg * xp - prx - 2, y1 - 2, zp - prz - 2), (sg * xp + prx + 2, y0 + 2, zp + prz + 2),
                lambda X, Y, Z, sg=sg: combine(sd_ellipse2(X - sg * xp, Z - zp, prx, prz),
                                               np.maximum(Y - y0, y1 - Y)))
            # lamina: slab from pedicle end to midline
            pa, pb = (sg * xp, y1), (0.0, y1 - Ll)
            zl0, zl1 = -0.48 * H, 0.38 * H
            add(sdP, (min(pa[0], 0) - 5, y1 - Ll - 5, zl0 - 2), (max(pa[0], 0) + 5, y1 + 5, zl1 + 2),
                lambda X, Y, Z, pa=pa, pb=pb: combine(seg2d_dist(X, Y, pa, pb) - 3.0,
                                                      np.maximum(Z - zl1, zl0 - Z)))
            # transverse process
            if s['kind'] == 'L':
                t0 = np.array([sg * xp, y1 + 1.5, zp])
                t1 = np.array([sg * (xp + s['Lt']), y1 + 1.5 + 0.15 * s['Lt'], zp + 0.06 * s['Lt']])
            else:
                t0 = np.array([sg * xp, y1, zp + 1])
                t1 = np.array([sg * (xp + s['Lt']), y1 - 0.45 * s['Lt'], zp + 0.15 * s['Lt']])
            rt = s['rt']
            add(sdP, np.minimum(t0, t1) - 1.3 * rt - 2, np.maximum(t0, t1) + 1.3 * rt + 2,
                lambda X, Y, Z, t0=t0, t1=t1: sd_capsule(X, Y, Z, t0, t1, 1.3 * rt, 0.75 * rt))
            # articular processes
            rf = 4.2 * fac
            s0 = np.array([sg * (xp + 2), y1 - 1.5, zp])
            s1 = np.array([sg * (xp + 2.5), y1 - 3.5, H / 2 + 0.9 * da])
            add(sdP, np.minimum(s0, s1) - rf - 2, np.maximum(s0, s1) + rf + 2,
                lambda X, Y, Z, s0=s0, s1=s1, rf=rf: sd_capsule(X, Y, Z, s0, s1, rf))
            rf2 = 3.8 * fac
            i0 = np.array([sg * (xp - 6.5), y1 - Ll * 0.7, -0.1 * H])
            i1 = np.array([sg * (xp - 6.8), y1 - Ll * 0.8 - 2, -H / 2 - 0.75 * db])
            add(sdP, np.minimum(i0, i1) - rf2 - 2, np.maximum(i0, i1) + rf2 + 2,
                lambda X, Y, Z, i0=i0, i1=i1, rf2=rf2: sd_capsule(X, Y, Z, i0, i1, rf2))
        # spinous process (plate in the sagittal plane)
        rs = 0.36 * H * (0.8 if s['kind'] == 'T' else 1.0)
        q0 = (y1 - Ll + 3, -0.05 * H)
        tang = math.tan(rad(s['spang']))
        Ls = s['Ls']
        q1 = (y1 - Ll - Ls, -0.05 * H - Ls * tang)

        def spinous(X, Y, Z):
            sa = np.clip((q0[0] - Y) / Ls, 0, 1)
            zc = q0[1] - sa * Ls * tang
            hh = rs * (1 - 0.12 * sa) - 2.0
            ts = 2.2 + 2.3 * sa
            return combine(sd_ellipse2(X, Z - zc, ts, hh + 2.0), np.maximum(Y - q0[0], q1[0] - Y))
        add(sdP, (-8, q1[0] - 4, q1[1] - rs - 3), (8, q0[0] + 4, q0[1] + rs + 3), spinous)
    else:
        # sacral segment: lateral masses (ala), foramina, median crest, S1 superior facets
        mt, ala, ala_b = s['mt'], s['ala'], s['ala_b']
        ya, yp = 0.2 * b, -b - 0.5 * mt
        hz = H / 2 + 1.0
        slope = 0.22 if s['level'] == 'S1' else 0.0

        def lat_mass(X, Y, Z):
            w = ala_b + (ala - ala_b) * np.clip((Z + H / 2) / H, 0, 1)
            sx = np.abs(X) - (w - 4)
            ex = np.maximum(np.abs(X) - a, 0)
            sy = np.maximum(Y - (ya - 3 - 0.2 * ex), (yp + 3 + 0.25 * ex) - Y)
            sz = np.maximum(Z - (hz - slope * np.maximum(np.abs(X) - a, 0)), -hz - Z)
            return combine(combine(sx, sy) - 4, sz)
        add(sdP, (-ala - 2, yp - 2, -hz - 2), (ala + 2, ya + 2, hz + 2), lat_mass)
        # sacral canal
        add(sdP, (-12, -b - 16, -hz - 2), (12, -b + 2, hz + 2),
            lambda X, Y, Z: sd_ellipse2(X, Y + b + 7, 9.0 * s['sc_w'], 4.5 * s['sc_w']), mode='hole')
        m0 = np.array([0.0, -b - mt * 0.55, H * 0.3])
        m1 = np.array([0.0, -b - mt * 0.55 - 6, -H * 0.3])
        add(sdP, (-6, -b - mt - 14, -H / 2 - 4), (6, -b, H / 2 + 4),
            lambda X, Y, Z: sd_capsule(X, Y, Z, m0, m1, 3.5))
        if s['level'] == 'S1':
            for sg in (-1, 1):
                s0 = np.array([sg * a * 0.62, -b - 8, H * 0.2])
                s1 = np.array([sg * a * 0.66, -b - 10, H / 2 + 0.9 * da])
                rf = 4.6 * fac
                add(sdP, np.minimum(s0, s1) - rf - 2, np.maximum(s0, s1) + rf + 2,
                    lambda X, Y, Z, s0=s0, s1=s1, rf=rf: sd_capsule(X, Y, Z, s0, s1, rf))
        rh = 2.8 + 0.08 * H
        for sg in (-1, 1):
            xc = sg * (a * 0.9 + 4)
            for arr in (sdP, sdB):
                add(arr, (xc - rh - 2, -b - mt - 14, -H / 2 - rh - 2), (xc + rh + 2, b + 3, -H / 2 + rh + 2),
                    lambda X, Y, Z, xc=xc: combine(sd_ellipse2(X - xc, Z + H / 2, rh, rh * 1.1), np.abs(Y) - 80),
                    mode='hole')
    # occupancies -> cortical / trabecular fractions
    solid = np.maximum(occ(sdB, h), occ(sdP, h))
    trab = np.maximum(occ(sdB + s['tcb'], h), occ(sdP + s['tcp'], h))
    del sdB, sdP
    m = solid > 0.01
    ii = np.nonzero(m)
    pts = np.stack([G.ax[0][ii[0]], G.ax[1][ii[1]], G.ax[2][ii[2]]], axis=1)
    t = trab[m]
    c = solid[m] - t
    # endplate sclerosis / fracture compaction inside the body
    inb = (np.abs(pts[:, 0]) < a * 1.15) & (pts[:, 1] > -b * 1.1)
    z = pts[:, 2]
    f = 1.0 + inb * (s['scl_t'] * np.exp(-np.maximum(H / 2 - s['cup_t'] * 0.5 - z, 0) / 2.2)
                     + s['scl_b'] * np.exp(-np.maximum(z + H / 2 - s['cup_b'] * 0.5, 0) / 2.2))
    return dict(pts=pts.astype(F32), cort=c.astype(F32), trab=(t * f * s['trab_f']).astype(F32), spec=s)


# --------------------------------------------------------------------------------------------
# chain, pelvis, ribs, soft tissue, gas
# --------------------------------------------------------------------------------------------
def spine_chain(p, specs, rng):
    n = len(LEV)
    th = np.zeros(n)
    ph = np.zeros(n)
    ps = np.zeros(n)
    iS1 = IDX['S1']
    th[iS1] = -p.ss
    frac_ll = np.array([0.08, 0.12, 0.18, 0.25, 0.37]) * rng.lognormal(0, 0.15, 5)
    frac_ll /= frac_ll.sum()
    acc = th[iS1]
    seq = ['L5', 'L4', 'L3', 'L2', 'L1']
    for k, lev in enumerate(seq):
        acc += p.ll * frac_ll[4 - k]
        th[IDX[lev]] = acc
    th[IDX['T12']] = th[IDX['L1']] - rng.normal(3, 2.5)
    th[IDX['T11']] = th[IDX['T12']] - rng.normal(4, 2.5)
    for k, lev in enumerate(['S2', 'S3', 'S4']):
        th[IDX[lev]] = th[IDX[lev] - 1] - rng.uniform(6, 13)
    # wedge fractures tilt everything above forward
    for lev, (kind, loss) in p.fract.items():
        i = IDX[lev]
        s = specs[i]
        w = math.degrees(math.atan(s['drop_t'] / (2 * s['b']))) if kind == 'wedge' else 0.0
        th[:i] -= w
    if p.scol:
        cobb, apex, sg = p.scol
        for i in range(IDX['T11'], IDX['S1']):
            u = np.clip((i - apex) / 2.6, -1, 1)
            ph[i] = sg * cobb / 2 * math.sin(u * math.pi / 2)
            ps[i] = sg * cobb * 0.35 * math.cos(u * math.pi / 2)
    ph += rng.normal(0, 1.2, n)
    ps += rng.normal(0, 1.5, n)
    ph[iS1:] = ph[iS1]
    ps[iS1:] = ps[iS1]
    R = [rot_z(rad(ps[i])) @ rot_y(rad(ph[i])) @ rot_x(rad(th[i])) for i in range(n)]
    H = [sp['H'] - 0.5 * max(sp['drop_t'], 0) for sp in specs]
    c = np.zeros((n, 3))
    for i in range(iS1 - 1, -1, -1):
        zi1, zi = R[i + 1][:, 2], R[i][:, 2]
        zm = zi + zi1
        zm /= np.linalg.norm(zm)
        c[i] = c[i + 1] + zi1 * H[i + 1] / 2 + zm * specs[i]['d_below'] + zi * H[i] / 2
    for i in range(iS1 + 1, n):
        zi1, zi = R[i - 1][:, 2], R[i][:, 2]
        zm = zi + zi1
        zm /= np.linalg.norm(zm)
        c[i] = c[i - 1] - zi1 * H[i - 1] / 2 - zm * specs[i - 1]['d_below'] - zi * H[i] / 2
    if p.listh:
        lev, dl = p.listh
        k = IDX[lev]
        shift = R[k] @ np.array([0, dl, 0])
        c[:k + 1] += shift
    c -= c[IDX['L3']]
    return c, R


def pelvis_points(p, cS1, RS1, rng, rho_c, rho_t, tc):
    """splat samples of both iliac wings: returns (pts Nx3 patient mm, mass g)"""
    Rp = RS1 @ rot_x(rad(40.0 + 0.5 * (p.ss - 40.0)))   # neutral pelvic frame -> patient
    sW = p.sw * (1.06 if p.sex == 'F' else 0.97) * rng.normal(1, 0.04)
    sH = p.sh * rng.normal(1, 0.04)
    zc = rng.normal(12, 8)
    uc = np.array([0.0, 0.15, 0.35, 0.55, 0.75, 0.92, 1.0])
    C = np.array([[42, -58, -18], [62, -60, 10], [105, -40, 38], [132, -5, 45], [130, 35, 25],
                  [120, 60, 0], [115, 68, -12]], float)
    ub = np.array([0.0, 0.35, 0.65, 1.0])
    B = np.array([[34, -40, -60], [58, -22, -95], [82, 5, -125], [100, 40, -110]], float)
    nu, nt = 330, 230
    u = (np.arange(nu) + 0.5) / nu
    t = (np.arange(nt) + 0.5) / nt
    Cu = CubicSpline(uc, C, axis=0)(u)
    Bu = np.stack([np.interp(u, ub, B[:, k]) for k in range(3)], axis=1)
    U, Tt = np.meshgrid(u, t, indexing='ij')
    S = (1 - Tt)[..., None] * Cu[:, None, :] + Tt[..., None] * Bu[:, None, :]
    S[..., 0] += 11 * np.sin(np.pi * Tt) * np.sin(np.pi * U) ** 0.7
    S[..., 0] *= sW
    S[..., 1] *= sW
    S[..., 2] = S[..., 2] * sH + zc
    dSu = np.gradient(S, axis=0)
    dSt = np.gradient(S, axis=1)
    dA = np.linalg.norm(np.cross(dSu, dSt), axis=-1) / 100.0  # cm^2
    thick = 2.0 + 8 * np.exp(-Tt / 0.04) + 16 * np.maximum(Tt - 0.55, 0) / 0.45 + 9 * np.exp(-U / 0.08)
    thick *= p.sw
    areal = (2 * tc * rho_c + np.maximum(thick - 2 * tc, 0) * rho_t) / 10.0  # g/cm^2 (mm->cm)
    mass = (dA * areal).ravel()
    pts_all, mass_all = [], []
    for sg in (-1, 1):
        P = S.reshape(-1, 3).copy()
        P[:, 0] *= sg
        jit = rng.normal(0, 0.15, P.shape)
        pts_all.append((P + jit) @ Rp.T + cS1)
        mass_all.append(mass)
    # iliac crest rim and arcuate line (tubes sampled as dense point chains)
    crest_pts = []
    for sg in (-1, 1):
        cc = Cu.copy()
        cc[:, 0] *= sW * sg
        cc[:, 1] *= sW
        cc[:, 2] = cc[:, 2] * sH + zc
        crest_pts.append(cc @ Rp.T + cS1)
    return np.concatenate(pts_all), np.concatenate(mass_all), crest_pts, sW


def rib_polylines(p, c, R, rng):
    out = []
    for lev, L, drop, r in (('T11', 190.0, 62.0, 5.2), ('T12', 125.0, 48.0, 4.6)):
        i = IDX[lev]
        s_len = L * p.sw * rng.normal(1, 0.12)
        a = DIMS[lev][0] * p.sw
        b = DIMS[lev][1] * p.sw
        for sg in (-1, 1):
            ss = np.linspace(0, 1, 40)
            ang = ss * (math.pi / 2 if lev == 'T11' else math.pi / 3)
            rx = s_len * 0.75
            x = sg * (a + 6 + rx * np.sin(ang))
            y = -b - 8 + rx * 0.6 * (1 - np.cos(ang)) - 14 * np.sin(np.pi * ss)
            z = 0.2 * 22 - drop * p.sh * ss * rng.normal(1, 0.1)
            q = np.stack([x, y, z], 1)
            out.append((q @ R[i].T + c[i], r * p.sw * (1 - 0.45 * ss ** 1.5)))
    return out


def aorta_points(p, c, specs, rng, rho):
    if p.aorta <= 0:
        return np.zeros((0, 3)), np.zeros(0)
    iT12, iL4 = IDX['T12'], IDX['L4']
    zs = np.linspace(c[iT12][2] + 10, c[iL4][2] - 5, 60)
    cz = c[:, 2][::-1]
    xs = np.interp(zs, cz, c[:, 0][::-1]) + rng.uniform(8, 20)
    ys = np.interp(zs, cz, c[:, 1][::-1]) + 17 * p.sw + 14
    rA = rng.uniform(9, 13)
    n_pl = int(rng.poisson(2 + 14 * p.aorta))
    pts, mass = [], []
    for _ in range(n_pl):
        zc = rng.uniform(zs[-1] - 25, zs[0])  # includes common iliacs below
        phc = rng.choice([rng.uniform(-2.5, -0.6), rng.uniform(-math.pi, math.pi)])  # posterior-ish wall
        dph = rng.uniform(0.25, 1.4)
        dz = rng.uniform(2, 18)
        thk = rng.uniform(0.4, 1.4)
        ng = int(max(dph * rA, 1) / 0.35) * int(dz / 0.35)
        ph_s = rng.uniform(phc - dph / 2, phc + dph / 2, ng)
        z_s = rng.uniform(zc - dz / 2, zc + dz / 2, ng)
        x0 = np.interp(z_s, zs[::-1], xs[::-1])
        y0 = np.interp(z_s, zs[::-1], ys[::-1])
        if zc < zs[-1]:   # iliac branch, diverging
            x0 = x0 + np.sign(rng.normal()) * (zs[-1] - z_s) * 0.6
        P = np.stack([x0 + rA * np.cos(ph_s), y0 + rA * np.sin(ph_s), z_s], 1)
        pts.append(P)
        mass.append(np.full(ng, dph * rA * dz / 100.0 / ng * thk / 10.0 * rho))
    if not pts:
        return np.zeros((0, 3)), np.zeros(0)
    return np.concatenate(pts), np.concatenate(mass)


def rand_rot(rng, amount=1.0):
    return rot_z(rng.uniform(-math.pi, math.pi) * amount) @ rot_x(rng.normal(0, 0.5) * amount) @ rot_y(rng.normal(0, 0.5) * amount)


def gas_list(p, c, specs, rng):
    """3-D gas ellipsoids (center, radii, gas fraction along the chord, rotation) in patient frame"""
    g = []
    W, D = p.W0, p.D0
    zL1, zS1 = c[IDX['L1']][2], c[IDX['S1']][2]
    yb = p.Yb
    path = []
    # ascending colon (patient right = -X), transverse colon, descending colon, sigmoid
    for z in np.linspace(zS1 - 30, zL1 + 25, 9):
        path.append(((-0.58 * W, yb + 0.05 * D, z), (0, 0, 1)))
    xs = np.linspace(-0.5 * W, 0.5 * W, 10)
    sag = rng.uniform(20, 70)
    for x in xs:
        path.append(((x, yb + 0.45 * D, zL1 + 20 - sag * math.cos(x / W * 1.4)), (1, 0, 0)))
    for z in np.linspace(zL1 + 40, zS1 - 20, 9):
        path.append(((0.6 * W, yb + 0.0 * D, z), (0, 0, 1)))
    for x in np.linspace(0.5 * W, -0.05 * W, 5):
        path.append(((x, yb + 0.1 * D, zS1 - 40 - 15 * math.sin(x / W * 5)), (1, 0, 0.3)))
    amount = p.gas
    for P, tang in path:
        P = np.array(P) + rng.normal(0, 7, 3)
        if rng.random() < 0.08 + 0.55 * amount:
            Rt = rot_axis(np.cross([0, 0, 1.0], tang) if tang[2] < 0.9 else [1, 0, 0], 0 if tang[2] >= 0.9 else math.pi / 2)
            for _ in range(int(rng.integers(1, 4))):
                cc = P + Rt @ rng.normal(0, [5, 5, 9])
                rl = rng.uniform(8, 20) * (0.7 + 0.5 * amount)
                ra = rng.uniform(7, 16) * (0.7 + 0.5 * amount)
                Rm = Rt @ rand_rot(rng, 0.25)
                g.append((cc, np.array([ra, ra * rng.uniform(0.7, 1.1), rl]), rng.uniform(0.3, 0.85), Rm))
        if rng.random() < 0.1 + 0.35 * amount:   # stool: mottled small bubbles in the lumen
            for _ in range(int(rng.integers(15, 60))):
                bc = P + rng.normal(0, 10, 3)
                rb = rng.uniform(0.8, 2.6)
                g.append((bc, np.array([rb, rb, rb]) * rng.uniform(0.7, 1.3, 3), rng.uniform(0.3, 0.9), np.eye(3)))
    if rng.random() < 0.3 * (0.4 + amount):  # small bowel loops
        for _ in range(int(rng.integers(2, 8))):
            cc = np.array([rng.uniform(-0.35, 0.35) * W, yb + rng.uniform(0.1, 0.5) * D, rng.uniform(zS1 - 20, zL1)])
            r0 = rng.uniform(6, 12)
            g.append((cc, np.array([r0, r0, r0 * rng.uniform(1.5, 3.0)]), rng.uniform(0.4, 0.9), rand_rot(rng)))
    if rng.random() < 0.35:  # gastric air at the top left
        cc = np.array([0.35 * W, yb + 0.2 * D, c[IDX['T11']][2] + rng.uniform(0, 60)])
        r0 = rng.uniform(18, 35)
        g.append((cc, np.array([r0 * 1.3, r0, r0 * 0.8]), rng.uniform(0.5, 0.9), rand_rot(rng, 0.3)))
    # vacuum disc phenomenon in severely degenerated discs
    for i in range(7):
        if p.deg[i] > 0.85 and rng.random() < 0.35:
            cc = 0.5 * (c[i] + c[i + 1])
            sa = specs[i]
            g.append((cc + np.array([0, sa['b'] * 0.2, 0]), np.array([sa['a'] * 0.6, sa['b'] * 0.5, 1.3]), 1.0, np.eye(3)))
    return g


# --------------------------------------------------------------------------------------------
# projection helpers on the coarse grid
# --------------------------------------------------------------------------------------------
class ViewGeom:
    pass


def splat(shape, colf, rowf, w):
    Hc, Wc = shape
    c0 = np.floor(colf).astype(np.int64)
    r0 = np.floor(rowf).astype(np.int64)
    fc = (colf - c0).astype(F32)
    fr = (rowf - r0).astype(F32)
    out = np.zeros(Hc * Wc, np.float64)
    for dr, dc, ww in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
        rr = r0 + dr
        cc = c0 + dc
        ok = (rr >= 0) & (rr < Hc) & (cc >= 0) & (cc < Wc)
        out += np.bincount(rr[ok] * Wc + cc[ok], weights=(w * ww)[ok], minlength=Hc * Wc)
    return out.reshape(Hc, Wc)


def to_view(vg, P):
    """patient-frame points -> fractional (col,row) on the coarse grid"""
    Q = (np.asarray(P, float) - vg.O) @ vg.Rv.T + vg.O
    colf = (Q @ vg.eh - vg.h_left) / vg.hc - 0.5
    rowf = (Q @ vg.ev - vg.v_top) / vg.hc - 0.5
    return colf, rowf


def ray_origins(vg):
    Hc, Wc = vg.shape
    hcoord = vg.h_left + (np.arange(Wc) + 0.5) * vg.hc
    vcoord = vg.v_top + (np.arange(Hc) + 0.5) * vg.hc
    RvT = vg.Rv.T
    eh = RvT @ vg.eh
    ev = RvT @ vg.ev
    base = vg.O - RvT @ vg.O
    P = [(base[k] + eh[k] * hcoord[None, :] + ev[k] * vcoord[:, None]).astype(F32) for k in range(3)]
    d = RvT @ vg.er
    return P, d


def chord_ecyl(px, py, d, cx, cy, a, b):
    qx, qy = px - cx, py - cy
    A = (d[0] / a) ** 2 + (d[1] / b) ** 2
    B = 2 * (qx * d[0] / a ** 2 + qy * d[1] / b ** 2)
    C = (qx / a) ** 2 + (qy / b) ** 2 - 1
    disc = B * B - 4 * A * C
    return np.sqrt(np.maximum(disc, 0)) / A


def chord_ellipsoid(P, d, c, r, Rm=None):
    qx, qy, qz = P[0] - c[0], P[1] - c[1], P[2] - c[2]
    if Rm is not None:
        qx, qy, qz = (Rm[0, 0] * qx + Rm[1, 0] * qy + Rm[2, 0] * qz, Rm[0, 1] * qx + Rm[1, 1] * qy + Rm[2, 1] * qz,
                      Rm[0, 2] * qx + Rm[1, 2] * qy + Rm[2, 2] * qz)
        d = Rm.T @ d
    A = (d[0] / r[0]) ** 2 + (d[1] / r[1]) ** 2 + (d[2] / r[2]) ** 2
    B = 2 * (qx * d[0] / r[0] ** 2 + qy * d[1] / r[1] ** 2 + qz * d[2] / r[2] ** 2)
    C = (qx / r[0]) ** 2 + (qy / r[1]) ** 2 + (qz / r[2]) ** 2 - 1
    disc = B * B - 4 * A * C
    return np.sqrt(np.maximum(disc, 0)) / A


def soft_tissue(p, vg, c, specs):
    """lean / fat areal densities (g/cm2) from the analytic abdomen."""
    P, d = ray_origins(vg)
    px, py, pz = P
    zcr = p.Zcrest
    hip = 1 + p.hip_gain / (1 + np.exp(-(zcr - pz) / 25.0))
    chest = 1 + 0.03 / (1 + np.exp(-(pz - c[IDX['T12']][2]) / 30.0))
    W = p.W0 * hip * chest
    D = p.D0 * (1 + 0.04 * np.sin(pz / 150.0)) * (1 - 0.05 / (1 + np.exp(-(zcr - pz) / 25.0)))
    xc = p.Xb
    order = np.argsort(c[:, 2])
    zs_, xs_, ys_ = c[order, 2], c[order, 0], c[order, 1]
    spx = np.interp(pz, zs_, xs_)
    spy = np.interp(pz, zs_, ys_)
    butt = 1.0 / (1 + np.exp(-(zcr - 25 - pz) / 18.0))
    yback = spy - p.back_d - p.butt * butt
    D = D + 0.5 * p.butt * butt
    yc = yback + D
    c_out = chord_ecyl(px, py, d, xc, yc, W, D)
    sa, spo, sl = p.sf * 1.3, p.sf * 0.85, p.sf
    Wi = np.maximum(W - sl, 20)
    Di = np.maximum(D - (sa + spo) / 2, 20)
    c_in = chord_ecyl(px, py, d, xc, yc + (spo - sa) / 2, Wi, Di)
    v = p.visc
    lean = c_in * (1 - v) * 1.05
    fat = (c_out - c_in) * 0.92 + c_in * v * 0.92
    aL = np.interp(pz, zs_, np.array([s['a'] for s in specs])[order])

    def replace(ch, material):
        nonlocal lean, fat
        if material == 'lean':
            lean = lean + ch * v * 1.05
            fat = fat - ch * v * 0.92
        elif material == 'fat':
            lean = lean - ch * (1 - v) * 1.05
            fat = fat + ch * (1 - v) * 0.92
    inside = c_in > 0
    # spinal column + paraspinal muscles (lean)
    replace(chord_ecyl(px, py, d, spx, spy - 22, aL + 10, 62) * inside, 'lean')
    for sg in (-1, 1):
        replace(chord_ecyl(px, py, d, spx + sg * 38 * p.sw, spy - 62 * p.sw, 26 * p.sw, 24 * p.sw) * inside, 'lean')
    # psoas with a fat plane around it
    zL1, zL5 = c[IDX['L1']][2], c[IDX['L5']][2]
    fz = np.clip((zL1 - pz) / max(zL1 - zL5, 1), 0, 1.4)
    live = (pz < zL1 + 5)
    rpx = (6 + 18 * fz) * p.sw * p.psoas
    rpy = (8 + 18 * fz) * p.sw * p.psoas
    for sg in (-1, 1):
        cx = spx + sg * (aL + rpx * 0.8 - 2)
        cy = spy - 6 + np.maximum(zL5 - pz, 0) * 0.5
        replace(chord_ecyl(px, py, d, cx, cy, rpx + 4, rpy + 4) * live * inside, 'fat')
        ch = chord_ecyl(px, py, d, cx, cy, rpx, rpy) * live * inside
        lean = lean + ch * 1.05
        fat = fat - ch * 0.92
    # kidneys in perirenal fat, liver
    for (cc, r) in p.kidneys:
        ch_o = chord_ellipsoid(P, d, cc, r + 6)
        ch_k = chord_ellipsoid(P, d, cc, r)
        replace(ch_o, 'fat')
        lean = lean + ch_k * 1.05
        fat = fat - ch_k * 0.92
    replace(chord_ellipsoid(P, d, p.liver[0], p.liver[1]), 'lean')
    # gas (evaluated in the projected bounding box of each ellipsoid)
    Hc, Wc = vg.shape
    for (cc, r, fr, Rm) in p.gas_e:
        c_, r_ = to_view(vg, cc[None, :])
        rp = float(np.max(r)) / vg.hc + 3
        i0, i1 = int(max(0, r_[0] - rp)), int(min(Hc, r_[0] + rp + 1))
        j0, j1 = int(max(0, c_[0] - rp)), int(min(Wc, c_[0] + rp + 1))
        if i1 <= i0 or j1 <= j0:
            continue
        Ps = [P[0][i0:i1, j0:j1], P[1][i0:i1, j0:j1], P[2][i0:i1, j0:j1]]
        ch = chord_ellipsoid(Ps, d, cc, r, Rm) * fr
        lean[i0:i1, j0:j1] -= ch * (1 - v) * 1.05
        fat[i0:i1, j0:j1] -= ch * v * 0.92
    lean = np.maximum(lean, 0) / 10.0
    fat = np.maximum(fat, 0) / 10.0
    return lean.astype(F32), fat.astype(F32), (c_out / 10.0).astype(F32)


def draw_tubes(shape, vg, tubes, rho_c, rho_t, tc):
    """hollow bone tubes along 3-D polylines: distance to the whole projected polyline first, then
    the annulus chord profile (scaled by the out-of-plane obliquity of the nearest segment)."""
    out = np.zeros(shape, F32)
    Hc, Wc = shape
    for P, r in tubes:
        colf, rowf = to_view(vg, P)
        Q = (P - vg.O) @ vg.Rv.T
        rr_pts = np.broadcast_to(np.asarray(r, float), (len(P),))
        rp = float(rr_pts.max()) / vg.hc + 2
        c0 = int(max(0, math.floor(colf.min() - rp)))
        c1 = int(min(Wc, math.ceil(colf.max() + rp) + 1))
        r0 = int(max(0, math.floor(rowf.min() - rp)))
        r1 = int(min(Hc, math.ceil(rowf.max() + rp) + 1))
        if c1 <= c0 or r1 <= r0:
            continue
        cc = np.arange(c0, c1, dtype=F32)[None, :]
        rr = np.arange(r0, r1, dtype=F32)[:, None]
        dmin = np.full((r1 - r0, c1 - c0), 1e9, F32)
        obm = np.ones_like(dmin)
        rmap = np.full_like(dmin, float(rr_pts[0]))
        for k in range(len(P) - 1):
            a = (colf[k], rowf[k])
            b = (colf[k + 1], rowf[k + 1])
            if max(a[0], b[0]) < c0 - rp or min(a[0], b[0]) > c1 + rp:
                continue
            L2 = math.hypot(b[0] - a[0], b[1] - a[1]) * vg.hc
            L3 = float(np.linalg.norm(Q[k + 1] - Q[k]))
            obl = min(L3 / max(L2, 1e-3), 3.0)
            dd = seg2d_dist(cc, rr, a, b) * vg.hc
            sel = dd < dmin
            dmin[sel] = dd[sel]
            obm[sel] = obl
            rmap[sel] = 0.5 * (rr_pts[k] + rr_pts[k + 1])
        dd = dmin
        r = rmap
        ri = np.maximum(r - tc, 0.5)
        prof = (rho_c * 2 * (np.sqrt(np.maximum(r * r - dd * dd, 0)) - np.sqrt(np.maximum(ri * ri - dd * dd, 0)))
                + rho_t * 2 * np.sqrt(np.maximum(ri * ri - dd * dd, 0))) / 10.0 * obm
        np.maximum(out[r0:r1, c0:c1], prof.astype(F32), out=out[r0:r1, c0:c1])
    return out


# --------------------------------------------------------------------------------------------
# texture
# --------------------------------------------------------------------------------------------
def texture_patch(rng, n, pix_mm, ang, lam, aniso, coarse_amp):
    """zero-mean, unit-ish std trabecular texture on an n x n patch; structures elongated along
    the vertebral axis (angle ang of the axis w.r.t. image vertical)."""
    wn = rng.standard_normal((n, n)).astype(F32)
    Fw = np.fft.rfft2(wn)
    fy = np.fft.fftfreq(n, d=pix_mm)[:, None]
    fx = np.fft.rfftfreq(n, d=pix_mm)[None, :]
    ca, sa = math.cos(ang), math.sin(ang)
    f_ax = -fy * ca + fx * sa       # frequency along the vertebral axis (axis = (row,col)=(-ca,sa))
    f_pp = fy * sa + fx * ca
    f0 = 1.0 / lam
    r2 = (f_pp / f0) ** 2 + (f_ax * aniso / f0) ** 2
    filt = r2 * np.exp(-r2)
    t1 = np.fft.irfft2(Fw * filt, s=(n, n))
    t1 /= t1.std() + 1e-9
    fr = np.sqrt(fx ** 2 + fy ** 2)
    filt2 = np.exp(-0.5 * (fr * 4.0) ** 2) * (fr > 0)
    t2 = np.fft.irfft2(Fw * filt2 * np.exp(1j * 1.3), s=(n, n))
    t2 /= t2.std() + 1e-9
    return (t1 + coarse_amp * t2).astype(F32)


# --------------------------------------------------------------------------------------------
# vendors / processing
# --------------------------------------------------------------------------------------------
VENDORS = {
    'A': dict(manu='Aurelis Medical', model='AX-DR 4343', mod='DX', ps=0.148, det='CsI', det_wh=(430, 430),
              bits=12, chain='pyramid', crop=True, blank=True, mono1=0.15, blur=0.55, sw='AXP 7.2.1'),
    'B': dict(manu='Borealis Imaging', model='BX-300 Flex', mod='DX', ps=0.160, det='CsI', det_wh=(350, 430),
              bits=14, chain='usm', crop=False, blank=False, mono1=0.15, blur=0.65, sw='bx-core 3.11'),
    'C': dict(manu='Corvid Systems', model='CR-Vista 5', mod='CR', ps=None, det='BaFBr', det_wh=(350, 430),
              bits=10, chain='cr', crop=False, blank=True, mono1=0.5, blur=1.05, sw='CV5 v2.0.4'),
    'D': dict(manu='Deltaray', model='DR Compact 2', mod='DX', ps=0.194, det='GOS', det_wh=(350, 430),
              bits=16, chain='window', crop=False, blank=False, mono1=0.15, blur=0.8, sw='DRC-2 4.0'),
}
VENDOR_P = [('A', 0.25), ('B', 0.20), ('C', 0.33), ('D', 0.22)]
INSTITUTIONS = ['Northfield General Hospital', 'St. Aldric Clinic', 'Harbourview Imaging Centre',
                'Lindenmoor Medical Center', 'Riverside Orthopaedic Institute', 'Kestrel Valley Hospital']


def gblur(x, sigma):
    return ndi.gaussian_filter(x, sigma, mode='nearest', truncate=3.0)


def box(x, size):
    size = max(1, int(round(size)))
    return ndi.uniform_filter(x, size, mode='nearest')


def lap_pyramid(x, levels):
    g = [x]
    for _ in range(levels):
        sm = gblur(g[-1], 1.0)
        g.append(sm[::2, ::2].copy())
    lap = []
    for k in range(levels):
        up = ndi.zoom(g[k + 1], 2, order=1, grid_mode=True, mode='nearest')[:g[k].shape[0], :g[k].shape[1]]
        if up.shape != g[k].shape:
            up = np.pad(up, ((0, g[k].shape[0] - up.shape[0]), (0, g[k].shape[1] - up.shape[1])), mode='edge')
        lap.append(g[k] - up)
    return lap, g[-1]


def lap_collapse(lap, res):
    x = res
    for k in range(len(lap) - 1, -1, -1):
        up = ndi.zoom(x, 2, order=1, grid_mode=True, mode='nearest')
        sh = lap[k].shape
        up = up[:sh[0], :sh[1]]
        if up.shape != sh:
            up = np.pad(up, ((0, sh[0] - up.shape[0]), (0, sh[1] - up.shape[1])), mode='edge')
        x = up + lap[k]
    return x


def process(raw, field, vend, rng, ps, air_level):
    """raw: linear detector signal (quanta); field: bool collimated area. returns stored ints (MONO2
    convention: bone bright), window centre/width, extra tags"""
    chain = vend['chain']
    maxv = (1 << vend['bits']) - 1
    att = -np.log(np.maximum(raw, 0.5)).astype(F32)   # larger = more attenuation
    # histogram analysis restricted to anatomy: inside the field and clearly attenuated
    amask = field & (att > -math.log(air_level) + 0.45)
    if amask.sum() < 0.05 * amask.size:
        amask = field if field.any() else np.ones_like(field)
    # exposure recognition weights the centre of the field (where the spine is)
    rr_, cc_ = np.nonzero(field) if field.any() else np.nonzero(np.ones_like(field))
    r0_, r1_ = np.percentile(rr_, [15, 85]).astype(int)
    c0_, c1_ = np.percentile(cc_, [20, 80]).astype(int)
    cmask = np.zeros_like(amask)
    cmask[r0_:r1_, c0_:c1_] = True
    afull = amask
    if (amask & cmask).sum() > 0.02 * amask.size:
        amask = amask & cmask
    # spine band (centre columns) anchors the LUT centre, the anatomy histogram sets the width
    c0s, c1s = np.percentile(cc_, [40, 60]).astype(int)
    smask = np.zeros_like(amask)
    smask[r0_:r1_, c0s:c1s] = True
    smask &= field
    if smask.sum() < 1000:
        smask = amask
    anat = att[afull]
    lo, hi = np.percentile(anat, [0.8, 99.7])
    hi = max(hi, lo + 0.5)
    spine_c = float(np.median(att[smask]))
    x = 0.5 + (att - spine_c) / (hi - lo) + rng.normal(0, 0.03)
    # shutter handling: the unexposed border is replaced by the anatomy median before any filtering
    x = np.where(field, x, np.median(x[amask])).astype(F32)
    tags = {}
    if chain == 'pyramid':
        nlev = 7
        lap, res = lap_pyramid(x.astype(F32), nlev)
        gains = [rng.uniform(0.75, 1.0), rng.uniform(1.3, 1.8), rng.uniform(1.5, 2.2), rng.uniform(1.3, 1.9),
                 rng.uniform(1.0, 1.4), rng.uniform(0.7, 1.0), rng.uniform(0.5, 0.8)]
        d0 = 0.03
        for k in range(nlev):
            dk = lap[k]
            lap[k] = gains[k] * dk / (1 + np.abs(dk) / (d0 * (1 + k)))
        comp = rng.uniform(0.35, 0.55)
        res = (res - res.mean()) * comp + res.mean()
        y = lap_collapse(lap, res)
        c0 = np.median(y[smask]) - rng.uniform(0.0, 0.06)
        w = rng.uniform(0.16, 0.24) * (np.percentile(y[afull], 99) - np.percentile(y[afull], 1)) / 0.8
        out = maxv / (1 + np.exp(-(y - c0 - rng.normal(0, 0.03)) / w))
        tags['wc'], tags['ww'] = (maxv + 1) / 2, maxv + 1
    elif chain == 'usm':
        mm = 1.0 / ps
        a_drc = rng.uniform(0.6, 0.85)
        kb = rng.uniform(35, 55)
        big = box(box(x, kb * mm), kb * mm)
        x1 = x - a_drc * (big - np.median(big[amask]))
        b_usm = rng.uniform(0.7, 1.4)
        x2 = x1 + b_usm * (x1 - box(x1, rng.uniform(2.0, 3.5) * mm))
        l2, h2 = np.percentile(x2[afull], [1.0, 99.5])
        z = np.clip(0.5 + (x2 - np.median(x2[smask])) / (h2 - l2) * rng.uniform(0.9, 1.15), -0.15, 1.15)
        g = rng.uniform(1.5, 2.6)
        yv = 0.5 + 0.5 * np.tanh((z - 0.5) * g) / math.tanh(0.5 * g)
        out = maxv * np.clip(0.03 + 0.94 * yv, 0, 1)
        lo_o, hi_o = np.percentile(out[afull], [0.5, 99.5])
        tags['wc'], tags['ww'] = round((lo_o + hi_o) / 2), round((hi_o - lo_o) * 1.05)
    elif chain == 'cr':
        # latitude-limited log readout (10 bit), exposure recognition, film-like LUT, mild USM
        lat = rng.choice([2.0, 2.5, 4.0])
        med = np.median(att[amask])
        q = np.clip(0.5 + (att - med) / (lat * math.log(10)), 0, 1)
        q = np.where(field, q, np.median(q[amask]))
        mm = 1.0 / ps
        big = box(box(q, 40 * mm), 40 * mm)
        q = q - rng.uniform(0.45, 0.75) * (big - np.median(big[amask]))
        q = q + rng.uniform(0.3, 0.7) * (q - gblur(q, 1.5 * mm))
        ql, qh = np.percentile(q[afull], [2.0, 99.0])
        z = 0.5 + (q - np.median(q[smask])) / (qh - ql) * rng.uniform(0.9, 1.2)
        g = rng.uniform(2.4, 3.6)
        out = maxv * (1 / (1 + np.exp(-g * (z - 0.5))) - 1 / (1 + np.exp(g / 2))) / (1 - 2 / (1 + np.exp(g / 2)))
        tags['wc'], tags['ww'] = 512, 1024
        tags['s_value'] = int(np.clip(200 * 400 * (ps / 0.15) ** 2 / math.exp(-med), 20, 4000))
    else:  # 'window': light processing, big dynamic range, window in the header
        sm = gblur(att, 0.6)
        mm = 1.0 / ps
        big = box(box(sm, 40 * mm), 40 * mm)
        sm = sm - rng.uniform(0.2, 0.45) * (big - np.median(big[amask]))
        y = sm + rng.uniform(0.2, 0.5) * (sm - gblur(sm, 1.2 * mm))
        scale = rng.uniform(5000, 9000)
        base = np.percentile(y[field], 0.2) if field.any() else y.min()
        out = (y - base) * scale + rng.uniform(800, 3000)
        out = np.clip(out, 0, maxv)
        lo_o, hi_o = np.percentile(out[afull], [1, 99.5])
        tags['wc'] = round(np.median(out[smask]) + rng.normal(0, 0.03) * (hi_o - lo_o))
        tags['ww'] = round((hi_o - lo_o) * rng.uniform(0.75, 1.0))
    out = np.clip(np.nan_to_num(out), 0, maxv)
    # unexposed (collimated) area: nearly white in this bone-bright convention
    white = min(maxv, np.percentile(out[amask], 99.8) + 0.02 * maxv)
    out = np.where(field, out, white * (1 - 0.01 * np.clip(1 - att / max(att.max(), 1e-6), 0, 1)))
    return out, maxv, tags


# --------------------------------------------------------------------------------------------
# rendering one view
# --------------------------------------------------------------------------------------------
def render_view(p, view, rng, study, debug=None):
    vend = study['vend']
    ps = study['ps']
    # acquisition geometry
    sid = float(rng.choice([1000, 1100, 1150, 1200])) if view == 'AP' else float(rng.choice([1000, 1100, 1150]))
    if view == 'AP':
        oid = (p.D0 - p.Yb) + 60  # spine height above the detector (supine, table bucky)
    else:
        oid = p.W0 + 60
    mag = sid / (sid - oid)
    k = max(2, int(round(0.5 * mag / ps)))
    hc = ps * k / mag
    detw, deth = vend['det_wh']
    # collimated field (detector mm) and image matrix
    if view == 'AP':
        fw = rng.uniform(200, min(detw, 330))
    else:
        fw = rng.uniform(210, min(detw, 320))
    fh = rng.uniform(0.84, 0.99) * deth
    if vend['crop']:
        mw = min(detw, max(fw + 2 * rng.uniform(4, 14), 1510 * ps))
        mh = min(deth, max(fh + 2 * rng.uniform(4, 14), 1510 * ps))
    else:
        mw, mh = detw, deth
    Wc = int(mw / (ps * k))
    Hc = int(mh / (ps * k))
    Wc = min(Wc, 3000 // k)
    Hc = min(Hc, 3000 // k)
    vg = ViewGeom()
    vg.shape = (Hc, Wc)
    vg.hc = hc
    vg.O = np.zeros(3)
    if view == 'AP':
        vg.eh = np.array([1.0, 0, 0])
        vg.er = np.array([0, 1.0, 0])
        gam = rng.normal(0, 3.0)
        beta = rng.normal(0, 1.5)
        hcen = rng.normal(0, 9)
    else:
        flip = rng.random() < 0.15
        vg.eh = np.array([0, 1.0 if flip else -1.0, 0])
        vg.er = np.array([1.0, 0, 0])
        gam = rng.normal(0, 4.0)
        beta = rng.normal(0, 3.0)
        hcen = rng.normal(14, 9) * (-1 if flip else 1)   # centre slightly posterior to the bodies
    vg.flip = view == 'LAT' and vg.eh[1] > 0
    vg.ev = np.array([0, 0, -1.0])
    vg.Rv = rot_axis(vg.er, rad(beta)) @ rot_z(rad(gam))
    zc = 0.5 * (p.c[IDX['T12']][2] + p.c[IDX['S2']][2]) + rng.normal(0, 12)
    spine_h = p.c[IDX['L3']] @ vg.eh
    vg.h_left = spine_h + hcen - Wc * hc / 2
    vg.v_top = -zc - Hc * hc / 2
    shape = vg.shape
    # --- bone maps
    Mc = np.zeros(shape)
    Mt = np.zeros(shape)
    vox_cm = (VOX / 10.0) ** 3 / (hc / 10.0) ** 2
    centers = []
    for i, bone in enumerate(p.bones):
        R = p.R[i]
        colf, rowf = to_view(vg, bone['pts'] @ R.T + p.c[i])
        Mc += splat(shape, colf, rowf, bone['cort'] * (p.rho_c * vox_cm))
        Mt += splat(shape, colf, rowf, bone['trab'] * (p.rho_t * vox_cm))
        cc, rc = to_view(vg, p.c[i][None, :])
        ax_c, ax_r = to_view(vg, (p.c[i] + R[:, 2] * 10)[None, :])
        ang = math.atan2(ax_c[0] - cc[0], -(ax_r[0] - rc[0]))
        s = bone['spec']
        half_w = s['a'] if view == 'AP' else s['b']
        centers.append((cc[0], rc[0], ang, half_w / hc, (s['H'] / 2 + s['d_above'] / 2) / hc, i))
    colf, rowf = to_view(vg, p.pel_pts)
    Mc += gblur(splat(shape, colf, rowf, p.pel_mass / (hc / 10.0) ** 2), 0.7)
    Mc += draw_tubes(shape, vg, p.ribs, p.rho_c, p.rho_t * 0.8, p.tcp)
    Mc += draw_tubes(shape, vg, [(cp[::6], 5.0 * p.sw) for cp in p.crest], p.rho_c, p.rho_t, 1.6 * p.qc)
    if len(p.ao_pts):
        colf, rowf = to_view(vg, p.ao_pts)
        Mc += splat(shape, colf, rowf, p.ao_mass / (hc / 10.0) ** 2)
    if p.bone_island:
        cc, rc = to_view(vg, p.island[None, :])
        rr, cg = np.ogrid[:shape[0], :shape[1]]
        Mc += 0.25 * np.exp(-((rr - rc[0]) ** 2 + (cg - cc[0]) ** 2) / (2 * (p.island_r / hc) ** 2))
    Mc = Mc.astype(F32)
    Mt = Mt.astype(F32)
    lean, fat, thick = soft_tissue(p, vg, p.c, p.specs)
    # --- technique
    bmi_k = (p.bmi - 25)
    if view == 'AP':
        kvp = float(np.clip(round(rng.uniform(72, 84) + 0.5 * bmi_k), 65, 95))
    else:
        kvp = float(np.clip(round(rng.uniform(84, 98) + 0.6 * bmi_k), 75, 110))
    al = rng.uniform(2.5, 4.0)
    cu = float(rng.choice([0.0, 0.0, 0.1, 0.2])) if vend['mod'] == 'DX' else 0.0
    E, w = spectrum(kvp, al + 0.8, cu, vend['det'])   # +0.8 mm Al for table/bucky front
    muL, muF, muH = mu('lean', E), mu('fat', E), mu('HA', E)
    Mh = Mc + Mt
    acc = np.zeros(shape, np.float64)
    accH = np.zeros(shape, np.float64)
    for j in range(len(E)):
        tj = w[j] * np.exp(-(muL[j] * lean + muF[j] * fat + muH[j] * Mh))
        acc += tj
        accH += tj * muH[j]
    Pc = acc.astype(F32)
    muHe = (accH / np.maximum(acc, 1e-30)).astype(F32)
    # --- collimation (object units on coarse grid)
    rr, cg = np.mgrid[:shape[0], :shape[1]].astype(F32)
    ych = (rr + 0.5) * hc - Hc * hc / 2
    xch = (cg + 0.5) * hc - Wc * hc / 2
    cang = rad(rng.normal(0, 1.0))
    fcx = rng.normal(0, 6) / mag
    fcy = rng.normal(0, 6) / mag
    xr = (xch - fcx) * math.cos(cang) + (ych - fcy) * math.sin(cang)
    yr = -(xch - fcx) * math.sin(cang) + (ych - fcy) * math.cos(cang)
    pen = 1.2 / mag
    colm = (1 / (1 + np.exp(-(fw / mag / 2 - np.abs(xr)) / pen))) * (1 / (1 + np.exp(-(fh / mag / 2 - np.abs(yr)) / pen)))
    # heel effect along the vertical
    heel_amp = rng.uniform(-0.22, 0.22)
    heel = 1 + heel_amp * (ych / (Hc * hc / 2))
    # --- scatter (kernel model) and grid
    grid = rng.random() < (0.9 if view == 'AP' else 0.95) or p.bmi > 28
    tw = lean / 1.05 + fat * 0.95 + 1.9 * Mh     # water-equivalent cm
    kspr = 0.20 * (1 + (80 - kvp) * 0.003)
    src = Pc * heel * colm * kspr * tw
    f8 = max(1, int(round(4.0 / hc)))
    H8, W8 = shape[0] // f8 * f8, shape[1] // f8 * f8
    small = src[:H8, :W8].reshape(H8 // f8, f8, W8 // f8, f8).mean(axis=(1, 3))
    sc = 0.6 * ndi.gaussian_filter(small, 32 / (hc * f8), mode='nearest') + \
        0.4 * ndi.gaussian_filter(small, 95 / (hc * f8), mode='nearest')
    S = ndi.zoom(sc, (shape[0] / sc.shape[0], shape[1] / sc.shape[1]), order=1, grid_mode=True, mode='nearest')
    Tp, Ts = ((0.70, rng.uniform(0.08, 0.16)) if grid else (1.0, 1.0))
    # off-focal leakage outside the field
    prim = Pc * heel * (colm + 0.012 * (1 - colm))
    det_c = prim * Tp + S.astype(F32) * Ts
    # AEC: central chamber over the spine
    ch0, ch1 = int(shape[0] * 0.45), int(shape[0] * 0.6)
    spc = int(np.clip((spine_h - vg.h_left) / hc - (0 if view == 'AP' else 0), 10, shape[1] - 10))
    half = int(30 / hc)
    roi = det_c[ch0:ch1, max(0, spc - half):spc + half]
    aec_err = rng.lognormal(0, 0.12 if vend['mod'] == 'DX' else 0.25)
    q_target = (rng.uniform(700, 2000) if vend['mod'] == 'DX' else rng.uniform(400, 1000)) * (ps / 0.15) ** 2
    N0 = q_target * aec_err / max(float(roi.mean()), 1e-9)
    # --- full resolution
    Hf, Wf = shape[0] * k, shape[1] * k

    def up(a, order=1):
        return ndi.zoom(a, k, order=order, grid_mode=True, mode='nearest').astype(F32)

    lnP = up(np.log(np.maximum(Pc, 1e-12)), order=3)
    # trabecular texture
    Mt_f = up(Mt)
    tex = np.zeros((Hf, Wf), F32)
    best = np.full((Hf, Wf), 9.0, F32)
    pix_o = ps / mag
    for (cc, rc, ang, hw, hh, i) in centers:
        s = p.specs[i]
        rad_px = int(max(hw, hh) * k * 1.5) + 8
        n = int(2 * rad_px)
        r0 = int(rc * k + k / 2) - n // 2
        c0 = int(cc * k + k / 2) - n // 2
        rs0, rs1 = max(r0, 0), min(r0 + n, Hf)
        cs0, cs1 = max(c0, 0), min(c0 + n, Wf)
        if rs1 <= rs0 or cs1 <= cs0:
            continue
        tp = texture_patch(rng, n, pix_o, ang, p.tex_lam, p.tex_aniso, 0.35)
        yy, xx = np.mgrid[rs0:rs1, cs0:cs1].astype(F32)
        dy = (yy - (rc * k + k / 2)) / k
        dx = (xx - (cc * k + k / 2)) / k
        ca, sa = math.cos(ang), math.sin(ang)
        du = dx * ca + dy * sa       # across the vertebral axis
        dv = dx * sa - dy * ca       # along the axis (towards cranial)
        dn = np.sqrt((du / max(hw * 2.2, 1)) ** 2 + (dv / max(hh, 1)) ** 2)
        sub_best = best[rs0:rs1, cs0:cs1]
        sel = dn < sub_best
        sub_best[sel] = dn[sel]
        tex[rs0:rs1, cs0:cs1][sel] = tp[rs0 - r0:rs1 - r0, cs0 - c0:cs1 - c0][sel]
    lnP += -up(muHe) * Mt_f * tex * p.tex_amp
    P_f = np.exp(lnP)
    # collimation / heel at full res (recomputed analytically for sharp penumbra)
    rr = (np.arange(Hf, dtype=F32) + 0.5) * (hc / k) - Hf * (hc / k) / 2
    cg = (np.arange(Wf, dtype=F32) + 0.5) * (hc / k) - Wf * (hc / k) / 2
    xr = (cg[None, :] - fcx) * math.cos(cang) + (rr[:, None] - fcy) * math.sin(cang)
    yr = -(cg[None, :] - fcx) * math.sin(cang) + (rr[:, None] - fcy) * math.cos(cang)
    colm_f = (1 / (1 + np.exp(-(fw / mag / 2 - np.abs(xr)) / pen))) * (1 / (1 + np.exp(-(fh / mag / 2 - np.abs(yr)) / pen)))
    field = colm_f > 0.5
    heel_f = 1 + heel_amp * (rr[:, None] / (Hf * (hc / k) / 2))
    prim_f = P_f * heel_f * (colm_f + 0.012 * (1 - colm_f))
    # lead marker (R/L) inside the field
    marker_letter = ('R' if rng.random() < 0.6 else 'L') if view == 'AP' else ('L' if rng.random() < 0.85 else 'R')
    mk = marker_mask(rng, Hf, Wf, ps, field, marker_letter, view, vg)
    prim_f = prim_f * (1 - 0.985 * mk['letter']) * (1 - 0.08 * mk['block'])
    sig = (prim_f * Tp + up(S) * Ts) * N0
    noisy = sig + np.sqrt(np.maximum(sig, 0)) * rng.standard_normal(sig.shape, dtype=F32)
    blur = vend['blur'] * rng.uniform(0.9, 1.15)
    raw = gblur(noisy, blur) + 2.5 * rng.standard_normal(sig.shape, dtype=F32)
    raw = np.maximum(raw, 0.5)
    out, maxv, tags = process(raw, field, vend, rng, ps, N0 * Tp)
    if vend['blank']:
        fillv = 0 if rng.random() < 0.75 else maxv
        out = np.where(field, out, fillv)
        tags['blanked'] = True
    info = dict(kvp=kvp, mag=mag, sid=sid, grid=grid, ps=ps, N0=N0, q_target=q_target, marker=marker_letter,
                mas=float(np.round(0.9e-4 * N0 / (ps / 0.15) ** 2 / Tp * (sid / 1000.0) ** 2 / (kvp / 80.0) ** 2.5, 1)),
                flip=vg.flip, al=al, cu=cu)
    info.update(tags)
    # DXA-like check of projected mineral before processing (L1-L4 bodies)
    bm = []
    for (cc, rc, ang, hw, hh, i) in centers:
        if p.specs[i]['level'] in ('L1', 'L2', 'L3', 'L4'):
            r0, r1 = int(rc - hh * 0.8), int(rc + hh * 0.8)
            c0, c1 = int(cc - hw * 0.8), int(cc + hw * 0.8)
            if r0 >= 0 and c0 >= 0 and r1 < shape[0] and c1 < shape[1]:
                bm.append(float(Mh[r0:r1, c0:c1].mean()))
    info['body_mineral'] = float(np.mean(bm)) if bm else float('nan')
    if debug is not None:
        debug.update(dict(Mc=Mc, Mt=Mt, lean=lean, fat=fat, Pc=Pc))
    return out, maxv, info, field


def marker_mask(rng, Hf, Wf, ps, field, letter, view, vg):
    size_mm = rng.uniform(11, 17)
    px = int(size_mm / ps)
    font = ImageFont.load_default(size=int(px * 1.15))
    box_px = int(px * 1.45)
    img = Image.new('L', (box_px, box_px), 0)
    d = ImageDraw.Draw(img)
    d.text((box_px / 2, box_px / 2), letter, fill=255, font=font, anchor='mm')
    if rng.random() < 0.3:
        img = img.rotate(rng.uniform(-12, 12), resample=Image.BILINEAR)
    let = np.asarray(img, F32) / 255.0
    rows = np.nonzero(field.any(axis=1))[0]
    cols = np.nonzero(field.any(axis=0))[0]
    if len(rows) == 0:
        rows, cols = np.arange(Hf), np.arange(Wf)
    # patient right on image left in AP: R marker left, L marker right
    if view == 'AP':
        left = letter == 'R'
    else:
        left = rng.random() < 0.5
    m = int(rng.uniform(6, 18) / ps)
    r0 = int(rows[0] + m + rng.uniform(0, 0.12) * len(rows))
    if rng.random() < 0.35:
        r0 = int(rows[-1] - m - box_px - rng.uniform(0, 0.1) * len(rows))
    c0 = int(cols[0] + m) if left else int(cols[-1] - m - box_px)
    L = np.zeros((Hf, Wf), F32)
    B = np.zeros((Hf, Wf), F32)
    r0 = int(np.clip(r0, 0, Hf - box_px))
    c0 = int(np.clip(c0, 0, Wf - box_px))
    L[r0:r0 + box_px, c0:c0 + box_px] = let
    B[r0:r0 + box_px, c0:c0 + box_px] = 1.0
    return dict(letter=L, block=B)


# --------------------------------------------------------------------------------------------
# annotations + DICOM
# --------------------------------------------------------------------------------------------
def burn_text(out, maxv, lines_tl, lines_br, big, ps, rng, white_box):
    Hf, Wf = out.shape
    fs = int(np.clip(Hf * rng.uniform(0.011, 0.016), 14, 60))
    font = ImageFont.load_default(size=fs)
    fbig = ImageFont.load_default(size=int(fs * 1.8))
    mask = Image.new('L', (Wf, Hf), 0)
    bg = Image.new('L', (Wf, Hf), 0)
    d = ImageDraw.Draw(mask)
    db = ImageDraw.Draw(bg)
    mx, my = int(Wf * 0.02), int(Hf * 0.015)
    y = my
    for t in lines_tl:
        bb = d.textbbox((mx, y), t, font=font)
        if white_box:
            db.rectangle((bb[0] - 3, bb[1] - 3, bb[2] + 3, bb[3] + 3), fill=255)
        d.text((mx, y), t, fill=255, font=font)
        y += int(fs * 1.25)
    y = Hf - my - int(fs * 1.25) * len(lines_br)
    for t in lines_br:
        bb = d.textbbox((0, 0), t, font=font)
        x = Wf - mx - (bb[2] - bb[0])
        if white_box:
            db.rectangle((x - 3, y - 3, x + bb[2] - bb[0] + 3, y + bb[3] - bb[1] + 6), fill=255)
        d.text((x, y), t, fill=255, font=font)
        y += int(fs * 1.25)
    if big:
        bb = d.textbbox((0, 0), big, font=fbig)
        d.text((Wf - mx - (bb[2] - bb[0]), my), big, fill=255, font=fbig)
    m = np.asarray(mask, F32) / 255.0
    b = np.asarray(bg, F32) / 255.0
    out = out * (1 - b)                  # black box behind text
    out = out * (1 - m) + maxv * m       # white text
    return out


def fmt_ds(x):
    s = ("%.6f" % x).rstrip('0').rstrip('.')
    return s


def make_uid(seed, *parts):
    return generate_uid(prefix=UID_ROOT, entropy_srcs=["phantom_v", str(seed)] + [str(x) for x in parts])


def write_dicom(path, img, p, study, view, info, maxv, mono1, seed, series_no):
    vend = study['vend']
    is_dx = vend['mod'] == 'DX'
    sop_class = '1.2.840.10008.5.1.4.1.1.1.1' if is_dx else '1.2.840.10008.5.1.4.1.1.1'
    sop_uid = make_uid(seed, p.pid, view, 'sop')
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = sop_class
    fm.MediaStorageSOPInstanceUID = sop_uid
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    fm.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = fm
    ds.SpecificCharacterSet = 'ISO_IR 100'
    ds.ImageType = ['DERIVED', 'PRIMARY'] if is_dx else ['ORIGINAL', 'PRIMARY']
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = study['date']
    ds.SeriesDate = study['date']
    ds.ContentDate = study['date']
    ds.StudyTime = study['time']
    tt = int(study['time'][:2]) * 3600 + int(study['time'][2:4]) * 60 + int(study['time'][4:]) + 75 * series_no
    t_series = "%02d%02d%02d" % (tt // 3600, (tt // 60) % 60, tt % 60)
    ds.SeriesTime = t_series
    ds.ContentTime = t_series
    ds.AccessionNumber = study['acc']
    ds.Modality = vend['mod']
    if is_dx:
        ds.PresentationIntentType = 'FOR PRESENTATION'
    ds.Manufacturer = vend['manu']
    ds.InstitutionName = study['inst']
    ds.ReferringPhysicianName = ''
    ds.StationName = study['station']
    ds.StudyDescription = study['study_desc']
    view_txt = 'AP' if view == 'AP' else 'LAT'
    ds.SeriesDescription = study['series_fmt'].format(v=view_txt)
    ds.ManufacturerModelName = vend['model']
    ds.PatientName = 'PHANTOM^%s' % p.pid.replace('-', '_')
    ds.PatientID = p.pid
    ds.PatientBirthDate = study['birth']
    ds.PatientSex = p.sex
    ds.PatientAge = '%03dY' % p.age
    ds.PatientSize = fmt_ds(round(p.height / 100.0, 2))
    ds.PatientWeight = fmt_ds(round(p.bmi * (p.height / 100.0) ** 2, 1))
    ds.BodyPartExamined = 'LSPINE'
    ds.ProtocolName = study['protocol'].format(v=view_txt)
    ds.KVP = fmt_ds(info['kvp'])
    ds.DistanceSourceToDetector = fmt_ds(info['sid'])
    ds.Exposure = int(round(info['mas']))
    ds.ExposureInuAs = int(round(info['mas'] * 1000))
    ds.DeviceSerialNumber = study['serial']
    ds.SoftwareVersions = vend['sw']
    if is_dx:
        ds.Grid = ['FOCUSED', 'RECIPROCATING'] if info['grid'] else ['NONE']
        ds.DetectorType = 'INDIRECT'
        ds.ExposureIndex = fmt_ds(round(info['q_target'] / (info['ps'] / 0.15) ** 2 * 0.35, 0))
        ds.TargetExposureIndex = fmt_ds(400.0)
        ds.DeviationIndex = fmt_ds(round(10 * math.log10(float(ds.ExposureIndex) / 400.0), 1))
    else:
        ds.Grid = ['FOCUSED'] if info['grid'] else ['NONE']
        ds.PlateType = 'ST-VI'
        if 's_value' in info:
            ds.RelativeXRayExposure = info['s_value']
    if is_dx or study['cr_viewpos']:
        ds.ViewPosition = 'AP' if view == 'AP' else 'LATERAL'
    if view == 'AP':
        ds.PatientOrientation = ['L', 'F']
    else:
        ds.PatientOrientation = ['A' if info['flip'] else 'P', 'F']
    ds.StudyInstanceUID = study['study_uid']
    ds.SeriesInstanceUID = make_uid(seed, p.pid, view, 'series')
    ds.StudyID = study['study_id']
    ds.SeriesNumber = series_no
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = 1
    if is_dx:
        ds.ImageLaterality = 'U'
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = 'MONOCHROME1' if mono1 else 'MONOCHROME2'
    ds.Rows, ds.Columns = img.shape
    ps = info['ps']
    if is_dx:
        ds.ImagerPixelSpacing = [fmt_ds(ps), fmt_ds(ps)]
        if study['calib_ps']:
            ps_cal = ps / info['mag']
            ds.PixelSpacing = [fmt_ds(round(ps_cal, 6)), fmt_ds(round(ps_cal, 6))]
            ds.PixelSpacingCalibrationType = 'GEOMETRY'
            ds.EstimatedRadiographicMagnificationFactor = fmt_ds(round(info['mag'], 4))
        else:
            ds.PixelSpacing = [fmt_ds(ps), fmt_ds(ps)]
    else:
        ds.PixelSpacing = [fmt_ds(ps), fmt_ds(ps)]
    bits = vend['bits']
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if is_dx:
        ds.PixelIntensityRelationship = 'LOG'
        ds.PixelIntensityRelationshipSign = 1 if mono1 else -1
        ds.RescaleIntercept = '0'
        ds.RescaleSlope = '1'
        ds.RescaleType = 'US'
    wc, ww = info['wc'], info['ww']
    if mono1:
        wc = maxv - wc
    ds.WindowCenter = fmt_ds(wc)
    ds.WindowWidth = fmt_ds(max(ww, 2))
    if vend['chain'] == 'pyramid':
        ds.VOILUTFunction = 'SIGMOID' if study['sigmoid'] else 'LINEAR'
    ds.LossyImageCompression = '00'
    ds.BurnedInAnnotation = 'YES'
    ds.PixelData = img.astype('<u2').tobytes()
    ds.save_as(path, enforce_file_format=True)
    return sop_uid


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------
def build_patient_geometry(p, rng):
    p.specs = vertebra_specs(p, rng)
    p.c, p.R = spine_chain(p, p.specs, rng)
    p.bones = [build_bone(s) for s in p.specs]
    # --- density calibration: DXA-like AP ROI over non-fractured L1-L4 (local frame)
    rho_c0 = 1.05 * p.qc ** 0.35
    rho_t0 = 0.185 * p.qt
    Sc = St = A = 0.0
    levs = [lv for lv in ('L1', 'L2', 'L3', 'L4') if lv not in p.fract] or ['L1', 'L2', 'L3', 'L4']
    vcm = (VOX / 10.0) ** 3
    for lv in levs:
        b = p.bones[IDX[lv]]
        s = b['spec']
        pts = b['pts']
        z0 = -s['H'] / 2 - s['d_below'] / 2
        z1 = s['H'] / 2 + s['d_above'] / 2
        m = (np.abs(pts[:, 0]) <= s['a']) & (pts[:, 2] >= z0) & (pts[:, 2] <= z1)
        Sc += b['cort'][m].sum() * vcm
        St += b['trab'][m].sum() * vcm
        A += (2 * s['a'] / 10.0) * ((z1 - z0) / 10.0)
    nominal = (rho_c0 * Sc + rho_t0 * St) / A
    p.cal_scale = p.bmd / nominal
    p.rho_c = rho_c0 * p.cal_scale
    p.rho_t = rho_t0 * p.cal_scale
    p.tcp = p.specs[0]['tcp']
    # --- soft tissue placement (relative to L3 centre)
    b3 = p.specs[IDX['L3']]
    back_to_tip = 10 + p.sf * 0.85
    tip = b3['b'] + (0.45 * b3['b'] + 2) + (9 + 0.1 * b3['a']) + b3['Ls'] + 3
    p.back_d = tip + back_to_tip
    p.Yb = -p.back_d + p.D0
    p.butt = rng.uniform(15, 35) * (1.3 if p.sex == 'F' else 0.9) + 0.8 * max(p.bmi - 25, 0)
    p.Xb = rng.normal(0, 6)
    iS1 = IDX['S1']
    p.Zcrest = p.c[iS1][2] + 55 * p.sh
    p.psoas = rng.normal(1.0, 0.12) * (1.1 if p.sex == 'M' else 0.95) * (1 - 0.004 * max(p.age - 50, 0))
    zL1, zL2 = p.c[IDX['L1']][2], p.c[IDX['L2']][2]
    p.kidneys = []
    for sg, dz in ((1, 0.0), (-1, -15.0)):
        cc = np.array([sg * (55 + 0.12 * p.W0), p.c[IDX['L1']][1] - 12, 0.5 * (zL1 + zL2) + dz + rng.normal(0, 10)])
        p.kidneys.append((cc, np.array([28, 24, 52]) * p.sw * rng.normal(1, 0.06)))
    p.liver = (np.array([-0.45 * p.W0, p.Yb + 0.1 * p.D0, p.c[IDX['T12']][2] + 70 + rng.normal(0, 20)]),
               np.array([0.55 * p.W0, 0.75 * p.D0, 95.0]))
    p.gas_e = gas_list(p, p.c, p.specs, rng)
    # --- pelvis, ribs, aorta
    tcpel = 1.3 * p.qc
    p.pel_pts, p.pel_mass, p.crest, _ = pelvis_points(p, p.c[iS1], p.R[iS1], rng, p.rho_c, p.rho_t * 0.9, tcpel)
    p.ribs = rib_polylines(p, p.c, p.R, rng)
    p.ao_pts, p.ao_mass = aorta_points(p, p.c, p.specs, rng, 0.6)
    if p.bone_island:
        i = IDX[str(rng.choice(['L2', 'L3', 'L4', 'S1']))]
        p.island = p.c[i] + np.array([rng.uniform(-10, 10), rng.uniform(-8, 8), rng.uniform(-6, 6)])
        p.island_r = rng.uniform(1.5, 3.5)
    # texture parameters: coarser, more anisotropic and more contrasted with trabecular loss
    loss = float(np.clip(1 - p.qt, -0.3, 0.85))
    p.tex_lam = 1.1 * (1 + 0.6 * loss) * rng.lognormal(0, 0.12)
    p.tex_aniso = (1.4 + 2.4 * max(loss, 0)) * rng.lognormal(0, 0.15)
    p.tex_amp = (0.07 + 0.14 * max(loss, 0)) * rng.lognormal(0, 0.2)


def vendor_plan(n, master):
    """stratified vendor assignment: counts follow VENDOR_P (largest remainder), order shuffled"""
    keys = [k for k, _ in VENDOR_P]
    quota = np.array([pr for _, pr in VENDOR_P]) * n
    cnt = np.floor(quota).astype(int)
    for j in np.argsort(-(quota - cnt))[:n - cnt.sum()]:
        cnt[j] += 1
    plan = [k for k, c in zip(keys, cnt) for _ in range(c)]
    master.shuffle(plan)
    return plan


def make_study(rng, p, seed, idx, vkey):
    vend = dict(VENDORS[vkey])
    if vend['ps'] is None:
        vend['ps'] = float(rng.choice([0.175, 0.2]))
    st = {}
    st['vend'] = vend
    st['ps'] = vend['ps']
    y = int(rng.integers(2015, 2025))
    doy = int(rng.integers(0, 365))
    base = np.datetime64('%d-01-01' % y) + np.timedelta64(doy, 'D')
    st['date'] = str(base).replace('-', '')
    st['time'] = "%02d%02d%02d" % (int(rng.integers(7, 19)), int(rng.integers(0, 60)), int(rng.integers(0, 60)))
    bd = base - np.timedelta64(int(p.age * 365.25 + rng.integers(1, 360)), 'D')
    st['birth'] = str(bd).replace('-', '')
    st['acc'] = 'A%d%05d' % (seed % 1000, idx + 1)
    st['study_id'] = str(int(rng.integers(1000, 99999)))
    st['inst'] = str(rng.choice(INSTITUTIONS))
    st['station'] = '%s-%02d' % (vkey + 'RAD', int(rng.integers(1, 9)))
    st['serial'] = '%s%06d' % (vkey, int(rng.integers(0, 999999)))
    st['study_desc'] = str(rng.choice(['XR LUMBAR SPINE 2 VIEWS', 'L-SPINE AP/LAT', 'LUMBAR SPINE', 'XR SPINE LUMBAR']))
    st['series_fmt'] = str(rng.choice(['L-SPINE {v}', 'LSPINE {v}', 'Lumbar {v}', 'L SPINE {v}']))
    st['protocol'] = str(rng.choice(['L-Spine {v}', 'LUMBAR SPINE {v}', 'LWS {v}']))
    st['study_uid'] = make_uid(seed, p.pid, 'study')
    st['mono1'] = rng.random() < vend['mono1']
    st['cr_viewpos'] = rng.random() < 0.3
    st['calib_ps'] = vkey == 'B' and rng.random() < 0.6
    st['sigmoid'] = rng.random() < 0.5
    st['white_box'] = rng.random() < 0.3
    return st


def main():
    if len(sys.argv) != 4:
        print(__doc__.strip().splitlines()[-1])
        sys.exit(2)
    outdir, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    debug = os.environ.get('PHV_DEBUG', '') in ('1', '2')
    debug_maps = os.environ.get('PHV_DEBUG', '') == '1'
    os.makedirs(outdir, exist_ok=True)
    if debug:
        os.makedirs(outdir.rstrip('/') + '.debug', exist_ok=True)
    master = np.random.default_rng(np.random.SeedSequence([seed, 0x5eed]))
    classes = np.array([i % 3 for i in range(n)])
    master.shuffle(classes)
    vplan = vendor_plan(n, master)
    rows = []
    dbg_rows = []
    t_all = time.time()
    for idx in range(n):
        t0 = time.time()
        rng = np.random.default_rng(np.random.SeedSequence([seed, idx, 7919]))
        p = make_patient(rng, seed, idx, int(classes[idx]))
        build_patient_geometry(p, rng)
        st = make_study(rng, p, seed, idx, vplan[idx])
        pdir = os.path.join(outdir, p.pid)
        os.makedirs(pdir, exist_ok=True)
        for sn, view in enumerate(('AP', 'LAT')):
            vrng = np.random.default_rng(np.random.SeedSequence([seed, idx, 31 + sn]))
            dmaps = {} if debug_maps else None
            out, maxv, info, field = render_view(p, view, vrng, st, dmaps)
            vt = 'AP' if view == 'AP' else 'LAT'
            tl = [st['inst'], 'PHANTOM %s' % p.pid, '%s/%s/%s' % (st['date'][6:], st['date'][4:6], st['date'][:4])]
            br = ['%dkV %smAs' % (info['kvp'], info['mas']), 'SID %dcm' % (info['sid'] / 10)]
            if 's_value' in info:
                br.append('S %d  L %.1f' % (info['s_value'], 2.0))
            elif st['vend']['mod'] == 'DX':
                br.append('EI %d' % round(info['q_target'] / (st['ps'] / 0.15) ** 2 * 0.35))
            big = vt if vrng.random() < 0.7 else ''
            if vrng.random() < 0.85:
                out = burn_text(out, maxv, tl, br, big, st['ps'], vrng, st['white_box'])
            img = np.round(out).astype(np.int64)
            if st['mono1']:
                img = maxv - img
            img = np.clip(img, 0, maxv).astype(np.uint16)
            fname = 'ap.dcm' if view == 'AP' else 'lat.dcm'
            write_dicom(os.path.join(pdir, fname), img, p, st, view, info, maxv, st['mono1'], seed, sn + 1)
            rows.append(['%s/%s' % (p.pid, fname), p.label, '%.1f' % p.T, '%.3f' % p.bmd, p.pid, vt])
            dbg_rows.append([p.pid, vt, p.label, p.T, p.bmd, p.sex, p.age, round(p.bmi, 1), st['vend']['manu'],
                             st['vend']['mod'], int(st['mono1']), info['kvp'], int(info['grid']), img.shape[0], img.shape[1],
                             round(info['body_mineral'], 4), round(p.cal_scale, 3), round(p.rho_t, 4),
                             ';'.join('%s:%s:%.2f' % (k, v[0], v[1]) for k, v in p.fract.items())])
            if debug_maps:
                np.savez_compressed(os.path.join(outdir.rstrip('/') + '.debug', '%s_%s.npz' % (p.pid, vt)),
                                    **{k: v.astype(F32) for k, v in dmaps.items()})
        print('%s T=%+.1f label=%d sex=%s age=%d bmi=%.1f vendor=%s mono1=%d frac=%s  %.1fs' % (
            p.pid, p.T, p.label, p.sex, p.age, p.bmi, st['vend']['manu'], st['mono1'],
            ','.join(p.fract) or '-', time.time() - t0), flush=True)
    with open(os.path.join(outdir, 'manifest.csv'), 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['path', 'label', 't_score', 'bmd', 'patient_id', 'view'])
        w.writerows(rows)
    if debug:
        with open(outdir.rstrip('/') + '.debug/info.csv', 'w', newline='') as f:
            w = csv.writer(f)
            w.writerow(['patient_id', 'view', 'label', 't_score', 'bmd', 'sex', 'age', 'bmi', 'vendor', 'modality',
                        'mono1', 'kvp', 'grid', 'rows', 'cols', 'body_mineral_gcm2', 'cal_scale', 'rho_trab', 'fractures'])
            w.writerows(dbg_rows)
    print('done: %d studies in %.1fs' % (n, time.time() - t_all))


if __name__ == '__main__':
    main()
