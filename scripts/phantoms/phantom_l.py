#!/usr/bin/env python3
"""phantom_l -- synthetic lumbar-spine radiograph studies (AP + left lateral DICOM) with known BMD.

Usage:  python phantom_l.py OUTDIR N SEED [--workers K]

Writes <PID>_AP.dcm, <PID>_LAT.dcm (PID = PL<SEED>-<nnnnn>) and manifest.csv
(path,label,t_score,bmd,patient_id,view).  Everything is derived from SEED and the patient
index, so the output is byte-identical for any --workers.

Design (independent, physics/anatomy driven)
--------------------------------------------
Patient / labels.  A class is drawn uniformly (normal / osteopenia / osteoporosis) and the
lumbar DXA T-score inside it (-4.5 .. +2).  BMD (L1-L4, g/cm^2) = sex-specific young-adult
mean + SD*T.  Age follows a weak epidemiological relation (age ~ 63 - 1.8*T + N(0, 9.5),
r about -0.27): lumbar T in real cohorts is only moderately age related because degenerative
change in the elderly raises apparent lumbar density.  Sex (78 % female), height, BMI,
lordosis, scoliosis, gassiness and degeneration are drawn independently of T (given age).

Anatomy (two voxel grids).  A fine "spine grid" (1.0 mm) holds T11-L5 and the sacrum, each
vertebra assembled from signed-distance primitives in its own rotated frame: a waisted
kidney-shaped body with concave endplates, elliptic-capsule pedicles (seen end-on as rings
in AP), laminae, spinous and transverse processes, articular processes; sacrum with S1 body,
alae, tapering S2-S5 segments, dorsal plate and foramina.  Every primitive has an
anti-aliased outer surface and a core offset by its cortical thickness, so thin cortices are
represented by partial volume.  The chain is built from the sacral slope upward with
lordotic disc/body wedges (lordosis 22-72 deg), disc heights, scoliotic lateral curves with
coronal tilt and axial rotation, optional L4 anterolisthesis.  The grid also holds
degenerative osteophytes, endplate sclerosis, vacuum-disc gas and aortic wall calcification.
A coarse "body grid" (3 mm) holds the trunk (superellipse cross-section scaled by BMI/sex),
subcutaneous fat, abdominal wall, paraspinal and psoas muscles, retroperitoneal/perirenal
fat, kidneys, liver, spleen, aorta/IVC, mottled visceral fat, colon/small-bowel gas, ribs
10-12 and the iliac wings (with thickened crests).
Materials are expressed in two basis materials (soft tissue, hydroxyapatite); adipose is
folded in by a least-squares photoelectric/Compton basis fit; bone displaces soft tissue and
vertebral marrow contains an age/T dependent fat fraction.

Projection.  Cone-beam geometry with a point source (SID 100-115 cm, table/bucky gap,
magnification 1.1-1.4).  The grids are summed in thin slabs perpendicular to the beam and each
slab is magnified about the central ray onto the detector, with per-view patient rotation and
craniocaudal tilt (shear) and obliquity (sec theta).  Trabecular line integrals are modulated
in the projection domain by an anisotropic band-pass texture.  A polychromatic tungsten
spectrum (Kramers + K lines, Al/Cu filtration, kVp 70-100, lateral higher) is attenuated with
tabulated energy-dependent mu/rho and absorbed in CsI or BaFBr (K-edges); a 2-D LUT gives
energy-integrated signal.  Then lead L/R marker, collimator shutters with penumbra, heel
effect, focal-spot+detector blur, thickness-dependent scatter (SPR ~ t^1.1, wide kernel)
with or without an anti-scatter grid, AEC (chamber over L3, ~10 % error; CR cassettes ~30 %)
which sets mAs and EI/DI or S-number, quantum noise from the detector NEQ (white noise blurred
by the phosphor light spread, so NPS(0) = 1/NEQ), electronic noise and CR plate structure.  Physics is done at
0.4 mm and upsampled to the vendor's detector pitch (0.139-0.2 mm, 1750-3100 px).

Vendors (invented; both views of a patient come from the same room).  Every chain starts
from the log image, windows it by histogram analysis (low end from a central ROI, high end
from the whole collimated field, direct exposure excluded) and treats the area outside the
collimator separately (scatter glow, or black electronic shutter):
  A Halvard "Lumen DR43"   DX 43x43 cm 0.200 mm 12 bit: 50 mm DRC, 3-band detail gains with a
    damped noise band, S-shaped tone curve.
  B Kestrel "KR-Vista"     DX 35x43 0.139 mm 14 bit: 4-band multi-frequency processing with
    companded gains + DRC, output cropped to the collimated field.
  C Sorensen-Ito CR        CR 35x43 0.175 mm 10 bit MONOCHROME1: fixed latitude about the
    histogram median, film-like gradation, large-kernel density-weighted frequency
    enhancement, laser line jitter, lateral displayed facing right.
  D Atlas "AVX Flex"       DX 35x43 0.160 mm 16 bit: strong DRC, strong small-kernel edge
    enhancement (halos), gamma tone curve, black electronic shutters.
  E Meridian "MP-CR 35"    CR 35x43 0.200 mm 12 bit, MONOCHROME1 (30 %) or 2: DRC, blended
    histogram equalisation, unsharp masking; 8:1 grid (none for thin APs), noisier.
All carry burned-in text (site, ID, date, kV/mAs, EI or S number), a lead R/L marker in the
beam, and vendor DICOM headers (DX For Presentation or CR IOD; KVP, mAs, SID, grid, EI/DI...).

How bone density shows.  T drives (non-linearly) trabecular vBMD (15+155*exp(0.26 T)
mg/cm^3, about 170 at T=0, 95 at T=-2.5, x lognormal 7 % per patient, per-level factors),
cortical shell thickness (0.42+0.06 T mm) and density, posterior-element core density and
cortex, and vertebral marrow fat (more fat = less attenuation); low T gives coarser, more vertically striated, higher
contrast trabecular texture ("empty box" bodies with relatively pencilled-in endplates) and
raises the probability of wedge / biconcave / crush fractures (grade 20-60 %, fractured
bodies condensed).  Confounders independent of T: degenerative sclerosis, osteophytes,
facet hypertrophy, disc narrowing and vacuum discs with age, aortic calcification, body
habitus/scatter, bowel gas, kVp/AEC exposure, vendor processing, positioning.
"""
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import csv
import datetime
import hashlib
import math
from multiprocessing import Pool

import numpy as np
from scipy import ndimage
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

F32 = np.float32
RHO_SOFT, RHO_FAT = 1.04, 0.93          # g/cm^3
BONE_SOFT_DISPLACE = 0.30               # g soft tissue displaced per g hydroxyapatite
LEVELS = ["T11", "T12", "L1", "L2", "L3", "L4", "L5"]

# ----------------------------------------------------------------------------------------
# Attenuation data (mass attenuation coefficients, cm^2/g, approx. NIST/ICRU values)
# ----------------------------------------------------------------------------------------
_E = np.array([10, 15, 20, 30, 40, 50, 60, 80, 100, 150.0])
_MU = {
    "soft": [5.356, 1.693, 0.8205, 0.3783, 0.2685, 0.2262, 0.2048, 0.1823, 0.1693, 0.1492],
    "fat": [3.268, 1.079, 0.5677, 0.3063, 0.2396, 0.2123, 0.1974, 0.1794, 0.1680, 0.1488],
    "ha": [46.7, 14.8, 6.8, 2.2, 1.02, 0.60, 0.415, 0.262, 0.200, 0.148],
    "al": [26.23, 7.955, 3.441, 1.128, 0.5685, 0.3681, 0.2778, 0.2018, 0.1704, 0.1378],
    "cu": [215.9, 74.05, 33.79, 10.92, 4.862, 2.613, 1.593, 0.7630, 0.4584, 0.2217],
}
_MU_EDGE = {  # detector phosphors with K-edges: (energies, mu/rho)
    "csi": ([15, 20, 30, 33.1, 33.2, 35.9, 36.0, 40, 50, 60, 80, 100, 150],
            [60, 24, 8.2, 6.4, 21.0, 17.0, 29.3, 22.2, 12.3, 7.6, 3.55, 1.98, 0.72]),
    "bafbr": ([15, 20, 30, 37.3, 37.5, 40, 50, 60, 80, 100, 150],
              [55, 22, 8.9, 5.0, 20.5, 17.5, 10.0, 6.2, 3.0, 1.7, 0.65]),
}


def mu(name, E):
    """Mass attenuation coefficient (cm^2/g) by log-log interpolation."""
    if name in _MU_EDGE:
        e, m = _MU_EDGE[name]
    else:
        e, m = _E, _MU[name]
    return np.exp(np.interp(np.log(E), np.log(e), np.log(m)))


def _fat_basis():
    """Adipose ~ a*soft + b*HA (photoelectric/Compton two-basis fit, relative error)."""
    E = np.linspace(20, 120, 51)
    A = np.stack([mu("soft", E), mu("ha", E)], 1) / mu("fat", E)[:, None]
    coef, *_ = np.linalg.lstsq(A, np.ones_like(E), rcond=None)
    return float(coef[0]), float(coef[1])


FAT_A, FAT_B = _fat_basis()


def spectrum(kvp, al_mm, cu_mm):
    """Tungsten spectrum: Kramers bremsstrahlung + K lines, filtered.  Returns (E, photons)."""
    E = np.arange(15.5, kvp, 1.0)
    n = np.clip(kvp - E, 0, None) / E
    if kvp > 69.6:
        k = 0.10 * ((kvp - 69.5) / 30.0) ** 1.5 * n.sum()
        for e, w in ((58.0, 0.30), (59.3, 0.50), (67.2, 0.15), (69.1, 0.05)):
            i = int(round(e - 15.5))
            if i < len(E):
                n[i] += k * w
    n = n * np.exp(-mu("al", E) * 2.699 * al_mm / 10 - mu("cu", E) * 8.96 * cu_mm / 10)
    return E, n / n.sum()


class Beam:
    """Polychromatic LUT: ln(signal/air) as a function of (soft, HA) line integrals."""

    AS = np.linspace(0.0, 80.0, 161)
    AH = np.linspace(-1.0, 11.0, 241)

    def __init__(self, kvp, al_mm, cu_mm, det_mat, det_mass):
        E, n = spectrum(kvp, al_mm, cu_mm)
        eta = 1.0 - np.exp(-mu(det_mat, E) * det_mass)
        wE, wQ = n * eta * E, n * eta
        att = np.exp(-(self.AS[:, None, None] * mu("soft", E)[None, None, :]
                       + self.AH[None, :, None] * mu("ha", E)[None, None, :]))
        self.lnE = np.log(att @ (wE / wE.sum())).astype(F32)
        self.lnQ = np.log(att @ (wQ / wQ.sum())).astype(F32)

    def lookup(self, As, Ah):
        fs = np.clip((As - self.AS[0]) / (self.AS[1] - self.AS[0]), 0, len(self.AS) - 1.001)
        fh = np.clip((Ah - self.AH[0]) / (self.AH[1] - self.AH[0]), 0, len(self.AH) - 1.001)
        i, j = fs.astype(np.int32), fh.astype(np.int32)
        a, b = (fs - i).astype(F32), (fh - j).astype(F32)
        out = []
        for T in (self.lnE, self.lnQ):
            v = (T[i, j] * (1 - a) * (1 - b) + T[i + 1, j] * a * (1 - b)
                 + T[i, j + 1] * (1 - a) * b + T[i + 1, j + 1] * a * b)
            out.append(v)
        return out


