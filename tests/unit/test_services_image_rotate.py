"""services.image_rotate: rotation parsing and clockwise rotation of PNG and JPEG."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from contract.description import FieldType
from services.base import Blob, InvalidInput
from services.image_rotate import DESCRIPTION, parse_rotation, process

WIDTH, HEIGHT = 3, 2
# A distinct colour for every pixel of a 3x2 image, by (x, y).
COLOURS = {
    (x, y): (40 * x + 10, 100 * y + 20, 17 * (x + 3 * y) + 5)
    for x in range(WIDTH)
    for y in range(HEIGHT)
}


def encode(image: Image.Image, image_format: str) -> bytes:
    out = io.BytesIO()
    image.save(out, format=image_format)
    return out.getvalue()


def small_png() -> bytes:
    image = Image.new("RGB", (WIDTH, HEIGHT))
    for xy, colour in COLOURS.items():
        image.putpixel(xy, colour)
    return encode(image, "PNG")


def clockwise(x: int, y: int, degrees: int) -> tuple[int, int]:
    """Where pixel (x, y) of a WIDTH x HEIGHT image lands after a clockwise rotation."""
    if degrees == 90:
        return HEIGHT - 1 - y, x
    if degrees == 180:
        return WIDTH - 1 - x, HEIGHT - 1 - y
    assert degrees == 270
    return y, WIDTH - 1 - x


def rotate(data: bytes, field_type: FieldType, rotation: bytes) -> Blob:
    outputs = process(
        {"image": Blob(data, field_type), "rotation": Blob(rotation, FieldType.TEXT_PLAIN)}
    )
    assert set(outputs) == {"result"}
    return outputs["result"]


@pytest.mark.parametrize(
    ("text", "degrees"),
    [(b" 90\n", 90), (b"180", 180), (b"270", 270), (b"\t270 \r\n", 270)],
)
def test_parse_rotation_accepts_the_three_angles(text: bytes, degrees: int) -> None:
    """90, 180 and 270 are read, surrounding whitespace ignored."""
    assert parse_rotation(text) == degrees


@pytest.mark.parametrize("text", [b"45", b"abc", b"\xff", b"", b"0", b"360", b"-90", b"90.0"])
def test_parse_rotation_refuses_anything_else(text: bytes) -> None:
    """Any other value is InvalidInput for 'rotation' listing the values allowed."""
    with pytest.raises(InvalidInput) as caught:
        parse_rotation(text)
    message = str(caught.value)
    assert caught.value.field == "rotation"
    assert message.startswith("input 'rotation': ")
    assert "90, 180, 270" in message


def test_parse_rotation_shows_the_value_given() -> None:
    """The message quotes what was sent, so the user sees their mistake."""
    with pytest.raises(InvalidInput, match="'45' is not one of 90, 180, 270"):
        parse_rotation(b"45\n")


def test_parse_rotation_shortens_a_long_value() -> None:
    """A long value is cut in the message rather than echoed whole."""
    with pytest.raises(InvalidInput) as caught:
        parse_rotation(b"x" * 10_000)
    assert len(str(caught.value)) < 100


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_png_pixels_land_where_a_clockwise_rotation_puts_them(degrees: int) -> None:
    """Every pixel of an asymmetric 3x2 PNG moves to its clockwise-rotated place."""
    result = rotate(small_png(), FieldType.IMAGE_PNG, str(degrees).encode())
    assert result.type is FieldType.IMAGE_PNG
    with Image.open(io.BytesIO(result.data)) as image:
        assert image.format == "PNG"
        expected_size = (WIDTH, HEIGHT) if degrees == 180 else (HEIGHT, WIDTH)
        assert image.size == expected_size
        rgb = image.convert("RGB")
        for (x, y), colour in COLOURS.items():
            assert rgb.getpixel(clockwise(x, y, degrees)) == colour


def test_png_keeps_transparency() -> None:
    """An RGBA PNG stays RGBA, alpha included."""
    image = Image.new("RGBA", (2, 1))
    image.putpixel((0, 0), (255, 0, 0, 0))
    image.putpixel((1, 0), (0, 0, 255, 128))
    result = rotate(encode(image, "PNG"), FieldType.IMAGE_PNG, b"90")
    with Image.open(io.BytesIO(result.data)) as rotated:
        assert rotated.mode == "RGBA"
        assert rotated.size == (1, 2)
        assert rotated.getpixel((0, 0)) == (255, 0, 0, 0)
        assert rotated.getpixel((0, 1)) == (0, 0, 255, 128)


def close(actual: object, expected: tuple[int, int, int], tolerance: int = 12) -> bool:
    assert isinstance(actual, tuple)
    return all(abs(int(a) - e) <= tolerance for a, e in zip(actual, expected, strict=True))


@pytest.mark.parametrize("degrees", [90, 270])
def test_jpeg_keeps_its_format_and_swaps_its_size(degrees: int) -> None:
    """A JPEG comes back a JPEG, width and height swapped, flat blocks where expected."""
    red, blue = (200, 30, 30), (30, 30, 200)
    image = Image.new("RGB", (64, 32), red)
    image.paste(blue, (32, 0, 64, 32))  # left half red, right half blue
    result = rotate(encode(image, "JPEG"), FieldType.IMAGE_JPEG, str(degrees).encode())
    assert result.type is FieldType.IMAGE_JPEG
    with Image.open(io.BytesIO(result.data)) as rotated:
        assert rotated.format == "JPEG"
        assert rotated.size == (32, 64)
        top, bottom = rotated.getpixel((16, 8)), rotated.getpixel((16, 56))
    # Clockwise 90 puts the left (red) half on top; 270 puts it at the bottom.
    expected_top, expected_bottom = (red, blue) if degrees == 90 else (blue, red)
    assert close(top, expected_top)
    assert close(bottom, expected_bottom)


def test_jpeg_180_keeps_its_size() -> None:
    """A half turn keeps width and height and swaps left and right."""
    red, blue = (200, 30, 30), (30, 30, 200)
    image = Image.new("RGB", (64, 32), red)
    image.paste(blue, (32, 0, 64, 32))
    result = rotate(encode(image, "JPEG"), FieldType.IMAGE_JPEG, b"180")
    with Image.open(io.BytesIO(result.data)) as rotated:
        assert rotated.format == "JPEG"
        assert rotated.size == (64, 32)
        assert close(rotated.getpixel((8, 16)), blue)
        assert close(rotated.getpixel((56, 16)), red)


def test_text_in_a_png_blob_is_invalid_image() -> None:
    """Bytes that are not an image are InvalidInput naming 'image' and the type."""
    with pytest.raises(InvalidInput) as caught:
        rotate(b"hello, I am text\n", FieldType.IMAGE_PNG, b"90")
    assert caught.value.field == "image"
    assert str(caught.value) == "input 'image': content is not a readable image/png"


def test_png_declared_as_jpeg_is_invalid() -> None:
    """A PNG sent under a .jpg key is refused, saying what it really is."""
    with pytest.raises(InvalidInput) as caught:
        rotate(small_png(), FieldType.IMAGE_JPEG, b"90")
    assert caught.value.field == "image"
    assert "PNG" in str(caught.value)
    assert "image/jpeg" in str(caught.value)


def test_jpeg_declared_as_png_is_invalid() -> None:
    """A JPEG sent under a .png key is refused."""
    jpeg = encode(Image.new("RGB", (8, 8), (1, 2, 3)), "JPEG")
    with pytest.raises(InvalidInput, match="input 'image': content is JPEG, not image/png"):
        rotate(jpeg, FieldType.IMAGE_PNG, b"90")


def test_truncated_png_is_invalid_image() -> None:
    """A PNG cut short (readable header, missing pixels) is InvalidInput, not a crash."""
    image = Image.effect_noise((64, 64), 64).convert("RGB")
    data = encode(image, "PNG")
    with pytest.raises(InvalidInput) as caught:
        rotate(data[: len(data) // 2], FieldType.IMAGE_PNG, b"90")
    assert caught.value.field == "image"


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    )


def test_decompression_bomb_is_invalid_image() -> None:
    """A PNG claiming an enormous size is refused before it is decoded."""
    header = struct.pack(">IIBBBBB", 40_000, 40_000, 8, 2, 0, 0, 0)
    bomb = (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b""))
        + _chunk(b"IEND", b"")
    )
    with pytest.raises(InvalidInput, match="input 'image': too large to decode"):
        rotate(bomb, FieldType.IMAGE_PNG, b"90")


def test_bad_rotation_is_reported_before_the_image_is_read() -> None:
    """With both inputs wrong, the rotation error comes first (it is the cheap check)."""
    with pytest.raises(InvalidInput) as caught:
        rotate(b"not an image", FieldType.IMAGE_PNG, b"45")
    assert caught.value.field == "rotation"


def test_description_fields_match_the_contract() -> None:
    """image-rotate declares image+rotation in, result out, as in CONTRACT.md §5."""
    assert DESCRIPTION.slug == "image-rotate"
    assert [(f.name, f.type) for f in DESCRIPTION.data_in_fields] == [
        ("image", [FieldType.IMAGE_PNG, FieldType.IMAGE_JPEG]),
        ("rotation", [FieldType.TEXT_PLAIN]),
    ]
    assert [(f.name, f.type) for f in DESCRIPTION.data_out_fields] == [
        ("result", [FieldType.IMAGE_PNG, FieldType.IMAGE_JPEG]),
    ]


def test_camera_jpeg_with_mpf_segment_is_rotated() -> None:
    """A JPEG carrying a Multi-Picture (MPF) segment, as many cameras write, is a JPEG."""
    main = Image.new("RGB", (16, 8), (200, 30, 30))
    preview = Image.new("RGB", (16, 8), (30, 30, 200))
    out = io.BytesIO()
    main.save(out, format="MPO", save_all=True, append_images=[preview])
    data = out.getvalue()
    assert data[:3] == b"\xff\xd8\xff"
    result = process(
        {"image": Blob(data, FieldType.IMAGE_JPEG), "rotation": Blob(b"90", FieldType.TEXT_PLAIN)}
    )["result"]
    with Image.open(io.BytesIO(result.data)) as rotated:
        assert rotated.size == (8, 16)
