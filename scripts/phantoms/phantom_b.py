#!/usr/bin/env python3
"""phantom_b.py -- independent synthetic lumbar-spine radiograph study generator ("phantom B").

Usage:
    python phantom_b.py OUT_DIR N_STUDIES SEED [--workers K]
    python phantom_b.py --preview STUDY_DIR OUT.png      (quick-look PNG of lowest/highest BMD study)

Design (independent of any other phantom in this project):
  * A 3-D patient is built from analytic primitives in patient coordinates
    (x = patient left, y = caudal, z = anterior; mm).  Vertebral bodies are
    superelliptic cylinders with concave endplates, waisted sides, a cortical
    shell and endplates, rendered by exact cone-beam chords across the section
    plus numerical sampling of the endplate surfaces along each ray (so tilted
    endplates give double contours).  Posterior elements, sacrum, iliac wings,
    psoas, kidneys, liver, lung bases, bowel gas, aortic calcification and
    surgical clips are ellipsoids / shells; ribs are tubes along 3-D curves.
    The same 3-D patient is projected from a point source for the AP and the
    left-lateral view (true magnification, divergence, small positioning
    rotations).
  * Physics: line integrals in mm of water-equivalent tissue (fat 0.9, gas
    -1), mineral (g/cm3 * mm of hydroxyapatite), steel and lead; attenuation
    at an effective energy (kVp-like), mild beam hardening, heel effect,
    off-axis fall-off, scatter (broad kernel, scatter fraction with/without
    grid), collimator leakage, quantum + electronic noise with detector MTF.
  * BMD: vertebral trabecular vBMD ~ 0.175*(BMD/1.047)^1.6 g/cm3, cortical
    thickness and density fall with BMD, marrow fat rises; trabecular texture
    is band-pass oriented noise, thresholded: low BMD -> sparser, coarser,
    predominantly vertical struts (horizontal trabeculae lost first).
    Pelvis, sacrum, ribs, posterior elements scale with BMD too.
  * Log transform then a random vendor-like chain (none / unsharp mask with
    dynamic-range compression / multiscale contrast equalisation / sigmoid or
    random monotone LUT), then a random mapping to stored values (fixed
    linear, histogram window, anatomy-median, exposure-index-like), bits
    stored 10/12/14/16, MONOCHROME1 ~25 %, shutters, grid-line stripes, lead
    marker letter, burned-in text.  DX-for-presentation or CR DICOM Part 10.
"""
import argparse
import csv
import datetime
import itertools
import math
import os
import struct
import sys
import time
import zlib

import numpy as np

F32 = np.float32

# ----------------------------------------------------------------------------- physics
def mu_water(E):          # 1/mm, effective energy E (keV)
    return 0.0206 * (60.0 / E) ** 0.55


def kappa_mineral(E):     # 1/mm per g/cm3 hydroxyapatite (excess over water)
    return 0.036 * (60.0 / E) ** 2.26


def mu_steel(E):
    return 0.94 * (60.0 / E) ** 2.5


def mu_lead(E):
    return 5.5 * (60.0 / E) ** 2.6


# ----------------------------------------------------------------------------- small linear algebra
def rot_x(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], float)


def rot_y(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], float)


def rot_z(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], float)


# ----------------------------------------------------------------------------- anatomy tables
#            T10   T11   T12   L1    L2    L3    L4    L5
BASE_H = np.array([21.0, 22.0, 23.5, 25.0, 26.5, 27.5, 27.5, 26.5])   # body height
BASE_A = np.array([17.5, 18.5, 20.0, 21.5, 22.5, 23.5, 24.5, 25.5])   # transverse semi-axis
BASE_B = np.array([14.0, 14.5, 15.0, 15.5, 16.0, 16.5, 17.0, 17.0])   # AP semi-axis
BASE_DISC = np.array([5.5, 6.0, 7.0, 8.5, 9.5, 10.5, 11.0, 10.5])     # disc below level
BASE_PSI = np.array([12.0, 10.0, 8.0, 6.0, 2.0, -3.0, -10.0, -18.0])  # sagittal travel angle
TP_HALF = np.array([9.0, 8.0, 6.0, 8.0, 10.0, 13.0, 11.5, 9.5])       # transverse process half length
PED_X = np.array([3.5, 3.8, 4.2, 4.5, 5.0, 5.8, 6.8, 8.0])            # pedicle transverse semi-axis
N_LEV = 8
I_L1, I_L3, I_L5 = 3, 5, 7


