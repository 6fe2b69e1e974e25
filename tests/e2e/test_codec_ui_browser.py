"""With payload encryption on, the Temporal UI still reads rollouts through `lockgate codec-server`.

The worker encrypts every payload (LOCKGATE_CODEC_KEYS), so the Temporal server holds only
ciphertext; the UI, started with `--ui-codec-endpoint`, has the browser POST each payload to the
codec server, which decrypts with the same keys (docs/operations.md, "Payload encryption"). This
test runs the real `lockgate codec-server` command as a process, a real dev server with its UI,
a real worker, and Debian's headless Chromium (as tests/e2e/test_ui_browser.py does):

- the workflow page shows the decoded spec as the rollout's input, and the User Metadata tab the
  summary and current details (both payloads too, encrypted in the history);
- the codec server log shows the browser's /decode calls, every one answered 200;
- `temporal workflow show --codec-endpoint` reads the same history decoded;
- with the codec server stopped, the same page shows the ciphertext: the decoding came from it.

Screenshots land in test-artifacts/ui/codec-*.png.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect
from pydantic import SecretStr
from temporalio.client import Client

from activities.registry import BackendRegistry
from runtime.client import connect
from runtime.codec import ENCODING, new_key
from runtime.embedded import EmbeddedTemporal, find_temporal_cli
from runtime.processes import ManagedProcess, free_port, port_open
from runtime.rollouts import query_status, submit_rollout
from runtime.settings import Settings
from tests.conftest import ARTIFACTS, build_spec, spec_document
from tests.e2e.test_ui_browser import CHROMIUM, CHROMIUM_ARGS, UI_TIMEOUT_MS
from tests.helpers.servers import MetricsServer, RouterServer
from tests.helpers.waiting import wait_until
from worker import build_worker, http_client

pytestmark = pytest.mark.e2e

SCREENSHOTS = ARTIFACTS / "ui"
LOCKGATE = Path(sys.executable).with_name("lockgate")
"""The console script pip installed for this venv: the command an operator runs."""


class _TemporalWithCodecUi(EmbeddedTemporal):
    """The worker's embedded dev server, with its UI pointed at a codec server."""

    def __init__(self, data_dir: Path, *, codec_endpoint: str) -> None:
        super().__init__(data_dir, port=free_port(), ui_port=free_port())
        self.codec_endpoint = codec_endpoint

    def command(self) -> list[str]:
        """The embedded server's command line plus `--ui-codec-endpoint`."""
        return [*super().command(), "--ui-codec-endpoint", self.codec_endpoint]


@dataclass
class _Stack:
    server: _TemporalWithCodecUi
    codec_server: ManagedProcess
    codec_endpoint: str
    client: Client
    target: str
    router_url: str


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's headless Chromium under Playwright, as in test_ui_browser.py."""
    assert CHROMIUM.exists(), f"this test needs Debian's Chromium at {CHROMIUM}"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture
async def encrypted_stack(
    tmp_path: Path, router: RouterServer, metrics: MetricsServer
) -> AsyncIterator[_Stack]:
    """Codec server, dev server with UI, an encrypting worker, a rollout baking in shadow."""
    keys = f"ui-test:{new_key()}"
    codec_port = free_port()
    endpoint = f"http://127.0.0.1:{codec_port}"
    server = _TemporalWithCodecUi(tmp_path / "temporal", codec_endpoint=endpoint)
    # No --origin: the default allows the UI at LOCKGATE_UI_PORT, as on an operator's machine.
    codec_server = ManagedProcess(
        "codec-server",
        [str(LOCKGATE), "codec-server", "--port", str(codec_port)],
        tmp_path / "codec-server.log",
        env={"LOCKGATE_CODEC_KEYS": keys, "LOCKGATE_UI_PORT": str(server.ui_port)},
    ).start()
    try:

        async def listening() -> bool:
            return port_open(codec_port)

        await codec_server.wait_ready(listening, within=30)
        async with server:
            settings = Settings(
                temporal_address=server.address, lockgate_codec_keys=SecretStr(keys)
            )
            client = await connect(settings)
            metrics.set("error_rate", 0.001)
            document = spec_document(router.url, metrics.url, target=f"enc-{uuid.uuid4().hex[:8]}")
            document["spec"]["stages"][0]["min_duration"] = "1h"
            spec = build_spec(document)
            target = spec.spec.target
            task_queue = f"lockgate-codec-ui-{uuid.uuid4().hex[:8]}"
            async with (
                http_client() as http,
                build_worker(client, task_queue, BackendRegistry(http)),
            ):
                await submit_rollout(client, spec, submitted_by="ui-test", task_queue=task_queue)

                async def checked() -> bool:
                    return (await query_status(client, target)).state.checks_total >= 1

                await wait_until(checked, timeout=60, what=f"{target}'s first shadow check")
                yield _Stack(server, codec_server, endpoint, client, target, router.url)
    finally:
        codec_server.stop()


