"""hook-processor: write one function, get a DestinE Data Lake Hook processor.

A complete processor::

    from pathlib import Path

    def process(input_dir: Path, output_dir: Path) -> None:
        for src in input_dir.rglob("*"):
            if src.is_file():
                dst = output_dir / src.relative_to(input_dir)
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_text(src.read_text().upper())

Declare it in the project's ``pyproject.toml``::

    [tool.hook-processor]
    name = "dedl_hello_world"
    entrypoint = "hello_world.processor:process"
    version = "1.1.0"

and run it with ``hook-processor run`` (locally) or ``hook-processor exec`` (in the container).
"""

from typing import TYPE_CHECKING

# The errors a caller may catch (errors.py imports only the standard library).
from hook_processor.errors import (
    Cancelled,
    ContainerError,
    ExitCode,
    HookProcessorError,
    OptionsError,
    ProcessError,
    PublishError,
    StagingError,
    UserError,
)

if TYPE_CHECKING:
    # Real names for type checkers; at run time __getattr__ imports them on first use.
    from hook_processor.context import Context
    from hook_processor.options import Options

__version__ = "0.1.0"

__all__ = [
    "Cancelled",
    "ContainerError",
    "Context",
    "ExitCode",
    "HookProcessorError",
    "Options",
    "OptionsError",
    "ProcessError",
    "PublishError",
    "StagingError",
    "UserError",
    "__version__",
]


def __getattr__(name: str) -> type:
    # Lazy, so that ``import hook_processor`` stays cheap for the runtime's start-up (Options
    # imports pydantic) and works in the base image before its dependencies are installed.
    if name == "Options":
        from hook_processor.options import Options

        return Options
    if name == "Context":
        from hook_processor.context import Context

        return Context
    raise AttributeError(f"module 'hook_processor' has no attribute {name!r}")
