"""The offline viewer in a real headless browser (Debian's chromium + chromedriver, driven by Selenium).

No browser is downloaded: Selenium gets the chromium binary and the chromedriver explicitly (so
selenium-manager never runs). `.ci/run` installs the Debian packages when they are missing.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from qwen3_scope.export.config import ExportConfig
from qwen3_scope.export.job import read_batches, run_export

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def viewer(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("viewer_export")
    result = run_export(
        ExportConfig(
            out=out,
            release="qwen3-instruct-sae",
            ids="organism/(mlp_out|resid_post)/layer_2",
            n_prompts=48,
            html=True,
            progress=False,
        )
    )
    return out, result


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.fail(
            "the viewer test needs Debian's chromium and chromium-driver packages: apt-get install -y chromium chromium-driver "
            "(.ci/run installs them)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,1100",
        "--disable-gpu",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_viewer_site_is_self_contained(viewer):
    out, result = viewer
    site = out / "viewer"
    html = (site / "index.html").read_text()
    assert result.viewer == site / "index.html"
    for text in [html] + [p.read_text() for p in site.glob("*.js")] + [(site / "viewer.css").read_text()]:
        assert (
            "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text
        )  # no CDN, no server
    assert sorted(p.name for p in (site / "data").iterdir()) == ["index.js", "sae-0.js", "sae-1.js"]


def test_viewer_renders_a_feature_in_a_real_browser(viewer, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    out, result = viewer
    source = result.sources[1]
    batches = read_batches(out / "saedashboard" / source.folder)
    feature = next(f for b in batches for f in b["features"] if f["frac_nonzero"] > 0 and len(f["activations"]) >= 10)
    browser.get((out / "viewer" / "index.html").as_uri())
    assert browser.title == "qwen3-scope feature dashboards"
    Select(browser.find_element(By.ID, "sae")).select_by_value("1")
    box = browser.find_element(By.ID, "feature")
    box.clear()
    box.send_keys(str(feature["feature_index"]))
    browser.find_element(By.ID, "show").click()
    WebDriverWait(browser, 20).until(
        lambda d: d.find_element(By.ID, "title").text.endswith(f"feature {feature['feature_index']}")
    )
    assert browser.find_element(By.ID, "title").text == f"{source.sae_id} — feature {feature['feature_index']}"

    # the first top context: the same tokens, the qualifying token highlighted with its value
    first = feature["activations"][0]
    context = browser.find_elements(By.CSS_SELECTOR, "#contexts .context")[0]
    spans = context.find_elements(By.CSS_SELECTOR, "span.tok")
    assert len(spans) == len(first["tokens"])
    assert [s.get_attribute("textContent") for s in spans] == [t.replace("\n", "\u21b5") for t in first["tokens"]]
    q = spans[first["qualifying_token_index"]]
    assert "q" in q.get_attribute("class").split() and q.value_of_css_property("background-color") != "rgba(0, 0, 0, 0)"
    assert [s for s in spans if s.value_of_css_property("background-color") != "rgba(0, 0, 0, 0)"] == [
        s for s, v in zip(spans, first["values"]) if v > 0
    ]
    n_contexts = len(browser.find_elements(By.CSS_SELECTOR, "#contexts .context"))
    assert n_contexts == len(feature["activations"])
    groups = [g.text for g in browser.find_elements(By.CSS_SELECTOR, "#contexts .group")]
    assert groups[0].startswith("Top activations") and any(g.startswith("Interval") for g in groups)

    # histograms: one bar per bin, heights proportional to the exported counts
    bars = browser.find_elements(By.CSS_SELECTOR, "svg.hist.acts rect")
    assert len(bars) == len(feature["freq_hist_data_bar_heights"]) == 50
    heights = [float(b.get_attribute("height")) for b in bars]
    tallest = max(range(50), key=lambda i: feature["freq_hist_data_bar_heights"][i])
    assert heights.index(max(heights)) == tallest and heights[tallest] > 0
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.hist.logits rect")) == 50
    pos_cells = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "td.pos:not(.num)")]
    assert pos_cells == [json.dumps(t, ensure_ascii=False) for t in feature["pos_str"]]  # as JSON.stringify shows them

    shot_dir = Path(os.environ.get("QWEN3_SCOPE_TEST_ARTIFACTS", tmp_path))  # set it to keep the screenshot
    shot_dir.mkdir(parents=True, exist_ok=True)
    shot = shot_dir / "export_viewer.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000

    # a dead feature renders as dead, and a link opens a feature directly
    dead = next(f for b in batches for f in b["features"] if f["frac_nonzero"] == 0)
    browser.get(
        (out / "viewer" / "index.html").as_uri() + f"?link#sae=1&feature={dead['feature_index']}"
    )  # a fresh page load
    WebDriverWait(browser, 20).until(
        lambda d: d.find_element(By.ID, "title").text.endswith(f"feature {dead['feature_index']}")
    )
    assert "never fired" in browser.find_element(By.ID, "contexts").text
    assert browser.find_elements(By.CSS_SELECTOR, "svg.hist.acts rect") == []
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
