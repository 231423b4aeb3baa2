"""The output side of one run: the preflight's claim, a rerun of a published order, publication.

:class:`Output` is what :mod:`hook_processor.runtime` holds for it. For a PRIVATE output the
preflight (called by the stage-in once the input is listed, before any byte moves) claims the
prefix; the same order's manifest there makes the run a rerun that verifies that set instead
(:class:`AlreadyPublished`); the claim is released in the end, whatever happened. The retries are
counted from two jobs: the claim's own (the preflight, then its verification and release) and
each transfer's. Light, like the runtime: storage (boto3) is imported only when a run uses it.
"""

from __future__ import annotations

import hashlib
import json
import secrets as _random
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, overload

from hook_processor import _log
from hook_processor._log import human_size
from hook_processor._progress import ProgressFactory
from hook_processor.options import RunConfig
from hook_processor.result import RunResult, timed


class AlreadyPublished(Exception):  # noqa: N818 - a signal, not an error
    """The same order's manifest is at the prefix: no stage-in, verify that set instead."""


class Output:
    """Where one run publishes, and the claim its preflight holds (PRIVATE output only)."""

    def __init__(
        self,
        config: RunConfig,
        result: RunResult,
        settings: Any,
        source: Any,
        cancel: threading.Event,
    ) -> None:
        self.config, self.result, self.settings = config, result, settings
        self.source, self.cancel = source, cancel
        self.client: Any = None  # the output store's engine, made by the preflight
        self.claim: Any = None
        self.retries = 0  # the preflight's; each transfer's job counts its own

    def preflight(self) -> None:
        """Claim the output prefix; :class:`AlreadyPublished` when this order published there."""
        from hook_processor import storage

        # The output side (bucket, credentials, manifests, lease) is checked once the input is
        # listed, before any byte moves: a refusal after hours of stage-in helps nobody.
        config, result = self.config, self.result
        platform, std = config.platform, config.standard
        if std.output_storage != "PRIVATE":
            return
        with timed(result, "preflight"):
            out_bucket, prefix = config.output_location
            target = storage.S3Target(
                std.s3_endpoint_url, std.s3_access_key, std.s3_secret_key, platform.s3_region
            )
            self.client = storage.make_client(target, self.settings)
            self.claim = claim = storage.claim_output(
                self.client,
                out_bucket,
                prefix,
                self.settings,
                order_id=result.order_id,
                digest=order_digest(config),
                own_input=config.input_location if target == self.source else None,
                cancel=self.cancel,
            )
        self.retries = claim.job.retries
        if claim.existing is not None:
            raise AlreadyPublished
        log = _log.get_logger()
        log.info(
            "preflight: s3://%s/%s claimed (%s)",
            out_bucket,
            prefix,
            "conditional writes honoured"
            if claim.conditional
            else "this store ignores If-None-Match: the claim is read back, not atomic",
        )
        if claim.removed or claim.aborted or claim.unlisted:
            log.warning("preflight: %s under s3://%s/%s", claim.notes(), out_bucket, prefix)
            result.notes.append(claim.notes())

    def complete_rerun(self) -> None:
        """The same order published fully before (a retried pod): verify that set, report it."""
        from hook_processor._s3 import claim as _claim

        result, claim = self.result, self.claim
        result.retries += self.retries  # the stage-in stopped before it counted them
        files = _claim.verify_existing(claim)
        job = claim.job
        result.products = [
            {
                "Name": str(f["key"])[len(claim.prefix) + 1 if claim.prefix else 0 :],
                "Size": int(f["size"]),
                "Location": job.url(str(f["key"])),
                **({"Sha256": f["sha256"]} if f.get("sha256") else {}),
            }
            for f in files
        ]
        result.manifest = job.url(claim.key(_claim.MANIFEST_NAME))
        result.output_files = len(files)
        result.output_bytes = sum(int(f["size"]) for f in files)
        result.notes.append(
            f"already published by an earlier run of this order; {result.manifest} and its "
            f"{len(files)} files verified, nothing staged or processed again"
        )
        _log.get_logger().info("preflight: %s", result.notes[-1])

    def release(self) -> None:
        """Release the claim (if one is held); its requests after the preflight count too."""
        if self.claim is not None:
            self.claim.release()
            # The claim's own requests after the preflight (verification, release) count too.
            self.result.retries += self.claim.job.retries - self.retries

    def publish(self, output_dir: Path, progress: ProgressFactory | None) -> None:
        """Publish ``output_dir`` (PRIVATE: under the claimed prefix, else one zip)."""
        from hook_processor import storage

        config, result, settings = self.config, self.result, self.settings
        platform, std = config.platform, config.standard
        log = _log.get_logger()
        manifest_extra = {
            "workflow_name": result.workflow_name,
            "order_workflow_name": result.order_workflow_name,
            "order_id": result.order_id,
            "order_name": result.order_name,
            "identifiers": list(result.identifiers),
            "order_digest": order_digest(config),
        }
        publish_progress = progress("publish") if progress else None
        if std.output_storage == "PRIVATE":
            out_bucket, prefix = config.output_location
            log.info("publish: output to s3://%s/%s", out_bucket, prefix)
            outcome = storage.publish_private(
                self.client,
                out_bucket,
                prefix,
                output_dir,
                settings,
                manifest_extra=manifest_extra,
                cancel=self.cancel,
                progress=publish_progress,
                claim=self.claim,
            )
        else:
            target = storage.S3Target(
                platform.temporary_s3_endpoint_url,
                platform.temporary_s3_access_key,
                platform.temporary_s3_secret_key,
                platform.s3_region,
            )
            assert platform.temporary_s3_bucket is not None
            key = _temporary_key(platform.temporary_s3_prefix, result.order_id)
            log.info("publish: output zipped to the temporary storage")
            outcome = storage.publish_temporary(
                storage.make_client(target, settings),
                platform.temporary_s3_bucket,
                key,
                output_dir,
                settings,
                expires_in=platform.download_link_seconds,
                verify_link=platform.verify_link,
                cancel=self.cancel,
                progress=publish_progress,
            )
        result.products = _ProductsJson(outcome.products)
        result.manifest = outcome.manifest
        # What publication counted, not a new walk of the folder: a link inside it is followed
        # by publication (its files are uploaded under the link's path) but not by rglob().
        result.output_files = outcome.stats.files
        result.output_bytes = outcome.stats.bytes
        result.retries += outcome.stats.retries
        log.info("publish: %d products, %s", len(outcome.products), human_size(outcome.stats.bytes))


