#!/usr/bin/env python3
"""phantom_n -- atlas-style 2-D synthetic lumbar-spine radiographs (AP + LAT) with known BMD.

Usage:  phantom_n.py OUT_DIR N_STUDIES SEED [--workers W]

Every study draws its parameters from numpy.random.default_rng([SEED, index]), so the output
does not depend on the worker count. Each study gives two DICOM Part 10 files (AP, LAT) and a
row per image in OUT_DIR/manifest.csv (path,label,t_score,bmd,patient_id,view).

Anatomy (drawn directly in 2-D image space, like an illustrator's atlas, no 3-D ray tracing).
Every structure is a 2-D shape that carries an analytic *projected thickness profile*, so
the maps it writes are line integrals. The maps are mineral mass (g/cm3 x mm), water path,
fat path and gas path, all on a grid at half the output resolution.
  * Vertebral bodies T12-L5 (+S1) are superelliptic slabs in a rotated local frame. Each has
    a waist, concave endplates and a size that varies per level. The beam chord through the
    body is 2b(1-|u/a|^p)^(1/p); an inner chord (shrunk by the cortical thickness) carries the
    trabecular mineral and outer-minus-inner carries the cortex. Endplates are Gaussian ridges.
    In the AP view an endplate tilted by the lordosis projects as a double (elliptic) line.
  * AP posterior elements: pedicle "eyes" (ellipsoids with a bright rim), transverse processes
    (tapered capsules, longest at L3), laminae, facet ellipses and a teardrop spinous process.
    LAT: pedicles, articular pillars, laminae, a hatchet spinous process, fat-filled foramina.
  * Sacrum (S1 body, a tapering plate with foramina), iliac wings with a crest rim and a dense
    SI margin (AP; a doubled, offset crest in LAT), and 11th/12th ribs as curved tubes with a
    cortical rim.
  * Soft tissue: a superelliptic trunk whose depth and width follow BMI, a subcutaneous and
    visceral fat path, psoas shadows (muscle replacing fat), perirenal fat rims, a colon tube
    whose gas is patchy and mottled (stool bubbles), small-bowel gas, and aortic wall plaques.
Density:
  trabecular vBMD = 170 + 30*T mg/cm3 (+-12 per patient), clipped at 30. Cortical density and
  thickness fall only weakly with T (1+0.035T, 1.0+0.05T mm), so the cortical frame and the
  endplates stay relatively visible in osteoporotic bodies. The trabecular texture is filtered
  noise through a tanh "strand" nonlinearity, added at full resolution. Its grain grows and
  its vertical/horizontal anisotropy rises from ~1.4 to ~3.6 as T falls, and its amplitude
  grows too. Compression fractures (wedge / biconcave / crush, mostly T12-L2) become likely
  below T ~ -2.5 and compact the trabeculae. Independent of T: BMI (trunk size and fat), disc
  narrowing, endplate sclerosis, osteophytes and facet hypertrophy (rising with age), aortic
  calcification (age), kVp and mAs, scatter, heel effect. Age correlates with T (r ~ -0.3).
Exposure: I = exp(-A/(1+0.025A)) (mild beam hardening) x heel + scatter (a low-passed
primary x path), then Poisson-like quantum noise at full resolution, detector blur and log.
Vendor chains (invented names, chosen per image):
  Kestrel  percentile window + gamma (+ a light unsharp mask)
  Halden   three-band multi-frequency enhancement, then a logistic S-curve
  Norvik   dynamic range compression + partial histogram equalisation + unsharp mask
  Ostra    random monotone tone curve (LUT) + a strong unsharp mask
Output: MONOCHROME1 or 2, 10-16 bits stored, DX or CR SOP class. Collimation is none, white
(physical shutter) or black (electronic mask). Some images have burned-in text and a lead
L/R marker. Transfer syntax is uncompressed Explicit VR Little Endian.
"""
import argparse
import csv
import os
import time
from multiprocessing import Pool

import numpy as np
from scipy import ndimage as ndi
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from PIL import Image, ImageDraw, ImageFont

F32 = np.float32
SOP_DX = "1.2.840.10008.5.1.4.1.1.1.1"   # Digital X-Ray Image Storage - For Presentation
SOP_CR = "1.2.840.10008.5.1.4.1.1.1"     # Computed Radiography Image Storage
VENDORS = ["Kestrel", "Halden", "Norvik", "Ostra"]

def sig(z):
    return 0.5 + 0.5 * np.tanh(z)

def label_of(t):
    return 0 if t >= -1.0 else (2 if t <= -2.5 else 1)

# ----------------------------------------------------------------------------- canvas / shapes
class Canvas:
    """Projection maps on a regular grid, mm coordinates, y pointing down."""

    def __init__(self, W, H, ds):
        self.ds, self.ny, self.nx = ds, int(round(H / ds)), int(round(W / ds))
        self.W, self.H = self.nx * ds, self.ny * ds
        z = lambda: np.zeros((self.ny, self.nx), F32)
        self.bone, self.trab, self.water, self.fat, self.gas = z(), z(), z(), z(), z()
        self.X = ((np.arange(self.nx) + 0.5) * ds).astype(F32)[None, :]
        self.Y = ((np.arange(self.ny) + 0.5) * ds).astype(F32)[:, None]

    def box(self, x0, x1, y0, y1):
        ds = self.ds
        i0, i1 = max(int(y0 / ds), 0), min(int(np.ceil(y1 / ds)) + 1, self.ny)
        j0, j1 = max(int(x0 / ds), 0), min(int(np.ceil(x1 / ds)) + 1, self.nx)
        if i0 >= i1 or j0 >= j1:
            return None
        return (slice(i0, i1), slice(j0, j1)), self.X[:, j0:j1], self.Y[i0:i1]

