"""The link guard's edges: hand-offs to ffmpeg, a deadline and a minimum rate, the host list for every extractor,
ports in the host list, redirects to other schemes, images in video containers.

Real yt-dlp against servers on 127.0.0.0/8 only, with tests/linkserver.py's server and fixtures (``loopback_only``,
used by every test here, fails a test whose process connected outside loopback, or during which any process tried to
leave the loopback-only namespace). "Public" is 127.0.0.2 (linkserver's ``pretend_public``); a name's answers are
faked in this process only (:func:`linkserver.fake_dns`), so ffmpeg, a process of its own, would resolve it to
127.0.0.1 by itself.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO
from linkserver import CLIPS, EXAMPLE, Handler, fake_dns, fetch_error, leftovers, pair, stop

from benchmarks.launcher import launched_app
from har.errors import FetchError, VideoError
from har.links.fetch import FetchLimits, check_url, download
from har.links.hosts import norm_entry
from har.links.netguard import Guard
from har.media.video import probe
from har.settings import Settings, SettingsError

pytestmark = pytest.mark.usefixtures("loopback_only")  # tests/linkserver.py: loopback only, limits at their defaults

DRIP_FOR_S = 20  # longest a drip answer lasts (unless cut short): every request loop of these tests ends by itself
HEX_ID = "0123456789abcdef0123456789abcdef"


class _Edges(Handler):
    """linkserver's files and endpoints, plus: an encrypted HLS stream, a drip feed, redirects to other schemes,
    hosts and ports, and a page yt-dlp's Mediasite extractor (which accepts links to any host) takes for its own."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        port = self.server.server_port
        redirects = {
            "/redirect/file": "file:///etc/passwd",
            "/redirect/ftp": "ftp://127.0.0.1/x.mp4",
            "/redirect/elsewhere": f"http://elsewhere.test:{port}/short.mp4",
            "/redirect/other-port": f"http://127.0.0.1:{getattr(self.server, 'other_port', 1)}/short.mp4",
            f"/Mediasite/Play/{HEX_ID}": f"http://elsewhere.test:{port}/short.mp4",
        }
        if self.path in redirects:
            self.server.paths.append(self.path)
            self.send_response(302)
            self.send_header("Location", redirects[self.path])
            self.end_headers()
        elif self.path == "/encrypted.m3u8":  # AES-128: yt-dlp's own downloader hands it to ffmpeg
            self.server.paths.append(self.path)
            body = (b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:5\n"
                    b'#EXT-X-KEY:METHOD=AES-128,URI="key.bin"\n#EXTINF:5.0,\nsegment0.ts\n#EXT-X-ENDLIST\n')
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.apple.mpegurl")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/drip.mp4":  # a large file sent a byte every 0.1 s, never finished
            self.server.paths.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            t0 = time.monotonic()
            try:
                while time.monotonic() - t0 < DRIP_FOR_S and not self.server.cut_drips.is_set():
                    self.wfile.write(b"\0")
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:  # the client hung up
                pass
            self.close_connection = True
        else:
            super().do_GET()


@pytest.fixture
def edges(server):
    """``(here, public)``: the edge endpoints on 127.0.0.1 and the same files on 127.0.0.2, on the same port. Setting
    a server's ``cut_drips`` ends its drip answers at once, unfinished, as at the end of ``DRIP_FOR_S``."""
    here, public = pair(server, _Edges)
    for httpd in (here, public):
        httpd.cut_drips = threading.Event()
    yield here, public
    stop(here, public)


