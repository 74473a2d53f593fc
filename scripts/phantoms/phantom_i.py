#!/usr/bin/env python3
"""phantom_i.py - independent synthetic adult lumbar-spine radiographs (AP + lateral).

Usage
-----
    phantom_i.py OUTDIR N_STUDIES SEED [--workers K]

Writes OUTDIR/PI<SEED>-<nnnnn>_AP.dcm and _LAT.dcm per study (DICOM Part 10, explicit VR
little endian) and OUTDIR/manifest.csv (path,label,t_score,bmd,patient_id,view).  Every
random draw of study i comes from numpy.random.default_rng([SEED, i]), so one seed gives
byte-identical files whatever the number of workers.  Test data, not product code.

Labels: class drawn first (a third each), then T uniform in the class range: normal
-1.0..+2.0 (label 0), osteopenia -2.5..-1.0 (1), osteoporosis -4.5..-2.5 (2).
bmd = 1.0 + 0.11 T g/cm^2.  Age ~ N(58 - 6.5 T, 8) clipped 25..92, sex 70 % female.

Anatomy (one 3-D patient, both views)
------------------------------------
A spinal curve T11..S2 is integrated from arc length: the sagittal angle falls linearly
(lordosis 25-60 deg in total), a sine-shaped coronal angle gives scoliosis (mostly mild),
and an axial rotation follows the scoliosis.  Each vertebra has its own frame (u lateral,
v cranial, w anterior).  Primitives are analytic convex solids intersected with parallel
rays (exact chord lengths, no voxels): vertebral bodies are elliptic cylinders clipped by two
(possibly tilted) endplate planes with an inner copy giving the cortical shell and
endplates; pedicles are short hollow cylinders along w (the ring-shaped "eyes" of the AP
view); laminae, spinous, transverse and articular processes are ellipsoids; the sacrum is an
S1 body plus alae and a tapering plate continuing the curve; iliac wings are oblique
ellipsoidal plates with a cortical rim; ribs 11-12 are chains of small ellipsoids.
Soft tissue: an elliptic trunk whose width grows towards the hips, subcutaneous fat layer,
visceral fat fraction, psoas muscles replacing retroperitoneal fat, lung bases (air) at the
top, bowel gas pockets, marrow fat in the bodies, aortic wall calcification in the elderly.
Degeneration with age: disc narrowing (worst L4-S1), osteophyte lips, endplate sclerosis,
facet hypertrophy.  Fractures (wedge, biconcave, crush) with probability 3/10/35 % by
class, mostly T12-L2.

Physics
-------
Kramers tungsten spectrum (kVp 70-95 AP, 85-110 LAT) through 2.5-4.5 mm Al (+ optional
0.1 mm Cu), 6 energy bins, attenuation of water, adipose and hydroxyapatite from tabulated
mass attenuation coefficients (log-log interpolated), energy-integrating CsI or BaFBr
detector absorption.  Scatter = broad Gaussian of the primary scaled to a scatter-to-primary
ratio (grid or no grid), heel effect, collimator with penumbra, lead L/R marker, AEC to a
target number of quanta, Poisson-like quantum noise with a Swank factor, electronic noise,
detector blur after noise (correlated), CR row banding.  Geometry is parallel beam with a
per-view magnification (the lateral one larger).  Projection is done on a ~0.26 mm working
grid, then interpolated to the final 0.1-0.2 mm detector grid where noise is added.

Processing (five invented vendors)
----------------------------------
AUREX DX (log, percentile window, dynamic-range compression, unsharp mask, sigmoid; MONO2,
12 bit), KESTREL CR (log10 exposure, histogram window, mild edge boost, banding; MONO1, 10
bit, collimation left unmasked, burned-in text), NUMA DX (4-band Laplacian-like
multi-frequency gains + gamma; MONO2, 14/16 bit, black shutter mask), HELIO DX (near-raw log
with partial histogram equalisation; MONO1, 15 bit), ORBIS CR (gamma tone curve on log
with white or no mask; MONO2, 12 bit, optional non-identity rescale).  Window centre/width
written for DX always and for CR sometimes.  Burned-in text and lead markers by vendor/chance.

How bone density shows
----------------------
Trabecular mineral (hydroxyapatite) density rho_tb = 0.18 * exp(0.19 T) g/cm^3 (0.26 at
T=+2, 0.18 at 0, 0.077 at -4.5), +-5 % per patient and +-4 % per level.  Cortical shell
thickness 1.1 (1 + 0.045 T) mm (floor 0.5), shell mineral 1.05 (1 + 0.02 T) g/cm^3, so the
cortex is relatively preserved ("picture frame" body at low T).  Endplates 0.9 (1+0.04 T) mm.
Posterior elements follow with rho_tb-like density plus a weaker cortical term.  Texture:
band-pass noise with vertical strands (period 0.9 - 0.1 T mm, vertical correlation 3 - 0.6 T
mm) and horizontal struts weighted 0.8 + 0.15 T (fewer struts at low T), thresholded at bone
volume fraction 0.28 + 0.035 T, relative texture contrast 0.45 - 0.1 T (sparser, coarser,
more vertical and more contrasted at low T; the mean stays rho_tb).  Marrow fat fraction
rises with age and low T.  Sacrum/pelvis/ribs scale with rho_tb ** 0.5.
"""
import argparse
import csv
import datetime
import os
import sys
from multiprocessing import Pool

import numpy as np
from scipy import ndimage
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from PIL import Image, ImageDraw, ImageFont

# ----------------------------------------------------------------------------- physics tables
E_TAB = np.array([20, 30, 40, 50, 60, 80, 100, 150], float)
MU = {  # mass attenuation cm^2/g
    'water': [0.810, 0.376, 0.268, 0.227, 0.206, 0.184, 0.171, 0.151],
    'fat': [0.540, 0.299, 0.228, 0.203, 0.189, 0.172, 0.161, 0.143],
    'ha': [9.30, 2.71, 0.976, 0.576, 0.392, 0.244, 0.188, 0.143],
    'al': [3.44, 1.128, 0.569, 0.368, 0.278, 0.202, 0.170, 0.138],
    'cu': [33.8, 10.9, 4.86, 2.61, 1.59, 0.763, 0.458, 0.222],
    'csi': [18.0, 10.0, 22.0, 12.5, 7.5, 3.6, 2.0, 0.7],
    'bafbr': [30.0, 12.0, 25.0, 14.0, 9.0, 4.5, 2.6, 1.0],
}


def mu(mat, e):
    return np.exp(np.interp(np.log(e), np.log(E_TAB), np.log(MU[mat])))


