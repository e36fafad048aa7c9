"""'Open in Jupyter': the notebook of a place, run by a real kernel in another folder, says what the page says.

The dashboard is started on a *relative* repository path (from the repository's parent folder);
each notebook is fetched over HTTP as the button fetches it and executed with nbclient in another
folder, and what it prints is compared with the page's JSON twin at every level (coadd tract and
patch, visit and detector, focal plane). A real ``jupyter server`` receives the notebook through
``--jupyter-url`` (the route the button calls), and the test reads it back through that server's
contents API and runs it. Hostile query values answer 4xx and write nothing.
"""

from __future__ import annotations

import ast
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import nbformat
import pytest

from conftest import require_chromium
from surveyqa.dashboard import browser, notebook

pytestmark = pytest.mark.slow


# -- servers ------------------------------------------------------------------------------------------------

def _serve_relative(demo_repo, **kwargs):
    """The dashboard started from the repository's parent folder on ``demo-repo`` (a relative path)."""
    from surveyqa.dashboard import serve

    repo, collection = demo_repo
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(Path(repo).parent)
        handle, _ = serve(Path(repo).name, collection, **kwargs)
    return handle


@pytest.fixture(scope="module")
def server(demo_repo, tmp_path_factory):
    handle = _serve_relative(demo_repo, notebook_dir=tmp_path_factory.mktemp("notebooks"))
    yield handle
    handle.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory):
    """A real Jupyter server on a free port, with a token, serving a temporary root folder."""
    home = tmp_path_factory.mktemp("jupyter")
    root = home / "root"
    root.mkdir()
    token, port = secrets.token_hex(16), _free_port()
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "JUPYTER_CONFIG_DIR": str(home / "config")}
    log = open(home / "server.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}",
         f"--IdentityProvider.token={token}"], stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            status = httpx.get(f"{base}/api/status", headers={"Authorization": f"token {token}"}, timeout=2)
            if status.status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"jupyter server did not start: {(home / 'server.log').read_text()[-2000:]}")
        time.sleep(0.3)
    yield {"base": base, "token": token, "root": root}
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


@pytest.fixture(scope="module")
def jupyter_server_dashboard(demo_repo, jupyter):
    handle = _serve_relative(demo_repo, jupyter_url=f"{jupyter['base']}/lab?token={jupyter['token']}")
    yield handle
    handle.stop()


def get(server, path: str, status: int = 200):
    response = httpx.get(server.url.rstrip("/") + path, timeout=60)
    assert response.status_code == status, response.text
    return response.json() if response.headers["content-type"].startswith("application/json") else response.text


# -- running a notebook ---------------------------------------------------------------------------------------

def execute(notebook_json: str | dict, folder: Path) -> tuple[nbformat.NotebookNode, str]:
    """Run a notebook in a fresh kernel whose working folder is ``folder``; return it and what it printed."""
    from nbclient import NotebookClient

    nb = nbformat.reads(notebook_json, as_version=4) if isinstance(notebook_json, str) else \
        nbformat.from_dict(notebook_json)
    folder.mkdir(parents=True, exist_ok=True)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                      if o.get("output_type") == "stream")
    return nb, printed


def images(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
               for o in c.get("outputs", []))


def number(value) -> str:
    return "nan" if value is None else f"{float(value):.6g}"


def said(record: dict, unit: str) -> str:
    """How the notebook prints one value of the JSON twin: ``199.799 mas — fail``."""
    return f"{number(record['value'])} {record.get('unit') or unit} — {record.get('status') or 'none'}"


def rows_said(rows: dict) -> str:
    return f"{rows['n']} rows" + (f" ({rows['n_selected']} selected)" if "n_selected" in rows else "")


def check_drill(printed: str, page: dict, parent: dict | None = None) -> None:
    """What the notebook printed is what the JSON twin of the page holds, at that level."""
    assert " 0 children, 0 rows" not in printed
    if page["child_key"] is not None:
        assert f"{page['level']}: {len(page['children'])} children, {rows_said(page['rows'])}" in printed
    else:  # a leaf: its values, and the rows behind them
        assert f"{rows_said(page['rows'])} behind it" in printed
        assert page["rows"]["n"] > 0
        if not page["values"]:  # none stored: its value among its parent's children, as the page shows it
            key = page["level"]
            mine = [c for c in parent["children"] if c[key] == page["selection"][key]]
            assert len(mine) == 1
            assert f"no value stored for this {key}" in printed and said(mine[0], page["unit"]) in printed
    for value in page["values"]:
        assert said(value, page["unit"]) in printed
        if value.get("spec"):
            assert f"spec {value['spec']}" in printed


