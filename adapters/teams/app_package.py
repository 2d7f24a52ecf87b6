"""The Teams app package: ``manifest.json`` (from the template in ``package/``) and the two
icons, zipped the way Teams' "Upload a custom app" expects (files at the zip's root)."""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from bot.errors import ConfigError

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)\}")
ICONS = ("color.png", "outline.png")


@dataclass(frozen=True)
class PackageInfo:
    """What goes into the manifest. ``app_id`` defaults to the bot id (one GUID for both is usual)."""

    bot_id: str
    app_id: str = ""
    name: str = "Support Bot"
    version: str = "1.0.0"
    developer: str = "Your company"
    website_url: str = "https://example.com"
    privacy_url: str = "https://example.com/privacy"
    terms_url: str = "https://example.com/terms"


def _fill(value: Any, fields: dict[str, str]) -> Any:
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: fields[m.group(1)], value)
    if isinstance(value, list):
        return [_fill(v, fields) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, fields) for k, v in value.items()}
    return value


def manifest(info: PackageInfo) -> dict[str, Any]:
    """The filled-in manifest. Raises ConfigError for ids Teams would reject."""
    app_id = info.app_id or info.bot_id
    for label, value in (("bot id (MicrosoftAppId)", info.bot_id), ("app id", app_id)):
        if not _GUID.match(value):
            raise ConfigError(f"the {label} must be a GUID like 00000000-0000-0000-0000-000000000000, got {value!r}")
    if len(info.name) > 30:
        raise ConfigError("the app's short name may have at most 30 characters")
    template = json.loads(resources.files("adapters.teams").joinpath("package/manifest.json").read_text("utf-8"))
    fields = {
        "BOT_ID": info.bot_id, "APP_ID": app_id, "NAME": info.name, "VERSION": info.version,
        "DEVELOPER": info.developer, "WEBSITE_URL": info.website_url, "PRIVACY_URL": info.privacy_url,
        "TERMS_URL": info.terms_url,
    }
    filled: dict[str, Any] = _fill(template, fields)
    return filled


def build_package(info: PackageInfo, out: Path) -> Path:
    """Write the zip Teams uploads to ``out`` (parents created); return its path."""
    data = json.dumps(manifest(info), indent=2, ensure_ascii=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    icons = resources.files("adapters.teams").joinpath("package")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", data)
        for icon in ICONS:
            zf.writestr(icon, icons.joinpath(icon).read_bytes())
    return out
