import pytest

from invoicing.config import ConfigError, load_config

KEY = "k" * 40


def test_it_requires_a_secret_key_outside_demo_and_debug(tmp_path):
    with pytest.raises(ConfigError, match="SECRET_KEY .* is required"):
        load_config(str(tmp_path), {})


def test_it_reads_the_secret_key_from_a_file(tmp_path):
    (tmp_path / "key").write_text(KEY + "\n")
    assert load_config(str(tmp_path), {"SECRET_KEY_FILE": str(tmp_path / "key")})["SECRET_KEY"] == KEY


def test_it_keeps_one_generated_key_per_instance_in_demo_mode(tmp_path):
    first = load_config(str(tmp_path), {"INVOICING_DEMO": "1"})["SECRET_KEY"]
    assert len(first) == 64 and load_config(str(tmp_path), {"INVOICING_DEMO": "yes"})["SECRET_KEY"] == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_it_lists_every_bad_value_at_once(tmp_path):
    env = {"SECRET_KEY": "short", "MAIL_PORT": "lots", "SCHEDULER_ENABLED": "maybe", "BASE_URL": "billing.test",
           "DATABASE_URL": "mysql://x", "STRIPE_SECRET_KEY": "sk_live_123", "PAYLINK_EXPIRY_DAYS": "0"}
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path), env)
    message = str(info.value)
    for expected in ("SECRET_KEY must be at least 32", "MAIL_PORT='lots' is not a whole number",
                     "SCHEDULER_ENABLED='maybe' is not a boolean", "BASE_URL='billing.test'", "DATABASE_URL must be",
                     "test-mode key", "PAYLINK_EXPIRY_DAYS=0 is out of range"):
        assert expected in message


def test_it_uses_psycopg_for_postgres_urls_and_sqlite_by_default(tmp_path):
    assert load_config(str(tmp_path), {"SECRET_KEY": KEY, "DATABASE_URL": "postgres://u@h/db"})[
        "SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@h/db"
    assert load_config(str(tmp_path), {"SECRET_KEY": KEY})["SQLALCHEMY_DATABASE_URI"] == (
        f"sqlite:///{tmp_path / 'invoicing.db'}")


def test_it_requires_the_webhook_secret_with_a_stripe_key(tmp_path):
    with pytest.raises(ConfigError, match="STRIPE_WEBHOOK_SECRET is required"):
        load_config(str(tmp_path), {"SECRET_KEY": KEY, "STRIPE_SECRET_KEY": "sk_test_1"})


def test_it_marks_cookies_secure_behind_https(tmp_path):
    config = load_config(str(tmp_path), {"SECRET_KEY": KEY, "BASE_URL": "https://billing.example.com/"})
    assert config["SESSION_COOKIE_SECURE"] and config["BASE_URL"] == "https://billing.example.com"


def test_it_turns_nightly_backups_on_where_the_scheduler_runs(tmp_path):
    config = load_config(str(tmp_path), {"SECRET_KEY": KEY})
    assert (config["BACKUP_ENABLED"], config["BACKUP_DIR"], config["BACKUP_KEEP"]) == (
        False, str(tmp_path / "backups"), 14)
    container = {"SECRET_KEY": KEY, "SCHEDULER_ENABLED": "1", "BACKUP_DIR": "/data/backups", "BACKUP_KEEP": "30"}
    config = load_config(str(tmp_path), container)
    assert (config["BACKUP_ENABLED"], config["BACKUP_DIR"], config["BACKUP_KEEP"]) == (True, "/data/backups", 30)
    assert load_config(str(tmp_path), {**container, "BACKUP_ENABLED": "off"})["BACKUP_ENABLED"] is False


def test_it_refuses_bad_backup_settings(tmp_path):
    (tmp_path / "a-file").write_text("")
    for env, expected in (({"BACKUP_DIR": "backups"}, "BACKUP_DIR='backups' must be an absolute path"),
                          ({"BACKUP_DIR": str(tmp_path / "a-file")}, "exists and is not a folder"),
                          ({"BACKUP_KEEP": "0"}, "BACKUP_KEEP=0 is out of range"),
                          ({"BACKUP_KEEP": "all"}, "BACKUP_KEEP='all' is not a whole number"),
                          ({"BACKUP_ENABLED": "nightly"}, "BACKUP_ENABLED='nightly' is not a boolean")):
        with pytest.raises(ConfigError, match=expected):
            load_config(str(tmp_path), {"SECRET_KEY": KEY, **env})
