"""What a job may say under ``sandbox:``: the settings a job file may carry, checked against
their one definition (``SandboxConfig``'s field metadata, through ``sandbox_settings``).

In: the raw YAML value. Out: the settings as their types, and a problem for each wrong one.
Standard library only, so that reading a job never loads the sandbox's server stack.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pcxbatch.sandbox.config import SandboxSetting, sandbox_settings

#: The settings a job may carry, by name.
SANDBOX_SETTINGS: Mapping[str, SandboxSetting] = {s.name: s for s in sandbox_settings(job=True)}

_KINDS: dict[type, str] = {
    int: "a whole number",
    float: "a number",
    bool: "true or false",
    str: "text",
    Path: "a path",
}


def check_job_sandbox(value: Any, problems: list[str]) -> dict[str, Any]:
    """A job's ``sandbox:`` value as settings: ``true`` is the defaults, a mapping is checked
    key by key against the one definition; every problem, naming ``sandbox.KEY``, is added to
    ``problems``."""
    if value is True:
        return {}
    if not isinstance(value, dict):
        problems.append("sandbox: must be true or a mapping of sandbox settings")
        return {}
    settings: dict[str, Any] = {}
    for key, raw in value.items():
        setting = SANDBOX_SETTINGS.get(str(key))
        if setting is None:
            known = ", ".join(SANDBOX_SETTINGS)
            problems.append(f"sandbox.{key}: unknown key (known: {known})")
            continue
        converted = _sandbox_value(setting, raw)
        if converted is None:
            wanted = _KINDS.get(setting.type, setting.type.__name__)
            if setting.choices:
                wanted = "one of " + ", ".join(str(choice) for choice in setting.choices)
            problems.append(f"sandbox.{key}: must be {wanted}")
        else:
            settings[setting.name] = converted
    return settings


def _sandbox_value(setting: SandboxSetting, raw: Any) -> Any:
    """``raw`` as the setting's type, or None when it is not one (a bool is never a number,
    a whole number never loses a fraction)."""
    kind = setting.type
    if isinstance(raw, bool) != (kind is bool):
        return None
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        return None
    if kind is int and value != float(raw):
        return None
    if kind is float and not math.isfinite(value):
        return None
    if setting.choices and value not in setting.choices:
        return None
    return value
