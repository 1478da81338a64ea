"""har.links.fetch with the real yt-dlp against local HTTP servers on 127.0.0.0/8 (no other host is ever contacted).

Every test runs under tests/linkserver.py's ``loopback_only``, which records every socket connection made in this
process and fails a test that connects anywhere but the loopback network: refused hosts must be refused before any
connection is attempted. The session runs in a loopback-only network namespace (tests/netns.py), and the same
fixture fails a test during which any process (the CLI, ffmpeg) tried to reach another address. Where a test needs
a host that resolves to a public address, a fake resolver answers 127.0.0.2 and the address rule is told to count
127.0.0.2 as public (linkserver's ``pretend_public``): nothing public is ever contacted.
"""

from __future__ import annotations

import filecmp
import json
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import REPO
from linkserver import CLIPS, GETADDRINFO, fake_dns, fetch_error, leftovers, pair, stop

from har.errors import FetchError
from har.links import options, ytdlp_errors
from har.links.fetch import FetchLimits, check_url, download, fetched, is_url
from har.links.netguard import Guard
from har.media.video import probe
from har.settings import SettingsError

LOCAL = FetchLimits(allowed_hosts=("127.0.0.1:*",))

pytestmark = pytest.mark.usefixtures("loopback_only")  # tests/linkserver.py: loopback only, limits at their defaults


def _url(server, path: str) -> str:
    return f"http://127.0.0.1:{server.server_port}{path}"


# --- rules, without downloading ------------------------------------------------------------------------------


def test_is_url():
    assert is_url("https://youtu.be/abc") and is_url("  ftp://x/y ")
    assert not is_url("clip.mp4") and not is_url("/data/clip.mp4") and not is_url("youtube.com/watch?v=x")


def test_check_url_rules_name_the_rule_that_refused():
    with pytest.raises(FetchError, match="is not a link"):
        check_url("hello world")
    with pytest.raises(FetchError, match="is not a link"):
        check_url("clip.mp4")
    with pytest.raises(FetchError, match=r"Only http:// and https:// .* uses ftp://"):
        check_url("ftp://www.youtube.com/video.mp4")
    with pytest.raises(FetchError, match=r"'example\.com', which is not an allowed host .*HAR_ALLOWED_HOSTS"):
        check_url("https://example.com/video.mp4")
    # The cloud metadata service: not an allowed host by default, and a link-local address even when any is.
    with pytest.raises(FetchError, match="'169.254.169.254', which is not an allowed host"):
        check_url("http://169.254.169.254/latest/meta-data/")
    anyhost = FetchLimits(allowed_hosts=("*:*",))
    with pytest.raises(FetchError, match="'169.254.169.254', a link-local address: links into a local"):
        check_url("http://169.254.169.254/latest/meta-data/", anyhost)
    with pytest.raises(FetchError, match="a loopback address"):
        check_url("http://127.0.0.1:8000/x.mp4", anyhost)
    with pytest.raises(FetchError, match="a private address"):
        check_url("http://192.168.1.1/x.mp4", anyhost)
    with pytest.raises(FetchError, match="a loopback address"):
        check_url("http://[::ffff:127.0.0.1]/x.mp4", FetchLimits(allowed_hosts=("*:*",)))
    # Listed by its exact name: allowed, loopback or not. YouTube's hosts are the default; no DNS for them.
    assert check_url("http://127.0.0.1:8000/x.mp4", LOCAL) == "http://127.0.0.1:8000/x.mp4"
    assert check_url("youtube.com/watch?v=abc") == "https://youtube.com/watch?v=abc"
    assert check_url(" HTTPS://www.YouTube.com/watch?v=abc ") == "https://www.YouTube.com/watch?v=abc"
    assert check_url("https://youtu.be/abc") == "https://youtu.be/abc"


