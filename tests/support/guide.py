"""docs/deploy.md, the GKE walkthrough, as the tests read it: its shell blocks in order, and the
files its ``cat > FILE <<'EOF'`` steps write. Tests run what the document says, so a change to
the document changes what is tested."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support import REPO

__all__ = ["DEPLOY_GUIDE", "heredoc", "shell_blocks"]

DEPLOY_GUIDE = REPO / "docs" / "deploy.md"

_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)


def shell_blocks(path: Path = DEPLOY_GUIDE) -> list[str]:
    """The ```` ```sh ```` blocks of ``path``, in order."""
    return _BLOCK.findall(path.read_text())


def heredoc(filename: str, path: Path = DEPLOY_GUIDE) -> str:
    """What the guide's ``cat > <filename> <<'EOF'`` step writes; AssertionError unless exactly
    one step writes it."""
    pattern = re.compile(
        rf"^cat > {re.escape(filename)} <<'EOF'\n(.*?)^EOF$", re.MULTILINE | re.DOTALL
    )
    found = [m for block in shell_blocks(path) for m in pattern.findall(block)]
    assert len(found) == 1, f"{path.name}: {len(found)} steps write {filename}, expected one"
    return str(found[0])
