"""Atomic first-come claims on keys of a shared study, in its database (:class:`Claims`): masks, the baseline
election and worker indices. The overview: :mod:`.shared`."""

from __future__ import annotations

import os
from typing import Any

from .rdb import is_shared, with_retry

__all__ = ["CLAIMS_TABLE", "Claims"]

CLAIMS_TABLE = "cachesearch_claims"


class Claims:
    """Atomic first-come claims on keys of one study, in the study's database (a no-op elsewhere)."""

    def __init__(self, study: Any) -> None:
        self.study_name = study.study_name
        storage = study._storage
        self.enabled = is_shared(storage)
        self.health = storage._health if self.enabled else None
        if not self.enabled:
            return
        import sqlalchemy as sa

        self.engine = storage.backend.engine
        meta = sa.MetaData()
        self.table = sa.Table(CLAIMS_TABLE, meta, sa.Column("study", sa.String(512), primary_key=True),
                              sa.Column("key", sa.String(128), primary_key=True),
                              sa.Column("holder", sa.Integer, nullable=False))

        def create() -> None:
            try:
                meta.create_all(self.engine, checkfirst=True)
            except sa.exc.IntegrityError:  # created concurrently (PostgreSQL's pg_type race)
                pass
            except sa.exc.ProgrammingError as e:
                if "already exists" not in str(e):
                    raise

        with_retry(create, "create claims table", self.health)

    def claim(self, key: str, holder: int) -> int | None:
        """Claim ``key`` for ``holder``: None when it is ours now (or was already), else the current holder."""
        import sqlalchemy as sa

        t = self.table

        def attempt() -> int | None:
            with self.engine.begin() as conn:
                try:
                    with conn.begin_nested():
                        conn.execute(t.insert().values(study=self.study_name, key=key, holder=holder))
                    return None
                except sa.exc.IntegrityError:
                    row = conn.execute(sa.select(t.c.holder).where(t.c.study == self.study_name,
                                                                   t.c.key == key)).first()
            if row is None:  # released in between: try again
                return attempt()
            return None if row[0] == holder else int(row[0])

        return with_retry(attempt, "claim", self.health)

    def take_over(self, key: str, old: int, new: int) -> bool:
        """Move ``key`` from ``old`` to ``new`` (atomic: False if someone else moved it first)."""
        t = self.table

        def attempt() -> bool:
            with self.engine.begin() as conn:
                res = conn.execute(t.update().where(t.c.study == self.study_name, t.c.key == key, t.c.holder == old)
                                   .values(holder=new))
                return res.rowcount == 1

        return bool(with_retry(attempt, "claim take-over", self.health))

    def first(self, key: str) -> bool:
        """Whether this process is the first ever to claim ``key`` (an election)."""
        return self.claim(key, _anonymous()) is None

    def index(self, prefix: str) -> int:
        """The first free ``prefix:N`` key, claimed (a worker index: 0 for the first process)."""
        holder = _anonymous()
        n = 0
        while self.claim(f"{prefix}:{n}", holder) is not None:
            n += 1
        return n


def _anonymous() -> int:
    """A random holder that is not a trial (negative: never a trial number)."""
    return -int.from_bytes(os.urandom(3), "little") - 1
