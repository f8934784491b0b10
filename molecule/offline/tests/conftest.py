"""The offline scenario's hosts, each an App with the inventory's settings, by group."""

from __future__ import annotations

from typing import Any

import pytest
from flask_uwsgi_testing import App, host_settings, scenario_hosts


def app_on(name: str) -> App:
    [host] = scenario_hosts(name)
    return App(host=host, vars=host_settings(host))


@pytest.fixture(scope="module")
def airgapped() -> App:
    return app_on("flask-uwsgi-offline-airgapped")


@pytest.fixture(scope="module")
def proxied() -> App:
    return app_on("flask-uwsgi-offline-proxied")


@pytest.fixture(scope="module")
def compiled() -> list[App]:
    """The hosts of the compiled group, in inventory order: two Debian 12 hosts, of which the first
    compiles for both, and a Debian 13 host, which compiles for its own platform."""
    apps = [app_on(f"flask-uwsgi-offline-compile{n}") for n in (1, 2, 3)]
    assert [app.debian() for app in apps] == [12, 12, 13]
    return apps


@pytest.fixture(scope="module", params=["airgapped", "proxied"])
def sealed(request: Any) -> App:
    return request.getfixturevalue(request.param)
