"""The Kubernetes example (examples/kubernetes, docs/kubernetes.md) holds together.

Every manifest is checked against the Kubernetes API's own schemas (kubernetes-validate bundles them: no
cluster and no network), strictly, so a misspelt field fails as well as a wrong type. Then the properties the
page promises, which no schema knows: the settings are real timetracer settings and parse, shutdown fits in
the grace period, the spill folder is a writable volume large enough, the probes are not recorded, the IAM
policies allow exactly the prefix the ConfigMap records to, and the replay Job pulls that prefix, then replays it.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import textwrap
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from timetracer_otel.settings import VARIABLES, Settings

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "kubernetes"
PAGE = ROOT / "docs" / "kubernetes.md"
MANIFEST_FILES = sorted([*EXAMPLE.rglob("*.yaml"), *EXAMPLE.rglob("*.yml")])
#: The oldest Kubernetes the example claims (Job podFailurePolicy is GA from 1.31), and the newest bundled.
KUBERNETES_VERSIONS = ("1.31", kubernetes_validate.latest_version())
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"}


def _documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in MANIFEST_FILES:
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                found.append((str(path.relative_to(EXAMPLE)), document))
    return found


DOCUMENTS = _documents()


def _id(entry: tuple[str, dict[str, Any]]) -> str:
    path, document = entry
    return f"{path}:{document.get('kind')}/{document.get('metadata', {}).get('name')}"


def _only(kind: str) -> dict[str, Any]:
    matches = [document for _, document in DOCUMENTS if document.get("kind") == kind]
    assert len(matches) == 1, f"expected one {kind}, found {len(matches)}"
    return matches[0]


def _named(kind: str, name: str) -> dict[str, Any]:
    matches = [d for _, d in DOCUMENTS if d.get("kind") == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} named {name!r}, found {len(matches)}"
    return matches[0]


def _pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    kind = workload["kind"]
    if kind == "Pod":
        return workload["spec"]
    if kind == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return workload["spec"]["template"]["spec"]


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def _workloads() -> Iterator[tuple[str, dict[str, Any]]]:
    for path, document in DOCUMENTS:
        if document.get("kind") in WORKLOADS:
            yield path, document


def _schema_problem(document: dict[str, Any], version: str) -> str | None:
    """What the Kubernetes API schema of ``version`` finds wrong with ``document`` (strict: no unknown field)."""
    try:
        kubernetes_validate.validate(document, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        return f"{'.'.join(str(part) for part in error.path)}: {error.message}"
    except kubernetes_validate.SchemaNotFoundError as error:  # an unknown kind, or an API version removed
        return error.message
    return None


_QUANTITY = re.compile(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?")
_FACTORS = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
            "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def _bytes(quantity: str | int) -> float:
    match = _QUANTITY.fullmatch(str(quantity))
    assert match, f"not a byte quantity: {quantity!r}"
    return float(match[1]) * _FACTORS[match[2]]


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", []) if "value" in item}


def _expand(argument: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(NAME)`` expansion of command arguments from the container's own variables."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), argument)


def _statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    statements = policy["Statement"]
    return statements if isinstance(statements, list) else [statements]


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _iam(role_arn: str, part: str) -> dict[str, Any]:
    match = re.fullmatch(r"arn:aws:iam::\d{12}:role/([\w+=,.@-]+)", role_arn)
    assert match, f"not an IAM role ARN: {role_arn!r}"
    path = EXAMPLE / "iam" / f"{match[1]}.{part}.json"
    assert path.is_file(), f"{role_arn} has no {path.relative_to(ROOT)}"
    return json.loads(path.read_text())


# -- the example's pieces ---------------------------------------------------------------------------------


def deployment() -> dict[str, Any]:
    return _only("Deployment")


def app_container() -> dict[str, Any]:
    containers = _pod_spec(deployment())["containers"]
    assert len(containers) == 1
    return containers[0]


def configmap() -> dict[str, Any]:
    """The ConfigMap the Deployment takes its environment from."""
    refs = [source["configMapRef"]["name"] for source in app_container().get("envFrom", [])
            if "configMapRef" in source]
    assert len(refs) == 1, f"the Deployment's container should take one ConfigMap with envFrom, has {refs}"
    return _named("ConfigMap", refs[0])


def settings() -> Settings:
    return Settings.from_env(configmap()["data"])


def job() -> dict[str, Any]:
    return _only("Job")


def service_account(workload: dict[str, Any]) -> dict[str, Any]:
    return _named("ServiceAccount", _pod_spec(workload)["serviceAccountName"])


# -- every manifest ----------------------------------------------------------------------------------------


def test_the_example_has_its_pieces() -> None:
    kinds = sorted(document["kind"] for _, document in DOCUMENTS)
    assert kinds == sorted(["Namespace", "ServiceAccount", "ServiceAccount", "ConfigMap", "Deployment", "Service",
                            "Job", "Secret"])


@pytest.mark.parametrize("entry", DOCUMENTS, ids=_id)
def test_required_fields(entry: tuple[str, dict[str, Any]]) -> None:
    _, document = entry
    assert isinstance(document.get("apiVersion"), str)
    assert isinstance(document.get("kind"), str)
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", document["metadata"]["name"])
    if document["kind"] in WORKLOADS:
        pod = _pod_spec(document)
        assert pod["containers"]
        for container in _containers(pod):
            assert container["name"]
            assert re.fullmatch(r"[\w.-]+(:\d+)?(/[\w.-]+)+:[\w.-]+", container["image"]), container["image"]
            assert container["command"] and all(isinstance(arg, str) for arg in container["command"])


def test_the_schemas_of_the_oldest_claimed_kubernetes_are_bundled() -> None:
    # kubernetes-validate drops old versions over time; it would then check a version this page does not claim.
    bundled = {re.sub(r"^(\d+\.\d+).*", r"\1", version) for version in kubernetes_validate.utils.all_versions()}
    assert KUBERNETES_VERSIONS[0] in bundled


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("entry", DOCUMENTS, ids=_id)
def test_valid_against_the_kubernetes_schema(entry: tuple[str, dict[str, Any]], version: str) -> None:
    _, document = entry
    assert _schema_problem(document, version) is None


def _misspelt_field(d: dict[str, Any]) -> None:
    _pod_spec(d)["containers"][0]["imagePullPolcy"] = "Always"


def _replicas_as_text(d: dict[str, Any]) -> None:
    d["spec"]["replicas"] = "3"


def _container_without_name(d: dict[str, Any]) -> None:
    del _pod_spec(d)["containers"][0]["name"]


def _removed_api_version(d: dict[str, Any]) -> None:
    d["apiVersion"] = "extensions/v1beta1"


def _probe_port_as_list(d: dict[str, Any]) -> None:
    _pod_spec(d)["containers"][0]["readinessProbe"]["httpGet"]["port"] = [8000]


@pytest.mark.parametrize(
    ("mistake", "expected"),
    [
        pytest.param(_misspelt_field, "'imagePullPolcy' was unexpected", id="misspelt-field"),
        pytest.param(_replicas_as_text, "'3' is not of type 'integer'", id="number-as-text"),
        pytest.param(_container_without_name, "'name' is a required property", id="missing-required-field"),
        pytest.param(_removed_api_version, "Couldn't find schema for kind Deployment", id="removed-api-version"),
        pytest.param(_probe_port_as_list, "is not valid under any of the given schemas", id="int-or-string-as-list"),
    ],
)
def test_the_schema_check_rejects_mistakes(mistake: Any, expected: str) -> None:
    broken = copy.deepcopy(deployment())
    mistake(broken)
    for version in KUBERNETES_VERSIONS:
        problem = _schema_problem(broken, version)
        assert problem is not None and expected in problem, problem


def test_an_unquoted_boolean_in_a_configmap_is_rejected() -> None:
    # YAML reads `TIMETRACER_ERRORS_ONLY: true` as a boolean, which a ConfigMap cannot hold.
    broken = copy.deepcopy(configmap())
    broken["data"]["TIMETRACER_ERRORS_ONLY"] = True
    assert "True is not of type 'string'" in (_schema_problem(broken, KUBERNETES_VERSIONS[0]) or "")


def test_everything_is_in_the_example_namespace() -> None:
    namespace = _only("Namespace")["metadata"]["name"]
    for _, document in DOCUMENTS:
        if document["kind"] not in CLUSTER_SCOPED:
            assert document["metadata"].get("namespace") == namespace, _id(("", document))


@pytest.mark.parametrize("entry", list(_workloads()), ids=_id)
def test_every_mounted_volume_is_declared_and_every_volume_mounted(entry: tuple[str, dict[str, Any]]) -> None:
    pod = _pod_spec(entry[1])
    declared = [volume["name"] for volume in pod.get("volumes", [])]
    assert len(declared) == len(set(declared))
    mounted = {mount["name"] for container in _containers(pod) for mount in container.get("volumeMounts", [])}
    assert mounted <= set(declared)
    assert set(declared) <= mounted


@pytest.mark.parametrize("entry", list(_workloads()), ids=_id)
def test_pods_meet_the_restricted_pod_security_standard(entry: tuple[str, dict[str, Any]]) -> None:
    # The namespace enforces "restricted": a pod that misses one of these is refused at admission.
    assert _only("Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    pod = _pod_spec(entry[1])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    for container in _containers(pod):
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert context["readOnlyRootFilesystem"] is True
        assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
        assert {"cpu", "memory"} <= container["resources"]["limits"].keys()


# -- the Deployment and its settings ------------------------------------------------------------------------


def test_the_deployment_selects_its_own_pods_and_the_service_them() -> None:
    labels = deployment()["spec"]["template"]["metadata"]["labels"]
    assert deployment()["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = _only("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    ports = {port["name"] for port in app_container()["ports"]}
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= ports


def test_the_configmap_holds_only_known_timetracer_settings() -> None:
    names = [key for key in configmap()["data"] if key.startswith("TIMETRACER_")]
    assert names
    assert [key for key in names if key.removeprefix("TIMETRACER_") not in VARIABLES] == []


def test_the_configmap_settings_parse() -> None:
    parsed = settings()
    assert parsed.mode.value == "record"
    assert parsed.sample_rate == 0.05
    assert parsed.errors_only is True
    assert str(parsed.replay_source).startswith("s3://")


def test_the_app_runs_under_opentelemetry_instrument_with_both_exporters() -> None:
    command = app_container()["command"]
    assert command[0] == "opentelemetry-instrument"
    exporters = command[command.index("--traces_exporter") + 1]
    assert exporters.split(",") == ["otlp", "timetracer"]
    assert command[3:5] == ["uvicorn", "app:app"]
    data = configmap()["data"]
    assert re.fullmatch(r"https?://[a-z0-9.-]+\.svc(\.cluster\.local)?:\d+", data["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert data["OTEL_SERVICE_NAME"] == settings().service


def _uvicorn_option(command: list[str], option: str) -> str:
    assert option in command, f"uvicorn runs without {option}"
    return command[command.index(option) + 1]


def _prestop_seconds(container: dict[str, Any]) -> float:
    pre_stop = container["lifecycle"]["preStop"]
    if "sleep" in pre_stop:
        return float(pre_stop["sleep"]["seconds"])
    command = pre_stop["exec"]["command"]
    assert command[0] == "sleep", command
    return float(command[1])


def test_shutdown_fits_in_the_grace_period() -> None:
    # Kubernetes runs preStop, then sends SIGTERM; uvicorn finishes the requests in flight (bounded by
    # --timeout-graceful-shutdown), then timetracer uploads what is queued (TIMETRACER_FLUSH_TIMEOUT_S).
    # Whatever is still running at terminationGracePeriodSeconds is killed.
    container = app_container()
    needed = (_prestop_seconds(container)
              + float(_uvicorn_option(container["command"], "--timeout-graceful-shutdown"))
              + settings().flush_timeout)
    assert settings().flush_timeout > 0
    assert _pod_spec(deployment())["terminationGracePeriodSeconds"] > needed


def test_the_spill_folder_is_a_writable_volume_larger_than_its_cap() -> None:
    spill = Path(configmap()["data"]["TIMETRACER_S3_SPILL_DIR"])
    mounts = [m for m in app_container()["volumeMounts"] if spill.is_relative_to(m["mountPath"])]
    assert len(mounts) == 1, f"{spill} is not on a mounted volume (the root filesystem is read-only)"
    assert not mounts[0].get("readOnly", False)
    volume = next(v for v in _pod_spec(deployment())["volumes"] if v["name"] == mounts[0]["name"])
    assert volume.keys() & {"emptyDir", "persistentVolumeClaim", "ephemeral"}
    if "emptyDir" in volume:
        # A pod whose emptyDir outgrows its sizeLimit is evicted: the spill cap must stay below it.
        assert _bytes(volume["emptyDir"]["sizeLimit"]) > settings().s3.spill_max_bytes


def test_the_ephemeral_storage_limit_holds_the_disk_volumes() -> None:
    disk = sum(_bytes(volume["emptyDir"]["sizeLimit"]) for volume in _pod_spec(deployment())["volumes"]
               if "emptyDir" in volume and volume["emptyDir"].get("medium") != "Memory")
    assert _bytes(app_container()["resources"]["limits"]["ephemeral-storage"]) >= disk


def test_the_recording_buffer_fits_in_the_memory_limit() -> None:
    limit = _bytes(app_container()["resources"]["limits"]["memory"])
    assert settings().max_buffered_bytes <= limit / 2


def test_the_probes_are_not_recorded() -> None:
    container = app_container()
    ports = {port["name"] for port in container["ports"]} | {port["containerPort"] for port in container["ports"]}
    excluded = settings().exclude_paths
    for probe in ("readinessProbe", "livenessProbe"):
        check = container[probe]["httpGet"]
        assert check["port"] in ports
        assert any(fnmatch.fnmatchcase(check["path"], pattern) for pattern in excluded), check["path"]


# -- S3 access ---------------------------------------------------------------------------------------------


def test_each_workload_has_its_own_irsa_role() -> None:
    roles = [service_account(workload)["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
             for workload in (deployment(), job())]
    for role in roles:
        assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+", role)
    assert roles[0] != roles[1]


@pytest.mark.parametrize("workload", ["Deployment", "Job"])
def test_each_role_trusts_only_its_service_account(workload: str) -> None:
    account = service_account(_only(workload))
    trust = _iam(account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"], "trust")
    (statement,) = _statements(trust)
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    conditions = statement["Condition"]["StringEquals"]
    subject = f"system:serviceaccount:{account['metadata']['namespace']}:{account['metadata']['name']}"
    assert [v for k, v in conditions.items() if k.endswith(":sub")] == [subject]
    assert [v for k, v in conditions.items() if k.endswith(":aud")] == ["sts.amazonaws.com"]


def _allowed(policy: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    allowed: dict[str, list[dict[str, Any]]] = {}
    for statement in _statements(policy):
        assert statement["Effect"] == "Allow"
        for action in _listed(statement["Action"]):
            assert "*" not in action, f"wildcard action {action}"
            allowed.setdefault(action, []).append(statement)
    return allowed


def test_the_recording_role_may_only_write_the_services_prefix() -> None:
    location = settings().replay_source  # prefix/<service>: where this service's cassettes land
    role = service_account(deployment())["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    allowed = _allowed(_iam(role, "policy"))
    assert set(allowed) == {"s3:PutObject", "kms:GenerateDataKey"}
    (put,) = allowed["s3:PutObject"]
    assert _listed(put["Resource"]) == [f"arn:aws:s3:::{location.bucket}/{location.prefix}/*"]
    # SSE-KMS: S3 asks KMS for a data key of the configured key on the writer's behalf.
    assert settings().s3.sse == "aws:kms"
    (kms,) = allowed["kms:GenerateDataKey"]
    assert _listed(kms["Resource"]) == [settings().s3.sse_kms_key_id]


def test_the_replay_role_may_only_list_and_read_the_services_prefix() -> None:
    location = settings().replay_source
    role = service_account(job())["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    allowed = _allowed(_iam(role, "policy"))
    assert set(allowed) == {"s3:ListBucket", "s3:GetObject", "kms:Decrypt"}
    (listing,) = allowed["s3:ListBucket"]
    assert _listed(listing["Resource"]) == [f"arn:aws:s3:::{location.bucket}"]
    prefixes = _listed(listing["Condition"]["StringLike"]["s3:prefix"])
    # `timetracer s3 pull` lists prefix/ (and checks prefix itself); nothing outside the service's folder.
    for asked in (location.prefix, f"{location.prefix}/", f"{location.prefix}/2026-11-28/x.json.gz"):
        assert any(fnmatch.fnmatchcase(asked, pattern) for pattern in prefixes), asked
    assert not any(fnmatch.fnmatchcase(f"{location.prefix}-other/x", pattern) for pattern in prefixes)
    (read,) = allowed["s3:GetObject"]
    assert _listed(read["Resource"]) == [f"arn:aws:s3:::{location.bucket}/{location.prefix}/*"]
    (kms,) = allowed["kms:Decrypt"]
    assert _listed(kms["Resource"]) == [settings().s3.sse_kms_key_id]


def test_the_static_credentials_secret_holds_what_boto3_reads() -> None:
    assert set(_only("Secret")["stringData"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


# -- the replay Job ----------------------------------------------------------------------------------------


def test_the_job_pulls_the_recorded_prefix_then_replays_it() -> None:
    pod = _pod_spec(job())
    assert pod["restartPolicy"] == "Never"
    (pull,) = pod["initContainers"]  # init containers finish before the replay starts
    (replay,) = pod["containers"]
    command = [_expand(argument, _env(pull)) for argument in pull["command"]]
    assert command[:3] == ["timetracer", "s3", "pull"]
    source, destination = command[3:5]
    assert source == str(settings().replay_source)
    assert replay["command"][:3] == ["timetracer", "replay", destination]
    assert replay["command"][replay["command"].index("--app") + 1] == "app:app"
    # Both containers see the same volume there: the pull writes it, the replay reads it.
    mounts = [{m["name"] for m in c["volumeMounts"] if m["mountPath"] == destination} for c in (pull, replay)]
    assert mounts[0] and mounts[0] == mounts[1]
    assert not next(m for m in pull["volumeMounts"] if m["mountPath"] == destination).get("readOnly", False)


def test_the_job_replays_with_the_apps_recorded_environment() -> None:
    # The upstream's URL is part of every recorded outbound call: replay must build the same URLs.
    (replay,) = _pod_spec(job())["containers"]
    assert _env(replay)["UPSTREAM_URL"] == _env(app_container())["UPSTREAM_URL"]
    # The recording's settings (TIMETRACER_MODE=record, the OTLP collector) are not the Job's.
    assert not any("configMapRef" in source for source in replay.get("envFrom", []))


def test_the_jobs_verdict_is_not_retried() -> None:
    rules = job()["spec"]["podFailurePolicy"]["rules"]
    fail = [rule for rule in rules if rule["action"] == "FailJob"]
    assert fail[0]["onExitCodes"] == {"containerName": "replay", "operator": "In", "values": [1, 2]}


# -- the image ---------------------------------------------------------------------------------------------


def _dockerfile() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (EXAMPLE / "Dockerfile").read_text())
    instructions = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_the_image_runs_as_the_pods_numeric_user() -> None:
    (user,) = [rest for keyword, rest in _dockerfile() if keyword == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) > 0  # runAsNonRoot can only check a numeric user
    for _, workload in _workloads():
        assert _pod_spec(workload)["securityContext"]["runAsUser"] == int(uid)


def test_the_image_copies_files_that_exist() -> None:
    sources = [part for keyword, rest in _dockerfile() if keyword == "COPY" for part in rest.split()[:-1]]
    assert sources
    assert [source for source in sources if not (ROOT / source).exists()] == []


def test_the_image_installs_what_the_settings_need() -> None:
    (install,) = [rest for keyword, rest in _dockerfile() if keyword == "RUN" and "pip install" in rest]
    extras = re.search(r"\[([\w,-]+)\]", install)
    assert extras
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras[1].split(",")) <= declared.keys()
    assert "s3" in extras[1].split(",")  # TIMETRACER_DIR=s3://... needs boto3
    protocol = configmap()["data"].get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    package = {"grpc": "opentelemetry-exporter-otlp-proto-grpc",
               "http/protobuf": "opentelemetry-exporter-otlp-proto-http"}[protocol]
    assert package in install
    (cmd,) = [rest for keyword, rest in _dockerfile() if keyword == "CMD"]
    assert json.loads(cmd)[:3] == app_container()["command"][:3]


# -- the page ----------------------------------------------------------------------------------------------


def _code_blocks(language: str) -> list[str]:
    """The page's code blocks in ``language``, including those indented in a list item."""
    blocks = re.findall(rf"^( *)```{language}\n(.*?)^\1```", PAGE.read_text(), flags=re.MULTILINE | re.DOTALL)
    return [textwrap.dedent(block) for _, block in blocks]


def test_the_pages_code_blocks_all_name_a_language() -> None:
    fences = re.findall(r"^ *```(.*)$", PAGE.read_text(), flags=re.MULTILINE)
    assert len(fences) % 2 == 0
    assert all(fences[0::2]), "a code block without a language"


def test_the_pages_yaml_parses_and_its_manifests_are_valid() -> None:
    blocks = _code_blocks("yaml")
    assert blocks
    for block in blocks:
        for document in yaml.safe_load_all(block):
            assert isinstance(document, dict)
            if {"apiVersion", "kind"} <= document.keys():
                assert _schema_problem(document, KUBERNETES_VERSIONS[0]) is None


def test_the_pages_json_parses() -> None:
    for block in _code_blocks("json"):
        json.loads(block)


def test_the_page_and_the_example_name_only_real_settings() -> None:
    texts = [PAGE.read_text(), *(path.read_text() for path in EXAMPLE.rglob("*") if path.is_file())]
    named = {name for text in texts for name in re.findall(r"\bTIMETRACER_([A-Z0-9_]+)", text)}
    assert named
    assert sorted(named - set(VARIABLES)) == []
