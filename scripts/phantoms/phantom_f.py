#!/usr/bin/env python3
"""phantom_f -- independent synthetic lumbar-spine radiograph generator (AP + lateral).

Usage: phantom_f.py OUTDIR N_STUDIES SEED [--workers K]

Anatomy.  A 3-D spine chain T10..L5 plus a fused sacrum (S1..S4) is marched along its arc
length with a linear-in-arc-length sagittal angle (lordosis, individual curvature and
sacral slope) and a sinusoidal coronal deviation (scoliosis); each view projects the same
chain.  Every vertebra is drawn in its own rotated local frame as analytic projected path
lengths: a super-elliptic body (waisted in AP, box-like in lateral) with a cortical shell,
endplates smeared into rings by the out-of-plane tilt, pedicle tubes seen end-on
("owl eyes", shifted by axial rotation), transverse processes, laminae, articular
processes and a spinous process (capsule / ellipse primitives).  Ribs (T10-T12), iliac
wings with crest rims, sacral alae and foramina, a body ellipse with a subcutaneous fat
ring, visceral fat fraction, psoas shadows, bowel-gas loops and lead L/R markers complete
the scene.  Confounders: disc narrowing, endplate sclerosis, osteophyte spurs and aortic
wall calcification driven by a "degeneration age" only loosely tied to real age, and wedge
/ biconcave compression fractures (more likely at low T).

Density model.  Each patient's T-score sets trabecular volumetric mineral density
(0.16 g/cm3 + 0.026 g/cm3 per SD, +-6 % individual noise), cortical shell thickness and
cortical mineral density.  Bone enters the physics only as hydroxyapatite areal mass
(g/cm2) = cortical path x cortical density + trabecular path x vBMD x texture.  The
texture is a per-patient field of vertical strands plus horizontal struts passed through a
soft threshold: low BMD raises the threshold (sparser), weakens the horizontal struts
(more vertical striation) and raises the texture contrast; it is sampled in each
vertebra's local frame so trabeculae follow the vertebral axis.

Physics and detector.  A Kramers tungsten spectrum (70-100 kVp, 2.5-4 mm Al, optional Cu,
K lines) in 7 energy bins with an energy-integrating detector response; log-log
interpolated mass-attenuation tables for water, adipose, hydroxyapatite, Al and Cu.
Scatter is a thickness-dependent scatter-to-primary ratio times a wide low-pass of the
collimated primary (grid or no grid; aliased grid-line stripes sometimes), heel effect,
cos^3 fall-off, collimator leakage and penumbra, AEC scaling to a random quanta level,
Poisson-like quantum noise with Swank factor, scintillator / phosphor blur, electronic
noise, flat-field residue and CR line banding.  Rendering happens on a grid twice the
final pixel pitch (0.1-0.2 mm final) and is upsampled before noise.

Processing.  Five invented vendor chains: "Aurex" (log, dynamic-range compression,
unsharp mask, sigmoid LUT), "Borealis" (log, 4-band difference-of-Gaussian pyramid with
band gains, gamma), "Cirrus" CR (histogram-derived S/L window, frequency enhancement,
exposure index), "Deltamed" (near-raw log, wide range, tight VOI window in header) and
"Equinox" (partial histogram equalisation + unsharp); MONOCHROME1 or 2, BitsStored
10-16, burned-in text sometimes.

What differs from a generic generator: bone density is never drawn as an intensity -- it
exists only as mineral mass in a polychromatic attenuation model, so its visibility
depends on kVp, habitus, scatter and processing; posterior elements, endplate rings,
rotation and the out-of-plane tilt are projected geometry rather than painted shapes; and
confounders (degeneration, calcification, fractures, gas, fat) come from separate draws.
"""
import argparse
import csv
import datetime
import math
import os
import sys
from multiprocessing import Pool

import numpy as np
from scipy import ndimage as ndi
from PIL import Image, ImageDraw, ImageFont
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import generate_uid, ExplicitVRLittleEndian

DX_UID = "1.2.840.10008.5.1.4.1.1.1.1"
CR_UID = "1.2.840.10008.5.1.4.1.1.1"
UID_ROOT = "1.2.826.0.1.3680043.8.498."

# ---------------------------------------------------------------- attenuation tables
_E = np.array([20, 30, 40, 50, 60, 80, 100, 150], float)
_MU = {  # mass attenuation, cm2/g
    "water": [0.810, 0.376, 0.268, 0.227, 0.206, 0.184, 0.171, 0.151],
    "fat": [0.558, 0.295, 0.230, 0.205, 0.191, 0.174, 0.162, 0.144],
    "ha": [6.85, 2.20, 1.02, 0.61, 0.42, 0.265, 0.207, 0.150],
    "al": [3.44, 1.128, 0.569, 0.368, 0.278, 0.202, 0.170, 0.138],
    "cu": [33.8, 10.9, 4.86, 2.61, 1.59, 0.763, 0.458, 0.222],
}


def mu(mat, e):
    return np.exp(np.interp(np.log(e), np.log(_E), np.log(_MU[mat])))


def spectrum(kvp, al_mm, cu_mm, nb=7):
    e = np.linspace(22.0, kvp - 4.0, nb)
    de = e[1] - e[0]
    phi = np.clip(kvp - e, 0, None) / e * de                      # Kramers
    for kl, w in ((59.3, 0.10), (67.2, 0.03)):                       # tungsten K lines
        if kvp > 72:
            phi[np.argmin(abs(e - kl))] += w * phi.sum() * (kvp - 69.5) / 30.0
    phi *= np.exp(-mu("al", e) * 2.699 * al_mm / 10 - mu("cu", e) * 8.96 * cu_mm / 10)
    eta = 1 - np.exp(-2.2 * (e / 35.0) ** -2.3)                      # detector absorption
    w = phi * eta * e                                                # energy integrating
    return e, w / w.sum()


# ---------------------------------------------------------------- canvas + primitives
class Canvas:
    def __init__(self, h, w, psw):
        self.h, self.w, self.ps = h, w, psw
        self.water = np.zeros((h, w), np.float32)   # cm
        self.fat = np.zeros((h, w), np.float32)     # cm
        self.min = np.zeros((h, w), np.float32)     # g/cm2 hydroxyapatite

    def box(self, cx, cy, r):
        j0 = int(math.floor((cx - r) / self.ps + self.w / 2)); j1 = int(math.ceil((cx + r) / self.ps + self.w / 2))
        i0 = int(math.floor((cy - r) / self.ps + self.h / 2)); i1 = int(math.ceil((cy + r) / self.ps + self.h / 2))
        i0, j0 = max(i0, 0), max(j0, 0); i1, j1 = min(i1, self.h), min(j1, self.w)
        if i1 <= i0 or j1 <= j0:
            return None
        y = (np.arange(i0, i1, dtype=np.float32) - self.h / 2 + 0.5) * self.ps
        x = (np.arange(j0, j1, dtype=np.float32) - self.w / 2 + 0.5) * self.ps
        return (slice(i0, i1), slice(j0, j1)), x[None, :], y[:, None]

    def coords(self):
        y = (np.arange(self.h, dtype=np.float32) - self.h / 2 + 0.5) * self.ps
        x = (np.arange(self.w, dtype=np.float32) - self.w / 2 + 0.5) * self.ps
        return x[None, :], y[:, None]


def soft(d, ps):
    return np.clip(d / ps + 0.5, 0.0, 1.0)


