#!/usr/bin/env python3
"""Re-encode a 12-bit lossy JPEG DICOM file (one frame, as DCMTK's `dcmcjpeg +ee` writes
it) into the legal variants DCMTK's encoder never writes, with the same coefficients, so a
decoder must give the same pixels for all of them:

  ri1, ri7, ri64   restart intervals of 1, 7 and 64 blocks (DRI + RSTn markers)
  ri13_fill        restart interval 13 with 0xFF fill bytes before each RSTn
  dqt16            quantisation tables sent with 16-bit precision (Pq = 1)
  sof0             the frame header as SOF0 (baseline marker) at 12 bits
  two_frames       two frames: the original, then ri7 of a brighter image (DC + 40)

Usage: jpeg12_variants.py IN.dcm OUTDIR   (tests/encodings.rs runs it)
"""
import sys
from pathlib import Path

import pydicom
from pydicom.encaps import encapsulate, generate_fragments


def segments(data):
    """(marker, start, end) of each segment before the scan; the scan's start."""
    at, out = 2, []
    while True:
        while data[at + 1] == 0xFF:
            at += 1
        marker = data[at + 1]
        length = int.from_bytes(data[at + 2:at + 4], "big")
        out.append((marker, at, at + 2 + length))
        if marker == 0xDA:
            return out, at + 2 + length
        at += 2 + length


def huffman_tables(data, segs):
    tables = {}
    for marker, start, end in segs:
        if marker != 0xC4:
            continue
        body = data[start + 4:end]
        while body:
            counts, n = list(body[1:17]), sum(body[1:17])
            values = list(body[17:17 + n])
            code, k, table = 0, 0, {}
            for length in range(1, 17):
                for _ in range(counts[length - 1]):
                    table[(length, code)] = values[k]
                    k, code = k + 1, code + 1
                code <<= 1
            tables[(body[0] >> 4, body[0] & 15)] = table
            body = body[17 + n:]
    return tables


class BitReader:
    def __init__(self, data, at):
        self.data, self.at, self.bits = data, at, []

    def bit(self):
        if not self.bits:
            byte = self.data[self.at]
            self.at += 1
            if byte == 0xFF:
                assert self.data[self.at] == 0, "no restart markers expected in the input"
                self.at += 1
            self.bits = [(byte >> i) & 1 for i in range(7, -1, -1)]
        return self.bits.pop(0)

    def receive(self, size):
        v = 0
        for _ in range(size):
            v = (v << 1) | self.bit()
        return v

    def symbol(self, table):
        code = 0
        for length in range(1, 17):
            code = (code << 1) | self.bit()
            if (length, code) in table:
                return table[(length, code)]
        raise ValueError("no Huffman code matches")


def extend(v, size):
    return v - (1 << size) + 1 if size and v < (1 << (size - 1)) else v


