"""data.fetch offline: resource selection on a hand-made CKAN payload, a local portal, no network."""

import functools
import http.server
import json
import threading
import urllib.error
import urllib.request

import pytest

from data import fetch
from data.fetch import PortalUnreachable, parse_years, select_workbook_resources
from data.tests.helpers import record, write_workbook

BASE = "https://ckan.example/dataset/ttc/resource"


def resource(name, url_file, format_="XLSX", modified="2020-01-01T00:00:00"):
    return {"id": name, "name": name, "format": format_, "url": f"{BASE}/{name}/download/{url_file}",
            "datastore_active": False, "last_modified": modified}


PACKAGE = {"resources": [
    resource("ttc-streetcar-delay-data-readme", "ttc-streetcar-delay-data-readme.xlsx"),
    *[resource(f"ttc-streetcar-delay-data-{year}", f"ttc-streetcar-delay-data-{year}.xlsx") for year in range(2014, 2021)],
    resource("ttc-streetcar-delay-data-2017", "ttc-streetcar-delay-data-2017-revised.xlsx", modified="2021-05-01"),
    resource("ttc-streetcar-delay-data-2018", "ttc-streetcar-delay-data-2018.csv", format_="CSV", modified="2030-01-01"),
    resource("Streetcar delays 2019 (new)", "download?id=42", format_="xlsx", modified="2019-01-01"),
]}


def test_selects_one_xlsx_per_year_latest_modified_wins():
    selected = select_workbook_resources(PACKAGE, range(2014, 2020))
    assert [entry["year"] for entry in selected] == [2014, 2015, 2016, 2017, 2018, 2019]
    assert [entry["file_name"] for entry in selected] == [
        "ttc-streetcar-delay-data-2014.xlsx", "ttc-streetcar-delay-data-2015.xlsx",
        "ttc-streetcar-delay-data-2016.xlsx", "ttc-streetcar-delay-data-2017-revised.xlsx",
        "ttc-streetcar-delay-data-2018.xlsx", "ttc-streetcar-delay-data-2019.xlsx"]
    assert selected[3]["url"].endswith("/ttc-streetcar-delay-data-2017/download/ttc-streetcar-delay-data-2017-revised.xlsx")


def test_unsafe_or_missing_file_name_gets_a_standard_one():
    package = {"resources": [resource("Streetcar delays 2019 (new)", "download?id=42", format_="xlsx")]}
    assert select_workbook_resources(package, [2019])[0]["file_name"] == "ttc-streetcar-delay-data-2019.xlsx"


def test_a_missing_year_is_an_error_listing_the_resources():
    with pytest.raises(ValueError, match=r"no workbook for 2013; it lists: ttc-streetcar-delay-data-readme"):
        select_workbook_resources(PACKAGE, [2013, 2014])
    with pytest.raises(ValueError, match="lists no resources"):
        select_workbook_resources({}, [2014])


@pytest.mark.parametrize("text, years", [("2014-2019", (2014, 2015, 2016, 2017, 2018, 2019)), ("2017", (2017,)),
                                         ("2016,2014", (2014, 2016))])
def test_parse_years(text, years):
    assert parse_years(text) == years


def test_parse_years_rejects_nonsense():
    import argparse

    for text in ("2019-2014", "last year", "14"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_years(text)


def test_offline_fails_with_one_line_and_exit_1(tmp_path, capsys):
    # Port 9 (discard) on localhost refuses connections: an offline portal without touching the network.
    code = fetch.main(["--portal", "http://127.0.0.1:9", "--dest", str(tmp_path / "raw"), "--timeout", "5"])
    assert code == 1
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach http://127.0.0.1:9/api/3/action/package_show")
    assert "offline" in lines[0] and captured.out == ""
    assert not (tmp_path / "raw").exists()


def test_urlopen_failure_becomes_portal_unreachable(monkeypatch):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(PortalUnreachable, match="Temporary failure in name resolution"):
        fetch.fetch_package(fetch.DEFAULT_PORTAL)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def local_portal(tmp_path):
    """A CKAN look-alike on localhost serving two good workbooks and one garbage 'workbook'."""
    root = tmp_path / "portal"
    (root / "api" / "3" / "action").mkdir(parents=True)
    write_workbook(root / "files" / "ttc-streetcar-delay-data-2014.xlsx", {"Jan 2014": [record("2014-01-02")]})
    write_workbook(root / "files" / "ttc-streetcar-delay-data-2015.xlsx", {"Jan 2015": [record("2015-01-02")]})
    (root / "files" / "ttc-streetcar-delay-data-2016.xlsx").write_bytes(b"<html>not found</html>")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    base = f"http://127.0.0.1:{server.server_address[1]}"
    resources = [{"name": f"ttc-streetcar-delay-data-{year}", "format": "XLSX",
                  "url": f"{base}/files/ttc-streetcar-delay-data-{year}.xlsx"} for year in (2014, 2015, 2016)]
    (root / "api" / "3" / "action" / "package_show").write_text(
        json.dumps({"success": True, "result": {"name": "ttc-streetcar-delay-data", "resources": resources}}))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield base
    server.shutdown()
    server.server_close()


def test_downloads_verifies_and_keeps_existing_files(local_portal, tmp_path):
    dest = tmp_path / "raw"
    messages = []
    paths = fetch.fetch_workbooks(dest, years=[2014, 2015], portal=local_portal, timeout=10, log=messages.append)
    assert [path.name for path in paths] == ["ttc-streetcar-delay-data-2014.xlsx", "ttc-streetcar-delay-data-2015.xlsx"]
    assert sorted(path.name for path in dest.iterdir()) == [path.name for path in paths]
    assert all(message.startswith("fetched") for message in messages)
    (dest / "ttc-streetcar-delay-data-2014.xlsx").write_bytes(b"local copy")
    messages.clear()
    fetch.fetch_workbooks(dest, years=[2014], portal=local_portal, timeout=10, log=messages.append)
    assert messages[0].startswith("kept") and (dest / "ttc-streetcar-delay-data-2014.xlsx").read_bytes() == b"local copy"
    fetch.fetch_workbooks(dest, years=[2014], portal=local_portal, timeout=10, force=True, log=messages.append)
    assert (dest / "ttc-streetcar-delay-data-2014.xlsx").read_bytes()[:2] == b"PK"


def test_a_download_that_is_no_workbook_leaves_nothing(local_portal, tmp_path, capsys):
    dest = tmp_path / "raw"
    code = fetch.main(["--portal", local_portal, "--dest", str(dest), "--years", "2016"])
    assert code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "ttc-streetcar-delay-data-2016.xlsx is not a usable workbook" in lines[0]
    assert list(dest.iterdir()) == []          # no file, no temp file


def test_http_error_is_portal_unreachable(local_portal, tmp_path):
    with pytest.raises(PortalUnreachable, match="HTTP 404"):
        fetch.download_workbook(f"{local_portal}/files/missing.xlsx", tmp_path / "raw" / "x.xlsx", timeout=10)
    assert list((tmp_path / "raw").iterdir()) == []
