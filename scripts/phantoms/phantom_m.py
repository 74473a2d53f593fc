#!/usr/bin/env python3
"""phantom_m -- synthetic lumbar-spine radiograph studies (AP + lateral DICOM) with known BMD.

Usage:  phantom_m.py OUT_DIR N_STUDIES SEED [--workers W]

Every study is one synthetic patient drawn from its own generator seeded by
(SEED, study index), so the output does not depend on the number of workers.

Anatomy (3-D, shared by both views).  Each patient gets a spine T9..L5 + S1 built
in patient coordinates (X = patient left, Y = caudal, Z = anterior).  Level sizes
come from a table scaled by body size; lordosis, scoliosis, axial rotation, disc
heights and per-level jitter are random.  A vertebral body is an elliptic-like
(superellipse) cylinder with a concave waist and slightly concave endplates; its
projection is computed analytically per view: the ray chord through the outer
solid minus the chord through the inner solid gives the cortical shell and the
endplates (the endplates become ovals when the body is tilted against the beam,
including the cone-beam divergence tilt).  Posterior elements (pedicles, laminae,
articular and transverse processes, spinous process), sacral alae/sacral plate,
ilium wings and crests are ellipsoid shells projected exactly along the ray; ribs
(T9..T12) and iliac crests are tube chains.  Soft tissue is a superellipse torso
with subcutaneous + visceral fat set by BMI; psoas and kidneys swap fat for
muscle; bowel gas bubbles (colon frame + small bowel) replace tissue; aortic
calcified plaques, osteophytes, endplate sclerosis, disc narrowing (all rising
with age, independent of T) and occasional vacuum discs are confounders.

How density shows.  Trabecular vBMD of the vertebral bodies is 170 + 30*T mg/cm3
(+- per-patient and per-level noise, so T=-2.5 -> ~95), cortical shell thickness
and cortical mineral density fall mildly with T, posterior elements and pelvis
follow at a lower weight.  Everything is stored as projected mineral mass (g/cm2),
soft tissue and fat path lengths; the detector signal is a polyenergetic
Beer-Lambert sum over a filtered Kramers spectrum (30..100 keV, tabulated
attenuation of muscle, fat and hydroxyapatite-excess).  Lower BMD therefore lowers
body-vs-soft-tissue contrast, makes the cortical rim and endplates relatively
more prominent ("picture frame") and makes the projected trabecular texture
coarser and more vertical (horizontal trabeculae are lost first).  Osteoporotic
patients sometimes carry a wedge / biconcave fracture.  Scatter (broad kernel,
random scatter-to-primary ratio), AEC exposure variation, heel effect, Poisson
quantum noise, electronic noise and detector blur follow.

Vendor chains (one per study, invented):
  AURORA   DX, 12 bit, MONOCHROME2: log, percentile window, unsharp mask, gamma.
  MERIDIAN DX, 15 bit, MONOCHROME1: multi-frequency pyramid with nonlinear band
           gain + dynamic-range compression + sigmoid tone curve, black shutter.
  KESTREL  CR, 10 bit, MONOCHROME1/2: log-exposure (S-value style) readout,
           plate noise and row jitter, large-kernel DRC, S-shaped LUT.
  NORDLYS  DX, 14 bit, mostly MONOCHROME2: local equalisation with histogram tone
           curve and strong edge enhancement.
Collimation borders, lead R/L markers and burned-in text appear on some images.
"""
import argparse
import csv
import multiprocessing as mp
import os
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from scipy import fft as sfft
from scipy import ndimage

F32 = np.float32
# ----------------------------------------------------------------------------- physics tables
E_KEV = np.array([30, 40, 50, 60, 70, 80, 90, 100], float)
MU_SOFT = np.array([0.394, 0.282, 0.238, 0.216, 0.204, 0.193, 0.185, 0.179])   # 1/cm, muscle
MU_FAT = np.array([0.307, 0.228, 0.198, 0.182, 0.173, 0.164, 0.158, 0.153])    # 1/cm, adipose
K_MIN = np.array([2.21, 1.03, 0.606, 0.415, 0.320, 0.259, 0.225, 0.199])      # cm2/g mineral excess
MU_AL = np.array([3.05, 1.53, 0.99, 0.75, 0.62, 0.545, 0.50, 0.46])           # 1/cm aluminium
ETA_DET = np.array([0.99, 0.97, 0.92, 0.86, 0.80, 0.72, 0.64, 0.57])           # detector absorption

# level table: width (frontal), depth (sagittal), height, disc below, transverse-process half length
LEVELS = ["T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5"]
LEVEL_TAB = np.array([
    [32, 26, 20, 5, 10], [34, 27, 21, 5, 10], [36, 28, 22, 6, 8], [38, 29, 23, 7, 4],
    [42, 30, 25, 8, 9], [44, 32, 26, 9, 12], [46, 33, 27, 10, 15], [48, 34, 27, 11, 13],
    [50, 34, 26, 10, 11]], float)
BASE_SAG = np.array([-14, -12, -10, -8, -5, -1, 3, 8, 14], float)   # endplate tilt (deg), + = anterior down
PED_W = np.array([5, 5.5, 6, 7, 7, 8, 9, 11, 14], float)
IL3 = 6

VENDORS = [
    dict(name="AURORA", manu="Aurora Imaging Systems", model="AX-12 DR", ps=0.148, sop="DX",
         bits=12, chain="window", mono1=0.0, det_sigma=0.8, spr=(0.35, 0.9), text=0.5),
    dict(name="MERIDIAN", manu="Meridian Medical", model="MF Digital Suite", ps=0.139, sop="DX",
         bits=15, chain="multifreq", mono1=1.0, det_sigma=0.7, spr=(0.4, 1.0), text=0.4),
    dict(name="KESTREL", manu="Kestrel Radiographics", model="KCR-400", ps=0.175, sop="CR",
         bits=10, chain="cr", mono1=0.6, det_sigma=1.4, spr=(0.8, 2.2), text=0.7),
    dict(name="NORDLYS", manu="Nordlys Diagnostics", model="ND-14 Flat Panel", ps=0.16, sop="DX",
         bits=14, chain="equalize", mono1=0.2, det_sigma=0.9, spr=(0.4, 1.1), text=0.3),
]
SOP_UID = {"DX": "1.2.840.10008.5.1.4.1.1.1.1", "CR": "1.2.840.10008.5.1.4.1.1.1"}
SURNAMES = ["Halvorsen", "Okafor", "Marchetti", "Lindqvist", "Duarte", "Brennan", "Kowalczyk",
            "Tanaka", "Moreau", "Albrecht", "Castellanos", "Nyberg", "Petrova", "Whitcombe"]
