"""The claim on an output prefix: checked before stage-in, held while publishing, verified last.

Why: the manifest alone (written last with ``If-None-Match: *``) guards only its own key, so two
runs to one prefix could overwrite each other's files, and a run to a parent or child prefix, or
to its own input, could replace objects another manifest describes. :func:`preflight` runs before
any data moves:

* the output bucket answers (HEAD bucket): a missing bucket or refused credentials stop the run
  before an hour of stage-in;
* ``<prefix>/_manifest.json``: another order's is refused; the same order's (order id, or the
  inputs-and-options digest without one) makes the run a *rerun* that verifies that set;
* manifests of parent prefixes and of child prefixes: the keys they list are protected, as are
  the run's own input objects when input and output overlap;
* the lease ``<prefix>/_claim.json`` is created with ``If-None-Match: *``; a lease of the same
  order (a killed run of it) is taken over, another order's is refused. A zero-byte probe tells
  whether the store honours conditional writes; where it does not (``rclone serve s3``), the lease
  is written and read back (last writer wins, so a run that does not read its own token lost),
  which narrows the race to a few milliseconds instead of closing it; the final verification
  still catches a set that was mixed;
* when the lease taken over was a killed run's of this order, the objects under the prefix that
  are in no manifest (what it left) are deleted and its multipart uploads aborted; without that
  proof of whose they are, such objects are only named in the StatusMessage and kept.

Before the manifest is written, :meth:`Claim.verify` lists the prefix and checks that every
object there is one this run wrote (size and ETag of the upload's answer) or a protected one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import secrets
import time
from collections.abc import Iterable, Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from hook_processor._s3 import transfer as _transfer
from hook_processor._s3.engine import Payload
from hook_processor.errors import OptionsError, PublishError

MANIFEST_NAME = "_manifest.json"
LEASE_NAME = "_claim.json"
_PROBE = ".hook-processor-probe-"
_RECHECKED = 100  # objects a verification asks again by HEAD at most; the others count as listed
_SHOWN = 5  # keys named in a message


@dataclasses.dataclass(frozen=True)
class Order:
    """Who is publishing: the order id, or the digest of its inputs and options."""

    order_id: str | None
    digest: str

    def owns(self, record: Mapping[str, Any]) -> bool:
        if self.order_id:
            return str(record.get("order_id") or "") == self.order_id
        return not record.get("order_id") and record.get("order_digest") == self.digest

    def shown(self) -> str:
        return f"order {self.order_id}" if self.order_id else f"order digest {self.digest[:12]}"


@dataclasses.dataclass
class Claim:
    """What the preflight found and holds; :func:`publish_private` uses it."""

    job: _transfer.Job
    prefix: str
    order: Order
    conditional: bool = True  # the store honours If-None-Match
    existing: dict[str, Any] | None = None  # this order's manifest: a rerun
    protected: dict[str, str] = dataclasses.field(default_factory=dict)  # key -> whose
    removed: list[str] = dataclasses.field(default_factory=list)
    aborted: list[str] = dataclasses.field(default_factory=list)
    unlisted: list[str] = dataclasses.field(default_factory=list)  # in no manifest, kept
    token: str = ""
    held: bool = False
    taken_over: bool = False  # the lease was a killed run's of this same order

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def refuse_protected(self, keys: Iterable[str]) -> None:
        """Before the first upload: none of ``keys`` may replace a protected object."""
        hits = [k for k in keys if k in self.protected]
        if not hits:
            return
        whose = sorted({self.protected[k] for k in hits})
        raise PublishError(
            f"refusing to publish: {_few(self.job, hits)} would replace objects of "
            f"{', '.join(whose)}; choose another s3_prefix (hook-processor never replaces "
            "another run's files or the run's own input)"
        )

    def verify(self, written: Mapping[str, tuple[int, str]]) -> None:
        """Every object under the prefix is one this run wrote (size, ETag) or a protected one."""
        job = self.job
        job.phase = "verifying the output"
        lease, manifest = self.key(LEASE_NAME), self.key(MANIFEST_NAME)
        foreign: list[str] = []
        differs: list[str] = []  # written by this run, listed with another size or ETag
        from hook_processor._s3 import listing

        # Page by page: at 100,000 objects a list of the whole listing held ~350 bytes a key.
        for listed, listed_size, listed_etag in listing.objects(
            job, self.prefix + "/" if self.prefix else ""
        ):
            key = str(listed)
            if key in (lease, manifest) or key.endswith("/") or _PROBE in key:
                continue  # (the probe was deleted in the preflight: a lagging listing shows it)
            mine = written.get(key)
            if mine is None:
                if key not in self.protected and key not in self.unlisted:
                    foreign.append(key)
                continue
            size, etag = mine
            if not _same(size, etag, int(listed_size), str(listed_etag)):
                differs.append(key)
        # A listing may lag behind the writes it follows (rclone's directory cache under load,
        # an eventually consistent store): an object it shows otherwise than this run wrote is
        # asked once more by HEAD, which reads the object itself. Another run's object stays
        # another's: its HEAD shows its own size and ETag.
        said = ""
        for n, key in enumerate(differs):
            size, etag = written[key]
            if n >= _RECHECKED:
                foreign.append(key)
                continue
            try:
                head = job.call(job.s3.head_object, Bucket=job.bucket, Key=key)
            except ClientError:
                foreign.append(key)
                continue
            held_size = int(head.get("ContentLength", -1))
            held_etag = str(head.get("ETag", "")).strip('"')
            if not _same(size, etag, held_size, held_etag):
                foreign.append(key)
                said = said or (
                    f" ({job.url(key)} holds {held_size} bytes, ETag {held_etag}; "
                    f"this run wrote {size} bytes, ETag {etag})"
                )
        if foreign:
            raise PublishError(
                f"another run wrote under {job.url(self.prefix)} while this one published: "
                f"{_few(job, foreign)} are not the objects this run uploaded{said}; no manifest "
                "was written; run again with another s3_prefix"
            )

    def release(self) -> None:
        """Delete the lease (best effort: a leftover lease of this order is taken over)."""
        if self.held:
            self.held = False
            with contextlib.suppress(ClientError, BotoCoreError):
                self.job.call(
                    self.job.s3.delete_object, Bucket=self.job.bucket, Key=self.key(LEASE_NAME)
                )

    def notes(self) -> str:
        """What the claim cleaned up, for the StatusMessage."""
        said = []
        if self.removed:
            said.append(f"removed {len(self.removed)} leftover objects in no manifest")
        if self.aborted:
            said.append(f"aborted {len(self.aborted)} unfinished multipart uploads")
        if self.unlisted:
            said.append(
                f"{len(self.unlisted)} objects under the prefix are in no manifest and were left "
                f"as they are: {_few(self.job, self.unlisted)}"
            )
        return "; ".join(said)


def preflight(
    job: _transfer.Job,
    prefix: str,
    order: Order,
    *,
    own_input: tuple[str, str] | None = None,
) -> Claim:
    """Check the output side and claim ``prefix`` (see the module doc). ``own_input``: the
    (bucket, key) of the run's input when it is on the same store."""
    prefix = prefix.strip("/")
    claim = Claim(job, prefix, order)
    try:
        _head_bucket(job)
        found = _read_json(job, claim.key(MANIFEST_NAME))
        if found is not None:
            if not order.owns(found):
                raise PublishError(
                    f"{job.url(claim.key(MANIFEST_NAME))} already exists: a previous run "
                    f"({_whose(found)}) published to {job.url(prefix)}; choose another "
                    "s3_prefix or delete that run's objects first (hook-processor never mixes "
                    "the outputs of two runs)"
                )
            claim.existing = found
            return claim
        _protect_parents(claim)
        listing = _list(job, prefix + "/" if prefix else "")
        _protect_children(claim, listing)
        if own_input is not None and own_input[0] == job.bucket:
            _protect_input(claim, own_input[1], listing)
        claim.conditional = _conditional_writes(job, claim)
        _lease(claim)
        _clean_leftovers(claim, listing)
    except ClientError as err:
        status = _transfer.http_status(err)
        if status == 403:
            raise PublishError(
                f"the output store refused access to {job.url(prefix)} at {job.endpoint} "
                "(HTTP 403): check S3_ACCESS_KEY / S3_SECRET_KEY and their rights on "
                f"{job.bucket}; nothing was staged"
            ) from err
        raise job.fail(f"could not check the output {job.url(prefix)}", err) from err
    except BotoCoreError as err:
        raise job.fail(f"could not check the output {job.url(prefix)}", err) from err
    return claim


