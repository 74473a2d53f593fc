#!/usr/bin/env python3
"""Phantom Q -- lumbar spine AP + lateral radiograph pairs as DICOM (independent generator).

How it draws: every patient is built once in 3-D (mm, x = patient left, y = posterior,
z = cranial) and then projected twice (AP and lateral) with a parallel beam on a shared
object-space lattice.  Vertebrae T10-L5 are stacked along a lordotic / scoliotic curve
(per-level sagittal tilt, coronal tilt and axial rotation); each one is a small voxel
volume evaluated from analytic signed-distance primitives in its own rotated frame (a
waisted elliptic body with concave endplates, elliptic-capsule pedicles, laminae,
spinous and transverse processes, superior/inferior articular processes, osteophytes),
with partial-volume occupancies giving a cortical shell and a trabecular core, summed
along the ray.  Sacrum (with foramina), iliac wings (ruled surfaces between crest and
acetabular curves), ribs (tubes) and aortic wall plaques are point clouds splatted into
both views.  Soft tissue is analytic chord lengths through an elliptic trunk sized by
BMI (subcutaneous and visceral fat, psoas and kidneys with fat halos, lung bases, colon
and small-bowel gas, stool mottling).  Water / fat / hydroxyapatite path lengths are
turned into a polyenergetic (Kramers + Al filter + tungsten lines, CsI/BaFBr absorption
weighted) transmission on a ~0.6 mm grid, with heel effect, vignetting, collimation,
lead L/R marker and a broad scatter kernel; it is then upsampled 2x to the detector
grid, where quantum noise, detector blur and electronic noise are added.  One of four
invented vendor chains (sigmoid film LUT, multi-band enhancement, DRC + unsharp +
histogram window, partial histogram equalisation) renders the log image, followed by
collimation borders (white / black / none), burned-in text, MONOCHROME1 inversion for
~25 %, 10-16 bit quantisation and a DX or CR DICOM header.

How bone density shows: the label is a DXA-like T-score (class thirds, WHO cut-offs,
bmd = 1.047 + 0.11 T).  Trabecular volumetric BMD of each vertebral body is
(165 + 27 T) mg/cm3 hydroxyapatite times a per-patient (~6 %) and per-level (~5 %)
factor; posterior elements, sacrum and pelvis follow at a damped rate; the vertebral
cortex thins (about 0.55 + 0.05 T mm) and becomes slightly less dense with T.  A 3-D
strut model (vertical columns plus horizontal cross-struts) is splatted at detector
resolution to modulate the trabecular line integral: at low T there are fewer struts,
horizontal ones are lost preferentially and the survivors are thicker and longer, so
the texture becomes sparser, coarser and vertically striated.  Wedge / biconcave /
crush fractures become more frequent as T falls.  Confounders are drawn independently
of T given age: BMI, exposure (AEC target, kVp), processing, degeneration (disc
narrowing, endplate sclerosis, osteophytes, all adding density) and aortic plaques;
age itself is only weakly tied to T (62 - 2 T +- 9 years).
"""
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import csv
import datetime
import math
import multiprocessing as mp
import sys

import numpy as np
from scipy import ndimage
from PIL import Image, ImageDraw, ImageFont
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

F32 = np.float32

# ----------------------------------------------------------------------------- physics tables
_E_TAB = np.array([15, 20, 30, 40, 50, 60, 80, 100, 150], float)
_MU = {  # mass attenuation coefficients, cm2/g (NIST-like, rounded)
    "water": [1.673, 0.8096, 0.3756, 0.2683, 0.2269, 0.2059, 0.1837, 0.1707, 0.1505],
    "fat": [1.35, 0.70, 0.335, 0.247, 0.213, 0.196, 0.176, 0.165, 0.146],
    "ha": [15.8, 6.7, 2.2, 1.03, 0.607, 0.416, 0.258, 0.200, 0.153],
    "al": [7.955, 3.441, 1.128, 0.5685, 0.3681, 0.2778, 0.2018, 0.1704, 0.1378],
    "csi": [44.0, 18.0, 6.5, 22.0, 12.5, 7.6, 3.6, 2.0, 0.8],
    "bafbr": [30.0, 13.0, 4.6, 14.0, 8.5, 5.2, 2.6, 1.5, 0.6],
}


def mu(name, E):
    return np.exp(np.interp(np.log(E), np.log(_E_TAB), np.log(_MU[name])))


def spectrum(kvp, al_mm, det, det_gcm2):
    edges = np.linspace(16.0, kvp, 11)
    E = 0.5 * (edges[1:] + edges[:-1])
    n = np.clip(kvp - E, 0, None) / E  # Kramers photon number per keV
    if kvp > 72:
        for line, frac in ((59.3, 0.05), (67.2, 0.018)):
            n[np.argmin(np.abs(E - line))] += frac * n.sum() * min(1.0, (kvp - 69.5) / 30.0)
    n = n * np.exp(-mu("al", E) * 2.699 * al_mm / 10.0)
    eta = 1.0 - np.exp(-mu(det, E) * det_gcm2)
    w = n * E * eta
    return E, w / w.sum()


# ----------------------------------------------------------------------------- small helpers
def rotm(theta, phi, psi):
    c, s = math.cos(theta), math.sin(theta)
    rx = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    c, s = math.cos(phi), math.sin(phi)
    ry = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    c, s = math.cos(psi), math.sin(psi)
    rz = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    return rz @ ry @ rx


def gblur(a, s):
    return ndimage.gaussian_filter(a, s, mode="nearest", truncate=3.0)


