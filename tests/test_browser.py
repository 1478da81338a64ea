"""The real page in headless Chromium: Debian's ``/usr/bin/chromium`` driven by Playwright (which never downloads a
browser here). Upload a clip and run it, click an example, open Compare models; each test saves a full-page
screenshot under ``artifacts/screenshots/`` (git-ignored) for a human to look at; the upload test also takes the
README's picture of the app (``HAR_README_SCREENSHOT``). A missing Chromium fails: CI
installs it (README's test command), and these tests are part of CI.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from conftest import REPO, unsure_clip
from playwright.sync_api import expect, sync_playwright

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = Path(os.environ.get("HAR_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
SHOTS = REPO / "artifacts" / "screenshots"
# The README's picture of the app: HAR_README_SCREENSHOT=docs/images/app.png python -m pytest tests/test_browser.py
README_SHOT = Path(os.environ.get("HAR_README_SCREENSHOT") or SHOTS / "readme.png")
UPLOAD = ("PlayingPiano", REPO / "examples" / "v_PlayingPiano_g18_c02.mp4")  # shipped, from a test group
EXAMPLE = "Surfing"  # the example button clicked (its clip is from a test group too)
RESULT_TIMEOUT_MS = 120_000  # the first request of a session also warms the caches


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} not found: install Debian's Chromium (apt-get install -y chromium); the browser "
                    "tests drive it and never download a browser.")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, app_server):
    """A fresh page on the app; fails the test if the page raised a JavaScript error."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto(app_server.url)
    expect(pg.locator("#recognize")).to_be_visible(timeout=30_000)
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def heading(pg, elem_id: str):
    return pg.locator(f"#{elem_id} [data-testid='label-output-value']")


def expect_timeline(pg) -> None:
    plot = pg.locator("#timeline .js-plotly-plot")
    expect(plot).to_be_visible()
    expect(plot.locator(".scatterlayer .trace")).to_have_count(6)  # one probability line per class
    expect(plot.locator(".legendtext").first).to_be_visible()


def test_upload_a_clip_run_it_and_see_label_and_timeline(page):
    label, clip = UPLOAD
    # before any result, no empty result box is shown
    for elem_id in ("label-a", "label-b", "annotated", "timeline", "segments", "result-json", "explanation"):
        expect(page.locator(f"#{elem_id}")).to_be_hidden()
    page.locator("#video-in input[type=file]").set_input_files(str(clip))
    expect(page.locator("#video-in video")).to_be_visible(timeout=30_000)  # the upload is in
    page.click("#recognize")
    expect(heading(page, "label-a")).to_have_text(label, timeout=RESULT_TIMEOUT_MS)
    expect_timeline(page)
    expect(page.locator("#annotated video")).to_be_visible()
    expect(page.locator("#segments")).to_contain_text(label)
    expect(page.locator("#result-json")).to_contain_text(".json")
    for elem_id in ("label-b", "explanation"):  # one model, no explanation asked: nothing to show there
        expect(page.locator(f"#{elem_id}")).to_be_hidden()
    page.screenshot(path=SHOTS / "recognize-upload.png", full_page=True)
    README_SHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=README_SHOT)  # the first screen: input, labels, annotated copy


def test_a_clip_of_none_of_the_actions_shows_the_open_set_notice(page, tmp_path):
    page.locator("#video-in input[type=file]").set_input_files(str(unsure_clip(tmp_path)))
    expect(page.locator("#video-in video")).to_be_visible(timeout=30_000)
    page.click("#recognize")
    notice = page.locator("#notice")
    # the visitor reads the Markdown rendered: the open-set verdict in bold, then the closest action; no number
    expect(notice.locator("strong")).to_have_text("This video doesn't look like any of the actions LRCN knows",
                                                  timeout=RESULT_TIMEOUT_MS)
    expect(notice).to_have_text(re.compile(r"^\s*This video doesn't look like any of the actions LRCN knows; "
                                           r"closest: [A-Za-z]+\.\s*$"))
    expect_timeline(page)
    page.screenshot(path=SHOTS / "recognize-unsure.png", full_page=True)


def test_one_click_on_an_example_runs_it(page):
    page.get_by_text(EXAMPLE, exact=True).click()
    expect(heading(page, "label-a")).to_have_text(EXAMPLE, timeout=RESULT_TIMEOUT_MS)
    expect_timeline(page)
    page.screenshot(path=SHOTS / "recognize-example.png", full_page=True)


