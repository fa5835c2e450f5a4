"""The new-service example of docs/services.md is a working service."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest
from PIL import Image

from contract.description import FieldType
from services.base import Blob, load_service

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "services.md"


def test_readme_service_example_loads_and_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The `services/invert.py` of the guide loads as a service and inverts an image."""
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.DOTALL)
    [example] = [block for block in blocks if '"""invert:' in block]
    (tmp_path / "readme_invert.py").write_text(example)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "readme_invert", raising=False)

    service = load_service("readme_invert")
    image = io.BytesIO()
    Image.new("RGB", (2, 2), (10, 20, 30)).save(image, format="PNG")
    [result] = service.run({"image": Blob(image.getvalue(), FieldType.IMAGE_PNG)}).values()

    assert service.description.slug == "image-invert"
    with Image.open(io.BytesIO(result.data)) as inverted:
        assert inverted.getpixel((0, 0)) == (245, 235, 225)