def _head_bucket(job: _transfer.Job) -> None:
    try:
        job.call(job.s3.head_bucket, Bucket=job.bucket)
    except ClientError as err:
        if _transfer.http_status(err) == 404:
            raise OptionsError(
                f"the output bucket {job.bucket} does not exist at {job.endpoint}: create it "
                "or correct S3_BUCKET / output_s3_path; nothing was staged"
            ) from err
        raise


def _read_json(job: _transfer.Job, key: str) -> dict[str, Any] | None:
    try:
        body = _read_all(job.call(job.s3.get_object, Bucket=job.bucket, Key=key)["Body"])
    except ClientError as err:
        if _transfer.http_status(err) == 404:
            return None
        raise
    try:
        data = json.loads(body)
    except ValueError:
        return {"unreadable": True}
    return data if isinstance(data, dict) else {"unreadable": True}


def _read_all(body: Any) -> bytes:
    """A small body, whole (an engine's ``read()`` may give it in pieces)."""
    try:
        return b"".join(iter(lambda: bytes(body.read(64 * 1024)), b""))
    finally:
        body.close()


def _protect(claim: Claim, manifest_key: str, record: Mapping[str, Any]) -> None:
    whose = f"the manifest {claim.job.url(manifest_key)} ({_whose(record)})"
    for entry in record.get("files", ()) or ():
        if isinstance(entry, Mapping) and "key" in entry:
            claim.protected[str(entry["key"])] = whose
    claim.protected[manifest_key] = whose


