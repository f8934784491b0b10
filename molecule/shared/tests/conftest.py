"""The `app` fixture for the shared suite; the helpers live in flask_uwsgi_testing."""

from flask_uwsgi_testing import app

__all__ = ["app"]
