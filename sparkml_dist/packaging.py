"""``sparkml-dist package``: ship this package to executors that do not have it.

Two artefacts, the two routes of Spark's "Python Package Management" guide:

* ``env.tar.gz``: a packed virtual environment (the package and every dependency it needs, as installed here) for
  ``spark-submit --archives env.tar.gz#environment`` with ``PYSPARK_PYTHON=./environment/bin/python``::

      PYSPARK_DRIVER_PYTHON=python PYSPARK_PYTHON=./environment/bin/python \\
          spark-submit --master spark://host:7077 --archives dist/env.tar.gz#environment jobs/train_kmeans.py ...

* ``sparkml_dist.zip``: the package alone for ``--py-files`` when the executors already have the dependencies::

      spark-submit --master spark://host:7077 --py-files dist/sparkml_dist.zip jobs/train_kmeans.py ...

The environment is built the way venv-pack packs one (which this replaces: venv-pack refuses editable installs and
packs a venv whole, test tools included): the files of each needed distribution, from its installed ``RECORD``,
under ``lib/pythonX.Y/site-packages``; a ``pyvenv.cfg`` and ``bin/python`` linking to the interpreter, so that
``./environment/bin/python`` finds its own site-packages wherever it is unpacked; a relocatable ``bin/activate``.
As with venv-pack, the interpreter itself is not packed: executors need the same Python minor version at the linked
path (``--interpreter`` sets it, e.g. ``/usr/bin/python3.11``). ``pyspark`` and ``py4j`` are left out by default:
the cluster's Spark puts its own on the executors' path, and it must match the cluster's version.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

logger = logging.getLogger(__name__)

PACKAGE = "sparkml_dist"
#: provided by the cluster's Spark (its version must match the cluster's), never packed by default
DEFAULT_EXCLUDE = ("pyspark", "py4j")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement(spec: str) -> tuple[str, str | None]:
    """(distribution name, marker) of a ``Requires-Dist`` line."""
    head, _, marker = spec.partition(";")
    name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", head)
    return (name.group(1) if name else head.strip()), (marker.strip() or None)


def _marker_holds(marker: str | None) -> bool:
    if not marker:
        return True
    if "extra" in marker:  # optional extras of a dependency are not needed to import it
        return False
    try:
        from packaging.markers import Marker
    except ImportError:  # pragma: no cover - packaging ships with every pip
        return True
    return Marker(marker).evaluate()


def _own_requirements() -> list[str]:
    """This package's install requirements (from its metadata, or from setup.py in a checkout)."""
    try:
        return list(metadata.distribution(PACKAGE).requires or [])
    except metadata.PackageNotFoundError:
        setup = Path(__file__).resolve().parents[1] / "setup.py"
        text = setup.read_text() if setup.is_file() else ""
        block = re.search(r"install_requires=\[(.*?)\]", text, re.S)
        return re.findall(r'"([^"]+)"', block.group(1)) if block else []


def dependency_closure(exclude: tuple[str, ...] = DEFAULT_EXCLUDE) -> list[metadata.Distribution]:
    """The installed distributions this package needs, transitively, without ``exclude`` (nor what only an
    excluded distribution needs). A requirement that is not installed here is an error naming it."""
    skip = {_canonical(e) for e in exclude}
    seen: dict[str, metadata.Distribution] = {}
    todo = [_requirement(r) for r in _own_requirements()]
    missing = []
    while todo:
        name, marker = todo.pop()
        key = _canonical(name)
        if key in skip or key in seen or key == _canonical(PACKAGE) or not _marker_holds(marker):
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
            continue
        seen[key] = dist
        todo += [_requirement(r) for r in dist.requires or []]
    if missing:
        raise RuntimeError(f"package: {sorted(set(missing))} are required but not installed in {sys.prefix} "
                           "(install them, or leave them out with --exclude)")
    return sorted(seen.values(), key=lambda d: _canonical(d.metadata["Name"]))


def _dist_files(dist: metadata.Distribution) -> list[tuple[Path, str]]:
    """(absolute path, path relative to site-packages) of a distribution's installed files inside site-packages."""
    out = []
    for f in dist.files or []:
        rel = str(f)
        if rel.startswith("..") or f.suffix == ".pyc" or "__pycache__" in f.parts:
            continue  # console scripts live outside site-packages; bytecode is rebuilt where it runs
        path = Path(dist.locate_file(f))
        if path.is_file():
            out.append((path, rel))
    return out


def _package_files() -> list[tuple[Path, str]]:
    """This package's own files (from the source tree: works for editable installs and plain checkouts)."""
    root = Path(__file__).resolve().parent
    return [(p, str(p.relative_to(root.parent))) for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]


