"""The Debian releases claimed are exactly those the roles accept and the Molecule scenarios test.

meta/main.yml lists them for Galaxy, vars/main.yml for the check that refuses any other host, and
the scenarios' app hosts are built from their images: the three must name the same releases.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# The releases each role's vars/main.yml accepts, as {major version: codename}.
ACCEPTED = {
    role: {
        version: release["codename"]
        for version, release in yaml.safe_load((ROOT / "roles" / role / "vars/main.yml").read_text())[
            f"__{role}_debian_releases"
        ].items()
    }
    for role in ("flask_uwsgi", "flask_uwsgi_nginx")
}


def images(group: str, scenario: str = "*") -> set[str]:
    """The Debian codenames of the images of the scenarios' hosts in that inventory group."""
    found = set()
    for molecule_yml in ROOT.glob(f"molecule/{scenario}/molecule.yml"):
        for platform in yaml.safe_load(molecule_yml.read_text()).get("platforms", []):
            if group in platform.get("groups", []):
                found.add(platform["image"].rpartition(":")[2])
    return found


@pytest.mark.parametrize("role", sorted(ACCEPTED))
def test_meta_claims_exactly_the_releases_the_role_accepts(role: str) -> None:
    meta = yaml.safe_load((ROOT / "roles" / role / "meta/main.yml").read_text())
    [debian] = meta["galaxy_info"]["platforms"]
    assert debian["name"] == "Debian"
    assert sorted(debian["versions"]) == sorted(ACCEPTED[role].values())


def test_the_app_hosts_of_the_scenarios_run_every_accepted_release_and_no_other() -> None:
    assert images("app_servers") == set(ACCEPTED["flask_uwsgi"].values()) == {"bookworm", "trixie"}


def test_nginx_runs_on_every_accepted_release_in_the_scenarios() -> None:
    # cluster puts nginx on its balancer, multi_app beside the apps on its app host.
    nginx_hosts = images("load_balancers", "cluster") | images("app_servers", "multi_app")
    assert nginx_hosts == set(ACCEPTED["flask_uwsgi_nginx"].values())


def test_an_unsupported_release_has_a_host_to_be_refused_on() -> None:
    assert images("unsupported") == {"bullseye"}