def build_patient(rng, t):
    """Random 3-D patient as a list of primitives (shared by both views)."""
    bmd = 1.047 + 0.11 * t
    sex = 'F' if rng.random() < 0.72 else 'M'
    age = int(rng.integers(45, 89))
    rb = (bmd / 1.047) * math.exp(rng.normal(0.0, 0.035))      # relative bone density
    vbmd = 0.175 * rb ** 1.6                                     # trabecular g/cm3 HA
    r_tex = float(np.clip((rb - 0.58) / 0.58, 0.0, 1.0))         # 0 = osteoporotic .. 1 = dense
    tc = float(np.clip(0.25 + 0.38 * rb ** 1.2 + rng.normal(0, 0.025), 0.25, 0.9))
    te = 0.28 + 0.32 * rb
    rho_c = 0.80 * rb ** 0.35
    pe_solid = 0.28 * rb ** 1.3                                   # mixed posterior-element bone
    rho_t_pe = 0.80 * vbmd
    pel_t = 0.14 * rb ** 1.3
    pel_c = 0.95 * rb ** 0.30
    s = rng.normal(0.95, 0.045) if sex == 'F' else rng.normal(1.05, 0.045)
    hb = float(rng.beta(2.0, 2.2))                               # habitus 0 thin .. 1 obese

    H = BASE_H * s * rng.normal(1, 0.03, N_LEV)
    A = BASE_A * s * rng.normal(1, 0.035, N_LEV)
    B = BASE_B * s * rng.normal(1, 0.035, N_LEV)
    disc = BASE_DISC * s * rng.normal(1, 0.08, N_LEV)
    if age > 55 and rng.random() < 0.5:
        k = int(rng.integers(5, 8))
        disc[k] *= rng.uniform(0.45, 0.8)
    ce_t = rng.uniform(0.5, 1.4, N_LEV) + 0.9 * (1 - r_tex)
    ce_b = rng.uniform(0.5, 1.4, N_LEV) + 0.9 * (1 - r_tex)
    wedge = np.zeros(N_LEV)
    # osteoporotic fractures (prevalence rises as T falls)
    if t <= -2.5:
        pfx = 0.15 + 0.25 * float(np.clip((-2.5 - t) / 1.5, 0, 1))
    elif t < -1.0:
        pfx = 0.05
    else:
        pfx = 0.01
    fracture = None
    if rng.random() < pfx:
        k = int(rng.choice([2, 3, 4, 5], p=[0.3, 0.35, 0.2, 0.15]))
        typ = str(rng.choice(['wedge', 'biconcave', 'crush'], p=[0.5, 0.3, 0.2]))
        if typ == 'wedge':
            wedge[k] = rng.uniform(0.15, 0.4)
        elif typ == 'biconcave':
            ce_t[k] += rng.uniform(2, 5)
            ce_b[k] += rng.uniform(2, 5)
        else:
            H[k] *= rng.uniform(0.7, 0.85)
        fracture = (k, typ)

    # sagittal chain (lordosis)
    lam = rng.uniform(0.5, 1.5)
    off = rng.uniform(-4, 4)
    psi = np.radians(BASE_PSI * lam + off + rng.normal(0, 1.5, N_LEV))
    cy = np.zeros(N_LEV)
    cz = np.zeros(N_LEV)
    for i in range(I_L3 + 1, N_LEV):
        d = H[i - 1] / 2 + disc[i - 1] + H[i] / 2
        ang = 0.5 * (psi[i - 1] + psi[i])
        cy[i] = cy[i - 1] + d * math.cos(ang)
        cz[i] = cz[i - 1] + d * math.sin(ang)
    for i in range(I_L3 - 1, -1, -1):
        d = H[i] / 2 + disc[i] + H[i + 1] / 2
        ang = 0.5 * (psi[i] + psi[i + 1])
        cy[i] = cy[i + 1] - d * math.cos(ang)
        cz[i] = cz[i + 1] - d * math.sin(ang)
    SS = math.radians(rng.uniform(28, 50))
    psi_s1 = -SS
    Hs1 = 27.0 * s * rng.normal(1, 0.04)
    as1 = 24.0 * s * rng.normal(1, 0.04)
    bs1 = 18.0 * s * rng.normal(1, 0.04)
    d = H[I_L5] / 2 + disc[I_L5] + Hs1 / 2
    ang = 0.5 * (psi[I_L5] + psi_s1)
    cy_s1 = cy[I_L5] + d * math.cos(ang)
    cz_s1 = cz[I_L5] + d * math.sin(ang)

    # coronal chain (scoliosis) and axial rotation
    if rng.random() < 0.25:
        A_sc = rng.uniform(5, 18)
    else:
        A_sc = abs(rng.normal(0, 3))
    lam_sc = rng.uniform(250, 500)
    ph = rng.uniform(0, 2 * math.pi)

    def xs(y):
        return A_sc * (math.sin(2 * math.pi * (y - cy_s1) / lam_sc + ph) - math.sin(ph))

    def dxs(y):
        return A_sc * 2 * math.pi / lam_sc * math.cos(2 * math.pi * (y - cy_s1) / lam_sc + ph)

    # soft tissue habitus
    A0 = (128 + 75 * hb) * (1.0 if sex == 'F' else 1.05) * rng.normal(1, 0.04)
    B0 = (92 + 78 * hb) * rng.normal(1, 0.04)
    fat = (6 + 45 * hb) * rng.uniform(0.7, 1.3)
    back = 0.8 * fat + rng.uniform(10, 30)
    z_post = -(B[I_L3] + 62 * s + back)
    z_bc = z_post + B0
    if z_bc + B0 - fat < cz.max() + B.max() + 45:      # keep viscera in front of the spine
        B0 = (cz.max() + B.max() + 45 + fat - z_post) / 2 + 2
        z_bc = z_post + B0
    x_bc = rng.normal(0, 4)

    prims = []
    tex_nt = 512
    C = []
    Rm = []
    p_oste = float(np.clip((age - 45) / 80, 0, 0.4))
    for i in range(N_LEV):
        al = math.atan(dxs(cy[i]))
        th = math.radians(0.8 * xs(cy[i]) + rng.normal(0, 1.5))
        R = rot_z(-al) @ rot_x(psi[i]) @ rot_y(th)
        c = np.array([xs(cy[i]), cy[i], cz[i]])
        C.append(c)
        Rm.append(R)
        a, b, h = A[i], B[i], H[i]
        prims.append(('vbody', dict(C=c, R=R, a=a, b=b, H=h, p=rng.uniform(2.2, 3.0), tc=tc, te=te,
                                    rho_c=rho_c, vbmd=vbmd * rng.normal(1, 0.03),
                                    ce_t=ce_t[i], ce_b=ce_b[i], wedge=wedge[i],
                                    waist=rng.uniform(0.03, 0.09),
                                    fatw=0.06 + 0.08 * (1 - r_tex),
                                    tex_off=rng.uniform(0, tex_nt, 2))))
        thor = i < 3
        px = PED_X[i] * s
        tcp = tc + 0.3
        el = []      # (local centre, local rotation, semi-axes, shell?)
        for sd in (-1, 1):
            prims.append(('tube', c + R @ np.array([sd * 0.62 * a, -0.18 * h, -b - 6 * s]),
                          R @ rot_y(sd * math.radians(rng.uniform(5, 15))), np.array([px, 0.30 * h, 7.0 * s]),
                          tcp, rho_c, rho_t_pe))
            el.append(((sd * (0.55 * a + 1), -0.58 * h, -b - 19 * s), rot_z(sd * 0.15), (5.0 * s, 9 * s, 8 * s), False))
            el.append(((sd * 0.45 * a, 0.55 * h, -b - 25 * s), rot_z(-sd * 0.1), (5.0 * s, 9.5 * s, 7.5 * s), False))
            if thor:
                el.append(((sd * (0.62 * a + 9 * s), -0.22 * h, -b - 14 * s), rot_y(sd * 0.6),
                           (TP_HALF[i] * s + 2, 5 * s, 5 * s), False))
            else:
                el.append(((sd * (0.62 * a + TP_HALF[i] * s + 3), -0.15 * h, -b - 6 * s), rot_z(-sd * 0.12),
                           (TP_HALF[i] * s + 3, 4.5 * s, 4.0 * s), False))
        el.append(((0, 0.05 * h, -b - 21 * s), rot_x(-0.2), (0.62 * a, 0.45 * h, 5.0 * s), False))
        if thor:
            el.append(((0, 0.30 * h + 8 * s, -b - 36 * s), rot_x(0.6), (3.0 * s, 0.24 * h + 2, 11 * s), False))
        else:
            el.append(((0, 0.30 * h, -b - 36 * s), rot_x(0.25), (3.0 * s, 0.22 * h + 2, 10 * s), False))
        for loc, Rl, semi, is_shell in el:
            cw, Rw = c + R @ np.asarray(loc, float), R @ Rl
            if is_shell:
                prims.append(('shell', cw, Rw, np.asarray(semi, float), tcp, rho_c, rho_t_pe))
            else:
                prims.append(('ell', cw, Rw, np.asarray(semi, float), [('Mt', pe_solid * (0.8 if loc[0] == 0 and loc[2] < -b - 30 * s else 1.0))]))
        # degenerative osteophytes (age related, independent of BMD)
        if i >= 3 and rng.random() < p_oste:
            for sd in (-1, 1):
                for sv in (-1, 1):
                    if rng.random() < 0.5:
                        sz = rng.uniform(2.5, 5.5)
                        prims.append(('ell', c + R @ np.array([sd * (a + 0.3 * sz), sv * (h / 2 - 1), 0.0]),
                                      R @ rot_z(-sd * sv * 0.5), np.array([sz, sz * 0.35, 7.0]),
                                      [('Mn', 0.3 * rho_c)]))
                if rng.random() < 0.5:
                    sz = rng.uniform(2.5, 5.5)
                    prims.append(('ell', c + R @ np.array([0.0, sd * (h / 2 - 1), b + 0.3 * sz]),
                                  R @ rot_x(sd * 0.5), np.array([10.0, sz * 0.35, sz]), [('Mn', 0.3 * rho_c)]))
        # ribs on thoracic levels
        if thor:
            Rx = A0 - fat - 12
            z_rc = z_bc
            Rz = z_rc - (-B[i] - 35 * s + cz[i])
            beta1 = [2.3, 1.9, 1.45][i] + rng.normal(0, 0.1)
            drop = [85, 65, 45][i] * s
            rr0 = [4.8, 4.6, 4.0][i] * s
            for sd in (-1, 1):
                pts = [c + R @ np.array([sd * (a + 2), 0.1 * h, -0.45 * b]),
                       c + R @ np.array([sd * (0.62 * a + 20 * s), 0.05 * h, -b - 17 * s])]
                b0 = math.asin(min(0.95, (0.62 * a + 38 * s) / Rx))
                b0 = min(b0, beta1 - 0.3)
                betas = np.linspace(b0, beta1, 14)
                y1 = pts[1][1] + 6
                for k, be in enumerate(betas):
                    f = (be - b0) / (beta1 - b0)
                    pts.append(np.array([c[0] + sd * Rx * math.sin(be), y1 + drop * f ** 1.2,
                                         z_rc - Rz * math.cos(be)]))
                pts = np.array(pts)
                radii = np.linspace(rr0, 3.0 * s, len(pts))
                prims.append(('rib', pts, radii, 0.7 + 0.4 * rb, rho_c, 0.5 * vbmd))

    # sacrum
    al = math.atan(dxs(cy_s1))
    R_s1 = rot_z(-al) @ rot_x(psi_s1)
    C_s1 = np.array([xs(cy_s1), cy_s1, cz_s1])
    prims.append(('vbody', dict(C=C_s1, R=R_s1, a=as1, b=bs1, H=Hs1, p=2.4, tc=tc, te=te, rho_c=rho_c,
                                vbmd=0.9 * vbmd, ce_t=0.8, ce_b=0.3, wedge=0.0, waist=0.05,
                                fatw=0.06 + 0.08 * (1 - r_tex), tex_off=rng.uniform(0, tex_nt, 2))))
    tcs = 0.8 + 0.3 * rb
    for sd in (-1, 1):
        prims.append(('shell', C_s1 + R_s1 @ np.array([sd * (as1 + 16 * s), 3.0, -6.0]), R_s1 @ rot_z(sd * 0.25),
                      np.array([24 * s, 13 * s, 12 * s]), 0.6 * tcs, 0.8 * pel_c, 0.8 * pel_t))
        prims.append(('shell', C_s1 + R_s1 @ np.array([sd * 0.5 * as1, -0.55 * Hs1, -bs1 - 18 * s]), R_s1,
                      np.array([5 * s, 8 * s, 7 * s]), tcs, pel_c, pel_t))
    prims.append(('shell', C_s1 + R_s1 @ np.array([0.0, 0.3 * Hs1, -bs1 - 14 * s]), R_s1,
                  np.array([5 * s, 30 * s, 6 * s]), tcs, pel_c, pel_t))
    seg_h = np.array([22, 18, 15, 12]) * s
    seg_a = np.array([20, 16, 12, 8]) * s
    seg_b = np.array([13, 11, 9, 7]) * s
    dpsi = np.radians([12, 24, 36, 50])
    prev, prev_h, prev_psi = C_s1, Hs1, psi_s1
    segc, segR = [], []
    for k in range(4):
        pk = psi_s1 + dpsi[k]
        dd = prev_h / 2 + 2 + seg_h[k] / 2
        an = 0.5 * (prev_psi + pk)
        ck = prev + dd * np.array([0.0, math.cos(an), math.sin(an)])
        Rk = rot_x(pk)
        segc.append(ck)
        segR.append(Rk)
        prims.append(('ell', ck, Rk, np.array([seg_a[k], seg_h[k] / 2 + 1, seg_b[k]]), [('Mt', 0.45 * pel_t)]))
        prev, prev_h, prev_psi = ck, seg_h[k], pk
    # sacral plate (lateral masses fused), thin single cortical outline
    Rp = rot_x(psi_s1 + np.radians(22))
    cpl = 0.5 * (C_s1 + segc[2]) + Rp @ np.array([0.0, -4.0, -4.0])
    prims.append(('ell', cpl, Rp, np.array([as1 + 16 * s, 46 * s, 12 * s]), [('Mt', 0.5 * pel_t)]))
    for k in range(3):
        for sd in (-1, 1):
            prims.append(('ell', segc[k] + segR[k] @ np.array([sd * (seg_a[k] + 5 * s), -seg_h[k] / 2, 0.0]), segR[k],
                          np.array([4.5 * s, 4.0 * s, 13.0 * s]), [('Mt', -0.6 * pel_t), ('Mn', -0.05 * pel_c)]))
    # iliac wings
    y_top = 0.5 * (cy[6] + cy[7]) + rng.normal(0, 8)
    su, sv, st = 72 * s * rng.normal(1, 0.05), 120 * s * rng.normal(1, 0.05), rng.uniform(3.0, 4.5)
    beta = rng.uniform(0.65, 0.95)
    tcw = 0.5 + 0.3 * rb
    for sd in (-1, 1):
        tilt = rng.uniform(0.12, 0.32)
        cen = np.array([C_s1[0] + sd * (as1 + 58 * s) - sd * sv * math.sin(tilt) * 0.9,
                        y_top + sv * math.cos(tilt) * 0.97, cz_s1 - 18 * s])
        Rw = rot_z(sd * tilt) @ rot_y(-sd * beta) @ rot_x(rng.uniform(-0.15, 0.25))
        prims.append(('shell', cen, Rw, np.array([su, sv, st]), tcw, 0.85 * pel_c, 0.8 * pel_t))

    # soft tissue
    flare = rng.uniform(0.03, 0.10) + (0.06 if sex == 'F' else 0.0)
    y_waist = cy[I_L3]
    B_in_scale = rng.uniform(0.8, 1.2)
    prims.append(('cyl', dict(cx=x_bc, cz=z_bc, A0=A0, B0=B0, flare=flare, yw=y_waist, yc=y_top, dA=0.0, dB=0.0,
                              w=0.9)))
    prims.append(('cyl', dict(cx=x_bc, cz=z_bc + 0.1 * fat, A0=A0, B0=B0, flare=flare, yw=y_waist, yc=y_top,
                              dA=fat, dB=fat * B_in_scale, w=0.1)))
    # psoas (muscle in retroperitoneal fat)
    for sd in (-1, 1):
        yc = 0.5 * (cy[I_L1] + cy[I_L5]) + 10
        cc = np.array([xs(yc) + sd * (A[I_L3] + 22 * s), yc, cz[I_L3] + 6])
        Rp = rot_z(-sd * rng.uniform(0.12, 0.22))
        semi = np.array([14 * s + 3 * (sex == 'M'), 0.55 * (cy[I_L5] - cy[I_L1]) + 20, 17 * s])
        prims.append(('ell', cc, Rp, semi * np.array([1.3, 1.05, 1.3]), [('W', -0.1)]))
        prims.append(('ell', cc, Rp, semi, [('W', 0.1)]))
    # kidneys
    for sd in (-1, 1):
        yk = cy[4] - 5 + (18 if sd < 0 else 0) + rng.normal(0, 6)
        ck = np.array([xs(yk) + sd * (A[4] + 48 * s), yk, cz[4] + 5])
        Rk = rot_z(-sd * rng.uniform(0.2, 0.35))
        semi = np.array([26, 52, 22]) * s
        prims.append(('ell', ck, Rk, semi * 1.35, [('W', -0.1)]))
        prims.append(('ell', ck, Rk, semi, [('W', 0.1)]))
    # liver (right = -x)
    prims.append(('ell', np.array([-0.45 * A0, cy[2] - 40, z_bc + 10]), rot_z(0.3),
                  np.array([0.55 * A0, 85.0, 0.75 * B0]), [('W', 0.03)]))
    # lung bases (posterior costophrenic recesses)
    for sd in (-1, 1):
        prims.append(('ell', np.array([sd * 0.68 * A0, cy[2] - 85 * s + 18, cz[1] - 20]), rot_z(sd * 0.35),
                      np.array([0.32 * A0, 90 * s, 45.0]), [('W', -0.75)]))
    # bowel gas
    g = float(rng.beta(1.2, 2.0))
    xsc = A0 / 160.0
    zf = z_bc + 0.35 * B0
    way = np.array([[-80 * xsc, cy[I_L5] + 25, zf],
                    [-90 * xsc, cy[I_L1] + 10, zf - 10],
                    [-20 * xsc, cy[I_L3] + rng.uniform(-20, 30), zf + 15],
                    [40 * xsc, cy[I_L3] + rng.uniform(-30, 20), zf + 15],
                    [90 * xsc, cy[2], zf - 15],
                    [85 * xsc, cy[I_L5] + 10, zf - 10],
                    [30 * xsc, cy_s1 + 60, zf]])
    seg = np.diff(way, axis=0)
    seglen = np.linalg.norm(seg, axis=1)
    cum = np.concatenate([[0], np.cumsum(seglen)])
    for _ in range(int(rng.poisson(3 + 12 * g))):
        u = rng.uniform(0, cum[-1])
        k = min(int(np.searchsorted(cum, u) - 1), len(seg) - 1)
        k = max(k, 0)
        p = way[k] + seg[k] * (u - cum[k]) / seglen[k] + rng.normal(0, 6, 3)
        ang = math.atan2(seg[k][0], seg[k][1])
        semi = np.array([rng.uniform(6, 14), rng.uniform(8, 22), rng.uniform(3, 9)])
        prims.append(('ell', p, rot_z(-ang), semi, [('W', -1.0)]))
    for _ in range(int(rng.poisson(6 * g))):
        p = np.array([rng.uniform(-0.45, 0.45) * A0, rng.uniform(cy[4], cy_s1), rng.uniform(cz[I_L3] + 40, z_bc + B0 - 30)])
        semi = rng.uniform(3, 9, 3)
        prims.append(('ell', p, rot_z(rng.uniform(0, math.pi)), semi, [('W', -1.0)]))
    for _ in range(int(rng.integers(0, 3))):
        base = way[int(rng.choice([0, 1, 5, 6]))]
        rad = rng.uniform(15, 25)
        for _ in range(int(rng.integers(15, 40))):
            p = base + rng.normal(0, rad / 2, 3)
            prims.append(('ell', p, np.eye(3), rng.uniform(1.0, 3.5, 3), [('W', -1.0)]))
    # aortic calcification
    if rng.random() < 0.1 + max(0.0, (age - 50) / 100.0):
        for _ in range(int(rng.integers(2, 9))):
            yy = rng.uniform(cy[4], cy[7])
            za = cz[I_L3] + B[I_L3] + 28 + rng.choice([-11.0, 11.0])
            prims.append(('ell', np.array([xs(yy) + 10 + rng.normal(0, 4), yy, za]), rot_x(rng.normal(0, 0.2)),
                          np.array([rng.uniform(2, 6), rng.uniform(3, 9), 0.7]), [('Mn', rng.uniform(0.5, 1.0))]))
    # surgical clips (cholecystectomy)
    if rng.random() < 0.12:
        base = np.array([-0.4 * A0, cy[I_L1] + rng.normal(0, 20), z_bc + 20])
        for _ in range(int(rng.integers(1, 5))):
            p = base + rng.normal(0, 10, 3)
            Rc = rot_z(rng.uniform(0, math.pi)) @ rot_x(rng.uniform(0, math.pi))
            for sg in (-1, 1):
                prims.append(('ell', p, Rc @ rot_z(sg * 0.25), np.array([0.45, 4.5, 0.45]), [('Fe', 1.0)]))

    # trabecular texture: dense/fine/isotropic at high BMD; sparse, coarse, vertical struts at low BMD
    q = 1.0 - r_tex
    tex = dict(f0=0.50 + 0.45 * r_tex, lv=2.0 + 8.0 * q, wv=0.5 + 0.7 * q, wh=0.45 * r_tex, wi=0.4 + 0.6 * r_tex,
               thr=-0.5 + 0.9 * q, m=0.14 + 0.22 * q, nt=tex_nt, hf=0.25)
    keys = dict(C=C, R=Rm, A=A, B=B, H=H, C_s1=C_s1, R_s1=R_s1, Hs1=Hs1, as1=as1, bs1=bs1,
                A0=A0, B0=B0, z_bc=z_bc, x_bc=x_bc, z_post=z_post, y_top=y_top)
    return dict(prims=prims, tex=tex, keys=keys, sex=sex, age=age, bmd=bmd, vbmd=vbmd, hb=hb,
                fracture=fracture, s=s)


