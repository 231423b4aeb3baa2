"""What the foreign engines' adapters (crt, obstore) share: where a key lands, what publishes.

The same mapping as the runtime's (keys under ``prefix + "/"`` land under ``dest``; every file
under ``src`` is published under ``prefix`` by its relative path), so every row moves the same
files to the same places.
"""

from __future__ import annotations

from pathlib import Path


def landing(dest: Path, prefix: str, key: str, made: set[Path]) -> Path:
    """The local path of ``key`` (listed under ``prefix + "/"``); its folder is made once."""
    target = dest / key[len(prefix) + 1 :]
    if target.parent not in made:
        target.parent.mkdir(parents=True, exist_ok=True)
        made.add(target.parent)
    return target


def outputs(src: Path, prefix: str) -> list[tuple[Path, str]]:
    """Every file under ``src``, sorted, with its key under ``prefix``."""
    files = sorted(p for p in src.rglob("*") if p.is_file())
    return [(path, f"{prefix}/{path.relative_to(src).as_posix()}") for path in files]
