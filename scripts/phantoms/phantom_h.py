#!/usr/bin/env python3
"""phantom_h.py -- independent synthetic lumbar-spine radiograph generator (AP + lateral).

Test data for checking whether an osteoporosis-screening model carries over to a
"look" it never saw.  Written from scratch (own anatomy, physics and processing).

USAGE
    python phantom_h.py OUTDIR N_STUDIES SEED [--workers K]

    Per study i (0..N-1), PatientID = PH<SEED>-<iiiii>:
        OUTDIR/<PatientID>_AP.dcm   and   OUTDIR/<PatientID>_LAT.dcm
    and at the end OUTDIR/manifest.csv with the header
        path,label,t_score,bmd,patient_id,view
    (one row per image, path relative to OUTDIR, view AP or LAT).
    Every random draw of study i comes from numpy.random.default_rng([SEED, i]),
    so the output does not depend on --workers and one seed always gives
    byte-identical files.  About 3-5 s per study on one core.

LABELS
    The WHO class is drawn first (a third each), then the lumbar T-score
    uniformly inside it: normal [-0.99, +2.0], osteopenia [-2.49, -1.01],
    osteoporosis [-4.5, -2.5]; label 0/1/2 follows the WHO cut-offs
    (T >= -1.0 normal, T <= -2.5 osteoporosis).  bmd = 1.02 + 0.115*T g/cm^2.
    Age ~ N(57 - 6*T, 9) clipped 24..94 (older -> lower T), female share
    55/70/82 % by class, BMI weakly tied to T.  PatientAge/Sex/BirthDate are
    written to the header.

ANATOMY (one 3-D patient, shared by both views)
  * Spine T11-L5 + S1-S3 built as a chain along a curve integrated upward from
    the S1 endplate: sacral slope ~N(38,7) deg, lumbar lordosis ~N(50,9) deg
    (less with age) concentrated low, optional C-shaped scoliosis, axial
    rotation of each vertebra toward the convexity, degenerative
    anterolisthesis of L4 or L5 now and then.
  * Each vertebra is a set of signed-distance solids in its own frame,
    sampled voxel-by-voxel along the rays of each view (0.35-0.55 mm in the
    detector plane, 0.6 mm along the ray) and summed, so cortex shows where
    it is tangent to the beam:
      - body: kidney-shaped section (super-ellipse minus a posterior notch,
        tabulated as a 2-D distance map), waist concavity, dished endplates;
        rim osteophytes (anterior/lateral "lips"), disc narrowing, vacuum
        discs and subchondral sclerosis all grow with a degeneration score
        derived from age;
      - compression fractures (probability 4 / 13 / 42 % by class, T12-L1
        favoured): wedge (with local kyphosis), biconcave or crush, with a
        condensation band under the fractured endplate;
      - pedicles (elliptic tubes -> ring "eyes" on AP), laminae, spinous
        process and transverse processes as flat plates (4-norm section),
        articular processes as ellipsoids that enlarge with degeneration;
      - sacrum: S1 with alae and lateral masses, S2/S3 tapering, all in the
        same voxel engine so the sacral outline is continuous.
  * Analytic ray/ellipsoid chords (exact for the divergent beam) for the
    iliac wings (thin shells cut below by a plane), supra-acetabular ilium
    and SI region, ribs 11/12 (curved tubes with a cortical wall), aortic
    wall calcifications (thin plaques, more with age and in men).
  * Soft tissue: per-row elliptical body section (waist, hips, belly, flat
    back on the table), subcutaneous fat from BMI, visceral fat with a
    mottled low-frequency field, psoas muscles in fat sheaths widening
    caudally, kidneys in perirenal fat, colon gas as haustrated sausages
    along an ascending/transverse/descending/sigmoid path, stool bubbles,
    small-bowel loops, gastric air, lung bases.  Bone mineral displaces
    water; marrow fat fraction rises with age and low T.

PHYSICS
  * Kramers tungsten spectrum (+ K lines), 2.5-4 mm Al (+0.1/0.2 mm Cu on
    some DR rooms), 2.5 keV bins.  Mass attenuation of water, fat,
    hydroxyapatite (derived from ICRU cortical bone so bone and soft tissue
    are consistent), Al, Cu; energy-integrating CsI (DR) or BaFBr (CR)
    absorption with K edges.  kVp 72-88 AP, 85-102 lateral; SID 100-115 cm,
    real magnification from object depth, patient rotation, small tube tilt.
  * Point-source geometry: every vertebra is sampled along its own ray
    direction, so off-centre endplates show double contours.
  * Scatter: two-Gaussian kernel (14 and 55 mm) on thickness-weighted
    primary, scaled to an SPR of 0.5-1.1 (AP, grid), 1-2.2 (lateral) or x3
    without grid.  Collimation with penumbra and 0.3 % leakage, heel effect,
    lead L/R marker in the beam, AEC on a central chamber with +-25 %
    exposure error, Poisson-like quantum noise at detector pixels, detector
    blur after the noise (correlated noise), electronic noise, column gain
    residue (DR), aliased stationary-grid lines (one CR vendor).

VENDOR PROCESSING (five invented vendors; both views of a study share one)
  A "Halvard" DX, MONOCHROME2, 12 bit: log, ROI histogram normalisation,
    4-band multi-frequency decomposition with power-law detail equalisation,
    base-band compression, sigmoid tone curve, black shutter, cropped to the
    field, WC/WW in header.
  B "Oriel" CR, MONOCHROME1, 10 bit: large-kernel DRC + unsharp mask,
    gamma; unexposed border left white, no rescale/window, burned-in site,
    ID, date and view text.
  C "Kestrel" DX, MONOCHROME2, 14 bit: nearly linear log image with mild
    DRC/USM over a wide value range; relies on the header window.
  D "Tarn" DX, MONOCHROME1, 16 bit: edge-preserving noise reduction, strong
    3-band equalisation, toe/shoulder LUT, PresentationLUTShape INVERSE,
    VOILUTFunction SIGMOID, burned-in text and digital marker.
  E "Brisk" CR, MONOCHROME2, 12 bit: local background removal, partial
    histogram equalisation, gamma, rescale 1/0, grid-line moire.
  Pixel spacing 0.10-0.20 mm; images about 1k-2.5k px a side.  DX objects are
  Digital X-Ray Image Storage - For Presentation, CR objects CR Image Storage,
  explicit VR little endian, UIDs 2.25.<sha256(seed, study, view)>.  They
  pass dciodvfy without errors.

HOW BONE DENSITY SHOWS
  * Trabecular (volumetric) mineral of the vertebral bodies, QCT-like:
        vBMD = 0.170 + 0.028*T  g HA/cm^3   (floor 0.035)
    i.e. 226 mg/cm^3 at T=+2, 142 at T=-1, 100 at T=-2.5, 44 at T=-4.5,
    +-5 % per level.  Projected through ~3-4.5 cm of body this gives about
    1.0 g/cm^2 of mineral at T=0 and ~0.5 at T=-4.5 (posterior elements
    included), so a low T means a less attenuating body interior.
  * Cortex is relatively preserved: shell density 1.00*(1+0.03*T) g/cm^3,
    body shell 0.50*(1+0.05*T) mm, posterior elements 0.85*(1+0.04*T) mm with
    a mostly compact interior 0.22 + 1.3*vBMD.  At low T the body becomes an
    "empty box" with a relatively bright outline.
  * Texture: a 3-D band-pass random field (128^3 tile at 0.4 mm, sampled in
    each vertebra's own frame, so AP and lateral see the same structure)
    is soft-thresholded to a bone volume fraction 0.42 + 0.06*T (0.13..0.55),
    then rescaled to the mean vBMD.  Its dominant spacing grows from ~1.3 to
    ~2.7 mm and its vertical elongation from 1.2 to 3.2 as T falls (loss of
    horizontal trabeculae): sparse, coarse, vertically striated bodies in
    osteoporosis.
  * Marrow fat fraction 0.30 + 0.004*(age-40) - 0.05*T; pelvis, ribs and
    sacrum scale with the same vBMD; fractures are more frequent at low T.
"""
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import hashlib
import math
import sys
import time

import numpy as np
from scipy import ndimage as ndi
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

F32 = np.float32
DEG = math.pi / 180.0

# --------------------------------------------------------------------------
# Attenuation data (mass attenuation coefficients, cm^2/g).  Water and ICRU
# cortical bone are close to tabulated values; "ha" (hydroxyapatite) is
# derived from cortical bone minus its 44 % organic/water fraction, so the
# bone mineral and the soft tissue stay mutually consistent.
# --------------------------------------------------------------------------
_E_TAB = np.array([20, 30, 40, 50, 60, 80, 100, 150], float)
_MU_TAB = {
    "water": [0.8096, 0.3756, 0.2683, 0.2269, 0.2059, 0.1837, 0.1707, 0.1505],
    "fat": [0.5600, 0.3000, 0.2400, 0.2100, 0.1950, 0.1760, 0.1650, 0.1460],
    "ha": [6.51, 2.08, 0.978, 0.579, 0.400, 0.254, 0.197, 0.146],
    "al": [3.441, 1.128, 0.5685, 0.3681, 0.2778, 0.2018, 0.1704, 0.1378],
    "cu": [33.79, 10.92, 4.862, 2.613, 1.593, 0.7630, 0.4584, 0.2217],
}
# detector phosphors, with K edges (I 33.2, Cs 36.0 keV; Ba 37.4 keV)
_DET_TAB = {
    "csi": ([15, 20, 30, 33.1, 33.2, 36.0, 36.1, 40, 50, 60, 80, 100, 150],
            [55, 26, 8.9, 6.6, 20.9, 17.6, 32.0, 25.0, 13.9, 8.5, 3.96, 2.2, 0.79]),
    "bafbr": ([15, 20, 30, 37.4, 37.5, 40, 50, 60, 80, 100, 150],
              [45, 22, 8.0, 4.6, 18.5, 15.8, 9.0, 5.5, 2.6, 1.5, 0.55]),
}


def mu(name, E):
    if name in _DET_TAB:
        et, mt = _DET_TAB[name]
    else:
        et, mt = _E_TAB, _MU_TAB[name]
    return np.exp(np.interp(np.log(E), np.log(et), np.log(mt)))


def spectrum(kvp, al_mm, cu_mm, dE=2.5):
    """Kramers bremsstrahlung (photon number ~ (kVp-E)/E) + W K lines,
    hardened by the tube's Al/Cu filtration.  Returns bin energies, weights."""
    E = np.arange(18.0 + dE / 2, kvp, dE)
    n = (kvp - E) / E
    if kvp > 70.0:
        for el, frac in ((59.0, 0.055), (67.5, 0.015)):
            n[np.argmin(np.abs(E - el))] += frac * n.sum() * (1 - 69.5 / kvp) * 4
    n = n * np.exp(-mu("al", E) * 2.70 * al_mm / 10 - mu("cu", E) * 8.96 * cu_mm / 10)
    return E, n / n.sum()


# --------------------------------------------------------------------------
# small geometry helpers
# --------------------------------------------------------------------------
def rot(axis, ang):
    a = np.asarray(axis, float)
    a = a / np.linalg.norm(a)
    c, s = math.cos(ang), math.sin(ang)
    x, y, z = a
    return np.array([[c + x * x * (1 - c), x * y * (1 - c) - z * s, x * z * (1 - c) + y * s],
                     [y * x * (1 - c) + z * s, c + y * y * (1 - c), y * z * (1 - c) - x * s],
                     [z * x * (1 - c) - y * s, z * y * (1 - c) + x * s, c + z * z * (1 - c)]])


def frame_from_tangent(t, omega):
    z = np.asarray(t, float)
    z = z / np.linalg.norm(z)
    x = np.array([1.0, 0, 0]) - z[0] * z
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return rot(z, omega) @ np.column_stack([x, y, z])


def smin(a, b, k):
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * (k * 0.25)


def smax(a, b, k):
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.maximum(a, b) + h * h * (k * 0.25)


def upsample(a, k, shape=None):
    """Integer-factor linear upsampling with pixel-edge (grid-mode) alignment;
    a faster stand-in for ndimage.zoom(order=1, grid_mode=True)."""
    a = np.asarray(a, F32)
    h, w = a.shape
    H, W = shape if shape is not None else (h * k, w * k)

    def idx(n_in, n_out):
        x = (np.arange(n_out) + 0.5) / k - 0.5
        x = np.clip(x, 0, n_in - 1)
        i0 = np.minimum(np.floor(x).astype(np.intp), max(n_in - 2, 0))
        f = (x - i0).astype(F32)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, f

    r0, r1, fr = idx(h, H)
    c0, c1, fc = idx(w, W)
    t = a[r0] * (1 - fr)[:, None] + a[r1] * fr[:, None]
    return t[:, c0] * (1 - fc)[None, :] + t[:, c1] * fc[None, :]


