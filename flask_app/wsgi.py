"""The WSGI entry point Gunicorn imports in each worker (see gunicorn.conf.py)."""

from flask_app import create_app

app = create_app()