# -- the notebook at every level ------------------------------------------------------------------------------

def _levels(truth: dict) -> dict[str, tuple[str, str, str | None]]:
    """level -> (notebook query, JSON twin, the parent's JSON twin at a leaf), at the demo's injected defects."""
    tract, patch = truth["defects"]["empty_region"]["tract"], truth["defects"]["empty_region"]["patch"]
    visit = truth["defects"]["bad_zeropoint_visit"]["visit"]
    detector = truth["defects"]["bad_astrometry_detector"]["detector"]
    pa1 = f"metric=validate_drp.PA1&band=r&tract={tract}"
    offset = f"metric=health.astromOffset&visit={visit}"
    return {
        "coadd tract": (f"view=metric&{pa1}", f"/api/metric/validate_drp.PA1.json?band=r&tract={tract}", None),
        "coadd patch, value from its rows": (
            f"view=metric&{pa1}&patch={patch}", f"/api/metric/validate_drp.PA1.json?band=r&tract={tract}&patch={patch}",
            f"/api/metric/validate_drp.PA1.json?band=r&tract={tract}"),
        "coadd patch, stored value": (
            f"view=metric&metric=health.objectCount&tract={tract}&patch={patch}",
            f"/api/metric/health.objectCount.json?tract={tract}&patch={patch}",
            f"/api/metric/health.objectCount.json?tract={tract}"),
        "visit": (f"view=visits&{offset}", f"/api/visits/health.astromOffset.json?visit={visit}", None),
        "detector": (f"view=visits&{offset}&detector={detector}",
                     f"/api/visits/health.astromOffset.json?visit={visit}&detector={detector}",
                     f"/api/visits/health.astromOffset.json?visit={visit}"),
    }


@pytest.mark.parametrize("level", ["coadd tract", "coadd patch, value from its rows", "coadd patch, stored value",
                                   "visit", "detector"])
def test_notebook_from_another_folder_prints_what_the_page_shows(server, demo_repo, truth, tmp_path, level):
    query, twin, parent_twin = _levels(truth)[level]
    assert Path(server.config.repo) == Path(demo_repo[0]).resolve()  # made absolute when the server started
    text = get(server, f"/api/notebook.ipynb?{query}")
    setup = nbformat.reads(text, as_version=4).cells[1].source
    assert f"QARepository({server.config.repo!r}, {demo_repo[1]!r})" in setup  # the absolute path, not 'demo-repo'
    nb, printed = execute(text, tmp_path / "elsewhere")
    check_drill(printed, get(server, twin), get(server, parent_twin) if parent_twin else None)
    assert images(nb) >= 1, "the page's plots are drawn again"


def test_focal_plane_notebook_prints_what_the_page_shows(server, truth, tmp_path):
    detector = truth["defects"]["bad_astrometry_detector"]["detector"]
    query = f"metric=health.astromOffset&band=r&detector={detector}"
    nb, printed = execute(get(server, f"/api/notebook.ipynb?view=focalplane&{query}"), tmp_path)
    page = get(server, f"/api/focalplane/health.astromOffset.json?{query}")
    assert page["reference_visit"] is not None and f"reference layout: visit {page['reference_visit']}" in printed
    failing = sorted((d for d in page["detectors"] if d["n_fail"] > 0), key=lambda d: (-d["n_fail"], d["detector"]))
    assert f"{len(page['detectors'])} detectors, {len(failing)} failing in some visit" in printed
    assert [d["detector"] for d in failing] == [detector]
    for d in failing:
        assert f"detector {d['detector']} ({d['n_fail']} of {d['n']} visits, median {number(d['value'])}" in printed
    mine = next(d for d in page["detectors"] if d["detector"] == detector)
    assert (f"detector {detector}: median {number(mine['value'])} {page['unit']} over {mine['n']} visits, "
            f"{mine['n_fail']} failing; {len(page['visits'])} visits:") in printed
    for visit in page["visits"]:
        assert f"visit {visit['visit']}: {said(visit, page['unit'])}" in printed
    assert images(nb) >= 1


# -- a real Jupyter server -------------------------------------------------------------------------------------

