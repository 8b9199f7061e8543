"""The image tier's one build: every module runs the image ``hack/build-image.sh`` (``make image``)
built or found current, and what the tier measured is printed once at its end."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.image.pods import REPORT, BuiltImage, build_image, print_report


@pytest.fixture(scope="session")
def image(request: pytest.FixtureRequest) -> Iterator[BuiltImage]:
    began = time.monotonic()
    yield build_image()
    REPORT["tier_s"] = round(time.monotonic() - began, 1)
    print_report(request.config)
