#!/usr/bin/env python3
"""phantom_u -- cone-beam ray-traced quadric + voxel-brick lumbar-spine radiographs.

Usage:  phantom_u.py OUTDIR N SEED [--workers W]

Writes N studies (AP + lateral DX/CR DICOM each) and OUTDIR/manifest.csv with
columns path,label,t_score,bmd,patient_id,view.  Patient i has class i % 3 and
is seeded by (SEED, i), so output does not depend on the number of workers.

How it draws
------------
Each patient is a 3-D scene in millimetres.  The spine is a kinematic chain
stacked upward from the sacral base (sacral slope, lordosis shared over wedged
discs, C-shaped scoliosis with coupled axial rotation, kyphosis from wedge
fractures).  Every vertebral body T11-S1 is an implicit solid (waisted
super-ellipse with posterior indentation, concave endplates, wedge/biconcave/
crush deformation) sampled in a 0.5 mm voxel brick and summed along the beam.
Everything else -- pedicles, laminae, spinous/transverse/articular processes,
osteophytes, ribs, sacral alae and foramina, iliac bowls and crests, aortic
plaques, torso, subcutaneous/visceral/perirenal fat, psoas, kidneys, bowel gas
-- is a list of ellipsoid shells with clipping planes whose chord lengths are
ray-traced exactly from a point source to every detector pixel (true cone
beam).  Lean, fat, gas, mineral and lead path lengths go through a Kramers
spectrum with tabulated attenuation and CsI/BaFBr absorption, convolution
scatter, heel effect, quantum + electronic noise and detector blur, then one
of four invented vendor pipelines (multiscale band gain, DRC + unsharp, CR
gradation/frequency processing, tiled local equalisation), a shutter, burned-in
text and a lead L/R marker.

How bone density shows
----------------------
Bone is carried as hydroxyapatite mass (g/cm2), so density alters contrast
through the beam physics, not through a display rule.  Trabecular vBMD is
(165 + 27 T) mg/cm3 with ~6 % patient and ~5 % level scatter; it fills the body
core through a periodic 3-D texture whose volume fraction falls, grain
coarsens and vertical anisotropy rises as T falls (horizontal struts are lost
first), so low-T bodies are lucent and vertically striated.  The cortical shell
and endplates thin (~7 %/T) and lose ~3 %/T density, leaving a relative
"picture frame"; posterior elements lose density more mildly.  Wedge,
biconcave and crush fractures become frequent below T = -2.5.  Age
(63 - 1.8 T +- 9) drives degeneration and aortic calcification; exposure,
processing, BMI, positioning and vendor are drawn independently of T.
"""
import argparse
import csv
import math
import os
import sys
import time
from multiprocessing import Pool

import numpy as np
from scipy import ndimage
from PIL import Image, ImageDraw, ImageFont
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

F32 = np.float32
DX_SOP = "1.2.840.10008.5.1.4.1.1.1.1"   # Digital X-Ray Image - For Presentation
CR_SOP = "1.2.840.10008.5.1.4.1.1.1"     # Computed Radiography Image

# ------------------------------------------------------------------ physics
E_TAB = np.array([15, 20, 30, 40, 50, 60, 80, 100, 150], float)
MU_TAB = {  # mass attenuation, cm2/g (rounded NIST-like values)
    "water": [1.673, 0.8096, 0.3756, 0.2683, 0.2269, 0.2059, 0.1837, 0.1707, 0.1505],
    "fat": [1.13, 0.558, 0.302, 0.235, 0.207, 0.192, 0.175, 0.163, 0.144],
    "ha": [20.2, 8.95, 2.90, 1.35, 0.78, 0.53, 0.31, 0.23, 0.16],
    "al": [7.96, 3.44, 1.128, 0.5685, 0.3681, 0.2778, 0.2018, 0.1704, 0.1378],
    "cu": [74.0, 33.8, 10.9, 4.86, 2.61, 1.59, 0.763, 0.458, 0.222],
    "csi": [60.0, 18.0, 6.5, 20.0, 11.6, 7.3, 3.5, 2.0, 0.8],
    "bafbr": [50.0, 22.0, 7.5, 17.0, 10.0, 6.2, 3.0, 1.7, 0.7],
}


def mu(mat, E):
    return np.exp(np.interp(np.log(E), np.log(E_TAB), np.log(MU_TAB[mat])))


def spectrum(kvp, al_mm, cu_mm, det):
    """Energy-integrating detector weights of a filtered Kramers spectrum."""
    E = np.arange(17.5, kvp - 1.0, 5.0)
    phi = (kvp - E) / E
    if kvp > 72:  # tungsten K lines folded into their bins
        phi = phi + 0.08 * phi.max() * (np.abs(E - 59) < 2.5) + 0.03 * phi.max() * (np.abs(E - 67) < 2.5)
    phi = phi * np.exp(-mu("al", E) * 0.2699 * al_mm - mu("cu", E) * 0.896 * cu_mm)
    eta = 1 - np.exp(-mu(det, E) * (0.20 if det == "csi" else 0.12))
    w = phi * E * eta
    return E, w / w.sum()


# ------------------------------------------------------------------ geometry helpers
def _rot(a, i, j):
    m, c, s = np.eye(3), math.cos(a), math.sin(a)
    m[i, i] = m[j, j] = c
    m[i, j], m[j, i] = -s, s
    return m


rx, ry, rz = (lambda a: _rot(a, 1, 2)), (lambda a: _rot(a, 2, 0)), (lambda a: _rot(a, 0, 1))
D2R = math.pi / 180


class Q:
    """Ellipsoid shell primitive.  kind: torso|inner|fat|gas|bone.
    shell (thickness t) carries rs, core carries rc; planes (n, h) keep n.p <= h in local mm."""
    __slots__ = ("kind", "c", "R", "r", "t", "rs", "rc", "planes")

    def __init__(self, kind, c, R, r, t=0.0, rs=1.0, rc=None, planes=()):
        self.kind, self.t, self.rs = kind, float(t), float(rs)
        self.rc = self.rs if rc is None else float(rc)
        self.c, self.R, self.r = np.asarray(c, float), np.asarray(R, float), np.asarray(r, float)
        self.planes = [(np.asarray(n, float) / np.linalg.norm(n), float(h)) for n, h in planes]

    def moved(self, R, c):
        self.c = R @ self.c + c
        self.R = R @ self.R
        return self


