#!/usr/bin/env python3
"""phantom_d -- independent synthetic lumbar-spine radiograph STUDIES (AP + LAT) with BMD truth.

Voxel-free projection model: every anatomical structure of a 3-D synthetic patient is drawn
directly as a projected path-length map (mm of cortical-bone equivalent, fat, gas, metal; soft
tissue = body chord minus the rest), combined by Beer-Lambert at an effective energy drawn per
image, plus blurred scatter, AEC-scaled quantum noise and a detector / display chain.

usage: python phantom_d.py OUT_DIR N_STUDIES SEED [--workers K]
"""
import argparse, csv, datetime, os, sys, time
import numpy as np
from scipy import ndimage as ndi
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian
from PIL import Image, ImageDraw, ImageFont

# mass attenuation coefficients (cm2/g) at 30,40,50,60,80 keV (approx. NIST/ICRU-44), density g/cm3
E_TAB = np.log([30., 40., 50., 60., 80.])
MU_TAB = {'soft': (1.04, [0.3790, 0.2688, 0.2264, 0.2048, 0.1823]),
          'fat': (0.95, [0.3350, 0.2540, 0.2185, 0.2005, 0.1803]),
          'bone': (1.92, [1.331, 0.6655, 0.4242, 0.3148, 0.2229]),
          'metal': (7.87, [8.176, 3.629, 1.958, 1.205, 0.5952])}

def mu(mat, E):
    rho, t = MU_TAB[mat]
    return rho * float(np.exp(np.interp(np.log(E), E_TAB, np.log(t)))) / 10.0   # per mm

LEVELS = ['T11', 'T12', 'L1', 'L2', 'L3', 'L4', 'L5', 'S1']
BW = [36, 39, 42, 44, 47, 49, 51, 48]      # body width mm
BD = [28, 29, 30, 31, 32, 33, 33, 30]      # body depth mm
BH = [21, 23, 25, 26, 27, 27, 26, 24]      # body height mm
DISC = [6, 7, 8, 9, 10, 11, 11, 0]         # disc below mm
TPL = [5, 4, 13, 19, 25, 21, 16, 0]        # transverse process length beyond pedicle

def uid(rng):
    return '2.25.' + str(int.from_bytes(rng.bytes(16), 'little') >> 1)

def rot(phi, alpha, psi):
    c, s = np.cos, np.sin
    Ry = np.array([[c(phi), 0, s(phi)], [0, 1, 0], [-s(phi), 0, c(phi)]])
    Rz = np.array([[c(alpha), -s(alpha), 0], [s(alpha), c(alpha), 0], [0, 0, 1]])
    Rx = np.array([[1, 0, 0], [0, c(psi), -s(psi)], [0, s(psi), c(psi)]])
    return Ry @ Rz @ Rx

