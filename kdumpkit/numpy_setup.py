"""Import numpy without OpenBLAS's pool of threads.

numpy's OpenBLAS starts a thread per core when numpy is imported and they spin for a
while: ~0.1 s of CPU on a 2-core machine, a quarter of what ``crash -c bt`` costs,
for a library kdumpkit never calls (it does no linear algebra).  OpenBLAS reads
``OPENBLAS_NUM_THREADS`` once, when it loads, so the variable is set for the import
only: a user's own value is kept, and the shell commands that a session pipes to do
not inherit it.  Importing this module does it; a numpy already imported is left as
it is.
"""

from __future__ import annotations

import os
import sys

BLAS_THREADS_VARIABLE = "OPENBLAS_NUM_THREADS"


def import_numpy_single_threaded() -> None:
    """Import numpy with OpenBLAS limited to one thread, unless already imported or the
    user chose a number of threads."""
    if "numpy" in sys.modules or BLAS_THREADS_VARIABLE in os.environ:
        return
    os.environ[BLAS_THREADS_VARIABLE] = "1"
    try:
        import numpy  # noqa: F401
    finally:
        os.environ.pop(BLAS_THREADS_VARIABLE, None)


import_numpy_single_threaded()