# ----------------------------------------------------------------------------- projection geometry
class View:
    def __init__(self, S, n, eu, ev, corner, h, nr, nc, SID):
        self.S = np.asarray(S, float)
        self.n = np.asarray(n, float)
        self.eu = np.asarray(eu, float)
        self.ev = np.asarray(ev, float)
        self.corner = np.asarray(corner, float)
        self.h, self.nr, self.nc, self.SID = float(h), int(nr), int(nc), float(SID)
        self.base = self.corner - self.S

    def rays(self, r0, r1, c0, c1):
        rr = (np.arange(r0, r1) + 0.5) * self.h
        cc = (np.arange(c0, c1) + 0.5) * self.h
        b, eu, ev = self.base, self.eu, self.ev
        d = [b[k] + rr[:, None] * ev[k] + cc[None, :] * eu[k] for k in range(3)]
        inv = 1.0 / np.sqrt(d[0] ** 2 + d[1] ** 2 + d[2] ** 2)
        return d[0] * inv, d[1] * inv, d[2] * inv

    def project(self, Q):
        Q = np.atleast_2d(np.asarray(Q, float))
        v = Q - self.S
        lam = self.SID / (-(v @ self.n))
        rel = v * lam[:, None] - self.base
        return rel @ self.eu / self.h, rel @ self.ev / self.h, lam

    def box(self, Q, pad=2):
        c, r, _ = self.project(Q)
        c0 = max(int(math.floor(c.min())) - pad, 0)
        c1 = min(int(math.ceil(c.max())) + pad, self.nc)
        r0 = max(int(math.floor(r.min())) - pad, 0)
        r1 = min(int(math.ceil(r.max())) + pad, self.nr)
        if c1 <= c0 or r1 <= r0:
            return None
        return r0, r1, c0, c1


class Layers:
    def __init__(self, nr, nc):
        self.a = {k: np.zeros((nr, nc), F32) for k in ('W', 'Mn', 'Mt', 'Fe', 'Pb')}

    def add(self, key, bx, val):
        r0, r1, c0, c1 = bx
        self.a[key][r0:r1, c0:c1] += val.astype(F32)


def ellipsoid_chord(view, center, R, semi, pad=2):
    semi = np.asarray(semi, float)
    ext = np.sqrt((R ** 2) @ (semi ** 2))
    corners = center + np.array(list(itertools.product(*[(-e, e) for e in ext])))
    bx = view.box(corners, pad)
    if bx is None:
        return None, None
    dx, dy, dz = view.rays(*bx)
    Q = (R / semi ** 2) @ R.T
    sc = view.S - center
    t0 = -(sc[0] * dx + sc[1] * dy + sc[2] * dz)
    qx = sc[0] + t0 * dx
    qy = sc[1] + t0 * dy
    qz = sc[2] + t0 * dz
    ax = Q[0, 0] * dx + Q[0, 1] * dy + Q[0, 2] * dz
    ay = Q[1, 0] * dx + Q[1, 1] * dy + Q[1, 2] * dz
    az = Q[2, 0] * dx + Q[2, 1] * dy + Q[2, 2] * dz
    A = dx * ax + dy * ay + dz * az
    Bq = qx * ax + qy * ay + qz * az
    Cq = (Q[0, 0] * qx * qx + Q[1, 1] * qy * qy + Q[2, 2] * qz * qz
          + 2 * (Q[0, 1] * qx * qy + Q[0, 2] * qx * qz + Q[1, 2] * qy * qz) - 1)
    disc = Bq * Bq - A * Cq
    return bx, 2 * np.sqrt(np.maximum(disc, 0)) / A


def render_shell(view, L, center, R, semi, tcs, rho_c, rho_t):
    bx, ch = ellipsoid_chord(view, center, R, semi)
    if bx is None:
        return
    L.add('Mn', bx, rho_c * ch)
    inner = np.maximum(np.asarray(semi) - tcs, 0.3)
    bx2, ch2 = ellipsoid_chord(view, center, R, inner)
    if bx2 is None:
        return
    L.add('Mn', bx2, -rho_c * ch2)
    L.add('Mt', bx2, rho_t * ch2)


