#!/usr/bin/env python3
"""phantom_j -- synthetic lumbar-spine AP + lateral DICOM studies with known bone density.

Usage: python phantom_j.py OUTDIR N SEED [--workers K] [--manifest-only]

Anatomy. Every patient is one 3-D model in millimetres (x to the patient's left, y posterior, z
cranial, origin at the centre of L3) that both views project. The spine is grown as a sagittal
chain from the S1 endplate upwards: T9-L5 bodies and the discs between them, each with its own
height and wedge angle, so that the chosen lumbar lordosis and sacral slope come out of the sum of
the segment angles; a sine-shaped coronal curve with axial rotation towards the convexity adds
(degenerative) scoliosis. A vertebral body is a waisted elliptic cylinder (a hyperboloid quadric)
cut by two tilted endplate planes whose centres are depressed by paraboloid caps, with a flattened
posterior wall; an inner copy shrunk by the cortical thickness turns it into a shell. Pedicles,
laminae, spinous and transverse processes and the articular processes are capped elliptic cylinders
and ellipsoids. The sacrum is two shelled elliptic frustums (S1-S2 with the alae, S3-S5 bent
forwards) with a denser S1 body inside and two rows of foramina; the ilia are thin shelled plates
cut below, with a dense crest rim reaching the L4-L5 level and an iliac body running down to the
acetabulum; femoral heads and necks appear at the lower edge; ribs T9-T12 are chains of shelled
cylinder segments joined on bisector planes. Supine, the chain is levelled so that L1-L5 lie along
the table on average; the pelvic tilt follows from that. Soft tissue is a waisted trunk (separate
flare above and below the waist, width and depth from BMI and sex), a subcutaneous fat shell, an
abdominal cavity under the diaphragm domes whose visceral-fat fraction is mottled, psoas muscles
cut out of that fat, kidneys in their perirenal fat, lung bases above the domes, colon / small-
bowel / stomach gas and optional disc vacuum gas. Variation: body size, disc heights, lordosis,
scoliosis, patient rotation and tilt on the table (which gives doubled endplates on the lateral),
table flattening of the soft tissue.

Ray casting. Each solid is an intersection of quadric / plane constraints, optionally minus
disjoint concave quadric regions (endplate cups, diaphragm domes, the spinal column inside the
abdominal fat). Rays leave a point focal spot and hit every working-resolution detector pixel (true
cone-beam geometry: magnification, parallax between the two sides of the body), and the chord
length through a solid is solved in closed form per pixel, only inside the projected bounding box
of the solid and inside the collimated field. The line integrals accumulate in three material maps
(soft tissue, adipose, ICRU cortical bone equivalent); bone regions displace soft tissue and marrow
is a soft-tissue / fat mix.

Bone density. The label is a DXA-like L1-L4 T-score. The bone the image is made of follows a "true"
T that differs from it by DXA artefacts (osteophytes and facet sclerosis inflate the DXA value in
older spines) and a biological/precision error. True T sets the trabecular vBMD (about 185 mg/cm3
HA at T=0, 95 at T=-2.5, 60 at T=-4.5, scaled down for large vertebrae so that areal density and
size trade off as in real DXA), the cortical shell thickness (0.3-1.1 mm) and its mineral fraction,
the mineral fraction of the posterior elements, the marrow fat fraction (with age) and the
trabecular micro-architecture. The trabecular bone is a real 3-D voxel model (0.55 mm voxels) per
vertebral body: the sheet set |n| < eps of an anisotropic band-limited Gaussian random field,
perforated by a second field; low density makes the sheets sparser, more perforated and more
vertically elongated, so both views show coarse vertical striation with loss of horizontal texture.
The voxel density is normalised to the target vBMD inside the body shape (including fracture
deformation) and projected along each view's rays. Fracture prevalence rises steeply with low T and
age (wedge, biconcave or crush, Genant grade 1-3, mostly T12-L2; about a fifth of all patients,
half of those with T near -4). Confounders unrelated to T: osteophytes, endplate sclerosis, facet
hypertrophy and disc narrowing with age, aortic and iliac wall calcification, body habitus, bowel
gas, vertebral size, AEC errors, vendor processing.

X-ray physics. A tungsten spectrum (Kramers continuum plus K lines) with inherent, added (Al/Cu)
and table filtration; the heel effect as row-dependent anode self-filtration; inverse square and
obliquity; energy-binned polychromatic attenuation through the three materials; a caesium-iodide,
gadolinium-oxysulphide or BaFBr storage-phosphor absorption curve with K edges and energy
weighting; scatter from a thickness-dependent scatter-to-primary ratio spread by a two-Gaussian
kernel (also outside the collimated field), reduced by a focused grid; AEC that picks the mAs from
a central chamber with random error and a backup limit (70 uGy/mAs at 1 m for 80 kVp, so typical AP
10-25 mAs, lateral 15-60 mAs); focal-spot and detector blur; Poisson-like quantum noise with the
detector's Swank factor plus electronic noise, generated at working resolution and again as a
finer-grained component after upsampling to the detector pitch; lead L/R markers; collimator blades
with penumbra.

Vendors. Five invented vendors, each a detector and a processing chain: Aurelia (CsI DR, multiscale
Laplacian-pyramid contrast equalisation, 12 bit, black electronic shutters), Corvanta (CR storage
phosphor, no flat field so the heel effect stays, density-weighted unsharp mask and a film-like
gradation curve, stationary-grid moire, 10 bit MONOCHROME1, burned-in text), Halvorsen (43x43 CsI,
low-frequency dynamic-range compression plus unsharp mask and gamma, 14 bit, image cropped to the
collimated field, calibrated PixelSpacing), Tessaro (GOS DR, square-root domain local contrast
normalisation and a strong unsharp mask, 12 bit MONOCHROME1, burned-in text, lateral facing right)
and Kinoshi (CsI DR, tissue equalisation of large-scale extremes, two-band edge enhancement and an
S curve, 15 bit, DICOM display shutter instead of masking). Every chain anchors the median of the
collimated body to a vendor mid-grey, some suppress the finest noise band, and the presets jitter
from study to study. Files are DX "For Presentation" or CR Part-10 objects with realistic detector
sizes (35x43 or 43x43 cm, 0.148-0.2 mm pixels, 1700-2900 pixels a side), exposure, geometry, grid
and dose attributes.

Age and sex. 78 % of patients are women. T is drawn from a truncated normal (mean -1.75, sd 1.6,
range -4.5..+2) so each WHO class holds about a third. Age is then drawn given T: mean 67 (women)
or 65 (men) years, 2.6 years older per T unit lower, residual sd 10.3 years, range 38-92 -- a
correlation of about -0.3 between age and T, as in screening populations where age explains only a
modest part of the variance of spine BMD. Degeneration and calcification follow age, so they
correlate with T only through age.

The output is deterministic: every patient draws from random streams keyed by (SEED, index), so any
--workers value gives byte-identical files; UIDs and dates are derived from the seed.
"""

import argparse
import datetime as dt
import hashlib
import math
import os
import sys

import numpy as np
from scipy import ndimage
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import FileDataset, FileMetaDataset, Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

GENERATOR_VERSION = "phantom_j 1.0"
_DEBUG = None  # set to a dict to receive intermediate maps (development aid)

# ----------------------------------------------------------------------------------------------
# Physics data: mass attenuation coefficients (cm^2/g), log-log interpolated.
# ----------------------------------------------------------------------------------------------
_E10 = np.array([10, 15, 20, 30, 40, 50, 60, 80, 100, 150], float)
_MU10 = {
    "water": [5.329, 1.673, 0.8096, 0.3756, 0.2683, 0.2269, 0.2059, 0.1837, 0.1707, 0.1505],
    "fat": [3.268, 1.064, 0.5663, 0.3079, 0.2393, 0.2123, 0.1977, 0.1801, 0.1684, 0.1494],
    "bone": [28.51, 9.032, 4.001, 1.331, 0.6655, 0.4242, 0.3148, 0.2229, 0.1855, 0.1480],
    "al": [26.23, 7.955, 3.441, 1.128, 0.5685, 0.3681, 0.2778, 0.2018, 0.1704, 0.1378],
    "cu": [215.9, 74.05, 33.79, 10.92, 4.862, 2.613, 1.593, 0.7630, 0.4584, 0.2217],
    "air_en": [4.742, 1.334, 0.5389, 0.1537, 0.06833, 0.04098, 0.03041, 0.02407, 0.02325, 0.02496],
}
# materials with absorption edges in the diagnostic range: (keV, mu/rho) pairs
_MU_EDGE = {
    "W": [(10, 96.9), (12.0, 70.0), (12.2, 180.0), (15, 138.9), (20, 65.73), (30, 22.73), (40, 10.67),
          (50, 5.949), (60, 3.713), (69.52, 2.552), (69.53, 11.23), (80, 7.81), (100, 4.438), (150, 1.581)],
    "CsI": [(10, 160.0), (20, 33.0), (30, 11.5), (33.16, 8.9), (33.17, 22.5), (35.98, 18.4), (35.99, 33.5),
            (40, 26.0), (50, 14.5), (60, 8.9), (80, 4.2), (100, 2.4), (150, 0.9)],
    "GOS": [(10, 170.0), (20, 38.0), (30, 13.0), (40, 6.2), (50.23, 3.5), (50.24, 16.0), (60, 10.2),
            (80, 4.9), (100, 2.8), (150, 1.0)],
    "BaFBr": [(10, 120.0), (20, 26.0), (30, 9.5), (37.43, 5.3), (37.44, 22.0), (40, 19.0), (50, 10.5),
              (60, 6.6), (80, 3.2), (100, 1.85), (150, 0.75)],
}
RHO = {"water": 1.03, "fat": 0.95, "bone": 1.92, "al": 2.699, "cu": 8.96, "W": 19.3}
HA_PER_BONE = 1.083  # g HA per cm3 of ICRU cortical bone (Ca 22.5 % by mass)


def mu_rho(mat, E):
    E = np.asarray(E, float)
    if mat in _MU10:
        return np.exp(np.interp(np.log(E), np.log(_E10), np.log(_MU10[mat])))
    t = np.array(_MU_EDGE[mat])
    return np.exp(np.interp(np.log(E), np.log(t[:, 0]), np.log(t[:, 1])))


class Spectrum:
    """Tungsten-anode spectrum (photons / mm^2 / mAs / keV at 1 m) after filtration."""

    ANODE_DEPTH_CM = 1.6e-4  # mean depth of photon production in the anode

    def __init__(self, kvp, al_mm, cu_mm, anode_deg=12.0):
        self.kvp = kvp
        E = np.arange(10.5, kvp, 1.0)
        N = np.maximum(kvp - E, 0.0) / E  # Kramers continuum (relative)
        if kvp > 69.7:  # tungsten K lines
            tot = 0.45 * (kvp / 69.5 - 1.0) ** 1.2 * N.sum()
            for e_line, w in ((59.3, 1.0), (58.0, 0.58), (67.2, 0.33), (69.1, 0.09)):
                N[int(e_line - 10.0)] += tot * w / 2.0
        self.anode = math.radians(anode_deg)
        self.muW = mu_rho("W", E) * RHO["W"]
        N = N * np.exp(-self.muW * self.ANODE_DEPTH_CM / math.sin(self.anode))
        N = N * np.exp(-mu_rho("al", E) * RHO["al"] * al_mm / 10.0 - mu_rho("cu", E) * RHO["cu"] * cu_mm / 10.0)
        self.E = E
        self.N = N * _OUTPUT_CONST

    def kerma_1m(self):
        """air kerma per mAs at 1 m in uGy"""
        return float(np.sum(self.N * self.E * mu_rho("air_en", self.E)) * 1.602e-5)

    def heel(self, phi):
        """relative anode self-filtration factor, shape (nE, len(phi)); phi = angle towards cathode"""
        th = np.maximum(self.anode + phi, math.radians(1.2))
        extra = self.ANODE_DEPTH_CM * (1.0 / np.sin(th) - 1.0 / math.sin(self.anode))
        return np.exp(-self.muW[:, None] * extra[None, :])


def _output_const():
    # tube output: 70 uGy/mAs at 1 m for 80 kVp, 2.5 mm Al
    global _OUTPUT_CONST
    _OUTPUT_CONST = 1.0
    s = Spectrum(80.0, 2.5, 0.0)
    _OUTPUT_CONST = 70.0 / s.kerma_1m()


_OUTPUT_CONST = 1.0
_output_const()


# ----------------------------------------------------------------------------------------------
# Geometry: rotations and quadric solids
# ----------------------------------------------------------------------------------------------
def rx(t):
    c, s = math.cos(t), math.sin(t)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], float)


def ry(t):
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], float)


def rz(t):
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], float)


def unit(v):
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


class Solid:
    """Intersection of constraints Q(p) <= 0 minus disjoint regions Q(p) > 0 (concave caps).

    A constraint is (A, m, g, c) with Q(p) = (p-m)^T A (p-m) + g.(p-m) + c; A None for a plane.
    """

    __slots__ = ("cons", "excl", "pts")

    def __init__(self, pts):
        self.cons, self.excl = [], []
        self.pts = np.asarray(pts, float).reshape(-1, 3)

    def add(self, R, m, diag=None, g_local=(0, 0, 0), c=-1.0, excl=False):
        A = None if diag is None else (R * np.asarray(diag, float)[None, :]) @ R.T
        (self.excl if excl else self.cons).append((A, np.asarray(m, float), R @ np.asarray(g_local, float), float(c)))
        return self

    def add_world(self, A, m, g, c, excl=False):
        (self.excl if excl else self.cons).append((A, np.asarray(m, float), np.asarray(g, float), float(c)))
        return self

    def copy(self):
        s = Solid(self.pts)
        s.cons, s.excl = list(self.cons), list(self.excl)
        return s


def box_pts(m, R, ext):
    ex = np.asarray(ext, float)
    corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float) * ex
    return np.asarray(m, float) + corners @ R.T


def ellipsoid(m, R, r):
    r = np.asarray(r, float)
    return Solid(box_pts(m, R, r)).add(R, m, 1.0 / r ** 2)


