#!/usr/bin/env python3
"""phantom_e.py - independent synthetic lumbar-spine radiograph generator (AP + lateral DICOM).

What it draws
  A 3-D analytic patient: T11-L5 vertebrae (elliptic-cylinder bodies with waist, cortical shell and
  endplates; pedicles, transverse/articular processes, laminae, spinous processes), T11/T12 ribs,
  sacrum with alae and foramina, iliac wings/crests/bodies, an elliptic torso with subcutaneous and
  visceral fat, psoas and kidneys outlined by fat, lung bases, colon/small-bowel gas and stool,
  optional aortic calcification.  Lordosis, scoliosis with axial rotation, patient rotation/tilt,
  positioning offsets, habitus (BMI), age-driven degeneration (disc narrowing, osteophytes, endplate
  sclerosis, facet hypertrophy) and osteoporotic wedge/biconcave/crush fractures are randomised.
  Every structure is an ellipsoid, bent tapered tube or superellipse 'body' whose chord length along
  each ray is summed, with perspective magnification (near/far halves give double endplate contours),
  into bone / fat / gas / tissue path maps for the AP and the lateral view.
How density shows
  T -> areal BMD = 1.047 + 0.11 T (g/cm2) -> r = BMD/1.047.  Trabecular bone volume fraction ~ r^1.6,
  cortical/endplate thickness ~ r^0.8, cortical porosity rises, marrow fat fraction rises as r falls;
  the trabecular texture becomes sparser, coarser and more vertically striated.  Bone is attenuated
  as ICRU cortical bone, so the vertebral (and pelvic/rib) contrast falls physically with T.
  Degenerative sclerosis/osteophytes (age-driven) add density independent of BMD.  Fractures are
  more frequent at low T.  Nothing in headers, text or file names encodes T or the class.
Imaging chain
  Kramers tungsten spectrum (kVp, Al/Cu filtration, CsI-like absorption), polyenergetic Beer-Lambert
  over water/fat/bone, heel effect, thickness-dependent scatter through an anti-scatter grid, lead
  L/R marker, collimation, focal/detector blur, AEC-normalised quantum + electronic noise, then vendor-
  like processing: log, dynamic-range compression, multi-frequency (unsharp) enhancement, fixed-
  latitude exposure recognition, sigmoid/gamma LUT, optional shutter, grid lines, burned-in text,
  MONOCHROME1/2, 10-16 bits stored.  Physics is rendered at ~0.3 mm and upsampled; noise is added at
  full detector resolution.
Usage
  python scripts/phantoms/phantom_e.py OUT_DIR N_STUDIES SEED [--workers K]
  Writes OUT_DIR/<patient_id>_AP.dcm, <patient_id>_LAT.dcm and OUT_DIR/manifest.csv
  (path,label,t_score,bmd,patient_id,view).  Output is fully determined by SEED (any worker count).
"""
import argparse, csv, datetime, math, os, sys, time
from multiprocessing import Pool
from types import SimpleNamespace as NS

import numpy as np
from scipy import ndimage as ndi
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

F32 = np.float32
UID_PREFIX = '1.2.826.0.1.3680043.8.498.'
SOP_DX, SOP_CR = '1.2.840.10008.5.1.4.1.1.1.1', '1.2.840.10008.5.1.4.1.1.1'

# ---------------------------------------------------------------- physics tables (mass atten. cm2/g)
E_TAB = np.log([15, 20, 30, 40, 50, 60, 80, 100, 150.0])
MU_RHO = {
    'water': [1.673, 0.8096, 0.3756, 0.2683, 0.2269, 0.2059, 0.1837, 0.1707, 0.1505],
    'fat':   [1.150, 0.5900, 0.3180, 0.2450, 0.2130, 0.1960, 0.1770, 0.1650, 0.1460],
    'bone':  [9.032, 4.0010, 1.3310, 0.6655, 0.4242, 0.3148, 0.2229, 0.1855, 0.1480],
    'al':    [7.955, 3.4410, 1.1280, 0.5685, 0.3681, 0.2778, 0.2018, 0.1704, 0.1378],
    'cu':    [74.05, 33.790, 10.920, 4.8620, 2.6130, 1.5930, 0.7630, 0.4584, 0.2217]}
RHO = {'water': 1.0, 'fat': 0.95, 'bone': 1.92, 'al': 2.70, 'cu': 8.96}

def mu(mat, E):
    """Linear attenuation coefficient in 1/mm (log-log interpolation)."""
    return np.exp(np.interp(np.log(E), E_TAB, np.log(MU_RHO[mat]))) * RHO[mat] / 10.0

def spectrum(kvp, al, cu):
    E = np.arange(19.0, kvp - 1.0, 5.0)
    phi = (kvp - E) / E * np.exp(-mu('al', E) * al - mu('cu', E) * cu)   # Kramers + filtration
    w = phi * E * (1.0 - np.exp(-4.0 * (50.0 / E) ** 2.6))                # energy-integrating CsI
    return E, w / w.sum()

# ---------------------------------------------------------------- geometry helpers
def _rot(a, i, j):
    R = np.eye(3); c, s = math.cos(a), math.sin(a)
    R[i, i], R[i, j], R[j, i], R[j, j] = c, -s, s, c
    return R

Rx, Ry, Rz = (lambda a: _rot(a, 1, 2)), (lambda a: _rot(a, 2, 0)), (lambda a: _rot(a, 0, 1))

def frame(d, ref=(0.0, 0.0, 1.0)):
    """Rotation whose local z is along d and local x as close as possible to ref."""
    z = np.asarray(d, float); z = z / np.linalg.norm(z)
    x = np.asarray(ref, float) - np.dot(ref, z) * z
    if np.linalg.norm(x) < 1e-6:
        x = np.array([1.0, 0, 0]) - z[0] * z
    x /= np.linalg.norm(x)
    return np.column_stack([x, np.cross(z, x), z])

def ell(els, c, R, s, mat):
    els.append(dict(k='ell', c=np.asarray(c, float), R=R, s=np.asarray(s, float), **mat))

def seg(els, a, b, r_ref, r_oth, ref, mat, extra=0.0):
    a, b = np.asarray(a, float), np.asarray(b, float)
    ell(els, (a + b) / 2, frame(b - a, ref), [r_ref, r_oth, np.linalg.norm(b - a) / 2 + extra], mat)

def tube(els, pts, r, mat):
    """Bent tube through pts; r = radius or per-point (semi-x, semi-y) cross-section list."""
    rad = r if isinstance(r, list) else [(r, r)] * len(pts)
    els.append(dict(k='tube', pts=[np.asarray(p, float) for p in pts], rad=rad, **mat))

