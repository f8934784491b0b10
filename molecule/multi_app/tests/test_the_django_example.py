"""examples/django-demo/site.yml, deployed from a git repository of the Django demo: migrations into
SQLite in a shared directory, once per rollout, and collectstatic served by nginx. Runs after
test_multi_app.py: the example's nginx site list replaces the two apps' sites."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from flask_uwsgi_testing import PROJECT, request_in_host, run_playbook

DEMO = PROJECT / "examples" / "django-demo"
SITE = "examples/django-demo/site.yml"
STYLE = DEMO / "visits" / "static" / "visits" / "style.css"
DATABASE = "/opt/django-demo/shared/data/db.sqlite3"

# A second commit: a field added to the model, with its migration.
MIGRATION = """from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("visits", "0001_initial")]
    operations = [migrations.AddField("visit", "agent", models.CharField(max_length=200, default=""))]
"""


def git(repo: Path, *args: str) -> str:
    command = ["git", "-C", str(repo), "-c", "user.name=test", "-c", "user.email=test@example.org", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo as its team would keep it: a git repository of its own, on branch main."""
    path = tmp_path_factory.mktemp("django") / "django-demo"
    shutil.copytree(DEMO, path, ignore=shutil.ignore_patterns("site.yml", "__pycache__", "data"))
    git(path, "init", "--quiet", "--initial-branch", "main")
    git(path, "add", "--all")
    git(path, "commit", "--quiet", "--message", "The Django demo")
    return path


def deploy(repo: Path, tmp_path: Path) -> None:
    extra_vars = {
        "django_demo_repo": f"file://{repo}",
        "django_demo_secret_key": "not-a-secret-of-any-real-site",
        # The deploy's check and probe ask for 127.0.0.1 and localhost; the tests' client for "test".
        "django_demo_hosts": "localhost,127.0.0.1,test",
        "flask_uwsgi_app_cache": str(tmp_path / "cache"),
    }
    play = run_playbook(SITE, extra_vars, tmp_path)
    assert play.returncode == 0, play.stdout[-3000:]


def visits(host: Any) -> int:
    status, body = request_in_host(host, "127.0.0.1:80", "/")
    assert status.endswith("200 OK"), (status, body)
    assert body.startswith("visits: "), body
    return int(body.split()[1])


def applied_migrations(host: Any) -> list[str]:
    query = "select name from django_migrations where app = 'visits' order by id"
    script = "import sqlite3, sys; print(*(n for (n,) in sqlite3.connect(sys.argv[1]).execute(sys.argv[2])))"
    return host.check_output("python3 -c %s %s %s", script, DATABASE, query).split()


def test_the_django_demo_deploys_from_git_migrates_and_nginx_serves_its_static_files(
    host: Any, repo: Path, tmp_path: Path
) -> None:
    deploy(repo, tmp_path)
    commit = git(repo, "rev-parse", "HEAD")
    assert host.file("/opt/django-demo/current").linked_to.startswith(f"/opt/django-demo/releases/{commit[:12]}-")
    assert applied_migrations(host) == ["0001_initial"]
    assert visits(host) == 1
    assert visits(host) == 2
    # collectstatic's output, served by nginx from the release: root's, readable by all, not the app's.
    status, body = request_in_host(host, "127.0.0.1:80", "/static/visits/style.css")
    assert status.endswith("200 OK"), status
    assert body == STYLE.read_text().strip()  # check_output strips the last newline
    style = host.file("/opt/django-demo/current/static/visits/style.css")
    assert (style.user, style.mode) == ("root", 0o644)
    assert host.run("runuser -u django-demo -- touch /opt/django-demo/current/static/visits/style.css").rc != 0
    # The database is the app's, in the shared directory, and nobody else's.
    database = host.file(DATABASE)
    assert (database.user, database.mode & 0o077) == ("django-demo", 0)


def test_a_new_commit_migrates_the_shared_database_and_keeps_its_data(host: Any, repo: Path, tmp_path: Path) -> None:
    before = visits(host)
    models = repo / "visits" / "models.py"
    models.write_text(models.read_text() + '    agent = models.CharField(max_length=200, default="")\n')
    (repo / "visits" / "migrations" / "0002_visit_agent.py").write_text(MIGRATION)
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--message", "Visits keep the user agent")
    deploy(repo, tmp_path)
    assert host.file("/opt/django-demo/current").linked_to.startswith(
        f"/opt/django-demo/releases/{git(repo, 'rev-parse', 'HEAD')[:12]}-"
    )
    assert applied_migrations(host) == ["0001_initial", "0002_visit_agent"]
    assert visits(host) == before + 1, "the visits of the first release are kept"
