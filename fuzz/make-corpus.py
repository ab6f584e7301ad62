#!/usr/bin/env python3
"""Builds the seed corpora of the fuzz targets in fuzz/corpus/<target>/ (Python 3 stdlib only).

    python3 fuzz/make-corpus.py [--photos DIR]

Seeds: the codec and wire golden vectors (fixtures/codec, fixtures/wire), admission batches
made of the codec vectors, small JPEGs and PNGs written here (baseline JFIF in the form
gridsync stores, grey and colour, 4:2:0 and 4:4:4, restart intervals, EXIF orientations, the
EXIF blocks of the sample photos), the sample photos themselves cut to their first 16 KiB
(fixtures/photos, or --photos DIR such as /work/shared/fixtures/photos) and identifier texts.
The corpora are not committed: run this once, then `cargo fuzz run` adds to them.
"""
import argparse
import os
import struct
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def files(d, ext):
    return sorted(
        (n, open(os.path.join(d, n), "rb").read()) for n in os.listdir(d) if n.endswith(ext)
    )


# --- JPEG: a tiny baseline writer with its own two small Huffman tables -----------------------

class Bits:
    def __init__(self):
        self.out = bytearray()
        self.acc = 0
        self.n = 0

    def put(self, code):
        for c in code:
            self.acc = (self.acc << 1) | (c == "1")
            self.n += 1
            if self.n == 8:
                self.byte(self.acc)
                self.acc, self.n = 0, 0

    def byte(self, b):
        self.out.append(b)
        if b == 0xFF:
            self.out.append(0x00)

    def flush(self):
        if self.n:
            self.put("1" * (8 - self.n))


def seg(marker, payload):
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


# DC: symbols 0, 1, 2 with codes 00, 01, 10. AC: EOB (0x00) 00, 0x01 01, 0x02 100, 0x11 101,
# 0xF0 110. Table class/id 0x00 (DC 0) and 0x10 (AC 0).
DHT = seg(0xC4, bytes([0x00]) + bytes([0, 3] + [0] * 14) + bytes([0, 1, 2])
          + bytes([0x10]) + bytes([0, 2, 3] + [0] * 13) + bytes([0x00, 0x01, 0x02, 0x11, 0xF0]))
DQT = seg(0xDB, bytes([0x00]) + bytes(range(1, 65)))
JFIF = seg(0xE0, b"JFIF\0" + bytes([1, 1, 0, 0, 1, 0, 1, 0, 0]))


