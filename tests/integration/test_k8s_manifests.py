"""config/k8s/: the manifests parse, hang together (what the Deployment mounts and calls is what the
other manifests provide) and carry what a fleet needs: a GPU per replica, the same ConfigMap and keys
Secret for all, the Redis Service in --redis-url, /health probes. The ConfigMap's qos_config.json is
checked by `tiergate qos check` itself. Redis (issue 23) wants the password of a Secret both sides
read, speaks only TLS, and only tiergate pods may reach it; its start script runs here as written,
against a real redis-server. No cluster is needed."""
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "config/k8s"
BINARY = Path(os.environ.get("TIERGATE_BINARY", ROOT / "build/release/gateway/tiergate"))


def documents():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_the_fleet_manifests_hang_together(tmp_path):
    docs = documents()
    deployment = docs[("Deployment", "tiergate")]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    args = dict(a[2:].split("=", 1) for a in container["args"] if a.startswith("--") and "=" in a)
    # The Redis it syncs with is the Redis Service of these manifests.
    redis = docs[("Service", "redis")]
    assert args["redis-url"] == f"rediss://redis:{redis['spec']['ports'][0]['port']}/0"
    assert docs[("Deployment", "redis")]["spec"]["replicas"] == 1
    # Every mounted volume comes from a manifest here (or the TLS secrets the README says to make),
    # and every file passed on the command line lies in a mounted volume.
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(mounts) == set(volumes)
    assert volumes["qos"]["configMap"]["name"] in {n for k, n in docs if k == "ConfigMap"}
    assert volumes["keys"]["secret"]["secretName"] in {n for k, n in docs if k == "Secret"}
    assert args["qos-config-path"] == mounts["qos"] + "/qos_config.json"
    assert args["api-keys-path"] == mounts["keys"] + "/api_keys.json"
    assert "subPath" not in str(container["volumeMounts"])  # a subPath mount never sees ConfigMap edits
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert docs[("Service", "tiergate")]["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    # The shipped QoS config, as the replicas will read it.
    qos = tmp_path / "qos_config.json"
    qos.write_text(docs[("ConfigMap", "tiergate-qos")]["data"]["qos_config.json"])
    check = subprocess.run([str(BINARY), "qos", "check", str(qos)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "api_keys.json" in docs[("Secret", "tiergate-keys")]["stringData"]


def env_secret(container, name):
    for e in container.get("env", []):
        if e["name"] == name:
            ref = e["valueFrom"]["secretKeyRef"]
            return ref["name"], ref["key"]
    return None


def test_redis_wants_the_password_of_a_secret_the_replicas_send():
    docs = documents()
    redis = docs[("Deployment", "redis")]["spec"]["template"]["spec"]["containers"][0]
    tiergate = docs[("Deployment", "tiergate")]["spec"]["template"]["spec"]["containers"][0]
    secret = env_secret(redis, "REDIS_PASSWORD")
    assert secret and ("Secret", secret[0]) in docs
    assert secret[1] in docs[("Secret", secret[0])]["stringData"]
    assert env_secret(tiergate, "TIERGATE_REDIS_PASSWORD") == secret
    script = redis["args"][0]
    assert "requirepass $REDIS_PASSWORD" in script
    # In no command line: not in the replicas' --redis-url, not in Redis's arguments.
    assert "@" not in " ".join(tiergate["args"])
    assert "--requirepass" not in script
    # The probe authenticates too (else Redis never becomes ready).
    assert "REDISCLI_AUTH" in " ".join(redis["readinessProbe"]["exec"]["command"])


def test_only_tiergate_pods_reach_redis():
    docs = documents()
    policy = docs[("NetworkPolicy", "redis")]["spec"]
    redis_pod = docs[("Deployment", "redis")]["spec"]["template"]["metadata"]["labels"]
    tiergate_pod = docs[("Deployment", "tiergate")]["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= redis_pod.items()
    assert "Ingress" in policy["policyTypes"]
    assert len(policy["ingress"]) == 1  # one rule: nothing else admitted
    rule = policy["ingress"][0]
    assert [set(peer) for peer in rule["from"]] == [{"podSelector"}]  # no namespace or IP peers
    assert rule["from"][0]["podSelector"]["matchLabels"].items() <= tiergate_pod.items()
    assert not rule["from"][0]["podSelector"]["matchLabels"].items() <= redis_pod.items()
    assert [p["port"] for p in rule["ports"]] == [docs[("Service", "redis")]["spec"]["ports"][0]["targetPort"]]


def test_redis_speaks_only_tls_with_a_certificate_the_replicas_check():
    docs = documents()
    redis_spec = docs[("Deployment", "redis")]["spec"]["template"]["spec"]
    redis = redis_spec["containers"][0]
    pod = docs[("Deployment", "tiergate")]["spec"]["template"]["spec"]
    tiergate = pod["containers"][0]
    script = " ".join(redis["args"][0].split())
    port = redis["ports"][0]["containerPort"]
    assert "--port 0 " in script and f"--tls-port {port} " in script  # no plain-text port
    args = dict(a[2:].split("=", 1) for a in tiergate["args"] if a.startswith("--") and "=" in a)
    assert args["redis-url"].startswith("rediss://")
    # The replicas mount only the CA of the Secret Redis takes its certificate from.
    redis_mounts = {m["name"]: m["mountPath"] for m in redis["volumeMounts"]}
    redis_tls = {v["name"]: v for v in redis_spec["volumes"]}
    cert_volume = next(n for n, path in redis_mounts.items() if f"--tls-cert-file {path}/" in script)
    secret = redis_tls[cert_volume]["secret"]["secretName"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in tiergate["volumeMounts"]}
    ca_volume = next(n for n, v in volumes.items() if v.get("secret", {}).get("secretName") == secret)
    assert volumes[ca_volume]["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
    assert args["redis-tls-ca-file"] == mounts[ca_volume] + "/ca.crt"
    assert f"--tls-ca-cert-file {redis_mounts[cert_volume]}/ca.crt" in script
    # Sessions (with a TTL) are what a full Redis evicts; the counters carry none.
    assert "--maxmemory-policy volatile-lru" in script


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_script(tmp_path, port):
    """The Redis container's start script, with the Secret's mount and the port moved to the test's."""
    redis = documents()[("Deployment", "redis")]["spec"]["template"]["spec"]["containers"][0]
    mount = redis["volumeMounts"][0]["mountPath"]
    return redis["args"][0].replace(mount, str(tmp_path)).replace("--tls-port 6379", f"--tls-port {port}")


@pytest.mark.skipif(not shutil.which("redis-server") or not shutil.which("openssl"), reason="needs redis-server and openssl")
def test_the_redis_start_script_refuses_a_missing_password_and_serves_tls_with_auth(tmp_path):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=redis",
                    "-addext", "subjectAltName=DNS:redis,IP:127.0.0.1", "-keyout", str(tmp_path / "tls.key"),
                    "-out", str(tmp_path / "tls.crt")], check=True, capture_output=True)
    shutil.copy(tmp_path / "tls.crt", tmp_path / "ca.crt")
    port = free_port()
    script = redis_script(tmp_path, port)
    for bad in ["", "short", "x" * 40 + "!"]:  # the shipped placeholder, too short, not letters and digits
        run = subprocess.run(["sh", "-c", script], env={**os.environ, "REDIS_PASSWORD": bad},
                             capture_output=True, text=True, timeout=30)
        assert run.returncode != 0 and "redis-auth" in run.stderr, run.stderr
    password = "a" * 16 + "0123456789abcdef"
    proc = subprocess.Popen(["sh", "-c", script], env={**os.environ, "REDIS_PASSWORD": password}, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        context = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))

        def ask(command, check_hostname=True):
            context.check_hostname = check_hostname
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                with context.wrap_socket(raw, server_hostname="redis") as tls:
                    tls.sendall(command)
                    return tls.recv(256)

        deadline = time.monotonic() + 15
        while True:
            try:
                answer = ask(b"PING\r\n")
                break
            except OSError:
                assert time.monotonic() < deadline, "the Redis start script did not come up"
                time.sleep(0.1)
        assert answer.startswith(b"-NOAUTH"), answer
        assert ask(f"AUTH {password}\r\nPING\r\n".encode()).startswith(b"+OK"), "AUTH with the Secret's password"
        assert ask(b"AUTH wrong\r\n").startswith(b"-WRONGPASS")
        # Nothing listens in plain text on the port (a plain PING gets no +PONG).
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(b"PING\r\n")
            try:
                assert not raw.recv(64).startswith(b"+PONG")
            except (ConnectionResetError, socket.timeout):
                pass
        # The readiness probe, as the pod runs it.
        redis = documents()[("Deployment", "redis")]["spec"]["template"]["spec"]["containers"][0]
        probe = [a.replace(redis["volumeMounts"][0]["mountPath"], str(tmp_path)).replace("-p 6379", f"-p {port}")
                 for a in redis["readinessProbe"]["exec"]["command"]]
        if shutil.which("redis-cli"):
            run = subprocess.run(probe, env={**os.environ, "REDIS_PASSWORD": password}, capture_output=True, text=True,
                                 timeout=30)
            assert run.returncode == 0, run.stdout + run.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
