"""Security with real processes: mutual TLS (certificates made by openssl here), bearer tokens (constant-
time match, reloaded on SIGHUP, never logged), per-client rate limits with RetryInfo, and health open
to probes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from protos.ranking.v1 import ranking_pb2, ranking_pb2_grpc
from server.client import rank_request
from tests.conftest import Artifacts, rankserve_bin
from tests.e2e.test_server import SERVICE, error_detail, free_port

TOKENS = ("alpha-0c1f9d2b7e", "beta-53aa5117d1")


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_pki(d: Path) -> Pki:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days",
            "2", "-subj", "/CN=rankserve test CA", cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"), ("client", "")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN=rankserve {name}", cwd=d)
        (d / f"{name}.ext").write_text(ext + "\n" if ext else "basicConstraints=CA:FALSE\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
    return Pki(d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key")


@dataclass
class Secure:
    proc: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    log: Path
    tokens: Path
    pki: Pki

    def channel(self, *, client_cert: bool = True) -> grpc.Channel:
        creds = grpc.ssl_channel_credentials(
            self.pki.ca.read_bytes(), self.pki.client_key.read_bytes() if client_cert else None,
            self.pki.client_cert.read_bytes() if client_cert else None)
        return grpc.secure_channel(f"127.0.0.1:{self.port}", creds)


@pytest.fixture(scope="module")
def secure(artifacts: Artifacts, tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("secure")
    pki = make_pki(d)
    tokens = d / "tokens.txt"
    tokens.write_text(f"# rankserve clients\n{TOKENS[0]}\n\n{TOKENS[1]}  # the bench\n")
    port, metrics_port = free_port(), free_port()
    log = d / "server.log"
    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [rankserve_bin(), "serve", "--catalog", str(artifacts.catalog), "--model", str(artifacts.model),
             "--port", str(port), "--metrics-port", str(metrics_port), "--tls-cert", str(pki.server_cert),
             "--tls-key", str(pki.server_key), "--tls-client-ca", str(pki.ca),
             "--auth-tokens-file", str(tokens)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "RANKSERVE_STATE_DIR": str(d / "state"), "RANKSERVE_RATE_LIMIT_RPS": "2",
                 "RANKSERVE_RATE_LIMIT_BURST": "4"})
    running = Secure(proc, port, metrics_port, log, tokens, pki)
    with running.channel() as channel:  # health needs no token: the readiness probe's view
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            try:
                status = health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError:
                pass
            time.sleep(0.3)
    yield running
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, log.read_text(errors="replace")[-3000:]
    text = log.read_text(errors="replace")
    assert not any(token in text for token in (*TOKENS, "gamma-77e1")), "a token reached the log"


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def test_a_valid_token_over_mutual_tls_gets_a_ranking(secure: Secure) -> None:
    with secure.channel() as channel:
        stub = ranking_pb2_grpc.RankerStub(channel)
        msgs = list(stub.Rank(rank_request("oak desk", k=5), timeout=30, metadata=bearer(TOKENS[0])))
    assert len([m for m in msgs if m.HasField("item")]) == 5


def test_the_cli_client_speaks_mutual_tls_and_tokens(secure: Secure) -> None:
    base = [rankserve_bin(), "query", "oak desk", "--k", "3", "--target", f"127.0.0.1:{secure.port}",
            "--tls-ca", str(secure.pki.ca), "--tls-client-cert", str(secure.pki.client_cert),
            "--tls-client-key", str(secure.pki.client_key)]
    env = {**os.environ, "COLUMNS": "300"}
    ok = subprocess.run([*base, "--token", TOKENS[0]], capture_output=True, text=True, timeout=60, env=env)
    assert ok.returncode == 0 and "3 items" in ok.stdout, ok.stdout + ok.stderr
    denied = subprocess.run(base, capture_output=True, text=True, timeout=60, env=env)
    assert denied.returncode == 1 and "UNAUTHENTICATED" in denied.stderr + denied.stdout


@pytest.mark.parametrize("metadata", [(), bearer("alpha-0c1f9d2b7x"), (("authorization", TOKENS[0]),)],
                         ids=["none", "wrong", "not-bearer"])
def test_without_a_valid_token_it_is_unauthenticated(secure: Secure, metadata: tuple) -> None:
    with secure.channel() as channel:
        stub = ranking_pb2_grpc.RankerStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            list(stub.Rank(rank_request("oak desk"), timeout=10, metadata=metadata))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED and "authorization" in err.value.details()
        # Reflection follows auth; health answers without a token (probes carry none).
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            list(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                           timeout=10, metadata=metadata))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status == \
            health_pb2.HealthCheckResponse.SERVING


def test_without_a_client_certificate_or_tls_it_cannot_connect(secure: Secure) -> None:
    for channel in (secure.channel(client_cert=False), grpc.insecure_channel(f"127.0.0.1:{secure.port}")):
        with channel, pytest.raises(grpc.RpcError) as err:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_rate_limit_per_client_with_retry_info(secure: Secure) -> None:
    with secure.channel() as channel:
        stub = ranking_pb2_grpc.RankerStub(channel)
        codes, limited = [], None
        for _ in range(10):  # burst 4, then 2 per second: a quick run of 10 must be cut
            try:
                stub.Info(ranking_pb2.InfoRequest(), timeout=5, metadata=bearer(TOKENS[1]))
                codes.append("OK")
            except grpc.RpcError as exc:
                codes.append(exc.code().name)
                limited = exc
        assert codes[:4] == ["OK"] * 4 and "RESOURCE_EXHAUSTED" in codes, codes
        delay = error_detail(limited, error_details_pb2.RetryInfo).retry_delay.ToTimedelta().total_seconds()
        assert 0 < delay <= 0.5
        # Another client has a bucket of its own.
        assert stub.Info(ranking_pb2.InfoRequest(), timeout=5, metadata=bearer(TOKENS[0])).items > 0
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{secure.metrics_port}/metrics", timeout=5).read()
    assert b'outcome="rate_limited"' in metrics and not any(t.encode() in metrics for t in TOKENS)


def test_tokens_reload_on_sighup(secure: Secure) -> None:
    new = "gamma-77e1"
    secure.tokens.write_text(f"{TOKENS[1]}\n{new}\n")  # alpha revoked, gamma added
    os.kill(secure.proc.pid, signal.SIGHUP)

    def code(token: str) -> grpc.StatusCode:
        with secure.channel() as channel:
            try:
                ranking_pb2_grpc.RankerStub(channel).Info(ranking_pb2.InfoRequest(), timeout=5,
                                                          metadata=bearer(token))
                return grpc.StatusCode.OK
            except grpc.RpcError as exc:
                return exc.code()

    deadline = time.monotonic() + 10
    while code(new) != grpc.StatusCode.OK:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert code(TOKENS[0]) == grpc.StatusCode.UNAUTHENTICATED
    assert secure.proc.poll() is None  # SIGHUP reloads; it does not stop the server
