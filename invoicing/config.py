"""Typed settings from environment variables; a bad value stops start-up with a clear message."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from limits import parse as parse_limit  # Flask-Limiter's own parser: a limit must mean the same to it

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


class ConfigError(RuntimeError):
    """Raised when an environment variable has a value the app cannot run with."""


class _Env:
    def __init__(self, environ: Mapping[str, str]):
        self.environ = environ
        self.errors: list[str] = []

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self.environ.get(name)
        return default if value is None or value == "" else value

    def flag(self, name: str, default: bool) -> bool:
        raw = self.environ.get(name)
        if raw is None:
            return default
        if raw.strip().lower() in TRUE:
            return True
        if raw.strip().lower() in FALSE:
            return False
        self.errors.append(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")
        return default

    def integer(self, name: str, default: int, *, low: int, high: int) -> int:
        raw = self.environ.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            self.errors.append(f"{name}={raw!r} is not a whole number")
            return default
        if not low <= value <= high:
            self.errors.append(f"{name}={value} is out of range ({low}..{high})")
        return value

    def secret(self, name: str) -> str | None:
        """Read NAME, or the file named by NAME_FILE (Docker/Kubernetes secrets)."""
        value = self.text(name)
        path = self.text(f"{name}_FILE")
        if value is None and path:
            try:
                value = Path(path).read_text().strip() or None
            except OSError as exc:
                self.errors.append(f"{name}_FILE={path!r} cannot be read: {exc.strerror}")
        return value


def _database_url(env: _Env, instance_path: str) -> str:
    url = env.text("DATABASE_URL") or f"sqlite:///{Path(instance_path) / 'invoicing.db'}"
    # Heroku-style URLs and plain "postgresql://" should use psycopg 3, the driver we ship.
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if not url.startswith(("sqlite:", "postgresql+psycopg:")):
        env.errors.append(f"DATABASE_URL must be a sqlite:// or postgresql:// URL, got {url.split(':')[0]}://")
    return url


def _base_url(env: _Env) -> str:
    url = (env.text("BASE_URL") or "http://127.0.0.1:5000").rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        env.errors.append(f"BASE_URL={url!r} must be an absolute http(s) URL, e.g. https://billing.example.com")
    return url


def _backup_dir(env: _Env, instance_path: str) -> str:
    path = Path(env.text("BACKUP_DIR") or Path(instance_path) / "backups")
    if not path.is_absolute():
        env.errors.append(f"BACKUP_DIR={str(path)!r} must be an absolute path, e.g. /data/backups")
    elif path.exists() and not path.is_dir():
        env.errors.append(f"BACKUP_DIR={str(path)!r} exists and is not a folder")
    return str(path)


def _rate_limit(env: _Env, name: str, default: str) -> str:
    value = env.text(name, default) or default
    try:
        parse_limit(value)
    except ValueError:
        env.errors.append(f"{name}={value!r} is not a rate limit (e.g. \"300 per minute\" or \"10/second\")")
    return value


def _secret_key(env: _Env, instance_path: str, *, debug: bool, demo: bool) -> str | None:
    key = env.secret("SECRET_KEY")
    if key:
        if len(key) < 32:
            env.errors.append("SECRET_KEY must be at least 32 characters (it signs pay links and sessions)")
        return key
    if not (debug or demo):
        env.errors.append(
            "SECRET_KEY (or SECRET_KEY_FILE) is required; generate one with "
            "`python -c 'import secrets; print(secrets.token_hex(32))'`"
        )
        return None
    # Demo/debug only: one random key per instance folder, so sessions and pay links survive restarts.
    path = Path(instance_path) / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _key_mode(name: str, key: str | None, prefixes: tuple[str, ...], env: _Env) -> str | None:
    """'test' or 'live' from a Stripe key's prefix (e.g. sk_test_, rk_live_); None (and an error) otherwise."""
    if not key:
        return None
    for prefix in prefixes:
        for mode in ("test", "live"):
            if key.startswith(f"{prefix}_{mode}_"):
                return mode
    shapes = " or ".join(f"{p}_test_... / {p}_live_..." for p in prefixes)
    env.errors.append(f"{name} must be a Stripe key ({shapes}), got one starting {key[:8]!r}")
    return None


def _check_stripe_keys(env: _Env, config: dict[str, Any]) -> None:
    """No Stripe key means the sandbox gateway; otherwise the keys must be Stripe's and of one mode (test or live).

    Live mode takes real money, so it also needs an https BASE_URL (pay links, return pages and webhooks are
    built from it) and a webhook secret (payments are recorded from signed events).
    """
    secret = config["STRIPE_SECRET_KEY"]
    if not secret:
        if config["STRIPE_PUBLISHABLE_KEY"] or config["STRIPE_WEBHOOK_SECRET"]:
            env.errors.append("STRIPE_SECRET_KEY is required when another STRIPE_* key is set "
                              "(without it the app uses the sandbox gateway)")
        return
    mode = _key_mode("STRIPE_SECRET_KEY", secret, ("sk", "rk"), env)
    public = _key_mode("STRIPE_PUBLISHABLE_KEY", config["STRIPE_PUBLISHABLE_KEY"], ("pk",), env)
    if mode and public and mode != public:
        env.errors.append(f"STRIPE_SECRET_KEY is a {mode} key but STRIPE_PUBLISHABLE_KEY is a {public} key: "
                          "use the pair from the same mode of the Stripe dashboard")
    if not config["STRIPE_WEBHOOK_SECRET"]:
        env.errors.append("STRIPE_WEBHOOK_SECRET is required when STRIPE_SECRET_KEY is set (whsec_...)")
    if mode == "live" and not config["BASE_URL"].startswith("https://"):
        env.errors.append("BASE_URL must be https:// with live Stripe keys (clients pay through its links)")


