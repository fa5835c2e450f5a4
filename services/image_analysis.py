"""image-analysis: a PNG thumbnail of an image and its statistics as JSON.

Pillow does the work: `ImageStat` for each channel's mean, spread and extremes, the
histogram for the distribution, and a median-cut quantisation for the dominant colours.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast

from PIL import Image, ImageStat

from contract.description import FieldDescription, FieldType, ServiceDescription, Tag
from services.base import Blob
from services.imaging import encode, with_image

DESCRIPTION = ServiceDescription(
    name="Image Analysis",
    slug="image-analysis",
    summary="Describes an image and makes a thumbnail",
    description=(
        "Returns a PNG thumbnail of a PNG or JPEG image (at most 128 pixels a side) and "
        "its statistics as JSON: size, mode, brightness, each channel's mean, standard "
        "deviation, extremes, median and a 16-bin histogram, and the dominant colours."
    ),
    data_in_fields=[
        FieldDescription(name="image", type=[FieldType.IMAGE_PNG, FieldType.IMAGE_JPEG]),
    ],
    data_out_fields=[
        FieldDescription(name="thumbnail", type=[FieldType.IMAGE_PNG]),
        FieldDescription(name="statistics", type=[FieldType.APPLICATION_JSON]),
    ],
    tags=[Tag.IMAGE_PROCESSING, Tag.IMAGE_RECOGNITION],
    has_ai=False,
    docs_url="https://example.org/docs/image-analysis",
)

THUMBNAIL_SIZE = (128, 128)
HISTOGRAM_BINS = 16
DOMINANT_COLOURS = 5
# Modes whose channels are worth describing as they are; the others (palette, CMYK,
# 16-bit, ...) are described after conversion, as the `analysed_as` key says.
_KEPT_MODES = {"L", "LA", "RGB", "RGBA"}


def _analysable(image: Image.Image) -> Image.Image:
    if image.mode in _KEPT_MODES:
        return image
    if image.mode in ("P", "PA"):
        return image.convert("RGBA" if image.has_transparency_data else "RGB")
    if image.mode in ("1", "I", "I;16", "I;16B", "I;16L", "F"):
        return image.convert("L")
    return image.convert("RGB")


def _channels(image: Image.Image) -> dict[str, dict[str, Any]]:
    stat = ImageStat.Stat(image)
    histogram = image.histogram()
    channels = {}
    for index, band in enumerate(image.getbands()):
        counts = histogram[index * 256 : (index + 1) * 256]
        width = 256 // HISTOGRAM_BINS
        low, high = stat.extrema[index]
        channels[band] = {
            "mean": round(stat.mean[index], 3),
            "stddev": round(stat.stddev[index], 3),
            "min": low,
            "max": high,
            "median": stat.median[index],
            "histogram": [sum(counts[i : i + width]) for i in range(0, 256, width)],
        }
    return channels


def _dominant_colours(image: Image.Image) -> list[dict[str, Any]]:
    """The most used colours after reducing the image to a few, most used first."""
    small = image.convert("RGB")
    # Nearest neighbour: smoothing would invent blends of neighbouring colours.
    small.thumbnail((256, 256), resample=Image.Resampling.NEAREST)
    reduced = small.quantize(colors=DOMINANT_COLOURS, method=Image.Quantize.MEDIANCUT)
    total = small.width * small.height
    # In RGB mode each entry is (count, (red, green, blue)).
    counted = cast(list[tuple[int, tuple[int, int, int]]], reduced.convert("RGB").getcolors())
    colours = []
    for count, (red, green, blue) in sorted(counted, reverse=True):
        colours.append(
            {
                "hex": f"#{red:02x}{green:02x}{blue:02x}",
                "rgb": [red, green, blue],
                "share": round(count / total, 4),
            }
        )
    return colours


def analyse(image: Image.Image) -> tuple[Image.Image, dict[str, Any]]:
    """The thumbnail of `image` and its statistics."""
    analysed = _analysable(image)
    thumbnail = analysed.copy()
    thumbnail.thumbnail(THUMBNAIL_SIZE)
    statistics = {
        "width": image.width,
        "height": image.height,
        "format": image.format,
        "mode": image.mode,
        "analysed_as": analysed.mode,
        "pixels": image.width * image.height,
        "brightness": round(ImageStat.Stat(analysed.convert("L")).mean[0], 3),
        "channels": _channels(analysed),
        "dominant_colours": _dominant_colours(analysed),
        "thumbnail": {"width": thumbnail.width, "height": thumbnail.height},
    }
    return thumbnail, statistics


def process(inputs: Mapping[str, Blob]) -> dict[str, Blob]:
    """Thumbnail and statistics of `image`."""
    thumbnail, statistics = with_image(inputs["image"], "image", analyse)
    body = json.dumps(statistics, indent=2).encode()
    return {
        "thumbnail": encode(thumbnail, FieldType.IMAGE_PNG),
        "statistics": Blob(body, FieldType.APPLICATION_JSON),
    }
