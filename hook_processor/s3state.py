"""The embedded S3's objects on disk, so that they outlive the process (``serve --data-dir``).

moto's server keeps its objects in memory. :class:`Snapshot` mirrors them into a folder through
the server's own S3 API (no moto internals: the server stays the engine) and puts them back into
a fresh server at the next start:

- ``<dir>/index.sqlite3``: the buckets, and one row per object (bucket, key, ETag, size, the file
  holding its bytes, ContentType, ContentEncoding, ContentDisposition, ContentLanguage,
  CacheControl and the user metadata);
- ``<dir>/objects/<xx>/<random name>``: the bytes of one object, streamed (never held whole).

:meth:`Snapshot.sync` is incremental: it lists every bucket, compares each key's ETag and size
with the index, copies the objects that are new or changed (to a new file, then the row points
at it, then the old file goes) and forgets the ones deleted. A sync killed half-way leaves the
index pointing at complete files only; the stray files are removed at the next :meth:`restore`.

Not kept (ours, a laptop's store): object versions other than the latest, tags, ACLs, bucket
settings (versioning, policies, lifecycle), unfinished multipart uploads; a restored object's
LastModified is the time of the restore and, if it was a multipart upload, its ETag may change
(single-part ETags are the MD5 of the bytes, so they stay).
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hook_processor.s3server import S3Server

logger = logging.getLogger("hook_processor.s3state")

INDEX_NAME = "index.sqlite3"
OBJECTS_DIR = "objects"
CHUNK = 1024 * 1024
# The part size of a multipart object put back in parts.
PART_SIZE = 64 * 1024 * 1024
# The header fields of an object that a GET returns and a PUT sets (boto3 names).
_FIELDS = (
    "ContentType",
    "ContentEncoding",
    "ContentDisposition",
    "ContentLanguage",
    "CacheControl",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    etag TEXT NOT NULL,
    size INTEGER NOT NULL,
    file TEXT NOT NULL,
    headers_json TEXT NOT NULL,
    metadata_json TEXT NOT NULL,
    PRIMARY KEY (bucket, key)
);
CREATE INDEX IF NOT EXISTS objects_file ON objects (file);
"""


