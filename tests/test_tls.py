"""Over https: a certificate that does not verify is named, not retried; SSL_CERT_FILE is honoured.

The server is ``rclone serve s3`` (it verifies SigV4) with a certificate of a private CA made here.
A certificate error used to read "Connection was closed before we received a valid response",
was retried like a dropped connection, and only AWS_CA_BUNDLE (lean) or AWS_CA_BUNDLE and
REQUESTS_CA_BUNDLE (boto3) could name a CA bundle.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import urllib3
from botocore.config import Config
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from exec_helpers import HELLO_WORLD, private_env
from rclone_server import rclone_s3

from hook_processor import runtime
from hook_processor.errors import ExitCode
from hook_processor.options import OptionSources

ACCESS, SECRET = "tls-access", "tls-secret-0123456789"
ENGINES = ["lean", "boto3", "obstore"]


@dataclass
class TlsS3:
    endpoint_url: str
    access_key: str
    root: Path  # rclone serves its directories as buckets
    cert: Path  # the private CA's certificate, which signed the server's


def private_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA, a server certificate for 127.0.0.1 that it signed, and the server's key:
    (CA certificate, server certificate, server key).

    The server's certificate is not the CA's own: rustls (obstore's TLS) refuses a CA
    certificate presented as a server's (``CaUsedAsEndEntity``), as a private CA never does.
    """
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hook-processor test CA")])
    now = datetime.datetime.now(datetime.UTC)
    valid = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = (
        directory / "ca.pem",
        directory / "cert.pem",
        directory / "key.pem",
    )
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, cert_path, key_path


@pytest.fixture(scope="module")
def tls_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsS3]:
    ca, cert, key = private_ca(tmp_path_factory.mktemp("tls"))
    root = tmp_path_factory.mktemp("rclone-tls-root")
    with rclone_s3(root, ACCESS, SECRET, tls=(cert, key, ca)) as endpoint:
        served = TlsS3(endpoint, ACCESS, root, ca)
        for bucket in ("inb", "outb", *(f"tmp-{engine}" for engine in ENGINES)):
            tls_client(served).create_bucket(Bucket=bucket)
        yield served


BUNDLE_VARIABLES = ("SSL_CERT_FILE", "AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE")


@pytest.fixture(autouse=True)
def _no_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CA bundle from the developer's environment: each test names the one it wants."""
    for name in BUNDLE_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def attempts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The port of every request urllib3 tries, from the lean path and from botocore."""
    seen: list[int] = []
    original = urllib3.HTTPConnectionPool.urlopen

    def counting(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(self.port)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(urllib3.HTTPConnectionPool, "urlopen", counting)
    return seen


def tls_client(tls_s3: TlsS3) -> Any:
    """The tests' own client of the https server (Content-Length on every PUT: rclone needs it)."""
    return boto3.client(
        "s3",
        endpoint_url=tls_s3.endpoint_url,
        aws_access_key_id=ACCESS,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
        verify=str(tls_s3.cert),
        config=Config(request_checksum_calculation="when_required"),
    )