# ----------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------
def smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def rot_y(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rot_z(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def sag_frame(phi):
    """Columns (e_u, e_w, e_s) of a frame tilted by phi (rad) in the sagittal plane.
    World: x = patient left, y = posterior, z = superior.  phi > 0 tilts e_s anteriorly."""
    s, c = math.sin(phi), math.cos(phi)
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


def resize(img, shape, resample=Image.BILINEAR):
    """Resize a float array to shape (rows, cols) with PIL."""
    return np.asarray(Image.fromarray(np.ascontiguousarray(img, dtype=F32)).resize(
        (int(shape[1]), int(shape[0])), resample))


def gblur(img, sigma):
    """Gaussian blur (pixels); large kernels via a down-sampled pyramid level."""
    if sigma < 3.0:
        return ndimage.gaussian_filter(img, sigma, mode="nearest", truncate=3.0)
    f = int(max(2, sigma // 2))
    small = resize(img, (max(2, img.shape[0] // f), max(2, img.shape[1] // f)), Image.BOX)
    small = ndimage.gaussian_filter(small, sigma / f, mode="nearest", truncate=3.0)
    return resize(small, img.shape, Image.BILINEAR)


def masked_blur(img, mask, sigma):
    """Normalised (shutter-aware) low-pass: blur(img*m)/blur(m)."""
    num = gblur(img * mask, sigma)
    den = gblur(mask.astype(F32), sigma)
    return np.where(den > 1e-3, num / np.maximum(den, 1e-3), img).astype(F32)


def _font(size):
    try:
        return ImageFont.load_default(size=size)      # scalable (needs FreeType)
    except Exception:
        return ImageFont.load_default()


def uid_from(*parts):
    h = hashlib.sha256("|".join(str(p) for p in ("phantom_l",) + parts).encode()).digest()
    return "2.25." + str(int.from_bytes(h[:15], "big") + 1)


# ----------------------------------------------------------------------------------------
# Voxel grids and signed-distance primitives
# ----------------------------------------------------------------------------------------
class Grid:
    def __init__(self, lo, hi, h):
        self.h = float(h)
        self.lo = np.asarray(lo, float)
        n = np.maximum(1, np.ceil((np.asarray(hi, float) - self.lo) / h)).astype(int)
        self.nx, self.ny, self.nz = int(n[0]), int(n[1]), int(n[2])
        self.shape = (self.nz, self.ny, self.nx)

    def centers(self, k):
        n = (self.nx, self.ny, self.nz)[k]
        return self.lo[k] + (np.arange(n) + 0.5) * self.h

    def window(self, lo, hi):
        """Slices (z, y, x) and broadcastable coordinates covering a world AABB."""
        i0 = np.floor((np.asarray(lo) - self.lo) / self.h).astype(int)
        i1 = np.ceil((np.asarray(hi) - self.lo) / self.h).astype(int) + 1
        n = (self.nx, self.ny, self.nz)
        i0 = [max(0, int(v)) for v in i0]
        i1 = [min(n[k], int(i1[k])) for k in range(3)]
        if any(i1[k] <= i0[k] for k in range(3)):
            return None
        sl = (slice(i0[2], i1[2]), slice(i0[1], i1[1]), slice(i0[0], i1[0]))
        h, L = self.h, self.lo
        X = (L[0] + (np.arange(i0[0], i1[0]) + 0.5) * h).astype(F32)[None, None, :]
        Y = (L[1] + (np.arange(i0[1], i1[1]) + 0.5) * h).astype(F32)[None, :, None]
        Z = (L[2] + (np.arange(i0[2], i1[2]) + 0.5) * h).astype(F32)[:, None, None]
        return sl, X, Y, Z


def _aabb(c, R, lo, hi):
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                        for z in (lo[2], hi[2])])
    w = c[None, :] + corners @ R.T
    return w.min(0), w.max(0)


def _to_local(X, Y, Z, c, R):
    dx, dy, dz = X - F32(c[0]), Y - F32(c[1]), Z - F32(c[2])
    R = R.astype(F32)
    u = R[0, 0] * dx + R[1, 0] * dy + R[2, 0] * dz
    w = R[0, 1] * dx + R[1, 1] * dy + R[2, 1] * dz
    s = R[0, 2] * dx + R[1, 2] * dy + R[2, 2] * dz
    return u, w, s


def sd_ecap(u, w, s, p0, p1, r1, r2, ref=(0.0, 0.0, 1.0)):
    """Elliptic capsule from p0 to p1; cross-section radii r1 (e1) and r2 (e2 ~ ref)."""
    p0, p1, ref = np.asarray(p0, float), np.asarray(p1, float), np.asarray(ref, float)
    d = p1 - p0
    L = float(np.linalg.norm(d))
    t = d / L if L > 1e-6 else np.array([0.0, 1.0, 0.0])
    e2 = ref - ref.dot(t) * t
    if np.linalg.norm(e2) < 1e-6:
        e2 = np.array([0.0, 1.0, 0.0]) - t[1] * t
    e2 /= np.linalg.norm(e2)
    e1 = np.cross(t, e2)
    qu, qw, qs = u - F32(p0[0]), w - F32(p0[1]), s - F32(p0[2])
    tt = qu * F32(t[0]) + qw * F32(t[1]) + qs * F32(t[2])
    dt = tt - np.clip(tt, 0, L)
    a1 = qu * F32(e1[0]) + qw * F32(e1[1]) + qs * F32(e1[2])
    a2 = qu * F32(e2[0]) + qw * F32(e2[1]) + qs * F32(e2[2])
    rc = min(r1, r2)
    k0 = np.sqrt((a1 / r1) ** 2 + (a2 / r2) ** 2 + (dt / rc) ** 2)
    k1 = np.sqrt((a1 / r1 ** 2) ** 2 + (a2 / r2 ** 2) ** 2 + (dt / rc ** 2) ** 2)
    return k0 * (k0 - 1) / np.maximum(k1, 1e-6)


def sd_ell(u, w, s, c, r):
    qu, qw, qs = (u - F32(c[0])) / r[0], (w - F32(c[1])) / r[1], (s - F32(c[2])) / r[2]
    k0 = np.sqrt(qu * qu + qw * qw + qs * qs)
    k1 = np.sqrt((qu / r[0]) ** 2 + (qw / r[1]) ** 2 + (qs / r[2]) ** 2)
    return k0 * (k0 - 1) / np.maximum(k1, 1e-6)


def body_surfaces(u, w, p):
    """Top / bottom endplate heights of a vertebral body (local frame)."""
    a, b, H = p["a"], p["b"], p["H"]
    rho2 = np.clip((u / a) ** 2 + (w / b) ** 2, 0, 1)
    top = H / 2 + p["kt"] * w - p["ct"] * (1 - rho2)
    bot = -H / 2 + p["kb"] * w + p["cb"] * (1 - rho2)
    f = p.get("fx", 0.0)
    if f > 0:
        typ = p["fxtype"]
        if typ == "wedge":
            lam = f * H * np.clip(0.5 - 0.5 * w / b, 0, 1) ** 1.3
            top, bot = top - 0.65 * lam, bot + 0.35 * lam
        elif typ == "biconcave":
            lam = f * H * (1 - rho2) ** 1.0
            top, bot = top - 0.5 * lam, bot + 0.5 * lam
        else:
            lam = f * H * (0.85 + 0.15 * np.clip(0.5 - 0.5 * w / b, 0, 1))
            top, bot = top - 0.6 * lam, bot + 0.4 * lam
    return top, bot


def body_endpoints(p):
    """Rim-centre heights and slopes (ds/dw) of top and bottom endplates for the chain."""
    b = p["b"]
    uu = np.zeros(3)
    ww = np.array([-b, 0.0, b])
    top, bot = body_surfaces(uu, ww, dict(p, ct=0.0, cb=0.0))
    return (0.5 * (top[0] + top[2]), (top[2] - top[0]) / (2 * b),
            0.5 * (bot[0] + bot[2]), (bot[2] - bot[0]) / (2 * b))


class Part:
    """A primitive placed in a world frame (centre c, rotation R: local->world)."""

    def __init__(self, kind, c, R, **kw):
        self.kind, self.c, self.R, self.p = kind, np.asarray(c, float), np.asarray(R, float), kw

    def local_box(self):
        p = self.p
        if self.kind == "body":
            e = p["a"] + 6, p["b"] + 6, p["H"] / 2 + abs(p["kt"]) * p["b"] + 6
            return (-e[0], -e[1], -e[2]), e
        if self.kind in ("ecap", "carve"):
            r = max(p["r1"], p["r2"]) + 3
            lo = np.minimum(p["p0"], p["p1"]) - r
            hi = np.maximum(p["p0"], p["p1"]) + r
            return lo, hi
        r = np.asarray(p["r"]) + 3
        return np.asarray(p["cl"]) - r, np.asarray(p["cl"]) + r

    def aabb(self):
        lo, hi = self.local_box()
        return _aabb(self.c, self.R, lo, hi)


class BoneVols:
    """Accumulators: outer/core occupancy (max-union), core HA, trabecular body HA, extra HA, gas."""

    def __init__(self, grid, full=True):
        self.g = grid
        z = lambda: np.zeros(grid.shape, F32)
        self.outer, self.core, self.coreHA = z(), z(), z()
        self.coreT = z() if full else None
        self.extra = z() if full else None
        self.gas = z() if full else None

    def splat(self, part):
        g = self.g
        lo, hi = part.aabb()
        win = g.window(lo, hi)
        if win is None:
            return
        sl, X, Y, Z = win
        u, w, s = _to_local(X, Y, Z, part.c, part.R)
        p, h = part.p, g.h
        k = part.kind
        if k == "body":
            top, bot = body_surfaces(u, w, p)
            a, b, H = p["a"], p["b"], p["H"]
            zn = np.clip(2 * s / H, -1, 1)
            kk = 1 - p["waist"] * (1 - zn * zn)
            ak, bk = a * kk, b * kk
            r0 = np.sqrt((u / ak) ** 2 + (w / bk) ** 2)
            r1 = np.sqrt((u / ak ** 2) ** 2 + (w / bk ** 2) ** 2)
            sd_r = r0 * (r0 - 1) / np.maximum(r1, 1e-6)
            sd_r = np.maximum(sd_r, w - (bk - p["pc"] * np.clip(1 - (u / ak) ** 2, 0, 1)))
            sd_v = np.maximum(s - top, bot - s)
            O = np.clip(0.5 - np.maximum(sd_r, sd_v) / h, 0, 1)
            C = np.clip(0.5 - np.maximum(sd_r + p["t_side"], sd_v + p["t_end"]) / h, 0, 1)
            rho = p["rho"]
            self._acc(sl, O, C, rho, True)
            ex = p.get("scl_t", 0) * np.exp(-np.clip(top - s, 0, None) / 2.5) \
                + p.get("scl_b", 0) * np.exp(-np.clip(s - bot, 0, None) / 2.5)
            if p.get("fxband", 0) > 0:
                ex = ex + p["fxband"] * np.exp(-np.clip(top - s, 0, None) / 3.5)
            if np.ndim(ex) and self.extra is not None:
                self.extra[sl] += (C * ex).astype(F32)
            return
        if k in ("ecap", "carve"):
            sd = sd_ecap(u, w, s, p["p0"], p["p1"], p["r1"], p["r2"], p.get("ref", (0, 0, 1)))
        else:
            sd = sd_ell(u, w, s, p["cl"], p["r"])
        O = np.clip(0.5 - sd / h, 0, 1)
        if k == "carve":
            keep = 1 - O
            for v in (self.outer, self.core, self.coreHA, self.coreT):
                if v is not None:
                    v[sl] *= keep
            return
        if k == "calc":
            self.extra[sl] += O * F32(p["rho"])
            return
        if k == "gas":
            np.maximum(self.gas[sl], O * F32(p["fill"]), out=self.gas[sl])
            return
        C = np.clip(0.5 - (sd + p["t"]) / h, 0, 1)
        self._acc(sl, O, C, p["rho"], p.get("trab", False))

    def _acc(self, sl, O, C, rho, trab):
        np.maximum(self.outer[sl], O, out=self.outer[sl])
        np.maximum(self.core[sl], C, out=self.core[sl])
        CH = C * F32(rho)
        np.maximum(self.coreHA[sl], CH, out=self.coreHA[sl])
        if trab and self.coreT is not None:
            np.maximum(self.coreT[sl], CH, out=self.coreT[sl])


# ----------------------------------------------------------------------------------------
# Patient sampling
# ----------------------------------------------------------------------------------------
# level: W, D, H, IPD, pedicle w, pedicle h, pedicle len, TP len, spinous len, spinous ht,
#        spinous drop, disc below (mm), body wedge (deg, + = anterior taller)
VDIM = {
    "T11": (35, 28, 21.5, 17, 7.0, 13, 9, 9, 30, 13, 14, 6.0, -3.0),
    "T12": (37, 29.5, 23, 18, 7.5, 14, 9, 8, 28, 17, 9, 7.0, -2.5),
    "L1": (40, 31, 24.5, 21, 8.0, 15, 9, 15, 28, 22, 4, 9.0, -1.0),
    "L2": (42, 32, 25.5, 22, 8.5, 15, 9, 21, 30, 24, 3, 10.0, 0.0),
    "L3": (45, 33, 26.5, 23, 10.0, 15, 9, 27, 30, 24, 3, 11.0, 1.0),
    "L4": (47, 34, 26.5, 24, 12.0, 14, 8, 23, 28, 23, 4, 11.0, 2.0),
    "L5": (50, 34, 25.5, 26, 14.0, 14, 7, 17, 22, 20, 6, 11.5, 4.0),
}
LORD_SHARE = {"L5": 0.36, "L4": 0.27, "L3": 0.18, "L2": 0.11, "L1": 0.06, "T12": 0.02}
DEG_W = {"L5": 0.9, "L4": 1.0, "L3": 0.7, "L2": 0.5, "L1": 0.35, "T12": 0.25, "T11": 0.2}
FX_LEVEL_P = {"T11": 0.10, "T12": 0.22, "L1": 0.25, "L2": 0.15, "L3": 0.12, "L4": 0.10,
              "L5": 0.06}
LEVEL_BMD = {"T11": 0.94, "T12": 0.95, "L1": 0.96, "L2": 0.99, "L3": 1.0, "L4": 1.03,
             "L5": 1.0}


def sample_patient(rng, seed, idx):
    P = {"pid": f"PL{seed}-{idx:05d}", "idx": idx}
    cls = int(rng.integers(3))
    if cls == 0:
        T = -1.0 + 3.0 * rng.beta(1.6, 2.6)
    elif cls == 1:
        T = rng.uniform(-2.49, -1.01)
    else:
        T = -2.5 - 2.0 * rng.beta(1.3, 2.0)
    T = round(float(T), 2)
    P["T"] = T
    P["label"] = 0 if T >= -1.0 else (2 if T <= -2.5 else 1)
    male = rng.random() < 0.22
    P["sex"] = "M" if male else "F"
    age = (66 - 1.5 * T + rng.normal(0, 10)) if male else (63 - 1.8 * T + rng.normal(0, 9.5))
    P["age"] = int(np.clip(round(age), 35, 93))
    ref = (1.068, 0.118) if male else (1.047, 0.110)
    P["bmd"] = round(ref[0] + ref[1] * T, 3)
    P["height"] = rng.normal(175, 7) if male else rng.normal(161, 6.5)
    P["bmi"] = float(np.clip(rng.lognormal(math.log(27.0), 0.17), 17.5, 46))
    P["sv"] = (P["height"] / 165.0) * (1.07 if male else 1.0) * rng.lognormal(0, 0.03)
    # bone (T -> mineral), own non-linear relation
    P["vbmd"] = (15 + 155 * math.exp(0.26 * T)) / 1000.0 * rng.lognormal(0, 0.07)
    P["t_shell"] = float(np.clip(0.42 + 0.06 * T, 0.22, 0.6) * rng.uniform(0.9, 1.1))
    P["rho_cort"] = float(np.clip(1.05 + 0.025 * T, 0.9, 1.15))
    P["rho_pe"] = float(np.clip(0.27 + 0.035 * T, 0.12, 0.36) * rng.lognormal(0, 0.05))
    P["t_pe"] = float(np.clip(0.9 + 0.1 * T, 0.45, 1.2))
    P["marrow_ff"] = float(np.clip(0.25 + 0.006 * (P["age"] - 30) - 0.05 * T
                                   + rng.normal(0, 0.06), 0.1, 0.85))
    tl = float(np.clip(-T + 0.5, 0, 5))
    P["tex_amp"] = 0.10 + 0.045 * tl + rng.uniform(-0.02, 0.02)
    P["tex_su"] = 0.45 + 0.03 * tl          # mm, across trabeculae
    P["tex_aniso"] = 1.3 + 0.45 * tl        # vertical elongation
    # fractures
    lam = 0.03 * math.exp(-0.9 * (T + 0.5)) * (1 + 0.02 * (P["age"] - 65))
    nfx = min(3, int(rng.poisson(max(lam, 0.0))))
    fx = {}
    lv = list(FX_LEVEL_P)
    pr = np.array([FX_LEVEL_P[k] for k in lv])
    for _ in range(nfx):
        L = lv[int(rng.choice(len(lv), p=pr / pr.sum()))]
        g = rng.random()
        f = rng.uniform(0.2, 0.25) if g < 0.5 else (rng.uniform(0.25, 0.4) if g < 0.85
                                                     else rng.uniform(0.4, 0.6))
        t = rng.random()
        fx[L] = (f, "wedge" if t < 0.55 else ("biconcave" if t < 0.85 else "crush"))
    if not fx and rng.random() < 0.03:   # non-osteoporotic developmental wedging
        fx[lv[int(rng.integers(0, 3))]] = (rng.uniform(0.08, 0.18), "wedge")
    P["fx"] = fx
    # degeneration (age driven, independent of T given age)
    deg = sigmoid((P["age"] - 60) / 7.0) * rng.uniform(0.2, 1.3) + rng.normal(0, 0.08)
    P["deg"] = float(np.clip(deg, 0, 1.2))
    P["slip"] = float(rng.uniform(3, 10)) if rng.random() < 0.12 * P["deg"] * (
        1.5 if not male else 1.0) else 0.0
    P["calc"] = float(rng.uniform(0.1, 1.0) * np.clip((P["age"] - 40) / 40, 0, 1.2)) \
        if rng.random() < 0.9 * sigmoid((P["age"] - 62) / 8) else 0.0
    # posture
    P["LL"] = float(np.clip(rng.normal(50 - 0.15 * (P["age"] - 50), 9), 22, 72))
    P["SS"] = float(np.clip(0.62 * P["LL"] + 9 + rng.normal(0, 4), 20, 55))
    pm = 0.06 + 0.08 * sigmoid((P["age"] - 65) / 6)
    r = rng.random()
    A = 0.0 if r < 0.62 else (rng.uniform(3, 10) if r < 1 - pm else rng.uniform(10, 25))
    P["scol"] = (float(A * rng.choice([-1, 1])), int(rng.integers(1, 3)),
                 float(rng.uniform(0, 2 * math.pi)))
    # soft tissue
    P["gas"] = float(rng.beta(1.5, 2.5))
    P["fat_vis"] = float(np.clip(0.12 + 0.025 * (P["bmi"] - 22) + (0.08 if male else 0)
                                 + 0.002 * (P["age"] - 50), 0.05, 0.7))
    P["t_sc"] = float(max(5.0, 4 + 1.6 * (P["bmi"] - 18)) * (0.8 if male else 1.25))
    P["f_im"] = float(np.clip(0.05 + 0.004 * (P["age"] - 40) + 0.006 * (P["bmi"] - 22), 0.03, 0.35))
    return P


# ----------------------------------------------------------------------------------------
# Spine chain (sagittal build from the sacrum up, then scoliosis)
# ----------------------------------------------------------------------------------------
def build_chain(P, rng):
    sv, deg = P["sv"], P["deg"]
    LL, SS = P["LL"], P["SS"]
    body_w = {k: VDIM[k][12] for k in LEVELS}
    disc_w = {}
    rest = LL - sum(body_w[k] for k in ["L1", "L2", "L3", "L4", "L5"])
    for k in LEVELS:
        disc_w[k] = rest * LORD_SHARE.get(k, 0.0) if k != "T11" else -2.0
    verts = []
    Pc = np.array([0.0, 0.0, 0.0])          # S1 superior endplate centre
    phi = math.radians(SS)
    for k in reversed(LEVELS):
        W, D, H, IPD, pw, ph, Lp, tp, spl, sph, spd, disc, wedge = VDIM[k]
        jit = rng.lognormal(0, 0.04)
        dw = DEG_W.get(k, 0.2)
        d = disc * sv * rng.lognormal(0, 0.08) * max(0.25, 1 - 0.55 * deg * dw * rng.uniform(0.5, 1.2))
        dwedge = math.radians(disc_w[k] * rng.lognormal(0, 0.15))
        phm = phi - dwedge / 2
        Pinf = Pc + d * np.array([0, -math.sin(phm), math.cos(phm)])
        if k == "L4" and P["slip"] > 0:
            Pinf = Pinf - P["slip"] * np.array([0, math.cos(phm), math.sin(phm)])
        phi_inf = phi - dwedge
        bp = dict(a=W / 2 * sv * jit, b=D / 2 * sv * jit, H=H * sv * rng.lognormal(0, 0.04),
                  waist=rng.uniform(0.04, 0.09), ct=rng.uniform(0.8, 2.0), cb=rng.uniform(0.8, 2.0),
                  pc=rng.uniform(1.0, 3.0))
        tb = math.tan(math.radians(wedge) / 2)
        bp["kt"], bp["kb"] = -tb, tb
        if k in P["fx"]:
            bp["fx"], bp["fxtype"] = P["fx"][k]
        top0, kt, bot0, kb = body_endpoints(bp)
        phb = phi_inf - math.atan(kb)
        R0 = sag_frame(phb)
        c = Pinf - bot0 * R0[:, 2]
        Psup = c + top0 * R0[:, 2]
        phi = phb + math.atan(kt)
        verts.append(dict(name=k, c=c, phi=phb, bp=bp, dims=VDIM[k], disc_below=d,
                          Pinf=Pinf, Psup=Psup, phi_sup=phi))
        Pc = Psup
    verts = verts[::-1]                     # T11 .. L5
    # sacrum frame
    hS1 = 28 * sv
    phS = math.radians(SS)
    RS = sag_frame(phS)
    cS1 = np.array([0.0, 0, 0]) - hS1 / 2 * RS[:, 2]
    sac = [dict(name="S1", c=cS1, phi=phS, h=hS1, a=26 * sv, b=18 * sv)]
    Pb = cS1 - hS1 / 2 * RS[:, 2]
    ph = phS
    for hk, ak, bk in ((22, 22, 13), (18, 17, 11), (14, 12, 9), (10, 8, 7)):
        ph -= math.radians(10)
        dvec = -sag_frame(ph)[:, 2]
        cc = Pb + hk * sv / 2 * dvec
        sac.append(dict(name="S", c=cc, phi=ph, h=hk * sv, a=ak * sv, b=bk * sv))
        Pb = Pb + hk * sv * dvec
    # recentre on L3
    c3 = next(v for v in verts if v["name"] == "L3")["c"].copy()
    c3[0] = 0.0
    for v in verts + sac:
        v["c"] = v["c"] - c3
        for key in ("Pinf", "Psup"):
            if key in v:
                v[key] = v[key] - c3
    # scoliosis: lateral offset, coronal tilt, axial rotation
    A, nw, phase = P["scol"]
    zs = np.array([v["c"][2] for v in verts])
    zlo, zhi = zs.min() - 20, zs.max() + 10
    for v in verts:
        t = (v["c"][2] - zlo) / (zhi - zlo)
        x = A * math.sin(math.pi * nw * t)          # C (nw=1) or S (nw=2) curve
        dx = A * math.pi * nw / (zhi - zlo) * math.cos(math.pi * nw * t)
        v["c"][0] += x
        gam = math.atan(dx) * 0.8
        rot = math.radians(0.45 * x) + rng.normal(0, math.radians(1.0))
        v["R"] = sag_frame(v["phi"]) @ rot_y(gam) @ rot_z(rot)
    for s in sac:
        s["R"] = sag_frame(s["phi"])
    return verts, sac


def spine_parts(P, verts, sac, rng):
    """All primitives of the spine grid."""
    parts = []
    deg, sv = P["deg"], P["sv"]
    ts, tpe, rpe = P["t_shell"], P["t_pe"], P["rho_pe"]
    for i, v in enumerate(verts):
        k = v["name"]
        W, D, H, IPD, pw, ph, Lp, tp, spl, sph, spd, disc, wedge = v["dims"]
        bp = v["bp"]
        a, b, Hs = bp["a"], bp["b"], bp["H"]
        c, R = v["c"], v["R"]
        rho = P["vbmd"] * LEVEL_BMD[k] * rng.lognormal(0, 0.04)
        body = dict(bp, t_side=ts, t_end=ts * 1.4, rho=rho)
        dw = DEG_W.get(k, 0.2)
        dwa = DEG_W.get(verts[i - 1]["name"], 0.2) if i > 0 else 0.2   # disc above
        scl = 0.22 * deg * rng.uniform(0.4, 1.4)
        body["scl_b"] = scl * dw
        body["scl_t"] = scl * dwa
        if "fx" in bp:
            f = bp["fx"]
            body["rho"] = rho * (1 + 0.5 * f)
            body["fxband"] = 0.15 * f if bp["fxtype"] != "biconcave" else 0.06 * f
        parts.append(Part("body", c, R, **body))
        s_p = 0.16 * Hs
        for sg in (-1, 1):
            up = sg * (IPD / 2 + pw / 2) * sv
            J = np.array([up, b + Lp * sv, s_p - 1])
            parts.append(Part("ecap", c, R, p0=(up, b * 0.5, s_p), p1=J, r1=pw / 2 * sv,
                              r2=ph / 2 * sv, t=tpe * 0.9, rho=rpe))
            M = np.array([0.0, b + (Lp + 13) * sv, s_p - 5])
            parts.append(Part("ecap", c, R, p0=J, p1=M, r1=3.0 * sv, r2=0.40 * Hs, t=tpe, rho=rpe))
            tpl = tp * sv * rng.lognormal(0, 0.08)
            rtp = (4.0, 5.5) if k == "L5" else (2.6, 4.3)
            parts.append(Part("ecap", c, R, p0=J + np.array([sg * 2, -2, 0]),
                              p1=J + np.array([sg * (tpl + 4), 1 + 0.15 * tpl, 1]),
                              r1=rtp[0] * sv, r2=rtp[1] * sv, t=tpe, rho=rpe))
            fct = 1 + 0.4 * deg * dw
            parts.append(Part("ecap", c, R, p0=J + np.array([sg * 1.5, 2, 2]),
                              p1=J + np.array([sg * 2.5, 5, Hs * 0.5 + 3]),
                              r1=4.5 * sv * fct, r2=5.5 * sv * fct, ref=(0, 1, 0), t=tpe,
                              rho=rpe * (1 + 0.4 * deg * dw)))
            parts.append(Part("ecap", c, R, p0=np.array([up - sg * 3, b + (Lp + 7) * sv, s_p - 6]),
                              p1=np.array([up - sg * 3.5, b + (Lp + 9) * sv, -Hs / 2 - 5]),
                              r1=4.0 * sv * fct, r2=5.0 * sv * fct, ref=(0, 1, 0), t=tpe,
                              rho=rpe * (1 + 0.4 * deg * dwa)))
        M = np.array([0.0, b + (Lp + 12) * sv, s_p - 5])
        parts.append(Part("ecap", c, R, p0=M, p1=M + np.array([0, spl * sv, -spd * sv]),
                          r1=3.4 * sv, r2=sph / 2 * sv, t=tpe, rho=rpe))
        # osteophytes at endplate rims (anterior / lateral half)
        for end in (1, -1):
            w_ = DEG_W.get(k, 0.2) if end < 0 else dwa
            size = deg * w_ * 6.5
            if size < 1.5:
                continue
            for _ in range(int(rng.integers(1, 5))):
                th = rng.uniform(-math.pi, 0)
                sz = size * rng.uniform(0.5, 1.3)
                cl = (a * math.cos(th) * (1 + 0.3 * sz / a), b * math.sin(th) * (1 + 0.3 * sz / b),
                      end * (Hs / 2 + 0.25 * sz - 1))
                parts.append(Part("ell", c, R, cl=cl, r=(sz, sz * 0.8, sz * 0.55), t=0.8, rho=0.35))
        # vacuum disc (gas) in the disc below
        if rng.random() < 0.25 * deg * DEG_W.get(k, 0.2):
            Rd = sag_frame(v["phi"])
            cd = c - (Hs / 2 + v["disc_below"] / 2) * Rd[:, 2]
            parts.append(Part("gas", cd, Rd, cl=(rng.uniform(-5, 5), -b * 0.2, 0),
                              r=(a * 0.5, b * 0.35, max(1.0, v["disc_below"] * 0.3)), fill=1.0))
    # sacrum: S1 body, alae, fused tapering lateral masses along the sacral curve, dorsal
    # plate and anterior foramina
    S1 = sac[0]
    cS, RS, hS, aS, bS = S1["c"], S1["R"], S1["h"], S1["a"], S1["b"]
    rs = P["vbmd"] * 0.95
    parts.append(Part("body", cS, RS, a=aS, b=bS, H=hS, waist=0.03, ct=1.2, cb=0.0, pc=2.0,
                      kt=0.0, kb=0.0, t_side=ts, t_end=ts * 1.4, rho=rs))
    for sg in (-1, 1):
        parts.append(Part("ell", cS, RS, cl=(sg * (aS * 0.55 + 22 * sv), 5, -5),
                          r=(29 * sv, 17 * sv, 17 * sv), t=ts * 2, rho=rs, trab=True))
        parts.append(Part("ecap", cS, RS, p0=(sg * 18 * sv, bS + 8, hS / 2 - 6),
                          p1=(sg * 20 * sv, bS + 10, hS / 2 + 6), r1=5 * sv, r2=6 * sv,
                          ref=(0, 1, 0), t=tpe, rho=rpe))
    cs = np.array([s_["c"] for s_ in sac])
    cum = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(cs, axis=0), axis=1))])
    L = cum[-1]
    ts_ = np.linspace(0.08, 1.0, 9)
    step = L * (ts_[1] - ts_[0])
    for t in ts_:
        cc = np.array([np.interp(t * L, cum, cs[:, k]) for k in range(3)])
        ph_ = float(np.interp(t * L, cum, [s_["phi"] for s_ in sac]))
        Rc = sag_frame(ph_)
        hw = (48 - 38 * t ** 1.2) * sv
        hb = (17 - 10 * t) * sv
        parts.append(Part("ell", cc, Rc, cl=(0, 0, 0), r=(hw, hb, step * 0.95), t=ts * 1.6,
                          rho=rs, trab=True))
        parts.append(Part("ell", cc, Rc, cl=(0, hb + 6, 0), r=(hw * 0.8, 5.0, step * 0.95),
                          t=tpe, rho=rpe))
    for t, rf in ((0.16, 5.0), (0.36, 4.5), (0.55, 3.8), (0.72, 3.0)):
        cc = np.array([np.interp(t * L, cum, cs[:, k]) for k in range(3)])
        Rc = sag_frame(float(np.interp(t * L, cum, [s_["phi"] for s_ in sac])))
        hw = (48 - 38 * t ** 1.2) * sv
        for sg in (-1, 1):
            parts.append(Part("carve", cc, Rc, p0=(sg * hw * 0.5, -30, 0), p1=(sg * hw * 0.5, 30, 0),
                              r1=rf * sv, r2=rf * sv, ref=(0, 0, 1)))
    # aortic wall calcification (anterior-left of the bodies, bifurcation at L4)
    if P["calc"] > 0:
        zs = np.array([v["c"][2] for v in verts])
        ys = np.array([v["c"][1] - v["bp"]["b"] for v in verts])
        xs = np.array([v["c"][0] for v in verts])
        zL4 = verts[5]["c"][2]
        n = int(rng.poisson(4 + 26 * P["calc"]))
        for _ in range(n):
            z = rng.uniform(verts[6]["c"][2] - 10, verts[1]["c"][2])
            ra = 11.0
            yc = float(np.interp(z, zs[::-1], ys[::-1])) - ra - 4
            xc = float(np.interp(z, zs[::-1], xs[::-1])) + 13
            if z < zL4:
                side = rng.choice([-1, 1])
                xc += side * (zL4 - z) * 0.5     # common iliac arteries
                ra = 6.5
            th = rng.choice([rng.normal(math.pi / 2, 0.5), rng.normal(-math.pi / 2, 0.5),
                             rng.uniform(0, 2 * math.pi)])
            Rz = rot_z(th)
            cc = np.array([xc, yc, z]) + (ra - 0.5) * Rz[:, 0]
            parts.append(Part("calc", cc, Rz, cl=(0, 0, 0),
                              r=(0.7, rng.uniform(1.5, 5), rng.uniform(2, 8)),
                              rho=rng.uniform(0.6, 1.0)))
    return parts


def build_spine_volume(P, verts, sac, rng, h=1.0):
    parts = spine_parts(P, verts, sac, rng)
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    for p in parts:
        a, b = p.aabb()
        lo, hi = np.minimum(lo, a), np.maximum(hi, b)
    g = Grid(lo - 2, hi + 2, h)
    V = BoneVols(g)
    for p in parts:
        V.splat(p)
    ff = P["marrow_ff"]
    shell = V.outer - V.core
    trab = V.coreT
    other = shell * F32(P["rho_cort"]) + (V.coreHA - V.coreT) + V.extra
    ha = trab + other
    fat = V.core * F32(ff * RHO_FAT)
    sdel = (-BONE_SOFT_DISPLACE * ha - V.core * F32(ff * RHO_SOFT) + F32(FAT_A) * fat
            - V.gas * F32(RHO_SOFT))
    other = other + F32(FAT_B) * fat
    vol = np.stack([trab, other, sdel]).astype(F32)
    return g, vol


# ----------------------------------------------------------------------------------------
# Soft tissue / body grid
# ----------------------------------------------------------------------------------------
def _smooth_noise(rng, shape, cell):
    """Low-frequency noise (unit-ish std) on a grid, by trilinear up-sampling."""
    small = tuple(max(2, int(math.ceil(s / cell)) + 2) for s in shape)
    n = rng.standard_normal(small).astype(F32)
    n = ndimage.gaussian_filter(n, 0.7)
    n /= n.std() + 1e-6
    z = [shape[k] / small[k] * 1.0 for k in range(3)]
    out = ndimage.zoom(n, z, order=1, mode="nearest", grid_mode=True)
    return out[: shape[0], : shape[1], : shape[2]]


def build_body_volume(P, verts, sac, rng, zc, h=3.0):
    sv, bmi, male = P["sv"], P["bmi"], P["sex"] == "M"
    vz = np.array([v["c"][2] for v in verts] + [s["c"][2] for s in sac])
    vy = np.array([v["c"][1] for v in verts] + [s["c"][1] for s in sac])
    vx = np.array([v["c"][0] for v in verts] + [s["c"][0] for s in sac])
    va = np.array([v["bp"]["a"] for v in verts] + [s["a"] for s in sac])
    vb = np.array([v["bp"]["b"] for v in verts] + [s["b"] for s in sac])
    o = np.argsort(vz)
    vz, vy, vx, va, vb = vz[o], vy[o], vx[o], va[o], vb[o]
    zL = {v["name"]: v["c"][2] for v in verts}
    zS1 = sac[0]["c"][2]
    # trunk dimensions
    D0 = (190 + 7.5 * (bmi - 22) + (10 if male else -5)) * rng.lognormal(0, 0.05)
    W0 = (275 + 6.5 * (bmi - 22)) / 2 * (1.07 if male else 1.0) * rng.lognormal(0, 0.04)
    back = 17 * sv + 55 * sv + 6 + P["t_sc"] * 0.7
    belly = float(np.clip(0.04 + 0.008 * (bmi - 25), 0, 0.2))
    zcrest = zL["L4"] + rng.normal(0, 6)
    hip = 0.18 if not male else 0.12
    zlo, zhi = zc - 215, zc + 215
    zz = np.arange(zlo + h / 2, zhi, h)
    yb = np.interp(zz, vz, vy)
    yb_s = ndimage.gaussian_filter1d(yb, 40 / h, mode="nearest")
    xb = np.interp(zz, vz, vx)
    ab = np.interp(zz, vz, va)
    bb = np.interp(zz, vz, vb)
    ypost = yb_s + back
    D = D0 * (1 + belly * np.exp(-((zz - zL["L4"]) / 90) ** 2))
    W = W0 * (1 + hip * smoothstep((zcrest - zz) / 70) + 0.05 * smoothstep((zz - zL["L1"]) / 80))
    yant = ypost - D
    below4 = zz < zL["L4"]
    yant[below4] = np.minimum(yant[below4], float(np.interp(zL["L4"], zz, yant)))
    D = ypost - yant
    Wm = float(W.max())
    g = Grid((-Wm - 6, float(yant.min()) - 6, zlo), (Wm + 6, float(ypost.max()) + 6, zhi), h)
    Z = g.centers(2)
    # per-z profiles on the grid z axis
    prof = lambda arr: np.interp(Z, zz, arr).astype(F32)[:, None, None]
    Wz, Dz, ypz, ybz, xbz, abz, bbz = (prof(x) for x in (W, D, ypost, yb, xb, ab, bb))
    X = g.centers(0).astype(F32)[None, None, :]
    Y = g.centers(1).astype(F32)[None, :, None]
    ymid = ypz - Dz / 2

    def sellipse(cy, hw, hd, pw=2.4):
        m = (np.abs(X / hw) ** pw + np.abs((Y - cy) / hd) ** pw) ** (1 / pw)
        return np.clip(0.5 - (m - 1) * np.minimum(hw, hd) / h, 0, 1)

    occ = sellipse(ymid, Wz, Dz / 2)
    tsa, tsb, tss = P["t_sc"], P["t_sc"] * 0.7, P["t_sc"] * 1.1
    inner = sellipse(ymid + (tsa - tsb) / 2, Wz - tss, Dz / 2 - (tsa + tsb) / 2)
    wall = 9 + 5 * rng.random()
    cav = sellipse(ymid + (tsa - tsb) / 2, Wz - tss - wall, Dz / 2 - (tsa + tsb) / 2 - wall)
    fat = 1.0 - inner                       # subcutaneous fat
    # visceral mix
    nz = _smooth_noise(rng, g.shape, 25.0 / h)
    fv = np.clip(P["fat_vis"] + 0.22 * nz, 0, 1)
    fat = fat + cav * fv                    # abdominal wall muscle stays lean
    # retroperitoneal fat, posterior muscles, column, psoas
    dx = X - xbz
    rp_f = float(np.clip(0.3 + 0.035 * (bmi - 20), 0.25, 0.95))
    retro = ((np.abs(dx) < abz + 85) & (Y > ybz - bbz - 28) & (Y < ybz + bbz + 10)).astype(F32) * cav
    fat = fat * (1 - retro) + retro * rp_f
    post = ((np.abs(dx) < 95) & (Y > ybz + bbz * 0.3)).astype(F32) * inner
    fat = fat * (1 - post) + post * P["f_im"]
    col = ((np.abs(dx) < abz + 3) & (Y > ybz - bbz - 3) & (Y < ybz + bbz + 65 * sv)).astype(F32)
    fat = fat * (1 - col)
    zt12, zl5 = zL["T12"], zL["L5"]
    tps = smoothstep((zt12 - Z) / (zt12 - zl5))[:, None, None].astype(F32)
    rps = (5 + 21 * tps) * sv * F32(rng.lognormal(0, 0.1))
    below = np.clip((zl5 - Z) / 1.0, 0, None)[:, None, None].astype(F32)
    for sg in (-1, 1):
        cx = xbz + sg * (abz + rps * 0.7 + below * 0.45)
        cy = ybz + 2 - below * 0.35
        ps = np.clip(0.5 - (np.sqrt(((X - cx) / rps) ** 2 + ((Y - cy) / (rps * 1.15)) ** 2) - 1)
                     * rps / h, 0, 1) * (Z < zt12 + 10)[:, None, None]
        fat = fat * (1 - ps) + ps * P["f_im"] * 0.5
    # aorta / IVC
    for xo, r, zmin in ((12, 11, zL["L4"]), (-22, 12, zL["L5"])):
        ves = np.clip(0.5 - (np.sqrt((X - xbz - xo) ** 2 + (Y - (ybz - bbz - r - 3)) ** 2) - r) / h,
                      0, 1) * (Z > zmin)[:, None, None]
        fat = fat * (1 - ves)
    soft_mask = np.zeros(g.shape, F32)
    gas = np.zeros(g.shape, F32)

    def ell_region(c, radii, R=np.eye(3), pad=3):
        lo_, hi_ = _aabb(np.asarray(c, float), R, -np.asarray(radii) - pad, np.asarray(radii) + pad)
        win = g.window(lo_, hi_)
        if win is None:
            return None, None
        sl, Xs, Ys, Zs = win
        u, w, s = _to_local(Xs, Ys, Zs, np.asarray(c, float), R)
        return sl, np.clip(0.5 - sd_ell(u, w, s, (0, 0, 0), radii) / h, 0, 1)

    # kidneys with perirenal fat, liver, spleen
    pf = 6 + 0.9 * max(0, bmi - 20)
    for sg, dz in ((1, 8.0), (-1, -10.0)):
        R = rot_z(sg * math.radians(30)) @ rot_y(sg * math.radians(-15))
        kc = (sg * (abz.mean() + 48) * sv, float(np.interp(zL["L1"] + dz, zz, yb)) + 14, zL["L1"] + dz)
        rad = (27 * sv, 19 * sv, 54 * sv)
        sl, f_o = ell_region(kc, tuple(r + pf for r in rad), R)
        if sl is not None:
            fat[sl] = np.maximum(fat[sl], f_o * 0.95)
        sl, k_o = ell_region(kc, rad, R)
        if sl is not None:
            fat[sl] *= 1 - k_o
            soft_mask[sl] = np.maximum(soft_mask[sl], k_o)
    zedge = zL["L2"] + 5 + 0.25 * (X + W0)
    liver = ((X < xbz - 25) & (Z[:, None, None] > zedge) & (Y < ybz + 10)).astype(F32) * cav
    soft_mask = np.maximum(soft_mask, liver)
    sl, sp = ell_region((W0 - 55, float(np.interp(zL["T12"], zz, yb)), zL["T12"] + 10), (33, 45, 55))
    if sl is not None:
        soft_mask[sl] = np.maximum(soft_mask[sl], sp * cav[sl])
    fat = fat * (1 - soft_mask)
    # bowel gas: colon frame + small bowel
    Win = W0 - P["t_sc"] - 15
    yfr = float(np.interp(zc, zz, yant)) + P["t_sc"] + 15
    ybc = float(np.interp(zc, zz, yb))
    zL1 = zL["L1"]
    path = [(-0.62 * Win, yfr + 55, zS1 + 15), (-0.62 * Win, yfr + 50, zL1 + 20),
            (-0.3 * Win, yfr + 20, zL["L3"]), (0.2 * Win, yfr + 25, zL["L2"] + 10),
            (0.65 * Win, ybc - 25, zL1 + 30), (0.68 * Win, ybc - 20, zL["L4"]),
            (0.45 * Win, ybc - 35, zS1 - 5), (0.05 * Win, ybc - 30, zS1 - 40),
            (0.0, ybc + 25, zS1 - 70)]
    path = np.array(path)
    seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
    cum = np.concatenate([[0], np.cumsum(seg)])
    g_ = P["gas"]
    n_col = int(rng.poisson(4 + 16 * g_))
    for _ in range(n_col):
        t = rng.uniform(0, cum[-1])
        c = np.array([np.interp(t, cum, path[:, k]) for k in range(3)]) + rng.normal(0, 6, 3)
        r = rng.uniform(8, 24) * np.array([1, rng.uniform(0.6, 1), rng.uniform(0.7, 1.3)])
        sl, o = ell_region(c, tuple(r), rot_z(rng.uniform(0, math.pi)))
        if sl is not None:
            fill = rng.uniform(0.55, 1.0)
            if rng.random() < 0.35:      # stool: mottled gas
                fill *= (rng.random(o.shape) < 0.4)
            np.maximum(gas[sl], o * F32(fill) * cav[sl], out=gas[sl])
    for _ in range(int(rng.poisson(6 * g_))):
        c = (rng.uniform(-0.4, 0.4) * Win, yfr + rng.uniform(10, 70), rng.uniform(zS1 - 20, zL["L2"]))
        r = rng.uniform(4, 11)
        sl, o = ell_region(c, (r, r * 0.8, r * 1.1))
        if sl is not None:
            np.maximum(gas[sl], o * 0.9 * cav[sl], out=gas[sl])
    fat = np.clip(fat, 0, 1)
    occ = occ * (1 - gas)
    soft = occ * (1 - fat) * F32(RHO_SOFT)
    fatm = occ * fat * F32(RHO_FAT)
    # bones of the body grid: ribs 10-12, iliac wings
    V = BoneVols(g, full=False)
    pr = P["rho_pe"] * 0.8
    tr = P["t_pe"] * 0.9
    T11, T12 = verts[0], verts[1]
    for vv, dzr, th_end in ((T11, 30.0, 150), (T11, 0.0, 110), (T12, 0.0, 72)):   # ribs 10-12
        c0 = vv["c"] + vv["R"][:, 2] * dzr
        for sg in (-1, 1):
            pts = [c0 + vv["R"] @ np.array([sg * (vv["bp"]["a"] + 3), vv["bp"]["b"] + 5, 2])]
            z0 = c0[2]
            y0 = float(np.interp(z0, zz, ypost - D / 2))
            Wr = float(np.interp(z0, zz, W)) - P["t_sc"] - 8
            Dr = float(np.interp(z0, zz, D)) / 2 - P["t_sc"] - 8
            th_end_ = th_end * rng.uniform(0.9, 1.1)
            for th in np.linspace(30, th_end_, 8):
                t = math.radians(th)
                arc = (th - 30) / 180 * math.pi * (Wr + Dr) / 2
                pts.append(np.array([sg * Wr * math.sin(t), y0 + Dr * math.cos(t),
                                     z0 - 12 - 0.38 * arc]))
            for p0, p1 in zip(pts[:-1], pts[1:]):
                V.splat(Part("ecap", np.zeros(3), np.eye(3), p0=p0, p1=p1, r1=3.2, r2=5.5,
                             ref=(0, 0, 1), t=tr, rho=pr))
    S1 = sac[0]
    for sg in (-1, 1):
        J = S1["c"] + S1["R"] @ np.array([sg * (S1["a"] + 40 * sv), 10, -12])
        d1 = np.array([sg * 55, -90, 0.0])
        d1 /= np.linalg.norm(d1)
        d2 = np.array([sg * 0.33, 0, 0.94])
        d2 -= d2.dot(d1) * d1
        d2 /= np.linalg.norm(d2)
        d3 = np.cross(d1, d2)
        R = np.stack([d1, d3, d2], 1)
        a1, a2 = 62 * sv, 125 * sv
        C = J + a1 * d1 - 30 * sv * d2
        V.splat(Part("ell", C, R, cl=(0, 0, 0), r=(a1, 5.0, a2), t=1.3, rho=pr * 0.7))
        V.splat(Part("ell", J, R, cl=(6, 0, -25 * sv), r=(16 * sv, 12 * sv, 38 * sv), t=1.5, rho=pr))
        angs = np.linspace(28, 165, 10)
        pts = [C + a1 * math.cos(math.radians(t)) * d1 + a2 * math.sin(math.radians(t)) * d2
               for t in angs]
        for p0, p1 in zip(pts[:-1], pts[1:]):
            V.splat(Part("ecap", np.zeros(3), np.eye(3), p0=p0, p1=p1, r1=6.0, r2=6.0, t=1.5,
                         rho=pr * 0.8))
    ha = (V.outer - V.core) * F32(P["rho_cort"] * 0.95) + V.coreHA
    s_eq = soft + F32(FAT_A) * fatm - F32(BONE_SOFT_DISPLACE) * ha
    h_eq = ha + F32(FAT_B) * fatm
    vol = np.stack([s_eq, h_eq]).astype(F32)
    info = dict(W=W, D=D, ypost=ypost, zz=zz, yb=yb)
    return g, vol, info


# ----------------------------------------------------------------------------------------
# Cone-beam slab projection
# ----------------------------------------------------------------------------------------
def project(vol, g, geo, k, slab_vox):
    """Divergent projection of vol (C, nz, ny, nx) (g/cm^3) onto a detector-aligned grid with
    spacing k*geo.pr.  Returns (C, nv, nu) line integrals in g/cm^2."""
    ps = k * geo["pr"]
    nu = int(math.ceil(geo["nu"] / k))
    nv = int(math.ceil(geo["nv"] / k))
    au = geo["a0"] + (np.arange(nu) + 0.5) * ps          # detector horizontal coordinate
    zv = geo["z0"] - (np.arange(nv) + 0.5) * ps          # detector vertical coordinate (z)
    C = vol.shape[0]
    out = np.zeros((C, nv, nu), F32)
    lat = geo["view"] == "LAT"
    dax = 3 if lat else 2                                 # array axis along the beam
    nd = vol.shape[dax]
    dcent = g.centers(0 if lat else 1)
    acent0 = g.lo[1] if lat else g.lo[0]
    na = g.ny if lat else g.nx
    s_psi, s_tau = math.sin(geo["psi"]), math.sin(geo["tau"])
    for i0 in range(0, nd, slab_vox):
        i1 = min(nd, i0 + slab_vox)
        sl = vol[:, :, :, i0:i1].sum(axis=3) if lat else vol[:, :, i0:i1, :].sum(axis=2)
        if not sl.any():
            continue
        d = float(dcent[i0:i1].mean())
        M = (geo["d_det"] - geo["d_src"]) / (d - geo["d_src"])
        a = geo["a_src"] + (au - geo["a_src"]) / M - s_psi * (d - geo["d_c"])
        z = geo["z_src"] + (zv - geo["z_src"]) / M - s_tau * (d - geo["d_c"])
        fa = (a - acent0) / g.h - 0.5 + 1
        fz = (z - g.lo[2]) / g.h - 0.5 + 1
        va = (fa >= 0) & (fa <= na + 1)
        vz = (fz >= 0) & (fz <= g.nz + 1)
        if not va.any() or not vz.any():
            continue
        ja = np.nonzero(va)[0]
        jz = np.nonzero(vz)[0]
        ja0, ja1, jz0, jz1 = ja[0], ja[-1] + 1, jz[0], jz[-1] + 1
        sp = np.pad(sl, ((0, 0), (1, 1), (1, 1)))
        fa_, fz_ = np.minimum(fa[ja0:ja1], na + 0.999), np.minimum(fz[jz0:jz1], g.nz + 0.999)
        ia, iz = fa_.astype(int), fz_.astype(int)
        wa, wz = (fa_ - ia).astype(F32), (fz_ - iz).astype(F32)
        tmp = sp[:, iz, :] * (1 - wz)[None, :, None] + sp[:, iz + 1, :] * wz[None, :, None]
        out[:, jz0:jz1, ja0:ja1] += tmp[:, :, ia] * (1 - wa) + tmp[:, :, ia + 1] * wa
    out *= F32(g.h / 10.0)
    sec = np.sqrt(1 + ((au[None, :] - geo["a_src"]) ** 2 + (zv[:, None] - geo["z_src"]) ** 2)
                  / geo["sid"] ** 2).astype(F32)
    return out * sec[None]


def upsample_to(ref, k, nv, nu):
    up = resize(ref, (ref.shape[0] * k, ref.shape[1] * k), Image.BICUBIC)
    return up[:nv, :nu]


# ----------------------------------------------------------------------------------------
# Vendors
# ----------------------------------------------------------------------------------------
VENDORS = [
    dict(key="A", man="Halvard Medical Systems", model="Lumen DR43", modality="DX", det=(430, 430),
         px=0.200, bits=12, mono1=0.0, phos="csi", phos_mass=0.20, dtype="SCINTILLATOR",
         grid=("FOCUSED\\RECIPROCATING", 0.72, 0.10, 12), al=2.7, cu=0.1, kv=(80, 90),
         sid=(1100, 1150), kerma=2.5, neq=50000, blur=0.16, swank=0.8, enoise=3.0, aec_sd=0.12,
         station="HMS-RAD2", sw="LumenView 4.2"),
    dict(key="B", man="Kestrel Radiologic", model="KR-Vista 3543", modality="DX", det=(350, 430),
         px=0.139, bits=14, mono1=0.0, phos="csi", phos_mass=0.18, dtype="SCINTILLATOR",
         grid=("FOCUSED", 0.70, 0.14, 10), al=2.5, cu=0.0, kv=(75, 85),
         sid=(1000, 1100), kerma=2.0, neq=40000, blur=0.12, swank=0.8, enoise=2.5, aec_sd=0.12,
         station="KR-ROOM3", sw="VistaProc 7.1"),
    dict(key="C", man="Sorensen-Ito Imaging", model="SI-CR Vantage 2", modality="CR",
         det=(350, 430), px=0.175, bits=10, mono1=1.0, phos="bafbr", phos_mass=0.10,
         dtype="STORAGE", grid=("FOCUSED", 0.68, 0.18, 8), al=2.5, cu=0.0, kv=(80, 92),
         sid=(1000, 1020), kerma=5.0, neq=25000, blur=0.22, swank=0.65, enoise=4.0, aec_sd=0.30,
         station="SICR-02", sw="SI-Console 3.0"),
    dict(key="D", man="Atlas Vantage Imaging", model="AVX Flex 3543", modality="DX", det=(350, 430),
         px=0.160, bits=16, mono1=0.0, phos="csi", phos_mass=0.22, dtype="SCINTILLATOR",
         grid=("FOCUSED\\RECIPROCATING", 0.72, 0.09, 12), al=2.7, cu=0.2, kv=(85, 95),
         sid=(1100, 1150), kerma=2.5, neq=50000, blur=0.14, swank=0.8, enoise=2.0, aec_sd=0.10,
         station="AVX-1", sw="AtlasIQ 2.9"),
    dict(key="E", man="Meridian Photonics", model="MP-CR 35", modality="CR", det=(350, 430),
         px=0.200, bits=12, mono1=0.3, phos="bafbr", phos_mass=0.12, dtype="STORAGE",
         grid=("FOCUSED", 0.68, 0.18, 8), al=2.5, cu=0.0, kv=(78, 88),
         sid=(1000, 1010), kerma=4.0, neq=18000, blur=0.25, swank=0.65, enoise=5.0, aec_sd=0.35,
         station="MPCR-ER", sw="MeridianCR 5.5"),
]
PR = 0.4     # physics render pitch at the detector (mm)


def view_geometry(P, V, view, verts, info, rng):
    det_w, det_h = V["det"]
    sid = float(rng.uniform(*V["sid"]))
    zL3, zL4 = verts[4]["c"][2], verts[5]["c"][2]
    zs = (0.5 * (zL3 + zL4) if view == "AP" else zL3 - 8) + rng.normal(0, 12)
    zz = info["zz"]
    if view == "AP":
        gap = rng.uniform(45, 75)
        d_det = float(np.interp(zs, zz, info["ypost"])) + gap
        a_src = rng.normal(0, 8)
        cw, ch = rng.uniform(170, 240), rng.uniform(300, 390)
    else:
        gap = rng.uniform(35, 65)
        d_det = float(np.interp(zs, zz, info["W"])) + gap
        a_src = float(np.interp(zs, zz, info["yb"])) + 12 + rng.normal(0, 8)
        cw, ch = rng.uniform(150, 210), rng.uniform(300, 370)
    d_src = d_det - sid
    ch = min(ch, det_h - 10)
    cw = min(cw, det_w - 10)
    nu, nv = int(round(det_w / PR)), int(round(det_h / PR))
    pr = det_w / nu
    a0 = a_src - det_w / 2
    z0 = zs + det_h / 2
    cu_, cv_ = rng.normal(0, 8), rng.normal(0, 8)
    coll = (a_src + cu_ - cw / 2, a_src + cu_ + cw / 2, zs + cv_ + ch / 2, zs + cv_ - ch / 2)
    d_c = 0.0                                    # rotation centre depth (spine)
    psi = math.radians(rng.normal(0, 3.0 if view == "AP" else 4.0))
    tau = math.radians(rng.normal(0, 2.0))
    return dict(view=view, sid=sid, d_det=d_det, d_src=d_src, a_src=a_src, z_src=zs, nu=nu, nv=nv,
                pr=pr, a0=a0, z0=z0, coll=coll, d_c=d_c, psi=psi, tau=tau, gap=gap,
                det_w=det_w, det_h=det_h)


def trab_texture(rng, shape, P, pr):
    """Anisotropic band-pass texture (unit std): vertical trabecular striation."""
    n = rng.standard_normal(shape).astype(F32)
    su = P["tex_su"] / pr
    sv_ = su * P["tex_aniso"]
    t = ndimage.gaussian_filter(n, (sv_, su), truncate=3.0) - ndimage.gaussian_filter(
        n, (sv_ * 2.5, su * 2.5), truncate=3.0)
    return t / (t.std() + 1e-6)


def marker_mask(geo, letter, rng, view):
    """Lead marker (letter) + acrylic holder on the render grid (transmission map)."""
    nu, nv, pr = geo["nu"], geo["nv"], geo["pr"]
    a_l, a_r, z_t, z_b = geo["coll"]
    size = int(14 / pr)
    left_side = (letter == "R") if view == "AP" else rng.random() < 0.5
    cu = (a_l + 12 if left_side else a_r - 12 - 14) - geo["a0"]
    cz = geo["z0"] - (z_t - 12)
    c0, r0 = int(cu / pr), int(cz / pr)
    img = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(img)
    font = _font(int(size * 0.8))
    d.text((size * 0.5, size * 0.5), letter, fill=255, font=font, anchor="mm")
    m = np.asarray(img, F32) / 255.0
    T = np.ones((nv, nu), F32)
    r0, c0 = max(0, min(nv - size, r0)), max(0, min(nu - size, c0))
    T[r0:r0 + size, c0:c0 + size] = 0.96 * (1 - 0.985 * m)
    return T


def render_view(P, V, view, bodyg, bodyv, info, spg, spv, verts, rng):
    geo = view_geometry(P, V, view, verts, info, rng)
    nu, nv, pr = geo["nu"], geo["nv"], geo["pr"]
    # technique: kVp by habitus
    if view == "AP":
        thick = float(np.interp(geo["z_src"], info["zz"], info["D"])) / 10
        kvp = V["kv"][0] + 0.45 * (thick - 21) + rng.normal(0, 1.5)
        kvp = float(np.clip(round(kvp), 70, 92))
    else:
        thick = 2 * float(np.interp(geo["z_src"], info["zz"], info["W"])) / 10
        kvp = V["kv"][1] + 0.35 * (thick - 32) + rng.normal(0, 1.5)
        kvp = float(np.clip(round(kvp), 78, 100))
    beam = Beam(kvp, V["al"], V["cu"], V["phos"], V["phos_mass"])
    rb = project(bodyv, bodyg, geo, 8, 2)
    rs = project(spv, spg, geo, 2, 5)
    As = upsample_to(rb[0], 8, nv, nu) + upsample_to(rs[2], 2, nv, nu)
    tex = trab_texture(rng, (nv, nu), P, pr)
    trab = upsample_to(rs[0], 2, nv, nu)
    Ah = upsample_to(rb[1], 8, nv, nu) + upsample_to(rs[1], 2, nv, nu) \
        + trab * np.clip(1 + F32(P["tex_amp"]) * tex, 0.2, None)
    lnE, lnQ = beam.lookup(As, Ah)
    Ep = np.exp(lnE)
    # collimation (penumbra), marker
    au = geo["a0"] + (np.arange(nu) + 0.5) * pr
    zv = geo["z0"] - (np.arange(nv) + 0.5) * pr
    a_l, a_r, z_t, z_b = geo["coll"]
    pen = 1.2
    cm = (np.clip((au - a_l) / pen + 0.5, 0, 1) * np.clip((a_r - au) / pen + 0.5, 0, 1))[None, :] * \
         (np.clip((z_t - zv) / pen + 0.5, 0, 1) * np.clip((zv - z_b) / pen + 0.5, 0, 1))[:, None]
    cm = cm.astype(F32)
    letter = "R" if view == "AP" else "L"
    mk = marker_mask(geo, letter, rng, view)
    Ep = Ep * cm * mk
    # focal spot + detector blur
    M_sp = geo["sid"] / (geo["sid"] - geo["gap"] - 90)
    fs = rng.choice([0.6, 1.0, 1.2])
    sig = math.sqrt(V["blur"] ** 2 + (0.3 * fs * (M_sp - 1)) ** 2) / pr
    Ep = ndimage.gaussian_filter(Ep, sig, truncate=3.0)
    # scatter (thickness-dependent SPR, wide kernel), grid
    f = 8
    sh = (nv // f, nu // f)
    tw = resize(As + 2.0 * Ah, sh, Image.BOX)
    Eps = resize(Ep, sh, Image.BOX)
    area = (a_r - a_l) * (z_t - z_b) / 100.0
    spr = 0.13 * np.clip(tw, 0, None) ** 1.1 * (1 - math.exp(-area / 250.0))
    tmean = float(np.percentile(tw[resize(cm, sh, Image.BOX) > 0.5], 50)) if (cm > 0.5).any() else 20
    sig_s = (25 + 1.5 * tmean) / (pr * f)            # kernel widens with thickness (mm)
    S = ndimage.gaussian_filter(Eps * spr, sig_s, mode="constant", truncate=3.0)
    S = resize(S, (nv, nu), Image.BILINEAR)
    gname, Tp, Ts, gratio = V["grid"]
    if V["key"] == "E" and view == "AP" and thick < 19.5 and rng.random() < 0.5:   # thin: no grid
        gname, Tp, Ts, gratio = "NONE", 1.0, 1.0, 0
    Et = Tp * Ep + Ts * S + 0.002 * Tp
    # heel effect along the anode-cathode (vertical) axis
    sgn = 1 if rng.random() < 0.5 else -1
    t = sgn * (zv - geo["z_src"]) / (geo["det_h"] / 2)
    hamp = rng.uniform(0.06, 0.12)
    heel = (1 - hamp * 0.5 * np.clip(1 + t, 0, 2) ** 1.6).astype(F32)
    Et = Et * heel[:, None]
    # AEC chamber (central, 25 mm radius)
    rr = (au[None, :] - geo["a_src"]) ** 2 + (zv[:, None] - geo["z_src"]) ** 2
    ch = rr < 25.0 ** 2
    F = float(Et[ch].mean()) / Tp
    eps = rng.normal(0, V["aec_sd"])
    k_det = V["kerma"] * math.exp(eps)
    Y = 7.5 * (kvp / 80.0) ** 2.2 * math.exp(-3.0 * V["cu"])
    mas = k_det / max(F, 1e-5) / (Y * (1000.0 / geo["sid"]) ** 2)
    mas_c = float(np.clip(mas, 1.0, 400.0))
    k_det *= mas_c / mas
    q_ch = V["neq"] * (k_det / V["kerma"]) * V["px"] ** 2     # quanta per final pixel at chamber
    q_air = q_ch / max(F * Tp, 1e-6)
    return dict(geo=geo, Et=Et, q_air=q_air, kvp=kvp, mas=mas_c, k_det=k_det, grid=(gname, gratio),
                Tp=Tp, cm=cm, fs=fs, heel=sgn, ma=int(rng.choice([200, 250, 320, 400, 500])),
                thick=thick)


# ----------------------------------------------------------------------------------------
# Detector read-out and vendor processing
# ----------------------------------------------------------------------------------------
def _final_crop(R, V, view):
    geo = R["geo"]
    px = V["px"]
    nfu, nfv = int(round(geo["det_w"] / px)), int(round(geo["det_h"] / px))
    a_l, a_r, z_t, z_b = geo["coll"]
    c0, c1 = 0, nfu
    r0, r1 = 0, nfv
    if V["key"] == "B":      # shutter-cropped output
        m = 3.0
        c0 = max(0, int((a_l - m - geo["a0"]) / px))
        c1 = min(nfu, int(math.ceil((a_r + m - geo["a0"]) / px)))
        r0 = max(0, int((geo["z0"] - z_t - m) / px))
        r1 = min(nfv, int(math.ceil((geo["z0"] - z_b + m) / px)))
    return nfu, nfv, (r0, r1, c0, c1)


def readout(R, V, rng, view):
    """Up-sample the expected signal to the detector pitch, add noise, return log image."""
    geo = R["geo"]
    px, pr = V["px"], geo["pr"]
    nfu, nfv, (r0, r1, c0, c1) = _final_crop(R, V, view)
    # crop the render grid to the needed region (with margin) before up-sampling
    scale = px / pr
    rr0, rr1 = int(r0 * scale), min(geo["nv"], int(math.ceil(r1 * scale)) + 1)
    cc0, cc1 = int(c0 * scale), min(geo["nu"], int(math.ceil(c1 * scale)) + 1)
    sub = R["Et"][rr0:rr1, cc0:cc1]
    # exact geometric mapping of the cropped block
    out_h, out_w = r1 - r0, c1 - c0
    full_h = int(round((rr1 - rr0) * pr / px))
    full_w = int(round((cc1 - cc0) * pr / px))
    up = resize(sub, (full_h, full_w), Image.BICUBIC)
    o0, o1 = r0 - int(round(rr0 * pr / px)), c0 - int(round(cc0 * pr / px))
    E = up[o0:o0 + out_h, o1:o1 + out_w]
    if E.shape != (out_h, out_w):
        E = np.pad(E, ((0, out_h - E.shape[0]), (0, out_w - E.shape[1])), mode="edge")
    q = np.maximum(E, 1e-7) * F32(R["q_air"])
    # correlated quantum noise (scintillator / plate light spread) + electronic noise
    # white noise blurred by the phosphor light spread: per-pixel variance drops, NPS(0)=1/NEQ kept
    n = rng.standard_normal(q.shape, dtype=F32)
    n = ndimage.gaussian_filter(n, 0.6 if V["phos"] == "csi" else 0.8, truncate=3.0)
    var = q / F32(V["swank"]) + F32(V["enoise"] ** 2)
    if V["modality"] == "CR":
        var = var + (F32(0.006) * q) ** 2
    qn = q + n * np.sqrt(var)
    if V["modality"] == "CR":     # laser scan line gain jitter
        qn *= (1 + 0.003 * rng.standard_normal((qn.shape[0], 1))).astype(F32)
    D = -np.log(np.maximum(qn, 0.5))
    # collimation mask on the final grid
    au = geo["a0"] + (np.arange(c0, c1) + 0.5) * px
    zv = geo["z0"] - (np.arange(r0, r1) + 0.5) * px
    a_l, a_r, z_t, z_b = geo["coll"]
    mrow = (zv < z_t - 4) & (zv > z_b + 4)
    mcol = (au > a_l + 4) & (au < a_r - 4)
    cmask = (mrow[:, None] & mcol[None, :])
    fmask = ((zv < z_t) & (zv > z_b))[:, None] & ((au > a_l) & (au < a_r))[None, :]
    return D.astype(F32), cmask, fmask


def roi_mask(cmask, frac=0.6):
    """Central part of the collimated field (histogram analysis region)."""
    r = np.nonzero(cmask.any(1))[0]
    c = np.nonzero(cmask.any(0))[0]
    roi = np.zeros_like(cmask)
    if r.size and c.size:
        hr, hc = (r[-1] - r[0]) * (1 - frac) / 2, (c[-1] - c[0]) * (1 - frac) / 2
        roi[int(r[0] + hr):int(r[-1] - hr) + 1, int(c[0] + hc):int(c[-1] - hc) + 1] = True
    return roi & cmask


def _window(D, mask, lo_p, hi_p, q_air, Tp):
    """Percentile window over anatomy (central ROI of the field, no direct exposure)."""
    s = (slice(None, None, 4), slice(None, None, 4))
    d, m = D[s], mask[s]
    d_air = -math.log(max(q_air * Tp, 1.0))
    vals = d[m & (d > d_air + 0.6)]
    if vals.size < 100:
        vals = d[m] if m.any() else d.ravel()
    lo, hi = np.percentile(vals, [lo_p, hi_p])
    return float(lo), float(max(hi, lo + 1e-3)), vals


def _pct(y, cmask, ps):
    s = (slice(None, None, 4), slice(None, None, 4))
    v = y[s][cmask[s]] if cmask[s].any() else y[s].ravel()
    return np.percentile(v, ps)


def _rewindow(y, cmask, lo_p=0.5, hi_p=99.7, margin=0.0):
    """Map ROI percentiles to [margin, 1-margin] (headroom for anatomy outside the ROI)."""
    lo, hi = _pct(y, cmask, [lo_p, hi_p])
    return margin + (1 - 2 * margin) * (y - lo) / max(hi - lo, 1e-4)


def process(D, cmask, fmask, V, R, rng, view):
    """Vendor image processing on the log image; returns display values in [0, 1] (1 = white)."""
    key, px = V["key"], V["px"]
    mm = lambda v: v / px                       # mm -> pixels
    m = cmask.astype(F32)
    roi = roi_mask(cmask, 0.6 if view == "AP" else 0.5)
    lo_p = 1.0 if view == "AP" else 4.0          # thin posterior soft tissue may burn out
    lo, _, _ = _window(D, roi, lo_p, 99.8, R["q_air"], R["Tp"])
    _, hi, _ = _window(D, cmask, lo_p, 99.6, R["q_air"], R["Tp"])
    hi = max(hi, lo + 0.05)
    x = ((D - lo) / (hi - lo)).astype(F32)      # anatomy roughly in [0, 1]
    fld = cmask & (x > -0.5)                    # field minus burnt-out / direct exposure
    mean = float(x[roi].mean()) if roi.any() else 0.5
    if key == "A":      # DRC + band gains (noise band damped) + gentle S curve
        base = masked_blur(x, m, mm(50.0))
        l_c = masked_blur(x, m, mm(8.0))
        l_mid = masked_blur(x, m, mm(2.0))
        l_fine = gblur(x, mm(0.25))
        y = (mean + 0.45 * (base - mean) + 1.25 * (l_c - base) + 1.3 * (l_mid - l_c)
             + 1.5 * (l_fine - l_mid) + 0.75 * (x - l_fine))
        y = _rewindow(y, fld, lo_p * 0.5, 99.7, 0.08)
        y = 0.5 + 0.5 * np.tanh(2.0 * (y - 0.5)) / math.tanh(1.0)
    elif key == "B":    # 4-band multi-frequency processing with companders, DRC
        l1 = gblur(x, mm(0.35))
        l2 = masked_blur(l1, m, mm(1.4))
        l3 = masked_blur(l2, m, mm(6.0))
        l4 = masked_blur(l3, m, mm(45.0))
        comp = lambda b, g, c: b * g / (1 + np.abs(b) / c)
        y = (mean + 0.4 * (l4 - mean) + 1.35 * (l3 - l4) + comp(l2 - l3, 1.9, 0.12)
             + comp(l1 - l2, 1.5, 0.06) + 0.9 * (x - l1))
        y = np.clip(_rewindow(y, fld, lo_p * 0.4, 99.8, 0.05), 0, 1) ** 0.9
    elif key == "C":    # CR: fixed latitude about the histogram median, H&D curve, RE processing
        base = masked_blur(x, m, mm(60.0))
        x = x - (0.35 if view == "AP" else 0.55) * (base - mean)
        med = float(_pct(x, roi, [50])[0])
        lat = (1.4 if view == "AP" else 1.3) * rng.lognormal(0, 0.05)
        x = 0.5 + (x - med) / lat
        g = 4.0
        y = 1 / (1 + np.exp(-g * (x - 0.5)))
        e0 = 1 / (1 + math.exp(g / 2))
        y = (y - e0) / (1 - 2 * e0)
        y = y + 0.9 * np.clip(y, 0.15, 1) * (y - masked_blur(y, m, mm(4.5)))
    elif key == "D":    # strong DRC + strong small-kernel edge enhancement, gamma
        base = masked_blur(x, m, mm(35.0))
        x = mean + 0.3 * (base - mean) + (x - base)
        x = x + 1.2 * (x - gblur(x, mm(0.35))) + 0.6 * (x - masked_blur(x, m, mm(2.5)))
        y = np.clip(_rewindow(x, fld, lo_p, 99.6, 0.04), 0, 1) ** 0.8
    else:               # E: DRC + blended histogram equalisation + unsharp mask
        base = masked_blur(x, m, mm(60.0))
        x = mean + 0.45 * (base - mean) + (x - base)
        x = x + 0.5 * (x - masked_blur(x, m, mm(6.0)))
        x = np.clip(_rewindow(x, fld, lo_p * 0.5, 99.7, 0.03), 0, 1)
        hist, edges = np.histogram(x[::4, ::4][fld[::4, ::4]], bins=256, range=(0, 1))
        cdf = np.cumsum(hist).astype(float)
        cdf /= max(cdf[-1], 1)
        eq = np.interp(x, (edges[:-1] + edges[1:]) / 2, cdf).astype(F32)
        y = 0.5 * eq + 0.5 * x
        y = y + 0.4 * (y - gblur(y, mm(0.8)))
    y = np.clip(y, 0, 1).astype(F32)
    # outside the collimated field: black electronic shutter (D) or light grey -> white
    out = ~fmask
    if out.any():
        if key == "D":
            y[out] = 0.0
        else:
            d_out = D[out]
            p5, p95 = np.percentile(d_out[::7], [5, 95])
            y[out] = 0.78 + 0.22 * np.clip((d_out - p5) / max(p95 - p5, 1e-3), 0, 1)
    return y


def annotate(y, V, R, P, view, study):
    """Burned-in text (display white)."""
    h, w = y.shape
    fs = max(12, int(4.2 / V["px"]))
    font = _font(fs)
    img = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(img)
    lines_tl = [study["inst"], f"{P['pid']}", f"{study['date'][:4]}-{study['date'][4:6]}-{study['date'][6:]}"]
    lines_tr = [f"L-SPINE {'AP' if view == 'AP' else 'LAT'}", f"{int(R['kvp'])} kV {R['mas']:.0f} mAs"]
    ei = int(round(100 * R["k_det"]))
    lines_bl = [f"EI {ei}" if V["modality"] == "DX" else f"S {int(round(200 / (R['k_det'] / 8.7)))}",
                V["man"].split()[0].upper()]
    pad = int(fs * 0.8)
    for i, s in enumerate(lines_tl):
        d.text((pad, pad + i * fs * 1.25), s, fill=255, font=font)
    for i, s in enumerate(lines_tr):
        d.text((w - pad, pad + i * fs * 1.25), s, fill=255, font=font, anchor="ra")
    for i, s in enumerate(lines_bl[::-1]):
        d.text((pad, h - pad - (i + 1) * fs * 1.25), s, fill=255, font=font)
    t = np.asarray(img, F32) / 255.0
    # text colour by background: white on dark, black on light
    rows = np.nonzero(t.any(1))[0]
    if rows.size == 0:
        return y
    out = y.copy()
    lab, n = ndimage.label(ndimage.binary_dilation(t > 0.05, iterations=int(fs * 0.6)))
    for k, sl in enumerate(ndimage.find_objects(lab), 1):
        bg = float(y[sl].mean())
        tt = t[sl]
        out[sl] = y[sl] * (1 - tt) + tt * (0.0 if bg > 0.55 else 1.0)
    return out


# ----------------------------------------------------------------------------------------
# DICOM
# ----------------------------------------------------------------------------------------
def pix_range(V):
    """Stored-value range used for display white/black (D keeps head-room in 16 bit)."""
    vmax = (1 << V["bits"]) - 1
    return (3000, vmax - 3000) if V["key"] == "D" else (0, vmax)


def _code(value, scheme, meaning):
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return c


def write_dicom(path, pix, V, R, P, view, study, seed, mono1, flip):
    rows, cols = pix.shape
    is_dx = V["modality"] == "DX"
    sop_class = "1.2.840.10008.5.1.4.1.1.1.1" if is_dx else "1.2.840.10008.5.1.4.1.1.1"
    sop_uid = uid_from(seed, P["pid"], view, "sop")
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = sop_class
    fm.MediaStorageSOPInstanceUID = sop_uid
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    fm.ImplementationClassUID = uid_from("implementation")
    fm.ImplementationVersionName = "PHANTOM_L_1"
    ds = Dataset()
    ds.file_meta = fm
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study["date"]
    tm = study["time"] + (0 if view == "AP" else 95)
    tstr = f"{tm // 3600:02d}{(tm // 60) % 60:02d}{tm % 60:02d}"
    ds.StudyTime = study["tstr"]
    ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = tstr
    ds.AccessionNumber = study["acc"]
    ds.Modality = V["modality"]
    if is_dx:
        ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = V["man"]
    ds.InstitutionName = study["inst"]
    ds.ReferringPhysicianName = ""
    ds.StationName = V["station"]
    ds.StudyDescription = "XR LUMBAR SPINE 2 VIEWS"
    ds.SeriesDescription = "L-SPINE AP" if view == "AP" else "L-SPINE LAT"
    ds.ManufacturerModelName = V["model"]
    ds.PatientName = f"PHANTOM^{P['pid'].replace('-', '_')}"
    ds.PatientID = P["pid"]
    ds.PatientBirthDate = study["birth"]
    ds.PatientSex = P["sex"]
    ds.PatientAge = f"{P['age']:03d}Y"
    ds.BodyPartExamined = "LSPINE"
    ds.KVP = f"{R['kvp']:.0f}"
    ds.SoftwareVersions = V["sw"]
    geo = R["geo"]
    ds.DistanceSourceToDetector = f"{geo['sid']:.1f}"
    dsp = -geo["d_src"]                       # source to the spine (L3 centre) plane
    ds.ExposureTime = str(max(1, int(round(R["mas"] / R["ma"] * 1000))))
    ds.XRayTubeCurrent = str(R["ma"])
    ds.Exposure = str(max(1, int(round(R["mas"]))))
    ds.ExposureInuAs = str(int(round(R["mas"] * 1000)))
    ds.FocalSpots = f"{R['fs']:.1f}"
    mag = round(geo["sid"] / dsp, 4)
    ds.DistanceSourceToPatient = f"{geo['sid'] / mag:.2f}"
    ds.ImagerPixelSpacing = [f"{V['px']:.3f}", f"{V['px']:.3f}"]
    ds.ViewPosition = "AP" if view == "AP" else ("LATERAL" if V["key"] == "C" else "LL")
    ds.SeriesInstanceUID = uid_from(seed, P["pid"], view, "series")
    ds.StudyInstanceUID = study["uid"]
    ds.StudyID = study["sid"]
    ds.SeriesNumber = "1" if view == "AP" else "2"
    ds.AcquisitionNumber = "1"
    ds.InstanceNumber = "1"
    if view == "AP":
        ds.PatientOrientation = ["L", "F"]
    else:
        ds.PatientOrientation = ["A", "F"] if flip else ["P", "F"]
    ds.BurnedInAnnotation = "YES"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if mono1 else "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = 16
    ds.BitsStored = V["bits"]
    ds.HighBit = V["bits"] - 1
    ds.PixelRepresentation = 0
    vmax = (1 << V["bits"]) - 1
    lo_v, hi_v = pix_range(V)
    ds.WindowCenter = f"{(lo_v + hi_v + 1) / 2:.1f}"
    ds.WindowWidth = f"{hi_v - lo_v + 1:.1f}"
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.LossyImageCompression = "00"
    if is_dx:
        ds.ImageLaterality = "U"
        ds.AnatomicRegionSequence = Sequence([_code("122496007", "SCT", "Lumbar spine")])
        ds.ViewCodeSequence = Sequence([_code("399348003", "SCT", "antero-posterior") if view == "AP"
                                        else _code("399173006", "SCT", "left lateral")])
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = 1 if mono1 else -1
        ds.PresentationLUTShape = "INVERSE" if mono1 else "IDENTITY"
        ds.DetectorType = V["dtype"]
        ds.DetectorConfiguration = "AREA"
        ds.DetectorID = f"{V['key']}{int(hashlib.md5(V['station'].encode()).hexdigest()[:6], 16)}"
        ds.AcquisitionContextSequence = Sequence([])
        ds.PositionerType = "COLUMN"
        if V["cu"] > 0:
            ds.FilterType = "MULTIPLE"
        ds.FilterMaterial = ["ALUMINUM"] if V["cu"] == 0 else ["ALUMINUM", "COPPER"]
        ds.Grid = R["grid"][0]
        ds.EstimatedRadiographicMagnificationFactor = f"{mag:.4f}"
        ei = 100 * R["k_det"]
        ds.ExposureIndex = f"{ei:.1f}"
        ds.TargetExposureIndex = f"{100 * V['kerma']:.1f}"
        ds.DeviationIndex = f"{10 * math.log10(ei / (100 * V['kerma'])):.2f}"
        ds.PixelSpacing = [f"{V['px'] / mag:.4f}", f"{V['px'] / mag:.4f}"]
        ds.PixelSpacingCalibrationType = "GEOMETRY"
        ds.PixelSpacingCalibrationDescription = "Estimated radiographic magnification"
        ds.AcquisitionDeviceProcessingDescription = {
            "A": "LOG+DRC+3BAND+SCURVE", "B": "MFP4+DRC+CROP", "D": "DRC+EDGE+GAMMA+ESHUTTER"}[V["key"]]
    else:
        ds.PlateType = "ST-VI" if V["key"] == "C" else "MP-HR"
        ds.PhosphorType = "BaFBr:Eu"
        ds.Sensitivity = f"{200.0 / (R['k_det'] / 8.7):.0f}"
        ds.RelativeXRayExposure = str(int(round(1000 * math.log10(max(R['k_det'], 1e-3) * 100 / 2.0))))
        ds.PixelSpacing = [f"{V['px']:.3f}", f"{V['px']:.3f}"]
        ds.AcquisitionDeviceProcessingDescription = "FIXLAT GRAD-S FREQ-RE" if V["key"] == "C" \
            else "DRC EQ50 USM"
    ds.PixelData = pix.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


# ----------------------------------------------------------------------------------------
# Patient driver
# ----------------------------------------------------------------------------------------
def make_patient(args):
    outdir, seed, idx = args
    rng = np.random.default_rng([int(seed), int(idx), 0x5EED])
    P = sample_patient(rng, seed, idx)
    V = VENDORS[int(rng.integers(len(VENDORS)))]
    mono1 = rng.random() < V["mono1"]
    verts, sac = build_chain(P, rng)
    spg, spv = build_spine_volume(P, verts, sac, rng)
    zc = 0.5 * (verts[4]["c"][2] + verts[5]["c"][2])
    bodyg, bodyv, info = build_body_volume(P, verts, sac, rng, zc)
    day = datetime.date(2015, 1, 1) + datetime.timedelta(days=int(rng.integers(0, 3650)))
    bday = day - datetime.timedelta(days=int(P["age"] * 365.25 + rng.integers(1, 360)))
    t0 = int(rng.integers(8 * 3600, 17 * 3600))
    study = dict(uid=uid_from(seed, P["pid"], "study"), date=day.strftime("%Y%m%d"),
                 birth=bday.strftime("%Y%m%d"), time=t0,
                 tstr=f"{t0 // 3600:02d}{(t0 // 60) % 60:02d}{t0 % 60:02d}",
                 acc=f"A{seed % 1000:03d}{idx:07d}", sid=f"{idx % 100000:05d}",
                 inst=["SYNTH RADIOLOGY NORTH", "PHANTOM GENERAL HOSP", "SIM ORTHO CLINIC"][
                     int(rng.integers(3))])
    rows = []
    for view in ("AP", "LAT"):
        R = render_view(P, V, view, bodyg, bodyv, info, spg, spv, verts, rng)
        D, cmask, fmask = readout(R, V, rng, view)
        y = process(D, cmask, fmask, V, R, rng, view)
        flip = view == "LAT" and V["key"] == "C"
        if flip:
            y = y[:, ::-1]
        y = annotate(y, V, R, P, view, study)
        vmax = (1 << V["bits"]) - 1
        lo_v, hi_v = pix_range(V)
        pix = np.round(lo_v + y * (hi_v - lo_v))
        if mono1:
            pix = vmax - pix
        pix = np.clip(pix, 0, vmax).astype(np.uint16)
        name = f"{P['pid']}_{view}.dcm"
        write_dicom(os.path.join(outdir, name), pix, V, R, P, view, study, seed, mono1, flip)
        rows.append([name, P["label"], f"{P['T']:.2f}", f"{P['bmd']:.3f}", P["pid"], view])
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("n", type=int)
    ap.add_argument("seed", type=int)
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args()
    os.makedirs(a.outdir, exist_ok=True)
    jobs = [(a.outdir, a.seed, i) for i in range(a.n)]
    if a.workers > 1:
        with Pool(a.workers) as pool:
            res = list(pool.imap(make_patient, jobs, chunksize=1))
    else:
        res = [make_patient(j) for j in jobs]
    with open(os.path.join(a.outdir, "manifest.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["path", "label", "t_score", "bmd", "patient_id", "view"])
        for r in res:
            w.writerows(r)


if __name__ == "__main__":
    main()
