"""NATS decentralised auth for tests: fresh NKEYs, an operator, an account with JetStream and a
user signed by it (JWTs made and signed here, as `nsc` would), and the matching server config."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from pathlib import Path

import nkeys

#: Unlimited account limits, JetStream included (nats-server needs the JetStream ones > 0 or -1).
ACCOUNT_LIMITS = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                  "wildcards": True, "conn": -1, "leaf": -1, "mem_storage": -1,
                  "disk_storage": -1, "streams": -1, "consumer": -1}


def new_keypair(prefix: int) -> nkeys.KeyPair:
    """A fresh NKEY of the kind `prefix` names (nkeys.PREFIX_BYTE_USER, ...)."""
    return nkeys.from_seed(nkeys.encode_seed(os.urandom(32), prefix))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed_jwt(issuer: nkeys.KeyPair, subject: str, name: str, nats: dict) -> str:
    """A NATS JWT with these claims, signed by `issuer`."""
    claims = {"iat": int(time.time()), "iss": issuer.public_key.decode(), "name": name,
              "sub": subject, "nats": {**nats, "version": 2}}
    claims["jti"] = base64.b32encode(hashlib.sha256(json.dumps(claims).encode()).digest()
                                     ).decode().rstrip("=")
    signing_input = (_b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode()) + "."
                     + _b64(json.dumps(claims).encode()))
    return signing_input + "." + _b64(issuer.sign(signing_input.encode()))


def nkey_user_config(folder: Path) -> tuple[Path, Path]:
    """A server config admitting one NKEY user, and the file holding that user's seed."""
    user = new_keypair(nkeys.PREFIX_BYTE_USER)
    seed = folder / "user.nk"
    seed.write_text(user.seed.decode() + "\n")
    conf = folder / "nkey.conf"
    conf.write_text(f"authorization {{ users = [ {{ nkey: {user.public_key.decode()} }} ] }}\n")
    return conf, seed


def operator_config(folder: Path) -> tuple[Path, Path]:
    """A server config in operator mode (memory resolver) and a user's .creds file."""
    operator = new_keypair(nkeys.PREFIX_BYTE_OPERATOR)
    account = new_keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    system = new_keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    user = new_keypair(nkeys.PREFIX_BYTE_USER)
    operator_jwt = signed_jwt(operator, operator.public_key.decode(), "test-operator",
                              {"type": "operator"})
    account_jwt = signed_jwt(operator, account.public_key.decode(), "app",
                             {"type": "account", "limits": ACCOUNT_LIMITS})
    system_jwt = signed_jwt(operator, system.public_key.decode(), "SYS", {"type": "account"})
    user_jwt = signed_jwt(account, user.public_key.decode(), "dagnats",
                          {"type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1,
                           "payload": -1})
    creds = folder / "user.creds"
    creds.write_text(
        f"-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{user.seed.decode()}\n"
        "------END USER NKEY SEED------\n")
    conf = folder / "operator.conf"
    conf.write_text(
        f"operator: {operator_jwt}\nsystem_account: {system.public_key.decode()}\n"
        "resolver: MEMORY\nresolver_preload: {\n"
        f"  {account.public_key.decode()}: {account_jwt}\n"
        f"  {system.public_key.decode()}: {system_jwt}\n}}\n")
    return conf, creds
