"""log-in security (issue 16): counters per account, network and pair; session steps;
when each password was set

staff_sessions.pending (added by 0013 for the TOTP step) now holds the comma-joined
steps still owed, "password_change" among them, so it is widened to 64 characters.
login_failures (per user name, counted after the password check) gives way to
login_throttle, counted before it. Passwords already set count as set when the user
was created (their real age is unknown).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 20:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import publisher.store.schema

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('login_throttle',
    sa.Column('scope', sa.String(length=8), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('window_start', publisher.store.schema.UTCDateTime(), nullable=False),
    sa.Column('last_try_at', publisher.store.schema.UTCDateTime(), nullable=False),
    sa.Column('locked_until', publisher.store.schema.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('scope', 'key', name=op.f('pk_login_throttle'))
    )
    op.drop_table('login_failures')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('password_changed_at', publisher.store.schema.UTCDateTime(), nullable=True)
        )
    op.execute(
        "UPDATE users SET password_changed_at = created_at WHERE password_hash IS NOT NULL"
    )
    with op.batch_alter_table('staff_sessions', schema=None) as batch_op:
        batch_op.alter_column(
            'pending',
            existing_type=sa.String(length=16),
            type_=sa.String(length=64),
            existing_nullable=True,
        )


def downgrade() -> None:
    # 0013 knows only the single steps "totp" and "enrol": a session owing anything else
    # (a password change, or several steps) would be misread there, so it ends
    op.execute(
        "DELETE FROM staff_sessions WHERE pending IS NOT NULL AND pending NOT IN ('totp', 'enrol')"
    )
    with op.batch_alter_table('staff_sessions', schema=None) as batch_op:
        batch_op.alter_column(
            'pending',
            existing_type=sa.String(length=64),
            type_=sa.String(length=16),
            existing_nullable=True,
        )
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('password_changed_at')
    op.create_table('login_failures',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('last_failure_at', publisher.store.schema.UTCDateTime(), nullable=False),
    sa.Column('locked_until', publisher.store.schema.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_login_failures'))
    )
    op.drop_table('login_throttle')
