"""Upper-case the text of every input file, keeping its relative path.

The Hook service's demonstrator expects a file ``example.data`` in the input folder; any number
of files (in sub-folders too) works the same way.

The run publishes ``catalog.json`` (STAC) beside the outputs: one item per top-level file or
folder, ``example.data`` for the demonstrator's input. Text has no footprint, so this processor
describes no item; one with a footprint and an acquisition time would call, for each product::

    context.stac.add_item("example.data", bbox=[5.9, 45.8, 10.5, 47.8],
                          datetime="2024-06-01T10:30:00Z")
"""

from __future__ import annotations

from pathlib import Path

from hook_processor import Context


def process(input_dir: Path, output_dir: Path, context: Context) -> None:
    """Write the upper-cased text of every input file under the same path in ``output_dir``."""
    for source in sorted(p for p in input_dir.rglob("*") if p.is_file()):
        relative = source.relative_to(input_dir)
        target = output_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source.read_text(encoding="utf-8").upper(), encoding="utf-8")
        context.logger.info("upper-cased %s", relative)