# ---------------------------------------------------------------- patient / anatomy model
# T11..L5:                      ax    ay    hh   disc  tp   sagittal tilt(deg)
DIMS = np.array([[17.0, 13.5, 11.0, 6.0, 6, -16], [19.0, 14.5, 11.5, 7.0, 5, -13],
                 [20.5, 15.5, 12.5, 8.5, 10, -9], [21.5, 16.0, 13.0, 9.5, 14, -4],
                 [23.0, 16.5, 13.5, 10.5, 18, 1], [24.0, 16.5, 13.5, 11.0, 15, 8],
                 [25.5, 16.5, 13.0, 11.0, 11, 18]])
FRAC_W = [1.0, 1.6, 1.5, 1.2, 0.8, 0.6, 0.4]

def build_patient(rng, T, age, sex):
    bmi = float(np.clip(rng.normal(27.5 if sex == 'F' else 27.0, 5.0), 17, 45))
    sc = rng.normal(1.0, 0.04) * (0.94 if sex == 'F' else 1.03)
    deg = float(np.clip((age - 40) / 45 + rng.normal(0, 0.2), 0, 1.2))
    A0 = (125 + 4.0 * (bmi - 22)) * sc * rng.normal(1, 0.04)          # torso lateral semi-axis
    B0 = (85 + 4.5 * (bmi - 22)) * sc * rng.normal(1, 0.05)           # torso AP semi-axis
    fsc = max(4.0, (6 + 2.0 * (bmi - 18)) if sex == 'F' else (4 + 1.5 * (bmi - 18))) * rng.uniform(0.7, 1.2)
    vf = float(np.clip(0.08 + 0.012 * (bmi - 20) + (0.05 if sex == 'M' else 0), 0.05, 0.45))
    y_sp = -B0 + 75 + 0.8 * fsc + rng.normal(0, 5)
    r = (1.047 + 0.11 * T) / 1.047
    bm = dict(ft=0.17 * r ** 1.6 * rng.normal(1, 0.05), tc=0.9 * r ** 0.8, te=0.9 * r ** 0.7,
              fc=min(0.9, 0.82 * r ** 0.3),
              ff=float(np.clip(0.3 + 0.45 * (1 - r) + 0.004 * (age - 50) + rng.normal(0, 0.05), 0.15, 0.85)))
    # curvature: lordosis, scoliosis with rotation toward the convexity
    lf = float(np.clip(rng.uniform(0.6, 1.25) - 0.2 * deg, 0.35, 1.3))
    cobb = rng.uniform(3, 10 + 15 * deg) if rng.random() < 0.3 + 0.3 * deg else rng.uniform(0, 3)
    side, kap = rng.choice([-1, 1]), rng.uniform(2.5, 4.5)
    k = np.arange(7)
    psi = np.radians(cobb / 2 * side * np.sin(np.clip((k - kap) / 2.5, -1, 1) * np.pi / 2))
    rho = np.radians(side * 0.4 * cobb * np.cos(np.clip((k - kap) / 3, -1, 1) * np.pi / 2))
    phi = np.radians(DIMS[:, 5] * lf + rng.normal(0, 1.5, 7))
    dims = DIMS.copy()
    dims[:, :3] *= rng.normal(1, 0.03, (7, 1))
    narrow = rng.uniform(0, 0.55, 7) * deg * np.linspace(0.5, 1.2, 7)
    dims[:, 3] *= 1 - narrow
    Rv = [Ry(psi[i]) @ Rx(-phi[i]) @ Rz(rho[i]) for i in range(7)]
    up = [R[:, 2] for R in Rv]
    cen = [None] * 7
    cen[4] = np.array([0.0, y_sp, 0.0])
    for i in range(3, -1, -1):
        u = up[i] + up[i + 1]; u /= np.linalg.norm(u)
        cen[i] = cen[i + 1] + u * sc * (dims[i + 1, 2] + dims[i, 3] + dims[i, 2])
    for i in (5, 6):
        u = up[i] + up[i - 1]; u /= np.linalg.norm(u)
        cen[i] = cen[i - 1] - u * sc * (dims[i - 1, 2] + dims[i - 1, 3] + dims[i, 2])
    phs = math.radians(30 + 8 * lf + rng.normal(0, 4))
    Rs = Ry(psi[6] * 0.5) @ Rx(-phs) @ Rz(rho[6] * 0.5)
    u = up[6] + Rs[:, 2]; u /= np.linalg.norm(u)
    cS = cen[6] - u * sc * (dims[6, 2] + dims[6, 3] + 12.0)

    els, nfrac = [], 0
    pfrac = 0.01 + 0.09 * max(0.0, -1.5 - T)
    post = dict(m='shell', tc=0.6 * bm['tc'], fc=bm['fc'], ft=0.3 * r ** 1.4, ff=bm['ff'], tex=False)
    for i in range(7):
        ax, ay, hh, _, tpl, _ = dims[i]
        c, R = cen[i], Rv[i]
        P = lambda v, c=c, R=R: c + sc * (R @ np.asarray(v, float))
        upv = R[:, 2]
        wedge = conc = 0.0; crush = dens = 1.0
        fu = rng.random(3)                              # fixed draw count: anatomy independent of T
        if fu[0] < pfrac * FRAC_W[i]:
            nfrac += 1; dens = 1.25
            if fu[1] < 0.6: wedge = 0.2 + 0.25 * fu[2]
            elif fu[1] < 0.85: conc = 0.15 + 0.2 * fu[2]
            else: crush = 0.65 + 0.15 * fu[2]
        scl = rng.uniform(0, 2.5) * deg if i >= 4 else rng.uniform(0, 1.0) * deg
        els.append(dict(k='body', c=c, R=R, ax=ax * sc, ay=ay * sc, hh=hh * sc * crush, tc=bm['tc'],
                        te=bm['te'] * (1 + scl), fc=bm['fc'], ft=bm['ft'] * dens, ff=bm['ff'],
                        wedge=wedge, conc=conc, waist=0.07))
        if scl > 0.6:                                   # subchondral sclerosis bands
            for sz in (-1, 1):
                ell(els, P([0, 0, sz * (hh - 2.5)]), R, np.array([ax * .85, ay * .85, 2.5]) * sc,
                    dict(m='cort', w=0.05 * scl))
        fac = 1 + (0.35 * deg * rng.random() if i >= 5 else 0.1 * deg)
        for sg in (-1, 1):
            ell(els, P([sg * .6 * ax, -(ay + 6), .3 * hh]), R @ Rz(sg * (0.12 + 0.04 * i)),
                np.array([4.5, 9, 8.5]) * sc, post)                                          # pedicle
            ell(els, P([sg * .58 * ax, -(ay + 17), hh + 3]), R, np.array([5, 8, 10]) * sc * fac, post)
            ell(els, P([sg * .42 * ax, -(ay + 23), -hh + 1]), R, np.array([5, 7, 10]) * sc * fac, post)
            seg(els, P([sg * .55 * ax, -(ay + 15), .1 * hh]), P([0, -(ay + 28), 0]), 10 * sc, 3.5 * sc, upv, post)
            if i >= 2:                                                                       # transverse
                a0 = .6 * ax + 3
                tube(els, [P([sg * (a0 - 3), -(ay + 8), .25 * hh]),
                           P([sg * (a0 + 2 * tpl), -(ay + 12), .25 * hh + .2 * tpl])],
                     (4.5 if i < 6 else 6.5) * sc, post)
            else:                                                                            # ribs
                L, dz = (125, 38) if i == 0 else (95, 45)
                t = np.linspace(0, 1, 7)
                pts = [P([sg * (ax + 5 + L * tt), -(ay + 10) - 30 * math.sin(math.pi * tt) + 45 * tt, 5 - dz * tt])
                       for tt in t]
                tube(els, pts, 5 * sc, dict(m='shell', tc=1.0 * bm['tc'], fc=bm['fc'], ft=0.8 * bm['ft'],
                                            ff=bm['ff'], tex=False))
            for sz in (-1, 1):                                                               # osteophytes
                if rng.random() < 0.7 * deg:
                    o = rng.uniform(1.5, 7) * deg
                    ell(els, P([sg * (ax + .15 * o), 0, sz * (hh + .1 * o)]), R @ Ry(sg * sz * 0.35),
                        np.array([.7 * o + 1.2, .45 * ay, .3 * o + .8]) * sc, dict(m='cort', w=0.25))
                if sg > 0 and rng.random() < 0.8 * deg:
                    o = rng.uniform(1.5, 7) * deg
                    ell(els, P([0, ay + .15 * o, sz * (hh + .1 * o)]), R @ Rx(-sz * 0.35),
                        np.array([.55 * ax, .7 * o + 1.2, .3 * o + .8]) * sc, dict(m='cort', w=0.25))
        end = [0, -(ay + 50), -.35 * hh] if i >= 2 else [0, -(ay + 40), -hh - 12]
        seg(els, P([0, -(ay + 22), .1 * hh]), P(end), 11 * sc, 3.5 * sc, upv, post)             # spinous
    # sacrum
    Ps = lambda v: cS + sc * (Rs @ np.asarray(v, float))
    sac = dict(m='shell', tc=1.1 * bm['tc'], fc=bm['fc'], ft=0.85 * bm['ft'], ff=bm['ff'], tex=True)
    els.append(dict(k='body', c=cS, R=Rs, ax=25 * sc, ay=17 * sc, hh=12 * sc, tc=bm['tc'], te=bm['te'],
                    fc=bm['fc'], ft=0.9 * bm['ft'], ff=bm['ff'], wedge=0.0, conc=0.0, waist=0.04))
    for sg in (-1, 1):
        ell(els, Ps([sg * 34, -6, -2]), Rs, np.array([24, 18, 20]) * sc, sac)
        ell(els, Ps([sg * 16, -24, 15]), Rs, np.array([5, 7, 9]) * sc, post)
    kz = np.linspace(-14, -92, 7)
    tube(els, [Ps([0, -10 - 12 * (-14 - zz) / 78 + 14 * ((-14 - zz) / 78) ** 2, zz]) for zz in kz],
         [(np.interp(zz, [-92, -14], [9, 40]) * sc, 11 * sc) for zz in kz], sac)
    for j, (yy, zz) in enumerate([(-10, -30), (-17, -52), (-24, -70), (-30, -84)]):
        for sg in (-1, 1):
            ell(els, Ps([sg * (14 - 1.5 * j), yy, zz + 6]), Rs, np.array([4.5, 10, 4.5]) * sc,
                dict(m='cort', w=-(bm['ft'] + 0.15)))
    seg(els, Ps([0, -22, 2]), Ps([0, -34, -60]), 5 * sc, 3 * sc, Rs[:, 2], post)
    # ilium (patient frame)
    pw = (8.0 if sex == 'F' else 0.0) + rng.normal(0, 5)
    pel = dict(m='shell', tc=1.3 * bm['tc'], fc=bm['fc'], ft=0.8 * bm['ft'], ff=bm['ff'], tex=False)
    Pp = lambda v: cS + sc * np.asarray(v, float)
    for sg in (-1, 1):
        cw = Pp([sg * (78 + pw), -12, 12])
        Rw = Rz(sg * 0.7) @ Ry(-sg * 0.15)
        ell(els, cw, Rw, np.array([55, 7.5, 66]) * sc, dict(pel, tc=1.0 * bm['tc']))        # wing
        tube(els, [cw + sc * (Rw @ np.array([55 * math.cos(a), 0, 64 * math.sin(a)]))
                   for a in np.radians(np.linspace(25, 160, 9))], 5 * sc, pel)               # crest
        ell(els, Pp([sg * 52, -25, -8]), Rz(sg * 0.5) @ Ry(sg * 0.2), np.array([10, 20, 36]) * sc,
            dict(pel, tc=0.5 * bm['tc']))                                                  # SI ilium
        tube(els, [Pp([sg * 42, -5, -15]), Pp([sg * 62, 25, -60]), Pp([sg * 50, 55, -90]), Pp([sg * 25, 70, -100])],
             4.5 * sc, pel)                                                                  # pelvic brim
        ell(els, Pp([sg * 80, 20, -95]), np.eye(3), np.array([25, 25, 22]) * sc, pel)       # acetabular roof
    # soft tissue: psoas & kidneys outlined by fat, lungs, bowel gas, aortic calcification
    rp = rng.uniform(0.4, 0.9) * (0.6 + vf)
    for sg in (-1, 1):
        pts = [cen[2] + [sg * 15, 5, 0], cen[4] + [sg * 35, 0, 0], cen[6] + [sg * 50, 5, 0], cS + [sg * 60, 25, -40]]
        for (p, q, rr) in zip(pts[:-1], pts[1:], (12, 19, 23)):
            seg(els, p, q, rr + 5, rr + 5, (1, 0, 0), dict(m='fat', w=rp), extra=3)
            seg(els, p, q, rr, rr, (1, 0, 0), dict(m='fat', w=-rp), extra=3)
        ck = cen[2] + np.array([sg * 58, 8, -5 + (8 if sg > 0 else -5)])
        Rk = Rz(sg * 0.5) @ Ry(sg * 0.25)
        ell(els, ck, Rk, [31, 26, 58], dict(m='fat', w=rp))
        ell(els, ck, Rk, [25, 20, 52], dict(m='fat', w=-rp))
        ell(els, cen[0] + [sg * 95, -5, 135], np.eye(3), [70, 70, 115], dict(m='gas', w=0.72))
        ell(els, cen[1] + [sg * 70, -40, 60], np.eye(3), [40, 30, 50], dict(m='gas', w=0.6))
    ab = A0 / 150
    path = np.array([[-60 * ab, 45, cS[2] - 20], [-80 * ab, 35, cen[4][2]], [-75 * ab, 40, cen[2][2]],
                     [0, 90 * B0 / 100, cen[4][2] - rng.uniform(0, 60)], [80 * ab, 30, cen[1][2]],
                     [85 * ab, 30, cen[5][2]], [30, 50, cS[2] - 40]]) + [0, y_sp, 0]
    seglen = np.linalg.norm(np.diff(path, axis=0), axis=1); cum = np.concatenate([[0], np.cumsum(seglen)])
    for _ in range(rng.poisson(4 + 10 * rng.random())):
        t = rng.uniform(0, cum[-1]); j = min(np.searchsorted(cum, t) - 1, len(seglen) - 1)
        p = path[j] + (path[j + 1] - path[j]) * (t - cum[j]) / seglen[j] + rng.normal(0, 8, 3)
        if rng.random() < 0.4:
            for _ in range(rng.integers(8, 25)):
                ell(els, p + rng.normal(0, 9, 3), np.eye(3), rng.uniform(1.5, 4.5, 3), dict(m='gas', w=0.9))
        else:                                            # lumpy gas-filled colon segment
            for _ in range(rng.integers(2, 5)):
                ell(els, p + rng.normal(0, 7, 3), Rz(rng.uniform(0, 3)) @ Rx(rng.uniform(0, 3)),
                    rng.uniform(5, 16, 3), dict(m='gas', w=rng.uniform(0.35, 0.8)))
    for _ in range(rng.poisson(1.5)):
        p = [rng.uniform(-50, 50), y_sp + rng.uniform(60, 110), rng.uniform(cen[5][2] - 30, cen[3][2])]
        ell(els, p, np.eye(3), rng.uniform(6, 14, 3), dict(m='gas', w=0.85))
    if rng.random() < 0.5:
        ell(els, [60, y_sp + 90, cen[0][2] + 30], np.eye(3), [40, 35, 30], dict(m='gas', w=0.8))
    for _ in range(rng.poisson(8 * max(0.0, deg - 0.3) ** 1.5)):
        a = rng.uniform(0, 2 * np.pi); z = rng.uniform(cen[5][2], cen[2][2])
        ell(els, [15 + 11 * math.cos(a), y_sp + 16.5 * sc + 16 + 11 * math.sin(a), z], np.eye(3),
            [1.0, 1.0, rng.uniform(2, 6)], dict(m='cort', w=0.6))
    z_cr = 0.5 * (cen[5][2] + cen[6][2])
    return NS(els=els, A0=A0, B0=B0, fsc=fsc, vf=vf, y_sp=y_sp, cen=cen, cS=cS, z_cr=z_cr, bmi=bmi,
              belly=float(np.clip(0.02 * (bmi - 24), 0, 0.25)), hipf=0.14 if sex == 'F' else 0.08,
              r=r, nfrac=nfrac, deg=deg)