def blur(img, sigma_px):
    """Gaussian blur; large kernels are run on a decimated copy."""
    if sigma_px < 0.3:
        return img
    f = int(max(1, sigma_px // 3))
    if f <= 1:
        return ndi.gaussian_filter(img, sigma_px, mode="nearest", truncate=3.0)
    h, w = img.shape
    H2, W2 = (h // f) * f, (w // f) * f
    small = img[:H2, :W2].reshape(H2 // f, f, W2 // f, f).mean(axis=(1, 3))
    small = ndi.gaussian_filter(small, math.sqrt(max(sigma_px ** 2 - f * f / 4.0, 0.25)) / f,
                                mode="nearest", truncate=3.0)
    return upsample(small, f, (h, w))


# --------------------------------------------------------------------------
# patient
# --------------------------------------------------------------------------
LEVELS = ["T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1", "S2", "S3"]
BODY_WDH = {"T11": (33, 27, 22), "T12": (36, 28, 23), "L1": (40, 30, 25), "L2": (42, 31, 26),
            "L3": (45, 32, 27), "L4": (47, 33, 27), "L5": (49, 34, 26), "S1": (47, 31, 24),
            "S2": (37, 23, 19), "S3": (28, 17, 15)}
DISC_H = {"T11": 6.0, "T12": 7.0, "L1": 8.0, "L2": 9.0, "L3": 10.0, "L4": 11.0, "L5": 10.5}
DISC_DEG_W = {"T11": 0.3, "T12": 0.4, "L1": 0.5, "L2": 0.7, "L3": 0.9, "L4": 1.0, "L5": 1.0}
FRACT_W = {"T11": 0.12, "T12": 0.22, "L1": 0.25, "L2": 0.15, "L3": 0.1, "L4": 0.1, "L5": 0.06}
PED_RX = {"T11": 3.0, "T12": 3.3, "L1": 3.6, "L2": 4.3, "L3": 5.2, "L4": 6.3, "L5": 7.5, "S1": 8.0}
PED_RZ = {"T11": 6.5, "T12": 7.0, "L1": 7.3, "L2": 7.5, "L3": 7.5, "L4": 7.3, "L5": 7.0, "S1": 7.0}
SP_LEN = {"T11": 30, "T12": 32, "L1": 32, "L2": 33, "L3": 33, "L4": 30, "L5": 24, "S1": 14}
SP_DROP = {"T11": 20, "T12": 12, "L1": 6, "L2": 4, "L3": 3, "L4": 2, "L5": 2, "S1": 2}
TP_LEN = {"T11": 10, "T12": 6, "L1": 13, "L2": 20, "L3": 27, "L4": 23, "L5": 17}


def sample_patient(seed, idx):
    rng = np.random.default_rng([seed, idx])
    cls = int(rng.integers(0, 3))
    lo, hi = [(-0.99, 2.0), (-2.49, -1.01), (-4.5, -2.5)][cls]
    T = round(float(rng.uniform(lo, hi)), 2)
    label = 0 if T >= -1.0 else (2 if T <= -2.5 else 1)
    assert label == cls
    P = {"rng": rng, "T": T, "label": label, "bmd": round(1.02 + 0.115 * T, 3)}
    P["sex"] = "F" if rng.random() < [0.55, 0.7, 0.82][cls] else "M"
    P["age"] = int(np.clip(round(rng.normal(57.0 - 6.0 * T, 9.0)), 24, 94))
    male = P["sex"] == "M"
    P["bmi"] = float(np.clip(rng.normal(27.0 + 0.45 * T + (0.8 if male else 0), 4.6), 17.0, 43.0))
    P["scale"] = float(np.clip(rng.normal(1.07 if male else 0.96, 0.045), 0.84, 1.2))
    P["deg"] = float(np.clip((P["age"] - 35) / 50.0 + rng.normal(0, 0.15), 0.0, 1.1))
    # volumetric trabecular mineral (g HA / cm^3), QCT-like; see docstring
    P["vbmd"] = max(0.035, 0.170 + 0.028 * T)
    P["rho_cort"] = 1.00 * (1.0 + 0.03 * T)
    P["tc_body"] = max(0.28, 0.50 * (1.0 + 0.05 * T))
    P["tc_post"] = max(0.5, 0.85 * (1.0 + 0.04 * T))
    P["marrow_fat"] = float(np.clip(0.30 + 0.004 * (P["age"] - 40) - 0.05 * T, 0.15, 0.8))
    return P


def build_spine(P):
    rng = P["rng"]
    sc, deg, T = P["scale"], P["deg"], P["T"]
    V = {}
    for lv in LEVELS:
        W, D, H = BODY_WDH[lv]
        j = rng.normal(1.0, 0.03, 3)
        V[lv] = dict(name=lv, W=float(W * sc * j[0]), D=float(D * sc * j[1]), H=float(H * sc * j[2]),
                     wedge=0.0, bic=0.0, frac=None)
    V["L5"]["wedge"] = -0.12 * rng.uniform(0.5, 1.3)   # L5 naturally taller anteriorly
    # compression fractures, more likely and more numerous at low T
    p_fx = [0.04, 0.13, 0.42][P["label"]] * (1.0 + (P["age"] - 65) / 60.0)
    kyph = {}
    if rng.random() < p_fx:
        nfx = 1 + int(rng.random() < (0.15 + 0.25 * (P["label"] == 2)))
        names = list(FRACT_W)
        w = np.array([FRACT_W[n] for n in names])
        for lv in rng.choice(names, size=nfx, replace=False, p=w / w.sum()):
            v = V[lv]
            sev = float(rng.uniform(0.18, 0.32 + 0.12 * (T < -3)))
            kind = rng.choice(["wedge", "biconcave", "crush"], p=[0.6, 0.25, 0.15])
            v["frac"] = (str(kind), sev)
            if kind == "wedge":
                v["wedge"] = sev
                kyph[lv] = math.atan(sev * v["H"] / v["D"])
            elif kind == "biconcave":
                v["bic"] = sev * 0.9
                v["H"] *= 1 - 0.2 * sev
            else:
                v["H"] *= 1 - sev
                v["wedge"] = 0.25 * sev
                kyph[lv] = math.atan(0.25 * sev * v["H"] / v["D"])
    # degeneration per level
    for lv in LEVELS[:7]:
        v = V[lv]
        wl = DISC_DEG_W[lv]
        v["narrow"] = float(np.clip(deg * wl * rng.uniform(0.1, 0.85), 0, 0.7))
        v["disc"] = DISC_H[lv] * sc * (1.0 - v["narrow"]) * rng.normal(1.0, 0.06)
        v["vacuum"] = v["narrow"] > 0.4 and rng.random() < 0.35
    for lv in LEVELS:
        v = V[lv]
        wl = DISC_DEG_W.get(lv, 0.5)
        o = deg ** 1.5 * wl
        v["ost_top"] = float(o * rng.uniform(0.0, 5.5)) if lv not in ("S2", "S3") else 0.0
        v["ost_bot"] = float(o * rng.uniform(0.0, 5.0)) if lv not in ("S1", "S2", "S3") else 0.0
        v["ost_asym"] = float(rng.uniform(-0.5, 0.5))
        below = v.get("narrow", 0.0)
        v["scl_top"] = 0.0
        v["scl_bot"] = 0.18 * below * deg * rng.uniform(0.4, 1.2)
        v["waist"] = float(rng.uniform(1.0, 2.4) * sc)
        v["conc_top"] = float(rng.uniform(0.6, 1.8))
        v["conc_bot"] = float(rng.uniform(0.6, 1.8))
        v["facet"] = 1.0 + 0.45 * deg * rng.uniform(0.3, 1.0) * DISC_DEG_W.get(lv, 0.6)
        v["vscale"] = float(rng.normal(1.0, 0.05))
        if v["frac"]:
            v["scl_top"] += 0.07 * rng.uniform(0.5, 1.5)
    # upper-endplate sclerosis mirrors the lower one of the vertebra above
    for a, b in zip(LEVELS[:-1], LEVELS[1:]):
        V[b]["scl_top"] += V[a]["scl_bot"] * rng.uniform(0.6, 1.1)
    # --- spinal curve, integrated upward from the S1 upper endplate ---
    SS = float(np.clip(rng.normal(38, 7), 22, 55)) * DEG
    LL = float(np.clip(rng.normal(50 - 0.12 * (P["age"] - 50), 9), 22, 75)) * DEG
    segs = []
    for lv in ["L5", "L4", "L3", "L2", "L1", "T12", "T11"]:
        segs.append(("disc", lv, V[lv]["disc"]))
        segs.append(("body", lv, V[lv]["H"]))
    ends = np.cumsum([s[2] for s in segs])
    total = float(ends[-1])
    s_l1 = float(ends[9])
    ds = 0.5
    s = np.arange(0, total + 2 * ds, ds)
    x = np.clip(s / s_l1, 0, 1)
    phi = SS - LL * (1 - (1 - x) ** 1.5) + np.maximum(s - s_l1, 0) * 0.0025
    for k, sg in enumerate(segs):
        if sg[0] == "body" and sg[1] in kyph:
            phi += kyph[sg[1]] * (s > ends[k] - sg[2] / 2)
    scol = float(rng.normal(0, 4.0) + (rng.random() < 0.25) * rng.normal(0, 9.0)) * DEG
    oblq = float(rng.normal(0, 2.0)) * DEG
    psi = scol * np.sin(math.pi * s / total * rng.uniform(0.8, 1.6) + rng.uniform(0, 2 * math.pi)) + oblq
    tx, ty, tz = np.sin(psi), -np.sin(phi) * np.cos(psi), np.cos(phi) * np.cos(psi)
    px = np.concatenate([[0], np.cumsum((tx[1:] + tx[:-1]) * 0.5 * ds)])
    py = np.concatenate([[0], np.cumsum((ty[1:] + ty[:-1]) * 0.5 * ds)])
    pz = np.concatenate([[0], np.cumsum((tz[1:] + tz[:-1]) * 0.5 * ds)])
    slip_lv = None
    if rng.random() < 0.05 + 0.15 * deg:
        slip_lv = "L4" if rng.random() < 0.7 else "L5"
        slip = float(rng.uniform(3, 9) * sc)
    shift = np.zeros(3)
    for k, sg in enumerate(segs):
        if sg[0] != "body":
            continue
        lv = sg[1]
        sm = ends[k] - sg[2] / 2
        i = int(round(sm / ds))
        t = np.array([tx[i], ty[i], tz[i]])
        if lv == slip_lv:
            shift = np.array([0, -slip, 0])     # anterolisthesis of this level and all above
        V[lv]["c"] = np.array([px[i], py[i], pz[i]]) + shift
        V[lv]["t"] = t / np.linalg.norm(t)
    # sacrum: continue downward with kyphotic increase
    t0 = np.array([0, -math.sin(SS), math.cos(SS)])
    c = -t0 * V["S1"]["H"] / 2
    V["S1"]["c"], V["S1"]["t"] = c, t0
    prev, ang = V["S1"], SS
    for lv in ("S2", "S3"):
        ang2 = ang + rng.uniform(10, 18) * DEG
        t1 = np.array([0, -math.sin(ang2), math.cos(ang2)])
        c = prev["c"] - prev["t"] * prev["H"] / 2 - t1 * (2.2 + V[lv]["H"] / 2)
        V[lv]["c"], V[lv]["t"] = c, t1
        prev, ang = V[lv], ang2
    # axial rotation toward the convexity + random
    xs = np.array([V[lv]["c"][0] for lv in LEVELS])
    xl = np.linspace(xs[0], xs[-1], len(xs))
    for k, lv in enumerate(LEVELS):
        om = -0.9 * DEG * (xs[k] - xl[k]) + rng.normal(0, 1.5) * DEG
        V[lv]["R"] = frame_from_tangent(V[lv]["t"], om)
    o = V["L3"]["c"].copy()
    for lv in LEVELS:
        V[lv]["c"] = V[lv]["c"] - o
    for lv in LEVELS:
        v = V[lv]
        v["vbmd"] = P["vbmd"] * v["vscale"]
    return dict(V=V, SS=SS, LL=LL, slip=slip_lv)


# --------------------------------------------------------------------------
# vertebra components (signed-distance style functions in the local frame:
# x = patient left, y = posterior, z = cranial, origin = body centre)
# --------------------------------------------------------------------------
def _xy_raster(v, rng):
    W, D = v["W"], v["D"]
    hr = 0.25
    m = 14.0
    xs = np.arange(-W / 2 - m, W / 2 + m, hr)
    ys = np.arange(-D / 2 - m, D / 2 + m, hr)
    X, Y = np.meshgrid(xs, ys)
    p = rng.uniform(2.2, 2.8)
    a, b = W / 2, D / 2
    ins = (np.abs(X / a) ** p + np.abs(Y / b) ** p) < 1.0
    nd = rng.uniform(0.2, 0.35) * D
    ins &= ((X / (0.26 * W)) ** 2 + ((Y - b - 0.45 * nd) / nd) ** 2) > 1.0
    di = ndi.distance_transform_edt(ins)
    do = ndi.distance_transform_edt(~ins)
    sd = np.where(ins, -(di - 0.5), do - 0.5) * hr
    return dict(sd=sd.astype(F32), x0=float(xs[0]), y0=float(ys[0]), hr=hr)


def comp_sdf(kind, p, qx, qy, qz):
    if kind in ("ell", "tell"):
        cx, cy, cz, rx, ry, rz = (float(t) for t in p)
        X, Y, Z = (qx - cx) / rx, (qy - cy) / ry, (qz - cz) / rz
        k0 = np.sqrt(X * X + Y * Y + Z * Z)
        k1 = np.sqrt((X / rx) ** 2 + (Y / ry) ** 2 + (Z / rz) ** 2)
        return k0 * (k0 - 1) / np.maximum(k1, 1e-4)
    if kind == "ped":
        cx, cz, rx, rz, y0, y1 = (float(t) for t in p)
        X, Z = (qx - cx) / rx, (qz - cz) / rz
        k0 = np.sqrt(X * X + Z * Z)
        k1 = np.sqrt((X / rx) ** 2 + (Z / rz) ** 2)
        de = k0 * (k0 - 1) / np.maximum(k1, 1e-4)
        return smax(de, np.maximum(qy - y1, y0 - qy), 1.5)
    if kind in ("cap", "plate"):
        plate = kind == "plate"
        a, b, r1a, r1b, r2a, r2b = p
        a, b = np.asarray(a, float), np.asarray(b, float)
        ab = b - a
        L2 = float(ab @ ab)
        ah = ab / math.sqrt(L2)
        n1 = np.cross(ah, [0, 0, 1.0])
        if np.linalg.norm(n1) < 1e-3:
            n1 = np.array([1.0, 0, 0])
        n1 /= np.linalg.norm(n1)
        n2 = np.cross(n1, ah)
        ab, ah, n1, n2 = ([float(t) for t in w] for w in (ab, ah, n1, n2))
        X, Y, Z = qx - F32(a[0]), qy - F32(a[1]), qz - F32(a[2])
        t = np.clip((X * ab[0] + Y * ab[1] + Z * ab[2]) / L2, 0, 1)
        X = X - t * ab[0]
        Y = Y - t * ab[1]
        Z = Z - t * ab[2]
        r1 = r1a + (r1b - r1a) * t
        r2 = r2a + (r2b - r2a) * t
        v1 = (X * n1[0] + Y * n1[1] + Z * n1[2]) / r1
        v2 = (X * n2[0] + Y * n2[1] + Z * n2[2]) / r2
        v3 = (X * ah[0] + Y * ah[1] + Z * ah[2]) / r1
        k0 = np.sqrt(v1 * v1 + v2 * v2 + v3 * v3)
        k1 = np.sqrt((v1 / r1) ** 2 + (v2 / r2) ** 2 + (v3 / r1) ** 2)
        if not plate:
            return k0 * (k0 - 1) / np.maximum(k1, 1e-4)
        # flat plate: 4-norm cross-section (box-like with rounded corners)
        a1, a2, a3 = v1 * v1, v2 * v2, v3 * v3
        k0 = np.sqrt(np.sqrt(a1 * a1 + a2 * a2 + a3 * a3))
        g = np.sqrt((a1 * v1 / r1) ** 2 + (a2 * v2 / r2) ** 2 + (a3 * v3 / r1) ** 2)
        k3 = k0 * k0 * k0
        return (k0 - 1) * k3 / np.maximum(g, 1e-6 * np.maximum(k3, 1e-6))
    raise ValueError(kind)


def body_sdf(v, qx, qy, qz):
    """Vertebral body: tabulated kidney-shaped cross-section distance, waist
    concavity, rim osteophytes, dished endplates, wedge/biconcave shape."""
    W, D, H = v["W"], v["D"], v["H"]
    r = v["xy"]
    sd = r["sd"]
    ny, nx = sd.shape
    inv = 1.0 / r["hr"]
    fy = (qy - r["y0"]) * inv
    np.clip(fy, 0, ny - 1.001, out=fy)
    fx = (qx - r["x0"]) * inv
    np.clip(fx, 0, nx - 1.001, out=fx)
    iy = fy.astype(np.int32)
    ix = fx.astype(np.int32)
    fy -= iy
    fx -= ix
    flat = sd.ravel()
    base = iy * nx
    base += ix
    d0 = flat[base]
    d0 += (flat[base + 1] - d0) * fx
    base += nx
    d1 = flat[base]
    d1 += (flat[base + 1] - d1) * fx
    d1 -= d0
    d1 *= fy
    dr = d0 + d1
    zn = qz * (2.0 / H)
    np.clip(zn, -1, 1, out=zn)
    zn *= zn
    dr += v["waist"] * (1 - zn)
    if v["ost_top"] > 0 or v["ost_bot"] > 0:
        fac = np.clip(0.35 - (1.3 / D) * qy, 0, 1) + np.clip(np.abs(qx) * (0.7 / W), 0, 0.35)
        fac *= 1 + v["ost_asym"] * np.sign(qx)
        e_top = np.clip(1 + (qz - H / 2) * (1 / 5.0), 0, 1)
        e_top *= e_top
        e_bot = np.clip(1 + (-H / 2 - qz) * (1 / 5.0), 0, 1)
        e_bot *= e_bot
        dr -= fac * (v["ost_top"] * e_top + v["ost_bot"] * e_bot)
    rr = (qx * (2.0 / W)) ** 2 + (qy * (2.0 / D)) ** 2
    np.clip(rr, 0, 1, out=rr)
    dep = 1 - rr
    hf = (H / 2) * (1 - v["wedge"] * 0.5) + (H / 2) * (v["wedge"] / D) * qy
    dtop = qz - hf
    dtop += (v["conc_top"] + v["bic"] * H / 2) * dep
    dbot = -qz - hf
    dbot += (v["conc_bot"] + v["bic"] * H / 2) * dep
    return np.maximum(dr, np.maximum(dtop, dbot)), dtop, dbot


def rng_tp(v, sx):
    """Per-vertebra, per-side jitter of the transverse-process tip (dz, dy)."""
    j = v["tp_jit"]
    return (j[0] if sx < 0 else j[1], j[2] if sx < 0 else j[3])


def vertebra_groups(v, P):
    """Return groups of components; components of a group are unioned."""
    lv = v["name"]
    W, D, H = v["W"], v["D"], v["H"]
    sc = P["scale"]
    o = max(v["ost_top"], v["ost_bot"])
    body = ("body", None, (-W / 2 - o - 3, -D / 2 - o - 3, -H / 2 - 4), (W / 2 + o + 3, D / 2 + 2, H / 2 + 4))
    main = [body]
    tps = []
    if lv in ("S2", "S3"):
        main.append(("plate", ((0, D / 2 + 3, 2), (0, D / 2 + 9, -3), 2.5, 2.0, 6.0, 5.0), None, None))
        f = 1.0 if lv == "S2" else 0.7
        for sx in (-1, 1):
            main.append(("tell", (sx * (W / 2 + 5 * f), 3, 0, 12 * f * sc, 9 * f * sc, 12 * f * sc), None, None))
        return [main]
    if lv == "S1":
        xp = W / 2 - 7
        for sx in (-1, 1):
            main.append(("tell", (sx * (W / 2 + 13 * sc), 2, -2, 18 * sc, 13 * sc, 13 * sc), None, None))
            main.append(("tell", (sx * (W / 2 + 6 * sc), 6, -24 * sc, 13 * sc, 10 * sc, 19 * sc), None, None))
            main.append(("ped", (sx * xp, H * 0.1, 8.0 * sc, 8.0 * sc, D / 2 - 6, D / 2 + 10), None, None))
            f = v["facet"]
            main.append(("ell", (sx * (xp + 3), D / 2 + 13, H / 2 + 6, 4.5 * f, 6.5 * f, 8.0 * f), None, None))
            main.append(("plate", ((sx * xp, D / 2 + 9, 0), (0, D / 2 + 16, -2), 3.0, 3.0, 8.0, 7.0), None, None))
        main.append(("plate", ((0, D / 2 + 15, -1), (0, D / 2 + 15 + SP_LEN[lv] * sc, -4), 3, 2.5, 7, 6), None, None))
        return [main]
    rx, rz = PED_RX[lv] * sc, PED_RZ[lv] * sc
    xp = W / 2 - 5.0 * sc + (2.5 * sc if lv == "L5" else 0)
    zp = 0.18 * H
    f = v["facet"]
    lum = lv.startswith("L")
    for sx in (-1, 1):
        main.append(("ped", (sx * xp, zp, rx, rz, D / 2 - 5, D / 2 + 13 * sc), None, None))
        # lamina
        main.append(("plate", ((sx * xp, D / 2 + 12 * sc, -1), (0, D / 2 + 21 * sc, -3),
                             3.3 * sc, 3.0 * sc, 9.0 * sc, 8.5 * sc), None, None))
        # superior / inferior articular processes
        if lum:
            main.append(("ell", (sx * (xp + 2.5 * sc), D / 2 + 15 * sc, H / 2 + 3, 3.8 * sc * f, 6.5 * sc * f,
                                 7.0 * sc * f), None, None))
            main.append(("ell", (sx * (xp - 1.5 * sc), D / 2 + 19 * sc, -H / 2 - 4, 3.5 * sc * f, 5.5 * sc * f,
                                 7.5 * sc * f), None, None))
        else:
            main.append(("ell", (sx * (xp + 1), D / 2 + 12 * sc, H / 2 + 2, 4 * sc, 3 * sc, 6 * sc), None, None))
            main.append(("ell", (sx * (xp - 1), D / 2 + 16 * sc, -H / 2 - 3, 4 * sc, 3 * sc, 6 * sc), None, None))
        # transverse process (own group: thin, long)
        L = TP_LEN[lv] * sc
        r1, r2 = (2.6 * sc, 4.5 * sc) if lv != "L5" else (4.5 * sc, 7.0 * sc)
        a = (sx * (xp + rx * 0.5), D / 2 + 9 * sc, 0.1 * H)
        b = (sx * (W / 2 + L), D / 2 + (6 if lum else 13) * sc, 0.1 * H + (2 if lum else 4))
        up = rng_tp(v, sx)
        b = (b[0], b[1] + up[1], b[2] + up[0])
        tps.append([("plate", (a, b, r1, r1 * 0.75, r2 * 1.3, r2 * 0.75), None, None)])
    sl, dr = SP_LEN[lv] * sc, SP_DROP[lv] * sc
    a = (0, D / 2 + 19 * sc, -2)
    b = (0, D / 2 + 19 * sc + sl, -2 - dr)
    main.append(("plate", (a, b, 2.6 * sc, 2.4 * sc, 6.5 * sc, 9.5 * sc), None, None))
    main.append(("ell", (0, b[1] - 2, b[2] - 0.5, 3.4 * sc, 4.0 * sc, 8.5 * sc), None, None))
    return [main] + tps


def _comp_bbox(kind, p, lo, hi):
    if lo is not None:
        return np.array(lo, float), np.array(hi, float)
    if kind in ("ell", "tell"):
        c, r = np.array(p[:3]), np.array(p[3:])
        return c - r - 1, c + r + 1
    if kind == "ped":
        cx, cz, rx, rz, y0, y1 = p
        return np.array([cx - rx - 1, y0 - 1, cz - rz - 1]), np.array([cx + rx + 1, y1 + 1, cz + rz + 1])
    if kind in ("cap", "plate"):
        a, b = np.array(p[0]), np.array(p[1])
        r = max(p[2:]) + 1
        return np.minimum(a, b) - r, np.maximum(a, b) + r
    raise ValueError(kind)


class View:
    """Point-source projection geometry: source S, detector basis eu (image
    columns), ev (image rows), ew (central ray), SID; model grid of square
    pixels of size hm whose top-left corner is at detector coords (U0, V0)."""

    def __init__(self, S, eu, ev, ew, SID, U0, V0, hm, nv, nu):
        self.S, self.eu, self.ev, self.ew = (np.asarray(a, float) for a in (S, eu, ev, ew))
        self.SID, self.U0, self.V0, self.hm, self.nv, self.nu = SID, U0, V0, hm, nv, nu
        self.U = U0 + (np.arange(nu) + 0.5) * hm
        self.Vc = V0 + (np.arange(nv) + 0.5) * hm

    def project(self, X):
        rel = np.asarray(X, float) - self.S
        t = rel @ self.ew
        M = self.SID / t
        return M * (rel @ self.eu), M * (rel @ self.ev), M

    def box(self, u0, u1, v0, v1):
        j0 = max(0, int(math.floor((u0 - self.U0) / self.hm)))
        j1 = min(self.nu, int(math.ceil((u1 - self.U0) / self.hm)))
        i0 = max(0, int(math.floor((v0 - self.V0) / self.hm)))
        i1 = min(self.nv, int(math.ceil((v1 - self.V0) / self.hm)))
        if j1 <= j0 or i1 <= i0:
            return None
        return i0, i1, j0, j1

    def sphere_box(self, c, rad):
        u, v, M = self.project(c)
        R = M * rad * 1.08 + 2 * self.hm
        return self.box(u - R, u + R, v - R, v + R)

    def rays(self, i0, i1, j0, j1):
        U = self.U[j0:j1][None, :]
        V = self.Vc[i0:i1][:, None]
        d = [self.SID * self.ew[k] + U * self.eu[k] + V * self.ev[k] for k in range(3)]
        n = np.sqrt(d[0] ** 2 + d[1] ** 2 + d[2] ** 2)
        return d[0] / n, d[1] / n, d[2] / n


def render_vertebra(view, v, P, tex, Mmap, Mar, dw=0.6):
    c, R = v["c"], v["R"]
    u_c, v_c, Mg = view.project(c)
    d = (c - view.S) / np.linalg.norm(c - view.S)
    A = R.T @ np.column_stack([view.eu / Mg, view.ev / Mg, d])
    Ainv = np.linalg.inv(A)
    A = [[float(a) for a in row] for row in A]
    A = np.array(A, dtype=object)
    h = max(view.hm / Mg, dw)
    rc, vb = P["rho_cort"], v["vbmd"]
    tcb, tcp = P["tc_body"], P["tc_post"]
    vped = vb * 1.2 + 0.02                 # pedicles stay tube-like (ring in AP)
    vpost = 0.22 + 1.3 * vb               # arch, processes: mostly compact bone
    for comps in vertebra_groups(v, P):
        boxes = [_comp_bbox(k, p, lo, hi) for (k, p, lo, hi) in comps]
        glo = np.min([b[0] for b in boxes], axis=0)
        ghi = np.max([b[1] for b in boxes], axis=0)
        corners = np.array([[x, y, z] for x in (glo[0], ghi[0]) for y in (glo[1], ghi[1]) for z in (glo[2], ghi[2])])
        uvw = corners @ Ainv.T
        gb = view.box(u_c + uvw[:, 0].min(), u_c + uvw[:, 0].max(), v_c + uvw[:, 1].min(), v_c + uvw[:, 1].max())
        if gb is None:
            continue
        i0, i1, j0, j1 = gb
        w0, w1 = uvw[:, 2].min(), uvw[:, 2].max()
        nw = int(math.ceil((w1 - w0) / dw))
        du = (view.U[j0:j1] - u_c).astype(F32)
        dv = (view.Vc[i0:i1] - v_c).astype(F32)
        ww = (w0 + (np.arange(nw) + 0.5) * dw).astype(F32)
        shape = (i1 - i0, j1 - j0, nw)
        dout = np.full(shape, 30.0, F32)
        din = np.full(shape, 30.0, F32)
        extra = np.zeros(shape[:2], F32)
        for (kind, p, lo, hi), (blo, bhi) in zip(comps, boxes):
            cc = np.array([[x, y, z] for x in (blo[0], bhi[0]) for y in (blo[1], bhi[1]) for z in (blo[2], bhi[2])])
            q = cc @ Ainv.T
            si0 = max(0, int(math.floor((v_c + q[:, 1].min() - view.V0) / view.hm)) - i0)
            si1 = min(shape[0], int(math.ceil((v_c + q[:, 1].max() - view.V0) / view.hm)) - i0)
            sj0 = max(0, int(math.floor((u_c + q[:, 0].min() - view.U0) / view.hm)) - j0)
            sj1 = min(shape[1], int(math.ceil((u_c + q[:, 0].max() - view.U0) / view.hm)) - j0)
            sl0 = max(0, int(math.floor((q[:, 2].min() - w0) / dw)))
            sl1 = min(nw, int(math.ceil((q[:, 2].max() - w0) / dw)))
            if si1 <= si0 or sj1 <= sj0 or sl1 <= sl0:
                continue
            U_ = du[sj0:sj1][None, :, None]
            V_ = dv[si0:si1][:, None, None]
            W_ = ww[sl0:sl1][None, None, :]
            qx = A[0, 0] * U_ + A[0, 1] * V_ + A[0, 2] * W_
            qy = A[1, 0] * U_ + A[1, 1] * V_ + A[1, 2] * W_
            qz = A[2, 0] * U_ + A[2, 1] * V_ + A[2, 2] * W_
            sub = (slice(si0, si1), slice(sj0, sj1), slice(sl0, sl1))
            if kind == "body":
                dc, dtop, dbot = body_sdf(v, qx, qy, qz)
                tc = tcb
                oin = np.clip(0.5 - (dc + tc) / h, 0, 1)
                # trabecular texture (tile sampled in the vertebra's own frame)
                off = v["tex_off"]
                ti = tex["inv"]
                idx = (qz * ti + off[2]).astype(np.int32)
                idx &= 127
                idx <<= 7
                idx |= (qy * ti + off[1]).astype(np.int32) & 127
                idx <<= 7
                idx |= (qx * ti + off[0]).astype(np.int32) & 127
                t3 = tex["f"][idx]
                dens = vb * (t3 - 1.0)
                for key, dd in (("scl_top", dtop), ("scl_bot", dbot)):
                    if v[key] > 0:                      # sclerotic band under the endplate
                        e = np.clip(1 + dd * (1 / 3.5), 0, 1)
                        e *= e
                        dens += v[key] * e
                extra[si0:si1, sj0:sj1] += (dens * oin).sum(-1)
                k = 0.0
            elif kind == "tell":              # cancellous part of the sacrum
                dc = comp_sdf(kind, p, qx, qy, qz)
                tc = tcb
                k = 5.0
            else:
                dc = comp_sdf(kind, p, qx, qy, qz)
                tc = tcp
                oin = np.clip(0.5 - (dc + tc) / h, 0, 1)
                extra[si0:si1, sj0:sj1] += ((vped if kind == "ped" else vpost) - vb) * oin.sum(-1)
                k = 2.5 if kind == "ped" else 0.0
            if k > 0:
                dout[sub] = smin(dout[sub], dc, k)
                din[sub] = smin(din[sub], dc + tc, k)
            else:
                np.minimum(dout[sub], dc, out=dout[sub])
                np.minimum(din[sub], dc + tc, out=din[sub])
        dout *= -1.0 / h
        dout += 0.5
        np.clip(dout, 0, 1, out=dout)
        din *= -1.0 / h
        din += 0.5
        np.clip(din, 0, 1, out=din)
        so = dout.sum(-1)
        si = din.sum(-1)
        Mmap[i0:i1, j0:j1] += 0.1 * dw * (rc * (so - si) + vb * si + extra)
        Mar[i0:i1, j0:j1] += 0.1 * dw * si


def make_texture(P, rng, n=128, vox=0.4):
    """Band-pass, vertically elongated random field -> soft-thresholded
    'plate/rod' occupancy whose volume fraction and anisotropy follow T."""
    T = P["T"]
    an = float(np.clip(1.6 - 0.32 * T, 1.2, 3.2))          # vertical elongation
    lam = float(np.clip(1.75 - 0.22 * T, 1.2, 2.9))        # dominant spacing, mm
    k = np.fft.fftfreq(n, vox)
    kr = np.fft.rfftfreq(n, vox)
    KZ = k[:, None, None] * an
    KY = k[None, :, None]
    KX = kr[None, None, :]
    K = np.sqrt(KX ** 2 + KY ** 2 + KZ ** 2)
    k0 = 1.0 / lam
    S = np.exp(-0.5 * ((K - k0) / (0.45 * k0)) ** 2)
    wn = rng.standard_normal((n, n, n)).astype(F32)
    G = np.fft.irfftn(np.fft.rfftn(wn) * np.sqrt(S), s=(n, n, n), axes=(0, 1, 2)).astype(F32)
    G = (G - G.mean()) / G.std()
    bv = float(np.clip(0.42 + 0.06 * T, 0.13, 0.55))
    thr = np.quantile(G[::3, ::3, ::3], 1 - bv)
    f = 1.0 / (1.0 + np.exp(-(G - thr) / 0.3))
    f = (f / f.mean()).astype(F32)
    return dict(f=f.ravel(), n=n, inv=1.0 / vox)


# --------------------------------------------------------------------------
# analytic (ray/ellipsoid) objects
# --------------------------------------------------------------------------
def ell_chord(view, c, R, r, planes=()):
    """Chord length (mm) of each model-pixel ray through an ellipsoid
    (centre c, rotation R: columns = local axes, semi-axes r), optionally
    clipped by half-spaces n.(X - p0) <= 0."""
    c = np.asarray(c, float)
    r = np.asarray(r, float)
    b = view.sphere_box(c, r.max())
    if b is None:
        return None
    dx, dy, dz = view.rays(*b)
    o = (R.T @ (view.S - c)) / r
    e0 = (R[0, 0] * dx + R[1, 0] * dy + R[2, 0] * dz) / r[0]
    e1 = (R[0, 1] * dx + R[1, 1] * dy + R[2, 1] * dz) / r[1]
    e2 = (R[0, 2] * dx + R[1, 2] * dy + R[2, 2] * dz) / r[2]
    ee = e0 * e0 + e1 * e1 + e2 * e2
    cx = o[1] * e2 - o[2] * e1
    cy = o[2] * e0 - o[0] * e2
    cz = o[0] * e1 - o[1] * e0
    q = np.maximum(ee - (cx * cx + cy * cy + cz * cz), 0)
    sq = np.sqrt(q)
    if not planes:
        ch = 2 * sq / ee
    else:
        oe = o[0] * e0 + o[1] * e1 + o[2] * e2
        t1 = (-oe - sq) / ee
        t2 = (-oe + sq) / ee
        for n_, p0 in planes:
            n_ = np.asarray(n_, float)
            s0 = float(n_ @ (view.S - np.asarray(p0, float)))
            sd = n_[0] * dx + n_[1] * dy + n_[2] * dz
            sd = np.where(np.abs(sd) < 1e-9, 1e-9, sd)
            tc = -s0 / sd
            t2 = np.where(sd > 0, np.minimum(t2, tc), t2)
            t1 = np.where(sd < 0, np.maximum(t1, tc), t1)
        ch = np.where(q > 0, np.maximum(t2 - t1, 0), 0)
    return b, ch.astype(F32)


def add_chord(mp, res, w):
    if res is None:
        return
    (i0, i1, j0, j1), ch = res
    mp[i0:i1, j0:j1] += w * ch


def add_bone_shell(view, maps, c, R, r, tc, rho_c, rho_t, planes=()):
    out = ell_chord(view, c, R, r, planes)
    if out is None:
        return
    rin = np.maximum(np.asarray(r, float) - tc, 0.3)
    inn = ell_chord(view, c, R, rin, planes)
    (i0, i1, j0, j1), co = out
    (k0, k1, l0, l1), ci = inn
    m = rho_c * co
    m[k0 - i0:k1 - i0, l0 - j0:l1 - j0] += (rho_t - rho_c) * ci
    maps["M"][i0:i1, j0:j1] += 0.1 * m


def add_bone_solid(view, maps, c, R, r, rho):
    """Cancellous mass without a visible cortical rim (alae, ilium body)."""
    res = ell_chord(view, c, R, r)
    if res is not None:
        (i0, i1, j0, j1), ch = res
        maps["M"][i0:i1, j0:j1] += 0.1 * rho * ch


def tube_chords(view, pts, r_out, r_in):
    """Projected path length through a curved bone tube (rib) with a
    cortical wall, evaluated segment by segment in detector space."""
    u, v, M = view.project(pts)
    pad = r_out * M.max() * 1.2 + 2 * view.hm
    box = view.box(u.min() - pad, u.max() + pad, v.min() - pad, v.max() + pad)
    if box is None:
        return None
    i0, i1, j0, j1 = box
    best = np.full((i1 - i0, j1 - j0), 1e9, F32)
    cho = np.zeros_like(best)
    chi = np.zeros_like(best)
    for k in range(len(pts) - 1):
        pa, pb = np.array([u[k], v[k]]), np.array([u[k + 1], v[k + 1]])
        Mk = 0.5 * (M[k] + M[k + 1])
        ro = r_out * Mk
        sb = view.box(min(pa[0], pb[0]) - ro - view.hm, max(pa[0], pb[0]) + ro + view.hm,
                      min(pa[1], pb[1]) - ro - view.hm, max(pa[1], pb[1]) + ro + view.hm)
        if sb is None:
            continue
        a0, a1, b0, b1 = sb
        UU = view.U[b0:b1][None, :]
        VV = view.Vc[a0:a1][:, None]
        ab = pb - pa
        L2 = max(ab @ ab, 1e-9)
        t = np.clip(((UU - pa[0]) * ab[0] + (VV - pa[1]) * ab[1]) / L2, 0, 1)
        d2 = (UU - pa[0] - t * ab[0]) ** 2 + (VV - pa[1] - t * ab[1]) ** 2
        tang = pts[k + 1] - pts[k]
        tang = tang / np.linalg.norm(tang)
        dr = (0.5 * (pts[k] + pts[k + 1]) - view.S)
        dr /= np.linalg.norm(dr)
        sin_t = max(0.3, float(np.linalg.norm(np.cross(tang, dr))))
        sl = (slice(a0 - i0, a1 - i0), slice(b0 - j0, b1 - j0))
        upd = d2 < best[sl]
        best[sl] = np.where(upd, d2, best[sl])
        co = 2 * np.sqrt(np.maximum(ro * ro - d2, 0)) / Mk / sin_t
        ci = 2 * np.sqrt(np.maximum((r_in * Mk) ** 2 - d2, 0)) / Mk / sin_t
        cho[sl] = np.where(upd, co, cho[sl])
        chi[sl] = np.where(upd, ci, chi[sl])
    return box, cho, chi


# --------------------------------------------------------------------------
# whole patient -> material path-length maps for one view
# --------------------------------------------------------------------------
def build_soft(P, spine, rng):
    """Patient-level soft-tissue description (shared by both views)."""
    V = spine["V"]
    male = P["sex"] == "M"
    bmi = P["bmi"]
    S = {}
    zs = np.array([V[lv]["c"][2] for lv in LEVELS])
    order = np.argsort(zs)
    S["z_tab"] = zs[order]
    S["x_tab"] = np.array([V[lv]["c"][0] for lv in LEVELS])[order]
    S["y_tab"] = np.array([V[lv]["c"][1] for lv in LEVELS])[order]
    S["w_tab"] = np.array([V[lv]["W"] for lv in LEVELS])[order]
    S["a0"] = (118 + 3.3 * (bmi - 22)) * (1.06 if male else 1.0) * rng.normal(1, 0.04)
    S["b0"] = (88 + 4.0 * (bmi - 22)) * (1.08 if male else 1.0) * rng.normal(1, 0.05)
    S["belly"] = float(np.clip(0.012 * (bmi - 24) + rng.normal(0, 0.04), 0, 0.35))
    S["fsc"] = float(np.clip((7 + 1.9 * (bmi - 18)) * (0.8 if male else 1.15) * rng.normal(1, 0.15), 4, 70))
    S["vf"] = float(np.clip(0.08 + 0.012 * (bmi - 20) + 0.05 * male + 0.002 * (P["age"] - 40), 0.03, 0.45))
    D3 = V["L3"]["D"]
    S["y_back"] = D3 / 2 + 50 * P["scale"] + rng.uniform(20, 35) + 0.8 * S["fsc"]
    S["z_crest"] = V["L4"]["c"][2] - rng.uniform(-5, 15)
    S["z_w"] = V["L2"]["c"][2]
    S["cx"] = rng.normal(0, 4)
    S["psoas_fat"] = float(np.clip(1.5 + 0.35 * (bmi - 20) + rng.normal(0, 1.5), 0.5, 12))
    S["psoas_k"] = rng.normal(1.0, 0.12) * (1.15 if male else 1.0) * (1.0 - 0.004 * max(0, P["age"] - 50))
    S["noise_seed"] = int(rng.integers(0, 2 ** 31))
    # kidneys + perirenal fat (left kidney higher)
    S["kid"] = []
    for sx in (-1, 1):
        zc = V["L1"]["c"][2] + (-12 if sx < 0 else 4) + rng.normal(0, 8)
        c = np.array([sx * (V["L1"]["W"] / 2 + 40 + rng.normal(0, 5)), 22 + rng.normal(0, 5), zc])
        R = rot([0, 0, 1], sx * rng.uniform(20, 40) * DEG) @ rot([0, 1, 0], -sx * rng.uniform(8, 20) * DEG)
        r = np.array([27, 15, 54]) * rng.normal(1, 0.06) * (P["scale"] ** 0.5)
        pf = float(np.clip(4 + 1.2 * (bmi - 20) + rng.normal(0, 3), 2, 30))
        S["kid"].append((c, R, r, pf))
    # bowel gas pockets (ellipsoids), stool mottling, stomach bubble
    gas = []
    gasiness = rng.uniform(0, 1)
    a_in, b_in = S["a0"] - S["fsc"], S["b0"] - S["fsc"]
    yc = S["y_back"] - S["b0"] * 0.95
    zL1, zL3, zL5, zS1 = (V[n]["c"][2] for n in ("L1", "L3", "L5", "S1"))
    path = np.array([
        [-0.62 * a_in, yc - 0.15 * b_in, zS1 - 25], [-0.66 * a_in, yc - 0.1 * b_in, zL3],
        [-0.58 * a_in, yc - 0.25 * b_in, zL1 + 10], [-0.2 * a_in, yc - 0.6 * b_in, zL3 - rng.uniform(0, 40)],
        [0.3 * a_in, yc - 0.55 * b_in, zL3 + rng.uniform(-10, 30)], [0.62 * a_in, yc - 0.2 * b_in, zL1 + 30],
        [0.7 * a_in, yc + 0.05 * b_in, zL3], [0.62 * a_in, yc + 0.0 * b_in, zS1],
        [0.2 * a_in, yc + 0.25 * b_in, zS1 - 40], [0.0, V["S2"]["c"][1] - 35, zS1 - 80]])
    seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
    cum = np.concatenate([[0], np.cumsum(seg)])
    # colon gas: sausage-like runs of overlapping blobs whose calibre is
    # modulated every ~1 cm (haustra); runs are placed along the colon path
    n_runs = int(rng.poisson(2 + 6 * gasiness))
    for _ in range(n_runs):
        s0 = rng.uniform(0, cum[-1])
        run = rng.uniform(15, 90)
        cal = rng.uniform(5, 13)
        ph = rng.uniform(0, 2 * math.pi)
        per = rng.uniform(9, 14)
        jit = rng.normal(0, 4, 3)
        step = 4.0
        along = 2.2 * step
        wgt = 2 * step / (math.pi * along)
        for s_ in np.arange(s0, min(s0 + run, cum[-1]), step):
            k = max(0, min(int(np.searchsorted(cum, s_)) - 1, len(seg) - 1))
            tt = (s_ - cum[k]) / seg[k]
            c = path[k] + tt * (path[k + 1] - path[k]) + jit
            t = (path[k + 1] - path[k]) / seg[k]
            r = cal * (0.9 + 0.1 * math.cos(2 * math.pi * (s_ - s0) / per + ph)) * rng.uniform(0.96, 1.04)
            gas.append((c + rng.normal(0, 0.4, 3), frame_from_tangent(t, 0.0),
                        np.array([r, r * rng.uniform(0.7, 1.0), along]), wgt))
    for _ in range(int(rng.poisson(1.2 * gasiness + 0.3))):      # stool: mottled small bubbles
        k = int(rng.integers(0, 4))
        c0 = path[k] + rng.normal(0, 10, 3)
        for _ in range(int(rng.integers(12, 40))):
            r = rng.uniform(1.0, 3.5)
            gas.append((c0 + rng.normal(0, 11, 3), rot(rng.normal(size=3), rng.uniform(0, 3)),
                        np.array([r, r, r]) * rng.uniform(0.6, 1.4, 3), 1.0))
    for _ in range(int(rng.poisson(2.5 * gasiness))):             # small-bowel loops: bent tubes
        c = np.array([rng.normal(0, 0.3 * a_in), yc - rng.uniform(0.2, 0.6) * b_in, rng.uniform(zL5 - 20, zL1)])
        r = rng.uniform(5, 10)
        ax = rng.normal(size=3)
        ax[2] *= 0.3
        ax /= np.linalg.norm(ax)
        bend = rng.normal(size=3) * 0.08
        for j in range(int(rng.integers(3, 9))):
            gas.append((c + ax * j * r * 0.9, np.eye(3), np.array([r, r, r]) * rng.uniform(0.8, 1.1), 1.0))
            ax = ax + bend
            ax /= np.linalg.norm(ax)
    if rng.random() < 0.3:                                         # gastric fundus air
        r = rng.uniform(20, 40)
        c0 = np.array([0.45 * a_in, yc - 0.2 * b_in, V["T11"]["c"][2] + rng.uniform(20, 60)])
        for j in range(4):
            gas.append((c0 + rng.normal(0, 6, 3), rot(rng.normal(size=3), rng.uniform(0, 3)),
                        np.array([r, r * 0.8, r * 0.55]) * rng.uniform(0.6, 0.9), 0.6))
    # vacuum discs (gas inside degenerated discs)
    for up, lo_ in zip(LEVELS[:7], LEVELS[1:8]):
        if V[up].get("vacuum"):
            c = 0.5 * (V[up]["c"] + V[lo_]["c"])
            R = V[up]["R"]
            gas.append((c + R @ np.array([0, -V[up]["D"] * 0.1, 0]), R,
                        np.array([V[up]["W"] * 0.22, V[up]["D"] * 0.18, 0.9]), 1.0))
    S["gas"] = gas
    # lung bases (low-density) at the top corners
    S["lung"] = []
    zT12 = V["T12"]["c"][2]
    if rng.random() < 0.4:
        for sx in (-1, 1):
            c = np.array([sx * rng.uniform(75, 95), 35, zT12 + 105 + rng.uniform(-5, 40) + (10 if sx < 0 else 0)])
            S["lung"].append((c, rot([1, 0, 0], -15 * DEG), np.array([58, 70, 110]) * rng.normal(1, 0.05)))
    # aortic calcification
    calcs = []
    lam = max(0.0, (P["age"] - 48) * 0.35) * (1.4 if male else 1.0)
    nplq = int(rng.poisson(lam))
    ra = 10 + 0.04 * P["age"]
    for _ in range(nplq):
        z = rng.uniform(V["L4"]["c"][2] - 5, V["T12"]["c"][2])
        xs_, ys_ = np.interp(z, S["z_tab"], S["x_tab"]), np.interp(z, S["z_tab"], S["y_tab"])
        ac = np.array([xs_ + 16, ys_ - V["L3"]["D"] / 2 - ra - 3, z])
        th = rng.choice([math.pi / 2, -math.pi / 2, 0.0, math.pi]) + rng.normal(0, 0.5)
        nrm = np.array([math.cos(th), math.sin(th), 0])
        c = ac + ra * nrm
        circ = np.array([-math.sin(th), math.cos(th), 0])
        R = np.column_stack([nrm, circ, [0, 0, 1]])
        r = np.array([rng.uniform(0.4, 0.9), rng.uniform(2, 6), rng.uniform(3, 12)])
        calcs.append((c, R, r, rng.uniform(0.5, 1.0)))
    S["calcs"] = calcs
    # ribs 11 and 12: centrelines in the patient frame
    ribs = []
    for lv, Ln in (("T11", rng.uniform(100, 160)), ("T12", rng.uniform(45, 120))):
        if lv == "T11" and rng.random() < 0.4:
            continue
        v = V[lv]
        for sx in (-1, 1):
            p0 = v["c"] + v["R"] @ np.array([sx * (v["W"] / 2 + 6), v["D"] / 2 + 8, 4.0])
            pts = [p0]
            head = math.atan2(0.45, 0.9 * sx)
            slope = rng.uniform(18, 32) * DEG
            ds_ = 6.0
            for k in range(int(Ln / ds_)):
                head -= sx * (0.0065 * ds_) * rng.uniform(0.8, 1.2)
                step = np.array([math.cos(head) * math.cos(slope), math.sin(head) * math.cos(slope),
                                 -math.sin(slope)]) * ds_
                pts.append(pts[-1] + step)
            ribs.append(np.array(pts))
    S["ribs"] = ribs
    return S


def soft_maps(view, P, spine, S, maps):
    """Body outline, subcutaneous/visceral fat, psoas, kidneys, gas, lungs."""
    V = spine["V"]
    nv, nu = view.nv, view.nu
    dx, dy, dz = view.rays(0, nv, 0, nu)
    # ray's z where it crosses the spine depth
    t_iso = np.linalg.norm(view.iso - view.S)
    z0 = view.S[2] + t_iso * dz / np.maximum(dx * view.ew[0] + dy * view.ew[1] + dz * view.ew[2], 1e-6)
    a = S["a0"] * (1 + 0.10 * ((z0 - S["z_w"]) / 120.0) ** 2) + 0.45 * np.maximum(S["z_crest"] - z0, 0)
    b = S["b0"] * (1 + S["belly"] * np.exp(-((z0 - V["L4"]["c"][2]) / 90.0) ** 2))
    yb = S["y_back"]
    cy = yb - 0.93 * b
    sx0, sy0 = view.S[0], view.S[1]

    def chord2(cx, cy_, aa, bb, yclip=None):
        ox, oy = (sx0 - cx) / aa, (sy0 - cy_) / bb
        ex, ey = dx / aa, dy / bb
        ee = ex * ex + ey * ey
        cr = ox * ey - oy * ex
        q = np.maximum(ee - cr * cr, 0)
        sq = np.sqrt(q)
        if yclip is None:
            return 2 * sq / ee
        oe = ox * ex + oy * ey
        t1, t2 = (-oe - sq) / ee, (-oe + sq) / ee
        sdy = np.where(np.abs(dy) < 1e-9, 1e-9, dy)
        tc = (yclip - sy0) / sdy
        t2 = np.where(dy > 0, np.minimum(t2, tc), t2)
        t1 = np.where(dy < 0, np.maximum(t1, tc), t1)
        return np.where(q > 0, np.maximum(t2 - t1, 0), 0)

    fsc = S["fsc"]
    total = chord2(S["cx"], cy, a, b, yb)
    inner = chord2(S["cx"], cy - 0.15 * fsc, np.maximum(a - fsc, 20), np.maximum(b - 1.1 * fsc, 20), yb - 0.8 * fsc)
    vfield = S["vf"] * (1 + 0.35 * view.lowfreq)
    F = (total - inner) + vfield * inner
    # psoas with its fat sheath
    zt, zb = V["T12"]["c"][2] - 10, V["S1"]["c"][2] - 10
    sfrac = np.clip((zt - z0) / (zt - zb), 0, 1.15)
    xs = np.interp(z0, S["z_tab"], S["x_tab"])
    ys = np.interp(z0, S["z_tab"], S["y_tab"])
    ws = np.interp(z0, S["z_tab"], S["w_tab"])
    k = S["psoas_k"]
    rx = (4 + 17 * sfrac) * k
    ry = (5 + 14 * sfrac) * k
    live = z0 < zt + 5
    for sx in (-1, 1):
        cx = xs + sx * (ws / 2 + 0.75 * rx)
        cyy = ys + 3 - 8 * sfrac
        ps = chord2(cx, cyy, rx, ry) * live
        sh = chord2(cx, cyy, rx + S["psoas_fat"], ry + S["psoas_fat"]) * live
        F += (sh - ps) * (1 - vfield) - ps * vfield
    for (c, R, r, pf) in S["kid"]:
        kd = ell_chord(view, c, R, r)
        pr = ell_chord(view, c, R, r + pf)
        if pr is not None:
            (i0, i1, j0, j1), chp = pr
            vv = vfield[i0:i1, j0:j1]
            F[i0:i1, j0:j1] += chp * (1 - vv)
            if kd is not None:
                (k0, k1, l0, l1), chk = kd
                F[k0:k1, l0:l1] -= chk * (1 - vfield[k0:k1, l0:l1]) + chk * vfield[k0:k1, l0:l1]
    G = np.zeros((nv, nu), F32)
    for (c, R, r, w) in S["gas"]:
        add_chord(G, ell_chord(view, c, R, r), w)
    for (c, R, r) in S["lung"]:
        add_chord(G, ell_chord(view, c, R, r), 0.45)
    G = np.minimum(G, total * 0.7)
    maps["T"] = total.astype(F32)
    maps["F"] = np.clip(F, 0, None).astype(F32)
    maps["G"] = G


def bone_extras(view, P, spine, S, maps):
    V = spine["V"]
    vb = P["vbmd"]
    rc = P["rho_cort"]
    s1 = V["S1"]
    W1 = s1["W"]
    sc = P["scale"]
    # ilium: thin fan-shaped wing (its lower third cut away inside the thick
    # supra-acetabular body), thick posterior part at the SI joint
    pel = rot([0, 0, 1], S["pelvis_rot"])
    zc = S["z_crest"]
    for sx in (-1, 1):
        si = s1["c"] + np.array([sx * (W1 / 2 + 22 * sc), 12, 0])
        h = np.array([sx * math.cos(38 * DEG), -math.sin(38 * DEG), 0])
        wing_c = si + h * 60 * sc
        wing_c[2] = zc - 58 * sc
        Rw = rot(h, -sx * 16 * DEG) @ np.column_stack([h, np.cross([0, 0, 1.0], h), [0, 0, 1.0]])
        cut = np.array([0, 0, zc - 78 * sc])
        add_bone_shell(view, maps, pel @ wing_c, pel @ Rw, np.array([68, 5.0, 60]) * sc, 0.9, rc, vb * 0.9,
                       planes=[((0, 0, -1.0), pel @ cut)])
        body_c = si + h * 48 * sc
        body_c[2] = zc - 108 * sc
        add_bone_solid(view, maps, pel @ body_c, pel @ Rw, np.array([34, 16, 34]) * sc, vb * 0.9 + 0.07)
        add_bone_solid(view, maps, pel @ (si + np.array([sx * 6, 8, -6])), pel @ rot([0, 0, 1], sx * 25 * DEG),
                       np.array([11, 17, 30]) * sc, vb * 1.2 + 0.06)
    # ribs
    for pts in S["ribs"]:
        res = tube_chords(view, pts, 3.5 * sc, 2.7 * sc)
        if res is None:
            continue
        (i0, i1, j0, j1), co, ci = res
        maps["M"][i0:i1, j0:j1] += 0.1 * (0.8 * rc * (co - ci) + (0.9 * vb + 0.03) * ci)
    for (c, R, r, rho) in S["calcs"]:
        res = ell_chord(view, c, R, r)
        add_chord(maps["M"], res, 0.1 * rho)


# --------------------------------------------------------------------------
# vendors
# --------------------------------------------------------------------------
VENDORS = {
    "A": dict(maker="Halvard Imaging", model="HX-Vista 43", sw="VT 4.2.1", mod="DX", photo="MONOCHROME2",
              bits=12, spacing=[0.139, 0.148, 0.150], det="csi", det_g=0.19, crop=True, window=True,
              proc="multiscale", nq=9000, blur=0.6, text=0.15, inst="Northgate Spine Clinic"),
    "B": dict(maker="Oriel Diagnostics", model="OrielCR 2", sw="OCR 2.07", mod="CR", photo="MONOCHROME1",
              bits=10, spacing=[0.100, 0.150, 0.200], det="bafbr", det_g=0.10, crop=False, window=False,
              proc="crusm", nq=3500, blur=1.1, text=0.9, inst="St. Wendel Community Hospital"),
    "C": dict(maker="Kestrel Medical Systems", model="KMS DRX-14", sw="KM 7.3", mod="DX", photo="MONOCHROME2",
              bits=14, spacing=[0.125, 0.143, 0.160], det="csi", det_g=0.17, crop=False, window=True,
              proc="light", nq=8000, blur=0.55, text=0.0, inst="Harbour Imaging Centre"),
    "D": dict(maker="Tarn Radiographics", model="Tarn Q3", sw="TQ3-11.0", mod="DX", photo="MONOCHROME1",
              bits=16, spacing=[0.100, 0.124, 0.168, 0.175], det="csi", det_g=0.2, crop=True, window=True,
              proc="equalize", nq=10000, blur=0.7, text=0.7, inst="Ridgeway Orthopaedics"),
    "E": dict(maker="Brisk Photonics", model="BP-CR7", sw="7.0.5", mod="CR", photo="MONOCHROME2",
              bits=12, spacing=[0.114, 0.150, 0.172, 0.200], det="bafbr", det_g=0.12, crop=False, window=True,
              proc="histeq", nq=4000, blur=1.3, text=0.5, inst="Lowmoor District General"),
}
VENDOR_P = [("A", 0.24), ("B", 0.2), ("C", 0.2), ("D", 0.18), ("E", 0.18)]


def _font(px):
    try:
        return ImageFont.load_default(size=max(8, int(px)))
    except Exception:  # pragma: no cover
        return ImageFont.load_default()


def text_mask(shape, items):
    """items: list of (x, y, text, size_px). Returns float mask 0..1."""
    im = Image.new("L", (shape[1], shape[0]), 0)
    dr = ImageDraw.Draw(im)
    for x, y, s, sz in items:
        dr.text((x, y), s, fill=255, font=_font(sz))
    return np.asarray(im, F32) / 255.0


def lead_marker(shape, hm, letter, corner, rng):
    """A lead letter in a small frame, rasterised at model resolution."""
    size = int(max(10, 11.0 / hm))
    im = Image.new("L", (size * 2, int(size * 1.6)), 0)
    dr = ImageDraw.Draw(im)
    dr.rectangle([0, 0, im.size[0] - 1, im.size[1] - 1], outline=255, width=max(1, size // 10))
    dr.text((size * 0.45, size * 0.1), letter, fill=255, font=_font(size * 1.2))
    m = np.asarray(im, F32) / 255.0
    out = np.zeros(shape, F32)
    h, w = m.shape
    y = int(corner[0])
    x = int(corner[1])
    y = min(max(y, 0), shape[0] - h)
    x = min(max(x, 0), shape[1] - w)
    if y >= 0 and x >= 0:
        out[y:y + h, x:x + w] = m
    return out


# --------------------------------------------------------------------------
# one view: geometry -> maps -> physics -> detector -> vendor processing
# --------------------------------------------------------------------------
def render_view(P, spine, S, tex, vendor, view_name, rng):
    V = spine["V"]
    vd = VENDORS[vendor]
    L3 = V["L3"]["c"]
    ap = view_name == "AP"
    if ap:
        ew0, eu0 = np.array([0, 1.0, 0]), np.array([1.0, 0, 0])
        omega = rng.normal(0, 3.0) * DEG
        kvp = float(rng.uniform(72, 88))
        SID = float(rng.choice([1000, 1000, 1100, 1150]) + rng.normal(0, 5))
        gap = rng.uniform(45, 80)
        iso = L3 + np.array([rng.normal(0, 5), 0, rng.normal(-8, 12)])
        d_iso = S["y_back"] - iso[1] + gap
        fw, fh = rng.uniform(150, 240), rng.uniform(330, 420)
    else:
        ew0, eu0 = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
        omega = rng.normal(0, 3.5) * DEG
        kvp = float(rng.uniform(85, 102))
        SID = float(rng.choice([1000, 1100, 1150]) + rng.normal(0, 5))
        gap = rng.uniform(25, 60)
        iso = L3 + np.array([0, rng.normal(-5, 6), rng.normal(-8, 12)])
        aL3 = S["a0"] * (1 + 0.10 * ((iso[2] - S["z_w"]) / 120.0) ** 2)
        d_iso = S["cx"] + aL3 - iso[0] + gap
        fw, fh = rng.uniform(170, 260), rng.uniform(330, 420)
    Rz = rot([0, 0, 1], omega)
    ew, eu = Rz @ ew0, Rz @ eu0
    ev = np.array([0, 0, -1.0])
    tilt = rng.normal(0, 1.5) * DEG
    Rt = rot(eu, tilt)
    ew, ev = Rt @ ew, Rt @ ev
    SOD = SID - d_iso
    Ssrc = iso - SOD * ew
    # detector / output extent
    s = float(rng.choice(vd["spacing"]))
    fcu, fcv = rng.normal(0, 6), rng.normal(0, 8)
    frot = rng.normal(0, 0.8) * DEG
    if vd["crop"] or s < 0.12:
        ext_w = fw + rng.uniform(4, 20)
        ext_h = fh + rng.uniform(4, 20)
    else:
        ext_w, ext_h = 350.0, 430.0
    ext_w, ext_h = min(ext_w, 2500 * s, 350), min(ext_h, 2500 * s, 430)
    cols, rows = int(ext_w / s) // 2 * 2, int(ext_h / s) // 2 * 2
    ocu = fcu if (vd["crop"] or s < 0.12) else rng.normal(0, 5)
    ocv = fcv if (vd["crop"] or s < 0.12) else rng.normal(0, 5)
    U0 = ocu - cols * s / 2
    V0 = ocv - rows * s / 2
    k = max(2, int(math.ceil(0.45 / s - 1e-6)))
    hm = k * s
    nu, nv = -(-cols // k), -(-rows // k)
    view = View(Ssrc, eu, ev, ew, SID, U0, V0, hm, nv, nu)
    view.iso = iso
    # smooth random field used for visceral-fat mottling
    lf = np.random.default_rng(S["noise_seed"] + (0 if ap else 1)).standard_normal((nv // 16 + 2, nu // 16 + 2))
    lf = ndi.zoom(ndi.gaussian_filter(lf, 1.2), 16, order=1)[:nv, :nu]
    view.lowfreq = (lf / max(lf.std(), 1e-6)).astype(F32)
    maps = {"M": np.zeros((nv, nu), F32), "MAR": np.zeros((nv, nu), F32)}
    soft_maps(view, P, spine, S, maps)
    for lv in LEVELS:
        render_vertebra(view, V[lv], P, tex, maps["M"], maps["MAR"])
    bone_extras(view, P, spine, S, maps)
    # --- material path lengths in cm ---
    Mha = maps["M"]
    Fc = maps["F"] * 0.1 + P["marrow_fat"] * maps["MAR"]
    Gc = maps["G"] * 0.1
    Wc = np.maximum(maps["T"] * 0.1 - Fc - Gc - Mha / 3.0, 0)
    # --- spectrum & energy-integrating detector ---
    al = float(rng.uniform(2.5, 4.0))
    cu = float(rng.choice([0.0, 0.0, 0.1, 0.2])) if vd["mod"] == "DX" else 0.0
    E, n = spectrum(kvp, al, cu)
    eta = 1 - np.exp(-mu(vd["det"], E) * vd["det_g"])
    wE = n * eta * E
    wE = wE / wE.sum()
    muw, muf, muh = mu("water", E) * 1.04, mu("fat", E) * 0.93, mu("ha", E)
    prim = np.zeros((nv, nu), F32)
    for kk in range(len(E)):
        prim += F32(wE[kk]) * np.exp(-(F32(muw[kk]) * Wc + F32(muf[kk]) * Fc + F32(muh[kk]) * Mha))
    # --- collimation (rotated rectangle with penumbra), heel effect ---
    UU = (view.U - fcu)[None, :]
    VV = (view.Vc - fcv)[:, None]
    ur = UU * math.cos(frot) + VV * math.sin(frot)
    vr = -UU * math.sin(frot) + VV * math.cos(frot)
    pen = rng.uniform(0.6, 1.6)
    dist = np.maximum(np.abs(ur) - fw / 2, np.abs(vr) - fh / 2)
    field = (1.0 / (1.0 + np.exp(np.clip(dist / (pen * 0.4), -30, 30)))).astype(F32)
    prim *= field * 0.997 + 0.003
    heel = rng.uniform(0.05, 0.14) * rng.choice([-1, 1])
    heelmap = (1 + heel * (VV / 215.0) - 0.5 * abs(heel) * (VV / 215.0) ** 2).astype(F32)
    prim *= heelmap
    # --- marker (lead, on the detector side) ---
    if rng.random() < 0.85:
        letter = ("L" if rng.random() < 0.5 else "R") if ap else "L"
        cu_ = (fcu + (fw / 2 - 22) * rng.choice([-1, 1]) - U0) / hm
        cv_ = (fcv + (fh / 2 - 30) - V0) / hm
        mk = lead_marker((nv, nu), hm, letter, (cv_, cu_), rng)
        prim *= 1 - 0.93 * mk
    # --- scatter: blurred, thickness-weighted primary, scaled to a target SPR ---
    f = 4
    H2, W2 = -(-nv // f) * f, -(-nu // f) * f
    pp = np.pad(prim, ((0, H2 - nv), (0, W2 - nu)), mode="edge").reshape(H2 // f, f, W2 // f, f).mean((1, 3))
    tau = -np.log(np.maximum(pp, 1e-6))
    gen = pp * np.minimum(tau, 9.0)
    sp = f * hm
    sct = 0.7 * ndi.gaussian_filter(gen, 55.0 / sp, mode="constant") + \
        0.3 * ndi.gaussian_filter(gen, 14.0 / sp, mode="constant")
    grid = rng.random() < (0.9 if ap else 0.75)
    spr = (rng.uniform(0.5, 1.1) if ap else rng.uniform(1.0, 2.2)) * (1.0 if grid else 3.2)
    ci, cj = int((0 - V0) / sp), int((0 - U0) / sp)
    ci, cj = min(max(ci, 2), pp.shape[0] - 3), min(max(cj, 2), pp.shape[1] - 3)
    ratio = pp[ci - 2:ci + 3, cj - 2:cj + 3].mean() / max(sct[ci - 2:ci + 3, cj - 2:cj + 3].mean(), 1e-9)
    sct *= spr * ratio
    sct = upsample(sct, f, (nv, nu))
    sig = prim + sct.astype(F32)
    # --- AEC: normalise the mean signal behind the central chamber ---
    ai0, aj0 = int((-25 - V0) / hm), int((-25 - U0) / hm)
    aw = int(50 / hm)
    aec = float(sig[max(ai0, 0):ai0 + aw, max(aj0, 0):aj0 + aw].mean())
    expo = float(np.exp(rng.normal(0, 0.25)))
    sig *= F32(expo / max(aec, 1e-9))
    # --- to detector resolution, quantum noise, detector blur, electronics ---
    det = upsample(sig, k, (rows, cols))
    nq = vd["nq"] * (s / 0.15) ** 2 * rng.uniform(0.7, 1.3)
    nrng = np.random.default_rng([int(rng.integers(0, 2 ** 31)), 7])
    det += np.sqrt(np.maximum(det, 0) / nq) * nrng.standard_normal(det.shape, dtype=F32)
    det = blur(det, vd["blur"] * (0.15 / s) ** 0.5 * rng.uniform(0.85, 1.15))
    det += F32(rng.uniform(0.002, 0.006)) * nrng.standard_normal(det.shape, dtype=F32)
    if vd["mod"] == "DX":
        det *= (1 + 0.002 * nrng.standard_normal(cols, dtype=F32))[None, :]
    if vendor == "E" and grid:
        fgrid = rng.choice([4.0, 6.0, 7.0])
        xs = U0 + (np.arange(cols) + 0.5) * s
        det *= (1 + 0.004 * np.cos(2 * math.pi * fgrid * xs)).astype(F32)[None, :]
    fmask = field[np.minimum(np.arange(rows) // k, nv - 1)][:, np.minimum(np.arange(cols) // k, nu - 1)]
    acq = dict(kvp=kvp, SID=SID, SOD=SOD, mag=SID / SOD, spacing=s, grid=grid, al=al, cu=cu, expo=expo,
               rows=rows, cols=cols, mas=float(np.clip((12 if ap else 35) * (kvp / 80.0) ** -3 *
                                                    (S["b0"] / 100 if ap else S["a0"] / 140) ** 2 * expo, 2, 200)))
    return det, fmask, acq


def process(det, fmask, vendor, view_name, P, pid, date, rng):
    """Invented vendor chains.  Returns uint16 array and header info."""
    vd = VENDORS[vendor]
    L = -np.log(np.maximum(det, 1e-4)).astype(F32)         # bone -> high
    inner = fmask > 0.9
    # "anatomy recognition": histogram of a central region of the field
    h_, w_ = L.shape
    roi = np.zeros_like(inner)
    roi[int(h_ * 0.2):int(h_ * 0.8), int(w_ * 0.22):int(w_ * 0.78)] = True
    roi &= inner
    samp = L[::4, ::4][roi[::4, ::4]]
    if samp.size < 100:
        samp = L[::4, ::4].ravel()
    p_lo, p_hi = np.percentile(samp, [1.0, 99.7])
    x = (L - p_lo) / max(p_hi - p_lo, 1e-3)
    med = float(np.median(x[::4, ::4][roi[::4, ::4]])) if roi.any() else 0.5
    drc = 1.0 if view_name == "AP" else 1.5
    roi4 = roi[::4, ::4]

    def renorm(y, lo=0.5, hi=99.5):
        """re-stretch after dynamic-range compression (ROI percentiles)"""
        a_, b_ = np.percentile(y[::4, ::4][roi4], [lo, hi]) if roi4.any() else (y.min(), y.max())
        return (y - a_) / max(b_ - a_, 1e-3)
    proc = vd["proc"]
    shutter = None
    if proc == "multiscale":
        sig_mm = [0.35, 1.2, 4.0, 14.0]
        Bs = [x] + [blur(x, sm / 0.15 * rng.uniform(0.9, 1.1)) for sm in sig_mm]
        g = [rng.uniform(0.9, 1.1), rng.uniform(1.4, 1.8), rng.uniform(1.2, 1.5), rng.uniform(1.0, 1.2)]
        y = med + (Bs[-1] - med) * (1 - min(0.85, drc * rng.uniform(0.35, 0.55)))
        for kk in range(4):
            D = Bs[kk] - Bs[kk + 1]
            c = 0.03
            y = y + g[kk] * np.sign(D) * (np.abs(D) / c) ** 0.8 * c
        y = renorm(y, 0.3, 99.7)
        y = 1.0 / (1.0 + np.exp(-(y - 0.5) / rng.uniform(0.2, 0.28)))
        shutter = 0.0
    elif proc == "crusm":
        bl = blur(x, 20.0 / 0.15)
        y = x - min(0.85, drc * rng.uniform(0.35, 0.5)) * (bl - med)
        y = y + rng.uniform(0.5, 1.0) * (y - blur(y, 1.5 / 0.15))
        y = renorm(y, 0.5, 99.8)
        y = np.clip((y + 0.05) / 1.1, 0, 1) ** rng.uniform(0.8, 1.0)
    elif proc == "light":
        y = x - min(0.8, drc * rng.uniform(0.3, 0.45)) * (blur(x, 25.0 / 0.15) - med)
        y = y + rng.uniform(0.2, 0.5) * (y - blur(y, 2.5 / 0.15))
        y = renorm(y, 0.2, 99.9)
    elif proc == "equalize":
        sm = blur(x, 1.3)
        gx = np.abs(np.diff(sm, axis=1, append=sm[:, -1:])) + np.abs(np.diff(sm, axis=0, append=sm[-1:, :]))
        w = np.clip(gx / 0.02, 0.35, 1.0)
        xn = sm + (x - sm) * w
        b1 = blur(xn, 3.0 / 0.15)
        b2 = blur(xn, 25.0 / 0.15)
        y = med + (b2 - med) * (1 - min(0.85, drc * rng.uniform(0.45, 0.55))) + (b1 - b2) * rng.uniform(1.1, 1.4) + \
            (xn - b1) * rng.uniform(1.6, 2.2)
        y = np.clip(renorm(y, 0.5, 99.6), -0.2, 1.2)
        y = np.interp(y, [-0.2, 0.05, 0.85, 1.2], [0.0, 0.08, 0.93, 1.0]).astype(F32)
        shutter = 0.0
    elif proc == "histeq":
        b = blur(x, 30.0 / 0.15)
        y = x - min(0.85, 0.5 * drc) * (b - med)
        y = y + 0.6 * (y - blur(y, 2.0 / 0.15))
        y = renorm(y, 0.2, 99.8)
        q = np.percentile(y[::4, ::4][inner[::4, ::4]], np.linspace(0, 100, 33))
        q = np.maximum.accumulate(q + np.arange(33) * 1e-6)
        lin = np.linspace(0, 1, 33)
        y = (0.6 * np.interp(y, q, lin) + 0.4 * np.clip((y - q[0]) / (q[-1] - q[0]), 0, 1)).astype(F32)
        y = y ** rng.uniform(1.0, 1.25)
    if proc in ("crusm", "light", "histeq"):
        # exam-level brightness: put the anatomy median at a mid-grey
        yc = np.clip(y, 1e-3, 1)
        m = float(np.median(yc[::4, ::4][roi4])) if roi4.any() else 0.5
        g = float(np.clip(math.log(rng.uniform(0.42, 0.55)) / math.log(min(max(m, 0.05), 0.95)), 0.45, 2.2))
        y = np.where(y > 0, np.clip(y, 0, 1.3) ** g, y) if proc == "light" else yc ** g
    y = y.astype(F32)
    if shutter is not None:
        y = np.where(fmask > 0.5, y, F32(shutter))
    maxv = (1 << vd["bits"]) - 1
    info = {}
    if proc == "light":
        lo_, hi_ = 0.08 * maxv, 0.85 * maxv
        out = lo_ + np.clip(y, -0.2, 1.3) * (hi_ - lo_) / 1.5 + 0.2 * (hi_ - lo_) / 1.5
    else:
        out = np.clip(y, 0, 1) * maxv
    if vd["photo"] == "MONOCHROME1":
        out = maxv - out
    # burned-in annotation (drawn in display-white)
    burned = False
    if rng.random() < vd["text"]:
        burned = True
        sz = out.shape[0] * 0.018
        items = [(out.shape[1] * 0.03, out.shape[0] * 0.02, vd["inst"].upper(), sz),
                 (out.shape[1] * 0.03, out.shape[0] * 0.02 + sz * 1.4, f"{pid}  {date[:4]}-{date[4:6]}-{date[6:]}", sz),
                 (out.shape[1] * 0.03, out.shape[0] * 0.02 + sz * 2.8, "L-SPINE " + ("AP" if view_name == "AP" else "LAT"), sz)]
        if vendor == "D":
            items.append((out.shape[1] * 0.85, out.shape[0] * 0.9, "R" if view_name == "AP" else "L", sz * 2.2))
        tm = text_mask(out.shape, items)
        white = 0.0 if vd["photo"] == "MONOCHROME1" else float(maxv)
        out = out * (1 - tm) + white * tm
    out = np.clip(np.round(out), 0, maxv).astype(np.uint16)
    if vd["window"]:
        vals = out[::4, ::4][roi[::4, ::4]] if roi.any() else out[::4, ::4].ravel()
        a_, b_ = np.percentile(vals, [0.5, 99.5] if proc != "light" else [1.5, 99.0])
        info["wc"] = float(round((a_ + b_) / 2))
        info["ww"] = float(max(round(b_ - a_), 2))
    info["burned"] = burned
    return out, info


# --------------------------------------------------------------------------
# DICOM
# --------------------------------------------------------------------------
def uid(*parts):
    h = hashlib.sha256(("phantom_h|" + "|".join(str(p) for p in parts)).encode()).digest()
    return "2.25." + str(int.from_bytes(h[:16], "big") >> 1 or 1)


IMPL_UID = uid("implementation")
SOP_DX = "1.2.840.10008.5.1.4.1.1.1.1"
SOP_CR = "1.2.840.10008.5.1.4.1.1.1"


def _ds(x, nd=6):
    s = f"{x:.{nd}g}"
    return s if len(s) <= 16 else f"{x:.4g}"


def write_dicom(path, pix, info, acq, P, pid, seed, idx, vendor, view_name, study, flip_lat):
    vd = VENDORS[vendor]
    dx = vd["mod"] == "DX"
    sop_cls = SOP_DX if dx else SOP_CR
    sop = uid(seed, idx, view_name, "sop")
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = sop_cls
    fm.MediaStorageSOPInstanceUID = sop
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    fm.ImplementationClassUID = IMPL_UID
    fm.ImplementationVersionName = "PHANTOM_H_1"
    ds = Dataset()
    ds.file_meta = fm
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = sop_cls
    ds.SOPInstanceUID = sop
    ds.StudyDate = study["date"]
    ds.SeriesDate = study["date"]
    ds.ContentDate = study["date"]
    ds.StudyTime = study["time"]
    ds.SeriesTime = study["times"][view_name]
    ds.ContentTime = study["times"][view_name]
    ds.AccessionNumber = study["acc"]
    ds.Modality = vd["mod"]
    if dx:
        ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = vd["maker"]
    ds.InstitutionName = vd["inst"]
    ds.ReferringPhysicianName = ""
    ds.StationName = f"{vendor}RAD{(seed + idx) % 7 + 1}"
    ds.StudyDescription = "XR LUMBAR SPINE 2 VIEWS"
    ds.SeriesDescription = "L-SPINE AP" if view_name == "AP" else "L-SPINE LATERAL"
    ds.ManufacturerModelName = vd["model"]
    ds.PatientName = f"PHANTOM^H{seed}^{idx:05d}"
    ds.PatientID = pid
    ds.PatientBirthDate = study["birth"]
    ds.PatientSex = P["sex"]
    ds.PatientAge = f"{P['age']:03d}Y"
    ds.PatientSize = _ds(study["height"] / 100.0, 4)
    ds.PatientWeight = _ds(study["weight"], 4)
    ds.BodyPartExamined = "LSPINE"
    ds.KVP = _ds(round(acq["kvp"], 1))
    ds.DistanceSourceToDetector = _ds(round(acq["SID"], 1))
    ds.DistanceSourceToPatient = _ds(round(acq["SOD"], 1))
    ds.ExposureTime = str(int(round(acq["mas"] / 0.32)))
    ds.XRayTubeCurrent = "320"
    ds.Exposure = str(int(round(acq["mas"])))
    ds.SoftwareVersions = vd["sw"]
    ds.ViewPosition = "AP" if view_name == "AP" else "LL"
    ds.ImagerPixelSpacing = [_ds(acq["spacing"]), _ds(acq["spacing"])]
    if dx:
        ds.Grid = "FOCUSED" if acq["grid"] else "NONE"
        vc = Dataset()
        vc.CodeValue, vc.CodingSchemeDesignator = ("399348003", "SCT") if view_name == "AP" else ("399173006", "SCT")
        vc.CodeMeaning = "antero-posterior" if view_name == "AP" else "left lateral"
        vc.ViewModifierCodeSequence = Sequence([])
        ds.ViewCodeSequence = Sequence([vc])
        ds.DetectorType = "SCINTILLATOR"
        ds.DetectorConfiguration = "AREA"
        ds.EstimatedRadiographicMagnificationFactor = _ds(round(acq["mag"], 4))
        ds.PositionerType = "NONE"
        if study["calib"]:
            ps = acq["spacing"] / acq["mag"]
            ds.PixelSpacing = [_ds(round(ps, 5)), _ds(round(ps, 5))]
            ds.PixelSpacingCalibrationType = "GEOMETRY"
            ds.PixelSpacingCalibrationDescription = "Nominal magnification at spine depth"
    else:
        ds.PixelSpacing = [_ds(acq["spacing"]), _ds(acq["spacing"])]
    ds.StudyInstanceUID = uid(seed, idx, "study")
    ds.SeriesInstanceUID = uid(seed, idx, view_name, "series")
    ds.StudyID = study["acc"][-6:]
    ds.SeriesNumber = "1" if view_name == "AP" else "2"
    ds.InstanceNumber = "1"
    if view_name == "AP":
        ds.PatientOrientation = ["L", "F"]
    else:
        ds.PatientOrientation = ["A" if flip_lat else "P", "F"]
    if dx:
        ds.ImageLaterality = "U"
        code = Dataset()
        code.CodeValue = "122496007"
        code.CodingSchemeDesignator = "SCT"
        code.CodeMeaning = "Lumbar spine"
        ds.AnatomicRegionSequence = Sequence([code])
        ds.AcquisitionContextSequence = Sequence([])
    ds.BurnedInAnnotation = "YES" if info["burned"] else "NO"
    ds.LossyImageCompression = "00"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = vd["photo"]
    ds.Rows, ds.Columns = pix.shape
    ds.BitsAllocated = 16
    ds.BitsStored = vd["bits"]
    ds.HighBit = vd["bits"] - 1
    ds.PixelRepresentation = 0
    if "wc" in info:
        ds.WindowCenter = _ds(info["wc"])
        ds.WindowWidth = _ds(info["ww"])
        if vendor == "D":
            ds.VOILUTFunction = "SIGMOID"
        ds.WindowCenterWidthExplanation = "PHANTOM_H DEFAULT"
    if dx or vendor == "E":
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = "1"
        ds.RescaleType = "US"
    if dx:
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = 1 if vd["photo"] == "MONOCHROME1" else -1
        ds.PresentationLUTShape = "INVERSE" if vd["photo"] == "MONOCHROME1" else "IDENTITY"
    ds.AcquisitionDeviceProcessingDescription = {"A": "VISTATONE MF4", "B": "OCR DRC+USM", "C": "KMS LINEAR",
                                                 "D": "TARN EQ-NR", "E": "BP HEQ"}[vendor]
    ds.PixelData = pix.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


# --------------------------------------------------------------------------
def make_study(outdir, seed, idx):
    P = sample_patient(seed, idx)
    rng = P["rng"]
    pid = f"PH{seed}-{idx:05d}"
    spine = build_spine(P)
    for lv in LEVELS:
        v = spine["V"][lv]
        v["xy"] = _xy_raster(v, rng)
        v["tex_off"] = 200 + rng.integers(0, 1000, 3)
        v["tp_jit"] = rng.normal(0, 2.5, 4)
    S = build_soft(P, spine, rng)
    S["pelvis_rot"] = rng.normal(0, 2) * DEG
    tex = make_texture(P, rng)
    vendor = str(rng.choice([v for v, _ in VENDOR_P], p=[p for _, p in VENDOR_P]))
    year = int(rng.integers(2014, 2025))
    month, day = int(rng.integers(1, 13)), int(rng.integers(1, 29))
    hh, mm = int(rng.integers(7, 19)), int(rng.integers(0, 60))
    bm, bd = int(rng.integers(1, 13)), int(rng.integers(1, 29))
    by = year - P["age"] - (1 if (bm, bd) > (month, day) else 0)
    h_cm = float(np.clip(rng.normal(176 if P["sex"] == "M" else 162, 7) - 0.08 * max(0, P["age"] - 60), 140, 200))
    study = dict(date=f"{year:04d}{month:02d}{day:02d}", time=f"{hh:02d}{mm:02d}00",
                 times={"AP": f"{hh:02d}{mm:02d}{int(rng.integers(10, 59)):02d}",
                        "LAT": f"{hh:02d}{min(mm + 2, 59):02d}{int(rng.integers(10, 59)):02d}"},
                 acc=f"A{seed % 1000:03d}{idx:06d}", birth=f"{by:04d}{bm:02d}{bd:02d}",
                 height=h_cm, weight=P["bmi"] * (h_cm / 100) ** 2, calib=bool(rng.random() < 0.4))
    flip_lat = bool(rng.random() < 0.3)
    rows = []
    for view_name in ("AP", "LAT"):
        det, fmask, acq = render_view(P, spine, S, tex, vendor, view_name, rng)
        if view_name == "LAT" and flip_lat:
            det, fmask = det[:, ::-1], fmask[:, ::-1]
        pix, info = process(det, fmask, vendor, view_name, P, pid, study["date"], rng)
        fn = f"{pid}_{view_name}.dcm"
        write_dicom(os.path.join(outdir, fn), pix, info, acq, P, pid, seed, idx, vendor, view_name, study, flip_lat)
        rows.append(f"{fn},{P['label']},{P['T']:.2f},{P['bmd']:.3f},{pid},{view_name}")
    return rows


def _worker(args):
    outdir, seed, idx = args
    return idx, make_study(outdir, seed, idx)


def main(argv=None):
    ap = argparse.ArgumentParser(description="phantom_h: synthetic lumbar-spine AP+LAT radiographs")
    ap.add_argument("outdir")
    ap.add_argument("n", type=int)
    ap.add_argument("seed", type=int)
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args(argv)
    os.makedirs(a.outdir, exist_ok=True)
    jobs = [(a.outdir, a.seed, i) for i in range(a.n)]
    res = {}
    t0 = time.time()
    if a.workers <= 1:
        for j in jobs:
            i, r = _worker(j)
            res[i] = r
    else:
        import multiprocessing as mp
        with mp.Pool(a.workers) as pool:
            for i, r in pool.imap_unordered(_worker, jobs):
                res[i] = r
    with open(os.path.join(a.outdir, "manifest.csv"), "w", newline="") as fh:
        fh.write("path,label,t_score,bmd,patient_id,view\n")
        for i in range(a.n):
            for line in res[i]:
                fh.write(line + "\n")
    dt = time.time() - t0
    print(f"phantom_h: {a.n} studies in {dt:.1f} s ({dt / max(a.n, 1):.2f} s/study)", file=sys.stderr)


if __name__ == "__main__":
    main()
