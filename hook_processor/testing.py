"""pytest plugin for processor projects (registered through the ``pytest11`` entry point).

Fixtures arrive with the local-harness work; this module must stay importable at all times,
because pytest loads it in every session where hook-processor is installed.
"""