def ellipsoid(cv, arr, c, rx, ry, ang, val, rim=0.0, rimw=0.2):
    """Projected ellipsoid val*sqrt(1-r^2), optionally with a bright ring just inside r=1."""
    (cx, cy), R = c, max(rx, ry) + 1.0
    b = cv.box(cx - R, cx + R, cy - R, cy + R)
    if b is None:
        return
    sl, X, Y = b
    co, si = np.cos(ang), np.sin(ang)
    u, v = ((X - cx) * co - (Y - cy) * si) / rx, ((X - cx) * si + (Y - cy) * co) / ry
    r = np.sqrt(u * u + v * v)
    out = val * np.sqrt(np.clip(1 - r * r, 0, 1))
    if rim:
        out += rim * np.exp(-((r - 1 + rimw) / (0.6 * rimw)) ** 2) * (r < 1)
    arr[sl] += out

def capsule_q(cv, p0, p1, r0, r1):
    """Normalised distance q = d/r(t) to a tapered segment, on its bounding box."""
    (x0, y0), (x1, y1), R = p0, p1, max(r0, r1) + 1.0
    b = cv.box(min(x0, x1) - R, max(x0, x1) + R, min(y0, y1) - R, max(y0, y1) + R)
    if b is None:
        return None, None
    sl, X, Y = b
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((X - x0) * dx + (Y - y0) * dy) / (dx * dx + dy * dy + 1e-9), 0, 1)
    return sl, np.hypot(X - x0 - t * dx, Y - y0 - t * dy) / (r0 + (r1 - r0) * t)

def capsule(cv, arr, p0, p1, r0, r1, val, rim=0.0, rimw=0.25):
    sl, q = capsule_q(cv, p0, p1, r0, r1)
    if sl is None:
        return
    out = val * np.sqrt(np.clip(1 - q * q, 0, 1))
    if rim:
        out += rim * np.exp(-((q - 1 + rimw) / (0.6 * rimw)) ** 2) * (q < 1)
    arr[sl] += out

def tube_band(cv, xs, sd, ys, slope, kk, L, r, rc):
    """Rib: a curved tube y = ys + slope*dx + kk*dx^2 (dx lateral from xs), with cortical rim."""
    ye = ys + slope * L + kk * L * L
    b = cv.box(min(xs, xs + sd * L), max(xs, xs + sd * L), min(ys, ye) - r - 2, max(ys, ye) + r + 2)
    if b is None:
        return
    sl, X, Y = b
    dx = sd * (X - xs)
    d = np.abs(Y - (ys + slope * dx + kk * dx * dx)) / np.sqrt(1 + (slope + 2 * kk * dx) ** 2)
    ch = lambda rr: 2 * np.sqrt(np.clip(rr * rr - d * d, 0, None))
    cv.bone[sl] += (rc * (ch(r) - ch(r - 1.3)) + 0.22 * ch(r - 1.3)) * sig(dx / 2) * sig((L - dx) / 5)

