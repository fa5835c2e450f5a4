"""Reading an image input, the way every image service of this package does."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TypeVar

from PIL import Image, UnidentifiedImageError

from contract.description import FieldType
from services.base import Blob, InvalidInput

FORMATS = {FieldType.IMAGE_PNG: "PNG", FieldType.IMAGE_JPEG: "JPEG"}
T = TypeVar("T")


def with_image(blob: Blob, field: str, use: Callable[[Image.Image], T]) -> T:
    """`use(image)` on the decoded input; InvalidInput naming `field` when the content is
    not a readable image of the type its key says, or too large to decode."""
    try:
        with Image.open(io.BytesIO(blob.data)) as image:
            # Cameras write JPEGs with a Multi-Picture segment, which Pillow calls MPO.
            read_as = "JPEG" if image.format == "MPO" else image.format
            if read_as != FORMATS[blob.type]:
                raise InvalidInput(field, f"content is {image.format}, not {blob.type.value}")
            return use(image)
    except Image.DecompressionBombError as error:
        raise InvalidInput(field, f"too large to decode ({error})") from error
    except (UnidentifiedImageError, OSError) as error:
        raise InvalidInput(field, f"content is not a readable {blob.type.value}") from error


def encode(image: Image.Image, field_type: FieldType) -> Blob:
    """The image written in the format of `field_type`."""
    out = io.BytesIO()
    image.save(out, format=FORMATS[field_type])
    return Blob(out.getvalue(), field_type)
