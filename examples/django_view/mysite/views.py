"""A view that answers at once and leaves the e-mail to a worker.

``send_email.delay(...)`` publishes on the App's synchronous producer (pika): one
connection per process, shared by every request thread, re-opened by itself
after a fork (gunicorn's prefork workers) or a broker restart. It returns as
soon as the broker has confirmed the message — a few milliseconds — not when
the e-mail is sent. The view does not wait for the result, so it never calls
``.get()``; the worker's reply, sent over direct reply-to, is simply dropped.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_POST
from web_tasks import send_email

from amqpq import AmqpqError


@require_POST
def signup(request: HttpRequest) -> JsonResponse:
    email = request.POST.get("email", "").strip()
    if "@" not in email:
        return JsonResponse({"error": "a valid email is required"}, status=400)
    # ... create the account here ...
    try:
        result = send_email.delay(email, "Welcome aboard", body="Thanks for signing up.")
    except AmqpqError as exc:  # broker down, or the message could not be routed
        return JsonResponse({"error": f"could not queue the welcome e-mail: {exc}"}, status=503)
    return JsonResponse({"email": email, "welcome_email_task": result.id}, status=202)