def spectrum_bins(kvp, al_mm, cu_mm, det, nbins=6):
    e = np.arange(18.0, kvp, 0.5)
    phi = (kvp - e) / e
    phi *= np.exp(-mu('al', e) * 2.7 * al_mm / 10 - mu('cu', e) * 8.96 * cu_mm / 10)
    td = 0.20 if det == 'csi' else 0.11
    eta = e * (1 - np.exp(-mu(det, e) * td))
    w = phi * eta
    edges = np.linspace(0, len(e), nbins + 1).astype(int)
    eb, wb = [], []
    for i in range(nbins):
        sl = slice(edges[i], edges[i + 1])
        eb.append(np.sum(e[sl] * w[sl]) / np.sum(w[sl]))
        wb.append(np.sum(w[sl]))
    wb = np.array(wb)
    return np.array(eb), wb / wb.sum()


# ----------------------------------------------------------------------------- geometry
def rot_axis(axis, ang):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(ang) * k + (1 - np.cos(ang)) * (k @ k)


class View:
    """Parallel-beam view.  AP: ray along +y, col ~ +x, row ~ -z.  LAT: ray along +x,
    col ~ -y (anterior on the left), row ~ -z.  Coordinates in mm, world at isocentre."""

    def __init__(self, kind, shape, ws, mag, centre):
        self.kind, self.shape, self.ws, self.mag = kind, shape, ws, mag
        self.c = np.asarray(centre, float)  # world point at image centre
        self.pix = ws / mag  # world mm per working pixel
        self.d = np.array([0, 1.0, 0]) if kind == 'AP' else np.array([1.0, 0, 0])

    def to_img(self, p):
        h = (p[0] - self.c[0]) if self.kind == 'AP' else -(p[1] - self.c[1])
        return (self.shape[0] / 2 - (p[2] - self.c[2]) / self.pix,
                self.shape[1] / 2 + h / self.pix)

    def rays(self, r0, r1, c0, c1):
        rows = np.arange(r0, r1, dtype=np.float32)[:, None]
        cols = np.arange(c0, c1, dtype=np.float32)[None, :]
        z = self.c[2] - (rows + 0.5 - self.shape[0] / 2) * self.pix
        h = (cols + 0.5 - self.shape[1] / 2) * self.pix
        if self.kind == 'AP':
            return (self.c[0] + h, np.float32(0.0), z)
        return (np.float32(0.0), self.c[1] - h, z)


def prim(kind, c, R, s, planes=()):
    return dict(kind=kind, c=np.asarray(c, float), R=np.asarray(R, float),
                s=np.asarray(s, float), planes=list(planes))


def chord(view, p, pad=2):
    """Chord length (mm) of parallel rays through a primitive, on its image patch."""
    rad = float(np.sqrt(np.sum(p['s'] ** 2)))
    r, c = view.to_img(p['c'])
    rp = rad / view.pix + pad
    r0, r1 = int(max(0, np.floor(r - rp))), int(min(view.shape[0], np.ceil(r + rp)))
    c0, c1 = int(max(0, np.floor(c - rp))), int(min(view.shape[1], np.ceil(c + rp)))
    if r1 <= r0 or c1 <= c0:
        return None
    X, Y, Z = view.rays(r0, r1, c0, c1)
    R = p['R']
    dx, dy, dz = X - p['c'][0], Y - p['c'][1], Z - p['c'][2]
    e = R.T @ view.d
    q = [R[0, k] * dx + R[1, k] * dy + R[2, k] * dz for k in range(3)]
    s2 = p['s'] ** 2
    ks = (0, 1, 2) if p['kind'] == 'ell' else (0, 2)
    A = sum(e[k] ** 2 / s2[k] for k in ks) + 1e-12
    B = sum(2 * q[k] * e[k] / s2[k] for k in ks)
    C = sum(q[k] ** 2 / s2[k] for k in ks) - 1
    disc = B * B - 4 * A * C
    ok = disc > 0
    sq = np.sqrt(np.maximum(disc, 0))
    t1, t2 = (-B - sq) / (2 * A), (-B + sq) / (2 * A)
    planes = list(p['planes'])
    if p['kind'] == 'cyl':
        planes = [((0, 1, 0), p['s'][1]), ((0, -1, 0), p['s'][1])] + planes
    for n, dd in planes:
        n = np.asarray(n, float)
        ne = float(n @ e)
        nq = n[0] * q[0] + n[1] * q[1] + n[2] * q[2]
        if abs(ne) > 1e-9:
            tb = (dd - nq) / ne
            if ne > 0:
                t2 = np.minimum(t2, tb)
            else:
                t1 = np.maximum(t1, tb)
        else:
            ok = ok & (nq <= dd)
    L = np.where(ok, np.maximum(t2 - t1, 0), 0).astype(np.float32)
    return (slice(r0, r1), slice(c0, c1)), L


def add(view, maps, key, p, dens):
    res = chord(view, p)
    if res is not None:
        sl, L = res
        maps[key][sl] += L * np.float32(dens / 10.0)  # mm -> cm, times density
    return res


def shell(view, maps, key, p_out, p_in, dens):
    a = chord(view, p_out)
    if a is None:
        return
    b = chord(view, p_in)
    sl, L = a
    if b is not None:
        L = L.copy()
        L2 = np.zeros_like(L)
        sb, Lb = b
        # place inner patch inside outer patch coordinates
        rr = slice(sb[0].start - sl[0].start, sb[0].stop - sl[0].start)
        cc = slice(sb[1].start - sl[1].start, sb[1].stop - sl[1].start)
        r0, c0 = max(rr.start, 0), max(cc.start, 0)
        r1, c1 = min(rr.stop, L.shape[0]), min(cc.stop, L.shape[1])
        if r1 > r0 and c1 > c0:
            L2[r0:r1, c0:c1] = Lb[r0 - rr.start:r1 - rr.start, c0 - cc.start:c1 - cc.start]
        L = np.maximum(L - L2, 0)
    maps[key][sl] += L * np.float32(dens / 10.0)


# ----------------------------------------------------------------------------- patient
LEVELS = ['T11', 'T12', 'L1', 'L2', 'L3', 'L4', 'L5']
BODY = {  # width, depth, height (mm, full sizes)
    'T11': (36, 27, 21), 'T12': (39, 28, 23), 'L1': (42, 30, 25), 'L2': (44, 31, 26),
    'L3': (46, 32, 27), 'L4': (48, 33, 27), 'L5': (50, 34, 25)}
DISC = [6, 7, 8, 9, 10, 11, 10]  # below each level (L5 -> S1)