def test_limits_from_env(monkeypatch, tmp_path):
    limits = FetchLimits.from_env()
    assert (limits.max_seconds, limits.max_mb) == (600, 200)
    assert "youtu.be" in limits.allowed_hosts and "music.youtube.com" in limits.allowed_hosts
    assert limits.cookies is None
    cookies = tmp_path / "cookies.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n")
    monkeypatch.setenv("HAR_MAX_VIDEO_SECONDS", "30")
    monkeypatch.setenv("HAR_MAX_DOWNLOAD_MB", "1.5")
    monkeypatch.setenv("HAR_ALLOWED_HOSTS", " 127.0.0.1, *.Example.org ")
    monkeypatch.setenv("HAR_YTDLP_COOKIES", str(cookies))
    limits = FetchLimits.from_env()
    assert (limits.max_seconds, limits.max_bytes) == (30, 1_500_000)
    assert limits.allowed_hosts == ("127.0.0.1", "*.example.org")
    assert limits.cookies == cookies
    monkeypatch.setenv("HAR_MAX_DOWNLOAD_MB", "lots")
    with pytest.raises(SettingsError, match=r"^HAR_MAX_DOWNLOAD_MB='lots' is not a positive number of megabytes\.$"):
        FetchLimits.from_env()
    monkeypatch.setenv("HAR_MAX_DOWNLOAD_MB", "1")
    monkeypatch.setenv("HAR_MAX_VIDEO_SECONDS", "-5")  # the same rule and words as for uploads (har.media.limits)
    with pytest.raises(SettingsError, match=r"^HAR_MAX_VIDEO_SECONDS='-5' is not a positive number of seconds\.$"):
        FetchLimits.from_env()
    monkeypatch.setenv("HAR_MAX_VIDEO_SECONDS", "30")
    monkeypatch.setenv("HAR_YTDLP_COOKIES", str(tmp_path / "missing.txt"))
    with pytest.raises(SettingsError, match=r"^HAR_YTDLP_COOKIES='.*missing.txt' is not a file: export a cookies"):
        FetchLimits.from_env()


def test_youtube_without_js_runtime_says_so(monkeypatch, tmp_path):
    monkeypatch.setattr(ytdlp_errors, "js_runtime", lambda: None)
    with pytest.raises(FetchError, match=r"YouTube links cannot be fetched .*JavaScript runtime .*yt-dlp-ejs"):
        download("https://www.youtube.com/watch?v=aqz-KE-bpKQ", tmp_path / "out")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_section_times_are_checked_first(tmp_path):
    with pytest.raises(FetchError, match=r"end time \(2 s\) must come after the start time \(5 s\)"):
        download("https://youtu.be/abc", tmp_path, start_s=5, end_s=2)
    with pytest.raises(FetchError, match=r"chosen section is 700 s long.*at most 600 s \(HAR_MAX_VIDEO_SECONDS\)"):
        download("https://youtu.be/abc", tmp_path, start_s=100, end_s=800)


# --- real downloads from 127.0.0.1 ---------------------------------------------------------------------------


def test_refused_by_default(server, tmp_path):
    with pytest.raises(FetchError, match=r"'127.0.0.1', which is not an allowed host .*youtube\.com"):
        with fetched(_url(server, "/short.mp4")):
            pass
    assert leftovers(tmp_path) == []


def test_downloaded_when_allowed(server, tmp_path, monkeypatch):
    monkeypatch.setenv("HAR_ALLOWED_HOSTS", "127.0.0.1:*")
    seen: list = []
    with fetched(_url(server, "/short.mp4"), progress=lambda f, m: seen.append((f, m))) as path:
        assert path.is_file() and path.parent.name.startswith("har-fetch-")
        assert filecmp.cmp(path, CLIPS["short.mp4"], shallow=False)  # the bytes served, unchanged
        assert probe(path).frame_count == probe(CLIPS["short.mp4"]).frame_count
        assert len(leftovers(tmp_path)) == 1  # only the directory holding the video
    fractions = [f for f, _ in seen if f is not None]
    assert fractions and fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert any("Downloading" in m for _, m in seen)
    assert leftovers(tmp_path) == []


