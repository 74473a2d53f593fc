"""Phantom A: a lumbar radiograph phantom drawn independently of `osteoscreen synth` (numpy +
pydicom), other anatomy, no equalisation, more noise, 30 % MONOCHROME1. Writes DX Part 10
files and a plain manifest (path,label,t_score,bmd,patient_id,view).

usage: python phantom_a.py OUT_DIR N_STUDIES SEED"""
import os, sys, numpy as np, pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

out, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(seed)
os.makedirs(out, exist_ok=True)
rows = ["path,label,t_score,bmd,patient_id,view"]

def rrect(X, Y, cx, cy, hw, hh, r):
    dx = np.maximum(np.abs(X - cx) - (hw - r), 0); dy = np.maximum(np.abs(Y - cy) - (hh - r), 0)
    return np.hypot(dx, dy) <= r

def chord_x(X, cx, hw):
    u = np.clip(1 - ((X - cx) / hw) ** 2, 0, None)
    return np.sqrt(u)

def render(t, view, H, W, sp):
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    X = (x - W / 2) * sp; Y = (y - H / 2) * sp  # mm
    bmd = 1.047 + 0.11 * t
    # Soft tissue: elliptical body cross-section, thickness in cm.
    half = rng.uniform(140, 190) if view == "AP" else rng.uniform(110, 150)
    depth = rng.uniform(18, 30)
    mu = 0.19 * depth * chord_x(X, rng.uniform(-10, 10), half)
    mu += 0.05 * np.exp(-((X / 60) ** 2))  # psoas-ish band
    # Bowel gas blobs.
    for _ in range(rng.integers(0, 5)):
        gx, gy, gr = rng.uniform(-120, 120), rng.uniform(-150, 150), rng.uniform(10, 35)
        mu -= 0.5 * np.clip(1 - ((X - gx) ** 2 + (Y - gy) ** 2) / gr ** 2, 0, None)
    bone = np.zeros_like(mu)
    k = 0.55 * bmd  # line integral through a body's middle, per g/cm2
    cx0 = rng.uniform(-15, 15)
    hh, gap = rng.uniform(12, 16), rng.uniform(4, 6)
    hw = rng.uniform(20, 26) if view == "AP" else rng.uniform(16, 20)
    top = -2.5 * (2 * hh + gap)
    for i in range(5):
        cy = top + i * (2 * hh + gap) + rng.uniform(-2, 2)
        cx = cx0 + 6 * np.sin(i / 4 * np.pi) * rng.uniform(-1, 1)
        body = rrect(X, Y, cx, cy, hw, hh, 4)
        bone += body * k * (0.6 + 0.4 * chord_x(X, cx, hw))
        rim = body & ~rrect(X, Y, cx, cy, hw - 2, hh - 2, 3)
        bone += rim * 0.35 * bmd
        if view == "AP":
            for s in (-1, 1):  # pedicles and transverse processes
                ped = ((X - cx - s * hw * 0.6) / 5) ** 2 + ((Y - cy + hh * 0.4) / 7) ** 2 <= 1
                bone += ped * 0.5 * bmd
                tp = rrect(X, Y, cx + s * (hw + 18), cy - hh * 0.3, 16, 3, 2)
                bone += tp * 0.35 * bmd
            sp_ = rrect(X, Y, cx, cy + 2, 3, hh * 0.8, 2)
            bone += sp_ * 0.4 * bmd
        else:
            post = rrect(X, Y, cx + hw + 22, cy, 14, hh * 0.7, 4)
            bone += post * 0.45 * bmd
    # Iliac wings (AP) / sacrum.
    iy = top + 5 * (2 * hh + gap) + 10
    for s in ((-1, 1) if view == "AP" else (0,)):
        wing = ((X - s * 90) / 85) ** 2 + ((Y - iy - 60) / 70) ** 2 <= 1
        bone += wing * 0.45 * bmd
    att = mu + bone
    I0 = rng.uniform(2e3, 3e4)
    scatter = rng.uniform(0.05, 0.35)
    prim = I0 * np.exp(-att)
    I = prim + scatter * prim.mean()
    I *= 1 + rng.uniform(-0.15, 0.15) * (y / H - 0.5)
    I = rng.poisson(np.clip(I, 1, None)).astype(np.float32)
    img = -np.log(np.clip(I, 1, None) / I0)
    # Collimation: bright frame.
    m = int(rng.uniform(0.02, 0.08) * W)
    lo, hi = np.percentile(img[m:-m, m:-m], [1, 99.5])
    bits = int(rng.choice([12, 14, 16]))
    top_v = 2 ** bits - 1
    v = np.clip((img - lo) / (hi - lo), 0, 1) * top_v * 0.9
    v[:, :m] = v[:, -m:] = top_v * 0.95
    mono1 = rng.random() < 0.3
    if mono1:
        v = top_v - v
    return v.astype(np.uint16), bits, mono1

for i in range(n):
    t = float(rng.uniform(-4.0, 1.5))
    label = 0 if t >= -1.0 else (1 if t > -2.5 else 2)
    study = generate_uid()
    age = int(np.clip(55 - 6 * t + rng.normal(0, 6), 35, 90))
    for view in ("AP", "LAT"):
        H = int(rng.uniform(1700, 2600)); W = int(H * rng.uniform(0.72, 0.85))
        sp = float(rng.uniform(0.14, 0.2) * 2000 / H * 1.0)
        px, bits, mono1 = render(t, view, H, W, sp * 1.0)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = study; ds.SeriesInstanceUID = generate_uid()
        ds.Modality = "DX"; ds.BodyPartExamined = "LSPINE"; ds.ViewPosition = view
        ds.PatientID = f"PH{i}"; ds.PatientName = "Phantom^X"; ds.PatientAge = f"{age:03d}Y"
        ds.PatientSex = "F"; ds.PatientWeight = "65"
        ds.Rows, ds.Columns = px.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME1" if mono1 else "MONOCHROME2"
        ds.BitsAllocated = 16; ds.BitsStored = bits; ds.HighBit = bits - 1; ds.PixelRepresentation = 0
        ds.PixelSpacing = [f"{sp:.4f}", f"{sp:.4f}"]
        ds.ImagerPixelSpacing = ds.PixelSpacing
        ds.PixelData = px.tobytes()
        name = f"ph{i:04d}_{view.lower()}.dcm"
        ds.save_as(os.path.join(out, name), enforce_file_format=True)
        rows.append(f"{name},{label},{t:.2f},{1.047 + 0.11 * t:.3f},PH{i},{view}")
open(os.path.join(out, "manifest.csv"), "w").write("\n".join(rows) + "\n")
print("wrote", n, "studies to", out)
