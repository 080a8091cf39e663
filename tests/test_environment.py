"""requirements.lock: it pins requirements.txt's versions, installs from a package index, and covers the venv
that scripts/setup_env.sh builds from it; scripts/python_version.sh refuses an untested Python clearly."""
import hashlib
import importlib.metadata
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][0-9A-Za-z.]*)$")   # name==version, no local label or URL


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(name):
    """{normalised package name: version} of a requirements file whose every line is a comment or name==version."""
    result = {}
    with open(os.path.join(REPO_ROOT, name)) as f:
        for line in (line.strip() for line in f):
            if not line or line.startswith("#"):
                continue
            match = PIN.match(line)
            assert match, f"{name}: {line!r} is not a plain name==version pin an index can serve"
            result[normalize(match.group(1))] = match.group(2)
    return result


def test_lock_pins_every_requirement_at_its_version():
    top, lock = pins("requirements.txt"), pins("requirements.lock")
    assert {name: lock.get(name) for name in top} == top
    assert len(lock) > len(top), "the lock lists the indirect packages too"
    assert {"protobuf", "python-dateutil", "setuptools"} <= set(lock)
    assert "pip" not in lock


def test_lock_covers_every_installed_package():
    stamp = os.path.join(sys.prefix, ".requirements.sha1")
    files = b"".join(open(os.path.join(REPO_ROOT, name), "rb").read() for name in ("requirements.txt", "requirements.lock"))
    try:
        with open(stamp) as f:
            built_from = f.read().split()[0]
    except (OSError, IndexError):
        built_from = None
    if built_from != hashlib.sha1(files).hexdigest():
        pytest.skip("not running in a venv that scripts/setup_env.sh built from this requirements.lock")
    lock = pins("requirements.lock")
    installed = {normalize(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    installed.pop("pip", None)
    # a TORCH_INDEX build carries a local label (2.14.1+cpu) on the pinned version
    unpinned = {name: version for name, version in installed.items() if lock.get(name) != version.split("+")[0]}
    assert unpinned == {}, "installed packages missing from requirements.lock, or at another version"


def check_python(interpreter, **env):
    script = f'source "{REPO_ROOT}/scripts/python_version.sh" && check_python "{interpreter}"'
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                          env={**os.environ, "ALLOW_UNTESTED_PYTHON": "0", **env})


def test_an_untested_python_is_refused_with_a_message(tmp_path):
    old = tmp_path / "python3.9"
    old.write_text("#!/bin/sh\necho 3.9\n")
    old.chmod(0o755)
    refused = check_python(old)
    assert refused.returncode == 1
    assert "Python 3.9" in refused.stderr and "PYTHON=python3.11" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert check_python(old, ALLOW_UNTESTED_PYTHON="1").returncode == 0
    missing = check_python(tmp_path / "no_such_python")
    assert missing.returncode == 1 and "cannot run" in missing.stderr
    if sys.version_info[:2] == (3, 11):
        assert check_python(sys.executable).returncode == 0
