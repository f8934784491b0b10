"""The two apps of examples/two-apps/site.yml, as the tests see them; helpers in molecule/shared/tests."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from flask_uwsgi_testing import PROJECT, ROLE_DEFAULTS, App, resolve

SITE = PROJECT / "examples" / "two-apps" / "site.yml"


def app_settings(host: Any) -> dict[str, dict[str, Any]]:
    """Each app's settings: the role's defaults, then the inventory, then the playbook's role vars."""
    shared = yaml.safe_load(ROLE_DEFAULTS.read_text())
    shared.update({k: v for k, v in host.ansible.get_variables().items() if k.startswith("flask_uwsgi_")})
    roles = yaml.safe_load(SITE.read_text())[0]["roles"]
    apps = [entry["vars"] for entry in roles if entry["role"] == "flask_uwsgi"]
    return {own["flask_uwsgi_app_name"]: resolve({**shared, **own}) for own in apps}


@pytest.fixture(scope="module")
def apps(host: Any) -> dict[str, App]:
    return {name: App(host=host, vars=settings) for name, settings in app_settings(host).items()}