def render_vbody(view, L, P, tau_v, hf, hor_axis, K=8):
    C, R, a, b, H = P['C'], P['R'], P['a'], P['b'], P['H']
    loc = np.array(list(itertools.product((-a - 3, a + 3), (-H / 2 - 5, H / 2 + 5), (-b - 3, b + 3))))
    bx = view.box(C + loc @ R.T)
    if bx is None:
        return
    dx, dy, dz = view.rays(*bx)
    lx = R[0, 0] * dx + R[1, 0] * dy + R[2, 0] * dz
    lw = R[0, 1] * dx + R[1, 1] * dy + R[2, 1] * dz
    lz = R[0, 2] * dx + R[1, 2] * dy + R[2, 2] * dz
    ql = R.T @ (view.S - C)
    t0 = -(ql[0] * lx + ql[1] * lw + ql[2] * lz)
    qx = ql[0] + t0 * lx
    qw = ql[1] + t0 * lw
    qz = ql[2] + t0 * lz
    wn = np.clip(2 * qw / H, -1, 1)
    wf = 1 - P['waist'] * (1 - wn * wn)
    p = P['p']
    xi = (np.arange(K) + 0.5) / K * 2 - 1
    eps = 0.35
    wedge, ce_t, ce_b = P['wedge'], P['ce_t'], P['ce_b']

    def chord_frac(aa, bb, off):
        ax2 = (aa * wf) ** 2
        bb2 = bb * bb
        Aq = lx * lx / ax2 + lz * lz / bb2
        Bq = qx * lx / ax2 + qz * lz / bb2
        Cq = qx * qx / ax2 + qz * qz / bb2 - 1
        disc = Bq * Bq - Aq * Cq
        ok = disc > 0
        sig = np.sqrt(np.clip(1 - disc / Aq, 0, 1))
        Lp = np.where(ok, 2 / np.sqrt(Aq) * np.maximum(1 - sig ** p, 0) ** (1.0 / p), 0.0)
        tm = -Bq / Aq
        occ = np.zeros_like(Lp)
        ieps = 1.0 / np.maximum(eps, 1.05 * np.abs(lw) * Lp / K + 0.25 * (ce_t + ce_b) * Lp / (K * b))
        for xk in xi:
            tt = tm + 0.5 * Lp * xk
            x = qx + tt * lx
            w = qw + tt * lw
            z = qz + tt * lz
            rr = np.clip(1 - (x / a) ** 2 - (z / b) ** 2, 0, 1)
            top = -H / 2 + ce_t * rr + wedge * H * 0.5 * (1 + np.clip(z / b, -1, 1)) + off
            bot = H / 2 - ce_b * rr - off
            occ += np.clip((w - top) * ieps + 0.5, 0, 1) * np.clip((bot - w) * ieps + 0.5, 0, 1)
        return Lp * occ / K

    Lo = chord_frac(a, b, 0.0)
    Li = np.minimum(chord_frac(a - P['tc'], b - P['tc'], P['te']), Lo)
    hc = qx if hor_axis == 0 else qz
    nt = tau_v.shape[0]
    ti = np.floor(P['tex_off'][0] + qw / hf).astype(np.int64) % nt
    tj = np.floor(P['tex_off'][1] + hc / hf).astype(np.int64) % nt
    tau = tau_v[ti, tj]
    L.add('Mn', bx, P['rho_c'] * (Lo - Li) + P['vbmd'] * tau * Li)
    L.add('W', bx, -P['fatw'] * Li)


def tube_chord(view, center, R, semi, box_pad=2):
    """Chords through a finite elliptic cylinder (axis = local z, cross-section semi (x, w), half-length z)."""
    ax, aw, lz = semi
    ext = np.sqrt((R ** 2) @ (np.asarray(semi, float) ** 2)) * 1.05
    corners = center + np.array(list(itertools.product(*[(-e, e) for e in ext])))
    bx = view.box(corners, box_pad)
    if bx is None:
        return None, None
    dx, dy, dz = view.rays(*bx)
    lx = R[0, 0] * dx + R[1, 0] * dy + R[2, 0] * dz
    lw = R[0, 1] * dx + R[1, 1] * dy + R[2, 1] * dz
    lzd = R[0, 2] * dx + R[1, 2] * dy + R[2, 2] * dz
    ql = R.T @ (view.S - center)
    t0 = -(ql[0] * lx + ql[1] * lw + ql[2] * lzd)
    qx, qw, qz = ql[0] + t0 * lx, ql[1] + t0 * lw, ql[2] + t0 * lzd
    sgn = np.where(lzd >= 0, 1.0, -1.0)
    lzs = sgn * np.maximum(np.abs(lzd), 1e-6)
    ta, tb = (-lz - qz) / lzs, (lz - qz) / lzs
    t3, t4 = np.minimum(ta, tb), np.maximum(ta, tb)

    def chord(a1, w1):
        A = lx * lx / a1 ** 2 + lw * lw / w1 ** 2
        B = qx * lx / a1 ** 2 + qw * lw / w1 ** 2
        C = qx * qx / a1 ** 2 + qw * qw / w1 ** 2 - 1
        disc = np.maximum(B * B - A * C, 0)
        sq = np.sqrt(disc)
        t1, t2 = (-B - sq) / A, (-B + sq) / A
        return np.maximum(np.minimum(t2, t4) - np.maximum(t1, t3), 0) * (disc > 0)
    return bx, chord


def render_tube(view, L, center, R, semi, tcs, rho_c, rho_t):
    bx, chord = tube_chord(view, center, R, semi)
    if bx is None:
        return
    co = chord(semi[0], semi[1])
    ci = np.minimum(chord(max(semi[0] - tcs, 0.3), max(semi[1] - tcs, 0.3)), co)
    L.add('Mn', bx, rho_c * (co - ci))
    L.add('Mt', bx, rho_t * ci)


def render_rib(view, L, pts, radii, tcr, rho_c, rho_t):
    c, r, lam = view.project(pts)
    h = view.h
    rpx = radii * lam / h
    pad = rpx.max() + 3
    c0 = max(int(c.min() - pad), 0)
    c1 = min(int(c.max() + pad) + 1, view.nc)
    r0 = max(int(r.min() - pad), 0)
    r1 = min(int(r.max() + pad) + 1, view.nr)
    if c1 <= c0 or r1 <= r0:
        return
    Ro = np.zeros((r1 - r0, c1 - c0), F32)
    Ri = np.zeros_like(Ro)
    for k in range(len(pts) - 1):
        pp = max(rpx[k], rpx[k + 1]) + 2
        sc0 = max(int(min(c[k], c[k + 1]) - pp), c0)
        sc1 = min(int(max(c[k], c[k + 1]) + pp) + 1, c1)
        sr0 = max(int(min(r[k], r[k + 1]) - pp), r0)
        sr1 = min(int(max(r[k], r[k + 1]) + pp) + 1, r1)
        if sc1 <= sc0 or sr1 <= sr0:
            continue
        X = (np.arange(sc0, sc1) + 0.5)[None, :]
        Y = (np.arange(sr0, sr1) + 0.5)[:, None]
        vx, vy = c[k + 1] - c[k], r[k + 1] - r[k]
        l2 = vx * vx + vy * vy + 1e-9
        tt = np.clip(((X - c[k]) * vx + (Y - r[k]) * vy) / l2, 0, 1)
        d2 = (X - c[k] - tt * vx) ** 2 + (Y - r[k] - tt * vy) ** 2
        lm = lam[k] + tt * (lam[k + 1] - lam[k])
        dmm2 = d2 * (h / lm) ** 2
        rad = radii[k] + tt * (radii[k + 1] - radii[k])
        seg3 = pts[k + 1] - pts[k]
        dray = 0.5 * (pts[k] + pts[k + 1]) - view.S
        dray /= np.linalg.norm(dray)
        sg = np.linalg.norm(np.cross(seg3, dray)) / (np.linalg.norm(seg3) + 1e-9)
        fac = 1.0 / max(sg, 0.35)
        co = 2 * np.sqrt(np.maximum(rad * rad - dmm2, 0)) * fac
        ci = 2 * np.sqrt(np.maximum((rad - tcr) ** 2 - dmm2, 0)) * fac
        sub = (slice(sr0 - r0, sr1 - r0), slice(sc0 - c0, sc1 - c0))
        Ro[sub] = np.maximum(Ro[sub], co)
        Ri[sub] = np.maximum(Ri[sub], ci)
    L.add('Mn', (r0, r1, c0, c1), rho_c * (Ro - Ri))
    L.add('Mt', (r0, r1, c0, c1), rho_t * Ri)


def render_cyl(view, L, P, rays_full):
    dx, dy, dz = rays_full
    S = view.S
    sx, sz = S[0] - P['cx'], S[2] - P['cz']
    dd = dx * dx + dz * dz + 1e-12
    t0 = -(sx * dx + sz * dz) / dd
    y = S[1] + t0 * dy
    Ay = P['A0'] * (1 - 0.05 * np.exp(-((y - P['yw']) / 90.0) ** 2)) * \
        (1 + P['flare'] / (1 + np.exp(-(y - P['yc'] - 20) / 25.0))) - P['dA']
    By = P['B0'] - P['dB'] + 0.0 * y
    Ay = np.maximum(Ay, 5.0)
    By = np.maximum(By, 5.0)
    ia, ib = 1 / Ay ** 2, 1 / By ** 2
    qa = dx * dx * ia + dz * dz * ib
    qb = sx * dx * ia + sz * dz * ib
    qc = sx * sx * ia + sz * sz * ib - 1
    disc = qb * qb - qa * qc
    ch = 2 * np.sqrt(np.maximum(disc, 0)) / qa
    L.a['W'] += (P['w'] * ch).astype(F32)


# ----------------------------------------------------------------------------- textures
def make_textures(rng, T):
    nt, hf, f0 = T['nt'], T['hf'], T['f0']
    fy = np.fft.fftfreq(nt, d=hf)[:, None]
    fx = np.fft.rfftfreq(nt, d=hf)[None, :]
    bw = 0.8 * f0

    def field(G):
        z = rng.standard_normal((nt, nt))
        F = np.fft.irfft2(np.fft.rfft2(z) * G, s=(nt, nt))
        return F / (F.std() + 1e-12)

    Gv = np.exp(-0.5 * ((np.abs(fx) - f0) / bw) ** 2) * np.exp(-0.5 * (2 * np.pi * T['lv'] * fy) ** 2)
    Gh = np.exp(-0.5 * ((np.abs(fy) - 1.1 * f0) / bw) ** 2) * np.exp(-0.5 * (2 * np.pi * 1.2 * fx) ** 2)
    fr = np.sqrt(fx ** 2 + fy ** 2)
    Gi = np.exp(-0.5 * ((fr - f0) / bw) ** 2)
    V, Hz, I = field(Gv), field(Gh), field(Gi)

    def sparsify(F, thr, m):
        F = F / F.std()
        tau = np.maximum(F - thr, 0)
        tau /= tau.mean() + 1e-12
        tau = np.minimum(tau, 3.0)
        tau /= tau.mean() + 1e-12
        return ((1 - m) + m * tau).astype(F32)

    tau_v = sparsify(T['wv'] * V + T['wh'] * Hz + T['wi'] * I, T['thr'], T['m'])
    tau_i = sparsify(I + 0.4 * T['wv'] * V + 0.4 * T['wh'] * Hz, T['thr'], 0.8 * T['m'])
    return tau_v, tau_i


