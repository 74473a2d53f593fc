#!/usr/bin/env python3
"""ct_phantom_e.py - independent synthetic axial abdominal CT phantom ("generator E").

Writes ONE CT series (one DICOM Part 10 file per slice, CT Image Storage, Explicit VR
Little Endian, uncompressed) plus OUTDIR/truth.json.  Anatomy is modelled in LPS patient
millimetres (x -> patient left, y -> posterior, z -> cranial) and sampled per slice with
sub-slice averaging along z, a small in-plane blur and Gaussian noise.

usage:
  ct_phantom_e.py OUTDIR --seed N [--ribs] [--no-pelvis] [--top T11|T12|L1] [--lumbar 4|5|6]
      [--slice-mm 2.5] [--pixel-mm 0.8] [--matrix 512] [--noise-hu 15] [--disc-hu 12]
      [--trab-hu HU] [--unsigned] [--contrast] [--body-width-mm MM]
  ct_phantom_e.py OUTDIR --check     # reload a written series, compare body-centre HU to truth
"""
import argparse, datetime, json, math, os, sys
import numpy as np
from scipy import ndimage
from scipy.interpolate import CubicSpline

NAMES = ['T9', 'T10', 'T11', 'T12', 'L1', 'L2', 'L3', 'L4', 'L5', 'L6']
HEIGHT = dict(T9=20.5, T10=21, T11=22, T12=23, L1=24.5, L2=25.5, L3=26.5, L4=27.5, L5=28, L6=28.5)
WIDTH = dict(T9=36, T10=38, T11=40, T12=41.5, L1=43, L2=44.5, L3=46, L4=47.5, L5=49, L6=50)
DEPTH = dict(T9=28, T10=29, T11=30, T12=31, L1=31.5, L2=32.5, L3=33, L4=34, L5=34.5, L6=35)
TPLEN = dict(T9=14, T10=13, T11=11, T12=8, L1=15, L2=21, L3=29, L4=24, L5=19, L6=17)  # L3 longest
DISC = dict(T9=8, T10=8, T11=8.3, T12=8.6, L1=9, L2=10, L3=10.5, L4=11, L5=10.5, L6=10.5)  # disc below


def smooth(t):
    t = min(max(t, 0.0), 1.0)
    return t * t * (3 - 2 * t)


class Canvas:
    """One axial image; x along columns, y along rows (both in mm)."""
    def __init__(self, x, y):
        self.x, self.y, self.px = x, y, x[1] - x[0]
        self.img = np.empty((len(y), len(x)), np.float32)
        self.X, self.Y = x[None, :], y[:, None]

    def win(self, x0, x1, y0, y1):
        j0 = max(0, int((x0 - self.x[0]) / self.px)); j1 = min(len(self.x), int((x1 - self.x[0]) / self.px) + 2)
        i0 = max(0, int((y0 - self.y[0]) / self.px)); i1 = min(len(self.y), int((y1 - self.y[0]) / self.px) + 2)
        if j0 >= j1 or i0 >= i1:
            return None
        return (slice(i0, i1), slice(j0, j1)), self.x[None, j0:j1], self.y[i0:i1, None]

    def ell(self, cx, cy, ax, ay, p=2.0):
        """(window, inside-mask, Xs, Ys) of a superellipse, or None."""
        if ax <= 0.3 or ay <= 0.3:
            return None
        w = self.win(cx - ax, cx + ax, cy - ay, cy + ay)
        if w is None:
            return None
        sl, Xs, Ys = w
        u = ((Xs - cx) / ax) ** 2 + ((Ys - cy) / ay) ** 2 if p == 2 else \
            np.abs((Xs - cx) / ax) ** p + np.abs((Ys - cy) / ay) ** p
        return sl, u <= 1, Xs, Ys

    def paint(self, e, val, clip=None, extra=None):
        if e is None:
            return
        sl, m = e[0], e[1]
        if clip is not None:
            m = m & clip[sl]
        if extra is not None:
            m = m & extra
        self.img[sl][m] = val


