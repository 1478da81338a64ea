"""har.settings: every HAR_* setting documented in docs/app.md, parsed with one error style, read once."""

from __future__ import annotations

import dataclasses
import re

import pytest
from conftest import REPO

from har.settings import Settings, SettingsError, env_name, settings

FIELDS = [f.name for f in dataclasses.fields(Settings)]
# A value each setting refuses, and the words that say what it accepts.
BAD = {
    "runtime": ("tflite", "one of auto, keras, onnx, onnx-int8"),
    "concurrency": ("two", "a whole number of at least 1"),
    "queue_size": ("0", "a whole number of at least 1"),
    "max_upload_mb": ("1.5", "a whole number of at least 1"),
    "max_batch": ("-3", "a whole number of at least 1"),
    "max_cache_mb": ("lots", "a positive number of megabytes"),
    "docs_url": ("docs/", "an http(s) address"),
    "max_video_seconds": ("-5", "a positive number of seconds"),
    "max_download_mb": ("inf", "a positive number of megabytes"),
    "ytdlp_cookies": ("/no/such/cookies.txt", "a file: export a cookies.txt file"),
    "fetch_timeout_s": ("0", "a positive number of seconds"),
    "fetch_retries": ("-1", "a whole number of at least 0"),
    "fetch_deadline_s": ("-1", "a positive number of seconds"),
    "fetch_min_rate_kb_s": ("0", "a positive number of kilobytes a second"),
    "max_downloads": ("0", "a whole number of at least 1"),
    "allowed_hosts": ("example.com:0", "a list of hosts: 'example.com:0' has no valid port"),
    "teach_models": ("0", "a whole number of at least 1"),
    "teach_minutes": ("soon", "a positive number of minutes"),
    "teach_examples": ("2.5", "a whole number of at least 1"),
}
FREE_TEXT = {"models_dir", "cache_dir"}  # any text is a folder


def test_every_setting_is_documented_in_docs_app_md():
    doc = (REPO / "docs" / "app.md").read_text()
    rows = {m.group(1) for m in re.finditer(r"^\| `(HAR_[A-Z_]+)` \|", doc, re.MULTILINE)}
    assert rows == {env_name(f) for f in FIELDS}


def test_every_setting_is_checked_here_or_takes_any_text():
    assert set(BAD) | FREE_TEXT == set(FIELDS) and not set(BAD) & FREE_TEXT


@pytest.mark.parametrize("field", sorted(BAD))
def test_a_bad_value_of_each_setting_is_refused_in_one_style(field):
    value, accepted = BAD[field]
    name = env_name(field)
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({name: value})
    message = str(caught.value)
    assert message.startswith(f"{name}={value!r} is not {accepted}") and message.endswith("."), message


def test_values_are_parsed_and_defaults_kept(tmp_path):
    cookies = tmp_path / "cookies.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n")
    s = Settings.from_env({"HAR_MAX_BATCH": " 25 ", "HAR_MAX_CACHE_MB": "1.5", "HAR_RUNTIME": "keras",
                           "HAR_ALLOWED_HOSTS": " 127.0.0.1, *.Example.org ", "HAR_YTDLP_COOKIES": str(cookies),
                           "HAR_FETCH_RETRIES": "0", "HAR_QUEUE_SIZE": "", "HAR_MODELS_DIR": str(tmp_path)})
    assert (s.max_batch, s.max_cache_mb, s.runtime, s.fetch_retries) == (25, 1.5, "keras", 0)
    assert s.allowed_hosts == ("127.0.0.1", "*.example.org") and s.ytdlp_cookies == cookies
    assert s.models_dir == tmp_path and s.queue_size == 16 and s.concurrency >= 1
    assert Settings.from_env({"SPACE_ID": "someone/har-studio"}).docs_url == \
        "https://huggingface.co/spaces/someone/har-studio/blob/main/docs/"
    assert Settings.from_env({"HAR_DOCS_URL": "https://example.org/docs"}).docs_url == "https://example.org/docs/"
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.max_batch = 3


def test_settings_are_parsed_once_per_environment(monkeypatch):
    monkeypatch.setenv("HAR_MAX_BATCH", "7")
    first = settings()
    assert first.max_batch == 7 and settings() is first  # the same object: parsed once
    monkeypatch.setenv("HAR_MAX_BATCH", "8")
    assert settings().max_batch == 8
