"""A sender process: ``python sender.py TASK_ID X Y`` starts ``rt.add(X, Y)`` with that id
and exits without waiting (the first container of the cross-container scenario)."""

from __future__ import annotations

import sys

from results_tasks import add, app

if __name__ == "__main__":
    add.apply_async((int(sys.argv[2]), int(sys.argv[3])), task_id=sys.argv[1])
    app.close()
    print("sent", sys.argv[1])
