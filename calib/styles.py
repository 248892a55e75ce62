"""Style proxies: deterministic image degradations that imitate the hard WFLW conditions.

When no AVS synthetic set exists, a calibration set can still cover the conditions the deployed
model meets (bad light, blur, noise, compression, make-up, occlusion) by degrading real annotated
faces. Each style is a function of ``(image, points, rng)``:

- ``image``: (H, W, 3) uint8 BGR, the part of the frame around the face;
- ``points``: (K, 2) landmarks in that image's pixels (68 or 98 points for ``make_up``);
- ``rng``: a :class:`numpy.random.Generator`; every random choice is drawn from it, so the same
  generator state gives the same image and parameters.

It returns a :class:`StyledImage`: the degraded image (same shape and dtype) and the parameters
drawn, as JSON-ready values that go into the calibration manifest. Styles never move pixels
geometrically, so the landmarks stay valid. Sizes (blur lengths, patch sizes) are drawn as
fractions of the face's side (the longer side of the landmarks' box) and recorded both ways, so a
style looks the same on a 450-pixel and a 1080p photograph.

Styles are registered by name in :data:`STYLES` (see :func:`register_style`); ``attribute`` names
the WFLW attribute (``illumination``, ``make_up``, ``occlusion``, ``blur``; keys of
:data:`runtime.metrics.WFLW_ATTRIBUTES`) a style imitates, which the manifest records for each sample.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable

import cv2
import numpy as np

from runtime.errors import unknown_name
from runtime.layouts import face_region
from runtime.metrics import WFLW_ATTRIBUTES


@dataclass(frozen=True)
class StyledImage:
    """What a style returns.

    Attributes:
        image: (H, W, 3) uint8 BGR, the input's shape.
        parameters: the values drawn (JSON-ready), for the manifest.
    """

    image: np.ndarray
    parameters: dict[str, Any]


StyleFunction = Callable[[np.ndarray, np.ndarray, np.random.Generator], StyledImage]


@dataclass(frozen=True)
class Style:
    """One registered style proxy.

    Attributes:
        name: registry name (also the manifest's ``style``).
        function: ``(image, points, rng) -> StyledImage``.
        attribute: the WFLW attribute it imitates, or ``None``.
        description: one line for ``--help`` and the docs.
    """

    name: str
    function: StyleFunction
    attribute: str | None
    description: str


STYLES: dict[str, Style] = {}


def register_style(name: str, attribute: str | None, description: str) -> Callable[[StyleFunction], StyleFunction]:
    """Decorator adding a style function to :data:`STYLES` under ``name``."""

    def decorate(function: StyleFunction) -> StyleFunction:
        if name in STYLES:
            raise ValueError(f"style '{name}' is registered twice")
        if attribute is not None and attribute not in WFLW_ATTRIBUTES:
            raise ValueError(f"style '{name}': attribute '{attribute}' is not one of {WFLW_ATTRIBUTES}")
        STYLES[name] = Style(name, function, attribute, description)
        return function

    return decorate


def get_style(name: str) -> Style:
    """Look a style up by name; an unknown name raises a :class:`UsageError` listing the valid ones."""
    try:
        return STYLES[name]
    except KeyError:
        raise unknown_name("style", name, list(STYLES)) from None


def apply_style(name: str, image: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> StyledImage:
    """Apply the style ``name`` to a BGR uint8 image whose face has landmarks ``points``."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"styles take (H, W, 3) uint8 BGR images, got {image.shape} {image.dtype}")
    styled = get_style(name).function(image, np.asarray(points, dtype=np.float64), rng)
    if styled.image.shape != image.shape or styled.image.dtype != np.uint8:
        raise RuntimeError(f"style '{name}' returned {styled.image.shape} {styled.image.dtype} for {image.shape} uint8")
    return styled


def style_seed(seed: int, style: str, image_sha256: str, variant: int) -> np.random.SeedSequence:
    """The seed of one styled variant: a function of the run's seed, the style, the image content and the variant.

    Keyed by content rather than by position, so a variant's draw does not change when other images
    are added to the source folder or the folder is moved.
    """
    style_key = int.from_bytes(hashlib.sha256(style.encode()).digest()[:8], "little")
    image_key = int(image_sha256[:16], 16) if image_sha256 else 0
    return np.random.SeedSequence([seed, style_key, image_key, variant])


# ---------------------------------------------------------------------------------------------------
# Helpers



def face_side(points: np.ndarray) -> float:
    """Longer side of the landmarks' bounding box, in pixels (at least 1)."""
    extent = np.ptp(np.asarray(points, dtype=np.float64), axis=0)
    return float(max(extent.max(), 1.0))


def face_centre(points: np.ndarray) -> np.ndarray:
    """Centre of the landmarks' bounding box."""
    points = np.asarray(points, dtype=np.float64)
    return (points.min(axis=0) + points.max(axis=0)) / 2.0


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _rounded(value: float, digits: int = 4) -> float:
    return round(float(value), digits)


def _colour(rng: np.random.Generator, palette: dict[str, tuple[int, int, int]], jitter: float) -> tuple[str, list[int]]:
    """A named BGR colour from ``palette`` with a random jitter per channel."""
    name = str(rng.choice(sorted(palette)))
    colour = np.asarray(palette[name], dtype=np.float64) + rng.uniform(-jitter, jitter, size=3)
    return name, [int(c) for c in np.clip(np.rint(colour), 0, 255)]


def _polygon_mask(shape: tuple[int, int], polygons: list[np.ndarray]) -> np.ndarray:
    """(H, W) float32 mask, 1 inside any polygon (anti-aliased edges)."""
    mask = np.zeros(shape, dtype=np.uint8)
    for polygon in polygons:
        # 4 fractional bits keep sub-pixel landmark positions.
        cv2.fillPoly(mask, [np.rint(polygon * 16).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=4)
    return mask.astype(np.float32) / 255.0


def _feather(mask: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(mask, (0, 0), sigmaX=max(sigma, 0.3))


def _blend(image: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``image`` where mask is 0, ``target`` where it is 1 (float, (H, W) mask)."""
    weight = mask[..., None]
    return image.astype(np.float32) * (1.0 - weight) + target * weight


# ---------------------------------------------------------------------------------------------------
# Illumination


@register_style(
    "illumination_gradient", "illumination", "directional light: brighter on one side, falling off across the face"
)
def illumination_gradient(image: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> StyledImage:
    angle = rng.uniform(0.0, 360.0)
    strength = rng.uniform(0.45, 0.85)
    ramp = rng.uniform(0.6, 1.4)  # ramp length in face sides
    lit_gain = 1.0 + 0.3 * strength
    shadow_gain = 1.0 - strength
    side, centre = face_side(points), face_centre(points)
    direction = np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))])
    height, width = image.shape[:2]
    xs = np.arange(width, dtype=np.float32) - centre[0]
    ys = np.arange(height, dtype=np.float32) - centre[1]
    along = (xs[None, :] * direction[0] + ys[:, None] * direction[1]) / (ramp * side)  # (H, W)
    position = np.clip(along + 0.5, 0.0, 1.0)
    position = position * position * (3.0 - 2.0 * position)  # smoothstep: no visible kink at the ends
    gain = lit_gain + (shadow_gain - lit_gain) * position
    styled = image.astype(np.float32) * gain[..., None]
    return StyledImage(
        _to_uint8(styled),
        {
            "light_angle_degrees": _rounded(angle, 2),
            "strength": _rounded(strength),
            "ramp_face_sides": _rounded(ramp),
            "lit_gain": _rounded(lit_gain),
            "shadow_gain": _rounded(shadow_gain),
        },
    )


@register_style("low_light", "illumination", "under-exposure: darker, gamma-crushed shadows, amplified noise")
def low_light(image: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> StyledImage:
    exposure = rng.uniform(0.35, 0.7)
    gamma = rng.uniform(1.3, 2.0)
    noise_sigma = rng.uniform(1.5, 5.0)  # grey levels, after darkening
    values = exposure * (image.astype(np.float32) / 255.0) ** gamma * 255.0
    values += rng.normal(0.0, noise_sigma, size=image.shape).astype(np.float32)
    return StyledImage(
        _to_uint8(values),
        {"exposure": _rounded(exposure), "gamma": _rounded(gamma), "noise_sigma": _rounded(noise_sigma)},
    )


@register_style("colour_cast", "illumination", "white-balance error: per-channel gains along a random hue")
def colour_cast(image: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> StyledImage:
    hue = rng.uniform(0.0, 360.0)
    strength = rng.uniform(0.15, 0.35)
    # A unit direction in the plane orthogonal to grey (1, 1, 1): changes colour, keeps mean brightness.
    first = np.array([1.0, -1.0, 0.0]) / np.sqrt(2.0)
    second = np.array([1.0, 1.0, -2.0]) / np.sqrt(6.0)
    direction = np.cos(np.radians(hue)) * first + np.sin(np.radians(hue)) * second
    gains = 1.0 + strength * direction  # B, G, R
    styled = image.astype(np.float32) * gains.astype(np.float32)
    return StyledImage(
        _to_uint8(styled),
        {"hue_degrees": _rounded(hue, 2), "strength": _rounded(strength), "gains_bgr": [_rounded(g) for g in gains]},
    )


# ---------------------------------------------------------------------------------------------------
# Blur, noise, compression


def motion_kernel(length: int, angle_degrees: float) -> np.ndarray:
    """(L, L) float32 line kernel of ``length`` pixels through the centre at ``angle_degrees``, sum 1."""
    kernel = np.zeros((length, length), dtype=np.float32)
    kernel[length // 2, :] = 1.0
    centre = ((length - 1) / 2.0, (length - 1) / 2.0)
    rotation = cv2.getRotationMatrix2D(centre, angle_degrees, 1.0)
    kernel = cv2.warpAffine(kernel, rotation, (length, length), flags=cv2.INTER_LINEAR)
    return kernel / kernel.sum()


def disc_kernel(radius: float) -> np.ndarray:
    """Square float32 kernel of a disc of ``radius`` pixels with an anti-aliased rim, sum 1."""
    half = int(np.ceil(radius))
    offsets = np.arange(-half, half + 1, dtype=np.float32)
    distance = np.hypot(offsets[None, :], offsets[:, None])
    kernel = np.clip(radius + 0.5 - distance, 0.0, 1.0)
    return (kernel / kernel.sum()).astype(np.float32)


@register_style("motion_blur", "blur", "camera or head motion: a line kernel at a random angle")
def motion_blur(image: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> StyledImage:
    angle = rng.uniform(0.0, 180.0)
    fraction = rng.uniform(0.03, 0.08)
    length = max(3, round(fraction * face_side(points)) | 1)  # odd, so the kernel is centred
    styled = cv2.filter2D(image, -1, motion_kernel(length, angle), borderType=cv2.BORDER_REFLECT_101)
    return StyledImage(
        styled,
        {"angle_degrees": _rounded(angle, 2), "length_face_fraction": _rounded(fraction), "length_pixels": length},
    )


@register_style("defocus_blur", "blur", "out of focus: a disc (pillbox) kernel")
def defocus_blur(image: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> StyledImage:
    fraction = rng.uniform(0.012, 0.035)
    radius = max(1.5, fraction * face_side(points))
    styled = cv2.filter2D(image, -1, disc_kernel(radius), borderType=cv2.BORDER_REFLECT_101)
    return StyledImage(styled, {"radius_face_fraction": _rounded(fraction), "radius_pixels": _rounded(radius, 2)})


@register_style(
    "sensor_noise", None, "sensor noise: Gaussian read noise plus signal-dependent (Poisson-like) shot noise"
)
def sensor_noise(image: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> StyledImage:
    read_sigma = rng.uniform(3.0, 10.0)  # grey levels
    shot_gain = rng.uniform(0.3, 1.5)  # variance per grey level of signal, as photon noise scales
    values = image.astype(np.float32)
    sigma = np.sqrt(read_sigma**2 + shot_gain * values)
    values += rng.standard_normal(size=image.shape, dtype=np.float32) * sigma
    return StyledImage(_to_uint8(values), {"read_sigma": _rounded(read_sigma), "shot_gain": _rounded(shot_gain)})


@register_style("jpeg_artefacts", None, "heavy JPEG compression: blocking and ringing at quality 5-20")
def jpeg_artefacts(image: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> StyledImage:
    quality = int(rng.integers(5, 21))
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV failed to JPEG-encode an image")
    styled = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    return StyledImage(styled, {"quality": quality})


# ---------------------------------------------------------------------------------------------------
# Make-up and occlusion

LIPSTICK_BGR = {
    "red": (40, 30, 185),
    "pink": (150, 100, 215),
    "plum": (85, 30, 110),
    "coral": (80, 115, 235),
    "nude": (105, 125, 170),
}
EYESHADOW_BGR = {
    "brown": (40, 70, 110),
    "smoky": (45, 40, 40),
    "blue": (160, 90, 40),
    "purple": (130, 50, 100),
    "gold": (60, 160, 200),
}


def _eyeshadow_polygon(eye: np.ndarray, scale_x: float, scale_y: float, lift: float) -> np.ndarray:
    """The eye contour scaled about its centre and lifted by ``lift`` eye widths (over the eyelid)."""
    centre = eye.mean(axis=0)
    width = max(float(np.ptp(eye[:, 0])), 1.0)
    scaled = (eye - centre) * np.array([scale_x, scale_y]) + centre
    return scaled - np.array([0.0, lift * width])


@register_style(
    "make_up", "make_up", "lipstick on the lip polygon and eyeshadow above each eye, placed from the landmarks"
)
def make_up(image: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> StyledImage:
    lips = face_region(points, "lips")
    eyes = [face_region(points, "left_eye"), face_region(points, "right_eye")]
    lip_name, lip_colour = _colour(rng, LIPSTICK_BGR, 20.0)
    lip_alpha = rng.uniform(0.45, 0.8)
    shadow_name, shadow_colour = _colour(rng, EYESHADOW_BGR, 20.0)
    shadow_alpha = rng.uniform(0.3, 0.6)
    scale_x, scale_y, lift = rng.uniform(1.3, 1.6), rng.uniform(2.0, 3.0), rng.uniform(0.1, 0.25)
    side = face_side(points)
    shape = image.shape[:2]

    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    lip_mask = _feather(_polygon_mask(shape, [lips]), 0.006 * side)
    # Keep the lips' shading: the colour is modulated by each pixel's brightness relative to the lips' mean.
    inside = lip_mask > 0.5
    mean_grey = float(grey[inside].mean()) if inside.any() else float(grey.mean())
    shading = np.clip(grey / max(mean_grey, 1.0), 0.5, 1.5)[..., None]
    styled = _blend(image, np.asarray(lip_colour, np.float32) * shading, lip_alpha * lip_mask)

    shadow = _polygon_mask(shape, [_eyeshadow_polygon(eye, scale_x, scale_y, lift) for eye in eyes])
    opening = _polygon_mask(shape, [(eye - eye.mean(axis=0)) * 1.1 + eye.mean(axis=0) for eye in eyes])
    shadow_mask = _feather(np.clip(shadow - opening, 0.0, 1.0), 0.01 * side)
    styled = _blend(styled, np.asarray(shadow_colour, np.float32) * shading, shadow_alpha * shadow_mask)
    return StyledImage(
        _to_uint8(styled),
        {
            "lipstick": lip_name,
            "lip_colour_bgr": lip_colour,
            "lip_alpha": _rounded(lip_alpha),
            "eyeshadow": shadow_name,
            "eyeshadow_colour_bgr": shadow_colour,
            "eyeshadow_alpha": _rounded(shadow_alpha),
            "eyeshadow_scale": [_rounded(scale_x), _rounded(scale_y)],
            "eyeshadow_lift_eye_widths": _rounded(lift),
        },
    )


def _skin_colour(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Median BGR inside the landmarks' convex hull (float, 3)."""
    hull = cv2.convexHull(np.rint(points).astype(np.int32))
    mask = np.zeros(image.shape[:2], dtype=np.uint8)
    cv2.fillConvexPoly(mask, hull, 255)
    pixels = image[mask > 0]
    return np.median(pixels, axis=0).astype(np.float64) if len(pixels) else np.array([120.0, 140.0, 180.0])


def _hand_mask(shape: tuple[int, int], centre: np.ndarray, size: float, angle: float, spread: float) -> np.ndarray:
    """(H, W) uint8 mask of a hand-like blob: an elliptic palm, four fingers and a thumb, rotated by ``angle``."""
    mask = np.zeros(shape, dtype=np.uint8)
    rotation = np.radians(angle)
    # Unit vectors: "up" points from the palm to the fingertips.
    up = np.array([np.sin(rotation), -np.cos(rotation)])
    across = np.array([np.cos(rotation), np.sin(rotation)])

    def at(offset_across: float, offset_up: float) -> tuple[int, int]:
        point = centre + size * (offset_across * across + offset_up * up)
        return round(point[0]), round(point[1])

    palm_axes = (max(1, round(0.28 * size)), max(1, round(0.34 * size)))
    cv2.ellipse(mask, at(0.0, 0.0), palm_axes, angle, 0, 360, 255, -1, cv2.LINE_AA)
    finger_width = max(2, round(0.13 * size))
    for index, length in enumerate((0.55, 0.65, 0.6, 0.48)):
        base_across = (index - 1.5) * 0.15
        tip_across = base_across * (1.0 + spread)
        cv2.line(mask, at(base_across, 0.2), at(tip_across, 0.2 + length), 255, finger_width, cv2.LINE_AA)
    cv2.line(mask, at(-0.25, -0.1), at(-0.55, 0.2), 255, finger_width, cv2.LINE_AA)
    return mask


@register_style(
    "occlusion", "occlusion", "an object or a hand over part of the face: a rotated rectangle or a hand-like blob"
)
def occlusion(image: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> StyledImage:
    kind = str(rng.choice(["rectangle", "hand"]))
    anchor = int(rng.integers(len(points)))
    side = face_side(points)
    offset = rng.uniform(-0.1, 0.1, size=2)
    centre = points[anchor] + offset * side
    angle = rng.uniform(0.0, 360.0) if kind == "hand" else rng.uniform(-30.0, 30.0)
    shape = image.shape[:2]
    parameters: dict[str, Any] = {
        "kind": kind,
        "anchor_landmark": anchor,
        "offset_face_sides": [_rounded(v) for v in offset],
        "angle_degrees": _rounded(angle, 2),
    }
    if kind == "rectangle":
        size = rng.uniform(0.2, 0.45, size=2)
        corners = cv2.boxPoints(((float(centre[0]), float(centre[1])), tuple(float(s * side) for s in size), angle))
        mask = np.zeros(shape, dtype=np.uint8)
        cv2.fillConvexPoly(mask, np.rint(corners * 16).astype(np.int32), 255, cv2.LINE_AA, shift=4)
        colour = rng.uniform(20.0, 235.0, size=3)
        texture_sigma = rng.uniform(2.0, 12.0)
        parameters |= {"size_face_sides": [_rounded(v) for v in size], "colour_bgr": [int(c) for c in colour]}
        parameters["texture_sigma"] = _rounded(texture_sigma)
    else:
        size = rng.uniform(0.35, 0.6)
        spread = rng.uniform(0.0, 0.6)
        mask = _hand_mask(shape, centre, size * side, angle, spread)
        brightness = rng.uniform(0.7, 1.15)
        colour = np.clip(_skin_colour(image, points) * brightness, 0, 255)
        texture_sigma = rng.uniform(2.0, 6.0)
        parameters |= {
            "size_face_sides": _rounded(size),
            "finger_spread": _rounded(spread),
            "skin_brightness": _rounded(brightness),
            "colour_bgr": [int(c) for c in colour],
            "texture_sigma": _rounded(texture_sigma),
        }
    # A light gradient and texture across the occluder, so it is not a flat colour the model never sees.
    height, width = shape
    ramp = np.linspace(0.85, 1.15, width, dtype=np.float32)[None, :, None]
    target = np.broadcast_to(colour.astype(np.float32), (height, width, 3)) * ramp
    target = target + rng.normal(0.0, texture_sigma, size=(height, width, 1)).astype(np.float32)
    weight = _feather(mask.astype(np.float32) / 255.0, 0.004 * side)
    return StyledImage(_to_uint8(_blend(image, target, weight)), parameters)
