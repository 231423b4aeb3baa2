"""What publication sends: every file under output_dir, walked safely, and proof it stayed put.

Symbolic links: one that resolves inside the output folder is followed (its content is uploaded
under the link's own path); one that points outside it, dangles or loops is refused. Each file's
stamp is taken when walked: a file written during publication shows as another stamp.
"""

from __future__ import annotations

import os
import struct
from array import array
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import overload

from hook_processor.errors import PublishError


class Local:
    """One file to publish, as :class:`Walked` makes it when read: its path on disk is not a
    second string per file but its folder's (one string a folder) and the name cut from
    ``rel``, and its stamp is packed in 40 bytes."""

    __slots__ = ("_folder", "_name_at", "rel", "size", "stamp")

    def __init__(
        self, rel: str, folder: str, size: int, stamp: bytes = b"", name_at: int = -1
    ) -> None:
        self.rel = rel  # relative posix path: the S3 key under the prefix, the zip entry name
        self.size = size
        self.stamp = stamp  # stamp() of the file when walked: a change shows as another
        self._folder = folder  # the real path to read when name_at < 0 (a followed link's target)
        self._name_at = name_at  # else the file is ``folder/rel[name_at:]``

    @property
    def path(self) -> str:
        """The real path to read (a followed link's target)."""
        if self._name_at == _RELEASED:
            raise RuntimeError(f"the walk no longer keeps the path of {self.rel}")
        if self._name_at < 0:
            return self._folder
        return os.path.join(self._folder, self.rel[self._name_at :])

    def __repr__(self) -> str:
        return f"Local(rel={self.rel!r}, size={self.size})"


_STAMP = struct.Struct("<qqqQQ")


def stamp(st: os.stat_result) -> bytes:
    """What changes when a file is written, replaced or truncated, even to the same size: size,
    mtime_ns, ctime_ns, inode and device (file systems stamp times once per clock tick, so two
    writes within a few milliseconds of each other may share one), packed."""
    values = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
    try:
        return _STAMP.pack(*values)
    except struct.error:  # out of 64 bits (no file system today): the same facts as text
        return repr(values).encode()


def changed(local: Local, shown: str) -> PublishError:
    return PublishError(
        f"{shown} changed while it was being published (its size, modification time or inode "
        "differ from when publication started): something still writes it after process() "
        "returned; nothing was published as complete (no manifest). Make process() finish "
        "writing, and wait for its threads and subprocesses, before it returns"
    )


_RELEASED = -2  # Local._name_at of a file whose path on disk the walk no longer keeps


class Walked(Sequence[Local]):
    """The walked files, sorted by relative path, in columns: a :class:`Local` is made as it
    is read. 100,000 Local objects held ~300 bytes a file through a publication; the columns
    (the relative path in UTF-8, and 8 + 8 + 40 + 8 + 8 bytes of its end, size, stamp, folder
    and cut) ~100, and ~40 once the paths are released (:meth:`release_paths`)."""

    def __init__(self, files: list[Local] | None = None) -> None:
        """Takes ``files`` (sorted) over: each is dropped from the list once copied."""
        self._rels = bytearray()  # every relative path in UTF-8, one after the other
        self._ends = array("q")  # where each one ends in _rels
        self._sizes = array("q")
        self._stamps = bytearray()  # _STAMP.size bytes a file
        self._odd_stamps: dict[int, bytes] = {}  # a stamp of another length, by index
        self._folders: list[str] = []  # one string per folder, shared by its files
        self._name_at = array("q")
        self._released = False
        self._last = ""
        self.in_order = True  # every path added after the one before it (sorted)
        for i, f in enumerate(files or ()):
            files[i] = None  # type: ignore[call-overload,index]  # freed as it is copied
            self.append(f)
        if files:
            files.clear()

    def append(self, f: Local) -> None:
        """Add ``f`` (its fields are copied: ``f`` is not kept)."""
        if self._ends and not f.rel > self._last:
            self.in_order = False
        self._last = f.rel
        self._rels += f.rel.encode("utf-8")  # the walk refuses a name that is not UTF-8
        self._ends.append(len(self._rels))
        self._sizes.append(f.size)
        if len(f.stamp) == _STAMP.size:
            self._stamps += f.stamp
        else:
            self._stamps += bytes(_STAMP.size)
            self._odd_stamps[len(self._ends) - 1] = f.stamp
        self._folders.append(f._folder)
        self._name_at.append(f._name_at)

    def __len__(self) -> int:
        return len(self._ends)

    def release_paths(self) -> None:
        """Forget where the files are on disk and their stamps (after the last check of them):
        what is left is what the manifest and the products need, the paths and sizes."""
        self._released = True
        self._stamps, self._odd_stamps = bytearray(), {}
        self._folders, self._name_at = [], array("q")

    @overload
    def __getitem__(self, index: int) -> Local: ...
    @overload
    def __getitem__(self, index: slice) -> list[Local]: ...
    def __getitem__(self, index: int | slice) -> Local | list[Local]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        end = self._ends[index]  # IndexError beyond the end
        rel = self._rels[self._ends[index - 1] if index else 0 : end].decode("utf-8")
        if self._released:
            return Local(rel, "", self._sizes[index], b"", _RELEASED)
        at = index * _STAMP.size
        packed = self._odd_stamps.get(index)
        if packed is None:
            packed = bytes(self._stamps[at : at + _STAMP.size])
        return Local(rel, self._folders[index], self._sizes[index], packed, self._name_at[index])

    def __iter__(self) -> Iterator[Local]:
        return (self[i] for i in range(len(self)))


