"""The validation scenario's hosts: the app servers (Debian 12 and 13), which every test deploys to at
once, and a Debian 11 host outside app_servers, which the role must refuse."""

from __future__ import annotations

from typing import Any

import pytest
from flask_uwsgi_testing import scenario_hosts


@pytest.fixture(scope="session")
def app_hosts() -> list[Any]:
    hosts = scenario_hosts("app_servers")
    assert len(hosts) == 2, "the scenario deploys to a Debian 12 and a Debian 13 host"
    return hosts


@pytest.fixture(scope="session")
def unsupported_host() -> Any:
    [host] = scenario_hosts("unsupported")
    return host
