"""The `app` fixture for the lifecycle suite; the helpers live in molecule/shared/tests."""

from flask_uwsgi_testing import app

__all__ = ["app"]
