"""A small synthetic inspection-station dataset: a white mug, some with green stains.

It reproduces the set-up of the study inspectd starts from: a plain white handle-less mug
standing on a fixed table in front of a fixed wall, seen by a fixed camera slightly from
above (rim ellipse and body both visible). Between images the lighting (brightness, colour
temperature, highlight position, soft shadow) and the placement (a few pixels of translation,
a tiny scale change and rotation) jitter a little, and the camera adds noise. Anomalies are
green food-colouring stains on the mug's outer surface in three sizes: irregular blobs, some
with satellite drops or a drip, semi-transparent green with darker dried edges, drawn in the
mug's surface coordinates so they wrap around the body and stop at its silhouette.

Every image has its own random stream derived from ``(seed, split, index)``, so a split's
images do not change when another split's count changes, and output is byte-identical across
runs. Runtime code: numpy, OpenCV and the standard library only.

    >>> import tempfile
    >>> from inspectd.daemon.demo.scene import generate_station_dataset
    >>> root = generate_station_dataset(tempfile.mkdtemp(), n_train=2, n_test_good=1,
    ...                                 n_test_per_size=1)
    >>> sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))[:3]
    ['ground_truth/stain_large/000_mask.png', 'ground_truth/stain_medium/000_mask.png', 'ground_truth/stain_small/000_mask.png']
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

STAIN_SIZES = ("small", "medium", "large")
# Stain radius range as a fraction of the mug's radius.
_STAIN_RADIUS = {"small": (0.07, 0.1), "medium": (0.16, 0.21), "large": (0.32, 0.42)}
# Split ids for the per-image random streams (never renumber: it changes every image).
_STREAM = {"background": 0, "train": 1, "test_good": 2, "small": 3, "medium": 4, "large": 5}
# Green food colouring (tartrazine + brilliant blue) absorbs blue and red: optical density
# per unit dye, in B, G, R order, applied to linear light.
_DYE_ABSORPTION = np.array([1.1, 0.25, 1.6], dtype=np.float32)


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _to_linear(bgr: tuple[float, float, float]) -> np.ndarray:
    return (np.asarray(bgr, dtype=np.float32) / 255.0) ** 2.2


@dataclass(frozen=True)
class _Geometry:
    """The mug at rest, in pixels: a slightly tapered cylinder seen from about 24 degrees up."""

    width: int
    height: int
    cx: float  # axis x
    y_top: float  # centre of the rim ellipse
    y_bot: float  # centre of the base ellipse
    r_top: float  # rim radius
    r_bot: float  # base radius
    k: float  # ellipse minor/major ratio = sin(camera elevation)
    wall: float  # rim thickness
    horizon: float  # where the table meets the wall

    @classmethod
    def for_size(cls, width: int, height: int) -> _Geometry:
        u = min(width / 480.0, height / 360.0)
        r_top = 72.0 * u
        y_top = 0.5 * height - 83.0 * u
        return cls(width, height, cx=0.5 * width, y_top=y_top, y_bot=y_top + 155.0 * u,
                   r_top=r_top, r_bot=0.9 * r_top, k=0.4, wall=0.055 * r_top,
                   horizon=0.5 * height - 36.0 * u)

    @property
    def unit(self) -> float:
        return self.r_top / 72.0


def _background(g: _Geometry, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The fixed scene without the mug, a light wall and a matte blue-grey textured table:
    (linear light, gamma-encoded), both float32 in [0, 1]."""
    h, w = g.height, g.width
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    xn, yn = x / w, y / h

    def noise(cell: float, amount: float) -> np.ndarray:
        small = rng.standard_normal((max(2, int(h / cell)), max(2, int(w / cell)))).astype(np.float32)
        return 1.0 + amount * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)

    wall = _to_linear((200, 205, 210)) * (1.05 - 0.25 * xn - 0.15 * yn)[..., None]
    wall = wall * noise(40.0, 0.01)[..., None]
    depth = np.clip((y - g.horizon) / (h - g.horizon), 0.0, 1.0)  # 0 at the back edge
    table = _to_linear((128, 113, 100)) * (0.75 + 0.35 * depth - 0.12 * xn)[..., None]
    grain = noise(1.5, 0.035) * noise(12.0, 0.03)
    table = table * grain[..., None]
    is_table = _smoothstep(g.horizon - 0.7, g.horizon + 0.7, y)[..., None]
    scene = wall * (1.0 - is_table) + table * is_table
    seam = 1.0 - 0.35 * np.exp(-(((y - g.horizon - 1.0) / 1.2) ** 2))  # contact line
    vignette = 1.0 - 0.18 * ((xn - 0.5) ** 2 + (yn - 0.5) ** 2) * 2.0
    linear = (scene * (seam * vignette)[..., None]).astype(np.float32)
    return linear, linear ** (1.0 / 2.2)


