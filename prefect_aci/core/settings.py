"""Settings from the environment and .env, one model per concern, loaded the same way by every
command: a missing or malformed variable is named on one `error:` line, never a traceback.

Product settings share one prefix, PREFECT_ACI_ (a field ``prefix`` is PREFECT_ACI_PREFIX), so a
user's .env can hold them beside other tools' settings. Names other tools read too (AZURE_*,
PREFECT_API_*) keep their own: those fields say so with ``validation_alias``.
"""

import datetime
import os
import re
from pathlib import Path
from typing import Annotated, Any, TypeVar

from dotenv import dotenv_values
from pydantic import AfterValidator, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from prefect_aci.core.console import console
from prefect_aci.core.errors import UserError

PREFIX = "PREFECT_ACI_"
ENV_FILE = ".env"
# Names before the prefix (0.1); a .env that still has one gets a line naming the new one.
RENAMED = {
    old: PREFIX + old
    for old in (
        "BASE_IMAGE",
        "IMAGE_PYTHON",
        "IMAGE_REPOSITORY",
        "CA_BUNDLE",
        "DOCKER_DIR",
        "DEBIAN_MIRROR",
        "OFFLINE_BASE_IMAGE",
        "SOURCE_URL",
        "ACR_USERNAME",
        "ACR_PASSWORD",
        "DOCKERHUB_USERNAME",
        "DOCKERHUB_TOKEN",
        "REGISTRY_USERNAME",
        "REGISTRY_PASSWORD",
        "PREFIX",
        "KEY_VAULT_NAME",
        "DEMO_SECRET_VALUE",
        "WORK_POOL_NAME",
        "DEPLOY_REGISTRY",
        "REGISTRY_SKU",
        "DEPLOY_WORKER",
        "ENABLE_PURGE_PROTECTION",
        "WORKER_CPU",
        "WORKER_MEMORY_GB",
    )
}

GUID_PATTERN = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
GUID = re.compile(rf"^{GUID_PATTERN}$")
# A duration as the sweep's settings and options take it: 30m, 12h, 7d, 1d12h.
DURATION = re.compile(r"^(?:\d+[smhdw])+$")
DURATION_RULE = "a duration like 30m, 12h, 7d or 1d12h (s, m, h, d, w)"
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def duration(text: str) -> datetime.timedelta:
    """'90m', '12h', '7d', '1d12h', '0s' -> a timedelta; a ValueError saying the rule otherwise."""
    if not DURATION.match(text.strip()):
        raise ValueError(f"must be {DURATION_RULE}; got {text!r}")
    parts = re.findall(r"(\d+)([smhdw])", text)
    return datetime.timedelta(**{_UNITS[unit]: int(n) for n, unit in parts})


# The shortest schedule of the sweep: one sweep reads every group and run of the pool.
SHORTEST_SWEEP = datetime.timedelta(minutes=5)


def _sweep_every(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    if duration(value) < SHORTEST_SWEEP:
        raise ValueError(f"must be at least 5m (one sweep reads the whole pool); got {value!r}")
    return value.strip()


# PREFECT_ACI_SWEEP_EVERY: how often the sweep runs as a scheduled deployment on the pool; unset,
# no such deployment (and no sweeper role for the job identity).
SweepEvery = Annotated[str | None, AfterValidator(_sweep_every)]


class ProjectSettings(BaseSettings):
    """Base of every settings model: PREFECT_ACI_<FIELD> from the environment or .env; a field
    with a ``validation_alias`` is read under that standard name instead."""

    model_config = SettingsConfigDict(
        env_file=ENV_FILE, env_prefix=PREFIX, extra="ignore", populate_by_name=True
    )


def matches(pattern: str, rule: str) -> AfterValidator:
    """A field validator: the value (when set) matches ``pattern``, else says ``rule``."""
    compiled = re.compile(pattern)

    def validate(value: str | None) -> str | None:
        if value is not None and not compiled.match(value):
            raise ValueError(f"must be {rule}; got {value!r}")
        return value

    return AfterValidator(validate)


Settings = TypeVar("Settings", bound=BaseSettings)


def env_name(model: type[BaseSettings], field: str) -> str:
    """The variable a field is read from."""
    info = model.model_fields.get(field)
    if info is not None and isinstance(info.validation_alias, str):
        return info.validation_alias
    if info is None:  # pydantic reports an aliased field under its alias
        return field.upper()
    return model.model_config.get("env_prefix", "") + field.upper()


_warned: set[str] = set()


def _renamed_in_env_file(model: type[BaseSettings]) -> dict[str, Any]:
    """Values .env still holds under an old name, for the fields of ``model`` whose new name is
    set nowhere; one warning line per old name. Old names in the process environment are not
    read: unprefixed, they may belong to another tool (PREFIX is a common one)."""
    path = Path(ENV_FILE)
    if not path.is_file():
        return {}
    found = dotenv_values(path)
    values = {}
    for field in model.model_fields:
        new = env_name(model, field)
        old = next((o for o, n in RENAMED.items() if n == new), None)
        if old is None or old not in found:
            continue
        if old not in _warned:
            _warned.add(old)
            console.print(
                f"[yellow]warning:[/] {ENV_FILE} sets {old}, which is now {new}; rename it",
                highlight=False,
            )
        if new not in os.environ and new not in found and found[old] is not None:
            values[field] = found[old]
    return values


def load(model: type[Settings], *, when_unconfigured: str | None = None, **overrides) -> Settings:
    """``model`` from the environment, or a UserError naming every missing or malformed
    variable on one line. ``when_unconfigured`` is the whole message when no Azure subscription
    or resource group is set at all (the user has not started configuring Azure)."""
    try:
        return model(**{**_renamed_in_env_file(model), **overrides})
    except SettingsError as exc:
        # A value that must be JSON (a dict or list field) and is not: pydantic-settings names
        # the field in its message.
        field = re.search(r'field "(\w+)"', str(exc))
        name = env_name(model, field.group(1)) if field else "a setting"
        raise UserError(
            f'{name} must be JSON (an object like {{"NAME": "value"}}); set it in the '
            "environment or .env"
        ) from None
    except ValidationError as exc:
        errors = exc.errors()
        names = [env_name(model, str(e["loc"][0])) if e["loc"] else "settings" for e in errors]
        missing = {name for name, e in zip(names, errors, strict=True) if e["type"] == "missing"}
        if when_unconfigured and {"AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP"} <= missing:
            raise UserError(when_unconfigured) from None
        problems = []
        for name, error in zip(names, errors, strict=True):
            if error["type"] == "missing":
                problems.append(f"{name} is not set")
            elif not error["loc"]:  # a rule across fields, whose message names them
                problems.append(error["msg"].removeprefix("Value error, "))
            else:
                problems.append(f"{name} {error['msg'].removeprefix('Value error, ')}")
        raise UserError("; ".join(problems) + " (set them in the environment or .env)") from None
