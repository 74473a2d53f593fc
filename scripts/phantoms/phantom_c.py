#!/usr/bin/env python3
"""phantom_c.py -- independent generator of synthetic lumbar-spine radiograph studies.

Each study = one AP + one lateral DICOM (Part 10, explicit VR little endian) of the same
synthetic patient, with DXA-style ground truth (T-score, BMD, class label) in manifest.csv.

Model (own design): every view is rendered from two projected maps on a working grid
(~0.27 mm at the detector):  W = water-equivalent soft-tissue path (cm) and
M = hydroxyapatite areal density (g/cm^2).  Bones are drawn as projected chords of
3-D shapes (elliptic/superelliptic cylinders with a cortical shell, tubes, plates).
A 3-bin polychromatic beam, scatter, heel effect, collimation, AEC-scaled quantum noise
and vendor-like image processing then produce the stored pixel data.

usage: python phantom_c.py OUT_DIR N_STUDIES SEED [--workers K]
"""
import argparse, csv, hashlib, math, os, time
import numpy as np
from scipy import ndimage
from scipy.special import expit
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

DX_CLASS, CR_CLASS = '1.2.840.10008.5.1.4.1.1.1.1', '1.2.840.10008.5.1.4.1.1.1'
IMPL_UID = '2.25.' + str(int(hashlib.sha1(b'phantom_c generator').hexdigest()[:30], 16))
# narrow-beam attenuation: water mu (1/cm) and hydroxyapatite mass attenuation (cm^2/g)
E_T = np.array([20, 30, 40, 50, 60, 80, 100.])
MU_W = np.array([0.810, 0.376, 0.268, 0.227, 0.206, 0.184, 0.171])
MU_HA = np.array([8.05, 2.56, 1.19, 0.69, 0.47, 0.27, 0.20]) - 0.316 * MU_W  # minus displaced water
# levels: T11 T12 L1 L2 L3 L4 L5
BW = np.array([32, 36, 40, 42, 45, 48, 50.])   # body width (mm)
BD = np.array([27, 28, 30, 32, 33, 33, 33.])   # body depth
BH = np.array([21, 23, 25, 26, 27, 27, 27.])   # body height
DH = np.array([6, 6, 7, 8, 9, 10, 11.])        # disc below level
IP = np.array([17, 18, 21, 22, 23, 24, 26.])   # interpedicular distance
PW = np.array([6, 7, 7, 8, 9, 11, 14.])        # pedicle width
TPL = np.array([0, 5, 14, 20, 27, 22, 20.])    # transverse process length


def mu(tab, e):
    return float(np.exp(np.interp(e, E_T, np.log(tab))))


def edge(d, s):
    return np.clip(d / s + 0.5, 0.0, 1.0)


def loc(X, Z, cx, cz, a):
    dx, dz = X - cx, Z - cz
    c, s = math.cos(a), math.sin(a)
    return dx * c - dz * s, dx * s + dz * c


def lp(cx, cz, a, u, v):  # local (u across, v along axis) -> global (X, Z)
    return cx + u * math.cos(a) + v * math.sin(a), cz - u * math.sin(a) + v * math.cos(a)


class Canvas:
    def __init__(s, nr, nc, dw):
        s.nr, s.nc, s.dw = nr, nc, dw
        s.W = np.zeros((nr, nc), np.float32)
        s.M = np.zeros((nr, nc), np.float32)
        s.X = ((np.arange(nc) - nc / 2 + 0.5) * dw).astype(np.float32)
        s.Z = ((nr / 2 - np.arange(nr) - 0.5) * dw).astype(np.float32)

    def box(s, x0, x1, z0, z1):
        c0 = max(0, int(x0 / s.dw + s.nc / 2)); c1 = min(s.nc, int(x1 / s.dw + s.nc / 2) + 2)
        r0 = max(0, int(s.nr / 2 - z1 / s.dw)); r1 = min(s.nr, int(s.nr / 2 - z0 / s.dw) + 2)
        if c1 <= c0 or r1 <= r0:
            return None
        return (slice(r0, r1), slice(c0, c1)), s.X[None, c0:c1], s.Z[r0:r1, None]


def blob(cv, F, cx, cz, a, b, ang, peak, ring=0.0, inner=0.0):
    """Ellipsoid (chord profile) or, with ring>0, a cortical tube seen end-on."""
    R = max(a, b) + 2 * cv.dw
    bx = cv.box(cx - R, cx + R, cz - R, cz + R)
    if bx is None:
        return
    sl, X, Z = bx
    U, V = loc(X, Z, cx, cz, ang)
    r = np.sqrt((U / a) ** 2 + (V / b) ** 2)
    if ring > 0:
        m = min(a, b)
        out, inn = edge((1 - r) * m, cv.dw), edge((1 - ring / m - r) * m, cv.dw)
        F[sl] += peak * (out - inn) + inner * inn
    else:
        F[sl] += peak * np.sqrt(np.clip(1 - r * r, 0, 1))


def bar(cv, F, x0, z0, L, H, ang, peak, taper=0.0):
    """Rod from (x0,z0), length L along global angle ang (CCW from +X), thickness H."""
    ca, sa = math.cos(ang), math.sin(ang)
    xs, zs = [x0, x0 + L * ca], [z0, z0 + L * sa]
    bx = cv.box(min(xs) - H, max(xs) + H, min(zs) - H, max(zs) + H)
    if bx is None:
        return
    sl, X, Z = bx
    t = (X - x0) * ca + (Z - z0) * sa
    n = -(X - x0) * sa + (Z - z0) * ca
    hh = H / 2 * (1 - taper * np.clip(t / L, 0, 1))
    prof = np.sqrt(np.clip(1 - (n / hh) ** 2, 0, 1))
    F[sl] += peak * prof * np.clip(t / (H / 2) + 0.3, 0, 1) * np.sqrt(np.clip((L - t) / (H / 2), 0, 1))


def tube_curve(cv, F, X0, Z0, dirx, Lh, tan0, kap, r0, rc, rt, ct, flat=0.7, dz=0.0):
    """Rib-like cortical tube whose centre line is Z = Z0 - tan0*t - kap*t^2, t=(X-X0)*dirx."""
    zl = Z0 - tan0 * Lh - kap * Lh * Lh
    bx = cv.box(min(X0, X0 + dirx * Lh) - r0, max(X0, X0 + dirx * Lh) + r0,
                min(zl, Z0) - 2 * r0, max(zl, Z0) + 2 * r0)
    if bx is None:
        return
    sl, X, Z = bx
    t = (X - X0) * dirx
    zc = Z0 - tan0 * t - kap * t * t + dz
    sd = (Z - zc) / np.sqrt(1 + (tan0 + 2 * kap * t) ** 2)
    r = r0 * (1 - 0.35 * np.clip(t / Lh, 0, 1))
    ri = np.maximum(r - ct, 0.3)
    co = 2 * np.sqrt(np.clip(r * r - sd * sd, 0, None))
    ci = 2 * np.sqrt(np.clip(ri * ri - sd * sd, 0, None))
    tm = np.clip(t / 3 + 0.5, 0, 1) * np.sqrt(np.clip((Lh - t) / r0, 0, 1))
    F[sl] += flat * (rc * (co - ci) + rt * ci) * tm / 10


