"""Issue 23, "smaller holes" 3-6: what the real server tells whom, and over what. /health says no
more than ok or degraded without an admin key; every JSON body is valid UTF-8 whatever bytes the
request path holds; a keys file binding a key to no user is refused; TLS 1.2 offers only AEAD
suites with forward secrecy and the server's order wins; the dashboard asks for HTTPS only over
TLS. Servers use the stand-in engine (tools/tg_http.py); each test names the hole it closes."""
import json
import socket
import ssl
import subprocess

import pytest

from fleet import Redis
from tg_http import BINARY, MODEL, Server, require_model, wait_for

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_model()
    s = Server(tmp_path_factory.mktemp("tls"), "--stand-in-engine", "1")
    yield s
    s.stop()


def handshake(port, minimum, maximum, ciphers=None):
    """A TLS handshake with the server; the negotiated (protocol, cipher) or the SSLError."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version, ctx.maximum_version = minimum, maximum
    if ciphers:
        ctx.set_ciphers(ciphers)
    with socket.create_connection(("127.0.0.1", port), timeout=15) as raw:
        try:
            with ctx.wrap_socket(raw) as tls:
                return tls.version(), tls.cipher()[0]
        except ssl.SSLError as e:
            return e


# --- hole 3: /health without a key names no Redis, replica or error ---------------------------------

def test_health_tells_only_an_admin_key_where_redis_is_and_why_it_fails(tmp_path):
    require_model()
    redis = Redis(tmp_path)
    redis.start()
    server = None
    try:
        server = Server(tmp_path / "state", "--stand-in-engine", "1", "--redis-url", redis.url,
                        "--redis-sync-ms", "20", "--replica-id", "replica-7f3a")

        def health(key=None, headers=()):
            status, _, body = server.request("GET", "/health", key=key, headers=headers)
            assert status == 200, body  # degraded still serves: a balancer keeps the replica
            return body, json.loads(body)

        assert wait_for(lambda: health()[1] == {"status": "ok"}, 15), health()[0]
        for key, headers in ((None, ()), ("alice", ()), ("saas", ()), (None, ["Authorization: Bearer tg-wrong"])):
            body, _ = health(key, headers)
            assert json.loads(body) == {"status": "ok"}, (key, body)
        _, admin = health("admin")
        assert admin["status"] == "ok" and admin["fleet"]["replica_id"] == "replica-7f3a"
        assert str(redis.port) in admin["fleet"]["redis"]

        redis.kill()
        assert wait_for(lambda: health()[1]["status"] == "degraded", 15), health()[0]
        body, doc = health()
        assert doc == {"status": "degraded"}, body
        assert health("alice")[1] == {"status": "degraded"}
        _, admin = health("admin")
        assert admin["fleet"]["state"] == "degraded" and admin["fleet"]["error"]
    finally:
        if server:
            server.stop()
        redis.close()


# --- hole 4: every JSON body is valid UTF-8, whatever the request path held -------------------------

@pytest.mark.parametrize("path, shown", [
    (b"/v1/\xff\xfe", "/v1/\ufffd\ufffd"),           # bytes that never start a character
    (b"/v1/caf\xc3", "/v1/caf\ufffd"),               # a character cut short
    (b"/\xed\xa0\x80x", "/\ufffd\ufffd\ufffdx"),      # an encoded surrogate
    (b"/\xc0\xaf", "/\ufffd\ufffd"),                  # an overlong '/'
    (b"/caf\xc3\xa9/\"q\"\\", "/caf\u00e9/\"q\"\\"),  # well-formed text and JSON's own marks, kept
])
def test_a_404_for_any_path_is_json_every_client_parses(server, path, shown):
    with server.connect() as c:
        c.send(b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, headers, body = c.read_response()
    assert status == 404 and headers["content-type"] == "application/json"
    error = json.loads(body.decode("utf-8"))["error"]  # strict: ill-formed UTF-8 raises here
    assert error["message"] == "no route " + shown and error["code"] == "not_found"


def test_a_405_and_a_401_are_valid_json_too(server):
    for method, path, key, want in ((b"POST", b"/health", None, 405), (b"GET", b"/v1/models", None, 401),
                                    (b"GET", b"/v1/models?\xff=\xfe", None, 401)):
        with server.connect() as c:
            c.send(method + b" " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            status, _, body = c.read_response()
        assert status == want
        assert set(json.loads(body.decode("utf-8"))["error"]) == {"message", "type", "param", "code"}


# --- hole 5: a key bound to no user, or to "", is refused with the file and the JSON path -----------

def test_a_keys_file_with_an_empty_user_list_or_id_is_refused_and_the_keys_in_force_stay(tmp_path):
    require_model()
    server = Server(tmp_path, "--stand-in-engine", "1")
    keys_file = server.state / "api_keys.json"
    try:
        good = json.loads(keys_file.read_text())
        for users, where in (([], "$.keys[3].users is empty"), (["bob", ""], "$.keys[3].users[1] is the empty user id")):
            doc = json.loads(json.dumps(good))
            doc["keys"].append({"name": "nobody", "sha256": "ab" * 32, "users": users})
            keys_file.write_text(json.dumps(doc))
            status, body = server.json("POST", "/admin/keys/reload", key="admin")
            assert status == 400, body
            assert str(keys_file) + ": " + where in body["error"]["message"]
            assert body["error"]["param"] == "api_keys"
            for key in ("alice", "saas", "admin"):  # what was in force stays
                assert server.request("GET", "/v1/models", key=key)[0] == 200, key
        keys_file.write_text(json.dumps(good))
        assert server.json("POST", "/admin/keys/reload", key="admin")[0] == 200
    finally:
        server.stop()

    # At start-up the same file is a refusal to serve, naming it.
    doc = json.loads(keys_file.read_text())
    doc["keys"][0]["users"] = []
    keys_file.write_text(json.dumps(doc))
    out = subprocess.run([str(BINARY), "serve", str(MODEL), "--port", "0", "--state-dir", str(server.state),
                          "--stand-in-engine", "1"], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert str(keys_file) + ": $.keys[0].users is empty" in out.stderr, out.stderr


# --- hole 6: TLS 1.3, and on TLS 1.2 only ECDHE with AES-GCM or ChaCha20-Poly1305 -------------------

@pytest.fixture(scope="module", params=["ECDSA", "RSA"])
def tls_server(request, server, tmp_path_factory):
    """The server with its own P-256 certificate, or one with an operator's RSA certificate (where
    static-RSA key exchange, without forward secrecy, would otherwise be on offer)."""
    if request.param == "ECDSA":
        yield request.param, server
        return
    state = tmp_path_factory.mktemp("rsa")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", str(state / "key.pem"), "-out", str(state / "cert.pem")], check=True, capture_output=True)
    s = Server(state, "--stand-in-engine", "1", "--ssl-certfile", str(state / "cert.pem"),
               "--ssl-keyfile", str(state / "key.pem"))
    yield request.param, s
    s.stop()


def test_tls13_is_offered(tls_server):
    _, s = tls_server
    assert handshake(s.port, ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3)[0] == "TLSv1.3"


@pytest.mark.parametrize("ciphers", [
    "ECDHE-{kind}-AES128-SHA:ECDHE-{kind}-AES256-SHA:ECDHE-{kind}-AES128-SHA256:ECDHE-{kind}-AES256-SHA384",  # CBC
    "AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA",  # static RSA key exchange: no forward secrecy
])
def test_tls12_refuses_cbc_and_suites_without_forward_secrecy(tls_server, ciphers):
    kind, s = tls_server
    got = handshake(s.port, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2, ciphers.format(kind=kind))
    assert isinstance(got, ssl.SSLError), f"the server agreed to {got}"


def test_tls12_takes_aead_suites_in_the_servers_order(tls_server):
    kind, s = tls_server
    first, aes256, chacha = (f"ECDHE-{kind}-{suite}" for suite in
                             ("AES128-GCM-SHA256", "AES256-GCM-SHA384", "CHACHA20-POLY1305"))
    for suite in (first, aes256, chacha):
        assert handshake(s.port, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2, suite) == ("TLSv1.2", suite)
    # A client preferring ChaCha20 still gets the server's first choice.
    offered = ":".join((chacha, aes256, first))
    assert handshake(s.port, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2, offered) == ("TLSv1.2", first)


def test_openssl_s_client_with_cbc_only_fails_the_handshake(server):
    args = ["openssl", "s_client", "-connect", f"127.0.0.1:{server.port}", "-tls1_2"]
    works = subprocess.run(args + ["-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"], input="", capture_output=True,
                           text=True, timeout=30)
    assert works.returncode == 0, works.stdout + works.stderr
    cbc = subprocess.run(args + ["-cipher", "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA"], input="",
                         capture_output=True, text=True, timeout=30)
    assert cbc.returncode != 0, cbc.stdout


# --- hole 6: Strict-Transport-Security on the dashboard, over TLS only -------------------------------

def test_the_dashboard_asks_for_https_over_tls(server):
    for method, path, body in (("GET", "/dashboard", None), ("POST", "/dashboard/login", "key=wrong")):
        status, headers, _ = server.request(method, path, body=body)
        assert status == 401
        assert headers.get("strict-transport-security") == "max-age=63072000", headers


def test_the_dashboard_sends_no_hsts_over_insecure_http(tmp_path):
    require_model()
    plain = Server(tmp_path, "--stand-in-engine", "1", tls=False)
    try:
        status, headers, _ = plain.request("GET", "/dashboard", key="admin")
        assert status == 200
        assert "strict-transport-security" not in headers, headers
    finally:
        plain.stop()
