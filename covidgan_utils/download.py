"""Download one file the careful way: size stated first, progress bar, sha256 checked, atomic write, timeouts.

``torch.hub`` has no timeouts, so a network that accepts a connection and never answers hangs a notebook
forever; here the connection and every read have their own limit. ``COVIDGAN_OFFLINE=1`` skips every attempt.
HTTPS_PROXY / HTTP_PROXY are honoured (a CONNECT tunnel for https).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import urllib.parse
import urllib.request
from pathlib import Path

ENV_OFFLINE = "COVIDGAN_OFFLINE"
CONNECT_TIMEOUT = 10.0  # seconds to open the connection
READ_TIMEOUT = 30.0  # seconds any single read may wait for data
MAX_REDIRECTS = 5


class DownloadError(RuntimeError):
    """A download that did not complete (offline, timeout, HTTP error, wrong checksum); nothing was written."""


def offline() -> bool:
    """Whether COVIDGAN_OFFLINE asks to skip every download."""
    return os.environ.get(ENV_OFFLINE, "").strip().lower() not in ("", "0", "false", "no")


def human_size(n: int | None) -> str:
    if n is None:
        return "size unknown"
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n / 1024:.0f} KB" if n >= 1024 else f"{n} bytes"


def _proxy_for(scheme: str) -> urllib.parse.SplitResult | None:
    proxy = urllib.request.getproxies().get(scheme)
    return urllib.parse.urlsplit(proxy) if proxy else None


def _open(url: str, connect_timeout: float, read_timeout: float):
    """An HTTP(S) response for ``url`` (redirects followed), with the read timeout set on its socket."""
    for _ in range(MAX_REDIRECTS + 1):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise DownloadError(f"cannot download {url}: only http and https are supported")
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        proxy = _proxy_for(parts.scheme)
        no_proxy = urllib.request.proxy_bypass(host) if proxy else True
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        if proxy and not no_proxy:
            conn = cls(proxy.hostname, proxy.port or 8080, timeout=connect_timeout)
            if parts.scheme == "https":
                conn.set_tunnel(host, port)
            target = url if parts.scheme == "http" else (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        else:
            conn = cls(host, port, timeout=connect_timeout)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.connect()
        conn.sock.settimeout(read_timeout)
        conn.request("GET", target, headers={"User-Agent": "covidgan-utils"})
        response = conn.getresponse()
        if response.status in (301, 302, 303, 307, 308) and response.getheader("Location"):
            url = urllib.parse.urljoin(url, response.getheader("Location"))
            response.close()
            conn.close()
            continue
        if response.status != 200:
            conn.close()
            raise DownloadError(f"{url} answered HTTP {response.status} {response.reason}")
        return response, conn
    raise DownloadError(f"{url}: more than {MAX_REDIRECTS} redirects")


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    expected_size: int | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
    read_timeout: float = READ_TIMEOUT,
    progress: bool = True,
) -> Path:
    """Fetch ``url`` into ``dest`` atomically; ``sha256`` (the whole digest or its published prefix) must match.

    Raises :class:`DownloadError` saying why (offline, timeout, HTTP status, checksum); ``dest`` is then untouched.
    """
    from .files import atomic_path
    from .progress import tqdm

    dest = Path(dest)
    if offline():
        raise DownloadError(f"{ENV_OFFLINE} is set: no download attempted")
    try:
        response, conn = _open(url, connect_timeout, read_timeout)
    except (OSError, http.client.HTTPException) as exc:
        raise DownloadError(f"{url} could not be reached ({_why(exc, connect_timeout, read_timeout)})") from exc
    size = response.getheader("Content-Length")
    size = int(size) if size and size.isdigit() else expected_size
    print(f"Downloading {dest.name} ({human_size(size)}) from {url}", flush=True)
    digest = hashlib.sha256()
    received = 0
    try:
        with atomic_path(dest) as tmp, open(tmp, "wb") as out:
            with tqdm(total=size, unit="B", unit_scale=True, desc=dest.name, disable=not progress, leave=False) as bar:
                while True:
                    block = response.read(1 << 20)
                    if not block:
                        break
                    out.write(block)
                    digest.update(block)
                    received += len(block)
                    bar.update(len(block))
            out.flush()
            if size is not None and received != size:
                raise DownloadError(f"{url} ended after {received} of {size} bytes")
            if sha256 and not digest.hexdigest().startswith(sha256.lower()):
                raise DownloadError(
                    f"{url} does not match its published checksum (sha256 {digest.hexdigest()[:12]}..., "
                    f"expected {sha256[:12]}...): nothing was kept"
                )
    except (OSError, http.client.HTTPException) as exc:
        raise DownloadError(f"{url} broke off after {received} bytes ({_why(exc, connect_timeout, read_timeout)})") from exc
    finally:
        conn.close()
    return dest


def _why(exc: BaseException, connect_timeout: float, read_timeout: float) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return f"no answer within the timeout: {connect_timeout:g} s to connect, {read_timeout:g} s per read"
    return f"{type(exc).__name__}: {exc}"