class Snapshot:
    """The objects of one S3 endpoint mirrored in ``directory`` (see the module doc)."""

    def __init__(self, server: S3Server, directory: Path) -> None:
        self.server = server
        self.directory = Path(directory)
        self.objects = self.directory / OBJECTS_DIR
        self.objects.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            self.directory / INDEX_NAME, check_same_thread=False, isolation_level=None
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()  # one sync (or restore) at a time; the connection is shared
        self._client: Any = None
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    def client(self) -> Any:
        if self._client is None:
            # A copy must not be stopped by a slow moto: long reads, a few retries.
            self._client = self.server.client(
                retries={"max_attempts": 5, "mode": "standard"}, read_timeout=300
            )
        return self._client

    # --- restore --------------------------------------------------------------------------

    def restore(self) -> tuple[int, int]:
        """Put every bucket and object of the index into the server; (objects, bytes)."""
        with self._lock:
            self._remove_strays()
            client = self.client()
            for (name,) in self._db.execute("SELECT name FROM buckets").fetchall():
                with _exists_already():
                    client.create_bucket(Bucket=name)
            count = size = 0
            for row in self._rows():
                path = self.objects / row["file"]
                if not path.is_file():  # removed by hand: forget it rather than fail the start
                    logger.warning(
                        "embedded S3 mirror: %s/%s has no file; dropped", row["bucket"], row["key"]
                    )
                    self._db.execute(
                        "DELETE FROM objects WHERE bucket = ? AND key = ?",
                        (row["bucket"], row["key"]),
                    )
                    continue
                etag = self._put(client, row, path)
                # The new ETag (a multipart one may differ): the next sync must not copy it again.
                self._db.execute(
                    "UPDATE objects SET etag = ? WHERE bucket = ? AND key = ?",
                    (etag, row["bucket"], row["key"]),
                )
                count += 1
                size += int(row["size"])
            return count, size

    def _rows(self) -> Iterator[sqlite3.Row]:
        """Every object row, a page at a time (keyset pagination: bounded memory)."""
        last = ("", "")
        while True:
            page = self._db.execute(
                "SELECT * FROM objects WHERE (bucket, key) > (?, ?) ORDER BY bucket, key LIMIT 500",
                last,
            ).fetchall()
            if not page:
                return
            yield from page
            last = (page[-1]["bucket"], page[-1]["key"])

    def _put(self, client: Any, row: sqlite3.Row, path: Path) -> str:
        extra: dict[str, Any] = {k: v for k, v in json.loads(row["headers_json"]).items() if v}
        metadata = json.loads(row["metadata_json"])
        if metadata:
            extra["Metadata"] = metadata
        bucket, key, size = row["bucket"], row["key"], int(row["size"])
        # An object that was one PUT goes back as one PUT (its ETag, the MD5, stays the same);
        # a multipart one in parts, so that moto holds one part per request.
        if size <= PART_SIZE or "-" not in str(row["etag"]):
            with path.open("rb") as body:
                answer = client.put_object(Bucket=bucket, Key=key, Body=body, **extra)
            return str(answer.get("ETag", ""))
        upload = client.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]
        parts = []
        try:
            with path.open("rb") as body:
                number = 1
                while chunk := body.read(PART_SIZE):
                    done = client.upload_part(
                        Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=chunk
                    )
                    parts.append({"PartNumber": number, "ETag": done["ETag"]})
                    number += 1
            answer = client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            with contextlib.suppress(Exception):
                client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload)
            raise
        return str(answer.get("ETag", ""))

    def _remove_strays(self) -> None:
        """Files no row points at: what a sync killed half-way left (and ``.part`` files)."""
        for path in self.objects.glob("*/*"):
            name = f"{path.parent.name}/{path.name}"
            known = self._db.execute("SELECT 1 FROM objects WHERE file = ?", (name,)).fetchone()
            if known is None:
                path.unlink(missing_ok=True)

    # --- sync -----------------------------------------------------------------------------

    def sync(self) -> tuple[int, int]:
        """Mirror the server's current objects; (objects copied, objects forgotten)."""
        with self._lock:
            client = self.client()
            names = [b["Name"] for b in client.list_buckets().get("Buckets", [])]
            copied = forgotten = 0
            self._db.execute("BEGIN")
            self._db.execute(
                "DELETE FROM buckets WHERE name NOT IN (SELECT value FROM json_each(?))",
                (json.dumps(names),),
            )
            self._db.executemany(
                "INSERT OR IGNORE INTO buckets (name) VALUES (?)", [(n,) for n in names]
            )
            self._db.execute("COMMIT")
            for name in names:
                c, f = self._sync_bucket(client, name)
                copied, forgotten = copied + c, forgotten + f
            gone = self._db.execute(
                "SELECT bucket, key, file FROM objects "
                "WHERE bucket NOT IN (SELECT name FROM buckets)"
            ).fetchall()
            for row in gone:
                self._forget(row)
            return copied, forgotten + len(gone)

    def _sync_bucket(self, client: Any, bucket: str) -> tuple[int, int]:
        db = self._db
        db.execute(
            "CREATE TEMP TABLE IF NOT EXISTS listed (key TEXT PRIMARY KEY, etag TEXT, size INTEGER)"
        )
        db.execute("DELETE FROM listed")
        paginator = client.get_paginator("list_objects_v2")
        try:
            db.execute("BEGIN")  # one transaction for the whole listing, not one per key
            for page in paginator.paginate(Bucket=bucket):
                db.executemany(
                    "INSERT OR REPLACE INTO listed VALUES (?, ?, ?)",
                    [
                        (o["Key"], o.get("ETag", ""), int(o.get("Size", 0)))
                        for o in page.get("Contents", [])
                    ],
                )
            db.execute("COMMIT")
        except Exception as exc:  # the bucket went away while we listed it: the next sync sees
            db.execute("ROLLBACK")
            if _code(exc) != "NoSuchBucket":
                raise
            return 0, 0
        copied = 0
        last = ""
        while True:  # the new and changed keys, a page at a time
            page = db.execute(
                "SELECT l.key FROM listed l LEFT JOIN objects o ON o.bucket = ? AND o.key = l.key "
                "WHERE l.key > ? AND (o.key IS NULL OR o.etag != l.etag OR o.size != l.size) "
                "ORDER BY l.key LIMIT 500",
                (bucket, last),
            ).fetchall()
            if not page:
                break
            for (key,) in page:
                copied += self._copy(client, bucket, key)
            last = page[-1][0]
        stale = db.execute(
            "SELECT bucket, key, file FROM objects WHERE bucket = ? "
            "AND key NOT IN (SELECT key FROM listed)",
            (bucket,),
        ).fetchall()
        for row in stale:
            self._forget(row)
        return copied, len(stale)

    def _copy(self, client: Any, bucket: str, key: str) -> int:
        name = f"{secrets.token_hex(1)}/{secrets.token_hex(16)}"
        target = self.objects / name
        target.parent.mkdir(exist_ok=True)
        part = target.with_name(target.name + ".part")
        try:
            answer = client.get_object(Bucket=bucket, Key=key)
        except Exception as exc:
            if _code(exc) in ("NoSuchKey", "NoSuchBucket", "404"):
                return 0  # deleted since the listing: the next sync forgets it
            raise
        body = answer["Body"]
        try:
            with part.open("wb") as out:
                shutil.copyfileobj(body, out, CHUNK)
        finally:
            body.close()
        part.rename(target)
        headers = {f: answer.get(f) for f in _FIELDS if answer.get(f)}
        old = self._db.execute(
            "SELECT file FROM objects WHERE bucket = ? AND key = ?", (bucket, key)
        ).fetchone()
        self._db.execute(
            "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                bucket,
                key,
                str(answer.get("ETag", "")),
                target.stat().st_size,
                name,
                json.dumps(headers),
                json.dumps(answer.get("Metadata") or {}),
            ),
        )
        if old is not None:
            (self.objects / old["file"]).unlink(missing_ok=True)
        return 1

    def _forget(self, row: sqlite3.Row) -> None:
        self._db.execute(
            "DELETE FROM objects WHERE bucket = ? AND key = ?", (row["bucket"], row["key"])
        )
        (self.objects / row["file"]).unlink(missing_ok=True)

    # --- in the background ----------------------------------------------------------------

    def start_background(self, interval: float) -> None:
        """Sync every ``interval`` seconds (or at :meth:`wake`), at most a tenth of the time."""
        self._thread = threading.Thread(
            target=self._loop, args=(interval,), name="s3-snapshot", daemon=True
        )
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self, interval: float) -> None:
        pause = interval
        while not self._closing.is_set():
            self._wake.wait(pause)
            self._wake.clear()
            if self._closing.is_set():
                return
            began = time.monotonic()
            try:
                self.sync()
            except Exception as exc:  # a store that answers badly once, a full disk: again
                logger.warning("embedded S3 mirror: a sync failed (%s); it is tried again", exc)
            # A big store's listing costs: keep the syncs to a tenth of the time.
            pause = max(interval, 10 * (time.monotonic() - began))

    def close(self, *, final_sync: bool = True) -> None:
        """Stop the background syncs, sync once more (while the server still runs), close."""
        self._closing.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        try:
            if final_sync:
                self.sync()
        finally:
            with self._lock:
                self._db.close()


@contextlib.contextmanager
def _exists_already() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        if _code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise


def _code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code")
    return str(code) if code is not None else None
