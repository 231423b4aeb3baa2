"""The bench's do-nothing processor."""

from pathlib import Path


def process(input_dir: Path, output_dir: Path) -> None:
    names = sorted(p.relative_to(input_dir).as_posix() for p in Path(input_dir).rglob("*"))
    (Path(output_dir) / "listing.txt").write_text("\n".join(names) + "\n")
