"""Latency of the dashboard's JSON routes with 20 concurrent clients, against one request alone.

Usage::

    python benchmarks/bench_dashboard_concurrency.py [REPO COLLECTION] [--shape simple|rubin]
        [--clients 20] [--urls 80] [--same 8] [--workdir DIR]

Without ``REPO``, builds the demo repository of ``--shape`` (`surveyqa.demo.run_demo`: ~30 s for
``simple``, ~50 s for the Rubin-shaped default) in ``--workdir`` (kept and reused). The server
runs in its own process (``surveyqa dashboard``), so that the clients' threads do not compete
with it for the GIL; the URLs are the drill-down places the JSON routes themselves list (every
metric's coadd and visit views, its tracts, patches, visits, detectors, the focal plane),
``--urls`` of them spread over the kinds. Each scenario gets a server of its own, so each
starts with empty caches:

* **alone**: one client asks each URL in turn, twice: the first time (cold: the server
  computes the view) and again (warm).
* **20 clients, distinct URLs**: ``--clients`` threads (one HTTP connection each) take the URLs
  from one queue, each URL once (cold), then all of them again (warm).
* **20 clients, one URL**: ``--same`` times, every client asks the same cold URL at once (a
  barrier releases them): a server that computes a view once for all answers them together.
  Its peer is those URLs asked alone, in the same order, on a server of their own.

Prints p50 / p95 / max of the latencies and the wall time of each scenario, the load average
before and after, and the date. The peer is one request alone: with the model computed off
Tornado's IO loop, concurrent clients should wait about as long as one does, where requests
can run in parallel. To time another checkout's code, put its ``src`` first on
``PYTHONPATH`` (the server subprocess inherits it).
"""

from __future__ import annotations

import argparse
import datetime
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

