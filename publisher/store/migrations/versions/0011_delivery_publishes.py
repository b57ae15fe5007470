"""deliveries.publishes: the row puts an item out (its publication or correction)

Withdrawal and expiry are final on every path: a worker's claim skips a row that
publishes an item which has since been taken down. The flag says which rows carry
an item's text (as opposed to its retraction, a digest or a message).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 18:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('publishes', sa.Boolean(), nullable=False, server_default=sa.false())
        )
    # rows planned before this migration: an item event's rows and its print packs'
    op.execute(
        "UPDATE deliveries SET publishes = TRUE WHERE subject IN ("
        "SELECT 'event:' || CAST(id AS VARCHAR(20)) FROM item_events "
        "WHERE kind IN ('published', 'corrected'))"
    )
    op.execute(
        "UPDATE deliveries SET publishes = TRUE WHERE subject IN ("
        "SELECT 'pack:' || CAST(id AS VARCHAR(20)) FROM board_packs "
        "WHERE kind IN ('published', 'corrected'))"
    )


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_column('publishes')
