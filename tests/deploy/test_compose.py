"""The compose stack would run: it validates, every setting the code reads is given (by the
compose file or .env.example) and nothing else is, no secret is committed, Temporal is not
published, every service is health-checked and waited for, and the image is built as a
non-root multi-stage build. (Running it needs a Docker engine: not on this machine.)"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from agent.config import AgentEnv
from core.settings import ROOT, Settings

COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
APP_SERVICES = ("api", "worker", "agent")
# Read with os.environ by the product itself (not a pydantic field).
PLAIN_ENV = {"LOG_LEVEL"}
# Read by docker-compose.yml only (interpolated there), never by the product.
SECRETISH = re.compile(r"SECRET|PASSWORD|TOKENS|_KEY$|_KEYS$|PAYLOAD")


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _config_body(value: str) -> dict[str, Any]:
    """A config body of compose's, its ${...} interpolations replaced by a placeholder."""
    return yaml.safe_load(re.sub(r"\$\{[^}]+\}", "X", value))


def _example_names() -> set[str]:
    names = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        m = re.match(r"^#? ?([A-Z][A-Z0-9_]*)=", line)
        if m:
            names.add(m.group(1))
    return names


def _uncommented_example_names() -> set[str]:
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M))


def _code_settings() -> set[str]:
    return set(Settings.model_fields) | set(AgentEnv.model_fields) | PLAIN_ENV


def _compose_app_env() -> set[str]:
    services = _compose()["services"]
    return {name for svc in APP_SERVICES for name in services[svc].get("environment", {})}


def _interpolated() -> set[str]:
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE.read_text()))


# .env.example leaves every secret empty; a filled-in .env gives PAYLOAD_KEYS (compose needs it).
A_PAYLOAD_KEY = "k1:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIzNDU="


def _compose_config(**env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "PAYLOAD_KEYS"}
    return subprocess.run(
        ["docker-compose", "--env-file", str(ENV_EXAMPLE), "config", "-q"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**base, "ENV_FILE": ".env.example", **env},
    )  # fmt: skip


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="make test installs it")
def test_compose_config_validates() -> None:
    done = _compose_config(PAYLOAD_KEYS=A_PAYLOAD_KEY)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="make test installs it")
def test_compose_refuses_to_start_without_payload_keys() -> None:
    """Names, transcripts and failures must never sit in Temporal history in plaintext: the
    stack does not come up without PAYLOAD_KEYS, and its apps run as production, whose
    settings refuse it too (tests/devstack/test_settings.py)."""
    done = _compose_config()
    assert done.returncode != 0 and "PAYLOAD_KEYS" in done.stderr, done.stderr
    services = _compose()["services"]
    for name in (*APP_SERVICES, "promote"):
        env = services[name]["environment"]
        assert env["CALLCENTER_ENV"] == "production", name
        assert env["PAYLOAD_KEYS"].startswith("${PAYLOAD_KEYS:?"), name


def test_every_setting_the_code_reads_is_given_and_nothing_else() -> None:
    given = _example_names() | _compose_app_env()
    assert sorted(_code_settings() - given) == [], "add these to .env.example"
    compose_only = _interpolated()
    unknown = _example_names() - _code_settings() - compose_only
    assert sorted(unknown) == [], ".env.example lists settings nothing reads"
    assert sorted(compose_only - _example_names()) == [], "compose reads these: list them"
    # Compose sets no variable on the app that the code does not read.
    assert sorted(_compose_app_env() - _code_settings()) == []


def test_no_secret_is_committed() -> None:
    for line in ENV_EXAMPLE.read_text().splitlines():
        m = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)  # uncommented assignments
        if m and SECRETISH.search(m.group(1)):
            assert m.group(2) == "", f"{m.group(1)} must be empty in .env.example"
    for name, svc in _compose()["services"].items():
        env = svc.get("environment", {})
        items = env.items() if isinstance(env, dict) else (e.split("=", 1) for e in env)
        for key, value in items:
            if SECRETISH.search(key) and key not in ("MINIO_SECURE",):
                assert "${" in str(value), f"{name}.{key} must come from the environment"
        for key in ("LIVEKIT_CONFIG", "EGRESS_CONFIG_BODY", "SIP_CONFIG_BODY"):
            if key in env:
                body = _config_body(env[key])
                assert "keys" not in body  # keys come from LIVEKIT_KEYS
                assert env[key].count("${LIVEKIT_API_KEY}") >= 1
    assert not (ROOT / "deploy").exists() or not any((ROOT / "deploy").rglob("*.yaml"))


def test_temporal_is_not_published_and_uis_only_on_loopback() -> None:
    services = _compose()["services"]
    assert "ports" not in services["temporal"]
    for name in ("temporal-ui", "minio"):
        for port in services[name]["ports"]:
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_the_sip_bridge_runs_only_with_the_phone_profile_on_the_livekit_bus() -> None:
    """livekit/sip (docs/deploy.md, "A phone line"): opt-in (`--profile phone`), host
    networking as its README requires, the server's keys from .env, and the same Redis and
    server as livekit-server, reached where compose publishes them on the host."""
    services = _compose()["services"]
    sip = services["sip"]
    assert sip["profiles"] == ["phone"] and sip["network_mode"] == "host"
    body = _config_body(sip["environment"]["SIP_CONFIG_BODY"])
    assert {"api_key", "api_secret", "ws_url", "redis"} <= set(body)
    assert body["ws_url"] == "ws://127.0.0.1:7880" and "7880:7880" in services["livekit"]["ports"]
    assert body["redis"]["address"] == "127.0.0.1:6379"
    assert services["redis"]["ports"] == ["127.0.0.1:6379:6379"]  # loopback only
    server = _config_body(services["livekit"]["environment"]["LIVEKIT_CONFIG"])
    assert server["redis"]["address"] == "redis:6379"  # the same Redis, by its service name