def tls_env(tls_s3: TlsS3, work: Path, run: str, **extra: str) -> dict[str, str]:
    """An order whose input and output are both on the https server."""
    tls_client(tls_s3).put_object(
        Bucket="inb", Key=f"{run}/input_file_location/example.data", Body=b"over tls\n"
    )
    return private_env(
        tls_s3,
        "inb",
        "outb",
        work,
        SOURCE_S3_PATH=f"s3://inb/{run}/input_file_location",
        SOURCE_S3_SECRET_KEY=SECRET,
        OUTPUT_S3_SECRET_KEY=SECRET,
        OUTPUT_S3_PATH=f"s3://outb/{run}/out",
        **extra,
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_an_untrusted_certificate_is_named_and_tried_once(
    tls_s3: TlsS3, tmp_path: Path, attempts: list[int], engine: str
) -> None:
    env = tls_env(tls_s3, tmp_path / "work", f"untrusted-{engine}", HOOK_S3_ENGINE=engine)
    attempts.clear()  # the input's upload (trusted: the tests' own client) is not the run's
    result = runtime.run(OptionSources(env=env), project_dir=HELLO_WORLD)

    assert result.exit_code == ExitCode.STAGING_FAILED
    message = result.status_message
    assert "certificate" in message, message
    assert "self-signed certificate" in message  # the verifier's own reason
    assert "SSL_CERT_FILE" in message  # and the fix
    assert "closed before" not in message
    port = int(tls_s3.endpoint_url.rsplit(":", 1)[1])
    assert attempts.count(port) == 1  # not retried: the next try gets the same certificate
    written = json.loads((tmp_path / "work" / "result.json").read_text())
    assert written["StatusMessage"] == message


@pytest.mark.parametrize("variable", BUNDLE_VARIABLES)
@pytest.mark.parametrize("engine", ENGINES)
def test_a_ca_bundle_from_the_environment_is_trusted_by_both_engines(
    tls_s3: TlsS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str, variable: str
) -> None:
    monkeypatch.setenv(variable, str(tls_s3.cert))
    run = f"trusted-{engine}-{variable.lower()}"
    env = tls_env(tls_s3, tmp_path / "work", run, HOOK_S3_ENGINE=engine)
    result = runtime.run(OptionSources(env=env), project_dir=HELLO_WORLD)

    assert result.exit_code == ExitCode.COMPLETED, result.status_message
    out = tls_s3.root / "outb" / run / "out"
    manifest = json.loads((out / "_manifest.json").read_text())
    assert sorted(f["key"] for f in manifest["files"]) == [
        f"{run}/out/_stac/example.data.json",  # its STAC catalog, over TLS too
        f"{run}/out/catalog.json",
        f"{run}/out/example.data",
    ]
    assert (out / "example.data").read_bytes() == b"OVER TLS\n"


def big_copy_project(root: Path) -> Path:
    """A processor that writes one 11 MiB file: three parts of 5 MiB with HOOK_PART_SIZE_MB=5."""
    project = root / "big"
    project.mkdir()
    (project / "big_copy.py").write_text(
        "def process(input_dir, output_dir):\n"
        "    (output_dir / 'big.bin').write_bytes(bytes(range(256)) * (11 * 4096))\n"
        "    (output_dir / 'small.txt').write_text('small')\n"
    )
    (project / "pyproject.toml").write_text(
        '[tool.hook-processor]\nname = "big_copy"\nentrypoint = "big_copy:process"\n'
    )
    return project


@pytest.mark.parametrize("storage", ["PRIVATE", "TEMPORARY"])
@pytest.mark.parametrize("engine", ENGINES)
def test_every_upload_over_https_sends_a_content_length(
    tls_s3: TlsS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str, storage: str
) -> None:
    """rclone answers a body without Content-Length (aws-chunked, as botocore sends its CRC32
    trailer over https) with 411 MissingContentLength: single PUTs, parts and the manifest."""
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tls_s3.cert))  # honoured before SSL_CERT_FILE was
    run = f"length-{engine}-{storage.lower()}"
    env = tls_env(
        tls_s3,
        tmp_path / "work",
        run,
        HOOK_S3_ENGINE=engine,
        HOOK_PART_SIZE_MB="5",
        # rclone serve s3 ingests a multipart upload in part order and buffers parts that come
        # early; over TLS that stalled it now and then. This test is about Content-Length: one
        # request at a time keeps the parts in order.
        HOOK_CONCURRENCY="1",
        OUTPUT_STORAGE=storage,
        HOOK_TEMPORARY_S3_ENDPOINT_URL=tls_s3.endpoint_url,
        HOOK_TEMPORARY_S3_BUCKET=f"tmp-{engine}",
        HOOK_TEMPORARY_S3_ACCESS_KEY=ACCESS,
        HOOK_TEMPORARY_S3_SECRET_KEY=SECRET,
    )
    result = runtime.run(OptionSources(env=env), project_dir=big_copy_project(tmp_path))

    assert result.exit_code == ExitCode.COMPLETED, result.status_message
    big = bytes(range(256)) * (11 * 4096)
    if storage == "PRIVATE":
        out = tls_s3.root / "outb" / run / "out"
        assert (out / "big.bin").read_bytes() == big  # multipart: every UploadPart accepted
        assert (out / "small.txt").read_bytes() == b"small"
        manifest = json.loads((out / "_manifest.json").read_text())
        assert sorted(f["key"] for f in manifest["files"]) == [
            f"{run}/out/_stac/big.bin.json",
            f"{run}/out/_stac/small.txt.json",
            f"{run}/out/big.bin",
            f"{run}/out/catalog.json",
            f"{run}/out/small.txt",
        ]
    else:
        (archive,) = [p for p in (tls_s3.root / f"tmp-{engine}").rglob("*.zip")]
        with zipfile.ZipFile(archive) as zipped:
            assert zipped.read("big.bin") == big
            assert zipped.read("small.txt") == b"small"
