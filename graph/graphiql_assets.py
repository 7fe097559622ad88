"""The vendored GraphiQL files (graph/static/graphiql/vendor/): the pinned npm packages they
come from, and the refresh that rebuilds them: `python -m graph.graphiql_assets` (needs npm).

GraphiQL 3 is pinned, not 4 or 5: 3.9.0 is the last line that ships a UMD bundle
(graphiql.min.js, React and ReactDOM as globals), so the page loads plain script files from
the server and runs under `script-src 'self'` without a bundler. GraphiQL 4 and 5 ship ES
modules only, which need an import map (inline JSON, one more hash in the policy) and a bundle
of their bare imports, and 5 moves to Monaco, which starts web workers and injects styles.

The refresh takes each package with `npm pack` (which checks the tarball against the
registry's digest), checks that digest against the one pinned here, and copies out the built
files and the licences. The base64 fonts and images of GraphiQL's CSS are written out as files so
that the page's policy needs no `data:` source. `manifest.json` records each file's SHA-256;
`verify()` (and a test) checks the committed files against it, offline.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

VENDOR = Path(__file__).with_name("static") / "graphiql" / "vendor"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    # The registry's `dist.integrity` of the tarball: a changed tarball stops the refresh.
    integrity: str
    # Path inside the tarball (under package/) -> file name in the vendor folder.
    files: dict[str, str] = field(default_factory=dict)
    license_note: str = ""


PACKAGES: tuple[Package, ...] = (
    Package(
        "react",
        "18.3.1",
        "sha512-wS+hAgJShR0KhEvPJArfuPVN1+Hz1t0Y6n5jLrGQbkb4urgPE/0Rve+1kMB1v/oWgHgm4WIcV+i7F2pTVj+2iQ==",
        {"umd/react.production.min.js": "react.production.min.js", "LICENSE": "LICENSE.react"},
    ),
    Package(
        "react-dom",
        "18.3.1",
        "sha512-5m4nQKp+rZRb09LNH59GM4BxTh9251/ylbKIbpe7TpGxfJ+9kv6BLkLBXIjjspbgbnIBNqlI23tRnTWT0snUIw==",
        {
            "umd/react-dom.production.min.js": "react-dom.production.min.js",
            "LICENSE": "LICENSE.react-dom",
        },
    ),
    Package(
        "graphiql",
        "3.9.0",
        "sha512-rJYFlHdBbug9+YbFSwRVvgfPjCayC7wHecZkx/qB4XLuQPFQZw/yB9pmHFtOJV6RiNBBHro3u1GdocKa3YcGRA==",
        {"graphiql.min.js": "graphiql.min.js", "graphiql.min.css": "graphiql.min.css"}
        | {"LICENSE": "LICENSE.graphiql"},
        "The bundle includes @graphiql/react and @graphiql/toolkit of the same repository "
        "and licence, graphql-js, CodeMirror 5 and graphql-ws (all MIT).",
    ),
    Package(
        "@graphiql/plugin-explorer",
        "3.2.6",
        "sha512-MXzG/zVNzZfes4Em253bHyAbD/lwwAZkPKvxCAQkjz0i3dtcv4uF3D8iqJ7214iu3SCphbORYZZUC93fik1yew==",
        {"dist/index.umd.js": "plugin-explorer.umd.js", "dist/style.css": "plugin-explorer.css"},
        "MIT, from the graphiql repository, whose licence is LICENSE.graphiql (the package "
        "itself ships no licence file). Its bundle includes graphiql-explorer.",
    ),
    Package(
        "graphiql-explorer",
        "0.9.0",
        "sha512-fZC/wsuatqiQDO2otchxriFO0LaWIo/ovF/CQJ1yOudmY0P7pzDiP+l9CEHUiWbizk3e99x6DQG4XG1VxA+d6A==",
        {"LICENSE": "LICENSE.graphiql-explorer"},
        "Only its licence: its code is bundled in plugin-explorer.umd.js.",
    ),
)

_EMBEDDED = re.compile(rb"url\(data:(font/woff2|font/woff|image/png);base64,([A-Za-z0-9+/=]+)\)")
_EXTENSIONS = {b"font/woff2": "woff2", b"font/woff": "woff", b"image/png": "png"}


def _embedded_to_files(css: bytes, folder: Path) -> bytes:
    """The CSS with each base64 font and image written to files/<digest>.<ext>, and referenced
    there."""

    def extract(match: re.Match[bytes]) -> bytes:
        data = base64.b64decode(match.group(2))
        name = f"{hashlib.sha256(data).hexdigest()[:16]}.{_EXTENSIONS[match.group(1)]}"
        (folder / "files").mkdir(exist_ok=True)
        (folder / "files" / name).write_bytes(data)
        return f"url(files/{name})".encode()

    css = _EMBEDDED.sub(extract, css)
    if b"url(data:" in css:
        raise SystemExit("a data: URL of another type is left in the CSS: extend _EXTENSIONS")
    return css


def _pack(package: Package, into: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is not on PATH: the refresh takes the packages with `npm pack`")
    # The arguments are this module's pins, not outside input.
    done = subprocess.run(  # noqa: S603
        [npm, "pack", f"{package.name}@{package.version}", "--json", "--pack-destination", into],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"npm pack {package.name}@{package.version} failed:\n{done.stderr}")
    packed = json.loads(done.stdout)[0]
    if packed["integrity"] != package.integrity:
        raise SystemExit(
            f"{package.name}@{package.version}: the registry's tarball has digest "
            f"{packed['integrity']}, not the pinned {package.integrity}"
        )
    return into / packed["filename"]


def refresh(folder: Path = VENDOR) -> None:
    """Rebuild `folder` from the pinned packages."""
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        staging = work / "vendor"
        staging.mkdir()
        for package in PACKAGES:
            with tarfile.open(_pack(package, work)) as tar:
                for inside, name in package.files.items():
                    member = tar.extractfile(f"package/{inside}")
                    if member is None:
                        raise SystemExit(f"{package.name}: no file {inside}")
                    data = member.read()
                    if name.endswith(".css"):
                        data = _embedded_to_files(data, staging)
                    (staging / name).write_bytes(data)
        manifest = {
            "packages": [
                {"name": p.name, "version": p.version, "integrity": p.integrity}
                | ({"note": p.license_note} if p.license_note else {})
                for p in PACKAGES
            ],
            "files": _digests(staging),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(staging, folder)


def _digests(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }


def verify(folder: Path = VENDOR) -> list[str]:
    """What differs between the vendored files, their manifest and the pins (empty: nothing)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as error:
        return [f"no readable {MANIFEST}: {error}"]
    problems: list[str] = []
    pinned = [(p.name, p.version, p.integrity) for p in PACKAGES]
    recorded = [(p["name"], p["version"], p["integrity"]) for p in manifest["packages"]]
    if pinned != recorded:
        problems.append(f"{MANIFEST} was built from {recorded}, the pins are {pinned}")
    expected: dict[str, str] = manifest["files"]
    actual = _digests(folder)
    for name in sorted(expected.keys() | actual.keys()):
        if name not in actual:
            problems.append(f"{name} is missing")
        elif name not in expected:
            problems.append(f"{name} is not in {MANIFEST}")
        elif actual[name] != expected[name]:
            problems.append(f"{name} differs from {MANIFEST}")
    return problems


def main() -> None:
    if "--check" in sys.argv[1:]:
        problems = verify()
        if problems:
            raise SystemExit("\n".join(problems))
        print(f"{VENDOR}: as pinned")
        return
    refresh()
    print(f"{VENDOR}: refreshed from {', '.join(f'{p.name}@{p.version}' for p in PACKAGES)}")


if __name__ == "__main__":
    main()