def test_the_temporal_ui_is_read_only() -> None:
    """ui-server's `disableWriteActions` (env TEMPORAL_DISABLE_WRITE_ACTIONS in the image's
    config template): no terminate, signal, reset or start from the UI (docs/security.md)."""
    env = _compose()["services"]["temporal-ui"]["environment"]
    assert env["TEMPORAL_DISABLE_WRITE_ACTIONS"] == "true"


def test_every_service_is_health_checked_and_waited_for() -> None:
    services = _compose()["services"]
    for name, svc in services.items():
        one_shot = svc.get("restart") == "no"  # a job that runs once (`promote`): nothing to check
        assert one_shot or svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on must name conditions"
        for dep, cond in deps.items():
            assert dep in services
            # a one-shot job (`minio-init`) is waited for until it has succeeded
            done = services[dep].get("restart") == "no"
            want = "service_completed_successfully" if done else "service_healthy"
            assert cond == {"condition": want}, (name, dep)
    for name in ("worker", "agent"):
        assert services[name].get("stop_grace_period"), name
    assert "LIVEKIT_PUBLIC_URL" in services["api"]["environment"]
    assert services["api"]["environment"]["LIVEKIT_URL"] != "${LIVEKIT_PUBLIC_URL}"


def test_egress_uploads_as_a_user_that_may_only_put_into_staging() -> None:
    """Egress gets, in every request, the keys of a MinIO user of its own (minio-init), whose
    policy, evaluated here by moto's IAM policy engine (MinIO's grammar is AWS's), lets it put
    a segment under the staging bucket's conversations/ and do nothing else."""
    from moto.iam.access_control import IAMPolicy, PermissionResult

    from core.models import recording_object_key

    services = _compose()["services"]
    init = services["minio-init"]
    document = init["environment"]["EGRESS_UPLOAD_POLICY"].replace(
        "${EGRESS_BUCKET:-egress}", "egress"
    )
    policy = IAMPolicy(document)

    def allowed(action: str, resource: str) -> bool:
        return policy.is_action_permitted(action, resource) == PermissionResult.PERMITTED

    segment = recording_object_key("c0ffee", 2)  # what egress requests name (filepath)
    assert allowed("s3:PutObject", f"arn:aws:s3:::egress/{segment}")
    assert allowed("s3:AbortMultipartUpload", f"arn:aws:s3:::egress/{segment}")
    for action, resource in [
        ("s3:PutObject", f"arn:aws:s3:::recordings/{segment}"),  # the stored recordings
        ("s3:PutObject", "arn:aws:s3:::egress/elsewhere.ogg"),
        ("s3:GetObject", f"arn:aws:s3:::egress/{segment}"),
        ("s3:DeleteObject", f"arn:aws:s3:::egress/{segment}"),
        ("s3:GetObject", f"arn:aws:s3:::recordings/{segment}"),
        ("s3:ListBucket", "arn:aws:s3:::egress"),
        ("s3:PutBucketPolicy", "arn:aws:s3:::egress"),
        ("s3:PutLifecycleConfiguration", "arn:aws:s3:::egress"),
        ("admin:CreateUser", "arn:aws:s3:::*"),
    ]:
        assert not allowed(action, resource), (action, resource)
    script = init["command"][0]
    assert "mc admin user add" in script and "mc admin policy attach local egress-upload" in script
    assert "grep -q egress-upload" in script  # it fails unless the policy is on the user
    assert '!= "$$MINIO_ACCESS_KEY"' in script  # never the root user
    for name in APP_SERVICES:
        deps = services[name]["depends_on"]
        assert deps["minio-init"] == {"condition": "service_completed_successfully"}, name
    assert {"EGRESS_S3_ACCESS_KEY", "EGRESS_S3_SECRET_KEY"} <= _uncommented_example_names()


def test_the_image_is_multi_stage_locked_and_not_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(stages) >= 2 and stages[0].startswith("node:")
    assert "npm run build" in text and "COPY --from=web" in text
    assert "uv sync --frozen --no-dev" in text
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".venv", ".devstack"} <= set(ignored)


def test_the_worker_is_versioned_and_its_version_promoted_once_it_polls() -> None:
    """Calls pin to the worker's version (docs/deploy.md); `promote` makes it current."""
    services = _compose()["services"]
    assert services["worker"]["environment"]["WORKER_BUILD_ID"].startswith("${WORKER_BUILD_ID:?")
    promote = services["promote"]
    assert promote["command"].startswith("python -m ops deploy promote ${WORKER_BUILD_ID}")
    assert promote["depends_on"]["worker"] == {"condition": "service_healthy"}
