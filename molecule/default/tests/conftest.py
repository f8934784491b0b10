"""The `app` fixture for the default scenario's suites; the helpers live in molecule/shared/tests."""

from flask_uwsgi_testing import app

__all__ = ["app"]
