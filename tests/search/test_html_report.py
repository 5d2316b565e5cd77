"""``report.html`` of a real (tiny) run, loaded in headless Chromium: no console error, nothing fetched but the
file itself and ``data:`` URIs, every grid image decodes, hovering a front point shows its numbers, the
screenshot is not blank. Skips with the reason where Chromium is absent (.ci/run installs it)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cachesearch.cli import app
from cachesearch.embedded import shapes
from tests._chromium import chromium, missing_reason

EMBEDDED_WEIGHTS = shapes.pipeline_path() / "unet" / "diffusion_pytorch_model.safetensors"
pytestmark = pytest.mark.skipif(not EMBEDDED_WEIGHTS.is_file(), reason="embedded weights are absent")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("html")
    out = base / "runs"
    args = ["run", "--name", "h", "--trials", "8", "--steps", "4", "--n-train", "2", "--n-heldout", "4",
            "--workers", "1", "--timeout", "0", "--out", str(out), "--cache-dir", str(base / "cache"), "-q"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out / "h"


def test_the_page_is_self_contained_and_the_gallery_is_on_disk(run_dir: Path) -> None:
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", html)
    assert refs and all(r.startswith("data:image/png;base64,") for r in refs), {r[:40] for r in refs}
    assert re.findall(r"https?://[^\s\"']*", html) == ["http://www.w3.org/2000/svg"] * html.count("<svg")
    gallery = json.loads((run_dir / "gallery" / "gallery.json").read_text())
    assert len(gallery["prompts"]) == 4
    columns = gallery["columns"]
    assert columns[0]["file"] is None and 2 <= len(columns) - 1 <= 5, columns  # reference + 1-5 picks
    for c in columns:
        assert c["error"] is None and len(c["images"]) == 4
        assert all((run_dir / f).is_file() for row in c["images"] for f in row)
    for c in columns[1:]:
        assert f"<code>{c['file']}</code>" in html
        assert (run_dir / "schedules" / c["file"]).is_file()
    assert html.count('class="mask"') == len(columns) - 1  # one heatmap per picked schedule
    assert "Against the baselines" in html and "<table" in html
    assert "held-out mean [95 %]" in html and "<th>p90</th>" in html and "held-out p90" in html  # the tail columns
    assert "<th>&gt; 0.05</th>" in html and re.search(r"<td class=\"num\">\d+ / 4</td>", html)  # broken / pairs
    assert not list(run_dir.parent.parent.rglob("*.lock"))  # no stale lock in the run or the reference cache


def test_overview_puts_the_front_beside_the_grid(run_dir: Path) -> None:
    from PIL import Image, ImageStat

    gallery = json.loads((run_dir / "gallery" / "gallery.json").read_text())
    pareto = Image.open(run_dir / "pareto.png")
    overview = Image.open(run_dir / "overview.png").convert("L")
    # wider than the plot alone by the grid's columns, and not blank
    assert overview.width > pareto.width * (1 + 0.1 * len(gallery["columns"])), (overview.size, pareto.size)
    assert ImageStat.Stat(overview).stddev[0] > 10
    assert "`overview.png`" in (run_dir / "report.md").read_text()


@pytest.mark.skipif(missing_reason() is not None, reason=str(missing_reason()))
def test_chromium_loads_it_without_errors_and_draws_it(run_dir: Path) -> None:
    from PIL import Image, ImageStat

    gallery = json.loads((run_dir / "gallery" / "gallery.json").read_text())
    expected = sum(len(row) for c in gallery["columns"] for row in c["images"])
    with chromium() as page:
        page.send("Network.enable")
        page.load((run_dir / "report.html").as_uri())
        sizes = page.evaluate("Promise.all([...document.querySelectorAll('img.grid-image')].map("
                              "i => i.decode().then(() => [i.naturalWidth, i.naturalHeight])))")
        tip = page.evaluate("""(() => {
            const pt = document.querySelector('[data-series="front"].pt');
            pt.dispatchEvent(new MouseEvent('mouseenter'));
            const t = document.getElementById('tip');
            return [getComputedStyle(t).display, t.textContent];
        })()""")
        hidden = page.evaluate("""(() => {
            document.querySelector('[data-toggle="trial"]').click();
            return [...document.querySelectorAll('[data-series="trial"]')].every(e => e.classList.contains('hidden'));
        })()""")
        shot = page.screenshot()
        errors = page.console_errors()
        requested = [e["params"]["request"]["url"] for e in page.events if e["method"] == "Network.requestWillBeSent"]
    assert errors == []
    assert requested and all(u.startswith(("file:", "data:")) for u in requested), requested
    assert len(sizes) == expected and all(w > 0 and h > 0 for w, h in sizes), sizes
    display, text = tip
    assert display == "block" and re.search(r"^t\d{4}-.*\.yaml$", text, re.M), text
    assert "cost ratio" in text and "held-out" in text and "speedup not measured" in text
    assert hidden is True
    image = Image.open(io.BytesIO(shot)).convert("RGB")
    assert image.width >= 1000 and image.height >= 1500
    extrema = ImageStat.Stat(image).extrema
    assert all(hi - lo > 100 for lo, hi in extrema), extrema  # not one flat colour
    assert len(image.getcolors(1 << 24) or []) > 50  # text, plot and images, not a blank page
    (run_dir / "report-screenshot.png").write_bytes(shot)