# ----------------------------------------------------------------------------- patient
def make_patient(rng):
    cls = rng.choice(3, p=[0.36, 0.32, 0.32])
    T = [rng.uniform(-0.99, 2.0), rng.uniform(-2.49, -1.01), rng.uniform(-4.5, -2.51)][cls]
    T = round(float(T), 2)
    bmd = 1.047 + 0.11 * T
    sex = 'F' if rng.random() < 0.68 else 'M'
    age = int(np.clip(52 - 7.0 * T + rng.normal(0, 9), 22, 92))
    bn = bmd / 1.047
    p = dict(T=T, bmd=bmd, sex=sex, age=age, bn=bn)
    s = (0.96 if sex == 'F' else 1.06) * rng.normal(1, 0.04)
    hb = rng.beta(2.0, 2.2)
    p.update(s=s, hb=hb, Wb=s * (132 + 80 * hb), Db=s * (80 + 85 * hb),
             fs=(4 + 38 * hb ** 1.4) * (1.25 if sex == 'F' else 0.8),
             fv=float(np.clip(0.05 + 0.28 * hb * (1.3 if sex == 'M' else 0.9) + rng.normal(0, .03), .03, .45)),
             pexp=2.0 + 1.2 * rng.random())
    # bone quality: trabecular bone-equivalent fraction, cortex, endplates, marrow fat
    p['rho'] = 0.19 * bn ** 1.7 * np.exp(rng.normal(0, 0.05))
    p['tc'] = (0.55 + 0.45 * bn) * rng.normal(1, 0.08)
    p['te'] = 0.7 + 0.5 * bn
    p['ff'] = float(np.clip(0.3 + 0.004 * (age - 40) + 0.12 * (1 - bn) + rng.normal(0, .05), .15, .8))
    p['conc'] = 0.6 + 2.2 * max(0.0, 0.85 - bn) + rng.uniform(0, 0.6)
    p['rho_post'] = 0.12 + 0.5 * p['rho']
    dg = float(np.clip((age - 38) / 45 + rng.normal(0, 0.18), 0, 1))
    p['dg'] = dg
    # spine geometry: sagittal curve (lordosis), scoliosis, rotation
    p['ss'] = ss = rng.uniform(32, 50)
    psi1 = -np.radians(ss - rng.uniform(8, 16))
    psi0 = np.radians(rng.uniform(5, 22))
    scol = rng.random() < 0.22
    amp = rng.uniform(4, 25) * rng.choice([-1, 1]) if scol else 0.0
    ph, per = rng.uniform(-1, 1), rng.uniform(5, 9)
    verts, lens, Y, Z = [], [], 0.0, 0.0
    for i, lv in enumerate(LEVELS):
        h = BH[i] * s * rng.normal(1, .03)
        d = DISC[i] * s * rng.normal(1, .08)
        if lv in ('L3', 'L4', 'L5'):
            d *= 1 - dg * rng.uniform(0, 0.55)
        lens.append((h, d))
    S = sum(h + d for h, d in lens[:-1])
    acc = 0.0
    for i, lv in enumerate(LEVELS):
        h, d = lens[i]
        sc = acc + h / 2
        psi = psi0 + (psi1 - psi0) * (sc / S) ** 1.8 if lv != 'S1' else -np.radians(ss)
        dirv = np.array([np.cos(psi), np.sin(psi)])
        cY, cZ = np.array([Y, Z]) + dirv * h / 2
        X = amp * np.sin(np.pi * (i + ph) / per) + rng.normal(0, 1.0)
        Xn = amp * np.sin(np.pi * (i + 1 + ph) / per)
        alpha = -np.arctan((Xn - X) / (h + d)) + np.radians(rng.normal(0, 1.2))
        phi = np.radians(np.clip(0.5 * X, -15, 15) + rng.normal(0, 1.5))
        v = dict(lv=lv, i=i, C=np.array([X, cY, cZ]), R=rot(phi, alpha, psi),
                 a=BW[i] / 2 * s * rng.normal(1, .03), b=BD[i] / 2 * s * rng.normal(1, .03), h=h,
                 wedge=0.0, conc=p['conc'] * (0.7 if lv == 'S1' else 1), rho=p['rho'],
                 te=p['te'] + dg * rng.uniform(0, 2.5) * (1.0 if i >= 4 else 0.4), tpl=TPL[i] * s)
        if lv in ('T11', 'T12', 'L1', 'L2', 'L3', 'L4') and rng.random() < 0.015 + 0.045 * max(0, -T - 1.5):
            if rng.random() < 0.7:
                v['wedge'] = rng.uniform(0.15, 0.45)
            else:
                v['conc'] += rng.uniform(2.5, 5.5)
            v['rho'] *= 1.12
        v['ost'] = [(np.radians(rng.uniform(-40, 220)), side, dg * rng.uniform(1.5, 8) + 1) for side in (-1, 1)
                    for _ in range(rng.poisson(1.6 * dg))] if lv not in ('T11', 'S1') else []
        verts.append(v)
        Y, Z = np.array([cY, cZ]) + dirv * h / 2 + dirv * d
        acc += h + d
    ref = verts[4]['C'].copy()
    for v in verts:
        v['C'] = v['C'] - ref
    p['verts'] = verts
    p['Zb'] = -(verts[4]['b'] + 55 * s + p['fs']) + p['Db']
    p['crest'] = verts[5]['C'][1] + rng.uniform(-12, 22)
    p['ilw'] = s * rng.uniform(115, 138) * (1.05 if sex == 'F' else 1.0)
    p['dome'] = verts[1]['C'][1] + rng.uniform(-15, 30)
    # soft-tissue objects (patient coordinates, mm): gas blobs, kidneys, aorta plaques, clips
    gas = []
    for _ in range(rng.integers(4, 20)):
        colon = rng.random() < 0.6
        if colon:
            seg = rng.integers(3)
            X = [-0.6, 0.6, rng.uniform(-0.6, 0.6)][seg] * p['Wb'] + rng.normal(0, 12)
            Yg = rng.uniform(-120, 160) if seg < 2 else rng.uniform(-110, -40)
        else:
            X, Yg = rng.uniform(-0.7, 0.7) * p['Wb'], rng.uniform(-60, 200)
        c, r = np.array([X, Yg, p['Zb'] + rng.uniform(-0.1, 0.7) * p['Db']]), rng.uniform(4, 20)
        for _ in range(rng.integers(1, 5)):     # lobulated pockets
            gas.append((c + rng.normal(0, r * 0.7, 3),
                        np.array([r * rng.uniform(.5, 1.4), r * rng.uniform(.4, 1.1), r * rng.uniform(.5, 1.2)])))
            r *= rng.uniform(0.6, 1.0)
    p['gas'] = gas
    p['kid'] = [(np.array([sd * (verts[3]['a'] + 42 * s), verts[2]['C'][1] + (12 if sd < 0 else -5) + rng.normal(0, 8),
                           verts[3]['C'][2] - 5]), np.array([27, 52, 24]) * s, sd * np.radians(rng.uniform(8, 20)))
                for sd in (-1, 1)]
    plaques = []
    if rng.random() < np.clip((age - 45) / 45, 0, 0.75):
        for _ in range(rng.integers(1, 14)):
            vv = verts[rng.integers(2, 7)]
            yp = vv['C'][1] + rng.uniform(-20, 20)
            plaques.append((np.array([12 + rng.normal(0, 3), yp, vv['C'][2] + vv['b'] + 14]), rng.uniform(9, 13),
                            rng.uniform(0, 2 * np.pi), rng.uniform(0.4, 1.6), rng.uniform(3, 15), rng.uniform(.7, 1.6)))
    p['plaques'] = plaques
    clips = []
    if rng.random() < 0.12:
        c0 = np.array([rng.uniform(-80, -35), verts[3]['C'][1] + rng.uniform(-30, 20), rng.uniform(20, 60)])
        for _ in range(rng.integers(1, 5)):
            c = c0 + rng.normal(0, 8, 3)
            d = rng.normal(size=3); d /= np.linalg.norm(d)
            e = np.cross(d, rng.normal(size=3)); e /= np.linalg.norm(e)
            L = rng.uniform(6, 9)
            clips += [(c, c + d * L), (c, c + (d * 0.95 + e * 0.3) * L)]
    p['clips'] = clips
    return p

# ----------------------------------------------------------------------------- canvas
class Canvas:
    def __init__(self, view, H, W, w, uc, vc, sod):
        self.view, self.H, self.W, self.w, self.sod = view, H, W, w, sod
        self.u0, self.v0, self.ucr, self.vcr = uc - (W - 1) / 2 * w, vc - (H - 1) / 2 * w, uc, vc
        self.eu = np.array([1., 0, 0]) if view == 'AP' else np.array([0, 0, 1.])
        self.er = np.array([0, 0, 1.]) if view == 'AP' else np.array([-1., 0, 0])
        self.ev = np.array([0, 1., 0])
        z = lambda: np.zeros((H, W), np.float32)
        self.T, self.bone, self.fat, self.gas, self.metal = z(), z(), z(), z(), z()
        self.tex = np.ones((H, W), np.float32)
        self.U = (self.u0 + np.arange(W) * w)[None, :].astype(np.float32)
        self.V = (self.v0 + np.arange(H) * w)[:, None].astype(np.float32)

    def proj(self, P):
        u, v, r = P @ self.eu, P @ self.ev, P @ self.er
        return u + r * (u - self.ucr) / self.sod, v + r * (v - self.vcr) / self.sod, r

    def win(self, uc, vc, ru, rv):
        j0, j1 = int((uc - ru - self.u0) / self.w), int((uc + ru - self.u0) / self.w) + 2
        i0, i1 = int((vc - rv - self.v0) / self.w), int((vc + rv - self.v0) / self.w) + 2
        j0, i0, j1, i1 = max(j0, 0), max(i0, 0), min(j1, self.W), min(i1, self.H)
        if j1 <= j0 or i1 <= i0:
            return None
        return (slice(i0, i1), slice(j0, j1)), self.U[:, j0:j1], self.V[i0:i1, :]

    def sm(self, x):
        return np.clip(x / self.w + 0.5, 0, 1)

def ellipsoid(cv, u, v, ru, rv, rr, ang, shell=0.0, core=1.0, target='bone', fac=1.0):
    win = cv.win(u, v, max(ru, rv) + 1, max(ru, rv) + 1)
    if win is None:
        return
    sl, U, V = win
    du, dv = U - u, V - v
    ca, sa = np.cos(ang), np.sin(ang)
    up, vp = du * ca + dv * sa, -du * sa + dv * ca
    co = 2 * rr * np.sqrt(np.clip(1 - (up / ru) ** 2 - (vp / rv) ** 2, 0, None))
    if shell > 0 and min(ru, rv, rr) > 1.5 * shell:
        ci = 2 * (rr - shell) * np.sqrt(np.clip(1 - (up / (ru - shell)) ** 2 - (vp / (rv - shell)) ** 2, 0, None))
        val = co - ci + core * ci
    else:
        val = co * core
    getattr(cv, target)[sl] += fac * val

