"""report.html in a real browser: Debian's chromium, headless, on the recorded demo run.

Part of the default `pytest` run (CI installs chromium in .ci/run); it skips only when no chromium
is installed."""

from __future__ import annotations

import base64
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from evokd.report import write_report

pytestmark = pytest.mark.browser

FIXTURE = Path(__file__).parent / "fixtures" / "demo-run"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# After the page has loaded, record on <body> how many images it has and how many failed to decode.
PROBE = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  document.body.setAttribute("data-images", images.length);
  document.body.setAttribute("data-broken", images.filter(function (i) {
    return !i.complete || i.naturalWidth === 0; }).length);
  document.body.setAttribute("data-min-width", Math.min.apply(null, images.map(function (i) {
    return i.naturalWidth; })));
});
</script>
</body>"""


def browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no chromium installed (apt-get install chromium)")


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "profile"
    command = [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=10000", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=True)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("browser") / "demo-run"
    shutil.copytree(FIXTURE, run)
    return write_report(run)


def test_report_renders_in_chromium(report: Path, tmp_path: Path) -> None:
    page = report.read_text(encoding="utf-8")
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", PROBE), encoding="utf-8")
    dom = chromium(tmp_path, "--dump-dom", probed.as_uri()).stdout
    body = re.search(r"<body([^>]*)>", dom)
    assert body, dom[:500]
    attributes = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(1)))
    # Every image decoded, and the plots are drawn at page width (not thumbnails).
    assert attributes.get("images") == "5", attributes
    assert attributes.get("broken") == "0", attributes
    assert int(attributes["min-width"]) >= 450, attributes
    for uri in re.findall(r'<img src="data:image/png;base64,([^"]+)"', page):
        width, height = png_size(base64.b64decode(uri))
        assert width >= 450 and height >= 300
    # What the fixture run's teacher said and wrote: an analysis and a rejected text with its reason.
    assert "The model has detected patterns where incorrect classification is caused" in dom
    assert re.search(r'class="rejected-text">The movie was too slow to watch\.</td>\s*'
                     r'<td class="reason">label \'none\' not in the label set</td>', dom), "rejected text"
    assert "qwen2.5-coder-0.5b (embedded llama.cpp teacher)" in dom


def test_report_screenshot(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    chromium(tmp_path, "--window-size=1280,4000", f"--screenshot={shot}", report.as_uri())
    width, height = png_size(shot.read_bytes())
    assert (width, height) == (1280, 4000)
    # A page of plots and tables, not a blank or an error page (those compress to a few KB).
    assert shot.stat().st_size > 100_000
    keep = os.environ.get("EVOKD_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(keep) / "report.png")
