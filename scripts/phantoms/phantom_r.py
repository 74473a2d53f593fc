#!/usr/bin/env python3
"""phantom_r -- mesh-free analytic-primitive lumbar spine radiograph phantom.

How it draws
------------
Each patient is a 3-D model made only of convex analytic primitives: every
primitive is the intersection of one or more quadrics (rotated ellipsoids or
finite elliptic cylinders) and half-spaces (cut planes), carrying a weight per
material channel (soft tissue, fat, gas, hydroxyapatite "ha", trabecular HA).
Hollow bones are outer-minus-inner pairs (cortical shell + trabecular core);
vertebral bodies are elliptic cylinders with endplates (tilted cut planes give
wedge fractures), pedicles are cylinders along the beam (rings in AP), the
posterior elements, sacrum, alae, iliac wings, lower ribs (chains of tube
segments), psoas, kidneys, perirenal/visceral fat, bowel gas with stool
mottling and aortic plaques are further primitives.  No voxels and no mesh:
for an AP and a lateral cone beam (true divergent rays, point source, flat
detector, slight patient obliquity) the exact chord length of every detector
ray through every primitive is solved in closed form (quadratic per quadric,
linear per plane), soft-tissue channels on a ~2 mm grid and bone/gas channels
on a ~0.6 mm grid, then upsampled to the stored grid (~0.3 mm).  At detector
resolution a 2-D anisotropic trabecular texture modulates the trabecular
channel.  Physics: 8-bin filtered tungsten spectrum (kVp 65-110, so beam
hardening follows thickness), energy-integrating detector, thickness-scaled
broad scatter with/without grid (visible grid lines sometimes), heel effect,
AEC-set dose with error, quantum + electronic noise, detector blur, lead L/R
marker, collimation.  Four invented vendor pipelines (log + percentile window
+ sigmoid; CLAHE-like tile equalisation; large-kernel dynamic-range
compression + unsharp mask; CR latitude curve, mostly MONOCHROME1), burned-in
text, BitsStored 10-16, written as DX/CR DICOM with pydicom.

How bone density shows
----------------------
Trabecular volumetric BMD of each vertebral body is 160 + 28*T mg/cm3 HA
(x per-patient and per-level scatter), so the projected HA of the bodies (and,
more weakly, sacrum and posterior elements) falls with T; cortical shell
thickness/density and endplate thickness fall mildly with T; the texture
becomes sparser, coarser and more vertically striated at low T (horizontal
struts fade).  Fractures (wedge / biconcave / crush) are more frequent at low
T.  Confounders independent of T given age: BMI (trunk size, fat), exposure,
processing, degeneration (osteophytes, endplate sclerosis, disc narrowing,
facet hypertrophy), aortic calcification, bowel gas.

CLI:  phantom_r.py OUTDIR N SEED [--workers W]
"""

import argparse
import csv
import datetime
import math
import os
import sys

import numpy as np
from scipy import ndimage as ndi

# ----------------------------------------------------------------------------
# small geometry helpers
# ----------------------------------------------------------------------------


def rot_x(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], float)


def rot_y(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], float)


def rot_z(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], float)


D2R = math.pi / 180.0


class Prim:
    """Convex primitive = intersection of quadrics and half-spaces."""
    __slots__ = ("quads", "planes", "w", "center", "radius")

    def __init__(self, quads, planes, w, center, radius):
        self.quads = quads          # list of (A 3x3, c 3)
        self.planes = planes        # list of (n 3, p0 3): inside n.(x-p0)<=0
        self.w = w                  # dict channel -> weight
        self.center = np.asarray(center, float)
        self.radius = float(radius)


def q_ell(c, semi, R):
    inv = np.diag(1.0 / np.asarray(semi, float) ** 2)
    return (R @ inv @ R.T, np.asarray(c, float))


def q_cyl(c, s1, s2, R, axis=2):
    d = np.ones(3)
    others = [i for i in range(3) if i != axis]
    d[others[0]] = 1.0 / s1 ** 2
    d[others[1]] = 1.0 / s2 ** 2
    d[axis] = 0.0
    return (R @ np.diag(d) @ R.T, np.asarray(c, float))


def ell(c, semi, R, w):
    return Prim([q_ell(c, semi, R)], [], w, c, max(semi))


def shell_ell(c, semi, R, dc, dt, t=1.2):
    """Bone ellipsoid with cortical shell (dc) and cancellous core (dt)."""
    semi = np.asarray(semi, float)
    inner = np.maximum(semi - t, 0.5)
    return [ell(c, semi, R, {"ha": dc}), ell(c, inner, R, {"ha": dt - dc})]


def cyl(c, s1, s2, h, R, w, axis=2, planes=None):
    c = np.asarray(c, float)
    ax = R[:, axis]
    if planes is None:
        planes = [(ax, c + h * ax), (-ax, c - h * ax)]
    return Prim([q_cyl(c, s1, s2, R, axis)], planes, w, c,
                math.sqrt(max(s1, s2) ** 2 + h ** 2) + 2.0)


# ----------------------------------------------------------------------------
# projector: exact chord lengths of divergent rays through primitives
# ----------------------------------------------------------------------------


def render(prims, geom, H, W, ps, k, chans):
    S, Dc, eu, ev, nrm = geom
    Hg, Wg = H // k, W // k
    sp = ps * k
    out = {c: np.zeros((Hg, Wg)) for c in chans}
    d0 = Dc - S
    sdd = float(d0 @ nrm)
    uc = (np.arange(Wg) - (Wg - 1) / 2.0) * sp
    vc = (np.arange(Hg) - (Hg - 1) / 2.0) * sp
    d0d0, d0eu, d0ev = d0 @ d0, d0 @ eu, d0 @ ev
    for p in prims:
        ws = [(c, w) for c, w in p.w.items() if c in out and w != 0.0]
        if not ws:
            continue
        dX = p.center - S
        depth = float(dX @ nrm)
        mag = sdd / depth
        magn = sdd / max(depth - p.radius, 1.0)
        rel = mag * dX - d0
        u, v = float(rel @ eu), float(rel @ ev)
        rr = p.radius * magn + sp
        j0 = max(int(math.floor((u - rr) / sp + (Wg - 1) / 2.0)), 0)
        j1 = min(int(math.ceil((u + rr) / sp + (Wg - 1) / 2.0)) + 1, Wg)
        i0 = max(int(math.floor((v - rr) / sp + (Hg - 1) / 2.0)), 0)
        i1 = min(int(math.ceil((v + rr) / sp + (Hg - 1) / 2.0)) + 1, Hg)
        if j1 <= j0 or i1 <= i0:
            continue
        U = uc[j0:j1][None, :]
        V = vc[i0:i1][:, None]
        tmin = np.zeros((i1 - i0, j1 - j0))
        tmax = np.ones((i1 - i0, j1 - j0))
        for A, c in p.quads:
            w_ = S - c
            Aw, Ad0, Aeu, Aev = A @ w_, A @ d0, A @ eu, A @ ev
            a = (d0 @ Ad0) + 2 * (eu @ Ad0) * U + 2 * (ev @ Ad0) * V \
                + (eu @ Aeu) * (U * U) + 2 * (eu @ Aev) * (U * V) + (ev @ Aev) * (V * V)
            b = (d0 @ Aw) + (eu @ Aw) * U + (ev @ Aw) * V
            cc = w_ @ Aw - 1.0
            disc = b * b - a * cc
            ok = disc > 0
            sq = np.sqrt(np.where(ok, disc, 0.0))
            inv = 1.0 / np.maximum(a, 1e-15)
            t1 = np.where(ok, (-b - sq) * inv, 2.0)
            t2 = np.where(ok, (-b + sq) * inv, -2.0)
            np.maximum(tmin, t1, out=tmin)
            np.minimum(tmax, t2, out=tmax)
        for n_, p0 in p.planes:
            nd = (n_ @ d0) + (n_ @ eu) * U + (n_ @ ev) * V
            nd = np.broadcast_to(nd, tmin.shape)
            val = float(n_ @ (p0 - S))
            with np.errstate(divide="ignore", invalid="ignore"):
                tb = val / nd
            tmax = np.where(nd > 1e-12, np.minimum(tmax, tb), tmax)
            tmin = np.where(nd < -1e-12, np.maximum(tmin, tb), tmin)
        L = tmax - tmin
        np.maximum(L, 0.0, out=L)
        L *= np.sqrt(d0d0 + 2 * d0eu * U + 2 * d0ev * V + U * U + V * V)
        for c, w in ws:
            out[c][i0:i1, j0:j1] += w * L
    return out


