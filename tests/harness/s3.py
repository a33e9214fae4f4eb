"""The e2e bucket of moto the deployed backups are copied to."""

from __future__ import annotations

import urllib.parse
import urllib.request
from xml.etree import ElementTree

from harness.settings import S3_BUCKET, S3_PORT, S3_PREFIX


def s3_keys(prefix: str) -> list[str]:
    """The keys under ``prefix`` in the e2e bucket (S3's ListObjectsV2, unsigned: moto)."""
    query = urllib.parse.urlencode({"list-type": "2", "prefix": f"{S3_PREFIX}/{prefix}"})
    with urllib.request.urlopen(f"http://127.0.0.1:{S3_PORT}/{S3_BUCKET}?{query}", timeout=10) as reply:
        listing = ElementTree.fromstring(reply.read())  # noqa: S314 - our own moto on loopback
    ns = {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}
    assert listing.findtext("s3:IsTruncated", namespaces=ns) == "false", "more keys than one page"
    return [key.text for key in listing.findall("s3:Contents/s3:Key", ns)]
