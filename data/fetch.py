"""Download the yearly TTC Streetcar Delay workbooks from the City of Toronto Open Data portal.

    python -m data.fetch                       # 2014-2019 into data/raw/, skipping files already there
    python -m data.fetch --dest DIR --force    # re-download everything
    python -m data.fetch --years 2014-2019     # a year or an inclusive range
    python -m data.fetch --checksums SHA256SUMS   # verify each file against `sha256sum` lines

The portal is a CKAN site: `package_show?id=ttc-streetcar-delay-data` lists
the package's resources (one workbook per year, plus newer years and a
readme).  We keep the XLSX resources whose name or file name carries a year in
the requested range (the latest-modified one if a year appears twice), download
each to a hidden temp file beside its destination, check that it opens as a
workbook with the columns data.load needs, and only then rename it into place:
an interrupted or bad download never leaves a file that `data.prepare` would
read.  The data is published under the Open Government Licence - Toronto.

What is downloaded is untrusted, so: only https URLs are fetched (the portal,
every resource, and any redirect; a `file://` or `http://` URL is refused),
no body may exceed MAXIMUM_DOWNLOAD_BYTES, and when a checksum list is known
(`--checksums FILE`, or a SHA256SUMS file in the destination folder, in the
format `sha256sum` writes) every workbook it names must match it, downloaded
or kept.

Offline (or with the portal down) the command fails with one line on stderr
and exit code 1; bad arguments or a payload that lists no workbook give exit
code 2.  The project's tests run offline, so they exercise this module against
a local HTTP server and a bogus address, never the real portal.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from configs.cli import OneLineArgumentParser
from configs.console import run_main
from data.atomic import atomic_path
from data.load import read_workbook_columns
from data.paths import DEFAULT_RAW_DIR, sha256_of_file

DEFAULT_PORTAL = "https://ckan0.cf.opendata.inter.prod-toronto.ca"
PACKAGE_ID = "ttc-streetcar-delay-data"
CATALOGUE_PAGE = "https://open.toronto.ca/dataset/ttc-streetcar-delay-data/"
DEFAULT_YEARS = tuple(range(2014, 2020))  # the six workbooks data/tests/test_real_data.py counts
WORKBOOK_FORMATS = ("xlsx", "xls")
TIMEOUT_SECONDS = 60
# The six real workbooks are 0.6-2.1 MB; 64 MiB leaves room for growth and stops a runaway body.
MAXIMUM_DOWNLOAD_BYTES = 64 * 1024 * 1024
CHECKSUMS_FILE_NAME = "SHA256SUMS"
_CHECKSUM_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")
_YEAR_PATTERN = re.compile(r"(?<!\d)(20\d\d)(?!\d)")
_SAFE_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.xlsx?$")


class PortalUnreachable(Exception):
    """The portal (or a download) could not be reached: offline, DNS, refused, timeout, HTTP error."""


def package_show_url(portal: str, package_id: str = PACKAGE_ID) -> str:
    return f"{portal.rstrip('/')}/api/3/action/package_show?{urllib.parse.urlencode({'id': package_id})}"


def require_https(url: str, what: str = "URL") -> None:
    """ValueError unless `url` is an https URL: no file://, no plain http, no ftp."""
    scheme = urllib.parse.urlparse(url).scheme.lower()
    if scheme != "https":
        raise ValueError(f"refusing {what} {url}: only https URLs are fetched (got {scheme or 'no'} scheme)")


