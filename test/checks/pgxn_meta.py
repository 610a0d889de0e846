#!/usr/bin/python3
"""Validate a META.json against the PGXN Meta Spec v1.0.0 (https://pgxn.org/spec/).

Usage: pgxn_meta.py META.json [TREE]
Checks every field the spec defines: the required ones (name, abstract, maintainer, license,
provides, version, meta-spec), the type and form of each (terms, tags, semantic versions 1.0.0,
version ranges, license identifiers, resources, prereqs phases and relations, no_index,
release_status), that any other key is a custom "x_"/"X_" one; with TREE, that every
provides file and docfile exists there.  Prints one "not ok - ..." line per violation and
exits 1 if there was any, else prints "ok - ..." and exits 0.  (No PGXN validator is packaged
for Debian: PGXN::Meta::Validator is Perl on CPAN, and pgxnclient's "check" runs installcheck.)
"""
import json
import os
import re
import sys

ERRORS = []


def err(path, msg):
    ERRORS.append(f"{path}: {msg}")


# spec: "Term": at least two characters, no slash, backslash, control character or whitespace
TERM = re.compile(r"^[^\s/\\\x00-\x1f\x7f]{2,}$")
# spec: "Tag": 1 to 255 characters, no slash, backslash or control character
TAG = re.compile(r"^[^/\\\x00-\x1f\x7f]{1,255}$")
# Semantic Versioning 1.0.0 (what the spec names): X.Y.Z, no leading zeros, an optional
# prerelease suffix of ASCII alphanumerics and hyphens that starts with a letter
SEMVER = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)([A-Za-z][0-9A-Za-z-]*)?$")
RANGE_OP = re.compile(r"^(==|!=|>=|<=|>|<)?\s*(.+)$")
LICENSES = {
    "agpl_3", "apache_1_1", "apache_2_0", "artistic_1", "artistic_2", "bsd", "freebsd",
    "gfdl_1_2", "gfdl_1_3", "gpl_1", "gpl_2", "gpl_3", "lgpl_2_1", "lgpl_3_0", "mit",
    "mozilla_1_0", "mozilla_1_1", "openssl", "perl_5", "postgresql", "qpl_1_0", "ssleay",
    "sun", "zlib", "open_source", "restricted", "unrestricted", "unknown",
}
PHASES = {"configure", "build", "test", "runtime", "develop"}
RELATIONS = {"requires", "recommends", "suggests", "conflicts"}
URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def is_custom(key):
    return key.startswith("x_") or key.startswith("X_")


def check_keys(path, obj, allowed, required=()):
    if not isinstance(obj, dict):
        err(path, "must be an object")
        return False
    for k in required:
        if k not in obj:
            err(path, f'required key "{k}" is missing')
    for k in obj:
        if k not in allowed and not is_custom(k):
            err(path, f'unknown key "{k}" (custom keys start with x_ or X_)')
    return True


def string(path, v, nonempty=True):
    if not isinstance(v, str) or (nonempty and not v.strip()):
        err(path, "must be a non-empty string")
        return False
    return True


def term(path, v):
    if string(path, v) and not TERM.match(v):
        err(path, f'"{v}" is not a term (2+ characters, no whitespace, slash, backslash or control)')


def semver(path, v):
    if string(path, v) and not SEMVER.match(v):
        err(path, f'"{v}" is not a semantic version (X.Y.Z)')


def version_range(path, v):
    if isinstance(v, (int, float)) and not isinstance(v, bool) and v == 0:
        return
    if not string(path, v):
        return
    if v.strip() == "0":
        return
    for part in v.split(","):
        m = RANGE_OP.match(part.strip())
        if not m or not SEMVER.match(m.group(2).strip()):
            err(path, f'"{v}" is not a version range ("0", a version, or comparisons joined by commas)')
            return


def string_or_list(path, v, each):
    if isinstance(v, str):
        each(path, v)
    elif isinstance(v, list) and v:
        for i, x in enumerate(v):
            each(f"{path}[{i}]", x)
    else:
        err(path, "must be a string or a non-empty list of strings")


def license_(path, v):
    def one(p, x):
        if string(p, x) and x not in LICENSES:
            err(p, f'"{x}" is not a license identifier of the spec')
    if isinstance(v, dict):
        if not v:
            err(path, "must not be empty")
        for name, url in v.items():
            string(f"{path}.{name}", name)
            if string(f"{path}.{name}", url) and not URI.match(url):
                err(f"{path}.{name}", f'"{url}" is not a URI')
    else:
        string_or_list(path, v, one)


