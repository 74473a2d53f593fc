#!/usr/bin/env python3
"""phantom_o: voxel statistical-shape lumbar-spine radiograph generator.

Usage:  python phantom_o.py OUTDIR N SEED [--workers W]

Each study (patient) is built as three voxel volumes
  * a 3.0 mm "soft-tissue" volume (water-equivalent and fat partial densities,
    bowel/lung gas) whose trunk contour, fat layers, muscles, kidneys and bowel
    gas come from random harmonic contours and FFT-filtered Gaussian random fields;
  * a 0.7 mm "spine" volume holding hydroxyapatite (HA) mineral density of
    T11-S2: vertebral bodies are deformed templates (Fourier-perturbed kidney-shaped
    cross-section, waist, endplate concavity, wedge/biconcave fractures) filled with
    a band-pass random-field trabecular network; posterior elements, osteophytes
    and the sacrum are unions of swept-sphere (capsule) signed distance fields
    placed on a lordotic / scoliotic spinal chain drawn from shape modes;
  * a 1.4 mm "wide" volume for ribs 11/12 and the iliac wings.
Volumes are projected slab-by-slab with per-slab cone-beam magnification
(point source, flat detector), combined in a polyenergetic Beer-Lambert model
(Kramers spectrum + W lines, Al/Cu filtration, CsI detector), scatter, heel effect,
quantum + electronic noise, detector blur, then one of four invented vendor
processing chains, and written as DX (for presentation) or CR DICOM files.
"""
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse
import csv
import sys

import numpy as np
from scipy import ndimage, fft as sfft
from PIL import Image, ImageDraw, ImageFont
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import generate_uid, ExplicitVRLittleEndian

F32 = np.float32
UID_PREFIX = "1.2.826.0.1.3680043.8.498."
DX_PRES = "1.2.840.10008.5.1.4.1.1.1.1"   # Digital X-Ray Image Storage - For Presentation
CR_SOP = "1.2.840.10008.5.1.4.1.1.1"      # Computed Radiography Image Storage

# ----------------------------------------------------------------------------------
# attenuation data (mass attenuation coefficients, cm^2/g). HA is derived from ICRU
# cortical bone minus its non-mineral (water-like) fraction (HA mass fraction 0.564).
# ----------------------------------------------------------------------------------
E_TAB = np.array([20, 30, 40, 50, 60, 80, 100, 150], float)
MU_TAB = {
    "water": [0.8096, 0.3756, 0.2683, 0.2269, 0.2059, 0.1837, 0.1707, 0.1505],
    "fat": [0.6000, 0.3100, 0.2320, 0.2030, 0.1870, 0.1690, 0.1570, 0.1390],
    "ha": [6.470, 2.070, 0.9725, 0.5768, 0.3990, 0.2532, 0.1970, 0.1460],
    "al": [3.441, 1.128, 0.5685, 0.3681, 0.2778, 0.2018, 0.1704, 0.1378],
    "cu": [33.80, 10.90, 4.862, 2.613, 1.593, 0.7630, 0.4584, 0.2220],
    "csi": [17.0, 6.0, 21.0, 12.0, 7.3, 3.5, 2.0, 0.75],
}


def mu_at(name, E):
    return np.exp(np.interp(np.log(E), np.log(E_TAB), np.log(MU_TAB[name])))


def spectrum(kvp, mm_al, mm_cu):
    """Detector-weighted energy bins (energy-integrating CsI) for a W anode."""
    E = np.arange(21.0, kvp - 1.0, 3.0)
    phi = np.clip(kvp - E, 0, None) / E                      # Kramers (photons)
    for line, rel in ((59.3, 0.9), (67.2, 0.25)):              # W K lines
        if kvp > 72:
            k = np.argmin(abs(E - line))
            phi[k] += rel * phi.max() * 0.35 * min(1.0, (kvp - 70) / 30.0)
    phi *= np.exp(-mu_at("al", E) * 2.699 * mm_al * 0.1 - mu_at("cu", E) * 8.96 * mm_cu * 0.1)
    absorb = 1 - np.exp(-mu_at("csi", E) * 4.51 * 0.06)
    w = phi * E * absorb
    return E, w / w.sum()


