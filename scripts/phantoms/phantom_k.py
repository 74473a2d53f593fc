#!/usr/bin/env python3
"""phantom_k -- synthetic lumbar-spine radiograph studies (AP + lateral) with known BMD.

Usage:  python phantom_k.py OUTDIR N SEED [--workers K]

Writes <PID>_AP.dcm and <PID>_LAT.dcm per synthetic patient plus manifest.csv
(path,label,t_score,bmd,patient_id,view).  Output is a pure function of SEED:
every random draw comes from numpy Generators seeded with (SEED, patient index).

DESIGN (written independently of the project's other generators)

Patient.  A class is drawn uniformly (normal / osteopenia / osteoporosis), then the
DXA T-score inside the class range (-4.5 .. +2).  Sex depends weakly on class
(more women at low T); age is drawn *given* T and sex (women: mean 62 - 2.2 T,
sd 9; men: mean 64 - 1.3 T, sd 11) -> age-T correlation about -0.33 (F) / -0.2
(M), as in screening cohorts.  Height, BMI (weakly lower at low T), fat
distribution (women subcutaneous, men visceral) and muscle bulk (falls with age)
vary per patient.  Manifest BMD = sex-specific young-adult L1-L4 mean + T x SD.

Anatomy (patient frame: x = patient left, y = posterior, z = superior, mm).
* Spine T9-L5 (5% lumbarised L6, 7% sacralised L5 with butterfly transverse
  processes) stacked on a lordotic centre line (sacral slope + lordosis, curvature
  concentrated caudally, discs kept open at both rims), optional scoliosis with
  coronal tilt and axial rotation toward the convexity.  Vertebral body = implicit
  solid: axial outline is a periodic cubic spline through 12 polar control radii
  (kidney shape, posterior concavity), concave waist, ring-apophysis rim, concave
  endplates, anterior/posterior wedging, osteophyte lips.  Pedicles, laminae,
  spinous/transverse processes and articular processes are swept tubes
  (Catmull-Rom centre lines, elliptical sections, cortical shell + cancellous
  core).  All parts of a vertebra are max-unioned in one local ~0.6 mm voxel grid
  (no double counting).  Sacrum = S1 body + plate swept along an arc (concave
  anteriorly, analytic inverse) with alae and partial foramina.  Iliac wings =
  parametric sheets (crest rim, thick posterior and acetabular parts, arcuate
  line, cortical plates) deposited mass-conservingly into a voxel grid.  Ribs
  9-12 = tubes that wind round the inner trunk wall.  Aortic/iliac wall plaques.
* Soft tissue per height z: skin and muscle-wall polar polygons (superellipse,
  flatter back, hips below the crest; subcutaneous fat thickness varies with
  angle), visceral fat region, psoas in retroperitoneal fat, kidneys in perirenal
  fat, posterior lung recesses above a domed diaphragm.  Path lengths are exact
  2-D line/polygon and line/ellipse chords per detector column, corrected for
  ray obliquity.  Bowel: haustrated colon tube whose smooth random "gas level"
  gives tapered gas lumens and bubbly stool (thresholded 3-D noise); small-bowel
  and stomach gas; vacuum-disc gas in badly degenerated discs.

Projection.  Point source; every bone/gas sample is projected with its own
magnification and splatted bilinearly with weight dV * mag^2 / pixel area, i.e.
the line integrals of a point cloud for a divergent beam (patient roll and side
tilt are applied as an inverse rotation of source and detector).

X-ray physics.  Tungsten spectrum (Kramers + K lines, 2.5 mm Al inherent + 1 mm
Al + 0-0.2 mm Cu; kVp 70-89 AP, 85-100 LAT, rising with size); water/fat/Al in a
(water, hydroxyapatite) basis, polychromatic LUT of detected energy and effective
energy for a CsI (DX) or BaFBr (CR) energy-integrating detector; inverse square
and obliquity, heel effect, thickness-dependent scatter with a broad kernel and
grid (or none), collimation with leakage, lead L/R marker, AEC chamber over the
spine (CR: manual chart, larger error), compound-Poisson quantum + electronic
noise with detector correlation, CR blur and scan-line ripple.  Rendered at
~0.65 mm, upsampled to the native 0.15-0.2 mm pixel grid (1750-2870 px a side).

Bone density.  T drives (with per-patient discordance): trabecular vBMD
(165 + 27 T mg/cm3 HA), cortical shell thickness and mineral density, marrow
fat, and a rendered 3-D trabecular texture: band-pass noise made of vertical
plates (normals along x and y, so each view sees some edge-on) and horizontal
plates, soft-thresholded at a bone-volume fraction that falls with T, while the
horizontal plates fade and the spacing coarsens (vertical striation, "picture
frame" bodies).  Fracture probability rises steeply as T falls (wedge /
biconcave / crush at T11-L4 with compacted bone).  Confounders not tied to T:
age-driven disc narrowing, osteophytes, endplate sclerosis, facet hypertrophy,
vacuum discs, aortic calcification; body size and BMI, posterior elements and
pelvis (weakly T-dependent), bowel gas, kVp/filtration/AEC, scatter, vendor.

Vendors (invented; one per study).  Orison Medical (DX 43x43, 0.16 mm, 12 bit:
log, wide DRC, unsharp mask, tanh tone, black shutters), Keldar Imaging (DX
35x43, 0.175 mm, 14 bit MONOCHROME1: 9-level Laplacian-pyramid multi-frequency
gains, sigmoid, white shutters), Vantrix (CR 35x43, 0.2 mm, 10 bit MONOCHROME1:
dynamic range compression, gamma, unmasked collimation), Halden Radiology
Systems (DX 43x43, 0.15 mm, 15 bit: histogram-equalisation blend, strong edge
enhancement).  Windowing maps the anatomy median and 99.7th percentile to
targets; burned-in text layout and ViewPosition code (LL / LATERAL) per vendor.
"""
import os
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"
import ctypes
try:    # keep big numpy buffers on the heap (avoids page-fault storms on every allocation)
    _libc = ctypes.CDLL("libc.so.6")
    _libc.mallopt(-3, 1 << 30)      # M_MMAP_THRESHOLD
    _libc.mallopt(-1, 1 << 31)      # M_TRIM_THRESHOLD
except (OSError, AttributeError):
    pass
import sys
import argparse
import hashlib
import math
import numpy as np
from scipy import ndimage
from scipy.interpolate import CubicSpline
from PIL import Image, ImageDraw, ImageFont

# ==== Attenuation data (mass attenuation coefficients, cm^2/g; XCOM-like values)
E_TAB = np.array([10, 15, 20, 30, 40, 50, 60, 80, 100, 150.0])
MU_TAB = {
    "water": [5.33, 1.67, 0.810, 0.376, 0.268, 0.227, 0.206, 0.184, 0.171, 0.151],
    "fat":   [3.10, 1.05, 0.540, 0.300, 0.237, 0.213, 0.200, 0.182, 0.171, 0.152],
    "ha":    [49.5, 15.6, 6.97, 2.27, 1.09, 0.645, 0.451, 0.281, 0.213, 0.156],
    "al":    [26.2, 7.96, 3.44, 1.128, 0.569, 0.368, 0.278, 0.202, 0.170, 0.138],
    "cu":    [215.9, 74.1, 33.8, 10.9, 4.86, 2.61, 1.59, 0.763, 0.458, 0.222],
}
# detector phosphors: (energies, mu/rho) with K-edges written as two points
DET_TAB = {
    "csi": ([10, 15, 20, 25, 30, 33.1, 33.2, 36, 40, 50, 60, 80, 100, 150],
            [150, 53, 25, 14, 8.5, 6.5, 33, 26, 21, 11.8, 7.3, 3.45, 1.95, 0.70]),
    "bafbr": ([10, 15, 20, 25, 30, 37.3, 37.5, 40, 50, 60, 80, 100, 150],
              [120, 40, 18, 10.5, 6.8, 3.9, 21, 18, 10, 6.2, 3.0, 1.7, 0.65]),
}


def mu(mat, E):
    """mass attenuation coefficient (cm^2/g) by log-log interpolation"""
    if mat in DET_TAB:
        e, m = (np.asarray(a, float) for a in DET_TAB[mat])
    else:
        e, m = E_TAB, np.asarray(MU_TAB[mat], float)
    return np.exp(np.interp(np.log(E), np.log(e), np.log(m)))


class Beam:
    """Polychromatic beam + detector -> LUT of detected energy vs basis thickness."""
    W_MAX, H_MIN, H_MAX, NW, NH = 75.0, -2.0, 12.0, 140, 100

    def __init__(self, kvp, al_mm, cu_mm, phosphor, phos_gcm2):
        E = np.arange(12.0, kvp, 1.0) + 0.5
        n = np.clip(kvp - E, 0, None) / E                # Kramers photon number
        if kvp > 69.6:                                   # tungsten K lines
            frac = 0.6 * (1 - 69.5 / kvp)
            for e_line, w in ((58.0, .28), (59.3, .50), (67.2, .17), (69.1, .05)):
                if e_line < kvp:
                    n[np.argmin(abs(E - e_line))] += frac * n.sum() * w
        n = n * np.exp(-mu("al", E) * 2.70 * 0.1 * 2.5)   # inherent filtration
        n *= 1.6e6 * (kvp / 80.0) ** 2 / n.sum()          # photons/mm^2/mAs at 1 m
        n = n * np.exp(-mu("al", E) * 2.70 * 0.1 * al_mm - mu("cu", E) * 8.96 * 0.1 * cu_mm)
        self.E, self.phi = E, n
        self.eta = 1 - np.exp(-mu(phosphor, E) * phos_gcm2)
        self.mw, self.mh = mu("water", E), mu("ha", E)
        # two-material basis decomposition (spectrum-weighted least squares)
        wts = np.sqrt(n * self.eta * E * np.exp(-self.mw * 18.0) + 1e-12)
        A = np.stack([self.mw, self.mh], 1) * wts[:, None]
        self.basis = {m: np.linalg.lstsq(A, mu(m, E) * wts, rcond=None)[0]
                      for m in ("fat", "al")}
        # LUT: log detected energy S and effective energy Q2/S
        wg = np.linspace(0, self.W_MAX, self.NW)
        hg = np.linspace(self.H_MIN, self.H_MAX, self.NH)
        att = np.exp(-(wg[:, None, None] * self.mw + hg[None, :, None] * self.mh))
        s = (att * (n * self.eta * E)).sum(-1)
        q = (att * (n * self.eta * E * E)).sum(-1)
        self.lut_s = np.log(np.maximum(s, 1e-30))
        self.lut_e = q / np.maximum(s, 1e-30)

    def signal(self, Wb, Hb):
        """detected energy per mm^2 per mAs at 1 m, and effective energy (keV)"""
        iw = np.clip(Wb, 0, self.W_MAX - 1e-3) * (self.NW - 1) / self.W_MAX
        ih = (np.clip(Hb, self.H_MIN, self.H_MAX - 1e-3) - self.H_MIN) * (self.NH - 1) / (self.H_MAX - self.H_MIN)
        c = np.stack([iw.ravel(), ih.ravel()])
        ls = ndimage.map_coordinates(self.lut_s, c, order=1).reshape(Wb.shape)
        ee = ndimage.map_coordinates(self.lut_e, c, order=1).reshape(Wb.shape)
        return np.exp(ls), ee


