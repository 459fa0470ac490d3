"""Procedural renderer of the shapes world: one object on a textured background.

Everything is drawn with torch on a coordinate grid, so the same code renders
one scene on a CPU (``render``) and tens of thousands a second on a GPU
(``render_batch``).  Coordinates are normalised to [-1, 1] with y pointing down.
Shapes are drawn at 4x supersampling and averaged down, which anti-aliases the
edges and gives a soft coverage from which the boolean mask is taken (>= 0.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from probe.errors import ProbeError

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "heart")
COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple")
BACKGROUNDS: tuple[str, ...] = ("grass", "water", "sand", "snow", "wood")
TAGS: tuple[str, ...] = ("none", "dot", "bar")

#: The vocabulary of each categorical attribute, in a fixed order (index = class id).
VOCAB: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "color": COLORS,
    "background": BACKGROUNDS,
    "tag": TAGS,
}

IMAGE_SIZE = 32
SUPERSAMPLE = 4

# Saturated object colours, chosen to stand apart from the muted textures below.
COLOR_RGB = torch.tensor(
    [
        [0.92, 0.10, 0.10],  # red
        [0.25, 0.92, 0.20],  # green
        [0.12, 0.22, 0.98],  # blue
        [0.98, 0.88, 0.10],  # yellow
        [0.62, 0.16, 0.82],  # purple
    ]
)
BACKGROUND_RGB = torch.tensor(
    [
        [0.20, 0.42, 0.12],  # grass
        [0.12, 0.38, 0.60],  # water
        [0.84, 0.73, 0.50],  # sand
        [0.92, 0.94, 0.97],  # snow
        [0.50, 0.31, 0.16],  # wood
    ]
)
OUTLINE_RGB = torch.tensor([0.06, 0.06, 0.06])
TAG_RGB = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.10, 0.85], [0.10, 0.95, 0.95]])  # none, dot, bar

# Bounds of the random geometry (normalised units).
SIZE_RANGE = (0.62, 0.80)  # object "radius"; the object spans roughly 2*size of the 2-unit image
OFFSET_RANGE = 0.12  # centre offset in x and y
ROTATION_RANGE = math.radians(12.0)


class WorldError(ProbeError):
    """A shapes-world argument (attribute name or value) is unknown."""


def check_seed(seed, name: str = "seed") -> int:
    """A seed as numpy's generators take it: an int >= 0 (a negative one raised numpy's bare ValueError)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise WorldError(f"{name}={seed!r} must be an int >= 0")
    return int(seed)


@dataclass(frozen=True)
class Scene:
    """One rendered scene: ``image`` uint8 (H, W, 3), ``mask`` bool (H, W), ``attributes``."""

    image: np.ndarray
    mask: np.ndarray
    attributes: dict[str, Any] = field(default_factory=dict)

    def image01(self) -> torch.Tensor:
        """The image as a float tensor (3, H, W) in [0, 1]."""
        return torch.from_numpy(self.image).permute(2, 0, 1).float() / 255.0

    def __repr__(self) -> str:
        a = self.attributes
        return (
            f"Scene({a.get('color')} {a.get('shape')} on {a.get('background')}, tag={a.get('tag')}, "
            f"size={a.get('size', 0):.2f}, image={self.image.shape}, mask_pixels={int(self.mask.sum())})"
        )

    def _repr_html_(self) -> str:  # pragma: no cover - notebook display
        import base64
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(self.image).resize((128, 128), Image.NEAREST).save(buf, format="PNG")
        data = base64.b64encode(buf.getvalue()).decode()
        return f'<figure><img src="data:image/png;base64,{data}"/><figcaption>{self!r}</figcaption></figure>'


def attribute_index(attribute: str, value: str | int) -> int:
    """Index of ``value`` in the vocabulary of ``attribute`` (names or indices accepted)."""
    if attribute not in VOCAB:
        raise WorldError(f"unknown attribute {attribute!r}: use one of {sorted(VOCAB)}")
    names = VOCAB[attribute]
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if 0 <= int(value) < len(names):
            return int(value)
        raise WorldError(f"{attribute}={value} is out of range: use 0..{len(names) - 1} or one of {list(names)}")
    if value not in names:
        raise WorldError(f"unknown {attribute} {value!r}: use one of {list(names)}")
    return names.index(value)