# ----------------------------------------------------------------------------------
# small geometry helpers
# ----------------------------------------------------------------------------------
def sig(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class Grid:
    def __init__(self, lo, hi, h):
        self.h = float(h)
        self.lo = np.asarray(lo, float)
        self.n = np.maximum(np.ceil((np.asarray(hi, float) - self.lo) / h).astype(int) + 1, 2)
        self.a = np.zeros(tuple(self.n), F32)

    def box(self, lo, hi):
        i0 = np.floor((np.asarray(lo) - self.lo) / self.h).astype(int)
        i1 = np.ceil((np.asarray(hi) - self.lo) / self.h).astype(int) + 1
        i0 = np.maximum(i0, 0)
        i1 = np.minimum(i1, self.n)
        if np.any(i1 <= i0):
            return None
        return tuple(slice(a, b) for a, b in zip(i0, i1))

    def coords(self, sl=None):
        if sl is None:
            sl = tuple(slice(0, n) for n in self.n)
        ax = [(self.lo[k] + self.h * np.arange(sl[k].start, sl[k].stop)).astype(F32) for k in range(3)]
        return ax[0][:, None, None], ax[1][None, :, None], ax[2][None, None, :]


def capsule_sdf(X, Y, Z, p0, p1, r0, r1):
    d = np.asarray(p1, float) - np.asarray(p0, float)
    L2 = max(float(d @ d), 1e-6)
    px, py, pz = X - F32(p0[0]), Y - F32(p0[1]), Z - F32(p0[2])
    t = np.clip((px * F32(d[0]) + py * F32(d[1]) + pz * F32(d[2])) * F32(1.0 / L2), 0, 1)
    qx = px - t * F32(d[0])
    qy = py - t * F32(d[1])
    qz = pz - t * F32(d[2])
    return np.sqrt(qx * qx + qy * qy + qz * qz) - (F32(r0) + F32(r1 - r0) * t)


def caps_bbox(caps, margin):
    pts = []
    for p0, p1, r0, r1 in caps:
        r = max(r0, r1) + margin
        pts.append(np.minimum(p0, p1) - r)
        pts.append(np.maximum(p0, p1) + r)
    pts = np.array(pts)
    return pts.min(0), pts.max(0)


def union_caps(grid, caps, margin=2.0):
    """Return (slice, sdf) for the union of capsules, evaluated on grid."""
    lo, hi = caps_bbox(caps, margin)
    sl = grid.box(lo, hi)
    if sl is None:
        return None, None
    sdf = np.full(tuple(s.stop - s.start for s in sl), 1e3, F32)
    for p0, p1, r0, r1 in caps:
        l2, h2 = caps_bbox([(p0, p1, r0, r1)], margin)
        sub = grid.box(l2, h2)
        if sub is None:
            continue
        X, Y, Z = grid.coords(sub)
        rel = tuple(slice(s.start - b.start, s.stop - b.start) for s, b in zip(sub, sl))
        np.minimum(sdf[rel], capsule_sdf(X, Y, Z, p0, p1, r0, r1), out=sdf[rel])
    return sl, sdf


def shell_density(sdf, h, tc, rho_in, rho_c):
    occ = np.clip(0.5 - sdf / F32(h), 0, 1)
    inn = np.clip(0.5 - (sdf + F32(tc)) / F32(h), 0, 1)
    return occ * F32(rho_c) + inn * F32(rho_in - rho_c)


def bandpass_field(rng, shape, h, lam, rel_bw, zstretch=1.0):
    """Gaussian random field, band-pass around wavelength lam (mm), unit std."""
    noise = rng.standard_normal(shape).astype(F32)
    Fk = sfft.rfftn(noise, workers=1)
    kx = sfft.fftfreq(shape[0], h)[:, None, None]
    ky = sfft.fftfreq(shape[1], h)[None, :, None]
    kz = sfft.rfftfreq(shape[2], h)[None, None, :]
    k = np.sqrt(kx * kx + ky * ky + (zstretch * kz) ** 2)
    k0 = 1.0 / lam
    filt = np.exp(-0.5 * ((k - k0) / (rel_bw * k0)) ** 2).astype(F32)
    g = sfft.irfftn(Fk * filt, s=shape, workers=1).astype(F32)
    g /= F32(g.std() + 1e-9)
    return g


def lowpass_field(Fk, shape, h, lam):
    kx = sfft.fftfreq(shape[0], h)[:, None, None]
    ky = sfft.fftfreq(shape[1], h)[None, :, None]
    kz = sfft.rfftfreq(shape[2], h)[None, None, :]
    k2 = kx * kx + ky * ky + kz * kz
    filt = np.exp(-0.5 * k2 * (lam / 2.0) ** 2 * (2 * np.pi) ** 2 / 4.0).astype(F32)
    g = sfft.irfftn(Fk * filt, s=shape, workers=1).astype(F32)
    g -= g.mean()
    g /= F32(g.std() + 1e-9)
    return g


# ----------------------------------------------------------------------------------
# patient model
# ----------------------------------------------------------------------------------
LEVELS = ["T11", "T12", "L1", "L2", "L3", "L4", "L5"]
# mean shape (half-width a, half-depth b, height H, pedicle offset pw, TP reach tp)
MEAN_A = np.array([18.5, 19.5, 21.0, 22.0, 23.5, 24.5, 25.5])
MEAN_B = np.array([14.0, 14.5, 15.5, 16.0, 16.5, 17.0, 17.0])
MEAN_H = np.array([22.0, 23.5, 25.0, 26.5, 27.0, 27.0, 26.0])
MEAN_PW = np.array([11.0, 12.0, 13.5, 14.0, 15.0, 16.0, 18.0])
MEAN_TP = np.array([30.0, 24.0, 33.0, 39.0, 45.0, 41.0, 39.0])
MEAN_DISC = np.array([6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 10.5])   # disc BELOW each level
# lordosis share of each disc (below level) and kyphosis above L1
LORD_W = np.array([-0.08, 0.02, 0.07, 0.11, 0.16, 0.24, 0.34])
DEG_W = np.array([0.5, 0.5, 0.6, 0.8, 1.0, 1.3, 1.2])


def draw_patient(rng, seed, idx):
    T = float(np.clip(rng.normal(-1.8, 1.4), -5.0, 2.5))
    T = round(T, 2)
    zt = (T + 1.8) / 1.4
    age = int(np.clip(round(67.0 - 3.3 * zt + rng.normal(0, 10.5)), 45, 90))
    sex = "F" if rng.random() < 0.8 else "M"
    bmi = float(np.clip(rng.lognormal(np.log(27.0), 0.18), 17.0, 48.0))
    P = dict(T=T, age=age, sex=sex, bmi=bmi, idx=idx, seed=seed)
    P["label"] = 0 if T >= -1.0 else (2 if T <= -2.5 else 1)
    P["bmd"] = 1.047 + 0.11 * T
    # --- bone density (physical, from T) ---
    pat = 1.0 + 0.08 * rng.standard_normal()
    vb = (160.0 + 28.0 * T) * pat * (1.0 + 0.05 * rng.standard_normal(7))
    P["vbmd"] = np.clip(vb, 15.0, 320.0) / 1000.0                 # g/cm3 HA
    P["vbmd_s"] = float(np.clip((160.0 + 28.0 * T) * pat * 0.85, 15, 300)) / 1000.0
    P["cort_t"] = float(np.clip(0.55 + 0.035 * T + rng.normal(0, 0.05), 0.3, 0.8))   # mm
    P["cort_rho"] = float(np.clip(1.0 * (1 + 0.025 * T) + rng.normal(0, 0.03), 0.75, 1.15))
    P["end_t"] = float(np.clip(0.9 + 0.04 * T + rng.normal(0, 0.1), 0.5, 1.3))
    P["tex_lam"] = float(np.clip(2.6 - 0.18 * T + rng.normal(0, 0.12), 2.0, 3.8))
    P["tex_w"] = float(np.clip(0.50 + 0.06 * T + rng.normal(0, 0.04), 0.16, 0.7))
    P["tex_perf"] = float(1.3 + 0.3 * T)
    P["tex_aniso"] = float(np.clip(1.6 - 0.15 * T, 1.2, 2.5))
    # --- shape model (a few global modes + per-level residuals) ---
    msc = 1.0 + (0.07 if sex == "M" else 0.0) + 0.05 * rng.standard_normal()
    m1, m2, m3 = rng.standard_normal(3)
    P["a"] = MEAN_A * msc * (1 + 0.04 * m1) * (1 + 0.02 * rng.standard_normal(7))
    P["b"] = MEAN_B * msc * (1 - 0.02 * m1 + 0.04 * m2) * (1 + 0.02 * rng.standard_normal(7))
    P["H"] = MEAN_H * msc * (1 + 0.05 * m3) * (1 + 0.025 * rng.standard_normal(7))
    P["pw"] = MEAN_PW * msc * (1 + 0.06 * rng.standard_normal()) * (1 + 0.03 * rng.standard_normal(7))
    P["tp"] = MEAN_TP * msc * (1 + 0.08 * rng.standard_normal()) * (1 + 0.06 * rng.standard_normal(7))
    # degeneration (depends on age only)
    dage = np.clip((age - 42) / 40.0, 0, 1.2)
    P["deg"] = np.clip(dage * DEG_W * rng.gamma(2.0, 0.45, 7), 0, 1.6)
    P["deg_s1"] = float(np.clip(dage * 1.2 * rng.gamma(2.0, 0.45), 0, 1.6))
    P["disc"] = MEAN_DISC * msc * (1 - 0.35 * np.clip(P["deg"], 0, 1)) * (1 + 0.08 * rng.standard_normal(7))
    # fractures: more likely at low T
    pfx = 0.004 + 0.028 * max(0.0, -1.0 - T)
    fx = []
    for k in range(7):
        if k >= 1 and rng.random() < pfx * (1.3 if LEVELS[k] in ("T12", "L1") else 1.0):
            kind = rng.choice(["wedge", "biconcave", "crush"], p=[0.6, 0.25, 0.15])
            fx.append((k, str(kind), float(rng.uniform(0.18, 0.45))))
    P["fx"] = fx
    # spinal curve
    P["slope"] = np.deg2rad(rng.normal(39, 7))
    P["lordosis"] = np.deg2rad(np.clip(rng.normal(50, 10) - 0.1 * (age - 60), 20, 80))
    P["scol_amp"] = np.deg2rad(abs(rng.normal(0, 2.5)) + (rng.random() < 0.12) * rng.uniform(3, 10))
    P["scol_ph"] = rng.uniform(0, 2 * np.pi)
    P["rot"] = np.deg2rad(rng.normal(0, 2.0, 7))
    return P


def build_chain(P, rng):
    """Vertebral frames, built upward from the S1 endplate (before final shift)."""
    phi = P["slope"]
    pos = np.array([0.0, 0.0, 0.0])
    frames = [None] * 7
    sacr = dict(top=pos.copy(), phi=phi)
    for k in range(6, -1, -1):
        dphi = P["lordosis"] * LORD_W[k]
        psi = P["scol_amp"] * np.sin(np.pi * (k + 0.5) / 7.0 * 1.3 + P["scol_ph"])
        # disc below level k (wedge-shaped: angle change happens across disc)
        t_mid = np.array([np.sin(psi), np.sin(phi - dphi / 2) * np.cos(psi), np.cos(phi - dphi / 2) * np.cos(psi)])
        pos = pos + t_mid * P["disc"][k]
        phi = phi - dphi
        t = np.array([np.sin(psi), np.sin(phi) * np.cos(psi), np.cos(phi) * np.cos(psi)])
        H = P["H"][k]
        c = pos + t * H / 2
        w = t / np.linalg.norm(t)
        v = np.array([0.0, np.cos(phi), -np.sin(phi)])
        v -= w * (v @ w)
        v /= np.linalg.norm(v)
        u = np.cross(v, w)
        g = P["rot"][k] + 0.6 * psi
        u, v = u * np.cos(g) + v * np.sin(g), -u * np.sin(g) + v * np.cos(g)
        frames[k] = dict(c=c, u=u, v=v, w=w, phi=phi)
        pos = pos + t * H
    return frames, sacr


def to_g(f, p):
    return f["c"] + p[0] * f["u"] + p[1] * f["v"] + p[2] * f["w"]


# ----------------------------------------------------------------------------------
# bone volume
# ----------------------------------------------------------------------------------
def vertebral_body(G, f, a, b, H, P, rng, k, vbmd, fxinfo, deg):
    h = G.h
    R = np.sqrt(a * a + b * b + (H / 2) ** 2) + 4
    sl = G.box(f["c"] - R, f["c"] + R)
    if sl is None:
        return
    X, Y, Z = G.coords(sl)
    dx, dy, dz = X - F32(f["c"][0]), Y - F32(f["c"][1]), Z - F32(f["c"][2])
    U = dx * F32(f["u"][0]) + dy * F32(f["u"][1]) + dz * F32(f["u"][2])
    V = dx * F32(f["v"][0]) + dy * F32(f["v"][1]) + dz * F32(f["v"][2])
    W = dx * F32(f["w"][0]) + dy * F32(f["w"][1]) + dz * F32(f["w"][2])
    # deformed kidney-shaped template
    pc = 0.12 + 0.05 * rng.standard_normal()
    Ve = V - F32(pc * b) * np.exp(-(U / F32(0.55 * a)) ** 2) * sig(-V / F32(2.0))
    th = np.arctan2(Ve / F32(b), U / F32(a))
    pert = np.ones_like(th)
    for n in range(2, 6):
        pert += F32(rng.normal(0, 0.018 / (n - 1) ** 0.5)) * np.cos(n * th + F32(rng.uniform(0, 6.283)))
    waist = F32(0.07 + 0.03 * rng.random())
    wn = np.clip(W / F32(H / 2), -1, 1)
    rad_scale = pert * (1 - waist * (1 - wn * wn))
    rho0 = np.sqrt((U / F32(a)) ** 2 + (Ve / F32(b)) ** 2)
    rho = rho0 / rad_scale
    rr = np.sqrt(U * U + Ve * Ve)
    d_r = rr * (1 - 1 / np.maximum(rho, F32(1e-3)))
    conc = 1.0 + 0.6 * rng.random()
    ct, cb = conc, conc * (0.8 + 0.4 * rng.random())
    wt = wb = 0.0
    hscale = 1.0
    if fxinfo is not None:
        kind, sev = fxinfo
        if kind == "wedge":
            wt = sev
        elif kind == "biconcave":
            ct += sev * H * 0.5
            cb += sev * H * 0.35
        else:
            hscale = 1 - sev
    bowl = np.clip(1 - rho * rho, 0, 1)
    antf = np.clip((Ve / F32(b) + 1) / 2, 0, 1)
    h_top = F32(hscale * H / 2) - F32(ct) * bowl - F32(wt * H) * antf
    h_bot = F32(hscale * H / 2) - F32(cb) * bowl - F32(wb * H) * antf
    d_w = np.maximum(W - h_top, -W - h_bot)
    d = np.maximum(d_r, d_w)
    occ = np.clip(0.5 - d / F32(h), 0, 1)
    tcw = P["cort_t"]
    tce = P["end_t"] * (1 + 0.5 * deg)
    d_in = np.maximum(d_r + F32(tcw), d_w + F32(tce))
    inn = np.clip(0.5 - d_in / F32(h), 0, 1)
    # trabecular network: band-pass random field, plates around its zero set, perforated
    shp = occ.shape
    g = bandpass_field(rng, shp, h, P["tex_lam"], 0.35, P["tex_aniso"])
    plates = np.exp(-(g / F32(P["tex_w"])) ** 2)
    m = bandpass_field(rng, shp, h, 6.0, 0.5)
    keep = sig((m + F32(P["tex_perf"])) / F32(0.35))
    pat = plates * keep
    dt = np.minimum(h_top - W, W + h_bot)                       # depth below endplate
    pat *= 1 + F32(0.18) * np.exp(-np.clip(dt, 0, None) / F32(4.0))
    mask = inn > 0.5
    pat /= F32(pat[mask].mean() + 1e-6) if mask.any() else F32(1)
    dens = inn * pat * F32(vbmd)
    # subchondral sclerosis (degeneration) and fracture condensation
    extra = F32(0.12 * deg) * np.exp(-np.clip(dt, 0, None) / F32(2.5 + 2 * deg))
    if fxinfo is not None:
        extra += F32(0.6 * fxinfo[1] * vbmd) * np.exp(-np.clip(h_top - W, 0, None) / F32(5.0))
    dens += inn * extra
    dens += (occ - inn) * F32(P["cort_rho"])
    np.maximum(G.a[sl], dens, out=G.a[sl])


def posterior_caps(f, k, P, a, b, H, pw, tp, deg, rng):
    caps = []
    lum = k >= 2
    fr = lambda p: to_g(f, np.array(p, float))
    rp = 4.0 if k < 6 else 5.0
    for s in (-1, 1):
        for dw in (3.0, 0.0, -3.0):
            caps.append((fr([s * pw, -b + 2, 0.15 * H + dw]), fr([s * (pw + 1.5), -b - 11, 0.15 * H + dw]), rp, rp))
        for q in np.linspace(0, 1, 5):
            x, y = s * ((pw + 1.5) * (1 - q) + 3.0 * q), (-b - 12) * (1 - q) + (-b - 24) * q
            caps.append((fr([x, y, 0.1 * H + 4]), fr([x, y - 2, -0.35 * H]), 3.0, 3.0))
        if lum:
            te = [s * tp, -b - 8, 0.2 * H - (5 if k == 6 else 0)]
            r0, r1 = (4.2, 3.0) if k < 6 else (6.5, 5.0)
        else:
            te = [s * (pw + 13), -b - 24, 0.2 * H]
            r0, r1 = 4.2, 3.5
        caps.append((fr([s * (pw + 2), -b - 13, 0.2 * H]), fr(te), r0, r1))
        fh = 1.2 * deg
        caps.append((fr([s * (pw + 3), -b - 15, 0.25 * H]), fr([s * (pw + 5), -b - 18, H / 2 + 6]), 4.3 + fh, 3.8 + fh))
        caps.append((fr([s * (pw - 1), -b - 21, -0.1 * H]), fr([s * (pw - 2), -b - 22, -H / 2 - 6]), 4.3 + fh, 3.8 + fh))
    sp_len = 48.0 if lum else 40.0
    sp_drop = -4.0 if lum else -16.0
    for q in np.linspace(0, 1, 8):
        y = -b - 22 - q * (sp_len - 22)
        top, bot = 8.0 - q * 2 + q * sp_drop, -9.0 + q * sp_drop - q * 1.5
        caps.append((fr([0, y, top]), fr([0, y, bot]), 3.0, 2.6 + 0.8 * q))
    # osteophytes at endplate rims (age/degeneration driven)
    if deg > 0.25:
        n = rng.poisson(1 + 4 * deg)
        for _ in range(n):
            th = rng.uniform(-0.3, np.pi + 0.3)
            side = rng.choice([-1, 1])
            rim = np.array([a * np.cos(th) * 0.97, b * np.sin(th) * 0.97, side * H / 2 * 0.95])
            out = np.array([np.cos(th), np.sin(th), 0.0])
            L = rng.uniform(2, 4 + 8 * deg)
            tip = rim + out * L * 0.8 + np.array([0, 0, side * L * 0.6])
            caps.append((fr(rim), fr(tip), rng.uniform(2.0, 3.2), rng.uniform(0.8, 1.6)))
    return caps


def build_bone(P, frames, sacr, rng, G):
    for k in range(7):
        f = frames[k]
        a, b, H = P["a"][k], P["b"][k], P["H"][k]
        fxi = None
        for (kk, kind, sev) in P["fx"]:
            if kk == k:
                fxi = (kind, sev)
        deg = float(P["deg"][k])
        vertebral_body(G, f, a, b, H, P, rng, k, P["vbmd"][k], fxi, deg)
        caps = posterior_caps(f, k, P, a, b, H, P["pw"][k], P["tp"][k], deg, rng)
        sl, sdf = union_caps(G, caps)
        if sl is not None:
            pe = shell_density(sdf, G.h, 0.9 + 0.05 * P["T"], 0.10 + 1.1 * P["vbmd"][k], P["cort_rho"])
            np.maximum(G.a[sl], pe, out=G.a[sl])
    # sacrum: S1 body + alae + tapering lower segments
    phi = sacr["phi"]
    w = np.array([0.0, np.sin(phi), np.cos(phi)])
    v = np.array([0.0, np.cos(phi), -np.sin(phi)])
    u = np.array([1.0, 0.0, 0.0])
    aS, bS, HS = P["a"][6] * 1.05, P["b"][6] * 1.05, 27.0
    fS1 = dict(c=sacr["top"] - w * HS / 2, u=u, v=v, w=w)
    vertebral_body(G, fS1, aS, bS, HS, P, rng, 7, P["vbmd_s"], None, P["deg_s1"])
    fr = lambda p: to_g(fS1, np.array(p, float))
    caps = []
    for s in (-1, 1):
        for dw in np.arange(8.0, -26.0, -5.0):
            dv = 0.25 * dw
            reach = 26 - 0.35 * max(0.0, -dw)
            caps.append((fr([s * aS * 0.5, -bS * 0.3 + dv, dw]), fr([s * (aS + reach), -bS - 6 + dv, dw - 6]), 7.5, 6.0))
        caps.append((fr([s * 17, -bS - 14, HS / 2 - 2]), fr([s * 19, -bS - 20, HS / 2 + 9]), 4.5 + P["deg_s1"], 4.0))
    # lower sacrum: curve posteriorly/inferiorly, narrowing
    cur = fr([0, -2, -HS / 2])
    dirn = -w * np.cos(0.25) - v * np.sin(0.25)
    width = aS + 14
    for j in range(4):
        nxt = cur + dirn * 22
        for x in np.linspace(-width * 0.75, width * 0.75, 7):
            caps.append((cur + u * x, nxt + u * x * 0.8, 8 - j * 1.0, 7 - j * 1.0))
        cur = nxt
        dirn = dirn * np.cos(0.15) - v * np.sin(0.15)
        width *= 0.8
    for dw in (0, -12, -24):
        caps.append((fr([0, -bS - 14, dw]), fr([0, -bS - 26, dw - 8]), 3.2, 3.0))
    sl, sdf = union_caps(G, caps)
    if sl is not None:
        pe = shell_density(sdf, G.h, 1.0, 0.07 + 0.9 * P["vbmd_s"], P["cort_rho"])
        np.maximum(G.a[sl], pe, out=G.a[sl])
    # aortic calcification (age)
    pa = np.clip((P["age"] - 52) / 35.0, 0, 1) * 0.85
    n = rng.poisson(7 * pa) if rng.random() < pa + 0.05 else 0
    if n:
        zs = [frames[k]["c"][2] for k in range(7)]
        ys = [frames[k]["c"][1] + P["b"][k] for k in range(7)]
        caps = []
        for _ in range(n):
            z = rng.uniform(zs[5], zs[1])
            yf = np.interp(z, zs[::-1], ys[::-1])
            ang = rng.uniform(0, 2 * np.pi)
            c0 = np.array([14 + 11 * np.cos(ang), yf + 16 + 11 * np.sin(ang), z])
            L = rng.uniform(3, 12)
            caps.append((c0, c0 + np.array([0, 0, L]), 0.9, 0.9))
        sl, sdf = union_caps(G, caps)
        if sl is not None:
            np.maximum(G.a[sl], np.clip(0.5 - sdf / F32(G.h), 0, 1) * F32(0.9), out=G.a[sl])


def build_wide(P, frames, sacr, rng, W, z_crest, ext):
    # ribs 11 and 12 (floating), cortical tubes
    caps = []
    for k, L in ((0, 1.0), (1, 0.7 + 0.2 * rng.random())):
        f = frames[k]
        b, H, pw = P["b"][k], P["H"][k], P["pw"][k]
        for s in (-1, 1):
            drop = rng.uniform(0.8, 1.2)
            pts = [[s * (P["a"][k] - 3), -b + 1, 0.3 * H], [s * (pw + 15), -b - 17, 0.3 * H],
                   [s * (pw + 45), -b - 20, 0.3 * H - 18 * drop], [s * (pw + 80), -b - 6, 0.3 * H - 45 * drop],
                   [s * (pw + 105), -b + 22, 0.3 * H - 72 * drop]]
            npts = 3 + int(round(2 * L))
            for j in range(min(npts, len(pts)) - 1):
                r0 = 5.0 - 0.4 * j
                caps.append((to_g(f, np.array(pts[j], float)), to_g(f, np.array(pts[j + 1], float)), r0, r0 - 0.4))
    sl, sdf = union_caps(W, caps)
    if sl is not None:
        d = shell_density(sdf, W.h, 1.3, 0.12 + 0.8 * P["vbmd"][1], P["cort_rho"])
        np.maximum(W.a[sl], d, out=W.a[sl])
    # iliac wings: curved plates; mid-surface y = f(x, z) (wing turns anteriorly laterally),
    # outline: SI-joint medial edge, arched crest, lateral border converging to the acetabulum
    ys1 = sacr["top"][1]
    for s in (-1, 1):
        xm = (44 + rng.normal(0, 3)) * ext                  # SI joint (medial edge)
        span = rng.normal(95, 7) * ext                      # wing width at crest
        ht = rng.normal(14, 4)                              # crest arch height
        yb = ys1 - 28 + rng.normal(0, 5)
        turn = rng.uniform(0.22, 0.42)
        cup = rng.uniform(0.002, 0.004)
        zb = z_crest - 170
        lo = np.array([min(s * xm, s * (xm + span + 10)) - 5, yb - 20, zb])
        hi = np.array([max(s * xm, s * (xm + span + 10)) + 5, yb + turn * (span + 10) + 20, z_crest + ht + 5])
        sl = W.box(lo, hi)
        if sl is None:
            continue
        X, Y, Z = W.coords(sl)
        r = X * F32(s) - F32(xm)                            # lateral distance from SI joint
        q = np.clip(r / F32(span), 0, 1.2)
        ysurf = F32(yb) + F32(turn) * r - F32(cup) * (r - F32(span / 2)) ** 2 - F32(0.08) * (Z - F32(z_crest))
        crest_z = F32(z_crest) + F32(ht) * (1 - (2 * q - 1) ** 2)
        crest = Z - crest_z
        thick = F32(7.0) + F32(7.0) * np.exp(-(Z - crest_z) ** 2 / F32(150.0)) + F32(4.0) * np.exp(-r / F32(12))
        dpl = np.abs(Y - ysurf) - thick / 2
        zz = np.clip((F32(z_crest) - Z) / F32(150.0), 0, 1)   # 0 at crest, 1 at acetabulum
        lat = r - (F32(span) * (1 - F32(0.72) * zz ** 1.3))
        med = -r + F32(6.0) * zz
        d = np.maximum(np.maximum(dpl, crest), np.maximum(lat, med))
        dens = shell_density(d, W.h, 1.4, 0.10 + 0.7 * P["vbmd_s"], P["cort_rho"])
        np.maximum(W.a[sl], dens, out=W.a[sl])


# ----------------------------------------------------------------------------------
# soft tissue volume
# ----------------------------------------------------------------------------------
def build_soft(P, frames, sacr, rng, S, A0, B0, z_crest):
    X, Y, Z = S.coords()
    shp = tuple(S.n)
    noise = rng.standard_normal(shp).astype(F32)
    Fk = sfft.rfftn(noise, workers=1)
    g_low = lowpass_field(Fk, shp, S.h, 40.0)
    g_gas = lowpass_field(Fk, shp, S.h, 14.0)
    noise2 = rng.standard_normal(shp).astype(F32)
    g_hi = ndimage.gaussian_filter(noise2, 1.0)
    g_hi /= F32(g_hi.std())
    zc = F32(P["z_waist"])
    A = F32(A0) * (1 + F32(0.06) * ((Z - zc) / F32(180)) ** 2) + F32(P["hip"]) * sig((F32(z_crest) - Z) / F32(30))
    B = F32(B0) * (1 + F32(0.04) * ((Z - zc) / F32(180)) ** 2) + F32(0.3 * P["hip"]) * sig((F32(z_crest) - Z) / F32(30))
    th = np.arctan2(Y / B, X / A)
    pert = np.ones(th.shape, F32)
    for n, amp in ((2, 0.03), (3, 0.02), (4, 0.02), (5, 0.01)):
        pert += F32(rng.normal(0, amp)) * np.cos(n * th + F32(rng.uniform(0, 6.283)))
    pert -= F32(P["flat"]) * np.clip(-np.sin(th), 0, None) ** 4       # flattened back (supine)
    rr = np.sqrt(X * X + Y * Y)
    rho = np.sqrt((X / A) ** 2 + (Y / B) ** 2) / pert
    depth = rr * (1 / np.maximum(rho, F32(1e-3)) - 1)
    occ = np.clip(0.5 + depth / F32(S.h), 0, 1)
    fsub = F32(P["fsub"]) * (1 + F32(0.35) * np.sin(th))
    ff = np.where(depth < fsub, F32(0.92), np.clip(F32(P["ffv"]) + F32(0.22) * g_low, 0.02, 0.9))
    # muscles (psoas, erector spinae), kidneys with perirenal fat
    caps_m, caps_k = [], []
    zs = [frames[k]["c"] for k in range(7)]
    for s in (-1, 1):
        pts = [to_g(frames[k], np.array([s * (P["a"][k] + 2 + 4 * (k - 1)), -P["b"][k] * 0.3, 0])) for k in range(1, 7)]
        pts.append(np.array([s * (P["a"][6] + 32), zs[6][1] + 20, sacr["top"][2] - 60]))
        for j in range(len(pts) - 1):
            caps_m.append((pts[j], pts[j + 1], 5 + 3.2 * j, 8 + 3.2 * j))
        ctr = [to_g(frames[k], np.array([s * 40, -P["b"][k] - 42, 0])) for k in (0, 6)]
        caps_m.append((ctr[0], ctr[1], 26 * P["musc"], 30 * P["musc"]))
        kz = 15 if s < 0 else 0
        kc0 = to_g(frames[1], np.array([s * 62, -P["b"][1] + 12, 10 - kz]))
        kc1 = to_g(frames[3], np.array([s * 72, -P["b"][3] + 18, -kz]))
        caps_k.append((kc0, kc1, 26, 24))
    for caps, fat_ring, mff in ((caps_k, 12.0, 0.05), (caps_m, 5.0, 0.03)):
        sl, sdf = union_caps(S, caps, margin=fat_ring + 3)
        if sl is None:
            continue
        sub = ff[sl]
        ring = (sdf > 0) & (sdf < F32(fat_ring))
        sub[ring] = np.maximum(sub[ring], F32(0.75))
        sub[sdf <= 0] = F32(mff)
    # spine column region: no fat / gas
    sp_caps = [(to_g(frames[k], np.array([0, -P["b"][k] * 0.6, 0])), to_g(frames[k + 1], np.array([0, -P["b"][k + 1] * 0.6, 0])), 30, 30) for k in range(6)]
    sl_sp, sdf_sp = union_caps(S, sp_caps, margin=4)
    # bowel gas along a colon path plus small bowel bubbles
    zT12, zL3 = zs[1][2], zs[4][2]
    zS1 = sacr["top"][2]
    Ac, Bc = A0 * 0.8, B0 * 0.8
    route = [(-0.6 * Ac, 0.15 * Bc, z_crest - 25), (-0.65 * Ac, 0.1 * Bc, zs[2][2]), (-0.5 * Ac, 0.3 * Bc, zT12),
             (0.0, 0.6 * Bc, zL3 + rng.normal(0, 25)), (0.55 * Ac, 0.2 * Bc, zs[0][2] + 10),
             (0.68 * Ac, 0.0, zs[5][2]), (0.35 * Ac, 0.35 * Bc, zS1 - 35), (0.05 * Ac, 0.05 * Bc, zS1 - 90)]
    route = [np.array(p) + rng.normal(0, 8, 3) for p in route]
    rcol = rng.uniform(17, 27)
    caps_c = [(route[j], route[j + 1], rcol, rcol) for j in range(len(route) - 1)]
    gas = np.zeros(shp, F32)
    sl, sdf = union_caps(S, caps_c, margin=3)
    if sl is not None:
        inside = np.clip(0.5 - sdf / F32(S.h), 0, 1)
        lvl = F32(P["gas_col"])
        gas[sl] = inside * sig((g_gas[sl] + F32(0.45) * g_hi[sl] - lvl) / F32(0.25))
    sbc = np.array([rng.normal(0, 20), 0.45 * Bc, zL3 - 40])
    sl, sdf = union_caps(S, [(sbc - [50, 0, 30], sbc + [50, 0, 30], 45, 45)], margin=3)
    if sl is not None:
        inside = np.clip(0.5 - sdf / F32(S.h), 0, 1)
        gas[sl] = np.maximum(gas[sl], inside * sig((g_hi[sl] * F32(0.7) + g_gas[sl] * F32(0.7) - F32(P["gas_sb"])) / F32(0.2)))
    if sl_sp is not None:
        keep = np.clip(sdf_sp / F32(10.0), 0, 1)
        gas[sl_sp] *= keep
        wsp = np.clip(-sdf_sp / F32(12.0), 0, 1)
        ff[sl_sp] = ff[sl_sp] * (1 - wsp) + F32(0.05) * wsp
    gas *= (depth > F32(P["fsub"] + 8))
    # lung bases above the diaphragm domes (lateral and posterior)
    for s in (-1, 1):
        zd = F32(P["z_diaph"]) + F32(45) * (1 - ((X - F32(s * 0.45 * A0)) / F32(0.45 * A0)) ** 2 - ((Y + F32(0.1 * B0)) / F32(0.8 * B0)) ** 2)
        lung = sig((Z - zd) / F32(3)) * (depth > F32(P["fsub"] + 15)) * sig((X * F32(s) - F32(30)) / F32(6))
        gas = np.maximum(gas, lung * F32(0.75))
    dens = occ * (1 - gas)
    water = dens * (1 - ff) * F32(1.03)
    fat = dens * ff * F32(0.93)
    return water, fat


# ----------------------------------------------------------------------------------
# projection onto the detector (slab-wise cone-beam magnification)
# ----------------------------------------------------------------------------------
def interp_matrix(samples, lo, h, n):
    idx = (samples - lo) / h
    i0 = np.floor(idx).astype(int)
    fr = (idx - i0).astype(F32)
    M = np.zeros((len(samples), n), F32)
    rows = np.arange(len(samples))
    for off, wgt in ((0, 1 - fr), (1, fr)):
        j = i0 + off
        ok = (j >= 0) & (j < n)
        M[rows[ok], j[ok]] = wgt[ok]
    return M


def project(vol, lo, h, beam_axis, geom, nslab):
    """Line integrals (value*cm) of vol onto detector, slab-wise magnified."""
    n = vol.shape[beam_axis]
    edges = np.linspace(0, n, nslab + 1).astype(int)
    out = np.zeros((geom["H"], geom["W"]), F32)
    hz, lz = h, lo[2]
    ih = 1 - beam_axis  # in-plane horizontal axis index (0 for x in AP, 1 for y in LAT)
    lh = lo[ih]
    for s in range(nslab):
        i0, i1 = edges[s], edges[s + 1]
        if i1 <= i0:
            continue
        sl = [slice(None)] * 3
        sl[beam_axis] = slice(i0, i1)
        img = vol[tuple(sl)].sum(axis=beam_axis) * F32(h * 0.1)        # (n_h, n_z)
        if not img.any():
            continue
        depth = lo[beam_axis] + h * (0.5 * (i0 + i1) - 0.5)
        M = geom["SID"] / (geom["sdir"] * (geom["src"] - depth))
        hs = geom["h_cr"] + geom["hsign"] * geom["u"] / M
        zs = geom["z_cr"] - geom["t"] / M
        Rz = interp_matrix(zs, lz, hz, img.shape[1])
        Rh = interp_matrix(hs, lh, h, img.shape[0])
        out += (Rz @ img.T) @ Rh.T
    return out


def lowpass2d(img, sigma):
    if sigma < 3:
        return ndimage.gaussian_filter(img, sigma, mode="nearest")
    f = max(1, int(sigma / 2.5))
    H, W = img.shape
    Hc, Wc = H // f * f, W // f * f
    small = img[:Hc, :Wc].reshape(Hc // f, f, Wc // f, f).mean(axis=(1, 3))
    small = np.pad(small, ((0, 1), (0, 1)), mode="edge")
    small = ndimage.gaussian_filter(small, sigma / f, mode="nearest")
    r = (np.arange(H) + 0.5) / f - 0.5
    c = (np.arange(W) + 0.5) / f - 0.5
    r = np.clip(r, 0, small.shape[0] - 1)
    c = np.clip(c, 0, small.shape[1] - 1)
    return ndimage.map_coordinates(small, np.meshgrid(r, c, indexing="ij"), order=1, mode="nearest").astype(F32)


# ----------------------------------------------------------------------------------
# vendors
# ----------------------------------------------------------------------------------
VENDORS = [
    dict(name="Veridian Imaging", model="VX-Flat 4300", mod="DX", bits=12, style="multiscale", crop=True,
         border="black", inst="Northgate Valley Clinic", lat_ant_left=True, cu=0.1),
    dict(name="Halcyon Medical Systems", model="HDR-Lumina 2", mod="DX", bits=14, style="drc", crop=False,
         border="white", inst="St. Aurel General Hospital", lat_ant_left=True, cu=0.0),
    dict(name="Nordhaven Radiografix", model="CRV-88 Reader", mod="CR", bits=10, style="cr", crop=True,
         border="natural", inst="Lakeshore Imaging Center", lat_ant_left=False, cu=0.0),
    dict(name="Kestrel Diagnostics", model="KD-Ortho DR2", mod="DX", bits=16, style="equalize", crop=False,
         border="black", inst="Ridgefield Medical Group", lat_ant_left=True, cu=0.2),
]


def process(L, field, v, rng):
    """Vendor chain on log image L (large = attenuating). Returns display d in [0,1]."""
    anat = (field > 0.5) & (L > F32(0.9))          # exposure-field recognition, direct exposure removed
    if anat.sum() < 1000:
        anat = field > 0.5
    field = anat.astype(F32)
    vals = L[anat]
    style = v["style"]
    lo, hi = np.percentile(vals, [rng.uniform(0.5, 2.5), rng.uniform(99.0, 99.8)])
    x = (L - F32(lo)) / F32(max(hi - lo, 1e-3))
    if style == "multiscale":
        base = x
        out = lowpass2d(x, 40)
        prev = x
        gains = [rng.uniform(1.2, 1.6), rng.uniform(1.4, 1.9), rng.uniform(1.2, 1.6), rng.uniform(0.8, 1.1)]
        acc = np.zeros_like(x)
        for sgm, gk in zip((1.0, 3.0, 9.0, 27.0), gains):
            lp = lowpass2d(base, sgm)
            acc += F32(gk) * (prev - lp)
            prev = lp
        x = prev + acc
        k = rng.uniform(4.5, 6.5)
        d = sig((x - F32(np.median(x[field > 0.5]))) * F32(k))
        d = (d - d.min()) / (d.max() - d.min() + 1e-6)
    elif style == "drc":
        low = lowpass2d(x, 60)
        c = rng.uniform(0.35, 0.6)
        x = x - F32(c) * (low - F32(np.median(low[field > 0.5])))
        x = x + F32(rng.uniform(0.6, 1.2)) * (x - lowpass2d(x, 4.0))
        lo2, hi2 = np.percentile(x[field > 0.5], [1, 99.5])
        x = np.clip((x - lo2) / (hi2 - lo2), 0, 1)
        d = x ** F32(rng.uniform(0.8, 1.25))
    elif style == "cr":
        med = np.median(vals)
        lat = rng.uniform(2.2, 3.2)
        x = 0.5 + (L - F32(med)) / F32(lat)
        x = x + F32(rng.uniform(0.3, 0.6)) * (x - lowpass2d(x, 2.5))
        d = 0.5 + 0.5 * np.tanh((x - 0.5) * F32(2.6))
        d = np.clip(d, 0, 1)
    else:  # equalize: blend of histogram equalisation and linear
        lowp = lowpass2d(x, 25)
        x = x - F32(0.3) * (lowp - F32(np.median(lowp[field > 0.5])))
        xv = x[field > 0.5]
        qs = np.percentile(xv, np.linspace(0, 100, 65))
        qs = np.maximum.accumulate(qs + np.arange(65) * 1e-6)
        eq = np.interp(x, qs, np.linspace(0, 1, 65)).astype(F32)
        lo2, hi2 = np.percentile(xv, [0.5, 99.5])
        lin = np.clip((x - lo2) / (hi2 - lo2), 0, 1)
        bl = rng.uniform(0.35, 0.6)
        d = F32(bl) * eq + F32(1 - bl) * lin
        d = d + F32(rng.uniform(0.3, 0.6)) * (d - lowpass2d(d, 3.0))
    return np.clip(d, 0, 1).astype(F32)


def text_mask(shape, items, size):
    img = Image.new("L", (shape[1], shape[0]), 0)
    dr = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=size)
    for (x, y, s, anchor) in items:
        dr.text((x, y), s, fill=255, font=font, anchor=anchor)
    return np.asarray(img, F32) / 255.0


# ----------------------------------------------------------------------------------
# one view
# ----------------------------------------------------------------------------------
def render_view(view, P, vols, rng, v):
    G, Wd, S, water, fat = vols
    ps = P["ps"]
    Hd, Wdet = P["det_h"], P["det_w"]
    # field (collimation) at detector, mm, relative to central ray
    if view == "AP":
        fw, fh = rng.uniform(165, 235), rng.uniform(300, 370)
        kvp = rng.uniform(72, 90)
    else:
        fw, fh = rng.uniform(180, 250), rng.uniform(300, 370)
        kvp = rng.uniform(85, 105)
    fh = min(fh, Hd - 10)
    fw = min(fw, Wdet - 10)
    foff = rng.normal(0, 6, 2)
    if v["crop"]:
        m = rng.uniform(6, 30, 4)
        iw, ih = fw + m[0] + m[1], fh + m[2] + m[3]
        ps_v = max(ps, ih / 1090.0, iw / 1090.0)
        cu0, ct0 = -fw / 2 - m[0] + foff[0], -fh / 2 - m[2] + foff[1]
    else:
        iw, ih = Wdet, Hd
        ps_v = max(ps, ih / 1090.0)
        cu0, ct0 = -iw / 2 + rng.normal(0, 15), -ih / 2 + rng.normal(0, 15)
    Wpx, Hpx = int(iw / ps_v), int(ih / ps_v)
    u = (cu0 + (np.arange(Wpx) + 0.5) * ps_v)
    t = (ct0 + (np.arange(Hpx) + 0.5) * ps_v)
    SID = rng.uniform(1000, 1150)
    zL3 = P["zL3"]
    gap = rng.uniform(50, 80)
    if view == "AP":
        det = -P["B_post"] - gap
        geom = dict(SID=SID, src=det + SID, sdir=1.0, h_cr=rng.normal(0, 5), hsign=1.0,
                    z_cr=zL3 + rng.normal(5, 10))
        beam_axis = 0  # handled below: AP beam along y -> axis 1
        ba = 1
        oid = P["yL3"] - det
    else:
        det = P["A_max"] + gap
        sign = -1.0 if v["lat_ant_left"] else 1.0
        geom = dict(SID=SID, src=det - SID, sdir=-1.0, h_cr=P["yL3"] - 15 + rng.normal(0, 6), hsign=sign,
                    z_cr=zL3 + rng.normal(5, 10))
        ba = 0
        oid = det
    geom.update(H=Hpx, W=Wpx, u=u, t=t)
    # in project(): M = SID / (sdir*(src - depth)); AP: src - y ; LAT: depth - src (x - src)
    mineral = project(G.a, G.lo, G.h, ba, geom, 8) + project(Wd.a, Wd.lo, Wd.h, ba, geom, 6)
    wat = project(water, S.lo, S.h, ba, geom, 5) + F32(0.5)        # + table
    fa = project(fat, S.lo, S.h, ba, geom, 5)
    # collimation
    uu, tt = np.meshgrid(u, t)
    pen = 1.2
    field = (sig((fw / 2 - np.abs(uu - foff[0])) / pen) * sig((fh / 2 - np.abs(tt - foff[1])) / pen)).astype(F32)
    # lead marker (physically in beam)
    letter = ("R" if rng.random() < 0.5 else "L") if view == "AP" else "L"      # LL: left side to detector
    mk = np.zeros((Hpx, Wpx), F32)
    msz = int(14 / ps_v)
    side = (1 if letter == "L" else -1) if view == "AP" else (1 if rng.random() < 0.5 else -1)
    mu_c = foff[0] + side * (fw / 2 - 20)
    mt_c = foff[1] - fh / 2 + rng.uniform(20, 45)
    ci, cj = int((mt_c - ct0) / ps_v), int((mu_c - cu0) / ps_v)
    mimg = text_mask((Hpx, Wpx), [(cj, ci, letter, "mm")], msz)
    mk = ndimage.gaussian_filter(mimg, 0.8)
    frame = np.zeros_like(mk)
    r0, r1 = max(ci - msz, 0), min(ci + msz, Hpx)
    c0, c1 = max(cj - int(0.8 * msz), 0), min(cj + int(0.8 * msz), Wpx)
    frame[r0:r1, c0:c1] = 1.0
    # polyenergetic transmission
    E, w = spectrum(kvp, 2.5 + rng.uniform(0, 1.0), v["cu"])
    muw, muf, muh = mu_at("water", E), mu_at("fat", E), mu_at("ha", E)
    Tx = np.zeros((Hpx, Wpx), F32)
    for e in range(len(E)):
        Tx += F32(w[e]) * np.exp(-(F32(muw[e]) * wat + F32(muf[e]) * fa + F32(muh[e]) * mineral))
    Tx *= (1 - F32(0.97) * mk) * (1 - F32(0.06) * frame)
    heel = 1 + F32(rng.uniform(-0.12, 0.12)) * (tt / F32(fh / 2))
    prim = Tx * field * heel
    # AEC: target quanta behind the spine
    cen = (np.abs(uu - foff[0]) < 30) & (np.abs(tt - foff[1]) < 60)
    target = rng.uniform(500, 2200) * (ps_v / 0.4) ** 2
    N0 = target / max(float(np.median(prim[cen])), 1e-6)
    # scatter: each pixel's primary times a thickness-dependent SPR (grid-reduced), spread by a broad kernel
    spr_k = F32(0.028 * (1.35 if view == "LAT" else 1.0) * rng.uniform(0.8, 1.25))
    scat = lowpass2d(prim * spr_k * (wat + fa), rng.uniform(30, 55) / ps_v)
    sig_n = (prim + scat) * F32(N0)
    noisy = sig_n + np.sqrt(np.maximum(sig_n, 0) * F32(1.25)) * rng.standard_normal(sig_n.shape).astype(F32)
    noisy = ndimage.gaussian_filter(noisy, rng.uniform(0.35, 0.6) / ps_v)
    noisy = noisy + F32(rng.uniform(1.5, 5.0)) * rng.standard_normal(noisy.shape).astype(F32)
    L = np.log(F32(N0)) - np.log(np.maximum(noisy, F32(0.5)))
    d = process(L, field, v, rng)
    inside = field > 0.5
    if v["border"] == "black":
        d = np.where(inside, d, F32(0.0))
    elif v["border"] == "white":
        d = np.where(inside, d, F32(1.0))
    # burned-in annotations
    fs = max(12, int(Hpx / 55))
    ex_uAs = N0 * 4.0 * (SID / 1000) ** 2 / (kvp / 80) ** 2.5
    lines_tl = [v["inst"], f"{P['sex']} {P['age']:03d}Y  ID {P['pid']}", f"L-SPINE {view}"]
    lines_tr = [f"{kvp:.0f} kV  {ex_uAs / 1000:.1f} mAs", f"EI {int(200 + 400 * target / 1500)}", v["model"]]
    items = []
    for j, s in enumerate(lines_tl):
        items.append((8, 8 + j * (fs + 4), s, "la"))
    for j, s in enumerate(lines_tr):
        items.append((Wpx - 8, 8 + j * (fs + 4), s, "ra"))
    items.append((8, Hpx - 8, P["date_str"], "ls"))
    tm = text_mask((Hpx, Wpx), items, fs)
    tv = 1.0 if v["border"] != "white" else 0.0
    d = d * (1 - tm) + F32(tv) * tm
    info = dict(kvp=kvp, SID=SID, oid=oid, ps=ps_v, uAs=ex_uAs, Wpx=Wpx, Hpx=Hpx, letter=letter,
                mag=SID / (SID - max(oid, 0)))
    return d, info


def make_dicom(path, d, info, view, P, v, uids, rng, inst_no):
    bits = v["bits"]
    maxv = (1 << bits) - 1
    mono1 = P["mono1"]
    px = np.round((1 - d if mono1 else d) * maxv).astype(np.uint16)
    sop_cls = CR_SOP if v["mod"] == "CR" else DX_PRES
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_cls
    meta.MediaStorageSOPInstanceUID = uids[view]
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID_PREFIX + "99.15"
    meta.ImplementationVersionName = "PHANTOM_O_1"
    ds = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = sop_cls
    ds.SOPInstanceUID = uids[view]
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = P["date"]
    ds.StudyTime = P["time"]
    ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = P["time"]
    ds.AccessionNumber = f"A{P['seed'] % 100000:05d}{P['idx']:06d}"
    ds.Modality = v["mod"]
    if v["mod"] == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = v["name"]
    ds.InstitutionName = v["inst"]
    ds.ManufacturerModelName = v["model"]
    ds.StationName = "XR" + str(1 + P["idx"] % 4)
    ds.StudyDescription = "XR Lumbar Spine 2 Views"
    ds.SeriesDescription = f"Lumbar Spine {'AP' if view == 'AP' else 'Lateral'}"
    ds.ProtocolName = f"Lumbar spine {view}"
    ds.PatientName = f"PHANTOM^O{P['idx']:05d}"
    ds.PatientID = P["pid"]
    ds.PatientBirthDate = f"{int(P['date'][:4]) - P['age']}{P['date'][4:]}"
    ds.PatientSex = P["sex"]
    ds.PatientAge = f"{P['age']:03d}Y"
    ds.BodyPartExamined = "LSPINE"
    ds.KVP = f"{info['kvp']:.0f}"
    ds.ExposureInuAs = int(info["uAs"])
    ds.DistanceSourceToDetector = f"{info['SID']:.1f}"
    ds.DistanceSourceToPatient = f"{info['SID'] - info['oid']:.1f}"
    ds.EstimatedRadiographicMagnificationFactor = f"{info['mag']:.3f}"
    ds.ViewPosition = "AP" if view == "AP" else "LL"
    if v["mod"] == "DX":
        ds.DetectorType = "SCINTILLATOR"
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = -1 if mono1 else 1
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = "1"
        ds.RescaleType = "US"
    ds.ImagerPixelSpacing = [f"{info['ps']:.4f}", f"{info['ps']:.4f}"]
    if P["vendor_i"] in (0, 2):
        ds.PixelSpacing = [f"{info['ps']:.4f}", f"{info['ps']:.4f}"]
    ds.StudyInstanceUID = uids["study"]
    ds.SeriesInstanceUID = uids["series_" + view]
    ds.StudyID = f"{P['idx'] + 1}"
    ds.SeriesNumber = 1 if view == "AP" else 2
    ds.InstanceNumber = inst_no
    ds.PatientOrientation = ["L", "F"] if view == "AP" else (["P", "F"] if v["lat_ant_left"] else ["A", "F"])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if mono1 else "MONOCHROME2"
    ds.Rows, ds.Columns = px.shape
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.WindowCenter = f"{maxv / 2 + rng.normal(0, maxv * 0.02):.0f}"
    ds.WindowWidth = f"{maxv * rng.uniform(0.9, 1.0):.0f}"
    ds.LossyImageCompression = "00"
    ds.PixelData = px.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


# ----------------------------------------------------------------------------------
# study
# ----------------------------------------------------------------------------------
def make_study(args):
    outdir, seed, idx = args
    rng = np.random.default_rng([seed, idx])
    P = draw_patient(rng, seed, idx)
    P["pid"] = f"PHO{seed}-{idx:05d}"
    vi = int(rng.integers(0, len(VENDORS)))
    v = VENDORS[vi]
    P["vendor_i"] = vi
    P["mono1"] = bool(rng.random() < (0.6 if v["mod"] == "CR" else 0.17))
    P["ps"] = rng.uniform(0.30, 0.42) if v["crop"] else rng.uniform(0.39, 0.45)
    P["det_w"], P["det_h"] = 350.0, 430.0
    y0, mo, dd = int(rng.integers(2016, 2025)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
    P["date"] = f"{y0:04d}{mo:02d}{dd:02d}"
    P["date_str"] = f"{dd:02d}.{mo:02d}.{y0:04d}"
    P["time"] = f"{int(rng.integers(7, 19)):02d}{int(rng.integers(0, 60)):02d}{int(rng.integers(0, 60)):02d}"
    tok = int(rng.integers(0, 2 ** 62))
    ent = f"phantom_o:{seed}:{idx}:{tok}"
    uids = {k: generate_uid(prefix=UID_PREFIX, entropy_srcs=[ent, k])
            for k in ("study", "series_AP", "series_LAT", "AP", "LAT")}
    # body habitus (independent of T)
    bmi = P["bmi"]
    sexf = 1.06 if P["sex"] == "M" else 1.0
    A0 = (118 + 3.2 * (bmi - 25)) * sexf * rng.uniform(0.94, 1.06)
    B0 = (92 + 3.6 * (bmi - 25)) * sexf * rng.uniform(0.92, 1.08)
    P["fsub"] = float(np.clip(8 + 2.2 * (bmi - 20) + rng.normal(0, 4) + (6 if P["sex"] == "F" else 0), 4, 75))
    P["ffv"] = float(np.clip(0.12 + 0.018 * (bmi - 22) + rng.normal(0, 0.05), 0.05, 0.6))
    P["musc"] = float(np.clip(rng.normal(1.0, 0.1) * (1.1 if P["sex"] == "M" else 1.0) * (1 - 0.004 * (P["age"] - 60)), 0.7, 1.3))
    P["flat"] = rng.uniform(0.04, 0.12)
    P["gas_col"] = rng.uniform(0.2, 1.6)
    P["gas_sb"] = rng.uniform(0.9, 2.2)
    # spine chain; place so L3 sits at z=0 and spinous tips sit under the posterior fat/muscle
    frames, sacr = build_chain(P, rng)
    c3 = frames[4]["c"].copy()
    post_soft = 38 + 0.6 * P["fsub"] + rng.normal(0, 5)
    shift = np.array([0.0, (-B0 * 0.93 + post_soft + P["b"][4] + 50) - c3[1], -c3[2]])
    for f in frames:
        f["c"] = f["c"] + shift
    sacr["top"] = sacr["top"] + shift
    P["zL3"], P["yL3"] = 0.0, float(frames[4]["c"][1])
    P["z_waist"] = float(frames[3]["c"][2])
    z_crest = float(0.5 * (frames[5]["c"][2] + frames[6]["c"][2]) + rng.normal(0, 8))
    P["hip"] = rng.uniform(10, 30) * (1.3 if P["sex"] == "F" else 0.9)
    P["z_diaph"] = float(frames[1]["c"][2] + rng.normal(0, 15))
    P["B_post"] = B0 * 0.95
    P["A_max"] = A0 + P["hip"] + 10
    # volumes
    cs = np.array([f["c"] for f in frames])
    lo = np.array([-64.0, cs[:, 1].min() - 105, sacr["top"][2] - 120])
    hi = np.array([64.0, cs[:, 1].max() + 48, cs[:, 2].max() + 30])
    G = Grid(lo, hi, 0.7)
    build_bone(P, frames, sacr, rng, G)
    zr = 245.0
    Wd = Grid([-175, cs[:, 1].min() - 110, -zr], [175, cs[:, 1].max() + 90, zr], 1.4)
    build_wide(P, frames, sacr, rng, Wd, z_crest, sexf * rng.uniform(0.95, 1.08))
    Amax = A0 * 1.2 + P["hip"] + 6
    Bmax = B0 * 1.2 + 0.3 * P["hip"] + 6
    S = Grid([-Amax, -Bmax, -zr], [Amax, Bmax, zr], 3.0)
    water, fat = build_soft(P, frames, sacr, rng, S, A0, B0, z_crest)
    vols = (G, Wd, S, water, fat)
    rows = []
    for j, view in enumerate(("AP", "LAT")):
        d, info = render_view(view, P, vols, rng, v)
        fn = f"{P['pid']}_{view}.dcm"
        make_dicom(os.path.join(outdir, fn), d, info, view, P, v, uids, rng, j + 1)
        rows.append([fn, P["label"], f"{P['T']:.2f}", f"{P['bmd']:.3f}", P["pid"], view])
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir")
    ap.add_argument("n", type=int)
    ap.add_argument("seed", type=int)
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args()
    os.makedirs(a.outdir, exist_ok=True)
    jobs = [(a.outdir, a.seed, i) for i in range(a.n)]
    if a.workers > 1:
        import multiprocessing as mp
        with mp.get_context("fork").Pool(a.workers) as pool:
            results = list(pool.imap(make_study, jobs, chunksize=1))
    else:
        results = [make_study(j) for j in jobs]
    with open(os.path.join(a.outdir, "manifest.csv"), "w", newline="") as fh:
        wr = csv.writer(fh, lineterminator="\n")
        wr.writerow(["path", "label", "t_score", "bmd", "patient_id", "view"])
        for rows in results:
            wr.writerows(rows)


if __name__ == "__main__":
    main()
