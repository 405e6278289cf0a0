"""The cached venvs of tools that pin other versions (core/venvs.py): built once, atomically, shared by concurrent
callers, and a failed build is one clear error with the failing step's output and the fix."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from qwen3_scope.core import venvs


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QWEN3_SCOPE_CACHE", str(tmp_path))
    return tmp_path


def test_built_once_by_concurrent_callers_and_sees_the_main_environment(cache):
    probe = "import safetensors, yaml"  # from the main environment (--system-site-packages)
    assert venvs.ready_python("tool", ()) is None
    pythons: list = []
    threads = [threading.Thread(target=lambda: pythons.append(venvs.pinned_venv("tool", (), probe=probe)))]
    threads += [threading.Thread(target=lambda: pythons.append(venvs.pinned_venv("tool", (), probe=probe)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (venv,) = [p for p in (cache / "venvs").iterdir() if p.is_dir()]  # one venv, no temporary folder left
    assert pythons == [venvs.venv_python(venv)] * 2 == [venvs.ready_python("tool", ())] * 2
    done = subprocess.run([str(pythons[0]), "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True)
    assert done.stdout.strip() == str(venv) and venv.name.startswith("tool-")
    assert sys.prefix != str(venv)
    # another pin is another venv
    assert venvs.venv_dir("tool", ("x==1",)) != venv


def test_a_failed_build_is_one_clear_error_and_leaves_nothing_ready(cache):
    with pytest.raises(venvs.VenvBuildError, match=r"the import check in broken's venv failed .*try again") as err:
        venvs.pinned_venv("broken", (), probe="import no_such_module_qwen3scope", fix="try again")
    assert "ModuleNotFoundError" in str(err.value)
    assert venvs.ready_python("broken", ()) is None
    assert not [p for p in (cache / "venvs").iterdir() if p.is_dir()]  # the half-built venv is gone
