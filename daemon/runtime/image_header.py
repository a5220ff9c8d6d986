"""What an image file will cost to decode, from its header, before anything is decoded.

A 37-byte GIF can declare 32000 x 32000 pixels, a 2.6 MB PNG 30000 x 30000: OpenCV allocates
what the header says before it finds the data missing (over 6 GB: the station is killed by its
MemoryMax, and in watch mode the same file kills every restart). ``read_image`` decodes only a
file whose header is read here and whose every allocation is bounded by it:

- PNG, JPEG, BMP, TIFF and WebP: the size, the channels and the bits per sample (a TIFF's tile
  too, which can be larger than the image); one frame only (an animated PNG or WebP is refused);
- every other format OpenCV's decoders take (GIF, PNM/PAM, PFM, HDR, Sun raster, JPEG 2000,
  AVIF, EXR, and whatever a later OpenCV adds) is refused by its signature: no station camera
  writes them, and each is a decoder more to bound.

    >>> header = read_header(b"\\x89PNG\\r\\n\\x1a\\n\\x00\\x00\\x00\\rIHDR\\x00\\x00\\x75\\x30\\x00\\x00\\x75\\x30\\x08\\x02\\x00\\x00\\x00")
    >>> header.width, header.height, header.channels, header.bits
    (30000, 30000, 3, 8)
    >>> read_header(b"GIF89a\\x00\\x7d\\x00\\x7d")
    Traceback (most recent call last):
    ...
    inspectd.daemon.runtime.image_header.Refused: is a GIF image; PNG, JPEG, BMP, TIFF and WebP are read
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

READ = "PNG, JPEG, BMP, TIFF and WebP are read"
# JPEG start-of-frame markers (baseline, progressive, lossless...), not DHT (C4), JPG (C8) or DAC (CC).
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
# Signatures of the formats OpenCV decodes and inspectd does not: named in the refusal.
_OTHERS = ((b"GIF87a", "a GIF"), (b"GIF89a", "a GIF"), (b"#?RADIANCE", "a Radiance HDR"), (b"#?RGBE", "a Radiance HDR"),
           (b"\x59\xa6\x6a\x95", "a Sun raster"), (b"\x76\x2f\x31\x01", "an OpenEXR"), (b"\xff\x4f\xff\x51", "a JPEG 2000"),
           (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "a JPEG 2000"), (b"II+\x00", "a BigTIFF"), (b"MM\x00+", "a BigTIFF"),
           (b"PF", "a PFM"), (b"Pf", "a PFM"), (b"P1", "a PNM"), (b"P2", "a PNM"), (b"P3", "a PNM"), (b"P4", "a PNM"),
           (b"P5", "a PNM"), (b"P6", "a PNM"), (b"P7", "a PAM"), (b"\xff\x0a", "a JPEG XL"),
           (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "a JPEG XL"))


class Refused(ValueError):
    """The file is not decoded: not a format read here, or a header that cannot be read. The text says which."""


@dataclass(frozen=True)
class Header:
    format: str  # "PNG", "JPEG", "BMP", "TIFF", "WebP"
    width: int
    height: int
    channels: int  # samples per pixel the file holds (1 to 4 are decoded)
    bits: int  # per sample
    largest: int = 0  # pixels of the largest buffer the decoder fills, when larger than the image (a TIFF tile)

    @property
    def pixels(self) -> int:
        return max(self.width * self.height, self.largest)


def read_header(data: bytes) -> Header:
    """The header of an image file's first bytes (enough of them: a JPEG's size may follow a large EXIF block).
    Raises Refused."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            return _png(data)
        if data[:2] == b"\xff\xd8":
            return _jpeg(data)
        if data[:2] == b"BM":
            return _bmp(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp(data)
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff(data)
    except (struct.error, IndexError, ValueError) as exc:
        if isinstance(exc, Refused):
            raise
        raise Refused("has a header cut short or malformed") from None
    for signature, name in _OTHERS:
        if data.startswith(signature):
            raise Refused(f"is {name} image; {READ}")
    if data[4:8] == b"ftyp":
        raise Refused(f"is an AVIF/HEIF image; {READ}")
    raise Refused(f"is not an image file inspectd reads ({READ})")


def declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) the header declares, or None when it is not read here."""
    try:
        header = read_header(data)
    except Refused:
        return None
    return header.width, header.height


def _png(data: bytes) -> Header:
    if data[12:16] != b"IHDR":
        raise Refused("is a PNG without its header chunk (IHDR) first")
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour)
    if channels is None:
        raise Refused(f"is a PNG of unknown colour type {colour}")
    at = 33
    while at + 8 <= len(data):  # the chunks before the pixels: an animated PNG says so there (acTL)
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind = data[at + 4 : at + 8]
        if kind == b"acTL":
            raise Refused("is an animated PNG (APNG); send one frame per file")
        if kind == b"IDAT":
            break
        at += 12 + length
    return Header("PNG", width, height, channels, depth)


def _jpeg(data: bytes) -> Header:
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            raise Refused("is a JPEG whose markers are damaged before its frame header")
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            at += 2
            continue
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        if marker in _JPEG_SOF:
            precision, height, width, components = struct.unpack(">BHHB", data[at + 4 : at + 10])
            if components not in (1, 3, 4):
                raise Refused(f"is a JPEG of {components} components; 1 (gray), 3 (colour) or 4 (CMYK) are read")
            return Header("JPEG", width, height, components, precision)
        if marker in (0xDA, 0xD9):  # a scan or the end before any frame header
            break
        at += 2 + length
    raise Refused("is a JPEG without a frame header (SOF) in its first bytes")


def _bmp(data: bytes) -> Header:
    (size,) = struct.unpack("<I", data[14:18])
    if size == 12:  # BITMAPCOREHEADER: 16-bit sizes
        width, height, _, bits = struct.unpack("<HHHH", data[18:26])
    elif size >= 40:
        width, height, _, bits = struct.unpack("<iiHH", data[18:30])
    else:
        raise Refused(f"is a BMP with an unknown header of {size} bytes")
    if bits not in (1, 2, 4, 8, 16, 24, 32):
        raise Refused(f"is a BMP of {bits} bits a pixel")
    return Header("BMP", abs(width), abs(height), 4 if bits == 32 else 3, 8)  # a negative height means top-down rows


def _webp(data: bytes) -> Header:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return Header("WebP", width & 0x3FFF, height & 0x3FFF, 3, 8)
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return Header("WebP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, 4, 8)
    if chunk == b"VP8X":
        if data[20] & 0x02:
            raise Refused("is an animated WebP; send one frame per file")
        return Header("WebP", int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1, 4, 8)
    raise Refused(f"is a WebP of unknown kind {chunk!r}")


_TIFF_TYPES = {1: "B", 3: "H", 4: "I", 16: "Q"}  # BYTE, SHORT, LONG, LONG8: the integer types a size or count may use
_WIDTH, _HEIGHT, _BITS, _SAMPLES, _TILE_WIDTH, _TILE_LENGTH = 256, 257, 258, 277, 322, 323


def _tiff(data: bytes) -> Header:
    order = "<" if data[:2] == b"II" else ">"
    (offset,) = struct.unpack(order + "I", data[4:8])
    (count,) = struct.unpack(order + "H", data[offset : offset + 2])
    found: dict[int, list[int]] = {}
    for index in range(count):
        entry = data[offset + 2 + 12 * index : offset + 14 + 12 * index]
        tag, kind, number = struct.unpack(order + "HHI", entry[:8])
        code = _TIFF_TYPES.get(kind)
        if code is None or tag not in (_WIDTH, _HEIGHT, _BITS, _SAMPLES, _TILE_WIDTH, _TILE_LENGTH):
            continue
        size = struct.calcsize(code)
        if number * size <= 4:
            raw = entry[8 : 8 + number * size]
        else:
            (at,) = struct.unpack(order + "I", entry[8:12])
            raw = data[at : at + min(number, 8) * size]
        values = list(struct.unpack(order + code * (len(raw) // size), raw[: len(raw) // size * size]))
        if not values:
            raise Refused("is a TIFF whose header points outside its first bytes")
        found[tag] = [max(values + found.get(tag, []))]  # a tag given twice: the larger, as the decoder may use either
    if _WIDTH not in found or _HEIGHT not in found:
        raise Refused("is a TIFF without its width and height in its first directory")
    width, height = found[_WIDTH][0], found[_HEIGHT][0]
    samples, bits = found.get(_SAMPLES, [1])[0], found.get(_BITS, [1])[0]
    tile = found.get(_TILE_WIDTH, [0])[0] * found.get(_TILE_LENGTH, [0])[0]
    return Header("TIFF", width, height, samples, bits, largest=tile)
