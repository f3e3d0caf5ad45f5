"""The per-cluster token every request carries (`Authorization: Bearer <token>`).

The token file is read at each request, so a rotated Secret takes effect without a restart; an
unreadable or empty file refuses everything rather than letting anything through.
"""

from __future__ import annotations

import hmac
import logging
from pathlib import Path

log = logging.getLogger(__name__)


class TokenCheck:
    def __init__(self, token_file: Path) -> None:
        self._file = token_file

    def expected(self) -> bytes | None:
        try:
            token = self._file.read_bytes().strip()
        except OSError as exc:
            log.error(
                "token file unreadable: every request is refused",
                extra={"path": str(self._file), "error": exc.strerror},
            )
            return None
        return token or None

    def allows(self, header: str | None) -> bool:
        """True when HEADER is `Bearer <the token>`; compared in constant time."""
        expected = self.expected()
        scheme, _, given = (header or "").partition(" ")
        if expected is None or scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode(), expected)