def _protect_parents(claim: Claim) -> None:
    parts = claim.prefix.split("/") if claim.prefix else []
    for n in range(len(parts)):  # "", "a", "a/b" for the prefix "a/b/c"
        parent = "/".join(parts[:n])
        key = f"{parent}/{MANIFEST_NAME}" if parent else MANIFEST_NAME
        found = _read_json(claim.job, key)
        if found is not None:
            _protect(claim, key, found)


def _protect_children(claim: Claim, listing: list[dict[str, Any]]) -> None:
    own = claim.key(MANIFEST_NAME)
    for obj in listing:
        key = str(obj["Key"])
        if key.endswith("/" + MANIFEST_NAME) and key != own:
            found = _read_json(claim.job, key)
            if found is not None:
                _protect(claim, key, found)


def _protect_input(claim: Claim, input_key: str, listing: list[dict[str, Any]]) -> None:
    """The input's objects that an output could replace: those under the output prefix, all of
    them in its listing. (A second listing of the whole input, 100,000 keys in a bench's shared
    bucket, took seconds and ~15 MB for keys that no output can reach.)"""
    whose = f"this run's input s3://{claim.job.bucket}/{input_key}"
    for obj in listing:
        key = str(obj["Key"])
        if key.startswith(input_key):  # a little more than the input at worst: safe
            claim.protected[key] = whose


def _conditional_writes(job: _transfer.Job, claim: Claim) -> bool:
    """A zero-byte probe written twice with If-None-Match: a store that honours it says 412."""
    probe = claim.key(_PROBE + secrets.token_hex(6))
    try:
        # Through the engine: its Content-MD5, checksums and Content-Length, as every upload.
        put = job.s3.put_object
        job.call(put, Bucket=job.bucket, Key=probe, Body=Payload(data=b""), IfNoneMatch="*")
        try:
            job.call(put, Bucket=job.bucket, Key=probe, Body=Payload(data=b""), IfNoneMatch="*")
        except ClientError as err:
            if _transfer.http_status(err) in (409, 412):
                return True
            raise
        return False
    finally:
        with contextlib.suppress(ClientError, BotoCoreError):
            job.call(job.s3.delete_object, Bucket=job.bucket, Key=probe)


