"""Reads Attune's interaction topics with nothing but the .proto.

Compiles origin/proto/attune/record/v1/record.proto with grpc_tools.protoc,
consumes the given topics from the start with confluent-kafka, and prints one
JSON line per record. Exits non-zero if fewer than --count records arrive
within --timeout seconds, or a record is of a version it does not know.

    python read_records.py --brokers 127.0.0.1:19092 \
        --topics attune.interactions.click --count 10
"""

import argparse
import importlib
import json
import pathlib
import sys
import tempfile
import time
import uuid

from confluent_kafka import Consumer
from grpc_tools import protoc

PROTO_ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO = "attune/record/v1/record.proto"


def compile_proto(out_dir):
    include = str(pathlib.Path(protoc.__file__).parent / "_proto")
    code = protoc.main(
        ["protoc", f"-I{PROTO_ROOT}", f"-I{include}", f"--python_out={out_dir}", PROTO]
    )
    if code != 0:
        sys.exit(f"protoc failed on {PROTO}")
    sys.path.insert(0, out_dir)
    return importlib.import_module("attune.record.v1.record_pb2")


def as_json(pb, message):
    header = pb.RecordHeader.FromString(message.value())
    if header.version != 1:
        sys.exit(f"record version {header.version}: this reader knows version 1")
    r = pb.EventRecord.FromString(message.value())
    event = r.event
    kind = event.WhichOneof("interaction")
    return {
        "topic": message.topic(),
        "key": message.key().decode(),
        "site_key": r.site_key,
        "user_id": r.user_id,
        "anonymous_id": r.anonymous_id,
        "id": str(uuid.UUID(bytes=event.id)),
        "ts_ms": event.ts_ms,
        "kind": kind,
        "item": event.item if event.HasField("item") else None,
        "depth_pct": event.scroll.depth_pct if kind == "scroll" else None,
        "visible_ms": event.dwell.visible_ms if kind == "dwell" else None,
        "corrected_ts_ms": r.corrected_ts_ms,
        "received_at_ms": r.received_at_ms,
        "segments": list(r.segments),
    }


def main():
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--brokers", required=True)
    args.add_argument("--topics", required=True, help="comma-separated")
    args.add_argument("--count", type=int, required=True)
    args.add_argument("--timeout", type=float, default=60)
    a = args.parse_args()
    with tempfile.TemporaryDirectory() as out:
        pb = compile_proto(out)
        consumer = Consumer(
            {
                "bootstrap.servers": a.brokers,
                "group.id": f"contract-{uuid.uuid4()}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        consumer.subscribe(a.topics.split(","))
        seen, deadline = 0, time.monotonic() + a.timeout
        while seen < a.count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                sys.exit(f"kafka: {message.error()}")
            print(json.dumps(as_json(pb, message)), flush=True)
            seen += 1
        consumer.close()
        if seen < a.count:
            sys.exit(f"read {seen} of {a.count} records in {a.timeout} s")


if __name__ == "__main__":
    main()