def _at(httpd, path: str, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{httpd.server_port}{path}"


# --- 1. ffmpeg reads only through the relay -------------------------------------------------------------------


def test_a_stream_handed_to_ffmpeg_is_refused_before_ffmpeg_connects(edges, pretend_public, tmp_path, monkeypatch):
    """An HLS stream with AES-128 (no pycryptodomex here): yt-dlp's own downloader would hand the whole download to
    ffmpeg, which would resolve 'localhost' itself (127.0.0.1, the server's own network) after our checks of it
    (127.0.0.2, "public"). The hand-off is refused, ffmpeg never connects, and the message says what happened."""
    here, public = edges
    given = fake_dns(monkeypatch, "localhost", lambda: "127.0.0.2")
    limits = FetchLimits(allowed_hosts=("*:*",), retries=0)
    error = fetch_error(f"http://localhost:{here.server_port}/encrypted.m3u8", limits=limits)
    assert here.paths == [], f"ffmpeg reached 127.0.0.1 by itself: {here.paths}"
    assert "/encrypted.m3u8" in public.paths and set(given) == {"127.0.0.2"}
    assert re.search(r"^This link offers the video only as an HLS stream \(protocol m3u8_native\) .* hand to "
                     r"ffmpeg .* outside this server's checks, so the download was refused", error), error
    assert "section" not in error
    assert leftovers(tmp_path) == []


# --- 2. a deadline and a minimum rate; nothing left behind ---------------------------------------------------


def test_a_drip_feed_is_stopped_at_the_deadline_retries_included(edges, tmp_path, monkeypatch):
    here, _ = edges
    for name, value in {"HAR_ALLOWED_HOSTS": "127.0.0.1:*", "HAR_FETCH_DEADLINE_S": "2", "HAR_FETCH_RETRIES": "3",
                        "HAR_FETCH_TIMEOUT_S": "5"}.items():
        monkeypatch.setenv(name, value)
    t0 = time.monotonic()
    with pytest.raises(FetchError, match=r"^The download took longer than the 2 s this server allows for one link "
                                         r"\(HAR_FETCH_DEADLINE_S, retries included\)"):
        download(_at(here, "/drip.mp4"), tmp_path / "out")
    assert time.monotonic() - t0 < 6
    assert here.paths.count("/drip.mp4") <= 2  # the details, then the download: no retry once stopped
    assert list((tmp_path / "out").iterdir()) == [] and leftovers(tmp_path) == []


def test_a_transfer_below_the_minimum_rate_is_stopped(edges, tmp_path):
    here, _ = edges
    limits = FetchLimits(allowed_hosts=("127.0.0.1:*",), min_rate_kb_s=1, rate_window_s=1.5, deadline_s=30)
    t0 = time.monotonic()
    with pytest.raises(FetchError, match=r"^The site sent the video too slowly: 0\.0 kB in the last 1\.5 s, less "
                                         r"than the 1 kB/s this server requires \(HAR_FETCH_MIN_RATE_KB_S\)"):
        download(_at(here, "/drip.mp4"), tmp_path / "out", limits=limits)
    assert time.monotonic() - t0 < 6
    assert leftovers(tmp_path) == []
    # at a normal speed the same limits let a file through
    assert download(_at(here, "/short.mp4"), tmp_path / "out", limits=limits).is_file()


@pytest.mark.parametrize("command", ["download", "predict"])
def test_the_cli_stopped_with_sigterm_leaves_no_folder(edges, tmp_path, command):
    here, _ = edges
    tmp = tmp_path / "cli-tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAR_")}
    env.update({"HAR_ALLOWED_HOSTS": "127.0.0.1:*", "TMPDIR": str(tmp)})
    args = [_at(here, "/drip.mp4"), "--out", str(tmp_path / "saved")] if command == "download" \
        else [_at(here, "/drip.mp4")]
    proc = subprocess.Popen([sys.executable, "-m", "har", command, *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.monotonic()
        while here.paths.count("/drip.mp4") < 2 and time.monotonic() - t0 < 60 and proc.poll() is None:
            time.sleep(0.1)
        assert here.paths.count("/drip.mp4") == 2, "the CLI never began downloading"
        time.sleep(0.5)
        assert list(tmp.glob("har-fetch-*")), "no download folder while downloading"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert list(tmp.glob("har-fetch-*")) == [], "a download folder was left behind"
    saved = tmp_path / "saved"
    assert not saved.exists() or list(saved.iterdir()) == []


# --- 3. every extractor but the trusted ones keeps to the host list ------------------------------------------


def test_a_redirect_off_the_list_is_refused_whatever_extractor_handles_the_link(edges, pretend_public, tmp_path,
                                                                                monkeypatch):
    """yt-dlp's Mediasite extractor takes links on any host; its page redirects to a host not on the list (which
    resolves to a "public" address, so the address rule alone would let it through)."""
    here, public = edges
    fake_dns(monkeypatch, "elsewhere.test", lambda: "127.0.0.2")
    limits = FetchLimits(allowed_hosts=("127.0.0.1:*",), retries=0)
    error = fetch_error(_at(here, f"/Mediasite/Play/{HEX_ID}"), limits=limits)
    assert f"/Mediasite/Play/{HEX_ID}" in here.paths
    assert public.paths == [], f"the redirect was followed: {public.paths}"
    assert re.search(r"^The link led \(a redirect from '127\.0\.0\.1'\) to 'elsewhere\.test', which is not an "
                     r"allowed host", error), error


def test_trusted_extractors_still_stay_on_the_list_across_a_redirect():
    """YouTube's extractors may reach hosts off the list (its CDN), but no redirect leads off the list."""
    guard = Guard(("www.youtube.com",), strict=False)
    with pytest.raises(OSError, match=r"redirect from 'www\.youtube\.com'\) to 'elsewhere\.test', which is not"):
        guard.check_redirect("https://www.youtube.com/watch?v=x", "https://elsewhere.test/")
    guard.check_redirect("https://r1.googlevideo.com/videoplayback", "https://r2.googlevideo.com/videoplayback")
    assert guard.refusal and "elsewhere.test" in guard.refusal


# --- 4. ports in the host list -------------------------------------------------------------------------------


def test_a_host_without_a_port_allows_80_and_443_only(edges, tmp_path):
    here, _ = edges
    port = here.server_port
    with pytest.raises(FetchError, match=rf"^The link goes to '127\.0\.0\.1' on port {port}, which is not an allowed "
                                         rf"port .*ports 80 and 443 only\).*add '127\.0\.0\.1:{port}' to "
                                         r"HAR_ALLOWED_HOSTS"):
        download(_at(here, "/short.mp4"), tmp_path / "out", limits=FetchLimits(allowed_hosts=("127.0.0.1",)))
    with pytest.raises(FetchError, match=r"on port \d+, which is not an allowed port"):
        check_url(_at(here, "/short.mp4"), FetchLimits(allowed_hosts=(f"127.0.0.1:{port + 1}",)))
    assert here.paths == []
    assert check_url("http://127.0.0.1/x.mp4", FetchLimits(allowed_hosts=("127.0.0.1",)))
    assert check_url("https://127.0.0.1/x.mp4", FetchLimits(allowed_hosts=("127.0.0.1",)))
    path = download(_at(here, "/short.mp4"), tmp_path / "out", limits=FetchLimits(allowed_hosts=(f"127.0.0.1:{port}",)))
    assert path.is_file()


def test_a_redirect_to_another_port_of_an_allowed_host_is_refused(edges, server, tmp_path):
    here, _ = edges
    here.other_port = server.server_port
    before = list(server.paths)
    limits = FetchLimits(allowed_hosts=(f"127.0.0.1:{here.server_port}",), retries=0)
    error = fetch_error(_at(here, "/redirect/other-port"), limits=limits)
    assert server.paths == before, "the other port was reached"
    assert re.search(rf"to '127\.0\.0\.1' on port {server.server_port}, which is not an allowed port", error), error


def test_host_entries_are_parsed_with_their_ports():
    assert [norm_entry(e) for e in ("Example.COM:8080", "[::1]:8443", "[::1]", "::1", "*.Example.org:*", "*:*")] \
        == ["example.com:8080", "[::1]:8443", "::1", "::1", "*.example.org:*", "*:*"]
    limits = FetchLimits(allowed_hosts=("[::1]:8443", "*.example.org:*"))
    assert check_url("https://[::1]:8443/x.mp4", limits)
    with pytest.raises(FetchError, match=r"'::1' on port 8444"):
        check_url("https://[::1]:8444/x.mp4", limits)
    assert Settings.from_env({"HAR_ALLOWED_HOSTS": "a.test:81, b.test"}).allowed_hosts == ("a.test:81", "b.test")
    with pytest.raises(SettingsError, match=r"^HAR_ALLOWED_HOSTS='a\.test:99999' is not a list of hosts: "
                                            r"'a\.test:99999' has no valid port"):
        Settings.from_env({"HAR_ALLOWED_HOSTS": "a.test:99999"})


# --- refusals that say what they refused ---------------------------------------------------------------------


@pytest.mark.parametrize(("endpoint", "scheme"), [("/redirect/file", "file"), ("/redirect/ftp", "ftp")])
def test_a_redirect_to_another_scheme_is_refused_as_such(edges, tmp_path, endpoint, scheme):
    here, _ = edges
    error = fetch_error(_at(here, endpoint), limits=FetchLimits(allowed_hosts=("127.0.0.1:*",), retries=0))
    assert re.search(rf"^The link led \(a redirect from '127\.0\.0\.1'\) to a {scheme}:// address .*only http:// "
                     r"and https:// addresses are fetched", error), error


def _tiff(path: Path) -> Path:
    """A 2x2 grey TIFF image, written by hand (little-endian, one strip, uncompressed)."""
    entries = [(256, 3, 1, 2), (257, 3, 1, 2), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1), (273, 4, 1, 8),
               (277, 3, 1, 1), (278, 3, 1, 2), (279, 4, 1, 4)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + b"\0\0\0\0"
    path.write_bytes(b"II*\0" + struct.pack("<I", 12) + b"\x40\x80\xc0\xff" + ifd)
    return path


def test_an_image_named_as_a_video_is_refused(tmp_path):
    fake = _tiff(tmp_path / "still.mp4")
    with pytest.raises(VideoError, match=r"still\.mp4.* is a TIFF image, not a video"):
        probe(fake)
    shutil.copyfile(CLIPS["short.mp4"], tmp_path / "real.mp4")
    assert probe(tmp_path / "real.mp4").frame_count > 1


# --- the app: a slow link delays its own visitor only ---------------------------------------------------------


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The app with one recognition and one download at a time, allowed to fetch from 127.0.0.1 (any port), a drip
    stopped by neither the minimum rate nor the deadline while a test looks, and no retry."""
    env = {"HAR_ALLOWED_HOSTS": "127.0.0.1:*", "HAR_CONCURRENCY": "1", "HAR_MAX_DOWNLOADS": "1",
           "HAR_FETCH_RETRIES": "0", "HAR_FETCH_MIN_RATE_KB_S": "0.001", "HAR_FETCH_DEADLINE_S": "120"}
    with launched_app(tmp_path_factory.mktemp("app"), env) as launched:
        yield launched


@pytest.mark.slow
def test_a_slow_link_delays_no_other_visitor(app, edges, tmp_path):
    """One recognition at a time, one download at a time: a drip-fed link downloads while another visitor's upload
    is answered (within one recognition), and a second link is told "busy" at once instead of queueing."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    here, _ = edges
    visitor = Client(app.url, verbose=False, download_files=str(tmp_path / "downloads"))
    t0 = time.monotonic()
    visitor.predict(video=handle_file(EXAMPLE), api_name="/recognize")
    one = time.monotonic() - t0  # one recognition, alone

    slow = Client(app.url, verbose=False).submit(url=_at(here, "/drip.mp4"), api_name="/recognize")
    t0 = time.monotonic()
    while here.paths.count("/drip.mp4") < 2 and time.monotonic() - t0 < 30:
        time.sleep(0.1)
    assert here.paths.count("/drip.mp4") == 2, "the link never began downloading"

    t0 = time.monotonic()
    with pytest.raises(AppError, match=r"^Busy: this server is already downloading 1 link, as many as it "
                                       r"downloads at once \(HAR_MAX_DOWNLOADS\)"):
        Client(app.url, verbose=False).predict(url=_at(here, "/short.mp4"), api_name="/recognize")
    assert time.monotonic() - t0 < 10
    t0 = time.monotonic()
    top, *_ = visitor.predict(video=handle_file(EXAMPLE), api_name="/recognize")
    waited = time.monotonic() - t0
    assert top["label"] == "Surfing"
    assert not slow.done(), "the drip-fed link ended before the other visitor's answer: nothing was shown"
    assert waited < 2 * one + 3, f"the upload took {waited:.1f} s during the slow link, {one:.1f} s alone"
    here.cut_drips.set()  # what was to be seen is seen: the drip ends now rather than after DRIP_FOR_S
    with pytest.raises(AppError):  # the drip ends unfinished: that visitor gets an error of its own
        slow.result(timeout=60)
    assert not list(app.tmp.glob("har-fetch-*")), "a download folder was left behind"


@pytest.mark.slow
@pytest.mark.parametrize(("api_name", "payload", "message"), [
    ("/recognize", {"url": "http://127.0.0.1:1/x.mp4", "start_s": "soon"},
     r"^From second \(links only; 0: the start\): 'soon' is not a number of seconds\.$"),
    ("/recognize", {"url": "http://127.0.0.1:1/x.mp4", "end_s": [3]}, r"^To second .*'\[3\]' is not a number"),
    ("/recognize", {"video": "clip.mp4"}, r"^video: the request's value is not a file \(send files with "
                                          r"gradio_client's handle_file\(path\)\)\.$"),
    ("/recognize", {"video": {"meta": {"_type": "gradio.FileData"}}}, r"^video: the request's value is not a file"),
    ("/test_many", {"files": "clip.mp4"}, r"^files: the request's value is not a list of files"),
])
def test_a_malformed_payload_is_answered_with_what_was_wrong(app, api_name, payload, message):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=message):
        Client(app.url, verbose=False).predict(api_name=api_name, **payload)