def segment(p0, p1, ra, rb, up=(0, 0, 1), n0=None, n1=None):
    """elliptic cylinder from p0 to p1; ra along 'up', rb across; end planes with normals n0, n1"""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    w = unit(p1 - p0)
    u = np.asarray(up, float) - np.dot(up, w) * w
    if np.linalg.norm(u) < 1e-6:
        u = np.cross(w, [1.0, 0, 0])
    u = unit(u)
    v = np.cross(w, u)
    R = np.stack([u, v, w], axis=1)
    n0 = w if n0 is None else unit(n0)
    n1 = w if n1 is None else unit(n1)
    L = np.linalg.norm(p1 - p0)
    m = 0.5 * (p0 + p1)
    pad = max(ra, rb)
    s = Solid(box_pts(m, R, (ra, rb, 0.5 * L + pad)))
    s.add(R, m, (1.0 / ra ** 2, 1.0 / rb ** 2, 0.0))
    s.add_world(None, p0, -n0, 0.0)
    s.add_world(None, p1, n1, 0.0)
    return s


def chain_segments(pts, ra, rb, up=(0, 0, 1), shrink=0.0):
    """segments along a polyline, joined on bisector planes (no overlap, no gap)"""
    pts = [np.asarray(p, float) for p in pts]
    dirs = [unit(pts[i + 1] - pts[i]) for i in range(len(pts) - 1)]
    out = []
    for i in range(len(dirs)):
        n0 = dirs[i] if i == 0 else unit(dirs[i - 1] + dirs[i])
        n1 = dirs[i] if i == len(dirs) - 1 else unit(dirs[i] + dirs[i + 1])
        a = ra[i] if np.ndim(ra) else ra
        b = rb[i] if np.ndim(rb) else rb
        out.append(segment(pts[i], pts[i + 1], max(a - shrink, 0.3), max(b - shrink, 0.3), up, n0, n1))
    return out


def body_solid(m, R, a, b, ht, hb, flare, st, sb, kt, kb, post):
    """vertebral body: waisted elliptic cylinder, tilted endplate planes, cupped endplates,
    flattened posterior wall.  Local frame: x lateral, y posterior, z along the body axis."""
    h = 0.5 * (ht + hb)
    k = flare / h ** 2
    ext = (a * math.sqrt(1 + flare) + 1, b * math.sqrt(1 + flare) + 1, max(ht, hb) + abs(st) * b + abs(sb) * b + 1)
    s = Solid(box_pts(m, R, ext))
    s.add(R, m, (1 / a ** 2, 1 / b ** 2, -k))
    s.add(R, m, None, (0, -st, 1), -ht)          # z <= ht + st*y
    s.add(R, m, None, (0, sb, -1), -hb)          # z >= -hb + sb*y
    s.add(R, m, None, (0, 1, 0), -post)          # y <= post
    if kt > 0.05:
        s.add(R, m, (-kt / a ** 2, -kt / b ** 2, 0), (0, -st, 1), -ht + kt, excl=True)
    if kb > 0.05:
        s.add(R, m, (-kb / a ** 2, -kb / b ** 2, 0), (0, sb, -1), -hb + kb, excl=True)
    return s


def body_inside(x, y, z, a, b, ht, hb, flare, st, sb, kt, kb, post):
    """same body as body_solid, evaluated on local coordinate arrays (broadcast)"""
    h = 0.5 * (ht + hb)
    rxy = x ** 2 / a ** 2 + y ** 2 / b ** 2
    ok = rxy - flare / h ** 2 * z ** 2 <= 1.0
    ok &= z <= ht + st * y - kt * (1 - rxy)
    ok &= z >= -hb + sb * y + kb * (1 - rxy)
    ok &= (z <= ht + st * y) & (z >= -hb + sb * y) & (y <= post)
    return ok


def frustum(p_top, R, L, w0, d0, w1):
    """truncated elliptic cone: top face centred at p_top (local z = R[:,2] points up), length L
    downwards, half-axes (w0, d0) at the top shrinking linearly (w1 at the bottom)"""
    za = L * w0 / (w0 - w1)
    up = R[:, 2]
    apex = p_top - za * up
    s = Solid(box_pts(p_top - 0.5 * L * up, R, (w0 + 1, d0 + 1, 0.5 * L + 1)))
    s.add(R, apex, (1 / w0 ** 2, 1 / d0 ** 2, -1 / za ** 2), c=0.0)
    s.add(R, p_top, None, (0, 0, 1), 0.0)
    s.add(R, p_top - L * up, None, (0, 0, -1), 0.0)
    return s


# ----------------------------------------------------------------------------------------------
# Trabecular micro-architecture (voxel model inside each vertebral body)
# ----------------------------------------------------------------------------------------------
VOX = 0.55  # mm


def _grf3(rng, shape, vs, lx, ly, lz, lcut):
    n = rng.standard_normal(shape).astype(np.float32)
    F = np.fft.rfftn(n)
    kx = np.fft.fftfreq(shape[0], vs)[:, None, None]
    ky = np.fft.fftfreq(shape[1], vs)[None, :, None]
    kz = np.fft.rfftfreq(shape[2], vs)[None, None, :]
    H = np.exp(-2 * np.pi ** 2 * ((lx * kx) ** 2 + (ly * ky) ** 2 + (lz * kz) ** 2))
    H *= 1 - np.exp(-2 * np.pi ** 2 * lcut ** 2 * (kx ** 2 + ky ** 2 + kz ** 2))
    f = np.fft.irfftn(F * H, s=shape, axes=(0, 1, 2)).astype(np.float32)
    return f / (f.std() + 1e-9)


def trabecular_volume(rng, bp, f_t, arch):
    """voxel bone fraction (cortical-bone equivalent) in the body's local frame"""
    a, b, ht, hb, fl = bp["a"], bp["b"], bp["ht"], bp["hb"], bp["flare"]
    ex = a * math.sqrt(1 + fl) + VOX
    ey = b * math.sqrt(1 + fl) + VOX
    ez = max(ht, hb) + abs(bp["st"]) * b + abs(bp["sb"]) * b + VOX
    nx, ny, nz = (int(2 * e / VOX) + 2 for e in (ex, ey, ez))
    xs = (np.arange(nx) - (nx - 1) / 2) * VOX
    ys = (np.arange(ny) - (ny - 1) / 2) * VOX
    zs = (np.arange(nz) - (nz - 1) / 2) * VOX
    mask = body_inside(xs[:, None, None], ys[None, :, None], zs[None, None, :],
                       a, b, ht, hb, fl, bp["st"], bp["sb"], bp["kt"], bp["kb"], bp["post"])
    n1 = _grf3(rng, (nx, ny, nz), VOX, arch["lh"], arch["lh"], arch["lv"], 3.0)
    n2 = _grf3(rng, (nx, ny, nz), VOX, 1.2, 1.2, 1.2 * arch["perf_elong"], 6.0)
    an = np.abs(n1)
    inside = mask.sum()
    if inside < 10:
        return None
    eps = float(np.quantile(an[mask], arch["fill"]))
    sheet = np.clip((eps - an) / (0.6 * eps) + 0.5, 0.0, 1.0)
    qp = float(np.quantile(n2[mask], arch["perf"]))
    keep = np.clip((n2 - qp) / 0.35 + 0.5, 0.0, 1.0)
    vol = sheet * keep * mask
    tot = float(vol.sum())
    if tot <= 0:
        return None
    vol *= np.float32(f_t * inside / tot)
    return {"vol": vol.astype(np.float32), "org": np.array([xs[0], ys[0], zs[0]]), "shape": (nx, ny, nz)}


# ----------------------------------------------------------------------------------------------
# Demographics and the bone-density model
# ----------------------------------------------------------------------------------------------
REF_BMD = {"F": (1.047, 0.110), "M": (1.070, 0.120)}  # young-adult L1-L4 mean, sd (g/cm2)


def label_of(t):
    return 0 if t >= -1.0 else (2 if t <= -2.5 else 1)


def draw_demographics(seed, idx):
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(idx), 11]))
    sex = "F" if rng.random() < 0.78 else "M"
    while True:
        t = rng.normal(-1.75, 1.6)
        if -4.5 <= t <= 2.0:
            break
    t = round(t, 2)
    mean_age = 67.0 if sex == "F" else 65.0
    while True:
        age = mean_age - 2.6 * (t + 1.75) + rng.normal(0.0, 10.3)
        if 38 <= age <= 92:
            break
    m, s = REF_BMD[sex]
    bmd = round(m + t * s, 3)
    return {"sex": sex, "t": t, "age": int(age), "bmd": bmd, "label": label_of(t)}


def trabecular_vbmd(t):
    """mg HA / cm3 for a T-score (QCT-like scale)"""
    return 25.0 + 160.0 * math.exp(0.33 * t) if t <= 0 else 185.0 + 42.0 * t


# ----------------------------------------------------------------------------------------------
# Anatomy
# ----------------------------------------------------------------------------------------------
LEVELS = ["T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5"]
BODY_H = [19.5, 20.5, 21.5, 22.5, 24.5, 25.5, 26.0, 26.0, 25.5]
BODY_A = [15.5, 16.5, 18.0, 19.5, 20.5, 21.5, 23.0, 24.0, 25.5]
BODY_B = [13.2, 13.6, 14.1, 14.6, 15.0, 15.8, 16.3, 16.5, 16.5]
DISC_BELOW = [5.5, 6.0, 6.5, 7.5, 9.0, 10.0, 11.0, 11.5, 10.5]
PED_W = [3.2, 3.3, 3.6, 3.9, 3.9, 4.3, 5.0, 6.0, 8.0]
PED_H = [7.0, 7.2, 7.5, 7.8, 7.8, 7.8, 7.6, 7.4, 7.0]
IPD = [17.0, 17.5, 18.0, 19.0, 21.0, 22.0, 23.0, 24.5, 27.0]
PED_CONV = [0, 0, 2, 5, 8, 10, 13, 17, 25]
TP_LEN = [19, 18, 13, 9, 15, 20, 26, 22, 18]
SP_SLOPE = [55, 45, 35, 25, 15, 12, 10, 10, 14]
SP_LEN = [38, 36, 32, 30, 30, 30, 30, 28, 24]
# lordosis share of (disc below, body) for L5..L1; thoracic angles in degrees (negative = kyphotic)
LORD_SHARE = {"L5": (0.28, 0.10), "L4": (0.20, 0.05), "L3": (0.14, 0.03), "L2": (0.10, 0.02), "L1": (0.07, 0.01)}
THOR_DEG = {"T12": (-1.0, -2.5), "T11": (-1.5, -3.0), "T10": (-1.5, -3.0), "T9": (-1.5, -3.0)}
DEGEN_W = {"T9": 0.3, "T10": 0.3, "T11": 0.35, "T12": 0.4, "L1": 0.45, "L2": 0.55, "L3": 0.7, "L4": 1.0, "L5": 1.0}
FRACT_W = {"T9": 0.4, "T10": 0.5, "T11": 0.8, "T12": 1.6, "L1": 1.6, "L2": 1.0, "L3": 0.7, "L4": 0.5, "L5": 0.3}


class Patient:
    pass


