"""The aiohttp application: make_app(config, store)."""

from __future__ import annotations

from aiohttp import web

from publisher.config import Config
from publisher.delivery import DeliveryWorker
from publisher.scheduler import PublicationScheduler
from publisher.store.sql import SqlStore
from publisher.web import api, deliveries, feeds, mail, openapi, preview, public, resident, sms, ui
from publisher.web import boards as notice_boards
from publisher.web import reports as clocks_and_reports
from publisher.web.auth import auth_middleware, policy_middleware
from publisher.web.keys import CONFIG, SCHEDULER, STORE, WORKER
from publisher.web.problems import allow_middleware, problem_middleware
from publisher.web.proxy import forwarded_middleware


def make_app(
    config: Config,
    store: SqlStore,
    *,
    scheduler: PublicationScheduler | None = None,
    worker: DeliveryWorker | None = None,
) -> web.Application:
    # the upload limit is enforced while streaming; JSON bodies have their own, smaller limit
    app = web.Application(
        middlewares=[
            forwarded_middleware(config),
            allow_middleware,
            problem_middleware,
            auth_middleware,
            ui.ui_error_middleware,  # staff pages answer errors as HTML, not problem JSON
            policy_middleware,  # every route's role check (publisher.policy)
        ],
        client_max_size=config.storage.max_upload_bytes + 1024 * 1024,
    )
    app[CONFIG] = config
    app[STORE] = store
    if scheduler is not None:
        app[SCHEDULER] = scheduler
    if worker is not None:
        app[WORKER] = worker
    app.add_routes(api.routes)
    app.add_routes(openapi.routes)
    app.add_routes(deliveries.routes)
    app.add_routes(clocks_and_reports.routes)
    app.add_routes(public.routes)
    app[feeds.FEED_FILES] = feeds.FeedFiles(config.feeds_path)
    app.add_routes(feeds.routes)
    sms.setup(app, config)
    mail.setup(app, config)
    app.add_routes(preview.routes)
    app.add_routes(notice_boards.routes)  # boards, packs, operators' links, layouts
    ui.setup(app, store)
    app.add_routes(resident.routes)  # residents' subscribe pages and display modes
    return app
