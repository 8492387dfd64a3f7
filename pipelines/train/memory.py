"""Peak memory of this process, measured so that a child process does not inherit its parent's.

Linux keeps ``getrusage(RUSAGE_SELF).ru_maxrss`` across ``fork`` + ``exec``: a child started by
a process holding 1.5 GiB reports at least 1.5 GiB however little it uses. ``VmHWM`` in
``/proc/self/status`` is the high-water mark of this process's own address space (reset by
``exec``), so it is read first; ``ru_maxrss`` is the fallback where ``/proc`` is absent.

Example:
    >>> peak_rss_mib() > 0
    True
"""

from __future__ import annotations

import resource
from pathlib import Path

_STATUS = Path("/proc/self/status")


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
