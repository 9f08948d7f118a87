"""`serve --nats-url`: no embedded nats-server; API, engine and workers use an existing NATS,
here ones that require mutual TLS, an NKEY user, or a JWT user (.creds) in operator mode."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.e2e import nats_auth
from tests.e2e.harness import DAGNATS, ROOT, external_nats

EXAMPLE = ROOT / "examples" / "hello-pipeline"


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def make_certs(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all EC P-256."""
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *key, "-keyout", str(folder / "ca.key"), "-out",
            str(folder / "ca.pem"), "-days", "2", "-subj", "/CN=dagnats-test-ca")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        openssl("req", *key, "-keyout", str(folder / f"{name}.key"), "-out",
                str(folder / f"{name}.csr"), "-subj", f"/CN={name}")
        openssl("x509", "-req", "-in", str(folder / f"{name}.csr"), "-CA", str(folder / "ca.pem"),
                "-CAkey", str(folder / "ca.key"), "-CAcreateserial", "-days", "2",
                "-extfile", str(folder / "san.ext"), "-out", str(folder / f"{name}.pem"))
    return {n: folder / n for n in ("ca.pem", "server.pem", "server.key", "client.pem",
                                    "client.key")}


@pytest.fixture
def tls_nats(tmp_path: Path) -> Iterator[tuple[str, dict[str, Path]]]:
    """A nats-server with JetStream that only accepts clients with a certificate of our CA."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make test certificates")
    certs = make_certs(tmp_path)
    with external_nats(["--tlsverify", "--tlscert", str(certs["server.pem"]), "--tlskey",
                        str(certs["server.key"]), "--tlscacert", str(certs["ca.pem"])],
                       tmp_path / "store") as port:
        yield f"tls://127.0.0.1:{port}", certs


def tls_args(certs: dict[str, Path]) -> list[str]:
    return ["--tls-ca", str(certs["ca.pem"]), "--tls-cert", str(certs["client.pem"]),
            "--tls-key", str(certs["client.key"])]


def tutorial_against(url: str, security: list[str], tmp_path: Path) -> None:
    """serve --nats-url with these security options, then the tutorial through the CLI, all
    against the external NATS; and no nats-server of our own started."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGNATS_NATS")}
    serve = subprocess.Popen(
        [DAGNATS, "serve", "--nats-url", url, *security, "--data-dir",
         str(tmp_path / "data"), "--worker", str(EXAMPLE / "worker.py")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    try:
        banner = []
        deadline = time.monotonic() + 60
        for line in serve.stdout or []:
            banner.append(line)
            if "Press Ctrl-C" in line or time.monotonic() > deadline:
                break
        assert f"{url} (external; no nats-server started)" in "".join(banner), "".join(banner)
        children = psutil.Process(serve.pid).children(recursive=True)
        assert not any("nats-server" in " ".join(c.cmdline()) for c in children)

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([DAGNATS, *args, "--nats-url", url, *security],
                                  capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)

        assert cli("workflow", "register", str(EXAMPLE / "pipeline.json")).returncode == 0
        watched = cli("run", "start", "hello-pipeline", '"World"', "--watch")
        assert watched.returncode == 0, watched.stdout + watched.stderr
        run_id = watched.stdout.split()[1]
        assert '"!DLROW ,OLLEH"' in cli("run", "status", run_id).stdout
    finally:
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=20) == 0


def cli_without(url: str, security: list[str]) -> subprocess.CompletedProcess[str]:
    """`run list` against `url` with only these security options."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGNATS_NATS")}
    return subprocess.run([DAGNATS, "run", "list", "--nats-url", url, *security],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)


def test_serve_runs_everything_against_an_external_tls_nats(tls_nats, tmp_path: Path) -> None:
    url, certs = tls_nats
    tutorial_against(url, tls_args(certs), tmp_path)
    refused = cli_without(url, ["--tls-ca", str(certs["ca.pem"])])
    assert refused.returncode == 3  # no client certificate: the server refuses us
    assert refused.stderr.count("\n") == 1 and "cannot reach NATS" in refused.stderr


@pytest.mark.parametrize("kind", ["nkey", "creds"])
def test_serve_signs_in_with_an_nkey_or_a_creds_file(kind: str, tmp_path: Path) -> None:
    """An NKEY user (server config) and a JWT user in operator mode (.creds, as nsc writes)."""
    make = nats_auth.nkey_user_config if kind == "nkey" else nats_auth.operator_config
    conf, secret = make(tmp_path)
    with external_nats(["-c", str(conf)], tmp_path / "store") as port:
        url = f"nats://127.0.0.1:{port}"
        tutorial_against(url, [f"--{kind}", str(secret)], tmp_path)
        refused = cli_without(url, [])
        assert refused.returncode == 3
        assert refused.stderr.strip() == (
            f"error: NATS at {url} refused our credentials (authorization violation); check "
            "--creds, --nkey or the user and password in --nats-url")


def test_a_file_that_is_no_seed_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.nk").write_text("SUNOTASEED\n")
    (tmp_path / "bad.creds").write_text("-----BEGIN NATS USER JWT-----\nxyz\n")
    for flag, what in (("--nkey", "an NKEY seed"),
                       ("--creds", "a .creds file (a user JWT and its NKEY seed)")):
        bad = tmp_path / ("bad.nk" if flag == "--nkey" else "bad.creds")
        done = cli_without("nats://127.0.0.1:1", [flag, str(bad)])
        assert done.returncode == 2
        var = "DAGNATS_NATS_NKEY" if flag == "--nkey" else "DAGNATS_NATS_CREDS"
        assert done.stderr.strip() == f"error: {flag} / {var}: {bad} is not {what}; check the file"


def test_a_missing_certificate_file_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run([DAGNATS, "run", "list", "--tls-ca", str(tmp_path / "nope.pem")],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"error: --tls-ca / DAGNATS_NATS_TLS_CA: {tmp_path / 'nope.pem'} is not a file; "
        "check the path")


def test_sync_always_with_an_external_nats_is_refused_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run([DAGNATS, "serve", "--nats-url", "nats://127.0.0.1:1", "--sync",
                           "always", "--data-dir", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "sync_interval: always" in done.stderr
