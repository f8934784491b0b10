"""Callback for the tests: how each task ended on each host, and the play's recap, as JSON lines.

The tests read task outcomes from this file instead of matching the play's coloured text. It writes
to the file named by FLASK_UWSGI_TASK_OUTCOMES (nothing when unset), one JSON object per line:
  {"event": "play", "play": "Deploy the WSGI apps of the app servers under uWSGI and systemd"}
  {"event": "task", "task": "flask_uwsgi : service | Reload the app's service gracefully"}
  {"event": "outcome", "host": "h1", "outcome": "ok" | "changed" | "skipping" | "failed" | "unreachable"}
  (a failed outcome holds the task's message too, and those of a loop's failed items: "msg": "...")
  {"event": "stats", "host": "h1", "ok": 12, "changed": 0, "failed": 0, ...}
An outcome belongs to the task line before it; a task run once per batch (serial) has one task line
per batch.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: task_outcomes
type: notification
short_description: write task outcomes and the recap as JSON lines, for flask_uwsgi's tests
description: Writes to the file named by the FLASK_UWSGI_TASK_OUTCOMES environment variable.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "task_outcomes"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._path = os.environ.get("FLASK_UWSGI_TASK_OUTCOMES", "")

    def _write(self, **event: Any) -> None:
        if self._path:
            with open(self._path, "a", encoding="utf-8") as out:
                out.write(json.dumps(event) + "\n")

    def _outcome(self, result: Any, outcome: str) -> None:
        self._write(event="outcome", host=result._host.get_name(), outcome=outcome)

    def v2_playbook_on_play_start(self, play: Any) -> None:
        self._write(event="play", play=play.get_name())

    def v2_playbook_on_task_start(self, task: Any, is_conditional: bool) -> None:
        self._write(event="task", task=task.get_name())

    def v2_playbook_on_handler_task_start(self, task: Any) -> None:
        self._write(event="task", task=task.get_name())

    def v2_runner_on_ok(self, result: Any) -> None:
        self._outcome(result, "changed" if result._result.get("changed") else "ok")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        # A loop's message is "One or more items failed": the failed items' own messages follow it.
        items = [item for item in result._result.get("results", []) if item.get("failed")]
        msg = "\n".join(str(part.get("msg", "")) for part in [result._result, *items])
        self._write(event="outcome", host=result._host.get_name(), outcome="failed", msg=msg)

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._outcome(result, "skipping")

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._outcome(result, "unreachable")

    def v2_playbook_on_stats(self, stats: Any) -> None:
        for host in sorted(stats.processed):
            counts = stats.summarize(host)
            # Named as the PLAY RECAP names them.
            counts["failed"] = counts.pop("failures")
            self._write(event="stats", host=host, **counts)