def proj_radii(cv, R, rx, ry, rz):
    """image-plane half-width, vertical radius, ray half-depth of a local-axis ellipsoid/cylinder."""
    lu = R.T @ cv.eu
    cx, cz, n = lu[0], lu[2], np.hypot(lu[0], lu[2]) + 1e-9
    ru = np.hypot(rx * cx, rz * cz) / n
    return ru, ry, rx * rz / ru

def vert_frame(cv, V):
    pu, pv, pr = V['R'][:, 1] @ cv.eu, V['R'][:, 1] @ cv.ev, V['R'][:, 1] @ cv.er
    return np.arctan2(-pu, pv), -pr / pv

def draw_body(cv, V, p, uc, vc, alpha, tau, W, R, h, rho, conc, wedge, su):
    nsl = int(np.clip(np.ceil(abs(tau) * 2 * R / 0.5), 2, 24))
    win = cv.win(uc, vc, max(W, h) + abs(tau) * R + 4, max(W, h) + abs(tau) * R + 4)
    if win is None:
        return
    sl, U, Vv = win
    ca, sa = np.cos(alpha), np.sin(alpha)
    tc, te, ted = p['tc'], V['te'], 0.55 + 0.35 * p['bn'] + 0.15 * p['dg']
    bone, fat = np.zeros((Vv.shape[0], U.shape[1]), np.float32), 0
    for j in range(nsl):
        rj = -R + (2 * j + 1) * R / nsl
        du = U - uc - rj * (uc - cv.ucr) / cv.sod
        dv = Vv - vc - rj * (tau + (vc - cv.vcr) / cv.sod)
        up, vp = du * ca + dv * sa, -du * sa + dv * ca
        Wv = W * (1 - 0.07 * (1 - np.clip((2 * vp / h) ** 2, 0, 1)))
        q = up / Wv
        co = (2 * R / nsl) * np.sqrt(np.clip(1 - q * q, 0, None))
        ci = (2 * (R - tc) / nsl) * np.sqrt(np.clip(1 - (up / (Wv - tc)) ** 2, 0, None))
        vt, vb = -h / 2 + h * wedge * (0.5 + 0.5 * np.clip(su * q, -1, 1)), h / 2
        cc = conc * np.clip(1 - q * q, 0, 1)
        et, eb = vt + cc, vb - cc
        rim = cv.sm(vp - vt) * cv.sm(vb - vp)
        bt = cv.sm(vp - et) * cv.sm(et + te - vp)
        bb = cv.sm(eb - vp) * cv.sm(vp - eb + te)
        core = cv.sm(vp - et - te) * cv.sm(eb - te - vp)
        trab = ci * core
        bone += (co - ci) * rim * np.clip(1 - bt - bb, 0, 1) + co * (bt + bb) * ted + trab * rho * cv.tex[sl]
        fat = fat + trab * (1 - rho) * p['ff']
    cv.bone[sl] += bone
    cv.fat[sl] += fat

def draw_vertebra(cv, V, p):
    R, C, a, b, h = V['R'], V['C'], V['a'], V['b'], V['h']
    alpha, tau = vert_frame(cv, V)
    u, v, r = cv.proj(C[None])
    W, _, Rr = proj_radii(cv, R, a, h, b)
    su = (R[:, 2] @ cv.eu) / (np.hypot(R[:, 2] @ cv.eu, R[:, 2] @ cv.er) + 1e-9)
    draw_body(cv, V, p, u[0], v[0], alpha, tau, W, Rr, h, V['rho'], V['conc'], V['wedge'], su)
    rp, lv = p['rho_post'], V['lv']
    els = [([(a + L / 2) * np.cos(ang), sd * (h / 2 + L * 0.15), (b + L / 2) * np.sin(ang)],   # osteophytes
            (L / 2 + 1, L * 0.35 + 1, L / 2 + 1), 0, 0.7) for sd in (-1, 1) for ang, side, L in V['ost'] if side == sd]
    if lv == 'S1':
        for sd in (-1, 1):   # sacral ala
            els.append(([sd * (a + 18), 10, -6], (28, 14, 18), 0, p['rho'] * 0.45 + 0.03))
    elif cv.view == 'LAT':   # neural arch seen from the side: connected bars (pedicle, pillar, spinous)
        for sd in (-1, 1):
            tubes = [([[0.62 * a, -0.2 * h, -b + 2], [0.6 * a, -0.2 * h, -b - 14]], 0.2 * h, rp, 0.55),
                     ([[0.5 * a, -0.5 * h - 6, -b - 17], [0.45 * a, 0.5 * h + 8, -b - 22]], 5.5, rp * 1.1, 0.6)]
            for pts, rad, core, fac in tubes:
                P = C + (R @ (np.array(pts) * [sd, 1, 1]).T).T
                draw_tube(cv, P, rad, 0.6, core, fac=fac)
            tl = V['tpl']
            els.append(([sd * (0.62 * a + tl / 2 + 2), -0.15 * h, -b - 10], (tl / 2 + 4, 4.5 * p['s'], 5), 0, rp * 0.45))
        sp = 0.45 * h if lv in ('T11', 'T12') else 0.3 * h
        P = C + (R @ np.array([[0, 0.1 * h, -b - 18], [0, sp, -b - 52]]).T).T
        draw_tube(cv, P, 0.28 * h, 0.6, rp, fac=0.45)
    else:
        for sd in (-1, 1):
            els.append(([sd * 0.62 * a, -0.2 * h, -b - 6], (0.2 * a, 0.3 * h, 8), 0.7, rp * 0.75))   # pedicle
            tl = V['tpl']
            els.append(([sd * (0.62 * a + tl / 2 + 2), -0.15 * h, -b - 10], (tl / 2 + 4, 4.5 * p['s'], 5), 0, rp * 0.45))
            els.append(([sd * 0.5 * a, -0.5 * h - 3, -b - 18], (5, 9, 6), 0, rp * 1.1 + 0.05 * p['dg']))  # sup. art.
            els.append(([sd * 0.42 * a, 0.5 * h + 4, -b - 24], (5, 9, 6), 0, rp * 1.1 + 0.05 * p['dg']))  # inf. art.
        els.append(([0, 0.15 * h, -b - 22], (0.55 * a, 0.32 * h, 5), 0, rp * 0.8))                  # lamina
        sp = 0.45 * h if lv in ('T11', 'T12') else 0.3 * h
        els.append(([0, sp, -b - 40], (4.5, 0.42 * h, 17), 0, rp * 0.9))                         # spinous
    for c, rad, sh, core in els:
        P = C + R @ np.array(c, float)
        uu, vv, _ = cv.proj(P[None])
        ru, rv, rr = proj_radii(cv, R, *rad)
        ellipsoid(cv, uu[0], vv[0], ru, rv, rr, alpha, sh, core)

