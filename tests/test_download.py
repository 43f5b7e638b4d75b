"""Downloads against servers on 127.0.0.1: a small file served, and a server that accepts and never answers."""

import hashlib
import http.server
import socket
import threading
import time

import pytest

from covidgan_utils import download

PAYLOAD = b"not really VGG16 weights, but bytes with a known sha256" * 100


class _Files(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/weights.pth")
            self.end_headers()
            return
        if self.path != "/weights.pth":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        self.wfile.write(PAYLOAD)

    def log_message(self, *args):
        pass


@pytest.fixture
def file_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_server():
    """Accepts connections and never sends a byte."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(5)
    held = []
    stop = threading.Event()

    def accept():
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    sock.close()


@pytest.fixture(autouse=True)
def online(monkeypatch):
    monkeypatch.delenv(download.ENV_OFFLINE, raising=False)
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)


def test_download_checks_the_hash_and_writes_atomically(file_server, tmp_path, capsys):
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    dest = download.download(f"{file_server}/moved", tmp_path / "w-abc.pth", sha256=digest[:8], progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert f"({download.human_size(len(PAYLOAD))})" in capsys.readouterr().out  # the size is said up front
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w-abc.pth"]


def test_a_wrong_hash_keeps_nothing(file_server, tmp_path):
    dest = tmp_path / "w.pth"
    with pytest.raises(download.DownloadError, match="checksum"):
        download.download(f"{file_server}/weights.pth", dest, sha256="00000000", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_http_errors_and_offline_are_named(file_server, tmp_path, monkeypatch):
    with pytest.raises(download.DownloadError, match="HTTP 404"):
        download.download(f"{file_server}/missing.pth", tmp_path / "m.pth", progress=False)
    monkeypatch.setenv(download.ENV_OFFLINE, "1")
    with pytest.raises(download.DownloadError, match="COVIDGAN_OFFLINE"):
        download.download(f"{file_server}/weights.pth", tmp_path / "w.pth", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_server_that_never_answers_fails_within_the_read_timeout(silent_server, tmp_path):
    start = time.monotonic()
    with pytest.raises(download.DownloadError, match="no answer within the timeout"):
        download.download(f"{silent_server}/weights.pth", tmp_path / "w.pth", read_timeout=1.0, progress=False)
    assert time.monotonic() - start < 10
    assert list(tmp_path.iterdir()) == []


def _vgg16_source(monkeypatch, tmp_path, url):
    """Point the project's VGG16 download at ``url`` (the URL, hash and size are injectable)."""
    from covidgan_utils import transfer

    cache = tmp_path / "hub" / "checkpoints" / "vgg16-test.pth"
    monkeypatch.setattr(transfer, "imagenet_cache_file", lambda: cache)
    monkeypatch.setattr(transfer, "VGG16_URL", url)
    monkeypatch.setattr(transfer, "VGG16_SHA256_PREFIX", hashlib.sha256(PAYLOAD).hexdigest()[:8])
    monkeypatch.setattr(transfer, "VGG16_BYTES", len(PAYLOAD))
    return transfer, cache


def test_imagenet_weights_are_fetched_into_the_cache_and_checked(file_server, tmp_path, monkeypatch):
    transfer, cache = _vgg16_source(monkeypatch, tmp_path, f"{file_server}/weights.pth")
    assert transfer.fetch_imagenet_weights(progress=False) == cache and cache.read_bytes() == PAYLOAD
    with pytest.raises(Exception, match="weights_only|Unpickl|pickle|invalid load key"):
        transfer.build_vgg16("imagenet", verbose=False)  # the bytes arrived; they are no state_dict (and never unpickled)


def test_auto_falls_back_to_random_loudly_within_the_timeout(silent_server, tmp_path, monkeypatch, capsys):
    transfer, cache = _vgg16_source(monkeypatch, tmp_path, f"{silent_server}/vgg16.pth")
    waited = []

    def attempt(*a, **k):  # the download alone is timed: building the random network is CPU work, not waiting
        start = time.monotonic()
        try:
            return download.download(*a, **{**k, "read_timeout": 1.0})
        finally:
            waited.append(time.monotonic() - start)

    monkeypatch.setattr(transfer, "download", attempt)
    model, info = transfer.build_vgg16("auto", verbose=True)
    assert len(waited) == 1 and waited[0] < 15  # a server that never answers costs about the read timeout, not forever
    assert info["used"] == "random" and "no answer within the timeout" in info["note"]
    banner = capsys.readouterr().out
    assert "RANDOM weights" in banner and "not transfer learning" in banner
    assert not cache.exists()
    with pytest.raises(RuntimeError, match="no answer within the timeout"):
        transfer.build_vgg16("imagenet", verbose=False)  # the paper's setting requires the weights
    monkeypatch.setenv(download.ENV_OFFLINE, "1")
    waited.clear()
    _, info = transfer.build_vgg16("auto", verbose=True)
    assert "COVIDGAN_OFFLINE" in info["note"] and all(w < 1 for w in waited)  # offline: no waiting on the network
