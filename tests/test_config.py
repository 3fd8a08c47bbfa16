import pytest

from invoicing.config import ConfigError, load_config
from invoicing.gateways import payments_mode

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
                     "BASE_URL must be https:// with live Stripe keys", "PAYLINK_EXPIRY_DAYS=0 is out of range"):
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


LIVE = {"SECRET_KEY": KEY, "BASE_URL": "https://billing.example.com", "STRIPE_WEBHOOK_SECRET": "whsec_live"}


@pytest.mark.parametrize("secret, public", [("sk_live_abc", "pk_live_abc"), ("rk_live_abc", None),
                                            ("sk_test_abc", "pk_test_abc"), ("rk_test_abc", None)])
def test_it_accepts_live_and_test_keys_of_one_mode(tmp_path, secret, public):
    env = {**LIVE, "STRIPE_SECRET_KEY": secret, **({"STRIPE_PUBLISHABLE_KEY": public} if public else {})}
    config = load_config(str(tmp_path), env)
    assert config["STRIPE_SECRET_KEY"] == secret
    assert payments_mode(config) == ("live" if "_live_" in secret else "test")


@pytest.mark.parametrize("secret, public, secret_mode, public_mode", [
    ("sk_live_abc", "pk_test_abc", "live", "test"), ("sk_test_abc", "pk_live_abc", "test", "live")])
def test_it_refuses_a_mixed_pair_of_keys(tmp_path, secret, public, secret_mode, public_mode):
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path), {**LIVE, "STRIPE_SECRET_KEY": secret, "STRIPE_PUBLISHABLE_KEY": public})
    assert (f"STRIPE_SECRET_KEY is a {secret_mode} key but STRIPE_PUBLISHABLE_KEY is a {public_mode} key"
            in str(info.value))


def test_it_requires_https_and_a_webhook_secret_in_live_mode(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path), {"SECRET_KEY": KEY, "BASE_URL": "http://billing.example.com",
                                    "STRIPE_SECRET_KEY": "sk_live_abc"})
    message = str(info.value)
    assert "BASE_URL must be https:// with live Stripe keys" in message
    assert "STRIPE_WEBHOOK_SECRET is required" in message
    # Test keys may stay on http (a laptop, the local Stripe server).
    config = load_config(str(tmp_path), {"SECRET_KEY": KEY, "BASE_URL": "http://127.0.0.1:5000",
                                         "STRIPE_SECRET_KEY": "sk_test_abc", "STRIPE_WEBHOOK_SECRET": "whsec_x"})
    assert payments_mode(config) == "test"


@pytest.mark.parametrize("env, expected", [
    ({"STRIPE_SECRET_KEY": "pk_live_abc"}, "STRIPE_SECRET_KEY must be a Stripe key (sk_test_... / sk_live_..."),
    ({"STRIPE_SECRET_KEY": "sk_live_abc", "STRIPE_PUBLISHABLE_KEY": "sk_live_abc"},
     "STRIPE_PUBLISHABLE_KEY must be a Stripe key (pk_test_... / pk_live_...)"),
    ({"STRIPE_PUBLISHABLE_KEY": "pk_live_abc"}, "STRIPE_SECRET_KEY is required when another STRIPE_* key is set"),
])
def test_it_names_a_key_that_is_not_what_it_should_be(tmp_path, env, expected):
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path), {**LIVE, **env})
    assert expected in str(info.value)
    assert "abc" not in str(info.value)  # never print a whole key


def test_it_uses_the_sandbox_without_a_stripe_key(tmp_path):
    assert payments_mode(load_config(str(tmp_path), {"SECRET_KEY": KEY})) == "sandbox"


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