def draw_tube(cv, pts, rad, shell, core, target='bone', fac=1.0):
    """projected tube (rib, clip wire) along a 3-D polyline (nearest segment decides)."""
    u, v, r = cv.proj(pts)
    win = cv.win((u.min() + u.max()) / 2, (v.min() + v.max()) / 2, (u.max() - u.min()) / 2 + rad + 2,
                 (v.max() - v.min()) / 2 + rad + 2)
    if win is None:
        return
    sl, U, Vv = win
    dmin = np.full((Vv.shape[0], U.shape[1]), 1e9, np.float32)
    obl = np.ones_like(dmin)
    for k in range(len(u) - 1):
        du, dv, dr = u[k + 1] - u[k], v[k + 1] - v[k], r[k + 1] - r[k]
        L2 = du * du + dv * dv + 1e-9
        sin_g = max(np.sqrt(L2 / (L2 + dr * dr)), 0.5)
        t = np.clip(((U - u[k]) * du + (Vv - v[k]) * dv) / L2, 0, 1)
        d2 = (U - u[k] - t * du) ** 2 + (Vv - v[k] - t * dv) ** 2
        upd = d2 < dmin
        dmin[upd] = d2[upd]
        obl[upd] = 1 / sin_g
    co = 2 * np.sqrt(np.clip(rad * rad - dmin, 0, None))
    if shell > 0:
        ci = 2 * np.sqrt(np.clip((rad - shell) ** 2 - dmin, 0, None))
        co = co - ci + core * ci
    getattr(cv, target)[sl] += fac * co * ndi.uniform_filter(obl, 5)

# ----------------------------------------------------------------------------- anatomy per view
def texture(cv, rng, p, sl):
    shp, w, bn = (sl[0].stop - sl[0].start, sl[1].stop - sl[1].start), cv.w, p['bn']
    n1, n2 = rng.standard_normal(shp, dtype=np.float32), rng.standard_normal(shp, dtype=np.float32)
    gv = ndi.gaussian_filter(n1, (2.2 / w, 0.3 / w))
    gh = ndi.gaussian_filter(n2, (0.3 / w, 1.3 / w))
    hw = float(np.clip(0.2 + 0.7 * (bn - 0.55), 0.03, 0.8))      # horizontal struts vanish first
    g = gv / gv.std() + hw * gh / gh.std()
    g -= ndi.gaussian_filter(g, 3.0 / w)
    g /= g.std() + 1e-6
    thr = float(np.clip(-0.9 + 1.2 * (1 - bn), -0.9, 0.5))       # sparser network at low BMD
    st = np.maximum(g - thr, 0)
    st /= st.mean() + 1e-6
    m = float(np.clip(0.25 + 0.45 * bn, 0.3, 0.85))               # projection averaging
    cv.tex[sl] = m + (1 - m) * st

def body_outline(cv, p):
    Y, v3 = cv.V, p['verts']
    yl3, yc = 0.0, p['crest']
    Wb = p['Wb'] * (1 + 0.07 * ((Y - yl3) / 120) ** 2) + np.clip(Y - yc, 0, None) * (0.55 if p['sex'] == 'F' else 0.35)
    t = np.clip((Y - yc + 70) / 110, 0, 1)
    Wb = Wb + np.clip(p['ilw'] + 18 + p['fs'] - Wb, 0, None) * (3 * t * t - 2 * t ** 3)
    Db = p['Db'] * (1 + 0.05 * p['hb'] * np.exp(-((Y - 60) / 90) ** 2))
    pe = p['pexp']
    if cv.view == 'AP':
        X0 = 0.3 * (v3[2]['C'][0] + v3[6]['C'][0])
        q, D, q2, D2 = np.abs(cv.U - X0) / Wb, Db, np.abs(cv.U - X0) / np.maximum(Wb - p['fs'], 5), Db - p['fs']
    else:
        ys, zs = [v['C'][1] for v in v3], [v['C'][2] for v in v3]
        zback = np.interp(Y, ys, zs) - (v3[4]['b'] + 55 * p['s'] + p['fs'])
        zfront = p['Zb'] + Db
        Zb, Dz = (zback + zfront) / 2, (zfront - zback) / 2
        q, D, q2, D2 = np.abs(cv.U - Zb) / Dz, Wb, np.abs(cv.U - Zb) / np.maximum(Dz - p['fs'], 5), Wb - p['fs']
    Tout = 2 * D * np.clip(1 - q ** pe, 0, None) ** (1 / pe)
    Tin = 2 * np.maximum(D2, 5) * np.clip(1 - q2 ** pe, 0, None) ** (1 / pe)
    cv.T[:] = Tout
    cv.fat[:] = (Tout - Tin) + p['fv'] * Tin
    return Wb, Tin

