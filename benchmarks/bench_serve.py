"""Benchmark: `fashionlab serve` under concurrent load, and single-image predict latency.

Purpose: check that the web server stays correct under concurrent use (errors must be 0) and
measure what a user waits for:

1. In-process latency of `Classifier.classify` on one prepared 28x28 image (median and p90 of
   many calls, after warm-up), with the torch backend and with onnxruntime; and of
   `Classifier.gradcam`, which the web page also asks for.
2. The server: `fashionlab serve RUN` in a subprocess on a free loopback port, then
   `--clients` threads (default 8), each with its own httpx connection, POSTing a
   photo-like 256x256 RGB PNG to /api/predict for `--duration` seconds (default 20) or until
   `--max-requests` in all. Every response must be 200 with the same top class as the first
   one. Reported: requests, errors, requests/s, p50/p99 latency. A request here is the whole
   pipeline: upload, decode, preprocess, classify, Grad-CAM, two PNG data URLs back.

3. Hostile load: `--hostile-rounds` rounds (default 4) of 16 concurrent maximum-size uploads
   (40-megapixel RGBA and 16-bit grayscale PNGs, each far under the upload limit), with the
   server's resident memory sampled from /proc and /api/health polled every 100 ms meanwhile.
   Reported: the server's idle, peak and settled (2 s after the last round) resident memory,
   the responses by status (200, or 503 when the server is busy), and health latency. Targets
   (issue 17): peak <= 1.5 GB, settled within 300 MB of idle, health p99 <= 100 ms (its max
   is printed too). Health is polled from a process of its own, so the upload threads here do
   not delay it; the server still shares the 2 cores with this client.

Without `--run` a tiny s0-m1 run (1 epoch on 256 images) is trained into a temporary folder:
latency does not depend on accuracy, only on the architecture. The ONNX file for the in-process
measurement is written to a temporary folder, never into the run.

Clients and server share the machine's cores, so requests/s is a floor for a dedicated server;
the load average is printed because other jobs on a shared machine move every number.

Run (from the repository root):

    .venv/bin/python benchmarks/bench_serve.py [--run RUN] [--clients 8] [--duration 20]
        [--max-requests N] [--repeats 300] [--threads 1]
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

from fashionlab._platform import cpu_description
from fashionlab.inference import Classifier
from fashionlab.inference.imaging import prepare_image
from fashionlab.models import build_config
from fashionlab.training import train

STARTUP_TIMEOUT_S = 120


def photo_like_png(size: int = 256, seed: int = 0) -> bytes:
    """A dark, textured garment shape on a light, slightly noisy page, as an RGB PNG."""
    rng = np.random.default_rng(seed)
    page = rng.normal(225, 6, (size, size, 3))
    y, x = np.mgrid[:size, :size]
    body = (abs(x - size / 2) < size * 0.22) & (y > size * 0.2) & (y < size * 0.85)
    sleeves = (abs(y - size * 0.3) < size * 0.08) & (abs(x - size / 2) < size * 0.4)
    page[body | sleeves] = rng.normal(60, 12, (int((body | sleeves).sum()), 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(page, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def time_calls(fn, repeats: int, warmup: int = 20) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def in_process_latency(
    run: Path, image: np.ndarray, repeats: int, scratch: Path, threads: int
) -> None:
    torch.set_num_threads(threads)
    print(
        f"\nIn-process latency, one 28x28 image, {threads} thread(s), "
        f"median (p90) of {repeats} calls:"
    )
    torch_clf = Classifier.from_run(run, backend="torch")
    onnx_clf = Classifier.from_run(
        run, backend="onnx", onnx_path=scratch / "model.onnx", onnx_threads=threads
    )
    rows = [
        ("classify, torch", lambda: torch_clf.classify(image)),
        ("classify, onnx", lambda: onnx_clf.classify(image)),
        ("gradcam (torch)", lambda: torch_clf.gradcam(image)),
    ]
    for name, fn in rows:
        times = time_calls(fn, repeats)
        print(
            f"  {name:<17} {1e3 * statistics.median(times):7.3f} ms"
            f"  ({1e3 * percentile(times, 90):.3f} ms)"
        )


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(run: Path, log_path: Path, threads: int) -> tuple[subprocess.Popen, str]:
    port = free_loopback_port()
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fashionlab", "serve", str(run), "--port", str(port)]
        + ["--threads", str(threads)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited ({proc.returncode}); see {log_path}")
        try:
            if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    proc.kill()
    raise SystemExit(f"server not up after {STARTUP_TIMEOUT_S} s; see {log_path}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


def load_test(base: str, upload: bytes, clients: int, duration: float, max_requests: int) -> None:
    url = f"{base}/api/predict"
    files = {"file": ("garment.png", upload, "image/png")}
    with httpx.Client(timeout=60) as warm:  # first request: lazy imports, caches
        reference = warm.post(url, files=files)
    reference.raise_for_status()
    expected = reference.json()["label"]

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    budget = [max_requests]
    deadline = time.monotonic() + duration

    def client() -> None:
        with httpx.Client(timeout=60) as http:
            while time.monotonic() < deadline:
                with lock:
                    if budget[0] <= 0:
                        return
                    budget[0] -= 1
                started = time.perf_counter()
                try:
                    response = http.post(url, files=files)
                    ok = response.status_code == 200 and response.json()["label"] == expected
                    problem = None if ok else f"HTTP {response.status_code}: {response.text[:200]}"
                except Exception as exc:  # a benchmark counts every failure, whatever its kind
                    problem = f"{type(exc).__name__}: {exc}"
                elapsed = time.perf_counter() - started
                with lock:
                    (errors.append(problem) if problem else latencies.append(elapsed))

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started

    done = len(latencies) + len(errors)
    print(
        f"\nServer load: {clients} concurrent clients, {wall:.1f} s, 256x256 RGB PNG uploads "
        f"({len(upload):,} bytes), full pipeline incl. Grad-CAM:"
    )
    print(f"  requests     {done}")
    print(f"  errors       {len(errors)}")
    print(f"  requests/s   {len(latencies) / wall:.1f}")
    if latencies:
        print(f"  latency p50  {1e3 * percentile(latencies, 50):.1f} ms")
        print(f"  latency p99  {1e3 * percentile(latencies, 99):.1f} ms")
    for problem in errors[:5]:
        print(f"  error: {problem}")
    if errors:
        raise SystemExit(1)


def max_size_pngs(pixels: int = 40_000_000) -> dict[str, bytes]:
    """A uniform RGBA PNG and a 16-bit grayscale PNG of `pixels` pixels: tiny files that
    decode to the most memory an upload may cost."""
    side = int(pixels**0.5)
    out = {}
    for name, image in (
        ("rgba", Image.new("RGBA", (side, side), (200, 120, 40, 255))),
        ("gray16", Image.new("I;16", (side, side), 40_000)),
    ):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        out[name] = buffer.getvalue()
    return out


HEALTH_POLLER = """
import sys, threading, time, httpx
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.readline(), done.set()), daemon=True).start()
times = []
with httpx.Client(timeout=30) as http:
    while not done.is_set():
        started = time.perf_counter()
        http.get(sys.argv[1]).raise_for_status()
        times.append(time.perf_counter() - started)
        time.sleep(0.1)
