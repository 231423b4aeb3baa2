"""Exports of a processor to other engines: :mod:`hook_processor.export.argo`, an Argo
WorkflowTemplate built with hera (``hook-processor export argo``).

hera and PyYAML are imported only by that module and the command (``hook-processor[argo]``).
"""