def test_jupyter_url_receives_the_notebook_the_button_sends(jupyter_server_dashboard, jupyter, truth, tmp_path):
    """The button's route (``POST /api/jupyter`` with the page's query) puts the notebook into the
    Jupyter server; read back through that server's contents API, it runs and prints the page's numbers."""
    handle = jupyter_server_dashboard
    assert handle.config.jupyter.base == jupyter["base"] and handle.config.jupyter.ui == "lab"
    query = {"view": "visits", "metric": "health.astromOffset", "show_visits": "true"}  # as the page's URL has it
    response = httpx.post(handle.url + "api/jupyter", json=query, timeout=60)
    assert response.status_code == 200, response.text
    opened = response.json()
    assert opened["path"] == "surveyqa/surveyqa_astromOffset_visits.ipynb"
    assert opened["url"] == f"{jupyter['base']}/lab/tree/{opened['path']}" and jupyter["token"] not in opened["url"]
    assert (jupyter["root"] / opened["path"]).is_file()
    stored = httpx.get(f"{jupyter['base']}/api/contents/{opened['path']}", params={"content": "1"},
                       headers={"Authorization": f"token {jupyter['token']}"}, timeout=30)
    assert stored.status_code == 200 and stored.json()["type"] == "notebook"
    nb, printed = execute(stored.json()["content"], tmp_path)
    check_drill(printed, get(handle, "/api/visits/health.astromOffset.json"))
    assert images(nb) >= 1


def test_jupyter_unreachable_or_refusing_is_said_with_a_hint(demo_repo, jupyter):
    dead = f"http://127.0.0.1:{_free_port()}/lab?token=abc"
    wrong = f"{jupyter['base']}/?token=not-the-token"
    for url, needle in ((dead, "cannot reach the Jupyter server"), (wrong, "refused")):
        handle = _serve_relative(demo_repo, jupyter_url=url)
        try:
            response = httpx.post(handle.url + "api/jupyter", json={"metric": "validate_drp.PA1"}, timeout=60)
        finally:
            handle.stop()
        body = response.json()
        assert response.status_code == 502 and needle in body["error"] and body["hint"], body
        assert "not-the-token" not in body["error"] + body["hint"] and "abc" not in body["error"]


@pytest.mark.browser
def test_the_button_opens_the_notebook_in_jupyter_or_says_why_not(jupyter_server_dashboard, jupyter, demo_repo,
                                                                   truth):
    """The button in Chromium: a new tab at the notebook in Jupyter; with Jupyter down, the error on the page."""
    require_chromium(browser.chromium_path())
    visit = truth["defects"]["bad_zeropoint_visit"]["visit"]
    detector = truth["defects"]["bad_astrometry_detector"]["detector"]
    query = f"?view=visits&metric=health.astromOffset&visit={visit}&detector={detector}"
    name = f"surveyqa/surveyqa_astromOffset_visits_visit{visit}_detector{detector}.ipynb"
    down = _serve_relative(demo_repo, jupyter_url=f"http://127.0.0.1:{_free_port()}/lab?token=abc")
    try:
        with browser.launch() as page:
            page.goto(jupyter_server_dashboard.url + query, wait_until="domcontentloaded")
            browser.wait_for_plot(page, "series", [f"detector:{detector}"])
            with page.context.expect_page() as tab:
                browser.shown(page, ".sq-jupyter button").first.click()
            page.wait_for_selector(f"{browser.SHOWN_PAGE} .sq-jupyter-opened", timeout=30_000)
            tab.value.wait_for_url(f"{jupyter['base']}/lab/tree/{name}", timeout=30_000)
            assert (jupyter["root"] / name).is_file()
            tab.value.close()

            page.goto(down.url + query, wait_until="domcontentloaded")
            browser.wait_for_plot(page, "series", [f"detector:{detector}"])
            browser.shown(page, ".sq-jupyter button").first.click()
            error = page.wait_for_selector(f"{browser.SHOWN_PAGE} .sq-jupyter-error", timeout=30_000)
            assert "cannot reach the Jupyter server" in error.inner_text()
            deadline = time.monotonic() + 10  # the tab opened by the click is closed again
            while len(page.context.pages) > 1 and time.monotonic() < deadline:
                page.wait_for_timeout(100)
            assert len(page.context.pages) == 1
    finally:
        down.stop()


def test_jupyter_route_without_jupyter_url_says_how(server):
    response = httpx.post(server.url + "api/jupyter", json={"metric": "validate_drp.PA1"}, timeout=30)
    assert response.status_code == 404 and "--jupyter-url" in response.json()["hint"]


