"""config/k8s/: the manifests parse, hang together (what the Deployment mounts and calls is what the
other manifests provide) and carry what a fleet needs: a GPU per replica, the same ConfigMap and keys
Secret for all, the Redis Service in --redis-url, /health probes. The ConfigMap's qos_config.json is
checked by `tiergate qos check` itself. No cluster is needed."""
import os
import subprocess
from pathlib import Path

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
    assert args["redis-url"] == f"redis://redis:{redis['spec']['ports'][0]['port']}/0"
    assert docs[("Deployment", "redis")]["spec"]["replicas"] == 1
    # Every mounted volume comes from a manifest here (or the TLS secret the README says to make),
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
