"""The dashboard in a real browser on a live stack (see livestack.py): one stack and one Chromium
for the module, tests in the order an operator's day goes.

Screenshots of the list, the job page and the viewer go to ``$DASHBOARD_ARTIFACTS`` (default
``.cache/test-artifacts/dashboard``); the README's images (docs/images/) are copies of them.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
import SimpleITK as sitk
from dashkit import USERS
from livestack import CHROMIUM, CHROMIUM_ARGS, LiveStack, log_in, need_browser
from PIL import Image

from appliance.jobs import Job, JobState, JobStore
from appliance.phantom import PhantomFiles, PhantomSpec, write_phantom

pytestmark = pytest.mark.browser

ARTIFACTS = Path(os.environ.get("DASHBOARD_ARTIFACTS", Path(__file__).resolve().parents[2] / ".cache" /
                                "test-artifacts" / "dashboard"))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    need_browser()
    stack = LiveStack(tmp_path_factory.mktemp("live")).start()
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def browser(live: LiveStack) -> Iterator[Any]:
    with need_browser()() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


#: Every URL any page of this module requested, and every console message (CSP violations show there).
REQUESTS: list[str] = []
CONSOLE: list[str] = []


def new_page(browser: Any, live: LiveStack, user: str) -> Any:
    context = browser.new_context(viewport={"width": 1400, "height": 900}, device_scale_factor=1)
    page = context.new_page()
    page.on("request", lambda request: REQUESTS.append(request.url))
    page.on("console", lambda message: CONSOLE.append(f"{message.type}: {message.text}"))
    log_in(page, live.url, user, USERS[user][0])
    return page


@pytest.fixture(scope="module")
def operator_page(browser: Any, live: LiveStack) -> Any:
    return new_page(browser, live, "olga")


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> dict[int, PhantomFiles]:
    return {seed: write_phantom(tmp_path_factory.mktemp(f"phantom{seed}"), PhantomSpec(seed=seed)) for seed in (7, 8)}


@pytest.fixture(scope="module")
def done_job(live: LiveStack, operator_page: Any, phantoms: dict[int, PhantomFiles]) -> Job:
    """A study pushed while the operator watches the list; the row appears and turns done by itself."""
    page = operator_page
    page.goto(f"{live.url}/")
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    page.wait_for_selector("#live:text('live')")
    live.push(phantoms[7].files)
    job = live.job_of(phantoms[7].study_uid)
    row = f"#job-{job.id}"
    page.wait_for_selector(row, timeout=20_000)
    page.wait_for_selector(f"{row}[data-state=done]", timeout=120_000)
    seen = time.time()
    finished = live.stack.job(job.id)
    assert finished.state is JobState.DONE and finished.finished_at is not None
    print(f"row turned done {seen - finished.finished_at:.2f} s after the job was done (Playwright polling included)")
    assert navigations == [], f"the list reloaded: {navigations}"
    cells = page.locator(f"{row} td").all_inner_texts()
    assert cells[2] == "OrganSeg" and "127.0.0.1" in cells[3] and cells[7] == "40" and cells[8] == "1"
    _shot(page, "jobs-list.png")
    return finished


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=False)


def test_a_pushed_study_appears_and_becomes_done_without_a_reload(done_job: Job) -> None:
    assert done_job.state is JobState.DONE


def test_the_job_page_shows_its_stages(live: LiveStack, operator_page: Any, done_job: Job) -> None:
    page = operator_page
    page.goto(f"{live.url}/jobs/{done_job.id}")
    steps = page.locator("#timeline tr.step")
    names = steps.evaluate_all("rows => rows.map(r => [r.dataset.step, r.cells[2].innerText.trim()])")
    assert [n for n, _ in names][:3] == ["receiving", "quiet window", "queue"]
    stages = {n: s for n, s in names}
    for stage in ("reader", "inference", "writer", "export", "export to PACS"):
        assert stages[stage] in ("succeeded", "sent"), names
    assert "queue" in page.locator("#timeline tr[data-step=inference] td.detail").inner_text()
    assert page.locator("#segments tbody tr").count() == 3
    for img in page.locator(".previews img").all():
        assert img.evaluate("i => i.complete && i.naturalWidth > 0")
    assert done_job.id in page.locator("#log").inner_text()
    _shot(page, "job-page.png")


def _canvas(page: Any) -> np.ndarray:
    page.wait_for_timeout(400)  # a few frames for niivue to redraw
    return np.asarray(Image.open(io.BytesIO(page.locator("#gl").screenshot())).convert("RGB")).astype(np.int16)


def test_toggling_a_segment_changes_the_pixels_where_the_organ_is(live: LiveStack, operator_page: Any,
                                                                   done_job: Job) -> None:
    page = operator_page
    page.goto(f"{live.url}/jobs/{done_job.id}/viewer")
    page.wait_for_function("() => window.applianceViewer && window.applianceViewer.ready", timeout=60_000)
    # The segment numbers on the CT's grid, as the server read them from the SEG.
    labels = live.results(done_job.id).labels
    liver = np.argwhere(sitk.GetArrayFromImage(labels) == 1)
    k, j, i = (int(v) for v in np.median(liver, axis=0))
    x, y, z = labels.TransformIndexToPhysicalPoint((i, j, k))  # LPS mm
    page.click("#views button[data-view=axial]")
    page.evaluate("([x, y, z]) => { const nv = window.applianceViewer.nv; "
                  "nv.scene.crosshairPos = nv.mm2frac([x, y, z]); nv.drawScene(); }", [-x, -y, z])
    shown = _canvas(page)
    page.uncheck("#segment-controls tr[data-segment='1'] input.visible")
    hidden = _canvas(page)
    changed = np.argwhere(np.abs(shown - hidden).sum(axis=2) > 30)
    assert len(changed) > 200, f"toggling the liver changed only {len(changed)} pixels"
    # Each changed pixel, mapped back through niivue to patient coordinates, lies in the liver.
    sample = changed[np.linspace(0, len(changed) - 1, min(300, len(changed))).astype(int)]
    mm = page.evaluate("pts => { const nv = window.applianceViewer.nv; return pts.map(([r, c]) => "
                       "Array.from(nv.frac2mm(nv.canvasPos2frac([c, r])))); }", sample.tolist())
    inside = 0
    array = sitk.GetArrayFromImage(labels)
    for rx, ry, rz, *_ in mm:
        index = labels.TransformPhysicalPointToIndex((-rx, -ry, rz))
        if all(0 <= index[a] < labels.GetSize()[a] for a in range(3)):
            inside += int(array[index[2], index[1], index[0]] == 1)
    assert inside >= 0.9 * len(mm), f"{inside} of {len(mm)} changed pixels are on the liver"
    page.check("#segment-controls tr[data-segment='1'] input.visible")
    restored = _canvas(page)
    assert np.abs(restored - shown).max() <= 2, "showing the liver again did not restore the pixels"
    # Opacity: the liver at full opacity changes the liver's pixels (towards its colour) and no other.
    page.fill("#segment-controls tr[data-segment='1'] input.opacity", "1")
    opaque = _canvas(page)
    more = np.abs(opaque - shown).sum(axis=2) > 15
    toggled = np.abs(shown - hidden).sum(axis=2) > 30
    assert more.sum() > 0.5 * toggled.sum(), (more.sum(), toggled.sum())
    assert (more & ~toggled).sum() < 0.05 * more.sum(), "the liver's opacity changed pixels outside the liver"
    r, g, b = opaque[more].mean(axis=0)
    assert r > g > b, f"the opaque liver is not the SEG's colour (221, 130, 101): {r:.0f}, {g:.0f}, {b:.0f}"
    page.click("#views button[data-view=multi]")
    page.wait_for_timeout(800)
    _shot(page, "viewer.png")


@pytest.fixture(scope="module")
def failed_job(live: LiveStack, phantoms: dict[int, PhantomFiles]) -> Job:
    """A study sent to LateSeg, whose PACS (LATE) is down: it fails at export."""
    live.push(phantoms[8].files, "LateSeg")
    job = live.job_of(phantoms[8].study_uid)
    job = live.wait_state(job.id, JobState.FAILED, 120)
    assert job.failed_phase == "export", job.error
    return job


def test_a_viewer_account_cannot_retry(browser: Any, live: LiveStack, failed_job: Job) -> None:
    page = new_page(browser, live, "vic")
    page.goto(f"{live.url}/jobs/{failed_job.id}")
    assert page.locator("#retry").count() == 0
    assert "can look but not change jobs" in page.content()
    token = page.locator("input[name=csrf]").first.get_attribute("value")
    forged = page.request.post(f"{live.url}/jobs/{failed_job.id}/retry", form={"csrf": token})
    assert forged.status == 403
    assert live.stack.job(failed_job.id).state is JobState.FAILED
    page.context.close()


def test_the_retry_button_really_reruns_a_failed_job(live: LiveStack, operator_page: Any, failed_job: Job) -> None:
    assert live.late is not None
    live.late.start()  # the PACS is back
    page = operator_page
    page.goto(f"{live.url}/jobs/{failed_job.id}")
    page.click("#retry")
    # The page follows the job by itself (it reloads at each change of state) until it is done; the
    # note 'retry: attempt 2' shows only on the first of those pages, which a fast re-run replaces.
    page.wait_for_selector("#jobhead[data-state=done]", timeout=120_000)
    assert "attempt 2" in page.locator(".sub").inner_text()
    assert "retry" in page.locator("main").inner_text() and "olga (operator)" in page.content()
    with JobStore(live.stack.database) as store:
        job = store.get(failed_job.id)
        attempts = {s.attempt for s in store.stages(job.id) if s.stage == "reader"}
    assert job.state is JobState.DONE and job.attempt == 2 and attempts == {1, 2}
    assert live.late.find_instances(StudyInstanceUID=job.study_uid), "the SEG did not reach LATE"


def test_no_request_leaves_loopback_and_the_csp_holds(live: LiveStack, operator_page: Any, done_job: Job) -> None:
    page = operator_page
    page.goto(f"{live.url}/health")
    assert page.locator("#services tr[data-service=adapter] .badge").inner_text() == "running"
    assert page.locator("#triton .badge").all_inner_texts() == ["yes"] * 3  # live, ready, model ready
    page.click("#destinations tr:has-text('PACS') button")  # C-ECHO to the running Orthanc
    assert "OK, success (0x0000)" in page.locator(".note").inner_text()
    _shot(page, "health.png")
    page.goto(f"{live.url}/")
    _shot(page, "jobs-list.png")
    assert REQUESTS, "no request was recorded"
    hosts = {urlsplit(url).hostname for url in REQUESTS if not url.startswith(("data:", "blob:"))}
    assert hosts == {"127.0.0.1"}, hosts
    violations = [m for m in CONSOLE if "Content Security Policy" in m or "Refused to" in m]
    assert violations == [], violations