def draw_pelvis(cv, p, rng):
    S1 = p['verts'][7]
    uS, vS = [x[0] for x in cv.proj(S1['C'][None])[:2]]
    yc, ilw, rho, s, aS = p['crest'], p['ilw'], p['rho'], p['s'], S1['a']
    if cv.view == 'AP':
        for sd in (-1, 1):   # iliac wings: thin plate, denser toward acetabulum, crest seen tangentially
            rx, cy, ry, cx = 70 * s, yc + 85 * s, 85 * s, sd * (ilw - 70 * s)
            win = cv.win(cx, cy, rx + 8, ry + 8)
            if win is None:
                continue
            sl, U, V = win
            qq = np.sqrt(((U - cx) / rx) ** 2 + ((V - cy) / ry) ** 2)
            tt = np.clip((V - vS) / 120, 0, 1)
            med = cv.sm(sd * (U - uS) - ((aS + 30) * (1 - tt) + 14 * tt + 2.5 + 0.25 * np.clip(vS - V, 0, None)))
            low = np.clip((V - cy) / ry, 0, 1)
            plate = cv.sm((1 - qq) * rx) * med * (2.5 + 4 * rho) * (1 + 0.8 * low)
            d = (qq - 1 + 0.06) * rx
            rim = 2 * np.sqrt(np.clip(20 - d * d, 0, None)) * med * cv.sm(cy - 10 - V)
            cv.bone[sl] += plate + rim * (0.15 + 0.8 * rho)
        win = cv.win(uS, vS + 75, aS + 45, 90)   # sacral plate with foramina
        if win is not None:
            sl, U, V = win
            t = np.clip((V - vS) / 120, 0, 1)
            hwid = (aS + 30) * (1 - t) + 14 * t
            vtop = vS - 0.1 * S1['h'] + 0.35 * np.clip(np.abs(U - uS) - aS, 0, None)
            ins = cv.sm(hwid - np.abs(U - uS)) * np.clip((V - vtop) / 10, 0, 1)
            pl = (16 * (1 - 0.5 * t) * rho * (0.6 + 0.4 * cv.tex[sl]) + 2.5) * ins
            for k in range(4):
                for sd in (-1, 1):
                    fu, fv = uS + sd * (20 - 2 * k) * s, vS + 22 + 20 * k
                    pl *= 1 - 0.5 * np.clip((5.5 - np.hypot(U - fu, (V - fv) * 1.2)) / 2, 0, 1)
            cv.bone[sl] += pl
    else:
        cz = uS - 15 * s
        off = rng.uniform(2, 8) * rng.choice([-1, 1])
        for o in (-off / 2, off / 2):    # two ilia, slightly out of register (divergence / obliquity)
            cy, rz, ry = yc + 75 * s + o, 80 * s, 75 * s
            win = cv.win(cz + o, cy, rz + 8, ry + 8)
            if win is None:
                continue
            sl, U, V = win
            qq = np.sqrt(((U - cz - o) / rz) ** 2 + ((V - cy) / ry) ** 2)
            fade = np.clip(1 - 1.2 * (V - cy) / ry, 0.25, 1)
            plate = cv.sm((1 - qq) * rz) * (2.5 + 4 * rho) * fade
            d = (qq - 1 + 0.05) * rz
            rim = 2 * np.sqrt(np.clip(16 - d * d, 0, None)) * cv.sm(cy - 25 - V)
            cv.bone[sl] += plate + rim * (0.15 + 0.8 * rho)
        Vs = S1
        for k, (aa, bb, hh, dps) in enumerate([(36, 14, 22, 8), (28, 11, 19, 18), (20, 9, 16, 30), (13, 7, 12, 45)]):
            prev = Vs
            Vs = dict(S1, a=aa * s, b=bb * s, h=hh * s, wedge=0, conc=0.0, te=0.4,
                      R=rot(0, 0, -np.radians(p['ss'] - dps)))
            Vs['C'] = prev['C'] + prev['R'][:, 1] * (prev['h'] / 2 + 1) + Vs['R'][:, 1] * Vs['h'] / 2
            alpha, tau = vert_frame(cv, Vs)
            u, v, _ = cv.proj(Vs['C'][None])
            W, _, Rr = proj_radii(cv, Vs['R'], Vs['a'], Vs['h'], Vs['b'])
            draw_body(cv, Vs, p, u[0], v[0], alpha, tau, W, Rr, Vs['h'], rho * 0.9, 0.0, 0, 0)

def draw_soft(cv, p, rng, Wb, Tin):
    v3 = p['verts']
    if cv.view == 'AP':
        # psoas muscles: fat displaced by muscle along tapered columns lateral to the spine
        y1, y5 = v3[2]['C'][1] - 10, v3[6]['C'][1] + 10
        win = cv.win(0, (y1 + y5) / 2 + 20, 160, (y5 - y1) / 2 + 45)
        if win is not None:
            sl, U, V = win
            t = np.clip((V - y1) / (y5 - y1), 0, 1)
            fade = np.clip((V - y1 + 15) / 25, 0, 1) * np.clip((y5 + 60 - V) / 60, 0, 1)
            rr = p['s'] * (8 + 17 * t) * (1.2 if p['sex'] == 'M' else 1.0)
            for sd in (-1, 1):
                xc = sd * (v3[4]['a'] + 0.8 * rr)
                ch = 2 * rr * np.sqrt(np.clip(1 - ((U - xc) / rr) ** 2, 0, None)) * fade
                cv.fat[sl] -= np.minimum(ch * min(0.9, p['fv'] * 2.5), p['fv'] * Tin[sl] * 0.8)
        for c, rad, tilt in p['kid']:
            u, v, _ = cv.proj(c[None])
            ellipsoid(cv, u[0], v[0], rad[0] + 7, rad[1] + 7, rad[2] + 7, tilt, 0, 0.6 * p['fv'] + 0.15, 'fat')
            ellipsoid(cv, u[0], v[0], rad[0], rad[1], rad[2], tilt, 0, -(0.6 * p['fv'] + 0.15) - 0.3 * p['fv'], 'fat')
    # lung bases (posterior costophrenic recesses)
    yd = p['dome']
    if cv.v0 < yd:
        rows = slice(0, max(1, min(cv.H, int((yd + 10 - cv.v0) / cv.w))))
        V, U = cv.V[rows], cv.U
        if cv.view == 'AP':
            au = np.abs(U)
            vd = yd - 45 * np.exp(-((au - 0.5 * Wb[rows]) / (0.35 * Wb[rows])) ** 2) - 15 * (U < 0)
            lat = np.clip((au - v3[1]['a'] - 10) / 35, 0, 1) ** 1.5 * np.clip((Wb[rows] - 8 - au) / 25, 0, 1)
            g = 90 * p['s'] * np.tanh(np.clip(vd - V, 0, None) / 35) * lat
        else:
            z0 = v3[1]['C'][2] - v3[1]['b'] - 40
            t = np.clip((U - z0) / (1.3 * p['Db']), 0, 1)
            vd = yd - 55 * t
            g = 150 * p['s'] * np.tanh(np.clip(vd - V, 0, None) / 35) * np.clip((U - z0) / 30, 0, 1) * (1 - t) ** 0.5
        cv.gas[rows] += g.astype(np.float32)
    for c, rad in p['gas']:
        u, v, _ = cv.proj(c[None])
        ru, rr = (rad[0], rad[2]) if cv.view == 'AP' else (rad[2], rad[0])
        ellipsoid(cv, u[0], v[0], ru, rad[1], rr, rng.uniform(-.5, .5), 0, 1.0, 'gas')
    for c, ra, om, dom, ln, th in p['plaques']:    # aortic wall calcification: arc of wall plate
        for k in range(7):
            o = om + dom * (k / 6 - 0.5)
            P = c + np.array([ra * np.cos(o), 0, ra * np.sin(o)])
            u, v, _ = cv.proj(P[None])
            ellipsoid(cv, u[0], v[0], 1.0 + 0.8 * th, ln / 2, th + 1, 0, 0, 0.28 * dom, 'bone')
    for a0, a1 in p['clips']:
        draw_tube(cv, np.linspace(a0, a1, 4), 0.45, 0, 1, 'metal')
    for vi in (0, 1):   # ribs of T11, T12
        V = p['verts'][vi]
        for sd in (-1, 1):
            Rx, dc, Rz = p['Wb'] * 0.85, V['b'] + 30, V['b'] + 30 + V['b'] + 15
            w0 = np.arcsin(np.clip((V['a'] + 8) / Rx, 0, 0.9))
            we = np.radians(rng.uniform(95, 120) if vi == 0 else rng.uniform(70, 95))
            om, drop = np.linspace(w0, we, 22), rng.uniform(60, 110)
            pts = np.stack([V['C'][0] + sd * Rx * np.sin(om), V['C'][1] + drop * ((om - w0) / (we - w0)) ** 0.9,
                            V['C'][2] + dc - Rz * np.cos(om)], 1)
            draw_tube(cv, pts, 4.5 * p['s'], 0.8, p['rho_post'] * 0.7, fac=0.75)

