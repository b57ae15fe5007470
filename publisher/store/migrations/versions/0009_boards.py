"""boards: notice boards, print packs and their lines (the board channel)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import publisher.store.schema

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('boards',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('endpoint_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('location', sa.Text(), nullable=False),
    sa.Column('paper', sa.String(length=2), nullable=False),
    sa.Column('orientation', sa.String(length=10), nullable=False),
    sa.Column('categories', sa.JSON(), nullable=False),
    sa.Column('min_days', sa.Integer(), nullable=False),
    sa.Column('operator_phone_enc', sa.Text(), nullable=True),
    sa.Column('operator_email_enc', sa.Text(), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', publisher.store.schema.UTCDateTime(), nullable=False),
    sa.Column('updated_at', publisher.store.schema.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['endpoint_id'], ['endpoints.id'], name=op.f('fk_boards_endpoint_id_endpoints')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_boards')),
    sa.UniqueConstraint('endpoint_id', name=op.f('uq_boards_endpoint_id')),
    sa.UniqueConstraint('name', name=op.f('uq_boards_name'))
    )
    op.create_table('board_packs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('board_id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('created_at', publisher.store.schema.UTCDateTime(), nullable=False),
    sa.Column('notified_at', publisher.store.schema.UTCDateTime(), nullable=True),
    sa.Column('confirmed_at', publisher.store.schema.UTCDateTime(), nullable=True),
    sa.Column('confirmed_by', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['board_id'], ['boards.id'], name=op.f('fk_board_packs_board_id_boards')),
    sa.ForeignKeyConstraint(['event_id'], ['item_events.id'], name=op.f('fk_board_packs_event_id_item_events')),
    sa.ForeignKeyConstraint(['item_id'], ['items.id'], name=op.f('fk_board_packs_item_id_items')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_board_packs')),
    sa.UniqueConstraint('event_id', 'board_id', name=op.f('uq_board_packs_event_id_board_id'))
    )
    with op.batch_alter_table('board_packs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_board_packs_board_id'), ['board_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_board_packs_item_id'), ['item_id'], unique=False)

    op.create_table('board_pack_items',
    sa.Column('pack_id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.String(length=36), nullable=False),
    sa.Column('action', sa.String(length=8), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('index_no', sa.String(length=128), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['items.id'], name=op.f('fk_board_pack_items_item_id_items')),
    sa.ForeignKeyConstraint(['pack_id'], ['board_packs.id'], name=op.f('fk_board_pack_items_pack_id_board_packs')),
    sa.PrimaryKeyConstraint('pack_id', 'item_id', 'action', name=op.f('pk_board_pack_items'))
    )
    with op.batch_alter_table('board_pack_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_board_pack_items_item_id'), ['item_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('board_pack_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_board_pack_items_item_id'))

    op.drop_table('board_pack_items')
    with op.batch_alter_table('board_packs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_board_packs_item_id'))
        batch_op.drop_index(batch_op.f('ix_board_packs_board_id'))

    op.drop_table('board_packs')
    op.drop_table('boards')
