"""Validates deploy/k8s offline: every core resource against the Kubernetes
API schemas that kubernetes-validate (PyPI) ships, strictly (no unknown
fields); every KEDA and Strimzi resource against its CRD schema
(validate_crs.mjs, with the @kubernetes-models packages from npm); then
Attune's own rules across the files (the topics are attune-core's, with its
replication; the consumers scale to at most one per partition; names that
refer to each other exist). Nothing is downloaded at run time.

Usage: validate.py --topics a,b,c --partitions 8 --replicas 3 --min-insync 2
(`cargo xtask test` passes attune-core's values)."""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

import kubernetes_validate
import yaml

KUBERNETES = "1.33.0"
CRD_GROUPS = ("keda.sh/", "kafka.strimzi.io/")
HERE = os.path.dirname(os.path.abspath(__file__))

args = argparse.ArgumentParser()
args.add_argument("--topics", required=True)
args.add_argument("--partitions", type=int, required=True)
args.add_argument("--replicas", type=int, required=True)
args.add_argument("--min-insync", type=int, required=True)
args.add_argument("--dir", default=os.path.join(HERE, "..", "k8s"))
opts = args.parse_args()

errors = []
docs = []
for path in sorted(glob.glob(os.path.join(opts.dir, "*.yaml"))):
    with open(path) as f:
        for doc in yaml.safe_load_all(f):
            if doc:
                docs.append((os.path.basename(path), doc))


def name(doc):
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


# Core resources: the Kubernetes schemas, strictly.
custom = []
for path, doc in docs:
    if doc.get("apiVersion", "").startswith(CRD_GROUPS):
        custom.append(doc)
        continue
    try:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    except kubernetes_validate.ValidationError as e:
        errors.append(f"{path}: {name(doc)}: {e.message} at {'.'.join(map(str, e.path))}")
    except kubernetes_validate.SchemaNotFoundError:
        errors.append(f"{path}: {name(doc)}: no schema for {doc.get('apiVersion')} in Kubernetes {KUBERNETES}")

# Custom resources: their CRDs' schemas, in node.
with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
    json.dump(custom, f)
checked = subprocess.run(
    ["node", os.path.join(HERE, "validate_crs.mjs"), f.name], capture_output=True, text=True
)
os.unlink(f.name)
errors += [line for line in checked.stdout.splitlines() if line.strip()]
if checked.returncode not in (0, 1):
    errors.append(f"validate_crs.mjs failed: {checked.stderr}")

# Attune's rules across the files.
by_kind = {}
for _, doc in docs:
    by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc


def rule(ok, message):
    if not ok:
        errors.append(f"rule: {message}")


want = set(opts.topics.split(","))
topics = {t["spec"]["topicName"]: t["spec"] for t in by_kind.get("KafkaTopic", {}).values()}
rule(set(topics) == want, f"KafkaTopics {sorted(topics)} are not attune-core's topics {sorted(want)}")
for topic, spec in topics.items():
    rule(spec.get("partitions") == opts.partitions, f"{topic}: {opts.partitions} partitions")
    rule(spec.get("replicas") == opts.replicas, f"{topic}: {opts.replicas} replicas")
    rule(
        int(spec.get("config", {}).get("min.insync.replicas", 0)) == opts.min_insync,
        f"{topic}: min.insync.replicas {opts.min_insync}",
    )
kafka = by_kind.get("Kafka", {})
rule(len(kafka) == 1, "one Kafka cluster")
config = by_kind.get("ConfigMap", {}).get("attune-env", {}).get("data", {})
for cluster, k in kafka.items():
    c = k["spec"]["kafka"].get("config", {})
    for key, value in [
        ("min.insync.replicas", opts.min_insync),
        ("offsets.topic.replication.factor", opts.replicas),
        ("transaction.state.log.replication.factor", opts.replicas),
        ("transaction.state.log.min.isr", opts.min_insync),
    ]:
        rule(int(c.get(key, 0)) == value, f"Kafka {cluster}: {key} = {value}")
    rule(
        config.get("KAFKA_BROKERS") == f"{cluster}-kafka-bootstrap:9092",
        "KAFKA_BROKERS names the Kafka cluster's bootstrap service",
    )
for so_name, so in by_kind.get("ScaledObject", {}).items():
    target = so["spec"]["scaleTargetRef"]
    rule(target["name"] in by_kind.get(target["kind"], {}), f"{so_name} scales an existing {target['kind']}")
    rule(
        so["spec"].get("maxReplicaCount", 0) <= opts.partitions,
        f"{so_name}: at most {opts.partitions} consumers, one per partition",
    )
    for trigger in so["spec"]["triggers"]:
        m = trigger["metadata"]
        rule(m.get("consumerGroup") == config.get("ATTUNE_CONSUMER_GROUP"), f"{so_name} watches the consumers' group")
        rule(m.get("bootstrapServers") == config.get("KAFKA_BROKERS"), f"{so_name} reads the same Kafka")
for hpa_name, hpa in by_kind.get("HorizontalPodAutoscaler", {}).items():
    target = hpa["spec"]["scaleTargetRef"]
    rule(target["name"] in by_kind.get(target["kind"], {}), f"HPA {hpa_name} scales an existing {target['kind']}")
for kind in ("Deployment", "StatefulSet"):
    for workload_name, w in by_kind.get(kind, {}).items():
        pod = w["spec"]["template"]["spec"]
        for c in pod["containers"]:
            for ref in c.get("envFrom", []):
                cm = ref.get("configMapRef", {}).get("name")
                rule(cm is None or cm in by_kind.get("ConfigMap", {}), f"{workload_name}: ConfigMap {cm} exists")
        for v in pod.get("volumes", []):
            secret = v.get("secret", {}).get("secretName")
            rule(secret is None or secret in by_kind.get("Secret", {}), f"{workload_name}: Secret {secret} exists")

for e in errors:
    print(e)
print(f"{len(docs)} resources in {opts.dir}: {len(docs) - len(custom)} against Kubernetes {KUBERNETES}, "
      f"{len(custom)} against their CRDs; {len(errors)} problems")
sys.exit(1 if errors else 0)