def order_digest(config: RunConfig) -> str:
    """What makes two runs the same order without an order id: inputs, options, output."""
    std = config.standard
    workflow = config.workflow.model_dump(mode="json") if config.workflow is not None else None
    facts = {
        "input": [std.input_s3_endpoint_url, std.input_s3_path],
        "output": [std.output_storage, *config.output_location]
        if std.output_storage == "PRIVATE"
        else [std.output_storage],
        "workflow_options": workflow,
        "identifiers": list(config.order.identifiers),
        "order_name": config.order.order_name,
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()


def _temporary_key(prefix: str, order_id: str | None) -> str:
    # The live service names its zips like 20240902_34079_v3wQnhFs.zip.
    day = time.strftime("%Y%m%d", time.gmtime())
    name = f"{day}_{order_id or 'local'}_{_random.token_urlsafe(6)}.zip"
    return f"{prefix.strip('/')}/{name}" if prefix.strip("/") else name


class _ProductsJson(Sequence[dict[str, Any]]):
    """result.json's Products of a publication, a dict made per access: at 100,000 files a
    dict per product held ~230 bytes a file more until result.json was written."""

    def __init__(self, products: Sequence[Any]) -> None:
        self._products = products

    def __len__(self) -> int:
        return len(self._products)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return _product_json(self._products[index])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]


def _product_json(product: Any) -> dict[str, Any]:
    data = {"Name": product.name, "Size": product.size}
    if product.location:
        data["Location"] = product.location
    if product.download_link:
        data["DownloadLink"] = product.download_link
    if product.sha256:
        data["Sha256"] = product.sha256
    return data