def check_unchanged(src: Path, files: Iterable[Local]) -> None:
    """Every file still as it was walked (after the last byte is sent, before the manifest)."""
    for local in files:
        try:
            now = stamp(os.stat(local.path))
        except OSError:
            now = b""
        if local.stamp and now != local.stamp:
            raise changed(local, str(src / local.rel))


def walk(src: Path) -> Walked:
    """Every file under ``src``, sorted by relative path, links checked (see module doc)."""
    root = os.path.realpath(src)
    if not os.path.isdir(root):
        raise PublishError(f"the output folder {src} does not exist or is not a folder")
    out = Walked()
    _walk(src, root, root, "", frozenset({root}), out)
    if not out.in_order:  # never, by the order of _walk; but the order is the contract
        out = Walked(sorted(out, key=lambda f: f.rel))
    return out


def _order(entry: os.DirEntry[str]) -> str:
    """A folder (or a link to one) sorts as its name and "/"; anything else as its name (a
    link that loops, too: it is refused below)."""
    try:
        return entry.name + "/" if entry.is_dir() else entry.name
    except OSError:
        return entry.name


class _Shown:
    """``src / rel``, as text when an error message says it."""

    __slots__ = ("rel", "src")

    def __init__(self, src: Path, rel: str) -> None:
        self.src, self.rel = src, rel

    def __str__(self) -> str:
        return str(self.src / self.rel)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _walk(
    src: Path, root: str, directory: str, rel: str, ancestors: frozenset[str], out: Walked
) -> None:
    try:
        with os.scandir(directory) as it:
            # A folder sorts as its name and "/", as its files' paths begin: the walk is then
            # in the order of the relative paths, and is kept as it goes (no list to sort).
            entries = sorted(it, key=_order)
    except OSError as err:
        raise PublishError(f"could not read the folder {src / rel}: {err.strerror}") from err
    for entry in entries:
        rel_path = rel + entry.name
        # Made only for an error message: a Path per file interns each name (pathlib), and
        # the interpreter's table of interned strings grew by ~20 bytes a file for good.
        shown = _Shown(src, rel_path)
        try:
            rel_path.encode("utf-8")
        except UnicodeEncodeError:
            raise PublishError(
                f"refusing to publish {shown!s}: its name is not valid UTF-8, so it cannot be "
                "an S3 key; rename it"
            ) from None
        if entry.is_symlink():
            try:
                target = os.path.realpath(entry.path, strict=True)
            except OSError:
                raise PublishError(
                    f"refusing to publish {shown}: it is a symbolic link that dangles or loops"
                ) from None
            if not _inside(target, root):
                raise PublishError(
                    f"refusing to publish {shown}: it is a symbolic link to {target}, outside "
                    f"the output folder {src}; copy the file into the output folder instead"
                )
            if os.path.isdir(target):
                if target in ancestors:
                    raise PublishError(
                        f"refusing to publish {shown}: it is a symbolic link to its own parent "
                        "folder (a loop)"
                    )
                _walk(src, root, target, rel_path + "/", ancestors | {target}, out)
            elif os.path.isfile(target):
                st = os.stat(target)
                out.append(Local(rel_path, target, st.st_size, stamp(st)))  # read the target
            else:
                raise PublishError(f"refusing to publish {shown}: not a regular file")
        elif entry.is_dir(follow_symlinks=False):
            _walk(src, root, entry.path, rel_path + "/", ancestors | {entry.path}, out)
        elif entry.is_file(follow_symlinks=False):
            st = entry.stat(follow_symlinks=False)
            out.append(Local(rel_path, directory, st.st_size, stamp(st), len(rel)))
        else:
            raise PublishError(f"refusing to publish {shown}: not a regular file")
