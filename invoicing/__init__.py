"""Self-hosted invoicing and payments. create_app builds the app; it never migrates or calls the network."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, current_app, redirect, request, url_for
from flask.typing import ResponseReturnValue

from invoicing.config import load_config
from invoicing.extensions import configure_sqlite, csrf, db, htmx, limiter, login_manager, migrate, outside_models
from invoicing.extensions import mail as mail_extension  # bare `mail` is rebound by the submodule invoicing.mail
from invoicing.logredact import RedactingFilter
from invoicing.services import db as transactions
from invoicing.services import pageversion

ROOT = Path(__file__).resolve().parent.parent
# Chatty at INFO: APScheduler logs every tick, WeasyPrint and fontTools every step of every PDF.
QUIET_LOGGERS = ("apscheduler", "weasyprint", "fontTools")

# No inline script anywhere (static/js instead). Inline styles stay allowed: the pay pages carry the
# organization's brand colour in a <style>, templates use style attributes and htmx adds its indicator style;
# a style cannot run code. No form-action: "Pay now" posts here and is redirected to the provider's checkout,
# which form-action would block. The outbox preview sets a stricter policy of its own.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"
# A portal page whose pay dialog can mount Stripe's embedded Checkout (portal/pay.py stripe_checkout) lets in
# Stripe.js, its frames and its API calls, from Stripe's origins only; every other page keeps CSP above.
STRIPE = "https://js.stripe.com https://*.js.stripe.com"
STRIPE_CHECKOUT_CSP = (
    f"default-src 'self'; script-src 'self' {STRIPE}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: https://*.stripe.com; "
    f"frame-src {STRIPE} https://hooks.stripe.com https://checkout.stripe.com; "
    "connect-src 'self' https://api.stripe.com https://checkout.stripe.com; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
STRIPE_PERMISSIONS_POLICY = ('camera=(), microphone=(), geolocation=(), usb=(), '
                             'payment=(self "https://js.stripe.com" "https://checkout.stripe.com")')


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
    pageversion.listen()
    transactions.listen()
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            configure_sqlite(db.engine)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), compare_type=True, render_as_batch=True,
                    include_name=outside_models)
    login_manager.init_app(app)
    csrf.init_app(app)
    mail_extension.init_app(app)
    htmx.init_app(app)
    limiter.init_app(app)

    from invoicing import admin, api, auth, cli, pay, portal, subscribe, templating, webhooks

    auth.init_app(app)
    templating.init_app(app)
    app.register_blueprint(admin.bp)
    app.register_blueprint(portal.bp)
    app.register_blueprint(pay.bp)
    app.register_blueprint(subscribe.bp)  # public sign-up pages: /subscribe/<slug>
    app.register_blueprint(webhooks.bp)
    csrf.exempt(webhooks.bp)  # authenticated by the provider's signature instead
    api.init_app(app)  # /api/v1: bearer keys, no session, no CSRF
    cli.init_app(app)
    from invoicing.services.subscriptions import lifecycle  # noqa: F401 - registers its autopay outcome listener
    _register_errors(app)
    app.before_request(_refuse_unknown_host)
    app.before_request(_refuse_nul)
    app.after_request(_headers)
    app.add_url_rule("/healthz", "healthz", _healthz)
    app.add_url_rule("/favicon.ico", "favicon", _favicon)
    app.add_url_rule("/", "index", lambda: app.redirect("/admin/"))
    return app


def _refuse_unknown_host() -> None:
    """Answer only for our own addresses: BASE_URL's host, an organization's public URL host, or the machine's
    loopback names. Any other name pointed at this server gets a 404 (never a page that builds on a foreign
    Host). /healthz answers on any host: container health checks call it by whatever address they have."""
    from invoicing.services.organizations import is_known_host

    if request.path != "/healthz" and not is_known_host(request.host, base_url=current_app.config["BASE_URL"]):
        abort(404, description="This server does not answer at this address. Open it at the address it was set "
                               "up with (BASE_URL) or at an organization's own public URL.")


def _refuse_nul() -> None:
    """No field takes a NUL character, and PostgreSQL can neither store nor compare one (a 500 deep in some
    query): refuse it here, once, in the path, every query argument and every form field."""
    fields = (*request.args.items(multi=True), *request.form.items(multi=True))
    if "\x00" in request.path or any("\x00" in name or "\x00" in value for name, value in fields):
        abort(400, description="The request contains a NUL character (\\0), which no field accepts. "
                               "Remove it and try again.")


def _headers(response: Response) -> Response:
    response.vary.add("HX-Request")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    stripe = bool(request.environ.get("invoicing.stripe_checkout"))  # portal/pay.py: STRIPE_CHECKOUT
    response.headers.setdefault("Permissions-Policy", STRIPE_PERMISSIONS_POLICY if stripe else PERMISSIONS_POLICY)
    if response.mimetype == "text/html":
        response.headers.setdefault("Content-Security-Policy", STRIPE_CHECKOUT_CSP if stripe else CSP)
    if current_app.config["BASE_URL"].startswith("https://"):  # plain http (a trial on a laptop) must stay usable
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    if request.path.startswith(("/admin", "/portal", "/pay", "/api", "/subscribe")):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _healthz() -> tuple[dict[str, str], int]:
    """Database reachability, plus what an operator checks after a deploy: which money the app takes
    (`payments`: live, test or sandbox) and whether email leaves (`mail`: smtp, or outbox when it is held)."""
    from flask import current_app
    from sqlalchemy import text

    from invoicing.gateways import payments_mode

    try:
        db.session.execute(text("SELECT 1"))
        db.session.rollback()
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
        logging.getLogger(__name__).error("health check failed: %s", exc.__class__.__name__)
        return {"status": "error", "database": "unreachable"}, 503
    details = {"payments": payments_mode(current_app.config),
               "mail": "smtp" if current_app.config.get("MAIL_SERVER") else "outbox"}
    return {"status": "ok", "database": "ok", **details}, 200


def _favicon() -> ResponseReturnValue:
    """Browsers and tools that ask for /favicon.ico without reading the page's icon link."""
    return redirect(url_for("static", filename="favicon.svg"), 301)


