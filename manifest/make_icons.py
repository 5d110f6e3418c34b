#!/usr/bin/env python3
"""Draw the Regarding add-in icons into static/icons/ as PNG files.

Standard library only (zlib + struct), so anyone can regenerate the icons
without Pillow or a drawing program: ``python manifest/make_icons.py``.
The output is deterministic, so regenerating unchanged icons leaves git clean.

The mark is a white "R" on a rounded square in Fluent's brand blue. Shapes are
described as "is this point inside?" tests in a unit square and rasterised
with supersampling (SS x SS samples per pixel) for anti-aliased edges.

Which files exist, and why:

* ``icon-16/32/80.png``: desktop ribbon buttons (Outlook requires 16, 32, 80).
* ``icon-64.png``, ``icon-128.png``: IconUrl and HighResolutionIconUrl.
* ``icon-25/32/48.png`` plus ``@2x``/``@3x``: Outlook mobile buttons; the
  manifest lists each size at scale 1, 2 and 3 and the image for scale N is
  N times as many pixels.
* ``mono-25/32/48`` (+ ``@2x``/``@3x``): the mobile "Log" button on
  appointments, whose icons Microsoft asks to be grey (#919191) glyphs.
* ``color-192.png`` and ``outline-32.png``: the unified (JSON) manifest's
  app icons: full colour 192x192, and a white outline on transparency 32x32.
"""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

BRAND_BLUE = (0x0F, 0x6C, 0xBD)
WHITE = (0xFF, 0xFF, 0xFF)
MOBILE_GREY = (0x91, 0x91, 0x91)
SS = 6  # supersamples per axis

OUT_DIR = Path(__file__).resolve().parent.parent / "static" / "icons"


# ---------------------------------------------------------------- PNG writer

def png_bytes(width: int, height: int, rgba_rows: list[bytes]) -> bytes:
    """Encode 8-bit RGBA rows as a PNG (no ancillary chunks: reproducible)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    raw = b"".join(b"\x00" + row for row in rgba_rows)  # filter type 0 per row
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


# ------------------------------------------------------------------- shapes
# Coordinates are in the unit square, x to the right, y downwards.

def in_rounded_square(x: float, y: float, inset: float, radius: float) -> bool:
    lo, hi = inset, 1.0 - inset
    if not (lo <= x <= hi and lo <= y <= hi):
        return False
    cx = min(max(x, lo + radius), hi - radius)
    cy = min(max(y, lo + radius), hi - radius)
    return (x - cx) ** 2 + (y - cy) ** 2 <= radius * radius


def in_rounded_ring(x: float, y: float, inset: float, radius: float, width: float) -> bool:
    return in_rounded_square(x, y, inset, radius) and not in_rounded_square(
        x, y, inset + width, max(radius - width, 0.0)
    )


def _near_segment(x, y, ax, ay, bx, by, half_width) -> bool:
    dx, dy = bx - ax, by - ay
    t = max(0.0, min(1.0, ((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy)))
    px, py = ax + t * dx, ay + t * dy
    return (x - px) ** 2 + (y - py) ** 2 <= half_width * half_width


def in_letter_r(x: float, y: float, scale: float = 1.0) -> bool:
    """A geometric capital R, centred; ``scale`` shrinks it about the centre."""
    x = 0.5 + (x - 0.5) / scale
    y = 0.5 + (y - 0.5) / scale
    top, bottom = 0.20, 0.80
    stem_l, stem_r = 0.28, 0.43
    stroke = 0.13
    bowl_bottom = 0.55
    bowl_cy = (top + bowl_bottom) / 2
    outer_r = (bowl_bottom - top) / 2
    inner_r = outer_r - stroke
    bowl_cx = 0.56
    if not (top <= y <= bottom):
        return False
    if stem_l <= x <= stem_r:
        return True
    # Bowl: a "D" shape (bars + half annulus) to the right of the stem.
    if stem_r <= x <= bowl_cx:
        if top <= y <= bowl_bottom and not (top + stroke < y < bowl_bottom - stroke):
            return True
    if x >= bowl_cx:
        d2 = (x - bowl_cx) ** 2 + (y - bowl_cy) ** 2
        if inner_r * inner_r <= d2 <= outer_r * outer_r:
            return True
    # Leg: a thick diagonal from the bowl down to the baseline, cut flat at the bottom.
    return y >= bowl_bottom - stroke / 2 and _near_segment(
        x, y, 0.50, bowl_bottom - stroke / 2, 0.73, bottom + 0.1, stroke * 0.56
    )


# --------------------------------------------------------------- rendering

def render(size: int, paint) -> bytes:
    """Rasterise ``paint(x, y) -> (rgb, alpha) | None`` at ``size`` pixels."""
    rows = []
    n = SS * SS
    for py in range(size):
        row = bytearray()
        for px in range(size):
            r = g = b = a = 0.0
            for sy in range(SS):
                y = (py + (sy + 0.5) / SS) / size
                for sx in range(SS):
                    x = (px + (sx + 0.5) / SS) / size
                    hit = paint(x, y)
                    if hit is not None:
                        (cr, cg, cb), ca = hit
                        r += cr * ca
                        g += cg * ca
                        b += cb * ca
                        a += ca
            if a == 0:
                row += b"\x00\x00\x00\x00"
            else:
                row += bytes(
                    (round(r / a), round(g / a), round(b / a), round(255 * a / n))
                )
        rows.append(bytes(row))
    return png_bytes(size, size, rows)


def paint_brand(x: float, y: float):
    """White R on a blue rounded square filling the canvas."""
    if not in_rounded_square(x, y, 0.0, 0.2):
        return None
    return (WHITE if in_letter_r(x, y) else BRAND_BLUE), 1.0


def paint_outline(x: float, y: float):
    """White rounded-square outline and R on transparency (Teams outline icon)."""
    if in_rounded_ring(x, y, 0.03, 0.2, 0.085) or in_letter_r(x, y, scale=0.82):
        return WHITE, 1.0
    return None


def paint_mono(x: float, y: float):
    """Grey R glyph on transparency (Outlook mobile log-event button)."""
    if in_rounded_ring(x, y, 0.03, 0.2, 0.085) or in_letter_r(x, y, scale=0.82):
        return MOBILE_GREY, 1.0
    return None


def icon_plan() -> dict[str, tuple[int, object]]:
    """File name -> (pixel size, painter)."""
    plan: dict[str, tuple[int, object]] = {}
    for size in (16, 32, 64, 80, 128):
        plan[f"icon-{size}.png"] = (size, paint_brand)
    for size in (25, 32, 48):
        for scale in (1, 2, 3):
            suffix = "" if scale == 1 else f"@{scale}x"
            plan[f"icon-{size}{suffix}.png"] = (size * scale, paint_brand)
            plan[f"mono-{size}{suffix}.png"] = (size * scale, paint_mono)
    plan["color-192.png"] = (192, paint_brand)
    plan["outline-32.png"] = (32, paint_outline)
    return plan


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else OUT_DIR
    out.mkdir(parents=True, exist_ok=True)
    for name, (size, painter) in sorted(icon_plan().items()):
        data = render(size, painter)
        path = out / name
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
            print(f"wrote {path} ({size}x{size})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