class Frame:
    """local frame: u across (flip applied), v along the vertebral axis (down)."""
    def __init__(self, cv, cx, cy, phi, flip, r):
        self.ok = False
        b = cv.box(cx, cy, r)
        if b is None:
            return
        self.ok = True
        self.sl, x, y = b
        dx, dy = x - cx, y - cy
        c, s = math.cos(phi), math.sin(phi)
        self.u = flip * (dx * c - dy * s)
        self.v = dx * s + dy * c
        self.ps = cv.ps


def seg_dist(u, v, p0, p1):
    ax, ay = p1[0] - p0[0], p1[1] - p0[1]
    L2 = ax * ax + ay * ay + 1e-9
    t = np.clip(((u - p0[0]) * ax + (v - p0[1]) * ay) / L2, 0, 1)
    return np.hypot(u - p0[0] - t * ax, v - p0[1] - t * ay)


def cone_path(u, v, p0, p1, r0, r1):
    """tapered spur (osteophyte beak): path length of a cone-like capsule."""
    ax, ay = p1[0] - p0[0], p1[1] - p0[1]
    t = np.clip(((u - p0[0]) * ax + (v - p0[1]) * ay) / (ax * ax + ay * ay + 1e-9), 0, 1)
    d = np.hypot(u - p0[0] - t * ax, v - p0[1] - t * ay)
    r = r0 + (r1 - r0) * t
    return 2 * np.sqrt(np.clip(r * r - d * d, 0, None))


def tube_path(d, r, wall):
    """cylinder seen side on: (cortical path, trabecular path) in mm."""
    out = 2 * np.sqrt(np.clip(r * r - d * d, 0, None))
    ri = max(r - wall, 0.2)
    inn = 2 * np.sqrt(np.clip(ri * ri - d * d, 0, None))
    return out - inn, inn


class Bone:
    def __init__(self, rho_c, vbmd, tex, rng):
        self.rho_c, self.vbmd, self.tex = rho_c, vbmd, tex
        self.n = tex.shape[0]
        self.tp = 0.25  # texture pixel mm
        self.rng = rng

    def texture(self, u, v, scale=1.0):
        o = self.rng.uniform(0, self.n, 2)
        cu = (u / (self.tp * scale) + o[0]) % self.n
        cvv = (v / (self.tp * scale) + o[1]) % self.n
        return ndi.map_coordinates(self.tex, [cvv, cu], order=1, mode="grid-wrap")

    def add(self, cv, f, cort_mm, trab_mm, tex_scale=1.0, extra_rho=0.0):
        shp = cv.min[f.sl].shape
        m = np.broadcast_to(cort_mm * self.rho_c, shp).astype(np.float32)
        if trab_mm is not None:
            trab_mm = np.broadcast_to(trab_mm, shp)
            k = np.nonzero(trab_mm > 1e-3)
            if len(k[0]):
                u = np.broadcast_to(f.u, shp)[k]; v = np.broadcast_to(f.v, shp)[k]
                m[k] += trab_mm[k] * (self.vbmd + extra_rho) * self.texture(u, v, tex_scale)
        cv.min[f.sl] += m / 10.0


def make_texture(rng, rel, n=384):
    rel = float(np.clip(rel, 0.25, 1.4))
    V = ndi.gaussian_filter(rng.standard_normal((n, n)).astype(np.float32), (9, 1.1), mode="wrap")
    H = ndi.gaussian_filter(rng.standard_normal((n, n)).astype(np.float32), (1.1, 6), mode="wrap")
    B = ndi.gaussian_filter(rng.standard_normal((n, n)).astype(np.float32), 1.6, mode="wrap")
    V /= V.std(); H /= H.std(); B /= B.std()
    s = V + (0.15 + 0.45 * min(rel, 1.2)) * H + 0.7 * B
    s /= s.std()
    thr = -0.6 + 1.1 * (1.0 - rel) + rng.normal(0, 0.1)
    t = 1.0 / (1.0 + np.exp(-(s - thr) / 0.3))
    t /= t.mean()
    c = np.clip(0.3 + 0.45 * (1.0 - rel) + rng.normal(0, 0.05), 0.15, 0.8)
    return (1.0 + c * (t - 1.0)).astype(np.float32)


# ---------------------------------------------------------------- patient model
LEVELS = ["T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5"]
V_H = [22, 23, 24, 26, 27, 28, 28, 27]
V_A = [18, 19, 20, 21, 22.5, 24, 25, 26]      # half width (coronal)
V_D = [26, 27, 28, 30, 32, 33, 34, 34]        # AP depth
DISC = [6, 6.5, 7, 8.5, 9.5, 10.5, 11.5, 10]  # disc below each level


