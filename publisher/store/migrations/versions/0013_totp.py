"""TOTP second factor for staff (issue 16): staff_totp, totp_recovery_codes, and
staff_sessions.pending (a session that still owes its second factor or an enrolment)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 19:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import publisher.store.schema

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('staff_totp',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('secret_sealed', sa.Text(), nullable=False),
    sa.Column('created_at', publisher.store.schema.UTCDateTime(), nullable=False),
    sa.Column('confirmed_at', publisher.store.schema.UTCDateTime(), nullable=True),
    sa.Column('last_step', sa.BigInteger(), nullable=True),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('locked_until', publisher.store.schema.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_staff_totp_user_id_users')),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_staff_totp'))
    )
    op.create_table('totp_recovery_codes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', publisher.store.schema.UTCDateTime(), nullable=False),
    sa.Column('used_at', publisher.store.schema.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_totp_recovery_codes_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_totp_recovery_codes'))
    )
    with op.batch_alter_table('totp_recovery_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_totp_recovery_codes_user_id'), ['user_id'], unique=False)
    with op.batch_alter_table('staff_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pending', sa.String(length=16), nullable=True))


def downgrade() -> None:
    # without the column a half-logged-in session would count as a full one: end them
    op.execute("DELETE FROM staff_sessions WHERE pending IS NOT NULL")
    with op.batch_alter_table('staff_sessions', schema=None) as batch_op:
        batch_op.drop_column('pending')
    with op.batch_alter_table('totp_recovery_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_totp_recovery_codes_user_id'))

    op.drop_table('totp_recovery_codes')
    op.drop_table('staff_totp')
