"""``POST /hooks/callback/<secret>``: the one-time callback URLs handlers mint
(``runtime.callbacks``). No login: the secret in the URL is the credential."""
from __future__ import annotations

from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from marketplace.exceptions import NotFound

from .callbacks import consume
from .views import posted, read_payload, refusal


@csrf_exempt  # called by other systems, authenticated by the secret in the URL
@require_POST
def callback(request, secret: str):
    """202 ``{"event", "runs"}`` once. 404 for a wrong, used or expired secret (posting
    nothing); otherwise the webhook's refusals (413, 400, 409 ``not_live``, 429
    ``queue_full``), after which the URL is still good."""
    payload, refused = read_payload(request)
    if refused is not None:
        return refused
    try:
        return posted(lambda: consume(secret, payload))
    except NotFound as exc:
        return refusal(404, "not_found", exc.message)