# ----------------------------------------------------------------------------- acquisition
def make_acq(rng, view, p):
    a = dict(view=view, mod='CR' if rng.random() < 0.35 else 'DX')
    E = rng.uniform(35, 55) if view == 'AP' else rng.uniform(42, 60)
    a['E'] = float(np.clip(E + 4 * (p['hb'] - 0.5), 35, 60))
    ps = float(rng.choice([0.1, 0.125, 0.139, 0.143, 0.148, 0.15, 0.16, 0.175, 0.2])) if rng.random() < .7 \
        else round(float(rng.uniform(0.1, 0.2)), 4)
    a.update(ps=ps, rows=int(np.clip(rng.uniform(300, 430) / ps, 1700, 3500)),
             cols=int(np.clip(rng.uniform(240, 430) / ps, 1400, 3000)), k=max(1, int(round(0.33 / ps))),
             sid=rng.uniform(1000, 1300))
    a['sod'] = a['sid'] - ((110 + p['fs'] + 25 * p['hb']) if view == 'AP' else (p['Wb'] + 40))
    a['M'], a['grid'] = a['sid'] / a['sod'], rng.random() < 0.75
    a.update(kscat=rng.uniform(0.15, 0.45) if a['grid'] else rng.uniform(0.8, 2.0), sscat=rng.uniform(20, 60),
             q=float(np.exp(rng.uniform(np.log(80), np.log(1200)))) * (ps / 0.1) ** 2, bh=rng.uniform(0, 0.03),
             fspot=rng.uniform(0.12, 0.35), heel=rng.uniform(-0.12, 0.12),
             chain=rng.choice(['linear', 'gamma', 'unsharp', 'histeq'], p=[.22, .25, .33, .2]),
             mono1=rng.random() < 0.3, bits=int(rng.choice([10, 12, 14, 16], p=[.15, .4, .25, .2])),
             flip=view == 'LAT' and rng.random() < 0.5,
             coll=[rng.uniform(0, 45) if rng.random() < 0.7 else -5 for _ in range(4)],
             collrot=np.radians(rng.normal(0, 1.2)), collmask=rng.choice(['none', 'white', 'black'], p=[.6, .2, .2]))
    return a

def upsample(x, k, rows, cols):
    if k > 1:
        x = ndi.zoom(x, k, order=1, grid_mode=True, mode='nearest')
    return x[:rows, :cols]