GIVEN_F = ["Ingrid", "Maria", "Helen", "Agnes", "Rosa", "Dorothy", "Yuki", "Elena", "Margit"]
GIVEN_M = ["Henrik", "Paulo", "George", "Tomasz", "Kenji", "Arthur", "Luis"]


def rot_x(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, s], [0, -s, c]])


def rot_y(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rot_z(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


# ----------------------------------------------------------------------------- patient model
def sample_patient(seed, idx, t_density=None):
    """Draw all patient parameters. t_density overrides only the T used for bone density."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, idx, 77]))
    cls = int(rng.integers(3))
    lo, hi = [(-1.0, 1.5), (-2.49, -1.01), (-4.5, -2.5)][cls]
    T = round(float(rng.uniform(lo, hi)), 2)
    label = 0 if T >= -1.0 else (2 if T <= -2.5 else 1)
    P = dict(T=T, label=label, bmd=round(1.047 + 0.11 * T, 3))
    P["sex"] = "F" if rng.random() < 0.85 else "M"
    zt = (T + 1.5) / 1.73
    P["age"] = int(np.clip(round(64 + 10.5 * (-0.32 * zt + 0.947 * rng.standard_normal())), 40, 92))
    hcm = rng.normal(162 if P["sex"] == "F" else 175, 6.5)
    P["bmi"] = bmi = float(np.clip(rng.lognormal(np.log(26.5), 0.18), 17, 48))
    P["height_m"], P["weight"] = hcm / 100, bmi * (hcm / 100) ** 2
    s = hcm / 165 * rng.normal(1, 0.03) * (1.05 if P["sex"] == "M" else 1.0)
    Td = T if t_density is None else t_density
    nz = rng.standard_normal(6)
    P["vbmd"] = max(0.035, (170 + 30 * Td + 14 * nz[0]) / 1000)             # g/cm3 trabecular
    P["tc"] = float(np.clip(0.75 + 0.07 * Td + 0.08 * nz[1], 0.35, 1.2))    # cortical shell mm
    P["rho_c"] = float(np.clip(1.05 + 0.02 * Td + 0.04 * nz[2], 0.85, 1.15))
    P["pwall"] = float(np.clip(1.15 + 0.08 * Td + 0.1 * nz[3], 0.6, 1.5))
    age = P["age"]
    deg = float(np.clip(rng.normal((age - 45) / 40, 0.2), 0, 1.2))
    P["deg"], P["aortic"] = deg, float(np.clip(rng.normal((age - 52) / 30, 0.3), 0, 1.5))
    # ---- spine
    n = len(LEVELS)
    tab = LEVEL_TAB * s * rng.normal(1, 0.03, (n, 5))
    w, d, h, disc, tp = tab.T
    narrow = deg * rng.uniform(0, 1, n) * np.array([.2, .2, .25, .3, .35, .4, .5, .8, .9])
    disc = disc * (1 - 0.55 * np.clip(narrow, 0, 0.9))
    sag = np.radians(BASE_SAG * rng.normal(1.0, 0.3) + rng.normal(0, 2, n))
    scol = rng.normal(0, 3) if rng.random() < 0.8 else rng.normal(0, 9)
    cor = np.radians(scol * np.sin(np.linspace(0, 1.3 * np.pi, n) + rng.uniform(0, 2 * np.pi))
                     + rng.normal(0, 1, n))
    axial = 0.4 * cor + np.radians(rng.normal(0, 2, n))
    Y, Z, X = np.zeros(n), np.zeros(n), np.zeros(n)
    for i in range(IL3 - 1, -1, -1):
        Y[i] = Y[i + 1] - (h[i + 1] / 2 + disc[i] + h[i] / 2)
    for i in range(IL3 + 1, n):
        Y[i] = Y[i - 1] + h[i - 1] / 2 + disc[i - 1] + h[i] / 2
    for i in list(range(IL3 - 1, -1, -1)):
        dy = Y[i] - Y[i + 1]
        Z[i] = Z[i + 1] - np.tan((sag[i] + sag[i + 1]) / 2) * dy
        X[i] = X[i + 1] - np.tan((cor[i] + cor[i + 1]) / 2) * dy
    for i in range(IL3 + 1, n):
        dy = Y[i] - Y[i - 1]
        Z[i] = Z[i - 1] - np.tan((sag[i] + sag[i - 1]) / 2) * dy
        X[i] = X[i - 1] - np.tan((cor[i] + cor[i - 1]) / 2) * dy
    verts = []
    for i in range(n):
        verts.append(dict(i=i, C=np.array([X[i], Y[i], Z[i]]),
                          R=rot_z(cor[i]) @ rot_x(sag[i]) @ rot_y(axial[i]),
                          w=w[i], d=d[i], h=h[i], tp=tp[i], vb=P["vbmd"] * rng.normal(1, 0.04),
                          wedge=0.0, conc=rng.uniform(0.8, 2.2),
                          waist=rng.uniform(0.05, 0.1), scl=deg * rng.uniform(0, 0.3)))
    frac_p = 0.0 if T > -1.5 else (0.08 if T > -2.5 else 0.3 + 0.1 * (-2.5 - T))
    if rng.random() < frac_p:                                   # osteoporotic fracture
        v = verts[int(rng.integers(3, 8))]
        if rng.random() < 0.6:
            v["wedge"] = rng.uniform(0.15, 0.4)
        else:
            v["conc"] += rng.uniform(1.5, 4.0)
    hs, slope = 28 * s, np.radians(rng.normal(38, 7))
    ys = Y[-1] + h[-1] / 2 + disc[-1] + hs / 2
    P["S1"] = dict(C=np.array([X[-1] - np.tan(cor[-1]) * (ys - Y[-1]), ys,
                               Z[-1] - np.tan((sag[-1] + slope) / 2) * (ys - Y[-1])]),
                   R=rot_z(cor[-1] * 0.5) @ rot_x(slope), w=50 * s, d=34 * s, h=hs,
                   vb=P["vbmd"] * 0.9, slope=slope)
    P["verts"], P["s"] = verts, s
    # ---- torso
    P["W0"] = (255 + 6.5 * (bmi - 22)) * s * rng.normal(1, 0.04)
    P["D0"] = (175 + 6.0 * (bmi - 22)) * s * rng.normal(1, 0.05)
    P["fat"] = float(np.clip(6 + 2.4 * (bmi - 20) + rng.normal(0, 4), 3, 90))
    P["vfat"] = float(np.clip(0.08 + 0.012 * (bmi - 20) + rng.normal(0, 0.03), 0.03, 0.45))
    P["Zc"] = Z[IL3] - d[IL3] / 2 - 62 * s - 0.6 * P["fat"] + P["D0"] / 2
    P["Xc"] = 0.3 * X[IL3] + rng.normal(0, 5)
    P["gas"] = _sample_gas(rng, P, Y)
    P["plaques"] = _sample_plaques(rng, P, verts)
    P["osteo"] = [(int(rng.integers(2, 9)), rng.integers(0, 2, 3), rng.uniform(0.5, 1.0))
                  for _ in range(rng.poisson(deg * 7))]
    P["vacuum"] = [int(rng.integers(6, 9)) for _ in range(rng.poisson(0.35 * deg))]
    P["rng_state"] = int(rng.integers(2 ** 31))
    return P


def _sample_gas(rng, P, Y):
    W0, D0, Zc, Xc = P["W0"], P["D0"], P["Zc"], P["Xc"]
    y1, y5 = Y[4], Y[8]
    frame = [  # (x0,y0,z0) -> (x1,y1,z1) colon segments (patient coords)
        ((-0.3 * W0, y5 + 30, Zc), (-0.3 * W0, y1, Zc + 0.1 * D0)),
        ((-0.3 * W0, y1 - 10, Zc + 0.25 * D0), (0.3 * W0, y1 - 25, Zc + 0.25 * D0)),
        ((0.32 * W0, y1 - 20, Zc - 0.1 * D0), (0.3 * W0, y5 + 20, Zc - 0.05 * D0)),
        ((0.25 * W0, y5 + 30, Zc), (0.0, y5 + 90, Zc - 0.25 * D0))]
    gas, amount = [], rng.uniform(0.15, 1.6)
    for _ in range(rng.poisson(10 * amount)):
        a, b = frame[int(rng.integers(len(frame)))]
        t = rng.uniform()
        c = np.array(a) * (1 - t) + np.array(b) * t + rng.normal(0, [12, 12, 10])
        big = rng.random() < 0.4
        for _ in range(int(rng.integers(2, 5)) if big else int(rng.integers(4, 10))):
            semi = rng.uniform([5, 4, 4], [16, 10, 12]) if big else rng.uniform(1.2, 4, 3)
            cc = c + rng.normal(0, 7 if big else 6, 3)
            gas.append((cc, rot_x(rng.uniform(0, 3)) @ rot_z(rng.uniform(0, 3)), semi))
    for _ in range(rng.poisson(6 * amount)):      # small bowel loops
        c = np.array([rng.normal(0, 45), rng.uniform(Y[5], y5 + 40), Zc + rng.uniform(10, 0.35 * D0)])
        gas.append((c, rot_z(rng.uniform(0, 3)) @ rot_x(rng.uniform(0, 3)),
                    np.array([rng.uniform(10, 25), rng.uniform(4, 8), rng.uniform(4, 8)])))
    return gas


def _sample_plaques(rng, P, verts):
    t12, l4 = verts[3], verts[7]
    a = t12["C"] + [10, 0, t12["d"] / 2 + 12]
    b = l4["C"] + [6, 0, l4["d"] / 2 + 16]
    pl = []
    for _ in range(rng.poisson(P["aortic"] * 22)):
        t = rng.uniform() ** 0.6                      # more plaques distally
        ax = a * (1 - t) + b * t
        side = rng.random() < 0.3
        if t > 0.9 and side:                          # common iliac
            sgn = rng.choice([-1, 1])
            ax = b + np.array([sgn * 25, 35, -5]) * rng.uniform(0, 1)
        ph = rng.uniform(0, 2 * np.pi)
        c = ax + 10 * np.array([np.cos(ph), 0, np.sin(ph)])
        pl.append((c, rng.uniform([0.8, 2, 0.6], [2.5, 9, 1.4])))
    return pl


# ----------------------------------------------------------------------------- projector
class View:
    """One projection: working grid (2x coarser than the detector), 3-D -> view transform."""

    def __init__(self, kind, P, vend, rng):
        self.kind, ps = kind, vend["ps"]
        if kind == "AP":
            fw, fh = rng.uniform(320, 370), rng.uniform(395, 432)
            self.mag, self.SID = rng.uniform(1.10, 1.22), rng.uniform(1000, 1150)
        else:
            fw, fh = rng.uniform(290, 340), rng.uniform(395, 432)
            self.mag, self.SID = rng.uniform(1.18, 1.32), rng.uniform(1000, 1200)
        self.W = min(3000, 2 * int(round(fw / ps / 2)))
        self.H = min(3000, 2 * int(round(fh / ps / 2)))
        self.ps, self.hw, self.ww = ps, self.H // 2, self.W // 2
        self.po = 2 * ps / self.mag
        self.SOD = self.SID / self.mag
        phi = np.radians(rng.normal(0, 3))
        c3 = P["verts"][IL3]["C"]
        if kind == "AP":
            self.slat = 1
            self.V = np.eye(3) @ rot_y(phi)
            hc = c3[0] + rng.normal(0, 8)
        else:
            self.slat = int(rng.choice([-1, 1]))   # -1: anterior to the viewer's left
            self.V = np.array([[0, 0, self.slat], [0, 1, 0], [1, 0, 0]], float) @ rot_y(phi)
            hc = self.slat * (c3[2] - 12) + rng.normal(0, 10)
        vc = c3[1] + rng.normal(12, 12)
        self.vcr = vc
        self.hs = (hc + (np.arange(self.ww) + 0.5 - self.ww / 2) * self.po).astype(F32)
        self.vs = (vc + (np.arange(self.hw) + 0.5 - self.hw / 2) * self.po).astype(F32)
        shp = (self.hw, self.ww)
        self.min, self.mt = np.zeros(shp, F32), np.zeros(shp, F32)   # mineral, trabecular mineral
        self.ls, self.lf = np.zeros(shp, F32), np.zeros(shp, F32)    # soft tissue, fat (mm)
        self.swap, self.gas = np.zeros(shp, F32), np.zeros(shp, F32)

    def pix(self, h, v):
        return (v - self.vs[0]) / self.po, (h - self.hs[0]) / self.po

    def region(self, h, v, r):
        j0 = max(0, int((h - r - self.hs[0]) / self.po))
        j1 = min(self.ww, int((h + r - self.hs[0]) / self.po) + 2)
        i0 = max(0, int((v - r - self.vs[0]) / self.po))
        i1 = min(self.hw, int((v + r - self.vs[0]) / self.po) + 2)
        if j1 <= j0 or i1 <= i0:
            return None
        return ((slice(i0, i1), slice(j0, j1)), (self.hs[j0:j1] - F32(h))[None, :],
                (self.vs[i0:i1] - F32(v))[:, None])

    def ell_path(self, cv, Rv, semi, dh, dv):
        A = (Rv / semi ** 2) @ Rv.T
        t = A[0, 2] * dh + A[1, 2] * dv
        q = A[0, 0] * dh * dh + 2 * A[0, 1] * dh * dv + A[1, 1] * dv * dv
        disc = t * t - A[2, 2] * (q - 1)
        return F32(2 / A[2, 2]) * np.sqrt(np.maximum(disc, 0))

    def ellipsoid(self, c, R, semi, rho, wall=0.0, rho_in=0.0, target="min"):
        """Ellipsoid (shell of `wall` mm at rho + interior at rho_in) added to a map."""
        semi = np.asarray(semi, float)
        cv, Rv = self.V @ c, self.V @ R
        reg = self.region(cv[0], cv[1], semi.max())
        if reg is None:
            return
        sl, dh, dv = reg
        Lo = self.ell_path(cv, Rv, semi, dh, dv)
        arr = getattr(self, target)
        if wall > 0:
            Li = self.ell_path(cv, Rv, np.maximum(semi - wall, 0.3), dh, dv)
            arr[sl] += (Lo - Li) * F32(rho) + Li * F32(rho_in)
        else:
            arr[sl] += Lo * F32(rho)

    def tube(self, pts, r, wall, rho, rho_in):
        """Bone tube along a 3-D polyline (max-combined segments, cortical wall)."""
        Pv = (self.V @ np.asarray(pts, float).T).T
        lo, hi = Pv[:, :2].min(0) - r, Pv[:, :2].max(0) + r
        ctr = (lo + hi) / 2
        reg = self.region(ctr[0], ctr[1], (hi - lo).max() / 2)
        if reg is None:
            return
        sl, _, _ = reg
        out = np.zeros((sl[0].stop - sl[0].start, sl[1].stop - sl[1].start), F32)
        inn = np.zeros_like(out)
        for p0, p1 in zip(Pv[:-1], Pv[1:]):
            sr = self.region((p0[0] + p1[0]) / 2, (p0[1] + p1[1]) / 2,
                             np.hypot(*(p1[:2] - p0[:2])) / 2 + r)
            if sr is None:
                continue
            (si, sj), _, _ = sr
            si = slice(max(si.start, sl[0].start), min(si.stop, sl[0].stop))
            sj = slice(max(sj.start, sl[1].start), min(sj.stop, sl[1].stop))
            if si.stop <= si.start or sj.stop <= sj.start:
                continue
            dh = (self.hs[sj] - F32(p0[0]))[None, :]
            dv = (self.vs[si] - F32(p0[1]))[:, None]
            d2 = p1[:2] - p0[:2]
            u = np.clip((dh * d2[0] + dv * d2[1]) / max(d2 @ d2, 1e-6), 0, 1)
            dist2 = (dh - u * d2[0]) ** 2 + (dv - u * d2[1]) ** 2
            sg = F32(2 / max(np.hypot(*d2) / np.linalg.norm(p1 - p0), 0.6))
            li = (slice(si.start - sl[0].start, si.stop - sl[0].start),
                  slice(sj.start - sl[1].start, sj.stop - sl[1].start))
            np.maximum(out[li], sg * np.sqrt(np.maximum(r * r - dist2, 0)), out=out[li])
            np.maximum(inn[li], sg * np.sqrt(np.maximum((r - wall) ** 2 - dist2, 0)), out=inn[li])
        self.min[sl] += (out - inn) * F32(rho) + inn * F32(rho_in)

    def body(self, C, R, w, d, h, tc, te, rho_c, vb, waist, conc, wedge, scl=0.0):
        """Vertebral body: analytic chords through outer/inner superellipse cylinders."""
        cv, Rv = self.V @ C, self.V @ R
        yax = Rv[:, 1]
        n = np.hypot(yax[0], yax[1])
        al = np.arctan2(-yax[0], yax[1])
        tth = yax[2] / n - (cv[1] - self.vcr) / self.SOD
        across, depth = (d, w) if abs(Rv[2, 0]) > 0.7 else (w, d)
        ca, sa = np.cos(al), np.sin(al)
        zh = Rv[0, 2] * ca + Rv[1, 2] * sa
        reg = self.region(cv[0], cv[1], 0.5 * np.hypot(across * 1.15, h) + depth * abs(tth) / 2 + 4)
        if reg is None:
            return
        sl, dh, dv = reg
        A = dh * F32(ca) + dv * F32(sa)
        B = -dh * F32(sa) + dv * F32(ca)
        zrel = np.clip(A * F32(zh / d), -0.5, 0.5)

        def path1(ac, dp, hh, tth):
            bn = np.clip(2 * B / hh, -1, 1)
            q = np.abs(2 * A / (ac * (1 - waist * (1 - bn * bn))))
            c = F32(0.5 * dp) * np.maximum(1 - q ** F32(2.4), 0) ** F32(1 / 2.4)
            he = F32(hh / n) * (1 - F32(wedge) * (0.5 + zrel)) - F32(2 * conc) * np.maximum(1 - q * q, 0)
            tth = tth if abs(tth) > 0.01 else 0.01
            z1, z2 = (-0.5 * he - B) / F32(tth), (0.5 * he - B) / F32(tth)
            return np.maximum(np.minimum(c, np.maximum(z1, z2)) - np.maximum(-c, np.minimum(z1, z2)), 0)

        dl = conc / (0.5 * depth)            # endplate concavity along the ray: two rim contours
        path = lambda ac, dp, hh: F32(0.5) * (path1(ac, dp, hh, tth + dl) + path1(ac, dp, hh, tth - dl))

        Lo = path(across, depth, h)
        Li = path(across - 2 * tc, depth - 2 * tc, h - 2 * te)
        self.min[sl] += np.maximum(Lo - Li, 0) * F32(rho_c)
        self.mt[sl] += Li * F32(vb)
        if scl > 0.01:
            self.min[sl] += (Li - path(across - 2 * tc, depth - 2 * tc, h - 2 * te - 7)) * F32(scl)


# ----------------------------------------------------------------------------- anatomy drawing
def draw_anatomy(V, P, rng):
    s, tc, rc, pw, T = P["s"], P["tc"], P["rho_c"], P["pwall"], P["T"]
    vpost = lambda vb: 0.9 * vb + 0.16
    for v in P["verts"]:
        C, R, w, d, h, i = v["C"], v["R"], v["w"], v["d"], v["h"], v["i"]
        V.body(C, R, w, d, h, tc, tc * 1.1 + 0.15, rc, v["vb"], v["waist"], v["conc"],
               v["wedge"], v["scl"])
        k, thor = w / 46, i < 4
        G = lambda p: C + R @ np.asarray(p, float)
        fs = 1 + 0.6 * P["deg"] * (i >= 6)                       # facet sclerosis
        pin, pw2 = vpost(v["vb"]), 0.5 * pw
        for sg in (-1, 1):
            conv = np.radians(6 + 3 * max(i - 4, 0)) * sg
            V.ellipsoid(G([sg * (w / 2 - 7 * k), -0.15 * h, -d / 2 - 8 * k]), R @ rot_y(-conv),
                        [PED_W[i] / 2 * k, 7.5 * k, 9 * k], rc, pw, 0.9 * v["vb"] + 0.05)
            V.ellipsoid(G([sg * 0.17 * w, 0.15 * h, -d / 2 - 24 * k]), R @ rot_y(sg * 0.6),
                        [10 * k, 11 * k, 3.5 * k], rc, pw2, pin)
            for yy, zz, xx in ((-0.5, -19, 0.3), (0.62, -25, 0.23)):     # articular processes
                V.ellipsoid(G([sg * xx * w, yy * h, zz * k]) - R @ [0, 0, d / 2], R @ rot_z(sg * 0.15),
                            [4.5 * k, 8.5 * k, 6 * k], rc, 0.8 * pw2 * fs, 0.7 * pin * fs)
            tp = v["tp"]
            tpc = [sg * (w / 2 + 0.75 * tp), -0.12 * h, -d / 2 - (18 if thor else 11) * k]
            rtp = R @ rot_y(sg * (0.5 if thor else 0.1)) @ rot_z(-sg * 0.12)
            V.ellipsoid(G(tpc), rtp, [tp + 4 * k, (7 if i == 8 else 4) * k, 3.5 * k], rc, pw2, pin)
            V.ellipsoid(G([sg * (w / 2 + 2), -0.12 * h, -d / 2 - 9 * k]), rtp,
                        [9 * k, (8 if i == 8 else 5.5) * k, 5 * k], 0.8 * pin, 0)
        tilt = np.radians(45 if thor else 15)
        V.ellipsoid(G([0, 0.25 * h + (10 if thor else 0), -d / 2 - 38 * k]), R @ rot_x(-tilt),
                    [4.5 * k, 10 * k, 17 * k], rc, pw2, pin)
        if thor:                                                  # ribs T9..T12
            L = [230, 210, 150, 105][i] * s
            for sg in (-1, 1):
                P0 = C + [sg * (w / 2 + 8), -0.1 * h, -d / 2 - 12]
                P1 = C + ([sg * 0.55 * L, 0.12 * L, -d / 2 - 45] if i < 2 else
                          [sg * 0.5 * L, 0.15 * L, -d / 2 - 30])
                P2 = C + ([sg * 0.62 * L, 0.45 * L, 60] if i < 2 else [sg * 0.85 * L, 0.55 * L, -10])
                t = np.linspace(0, 1, 8)[:, None]
                V.tube((1 - t) ** 2 * P0 + 2 * (1 - t) * t * P1 + t * t * P2, 4.2 * s, 0.9, rc,
                       vpost(P["vbmd"]))
    for (li, corner, sz) in P["osteo"]:                           # osteophytes
        v = P["verts"][li]
        sy = 1 if corner[0] else -1
        if corner[1]:                                             # anterior beak
            p, sm, ro = [0, sy * (v["h"] / 2 - 1), v["d"] / 2 + 2 * sz], [9, 1.8, 2 + 3 * sz], rot_x(0.6 * sy)
        else:                                                     # lateral spur
            sx = 1 if corner[2] else -1
            p, sm = [sx * (v["w"] / 2 + 2 * sz), sy * (v["h"] / 2 - 1), 0], [2 + 3 * sz, 1.8, 9]
            ro = rot_z(-0.6 * sx * sy)
        V.ellipsoid(v["C"] + v["R"] @ np.array(p, float), v["R"] @ ro, sm, 0.7 * rc, 0)
    # sacrum + pelvis
    S = P["S1"]
    C, R = S["C"], S["R"]
    V.body(C, R, S["w"], S["d"], S["h"], tc, tc * 1.1 + 0.15, rc, S["vb"], 0.02, 0.5, 0.0,
           P["verts"][-1]["scl"])
    G = lambda p: C + R @ np.asarray(p, float)
    vbp, pw2 = vpost(P["vbmd"]), 0.5 * pw
    for sg in (-1, 1):
        V.ellipsoid(G([sg * 36 * s, 8, -6]), R @ rot_z(sg * 0.3), [26 * s, 17 * s, 22 * s], 0.7 * vbp, 0)
        for j in range(4):
            V.ellipsoid(G([sg * 14 * s, 30 + 20 * j * s, -10]), R, [4, 4, 12], -vbp, 0)
        wing = np.array([sg * 95 * s, C[1] + 55 * s, C[2] - 15])
        V.ellipsoid(wing, rot_y(sg * 0.8) @ rot_z(-sg * 0.25), [72 * s, 95 * s, 5.5 * s], rc, 1.6, vbp)
    V.ellipsoid(G([0, 24 * s, -8]), R @ rot_x(-0.2), [42 * s, 22 * s, 16 * s], rc, pw2, vbp)
    V.ellipsoid(G([0, 58 * s, -4]), R @ rot_x(-0.45), [22 * s, 30 * s, 11 * s], rc, pw2, vbp)
    for (c, sm) in P["plaques"]:
        V.ellipsoid(c, np.eye(3), sm, 1.2, 0)
    # soft-tissue organs (fat -> muscle swap) and gas
    l3, l1 = P["verts"][IL3], P["verts"][4]
    for sg in (-1, 1):
        V.ellipsoid(np.array([sg * (l3["w"] / 2 + 24), l3["C"][1] + 30, l3["C"][2] - 5]),
                    rot_z(-sg * 0.2), [22 * s, 105 * s, 25 * s], 0.8, target="swap")
        V.ellipsoid(np.array([sg * 75 * s, l1["C"][1] + 20 * sg, l1["C"][2] - 5]),
                    rot_z(sg * 0.25), [28 * s, 55 * s, 22 * s], 0.7, target="swap")
    for (c, R_, sm) in P["gas"]:
        V.ellipsoid(c, R_, sm, 1.0, target="gas")
    for li in P["vacuum"]:
        v = P["verts"][li]
        V.ellipsoid(v["C"] + v["R"] @ np.array([0, v["h"] / 2 + 2.5, 4]), v["R"], [10, 1.2, 6], 1.0,
                    target="gas")


def soft_tissue(V, P):
    vv = V.vs[:, None]
    Wy = P["W0"] * (1 + 0.07 * np.clip((vv - P["verts"][8]["C"][1]) / 120, -1, 1))
    D0, f, p = P["D0"], P["fat"], 2.2
    sup = lambda q: np.maximum(1 - np.abs(q) ** p, 0) ** (1 / p)
    if V.kind == "AP":
        x = V.hs[None, :] - P["Xc"]
        outer = D0 * sup(2 * x / Wy)
        inner = (D0 - 2 * f) * sup(2 * x / (Wy - 2 * f))
    else:
        z = V.slat * V.hs[None, :] - P["Zc"]
        outer = Wy * sup(2 * z / D0)
        inner = (Wy - 2 * f) * sup(2 * z / (D0 - 2 * f))
    vf = P["vfat"]
    V.lf += (outer - inner + vf * inner).astype(F32)
    sw = np.minimum(V.swap, V.lf)
    V.lf -= sw
    V.ls += (inner * (1 - vf)).astype(F32) + sw
    V.ls -= np.minimum(V.gas, V.ls)


def trab_texture(rng, shape, po, vb):
    """Projected trabecular pattern: vertical struts + density-dependent horizontal struts."""
    m, n = shape
    F = sfft.rfft2(rng.standard_normal(shape, dtype=F32))
    kv = np.abs(sfft.fftfreq(m, d=po))[:, None].astype(F32)
    kh = sfft.rfftfreq(n, d=po)[None, :].astype(F32)
    f0 = F32(0.42 * rng.uniform(0.85, 1.15))
    band = lambda k: (k / f0) ** 2 * np.exp(1 - (k / f0) ** 2)
    hf = float(np.clip(vb / 0.17, 0.2, 1.2))
    H = band(kh) * np.exp(-(kv / 0.2) ** 2) + 0.6 * hf * band(kv) * np.exp(-(kh / 0.2) ** 2) \
        + 0.8 * band(np.hypot(kh, kv) * 0.7)
    t = sfft.irfft2(F * H, s=shape).astype(F32)
    return t / (t.std() + 1e-6)


# ----------------------------------------------------------------------------- image formation
def lowres(x, f):
    m, n = x.shape[0] // f * f, x.shape[1] // f * f
    return x[:m, :n].reshape(m // f, f, n // f, f).mean((1, 3))


def upsample(a, shape):
    """Separable bilinear resize to an exact shape (pixel-centre aligned)."""
    out = a.astype(F32)
    for ax, N in ((1, shape[1]), (0, shape[0])):       # columns first on the small array
        n = out.shape[ax]
        pos = np.clip((np.arange(N) + 0.5) * n / N - 0.5, 0, n - 1)
        i0 = np.floor(pos).astype(int)
        i1 = np.minimum(i0 + 1, n - 1)
        fr = (pos - i0).astype(F32)
        if ax == 0:
            o = out[i0]
            o *= (1 - fr)[:, None]
            o += out[i1] * fr[:, None]
            out = o
        else:
            out = out[:, i0] * (1 - fr)[None, :] + out[:, i1] * fr[None, :]
    return out


def lowpass(x, sigma_px, post=None):
    """Gaussian low-pass (via a reduced grid for wide kernels); `post` is applied before upsampling."""
    post = post or (lambda y: y)
    if sigma_px < 4:
        return post(ndimage.gaussian_filter(x, sigma_px, mode="nearest"))
    f = int(sigma_px / 2)
    return upsample(post(ndimage.gaussian_filter(lowres(x, f), sigma_px / f, mode="nearest")), x.shape)


def text_mask(lines, size_px, shape):
    try:
        font = ImageFont.load_default(size=max(8, int(size_px)))
    except Exception:
        font = ImageFont.load_default()
    img = Image.new("L", (shape[1], shape[0]), 0)
    dr = ImageDraw.Draw(img)
    for k, ln in enumerate(lines):
        dr.text((0, int(k * size_px * 1.3)), ln, fill=255, font=font)
    return np.asarray(img) > 100


def shutter_mask(V, rng):
    hw, ww = V.hw, V.ww
    mi, mj = rng.uniform(0.02, 0.12, 2) * [hw, ww]
    mi2, mj2 = rng.uniform(0.02, 0.12, 2) * [hw, ww]
    if rng.random() < 0.2:
        return np.ones((hw, ww), F32)
    a = np.radians(rng.normal(0, 1.2))
    ii, jj = np.arange(hw)[:, None] - hw / 2, np.arange(ww)[None, :] - ww / 2
    u, v = jj * np.cos(a) + ii * np.sin(a), -jj * np.sin(a) + ii * np.cos(a)
    pen = 1.5 / V.po
    sm = lambda d: np.clip(d / pen + 0.5, 0, 1)
    m = sm(u + ww / 2 - mj) * sm(ww / 2 - mj2 - u) * sm(v + hw / 2 - mi) * sm(hw / 2 - mi2 - v)
    return m.astype(F32)


def expose(V, P, vend, rng):
    """Polyenergetic Beer-Lambert + scatter + AEC; returns full-res noisy raw, shutter, info."""
    kvp = float(np.round(rng.uniform(72, 90) if V.kind == "AP" else rng.uniform(85, 102)))
    al = rng.uniform(2.5, 4.5)
    nE = np.clip(kvp - E_KEV, 0, None) / E_KEV * np.exp(-MU_AL * al / 10)
    wE = nE * E_KEV * ETA_DET
    wE /= wE.sum()
    tau = np.zeros_like(V.min)
    ls, lf, mn = V.ls * F32(0.1), V.lf * F32(0.1), V.min * F32(0.1)
    for e in np.nonzero(wE > 1e-4)[0]:
        tau += F32(wE[e]) * np.exp(-(F32(MU_SOFT[e]) * ls + F32(MU_FAT[e]) * lf + F32(K_MIN[e]) * mn))
    sh = shutter_mask(V, rng)
    heel = (1 + rng.uniform(-0.08, 0.08) * np.linspace(-1, 1, V.hw, dtype=F32))[:, None]
    prim = tau * heel
    # scatter: broad blur of the collimated primary, scaled to a target SPR under the spine
    f = 8
    scat = upsample(ndimage.gaussian_filter(lowres(prim * sh, f), 38 / (V.po * f), mode="constant"),
                    prim.shape)
    c = V.verts_px
    roi = (slice(max(0, int(c[0]) - 20), int(c[0]) + 20), slice(max(0, int(c[1]) - 20), int(c[1]) + 20))
    spr = rng.uniform(*vend["spr"])
    scat *= F32(spr * prim[roi].mean() / max(scat[roi].mean(), 1e-12))
    lead = np.ones_like(prim)
    info = dict(kvp=kvp, spr=spr)
    if rng.random() < 0.7:                                       # lead R/L marker
        letter = ("R" if rng.random() < 0.5 else "L") if V.kind == "AP" else "L"
        sz = int(11 / (2 * V.ps))
        m = text_mask([letter], sz, (int(sz * 1.4), int(sz * 1.2)))
        ys, xs = np.nonzero(sh > 0.99)
        if len(ys):
            right = (letter == "L") if V.kind == "AP" else rng.random() < 0.5
            i0 = int(np.clip(rng.uniform(0.08, 0.25) * V.hw + ys.min(), 0, V.hw - m.shape[0]))
            j0 = xs.max() - m.shape[1] - int(0.04 * V.ww) if right else xs.min() + int(0.04 * V.ww)
            j0 = int(np.clip(j0, 0, V.ww - m.shape[1]))
            lead[i0:i0 + m.shape[0], j0:j0 + m.shape[1]] -= F32(0.96) * m
            info["marker"] = letter
    total = prim * lead * sh + scat * (F32(0.08) + F32(0.92) * sh)
    total = ndimage.gaussian_filter(total, 0.6)                  # focal spot / anti-alias
    target = rng.uniform(250, 1400) * (0.6 if vend["sop"] == "CR" else 1.0)
    N0 = target / max(total[roi].mean(), 1e-9)
    info["mas"] = float(np.clip(N0 * 2.5e-4 * (V.SID / 1000) ** 2 * (80 / kvp) ** 2, 2, 320))
    up = upsample(total, (V.H, V.W)) * F32(N0)
    noise = rng.standard_normal(up.shape, dtype=F32)
    raw = up + np.sqrt(up * F32(1.15) + F32(4.0)) * noise
    raw = ndimage.gaussian_filter(raw, vend["det_sigma"] * rng.uniform(0.85, 1.2))
    if vend["sop"] == "CR":
        raw *= (1 + F32(0.004) * rng.standard_normal((V.H, 1), dtype=F32))
    info["N0"] = N0
    return np.maximum(raw, F32(0.5)), upsample(sh, (V.H, V.W)), info


# ----------------------------------------------------------------------------- vendor chains
def pct(x, m, q):
    xs, ms = x[::4, ::4], m[::4, ::4] > 0.5 if m.dtype != bool else m[::4, ::4]
    return np.percentile(xs[ms] if ms.sum() > 100 else xs, q)


def sigmoid01(y, c):
    s = lambda z: 1 / (1 + np.exp(-c * (z - 0.5)))
    return ((s(y) - s(0.0)) / (s(1.0) - s(0.0))).astype(F32)


def process(raw, sh, vend, rng, ps, N0):
    """Return display image in [0,1] (1 = white) and a flag for black shutter fill."""
    la = -np.log(raw)                                # attenuation-like: bone = high
    ch, mm = vend["chain"], 1 / ps
    voi = (sh > 0.5) & (la + F32(np.log(N0)) > rng.uniform(0.5, 1.3))   # anatomy, no direct beam
    sh = voi if voi[::4, ::4].sum() > 1000 else sh
    if ch == "window":
        lo, hi = pct(la, sh, [rng.uniform(0.2, 2), rng.uniform(99.0, 99.8)])
        x = (la - lo) / F32(hi - lo)
        x = x + F32(rng.uniform(0.3, 0.9)) * (x - lowpass(x, 1.5 * mm))
        x = np.clip(x, 0, 1) ** F32(rng.uniform(0.8, 1.25))
        return x, False
    if ch == "multifreq":
        lo, hi = pct(la, sh, [1, 99])
        x = (la - lo) / F32(hi - lo)
        xh = lowres(x, 2)
        g1 = ndimage.gaussian_filter(xh, 0.8 * mm / 2)
        g2, g3, g4 = lowpass(xh, 3 * mm / 2), lowpass(xh, 12 * mm / 2), lowpass(xh, 40 * mm / 2)
        nl = lambda b, g: np.sign(b) * np.abs(b / g) ** F32(0.7) * g
        k = rng.uniform(0.8, 1.6)
        low = (F32(rng.uniform(0.35, 0.6)) * g4 + (g3 - g4) + F32(1.3 * k) * nl(g2 - g3, F32(0.08))
               + F32(1.6 * k) * nl(g1 - g2, F32(0.03)) - g1)
        y = upsample(low, x.shape) + x
        lo2, hi2 = pct(y, sh, [0.5, 99.5])
        return sigmoid01((y - lo2) / F32(hi2 - lo2), rng.uniform(3, 6)), True
    if ch == "cr":
        le = -la                                     # log exposure: high = dark
        lo, hi = pct(le, sh, [1, 99])
        y = (le - lo) / F32(hi - lo)
        y = y - F32(rng.uniform(0.15, 0.45)) * (lowpass(y, 25 * mm) - F32(np.median(y[::8, ::8])))
        y = y + F32(0.5) * (y - lowpass(y, 1.0 * mm))
        lo2, hi2 = pct(y, sh, [0.5, 99.5])
        return 1 - sigmoid01(np.clip((y - lo2) / F32(hi2 - lo2), -0.1, 1.1), rng.uniform(2.5, 4.5)), False
    # equalize
    lo, hi = pct(la, sh, [0.5, 99.5])
    x = (la - lo) / F32(hi - lo)
    loc = lowpass(x, 10 * mm)
    xs = loc[::6, ::6][sh[::6, ::6] > 0.5]
    bins = np.linspace(-0.2, 1.2, 257)
    cdf = np.cumsum(np.histogram(xs, bins)[0]).astype(float)
    tone = lowpass(x, 10 * mm, lambda y: np.interp(y, bins[1:], cdf / max(cdf[-1], 1)).astype(F32))
    y = F32(0.55) * tone + F32(0.45) * loc + F32(rng.uniform(1.3, 2.0)) * (x - loc)
    y = y + F32(rng.uniform(0.6, 1.2)) * (y - lowpass(y, 0.5 * mm))
    lo2, hi2 = pct(y, sh, [0.3, 99.7])
    return np.clip((y - lo2) / F32(hi2 - lo2), 0, 1), rng.random() < 0.5


# ----------------------------------------------------------------------------- study assembly
def render_view(P, kind, vend, seed, idx, debug=False):
    rng = np.random.default_rng(np.random.SeedSequence([seed, idx, 1 if kind == "AP" else 2]))
    V = View(kind, P, vend, rng)
    draw_anatomy(V, P, rng)
    soft_tissue(V, P)
    rows, cols = np.nonzero(V.mt > 0)
    if len(rows):
        r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        tex = trab_texture(rng, (r1 - r0, c1 - c0), V.po, P["vbmd"])
        amp = F32(np.clip(0.15 + 0.5 * (1 - P["vbmd"] / 0.2), 0.12, 0.45))
        V.min[r0:r1, c0:c1] += V.mt[r0:r1, c0:c1] * np.maximum(1 + amp * tex, 0)
    cv = V.V @ P["verts"][IL3]["C"]
    V.verts_px = V.pix(cv[0], cv[1])
    raw, sh, info = expose(V, P, vend, rng)
    disp, black = process(raw, sh, vend, rng, V.ps, info["N0"])
    disp = np.clip(disp, 0, 1)
    if black:
        disp = disp * (sh > 0.5)
    info.update(V=V)
    if debug:
        info["raw"], info["la"] = raw, -np.log(raw)
    return disp, info


def make_study(task):
    out, seed, idx = task
    P = sample_patient(seed, idx)
    rng = np.random.default_rng(np.random.SeedSequence([seed, idx, 3]))
    vend = VENDORS[int(rng.integers(len(VENDORS)))]
    pid = f"PHM{seed % 1000:03d}{idx:06d}"
    fam = SURNAMES[int(rng.integers(len(SURNAMES)))]
    given = (GIVEN_F if P["sex"] == "F" else GIVEN_M)[int(rng.integers(7))]
    year = int(rng.integers(2014, 2025))
    date = f"{year}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}"
    study_uid = generate_uid(entropy_srcs=["phm", str(seed), str(idx), "study"])
    burn = rng.random() < vend["text"]
    mono1 = rng.random() < vend["mono1"]
    rows = []
    for vi, kind in enumerate(("AP", "LAT")):
        disp, info = render_view(P, kind, vend, seed, idx)
        info["mono1"] = mono1
        V = info["V"]
        if burn:
            fs = 3.2 / V.ps
            lines = [f"{vend['name']} {vend['model']}", f"L-SPINE {kind}",
                     f"{date[:4]}-{date[4:6]}-{date[6:]}  {int(info['kvp'])}kV {info['mas']:.1f}mAs",
                     f"ID {pid}"]
            m = text_mask(lines, fs, (int(fs * 6), int(fs * 24)))
            i0, j0 = int(0.02 * V.H), int(0.02 * V.W)
            sub = disp[i0:i0 + m.shape[0], j0:j0 + m.shape[1]]
            sub[m[:sub.shape[0], :sub.shape[1]]] = 1.0
        maxv = 2 ** vend["bits"] - 1
        val = (1 - disp) if info["mono1"] else disp
        img = np.round(val * maxv).astype(np.uint16)
        fn = f"s{idx:06d}_{kind}.dcm"
        write_dicom(os.path.join(out, fn), img, P, vend, V, info, dict(
            pid=pid, name=f"{fam}^{given}", date=date, study_uid=study_uid, burn=burn,
            series_uid=generate_uid(entropy_srcs=["phm", str(seed), str(idx), kind, "series"]),
            sop_uid=generate_uid(entropy_srcs=["phm", str(seed), str(idx), kind, "sop"]),
            series_no=vi + 1))
        rows.append([fn, P["label"], f"{P['T']:.2f}", f"{P['bmd']:.3f}", pid, kind])
    return rows


def write_dicom(path, img, P, vend, V, info, ids):
    sop = SOP_UID[vend["sop"]]
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID, fm.MediaStorageSOPInstanceUID = sop, ids["sop_uid"]
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = fm
    ds.SOPClassUID, ds.SOPInstanceUID = sop, ids["sop_uid"]
    ds.StudyInstanceUID, ds.SeriesInstanceUID = ids["study_uid"], ids["series_uid"]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ids["date"]
    ds.StudyTime = ds.ContentTime = "101500"
    ds.AccessionNumber, ds.StudyID = ids["pid"][-8:], "1"
    ds.Modality = vend["sop"]
    ds.Manufacturer, ds.ManufacturerModelName = vend["manu"], vend["model"]
    ds.InstitutionName = "Synthetic Phantom Hospital M"
    ds.StudyDescription = "LUMBAR SPINE 2 VIEWS"
    ds.SeriesDescription = f"L-SPINE {V.kind}"
    ds.PatientName, ds.PatientID = ids["name"], ids["pid"]
    ds.PatientBirthDate = f"{int(ids['date'][:4]) - P['age']}0615"
    ds.PatientSex, ds.PatientAge = P["sex"], f"{P['age']:03d}Y"
    ds.PatientWeight, ds.PatientSize = f"{P['weight']:.1f}", f"{P['height_m']:.2f}"
    ds.BodyPartExamined, ds.ViewPosition = "LSPINE", V.kind
    ds.PatientOrientation = ["L", "F"] if V.kind == "AP" else (["A", "F"] if V.slat > 0 else ["P", "F"])
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SeriesNumber, ds.InstanceNumber = ids["series_no"], 1
    ds.KVP, ds.Exposure = f"{info['kvp']:.0f}", int(round(info["mas"]))
    ds.DistanceSourceToDetector, ds.DistanceSourceToPatient = f"{V.SID:.0f}", f"{V.SOD:.0f}"
    ds.EstimatedRadiographicMagnificationFactor = f"{V.mag:.3f}"
    ds.ImagerPixelSpacing = ds.PixelSpacing = [f"{V.ps:.4f}", f"{V.ps:.4f}"]
    if vend["sop"] == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.PresentationLUTShape = "INVERSE" if info["mono1"] else "IDENTITY"
    ds.BurnedInAnnotation = "YES" if ids["burn"] else "NO"
    ds.LossyImageCompression = "00"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME1" if info["mono1"] else "MONOCHROME2"
    ds.Rows, ds.Columns = img.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, vend["bits"], vend["bits"] - 1
    ds.PixelRepresentation = 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "US"
    mx = 2 ** vend["bits"] - 1
    ds.WindowCenter, ds.WindowWidth = f"{mx / 2:.0f}", f"{mx:.0f}"
    ds.PixelData = img.tobytes()
    ds.save_as(path, enforce_file_format=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("n_studies", type=int)
    ap.add_argument("seed", type=int)
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)
    t0 = time.time()
    tasks = [(a.out_dir, a.seed, i) for i in range(a.n_studies)]
    if a.workers > 1:
        with mp.get_context("fork").Pool(a.workers) as pool:
            results = list(pool.imap(make_study, tasks, chunksize=1))
    else:
        results = [make_study(t) for t in tasks]
    with open(os.path.join(a.out_dir, "manifest.csv"), "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["path", "label", "t_score", "bmd", "patient_id", "view"])
        for rows in results:
            wr.writerows(rows)
    dt = time.time() - t0
    print(f"phantom_m: {a.n_studies} studies ({2 * a.n_studies} images) -> {a.out_dir} in {dt:.1f}s, "
          f"{dt / max(a.n_studies, 1):.2f} s/study, {a.workers} worker(s)")


if __name__ == "__main__":
    main()
