#!/usr/bin/env python3
"""phantom_s.py - lumbar-spine radiograph phantoms drawn as analytic path-length maps.

How it draws
------------
No voxel volume is built.  One set of 3-D patient parameters (level heights, widths,
depths, sacral slope + lordosis, a C-shaped scoliosis with axial rotation, patient
positioning rotation, BMI, age-related degeneration, fractures) places every bony
element as a quadric in patient space: vertebral bodies are elliptic "waisted" columns
(hyperboloid of one sheet) capped by two endplate planes (wedge fractures tilt the top
plane) minus endplate concavity ellipsoids (biconcave fractures deepen them); pedicles
are capped elliptic tubes, laminae / spinous / transverse / articular processes, sacral
segments, sacral ala, lateral masses, iliac wings and aortic plaques are ellipsoids;
lower ribs are 3-D polylines drawn as tubes.  For every detector pixel the ray
(AP: along Z, lateral: along X) is intersected analytically with each quadric, so each
element contributes a chord length; a cortical shell is "outer chord minus inner
chord" (e.g. the chord of an ellipse minus the chord of the shrunken ellipse), the
interior is trabecular.  Soft tissue is an elliptic trunk (subcutaneous + visceral fat
by BMI) with psoas fat stripes, perirenal fat, 3-D bowel-gas ellipsoids and mottled
stool, computed on a coarse grid and upsampled.  Attenuation uses an effective energy
(35-50 keV from kVp and thickness), scatter is a broad blur of the primary, then one
of four acquisition workflows is simulated: digitised film-screen (H&D curve with toe
and shoulder, grain, uneven development, 12-bit log scanner, film edge/ID label;
exposure errors saturate), DR with log + unsharp mask + sigmoid LUT, DR with
multi-scale contrast equalisation, and CR (noisier, blurrier, 10/12 bit).  Collimation,
lead L/R marker, burned-in text, MONOCHROME1, DX or CR SOP class vary.

How bone density shows
----------------------
Trabecular volumetric BMD of each body is 165 + 27*T mg/cm3 hydroxyapatite (7 %
per-patient, 5 % per-level scatter) and multiplies the analytic trabecular chord, so
the projected mineral mass (g/cm2, attenuated with mu/rho(HA) ~ 0.97*(E/40)^-2.2)
falls with T; cortical shell (0.45-1.0 mm) and endplates thin mildly and lose density
with T; the trabecular texture multiplier becomes sparser, coarser and vertically
striated at low T; fractures are more frequent at low T.  Confounders (BMI, exposure,
processing, degeneration with osteophytes / endplate sclerosis / disc narrowing,
aortic plaques) depend on age or chance, not on T given age.
"""
import argparse
import csv
import math
import os
import sys

import numpy as np
from scipy import ndimage
from PIL import Image, ImageDraw, ImageFont

LEVELS = ['T10', 'T11', 'T12', 'L1', 'L2', 'L3', 'L4', 'L5']
# width, depth, height, disc below (mm)
DIMS = {'T10': (33, 26, 20, 5.5), 'T11': (35, 27, 21, 6.0), 'T12': (37, 28, 23, 6.5),
        'L1': (41, 30, 25, 7.5), 'L2': (43, 32, 26, 8.5), 'L3': (46, 33, 27, 9.5),
        'L4': (48, 34, 27, 10.5), 'L5': (51, 35, 26, 10.0)}
TP_LEN = {'T10': 16, 'T11': 13, 'T12': 9, 'L1': 13, 'L2': 18, 'L3': 23, 'L4': 19, 'L5': 15}
DEG = math.pi / 180.0