# ==== Geometry helpers
def rot(axis, a):
    """rotation matrix about x (0), y (1) or z (2)"""
    c, s = math.cos(a), math.sin(a)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    R = np.eye(3)
    R[i, i], R[j, j], R[i, j], R[j, i] = c, c, -s, s
    return R


def catmull(ctrl, step):
    """centripetal-free Catmull-Rom through ctrl (k,3); samples ~step apart"""
    P = np.asarray(ctrl, float)
    P = np.vstack([2 * P[0] - P[1], P, 2 * P[-1] - P[-2]])
    out = []
    for i in range(1, len(P) - 2):
        p0, p1, p2, p3 = P[i - 1], P[i], P[i + 1], P[i + 2]
        n = max(2, int(np.linalg.norm(p2 - p1) / step) + 1)
        t = np.linspace(0, 1, n, endpoint=(i == len(P) - 3))[:, None]
        out.append(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                          + (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3))
    return np.vstack(out)


def frames(C, ref):
    """unit tangents of a sampled curve and two normals (n1 toward ref)"""
    T = np.gradient(C, axis=0)
    T /= np.linalg.norm(T, axis=1, keepdims=True) + 1e-9
    n1 = np.asarray(ref, float) - (T @ np.asarray(ref, float))[:, None] * T
    n1 /= np.linalg.norm(n1, axis=1, keepdims=True) + 1e-9
    return T, n1, np.cross(T, n1)


def smoothstep(x):
    x = np.clip(x, 0, 1)
    return x * x * (3 - 2 * x)


class Cloud:
    """point samples with volume (mm^3) and per-point HA density (g/cm^3),
    marrow-fat volume fraction and gas volume fraction"""

    def __init__(self):
        self.parts = []

    def add(self, pts, vol, ha=0.0, fat=0.0, gas=0.0):
        n = len(pts)
        if n == 0:
            return
        f = lambda a: np.broadcast_to(np.asarray(a, np.float32), (n,))
        self.parts.append((np.asarray(pts, np.float32), f(vol), f(ha), f(fat), f(gas)))

    def arrays(self):
        a = [np.concatenate([p[i] for p in self.parts]) for i in range(5)]
        ok = np.isfinite(a[0]).all(1)
        return a if ok.all() else [x[ok] for x in a]


# ==== Patient: demographics, bone status, habitus, spine shape
#            width depth h_ant h_post (mm, average adult before size scaling)
BODY_TPL = {"T9": (32, 26, 19.5, 20.5), "T10": (34, 26.5, 20.0, 21.0), "T11": (36, 27, 21.0, 22.0),
            "T12": (38, 28, 22.5, 23.5), "L1": (41, 29, 24.0, 25.0), "L2": (43, 30, 25.0, 25.5),
            "L3": (45, 31, 26.0, 25.5), "L4": (47, 32, 26.0, 25.0), "L5": (49, 32, 27.0, 23.5), "L6": (49, 32, 26.5, 24.0)}
DISC_TPL = {"T9": 5.0, "T10": 5.0, "T11": 5.5, "T12": 6.5, "L1": 8.0, "L2": 9.0, "L3": 10.0, "L4": 11.0,
            "L5": 10.0, "L6": 10.0}
TP_REACH = {"T9": 12, "T10": 10, "T11": 8, "T12": 6, "L1": 18, "L2": 25, "L3": 32, "L4": 28, "L5": 22, "L6": 22}
REF_BMD = {"F": (1.047, 0.110), "M": (1.065, 0.115)}   # young-adult L1-L4 mean, SD (g/cm2)
FRACT_W = {"T11": 1.0, "T12": 2.5, "L1": 2.5, "L2": 1.5, "L3": 1.0, "L4": 0.7}


def t_label(t):
    return 0 if t >= -1.0 else (2 if t <= -2.5 else 1)


