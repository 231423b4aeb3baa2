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

__version__ = "0.1.0"

__all__ = ["Context", "Options", "__version__"]


def __getattr__(name: str) -> type:
    # Lazy, so that ``import hook_processor`` stays cheap for the runtime's start-up.
    if name == "Options":
        from hook_processor.options import Options

        return Options
    if name == "Context":
        from hook_processor.context import Context

        return Context
    raise AttributeError(name)