# ----------------------------------------------------------------------------
# patient model
# ----------------------------------------------------------------------------

LEVELS = ["T11", "T12", "L1", "L2", "L3", "L4", "L5"]
BODY_H = [21.0, 23.0, 24.5, 25.5, 26.0, 26.0, 25.0]
BODY_A = [18.5, 20.0, 21.0, 22.0, 23.5, 24.5, 25.5]
BODY_B = [14.0, 14.5, 15.0, 15.8, 16.3, 16.8, 16.8]
DISC_BELOW = [5.5, 7.0, 8.5, 9.5, 10.0, 11.0, 10.0]
THETA = [-10.0, -8.0, -6.0, -1.0, 5.0, 12.0, 20.0]
PED_X = [4.0, 4.5, 5.0, 5.5, 6.5, 7.5, 9.0]
TP_LEN = [18.0, 9.0, 15.0, 22.0, 28.0, 24.0, 20.0]


def sample_patient(seed, idx):
    rng = np.random.default_rng([int(seed), int(idx), 7177])
    cls = int(rng.integers(0, 3))
    if cls == 0:
        t = rng.uniform(-0.95, 2.2)
    elif cls == 1:
        t = rng.uniform(-2.45, -1.05)
    else:
        t = rng.uniform(-4.6, -2.55)
    t = round(float(t), 2)
    label = 0 if t >= -1.0 else (2 if t <= -2.5 else 1)
    female = rng.random() < 0.75
    age = int(np.clip(round(63 - 2 * t + rng.normal(0, 10)), 35, 95))
    bmi = float(np.clip(rng.normal(27.0, 5.0), 16.5, 46.0))
    if female:
        bmd = 1.047 + 0.110 * t
    else:
        bmd = 1.064 + 0.120 * t
    return dict(rng=rng, t=t, label=label, female=female, age=age, bmi=bmi,
                bmd=round(bmd, 3))