def read_blocks(data):
    """Each block as (absolute DC, [(run/size symbol, value) ..., ending 'eob' or not])."""
    segs, start = segments(data)
    sof = next(s for s in segs if s[0] in (0xC0, 0xC1))
    height = int.from_bytes(data[sof[1] + 5:sof[1] + 7], "big")
    width = int.from_bytes(data[sof[1] + 7:sof[1] + 9], "big")
    sos = data[segs[-1][1] + 4:segs[-1][2]]
    tables = huffman_tables(data, segs)
    dc, ac = tables[(0, sos[2] >> 4)], tables[(1, sos[2] & 15)]
    bits, pred, blocks = BitReader(data, start), 0, []
    for _ in range(((width + 7) // 8) * ((height + 7) // 8)):
        size = bits.symbol(dc)
        pred += extend(bits.receive(size), size)
        acs, k = [], 1
        while k < 64:
            rs = bits.symbol(ac)
            if rs & 15 == 0 and rs != 0xF0:
                acs.append(("eob",))
                break
            if rs == 0xF0:
                acs.append(("zrl",))
                k += 16
                continue
            acs.append((rs, extend(bits.receive(rs & 15), rs & 15)))
            k += (rs >> 4) + 1
        blocks.append((pred, acs))
    return segs, start, tables, (sos[2] >> 4, sos[2] & 15), blocks


class BitWriter:
    def __init__(self):
        self.out, self.acc, self.n = bytearray(), 0, 0

    def put(self, value, size):
        for i in range(size - 1, -1, -1):
            self.acc, self.n = (self.acc << 1) | ((value >> i) & 1), self.n + 1
            if self.n == 8:
                self.out.append(self.acc)
                if self.acc == 0xFF:
                    self.out.append(0)
                self.acc, self.n = 0, 0

    def pad(self):
        if self.n:
            self.put((1 << (8 - self.n)) - 1, 8 - self.n)


def magnitude(v):
    size = abs(v).bit_length()
    return size, (v if v >= 0 else v + (1 << size) - 1)


# A DC table with a code for every difference category 0-15 (fifteen 4-bit codes, one
# 5-bit): after a restart the first difference is the whole DC value, whose category an
# encoder's optimised table may lack.
FULL_DC_COUNTS = [0, 0, 0, 15, 1] + [0] * 11
FULL_DC = {size: (4, size) if size < 15 else (5, 0b11110) for size in range(16)}


def encode(data, interval, fill=0, shift=0):
    """The same blocks with a restart every `interval` blocks (0: none), `fill` 0xFF
    bytes before each RSTn, and every DC value moved by `shift` (another image)."""
    segs, start, tables, (td, ta), blocks = read_blocks(data)
    codes = {key: {value: lc for lc, value in table.items()} for key, table in tables.items()}
    dc, ac = FULL_DC, codes[(1, ta)]
    w, pred = BitWriter(), 0
    for i, (absolute, acs) in enumerate(blocks):
        if interval and i and i % interval == 0:
            w.pad()
            w.out += b"\xff" * fill + bytes([0xFF, 0xD0 + (i // interval - 1) % 8])
            pred = 0
        size, bits = magnitude(absolute + shift - pred)
        pred = absolute + shift
        length, code = dc[size]
        w.put(code, length)
        w.put(bits, size)
        for sym in acs:
            if sym[0] in ("eob", "zrl"):
                length, code = ac[0 if sym[0] == "eob" else 0xF0]
                w.put(code, length)
            else:
                length, code = ac[sym[0]]
                w.put(code, length)
                size, bits = magnitude(sym[1])
                w.put(bits, size)
    w.pad()
    dri = bytes([0xFF, 0xDD, 0, 4]) + interval.to_bytes(2, "big") if interval else b""
    header = bytes(data[:segs[-1][1]])
    dht = bytes([0xFF, 0xC4, 0, 2 + 17 + 16, td]) + bytes(FULL_DC_COUNTS) + bytes(range(16))
    return header + dht + dri + bytes(data[segs[-1][1]:start]) + bytes(w.out) + b"\xff\xd9"


def wide_quantisation(data):
    segs, _ = segments(data)
    out, at = bytearray(), 0
    for marker, start, end in segs:
        if marker != 0xDB:
            continue
        body, wide = data[start + 4:end], bytearray()
        while body:
            assert body[0] >> 4 == 0, "8-bit tables expected"
            wide.append(0x10 | (body[0] & 15))
            for q in body[1:65]:
                wide += q.to_bytes(2, "big")
            body = body[65:]
        out += data[at:start] + bytes([0xFF, 0xDB]) + (len(wide) + 2).to_bytes(2, "big") + wide
        at = end
    return bytes(out + data[at:])


def baseline_marker(data):
    segs, _ = segments(data)
    sof = next(s for s in segs if s[0] == 0xC1)
    return data[:sof[1] + 1] + b"\xc0" + data[sof[1] + 2:]


def main(src, outdir):
    ds = pydicom.dcmread(src)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.51"
    frame = b"".join(list(generate_fragments(ds.PixelData))[1:])
    frame = frame[:frame.rindex(b"\xff\xd9") + 2]
    variants = {
        "ri1": [encode(frame, 1)],
        "ri7": [encode(frame, 7)],
        "ri64": [encode(frame, 64)],
        "ri13_fill": [encode(frame, 13, fill=2)],
        "dqt16": [wide_quantisation(frame)],
        "sof0": [baseline_marker(frame)],
        "two_frames": [frame, encode(frame, 7, shift=40)],
    }
    Path(outdir).mkdir(parents=True, exist_ok=True)
    for name, frames in variants.items():
        ds.PixelData = encapsulate(frames)
        ds.NumberOfFrames = len(frames)
        ds.save_as(Path(outdir) / f"{name}.dcm")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
