"""scripts/registry-interop.sh, Python leg: confluent-kafka-python's
SchemaRegistryClient (Debian's python3-confluent-kafka) against the schema
registry of one `sluice serve`, every call it has, for AVRO and JSON.

Usage: sr_client.py REGISTRY_URL PREFIX
Prints "ok   ..." or "FAIL: ..." per call; exits 1 if any failed. Error
answers are checked against Confluent's (HTTP status and error_code).
"""
import json
import sys
import traceback

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

URL, PREFIX = sys.argv[1], sys.argv[2]
FAILED = []


def check(desc, fn):
    try:
        detail = fn()
        print("ok   %s%s" % (desc, ": %s" % detail if detail else ""), flush=True)
        return True
    except Exception as e:  # noqa: BLE001 - every failure is a FAIL line
        FAILED.append(desc)
        where = traceback.extract_tb(e.__traceback__)[-1]
        print("FAIL: %s: %s: %s (line %d)" % (desc, type(e).__name__, e, where.lineno), flush=True)
        return False


def want(got, expected, what):
    if got != expected:
        raise AssertionError("%s: got %r, want %r" % (what, got, expected))


def refused(fn, status, code):
    """fn() raises SchemaRegistryError with Confluent's status and code."""
    try:
        got = fn()
    except SchemaRegistryError as e:
        if (e.http_status_code, e.error_code) != (status, code):
            raise AssertionError("answered HTTP %s error_code %s (%s), want %s %s"
                                 % (e.http_status_code, e.error_code, e.error_message, status, code))
        return "HTTP %d %d %s" % (status, code, e.error_message)
    raise AssertionError("answered %r, want HTTP %d error_code %d" % (got, status, code))


def avro(*fields):
    return json.dumps({"type": "record", "name": "Order", "namespace": "sluice.py",
                       "fields": [{"name": "id", "type": "long"}] + list(fields)})


AVRO_V1 = avro({"name": "item", "type": "string"})
# BACKWARD and FORWARD compatible: a field with a default added.
AVRO_V2 = avro({"name": "item", "type": "string"}, {"name": "qty", "type": "int", "default": 1})
# BACKWARD incompatible: a field without a default added.
AVRO_BAD = avro({"name": "item", "type": "string"}, {"name": "price", "type": "double"})
# BACKWARD compatible, FORWARD incompatible: "item" (no default) removed.
AVRO_DROP = avro({"name": "qty", "type": "int", "default": 1})
JSON_V1 = json.dumps({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "number"}},
                      "required": ["a"], "additionalProperties": False})
# "b" widened from number to any type: BACKWARD compatible.
JSON_V2 = json.dumps({"type": "object", "properties": {"a": {"type": "string"}, "b": {}},
                      "required": ["a"], "additionalProperties": False})
JSON_BAD = json.dumps({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "number"}},
                       "required": ["a"], "additionalProperties": False})

AS = PREFIX + "-avro-value"
JS = PREFIX + "-json-value"
sr = SchemaRegistryClient({"url": URL})
ids = {}


def same_json(a, b, what):
    want(json.loads(a), json.loads(b), what)


def register_avro():
    ids["a1"] = sr.register_schema(AS, Schema(AVRO_V1, "AVRO"))
    return "id %d" % ids["a1"]


def register_json():
    ids["j1"] = sr.register_schema(JS, Schema(JSON_V1, "JSON"))
    if ids["j1"] == ids["a1"]:
        raise AssertionError("the JSON schema got the Avro schema's id %d" % ids["a1"])
    return "id %d" % ids["j1"]


def register_again():
    # A new client: register_schema would answer from its cache otherwise.
    want(SchemaRegistryClient({"url": URL}).register_schema(AS, Schema(AVRO_V1, "AVRO")), ids["a1"], "id")


def get_schema():
    fresh = SchemaRegistryClient({"url": URL})
    a, j = fresh.get_schema(ids["a1"]), fresh.get_schema(ids["j1"])
    want(a.schema_type, "AVRO", "Avro schema_type")
    same_json(a.schema_str, AVRO_V1, "Avro schema")
    want(j.schema_type, "JSON", "JSON schema_type")
    same_json(j.schema_str, JSON_V1, "JSON schema")