def _version() -> str:
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return "0+checkout"


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    import io

    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def _add_link(tar: tarfile.TarFile, name: str, target: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
    tar.addfile(info)


ACTIVATE = """# relocatable: the environment is wherever this file is (source bin/activate)
VIRTUAL_ENV="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
export VIRTUAL_ENV
PATH="$VIRTUAL_ENV/bin:$PATH"
export PATH
unset PYTHONHOME
"""


def build_env(out: str, exclude: tuple[str, ...] = DEFAULT_EXCLUDE, interpreter: str | None = None,
              include_package: bool = True, compresslevel: int = 1) -> dict:
    """Write the packed environment ``out`` (``.tar.gz``) atomically; returns what it holds."""
    interpreter = os.path.realpath(interpreter or sys.executable)
    if not os.path.isfile(interpreter):
        raise FileNotFoundError(f"--interpreter {interpreter}: no such file")
    dists = dependency_closure(exclude)
    py = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = f"lib/{py}/site-packages"
    files = [(p, r) for d in dists for p, r in _dist_files(d)]
    if include_package:
        files += _package_files()
    tmp = f"{out}.tmp-{os.getpid()}"
    total = 0
    try:
        with tarfile.open(tmp, "w:gz", compresslevel=compresslevel) as tar:
            cfg = (f"home = {os.path.dirname(interpreter)}\ninclude-system-site-packages = false\n"
                   f"version = {'.'.join(map(str, sys.version_info[:3]))}\n")
            _add_bytes(tar, "pyvenv.cfg", cfg.encode())
            _add_link(tar, f"bin/{py}", interpreter)
            _add_link(tar, "bin/python3", py)
            _add_link(tar, "bin/python", py)
            _add_bytes(tar, "bin/activate", ACTIVATE.encode())
            if include_package:
                meta = f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: {_version()}\n"
                _add_bytes(tar, f"{site}/{PACKAGE}-{_version()}.dist-info/METADATA", meta.encode())
            for i, (path, rel) in enumerate(files):
                tar.add(str(path), arcname=f"{site}/{rel}", recursive=False)
                total += path.stat().st_size
                if i and i % 5000 == 0:
                    logger.info("package: %d/%d files (%.0f MB)", i, len(files), total / 1e6)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    info = {"path": out, "files": len(files), "unpacked_mb": total / 1e6, "packed_mb": os.path.getsize(out) / 1e6,
            "distributions": [f"{d.metadata['Name']}=={d.version}" for d in dists], "interpreter": interpreter,
            "excluded": list(exclude), "package": include_package}
    logger.info("package: wrote %s (%d distributions, %.0f MB unpacked, %.0f MB packed)", out, len(dists),
                info["unpacked_mb"], info["packed_mb"])
    return info


def build_zip(out: str) -> dict:
    """Write ``sparkml_dist.zip`` (the package's own files, for ``--py-files``) atomically."""
    files = _package_files()
    tmp = f"{out}.tmp-{os.getpid()}"
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for path, rel in files:
                zf.write(path, rel)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    logger.info("package: wrote %s (%d files)", out, len(files))
    return {"path": out, "files": len(files), "packed_mb": os.path.getsize(out) / 1e6}


def command_lines(out_dir: str) -> str:
    """The two spark-submit command lines for what was built into ``out_dir``."""
    env, zp = os.path.join(out_dir, "env.tar.gz"), os.path.join(out_dir, "sparkml_dist.zip")
    return ("# executors without the package or its dependencies (client mode: the driver uses your python):\n"
            f"PYSPARK_DRIVER_PYTHON=python PYSPARK_PYTHON=./environment/bin/python spark-submit --master MASTER "
            f"--archives {env}#environment jobs/train_kmeans.py --config conf/jobs/kmeans.yaml\n"
            "# executors that have the dependencies but not this package:\n"
            f"spark-submit --master MASTER --py-files {zp} jobs/train_kmeans.py --config conf/jobs/kmeans.yaml\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="dist", help="output directory (default dist/)")
    parser.add_argument("--only", choices=("env", "zip"), default=None, help="build only one of the two")
    parser.add_argument("--exclude", default="", help="comma-separated distributions to leave out of the "
                                                      f"environment (always: {', '.join(DEFAULT_EXCLUDE)})")
    parser.add_argument("--interpreter", default=None, help="the Python the environment links to on the executors "
                                                            "(default: this one)")
    parser.add_argument("--no-package", action="store_true", help="environment of the dependencies only")
    parser.add_argument("--overwrite", action="store_true", help="replace existing artefacts")
    parser.add_argument("--log-level", default=None)


def main(args: argparse.Namespace) -> int:
    """``sparkml-dist package``: build the artefacts, then print the command lines."""
    import json

    exclude = tuple(DEFAULT_EXCLUDE) + tuple(e.strip() for e in args.exclude.split(",") if e.strip())
    targets = {"env": os.path.join(args.out, "env.tar.gz"), "zip": os.path.join(args.out, "sparkml_dist.zip")}
    if args.only:
        targets = {args.only: targets[args.only]}
    existing = [p for p in targets.values() if os.path.exists(p)]
    if existing and not args.overwrite:
        raise FileExistsError(f"package: {', '.join(existing)} already exist(s) (pass --overwrite to replace)")
    os.makedirs(args.out, exist_ok=True)
    built = {}
    if "zip" in targets:
        built["zip"] = build_zip(targets["zip"])
    if "env" in targets:
        built["env"] = build_env(targets["env"], exclude, args.interpreter, not args.no_package)
    sys.stdout.write(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "distributions"}
                                 for k, v in built.items()}, indent=2) + "\n" + command_lines(args.out))
    return 0
