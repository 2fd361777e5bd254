"""config/example.toml stays a valid settings file (every key known, every value well-typed)."""

from pathlib import Path

from idp.settings import load_settings

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "example.toml"


def test_example_config_loads_and_redacts_its_secrets(tmp_path):
    settings = load_settings({"instance_dir": str(tmp_path)},
                             environ={"IDP_CONFIG": str(EXAMPLE)})
    assert settings.issuer == "https://id.example.org"
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.auth.backends == ("local", "ldap")
    shown = repr(settings)
    for secret in ("CHANGE-ME-long-random", "CHANGE-ME-at-least", "idp:CHANGE-ME@"):
        assert secret not in shown
