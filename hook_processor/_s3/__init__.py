"""The S3 data plane: one :class:`~hook_processor._s3.engine.Engine` interface, three engines.

* ``engine.py``: the interface the transfer code calls, the settings, ``create()`` (the engine
  is chosen there, once, by ``TransferSettings.engine``: ``obstore``, ``lean`` or ``boto3``);
* ``obstore_engine.py``: the obstore engine (Rust object_store for GET and PUT bodies);
* ``lean.py`` + ``sigv4.py``: the lean engine (SigV4 by hand on one urllib3 pool);
* ``boto.py``: the boto3 client (control calls, presigning) and the boto3 engine;
* ``transfer.py``: one job's pool, counters and error text; ``download.py`` / ``upload.py``.

Nothing here imports a run (options, context, runtime): the public entry points are in
``hook_processor/storage.py``.
"""