def render_view(p, a, rng):
    view, ps, k, M, rows, cols = a['view'], a['ps'], a['k'], a['M'], a['rows'], a['cols']
    H, W = -(-rows // k), -(-cols // k)
    w = ps * k / M
    v3 = p['verts']
    if view == 'AP':
        uc, vc = v3[4]['C'][0] + rng.normal(0, 12), rng.uniform(-10, 28)
    else:
        uc, vc = v3[4]['C'][2] - v3[4]['b'] * 0.6 + rng.normal(0, 15), rng.uniform(-10, 28)
    cv = Canvas(view, H, W, w, uc, vc, a['sod'])
    su = np.array([cv.proj(v['C'][None])[0][0] for v in v3])
    win = cv.win((su.min() + su.max()) / 2, vc, (su.max() - su.min()) / 2 + 70, 1e4)
    if win is not None:
        texture(cv, rng, p, win[0])
    Wb, Tin = body_outline(cv, p)
    for V in v3:
        draw_vertebra(cv, V, p)
    draw_pelvis(cv, p, rng)
    draw_soft(cv, p, rng, Wb, Tin)
    # bowel content mottling: swap a little fat <-> soft tissue
    cs = max(1, int(4.0 / w))
    mot = ndi.zoom(ndi.gaussian_filter(rng.standard_normal((H // cs + 2, W // cs + 2)).astype(np.float32), 2),
                   cs, order=1)[:H, :W]
    cv.fat += 6 * mot * (Tin > 0)
    T, gas = cv.T, np.minimum(cv.gas, 0.85 * cv.T)
    fat = np.minimum(np.clip(cv.fat, 0, None), np.clip(T - gas - cv.bone, 0, None))
    soft = np.clip(T - gas - fat - cv.bone, 0, None)
    E = a['E']
    A = mu('soft', E) * soft + mu('fat', E) * fat + mu('bone', E) * cv.bone + mu('metal', E) * cv.metal
    A = A / (1 + a['bh'] * A)
    A = ndi.gaussian_filter(A, a['fspot'] / w)          # focal-spot / geometric unsharpness
    # collimation (rotated rectangle with penumbra)
    Uc, Vc, cr, sr = cv.U - uc, cv.V - vc, np.cos(a['collrot']), np.sin(a['collrot'])
    ur, vr = Uc * cr + Vc * sr, -Uc * sr + Vc * cr
    (hw, hh), (ml, mr, mt, mb) = (W * w / 2, H * w / 2), [m / M for m in a['coll']]
    cm = (np.clip((ur + hw - ml) / 2 + .5, 0, 1) * np.clip((hw - mr - ur) / 2 + .5, 0, 1) *      # 2 mm penumbra
          np.clip((vr + hh - mt) / 2 + .5, 0, 1) * np.clip((hh - mb - vr) / 2 + .5, 0, 1)).astype(np.float32)
    heel = (1 + a['heel'] * (cv.V - vc) / (H * w)).astype(np.float32)
    P = np.exp(-A) * heel * (cm + 0.01 * (1 - cm))
    # scatter: blurred, thickness-weighted primary on a coarse grid
    f = max(1, int(4.0 / w))
    Hc, Wc, src = -(-H // f), -(-W // f), np.zeros((-(-H // f) * f, -(-W // f) * f), np.float32)
    src[:H, :W] = P * (T / 200.0) * cm
    src = src.reshape(Hc, f, Wc, f).mean((1, 3))
    S = ndi.gaussian_filter(src, a['sscat'] / (f * w), mode='nearest') * a['kscat']
    S = ndi.zoom(S, f, order=1, grid_mode=True, mode='nearest')[:H, :W]
    Q = P + S
    # AEC: mean signal in a chamber over the spine
    aw = cv.win(su[4], v3[4]['C'][1], 25, 35)
    N0 = a['q'] / max(float(Q[aw[0]].mean()) if aw else float(Q.mean()), 1e-12)
    Q = Q * N0
    if a['mod'] == 'CR':
        Q = ndi.gaussian_filter(Q, 0.5 / w * 0.2 + 0.3)
    Lclean = np.log(N0) - np.log(np.maximum(Q, 1e-3))
    if a['flip']:
        Q, Lclean, cm = [np.ascontiguousarray(x[:, ::-1]) for x in (Q, Lclean, cm)]
    Qf = upsample(Q, k, rows, cols)
    n = rng.standard_normal(Qf.shape, dtype=np.float32)
    Qf = Qf + np.sqrt(Qf + rng.uniform(0.5, 4)) * n
    if a['grid'] and rng.random() < 0.3:
        Qf *= (1 + rng.uniform(.005, .015) * np.sin(2 * np.pi * np.arange(cols) / rng.uniform(2.3, 7)))[None, :]
    L = (np.log(N0) - np.log(np.maximum(Qf, 0.5))).astype(np.float32)
    del Qf, n
    # lead L/R marker (before processing -> saturates)
    mk = 'L' if view == 'LAT' else rng.choice(['L', 'R'])
    mask = glyph(mk, int(rng.uniform(9, 15) / ps), box=True)
    side = (mk == 'L') if view == 'AP' else rng.random() < .5
    j0 = int(cols * rng.uniform(0.62, 0.8)) if side else int(cols * rng.uniform(0.08, 0.25))
    i0 = int(rows * rng.uniform(0.06, 0.3))
    paste(L, mask * 6.0, i0, j0, 'add')
    cmf = upsample(cm, k, rows, cols)
    y = process(L, Lclean, cmf, a, rng, w, k, rows, cols)
    if a['collmask'] != 'none':
        y = np.where(cmf < 0.5, 1.0 if a['collmask'] == 'white' else 0.0, y)
    txt = [f"PHANTOM-D {p['sex']} {p['age']}Y", f"L-SPINE {view}", f"{a['kvp']}kV {a['mas']}mAs",
           'SYNTHETIC TEST DATA']
    tpx, corner = int(rng.uniform(3.5, 7) / ps), rng.integers(4)
    for li, t in enumerate(txt[:rng.integers(1, 5)]):
        g = glyph(t, tpx)
        ii = int(rows * 0.02) + li * int(tpx * 1.3)
        ii = ii if corner < 2 else rows - ii - g.shape[0] - 1
        jj = int(cols * 0.02) if corner % 2 == 0 else cols - g.shape[1] - int(cols * 0.02)
        paste(y, g, ii, jj, 'max')
    scale = (maxv := 2 ** a['bits'] - 1) * rng.uniform(0.8, 1.0)
    off = rng.uniform(0, maxv - scale)
    out = off + np.clip(y, 0, 1) * scale
    out = maxv - out if a['mono1'] else out
    return np.clip(np.rint(out), 0, maxv).astype(np.uint16)

def process(L, Lclean, cm, a, rng, w, k, rows, cols):
    step = max(1, int(min(rows, cols) / 400))
    ms = cm[::step, ::step]
    pick = lambda Ls: Ls[(ms > 0.9) & (Ls > 1.0)] if ((ms > 0.9) & (Ls > 1.0)).sum() >= 100 else Ls.ravel()
    sel = pick(L[::step, ::step])
    chain = a['chain']
    if chain == 'unsharp':
        Lb = upsample(ndi.gaussian_filter(Lclean, rng.uniform(2, 12) / w, mode='nearest'), k, rows, cols)
        L = L + rng.uniform(0.5, 2.5) * (L - Lb)
        if rng.random() < 0.5:
            Lbb = upsample(ndi.gaussian_filter(Lclean, rng.uniform(30, 60) / w, mode='nearest'), k, rows, cols)
            L = L - rng.uniform(0.3, 0.7) * (Lbb - np.median(sel))
        sel = pick(L[::step, ::step])
    lo, hi = np.percentile(sel, [rng.uniform(0.2, 3), rng.uniform(97, 99.9)])
    y = (L - lo) / max(hi - lo, 1e-3)
    if chain == 'gamma' or (chain == 'unsharp' and rng.random() < 0.5):
        if rng.random() < 0.5:
            y = np.clip(y, 0, 1) ** rng.uniform(0.6, 1.6)
        else:
            c, s = rng.uniform(0.4, 0.6), rng.uniform(0.12, 0.25)
            f0, f1 = 1 / (1 + np.exp(c / s)), 1 / (1 + np.exp(-(1 - c) / s))
            y = (1 / (1 + np.exp(-(y - c) / s)) - f0) / (f1 - f0)
    elif chain == 'histeq':
        qs = np.percentile(sel, np.linspace(0, 100, 257))
        beta = rng.uniform(0.4, 0.9)
        y = beta * np.interp(L, qs, np.linspace(0, 1, 257)) + (1 - beta) * y
    return np.clip(y, 0, 1).astype(np.float32)

_FONTS = {}

def glyph(t, px, box=False):
    f = _FONTS.get(px) or _FONTS.setdefault(px, ImageFont.load_default(size=px))
    l, tp, r, b = f.getbbox(t, stroke_width=max(1, px // 12))
    pad = px // 4 if box else 2
    im = Image.new('L', (r - l + 2 * pad, b - tp + 2 * pad), 0)
    d = ImageDraw.Draw(im)
    d.text((pad - l, pad - tp), t, fill=255, font=f, stroke_width=max(1, px // 12), stroke_fill=255)
    if box:
        d.rectangle([0, 0, im.size[0] - 1, im.size[1] - 1], outline=255, width=max(2, px // 10))
    return np.asarray(im, np.float32) / 255.0

def paste(img, g, i, j, mode):
    i, j = max(0, i), max(0, j)
    h, w = min(g.shape[0], img.shape[0] - i), min(g.shape[1], img.shape[1] - j)
    if h <= 0 or w <= 0:
        return
    if mode == 'add':
        img[i:i + h, j:j + w] += g[:h, :w]
    else:
        np.maximum(img[i:i + h, j:j + w], g[:h, :w], out=img[i:i + h, j:j + w])

# ----------------------------------------------------------------------------- DICOM
IMPL_UID = '2.25.171852446093114417640918340757316372529'

def write_dicom(path, img, p, a, ids, rng, vi):
    sop_cls = '1.2.840.10008.5.1.4.1.1.1' if a['mod'] == 'CR' else '1.2.840.10008.5.1.4.1.1.1.1'
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID, fm.MediaStorageSOPInstanceUID = sop_cls, ids['sop'][vi]
    fm.TransferSyntaxUID, fm.ImplementationClassUID = ExplicitVRLittleEndian, IMPL_UID
    fm.ImplementationVersionName = 'PHANTOM_D_1'
    ds = FileDataset(path, {}, file_meta=fm, preamble=b'\0' * 128)
    pos = 'FFS' if rng.random() < .3 else 'HFS'
    grid = ['FOCUSED', 'RECIPROCATING'][int(rng.random() < .3)] if a['grid'] else 'NONE'
    lo, hi = int(img.min()), int(img.max())
    att = dict(SpecificCharacterSet='ISO_IR 100', ImageType=['ORIGINAL', 'PRIMARY'], SOPClassUID=sop_cls,
               SOPInstanceUID=ids['sop'][vi], AccessionNumber=ids['acc'], Modality=a['mod'],
               Manufacturer='PHANTOM_D', InstitutionName='SYNTHETIC', StudyDescription='XR LUMBAR SPINE 2 VIEWS',
               SeriesDescription=f"L-SPINE {a['view']}", PatientName=ids['name'], PatientID=ids['pid'],
               PatientBirthDate=ids['dob'], PatientSex=p['sex'], PatientAge=f"{p['age']:03d}Y",
               BodyPartExamined='LSPINE', ViewPosition=a['view'], PatientPosition=pos, KVP=a['kvp'],
               ExposureInuAs=int(a['mas'] * 1000), DistanceSourceToDetector=round(a['sid'], 1),
               DistanceSourceToPatient=round(a['sod'] - 100, 1), Grid=grid, StudyInstanceUID=ids['study'],
               SeriesInstanceUID=ids['series'][vi], StudyID=ids['sid'], SeriesNumber=vi + 1, InstanceNumber=1,
               PatientOrientation=['L', 'F'] if a['view'] == 'AP' else (['P', 'F'] if a['flip'] else ['A', 'F']),
               SamplesPerPixel=1, PhotometricInterpretation='MONOCHROME1' if a['mono1'] else 'MONOCHROME2',
               Rows=img.shape[0], Columns=img.shape[1], BitsAllocated=16, BitsStored=a['bits'],
               HighBit=a['bits'] - 1, PixelRepresentation=0, WindowCenter=f'{(lo + hi) / 2:.1f}',
               WindowWidth=f'{max(hi - lo, 1)}', RescaleIntercept='0', RescaleSlope='1', RescaleType='US',
               PixelIntensityRelationship='LOG', PixelIntensityRelationshipSign=-1 if a['mono1'] else 1,
               BurnedInAnnotation='YES', LossyImageCompression='00')
    for k in ('Study', 'Series', 'Content'):
        att[k + 'Date'], att[k + 'Time'] = ids['date'], ids['time']
    for k, v in att.items():
        setattr(ds, k, v)
    ps, r = a['ps'], rng.random()
    if a['mod'] == 'DX' or r < 0.5:
        ds.ImagerPixelSpacing = [f'{ps:.4g}', f'{ps:.4g}']
    if a['mod'] == 'CR' or r < 0.55:
        ds.PixelSpacing = [f'{ps:.4g}', f'{ps:.4g}']
    elif r < 0.75:
        ds.PixelSpacing = [f'{ps / a["M"]:.5g}', f'{ps / a["M"]:.5g}']
        ds.EstimatedRadiographicMagnificationFactor = f'{a["M"]:.4f}'
        ds.PixelSpacingCalibrationType = 'GEOMETRY'
    if a['mod'] == 'DX':
        ds.PresentationIntentType = 'FOR PRESENTATION'
        ds.DetectorType = 'SCINTILLATOR' if rng.random() < .8 else 'DIRECT'
    ds.add_new(0x7FE00010, 'OW', img.astype('<u2').tobytes())
    ds.save_as(path, enforce_file_format=True)

def make_study(args):
    out, idx, seed = args
    rng = np.random.default_rng([seed, idx, 0xD])
    p = make_patient(rng)
    d0 = datetime.date(2019, 1, 1) + datetime.timedelta(days=int(rng.integers(0, 2000)))
    ids = dict(study=uid(rng), series=[uid(rng), uid(rng)], sop=[uid(rng), uid(rng)],
               pid=f'PHD{seed % 10000:04d}{idx:05d}', name=f'PHANTOM^D{idx + 1:04d}',
               date=d0.strftime('%Y%m%d'), time=f'{rng.integers(7, 19):02d}{rng.integers(60):02d}00',
               acc=f'D{seed % 1000:03d}{idx:06d}', sid=f'{idx + 1}',
               dob=f'{d0.year - p["age"]}{rng.integers(1, 13):02d}{rng.integers(1, 29):02d}')
    os.makedirs(os.path.join(out, 'dicom'), exist_ok=True)
    label = 0 if p['T'] >= -1.0 else (1 if p['T'] > -2.5 else 2)
    rows = []
    for vi, view in enumerate(('AP', 'LAT')):
        a = make_acq(rng, view, p)
        a['kvp'] = int(np.clip(round(2.0 * a['E'] + rng.normal(0, 3)), 60, 125))
        a['mas'] = round(float(a['q'] / (a['ps'] / 0.1) ** 2 / 40 * (3 if view == 'LAT' else 1)
                               * (1 + p['hb'])), 1)
        img = render_view(p, a, rng)
        rel = f'dicom/{ids["pid"]}_{view}.dcm'
        write_dicom(os.path.join(out, rel), img, p, a, ids, rng, vi)
        rows.append([rel, label, f'{p["T"]:.2f}', f'{1.047 + 0.11 * p["T"]:.4f}', ids['pid'], view])
    return idx, rows

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    for k, t in (('out', str), ('n', int), ('seed', int)):
        ap.add_argument(k, type=t)
    ap.add_argument('--workers', type=int, default=1)
    g = ap.parse_args()
    os.makedirs(g.out, exist_ok=True)
    jobs, t0, res = [(g.out, i, g.seed) for i in range(g.n)], time.time(), {}
    if g.workers > 1:
        import multiprocessing as mp
        with mp.Pool(g.workers) as pool:
            res = dict(pool.imap_unordered(make_study, jobs))
    else:
        for j in jobs:
            i, res[j[1]] = make_study(j)
            if (i + 1) % 20 == 0:
                print(f'{i + 1}/{g.n} studies, {(time.time() - t0) / (i + 1):.2f} s/study', flush=True)
    with open(os.path.join(g.out, 'manifest.csv'), 'w', newline='') as fh:
        wr = csv.writer(fh)
        wr.writerow(['path', 'label', 't_score', 'bmd', 'patient_id', 'view'])
        for i in sorted(res):
            wr.writerows(res[i])
    dt = time.time() - t0
    print(f'done: {g.n} studies in {dt:.1f} s ({dt / max(g.n, 1):.2f} s/study)')

if __name__ == '__main__':
    main()