def build_patient(demo, rng):
    P = Patient()
    P.demo = demo
    sex, age, t = demo["sex"], demo["age"], demo["t"]
    male = sex == "M"
    # ---- habitus
    P.height = float(np.clip(rng.normal(175.0 if male else 162.0, 7.0) - 0.08 * max(age - 50, 0), 145, 200))
    P.bmi = float(np.clip(rng.lognormal(math.log(27.0), 0.17), 17.0, 46.0))
    P.weight = P.bmi * (P.height / 100.0) ** 2
    sv = (P.height / 168.0) * (1.07 if male else 1.0) * rng.normal(1.0, 0.035)
    sp = (P.height / 168.0) * (1.0 if male else 1.05) * rng.normal(1.0, 0.04)
    P.sv, P.sp = sv, sp
    # ---- age-related degeneration (independent of T given age)
    sev = float(np.clip(rng.normal((age - 42) / 40.0, 0.22), 0.0, 1.2))
    P.sev = sev
    degen = {lv: float(np.clip(sev * DEGEN_W[lv] + rng.normal(0, 0.15), 0, 1)) for lv in LEVELS}
    P.degen = degen
    # DXA-artefact: degenerative change inflates the measured T; image bone follows the true T
    dxa_shift = 0.9 * np.mean([degen[l] for l in ("L2", "L3", "L4", "L5")]) ** 1.5
    t_true = t - dxa_shift + rng.normal(0.0, 0.28)
    P.t_true = t_true
    size_ratio = (sv / 1.0) ** 1.0
    vb = trabecular_vbmd(t_true) * size_ratio ** -0.5 * rng.normal(1.0, 0.04)
    P.vbmd = vb
    f_t = vb / 1000.0 / HA_PER_BONE
    tc = float(np.clip(0.70 + 0.10 * t_true + rng.normal(0, 0.05), 0.3, 1.1))
    rc = float(np.clip(0.90 + 0.025 * t_true, 0.7, 0.98))
    fp = float(np.clip(0.68 + 0.05 * t_true + rng.normal(0, 0.025), 0.4, 0.82))
    ff = float(np.clip(0.22 + 0.006 * (age - 30) - 0.045 * t_true + rng.normal(0, 0.06), 0.1, 0.8))
    tneg = float(np.clip(-t_true, -2.0, 5.0))
    arch = {"lh": 0.45 + 0.03 * max(tneg, 0), "lv": 0.65 + 0.32 * (tneg + 2.0),
            "fill": float(np.clip(0.42 - 0.045 * tneg, 0.18, 0.55)),
            "perf": float(np.clip(0.10 + 0.07 * (tneg + 1.0), 0.02, 0.5)),
            "perf_elong": 1.0 + 0.25 * max(tneg, 0)}
    P.bone = dict(f_t=f_t, tc=tc, rc=rc, fp=fp, ff=ff, arch=arch)
    # ---- fractures
    pfx = 1.0 / (1.0 + math.exp(-(-4.2 - 0.95 * t_true + 0.035 * (age - 65))))
    fract = {}
    if rng.random() < pfx:
        nfx = 1 + int(rng.random() < 0.35) + int(rng.random() < 0.12)
        w = np.array([FRACT_W[l] for l in LEVELS])
        for lv in rng.choice(LEVELS, size=nfx, replace=False, p=w / w.sum()):
            grade = float(np.clip(rng.choice([0.22, 0.32, 0.45], p=[0.45, 0.35, 0.2]) + rng.normal(0, 0.03), 0.18, 0.6))
            kind = rng.choice(["wedge", "biconcave", "crush"], p=[0.55, 0.3, 0.15])
            fract[str(lv)] = (str(kind), grade)
    P.fract = fract
    comps = []          # (kind, ...) components in patient frame
    P.bodies = []       # vertebral bodies with trabecular volumes
    # ---- sagittal chain from S1 upwards
    LL = float(np.clip(rng.normal(44.0, 9.0), 18.0, 68.0))
    SS = float(np.clip(rng.normal(0.55 * LL + 14.0, 5.0), 18.0, 55.0))
    P.LL, P.SS = LL, SS
    theta = -math.radians(SS)
    pos = np.zeros(3)
    elems = {}
    for i in range(len(LEVELS) - 1, -1, -1):
        lv = LEVELS[i]
        dh = DISC_BELOW[i] * sv * (1.0 - 0.55 * degen[lv]) * rng.normal(1.0, 0.06)
        bh = BODY_H[i] * sv * rng.normal(1.0, 0.03)
        if lv in LORD_SHARE:
            sd_, sb_ = LORD_SHARE[lv]
            dth_d, dth_b = math.radians(sd_ * LL), math.radians(sb_ * LL)
        else:
            dd, db = THOR_DEG[lv]
            dth_d, dth_b = math.radians(dd), math.radians(db)
        fa = fm = fpst = 0.0
        if lv in fract:
            kind, g = fract[lv]
            if kind == "wedge":
                fa, fm, fpst = g, 0.5 * g, 0.03
            elif kind == "biconcave":
                fa, fm, fpst = 0.3 * g, g, 0.05
            else:
                fa, fm, fpst = g, g, 0.7 * g
        bb = BODY_B[i] * sv
        dth_b += -math.atan(bh * (fa - fpst) / (2 * bb))
        bh_eff = bh * (1.0 - 0.5 * (fa + fpst))
        # disc below
        u = np.array([0.0, math.sin(theta + dth_d / 2), math.cos(theta + dth_d / 2)])
        elems["disc_" + lv] = dict(center=pos + 0.5 * dh * u, theta=theta + dth_d / 2, h=dh)
        pos = pos + dh * u
        theta += dth_d
        u = np.array([0.0, math.sin(theta + dth_b / 2), math.cos(theta + dth_b / 2)])
        elems[lv] = dict(center=pos + 0.5 * bh_eff * u, theta=theta + dth_b / 2, dth=dth_b, h=bh_eff,
                         a=BODY_A[i] * sv * rng.normal(1.0, 0.03), b=bb, i=i, fm=max(fm - 0.5 * (fa + fpst), 0.0))
        pos = pos + bh_eff * u
        theta += dth_b
    # ---- supine on the table: rotate the whole chain so that L1-L5 lie along the table on average
    mean_th = float(np.mean([elems[l]["theta"] for l in ("L1", "L2", "L3", "L4", "L5")]))
    rot = -mean_th + math.radians(rng.normal(0.0, 3.0))
    Rr = rx(-rot)
    for k in elems:
        elems[k]["center"] = Rr @ elems[k]["center"]
        elems[k]["theta"] += rot
    theta_s1 = -math.radians(SS) + rot      # S1 endplate axis after levelling
    P.SS = SS - math.degrees(rot)
    # ---- coronal curve and axial rotation
    z_lo, z_hi = 0.0, elems["T11"]["center"][2]
    if rng.random() < 0.08 + 0.45 * max(sev - 0.4, 0):
        cobb = rng.uniform(10.0, 32.0)
    else:
        cobb = abs(rng.normal(0.0, 3.0))
    amp = (z_hi - z_lo) * math.tan(math.radians(cobb) / 2) / math.pi * rng.choice([-1, 1])
    P.cobb = cobb
    rot_max = math.radians(cobb / 2.5)
    for lv in LEVELS:
        e = elems[lv]
        z = e["center"][2]
        ph = np.clip((z - z_lo) / (z_hi - z_lo), 0, 1.2) * math.pi
        e["center"] = e["center"] + np.array([amp * math.sin(ph), 0, 0])
        e["phi"] = math.atan(amp * math.pi / (z_hi - z_lo) * math.cos(ph))
        e["psi"] = rot_max * math.sin(ph) * np.sign(amp) + math.radians(rng.normal(0, 1.2))
        d = elems["disc_" + lv]
        zd = d["center"][2]
        phd = np.clip((zd - z_lo) / (z_hi - z_lo), 0, 1.2) * math.pi
        d["center"] = d["center"] + np.array([amp * math.sin(phd), 0, 0])
        d["phi"] = math.atan(amp * math.pi / (z_hi - z_lo) * math.cos(phd))
    shift = -elems["L3"]["center"].copy()   # L3 to the origin; pelvis keeps half the lateral shift
    shift[0] *= 0.5
    for k in elems:
        elems[k]["center"] = elems[k]["center"] + shift
    P.elems = elems
    s1_top = shift.copy()  # S1 endplate centre
    P.levels_z = {lv: elems[lv]["center"][2] for lv in LEVELS}
    bone = P.bone
    # ---- vertebrae
    for lv in LEVELS:
        e = elems[lv]
        i = e["i"]
        R = ry(e["phi"]) @ rx(-e["theta"]) @ rz(e["psi"])
        e["R"] = R
        a, b, h = e["a"], e["b"], 0.5 * e["h"]
        d_up = degen[LEVELS[i - 1]] if i > 0 else degen[lv] * 0.6
        d_dn = degen[lv]
        st, sb = -math.tan(e["dth"] / 2), math.tan(e["dth"] / 2)
        kt = kb = rng.uniform(0.4, 1.1) * sv        # normal endplate concavity (mm)
        if lv in fract:
            kk = fract[lv][1] * 2 * h * (1.0 if fract[lv][0] == "biconcave" else 0.35)
            kt += 0.55 * kk + e["fm"] * h
            kb += 0.45 * kk
        post = 0.8 * b
        flare = rng.uniform(0.12, 0.22)
        te_t = tc + 0.15 + 1.6 * max(d_up - 0.3, 0)   # endplate sclerosis next to degenerated discs
        te_b = tc + 0.15 + 1.6 * max(d_dn - 0.3, 0)
        cap = 0.7 * (2 * h - te_t - te_b)              # the two cups must never meet
        if kt + kb > cap:
            kt, kb = kt * cap / (kt + kb), kb * cap / (kt + kb)
        outer = body_solid(e["center"], R, a, b, h, h, flare, st, sb, kt, kb, post)
        bp_in = dict(a=a - tc, b=b - tc, ht=h - te_t, hb=h - te_b, flare=flare, st=st, sb=sb, kt=kt, kb=kb,
                     post=post - tc)
        inner = body_solid(e["center"], R, bp_in["a"], bp_in["b"], bp_in["ht"], bp_in["hb"], flare, st, sb, kt, kb,
                           bp_in["post"])
        ft_l = bone["f_t"] * rng.normal(1.0, 0.04) * (0.97 if lv.startswith("T") else 1.0)
        tv = trabecular_volume(rng, bp_in, ft_l, bone["arch"])
        comps.append(("vbody", outer, inner, dict(rc=bone["rc"], ff=bone["ff"], ft=ft_l, tv=tv, R=R,
                                                  c=e["center"].copy())))
        P.bodies.append((lv, e["center"].copy(), a, b, h))
        # posterior elements (local frame of this vertebra)
        fp = bone["fp"] * rng.normal(1.0, 0.04)

        def W(p, R=R, c=e["center"]):
            return c + R @ np.asarray(p, float)

        wp, hp = PED_W[i] * sv, PED_H[i] * sv
        ipd = IPD[i] * sv
        conv = math.radians(PED_CONV[i])
        thor = lv.startswith("T")
        for side in (-1, 1):
            xp = side * (0.5 * ipd + wp)
            y0, y1 = 0.72 * b, b + 15 * sv
            x0 = xp - side * (y1 - y0) * math.tan(conv)
            p0, p1 = W((x0, y0, 0.18 * h)), W((xp, y1, 0.18 * h))
            ped_o = segment(p0, p1, hp, wp, R[:, 2])
            ped_i = segment(p0, p1, hp - 1.3, max(wp - 1.3, 0.6), R[:, 2])
            comps.append(("bone", ped_o, ped_i, dict(rc=bone["rc"], ft=0.8 * bone["f_t"], ff=bone["ff"])))
            # lamina to the spinous base
            comps.append(("sbone", segment(W((xp, y1 - 2, 0.1 * h)), W((0, b + 32 * sv, -0.25 * h)), 10 * sv,
                                           3.0 * sv, R[:, 2]), 0.6 * fp))
            # transverse process
            ltp = TP_LEN[i] * sv * rng.normal(1.0, 0.06)
            if thor:
                tp_end = (xp + side * 0.7 * ltp, y1 + 0.55 * ltp, 0.15 * h)
            else:
                tp_end = (xp + side * ltp, y1 + 4, 0.15 * h + 2)
            rtp = (4.5 if lv != "L5" else 7.0) * sv
            comps.append(("sbone", segment(W((xp, y1 - 3, 0.12 * h)), W(tp_end), rtp, 3.4 * sv, R[:, 2]), 0.7 * fp))
            # articular processes, enlarged and denser with facet arthrosis
            gu, gd = 1 + 0.35 * d_up, 1 + 0.35 * d_dn
            comps.append(("sbone", ellipsoid(W((xp + side * 1.5, b + 19 * sv, h + 3 * sv)), R,
                                             (3.6 * sv * gu, 5 * sv * gu, 7.5 * sv)), 0.5 * fp * (1 + 0.3 * d_up)))
            comps.append(("sbone", ellipsoid(W((xp - side * 2.5, b + 24 * sv, -h - 4 * sv)), R,
                                             (3.6 * sv * gd, 4.5 * sv * gd, 8 * sv)), 0.5 * fp * (1 + 0.3 * d_dn)))
        # spinous process
        sl = math.radians(SP_SLOPE[i])
        Lsp = SP_LEN[i] * sv
        sp0 = np.array([0, b + 30 * sv, -0.2 * h])
        sp1 = sp0 + Lsp * np.array([0, math.cos(sl), -math.sin(sl)])
        comps.append(("sbone", segment(W(sp0), W(sp1), (9.0 if not thor else 6.5) * sv, 3.0 * sv, R[:, 2]), 0.55 * fp))
        comps.append(("sbone", ellipsoid(W(sp1), R, (3.5 * sv, 4 * sv, 6.0 * sv)), 0.45 * fp))
        e["sp_tip"] = W(sp1)
        # osteophytes at degenerated endplates
        for zsgn, dg in ((1, d_up), (-1, d_dn)):
            n_o = rng.poisson(4.0 * max(dg - 0.25, 0) ** 1.5)
            for _ in range(int(n_o)):
                ang = rng.uniform(-math.pi * 0.85, math.pi * 0.85) + math.pi / 2  # mostly anterior / lateral
                dirv = np.array([math.cos(ang), -abs(math.sin(ang)) if rng.random() < 0.7 else math.sin(ang), 0.0])
                dirv = unit(dirv)
                size = rng.uniform(2.0, 7.5) * dg * sv
                rim = np.array([dirv[0] * a * 1.05, dirv[1] * b * 1.05, zsgn * (h - 0.5)])
                cen = rim + dirv * 0.55 * size + np.array([0, 0, zsgn * 0.35 * size])
                Ro = R @ rz(math.atan2(dirv[1], dirv[0]))
                comps.append(("sbone", ellipsoid(W(cen), Ro, (size, 0.6 * size + 1, 0.55 * size + 1)), 0.75))
        # disc below: vacuum phenomenon
        d = elems["disc_" + lv]
        if degen[lv] > 0.65 and rng.random() < 0.35:
            Rd = ry(d["phi"]) @ rx(-d["theta"])
            comps.append(("gas", ellipsoid(d["center"], Rd, (0.55 * a, 0.45 * b, max(0.25 * d["h"], 0.8))), 0.9))
    # ---- ribs (T9-T12)
    A_rc = 128 * sp * rng.normal(1, 0.04)
    B_rc = 88 * sv
    y_rc = -28.0 * sv
    for lv, phi_end, slope in (("T9", 2.85, 0.42), ("T10", 2.6, 0.40), ("T11", 1.95, 0.36), ("T12", 1.35, 0.33)):
        if lv == "T12" and rng.random() < 0.08:
            continue
        e = elems[lv]
        R = e["R"]
        c = e["center"]
        phi_end *= rng.normal(1.0, 0.06)
        for side in (-1, 1):
            p0 = c + R @ np.array([side * (e["a"] * 0.8), e["b"] * 0.55, 0.25 * e["h"]])
            p1 = c + R @ np.array([side * (0.5 * IPD[e["i"]] * sv + 18 * sv), e["b"] + 22 * sv, 0.1 * e["h"]])
            pts = [p0, p1]
            ph1 = math.asin(np.clip((p1[0] * side) / A_rc, 0.05, 0.95))
            z = p1[2]
            prev = p1
            for ph in np.linspace(ph1 + 0.18, phi_end, 8):
                q = np.array([side * A_rc * math.sin(ph), y_rc + B_rc * math.cos(ph) + 0.0, 0.0])
                z -= slope * np.linalg.norm(q[:2] - prev[:2])
                q[2] = z
                pts.append(q)
                prev = q
            ra = np.array([3.8] + [4.8] * (len(pts) - 2)) * sv * (0.85 if lv == "T12" else 1.0)
            rb = np.array([3.2] + [2.6] * (len(pts) - 2)) * sv
            outs = chain_segments(pts, ra, rb)
            ins = chain_segments(pts, ra, rb, shrink=0.9)
            for so, si in zip(outs, ins):
                comps.append(("bone", so, si, dict(rc=bone["rc"] * 0.8, ft=0.4 * bone["f_t"], ff=bone["ff"])))
    # ---- sacrum: two shelled elliptic frustums (S1-S2 with the alae, S3-S5 curving forwards)
    th = theta_s1
    R1 = rx(-th)
    u1 = R1[:, 2]
    L1s, w0, d0, w1 = 60 * sv, 49 * sp, 19 * sv, 31 * sp
    th2 = th + math.radians(rng.normal(26, 5))
    R2 = rx(-th2)
    top2 = s1_top - (L1s - 1.5) * u1
    L2s, w2 = 52 * sv, 9 * sp
    sac_p = dict(rc=0.75 * bone["rc"], ft=0.38 * bone["f_t"], ff=min(bone["ff"] + 0.15, 0.9))
    so_, si_ = frustum(s1_top, R1, L1s, w0, d0, w1), frustum(s1_top - 1.2 * u1, R1, L1s - 2.4, w0 - 1.6, d0 - 1.6,
                                                             w1 - 1.2)
    mid_ = s1_top - 0.55 * L1s * u1
    for k_, f_ in enumerate((so_, si_)):   # round off the alae (upper lateral corners)
        f_.add(R1, mid_, (1 / (w0 * 1.04 - 1.6 * k_) ** 2, 1 / (4 * d0) ** 2, 1 / (0.78 * L1s - 1.2 * k_) ** 2))
    comps.append(("bone", so_, si_, sac_p))
    # sacral foramina: two rows of holes through the sacrum
    for k_ in range(4):
        fz = (0.25 + 0.25 * k_) * (L1s + L2s)
        fr = (L1s - 1.5)
        base = s1_top - fz * u1 if fz < fr else top2 - (fz - fr) * R2[:, 2]
        Rf = R1 if fz < fr else R2
        wz = w0 + (w1 - w0) * min(fz / L1s, 1.0) if fz < fr else w1 + (w2 - w1) * (fz - fr) / L2s
        for side in (-1, 1):
            cf = base + Rf @ np.array([side * 0.45 * wz, 0, 0])
            rf = (4.5 - 0.6 * k_) * sv
            dz_ = d0 * wz / w0 - 1.0
            comps.append(("sbone", segment(cf - dz_ * Rf[:, 1], cf + dz_ * Rf[:, 1], rf, rf), -0.8 * bone["f_t"]))
    d1 = d0 * w1 / w0
    comps.append(("bone", frustum(top2, R2, L2s, w1, d1, w2), frustum(top2 - 1.0 * R2[:, 2], R2, L2s - 2.0, w1 - 1.3,
                                                                      d1 - 1.3, w2 - 0.5), sac_p))
    P.s1 = s1_top - 0.5 * 26 * sv * u1
    # S1 body (promontory) inside the sacral frustum: adds the body's extra density and cortex
    hs1 = 12.5 * sv
    cs1 = s1_top - (hs1 + 0.3) * u1 + 2.0 * R1[:, 1]
    comps.append(("bone", body_solid(cs1, R1, 24 * sv, 16.5 * sv, hs1, hs1, 0.12, 0.0, 0.0, 0.7, 0.3, 0.8 * 16.5 * sv),
                  body_solid(cs1, R1, 23 * sv, 15.5 * sv, hs1 - 1.0, hs1 - 1.0, 0.12, 0.0, 0.0, 0.7, 0.3,
                             0.8 * 16.5 * sv - 1.0), dict(rc=0.5 * bone["rc"], ft=0.45 * bone["f_t"], ff=0.0)))
    fp_mean = bone["fp"]
    a1 = 26 * sp
    # ---- ilia, acetabula, femora
    crest_z = elems["disc_L4"]["center"][2] + rng.normal(0, 8)
    for side in (-1, 1):
        # iliac wing: shelled plate cut below, a dense crest rim along its upper edge
        wing_c = np.array([side * 84 * sp, s1_top[1] - 4, crest_z - 60 * sp])
        Rw = rz(-side * math.radians(36)) @ ry(side * math.radians(18))
        rw = np.array([76 * sp, 7.0, 60 * sp])
        wo, wi = ellipsoid(wing_c, Rw, rw), ellipsoid(wing_c, Rw, rw - np.array([2.0, 2.2, 2.0]))
        for w_ in (wo, wi):
            w_.add(Rw, wing_c, None, (0, 0, -1), -0.35 * rw[2])
        comps.append(("bone", wo, wi, dict(rc=bone["rc"], ft=1.0 * bone["f_t"], ff=bone["ff"])))
        rim = [wing_c + Rw @ np.array([0.96 * rw[0] * math.cos(f_), 0.0, 0.96 * rw[2] * math.sin(f_)])
               for f_ in np.linspace(math.radians(-12), math.radians(150), 8)]
        for sg in chain_segments(rim, 4.5, 6.0, up=tuple(Rw[:, 1])):
            comps.append(("sbone", sg, 0.55 * fp_mean))
        ibody0 = wing_c + Rw @ np.array([0.1 * rw[0], 0, -0.3 * rw[2]])
        ibody1 = np.array([side * 88 * sp, s1_top[1] - 24 * sv, s1_top[2] - 80 * sp])
        comps.append(("sbone", segment(ibody0, ibody1, 18 * sp, 14 * sv, (0, 1, 0)), 0.33 * fp_mean))
        # thick posterior ilium at the SI joint and the iliac body above the acetabulum
        psis = np.array([side * (a1 + 36 * sp), s1_top[1] + 30 * sv, s1_top[2] - 12])
        comps.append(("sbone", ellipsoid(psis, rz(side * 0.5), (12 * sp, 20 * sv, 32 * sv)), 0.3 * fp_mean))
        acet = np.array([side * 92 * sp, s1_top[1] - 30 * sv, s1_top[2] - 98 * sp])
        comps.append(("sbone", ellipsoid(acet, rz(side * 0.3), (26 * sp, 30 * sv, 16 * sp)), 0.32 * fp_mean))
        hc = np.array([side * 92 * sp, s1_top[1] - 32 * sv, s1_top[2] - 118 * sp])
        rh = (25.0 if male else 22.5) * sv
        comps.append(("bone", ellipsoid(hc, np.eye(3), (rh,) * 3), ellipsoid(hc, np.eye(3), (rh - 1.0,) * 3),
                      dict(rc=bone["rc"], ft=2.2 * bone["f_t"], ff=bone["ff"])))
        nk = hc + np.array([side * 48 * sp, 4, -34 * sp])
        comps.append(("bone", segment(hc, nk, 15 * sv, 13 * sv, (0, 1, 0)),
                      segment(hc, nk, 13.2 * sv, 11.2 * sv, (0, 1, 0)),
                      dict(rc=bone["rc"], ft=1.0 * bone["f_t"], ff=bone["ff"])))
        gt = nk + np.array([side * 10 * sp, 6, 0])
        comps.append(("sbone", ellipsoid(gt, np.eye(3), (17 * sp, 16 * sv, 22 * sv)), 0.3 * fp_mean))
    P.bone_comps = comps
    build_soft_tissue(P, rng)
    return P


