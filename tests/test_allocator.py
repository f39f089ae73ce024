"""pipeline.allocator: a freed large buffer is reused, not unmapped and faulted in again."""

import subprocess
import sys

import pytest

SIZE = 48 << 20  # above glibc's largest mmap threshold (32 MiB), like a pick batch's first activations (56 MB)
PROBE = f"""
import ctypes, resource, sys
from pipeline.allocator import keep_freed_memory
took = keep_freed_memory() if sys.argv[1] == "kept" else False
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
for _ in range(3):  # the faults of the third round
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffer = libc.malloc({SIZE})
    libc.memset(buffer, 1, {SIZE})
    libc.free(buffer)
print(took, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[str, int]:
    took, faults = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                                  check=True).stdout.split()
    return took, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="keep_freed_memory sets glibc's mallopt, which only Linux has")
def test_a_freed_large_buffer_is_reused_instead_of_faulted_in_again():
    pages = SIZE // 4096
    _, default_faults = _faults("default")
    assert default_faults > pages // 2          # glibc maps every such buffer afresh: each page faults again
    took, kept_faults = _faults("kept")
    assert took == "True"
    assert kept_faults < pages // 20            # the third buffer reuses the pages the first one touched
