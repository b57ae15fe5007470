"""email: hard-bounce counts, daily digests (the items each digest lists, the days planned)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 18:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import publisher.store.schema

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('recipients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bounces', sa.Integer(), server_default='0', nullable=False))

    op.create_table('digest_items',
    sa.Column('subject', sa.String(length=64), nullable=False),
    sa.Column('item_id', sa.String(length=36), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['items.id'], name=op.f('fk_digest_items_item_id_items')),
    sa.PrimaryKeyConstraint('subject', 'item_id', name=op.f('pk_digest_items'))
    )
    with op.batch_alter_table('digest_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_digest_items_item_id'), ['item_id'], unique=False)

    op.create_table('digest_runs',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('window_start', publisher.store.schema.UTCDateTime(), nullable=False),
    sa.Column('window_end', publisher.store.schema.UTCDateTime(), nullable=False),
    sa.Column('created_at', publisher.store.schema.UTCDateTime(), nullable=False),
    sa.Column('planned_at', publisher.store.schema.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('day', name=op.f('pk_digest_runs'))
    )


def downgrade() -> None:
    op.drop_table('digest_runs')
    with op.batch_alter_table('digest_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_digest_items_item_id'))

    op.drop_table('digest_items')
    with op.batch_alter_table('recipients', schema=None) as batch_op:
        batch_op.drop_column('bounces')
