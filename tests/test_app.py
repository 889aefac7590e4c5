"""`diffusers-video app`: the Gradio demo served on a loopback port and driven in headless Debian chromium over the
Chrome DevTools protocol (a websocket; no selenium, no driver binary): type a prompt, press Generate, wait for the
video, fetch the MP4 the page serves and decode it, take a screenshot, see the progress bar count the steps; bad
input shows a message in the page, not a traceback. Without chromium or Gradio the browser test is skipped, saying which is missing (CI installs both)."""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from diffusers_video.cli import main
from diffusers_video.training.video_files import decode_frames, probe

pytestmark = pytest.mark.usefixtures("one_thread")

FRAMES = 3
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(check, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"waited {timeout:.0f} s for {what}")


def _get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read()
    except OSError:
        return None


class DevTools:
    """A page of a headless chromium, driven over the DevTools protocol's websocket."""

    def __init__(self, port: int):
        import websocket  # websocket-client, in the `test` extra

        targets = json.loads(_wait_for(lambda: _get(f"http://127.0.0.1:{port}/json/list"), 30, "chromium"))
        page = next(t for t in targets if t["type"] == "page")
        self.socket = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        self.ids = itertools.count(1)

    def send(self, method: str, **params) -> dict:
        message_id = next(self.ids)
        self.socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:  # events arrive in between; the answer carries our id
            message = json.loads(self.socket.recv())
            if message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def js(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    def type_into(self, selector: str, text: str) -> None:
        """Focus an input, select what it holds and type `text` over it, as a user does."""
        self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.focus(); e.select(); }})()")
        self.send("Input.insertText", text=text)
        self.js(f"document.querySelector({json.dumps(selector)}).blur()")


@pytest.fixture(scope="module")
def pipeline_folder(tmp_path_factory) -> Path:
    from test_hub import tiny_pipeline

    folder = tmp_path_factory.mktemp("app") / "videofusion"
    tiny_pipeline(with_base=False).save_pretrained(folder, remote_code=False)
    return folder


def test_the_app_command_needs_a_pipeline_and_a_valid_port(tmp_path, capsys):
    assert main(["app", str(tmp_path / "nowhere"), "--port", "0"]) == 1
    assert "`--port` must be in 1..65535 but is 0" in capsys.readouterr().err


def test_the_form_follows_the_pipeline_and_the_verdict_reads_the_scorer(pipeline_folder):
    from diffusers_video import VideoFusionPipeline
    from diffusers_video.commands.app import generate, pipeline_defaults, verdict
    from diffusers_video.data.shapes import ShapesWorld

    pipe = VideoFusionPipeline.from_pretrained(pipeline_folder)
    pipe.set_progress_bar_config(disable=True)
    defaults = pipeline_defaults(pipe)
    assert {"prompt", "negative_prompt", "steps", "guidance_scale", "num_frames", "height", "width"} <= set(defaults)
    world = ShapesWorld(height=32, width=32, num_frames=8)
    true = world.render(world.scene_for_prompt("a red circle moving right", seed=0))
    assert verdict(true, "a red circle moving right").startswith("**Scorer:** matches the prompt (color red ✓")
    assert "does not match" in verdict(true, "a blue circle moving right")
    assert "cannot score this prompt" in verdict(true, "a purple blob")
    values = {"prompt": "a red circle", "seed": 0, "steps": 0, "guidance_scale": 5.0, "num_frames": FRAMES}
    with pytest.raises(ValueError, match="num_inference_steps"):
        generate(pipe, values, 8, pipeline_folder)
    calls = []
    path, _, said = generate(pipe, {**values, "steps": 2}, 8, pipeline_folder, lambda *a: calls.append(a))
    assert calls == [(1, 2), (2, 2)] and Path(path).suffix == ".mp4" and said.startswith("**Scorer:**")
    with pytest.raises(ValueError, match="Write a prompt first"):
        generate(pipe, {**values, "prompt": " ", "steps": 1}, 8, pipeline_folder)