def trab_texture(rng, shape, dw, ang, Tb):
    """Projected trabecular pattern: band-pass anisotropic noise; coarser, sparser, more
    vertically striated (loss of horizontal struts) and higher contrast when Tb is low."""
    ny, nx = shape
    fy = np.fft.fftfreq(ny, dw)[:, None]
    fx = np.fft.rfftfreq(nx, dw)[None, :]
    fr = np.sqrt(fx * fx + fy * fy) + 1e-6
    fu = fx * math.cos(ang) + fy * math.sin(ang)
    f0 = 1.0 / np.clip(1.55 - 0.25 * Tb, 1.2, 2.8)
    hf = np.clip(0.75 + 0.11 * Tb, 0.2, 0.9)
    c2 = (fu / fr) ** 2
    filt = np.exp(-0.5 * ((fr - f0) / (0.4 * f0)) ** 2) * (c2 * c2 + hf * (1 - c2 * c2))
    filt += (0.2 + 0.08 * max(0.0, -Tb)) * np.exp(-0.5 * (fr / (0.25 * f0)) ** 2)
    n = np.fft.irfft2(np.fft.rfft2(rng.standard_normal(shape)) * filt, s=shape)
    n /= n.std() + 1e-9
    t = np.exp((0.15 + 0.06 * max(0.0, -Tb)) * n)
    t = t / t.mean() - 1
    amp = float(np.clip(0.2 - 0.05 * Tb, 0.12, 0.45))
    return (amp * t / (t.std() + 1e-9)).astype(np.float32)


def chord(U, half, full, pa, pp):
    r = np.minimum(np.abs(U) / max(half, 0.1), 1.0)
    r2 = r * r
    if pp == 2:                                   # ellipse; else ellipse anteriorly, 4-superellipse behind
        return full * np.sqrt(1 - r2)
    return full * np.where(U < 0, np.sqrt(1 - r2), np.sqrt(np.sqrt(1 - r2 * r2)))


def draw_body(cv, rng, b, du=0.0, dv=0.0):
    """Vertebral body: cortical shell + textured cancellous core, dish-shaped endplates.
    b: cx cz ang hu (half extent, image) L (chord along beam, mm) ha hp (edge heights)
    cav c ce rt rc re pa pp waist both Tb.  The body is summed over ns slabs along the
    beam; slab t in [-1,1] is displaced by (du*t, dv*t) (rotation / tilt / divergence)."""
    hu, L, c = b['hu'], b['L'], b['c']
    R = max(hu, b['ha'], b['hp']) + 6
    bx = cv.box(b['cx'] - R, b['cx'] + R, b['cz'] - R, b['cz'] + R)
    if bx is None:
        return
    sl, X, Z = bx
    U, V = loc(X, Z, b['cx'], b['cz'], b['ang'])
    tex = trab_texture(rng, U.shape, cv.dw, b['ang'], b['Tb'])
    hh0 = (b['ha'] + b['hp']) / 4
    acc = np.zeros(tex.shape, np.float32)
    ns = int(np.clip(math.ceil(1.5 * max(abs(du), abs(dv)) / cv.dw), 2, 12))
    for k in range(ns):
        t = (k + 0.5) / ns * 2 - 1
        Uh, Vh = U - du * t, V - dv * t
        sc = 1 - b['waist'] * np.clip(1 - (Vh / hh0) ** 2, 0, 1)
        Ue = np.where((Uh < 0) | b['both'], Uh / sc, Uh)
        r2 = np.clip(Ue / hu, -1, 1) ** 2
        hh = hh0 + (b['hp'] - b['ha']) / 4 * np.clip(Ue / hu, -1, 1)
        top = hh - b['cav'] * (1 - r2) * (1 - 0.7 * t * t)
        bot = -hh + b['cav'] * (1 - r2) * (1 - 0.7 * t * t)
        co = chord(Ue, hu, L, b['pa'], b['pp'])
        ci = chord(Ue, hu - c, L - 2 * c, b['pa'], b['pp'])
        mv = edge(top - Vh, cv.dw) * edge(Vh - bot, cv.dw)
        mi = edge(top - b['ce'] - Vh, cv.dw) * edge(Vh - bot - b['ce'], cv.dw)
        we = (0.4 + 2.4 * abs(t) ** 3) if ns > 2 else 1.0      # endplate rims tangent at the slab ends
        acc += (1 / ns) * (b['rc'] * (co - ci) * mv + b['rt'] * (1 + tex) * ci * mi + we * b['re'] * ci * (mv - mi))
    cv.M[sl] += acc / 10


