"""Data at rest: the register's applicant names and the endpoints' inline webhook secrets
sealed with the data key (publisher.atrest)

disclosure_requests.applicant becomes TEXT (a sealed name is longer than the name) and
every stored name is sealed; an endpoint whose settings hold an inline `secret` keeps it
as `secret_sealed`. Rows already sealed are left alone, so running it twice is harmless.
Downgrading opens them again (it needs the same data key).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 19:30:00.000000
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

_requests = sa.table(
    'disclosure_requests', sa.column('id', sa.Integer), sa.column('applicant', sa.Text)
)
_endpoints = sa.table('endpoints', sa.column('id', sa.Integer), sa.column('settings', sa.JSON))


def _data_key() -> bytes:
    get: Callable[[], bytes] | None = context.config.attributes.get('data_key')
    if get is None:
        raise RuntimeError('migration 0015 seals stored data: it needs the data key')
    return get()


def _rows_to_change(bind: sa.Connection) -> tuple[list[Any], list[Any]]:
    from publisher.atrest import SEALED_SECRET, is_sealed

    names = [
        r
        for r in bind.execute(
            sa.select(_requests).where(_requests.c.applicant.is_not(None))
        ).all()
        if not is_sealed(r.applicant)
    ]
    endpoints = [
        r
        for r in bind.execute(sa.select(_endpoints)).all()
        if isinstance(r.settings, dict)
        and isinstance(r.settings.get('secret'), str)
        and SEALED_SECRET not in r.settings
    ]
    return names, endpoints


def upgrade() -> None:
    with op.batch_alter_table('disclosure_requests', schema=None) as batch_op:
        batch_op.alter_column('applicant', type_=sa.Text(), existing_type=sa.String(255))
    bind = op.get_bind()
    names, endpoints = _rows_to_change(bind)
    if not names and not endpoints:
        return
    from publisher.atrest import APPLICANT, ENDPOINT_SECRET, FieldBox, seal_settings

    key = _data_key()
    box = FieldBox(key, APPLICANT)
    for r in names:
        bind.execute(
            _requests.update()
            .where(_requests.c.id == r.id)
            .values(applicant=box.seal(r.applicant))
        )
    secrets = FieldBox(key, ENDPOINT_SECRET)
    for r in endpoints:
        bind.execute(
            _endpoints.update()
            .where(_endpoints.c.id == r.id)
            .values(settings=seal_settings(secrets, r.settings))
        )


def downgrade() -> None:
    from publisher.atrest import (
        APPLICANT,
        ENDPOINT_SECRET,
        SEALED_SECRET,
        FieldBox,
        is_sealed,
        open_settings,
    )

    bind = op.get_bind()
    names = [
        r
        for r in bind.execute(sa.select(_requests)).all()
        if r.applicant is not None and is_sealed(r.applicant)
    ]
    endpoints = [
        r
        for r in bind.execute(sa.select(_endpoints)).all()
        if isinstance(r.settings, dict) and SEALED_SECRET in r.settings
    ]
    if names or endpoints:
        key = _data_key()
        box = FieldBox(key, APPLICANT)
        for r in names:
            bind.execute(
                _requests.update()
                .where(_requests.c.id == r.id)
                .values(applicant=box.open(r.applicant))
            )
        secrets = FieldBox(key, ENDPOINT_SECRET)
        for r in endpoints:
            bind.execute(
                _endpoints.update()
                .where(_endpoints.c.id == r.id)
                .values(settings=open_settings(secrets, r.settings))
            )
    with op.batch_alter_table('disclosure_requests', schema=None) as batch_op:
        batch_op.alter_column('applicant', type_=sa.String(255), existing_type=sa.Text())