def test_downloaded_and_recognized_end_to_end(server, tmp_path, cli):
    """The real CLI (in this process, whose connections loopback_only sees): fetch a link from the local server
    (127.0.0.1 allowed) and recognize what it shows."""
    out = cli("predict", _url(server, "/surfing.mp4"), "--json", env={"HAR_ALLOWED_HOSTS": "127.0.0.1:*"})
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["input"] == _url(server, "/surfing.mp4") and result["label"] == "Surfing"
    assert result["top"][0]["label"] == "Surfing" and result["top"][0]["score"] > 0.5
    assert leftovers(tmp_path) == []  # the download's directory is gone


def test_redirect_on_the_same_host_is_followed(server, tmp_path):
    path = download(_url(server, "/redirect/same"), tmp_path / "out", limits=LOCAL)
    assert filecmp.cmp(path, CLIPS["short.mp4"], shallow=False)


@pytest.mark.parametrize(("endpoint", "allowed", "message"), [
    ("/redirect/other-host", ("127.0.0.1:*",),
     r"led \(a redirect from '127\.0\.0\.1'\) to 'not-allowed\.invalid', which is not an allowed host"),
    ("/redirect/private", ("127.0.0.1:*",),
     r"led \(a redirect from '127\.0\.0\.1'\) to '10\.0\.0\.1', which is not an allowed host"),
    ("/redirect/private", ("127.0.0.1:*", "*:*"), r"led to '10\.0\.0\.1', a private address"),
    ("/redirect/link-local", ("127.0.0.1:*", "*:*"), r"led to '169\.254\.169\.254', a link-local address"),
    ("/redirect/localhost", ("127.0.0.1:*", "*:*"), r"led to 'localhost', which resolves to 127\.0\.0\.1, a loopback"),
])
def test_redirect_to_a_refused_host_is_refused(server, tmp_path, endpoint, allowed, message):
    with pytest.raises(FetchError, match=message):
        download(_url(server, endpoint), tmp_path / "out", limits=FetchLimits(allowed_hosts=allowed, retries=0))
    assert list((tmp_path / "out").iterdir()) == [] and leftovers(tmp_path) == []
    # (the autouse fixture checks that no connection left the loopback network)


def test_too_large_is_refused(server, tmp_path, monkeypatch):
    monkeypatch.setenv("HAR_ALLOWED_HOSTS", "127.0.0.1:*")
    monkeypatch.setenv("HAR_MAX_DOWNLOAD_MB", "0.05")
    # Content-Length known: yt-dlp's max_filesize stops before the body.
    with pytest.raises(FetchError, match=r"larger than the 0\.05 MB this server downloads \(HAR_MAX_DOWNLOAD_MB\)"):
        with fetched(_url(server, "/short.mp4")):
            pass
    # No Content-Length: our progress hook stops it as soon as the limit is passed.
    with pytest.raises(FetchError, match=r"larger than the 0\.05 MB this server downloads \(HAR_MAX_DOWNLOAD_MB\)"):
        with fetched(_url(server, "/unsized.mp4")):
            pass
    # A section is cut by ffmpeg, which stops writing at the limit.
    with pytest.raises(FetchError, match=r"larger than the 0\.05 MB this server downloads"):
        with fetched(_url(server, "/long.mp4"), start_s=0, end_s=12):
            pass
    assert leftovers(tmp_path) == []