def build_soft_tissue(P, rng):
    male = P.demo["sex"] == "M"
    age = P.demo["age"]
    bmi = P.bmi
    hs = P.height / 168.0
    comps = []
    # trunk: waisted quadric, separate flares above / below the waist
    A = 5.0 * (17.0 + 0.62 * bmi) * hs * rng.normal(1.0, 0.04) * (1.03 if male else 0.98)
    sat = (10.0 + 1.5 * (bmi - 18)) if not male else (6.0 + 1.1 * (bmi - 18))
    sat = max(sat * rng.lognormal(0, 0.2), 3.0)
    sat_post = 0.55 * sat
    sp_tip = max(P.elems[l]["sp_tip"][1] for l in ("L2", "L3", "L4"))
    y_back = sp_tip + 12.0 + sat_post
    B = max((40.0 + 2.75 * bmi) * rng.normal(1.0, 0.05) * (1.04 if male else 1.0), 0.5 * y_back + 45.0)
    y_c = y_back - B
    z_w = rng.normal(10.0, 15.0)
    fl_up = float(np.clip(rng.normal(0.10, 0.04), 0.0, 0.22))
    fl_dn = float(np.clip(rng.normal(0.09 if male else 0.2, 0.05) - 0.004 * (bmi - 25), 0.0, 0.32))
    P.trunk = dict(A=A, B=B, y_c=y_c, z_w=z_w, sat=sat)
    I3 = np.eye(3)

    def trunk_half(Ah, Bh, yc, fl, upper, extra=0.0):
        k = ((1 + fl) ** 2 - 1) / 200.0 ** 2
        m = np.array([0.0, yc, z_w])
        grow = math.sqrt(1 + k * 450 ** 2)
        zr = (z_w, z_w + 450) if upper else (z_w - 450, z_w)
        pts = [[sx * Ah * grow, yc + sy * Bh * grow, z] for sx in (-1, 1) for sy in (-1, 1) for z in zr]
        s = Solid(pts).add(I3, m, (1 / Ah ** 2, 1 / Bh ** 2, -k))
        if upper:
            s.add(I3, m, None, (0, 0, -1), 0.0)
        else:
            s.add(I3, m, None, (0, 0, 1), 0.0)
        return s

    # outer skin: fat everywhere; muscle-wall interior converts fat back to soft tissue
    sat_ant, sat_lat = sat, 0.9 * sat
    Bi = B - 0.5 * (sat_ant + sat_post)
    yci = y_c + 0.5 * (sat_ant - sat_post)
    for upper, fl in ((True, fl_up), (False, fl_dn)):
        comps.append(("trunk", trunk_half(A, B, y_c, fl, upper), 0.0, 1.0, 0.0))
        comps.append(("trunk", trunk_half(A - sat_lat, Bi, yci, fl, upper), 1.0, -1.0, 0.0))
    # abdominal cavity below the diaphragm (visceral fat, mottled), minus the spinal column
    vf = float(np.clip((0.07 + 0.012 * (bmi - 20) + 0.0025 * (age - 40)) * (1.45 if male else 1.0)
                       * rng.lognormal(0, 0.2), 0.03, 0.55))
    P.vf = vf
    wall = 13.0
    Ac, Bc = A - sat_lat - wall, Bi - wall
    dome_r = np.array([-0.45 * Ac, 0.0, P.levels_z["T10"] + rng.normal(8, 10)])
    dome_l = np.array([0.45 * Ac, 0.0, P.levels_z["T10"] + rng.normal(-8, 10)])
    kd = 0.0065
    for sgn, dome in ((-1, dome_r), (1, dome_l)):
        m = np.array([0.0, yci, z_w])
        kk = ((1 + 0.5 * (fl_up + fl_dn)) ** 2 - 1) / 200.0 ** 2
        pts = [[x0, y0, z0] for x0 in ((0, sgn * Ac * 1.2) if sgn > 0 else (sgn * Ac * 1.2, 0))
               for y0 in (yci - Bc * 1.2, 30.0) for z0 in (dome[2] + 5, -260.0)]
        s = Solid(pts).add(I3, m, (1 / Ac ** 2, 1 / Bc ** 2, -kk))
        s.add(I3, m, None, (0, 1, 0), -(30.0 - yci))           # y <= 30
        s.add(I3, np.array([0, 0, -260.0]), None, (0, 0, -1), 0.0)  # z >= -260
        s.add(I3, np.zeros(3), None, (-sgn, 0, 0), 0.0)          # this half (left / right)
        s.add_world(np.diag([kd, kd, 0.0]), dome, np.array([0, 0, 1.0]), 0.0)  # below the dome
        s.add_world(np.diag([-1 / 27.0 ** 2, -1 / 38.0 ** 2, 0.0]), np.array([0, 12.0, 0]),
                    np.zeros(3), 1.0, excl=True)                 # spinal column
        comps.append(("soft", s, -vf, vf, 0.3))
    # lung bases above the domes
    for sgn, dome in ((-1, dome_r), (1, dome_l)):
        m = np.array([sgn * 0.5 * Ac, yci + 10, dome[2] + 60])
        r = np.array([0.5 * Ac + 8, Bc * 0.95, 170.0])
        s = ellipsoid(m, I3, r)
        s.add_world(np.diag([-kd, -kd, 0.0]), dome, np.array([0, 0, -1.0]), 0.0, excl=True)
        comps.append(("soft", s, -0.78, 0.0, 0.0))
    # psoas muscles cut out of the retroperitoneal fat
    pm = (1.15 if male else 0.95) * (1.0 - 0.004 * max(age - 50, 0)) * P.sv
    el = P.elems
    for side in (-1, 1):
        pts = [el["T12"]["center"] + np.array([side * (el["T12"]["a"] + 5), 6, 0]),
               el["L2"]["center"] + np.array([side * (el["L2"]["a"] + 9), 2, 0]),
               el["L4"]["center"] + np.array([side * (el["L4"]["a"] + 15), -6, 0]),
               P.s1 + np.array([side * (el["L5"]["a"] + 32), -34, -40])]
        ra = np.array([9, 16, 22]) * pm
        for sgm in chain_segments(pts, ra, ra * 1.05, up=(0, 1, 0)):
            comps.append(("soft", sgm, vf, -vf, 0.0))
    # kidneys in perirenal fat
    zk = {1: 0.5 * (P.levels_z["T12"] + P.levels_z["L1"]), -1: P.levels_z["L1"] - 10}
    for side in (-1, 1):
        cen = np.array([side * (el["L1"]["a"] + 42), 32.0, zk[side] + rng.normal(0, 8)])
        Rk = rz(side * math.radians(25)) @ ry(side * math.radians(12))
        rk = np.array([26.0, 21.0, 53.0]) * P.sv
        pf = 0.9 - vf
        comps.append(("soft", ellipsoid(cen, Rk, rk + np.array([6, 6, 9]) * (0.5 + 0.03 * bmi)), -pf, pf, 0.0))
        comps.append(("soft", ellipsoid(cen, Rk, rk), 0.9, -0.9, 0.0))
    # bowel gas: colon frame, small bowel, stomach
    gas_amt = float(rng.beta(1.6, 2.4))
    P.gas = gas_amt
    ax = 0.58 * Ac
    colon = [(-ax, -35, -150), (-ax, -35, -60), (-ax, -40, 40), (-0.55 * Ac, -55, 95), (-0.2 * Ac, -0.75 * Bc, 30),
             (0.2 * Ac, -0.75 * Bc, 45), (0.6 * Ac, -55, 120), (ax + 5, -30, 60), (ax + 5, -30, -40),
             (ax, -35, -130), (0.3 * Ac, -50, -175), (0, -30, -200)]
    colon = [np.array(c, float) + np.array([0, yci, 0]) * np.array([0, 1, 0]) for c in colon]
    pts = []
    for p, q in zip(colon[:-1], colon[1:]):
        n = max(int(np.linalg.norm(q - p) / 22), 1)
        for s_ in np.linspace(0, 1, n, endpoint=False):
            pts.append(p + s_ * (q - p) + rng.normal(0, 4, 3))
    # gas-filled runs along the colon (two-state Markov chain), haustral radius modulation
    on = rng.random() < 0.3 + 0.5 * gas_amt
    run = []
    runs = []
    for p in pts:
        if on:
            run.append(p)
        elif len(run) > 1:
            runs.append(run)
            run = []
        else:
            run = []
        on = rng.random() < (0.55 + 0.35 * gas_amt if on else 0.12 + 0.3 * gas_amt)
    if len(run) > 1:
        runs.append(run)
    for run in runs:
        r = rng.uniform(9, 19) * (0.8 + 0.5 * gas_amt)
        frac = rng.uniform(0.35, 0.85)
        for k in range(len(run)):
            p0 = run[max(k - 1, 0)]
            p1 = run[min(k + 1, len(run) - 1)]
            ax_ = unit(p1 - p0 + 1e-6)
            tmp = np.cross(ax_, [0, 1.0, 0])
            tmp = unit(tmp) if np.linalg.norm(tmp) > 1e-3 else np.array([1.0, 0, 0])
            Rg = np.stack([ax_, np.cross(tmp, ax_), tmp], axis=1)
            rr = r * rng.uniform(0.75, 1.2)
            comps.append(("gas", ellipsoid(run[k], Rg, (rng.uniform(11, 16), rr, 0.85 * rr)), 0.55 * frac))
        if rng.random() < 0.5:  # stool: mottled small bubbles
            for _ in range(int(rng.integers(4, 12))):
                c_ = run[int(rng.integers(len(run)))] + rng.normal(0, 0.5 * r, 3)
                rb_ = rng.uniform(1.5, 4.0)
                comps.append(("gas", ellipsoid(c_, I3, (rb_,) * 3), 0.8))
    for _ in range(int(rng.poisson(1 + 5 * gas_amt))):
        cen = np.array([rng.uniform(-0.4, 0.4) * Ac, yci - rng.uniform(0.2, 0.75) * Bc, rng.uniform(-170, 40)])
        r = rng.uniform(4, 10)
        comps.append(("gas", ellipsoid(cen, rz(rng.uniform(0, 3.14)), (r, 0.7 * r, 0.9 * r)), rng.uniform(0.4, 0.9)))
    if rng.random() < 0.65:
        cen = np.array([0.35 * Ac, yci - 0.55 * Bc, dome_l[2] - 40 + rng.normal(0, 15)])
        r = rng.uniform(18, 34)
        comps.append(("gas", ellipsoid(cen, I3, (r, 0.6 * r, 0.8 * r)), rng.uniform(0.4, 0.9)))
    # aortic / iliac calcification (age and vascular risk; not T)
    risk = rng.lognormal(0, 0.7)
    lam = max(age - 45, 0) / 4.0 * risk
    n_pl = int(rng.poisson(lam))
    P.n_plaques = n_pl
    bf = el["L4"]["center"] + np.array([8.0, -el["L4"]["b"] - 14, -5])
    top = el["T12"]["center"] + np.array([10.0, -el["T12"]["b"] - 14, 0])
    r_ao = (11.0 if not male else 12.5) + 0.05 * max(age - 50, 0)
    for _ in range(n_pl):
        if rng.random() < 0.75:
            s_ = rng.beta(2.5, 1.2)
            ax_c = top + s_ * (bf - top)
            axis = unit(bf - top)
            ra_ = r_ao
        else:
            side = rng.choice([-1, 1])
            s_ = rng.uniform(0, 1)
            end = bf + np.array([side * 45, 10, -80])
            ax_c = bf + s_ * (end - bf)
            axis = unit(end - bf)
            ra_ = 0.7 * r_ao
        ang = rng.normal(0.0, 1.2)  # around posterior-lateral wall
        rad = unit(np.cross(axis, [0, 0, 1.0]) * math.sin(ang) + np.array([0, 1.0, 0]) * math.cos(ang))
        rad = unit(rad - np.dot(rad, axis) * axis)
        cen = ax_c + ra_ * rad
        tng = np.cross(axis, rad)
        Rp = np.stack([rad, tng, axis], axis=1)
        L_ = rng.uniform(2, 9)
        comps.append(("sbone", ellipsoid(cen, Rp, (rng.uniform(0.4, 1.0), rng.uniform(1.5, 5), L_)),
                      rng.uniform(0.5, 0.9)))
    P.soft_comps = comps


