"""The order store: one SQLite file under ``--data-dir`` (WAL, so API reads never wait on writes).

Columns carry the OData field names of the entity they back, so that ``$filter=(Name eq 'x')``
reads the column of that name (the ``odata`` module maps and checks names; nothing else reaches
SQL). ``ProductionOrders`` is a view: in our service every order item is a ProductionOrder
(hook-contract.md §2: "ProductionOrders endpoint gives status of orders (only with one item
attached)"), with its order's Name, Priority and workflow.

Secrets: ``batch_orders.options_json`` keeps every option of the order as posted, secrets
included, because a queued item must still run after a restart; the file is created 0600 and the
API never echoes a secret option (``echoed_json`` is what it shows).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

-- Refreshed at every start from the served projects/images (not orders: those are kept).
CREATE TABLE IF NOT EXISTS workflows (
    Id TEXT PRIMARY KEY,                 -- a string, as the live API (hook-contract.md §3.1)
    Name TEXT NOT NULL UNIQUE,
    DisplayName TEXT,
    Description TEXT,
    Documentation TEXT,
    InputProductType TEXT,
    OutputProductType TEXT,
    WorkflowVersion TEXT,
    CustomInputSource INTEGER NOT NULL DEFAULT 0,
    InputProductStatusOffline INTEGER NOT NULL DEFAULT 0,
    entry_json TEXT NOT NULL,            -- the whole describe entry, WorkflowOptions included
    source TEXT NOT NULL                 -- "project:<dir>", "image:<ref>" or "builtin:odp-test"
);

CREATE TABLE IF NOT EXISTS batch_orders (
    Id INTEGER PRIMARY KEY AUTOINCREMENT, -- an integer, as the live API (§3.4)
    Name TEXT NOT NULL,
    Priority INTEGER NOT NULL DEFAULT 50,
    WorkflowName TEXT NOT NULL,
    WorkflowId INTEGER,
    WorkflowDisplayName TEXT,
    WorkflowVersion TEXT,
    Status TEXT NOT NULL,                -- queued | in_progress | completed | failed | cancelled
    StatusMessage TEXT,
    SubmissionDate TEXT NOT NULL,        -- ISO 8601 UTC with milliseconds and Z, as recorded
    EstimatedDate TEXT,
    CompletedDate TEXT,
    KeycloakUUID TEXT,                   -- the token's user
    options_json TEXT NOT NULL,          -- [{"Name", "Value"}] as posted, secrets included
    echoed_json TEXT NOT NULL,           -- the same without secret options: what the API shows
    identifiers_json TEXT NOT NULL       -- the IdentifierList as posted
);

CREATE TABLE IF NOT EXISTS items (
    Id INTEGER PRIMARY KEY AUTOINCREMENT,
    BatchOrderId INTEGER NOT NULL REFERENCES batch_orders(Id),
    Position INTEGER NOT NULL,           -- index in the IdentifierList
    InputProductReference TEXT,          -- the identifier (null for an empty IdentifierList)
    Priority INTEGER NOT NULL,           -- the order's, copied: the queue's sort key
    Status TEXT NOT NULL,
    StatusMessage TEXT,
    SubmissionDate TEXT NOT NULL,
    StartedDate TEXT,
    CompletedDate TEXT,
    ProcessedName TEXT,
    ProcessedSize INTEGER,
    OutputUUID TEXT,
    DownloadLink TEXT,                   -- TEMPORARY output
    OutputLocation TEXT,                 -- PRIVATE output (ours: s3://bucket/prefix)
    ExitCode INTEGER,
    Attempts INTEGER NOT NULL DEFAULT 0,
    log_path TEXT,
    result_json TEXT                     -- the runtime's result, as written
);
CREATE INDEX IF NOT EXISTS items_queue ON items (Status, Priority DESC, Id);
CREATE INDEX IF NOT EXISTS items_order ON items (BatchOrderId, Position);

CREATE VIEW IF NOT EXISTS production_orders AS
SELECT CAST(i.Id AS TEXT) AS Id, i.Status AS Status, i.StatusMessage AS StatusMessage,
       i.SubmissionDate AS SubmissionDate, o.Name AS Name, o.EstimatedDate AS EstimatedDate,
       i.CompletedDate AS CompletedDate, i.InputProductReference AS InputProductReference,
       o.WorkflowName AS WorkflowName, o.WorkflowId AS WorkflowId, o.Priority AS Priority,
       o.Id AS BatchOrderId, o.echoed_json AS echoed_json, i.ProcessedSize AS OrderOutputSize
FROM items i JOIN batch_orders o ON o.Id = i.BatchOrderId;

-- Access tokens of the token endpoint (app's auth): only a SHA-256 of each token is kept, so the
-- file does not hold usable tokens; a restart keeps them valid until they expire.
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    expires REAL NOT NULL                -- Unix time
);
"""


class Store:
    """The SQLite file; one connection per thread (sqlite3 connections are not shared)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            # 0600: the file keeps the orders' secret options (see the module doc).
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._local = threading.local()
        self._write_lock = threading.Lock()
        db = self.connection()
        with self._write_lock:
            db.executescript(SCHEMA)  # its own transaction (executescript commits first)
            db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (rows are ``sqlite3.Row``)."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA busy_timeout=30000")
            self._local.db = db
        return db

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE), serialised inside this process."""
        db = self.connection()
        with self._write_lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def close(self) -> None:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
