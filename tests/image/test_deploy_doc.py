"""docs/deploy.md's image section states what the image costs, as measured: its size (checked
against the image this tier built), ``make image``'s cold and cached build times, and the image
tier's total time. A figure that goes missing from the section, or a size the image no longer
has, fails here."""

from __future__ import annotations

import re

import pytest

from tests.image.pods import REPORT, BuiltImage
from tests.support import REPO

pytestmark = pytest.mark.image

DEPLOY_DOC = REPO / "docs" / "deploy.md"
_NUMBER = r"\*\*~?([0-9]+(?:\.[0-9]+)?) (MB|s|min)\*\*"
FIGURES = {
    figure: re.compile(rf"{figure}(?:(?!\n- )[^*])*?:\s+{_NUMBER}", re.IGNORECASE)
    for figure in ("image size", "cold build", "cached build", "image tier")
}
"""Each figure is one list item: ``- Cold build (how it was measured): **46 s** …``."""
_SIZE_TOLERANCE = 0.10


def image_section() -> str:
    text = DEPLOY_DOC.read_text()
    start = text.index("\n## The image\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def stated(figure: str) -> tuple[float, str]:
    found = FIGURES[figure].search(image_section())
    assert found, f"docs/deploy.md's image section states no {figure} ({FIGURES[figure].pattern})"
    return float(found.group(1)), found.group(2)


@pytest.mark.parametrize("figure", list(FIGURES))
def test_the_image_section_states_the_measured_figure(figure: str) -> None:
    value, unit = stated(figure)
    assert value > 0, f"{figure}: {value} {unit}"
    assert unit in (("MB",) if figure == "image size" else ("s", "min")), f"{figure}: {unit}"


def test_the_stated_size_is_the_built_images(image: BuiltImage) -> None:
    value, _ = stated("image size")
    built = REPORT["size_mb"]
    assert abs(value - built) <= _SIZE_TOLERANCE * built, (
        f"docs/deploy.md says the image is {value} MB; the one built here is {built} MB"
    )