# ----------------------------------------------------------------------------------------------
# Ray casting
# ----------------------------------------------------------------------------------------------
class Tracer:
    """cone-beam chord lengths for the pixels of the collimated field (working resolution)"""

    def __init__(self, S, Cd, ecol, erow, nrm, pw, H, W, box):
        self.S, self.Cd, self.ecol, self.erow, self.n = S, Cd, ecol, erow, nrm
        self.pw, self.H, self.W = pw, H, W
        r0, r1, c0, c1 = box
        self.box = box
        jj = (np.arange(c0, c1) - (W - 1) / 2.0) * pw
        ii = (np.arange(r0, r1) - (H - 1) / 2.0) * pw
        D = Cd[None, None, :] + jj[None, :, None] * ecol[None, None, :] + ii[:, None, None] * erow[None, None, :] - S
        D /= np.linalg.norm(D, axis=2, keepdims=True)
        self.dx, self.dy, self.dz = (np.ascontiguousarray(D[..., k]) for k in range(3))
        self.pp = {"xx": self.dx * self.dx, "yy": self.dy * self.dy, "zz": self.dz * self.dz,
                   "xy": self.dx * self.dy, "xz": self.dx * self.dz, "yz": self.dy * self.dz}
        self.cos = (D @ nrm).astype(np.float32)
        self.shape = (r1 - r0, c1 - c0)
        self.mw = np.zeros(self.shape, np.float32)
        self.mf = np.zeros(self.shape, np.float32)
        self.mb = np.zeros(self.shape, np.float32)

    def project(self, X):
        X = np.asarray(X, float).reshape(-1, 3)
        V = X - self.S
        t = np.dot(self.Cd - self.S, self.n) / (V @ self.n)
        Pp = self.S + t[:, None] * V - self.Cd
        u = Pp @ self.ecol / self.pw + (self.W - 1) / 2.0
        v = Pp @ self.erow / self.pw + (self.H - 1) / 2.0
        return u, v

    def slice_of(self, pts):
        u, v = self.project(pts)
        r0, r1, c0, c1 = self.box
        a0 = max(int(math.floor(v.min())) - 1 - r0, 0)
        a1 = min(int(math.ceil(v.max())) + 2 - r0, r1 - r0)
        b0 = max(int(math.floor(u.min())) - 1 - c0, 0)
        b1 = min(int(math.ceil(u.max())) + 2 - c0, c1 - c0)
        if a1 <= a0 or b1 <= b0:
            return None
        return (slice(a0, a1), slice(b0, b1))

    @staticmethod
    def _roots(alpha, beta, gamma):
        disc = beta * beta - 4.0 * alpha * gamma
        ok = disc > 0
        sq = np.sqrt(np.maximum(disc, 0.0))
        q = -0.5 * (beta + np.copysign(sq, beta))
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = q / alpha
            t2 = gamma / q
        return ok, np.minimum(t1, t2), np.maximum(t1, t2)

    def chord(self, solid, sl):
        dx, dy, dz = self.dx[sl], self.dy[sl], self.dz[sl]
        lo = np.full(dx.shape, -np.inf)
        hi = np.full(dx.shape, np.inf)
        S = self.S

        def abc(A, m, g, c):
            sm = S - m
            if A is None:
                return None, g[0] * dx + g[1] * dy + g[2] * dz, float(g @ sm + c)
            alpha = 0.0
            for key, coef in (("xx", A[0, 0]), ("yy", A[1, 1]), ("zz", A[2, 2]), ("xy", 2 * A[0, 1]),
                              ("xz", 2 * A[0, 2]), ("yz", 2 * A[1, 2])):
                if abs(coef) > 1e-14:
                    alpha = alpha + coef * self.pp[key][sl]
            w = 2.0 * (A @ sm) + g
            return alpha, w[0] * dx + w[1] * dy + w[2] * dz, float(sm @ A @ sm + g @ sm + c)

        for con in solid.cons:
            alpha, beta, gamma = abc(*con)
            if alpha is None:
                with np.errstate(divide="ignore", invalid="ignore"):
                    t = -gamma / beta
                hi = np.where(beta > 0, np.minimum(hi, t), hi)
                lo = np.where(beta < 0, np.maximum(lo, t), lo)
                if gamma > 0:
                    hi = np.where(beta == 0, -np.inf, hi)
            else:
                if np.isscalar(alpha):
                    alpha = np.full(dx.shape, alpha)
                ok, r1, r2 = self._roots(alpha, beta, gamma)
                lo = np.maximum(lo, np.where(ok, r1, np.inf))
                hi = np.minimum(hi, np.where(ok, r2, -np.inf))
        L = np.maximum(hi - lo, 0.0)
        for con in solid.excl:
            alpha, beta, gamma = abc(*con)
            ok, r1, r2 = self._roots(np.minimum(alpha, -1e-18), beta, gamma)
            with np.errstate(invalid="ignore"):
                ov = np.minimum(hi, r2) - np.maximum(lo, r1)
            L -= np.where(ok & (ov > 0), ov, 0.0)
        return np.maximum(L, 0.0) * 0.1  # cm

    def trabecular_projection(self, tv, R, c, sl):
        """project a vertebra's voxel bone fraction along this view's rays (cm of bone)"""
        vol, org = tv["vol"], tv["org"]
        d_c = unit(c - self.S)
        dl = R.T @ d_c
        k = int(np.argmax(np.abs(dl)))
        i, j = [q for q in range(3) if q != k]
        si, sj = dl[i] / dl[k], dl[j] / dl[k]
        shp = vol.shape
        ext = [(org[q], org[q] + (shp[q] - 1) * VOX) for q in range(3)]
        tk = np.arange(shp[k]) * VOX + org[k]
        # output grid in the reference plane (t_k = 0) covering the sheared volume
        lo_i = ext[i][0] - abs(si) * max(abs(ext[k][0]), abs(ext[k][1]))
        hi_i = ext[i][1] + abs(si) * max(abs(ext[k][0]), abs(ext[k][1]))
        lo_j = ext[j][0] - abs(sj) * max(abs(ext[k][0]), abs(ext[k][1]))
        hi_j = ext[j][1] + abs(sj) * max(abs(ext[k][0]), abs(ext[k][1]))
        pi_ = np.arange(lo_i, hi_i + VOX, VOX)
        pj_ = np.arange(lo_j, hi_j + VOX, VOX)
        Pi, Pj, Tk = np.meshgrid(pi_, pj_, tk, indexing="ij")
        coords = [None] * 3
        coords[i] = (Pi + si * Tk - org[i]) / VOX
        coords[j] = (Pj + sj * Tk - org[j]) / VOX
        coords[k] = (Tk - org[k]) / VOX
        samp = ndimage.map_coordinates(vol, coords, order=1, mode="constant", cval=0.0, prefilter=False)
        proj = samp.sum(axis=2) * VOX * math.sqrt(1 + si * si + sj * sj)  # mm of bone
        # intersect the pixel rays with the reference plane through c, normal = local axis k
        ek = R[:, k]
        dx, dy, dz = self.dx[sl], self.dy[sl], self.dz[sl]
        den = dx * ek[0] + dy * ek[1] + dz * ek[2]
        t = float(np.dot(c - self.S, ek)) / den
        X0 = self.S[0] + t * dx - c[0]
        X1 = self.S[1] + t * dy - c[1]
        X2 = self.S[2] + t * dz - c[2]
        li = R[0, i] * X0 + R[1, i] * X1 + R[2, i] * X2
        lj = R[0, j] * X0 + R[1, j] * X1 + R[2, j] * X2
        out = ndimage.map_coordinates(proj.astype(np.float32), [(li - pi_[0]) / VOX, (lj - pj_[0]) / VOX],
                                      order=1, mode="constant", cval=0.0, prefilter=False)
        return out * 0.1  # cm

    def apply(self, comp, mottle):
        kind = comp[0]
        if kind in ("soft", "trunk"):
            _, s, dw, df, mot = comp
            sl = self.slice_of(s.pts)
            if sl is None:
                return
            L = self.chord(s, sl)
            if mot:
                fac = 1.0 + mot * mottle[sl]
                self.mw[sl] += (dw * L * fac).astype(np.float32)
                self.mf[sl] += (df * L * fac).astype(np.float32)
            else:
                if dw:
                    self.mw[sl] += (dw * L).astype(np.float32)
                if df:
                    self.mf[sl] += (df * L).astype(np.float32)
        elif kind == "gas":
            _, s, frac = comp
            sl = self.slice_of(s.pts)
            if sl is None:
                return
            self.mw[sl] -= (frac * self.chord(s, sl)).astype(np.float32)
        elif kind == "sbone":
            _, s, f = comp
            sl = self.slice_of(s.pts)
            if sl is None:
                return
            L = f * self.chord(s, sl)
            self.mb[sl] += L.astype(np.float32)
            self.mw[sl] -= L.astype(np.float32)
        elif kind in ("bone", "vbody"):
            _, so, si, p = comp
            sl = self.slice_of(so.pts)
            if sl is None:
                return
            Lo = self.chord(so, sl)
            Li = self.chord(si, sl)
            sh = np.maximum(Lo - Li, 0.0) * p["rc"]
            if kind == "vbody" and p["tv"] is not None:
                Bt = np.minimum(self.trabecular_projection(p["tv"], p["R"], p["c"], sl), Li)
            else:
                Bt = p["ft"] * Li
            marrow = np.maximum(Li - Bt, 0.0)
            self.mb[sl] += (sh + Bt).astype(np.float32)
            self.mw[sl] -= (sh + Bt + p["ff"] * marrow).astype(np.float32)
            self.mf[sl] += (p["ff"] * marrow).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Image helpers
# ----------------------------------------------------------------------------------------------
def rs(a, shape, method=Image.BILINEAR):
    h, w = int(shape[0]), int(shape[1])
    if a.shape == (h, w):
        return np.asarray(a, np.float32)
    im = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32))
    return np.array(im.resize((w, h), method), dtype=np.float32)


