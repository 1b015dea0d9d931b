"""A real browser look at the executed tour: JupyterLab serves it on 127.0.0.1, headless Chromium opens it, and the
highlighted tokens, the A vs Â plot and the one-update table are saved as PNG screenshots.

What the tests cannot see (the HTML after JupyterLab's sanitiser, the plot as a reader gets it) is checked here, in a
browser. Not in CI: it needs Chromium (Debian: `apt-get install -y chromium`) and the venv's `lab` extra.

    python scripts/browser_look.py                          # executes the tour first if runs/tour/ lacks it
    python scripts/browser_look.py --notebook runs/tour/00_tour.ipynb --out runs/tour/look --port 8891

It trusts the executed copy (`jupyter trust`: outputs you made yourself), starts `jupyter lab --no-browser` on
127.0.0.1 with a random token, drives Chromium over the DevTools protocol (websocket-client, a Jupyter dependency),
waits for the outputs to render, screenshots each view by its element, then stops both processes.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HTML_OUT = "[...document.querySelectorAll('.jp-RenderedHTMLCommon')]"
VIEWS = {  # name -> JavaScript returning the element to capture
    "tour_tokens": f"{HTML_OUT}.find(e => e.textContent.includes('gram kinds:'))",
    "tour_advantages": "document.querySelector('.jp-RenderedImage img')",
    "tour_shares": f"{HTML_OUT}.find(e => e.querySelector('table') && e.textContent.includes('share of |A|'))",
    "tour_update": f"{HTML_OUT}.find(e => e.querySelector('table') && e.textContent.includes('rewarded'))",
    "tour_real_text": f"{HTML_OUT}.reverse().find(e => e.textContent.includes('GSM8K'))",
}


def wait_http(url: str, seconds: float = 90) -> str:
    t0 = time.time()
    while time.time() - t0 < seconds:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read().decode()
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"error: nothing answered at {url} within {seconds:.0f} s")


class CDP:
    """The smallest DevTools-protocol client: one page target, request/response by id."""

    def __init__(self, ws_url: str):
        import websocket

        self.ws, self.n = websocket.create_connection(ws_url, timeout=60, suppress_origin=True), 0

    def __call__(self, method: str, **params):
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expr: str):
        return self("Runtime.evaluate", expression=expr, returnByValue=True).get("result", {}).get("value")


def execute_tour(nb: Path) -> None:
    import papermill as pm

    nb.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(
        str(ROOT / "notebooks" / "00_tour.ipynb"), str(nb), cwd=str(ROOT / "notebooks"), kernel_name="python3"
    )


def capture(page: CDP, out: Path, max_height: int) -> dict:
    png = base64.b64decode(page("Page.captureScreenshot", format="png")["data"])
    (out / "tour_lab.png").write_bytes(png)  # the page as it opened: JupyterLab, the tour's first screen
    shots = {"tour_lab": {"file": str(out / "tour_lab.png"), "bytes": len(png)}}
    for name, find in VIEWS.items():
        rect = page.js(
            f"(() => {{ const e = {find}; if (!e) return null; e.scrollIntoView({{block: 'start'}});"
            " const r = e.getBoundingClientRect(); return {x: r.x, y: r.y, w: r.width, h: r.height}; })()"
        )
        if not rect or rect["w"] < 10 or rect["h"] < 10:
            shots[name] = None
            continue
        time.sleep(0.5)
        clip = {"x": rect["x"], "y": rect["y"], "width": rect["w"], "height": min(rect["h"], max_height), "scale": 1}
        png = base64.b64decode(
            page("Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=False)["data"]
        )
        (out / f"{name}.png").write_bytes(png)
        shots[name] = {"file": str(out / f"{name}.png"), "bytes": len(png), "height_px": round(clip["height"])}
    return shots


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--notebook", default="runs/tour/00_tour.ipynb", help="the executed tour (made if missing)")
    ap.add_argument("--out", default="runs/tour/look", help="folder for the PNG screenshots")
    ap.add_argument("--port", type=int, default=8891)
    ap.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser") or "")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--max_height", type=int, default=900, help="crop each view to this many pixels")
    a = ap.parse_args(argv)
    if not a.chromium:
        ap.error("no Chromium found: install Debian's package (apt-get install -y chromium) or pass --chromium PATH")
    nb, out = (ROOT / a.notebook).resolve(), (ROOT / a.out).resolve()
    if not nb.exists():
        execute_tour(nb)
    out.mkdir(parents=True, exist_ok=True)
    bindir = Path(sys.executable).parent
    subprocess.run([str(bindir / "jupyter"), "trust", str(nb)], check=True, capture_output=True)
    token, profile = secrets.token_hex(16), tempfile.mkdtemp(prefix="hicra-chromium-")
    root = ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    lab = subprocess.Popen(
        [str(bindir / "jupyter"), "lab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={a.port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={nb.parent}", *root],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    browser = None
    try:
        wait_http(f"http://127.0.0.1:{a.port}/api/status?token={token}")
        debug = a.port + 1
        browser = subprocess.Popen(
            [a.chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--remote-debugging-port={debug}", f"--user-data-dir={profile}", f"--window-size={a.width},2400",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_http(f"http://127.0.0.1:{debug}/json/version")
        target = next(t for t in json.loads(wait_http(f"http://127.0.0.1:{debug}/json/list")) if t["type"] == "page")
        page = CDP(target["webSocketDebuggerUrl"])
        page("Page.enable")
        page("Page.navigate", url=f"http://127.0.0.1:{a.port}/doc/tree/{nb.name}?token={token}")
        t0 = time.time()
        while not page.js(f"!!({VIEWS['tour_advantages']}) && !!({VIEWS['tour_tokens']})"):
            if time.time() - t0 > 120:
                raise SystemExit("error: the tour's outputs did not render in JupyterLab within 120 s")
            time.sleep(1)
        time.sleep(2)  # fonts and the image decode
        shots = capture(page, out, a.max_height)
        print(json.dumps({"notebook": str(nb), "render_seconds": round(time.time() - t0, 1), "shots": shots}))
    finally:
        for p in (browser, lab):
            if p is not None:
                p.terminate()
                p.wait(timeout=30)
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