async def _screenshot(page: Page, name: str) -> None:
    path = SCREENSHOTS / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=path, full_page=True)
    print(f"UI screenshot: {path}")


async def _stored_input(stack: _Stack) -> bytes:
    """The rollout's input as the server stores it, read with a client that has no codec."""
    plain = await Client.connect(stack.server.address)
    history = await plain.get_workflow_handle(f"rollout-{stack.target}").fetch_history()
    (payload,) = history.events[0].workflow_execution_started_event_attributes.input.payloads
    assert payload.metadata["encoding"] == ENCODING
    assert stack.target.encode() not in payload.data
    return payload.data


def _temporal_show(stack: _Stack) -> str:
    """`temporal workflow show` through the codec server, as an operator would run it."""
    command = [
        find_temporal_cli(),
        "workflow",
        "show",
        "--address",
        stack.server.address,
        "--workflow-id",
        f"rollout-{stack.target}",
        "--codec-endpoint",
        stack.codec_endpoint,
        "--output",
        "json",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


async def test_the_ui_decodes_an_encrypted_rollout_through_lockgate_codec_server(
    browser: Browser, encrypted_stack: _Stack
) -> None:
    stack = encrypted_stack
    target, workflow_id = stack.target, f"rollout-{stack.target}"
    ciphertext = await _stored_input(stack)

    # The temporal CLI reads the history decoded through the same server.
    shown = json.loads(await asyncio.to_thread(_temporal_show, stack))
    started = shown["events"][0]["workflowExecutionStartedEventAttributes"]
    (decoded,) = started["input"]["payloads"]
    assert base64.b64decode(decoded["metadata"]["encoding"]) == b"json/plain"
    assert json.loads(base64.b64decode(decoded["data"]))["spec"]["spec"]["target"] == target

    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(UI_TIMEOUT_MS)
    main = page.get_by_role("main")
    decoded_target = f'"target": "{target}"'  # JSON only the decoded input holds
    await page.goto(f"{stack.server.ui_url}/namespaces/default/workflows/{workflow_id}")
    await expect(page.get_by_role("heading", name=workflow_id)).to_be_visible(timeout=UI_TIMEOUT_MS)
    await expect(main).to_contain_text(decoded_target, timeout=UI_TIMEOUT_MS)
    await expect(main).to_contain_text(f'"url": "{stack.router_url}"', timeout=UI_TIMEOUT_MS)
    # Summaries are payloads too: the timeline labels decode through the server. A check runs
    # inside its workflow task (the timeline names it by its type, run_checks); the timer
    # before each check carries the label, and the stage route's activity carries its own.
    await expect(main).to_contain_text("until the next check", timeout=UI_TIMEOUT_MS)
    await expect(main).to_contain_text("route shadow: shadow 0%", timeout=UI_TIMEOUT_MS)
    await _screenshot(page, "codec-decoded-input")

    await page.get_by_role("tab", name="User Metadata").click()
    summary = page.locator("iframe#user-metadata-summary").content_frame.locator("body")
    await expect(summary).to_contain_text(f"ranker-v42: {target} 41 -> 42", timeout=UI_TIMEOUT_MS)
    details = page.locator("iframe#user-metadata-current-details").content_frame.locator("body")
    await expect(details).to_contain_text("shadow (1 of 4)", timeout=UI_TIMEOUT_MS)
    await _screenshot(page, "codec-decoded-current-details")

    log = stack.codec_server.output()
    decodes = re.findall(r'"POST /decode\S* HTTP/1.1" (\d+)', log)
    assert decodes, f"the browser never called the codec server:\n{log[-2000:]}"
    assert set(decodes) == {"200"}, f"a /decode call failed:\n{log[-2000:]}"

    # The control: without the codec server the same page shows the stored ciphertext.
    stack.codec_server.stop()
    await page.goto(f"{stack.server.ui_url}/namespaces/default/workflows/{workflow_id}")
    shown_ciphertext = base64.b64encode(ciphertext).decode()[:60]
    await expect(page.locator("body")).to_contain_text(
        "Codec Server could not connect", timeout=UI_TIMEOUT_MS
    )
    await expect(main).to_contain_text(shown_ciphertext, timeout=UI_TIMEOUT_MS)
    await expect(main).not_to_contain_text(decoded_target)
    await _screenshot(page, "codec-server-down-ciphertext")
