"""What every benchmark gives the servers it starts: the project's root, the secret key, the
limits lifted, and a free port."""

from __future__ import annotations

import socket
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-key-" + "0123456789" * 4
# One client process drives thousands of requests a second as one principal, and the ops
# select nested connections without `first` (a cost over the default maximum, 1,000): every
# request is still costed and charged to its principal's bucket, but the limits never refuse.
LIMITS = {
    "MAX_QUERY_COST": "1000000000",
    "RATE_LIMIT_MAXIMUM": "1e15",
    "RATE_LIMIT_RESTORE_RATE": "1e15",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
