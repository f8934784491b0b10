"""The shared suite (molecule/shared/tests: the service and what watches it), first: the collection's
tests (test_the_collection.py) come after, and leave the hosts as they found them."""

from test_metrics import *  # noqa: F403
from test_service import *  # noqa: F403