def build_anatomy(P):
    rng = P["rng"]
    t = P["t"]
    age, bmi, female = P["age"], P["bmi"], P["female"]
    sc = rng.normal(1.0, 0.045) * (1.0 if female else 1.08)
    deg = float(np.clip((age - 45) / 40.0 + rng.normal(0, 0.2), 0, 1))
    P["deg"] = deg

    # densities (mg/cm3 HA)
    pat_f = rng.normal(1.0, 0.065)
    dt_mean = max(160.0 + 28.0 * t, 28.0) * pat_f
    dc_body = 900.0 * (1 + 0.035 * t) * rng.normal(1.0, 0.04)
    t_shell = float(np.clip(0.9 * (1 + 0.07 * t) * rng.normal(1, 0.08), 0.45, 1.3))
    te_base = float(np.clip(1.1 * (1 + 0.05 * t), 0.6, 1.5))
    dpc = 800.0 * (1 + 0.03 * t)
    P["dt_mean"] = dt_mean

    # trunk
    a_tr = (150.0 + 4.0 * (bmi - 25.0)) * (1.0 if female else 1.06) * rng.normal(1, 0.04)
    b_tr = (100.0 + 4.5 * (bmi - 25.0)) * (1.0 if female else 1.04) * rng.normal(1, 0.05)
    a_tr, b_tr = max(a_tr, 105.0), max(b_tr, 72.0)
    fsc = float(np.clip((8.0 + 2.2 * (bmi - 18.0)) * (1.25 if female else 0.9)
                        * rng.normal(1, 0.15), 3.0, 85.0))
    P["a_tr"], P["b_tr"] = a_tr, b_tr

    # fractures: more frequent at low T
    pfx = 0.04 if t > -1 else (0.14 if t > -2.5 else 0.38 + 0.05 * (-2.5 - t))
    fx = {}
    if rng.random() < pfx:
        nfx = 1 + int(rng.random() < 0.3)
        for _ in range(nfx):
            lvl = int(rng.choice([1, 2, 3, 4, 5, 6], p=[.22, .26, .2, .14, .1, .08]))
            fx[lvl] = (str(rng.choice(["wedge", "biconcave", "crush"], p=[.5, .3, .2])),
                       float(rng.uniform(0.2, 0.45)))
    P["fractures"] = {LEVELS[k]: v for k, v in fx.items()}

    prims_b = []   # bone/gas fine channels
    prims_s = []   # soft/fat coarse channels

    # --- spine stacking from S1 top upwards
    lord = float(np.clip(rng.normal(1.0, 0.22), 0.5, 1.6))
    slope = float(np.clip(rng.normal(40.0, 7.0) * (0.6 + 0.4 * lord), 22, 60)) * D2R
    ax_s1 = np.array([0.0, -math.sin(slope), math.cos(slope)])
    n_lv = len(LEVELS)
    heights, axes, centers, thetas, discs = [None] * n_lv, [None] * n_lv, [None] * n_lv, [None] * n_lv, [None] * n_lv
    ptop = np.zeros(3)
    prev_ax = ax_s1
    for k in range(n_lv - 1, -1, -1):
        th = (THETA[k] * lord + rng.normal(0, 1.5)) * D2R
        ax = np.array([0.0, -math.sin(th), math.cos(th)])
        h = BODY_H[k] * sc * rng.normal(1, 0.03)
        if LEVELS[k] in P["fractures"] and P["fractures"][LEVELS[k]][0] == "crush":
            h *= 1 - P["fractures"][LEVELS[k]][1]
        disc = DISC_BELOW[k] * sc * rng.normal(1, 0.08)
        if k >= 4:
            disc *= 1 - 0.45 * deg * rng.random()
        else:
            disc *= 1 - 0.2 * deg * rng.random()
        mid = prev_ax + ax
        mid /= np.linalg.norm(mid)
        bot = ptop + disc * mid
        c = bot + 0.5 * h * ax
        ptop = c + 0.5 * h * ax
        heights[k], axes[k], centers[k], thetas[k], discs[k] = h, ax, c, th, disc
        prev_ax = ax
    y_body = b_tr - (BODY_B[4] * sc + 48.0 + 0.8 * fsc + 0.05 * b_tr)
    shift = np.array([0.0, y_body, 0.0]) - centers[4]
    centers = [c + shift for c in centers]
    s1_top = shift.copy()
    P["y_body"] = y_body

    # scoliosis
    sco_amp = rng.normal(0, 7.0) if rng.random() < 0.45 else rng.normal(0, 2.0)
    z_lo, z_hi = s1_top[2], centers[0][2] + 15
    rots = []
    for k in range(n_lv):
        f = (centers[k][2] - z_lo) / (z_hi - z_lo)
        dx = sco_amp * math.sin(math.pi * f)
        dxdz = sco_amp * math.pi / (z_hi - z_lo) * math.cos(math.pi * f)
        centers[k] = centers[k] + np.array([dx, 0, 0])
        rho = (0.6 * dx + rng.normal(0, 1.5)) * D2R
        R = rot_y(math.atan(dxdz)) @ rot_x(thetas[k]) @ rot_z(rho)
        rots.append(R)

    # --- vertebrae
    for k, name in enumerate(LEVELS):
        R, c = rots[k], centers[k]
        a = BODY_A[k] * sc * rng.normal(1, 0.03)
        b = BODY_B[k] * sc * rng.normal(1, 0.03)
        h = heights[k] / 2.0
        dt = dt_mean * rng.normal(1.0, 0.055)
        te = te_base
        dc = dc_body
        sclerosis = deg * rng.random() if k >= 3 else 0.3 * deg * rng.random()
        te_top = te + 1.6 * sclerosis
        te_bot = te + 1.6 * sclerosis * rng.random()
        fxt = P["fractures"].get(name)
        delta = 0.0
        if fxt is not None and fxt[0] == "crush":
            dt *= 1.18
        if fxt is not None and fxt[0] == "wedge":
            delta = 2 * h * fxt[1]
        zl = R[:, 2]
        nl = np.array([0.0, -delta / (2 * b), 1.0])
        nl /= np.linalg.norm(nl)
        ntop = R @ nl
        ptop_o = c + R @ np.array([0, 0, h - delta / 2])
        pl_out = [(ntop, ptop_o), (-zl, c - h * zl)]
        pl_in = [(ntop, ptop_o - te_top * ntop), (-zl, c - (h - te_bot) * zl)]
        rad = math.sqrt(max(a, b) ** 2 + h ** 2) + 2
        prims_b.append(Prim([q_cyl(c, a, b, R)], pl_out, {"ha": dc * (1 + 0.25 * sclerosis)}, c, rad))
        prims_b.append(Prim([q_cyl(c, a - t_shell, b - t_shell, R)], pl_in,
                            {"ha": -dc * (1 + 0.25 * sclerosis), "trab": dt}, c, rad))
        if fxt is not None and fxt[0] == "biconcave":
            dep = 2 * h * fxt[1] * 0.5
            for sgn, tep in ((1, te_top), (-1, te_bot)):
                zt = sgn * (h - tep)
                pin = c + R @ np.array([0, 0, zt])
                cutp = [(-sgn * zl, pin)]  # keep the part on the inner side
                q_in = q_cyl(c, a - t_shell, b - t_shell, R)
                e_small = q_ell(pin, (0.8 * a, 0.8 * b, dep), R)
                e_big = q_ell(pin, (0.8 * a + 1.0, 0.8 * b + 1.0, dep + tep), R)
                prims_b.append(Prim([e_small, q_in], cutp, {"trab": -dt}, pin, max(a, b)))
                prims_b.append(Prim([e_big, q_in], cutp, {"ha": dc}, pin, max(a, b) + 2))
                prims_b.append(Prim([e_small, q_in], cutp, {"ha": -dc}, pin, max(a, b)))
                # remove the flat endplate over the depression
                pe = c + R @ np.array([0, 0, sgn * (h - tep / 2)])
                prims_b.append(Prim([q_cyl(pe, 0.8 * a, 0.8 * b, R)],
                                    [(zl, pe + (tep / 2 + 0.3) * zl), (-zl, pe - (tep / 2 + 0.3) * zl)],
                                    {"ha": -dc}, pe, max(a, b) + 2))
        # ring apophyses: slightly flared endplate rims (gives the body a waist)
        for sgn in (1.0, -1.0):
            pr_ = c + R @ np.array([0, 0, sgn * (h - 1.2)])
            prims_b.append(Prim([q_cyl(pr_, a + 1.3, b + 1.0, R), q_ell(pr_, (a + 1.3, b + 1.0, 8.0), R)],
                                [(zl, pr_ + 1.2 * zl), (-zl, pr_ - 1.2 * zl)],
                                {"ha": 0.35 * dc}, pr_, max(a, b) + 3))
        # osteophytes
        n_ost = rng.poisson(2.5 * deg ** 1.5)
        for _ in range(n_ost):
            phi = rng.uniform(-math.pi * 1.05, 0.1)   # anterior / lateral rim
            zz = h if rng.random() < 0.5 else -h
            pr = np.array([a * math.cos(phi), b * math.sin(phi), zz])
            Ro = R @ rot_z(phi)
            size = rng.uniform(2.0, 5.0)
            co = c + R @ (pr * 1.04 + np.array([0, 0, 1.2 * np.sign(zz)]))
            prims_b.append(ell(co, (size, size * 1.3, size * 0.7), Ro, {"ha": 650.0}))
        # posterior elements
        is_t = name.startswith("T")
        dpt = 0.75 * dt + 60.0
        dpe = 0.6 * dt + 330.0 * (1 + 0.03 * t)
        lp = (12.0 if is_t else 14.0) * sc
        zp = 0.25 * h
        conv = (5.0 + 3.5 * max(k - 2, 0)) * D2R
        for s in (-1.0, 1.0):
            Rp = R @ rot_z(-s * conv)
            cp = c + R @ np.array([s * 0.62 * a, b + lp / 2 - 1.0, zp])
            px = PED_X[k] * sc
            pz = 7.5 * sc
            yax = Rp[:, 1]
            pls = [(yax, cp + lp / 2 * yax), (-yax, cp - lp / 2 * yax)]
            prims_b.append(Prim([q_cyl(cp, px, pz, Rp, axis=1)], pls, {"ha": dpc}, cp, math.hypot(pz, lp / 2) + 2))
            prims_b.append(Prim([q_cyl(cp, px - 1.2, pz - 1.2, Rp, axis=1)], pls, {"ha": dpt - dpc}, cp,
                                math.hypot(pz, lp / 2) + 2))
            # lamina
            cl = c + R @ np.array([s * 0.42 * a, b + lp + 5.0, zp - 3.0])
            prims_b.append(ell(cl, (9.0 * sc, 3.5, 11.0 * sc), R @ rot_z(s * 35 * D2R), {"ha": dpe}))
            # transverse process
            tl = TP_LEN[k] * sc
            th_ = 5.0 if k == 6 else 3.6
            ct = c + R @ np.array([s * (0.62 * a + tl / 2 - 2.0), b + 8.0, zp + 1.0])
            prims_b.append(ell(ct, (tl / 2 + 4.0, 4.0, th_), R @ rot_z(s * -8 * D2R) @ rot_y(s * 8 * D2R),
                               {"ha": dpe}))
            # facets: superior / inferior articular processes
            hyp = 1.0 + 0.5 * deg * rng.random()
            cf = c + R @ np.array([s * (0.45 * a + 3.0), b + lp, h + 2.0])
            prims_b.append(ell(cf, (4.5 * hyp, 6.0 * hyp, 8.0), R @ rot_z(s * 30 * D2R),
                               {"ha": dpe * (1 + 0.35 * deg)}))
            cf = c + R @ np.array([s * (0.38 * a + 2.0), b + lp + 6.0, -h - 1.0])
            prims_b.append(ell(cf, (4.5 * hyp, 6.0 * hyp, 8.0), R @ rot_z(s * 30 * D2R),
                               {"ha": dpe * (1 + 0.35 * deg)}))
        spl = (35.0 if is_t else 30.0) * sc
        stilt = (40.0 if is_t else 12.0) * D2R
        cs = c + R @ np.array([0.0, b + lp + 4.0 + spl / 2 * math.cos(stilt), zp - 3.0 - spl / 2 * math.sin(stilt)])
        prims_b += shell_ell(cs, (2.8, spl / 2, 6.0 if is_t else 9.0), R @ rot_x(-stilt), 0.6 * dpc, dpe, t=1.0)

    P["centers"] = centers

    # --- sacrum (segments going down and back from S1 top)
    dsac = 0.7 * dt_mean + 90.0
    seg_w = np.array([24.0, 22.0, 18.0, 13.0, 9.0]) * sc
    seg_d = np.array([16.0, 11.0, 9.0, 7.0, 6.0]) * sc
    seg_h = np.array([22.0, 20.0, 16.0, 13.0, 11.0]) * sc
    dth = np.array([0.0, 4.0, 10.0, 18.0, 26.0]) * D2R
    top = s1_top.copy()
    s1_center = None
    s1_R = None
    for k in range(5):
        th = slope - dth[k]
        R = rot_x(th)
        ax = R[:, 2]
        c = top - 0.5 * seg_h[k] * ax
        if k == 0:
            s1_center, s1_R = c, R
        prims_b.append(cyl(c, seg_w[k], seg_d[k], seg_h[k] / 2, R, {"ha": 650.0}))
        prims_b.append(cyl(c, seg_w[k] - 1.2, seg_d[k] - 1.2, seg_h[k] / 2 - (1.2 if k == 0 else 0.5), R,
                           {"ha": dsac - 650.0}))
        if k < 4:
            for s in (-1.0, 1.0):
                cf = c + R @ np.array([s * (0.5 * seg_w[k] + 4.0), 0.0, 0.0])
                rf = 4.5 * sc * (1 - 0.12 * k)
                prims_b.append(Prim([q_cyl(cf, rf, rf, R, axis=1), q_cyl(c, seg_w[k], seg_d[k], R)],
                                    [(ax, c + seg_h[k] / 2 * ax), (-ax, c - seg_h[k] / 2 * ax)],
                                    {"ha": -0.85 * dsac}, cf, rf + seg_d[k] + 2))
        top = c - 0.5 * seg_h[k] * ax
    # posterior sacral crest
    prims_b.append(ell(s1_center + s1_R @ np.array([0, seg_d[0] + 14.0, -12.0]), (4.0, 10.0, 26.0),
                       s1_R, {"ha": 0.8 * dsac}))
    # alae
    for s in (-1.0, 1.0):
        ca = s1_center + s1_R @ np.array([s * (seg_w[0] + 13.0), 4.0, -4.0])
        prims_b.append(ell(ca, (25.0 * sc, 12.0 * sc, 17.0 * sc), s1_R @ rot_y(-s * 22 * D2R), {"ha": dsac + 40}))

    # --- iliac wings
    flare = rng.normal(40.0, 5.0) * D2R
    for s in (-1.0, 1.0):
        att = np.array([s * (seg_w[0] + 28.0 * sc), s1_center[1] + 12.0, s1_top[2] - 20.0])
        dvec = np.array([s * math.cos(flare), -math.sin(flare), 0.0])
        cw = att + 52.0 * sc * dvec + np.array([0, 0, 14.0])
        Rw = rot_z(-s * flare) @ rot_y(s * 12 * D2R)
        prims_b += shell_ell(cw, (62.0 * sc, 6.5, 58.0 * sc), Rw, 520.0, 0.6 * dsac + 60, t=1.8)
        cb = att + np.array([s * 8.0, 6.0, -40.0])
        prims_b += shell_ell(cb, (15.0 * sc, 13.0 * sc, 28.0 * sc), Rw, 420.0, 0.5 * dsac + 40, t=1.8)

    # --- lower ribs (T10 virtual, T11, T12)
    a_in = a_tr - fsc
    b_in = b_tr - 1.1 * fsc
    for k, (lvl, aend, drop) in enumerate(((0, 2.1, 75.0), (0, 1.6, 55.0), (1, 1.05, 38.0))):
        c_v, R_v = centers[lvl], rots[lvl]
        zoff = 27.0 * sc if k == 0 else 4.0
        if lvl == 0 and k == 1:
            zoff = 4.0
        for s in (-1.0, 1.0):
            if rng.random() < 0.08:
                continue
            p0 = c_v + R_v @ np.array([s * (BODY_A[lvl] * sc + 8.0), BODY_B[lvl] * sc + 8.0, zoff])
            rx = max(0.83 * a_in - abs(p0[0]), 40.0)
            ry = 0.55 * b_in
            yc = p0[1] - ry
            ae = aend * rng.normal(1, 0.08)
            nseg = 9
            al = np.linspace(0, ae, nseg + 1)
            pts = np.stack([p0[0] + s * rx * np.sin(al), yc + ry * np.cos(al),
                            p0[2] - drop * (al / ae) ** 1.15], 1)
            for i in range(nseg):
                q0, q1 = pts[i], pts[i + 1]
                dd = q1 - q0
                L = np.linalg.norm(dd)
                zax = dd / L
                up = np.array([0, 0, 1.0]) - zax[2] * zax
                up /= np.linalg.norm(up)
                xax = np.cross(up, zax)
                Rr = np.stack([xax, up, zax], 1)
                cm = 0.5 * (q0 + q1)
                pl = [(zax, q1), (-zax, q0)]
                prims_b.append(Prim([q_cyl(cm, 3.2, 6.0, Rr)], pl, {"ha": 650.0}, cm, L / 2 + 7))
                prims_b.append(Prim([q_cyl(cm, 2.2, 5.0, Rr)], pl, {"ha": -470.0}, cm, L / 2 + 7))

    # --- aortic calcification
    pcal = float(np.clip((age - 48) / 35.0, 0, 1)) ** 1.5
    n_pl = rng.poisson(22 * pcal) if rng.random() < 0.85 else 0
    y_ao = y_body - BODY_B[4] * sc - 16.0
    z_top, z_bif = centers[0][2] + 10, centers[5][2]
    for _ in range(n_pl):
        zz = rng.uniform(z_bif - 30, z_top)
        if zz > z_bif:
            cx, cyy = 14.0 + 4.0 * (zz - z_bif) / (z_top - z_bif), y_ao
            rad = 10.5
        else:
            sgn = rng.choice([-1.0, 1.0])
            cx, cyy, rad = 10.0 + sgn * 0.5 * (z_bif - zz), y_ao - 3.0, 5.5
        ang = rng.uniform(0, 2 * math.pi)
        pc = np.array([cx + rad * math.cos(ang), cyy + rad * math.sin(ang), zz])
        Rp = rot_z(ang)
        prims_b.append(ell(pc, (0.7, rng.uniform(2, 6), rng.uniform(2.5, 9)), Rp,
                           {"ha": rng.uniform(700, 1200)}))

    # --- soft tissues (coarse)
    zc = s1_top[2] + 90.0
    big = 420.0
    I = np.eye(3)
    prims_s.append(cyl([0, 0, zc], a_tr, b_tr, big, I, {"fat": 1.0}))
    prims_s.append(cyl([0, 0, zc], a_in, b_in, big, I, {"fat": -1.0, "soft": 1.0}))
    vis = float(np.clip(0.04 + 0.018 * (bmi - 20) * (1.3 if not female else 1.0), 0.02, 0.45))
    prims_s.append(ell([0, -0.2 * b_in, zc - 30], (0.62 * a_in, 0.55 * b_in, 170.0), I,
                       {"fat": vis, "soft": -vis}))
    zl1, zs1 = centers[2][2], s1_top[2]
    for s in (-1.0, 1.0):
        # retroperitoneal fat + psoas
        q_rp = q_ell([s * 48.0, y_body + 5.0, zc - 40], (50.0, 40.0, 150.0), I)
        prims_s.append(Prim([q_rp], [], {"fat": 0.45, "soft": -0.45}, [s * 48.0, y_body + 5.0, zc - 40], 150))
        ptop_ = np.array([s * 18.0, y_body + 4.0, zl1 + 10])
        pbot = np.array([s * 62.0 * sc, y_body - 18.0, zs1 - 70])
        cps = 0.5 * (ptop_ + pbot)
        dv = pbot - ptop_
        Lp = np.linalg.norm(dv) / 2 + 10
        zax = -dv / np.linalg.norm(dv)
        xax = np.cross([0, 1.0, 0], zax)
        xax /= np.linalg.norm(xax)
        Rps = np.stack([xax, np.cross(zax, xax), zax], 1)
        wps = 22.0 * sc * (0.8 + 0.4 * rng.random()) * (1.15 if not female else 1.0)
        prims_s.append(Prim([q_ell(cps, (wps, 0.85 * wps, Lp), Rps), q_rp], [],
                            {"fat": -0.45, "soft": 0.45}, cps, Lp))
        # kidneys with perirenal fat
        ck = np.array([s * 62.0 * sc, y_body + 12.0, centers[2][2] + (0 if s > 0 else -15.0)])
        Rk = rot_z(s * 25 * D2R) @ rot_y(s * 15 * D2R)
        prims_s.append(ell(ck, (36.0, 32.0, 64.0), Rk, {"fat": 0.4, "soft": -0.4}))
        prims_s.append(ell(ck, (26.0, 22.0, 54.0), Rk, {"fat": -0.4, "soft": 0.4}))
    prims_s.append(ell([-0.42 * a_in, -0.05 * b_in, centers[0][2] + 10], (0.55 * a_in, 0.75 * b_in, 95.0), I,
                       {"soft": 0.06}))

    # --- bowel gas & stool (fine channel "gas" = mm of air replacing tissue)
    gas_amt = float(rng.gamma(2.0, 0.5))
    zl2, zl3 = centers[3][2], centers[4][2]
    path = []
    for z in np.linspace(zs1 - 20, zl1, 7):
        path.append((-0.55 * a_in, -0.1 * b_in, z))
    for x in np.linspace(-0.5 * a_in, 0.5 * a_in, 9):
        path.append((x, -0.55 * b_in, zl2 - 25 * (1 - (x / (0.5 * a_in)) ** 2) * rng.random()))
    for z in np.linspace(zl1 + 5, zs1 - 20, 7):
        path.append((0.6 * a_in, 0.0, z))
    for f in np.linspace(0, 1, 5):
        path.append((0.5 * a_in * (1 - f), -0.2 * b_in + f * 0.25 * b_in, zs1 - 40 - 50 * f))
    path = np.array(path)
    for i, p in enumerate(path):
        if rng.random() < 0.35 * gas_amt:
            tg = path[min(i + 1, len(path) - 1)] - path[max(i - 1, 0)]
            tg /= np.linalg.norm(tg) + 1e-9
            xq = np.cross([0, 1.0, 0], tg)
            if np.linalg.norm(xq) < 1e-6:
                xq = np.array([1.0, 0, 0])
            xq /= np.linalg.norm(xq)
            Rg = np.stack([xq, np.cross(tg, xq), tg], 1)
            rr_ = rng.uniform(8, 20)
            semi = (rr_, rr_ * 0.8, rng.uniform(12, 30))
            cpos = p + rng.normal(0, 5, 3)
            prims_b.append(ell(cpos, semi, Rg, {"gas": 0.9}))
            for hf in range(int(rng.integers(0, 4))):   # haustral folds
                cp2 = cpos + tg * rng.uniform(-0.8, 0.8) * semi[2]
                prims_b.append(Prim([q_ell(cp2, (rr_ * 1.02, rr_ * 0.82, 1.2), Rg), q_ell(cpos, semi, Rg)], [],
                                    {"gas": -0.45}, cp2, rr_ * 1.02))
    n_stool = int(rng.integers(0, 4))
    for _ in range(n_stool):
        p = path[int(rng.integers(0, len(path)))]
        for _ in range(int(rng.integers(25, 70))):
            cpos = p + rng.normal(0, [12, 9, 12])
            r = rng.uniform(1.2, 3.8)
            prims_b.append(ell(cpos, (r, r, r * rng.uniform(0.7, 1.3)), I, {"gas": 0.8}))
    for _ in range(rng.poisson(3 * gas_amt)):
        cpos = np.array([rng.uniform(-0.35, 0.35) * a_in, rng.uniform(-0.6, -0.1) * b_in,
                         rng.uniform(zs1 - 40, zl3 + 30)])
        r = rng.uniform(5, 13)
        prims_b.append(ell(cpos, (r, r * 0.8, r * 0.7), I, {"gas": 0.9}))

    P["s1_top"] = s1_top
    return prims_b, prims_s


