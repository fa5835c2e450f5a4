"""image-rotate: rotates a PNG or JPEG clockwise by 90, 180 or 270 degrees."""

from __future__ import annotations

from collections.abc import Mapping

from PIL import Image

from contract.description import FieldDescription, FieldType, ServiceDescription, Tag
from services.base import Blob, InvalidInput
from services.imaging import encode, with_image

DESCRIPTION = ServiceDescription(
    name="Image Rotate",
    slug="image-rotate",
    summary="Rotates an image",
    description="Rotates an image clockwise by 90, 180 or 270 degrees.",
    data_in_fields=[
        FieldDescription(name="image", type=[FieldType.IMAGE_PNG, FieldType.IMAGE_JPEG]),
        FieldDescription(name="rotation", type=[FieldType.TEXT_PLAIN]),
    ],
    data_out_fields=[
        FieldDescription(name="result", type=[FieldType.IMAGE_PNG, FieldType.IMAGE_JPEG]),
    ],
    tags=[Tag.IMAGE_PROCESSING],
    has_ai=False,
    docs_url="https://example.org/docs/image-rotate",
)

# Clockwise degrees to Pillow's transpose, which is counter-clockwise by name.
_TRANSPOSE = {
    90: Image.Transpose.ROTATE_270,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_90,
}


def parse_rotation(data: bytes) -> int:
    """The rotation in degrees, or InvalidInput naming the values allowed."""
    allowed = ", ".join(str(degrees) for degrees in _TRANSPOSE)
    try:
        degrees = int(data.decode("utf-8").strip())
    except (UnicodeDecodeError, ValueError):
        degrees = None
    if degrees not in _TRANSPOSE:
        shown = data[:20].decode("utf-8", errors="replace").strip()
        raise InvalidInput("rotation", f"{shown!r} is not one of {allowed}")
    return degrees


def process(inputs: Mapping[str, Blob]) -> dict[str, Blob]:
    """Rotate `image` clockwise by `rotation` degrees, keeping its format."""
    degrees = parse_rotation(inputs["rotation"].data)
    image_blob = inputs["image"]
    rotated = with_image(image_blob, "image", lambda image: image.transpose(_TRANSPOSE[degrees]))
    return {"result": encode(rotated, image_blob.type)}
