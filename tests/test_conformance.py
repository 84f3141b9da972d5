"""The stream conformance battery on every stream transport (issue: foundation, item 5)."""

from __future__ import annotations

import pytest

from ipcnet.testing import CHECKS, PAIR_MAKERS, Unavailable


@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize("transport", list(PAIR_MAKERS))
def test_conformance(transport: str, check: str) -> None:
    make = PAIR_MAKERS[transport]

    def maker():
        try:
            return make()
        except Unavailable as exc:
            pytest.skip(str(exc))

    CHECKS[check](maker)