def seg(kind, p0, p1, rr, t=0.0, rs=1.0, rc=None, up=None, stretch=1.15, clip_ends=False):
    """Ellipsoid spanning p0->p1 with perpendicular radii rr."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    ax = p1 - p0
    L = float(np.linalg.norm(ax)) + 1e-6
    e0 = ax / L
    up = np.array([0, 0, 1.0]) if up is None else np.asarray(up, float)
    if abs(np.dot(up, e0)) > 0.95:
        up = np.array([1.0, 0, 0]) if abs(e0[0]) < 0.9 else np.array([0, 1.0, 0])
    e1 = up - np.dot(up, e0) * e0
    e1 /= np.linalg.norm(e1)
    R = np.stack([e0, e1, np.cross(e0, e1)], axis=1)
    planes = [((1, 0, 0), L / 2), ((-1, 0, 0), L / 2)] if clip_ends else ()
    return Q(kind, (p0 + p1) / 2, R, (0.5 * L * stretch, rr[0], rr[1]), t, rs, rc, planes)


def chain(kind, pts, radii, **kw):
    """Tube of ellipsoid pieces cut by mitred planes at the joints (no gaps, no overlaps)."""
    pts = [np.asarray(p, float) for p in pts]
    e = [(pts[k + 1] - pts[k]) / (np.linalg.norm(pts[k + 1] - pts[k]) + 1e-9) for k in range(len(pts) - 1)]
    mit = [e[0]] + [(e[k - 1] + e[k]) / np.linalg.norm(e[k - 1] + e[k] + 1e-9) for k in range(1, len(e))] + [e[-1]]
    out, last = [], len(e) - 1
    for k in range(len(e)):
        rr = 0.5 * (np.asarray(radii[k]) + np.asarray(radii[k + 1]))
        if k == 0 and last > 0:       # rounded caps: half-ellipsoids ending at the chain ends
            q = seg(kind, pts[0], 2 * pts[1] - pts[0], rr, stretch=1.0, **kw)
        elif k == last and last > 0:
            q = seg(kind, 2 * pts[k] - pts[k + 1], pts[k + 1], rr, stretch=1.0, **kw)
        else:
            q = seg(kind, pts[k], pts[k + 1], rr, stretch=3.0, **kw)
        q.planes = [(q.R.T @ -mit[k], float(-mit[k] @ (pts[k] - q.c))),
                    (q.R.T @ mit[k + 1], float(mit[k + 1] @ (pts[k + 1] - q.c)))]
        out.append(q)
    return out


# ------------------------------------------------------------------ anatomy
LEV = ["T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1"]
#        width depth height disc-below pedicle-w TP-length  (mm, adult male)
DIM = {"T11": (40, 30, 22, 6, 7.0, 12), "T12": (42, 31, 23, 7, 7.5, 8),
       "L1": (44, 32, 25, 8, 8.0, 14), "L2": (46, 33, 26, 9, 8.5, 20),
       "L3": (48, 34, 27, 10, 10.0, 26), "L4": (50, 35, 27, 11, 12.0, 22),
       "L5": (52, 35, 26, 10, 15.0, 17), "S1": (50, 32, 24, 0, 0.0, 0)}
LL_SHARE = {"L5": 0.34, "L4": 0.27, "L3": 0.18, "L2": 0.12, "L1": 0.09, "T12": -0.04, "T11": -0.08}


def trabecular_tile(rng, T, n=64, h=0.5):
    """Periodic 3-D trabecular structure, mean 1.  Low T: sparser, coarser, vertical."""
    sh = 0.55 + 0.12 * (1.5 - T)
    sz = sh * (1.2 + 0.35 * (1.5 - T))
    k = np.fft.fftfreq(n, d=h) * 2 * np.pi
    kz = np.fft.rfftfreq(n, d=h) * 2 * np.pi
    kh2 = k[:, None, None] ** 2 + k[None, :, None] ** 2
    kz2 = kz[None, None, :] ** 2
    G = np.exp(-0.5 * (kh2 * sh ** 2 + kz2 * sz ** 2)) * (1 - np.exp(-0.5 * (kh2 * (3 * sh) ** 2 + kz2 * (3 * sz) ** 2)))
    g = np.fft.irfftn(np.fft.rfftn(rng.standard_normal((n, n, n))) * G, s=(n, n, n), axes=(0, 1, 2))
    g = (g - g.mean()) / g.std()
    frac = float(np.clip(0.45 + 0.05 * T, 0.18, 0.6))
    thr = np.quantile(g, 1 - frac)
    s = 1 / (1 + np.exp(-(g - thr) / 0.35))
    return (s / s.mean()).astype(F32)


def make_patient(seed, idx, T_override=None):
    rng = np.random.default_rng([int(seed), int(idx), 7919])
    cls = idx % 3
    lo, hi = [(-1.0, 1.5), (-2.5, -1.0), (-4.5, -2.5)][cls]
    T = round(float(rng.uniform(lo, hi)), 3)
    T = float(np.clip(T, -2.499, -1.001)) if cls == 1 else T
    T = T if T_override is None else float(T_override)   # testing hook only
    label = 0 if T >= -1.0 else (2 if T <= -2.5 else 1)
    age = int(np.clip(round(63 - 1.8 * T + 9 * rng.standard_normal()), 38, 95))
    sex = "F" if rng.random() < 0.75 else "M"
    fem = sex == "F"
    height = rng.normal(162 if fem else 176, 7)
    bmi = float(np.clip(rng.normal(27, 5), 17, 46))
    pt = dict(idx=idx, T=T, label=label, bmd=1.047 + 0.11 * T, age=age, sex=sex, bmi=bmi,
              height=height, weight=bmi * (height / 100) ** 2)
    deg = float(np.clip((age - 42) / 38 + 0.25 * rng.standard_normal(), 0, 1.3))
    pt["deg"] = deg
    sv = (height / 170) ** 0.8 * (0.93 if fem else 1.0) * (1 + 0.03 * rng.standard_normal())
    n = rng.standard_normal
    # ---- bone material (g/cm3 hydroxyapatite)
    vb_pat = max(20.0, (165 + 27 * T) * (1 + 0.06 * n())) / 1000
    tc = float(np.clip(0.75 * (1 + 0.07 * T), 0.35, 1.0))
    te = float(np.clip(0.90 * (1 + 0.06 * T), 0.45, 1.1))
    rho_c = 0.80 * (1 + 0.03 * T)
    pe_s, pe_c = 0.62 * (1 + 0.03 * T), 0.27 * (1 + 0.05 * T)
    pfrac = 0.003 + 0.075 / (1 + math.exp((T + 3.1) / 0.55))
    # ---- per-level bodies
    lv = {}
    for name in LEV:
        wd, dp, ht, disc, pw, tpl = DIM[name]
        L = dict(name=name, a=wd / 2 * sv * (1 + 0.03 * n()), b=dp / 2 * sv * (1 + 0.03 * n()),
                 H=ht * sv * (1 + 0.04 * n()), pw=pw * sv, tpl=tpl * sv * (1 + 0.15 * n()),
                 vb=vb_pat * (1 + 0.05 * n()), tc=tc, te=te, rho_c=rho_c, rho_e=rho_c * 1.05,
                 waist=rng.uniform(0.04, 0.10), pconc=rng.uniform(0.05, 0.15),
                 cav_t=rng.uniform(0.4, 1.2), cav_b=rng.uniform(0.4, 1.2), wedge=0.0, crush=0.0,
                 fracture="none", off=rng.integers(0, 64, 3))
        L["disc"] = disc * sv * (1 - deg * rng.uniform(0, 0.45) * (1.3 if name in ("L4", "L5") else 1.0))
        scl = rng.random() < 0.5 * deg
        L["scl"] = rng.uniform(0.05, 0.18) * deg if scl else 0.0
        L["scl_w"] = rng.uniform(1.5, 4.0)
        pf = pfrac * (1.5 if name in ("T12", "L1") else 1.0) * (0 if name == "S1" else 1)
        if rng.random() < pf:
            kind = rng.choice(["wedge", "biconcave", "crush"], p=[0.55, 0.3, 0.15])
            loss = rng.uniform(0.2, 0.45)
            L["fracture"] = str(kind)
            if kind == "wedge":
                L["wedge"] = loss
            elif kind == "biconcave":
                L["cav_t"] += loss * L["H"] * 0.5
                L["cav_b"] += loss * L["H"] * 0.45
            else:
                L["crush"], L["wedge"] = loss * 0.7, 0.1
        lv[name] = L
    pt["fractures"] = [L["name"] + ":" + L["fracture"] for L in lv.values() if L["fracture"] != "none"]
    sub = lambda k: np.random.default_rng([int(seed), int(idx), k])   # independent streams
    rng = sub(11)
    n = rng.standard_normal
    # ---- sagittal chain from the sacral base upward
    ss = float(np.clip(rng.normal(38, 7), 20, 55))
    LL = max(10.0, ss + rng.normal(8, 8) - 6 * deg)
    S1 = lv["S1"]
    S1.update(alpha=ss * D2R, yz=np.zeros(2))
    hh = S1["H"] / 2
    u = lambda a: np.array([-math.sin(a), math.cos(a)])
    top = u(ss * D2R) * hh
    alpha = ss * D2R
    for name in ["L5", "L4", "L3", "L2", "L1", "T12", "T11"]:
        L = lv[name]
        delta = LL * LL_SHARE[name] * D2R
        bottom = top + u(alpha - delta / 2) * L["disc"]
        alpha -= delta
        hh = L["H"] / 2 * (1 - L["crush"])
        kw = math.atan(L["wedge"] * hh / (2 * L["b"]))
        alpha += kw
        cen = bottom + u(alpha) * hh * (1 - L["wedge"] / 2)
        top = cen + u(alpha) * hh * (1 - L["wedge"] / 2)
        L.update(alpha=alpha, yz=cen)
        alpha += kw
    ref = lv["L3"]["yz"].copy()
    zs = {k: L["yz"][1] - ref[1] for k, L in lv.items()}
    # ---- coronal: C-shaped scoliosis with coupled rotation
    As = 0.0 if rng.random() > 0.25 + 0.3 * deg else rng.normal(0, 12) + 4 * np.sign(n())
    zlo, zhi = zs["L5"] - 10, zs["T12"] + 10
    bump = lambda z: math.sin(math.pi * min(max((z - zlo) / (zhi - zlo), 0), 1))
    for name, L in lv.items():
        z = zs[name]
        x = As * bump(z)
        beta = math.atan(As * (bump(z + 1) - bump(z - 1)) / 2)
        gam = 0.45 * D2R * x + rng.normal(0, 1.2) * D2R
        L["c"] = np.array([x, L["yz"][0] - ref[0], z])
        L["R"] = rz(gam) @ ry(beta) @ rx(L["alpha"])
        L["gam"] = gam
    pt["levels"] = [lv[k] for k in LEV]
    pt["scoliosis_mm"] = As
    # ---- soft tissue
    A_t = (118 + 3.4 * (bmi - 18)) * (1.04 if not fem else 1.0) * (height / 168)
    B_t = 88 + 3.6 * (bmi - 18)
    fsub = (1.2 if fem else 0.85)
    f_ant, f_lat, f_post = [fsub * (c0 + c1 * (bmi - 18)) for c0, c1 in ((8, 2.0), (6, 1.6), (5, 1.2))]
    y_back = lv["L3"]["b"] + 50 + rng.uniform(12, 25) + f_post
    y_c = y_back - B_t
    zS1 = zs["S1"]
    pt.update(A_t=A_t, B_t=B_t, y_back=y_back, zs=zs)
    P = []
    hipf = 1.12 if fem else 1.03
    # abdomen: deep ellipse cut flat at the back, plus a rounded back cushion (paraspinal muscles)
    yb, Bd = y_back - 18, 1.3 * B_t
    P.append(Q("torso", (0, y_c - B_t + Bd, 0), np.eye(3), (A_t, Bd, 900), planes=[((0, 1, 0), yb - (y_c - B_t + Bd))]))
    P.append(Q("torso", (0, y_back - 45, 0), np.eye(3), (A_t * 0.85, 45, 900)))
    P.append(Q("inner", (0, y_c - B_t + Bd + f_ant, 0), np.eye(3), (A_t - f_lat, Bd, 880),
               planes=[((0, 1, 0), yb - f_post - (y_c - B_t + Bd + f_ant))]))
    P.append(Q("inner", (0, y_back - 45, 0), np.eye(3), (A_t * 0.85 - f_lat, 45 - f_post, 880)))
    P.append(Q("torso", (0, y_c + 5, zS1 - 70), np.eye(3), (A_t * hipf, B_t * 0.95, 220)))   # hips
    P.append(Q("inner", (0, y_c + 5 + (f_ant - f_post) / 2, zS1 - 70), np.eye(3),
               (A_t * hipf - f_lat, B_t * 0.95 - (f_ant + f_post) / 2, 200)))
    visc = (1.4 if not fem else 0.9) * (bmi - 16) / 15
    for _ in range(rng.integers(2, 6)):
        c = (rng.uniform(-0.5, 0.5) * A_t, y_c - rng.uniform(0.1, 0.5) * B_t, rng.uniform(-90, 70))
        P.append(Q("fat", c, rz(rng.uniform(0, 3)), rng.uniform(35, 75, 3), rs=np.clip(0.3 * visc, 0.05, 0.7)))
    rpf = 5 + 0.6 * (bmi - 18) * (1.3 if not fem else 1.0)
    for sgn in (-1, 1):
        pts, rad = [], []
        for k, name in enumerate(["T12", "L1", "L2", "L3", "L4", "L5"]):
            L = lv[name]
            pts.append(L["c"] + L["R"] @ np.array([sgn * (L["a"] + 4 + 5 * k), 0.15 * L["b"], 0]))
            rad.append((6 + 3.5 * k + rpf, 8 + 2.5 * k + rpf))
        pts.append(lv["S1"]["c"] + np.array([sgn * 70, -30, -70]))
        rad.append((22 + rpf, 20 + rpf))
        P += chain("fat", pts, rad, t=rpf, rs=0.85, rc=0.0)
        kr = np.array([27, 22, 55]) * sv
        pf = 6 + 0.9 * (bmi - 18)
        zk = 0.5 * (zs["L1"] + zs["L2"]) + (-15 if sgn < 0 else 5) + rng.normal(0, 8)
        P.append(Q("fat", (sgn * (lv["L1"]["a"] + 48), lv["L1"]["c"][1] + 5, zk), ry(-sgn * 15 * D2R),
                   kr + pf, t=pf, rs=0.9, rc=0.0))
    # ---- bowel gas: colon frame + small-bowel bubbles + stool mottle
    gl = rng.uniform(0.05, 1.0)
    colon = np.array([[-0.55 * A_t, y_c - 0.05 * B_t, zS1 - 10], [-0.55 * A_t, y_c - 0.1 * B_t, zs["L1"]],
                      [-0.3 * A_t, y_c - 0.55 * B_t, zs["L2"]], [0.0, y_c - 0.65 * B_t, zs["L3"] - 15],
                      [0.35 * A_t, y_c - 0.5 * B_t, zs["L2"]], [0.6 * A_t, y_c - 0.05 * B_t, zs["T12"]],
                      [0.6 * A_t, y_c - 0.0 * B_t, zs["L5"]], [0.3 * A_t, y_c - 0.3 * B_t, zS1 - 40],
                      [0.0, y_c + 0.1 * B_t, zS1 - 90]])
    tt = np.linspace(0, len(colon) - 1, 40)
    cpts = np.stack([np.interp(tt, np.arange(len(colon)), colon[:, d]) for d in range(3)], 1)
    for p in cpts:
        if rng.random() < 0.35 * gl:
            P.append(Q("gas", p + rng.normal(0, 6, 3), rz(rng.uniform(0, 3)) @ rx(rng.normal(0, 0.3)),
                       rng.uniform(7, 20, 3), rs=rng.uniform(0.3, 0.9)))
        if rng.random() < 0.25:
            for _ in range(rng.integers(6, 20)):
                P.append(Q("gas", p + rng.normal(0, 11, 3), rz(rng.uniform(0, 3)), rng.gamma(2.0, 1.2, 3) + 0.6,
                           rs=rng.uniform(0.4, 1.0)))
    for _ in range(rng.poisson(5 * gl)):
        c = (rng.uniform(-0.4, 0.4) * A_t, y_c - rng.uniform(0.2, 0.7) * B_t, rng.uniform(-60, 40))
        P.append(Q("gas", c, rz(rng.uniform(0, 3)), rng.uniform(4, 10, 3), rs=rng.uniform(0.4, 1.0)))
    # ---- posterior elements, osteophytes, ribs
    for L in pt["levels"]:
        P += posterior(L, pe_s, pe_c, deg, rng)
        P += osteophytes(L, deg, rng)
    for name, length in (("T11", rng.uniform(140, 200)), ("T12", rng.uniform(60, 150))):
        L = lv[name]
        for sgn in (-1, 1):
            P += rib(L, sgn, min(length, 0.8 * A_t), pe_s * 0.85, pe_c * 0.6, rng)
    P += sacrum_pelvis(lv["S1"], ss, pe_s, pe_c, fem, sv, rng)
    # ---- aortic calcification (age-driven, not T-driven beyond age)
    rng = sub(13)
    sev = float(np.clip((age - 55) / 30 + 0.3 * rng.standard_normal(), 0, 1)) * (rng.random() < 0.85)
    pt["aortic_calc"] = round(sev, 2)
    for _ in range(rng.poisson(14 * sev)):
        name = rng.choice(["T12", "L1", "L2", "L3", "L4"], p=[0.06, 0.1, 0.2, 0.3, 0.34])
        L = lv[name]
        ra = rng.uniform(9, 13)
        cen = L["c"] + L["R"] @ np.array([14.0, -(L["b"] + ra + 3), rng.uniform(-0.6, 0.6) * L["H"]])
        th = rng.choice([rng.uniform(-2.2, -1.0), rng.uniform(1.0, 2.2), rng.uniform(-3.3, 3.3)])
        w = rng.uniform(0.25, 0.7)
        nrm = np.array([math.cos(th), math.sin(th), 0.0])
        P.append(Q("bone", cen, np.eye(3), (ra, ra, rng.uniform(3, 12)), t=rng.uniform(0.5, 1.0),
                   rs=rng.uniform(0.5, 1.1), rc=0.0, planes=[(-nrm, -ra * math.cos(w))]))
    pt["prims"] = P
    pt["tile"] = trabecular_tile(sub(17), T)
    pt["acq"] = acquisition(sub(19), pt)
    return pt


def posterior(L, rs, rc, deg, rng):
    a, b, H, R, c = L["a"], L["b"], L["H"], L["R"], L["c"]
    out = []
    if L["name"] == "S1":
        for k in range(3):
            out.append(Q("bone", (0, b + 14, -k * 16), np.eye(3), (4, 6, 7), t=1.0, rs=rs, rc=rc))
        for sgn in (-1, 1):
            out.append(Q("bone", (sgn * 0.55 * a, b + 20, 0.45 * H), np.eye(3), (5, 7, 8), t=1.2, rs=rs, rc=rc))
        return [q.moved(R, c) for q in out]
    fh = 1 + 0.35 * deg * rng.random()
    for sgn in (-1, 1):
        out.append(seg("bone", (sgn * 0.6 * a, b - 3, 0.18 * H), (sgn * 0.6 * a, b + 16, 0.16 * H),
                       (0.28 * H + 1, L["pw"] / 2), t=1.1, rs=rs, rc=rc * 0.8, stretch=1.6, clip_ends=True))
        out.append(seg("bone", (sgn * 0.62 * a, b + 14, 0.0), (sgn * 2.0, b + 27, -0.05 * H), (0.42 * H, 3.2),
                       rs=rc * 1.5, up=(0, 0, 1)))
        tp = L["tpl"]
        th = (3.8, 2.8) if L["name"] != "L5" else (7.0, 5.5)
        out.append(seg("bone", (sgn * 0.6 * a, b + 8, 0.12 * H), (sgn * (0.6 * a + tp + 6), b + 12 - 0.15 * tp,
                       0.12 * H + 0.1 * tp), th, t=0.8, rs=rs * 0.9, rc=rc * 0.6))
        for zf, xf, yo in ((0.5, 0.52, 22), (-0.5, 0.40, 28)):
            out.append(Q("bone", (sgn * xf * a, b + yo, zf * H + 2 * np.sign(zf)), rx(0.3),
                         np.array((4.0, 6.0, 9.0)) * fh, rs=rc * (1.1 + 0.4 * deg)))
    out.append(seg("bone", (0, b + 24, -0.05 * H), (0, b + 52, -0.38 * H), (3.0, 0.4 * H), t=0.8, rs=rs, rc=rc * 1.2,
                   up=(1, 0, 0)))
    out.append(Q("bone", (0, b + 50, -0.4 * H), np.eye(3), (3.5, 5, 0.26 * H), rs=rc * 1.6))
    return [q.moved(R, c) for q in out]


def osteophytes(L, deg, rng):
    out = []
    if L["name"] == "S1":
        return out
    for _ in range(rng.poisson(2.5 * deg ** 1.5)):
        th = rng.uniform(0.95 * math.pi, 2.05 * math.pi)
        side = 1 if rng.random() < 0.5 else -1
        hh = L["H"] / 2 * (1 - L["crush"])
        p0 = np.array([L["a"] * math.cos(th), L["b"] * math.sin(th), side * (hh - 1)])
        out_dir = np.array([math.cos(th), math.sin(th), 0.0])
        ln = rng.uniform(2, 8) * max(deg, 0.3)
        p1 = p0 + out_dir * ln * 0.6 + np.array([0, 0, side * ln])
        out.append(seg("bone", p0 - out_dir * 1.5, p1, (ln * 0.35 + 0.8, ln * 0.3 + 0.8), rs=rng.uniform(0.45, 0.75)))
    return [q.moved(L["R"], L["c"]) for q in out]


def rib(L, sgn, length, rs, rc, rng):
    a, b, H = L["a"], L["b"], L["H"]
    Rr = rng.uniform(85, 110)
    slope = math.tan(rng.uniform(20, 38) * D2R)
    p0 = np.array([sgn * (a + 2), b * 0.7, 0.3 * H])
    pts, rad = [], []
    nseg = 8
    for k in range(nseg + 1):
        phi = (length / Rr) * k / nseg
        dx = Rr * math.sin(phi) + 14 * min(k, 1)
        dy = -0.8 * Rr * (1 - math.cos(phi)) + 12 * math.sin(min(phi * 3, math.pi))
        pts.append(p0 + np.array([sgn * dx, dy, -slope * dx]))
        f = 1 - 0.45 * k / nseg
        rad.append((4.8 * f, 3.2 * f))
    return [q.moved(L["R"], L["c"]) for q in chain("bone", pts, rad, t=1.0, rs=rs, rc=rc)]


def sacrum_pelvis(S1, ss, rs, rc, fem, sv, rng):
    a, b, H, R, c = S1["a"], S1["b"], S1["H"], S1["R"], S1["c"]
    out = []
    sac = []
    # sacral shield: flattened ellipsoid shell cut to an inverted triangle (apex = coccyx)
    zt, kk = 115.0, (a + 30) / 115.0
    sac.append(Q("bone", (0, 12, -50), rx(-0.3), (a + 45, 15, 75), t=1.0, rs=rs * 0.6, rc=rc * 0.45,
                 planes=[((0, 0, 1), 54), ((1, 0, -kk), kk * (zt - 50)), ((-1, 0, -kk), kk * (zt - 50))]))
    for sgn in (-1, 1):
        for k in range(1, 5):
            sac.append(Q("bone", (sgn * (0.58 * a - 1.5 * k), 4 + 1.6 * k * k, -(H / 2 - 8 + 20 * k)), np.eye(3),
                         (4.5 - 0.4 * k, 25, 4.5 - 0.4 * k), rs=-rc * 1.3))
    out += [q.moved(R, c) for q in sac]
    # pelvis frame: S1 centre, tilted with the sacral slope deviation, small obliquity
    Rp = rz(S1.get("gam", 0.0)) @ ry(rng.normal(0, 1.5) * D2R) @ rx((ss - 38) * D2R)
    ps = sv * (1.06 if fem else 1.0) / 0.95
    crest_h, k1, k2 = rng.uniform(35, 60), rng.uniform(0.45, 0.9), rng.uniform(0.5, 1.0)
    for sgn in (-1, 1):
        cen = np.array([sgn * 25 * ps, -35.0, -45.0])
        rad = np.array([105, 85, 115]) * ps
        # roof of two planes (crest apex mid-wing), medial cut at the SI joint, anterior cut
        zc = crest_h + 45
        planes = [((-sgn, 0, 0), -24 * ps), ((0, -1, 0.6), 28), ((0, 0, -1), 140),
                  ((sgn * k1, 0, 1), zc + k1 * 75 * ps), ((-sgn * k2, 0, 1), zc - k2 * 75 * ps)]
        bowl = Q("bone", cen, np.eye(3), rad, t=rng.uniform(3, 5), rs=0.3, rc=0.0, planes=planes)
        out.append(bowl.moved(Rp, c))
        pts = []
        for th in np.linspace(-0.55, 1.45, 12):
            x, y = rad[0] * math.cos(th), rad[1] * math.sin(th)
            z = min(zc + k1 * 75 * ps - k1 * x, zc - k2 * 75 * ps + k2 * x)
            s = math.sqrt(max(1 - (z / rad[2]) ** 2, 0.05))
            x, y = x * s, y * s
            z = min(zc + k1 * 75 * ps - k1 * x, zc - k2 * 75 * ps + k2 * x)
            if x >= 24 * ps and y >= -28:
                pts.append(Rp @ (cen + np.array([sgn * x, y, z - 3])) + c)
        if len(pts) >= 2:
            out += chain("bone", pts, [(3.5, 6)] * len(pts), rs=rc * 1.3)
    return out


# ------------------------------------------------------------------ acquisition / vendors
VENDORS = {
    "aurelle": ("Aurelle Imaging", "LumenDR 4400", "aurelle_mse", "DX"),
    "strata": ("Strata Medical Systems", "Vireo DRC-X", "strata_drc", "DX"),
    "kaleido": ("Kaleido Radiography", "Tessel 9", "kaleido_tile", "DX"),
    "photon": ("Photon Dynamics", "PlateScan CR-7", "photon_cr", "CR"),
    "strata_cr": ("Strata Medical Systems", "Vireo CR-Reader", "strata_drc", "CR"),
}
SPACINGS = [0.1, 0.125, 0.139, 0.143, 0.148, 0.15, 0.16, 0.168, 0.175, 0.2]
INSTITUTIONS = ["MERIDIAN VALLEY RADIOLOGY", "NORTHGATE GENERAL", "ST ALBIN CLINIC", "HARROW BAY IMAGING",
                "CEDAR POINT HOSPITAL", "LAKESIDE BONE CENTRE"]


def acquisition(rng, pt):
    modality = "CR" if rng.random() < 0.35 else "DX"
    vend = rng.choice(["photon", "strata_cr"], p=[0.65, 0.35]) if modality == "CR" else \
        rng.choice(["aurelle", "strata", "kaleido"])
    mono1 = rng.random() < (0.45 if modality == "CR" else 0.14)
    bits = int(rng.choice([10, 12, 12, 12, 14, 15, 16]))
    sp = float(rng.choice(SPACINGS))
    if modality == "CR":
        sp = max(sp, 0.139)
    k = max(1, int(round(0.4 / sp)))
    prm = pipeline_params(rng, VENDORS[vend][2])
    acq = dict(modality=modality, vendor=str(vend), mono1=bool(mono1), bits=bits, sp=sp, k=k, prm=prm,
               institution=str(rng.choice(INSTITUTIONS)), coll=str(rng.choice(["black", "white", "none"], p=[0.4, 0.3, 0.3])),
               date=(int(rng.integers(2011, 2025)), int(rng.integers(1, 13)), int(rng.integers(1, 29))),
               hour=int(rng.integers(7, 19)), minute=int(rng.integers(0, 60)), text_mm=rng.uniform(2.4, 3.8),
               text_layout=int(rng.integers(0, 3)))
    for vw in ("AP", "LAT"):
        fw = rng.uniform(210, 330)
        fh = rng.uniform(300, 430)
        rows = int(np.clip(round(fh / sp), 1500, 3000))
        cols = int(np.clip(round(fw / sp), 1500, 3000))
        while rows * cols > 5_600_000:      # keep files below ~11.5 MB
            cols, rows = (cols - 50, rows) if cols > 1500 else (cols, rows - 50)
        a = dict(rows=rows, cols=cols,
                 kvp=float(rng.uniform(70, 90) if vw == "AP" else rng.uniform(85, 105)),
                 al=rng.uniform(2.5, 4.0), cu=float(rng.choice([0, 0, 0.1, 0.2])) if modality == "DX" else 0.0,
                 sid=rng.uniform(1000, 1150), gap=rng.uniform(30, 80),
                 spr=(rng.uniform(0.25, 0.7) if vw == "AP" else rng.uniform(0.5, 1.3)) * (3 if rng.random() < 0.08 else 1),
                 scat_mm=rng.uniform(30, 60), target=rng.uniform(300, 1500) * (sp / 0.15) ** 2,
                 blur_mm=rng.uniform(0.07, 0.14) if modality == "DX" else rng.uniform(0.14, 0.24),
                 enoise=rng.uniform(1.0, 6.0), heel=rng.uniform(0.04, 0.14) * rng.choice([-1, 1]),
                 gridlines=(rng.random() < 0.3 and modality == "DX"), grid_f=rng.uniform(4, 8),
                 grid_a=rng.uniform(0.006, 0.025),
                 ofs=(rng.normal(0, 12), rng.normal(0, 18)),
                 Rview=(rz(rng.normal(0, 3.5) * D2R) @ ry(rng.normal(0, 2) * D2R) @ rx(rng.normal(0, 2) * D2R)),
                 flip=(vw == "LAT" and rng.random() < 0.3),
                 margins=rng.uniform(3, 25, 4), coll_rot=rng.normal(0, 1.2) * D2R,
                 marker_corner=int(rng.integers(0, 2)), marker_letter=str(rng.choice(["R", "L"]))
                 if vw == "AP" else str(rng.choice(["L", "L", "R"])), marker_mm=rng.uniform(9, 15))
        acq[vw] = a
    return acq


def pipeline_params(rng, name):
    return dict(_pipeline_params(rng, name), mid=rng.uniform(0.33, 0.55))


def _pipeline_params(rng, name):
    u = rng.uniform
    if name == "aurelle_mse":
        return dict(name=name, gains=[u(1.0, 1.4), u(1.3, 2.0), u(1.4, 2.2), u(1.2, 1.8), u(0.9, 1.2), u(0.5, 0.8)],
                    sat=u(0.03, 0.08), drc=u(0.45, 0.8), k=u(4, 7), shift=u(-0.06, 0.06))
    if name == "strata_drc":
        return dict(name=name, drc_mm=u(20, 45), alpha=u(0.35, 0.75), us_mm=u(0.8, 2.0), beta=u(0.5, 1.8),
                    gamma=u(0.75, 1.35), lo=u(0.3, 2.0), hi=u(99.0, 99.8))
    if name == "photon_cr":
        return dict(name=name, lat=u(1.1, 1.5), drc=u(0.2, 0.6), drc_mm=u(15, 35), rn=u(2, 8), re=u(0.3, 1.2), rt=str(rng.choice(["F", "R", "T"])),
                    ga=u(0.9, 1.5), gc=u(0.42, 0.58), gs=u(-0.08, 0.08))
    return dict(name=name, ty=int(rng.integers(4, 8)), tx=int(rng.integers(3, 6)), mix=u(0.3, 0.65),
                kappa=u(0.3, 1.1), p=u(1.2, 1.8))


# ------------------------------------------------------------------ ray tracing
def geometry(pt, vw):
    a = pt["acq"][vw]
    sp, k = pt["acq"]["sp"], pt["acq"]["k"]
    w = sp * k
    Rw, Cw = -(-a["rows"] // k), -(-a["cols"] // k)
    zc = 0.5 * (pt["zs"]["L2"] + pt["zs"]["L4"]) + a["ofs"][1]
    if vw == "AP":
        n, eu = np.array([0, 1.0, 0]), np.array([1.0, 0, 0])
        Dc = np.array([a["ofs"][0], pt["y_back"] + a["gap"], zc])
    else:
        n, eu = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
        Dc = np.array([pt["A_t"] + a["gap"], 10 + a["ofs"][0], zc])
    ev = np.array([0, 0, -1.0])
    ug = ((np.arange(Cw) + 0.5) * w - Cw * w / 2).astype(F32)
    vg = ((np.arange(Rw) + 0.5) * w - Rw * w / 2).astype(F32)
    return dict(S=Dc - a["sid"] * n, n=n, eu=eu, ev=ev, SID=a["sid"], w=w, Rw=Rw, Cw=Cw, ug=ug, vg=vg)


def det_box(G, cen, ext):
    """Work-grid pixel box covering a world box (centre, half-extents) seen from the source."""
    rel = cen - G["S"]
    a, en = float(rel @ G["n"]), float(ext @ np.abs(G["n"]))
    if a - en < 20:
        return None
    ru, eu = float(rel @ G["eu"]), float(ext @ np.abs(G["eu"]))
    rv, ev = float(rel @ G["ev"]), float(ext @ np.abs(G["ev"]))
    mags = (G["SID"] / (a - en), G["SID"] / (a + en))
    us = [(ru + su * eu) * m for su in (-1, 1) for m in mags]
    vs = [(rv + sv * ev) * m for sv in (-1, 1) for m in mags]
    w, u0, v0 = G["w"], float(G["ug"][0]), float(G["vg"][0])
    j0, j1 = max(int((min(us) - u0) / w) - 1, 0), min(int((max(us) - u0) / w) + 2, G["Cw"])
    i0, i1 = max(int((min(vs) - v0) / w) - 1, 0), min(int((max(vs) - v0) / w) + 2, G["Rw"])
    if j1 <= j0 or i1 <= i0:
        return None
    return i0, i1, j0, j1, G["SID"] / a


def trace(q, Rv, G, maps):
    """Exact chord lengths of one clipped ellipsoid shell along every cone-beam ray in its box."""
    c, R = Rv @ q.c, Rv @ q.R
    box = det_box(G, c, np.sqrt((R * q.r[None, :]) ** 2 @ np.ones(3)))
    if box is None:
        return
    i0, i1, j0, j1 = box[:4]
    st = 4 if q.kind != "bone" and (i1 - i0) * (j1 - j0) > 60000 else 1
    U, V = G["ug"][None, j0 + st // 2:j1:st], G["vg"][i0 + st // 2:i1:st, None]
    n, eu, ev, Rl = G["n"].tolist(), G["eu"].tolist(), G["ev"].tolist(), R.tolist()
    D = [np.broadcast_to(G["SID"] * n[m] + eu[m] * U + ev[m] * V, (V.shape[0], U.shape[1])) for m in range(3)]
    inv = 1 / np.sqrt(D[0] ** 2 + D[1] ** 2 + D[2] ** 2)
    o = (R.T @ (G["S"] - c)).tolist()
    dl = [(Rl[0][m] * D[0] + Rl[1][m] * D[1] + Rl[2][m] * D[2]) * inv for m in range(3)]
    t0 = -(o[0] * dl[0] + o[1] * dl[1] + o[2] * dl[2])        # ray point nearest the centre (float32-safe)
    p = [o[m] + t0 * dl[m] for m in range(3)]

    def hits(r):
        ds = [dl[m] / float(r[m]) for m in range(3)]
        ps = [p[m] / float(r[m]) for m in range(3)]
        A = ds[0] ** 2 + ds[1] ** 2 + ds[2] ** 2
        B = 2 * (ps[0] * ds[0] + ps[1] * ds[1] + ps[2] * ds[2])
        C = ps[0] ** 2 + ps[1] ** 2 + ps[2] ** 2 - 1
        sq = np.sqrt(np.maximum(B * B - 4 * A * C, 0))
        return (-B - sq) / (2 * A), (-B + sq) / (2 * A)

    s1, s2 = hits(q.r)
    if q.planes:
        smin, smax = np.full(s1.shape, -1e9, F32), np.full(s1.shape, 1e9, F32)
        for nl, h in q.planes:
            nl = nl.tolist()
            nd = nl[0] * dl[0] + nl[1] * dl[1] + nl[2] * dl[2]
            rhs = h - (nl[0] * p[0] + nl[1] * p[1] + nl[2] * p[2])
            with np.errstate(divide="ignore", invalid="ignore"):
                sv = rhs / nd
            smax = np.where(nd > 1e-7, np.minimum(smax, sv), smax)
            smin = np.where(nd < -1e-7, np.maximum(smin, sv), smin)
            smax = np.where((np.abs(nd) <= 1e-7) & (rhs < 0), -1e9, smax)
        L = lambda a_, b_: np.maximum(np.minimum(b_, smax) - np.maximum(a_, smin), 0)
    else:
        L = lambda a_, b_: np.maximum(b_ - a_, 0)
    tot = L(s1, s2)
    if q.t > 0 and q.r.min() > q.t + 0.2:
        core = L(*hits(q.r - q.t))
        shell = tot - core
    else:
        core, shell = None, tot
    sl = (slice(i0, i1), slice(j0, j1))
    if st > 1:
        up = lambda x: upsample(x, st, (i1 - i0, j1 - j0)) if x is not None else None
        tot, shell, core = up(tot), up(shell), up(core)
    if q.kind == "bone":
        v = q.rs * shell + (q.rc * core if core is not None else 0)
        maps["ha"][sl] += v * 0.1
    elif q.kind in ("torso", "inner"):
        np.maximum(maps[q.kind][sl], tot, out=maps[q.kind][sl])
    elif q.kind == "fat":
        maps["fat"][sl] += q.rs * shell + (q.rc * core if core is not None else 0)
    elif q.kind == "gas":
        maps["gas"][sl] += q.rs * tot


def body_volume(L, tile, h=0.5):
    """Mineral density (g/cm3) of one vertebral body on a 0.5 mm grid in its own frame."""
    a, b = L["a"], L["b"]
    hh = 0.5 * L["H"] * (1 - L["crush"])
    xs, ys, zs = [np.arange(-e, e + h / 2, h, dtype=F32) for e in (a + 1.5, b + 1.5, hh + 1.5)]
    X, Y = xs[:, None], ys[None, :]
    Y2 = Y + (L["pconc"] * b) * np.exp(-(X / (0.45 * a)) ** 2) * np.clip(Y / (0.3 * b), 0, 1)
    Gn = 0.75 * np.sqrt((X / a) ** 2 + (Y2 / b) ** 2) + 0.25 * np.maximum(np.abs(X) / a, np.abs(Y2) / b)
    s = 1 - L["waist"] * (1 - np.minimum((zs / hh) ** 2, 1))
    d_side = (0.85 * min(a, b)) * (s[None, None, :] - Gn[:, :, None])
    wf = 1 - L["wedge"] * np.clip((b - Y) / (2 * b), 0, 1)
    Gc = 1 - np.minimum(Gn, 1) ** 2
    top, bot = hh * wf - L["cav_t"] * Gc, -hh * wf + L["cav_b"] * Gc
    d_end = np.minimum(top[:, :, None] - zs, zs - bot[:, :, None])
    occ = np.clip(0.5 + np.minimum(d_side, d_end) / h, 0, 1)
    ce, cs = d_end - L["te"], d_side - L["tc"]
    core = np.clip(0.5 + np.minimum(cs, ce) / h, 0, 1)
    rho_sh = np.where(ce < cs, F32(L["rho_e"]), F32(L["rho_c"]))
    n_t, off = tile.shape[0], L["off"]
    ix, iy, iz = [(np.floor(v * 2).astype(np.int32) + o) & (n_t - 1) for v, o in zip((xs, ys, zs), off)]
    tex = tile[ix[:, None, None], iy[None, :, None], iz[None, None, :]]
    dens = (occ - core) * rho_sh + core * (F32(L["vb"]) * tex)
    if L["scl"] > 0:
        dens += occ * F32(L["scl"]) * np.clip(1 - d_end / L["scl_w"], 0, 1)
    return dens.astype(F32), np.array([xs[0], ys[0], zs[0]], float)


def project_body(L, Rv, G, maps, h=0.5):
    """Shear-warp: oblique parallel projection of the body volume, then cone-beam warp."""
    V, lo = L["vol"], L["vlo"]
    shp = np.array(V.shape)
    Rt, c = Rv @ L["R"], Rv @ L["c"]
    box = det_box(G, c, np.abs(Rt) @ (-lo))
    if box is None:
        return
    i0, i1, j0, j1 = box[:4]
    d = c - G["S"]
    dl = Rt.T @ (d / np.linalg.norm(d))
    m = int(np.argmax(np.abs(dl)))
    oa, ob = [i for i in range(3) if i != m]
    sa, sb = dl[oa] / dl[m], dl[ob] / dl[m]
    zk = lo[m] + h * np.arange(shp[m])
    zmax = float(np.abs(zk).max())
    pa, pb = int(math.ceil(abs(sa) * zmax / h)) + 1, int(math.ceil(abs(sb) * zmax / h)) + 1
    na, nb = shp[oa], shp[ob]
    canvas = np.zeros((na + 2 * pa + 2, nb + 2 * pb + 2), F32)
    Vm = np.moveaxis(V, m, 0)
    for kk in range(shp[m]):
        fa, fb = pa - sa * zk[kk] / h, pb - sb * zk[kk] / h
        ia, ib = int(math.floor(fa)), int(math.floor(fb))
        ta, tb = F32(fa - ia), F32(fb - ib)
        sl = Vm[kk]
        canvas[ia:ia + na, ib:ib + nb] += ((1 - ta) * (1 - tb)) * sl
        canvas[ia + 1:ia + 1 + na, ib:ib + nb] += (ta * (1 - tb)) * sl
        canvas[ia:ia + na, ib + 1:ib + 1 + nb] += ((1 - ta) * tb) * sl
        canvas[ia + 1:ia + 1 + na, ib + 1:ib + 1 + nb] += (ta * tb) * sl
    canvas *= F32(h / abs(dl[m]) * 0.1)                     # g/cm2
    U, Vv = G["ug"][None, j0:j1], G["vg"][i0:i1, None]
    n, eu, ev, Rl = G["n"].tolist(), G["eu"].tolist(), G["ev"].tolist(), Rt.tolist()
    D = [G["SID"] * n[q] + eu[q] * U + ev[q] * Vv for q in range(3)]
    em = Rt[:, m].tolist()
    t = float((c - G["S"]) @ Rt[:, m]) / (D[0] * em[0] + D[1] * em[1] + D[2] * em[2])
    P = [float(G["S"][q] - c[q]) + t * D[q] for q in range(3)]
    la = Rl[0][oa] * P[0] + Rl[1][oa] * P[1] + Rl[2][oa] * P[2]
    lb = Rl[0][ob] * P[0] + Rl[1][ob] * P[1] + Rl[2][ob] * P[2]
    ca = (la - float(lo[oa])) / h + pa
    cb = (lb - float(lo[ob])) / h + pb
    ca, cb = np.broadcast_arrays(ca, cb)
    maps["ha"][i0:i1, j0:j1] += ndimage.map_coordinates(canvas, [ca, cb], order=1, cval=0.0)


# ------------------------------------------------------------------ image helpers
def upsample(img, k, shape):
    if k == 1:
        return img[:shape[0], :shape[1]].copy()

    def idx(n_out, n_in):
        x = np.clip((np.arange(n_out) + 0.5) / k - 0.5, 0, n_in - 1)
        i0 = np.floor(x).astype(np.intp)
        return i0, np.minimum(i0 + 1, n_in - 1), (x - i0).astype(F32)

    c0, c1, fc = idx(shape[1], img.shape[1])
    tmp = img[:, c0] * (1 - fc) + img[:, c1] * fc
    r0, r1, fr = idx(shape[0], img.shape[0])
    out = tmp[r0]
    out *= (1 - fr)[:, None]
    out += tmp[r1] * fr[:, None]
    return out


def blur(img, s):
    if s < 0.3:
        return img
    if s <= 3.0:
        return ndimage.gaussian_filter(img, s, mode="nearest", truncate=3.0)
    f = int(max(2, s // 2))
    H, W = img.shape
    small = img[:H // f * f, :W // f * f].reshape(H // f, f, W // f, f).mean(axis=(1, 3))
    small = ndimage.gaussian_filter(small, s / f, mode="nearest", truncate=3.0)
    return upsample(small, f, (H, W))


def field_mask(U, V, a, R, C, sp, pen=1.5):
    if a["coll"] == "none":
        return None
    m = a["margins"]
    ul, uh = -C * sp / 2 + m[0], C * sp / 2 - m[1]
    vl, vh = -R * sp / 2 + m[2], R * sp / 2 - m[3]
    uc, vc, hx, hy = (ul + uh) / 2, (vl + vh) / 2, (uh - ul) / 2, (vh - vl) / 2
    cr, sr = math.cos(a["coll_rot"]), math.sin(a["coll_rot"])
    du, dv = U - uc, V - vc
    ru, rv = cr * du + sr * dv, -sr * du + cr * dv
    d = np.minimum(hx - np.abs(ru), hy - np.abs(rv))
    return np.clip(0.5 + d / pen, 0, 1).astype(F32)


def pct(img, mask, qs, step=4, centre=False):
    s = img[::step, ::step]
    m = None if mask is None else mask[::step, ::step]
    if centre:   # vendor "anatomy recognition": central region of the exposed body
        H, W = s.shape
        s = s[int(H * 0.12):int(H * 0.88), int(W * 0.22):int(W * 0.78)]
        m = None if m is None else m[int(H * 0.12):int(H * 0.88), int(W * 0.22):int(W * 0.78)]
    if m is not None and m.sum() > 500:
        s = s[m]
    return [float(v) for v in np.percentile(s, qs)]   # python floats keep float32 arrays float32


def render_text(lines, size, align="left"):
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:
        font = ImageFont.load_default()
    lh = int(size * 1.25)
    widths = [font.getbbox(l)[2] for l in lines]
    W, Hh = max(widths) + 6, lh * len(lines) + 6
    im = Image.new("L", (W, Hh), 0)
    d = ImageDraw.Draw(im)
    for i, l in enumerate(lines):
        x = 3 if align == "left" else W - 3 - widths[i]
        d.text((x, 3 + i * lh), l, fill=255, font=font)
    return np.asarray(im, F32) / 255


# ------------------------------------------------------------------ vendor pipelines  (L: bone high)
def pipe_aurelle(L, mask, p, sp):
    lo, hi = pct(L, mask, [0.5, 99.8], centre=True)
    x = (L - lo) / max(hi - lo, 1e-3)
    out = np.zeros_like(x)
    prev = x
    for g, smm in zip(p["gains"], [0.3, 0.8, 2.0, 5.0, 12.0, 30.0]):
        bl = blur(x, smm / sp)
        d = prev - bl
        out += g * d / (1 + np.abs(d) / p["sat"])
        prev = bl
    m = float(np.median(prev[::8, ::8]))
    y = out + m + (prev - m) * p["drc"]
    l2, h2 = pct(y, mask, [1.0, 99.8], centre=True)
    z = (y - l2) / max(h2 - l2, 1e-3) - 0.5 - p["shift"]
    f = lambda t: 1 / (1 + np.exp(-t * p["k"]))
    return (f(z) - f(-0.5)) / (f(0.5) - f(-0.5))


def pipe_strata(L, mask, p, sp):
    lo, hi = pct(L, mask, [0.5, 99.8], centre=True)
    x = (L - lo) / max(hi - lo, 1e-3)
    low = blur(x, p["drc_mm"] / sp)
    x1 = x - p["alpha"] * (low - float(pct(low, mask, [50])[0]))
    x2 = x1 + p["beta"] * (x1 - blur(x1, p["us_mm"] / sp))
    l2, h2 = pct(x2, mask, [p["lo"], p["hi"]], centre=True)
    z = np.clip((x2 - l2) / max(h2 - l2, 1e-3), 0, 1)
    return z ** p["gamma"]


def pipe_photon(L, mask, p, sp):
    # exposure data recognition: latitude around the recognised body histogram
    lo, med, hi = pct(L, mask, [1.0, 50.0, 99.5], centre=True)
    half = 0.5 * (hi - lo) * p["lat"]
    x = (L - (med - half)) / max(2 * half, 1e-3)
    low = blur(x, p["drc_mm"] / sp)
    x = x - p["drc"] * (low - 0.5)
    wgt = {"F": 1.0, "R": np.clip(x, 0, 1), "T": np.clip(1 - x, 0, 1)}[p["rt"]]
    x = x + p["re"] * wgt * (x - blur(x, p["rn"] / sp))
    f = lambda t: np.tanh(p["ga"] * 2.6 * (t - p["gc"] - p["gs"]))
    return (f(x) - f(0.0)) / (f(1.0) - f(0.0))


def pipe_kaleido(L, mask, p, sp):
    lo, hi = pct(L, mask, [0.5, 99.8], centre=True)
    x = (L - lo) / max(hi - lo, 1e-3)
    H, W = x.shape
    ty, tx = p["ty"], p["tx"]
    p5, p95 = np.zeros((ty, tx)), np.ones((ty, tx))
    for i in range(ty):
        for j in range(tx):
            sl = (slice(i * H // ty, (i + 1) * H // ty), slice(j * W // tx, (j + 1) * W // tx))
            p5[i, j], p95[i, j] = pct(x[sl], None if mask is None else mask[sl], [5, 95], step=6)
    p5, p95 = ndimage.uniform_filter(p5, 3, mode="nearest"), ndimage.uniform_filter(p95, 3, mode="nearest")
    p5m = ndimage.zoom(p5.astype(F32), (H / ty, W / tx), order=1, mode="nearest", grid_mode=True)[:H, :W]
    p95m = ndimage.zoom(p95.astype(F32), (H / ty, W / tx), order=1, mode="nearest", grid_mode=True)[:H, :W]
    local = (x - p5m) / np.maximum(p95m - p5m, 0.05)
    y = p["mix"] * local + (1 - p["mix"]) * x
    y = y + p["kappa"] * (y - blur(y, 0.6 / sp))
    l2, h2 = pct(y, mask, [0.8, 99.7], centre=True)
    z = np.clip((y - l2) / max(h2 - l2, 1e-3), 0, 1)
    return z ** p["p"] / (z ** p["p"] + (1 - z) ** p["p"])


PIPES = {"aurelle_mse": pipe_aurelle, "strata_drc": pipe_strata, "photon_cr": pipe_photon, "kaleido_tile": pipe_kaleido}


# ------------------------------------------------------------------ rendering one view
def render_view(pt, vw, rng):
    acq = pt["acq"]
    a = dict(acq[vw], coll=acq["coll"])
    sp, k = acq["sp"], acq["k"]
    R, C = a["rows"], a["cols"]
    G = geometry(pt, vw)
    Rw, Cw = G["Rw"], G["Cw"]
    maps = {m: np.zeros((Rw, Cw), F32) for m in ("torso", "inner", "fat", "gas", "ha")}
    for q in pt["prims"]:
        trace(q, a["Rview"], G, maps)
    for L in pt["levels"]:
        project_body(L, a["Rview"], G, maps)
    if a["flip"]:
        maps = {m: np.ascontiguousarray(v[:, ::-1]) for m, v in maps.items()}
    torso = maps["torso"]
    gas = np.minimum(maps["gas"], 0.9 * torso)
    fat = np.clip(np.maximum(torso - maps["inner"], 0) + maps["fat"], 0, torso - gas)
    lean = torso - gas - fat
    ha = np.maximum(maps["ha"], 0)
    # lead marker + plastic holder, placed inside the field near a lateral corner
    lead = np.zeros_like(lean)
    mpx = max(8, int(a["marker_mm"] / G["w"]))
    mk = render_text([a["marker_letter"]], mpx)
    mk = (ndimage.grey_dilation(mk, size=(2, 2)) > 0.4).astype(F32)
    mh, mw = mk.shape
    marg = a["margins"]
    left = (a["marker_letter"] == "R") if vw == "AP" else a["marker_corner"] == 0
    cj = int((marg[0] + 12) / G["w"]) if left else Cw - int((marg[1] + 12) / G["w"]) - mw
    ci = int((marg[2] + 15) / G["w"]) if a["marker_corner"] == 0 else Rw - int((marg[3] + 15) / G["w"]) - mh
    cj, ci = int(np.clip(cj, 0, Cw - mw)), int(np.clip(ci, 0, Rw - mh))
    lead[ci:ci + mh, cj:cj + mw] += mk * 1.2
    lean[max(ci - 3, 0):ci + mh + 3, max(cj - 3, 0):cj + mw + 3] += 4.0
    # polyenergetic primary
    det = "bafbr" if acq["modality"] == "CR" else "csi"
    E, wE = spectrum(a["kvp"], a["al"], a["cu"], det)
    muw, muf, muh = mu("water", E) * 0.1, mu("fat", E) * 0.095, mu("ha", E)
    P = np.zeros_like(lean)
    for kk in range(len(E)):
        P += F32(wE[kk]) * np.exp(-(F32(muw[kk]) * lean + F32(muf[kk]) * fat + F32(muh[kk]) * ha + 3.5 * lead))
    U, V = G["ug"][None, :], G["vg"][:, None]
    fw = field_mask(U, V, a, R, C, sp)
    if fw is not None:
        P *= fw
    P *= (1 + a["heel"] * G["vg"] / (Rw * G["w"] / 2))[:, None]
    S = a["spr"] * blur(P * (1 - np.exp(-torso / 80)), a["scat_mm"] / G["w"])
    I = P + S
    # AEC: the chamber is calibrated on soft tissue, so dose (and mAs in the header) ignores the bone
    cw = max(2, int(40 / G["w"]))
    ch = (slice(Rw // 2 - cw, Rw // 2 + cw), slice(Cw // 2 - cw, Cw // 2 + cw))
    Ic = sum(float(wE[kk]) * np.exp(-(muw[kk] * lean[ch] + muf[kk] * fat[ch])) for kk in range(len(E)))
    Ic = float(np.mean(Ic)) * (1 + a["spr"]) + 1e-9
    n_air = a["target"] / Ic
    # detector
    If = upsample(I, k, (R, C))
    if acq["modality"] == "CR":
        If *= (1 + 0.004 * ndimage.gaussian_filter1d(rng.standard_normal(R), 1.5))[:, None].astype(F32)
    if a["gridlines"]:
        ph = np.arange(C) * (a["grid_f"] * sp)
        If *= (1 - a["grid_a"] * (0.5 + 0.5 * np.cos(2 * np.pi * ph))).astype(F32)[None, :]
    N = If * F32(n_air)
    N += np.sqrt(N) * rng.standard_normal((R, C), dtype=F32)
    N = ndimage.gaussian_filter(N, a["blur_mm"] / sp, mode="nearest", truncate=3.0)
    N += F32(a["enoise"]) * rng.standard_normal((R, C), dtype=F32)
    Lg = -np.log(np.maximum(N, 0.5) / F32(n_air))
    ff = None if fw is None else upsample(fw, k, (R, C))
    body = Lg > 1.0
    if ff is not None:
        body &= ff > 0.5
    if ff is not None:   # shutter recognition: processing never sees the unexposed border
        fill = F32(pct(Lg, ff > 0.5, [40])[0])
        Lg = Lg * ff + fill * (1 - ff)
    disp = np.clip(PIPES[acq["prm"]["name"]](Lg, body, acq["prm"], sp), 0, 1).astype(F32)
    med = float(np.clip(pct(disp, body, [50], centre=True)[0], 0.02, 0.98))   # vendor brightness anchor
    disp = np.power(disp, F32(np.clip(math.log(acq["prm"]["mid"]) / math.log(med), 0.35, 3.0)))
    if ff is not None:
        disp = disp * ff if a["coll"] == "black" else disp * ff + (1 - ff)
    if acq["modality"] == "CR":
        for _ in range(rng.poisson(3)):
            y0, x0 = rng.integers(0, R - 8), rng.integers(0, C - 8)
            disp[y0:y0 + rng.integers(2, 6), x0:x0 + rng.integers(2, 6)] = rng.uniform(0, 1)
    burn_annotations(disp, pt, vw, a, sp)
    maxv = (1 << acq["bits"]) - 1
    out = np.rint((1 - disp if acq["mono1"] else disp) * maxv).astype(np.uint16)
    mas = float(np.clip(22 * (a["target"] / 800) * (0.02 / Ic) ** 0.75 * (80 / a["kvp"]) ** 2.5, 1.0, 320.0))
    ei = ei_of(a, sp)
    sod = float((a["Rview"] @ pt["levels"][4]["c"] - G["S"]) @ G["n"])   # source to L3 centre
    return out, dict(mas=mas, ei=ei, sod=sod)


def ei_of(a, sp):
    return int(round(400 * a["target"] / 800 / (sp / 0.15) ** 2))


def ei_to_s(a):
    return int(round(200 * 800 / a["target"]))


def burn_annotations(disp, pt, vw, a, sp):
    acq = pt["acq"]
    size = max(12, int(acq["text_mm"] / sp))
    bright = not (acq["coll"] == "white")
    col = 1.0 if bright else 0.0
    y, mo, d = acq["date"]
    lay = acq["text_layout"]
    pid = patient_id(pt)
    tl = [acq["institution"], f"{pname(pt)}  {pid}", f"{pt['sex']} {pt['age']}Y"]
    tr = [f"{y:04d}-{mo:02d}-{d:02d} {acq['hour']:02d}:{acq['minute']:02d}", f"L-SPINE {vw}"]
    br = [f"{a['kvp']:.0f} kV", f"SID {a['sid'] / 10:.0f} cm", (f"S {ei_to_s(a)}" if acq["modality"] == "CR"
                                                                   else f"EI {ei_of(a, sp)}")]
    if lay == 1:
        tl, tr = tr, tl
    blocks = [(tl, "tl"), (tr, "tr"), (br, "br")] if lay != 2 else [(tl + tr, "tl"), (br, "bl")]
    R, C = disp.shape
    for lines, corner in blocks:
        m = render_text(lines, size, "right" if corner[1] == "r" else "left")
        h, w = m.shape
        h, w = min(h, R - 20), min(w, C - 20)
        m = m[:h, :w]
        y0 = 10 if corner[0] == "t" else R - h - 10
        x0 = 10 if corner[1] == "l" else C - w - 10
        reg = disp[y0:y0 + h, x0:x0 + w]
        reg[:] = reg * (1 - m) + col * m


# ------------------------------------------------------------------ DICOM
def patient_id(pt):
    return f"PHU{pt['seed']:d}-{pt['idx']:05d}"


def pname(pt):
    return f"PHANTOMU^P{pt['idx']:05d}"


def fmt(x, nd=4):
    s = f"{x:.{nd}f}".rstrip("0").rstrip(".")
    return s if s not in ("", "-0") else "0"


def code(value, scheme, meaning):
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return c


def write_dicom(path, img, pt, vw, info, uids):
    acq, a = pt["acq"], pt["acq"][vw]
    cr, mono1, bits = acq["modality"] == "CR", acq["mono1"], acq["bits"]
    sop = CR_SOP if cr else DX_SOP
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop, uids[vw + "_sop"]
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "PHANTOM_U_1"
    ds = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
    y, mo, d = acq["date"]
    date, tm = f"{y:04d}{mo:02d}{d:02d}", f"{acq['hour']:02d}{acq['minute']:02d}{(10 if vw == 'AP' else 14):02d}"
    man, model, _, _ = VENDORS[acq["vendor"]]
    maxv, spx = (1 << bits) - 1, [fmt(acq["sp"]), fmt(acq["sp"])]
    attrs = dict(
        SpecificCharacterSet="ISO_IR 100", ImageType=["ORIGINAL", "PRIMARY"] + ([] if cr else [""]),
        SOPClassUID=sop, SOPInstanceUID=uids[vw + "_sop"], StudyDate=date, SeriesDate=date, AcquisitionDate=date,
        ContentDate=date, StudyTime=tm, SeriesTime=tm, AcquisitionTime=tm, ContentTime=tm,
        AccessionNumber=f"U{pt['seed'] % 1000:03d}{pt['idx']:07d}", Modality=acq["modality"], Manufacturer=man,
        InstitutionName=acq["institution"].title(), ReferringPhysicianName="", StationName=f"XR{pt['seed'] % 7 + 1:02d}",
        StudyDescription="XR LUMBAR SPINE 2 VIEWS", SeriesDescription=f"L-SPINE {vw}", ManufacturerModelName=model,
        PatientName=pname(pt), PatientID=patient_id(pt), PatientSex=pt["sex"], PatientAge=f"{pt['age']:03d}Y",
        PatientBirthDate=f"{y - pt['age'] - (1 if (mo, d) < (6, 15) else 0):04d}0615",
        PatientSize=fmt(pt["height"] / 100, 2), PatientWeight=fmt(pt["weight"], 1), BodyPartExamined="LSPINE",
        KVP=fmt(a["kvp"], 1), DistanceSourceToDetector=fmt(a["sid"], 1), DistanceSourceToPatient=fmt(info["sod"], 1),
        ExposureTime=str(int(round(info["mas"] / 0.4))), XRayTubeCurrent="400", Exposure=str(int(round(info["mas"]))),
        ExposureInuAs=str(int(round(info["mas"] * 1000))), DeviceSerialNumber=f"SN{(pt['seed'] * 31 + 7) % 99991:05d}",
        SoftwareVersions=f"{acq['prm']['name']}-{pt['seed'] % 5 + 1}.{pt['idx'] % 9}", ViewPosition=vw,
        StudyInstanceUID=uids["study"], SeriesInstanceUID=uids[vw + "_series"], StudyID=f"{pt['idx'] + 1}",
        SeriesNumber=1 if vw == "AP" else 2, InstanceNumber=1, BurnedInAnnotation="YES", LossyImageCompression="00",
        PatientOrientation=["L", "F"] if vw == "AP" else (["A", "F"] if a["flip"] else ["P", "F"]),
        ImagerPixelSpacing=spx, SamplesPerPixel=1, PhotometricInterpretation="MONOCHROME1" if mono1 else "MONOCHROME2",
        Rows=img.shape[0], Columns=img.shape[1], BitsAllocated=16, BitsStored=bits, HighBit=bits - 1,
        PixelRepresentation=0, WindowCenter=fmt(maxv * (0.5 + 0.03 * math.sin(pt["idx"] * 1.7 + (vw == "LAT"))), 1),
        WindowWidth=fmt(maxv * (0.92 + 0.06 * math.cos(pt["idx"] * 2.3)), 1), VOILUTFunction="LINEAR")
    if cr:
        attrs.update(PixelSpacing=spx, PlateType="ST-VI", PhosphorType="BAFBR", Sensitivity=fmt(info["ei"] / 2.0, 1))
    else:
        vc = code("399348003", "SCT", "antero-posterior") if vw == "AP" else code("399173006", "SCT", "left lateral")
        vc.ViewModifierCodeSequence = Sequence([])
        attrs.update(
            PresentationIntentType="FOR PRESENTATION", DetectorType="SCINTILLATOR", DetectorConfiguration="AREA",
            DetectorID=f"D{pt['seed'] % 97:02d}", ViewCodeSequence=Sequence([vc]),
            EstimatedRadiographicMagnificationFactor=fmt(float(fmt(a["sid"], 1)) / float(fmt(info["sod"], 1)), 6),
            PixelIntensityRelationship="LOG", PixelIntensityRelationshipSign=1 if mono1 else -1,
            RescaleIntercept="0", RescaleSlope="1", RescaleType="US", ImageLaterality="U", PositionerType="NONE",
            PresentationLUTShape="INVERSE" if mono1 else "IDENTITY", AcquisitionContextSequence=Sequence([]),
            ExposureIndex=fmt(info["ei"], 1), TargetExposureIndex="400",
            DeviationIndex=fmt(10 * math.log10(max(info["ei"], 1) / 400), 2),
            AnatomicRegionSequence=Sequence([code("122496007", "SCT", "Lumbar spine")]))
    for key, val in attrs.items():
        setattr(ds, key, val)
    ds.PixelData = img.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


# ------------------------------------------------------------------ driver
def make_study(args):
    outdir, seed, idx = args
    pt = make_patient(seed, idx)
    pt["seed"] = int(seed)
    for L in pt["levels"]:
        L["vol"], L["vlo"] = body_volume(L, pt["tile"])
    rng = np.random.default_rng([int(seed), int(idx), 104729])
    ent = [str(seed), str(idx), "phantom_u"]
    uids = {"study": generate_uid(entropy_srcs=ent + ["study"])}
    rows = []
    sub = f"p{idx:05d}"
    os.makedirs(os.path.join(outdir, sub), exist_ok=True)
    for vw in ("AP", "LAT"):
        uids[vw + "_series"] = generate_uid(entropy_srcs=ent + [vw, "series"])
        uids[vw + "_sop"] = generate_uid(entropy_srcs=ent + [vw, "sop"])
        img, info = render_view(pt, vw, rng)
        rel = f"{sub}/{vw.lower()}.dcm"
        write_dicom(os.path.join(outdir, rel), img, pt, vw, info, uids)
        rows.append([rel, pt["label"], f"{pt['T']:.3f}", f"{pt['bmd']:.4f}", patient_id(pt), vw])
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("n", type=int)
    ap.add_argument("seed", type=int)
    ap.add_argument("--workers", type=int, default=1)
    ns = ap.parse_args(argv)
    os.makedirs(ns.outdir, exist_ok=True)
    jobs = [(ns.outdir, ns.seed, i) for i in range(ns.n)]
    t0 = time.time()
    if ns.workers > 1:
        with Pool(ns.workers) as pool:
            res = pool.map(make_study, jobs, chunksize=1)
    else:
        res = [make_study(j) for j in jobs]
    with open(os.path.join(ns.outdir, "manifest.csv"), "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["path", "label", "t_score", "bmd", "patient_id", "view"])
        for rows in res:
            wr.writerows(rows)
    dt = time.time() - t0
    print(f"wrote {ns.n} studies to {ns.outdir} in {dt:.1f} s ({dt / max(ns.n, 1):.2f} s/study)", file=sys.stderr)


if __name__ == "__main__":
    main()