# ----------------------------------------------------------------------------- image utilities
def gauss_kernel(sigma):
    r = max(1, int(math.ceil(3 * sigma)))
    x = np.arange(-r, r + 1)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).astype(F32)


def conv_sep(a, k):
    r = len(k) // 2
    n0, n1 = a.shape
    ap = np.pad(a, ((r, r), (0, 0)), mode='edge')
    out = k[0] * ap[0:n0]
    for i in range(1, len(k)):
        out += k[i] * ap[i:i + n0]
    ap = np.pad(out, ((0, 0), (r, r)), mode='edge')
    out = k[0] * ap[:, 0:n1]
    for i in range(1, len(k)):
        out += k[i] * ap[:, i:i + n1]
    return out


def block_mean(a, f):
    n0, n1 = a.shape
    m0, m1 = -(-n0 // f) * f, -(-n1 // f) * f
    ap = np.pad(a, ((0, m0 - n0), (0, m1 - n1)), mode='edge')
    return ap.reshape(m0 // f, f, m1 // f, f).mean(axis=(1, 3)).astype(F32)


def resize_bilinear(img, R, C, sr, sc):
    """Output pixel j centre maps to input coordinate (j+0.5)*s - 0.5."""
    n0, n1 = img.shape
    yr = (np.arange(R) + 0.5) * sr - 0.5
    xr = (np.arange(C) + 0.5) * sc - 0.5
    y0 = np.clip(np.floor(yr).astype(np.int64), 0, max(n0 - 2, 0))
    x0 = np.clip(np.floor(xr).astype(np.int64), 0, max(n1 - 2, 0))
    wy = np.clip(yr - y0, 0, 1).astype(F32)[:, None]
    wx = np.clip(xr - x0, 0, 1).astype(F32)[None, :]
    y1 = np.minimum(y0 + 1, n0 - 1)
    x1 = np.minimum(x0 + 1, n1 - 1)
    tmp = img[:, x0] * (1 - wx) + img[:, x1] * wx
    return (tmp[y0] * (1 - wy) + tmp[y1] * wy).astype(F32)


def gblur(a, sigma):
    if sigma < 0.3:
        return a
    if sigma <= 2.0:
        return conv_sep(a, gauss_kernel(sigma))
    f = max(2, int(sigma / 1.2))
    small = block_mean(a, f)
    ss = math.sqrt(max(sigma ** 2 - f * f / 6.0, 0.25)) / f
    small = conv_sep(small, gauss_kernel(ss))
    return resize_bilinear(small, a.shape[0], a.shape[1], 1.0 / f, 1.0 / f)


# ----------------------------------------------------------------------------- 5x7 font
_FONT_SRC = {
    'A': "01110 10001 10001 11111 10001 10001 10001", 'B': "11110 10001 10001 11110 10001 10001 11110",
    'C': "01110 10001 10000 10000 10000 10001 01110", 'D': "11110 10001 10001 10001 10001 10001 11110",
    'E': "11111 10000 10000 11110 10000 10000 11111", 'F': "11111 10000 10000 11110 10000 10000 10000",
    'G': "01110 10001 10000 10111 10001 10001 01111", 'H': "10001 10001 10001 11111 10001 10001 10001",
    'I': "01110 00100 00100 00100 00100 00100 01110", 'J': "00111 00010 00010 00010 00010 10010 01100",
    'K': "10001 10010 10100 11000 10100 10010 10001", 'L': "10000 10000 10000 10000 10000 10000 11111",
    'M': "10001 11011 10101 10101 10001 10001 10001", 'N': "10001 10001 11001 10101 10011 10001 10001",
    'O': "01110 10001 10001 10001 10001 10001 01110", 'P': "11110 10001 10001 11110 10000 10000 10000",
    'Q': "01110 10001 10001 10001 10101 10010 01101", 'R': "11110 10001 10001 11110 10100 10010 10001",
    'S': "01111 10000 10000 01110 00001 00001 11110", 'T': "11111 00100 00100 00100 00100 00100 00100",
    'U': "10001 10001 10001 10001 10001 10001 01110", 'V': "10001 10001 10001 10001 10001 01010 00100",
    'W': "10001 10001 10001 10101 10101 10101 01010", 'X': "10001 10001 01010 00100 01010 10001 10001",
    'Y': "10001 10001 10001 01010 00100 00100 00100", 'Z': "11111 00001 00010 00100 01000 10000 11111",
    '0': "01110 10001 10011 10101 11001 10001 01110", '1': "00100 01100 00100 00100 00100 00100 01110",
    '2': "01110 10001 00001 00010 00100 01000 11111", '3': "11111 00010 00100 00010 00001 10001 01110",
    '4': "00010 00110 01010 10010 11111 00010 00010", '5': "11111 10000 11110 00001 00001 10001 01110",
    '6': "00110 01000 10000 11110 10001 10001 01110", '7': "11111 00001 00010 00100 01000 01000 01000",
    '8': "01110 10001 10001 01110 10001 10001 01110", '9': "01110 10001 10001 01111 00001 00010 01100",
    '-': "00000 00000 00000 11111 00000 00000 00000", '.': "00000 00000 00000 00000 00000 01100 01100",
    ':': "00000 01100 01100 00000 01100 01100 00000", '/': "00001 00001 00010 00100 01000 10000 10000",
    ' ': "00000 00000 00000 00000 00000 00000 00000",
}
FONT = {k: np.array([[c == '1' for c in row] for row in v.split()], bool) for k, v in _FONT_SRC.items()}


def text_mask(text, scale):
    cols = []
    for ch in text.upper():
        g = FONT.get(ch, FONT[' '])
        cols.append(g)
        cols.append(np.zeros((7, 1), bool))
    m = np.concatenate(cols, axis=1) if cols else np.zeros((7, 1), bool)
    return np.kron(m, np.ones((scale, scale), bool))


def burn_text(img, lines, corner, scale, value, bg, rng):
    R, C = img.shape
    masks = [text_mask(t, scale) for t in lines]
    lh = 7 * scale + 3 * scale
    bw = max(m.shape[1] for m in masks) + 2 * scale
    bh = lh * len(lines) + scale
    margin = int(rng.uniform(0.01, 0.03) * min(R, C)) + 2
    top = margin if corner[0] == 't' else R - margin - bh
    left = margin if corner[1] == 'l' else C - margin - bw
    top, left = max(top, 0), max(left, 0)
    if bg is not None:
        img[top:top + bh, left:left + bw] = bg
    for k, m in enumerate(masks):
        r0 = top + scale + k * lh
        c0 = left + scale
        r1, c1 = min(r0 + m.shape[0], R), min(c0 + m.shape[1], C)
        if r1 <= r0 or c1 <= c0:
            continue
        sub = img[r0:r1, c0:c1]
        sub[m[:r1 - r0, :c1 - c0]] = value


# ----------------------------------------------------------------------------- one view
def render_view(pat, vtype, rng):
    K = pat['keys']
    info = {}
    # ---- detector
    rows = int(rng.integers(1500, 3001))
    fov = rng.uniform(290, 430)
    sp = float(np.clip(round(fov / rows, 4), 0.1, 0.2))
    aspect = rng.uniform(0.72, 0.92) if vtype == 'AP' else rng.uniform(0.62, 0.85)
    cols = int(round(rows * aspect / 2) * 2)
    FH, FW = rows * sp, cols * sp
    # ---- beam geometry
    if vtype == 'AP':
        SID = rng.uniform(1000, 1150)
        D_obj = -K['z_post'] + rng.uniform(40, 80)
        n0, eu0, ev0 = np.array([0, 0, 1.0]), np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
        Th = math.radians(float(np.clip(rng.normal(0, 3), -8, 8)))
        kvp = rng.uniform(70, 90)
        face = 1
    else:
        SID = rng.uniform(1000, 1200)
        D_obj = K['A0'] + rng.uniform(20, 60)
        face = 1 if rng.random() < 0.5 else -1
        n0, eu0, ev0 = np.array([-1.0, 0, 0]), np.array([0, 0, 1.0 * face]), np.array([0, 1.0, 0])
        Th = math.radians(float(np.clip(rng.normal(0, 4), -10, 10)))
        kvp = rng.uniform(80, 105)
    Ry = rot_y(Th)
    n, eu, ev = Ry @ n0, Ry @ eu0, Ry @ ev0
    zeta = math.radians(rng.normal(0, 1.5))
    eu, ev = math.cos(zeta) * eu + math.sin(zeta) * ev, -math.sin(zeta) * eu + math.cos(zeta) * ev
    C3 = K['C'][I_L3]
    C0 = C3 + np.array([rng.normal(0, 12), rng.normal(0, 20), rng.normal(0, 8)])
    S = C0 + n * (SID - D_obj)
    D0 = C0 - n * D_obj
    corner0 = D0 - (FW / 2) * eu - (FH / 2) * ev
    tmp = View(S, n, eu, ev, corner0, 1.0, 1, 1, SID)
    kp = []
    for i in range(I_L1, I_L5 + 1):
        a, b, H = K['A'][i], K['B'][i], K['H'][i]
        loc = np.array(list(itertools.product((-a, a), (-H / 2, H / 2), (-b, b))))
        kp.append(K['C'][i] + loc @ K['R'][i].T)
        if vtype == 'LAT':
            kp.append((K['C'][i] + K['R'][i] @ np.array([0, 0.25 * H, -b - 60]))[None])
    kp.append((K['C_s1'] + K['R_s1'] @ np.array([0, -K['Hs1'] / 2, 0]))[None])
    kp = np.concatenate(kp)
    ku, kv, _ = tmp.project(kp)
    mu, mv = 10.0, 8.0

    def pick(lo, hi):
        if lo > hi:
            return 0.5 * (lo + hi)
        mid, half = 0.5 * (lo + hi), 0.5 * (hi - lo)
        return mid + half * 0.85 * rng.uniform(-1, 1)

    du = pick(ku.max() - FW + mu, ku.min() - mu)
    dv = pick(kv.max() - FH + mv, kv.min() - mv)
    corner = corner0 + du * eu + dv * ev
    ku, kv = ku - du, kv - dv
    # ---- internal grid
    h = float(np.clip(sp * rng.uniform(1.7, 2.3), 0.22, 0.36))
    nr_i, nc_i = int(math.ceil(FH / h)) + 1, int(math.ceil(FW / h)) + 1
    view = View(S, n, eu, ev, corner, h, nr_i, nc_i, SID)
    L = Layers(nr_i, nc_i)
    tau_v, tau_i = make_textures(rng, pat['tex'])
    hf = pat['tex']['hf']
    hor_axis = 0 if vtype == 'AP' else 2
    rays_full = view.rays(0, nr_i, 0, nc_i)
    for pr in pat['prims']:
        kind = pr[0]
        if kind == 'vbody':
            render_vbody(view, L, pr[1], tau_v, hf, hor_axis)
        elif kind == 'shell':
            render_shell(view, L, *pr[1:])
        elif kind == 'ell':
            bx, ch = ellipsoid_chord(view, pr[1], pr[2], pr[3])
            if bx is not None:
                for key, w in pr[4]:
                    L.add(key, bx, w * ch)
        elif kind == 'rib':
            render_rib(view, L, *pr[1:])
        elif kind == 'tube':
            render_tube(view, L, *pr[1:])
        elif kind == 'cyl':
            render_cyl(view, L, pr[1], rays_full)
    del rays_full
    # ---- lead marker (on the detector cover) and holder
    mag_c = SID / (SID - D_obj)
    marker = None
    if rng.random() < 0.85:
        if vtype == 'AP':
            letter = 'R' if rng.random() < 0.5 else 'L'
            side = 'l' if letter == 'R' else 'r'
        else:
            letter = 'L' if rng.random() < 0.85 else 'R'
            side = 'l' if rng.random() < 0.5 else 'r'
        vert = 't' if rng.random() < 0.6 else 'b'
        cell = rng.uniform(1.6, 2.4) / h
        gl = FONT[letter]
        if rng.random() < 0.15:
            gl = gl[:, ::-1]
        gh, gw = int(7 * cell), int(5 * cell)
        m_r = int(rng.uniform(0.04, 0.12) * nr_i)
        m_c = int(rng.uniform(0.04, 0.12) * nc_i)
        r0 = m_r if vert == 't' else nr_i - m_r - gh
        c0 = m_c if side == 'l' else nc_i - m_c - gw
        rr = np.clip((np.arange(gh) / cell).astype(int), 0, 6)
        cc = np.clip((np.arange(gw) / cell).astype(int), 0, 4)
        gm = gl[rr][:, cc].astype(F32)
        pad = int(2.5 / h)
        hr0, hc0 = max(r0 - pad, 0), max(c0 - pad, 0)
        L.a['W'][hr0:r0 + gh + pad, hc0:c0 + gw + pad] += rng.uniform(4, 9)
        L.a['Pb'][r0:r0 + gh, c0:c0 + gw] += gm * rng.uniform(0.8, 1.5)
        marker = letter
    # ---- attenuation
    E = kvp * rng.uniform(0.5, 0.6)
    Mn = np.maximum(L.a['Mn'], 0)
    ti = (np.floor((np.arange(nr_i) * h / mag_c) / hf).astype(np.int64)) % tau_i.shape[0]
    tj = (np.floor((np.arange(nc_i) * h / mag_c) / hf).astype(np.int64)) % tau_i.shape[1]
    Mn += np.maximum(L.a['Mt'], 0) * tau_i[np.ix_(ti, tj)]
    W = np.maximum(L.a['W'], 0)
    s_int = (mu_water(E) * W + kappa_mineral(E) * Mn + mu_steel(E) * L.a['Fe'] + mu_lead(E) * L.a['Pb']).astype(F32)
    del L, Mn
    bh, ch = rng.uniform(0.05, 0.25), rng.uniform(3.0, 6.0)
    s_int = (s_int * (1 - bh) + bh * ch * np.log1p(s_int / ch)).astype(F32)
    s_int = gblur(s_int, rng.uniform(0.12, 0.45) / h)
    # ---- collimation geometry (detector mm coordinates from corner)
    coll = None
    if rng.random() < 0.7:
        u0, u1, v0, v1 = ku.min() - 20, ku.max() + 20, kv.min() - 20, kv.max() + 20
        cl = rng.uniform(0, max(0.0, min(u0, 0.25 * FW)))
        cr = rng.uniform(min(FW, max(u1, 0.75 * FW)), FW)
        ct = rng.uniform(0, max(0.0, min(v0, 0.15 * FH)))
        cb = rng.uniform(min(FH, max(v1, 0.85 * FH)), FH)
        coll = (cl, cr, ct, cb, math.radians(rng.normal(0, 0.8)), rng.uniform(0.5, 2.5), rng.uniform(0.01, 0.06))

    def coll_mask(nr, nc, step):
        if coll is None:
            return None
        cl, cr, ct, cb, rho, pw, leak = coll
        yy = ((np.arange(nr) + 0.5) * step)[:, None]
        xx = ((np.arange(nc) + 0.5) * step)[None, :]
        xc, yc = 0.5 * (cl + cr), 0.5 * (ct + cb)
        cs, sn = math.cos(rho), math.sin(rho)
        xr = cs * (xx - xc) + sn * (yy - yc)
        yr = -sn * (xx - xc) + cs * (yy - yc)
        dist = np.minimum(0.5 * (cr - cl) - np.abs(xr), 0.5 * (cb - ct) - np.abs(yr))
        m = np.clip(dist / pw + 0.5, 0, 1).astype(F32)
        return leak + (1 - leak) * m

    # ---- scatter on a coarse grid (from the internal grid)
    fsc = max(1, int(round(4.0 / h)))
    P_int = np.exp(-s_int)
    cm_int = coll_mask(nr_i, nc_i, h)
    if cm_int is not None:
        P_int *= cm_int
    src = block_mean(P_int * np.minimum(s_int / 2.0, 1.0), fsc)
    sig_sc = rng.uniform(30, 80) / (h * fsc)
    Sc = conv_sep(src, gauss_kernel(min(sig_sc, 20.0))) if sig_sc <= 20 else gblur(src, sig_sc)
    grid = rng.random() < 0.8
    SF = (rng.uniform(0.12, 0.30) + 0.15 * pat['hb']) if grid else rng.uniform(0.45, 0.70)
    if vtype == 'LAT':
        SF = min(SF + 0.08, 0.8)
    c3, r3, _ = view.project(C3[None])
    a3 = int(K['A'][I_L3] * mag_c / h) if vtype == 'AP' else int(K['B'][I_L3] * mag_c / h)
    h3 = int(K['H'][I_L3] * mag_c / h / 2)
    rc, cc_ = int(np.clip(r3[0], h3, nr_i - h3 - 1)), int(np.clip(c3[0], a3, nc_i - a3 - 1))
    roi = (slice(max(rc - h3, 0), rc + h3 + 1), slice(max(cc_ - a3, 0), cc_ + a3 + 1))
    P_roi = float(P_int[roi].mean()) + 1e-12
    Sc_int = resize_bilinear(Sc, nr_i, nc_i, 1.0 / fsc, 1.0 / fsc)
    S_roi = float(Sc_int[roi].mean()) + 1e-12
    ksc = SF / (1 - SF) * P_roi / S_roi
    del P_int, Sc_int
    # ---- detector grid signal
    R_, C_ = rows, cols
    s_det = resize_bilinear(s_int, R_, C_, sp / h, sp / h)
    del s_int
    sig = np.exp(-s_det)
    del s_det
    cm_det = coll_mask(R_, C_, sp)
    if cm_det is not None:
        sig *= cm_det
    sig += resize_bilinear(Sc * F32(ksc), R_, C_, sp / (h * fsc), sp / (h * fsc))
    # heel effect + off-axis fall-off (coarse then upsampled)
    ng = 64
    gy = (np.arange(ng) + 0.5) / ng
    heel = rng.uniform(-0.25, 0.25)
    c_s, r_s, _ = View(S, n, eu, ev, corner, 1.0, 1, 1, SID).project((S - n * SID)[None])
    yy = gy[:, None] * FH
    xx = gy[None, :] * FW
    if rng.random() < 0.8:
        hf_ = np.exp(heel * (yy / FH - 0.5) * 2) + 0 * xx
    else:
        hf_ = np.exp(heel * (xx / FW - 0.5) * 2) + 0 * yy
    rho2 = (xx - c_s[0]) ** 2 + (yy - r_s[0]) ** 2
    flat = (hf_ * (SID ** 2 / (SID ** 2 + rho2)) ** 1.5).astype(F32)
    sig *= resize_bilinear(flat, R_, C_, ng / R_, ng / C_)
    # detector blur (MTF)
    sig = gblur(sig, rng.uniform(0.35, 0.9))
    # exposure / quanta
    r3d, c3d = int(np.clip(rc * h / sp, 0, R_ - 1)), int(np.clip(cc_ * h / sp, 0, C_ - 1))
    hw = max(5, int(a3 * h / sp))
    hh = max(5, int(h3 * h / sp))
    roi_d = (slice(max(r3d - hh, 0), r3d + hh + 1), slice(max(c3d - hw, 0), c3d + hw + 1))
    N_spine = math.exp(rng.uniform(math.log(150), math.log(3000))) * (sp / 0.14) ** 2
    N0 = N_spine / (float(sig[roi_d].mean()) + 1e-12)
    if grid and rng.random() < 0.5:
        period = rng.uniform(2.1, 6.0)
        amp = rng.uniform(0.01, 0.04)
        ph = rng.uniform(0, 2 * math.pi)
        if rng.random() < 0.7:
            stripe = (1 - amp * 0.5 * (1 + np.cos(2 * math.pi * np.arange(C_) / period + ph))).astype(F32)[None, :]
        else:
            stripe = (1 - amp * 0.5 * (1 + np.cos(2 * math.pi * np.arange(R_) / period + ph))).astype(F32)[:, None]
        sig *= stripe
        info['grid_lines'] = True
    Nexp = sig * F32(N0)
    del sig
    swank = rng.uniform(1.0, 1.4)
    noise = rng.standard_normal((R_, C_), dtype=F32)
    if rng.random() < 0.6:
        noise = conv_sep(noise, np.array([0.25, 0.5, 0.25], F32)) * F32(1.0 / 0.612)
    meas = Nexp + np.sqrt(Nexp * F32(swank)) * noise
    del noise, Nexp
    meas += rng.standard_normal((R_, C_), dtype=F32) * F32(rng.uniform(0.3, 3.0))
    lg = (F32(math.log(N0)) - np.log(np.maximum(meas, F32(1.0)))).astype(F32)
    del meas
    # mask of collimated field (for statistics)
    inside = cm_det > 0.5 if cm_det is not None else None
    arr, proc = process_and_map(lg, rng, sp, inside, (roi_d[0], roi_d[1]))
    info.update(proc)
    D_entr = D_obj + ((K['z_bc'] + K['B0']) if vtype == 'AP' else K['A0'])
    info.update(dict(rows=R_, cols=C_, sp=sp, SID=SID, D_obj=D_obj, D_entr=D_entr, mag=mag_c, kvp=kvp, E=E, grid=grid, SF=SF,
                     N_spine=N_spine, face=face, marker=marker, coll=coll is not None))
    return arr, info, inside


# ----------------------------------------------------------------------------- processing and value mapping
def process_and_map(lg, rng, sp, inside, roi):
    info = {}
    R_, C_ = lg.shape
    sub = lg[::3, ::3]
    insub = inside[::3, ::3] if inside is not None else None
    vals = sub[insub] if insub is not None and insub.sum() > 1000 else sub.ravel()

    chain = str(rng.choice(['none', 'usm', 'mscale', 'sigmoid', 'usm+sigmoid', 'mscale+lut', 'lut'],
                           p=[0.08, 0.25, 0.25, 0.12, 0.12, 0.1, 0.08]))
    info['chain'] = chain
    v = lg
    if 'usm' in chain:
        sg = rng.uniform(1.5, 6.0) / sp
        k = rng.uniform(0.4, 1.8)
        v = v + F32(k) * (v - gblur(v, sg))
        if rng.random() < 0.6:
            big = gblur(lg, rng.uniform(15, 50) / sp)
            c = rng.uniform(0.3, 0.7)
            v = v - F32(c) * (big - F32(np.median(big[::8, ::8])))
            del big
    if 'mscale' in chain:
        sig_mm = [0.5, 1.5, 4.5, 13.5, 40.0]
        levels = [lg] + [gblur(lg, sm / sp) for sm in sig_mm]
        out = levels[-1]
        resid_c = rng.uniform(0.3, 0.7)
        out = F32(np.median(out[::8, ::8])) + F32(resid_c) * (out - F32(np.median(out[::8, ::8])))
        gains = [rng.uniform(0.8, 1.3), rng.uniform(1.2, 2.2), rng.uniform(1.5, 3.0), rng.uniform(1.2, 2.5),
                 rng.uniform(1.0, 1.8)]
        pw = rng.uniform(0.6, 0.9)
        for k in range(len(sig_mm)):
            band = levels[k] - levels[k + 1]
            sd = float(band[::6, ::6].std()) + 1e-6
            out = out + F32(gains[k] * sd) * np.sign(band) * (np.abs(band) / F32(sd)) ** F32(pw)
        v = out.astype(F32)
        del levels
    tone = ('sigmoid' in chain) or ('lut' in chain)
    vv = v[::3, ::3]
    vvals = vv[insub] if insub is not None and insub.sum() > 1000 else vv.ravel()
    if tone:
        if rng.random() < 0.5:
            ctr = float(np.median(vvals)) + rng.normal(0, 0.1)
            spread = float(np.percentile(vvals, 97) - np.percentile(vvals, 3)) + 1e-6
        else:
            roi_v = v[roi]
            ctr = float(roi_v.mean()) - rng.uniform(0.0, 0.6)
            spread = rng.uniform(3.0, 6.0)
        x = (v - F32(ctr)) / F32(spread)
        if 'sigmoid' in chain:
            g = rng.uniform(1.5, 4.0)
            nu = rng.uniform(0.6, 1.6)
            v = (1.0 / (1.0 + np.exp(-F32(g) * x))) ** F32(nu)
        else:
            kx = np.sort(rng.uniform(-0.6, 0.6, 5))
            kx = np.concatenate([[-1.0], kx, [1.0]])
            ky = np.cumsum(rng.uniform(0.2, 1.0, len(kx)))
            ky = (ky - ky[0]) / (ky[-1] - ky[0])
            v = np.interp(np.clip(x, -1, 1), kx, ky).astype(F32)
        info['tone'] = True
    v = v.astype(F32)
    bits = int(rng.choice([10, 12, 14, 16]))
    maxv = 2 ** bits - 1
    vv = v[::3, ::3]
    vvals = vv[insub] if insub is not None and insub.sum() > 1000 else vv.ravel()
    if tone:
        mapping = str(rng.choice(['fixed', 'hist'], p=[0.6, 0.4]))
    else:
        mapping = str(rng.choice(['fixed', 'hist', 'anat', 'ei'], p=[0.25, 0.35, 0.2, 0.2]))
    info['mapping'] = mapping
    if mapping == 'fixed':
        if tone:
            lo, hi = rng.uniform(0, 0.05), rng.uniform(0.9, 1.0)
            out = (v * F32(hi - lo) + F32(lo)) * F32(maxv)
        else:
            lo = rng.uniform(-0.5, 1.5)
            span = rng.uniform(8, 12)
            out = (v - F32(lo)) / F32(span) * F32(maxv)
    elif mapping == 'hist':
        plo, phi = np.percentile(vvals, [rng.uniform(0.1, 3.0), rng.uniform(97.0, 99.9)])
        mlo, mhi = rng.uniform(0.0, 0.1), rng.uniform(0.85, 1.0)
        out = (mlo + (v - F32(plo)) / F32(phi - plo + 1e-6) * F32(mhi - mlo)) * F32(maxv)
    elif mapping == 'anat':
        C_ = v.shape[1]
        cen = v[int(0.25 * R_):int(0.75 * R_):3, int(0.3 * C_):int(0.7 * C_):3]
        med, sd = float(np.median(cen)), float(cen.std()) + 1e-6
        kk = rng.uniform(4, 8)
        out = (0.5 + (v - F32(med)) / F32(kk * sd)) * F32(maxv)
    else:
        mean = float(vvals.mean())
        gfix = rng.uniform(0.06, 0.14)
        out = (rng.uniform(0.4, 0.6) + F32(gfix) * (v - F32(mean))) * F32(maxv)
    out = np.clip(np.rint(out), 0, maxv).astype(np.uint16)
    if inside is not None and rng.random() < 0.5:
        out[~inside] = maxv if rng.random() < 0.5 else 0
        info['shutter'] = True
    info['bits'] = bits
    return out, info


# ----------------------------------------------------------------------------- DICOM
def uid_from(rng):
    return '2.25.' + str(int.from_bytes(rng.bytes(16), 'big'))


IMPL_UID = '2.25.3139210937219387134217213873127'
SOP_DX = '1.2.840.10008.5.1.4.1.1.1.1'
SOP_CR = '1.2.840.10008.5.1.4.1.1.1'


def write_dicom(path, arr, info, study, vtype, rng, inside):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian
    bits = info['bits']
    maxv = 2 ** bits - 1
    mono1 = rng.random() < 0.25
    if mono1:
        arr = (maxv - arr.astype(np.int32)).astype(np.uint16)
    white = 0 if mono1 else maxv
    black = maxv if mono1 else 0
    # burned-in label
    burned = False
    if rng.random() < 0.75:
        R_, C_ = arr.shape
        scale = max(2, int(rng.uniform(0.010, 0.022) * R_ / 7))
        date = study['date'].strftime('%Y-%m-%d' if rng.random() < 0.5 else '%d.%m.%Y')
        vlab = {'AP': ['AP', 'L-SPINE AP', 'LSPINE AP SUPINE', 'LWS AP'],
                'LAT': ['LAT', 'L-SPINE LAT', 'LEFT LAT', 'LWS SEITL']}[vtype]
        lines = [str(rng.choice(vlab))]
        if rng.random() < 0.7:
            lines.append(date + (' ' + study['time'][:2] + ':' + study['time'][2:4] if rng.random() < 0.5 else ''))
        if rng.random() < 0.5:
            lines.append(study['institution'])
        corner = str(rng.choice(['tl', 'tr', 'bl', 'br']))
        val = white if rng.random() < 0.8 else int(maxv * rng.uniform(0.6, 0.9)) if not mono1 else int(maxv * rng.uniform(0.1, 0.4))
        bg = black if rng.random() < 0.3 else None
        burn_text(arr, lines, corner, scale, val, bg, rng)
        burned = True
    cr = study['sop'] == SOP_CR
    fm = FileMetaDataset()
    sop_uid = uid_from(rng)
    fm.MediaStorageSOPClassUID = study['sop']
    fm.MediaStorageSOPInstanceUID = sop_uid
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    fm.ImplementationClassUID = IMPL_UID
    fm.ImplementationVersionName = 'PHANTOM_B_1'
    ds = Dataset()
    ds.file_meta = fm
    ds.SpecificCharacterSet = 'ISO_IR 100'
    ds.ImageType = ['ORIGINAL', 'PRIMARY'] if rng.random() < 0.7 else ['DERIVED', 'PRIMARY']
    ds.SOPClassUID = study['sop']
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = study['date'].strftime('%Y%m%d')
    ds.SeriesDate = ds.StudyDate
    ds.ContentDate = ds.StudyDate
    ds.StudyTime = study['time']
    ds.ContentTime = study['time']
    ds.AccessionNumber = study['accession']
    ds.Modality = 'CR' if cr else 'DX'
    ds.Manufacturer = study['manufacturer']
    ds.InstitutionName = study['institution']
    ds.StationName = study['station']
    ds.StudyDescription = 'LUMBAR SPINE 2 VIEWS'
    ds.SeriesDescription = 'L-SPINE ' + vtype
    ds.PatientName = study['pname']
    ds.PatientID = study['pid']
    ds.PatientBirthDate = study['birth'].strftime('%Y%m%d')
    ds.PatientSex = study['sex']
    ds.PatientAge = '%03dY' % study['age']
    ds.BodyPartExamined = 'LSPINE'
    ds.KVP = '%.0f' % info['kvp']
    ds.DistanceSourceToDetector = '%.1f' % info['SID']
    ds.DistanceSourceToPatient = '%.1f' % (info['SID'] - info['D_entr'])
    ds.ExposureTime = str(int(rng.uniform(8, 200)))
    ds.XRayTubeCurrent = str(int(rng.uniform(100, 500)))
    ds.Exposure = str(int(max(1, info['N_spine'] / 20 * (3 if vtype == 'LAT' else 1))))
    ds.Grid = 'IN' if info['grid'] else 'NONE'
    if vtype == 'AP':
        ds.ViewPosition = 'AP'
        ds.PatientOrientation = ['L', 'F']
    else:
        ds.ViewPosition = 'LL' if rng.random() < 0.7 else 'LAT'
        ds.PatientOrientation = ['A' if info['face'] > 0 else 'P', 'F']
    ds.ImageLaterality = 'U'
    ds.StudyInstanceUID = study['study_uid']
    ds.SeriesInstanceUID = study['series_uid'][vtype]
    ds.StudyID = study['study_id']
    ds.SeriesNumber = '1' if study['series_uid']['AP'] == study['series_uid']['LAT'] else ('1' if vtype == 'AP' else '2')
    ds.InstanceNumber = '1' if vtype == 'AP' else '2'
    sp = info['sp']
    ds.ImagerPixelSpacing = ['%.4f' % sp, '%.4f' % sp]
    if rng.random() < 0.3:
        cal = sp / info['mag']
        ds.PixelSpacing = ['%.5f' % cal, '%.5f' % cal]
        ds.EstimatedRadiographicMagnificationFactor = '%.4f' % info['mag']
        ds.PixelSpacingCalibrationType = 'GEOMETRY'
    else:
        ds.PixelSpacing = ['%.4f' % sp, '%.4f' % sp]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = 'MONOCHROME1' if mono1 else 'MONOCHROME2'
    ds.Rows, ds.Columns = arr.shape
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = '0'
    ds.RescaleSlope = '1'
    ds.RescaleType = 'US'
    ds.PixelIntensityRelationship = 'LOG'
    ds.PixelIntensityRelationshipSign = 1 if mono1 else -1
    if not cr:
        ds.PresentationIntentType = 'FOR PRESENTATION'
        ds.PresentationLUTShape = 'INVERSE' if mono1 else 'IDENTITY'
        ds.DetectorType = str(rng.choice(['SCINTILLATOR', 'DIRECT']))
    ds.BurnedInAnnotation = 'YES' if (burned or info.get('marker')) else 'NO'
    ds.LossyImageCompression = '00'
    if rng.random() < 0.6:
        a = arr[::4, ::4]
        if inside is not None:
            a = a[inside[::4, ::4]]
        lo, hi = np.percentile(a, [rng.uniform(0.5, 3), rng.uniform(97, 99.5)])
        wc = 0.5 * (lo + hi) + rng.normal(0, 0.02) * maxv
        ww = max((hi - lo) * rng.uniform(0.9, 1.2), 16)
        ds.WindowCenter = '%.1f' % wc
        ds.WindowWidth = '%.1f' % ww
    ds.PixelData = arr.astype('<u2').tobytes()
    ds.save_as(path, enforce_file_format=True)


# ----------------------------------------------------------------------------- study driver
MANUFACTURERS = ['PHANTOMWORKS', 'NORDIC DR', 'GENERIC RADIOGRAPHY', 'ACME IMAGING', 'CR SYSTEMS']
INSTITUTIONS = ['GENERAL HOSP', 'CITY CLINIC', 'RADIOLOGY 3', 'ST ELSEWHERE', 'OUTPATIENT DX']


def make_study(args):
    out_dir, idx, seed_seq, seed = args
    rng = np.random.default_rng(seed_seq)
    t = float(rng.uniform(-4.0, 1.5))
    label = 0 if t >= -1.0 else (2 if t <= -2.5 else 1)
    bmd = 1.047 + 0.11 * t
    pat = build_patient(rng, t)
    pid = 'PHB%04d%05d' % (seed % 10000, idx)
    date = datetime.date(2015, 1, 1) + datetime.timedelta(days=int(rng.integers(0, 3650)))
    birth = date - datetime.timedelta(days=int(pat['age'] * 365.25 + rng.integers(0, 365)))
    sop = SOP_DX if rng.random() < 0.6 else SOP_CR
    st_uid = uid_from(rng)
    if rng.random() < 0.5:
        s1 = uid_from(rng)
        ser = {'AP': s1, 'LAT': s1}
    else:
        ser = {'AP': uid_from(rng), 'LAT': uid_from(rng)}
    study = dict(pid=pid, pname='PHANTOM^B%05d' % idx, sex=pat['sex'], age=pat['age'], date=date, birth=birth,
                 time='%02d%02d%02d' % (rng.integers(7, 19), rng.integers(0, 60), rng.integers(0, 60)),
                 sop=sop, study_uid=st_uid, series_uid=ser, study_id=str(int(rng.integers(1, 99999))),
                 accession='A%08d' % int(rng.integers(0, 10 ** 8)),
                 manufacturer=str(rng.choice(MANUFACTURERS)), institution=str(rng.choice(INSTITUTIONS)),
                 station='STN%02d' % int(rng.integers(1, 20)))
    rows = []
    os.makedirs(os.path.join(out_dir, 'images'), exist_ok=True)
    for vtype in ('AP', 'LAT'):
        vr = np.random.default_rng(rng.integers(0, 2 ** 63))
        arr, info, inside = render_view(pat, vtype, vr)
        rel = 'images/%s_%s.dcm' % (pid, vtype)
        write_dicom(os.path.join(out_dir, rel), arr, info, study, vtype, vr, inside)
        rows.append((rel, label, t, bmd, pid, vtype))
    return idx, rows


def run(out_dir, n, seed, workers):
    os.makedirs(out_dir, exist_ok=True)
    ss = np.random.SeedSequence(seed)
    children = ss.spawn(n)
    jobs = [(out_dir, i, children[i], seed) for i in range(n)]
    results = {}
    t0 = time.time()
    if workers > 1 and n > 1:
        import multiprocessing as mp
        ctx = mp.get_context('fork')
        with ctx.Pool(workers) as pool:
            for k, (idx, rows) in enumerate(pool.imap_unordered(make_study, jobs)):
                results[idx] = rows
                if (k + 1) % 10 == 0 or k + 1 == n:
                    print('%d/%d studies  %.1fs' % (k + 1, n, time.time() - t0), flush=True)
    else:
        for j in jobs:
            idx, rows = make_study(j)
            results[idx] = rows
            print('%d/%d studies  %.1fs' % (idx + 1, n, time.time() - t0), flush=True)
    with open(os.path.join(out_dir, 'manifest.csv'), 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['path', 'label', 't_score', 'bmd', 'patient_id', 'view'])
        for i in range(n):
            for rel, label, t, bmd, pid, vtype in results[i]:
                w.writerow([rel, label, '%.4f' % t, '%.4f' % bmd, pid, vtype])
    print('done: %d studies, %d images in %.1fs -> %s' % (n, 2 * n, time.time() - t0, out_dir))


# ----------------------------------------------------------------------------- preview
def write_png(path, img8):
    h, w = img8.shape
    raw = b''.join(b'\x00' + img8[i].tobytes() for i in range(h))

    def chunk(tag, data):
        c = struct.pack('>I', len(data)) + tag + data
        return c + struct.pack('>I', zlib.crc32(tag + data) & 0xffffffff)

    png = (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 0, 0, 0, 0))
           + chunk(b'IDAT', zlib.compress(raw, 6)) + chunk(b'IEND', b''))
    with open(path, 'wb') as f:
        f.write(png)


