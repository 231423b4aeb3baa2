"""The bench's pass-through processor: every input file becomes an output file of the same path.

Hard links (input/ and output/ are both under HOOK_WORK_DIR, one file system), so that the round
trip times stage-in and publish, not a copy; a copy where linking is refused.
"""

import os
import shutil
from pathlib import Path


def process(input_dir: Path, output_dir: Path) -> None:
    for src in sorted(Path(input_dir).rglob("*")):
        if src.is_dir():
            continue
        dest = Path(output_dir) / src.relative_to(input_dir)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dest)
        except OSError:
            shutil.copyfile(src, dest)