class SDF:
    """Union of signed-distance primitives evaluated on one slice (z fixed)."""
    def __init__(self, cv, z):
        self.cv, self.z = cv, z
        self.d = np.full(cv.img.shape, np.inf, np.float32)
        self.box = None

    def _acc(self, w, d):
        sl = w[0]
        np.minimum(self.d[sl], d, out=self.d[sl])
        b = (sl[0].start, sl[0].stop, sl[1].start, sl[1].stop)
        self.box = b if self.box is None else (min(self.box[0], b[0]), max(self.box[1], b[1]),
                                               min(self.box[2], b[2]), max(self.box[3], b[3]))

    def seg(self, A, B, r, zA, zB, hz):
        """Capsule A-B (2D, radius r) extruded +-hz about a z-centre that varies from zA to zB."""
        if self.z < min(zA, zB) - hz or self.z > max(zA, zB) + hz:
            return
        w = self.cv.win(min(A[0], B[0]) - r, max(A[0], B[0]) + r, min(A[1], B[1]) - r, max(A[1], B[1]) + r)
        if w is None:
            return
        _, Xs, Ys = w
        vx, vy = B[0] - A[0], B[1] - A[1]
        t = np.clip(((Xs - A[0]) * vx + (Ys - A[1]) * vy) / max(vx * vx + vy * vy, 1e-9), 0, 1)
        dxy = np.hypot(Xs - A[0] - t * vx, Ys - A[1] - t * vy) - r
        self._acc(w, np.maximum(dxy, np.abs(self.z - (zA + t * (zB - zA))) - hz))

    def seg3(self, A, B, r):
        """True 3D capsule between points A and B."""
        if self.z < min(A[2], B[2]) - r or self.z > max(A[2], B[2]) + r:
            return
        w = self.cv.win(min(A[0], B[0]) - r, max(A[0], B[0]) + r, min(A[1], B[1]) - r, max(A[1], B[1]) + r)
        if w is None:
            return
        _, Xs, Ys = w
        v = (B[0] - A[0], B[1] - A[1], B[2] - A[2]); dz0 = self.z - A[2]
        t = np.clip(((Xs - A[0]) * v[0] + (Ys - A[1]) * v[1] + dz0 * v[2]) / max(sum(c * c for c in v), 1e-9), 0, 1)
        d = np.sqrt((Xs - A[0] - t * v[0]) ** 2 + (Ys - A[1] - t * v[1]) ** 2 + (dz0 - t * v[2]) ** 2) - r
        self._acc(w, d)

    def paint(self, cort, inner, t=1.5, clip=None, air_above=None):
        if self.box is None:
            return
        sl = (slice(self.box[0], self.box[1]), slice(self.box[2], self.box[3]))
        d, sub = self.d[sl], self.cv.img[sl]
        c = np.ones(d.shape, bool) if clip is None else clip[sl]
        sub[(d <= 0) & c] = cort
        sub[(d <= -t) & c] = inner
        if air_above is not None:  # gas rises anteriorly (patient supine): y below a level
            sub[(d <= -t) & c & (self.cv.y[sl[0], None] < air_above)] = -1000


