#!/usr/bin/env python3
"""How much class accuracy a T-score reading of a given quality allows (BENCHMARKS.md,
forty-third session). Separates rank from scale: a reader can be wrong in scale (fixed by
a calibration) or in rank (fixed by nothing after the fact).

  accuracy-ceiling.py simulate
      T drawn as the phantoms draw it (classes balanced, T uniform within each: normal
      -1..1.5, osteopenia -2.5..-1, osteoporosis -4.5..-2.5), read with Gaussian error of
      several sizes: the Pearson r and the WHO-class accuracy of each.
  accuracy-ceiling.py PRED.csv [PRED.csv ...]
      `osteoscreen eval --out` predictions, one model or several averaged per study
      (probabilities and T): accuracy as given, r, and the best accuracy any affine map of
      the estimated T reaches on the same studies -- an oracle, since it uses the truth:
      the most a perfect calibration could give this reading.

Needs numpy (var/phantom-venv has it).
"""
import csv
import sys

import numpy as np


def who(t):
    return np.where(t >= -1.0, 0, np.where(t <= -2.5, 2, 1))


def simulate():
    rng = np.random.default_rng(0)
    n = 60000
    c = np.arange(n) % 3
    lo, hi = np.array([-1.0, -2.5, -4.5]), np.array([1.5, -1.0, -2.5])
    t = rng.uniform(lo[c], hi[c])
    for sd in (0.3, 0.5, 0.6, 0.7, 0.8, 1.0, 1.2, 1.5):
        read = t + sd * rng.standard_normal(n)
        print(f"error sd {sd:.1f} T: r {np.corrcoef(read, t)[0, 1]:.3f}, accuracy {np.mean(who(read) == c):.3f}")


def score(files):
    tabs = [{r["study"]: r for r in csv.DictReader(open(f))} for f in files]
    ids = sorted(tabs[0])
    y = np.array([int(tabs[0][i]["label"]) for i in ids])
    truth = np.array([float(tabs[0][i]["t_true"]) for i in ids])
    keys = ("p_normal", "p_osteopenia", "p_osteoporosis")
    p = np.mean([[[float(t[i][k]) for k in keys] for i in ids] for t in tabs], axis=0)
    est = np.mean([[float(t[i]["t_pred"]) for i in ids] for t in tabs], axis=0)
    # An increasing affine map of T only moves the two class cuts, so the best map is the
    # best pair of cuts between neighbouring estimates: exact, no grid.
    cuts = np.concatenate(([-np.inf], np.sort(est), [np.inf]))
    best = max(
        np.mean(np.where(est > hi, 0, np.where(est <= lo, 2, 1)) == y)
        for i, lo in enumerate(cuts)
        for hi in cuts[i:]
    )
    print(
        f"{len(files)} model(s), {len(y)} studies: accuracy {np.mean(p.argmax(1) == y):.3f}, "
        f"r {np.corrcoef(est, truth)[0, 1]:.3f}, best affine map of T {best:.3f}"
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["simulate"]:
        simulate()
    elif sys.argv[1:]:
        score(sys.argv[1:])
    else:
        sys.exit(__doc__)
