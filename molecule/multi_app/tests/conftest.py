"""The two apps of examples/two-apps/site.yml, as the tests see them; helpers in molecule/shared/tests."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from flask_uwsgi_testing import PROJECT, App, host_settings

SITE = PROJECT / "examples" / "two-apps" / "site.yml"


@pytest.fixture(scope="module")
def apps(host: Any) -> dict[str, App]:
    """Each app by name, with the playbook's role vars over the role's defaults and the inventory."""
    roles = yaml.safe_load(SITE.read_text())[0]["roles"]
    own_vars = [entry["vars"] for entry in roles if entry["role"] == "flaskapps.uwsgi.flask_uwsgi"]
    assert len(own_vars) == 2, f"{SITE} should apply flaskapps.uwsgi.flask_uwsgi twice"
    return {own["flask_uwsgi_app_name"]: App(host=host, vars=host_settings(host, **own)) for own in own_vars}