def smooth_noise(rng, shape, s):
    """Unit-variance Gaussian random field with correlation length ~s pixels."""
    k = max(1, int(s / 2))
    small = ndi.gaussian_filter(rng.standard_normal((shape[0] // k + 2, shape[1] // k + 2)).astype(F32), s / k)
    f = ndi.zoom(small, k, order=1)[: shape[0], : shape[1]]
    return (f - f.mean()) / (f.std() + 1e-6)

def xf(cx, cy, ang):
    co, si = np.cos(ang), np.sin(ang)
    return lambda u, v: (cx + u * co + v * si, cy - u * si + v * co)

# ----------------------------------------------------------------------------- patient model
def sample_patient(rng):
    T = rng.uniform(-4.5, 1.5)
    sex = "F" if rng.random() < 0.85 else "M"
    age = float(np.clip(64 - 1.8 * (T + 1.5) + rng.normal(0, 10), 40, 92))
    bmi = float(np.clip(rng.normal(27, 5), 17, 45))
    height = rng.normal(175 if sex == "M" else 162, 7)
    o = np.clip((1.5 - T) / 6, 0, 1)                                 # 0 healthy .. 1 severe
    degen = float(np.clip((age - 45) / 40, 0, 1) * rng.uniform(0.2, 1.2))
    sx = (0.30 + 0.35 * o) * rng.normal(1, 0.1)
    P = dict(T=T, sex=sex, age=age, bmi=bmi, height=height, weight=bmi * (height / 100) ** 2,
             vbmd=max(30.0, 170 + 30 * T + rng.normal(0, 12)) / 1000.0,
             rc=1.0 * (1 + 0.035 * T) * rng.normal(1, 0.04),
             tc=float(np.clip(1.0 + 0.05 * T + rng.normal(0, 0.08), 0.5, 1.4)),
             tep=rng.uniform(0.7, 1.0), rep=0.42 * (1 + 0.02 * T),
             tex=(sx, sx * (1.4 + 2.2 * o) * rng.normal(1, 0.1), (0.10 + 0.22 * o) * rng.normal(1, 0.1),
                  1.2 + 1.5 * o),
             degen=degen, calc=float(np.clip((age - 50) / 35, 0, 1) * rng.uniform(0, 1.3)),
             scol=(rng.normal(0, 2 + 4 * degen), rng.uniform(0, 2 * np.pi)),
             slope=np.deg2rad(rng.uniform(32, 48)), obl=rng.uniform(0, 2.0), pel=rng.normal(1, 0.06),
             D=float(np.clip(205 + 7 * (bmi - 25) + rng.normal(0, 14), 150, 360)),
             Wb=float(np.clip(135 + 4.0 * (bmi - 25) + rng.normal(0, 8), 110, 230)),
             fsc=float(np.clip(8 + 2.2 * (bmi - 20) + rng.normal(0, 4), 3, 65)),
             vf=float(np.clip(0.12 + 0.012 * (bmi - 22) + rng.normal(0, 0.05), 0.03, 0.5)))
    sz = (1.08 if sex == "M" else 1.0) * rng.normal(1, 0.05)
    frac = [None] * 6
    if rng.random() < 0.7 / (1 + np.exp(1.6 * (T + 2.6))):
        for li in rng.choice(6, size=rng.integers(1, 3), replace=False, p=[.24, .3, .2, .12, .08, .06]):
            kind = rng.choice(["wedge", "biconcave", "crush"], p=[0.55, 0.3, 0.15])
            frac[li] = (str(kind), rng.uniform(0.2, 0.45))
    phi0, step = rng.uniform(-18, -8), rng.uniform(5.5, 8.5)
    tp = [7, 13, 19, 25, 21, 18]
    P["lev"] = [dict(a=(19 + 1.3 * i) * sz * rng.normal(1, 0.03), b=(14 + 0.6 * i) * sz * rng.normal(1, 0.03),
                     h=(23.5 + 0.8 * min(i, 4)) * sz * rng.normal(1, 0.03),
                     disc=(7 + 0.8 * i) * rng.normal(1, 0.08) * (1 - 0.45 * degen * rng.uniform()),
                     conc=rng.uniform(0.6, 1.8), waist=rng.uniform(0.8, 2.2), frac=frac[i],
                     scl=1 + 1.3 * degen * rng.uniform(), tp=tp[i] * sz * rng.normal(1, 0.1),
                     sp=rng.uniform(26, 36) * sz, tpa=rng.uniform(-0.2, 0.1), ost=degen * rng.uniform(0, 7, 8) * (rng.random(8) < 0.7),
                     phi=np.deg2rad(phi0 + step * i + rng.normal(0, 2)))
                for i in range(6)]
    return P

# ----------------------------------------------------------------------------- vertebrae
def body(cv, cx, cy, ang, a, bb, h, P, lv, view, tilt=0.0, pw=2.0):
    """Vertebral body: superelliptic chord, cortex = outer-inner chord, endplates as ridges."""
    e, R = 0.3, np.hypot(a + 2, h / 2 + tilt + 2)
    b = cv.box(cx - R, cx + R, cy - R, cy + R)
    if b is None:
        return
    sl, X, Y = b
    co, si = np.cos(ang), np.sin(ang)
    u, v = (X - cx) * co - (Y - cy) * si, (X - cx) * si + (Y - cy) * co
    un = np.clip(u / a, -1, 1)
    un2 = un * un
    aeff = a - lv["waist"] * (1 - np.clip(2 * v / h, -1, 1) ** 2)
    conc, dt, db, fr = lv["conc"] * (1 - un2), 0.0, 0.0, lv["frac"]
    if fr:
        kind, loss = fr
        if kind == "biconcave":
            dt = db = 0.5 * loss * h * (1 - un2) * 1.3
        else:
            d = loss * h * ((1 - un) / 2 * 1.4 if (kind == "wedge" and view == "LAT") else 0.5 + 0 * un)
            dt, db = 0.65 * d, 0.35 * d
    top, bot, off = -h / 2 + conc + dt, h / 2 - conc - db, tilt * np.sqrt(1 - un2)
    t, tep, au = P["tc"], P["tep"], np.abs(u)
    co_ = 2 * bb * np.clip(1 - (au / aeff) ** pw, 0, 1) ** (1 / pw)
    ci_ = 2 * (bb - t) * np.clip(1 - (au / (aeff - t)) ** pw, 0, 1) ** (1 / pw)
    vo = sig((v - top + off) / e) * sig((bot + off - v) / e)
    vi = sig((v - top + off - tep) / e) * sig((bot + off - tep - v) / e)
    trab = (P["vbmd"] * (1 + (0.8 * fr[1] if fr else 0))) * ci_ * vi
    g = lambda z: np.exp(-((z / tep) ** 2))
    if tilt > 0.3:
        ep = 0.5 * (g(v - top + off) + g(v - top - off) + g(v - bot + off) + g(v - bot - off))
    else:
        ep = g(v - top) + g(v - bot)
    cv.bone[sl] += P["rc"] * (co_ - ci_) * vo + P["rep"] * P["rc"] * lv["scl"] * co_ * ep + trab
    cv.trab[sl] += trab

def vert_ap(cv, P, lv, i, cx, cy, ang):
    a, bb, h = lv["a"], lv["b"], lv["h"] * np.cos(lv["phi"])
    body(cv, cx, cy, ang, a, bb, h, P, lv, "AP", tilt=bb * abs(np.sin(lv["phi"])), pw=2.0)
    g, dg, rc, dsc = xf(cx, cy, ang), P["degen"], P["rc"], lv["disc"]
    capsule(cv, cv.bone, g(0, 0.28 * h), g(0, 0.5 * h + 0.6 * dsc), 2.8, 5.0, 7.0, rim=5.0)  # spinous
    for sd in (-1, 1):
        ellipsoid(cv, cv.bone, g(sd * 0.6 * a, -0.2 * h), 0.19 * a, 0.26 * h, ang, 3.0, rim=4 * rc)
        L = lv["tp"]
        capsule(cv, cv.bone, g(sd * 0.72 * a, -0.12 * h), g(sd * (0.72 * a + L), -0.12 * h + lv["tpa"] * L),
                7.5 if i == 5 else 4.8, 3.0, 3.5, rim=2.0)
        capsule(cv, cv.bone, g(sd * 0.55 * a, 0.0), g(sd * 0.12 * a, 0.45 * h), 4.0, 3.5, 4.0)
        ellipsoid(cv, cv.bone, g(sd * 0.38 * a, 0.5 * h + 0.4 * dsc), 3.2, 8.0, ang - sd * 0.15, 3.5 * (1 + dg), rim=2)
        ellipsoid(cv, cv.bone, g(sd * 0.45 * a, -0.5 * h - 0.3 * dsc), 3.0, 7.0, ang + sd * 0.15, 3 * (1 + dg), rim=2)
        for k, (vv, sg) in enumerate(((-h / 2, -1), (h / 2, 1))):
            L = lv["ost"][k + (0 if sd < 0 else 2)]
            if L > 0.8:
                capsule(cv, cv.bone, g(sd * (a - 1.5), vv - sg * 1.5), g(sd * (a + L), vv + sg * 0.6 * L),
                        2.4, 0.7, 6.0)

def vert_lat(cv, P, lv, i, cx, cy, ang):
    a, bb, h = lv["b"], lv["a"], lv["h"]
    body(cv, cx, cy, ang, a, bb, h, P, lv, "LAT", tilt=P["obl"], pw=2.6)
    g, dg, dsc = xf(cx, cy, ang), P["degen"], lv["disc"]
    ellipsoid(cv, cv.bone, g(a - 1.5, 0.0), 1.8, 3.0, ang, -3.0)                      # basivertebral
    capsule(cv, cv.bone, g(a - 1, -0.2 * h), g(a + 11, -0.17 * h), 4.8, 4.0, 7.0, rim=4.0)  # pedicles
    ellipsoid(cv, cv.fat, g(a + 5, 0.3 * h + 0.25 * dsc), 4.5, 0.3 * h + 0.3 * dsc, ang, 25.0)  # foramen
    ellipsoid(cv, cv.bone, g(a + 8, -0.12 * h), 6.0, 5.0, ang, 3.0)                  # transverse proc.
    ellipsoid(cv, cv.bone, g(a + 13, -0.42 * h), 4.0, 9.0, ang + 0.5, 6 * (1 + dg), rim=1.5)
    ellipsoid(cv, cv.bone, g(a + 16, 0.45 * h + 0.5 * dsc), 4.0, 9.0, ang + 0.5, 6 * (1 + dg), rim=1.5)
    capsule(cv, cv.bone, g(a + 11, -0.25 * h), g(a + 17, 0.45 * h), 4.5, 4.5, 6.0)    # lamina
    capsule(cv, cv.bone, g(a + 14, 0.08 * h), g(a + 8 + lv["sp"], 0.22 * h), 0.3 * h, 0.38 * h, 4.0, rim=2.5)
    for k, (vv, sg) in enumerate(((-h / 2, -1), (h / 2, 1))):
        L = lv["ost"][4 + k]
        if L > 0.8:
            capsule(cv, cv.bone, g(-a + 1.5, vv - sg * 1.5), g(-a - L, vv + sg * 0.5 * L), 2.5, 0.8, 9.0)

def plaques(cv, rng, wall_x, y0, y1, n, val):
    """Aortic calcifications: short bright streaks on the wall lines wall_x(y) -> (x_a, x_b)."""
    for _ in range(n):
        y = rng.uniform(y0, y1)
        x = wall_x(y)[rng.integers(2)] + rng.normal(0, 0.8)
        L = rng.uniform(2, 10)
        capsule(cv, cv.bone, (x, y), (x + rng.normal(0, 1), y + L), rng.uniform(0.6, 1.4), 0.6,
                val * rng.uniform(0.5, 1.3))

def colon(cv, rng, pts, rad, sbowel):
    """Gas-filled colon tube with patchy filling and mottled (bubbly stool) content."""
    q = np.full((cv.ny, cv.nx), 9.0, F32)
    for p0, p1 in zip(pts[:-1], pts[1:]):
        sl, qq = capsule_q(cv, p0, p1, rad * rng.uniform(0.8, 1.1), rad * rng.uniform(0.8, 1.1))
        if sl is not None:
            np.minimum(q[sl], qq, out=q[sl])
    prof = np.sqrt(np.clip(1 - q * q, 0, 1))
    fill = sig(smooth_noise(rng, q.shape, 40 / cv.ds) * 1.3 + rng.normal(-0.4, 0.6))
    mott = 0.2 + 0.8 * sig((smooth_noise(rng, q.shape, 0.9 / cv.ds) - 0.5) / 0.25)
    cv.gas += 0.9 * rad * prof * fill * mott
    for c, r in sbowel:
        ellipsoid(cv, cv.gas, c, r, r * rng.uniform(0.6, 1.0), rng.uniform(0, 3), 1.6 * r)

# ----------------------------------------------------------------------------- views
def render_ap(P, rng, ds):
    W, H = rng.uniform(300, 350), rng.uniform(370, 430)
    cv = Canvas(W, H, ds)
    lev, (sa, sp_) = P["lev"], P["scol"]
    x0, y = W / 2 + rng.normal(0, 6), rng.uniform(12, 32)
    cs = []
    for i, lv in enumerate(lev):
        hh = lv["h"] * np.cos(lv["phi"]) / 2 + lv["b"] * abs(np.sin(lv["phi"]))
        if i:
            y += hh
        cs.append((x0 + sa * np.sin(sp_ + 0.6 * i), y, np.arctan(sa * 0.6 * np.cos(sp_ + 0.6 * i) / 35)))
        y += hh + lev[i]["disc"] * np.cos(lev[i]["phi"])
    for i, lv in enumerate(lev):
        vert_ap(cv, P, lv, i, *cs[i])
    l5, (x5, y5, a5) = lev[5], cs[5]
    ys1 = y + 12                                              # S1 body + sacral plate
    ellipsoid(cv, cv.bone, (x5, ys1 - 6), l5["a"] * 0.9, l5["b"] * 0.8 * np.sin(P["slope"]) + 2, a5,
              2.0, rim=4.0 * P["rep"] / 0.42, rimw=0.12)              # S1 endplate seen obliquely
    hw0 = l5["a"] + 30
    hwf = lambda yy: np.clip(hw0 - 0.55 * np.clip(yy - (ys1 - 10), 0, None), 6, None)
    sl, X, Y = cv.box(x5 - hw0 - 5, x5 + hw0 + 5, ys1 - 20, ys1 + 110)
    adx, hw = np.abs(X - x5), hwf(Y)
    m = sig((hw - adx) / 0.8) * sig((Y - (ys1 - 12 + 0.15 * adx)) / 0.8) * sig((ys1 + 95 - Y) / 4)
    cv.bone[sl] += m * (4 + 3 * np.sqrt(np.clip(1 - (adx / hw) ** 2, 0, 1)))
    for k in range(4):
        for sd in (-1, 1):
            ellipsoid(cv, cv.bone, (x5 + sd * (17 - 2 * k), ys1 + 22 + 21 * k), 4.5 - 0.4 * k, 3.8, 0, -4.5, rim=2.0)
    capsule(cv, cv.bone, (x5, ys1 + 12), (x5, ys1 + 105), 3.0, 2.0, 3.0)
    yct = cs[4][1] + lev[4]["h"] / 2 + rng.normal(4, 6)       # iliac wings
    for sd in (-1, 1):
        xpk, kc = 95 * P["pel"] + rng.normal(0, 4), rng.uniform(0.010, 0.018)
        b = cv.box(min(x5 + sd * 15, x5 + sd * (xpk + 80)), max(x5 + sd * 15, x5 + sd * (xpk + 80)), yct - 10, H)
        if b is None:
            continue
        sl, X, Y = b
        dx, ysi = sd * (X - x5), ys1 + rng.uniform(45, 60)      # ysi: lower end of the SI joint
        crest = yct + kc * (dx - xpk) ** 2
        med = np.maximum(hwf(Y) + 2.5, hwf(ysi) + 2.5 + 1.4 * np.clip(Y - ysi, 0, None))  # SI joint, brim
        lat = xpk + 60 - 0.6 * np.clip(Y - yct - 20, 0, None)
        m = sig((Y - crest) / 0.8) * sig((dx - med) / 0.6) * sig((lat - dx) / 1.5) * sig((yct + 120 - Y) / 20)
        cv.bone[sl] += m * (2.5 + 6 * np.exp(-(((Y - crest) / 5) ** 2)) + 6 * np.exp(-(((dx - med) / 7) ** 2))
                            + 3 * np.exp(-(((lat - dx) / 3) ** 2)))
    xT, yT = cs[0][0], cs[0][1]                                 # 11th / 12th ribs
    for sd in (-1, 1):
        for yo, L in ((rng.uniform(-4, 6), rng.uniform(70, 140)), (rng.uniform(-34, -22), rng.uniform(150, 220))):
            tube_band(cv, xT + sd * (lev[0]["a"] + 10), sd, yT + yo, rng.uniform(0.3, 0.6),
                      rng.uniform(0.0005, 0.002), L, rng.uniform(4.5, 6), P["rc"])
    # soft tissue
    X, Y, D, f = cv.X, cv.Y, P["D"], P["fsc"]
    xb = x0 + rng.normal(0, 6)
    Wy = P["Wb"] * (1 + 0.12 * sig((Y - yct) / 25))
    L = D * np.clip(1 - (np.abs(X - xb) / Wy) ** 3, 0, 1) ** (1 / 3)
    Li = (D - 2 * f) * np.clip(1 - (np.abs(X - xb) / (Wy - f)) ** 3, 0, 1) ** (1 / 3)
    cv.water += L * (1 + 0.025 * smooth_noise(rng, L.shape, 60 / ds))
    cv.fat += (L - Li) + P["vf"] * Li * (1 + 0.3 * smooth_noise(rng, L.shape, 50 / ds))
    y1, y5 = cs[1][1], cs[5][1]
    for sd in (-1, 1):
        capsule(cv, cv.fat, (x0 + sd * 14, y1 - 10), (x0 + sd * rng.uniform(45, 60), y5 + 30), 8, 24,
                -30 * (0.5 + P["vf"] * 3))                                   # psoas
        kc_ = (x0 + sd * rng.uniform(55, 70), cs[2][1] + (-8 if sd > 0 else 8) + rng.normal(0, 6))
        kang = sd * rng.uniform(0.15, 0.35)
        ellipsoid(cv, cv.fat, kc_, 30, 58, kang, 30 * (0.5 + P["vf"] * 3))   # perirenal fat rim
        ellipsoid(cv, cv.fat, kc_, 25, 53, kang, -28 * (0.5 + P["vf"] * 3))
    Wg, j = 0.52 * P["Wb"], lambda: rng.normal(0, 8)
    pts = [(xb - Wg + j(), yct + 70), (xb - Wg - 5 + j(), cs[3][1]), (xb - Wg + j(), y1 - 5 + j()),
           (xb - 0.3 * Wg + j(), cs[2][1] + j()), (xb + j(), cs[3][1] + rng.uniform(0, 40)),
           (xb + 0.35 * Wg + j(), cs[2][1] + j()), (xb + Wg + j(), y1 - 15 + j()),
           (xb + Wg + 5 + j(), cs[3][1]), (xb + Wg + j(), yct + 50), (xb + 0.3 * Wg + j(), yct + 95)]
    sb = [((xb + rng.normal(0, 50), rng.uniform(cs[3][1], yct + 60)), rng.uniform(6, 14))
          for _ in range(rng.integers(0, 7))]
    colon(cv, rng, pts, rng.uniform(18, 26), sb)
    xa = x0 + rng.uniform(12, 24)                               # aorta (patient's left = image right)
    plaques(cv, rng, lambda yy: (xa - 10, xa + 10), 0, cs[4][1],
            rng.poisson(P["calc"] * 15), 4.0)
    return cv, (x0, cs)

def render_lat(P, rng, ds):
    W, H = rng.uniform(290, 340), rng.uniform(370, 430)
    cv = Canvas(W, H, ds)
    lev = P["lev"]
    pts, cx, cy = [], 0.0, rng.uniform(12, 32)
    for i, lv in enumerate(lev):
        if i:
            ph = 0.5 * (lev[i - 1]["phi"] + lv["phi"])
            d = lev[i - 1]["h"] / 2 + lev[i - 1]["disc"] + lv["h"] / 2
            cx, cy = cx + d * np.sin(ph), cy + d * np.cos(ph)
        pts.append([cx, cy, lv["phi"]])
    shift = W * 0.5 + rng.normal(0, 8) - pts[3][0]
    for p in pts:
        p[0] += shift
    for i, lv in enumerate(lev):
        vert_lat(cv, P, lv, i, *pts[i])
    l5, (x5, y5, a5) = lev[5], pts[5]                          # sacrum
    ss = P["slope"] + np.deg2rad(rng.uniform(-4, 4))
    d = l5["h"] / 2 + l5["disc"] * 1.2 + 11
    xs, ys = x5 + d * np.sin(0.5 * (a5 + ss)), y5 + d * np.cos(0.5 * (a5 + ss))
    s1 = dict(waist=0.3, conc=0.8, frac=None, scl=l5["scl"])
    body(cv, xs, ys, ss, l5["b"] * 0.95, l5["a"] * 0.95, 22, P, s1, "LAT", tilt=P["obl"], pw=2.6)
    g = xf(xs, ys, ss)
    capsule(cv, cv.bone, g(0, 10), g(-8, 100), 15, 5, 9.0, rim=2.5)          # sacral bodies + alae
    capsule(cv, cv.bone, g(l5["b"] + 6, 0), g(l5["b"] - 4, 70), 5, 2, 3.0, rim=1.5)  # sacral crest
    yct = pts[4][1] + lev[4]["h"] / 2 + rng.normal(4, 6)
    xpk = x5 + l5["b"] + rng.normal(-10, 8)
    for k in range(2):                                           # both iliac wings, offset
        ox, oy = (0, 0) if k == 0 else (rng.normal(0, 6), rng.uniform(2, 12))
        b = cv.box(xpk + ox - 90, xpk + ox + 70, yct + oy - 8, H)
        if b is None:
            continue
        sl, X, Y = b
        crest = yct + oy + 0.004 * (X - xpk - ox) ** 2
        m = sig((Y - crest) / 0.8) * sig((X - (xpk + ox - 85)) / 3) * sig((xpk + ox + 65 - X) / 3)
        cv.bone[sl] += m * (0.6 * sig((yct + 110 - Y) / 25) + 3 * np.exp(-(((Y - crest) / 4) ** 2)))
    yT = pts[0][1]                                               # ribs
    for k in range(rng.integers(1, 4)):
        tube_band(cv, pts[0][0] + lev[0]["b"] + rng.uniform(40, 60), -1, yT + rng.uniform(-30, 15) + 12 * k,
                  rng.uniform(0.5, 0.9), rng.uniform(0.0, 0.002), rng.uniform(60, 110), rng.uniform(4, 6), 0.6 * P["rc"])
    # soft tissue: path along the beam is the trunk width
    X, Y, D, f = cv.X, cv.Y, P["D"], P["fsc"]
    cys = np.array([p[1] for p in pts])
    cxs = np.array([p[0] for p in pts])
    back = lev[3]["b"] + 14 + lev[3]["sp"] + float(np.clip(14 + 1.0 * (P["bmi"] - 20) + rng.normal(0, 4), 8, 70))
    xback = (np.interp(Y[:, 0], cys, cxs) + back).astype(F32)[:, None]
    xm = xback - D / 2
    Wy = P["Wb"] * (1 + 0.07 * sig((Y - yct) / 25))
    L = 2 * Wy * np.clip(1 - (np.abs(X - xm) / (D / 2)) ** 3, 0, 1) ** (1 / 3)
    Li = 2 * (Wy - f) * np.clip(1 - (np.abs(X - xm) / (D / 2 - f)) ** 3, 0, 1) ** (1 / 3)
    cv.water += L * (1 + 0.02 * smooth_noise(rng, L.shape, 60 / ds))
    cv.fat += (L - Li) + P["vf"] * Li * (1 + 0.3 * smooth_noise(rng, L.shape, 50 / ds))
    front = lambda yy: np.interp(yy, cys, cxs) - lev[3]["b"]
    cpts, c = [], (front(cys[1]) - rng.uniform(30, 60), cys[1] + rng.uniform(0, 30))
    for _ in range(rng.integers(4, 9)):
        cpts.append(c)
        c = (float(np.clip(c[0] + rng.normal(0, 30), front(c[1]) - 140, front(c[1]) - 20)),
             float(np.clip(c[1] + rng.normal(25, 35), cys[0], H - 20)))
    sb = [((front(cys[3]) - rng.uniform(20, 100), rng.uniform(cys[2], H - 40)), rng.uniform(6, 14))
          for _ in range(rng.integers(0, 5))]
    colon(cv, rng, cpts, rng.uniform(16, 24), sb)
    ao, ra = rng.uniform(8, 20), rng.uniform(9, 12)             # aorta in front of L1-L4
    plaques(cv, rng, lambda yy: (front(yy) - ao - 2 * ra, front(yy) - ao), 0, cys[4],
            rng.poisson(P["calc"] * 25), 7.0)
    return cv, (cxs, cys)

# ----------------------------------------------------------------------------- exposure
def up2(a):
    """Fast 2x bilinear upsampling (pixel-centre aligned, edge-clamped)."""
    def ax0(a):
        p = np.concatenate([a[:1], a, a[-1:]], 0)
        o = np.empty((2 * a.shape[0],) + a.shape[1:], F32)
        o[0::2] = 0.75 * a + 0.25 * p[:-2]
        o[1::2] = 0.75 * a + 0.25 * p[2:]
        return o
    return ax0(ax0(a).T).T

def lowpass(img, s):
    """Gaussian low-pass (sigma s px) computed on a block-averaged grid and upsampled."""
    ny, nx = img.shape
    k = max(1, int(s / 2.5))
    if k == 1 or ny % 2 or nx % 2:
        return ndi.gaussian_filter(img, s, mode="nearest")
    my, mx = ny // k, nx // k
    small = ndi.gaussian_filter(img[: my * k, : mx * k].reshape(my, k, mx, k).mean((1, 3)), s / k, mode="nearest")
    if k == 2 and my * 2 == ny and mx * 2 == nx:
        return up2(small)
    return up2(ndi.zoom(small, (ny / 2 / my, nx / 2 / mx), order=1, grid_mode=True, mode="nearest"))

def text_mask(lines, px, shape_hw):
    font = ImageFont.load_default(size=max(8, int(px)))
    im = Image.new("L", (shape_hw[1], shape_hw[0]), 0)
    dr = ImageDraw.Draw(im)
    for k, s in enumerate(lines):
        dr.text((0, int(k * px * 1.3)), s, fill=255, font=font)
    return np.asarray(im, F32) / 255.0

def expose(cv, P, view, rng, sp, spine_x):
    kvp = rng.uniform(70, 90) if view == "AP" else rng.uniform(85, 102)
    mu_w, mu_b = 0.0205 * (80 / kvp) ** 0.35, 0.055 * (80 / kvp) ** 1.2
    A = mu_w * (cv.water - cv.gas) - 0.12 * mu_w * cv.fat + mu_b * np.clip(cv.bone, 0, None)
    A = up2(np.clip(A, 0, None).astype(F32))
    ny, nx = A.shape
    # trabecular texture at full resolution, inside a column around the spine
    sx, sy, amp, strand = P["tex"]
    j0 = max(0, int((min(spine_x) - 45) / (2 * sp)))
    j1 = min(cv.nx, int((max(spine_x) + 45) / (2 * sp)))
    tr = up2(cv.trab[:, j0:j1])
    j0, j1 = 2 * j0, 2 * j1
    tx = ndi.gaussian_filter(rng.standard_normal(tr.shape).astype(F32), (sy / sp, sx / sp))
    tx = np.tanh(strand * tx / (tx.std() + 1e-6))
    A[:, j0:j1] += mu_b * tr * amp * tx / (tx.std() + 1e-6)
    flip = view == "LAT" and rng.random() < 0.5 or view == "AP" and rng.random() < 0.08
    if flip:
        A = A[:, ::-1]
    marker = None
    if rng.random() < 0.7:                                    # lead L/R marker in an upper corner
        letter = "L" if rng.random() < 0.6 else "R"
        m = text_mask([letter], 12 / sp, (int(16 / sp), int(14 / sp)))
        y0, x0 = int(rng.uniform(0.06, 0.2) * ny), int(rng.choice([0.1, 0.8]) * nx + rng.normal(0, 20))
        sub = A[y0:y0 + m.shape[0], x0:x0 + m.shape[1]]
        sub += 0.25 + 4.0 * m[: sub.shape[0], : sub.shape[1]]
        marker = letter
    A = A / (1 + 0.025 * A)                                  # mild beam hardening
    rows = np.linspace(-0.5, 0.5, ny, dtype=F32)[:, None]
    I = np.exp(-A) * (1 + rng.uniform(-0.25, 0.25) * rows)  # heel effect
    I += rng.uniform(0.12, 0.3) * lowpass(I * A, 35 / sp)   # scatter ~ interactions, blurred
    # collimation
    ang, mg = np.deg2rad(rng.normal(0, 1.0)), rng.uniform(0.0, 0.08, 4)
    yy = np.arange(ny, dtype=F32)[:, None] / ny - 0.5
    xx = np.arange(nx, dtype=F32)[None, :] / nx - 0.5
    u, v = xx * np.cos(ang) - yy * np.sin(ang), xx * np.sin(ang) + yy * np.cos(ang)
    inside = (u > -0.5 + mg[0]) & (u < 0.5 - mg[1]) & (v > -0.5 + mg[2]) & (v < 0.5 - mg[3])
    coll = rng.choice(["none", "white", "black"], p=[0.35, 0.4, 0.25])
    if coll == "none":
        inside[:] = True
    elif coll == "white":
        I = I * (0.03 + 0.97 * ndi.gaussian_filter(inside.astype(F32), 3))
    c = I[ny // 3: 2 * ny // 3, nx // 3: 2 * nx // 3]
    n0 = rng.uniform(300, 3000) / float(np.median(c))
    I = I + np.sqrt(I / n0) * rng.standard_normal(I.shape, dtype=F32) + rng.normal(0, 2e-3) / n0 ** 0.5
    I = ndi.gaussian_filter(I, rng.uniform(0.5, 0.9))
    L = -np.log(np.clip(I, 1e-6, None))
    mas = float(np.round(n0 ** 0.5 * 0.3 + rng.uniform(5, 40), 1))
    return L.astype(F32), inside, coll, dict(kvp=kvp, mas=mas, marker=marker, flip=flip)

# ----------------------------------------------------------------------------- vendor chains
def vendor_process(L, inside, vendor, rng, sp):
    ny, nx = L.shape
    cen = inside[ny // 10: 9 * ny // 10, nx // 4: 3 * nx // 4]
    v = L[ny // 10: 9 * ny // 10, nx // 4: 3 * nx // 4][cen][::5]
    v = v[v > 1.2] if (v > 1.2).mean() > 0.2 else v          # direct-exposure (air) recognition
    lo, hi = np.percentile(v, [rng.uniform(0.5, 4), rng.uniform(99.5, 99.95)])
    n = np.clip((L - lo) / (hi - lo + 1e-6), 0, 1.2)
    usm = lambda x, s, k: x + k * (x - lowpass(x, s / sp))
    if vendor == "Kestrel":
        y = np.clip(n, 0, 1) ** rng.uniform(0.75, 1.3)
        y = usm(y, 1.0, rng.uniform(0, 0.4))
    elif vendor == "Halden":
        l1, l4, l20 = lowpass(n, 0.8 / sp), lowpass(n, 4 / sp), lowpass(n, 20 / sp)
        y = (rng.uniform(0.45, 0.8) * (l20 - 0.5) + rng.uniform(1.5, 2.3) * (l4 - l20)
             + rng.uniform(1.2, 1.8) * (l1 - l4) + rng.uniform(1.0, 1.5) * (n - l1))
        k = rng.uniform(4, 8)
        y = 1 / (1 + np.exp(-k * (y - rng.uniform(-0.05, 0.05))))
    elif vendor == "Norvik":
        y = n - rng.uniform(0.4, 0.75) * (lowpass(n, 25 / sp) - 0.5)
        vv = y[inside][::11]
        qs = np.linspace(0, 1, 257)
        cdf = np.percentile(vv, qs * 100)
        eq = np.interp(y, cdf, qs)
        b = rng.uniform(0.3, 0.7)
        y = b * eq + (1 - b) * (y - cdf[0]) / (cdf[-1] - cdf[0] + 1e-6)
        y = usm(y, 1.5, rng.uniform(0.3, 0.8))
    else:  # Ostra
        xs = np.linspace(0, 1, 6)
        ys = np.sort(np.clip(xs + rng.normal(0, 0.07, 6), 0, 1))
        ys[0], ys[-1] = 0.0, 1.0
        y = np.interp(n, xs, ys)
        y = usm(y, rng.uniform(2, 3.5), rng.uniform(0.6, 1.5))
    y = np.clip(y, 0, 1)
    mn, mx = np.percentile(y[inside][::13], [0.2, 99.8])
    return np.clip((y - mn) / (mx - mn + 1e-6), 0, 1).astype(F32)

# ----------------------------------------------------------------------------- DICOM
def write_dicom(path, px, meta):
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = meta["sop_class"]
    fm.MediaStorageSOPInstanceUID = meta["sop_uid"]
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    fm.ImplementationClassUID = generate_uid(entropy_srcs=["phantom_n implementation"])
    ds = Dataset()
    ds.file_meta = fm
    ds.SOPClassUID, ds.SOPInstanceUID = meta["sop_class"], meta["sop_uid"]
    ds.StudyInstanceUID, ds.SeriesInstanceUID = meta["study_uid"], meta["series_uid"]
    ds.Modality = meta["modality"]
    if meta["modality"] == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = meta["vendor"] + " Imaging (synthetic)"
    ds.PatientName, ds.PatientID = meta["name"], meta["pid"]
    ds.PatientAge, ds.PatientSex = meta["age"], meta["sex"]
    ds.PatientWeight, ds.PatientSize = f"{meta['weight']:.1f}", f"{meta['height'] / 100:.2f}"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = meta["date"]
    ds.StudyTime = ds.ContentTime = "101500"
    ds.StudyID, ds.AccessionNumber = "1", meta["pid"][-8:]
    ds.SeriesNumber, ds.InstanceNumber = meta["series_no"], 1
    ds.BodyPartExamined, ds.ViewPosition = "LSPINE", meta["view"]
    ds.StudyDescription = "XR LUMBAR SPINE 2 VIEWS"
    ds.SeriesDescription = f"L-SPINE {meta['view']}"
    ds.KVP, ds.Exposure = f"{meta['kvp']:.0f}", int(meta["mas"])
    ds.ImagerPixelSpacing = [f"{meta['isp']:.4f}"] * 2
    ds.PixelSpacing = [f"{meta['sp']:.4f}"] * 2
    ds.BurnedInAnnotation = "YES" if meta["text"] else "NO"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, meta["photo"]
    ds.Rows, ds.Columns = px.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, meta["bits"], meta["bits"] - 1, 0
    ds.WindowCenter, ds.WindowWidth = str(2 ** (meta["bits"] - 1)), str(2 ** meta["bits"])
    ds.PixelData = px.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)

# ----------------------------------------------------------------------------- study driver
def make_study(args):
    out, seed, idx = args
    rng = np.random.default_rng([seed, idx])
    P = sample_patient(rng)
    pid = f"PHN{seed:03d}{idx:05d}"
    date = f"{rng.integers(2012, 2025)}{rng.integers(1, 13):02d}{rng.integers(1, 29):02d}"
    study_uid = generate_uid(entropy_srcs=["phantom_n", str(seed), str(idx), "study"])
    sp = rng.uniform(0.145, 0.175)
    rows = []
    for si, view in enumerate(("AP", "LAT")):
        vr = np.random.default_rng([seed, idx, si + 1])          # per-view stream
        cv, geo = (render_ap if view == "AP" else render_lat)(P, vr, 2 * sp)
        spx = [geo[0] - 40, geo[0] + 40] if view == "AP" else [geo[0].min() - 30, geo[0].max() + 30]
        L, inside, coll, ex = expose(cv, P, view, vr, sp, spx)
        vendor = VENDORS[vr.integers(4)]
        y = vendor_process(L, inside, vendor, vr, sp)
        if coll == "black":
            y[~inside] = 0.0
        text = vr.random() < 0.6
        if text:
            lines = [f"L-SPINE {view}", f"{date[:4]}-{date[4:6]}-{date[6:]}",
                     f"{ex['kvp']:.0f}kV {ex['mas']:.0f}mAs", "SYNTH GENERAL HOSP"]
            tm = text_mask(lines, 3.2 / sp, (int(25 / sp), int(70 / sp)))
            r0 = int(0.02 * y.shape[0])
            c0 = int(0.03 * y.shape[1]) if vr.random() < 0.5 else y.shape[1] - tm.shape[1] - int(0.03 * y.shape[1])
            sub = y[r0:r0 + tm.shape[0], c0:c0 + tm.shape[1]]
            np.maximum(sub, tm[: sub.shape[0], : sub.shape[1]], out=sub)
        bits = int(vr.choice([10, 12, 12, 14, 15, 16]))
        mono1 = vr.random() < 0.3
        maxv = 2 ** bits - 1
        px = np.round((1 - y if mono1 else y) * maxv).astype(np.uint16)
        modality = "CR" if vr.random() < 0.3 else "DX"
        meta = dict(sop_class=SOP_CR if modality == "CR" else SOP_DX, modality=modality, vendor=vendor,
                    sop_uid=generate_uid(entropy_srcs=["phantom_n", str(seed), str(idx), view, "sop"]),
                    series_uid=generate_uid(entropy_srcs=["phantom_n", str(seed), str(idx), view, "series"]),
                    study_uid=study_uid, name=f"PHANTOM^N{idx:05d}", pid=pid, age=f"{int(P['age']):03d}Y",
                    sex=P["sex"], weight=P["weight"], height=P["height"], date=date, series_no=si + 1,
                    view=view, kvp=ex["kvp"], mas=ex["mas"], sp=sp, isp=sp * vr.uniform(1.08, 1.18),
                    text=text, photo="MONOCHROME1" if mono1 else "MONOCHROME2", bits=bits)
        rel = f"images/{pid}_{view}.dcm"
        write_dicom(os.path.join(out, rel), px, meta)
        bmd = 1.047 + 0.11 * P["T"]
        rows.append([rel, label_of(P["T"]), f"{P['T']:.3f}", f"{bmd:.4f}", pid, view])
    return idx, rows

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("n_studies", type=int)
    ap.add_argument("seed", type=int)
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args()
    os.makedirs(os.path.join(a.out_dir, "images"), exist_ok=True)
    t0 = time.time()
    jobs = [(a.out_dir, a.seed, i) for i in range(a.n_studies)]
    if a.workers > 1:
        with Pool(a.workers) as pool:
            res = list(pool.imap_unordered(make_study, jobs))
    else:
        res = [make_study(j) for j in jobs]
    res.sort(key=lambda r: r[0])
    with open(os.path.join(a.out_dir, "manifest.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "t_score", "bmd", "patient_id", "view"])
        for _, rows in res:
            w.writerows(rows)
    dt = time.time() - t0
    print(f"phantom_n: {a.n_studies} studies ({2 * a.n_studies} images) -> {a.out_dir} in {dt:.1f} s, "
          f"{dt * a.workers / max(1, a.n_studies):.2f} worker-s/study ({a.workers} worker(s))")

if __name__ == "__main__":
    main()