KINDS = ("metric", "tract", "patch", "visits", "visit", "detector", "focalplane")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``surveyqa dashboard`` in a subprocess, ready once its quick look answers."""

    def __init__(self, repo: str, collection: str):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "surveyqa.cli", "dashboard", repo, "--collection", collection,
             "--port", str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(self.url + "/api/quicklook.json", timeout=120).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard did not start on port {self.port}")
            time.sleep(0.2)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(30)


def discover(url: str, n: int) -> list[str]:
    """Up to ``n`` drill-down URLs found through the JSON routes, spread over `KINDS`."""
    client = httpx.Client(base_url=url, timeout=300)

    def answer(path: str) -> dict:  # {} where the route answers an error: that place is left out
        response = client.get(path)
        return response.json() if response.status_code == 200 else {}

    by_kind: dict[str, list[str]] = {k: [] for k in KINDS}
    for entry in client.get("/api/manifest.json").json()["metrics"]:
        name, levels = entry["name"], set(entry.get("levels", []))
        top = answer(f"/api/metric/{name}.json")
        if not top:
            continue
        for band in top["bands"] or [None]:
            query = f"?band={band}" if band else "?"
            by_kind["metric"].append(f"/api/metric/{name}.json{query}")
            for tract in [c["tract"] for c in top["children"]][:2]:
                by_kind["tract"].append(f"/api/metric/{name}.json{query}&tract={tract}")
                inside = answer(f"/api/metric/{name}.json{query}&tract={tract}")
                for patch in [c["patch"] for c in inside.get("children", [])][:3]:
                    by_kind["patch"].append(f"/api/metric/{name}.json{query}&tract={tract}&patch={patch}")
            if levels & {"visit", "detector"}:
                by_kind["visits"].append(f"/api/visits/{name}.json{query}")
            if "detector" in levels:
                by_kind["focalplane"].append(f"/api/focalplane/{name}.json{query}")
        if levels & {"visit", "detector"}:
            children = answer(f"/api/visits/{name}.json").get("children", [])
            for visit in [c["visit"] for c in children][:: max(1, len(children) // 3)][:3]:
                by_kind["visit"].append(f"/api/visits/{name}.json?visit={visit}")
                one = answer(f"/api/visits/{name}.json?visit={visit}")
                for detector in [c["detector"] for c in one.get("children", [])][:2]:
                    by_kind["detector"].append(f"/api/visits/{name}.json?visit={visit}&detector={detector}")
    urls: list[str] = []
    rng = np.random.default_rng(0)
    pools = {k: [str(u) for u in rng.permutation(sorted(set(v)))] for k, v in by_kind.items()}
    while len(urls) < n and any(pools.values()):
        for kind in KINDS:  # round robin over the kinds: every kind is in the sample
            while pools[kind] and len(urls) < n:
                path = pools[kind].pop()
                if client.get(path).status_code == 200:  # a place that answers an error is not timed
                    urls.append(path)
                    break
    return urls


def _get(client: httpx.Client, path: str) -> float:
    started = time.perf_counter()
    response = client.get(path)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"{path}: {response.status_code} {response.text[:200]}")
    return elapsed


def alone(url: str, urls: list[str]) -> dict[str, list[float]]:
    with httpx.Client(base_url=url, timeout=600) as client:
        cold = [_get(client, u) for u in urls]
        warm = [_get(client, u) for u in urls]
    return {"cold": cold, "warm": warm}


def distinct(url: str, urls: list[str], clients: int) -> tuple[list[float], float]:
    """Each URL once, taken from one queue by ``clients`` threads; latencies and wall time."""
    todo: queue.Queue = queue.Queue()
    for u in urls:
        todo.put(u)
    latencies: list[float] = []
    errors: list[BaseException] = []
    start = threading.Barrier(clients + 1)

    def work() -> None:
        with httpx.Client(base_url=url, timeout=600) as client:
            client.get("/api/manifest.json")  # the connection is open before the clock starts
            start.wait()
            while True:
                try:
                    u = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    latencies.append(_get(client, u))
                except Exception as exc:  # noqa: BLE001 - reported after the run
                    errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, first: {errors[0]}")
    return latencies, time.perf_counter() - began


def same(url: str, paths: list[str], clients: int) -> tuple[list[float], float]:
    """For each path, ``clients`` threads ask it at the same moment."""
    latencies: list[float] = []
    wall = 0.0
    connections = [httpx.Client(base_url=url, timeout=600) for _ in range(clients)]
    for c in connections:
        c.get("/api/manifest.json")
    try:
        for path in paths:
            barrier = threading.Barrier(clients + 1)
            out: list[float] = []

            def one(client: httpx.Client) -> None:
                barrier.wait()
                out.append(_get(client, path))

            threads = [threading.Thread(target=one, args=(c,)) for c in connections]
            for t in threads:
                t.start()
            barrier.wait()
            began = time.perf_counter()
            for t in threads:
                t.join()
            wall += time.perf_counter() - began
            if len(out) != clients:
                raise RuntimeError(f"{path}: {clients - len(out)} requests failed")
            latencies += out
    finally:
        for c in connections:
            c.close()
    return latencies, wall


def _stats(values: list[float]) -> str:
    ms = np.asarray(values) * 1000
    return (f"{np.percentile(ms, 50):7.0f} {np.percentile(ms, 95):7.0f} {ms.max():7.0f}  "
            f"(n={len(ms)})")


def _load() -> str:
    """The 1, 5 and 15 minute load averages: how busy the machine was besides this benchmark."""
    loadavg = Path("/proc/loadavg")
    return " ".join(loadavg.read_text().split()[:3]) if loadavg.exists() else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", nargs="?")
    parser.add_argument("collection", nargs="?")
    parser.add_argument("--shape", default="simple", choices=["simple", "rubin"])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--urls", type=int, default=80)
    parser.add_argument("--same", type=int, default=8, help="how many URLs the clients all ask at once")
    parser.add_argument("--workdir", default="bench-concurrency")
    args = parser.parse_args()
    repo, collection = args.repo, args.collection
    if repo is None:
        from surveyqa.demo import run_demo

        path = Path(args.workdir) / f"demo-{args.shape}"
        if (path / "butler.yaml").exists():
            repo, collection = str(path), "qa/demo"
        else:
            repo, collection = run_demo(path, **({"shape": "simple"} if args.shape == "simple" else {}))
    import surveyqa.dashboard.api as api

    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S} UTC, {os.cpu_count()} cores, "
          f"load {_load()}, code {Path(api.__file__).parents[2]}")
    print(f"repository {repo} ({collection}), {args.clients} clients")
    with Server(repo, collection) as server:
        urls = discover(server.url, args.urls)
    print(f"{len(urls)} URLs: " + ", ".join(f"{k} {sum(_kind(u) == k for u in urls)}" for k in KINDS))
    print(f"{'scenario':44s} {'p50 ms':>7s} {'p95 ms':>7s} {'max ms':>7s}")
    with Server(repo, collection) as server:
        single = alone(server.url, urls)
    print(f"{'alone, cold (first request of each URL)':44s} {_stats(single['cold'])}  wall {sum(single['cold']):.2f} s")
    print(f"{'alone, warm (asked again)':44s} {_stats(single['warm'])}  wall {sum(single['warm']):.2f} s")
    with Server(repo, collection) as server:
        cold, wall_cold = distinct(server.url, urls, args.clients)
        warm, wall_warm = distinct(server.url, urls, args.clients)
    print(f"{f'{args.clients} clients, distinct URLs, cold':44s} {_stats(cold)}  wall {wall_cold:.2f} s")
    print(f"{f'{args.clients} clients, distinct URLs, warm':44s} {_stats(warm)}  wall {wall_warm:.2f} s")
    picks = urls[:: max(1, len(urls) // args.same)][: args.same]
    with Server(repo, collection) as server:  # the peer: these URLs alone, in the same order, cold
        alone_same = alone(server.url, picks)["cold"]
    print(f"{f'alone, cold, the {len(picks)} URLs below':44s} {_stats(alone_same)}  wall {sum(alone_same):.2f} s")
    with Server(repo, collection) as server:
        together, wall_same = same(server.url, picks, args.clients)
    print(f"{f'{args.clients} clients, one URL at once, cold':44s} {_stats(together)}  wall {wall_same:.2f} s")
    print(f"load after {_load()}")


def _kind(url: str) -> str:
    if "/focalplane/" in url:
        return "focalplane"
    if "/visits/" in url:
        return "detector" if "detector=" in url else "visit" if "visit=" in url else "visits"
    return "patch" if "patch=" in url else "tract" if "tract=" in url else "metric"


if __name__ == "__main__":
    main()
