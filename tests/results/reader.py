"""A reader process: ``python reader.py TASK_ID`` prints ``app.AsyncResult(TASK_ID).get()``
as JSON (the store comes from AMQPQ_RESULT_BACKEND, as in another container)."""

from __future__ import annotations

import json
import sys

from results_tasks import app

if __name__ == "__main__":
    result = app.AsyncResult(sys.argv[1])
    value = result.get(timeout=float(sys.argv[2]) if len(sys.argv) > 2 else 60)
    print(json.dumps({"state": result.state.value, "value": value, "again": result.get()}))
