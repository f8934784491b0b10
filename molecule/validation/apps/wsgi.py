"""A plain WSGI app that reports how it was installed: its own distribution and itsdangerous."""

from importlib import metadata


def installed(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def app(environ: dict, start_response: object) -> list[bytes]:
    body = f"deps-demo {installed('deps-demo')}, itsdangerous {installed('itsdangerous')}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
