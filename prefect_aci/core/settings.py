"""Settings from the environment and .env, one model per concern, loaded the same way by every
command: a missing or malformed variable is named on one `error:` line, never a traceback."""

import re
from typing import TypeVar

from pydantic import AfterValidator, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from prefect_aci.core.errors import UserError

GUID_PATTERN = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
GUID = re.compile(rf"^{GUID_PATTERN}$")


class ProjectSettings(BaseSettings):
    """Base of every settings model: variables in upper case, from the environment or .env."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")


def matches(pattern: str, rule: str) -> AfterValidator:
    """A field validator: the value (when set) matches ``pattern``, else says ``rule``."""
    compiled = re.compile(pattern)

    def validate(value: str | None) -> str | None:
        if value is not None and not compiled.match(value):
            raise ValueError(f"must be {rule}; got {value!r}")
        return value

    return AfterValidator(validate)


Settings = TypeVar("Settings", bound=BaseSettings)


def load(model: type[Settings], *, when_unconfigured: str | None = None, **overrides) -> Settings:
    """``model`` from the environment, or a UserError naming every missing or malformed
    variable on one line. ``when_unconfigured`` is the whole message when no Azure subscription
    or resource group is set at all (the user has not started configuring Azure)."""
    try:
        return model(**overrides)
    except ValidationError as exc:
        missing = {str(e["loc"][0]) for e in exc.errors() if e["type"] == "missing" and e["loc"]}
        if when_unconfigured and {"azure_subscription_id", "azure_resource_group"} <= missing:
            raise UserError(when_unconfigured) from None
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]).upper() if error["loc"] else "settings"
            if error["type"] == "missing":
                problems.append(f"{name} is not set")
            else:
                problems.append(f"{name} {error['msg'].removeprefix('Value error, ')}")
        raise UserError("; ".join(problems) + " (set them in the environment or .env)") from None