def make_patient(rng, T, age, sex):
    P = dict(T=T, age=age, sex=sex)
    male = sex == 'M'
    P['scale'] = rng.normal(1.06 if male else 0.97, 0.04)
    P['W'] = rng.uniform(300, 390) if male else rng.uniform(270, 370)
    P['D'] = P['W'] * rng.uniform(0.62, 0.82)
    P['sf'] = rng.uniform(8, 35) * (P['D'] / 240) ** 1.5
    P['vf'] = rng.uniform(0.1, 0.35)
    P['post'] = rng.uniform(70, 95) * P['D'] / 240  # back skin to body centre
    P['lord'] = np.radians(rng.uniform(25, 60))
    P['scol'] = np.radians(rng.normal(0, 6) if rng.random() < 0.8 else rng.normal(0, 14))
    P['scol_phase'] = rng.uniform(-0.6, 0.6)
    P['rot0'] = np.radians(rng.normal(0, 3))
    P['rho_tb'] = 0.18 * np.exp(0.19 * T) * rng.normal(1, 0.05)
    P['tc'] = max(0.5, 1.1 * (1 + 0.045 * T) * rng.normal(1, 0.06))
    P['rho_c'] = 1.05 * (1 + 0.02 * T)
    P['te'] = max(0.45, 0.9 * (1 + 0.04 * T))
    P['fat_marrow'] = float(np.clip(0.35 + 0.006 * (age - 40) - 0.05 * T, 0.2, 0.8))
    P['deg'] = float(np.clip((age - 40) / 45 + rng.normal(0, 0.2), 0, 1))
    lab = 0 if T >= -1 else (1 if T > -2.5 else 2)
    P['fx'] = {}
    if rng.random() < [0.03, 0.10, 0.35][lab]:
        nfx = 1 + (rng.random() < 0.3 and lab == 2)
        for _ in range(nfx):
            lev = rng.choice(['T11', 'T12', 'L1', 'L2', 'L3', 'L4'], p=[.1, .25, .25, .2, .12, .08])
            P['fx'][str(lev)] = (str(rng.choice(['wedge', 'biconcave', 'crush'], p=[.55, .3, .15])),
                                 rng.uniform(0.2, 0.45))
    return P


def spine_frames(P, rng):
    """Integrate the spinal curve; return per-level dict with centre, frame, sizes."""
    sc = P['scale']
    items = []  # (name, half-height, disc below)
    sev = {}
    for i, lv in enumerate(LEVELS):
        w_deg = [0.2, 0.25, 0.3, 0.45, 0.6, 1.0, 1.0][i]
        sev[lv] = P['deg'] * w_deg * rng.uniform(0.5, 1.2)
        h = BODY[lv][2] * sc * rng.normal(1, 0.03)
        d = DISC[i] * sc * (1 - 0.55 * min(1, sev[lv])) * rng.normal(1, 0.06)
        items.append((lv, h, max(d, 2.0)))
    total = sum(h + d for _, h, d in items) + 60
    ds = 1.0
    s_arr = np.arange(0, total + ds, ds)
    frac = s_arr / total
    sag = P['lord'] * (0.5 - frac)  # +: heading anteriorly going caudal
    cor = P['scol'] * np.sin(np.pi * (frac + P['scol_phase']))
    down = np.stack([np.sin(cor), np.sin(sag), -np.cos(sag) * np.cos(cor)], 1)
    down /= np.linalg.norm(down, axis=1, keepdims=True)
    pos = np.cumsum(down * ds, 0)
    yb = -P['D'] / 2 + P['post']
    out = []
    s = 0.0
    for lv, h, d in items:
        sm = s + h / 2
        k = int(round(sm / ds))
        out.append(dict(name=lv, s=sm, h=h, disc=d, sev=sev[lv], p=pos[k], dn=down[k],
                        rot=P['rot0'] + 2.2 * float(cor[k])))
        s += h + d
    # sacrum S1 (and continuation) after the L5 disc
    k = int(round((s + 12) / ds))
    out.append(dict(name='S1', s=s + 12, h=24 * sc, disc=0, sev=0, p=pos[min(k, len(pos) - 1)],
                    dn=down[min(k, len(pos) - 1)], rot=P['rot0']))
    mid = 0.5 * (out[0]['p'] + out[-1]['p'])
    for o in out:
        o['p'] = o['p'] - mid
        o['p'][1] += yb
        v = -o['dn']
        w0 = np.array([0, 1.0, 0]) - v * v[1]
        w0 /= np.linalg.norm(w0)
        w = rot_axis(v, o['rot']) @ w0
        u = np.cross(w, v)
        o['R'] = np.stack([u, v, w], 1)
        o['sac'] = 0
    # sacral tilt: S1 endplate tilted forward strongly
    S = out[-1]
    S['R'] = S['R'] @ rot_axis([1, 0, 0], np.radians(rng.uniform(25, 40)))
    return out


