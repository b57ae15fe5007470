"""revisions.format: how an item's body is written ("text", as written, or "markdown")

Every body was rendered as Markdown until now. Imported items are official documents
in plain text (their numbering was being renumbered), so they become `text`; items
written here keep `markdown`, so nothing published changes its rendering silently.
New revisions default to `text`.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 19:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('revisions', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('format', sa.String(length=16), nullable=False, server_default='markdown')
        )
    op.execute(
        "UPDATE revisions SET format = 'text' WHERE item_id IN "
        "(SELECT id FROM items WHERE imported = TRUE)"
    )
    with op.batch_alter_table('revisions', schema=None) as batch_op:
        batch_op.alter_column(
            'format',
            existing_type=sa.String(length=16),
            existing_nullable=False,
            server_default='text',
        )


def downgrade() -> None:
    with op.batch_alter_table('revisions', schema=None) as batch_op:
        batch_op.drop_column('format')
