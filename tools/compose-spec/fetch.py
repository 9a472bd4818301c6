"""Fetch the Compose Specification's JSON schema (the one `docker compose config` validates with).

It ships in the compose-go module of the Compose Specification project; the Go module proxy
serves that module as a zip. Pinned by version and sha256; written beside this file as
`compose-spec.json` (git-ignored). Stdlib only: runs before the virtualenv exists.
"""

from __future__ import annotations

import hashlib
import io
import sys
import urllib.request
import zipfile
from pathlib import Path

MODULE = "github.com/compose-spec/compose-go/v2"
VERSION = "v2.16.2"
SHA256 = "75410c9723430b920592093014fc53641f6207e01b52c016c848ba62bf2da805"
URL = f"https://proxy.golang.org/{MODULE}/@v/{VERSION}.zip"
MEMBER = f"{MODULE}@{VERSION}/schema/compose-spec.json"
OUT = Path(__file__).resolve().parent / "compose-spec.json"


def main() -> int:
    if OUT.is_file():
        return 0
    print(f"==> Fetching the Compose Specification schema ({MODULE} {VERSION})")
    with urllib.request.urlopen(URL, timeout=60) as response:
        data = response.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        print(f"ERROR: {URL} has sha256 {digest}, expected {SHA256}", file=sys.stderr)
        return 1
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        schema = archive.read(MEMBER)
    tmp = OUT.with_suffix(".tmp")
    tmp.write_bytes(schema)
    tmp.replace(OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