class Phantom:
    def __init__(s, a, rng):
        s.a, r = a, rng
        names = NAMES[:4] + ['L%d' % (i + 1) for i in range(a.lumbar)]
        top = names.index(a.top)
        hs, ws = r.uniform(0.97, 1.05), r.uniform(0.96, 1.03)
        trab0 = a.trab_hu if a.trab_hu is not None else r.uniform(60, 220)
        s.cort = r.uniform(550, 850)
        s.a0 = a.body_width_mm / 2 if a.body_width_mm else r.uniform(150, 172)
        s.k = s.a0 / 160.0
        s.b0, s.bcx, s.bcy = r.uniform(112, 130), r.uniform(-8, 8), r.uniform(-5, 15)
        s.fat = r.uniform(12, 30); s.post = s.bcy + s.b0
        ybase = s.post - s.fat - r.uniform(78, 88)
        lord, sc_amp, sc_ph = r.uniform(5, 12), r.uniform(0, 3), r.uniform(0, 6.3)
        nl = a.lumbar
        s.v, z = [], 0.0
        for i, n in enumerate(names):
            H = HEIGHT[n] * hs
            if i >= top:
                H = min(max(H, 22.0), 30.0)
            j = i - 4
            yc = ybase - lord * math.sin(math.pi * (j + 0.5) / nl) if j >= 0 else ybase + [9, 6, 3.5, 1.5][i]
            v = dict(name=n, zt=z, zb=z - H, H=H, W=min(max(WIDTH[n] * ws, 40), 50) if i >= top else WIDTH[n] * ws,
                     D=min(max(DEPTH[n], 30), 35) if i >= top else DEPTH[n], xc=s.bcx + sc_amp * math.sin(sc_ph + 0.45 * i),
                     yc=yc, lumbar=j >= 0, tp=TPLEN[n], cw=10.5 + 0.5 * j if j >= 0 else 8.5,
                     cb=8 - 0.2 * j if j >= 0 else 8.0, drawn=i >= top,
                     trab=round(trab0 + float(np.clip(r.normal(0, 4), -8, 8)), 1),
                     gap=float(np.clip(DISC[n] + r.normal(0, 0.5), 8, 12)))
            s.v.append(v); z = v['zb'] - v['gap']
        shift = round(r.uniform(-150, 80), 2) - s.v[top]['zt']
        for v in s.v:
            v['zt'] = round(v['zt'] + shift, 2); v['zb'] = round(v['zb'] + shift, 2)
        last = s.v[-1]
        s.z_s1 = last['zb'] - last['gap']
        s.s1 = dict(W=50 * ws, D=34.0, xc=last['xc'], yc=ybase + 2)
        s.pelvis, s.top = a.pelvis, top
        z_hi = s.v[top]['zt'] + 0.6 * s.v[top - 1]['gap']
        z_lo = s.z_s1 - r.uniform(45, 60) if a.pelvis else last['zb'] - 0.6 * last['gap']
        n = int((z_hi - z_lo) / a.slice_mm)
        s.zs = [round(z_hi - a.slice_mm * (k + 0.5), 2) for k in range(n)]
        s.z_hi, s.z_lo = z_hi, z_hi - n * a.slice_mm
        s.zcr = s.v[-2]['zb'] + r.uniform(-4, 8)              # iliac crest
        kn = sorted([((v['zt'] + v['zb']) / 2, v['xc'], v['yc'], v['W'], v['D'], v['cw'], v['cb']) for v in s.v]
                    + [(s.z_s1 - 12, s.s1['xc'], s.s1['yc'], s.s1['W'], s.s1['D'], 10.0, 5.0)])
        s.knots = np.array(kn).T
        g = {v['name']: v for v in s.v}; s.g = g
        lz = lambda n: (g[n]['zt'] + g[n]['zb']) / 2
        s.trab_post = trab0 * 1.2 + 60
        c = a.contrast
        s.hu = dict(liver=r.uniform(100, 120) if c else r.uniform(52, 62), spleen=115 if c else 47,
                    aorta=r.uniform(250, 300) if c else 42, ivc=r.uniform(200, 240) if c else 40,
                    kid=180 if c else 32, med=100 if c else 32, muscle=r.uniform(45, 55))
        s.kidneys = [(1, lz('L1') - 8 + r.uniform(-5, 5)), (-1, lz('L1') - 22 + r.uniform(-5, 5))]
        s.liver = (-55 * s.k + s.bcx, s.bcy - 5, g['L1']['zt'] + 25, 95 * s.k, 85, 110)
        s.spleen = (85 * s.k + s.bcx, g['T12']['yc'] + 5, g['T12']['zt'] - 5, 28, 45, 60)
        s.stomach = (50 * s.k + s.bcx, s.bcy - 0.4 * s.b0, g['T12']['zt'] + 10, 50 * s.k, 35, 55, r.uniform(0.2, 0.5))
        s.bif, s.conf = lz(s.v[-2]['name']), s.v[-1]['zt']
        s.lung_bot = g['L1']['zt'] - r.uniform(0, 10)
        ac, bc = (s.a0 - s.fat - 10) * 0.75, s.b0 - s.fat - 10
        s.bowel = []
        for _ in range(45):
            s.bowel.append((s.bcx + r.uniform(-ac, ac), r.uniform(s.bcy - 0.85 * bc, ybase - 25), r.uniform(z_lo, z_hi),
                            r.uniform(12, 28), r.uniform(10, 22), r.uniform(15, 45), r.uniform(10, 35),
                            r.uniform(0.2, 0.9) if r.random() < 0.35 else 0.0))
        s.colon = (s.bcx - 0.72 * ac / 0.75, s.bcx + 0.72 * ac / 0.75, s.bcy - 0.1 * s.b0, s.bcy - 0.55 * bc, lz('L2') + 5)
        s.table = r.random() < 0.7
        s.ribs = []
        if a.ribs:
            A, B = s.a0 - s.fat - 12, s.b0 - s.fat - 12
            for k, frac, rad in ((9, 1.0, 4.5), (10, 0.85, 4.5), (11, 0.5, 4.0), (12, 0.32, 3.5)):
                v = g['T%d' % k]
                yk = v['yc'] + v['D'] / 2 + v['cb'] + 1
                for sg in (-1, 1):
                    xc = v['xc']
                    pts2 = np.array([(xc + sg * (v['W'] / 2 - 3), v['yc'] + v['D'] / 2 - 7),
                                     (xc + sg * (v['cw'] + 22), yk + 8), (xc + sg * 62 * s.k, yk + 22),
                                     (s.bcx + sg * A * 0.88, s.bcy + 0.55 * B), (s.bcx + sg * A, s.bcy),
                                     (s.bcx + sg * 0.8 * A, s.bcy - 0.65 * B), (s.bcx + sg * 0.35 * A, s.bcy - 0.95 * B)])
                    cl = np.r_[0, np.cumsum(np.hypot(*np.diff(pts2, axis=0).T))]
                    sp = CubicSpline(cl, pts2, bc_type='natural')
                    tt = np.arange(0, cl[-1] * frac, 3.0)
                    xy = sp(tt)
                    zz = v['zt'] - 4 - 0.28 * tt
                    rr = rad - 1.0 * tt / tt[-1]
                    s.ribs.append((np.c_[xy, zz], rr))
        s.t = np.linspace(0, 1, 70)

    def spine_at(s, z):
        k = s.knots
        return [float(np.interp(z, k[0], k[i])) for i in range(1, 7)]

    def render(s, z):
        cv, a, hu = s.cv, s.a, s.hu
        img, X, Y = cv.img, cv.X, cv.Y
        img.fill(-1000.0)
        xc, yc, W, D, cw, cb = s.spine_at(z)
        if s.table:
            yt = s.post + 3 - 0.0003 * (X - s.bcx) ** 2
            for y0, y1, v in ((0, 3, 150), (3, 28, -950), (28, 31, 150)):
                img[(Y >= yt + y0) & (Y < yt + y1) & (np.abs(X) < 230)] = v
        dp = s.zcr - z if s.pelvis else -1
        ab = s.a0 + 14 * smooth(dp / 60.0)
        Yb = (Y - s.bcy) / s.b0
        pw = np.where(Yb > 0, 3.0, 2.1)
        rb = (np.abs((X - s.bcx) / ab) ** pw + np.abs(Yb) ** pw) ** (1 / pw)
        img[rb <= 1] = -100
        r1 = 1 - s.fat / s.b0; r2 = r1 - 10 / s.b0
        wall, cav = rb <= r1, rb <= r2
        img[wall] = hu['muscle']; img[cav] = -95
        # --- bowel loops and colon (gas rises anteriorly) ---
        for bx, by, bz, rx, ry, rz, v, airf in s.bowel:
            dz = (z - bz) / rz
            if abs(dz) >= 1:
                continue
            f = math.sqrt(1 - dz * dz)
            cv.paint(cv.ell(bx, by, rx * f, ry * f), 40, cav)
            e = cv.ell(bx, by, rx * f - 3, ry * f - 3)
            cv.paint(e, v, cav)
            if e is not None and airf > 0:
                cv.paint(e, -1000, cav, e[3] < by - ry * f * (1 - 2 * airf))
        xa, xd, ycol, ytr, ztr = s.colon
        col = SDF(cv, z)
        col.seg3((xa, ycol, s.zcr - 20), (xa, ycol, ztr), 22)
        col.seg3((xd, ycol, s.zcr - 30), (xd, ycol, s.g['T12']['zt']), 21)
        col.seg3((xa, ytr, ztr), (xd, ytr, ztr), 20)
        col.paint(40, 25, 3, cav, air_above=min(ycol, ytr) + 2)
        # --- solid organs ---
        def ellipsoid(o, v, clip=cav, p=2.0):
            cx, cy, cz, rx, ry, rz = o[:6]
            dz = (z - cz) / rz
            if abs(dz) < 1:
                f = math.sqrt(1 - dz * dz)
                e = cv.ell(cx, cy, rx * f, ry * f, p); cv.paint(e, v, clip)
                return e, f
            return None, 0
        ellipsoid(s.liver, hu['liver'], p=2.4)
        ellipsoid(s.spleen, hu['spleen'])
        e, f = ellipsoid(s.stomach, 15)
        if e is not None:
            cv.paint(e, -1000, cav, e[3] < s.stomach[1] - s.stomach[4] * f * (1 - 2 * s.stomach[6]))
        for sg, kz in s.kidneys:
            kx = xc + sg * (65 * s.k + 0.15 * (kz - z)); ky = yc + 10 - 0.1 * (kz - z)
            e, f = ellipsoid((kx, ky, kz, 26, 22, 52), hu['kid'], wall)
            if e is not None:
                cv.paint(cv.ell(kx, ky, 26 * f - 6, 22 * f - 6), hu['med'], wall)
                cv.paint(cv.ell(kx - sg * 12, ky - 6, 10 * f, 8 * f), -80, wall)
        # --- vessels ---
        ya = yc - D / 2 - 13
        if z > s.bif:
            cv.paint(cv.ell(xc + 14, ya, 10.5, 10.5), hu['aorta'])
        else:
            for sg in (-1, 1):
                cv.paint(cv.ell(xc + 8 * sg + sg * 0.45 * (s.bif - z), ya + 0.1 * (s.bif - z), 6.5, 6.5), hu['aorta'])
        if z > s.conf:
            cv.paint(cv.ell(xc - 22, yc - D / 2 - 9, 13, 9), hu['ivc'])
        else:
            for sg in (-1, 1):
                cv.paint(cv.ell(xc - 6 + sg * 10 + sg * 0.45 * (s.conf - z), yc - D / 2 - 4, 7.5, 6.5), hu['ivc'])
        # --- muscles ---
        m = hu['muscle']; ztop_ps = s.g['T12']['zt'] - 10; zl = s.v[-1]['zb']
        if z < ztop_ps:
            rp = 4 + 21 * smooth((ztop_ps - z) / (ztop_ps - zl)); dd = max(0.0, zl - z)
            for sg in (-1, 1):
                cv.paint(cv.ell(xc + sg * (W / 2 + 0.85 * rp + 0.4 * dd), yc + 2 - 0.3 * dd, rp, 0.8 * rp), m)
        yk = yc + D / 2 + cb + 1
        for sg in (-1, 1):
            fe = 0.7 if z < s.z_s1 else 1.0
            cv.paint(cv.ell(xc + sg * 30, yk + 30, 26 * fe, 22 * fe), m, wall)
            if s.zcr < z < s.g['T12']['zb']:
                cv.paint(cv.ell(xc + sg * 58 * s.k, yk + 8, 15, 10), m, wall)
            if dp > 0:
                cv.paint(cv.ell(xc + sg * 105 * s.k, yk + 45, 35, 25), m, wall)
                cv.paint(cv.ell(xc + sg * 95 * s.k, yc - 10, 25, 18), m, wall)
        # --- lung bases (posterior costophrenic recesses) ---
        if z > s.lung_bot:
            fl = smooth((z - s.lung_bot) / 70.0) ** 0.5
            for sg in (-1, 1):
                cv.paint(cv.ell(xc + sg * 92 * s.k, yk + 6, 40 * fl, 30 * fl), -860, cav)
        # --- bones: ribs, posterior arches, pelvis, then vertebral bodies and discs ---
        rib = SDF(cv, z)
        for pts, rr in s.ribs:
            sel = np.nonzero(np.abs(pts[:, 2] - z) < 12)[0]
            for i in sel[sel < len(pts) - 1]:
                rib.seg3(pts[i], pts[i + 1], rr[i])
        rib.paint(600, 200)
        arch = SDF(cv, z)
        for v in s.v:
            if not v['drawn'] or not (v['zb'] - 30 < z < v['zt'] + 15):
                continue
            x0, zt, zb, H, c_w = v['xc'], v['zt'], v['zb'], v['H'], v['cw']
            yp = v['yc'] + v['D'] / 2; yk0 = yp + v['cb'] + 1; zm = (zt + zb) / 2
            for sg in (-1, 1):
                arch.seg((x0 + sg * (c_w + 3), yp - 4), (x0 + sg * (c_w + 4), yk0 + 3), 4.5, zt - 7.5, zt - 7.5, 6.5)
                arch.seg((x0 + sg * (c_w + 4), yk0 + 3), (x0, yk0 + v['cb'] + 5), 3.5, zm + 1, zm - 2, 0.38 * H)
                if v['lumbar']:
                    arch.seg((x0 + sg * (c_w + 4), yk0 + 1), (x0 + sg * (c_w + 4 + v['tp']), yk0 + 4),
                             4.5 if v['name'] == s.v[-1]['name'] else 3.2, zt - 0.42 * H, zt - 0.42 * H, 4.5)
                else:
                    arch.seg((x0 + sg * (c_w + 4), yk0 + 1), (x0 + sg * (c_w + 4 + 0.75 * v['tp']), yk0 + 1 + 0.65 * v['tp']),
                             4.0, zt - 0.35 * H, zt - 0.35 * H - 3, 4.0)
                arch.seg((x0 + sg * (c_w + 5), yk0 + 2), (x0 + sg * (c_w + 7), yk0 + 10), 3.8, zt + 1, zt + 1, 8)
                arch.seg((x0 + sg * (c_w + 1), yk0 + 8), (x0 + sg * (c_w + 2.5), yk0 + 15), 3.6, zb - 1, zb - 1, 8)
            ys = yk0 + v['cb'] + 4
            if v['lumbar']:
                arch.seg((x0, ys), (x0, ys + (22 if v is s.v[-1] else 28)), 3.5, zm - 1, zm - 7, 0.42 * H)
            else:
                arch.seg((x0, ys), (x0, ys + 32), 3.0, zm - 2, zm - 22, 5)
        ds = s.z_s1 - z
        if s.pelvis:
            yS = s.s1['yc'] + 0.55 * max(ds, 0); bS = 17 * (1 - max(ds, 0) / 110); aS = s.s1['W'] / 2 * (1 - max(ds, 0) / 150)
            for sg in (-1, 1):
                arch.seg((xc + sg * 18, yS + 25), (xc + sg * 21, yS + 32), 3.8, s.z_s1 + 3, s.z_s1 + 3, 8)
                if ds > 0:
                    arch.seg((xc + sg * 13, yS + bS + 2), (xc, yS + bS + 16), 3.5, z, z, 10)
        arch.paint(s.cort * 0.85, s.trab_post)
        if s.pelvis and dp > 0:
            il = SDF(cv, z)
            yref = yS if ds > 0 else yc
            t = s.t; t1 = 1 - t
            for sg in (-1, 1):
                P0 = (xc + sg * (aS + 50), yref + 20); C = (xc + sg * (108 - 0.3 * dp) * s.k, yref + 18)
                P1 = (xc + sg * (125 - 0.45 * dp) * s.k, yref - 50)
                px = t1 * t1 * P0[0] + 2 * t1 * t * C[0] + t * t * P1[0]
                py = t1 * t1 * P0[1] + 2 * t1 * t * C[1] + t * t * P1[1]
                rr = 3.2 + 7 * t1 ** 3 + 2.5 * t ** 6
                ok = np.nonzero(z <= s.zcr - 110 * (t - 0.45) ** 2)[0]
                for i in ok[ok < len(t) - 1]:
                    if i + 1 in ok:
                        il.seg((px[i], py[i]), (px[i + 1], py[i + 1]), rr[i], z, z, 1e3)
            il.paint(650, 170)
        if s.pelvis and ds >= 0:
            parts = [(xc, yS, aS, bS, 2.4)] + ([(xc + sg * (aS + 18), yS + 4, 22 * (1 - ds / 90), 15 * (1 - ds / 120), 2.2)
                                               for sg in (-1, 1)] if ds < 60 else [])
            for t, v in ((0, s.cort * 0.8), (1.5, s.trab_post * 0.7)):     # fused: all shells, then all cores
                for cx_, cy_, ax_, ay_, p_ in parts:
                    cv.paint(cv.ell(cx_, cy_, ax_ - t, ay_ - t, p_), v)
            if ds < 1.2:
                cv.paint(cv.ell(xc, yS, aS, bS, 2.4), s.cort * 0.7)
        body = next((v for v in s.v if v['drawn'] and v['zb'] <= z <= v['zt']), None)
        if body is not None:
            s.vbody(body, z)
        elif (z < s.z_hi + 20 and z > (s.z_s1 if s.pelvis else s.v[-1]['zb'] - s.v[-1]['gap'])):
            fb = 1.03
            ind = lambda Xs: np.clip(1 - ((Xs - xc) / (0.25 * W)) ** 2, 0, 1) * 3
            e = cv.ell(xc, yc, W / 2 * fb, D / 2 * fb, 2.4)
            if e is not None:
                cv.paint(e, a.disc_hu, extra=(e[3] - yc) <= D / 2 * fb - ind(e[2]))
        # --- spinal canal: epidural fat, thecal sac ---
        if z <= s.z_s1 and s.pelvis:
            cwS = 10 * (1 - ds / 120)
            yk = yS + bS + 6
            cv.paint(cv.ell(xc, yk, cwS, 5), -80); cv.paint(cv.ell(xc, yk, cwS - 2, 3), 10)
        else:
            cv.paint(cv.ell(xc, yk, cw + 1.5, cb + 1.5), -80); cv.paint(cv.ell(xc, yk, cw - 1.5, cb - 1.5), 10)
        return img

    def vbody(s, v, z):
        cv = s.cv
        u = (z - v['zb']) / v['H']; de = min(v['zt'] - z, z - v['zb'])
        w = 1 - 0.06 * math.sin(math.pi * u)                 # concave (waisted) sides
        rim = 1.8 * (1 - min(de / 3.0, 1)) ** 2               # rounded endplate rims
        ax, ay = v['W'] / 2 * w - rim, v['D'] / 2 * w - rim
        p = 2.4 if v['lumbar'] else 2.0
        e = cv.win(v['xc'] - ax, v['xc'] + ax, v['yc'] - ay, v['yc'] + ay)
        if e is None:
            return
        sl, Xs, Ys = e
        Xr, Yr = Xs - v['xc'], Ys - v['yc']
        ind = np.where(Yr > 0, 3.0 * np.clip(1 - (Xr / (0.5 * ax)) ** 2, 0, 1), 0)   # posterior concavity
        inside = lambda ax_, ay_: np.abs(Xr / ax_) ** p + np.abs(Yr / np.maximum(ay_ - ind, 0.5)) ** p <= 1
        sub = cv.img[sl]
        tc = 1.5
        sub[inside(ax, ay)] = s.cort
        if de > 1.0:
            sub[inside(ax - tc, ay - tc)] = v['trab']
            if 0.3 < u < 0.7:
                cv.paint(cv.ell(v['xc'], v['yc'] + ay - 3 - tc - 3, 2.5, 2.0), 40)