def test_too_long_is_refused_after_probing(server, tmp_path, monkeypatch):
    monkeypatch.setenv("HAR_ALLOWED_HOSTS", "127.0.0.1:*")
    monkeypatch.setenv("HAR_MAX_VIDEO_SECONDS", "3")
    out = tmp_path / "out"
    # A direct file: yt-dlp cannot know its duration before downloading, so the file is probed and deleted.
    with pytest.raises(FetchError, match=r"The video is 4\.6 s long; this server accepts at most 3\.0 s "
                                         r"\(HAR_MAX_VIDEO_SECONDS\)\. Choose a start and end time"):
        download(_url(server, "/short.mp4"), out)
    assert list(out.iterdir()) == [] and leftovers(tmp_path) == []


def test_section_of_a_long_video(server, tmp_path):
    limits = FetchLimits(allowed_hosts=("127.0.0.1:*",), max_seconds=3)  # the section counts, not the 14.5 s video
    with fetched(_url(server, "/long.mp4"), start_s=5, end_s=7, limits=limits) as path:
        info = probe(path)
        assert 1.8 <= info.duration_s <= 2.3, info  # cut where asked, not at the keyframe before
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(("endpoint", "message"), [
    ("/page.html", r"This site is not supported: yt-dlp found no video"),
    ("/two-videos.html", r"The link is a playlist or a channel: paste the link of a single video"),
    ("/missing.mp4", r"The video is unavailable \(private, removed, or never existed\): HTTP Error 404"),
    ("/slow.mp4", r"Network failure or timeout while fetching the video: .*timed out"),
])
def test_errors_a_user_can_act_on(server, tmp_path, endpoint, message):
    limits = FetchLimits(allowed_hosts=("127.0.0.1:*",), socket_timeout_s=0.5, retries=0)
    with pytest.raises(FetchError, match=message):
        with fetched(_url(server, endpoint), limits=limits):
            pass
    assert leftovers(tmp_path) == []


