"""Self-hosted invoicing and payments. create_app builds the app; it never migrates or calls the network."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from flask import Flask, Response, request

from invoicing.config import load_config
from invoicing.extensions import configure_sqlite, csrf, db, htmx, limiter, login_manager, migrate
from invoicing.extensions import mail as mail_extension  # bare `mail` is rebound by the submodule invoicing.mail
from invoicing.logredact import RedactingFilter

ROOT = Path(__file__).resolve().parent.parent
# Chatty at INFO: APScheduler logs every tick, WeasyPrint and fontTools every step of every PDF.
QUIET_LOGGERS = ("apscheduler", "weasyprint", "fontTools")


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(
        __name__,
        instance_path=os.environ.get("INSTANCE_PATH") or str(ROOT / "instance"),
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    if test_config is None:
        app.config.update(load_config(app.instance_path))
    else:
        app.config.update(load_config(app.instance_path, {"SECRET_KEY": "t" * 32}))
        app.config.update(test_config)
    logging.basicConfig(level=app.config["LOG_LEVEL"], format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if app.config["LOG_LEVEL"] == "DEBUG" else logging.WARNING)
    app.logger.addFilter(RedactingFilter())

    db.init_app(app)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            configure_sqlite(db.engine)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), compare_type=True, render_as_batch=True)
    login_manager.init_app(app)
    csrf.init_app(app)
    mail_extension.init_app(app)
    htmx.init_app(app)
    limiter.init_app(app)

    from invoicing import admin, auth, cli, pay, portal, templating, webhooks

    auth.init_app(app)
    templating.init_app(app)
    app.register_blueprint(admin.bp)
    app.register_blueprint(portal.bp)
    app.register_blueprint(pay.bp)
    app.register_blueprint(webhooks.bp)
    csrf.exempt(webhooks.bp)  # authenticated by the provider's signature instead
    cli.init_app(app)
    _register_errors(app)
    app.after_request(_headers)
    app.add_url_rule("/healthz", "healthz", _healthz)
    app.add_url_rule("/", "index", lambda: app.redirect("/admin/"))
    return app


def _headers(response: Response) -> Response:
    response.vary.add("HX-Request")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if request.path.startswith(("/admin", "/portal", "/pay")):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _healthz() -> tuple[dict[str, str], int]:
    from sqlalchemy import text

    try:
        db.session.execute(text("SELECT 1"))
        db.session.rollback()
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
        logging.getLogger(__name__).error("health check failed: %s", exc.__class__.__name__)
        return {"status": "error", "database": "unreachable"}, 503
    return {"status": "ok", "database": "ok"}, 200


def _register_errors(app: Flask) -> None:
    from flask import render_template
    from werkzeug.exceptions import HTTPException

    from invoicing.services import DomainError, NotFound

    @app.errorhandler(NotFound)
    def _not_found(_exc: NotFound) -> tuple[str, int]:
        return render_template("errors/error.html", code=404, message="Not found."), 404

    @app.errorhandler(DomainError)
    def _domain(exc: DomainError) -> tuple[str, int]:
        db.session.rollback()
        return render_template("errors/error.html", code=422, message=str(exc)), 422

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Any:
        if exc.code is None or exc.code < 400:
            return exc
        response = exc.get_response()
        response.data = render_template("errors/error.html", code=exc.code, message=exc.description)
        response.content_type = "text/html; charset=utf-8"
        return response

    @app.errorhandler(500)
    def _server_error(_exc: Exception) -> tuple[str, int]:
        db.session.rollback()
        return render_template("errors/error.html", code=500, message="Something went wrong on our side."), 500
