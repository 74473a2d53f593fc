"""The CT benchmark's floor (`cargo bench --bench analysis`): read every slice of the same
series with pydicom and apply its rescale to float32 HU, which is what osteoscreen's decode
does before it measures anything. One process, one thread; median of RUNS passes.

Usage: ct_decode.py DIR RUNS
Prints one JSON line: pydicom version, file count, median seconds.
"""

import glob
import json
import os
import statistics
import sys
import time

import numpy as np
import pydicom


def main():
    files = sorted(glob.glob(os.path.join(sys.argv[1], "**", "*.dcm"), recursive=True))
    times = []
    for _ in range(int(sys.argv[2])):
        start = time.perf_counter()
        for f in files:
            ds = pydicom.dcmread(f)
            hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
            assert hu.shape == (ds.Rows, ds.Columns)
        times.append(time.perf_counter() - start)
    print(json.dumps({"pydicom": pydicom.__version__, "files": len(files),
                      "median_s": statistics.median(times)}))


if __name__ == "__main__":
    main()