def _lease(claim: Claim) -> None:
    job, key = claim.job, claim.key(LEASE_NAME)
    claim.token = secrets.token_hex(16)
    record = {
        "token": claim.token,
        "order_id": claim.order.order_id,
        "order_digest": claim.order.digest,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    body = json.dumps(record).encode()
    params: dict[str, Any] = {"Bucket": job.bucket, "Key": key, "ContentType": "application/json"}
    held = _read_json(job, key)
    if held is not None:
        if not claim.order.owns(held):
            raise PublishError(_taken(job, key, held))
        # A lease of this very order: its run was killed (or is this run's retried pod).
        job.call(job.s3.put_object, Body=Payload(data=body), **params)
        claim.taken_over = True
    else:
        try:
            job.call(job.s3.put_object, Body=Payload(data=body), IfNoneMatch="*", **params)
        except ClientError as err:
            if _transfer.http_status(err) not in (409, 412):
                raise
            raise PublishError(_taken(job, key, _read_json(job, key) or {})) from err
    if not claim.conditional:
        # Last writer wins on such a store: read back, and only the run that sees its own token
        # holds the prefix. The short pause lets a racing writer's PUT land first.
        time.sleep(0.05)
        back = _read_json(job, key) or {}
        if back.get("token") != claim.token:
            raise PublishError(_taken(job, key, back))
    claim.held = True


def _taken(job: _transfer.Job, key: str, held: Mapping[str, Any]) -> str:
    return (
        f"{job.url(key)} is held by another run ({_whose(held)}, since "
        f"{held.get('created', '?')}): two runs never publish to one prefix at the same time; "
        "choose another s3_prefix, or delete that lease if its run is no longer running"
    )


def _clean_leftovers(claim: Claim, listing: list[dict[str, Any]]) -> None:
    """What a killed run of this order left (its lease was ours to take over): objects in no
    manifest are deleted, its multipart uploads aborted. Without that proof of whose they are,
    objects in no manifest are only named (in the StatusMessage) and left alone."""
    job = claim.job
    skip = {claim.key(LEASE_NAME)}
    for obj in listing:
        key = str(obj["Key"])
        if key in skip or key in claim.protected or key.endswith("/") or _PROBE in key:
            continue
        if not claim.taken_over:
            claim.unlisted.append(key)
            continue
        job.call(job.s3.delete_object, Bucket=job.bucket, Key=key)
        claim.removed.append(key)
    if not claim.taken_over:
        return
    base = claim.prefix + "/" if claim.prefix else ""
    try:
        # The one call here on the boto3 client (no engine sends it): a takeover's only.
        uploads = job.call(job.s3.boto.list_multipart_uploads, Bucket=job.bucket, Prefix=base)
    except ClientError:
        return  # a store without the listing: nothing we can abort
    for upload in uploads.get("Uploads", ()) or ():
        key = str(upload["Key"])
        if key in claim.protected:
            continue
        job.call(
            job.s3.abort_multipart_upload,
            Bucket=job.bucket,
            Key=key,
            UploadId=upload["UploadId"],
        )
        claim.aborted.append(key)


def verify_existing(claim: Claim) -> list[dict[str, Any]]:
    """A rerun: the earlier manifest's files are all there with their sizes; its entries."""
    job = claim.job
    manifest = claim.existing or {}
    files = [dict(f) for f in manifest.get("files", ()) or () if isinstance(f, Mapping)]
    sizes = {
        str(o["Key"]): int(o.get("Size", -1))
        for o in _list(job, claim.prefix + "/" if claim.prefix else "")
    }
    bad = [str(f.get("key")) for f in files if sizes.get(str(f.get("key"))) != f.get("size")]
    if bad:
        raise PublishError(
            f"{job.url(claim.key(MANIFEST_NAME))} of this order lists {_few(job, bad)}, which "
            "are missing or of another size; delete that run's objects and run again"
        )
    return files


def _list(job: _transfer.Job, prefix: str) -> list[dict[str, Any]]:
    from hook_processor._s3 import listing

    return listing.list_objects(job, prefix)


def _whose(record: Mapping[str, Any]) -> str:
    if record.get("unreadable"):
        return "unreadable manifest"
    if record.get("order_id"):
        return f"order {record['order_id']}"
    if record.get("order_digest"):
        return f"order digest {str(record['order_digest'])[:12]}"
    return "unknown order"


def _same(size: int, etag: str, other_size: int, other_etag: str) -> bool:
    """Whether an object listed or HEADed as ``other_*`` is the one written as ``size, etag``.

    An object the store shows with no ETag at all is judged by its size: the store says nothing
    against it. ``rclone serve s3`` under load listed and HEADed one of 100,000 objects that an
    exec had just written with an empty ETag (its MD5 not computed yet), and the run failed
    as if another run had written it (bench scale, 2026-12-08).
    """
    other = other_etag.strip('"')
    return other_size == size and (not etag or not other or other == etag)


def _few(job: _transfer.Job, keys: list[str]) -> str:
    shown = ", ".join(job.url(k) for k in keys[:_SHOWN])
    more = f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    return shown + more
