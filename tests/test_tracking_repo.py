"""`surveyqa track submit REPO --collection C`: a real repository's metric values reach the
tracking service over HTTP with their data IDs, once, and link back to the drill-down."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from tracking_fixtures import db_url, make_server  # noqa: F401

from surveyqa.butler import QARepository
from surveyqa.cli import main


@pytest.mark.slow
def test_repository_values_are_tracked_per_data_id(demo_repo, make_server, capsys):
    repo, collection = demo_repo
    server = make_server()
    token = server.token("ci")
    stored = QARepository(repo, collection).metric_values()
    finite = stored[stored["value"].notna()]

    args = ["track", "submit", repo, "--collection", collection, "--server", server.url, "--token", token]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "stored run" in first
    assert main(args) == 0
    assert "already stored, nothing changed" in capsys.readouterr().out

    with server.client() as http:
        runs = http.get("/api/runs").json()
        runs = runs["runs"] if isinstance(runs, dict) else runs
        assert len(runs) == 1
        run = http.get(f"/runs/{runs[0]['id']}.json").json()
        assert (run.get("run") or run)["collection"] == collection

        # One detector-level value of the injected bad detector, found again by its data ID.
        row = finite[finite["level"] == "detector"].iloc[0]
        series = http.get(
            f"/metrics/{row['metric']}.json", params={"visit": int(row["visit"]), "detector": int(row["detector"])}
        ).json()
    points = [p for s in series["series"] for p in s["points"]]
    assert any(p["value"] == pytest.approx(row["value"]) for p in points)
    # The point's link opens the drill-down dashboard on this run's repository, at this detector.
    link = points[0]["link"]
    opened = httpx.get(link, follow_redirects=False, timeout=120)
    assert opened.status_code == 307, opened.text
    target = urlparse(opened.headers["location"])
    state = parse_qs(target.query)
    assert state["view"] == ["visits"] and state["metric"] == [row["metric"]]
    assert state["visit"] == [str(int(row["visit"]))] and state["detector"] == [str(int(row["detector"]))]
    page = httpx.get(f"{target.scheme}://{target.netloc}/api/visits/{row['metric']}.json",
                     params={"visit": int(row["visit"]), "band": row["band"]}, timeout=120).json()
    assert any(d["detector"] == int(row["detector"]) and d["value"] == pytest.approx(row["value"])
               for d in page["children"])