def validate(meta, tree):
    if not check_keys("META", meta,
                      {"name", "abstract", "description", "version", "maintainer", "license",
                       "provides", "prereqs", "resources", "generated_by", "meta-spec", "tags",
                       "no_index", "release_status"},
                      ("name", "abstract", "maintainer", "license", "provides", "version", "meta-spec")):
        return
    if "name" in meta:
        term("name", meta["name"])
    if "abstract" in meta:
        string("abstract", meta["abstract"])
    if "description" in meta:
        string("description", meta["description"])
    if "generated_by" in meta:
        string("generated_by", meta["generated_by"])
    if "version" in meta:
        semver("version", meta["version"])
    if "maintainer" in meta:
        string_or_list("maintainer", meta["maintainer"], string)
    if "license" in meta:
        license_("license", meta["license"])
    ms = meta.get("meta-spec")
    if ms is not None and check_keys("meta-spec", ms, {"version", "url"}, ("version",)):
        if ms.get("version") != "1.0.0":
            err("meta-spec.version", f'is {ms.get("version")!r}, this validator knows "1.0.0"')
        if "url" in ms and string("meta-spec.url", ms["url"]) and not URI.match(ms["url"]):
            err("meta-spec.url", "is not a URI")
    prov = meta.get("provides")
    if prov is not None:
        if not isinstance(prov, dict) or not prov:
            err("provides", "must be a non-empty object")
        else:
            for ext, p in prov.items():
                path = f"provides.{ext}"
                term(path, ext)
                if not check_keys(path, p, {"file", "version", "abstract", "docfile"}, ("file", "version")):
                    continue
                if "version" in p:
                    semver(f"{path}.version", p["version"])
                for k in ("file", "docfile"):
                    if k in p and string(f"{path}.{k}", p[k]) and tree is not None:
                        if os.path.isabs(p[k]) or ".." in p[k].split("/"):
                            err(f"{path}.{k}", f'"{p[k]}" must be a path inside the distribution')
                        elif not os.path.isfile(os.path.join(tree, p[k])):
                            err(f"{path}.{k}", f'"{p[k]}" does not exist in the distribution')
                if "abstract" in p:
                    string(f"{path}.abstract", p["abstract"])
    pre = meta.get("prereqs")
    if pre is not None and check_keys("prereqs", pre, PHASES):
        for phase, rels in pre.items():
            if is_custom(phase):
                continue
            if not check_keys(f"prereqs.{phase}", rels, RELATIONS):
                continue
            for rel, deps in rels.items():
                if is_custom(rel):
                    continue
                path = f"prereqs.{phase}.{rel}"
                if not isinstance(deps, dict):
                    err(path, "must be an object of name: version range")
                    continue
                for name, rng in deps.items():
                    term(f"{path}.{name}", name)
                    version_range(f"{path}.{name}", rng)
    res = meta.get("resources")
    if res is not None and check_keys("resources", res, {"homepage", "bugtracker", "repository"}):
        if "homepage" in res and string("resources.homepage", res["homepage"]) and not URI.match(res["homepage"]):
            err("resources.homepage", "is not a URI")
        bt = res.get("bugtracker")
        if bt is not None and check_keys("resources.bugtracker", bt, {"web", "mailto"}):
            if not bt:
                err("resources.bugtracker", "must have web or mailto")
            if "web" in bt and string("resources.bugtracker.web", bt["web"]) and not URI.match(bt["web"]):
                err("resources.bugtracker.web", "is not a URI")
            if "mailto" in bt and string("resources.bugtracker.mailto", bt["mailto"]) and not EMAIL.match(bt["mailto"]):
                err("resources.bugtracker.mailto", "is not an email address")
        rp = res.get("repository")
        if rp is not None and check_keys("resources.repository", rp, {"url", "web", "type"}):
            for k in ("url", "web"):
                if k in rp and string(f"resources.repository.{k}", rp[k]) and not URI.match(rp[k]):
                    err(f"resources.repository.{k}", "is not a URI")
            if "type" in rp and string("resources.repository.type", rp["type"]) and not re.match(r"^[a-z0-9]+$", rp["type"]):
                err("resources.repository.type", "must be a lowercase word (git, svn, ...)")
    if "tags" in meta:
        t = meta["tags"]
        if not isinstance(t, list) or not t:
            err("tags", "must be a non-empty list")
        else:
            for i, x in enumerate(t):
                if string(f"tags[{i}]", x) and not TAG.match(x):
                    err(f"tags[{i}]", f'"{x}" is not a tag')
    ni = meta.get("no_index")
    if ni is not None and check_keys("no_index", ni, {"file", "directory"}):
        for k, v in ni.items():
            if not is_custom(k):
                string_or_list(f"no_index.{k}", v, string)
    if "release_status" in meta and meta["release_status"] not in ("stable", "testing", "unstable"):
        err("release_status", "must be stable, testing or unstable")


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    try:
        with open(sys.argv[1], encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        print(f"not ok - {sys.argv[1]} is not readable JSON: {e}")
        return 1
    validate(meta, sys.argv[2] if len(sys.argv) == 3 else None)
    for e in ERRORS:
        print(f"not ok - {e}")
    if ERRORS:
        return 1
    print(f"ok - {sys.argv[1]} is valid PGXN Meta Spec 1.0.0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
