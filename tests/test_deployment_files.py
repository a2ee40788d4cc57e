"""docker-compose.yml cannot run on this machine (no Docker engine), so it is checked by
parsing: the services exist, are wired by environment and run commands that exist here."""

import re
import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def command_of(service: dict) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else list(command)


def test_compose_has_the_stack_services():
    services = compose()["services"]
    assert {"postgres", "redis", "migrate", "web", "worker", "beat", "simulators"} <= set(services)


def test_compose_workers_between_them_consume_every_queue():
    """Each kind of work has its queue (settings.CELERY_TASK_QUEUES) and some worker
    consuming it: orders on their own workers, the sync and maintenance on others."""
    from django.conf import settings

    consumed = {}
    for name, service in compose()["services"].items():
        args = command_of(service) if "command" in service else []
        if args[:4] == ["celery", "-A", "orderproj", "worker"]:
            consumed[name] = set(args[args.index("-Q") + 1].split(","))
    assert consumed["worker"] == {"orders", "fulfilment"}
    assert set().union(*consumed.values()) == {q.name for q in settings.CELERY_TASK_QUEUES}
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    assert routed == {q.name for q in settings.CELERY_TASK_QUEUES}


def test_postgres_keeps_its_data_in_a_volume():
    spec = compose()
    volumes = spec["services"]["postgres"]["volumes"]
    assert any(v.split(":")[1].startswith("/var/lib/postgresql") for v in volumes)
    assert volumes[0].split(":")[0] in spec["volumes"]


def test_redis_is_durable_and_never_evicts_tasks():
    command = " ".join(command_of(compose()["services"]["redis"]))
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command


def test_app_services_share_one_image_built_from_the_dockerfile():
    services = compose()["services"]
    builds = {
        name: services[name].get("build")
        for name in ("migrate", "web", "worker", "beat", "simulators")
    }
    assert all(b == builds["web"] for b in builds.values()), builds
    assert (ROOT / "Dockerfile").is_file()
    images = {services[n].get("image") for n in ("migrate", "web", "worker", "beat", "simulators")}
    assert len(images) == 1


def test_app_services_are_wired_to_postgres_and_redis_by_environment():
    services = compose()["services"]
    for name in ("web", "worker", "beat"):
        environment = services[name]["environment"]
        assert environment["DATABASE_URL"].startswith("postgres://"), name
        assert "@postgres:" in environment["DATABASE_URL"], name
        assert environment["CELERY_BROKER_URL"].startswith("redis://redis:"), name
        assert environment["PAYMENT_API_URL"].startswith("http://simulators:8001/"), name
        assert environment["WAREHOUSE_API_URL"].startswith("http://simulators:8001/"), name
        assert environment["SERVE_SIMULATORS"] == "false", name


def test_app_service_commands_name_modules_that_exist():
    services = compose()["services"]
    web = command_of(services["web"])
    assert web[0] == "gunicorn"
    module = next(arg for arg in web if re.fullmatch(r"[\w.]+:\w+", arg))
    assert (ROOT / (module.split(":")[0].replace(".", "/") + ".py")).is_file()
    for name, role in (("worker", "worker"), ("beat", "beat")):
        args = command_of(services[name])
        assert args[:3] == ["celery", "-A", "orderproj"] and role in args, args
    simulators = command_of(services["simulators"])
    assert "simulators.wsgi:application" in simulators and "0.0.0.0:8001" in simulators
    assert (ROOT / "simulators" / "wsgi.py").is_file()
    assert command_of(services["migrate"])[:3] == ["python", "manage.py", "migrate"]
    for name in ("web", "worker", "beat"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )


def test_procfile_runs_web_worker_and_beat_like_compose():
    procfile = dict(
        line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()
    )
    assert set(procfile) == {"web", "worker", "beat"}
    assert "orderproj.wsgi:application" in procfile["web"]
    assert "celery -A orderproj worker" in procfile["worker"]
    assert "celery -A orderproj beat" in procfile["beat"]