def draw_patient(rng, seed, idx, force_T=None):
    rng.integers(0, 3)
    cls = int(np.random.default_rng([seed, idx // 3, 0xC1]).permutation(3)[idx % 3])   # balanced per block of 3
    lo, hi = [(-1.0, 2.0), (-2.5, -1.0), (-4.5, -2.5)][cls]
    T = round(float(rng.uniform(lo, hi)), 2)
    if force_T is not None:
        T = force_T
    label = 0 if T >= -1.0 else (2 if T <= -2.5 else 1)
    sex = "F" if rng.random() < 0.78 else "M"
    age = int(np.clip(50 - 6.0 * T + rng.normal(0, 11), 24, 94))
    deg_age = 0.45 * age + 0.55 * rng.uniform(30, 90)
    p = dict(T=T, label=label, bmd=round(1.050 + 0.116 * T, 3), sex=sex, age=age, deg_age=deg_age)
    size = rng.normal(1.0, 0.06) * (1.06 if sex == "M" else 1.0)
    p["size"] = size
    p["vbmd"] = max(0.16 + 0.026 * T, 0.035) * rng.normal(1.0, 0.06)
    p["rho_c"] = 1.05 * (1 + 0.03 * T) * rng.normal(1.0, 0.04)
    p["tc"] = float(np.clip(0.75 * (1 + 0.09 * T) * rng.normal(1, 0.1), 0.25, 1.3))
    bmi = float(np.clip(rng.lognormal(math.log(26), 0.2), 16, 50))
    p["bmi"] = bmi
    p["W"] = (240 + 6.5 * (bmi - 22)) * size * rng.normal(1, 0.05)     # body width mm
    p["D"] = (170 + 6.0 * (bmi - 22)) * size * rng.normal(1, 0.06)     # body depth mm
    p["fat"] = float(np.clip(4 + 1.9 * (bmi - 20) + rng.normal(0, 5), 3, 80)) * (1.15 if sex == "F" else 0.85)
    p["psoas"] = rng.uniform(6, 22) * (1.3 if sex == "M" else 1.0)
    p["visc"] = float(np.clip(0.05 + 0.012 * (bmi - 22) + rng.normal(0, 0.03), 0.02, 0.35))
    # curvature
    p["theta0"] = math.radians(rng.normal(-17, 5))            # sagittal angle T10..L1 (anterior going down)
    p["kappa"] = math.radians(rng.normal(0.24, 0.05))         # deg per mm of arc below L1
    p["sacral_extra"] = math.radians(rng.normal(16, 6))
    p["scol_A"] = abs(rng.normal(0, 6)) if rng.random() < 0.6 else rng.uniform(6, 18)
    p["scol_lam"] = rng.uniform(220, 420); p["scol_ph"] = rng.uniform(0, 2 * math.pi)
    p["rot"] = math.radians(rng.normal(0, 4))                 # axial rotation (AP)
    # per level geometry + confounders
    dg = max(0.0, (deg_age - 40) / 40)
    lv = []
    pfrac = 0.02 + 0.09 * max(0.0, -1.0 - T)
    for i, name in enumerate(LEVELS):
        s = size * rng.normal(1, 0.03)
        d = dict(name=name, h=V_H[i] * s, A=V_A[i] * s, Dp=V_D[i] * s,
                 disc=DISC[i] * s * (rng.uniform(0.3, 0.8) if rng.random() < 0.45 * dg * (i >= 3) else rng.normal(1, 0.07)),
                 wedge=0.0, conc=0.0, osteo=[], scler=rng.uniform(0, 0.8) * dg if rng.random() < 0.6 * dg else 0.0)
        fr, wq, cq = rng.random(), rng.uniform(0.12, 0.45), rng.uniform(0.0, 0.15)
        if i >= 2 and fr < pfrac:
            d["wedge"], d["conc"] = wq, cq
        if i >= 3 and rng.random() < 0.8 * dg:
            for _ in range(rng.integers(1, 4)):
                d["osteo"].append((rng.choice([-1, 1]), rng.choice([-1, 1]), rng.uniform(2, 4 + 6 * dg)))
        lv.append(d)
    p["levels"] = lv
    p["aorta"] = int(rng.poisson(max(0.0, (deg_age - 48) / 4.0)))
    p["crest_level"] = rng.normal(0.0, 8.0)   # iliac crest height offset (mm)
    p["pelvis_w"] = rng.normal(1.0, 0.07) * (0.93 if sex == "M" else 1.0)
    return p


def spine_chain(p):
    """march the chain in 3-D: x lateral (patient left +), y down, z posterior +."""
    out = []
    s = 0.0
    p["s_l1"] = sum(d["h"] + d["disc"] for d in p["levels"][:3])
    pos = np.zeros(3)

    def angles(s):
        th = p["theta0"] + p["kappa"] * max(0.0, s - p["s_l1"])
        a = p["scol_A"] * 2 * math.pi / p["scol_lam"] * math.cos(2 * math.pi * s / p["scol_lam"] + p["scol_ph"])
        return th, math.atan(a)

    def step(h):
        nonlocal s, pos
        th, ph = angles(s + h / 2)
        d = np.array([math.sin(ph), math.cos(ph) * math.cos(th), math.sin(th)])
        c = pos + d * h / 2
        pos = pos + d * h
        s += h
        return c, th, ph

    for d in p["levels"]:
        c, th, ph = step(d["h"] * (1 - 0.5 * d["wedge"]))
        out.append(dict(d, c=c, th=th, ph=ph))
        step(d["disc"])
    # sacrum: four fused segments, strongly tilted
    th_l5 = out[-1]["th"]
    sz = p["size"]
    for k, (h, A, Dp) in enumerate([(24, 24, 30), (20, 19, 24), (17, 15, 18), (14, 11, 13)]):
        th = th_l5 + p["sacral_extra"] + math.radians(6 * k)
        ph = out[-1]["ph"] * 0.5
        dvec = np.array([math.sin(ph), math.cos(ph) * math.cos(th), math.sin(th)])
        c = pos + dvec * h * sz / 2
        pos = pos + dvec * (h * sz + 1.5)
        out.append(dict(name="S%d" % (k + 1), h=h * sz, A=A * sz, Dp=Dp * sz, disc=1.5, wedge=0, conc=0,
                        osteo=[], scler=0.0, c=c, th=th, ph=ph))
    return out


# ---------------------------------------------------------------- scene rendering
def body_block(cv, bone, f, A, P, h, tc, n_exp, wedge, conc, ring, ant_sign, scler):
    u, v, ps = f.u, f.v, f.ps
    au = np.abs(u)
    # half height varies for wedge / biconcave deformity
    wfac = (1 - wedge * (0.5 + 0.5 * ant_sign * np.clip(u / A, -1, 1))) if ant_sign else (1 - 0.5 * wedge)
    hh = h / 2 * wfac * (1 - conc * (1 - np.clip(u / A, -1, 1) ** 2))
    av = A * (1 - 0.06 * (1 - np.clip(2 * v / h, -1, 1) ** 2)) if not ant_sign else A
    r = np.clip(au / av, 0, 1)
    outer = P * np.clip(1 - r ** n_exp, 0, None) ** (1 / n_exp)
    sq = 1 - (au / av) ** 8 - (np.abs(v) / hh) ** 8
    inside = soft(sq * np.minimum(av, hh) / 8, ps)
    ai = np.maximum(av - tc, 1)
    ri = np.clip(au / ai, 0, 1)
    inner = (P - 2 * tc) * np.clip(1 - ri ** n_exp, 0, None) ** (1 / n_exp) * (au < ai)
    tep = tc * 1.3 + 0.9 * scler
    op = outer * soft(av - au, ps)
    inner = inner * inside
    outer = outer * inside
    cort = outer - inner
    # endplates, smeared into a ring by out-of-plane tilt
    sg = math.sqrt((tep * 0.5) ** 2 + ring ** 2) + 0.3
    for sgn in (-1, 1):
        dv = v - sgn * (hh - tep / 2)
        cort = cort + op * tep / (sg * 2.5066) * np.exp(-dv * dv / (2 * sg * sg))
        if scler > 0:
            band = np.exp(-((v - sgn * (hh - 3 * scler - tep)) / (2 + 3 * scler)) ** 2)
            cort = cort + scler * 0.25 * inner * band
    bone.add(cv, f, cort, inner * 1.0, extra_rho=0.0)


def render_vertebra(cv, bone, lv, view, cx, cy, phi, flip, mag, p, rng):
    A, P, h = lv["A"] * mag, lv["Dp"] * mag, lv["h"] * mag
    tc = p["tc"] * mag
    sacral = lv["name"].startswith("S")
    if view == "AP":
        h = h * abs(math.cos(lv["th"]))          # foreshortened by the sagittal tilt
        f = Frame(cv, cx, cy, phi, 1, 2.6 * A + 40)
        if not f.ok:
            return
        ring = P / 2 * abs(math.sin(lv["th"]))
        if sacral:
            P = P * 0.65
        body_block(cv, bone, f, A, P, h, tc, 2.0, lv["wedge"], lv["conc"], ring, 0, lv["scler"])
        if sacral:
            if lv["name"] in ("S1", "S2", "S3"):   # alae + foramina
                k = int(lv["name"][1])
                wing = (62 - 12 * k) * mag * p["pelvis_w"]
                plate = soft(wing * (1 - 0.25 * (f.v / h + 0.5)) - np.abs(f.u), 2 * mag) * soft(h / 2 - np.abs(f.v), 2 * mag)
                plate = soft(wing * (1 - 0.25 * (f.v / h + 0.5)) - np.abs(f.u), 5 * mag) * soft(h / 2 - np.abs(f.v), 4 * mag)
                bone.add(cv, f, plate * 1.5 * mag, plate * 9 * mag)
                for sgn in (-1, 1):
                    fd = np.hypot(f.u - sgn * A * 1.15, f.v - h * 0.1)
                    cv.min[f.sl] -= (0.03 * np.clip(1 - fd / (4.5 * mag), 0, 1) * bone.vbmd / 0.16).astype(np.float32)
            return
        rot = p["rot"] + lv["ph"] * 0.3
        sh = math.sin(rot)
        # pedicles (tubes seen end-on)
        for sgn in (-1, 1):
            pu = sgn * A * 0.68 + 24 * mag * sh
            pw = (0.17 + 0.03 * (lv["name"] == "L5")) * A * (1 + 0.35 * sgn * sh)
            pv = 0.27 * h
            e = ((f.u - pu) / pw) ** 2 + ((f.v + 0.17 * h) / pv) ** 2
            ei = ((f.u - pu) / max(pw - 1.2 * mag, 1)) ** 2 + ((f.v + 0.17 * h) / (pv - 1.2 * mag)) ** 2
            Lp = 7 * mag
            mo = soft((1 - e) * pw * 0.5, f.ps); mi = soft((1 - ei) * pw * 0.5, f.ps)
            bone.add(cv, f, Lp * (mo - mi), Lp * mi * 0.8)
            # transverse process
            tl = (14 + 10 * (lv["name"] in ("L3", "L4")) - 8 * (lv["name"] in ("T10", "T11", "T12"))) * mag * rng.uniform(0.7, 1.25)
            p0 = (sgn * A * 0.85 + 24 * mag * sh, -0.12 * h); p1 = (sgn * (A + tl) + 24 * mag * sh, -0.2 * h)
            c_, t_ = tube_path(seg_dist(f.u, f.v, p0, p1), 3.6 * mag, 1.0 * mag)
            bone.add(cv, f, c_, t_)
            # laminae + inferior articular processes
            c_, t_ = tube_path(seg_dist(f.u, f.v, (sgn * A * 0.55 + 35 * mag * sh, 0.05 * h), (48 * mag * sh, 0.35 * h)), 4.0 * mag, 1.2 * mag)
            bone.add(cv, f, c_ * 0.45, t_ * 0.5)
            c_, t_ = tube_path(seg_dist(f.u, f.v, (sgn * A * 0.47 + 36 * mag * sh, 0.3 * h), (sgn * A * 0.45 + 36 * mag * sh, 0.5 * h + lv["disc"] * mag)), 4.5 * mag, 1.2 * mag)
            bone.add(cv, f, c_ * 0.6, t_ * 0.7)
        # spinous process (teardrop, end-on)
        su = 58 * mag * sh
        e = ((f.u - su) / (4.2 * mag)) ** 2 + ((f.v - 0.45 * h) / (0.42 * h)) ** 2
        ei = ((f.u - su) / (2.8 * mag)) ** 2 + ((f.v - 0.45 * h) / (0.42 * h - 1.5 * mag)) ** 2
        mo = soft((1 - e) * 3, f.ps); mi = soft((1 - ei) * 3, f.ps)
        bone.add(cv, f, 4 * mag * (mo - mi) + 2 * mag * mo, 9 * mag * mo)
        for (side, ud, L) in lv["osteo"]:          # lateral spurs
            ve = ud * h / 2
            c_ = cone_path(f.u, f.v, (side * (A - 2 * mag), ve - ud * 2 * mag), (side * (A + L * 0.6 * mag), ve + ud * L * 0.5 * mag), 2.2 * mag, 0.5 * mag)
            bone.add(cv, f, c_ * 0.6, c_ * 2.5)
    else:  # lateral; local u positive = posterior
        f = Frame(cv, cx, cy, phi, flip, 2.2 * P + 70 * mag)
        if not f.ok:
            return
        ring = A * abs(math.sin(lv["ph"] + 0.4 * p["rot"])) + 0.6 * mag
        body_block(cv, bone, f, P / 2, 2 * A, h, tc, 2.7, lv["wedge"], lv["conc"], ring, -1, lv["scler"])
        if sacral:
            return
        B = P / 2
        pc_, pt_ = tube_path(seg_dist(f.u, f.v, (B - 2 * mag, -0.18 * h), (B + 16 * mag, -0.12 * h)), 0.22 * h, 1.3 * mag)
        bone.add(cv, f, 1.2 * pc_, 1.5 * pt_)                                # two pedicles superimposed
        for p0, p1, r in (((B + 15 * mag, -0.1 * h), (B + 17 * mag, -0.62 * h), 4.6),   # superior articular
                          ((B + 19 * mag, 0.1 * h), (B + 21 * mag, 0.5 * h + lv["disc"] * mag), 4.6)):
            c_, t_ = tube_path(seg_dist(f.u, f.v, p0, p1), r * mag, 1.1 * mag)
            bone.add(cv, f, 0.9 * c_, 1.2 * t_)
        # transverse processes end-on over the pedicle
        e = ((f.u - B - 10 * mag) / (4.5 * mag)) ** 2 + ((f.v + 0.12 * h) / (3.5 * mag)) ** 2
        bone.add(cv, f, soft((1 - e) * 2, f.ps) * 6 * mag, soft((1 - e) * 2, f.ps) * 24 * mag)
        # lamina + spinous process: plate seen face-on
        ang = -0.25
        uu = (f.u - B - 36 * mag) * math.cos(ang) - (f.v - 0.25 * h) * math.sin(ang)
        vv = (f.u - B - 36 * mag) * math.sin(ang) + (f.v - 0.25 * h) * math.cos(ang)
        e = (uu / (21 * mag)) ** 2 + (vv / (0.36 * h)) ** 2
        mo = soft((1 - e) * 8, f.ps)
        rim = np.exp(-((1 - e) * 10 * mag / 1.2) ** 2) * (e < 1.05)
        bone.add(cv, f, mo * 3 * tc + rim * 4 * mag, mo * 9 * mag)
        for (side, ud, L) in lv["osteo"]:          # anterior spurs
            ve = ud * h / 2
            c_ = cone_path(f.u, f.v, (-B + 2 * mag, ve - ud * 2 * mag), (-B - L * 0.6 * mag, ve + ud * L * 0.5 * mag), 2.2 * mag, 0.5 * mag)
            bone.add(cv, f, c_ * 1.0, c_ * 4)


def polyline_tube(cv, bone, pts, r, wall, scale=1.0):
    pts = np.asarray(pts, float)
    lo, hi = pts.min(0) - r - 2, pts.max(0) + r + 2
    cx, cy = (lo + hi) / 2
    b = cv.box(cx, cy, max(hi - lo) / 2)
    if b is None:
        return
    sl, x, y = b
    d = np.full(np.broadcast(x, y).shape, 1e9, np.float32)
    for a, c in zip(pts[:-1], pts[1:]):
        d = np.minimum(d, seg_dist(x, y, a, c))
    c_, t_ = tube_path(d, r, wall)
    cv.min[sl] += (scale * (c_ * bone.rho_c + t_ * bone.vbmd * 0.8) / 10).astype(np.float32)


def render_scene(p, view, cv, mag, X0, Y0, flip, rng, bone):
    chain = spine_chain(p)
    ref = chain[5]["c"]  # L3
    xg, yg = cv.coords()

    def img(c):
        if view == "AP":
            return X0 + mag * (c[0] - ref[0]), Y0 + mag * (c[1] - ref[1])
        return X0 + flip * mag * (c[2] - ref[2]), Y0 + mag * (c[1] - ref[1])

    # soft tissue --------------------------------------------------------
    y_l5 = img(chain[7]["c"])[1]
    flare = 1 + 0.12 * (1 / (1 + np.exp(-(yg - y_l5) / 25.0)))
    fat = p["fat"] * mag
    if view == "AP":
        a_out = p["W"] / 2 * mag * flare; b_out = p["D"] * mag
        xc = X0 + mag * rng.normal(0, 8)
        rr = np.clip(((xg - xc) / a_out) ** 2, 0, 1)
        outer = b_out * np.sqrt(1 - rr) * (abs(xg - xc) < a_out)
        a_in = a_out - fat; b_in = b_out - 2 * fat
        inner = np.clip(b_in, 1, None) * np.sqrt(np.clip(1 - ((xg - xc) / a_in) ** 2, 0, 1))
    else:
        a_out = p["D"] / 2 * mag * flare ** 0.5; b_out = p["W"] * mag * flare
        back = X0 + flip * mag * (85 + 0.35 * p["fat"] + rng.normal(0, 6))
        zc = back - flip * a_out
        rr = np.clip(((xg - zc) / a_out) ** 2, 0, 1)
        outer = b_out * np.sqrt(1 - rr) * (abs(xg - zc) < a_out)
        a_in = a_out - fat; b_in = b_out - 2 * fat
        inner = np.clip(b_in, 1, None) * np.sqrt(np.clip(1 - ((xg - zc) / a_in) ** 2, 0, 1))
    inner = np.minimum(inner, outer)
    visc = p["visc"] * inner
    cv.water += ((inner - visc) / 10).astype(np.float32)
    cv.fat += ((outer - inner + visc) / 10).astype(np.float32)
    if view == "AP":   # psoas: muscle replaces retroperitoneal fat lateral to the spine
        y_l1 = img(chain[3]["c"])[1]
        t = np.clip((yg - y_l1) / max(y_l5 - y_l1, 1), 0, 1.3)
        for sgn in (-1, 1):
            edge = X0 + sgn * (p["levels"][5]["A"] * mag + (8 + 38 * t) * mag)
            inside = soft(sgn * (edge - xg), 9 * mag) * soft(sgn * (xg - X0), 1) * soft(yg - y_l1 + 10, 20)
            ps_ = np.minimum(p["psoas"] * mag / 10 * inside, cv.fat)
            cv.water += ps_; cv.fat -= ps_
    # bowel gas ----------------------------------------------------------
    for _ in range(rng.integers(1, 9)):
        if view == "AP":
            gx, gy = X0 + rng.normal(0, 70) * mag, Y0 + rng.normal(30, 60) * mag
        else:
            gx, gy = X0 - flip * rng.uniform(60, 170) * mag, Y0 + rng.normal(20, 60) * mag
        n = rng.integers(1, 7); ang = rng.uniform(0, 2 * math.pi)
        for k in range(n):
            gx += math.cos(ang) * rng.uniform(10, 22) * mag; gy += math.sin(ang) * rng.uniform(10, 22) * mag
            ang += rng.normal(0, 0.6)
            ra, rb = rng.uniform(5, 22) * mag, rng.uniform(4, 14) * mag
            b = cv.box(gx, gy, max(ra, rb) + 3)
            if b is None:
                continue
            sl, x, y = b
            e = ((x - gx) / ra) ** 2 + ((y - gy) / rb) ** 2
            g = rng.uniform(0.4, 2.2) * np.clip(1 - e, 0, 1) ** 1.5
            cv.water[sl] -= np.minimum((g * mag).astype(np.float32), cv.water[sl] * 0.6)
    # spine --------------------------------------------------------------
    for lv in chain:
        cx, cy = img(lv["c"])
        phi = lv["ph"] if view == "AP" else flip * lv["th"]
        render_vertebra(cv, bone, lv, view, cx, cy, phi, flip, mag, p, rng)
    # ribs ----------------------------------------------------------------
    for k, lvi in enumerate((0, 1, 2)):
        lv = chain[lvi]
        cx, cy = img(lv["c"])
        L = [110, 95, 65][k] * rng.uniform(0.7, 1.2)
        for sgn in (-1, 1):
            t = np.linspace(0, 1, 12)
            if view == "AP":
                pts = np.stack([cx + sgn * (lv["A"] + 8 + L * t) * mag, cy - 6 * mag + (25 * t + 35 * t * t) * mag * (L / 120)], 1)
            else:
                off = sgn * 5 * mag
                pts = np.stack([cx + flip * (lv["Dp"] / 2 + 30 - (L * 0.9 + 40) * t) * mag + off,
                                cy - 5 * mag + (30 * t + 55 * t * t) * mag + off], 1)
            polyline_tube(cv, bone, pts, 4.5 * mag, 1.0 * mag, 0.8 if view == "AP" else 0.55)
    # pelvis --------------------------------------------------------------
    s1 = img(chain[8]["c"]); l45 = img(chain[7]["c"])
    crest_y = l45[1] - 0.6 * chain[7]["h"] * mag + p["crest_level"] * mag
    if view == "AP":
        for sgn in (-1, 1):
            w = 68 * mag * p["pelvis_w"]
            cx_, cy_ = s1[0] + sgn * (w + 22 * mag), crest_y + 75 * mag
            b = cv.box(cx_, cy_, 100 * mag)
            if b is None:
                continue
            sl, x, y = b
            e = ((x - cx_) / (w + 10 * mag)) ** 2 + ((y - cy_) / (75 * mag)) ** 2
            med = soft(sgn * (x - s1[0]) - 38 * mag, 3 * mag)
            plate = soft((1 - e) * 30 * mag, cv.ps) * med * soft(cy_ + 25 * mag - y, 15 * mag)
            rim = np.exp(-(((1 - e) * 40 * mag) / (3.5 * mag)) ** 2) * (y < cy_ - 10 * mag) * med
            m = plate * (4.0 * p["tc"] * bone.rho_c + 12 * bone.vbmd) * mag + rim * (5 * bone.rho_c + 10 * bone.vbmd) * mag
            cv.min[sl] += (m / 10).astype(np.float32)
    else:
        for k in (0, 1):
            cx_ = s1[0] + flip * (rng.normal(15, 8) + 10 * k) * mag
            cy_ = crest_y + 70 * mag + 6 * k * mag
            b = cv.box(cx_, cy_, 110 * mag)
            if b is None:
                continue
            sl, x, y = b
            e = ((x - cx_) / (85 * mag)) ** 2 + ((y - cy_) / (72 * mag)) ** 2
            plate = soft((1 - e) * 30 * mag, cv.ps)
            rim = np.exp(-(((1 - e) * 40 * mag) / (3.0 * mag)) ** 2) * (y < cy_)
            m = plate * (2.0 * p["tc"] * bone.rho_c + 5 * bone.vbmd) * mag + rim * (3 * bone.rho_c + 6 * bone.vbmd) * mag
            cv.min[sl] += (m / 10).astype(np.float32)
    # aortic calcification (confounder) -----------------------------------
    for _ in range(p["aorta"]):
        li = rng.integers(3, 8)
        lv = chain[li]
        cx, cy = img(lv["c"])
        vy = cy + rng.uniform(-0.7, 0.7) * lv["h"] * mag
        L = rng.uniform(3, 14) * mag
        if view == "LAT":
            wall = rng.choice([0, 1])
            ux = cx - flip * (lv["Dp"] / 2 + 4 + 22 * wall + rng.normal(0, 1.5)) * mag
            pts = [(ux, vy), (ux + rng.normal(0, 1), vy + L)]
            polyline_tube(cv, bone, pts, rng.uniform(0.6, 1.2) * mag, 5, scale=rng.uniform(1.0, 2.5))
        else:
            ux = cx + (rng.choice([12, 34]) + rng.normal(0, 2)) * mag
            pts = [(ux, vy), (ux + rng.normal(0, 1), vy + L)]
            polyline_tube(cv, bone, pts, rng.uniform(0.6, 1.2) * mag, 5, scale=rng.uniform(0.5, 1.5))
    # everything above is in magnified mm; path lengths along the beam are physical
    cv.water /= mag; cv.fat /= mag; cv.min /= mag
    return chain


# ---------------------------------------------------------------- acquisition + detector
def lowpass(img, sigma):
    f = max(1, int(sigma / 3))
    if f == 1:
        return ndi.gaussian_filter(img, sigma)
    h, w = img.shape
    hp, wp = -(-h // f) * f, -(-w // f) * f
    pad = np.pad(img, ((0, hp - h), (0, wp - w)), mode="edge")
    small = pad.reshape(hp // f, f, wp // f, f).mean((1, 3))
    small = ndi.gaussian_filter(small, sigma / f, mode="nearest")
    big = ndi.zoom(small, f, order=1, grid_mode=True, mode="nearest")
    return big[:h, :w]


def acquire(p, view, rng):
    a = {}
    a["cr"] = rng.random() < 0.25
    a["kvp"] = float(rng.uniform(70, 88) if view == "AP" else rng.uniform(80, 100))
    a["al"] = rng.uniform(2.5, 4.0); a["cu"] = rng.choice([0.0, 0.0, 0.1, 0.2])
    a["grid"] = rng.random() < (0.82 if view == "AP" else 0.92)
    a["sid"] = rng.uniform(1000, 1150) if a["grid"] else rng.uniform(1000, 1800)
    a["mag"] = 1 + rng.uniform(160, 260) / (a["sid"] - 200)
    if a["cr"]:
        a["ps"] = float(rng.choice([0.1, 0.15, 0.175, 0.2]))
        fw, fh = [(240, 300), (350, 430), (350, 350)][rng.integers(0, 3)]
    else:
        a["ps"] = float(rng.choice([0.139, 0.143, 0.148, 0.15, 0.16, 0.168, 0.175, 0.2]))
        fw, fh = [(350, 430), (430, 430), (240, 300), (300, 400)][rng.choice(4, p=[0.5, 0.15, 0.15, 0.2])]
    if rng.random() < 0.4:    # image cropped to a collimated area by the vendor
        fw, fh = min(fw, rng.uniform(220, 320)), min(fh, rng.uniform(300, 420))
    a["ps"] = max(a["ps"], max(fw, fh) / 2400.0)
    a["cols"] = 2 * int(round(fw / a["ps"] / 2)); a["rows"] = 2 * int(round(fh / a["ps"] / 2))
    a["fw"], a["fh"] = fw, fh
    return a


def expose(p, view, a, cv, rng, chain_cb):
    e, w = spectrum(a["kvp"], a["al"], a["cu"])
    mw, mf, mh = mu("water", e), mu("fat", e) * 0.95, mu("ha", e)
    P = np.zeros_like(cv.water)
    wat, fat, mn = np.clip(cv.water, 0, None), np.clip(cv.fat, 0, None), np.clip(cv.min, 0, None)
    for k in range(len(e)):
        P += w[k] * np.exp(-(mw[k] * wat + mf[k] * fat + mh[k] * mn))
    x, y = cv.coords()
    # collimation
    cw = rng.uniform(150, 300) if view == "AP" else rng.uniform(150, 290)
    ch = rng.uniform(280, 440)
    ox, oy = rng.normal(0, 12), rng.normal(0, 15)
    ang = math.radians(rng.normal(0, 1.0))
    xr = (x - ox) * math.cos(ang) + (y - oy) * math.sin(ang)
    yr = -(x - ox) * math.sin(ang) + (y - oy) * math.cos(ang)
    pen = rng.uniform(0.8, 3.0)
    coll = soft(cw / 2 - np.abs(xr), pen) * soft(ch / 2 - np.abs(yr), pen)
    coll = coll.astype(np.float32)
    prim = P * (coll + 0.006 * (1 - coll))
    t_cm = wat + fat
    spr = (0.085 * t_cm + 0.3) * math.sqrt(cw * ch / (300 * 400)) * (1.15 if a["kvp"] > 85 else 1.0)
    if a["grid"]:
        spr = spr * rng.uniform(0.1, 0.2)
    sc_sig = rng.uniform(25, 55) / cv.ps
    scat = lowpass(prim * lowpass(spr, 20 / cv.ps), sc_sig) * rng.uniform(0.9, 1.1)
    tot = prim + scat
    # heel effect along the anode-cathode axis + cos^3 falloff
    heel = rng.uniform(0.06, 0.2) * rng.choice([-1, 1])
    tot *= (1 + heel * (y / 215.0)) * (1 + ((x ** 2 + y ** 2) / a["sid"] ** 2)) ** -1.5
    # AEC: central chamber over the spine
    hh, ww = tot.shape
    reg = tot[int(hh * 0.38):int(hh * 0.62), int(ww * 0.44):int(ww * 0.56)]
    q = rng.uniform(250, 2500) * (a["ps"] / 0.15) ** 2
    gain = q / max(float(reg.mean()), 1e-9)
    return tot * gain, coll, (cw, ch, ox, oy, ang), q


def detector(sig_w, coll_w, a, rng, view, marker):
    sig = ndi.zoom(sig_w, 2, order=1, grid_mode=True, mode="nearest")
    coll = ndi.zoom(coll_w, 2, order=1, grid_mode=True, mode="nearest")
    sig = sig[:a["rows"], :a["cols"]]; coll = coll[:a["rows"], :a["cols"]]
    sig = np.pad(sig, ((0, a["rows"] - sig.shape[0]), (0, a["cols"] - sig.shape[1])), mode="edge")
    coll = np.pad(coll, ((0, a["rows"] - coll.shape[0]), (0, a["cols"] - coll.shape[1])), mode="edge")
    if marker:   # lead L/R marker inside the field
        font = ImageFont.load_default(size=int(12 / a["ps"]))
        im = Image.new("L", (sig.shape[1], sig.shape[0]), 0)
        d = ImageDraw.Draw(im)
        cc = np.argwhere(coll > 0.9)
        if len(cc):
            (i0, j0), (i1, j1) = cc.min(0), cc.max(0)
            jx = j0 + int(12 / a["ps"]) if rng.random() < 0.5 else j1 - int(25 / a["ps"])
            iy = i0 + int(rng.uniform(15, 60) / a["ps"])
            d.text((jx, iy), marker, fill=255, font=font)
            m = np.asarray(im, np.float32) / 255.0
            sig = sig * (1 - 0.96 * ndi.gaussian_filter(m, 0.6))
    swank = 1.15
    noisy = sig + np.sqrt(np.clip(sig, 0, None) * swank) * rng.standard_normal(sig.shape, dtype=np.float32)
    blur = rng.uniform(1.0, 2.0) if a["cr"] else rng.uniform(0.5, 1.1)
    noisy = ndi.gaussian_filter(noisy, blur) * (1 + 0.05 * (blur - 0.5))   # partial noise decorrelation
    noisy += rng.normal(0, rng.uniform(0.5, 4.0), sig.shape).astype(np.float32)
    ff = lowpass(rng.standard_normal(sig.shape).astype(np.float32), 80)
    ff = 1 + 0.01 * ff / (ff.std() + 1e-12)
    noisy *= ff
    if a["cr"]:
        noisy *= (1 + rng.normal(0, 0.004, (sig.shape[0], 1))).astype(np.float32)
    if a["grid"] and rng.random() < 0.35:
        per = rng.uniform(2.2, 9.0)
        ax = np.arange(sig.shape[1] if rng.random() < 0.7 else sig.shape[0])
        stripe = 1 + rng.uniform(0.01, 0.04) * np.cos(2 * math.pi * ax / per)
        noisy *= stripe[None, :] if len(ax) == sig.shape[1] else stripe[:, None]
    return np.clip(noisy, 0.5, None).astype(np.float32), coll


# ---------------------------------------------------------------- display processing
def sigmoid(x, g):
    return 1 / (1 + np.exp(-g * (x - 0.5)))


def process(raw, coll, a, rng):
    chain = ["aurex", "borealis", "cirrus", "deltamed", "equinox"][rng.integers(0, 5)]
    if a["cr"] and rng.random() < 0.7:
        chain = "cirrus"
    D = -np.log(raw)
    inside = coll > 0.7
    vals = D[inside][:: 7] if inside.sum() > 1000 else D.ravel()[:: 7]
    mm = 1.0 / a["ps"]
    if chain == "deltamed":
        lo, hi = np.percentile(vals, [0.1, 99.9])
        y = np.clip((D - lo) / (hi - lo), 0, 1)
        bits, mono, rel = int(rng.choice([14, 15, 16])), "MONOCHROME2", "LOG"
    else:
        lo, hi = np.percentile(vals, [rng.uniform(0.5, 3), rng.uniform(97, 99.8)])
        x = (D - lo) / (hi - lo)
        if chain == "aurex":
            lp = lowpass(x, rng.uniform(15, 40) * mm)
            x = x - rng.uniform(0.3, 0.65) * (lp - 0.5)
            x = x + rng.uniform(0.4, 1.2) * (x - ndi.gaussian_filter(x, rng.uniform(1, 3) * mm))
            y = sigmoid(np.clip(x, -0.3, 1.3), rng.uniform(4, 7))
            bits, mono = int(rng.choice([12, 12, 14])), rng.choice(["MONOCHROME2", "MONOCHROME1"], p=[0.7, 0.3])
        elif chain == "borealis":
            sig = [0.4, 1.5, 6, 24]
            g = [rng.uniform(1.0, 1.5), rng.uniform(1.2, 2.0), rng.uniform(1.0, 1.5), rng.uniform(0.5, 0.9)]
            prev, out = x, 0
            for s, gg in zip(sig, g):
                lp = lowpass(prev, s * mm) if s * mm > 6 else ndi.gaussian_filter(prev, s * mm)
                out = out + gg * (prev - lp); prev = lp
            x = out + rng.uniform(0.35, 0.6) * (prev - 0.5) + 0.5
            y = np.clip(x, 0, 1) ** rng.uniform(0.8, 1.25)
            bits, mono = int(rng.choice([10, 12])), rng.choice(["MONOCHROME1", "MONOCHROME2"], p=[0.6, 0.4])
        elif chain == "cirrus":
            hist_c = np.median(vals); L = rng.uniform(1.6, 2.4)
            x = 0.5 + (D - hist_c) / ((hi - lo) * L / 2)
            x = x + rng.uniform(0.3, 0.9) * (x - ndi.gaussian_filter(x, rng.uniform(1.5, 4) * mm))
            y = np.clip(sigmoid(x, rng.uniform(3, 5)), 0, 1)
            bits, mono = 10, rng.choice(["MONOCHROME1", "MONOCHROME2"], p=[0.5, 0.5])
        else:  # equinox
            xs = np.sort(np.clip(vals.astype(np.float64), lo, hi))
            ranks = np.interp(D, xs, np.linspace(0, 1, len(xs)))
            x = 0.55 * np.clip(x, 0, 1) + 0.45 * ranks
            x = x + rng.uniform(0.3, 0.8) * (x - ndi.gaussian_filter(x, rng.uniform(0.8, 2) * mm))
            y = np.clip(x, 0, 1) ** rng.uniform(0.9, 1.3)
            bits, mono = int(rng.choice([12, 16])), "MONOCHROME2"
        rel = "LOG"
    vmax = 2 ** bits - 1
    y = np.clip(y, 0, 1)
    pix = np.round(y * vmax).astype(np.float64)
    yv = y[inside] if inside.sum() > 1000 else y
    p2, p98 = np.percentile(yv[:: 11], [2, 98])
    wc, ww = (p2 + p98) / 2 * vmax, max((p98 - p2) * 1.15 * vmax, 16)
    if rng.random() < 0.6:   # electronic shutter outside the collimated field
        pix[coll < 0.5] = vmax * rng.uniform(0.93, 1.0)
    if mono == "MONOCHROME1":
        pix = vmax - pix; wc = vmax - wc
    return pix, dict(chain=chain, bits=bits, mono=str(mono), wc=wc, ww=ww, rel=rel, vmax=vmax)


def burn_text(pix, pr, lines, rng, a):
    h, w = pix.shape
    font = ImageFont.load_default(size=max(14, int(h / 70)))
    im = Image.new("L", (w, h), 0); d = ImageDraw.Draw(im)
    x0 = int(w * 0.02); y0 = int(h * 0.02) if rng.random() < 0.6 else int(h * 0.86)
    for k, s in enumerate(lines):
        d.text((x0, y0 + k * int(h / 55)), s, fill=255, font=font)
    m = np.asarray(im) > 127
    pix[m] = 0 if pr["mono"] == "MONOCHROME1" else pr["vmax"]
    return pix


# ---------------------------------------------------------------- DICOM
def write_dicom(path, pix, p, a, pr, view, meta, uids):
    sop_class = CR_UID if a["cr"] else DX_UID
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = sop_class
    fm.MediaStorageSOPInstanceUID = uids["sop"]
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    fm.ImplementationClassUID = UID_ROOT + "7306.1"
    fm.ImplementationVersionName = "PHANTOM_F_1"
    ds = Dataset(); ds.file_meta = fm
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = sop_class; ds.SOPInstanceUID = uids["sop"]
    ds.StudyDate = meta["date"]; ds.SeriesDate = meta["date"]; ds.ContentDate = meta["date"]
    ds.StudyTime = meta["time"]; ds.SeriesTime = meta["time"]; ds.ContentTime = meta["time"]
    ds.AccessionNumber = meta["acc"]
    ds.Modality = "CR" if a["cr"] else "DX"
    ds.Manufacturer = meta["vendor"]; ds.ManufacturerModelName = meta["model"]
    ds.InstitutionName = "Phantom F General"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "XR LUMBAR SPINE 2 VIEWS"
    ds.SeriesDescription = "L-SPINE " + ("AP" if view == "AP" else "LAT")
    ds.PatientName = meta["name"]; ds.PatientID = meta["pid"]
    ds.PatientBirthDate = meta["birth"]; ds.PatientSex = p["sex"]
    ds.PatientAge = "%03dY" % p["age"]
    ds.BodyPartExamined = "LSPINE"
    ds.ViewPosition = "AP" if view == "AP" else "LL"
    ds.KVP = "%.0f" % a["kvp"]
    ds.DistanceSourceToDetector = "%.0f" % a["sid"]
    ds.ExposureInuAs = int(meta["uas"])
    ds.PatientOrientation = ["L", "F"] if view == "AP" else (["A", "F"] if meta["flip"] < 0 else ["P", "F"])
    ds.StudyInstanceUID = uids["study"]; ds.SeriesInstanceUID = uids["series"]
    ds.StudyID = meta["acc"][-6:]; ds.SeriesNumber = 1 if view == "AP" else 2; ds.InstanceNumber = 1
    ds.ImageLaterality = "U"
    ds.SamplesPerPixel = 1; ds.PhotometricInterpretation = pr["mono"]
    ds.Rows, ds.Columns = pix.shape
    sp = ["%.4f" % a["ps"], "%.4f" % a["ps"]]
    ds.ImagerPixelSpacing = sp
    if meta["pixsp"]:
        ds.PixelSpacing = sp
    ds.BitsAllocated = 16; ds.BitsStored = pr["bits"]; ds.HighBit = pr["bits"] - 1
    ds.PixelRepresentation = 0
    ds.WindowCenter = "%.1f" % pr["wc"]; ds.WindowWidth = "%.1f" % pr["ww"]
    ds.RescaleIntercept = "0"; ds.RescaleSlope = "1"; ds.RescaleType = "US"
    ds.LossyImageCompression = "00"
    ds.BurnedInAnnotation = "YES" if meta["burned"] else "NO"
    if a["cr"]:
        ds.PresentationLUTShape = "IDENTITY" if pr["mono"] == "MONOCHROME2" else "INVERSE"
        ds.Sensitivity = "%.0f" % meta["s_value"]
    else:
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.PixelIntensityRelationship = pr["rel"]
        ds.PixelIntensityRelationshipSign = 1 if pr["mono"] == "MONOCHROME2" else -1
        ds.PresentationLUTShape = "IDENTITY" if pr["mono"] == "MONOCHROME2" else "INVERSE"
        ds.DetectorType = "SCINTILLATOR"
        ds.Grid = (["FOCUSED", "RECIPROCATING"] if meta["flip"] > 0 else ["FOCUSED"]) if a["grid"] else "NONE"
        ds.PositionerType = "COLUMN"
        ds.AcquisitionContextSequence = []
        ds.ExposureIndex = "%.0f" % meta["ei"]
        ds.DetectorID = meta["detid"]
        ds.AnatomicRegionSequence = [Dataset()]
        r = ds.AnatomicRegionSequence[0]
        r.CodeValue = "122496007"; r.CodingSchemeDesignator = "SCT"; r.CodeMeaning = "Lumbar spine"
    ds.PixelData = pix.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


# ---------------------------------------------------------------- study driver
VENDORS = [("AUREX Imaging", "AX-Quattro"), ("Borealis Medical", "BorealDR 43"), ("Cirrus Radiology", "CR-Flex 2"),
           ("Deltamed Systems", "DM Raw One"), ("Equinox Healthcare", "EQ Vista")]
FIRST = ["ANNA", "MARIA", "ELSA", "JOAN", "RUTH", "IRIS", "NORA", "LENA", "OLGA", "VERA", "PAUL", "KARL", "IVAN", "OMAR"]
LAST = ["FERNLOW", "QUILLBY", "ARDEN", "MARSH", "HOLTZ", "VANTREE", "OKAFOR", "LINDQVIST", "PRADO", "KOWAL", "SEVERN"]


def make_study(args):
    outdir, seed, idx = args
    rng = np.random.default_rng([seed, idx, 0x5F])
    p = draw_patient(rng, seed, idx)
    pid = "PF%d-%05d" % (seed, idx)
    ent = [str(seed), str(idx), "phantom_f"]
    study_uid = generate_uid(UID_ROOT, ent + ["study"])
    base = datetime.date(2019, 1, 1) + datetime.timedelta(days=int(rng.integers(0, 2400)))
    meta0 = dict(pid=pid, name="%s^%s" % (LAST[rng.integers(0, len(LAST))], FIRST[rng.integers(0, len(FIRST))]),
                 date=base.strftime("%Y%m%d"), time="%02d%02d%02d" % (rng.integers(7, 19), rng.integers(0, 60), rng.integers(0, 60)),
                 birth=(base - datetime.timedelta(days=int(p["age"] * 365.25 + rng.integers(0, 360)))).strftime("%Y%m%d"),
                 acc="A%09d" % rng.integers(0, 10 ** 9))
    vend = VENDORS[np.random.default_rng([seed, idx, 0xA1]).integers(0, len(VENDORS))]
    tex = make_texture(np.random.default_rng([seed, idx, 0x7E]), p["vbmd"] / 0.16)
    rows = []
    for vi, view in enumerate(("AP", "LAT")):
        rs = np.random.default_rng([seed, idx, vi, 1])   # scene
        rng = np.random.default_rng([seed, idx, vi, 2])  # acquisition + processing
        a = acquire(p, view, rng)
        if vend[0].startswith("Cirrus"):
            a["cr"] = True
        psw = a["ps"] * 2
        cv = Canvas(a["rows"] // 2, a["cols"] // 2, psw)
        flip = 1 if view == "AP" else int(rng.choice([-1, 1]))
        mag = a["mag"]
        X0 = rng.normal(0, 15) if view == "AP" else rng.normal(-10 * flip, 18)
        Y0 = rng.normal(0, 25)
        bone = Bone(p["rho_c"], p["vbmd"], tex, rs)
        render_scene(p, view, cv, mag, X0, Y0, flip, rs, bone)
        sig, coll, _, q = expose(p, view, a, cv, rng, None)
        marker = None
        if rng.random() < 0.6:
            marker = ("R" if rng.random() < 0.5 else "L") if view == "AP" else ("L" if flip > 0 else "R")
        raw, collf = detector(sig, coll, a, rng, view, marker)
        pix, pr = process(raw, collf, a, rng)
        burned = rng.random() < 0.3
        if burned:
            pix = burn_text(pix, pr, [meta0["name"].replace("^", " "), pid, "L-SPINE " + view,
                                      "%s kV" % int(a["kvp"])], rng, a)
        meta = dict(meta0, vendor=vend[0], model=vend[1], flip=flip, burned=burned,
                    uas=q * 4 * (1 + 3 * (view == "LAT")), s_value=200 * 1000 / q, ei=q * 1.2,
                    detid="PF-%04d" % (rng.integers(0, 10000)), pixsp=rng.random() < 0.5)
        uids = dict(study=study_uid, series=generate_uid(UID_ROOT, ent + [view, "series"]),
                    sop=generate_uid(UID_ROOT, ent + [view, "sop"]))
        fn = "%s_%s.dcm" % (pid, view)
        write_dicom(os.path.join(outdir, fn), pix, p, a, pr, view, meta, uids)
        rows.append([fn, p["label"], "%.2f" % p["T"], "%.3f" % p["bmd"], pid, view])
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir"); ap.add_argument("n", type=int); ap.add_argument("seed", type=int)
    ap.add_argument("--workers", type=int, default=1)
    A = ap.parse_args()
    os.makedirs(A.outdir, exist_ok=True)
    jobs = [(A.outdir, A.seed, i) for i in range(A.n)]
    if A.workers > 1:
        with Pool(A.workers) as pool:
            res = pool.map(make_study, jobs, chunksize=1)
    else:
        res = [make_study(j) for j in jobs]
    with open(os.path.join(A.outdir, "manifest.csv"), "w", newline="") as f:
        wr = csv.writer(f, lineterminator="\n")
        wr.writerow(["path", "label", "t_score", "bmd", "patient_id", "view"])
        for rows in res:
            for r in rows:
                wr.writerow(r)


if __name__ == "__main__":
    main()
