"""Every setting is documented in the README's configuration table."""

from pathlib import Path

from clientvault.settings import (
    AuditSettings,
    AuthSettings,
    GatewaySettings,
    OperatorSettings,
    Settings,
    VaultSettings,
)

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_readme() -> None:
    names = set()
    for model in (Settings, AuthSettings, GatewaySettings, VaultSettings, AuditSettings, OperatorSettings):
        for name, field in model.model_fields.items():
            alias = field.validation_alias
            names.add(alias if isinstance(alias, str) else f"CLIENTVAULT_{name.upper()}")

    missing = sorted(name for name in names if f"`{name}`" not in README)
    assert not missing, f"document these settings in README.md: {missing}"