# ----------------------------------------------------------------------------- geometry
def rx(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def ry(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rz(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def quad(c, R, semi, planes=(), subs=()):
    """Quadric x^T M x <= 1 (semi < 0 -> hyperbolic axis, 0 -> infinite axis)."""
    d = [0.0 if s == 0 else (1.0 / s ** 2 if s > 0 else -1.0 / s ** 2) for s in semi]
    M = R @ np.diag(d) @ R.T
    return (np.asarray(c, float), M, list(planes), list(subs))


def _interval(c, M, k, X, Y, Z):
    d0, d1, d2 = X - c[0], Y - c[1], Z - c[2]
    A = M[k, k]
    B = 2.0 * (d0 * M[0, k] + d1 * M[1, k] + d2 * M[2, k])
    C = (d0 * d0 * M[0, 0] + d1 * d1 * M[1, 1] + d2 * d2 * M[2, 2]
         + 2.0 * (d0 * d1 * M[0, 1] + d0 * d2 * M[0, 2] + d1 * d2 * M[1, 2]) - 1.0)
    if A > 1e-10:
        disc = B * B - 4.0 * A * C
        sq = np.sqrt(np.maximum(disc, 0.0))
        t1 = (-B - sq) / (2 * A)
        t2 = np.where(disc > 0, (-B + sq) / (2 * A), t1)
    else:
        inside = C <= 0
        t1 = np.where(inside, -1e5, 0.0)
        t2 = np.where(inside, 1e5, 0.0)
    return t1, t2


def chord(q, k, X, Y, Z):
    """Analytic length of the ray segment inside quadric q (with planes, minus subs)."""
    c, M, planes, subs = q
    t1, t2 = _interval(c, M, k, X, Y, Z)
    for n, p in planes:
        nd = n[0] * (X - p[0]) + n[1] * (Y - p[1]) + n[2] * (Z - p[2])
        ne = n[k]
        if abs(ne) > 1e-9:
            tb = -nd / ne
            if ne > 0:
                t2 = np.minimum(t2, tb)
            else:
                t1 = np.maximum(t1, tb)
        else:
            t2 = np.where(nd > 0, t1, t2)
    L = np.maximum(t2 - t1, 0.0)
    for cs, Ms, _, _ in subs:
        s1, s2 = _interval(cs, Ms, k, X, Y, Z)
        L = L - np.maximum(np.minimum(t2, s2) - np.maximum(t1, s1), 0.0)
    return np.maximum(L, 0.0)


def xform_quad(q, R, o):
    c, M, planes, subs = q
    return (o + R @ (c - o), R @ M @ R.T,
            [(R @ n, o + R @ (p - o)) for n, p in planes],
            [xform_quad(s, R, o) for s in subs])


def elem(outer, inner=None, rt=0.0, rc=0.0, tex=False, rb=10.0):
    return {'outer': outer, 'inner': inner, 'rt': rt, 'rc': rc, 'tex': tex,
            'c': outer[0], 'rb': rb}


def shell_ellipsoid(c, R, semi, t, rt, rc, tex=False):
    inner = quad(c, R, [max(s - t, 0.3) for s in semi])
    return elem(quad(c, R, semi), inner, rt, rc, tex, rb=max(semi) + 1.0)


def body_elem(c, R, W, D, H, Ha, ct, cb, tc, te, flare, rt, rc):
    a, b = W / 2.0, D / 2.0
    cc = (H / 2.0) / math.sqrt(flare ** 2 - 1.0)
    ntop = np.array([0.0, D, H - Ha])
    ntop /= np.linalg.norm(ntop)
    qtop = np.array([0.0, H / 2.0, -D / 2.0])
    nbot = np.array([0.0, -1.0, 0.0])
    qbot = np.array([0.0, -H / 2.0, 0.0])
    vtc = H / 2.0 + (Ha - H) / 2.0
    ctop = c + R @ np.array([0.0, vtc, 0.0])
    cbot = c + R @ qbot

    def build(sh, tt):
        aa, bb = a - sh, b - sh
        planes = [(R @ ntop, c + R @ (qtop - tt * ntop)), (R @ nbot, c + R @ (qbot - tt * nbot))]
        subs = [quad(ctop, R, [0.8 * a + tt, ct + tt, 0.8 * b + tt]),
                quad(cbot, R, [0.8 * a + tt, cb + tt, 0.8 * b + tt])]
        return quad(c, R, [aa, -cc * aa / a, bb], planes, subs)
    rb = math.sqrt((a * flare) ** 2 + (H / 2.0) ** 2 + b ** 2) + 2.0
    return elem(build(0.0, 0.0), build(tc, te), rt, rc, True, rb)


def cyl_elem(c, R, rxy, length, t, rt, rc):
    """Capped elliptic tube along local w (open shell: cortex only on the tube wall)."""
    n1, n2 = R @ np.array([0, 0, 1.0]), R @ np.array([0, 0, -1.0])
    planes = [(n1, c + n1 * length / 2), (n2, c + n2 * length / 2)]
    outer = quad(c, R, [rxy[0], rxy[1], 0.0], planes)
    inner = quad(c, R, [max(rxy[0] - t, 0.5), max(rxy[1] - t, 0.5), 0.0], planes)
    return elem(outer, inner, rt, rc, False, rb=math.hypot(max(rxy), length / 2) + 1)


# ----------------------------------------------------------------------------- patient
def sample_patient(seed, idx):
    rng = np.random.default_rng([int(seed), int(idx), 7013])
    P = {'seed': int(seed), 'idx': int(idx)}
    cls = int(rng.integers(3))
    T = [rng.uniform(-1.0, 2.2), rng.uniform(-2.49, -1.01), rng.uniform(-4.6, -2.5)][cls]
    T = round(float(T), 2)
    P['T'] = T
    P['label'] = 0 if T >= -1.0 else (2 if T <= -2.5 else 1)
    P['bmd'] = round(1.047 + 0.110 * T, 3)
    P['female'] = bool(rng.random() < 0.75)
    age = int(np.clip(round(62 - 2.0 * T + rng.normal(0, 10)), 22, 95))
    P['age'] = age
    bmi = float(np.clip(rng.normal(27, 5), 16.5, 46))
    P['bmi'] = bmi
    deg = float(np.clip((age - 40) / 45.0 + rng.normal(0, 0.18), 0, 1))
    P['deg'] = deg
    male = not P['female']
    sz = rng.normal(1.0, 0.05) * (1.06 if male else 1.0)

    # bone material
    v0 = max(30.0, (165.0 + 27.0 * T) * (1 + rng.normal(0, 0.07)))
    tc = float(np.clip(0.75 + 0.065 * T + rng.normal(0, 0.05), 0.45, 1.0))
    rc = float(np.clip(880 + 35 * T + rng.normal(0, 30), 620, 1050))
    P.update(v0=v0, tc=tc, rc=rc)

    # fractures (more frequent at low T)
    pfx = float(np.clip(0.03 + 0.16 * (-1.0 - T), 0.02, 0.55))
    fx = {}
    if rng.random() < pfx:
        nfx = 1 + int(rng.random() < 0.35)
        w = np.array([0.6, 1.2, 1.6, 1.6, 1.0, 0.6, 0.4, 0.2])
        for li in rng.choice(8, size=nfx, replace=False, p=w / w.sum()):
            fx[LEVELS[li]] = ('wedge' if rng.random() < 0.6 else 'biconcave',
                              float(rng.uniform(0.2, 0.45)))
    P['fx'] = fx

    # spine shape
    thS = rng.normal(40, 6) * DEG
    lord = float(np.clip(rng.normal(52, 9) - 0.1 * (age - 60), 28, 75)) * DEG
    scol = rng.normal(0, 2.5) * DEG
    if rng.random() < 0.12:
        scol = rng.choice([-1, 1]) * rng.uniform(6, 14) * DEG
    dims = {}
    for lv in LEVELS:
        W, D, H, dsc = DIMS[lv]
        f = sz * (1 + rng.normal(0, 0.025))
        narrow = 1.0
        if lv in ('L3', 'L4', 'L5'):
            narrow = 1 - deg * rng.uniform(0.1, 0.55)
        elif lv.startswith('L'):
            narrow = 1 - deg * rng.uniform(0.0, 0.3)
        dims[lv] = (W * f, D * f, H * f, dsc * sz * narrow * (1 + rng.normal(0, 0.05)))
    SL = sum(dims[lv][2] + dims[lv][3] for lv in LEVELS[3:])

    def theta(s):
        g = min(s / SL, 1.0)
        th = thS - lord * (1 - (1 - g) ** 1.7)
        if s > SL:
            th -= 14 * DEG * (s - SL) / 70.0
        return th

    def psi(s):
        return scol * math.cos(math.pi * min(s / SL, 1.25))

    def udir(th, ps):
        return rz(ps) @ rx(th) @ np.array([0, 1.0, 0])

    els = []
    pos = np.zeros(3)
    s = 0.0
    centers = {}
    rt_lv = {}
    for lv in reversed(LEVELS):
        W, D, H, dsc = dims[lv]
        sm = s + dsc / 2
        pos = pos + dsc * udir(theta(sm), psi(sm))
        s += dsc
        sc = s + H / 2
        th, ps = theta(sc), psi(sc)
        ph = -0.6 * scol * math.sin(math.pi * min(sc / SL, 1.0)) + rng.normal(0, 1.5) * DEG
        R = rz(ps) @ rx(th) @ ry(ph)
        u = udir(th, ps)
        c = pos + (H / 2) * u
        pos = c + (H / 2) * u
        s += H
        centers[lv] = c
        rt = v0 * (1 + rng.normal(0, 0.05))
        rt_lv[lv] = rt
        Ha, ct, cb = H, 1.2 + rng.uniform(0, 1.0), 1.2 + rng.uniform(0, 1.0)
        Hb = H
        if lv == 'L5':
            Ha = H * 1.0
        if lv in fx:
            kind, sev = fx[lv]
            if kind == 'wedge':
                Ha = H * (1 - sev)
                ct += 1.0
            else:
                ct = max(ct, sev * H * 0.55)
                cb = max(cb, sev * H * 0.45)
                Hb = H * (1 - 0.15 * sev)
            rt *= 1.08       # compacted trabeculae
        flare = 1.06 + rng.uniform(0, 0.05) + 0.03 * deg
        te = tc * 1.15 + 0.5 * deg * rng.uniform(0, 1)
        els.append(body_elem(c, R, W, D, Hb, min(Ha, Hb), ct, cb, tc, te, flare, rt, rc))
        a, b = W / 2, D / 2
        # endplate sclerosis and osteophytes (degeneration, age-driven)
        if lv.startswith('L') and rng.random() < deg:
            for sgn in (1, -1):
                th_s = rng.uniform(1.5, 4.0) * deg
                cs = c + R @ np.array([0, sgn * (Hb / 2 - te - th_s / 2), 0])
                els.append(elem(quad(cs, R, [0.82 * a, th_s / 2 + 0.3, 0.82 * b]),
                                rt=rng.uniform(120, 300) * deg, rb=a + 2))
        if lv.startswith('L') or lv == 'T12':
            for _ in range(rng.poisson(2.2 * deg)):
                sgn = rng.choice([-1, 1])
                ang = rng.choice([0.0, math.pi, rng.uniform(0.3, 2.8)])
                L = rng.uniform(2.5, 7.0)
                loc = np.array([(a + L * 0.45) * math.cos(ang), sgn * (Hb / 2 - 0.5),
                                (b + L * 0.45) * math.sin(ang)])
                Ro = R @ ry(-ang)
                els.append(shell_ellipsoid(c + R @ loc, Ro, [L * 0.6 + 1, 2.2, 3.5], 0.6,
                                           rt * 1.2, rc * 0.9))
        # posterior elements
        lum = lv.startswith('L')
        li = LEVELS.index(lv) - 3
        ipd = (21 + 1.6 * li) * sz if lum else 18 * sz
        pw = (7.5 + 1.3 * max(li, 0)) * sz if lum else 6.5 * sz
        tpost = float(np.clip(0.85 + 0.05 * T, 0.55, 1.05))
        rtp = rt * 1.4
        rcp = rc * 0.72
        fh = 1 + 0.35 * deg * rng.uniform(0.3, 1)  # facet hypertrophy
        for sx in (-1, 1):
            conv = (5 + 5 * max(li, 0)) * DEG if lum else 3 * DEG
            xp = sx * (ipd / 2 + pw / 2)
            Rp = R @ ry(-sx * conv)
            els.append(cyl_elem(c + R @ np.array([xp, 0.12 * H, -b - 6]), Rp,
                                (pw / 2, 7.5 * sz), 14 * sz, tpost, rtp, rc))
            # lamina
            gl = -sx * math.atan2(16, ipd / 2 + pw / 2)
            els.append(shell_ellipsoid(c + R @ np.array([sx * (ipd / 2 + pw / 2) / 2, -0.05 * H, -b - 20]),
                                       R @ ry(gl), [10 * sz, 0.42 * H, 3.5], tpost, rtp, rcp))
            # transverse process
            Lt = TP_LEN[lv] * sz
            gt = sx * (8 if lum else 32) * DEG
            root = np.array([sx * (ipd / 2 + pw), 0.15 * H, -b - 8])
            ctp = root + ry(gt) @ np.array([sx * Lt / 2, 0, 0])
            tv = 7.0 if lv == 'L5' else 4.5
            els.append(shell_ellipsoid(c + R @ ctp, R @ ry(gt), [Lt / 2 + 2, tv, 5.0], tpost, rtp, rcp))
            # articular processes
            els.append(shell_ellipsoid(c + R @ np.array([sx * (ipd / 2 + pw * 0.55 + 1), H / 2 + 2.5, -b - 15]),
                                       R, [4.8 * fh, 8.0, 6.0 * fh], tpost, rtp * fh, rcp))
            els.append(shell_ellipsoid(c + R @ np.array([sx * (ipd / 2 + pw * 0.55 - 2.5), -H / 2 - 3.0, -b - 21]),
                                       R, [4.6 * fh, 8.5, 5.5 * fh], tpost, rtp * fh, rcp))
        # spinous process
        al = (-12 if lum else -38) * DEG
        Lsp = (30 if lum else 36) * sz
        J = np.array([0, -0.05 * H, -b - 26])
        csp = J + rx(al) @ np.array([0, 0, -Lsp / 2])
        els.append(shell_ellipsoid(c + R @ csp, R @ rx(al),
                                   [3.4, (0.36 if lum else 0.22) * H + 1, Lsp / 2], tpost, rtp, rcp))
    P['centers'] = centers

    # --- sacrum
    Ws = [48, 38, 30, 23, 17]
    Ts = [106, 88, 68, 48, 30]
    Ds = [36, 28, 22, 17, 13]
    Hs = [27, 22, 18, 14, 11]
    c = np.zeros(3)
    prev_bot = np.zeros(3)
    vs = v0 * (1 + rng.normal(0, 0.05))
    sac_centers = []
    for i in range(5):
        th = thS - i * 17 * DEG
        R = rx(th) @ ry(0)
        u = R @ np.array([0, 1.0, 0])
        H = Hs[i] * sz
        c = prev_bot - (H / 2 + (0 if i == 0 else 1.5)) * u
        prev_bot = c - (H / 2) * u
        sac_centers.append(c)
        W, D = Ws[i] * sz, Ds[i] * sz
        if i == 0:
            els.append(body_elem(c, R, W, D, H, H, 1.5, 0.8, tc, tc, 1.07, vs, rc))
        else:
            els.append(shell_ellipsoid(c, R, [W / 2, H / 2 + 1, D / 2], tc, vs, rc, tex=False))
        lm = (Ts[i] - Ws[i]) / 4 * sz
        for sx in (-1, 1):
            els.append(shell_ellipsoid(c + R @ np.array([sx * (W / 2 + lm), -1 if i else 2, -2 if i else -4]),
                                       R @ rz(sx * 12 * DEG),
                                       [lm + 10, 0.42 * H + (3 if i == 0 else 1.0), D / 2 * (0.85 if i == 0 else 0.7)],
                                       tc * 0.7, vs * 0.95, rc * 0.8))
            if i < 4:
                rf = (4.5 - 0.6 * i) * sz
                fc = c + R @ np.array([sx * (W / 2 + rf + 1), -H / 2, 0])
                qf = cyl_elem(fc, R, (rf, rf), D * 0.8, 0.3, 0, 0)
                els.append(elem(qf['outer'], None, rt=-vs * 0.8, rb=qf['rb']))
        els.append(shell_ellipsoid(c + R @ np.array([0, 0, -D / 2 - 9]), R, [3, H / 2, 5], 0.8, vs * 1.2, rc))
    P['sac'] = sac_centers
    # --- ilium
    zS = sac_centers[0][2]
    ycr = centers['L5'][1] + rng.uniform(-4, 10)
    vi = v0 * 0.9 * (1 + rng.normal(0, 0.05))
    pw_s = 1.0 + 0.04 * (0 if P['female'] else 1) + rng.normal(0, 0.03)
    for sx in (-1, 1):
        beta = 45 * DEG
        e1 = np.array([sx * math.cos(beta), 0, math.sin(beta)])
        e2 = np.array([sx * math.sin(14 * DEG), math.cos(14 * DEG), 0])
        e2 -= e1 * (e1 @ e2)
        e2 /= np.linalg.norm(e2)
        e3 = np.cross(e1, e2)
        Ri = np.stack([e1, e2, e3], axis=1)
        s1, s2 = 68 * sz * pw_s, 78 * sz
        ci = np.array([sx * 40 * pw_s, 0, zS - 45]) + s1 * e1
        ci[1] = ycr - s2 * 0.97
        els.append(shell_ellipsoid(ci, Ri, [s1, s2, 4.5], 1.1, vi, rc * 0.9))
        els.append(shell_ellipsoid(np.array([sx * 88 * pw_s, ycr - 185, zS + 25]), rz(-sx * 20 * DEG),
                                   [30, 28, 30], 1.2, vi, rc * 0.9))
    # --- aortic plaques (age / degeneration, not T)
    za = centers['L3'][2] + DIMS['L3'][1] / 2 * sz + 14
    for _ in range(rng.poisson(6 * deg ** 1.5)):
        yl = rng.uniform(centers['L4'][1] - 10, centers['L1'][1])
        ang = rng.uniform(0, 2 * math.pi)
        cp = np.array([14 + 10 * math.cos(ang), yl, za + 10 * math.sin(ang)])
        els.append(elem(quad(cp, ry(ang), [1.2, rng.uniform(2, 7), rng.uniform(2, 5)]),
                        rt=rng.uniform(500, 900), rb=8))
    P['els'] = els

    # --- ribs (3-D polylines)
    a0 = (145 + 4.5 * (bmi - 25)) * (1.05 if male else 1.0) * rng.normal(1, 0.04)
    b0 = (105 + 4.2 * (bmi - 25)) * (1.04 if male else 1.0) * rng.normal(1, 0.04)
    a0, b0 = max(a0, 105), max(b0, 75)
    fsub = float(np.clip(8 + 2.2 * (bmi - 22) + rng.normal(0, 3) + (4 if P['female'] else 0), 4, 65))
    zb3 = centers['L3'][2]
    zback = zb3 - DIMS['L3'][1] * sz / 2 - 62 - fsub * 0.8
    zt = zback + b0
    ribs = []
    for lv, beta1, r in (('T10', 1.9, 5.0), ('T11', 1.6, 4.6), ('T12', 1.15, 4.0)):
        c = centers[lv]
        if lv == 'T12' and rng.random() < 0.15:
            beta1 = 0.9
        for sx in (-1, 1):
            bb = np.linspace(0.30, beta1, 18)
            Rx_, Rz_ = 0.80 * (a0 - fsub), 0.75 * (b0 - fsub)
            x = sx * Rx_ * np.sin(bb) * 1.05
            z = (zt - 0.15 * b0) - Rz_ * np.cos(bb)
            xa = np.abs(x) - 20
            y = c[1] + 4 - math.tan(rng.uniform(18, 30) * DEG) * xa - 0.006 * xa ** 2
            x[0], z[0] = sx * 20, c[2] - DIMS[lv][1] / 2 - 4
            ribs.append((np.stack([x, y, z], 1), r * sz))
    P['ribs'] = ribs

    # --- soft tissue
    ysp = [centers[lv][1] for lv in LEVELS] + [sac_centers[0][1] - 15, sac_centers[0][1] - 90]
    zsp = [centers[lv][2] - dims[lv][1] / 2 for lv in LEVELS] + [sac_centers[0][2] - 8 - Ds[0] * sz / 2,
                                                                 sac_centers[0][2] - 30 - Ds[0] * sz / 2]
    order = np.argsort(ysp)
    zbk = np.array(zsp)[order] - 62 - 0.8 * fsub
    zbk = ndimage.gaussian_filter1d(zbk, 1.0, mode='nearest')
    P['trunk'] = dict(a0=a0, b0=b0, fsub=fsub, zt=zt, xt=rng.normal(0, 4),
                      yback=np.array(ysp)[order], zback=zbk, zback0=zback,
                      vf=float(np.clip(0.08 + 0.012 * (bmi - 22) + (0.05 if male else 0), 0.03, 0.38)),
                      belly=float(max(0, bmi - 27) * 2.0))
    gas = []
    yL2, yL4 = centers['L2'][1], centers['L4'][1]
    zant = zt + 0.35 * b0

    def gas_blob(cx, cy, cz, sa, frac, stool=False):
        R = rz(rng.uniform(-0.6, 0.6)) @ ry(rng.uniform(0, math.pi))
        gas.append((quad([cx, cy, cz], R, sa), frac, stool))
    for _ in range(rng.integers(2, 7)):    # transverse colon
        gas_blob(rng.uniform(-0.55, 0.55) * a0, rng.uniform(yL4, yL2 + 20), zant + rng.normal(0, 10),
                 [rng.uniform(12, 30), rng.uniform(10, 22), rng.uniform(10, 20)], rng.uniform(0.5, 1.0),
                 rng.random() < 0.45)
    for sx in (-1, 1):                        # ascending / descending colon
        for _ in range(rng.integers(0, 4)):
            gas_blob(sx * rng.uniform(0.45, 0.68) * a0, rng.uniform(-40, yL2 + 40), zt + rng.normal(0, 15),
                     [rng.uniform(12, 22), rng.uniform(15, 35), rng.uniform(12, 20)], rng.uniform(0.4, 1.0),
                     rng.random() < 0.5)
    for _ in range(rng.integers(0, 8)):      # small bowel
        gas_blob(rng.uniform(-0.45, 0.45) * a0, rng.uniform(-60, yL2), zt + rng.normal(0.1 * b0, 20),
                 [rng.uniform(5, 12), rng.uniform(4, 9), rng.uniform(5, 10)], 1.0, False)
    for _ in range(rng.integers(0, 3)):      # rectosigmoid
        gas_blob(rng.normal(0, 25), rng.uniform(-130, -50), zS + rng.uniform(-10, 40),
                 [rng.uniform(12, 25), rng.uniform(12, 25), rng.uniform(10, 20)], rng.uniform(0.5, 1.0),
                 rng.random() < 0.6)
    P['gas'] = gas
    kid = []
    fk = 4 + 0.25 * fsub
    for sx in (-1, 1):
        ck = np.array([sx * rng.uniform(48, 62), centers['L2'][1] + (8 if sx > 0 else -8) + rng.normal(0, 8),
                       centers['L2'][2] - 12])
        Rk = rz(sx * 18 * DEG) @ ry(sx * 30 * DEG)
        kid.append((quad(ck, Rk, [28 + fk, 55 + fk, 22 + fk]), quad(ck, Rk, [28, 55, 22])))
    P['kidneys'] = kid
    P['psoas'] = [(centers['L1'] + np.array([sx * DIMS['L1'][0] * sz / 2, 0, 0]),
                   np.array([sx * rng.uniform(62, 78), -40, 0])) for sx in (-1, 1)]

    # --- acquisition workflow (per patient)
    u = rng.random()
    P['workflow'] = 'film' if u < 0.5 else ('dr_usm' if u < 0.7 else ('dr_ms' if u < 0.85 else 'cr'))
    P['mono1'] = bool(rng.random() < 0.2)
    P['date'] = (int(rng.integers(1994, 2009)) if P['workflow'] == 'film' else int(rng.integers(2006, 2025)),
                 int(rng.integers(1, 13)), int(rng.integers(1, 29)))
    P['name'] = fake_name(rng, P['female'])
    return P


def fake_name(rng, female):
    syl = ['ka', 'lo', 'ren', 'mi', 'sto', 'var', 'del', 'ni', 'bor', 'te', 'sa', 'quin', 'ha', 'ul', 'pe']
    fam = ''.join(rng.choice(syl, size=int(rng.integers(2, 4)))).capitalize()
    giv = ''.join(rng.choice(syl, size=2)).capitalize() + ('a' if female else 'o')
    return f'{fam}^{giv}'


# ----------------------------------------------------------------------------- image helpers
def _down(img, f):
    H, W = img.shape
    Hp, Wp = -(-H // f) * f, -(-W // f) * f
    if (Hp, Wp) != (H, W):
        img = np.pad(img, ((0, Hp - H), (0, Wp - W)), mode='edge')
    return img.reshape(Hp // f, f, Wp // f, f).mean(axis=(1, 3))


def _up(small, f, shape):
    big = ndimage.zoom(small, f, order=1, mode='nearest', grid_mode=True)
    return big[:shape[0], :shape[1]]


def lowpass(img, sigma):
    f = int(max(1, min(16, sigma // 2.5)))
    if f == 1:
        return ndimage.gaussian_filter(img, sigma, mode='nearest')
    s = ndimage.gaussian_filter(_down(img, f), sigma / f, mode='nearest')
    return _up(s, f, img.shape).astype(np.float32)


def text_mask(text, px):
    px = max(8, int(px))
    try:
        font = ImageFont.load_default(size=px)
    except Exception:
        font = ImageFont.load_default()
    l, t, r, b = font.getbbox(text)
    im = Image.new('L', (max(1, r - l + 2), max(1, b - t + 2)), 0)
    ImageDraw.Draw(im).text((-l + 1, -t + 1), text, fill=255, font=font)
    if im.size[1] < 0.7 * px:
        f = px / im.size[1]
        im = im.resize((max(1, int(im.size[0] * f)), px), Image.NEAREST)
    return np.asarray(im) > 110


def stamp(img, mask, r, c, value, mode='set'):
    H, W = img.shape
    h, w = mask.shape
    r0, c0 = max(r, 0), max(c, 0)
    r1, c1 = min(r + h, H), min(c + w, W)
    if r1 <= r0 or c1 <= c0:
        return
    m = mask[r0 - r:r1 - r, c0 - c:c1 - c]
    sub = img[r0:r1, c0:c1]
    if mode == 'add':
        sub[m] += value
    else:
        sub[m] = value


def sigmoid_lut(x, slope, mid):
    lo = 1 / (1 + np.exp(-slope * (-0.15 - mid)))
    hi = 1 / (1 + np.exp(-slope * (1.15 - mid)))
    y = 1 / (1 + np.exp(-slope * (x - mid)))
    return np.clip((y - lo) / (hi - lo), 0, 1)


# ----------------------------------------------------------------------------- rendering
def render_view(P, view):
    rng = np.random.default_rng([P['seed'], P['idx'], 11 if view == 'AP' else 12])
    ap = view == 'AP'
    wf = P['workflow']
    cen = P['centers']
    tr = P['trunk']
    # ---- detector geometry
    ps = float(rng.uniform(0.26, 0.35))
    Hmm = float(rng.uniform(340, 410))
    Wmm = float(rng.uniform(270, 330) if ap else rng.uniform(250, 300))
    rows = min(1400, int(round(Hmm / ps)))
    cols = min(1400, int(round(Wmm / ps)))
    Hmm, Wmm = rows * ps, cols * ps
    yc = cen['L3'][1] + rng.normal(-8, 10)
    ytop = yc + Hmm / 2
    sgn = 1.0
    if ap:
        hc = rng.normal(0, 8)
        k = 2
    else:
        sgn = 1.0 if rng.random() < 0.5 else -1.0   # +1: anterior on image right
        hc = sgn * (cen['L3'][2] - 18 + rng.normal(0, 10))
        k = 0
    h0 = hc - Wmm / 2
    # positioning rotation about the vertical axis through the spine
    rho = rng.normal(0, 3.0 if ap else 4.0) * DEG
    Rg = ry(rho)
    o = np.array([0.0, 0.0, cen['L3'][2]])

    def world(hs, ys):
        hs = hs[None, :]
        ys = ys[:, None]
        if ap:
            return hs, ys, 0.0
        return 0.0, ys, sgn * hs

    # ---- bones on the fine grid
    acc_t = np.zeros((rows, cols), np.float32)
    acc_o = np.zeros((rows, cols), np.float32)
    tex_box = [rows, 0, cols, 0]
    for e in P['els']:
        outer = xform_quad(e['outer'], Rg, o)
        inner = xform_quad(e['inner'], Rg, o) if e['inner'] is not None else None
        cc = outer[0]
        hcn = cc[0] if ap else sgn * cc[2]
        rb = e['rb']
        j0 = max(0, int(math.floor((hcn - rb - h0) / ps)))
        j1 = min(cols, int(math.ceil((hcn + rb - h0) / ps)) + 1)
        i0 = max(0, int(math.floor((ytop - cc[1] - rb) / ps)))
        i1 = min(rows, int(math.ceil((ytop - cc[1] + rb) / ps)) + 1)
        if j1 <= j0 or i1 <= i0:
            continue
        hs = h0 + (np.arange(j0, j1) + 0.5) * ps
        ys = ytop - (np.arange(i0, i1) + 0.5) * ps
        X, Y, Z = world(hs, ys)
        Lo = chord(outer, k, X, Y, Z)
        if inner is not None:
            Li = chord(inner, k, X, Y, Z)
            mt = Li * e['rt']
            mc = (Lo - Li) * e['rc']
        else:
            mt = Lo * e['rt']
            mc = 0.0
        if e['tex']:
            acc_t[i0:i1, j0:j1] += mt
            acc_o[i0:i1, j0:j1] += mc
            tex_box = [min(tex_box[0], i0), max(tex_box[1], i1), min(tex_box[2], j0), max(tex_box[3], j1)]
        else:
            acc_o[i0:i1, j0:j1] += mt + mc
    # ribs: tubes around projected 3-D polylines
    vr = P['v0'] * 0.9
    for pts, r in P['ribs']:
        pts = (o + (pts - o) @ Rg.T)
        ph = pts[:, 0] if ap else sgn * pts[:, 2]
        pv = pts[:, 1]
        j0 = max(0, int((ph.min() - r - h0) / ps))
        j1 = min(cols, int((ph.max() + r - h0) / ps) + 2)
        i0 = max(0, int((ytop - pv.max() - r) / ps))
        i1 = min(rows, int((ytop - pv.min() + r) / ps) + 2)
        if j1 <= j0 or i1 <= i0:
            continue
        hs = (h0 + (np.arange(j0, j1) + 0.5) * ps)[None, :]
        ys = (ytop - (np.arange(i0, i1) + 0.5) * ps)[:, None]
        d2 = np.full((i1 - i0, j1 - j0), 1e9)
        for q in range(len(ph) - 1):
            ax, ay = ph[q], pv[q]
            dx, dy = ph[q + 1] - ax, pv[q + 1] - ay
            ll = dx * dx + dy * dy + 1e-9
            t = np.clip(((hs - ax) * dx + (ys - ay) * dy) / ll, 0, 1)
            d2 = np.minimum(d2, (hs - ax - t * dx) ** 2 + (ys - ay - t * dy) ** 2)
        ri = r - 1.1
        Lo = 2 * np.sqrt(np.maximum(r * r - d2, 0))
        Li = 2 * np.sqrt(np.maximum(ri * ri - d2, 0))
        acc_o[i0:i1, j0:j1] += Li * vr + (Lo - Li) * P['rc'] * 0.7
    # trabecular texture: sparser / coarser / vertically striated at low T
    T = P['T']
    lo = float(np.clip((1.0 - T) / 5.0, 0, 1))
    tex = np.ones((rows, cols), np.float32)
    i0, i1, j0, j1 = tex_box
    if i1 > i0 and j1 > j0:
        sh = (i1 - i0, j1 - j0)
        s_mm = 0.40 + 0.55 * lo
        sx = s_mm / ps
        z1 = rng.standard_normal(sh).astype(np.float32)
        z2 = rng.standard_normal(sh).astype(np.float32)
        iso = ndimage.gaussian_filter(z1, sx) - ndimage.gaussian_filter(z1, 2.2 * sx)
        an = 1.4 + 3.0 * lo
        ver = ndimage.gaussian_filter(z2, (sx * an, sx * 0.8)) - ndimage.gaussian_filter(z2, (2.2 * sx * an, 1.8 * sx))
        iso /= iso.std() + 1e-6
        ver /= ver.std() + 1e-6
        w = 0.75 - 0.55 * lo
        f = w * iso + (1 - w) * ver
        f /= f.std() + 1e-6
        amp = 0.13 + 0.30 * lo
        t_ = np.exp(amp * f)
        tex[i0:i1, j0:j1] = t_ / t_.mean()
    mass = (acc_t * tex + acc_o)
    np.maximum(mass, 0, out=mass)
    del acc_t, acc_o, tex

    # ---- soft tissue on a coarse grid
    cf = 4
    rc_, cc_ = -(-rows // cf), -(-cols // cf)
    hs = h0 + (np.arange(cc_) + 0.5) * cf * ps
    ys = ytop - (np.arange(rc_) + 0.5) * cf * ps
    Yc = ys[:, None]
    a = tr['a0'] * (1 + 0.12 / (1 + np.exp(-(20 - Yc) / 25.0)) + 0.05 / (1 + np.exp(-(Yc - 200) / 30.0)))
    zbk = np.interp(Yc, tr['yback'], tr['zback'])
    zfr = tr['zback0'] + 2 * tr['b0'] + tr['belly'] * np.exp(-((Yc - cen['L4'][1]) / 90.0) ** 2)
    dep = np.maximum(zfr - zbk, 60.0)
    bp = 0.34 * dep
    ba = dep - bp
    f = tr['fsub']
    if ap:
        Xc = hs[None, :] - tr['xt']
        outer = (bp + ba) * np.sqrt(np.maximum(1 - (Xc / a) ** 2, 0))
        inner = (bp + ba - 2 * f) * np.sqrt(np.maximum(1 - (Xc / (a - f)) ** 2, 0))
    else:
        zc = zbk + bp
        Zc = sgn * hs[None, :] - zc
        bz = np.where(Zc < 0, bp, ba)
        outer = 2 * a * np.sqrt(np.maximum(1 - (Zc / bz) ** 2, 0))
        inner = 2 * (a - f) * np.sqrt(np.maximum(1 - (Zc / (bz - f)) ** 2, 0))
    Lf = (outer - inner) + tr['vf'] * inner
    Lw = (1 - tr['vf']) * inner
    thick = float(np.median(outer[rc_ // 3: 2 * rc_ // 3, cc_ // 2 - 2: cc_ // 2 + 2]))
    X, Y, Z = world(hs, ys)
    for qo, qi in P['kidneys']:
        qo, qi = xform_quad(qo, Rg, o), xform_quad(qi, Rg, o)
        fat = chord(qo, k, X, Y, Z) - chord(qi, k, X, Y, Z)
        Lf = Lf + fat
        Lw = Lw - fat
    if ap:
        for p0, p1 in P['psoas']:
            dx, dy = p1[0] - p0[0], p1[1] - p0[1]
            ll = math.hypot(dx, dy)
            sd = ((X - p0[0]) * dy - (Y - p0[1]) * dx) / ll * np.sign(p1[0])
            t = ((X - p0[0]) * dx + (Y - p0[1]) * dy) / ll ** 2
            inside = (t > 0) & (t < 1.1)
            fade = np.clip(t * 4, 0, 1) * np.clip((1.1 - t) * 4, 0, 1)
            band = 10 * np.exp(-((sd - 3) / 4.0) ** 2) * inside * fade
            Lf = Lf + band
            Lw = Lw - band
    mott = None
    for q, frac, stool in P['gas']:
        qq = xform_quad(q, Rg, o)
        L = chord(qq, k, X, Y, Z)
        if stool:
            if mott is None:
                zz = ndimage.gaussian_filter(rng.standard_normal((rc_, cc_)), 0.9)
                mott = np.clip((zz - 0.1) * 4.0, 0, 1)
            L = L * mott * 0.55
        Lw = Lw - frac * L
    Lw = np.maximum(Lw, 0)
    # ---- acquisition parameters
    kvp = float(np.clip((rng.uniform(72, 85) if ap else rng.uniform(82, 100)) + 0.4 * (P['bmi'] - 26), 70, 100))
    E = float(np.clip(12 + 0.33 * kvp + 0.025 * (thick - 200), 35, 50))
    mu_w = 0.02683 * (E / 40) ** -0.75
    mu_f = 0.87 * mu_w
    mu_b = 0.97 * (E / 40) ** -2.2 * 1e-4     # per (mg/cm3 * mm)
    att_s = _up((mu_w * Lw + mu_f * Lf).astype(np.float32), cf, (rows, cols))
    att = att_s + mu_b * mass
    del att_s, mass
    # lead marker
    letter = ('L' if rng.random() < 0.8 else 'R') if ap else ('L' if rng.random() < 0.75 else 'R')
    mpx = int(11 / ps)
    mk = text_mask(letter, mpx)
    box = np.zeros((mk.shape[0] + 10, mk.shape[1] + 10), bool)
    box[:3, :] = box[-3:, :] = True
    box[:, :3] = box[:, -3:] = True
    # collimation
    cm = rng.random()
    coll = 'none' if cm < 0.3 else ('white' if cm < 0.7 or wf == 'film' else 'black')
    ins = [0, 0, 0, 0] if coll == 'none' else [int(rng.uniform(5, 30 if ap else 45) / ps) for _ in range(4)]
    if ap and coll != 'none':
        ins[2], ins[3] = int(rng.uniform(20, 70) / ps), int(rng.uniform(20, 70) / ps)
    r0, r1, c0, c1 = ins[0], rows - ins[1], ins[2], cols - ins[3]
    if ap:
        mc_ = c1 - box.shape[1] - int(12 / ps) if letter == 'L' else c0 + int(12 / ps)
    else:
        mc_ = c0 + int(12 / ps) if rng.random() < 0.5 else c1 - box.shape[1] - int(12 / ps)
    mr_ = r0 + int(rng.uniform(15, 60) / ps)
    stamp(att, mk, mr_ + 5, mc_ + 5, 8.0, 'add')
    stamp(att, box, mr_, mc_, 0.15, 'add')
    prim = np.exp(-att, dtype=np.float32)
    del att
    heel = rng.uniform(-0.08, 0.08)
    prim *= (1 + heel * ((np.arange(rows) - rows / 2) / rows))[:, None].astype(np.float32)
    cmask = np.zeros((rows, cols), np.float32)
    cmask[r0:r1, c0:c1] = 1
    if coll != 'none':
        cmask = ndimage.gaussian_filter(cmask, 1.2 / ps)
    prim *= cmask
    # scatter: broad blur of the primary
    grid = rng.random() < (0.55 if wf == 'film' else 0.85)
    spr = (0.5 + thick / 300.0) * (1.0 if grid else 2.8) * rng.uniform(0.7, 1.3)
    fs = 8
    ps_small = _down(prim, fs)
    sig = rng.uniform(22, 40) / (ps * fs)
    bl = ndimage.gaussian_filter(ps_small, sig, mode='constant')
    body = ps_small < 0.3 * ps_small.max()
    kk = spr * ps_small[body].mean() / max(bl[body].mean(), 1e-12) if body.any() else 0.0
    sig_ = prim + _up((kk * bl).astype(np.float32), fs, (rows, cols))
    del prim
    # AEC
    ic = int((ytop - cen['L3'][1]) / ps)
    jc = int(((0 if ap else sgn * (cen['L3'][2] - 5)) - h0) / ps)
    roi = sig_[max(0, ic - int(40 / ps)):ic + int(40 / ps), max(0, jc - int(25 / ps)):jc + int(25 / ps)]
    ref = float(np.median(roi)) if roi.size else float(np.median(sig_))
    if wf == 'film':
        Nt, ferr = rng.uniform(600, 1500), 2 ** float(np.clip(rng.normal(0, 0.8), -1.9, 1.9))
    elif wf == 'cr':
        Nt, ferr = rng.uniform(200, 700), 2 ** rng.normal(0, 0.5)
    else:
        Nt, ferr = rng.uniform(400, 2000), 2 ** rng.normal(0, 0.5)
    N0 = Nt / max(ref, 1e-30)
    Nimg = sig_ * np.float32(N0)
    del sig_
    Nimg += np.sqrt(np.maximum(Nimg, 0)) * rng.standard_normal((rows, cols), dtype=np.float32)
    blur = {'film': rng.uniform(0.9, 1.7), 'cr': rng.uniform(0.9, 1.5)}.get(wf, rng.uniform(0.5, 0.9)) * 0.3 / ps
    Nimg = ndimage.gaussian_filter(Nimg, blur)
    np.maximum(Nimg, 0.5, out=Nimg)
    ndirect = N0 * (1 + kk)
    roimask = (cmask[::4, ::4] > 0.9) & (Nimg[::4, ::4] < 0.35 * ndirect)
    info = {'kvp': kvp, 'E': E, 'ps': ps, 'rows': rows, 'cols': cols, 'coll': coll, 'letter': letter,
            'grid': grid, 'ferr': float(ferr), 'sgn': sgn}
    # ---- workflows -> display image g (bright = attenuating)
    if wf == 'film':
        g = film_pipeline(rng, Nimg, Nt, ferr, ps, cmask, info, P, view)
    else:
        v = -np.log(Nimg)
        sel = v[::4, ::4][roimask] if roimask.sum() > 100 else v[::4, ::4].ravel()
        plo, phi = np.percentile(sel, [0.5, rng.uniform(97.5, 99.8)])
        n = (v - plo) / max(phi - plo, 1e-3)
        del v
        nc = np.clip(n, -0.05, 1.1)      # halo suppression: air / collimator do not drive the low-pass
        if wf == 'dr_usm':
            LP = lowpass(nc, rng.uniform(6, 25) / ps)
            kusm = rng.uniform(0.5, 1.8)
            comp = rng.uniform(0.0, 0.45)
            n2 = (n - LP) * (1 + kusm) + (LP - 0.5) * (1 - comp) + 0.5
            g = sigmoid_lut(n2, rng.uniform(4, 7), rng.uniform(0.45, 0.6))
            info['proc'] = f'LOG USM k={kusm:.2f}'
        elif wf == 'dr_ms':
            sigs = [1.2, 3.5, 10.0, 30.0]
            Ls = [n] + [lowpass(nc, s_ * 0.3 / ps) for s_ in sigs]
            p = rng.uniform(0.6, 0.8)
            wts = [1.0, rng.uniform(1.2, 1.8), rng.uniform(1.1, 1.6), 1.0]
            out = (Ls[-1] - 0.5) * rng.uniform(0.35, 0.7) + 0.5
            for i in range(4):
                d = Ls[i] - Ls[i + 1]
                ref_ = float(np.std(d[::8, ::8])) + 1e-6
                out += wts[i] * np.sign(d) * np.abs(d / ref_) ** p * ref_
            g = sigmoid_lut(out, rng.uniform(3.5, 6), rng.uniform(0.45, 0.6))
            info['proc'] = f'MSCE p={p:.2f}'
        else:   # CR
            LP = lowpass(nc, rng.uniform(3, 10) / ps)
            kusm = rng.uniform(0.2, 0.9)
            n2 = n + kusm * (n - LP)
            g = sigmoid_lut(n2, rng.uniform(3.5, 6.0), rng.uniform(0.45, 0.58))
            # occasional plate dust / scratch
            for _ in range(rng.poisson(1.0)):
                rr, cc2 = int(rng.integers(0, rows)), int(rng.integers(0, cols))
                g[max(0, rr - 1):rr + 2, max(0, cc2 - 1):cc2 + 2] = 1.0
            info['proc'] = f'CR GA k={kusm:.2f}'
        g = g.astype(np.float32)
        if coll == 'black':
            g[cmask < 0.5] = 0.0
        # burned-in annotation
        if rng.random() < 0.7:
            tp = int(rng.uniform(3.0, 5.0) / ps)
            y, m, d = P['date']
            lines = [('LSPINE ' + ('AP' if ap else 'LAT'), 'tl'),
                     (f'{y:04d}-{m:02d}-{d:02d}', 'tr'),
                     (f'{kvp:.0f}kV {rng.uniform(8, 60) if ap else rng.uniform(25, 120):.0f}mAs', 'bl'),
                     (INSTITUTIONS[int(rng.integers(len(INSTITUTIONS)))], 'br')]
            for txt, pos in lines:
                mm = text_mask(txt, tp)
                rr = int(8 / ps) if pos[0] == 't' else rows - mm.shape[0] - int(8 / ps)
                cc2 = int(8 / ps) if pos[1] == 'l' else cols - mm.shape[1] - int(8 / ps)
                stamp(g, mm, rr, cc2, 1.0)
            info['burned'] = True
    info.setdefault('burned', wf == 'film' and info.get('label', False))
    return g, info


INSTITUTIONS = ['ST ALWEN HOSP', 'NORTHGATE CLINIC', 'RIVERBEND MED', 'CASTELLO IMAGING', 'KESTREL RAD']


def film_pipeline(rng, Nimg, Nt, ferr, ps, cmask, info, P, view):
    rows, cols = Nimg.shape
    Dmin = rng.uniform(0.16, 0.26)
    Dmax = rng.uniform(3.1, 3.7)
    gam = rng.uniform(2.4, 3.3)
    kk = 4 * gam / (Dmax - Dmin) * math.log10(math.e)   # slope per ln10 unit
    Dsp = rng.uniform(1.0, 1.45)      # target density of the spine
    s = (Dsp - Dmin) / (Dmax - Dmin)
    logE = np.log10(Nimg / Nt * ferr)
    x0 = -math.log(s / (1 - s)) / (kk * math.log(10))
    asym = rng.uniform(0.7, 1.3)      # toe / shoulder asymmetry
    z = (logE - x0) * kk * math.log(10)
    frac = 1 / (1 + np.exp(-z)) ** asym
    D = Dmin + (Dmax - Dmin) * frac
    # uneven development: low-frequency gain + roller streaks
    yy = np.linspace(-1, 1, rows, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, cols, dtype=np.float32)[None, :]
    dev = 1 + rng.uniform(-0.04, 0.04) * xx + rng.uniform(-0.04, 0.04) * yy + rng.uniform(-0.03, 0.03) * xx * yy
    str_ = np.zeros(cols, np.float32)
    for _ in range(rng.integers(0, 4)):
        str_ += rng.uniform(-0.02, 0.02) * np.exp(-((np.arange(cols) - rng.uniform(0, cols)) / rng.uniform(3, 30)) ** 2)
    D = D * (dev + str_[None, :])
    # grain (Selwyn: ~sqrt(D))
    gr = ndimage.gaussian_filter(rng.standard_normal((rows, cols), dtype=np.float32), 0.6)
    D += rng.uniform(0.02, 0.045) * np.sqrt(np.maximum(D, 0.05)) * gr
    # ID label (lead blocker -> unexposed, printed text)
    lab = rng.random() < 0.55
    info['label'] = lab
    if lab:
        lh, lw = int(rng.uniform(22, 30) / ps), int(rng.uniform(55, 75) / ps)
        r0 = int(rng.uniform(4, 12) / ps) if rng.random() < 0.5 else rows - lh - int(rng.uniform(4, 12) / ps)
        c0 = int(rng.uniform(4, 12) / ps) if rng.random() < 0.5 else cols - lw - int(rng.uniform(4, 12) / ps)
        D[r0:r0 + lh, c0:c0 + lw] = Dmin + rng.normal(0, 0.01)
        tp = int(3.0 / ps)
        y, m, d = P['date']
        for li, txt in enumerate([INSTITUTIONS[int(rng.integers(len(INSTITUTIONS)))], P['name'].replace('^', ' '),
                                  f'{d:02d}.{m:02d}.{y:04d}  {view}']):
            stamp(D, text_mask(txt, tp), r0 + int(3 / ps) + li * int(6.5 / ps), c0 + int(3 / ps),
                  rng.uniform(1.6, 2.2))
    # film edge inside the scanned area
    if rng.random() < 0.45:
        side = int(rng.integers(4))
        wpx = int(rng.uniform(3, 9) / ps)
        epx = int(rng.uniform(2, 5) / ps)
        sl = [(slice(0, wpx), slice(None)), (slice(rows - wpx, rows), slice(None)),
              (slice(None), slice(0, wpx)), (slice(None), slice(cols - wpx, cols))][side]
        sl2 = [(slice(wpx, wpx + epx), slice(None)), (slice(rows - wpx - epx, rows - wpx), slice(None)),
               (slice(None), slice(wpx, wpx + epx)), (slice(None), slice(cols - wpx - epx, cols - wpx))][side]
        D[sl2] = Dmin + 0.02
        D[sl] = 0.03
        if side < 2:
            m_ = text_mask('ORTHOGRAF RP-3  0%d' % int(rng.integers(10, 99)), int(2.2 / ps))
            stamp(D, m_, sl2[0].start, int(40 / ps), 1.4)
    # scanner: 12-bit log (optical density) output with some blur and high-D noise
    D = ndimage.gaussian_filter(D, rng.uniform(0.4, 0.8))
    Dsm = rng.uniform(3.6, 4.1)
    D += 0.01 * 10 ** (np.clip(D, 0, 4.5) - 3.2) * rng.standard_normal((rows, cols), dtype=np.float32)
    info['proc'] = f'FILM gamma={gam:.2f} Dmax={Dmax:.2f} scan Dmax={Dsm:.2f}'
    info['Dsm'] = Dsm
    return np.clip(1 - D / Dsm, 0, 1).astype(np.float32)


# ----------------------------------------------------------------------------- DICOM
MANUF = {'film': [('Densilux Imaging', 'FD-4000 Film Digitizer'), ('Opticom Scan', 'LumiScan 12')],
         'dr_usm': [('Helioray Medical', 'HR-DX 43'), ('Nordlys Imaging', 'Aurora DR')],
         'dr_ms': [('Kalder Systems', 'MultiView DR'), ('Nordlys Imaging', 'Aurora DR+')],
         'cr': [('Phosphora Systems', 'PhosCR 35'), ('Kestrel Photonics', 'KP-CR 2')]}


def write_dicom(path, P, view, g, info):
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    wf = P['workflow']
    rng = np.random.default_rng([P['seed'], P['idx'], 21 if view == 'AP' else 22])
    seed, idx = P['seed'], P['idx']
    pid = f'PHS{seed}-{idx:04d}'
    if wf == 'film':
        bits = 12
        as_cr = np.random.default_rng([seed, idx, 20]).random() < 0.5   # same SOP class for both views
        sop = '1.2.840.10008.5.1.4.1.1.1' if as_cr else '1.2.840.10008.5.1.4.1.1.1.1'
    elif wf == 'cr':
        bits = int(rng.choice([10, 12]))
        sop = '1.2.840.10008.5.1.4.1.1.1'
    else:
        bits = int(rng.choice([12, 14, 16]))
        sop = '1.2.840.10008.5.1.4.1.1.1.1'
    dx = sop.endswith('1.1.1.1')
    mx = (1 << bits) - 1
    arr = np.round(g * mx).astype(np.uint16)
    mono1 = P['mono1']
    if mono1:
        arr = (mx - arr).astype(np.uint16)
    ent = ['phantom_s', str(seed), str(idx)]
    study_uid = generate_uid(entropy_srcs=ent + ['study'])
    series_uid = generate_uid(entropy_srcs=ent + [view, 'series'])
    sop_uid = generate_uid(entropy_srcs=ent + [view, 'sop'])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = generate_uid(entropy_srcs=['phantom_s implementation'])
    ds = Dataset()
    ds.file_meta = meta
    y, m, d = P['date']
    date = f'{y:04d}{m:02d}{d:02d}'
    man, model = MANUF[wf][int(rng.integers(2))]
    ds.SpecificCharacterSet = 'ISO_IR 100'
    ds.ImageType = ['DERIVED', 'SECONDARY'] if wf == 'film' else ['ORIGINAL', 'PRIMARY']
    ds.SOPClassUID = sop
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = date
    tm = f'{8 + idx % 10:02d}{(idx * 7) % 60:02d}{(17 if view == "AP" else 23):02d}'
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = tm
    ds.AccessionNumber = f'A{seed % 1000:03d}{idx:06d}'
    ds.Modality = 'DX' if dx else 'CR'
    ds.Manufacturer = man
    ds.ManufacturerModelName = model
    ds.InstitutionName = INSTITUTIONS[(seed + idx) % len(INSTITUTIONS)]
    ds.ReferringPhysicianName = ''
    ds.StudyDescription = 'LUMBAR SPINE 2 VIEWS'
    ds.SeriesDescription = 'L-SPINE ' + ('AP' if view == 'AP' else 'LAT')
    ds.PatientName = P['name']
    ds.PatientID = pid
    ds.PatientBirthDate = f'{y - P["age"]:04d}{m:02d}{d:02d}'
    ds.PatientSex = 'F' if P['female'] else 'M'
    ds.PatientAge = f'{P["age"]:03d}Y'
    ds.BodyPartExamined = 'LSPINE'
    ds.KVP = f'{info["kvp"]:.0f}'
    ds.SoftwareVersions = 'phantom_s 1.0'
    ds.ViewPosition = 'AP' if view == 'AP' else 'LL'
    ds.DistanceSourceToDetector = '1150' if view == 'AP' else '1000'
    ds.ExposureTime = str(int(rng.integers(20, 400)))
    ds.XRayTubeCurrent = str(int(rng.integers(100, 500)))
    ds.Exposure = str(int(rng.integers(8, 120)))
    ds.Grid = 'IN' if info['grid'] else 'NONE'
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = f'{idx + 1}'
    ds.SeriesNumber = 1 if view == 'AP' else 2
    ds.InstanceNumber = 1
    if view == 'AP':
        ds.PatientOrientation = ['L', 'F']
    else:
        ds.PatientOrientation = ['A' if info['sgn'] > 0 else 'P', 'F']
    ds.ImageLaterality = 'U'
    ds.Laterality = ''
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = 'MONOCHROME1' if mono1 else 'MONOCHROME2'
    ds.Rows, ds.Columns = arr.shape
    ps = f'{info["ps"]:.4f}'
    ds.PixelSpacing = [ps, ps]
    ds.ImagerPixelSpacing = [ps, ps]
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    sub = arr[::4, ::4]
    lo, hi = np.percentile(sub, [1, 99])
    ds.WindowCenter = f'{(lo + hi) / 2:.0f}'
    ds.WindowWidth = f'{max(hi - lo, 2) * 1.1:.0f}'
    ds.RescaleIntercept = '0'
    ds.RescaleSlope = '1'
    ds.RescaleType = 'US'
    ds.PixelIntensityRelationship = 'LOG'
    ds.PixelIntensityRelationshipSign = 1 if mono1 else -1
    ds.PresentationLUTShape = 'INVERSE' if mono1 else 'IDENTITY'
    ds.LossyImageCompression = '00'
    ds.BurnedInAnnotation = 'YES' if info.get('burned') else 'NO'
    ds.DerivationDescription = info.get('proc', '')
    if dx:
        ds.PresentationIntentType = 'FOR PRESENTATION'
        ds.DetectorType = 'FILM' if wf == 'film' else 'SCINTILLATOR'
        ds.DetectorID = f'D{(seed * 31 + idx) % 9999:04d}'
    else:
        ds.PlateType = 'FILM' if wf == 'film' else 'ST-VI'
    ar = Dataset()
    ar.CodeValue = '122496007'
    ar.CodingSchemeDesignator = 'SCT'
    ar.CodeMeaning = 'Lumbar spine'
    ds.AnatomicRegionSequence = Sequence([ar])
    ds.PixelData = arr.astype('<u2').tobytes()
    ds.save_as(path, enforce_file_format=True)


# ----------------------------------------------------------------------------- driver
def make_patient(args):
    outdir, seed, idx = args
    P = sample_patient(seed, idx)
    pid = f'PHS{seed}-{idx:04d}'
    rows = []
    for view in ('AP', 'LAT'):
        g, info = render_view(P, view)
        fn = f'{pid}_{view}.dcm'
        write_dicom(os.path.join(outdir, fn), P, view, g, info)
        rows.append([fn, P['label'], f'{P["T"]:.2f}', f'{P["bmd"]:.3f}', pid, view])
    return idx, rows


def main(argv=None):
    ap = argparse.ArgumentParser(description='Lumbar spine radiograph phantoms (analytic path-length maps).')
    ap.add_argument('outdir')
    ap.add_argument('n', type=int)
    ap.add_argument('seed', type=int)
    ap.add_argument('--workers', type=int, default=1)
    a = ap.parse_args(argv)
    os.makedirs(a.outdir, exist_ok=True)
    jobs = [(a.outdir, a.seed, i) for i in range(a.n)]
    results = {}
    if a.workers > 1:
        import multiprocessing as mp
        with mp.get_context('spawn').Pool(min(a.workers, max(a.n, 1))) as pool:
            for idx, rows in pool.imap_unordered(make_patient, jobs):
                results[idx] = rows
    else:
        for j in jobs:
            idx, rows = make_patient(j)
            results[idx] = rows
    with open(os.path.join(a.outdir, 'manifest.csv'), 'w', newline='') as fh:
        w = csv.writer(fh)
        w.writerow(['path', 'label', 't_score', 'bmd', 'patient_id', 'view'])
        for i in range(a.n):
            w.writerows(results[i])
    return 0


if __name__ == '__main__':
    sys.exit(main())
