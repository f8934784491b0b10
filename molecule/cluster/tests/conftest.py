"""The cluster's hosts: the balancer and the two app servers, each an App with the inventory's settings."""

from __future__ import annotations

import os
from typing import Any

import pytest
import testinfra
from flask_uwsgi_testing import App, host_settings

APP_HOSTS = ("flask-uwsgi-cluster-app1", "flask-uwsgi-cluster-app2")


def testinfra_host(name: str) -> Any:
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={os.environ['MOLECULE_INVENTORY_FILE']}")


@pytest.fixture(scope="module")
def balancer() -> Any:
    return testinfra_host("flask-uwsgi-cluster-lb")


@pytest.fixture(scope="module")
def app_servers() -> list[App]:
    hosts = [testinfra_host(name) for name in APP_HOSTS]
    return [App(host=host, vars=host_settings(host)) for host in hosts]
