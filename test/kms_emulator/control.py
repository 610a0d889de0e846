"""The control API: POST (or GET) /_emulator/<command> with a JSON object, answers JSON.

No authentication (the server listens on loopback only). A command that names a key takes
"key_id" in any KeyId form and an optional "region" (default us-east-1) for the ARNs it
returns. Errors: 404 {"error"} for an unknown command or key, 400 {"error"} for bad arguments.
README.md beside this file lists the commands and their arguments.
"""

import json

from credentials import DEFAULT_EXPIRATION
from keystore import KmsError
from wire import iso8601, json_response


def handle_control(emu, request):
    """Returns (Response, op name for the log)."""
    command = request.path[len("/_emulator/"):].strip("/")
    op = "ctl:" + command
    handler = COMMANDS.get(command)
    if handler is None:
        return json_response(404, {"error": "unknown command %r" % command,
                                   "commands": sorted(COMMANDS)}), op
    try:
        args = json.loads(request.body) if request.body.strip() else {}
        if not isinstance(args, dict):
            raise ValueError("the body must be a JSON object")
        return json_response(200, handler(emu, args)), op
    except KmsError as e:
        return json_response(404, {"error": e.message}), op
    except KeyError as e:
        return json_response(400, {"error": "missing argument %s" % e}), op
    except (ValueError, TypeError) as e:
        return json_response(400, {"error": str(e)}), op


def _region(args):
    return args.get("region", "us-east-1")


def _key_result(key, region, **extra):
    return dict({"key_id": key.key_id, "arn": key.arn(region), "state": key.state,
                 "material_version": key.current_version}, **extra)


def ctl_create_key(emu, args):
    key = emu.keys.create_key(args.get("alias"), args.get("description", ""))
    return _key_result(key, _region(args), alias=args.get("alias"))


def ctl_create_alias(emu, args):
    key = emu.keys.set_alias(args["alias"], args["key_id"], _region(args))
    return _key_result(key, _region(args), alias=args["alias"])


def ctl_delete_alias(emu, args):
    emu.keys.delete_alias(args["alias"])
    return {"deleted": args["alias"]}


def _ctl_state(state):
    def command(emu, args):
        key = emu.keys.set_state(args["key_id"], _region(args), state, args.get("days"))
        return _key_result(key, _region(args))
    return command


def ctl_rotate_key(emu, args):
    return _key_result(emu.keys.rotate(args["key_id"], _region(args)), _region(args))


def ctl_list_keys(emu, args):
    return {"keys": emu.keys.listing(_region(args))}


def ctl_set_fault(emu, args):
    specs = args["faults"] if "faults" in args else [args]
    added = []
    for spec in specs:
        # "key_id" (any KeyId form) limits the fault to requests that involve that key
        key_id = emu.keys.resolve(spec["key_id"], _region(spec)).key_id if "key_id" in spec else None
        added.append(emu.faults.add(spec, key_id))
    return {"added": added, "faults": emu.faults.listing()}


def ctl_delete_key(emu, args):
    """The key is gone at once (a deletion that completed): every request naming it is
    NotFoundException, its ciphertexts InvalidCiphertextException."""
    key = emu.keys.delete_key(args["key_id"], _region(args))
    return _key_result(key, _region(args), state="Deleted")


def ctl_clear_faults(emu, args):
    emu.faults.clear()
    return {"faults": []}


def ctl_faults(emu, args):
    return {"faults": emu.faults.listing()}


def ctl_stats(emu, args):
    return emu.stats.snapshot()


def ctl_reset_stats(emu, args):
    emu.stats.reset()
    return emu.stats.snapshot()


def ctl_call_log(emu, args):
    return {"calls": emu.stats.call_log(args.get("last"))}


def ctl_set_clock(emu, args):
    skew = args["skew_seconds"]
    if not isinstance(skew, (int, float)) or isinstance(skew, bool):
        raise ValueError("skew_seconds must be a number")
    emu.clock.skew = float(skew)
    return {"skew_seconds": emu.clock.skew, "server_time": iso8601(emu.clock.now())}


def ctl_expire_credentials(emu, args):
    return {"expired": emu.credentials.expire(args.get("access_key_id"))}


def ctl_revoke_credentials(emu, args):
    return {"revoked": emu.credentials.revoke(args.get("access_key_id"))}


def ctl_set_credentials(emu, args):
    creds = emu.credentials
    if "expiration_seconds" in args:
        seconds = args["expiration_seconds"]
        if seconds is not None and (not isinstance(seconds, int) or isinstance(seconds, bool)):
            raise ValueError("expiration_seconds must be an integer or null")
        creds.expiration_override = seconds
    if "external_id" in args:
        if args["external_id"] is not None and not isinstance(args["external_id"], str):
            raise ValueError("external_id must be a string or null")
        creds.external_id = args["external_id"]
    for name in ("web_identity_token", "ecs_token", "sso_token"):
        if name in args:
            if not isinstance(args[name], str) or not args[name]:
                raise ValueError("%s must be a non-empty string" % name)
            setattr(creds, name, args[name])
    return {"expiration_seconds": creds.expiration_override
            if creds.expiration_override is not None else DEFAULT_EXPIRATION}


def ctl_credentials(emu, args):
    return {"credentials": emu.credentials.listing()}


def ctl_assume_role_log(emu, args):
    return {"assume_role": list(emu.credentials.assume_role_log)}


def ctl_credential_fetches(emu, args):
    return {"credential_fetches": emu.stats.fetches()}


def ctl_health(emu, args):
    return {"ok": True, "server_time": iso8601(emu.clock.now())}


COMMANDS = {
    "health": ctl_health,
    "create-key": ctl_create_key,
    "create-alias": ctl_create_alias,
    "delete-alias": ctl_delete_alias,
    "enable-key": _ctl_state("Enabled"),
    "disable-key": _ctl_state("Disabled"),
    "schedule-deletion": _ctl_state("PendingDeletion"),
    "cancel-deletion": _ctl_state("Disabled"),
    "rotate-key": ctl_rotate_key,
    "delete-key": ctl_delete_key,
    "list-keys": ctl_list_keys,
    "set-fault": ctl_set_fault,
    "clear-faults": ctl_clear_faults,
    "faults": ctl_faults,
    "stats": ctl_stats,
    "reset-stats": ctl_reset_stats,
    "call-log": ctl_call_log,
    "set-clock": ctl_set_clock,
    "expire-credentials": ctl_expire_credentials,
    "revoke-credentials": ctl_revoke_credentials,
    "set-credentials": ctl_set_credentials,
    "credentials": ctl_credentials,
    "credential-fetches": ctl_credential_fetches,
    "assume-role-log": ctl_assume_role_log,
}