# ----------------------------------------------------------------------------
# physics
# ----------------------------------------------------------------------------

_E_TAB = np.array([20, 30, 40, 50, 60, 80, 100, 120], float)
_MU = {  # mass attenuation cm2/g (approximate)
    "water": [0.810, 0.376, 0.268, 0.227, 0.206, 0.184, 0.171, 0.161],
    "fat": [0.558, 0.302, 0.235, 0.207, 0.192, 0.175, 0.164, 0.155],
    "ha": [8.40, 2.70, 1.25, 0.72, 0.48, 0.29, 0.22, 0.19],
    "al": [3.44, 1.13, 0.57, 0.37, 0.28, 0.20, 0.17, 0.155],
    "cu": [33.8, 10.9, 4.86, 2.61, 1.59, 0.76, 0.46, 0.33],
}


def mu(mat, E):
    return np.exp(np.interp(np.log(E), np.log(_E_TAB), np.log(_MU[mat])))


def spectrum(kvp, al_mm, cu_mm, nb=8):
    E = np.linspace(18.0, kvp - 3.0, nb)
    phi = np.maximum(kvp - E, 0.5) / E
    phi *= np.exp(-mu("al", E) * 2.7 * al_mm / 10 - mu("cu", E) * 8.96 * cu_mm / 10)
    eta = 1 - np.exp(-4.0 * (40.0 / E) ** 2)
    w = phi * E * eta
    return E, w / w.sum()