# ---------------------------------------------------------------- projection canvas
class View:
    def __init__(self, geo, W, H, dr):
        self.g, self.dr = geo, dr
        self.nx, self.nz = int(round(W / dr)), int(round(H / dr))
        self.W, self.H = self.nx * dr, self.nz * dr
        z = lambda: np.zeros((self.nz, self.nx), F32)
        self.bone, self.fat, self.gas = z(), z(), z()

    def proj(self, p):
        g = self.g
        p = g.Rv @ (np.asarray(p, float) - g.piv) + g.piv
        m = g.sid / (g.sid - g.bs * (p[g.b] - g.det))
        return p, g.sx * (p[g.i] - g.c[g.i]) * m, (p[2] - g.c[2]) * m, m

    def box(self, X, Z, ex, ez):
        c0, c1 = max(int((X - ex + self.W / 2) / self.dr), 0), min(int((X + ex + self.W / 2) / self.dr) + 2, self.nx)
        r0, r1 = max(int((self.H / 2 - Z - ez) / self.dr), 0), min(int((self.H / 2 - Z + ez) / self.dr) + 2, self.nz)
        if c0 >= c1 or r0 >= r1:
            return None
        dX = ((np.arange(c0, c1) + 0.5) * self.dr - self.W / 2 - X).astype(F32)[None, :]
        dZ = (self.H / 2 - (np.arange(r0, r1) + 0.5) * self.dr - Z).astype(F32)[:, None]
        return (slice(r0, r1), slice(c0, c1)), dX, dZ

    def ell_q(self, c, R, s):
        g = self.g
        _, X, Z, m = self.proj(c)
        R = g.Rv @ R
        M = (R / s ** 2) @ R.T
        b, i = g.b, g.i
        mp = np.array([M[i, b], M[2, b]])
        Q = np.array([[M[i, i], M[i, 2]], [M[2, i], M[2, 2]]]) - np.outer(mp, mp) / M[b, b]
        D = np.diag([g.sx / m, 1 / m]); Q = D @ Q @ D
        Qi = np.linalg.inv(Q)
        return X, Z, Q, 2 / math.sqrt(M[b, b]), math.sqrt(Qi[0, 0]), math.sqrt(Qi[1, 1])

    @staticmethod
    def chord(bx, Q, depth):
        _, dX, dZ = bx
        w = Q[0, 0] * dX * dX + (2 * Q[0, 1]) * dX * dZ + Q[1, 1] * dZ * dZ
        return depth * np.sqrt(np.maximum(1 - w, 0))

    def add_bone(self, sl, out, inn, e):
        tr = inn * e['ft']
        if e.get('tex'):
            tr = tr * (1 + self.tex_amp * self.tex[sl])
        self.bone[sl] += e['fc'] * (out - inn) + tr
        self.fat[sl] += ((1 - e['ft']) * e['ff']) * inn

    def add(self, e):
        if e['k'] == 'body':
            return self.add_body(e)
        if e['k'] == 'tube':
            return self.add_tube(e)
        X, Z, Q, dep, ex, ez = self.ell_q(e['c'], e['R'], e['s'])
        bx = self.box(X, Z, ex, ez)
        if bx is None:
            return
        ch, sl = self.chord(bx, Q, dep), bx[0]
        m = e['m']
        if m == 'shell':
            _, _, Qn, dn, _, _ = self.ell_q(e['c'], e['R'], np.maximum(e['s'] - e['tc'], 0.3))
            self.add_bone(sl, ch, self.chord(bx, Qn, dn), e)
        else:
            {'cort': self.bone, 'fat': self.fat, 'gas': self.gas}[m][sl] += e['w'] * ch

    def add_tube(self, e):
        """Union (max) of tapered capsule segments: a bent tube with cortex + marrow."""
        g, tc = self.g, e['tc']
        pr = [self.proj(p) for p in e['pts']]
        rb = [rd[g.b] for rd in e['rad']]                   # semi-axis along the beam
        ri = [rd[1 - g.b] for rd in e['rad']]               # semi-axis across, in the image
        Xs, Zs = [q[1] for q in pr], [q[2] for q in pr]
        rr = max(ri) * max(q[3] for q in pr) + 1
        Xc, Zc = (min(Xs) + max(Xs)) / 2, (min(Zs) + max(Zs)) / 2
        bx = self.box(Xc, Zc, (max(Xs) - min(Xs)) / 2 + rr, (max(Zs) - min(Zs)) / 2 + rr)
        if bx is None:
            return
        sl, dX, dZ = bx
        out = np.zeros((dZ.shape[0], dX.shape[1]), F32); inn = out.copy()
        for j in range(len(pr) - 1):
            (p1, X1, Z1, m1), (p2, X2, Z2, m2) = pr[j], pr[j + 1]
            m, a = (m1 + m2) / 2, p2 - p1
            fac = 2 / max(math.sqrt(max(1 - (a[g.b] / np.linalg.norm(a)) ** 2, 0)), 0.45)
            DX, DZ = X2 - X1, Z2 - Z1
            qx, qz = dX - (X1 - Xc), dZ - (Z1 - Zc)
            t = np.clip((qx * DX + qz * DZ) / max(DX * DX + DZ * DZ, 1e-6), 0, 1)
            d2 = ((qx - t * DX) ** 2 + (qz - t * DZ) ** 2) / (m * m)
            w_i, w_b = ri[j] + t * (ri[j + 1] - ri[j]), rb[j] + t * (rb[j + 1] - rb[j])
            np.maximum(out, fac * w_b * np.sqrt(np.maximum(1 - d2 / (w_i * w_i), 0)), out=out)
            wi2 = np.maximum(w_i - tc, 0.3)
            np.maximum(inn, fac * np.maximum(w_b - tc, 0.3) * np.sqrt(np.maximum(1 - d2 / (wi2 * wi2), 0)), out=inn)
        self.add_bone(sl, out, inn, e)

    def add_body(self, e):
        g = self.g
        R = g.Rv @ e['R']
        rho = math.atan2(R[1, 0], R[0, 0])
        cr, sr = math.cos(rho), math.sin(rho)
        R2 = np.array([[cr, -sr], [sr, cr]])

        def sect(a, b):
            M2 = (R2 / np.array([a, b]) ** 2) @ R2.T
            mbb = M2[g.b, g.b]
            return 1 / math.sqrt(M2[g.i, g.i] - M2[g.i, g.b] ** 2 / mbb), 2 / math.sqrt(mbb)
        hw, D = sect(e['ax'], e['ay'])
        hwi, Di = sect(e['ax'] - e['tc'], e['ay'] - e['tc'])
        up = R[:, 2]
        ang = math.atan2(g.sx * up[g.i], up[2])
        ca, sa = math.cos(ang), math.sin(ang)
        eb = np.zeros(3); eb[g.b] = 1
        wedge, conc, hh = e['wedge'], e['conc'], e['hh']
        if g.b == 1:                                     # AP: wedge shows as height loss
            hh, wedge = hh * (1 - wedge / 2), 0.0
        else:
            wedge *= g.sx
        cc = g.Rv @ (e['c'] - g.piv) + g.piv
        for sgn in (-1, 1):
            delta = sgn * D / 4
            ch = cc + delta * eb
            ch[2] -= delta * up[g.b] / up[2]
            p = g.Rv.T @ (ch - g.piv) + g.piv
            _, X, Z, m = self.proj(p)
            hu, hv = hw * m, hh * m
            bx = self.box(X, Z, hu * abs(ca) + hv * abs(sa) + 1, hu * abs(sa) + hv * abs(ca) + 1)
            if bx is None:
                continue
            out = sprim(bx, ca, sa, hu, hv, D / 2, e['waist'], wedge, conc)
            inn = sprim(bx, ca, sa, hwi * m, (hh - e['te']) * m, Di / 2, e['waist'], wedge, conc)
            self.add_bone(bx[0], out, inn, dict(e, tex=True))

