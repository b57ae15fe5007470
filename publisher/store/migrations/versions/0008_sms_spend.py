"""sms: billed units spent per gateway per local day (the daily spend cap)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 17:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import publisher.store.schema

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('spend_counters',
    sa.Column('counter', sa.String(length=64), nullable=False),
    sa.Column('day', sa.String(length=10), nullable=False),
    sa.Column('units', sa.Integer(), nullable=False),
    sa.Column('updated_at', publisher.store.schema.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('counter', 'day', name=op.f('pk_spend_counters'))
    )


def downgrade() -> None:
    op.drop_table('spend_counters')
