"""The validation scenario's hosts: the app servers (Debian 12 and 13), which every test deploys to at
once, and a Debian 11 host outside app_servers, which the role must refuse."""

from __future__ import annotations

from typing import Any

import pytest
from deploys import PROBES, deployed
from flask_uwsgi_testing import demo_release, scenario_hosts


@pytest.fixture(scope="session")
def app_hosts() -> list[Any]:
    hosts = scenario_hosts("app_servers")
    assert len(hosts) == 2, "the scenario deploys to a Debian 12 and a Debian 13 host"
    return hosts


@pytest.fixture(scope="session")
def unsupported_host() -> Any:
    [host] = scenario_hosts("unsupported")
    return host


@pytest.fixture(scope="session")
def bare_hosts(app_hosts: list[Any]) -> list[Any]:
    """The app servers as the scenario creates them, with nothing of the role on them. Fails, rather
    than testing a deployed host, if a deploy ran first."""
    for host in app_hosts:
        assert not host.file("/etc/flask_uwsgi").exists, f"{host.backend.host} is not bare: a deploy ran before"
    return app_hosts


@pytest.fixture(scope="session")
def deployed_hosts(bare_hosts: list[Any], tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    """From here on the hosts change: a first release goes out to both (after test_bad_input.py,
    which needs them bare)."""
    deployed(tmp_path_factory.mktemp("first"), {})
    return bare_hosts


@pytest.fixture(scope="session")
def probes(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The demo app with the probe routes, as a release source directory."""
    return str(demo_release(tmp_path_factory.mktemp("src"), "probes", after=PROBES))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """test_bad_input.py first: it needs the hosts bare, and every other file deploys to them."""
    items.sort(key=lambda item: item.path.name != "test_bad_input.py")
