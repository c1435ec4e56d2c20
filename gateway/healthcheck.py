"""The container image's health check: ``python -m gateway.healthcheck [CONFIG]``.

It reads the configuration as ``serve`` does (``CONFIG``, else ``$LIENTHONG_CONFIG``, with the
``LIENTHONG_*`` variables) and asks the gateway it describes for ``/healthz``, at its listen
address (a wildcard address: loopback) and in its scheme (HTTPS when ``[gateway] tls_cert`` is
set). It exits 0 when the answer is 200, else 1 with one line saying why. A plain module rather
than a ``lienthong`` command, as it runs every 30 seconds: it loads the settings, not every command.
"""

from __future__ import annotations

import http.client
import ssl
import sys
import urllib.error
import urllib.request

from gateway.settings import Settings, SettingsError, load_settings

__all__ = ["HealthcheckFailed", "check", "main", "probe_url"]

# What a wildcard listen address is reached at from the same machine.
_LOOPBACK = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


class HealthcheckFailed(Exception):
    """The gateway did not answer ``/healthz`` 200; the message says what happened instead."""


def probe_url(settings: Settings) -> str:
    """``/healthz`` at the gateway's listen address, in its scheme."""
    host, _, port = settings.gateway.listen.rpartition(":")
    host = _LOOPBACK.get(host, host)
    scheme = "https" if settings.gateway.tls_cert else "http"
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"{scheme}://{authority}/healthz"


def check(settings: Settings, *, timeout_s: float = 5.0) -> str:
    """Ask the gateway for ``/healthz``; returns its URL when the answer is 200.
    Raises HealthcheckFailed."""
    url = probe_url(settings)
    # The certificate is not verified: it names the gateway's public host, not the address
    # probed, and the probe sends nothing secret and reads only the status.
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    # No proxy: the environment's HTTPS_PROXY is for the gateway's calls out, not this one.
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=unverified)
    )
    try:
        with opener.open(url, timeout=timeout_s) as answer:
            status = answer.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except urllib.error.URLError as exc:
        raise HealthcheckFailed(f"{url}: no answer: {_reason(exc.reason)}") from None
    except (OSError, http.client.HTTPException) as exc:  # a reset, a timeout, a closed connection
        raise HealthcheckFailed(f"{url}: no answer: {_reason(exc)}") from None
    if status != 200:
        raise HealthcheckFailed(f"{url}: answered {status}")
    return url


def _reason(exc: object) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        url = check(load_settings(args[0] if args else None))
    except (SettingsError, HealthcheckFailed) as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    print(f"healthy: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