@pytest.mark.parametrize("url,base,folder,ui,token", [
    ("http://127.0.0.1:8888/lab?token=abc", "http://127.0.0.1:8888", "surveyqa", "lab", "abc"),
    ("http://localhost:8888/tree?token=tok3n", "http://localhost:8888", "surveyqa", "notebooks", "tok3n"),
    ("http://127.0.0.1:8888/?token=tok3n", "http://127.0.0.1:8888", "surveyqa", None, "tok3n"),
    ("https://hub.example.org/user/me/lab/tree/work/qa?token=tok3n", "https://hub.example.org/user/me", "work/qa",
     "lab", "tok3n"),
    ("http://127.0.0.1:8888/notebooks/work/x.ipynb", "http://127.0.0.1:8888", "work", "notebooks", None),
])
def test_jupyter_url_forms(url, base, folder, ui, token):
    server = notebook.parse_jupyter_url(url)
    assert (server.base, server.folder, server.ui, server.token) == (base, folder, ui, token)
    assert token is None or token not in repr(server)


@pytest.mark.parametrize("url", ["127.0.0.1:8888", "ftp://host/x?token=s3cret", "localhost:8888/lab?token=s3cret"])
def test_a_bad_jupyter_url_is_refused_before_serving(demo_repo, url):
    from surveyqa.dashboard import serve
    from surveyqa.errors import SurveyQAError

    with pytest.raises(SurveyQAError, match="not an http") as refused:
        serve(*demo_repo, jupyter_url=url)
    assert "s3cret" not in str(refused.value) and refused.value.hint


# -- hostile input ---------------------------------------------------------------------------------------------

def test_hostile_query_answers_4xx_and_writes_nothing(server, jupyter_server_dashboard, jupyter, tmp_path):
    marker = tmp_path / "pwn"
    attack = f"x'); import os; os.system('touch {marker}'); ('"
    written = sorted(server.config.notebook_dir.iterdir())
    in_jupyter = sorted(jupyter["root"].rglob("*"))
    for query, status, needle in [
        ({"metric": attack}, 404, "no metric"),
        ({"view": "visits", "metric": attack}, 404, "no metric"),
        ({"view": attack, "metric": "validate_drp.PA1"}, 400, "is not a view"),
        ({"metric": "validate_drp.PA1", "band": attack}, 400, "is not a band of validate_drp.PA1"),
        ({"metric": "validate_drp.PA1", "tract": f"1); os.system('touch {marker}'"}, 400, "is not an integer"),
        ({"view": "visits", "metric": "health.astromOffset", "visit": "1_0"}, 400, "is not an integer"),
        ({"view": "visits", "metric": "health.astromOffset", "visit": "999999"}, 404, "no visit 999999"),
        ({"view": "compare_metric", "metric": "validate_drp.PA1"}, 400, "a notebook opens one"),
    ]:
        response = httpx.get(server.url + "api/notebook.ipynb", params=query, timeout=30)
        assert response.status_code == status and needle in response.json()["error"], (query, response.text)
        assert response.json()["hint"]
        posted = httpx.post(jupyter_server_dashboard.url + "api/jupyter", json=query, timeout=30)
        assert posted.status_code == status and needle in posted.json()["error"], (query, posted.text)
    assert not marker.exists()
    assert sorted(server.config.notebook_dir.iterdir()) == written
    assert sorted(jupyter["root"].rglob("*")) == in_jupyter


def test_the_notebook_holds_query_values_as_literals_only(tmp_path):
    """Even a Place made without the repository's check holds its strings as Python literals (repr)."""
    from surveyqa.errors import SurveyQAError

    attack = "x'); import os; os.system('touch /nonexistent/pwn'); ('"
    nb = notebook.make_notebook(str(tmp_path / "r'epo"), attack, notebook.Place("metric", attack, attack, tract=1))
    calls = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            tree = ast.parse("\n".join(l for l in cell.source.splitlines() if not l.startswith("%")))
            calls += [ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)]
            assert "os.system" not in {ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert "os.system" not in calls and {"QARepository", "metric_view", "plot_drill"} <= set(calls)
    with pytest.raises(SurveyQAError, match="must be an integer"):
        notebook.Place("metric", attack, tract="1); os.system('x')")
    with pytest.raises(TypeError):
        notebook.make_notebook("repo", "c", {"view": "metric", "metric": attack})


def test_relative_and_uri_locations():
    assert notebook.repository_location("s3://bucket/repo") == "s3://bucket/repo"
    assert notebook.repository_location("file:///data/repo") == "file:///data/repo"
    assert notebook.repository_location("https://example.org/butler") == "https://example.org/butler"
    assert notebook.repository_location("demo-repo") == str(Path.cwd() / "demo-repo")
