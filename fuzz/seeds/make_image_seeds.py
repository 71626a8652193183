"""Writes the image fuzz target's seed files into fuzz/seeds/image/ (needs Pillow and NumPy).

Each kind of file the decoders take a different path for: progressive, grayscale, CMYK and
4:2:0 JPEG; every EXIF orientation; 16-bit, palette-with-transparency, bilevel and RGBA PNG;
and JPEG and PNG files cut short in two ways each.
"""

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parent / "image"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_16bit(rng, width: int, height: int, channels: int, color_type: int) -> bytes:
    """A 16-bit PNG written by hand: Pillow writes 16 bits per sample for grayscale only."""
    rows = b"".join(
        b"\x00" + rng.integers(0, 256, width * channels * 2, dtype=np.uint8).tobytes()
        for _ in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), "RGB")
    files = {
        "progressive.jpg": encoded(rgb, "JPEG", progressive=True, quality=80),
        "gray.jpg": encoded(rgb.convert("L"), "JPEG", quality=80),
        "cmyk.jpg": encoded(rgb.convert("CMYK"), "JPEG", quality=80),
        "subsampled_420.jpg": encoded(rgb, "JPEG", subsampling=2, quality=70),
        "gray16.png": encoded(
            Image.fromarray(rng.integers(0, 65536, (10, 9), dtype=np.uint16)), "PNG"
        ),
        "rgb16.png": png_16bit(rng, 7, 5, 3, 2),
        "rgba16.png": png_16bit(rng, 5, 6, 4, 6),
        "palette_trns.png": encoded(
            rgb.convert("P", palette=Image.ADAPTIVE, colors=16), "PNG", transparency=3
        ),
        "rgba.png": encoded(rgb.convert("RGBA"), "PNG"),
        "bilevel.png": encoded(rgb.convert("1"), "PNG"),
    }
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        files[f"exif_orientation_{orientation}.jpg"] = encoded(
            rgb, "JPEG", exif=exif.tobytes(), quality=75
        )
    jpeg = encoded(rgb, "JPEG", quality=90)
    files["truncated_half.jpg"] = jpeg[: len(jpeg) // 2]
    files["truncated_no_eoi.jpg"] = jpeg[:-2]
    png = encoded(rgb, "PNG")
    files["truncated_half.png"] = png[: len(png) // 2]
    files["truncated_no_iend.png"] = png[:-12]
    for name, data in files.items():
        (OUT / name).write_bytes(data)


if __name__ == "__main__":
    main()