def build_scene(P, rng):
    """List of (map_key, primitive, density, [inner primitive for shell]) items."""
    lv = spine_frames(P, rng)
    P['levels'] = lv
    sc = P['scale']
    items = []
    rho_tb, rho_c, tc, te = P['rho_tb'], P['rho_c'], P['tc'], P['te']
    post_d = rho_tb * 1.15 + 0.12 * rho_c * (tc / 1.1)
    for i, o in enumerate(lv):
        c, R, name = o['p'], o['R'], o['name']
        u, v, w = R[:, 0], R[:, 1], R[:, 2]
        if name == 'S1':
            a, b, hh = 26 * sc, 17 * sc, o['h'] / 2
            sac_d = rho_tb ** 0.5 * 0.42
            items.append(('shell', prim('cyl', c, R, (a, hh, b)), rho_c,
                          prim('cyl', c, R, (a - tc, hh - te, b - tc))))
            items.append(('trab', prim('cyl', c, R, (a - tc, hh - te, b - tc)), rho_tb, None))
            for sgn in (-1, 1):
                items.append(('bone', prim('ell', c + sgn * u * 42 * sc - w * 4, R,
                                           (26 * sc, 22 * sc, 17 * sc)), sac_d * 0.9, None))
            R2 = R @ rot_axis([1, 0, 0], np.radians(-15))
            items.append(('bone', prim('ell', c - v * 55 * sc - w * 12, R2,
                                       (36 * sc, 50 * sc, 11 * sc)), sac_d, None))
            # iliac wings: oblique plates with cortical rim
            for sgn in (-1, 1):
                Rw = rot_axis([0, 0, 1], sgn * np.radians(rng.uniform(45, 60)))
                cw = c + np.array([sgn * rng.uniform(80, 95) * sc, -18, 18 * sc])
                s_out = np.array([58, 6.5, 68]) * sc
                items.append(('shell', prim('ell', cw, Rw, s_out), rho_c * 0.8,
                              prim('ell', cw, Rw, s_out - [1.6, 1.6, 1.6])))
                items.append(('bone', prim('ell', cw, Rw, s_out - [1.6, 1.6, 1.6]),
                              rho_tb ** 0.5 * 0.3, None))
            continue
        wd, dp, _ = BODY[name]
        a = wd * sc / 2 * rng.normal(1, 0.03)
        b = dp * sc / 2 * rng.normal(1, 0.03)
        hh = o['h'] / 2
        rt = rho_tb * rng.normal(1, 0.04)
        planes_o, planes_i = [], []
        fx = P['fx'].get(name)
        dens_in = rt
        if fx:
            kind, sevf = fx
            if kind == 'wedge':
                al = np.arctan(2 * hh * sevf * 1.4 / (2 * b))
                planes_o = [((0, np.cos(al), np.sin(al)), hh * np.cos(al))]
                planes_i = [((0, np.cos(al), np.sin(al)), (hh - te) * np.cos(al))]
            elif kind == 'crush':
                hh *= (1 - sevf)
                dens_in = rt * 1.3
        s_o = (a, hh, b)
        s_i = (a - tc, hh - te * (1 + 1.5 * o['sev']), b - tc)
        items.append(('shell', prim('cyl', c, R, s_o, planes_o), rho_c,
                      prim('cyl', c, R, s_i, planes_i)))
        items.append(('trab', prim('cyl', c, R, s_i, planes_i), dens_in, None))
        if fx and fx[0] == 'biconcave':
            dep = fx[1] * hh * 0.8
            for sgn in (-1, 1):
                cl = c + sgn * v * (s_i[1] - dep)
                items.append(('trab', prim('ell', cl, R, (0.65 * a, dep, 0.65 * b)), -dens_in, None))
                items.append(('shell', prim('ell', cl, R, (0.65 * a, dep, 0.65 * b)), rho_c * 0.6,
                              prim('ell', cl, R, (0.65 * a - 1, dep - 0.8, 0.65 * b - 1))))
        # osteophytes
        if o['sev'] > 0.3:
            for sgn in (-1, 1):
                for du, dw in ((1, 0), (-1, 0), (0, 1)):
                    if rng.random() < o['sev']:
                        sz = o['sev'] * rng.uniform(2, 5)
                        cc = c + sgn * v * (hh - 0.5) + u * du * (a + sz * 0.4) + w * dw * (b + sz * 0.4)
                        items.append(('bone', prim('ell', cc, R, (sz, sz * 0.7, sz)), rho_c * 0.5, None))
        # posterior elements
        k = LEVELS.index(name)
        pr = (4.5 + 0.8 * k) * sc
        for sgn in (-1, 1):
            Rp = R @ rot_axis([1, 0, 0], np.pi / 2)  # cylinder axis along w
            cp = c + sgn * u * (0.62 * a) + v * (0.18 * hh) - w * (b + 6)
            sp = (pr, 7 * sc, 7.5 * sc)
            items.append(('shell', prim('cyl', cp, Rp, sp), rho_c * 0.9,
                          prim('cyl', cp, Rp, (sp[0] - 1.6, sp[1] + 1, sp[2] - 1.6))))
            items.append(('bone', prim('cyl', cp, Rp, (sp[0] - 1.6, sp[1], sp[2] - 1.6)), rt, None))
            tl = [14, 16, 22, 26, 30, 26, 22][k] * sc
            ct = c + sgn * u * (a + tl * 0.55) + v * (0.1 * hh) - w * (b + 9)
            Rt = R @ rot_axis(w, sgn * np.radians(8 if k < 6 else 18))
            items.append(('bone', prim('ell', ct, Rt, (tl * 0.7, 4.5 * sc * (1.5 if k == 6 else 1), 4.5)),
                          post_d, None))
            fh = 1 + 0.5 * o['sev']
            items.append(('bone', prim('ell', c + sgn * u * 0.45 * a + v * 0.6 * hh - w * (b + 15),
                                       R, (5 * fh, 8, 6 * fh)), post_d, None))
            items.append(('bone', prim('ell', c + sgn * u * 0.36 * a - v * 0.65 * hh - w * (b + 23),
                                       R, (5 * fh, 8, 5 * fh)), post_d, None))
        items.append(('bone', prim('ell', c - v * 0.05 * hh - w * (b + 21), R,
                                   (0.55 * a, 0.5 * hh, 5)), post_d, None))
        Rs = R @ rot_axis([1, 0, 0], np.radians(-20))
        items.append(('bone', prim('ell', c - v * 0.3 * hh - w * (b + 40 * sc), Rs,
                                   (4, 0.42 * hh + 2, 15 * sc)), post_d, None))
        # ribs on T11 and T12
        if name in ('T11', 'T12'):
            rib_d = rho_tb ** 0.5 * 0.55
            for sgn in (-1, 1):
                ln = (0.9 if name == 'T12' else 1.2) * rng.uniform(0.8, 1.2)
                pts = []
                for t in np.linspace(0, 1, 16):
                    pts.append(c + sgn * u * (a + 18 + 110 * ln * t) - v * 85 * ln * t ** 1.2
                               - w * (b + 10) + w * 70 * ln * t ** 2)
                for p0, p1 in zip(pts[:-1], pts[1:]):
                    dvec = p1 - p0
                    L = np.linalg.norm(dvec)
                    ax = dvec / L
                    ref = np.array([0, 0, 1.0]) if abs(ax[2]) < 0.9 else np.array([1.0, 0, 0])
                    e2 = np.cross(ax, ref); e2 /= np.linalg.norm(e2)
                    e3 = np.cross(ax, e2)
                    Rr = np.stack([e2, ax, e3], 1)
                    items.append(('shell', prim('ell', (p0 + p1) / 2, Rr, (4.5, L * 0.8, 6)),
                                  rib_d + 0.25, prim('ell', (p0 + p1) / 2, Rr, (3.0, L * 0.8 + 1, 4.5))))
    return items


