"""A minimal PEP 517 build backend for pytest-memlens (standard library only).

It builds the one wheel the plugin needs: the package under src/, its metadata and its
pytest11 entry point, read from pyproject.toml's [project] table. Sdists are not built
(install from the repository directory)."""

import base64
import hashlib
import os
import zipfile

try:
    import tomllib
except ImportError:  # Python < 3.11: the fields below are read by hand.
    tomllib = None

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _project():
    with open(os.path.join(HERE, "pyproject.toml"), "rb") as f:
        data = f.read()
    if tomllib is not None:
        return tomllib.loads(data.decode())["project"]
    # The subset this file uses: name, version, description, requires-python.
    project = {}
    for line in data.decode().splitlines():
        key, sep, value = line.partition("=")
        key = key.strip()
        if sep and key in ("name", "version", "description", "requires-python"):
            project.setdefault(key, value.strip().strip('"'))
    project["dependencies"] = ["pytest"]
    project["entry-points"] = {"pytest11": {"memlens": "pytest_memlens.plugin"}}
    return project


def _record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d" % (name, digest, len(data))


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    p = _project()
    dist = p["name"].replace("-", "_")
    version = p["version"]
    info = "%s-%s.dist-info" % (dist, version)
    files = []
    src = os.path.join(HERE, "src")
    for root, _dirs, names in sorted(os.walk(src)):
        for n in sorted(names):
            if n.endswith(".py"):
                path = os.path.join(root, n)
                with open(path, "rb") as f:
                    files.append((os.path.relpath(path, src).replace(os.sep, "/"), f.read()))
    metadata = "Metadata-Version: 2.1\nName: %s\nVersion: %s\nSummary: %s\n" % (
        p["name"],
        version,
        p.get("description", ""),
    )
    if "requires-python" in p:
        metadata += "Requires-Python: %s\n" % p["requires-python"]
    for d in p.get("dependencies", []):
        metadata += "Requires-Dist: %s\n" % d
    entry_points = ""
    for group, entries in p.get("entry-points", {}).items():
        entry_points += "[%s]\n" % group
        for k, v in entries.items():
            entry_points += "%s = %s\n" % (k, v)
    files.append(("%s/METADATA" % info, metadata.encode()))
    files.append(("%s/entry_points.txt" % info, entry_points.encode()))
    files.append(
        (
            "%s/WHEEL" % info,
            b"Wheel-Version: 1.0\nGenerator: pytest-memlens _build/backend.py\n"
            b"Root-Is-Purelib: true\nTag: py3-none-any\n",
        )
    )
    record = "".join(_record_line(n, d) + "\n" for n, d in files)
    record += "%s/RECORD,,\n" % info
    files.append(("%s/RECORD" % info, record.encode()))
    name = "%s-%s-py3-none-any.whl" % (dist, version)
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in files:
            z.writestr(n, d)
    return name


def get_requires_for_build_wheel(config_settings=None):
    return []
