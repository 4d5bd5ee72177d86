"""Small JSON files in the state directory (the household's choices, today's cloud spend).

Written atomically (temp file, then rename) so a power cut mid-write leaves the old file, never half of one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, data: Any) -> None:
    """Replace `path` with `data` as JSON, all or nothing. Raises OSError (disk full, read-only, ...)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)