def soft_tissue(view, P, rng, maps):
    """Trunk ellipse with fat layer, psoas, lungs, bowel gas (water/fat path in cm)."""
    H, Wd = view.shape
    X, Y, Z = view.rays(0, H, 0, Wd)
    lv = P['levels']
    z_top, z_s1 = lv[1]['p'][2], lv[-1]['p'][2]
    hip = np.clip((z_s1 + 60 - Z) / 120, 0, 1) if np.ndim(Z) else 0
    hip = hip * hip * (3 - 2 * hip)
    W = P['W'] * (1 + 0.14 * hip)
    D = P['D'] * (1 + 0.05 * hip)
    sf = P['sf']
    if view.kind == 'AP':
        x = X
        Lt = D * np.sqrt(np.clip(1 - (2 * x / W) ** 2, 0, None))
        Li = (D - 2 * sf) * np.sqrt(np.clip(1 - (2 * x / (W - 2 * sf)) ** 2, 0, None))
    else:
        y = Y
        Lt = W * np.sqrt(np.clip(1 - (2 * y / D) ** 2, 0, None))
        Li = (W - 2 * sf) * np.sqrt(np.clip(1 - (2 * y / (D - 2 * sf)) ** 2, 0, None))
    Lt, Li = np.broadcast_arrays(Lt, Li)
    maps['water'] += ((1 - P['vf']) * Li / 10).astype(np.float32)
    maps['fat'] += ((Lt - Li + P['vf'] * Li) / 10).astype(np.float32)
    # psoas: muscle instead of retroperitoneal fat
    tmp = dict(ps=np.zeros(view.shape, np.float32), gas=np.zeros(view.shape, np.float32))
    for o in lv[2:7]:
        k = lv.index(o) - 2
        for sgn in (-1, 1):
            cc = o['p'] + np.array([sgn * (26 + 7 * k) * P['scale'], -8 - 2 * k, -5])
            Rz = rot_axis([0, 1, 0], -sgn * np.radians(12))
            add(view, tmp, 'ps', prim('ell', cc, Rz, (12 + 4.5 * k, 30, 14 + 3 * k)), 1.0)
    take = np.minimum(tmp['ps'] * 0.8, maps['fat'] * 0.5)
    maps['fat'] -= take
    maps['water'] += take
    # lung bases (air)
    for sgn in (-1, 1):
        cc = np.array([sgn * P['W'] * 0.24, -P['D'] * 0.05, z_top + 120 - rng.uniform(0, 30)])
        add(view, tmp, 'gas', prim('ell', cc, np.eye(3), (P['W'] * 0.19, 150, P['D'] * 0.33)), 1.0)
        cc2 = np.array([sgn * P['W'] * 0.2, -P['D'] * 0.28, z_top + 70])
        add(view, tmp, 'gas', prim('ell', cc2, np.eye(3), (P['W'] * 0.1, 100, P['D'] * 0.12)), 1.0)
    # bowel gas
    ng = rng.integers(4, 22)
    for _ in range(ng):
        cc = np.array([rng.uniform(-0.35, 0.35) * P['W'], rng.uniform(0.0, 0.35) * P['D'],
                       rng.uniform(z_s1 - 40, z_top - 30)])
        r = rng.uniform(5, 25)
        Rg = rot_axis(rng.normal(size=3), rng.uniform(0, np.pi))
        add(view, tmp, 'gas', prim('ell', cc, Rg, (r * rng.uniform(0.6, 1.8), r, r * rng.uniform(0.6, 1.4))),
            rng.uniform(0.5, 1.0))
    maps['water'] -= np.minimum(tmp['gas'], maps['water'] * 0.9)
    # aortic calcification (left-anterior of the spine)
    if P['age'] > 55 and rng.random() < (P['age'] - 50) / 40:
        for o in lv[2:7]:
            for _ in range(rng.integers(0, 3)):
                cc = o['p'] + np.array([15 + rng.normal(0, 3), o['R'][1, 2] * 0 + 34 + rng.normal(0, 3),
                                        rng.uniform(-15, 15)])
                add(view, maps, 'bone', prim('ell', cc, np.eye(3), (rng.uniform(1, 3), rng.uniform(2, 6), 1.0)),
                    0.5)
    for k in ('water', 'fat'):
        np.maximum(maps[k], 0, out=maps[k])


def texture(shape, pix, T, rng):
    """Trabecular texture (mean 1).  pix = world mm per pixel."""
    H, W = shape
    fy = np.fft.fftfreq(H, d=pix)[:, None].astype(np.float32)
    fx = np.fft.rfftfreq(W, d=pix)[None, :].astype(np.float32)
    per = 0.9 - 0.1 * T
    f0 = 1 / per
    lc = 3 - 0.6 * T
    V = np.exp(-((np.abs(fx) - f0) ** 2) / (2 * (0.6 * f0) ** 2) - (fy * lc) ** 2 * 2)
    wh = np.clip(0.8 + 0.15 * T, 0.1, 1.0)
    Hs = wh * np.exp(-((np.abs(fy) - 0.85 * f0) ** 2) / (2 * (0.5 * f0) ** 2) - (fx * lc * 0.5) ** 2 * 2)
    spec = (V + Hs).astype(np.float32)
    n = rng.standard_normal((H, W)).astype(np.float32)
    g = np.fft.irfft2(np.fft.rfft2(n) * spec, s=(H, W)).astype(np.float32)
    g /= g.std() + 1e-9
    bv = np.clip(0.28 + 0.035 * T, 0.08, 0.4)
    thr = np.quantile(g[::4, ::4], 1 - bv)
    S = 1 / (1 + np.exp(-(g - thr) / 0.3))
    c = np.clip(0.45 - 0.1 * T, 0.25, 0.9)
    return (1 + c * (S / S.mean() - 1)).astype(np.float32)


