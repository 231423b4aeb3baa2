"""What the runtime's tests share: hello_world, the seed's option names, a project, ``exec``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
HELLO_WORLD = REPO_ROOT / "examples" / "hello_world"
CANARY = "CANARY-8c1f3b0e-SECRET"


def put_tree(s3, bucket: str, prefix: str, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        s3.put_object(Bucket=bucket, Key=f"{prefix}{name}", Body=data)


def private_env(
    server, in_bucket: str, out_bucket: str, work: Path, **extra: str
) -> dict[str, str]:
    """The seed's live-service option names, as environment variables."""
    return {
        "SOURCE_S3_ENDPOINT_URL": server.endpoint_url,
        "SOURCE_S3_PATH": f"s3://{in_bucket}/dedl_hello_world/input_file_location",
        "SOURCE_S3_ACCESS_KEY": server.access_key,
        "SOURCE_S3_SECRET_KEY": CANARY,  # moto accepts any secret: the canary travels everywhere
        "OUTPUT_STORAGE": "PRIVATE",
        "OUTPUT_S3_ENDPOINT_URL": server.endpoint_url,
        "OUTPUT_S3_PATH": f"s3://{out_bucket}/results/run1",
        "OUTPUT_S3_ACCESS_KEY": server.access_key,
        "OUTPUT_S3_SECRET_KEY": CANARY,
        "HOOK_WORK_DIR": str(work),
        **extra,
    }


def write_processor(tmp_path: Path, body: str) -> Path:
    """A project whose module has a unique name, with ``body`` as its process()."""
    project = tmp_path / "proj"
    project.mkdir()
    module = f"proc_{uuid.uuid4().hex[:8]}"
    (project / f"{module}.py").write_text(textwrap.dedent(body))
    (project / "pyproject.toml").write_text(
        f'[tool.hook-processor]\nname = "failing"\nentrypoint = "{module}:process"\n'
    )
    return project


def exec_command(env: dict[str, str], *args: str, **kwargs) -> subprocess.Popen:
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith(("AWS_", "HOOK_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "hook_processor", "exec", *args],
        env={**base, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )
