"""The exception hierarchy: one root, a user-fixable branch, one class per failing phase.

A :class:`UserError` carries the whole message a person needs (what is wrong and how to fix it);
the CLI prints it as is. Anything that is not a :class:`HookProcessorError` is a bug in
hook-processor and keeps its traceback. Each phase error maps to one exit code (:class:`ExitCode`).
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes; the harness returns the same ones."""

    COMPLETED = 0
    INTERNAL_ERROR = 1  # a bug in hook-processor itself
    BAD_OPTIONS = 2  # options, project or entrypoint are wrong: nothing was transferred
    STAGING_FAILED = 3  # the input could not be staged from S3
    PROCESS_FAILED = 4  # the author's process() raised
    PUBLISH_FAILED = 5  # the output could not be published
    CANCELLED = 6  # SIGTERM/SIGINT: stopped, nothing published


class HookProcessorError(Exception):
    """Root of every error hook-processor raises on purpose."""

    exit_code: ExitCode = ExitCode.INTERNAL_ERROR
    retries: int = 0  # S3 retries made by the transfer that failed (the result reports them)


class UserError(HookProcessorError):
    """A problem the user can fix; the message is the whole story."""


class OptionsError(UserError, ValueError):
    """Bad or missing options, project configuration or entrypoint."""

    exit_code = ExitCode.BAD_OPTIONS


class ContainerError(UserError):
    """An image could not be built or run (no engine, a failing build step, a missing image).

    Nothing was run, so it shares the exit code of a wrong project (2)."""

    exit_code = ExitCode.BAD_OPTIONS


class StagingError(UserError):
    """The input could not be fetched from S3 into input_dir."""

    exit_code = ExitCode.STAGING_FAILED


class ProcessError(HookProcessorError):
    """The author's process() raised; ``__cause__`` is the author's exception."""

    exit_code = ExitCode.PROCESS_FAILED


class CatalogError(UserError, ValueError):
    """The processor's description of its outputs for the STAC catalog is wrong (a bad bbox,
    geometry or datetime in ``context.stac.add_item``, an invalid ``catalog.json`` of its own).

    The author's code is at fault, so it shares the exit code of a failing process() (4)."""

    exit_code = ExitCode.PROCESS_FAILED


class PublishError(UserError):
    """The output could not be published."""

    exit_code = ExitCode.PUBLISH_FAILED


class Cancelled(HookProcessorError):
    """The run was stopped by a signal."""

    exit_code = ExitCode.CANCELLED
