"""The lifecycle suite (lifecycle_suite.py) on the Debian 12 host.

One module per host, so that pytest-xdist (`--dist loadfile`, molecule.yml) runs the hosts side by
side, each host's tests in order on a worker of its own.
"""

from lifecycle_suite import *  # noqa: F403

testinfra_hosts = ["ansible://flask-uwsgi-lifecycle-debian12"]
