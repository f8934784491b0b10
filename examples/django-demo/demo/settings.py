"""Settings of the Django demo. What differs between hosts comes from the environment (flask_uwsgi_env)."""

import os
from pathlib import Path

# The release's app/ directory, `current` resolved: the release commands write into the release itself.
BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
DEBUG = False
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",")

INSTALLED_APPS = ["django.contrib.staticfiles", "visits"]
MIDDLEWARE = ["django.middleware.security.SecurityMiddleware", "django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "demo.urls"
WSGI_APPLICATION = "demo.wsgi.application"

# data/ is a shared directory (flask_uwsgi_shared_dirs): the database outlives releases and rollbacks.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "data" / "db.sqlite3",
        "OPTIONS": {"timeout": 20},
    }
}

# collectstatic writes <release>/static, which nginx serves (flask_uwsgi_static_from_commands).
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR.parent / "static"

USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
