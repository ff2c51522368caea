"""Settings of the smallest Django project that sends tasks: no database, no apps.

The tasks live in ``examples/web_tasks.py`` (which imports the demo's
``examples/tasks.py``); in a real project they would be a module of the project
itself, e.g. ``myproject/tasks.py``, importable without this ``sys.path`` line.
amqpq needs no Django settings: the App reads ``AMQPQ_URL`` from the environment.
"""

from __future__ import annotations

import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2]
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

SECRET_KEY = "django-insecure-example-only"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "mysite.urls"
DATABASES: dict[str, dict[str, str]] = {}  # nothing here needs a database

USE_TZ = True
TIME_ZONE = "UTC"
