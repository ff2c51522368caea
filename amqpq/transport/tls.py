"""TLS for both transports: certificate verification on unless the settings turn it off."""

from __future__ import annotations

import ssl

from amqpq.settings import Settings

__all__ = ["ssl_context_for"]


def ssl_context_for(settings: Settings) -> ssl.SSLContext:
    """Certificate verification on by default; a CA bundle and client certificate from settings."""
    context = ssl.create_default_context(
        cafile=str(settings.tls_ca_file) if settings.tls_ca_file else None
    )
    if settings.tls_cert_file:
        context.load_cert_chain(
            str(settings.tls_cert_file),
            str(settings.tls_key_file) if settings.tls_key_file else None,
        )
    if not settings.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
