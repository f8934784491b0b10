"""docs/prometheus/ against Debian's promtool, on the scenario's Debian 13 host (Debian 13 packages
promtool on its own): the scrape configuration and the alert rules are valid, each alert fires when
it should and not before (`promtool test rules`), and the exporter's real answer passes promtool's
lint of the text format."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml
from flask_uwsgi_testing import EXPORTER_PORT, PROJECT, App

DOCS = PROJECT / "docs" / "prometheus"
FILES = ("prometheus.yml", "alerts.yml", "alerts.test.yml")
WHERE = "/root/prometheus"


@pytest.fixture(scope="module")
def promtool(apps: dict[str, App]) -> Any:
    """The host, with promtool installed and the files of docs/prometheus/ in WHERE."""
    host = apps["shop"].host
    host.check_output("apt-get update -qq && apt-get install -y -qq --no-install-recommends promtool")
    host.check_output(f"mkdir -p {WHERE}")
    for name in FILES:
        content = base64.b64encode((DOCS / name).read_bytes()).decode()
        host.check_output(f"echo %s | base64 -d > {WHERE}/{name}", content)
    return host


def test_the_scrape_configuration_and_the_alert_rules_are_valid(promtool: Any) -> None:
    config = promtool.run(f"promtool check config {WHERE}/prometheus.yml")
    assert config.rc == 0, config.stdout + config.stderr
    assert "SUCCESS: 1 rule files found" in config.stdout


def test_each_alert_fires_when_it_should_and_not_before(promtool: Any) -> None:
    rules = yaml.safe_load((DOCS / "alerts.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    tests = yaml.safe_load((DOCS / "alerts.test.yml").read_text())
    fired = {case["alertname"] for test in tests["tests"] for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert fired == alerts, "every alert of alerts.yml has a case in alerts.test.yml where it fires"
    result = promtool.run(f"cd {WHERE} && promtool test rules alerts.test.yml")
    assert result.rc == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_exporter_answer_passes_promtool_lint(promtool: Any) -> None:
    scrape = f"python3 -c 'import urllib.request; print(urllib.request.urlopen(\"http://127.0.0.1:{EXPORTER_PORT}/metrics\").read().decode())'"
    lint = promtool.run("bash -c %s", f"set -o pipefail; {scrape} | promtool check metrics")
    assert lint.rc == 0, lint.stdout + lint.stderr
    assert lint.stdout + lint.stderr == ""