def test_compare_models_renders_curves_heatmaps_and_frames(page):
    page.get_by_role("tab", name="Compare models").click()
    curves = page.locator("#curves .js-plotly-plot")
    expect(curves).to_be_visible(timeout=30_000)
    # train and validation, loss and accuracy, for both models
    assert curves.locator(".scatterlayer .trace").count() >= 8
    heatmaps = page.locator("#confusion .js-plotly-plot .heatmaplayer image")
    expect(heatmaps).to_have_count(2)
    expect(page.locator("#per-class .js-plotly-plot .barlayer .trace").first).to_be_visible()
    expect(page.locator("#summary")).to_contain_text("ConvLSTM")
    expect(page.locator("#frames img")).to_be_visible()
    for name in ("lrcn", "convlstm"):  # the stored explanations of the examples (python -m har explain)
        expect(page.locator(f"#explained-{name} img")).to_be_visible()
    page.screenshot(path=SHOTS / "compare-models.png", full_page=True)
    page.get_by_role("tab", name="About").click()
    expect(page.get_by_text("What the models cannot do.")).to_be_visible()
    page.screenshot(path=SHOTS / "about.png", full_page=True)


def test_explain_adds_the_strip_and_the_words(page):
    page.locator("#explain input[type=checkbox]").check()
    page.get_by_text("PlayingViolin", exact=True).click()
    expect(page.locator("#explanation img")).to_be_visible(timeout=RESULT_TIMEOUT_MS)
    expect(page.locator("#explanation-words")).to_contain_text("LRCN (")
    expect(page.locator("#explanation-words")).to_contain_text("relied most on")
    page.screenshot(path=SHOTS / "recognize-explain.png", full_page=True)


def test_test_many_fills_a_table_and_offers_the_csv(page):
    clips = sorted((REPO / "examples").glob("v_*.mp4"))[:3]
    label = {p.name: p.stem.split("_")[1] for p in clips}
    page.get_by_role("tab", name="Test many").click()
    page.locator("#batch-files input[type=file]").set_input_files([str(p) for p in clips])
    expect(page.locator("#batch-files")).to_contain_text(clips[-1].stem, timeout=30_000)  # the uploads are in
    lines = "\n".join(f"{p.name}, {label[p.name]}" for p in clips) + "\nhttps://example.com/clip.mp4"
    page.locator("#batch-links textarea").fill(lines)
    page.click("#batch-run")
    summary = page.locator("#batch-summary")
    expect(summary).to_contain_text("4 videos: 3 answered, 1 refused.", timeout=RESULT_TIMEOUT_MS)
    expect(summary).to_contain_text("Accuracy against the expected labels: 3 of 3 (100.0%)")
    table = page.locator("#batch-table")
    for p in clips:
        expect(table).to_contain_text(p.name)
    expect(table).to_contain_text("✓")
    expect(table).to_contain_text("not an allowed host")
    expect(page.locator("#batch-csv a")).to_have_attribute("href", re.compile(r"results\.csv$"))
    page.screenshot(path=SHOTS / "test-many.png", full_page=True)


def test_teach_an_action_then_recognize_it_with_the_taught_model(page):
    """The Teach tab in the page: name an action, upload three clips of it, teach; the Recognize tab then offers the
    taught model, which answers a clip of another group with the new action."""
    other = REPO.parent / "shared" / "data" / "other-actions" / "Biking"
    if not other.is_dir():
        pytest.fail(f"{other} not found: the shared data's other actions are needed")
    clips = sorted(other.glob("v_Biking_*.mp4"))
    groups = sorted({p.stem.split("_")[2] for p in clips})
    examples = [p for p in clips if p.stem.split("_")[2] != groups[-1]][:3]
    held_out = next(p for p in clips if p.stem.split("_")[2] == groups[-1])
    page.get_by_role("tab", name="Teach").click()
    page.locator("#teach-name input, #teach-name textarea").first.fill("Biking")
    page.locator("#teach-files input[type=file]").set_input_files([str(p) for p in examples])
    expect(page.locator("#teach-files")).to_contain_text(examples[-1].stem, timeout=30_000)  # the uploads are in
    page.click("#teach-run")
    expect(page.locator("#teach-message")).to_contain_text("7 actions", timeout=RESULT_TIMEOUT_MS)
    expect(page.locator("#teach-zip a")).to_have_attribute("href", re.compile(r"\.zip$"))
    page.screenshot(path=SHOTS / "teach.png", full_page=True)

    page.get_by_role("tab", name="Recognize").click()
    page.locator("#model").get_by_label("LRCN + Biking").check()  # offered to this visitor now
    page.locator("#video-in input[type=file]").set_input_files(str(held_out))
    expect(page.locator("#video-in video")).to_be_visible(timeout=30_000)
    page.click("#recognize")
    expect(heading(page, "label-a")).to_have_text("Biking", timeout=RESULT_TIMEOUT_MS)