def test_connection_refused_is_a_network_failure(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(FetchError, match="Network failure or timeout"):
        download(f"http://127.0.0.1:{port}/x.mp4", tmp_path, limits=FetchLimits(allowed_hosts=("127.0.0.1:*",),
                                                                                 retries=0))


def test_the_guard_changes_nothing_in_the_process(server, tmp_path):
    download(_url(server, "/short.mp4"), tmp_path / "out", limits=LOCAL)
    assert socket.getaddrinfo is GETADDRINFO  # no process-wide hook: the guard is the fetch's own request handler
    assert socket.getaddrinfo("10.0.0.1", 80)  # other code in the process resolves as usual


# --- the guard on every thread and every connection (issue 21) -------------------------------------------------


@pytest.fixture
def two_servers(server, tmp_path):
    """``(public, private)``: the same files served on 127.0.0.2 and on 127.0.0.1, on the same port. With
    :func:`pretend_public`, 127.0.0.2 stands for a public address and 127.0.0.1 for the server's own network."""
    private, public = pair(server)
    yield public, private
    stop(public, private)


def test_a_fresh_thread_during_a_fetch_is_checked(server, tmp_path, monkeypatch):
    """A thread started during a fetch inherits nothing from it (as yt-dlp's fragment threads, a connection pool's,
    the relay's): a request it makes through the fetch's yt-dlp is checked all the same."""
    import yt_dlp

    outcome: dict = {}
    secret = f"http://localhost:{server.server_port}/short.mp4?from-a-fresh-thread"
    real = yt_dlp.YoutubeDL.process_ie_result

    def process_ie_result(self, *args, **kwargs):
        def fresh() -> None:
            try:
                with self.urlopen(secret) as res:
                    outcome["result"] = f"connected: HTTP {res.status}"
            except Exception as exc:  # what the request raised, checked below
                outcome["result"] = exc

        thread = threading.Thread(target=fresh)
        thread.start()
        thread.join(30)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(yt_dlp.YoutubeDL, "process_ie_result", process_ie_result)
    # 127.0.0.1 by its exact name (the link itself), any other host by the address rule: 'localhost' is loopback.
    limits = FetchLimits(allowed_hosts=("127.0.0.1:*", "*:*"), retries=0)
    path = download(_url(server, "/short.mp4"), tmp_path / "out", limits=limits)
    assert filecmp.cmp(path, CLIPS["short.mp4"], shallow=False)
    assert "/short.mp4?from-a-fresh-thread" not in server.paths, "the fresh thread's request reached the server"
    refused = outcome.get("result")
    assert isinstance(refused, Exception), refused
    assert re.search(r"refused by HAR Studio: The link led to 'localhost', which resolves to .*, a loopback",
                     str(refused)), str(refused)


def test_a_section_is_read_from_the_checked_address(two_servers, pretend_public, tmp_path, monkeypatch):
    """'localhost' answers a public address (127.0.0.2) to our checks. ffmpeg, which cuts sections, gets it
    through the relay from that very address; resolving the name by itself it would get 127.0.0.1."""
    public, private = two_servers
    given = fake_dns(monkeypatch, "localhost", lambda: "127.0.0.2")
    limits = FetchLimits(allowed_hosts=("*:*",), max_seconds=3, retries=0)
    with fetched(f"http://localhost:{public.server_port}/long.mp4", start_s=5, end_s=7, limits=limits) as path:
        assert 1.8 <= probe(path).duration_s <= 2.3
    assert private.paths == [], f"requests reached the private server: {private.paths}"
    assert "/long.mp4" in public.paths and set(given) == {"127.0.0.2"}


@pytest.mark.parametrize("rebind", ["once ffmpeg starts", "every other answer"])
def test_a_name_that_changes_its_answer_is_refused(two_servers, pretend_public, tmp_path, monkeypatch, rebind):
    """DNS rebinding: the name answers a public address to the first checks, then the server's own network (once
    ffmpeg is about to connect, or every other time). No connection may go to 127.0.0.1, ffmpeg's included."""
    from yt_dlp.downloader.external import FFmpegFD

    public, private = two_servers
    started = {"ffmpeg": False}
    calls = iter(range(10**6))

    def answer() -> str:
        if rebind == "once ffmpeg starts":
            return "127.0.0.1" if started["ffmpeg"] else "127.0.0.2"
        return "127.0.0.2" if next(calls) % 2 == 0 else "127.0.0.1"

    given = fake_dns(monkeypatch, "localhost", answer)
    real_call = FFmpegFD._call_downloader

    def call_downloader(self, *args, **kwargs):
        started["ffmpeg"] = True
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(FFmpegFD, "_call_downloader", call_downloader)
    limits = FetchLimits(allowed_hosts=("*:*",), max_seconds=3, retries=0)
    error = fetch_error(f"http://localhost:{public.server_port}/long.mp4", start_s=5, end_s=7, limits=limits)
    assert private.paths == [], f"requests reached the private server: {private.paths}"
    assert "127.0.0.1" in given  # the name did change its answer
    assert re.search(r"^The link led to 'localhost', which resolves to 127\.0\.0\.1, a loopback address", error), error
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(("endpoint", "message"), [
    ("/segments.m3u8", r"^This video is only offered in a form that cannot be cut into a section here"),
    ("/playlist-as.mp4", r"^ffmpeg could not cut a section from what this link gave: it is not a video file"),
])
def test_ffmpeg_opens_no_url_of_its_own(server, tmp_path, endpoint, message):
    """A section whose media is a playlist (HLS), declared as such or disguised as an MP4 file: ffmpeg would fetch
    its segments from wherever the playlist says, here a refused host ('localhost', loopback, not listed)."""
    limits = FetchLimits(allowed_hosts=("127.0.0.1:*",), max_seconds=5, retries=0)
    error = fetch_error(_url(server, endpoint), start_s=1, end_s=3, limits=limits)
    assert "/segment0.ts" not in server.paths, "ffmpeg fetched a segment by itself"
    assert re.search(message, error), error
    assert leftovers(tmp_path) == []


def test_live_streams_and_known_durations_are_refused_before_downloading():
    job = options.Job("https://youtu.be/x", FetchLimits(max_seconds=60), Guard(FetchLimits().allowed_hosts, False),
                     None, None, lambda f, m: None)
    with pytest.raises(FetchError, match="live stream"):
        job.match_filter({"id": "x", "live_status": "is_live"}, incomplete=True)
    with pytest.raises(FetchError, match=r"The video is 90 s long; this server accepts at most 60 s"):
        job.match_filter({"id": "x", "duration": 90}, incomplete=True)
    section = options.Job("https://youtu.be/x", FetchLimits(max_seconds=60), job.guard, 3000, None,
                         lambda f, m: None)
    with pytest.raises(FetchError, match=r"chosen section is 600 s long"):  # from 3000 s to the end
        section.match_filter({"id": "x", "duration": 3600}, incomplete=True)
    with pytest.raises(FetchError, match=r"start time \(3000 s\) is past the end of the video"):
        section.match_filter({"id": "x", "duration": 120}, incomplete=True)
    with pytest.raises(FetchError, match=r"The video is 250 MB, more than the 200 MB"):
        job.match_filter({"id": "x", "duration": 30, "filesize_approx": 250e6}, incomplete=False)


@pytest.mark.parametrize(("message", "expected"), [
    # yt-dlp's own wording for YouTube's refusals, raised as its real exception classes.
    ("Sign in to confirm you’re not a bot. Use --cookies-from-browser or --cookies for the authentication.",
     r"YouTube asked for a sign-in or a check that this server is not a bot\. .*datacenter.*HAR_YTDLP_COOKIES"),
    ("Sign in to confirm your age. This video may be inappropriate for some users.",
     r"age-restricted.*HAR_YTDLP_COOKIES"),
    ("Private video. Sign in if you've been granted access to this video. Use --cookies-from-browser or --cookies",
     r"unavailable \(private, removed, or never existed\): Private video"),
    ("Video unavailable. This video has been removed by the uploader", r"unavailable \(private, removed"),
    ("Requested format is not available. Use --list-formats for a list of available formats",
     r"YouTube offered no downloadable format"),
])
def test_youtube_errors_become_messages_a_user_can_act_on(message, expected):
    from yt_dlp.utils import DownloadError, ExtractorError

    try:  # as YoutubeDL.report_error raises it: the extractor's error in exc_info
        raise ExtractorError(message, expected=True, video_id="aqz-KE-bpKQ", ie="youtube")
    except ExtractorError:
        error = DownloadError(f"ERROR: [youtube] aqz-KE-bpKQ: {message}", sys.exc_info())
    explained = ytdlp_errors.explain(error, Guard(FetchLimits().allowed_hosts, False), "Youtube")
    assert isinstance(explained, FetchError)
    assert re.search(expected, str(explained)), str(explained)


# --- command line --------------------------------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HAR_")}
    return subprocess.run([sys.executable, "-m", "har", *args], cwd=REPO, env={**clean, **env},
                          capture_output=True, text=True, timeout=120)


def test_cli_download(server, tmp_path):
    out = tmp_path / "saved"
    run = _cli("download", _url(server, "/long.mp4"), "--out", str(out), "--start", "2", "--end", "4",
               env={"HAR_ALLOWED_HOSTS": "127.0.0.1:*"})
    assert run.returncode == 0, run.stderr
    path = Path(run.stdout.strip().splitlines()[-1])
    assert path.parent == out and path.is_file() and 1.8 <= probe(path).duration_s <= 2.3
    assert [p for p in out.iterdir()] == [path]  # no partial or cookie files beside it

    run = _cli("download", _url(server, "/short.mp4"), "--out", str(out), env={})
    assert run.returncode == 1 and run.stdout == ""
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "'127.0.0.1', which is not an allowed host" in errors[0], run.stderr
    assert "Traceback" not in run.stderr
