"""data.fetch offline: resource selection on a hand-made CKAN payload, a local portal, no network.

The local portal is a plain-HTTP server on 127.0.0.1 reached through a fake
`urllib.request.urlopen` that maps the https portal address onto it, since
data.fetch fetches https URLs only."""

import functools
import io
import http.server
import json
import threading
import urllib.error
import urllib.request

import pytest

from data import fetch
from data.fetch import PortalUnreachable, parse_years, select_workbook_resources
from data.paths import sha256_of_file
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
    code = fetch.main(["--portal", "https://127.0.0.1:9", "--dest", str(tmp_path / "raw"), "--timeout", "5"])
    assert code == 1
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach https://127.0.0.1:9/api/3/action/package_show")
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


PORTAL = "https://ckan.test"


@pytest.fixture
def local_portal(tmp_path, monkeypatch):
    """A CKAN look-alike on localhost serving two good workbooks and one garbage 'workbook'."""
    root = tmp_path / "portal"
    (root / "api" / "3" / "action").mkdir(parents=True)
    write_workbook(root / "files" / "ttc-streetcar-delay-data-2014.xlsx", {"Jan 2014": [record("2014-01-02")]})
    write_workbook(root / "files" / "ttc-streetcar-delay-data-2015.xlsx", {"Jan 2015": [record("2015-01-02")]})
    (root / "files" / "ttc-streetcar-delay-data-2016.xlsx").write_bytes(b"<html>not found</html>")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    base = f"http://127.0.0.1:{server.server_address[1]}"
    resources = [{"name": f"ttc-streetcar-delay-data-{year}", "format": "XLSX",
                  "url": f"{PORTAL}/files/ttc-streetcar-delay-data-{year}.xlsx"} for year in (2014, 2015, 2016)]
    real_urlopen = urllib.request.urlopen

    def via_local_server(request, timeout=None):
        """Serve https://ckan.test/... from the local server; the response still reports the https URL."""
        assert request.full_url.startswith(PORTAL), request.full_url
        response = real_urlopen(request.full_url.replace(PORTAL, base, 1), timeout=timeout)
        response.url = request.full_url
        return response

    monkeypatch.setattr(urllib.request, "urlopen", via_local_server)
    (root / "api" / "3" / "action" / "package_show").write_text(
        json.dumps({"success": True, "result": {"name": "ttc-streetcar-delay-data", "resources": resources}}))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield PORTAL
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


# -- untrusted downloads: https only, a size cap, known checksums -------------------------

@pytest.mark.parametrize("portal", ["file:///etc", "http://ckan.example", "ftp://ckan.example"])
def test_a_portal_that_is_not_https_is_refused_with_one_line(portal, tmp_path, capsys, monkeypatch):
    def must_not_open(*args, **kwargs):
        raise AssertionError("urlopen called for a non-https URL")

    monkeypatch.setattr(urllib.request, "urlopen", must_not_open)
    code = fetch.main(["--portal", portal, "--dest", str(tmp_path / "raw")])
    lines = capsys.readouterr().err.splitlines()
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith(f"error: refusing URL {portal}/api/3/action/package_show") and "only https" in lines[0]


def test_a_resource_url_that_is_not_https_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("urlopen called"))
    with pytest.raises(ValueError, match=r"refusing resource URL file:///etc/passwd: only https"):
        fetch.download_workbook("file:///etc/passwd", tmp_path / "raw" / "x.xlsx")
    assert not (tmp_path / "raw").exists()


class FakeResponse(io.BytesIO):
    def __init__(self, body, url):
        super().__init__(body)
        self.url = url

    def geturl(self):
        return self.url


def test_a_redirect_away_from_https_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", lambda request, timeout=None: FakeResponse(b"x", "http://evil.test/x"))
    with pytest.raises(ValueError, match=r"redirected to http://evil.test/x, which is not https"):
        fetch.download_workbook("https://ckan.test/x.xlsx", tmp_path / "raw" / "x.xlsx")
    assert list((tmp_path / "raw").iterdir()) == []


def test_a_body_over_the_size_cap_is_refused_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(fetch, "MAXIMUM_DOWNLOAD_BYTES", 1000)
    monkeypatch.setattr(urllib.request, "urlopen",
                        lambda request, timeout=None: FakeResponse(b"A" * 5000, request.full_url))
    with pytest.raises(ValueError, match=r"https://ckan.test/x.xlsx sent more than 1,000 bytes"):
        fetch.download_workbook("https://ckan.test/x.xlsx", tmp_path / "raw" / "x.xlsx")
    assert list((tmp_path / "raw").iterdir()) == []


def write_checksums(path, entries):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{digest}  {name}\n" for name, digest in entries.items()))
    return path


def test_a_download_that_does_not_match_its_checksum_is_not_kept(local_portal, tmp_path, capsys):
    dest = tmp_path / "raw"
    write_checksums(dest / "SHA256SUMS", {"ttc-streetcar-delay-data-2014.xlsx": "0" * 64})
    code = fetch.main(["--portal", local_portal, "--dest", str(dest), "--years", "2014"])
    lines = capsys.readouterr().err.splitlines()
    assert code == 2 and len(lines) == 1
    assert "for ttc-streetcar-delay-data-2014.xlsx" in lines[0]
    assert f"does not match the known checksum {'0' * 64}" in lines[0]
    assert sorted(path.name for path in dest.iterdir()) == ["SHA256SUMS"]      # no workbook, no temp file


def test_downloads_matching_their_checksums_are_kept_and_a_changed_kept_file_is_an_error(local_portal, tmp_path):
    served = tmp_path / "portal" / "files"
    checksums = write_checksums(tmp_path / "sums" / "SHA256SUMS", {
        name: sha256_of_file(served / name)
        for name in ("ttc-streetcar-delay-data-2014.xlsx", "ttc-streetcar-delay-data-2015.xlsx")})
    dest = tmp_path / "raw"
    paths = fetch.fetch_workbooks(dest, years=[2014, 2015], portal=local_portal, checksums_file=checksums,
                                  log=lambda message: None)
    assert [path.read_bytes() for path in paths] == [(served / path.name).read_bytes() for path in paths]
    (dest / "ttc-streetcar-delay-data-2015.xlsx").write_bytes(b"tampered")
    with pytest.raises(ValueError, match=r"ttc-streetcar-delay-data-2015.xlsx \(kept; --force downloads it again\): "
                                         r"sha256 [0-9a-f]{64} does not match"):
        fetch.fetch_workbooks(dest, years=[2015], portal=local_portal, checksums_file=checksums, log=lambda m: None)


def test_a_malformed_checksums_file_names_its_line(tmp_path):
    path = tmp_path / "SHA256SUMS"
    path.write_text(f"{'a' * 64}  good.xlsx\nnot a checksum line\n")
    with pytest.raises(ValueError, match=r"SHA256SUMS line 2: 'not a checksum line' is not"):
        fetch.read_checksums(path)