@dataclass
class _Mug:
    """Per-pixel mug geometry for one placement, over the mug's box ``roi`` of the image."""

    body: np.ndarray  # bool: outer side surface
    rim: np.ndarray  # bool: top of the wall
    inside: np.ndarray  # bool: interior seen through the opening
    alpha: np.ndarray  # float: anti-aliased silhouette coverage
    sin_t: np.ndarray  # sin of the surface angle (0 = facing the camera)
    h: np.ndarray  # height along the body, 0 = rim, 1 = base
    arc: np.ndarray  # surface coordinates in pixels: arc length and true height
    z: np.ndarray
    x: np.ndarray  # local (un-jittered) pixel coordinates
    y: np.ndarray
    roi: tuple[slice, slice]  # where these arrays sit in the image


def _mug_roi(g: _Geometry) -> tuple[slice, slice]:
    """A box that holds the mug and its contact shadow under any placement jitter."""
    m = 20.0 * g.unit
    x0, x1 = g.cx - g.r_top - m, g.cx + g.r_top + m
    y0, y1 = g.y_top - g.k * g.r_top - m, g.y_bot + g.k * g.r_bot + m
    return (slice(max(0, int(y0)), min(g.height, int(math.ceil(y1)))),
            slice(max(0, int(x0)), min(g.width, int(math.ceil(x1)))))


def _similarity(rng: np.random.Generator, g: _Geometry) -> tuple[float, float, float, float]:
    """Placement jitter: translation (pixels), scale and rotation (radians) about the base centre."""
    tx, ty = rng.uniform(-4.0, 4.0, size=2) * g.unit
    return float(tx), float(ty), 1.0 + rng.uniform(-0.02, 0.02), math.radians(rng.uniform(-1.5, 1.5))


