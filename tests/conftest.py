"""Shared fixtures: the repository root on sys.path, a scratch working directory, small CPU runs."""
import os
import sys

import pytest
import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

torch.set_num_threads(2)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run a test inside tmp_path, so ./save and ./data land there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
