"""stable identities: subscriber ids never reused, links bound to a per-subscription nonce,
confirmation links refused after leaving and after their first use

- recipients.link_nonce (random per row) and recipients.legacy_links: links signed before
  this revision (over the id alone) keep working only for a subscriber whose id never
  named anyone else (no ledger row for that id older than the subscriber).
- SQLite: recipients is rebuilt with AUTOINCREMENT, data and indexes kept, and its
  sequence starts past every id ever used (rows, consents, ledger targets "r:<id>"),
  so the id of an erased subscriber is never given again. PostgreSQL already has a
  serial (a sequence never goes back); it is moved past those ids too.
- confirm_floors, used_confirmations: see publisher.store.schema. Every email address
  already known (a subscriber or a suppression) gets a floor of now: a confirmation
  link issued before this revision cannot bring back one that left or was erased.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 18:30:00.000000
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import publisher.store.schema

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

_NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
_OLD_COLUMNS = [
    "id", "channel", "address_hash", "address_enc", "categories", "status", "frequency",
    "created_at", "updated_at", "bounces",
]  # fmt: skip
_NEW_COLUMNS = [*_OLD_COLUMNS, "link_nonce", "legacy_links"]


def _recipients(new: bool) -> sa.Table:
    """recipients as of this revision (new) or of 0009, for a SQLite rebuild."""
    columns: list[sa.schema.SchemaItem] = [
        sa.Column('id', sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column('channel', sa.String(length=16), nullable=False),
        sa.Column('address_hash', sa.String(length=64), nullable=False),
        sa.Column('address_enc', sa.Text(), nullable=False),
        sa.Column('categories', sa.JSON(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('frequency', sa.String(length=16), nullable=False),
        sa.Column('created_at', publisher.store.schema.UTCDateTime(), nullable=False),
        sa.Column('updated_at', publisher.store.schema.UTCDateTime(), nullable=False),
        sa.Column('bounces', sa.Integer(), server_default='0', nullable=False),
    ]
    if new:
        columns += [
            sa.Column('link_nonce', sa.String(length=32), nullable=False),
            sa.Column('legacy_links', sa.Boolean(), server_default=sa.false(), nullable=False),
        ]
    return sa.Table(
        'recipients',
        sa.MetaData(naming_convention=_NAMING),
        *columns,
        sa.UniqueConstraint('channel', 'address_hash'),
        sa.Index('ix_recipients_channel_status', 'channel', 'status', 'id'),
        sqlite_autoincrement=new,
    )


def _rebuild_sqlite(bind: sa.Connection, table: sa.Table, columns: list[str]) -> None:
    """Replace recipients by `table`, keeping its rows (and ids) and indexes.

    Not alembic's batch copy (create new, drop old, rename): with foreign keys on, the
    drop orphans the consents and the rename never clears that, so the commit fails.
    Here the old table is copied aside and dropped first (the check deferred to the
    commit), and the rows go back into the new table, which adopts the consents again."""
    cols = ", ".join(columns)
    bind.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
    bind.exec_driver_sql(f"CREATE TABLE _recipients_0010 AS SELECT {cols} FROM recipients")
    bind.exec_driver_sql("DROP TABLE recipients")
    table.create(bind)
    bind.exec_driver_sql(
        f"INSERT INTO recipients ({cols}) SELECT {cols} FROM _recipients_0010 ORDER BY id"
    )
    bind.exec_driver_sql("DROP TABLE _recipients_0010")


def _highest_id_used(bind: sa.Connection) -> int:
    """The highest subscriber id any row, consent or ledger target ("r:<id>") names."""
    found = bind.exec_driver_sql(
        "SELECT MAX(n) FROM ("
        " SELECT MAX(id) AS n FROM recipients"
        " UNION ALL SELECT MAX(recipient_id) FROM consents"
        " UNION ALL SELECT MAX(CAST(SUBSTR(target, 3) AS INTEGER)) FROM deliveries"
        "  WHERE target LIKE 'r:%'"
        ") AS used"
    ).scalar()
    return int(found or 0)


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    op.create_table('confirm_floors',
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('address_hash', sa.String(length=64), nullable=False),
    sa.Column('not_before', publisher.store.schema.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('channel', 'address_hash', name=op.f('pk_confirm_floors'))
    )
    op.create_table('used_confirmations',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('expires_at', publisher.store.schema.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('token_hash', name=op.f('pk_used_confirmations'))
    )
    with op.batch_alter_table('used_confirmations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_used_confirmations_expires_at'), ['expires_at'], unique=False)

    # plain ALTER TABLE on both backends (a nullable column and one with a default)
    op.add_column('recipients', sa.Column('link_nonce', sa.String(length=32), nullable=True))
    op.add_column(
        'recipients',
        sa.Column('legacy_links', sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    ids = [row[0] for row in bind.exec_driver_sql("SELECT id FROM recipients")]
    for rid in ids:
        bind.execute(
            sa.text("UPDATE recipients SET link_nonce = :nonce WHERE id = :id"),
            {"nonce": secrets.token_urlsafe(16), "id": rid},
        )
    # old links name an id only: they are kept for a subscriber unless the ledger shows
    # the id was someone else's first (SQLite reused the highest id after an erasure)
    bind.execute(sa.text("UPDATE recipients SET legacy_links = :yes"), {"yes": True})
    bind.execute(
        sa.text(
            "UPDATE recipients SET legacy_links = :no WHERE id IN ("
            " SELECT r.id FROM recipients r JOIN ("
            "  SELECT target, MIN(created_at) AS first_at FROM deliveries"
            "  WHERE target LIKE 'r:%' GROUP BY target"
            " ) d ON d.target = 'r:' || CAST(r.id AS VARCHAR(20))"
            " WHERE d.first_at < r.created_at)"
        ),
        {"no": False},
    )
    # confirmation links issued before today know nothing of the addresses that left or
    # were erased since: those of any address already known are refused from now on
    known = bind.exec_driver_sql(
        "SELECT address_hash FROM recipients WHERE channel = 'email'"
        " UNION SELECT address_hash FROM suppressions WHERE channel = 'email'"
    ).scalars().all()
    floors = sa.table(
        'confirm_floors',
        sa.column('channel', sa.String()),
        sa.column('address_hash', sa.String()),
        sa.column('not_before', publisher.store.schema.UTCDateTime()),
    )
    now = datetime.now(UTC)
    for start in range(0, len(known), 1000):
        bind.execute(
            floors.insert(),
            [
                {"channel": "email", "address_hash": h, "not_before": now}
                for h in known[start : start + 1000]
            ],
        )
    highest = _highest_id_used(bind)
    if sqlite:
        _rebuild_sqlite(bind, _recipients(new=True), _NEW_COLUMNS)
        bind.exec_driver_sql("DELETE FROM sqlite_sequence WHERE name = 'recipients'")
        bind.execute(
            sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES ('recipients', :seq)"),
            {"seq": highest},
        )
    else:
        op.alter_column('recipients', 'link_nonce', nullable=False)
        if highest:
            seq = bind.exec_driver_sql("SELECT pg_get_serial_sequence('recipients', 'id')").scalar()
            bind.execute(
                sa.text(f"SELECT setval(:seq, GREATEST(:n, (SELECT last_value FROM {seq})))"),
                {"seq": seq, "n": highest},
            )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        _rebuild_sqlite(bind, _recipients(new=False), _OLD_COLUMNS)
    else:
        op.drop_column('recipients', 'legacy_links')
        op.drop_column('recipients', 'link_nonce')
    with op.batch_alter_table('used_confirmations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_used_confirmations_expires_at'))

    op.drop_table('used_confirmations')
    op.drop_table('confirm_floors')