def write_series(a, rng, ph, out):
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, CTImageStorage, generate_uid, PYDICOM_IMPLEMENTATION_UID
    M, px, st = a.matrix, a.pixel_mm, a.slice_mm
    rcx, rcy = rng.uniform(-10, 10), rng.uniform(-10, 10)
    x = (rcx + (np.arange(M) - (M - 1) / 2) * px).round(4)
    y = (rcy + (np.arange(M) - (M - 1) / 2) * px).round(4)
    ph.cv = Canvas(x, y)
    ascending = bool(rng.random() < 0.5)        # instance 1 at the caudal end?
    shuffled = bool(rng.random() < 0.5)
    if a.unsigned:
        icpt, bits = float(rng.choice([-1024, -1000])), int(rng.choice([16, 12]))
    else:
        icpt, bits = 0.0, 16
    zs = ph.zs[::-1] if ascending else ph.zs
    nsub = max(1, int(math.ceil(st / 1.0)))
    offs = (np.arange(nsub) + 0.5) / nsub * st - st / 2
    sig = 0.45 / px
    f = lambda v: ('%.4f' % v).rstrip('0').rstrip('.')
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    day = datetime.date(2023, 1, 1) + datetime.timedelta(days=int(a.seed) % 700)
    date, tm = day.strftime('%Y%m%d'), '%02d%02d%02d' % (8 + a.seed % 10, a.seed % 60, 7)
    ds = Dataset()
    ds.SpecificCharacterSet = 'ISO_IR 100'
    ds.ImageType = ['ORIGINAL', 'PRIMARY', 'AXIAL']
    ds.SOPClassUID = CTImageStorage
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = tm
    ds.AccessionNumber = 'E%06d' % a.seed
    ds.Modality = 'CT'; ds.Manufacturer = 'PhantomE'; ds.InstitutionName = 'Synthetic'
    ds.ReferringPhysicianName = ''
    ds.StudyDescription = 'CT ABDOMEN (synthetic)'; ds.SeriesDescription = 'Phantom E axial %.3g mm' % st
    ds.ManufacturerModelName = 'ct_phantom_e'
    ds.PatientName = 'PHANTOM^E%d' % a.seed; ds.PatientID = 'PHE-%06d' % a.seed
    ds.PatientBirthDate = '19%02d0101' % (40 + a.seed % 50); ds.PatientSex = 'MF'[a.seed % 2]
    if a.contrast:
        ds.ContrastBolusAgent = 'IODINATED'
    ds.BodyPartExamined = 'ABDOMEN'; ds.ScanOptions = 'HELICAL MODE'
    ds.SliceThickness = f(st); ds.KVP = '120'; ds.SpacingBetweenSlices = f(st)
    ds.DataCollectionDiameter = '500'; ds.ReconstructionDiameter = f(M * px)
    ds.ConvolutionKernel = 'STANDARD'; ds.PatientPosition = 'HFS'
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
    ds.StudyID = '1'; ds.SeriesNumber = 3; ds.AcquisitionNumber = 1
    ds.ImageOrientationPatient = ['1', '0', '0', '0', '1', '0']
    ds.PositionReferenceIndicator = ''
    ds.SamplesPerPixel = 1; ds.PhotometricInterpretation = 'MONOCHROME2'
    ds.Rows = ds.Columns = M; ds.PixelSpacing = [f(px), f(px)]
    ds.BitsAllocated = 16; ds.BitsStored = bits; ds.HighBit = bits - 1
    ds.PixelRepresentation = 0 if a.unsigned else 1
    ds.WindowCenter = '40'; ds.WindowWidth = '400'
    ds.RescaleIntercept = f(icpt); ds.RescaleSlope = '1'; ds.RescaleType = 'HU'
    lo, hi = (0, 2 ** bits - 1) if a.unsigned else (-32768, 32767)
    os.makedirs(out, exist_ok=True)
    for k, z in enumerate(zs):
        acc = np.zeros((M, M), np.float32)
        for o in offs:
            acc += ph.render(z + o)
        acc /= nsub
        acc = ndimage.gaussian_filter(acc, sig) + rng.standard_normal((M, M), dtype=np.float32) * a.noise_hu
        pix = np.clip(np.rint(acc - icpt), lo, hi).astype('<u2' if a.unsigned else '<i2')
        uid = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage; meta.MediaStorageSOPInstanceUID = uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID; meta.ImplementationVersionName = 'PHANTOM_E_1'
        ds.file_meta = meta
        ds.SOPInstanceUID = uid; ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f(x[0]), f(y[0]), f(z)]; ds.SliceLocation = f(z)
        ds.add_new(0x7FE00010, 'OW', pix.tobytes())
        name = ('%08x.dcm' % int(rng.integers(0, 2 ** 32))) if shuffled else 'IM%04d.dcm' % (k + 1)
        ds.save_as(os.path.join(out, name), enforce_file_format=True)
    return dict(z_direction='increasing' if ascending else 'decreasing', rescale_intercept=icpt,
                bits_stored=bits, n_slices=len(zs), shuffled_names=shuffled)