# ----------------------------------------------------------------------------- imaging
def lowpass(img, sig):
    """Gaussian low pass; large sigmas on a block-averaged copy."""
    if sig < 6:
        return ndimage.gaussian_filter(img, sig, mode='nearest')
    f = int(max(1, sig // 3))
    H, W = img.shape
    h2, w2 = H // f, W // f
    small = img[:h2 * f, :w2 * f].reshape(h2, f, w2, f).mean((1, 3))
    small = ndimage.gaussian_filter(small, sig / f, mode='nearest')
    out = ndimage.zoom(small, (H / h2, W / w2), order=1)
    return out[:H, :W].astype(np.float32)


def glyph_mask(text, height_px):
    font = ImageFont.load_default(size=40)
    l, t, r, b = font.getbbox(text)
    im = Image.new('L', (r - l + 8, b - t + 8), 0)
    ImageDraw.Draw(im).text((4 - l, 4 - t), text, fill=255, font=font)
    s = height_px / im.size[1]
    im = im.resize((max(1, int(im.size[0] * s)), max(1, int(height_px))), Image.BILINEAR)
    return np.asarray(im, np.float32) / 255


VENDORS = [
    dict(name='AUREX', model='DRX-7', mod='DX', photo='MONOCHROME2', bits=(12,), chain='drc', det='csi'),
    dict(name='KESTREL', model='CR-30', mod='CR', photo='MONOCHROME1', bits=(10,), chain='cr', det='bafbr'),
    dict(name='NUMA', model='MFx 500', mod='DX', photo='MONOCHROME2', bits=(14, 16), chain='mband', det='csi'),
    dict(name='HELIO', model='Raw-One', mod='DX', photo='MONOCHROME1', bits=(15,), chain='heq', det='csi'),
    dict(name='ORBIS', model='PlateX', mod='CR', photo='MONOCHROME2', bits=(12,), chain='gamma', det='bafbr'),
]


def render_view(P, items, kind, vend, rng, acq):
    """Return (stored pixel array uint16, info dict)."""
    # detector grid
    FH = rng.uniform(300, 430)
    FW = FH * rng.uniform(0.72, 0.85)
    lo, hi = max(0.1, FH / 3000), min(0.2, FH / 1500)
    sp = round(float(rng.uniform(lo, hi)), 3)
    Hf, Wf = int(FH / sp) // 2 * 2, int(FW / sp) // 2 * 2
    f = float(np.clip(0.26 / sp, 1.0, 2.5))
    Hw, Ww = int(round(Hf / f)), int(round(Wf / f))
    ws = sp * Hf / Hw
    mag = rng.uniform(1.08, 1.15) if kind == 'AP' else rng.uniform(1.15, 1.3)
    lv = P['levels']
    cen = 0.5 * (lv[3]['p'] + lv[5]['p']) + np.array([rng.normal(0, 8), rng.normal(0, 10), rng.normal(0, 12) - 10])
    if kind == 'LAT':
        cen[1] = lv[4]['p'][1] - rng.uniform(5, 25)
    else:
        cen[1] = 0
    view = View(kind, (Hw, Ww), ws, mag, cen)
    maps = {k: np.zeros((Hw, Ww), np.float32) for k in ('water', 'fat', 'bone', 'trab')}
    soft_tissue(view, P, rng, maps)
    trab_chord = np.zeros((Hw, Ww), np.float32)
    for key, p, dens, pin in items:
        if key == 'shell':
            shell(view, maps, 'bone', p, pin, dens)
        elif key == 'trab':
            r = add(view, maps, 'trab', p, dens)
            if r is not None and dens > 0:
                trab_chord[r[0]] += r[1] / 10
        else:
            add(view, maps, 'bone', p, dens)
    np.maximum(maps['trab'], 0, out=maps['trab'])
    # marrow fat in place of water inside the bodies
    mf = trab_chord * P['fat_marrow'] * 0.5
    maps['fat'] += mf
    maps['water'] = np.maximum(maps['water'] - mf, 0)
    # trabecular texture on the spine band only
    cols = [view.to_img(o['p'])[1] for o in lv]
    c0 = int(max(0, min(cols) - 90 / view.pix)); c1 = int(min(Ww, max(cols) + 90 / view.pix))
    tex = texture((Hw, c1 - c0), view.pix, P['T'], rng)
    mineral = maps['bone'].copy()
    mineral[:, c0:c1] += maps['trab'][:, c0:c1] * tex
    # spectrum and attenuation
    kvp = acq['kvp_ap'] if kind == 'AP' else acq['kvp_lat']
    eb, wb = spectrum_bins(kvp, acq['al'], acq['cu'], vend['det'])
    prim_sig = np.zeros((Hw, Ww), np.float32)
    for e, w in zip(eb, wb):
        att = mu('water', e) * maps['water'] + mu('fat', e) * 0.95 * maps['fat'] + mu('ha', e) * mineral
        prim_sig += np.float32(w) * np.exp(-att)
    # fluence: heel effect, collimation, marker
    rr = np.linspace(-1, 1, Hw, dtype=np.float32)[:, None]
    cc = np.linspace(-1, 1, Ww, dtype=np.float32)[None, :]
    heel = 1 + acq['heel'] * (rr if acq['heel_axis'] == 0 else cc)
    ang = np.radians(rng.normal(0, 1.5))
    hr, hc = rng.uniform(0.78, 0.98), rng.uniform(0.6, 0.95) if kind == 'AP' else rng.uniform(0.55, 0.85)
    sr, scn = rng.normal(0, 0.03), rng.normal(0, 0.03)
    ru = (rr - sr) * np.cos(ang) - (cc - scn) * np.sin(ang)
    cu = (rr - sr) * np.sin(ang) + (cc - scn) * np.cos(ang)
    edge = 2.5 / max(Hw, Ww)
    coll = (1 / (1 + np.exp(-(hr - np.abs(ru)) / edge))) * (1 / (1 + np.exp(-(hc - np.abs(cu)) / edge)))
    coll = coll.astype(np.float32)
    fl = heel * coll
    if rng.random() < acq['p_marker']:
        g = glyph_mask(('R' if kind == 'AP' else 'L'), 14 / view.pix)
        gh, gw = g.shape
        r0 = int((0.5 - hr / 2 * 0.9 + sr / 2) * Hw) + rng.integers(0, 20)
        c0m = int((0.5 + hc / 2 * 0.85 + scn / 2) * Ww) - gw - rng.integers(0, 20)
        if 0 <= r0 < Hw - gh and 0 <= c0m < Ww - gw:
            fl[r0:r0 + gh, c0m:c0m + gw] *= (1 - 0.95 * g)
    prim_sig *= fl
    thick = maps['water'] + maps['fat']
    spr = acq['spr_ap'] if kind == 'AP' else acq['spr_lat']
    src = prim_sig * thick  # scatter generated in tissue, none from direct exposure
    sc_raw = lowpass(src, 40 / view.pix) + 0.2 * lowpass(src, 10 / view.pix)
    ci = int(np.mean(cols)); cw = int(25 / view.pix)
    rs = slice(int(Hw * 0.3), int(Hw * 0.7)); cs_ = slice(max(0, ci - cw), min(Ww, ci + cw))
    k = spr * np.median(prim_sig[rs, cs_]) / max(np.median(sc_raw[rs, cs_]), 1e-12)
    sig = prim_sig + np.float32(k) * sc_raw
    # to detector grid, AEC, noise, blur
    sig = ndimage.zoom(sig, (Hf / Hw, Wf / Ww), order=1)[:Hf, :Wf]
    collf = ndimage.zoom(coll, (Hf / Hw, Wf / Ww), order=1)[:Hf, :Wf]
    rc = (int(Hf * 0.3), int(Hf * 0.7)); cs = (int(c0 * Wf / Ww), int(c1 * Wf / Ww))
    ref = np.median(sig[rc[0]:rc[1]:4, cs[0]:cs[1]:4])
    q = sig * np.float32(acq['quanta'] * (1.6 if kind == 'LAT' else 1.0) / max(ref, 1e-12))
    swank = 1.3 if vend['det'] == 'csi' else 1.8
    noise = rng.standard_normal(q.shape, dtype=np.float32)
    q = q + np.sqrt(np.maximum(q, 0) * swank) * noise
    q += acq['enoise'] * rng.standard_normal(q.shape, dtype=np.float32)
    q = ndimage.gaussian_filter(q, acq['blur'] * (1.6 if vend['mod'] == 'CR' else 1.0))
    if vend['mod'] == 'CR':
        q *= (1 + 0.006 * rng.standard_normal((Hf, 1))).astype(np.float32)
    q = np.maximum(q, 0.5)
    disp, wc_ww = process(q, collf > 0.5, vend, rng, acq, sp)
    mask_kind = acq['mask']
    if mask_kind != 'none':
        disp = np.where(collf > 0.5, disp, 0.0 if mask_kind == 'black' else 1.0).astype(np.float32)
    text_used = bool(rng.random() < acq['p_text'])
    if text_used:
        lines = [f"{acq['inst']}  {kind}", f"{acq['date']}  {kvp:.0f}kV", f"{acq['pid']}"]
        th = int(Hf * rng.uniform(0.012, 0.02))
        y0 = int(Hf * 0.02)
        for li, t in enumerate(lines):
            g = glyph_mask(t, th)
            gh, gw = g.shape
            x0 = int(Wf * 0.03) if li != 1 else Wf - gw - int(Wf * 0.03)
            yy = y0 + li * int(th * 1.4) if li != 1 else y0
            if yy + gh < Hf and x0 + gw < Wf and x0 > 0:
                sub = disp[yy:yy + gh, x0:x0 + gw]
                disp[yy:yy + gh, x0:x0 + gw] = np.maximum(sub, g * 0.97)
    bits = acq['bits']
    mx = 2 ** bits - 1
    d = np.clip(disp, 0, 1)
    if vend['photo'] == 'MONOCHROME1':
        d = 1 - d
    px = np.round(d * mx).astype(np.uint16)
    info = dict(text=text_used, sp=sp, rows=Hf, cols=Wf, kvp=kvp, mag=mag, wc=wc_ww, mx=mx)
    return px, info


def process(q, inside, vend, rng, acq, sp):
    """Vendor chain: return display image in [0,1], 1 = white (bone), and (wc, ww) in 0..1."""
    l = -np.log(q).astype(np.float32)  # high where attenuating
    samp = l[::7, ::7][inside[::7, ::7]]
    samp = samp[samp > samp.min() + 1.0]  # drop direct exposure beside the patient
    if samp.size < 100:
        samp = l[::7, ::7].ravel()
    ch = vend['chain']
    px_mm = 1 / sp
    if ch == 'drc':
        lo_, hi_ = np.percentile(samp, [1, 99.5])
        x = (l - lo_) / (hi_ - lo_)
        low = lowpass(x, 25 * px_mm)
        x = x - acq['drc'] * (low - 0.5)
        x = x + acq['usm'] * (x - lowpass(x, 1.5 * px_mm))
        d = 1 / (1 + np.exp(-(x - 0.5) * 5.0))
        d = (d - d.min()) / (d.max() - d.min() + 1e-9)
        return d.astype(np.float32), (0.5, 1.0)
    if ch == 'cr':
        lo_, hi_ = np.percentile(samp, [2, 98])
        x = (l - lo_) / (hi_ - lo_)
        x = x + 0.5 * (x - lowpass(x, 3 * px_mm))
        return np.clip(0.05 + 0.9 * x, 0, 1).astype(np.float32), (0.5, 0.95)
    if ch == 'mband':
        lo_, hi_ = np.percentile(samp, [6, 99.7])
        x = (l - lo_) / (hi_ - lo_)
        sig = [0.7, 3, 12, 45]
        gains = [acq['g0'], 1.35, 1.0, 0.45]
        prev = x
        out = np.zeros_like(x)
        for s, g in zip(sig, gains):
            lp = lowpass(prev, s * px_mm)
            out += g * (prev - lp)
            prev = lp
        m = float(np.median(prev[::7, ::7][inside[::7, ::7]]))
        out += 0.55 * (prev - m) + 0.5
        d = np.clip(out, 0, 1) ** 0.85
        return d.astype(np.float32), (0.45, 0.9)
    if ch == 'heq':
        lo_, hi_ = np.percentile(samp, [3, 97])
        x = np.clip((l - lo_) / (hi_ - lo_), 0, 1)
        hist, edges = np.histogram(np.clip((samp - lo_) / (hi_ - lo_), 0, 1), 256, (0, 1))
        cdf = np.cumsum(hist) / hist.sum()
        eq = np.interp(x, edges[1:], cdf).astype(np.float32)
        d = 0.6 * x + 0.4 * eq
        return d.astype(np.float32), (0.5, 0.8)
    # gamma
    lo_, hi_ = np.percentile(samp, [1, 99])
    x = np.clip((l - lo_) / (hi_ - lo_), 0, 1.2)
    x = x + 0.3 * (x - lowpass(x, 6 * px_mm))
    d = np.clip(x, 0, 1) ** acq['gamma']
    return d.astype(np.float32), (0.55, 1.0)


# ----------------------------------------------------------------------------- DICOM
def write_dicom(path, px, info, kind, vend, acq, P, uids, inst_no):
    meta = FileMetaDataset()
    sop_class = '1.2.840.10008.5.1.4.1.1.1.1' if vend['mod'] == 'DX' else '1.2.840.10008.5.1.4.1.1.1'
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = uids[kind]
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = '2.25.31415926535897932384626433832795028'
    meta.ImplementationVersionName = 'PHANTOM_I_1'
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = 'ISO_IR 100'
    ds.ImageType = ['DERIVED' if vend['chain'] != 'heq' else 'ORIGINAL', 'PRIMARY']
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uids[kind]
    ds.StudyDate = acq['date']
    ds.SeriesDate = acq['date']
    ds.ContentDate = acq['date']
    ds.StudyTime = acq['time']
    ds.SeriesTime = acq['time']
    ds.ContentTime = acq['time']
    ds.AccessionNumber = acq['acc']
    ds.Modality = vend['mod']
    ds.Manufacturer = vend['name']
    ds.InstitutionName = acq['inst']
    ds.ReferringPhysicianName = ''
    ds.StudyDescription = 'LUMBAR SPINE 2 VIEWS'
    ds.SeriesDescription = f'L-SPINE {kind}'
    ds.ManufacturerModelName = vend['model']
    ds.PatientName = f"PHANTOM^I{acq['pid'][-5:]}"
    ds.PatientID = acq['pid']
    ds.PatientBirthDate = acq['birth']
    ds.PatientSex = P['sex']
    ds.PatientAge = f"{int(P['age']):03d}Y"
    ds.BodyPartExamined = 'LSPINE'
    ds.KVP = f"{info['kvp']:.0f}"
    ds.DistanceSourceToDetector = f"{acq['sid']:.1f}"
    ds.DistanceSourceToPatient = f"{acq['sid'] / info['mag']:.1f}"
    ds.ExposureTime = str(int(acq['ms']))
    ds.XRayTubeCurrent = str(int(acq['ma']))
    ds.Exposure = str(max(1, int(acq['ma'] * acq['ms'] / 1000)))
    ds.ViewPosition = 'AP' if kind == 'AP' else 'LL'
    ds.PatientOrientation = ['L', 'F'] if kind == 'AP' else ['P', 'F']
    ds.StudyInstanceUID = uids['study']
    ds.SeriesInstanceUID = uids['series' + kind]
    ds.StudyID = acq['acc'][-6:]
    ds.SeriesNumber = 1 if kind == 'AP' else 2
    ds.InstanceNumber = inst_no
    ds.ImageLaterality = 'U'
    ds.BurnedInAnnotation = 'YES' if acq['text_used'] else 'NO'
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = vend['photo']
    ds.Rows, ds.Columns = int(px.shape[0]), int(px.shape[1])
    ds.ImagerPixelSpacing = [f"{info['sp']:.3f}", f"{info['sp']:.3f}"]
    if acq['pixel_spacing']:
        ps = info['sp'] / info['mag']
        ds.PixelSpacing = [f"{ps:.4f}", f"{ps:.4f}"]
        ds.PixelSpacingCalibrationType = 'GEOMETRY'
        ds.PixelSpacingCalibrationDescription = 'NOMINAL MAGNIFICATION AT SPINE'
    ds.BitsAllocated = 16
    ds.BitsStored = acq['bits']
    ds.HighBit = acq['bits'] - 1
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = '00'
    mx = info['mx']
    wc, ww = info['wc']
    if vend['photo'] == 'MONOCHROME1':
        wc = 1 - wc
    slope, icpt = 1.0, 0.0
    if vend['mod'] == 'DX':
        ds.PresentationIntentType = 'FOR PRESENTATION'
        ds.PixelIntensityRelationship = 'LOG'
        ds.PixelIntensityRelationshipSign = 1 if vend['photo'] == 'MONOCHROME2' else -1
        ds.PresentationLUTShape = 'IDENTITY' if vend['photo'] == 'MONOCHROME2' else 'INVERSE'
        ds.RescaleIntercept = '0'
        ds.RescaleSlope = '1'
        ds.RescaleType = 'US'
        ds.DetectorType = 'SCINTILLATOR'
        ds.DetectorConfiguration = 'AREA'
        ds.AcquisitionContextSequence = []
        ds.AnatomicRegionSequence = [Dataset()]
        ar = ds.AnatomicRegionSequence[0]
        ar.CodeValue, ar.CodingSchemeDesignator, ar.CodeMeaning = '122496007', 'SCT', 'Lumbar spine'
        ds.PositionerType = ''
        ds.ContrastBolusAgent = ''
        ds.WindowCenter = f"{wc * mx:.1f}"
        ds.WindowWidth = f"{ww * mx:.1f}"
    else:
        ds.PlateID = acq['acc'][-4:]
        if acq['rescale']:
            slope, icpt = acq['rescale']
            ds.RescaleIntercept = f"{icpt:g}"
            ds.RescaleSlope = f"{slope:g}"
            ds.RescaleType = 'US'
        if acq['cr_window']:
            ds.WindowCenter = f"{wc * mx * slope + icpt:.1f}"
            ds.WindowWidth = f"{ww * mx * slope:.1f}"
    ds.PixelData = px.astype('<u2').tobytes()
    ds.is_little_endian, ds.is_implicit_VR = True, False  # harmless hints for older pydicom
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


# ----------------------------------------------------------------------------- driver
def make_study(args):
    outdir, seed, i = args
    rng = np.random.default_rng([seed, i])
    lab = int(rng.integers(3))
    T = [rng.uniform(-1.0, 2.0), rng.uniform(-2.5, -1.0), rng.uniform(-4.5, -2.5)][lab]
    T = float(np.clip(T, -4.5, 2.0))
    if lab == 1:
        T = float(np.clip(T, -2.49, -1.01))
    T = round(T, 2)
    lab = 0 if T >= -1.0 else (1 if T > -2.5 else 2)
    bmd = round(1.0 + 0.11 * T, 3)
    sex = 'F' if rng.random() < 0.7 else 'M'
    age = int(np.clip(round(rng.normal(58 - 6.5 * T, 8)), 25, 92))
    P = make_patient(rng, T, age, sex)
    items = build_scene(P, rng)
    vend = VENDORS[int(rng.integers(len(VENDORS)))]
    pid = f'PI{seed}-{i:05d}'
    d0 = datetime.date(2014, 1, 1) + datetime.timedelta(days=int(rng.integers(0, 3650)))
    birth = d0 - datetime.timedelta(days=int(age * 365.25 + rng.integers(0, 360)))
    acq = dict(
        pid=pid, date=d0.strftime('%Y%m%d'), birth=birth.strftime('%Y%m%d'),
        time=f"{rng.integers(7, 19):02d}{rng.integers(0, 60):02d}{rng.integers(0, 60):02d}",
        acc=f"A{seed % 1000:03d}{i:07d}", inst=str(rng.choice(['ST MARA HOSP', 'NORTHFIELD IMAGING', 'CLINICA VESTA', 'RIVERSIDE RAD'])),
        kvp_ap=float(rng.uniform(70, 95)), kvp_lat=float(rng.uniform(85, 110)),
        al=float(rng.uniform(2.5, 4.5)), cu=float(rng.choice([0.0, 0.0, 0.1])),
        heel=float(rng.uniform(0.04, 0.14)) * rng.choice([-1, 1]), heel_axis=int(rng.integers(2)),
        grid=bool(rng.random() < 0.85),
        quanta=float(rng.uniform(250, 2500)), enoise=float(rng.uniform(1, 8)),
        blur=float(rng.uniform(0.5, 1.1)), drc=float(rng.uniform(0.3, 0.7)), usm=float(rng.uniform(0.6, 1.8)),
        g0=float(rng.uniform(1.2, 2.0)), gamma=float(rng.uniform(0.7, 1.3)),
        bits=int(rng.choice(vend['bits'])), sid=float(rng.choice([1000, 1150, 1800])),
        ma=float(rng.uniform(100, 500)), ms=float(rng.uniform(20, 400)),
        pixel_spacing=bool(rng.random() < 0.4),
        rescale=[None, (1.0, 0.0), (1.0, -512.0), (0.5, 0.0)][int(rng.integers(4))] if vend['mod'] == 'CR' else None,
        cr_window=bool(rng.random() < 0.6),
        p_marker=float(rng.choice([0.0, 0.5, 0.95])),
        p_text=1.0 if vend['name'] == 'KESTREL' else float(rng.choice([0.0, 0.3, 0.8])),
    )
    acq['spr_ap'] = rng.uniform(0.3, 0.7) if acq['grid'] else rng.uniform(1.5, 3.0)
    acq['spr_lat'] = acq['spr_ap'] * rng.uniform(1.5, 2.2)
    if vend['name'] == 'KESTREL':
        acq['mask'] = 'none'
    elif vend['name'] == 'NUMA':
        acq['mask'] = 'black'
    elif vend['name'] == 'ORBIS':
        acq['mask'] = str(rng.choice(['white', 'none']))
    else:
        acq['mask'] = str(rng.choice(['black', 'none', 'white'], p=[0.5, 0.35, 0.15]))
    base = f'phantom_i-{seed}-{i}'
    uids = dict(study=generate_uid(entropy_srcs=[base, 'study']),
                seriesAP=generate_uid(entropy_srcs=[base, 'series-ap']),
                seriesLAT=generate_uid(entropy_srcs=[base, 'series-lat']),
                AP=generate_uid(entropy_srcs=[base, 'sop-ap']),
                LAT=generate_uid(entropy_srcs=[base, 'sop-lat']))
    rows = []
    for n, kind in enumerate(('AP', 'LAT')):
        px, info = render_view(P, items, kind, vend, rng, acq)
        acq['text_used'] = info['text']
        fn = f'{pid}_{kind}.dcm'
        write_dicom(os.path.join(outdir, fn), px, info, kind, vend, acq, P, uids, n + 1)
        rows.append([fn, lab, f'{T:.2f}', f'{bmd:.3f}', pid, kind])
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('outdir')
    ap.add_argument('n', type=int)
    ap.add_argument('seed', type=int)
    ap.add_argument('--workers', type=int, default=1)
    a = ap.parse_args()
    os.makedirs(a.outdir, exist_ok=True)
    jobs = [(a.outdir, a.seed, i) for i in range(a.n)]
    if a.workers > 1:
        with Pool(a.workers) as pool:
            res = pool.map(make_study, jobs, chunksize=1)
    else:
        res = [make_study(j) for j in jobs]
    with open(os.path.join(a.outdir, 'manifest.csv'), 'w', newline='') as fh:
        w = csv.writer(fh, lineterminator='\n')
        w.writerow(['path', 'label', 't_score', 'bmd', 'patient_id', 'view'])
        for rows in res:
            w.writerows(rows)
    return 0


if __name__ == '__main__':
    sys.exit(main())
