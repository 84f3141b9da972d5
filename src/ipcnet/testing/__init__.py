"""Test helpers that ship with ipcnet, for our suite and for yours.

- ``pairs``: makers of connected Channel pairs over every stream transport.
- ``streams``: the conformance battery every two-way stream must pass (in the spirit of
  trio's ``check_two_way_stream`` / ``check_half_closeable_stream``).
- ``netns``: private network namespaces and veth pairs (root), always removed afterwards.
"""

from ipcnet.testing.pairs import PAIR_MAKERS, Unavailable, free_port
from ipcnet.testing.streams import CHECKS, check_stream_pair

__all__ = ["CHECKS", "PAIR_MAKERS", "Unavailable", "check_stream_pair", "free_port"]