def _to_local(g: _Geometry, pose: tuple[float, float, float, float], xx: np.ndarray,
              yy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image pixel coordinates -> the mug's rest-pose coordinates."""
    tx, ty, scale, angle = pose
    dx, dy = xx - g.cx - tx, yy - g.y_bot - ty
    ca, sa = math.cos(angle), math.sin(angle)
    return (ca * dx + sa * dy) / scale + g.cx, (-sa * dx + ca * dy) / scale + g.y_bot


def _place(g: _Geometry, pose: tuple[float, float, float, float]) -> _Mug:
    roi = _mug_roi(g)
    yy, xx = np.mgrid[roi[0], roi[1]].astype(np.float32)
    x, y = _to_local(g, pose, xx, yy)

    length = g.y_bot - g.y_top
    h = (y - g.y_top) / length
    for _ in range(4):  # solve y = y_top + h*L + k*r(h)*cos(theta) for the front surface
        r = g.r_top + (g.r_bot - g.r_top) * np.clip(h, 0.0, 1.0)
        s = np.clip((x - g.cx) / r, -1.0, 1.0)
        h = (y - g.y_top - g.k * r * np.sqrt(1.0 - s * s)) / length
    r = g.r_top + (g.r_bot - g.r_top) * np.clip(h, 0.0, 1.0)
    e_out = ((x - g.cx) / g.r_top) ** 2 + ((y - g.y_top) / (g.k * g.r_top)) ** 2
    ri = g.r_top - g.wall
    e_in = ((x - g.cx) / ri) ** 2 + ((y - g.y_top) / (g.k * ri)) ** 2
    opening = e_out <= 1.0
    body = (np.abs(x - g.cx) <= r) & (h >= 0.0) & (h <= 1.0) & ~opening
    inside = e_in <= 1.0
    rim = opening & ~inside
    hard = (body | opening).astype(np.float32)
    alpha = cv2.GaussianBlur(hard, (0, 0), 0.6)
    alpha = np.where(hard > 0, np.maximum(alpha, 0.5), np.minimum(alpha, 0.5))
    cos_e = math.sqrt(1.0 - g.k * g.k)
    return _Mug(body=body, rim=rim, inside=inside, alpha=alpha, sin_t=s, h=h,
                arc=r * np.arcsin(s), z=h * length / cos_e, x=x, y=y, roi=roi)


def _stain(g: _Geometry, mug: _Mug, size: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One irregular green stain in surface coordinates: (coverage alpha, dye density)."""
    cos_e = math.sqrt(1.0 - g.k * g.k)
    body_height = (g.y_bot - g.y_top) / cos_e
    lo, hi = _STAIN_RADIUS[size]
    for _ in range(50):
        r0 = g.r_top * rng.uniform(lo, hi)
        theta = rng.uniform(-0.75, 0.75)
        margin = r0 / body_height + 0.06
        hc = rng.uniform(margin, 1.0 - margin)
        sc = (g.r_top + (g.r_bot - g.r_top) * hc) * theta
        zc = hc * body_height
        # Components as (centre s, centre z, radius, harmonic amplitudes, phases).
        parts = [(sc, zc, r0, rng.uniform(0.05, 0.22, 6) / np.arange(2, 8) ** 0.7, rng.uniform(0, 2 * np.pi, 6))]
        for _ in range(rng.integers(0, 5)):  # satellite drops near the edge
            phi, dist = rng.uniform(0, 2 * np.pi), r0 * rng.uniform(0.9, 1.5)
            parts.append((sc + dist * math.cos(phi), zc + dist * math.sin(phi), r0 * rng.uniform(0.1, 0.25),
                          rng.uniform(0.0, 0.1, 6) / np.arange(2, 8), rng.uniform(0, 2 * np.pi, 6)))
        inner = np.full(mug.x.shape, -np.inf, dtype=np.float32)  # pixels inside the edge
        ds = mug.arc - sc
        for ps, pz, pr, amps, phases in parts:
            a, b = mug.arc - ps, mug.z - pz
            phi = np.arctan2(b, a)
            radius = pr * (1.0 + sum(amp * np.cos((i + 2) * phi + ph) for i, (amp, ph) in enumerate(zip(amps, phases))))
            inner = np.maximum(inner, radius - np.sqrt(a * a + b * b))
        if size != "small" and rng.random() < 0.5:  # a drip running down from the bottom
            wd = r0 * rng.uniform(0.15, 0.28)
            drip_len = r0 * rng.uniform(0.6, 1.6)
            top = zc + 0.5 * r0
            t = np.clip((mug.z - top) / drip_len, 0.0, 1.0)
            width = wd * (1.0 + 0.5 * t)  # gathers into a bead at the end
            d = np.sqrt((ds - 0.15 * r0 * np.sin(3.0 * t)) ** 2 + (mug.z - top - t * drip_len) ** 2)
            inner = np.maximum(inner, width - d)
        inner = np.where(mug.body, inner, -np.inf)
        area = int(np.count_nonzero(inner > 0))
        if area >= max(40.0 * g.unit**2, 0.5 * math.pi * r0 * r0):
            break
    coverage = np.clip(inner + 0.5, 0.0, 1.0) * (inner > 0)  # anti-aliased inside the edge
    rh, rw = mug.x.shape
    mottle = rng.standard_normal((max(2, rh // 10), max(2, rw // 10))).astype(np.float32)
    mottle = cv2.resize(mottle, (rw, rh), interpolation=cv2.INTER_CUBIC)
    base = rng.uniform(0.35, 0.8)
    ring_width = max(1.0, 0.12 * r0)  # coffee-ring effect: dye dries at the edge
    density = base * (1.0 + 0.25 * mottle) + rng.uniform(0.7, 1.1) * np.exp(-np.maximum(inner, 0.0) / ring_width)
    return coverage.astype(np.float32), np.maximum(density, 0.1).astype(np.float32) * (inner > 0)


def _render(g: _Geometry, background: tuple[np.ndarray, np.ndarray], rng: np.random.Generator,
            stain: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    """One frame: (BGR uint8 image, stain mask or None)."""
    pose = _similarity(rng, g)
    mug = _place(g, pose)
    gain = rng.uniform(0.88, 1.12)
    warmth = rng.uniform(-1.0, 1.0)
    white_balance = np.array([1.0 - 0.04 * warmth, 1.0, 1.0 + 0.04 * warmth], dtype=np.float32)
    azimuth = -0.55 + rng.normal(0.0, 0.07)  # key light from the front left, above
    elevation = 0.6 + rng.normal(0.0, 0.04)
    lx, ly, lz = math.sin(azimuth) * math.cos(elevation), math.sin(elevation), math.cos(azimuth) * math.cos(elevation)
    vz = math.sqrt(1.0 - g.k * g.k)  # direction to the camera is (0, k, vz)
    theta_h = math.atan2(lx, lz + vz) + rng.normal(0.0, 0.015)  # highlight angle on the body
    shadow_length = g.r_bot * rng.uniform(1.0, 1.3)

    s, h = mug.sin_t, np.clip(mug.h, 0.0, 1.0)
    c = np.sqrt(1.0 - s * s)
    theta = np.arcsin(s)
    # Outer body: key + weak fill from the right, darker near the table, a bit of table bounce.
    key = np.maximum(s * lx + c * lz, 0.0)
    fill = 0.25 * np.maximum(0.6 * s + 0.8 * c, 0.0)
    occlusion = 1.0 - 0.35 * np.exp(-(1.0 - h) * (g.y_bot - g.y_top) / (10.0 * g.unit))
    body = (0.22 + 0.72 * key + fill) * occlusion
    body_rgb = body[..., None] * np.array([0.84, 0.85, 0.85], dtype=np.float32)
    body_rgb = body_rgb + (0.04 * h**2)[..., None] * np.array([1.0, 0.85, 0.7], dtype=np.float32)
    spec = 0.55 * np.exp(-(((theta - theta_h) / 0.07) ** 2)) + 0.07 * np.exp(-(((theta - theta_h) / 0.35) ** 2))
    spec = spec * _smoothstep(0.0, 0.12, h) * _smoothstep(1.0, 0.8, h)
    # Rim: faces up. Interior: far inner wall, lit on the right, with the front rim's shadow.
    ri = g.r_top - g.wall
    glint = np.exp(-((((mug.x - g.cx) / g.r_top - math.sin(theta_h)) / 0.06) ** 2)) * (mug.y > g.y_top)
    rim_val = 0.25 + 0.7 * ly + 0.5 * glint
    xi = np.clip((mug.x - g.cx) / ri, -1.0, 1.0)
    inner_key = np.maximum(-xi * lx + np.sqrt(1.0 - xi * xi) * lz, 0.0)
    sx, sy = -0.35 * ri * lx / 0.43, -1.1 * g.k * ri  # 0.43 = |lx| of the nominal light
    lit_f = ((mug.x - g.cx - sx) / ri) ** 2 + ((mug.y - g.y_top - sy) / (g.k * ri)) ** 2
    inside_val = 0.12 + (0.1 + 0.55 * inner_key) * (0.25 + 0.75 * _smoothstep(1.25, 0.8, lit_f))
    mug_rgb = np.where(mug.body[..., None], body_rgb, 0.0)
    mug_rgb = np.where(mug.rim[..., None], (rim_val * 0.85)[..., None], mug_rgb)
    mug_rgb = np.where(mug.inside[..., None], (inside_val * 0.85)[..., None], mug_rgb)

    mask = None
    gloss: np.ndarray | float = 1.0
    if stain is not None:
        coverage, density = _stain(g, mug, stain, rng)
        transmit = np.exp(-density[..., None] * _DYE_ABSORPTION)
        mug_rgb = mug_rgb * (1.0 - coverage[..., None] * (1.0 - transmit))
        gloss = 1.0 - 0.5 * coverage  # dried dye is less glossy than the glaze
        mask = np.zeros((g.height, g.width), dtype=np.uint8)
        mask[mug.roi] = np.where(coverage > 0, 255, 0)
    mug_rgb = mug_rgb + np.where(mug.body, spec * gloss, 0.0)[..., None]

    # Soft shadow on the table, cast back and to the right: smooth, so computed at 1/4 size.
    cw, ch = max(2, g.width // 4), max(2, g.height // 4)
    yy, xx = np.mgrid[0:ch, 0:cw].astype(np.float32)
    sx_, sy_ = _to_local(g, pose, (xx + 0.5) * (g.width / cw) - 0.5, (yy + 0.5) * (g.height / ch) - 0.5)
    soft_shadow = _table_shadow(g, sx_, sy_, lx, shadow_length)
    soft_shadow = cv2.resize(soft_shadow, (g.width, g.height), interpolation=cv2.INTER_LINEAR)
    # Near the base a sharp contact shadow, in the mug's box.
    qx, qy = (mug.x - g.cx) / g.r_bot, (mug.y - g.y_bot) / (g.k * g.r_bot)
    contact = 0.6 * np.exp(-np.maximum(np.sqrt(qx * qx + qy * qy) - 1.0, 0.0) / 0.035) * (qy > -0.2)
    lit = 1.0 - soft_shadow
    lit[mug.roi] = np.minimum(lit[mug.roi], 1.0 - contact)

    # Encode: gamma commutes with the multiplicative lighting, so only the mug's box needs pow().
    exposure = (gain * white_balance) ** (1.0 / 2.2)
    img = background[1] * (lit ** (1.0 / 2.2))[..., None]
    a = mug.alpha[..., None]
    box = mug_rgb * a + background[0][mug.roi] * lit[mug.roi][..., None] * (1.0 - a)
    img[mug.roi] = np.clip(box, 0.0, 1.0) ** (1.0 / 2.2)
    img = (255.0 * exposure) * img
    noise = rng.standard_normal(img.shape, dtype=np.float32)
    img = img + noise * np.sqrt(2.25 + 0.02 * np.maximum(img, 0.0))  # read noise + shot noise
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), mask


def _table_shadow(g: _Geometry, x: np.ndarray, y: np.ndarray, lx: float, length: float) -> np.ndarray:
    """The mug's soft shadow: the base ellipse swept back-right, widening and fading."""
    qx, qy = (x - g.cx) / g.r_bot, (y - g.y_bot) / (g.k * g.r_bot)
    vx, vy = -lx / 0.43 * 0.9 * length / g.r_bot, -0.8 * length / g.r_bot
    t = np.clip((qx * vx + qy * vy) / (vx * vx + vy * vy), 0.0, 1.0)
    dist = np.sqrt((qx - t * vx) ** 2 + (qy - t * vy) ** 2)
    soft = 0.12 + 0.45 * t
    return ((1.0 - _smoothstep(1.0 - soft, 1.0 + soft, dist)) * (0.7 - 0.35 * t)).astype(np.float32)


def _write(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")


def generate_station_dataset(out_dir: str | Path, *, n_train: int = 40, n_test_good: int = 10,
                             n_test_per_size: int = 6, width: int = 480, height: int = 360,
                             seed: int = 0) -> Path:
    """Write an MVTec-layout dataset: out_dir/train/good/*.png, out_dir/test/good/*.png,
    out_dir/test/stain_small|stain_medium|stain_large/*.png and out_dir/ground_truth/stain_<size>/<name>_mask.png
    (uint8, 255 = stain). Returns out_dir.

    Images are 8-bit BGR PNGs named 000.png, 001.png, ...; masks are single-channel and mark
    exactly the pixels the stain was drawn on. The scene scales with
    ``min(width / 480, height / 360)``; at 480x360 small stains cover about 60-160 pixels,
    medium 300-800 and large 1300-2700 (of about 22000 on the mug's face). Files already in
    ``out_dir`` with the same names are overwritten and others are left alone, so use a fresh
    directory.
    """
    if min(n_train, n_test_good, n_test_per_size) < 0:
        raise ValueError("image counts must be >= 0")
    if width < 64 or height < 48:
        raise ValueError(f"image size {width}x{height} is too small (minimum 64x48)")
    root = Path(out_dir)
    geometry = _Geometry.for_size(width, height)
    background = _background(geometry, np.random.default_rng([seed, _STREAM["background"]]))
    jobs = [("train/good", "train", None, n_train), ("test/good", "test_good", None, n_test_good)]
    jobs += [(f"test/stain_{size}", size, size, n_test_per_size) for size in STAIN_SIZES]
    for folder, stream, stain, count in jobs:
        (root / folder).mkdir(parents=True, exist_ok=True)
        if stain is not None:
            (root / "ground_truth" / f"stain_{stain}").mkdir(parents=True, exist_ok=True)
        for i in range(count):
            rng = np.random.default_rng([seed, _STREAM[stream], i])
            image, mask = _render(geometry, background, rng, stain)
            _write(root / folder / f"{i:03d}.png", image)
            if mask is not None:
                _write(root / "ground_truth" / f"stain_{stain}" / f"{i:03d}_mask.png", mask)
    return root