def test_compat(subject, text, typ, expected):
    def f():
        want(sr.test_compatibility(subject, Schema(text, typ)), expected, "is_compatible")
    return f


def register_v2():
    ids["a2"] = sr.register_schema(AS, Schema(AVRO_V2, "AVRO"))
    ids["j2"] = sr.register_schema(JS, Schema(JSON_V2, "JSON"))
    return "ids %d, %d" % (ids["a2"], ids["j2"])


def latest():
    r = sr.get_latest_version(AS)
    want((r.subject, r.version, r.schema_id, r.schema.schema_type), (AS, 2, ids["a2"], "AVRO"), "latest Avro")
    same_json(r.schema.schema_str, AVRO_V2, "latest Avro schema")
    r = sr.get_latest_version(JS)
    want((r.subject, r.version, r.schema_id, r.schema.schema_type), (JS, 2, ids["j2"], "JSON"), "latest JSON")


def version():
    r = sr.get_version(AS, 1)
    want((r.subject, r.version, r.schema_id), (AS, 1, ids["a1"]), "version 1")
    same_json(r.schema.schema_str, AVRO_V1, "version 1's schema")
    want(sr.get_versions(AS), [1, 2], "get_versions")


def subjects():
    got = sr.get_subjects()
    want(sorted(s for s in got if s.startswith(PREFIX + "-")), sorted([AS, JS]), "subjects")


def lookup():
    r = sr.lookup_schema(AS, Schema(AVRO_V1, "AVRO"))
    want((r.subject, r.version, r.schema_id), (AS, 1, ids["a1"]), "lookup v1")
    r = sr.lookup_schema(JS, Schema(JSON_V2, "JSON"))
    want((r.subject, r.version, r.schema_id), (JS, 2, ids["j2"]), "lookup JSON v2")


def set_get_compat():
    want(sr.get_compatibility(), "BACKWARD", "global level")
    want(sr.set_compatibility(AS, "FULL"), {"compatibility": "FULL"}, "set_compatibility answer")
    want(sr.get_compatibility(AS), "FULL", "the subject's level")
    want(sr.get_compatibility(), "BACKWARD", "global level after a subject's was set")
    want(sr.set_compatibility(level="FORWARD_TRANSITIVE"), {"compatibility": "FORWARD_TRANSITIVE"}, "set global answer")
    want(sr.get_compatibility(), "FORWARD_TRANSITIVE", "global level")
    want(sr.set_compatibility(level="BACKWARD"), {"compatibility": "BACKWARD"}, "global level restored")


def delete_version():
    want(sr.delete_version(AS, 2), 2, "delete_version answer")
    want(sr.get_versions(AS), [1], "versions after")
    want(sr.get_latest_version(AS).version, 1, "latest after")


def permanent_delete_version():
    # delete_version has no permanent flag in this client: the same REST
    # call with ?permanent=true, through the client's own REST layer.
    want(sr._rest_client.delete("subjects/%s/versions/2?permanent=true" % AS), 2, "answer")


def delete_subject_soft():
    want(sr.delete_subject(JS), [1, 2], "delete_subject answer")
    if JS in sr.get_subjects():
        raise AssertionError("%s still listed" % JS)


def delete_subject_permanent():
    # The client deletes softly first, then permanently.
    want(sr.delete_subject(AS, permanent=True), [1], "delete_subject answer")
    if AS in sr.get_subjects():
        raise AssertionError("%s still listed" % AS)


def register_after_delete():
    fresh = SchemaRegistryClient({"url": URL})  # sr's cache still has the schema in AS
    fresh.register_schema(AS, Schema(AVRO_V1, "AVRO"))
    want(fresh.get_latest_version(AS).version, 1, "version")


