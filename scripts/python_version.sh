#!/usr/bin/env bash
# check_python PYTHON: stop with a clear message unless PYTHON is a version the locked packages are tested on.
# Sourced by setup_env.sh and lock_env.sh. ALLOW_UNTESTED_PYTHON=1 tries another version anyway.
TESTED_PYTHON="3.11"
check_python() {
  local version
  if ! version="$("$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)"; then
    echo "error: cannot run '$1'. Set PYTHON to a Python $TESTED_PYTHON interpreter, e.g. PYTHON=python$TESTED_PYTHON." >&2
    return 1
  fi
  if [ "$version" != "$TESTED_PYTHON" ] && [ "${ALLOW_UNTESTED_PYTHON:-0}" != 1 ]; then
    echo "error: '$1' is Python $version; requirements.lock is tested on Python $TESTED_PYTHON only (numpy 2.4 and" \
         "scipy 1.17 need 3.11 or newer, and newer versions may lack wheels for some pinned packages)." \
         "Set PYTHON=python$TESTED_PYTHON, or ALLOW_UNTESTED_PYTHON=1 to try $version anyway." >&2
    return 1
  fi
}