def sprim(bx, ca, sa, hu, hv, D, waist, wedge, conc):
    """Superellipse 'vertebral body' chord: elliptic across, flat endplates, waisted, deformable."""
    _, dX, dZ = bx
    u = (dX * ca - dZ * sa) / hu
    v = (dX * sa + dZ * ca) / hv
    if wedge or conc:
        uc = np.clip(u, -1, 1)
        h = 1 - 0.5 * abs(wedge) * (1 + np.sign(wedge) * uc) - conc * (1 - uc * uc)
        v = v / np.maximum(h, 0.25)
    v2 = v * v
    if waist:
        u = u / (1 - waist * (1 - np.minimum(v2, 1)))
    v4 = v2 * v2
    return D * np.sqrt(np.maximum(1 - u * u - v4 * v4 * v2, 0))

def blur_c(a, sig_px):
    """Large Gaussian blur via box-downsample, blur, bilinear upsample."""
    f = max(1, int(sig_px / 4))
    h, w = a.shape
    sm = np.asarray(Image.fromarray(a.astype(F32)).resize((max(1, w // f), max(1, h // f)), Image.BOX))
    sm = ndi.gaussian_filter(sm, sig_px / f, mode='nearest').astype(F32)
    return np.asarray(Image.fromarray(sm).resize((w, h), Image.BILINEAR))

def text_mask(shape, items):
    img = Image.new('L', (shape[1], shape[0]))
    d = ImageDraw.Draw(img)
    for (x, y, txt, size, anchor) in items:
        d.text((x, y), txt, fill=255, font=ImageFont.load_default(size=max(8, int(size))), anchor=anchor)
    return np.asarray(img) > 127

# ---------------------------------------------------------------- one view: geometry, physics, display
def render_view(kind, pat, vend, rng, ps):
    Wd, Hd = vend['det']
    dr = 0.3 if ps < 0.18 else 0.34
    sid = rng.uniform(1000, 1150)
    c3 = pat.cen[4]
    if kind == 'AP':
        geo = NS(b=1, i=0, sx=1.0, bs=1.0, det=-pat.B0 - rng.uniform(35, 60), sid=sid,
                 c=np.array([rng.normal(0, 10), pat.y_sp, c3[2] - 10 + rng.normal(0, 15)]),
                 Rv=Rz(rng.normal(0, 0.04)), piv=c3)
        kvp, Wc = rng.uniform(70, 85), rng.uniform(170, 260)
    else:
        geo = NS(b=0, i=1, sx=-1.0 if rng.random() < 0.8 else 1.0, bs=-1.0, det=pat.A0 + rng.uniform(30, 50), sid=sid,
                 c=np.array([0.0, pat.y_sp - 10 + rng.normal(0, 10), c3[2] - 5 + rng.normal(0, 15)]),
                 Rv=Rz(rng.normal(0, 0.06)) @ Ry(rng.normal(0, 0.03)), piv=c3)
        kvp, Wc = rng.uniform(80, 96), rng.uniform(150, 230)
    v = View(geo, Wd, Hd, dr)
    nz, nx = v.nz, v.nx
    # trabecular texture: sparser/coarser/more vertical at low density
    r = pat.r
    n1 = ndi.gaussian_filter(rng.standard_normal((nz, nx), dtype=F32),
                             (max(0.8, (1.2 + 2.2 * (1 - r)) / dr), 0.35 / dr))
    n2 = ndi.gaussian_filter(rng.standard_normal((nz, nx), dtype=F32), (0.35 / dr, 1.2 / dr))
    hmix = float(np.clip(1.2 * r - 0.3, 0.05, 1.0))
    v.tex = (n1 / n1.std() + hmix * n2 / n2.std()) / math.sqrt(1 + hmix ** 2)
    v.tex_amp = float(np.clip(0.12 + 0.4 * (1 - r), 0.08, 0.35))
    for e in pat.els:
        v.add(e)
    # torso
    m_s = sid / (sid - geo.bs * (c3[geo.b] - geo.det))
    Zr = (v.H / 2 - (np.arange(nz) + 0.5) * dr)[:, None]
    Xc = ((np.arange(nx) + 0.5) * dr - v.W / 2)[None, :]
    z = geo.c[2] + Zr / m_s
    A = pat.A0 * (1 + pat.hipf / (1 + np.exp(-(pat.z_cr - z) / 20)) + 0.05 / (1 + np.exp(-(z - pat.cen[1][2]) / 25)))
    B = pat.B0 * (1 + pat.belly * np.exp(-((z - pat.cen[5][2]) / 110) ** 2))
    yc = B - pat.B0
    f = pat.fsc
    if kind == 'AP':
        q = (geo.c[0] + Xc / m_s)
        tis = 2 * B * np.sqrt(np.maximum(1 - (q / A) ** 2, 0))
        inner = 2 * (B - f) * np.sqrt(np.maximum(1 - (q / (A - f)) ** 2, 0))
    else:
        q = geo.c[1] + Xc / (geo.sx * m_s) - yc
        tis = 2 * A * np.sqrt(np.maximum(1 - (q / B) ** 2, 0))
        inner = 2 * (A - f) * np.sqrt(np.maximum(1 - (q / (B - f)) ** 2, 0))
    tis = tis.astype(F32)
    fat = np.maximum(v.fat + (tis - inner + pat.vf * inner).astype(F32), 0)
    # collimation + lead marker (with plastic holder)
    Hc = min(rng.uniform(330, 430), v.H - 6); Wc = min(Wc, v.W - 6)
    ox, oz, th = rng.normal(0, 8), rng.normal(0, 10), rng.normal(0, 0.012)
    uu = Xc * math.cos(th) - Zr * math.sin(th) - ox
    vv = Xc * math.sin(th) + Zr * math.cos(th) - oz
    cm = (np.clip((Wc / 2 - np.abs(uu)) / 1.5 + 0.5, 0, 1) *
          np.clip((Hc / 2 - np.abs(vv)) / 1.5 + 0.5, 0, 1)).astype(F32)                # 1.5 mm penumbra
    letter = 'R' if kind == 'AP' and rng.random() < 0.4 else 'L'
    side = (1 if letter == 'L' else -1) if kind == 'AP' else rng.choice([-1, 1])
    mx = ox + side * (Wc / 2 - rng.uniform(15, 30))
    mz = oz + Hc / 2 - rng.uniform(20, 60)
    cx_, cz_ = int((mx + v.W / 2) / dr), int((v.H / 2 - mz) / dr)
    hs = int(9 / dr)
    tis[max(cz_ - hs, 0):cz_ + hs, max(cx_ - hs, 0):cx_ + hs] += 5.0
    lead = text_mask((nz, nx), [(cx_, cz_, letter, 13 / dr, 'mm')])
    water = np.maximum(tis - v.bone - fat - np.minimum(v.gas, tis), 0)
    bone = np.maximum(v.bone, 0)
    # polyenergetic primary
    al, cu = rng.uniform(2.5, 3.5) + 1.0, rng.choice([0.0, 0.0, 0.1, 0.2])
    E, w = spectrum(kvp, al, cu)
    mw, mf, mb = mu('water', E), mu('fat', E), mu('bone', E)
    P = np.zeros((nz, nx), F32)
    for k in range(len(E)):
        P += F32(w[k]) * np.exp(-(F32(mw[k]) * water + F32(mf[k]) * fat + F32(mb[k]) * bone))
    heel = (1 + rng.choice([-1, 1]) * rng.uniform(0.04, 0.12) * Zr / (v.H / 2)).astype(F32)
    P *= heel
    Pf = P * cm
    # scatter through grid (thickness-dependent SPR, broad kernel)
    mass = blur_c((water + 0.95 * fat + 1.92 * bone) / 10.0, 15 / dr)
    spr = (0.22 * rng.uniform(0.12, 0.22)) * mass
    S = blur_c(Pf * spr, rng.uniform(35, 60) / dr)
    I = Pf + S + 0.04 * P * (1 - cm)
    I = np.where(lead, I * 0.03, I)
    I = ndi.gaussian_filter(I, rng.uniform(0.18, 0.3) / dr, truncate=2.5)
    # AEC: central chamber over the spine
    c0, r0, hw = nx // 2, nz // 2, int(28 / dr)
    I_ref = float(I[r0 - hw:r0 + hw, c0 - hw:c0 + hw].mean())
    Npix = rng.uniform(40000, 120000) * vend['dqe'] * ps * ps
    eln = rng.uniform(2, 8)
    A_ = -np.log(np.maximum(I / I_ref, 1e-7))
    # vendor processing
    Rm = (cm > 0.5) & (tis > 30) & ~lead
    Rm = Rm if Rm.sum() > 100 else cm > 0.5
    wgt = (cm * (tis > 20)).astype(F32) + F32(1e-3)
    sdrc = rng.uniform(30, 50) / dr
    low = blur_c(A_ * wgt, sdrc) / blur_c(wgt, sdrc)
    drc = rng.uniform(0.45, 0.7) if kind == 'AP' else rng.uniform(0.6, 0.85)
    A1 = A_ - drc * (low - F32(np.median(low[Rm][::11])))
    med = float(np.median(A1[Rm][::7]))
    g_mid, g_hf = rng.uniform(0.5, 1.5), rng.uniform(0.2, 0.7)
    A2 = A1 + g_mid * (A1 - blur_c(A1, rng.uniform(3, 8) / dr)) \
        + g_hf * (A1 - ndi.gaussian_filter(A1, rng.uniform(0.5, 1.0) / dr, truncate=2.5))
    Lat = rng.uniform(1.3, 1.9)                          # fixed latitude: bone contrast survives
    lo = med - rng.uniform(0.28, 0.42) * Lat
    u = (A2 - lo) / Lat
    if vend['lut'] == 'sig':
        kk, c = rng.uniform(5, 8), rng.uniform(0.42, 0.58)
        sg = 1 / (1 + np.exp(-kk * (u - c))); s0, s1 = 1 / (1 + math.exp(kk * c)), 1 / (1 + math.exp(-kk * (1 - c)))
        y = (sg - s0) / (s1 - s0); dy = kk * sg * (1 - sg) / (s1 - s0)
    else:
        gm = rng.uniform(0.75, 1.35)
        uc = np.clip(u, 0.02, 1); y = uc ** gm; dy = gm * uc ** (gm - 1)
    inside = (u > 0) & (u < 1)
    y = np.clip(y, 0, 1).astype(F32)
    Nq = Npix * np.maximum(I / I_ref, 1e-4)
    sig = (np.sqrt(Nq + eln ** 2) / Nq * (1 + 0.6 * g_hf + 0.2 * g_mid) * dy / Lat * inside).astype(F32)
    shutter = rng.random() < vend['shut']
    y_out = 0.0 if shutter else rng.uniform(0.85, 1.0)
    y = cm * y + (1 - cm) * F32(y_out)
    sig *= cm
    return y, sig, NS(kvp=kvp, sid=sid, m_s=m_s, W=v.W, H=v.H, geo=geo, shutter=shutter, Wc=Wc, Hc=Hc, ox=ox, oz=oz)

def finish(y, sig, info, vend, rng, ps, kind, texts):
    Hf, Wf = int(round(info.H / ps)), int(round(info.W / ps))
    yf = np.array(Image.fromarray(y).resize((Wf, Hf), Image.BILINEAR))
    sf = np.asarray(Image.fromarray(sig).resize((Wf, Hf), Image.BILINEAR))
    n = rng.standard_normal((Hf, Wf), dtype=F32)
    k3 = np.array([0.25, 0.5, 0.25], F32)
    n = ndi.convolve1d(ndi.convolve1d(n, k3, axis=0), k3, axis=1)
    yf += sf * n * F32(1 / 0.375)
    if rng.random() < vend['grid']:
        fl = rng.choice([4.0, 6.0, 7.0, 8.0])
        ph = 2 * np.pi * fl * ps * np.arange(Wf) + rng.uniform(0, 6.3)             # aliased grid lines
        yf += F32(rng.uniform(0.004, 0.015)) * np.cos(ph).astype(F32)[None, :]
    # burned-in annotations (never density related)
    fs = rng.uniform(3.5, 5.5) / ps
    x0, x1, y0 = int(rng.uniform(0.03, 0.08) * Wf), int(rng.uniform(0.92, 0.97) * Wf), int(rng.uniform(0.02, 0.05) * Hf)
    items = [(x0, y0 + j * 1.3 * fs, t, fs, 'la') for j, t in enumerate(texts[0])]
    items += [(x1, Hf - y0 - j * 1.3 * fs, t, fs, 'rd') for j, t in enumerate(texts[1])]
    tm = text_mask((Hf, Wf), items)
    yf[tm] = rng.uniform(0.9, 1.0)
    yf = np.clip(yf, 0, 1)
    return np.rint((1 - yf if vend['mono1'] else yf) * (2 ** vend['bits'] - 1)).astype(np.uint16)

# ---------------------------------------------------------------- vendors, names, DICOM
VENDORS = [
    dict(name='Auberon Medical Systems', model='LumaDR 4343', mod='DX', det=(430, 430), ps=(0.148,), bits=(12, 14),
         mono1=0.0, lut='sig', grid=0.0, shut=0.6, dqe=0.7, wl=0.5),
    dict(name='Kestrel Radiographics', model='KR-CRV2', mod='CR', det=(350, 430), ps=(0.15, 0.175, 0.2), bits=(10, 12),
         mono1=0.8, lut='gam', grid=0.7, shut=0.2, dqe=0.35, wl=0.3),
    dict(name='Novadyne Imaging', model='NovaPanel 3543w', mod='DX', det=(350, 430), ps=(0.144, 0.16), bits=(14, 16),
         mono1=0.25, lut='sig', grid=0.1, shut=0.4, dqe=0.65, wl=0.8),
    dict(name='Helioscope Diagnostics', model='HX-900 Flex', mod='DX', det=(410, 410), ps=(0.16, 0.139), bits=(12, 15),
         mono1=0.0, lut='gam', grid=0.0, shut=0.8, dqe=0.6, wl=0.6),
    dict(name='Meridian Optix', model='MOX CR-35', mod='CR', det=(350, 430), ps=(0.175, 0.2), bits=(10, 12),
         mono1=0.5, lut='sig', grid=0.6, shut=0.0, dqe=0.3, wl=0.2)]
SYL1 = ['VAL', 'MOR', 'KES', 'TRIN', 'DAL', 'OSS', 'BRE', 'LAN', 'FEN', 'QUI', 'HAR', 'PEL', 'ROW', 'SAND']
SYL2 = ['DEN', 'RAW', 'LEY', 'SON', 'VIK', 'TOR', 'MAR', 'ELL', 'BURY', 'FIELD', 'WICK', 'OVA']
GIVEN = {'F': ['ANNA', 'MARTA', 'ELLEN', 'ROSA', 'JUNE', 'IRIS', 'NORA', 'HELGA', 'LIDIA', 'MAEVE'],
         'M': ['ARVID', 'OTTO', 'PAVEL', 'RUBEN', 'SILAS', 'TOMAS', 'EMIL', 'HUGO']}
SITES = ['NORTHGATE RADIOLOGY', 'ST BRIDGET IMAGING', 'LAKESIDE ORTHO XR', 'RIVERBEND CLINIC', 'HILLCREST DX']

def write_dicom(path, pix, a):
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID, fm.MediaStorageSOPInstanceUID = a['sop'], a['sop_uid']
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset(); ds.file_meta = fm
    dx, sp, mv = a['mod'] == 'DX', ['%.4f' % a['ps']] * 2, 2 ** a['bits']
    el = dict(SpecificCharacterSet='ISO_IR 100', ImageType=['ORIGINAL', 'PRIMARY'], SOPClassUID=a['sop'],
              SOPInstanceUID=a['sop_uid'], StudyDate=a['date'], SeriesDate=a['date'], ContentDate=a['date'],
              StudyTime=a['time'], SeriesTime=a['time'], ContentTime=a['time'], AccessionNumber=a['acc'],
              Modality=a['mod'], Manufacturer=a['vendor']['name'], InstitutionName=a['site'],
              ReferringPhysicianName='', StationName=a['station'], StudyDescription='XR LUMBAR SPINE 2 VIEWS',
              SeriesDescription='L-SPINE ' + a['view'], ManufacturerModelName=a['vendor']['model'],
              PatientName=a['pname'], PatientID=a['pid'], PatientBirthDate=a['dob'], PatientSex=a['sex'],
              PatientAge='%03dY' % a['age'], BodyPartExamined='LSPINE', KVP='%.0f' % a['kvp'],
              DistanceSourceToDetector='%.0f' % a['sid'], ViewPosition='AP' if a['view'] == 'AP' else 'LL',
              StudyInstanceUID=a['study_uid'], SeriesInstanceUID=a['series_uid'], StudyID=a['acc'][-6:],
              SeriesNumber=a['series_no'], InstanceNumber=1, PatientOrientation=a['orient'], SamplesPerPixel=1,
              PhotometricInterpretation='MONOCHROME1' if a['mono1'] else 'MONOCHROME2',
              Rows=pix.shape[0], Columns=pix.shape[1], BitsAllocated=16, BitsStored=a['bits'],
              HighBit=a['bits'] - 1, PixelRepresentation=0, BurnedInAnnotation='YES', LossyImageCompression='00')
    if dx:
        el.update(PresentationIntentType='FOR PRESENTATION', ImagerPixelSpacing=sp, DetectorType='SCINTILLATOR',
                  PresentationLUTShape='INVERSE' if a['mono1'] else 'IDENTITY', RescaleIntercept='0',
                  RescaleSlope='1', RescaleType='US')
    if not dx or a['pixsp']:
        el['PixelSpacing'] = sp
    if a['wl']:
        el.update(WindowCenter='%d' % (mv / 2 * a['wj'][0]), WindowWidth='%d' % (mv * a['wj'][1]))
    for k, v in el.items():
        setattr(ds, k, v)
    ds.PixelData = pix.tobytes()
    ds.save_as(path, enforce_file_format=True)

def t_label(t):
    return 0 if t >= -1.0 else (2 if t <= -2.5 else 1)

def draw_t(rng):
    """Class first (balanced thirds), then T within the class; overall range -4.5 .. +2."""
    cls = int(rng.integers(3))
    t = [-1.0 + 3.0 * rng.beta(1.4, 2.0), rng.uniform(-2.49, -1.01), -2.5 - 2.0 * rng.beta(1.2, 1.8)][cls]
    t = round(float(t), 2)
    return t, t_label(t)

def make_study(idx, seed, out_dir, force=None):
    t0 = time.time()
    ss = np.random.SeedSequence([seed, idx])
    r_t, r_a, r_v = [np.random.default_rng(s) for s in ss.spawn(3)]
    T, label = draw_t(r_t)
    force = force or {}
    if 'T' in force:
        T = force['T']; label = t_label(T)
    bmd = round(1.047 + 0.11 * T, 3)
    sex = 'F' if r_a.random() < 0.8 else 'M'
    age = int(np.clip(round(r_a.normal(56 + 4.5 * max(-T, -1.0), 8)), 35, 92))
    age = force.get('age', age)
    pat = build_patient(r_a, T, age, sex)
    vend = dict(VENDORS[int(r_v.integers(len(VENDORS)))])
    vend['bits'] = int(r_v.integers(vend['bits'][0], vend['bits'][1] + 1))
    vend['mono1'] = bool(r_v.random() < vend['mono1'])
    ps = float(r_v.choice(vend['ps']))
    ps = max(ps, max(vend['det']) / 3000.0)
    pid = 'PE%d-%05d' % (seed, idx)
    sdate = datetime.date(2015, 1, 1) + datetime.timedelta(days=int(r_v.integers(0, 3650)))
    dob = sdate - datetime.timedelta(days=int(age * 365.25 + r_v.integers(0, 365)))
    hh, mi = int(r_v.integers(7, 19)), int(r_v.integers(0, 60))
    uid = lambda *k: generate_uid(prefix=UID_PREFIX, entropy_srcs=['phantom_e', str(seed), str(idx)] + list(k))
    common = dict(vendor=vend, mod=vend['mod'], sop=SOP_DX if vend['mod'] == 'DX' else SOP_CR, pid=pid,
                  pname='%s%s^%s' % (r_v.choice(SYL1), r_v.choice(SYL2), r_v.choice(GIVEN[sex])),
                  dob=dob.strftime('%Y%m%d'), sex=sex, age=age, date=sdate.strftime('%Y%m%d'),
                  acc='A%09d' % int(r_v.integers(1e8, 1e9)), site=str(r_v.choice(SITES)),
                  station='XR%02d' % int(r_v.integers(1, 12)), study_uid=uid('study'), ps=ps,
                  bits=vend['bits'], mono1=vend['mono1'], wl=bool(r_v.random() < vend['wl']),
                  pixsp=bool(r_v.random() < 0.5))
    same_series = r_v.random() < 0.4
    rows = []
    for vi, kind in enumerate(('AP', 'LAT')):
        y, sig, info = render_view(kind, pat, vend, r_v, ps)
        tstr = '%02d%02d%02d' % (hh, (mi + 2 * vi) % 60, int(r_v.integers(0, 60)))
        texts = ([common['site'], 'L-SPINE ' + ('AP' if kind == 'AP' else 'LAT')] if r_v.random() < 0.7 else [],
                 ['%s %s:%s' % (sdate.isoformat(), tstr[:2], tstr[2:4]),
                  'RT:%s%s' % tuple(r_v.choice(list('ABCDEFGHJKLMNPRSTW'), 2))]
                 if r_v.random() < 0.6 else [])
        pix = finish(y, sig, info, vend, r_v, ps, kind, texts)
        orient = ['L', 'F'] if kind == 'AP' else (['P', 'F'] if info.geo.sx < 0 else ['A', 'F'])
        fn = '%s_%s.dcm' % (pid, kind)
        a = dict(common, view=kind, kvp=info.kvp, sid=info.sid, time=tstr, orient=orient,
                 sop_uid=uid(kind, 'sop'), series_uid=uid('series') if same_series else uid(kind, 'series'),
                 series_no=1 if same_series else vi + 1, wj=(r_v.uniform(0.97, 1.03), r_v.uniform(0.92, 1.04)))
        write_dicom(os.path.join(out_dir, fn), pix, a)
        rows.append([fn, label, '%.2f' % T, '%.3f' % bmd, pid, kind])
    return rows, time.time() - t0, dict(T=T, age=age, sex=sex, nfrac=pat.nfrac, deg=pat.deg, vendor=vend['name'])

def _job(args):
    return make_study(*args)

def main():
    ap = argparse.ArgumentParser(description='Synthetic lumbar-spine AP/lateral radiographs with known BMD.')
    ap.add_argument('out_dir'); ap.add_argument('n_studies', type=int); ap.add_argument('seed', type=int)
    ap.add_argument('--workers', type=int, default=1)
    a = ap.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)
    jobs = [(i, a.seed, a.out_dir) for i in range(a.n_studies)]
    if a.workers > 1:
        with Pool(a.workers) as pool:
            results = pool.map(_job, jobs, chunksize=1)
    else:
        results = map(_job, jobs)
    rows = []
    for i, (rr, dt, meta) in enumerate(results):
        rows += rr
        print('study %d/%d %s T=%+.2f %.2fs' % (i + 1, a.n_studies, rr[0][4], meta['T'], dt), file=sys.stderr)
    with open(os.path.join(a.out_dir, 'manifest.csv'), 'w', newline='') as fh:
        csv.writer(fh, lineterminator='\n').writerows([['path', 'label', 't_score', 'bmd', 'patient_id', 'view']] + rows)

if __name__ == '__main__':
    main()