check("register_schema AVRO in %s" % AS, register_avro)
check("register_schema JSON in %s" % JS, register_json)
check("register_schema of the same AVRO schema answers its id", register_again)
check("get_schema (AVRO and JSON, a fresh client)", get_schema)
check("get_schema of an unknown id: 404 40403", lambda: refused(lambda: sr.get_schema(99999), 404, 40403))
check("test_compatibility AVRO, a field with a default: compatible", test_compat(AS, AVRO_V2, "AVRO", True))
check("test_compatibility AVRO, a field without a default: not compatible", test_compat(AS, AVRO_BAD, "AVRO", False))
check("test_compatibility JSON, a property widened: compatible", test_compat(JS, JSON_V2, "JSON", True))
check("test_compatibility JSON, a property's type changed: not compatible", test_compat(JS, JSON_BAD, "JSON", False))
check("test_compatibility of an unknown subject: 404 40401",
      lambda: refused(lambda: sr.test_compatibility(PREFIX + "-nope", Schema(AVRO_V1, "AVRO")), 404, 40401))
check("register_schema v2 (AVRO and JSON)", register_v2)
check("register_schema of an incompatible AVRO schema: 409",
      lambda: refused(lambda: sr.register_schema(AS, Schema(AVRO_BAD, "AVRO")), 409, 409))
check("register_schema of an invalid AVRO schema: 422 42201",
      lambda: refused(lambda: sr.register_schema(AS, Schema('{"type": "record", "name": "X"}', "AVRO")), 422, 42201))
check("get_latest_version", latest)
check("get_version and get_versions", version)
check("get_version of a missing version: 404 40402", lambda: refused(lambda: sr.get_version(AS, 7), 404, 40402))
check("get_version of a missing subject: 404 40401",
      lambda: refused(lambda: sr.get_version(PREFIX + "-nope", 1), 404, 40401))
check("get_subjects", subjects)
check("lookup_schema", lookup)
check("lookup_schema of an unregistered schema: 404 40403",
      lambda: refused(lambda: sr.lookup_schema(AS, Schema(AVRO_BAD, "AVRO")), 404, 40403))
check("get_compatibility of a subject without its own level: 404 40408",
      lambda: refused(lambda: sr.get_compatibility(JS), 404, 40408))
check("test_compatibility under BACKWARD: a field without a default removed is compatible",
      test_compat(AS, AVRO_DROP, "AVRO", True))
check("set_compatibility and get_compatibility (subject and global)", set_get_compat)
check("test_compatibility under FULL: a field without a default removed is not compatible",
      test_compat(AS, AVRO_DROP, "AVRO", False))
check("set_compatibility with an unknown level: 422 42203",
      lambda: refused(lambda: sr.set_compatibility(AS, "SIDEWAYS"), 422, 42203))
check("permanent delete of a version not soft-deleted first: 404 40407",
      lambda: refused(lambda: sr._rest_client.delete("subjects/%s/versions/2?permanent=true" % AS), 404, 40407))
check("delete_version (soft)", delete_version)
check("get_version of a soft-deleted version: 404 40402", lambda: refused(lambda: sr.get_version(AS, 2), 404, 40402))
check("delete_version ?permanent=true after the soft delete", permanent_delete_version)
check("delete_subject (soft)", delete_subject_soft)
check("get_latest_version of a soft-deleted subject: 404 40401",
      lambda: refused(lambda: sr.get_latest_version(JS), 404, 40401))
check("delete_subject of a soft-deleted subject, softly again: 404 40404",
      lambda: refused(lambda: sr.delete_subject(JS), 404, 40404))
check("delete_subject(permanent=True) (soft, then permanent)", delete_subject_permanent)
check("get_schema of the permanently deleted subject's schema: 404 40403",
      lambda: refused(lambda: SchemaRegistryClient({"url": URL}).get_schema(ids["a1"]), 404, 40403))
check("register_schema in a permanently deleted subject starts again at version 1", register_after_delete)

if FAILED:
    print("FAIL: %d of the Python SchemaRegistryClient checks failed" % len(FAILED))
    sys.exit(1)
