"""Two apps on one host behind nginx: each is its own service, and one's change or removal is its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask_uwsgi_testing import CLIENT, App, demo_release, request_in_host, run_playbook, scrape

PROJECT = Path(__file__).resolve().parents[3]
SITE = "examples/two-apps/site.yml"
STYLE = PROJECT / "examples" / "flask-demo" / "static" / "style.css"


def through_nginx(host: Any, port: int, path: str) -> tuple[str, str]:
    """One GET through nginx on the host; returns its status line and body."""
    return request_in_host(host, f"127.0.0.1:{port}", path)


def snapshot(app: App) -> dict[str, Any]:
    """What a reload or restart of the app would change: its master, its workers, its start time."""
    master = app.main_pid()
    return {
        "master": master,
        "workers": app.workers(),
        "active_since": app.show("ActiveEnterTimestampMonotonic"),
        "master_started": app.host.check_output(f"ps -o lstart= -p {master}"),
    }


def test_each_app_runs_as_its_own_service_user_and_virtualenv(apps: dict[str, App]) -> None:
    assert sorted(apps) == ["blog", "shop"]
    masters = set()
    for name, app in apps.items():
        assert app.show("ActiveState") == "active", name
        assert app.answers(), name
        master = app.main_pid()
        masters.add(master)
        assert app.host.check_output(f"ps -o user= -p {master}") == name
        assert f"/opt/{name}/current/venv/bin/" in app.show("ExecStart")
        assert app.host.file(f"/run/{name}").user == name
        # Its ini is its own and names its own runtime directory.
        assert f"/run/{name}/" in app.host.check_output(f"cat {app.ini}")
    assert len(masters) == 2
    # Neither app's user can read the other's code or configuration.
    assert apps["blog"].host.run(f"runuser -u blog -- cat {apps['shop'].ini}").rc != 0
    assert apps["shop"].host.run("runuser -u shop -- ls /opt/blog/current/app").rc != 0


def test_one_exporter_reports_each_app_under_its_own_label(apps: dict[str, App]) -> None:
    host = apps["shop"].host
    before = scrape(host)
    assert sorted({labels["app"] for name, labels, _ in before.samples if name == "uwsgi_up"}) == ["blog", "shop"]
    assert before.sum("uwsgi_up", app="shop") == before.sum("uwsgi_up", app="blog") == 1
    for _ in range(3):
        assert apps["blog"].answers()
    after = scrape(host)
    counted = {
        name: after.sum("uwsgi_worker_requests_total", app=name) - before.sum("uwsgi_worker_requests_total", app=name)
        for name in apps
    }
    assert counted == {"blog": 3, "shop": 0}


def test_nginx_counters_answer_on_loopback_only_and_count_the_requests(apps: dict[str, App]) -> None:
    host = apps["shop"].host
    listening = host.check_output("ss --no-header --listening --tcp --numeric 'sport = :8081'")
    assert [line.split()[3] for line in listening.splitlines()] == ["127.0.0.1:8081"]

    def handled() -> int:
        status, body = request_in_host(host, "127.0.0.1:8081", "/nginx_status")
        assert status.endswith("200 OK"), status
        assert body.startswith("Active connections:"), body
        # "server accepts handled requests", then the three figures.
        return int(body.splitlines()[2].split()[2])

    before = handled()
    for _ in range(3):
        assert through_nginx(host, 80, "/")[0].endswith("200 OK")
    # The 3 requests, and the status request itself.
    assert handled() == before + 4
    assert request_in_host(host, "127.0.0.1:8081", "/")[0].endswith("404 Not Found")


def test_nginx_serves_each_app_and_the_static_files_itself(apps: dict[str, App]) -> None:
    host = apps["shop"].host
    for port in (80, 8080):
        status, body = through_nginx(host, port, "/")
        assert status.endswith("200 OK"), (port, status, body)
        assert body.startswith("Hello from flask-demo"), (port, body)
    # The app has no /assets/ route: only nginx, reading the release's static/ directory, can answer.
    status, body = through_nginx(host, 80, "/assets/style.css")
    assert status.endswith("200 OK"), status
    assert body == STYLE.read_text().strip()  # check_output strips the last newline
    status, _ = through_nginx(host, 80, "/assets/../app.py")
    assert not status.endswith("200 OK"), status
    # Others can read the published static files and nothing else of the release.
    assert host.run("runuser -u nobody -- cat /opt/shop/current/static/style.css").rc == 0
    assert host.run("runuser -u nobody -- cat /opt/shop/current/app/app.py").rc != 0
    assert host.run("runuser -u nobody -- ls /opt/shop/current/venv").rc != 0


def test_the_socket_lets_nginx_in_and_nobody_else(apps: dict[str, App]) -> None:
    shop = apps["shop"]
    socket = shop.vars["flask_uwsgi_socket"]
    sock = shop.host.file(socket)
    assert (sock.user, sock.group, sock.mode) == ("shop", "www-data", 0o660)
    client = "python3 -c %s %s uwsgi /"
    as_nginx = shop.host.run(f"runuser -u www-data -- {client}", CLIENT, socket)
    assert as_nginx.rc == 0, as_nginx.stderr
    assert as_nginx.stdout.split("\n")[0].endswith("200 OK"), as_nginx.stdout
    for user in ("nobody", "blog"):
        refused = shop.host.run(f"runuser -u {user} -- {client}", CLIENT, socket)
        assert refused.rc != 0, (user, refused.stdout)
        assert "PermissionError" in refused.stderr, (user, refused.stderr)


def test_new_code_for_one_app_reloads_that_app_only(apps: dict[str, App], tmp_path: Path) -> None:
    # The shop comes first in the play: a handler run with the last app's variables would reload the blog.
    shop, blog = apps["shop"], apps["blog"]
    shop_before, blog_before = snapshot(shop), snapshot(blog)
    play = run_playbook(SITE, {"shop_src": str(demo_release(tmp_path, "shop-2"))}, tmp_path)
    assert play.returncode == 0, play.stdout[-3000:]
    assert "Hello from flask-demo shop-2" in through_nginx(shop.host, 80, "/")[1]
    shop_after = snapshot(shop)
    assert shop_after["master"] == shop_before["master"], "a graceful reload keeps the master"
    assert not set(shop_after["workers"]) & set(shop_before["workers"]), "the shop's workers were reloaded"
    assert snapshot(blog) == blog_before, "the blog was reloaded or restarted"
    assert "Hello from flask-demo (pid" in blog.get("/")[1]


def test_new_config_for_one_app_reloads_that_app_only(apps: dict[str, App], tmp_path: Path) -> None:
    # The same site with one more uWSGI option for the shop, and the shop's code as it is now.
    shop, blog = apps["shop"], apps["blog"]
    site = (PROJECT / SITE).read_text()
    shop_vars = "        flask_uwsgi_app_name: shop\n"
    assert site.count(shop_vars) == 1
    changed_site = tmp_path / "site.yml"
    changed_site.write_text(site.replace(shop_vars, shop_vars + "        flask_uwsgi_harakiri: 45\n"))
    sources = {"shop_src": str(demo_release(tmp_path, "shop-2")), "blog_src": str(PROJECT / "examples" / "flask-demo")}
    shop_before, blog_before = snapshot(shop), snapshot(blog)
    play = run_playbook(str(changed_site), sources, tmp_path)
    assert play.returncode == 0, play.stdout[-3000:]
    assert "harakiri = 45" in shop.host.check_output(f"cat {shop.ini}")
    assert "Hello from flask-demo shop-2" in through_nginx(shop.host, 80, "/")[1], "the shop's code changed"
    shop_after = snapshot(shop)
    assert shop_after["master"] == shop_before["master"], "a graceful reload keeps the master"
    assert not set(shop_after["workers"]) & set(shop_before["workers"]), "the shop's workers were reloaded"
    assert snapshot(blog) == blog_before, "the blog was reloaded or restarted"


def test_removing_one_app_leaves_the_other_running(apps: dict[str, App], tmp_path: Path) -> None:
    shop, blog = apps["shop"], apps["blog"]
    shop_before = snapshot(shop)
    play = run_playbook("playbooks/remove.yml", {"flask_uwsgi_app_name": "blog"}, tmp_path)
    assert play.returncode == 0, play.stdout[-3000:]
    assert blog.host.run(f"systemctl cat {blog.unit}").rc != 0
    assert not blog.host.file("/opt/blog").exists
    assert blog.host.run("getent passwd blog").rc != 0
    assert not blog.host.socket("tcp://127.0.0.1:8001").is_listening
    assert snapshot(shop) == shop_before
    assert through_nginx(shop.host, 80, "/")[0].endswith("200 OK")
    assert shop.host.file("/opt/shop/current/app").is_directory
