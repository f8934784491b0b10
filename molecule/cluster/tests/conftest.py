"""The cluster's hosts: the balancer and the two app servers, each an App with the inventory's settings."""

from __future__ import annotations

import os
from typing import Any

import pytest
import testinfra
import yaml
from flask_uwsgi_testing import ROLE_DEFAULTS, App, resolve

APP_HOSTS = ("flask-uwsgi-cluster-app1", "flask-uwsgi-cluster-app2")


def testinfra_host(name: str) -> Any:
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={os.environ['MOLECULE_INVENTORY_FILE']}")


@pytest.fixture(scope="module")
def balancer() -> Any:
    return testinfra_host("flask-uwsgi-cluster-lb")


@pytest.fixture(scope="module")
def app_servers() -> list[App]:
    apps = []
    for name in APP_HOSTS:
        host = testinfra_host(name)
        settings = yaml.safe_load(ROLE_DEFAULTS.read_text())
        settings.update({k: v for k, v in host.ansible.get_variables().items() if k.startswith("flask_uwsgi_")})
        apps.append(App(host=host, vars=resolve(settings)))
    return apps