def open_url(url: str, timeout: float):
    """urlopen of an https URL, with every network failure turned into PortalUnreachable naming the URL."""
    require_https(url)
    request = urllib.request.Request(url, headers={"User-Agent": "streetcar-delay-port data.fetch"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        raise PortalUnreachable(f"{url} answered HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise PortalUnreachable(f"cannot reach {url} ({error.reason})") from None
    except (socket.timeout, TimeoutError, ConnectionError) as error:
        raise PortalUnreachable(f"cannot reach {url} ({type(error).__name__}: {error})") from None
    final_url = response.geturl()
    if urllib.parse.urlparse(final_url).scheme.lower() != "https":
        response.close()
        raise ValueError(f"refusing {url}: it redirected to {final_url}, which is not https")
    return response


def copy_capped(response, stream, url: str, limit: int | None = None) -> int:
    """Copy the body into `stream`; ValueError past `limit` (default MAXIMUM_DOWNLOAD_BYTES) bytes. Returns the size."""
    limit = MAXIMUM_DOWNLOAD_BYTES if limit is None else limit
    size = 0
    while chunk := response.read(1024 * 1024):
        size += len(chunk)
        if size > limit:
            raise ValueError(f"{url} sent more than {limit:,} bytes; refusing it (the TTC workbooks are a few MB)")
        stream.write(chunk)
    return size


def read_capped(response, url: str, limit: int | None = None) -> bytes:
    body = io.BytesIO()
    copy_capped(response, body, url, limit)
    return body.getvalue()


def fetch_package(portal: str, timeout: float = TIMEOUT_SECONDS) -> dict[str, Any]:
    """The CKAN package description (the `result` of package_show)."""
    url = package_show_url(portal)
    try:
        with open_url(url, timeout) as response:
            payload = json.loads(read_capped(response, url).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{url} did not return CKAN JSON ({error})") from None
    except OSError as error:  # a connection reset while reading the body
        raise PortalUnreachable(f"cannot read {url} ({error})") from None
    if not isinstance(payload, dict) or not payload.get("success") or not isinstance(payload.get("result"), dict):
        raise ValueError(f"{url} did not return a successful CKAN package_show answer")
    return payload["result"]


def resource_year(resource: Mapping[str, Any]) -> int | None:
    """The year a resource covers, read from its name, else from its file name."""
    for text in (str(resource.get("name") or ""), resource_file_name_from_url(resource)):
        match = _YEAR_PATTERN.search(text)
        if match:
            return int(match.group(1))
    return None


def resource_file_name_from_url(resource: Mapping[str, Any]) -> str:
    return Path(urllib.parse.urlparse(str(resource.get("url") or "")).path).name


def is_workbook_resource(resource: Mapping[str, Any]) -> bool:
    format_text = str(resource.get("format") or "").strip().lower().lstrip(".")
    return format_text in WORKBOOK_FORMATS or resource_file_name_from_url(resource).lower().endswith(
        tuple("." + suffix for suffix in WORKBOOK_FORMATS))


def target_file_name(resource: Mapping[str, Any], year: int) -> str:
    """The portal's own file name when it is a plain one, else ttc-streetcar-delay-data-<year>.xlsx."""
    name = urllib.parse.unquote(resource_file_name_from_url(resource))
    return name if _SAFE_FILE_NAME.match(name) else f"{PACKAGE_ID}-{year}.xlsx"


def select_workbook_resources(package: Mapping[str, Any], years: Iterable[int]) -> list[dict[str, Any]]:
    """[{'year', 'name', 'url', 'file_name'}] for each wanted year, sorted by year.

    Only XLSX/XLS resources with a year in `years` count; when a year has
    several, the one modified last wins.  ValueError if a wanted year has none.
    """
    wanted = sorted(set(years))
    chosen: dict[int, Mapping[str, Any]] = {}
    resources = package.get("resources")
    if not isinstance(resources, list):
        raise ValueError("the CKAN package lists no resources")
    for resource in resources:
        if not isinstance(resource, Mapping) or not resource.get("url") or not is_workbook_resource(resource):
            continue
        year = resource_year(resource)
        if year not in wanted:
            continue
        previous = chosen.get(year)
        if previous is None or str(resource.get("last_modified") or "") > str(previous.get("last_modified") or ""):
            chosen[year] = resource
    missing = [year for year in wanted if year not in chosen]
    if missing:
        listed = ", ".join(str(resource.get("name")) for resource in resources if isinstance(resource, Mapping))
        raise ValueError(f"the package {PACKAGE_ID!r} has no workbook for {', '.join(map(str, missing))}; "
                         f"it lists: {listed or 'nothing'}")
    return [{"year": year, "name": str(chosen[year].get("name")), "url": str(chosen[year]["url"]),
             "file_name": target_file_name(chosen[year], year)} for year in wanted]


def verify_workbook(path: Path) -> int:
    """Number of sheets with records; ValueError naming the file if it is no usable TTC workbook."""
    return len(read_workbook_columns(path))


def download_workbook(url: str, destination: Path, timeout: float = TIMEOUT_SECONDS,
                      expected_sha256: str | None = None) -> int:
    """Download to a hidden temp file, verify it, rename into place; returns the size in bytes.

    The temp name keeps the .xlsx suffix (readers pick the format by it) and
    starts with '.', which data.paths never reads: a leftover is ignored.
    """
    require_https(url, "resource URL")
    with atomic_path(destination) as temporary:
        with open(temporary, "wb") as stream:
            try:
                with open_url(url, timeout) as response:
                    size = copy_capped(response, stream, url)
            except OSError as error:  # reset mid-body
                raise PortalUnreachable(f"download of {url} failed ({error})") from None
        if expected_sha256 is not None:
            check_sha256(temporary, expected_sha256, f"{url} (for {destination.name})")
        try:
            verify_workbook(temporary)
        except ValueError as error:
            raise ValueError(f"{url} is not a usable workbook: {error}") from None
    return size


def check_sha256(path: Path, expected: str, what: str) -> None:
    actual = sha256_of_file(path)
    if actual != expected.lower():
        raise ValueError(f"{what}: sha256 {actual} does not match the known checksum {expected.lower()}; "
                         f"nothing was kept")


def read_checksums(path: Path) -> dict[str, str]:
    """{file name: sha256} from a `sha256sum`-style file; ValueError naming the line that is not one."""
    checksums = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        match = _CHECKSUM_LINE.match(line.strip())
        if not match:
            raise ValueError(f"{path} line {number}: {line.strip()[:60]!r} is not '<64 hex digits>  <file name>'")
        checksums[Path(match.group(2)).name] = match.group(1).lower()
    return checksums


def known_checksums(dest: Path, checksums_file: Path | None) -> dict[str, str]:
    """The checksums named by --checksums, else those of dest/SHA256SUMS if present, else none."""
    if checksums_file is not None:
        return read_checksums(checksums_file)
    default = Path(dest) / CHECKSUMS_FILE_NAME
    return read_checksums(default) if default.is_file() else {}


def fetch_workbooks(dest: Path = DEFAULT_RAW_DIR, *, years: Iterable[int] = DEFAULT_YEARS, force: bool = False,
                    portal: str = DEFAULT_PORTAL, timeout: float = TIMEOUT_SECONDS,
                    checksums_file: Path | None = None, log=None) -> list[Path]:
    """Download the workbooks of `years` into `dest`; existing files are kept unless force.

    A workbook named in the known checksums must match them, whether it was
    downloaded now (else it is not kept) or kept from before (else an error).
    """
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    checksums = known_checksums(Path(dest), checksums_file)
    package = fetch_package(portal, timeout)
    selected = select_workbook_resources(package, years)
    paths = []
    for resource in selected:
        destination = Path(dest) / resource["file_name"]
        expected = checksums.get(destination.name)
        if destination.exists() and not force:
            if expected is not None:
                check_sha256(destination, expected, f"{destination} (kept; --force downloads it again)")
            log(f"kept     {destination} (exists; --force to download again)")
        else:
            size = download_workbook(resource["url"], destination, timeout, expected_sha256=expected)
            log(f"fetched  {destination} ({size:,} bytes, sha256 {sha256_of_file(destination)})")
        paths.append(destination)
    return paths


def parse_years(text: str) -> tuple[int, ...]:
    """'2014-2019' or '2017' or '2014,2016' -> years; argparse type."""
    years: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d{4})\s*(?:-\s*(\d{4})\s*)?", part)
        if not match:
            raise argparse.ArgumentTypeError(f"{text!r}: use a year (2017), a range (2014-2019) or a list (2014,2016)")
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        if first > last:
            raise argparse.ArgumentTypeError(f"{part.strip()!r}: the range runs backwards")
        years.extend(range(first, last + 1))
    return tuple(sorted(set(years)))


def fetch_command(argv: Sequence[str] | None) -> int:
    """Parse the flags and fetch; errors are raised for configs.console.run_main to print."""
    parser = OneLineArgumentParser(prog="python -m data.fetch", description=__doc__.splitlines()[0])
    parser.add_argument("--dest", default=str(DEFAULT_RAW_DIR), help="folder to download into (default data/raw/)")
    parser.add_argument("--force", action="store_true", help="download again even if a file exists")
    parser.add_argument("--years", type=parse_years, default=DEFAULT_YEARS, help="e.g. 2014-2019 (default)")
    parser.add_argument("--portal", default=DEFAULT_PORTAL, help="CKAN base URL of the portal")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_SECONDS, help="seconds per request")
    parser.add_argument("--checksums", type=Path, default=None, metavar="FILE",
                        help=f"`sha256sum` lines the workbooks must match (default: DEST/{CHECKSUMS_FILE_NAME} if present)")
    arguments = parser.parse_args(argv)
    try:
        paths = fetch_workbooks(Path(arguments.dest), years=arguments.years, force=arguments.force,
                                portal=arguments.portal, timeout=arguments.timeout,
                                checksums_file=arguments.checksums)
    except PortalUnreachable as error:
        # A ConnectionError is an OSError that is not the user's input: run_main exits 1.
        raise ConnectionError(f"{error}; are you offline? Download the workbooks by hand from {CATALOGUE_PAGE} "
                              f"into {arguments.dest}, or set STREETCAR_RAW_DIR to a folder that holds them") from None
    print(f"{len(paths)} workbook(s) in {arguments.dest}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: 0 ok, 1 portal unreachable / file system error, 2 bad input or payload."""
    return run_main(fetch_command, argv)


if __name__ == "__main__":
    sys.exit(main())