def check(out):
    import pydicom
    tr = json.load(open(os.path.join(out, 'truth.json')))
    dss = [pydicom.dcmread(os.path.join(out, n)) for n in os.listdir(out) if n.endswith('.dcm')]
    dss.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    zs = np.array([float(d.ImagePositionPatient[2]) for d in dss])
    ok = True
    print('%s: %d slices, z %.1f..%.1f, intercept %s, bits %s' % (out, len(dss), zs[0], zs[-1],
          dss[0].RescaleIntercept, dss[0].BitsStored))
    for lv in tr['levels']:
        zm = (lv['z_top'] + lv['z_bottom']) / 2
        d = dss[int(np.argmin(abs(zs - zm)))]
        hu = d.pixel_array.astype(np.float32) * float(d.RescaleSlope) + float(d.RescaleIntercept)
        ox, oy = map(float, d.ImagePositionPatient[:2]); p = float(d.PixelSpacing[0])
        jj, ii = np.meshgrid(np.arange(d.Columns), np.arange(d.Rows))
        roi = hu[np.hypot(ox + jj * p - lv['center_x'], oy + ii * p - lv['center_y']) <= 6]
        good = abs(roi.mean() - lv['trabecular_hu']) < 8
        ok &= good
        print('  %-4s z %7.1f..%7.1f  truth %6.1f  measured %6.1f  %s' % (lv['name'], lv['z_top'], lv['z_bottom'],
              lv['trabecular_hu'], roi.mean(), 'ok' if good else 'MISMATCH'))
    return ok


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('outdir'); p.add_argument('--seed', type=int, default=0)
    p.add_argument('--ribs', action='store_true')
    p.add_argument('--pelvis', dest='pelvis', action='store_true', default=True)
    p.add_argument('--no-pelvis', dest='pelvis', action='store_false')
    p.add_argument('--top', choices=['T11', 'T12', 'L1'], default='T12')
    p.add_argument('--lumbar', type=int, choices=[4, 5, 6], default=5)
    p.add_argument('--slice-mm', type=float, default=2.5); p.add_argument('--pixel-mm', type=float, default=0.8)
    p.add_argument('--matrix', type=int, default=512); p.add_argument('--noise-hu', type=float, default=15.0)
    p.add_argument('--disc-hu', type=float, default=12.0); p.add_argument('--trab-hu', type=float)
    p.add_argument('--unsigned', action='store_true'); p.add_argument('--contrast', action='store_true')
    p.add_argument('--body-width-mm', type=float, help='lateral body width (default random 300-344)')
    p.add_argument('--check', action='store_true', help='only verify an existing OUTDIR against truth.json')
    a = p.parse_args()
    if a.check:
        sys.exit(0 if check(a.outdir) else 1)
    if not (1 <= a.slice_mm <= 5 and 0.5 <= a.pixel_mm <= 1.0 and 64 <= a.matrix <= 1024):
        p.error('slice-mm must be 1-5, pixel-mm 0.5-1.0, matrix 64-1024')
    if a.trab_hu is not None and not 40 <= a.trab_hu <= 300:
        p.error('trab-hu out of range')
    rng = np.random.default_rng(a.seed)
    ph = Phantom(a, rng)
    info = write_series(a, rng, ph, a.outdir)
    lv = [dict(name=v['name'], z_top=v['zt'], z_bottom=v['zb'], trabecular_hu=v['trab'],
               center_x=round(v['xc'], 2), center_y=round(v['yc'], 2), width_mm=round(v['W'], 2),
               depth_mm=round(v['D'], 2)) for v in ph.v if v['drawn']]
    truth = dict(levels=lv, has_ribs=bool(a.ribs), has_pelvis=bool(a.pelvis), lumbar=a.lumbar,
                 slice_mm=a.slice_mm, pixel_mm=a.pixel_mm, unsigned=bool(a.unsigned), contrast=bool(a.contrast),
                 disc_hu=a.disc_hu, top=a.top, seed=a.seed, matrix=a.matrix, noise_hu=a.noise_hu,
                 ribs_drawn=['%d%s' % (k, s) for k in (9, 10, 11, 12) for s in 'RL'] if a.ribs else [],
                 sacrum_z_top=round(ph.z_s1, 2) if a.pelvis else None,
                 iliac_crest_z=round(ph.zcr, 2) if a.pelvis else None,
                 volume_z=[round(ph.z_lo, 2), round(ph.z_hi, 2)], **info)
    with open(os.path.join(a.outdir, 'truth.json'), 'w') as fh:
        json.dump(truth, fh, indent=1)
    print('%s: %d slices, levels %s' % (a.outdir, info['n_slices'], ' '.join(v['name'] for v in lv)))


if __name__ == '__main__':
    main()
