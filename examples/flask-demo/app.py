"""A small Flask app for the demo and the tests: a greeting and a health endpoint."""

import os

from flask import Flask

app = Flask(__name__)


@app.get("/")
def index() -> str:
    return f"Hello from flask-demo (pid {os.getpid()})\n"


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}