def display8(ds):
    a = ds.pixel_array.astype(np.float32)
    if 'WindowCenter' in ds and 'WindowWidth' in ds:
        wc, ww = float(ds.WindowCenter), float(ds.WindowWidth)
        lo, hi = wc - ww / 2, wc + ww / 2
    else:
        lo, hi = np.percentile(a[::4, ::4], [0.5, 99.5])
    x = np.clip((a - lo) / max(hi - lo, 1e-6), 0, 1)
    if ds.PhotometricInterpretation == 'MONOCHROME1':
        x = 1 - x
    return x


def preview(study_dir, out_png, height=900):
    import pydicom
    rows = list(csv.DictReader(open(os.path.join(study_dir, 'manifest.csv'))))
    by = {}
    for r in rows:
        by.setdefault(r['patient_id'], {})[r['view']] = r
    pids = sorted(by, key=lambda p: float(by[p]['AP']['t_score']))
    pick = [pids[0], pids[-1]]
    tiles, crops = [], []
    for p in pick:
        for v in ('AP', 'LAT'):
            ds = pydicom.dcmread(os.path.join(study_dir, by[p][v]['path']))
            x = display8(ds)
            f = max(1, int(round(x.shape[0] / height)))
            sm = block_mean(x.astype(F32), f)
            lab = '%s T %s' % (v, by[p][v]['t_score'])
            m = text_mask(lab, 3)
            sm[4:10 + m.shape[0], 4:10 + m.shape[1]] = 0
            sm[7:7 + m.shape[0], 7:7 + m.shape[1]][m] = 1
            tiles.append(sm)
            R_, C_ = x.shape
            ch = int(0.45 * R_)
            cw = int(0.5 * C_)
            crop = x[int(0.3 * R_):int(0.3 * R_) + ch, int(0.25 * C_):int(0.25 * C_) + cw]
            cf = max(1, int(round(crop.shape[0] / height)))
            crops.append(block_mean(crop.astype(F32), cf))
            print('%s %s t=%s label=%s  %dx%d %s bits=%s' % (p, v, by[p][v]['t_score'], by[p][v]['label'], R_, C_,
                                                           ds.PhotometricInterpretation, ds.BitsStored))

    def row_of(ts):
        hh = max(t.shape[0] for t in ts)
        out = []
        for t in ts:
            pad = np.zeros((hh, t.shape[1] + 8), F32)
            pad[:t.shape[0], :t.shape[1]] = t
            out.append(pad)
        return np.concatenate(out, axis=1)

    r1, r2 = row_of(tiles), row_of(crops)
    w = max(r1.shape[1], r2.shape[1])
    canvas = np.zeros((r1.shape[0] + r2.shape[0] + 8, w), F32)
    canvas[:r1.shape[0], :r1.shape[1]] = r1
    canvas[r1.shape[0] + 8:, :r2.shape[1]] = r2
    write_png(out_png, (np.clip(canvas, 0, 1) * 255).astype(np.uint8))
    print('preview ->', out_png, canvas.shape, 'left pair: lowest T, right pair: highest T')


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == '--preview':
        preview(sys.argv[2], sys.argv[3])
        return
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('out_dir')
    ap.add_argument('n_studies', type=int)
    ap.add_argument('seed', type=int)
    ap.add_argument('--workers', type=int, default=min(2, os.cpu_count() or 1))
    a = ap.parse_args()
    run(a.out_dir, a.n_studies, a.seed, a.workers)


if __name__ == '__main__':
    main()
