"""services.image_analysis: a PNG thumbnail and JSON statistics of an image."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from PIL import Image

from contract.description import FieldType
from services.base import Blob, InvalidInput, load_service
from services.image_analysis import DESCRIPTION, THUMBNAIL_SIZE, process

RED, BLUE = (255, 0, 0), (0, 0, 255)


def encode(image: Image.Image, image_format: str) -> bytes:
    out = io.BytesIO()
    image.save(out, format=image_format)
    return out.getvalue()


def red_and_blue(size: tuple[int, int] = (400, 200)) -> Image.Image:
    """Left quarter blue, the rest red."""
    image = Image.new("RGB", size, RED)
    image.paste(BLUE, (0, 0, size[0] // 4, size[1]))
    return image


def analyse(data: bytes, field_type: FieldType = FieldType.IMAGE_PNG) -> tuple[Blob, Any]:
    outputs = process({"image": Blob(data, field_type)})
    assert set(outputs) == {"thumbnail", "statistics"}
    assert outputs["thumbnail"].type is FieldType.IMAGE_PNG
    assert outputs["statistics"].type is FieldType.APPLICATION_JSON
    return outputs["thumbnail"], json.loads(outputs["statistics"].data)


def test_thumbnail_is_a_png_within_128_keeping_the_aspect() -> None:
    """A 400x200 image gives a 128x64 PNG thumbnail, and the statistics say so."""
    thumbnail, statistics = analyse(encode(red_and_blue(), "PNG"))
    with Image.open(io.BytesIO(thumbnail.data)) as image:
        assert image.format == "PNG"
        assert image.size == (128, 64)
        assert image.getpixel((2, 32)) == BLUE
        assert image.getpixel((120, 32)) == RED
    assert statistics["thumbnail"] == {"width": 128, "height": 64}
    assert max(THUMBNAIL_SIZE) == 128


def test_small_image_is_not_enlarged() -> None:
    """An image smaller than the thumbnail size keeps its size."""
    thumbnail, _ = analyse(encode(Image.new("RGB", (10, 6), RED), "PNG"))
    with Image.open(io.BytesIO(thumbnail.data)) as image:
        assert image.size == (10, 6)


def test_statistics_of_each_channel() -> None:
    """Size, mode, and per channel mean, stddev, extremes, median and a 16-bin histogram."""
    _, statistics = analyse(encode(red_and_blue(), "PNG"))
    assert statistics["width"] == 400
    assert statistics["height"] == 200
    assert statistics["pixels"] == 80_000
    assert statistics["format"] == "PNG"
    assert statistics["mode"] == statistics["analysed_as"] == "RGB"
    red, green, blue = (statistics["channels"][band] for band in "RGB")
    assert red["mean"] == 191.25
    assert blue["mean"] == 63.75
    assert red["stddev"] == blue["stddev"] == pytest.approx(110.418, abs=0.001)
    assert (red["min"], red["max"], red["median"]) == (0, 255, 255)
    assert green == {
        "mean": 0.0,
        "stddev": 0.0,
        "min": 0,
        "max": 0,
        "median": 0,
        "histogram": [80_000] + [0] * 15,
    }
    assert red["histogram"] == [20_000] + [0] * 14 + [60_000]
    # ITU-R 601 luma of pure red is 76, of pure blue 29.
    assert statistics["brightness"] == pytest.approx(0.75 * 76 + 0.25 * 29, abs=0.5)


def test_dominant_colours_most_used_first() -> None:
    """The dominant colours are the image's own, with their shares, most used first."""
    _, statistics = analyse(encode(red_and_blue(), "PNG"))
    assert statistics["dominant_colours"] == [
        {"hex": "#ff0000", "rgb": [255, 0, 0], "share": 0.75},
        {"hex": "#0000ff", "rgb": [0, 0, 255], "share": 0.25},
    ]


def test_jpeg_is_analysed() -> None:
    """A JPEG input gives a PNG thumbnail and statistics naming the JPEG format."""
    thumbnail, statistics = analyse(encode(red_and_blue(), "JPEG"), FieldType.IMAGE_JPEG)
    assert statistics["format"] == "JPEG"
    assert statistics["channels"]["R"]["mean"] == pytest.approx(191.25, abs=3)
    assert thumbnail.data.startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("mode", "analysed_as", "bands"),
    [
        ("L", "L", ["L"]),
        ("LA", "LA", ["L", "A"]),
        ("RGBA", "RGBA", ["R", "G", "B", "A"]),
        ("P", "RGB", ["R", "G", "B"]),
        ("1", "L", ["L"]),
        ("I;16", "L", ["L"]),
    ],
)
def test_modes_are_described_in_a_mode_worth_describing(
    mode: str, analysed_as: str, bands: list[str]
) -> None:
    """Grey, alpha and colour images keep their channels; palette, bilevel and 16-bit ones
    are converted first, and `analysed_as` says to what."""
    image = Image.new("RGB", (20, 10), (10, 200, 30)).convert(mode)
    _, statistics = analyse(encode(image, "PNG"))
    assert statistics["mode"] == mode
    assert statistics["analysed_as"] == analysed_as
    assert list(statistics["channels"]) == bands


def test_cmyk_jpeg_is_described_as_rgb() -> None:
    """A CMYK JPEG (as print workflows write) is converted to RGB first."""
    cmyk = Image.new("RGB", (20, 10), (10, 200, 30)).convert("CMYK")
    _, statistics = analyse(encode(cmyk, "JPEG"), FieldType.IMAGE_JPEG)
    assert (statistics["mode"], statistics["analysed_as"]) == ("CMYK", "RGB")
    assert statistics["channels"]["G"]["mean"] == pytest.approx(200, abs=5)


def test_transparent_palette_image_keeps_its_alpha() -> None:
    """A palette PNG with a transparent colour is described with an alpha channel."""
    image = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    image.paste((255, 0, 0, 255), (0, 0, 4, 8))
    palette = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    palette.info["transparency"] = palette.getpixel((7, 7))
    _, statistics = analyse(encode(palette, "PNG"))
    assert statistics["analysed_as"] == "RGBA"
    assert statistics["channels"]["A"]["min"] == 0


def test_text_is_invalid_image() -> None:
    """Bytes that are not an image are InvalidInput naming 'image' and the type."""
    with pytest.raises(InvalidInput) as caught:
        analyse(b"no pixels here")
    assert str(caught.value) == "input 'image': content is not a readable image/png"


def test_png_declared_as_jpeg_is_invalid() -> None:
    """A PNG under a .jpg key is refused, saying what it really is."""
    with pytest.raises(InvalidInput, match="input 'image': content is PNG, not image/jpeg"):
        analyse(encode(red_and_blue(), "PNG"), FieldType.IMAGE_JPEG)


def test_description_declares_two_outputs_of_different_types() -> None:
    """One image in; a PNG thumbnail and JSON statistics out, in that order."""
    service = load_service("services.image_analysis")
    assert service.description is DESCRIPTION
    assert DESCRIPTION.slug == "image-analysis"
    assert [(f.name, f.type) for f in DESCRIPTION.data_in_fields] == [
        ("image", [FieldType.IMAGE_PNG, FieldType.IMAGE_JPEG]),
    ]
    assert [(f.name, f.type) for f in DESCRIPTION.data_out_fields] == [
        ("thumbnail", [FieldType.IMAGE_PNG]),
        ("statistics", [FieldType.APPLICATION_JSON]),
    ]