@pytest.mark.timeout(300)
def test_the_app_in_a_real_browser(pipeline_folder, tmp_path):
    if BROWSER is None:
        pytest.skip("no chromium on this machine (`apt-get install -y chromium`; .ci/run installs it)")
    pytest.importorskip("gradio", reason="Gradio is not installed (`pip install 'diffusers-video[app]'`)")
    pytest.importorskip("websocket", reason="websocket-client is not installed (the `test` extra)")
    app_port, devtools_port = _free_port(), _free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "diffusers_video.cli", "app", str(pipeline_folder), "--port", str(app_port)],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "app.log", "w"), env=env,
    )  # fmt: skip
    browser = subprocess.Popen(
        [
            BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--no-first-run", "--disable-dev-shm-usage", f"--remote-debugging-port={devtools_port}",
            f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1000", "about:blank",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{app_port}/"
    try:
        _wait_for(lambda: server.poll() is not None or _get(url), 180, "the app to serve")
        assert server.poll() is None, (tmp_path / "app.log").read_text()[-3000:]
        page = DevTools(devtools_port)
        page.send("Page.enable")
        page.send("Page.navigate", url=url)
        _wait_for(lambda: page.js("!!document.querySelector('#prompt textarea')"), 60, "the form")

        # a prompt of the moving-shapes world, 3 frames, 2 steps: the video, its MP4 and the scorer's verdict
        page.type_into("#prompt textarea", "a red circle moving right")
        page.type_into("#num_frames input", str(FRAMES))
        page.type_into("#steps input", "2")
        page.js("document.querySelector('#generate').click()")
        source = _wait_for(
            lambda: page.js("(document.querySelector('#video video') || {}).src"), 120, "the video element"
        )
        video = tmp_path / "served.mp4"
        video.write_bytes(_get(source))
        entry = probe(video)  # decoded with imageio-ffmpeg, as training reads video files
        frames = decode_frames(video, list(range(entry.num_frames)))
        assert entry.num_frames == FRAMES and frames.shape[-1] == 3 and frames.std() > 0
        text = _wait_for(lambda: page.js("document.querySelector('#verdict').innerText"), 30, "the verdict")
        assert text.startswith("Scorer:") and "temporal consistency" in text
        links = page.js("[...document.querySelectorAll('#download a')].map(a => a.href)")
        assert links and any(link.endswith(".mp4") for link in links)
        screenshot = base64.b64decode(page.send("Page.captureScreenshot", format="png")["data"])
        (tmp_path / "app.png").write_bytes(screenshot)
        assert screenshot[:8] == b"\x89PNG\r\n\x1a\n" and len(screenshot) > 10_000

        # bad input: 0 steps is the pipeline's one-line message in the page, not a traceback
        page.type_into("#steps input", "0")
        page.js("document.querySelector('#generate').click()")
        message = _wait_for(
            lambda: page.js("(document.querySelector('.toast-body') || {}).innerText"), 60, "the error message"
        )
        assert "num_inference_steps" in message and "Traceback" not in page.js("document.body.innerText")

        # a word the moving-shapes world does not know: the video, and the scorer's reason instead of a verdict
        page.js("document.querySelectorAll('.toast-close').forEach(b => b.click())")
        page.type_into("#steps input", "100")
        page.type_into("#prompt textarea", "a purple blob moving right")
        page.js("document.querySelector('#generate').click()")
        shown = _wait_for(
            lambda: "/100 steps" in (page.js("(document.querySelector('.progress-text') || {}).innerText") or ""),
            60,
            "the progress bar to count the steps",
            interval=0.05,
        )  # fmt: skip  (while it runs: "12/100 steps | 0.3s")
        assert shown
        reason = _wait_for(
            lambda: (page.js("document.querySelector('#verdict').innerText") or "").count("cannot score"), 120,
            "the scorer's reason",
        )  # fmt: skip
        assert reason and "purple" in page.js("document.querySelector('#verdict').innerText")
    finally:
        browser.terminate()
        server.terminate()
        for process in (browser, server):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