# ---------------------------------------------------------------------------
# Shapes: inside tests in the object's local frame (unit "radius", v down).
# ---------------------------------------------------------------------------

def _polygon_inside(u: torch.Tensor, v: torch.Tensor, pts: list[tuple[float, float]]) -> torch.Tensor:
    """Even-odd crossing test of points (u, v) against a closed polygon."""
    inside = torch.zeros_like(u, dtype=torch.bool)
    n = len(pts)
    for i in range(n):
        x1, y1 = pts[i]
        x2, y2 = pts[(i + 1) % n]
        if y1 == y2:
            continue
        crosses = (v >= min(y1, y2)) & (v < max(y1, y2))
        x_at = x1 + (v - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (u < x_at)
    return inside


_STAR = [
    (
        (1.0 if k % 2 == 0 else 0.45) * math.sin(k * math.pi / 5),
        -(1.0 if k % 2 == 0 else 0.45) * math.cos(k * math.pi / 5) + 0.08,
    )
    for k in range(10)
]
_TRIANGLE = [(0.0, -0.92), (0.92, 0.68), (-0.92, 0.68)]


def _shape_inside(shape: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    name = SHAPES[shape]
    if name == "circle":
        return u * u + v * v < 0.82**2
    if name == "square":
        return torch.maximum(u.abs(), v.abs()) < 0.70
    if name == "triangle":
        return _polygon_inside(u, v, _TRIANGLE)
    if name == "star":
        return _polygon_inside(u, v, _STAR)
    if name == "cross":
        au, av = u.abs(), v.abs()
        return ((au < 0.30) & (av < 0.92)) | ((av < 0.30) & (au < 0.92))
    if name == "heart":
        x = u * 1.18
        y = -v * 1.18 + 0.12
        return (x * x + y * y - 1) ** 3 - x * x * y**3 < 0
    raise AssertionError(name)


# ---------------------------------------------------------------------------
# Backgrounds: textures drawn directly at the output resolution.
# ---------------------------------------------------------------------------

def _smooth_noise(b: int, h: int, w: int, cells: tuple[int, int], gen, device) -> torch.Tensor:
    coarse = torch.rand(b, 1, cells[0], cells[1], generator=gen, device=device)
    return F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)


def _backgrounds(bg: torch.Tensor, size: int, gen, device) -> torch.Tensor:
    """(B, 3, size, size) textures for background indices ``bg``."""
    b = bg.shape[0]
    base = BACKGROUND_RGB.to(device)[bg].view(b, 3, 1, 1)
    ys = torch.linspace(-1, 1, size, device=device).view(1, 1, size, 1)
    xs = torch.linspace(-1, 1, size, device=device).view(1, 1, 1, size)
    pix = torch.rand(b, 1, size, size, generator=gen, device=device)
    phase = torch.rand(b, 3, 1, 1, generator=gen, device=device) * 2 * math.pi
    out = torch.empty(b, 3, size, size, device=device)

    # grass: vertical blades, light and dark.
    streaks = _smooth_noise(b, size, size, (size // 6, size), gen, device)
    grass = base * (0.65 + 0.7 * streaks) * (0.9 + 0.2 * pix)
    # water: wavy horizontal highlights.
    wave = 0.5 + 0.5 * torch.sin(7.0 * math.pi * ys + 1.2 * torch.sin(3.0 * xs + phase[:, :1]) + phase[:, 1:2])
    water = base + 0.22 * wave**3 * torch.tensor([0.7, 0.8, 1.0], device=device).view(1, 3, 1, 1) + 0.04 * (pix - 0.5)
    # sand: fine speckle with a few darker grains.
    grains = (pix > 0.9).float()
    sand = base * (0.93 + 0.14 * torch.rand(b, 1, size, size, generator=gen, device=device)) - 0.18 * grains
    # snow: near white, soft blue-grey shading and sparse grey flecks.
    shade = _smooth_noise(b, size, size, (4, 4), gen, device)
    flecks = (pix > 0.94).float()
    snow = base - 0.07 * shade * torch.tensor([1.0, 0.8, 0.4], device=device).view(1, 3, 1, 1) - 0.15 * flecks
    # wood: horizontal grain bands, warped.
    warp = _smooth_noise(b, size, size, (3, size // 4), gen, device)
    grain = 0.5 + 0.5 * torch.sin(10.0 * math.pi * ys + 4.0 * warp + phase[:, 2:3])
    wood = base * (0.72 + 0.45 * grain) * (0.95 + 0.1 * pix)

    for k, tex in enumerate((grass, water, sand, snow, wood)):
        sel = bg == k
        if sel.any():
            out[sel] = tex[sel]
    return out.clamp(0, 1)


# ---------------------------------------------------------------------------
# Batched rendering.
# ---------------------------------------------------------------------------

def sample_attributes(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw ``n`` attribute sets uniformly (indices for categorical attributes)."""
    return {
        "shape": rng.integers(0, len(SHAPES), n),
        "color": rng.integers(0, len(COLORS), n),
        "background": rng.integers(0, len(BACKGROUNDS), n),
        "tag": rng.integers(0, len(TAGS), n),
        "size": rng.uniform(*SIZE_RANGE, n),
        "x": rng.uniform(-OFFSET_RANGE, OFFSET_RANGE, n),
        "y": rng.uniform(-OFFSET_RANGE, OFFSET_RANGE, n),
        "rotation": rng.uniform(-ROTATION_RANGE, ROTATION_RANGE, n),
    }


@torch.no_grad()
def object_coverage(attributes: Mapping[str, Any], size: int = IMAGE_SIZE,
                    device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The objects' coverage and outline-grown coverage, (B, 1, ss, ss) at supersampled resolution (ss = size x
    SUPERSAMPLE), from the shape/size/x/y/rotation arrays of ``attributes``; step 1 of :func:`render_batch`."""
    device = torch.device(device)

    def t(name, dtype):
        return torch.as_tensor(np.asarray(attributes[name]), dtype=dtype, device=device).reshape(-1)

    shape = t("shape", torch.long)
    radius, cx, cy, rot = (t(k, torch.float32) for k in ("size", "x", "y", "rotation"))
    b = shape.shape[0]
    ss = size * SUPERSAMPLE
    coords = (torch.arange(ss, device=device, dtype=torch.float32) + 0.5) / ss * 2 - 1
    gy, gx = torch.meshgrid(coords, coords, indexing="ij")
    dx = gx.unsqueeze(0) - cx.view(b, 1, 1)
    dy = gy.unsqueeze(0) - cy.view(b, 1, 1)
    c, s = torch.cos(rot).view(b, 1, 1), torch.sin(rot).view(b, 1, 1)
    u = (dx * c + dy * s) / radius.view(b, 1, 1)
    v = (-dx * s + dy * c) / radius.view(b, 1, 1)
    inside = torch.zeros(b, ss, ss, dtype=torch.bool, device=device)
    for k in range(len(SHAPES)):
        sel = shape == k
        if sel.any():
            inside[sel] = _shape_inside(k, u[sel], v[sel])
    obj = inside.float().unsqueeze(1)
    pad = SUPERSAMPLE - 1  # outline about 0.75 output pixels wide
    return obj, F.max_pool2d(obj, kernel_size=2 * pad + 1, stride=1, padding=pad)


def render_batch(
    attributes: Mapping[str, Any],
    generator: torch.Generator | None = None,
    device: str | torch.device = "cpu",
    size: int = IMAGE_SIZE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render a batch: returns images (B, 3, size, size) float in [0, 1] and masks (B, size, size) bool.

    ``attributes`` maps shape/color/background/tag to index arrays and size/x/y/rotation to
    float arrays (see :func:`sample_attributes`); ``generator`` (on ``device``) drives the textures.
    """
    device = torch.device(device)

    def t(name, dtype):
        return torch.as_tensor(np.asarray(attributes[name]), dtype=dtype, device=device).reshape(-1)

    shape, color, bg, tag = (t(k, torch.long) for k in ("shape", "color", "background", "tag"))
    b = shape.shape[0]
    ss = size * SUPERSAMPLE

    # 1. Object coverage and outline at supersampled resolution.
    obj, grown = object_coverage(attributes, size, device)
    coords = (torch.arange(ss, device=device, dtype=torch.float32) + 0.5) / ss * 2 - 1
    gy, gx = torch.meshgrid(coords, coords, indexing="ij")

    # 2. Corner tag ("watermark") at supersampled resolution.
    tag_cov = torch.zeros(b, 1, ss, ss, device=device)
    dot = ((gx + 0.78) ** 2 + (gy + 0.78) ** 2 < 0.16**2).float()
    bar = (((gx - 0.70).abs() < 0.22) & ((gy - 0.82).abs() < 0.09)).float()
    tag_cov[tag == 1] = dot
    tag_cov[tag == 2] = bar

    obj_c = F.avg_pool2d(obj, SUPERSAMPLE)
    grown_c = F.avg_pool2d(grown, SUPERSAMPLE)
    tag_c = F.avg_pool2d(tag_cov, SUPERSAMPLE)

    # 3. Composite: background, outline, object fill, tag on top.
    img = _backgrounds(bg, size, generator, device)
    fill = COLOR_RGB.to(device)[color].view(b, 3, 1, 1)
    outline = OUTLINE_RGB.to(device).view(1, 3, 1, 1)
    img = img * (1 - grown_c) + outline * (grown_c - obj_c) + fill * obj_c
    img = img * (1 - tag_c) + TAG_RGB.to(device)[tag].view(b, 3, 1, 1) * tag_c
    mask = (obj_c[:, 0] >= 0.5) & (tag_c[:, 0] < 0.5)
    return img.clamp(0, 1), mask


def _scene_attributes(rng: np.random.Generator, given: Mapping[str, Any]) -> dict[str, Any]:
    drawn = {k: v[0] for k, v in sample_attributes(1, rng).items()}
    attrs: dict[str, Any] = {}
    for key in ("shape", "color", "background", "tag"):
        idx = attribute_index(key, given[key]) if given.get(key) is not None else int(drawn[key])
        attrs[key] = VOCAB[key][idx]
    bounds = {"size": SIZE_RANGE, "x": (-OFFSET_RANGE, OFFSET_RANGE), "y": (-OFFSET_RANGE, OFFSET_RANGE),
              "rotation": (-ROTATION_RANGE, ROTATION_RANGE)}
    for key, (lo, hi) in bounds.items():
        value = given.get(key)
        if value is None:
            value = float(drawn[key])
        elif not (lo - 1e-9 <= float(value) <= hi + 1e-9):
            raise WorldError(f"{key}={value} is outside the renderer's bounds [{lo:.3f}, {hi:.3f}]: pass a value inside them")
        attrs[key] = float(value)
    return attrs


def render(
    shape: str | int | Mapping[str, Any] | None = None,
    color: str | int | None = None,
    background: str | int | None = None,
    tag: str | int | None = None,
    *,
    size: float | None = None,
    x: float | None = None,
    y: float | None = None,
    rotation: float | None = None,
    seed: int = 0,
) -> Scene:
    """Render one scene; attributes not given are drawn from ``seed`` (same seed, same scene).

    ``shape`` may also be a mapping of attributes (e.g. a Scene's ``attributes``), which then
    supplies every attribute it names.
    """
    if isinstance(shape, Mapping):
        given = dict(shape)
        unknown = set(given) - {"shape", "color", "background", "tag", "size", "x", "y", "rotation"}
        if unknown:
            raise WorldError(f"unknown attributes {sorted(unknown)}: use shape, color, background, tag, size, x, y, rotation")
        return render(given.get("shape"), given.get("color", color), given.get("background", background),
                      given.get("tag", tag), size=given.get("size", size), x=given.get("x", x),
                      y=given.get("y", y), rotation=given.get("rotation", rotation), seed=seed)
    rng = np.random.default_rng(check_seed(seed))
    attrs = _scene_attributes(
        rng,
        {"shape": shape, "color": color, "background": background, "tag": tag,
         "size": size, "x": x, "y": y, "rotation": rotation},
    )
    batch = {k: np.array([attribute_index(k, attrs[k]) if k in VOCAB else attrs[k]]) for k in attrs}
    gen = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
    img, mask = render_batch(batch, generator=gen, device="cpu")
    image = (img[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    return Scene(image=image, mask=mask[0].numpy(), attributes=attrs)


def sample_scene(rng: np.random.Generator | int) -> Scene:
    """A scene with every attribute drawn from ``rng`` (a numpy Generator or an int seed)."""
    if isinstance(rng, (int, np.integer)):
        rng = np.random.default_rng(int(rng))
    return render(seed=int(rng.integers(0, 2**62)))
