"""image-rotate: rotates a PNG or JPEG clockwise by 90, 180 or 270 degrees."""

from __future__ import annotations

import io
from collections.abc import Mapping

from PIL import Image, UnidentifiedImageError

from contract.description import FieldDescription, FieldType, ServiceDescription, Tag
from services.base import Blob, InvalidInput

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
_FORMATS = {FieldType.IMAGE_PNG: "PNG", FieldType.IMAGE_JPEG: "JPEG"}


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
    try:
        with Image.open(io.BytesIO(image_blob.data)) as image:
            image_format = _FORMATS[image_blob.type]
            # Cameras write JPEGs with a Multi-Picture segment, which Pillow calls MPO.
            read_as = "JPEG" if image.format == "MPO" else image.format
            if read_as != image_format:
                raise InvalidInput(
                    "image", f"content is {image.format}, not {image_blob.type.value}"
                )
            rotated = image.transpose(_TRANSPOSE[degrees])
    except Image.DecompressionBombError as error:
        raise InvalidInput("image", f"too large to decode ({error})") from error
    except (UnidentifiedImageError, OSError) as error:
        raise InvalidInput("image", f"content is not a readable {image_blob.type.value}") from error
    out = io.BytesIO()
    rotated.save(out, format=image_format)
    return {"result": Blob(out.getvalue(), image_blob.type)}