def load_config(instance_path: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Build the Flask config from the environment; raise ConfigError listing every bad value."""
    env = _Env(os.environ if environ is None else environ)
    debug = env.flag("FLASK_DEBUG", False)
    demo = env.flag("INVOICING_DEMO", False)
    mail_server = env.text("MAIL_SERVER")
    scheduler = env.flag("SCHEDULER_ENABLED", False)
    config: dict[str, Any] = {
        "SQLALCHEMY_DATABASE_URI": _database_url(env, instance_path),
        "SECRET_KEY": _secret_key(env, instance_path, debug=debug, demo=demo),
        "BASE_URL": _base_url(env),
        "DEMO": demo,
        "MAIL_SERVER": mail_server,
        "MAIL_PORT": env.integer("MAIL_PORT", 587 if env.flag("MAIL_USE_TLS", True) else 25, low=1, high=65535),
        "MAIL_USERNAME": env.text("MAIL_USERNAME"),
        "MAIL_PASSWORD": env.secret("MAIL_PASSWORD"),
        "MAIL_USE_TLS": env.flag("MAIL_USE_TLS", mail_server is not None),
        "MAIL_USE_SSL": env.flag("MAIL_USE_SSL", False),
        "MAIL_DEFAULT_SENDER": env.text("MAIL_DEFAULT_SENDER", "billing@localhost"),
        "MAIL_TIMEOUT": env.integer("MAIL_TIMEOUT", 15, low=1, high=300),
        "STRIPE_SECRET_KEY": env.secret("STRIPE_SECRET_KEY"),
        "STRIPE_PUBLISHABLE_KEY": env.text("STRIPE_PUBLISHABLE_KEY"),
        "STRIPE_WEBHOOK_SECRET": env.secret("STRIPE_WEBHOOK_SECRET"),
        "STRIPE_API_BASE": env.text("STRIPE_API_BASE"),
        "SCHEDULER_ENABLED": scheduler,
        # Nightly backups are on wherever the scheduler runs (the container), unless turned off.
        "BACKUP_ENABLED": env.flag("BACKUP_ENABLED", scheduler),
        "BACKUP_DIR": _backup_dir(env, instance_path),
        "BACKUP_KEEP": env.integer("BACKUP_KEEP", 14, low=1, high=1000),
        "RATELIMIT_STORAGE_URI": env.text("RATELIMIT_STORAGE_URI", "memory://"),
        "RATELIMIT_ENABLED": env.flag("RATELIMIT_ENABLED", True),
        # The JSON API: requests per API key (limits' notation, e.g. "300 per minute"), and outgoing webhooks.
        "API_RATE_LIMIT": _rate_limit(env, "API_RATE_LIMIT", "300 per minute"),
        "WEBHOOK_TIMEOUT": env.integer("WEBHOOK_TIMEOUT", 10, low=1, high=60),
        "WEBHOOK_DISABLE_AFTER_DAYS": env.integer("WEBHOOK_DISABLE_AFTER_DAYS", 3, low=1, high=30),
        # Server-side request forgery guard: webhooks go to public addresses only, unless the operator says so.
        "WEBHOOKS_ALLOW_PRIVATE": env.flag("WEBHOOKS_ALLOW_PRIVATE", False),
        "PAYLINK_EXPIRY_DAYS": env.integer("PAYLINK_EXPIRY_DAYS", 30, low=1, high=3650),
        # Pay page opens are counted in memory and written this often (0: in the request, as they come).
        "PAY_VIEW_FLUSH_SECONDS": env.integer("PAY_VIEW_FLUSH_SECONDS", 1, low=0, high=60),
        # The admin banner's "a job is late" is read from the leases at most this often per process (0: each page).
        "SCHEDULER_BANNER_CACHE_SECONDS": env.integer("SCHEDULER_BANNER_CACHE_SECONDS", 5, low=0, high=300),
        "PASSWORD_HASH_METHOD": env.text("PASSWORD_HASH_METHOD", "scrypt"),
        "LOG_LEVEL": (env.text("LOG_LEVEL", "INFO") or "INFO").upper(),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "MAX_CONTENT_LENGTH": 4 * 1024 * 1024,
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
    }
    _check_stripe_keys(env, config)
    config["SESSION_COOKIE_SECURE"] = config["BASE_URL"].startswith("https://")
    if config["LOG_LEVEL"] not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        env.errors.append(f"LOG_LEVEL={config['LOG_LEVEL']!r} must be DEBUG, INFO, WARNING or ERROR")
    if env.errors:
        raise ConfigError("Bad configuration:\n  - " + "\n  - ".join(env.errors))
    return config