def sample_patient(rng):
    P = {}
    cls = int(rng.integers(3))                     # class first (balanced), then T inside it
    T = round(float((-1.0 + 3.0 * rng.beta(1.3, 2.0), rng.uniform(-2.49, -1.01),
                     -2.5 - 2.0 * rng.beta(1.2, 2.0))[cls]), 2)
    sex = "F" if rng.random() < (0.55, 0.70, 0.80)[cls] else "M"
    age = rng.normal(62 - 2.2 * T, 9) if sex == "F" else rng.normal(64 - 1.3 * T, 11)
    age = int(np.clip(round(age), 35, 92))
    m, sd = REF_BMD[sex]
    P.update(T=T, label=t_label(T), sex=sex, age=age, bmd=round(m + T * sd, 3))
    male = sex == "M"
    # habitus
    P["height"] = height = rng.normal(175 if male else 162, 7)
    P["bmi"] = bmi = float(np.clip(rng.normal(27.0 + 0.5 * T, 5.0), 16.5, 46))
    P["sf"] = (height / 170) ** 0.9 * (1.04 if male else 0.96) * rng.normal(1, 0.035)
    P["A0"] = (160 + 5.5 * (bmi - 25)) * (height / 170) ** 0.5 * (1.04 if male else 1.0)
    P["D0"] = (215 + 7.0 * (bmi - 25)) * (1.06 if male else 1.0) * rng.normal(1, 0.04)
    P["hip"] = (0.12 if male else 0.22) * rng.normal(1, 0.15)
    fa = (7 + 1.7 * (bmi - 21)) if male else (12 + 2.4 * (bmi - 21))
    P["fat_sc"] = max(3.0, fa * rng.normal(1, 0.15))
    P["fat_visc"] = float(np.clip((0.12 + 0.025 * (bmi - 21)) if male else (0.08 + 0.017 * (bmi - 21)), 0.03, 0.6))
    P["muscle"] = (1.25 if male else 1.0) * (1 - 0.006 * (age - 40)) * rng.normal(1, 0.08)
    # bone status (per-patient discordance between DXA T and the bone we draw)
    Tb = T + rng.normal(0, 0.35)
    P["vbmd"] = max(0.03, (165 + 27 * Tb) / 1000.0)                    # g/cm3 HA, trabecular
    P["tc"] = float(np.clip(0.9 + 0.1 * Tb + rng.normal(0, 0.05), 0.4, 1.3))   # cortex + subcortical, mm
    P["rho_c"] = float(np.clip(0.9 + 0.04 * Tb, 0.65, 1.05))          # cortical HA g/cm3
    P["mfat"] = float(np.clip(0.25 + 0.006 * (age - 40) - 0.035 * T + rng.normal(0, 0.05), 0.15, 0.85))
    Tt = T + rng.normal(0, 0.4)
    P["tex"] = dict(bvf=float(np.clip(0.42 + 0.045 * Tt, 0.16, 0.55)),
                    spacing=float(np.clip(1.9 - 0.12 * Tt, 1.5, 2.6)),
                    horiz=float(np.clip(0.85 + 0.15 * Tt, 0.2, 1.2)))
    # fractures: probability rises steeply as T falls
    fr = {}
    p_any = 1 / (1 + math.exp(1.2 + 1.1 * (T + 2.5)))
    if rng.random() < p_any or rng.random() < 0.015:
        lv = list(FRACT_W)
        w = np.array([FRACT_W[k] for k in lv]); w /= w.sum()
        nfr = min(4, 1 + rng.poisson(max(0.0, -0.4 * (T + 2.0))))
        for k in rng.choice(len(lv), size=nfr, replace=False, p=w):
            sev = rng.uniform(0.18, 0.28) if T > -2.5 else rng.uniform(0.2, 0.45)
            fr[lv[k]] = (rng.choice(["wedge", "biconcave", "crush"], p=[0.55, 0.3, 0.15]), sev)
    P["fract"] = fr
    # age-driven degeneration per disc (below the named level), independent of T
    base = np.clip((age - 38) / 45, 0, 1)
    P["deg"] = {k: float(np.clip(base * w + rng.normal(0, 0.15), 0, 1)) for k, w in
                zip(["T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "L6"],
                    [.45, .45, .5, .6, .7, .8, .9, 1.1, 1.1, 1.1])}
    P["aorta_calc"] = (1 / (1 + math.exp(-(age - 64) / 7))) * rng.uniform(0.3, 1.6)
    # spine shape
    P["LL"] = math.radians(float(np.clip(rng.normal(44 if male else 48, 10), 20, 72)))
    P["SS"] = float(np.clip(0.55 * P["LL"] + math.radians(10 + rng.normal(0, 4)), math.radians(18), math.radians(55)))
    big = rng.random() < 0.12 + 0.003 * max(0, age - 50)
    P["scol"] = rng.normal(0, 3.5) + big * rng.choice([-1, 1]) * rng.uniform(6, 24)
    P["scol_phase"] = rng.uniform(-0.3, 0.3)
    r = rng.random()
    P["lumbarised"], P["sacralised"] = r < 0.05, (0.05 <= r < 0.12)
    P["gas"] = float(rng.beta(1.5, 2.5))
    return P


def build_spine(P, rng):
    """Stack vertebrae bottom-up on a lordotic centre line; returns list of dicts
    (name, c centre, R local->world, a, b, ha, hp, ...) and the S1 frame."""
    names = ["T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5"] + (["L6"] if P["lumbarised"] else [])
    sf, SS, LL = P["sf"], P["SS"], P["LL"]
    dims = {}
    for n in names:
        w, d, ha, hp = BODY_TPL[n]
        g = rng.normal(1, 0.025, 4)
        hsc = 1 - 0.0012 * max(0, P["age"] - 50)                      # mild height loss with age
        dims[n] = [w * sf * g[0] / 2, d * sf * g[1] / 2, ha * sf * g[2] * hsc, hp * sf * g[3] * hsc]
    for n, (kind, sev) in P["fract"].items():
        if kind == "wedge":
            dims[n][2] *= 1 - sev
        elif kind == "crush":
            dims[n][2] *= 1 - 0.8 * sev
            dims[n][3] *= 1 - 0.8 * sev
            dims[n][0] *= 1.05
    up = lambda t: np.array([0.0, -math.sin(t), math.cos(t)])
    order = names[::-1]
    lum_len = sum((dims[n][2] + dims[n][3]) / 2 + DISC_TPL[n] * sf for n in order if n[0] == "L")

    def theta(s):
        x = min(s / lum_len, 1.0)
        return SS - LL * (1 - (1 - x) ** 1.7) + 0.0017 * max(0.0, s - lum_len)

    c, s, t_prev, vert = np.zeros(3), 0.0, SS, []
    hw_prev = 0.0
    for n in order:
        a, b, ha, hp = dims[n]
        D = P["deg"][n]
        d = DISC_TPL[n] * sf * (1 - 0.55 * D) * rng.normal(1, 0.06)
        hc = (ha + hp) / 2
        t_mid = theta(s + d + hc / 2)
        dt = t_prev - t_mid
        wedge = hw_prev + (ha - hp) / 4                          # body wedging eats anterior space
        d = max(d, dt * b - wedge + 1.6, -dt * b + wedge + 1.6)     # both disc ends open
        c = c + up(theta(s + d / 2)) * d
        centre = c + up(t_mid) * hc / 2
        c = centre + up(t_mid) * hc / 2
        s += d + hc
        vert.append(dict(name=n, c=centre, theta=t_mid, s=s - hc / 2, a=a, b=b, ha=ha, hp=hp,
                         disc_below=d, deg=D))
        t_prev, hw_prev = t_mid, (ha - hp) / 4
    vert = vert[::-1]                                          # top (T11) first
    # scoliosis: coronal offset, tilt and axial rotation toward the convexity
    stop = max(v["s"] for v in vert)
    for v in vert:
        ph = math.pi * (v["s"] / (stop * 1.05)) + P["scol_phase"]
        xo = P["scol"] * math.sin(min(math.pi, max(0.0, ph)))
        dx = P["scol"] * math.cos(ph) * math.pi / (stop * 1.05) if 0 < ph < math.pi else 0.0
        v["c"][0] += xo
        beta, gam = math.atan(dx), math.radians(0.6 * xo + rng.normal(0, 1.0))
        t = v["theta"]
        v["R"] = rot(0, t) @ rot(1, beta) @ rot(2, gam)       # columns: left, posterior, up
    # recentre on L3
    o = next(v["c"] for v in vert if v["name"] == "L3").copy()
    for v in vert:
        v["c"] = v["c"] - o
    hs1 = 28 * sf
    Rs1 = rot(0, SS)
    s1 = dict(name="S1", top=-o, R=Rs1, c=-o - Rs1[:, 2] * hs1 / 2, a=25 * sf, b=17 * sf, ha=hs1, hp=hs1 - 3)
    return vert, s1


# ==== Bone point clouds
def trabecular_texture(rng, tp, vs, n=(80, 80, 64)):
    """3-D band-pass noise: vertical struts + horizontal plates (weight tp['horiz']),
    soft-thresholded at bone-volume fraction tp['bvf']; returned normalised to mean 1."""
    kx, ky = np.fft.fftfreq(n[0], vs), np.fft.fftfreq(n[1], vs)
    kz = np.fft.rfftfreq(n[2], vs)
    KX, KY, KZ = np.meshgrid(kx, ky, kz, indexing="ij")
    kr = np.hypot(KX, KY)
    f0 = 1.0 / tp["spacing"]
    bw = 0.4 * f0

    def field(H):
        f = np.fft.irfftn(np.fft.rfftn(rng.standard_normal(n).astype(np.float32)) * H, s=n, axes=(0, 1, 2))
        return f / f.std()
    band = lambda k: np.exp(-((np.abs(k) - f0) / bw) ** 2)
    low = lambda k, L: np.exp(-(k * L) ** 2)
    # vertical plates (normals along x or y: seen edge-on in AP resp. LAT), horizontal
    # plates (fade at low T) and a little isotropic foam
    F = (field(band(KX) * low(KY, 4.0) * low(KZ, 6.0)) + field(band(KY) * low(KX, 4.0) * low(KZ, 6.0))
         + tp["horiz"] * field(band(KZ) * low(kr, 4.0))
         + 0.3 * field(band(np.sqrt(kr ** 2 + KZ ** 2))))
    thr = np.partition(F.ravel(), int((1 - tp["bvf"]) * F.size))[int((1 - tp["bvf"]) * F.size)]
    m = 1 / (1 + np.exp(-(F - thr) / 0.2))
    return (m / m.mean()).astype(np.float32)


def outline_lut(rng, a, b, conc):
    """axial body outline: periodic cubic spline through 12 polar control radii"""
    ang = np.linspace(-np.pi, np.pi, 13)[:-1]
    r = 1 / ((np.abs(np.cos(ang)) / a) ** 2.6 + (np.abs(np.sin(ang)) / b) ** 2.6) ** (1 / 2.6)
    r *= rng.normal(1, 0.02, 12)
    r[9] *= 1 - conc                                  # +90 deg = posterior wall concavity
    cs = CubicSpline(np.append(ang, np.pi), np.append(r, r[0]), bc_type="periodic")
    ph = np.linspace(-np.pi, np.pi, 721)
    return ph, cs(ph)


def tube(ctrl, r1, r2, ref, step):
    """swept elliptical tube: centre line through ctrl, half-axes r1 (along the
    projection of ref) and r2 interpolated along it.  Returns points, normalised
    radius rho, local min radius and cell volume."""
    C = catmull(ctrl, step)
    seg = np.r_[0, np.cumsum(np.linalg.norm(np.diff(C, axis=0), axis=1))]
    f = seg / max(seg[-1], 1e-6)
    kk = np.linspace(0, 1, len(r1))
    a1, a2 = np.interp(f, kk, r1), np.interp(f, kk, r2)
    _, n1, n2 = frames(C, ref)
    m1, m2 = int(math.ceil(max(r1) / step)), int(math.ceil(max(r2) / step))
    U, W = np.meshgrid(np.linspace(-1, 1, 2 * m1 + 1), np.linspace(-1, 1, 2 * m2 + 1), indexing="ij")
    keep = U ** 2 + W ** 2 <= 1.0
    U, W = U[keep], W[keep]
    pts = (C[:, None, :] + (U[None, :, None] * a1[:, None, None]) * n1[:, None, :]
           + (W[None, :, None] * a2[:, None, None]) * n2[:, None, :]).reshape(-1, 3)
    rho = np.broadcast_to(np.sqrt(U ** 2 + W ** 2)[None, :], (len(C), len(U))).ravel()
    rmin = np.broadcast_to(np.minimum(a1, a2)[:, None], (len(C), len(U))).ravel()
    ds = np.gradient(seg)
    dV = (ds * a1 * a2 / (m1 * m2))[:, None] * np.ones(len(U))
    return pts, rho, rmin, dV.ravel()


class Grid:
    """local voxel grid used to max-union the parts of one bone"""

    def __init__(self, lo, hi, vs):
        self.lo, self.vs = np.asarray(lo, float), vs
        self.shape = tuple(int(math.ceil((h - l) / vs)) + 1 for l, h in zip(lo, hi))
        self.ha = np.zeros(self.shape, np.float32)
        self.mf = np.zeros(self.shape, np.float32)

    def stamp(self, pts, ha, mf):
        idx = np.rint((pts - self.lo) / self.vs).astype(np.int64)
        ok = np.all((idx >= 0) & (idx < np.array(self.shape)), axis=1)
        flat = np.ravel_multi_index(idx[ok].T, self.shape)
        np.maximum.at(self.ha.ravel(), flat, ha[ok].astype(np.float32))
        np.maximum.at(self.mf.ravel(), flat, np.broadcast_to(mf, ha.shape)[ok].astype(np.float32))

    def accumulate(self, pts, mass, mf):
        """mass-conserving (nearest voxel) deposit of mass (g/cm3 * mm3); constant marrow fat"""
        idx = np.rint((pts - self.lo) / self.vs).astype(np.int64)
        flat = (idx[:, 0] * self.shape[1] + idx[:, 1]) * self.shape[2] + idx[:, 2]
        self.ha = (np.bincount(flat, mass, self.ha.size) / self.vs ** 3).reshape(self.shape).astype(np.float32)
        self.mf = None
        self.mf_const = mf

    def emit(self, cloud, c, R, rng):
        nz = np.flatnonzero(self.ha > 0.004)
        idx = np.stack(np.unravel_index(nz, self.shape), 1)
        loc = self.lo + (idx + rng.uniform(-0.5, 0.5, idx.shape)) * self.vs
        mf = self.mf.ravel()[nz] if self.mf is not None else self.mf_const
        cloud.add(loc @ R.T + c, self.vs ** 3, self.ha.ravel()[nz], mf)


def body_into(G, V, P, tex, toff, frac=None):
    """evaluate the implicit vertebral body on its sub-box of grid G"""
    a, b, vs = V["a"], V["b"], G.vs
    hA, hP = V["ha"] / 2, V["hp"] / 2
    O_t, O_b = V["ost"]
    ex, hz = a * 1.12 + O_t + O_b + 1, max(hA, hP) + 0.6 * max(O_t, O_b) + 1.5
    lo, hi = np.array([-ex, -b - O_t - O_b - 1, -hz]), np.array([ex, b + 1.5, hz])
    i0 = np.maximum(np.floor((lo - G.lo) / vs).astype(int), 0)
    i1 = np.minimum(np.ceil((hi - G.lo) / vs).astype(int) + 1, G.shape)
    ax = [G.lo[k] + np.arange(i0[k], i1[k]) * vs for k in range(3)]
    X, Y, Z = np.meshgrid(*[x.astype(np.float32) for x in ax], indexing="ij")
    rho = np.hypot(X, Y)
    phi = np.arctan2(Y, X)
    r0 = np.interp(phi, *V["lut"]).astype(np.float32)
    sphi = Y / np.maximum(rho, 1e-3)
    hh = 0.5 * (hA + hP) + 0.5 * (hP - hA) * np.clip(Y / b, -1, 1)
    zeta2 = np.minimum((Z / hh) ** 2, 1.0)
    dz0 = hh - np.abs(Z)
    scale = 1 - V["waist"] * (0.6 - 0.4 * sphi) * (1 - zeta2) + 0.025 * np.exp(-(np.maximum(dz0, 0) / 1.2) ** 2)
    r_out = r0 * scale
    O = np.where(Z > 0, O_t, O_b) * np.clip(0.6 - 0.8 * sphi, 0, 1.4) * (0.7 + 0.3 * np.cos(3 * phi + V["oph"]))
    r_eff = r_out + O * np.exp(-np.maximum(dz0, 0) / 2.0)
    rn = np.minimum(rho / r_out, 1.0)
    cav = V["cav"] + (frac[1] * hh * 0.9 if frac and frac[0] == "biconcave" else 0.0)
    zlim = hh - cav * (1 - rn ** 2) + 0.5 * O * np.clip((rho - 0.9 * r_out) / (0.1 * r_out + O + 1e-3), 0, 1)
    d_r, d_z = r_eff - rho, zlim - np.abs(Z)
    inside = (d_r > 0) & (d_z > 0)
    tc = np.where(d_z < d_r, P["tc"] * 1.2, P["tc"])
    wc = np.clip((tc - np.minimum(d_r, d_z)) / vs + 0.5, 0, 1)
    ix = [(np.arange(i0[k], i1[k]) + toff[k]) % tex.shape[k] for k in range(3)]
    tx = tex[np.ix_(*ix)]
    scl = np.where(Z > 0, V["scl"][0], V["scl"][1])
    trab = P["vbmd"] * (0.25 + 0.75 * tx) + scl * np.exp(-np.maximum(d_z, 0) / 3.5)
    if frac:
        trab = trab + P["vbmd"] * 0.9 * np.exp(-np.maximum(d_z, 0) / 4.0)   # compacted bone
    ha = np.where(inside, wc * P["rho_c"] + (1 - wc) * trab, 0).astype(np.float32)
    mf = np.where(inside, (1 - wc) * P["mfat"] * 0.85, 0).astype(np.float32)
    sl = tuple(slice(i0[k], i1[k]) for k in range(3))
    np.maximum(G.ha[sl], ha, out=G.ha[sl])
    np.maximum(G.mf[sl], mf, out=G.mf[sl])


def tube_into(G, ctrl, r1, r2, ref, P, tex, toff, tcp=None):
    """rasterise a posterior-element tube (cortical shell + cancellous core) into G"""
    pts, rho, rmin, _ = tube(ctrl, r1, r2, ref, G.vs * 0.75)
    d = (1 - rho) * rmin
    tcp = P["tc"] * 0.7 + 0.3 if tcp is None else tcp
    wc = np.clip((tcp - d) / G.vs + 0.5, 0, 1)
    idx = np.rint((pts - G.lo) / G.vs).astype(np.int64)
    tx = tex[tuple((idx[:, k] + toff[k]) % tex.shape[k] for k in range(3))]
    trab = (P["vbmd"] * 1.15 + 0.03) * (0.4 + 0.6 * tx)
    G.stamp(pts, wc * P["rho_c"] + (1 - wc) * trab, (1 - wc) * P["mfat"] * 0.8)


def vertebra_cloud(V, P, tex, rng, cloud, vs, above_deg, below_deg):
    n, a, b = V["name"], V["a"], V["b"]
    hh = (V["ha"] + V["hp"]) / 4
    sfv = P["sf"]
    V["lut"] = outline_lut(rng, a, b, rng.uniform(0.08, 0.16))
    V["waist"], V["cav"], V["oph"] = rng.uniform(0.05, 0.1), rng.uniform(0.8, 1.8), rng.uniform(0, 6.3)
    ost = lambda D: 8.0 * sfv * max(0.0, D - 0.3) ** 1.2 * rng.uniform(0.3, 1.2)
    V["ost"] = (ost(above_deg), ost(below_deg))
    V["scl"] = (0.35 * above_deg ** 2 * rng.uniform(0.3, 1.0), 0.35 * below_deg ** 2 * rng.uniform(0.3, 1.0))
    reach = a + TP_REACH[n] * sfv * rng.normal(1, 0.08)
    if n == "L5" and P["sacralised"]:
        reach = a + 44 * sfv
    G = Grid([-reach - 12, -b - sum(V["ost"]) - 3, -hh - 18], [reach + 12, b + 75 * sfv, hh + 20], vs)
    toff = rng.integers(0, 80, 3)
    body_into(G, V, P, tex, toff, P["fract"].get(n))
    zp, fh = 0.15 * hh, 1 + 0.4 * max(above_deg, below_deg)        # facet hypertrophy
    pw = dict(T9=3.2, T10=3.3, T11=3.5, T12=3.8, L1=4.0, L2=4.3, L3=4.8, L4=5.6, L5=7.5, L6=7.0)[n] * sfv
    sp = sfv * rng.normal(1, 0.08)
    for sx in (-1, 1):
        pa = np.array([sx * 0.58 * a, b + 14 * sfv, zp])
        tube_into(G, [[sx * 0.5 * a, 0.85 * b, zp], [sx * 0.55 * a, b + 6 * sfv, zp], pa],
                  [7 * sfv, 7.5 * sfv, 7 * sfv], [pw, pw * 0.9, pw], [0, 0, 1], P, tex, toff)      # pedicle
        tube_into(G, [pa, [sx * 0.38 * a, b + 22 * sfv, zp - 6], [sx * 0.08 * a, b + 27 * sfv, zp - 9]],
                  [9 * sfv, 10 * sfv, 10 * sfv], [3.2, 2.9, 3.2], [0, 0, 1], P, tex, toff)         # lamina
        tp_r1 = 13 * sfv if (n == "L5" and P["sacralised"]) else (8 if n in ("L5", "L6") else 5.5) * sfv
        tube_into(G, [pa - [0, 2, 0], [sx * (a + 10), b + 9 * sfv, zp + 1], [sx * reach, b + 4 * sfv, zp + 2]],
                  [tp_r1 * 1.1, tp_r1, tp_r1 * 0.8], [4.5, 3.8, 3.5], [0, 0, 1], P, tex, toff, 0.01)  # transverse
        tube_into(G, [pa + [0, 1, 2], [sx * 0.72 * a, b + 18 * sfv, hh + 3], [sx * 0.74 * a, b + 21 * sfv, hh + 9]],
                  [4 * fh, 4 * fh, 3.2], [7 * fh, 7, 5.5], [1, 0, 0], P, tex, toff)                # sup. artic.
        tube_into(G, [[sx * 0.3 * a, b + 24 * sfv, zp - 8], [sx * 0.5 * a, b + 26 * sfv, -hh - 2],
                      [sx * 0.52 * a, b + 27 * sfv, -hh - 8]],
                  [4 * fh, 4 * fh, 3.0], [6 * fh, 6, 4.5], [1, 0, 0], P, tex, toff)                # inf. artic.
    tube_into(G, [[0, b + 25 * sfv, zp - 9], [0, b + 42 * sp, zp - 13], [0, b + 58 * sp, zp - 16 - 6 * (n[0] == "T")]],
              [10 * sfv, 12 * sfv, 9 * sfv], [3.0, 3.3, 4.2], [0, 0, 1], P, tex, toff, tcp=0.6 * P["tc"])  # spinous
    G.emit(cloud, V["c"], V["R"], rng)


def sacrum_cloud(S1, P, tex, rng, cloud, vs):
    """S1 body + curved swept plate (alae, S2-S5, foramina) in the S1 frame"""
    sf, a, b = P["sf"], S1["a"], S1["b"]
    hh = S1["ha"] / 2
    L, kap = 100 * sf * rng.normal(1, 0.05), math.radians(rng.uniform(0.4, 0.7))
    W0 = 50 * sf * (1.06 if P["sex"] == "F" else 1.0)
    G = Grid([-W0 - 4, -(1 - math.cos(kap * L)) / kap - 25, -L - 8], [W0 + 4, b + 30, hh + 22], vs)
    S1.update(lut=outline_lut(rng, a, b, 0.1), waist=0.04, cav=1.2, oph=0.0,
              ost=(8 * sf * max(0.0, P["deg"][("L6" if P["lumbarised"] else "L5")] - 0.3) ** 1.2, 0.0),
              scl=(0.3 * P["deg"]["L5"] ** 2, 0.0))
    toff = rng.integers(0, 80, 3)
    body_into(G, S1, P, tex, toff)
    # plate bent (concave anteriorly) about a circular arc in the y-z plane: analytic inverse
    oy, oz = 2 - 1 / kap, hh - 6
    ax = [G.lo[k] + np.arange(G.shape[k]) * vs for k in range(3)]
    X, Y, Z = np.meshgrid(*[a_.astype(np.float32) for a_ in ax], indexing="ij")
    wy, wz = Y - oy, Z - oz
    sv = np.arctan2(-wz, wy) / kap                           # arc length along the plate
    tt = np.hypot(wy, wz) - 1 / kap                          # offset along the plate normal
    Ws = W0 * (1 - 0.78 * np.clip(sv / L, 0, 1) ** 1.2)
    xi = np.clip(X / Ws, -1, 1)
    th = 16 * sf * (1 - 0.6 * sv / L) * (0.42 + 0.58 * np.exp(-(xi / 0.32) ** 2)) * np.sqrt(1 - xi ** 8)
    d = np.minimum(np.minimum(th - np.abs(tt), Ws - np.abs(X)), np.minimum(sv, L - sv))
    hole = np.ones_like(d)
    for sk, rk in zip((0.2, 0.37, 0.53, 0.68), (4.5, 4.0, 3.5, 3.0)):     # sacral foramina (partial)
        xk = 0.36 * W0 * (1 - 0.78 * sk ** 1.2)
        hole = np.minimum(hole, 0.5 + 0.5 * smoothstep(np.sqrt((np.abs(X) - xk) ** 2 + (sv - sk * L) ** 2) - rk * sf))
    wc = np.clip((P["tc"] * 1.2 - d) / vs + 0.5, 0, 1) * hole
    tx = tex[np.ix_(*[(np.arange(G.shape[k]) + toff[k]) % tex.shape[k] for k in range(3)])]
    ha = np.where(d > 0, (wc * P["rho_c"] + (1 - wc) * P["vbmd"] * 0.85 * (0.35 + 0.65 * tx)) * hole, 0)
    np.maximum(G.ha, ha.astype(np.float32), out=G.ha)
    np.maximum(G.mf, np.where(d > 0, (1 - wc) * P["mfat"] * 0.85, 0).astype(np.float32), out=G.mf)
    for sx in (-1, 1):                                                  # S1 superior articular processes
        tube_into(G, [[sx * 0.6 * a, b + 8, hh - 6], [sx * 0.72 * a, b + 14, hh + 3], [sx * 0.74 * a, b + 17, hh + 10]],
                  [4.5, 4.5, 3.2], [7, 7, 5], [1, 0, 0], P, tex, toff)
    G.emit(cloud, S1["c"], S1["R"], rng)


def ilium_cloud(S1, P, rng, cloud, step=0.7, vox=0.8):
    """iliac wings as thick parametric sheets (crest rim, thick posterior and
    acetabular parts, arcuate line) attached to the pelvis frame"""
    pf = np.array([1.08 if P["sex"] == "F" else 1.0, 1, 1]) * P["sf"] * rng.normal(1, 0.04)
    Rp = rot(0, P["SS"] - math.radians(40)) @ rot(1, rng.normal(0, 0.02))
    crest = np.array([(40, 58, -22), (62, 48, 14), (92, 28, 40), (115, 0, 44), (125, -35, 22), (118, -68, -18)], float)
    base = np.array([(48, 28, -55), (62, 22, -78), (80, 5, -95), (95, -25, -100), (103, -48, -85), (108, -62, -62)],
                    float)
    crest[:, 2] += rng.normal(0, 6)
    nu, nv = int(130 / step), int(220 / step)
    u = (np.arange(nu) + 0.5) / nu
    vv = np.linspace(0, 1, len(crest))
    for sx in (-1, 1):
        v = (np.arange(nv) + rng.uniform(0, 1, nv)) / nv
        C = np.stack([np.interp(v, vv, crest[:, k]) for k in range(3)], 1)
        B = np.stack([np.interp(v, vv, base[:, k]) for k in range(3)], 1)
        U, V = np.meshgrid(u, v, indexing="ij")
        Pt = B[None] * (1 - U[..., None]) + C[None] * U[..., None]
        Pt[..., 0] += 10 * np.sin(np.pi * U) * np.sin(np.pi * V)          # wing flare
        Pt *= pf
        du, dv = np.gradient(Pt, axis=0), np.gradient(Pt, axis=1)
        nrm = np.cross(du, dv)
        dA = np.linalg.norm(nrm, axis=-1)
        nrm /= dA[..., None] + 1e-9
        t = (2.2 + 9 * np.exp(-(1 - U) / 0.05) + 14 * np.exp(-U / 0.22) * (0.4 + 0.6 * V)
             + 12 * np.exp(-V / 0.1) * (1 - 0.3 * U) + 5 * np.exp(-((U - 0.15) / 0.06) ** 2))
        nl = np.ceil(t / step).astype(int)
        pts, ha = [], []
        for k in range(nl.max()):                     # layers through the thickness
            sel = k < nl
            off = ((k + 0.5) / nl[sel] - 0.5) * t[sel]
            pts.append(Pt[sel] + off[:, None] * nrm[sel])
            cort = np.abs(off) > t[sel] / 2 - 0.9        # two cortical plates, cancellous between
            ha.append(np.where(cort, P["rho_c"], 1.6 * P["vbmd"]) * (t[sel] / nl[sel]) * dA[sel])
        pts, ha = np.concatenate(pts), np.concatenate(ha)
        pts[:, 0] *= sx
        G = Grid(pts.min(0) - 1, pts.max(0) + 1, vox)
        G.accumulate(pts, ha, 0.3 * P["mfat"])
        G.emit(cloud, S1["top"], Rp, rng)


def rib_cloud(V, P, T, rng, cloud, length, drop, step=0.7):
    """one pair of ribs: from the costovertebral joint round the inner trunk wall
    (an ellipse inside the fat/muscle layer), descending by `drop` over `length`"""
    a, b, c = V["a"], V["b"], V["c"]
    ax, ay = T["A0"] * 1.05 - 0.8 * P["fat_sc"] - 14, P["D0"] / 2 - 0.7 * P["fat_sc"] - 14
    yc = T["y_ps"] - P["D0"] / 2
    for sx in (-1, 1):
        L = length * rng.normal(1, 0.06)
        p0 = c + V["R"] @ np.array([sx * (a + 3), 0.8 * b, 1.0])
        p1 = np.array([c[0] + sx * (a + 28), T["y_ps"] - 0.5 * P["fat_sc"] - 42, p0[2] - 4])
        ph1 = math.atan2((p1[1] - yc) / ay, abs(p1[0] - c[0]) / ax)
        phs = ph1 - np.linspace(0, 1, 8) * L / (0.5 * (ax + ay))
        ctrl = [p0, p1] + [np.array([c[0] + sx * ax * math.cos(q), yc + ay * math.sin(q),
                                     p1[2] - drop * ((ph1 - q) / (ph1 - phs[-1])) ** 1.2]) for q in phs[1:]]
        pts, rho, rmin, dV = tube(ctrl, [5.5, 6, 5.5, 5, 4], [3.5, 3, 2.6, 2.2, 1.8], [0, 0, 1.0], step)
        wc = np.clip((P["tc"] * 0.7 + 0.2 - (1 - rho) * rmin) / step + 0.5, 0, 1)
        cloud.add(pts, dV, wc * P["rho_c"] + (1 - wc) * P["vbmd"] * 0.7, (1 - wc) * P["mfat"])


def aorta_cloud(vert, P, rng, cloud):
    """calcified plaques on the abdominal aorta / iliac walls (age driven)"""
    n = rng.poisson(14 * P["aorta_calc"])
    if n == 0:
        return
    ao = catmull([v["c"] + v["R"] @ np.array([16, -(v["b"] + 15), 0]) for v in vert
                  if v["name"] in ("T11", "T12", "L1", "L2", "L3", "L4")], 1.0)      # left-anterior of bodies
    l5 = next(v for v in vert if v["name"] == "L5")
    bif, n_ao = ao[-1], len(ao)
    for sx in (-1, 1):
        il = catmull([bif, bif + [sx * 20, -5, -30], l5["c"] + [sx * 45, -20, -45]], 1.0)
        ao = np.vstack([ao, il[1:]])
    for _ in range(n):
        k = rng.integers(0, len(ao) - 12)
        ln = int(rng.uniform(4, 18))
        C = ao[k:k + ln]
        _, n1, n2 = frames(C, [1.0, 0, 0])
        ph0, span = rng.uniform(0, 2 * np.pi), rng.uniform(0.4, 2.0)
        ph = ph0 + np.arange(0, span, 0.05)
        r = 10.0 if k < n_ao else 5.5
        p = C[:, None, :] + r * (np.cos(ph)[:, None] * n1[:, None, :] + np.sin(ph)[:, None] * n2[:, None, :])
        p = p.reshape(-1, 3) + rng.uniform(-0.5, 0.5, (p.size // 3, 3))
        cloud.add(p, 0.05 * r * rng.uniform(0.5, 1.3), 1.0)


def noise_volume(rng, n=48, corr=2.0):
    f = ndimage.gaussian_filter(rng.standard_normal((n, n, n)).astype(np.float32), corr, mode="wrap")
    return f / f.std()


def bowel_cloud(vert, S1, P, trunk, rng, cloud, step=2.0):
    """colon (gas segments, bubbly stool, collapsed parts), small-bowel gas, stomach
    bubble, vacuum-disc gas.  Gas fraction per sample replaces soft tissue."""
    g = P["gas"]
    A, yaw = trunk["A0"], trunk["y_aw"]
    z = {v["name"]: v["c"][2] for v in vert}
    zs = S1["top"][2]
    ctrl = [(-0.52 * A, -25, z["L5"] - 45), (-0.55 * A, -20, z["L4"]), (-0.57 * A, -15, z["L2"]),
            (-0.5 * A, -30, z["L1"]),
            (-0.25 * A, yaw + 30, z["L2"]), (0, yaw + 25, z["L3"] - 15), (0.25 * A, yaw + 30, z["L2"]),
            (0.55 * A, -10, z["T12"]), (0.6 * A, 0, z["L2"]), (0.58 * A, 0, z["L4"]), (0.5 * A, -15, z["L5"] - 20),
            (0.25 * A, -35, zs - 20), (0, -20, zs - 35), (0, 35, zs - 60), (0, 40, zs - 110)]
    ctrl = np.array(ctrl) + rng.normal(0, 8, (len(ctrl), 3))
    rad = np.array([28, 24, 22, 22, 21, 21, 21, 20, 18, 18, 17, 16, 16, 20, 20]) * rng.uniform(0.75, 1.05)
    C = catmull(ctrl, step)
    s = np.linspace(0, 1, len(C))
    r = np.interp(s, np.linspace(0, 1, len(rad)), rad)
    # content: smooth random "gas level" along the colon; gas lumen where it is high
    # (radius tapers -> rounded gas ends), bubbly stool where it is middling
    gl = ndimage.gaussian_filter1d(rng.standard_normal(len(C)), 25 / step, mode="nearest")
    gl /= gl.std() + 1e-9
    thr = 1.3 - 1.4 * g
    r = r * (1 + 0.12 * np.cos(2 * np.pi * np.arange(len(C)) * step / 28))
    rg = 0.7 * r * np.sqrt(np.clip((gl - thr) / 0.8, 0, 1))
    stool = gl > thr - 0.9
    nv = noise_volume(rng)
    _, n1, n2 = frames(C, [0.3, 0.2, 0.9])
    m = int(max(rad) / step) + 1
    U, W = np.meshgrid(np.arange(-m, m + 1) * step, np.arange(-m, m + 1) * step, indexing="ij")
    U, W = U.ravel(), W.ravel()
    for k in np.flatnonzero(stool | (rg > 0)):
        rr = np.sqrt(U ** 2 + W ** 2)
        inside = rr < (r[k] if stool[k] else rg[k])
        p = C[k] + U[inside, None] * n1[k] + W[inside, None] * n2[k] + rng.uniform(-1, 1, (inside.sum(), 3))
        iq = np.rint(p / 2.5).astype(int) % 48
        bub = np.clip(nv[iq[:, 0], iq[:, 1], iq[:, 2]] - 0.5, 0, 0.8) * stool[k]
        cloud.add(p, step ** 3, 0.0, 0.0, np.where(rr[inside] < rg[k], 0.9, bub))
    # small-bowel loops and the stomach bubble
    blobs = [((0.35 * A, yaw + 50, z["T11"] + 15), (40, 25, 22))] if rng.random() < 0.5 else []
    for _ in range(rng.poisson(4 * g)):
        blobs.append(((rng.uniform(-0.4, 0.4) * A, rng.uniform(yaw + 20, -20), rng.uniform(z["L5"] - 20, z["L1"])),
                      tuple(rng.uniform(6, 15, 3))))
    for c, rr in blobs:
        ax = [np.arange(-q, q + step, step) for q in rr]
        X, Y, Z = np.meshgrid(*ax, indexing="ij")
        ins = (X / rr[0]) ** 2 + (Y / rr[1]) ** 2 + (Z / rr[2]) ** 2 < 1
        q = np.stack([X[ins], Y[ins], Z[ins]], 1) + c + rng.uniform(-1, 1, (ins.sum(), 3))
        cloud.add(q, step ** 3, 0.0, 0.0, 0.9)
    # vacuum phenomenon in badly degenerated discs
    for v in vert:
        if v["deg"] > 0.75 and rng.random() < 0.2:
            X, Y = np.meshgrid(np.arange(-v["a"], v["a"], 0.7), np.arange(-v["b"], v["b"], 0.7), indexing="ij")
            ins = (X / (0.45 * v["a"])) ** 2 + ((Y + 0.3 * v["b"]) / (0.35 * v["b"])) ** 2 < 1
            q = np.stack([X[ins], Y[ins], np.full(ins.sum(), -(v["ha"] + v["hp"]) / 4 - v["disc_below"] / 2)], 1)
            cloud.add(q @ v["R"].T + v["c"], 0.7 * 0.7 * 0.6, 0.0, 0.0, 0.9)


# ==== Soft tissue: extruded polar polygons and ellipses, exact 2-D chords
def trunk_model(P, vert, S1, rng):
    vs = sorted(vert + [S1], key=lambda v: v["c"][2])
    T = dict(A0=P["A0"], D0=P["D0"], zsp=np.array([v["c"][2] for v in vs]),
             xsp=np.array([v["c"][0] for v in vs]), ysp=np.array([v["c"][1] for v in vs]),
             asp=np.array([v["a"] for v in vs]))
    z = {v["name"]: v["c"][2] for v in vert}
    b3 = next(v["b"] for v in vert if v["name"] == "L3")
    T["y_ps"] = b3 + 62 * P["sf"] + 0.55 * P["fat_sc"] + 8 * P["muscle"]
    T["y_aw"] = T["y_ps"] - P["D0"] + P["fat_sc"]
    T["z_crest"] = (z["L4"] + z["L5"]) / 2 + rng.normal(0, 8)
    T["zT12"], T["zL4"], T["zL1"] = z["T12"], z["L4"], z["L1"]
    T["recess"] = [z["L1"] + rng.normal(5, 10) + (8 if sx < 0 else 0) for sx in (-1, 1)]
    T["kid"] = [(sx * 68 * P["sf"], z["L1"] - (15 if sx < 0 else 0) + rng.normal(0, 8)) for sx in (-1, 1)]
    return T


def sections(T, P, z):
    """cross-section geometry at heights z (K,): skin/wall polygons (K,M,2) and
    ellipses (material, weight, cx, cy, ra, rb) with (K,) arrays"""
    A0, D0, fa = T["A0"], T["D0"], P["fat_sc"]
    A = A0 * (1 + 0.06 * smoothstep((z - 50) / 120)) + A0 * P["hip"] * smoothstep((T["z_crest"] + 10 - z) / 90)
    D = D0 * (1 - 0.07 * smoothstep((z - 30) / 130)) + D0 * 0.08 * smoothstep((T["z_crest"] - z) / 100)
    yc = T["y_ps"] - D / 2
    ph = np.linspace(-np.pi, np.pi, 65)[:-1]
    c, s = np.cos(ph), np.sin(ph)
    n = np.where(s < 0, 2.2, 2.9)
    r = 1 / ((np.abs(c) / A[:, None]) ** n + (np.abs(s) / (D[:, None] / 2)) ** n) ** (1 / n)
    fl = (0.95 if P["sex"] == "F" else 0.8) * fa
    fs = fl + (fa - fl) * np.maximum(0, -s) + (0.5 * fa - fl) * np.maximum(0, s)
    rw = np.maximum(r - fs, 0.4 * r)
    poly = lambda rr: np.stack([rr * c, yc[:, None] + rr * s], -1)
    xs, ys, asp = (np.interp(z, T["zsp"], T[k]) for k in ("xsp", "ysp", "asp"))
    one = np.ones_like(z)
    ell = []
    # visceral fat region between anterior wall and spine
    yw = T["y_ps"] - D + fa
    ell.append(("fat", P["fat_visc"], 0 * z, (yw - asp * 0.7) / 2, np.maximum(A - fl - 20, 5) * 0.85,
                np.maximum(-(yw + asp * 0.7) / 2, 5)))
    # psoas in retroperitoneal fat
    grow = smoothstep((T["zT12"] - z) / max(T["zT12"] - T["zL4"], 1))
    pel = np.maximum(0, T["z_crest"] - z)
    ra, rb = 22 * P["muscle"] * P["sf"] * grow + 0.1, 18 * P["muscle"] * P["sf"] * grow + 0.1
    mr = 3 + 0.5 * max(0, P["bmi"] - 20)
    for sx in (-1, 1):
        cx, cy = xs + sx * (asp + 0.85 * ra + 0.4 * pel), ys + 5 - 0.5 * pel
        ell += [("fat", 1.0, cx, cy, ra + mr, rb + mr), ("fat", -1.0, cx, cy, ra, rb)]
    # kidneys in perirenal fat (tilted: upper poles medial)
    pm = 6 + 0.8 * max(0, P["bmi"] - 20)
    for (kx, kz) in T["kid"]:
        q = np.sqrt(np.clip(1 - ((z - kz) / 55) ** 2, 0, 1))
        cx = kx - np.sign(kx) * 0.2 * (z - kz)
        cy = ys + 22
        qp = np.sqrt(np.clip(1 - ((z - kz) / (55 + pm)) ** 2, 0, 1))
        ell += [("fat", 1.0, cx, cy, (27 + pm) * qp, (22 + pm) * qp), ("fat", -1.0, cx, cy, 27 * q, 22 * q)]
    # posterior lung recesses above a domed diaphragm
    for sx, zr in zip((-1, 1), T["recess"]):
        above = smoothstep((z - zr) / 12)
        sdome = np.sqrt(np.clip((zr + 90 - z) / 90, 0, 1))
        grow = 0.55 + 0.45 * smoothstep((z - zr) / 110)
        cx, cy = sx * (0.93 - 0.38 * grow) * A, T["y_ps"] - fa * 0.5 - 0.36 * D
        ra, rb = 0.38 * A * above * grow, 0.28 * D * above
        ell += [("lung", 0.65, cx, cy, ra, rb),              # dome offset medially: deep lateral recess
                ("lung", -0.65, cx - sx * 0.1 * ra * sdome, cy, ra * sdome * 0.9, rb * sdome * 0.95)]
    return poly(r), poly(rw), [(m, w, cx * one, cy * one, ra * one, rb * one) for m, w, cx, cy, ra, rb in ell]


def poly_chord(Vx, p0, d):
    """chord length of lines p0 + t d (d: (U,2) unit) through polygons Vx (K,M,2) -> (K,U)"""
    A = Vx[..., None, :] - p0                             # (K,M,1,2)
    B = np.roll(Vx, -1, axis=1)[..., None, :] - p0
    sa = d[:, 0] * A[..., 1] - d[:, 1] * A[..., 0]        # (K,M,U)
    sb = d[:, 0] * B[..., 1] - d[:, 1] * B[..., 0]
    ta, tb = A[..., 0] * d[:, 0] + A[..., 1] * d[:, 1], B[..., 0] * d[:, 0] + B[..., 1] * d[:, 1]
    cr = (sa * sb) < 0
    t = ta + (tb - ta) * sa / np.where(cr, sa - sb, 1.0)
    return np.abs((np.where(cr, np.sign(sb - sa) * t, 0.0)).sum(1))


def ellipse_chord(p0, d, cx, cy, ra, rb):
    """chord of lines through axis-aligned ellipses; cx.. (K,), d (U,2) -> (K,U)"""
    ra, rb = np.maximum(ra, 1e-3)[:, None], np.maximum(rb, 1e-3)[:, None]
    qx, qy = (p0[0] - cx)[:, None] / ra, (p0[1] - cy)[:, None] / rb
    ex, ey = d[:, 0] / ra, d[:, 1] / rb
    e2, qe = ex * ex + ey * ey, qx * ex + qy * ey
    disc = qe * qe - e2 * (qx * qx + qy * qy - 1)
    return 2 * np.sqrt(np.maximum(disc, 0)) / e2


# ==== Views: divergent geometry, projection, physics
class View:
    def __init__(self, kind, vendor, P, T, vert, rng):
        self.kind = kind
        self.dw, self.dh = vendor["det"]
        self.pix = vendor["pix"]
        self.nc_full, self.nr_full = int(round(self.dw / self.pix)), int(round(self.dh / self.pix))
        self.nc, self.nr = int(round(self.dw / 0.65)), int(round(self.dh / 0.65))
        self.p = self.dw / self.nc
        l3 = next(v for v in vert if v["name"] == "L3")["c"]
        if kind == "AP":
            self.SID = float(rng.choice([1000.0, 1100.0, 1150.0]))
            self.kvp = float(rng.integers(70, 78) + round(12 * np.clip((P["D0"] - 190) / 150, 0, 1)))
            gap = rng.uniform(55, 80)
            self.S = np.array([l3[0] + rng.normal(0, 6), T["y_ps"] + gap - self.SID, l3[2] + rng.normal(-5, 12)])
            eb, eu = np.array([0, 1.0, 0]), np.array([1.0, 0, 0])
            roll = math.radians(rng.normal(0, 2.5))
        else:
            self.SID = float(rng.choice([1000.0, 1100.0, 1150.0, 1200.0]))
            self.kvp = float(min(100, rng.integers(85, 92) + round(12 * np.clip((P["A0"] - 140) / 90, 0, 1))))
            xmax = T["A0"] * (1.08 + P["hip"])
            gap = rng.uniform(50, 75)
            self.S = np.array([xmax + gap - self.SID, l3[1] + rng.normal(0, 8), l3[2] + rng.normal(-5, 12)])
            eb, eu = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
            roll = math.radians(rng.normal(0, 4))
        # patient roll about z (and side tilt for the lateral) applied as an inverse view rotation
        Rz = rot(2, -roll)
        self.eb2, self.eu2, self.S2 = Rz @ eb, Rz @ eu, Rz @ self.S          # for extruded soft tissue
        Rt = Rz @ (rot(1, math.radians(rng.normal(0, 2.0))) if kind == "LAT" else np.eye(3))
        self.eb, self.eu, self.ev, self.Sb = Rt @ eb, Rt @ eu, Rt @ np.array([0, 0, 1.0]), Rt @ self.S
        self.u = (np.arange(self.nc) + 0.5 - self.nc / 2) * self.p
        self.v = (self.nr / 2 - np.arange(self.nr) - 0.5) * self.p

    def splat(self, arrs, coarse=4):
        """bilinear splat of point samples -> HA (g/cm2), marrow fat (cm) on the render
        grid and gas (cm) on a coarse grid (gas is sampled at 2 mm)"""
        pts, vol, ha, mf, gas = arrs
        out = []
        for f, sel, vals in ((1, gas == 0, (ha, mf)), (coarse, gas > 0, (gas,))):
            d = pts[sel] - self.Sb.astype(np.float32)
            mag = np.float32(self.SID) / (d @ self.eb.astype(np.float32))
            nr, nc = -(-self.nr // f), -(-self.nc // f)
            m = mag / np.float32(self.p * f)
            jf = (d @ self.eu.astype(np.float32)) * m + np.float32(nc / 2 - 0.5 + 2)
            if_ = np.float32(nr / 2 - 0.5 + 2) - (d @ self.ev.astype(np.float32)) * m
            del d
            jf, if_ = np.clip(jf, 0, nc + 2.999), np.clip(if_, 0, nr + 2.999)
            j0, i0 = jf.astype(np.int64), if_.astype(np.int64)
            fj, fi = jf - np.floor(jf), if_ - np.floor(if_)
            w = vol[sel] * mag * mag * np.float32(0.1 / (self.p * f) ** 2)
            W = nc + 4
            base = i0 * W + j0
            n = (nr + 4) * W
            for val in vals:
                wv = w * val[sel]
                a = (np.bincount(base, wv * (1 - fi) * (1 - fj), n) + np.bincount(base + 1, wv * (1 - fi) * fj, n)
                     + np.bincount(base + W, wv * fi * (1 - fj), n) + np.bincount(base + W + 1, wv * fi * fj, n))
                a = a.reshape(nr + 4, W)[2:nr + 2, 2:nc + 2]
                out.append(a if f == 1 else resize(a, self.nc, self.nr).astype(np.float64))
        return out

    def soft(self, T, P, step=4):
        """water-equivalent soft tissue, fat and lung-air path lengths (mm) on the render grid"""
        uc, vc = self.u[::step], self.v[::step]
        p0 = self.S2[:2]
        dirs = self.SID * self.eb2[None, :2] + uc[:, None] * self.eu2[None, :2]
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        tc = -self.S2 @ self.eb2
        zr = self.S2[2] + vc * tc / self.SID                  # object-plane height per row
        zl = np.arange(zr.min() - 8, zr.max() + 8, 2.5)
        skin, wall, ells = sections(T, P, zl)
        zp = zl[::2]                                          # trunk outline varies slowly in z
        cs, cw = poly_chord(skin[::2], p0, dirs), poly_chord(wall[::2], p0, dirs)
        up = lambda a: np.stack([np.interp(zl, zp, a[:, j]) for j in range(a.shape[1])], 1)
        maps = {"skin": up(cs), "fat": up(cs - 0.97 * cw), "lung": 0.0}
        for m, w, cx, cy, ra, rb in ells:
            maps[m] = maps[m] + w * ellipse_chord(p0, dirs, cx, cy, ra, rb)
        obl = np.sqrt(self.SID ** 2 + uc[None, :] ** 2 + vc[:, None] ** 2) / np.sqrt(self.SID ** 2 + uc[None, :] ** 2)
        out = []
        for k in ("skin", "fat", "lung"):
            m = np.stack([np.interp(zr, zl, maps[k][:, j]) for j in range(len(uc))], 1) * obl
            out.append(resize(np.maximum(m, 0), self.nc, self.nr).astype(np.float64))
        return out


def to_img(a):
    return Image.fromarray(np.ascontiguousarray(a, dtype=np.float32))


def resize(a, w, h, flt=Image.BILINEAR):
    return np.asarray(to_img(a).resize((w, h), flt))


def lowpass(a, sigma_px):
    """large-kernel Gaussian via decimation (fast at full resolution)"""
    f = max(1, int(sigma_px / 2))
    h, w = a.shape
    sm = np.asarray(to_img(a).reduce(f)) if f > 1 else a
    sm = ndimage.gaussian_filter(sm, sigma_px / f, mode="nearest")
    return resize(sm, w, h) if f > 1 else sm


def font(px):
    return ImageFont.load_default(size=max(8, int(px)))


def rect_mask(cx, cy, hw, hh, ang, u, v, soft):
    """soft-edged rotated rectangle on detector coordinates u (cols) / v (rows), mm"""
    ca, sa = math.cos(ang), math.sin(ang)
    du, dv = u[None, :].astype(np.float32) - cx, v[:, None].astype(np.float32) - cy
    a, b = np.abs(du * ca + dv * sa), np.abs(-du * sa + dv * ca)
    return np.clip((hw - a) / soft + 0.5, 0, 1) * np.clip((hh - b) / soft + 0.5, 0, 1)


def expose(V, P, T, arrs, vendor, rng):
    """polychromatic transport -> noise-free detector signal (keV/mm^2) and effective
    energy on the render grid, plus collimation/marker geometry and technique"""
    HA, MF, GAS = V.splat(arrs)
    skin, fat, lung = V.soft(T, P)
    Wt = np.maximum(0.105 * (skin - fat - lung) - 1.05 * (GAS + MF) - 0.35 * HA, 0)
    Ft = 0.093 * fat + 0.93 * MF
    cr = vendor["modality"] == "CR"
    cu_f = 0.0 if cr else float(rng.choice([0.0, 0.1, 0.1, 0.2]))       # added filtration: 1 mm Al + Cu
    beam = Beam(V.kvp, 1.0, cu_f, "bafbr" if cr else "csi", 0.11 if cr else 0.2)
    alg = 0.27 * 1.0                                           # carbon-fibre table ~1 mm Al
    bf, ba = beam.basis["fat"], beam.basis["al"]
    Wb = Wt + bf[0] * Ft + ba[0] * alg
    Hb = HA + bf[1] * Ft + ba[1] * alg
    S, Ee = beam.signal(Wb, Hb)
    R2 = V.SID ** 2 + V.u[None, :] ** 2 + V.v[:, None] ** 2
    geo = (1e6 / R2) * (V.SID / np.sqrt(R2))                  # inverse square + obliquity
    heel = 1 + rng.uniform(0.06, 0.16) * rng.choice([-1, 1]) * V.v[:, None] / (V.dh / 2)
    prim = S * geo * heel
    # collimation (field on the detector), sometimes left open
    if rng.random() < 0.12:
        cw, ch = V.dw / 2 + 20, V.dh / 2 + 20
    else:
        cw = min(V.dw / 2 + 20, (rng.uniform(95, 150) if V.kind == "AP" else rng.uniform(85, 130)))
        ch = min(V.dh / 2 + 20, rng.uniform(175, 220))
    coll_par = (rng.normal(0, 8), rng.normal(0, 8), cw, ch, math.radians(rng.normal(0, 1.0)))
    coll = rect_mask(*coll_par, V.u, V.v, 1.5)
    # lead marker (R on AP at the patient's right = image left; L on the left lateral)
    letter = "R" if V.kind == "AP" else "L"
    mk = Image.new("L", (V.nc, V.nr), 0)
    size = 14 / V.p
    mx = coll_par[0] - (min(cw, V.dw / 2) - 22)
    my = coll_par[1] + rng.choice([-1, 1]) * (min(ch, V.dh / 2) - 40)
    ImageDraw.Draw(mk).text(((mx + V.dw / 2) / V.p - size / 3, (V.dh / 2 - my) / V.p - size / 2), letter,
                            fill=255, font=font(size))
    mk = np.asarray(mk, np.float64) / 255
    prim = prim * (1 - 0.97 * ndimage.gaussian_filter(mk, 0.6))
    # scatter: thickness-dependent SPR, broad kernel; antiscatter grid for most
    grid = V.kind == "LAT" or rng.random() < 0.93
    spr = 0.17 * Wb * (1 + 0.1 * (V.kvp - 80) / 20)
    sc = ndimage.gaussian_filter(((prim * coll) * spr)[::4, ::4], 45 / (4 * V.p), mode="constant")
    sc = resize(sc, V.nc, V.nr).astype(np.float64)
    if grid:
        prim, sc = prim * 0.72, sc * 0.13
    sig = prim * (coll + 0.01 * (1 - coll)) + sc
    # AEC: absorbed-quanta target in a central chamber (manual technique chart for CR)
    ch_m = (np.abs(V.u[None, :]) < 30) & (np.abs(V.v[:, None]) < 30)
    q = (sig / Ee)[ch_m].mean()
    target = 9.0e4 if cr else 7.0e4
    mas = float(np.clip(target / q * rng.lognormal(0, 0.28 if cr else 0.12), 1.0, 400.0))
    anat = (coll > 0.5) & (skin > 15)
    return dict(sig=sig * mas, Ee=Ee, mas=mas, coll=coll_par, anat=anat, grid=grid,
                filt=(3.5, cu_f), beam=beam)


def detector(V, X, vendor, rng):
    """upsample to the native pixel grid, add quantum + electronic noise with
    detector correlation; returns raw linear signal (float32)"""
    cr = vendor["modality"] == "CR"
    sig = ndimage.gaussian_filter(X["sig"], 0.6) if cr else X["sig"]       # CR: laser-light spread
    w, h = V.nc_full, V.nr_full
    S = resize(sig, w, h)
    Ee = resize(X["Ee"], w, h)
    a = V.pix ** 2
    n = rng.standard_normal((h, w), dtype=np.float32)
    n[1:] += n[:-1]                                           # [1,1] correlation in both axes
    n[:, 1:] += n[:, :-1]
    sd = np.sqrt(Ee * S * a * (1.8 if cr else 1.15) + (40 * 55.0) ** 2) / 2.0
    raw = S * a + sd * n
    if cr:                                                   # plate structure + scan-line ripple
        raw *= 1 + 0.004 * rng.standard_normal((h, 1)).astype(np.float32)
    return np.maximum(raw, 1.0).astype(np.float32)


# ==== Invented vendors: detector format + image processing chain
VENDORS = [
    dict(name="Orison Medical", model="OrisDR 4343", modality="DX", det=(430.0, 430.0), pix=0.160, bits=12,
         mono="MONOCHROME2", shutter="black", lat_code="LL", chain="unsharp", station="ORDR-01", text_pos="tl"),
    dict(name="Keldar Imaging", model="Keldar FlexView 35", modality="DX", det=(350.0, 430.0), pix=0.175, bits=14,
         mono="MONOCHROME1", shutter="white", lat_code="LATERAL", chain="multifreq", station="KFV35", text_pos="br"),
    dict(name="Vantrix", model="VX-CR 7", modality="CR", det=(350.0, 430.0), pix=0.200, bits=10,
         mono="MONOCHROME1", shutter="none", lat_code="LL", chain="drc", station="VXCR7-RAD2", text_pos="tr"),
    dict(name="Halden Radiology Systems", model="Halden Prime DR", modality="DX", det=(430.0, 430.0),
         pix=0.150, bits=15, mono="MONOCHROME2", shutter="black", lat_code="LATERAL", chain="equalize",
         station="HPRIME-3", text_pos="bl"),
]


def shoulder(d, k):
    """film-like soft roll-off above k"""
    return np.where(d < k, d, k + (1 - k) * np.tanh((d - k) / (1 - k)))


def process(vendor, V, X, raw, rng):
    """vendor chain: log -> histogram normalisation inside the segmented anatomy ->
    large-scale equalisation -> detail enhancement -> tone curve.
    Returns display values in [0,1] (1 = bright = attenuating)."""
    mmpx = 1 / V.pix
    anat = X["anat"] if X["anat"].sum() > 100 else np.ones_like(X["anat"])

    def norm(a, t_lo=0.35, t_hi=0.85):
        """map the anatomy median (soft tissue) and the 99.7th percentile (spine) to targets"""
        lo, hi = map(float, np.percentile(resize(a, V.nc, V.nr)[anat], [50, 99.7]))
        t_lo, t_hi = t_lo + rng.normal(0, 0.03), t_hi + rng.normal(0, 0.03)
        return t_lo + (a - lo) * ((t_hi - t_lo) / max(hi - lo, 1e-3))
    d = norm(-np.log(raw))
    ch = vendor["chain"]
    if ch == "unsharp":
        d = norm(d - rng.uniform(0.5, 0.7) * lowpass(d, 50 * mmpx))
        d = d + rng.uniform(0.5, 1.0) * (d - lowpass(d, rng.uniform(2.0, 4.0) * mmpx))
        k = rng.uniform(2.6, 3.4)
        y = 0.5 + 0.5 * np.tanh(k * (d - rng.uniform(0.47, 0.53))) / math.tanh(k * 0.5)
    elif ch == "multifreq":
        bands, cur = [], d
        for _ in range(9):
            nxt = resize(cur, cur.shape[1] // 2, cur.shape[0] // 2)
            bands.append(cur - resize(nxt, cur.shape[1], cur.shape[0]))
            cur = nxt
        gains = [rng.uniform(0.9, 1.1), rng.uniform(1.1, 1.4), rng.uniform(1.5, 2.0), rng.uniform(1.6, 2.2),
                 rng.uniform(1.5, 2.0), rng.uniform(1.3, 1.7), rng.uniform(1.2, 1.5), rng.uniform(1.0, 1.3),
                 rng.uniform(0.8, 1.0)]
        cur = cur * rng.uniform(0.3, 0.5)
        for b, g in zip(bands[::-1], gains[::-1]):
            cur = resize(cur, b.shape[1], b.shape[0]) + g * np.sign(b) * np.abs(b) ** 0.9 * 0.794
        cur = norm(cur)
        y = 1 / (1 + np.exp(-rng.uniform(4.0, 5.0) * (cur - rng.uniform(0.5, 0.58))))
    elif ch == "drc":
        d = norm(d - rng.uniform(0.5, 0.7) * lowpass(d, 35 * mmpx))
        d = d + 0.4 * (d - lowpass(d, 1.5 * mmpx))
        y = np.clip(shoulder(d, 0.8), 0, 1) ** rng.uniform(0.8, 1.2)
    else:                                                   # equalize
        d = norm(d - rng.uniform(0.3, 0.5) * lowpass(d, 60 * mmpx))
        ds = resize(d, V.nc, V.nr)[anat]
        hist, edges = np.histogram(np.clip(ds, -0.5, 1.5), 256, range=(-0.5, 1.5))
        cdf = np.cumsum(ndimage.gaussian_filter1d(hist.astype(float), 6) + hist.sum() / 2560)
        eq = np.interp(d, 0.5 * (edges[1:] + edges[:-1]), cdf / cdf[-1]).astype(np.float32)
        d = rng.uniform(0.3, 0.5) * (eq - 0.5) + np.clip(d, -0.2, 1.2)
        d = d + rng.uniform(0.8, 1.3) * (d - lowpass(d, 1.2 * mmpx)) + 0.3 * (d - lowpass(d, 8 * mmpx))
        y = np.clip(shoulder(d, 0.75), 0, 1) ** 1.1
    return np.clip(y, 0, 1).astype(np.float32)


def finish(vendor, V, X, y, texts):
    """shutter masking, burned-in text, quantisation, photometric interpretation"""
    h, w = y.shape
    inside = rect_mask(*X["coll"], (np.arange(w) + 0.5 - w / 2) * V.pix, (h / 2 - np.arange(h) - 0.5) * V.pix, 0.3)
    if vendor["shutter"] != "none":
        y = y * inside + (vendor["shutter"] == "white") * (1 - inside)
    tx = Image.new("L", (w, h), 0)                           # burned-in annotation
    dr, fp, mg, corner = ImageDraw.Draw(tx), int(3.2 / V.pix), int(6 / V.pix), vendor["text_pos"]
    for i, line in enumerate(texts):
        yy = mg + i * int(1.3 * fp) if corner[0] == "t" else h - mg - (len(texts) - i) * int(1.3 * fp)
        xx = mg if corner[1] == "l" else w - mg - int(dr.textlength(line, font=font(fp)))
        dr.text((xx, yy), line, fill=255, font=font(fp))
    t = np.asarray(tx, np.float32) / 255
    y = np.maximum(y, t * 0.97) if vendor["shutter"] != "white" else np.where(inside > 0.5, np.maximum(y, t), 1 - t)
    mx = 2 ** vendor["bits"] - 1
    q = np.rint(np.clip(y, 0, 1) * mx).astype(np.uint16)
    return (mx - q).astype(np.uint16) if vendor["mono"] == "MONOCHROME1" else q


# ==== DICOM
def uid(seed, *parts):
    h = hashlib.sha256(("phantom_k/%s/" % seed + "/".join(map(str, parts))).encode()).hexdigest()
    return "2.25.%d" % int(h[:30], 16)


def write_dicom(path, q, vendor, V, X, P, st, kind, seed, pid):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian
    dx = vendor["modality"] == "DX"
    sop_class = "1.2.840.10008.5.1.4.1.1.1.1" if dx else "1.2.840.10008.5.1.4.1.1.1"   # DX pres. / CR
    sop_uid = uid(seed, pid, kind, "sop")
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID, fm.MediaStorageSOPInstanceUID = sop_class, sop_uid
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = fm
    tc = round(float(-V.Sb @ V.eb), 1)                       # source to spine (isocentre)
    ms = int(np.clip(round(X["mas"] / (250 if kind == "AP" else 320) * 1000), 5, 4000))
    mx = 2 ** vendor["bits"] - 1
    a = dict(SOPClassUID=sop_class, SOPInstanceUID=sop_uid, InstanceCreationDate=st["date"],
             InstanceCreationTime=st["time"], ImageType=["ORIGINAL", "PRIMARY"], StudyDate=st["date"],
             SeriesDate=st["date"], AcquisitionDate=st["date"], ContentDate=st["date"], StudyTime=st["time"],
             SeriesTime=st["time_" + kind], AcquisitionTime=st["time_" + kind], ContentTime=st["time_" + kind],
             AccessionNumber=st["acc"], Modality=vendor["modality"], Manufacturer=vendor["name"],
             ManufacturerModelName=vendor["model"], InstitutionName="Synthetic Phantom Hospital K",
             StationName=vendor["station"], ReferringPhysicianName="", StudyDescription="XR LUMBAR SPINE 2 VIEWS",
             SeriesDescription="L-SPINE " + kind, PatientName="PhantomK^" + pid.replace("-", ""), PatientID=pid,
             PatientBirthDate=st["birth"], PatientSex=P["sex"], PatientAge="%03dY" % P["age"],
             PatientSize="%.2f" % (P["height"] / 100), PatientWeight="%.1f" % (P["bmi"] * (P["height"] / 100) ** 2),
             BodyPartExamined="LSPINE", ViewPosition="AP" if kind == "AP" else vendor["lat_code"],
             StudyInstanceUID=uid(seed, pid, "study"), SeriesInstanceUID=uid(seed, pid, kind, "series"),
             StudyID=st["acc"][-6:], SeriesNumber=1 if kind == "AP" else 2, InstanceNumber=1,
             PatientOrientation=["L", "F"] if kind == "AP" else ["P", "F"], KVP="%d" % V.kvp,
             DistanceSourceToDetector="%.1f" % V.SID, DistanceSourceToPatient="%.1f" % tc, ExposureTime=str(ms),
             XRayTubeCurrent=str(int(round(X["mas"] / ms * 1000))), Exposure=str(max(1, int(round(X["mas"])))),
             ExposureInuAs=str(int(round(X["mas"] * 1000))), ImagerPixelSpacing=[round(V.pix, 4)] * 2,
             SamplesPerPixel=1, PhotometricInterpretation=vendor["mono"], Rows=q.shape[0], Columns=q.shape[1],
             BitsAllocated=16, BitsStored=vendor["bits"], HighBit=vendor["bits"] - 1, PixelRepresentation=0,
             WindowCenter=str((mx + 1) // 2), WindowWidth=str(mx + 1), BurnedInAnnotation="YES",
             LossyImageCompression="00",
             AcquisitionDeviceProcessingDescription={"unsharp": "LOG+AUTOWINDOW+USM", "multifreq": "MFP BANDS9",
                                                     "drc": "DRC+GAMMA", "equalize": "HEQ+EDGE"}[vendor["chain"]])
    if X["filt"][1] == 0:
        a["FilterType"] = "NONE"
    else:
        a.update(FilterMaterial=["ALUMINUM", "COPPER"], FilterThicknessMinimum=["%.1f" % f for f in X["filt"]],
                 FilterThicknessMaximum=["%.1f" % f for f in X["filt"]])
    if dx:
        code = lambda v, m: Dataset.from_json({"00080100": {"vr": "SH", "Value": [v]}, "00080102": {
            "vr": "SH", "Value": ["SCT"]}, "00080104": {"vr": "LO", "Value": [m]}})
        vc = code(*(("399348003", "antero-posterior") if kind == "AP" else ("399198007", "left lateral")))
        vc.ViewModifierCodeSequence = Sequence([])
        a.update(PresentationIntentType="FOR PRESENTATION", PixelIntensityRelationship="LOG",
                 PixelIntensityRelationshipSign=1, RescaleIntercept="0", RescaleSlope="1", RescaleType="US",
                 PresentationLUTShape="IDENTITY" if vendor["mono"] == "MONOCHROME2" else "INVERSE",
                 ImageLaterality="U", DetectorType="SCINTILLATOR", DetectorConfiguration="AREA",
                 DetectorID=vendor["station"] + "-D", PositionerType="NONE", ExposureControlMode="AUTOMATIC",
                 Grid="FOCUSED" if X["grid"] else "NONE",
                 EstimatedRadiographicMagnificationFactor=("%.10f" % (V.SID / tc))[:16],
                 PixelSpacing=[round(V.pix * tc / V.SID, 4)] * 2, PixelSpacingCalibrationType="GEOMETRY",
                 PixelSpacingCalibrationDescription="estimated magnification at spine",
                 AcquisitionContextSequence=Sequence([]),
                 AnatomicRegionSequence=Sequence([code("122496007", "Lumbar spine")]), ViewCodeSequence=Sequence([vc]))
    else:
        a.update(PlateID="VX%06d" % (int(uid(seed, pid, kind, "plate")[5:15]) % 1000000), CassetteSize="35CMX43CM",
                 CassetteOrientation="PORTRAIT", Sensitivity="%d" % (200 if kind == "AP" else 400))
    for k, v in a.items():
        setattr(ds, k, v)
    ds.PixelData = q.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


# ==== Driver
def make_patient(job):
    outdir, seed, idx = job
    import datetime as dt
    rng = np.random.default_rng([seed, idx])
    pid = "PK%d-%05d" % (seed, idx)
    P = sample_patient(rng)
    vert, S1 = build_spine(P, rng)
    T = trunk_model(P, vert, S1, rng)
    cloud = Cloud()
    tex = trabecular_texture(rng, P["tex"], 0.6)
    for i, v in enumerate(vert):
        above = vert[i - 1]["deg"] if i > 0 else 0.5 * v["deg"]
        vertebra_cloud(v, P, tex, rng, cloud, 0.6, above, v["deg"])
    sacrum_cloud(S1, P, tex, rng, cloud, 0.9)
    ilium_cloud(S1, P, rng, cloud)
    for v, ln, dr in zip(vert[:4], (210, 190, 150, 90 * rng.uniform(0.5, 1.3)), (130, 125, 100, 55)):
        rib_cloud(v, P, T, rng, cloud, ln * P["sf"], dr)
    aorta_cloud(vert, P, rng, cloud)
    bowel_cloud(vert, S1, P, T, rng, cloud)
    arrs = cloud.arrays()
    vendor = VENDORS[int(rng.integers(len(VENDORS)))]
    day = dt.date(2016, 1, 1) + dt.timedelta(days=int(rng.integers(0, 3000)))
    birth = day - dt.timedelta(days=int(365.25 * P["age"] + rng.integers(1, 360)))
    t0 = int(rng.integers(7 * 3600, 18 * 3600))
    hms = lambda s: "%02d%02d%02d" % (s // 3600, s // 60 % 60, s % 60)
    st = dict(date=day.strftime("%Y%m%d"), birth=birth.strftime("%Y%m%d"), time=hms(t0), time_AP=hms(t0 + 60),
              time_LAT=hms(t0 + 60 + int(rng.integers(40, 200))), acc="A%09d" % int(rng.integers(1e8, 1e9)))
    rows = []
    for kind in ("AP", "LAT"):
        V = View(kind, vendor, P, T, vert, rng)
        X = expose(V, P, T, arrs, vendor, rng)
        raw = detector(V, X, vendor, rng)
        y = process(vendor, V, X, raw, rng)
        dstr = "%s.%s.%s" % (st["date"][6:], st["date"][4:6], st["date"][:4])
        texts = {"tl": [pid, dstr, "L-SPINE " + kind],
                 "br": [vendor["name"].upper(), "%s  %dkV %.1fmAs" % (kind, V.kvp, X["mas"])],
                 "tr": ["VX  S=%d" % int(200 * 4.5e4 / max(X["mas"], 1)), kind + "  " + dstr],
                 "bl": [pid + "  " + P["sex"] + "/%d" % P["age"], "LSPINE " + kind]}[vendor["text_pos"]]
        q = finish(vendor, V, X, y, texts)
        name = "%s_%s.dcm" % (pid, kind)
        write_dicom(os.path.join(outdir, name), q, vendor, V, X, P, st, kind, seed, pid)
        rows.append("%s,%d,%.2f,%.3f,%s,%s" % (name, P["label"], P["T"], P["bmd"], pid, kind))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name, typ in (("outdir", str), ("n", int), ("seed", int)):
        ap.add_argument(name, type=typ)
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args()
    os.makedirs(a.outdir, exist_ok=True)
    jobs = [(a.outdir, a.seed, i) for i in range(a.n)]
    if a.workers > 1:
        import multiprocessing as mp
        with mp.Pool(a.workers) as pool:
            res = list(pool.imap(make_patient, jobs))
    else:
        res = [make_patient(j) for j in jobs]
    with open(os.path.join(a.outdir, "manifest.csv"), "w", newline="") as f:
        f.write("path,label,t_score,bmd,patient_id,view\n")
        f.write("".join(r + "\n" for rows in res for r in rows))


if __name__ == "__main__":
    main()
