"""``teams-package``: the Teams app package to upload."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from adapters.cli.common import fail, failing, out, services


def teams_package(
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the zip")] = Path("dist/supportbot-teams.zip"),
    bot_id: Annotated[str | None, typer.Option(help="The Azure Bot's app id (default: MicrosoftAppId)")] = None,
    app_id: Annotated[str | None, typer.Option(help="The Teams app id, a GUID (default: the bot id)")] = None,
    name: Annotated[str, typer.Option(help="The app's name in Teams (30 characters at most)")] = "Support Bot",
    version: Annotated[str, typer.Option(help="The app version; raise it for each re-upload")] = "1.0.0",
    developer: Annotated[str, typer.Option(help="Your organisation's name")] = "Your company",
    website_url: Annotated[str, typer.Option(help="https URL shown in the app details")] = "https://example.com",
    privacy_url: Annotated[str, typer.Option(help="https URL of the privacy statement")] = "https://example.com/privacy",
    terms_url: Annotated[str, typer.Option(help="https URL of the terms of use")] = "https://example.com/terms",
) -> None:
    """Build the Teams app package (manifest.json + icons) to upload in Teams or the admin center."""
    from adapters.teams.app_package import PackageInfo, build_package

    bot = bot_id or services().settings.microsoft_app_id
    if not bot:
        fail("no bot id: set MicrosoftAppId (SUPPORTBOT_MICROSOFT_APP_ID) or pass --bot-id")
    info = PackageInfo(bot_id=bot, app_id=app_id or "", name=name, version=version, developer=developer,
                       website_url=website_url, privacy_url=privacy_url, terms_url=terms_url)
    with failing():
        written = build_package(info, out_path)
    out.print(f"wrote {written} (bot {bot}); upload it in Teams: Apps > Manage your apps > Upload an app")
