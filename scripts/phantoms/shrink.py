"""Shrink every DICOM under a folder in place by block-averaging, so that its longest side is at
most 1100 pixels (headers kept, PixelSpacing and ImagerPixelSpacing scaled). Training keeps
images at 384 pixels a side, so this only saves disk: the phantoms write 2000-3500 pixel images."""
import sys, os, math, numpy as np, pydicom
root = sys.argv[1]
for dp, _, fs in os.walk(root):
    for f in fs:
        if not f.endswith('.dcm'):
            continue
        p = os.path.join(dp, f)
        ds = pydicom.dcmread(p)
        a = ds.pixel_array
        k = math.ceil(max(a.shape) / 1100)
        if k <= 1:
            continue
        h, w = a.shape[0] // k * k, a.shape[1] // k * k
        b = a[:h, :w].astype(np.float64).reshape(h // k, k, w // k, k).mean(axis=(1, 3))
        b = np.round(b).astype(a.dtype)
        ds.PixelData = b.tobytes()
        ds.Rows, ds.Columns = b.shape
        for kw in ('PixelSpacing', 'ImagerPixelSpacing'):
            if kw in ds:
                ds[kw].value = [round(float(v) * k, 6) for v in ds[kw].value]  # DS holds 16 characters
        ds.save_as(p)
