"""Settings: defaults <- $IDP_CONFIG TOML <- IDP_* env <- overrides, validated once, frozen,
secrets redacted; bad configuration is one line and exit code 2 from the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from idp.cli import main
from idp.errors import ConfigError
from idp.settings import env_name, load_defaults, load_settings


def write_toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "idp.toml"
    path.write_text(text)
    return str(path)


def test_defaults_match_the_interface(tmp_path):
    s = load_settings(environ={})
    assert s.issuer == "http://127.0.0.1:5000"
    assert s.instance_dir == str(Path("./instance").resolve())
    assert s.database_url == f"sqlite:///{Path('./instance').resolve() / 'idp.db'}"
    assert s.redis_url == "" and s.smtp_url == "" and s.sms_url == ""
    assert s.server.port == 5000 and s.server.host == "127.0.0.1"
    assert s.auth.backends == ("local",)


def test_layers_later_wins(tmp_path):
    config = write_toml(
        tmp_path,
        'issuer = "https://from-file.example"\n'
        "[server]\nport = 6000\nthreads = 8\n"
        '[logging]\nformat = "json"\n',
    )
    environ = {"IDP_CONFIG": config, "IDP_SERVER_PORT": "7000", "IDP_LOGGING_LEVEL": "debug"}
    s = load_settings(environ=environ)
    assert s.issuer == "https://from-file.example"  # file over default
    assert s.server.threads == 8  # file over default
    assert s.server.port == 7000  # env over file
    assert s.logging.level == "DEBUG"  # env over default, normalised
    assert s.logging.format == "json"
    s = load_settings({"server": {"port": 8000}}, environ=environ)
    assert s.server.port == 8000  # overrides over env
    assert s.server.threads == 8  # untouched keys of the section keep the lower layers


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", True), ("true", True), ("Yes", True), ("on", True)]
    + [("0", False), ("false", False), ("NO", False), ("off", False)],
)
def test_env_booleans(text, expected):
    assert load_settings(environ={"IDP_DATABASE_ECHO": text}).database.echo is expected


def test_env_integers_and_lists():
    s = load_settings(
        environ={"IDP_SERVER_WORKERS": " 3 ", "IDP_AUTH_BACKENDS": "local, ldap"},
    )
    assert s.server.workers == 3
    assert s.auth.backends == ("local", "ldap")
    s = load_settings(environ={"IDP_AUTH_BACKENDS": '["ldap", "local"]'})
    assert s.auth.backends == ("ldap", "local")


@pytest.mark.parametrize(
    ("environ", "fragment"),
    [
        ({"IDP_DATABASE_ECHO": "maybe"}, "database.echo must be true or false"),
        ({"IDP_SERVER_PORT": "eighty"}, "server.port must be an integer"),
        ({"IDP_SERVER_PORT": "70000"}, "server.port must be 1-65535"),
        ({"IDP_AUTH_BACKENDS": "[1, 2"}, "auth.backends is not a valid JSON list"),
        ({"IDP_AUTH_BACKENDS": "[1, 2]"}, "auth.backends must be a list of strings"),
        ({"IDP_ISSUER": "not a url"}, "issuer must be a URL"),
        ({"IDP_ISSUER": "ftp://example.org"}, "issuer must be a URL"),
        ({"IDP_ISSUER": "https://example.org/?x=1"}, "must not have a query"),
        ({"IDP_REDIS_URL": "localhost:6379"}, "redis_url must be a URL"),
        ({"IDP_REDIS_URL": "redis://"}, "redis_url has no host"),
        ({"IDP_SMTP_URL": "http://mail.example.org"}, "smtp_url must be a URL"),
        ({"IDP_SMS_URL": "smtp://x"}, "sms_url must be a URL"),
        ({"IDP_DATABASE_URL": "nonsense"}, "database_url is not a database URL"),
        ({"IDP_DATABASE_URL": "mysql://u@h/db"}, "database_url must be a sqlite://"),
        ({"IDP_DATABASE_URL": "postgresql+psycopg2://u@h/db"}, "psycopg 3 driver"),
        ({"IDP_KEYS_RSA_BITS": "1024"}, "keys.rsa_bits must be at least 2048"),
        ({"IDP_KEYS_ENCRYPTION_KEY": "short"}, "at least 32 characters"),
        ({"IDP_LOGGING_FORMAT": "xml"}, "logging.format"),
        ({"IDP_SERVER_THREADS": "-1"}, "server.threads must not be negative"),
        ({"IDP_SERVER_HTTP": "2"}, 'server.http must be "1" or "auto"'),
        ({"IDP_SAML_ENCRYPTION_ALGORITHM": "aes-gcm"}, "saml.encryption_algorithm must be one"),
    ],
)
def test_bad_values_are_one_clear_line(environ, fragment):
    with pytest.raises(ConfigError) as err:
        load_settings(environ=environ)
    message = str(err.value)
    assert fragment in message
    assert "\n" not in message


def test_unknown_environment_variable_is_refused():
    with pytest.raises(ConfigError, match="IDP_SERVER_PROT"):
        load_settings(environ={"IDP_SERVER_PROT": "1"})
    with pytest.raises(ConfigError, match="IDP_SERVER"):
        load_settings(environ={"IDP_SERVER": "x"})


def test_non_setting_environment_variables_are_ignored():
    load_settings(environ={"IDP_TEST_DATABASE_URL": "x", "IDPX": "y", "HOME": "/"})


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('isuser = "x"\n', "unknown setting 'isuser'"),
        ("[server]\nprot = 1\n", "unknown setting server.prot"),
        ("[nosuch]\na = 1\n", "unknown setting 'nosuch'"),
        ('server = "x"\n', "setting [server] in"),
        ('[server]\nport = "80"\n', "server.port must be an integer"),
        ("[server]\nport = true\n", "server.port must be an integer"),
        ('[database]\necho = "yes"\n', "database.echo must be true or false"),
        ('[auth]\nbackends = "local"\n', "auth.backends must be a list"),
        ("issuer = 5\n", "issuer must be a string"),
        ("issuer = [\n", "is not valid TOML"),
    ],
)
def test_bad_config_file(tmp_path, text, fragment):
    config = write_toml(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_settings(environ={"IDP_CONFIG": config})
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(environ={"IDP_CONFIG": str(tmp_path / "nope.toml")})


def test_unknown_override_is_refused():
    with pytest.raises(ConfigError, match="unknown setting 'nope'"):
        load_settings({"nope": 1}, environ={})


def test_settings_are_frozen():
    s = load_settings(environ={})
    with pytest.raises(AttributeError):
        s.issuer = "https://evil.example"
    with pytest.raises(AttributeError):
        s.server.port = 1
    with pytest.raises(TypeError):
        s.server._data["port"] = 1
    with pytest.raises(AttributeError):
        s.auth.backends.append("ldap")  # lists become tuples


def test_secrets_are_redacted_in_repr_and_str():
    secret_values = {
        "IDP_SECRET_KEY": "flask-secret-value-123",
        "IDP_KEYS_ENCRYPTION_KEY": "kek-value-0123456789abcdefghijklmnop",
        "IDP_DATABASE_URL": "postgresql+psycopg://idp:dbpass-value@db.example/idp",
        "IDP_REDIS_URL": "redis://:redispass-value@cache.example:6379/0",
        "IDP_SMTP_URL": "smtp://mailer:smtppass-value@mail.example:587",
    }
    s = load_settings(environ=secret_values)
    # The values are there for the code that needs them...
    assert s.secret_key == "flask-secret-value-123"
    assert "dbpass-value" in s.database_url
    # ...but never in any textual form of the settings.
    for shown in (repr(s), str(s), repr(s.keys), str(s.keys), f"{s}", repr(s.database)):
        for hidden in ("flask-secret-value", "kek-value", "dbpass-value", "redispass-value"):
            assert hidden not in shown
        assert "smtppass-value" not in shown
    assert "postgresql+psycopg://idp:***@db.example/idp" in repr(s)
    assert "redis://:***@cache.example:6379/0" in repr(s)
    assert "encryption_key='***'" in repr(s.keys)


def test_ldap_bind_password_is_redacted():
    s = load_settings(environ={"IDP_LDAP_BIND_PASSWORD": "ldap-bind-pw-value"})
    assert s.ldap.bind_password == "ldap-bind-pw-value"
    assert "ldap-bind-pw-value" not in repr(s) and "ldap-bind-pw-value" not in str(s.ldap)
    assert "bind_password='***'" in repr(s.ldap)


def test_every_password_like_key_is_redacted():
    """Any setting whose name says secret/password (e.g. ldap.bind_password) is hidden."""
    from idp.settings import redact

    assert redact("bind_password", "hunter2") == "***"
    assert redact("client_secret", "abc") == "***"
    defaults = load_defaults()
    for section, table in defaults.items():
        if not isinstance(table, dict):
            continue
        for key in table:
            if "password" in key or "secret" in key:
                assert redact(key, "visible?") == "***", f"{section}.{key} is not redacted"


def test_bare_postgresql_url_uses_psycopg_3():
    s = load_settings(environ={"IDP_DATABASE_URL": "postgresql://idp:p%40ss@db.example:5433/idp"})
    assert s.database_url == "postgresql+psycopg://idp:p%40ss@db.example:5433/idp"


def test_env_names():
    assert env_name(None, "issuer") == "IDP_ISSUER"
    assert env_name("keys", "encryption_key") == "IDP_KEYS_ENCRYPTION_KEY"


# --- the CLI: exit code 2 and exactly one line on stderr -----------------------------------------


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"IDP_SERVER_PROT": "1"}, "unknown setting in environment variable IDP_SERVER_PROT"),
        ({"IDP_ISSUER": "nope"}, "issuer must be a URL"),
        ({"IDP_SERVER_PORT": "x"}, "server.port must be an integer"),
    ],
)
def test_cli_bad_config_exits_2_with_one_line(monkeypatch, capsys, tmp_path, env, fragment):
    monkeypatch.setenv("IDP_INSTANCE_DIR", str(tmp_path / "instance"))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main(["init"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and fragment in err
    assert err.startswith("idp: configuration error: ")
    assert not (tmp_path / "instance").exists()


def test_cli_bad_config_file_exits_2_via_console_script(tmp_path):
    """The real entry point (as installed) turns the error into exit code 2 too."""
    config = write_toml(tmp_path, "[server]\nport = 1\nbogus = 2\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(IDP_CONFIG=config, IDP_INSTANCE_DIR=str(tmp_path / "instance"))
    idp = Path(sys.executable).with_name("idp")
    proc = subprocess.run(
        [str(idp), "db", "upgrade"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"idp: configuration error: unknown setting server.bogus in {config}"
    ]


@pytest.mark.parametrize(
    ("environ", "threads"),
    [
        ({}, 1),  # everything local: one thread per worker
        (
            {
                "IDP_LDAP_ENABLED": "true",
                "IDP_LDAP_URL": "ldap://127.0.0.1:389",
                "IDP_LDAP_USER_BASE_DN": "ou=people,dc=example,dc=org",
            },
            4,
        ),
        ({"IDP_SMTP_URL": "smtp://127.0.0.1:25"}, 4),
        ({"IDP_SMS_URL": "https://sms.example.org/send"}, 4),
        ({"IDP_SMTP_URL": "smtp://127.0.0.1:25", "IDP_SERVER_THREADS": "2"}, 2),  # explicit wins
    ],
)
def test_server_threads_automatic_choice(environ, threads):
    from idp.cli import server_threads

    assert server_threads(load_settings(environ=environ)) == threads
