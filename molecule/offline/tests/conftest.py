"""The offline scenario's hosts, each an App with the inventory's settings, by group."""

from __future__ import annotations

import os
from typing import Any

import pytest
import testinfra
from flask_uwsgi_testing import App, host_settings


def app_on(name: str) -> App:
    host = testinfra.get_host(f"ansible://{name}?ansible_inventory={os.environ['MOLECULE_INVENTORY_FILE']}")
    return App(host=host, vars=host_settings(host))


@pytest.fixture(scope="module")
def airgapped() -> App:
    return app_on("flask-uwsgi-offline-airgapped")


@pytest.fixture(scope="module")
def proxied() -> App:
    return app_on("flask-uwsgi-offline-proxied")


@pytest.fixture(scope="module")
def compiled() -> list[App]:
    """The two hosts of the compiled group, in inventory order: the first is the one that compiles."""
    return [app_on("flask-uwsgi-offline-compile1"), app_on("flask-uwsgi-offline-compile2")]


@pytest.fixture(scope="module", params=["airgapped", "proxied"])
def sealed(request: Any) -> App:
    return request.getfixturevalue(request.param)