def jpeg(w, h, sampling, restart=0, app=b"", jfif=True, ac=False):
    """A baseline JPEG, w x h, components with (H, V) factors `sampling`."""
    hmax = max(s[0] for s in sampling)
    vmax = max(s[1] for s in sampling)
    comps = b"".join(bytes([i + 1, (hh << 4) | vv, 0]) for i, (hh, vv) in enumerate(sampling))
    sof = seg(0xC0, bytes([8]) + struct.pack(">HHB", h, w, len(sampling)) + comps)
    sos = seg(0xDA, bytes([len(sampling)]) + b"".join(bytes([i + 1, 0x00]) for i in range(len(sampling)))
              + bytes([0, 63, 0]))
    mx = -(-w // (8 * hmax))
    my = -(-h // (8 * vmax))
    bits = Bits()
    data = bytearray()
    n = 0
    for m in range(mx * my):
        if restart and m and m % restart == 0:
            bits.flush()
            data += bits.out
            data += bytes([0xFF, 0xD0 + n % 8])
            n += 1
            bits = Bits()
        for (hh, vv) in sampling:
            for b in range(hh * vv):
                # DC difference +1 (category 1, extra bit 1) on odd blocks, 0 otherwise.
                bits.put("011" if (m + b) % 2 else "00")
                if ac:
                    bits.put("011")  # AC (run 0, size 2 is 100; here 0x01: size 1, bit 1)
                bits.put("00")  # EOB
    bits.flush()
    data += bits.out
    dri = seg(0xDD, struct.pack(">H", restart)) if restart else b""
    return (b"\xFF\xD8" + (JFIF if jfif else b"") + app + DQT + sof + DHT + dri + sos
            + bytes(data) + b"\xFF\xD9")


def tiff_orientation(o, big=True):
    if big:
        return b"MM\0*" + struct.pack(">IH", 8, 1) + struct.pack(">HHIHH", 0x0112, 3, 1, o, 0) + b"\0\0\0\0"
    return b"II*\0" + struct.pack("<IH", 8, 1) + struct.pack("<HHIHH", 0x0112, 3, 1, o, 0) + b"\0\0\0\0"


def app1(tiff):
    return seg(0xE1, b"Exif\0\0" + tiff)


def exif_blocks(jpg):
    """The TIFF blocks of a JPEG's Exif APP1 segments."""
    out, pos = [], 2
    while pos + 4 <= len(jpg) and jpg[pos] == 0xFF:
        marker = jpg[pos + 1]
        length = struct.unpack(">H", jpg[pos + 2:pos + 4])[0]
        body = jpg[pos + 4:pos + 2 + length]
        if marker == 0xE1 and body.startswith(b"Exif\0\0"):
            out.append(body[6:])
        if marker == 0xDA:
            break
        pos += 2 + length
    return out


# --- PNG ---------------------------------------------------------------------------------------

def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(w, h, colour, depth=8, exif=None, palette=False):
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
    row = (w * channels * depth + 7) // 8
    raw = b"".join(b"\0" + bytes((x * 37 + y * 11) % 256 for x in range(row)) for y in range(h))
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0))
    if palette:
        out += chunk(b"PLTE", bytes(range(256)) * 3)
    if exif:
        out += chunk(b"eXIf", exif)
    return out + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", default=os.path.join(ROOT, "fixtures", "photos"))
    args = ap.parse_args()

    codec = files(os.path.join(ROOT, "fixtures", "codec"), ".bin")
    wire = files(os.path.join(ROOT, "fixtures", "wire"), ".bin")
    for n, b in codec:
        put("decode_event", n, b)
        put("decode_state", n, b)
    for n, b in wire:
        put("decode_blob_header", n, b)
        put("decode_blob_header", "body-" + n, b[4:])
        for t in ("decode_frame", "conformance_wire"):
            put(t, "max-" + n, b"\0\0" + b)
            put(t, "1k-" + n, b"\x01\0" + b)
    everything = b"".join(b for _, b in wire)
    for t in ("decode_frame", "conformance_wire"):
        put(t, "all-frames", b"\x2a\0" + everything)

    # admit: header (origins, node, scope, max_events, drift, now offset) + u16-LE-prefixed bodies.
    events = [(n, b) for n, b in codec if n.startswith("event-")]

    def batch(bodies):
        return b"".join(struct.pack("<H", len(b)) + b for b in bodies)

    def header(origins, node, scope, max_events, drift=60_000, offset=0):
        return bytes([origins, node, scope, max_events]) + struct.pack("<Iq", drift, offset)

    for n, b in events:
        put("admit", "any-" + n, header(0, 0, 1, 255) + batch([b]))
        put("admit", "own-" + n, header(1, 0, 3, 255) + batch([b]))
    by_origin = {}
    for n, b in events:
        by_origin.setdefault(b[1:33], []).append(b)
    for i, (origin, bodies) in enumerate(sorted(by_origin.items())):
        put("admit", f"batch-{i}", header(1, 0, 0, 255) + batch(bodies))
        put("admit", f"batch-{i}-limit", header(3, 0, 2, len(bodies) - 1) + batch(bodies))
        put("admit", f"batch-{i}-ahead", header(0, 0, 0, 255, 0, -1) + batch(bodies))
    put("admit", "mixed", header(0, 0, 0, 255) + batch([b for _, b in events]))
    put("admit", "out-of-scope", header(0, 0, 6, 255) + batch([events[0][1]]))
    put("admit", "empty", header(0, 0, 0, 0))

    # admit_records: a u16 LE length, a version-byte-prefixed Vec<NodeRecord>, then an event.
    nodes = dict(wire).get("nodes.bin")
    if nodes:
        # nodes.bin: length (4), version, variant 13, batch 1, then the records vector.
        records = b"\x01" + nodes[7:]
        for n, b in events[:4]:
            put("admit_records", "nodes-" + n, struct.pack("<H", len(records)) + records + b)
        put("admit_records", "nodes-only", struct.pack("<H", len(records)) + records)

    # Photos.
    grey = [(1, 1)]
    c420 = [(2, 2), (1, 1), (1, 1)]
    c444 = [(1, 1), (1, 1), (1, 1)]
    stored = {
        "grey-8x8.jpg": jpeg(8, 8, grey),
        "grey-17x9.jpg": jpeg(17, 9, grey, ac=True),
        "rgb420-16x16.jpg": jpeg(16, 16, c420),
        "rgb420-33x20.jpg": jpeg(33, 20, c420, ac=True),
        "rgb444-24x8.jpg": jpeg(24, 8, c444),
        "rgb420-restart.jpg": jpeg(48, 32, c420, restart=2),
        "grey-restart.jpg": jpeg(40, 8, grey, restart=1, ac=True),
    }
    for n, b in stored.items():
        put("photo_check_stored", n, b)
        put("photo_process", n, b)
        put("photo_header", n, b)
    put("photo_check_stored", "rgb420-320x200.jpg", jpeg(320, 200, c420))
    exifs = []
    photos = files(args.photos, "") if os.path.isdir(args.photos) else []
    for n, b in photos:
        if n.endswith(".md"):
            continue
        head = b[:16384]
        put("photo_process", "sample-" + n, head)
        put("photo_header", "sample-" + n, head)
        if n.endswith(".jpg"):
            for i, t in enumerate(exif_blocks(b)):
                exifs.append(t)
                put("photo_header", f"tiff-{i}-{n}.bin", t)
                put("photo_process", f"exif-{i}-{n}", jpeg(24, 16, c420, app=app1(t), jfif=False))
    for o in range(1, 9):
        for big in (True, False):
            t = tiff_orientation(o, big)
            put("photo_header", f"tiff-orientation-{o}-{'mm' if big else 'ii'}.bin", t)
            put("photo_process", f"orientation-{o}-{'mm' if big else 'ii'}.jpg",
                jpeg(24, 16, c420, app=app1(t)))
    pngs = {
        "grey8.png": png(9, 7, 0),
        "grey16.png": png(5, 4, 0, 16),
        "grey1.png": png(13, 3, 0, 1),
        "rgb8.png": png(8, 8, 2),
        "rgba8.png": png(6, 5, 6),
        "greya8.png": png(4, 4, 4),
        "rgb16.png": png(3, 3, 2, 16),
        "palette.png": png(7, 7, 3, 8, palette=True),
        "exif-rot6.png": png(6, 4, 2, exif=tiff_orientation(6)),
    }
    if exifs:
        pngs["exif-sample.png"] = png(6, 4, 2, exif=exifs[0])
    for n, b in pngs.items():
        put("photo_process", n, b)
        put("photo_header", n, b)

    for i, t in enumerate([
        "110101/002/014/03", "110101", "110101/002", " 110101/002/014 ", "a/b/c/d", "110101//014/03",
        "a1" * 32, "B2" * 32, "0192f0c1-7a2b-7c3d-8e4f-5a6b7c8d9e0f",
        "{0192f0c1-7a2b-7c3d-8e4f-5a6b7c8d9e0f}", "urn:uuid:0192f0c1-7a2b-7c3d-8e4f-5a6b7c8d9e0f",
        "0192f0c17a2b7c3d8e4f5a6b7c8d9e0f", "ABCDEFGHIJKL/0/1/2",
    ]):
        put("parse_ids", f"text-{i}", t.encode())


if __name__ == "__main__":
    main()
