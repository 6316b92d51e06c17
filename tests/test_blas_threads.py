"""A training process keeps numpy's BLAS to the threads it gives torch: torch's setting
does not reach it, and the spectrum of the weights is computed with numpy."""
import json
import subprocess
import sys

import pytest

from gradviz.engine.training import blas


def test_the_blas_libraries_numpy_loaded_are_found_from_the_process_maps(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text(
        "7f00-7f01 r-xp 00000000 08:01 1 /opt/x/numpy.libs/libscipy_openblas64_-ab.so\n"
        "7f01-7f02 r-xp 00000000 08:01 2 /usr/lib/libm.so.6\n"
        "7f02-7f03 rw-p 00000000 00:00 0 \n"
        "7f03-7f04 r-xp 00000000 08:01 3 /opt/intel/libmkl_rt.so.2\n")
    assert blas.loaded_blas_libraries(maps) == ["/opt/intel/libmkl_rt.so.2",
                                               "/opt/x/numpy.libs/libscipy_openblas64_-ab.so"]
    assert blas.loaded_blas_libraries(tmp_path / "absent") == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_set_training_threads_reaches_numpys_blas():
    # In a fresh process: the setting is process-wide, and the tests' own must not change.
    code = """
import json, numpy, torch
from gradviz.engine.training import blas
from gradviz.engine.training.train import set_training_threads
set_training_threads(1)
print(json.dumps([blas.loaded_blas_libraries(), blas.blas_threads(), torch.get_num_threads()]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    libraries, counts, torch_threads = json.loads(out.splitlines()[-1])
    if not libraries:
        pytest.skip("this numpy links no BLAS library this module knows")
    assert counts and all(n == 1 for n in counts), counts
    assert torch_threads == 1
