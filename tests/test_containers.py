"""Static checks of the container files; no Docker engine needed.

What can be checked without running containers is checked here: docker-compose.yml names the
services, port, volumes and health checks the README promises; each Dockerfile's CMD starts the
module the end-to-end tests start as a plain process; every path a Dockerfile copies exists and
survives .dockerignore; the nginx front streams; .env.example documents every setting.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("proxy_service", "logger_service", "shared")

PROXY_PORT = 8866
PROXY_ARGV = ["python", "-m", "proxy_service"]
LOGGER_ARGV = ["python", "-m", "logger_service"]
DATA_MOUNT = "/app/data"


# --- helpers ---------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def service(name: str) -> dict[str, Any]:
    services = compose()["services"]
    assert name in services, f"docker-compose.yml has no service {name!r}"
    return services[name]


def health_command(name: str) -> str:
    """The service's health check as one shell-like string (CMD and CMD-SHELL alike)."""
    check = service(name).get("healthcheck")
    assert check, f"service {name!r} has no healthcheck"
    assert not check.get("disable"), f"service {name!r} disables its healthcheck"
    test = check["test"]
    if isinstance(test, str):
        return test
    kind, *args = test
    assert kind in ("CMD", "CMD-SHELL"), f"{name}: healthcheck test starts with {kind!r}"
    return args[0] if kind == "CMD-SHELL" else shlex.join(args)


def env_files(svc: dict[str, Any]) -> list[str]:
    value = svc.get("env_file", [])
    items = value if isinstance(value, list) else [value]
    return [item if isinstance(item, str) else item["path"] for item in items]


def environment(svc: dict[str, Any]) -> dict[str, str]:
    value = svc.get("environment", {})
    if isinstance(value, list):
        return dict(item.split("=", 1) for item in value)
    return {key: str(val) for key, val in value.items()}


