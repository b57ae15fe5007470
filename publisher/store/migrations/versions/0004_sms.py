"""sms: transactional messages, verification codes, rate windows

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 13:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import publisher.store.schema

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('messages',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('purpose', sa.String(length=32), nullable=False),
    sa.Column('address_hash', sa.String(length=64), nullable=False),
    sa.Column('address_enc', sa.Text(), nullable=False),
    sa.Column('body_enc', sa.Text(), nullable=False),
    sa.Column('created_at', publisher.store.schema.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_messages'))
    )
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_messages_address_hash'), ['address_hash'], unique=False)

    op.create_table('rate_counters',
    sa.Column('bucket', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('window_start', sa.BigInteger(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('bucket', 'key', 'window_start', name=op.f('pk_rate_counters'))
    )
    op.create_table('verifications',
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('address_hash', sa.String(length=64), nullable=False),
    sa.Column('categories', sa.JSON(), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('expires_at', publisher.store.schema.UTCDateTime(), nullable=False),
    sa.Column('created_at', publisher.store.schema.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('channel', 'address_hash', name=op.f('pk_verifications'))
    )


def downgrade() -> None:
    op.drop_table('verifications')
    op.drop_table('rate_counters')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_messages_address_hash'))

    op.drop_table('messages')