def up(img, k):
    if k == 1:
        return img
    return ndi.zoom(img, k, order=1, grid_mode=True, mode="nearest")


def smooth(img, sig):
    """Gaussian blur; large sigmas done on a decimated copy."""
    if sig <= 6:
        return ndi.gaussian_filter(img, sig)
    f = max(int(sig // 3), 2)
    H, W = img.shape
    Hc, Wc = -(-H // f), -(-W // f)
    pad = np.pad(img, ((0, Hc * f - H), (0, Wc * f - W)), mode="edge")
    small = pad.reshape(Hc, f, Wc, f).mean((1, 3))
    small = ndi.gaussian_filter(small, sig / f, mode="nearest")
    return ndi.zoom(small, f, order=1, grid_mode=True, mode="nearest")[:H, :W]


def trab_texture(shape, ps, t, rng):
    coarse = 1.0 + 0.12 * max(-t, 0.0)
    ss = 0.42 * coarse / ps
    sl = 1.3 * coarse / ps
    wn = rng.standard_normal(shape)
    nv = ndi.gaussian_filter(wn, (sl, ss)) - ndi.gaussian_filter(wn, (2.5 * sl, 2.5 * ss))
    wn = rng.standard_normal(shape)
    nh = ndi.gaussian_filter(wn, (ss, sl)) - ndi.gaussian_filter(wn, (2.5 * ss, 2.5 * sl))
    nv /= nv.std() + 1e-9
    nh /= nh.std() + 1e-9
    wh = float(np.clip(0.85 + 0.22 * t, 0.08, 1.1))
    F = nv + wh * nh
    F /= F.std() + 1e-9
    kk = float(np.clip(0.28 - 0.05 * t, 0.2, 0.55))
    return np.exp(kk * F - 0.5 * kk * kk)


def text_mask(H, W, lines, corner, px, rng):
    from PIL import Image, ImageDraw, ImageFont
    img = Image.new("L", (W, H), 0)
    dr = ImageDraw.Draw(img)
    try:
        font = ImageFont.load_default(size=px)
    except Exception:  # pragma: no cover
        font = ImageFont.load_default()
    y = int(0.02 * H) if corner[0] == "t" else int(H - 0.02 * H - len(lines) * px * 1.25)
    for ln in lines:
        x = int(0.025 * W) if corner[1] == "l" else int(W - 0.025 * W - dr.textlength(ln, font=font))
        dr.text((x, y), ln, fill=255, font=font)
        y += int(px * 1.25)
    return np.asarray(img, np.float32) / 255.0


def marker_mask(H, W, letter, cx, cy, px):
    from PIL import Image, ImageDraw, ImageFont
    img = Image.new("L", (W, H), 0)
    dr = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=px)
    bx = int(px * 0.9)
    dr.rectangle([cx - bx // 2, cy - bx // 2, cx + bx // 2, cy + bx // 2], outline=140, width=max(2, px // 12))
    dr.text((cx, cy), letter, fill=255, font=font, anchor="mm")
    return np.asarray(img, np.float32) / 255.0


def clahe(x, tiles, clip, nb=256):
    H, W = x.shape
    q = np.clip((x * (nb - 1)).astype(np.int32), 0, nb - 1)
    ty, tx = tiles
    ey = np.linspace(0, H, ty + 1).astype(int)
    ex = np.linspace(0, W, tx + 1).astype(int)
    lut = np.zeros((ty, tx, nb))
    for i in range(ty):
        for j in range(tx):
            blk = q[ey[i]:ey[i + 1], ex[j]:ex[j + 1]]
            hist = np.bincount(blk.ravel(), minlength=nb).astype(float)
            lim = clip * blk.size / nb
            exc = np.maximum(hist - lim, 0).sum()
            hist = np.minimum(hist, lim) + exc / nb
            cdf = np.cumsum(hist)
            lut[i, j] = (cdf - cdf[0]) / max(cdf[-1] - cdf[0], 1e-9)
    cy = 0.5 * (ey[:-1] + ey[1:])
    cx = 0.5 * (ex[:-1] + ex[1:])
    fy = np.clip(np.interp(np.arange(H), cy, np.arange(ty)), 0, ty - 1)
    fx = np.clip(np.interp(np.arange(W), cx, np.arange(tx)), 0, tx - 1)
    y0 = np.minimum(fy.astype(int), ty - 2)
    x0 = np.minimum(fx.astype(int), tx - 2)
    wy = (fy - y0)[:, None]
    wx = (fx - x0)[None, :]
    Y0, X0 = y0[:, None], x0[None, :]
    v00 = lut[Y0, X0, q]
    v01 = lut[Y0, X0 + 1, q]
    v10 = lut[Y0 + 1, X0, q]
    v11 = lut[Y0 + 1, X0 + 1, q]
    return (v00 * (1 - wx) + v01 * wx) * (1 - wy) + (v10 * (1 - wx) + v11 * wx) * wy


VENDORS = [
    dict(name="Aurelia Imaging", model="AUR-DR 4300", modality="DX", proc="sigmoid"),
    dict(name="Kestrel Medical Systems", model="KX Flat 35", modality="DX", proc="clahe"),
    dict(name="Norrland Radiografi AB", model="NR-Vista D", modality="DX", proc="drc"),
    dict(name="Cirrus Photonics", model="CirrusCR 900", modality="CR", proc="crlat"),
]


def pct_norm(A, mask, lo, hi):
    vals = A[mask][::5]
    if vals.size < 100:
        vals = A.ravel()[::5]
    a, b = np.percentile(vals, [lo, hi])
    return (A - a) / max(b - a, 1e-6)


def make_view(P, prims_b, prims_s, view, vendor, rng):
    t = P["t"]
    a_tr, b_tr, y_body = P["a_tr"], P["b_tr"], P["y_body"]
    ps = float(rng.choice([0.28, 0.30, 0.32, 0.34, 0.36]))
    kf, kc = 2, 6
    H = int(min(1392 // 12, round(rng.uniform(385, 430) / ps / 12)) * 12)
    W = int(min(1296 // 12, round(rng.uniform(300, 350) / ps / 12)) * 12)
    zc = P["centers"][4][2] - 12.0 + rng.normal(0, 10)
    if view == "AP":
        kvp = float(np.clip(rng.normal(80, 6), 66, 100))
        sid = float(rng.choice([1000.0, 1000.0, 1100.0, 1150.0]))
        ydet = b_tr + rng.uniform(45, 80)
        nrm = np.array([0.0, 1.0, 0.0])
        Dc = np.array([P["centers"][4][0] + rng.normal(0, 8), ydet, zc])
        eu, ev = np.array([1.0, 0, 0]), np.array([0, 0, -1.0])
        piv = np.array([0.0, y_body, zc])
    else:
        kvp = float(np.clip(rng.normal(92, 7), 75, 110))
        sid = float(rng.choice([1000.0, 1000.0, 1100.0]))
        xdet = a_tr + rng.uniform(35, 70)
        nrm = np.array([1.0, 0, 0])
        Dc = np.array([xdet, y_body + 22.0 + rng.normal(0, 10), zc])
        eu, ev = np.array([0, 1.0, 0]), np.array([0, 0, -1.0])
        piv = np.array([0.0, y_body, zc])
    S = Dc - sid * nrm
    # patient obliquity / tilt: rotate the beam geometry around the spine
    Rv = rot_z(rng.normal(0, 3.0) * D2R) @ rot_x(rng.normal(0, 2.0) * D2R) @ rot_y(rng.normal(0, 1.5) * D2R)
    S = piv + Rv @ (S - piv)
    Dc = piv + Rv @ (Dc - piv)
    eu, ev, nrm = Rv @ eu, Rv @ ev, Rv @ nrm
    geom = (S, Dc, eu, ev, nrm)
    mag = sid / float((np.array([0.0, y_body, zc]) - S) @ nrm)

    fine = render(prims_b, geom, H, W, ps, kf, ("ha", "trab", "gas"))
    coarse = render(prims_s, geom, H, W, ps, kc, ("soft", "fat"))
    ha = up(fine["ha"], kf)
    trab = up(fine["trab"], kf)
    gas = up(fine["gas"], kf)
    soft = up(coarse["soft"], kc)
    fat = up(np.maximum(coarse["fat"], 0), kc)
    soft = np.maximum(soft - gas, 0.0)
    # 2-D trabecular texture at detector resolution
    nzr = np.nonzero(trab.max(1) > 1.0)[0]
    nzc = np.nonzero(trab.max(0) > 1.0)[0]
    if nzr.size and nzc.size:
        r0, r1 = max(nzr[0] - 8, 0), min(nzr[-1] + 9, H)
        c0, c1 = max(nzc[0] - 8, 0), min(nzc[-1] + 9, W)
        trab[r0:r1, c0:c1] *= trab_texture((r1 - r0, c1 - c0), ps, t, rng)
    ha_g = (np.maximum(ha, 0) + np.maximum(trab, 0)) * 1e-4     # g/cm2
    soft_g = soft * 0.1 * 1.03
    fat_g = fat * 0.1 * 0.92

    al = float(rng.uniform(2.5, 4.0))
    cu = float(rng.choice([0.0, 0.0, 0.1, 0.2]))
    E, wE = spectrum(kvp, al, cu)
    mw, mf, mh = mu("water", E), mu("fat", E), mu("ha", E)
    prim = np.zeros((H, W))
    for i in range(len(E)):
        prim += wE[i] * np.exp(-(mw[i] * soft_g + mf[i] * fat_g + mh[i] * ha_g))

    grid = rng.random() < (0.88 if vendor["modality"] == "DX" else 0.75)
    thick_cm = (soft_g + fat_g) / 1.0
    spr_k = 0.12 * (0.22 if grid else 1.0) * rng.normal(1, 0.12)
    sig_sc = 38.0 / ps
    spr = smooth(thick_cm, 20.0 / ps) * spr_k
    scat = smooth(prim * spr, sig_sc)
    sig = prim * (0.72 if grid else 1.0) + scat
    if grid and rng.random() < 0.3:
        per = rng.uniform(2.1, 4.5)
        amp = rng.uniform(0.008, 0.03)
        if rng.random() < 0.7:
            sig *= 1 + amp * np.cos(2 * math.pi * np.arange(W) / per)[None, :]
        else:
            sig *= 1 + amp * np.cos(2 * math.pi * np.arange(H) / per)[:, None]
    heel = rng.uniform(0.04, 0.14) * rng.choice([-1.0, 1.0])
    sig *= 1 + heel * (np.arange(H) / (H - 1) - 0.5)[:, None]

    # lead marker
    px = int(16.0 / ps)
    if view == "AP":
        letter = str(rng.choice(["L", "R"]))
        side = 1 if letter == "L" else -1
        mx = int(W / 2 + side * W * rng.uniform(0.3, 0.4))
    else:
        letter = "L"
        mx = int(W * rng.choice([0.12, 0.85]))
    my = int(H * rng.choice([rng.uniform(0.07, 0.16), rng.uniform(0.84, 0.93)]))
    mm = marker_mask(H, W, letter, mx, my, px)
    sig *= 1 - 0.97 * mm

    # collimation
    coll = str(rng.choice(["none", "raw", "black", "white"], p=[0.3, 0.25, 0.3, 0.15]))
    inside = np.ones((H, W), bool)
    if coll != "none":
        ang = rng.normal(0, 1.2) * D2R
        yy, xx = np.mgrid[0:H, 0:W]
        yy = yy - H / 2.0
        xx = xx - W / 2.0
        ur = xx * math.cos(ang) + yy * math.sin(ang)
        vr = -xx * math.sin(ang) + yy * math.cos(ang)
        hx = W / 2.0 * rng.uniform(0.72, 0.95)
        hy = H / 2.0 * rng.uniform(0.82, 0.98)
        ox, oy = rng.normal(0, 0.03 * W), rng.normal(0, 0.02 * H)
        inside = (np.abs(ur - ox) < hx) & (np.abs(vr - oy) < hy)
        edge = ndi.gaussian_filter(inside.astype(float), 1.5 / ps)
        sig = sig * (0.04 + 0.96 * edge)

    # AEC
    if view == "AP":
        box = sig[int(0.35 * H):int(0.65 * H), int(0.4 * W):int(0.6 * W)]
    else:
        box = sig[int(0.35 * H):int(0.65 * H), int(0.3 * W):int(0.55 * W)]
    q_target = rng.uniform(900, 3500) * (ps / 0.3) ** 2 * math.exp(rng.normal(0, 0.22))
    n0 = q_target / max(float(np.median(box)), 1e-9)
    counts = sig * n0
    counts = counts + np.sqrt(np.maximum(counts, 0) * 1.3) * rng.standard_normal((H, W)).astype(np.float64)
    counts += rng.uniform(1.0, 4.0) * rng.standard_normal((H, W))
    blur = rng.uniform(0.5, 0.85) * (1.5 if vendor["modality"] == "CR" else 1.0)
    counts = ndi.gaussian_filter(counts, blur)
    counts = np.maximum(counts, 0.5)
    A = np.log(n0 / counts)
    mas = float(np.clip(n0 * 1.1e-4 * (80.0 / kvp) ** 2 * (0.3 / ps) ** 2, 1.0, 320.0))

    # vendor processing -> D in [0,1], bright = attenuating
    proc = vendor["proc"]
    msk = inside & (mm < 0.1)
    anat = msk & (A > min(1.2, float(np.percentile(A[msk][::7], 40))))
    if anat.sum() < 1000:
        anat = msk
    keq = {"sigmoid": (0.5, 0.75), "clahe": (0.3, 0.5), "drc": (0.7, 0.88), "crlat": (0.45, 0.65)}[proc]
    low = smooth(A, rng.uniform(22, 45) / ps)
    A = A - rng.uniform(*keq) * (low - float(np.median(low[anat])))
    roi = np.zeros_like(anat)
    roi[int(0.15 * H):int(0.85 * H), int(0.2 * W):int(0.8 * W)] = True
    msk = anat & roi if (anat & roi).sum() > 1000 else anat
    if proc == "sigmoid":
        x = pct_norm(A, msk, 0.5, 99.6)
        x = x + rng.uniform(0.3, 0.8) * (x - ndi.gaussian_filter(x, 1.5 / ps))
        g, cen = rng.uniform(4.5, 8.0), rng.uniform(0.42, 0.6)
        lo, hi = 1 / (1 + math.exp(g * cen)), 1 / (1 + math.exp(-g * (1 - cen)))
        D = (1 / (1 + np.exp(-g * (x - cen))) - lo) / (hi - lo)
    elif proc == "clahe":
        x = np.clip(pct_norm(A, msk, 0.5, 99.5), 0, 1)
        ti = int(rng.integers(6, 11))
        y = clahe(x, (ti, max(ti - 2, 4)), rng.uniform(1.8, 3.5))
        al_ = rng.uniform(0.5, 0.85)
        D = (al_ * y + (1 - al_) * x) ** rng.uniform(0.85, 1.15)
    elif proc == "drc":
        A2 = A
        A3 = A2 + rng.uniform(0.5, 1.2) * (A2 - ndi.gaussian_filter(A2, 2.5 / ps))
        D = np.clip(pct_norm(A3, msk, 1.0, 99.0), 0, 1) ** rng.uniform(0.9, 1.2)
    else:
        x = pct_norm(A, msk, 0.2, 99.8)
        g = rng.uniform(2.8, 4.2)
        cen = rng.uniform(0.45, 0.55)
        D = 0.5 + 0.5 * np.tanh(g * (x - cen)) / math.tanh(g * 0.55)
    D = np.clip(D, 0.0, 1.0)
    if coll == "black":
        D[~inside] = 0.0
    elif coll == "white":
        D[~inside] = 1.0

    # burned-in annotation
    burned = rng.random() < 0.75
    if burned:
        lines = [vendor["name"].split()[0].upper(), "L-SPINE " + ("AP" if view == "AP" else "LAT"),
                 "%d kV  %.1f mAs" % (round(kvp), mas)]
        tm = text_mask(H, W, lines, str(rng.choice(["tl", "tr", "bl", "br"])), int(8.0 / ps), rng)
        D = np.maximum(D, tm * rng.uniform(0.85, 1.0))

    bits = {"DX": [12, 12, 14, 14, 16, 10], "CR": [10, 10, 12, 12]}[vendor["modality"]]
    bits = int(rng.choice(bits))
    maxv = 2 ** bits - 1
    mono1 = rng.random() < (0.72 if vendor["modality"] == "CR" else 0.11)
    sv = np.round(D * maxv).astype(np.uint16)
    if mono1:
        sv = (maxv - sv).astype(np.uint16)
    info = dict(kvp=kvp, mas=mas, sid=sid, mag=mag, ps=ps, bits=bits, mono1=mono1, grid=grid,
                burned=burned, coll=coll, sdd=sid, sod=sid / mag)
    return sv, info


# ----------------------------------------------------------------------------
# DICOM
# ----------------------------------------------------------------------------


def write_dicom(path, sv, info, P, view, vendor, uids, study_dt, rng, seed, idx):
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    is_dx = vendor["modality"] == "DX"
    sop_class = "1.2.840.10008.5.1.4.1.1.1.1" if is_dx else "1.2.840.10008.5.1.4.1.1.1"
    sop_uid = generate_uid(entropy_srcs=["phantom_r", str(seed), str(idx), view, "sop"])
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = sop_class
    fm.MediaStorageSOPInstanceUID = sop_uid
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    fm.ImplementationClassUID = generate_uid(entropy_srcs=["phantom_r-impl"])
    fm.ImplementationVersionName = "PHANTOM_R_1"
    ds = Dataset()
    ds.file_meta = fm
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "PRIMARY"] if is_dx else ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    d = study_dt.strftime("%Y%m%d")
    tm = study_dt.strftime("%H%M%S")
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = d
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = tm
    ds.AccessionNumber = "R%07d" % (int(seed) * 1000 + idx) if int(seed) < 10000 else "R%d" % idx
    ds.Modality = vendor["modality"]
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = vendor["name"]
    ds.ManufacturerModelName = vendor["model"]
    ds.InstitutionName = "Phantom General Hospital"
    ds.ReferringPhysicianName = "Referrer^Anon"
    ds.StudyDescription = "XR LUMBAR SPINE 2 VIEWS"
    ds.SeriesDescription = "L-SPINE " + ("AP" if view == "AP" else "LAT")
    ds.PatientName = "PhantomR^%s%d" % ("F" if P["female"] else "M", idx)
    ds.PatientID = P["pid"]
    by = study_dt.year - P["age"]
    ds.PatientBirthDate = "%04d%02d%02d" % (by, 1 + int(rng.integers(0, 12)), 1 + int(rng.integers(0, 28)))
    ds.PatientSex = "F" if P["female"] else "M"
    ds.PatientAge = "%03dY" % P["age"]
    ds.BodyPartExamined = "LSPINE"
    ds.ViewPosition = "AP" if view == "AP" else "LL"
    ds.PatientOrientation = ["L", "F"] if view == "AP" else ["P", "F"]
    ds.ImageLaterality = "U"
    ds.KVP = "%.0f" % info["kvp"]
    ds.Exposure = int(round(info["mas"]))
    ds.ExposureInuAs = int(round(info["mas"] * 1000))
    ds.DistanceSourceToDetector = "%.1f" % info["sdd"]
    ds.DistanceSourceToPatient = "%.1f" % info["sod"]
    ds.EstimatedRadiographicMagnificationFactor = "%.4f" % info["mag"]
    ds.Grid = "FOCUSED" if info["grid"] else "NONE"
    ds.StudyInstanceUID = uids["study"]
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["phantom_r", str(seed), str(idx), view, "series"])
    ds.StudyID = "%d" % (idx + 1)
    ds.SeriesNumber = 1 if view == "AP" else 2
    ds.InstanceNumber = 1
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=["phantom_r", str(seed), str(idx), view, "for"])
    ds.BurnedInAnnotation = "YES" if info["burned"] else "NO"
    ds.LossyImageCompression = "00"
    ps = "%.4f" % info["ps"]
    ds.ImagerPixelSpacing = [ps, ps]
    ds.PixelSpacing = [ps, ps]
    if is_dx:
        ds.DetectorType = "SCINTILLATOR"
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = -1 if info["mono1"] else 1
        ds.PresentationLUTShape = "INVERSE" if info["mono1"] else "IDENTITY"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if info["mono1"] else "MONOCHROME2"
    ds.Rows, ds.Columns = sv.shape
    ds.BitsAllocated = 16
    ds.BitsStored = info["bits"]
    ds.HighBit = info["bits"] - 1
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    maxv = 2 ** info["bits"] - 1
    ds.WindowCenter = "%d" % int(round(maxv * rng.uniform(0.47, 0.53)))
    ds.WindowWidth = "%d" % int(round(maxv * rng.uniform(0.9, 1.0)))
    ds.VOILUTFunction = "LINEAR"
    ds.PixelData = sv.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


# ----------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------


def make_patient(args):
    outdir, seed, idx = args
    from pydicom.uid import generate_uid
    P = sample_patient(seed, idx)
    P["pid"] = "PHR%d-%04d" % (int(seed), idx)
    prims_b, prims_s = build_anatomy(P)
    rng = P["rng"]
    vendor = VENDORS[int(rng.choice(4, p=[0.27, 0.24, 0.24, 0.25]))]
    base = datetime.datetime(2018, 1, 1, 7, 30)
    study_dt = base + datetime.timedelta(days=int(rng.integers(0, 2500)), minutes=int(rng.integers(0, 600)))
    uids = {"study": generate_uid(entropy_srcs=["phantom_r", str(seed), str(idx), "study"])}
    rows = []
    for view in ("AP", "LAT"):
        vr = np.random.default_rng([int(seed), int(idx), 1 if view == "AP" else 2, 99])
        sv, info = make_view(P, prims_b, prims_s, view, vendor, vr)
        fn = "%s_%s.dcm" % (P["pid"], view)
        write_dicom(os.path.join(outdir, fn), sv, info, P, view, vendor, uids, study_dt, vr, seed, idx)
        rows.append([fn, P["label"], "%.2f" % P["t"], "%.3f" % P["bmd"], P["pid"], view])
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description="lumbar spine radiograph phantom (analytic primitives)")
    ap.add_argument("outdir")
    ap.add_argument("n", type=int)
    ap.add_argument("seed", type=int)
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args(argv)
    os.makedirs(a.outdir, exist_ok=True)
    jobs = [(a.outdir, a.seed, i) for i in range(a.n)]
    if a.workers > 1 and a.n > 1:
        import multiprocessing as mp
        ctx = mp.get_context("spawn")
        with ctx.Pool(a.workers) as pool:
            results = pool.map(make_patient, jobs, chunksize=1)
    else:
        results = [make_patient(j) for j in jobs]
    with open(os.path.join(a.outdir, "manifest.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "t_score", "bmd", "patient_id", "view"])
        for rows in results:
            for r in rows:
                w.writerow(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