def mounts(svc: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each volume entry, short or long syntax."""
    result = []
    for entry in svc.get("volumes", []):
        if isinstance(entry, str):
            source, target = entry.split(":")[:2]
        else:
            source, target = entry.get("source", ""), entry["target"]
        result.append((source, target))
    return result


def dockerfile(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        pending = ""
    assert not pending, f"{name} ends inside a continued line"
    return instructions


def exec_form(name: str, keyword: str) -> list[str]:
    values = [args for kw, args in dockerfile(name) if kw == keyword]
    assert values, f"{name} has no {keyword}"
    argv = json.loads(values[-1])
    assert isinstance(argv, list), f"{name}: {keyword} must use the exec (JSON array) form"
    return argv


def copy_sources(name: str) -> list[str]:
    sources = []
    for keyword, args in dockerfile(name):
        if keyword not in ("COPY", "ADD"):
            continue
        parts = [part for part in args.split() if not part.startswith("--")]
        assert not any(arg.startswith("--from") for arg in args.split()), "no multi-stage copies"
        sources.extend(parts[:-1])
    return sources


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` (or a parent directory) out of the build context."""
    ignored = False
    candidates = [path.rstrip("/")]
    parts = path.rstrip("/").split("/")
    candidates += ["/".join(parts[:i]) for i in range(1, len(parts))]
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        pattern = pattern.removeprefix("**/")
        if any(fnmatch.fnmatch(candidate, pattern) for candidate in candidates):
            ignored = not negate
    return ignored


def internal_imports(package: str) -> set[str]:
    """Top-level project packages imported anywhere in `package`."""
    found: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found.update(name.split(".")[0] for name in names if name.split(".")[0] in PACKAGES)
    return found


def strip_nginx_comments(text: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def nginx_config() -> str:
    ((source, _target),) = [
        mount for mount in mounts(service("front")) if mount[1] == "/etc/nginx/conf.d/default.conf"
    ]
    return strip_nginx_comments((ROOT / source).read_text())


def e2e_argv_constants() -> list[list[str]]:
    """String constants of every list literal in the other test modules (command lines)."""
    lists = []
    for path in (ROOT / "tests").glob("*.py"):
        if path.name == Path(__file__).name:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.List):
                lists.append(
                    [
                        e.value
                        for e in node.elts
                        if isinstance(e, ast.Constant) and isinstance(e.value, str)
                    ]
                )
    return lists


# --- docker-compose.yml ----------------------------------------------------------------------


def test_compose_runs_redis_logger_proxy_and_a_front():
    assert set(compose()["services"]) == {"redis", "logger", "proxy", "front"}


def test_the_project_name_is_fixed_so_volumes_do_not_follow_the_folder():
    assert compose()["name"] == "b23-llm-proxy"


@pytest.mark.parametrize("name", ["logger", "proxy"])
def test_an_invalid_config_waits_instead_of_crash_looping(name):
    environment = compose()["services"][name]["environment"]
    assert environment["B23_ON_INVALID_CONFIG"] == "wait"  # tests/test_invalid_config.py


def test_the_proxy_scale_comes_from_dotenv_and_survives_an_up():
    assert compose()["services"]["proxy"]["deploy"]["replicas"] == "${PROXY_REPLICAS:-1}"
    assert "# PROXY_REPLICAS=" in (ROOT / ".env.example").read_text()


def test_only_the_front_publishes_a_port_and_it_is_8866():
    services = compose()["services"]
    published = {name: svc["ports"] for name, svc in services.items() if svc.get("ports")}
    # Replicas of a service that published a host port would collide when scaled.
    assert set(published) == {"front"}
    (mapping,) = published["front"]
    *host, container = str(mapping).split(":")
    assert container == "80"
    assert host[-1] == str(PROXY_PORT)
    assert host[:-1] in ([], ["127.0.0.1"]), f"front publishes on {host[:-1]}"


def test_the_front_is_nginx_with_the_repository_config():
    front = service("front")
    assert front["image"].startswith("nginx")
    targets = {target: source for source, target in mounts(front)}
    assert "/etc/nginx/conf.d/default.conf" in targets
    assert (ROOT / targets["/etc/nginx/conf.d/default.conf"]).is_file()


@pytest.mark.parametrize(
    ("name", "dockerfile_name"), [("proxy", "Dockerfile.proxy"), ("logger", "Dockerfile.logger")]
)
def test_services_build_from_their_dockerfile(name, dockerfile_name):
    build = service(name)["build"]
    assert Path(build["context"]) == Path(".")
    assert build["dockerfile"] == dockerfile_name
    assert (ROOT / dockerfile_name).is_file()


def test_health_checks_are_wired():
    assert "redis-cli ping" in health_command("redis")
    assert health_command("logger") == shlex.join([*LOGGER_ARGV, "--check"])
    proxy = health_command("proxy")
    assert f"127.0.0.1:{PROXY_PORT}/readyz" in proxy
    assert proxy.startswith("python "), "slim images have no curl: probe with python"
    assert "/healthz" in health_command("front")


def test_no_python_image_health_check_relies_on_curl_or_wget():
    for name in ("proxy", "logger"):
        assert not re.search(r"\b(curl|wget)\b", health_command(name)), name


def test_startup_waits_on_health():
    def condition(name: str, dependency: str) -> str:
        return service(name)["depends_on"][dependency]["condition"]

    assert condition("logger", "redis") == "service_healthy"
    assert condition("proxy", "redis") == "service_healthy"
    assert condition("front", "proxy") == "service_healthy"


def test_the_logger_alone_mounts_the_data_volume():
    volumes = compose().get("volumes") or {}
    logger_mounts = dict((target, source) for source, target in mounts(service("logger")))
    assert DATA_MOUNT in logger_mounts
    assert logger_mounts[DATA_MOUNT] in volumes, "data must be a declared named volume"
    assert environment(service("logger"))["DATA_DIR"] == DATA_MOUNT
    for name in ("proxy", "front", "redis"):
        assert DATA_MOUNT not in [target for _, target in mounts(service(name))], name


@pytest.mark.parametrize("name", ["proxy", "logger"])
def test_the_services_reach_the_host_and_read_the_price_table_read_only(name):
    assert "host.docker.internal:host-gateway" in service(name)["extra_hosts"]
    assert "./config:/app/config:ro" in service(name)["volumes"]
    assert environment(service(name))["PRICES_FILE"] == "/app/config/prices.toml"


@pytest.mark.parametrize("name", ["proxy", "logger"])
def test_services_read_dotenv_and_reach_redis_by_service_name(name):
    svc = service(name)
    assert ".env" in env_files(svc)
    assert environment(svc)["REDIS_URL"] == "redis://redis:6379/0"


# --- Dockerfiles -----------------------------------------------------------------------------

DOCKERFILES = [("Dockerfile.proxy", PROXY_ARGV), ("Dockerfile.logger", LOGGER_ARGV)]


@pytest.mark.parametrize(("name", "argv"), DOCKERFILES)
def test_cmd_starts_the_service_module(name, argv):
    assert exec_form(name, "CMD") == argv


@pytest.mark.parametrize(("name", "argv"), DOCKERFILES)
def test_end_to_end_tests_start_the_same_module(name, argv):
    """The tests run the container command as a plain process: the same module, same argv."""
    module_args = argv[1:2] if argv[0] == "uvicorn" else argv[1:]
    program = argv[0] if argv[0] == "uvicorn" else None
    for constants in e2e_argv_constants():
        for i in range(len(constants) - len(module_args) + 1):
            if constants[i : i + len(module_args)] != module_args:
                continue
            if program is None or (i > 0 and constants[i - 1] == program):
                return
    pytest.fail(f"no test outside {Path(__file__).name} starts {' '.join(argv)}")


def test_cmd_modules_exist():
    main = ast.parse((ROOT / "proxy_service" / "main.py").read_text())
    assigned = {
        target.id
        for node in ast.walk(main)
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    assert "app" in assigned, "proxy_service/main.py must define `app`"
    assert (ROOT / "proxy_service" / "__main__.py").exists(), "python -m proxy_service must work"
    entry = (ROOT / "logger_service" / "__main__.py").read_text()
    assert "--check" in entry, "logger_service must accept --check (its health check)"


@pytest.mark.parametrize("name", [name for name, _ in DOCKERFILES])
def test_slim_python_base(name):
    bases = [args for keyword, args in dockerfile(name) if keyword == "FROM"]
    assert bases, f"{name} has no FROM"
    assert re.fullmatch(r"python:3\.1[1-3]-slim(-\w+)?", bases[-1].split()[0]), bases[-1]


@pytest.mark.parametrize("name", [name for name, _ in DOCKERFILES])
def test_every_copied_path_exists_in_the_build_context(name):
    sources = copy_sources(name)
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"{name} copies missing {source}"
        assert not dockerignored(source), f"{name} copies {source}, which .dockerignore drops"


@pytest.mark.parametrize("name", [name for name, _ in DOCKERFILES])
def test_copied_packages_include_everything_they_import(name):
    copied = {source.strip("/").split("/")[0] for source in copy_sources(name)}
    packages = copied & set(PACKAGES)
    assert packages, f"{name} copies no package"
    for package in packages:
        missing = internal_imports(package) - copied
        assert not missing, f"{name}: {package} imports {missing}, which is not copied"


@pytest.mark.parametrize("name", [name for name, _ in DOCKERFILES])
def test_dependencies_are_installed_before_the_source_is_copied(name):
    steps = dockerfile(name)
    copies = [i for i, (keyword, _) in enumerate(steps) if keyword == "COPY"]
    first_pyproject = next(i for i in copies if "pyproject.toml" in steps[i][1])
    first_source = min(i for i in copies if any(p in steps[i][1] for p in PACKAGES))
    installs = [
        i for i, (keyword, args) in enumerate(steps) if keyword == "RUN" and "pip install" in args
    ]
    assert any(first_pyproject < i < first_source for i in installs), (
        f"{name}: install dependencies between COPY pyproject.toml and the source COPY"
    )
    assert not any(p in steps[first_pyproject][1] for p in PACKAGES)


@pytest.mark.parametrize("name", [name for name, _ in DOCKERFILES])
def test_runs_as_a_non_root_user_with_a_health_check(name):
    steps = dockerfile(name)
    users = [i for i, (keyword, _) in enumerate(steps) if keyword == "USER"]
    assert users, f"{name} sets no USER"
    user = steps[users[-1]][1].split(":")[0]
    assert user not in ("root", "0")
    cmd = max(i for i, (keyword, _) in enumerate(steps) if keyword == "CMD")
    assert users[-1] < cmd
    assert any(keyword == "HEALTHCHECK" for keyword, _ in steps), f"{name} has no HEALTHCHECK"
    text = " ".join(args for _, args in steps)
    assert not re.search(r"\bcurl\b", text), f"{name} must not rely on curl"


def test_logger_image_owns_the_data_directory():
    runs = " ".join(args for keyword, args in dockerfile("Dockerfile.logger") if keyword == "RUN")
    assert f"mkdir -p {DATA_MOUNT}" in runs
    assert re.search(rf"chown\s+(-R\s+)?app(:app)?\s+{re.escape(DATA_MOUNT)}", runs)
    assert dockerfile("Dockerfile.logger")[-1] == ("CMD", json.dumps(LOGGER_ARGV))


def test_dockerignore_keeps_secrets_and_data_out_of_images():
    for path in (".env", "data/keys.json", "data/events.jsonl", ".git/config", ".venv/bin"):
        assert dockerignored(path), path
    assert not dockerignored("pyproject.toml")


# --- nginx front -----------------------------------------------------------------------------


def test_front_streams_to_every_replica():
    conf = nginx_config()

    def directive(name: str) -> list[str]:
        return re.findall(rf"^\s*{name}\s+([^;]+);", conf, flags=re.MULTILINE)

    assert directive("proxy_buffering") == ["off"]
    assert directive("proxy_request_buffering") == ["off"]
    assert directive("proxy_http_version") == ["1.1"]
    assert directive("proxy_read_timeout") == ["600s"]
    assert directive("proxy_set_header Connection") == ['""'], "needed for upstream keep-alive"
    (body_size,) = directive("client_max_body_size")
    assert re.fullmatch(r"\d+[mM]", body_size), body_size
    # Above the proxy's own limit, so an oversized body gets the proxy's API-shaped 413.
    from shared.settings import Settings

    assert int(body_size[:-1]) << 20 > Settings.model_fields["max_request_bytes"].default
    # The compose service name, resolved by Docker DNS to every replica.
    upstream = re.search(r"upstream\s+(\w+)\s*\{([^}]*)\}", conf)
    assert upstream, "expected an upstream block"
    assert re.search(rf"^\s*server\s+proxy:{PROXY_PORT}\b", upstream.group(2), re.MULTILINE)
    assert re.search(r"^\s*keepalive\s+\d+;", upstream.group(2), re.MULTILINE)
    assert directive("proxy_pass") == [f"http://{upstream.group(1)}"]
    assert re.search(r"^\s*listen\s+80\s*;", conf, re.MULTILINE)


# --- .env.example and the README -------------------------------------------------------------

SETTINGS_IN_ISSUE = {
    "UPSTREAM_BASE_URL",
    "UPSTREAM_API_KEY",
    "UPSTREAM_CONNECT_TIMEOUT",
    "UPSTREAM_READ_TIMEOUT",
    "DATA_DIR",
    "ADMIN_TOKEN",
    "PORT",
    "MAX_LOG_CHUNKS",
    "MAX_LOG_FIELD_SIZE",
    "FULL_TRACE_LOGGING",
    "REDIS_URL",
    "MODEL_MAP",
}


def env_example() -> dict[str, str]:
    """Every `NAME=value` line, commented out or not (the last one of each name wins)."""
    found = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.fullmatch(r"#?\s*([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if match:
            found[match.group(1)] = match.group(2)
    return found


def test_env_example_documents_every_setting():
    from shared.settings import Settings

    fields = {name.upper() for name in Settings.model_fields}
    assert SETTINGS_IN_ISSUE | fields <= set(env_example())


def test_env_example_admin_token_is_a_placeholder_that_cannot_start_anything():
    from pydantic import ValidationError

    from shared.settings import Settings

    placeholder = env_example()["ADMIN_TOKEN"]
    assert "change" in placeholder.lower()
    with pytest.raises(ValidationError):
        Settings(admin_token=placeholder, _env_file=None)


def container_docs() -> list[Path]:
    docs = [ROOT / "README.md", ROOT / "deploy" / "README-containers.md"]
    return [doc for doc in docs if doc.exists() and "docker compose up" in doc.read_text()]


def test_the_readme_promises_what_the_compose_file_does():
    docs = container_docs()
    assert docs, "no README section explains `docker compose up`"
    services = compose()["services"]
    for doc in docs:
        text = doc.read_text()
        assert "--scale proxy=3" in text
        for name in services:
            assert f"`{name}`" in text, f"{doc.name} does not describe the {name} service"
        for promise in (
            f"127.0.0.1:{PROXY_PORT}",
            "/healthz",
            "/readyz",
            "python -m logger_service --check",
            "redis-cli ping",
            ".env",
        ):
            assert promise in text, f"{doc.name} does not mention {promise}"
        for volume in compose()["volumes"]:
            assert f"`{volume}`" in text, f"{doc.name} does not describe volume {volume}"