print(" ".join(f"{t:.6f}" for t in times))
"""


def resident_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def hostile_load(base: str, pid: int, rounds: int, concurrent: int = 16) -> None:
    uploads = max_size_pngs()
    sizes = ", ".join(f"{k} {len(v) // 1024:,} KiB" for k, v in uploads.items())
    time.sleep(1.0)
    idle = resident_bytes(pid)
    peak = [idle]
    health: list[float] = []
    statuses: dict[str, int] = {}
    stop = threading.Event()
    lock = threading.Lock()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], resident_bytes(pid))
            time.sleep(0.02)

    def poll_health() -> None:
        # In a process of its own: the upload threads here must not delay its measurements.
        poller = subprocess.Popen(
            [sys.executable, "-c", HEALTH_POLLER, f"{base}/api/health"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        stop.wait()
        out, _ = poller.communicate("stop\n", timeout=60)
        health.extend(float(v) for v in out.split())

    def upload(kind: str) -> None:
        files = {"file": (f"{kind}.png", uploads[kind], "image/png")}
        try:
            with httpx.Client(timeout=120) as http:
                status = str(http.post(f"{base}/api/predict", files=files).status_code)
        except httpx.TransportError as exc:
            status = type(exc).__name__
        with lock:
            statuses[status] = statuses.get(status, 0) + 1

    watchers = [threading.Thread(target=sample), threading.Thread(target=poll_health)]
    for t in watchers:
        t.start()
    started = time.perf_counter()
    try:
        for _ in range(rounds):
            burst = [
                threading.Thread(target=upload, args=("rgba" if i % 2 else "gray16",))
                for i in range(concurrent)
            ]
            for t in burst:
                t.start()
            for t in burst:
                t.join()
    finally:
        wall = time.perf_counter() - started
        time.sleep(2.0)
        stop.set()
        for t in watchers:
            t.join()
    settled = resident_bytes(pid)
    mb = 1 / 2**20
    print(
        f"\nHostile load: {rounds} rounds of {concurrent} concurrent 40-megapixel uploads "
        f"({sizes}), {wall:.1f} s:"
    )
    print(f"  responses    {dict(sorted(statuses.items()))}")
    print(f"  server RSS   idle {idle * mb:,.0f} MB, peak {peak[0] * mb:,.0f} MB, settled "
          f"{settled * mb:,.0f} MB ({(settled - idle) * mb:+,.0f} MB)")  # fmt: skip
    if health:
        print(
            f"  /api/health  p50 {1e3 * percentile(health, 50):.1f} ms, p99 "
            f"{1e3 * percentile(health, 99):.1f} ms, max {1e3 * max(health):.1f} ms "
            f"({len(health)} polls)"
        )
    checks = {
        "peak <= 1.5 GB": peak[0] <= 1.5e9,
        "settled within 300 MB of idle": settled - idle <= 300 * 2**20,
        "health p99 <= 100 ms": bool(health) and percentile(health, 99) <= 0.1,
        "every response 200 or 503": set(statuses) <= {"200", "503"},
    }
    for name, ok in checks.items():
        print(f"  {'met' if ok else 'MISSED':<6} {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="run folder (default: train a tiny s0-m1)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    parser.add_argument("--max-requests", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=300, help="in-process timed calls")
    parser.add_argument(
        "--threads", type=int, default=1, help="inference threads (default 1, as fashionlab serve)"
    )
    parser.add_argument(
        "--hostile-rounds", type=int, default=4, help="rounds of max-size uploads (0: skip)"
    )
    args = parser.parse_args()

    # Settled memory differs by CPU kind (oneDNN picks other kernels with AMX): name it.
    print(f"CPU {cpu_description()}")
    print(f"CPU cores {os.cpu_count()}, load average {os.getloadavg()[0]:.2f} at start")
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        scratch = Path(tmp)
        run = args.run
        if run is None:
            config = build_config("s0-m1", {"epochs": 1, "train_subset": 256, "eval_subset": 200})
            run = train(config, scratch / "runs", quiet=True)
            print(f"trained a tiny run: {run}")
        upload = photo_like_png()
        image, _ = prepare_image(upload)
        in_process_latency(run, image, args.repeats, scratch, args.threads)

        proc, base = start_server(run, scratch / "server.log", args.threads)
        try:
            load_test(base, upload, args.clients, args.duration, args.max_requests)
            if args.hostile_rounds:
                hostile_load(base, proc.pid, args.hostile_rounds)
        finally:
            stop_server(proc)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
