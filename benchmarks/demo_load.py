"""Load test of the web demo: N concurrent clients over loopback, a bounded number of requests.

Starts the real `diga demo` server in a subprocess on 127.0.0.1 (a tiny random-weight model
unless --model is given), drives it with gradio_client from N threads, and reports every request's
outcome, latency percentiles and the server's resident memory across the run.

    python benchmarks/demo_load.py --clients 20 --requests 5
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_model(folder: Path) -> Path:
    from diga.checkpoint import model_metadata, save_weights
    from diga.models import create

    return save_weights(folder / "final.safetensors", create("deeplabv2_light", 19).state_dict(),
                        model_metadata("deeplabv2_light", "cityscapes19", input_size=(128, 256)))


def example_images(folder: Path, n: int = 4) -> list[Path]:
    import numpy as np
    from PIL import Image

    from diga.data.synth import TARGET_STYLE, render_scene

    paths = []
    for k in range(n):
        img, _ = render_scene(np.random.default_rng([7, k]), (128, 256), TARGET_STYLE)
        paths.append(folder / f"street_{k}.png")
        Image.fromarray(img).save(paths[-1])
    return paths


def run_load(clients: int, requests: int, model: Path | None = None, work: Path | None = None,
             timeout: float = 300.0) -> dict:
    """Start the server, fire ``clients`` x ``requests`` requests, stop it; return the figures."""
    from gradio_client import Client, handle_file

    work = Path(work or tempfile.mkdtemp(prefix="diga-load-"))
    model = model or tiny_model(work)
    images = example_images(work)
    port = _free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen(
        [sys.executable, "-m", "diga.cli", "demo", "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
         "--output-dir", str(work / "out"), "--concurrency", "2", "--max-queue", str(clients * requests)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.time() + 120
        while True:
            try:
                warm = Client(url, verbose=False, download_files=str(work / "dl-warm"))
                break
            except Exception:
                if server.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"demo server did not start: {server.stderr.read()[-2000:]}") from None
                time.sleep(0.5)
        warm.predict([handle_file(str(images[0]))], 0.5, False, api_name="/segment")
        rss = [rss_mib(server.pid)]
        latencies, errors, lock = [], [], threading.Lock()

        def client(i: int) -> None:
            c = Client(url, verbose=False, download_files=str(work / f"dl-{i}"))
            for r in range(requests):
                t0 = time.perf_counter()
                try:
                    out = c.predict([handle_file(str(images[(i + r) % len(images)]))], 0.5, False, api_name="/segment")
                    ok = "Segmented" in str(out[0])
                except Exception as e:  # every failure is counted, none hidden
                    ok, out = False, repr(e)
                with lock:
                    (latencies if ok else errors).append(time.perf_counter() - t0 if ok else str(out)[:200])
                    if len(latencies) % max(clients, 1) == 0:
                        rss.append(rss_mib(server.pid))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout)
        wall = time.perf_counter() - t0
        rss.append(rss_mib(server.pid))
    finally:
        server.terminate()
        server.wait(30)
    lat = sorted(latencies)
    return {
        "clients": clients, "requests": clients * requests, "answered": len(latencies), "errors": errors,
        "wall_s": round(wall, 2), "throughput_rps": round(len(latencies) / wall, 2),
        "latency_p50_s": round(statistics.median(lat), 3) if lat else None,
        "latency_p90_s": round(lat[int(0.9 * (len(lat) - 1))], 3) if lat else None,
        "rss_mib": [round(r, 1) for r in rss],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--requests", type=int, default=5, help="requests per client")
    p.add_argument("--model", type=Path)
    args = p.parse_args()
    result = run_load(args.clients, args.requests, args.model)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