def blur_big(a, s):
    """Gaussian blur with large sigma via block decimation."""
    if s <= 4:
        return gblur(a, s)
    f = int(max(2, s // 2.5))
    H, W = a.shape
    ph, pw = (-H) % f, (-W) % f
    b = np.pad(a, ((0, ph), (0, pw)), mode="edge")
    b = b.reshape(b.shape[0] // f, f, b.shape[1] // f, f).mean(axis=(1, 3))
    b = gblur(b, s / f)
    b = ndimage.zoom(b, f, order=1, grid_mode=True, mode="nearest")
    return b[:H, :W].astype(a.dtype, copy=False)


def up2(a):
    return ndimage.zoom(a, 2, order=1, grid_mode=True, mode="nearest").astype(F32, copy=False)


def splat(M, col, row, w):
    """Bilinear accumulate point weights into map M (in place)."""
    H, W = M.shape
    c0 = np.floor(col).astype(np.int64)
    r0 = np.floor(row).astype(np.int64)
    fc = col - c0
    fr = row - r0
    acc = np.zeros(H * W)
    for dr, dc, ww in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc),
                       (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
        rr = r0 + dr
        cc = c0 + dc
        ok = (rr >= 0) & (rr < H) & (cc >= 0) & (cc < W)
        acc += np.bincount(rr[ok] * W + cc[ok], weights=(w * ww)[ok], minlength=H * W)
    M += acc.reshape(H, W).astype(F32)


def sdf_ell3(du, a1, a2, rm, r1, r2):
    """Approximate signed distance to an ellipsoid (IQ style), arrays or scalars."""
    k0 = np.sqrt((du / rm) ** 2 + (a1 / r1) ** 2 + (a2 / r2) ** 2)
    k1 = np.sqrt((du / rm ** 2) ** 2 + (a1 / r1 ** 2) ** 2 + (a2 / r2 ** 2) ** 2)
    k1 = np.maximum(k1, 1e-3)
    return np.where(k0 < 0.5, (k0 - 1.0) * np.minimum(rm, np.minimum(r1, r2)), k0 * (k0 - 1.0) / k1)


def sdf_ell2(x, y, a, b):
    k0 = np.sqrt((x / a) ** 2 + (y / b) ** 2)
    k1 = np.maximum(np.sqrt((x / (a * a)) ** 2 + (y / (b * b)) ** 2), 1e-3)
    return np.where(k0 < 0.5, (k0 - 1.0) * np.minimum(a, b), k0 * (k0 - 1.0) / k1), k0


# ----------------------------------------------------------------------------- vertebra model
LEVELS = ["T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5"]
#          h     w     d   disc  sag   pedW  TPlen SPlen SPdrop
LEVTAB = [(20.0, 33.0, 27.0, 5.0, -13.0, 5.0, 20.0, 32.0, 16.0),
          (21.0, 35.0, 28.0, 5.5, -11.0, 5.5, 14.0, 30.0, 12.0),
          (23.0, 38.0, 30.0, 6.5, -8.0, 6.5, 7.0, 28.0, 7.0),
          (25.0, 42.0, 31.0, 7.5, -5.0, 7.0, 13.0, 27.0, 4.0),
          (26.0, 44.0, 32.0, 8.5, -1.0, 7.5, 18.0, 28.0, 3.0),
          (27.0, 46.0, 33.0, 9.5, 4.0, 9.0, 24.0, 28.0, 3.0),
          (27.0, 48.0, 34.0, 10.5, 11.0, 11.0, 20.0, 26.0, 3.0),
          (26.0, 50.0, 34.0, 10.0, 19.0, 13.5, 17.0, 22.0, 4.0)]


def cap(p0, p1, r1, r2, e1, t, g="p"):
    p0 = np.asarray(p0, float)
    p1 = np.asarray(p1, float)
    rmax = max(r1[0], r1[1], r2[0], r2[1]) + 1.0
    lo = np.minimum(p0, p1) - rmax
    hi = np.maximum(p0, p1) + rmax
    return dict(k="cap", p0=p0, p1=p1, r1=r1, r2=r2, e1=np.asarray(e1, float), t=t, g=g, lo=lo, hi=hi)


def sd_cap(lx, ly, lz, e):
    p0, p1 = e["p0"], e["p1"]
    d = p1 - p0
    L = float(np.linalg.norm(d))
    u = d / L
    h = e["e1"] - np.dot(e["e1"], u) * u
    e1 = h / np.linalg.norm(h)
    e2 = np.cross(u, e1)
    dx, dy, dz = lx - float(p0[0]), ly - float(p0[1]), lz - float(p0[2])
    t = dx * float(u[0]) + dy * float(u[1]) + dz * float(u[2])
    a1 = dx * float(e1[0]) + dy * float(e1[1]) + dz * float(e1[2])
    a2 = dx * float(e2[0]) + dy * float(e2[1]) + dz * float(e2[2])
    f = np.clip(t / L, 0, 1)
    du = t - f * L
    r1 = e["r1"][0] + (e["r1"][1] - e["r1"][0]) * f
    r2 = e["r2"][0] + (e["r2"][1] - e["r2"][0]) * f
    rm = np.minimum(r1, r2)
    sd = sdf_ell3(du, a1, a2, rm, r1, r2)
    tt = e["t"]
    sdi = sdf_ell3(du, a1, a2, np.maximum(rm - tt, 0.3), np.maximum(r1 - tt, 0.3), np.maximum(r2 - tt, 0.3))
    return sd, sdi


def sd_body(lx, ly, lz, e):
    a, b, hz = e["a"], e["b"], e["hz"]
    t = np.clip(lz / hz, -1.0, 1.0)
    pinch = 1.0 - t * t
    aw = a * (1.0 - e["waist"] * pinch)
    post = ly > 0
    bw = np.where(post, b * 0.85, b) * (1.0 - 0.5 * e["waist"] * pinch)
    lyy = ly + np.where(post, 0.12 * b * np.clip(1.0 - (lx / (0.55 * a)) ** 2, 0, None), 0.0).astype(F32)
    sdxy, k0 = sdf_ell2(lx, lyy, aw, bw)
    sdxyi, _ = sdf_ell2(lx, lyy, aw - e["ts"], bw - e["ts"])
    rn2 = np.minimum(k0 * k0, 1.0)
    hf = 1.0 - e["wedge"] * np.clip(0.5 - 0.5 * ly / b, 0, 1)
    hu = hz * hf * (1.0 - e["cu"] * (1.0 - rn2))
    hd = hz * hf * (1.0 - e["cd"] * (1.0 - rn2))
    du = lz - hu
    dd = -lz - hd
    sd = np.maximum(sdxy, np.maximum(du, dd))
    sdi = np.maximum(sdxyi, np.maximum(du + e["te"], dd + e["te"]))
    fac = 1.0 + e["su"] * np.exp(np.clip(du, -30, 0) / 2.5) + e["sdn"] * np.exp(np.clip(dd, -30, 0) / 2.5)
    return sd, sdi, fac


def vertebra_elements(V, rng):
    a, b, hz = V["a"], V["b"], V["hz"]
    pw, tpl, spl, spd = V["pedw"], V["tpl"], V["spl"], V["spd"]
    s_ = V["scale"]
    main, tps = [], []
    main.append(dict(k="body", a=a, b=b, hz=hz, waist=V["waist"], wedge=V["wedge"], cu=V["cu"], cd=V["cd"],
                     ts=V["ts"], te=V["te"], su=V["su"], sdn=V["sdn"],
                     lo=np.array([-a - 1, -b - 1, -hz - 1]), hi=np.array([a + 1, b + 1, hz + 1])))
    pl = (9.0 + 0.12 * 2 * a) * s_
    yp = b + pl
    tp = V["tpost"]
    for s in (-1, 1):
        xp = s * 0.58 * a
        main.append(cap((xp * 0.8, 0.45 * b, 0.25 * hz), (xp * 1.22, yp, 0.2 * hz), (0.34 * 2 * hz, 0.3 * 2 * hz),
                        (pw / 2, pw / 2 * 0.9), (0, 0, 1), tp * 0.7, "p"))
        main.append(cap((xp * 1.05, yp, 0.1 * hz), (0, yp + 9 * s_, -0.1 * hz), (0.42 * 2 * hz, 0.4 * 2 * hz),
                        (2.6, 2.4), (0, 0, 1), tp * 0.8, "p"))
        xs = s * (0.62 * a + 2.0)
        main.append(cap((xs, yp - 3, 0.3 * hz), (xs + s * 2.5, yp + 1, hz + 8 * s_), (5.0, 4.0), (3.6, 3.0),
                        (0, 1, 0), tp, "p"))
        xi = s * max(0.40 * a, 7.0)
        main.append(cap((xi, yp + 6, -0.2 * hz), (xi - s * 1.0, yp + 5, -hz - 8 * s_), (4.6, 3.8), (3.5, 3.0),
                        (0, 1, 0), tp, "p"))
        if tpl > 0:
            tpy = 14.0 if V["name"].startswith("T") else 4.0
            tps.append(cap((s * (0.58 * a + pw / 2 + 1.0), yp - 0.45 * pl, 0.2 * hz),
                           (s * (a + tpl * s_), yp - 0.45 * pl + tpy, 0.1 * hz - 2),
                           (5.2 * s_, 3.4 * s_), (3.0, 2.4), (0, 0, 1), tp, "p"))
    main.append(cap((0, yp + 7 * s_, -0.1 * hz), (0, yp + (7 + spl) * s_, -0.1 * hz - spd - 6),
                    (0.36 * 2 * hz, 0.3 * 2 * hz), (3.2, 2.6), (0, 0, 1), 1.6, "p"))
    for (ang, zs, ln, r) in V["osteo"]:
        rim = np.array([a * math.cos(ang), b * math.sin(ang), zs * (hz - 1.5)])
        out = np.array([math.cos(ang), math.sin(ang), 0.0])
        p1 = rim + ln * (0.7 * out + 0.7 * np.array([0, 0, zs]))
        main.append(cap(rim - 1.5 * out, p1, (r, 0.8), (r * 0.8, 0.7), (0, 0, 1), 0.5, "p"))
    return main, tps


def voxelize(elems, R, c, v, rho):
    """Evaluate a union of primitives on the global lattice; returns (i0, mineral, trab_body)."""
    Rl = [[float(x) for x in row] for row in R]
    boxes = []
    for e in elems:
        lo, hi = e["lo"], e["hi"]
        cor = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        g = cor @ R.T + c
        boxes.append((np.floor(g.min(0) / v).astype(int) - 1, np.ceil(g.max(0) / v).astype(int) + 2))
    I0 = np.min([b[0] for b in boxes], axis=0)
    I1 = np.max([b[1] for b in boxes], axis=0)
    shape = tuple(int(x) for x in (I1 - I0))
    sdo = np.full(shape, 50.0, F32)
    sdb = np.full(shape, 50.0, F32)
    sdp = np.full(shape, 50.0, F32)
    has_body = any(e["k"] == "body" for e in elems)
    fac = np.ones(shape, F32) if has_body else None
    gx = (np.arange(I0[0], I1[0]) * v - c[0]).astype(F32)
    gy = (np.arange(I0[1], I1[1]) * v - c[1]).astype(F32)
    gz = (np.arange(I0[2], I1[2]) * v - c[2]).astype(F32)
    for e, (i0, i1) in zip(elems, boxes):
        sl = tuple(slice(int(i0[k] - I0[k]), int(i1[k] - I0[k])) for k in range(3))
        X = gx[sl[0]][:, None, None]
        Y = gy[sl[1]][None, :, None]
        Z = gz[sl[2]][None, None, :]
        lx = Rl[0][0] * X + Rl[1][0] * Y + Rl[2][0] * Z
        ly = Rl[0][1] * X + Rl[1][1] * Y + Rl[2][1] * Z
        lz = Rl[0][2] * X + Rl[1][2] * Y + Rl[2][2] * Z
        if e["k"] == "body":
            sd, sdi, ff = sd_body(lx, ly, lz, e)
            fac[sl] = ff
            np.minimum(sdb[sl], sdi, out=sdb[sl])
        else:
            sd, sdi = sd_cap(lx, ly, lz, e)
            np.minimum(sdp[sl], sdi, out=sdp[sl])
        np.minimum(sdo[sl], sd, out=sdo[sl])
    iv = F32(1.0 / v)

    def occ(sd):
        sd *= -iv
        sd += 0.5
        return np.clip(sd, 0, 1, out=sd)

    oo, ob, op = occ(sdo), occ(sdb), occ(sdp)
    oin = np.maximum(ob, op)
    trab = ob * fac * F32(rho["tb"]) if has_body else None
    mineral = (oo - oin) * F32(rho["c"])
    mineral += (oin - ob) * F32(rho["tp"])
    if trab is not None:
        mineral += trab
    return I0, mineral, trab


# ----------------------------------------------------------------------------- point clouds
def tube_points(C, r, tc, rhoc, rhom, nring=20):
    d = np.gradient(C, axis=0)
    ds = np.linalg.norm(d, axis=1, keepdims=True)
    t = d / np.maximum(ds, 1e-6)
    ref = np.where(np.abs(t[:, 2:3]) < 0.9, np.array([[0, 0, 1.0]]), np.array([[1.0, 0, 0]]))
    e1 = np.cross(t, ref)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(t, e1)
    pts, ms = [], []
    r = np.broadcast_to(np.asarray(r, float), (len(C),))[:, None]
    jit = np.random.default_rng(len(C)).uniform(0, 2 * np.pi, (len(C), 1))
    for rr, n, mfun in ((r, nring, lambda: rhoc * tc * 2 * np.pi * r / nring * ds),
                        (0.55 * r, 6, lambda: rhom * np.pi * (r - tc) ** 2 / 7.0 * ds)):
        for k in np.linspace(0, 2 * np.pi, n, endpoint=False):
            a = jit + k + (0.5 if n == 6 else 0.0)
            pts.append(C + rr * (np.cos(a) * e1 + np.sin(a) * e2))
            ms.append(mfun()[:, 0])
    pts.append(C)
    ms.append((rhom * np.pi * (r - tc) ** 2 / 7.0 * ds)[:, 0])
    return np.concatenate(pts), np.concatenate(ms)


def resample_poly(nodes, step, smooth=3):
    nodes = np.asarray(nodes, float)
    seg = np.linalg.norm(np.diff(nodes, axis=0), axis=1)
    s = np.concatenate([[0], np.cumsum(seg)])
    n = max(4, int(s[-1] / step))
    q = np.linspace(0, s[-1], n)
    P = np.stack([np.interp(q, s, nodes[:, k]) for k in range(3)], 1)
    if smooth > 1:
        k = int(smooth / step) | 1
        if k > 1 and len(P) > 2 * k:
            pad = np.pad(P, ((k // 2, k // 2), (0, 0)), mode="edge")
            ker = np.ones(k) / k
            P = np.stack([np.convolve(pad[:, j], ker, mode="valid") for j in range(3)], 1)
    return P


def bezier(P, t):
    P = np.asarray(P, float)
    t = np.asarray(t)[:, None]
    return ((1 - t) ** 3) * P[0] + 3 * ((1 - t) ** 2) * t * P[1] + 3 * (1 - t) * t * t * P[2] + t ** 3 * P[3]


# ----------------------------------------------------------------------------- patient model
VENDORS = [
    dict(name="Halden Imaging AS", model="HaldenDR 4300", mod="DX", det="csi", bits=(12, 14, 16), chains=(0, 0, 1, 2),
         ps=0.286, mono1=0.10, sw="HIP 7.2.1"),
    dict(name="Korvane Medical", model="Korvane CR-88", mod="CR", det="bafbr", bits=(10, 12), chains=(3, 3, 0, 2),
         ps=0.30, mono1=0.55, sw="KCR 3.04"),
    dict(name="Nordlys Radiology Systems", model="Aurora DX2", mod="DX", det="csi", bits=(14, 15, 16),
         chains=(1, 1, 2, 3), ps=0.296, mono1=0.15, sw="NRS-Aurora 11.0"),
    dict(name="Tessaro Medtech", model="TessaView 35", mod="DX", det="csi", bits=(12, 16), chains=(2, 2, 1, 0),
         ps=0.31, mono1=0.25, sw="TV 2.9b"),
]


def build_patient(seed, idx):
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) % (2 ** 32), int(idx), 0x51A7]))
    cls = int(rng.integers(0, 3))
    T = [rng.uniform(-1.0, 1.6), rng.uniform(-2.49, -1.01), rng.uniform(-4.5, -2.5)][cls]
    T = round(float(T), 2)
    label = 0 if T >= -1.0 else (2 if T <= -2.5 else 1)
    P = dict(rng=rng, T=T, label=label, bmd=round(1.047 + 0.11 * T, 3))
    P["female"] = bool(rng.random() < 0.75)
    P["age"] = int(np.clip(round(62 - 2 * T + rng.normal(0, 9)), 25, 94))
    P["bmi"] = float(np.clip(math.exp(rng.normal(math.log(26.5), 0.17)), 16.5, 46))
    hcm = rng.normal(162, 6.5) if P["female"] else rng.normal(176, 7)
    P["sf"] = (hcm / 170.0) ** 0.8 * (0.95 if P["female"] else 1.0)
    P["deg"] = float(np.clip((P["age"] - 40) / 45.0 + rng.normal(0, 0.18), 0, 1))
    return P


def build_spine(P):
    rng, T, sf, deg = P["rng"], P["T"], P["sf"], P["deg"]
    pf = rng.normal(1.0, 0.06)
    rho_t0 = max(0.02, (165 + 27 * T) / 1000.0 * pf)
    kl = rng.uniform(0.6, 1.4)
    scol = rng.normal(0, 2.5) if rng.random() < 0.8 else rng.choice([-1, 1]) * rng.uniform(5, 13)
    apex = rng.uniform(2.5, 5.5)
    span = rng.uniform(4, 7)
    rot0 = rng.normal(0, 2.5)
    p_fx = 0.03 + 0.5 / (1 + math.exp(1.8 * (T + 2.7)))
    nfx = int(rng.random() < p_fx) + int(rng.random() < p_fx * 0.4)
    fx_lv = set(rng.choice([1, 2, 3, 4, 5, 6], size=nfx, replace=False).tolist()) if nfx else set()
    Vs = []
    for i, name in enumerate(LEVELS):
        h, w, d, disc, sag, pw, tpl, spl, spd = LEVTAB[i]
        lf = rng.normal(1.0, 0.05)
        V = dict(name=name, scale=sf, hz=h / 2 * sf * rng.normal(1, 0.03), a=w / 2 * sf * rng.normal(1, 0.03),
                 b=d / 2 * sf * rng.normal(1, 0.03), pedw=pw * sf, tpl=tpl * rng.uniform(0.8, 1.2),
                 spl=spl * rng.uniform(0.85, 1.15), spd=spd, waist=rng.uniform(0.04, 0.10), wedge=0.0,
                 cu=rng.uniform(0.03, 0.08), cd=rng.uniform(0.03, 0.08))
        V["disc"] = disc * sf * (1 - 0.45 * deg * rng.random()) * rng.normal(1, 0.06)
        V["ts"] = float(np.clip(0.55 + 0.05 * T, 0.3, 0.8) * rng.normal(1, 0.08))
        V["te"] = float(np.clip(0.75 + 0.05 * T, 0.4, 1.0))
        V["tpost"] = float(np.clip(1.1 + 0.06 * T, 0.7, 1.4))
        V["su"] = deg * rng.uniform(0, 1.3) if rng.random() < deg else 0.0
        V["sdn"] = deg * rng.uniform(0, 1.3) if rng.random() < deg else 0.0
        if i in fx_lv:
            kind = rng.choice(["wedge", "biconcave", "crush"], p=[0.5, 0.3, 0.2])
            sev = rng.uniform(0.2, 0.45)
            if kind == "wedge":
                V["wedge"] = sev
            elif kind == "biconcave":
                V["cu"] += sev
                V["cd"] += sev * rng.uniform(0.5, 1)
            else:
                V["hz"] *= 1 - sev * 0.8
            V["su"] += rng.uniform(0.3, 0.9)
        V["osteo"] = []
        for zs in (-1, 1):
            if rng.random() < deg * 0.8 and not name.startswith("T1"):
                for _ in range(int(rng.integers(1, 4))):
                    ang = rng.uniform(-math.pi * 0.95, -0.05) if rng.random() < 0.6 else rng.choice([0.0, math.pi]) + rng.normal(0, 0.3)
                    V["osteo"].append((ang, zs, 1.5 + 8 * deg * rng.random(), rng.uniform(1.5, 3.0)))
        V["rho"] = dict(tb=rho_t0 * lf, tp=0.75 * rho_t0 * lf + 0.05,
                        c=float(np.clip(0.9 + 0.02 * T, 0.75, 0.95)))
        theta = math.radians(sag * kl + rng.normal(0, 1.5))
        phi = math.radians(scol * math.sin(math.pi * (i - apex) / span) + rng.normal(0, 0.8))
        psi = math.radians(rot0 - 0.6 * scol * math.cos(math.pi * (i - apex) / span) * 0.5 + rng.normal(0, 1.0))
        V["R"] = rotm(theta, phi, psi)
        Vs.append(V)
    # stack
    c = np.zeros(3)
    for i, V in enumerate(Vs):
        if i > 0:
            U = Vs[i - 1]
            up = U["R"][:, 2] + V["R"][:, 2]
            up /= np.linalg.norm(up)
            c = c - up * (U["hz"] + U["disc"] + V["hz"])
        V["c"] = c.copy()
    beta0 = math.radians(rng.uniform(32, 48) * (0.7 + 0.3 * kl))
    obl = math.radians(rng.normal(0, 1.5))
    Rs = rotm(beta0, obl, math.radians(rot0 * 0.5))
    L5 = Vs[-1]
    up = L5["R"][:, 2] + Rs[:, 2]
    up /= np.linalg.norm(up)
    Os = L5["c"] - up * (L5["hz"] + L5["disc"])
    shift = Vs[5]["c"].copy()
    for V in Vs:
        V["c"] = V["c"] - shift
    P.update(Vs=Vs, Os=Os - shift, Rs=Rs, beta0=beta0, rho_t0=rho_t0, kl=kl, fx=sorted(fx_lv))
    P["rho_pelv"] = dict(tb=0.7 * rho_t0 + 0.03, c=float(np.clip(0.9 + 0.02 * T, 0.75, 0.95)))


def sacrum_pelvis_points(P):
    rng, sf, Os, Rs = P["rng"], P["sf"], P["Os"], P["Rs"]
    rp = P["rho_pelv"]
    pts, ms = [], []
    # --- sacrum: curved tapered plate in its own frame (u lateral, v caudal, w anterior)
    Ls = rng.uniform(95, 112) * sf
    kap = rng.uniform(0.55, 1.0) / Ls
    nv, nu, nw = 150, 170, 9
    vv = (np.arange(nv) + 0.5) / nv
    ds = Ls / nv
    beta = -vv * Ls * kap  # local sagittal angle relative to S1 endplate normal frame
    tl = np.stack([np.zeros(nv), np.sin(beta), -np.cos(beta)], 1)  # caudal tangent (local)
    nl = np.stack([np.zeros(nv), -np.cos(beta), -np.sin(beta)], 1)  # anterior normal (local)
    Cl = np.cumsum(tl * ds, axis=0) - tl * ds / 2
    # rotate local (defined with S1 normal = +z) by sacral frame Rs
    C = Cl @ Rs.T + Os
    tg = tl @ Rs.T
    nn = nl @ Rs.T
    ex = Rs[:, 0]
    Wv = (11 + 41 * (1 - vv) ** 1.15) * sf
    Dv = (4 + 14 * (1 - vv) ** 0.9) * sf
    uu = (np.arange(nu) + 0.5) / nu * 2 - 1
    ww = (np.arange(nw) + 0.5) / nw * 2 - 1
    U, Vi, Wg = np.meshgrid(uu, np.arange(nv), ww, indexing="ij")
    U = U + rng.uniform(-0.5, 0.5, U.shape) * (2.0 / nu)
    Wg = Wg + rng.uniform(-0.5, 0.5, Wg.shape) * (2.0 / nw)
    Wm, Dm = Wv[Vi], Dv[Vi] * (1 - 0.7 * U ** 2)
    xs = U * Wm
    keep = np.ones(U.shape, bool)
    fvs = [0.14, 0.34, 0.54, 0.72]
    holes = []
    for k, fv in enumerate(fvs):
        xf = (13 + 8 * (1 - fv)) * sf
        rf = (4.8 - 0.7 * k) * sf
        for s in (-1, 1):
            holes.append((s * xf, fv * Ls, rf))
            keep &= (xs - s * xf) ** 2 + (Vi * ds + ds / 2 - fv * Ls) ** 2 > rf ** 2
    jv = rng.uniform(-0.5, 0.5, U.shape)[..., None] * ds
    Pint = C[Vi] + tg[Vi] * jv + (xs)[..., None] * ex + (Wg * Dm)[..., None] * nn[Vi]
    dV = (2 * Wm / nu) * ds * (2 * Dm / nw)
    pts.append(Pint[keep])
    ms.append((rp["tb"] * 1.1 * dV)[keep])
    # cortical surfaces (anterior, posterior) and top endplate
    U2, V2 = np.meshgrid(uu, np.arange(nv), indexing="ij")
    U2 = U2 + rng.uniform(-0.5, 0.5, U2.shape) * (2.0 / nu)
    jv2 = rng.uniform(-0.5, 0.5, U2.shape)[..., None] * ds
    x2 = U2 * Wv[V2]
    D2 = Dv[V2] * (1 - 0.7 * U2 ** 2)
    k2 = np.ones(U2.shape, bool)
    for (hx, hv, rf) in holes:
        k2 &= (x2 - hx) ** 2 + (V2 * ds + ds / 2 - hv) ** 2 > rf ** 2
    dA = (2 * Wv[V2] / nu) * ds
    for sgn, tcort in ((1, 1.0), (-1, 1.3)):
        Ps = C[V2] + tg[V2] * jv2 + x2[..., None] * ex + (sgn * D2)[..., None] * nn[V2]
        pts.append(Ps[k2])
        ms.append((rp["c"] * tcort * dA)[k2])
    nu3, nw3 = 260, 80
    U3, W3 = np.meshgrid((np.arange(nu3) + 0.5) / nu3 * 2 - 1, (np.arange(nw3) + 0.5) / nw3 * 2 - 1, indexing="ij")
    x3 = U3 * Wv[0]
    Pt = C[0] + x3[..., None] * ex + (W3 * Dv[0] * (1 - 0.7 * U3 ** 2))[..., None] * nn[0] - tg[0] * 0.5
    pts.append(Pt.reshape(-1, 3))
    ms.append((rp["c"] * 1.0 * (2 * Wv[0] / nu3) * (2 * Dv[0] * (1 - 0.7 * U3 ** 2) / nw3)).ravel())
    # foramen walls
    ang = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    for (hx, hv, rf) in holes:
        iv = min(nv - 1, int(hv / ds))
        for w in np.linspace(-0.8, 0.8, 5):
            for a_ in ang:
                p = C[iv] + (hx + rf * math.cos(a_)) * ex + tg[iv] * rf * math.sin(a_) + nn[iv] * w * Dv[iv] * 0.8
                pts.append(p[None])
                ms.append(np.array([rp["c"] * 0.35 * (2 * np.pi * rf / 16) * (Dv[iv] * 1.6 / 5)]))
    # median crest + S1 superior articular processes (tubes)
    crest = C[: int(nv * 0.7)] - nn[: int(nv * 0.7)] * (Dv[: int(nv * 0.7), None] + 3)
    p, m = tube_points(crest, 3.0, 0.8, rp["c"], rp["tb"])
    pts.append(p)
    ms.append(m)
    for s in (-1, 1):
        base = C[4] + s * 17 * sf * ex - nn[4] * (Dv[4] + 4)
        cl = resample_poly([base, base - tg[4] * 14 - nn[4] * 3], 0.5, 0)
        p, m = tube_points(cl, 5.0, 1.0, rp["c"], rp["tb"])
        pts.append(p)
        ms.append(m)
    # --- iliac wings: ruled surface between crest and lower (acetabular / notch) curve
    Rp = rotm(P["beta0"] - 0.70, 0, 0)
    for s in (-1, 1):
        j = lambda a_: rng.normal(0, a_)
        crest_c = np.array([[s * (44 + j(2)), 52, 2], [s * (100 + j(4)), 58, 48 + j(4)],
                            [s * (142 + j(5)), -18, 58 + j(4)], [s * (112 + j(4)), -72, -8]]) * sf
        low_c = np.array([[s * 48, 34, -58], [s * 78, 22, -98], [s * 96, -12, -100], [s * 100, -48, -62]]) * sf
        nph, nvv = 230, 150
        ph = (np.arange(nph) + 0.5) / nph
        vq = (np.arange(nvv) + 0.5) / nvv
        Cc = bezier(crest_c, ph)
        Cb = bezier(low_c, ph)
        Vq = vq[None, :, None] ** 1.2
        S = (1 - Vq) * Cc[:, None, :] + Vq * Cb[:, None, :]
        # bowl: push the mid-wing laterally-posteriorly (iliac fossa)
        bulge = np.sin(np.pi * ph)[:, None] * np.sin(np.pi * vq)[None, :] * 10 * sf
        S[..., 0] += s * bulge
        dph = np.gradient(S, axis=0)
        dvq = np.gradient(S, axis=1)
        nrm = np.cross(dph, dvq)
        dA = np.linalg.norm(nrm, axis=2)
        nrm /= np.maximum(dA[..., None], 1e-6)
        th = (3.5 + 14 * vq[None, :] ** 2.2 + 16 * np.clip(1 - ph[:, None] / 0.18, 0, 1) + 0 * ph[:, None]) * sf
        S = (S @ Rp.T) + Os
        nrm = nrm @ Rp.T
        for sg in (-0.5, 0.5):
            pts.append((S + sg * th[..., None] * nrm).reshape(-1, 3))
            ms.append((dA * (rp["c"] * 1.1 + 0.25 * rp["tb"] * np.maximum(th - 2.2, 0))).ravel())
        pts.append(S.reshape(-1, 3))
        ms.append((dA * rp["tb"] * np.maximum(th - 2.2, 0) * 0.5).ravel())
        cr = resample_poly(bezier(crest_c, np.linspace(0.02, 1, 120)), 0.5, 2)
        cr = cr @ Rp.T + Os
        p, m = tube_points(cr, 5.5 * sf, 1.3, rp["c"], rp["tb"])
        pts.append(p)
        ms.append(m)
    return np.concatenate(pts), np.concatenate(ms)


def trunk_profile(P):
    """Trunk ellipse parameters as functions of z (interpolators)."""
    rng, bmi = P["rng"], P["bmi"]
    Vs = P["Vs"]
    zc = np.array([V["c"][2] for V in Vs])
    yc = np.array([V["c"][1] for V in Vs])
    pc = np.polyfit(zc, yc, 2)
    zlo, zhi = zc.min() - 20, zc.max()
    fem = P["female"]
    a0 = (128 + 4.2 * (bmi - 22)) * P["sf"] * rng.normal(1, 0.05)
    b0 = (92 + 4.6 * (bmi - 22)) * P["sf"] * rng.normal(1, 0.06)
    f0 = float(np.clip((8 + 2.6 * (bmi - 20)) * (1.25 if fem else 0.9) * rng.normal(1, 0.15), 3, 70))
    vf = float(np.clip(0.08 + 0.02 * (bmi - 22) + (0.06 if not fem else 0) + rng.normal(0, 0.04), 0.03, 0.5))
    zcr = P["Os"][2] + 40
    P["dback"] = rng.uniform(88, 108) * P["sf"]

    def prof(z):
        z = np.asarray(z, float)
        hip = 1 / (1 + np.exp((z - zcr) / 25.0))
        chest = 1 / (1 + np.exp(-(z - 110) / 30.0))
        a = a0 * (1 + (0.16 if fem else 0.08) * hip + 0.05 * chest)
        b = b0 * (1 + 0.06 * hip - 0.05 * chest)
        f = f0 * (1 + 0.3 * hip)
        ysp = np.polyval(pc, np.clip(z, zlo, zhi))
        yb = ysp + P["dback"] + f * 0.8  # skin of the back
        return a, b, f, yb - b, ysp

    P["prof"] = prof
    P["vf"] = vf
    P["f0"] = f0


# ----------------------------------------------------------------------------- views
class View:
    pass


def make_views(P, vendor):
    rng = P["rng"]
    ps = vendor["ps"] * rng.uniform(0.97, 1.03)
    fh = [rng.uniform(360, 420), rng.uniform(360, 420)]
    ps = max(ps, max(fh) / 1398.0)
    pc = 2 * ps
    M = rng.uniform(1.10, 1.22)
    v = pc / M
    P["v"], P["ps"], P["M"] = v, ps, M
    views = []
    for k, name in enumerate(("AP", "LAT")):
        V = View()
        V.name = name
        V.ax = 0 if name == "AP" else 1
        fw = rng.uniform(280, 340) if name == "AP" else rng.uniform(250, 305)
        V.H = int(round(fh[k] / pc))
        V.W = int(round(fw / pc))
        zc = -30 + rng.normal(0, 14)
        uc = rng.normal(0, 7) if name == "AP" else P["Vs"][5]["c"][1] + 28 + rng.normal(0, 10)
        V.k0 = int(round(uc / v - V.W / 2))
        V.kz = int(round(zc / v + V.H / 2))
        V.S = np.zeros((V.H, V.W), F32)  # soft tissue, cm water-equivalent
        V.F = np.zeros((V.H, V.W), F32)  # fat, cm
        V.B = np.zeros((V.H, V.W), F32)  # bone mineral, g/cm2 HA
        V.Bp = np.zeros((V.H, V.W), F32)  # point-cloud bone (blurred later)
        V.Bt = np.zeros((V.H, V.W), F32)  # vertebral-body trabecular mineral
        V.tex = np.zeros(4 * V.H * V.W)  # strut splat at detector resolution
        views.append(V)
    return views


def paste(V, arr, kc0, kz0):
    """arr indexed [col, z] on the lattice starting at (kc0, kz0)."""
    A = arr[:, ::-1].T
    nz, nc = A.shape
    r0 = V.kz - (kz0 + nz - 1)
    c0 = kc0 - V.k0
    rs, cs = max(0, r0), max(0, c0)
    re, ce = min(V.H, r0 + nz), min(V.W, c0 + nc)
    if re <= rs or ce <= cs:
        return
    return (slice(rs, re), slice(cs, ce)), A[rs - r0:re - r0, cs - c0:ce - c0]


def add_volume(views, I0, vol, trab, v):
    for V in views:
        proj = vol.sum(axis=1) if V.ax == 0 else vol.sum(axis=0)  # AP: along y; LAT: along x
        r = paste(V, proj * F32(v / 10.0), I0[V.ax], I0[2])
        if r:
            V.B[r[0]] += r[1]
        if trab is not None:
            pt = trab.sum(axis=1) if V.ax == 0 else trab.sum(axis=0)
            r = paste(V, pt * F32(v / 10.0), I0[V.ax], I0[2])
            if r:
                V.Bt[r[0]] += r[1]


def to_px(V, pts, v):
    return pts[:, V.ax] / v - V.k0, V.kz - pts[:, 2] / v


def struts(P, Vt, rng):
    """3-D trabecular strut points (local frame) for one vertebral body."""
    T = P["T"]
    a, b, hz = Vt["a"] * 0.9, Vt["b"] * 0.88, Vt["hz"] * 0.92
    vol = 4.0 / 3 * math.pi * a * b * hz * 1.5 / 1000.0
    dens = float(np.clip(0.78 + 0.11 * T, 0.25, 1.0))
    nv = int(60 * vol * dens)
    nh = int(nv * np.clip(0.95 + 0.22 * T, 0.12, 1.2))
    out = []
    for n, vert in ((nv, True), (nh, False)):
        if n <= 0:
            continue
        ang = rng.uniform(0, 2 * np.pi, n)
        rr = np.sqrt(rng.uniform(0, 1, n))
        p0 = np.stack([a * rr * np.cos(ang), b * rr * np.sin(ang), rng.uniform(-hz, hz, n)], 1)
        if vert:
            ln = rng.uniform(2.5, 6.0, n) * (1.0 + 0.08 * max(0.0, -T))
            d = np.stack([rng.normal(0, 0.12, n), rng.normal(0, 0.12, n), np.ones(n)], 1)
            wt = 1.0 - 0.07 * T
        else:
            ln = rng.uniform(1.0, 3.2, n)
            th = rng.uniform(0, np.pi, n)
            d = np.stack([np.cos(th), np.sin(th), rng.normal(0, 0.25, n)], 1)
            wt = 0.8
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        k = np.arange(0, 40) * 0.16
        seg = p0[:, None, :] + d[:, None, :] * np.minimum(k[None, :], ln[:, None])[..., None]
        m = k[None, :] <= ln[:, None]
        p = seg[m]
        inside = (p[:, 0] / Vt["a"]) ** 2 + (p[:, 1] / Vt["b"]) ** 2 < 0.92
        inside &= np.abs(p[:, 2]) < Vt["hz"] * 0.95
        out.append((p[inside], np.full(int(inside.sum()), wt)))
    return np.concatenate([o[0] for o in out]), np.concatenate([o[1] for o in out])


def render_bones(P, views):
    rng, v = P["rng"], P["v"]
    for Vt in P["Vs"]:
        main, tps = vertebra_elements(Vt, rng)
        I0, vol, trab = voxelize(main, Vt["R"], Vt["c"], v, Vt["rho"])
        add_volume(views, I0, vol, trab, v)
        for e in tps:
            I0, vol, _ = voxelize([e], Vt["R"], Vt["c"], v, Vt["rho"])
            add_volume(views, I0, vol, None, v)
        sp, sw = struts(P, Vt, rng)
        g = sp @ Vt["R"].T + Vt["c"]
        for V in views:
            c, r = to_px(V, g, v)
            c, r = (c + 0.5) * 2 - 0.5, (r + 0.5) * 2 - 0.5
            ci, ri = np.rint(c).astype(np.int64), np.rint(r).astype(np.int64)
            ok = (ci >= 0) & (ci < 2 * V.W) & (ri >= 0) & (ri < 2 * V.H)
            V.tex += np.bincount(ri[ok] * (2 * V.W) + ci[ok], weights=sw[ok], minlength=4 * V.H * V.W)
    pts, ms = sacrum_pelvis_points(P)
    pts2, ms2 = ribs_aorta_points(P)
    pts = np.concatenate([pts, pts2])
    ms = np.concatenate([ms, ms2])
    w = ms / (10.0 * v * v)
    for V in views:
        c, r = to_px(V, pts, v)
        splat(V.Bp, c, r, w)
        V.B += gblur(V.Bp, 0.6)
        np.nan_to_num(V.B, copy=False)
        np.nan_to_num(V.Bt, copy=False)


def ribs_aorta_points(P):
    rng, sf, T = P["rng"], P["sf"], P["T"]
    prof = P["prof"]
    rc = P["rho_pelv"]["c"]
    rm = 0.6 * P["rho_t0"] + 0.02
    pts, ms = [], []
    for i, (L, r) in enumerate(((235, 4.6), (175, 4.2), (115, 3.6))):
        Vt = P["Vs"][i]
        if i == 2 and rng.random() < 0.12:
            continue
        a, b, hz = Vt["a"], Vt["b"], Vt["hz"]
        R, c = Vt["R"], Vt["c"]
        z0 = c[2] + hz * 0.4
        A, Bt, f, ytc, _ = prof(z0)
        Ar, Br = A - f - 12, Bt - f * 0.7 - 12
        Lr = L * sf * rng.uniform(0.85, 1.15)
        for s in (-1, 1):
            p0 = c + R @ np.array([s * a * 0.8, b * 0.75, hz * 0.4])
            p1 = c + R @ np.array([s * (a + 14), b + 20, hz * 0.2])
            ph0 = math.asin(min(0.95, (abs(p1[0]) + 22) / Ar))
            ph1 = ph0 + (Lr - 40) / (0.5 * (Ar + Br))
            ph = np.linspace(ph0, ph1, 40)
            drop = Lr * rng.uniform(0.28, 0.42)
            arc = np.stack([s * Ar * np.sin(ph), ytc + Br * np.cos(ph),
                            p1[2] - 8 - drop * (ph - ph0) / (ph1 - ph0)], 1)
            C = resample_poly(np.vstack([p0, p1, arc]), 0.5, 8)
            rr = r * sf * np.clip(1.2 - 0.4 * np.linspace(0, 1, len(C)), 0.7, 1.2)
            p, m = tube_points(C, rr, 0.9, rc, rm)
            pts.append(p)
            ms.append(m)
    # aortic wall plaques
    age = P["age"]
    lam = max(0.0, (age - 48) / 4.5) * math.exp(rng.normal(0, 0.6))
    n = int(min(45, rng.poisson(lam)))
    Vs = P["Vs"]
    zs = np.array([V["c"][2] for V in Vs])
    ys = np.array([V["c"][1] - V["b"] for V in Vs])
    xs = np.array([V["c"][0] for V in Vs])
    ra = rng.uniform(9, 12) * (1 + 0.004 * max(0, age - 60))
    zbif = Vs[6]["c"][2] + rng.uniform(-5, 15)
    for _ in range(n):
        z = rng.uniform(zbif - 40, Vs[2]["c"][2]) if rng.random() < 0.6 else rng.uniform(zbif - 45, zbif + 40)
        z = float(z)
        if z > zbif:
            cx = np.interp(-z, -zs, xs) + 14
            cy = np.interp(-z, -zs, ys) - ra - 3
            axis = np.array([0, 0, 1.0])
            rad = ra
        else:
            s = rng.choice([-1, 1])
            dz = zbif - z
            cx = np.interp(-zbif, -zs, xs) + 14 + s * dz * 0.55
            cy = np.interp(-zbif, -zs, ys) - ra - 3 + dz * 0.25
            axis = np.array([s * 0.5, 0.2, 1.0])
            axis /= np.linalg.norm(axis)
            rad = ra * 0.65
        th0 = rng.uniform(0, 2 * np.pi)
        dth = rng.uniform(0.3, 1.2)
        ln = rng.uniform(3, 14)
        thick = rng.uniform(0.3, 1.0)
        th = np.arange(th0, th0 + dth, 0.35 / rad)
        zz = np.arange(-ln / 2, ln / 2, 0.35)
        TH, ZZ = np.meshgrid(th, zz, indexing="ij")
        e1 = np.cross(axis, [0, 1.0, 0])
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(axis, e1)
        p = (np.array([cx, cy, z]) + rad * (np.cos(TH)[..., None] * e1 + np.sin(TH)[..., None] * e2)
             + ZZ[..., None] * axis)
        edge = np.sin(np.pi * (TH - th0) / dth) * np.sqrt(np.clip(np.cos(np.pi * ZZ / ln), 0, None))
        pts.append(p.reshape(-1, 3))
        ms.append((rng.uniform(0.9, 1.3) * thick * 0.35 * 0.35 * np.clip(edge, 0.2, 1)).ravel())
    if not pts:
        return np.zeros((0, 3)), np.zeros(0)
    return np.concatenate(pts), np.concatenate(ms)


def ell_chord(V, v, ctr, ax):
    """Chord length (cm) through an axis-aligned ellipsoid along the view's ray direction."""
    cu, ru = (ctr[0], ax[0]) if V.ax == 0 else (ctr[1], ax[1])
    dep = ax[1] if V.ax == 0 else ax[0]
    c0 = max(0, int(math.floor((cu - ru) / v - V.k0)))
    c1 = min(V.W, int(math.ceil((cu + ru) / v - V.k0)) + 1)
    r0 = max(0, int(math.floor(V.kz - (ctr[2] + ax[2]) / v)))
    r1 = min(V.H, int(math.ceil(V.kz - (ctr[2] - ax[2]) / v)) + 1)
    if c1 <= c0 or r1 <= r0:
        return None, None
    U = ((V.k0 + np.arange(c0, c1)) * v - cu) / ru
    Z = ((V.kz - np.arange(r0, r1)) * v - ctr[2]) / ax[2]
    q = 1.0 - U[None, :] ** 2 - Z[:, None] ** 2
    return (slice(r0, r1), slice(c0, c1)), (0.2 * dep * np.sqrt(np.clip(q, 0, None))).astype(F32)


def chain_union(V, v, centers, radii):
    tmp = np.zeros((V.H, V.W), F32)
    for c, r in zip(centers, radii):
        sl, ch = ell_chord(V, v, c, r)
        if sl is not None:
            np.maximum(tmp[sl], ch, out=tmp[sl])
    return tmp


def soft_tissue(P, V, rng_layout):
    v = P["v"]
    prof = P["prof"]
    z = (V.kz - np.arange(V.H)) * v
    a, b, f, ytc, ysp = prof(z)
    u = (V.k0 + np.arange(V.W)) * v
    if V.ax == 0:
        def chord(A, Bv, off):
            q = 1 - (u[None, :] / A[:, None]) ** 2
            return 0.2 * Bv[:, None] * np.sqrt(np.clip(q, 0, None))
        off = 0
    else:
        def chord(A, Bv, off):
            q = 1 - ((u[None, :] - off[:, None]) / Bv[:, None]) ** 2
            return 0.2 * A[:, None] * np.sqrt(np.clip(q, 0, None))
    tot = chord(a, b, ytc)
    inner = chord(a - f, b - 0.8 * f, ytc)
    visc = chord(0.78 * (a - f), 0.7 * (b - f), ytc - 0.1 * b)
    fat = (tot - inner) + P["vf"] * visc
    V.S[:] = (tot - fat).astype(F32)
    V.F[:] = fat.astype(F32)
    # organs, from a layout shared by both views
    Ly = P["layout"]
    for kind, c, r, frac in Ly:
        if kind == "chain":
            continue
        sl, ch = ell_chord(V, v, c, r)
        if sl is None:
            continue
        if kind == "gas":
            V.S[sl] -= ch * frac
        elif kind == "fatin":
            V.S[sl] -= ch * frac
            V.F[sl] += ch * frac
        elif kind == "fatout":
            V.S[sl] += ch * frac
            V.F[sl] -= ch * frac
        elif kind == "lung":
            V.S[sl] -= ch * frac
    for kind, cs, rs, frac in Ly:
        if kind != "chain":
            continue
        tmp = chain_union(V, v, cs, rs)
        if frac[0] == "gas":
            V.S -= tmp * frac[1]
        elif frac[0] == "fatin":
            V.S -= tmp * frac[1]
            V.F += tmp * frac[1]
        else:
            V.S += tmp * frac[1]
            V.F -= tmp * frac[1]
    np.maximum(V.S, 0.0, out=V.S)
    np.maximum(V.F, 0.0, out=V.F)


def organ_layout(P):
    rng, sf = P["rng"], P["sf"]
    Vs = P["Vs"]
    prof = P["prof"]
    L = []
    yb = lambda i: Vs[i]["c"][1]
    zc = lambda i: Vs[i]["c"][2]
    pfat = float(np.clip(0.25 + 0.02 * (P["bmi"] - 22), 0.15, 0.7))
    # lungs (posterior costophrenic recesses)
    for s in (-1, 1):
        L.append(("lung", (s * 100 * sf, yb(1) + 25, zc(0) + 48 + rng.normal(0, 12) + (8 if s < 0 else 0)),
                  (62 * sf, 45 * sf, 70 * sf), rng.uniform(0.35, 0.6)))
    # kidneys with perirenal fat
    for s in (-1, 1):
        kc = (s * rng.uniform(55, 68) * sf, yb(3) + 12, zc(3) + (-12 if s < 0 else 2) + rng.normal(0, 6))
        kr = (24 * sf, 22 * sf, 55 * sf)
        L.append(("fatin", kc, (kr[0] + 11, kr[1] + 11, kr[2] + 11), pfat * 1.4))
        L.append(("fatout", kc, kr, pfat * 1.4))
    # psoas with fat halo (chains)
    for s in (-1, 1):
        p0 = np.array([s * (Vs[2]["a"] + 4), yb(2) + 4, zc(2)])
        p1 = np.array([s * 62 * sf, P["Os"][1] - 18, P["Os"][2] - 70])
        n = 26
        cs = [p0 + (p1 - p0) * t for t in np.linspace(0, 1, n)]
        rs = [(r, r * 0.95, 15.0) for r in np.linspace(7, 24, n) * sf]
        L.append(("chain", cs, [(r[0] + 9, r[1] + 9, 19.0) for r in rs], ("fatin", pfat)))
        L.append(("chain", cs, rs, ("fatout", pfat)))
    # colon gas
    nodes = np.array([[-65, -60, -125], [-82, -45, -40], [-75, -55, 30], [-30, -95, -5], [20, -92, 0],
                      [82, -40, 60], [88, -20, -10], [80, -25, -90], [40, -50, -140], [0, -40, -150]], float)
    nodes[:, :2] *= sf
    nodes += rng.normal(0, 8, nodes.shape)
    nodes[:, 1] += Vs[5]["c"][1]
    path = resample_poly(nodes, 2.0, 0)
    for _ in range(int(rng.integers(0, 6))):
        i0 = int(rng.integers(0, len(path) - 10))
        ln = int(rng.uniform(10, 45))
        seg = path[i0:i0 + ln:3]
        r0 = rng.uniform(7, 18) * sf
        rs = [(r0 * (1 + 0.18 * math.sin(k * 1.7)),) * 2 + (r0 * 0.8,) for k in range(len(seg))]
        L.append(("chain", [tuple(p) for p in seg], rs, ("gas", rng.uniform(0.25, 0.7))))
    # stool mottling in caecum / ascending colon and small bowel bubbles
    for _ in range(int(rng.integers(0, 45))):
        p = path[int(rng.integers(0, len(path) // 3))] + rng.normal(0, 10, 3)
        r = rng.uniform(1.2, 3.5)
        L.append(("gas", tuple(p), (r, r * rng.uniform(0.6, 1.4), r * rng.uniform(0.6, 1.4)), rng.uniform(0.3, 0.8)))
    for _ in range(int(rng.integers(0, 12))):
        p = (rng.uniform(-60, 60), Vs[5]["c"][1] - rng.uniform(40, 100), rng.uniform(-110, -10))
        r = rng.uniform(5, 15)
        L.append(("gas", p, (r, r * 0.8, r * 0.9), rng.uniform(0.25, 0.7)))
    P["layout"] = L


# ----------------------------------------------------------------------------- processing chains
def _window(x, m, rng, L=None):
    """Anatomy-based window: low end in soft tissue, high end above the densest bone."""
    L = x if L is None else L
    s = x[::3, ::3][(m[::3, ::3] > 0.5) & (L[::3, ::3] > 1.2)]
    if s.size < 500:
        s = x[::3, ::3].ravel()
    lo, hi = np.percentile(s, [rng.uniform(1.0, 8.0), rng.uniform(99.6, 99.95)])
    return lo, hi + rng.uniform(0.03, 0.2) * (hi - lo)


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def chain_film(L, m, rng, ps):
    k = rng.uniform(0, 0.9)
    Ls = L + k * (L - gblur(L, rng.uniform(0.8, 2.0) / ps))
    lo, hi = _window(Ls, m, rng, L)
    x = (Ls - lo) / (hi - lo)
    g, x0 = rng.uniform(2.5, 5.0), rng.uniform(0.4, 0.55)
    y0, y1 = _sig(-g * x0), _sig(g * (1 - x0))
    return (_sig(g * (x - x0)) - y0) / (y1 - y0)


def chain_multiband(L, m, rng, ps):
    sig = [0.5, 1.4, 4.0, 11.0, 30.0]
    G = [L] + [blur_big(L, s / ps) for s in sig]
    gains = [rng.uniform(0.8, 1.4), rng.uniform(1.3, 2.4), rng.uniform(1.3, 2.6), rng.uniform(1.0, 1.8),
             rng.uniform(0.6, 1.2)]
    out = G[-1] * rng.uniform(0.25, 0.6)
    for i in range(5):
        d = G[i] - G[i + 1]
        c = float(np.std(d[::4, ::4])) * 2.5 + 1e-4
        out = out + gains[i] * c * np.tanh(d / c)
    lo, hi = _window(out, m, rng, L)
    x = np.clip((out - lo) / (hi - lo), 0, 1)
    return x ** rng.uniform(0.8, 1.3)


def chain_drc(L, m, rng, ps):
    lp = blur_big(L, rng.uniform(15, 40) / ps)
    med = float(np.median(lp[::4, ::4][m[::4, ::4] > 0.5]))
    Ld = L - rng.uniform(0.3, 0.7) * (lp - med) + rng.uniform(0.4, 1.5) * (L - gblur(L, rng.uniform(0.9, 2.5) / ps))
    s = Ld[::3, ::3][(m[::3, ::3] > 0.5) & (L[::3, ::3] > 1.2)]
    if s.size < 500:
        s = Ld[::3, ::3].ravel()
    h, e = np.histogram(s, bins=512)
    cdf = np.cumsum(h) / h.sum()
    lo = e[np.searchsorted(cdf, rng.uniform(0.005, 0.05))]
    hi = e[min(511, np.searchsorted(cdf, 0.999) + 1)]
    hi = hi + rng.uniform(0.02, 0.15) * (hi - lo)
    x = np.clip((Ld - lo) / (hi - lo), 0, 1)
    return x ** rng.uniform(0.7, 1.3)


def chain_equalize(L, m, rng, ps):
    Lu = L + rng.uniform(0.2, 0.8) * (L - gblur(L, 1.5 / ps))
    s = Lu[::3, ::3][(m[::3, ::3] > 0.5) & (L[::3, ::3] > 1.2)]
    if s.size < 500:
        s = Lu[::3, ::3].ravel()
    lo, hi = _window(Lu, m, rng, L)
    q = np.percentile(s, np.linspace(0, 100, 65))
    q[0], q[-1] = min(q[0], lo), max(q[-1], hi)
    q = np.maximum.accumulate(q + np.arange(65) * 1e-6)
    eq = np.interp(Lu, q, np.linspace(0, 1, 65))
    lin = np.clip((Lu - lo) / (hi - lo), 0, 1)
    beta = rng.uniform(0.3, 0.7)
    y = beta * eq + (1 - beta) * lin
    g = rng.uniform(2.0, 4.0)
    return (_sig(g * (y - 0.5)) - _sig(-g * 0.5)) / (_sig(g * 0.5) - _sig(-g * 0.5))


CHAINS = [("HaldenLUT film curve", chain_film), ("MultiBand MB-5", chain_multiband),
          ("DRC+USM histogram window", chain_drc), ("Partial equalisation", chain_equalize)]


def rect_mask(H, W, cx, cy, hx, hy, ang, pen):
    yy, xx = np.mgrid[0:H, 0:W].astype(F32)
    ca, sa = math.cos(ang), math.sin(ang)
    u = (xx - cx) * ca + (yy - cy) * sa
    w = -(xx - cx) * sa + (yy - cy) * ca
    d = np.maximum(np.abs(u) - hx, np.abs(w) - hy)
    return np.clip(0.5 - d / pen, 0, 1).astype(F32)


def text_mask(H, W, lines, pos, size, rng):
    im = Image.new("L", (W, H), 0)
    dr = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=size)
    x, y = pos
    for ln in lines:
        dr.text((x, y), ln, fill=255, font=font)
        y += int(size * 1.25)
    return np.asarray(im, F32) / 255.0


# ----------------------------------------------------------------------------- one view end to end
def render_view(P, V, vendor, rng, study):
    v, ps = P["v"], P["ps"]
    H, W = V.H, V.W
    lat = V.name == "LAT"
    kvp = float(rng.integers(85, 101) if lat else rng.integers(70, 91))
    al = rng.uniform(2.5, 4.5)
    det_g = rng.uniform(0.18, 0.28) if vendor["det"] == "csi" else rng.uniform(0.08, 0.14)
    E, w = spectrum(kvp, al, vendor["det"], det_g)
    muW, muF, muB = mu("water", E) * 1.03, mu("fat", E) * 0.93, mu("ha", E)
    acc = np.zeros((H, W), np.float32)
    for k in range(len(E)):
        acc += F32(w[k]) * np.exp(-(F32(muW[k]) * V.S + F32(muF[k]) * V.F + F32(muB[k]) * V.B))
    lnT = np.log(np.maximum(acc, 1e-12))
    wh = w * np.exp(-muW * (30 if lat else 20))
    mu_eff = float((wh * muB).sum() / wh.sum())
    # incident field: heel effect + vignetting
    rr = (np.arange(H) - H / 2) / H
    cc = (np.arange(W) - W / 2) / W
    heel = 1 + rng.choice([-1, 1]) * rng.uniform(0.05, 0.25) * np.tanh(2.2 * rr)
    I0 = (heel[:, None] * (1 - rng.uniform(0.02, 0.08) * (rr[:, None] ** 2 + cc[None, :] ** 2) * 4)).astype(F32)
    # collimation
    border = rng.choice(["none", "white", "black"], p=[0.4, 0.3, 0.3])
    if border == "none":
        coll = dict(cx=W, cy=H, hx=4 * W, hy=4 * H, ang=0.0)
    else:
        coll = dict(cx=W + rng.normal(0, 10), cy=H + rng.normal(0, 10), hx=W * rng.uniform(0.7, 0.92),
                    hy=H * rng.uniform(0.78, 0.95), ang=math.radians(rng.normal(0, 1.2)))
    cm = rect_mask(H, W, coll["cx"] / 2 - 0.25, coll["cy"] / 2 - 0.25, coll["hx"] / 2, coll["hy"] / 2, coll["ang"], 1.5)
    Pc = np.exp(lnT) * I0 * cm
    spr = rng.uniform(0.4, 1.3) if lat else rng.uniform(0.2, 0.8)
    if vendor["mod"] == "CR" and rng.random() < 0.4:
        spr *= 1.8
    sc = blur_big(Pc, rng.uniform(35, 70) / (2 * ps))
    ch = (slice(int(H * 0.35), int(H * 0.65)), slice(int(W * 0.4), int(W * 0.6)))
    sc *= F32(spr * np.mean(Pc[ch]) / max(np.mean(sc[ch]), 1e-12))
    # upsample to detector grid; trabecular texture modulation
    tex = gblur(V.tex.reshape(2 * H, 2 * W).astype(F32), 0.55 + 0.12 * max(0.0, -P["T"]))
    tm = blur_big(tex, 4.0 / ps)
    mod = np.where(tm > 1e-3 * max(tm.max(), 1e-9), tex / np.maximum(tm, 1e-9), 1.0)
    alpha = 0.55 * rng.uniform(0.85, 1.15)
    dB = up2(V.Bt) * F32(alpha) * (np.clip(mod, 0, 3).astype(F32) - 1)
    lnf = up2(lnT) - F32(mu_eff) * dB
    cmf = rect_mask(2 * H, 2 * W, coll["cx"] - 0.5, coll["cy"] - 0.5, coll["hx"], coll["hy"], coll["ang"], 1.2 / ps)
    Pf = np.exp(lnf) * up2(I0) * cmf
    # lead marker (R/L) inside the field
    marker = None
    if rng.random() < 0.7:
        letter = "L" if (lat or rng.random() < 0.5) else "R"
        sz = int(16 / ps)
        mk = Image.new("L", (sz, sz), 0)
        d = ImageDraw.Draw(mk)
        d.rectangle([0, 0, sz - 1, sz - 1], fill=40)
        d.text((sz * 0.2, sz * 0.05), letter, fill=255, font=ImageFont.load_default(size=int(sz * 0.85)))
        mk = np.asarray(mk, F32) / 255.0
        r0 = int(rng.uniform(0.1, 0.2) * 2 * H)
        c0 = int(rng.choice([rng.uniform(0.12, 0.22), rng.uniform(0.7, 0.8)]) * 2 * W)
        Pf[r0:r0 + sz, c0:c0 + sz] *= (1 - 0.97 * mk[: 2 * H - r0, : 2 * W - c0])
        marker = letter
    # quanta, noise, detector blur
    Nt = math.exp(rng.uniform(math.log(250), math.log(3000)))
    Nref = Nt / max(float(np.mean(Pc[ch] + sc[ch])), 1e-9)
    q = (Pf + up2(sc) + F32(2e-5)) * F32(Nref)
    q += np.sqrt(q) * rng.standard_normal(q.shape, dtype=F32)
    sd_det = (rng.uniform(0.10, 0.2) if vendor["mod"] == "DX" else rng.uniform(0.2, 0.34)) / ps
    q = gblur(q, sd_det)
    q += F32(rng.uniform(0.5, 4.0)) * rng.standard_normal(q.shape, dtype=F32)
    if vendor["mod"] == "CR":
        q *= (1 + F32(0.004) * rng.standard_normal((q.shape[0], 1), dtype=F32))
    L = -np.log(np.maximum(q / F32(Nref), F32(1e-5)))
    mfield = (cmf > 0.5).astype(F32)
    ci = int(rng.choice(vendor["chains"]))
    cname, cfun = CHAINS[ci]
    y = np.clip(cfun(L, mfield, rng, ps), 0, 1).astype(F32)
    if border == "white":
        y = y * cmf + (1 - cmf) * F32(rng.uniform(0.9, 1.0))
    elif border == "black":
        y = y * cmf
    # burned-in annotation
    burned = rng.random() < 0.6
    if burned:
        size = int(rng.uniform(3.2, 4.5) / ps)
        lines = [vendor["name"].split()[0].upper() + "  " + study["date"],
                 ("L-SPINE " + ("LAT" if lat else "AP")), "%d kV  %.0f mAs" % (kvp, 0)]
        lines[2] = "%d kV" % kvp
        pos = (int(rng.uniform(0.03, 0.06) * 2 * W), int(rng.uniform(0.82, 0.86) * 2 * H)) if rng.random() < 0.5 \
            else (int(rng.uniform(0.03, 0.06) * 2 * W), int(rng.uniform(0.02, 0.04) * 2 * H))
        tm_ = text_mask(2 * H, 2 * W, lines, pos, size, rng)
        y = np.maximum(y, tm_ * F32(rng.uniform(0.85, 1.0)))
    mas = float(np.clip(Nref * 1.1e-3 * (80.0 / kvp) ** 2.5 * (ps / 0.3) ** 2, 2, 400))
    return y, dict(kvp=kvp, mas=mas, chain=cname, border=border, burned=burned, marker=marker, al=al,
                   grid=(vendor["mod"] == "DX" or spr < 1.0))


# ----------------------------------------------------------------------------- DICOM
FIRST = ["Anna", "Berit", "Clara", "Dagny", "Edith", "Frida", "Greta", "Hilde", "Ingrid", "Jorunn", "Karin", "Liv",
         "Marta", "Nora", "Olga", "Petra", "Ruth", "Sigrid", "Tove", "Una", "Vera", "Wenche"]
MFIRST = ["Arne", "Bjorn", "Carl", "Dag", "Einar", "Finn", "Geir", "Hakon", "Ivar", "Jon", "Knut", "Leif"]
LAST = ["Aasen", "Brekke", "Dahl", "Eide", "Foss", "Gran", "Haug", "Holm", "Lie", "Moen", "Nilsen", "Ruud", "Strand",
        "Tangen", "Vik", "Berg", "Lund", "Solberg"]


def uid(seed, idx, *tags):
    return generate_uid(entropy_srcs=["phantom_q", str(seed), str(idx)] + [str(t) for t in tags])


def write_dicom(path, img01, V, info, P, vendor, study, rng, seed, idx):
    bits = int(rng.choice(vendor["bits"]))
    maxv = 2 ** bits - 1
    lo = rng.uniform(0, 0.05) * maxv
    hi = maxv * rng.uniform(0.85, 1.0)
    arr = lo + img01.astype(np.float64) * (hi - lo)
    mono1 = rng.random() < vendor["mono1"]
    wc, ww = (lo + hi) / 2, (hi - lo) * rng.uniform(0.9, 1.0)
    if mono1:
        arr = maxv - arr
        wc = maxv - wc
    arr = np.clip(np.rint(arr), 0, maxv).astype(np.uint16)
    lat = V.name == "LAT"
    cr = vendor["mod"] == "CR"
    sop_class = "1.2.840.10008.5.1.4.1.1.1" if cr else "1.2.840.10008.5.1.4.1.1.1.1"
    sop = uid(seed, idx, V.name, "sop")
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = sop_class
    fm.MediaStorageSOPInstanceUID = sop
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    fm.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    fm.ImplementationVersionName = "PHANTOM_Q_1"
    ds = Dataset()
    ds.file_meta = fm
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop
    ds.StudyDate = study["date"]
    ds.SeriesDate = study["date"]
    ds.ContentDate = study["date"]
    ds.AcquisitionDate = study["date"]
    ds.StudyTime = study["time"]
    ds.SeriesTime = study["time"]
    ds.ContentTime = study["time"]
    ds.AccessionNumber = study["acc"]
    ds.Modality = "CR" if cr else "DX"
    if not cr:
        ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = vendor["name"]
    ds.InstitutionName = study["inst"]
    ds.ReferringPhysicianName = ""
    ds.StationName = study["station"]
    ds.StudyDescription = "LUMBAR SPINE 2 VIEWS"
    ds.SeriesDescription = "L-SPINE " + ("LAT" if lat else "AP")
    ds.ManufacturerModelName = vendor["model"]
    ds.PatientName = study["name"]
    ds.PatientID = study["pid"]
    ds.PatientBirthDate = ""
    ds.PatientSex = "F" if P["female"] else "M"
    ds.PatientAge = "%03dY" % P["age"]
    ds.PatientSize = "%.2f" % (1.70 * P["sf"] ** 1.25)
    ds.PatientWeight = "%.1f" % (P["bmi"] * (1.70 * P["sf"] ** 1.25) ** 2)
    ds.BodyPartExamined = "LSPINE"
    ds.KVP = "%d" % info["kvp"]
    ds.DeviceSerialNumber = study["serial"]
    ds.SoftwareVersions = vendor["sw"]
    ds.ProtocolName = "L-SPINE " + ("LAT" if lat else "AP")
    sid = rng.uniform(1000, 1150)
    ds.DistanceSourceToDetector = "%.1f" % sid
    ds.DistanceSourceToPatient = "%.1f" % (sid / P["M"])
    ds.EstimatedRadiographicMagnificationFactor = "%.3f" % P["M"]
    etime = int(rng.uniform(20, 250))
    ds.ExposureTime = str(etime)
    ds.XRayTubeCurrent = str(int(max(1, info["mas"] * 1000 / etime)))
    ds.Exposure = str(int(round(info["mas"])))
    ds.ExposureInuAs = str(int(round(info["mas"] * 1000)))
    ds.FilterType = "AL"
    ds.FilterMaterial = "ALUMINUM"
    ds.Grid = "IN" if info["grid"] else "NONE"
    ds.ImagerPixelSpacing = ["%.4f" % P["ps"], "%.4f" % P["ps"]]
    ds.ViewPosition = "LL" if lat else "AP"
    ds.PatientOrientation = ["P", "F"] if lat else ["L", "F"]
    ds.ImageLaterality = "U"
    ds.StudyInstanceUID = study["study_uid"]
    ds.SeriesInstanceUID = uid(seed, idx, V.name, "series")
    ds.StudyID = study["acc"][-6:]
    ds.SeriesNumber = "1" if not lat else "2"
    ds.InstanceNumber = "1"
    ds.FrameOfReferenceUID = uid(seed, idx, "for")
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if mono1 else "MONOCHROME2"
    ds.Rows, ds.Columns = arr.shape
    ds.PixelSpacing = ["%.4f" % P["ps"], "%.4f" % P["ps"]]
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.WindowCenter = "%.1f" % wc
    ds.WindowWidth = "%.1f" % ww
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.LossyImageCompression = "00"
    ds.BurnedInAnnotation = "YES" if info["burned"] else "NO"
    if not cr:
        ds.DetectorType = "SCINTILLATOR"
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = -1 if mono1 else 1
        ds.PresentationLUTShape = "IDENTITY"
    ds.DerivationDescription = info["chain"]
    ds.PixelData = arr.tobytes()
    ds["PixelData"].VR = "OW"
    ds.save_as(path, enforce_file_format=True)


# ----------------------------------------------------------------------------- driver
def make_one(args):
    outdir, seed, idx = args
    P = build_patient(seed, idx)
    rng = P["rng"]
    vendor = VENDORS[int(rng.integers(0, len(VENDORS)))]
    build_spine(P)
    trunk_profile(P)
    organ_layout(P)
    views = make_views(P, vendor)
    render_bones(P, views)
    pid = "PHQ%d-%04d" % (seed, idx)
    d0 = datetime.date(2014, 1, 1) + datetime.timedelta(days=int(rng.integers(0, 3800)))
    first = rng.choice(FIRST if P["female"] else MFIRST)
    study = dict(pid=pid, date=d0.strftime("%Y%m%d"),
                 time="%02d%02d%02d" % (rng.integers(7, 19), rng.integers(0, 60), rng.integers(0, 60)),
                 acc="Q%09d" % int(rng.integers(0, 10 ** 9)), name="%s^%s" % (rng.choice(LAST), first),
                 inst=str(rng.choice(["Fjordvik Hospital", "St. Aldric Clinic", "Meridian Imaging Centre",
                                      "Valbrekke Medical"])),
                 station="XR%02d" % int(rng.integers(1, 20)), serial="SN%07d" % int(rng.integers(0, 10 ** 7)),
                 study_uid=uid(seed, idx, "study"))
    rows = []
    for V in views:
        soft_tissue(P, V, None)
        img, info = render_view(P, V, vendor, rng, study)
        fn = "%s_%s.dcm" % (pid, V.name)
        write_dicom(os.path.join(outdir, fn), img, V, info, P, vendor, study, rng, seed, idx)
        rows.append([fn, P["label"], "%.2f" % P["T"], "%.3f" % P["bmd"], pid, V.name])
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description="Phantom Q lumbar spine AP+LAT radiograph generator")
    ap.add_argument("outdir")
    ap.add_argument("n", type=int)
    ap.add_argument("seed", type=int)
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args(argv)
    os.makedirs(a.outdir, exist_ok=True)
    jobs = [(a.outdir, a.seed, i) for i in range(a.n)]
    if a.workers > 1 and a.n > 1:
        ctx = mp.get_context("spawn")
        with ctx.Pool(a.workers) as pool:
            res = pool.map(make_one, jobs, chunksize=1)
    else:
        res = [make_one(j) for j in jobs]
    with open(os.path.join(a.outdir, "manifest.csv"), "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["path", "label", "t_score", "bmd", "patient_id", "view"])
        for rows in res:
            wr.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
