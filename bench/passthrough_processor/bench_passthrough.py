"""The bench's pass-through processor: every input file becomes an output file of the same path.

Hard links (input/ and output/ are both under HOOK_WORK_DIR, one file system), so that the round
trip times stage-in and publish, not a copy; a copy where linking is refused. Folder by folder
(os.walk), not a sorted list of a Path per file: at 100,000 files that list held ~48 MB
(tracemalloc) inside the exec whose peak RSS the bench measures.
"""

import os
import shutil


def process(input_dir, output_dir) -> None:  # noqa: ANN001
    for folder, dirs, files in os.walk(input_dir):
        dirs.sort()
        if not files:
            continue
        target = os.path.join(output_dir, os.path.relpath(folder, input_dir))
        os.makedirs(target, exist_ok=True)
        for name in sorted(files):
            src, dest = os.path.join(folder, name), os.path.join(target, name)
            try:
                os.link(src, dest)
            except OSError:
                shutil.copyfile(src, dest)