def _error_page(code: int, message: str) -> str:
    """The error page (its content only, for an htmx swap); staff on an admin page keep the admin layout and its
    navigation (not on a 500: the layout reads the database, which may be what failed)."""
    from invoicing.auth import is_staff
    from invoicing.rendering import render

    staff = code < 500 and request.path.startswith("/admin") and is_staff()
    return render("errors/error.html", "content", code=code, message=message, staff=staff,
                  layout="admin/base.html" if staff else "base.html")


def _register_errors(app: Flask) -> None:
    from werkzeug.exceptions import HTTPException
    from werkzeug.exceptions import NotFound as NoSuchPage

    from invoicing.api import errors as api_errors
    from invoicing.pdf import PdfUnavailable
    from invoicing.services import DomainError, NotFound

    @app.errorhandler(PdfUnavailable)
    def _no_pdf(exc: PdfUnavailable) -> tuple[str, int]:
        return _error_page(503, exc.message), 503

    @app.errorhandler(NotFound)
    def _not_found(exc: NotFound) -> tuple[str, int]:
        return _error_page(404, str(exc) or "Not found."), 404

    @app.errorhandler(DomainError)
    def _domain(exc: DomainError) -> tuple[str, int]:
        db.session.rollback()
        return _error_page(422, str(exc)), 422

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Any:
        if exc.code is None or exc.code < 400:
            return exc
        if (problem := api_errors.for_app(exc)) is not None:  # an /api/ address no route matched: JSON, not HTML
            return problem
        response = exc.get_response()
        generic = isinstance(exc, NoSuchPage) and exc.description == NoSuchPage.description  # werkzeug's wording
        response.data = _error_page(exc.code, "We could not find anything at this address." if generic
                                    else exc.description or "")
        response.content_type = "text/html; charset=utf-8"
        return response

    @app.errorhandler(500)
    def _server_error(_exc: Exception) -> tuple[str, int]:
        db.session.rollback()
        return _error_page(500, "Something went wrong on our side."), 500