def blur(a, sigma):
    if sigma <= 0.05:
        return a
    if sigma < 4:
        return ndimage.gaussian_filter(a, sigma, mode="nearest", truncate=3.0)
    f = max(2, int(sigma / 2))
    h, w = a.shape
    small = rs(a, (max(h // f, 4), max(w // f, 4)), Image.BOX)
    small = ndimage.gaussian_filter(small, sigma / f, mode="nearest", truncate=3.0)
    return rs(small, (h, w), Image.BILINEAR)


def filtered_noise2(rng, shape, pw, lx, ly, lcut):
    n = rng.standard_normal(shape).astype(np.float32)
    F = np.fft.rfft2(n)
    fy = np.fft.fftfreq(shape[0], pw)[:, None]
    fx = np.fft.rfftfreq(shape[1], pw)[None, :]
    H = np.exp(-2 * np.pi ** 2 * ((lx * fx) ** 2 + (ly * fy) ** 2))
    if lcut:
        H = H * (1 - np.exp(-2 * np.pi ** 2 * lcut ** 2 * (fx ** 2 + fy ** 2)))
    out = np.fft.irfft2(F * H, s=shape).astype(np.float32)
    return out / (out.std() + 1e-9)


def pct(a, mask, qs):
    v = a[mask]
    if v.size > 200000:
        v = v[:: v.size // 200000 + 1]
    if v.size == 0:
        v = a.ravel()
    return np.percentile(v, qs)


_FONT_CACHE = {}


def font(size):
    size = int(max(size, 8))
    if size not in _FONT_CACHE:
        try:
            _FONT_CACHE[size] = ImageFont.load_default(size=size)
        except TypeError:
            _FONT_CACHE[size] = ImageFont.load_default()
    return _FONT_CACHE[size]


def text_mask(txt, size, bold=0):
    f = font(size)
    l, t, r, b = f.getbbox(txt)
    im = Image.new("L", (r - l + 4 + 2 * bold, b - t + 4 + 2 * bold), 0)
    d = ImageDraw.Draw(im)
    d.text((2 - l + bold, 2 - t + bold), txt, fill=255, font=f, stroke_width=bold, stroke_fill=255)
    return np.asarray(im, np.float32) / 255.0


# ----------------------------------------------------------------------------------------------
# Vendors and processing chains
# ----------------------------------------------------------------------------------------------
VENDORS = [
    dict(key="AUR", nr=0.6, mid=0.46, manufacturer="Aurelia Imaging Systems", model="Lumina DR-7", modality="DX", det="CsI",
         det_areal=0.20, swank=0.80, det_mm=(350.0, 430.0), pitch=0.148, bits=12, photometric="MONOCHROME2",
         chain="pyramid", shutter="black", text=False, grid="FOCUSED", grid_ratio=12, grid_lpcm=0, Tp=0.72, Ts=0.10,
         blur_mm=0.12, e_noise=2.5, target_uGy=2.5, flat=True, lat_flip=False, soft="LumiProc 5.2.1",
         station="AUR-RAD-02", sid=(1000.0, 1150.0), filt=(1.0, 0.1), kv_ap=(75, 85), kv_lat=(85, 96),
         ma=(320, 500), spacing="none", detector_type="SCINTILLATOR"),
    dict(key="COR", nr=1.0, mid=0.42, manufacturer="Corvanta Medical", model="PhosphoScan CR-350", modality="CR", det="BaFBr",
         det_areal=0.09, swank=0.62, det_mm=(350.0, 430.0), pitch=0.175, bits=10, photometric="MONOCHROME1",
         chain="cr", shutter="none", text=True, grid="STATIONARY", grid_ratio=8, grid_lpcm=40, Tp=0.70, Ts=0.16,
         blur_mm=0.2, e_noise=7.0, target_uGy=6.0, flat=False, lat_flip=False, soft="CVX-IP 3.08",
         station="CR-READER-1", sid=(1000.0, 1000.0), filt=(0.0, 0.0), kv_ap=(76, 84), kv_lat=(88, 100),
         ma=(200, 320), spacing="none", detector_type="STORAGE"),
    dict(key="HAL", nr=0.75, mid=0.44, manufacturer="Halvorsen Radiologic", model="Nordlys 43F", modality="DX", det="CsI",
         det_areal=0.20, swank=0.82, det_mm=(430.0, 430.0), pitch=0.150, bits=14, photometric="MONOCHROME2",
         chain="drc", shutter="crop", text=False, grid="FOCUSED", grid_ratio=10, grid_lpcm=0, Tp=0.74, Ts=0.13,
         blur_mm=0.11, e_noise=2.0, target_uGy=3.0, flat=True, lat_flip=False, soft="NLY 2.14.0",
         station="HRAD-ROOM3", sid=(1100.0, 1150.0), filt=(0.0, 0.2), kv_ap=(77, 90), kv_lat=(88, 102),
         ma=(400, 630), spacing="geometry", detector_type="SCINTILLATOR"),
    dict(key="TES", nr=0.7, mid=0.4, manufacturer="Tessaro Systems", model="VistaPix G2", modality="DX", det="GOS",
         det_areal=0.10, swank=0.70, det_mm=(350.0, 430.0), pitch=0.200, bits=12, photometric="MONOCHROME1",
         chain="lcn", shutter="black", text=True, grid="FOCUSED", grid_ratio=10, grid_lpcm=0, Tp=0.70, Ts=0.12,
         blur_mm=0.22, e_noise=3.5, target_uGy=2.2, flat=True, lat_flip=True, soft="VP-G2 r118",
         station="TES-DR-A", sid=(1000.0, 1100.0), filt=(0.0, 0.1), kv_ap=(72, 82), kv_lat=(84, 95),
         ma=(250, 400), spacing="imager", detector_type="SCINTILLATOR"),
    dict(key="KIN", nr=0.55, mid=0.45, manufacturer="Kinoshi Denki", model="RADNEXT FX9", modality="DX", det="CsI",
         det_areal=0.15, swank=0.78, det_mm=(350.0, 430.0), pitch=0.160, bits=15, photometric="MONOCHROME2",
         chain="te", shutter="dicom", text=True, grid="FOCUSED", grid_ratio=12, grid_lpcm=0, Tp=0.71, Ts=0.10,
         blur_mm=0.13, e_noise=2.2, target_uGy=2.8, flat=True, lat_flip=False, soft="FXV 9.3.2",
         station="KD-FX9-07", sid=(1000.0, 1150.0), filt=(1.0, 0.1), kv_ap=(78, 88), kv_lat=(90, 102),
         ma=(320, 500), spacing="imager", detector_type="SCINTILLATOR"),
]


def tone_sigmoid(x, s, c):
    f = lambda z: 1.0 / (1.0 + np.exp(-s * (z - c)))
    lo, hi = f(0.0), f(1.0)
    return np.clip((f(x) - lo) / (hi - lo), 0.0, 1.0)


def tone_film(x, ga, gc):
    # film-like H&D curve: long toe, compressed shoulder
    y = tone_sigmoid(np.clip(x, -0.5, 1.5), ga, gc)
    return np.clip(y ** 0.92, 0.0, 1.0)


def tone_gamma(x, g, toe):
    xc = np.clip(x, 0.0, 1.0)
    y = xc ** g
    return np.clip((1 - toe) * y + toe * xc * xc, 0.0, 1.0)


def chain_process(vend, a, s_norm, m, pw, rng):
    """a: normalised attenuation (0 thin soft tissue .. 1 dense bone).  Returns (u, gain du/da, tone)."""
    ch = vend["chain"]
    if ch == "pyramid":
        gains = [1.3 * rng.uniform(0.9, 1.1), 1.7 * rng.uniform(0.9, 1.1), 1.9, 1.45, 1.15]
        cur, ds, shapes = a, [], []
        for _ in range(5):
            h, w = cur.shape
            small = rs(blur(cur, 1.0), ((h + 1) // 2, (w + 1) // 2))
            ds.append(cur - rs(small, (h, w)))
            shapes.append((h, w))
            cur = small
        med = float(np.median(cur))
        out = med + 0.45 * (cur - med)
        for k in range(4, -1, -1):
            d = ds[k]
            c = 1.5 * float(np.percentile(np.abs(d[::3, ::3]), 90)) + 1e-6
            out = rs(out, shapes[k]) + gains[k] * d * (c / (c + np.abs(d))) ** 0.5
        s_, c_ = rng.uniform(4.0, 5.5), rng.uniform(0.45, 0.55)
        return out, gains[0], lambda x: tone_sigmoid(x, s_, c_), (0.5, 99.6)
    if ch == "cr":
        L = blur(a, rng.uniform(3.0, 6.0) / pw)
        re = rng.uniform(0.5, 1.0)
        wgt = np.clip(0.3 + 0.9 * a, 0.3, 1.2)
        u = a + re * wgt * (a - L)
        ga, gc = rng.uniform(5.0, 7.0), rng.uniform(0.42, 0.55)
        return u, 1.0 + re * wgt, lambda x: tone_film(x, ga, gc), (1.0, 99.0)
    if ch == "drc":
        L = blur(a, rng.uniform(40.0, 70.0) / pw)
        med = float(np.median(L[m])) if m.any() else float(np.median(L))
        kd = rng.uniform(0.35, 0.55)
        u = a - kd * (L - med)
        ku = rng.uniform(0.6, 1.1)
        u = u + ku * (u - blur(u, 1.6 / pw))
        gm = rng.uniform(0.8, 1.0)
        return u, 1.0 + ku, lambda x: tone_gamma(x, gm, 0.3), (0.3, 99.7)
    if ch == "lcn":
        # s_norm: normalised square-root signal (1 = thin tissue), so bone = 1 - s_norm is bright
        b = 1.0 - s_norm
        R_ = 12.0 / pw
        mloc = blur(b, R_)
        v = np.sqrt(np.maximum(blur((b - mloc) ** 2, R_), 0.0))
        alpha, c0 = rng.uniform(0.4, 0.6), 0.08
        gain = (c0 / (v + 0.6 * c0)) ** alpha
        mean_b = float(np.mean(b[m])) if m.any() else float(np.mean(b))
        u = 0.45 * mloc + 0.55 * mean_b + (b - mloc) * gain
        ku = rng.uniform(0.6, 1.0)
        u = u + ku * (u - blur(u, 1.0 / pw))
        return u, gain * (1 + ku), lambda x: np.clip(x, 0.0, 1.0), (0.5, 99.5)
    # "te": tissue equalisation + two-band enhancement + S curve
    L = blur(a, rng.uniform(10.0, 16.0) / pw)
    med = float(np.median(L[m])) if m.any() else float(np.median(L))
    dL = L - med
    wt = rng.uniform(0.12, 0.2)
    u = a - 0.7 * dL * np.clip(np.abs(dL) / wt, 0.0, 1.0)
    s1 = blur(a, 0.7 / pw)
    s2 = blur(a, 4.0 / pw)
    g1, g2 = rng.uniform(0.5, 0.9), rng.uniform(0.4, 0.8)
    u = u + g1 * (a - s1) + g2 * (s1 - s2)
    s_, c_ = rng.uniform(5.0, 7.0), rng.uniform(0.45, 0.55)
    return u, 1.0 + g1, lambda x: tone_sigmoid(x, s_, c_), (0.4, 99.6)


# ----------------------------------------------------------------------------------------------
# One view
# ----------------------------------------------------------------------------------------------
def render_view(P, vend, view, rng, exp_info):
    """render one view; returns the stored pixel array (uint16) and acquisition facts"""
    pf = vend["pitch"]
    det_w, det_h = vend["det_mm"]
    Hf, Wf = int(round(det_h / pf)), int(round(det_w / pf))
    Hw, Ww = (Hf + 1) // 2, (Wf + 1) // 2
    pw = det_h / Hw
    tr_ = P.trunk
    # ---- geometry in the room frame, then into the patient frame (patient pose = rotation)
    sid = rng.uniform(*vend["sid"])
    gap = rng.uniform(45.0, 75.0)
    zc = 0.5 * (P.levels_z["L3"] + P.levels_z["L4"]) + rng.normal(0, 15)
    if view == "AP":
        y_tab = tr_["y_c"] + 0.93 * tr_["B"]
        Cd = np.array([rng.normal(0, 6), y_tab + gap, zc])
        nrm = np.array([0.0, 1.0, 0.0])
        S = Cd - sid * nrm
        ecol, erow = np.array([1.0, 0, 0]), np.array([0, 0, -1.0])
        flat_n, flat_c = nrm, y_tab
        R_pose = rz(math.radians(rng.normal(0, 3.0))) @ ry(math.radians(rng.normal(0, 1.5)))
        kv = rng.uniform(*vend["kv_ap"])
        fw, fh = rng.uniform(180, 260), min(rng.uniform(360, 425), det_h - 6)
    else:
        x_tab = 0.94 * tr_["A"]
        Cd = np.array([x_tab + gap, rng.normal(12, 7), zc])
        nrm = np.array([1.0, 0.0, 0.0])
        S = Cd - sid * nrm
        ecol = np.array([0, -1.0, 0]) if vend["lat_flip"] else np.array([0, 1.0, 0])
        erow = np.array([0, 0, -1.0])
        flat_n, flat_c = nrm, x_tab
        R_pose = rz(math.radians(rng.normal(0, 3.5))) @ rx(math.radians(rng.normal(0, 2.0)))
        kv = rng.uniform(*vend["kv_lat"])
        fw, fh = rng.uniform(130, 200), min(rng.uniform(350, 420), det_h - 6)
    kv = float(round(kv))
    RT = R_pose.T
    S_p, Cd_p = RT @ S, RT @ Cd
    ecol_p, erow_p, nrm_p = RT @ ecol, RT @ erow, RT @ nrm
    # ---- collimated field on the detector (mm, relative to the detector centre)
    fw = min(fw, det_w - 6)
    fcu, fcv = rng.normal(0, 5), rng.normal(0, 5)
    frot = math.radians(rng.normal(0, 0.7))
    pen = rng.uniform(2.0, 4.0)
    uu = (np.arange(Ww) - (Ww - 1) / 2.0) * pw
    vv = (np.arange(Hw) - (Hw - 1) / 2.0) * pw
    U, V = np.meshgrid(uu - fcu, vv - fcv)
    Ur = U * math.cos(frot) + V * math.sin(frot)
    Vr = -U * math.sin(frot) + V * math.cos(frot)
    cmask = (np.clip((0.5 * fw - np.abs(Ur)) / pen + 0.5, 0, 1) * np.clip((0.5 * fh - np.abs(Vr)) / pen + 0.5, 0, 1)
             ).astype(np.float32)
    rows = np.where(cmask.max(axis=1) > 0)[0]
    cols = np.where(cmask.max(axis=0) > 0)[0]
    box = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
    tr = Tracer(S_p, Cd_p, ecol_p, erow_p, nrm_p, pw, Hw, Ww, box)
    fshape = tr.shape
    mottle = filtered_noise2(rng, fshape, pw, 9.0, 9.0, 40.0)
    # ---- anatomy
    for comp in P.soft_comps:
        if comp[0] == "trunk":
            s = comp[1].copy()
            s.add_world(None, np.zeros(3), RT @ flat_n, -flat_c)   # flattened against the table
            tr.apply(("trunk", s, comp[2], comp[3], comp[4]), mottle)
        else:
            tr.apply(comp, mottle)
    for comp in P.bone_comps:
        tr.apply(comp, mottle)
    mw = np.maximum(tr.mw, 0.0)
    mf = np.maximum(tr.mf, 0.0)
    mb = np.maximum(tr.mb, 0.0)
    if _DEBUG is not None:
        _DEBUG.update(mw=mw, mf=mf, mb=mb)
    # ---- spectrum, detector, heel effect
    al, cu = vend["filt"]
    spec = Spectrum(kv, 2.5 + al + 0.7, cu)
    E, N = spec.E, spec.N
    eta = 1.0 - np.exp(-mu_rho(vend["det"], E) * vend["det_areal"])
    heel_sign = 1.0 if rng.random() < 0.5 else -1.0
    phi = np.arctan(vv / sid) * heel_sign
    Hh = spec.heel(phi)                                     # (nE, Hw)
    geo = (1000.0 / sid) ** 2 * pw * pw * vend["Tp"]        # photons per pixel factor
    w_fine = N[:, None] * Hh * eta[:, None] * E[:, None]
    Ebar = float(np.sum(N * eta * E) / np.sum(N * eta))
    w_fine *= geo / Ebar                                     # quanta-equivalent per mAs
    edges = np.arange(10.0, kv + 5.0, 5.0)
    bins = np.digitize(E, edges) - 1
    nb = bins.max() + 1
    Wb = np.zeros((nb, Hw))
    Eb = np.zeros(nb)
    for k in range(nb):
        sel = bins == k
        Wb[k] = w_fine[sel].sum(axis=0)
        ww = (N * eta * E)[sel]
        Eb[k] = float(np.sum(ww * E[sel]) / max(np.sum(ww), 1e-30)) if ww.sum() > 0 else float(E[sel].mean())
    keep = Wb.sum(axis=1) > Wb.sum() * 1e-5
    Wb, Eb = Wb[keep], Eb[keep]
    muw = mu_rho("water", Eb) * RHO["water"]
    muf = mu_rho("fat", Eb) * RHO["fat"]
    mub = mu_rho("bone", Eb) * RHO["bone"]
    r0, r1, c0, c1 = box
    Prim = np.zeros(fshape, np.float32)
    for k in range(len(Eb)):
        Prim += Wb[k, r0:r1, None].astype(np.float32) * np.exp(-(muw[k] * mw + muf[k] * mf + mub[k] * mb))
    cos3 = tr.cos ** 3
    Prim *= cos3
    # focal spot + detector blur (before noise: the noise is added afterwards)
    oid = float(np.dot(Cd_p - np.zeros(3), nrm_p))
    fs = 1.2 if view == "LAT" else rng.choice([0.6, 1.2])
    sig_fs = fs * oid / max(sid - oid, 1.0) / 2.355
    sig = math.sqrt(sig_fs ** 2 + vend["blur_mm"] ** 2) / pw
    Prim = ndimage.gaussian_filter(Prim, sig, mode="nearest", truncate=3.0)
    # ---- full-detector arrays, collimation, lead marker
    P_full = np.zeros((Hw, Ww), np.float32)
    P_full[r0:r1, c0:c1] = Prim
    P_full *= cmask
    Teq = np.zeros((Hw, Ww), np.float32)
    Teq[r0:r1, c0:c1] = mw + 0.92 * mf + 1.75 * mb
    # scatter: SPR grows with water-equivalent thickness, two-Gaussian spread
    spr = 0.19 * np.power(np.maximum(Teq, 0.0), 1.1)
    cf = 8
    cs = (max(Hw // cf, 4), max(Ww // cf, 4))
    q = rs(P_full * spr, cs, Image.BOX)
    pc = pw * Hw / cs[0]
    sc = 0.55 * ndimage.gaussian_filter(q, 22.0 / pc, mode="constant") + \
        0.45 * ndimage.gaussian_filter(q, 65.0 / pc, mode="constant")
    Sc = rs(sc, (Hw, Ww)) * (vend["Ts"] / vend["Tp"])
    open_row = Wb.sum(axis=0).astype(np.float32)             # per mAs, no patient, per row
    open_map = open_row[:, None] * (np.cos(np.arctan(np.hypot(uu[None, :], vv[:, None]) / sid)) ** 3)
    # tube leakage / off-focal radiation: a tiny floor, mostly seen outside the collimated field
    R1 = P_full + Sc + 2e-3 * float(np.median(Prim)) * (1.0 - cmask)
    lead = np.zeros((Hw, Ww), bool)
    mk_txt = "R" if view == "AP" else "L"
    if view == "AP" and rng.random() < 0.25:
        mk_txt = "L"
    mh = rng.uniform(11.0, 15.0) / pw
    mm = text_mask(mk_txt, mh * 1.35, bold=max(int(mh / 14), 1))
    if rng.random() < 0.12:
        mm = mm[:, ::-1]
    # marker inside the field near a corner (AP: on the patient's side it names)
    side_u = (-1 if mk_txt == "R" else 1) if view == "AP" else rng.choice([-1, 1])
    cu_ = fcu + side_u * (0.5 * fw - 12 - mm.shape[1] * pw / 2)
    cv_ = fcv + rng.choice([-1, 1]) * (0.5 * fh - 14 - mm.shape[0] * pw / 2)
    mr = int((cv_ / pw) + (Hw - 1) / 2 - mm.shape[0] / 2)
    mc = int((cu_ / pw) + (Ww - 1) / 2 - mm.shape[1] / 2)
    mr = int(np.clip(mr, 0, Hw - mm.shape[0]))
    mc = int(np.clip(mc, 0, Ww - mm.shape[1]))
    sub = R1[mr:mr + mm.shape[0], mc:mc + mm.shape[1]]
    holder = 0.96
    sub *= holder * (1.0 - 0.975 * mm)
    lead[mr:mr + mm.shape[0], mc:mc + mm.shape[1]] = mm > 0.3
    # ---- AEC: central chamber, mAs chosen to hit the target detector dose
    ch = (np.abs(uu[None, :]) < 20) & (np.abs(vv[:, None] - rng.normal(0, 10)) < 20)
    k_open = spec.kerma_1m() * (1000.0 / sid) ** 2 * vend["Tp"]   # uGy per mAs at the detector
    q_open = float(open_map[Hw // 2, Ww // 2])                        # quanta per mAs, centre
    target = vend["target_uGy"] * rng.lognormal(0, 0.18 if vend["modality"] == "DX" else 0.3)
    mas = target / k_open * q_open / max(float(R1[ch].mean()), 1e-9)
    mas_max = 400.0 if view == "LAT" else 200.0
    mas = float(np.clip(mas, 1.0, mas_max))
    if _DEBUG is not None:
        _DEBUG.update(P_ch=float(P_full[ch].mean()), S_ch=float(Sc[ch].mean()), open_c=q_open, mas=mas,
                      k_open=k_open, Prim=Prim, Sc=Sc, P_full=P_full)
    R = R1 * mas
    # ---- noise (quantum + electronic) at working resolution
    se_w = 2.0 * vend["e_noise"]
    Rn = R + np.sqrt(np.maximum(R, 0.0) / vend["swank"] + se_w ** 2) * rng.standard_normal(R.shape).astype(np.float32)
    Rn = np.maximum(Rn, 0.5)
    # ---- log / flat field
    if vend["flat"]:
        a_raw = np.log(open_map * mas) - np.log(Rn)
    else:
        a_raw = math.log(q_open * mas) - np.log(Rn)
    body = (cmask > 0.5) & (a_raw > 0.9) & (~lead)
    if body.sum() < 1000:
        body = cmask > 0.5
    # exposure index (IEC 62494-like: 100 x uGy at the detector, median of the body region); CR S value
    kd = float(np.median(R[body])) * k_open / q_open
    exp_info["s_value"] = int(round(200.0 * 6.0 / max(kd, 0.3)))
    lo, hi = pct(a_raw, body, (0.5, 99.5))
    a = (a_raw - lo) / max(hi - lo, 1e-3)
    s_sqrt = np.exp(-0.5 * a_raw)
    s_lo, s_hi = pct(s_sqrt, body, (0.5, 99.5))
    s_norm = (s_sqrt - s_lo) / max(s_hi - s_lo, 1e-6)
    if _DEBUG is not None:
        _DEBUG.update(a_raw=a_raw, body=body)
    u, gain_a, tone, (plo, phi_) = chain_process(vend, a, s_norm, body, pw, rng)
    if vend["chain"] == "lcn":
        g_l = gain_a * 0.5 * s_sqrt / max(s_hi - s_lo, 1e-6)    # du / d(log signal)
    else:
        g_l = gain_a / max(hi - lo, 1e-3)
    ulo, uhi = pct(u, body, (plo, phi_))
    # fine-grained noise added after upsampling (variance beyond the working-pixel band)
    r2 = (pf / pw) ** 2
    Rf = np.maximum(R * r2, 1.0)
    var_f = (Rf / vend["swank"] + vend["e_noise"] ** 2) / Rf ** 2
    var_w = (R / vend["swank"] + se_w ** 2) / np.maximum(R, 1.0) ** 2
    sig_fine = np.sqrt(np.maximum(var_f - 0.45 * var_w, 0.0)) * g_l * vend["nr"]
    # ---- crop (vendor) and final-resolution synthesis
    if vend["shutter"] == "crop":
        rr = np.where(cmask.max(axis=1) > 0.5)[0]
        cc = np.where(cmask.max(axis=0) > 0.5)[0]
        mg = int(3.0 / pw)
        cr0, cr1 = max(rr[0] - mg, 0), min(rr[-1] + 1 + mg, Hw)
        cc0, cc1 = max(cc[0] - mg, 0), min(cc[-1] + 1 + mg, Ww)
    else:
        cr0, cr1, cc0, cc1 = 0, Hw, 0, Ww
    oh = int(round((cr1 - cr0) * pw / pf)) if vend["shutter"] == "crop" else Hf
    ow = int(round((cc1 - cc0) * pw / pf)) if vend["shutter"] == "crop" else Wf
    Uf = rs(u[cr0:cr1, cc0:cc1], (oh, ow), Image.BICUBIC)
    Sf = rs(np.broadcast_to(sig_fine, u.shape)[cr0:cr1, cc0:cc1], (oh, ow))
    nz = rng.standard_normal((oh + 1, ow + 1)).astype(np.float32)
    nz = 0.5 * (nz[:-1, :-1] + nz[1:, :-1] + nz[:-1, 1:] + nz[1:, 1:])
    Uf += Sf * nz
    if vend["grid"] == "STATIONARY" and vend["grid_lpcm"]:
        # grid lines (along the patient axis) alias against the pixel pitch
        gl = np.full(u.shape, 1.0, np.float32) * (g_l if np.ndim(g_l) else np.float32(g_l))
        Gf = rs(np.broadcast_to(gl, u.shape)[cr0:cr1, cc0:cc1], (oh, ow))
        xs = np.arange(ow) * pf
        Uf += Gf * (0.012 * np.cos(2 * np.pi * vend["grid_lpcm"] / 10.0 * xs + rng.uniform(0, 6.28))
                    ).astype(np.float32)[None, :]
    span = uhi - ulo
    x_med = float(np.clip((np.median(u[body]) - ulo) / span, 0.05, 0.95))
    grid_ = np.linspace(0.0, 1.0, 1001)
    x_t = float(grid_[np.argmin(np.abs(tone(grid_) - vend["mid"] * rng.uniform(0.92, 1.08)))])
    gam = float(np.clip(math.log(max(x_t, 1e-3)) / math.log(x_med), 0.6, 2.5))
    tone0 = tone
    tone = lambda x: tone0(np.sign(x) * np.abs(x) ** gam)
    nl = 65536 if vend["bits"] >= 13 else 16384
    lut_x = np.linspace(ulo - 0.6 * span, uhi + 0.6 * span, nl)
    maxv = (1 << vend["bits"]) - 1
    lut = np.clip(np.round(tone((lut_x - ulo) / span) * maxv), 0, maxv)
    idx = np.clip((Uf - lut_x[0]) * ((nl - 1) / (lut_x[-1] - lut_x[0])), 0, nl - 1).astype(np.int32)
    bright = lut[idx]                                            # display brightness, 0..maxv
    del idx, Uf, Sf, nz
    # electronic shutter (black border) for the masking vendors
    cm_f = None
    if vend["shutter"] in ("black", "crop"):
        cm_f = rs(cmask[cr0:cr1, cc0:cc1], (oh, ow))
        bright = bright * np.clip(cm_f * 1.6 - 0.3, 0.0, 1.0)
    img = bright if vend["photometric"] == "MONOCHROME2" else maxv - bright
    img = np.clip(np.round(img), 0, maxv).astype(np.uint16)
    # burned-in annotation (display white)
    white = maxv if vend["photometric"] == "MONOCHROME2" else 0
    black = maxv - white
    burned = False
    if vend["text"]:
        burned = True
        lines = burned_text(vend, view, exp_info, kv, mas)
        fs_px = max(int(oh * 0.016), 12)
        y = int(oh * 0.03)
        for ln in lines:
            tm = text_mask(ln, fs_px)
            x = int(ow * 0.03) if vend["key"] != "TES" else ow - tm.shape[1] - int(ow * 0.03)
            yy = y if vend["key"] != "TES" else oh - int(oh * 0.2) + (y - int(oh * 0.03))
            hh, ww_ = min(tm.shape[0], oh - yy), min(tm.shape[1], ow - x)
            if hh > 0 and ww_ > 0:
                reg = img[yy:yy + hh, x:x + ww_].astype(np.float32)
                t_ = tm[:hh, :ww_]
                bg = float(np.mean(reg)) / maxv
                if vend["photometric"] == "MONOCHROME1":
                    bg = 1.0 - bg
                ink = white if bg < 0.55 else black
                img[yy:yy + hh, x:x + ww_] = np.round(reg * (1 - t_) + ink * t_).astype(np.uint16)
            y += int(fs_px * 1.35)
    # geometry facts for the header
    sod = sid - oid
    mag = sid / max(sod, 1.0)
    shut = None
    if vend["shutter"] == "dicom":
        corners = np.array([[sx * fw / 2, sy * fh / 2] for sx in (-1, 1) for sy in (-1, 1)])
        c_, s_ = math.cos(frot), math.sin(frot)
        cu_c = fcu + corners[:, 0] * c_ - corners[:, 1] * s_
        cv_c = fcv + corners[:, 0] * s_ + corners[:, 1] * c_
        colf = cu_c / pf + (Wf - 1) / 2.0
        rowf = cv_c / pf + (Hf - 1) / 2.0
        shut = (int(np.clip(np.sort(colf)[1], 1, Wf)), int(np.clip(np.sort(colf)[2], 1, Wf)),
                int(np.clip(np.sort(rowf)[1], 1, Hf)), int(np.clip(np.sort(rowf)[2], 1, Hf)))
    d_skin = tr_["A"] if view == "LAT" else tr_["B"] - tr_["y_c"]      # L3 centre to entrance skin
    esd = spec.kerma_1m() * mas * (1000.0 / max(sod - d_skin, 300.0)) ** 2 * 1.35 / 1000.0  # mGy, backscatter
    info = dict(kv=kv, mas=mas, sid=sid, sod=sod, mag=mag, oid=oid, ei=float(100.0 * kd),
                target_ei=100.0 * vend["target_uGy"], s_value=exp_info["s_value"], fs=fs, fw=fw, fh=fh, shutter=shut, burned=burned,
                entrance_mGy=esd, filt=vend["filt"], rows=oh, cols=ow)
    return img, info


def burned_text(vend, view, exp_info, kv, mas):
    d = exp_info["date"]
    ds = "%04d-%02d-%02d" % (d.year, d.month, d.day)
    vname = "AP" if view == "AP" else "LAT"
    if vend["key"] == "COR":
        return [exp_info["institution"].upper(), "L-SPINE %s" % vname, ds,
                "%d kVp  %.0f mAs" % (kv, mas), "S %d  L 2.0" % exp_info["s_value"]]
    if vend["key"] == "TES":
        return ["LSPINE %s" % vname, "%s  %s" % (exp_info["pid"], ds), "%dkV %.1fmAs" % (kv, mas)]
    return ["%s %s" % (ds, exp_info["time"][:4])]


# ----------------------------------------------------------------------------------------------
# DICOM
# ----------------------------------------------------------------------------------------------


def uid_from(*parts):
    h = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return "2.25." + str(int.from_bytes(h[:15], "big"))


def ds_str(v, nd=6):
    s = ("%." + str(nd) + "g") % v
    return s[:16]


def write_dicom(path, img, info, vend, view, study, demo, pid, idx, seed):
    is_cr = vend["modality"] == "CR"
    sop_class = "1.2.840.10008.5.1.4.1.1.1" if is_cr else "1.2.840.10008.5.1.4.1.1.1.1"
    sop_uid = uid_from("phj-sop", seed, idx, view)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = uid_from("phantom_j-implementation", GENERATOR_VERSION)
    meta.ImplementationVersionName = "PHANTOMJ_10"
    ds = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 100"
    date = study["date"].strftime("%Y%m%d")
    t_img = study["time_ap"] if view == "AP" else study["time_lat"]
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.InstanceCreationDate = date
    ds.InstanceCreationTime = t_img
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = date
    ds.SeriesDate = date
    ds.AcquisitionDate = date
    ds.ContentDate = date
    ds.StudyTime = study["time_ap"]
    ds.SeriesTime = t_img
    ds.AcquisitionTime = t_img
    ds.ContentTime = t_img
    ds.AccessionNumber = "J%d%06d" % (seed % 100000, idx)
    ds.Modality = vend["modality"]
    if not is_cr:
        ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = vend["manufacturer"]
    ds.InstitutionName = study["institution"]
    ds.ReferringPhysicianName = ""
    ds.StationName = vend["station"]
    ds.StudyDescription = "LUMBAR SPINE 2 VIEWS"
    ds.SeriesDescription = "L-SPINE %s" % ("AP" if view == "AP" else "LAT")
    ds.ManufacturerModelName = vend["model"]
    ds.PatientName = "PHANTOMJ^%s" % pid.replace("-", "^")
    ds.PatientID = pid
    ds.PatientBirthDate = study["birth"].strftime("%Y%m%d")
    ds.PatientSex = demo["sex"]
    ds.PatientAge = "%03dY" % demo["age"]
    ds.PatientSize = ds_str(study["height"] / 100.0, 3)
    ds.PatientWeight = ds_str(study["weight"], 3)
    ds.BodyPartExamined = "LSPINE"
    ds.KVP = ds_str(info["kv"])
    ds.SoftwareVersions = vend["soft"]
    serial = int(hashlib.md5(study["institution"].encode()).hexdigest()[:4], 16) % 99999
    ds.DeviceSerialNumber = "%s%05d" % (vend["key"], serial)
    ds.DistanceSourceToDetector = ds_str(info["sid"], 5)
    ds.DistanceSourceToPatient = ds_str(info["sod"], 5)
    ms = max(int(round(info["mas"] / (vend["ma"][0] if view == "AP" else vend["ma"][1]) * 1000.0)), 1)
    ma = int(round(info["mas"] / ms * 1000.0))
    ds.ExposureTime = str(ms)
    ds.XRayTubeCurrent = str(max(ma, 1))
    ds.Exposure = str(max(int(round(info["mas"])), 1))
    ds.ExposureInuAs = str(int(round(info["mas"] * 1000)))
    ds.ImagerPixelSpacing = [ds_str(vend["pitch"]), ds_str(vend["pitch"])]
    ds.FocalSpots = ds_str(info["fs"], 3)
    if not is_cr:
        ds.AnodeTargetMaterial = "TUNGSTEN"
        if vend["filt"][1] > 0:
            two = vend["filt"][0] > 0
            ds.FilterMaterial = ["ALUMINUM", "COPPER"] if two else "COPPER"
            th_ = [ds_str(vend["filt"][0]), ds_str(vend["filt"][1])] if two else ds_str(vend["filt"][1])
            ds.FilterThicknessMinimum = th_
            ds.FilterThicknessMaximum = th_
        ds.Grid = vend["grid"]
        ds.ViewPosition = "AP" if view == "AP" else "LL"
        ds.PositionerType = "COLUMN"
        ds.EstimatedRadiographicMagnificationFactor = ds_str(info["mag"], 5)
        ds.ExposureIndex = ds_str(info["ei"], 5)
        ds.TargetExposureIndex = ds_str(info["target_ei"], 5)
        ds.DeviationIndex = ds_str(10 * math.log10(max(info["ei"], 1e-3) / info["target_ei"]), 3)
        ds.EntranceDoseInmGy = ds_str(info["entrance_mGy"], 4)
        ds.DetectorType = vend["detector_type"]
        ds.DetectorConfiguration = "AREA"
        ds.DetectorID = "%s-%s" % (vend["key"], "A17")
        ds.DetectorBinning = ["1", "1"]
        ds.DetectorActiveShape = "RECTANGLE"
        ds.DetectorActiveDimensions = [ds_str(vend["det_mm"][1]), ds_str(vend["det_mm"][0])]
        ds.FieldOfViewShape = "RECTANGLE"
        ds.FieldOfViewDimensions = [str(int(round(info["fh"]))), str(int(round(info["fw"])))]
        ds.GridAbsorbingMaterial = "LEAD"
        ds.GridSpacingMaterial = "ALUMINUM" if vend["key"] != "KIN" else "CARBON FIBER"
        ds.GridFocalDistance = ds_str(info["sid"], 5)
        ds.GridPitch = ds_str(0.2, 3)
        ds.GridAspectRatio = ["%d" % vend["grid_ratio"], "1"]
        ds.ExposureControlMode = "AUTOMATIC"
        ds.ExposureControlModeDescription = "AEC CENTRE CHAMBER"
    else:
        ds.ViewPosition = "AP" if view == "AP" else "LL"
        ds.CollimatorGridName = "GRID %d:1 %dL/CM" % (vend["grid_ratio"], vend["grid_lpcm"])
        ds.PlateType = "ST-VN"
        ds.PhosphorType = "BAFBR"
        ds.CassetteOrientation = "PORTRAIT"
        ds.CassetteSize = "35CMX43CM"
        ds.ExposuresOnPlate = int(1 + (idx * 7919 + (0 if view == "AP" else 1)) % 9000)
        ds.Sensitivity = ds_str(info["s_value"], 4)
        ds.AcquisitionDeviceProcessingDescription = "L-SPINE %s" % ("AP" if view == "AP" else "LAT")
        ds.AcquisitionDeviceProcessingCode = "CVX0312" if view == "AP" else "CVX0314"
        ds.RelativeXRayExposure = str(int(round(info["ei"])))
    if vend["spacing"] == "geometry":
        ps = vend["pitch"] / info["mag"]
        ds.PixelSpacing = [ds_str(ps), ds_str(ps)]
        ds.PixelSpacingCalibrationType = "GEOMETRY"
        ds.PixelSpacingCalibrationDescription = "MAGNIFICATION AT SPINE"
    elif vend["spacing"] == "imager":
        ds.PixelSpacing = [ds_str(vend["pitch"]), ds_str(vend["pitch"])]
    ds.StudyInstanceUID = study["study_uid"]
    ds.SeriesInstanceUID = uid_from("phj-series", seed, idx, view)
    ds.StudyID = "PJ%05d" % (idx % 100000)
    ds.SeriesNumber = "1" if view == "AP" else "2"
    ds.AcquisitionNumber = "1"
    ds.InstanceNumber = "1"
    anterior = "A" if (view == "LAT" and vend["lat_flip"]) else "P"
    ds.PatientOrientation = ["L", "F"] if view == "AP" else [anterior, "F"]
    ds.ImageLaterality = "U"
    ds.BurnedInAnnotation = "YES" if info["burned"] else "NO"
    ds.LossyImageCompression = "00"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = vend["photometric"]
    ds.Rows, ds.Columns = int(img.shape[0]), int(img.shape[1])
    ds.BitsAllocated = 16
    ds.BitsStored = vend["bits"]
    ds.HighBit = vend["bits"] - 1
    ds.PixelRepresentation = 0
    maxv = (1 << vend["bits"]) - 1
    if not is_cr:
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = -1 if vend["photometric"] == "MONOCHROME2" else 1
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = "1"
        ds.RescaleType = "US"
        ds.PresentationLUTShape = "IDENTITY" if vend["photometric"] == "MONOCHROME2" else "INVERSE"
        ds.CalibrationImage = "NO"
    ds.WindowCenter = ds_str((maxv + 1) / 2.0)
    ds.WindowWidth = ds_str(maxv + 1)
    ds.WindowCenterWidthExplanation = "FULL RANGE"
    ds.QualityControlImage = "NO"
    region = Dataset()
    region.CodeValue = "122496007"
    region.CodingSchemeDesignator = "SCT"
    region.CodeMeaning = "Lumbar spine"
    ds.AnatomicRegionSequence = Sequence([region])
    if not is_cr:
        ds.AcquisitionContextSequence = Sequence([])
        vc = Dataset()
        vc.CodeValue = "399348003" if view == "AP" else "399173006"
        vc.CodingSchemeDesignator = "SCT"
        vc.CodeMeaning = "antero-posterior" if view == "AP" else "left lateral"
        ds.ViewCodeSequence = Sequence([vc])
    if info["shutter"] is not None:
        l_, r_, t_, b_ = info["shutter"]
        ds.ShutterShape = "RECTANGULAR"
        ds.ShutterLeftVerticalEdge = str(l_)
        ds.ShutterRightVerticalEdge = str(r_)
        ds.ShutterUpperHorizontalEdge = str(t_)
        ds.ShutterLowerHorizontalEdge = str(b_)
        ds.ShutterPresentationValue = 0
    ds.PixelData = img.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


# ----------------------------------------------------------------------------------------------
# Patient / study driver
# ----------------------------------------------------------------------------------------------
INSTITUTIONS = ["Fjordvik General Hospital", "St. Aldric Clinic", "Mesa Verde Imaging Center",
                "Hollin Bay Medical Centre", "Kestrel Valley Hospital", "Orchard Row Radiology"]


def study_meta(seed, idx, demo, P, rng):
    h = int(hashlib.sha256(("phj-date|%d|%d" % (seed, idx)).encode()).hexdigest()[:12], 16)
    date = dt.date(2015, 1, 5) + dt.timedelta(days=h % 3300)
    sec = 7 * 3600 + (h >> 16) % (11 * 3600)
    t_ap = "%02d%02d%02d" % (sec // 3600, (sec // 60) % 60, sec % 60)
    sec2 = sec + 60 + (h >> 32) % 150
    t_lat = "%02d%02d%02d" % (sec2 // 3600, (sec2 // 60) % 60, sec2 % 60)
    age = demo["age"]
    birth = dt.date(date.year - age, date.month, min(date.day, 28)) - dt.timedelta(days=int((h >> 40) % 360))
    return {"date": date, "time_ap": t_ap, "time_lat": t_lat, "birth": birth,
            "study_uid": uid_from("phj-study", seed, idx),
            "institution": INSTITUTIONS[(h >> 8) % len(INSTITUTIONS)],
            "height": P.height, "weight": P.weight}


def pid_of(seed, idx):
    return "PJ%d-%05d" % (seed, idx)


def manifest_rows(seed, idx, demo):
    pid = pid_of(seed, idx)
    return [("%s_%s.dcm" % (pid, v), demo["label"], "%.2f" % demo["t"], "%.3f" % demo["bmd"], pid, v)
            for v in ("AP", "LAT")]


def make_patient(args):
    outdir, seed, idx, manifest_only = args
    demo = draw_demographics(seed, idx)
    if manifest_only:
        return idx, manifest_rows(seed, idx, demo)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(idx), 22]))
    P = build_patient(demo, rng)
    vend = VENDORS[int(rng.integers(len(VENDORS)))]
    study = study_meta(seed, idx, demo, P, rng)
    pid = pid_of(seed, idx)
    for vi, view in enumerate(("AP", "LAT")):
        vr = np.random.default_rng(np.random.SeedSequence([int(seed), int(idx), 33, vi]))
        exp_info = {"date": study["date"], "time": study["time_ap"] if view == "AP" else study["time_lat"],
                    "institution": study["institution"], "pid": pid}
        img, info = render_view(P, vend, view, vr, exp_info)
        write_dicom(os.path.join(outdir, "%s_%s.dcm" % (pid, view)), img, info, vend, view, study, demo, pid,
                    idx, seed)
    return idx, manifest_rows(seed, idx, demo)


def main(argv=None):
    ap = argparse.ArgumentParser(description="phantom_j: synthetic lumbar-spine AP + lateral DICOM studies")
    ap.add_argument("outdir")
    ap.add_argument("n", type=int)
    ap.add_argument("seed", type=int)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--manifest-only", action="store_true", help="write only manifest.csv (fast)")
    a = ap.parse_args(argv)
    os.makedirs(a.outdir, exist_ok=True)
    jobs = [(a.outdir, a.seed, i, a.manifest_only) for i in range(a.n)]
    results = {}
    if a.workers > 1 and a.n > 1 and not a.manifest_only:
        import multiprocessing as mp
        with mp.get_context("fork").Pool(a.workers) as pool:
            for i, rows in pool.imap_unordered(make_patient, jobs, chunksize=1):
                results[i] = rows
    else:
        for j in jobs:
            i, rows = make_patient(j)
            results[i] = rows
    with open(os.path.join(a.outdir, "manifest.csv"), "w", newline="") as f:
        f.write("path,label,t_score,bmd,patient_id,view\n")
        for i in range(a.n):
            for r in results[i]:
                f.write("%s,%d,%s,%s,%s,%s\n" % r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