def lowpass(A, sig_mm, dw):
    f = max(1, int(sig_mm / dw / 4))
    nr, nc = A.shape
    sm = np.asarray(Image.fromarray(A).resize((max(2, nc // f), max(2, nr // f)), Image.BOX))
    sm = ndimage.gaussian_filter(sm, sig_mm / (dw * f), mode='nearest')
    return np.asarray(Image.fromarray(sm.astype(np.float32)).resize((nc, nr), Image.BILINEAR))


# ----------------------------------------------------------------------------- patient
def sample_patient(rng):
    T = rng.uniform(-4.5, 1.5) if rng.random() < 0.5 else float(np.clip(rng.normal(-1.6, 1.3), -5.0, 2.0))
    T = round(T, 2)
    P = {'T': T, 'sex': 'F' if rng.random() < 0.75 else 'M'}
    P['age'] = int(np.clip(60 - 5 * T + rng.normal(0, 9), 30, 95))
    P['bmi'] = float(np.clip(rng.normal(27 + 0.6 * T, 5), 16, 48))
    P['degen'] = float(np.clip((P['age'] - 45) / 40 + rng.normal(0, 0.25), 0, 1))
    P['Tb'] = T - 0.6 * P['degen'] * rng.random()    # DXA over-reads degenerate spines
    P['size'] = (1.0 if P['sex'] == 'M' else 0.91) * rng.normal(1, 0.05)
    P['height'] = (1.76 if P['sex'] == 'M' else 1.63) * rng.normal(1, 0.04) - 0.002 * max(0, P['age'] - 60)
    bmi = P['bmi']                                         # body habitus
    P['D'] = (70 + 5.5 * bmi) * rng.normal(1, 0.06)       # AP abdominal depth (mm)
    P['Wd'] = (150 + 6.0 * bmi) * rng.normal(1, 0.06)     # lateral width (mm)
    P['pab'] = rng.uniform(2.8, 4.5)                     # abdomen cross-section squareness
    P['ff'] = float(np.clip(0.15 + 0.012 * (bmi - 18) + rng.normal(0, 0.04), 0.08, 0.5))
    P['backfat'] = float(np.clip(20 + 2.5 * (bmi - 20) + rng.normal(0, 5), 12, 90))
    P['lord'] = float(np.clip(rng.normal(1.0 - 0.2 * P['degen'], 0.25), 0.3, 1.7))
    P['sslope'] = math.radians(np.clip(rng.normal(40, 7) * (0.6 + 0.4 * P['lord']), 20, 60))
    scol = rng.random() < 0.12 + 0.3 * P['degen']
    P['scL'], P['scP'] = rng.uniform(200, 380), rng.uniform(0, 2 * math.pi)
    th = math.radians(rng.uniform(5, 18) if scol else abs(rng.normal(0, 1.5)))
    P['scA'] = math.tan(th) * P['scL'] / (2 * math.pi) * rng.choice([-1, 1])
    P['rot0'] = math.radians(rng.normal(0, 3))
    P['slip'] = (int(rng.choice([5, 6])), rng.uniform(3, 10)) if rng.random() < 0.06 else None
    P['fx'] = {}
    if rng.random() < np.clip(0.05 + 0.12 * (-1.5 - T), 0.03, 0.6):
        for _ in range(1 + int(rng.random() < 0.35) + int(rng.random() < 0.1)):
            i = int(rng.choice([1, 2, 3, 4, 5], p=[0.3, 0.3, 0.2, 0.12, 0.08]))
            P['fx'][i] = (rng.choice(['wedge', 'wedge', 'biconcave', 'crush']), rng.uniform(0.2, 0.45))
    P['aorta'] = float(np.clip(P['degen'] * rng.random() * 1.4 - 0.25, 0, 1))
    P['gas'] = rng.uniform(0.1, 1.0)
    Tb = P['Tb']
    P['rt'] = max(0.035, 0.165 + 0.028 * Tb)              # trabecular vBMD g/cm3 (HA)
    P['c'] = float(np.clip(0.75 + 0.09 * Tb, 0.25, 1.1))  # cortical shell mm
    P['rc'] = float(np.clip(1.05 + 0.03 * Tb, 0.8, 1.15))  # cortical vBMD
    P['fb'] = float(np.clip(1 + 0.1 * Tb, 0.45, 1.2))      # other-bone factor
    return P


def spine_geometry(P, rng):
    sz = P['size']
    w, d, h, disc = BW * sz, BD * sz, BH * sz, DH * sz
    for i in range(2, 7):
        disc[i] *= 1 - P['degen'] * rng.uniform(0, 0.6) * (0.6 + 0.4 * (i >= 5))
    ha, hp = h.copy(), h.copy()
    cav = np.full(7, sz * rng.uniform(0.6, 1.4))
    for i, (typ, sev) in P['fx'].items():
        if typ == 'wedge':
            ha[i] *= 1 - sev; hp[i] *= 1 - 0.1 * sev
        elif typ == 'biconcave':
            cav[i] += 0.3 * sev * h[i]; ha[i] *= 1 - 0.15 * sev; hp[i] *= 1 - 0.1 * sev
        else:
            ha[i] *= 1 - sev; hp[i] *= 1 - 0.8 * sev
    hm = (ha + hp) / 2
    s = np.zeros(7)
    for i in range(3, -1, -1):
        s[i] = s[i + 1] + hm[i + 1] / 2 + disc[i] + hm[i] / 2
    for i in range(5, 7):
        s[i] = s[i - 1] - hm[i - 1] / 2 - disc[i - 1] - hm[i] / 2
    s1 = s[6] - hm[6] / 2 - disc[6]
    ss = np.linspace(s1 - 5, s[0] + 80, 600)
    beta = np.radians(P['lord'] * np.where(ss < 0, 0.25 * ss, np.minimum(0.12 * ss, 16)))
    ds = ss[1] - ss[0]
    z, y = np.cumsum(np.cos(beta)) * ds, np.cumsum(np.sin(beta)) * ds
    z -= np.interp(0, ss, z); y -= np.interp(0, ss, y)
    A, L, ph = P['scA'], P['scL'], P['scP']
    xf = lambda q: A * (np.sin(2 * np.pi * q / L + ph) - math.sin(ph))
    G = dict(w=w, d=d, ha=ha, hp=hp, hm=hm, cav=cav, s=s)
    G['z'], G['y'], G['beta'], G['x'] = np.interp(s, ss, z), np.interp(s, ss, y), np.interp(s, ss, beta), xf(s)
    G['alpha'] = np.arctan(A * 2 * np.pi / L * np.cos(2 * np.pi * s / L + ph))
    G['gamma'] = np.clip(P['rot0'] + np.radians(0.5) * (G['x'] - G['x'].mean()) * np.sign(A), -0.2, 0.2)
    if P['slip']:
        G['y'][:P['slip'][0] + 1] -= P['slip'][1]
    G['s1'] = (float(xf(s1)), float(np.interp(s1, ss, y)), float(np.interp(s1, ss, z)))
    G['lat_asym'] = rng.normal(0, 0.03, 7) + 0.3 * G['alpha']
    return G


# ----------------------------------------------------------------------------- acquisition
def sample_acq(rng, view, P):
    cr = rng.random() < 0.35
    A = {'view': view, 'cr': cr}
    if cr:
        A['ps'] = float(rng.choice([0.1, 0.15, 0.2], p=[0.15, 0.45, 0.4]))
        fov = (430, 350) if rng.random() < 0.8 else (400, 330)
    else:
        A['ps'] = float(rng.choice([0.1, 0.125, 0.139, 0.143, 0.148, 0.15, 0.16, 0.175, 0.2],
                                   p=[.06, .1, .14, .14, .14, .14, .1, .1, .08]))
        fov = [(430, 350), (430, 430), (410, 350), (400, 320)][rng.integers(4)]
    A['rows'] = int(np.clip(round(fov[0] / A['ps']), 1800, 3500))
    A['cols'] = int(np.clip(round(fov[1] / A['ps']), 1500, 3000))
    A['kvp'], A['filt'] = float(round(rng.uniform(70, 90) if view == 'AP' else rng.uniform(85, 105))), rng.uniform(0, 1)
    A['sid'] = float(rng.choice([1000, 1015, 1100, 1150]))
    A['grid'] = rng.random() < (0.88 if view == 'AP' else 0.93)
    A['gridlines'] = A['grid'] and rng.random() < (0.5 if cr else 0.12)
    depth = 60 + (P['backfat'] + 70 if view == 'AP' else P['Wd'] / 2)
    A['m'] = A['sid'] / (A['sid'] - depth)
    A['heel'], A['dose'] = rng.uniform(-0.15, 0.15), math.exp(rng.uniform(math.log(250), math.log(3000))) * (A['ps'] / 0.15) ** 2
    A['enoise'], A['prof'] = rng.uniform(1, 6), int(rng.integers(4))
    A['mono1'] = rng.random() < (0.4 if cr else 0.12)
    A['bits'] = int(rng.choice([10, 12]) if cr else rng.choice([12, 14, 15, 16], p=[.4, .3, .1, .2]))
    A['shutter'], A['text'] = rng.random() < 0.5, rng.random() < 0.7
    return A


# ----------------------------------------------------------------------------- scene
def soft_tissue(cv, P, A, rng, spx, zl):
    """Abdomen + psoas + kidneys + lung bases + bowel gas.  spx(Z): spine X at height Z."""
    m, ap, X, Z = A['m'], A['view'] == 'AP', cv.X[None, :], cv.Z[:, None]
    zcrest = zl['crest']
    flare = 1 + 0.10 * np.clip((zcrest - Z) / 100, -0.6, 1)
    if ap:
        half = m * P['Wd'] / 2 * flare
        xb = A['bodyx']
        r = np.abs(X - xb) / half
        W = P['D'] * np.clip(1 - r ** P['pab'], 0, 1) ** (1 / P['pab'])
    else:
        half = m * P['D'] / 2 * (1 + 0.06 * np.clip((zcrest - Z) / 100, -0.6, 1))
        q = (X - A['bodyx']) / half
        p = np.where(q < 0, 2.2, 2.7)
        W = P['Wd'] * flare * np.clip(1 - np.abs(q) ** p, 0, 1) ** (1 / p)
    W = (W * (1 - 0.1 * P['ff']) / 10).astype(np.float32)
    body = W > 0.05
    fc = 0.1 * P['ff'] / 0.25                              # fat/muscle contrast
    if ap:
        u = np.abs(X - spx(Z)) - m * 20 * P['size']           # psoas
        wid = np.clip(5 + 0.32 * (zl['T12'] - Z), 0, 60 * m * P['size']) * np.clip((Z - zl['S1'] + 70 * m) / (50 * m), 0, 1)
        pr = np.sqrt(np.clip(1 - ((u - wid / 2) / (wid / 2 + 1e-3)) ** 2, 0, 1))
        W += (fc * pr * wid * 0.08).astype(np.float32)
        for sgn, dz in ((-1, -12), (1, 5)):                   # kidneys (patient right lower)
            blob(cv, W, spx(zl['L1']) + sgn * 68 * m, zl['L1'] + dz * m, 28 * m, 55 * m,
                 math.radians(-15 * sgn), fc * 4.5)
        zd = zl['L1'] + 65 * m - 0.35 * np.clip(np.abs(X - xb) - 60 * m, 0, None)
    else:
        zd = zl['T12'] + 35 * m - 0.6 * (X - A['spiney'] - 20 * m)
    lung = np.clip((Z - zd) / (40 * m), 0, 1) * rng.uniform(0.25, 0.5)
    W *= (1 - lung).astype(np.float32)
    cv.W += W
    # bowel gas: colon frame + small bowel + stool bubbles
    g = P['gas']
    if ap:
        segs = [(-105, zl['crest'], -105, zl['L1']), (-100, zl['L1'], 100, zl['L1'] - 15),
                (110, zl['L1'], 110, zl['crest']), (-20, zl['S1'] - 40, 20, zl['S1'] - 90)]
        segs = [(xb + m * a, b_, xb + m * c, d_) for a, b_, c, d_ in segs]
    else:
        ya, yp = A['bodyx'] - m * P['D'] / 2 * 0.7, A['spiney'] - 25 * m
        segs = [(ya, zl['L1'], ya, zl['crest']), (yp, zl['L2'], ya + 40 * m, zl['L4']),
                (yp, zl['S1'] - 20, yp + 10, zl['S1'] - 90)]
    for (x0, z0, x1, z1) in segs:
        for _ in range(rng.poisson(0.5 + 3 * g)):
            t = rng.random(); a_ = rng.uniform(6, 22) * m
            gx, gz = x0 + t * (x1 - x0) + rng.normal(0, 12), z0 + t * (z1 - z0) + rng.normal(0, 12)
            for _ in range(rng.integers(1, 4)):             # lobulated pocket
                b_ = a_ * rng.uniform(0.4, 1.4)
                blob(cv, cv.W, gx + rng.normal(0, a_ / 2), gz + rng.normal(0, a_ / 2), a_, b_, rng.uniform(-1, 1),
                     -min(a_, b_) / m * rng.uniform(0.4, 0.9) / 10)
                a_ *= rng.uniform(0.5, 0.9)
        if rng.random() < 0.5 * g:
            t = rng.random(); cx, cz = x0 + t * (x1 - x0), z0 + t * (z1 - z0)
            for _ in range(rng.integers(15, 50)):
                rr = rng.uniform(1.5, 5) * m
                blob(cv, cv.W, cx + rng.normal(0, 18 * m), cz + rng.normal(0, 18 * m), rr, rr, 0, -rr / 10)
    for _ in range(rng.poisson(5 * g)):
        cx = (xb + rng.normal(0, 60 * m)) if ap else (A['spiney'] - rng.uniform(40, 140) * m)
        a_ = rng.uniform(5, 14) * m
        blob(cv, cv.W, cx, rng.uniform(zl['S1'] - 60, zl['L1']), a_, a_ * rng.uniform(0.4, 1), rng.uniform(-2, 2),
             -a_ / m / 10 * rng.uniform(0.6, 1.2))
    np.maximum(cv.W, 0, out=cv.W)
    cv.W *= body
    return body


def osteophytes(cv, P, rng, b, corners, m):
    for su in corners:
        for sv in (1, -1):
            if rng.random() < P['degen'] * 0.8:
                L = rng.uniform(2, 8) * P['degen'] * m
                if L < 2.5:
                    continue
                hh = (b['ha'] if su < 0 else b['hp']) / 2
                blob(cv, cv.M, *lp(b['cx'], b['cz'], b['ang'], su * (b['hu'] + 0.3 * L), sv * (hh + 0.1 * L)), 1.8 * m, L, b['ang'] + su * sv * 0.8, 0.4 * b['rc'])


def scene(cv, P, G, A, rng):
    ap, m, fb = A['view'] == 'AP', A['m'], P['fb']
    if ap:
        hx = lambda i: m * (G['x'][i] - A['xcr'])
        sx1 = m * (G['s1'][0] - A['xcr'])
    else:
        hx = lambda i: m * (G['y'][i] - A['xcr'])
        sx1 = m * (G['s1'][1] - A['xcr'])
    vz = lambda i: m * (G['z'][i] - A['zcr'])
    sz1 = m * (G['s1'][2] - A['zcr'])
    zl = {'T12': vz(1), 'L1': vz(2), 'L2': vz(3), 'L4': vz(5), 'S1': sz1, 'crest': (vz(5) + vz(6)) / 2 + rng.normal(0, 6) * m}
    zs = np.array([vz(i) for i in range(7)] + [sz1])
    xs = np.array([hx(i) for i in range(7)] + [sx1])
    spx = lambda Zq: np.interp(Zq, zs[::-1], xs[::-1])
    A['spiney'] = hx(4)
    body = soft_tissue(cv, P, A, rng, spx, zl)
    for i in range(7):
        cx, cz = hx(i), vz(i)
        f = P['fx'].get(i)                                 # fractured: compacted, sclerotic endplate band
        ce, rt = (2.5 if f else 0.7) * m, P['rt'] * (1.35 if f else 1.0)
        re_ = P['rc'] * (0.55 + 0.6 * P['degen'] * (i >= 4))
        tilt_div = math.atan(cz / A['sid'])
        if ap:
            a, g, tau, e = G['alpha'][i], G['gamma'][i], G['beta'][i] - tilt_div, G['lat_asym'][i]
            hm = G['hm'][i] * m * math.cos(tau)
            b = dict(cx=cx, cz=cz, ang=a, hu=G['w'][i] / 2 * m, L=G['d'][i], ha=hm * (1 + e), hp=hm * (1 - e),
                     cav=G['cav'][i] * m * 0.7, c=P['c'], ce=ce, rt=rt, rc=P['rc'], re=re_, pa=2, pp=2,
                     waist=0.06, both=True, Tb=P['Tb'])
            draw_body(cv, rng, b, 0.0, G['d'][i] / 2 * math.sin(tau) * m)
            osteophytes(cv, P, rng, b, (-1, 1), m)
            h, w, ip, pw, sg = hm, G['w'][i] * m, IP[i] * P['size'] * m, PW[i] * P['size'] * m, math.sin(g)
            for sgn in (-1, 1):                                   # pedicles: cortical rings
                pwi = pw * (1 + 1.5 * sg * sgn)
                blob(cv, cv.M, *lp(cx, cz, a, sgn * (ip / 2 + pwi / 2) + 20 * m * sg, 0.18 * h), max(pwi, 2 * m) / 2, 0.22 * h, a, P['rc'] * 0.6, ring=1.8 * m, inner=P['rt'] * 2.5)
                fa = 0.35 * fb * (1 + P['degen'])                # superior / inferior articular processes
                blob(cv, cv.M, *lp(cx, cz, a, sgn * (ip / 2 + 2 * m) + 25 * m * sg, h / 2 + 3 * m), 4.5 * m, 8 * m, a, fa)
                blob(cv, cv.M, *lp(cx, cz, a, sgn * (ip / 2 - 1 * m) + 28 * m * sg, -h / 2 - 4 * m), 4 * m, 8 * m, a, fa)
                if TPL[i] > 0:                                   # transverse processes
                    up = math.radians([0, 0, 8, 6, 3, 5, 15][i])
                    ang = (0 if sgn > 0 else math.pi) - a + sgn * up
                    bar(cv, cv.M, *lp(cx, cz, a, sgn * (w / 2 - 4 * m), 0.05 * h), TPL[i] * P['size'] * m + 4 * m, (14 if i == 6 else 8) * m, ang, 0.3 * fb, 0.45)
            blob(cv, cv.M, *lp(cx, cz, a, 30 * m * sg, -0.1 * h), ip / 2 + pw, 0.35 * h, a, 0.25 * fb)  # laminae
            blob(cv, cv.M, *lp(cx, cz, a, 40 * m * sg, -0.38 * h), 3.5 * m, 0.3 * h, a, 0.35 * fb, ring=1.6 * m, inner=0.2 * fb)
        else:
            a, g, tau, w, d = G['beta'][i], G['gamma'][i], G['alpha'][i] - tilt_div, G['w'][i], G['d'][i] * m
            b = dict(cx=cx, cz=cz, ang=a, hu=d / 2, L=w, ha=G['ha'][i] * m, hp=G['hp'][i] * m,
                     cav=G['cav'][i] * m, c=P['c'], ce=ce, rt=rt, rc=P['rc'], re=re_, pa=2, pp=4,
                     waist=0.05, both=False, Tb=P['Tb'])
            du, dv = w / 4 * math.sin(g) * m, w / 4 * math.sin(tau) * m
            draw_body(cv, rng, b, 2 * du, 2 * dv)
            osteophytes(cv, P, rng, b, (-1,), m)
            h, lpd, fa = G['hm'][i] * m, 16 * P['size'] * m, 0.22 * fb * (1 + 0.7 * P['degen'])
            for sgn in (-1, 1):
                u0 = d / 2 + sgn * du
                bar(cv, cv.M, *lp(cx, cz, a, u0 - 2 * m, 0.2 * h), lpd + 2 * m, 0.42 * h, -a, 0.35 * fb)  # pedicle
                bar(cv, cv.M, *lp(cx, cz, a, u0 + lpd + 3 * m, 0.1 * h), h * 0.5 + 10 * m, 9 * m, math.pi / 2 - a, fa, 0.3)  # SAP
                bar(cv, cv.M, *lp(cx, cz, a, u0 + lpd + 7 * m, -0.1 * h), h * 0.5 + 9 * m, 9 * m, -math.pi / 2 - a, fa, 0.3)  # IAP
                bar(cv, cv.M, *lp(cx, cz, a, u0 + lpd + 4 * m, 0.3 * h), 0.85 * h, 8 * m, -math.pi / 2 - a - 0.2, 0.2 * fb)  # lamina
            blob(cv, cv.M, *lp(cx, cz, a, d / 2 + 12 * m, 0.05 * h), 6 * m, 5 * m, a, 0.3 * fb)    # transverse proc.
            bar(cv, cv.M, *lp(cx, cz, a, d / 2 + lpd + 8 * m, -0.1 * h), (22 if i == 6 else 28) * P['size'] * m,
                0.7 * h, -a - math.radians(15), 0.3 * fb, -0.25)                                   # spinous process
            if 2 <= i <= 5 and P['aorta'] > 0:                                    # aortic calcification
                for _ in range(rng.poisson(4 * P['aorta'])):
                    blob(cv, cv.M, *lp(cx, cz, a, -d / 2 - rng.uniform(6, 20) * m, rng.uniform(-1, 1) * h), rng.uniform(0.6, 1.5) * m, rng.uniform(2, 8) * m, a, rng.uniform(0.2, 0.5))
    # ribs T10-T12 (level, dz, start angle below horizontal, curvature, length)
    for li, dz, ang, kap, Lh in [(0, 28, rng.uniform(0, 12), 0.0035, 150), (0, 0, rng.uniform(12, 24), 0.003,
                                 rng.uniform(100, 150)), (1, 0, rng.uniform(25, 40), 0.0015, rng.uniform(40, 100))]:
        z0 = vz(li) + (dz * P['size'] + 0.3 * G['hm'][li]) * m
        for sgn in (-1, 1):
            X0, dr, ln, an = hx(li) + sgn * (G['w'][li] / 2 + 4) * m, sgn, Lh, ang
            if not ap:
                back = dz == 0                     # T11/T12 run posteriorly-down, T10 arcs anteriorly
                X0 = hx(li) + (G['d'][li] / 2 + (20 if back else 60)) * m + sgn * rng.uniform(1, 6)
                dr, ln, an = (1, 0.6 * Lh, ang + 15) if back else (-1, 1.1 * Lh, ang)
            tube_curve(cv, cv.M, X0, z0 + (0 if ap else sgn * rng.uniform(1, 5)), dr, ln * m,
                       math.tan(math.radians(an)), kap / m, 5.5 * m,
                       P['rc'], P['rt'] * 1.4, P['c'] * 1.3 * m, (0.7 if ap else 0.5) * fb)
    pelvis(cv, P, G, A, rng, sx1, sz1, zl, m, fb)
    return body


def pelvis(cv, P, G, A, rng, sx1, sz1, zl, m, fb):
    ap, K, sig, cr = A['view'] == 'AP', P['size'] * A['m'], P['sslope'], zl['crest']
    if ap:
        Ls = 115 * K * math.cos(sig * 0.7)                          # sacrum, foreshortened
        bx = cv.box(sx1 - 60 * K, sx1 + 60 * K, sz1 - Ls, sz1 + 5)
        if bx:
            sl, X, Z = bx
            q = np.clip((sz1 - Z) / Ls, 0, 1)
            dx = np.abs(X - sx1)
            hw = 50 * K * (1 - 0.72 * q ** 1.5)
            top = sz1 - 6 * K * (dx / (50 * K)) ** 2
            msk = edge(hw - dx, 2.0) * edge(Z - (sz1 - Ls), 3.0) * edge(top - Z, 1.5)
            val = 0.4 + 0.25 * np.exp(-((dx - hw) / (3 * K)) ** 2) + 0.3 * np.exp(-((top - Z) / (3 * K)) ** 2)
            cv.M[sl] += (fb * msk * val).astype(np.float32)
        blob(cv, cv.M, sx1, sz1 - 7 * K, G['w'][6] / 2 * m, 10 * K, 0, P['rc'] * 0.35, ring=1.2 * m, inner=0.1 * fb)
        for k in range(4):                                          # sacral foramina
            for sgn in (-1, 1):
                rr = (6.0 - 1.0 * k) * K
                blob(cv, cv.M, sx1 + sgn * (22 - 2 * k) * K, sz1 - (22 + 21 * k) * K * math.cos(sig * 0.7),
                     rr, rr * 0.85, 0, 0.1 * fb, ring=1.2 * m, inner=-0.25 * fb)
        for sgn in (-1, 1):                                         # ilia: crest arch tapering to acetabulum
            bx = cv.box(min(sx1, sx1 + sgn * 175 * K), max(sx1, sx1 + sgn * 175 * K), cr - 240 * K, cr + 5)
            if bx is None:
                continue
            sl, X, Z = bx
            xp = np.abs(X - sx1)
            zc = cr - 0.012 / K * (xp - 100 * K) ** 2
            q = np.clip((sz1 - Z) / Ls, 0, 0.55)
            xmed = 52 * K * (1 - 0.72 * q ** 1.5) + 0.012 / K * np.clip(sz1 - 0.55 * Ls - Z, 0, None) ** 2
            dz = np.clip(cr - 40 * K - Z, 0, None)
            xlat = 168 * K - 0.5 * dz - 0.004 / K * dz ** 2
            dcr, dmd, dlt = zc - Z, xp - xmed, xlat - xp
            inside = edge(dcr, 1.5) * edge(dmd, 1.5) * edge(dlt, 2.5)
            val = (0.08 + 0.5 * np.exp(-dcr / (5 * K)) + 0.6 * np.exp(-dmd / (4 * K)) + 0.3 * np.exp(-dlt / (5 * K))
                   + 0.6 * np.clip((cr - 110 * K - Z) / (60 * K), 0, 1))
            tx = lowpass(rng.standard_normal(inside.shape).astype(np.float32), 2.0, cv.dw)
            tx = 1 + 0.12 * tx / (tx.std() + 1e-6)
            cv.M[sl] += (fb * inside * val * tx).astype(np.float32)
            blob(cv, cv.M, sx1 + sgn * 92 * K, cr - 175 * K, 24 * K, 24 * K, 0, P['rc'] * 0.9,
                 ring=2 * m, inner=0.5 * fb)                        # femoral heads
    else:
        cx, cz, a = sx1, sz1, -sig                                  # sacrum: tilted fused segments
        for k, (dd, hh, ww) in enumerate([(34, 25, 50), (28, 20, 40), (22, 17, 30), (16, 14, 22), (11, 12, 15)]):
            dd, hh, ww = dd * K, hh * K, ww * P['size']
            x, z = lp(cx, cz, a, 0, -hh / 2)
            b = dict(cx=x, cz=z, ang=a, hu=dd / 2, L=ww, ha=hh, hp=hh, cav=0.5 * m, c=P['c'], ce=0.6 * m,
                     rt=P['rt'], rc=P['rc'], re=P['rc'] * 0.6, pa=2, pp=4, waist=0.0, both=False, Tb=P['Tb'])
            draw_body(cv, rng, b)
            if k == 0:
                blob(cv, cv.M, *lp(x, z, a, 8 * m, 0), 28 * K, 22 * K, a, 0.4 * fb)   # alae
            bar(cv, cv.M, *lp(x, z, a, dd / 2 + 8 * m, hh / 2), hh, 8 * m, -math.pi / 2 - a, 0.3 * fb)
            cx, cz, a = *lp(x, z, a, 0, -hh / 2 - 1.0 * m), a + math.radians(9)
        for side in (0, 1):                                         # both ilia, slight offset
            off, sc = side * rng.uniform(3, 10), 1 + 0.04 * side
            yc = A['spiney'] + 15 * m + off
            bx = cv.box(yc - 110 * K, yc + 90 * K, cr - 200 * K, cr + 10 * K)
            if bx is None:
                continue
            sl, X, Z = bx
            zc = cr + off - 0.008 / K * (X - yc) ** 2 / sc
            dz = np.clip(cr - Z, 0, None)
            ya, yp = yc - 80 * K * sc + 0.35 * dz, yc + 65 * K * sc - 0.12 * dz - 0.002 / K * dz ** 2
            dcr, da, dp = zc - Z, X - ya, yp - X
            inside = edge(dcr, 2.0) * edge(da, 3.0) * edge(dp, 3.0)
            val = (0.06 + 0.15 * np.exp(-dcr / (3 * K)) + 0.12 * np.exp(-da / (4 * K)) + 0.2 * np.exp(-dp / (5 * K))
                   + 0.4 * np.clip((cr - 110 * K - Z) / (50 * K), 0, 1))
            cv.M[sl] += (fb * inside * val).astype(np.float32)
        blob(cv, cv.M, sx1 - 25 * m, cr - 175 * K, 24 * K, 24 * K, 0, P['rc'] * 0.8, ring=2 * m, inner=0.6 * fb)


# ----------------------------------------------------------------------------- rendering
def text_mask(txt, size):
    font = ImageFont.load_default(size=max(8, int(size)))
    l, t, r, b = font.getbbox(txt)
    im = Image.new('L', (r + 4, b + 4), 0)
    ImageDraw.Draw(im).text((2, 2), txt, fill=255, font=font)
    return np.asarray(im) > 100


def render_view(P, G, A, rng):
    ps, rows, cols, m = A['ps'], A['rows'], A['cols'], A['m']
    nr = int(rows * ps / rng.uniform(0.25, 0.3))          # working grid ~0.27 mm
    dw = rows * ps / nr
    nc = int(cols * ps / dw)
    cv = Canvas(nr, nc, dw)
    if A['view'] == 'AP':
        A['xcr'] = G['x'][4] + rng.normal(0, 12)
        A['bodyx'] = m * (rng.normal(0, 8) - A['xcr'] + G['x'][4])
    else:
        A['xcr'] = G['y'][4] + rng.normal(15, 12)
        yb = P['D'] / 2 - P['backfat'] - 72 * P['size']       # spine position relative to body centre
        A['bodyx'] = m * (G['y'][4] - yb - A['xcr'])
    A['zcr'] = G['z'][4] + rng.normal(-5, 15)
    body = scene(cv, P, G, A, rng)
    # ---- exposure
    X, Z, kv = cv.X[None, :], cv.Z[:, None], A['kvp']
    E = kv * np.array([0.36, 0.46, 0.6]) * (1 + 0.08 * A['filt'])
    wts = np.array([0.3, 0.45, 0.25]) * np.array([1 - 0.4 * A['filt'], 1, 1 + 0.3 * A['filt']])
    wts /= wts.sum()
    blur = math.hypot(0.4 * rng.uniform(0.6, 1.2) * (m - 1), rng.uniform(0.08, 0.15) * (1.6 if A['cr'] else 1)) / dw
    cv.M = ndimage.gaussian_filter(cv.M, blur)
    Pm = np.zeros((nr, nc), np.float32)
    for e, wt in zip(E, wts):
        Pm += wt * np.exp(-(mu(MU_W, e) * cv.W + mu(MU_HA, e) * cv.M))
    H2, W2 = nr * dw / 2, nc * dw / 2
    Pm *= (1 + A['heel'] * Z / H2) * (1 - 0.04 * ((X / W2) ** 2 + (Z / H2) ** 2))
    cu, cvv = loc(X, Z, rng.normal(0, 6), rng.normal(0, 6), rng.normal(0, 0.015))     # collimator
    chw, chh = W2 - rng.uniform(-5, 45), H2 - rng.uniform(-5, 50)
    coll = (edge(chw - np.abs(cu), 2.0) * edge(chh - np.abs(cvv), 2.0)).astype(np.float32)
    Pm *= coll
    s0 = rng.uniform(0.2, 0.5) if A['grid'] else rng.uniform(1.5, 3.0)
    Tt = Pm + lowpass(Pm * s0 * (cv.W / 20) ** 1.2, rng.uniform(30, 60), dw) + 2e-5   # + scatter
    if rng.random() < 0.9:                                   # lead side marker
        mk = text_mask(rng.choice(['L', 'R']) if A['view'] == 'AP' else 'L', 12 / dw)
        mr = int(nr / 2 - (chh - 15 - rng.uniform(0, 30)) / dw)
        mc = int(nc / 2 + rng.choice([-1, 1]) * (chw - 25) / dw)
        r0, c0 = max(0, mr), max(0, min(nc - mk.shape[1], mc))
        sub = Tt[r0:r0 + mk.shape[0], c0:c0 + mk.shape[1]]
        sub *= 1 - 0.97 * mk[:sub.shape[0], :sub.shape[1]]
    L = -np.log(Tt)
    # AEC: scale so the counts behind L3 hit the target
    sr, sc_ = int(nr / 2 - m * (G['z'][4] - A['zcr']) / dw), int(nc / 2 + A['spiney'] / dw)
    tsp = float(np.median(Tt[max(0, sr - 10):sr + 10, max(0, sc_ - 10):sc_ + 10]))
    N0 = A['dose'] / max(tsp, 1e-9)
    cnt = N0 * Tt                                          # quanta per full-resolution pixel
    sigma = np.minimum(np.sqrt(cnt + A['enoise'] ** 2) / cnt, 1.0) * (1.3 if A['cr'] else 1.0)
    A['mas'] = round(float(np.clip(N0 / (A['ps'] / 0.15) ** 2 / 2.5e4 * (80 / kv) ** 2 * 10, 1, 400)), 1)
    A['ei'] = int(np.clip(A['dose'] / (A['ps'] / 0.15) ** 2 * 2.0, 50, 4000))
    # ---- vendor processing (noise-free part at working resolution)
    inc = coll > 0.5
    ref = float(np.median(L[inc & body])) if (inc & body).any() else float(np.median(L))
    prof = A['prof']
    drc = [rng.uniform(0.1, 0.35), rng.uniform(0.5, 0.8), rng.uniform(0.3, 0.5), rng.uniform(0.35, 0.6)][prof]
    usm = [rng.uniform(0, 0.3), rng.uniform(0.5, 1.5), rng.uniform(0.3, 0.8), rng.uniform(0.6, 1.0)][prof]
    usig = [2, rng.uniform(1.5, 4), rng.uniform(1, 3), rng.uniform(0.8, 1.5)][prof]
    fine = [rng.uniform(0, 0.2), rng.uniform(0.2, 0.6), rng.uniform(0, 0.3), rng.uniform(0.2, 0.5)][prof]
    if drc > 0:                                          # dynamic range compression
        L = L - drc * (lowpass(L, rng.uniform(12, 40), dw) - ref)
    if usm > 0:
        L = L + usm * (L - (ndimage.gaussian_filter(L, usig / dw) if usig < 1.6 else lowpass(L, usig, dw)))
    roi = inc & body & (np.abs(X - A['spiney']) < 55 * m) & (Z < m * (G['z'][2] - A['zcr'])) & (Z > m * (G['z'][5] - A['zcr']))
    vals = L[roi] if roi.sum() > 1000 else L[inc]
    lo_b = np.percentile((L[inc & body] if (inc & body).sum() > 1000 else L[inc])[::7], rng.uniform(0.5, 5))
    lo_r = np.percentile(vals[::5], rng.uniform(1, 12))
    lo = lo_r - rng.uniform(0.0, 0.35) * max(0.0, lo_r - lo_b)
    hi = np.percentile(vals[::5], rng.uniform(99.0, 99.9))
    lo, hi = lo - rng.uniform(-0.03, 0.1) * (hi - lo), hi + rng.uniform(-0.03, 0.1) * (hi - lo)
    # ---- full resolution: noise, fine enhancement, LUT (in place, float32)
    Lf = np.array(Image.fromarray(L.astype(np.float32)).resize((cols, rows), Image.BILINEAR))
    n = rng.standard_normal((rows, cols), dtype=np.float32)
    if A['cr']:                                          # CR: plate blur correlates the noise
        n = ndimage.uniform_filter(n, 2) * 1.8
    n *= np.asarray(Image.fromarray((sigma * (1 + 0.4 * usm)).astype(np.float32)).resize((cols, rows), Image.BILINEAR))
    Lf += n
    del n
    if fine > 0:                                         # small-kernel edge enhancement (boosts noise too)
        Lf += fine * (Lf - ndimage.uniform_filter(Lf, 3))
    if A['gridlines']:
        Lf += (rng.uniform(0.004, 0.012) * np.sin(2 * np.pi * np.arange(cols) / rng.uniform(2.2, 6))).astype(np.float32)
    Lf -= lo
    Lf *= 1 / (hi - lo)
    if prof == 2:
        np.clip(Lf, 0, 1, out=Lf)
        Lf **= rng.uniform(0.7, 1.4)
    else:
        k, c0 = rng.uniform(4, 9), rng.uniform(0.42, 0.58)      # S-curve with soft shoulder/toe
        s0, s1 = expit(k * (-rng.uniform(0, 0.3) - c0)), expit(k * (1 + rng.uniform(0, 0.4) - c0))
        Lf -= c0
        Lf *= k
        expit(Lf, out=Lf)
        Lf -= s0
        Lf *= 1 / (s1 - s0)
    np.clip(Lf, 0, 1, out=Lf)
    maxv = 2 ** A['bits'] - 1
    vlo, vhi = (0, maxv) if rng.random() < 0.7 else (int(maxv * rng.uniform(0, 0.1)), int(maxv * rng.uniform(0.85, 1)))
    Lf *= -(vhi - vlo) if A['mono1'] else vhi - vlo
    Lf += (vhi if A['mono1'] else vlo) + 0.5
    img = Lf.astype(np.uint16)
    white = vlo if A['mono1'] else vhi
    if A['shutter']:                                     # electronic shutter outside the collimated field
        out = np.asarray(Image.fromarray((coll < 0.5).astype(np.uint8)).resize((cols, rows), Image.NEAREST)) > 0
        img[out] = white if rng.random() < 0.7 else (vhi if A['mono1'] else vlo)
    if A['view'] == 'LAT' and rng.random() < 0.5:
        img = np.ascontiguousarray(img[:, ::-1])
        A['orient'] = ['A', 'F']
    else:
        A['orient'] = ['L', 'F'] if A['view'] == 'AP' else ['P', 'F']
    if A['text']:
        fs = rows * rng.uniform(0.012, 0.02)
        lines = [f"PHANTOM C  {A['view']}", f"{int(kv)} kV  {A['mas']} mAs", f"EI {A['ei']}"]
        r0 = int(rows * 0.02)
        for t in lines:
            mk = text_mask(t, fs)
            c0 = int(cols * 0.02) if rng.random() < 0.7 else cols - mk.shape[1] - int(cols * 0.02)
            img[r0:r0 + mk.shape[0], c0:c0 + mk.shape[1]][mk] = white
            r0 += int(mk.shape[0] * 1.2)
    A['wc'], A['ww'] = (vlo + vhi) / 2, max(1, vhi - vlo)
    return np.ascontiguousarray(img)


# ----------------------------------------------------------------------------- DICOM
def uid(rng):
    return '2.25.' + str(int.from_bytes(rng.bytes(16), 'big') >> 1)


def write_dicom(path, img, P, A, ids, inst):
    cls = CR_CLASS if A['cr'] else DX_CLASS
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = cls, ids['sop']
    meta.TransferSyntaxUID, meta.ImplementationClassUID = ExplicitVRLittleEndian, IMPL_UID
    meta.ImplementationVersionName = 'PHANTOM_C_1'
    ds = FileDataset(path, {}, file_meta=meta, preamble=b'\0' * 128)
    d, t, sp = ids['date'], ids['time'], [round(A['ps'], 4)] * 2
    tags = dict(
        SpecificCharacterSet='ISO_IR 100', ImageType=['ORIGINAL', 'PRIMARY'], SOPClassUID=cls,
        SOPInstanceUID=ids['sop'], StudyDate=d, SeriesDate=d, ContentDate=d, StudyTime=t, SeriesTime=t,
        ContentTime=t, AccessionNumber=ids['acc'], Modality='CR' if A['cr'] else 'DX',
        Manufacturer=['PhantomC Medical', 'Synthetica', 'VirtuRay', 'NullVendor'][A['prof']],
        InstitutionName='PHANTOM C SYNTHETIC SITE', StudyDescription='LUMBAR SPINE 2 VIEWS',
        SeriesDescription='L-SPINE ' + A['view'], PatientName=ids['name'], PatientID=ids['pid'],
        PatientBirthDate=str(int(d[:4]) - P['age']) + '0101', PatientSex=P['sex'], PatientAge='%03dY' % P['age'],
        PatientSize=round(P['height'], 2), PatientWeight=round(P['bmi'] * P['height'] ** 2, 1),
        BodyPartExamined='LSPINE', KVP=A['kvp'], ExposureInmAs=A['mas'], Exposure=int(round(A['mas'])),
        DistanceSourceToDetector=A['sid'], DistanceSourceToPatient=round(A['sid'] / A['m'], 1),
        Grid='FOCUSED' if A['grid'] else 'NONE', ViewPosition=A['view'], PatientOrientation=A['orient'],
        StudyInstanceUID=ids['study'], SeriesInstanceUID=ids['series'], StudyID='1', SeriesNumber=inst,
        InstanceNumber=1, SamplesPerPixel=1, PhotometricInterpretation='MONOCHROME1' if A['mono1'] else 'MONOCHROME2',
        Rows=img.shape[0], Columns=img.shape[1], BitsAllocated=16, BitsStored=A['bits'], HighBit=A['bits'] - 1,
        PixelRepresentation=0, WindowCenter=round(A['wc'], 1), WindowWidth=round(A['ww'], 1),
        BurnedInAnnotation='YES' if A['text'] else 'NO', LossyImageCompression='00')
    if A['cr']:
        tags.update(PixelSpacing=sp, Sensitivity=A['ei'])
    else:
        tags.update(PresentationIntentType='FOR PRESENTATION', ImagerPixelSpacing=sp, DetectorType='SCINTILLATOR',
                    ExposureIndex=float(A['ei']), PixelIntensityRelationship='LOG',
                    PixelIntensityRelationshipSign=1 if A['mono1'] else -1,
                    RescaleIntercept=0, RescaleSlope=1, RescaleType='US', **({'PixelSpacing': sp} if A['ei'] % 2 else {}))
    for k, v in tags.items():
        setattr(ds, k, v)
    ds.PixelData = img.astype('<u2').tobytes()
    ds.save_as(path, enforce_file_format=True)


def make_study(args):
    idx, seed, out = args
    t0 = time.time()
    rng = np.random.default_rng([seed, idx, 0xC])
    P = sample_patient(rng)
    G = spine_geometry(P, rng)
    pid = 'PHC%05d' % (idx + 1)
    ids = {'pid': pid, 'name': 'PHANTOM^C%04d' % (idx + 1), 'study': uid(rng), 'acc': 'C%07d' % rng.integers(1e7),
           'date': '20%02d%02d%02d' % (rng.integers(15, 25), rng.integers(1, 13), rng.integers(1, 29)),
           'time': '%02d%02d%02d' % (rng.integers(7, 19), rng.integers(60), rng.integers(60))}
    os.makedirs(os.path.join(out, pid), exist_ok=True)
    rows = []
    for inst, view in enumerate(['AP', 'LAT'], 1):
        A = sample_acq(rng, view, P)
        img = render_view(P, G, A, rng)
        ids.update(series=uid(rng), sop=uid(rng))
        rel = f'{pid}/{pid}_{view}.dcm'
        write_dicom(os.path.join(out, rel), img, P, A, ids, inst)
        T = P['T']
        lab = 0 if T >= -1.0 else (2 if T <= -2.5 else 1)
        rows.append([rel, lab, f'{T:.2f}', f'{1.047 + 0.11 * T:.4f}', pid, view])
    return idx, rows, time.time() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument('out'); ap.add_argument('n', type=int); ap.add_argument('seed', type=int)
    ap.add_argument('--workers', type=int, default=1)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    jobs = [(i, a.seed, a.out) for i in range(a.n)]
    t0, res = time.time(), {}
    if a.workers > 1:
        import multiprocessing as mp
        with mp.Pool(a.workers) as pool:
            for i, rows, dt in pool.imap_unordered(make_study, jobs):
                res[i] = rows
    else:
        for j in jobs:
            i, rows, dt = make_study(j)
            res[i] = rows
    with open(os.path.join(a.out, 'manifest.csv'), 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['path', 'label', 't_score', 'bmd', 'patient_id', 'view'])
        for i in sorted(res):
            w.writerows(res[i])
    el = time.time() - t0
    print(f'{a.n} studies in {el:.1f} s ({el / max(1, a.n):.2f} s/study wall, {a.workers} worker(s))')


if __name__ == '__main__':
    main()
