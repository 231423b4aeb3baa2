"""``hook-processor serve``: the Hook's order service on a laptop.

Layers, imports flowing one way (top to bottom):

- ``server``  uvicorn start-up, the start-up line, Ctrl-C; the embedded S3 server
- ``app``     the FastAPI application: token endpoint, the OData routes, JSON shapes, errors
- ``dashboard`` the order dashboard at ``/``: the static page (``static/``) that calls the API
- ``odata``   ``$filter`` / ``$orderby`` / ``$top`` / ``$skip`` / ``$count`` into SQL
- ``orders``  the order service: validation, one item per identifier, the priority queue,
              cancel, recovery after a restart
- ``executor`` one order item = one run of the runtime, in a harness mode
- ``workflows`` the processors (project folders, images, the built-in ``odp-test``) as Workflows
- ``store``   the SQLite file under ``--data-dir``: the one place state lives

fastapi and uvicorn are imported by ``app``, ``dashboard`` and ``server`` only; nothing here is
on ``exec``'s start-up path.
"""
