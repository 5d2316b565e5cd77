"""Storage URLs as they may be shown: never with a password (SQLAlchemy's own rendering hides it)."""

from __future__ import annotations

import re

__all__ = ["hide_password", "without_secret"]


def hide_password(spec: str) -> str:
    """A storage URL as it may be shown: the password replaced by ``***`` (SQLAlchemy's own rendering; a URL
    it cannot parse is masked between ``:`` and ``@``). A journal path is returned as it is."""
    if "://" not in spec:
        return spec
    try:
        from sqlalchemy.engine import make_url

        return make_url(spec).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy reads: mask what looks like user:password@
        return re.sub(r"://([^:/@]*):[^@/]*@", r"://\1:***@", spec)


def without_secret(text: str, spec: str) -> str:
    """``text`` (an error message) with the password of ``spec`` masked wherever it appears, on one line."""
    try:
        from sqlalchemy.engine import make_url

        password = make_url(spec).password
    except Exception:  # noqa: BLE001
        m = re.search(r"://[^:/@]*:([^@/]*)@", spec)
        password = m.group(1) if m else None
    if password:
        text = text.replace(str(password), "***")
    return text.replace(spec, hide_password(spec)).strip().splitlines()[0] if text.strip() else text