def test_flower_watches_the_workers_through_the_broker():
    services = compose()["services"]
    flower = services["flower"]
    assert command_of(flower)[:4] == ["celery", "-A", "orderproj", "flower"]
    assert flower["image"] == services["worker"]["image"]
    broker_url = services["worker"]["environment"]["CELERY_BROKER_URL"]
    assert flower["environment"]["CELERY_BROKER_URL"] == broker_url
    assert flower["depends_on"]["redis"]["condition"] == "service_healthy"
    # its UI can control the workers: published on the host's loopback only
    assert all(port.startswith("127.0.0.1:") for port in flower["ports"])
    pins = (ROOT / "requirements.txt").read_text().splitlines()
    assert any(re.fullmatch(r"flower==[\d.]+", line) for line in pins)


def test_logs_are_json_in_compose_and_readable_under_make_run():
    services = compose()["services"]
    for name in ("web", "worker", "beat", "flower"):
        assert services[name]["environment"]["LOG_FORMAT"] == "json", name
    assert 'LOG_FORMAT="${LOG_FORMAT:-plain}"' in (ROOT / "scripts" / "run.sh").read_text()
    # gunicorn reads ./gunicorn.conf.py from the directory it is started in (WORKDIR /app)
    assert (ROOT / "gunicorn.conf.py").is_file()
    assert "gunicorn.conf.py" not in (ROOT / ".dockerignore").read_text()


def test_compose_seeds_the_demo_with_random_passwords_and_stocks_its_warehouse():
    services = compose()["services"]
    seed = services["seed"]
    args = command_of(seed)
    assert args[:3] == ["python", "manage.py", "seed_demo"]
    assert "--generate-passwords" in args  # its web port is published beyond this machine
    url = args[args.index("--warehouse-url") + 1]
    assert url == services["web"]["environment"]["WAREHOUSE_API_URL"]
    assert seed["restart"] == "no"
    assert seed["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "simulators" in seed["depends_on"]


def documented_settings() -> dict[str, str]:
    """docs/settings.md's table: setting -> its Default column."""
    rows = re.findall(
        r"^\| `([A-Z0-9_]+)` \| ([^|]*) \|", (ROOT / "docs" / "settings.md").read_text(), re.M
    )
    return {name: default.strip() for name, default in rows}


def test_compose_settings_are_documented_with_the_defaults_it_uses():
    """Every variable the compose stack sets is in the settings table, and where compose
    lets the environment override it (`${NAME:-default}`), its default is the documented
    one: the compose stack behaves as the docs say unless told otherwise."""
    documented = documented_settings()
    text = (ROOT / "docker-compose.yml").read_text()
    infrastructure = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}
    for name, service in compose()["services"].items():
        for variable in set(service.get("environment") or {}) - infrastructure:
            assert variable in documented, f"{name}: {variable} is not in docs/settings.md"
    overridable = re.findall(r"\$\{([A-Z0-9_]+):-([^}]*)\}", text)
    assert len(overridable) >= 8
    for variable, default in overridable:
        shown = documented[variable]
        if default:
            assert shown.startswith(f"`{default}`"), (variable, default, shown)
        else:
            assert shown.startswith(("empty", "unset")), (variable, shown)


def test_every_setting_read_from_the_environment_is_in_the_settings_table():
    """docs/settings.md says every setting is in its table: each name the settings, the
    simulators, the HTTP clients, scripts/procs.py or `make run`'s script read from the
    environment has its row."""
    sources = [
        "orderproj/settings.py",
        "simulators/wsgi.py",
        "core/http.py",
        "scripts/procs.py",
        "scripts/run.sh",
    ]
    patterns = [
        r'env\.[a-z_]+\(\s*"([A-Z][A-Z0-9_]+)"',
        r'os\.environ(?:\.get)?[(\[]\s*"([A-Z][A-Z0-9_]+)"',
        r"\$\{([A-Z][A-Z0-9_]+):-",
    ]
    read = {
        name
        for source in sources
        for pattern in patterns
        for name in re.findall(pattern, (ROOT / source).read_text())
    }
    assert len(read) >= 60
    missing = sorted(read - set(documented_settings()))
    assert not missing, f"read from the environment but not in docs/settings.md: {missing}"
