"""The `security:` and `auth:` parts of an OPC UA connector entry.

PLCs in a plant accept only signed (and usually encrypted) sessions with a user login, so the
config names the policy and mode, where the application instance certificate lives (the pki/
folder `shopfloor certs` creates) and where the password comes from. Secrets are never in the
file itself: a password is read from an environment variable or a file at connect time.

A config without `security:` still loads and connects without security, but the connector logs
a deprecation warning: an open session must be asked for explicitly with `security: none`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from connectors.config_paths import ConfigPath

POLICIES = ("None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss")
"""Security policies by their OPC UA names (the part after `SecurityPolicy#`)."""
_DEPRECATED = ("basic128rsa15", "basic256")
MODES = ("Sign", "SignAndEncrypt")
IMPLICIT_NONE_WARNING = (
    "no `security:` in the config, so the session is open (SecurityPolicy None); this default "
    "is deprecated: write `security: none` to keep it, or set a policy and mode"
)


def _canonical_policy(value: str) -> str:
    """Accept the spellings vendor tools use (case, with or without `_` or the URI prefix)."""
    key = value.rsplit("#", 1)[-1].replace("_", "").replace("-", "").lower()
    for policy in POLICIES:
        if policy.replace("_", "").lower() == key:
            return policy
    if key in _DEPRECATED:
        raise ValueError(
            f"security policy {value!r} is deprecated and insecure (SHA-1); "
            "use Basic256Sha256 or one of the Aes policies"
        )
    raise ValueError(f"unknown security policy {value!r}; use one of: {', '.join(POLICIES)}")


class Security(BaseModel):
    """How the secure channel is protected and which certificates prove who is who.

    Relative paths are relative to the connectors file's folder (see connectors/config_paths.py).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: str
    mode: Literal["Sign", "SignAndEncrypt"] | None = None
    pki: ConfigPath = Field(default=Path("pki"), validate_default=True)
    certificate: ConfigPath | None = None
    private_key: ConfigPath | None = None
    server_certificate: ConfigPath | None = None
    trust_on_first_use: bool = False

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        """`security: none` is short for `security: {policy: None}`."""
        if isinstance(data, str) and data.strip().lower() == "none":
            return {"policy": "None"}
        if isinstance(data, str):
            raise ValueError(
                f"write security as a mapping, e.g. {{policy: {data.strip()}, mode: "
                "SignAndEncrypt}, or `security: none` for an open session"
            )
        if data is None:
            raise ValueError("security is empty; write `security: none` or give a policy")
        return data

    @model_validator(mode="after")
    def _mode_fits_policy(self) -> Security:
        object.__setattr__(self, "policy", _canonical_policy(self.policy))
        if self.policy == "None" and self.mode is not None:
            raise ValueError(f"mode {self.mode} needs a security policy; drop mode or set policy")
        if self.policy != "None" and self.mode is None:
            raise ValueError(f"policy {self.policy} needs mode: Sign or SignAndEncrypt")
        return self

    @property
    def is_open(self) -> bool:
        return self.policy == "None"

    @property
    def certificate_file(self) -> Path:
        """The application instance certificate (DER), by default from the pki folder."""
        return self.certificate or self.pki / "own" / "certs" / "shopfloor.der"

    @property
    def private_key_file(self) -> Path:
        return self.private_key or self.pki / "own" / "private" / "shopfloor.pem"


class Auth(BaseModel):
    """The user a session logs in as: username and password, or a user certificate.

    No `auth:` means an anonymous login.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str | None = None
    password_env: str | None = None
    password_file: ConfigPath | None = None
    certificate: ConfigPath | None = None
    private_key: ConfigPath | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_inline_password(cls, data: Any) -> Any:
        if isinstance(data, dict) and "password" in data:
            raise ValueError(
                "a password never goes in the config file; use password_env: VARIABLE or "
                "password_file: PATH"
            )
        return data

    @model_validator(mode="after")
    def _one_way_to_log_in(self) -> Auth:
        by_password = self.username is not None
        by_certificate = self.certificate is not None or self.private_key is not None
        if by_password == by_certificate:
            raise ValueError(
                "auth needs either username (with password_env or password_file) or "
                "certificate and private_key, not both"
            )
        if by_password and (self.password_env is None) == (self.password_file is None):
            raise ValueError("username needs exactly one of password_env or password_file")
        if by_certificate and (self.certificate is None or self.private_key is None):
            raise ValueError("a user certificate needs both certificate and private_key")
        if not by_password and (self.password_env or self.password_file):
            raise ValueError("password_env / password_file only apply with a username")
        return self

    def describe(self) -> str:
        """Who logs in, for messages (never the password)."""
        if self.username is not None:
            return f"user {self.username!r}"
        return f"user certificate {self.certificate}"
