"""nst-core asks OpenMP for passive waits before PyTorch loads, and leaves a user's choice alone."""

import os
import subprocess
import sys

from nst_core.openmp import prefer_passive_waits


def _policy_after(code: str, **env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | env
    done = subprocess.run([sys.executable, "-c", code + "; import os; print(os.environ.get('OMP_WAIT_POLICY'))"],
                          env=environment, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_importing_nst_core_sets_passive_waits_before_torch_loads():
    assert _policy_after("import nst_core, sys; assert 'torch' in sys.modules") == "PASSIVE"


def test_a_users_policy_and_an_already_loaded_torch_are_left_alone(monkeypatch):
    assert _policy_after("import nst_core", OMP_WAIT_POLICY="active") == "active"
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert "torch" in sys.modules  # the tests' process: too late to change OpenMP
    assert prefer_passive_waits() is False
    assert "OMP_WAIT_POLICY" not in os.environ
    monkeypatch.delitem(sys.modules, "torch")
    assert prefer_passive_waits() is True
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
