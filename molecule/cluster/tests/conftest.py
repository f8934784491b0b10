"""The cluster's hosts: the balancer and the two app servers, each an App with the inventory's settings."""

from __future__ import annotations

from typing import Any

import pytest
from flask_uwsgi_testing import App, host_settings, scenario_hosts


@pytest.fixture(scope="module")
def balancer() -> Any:
    [host] = scenario_hosts("load_balancers")
    return host


@pytest.fixture(scope="module")
def app_servers() -> list[App]:
    """The app servers by name: app1 first, as in the inventory and so in a rolling deploy."""
    return [App(host=host, vars=host_settings(host)) for host in scenario_hosts("app_servers")]
