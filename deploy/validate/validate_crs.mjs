// Validates KEDA and Strimzi resources against their CRDs' schemas, as
// shipped in the @kubernetes-models packages (npm): one line per problem.
// Arg: a JSON file holding an array of resources. Exits 1 on a problem.
import fs from "node:fs";
import * as keda from "@kubernetes-models/keda/keda.sh/v1alpha1";
import * as strimzi from "@kubernetes-models/strimzi-kafka-operator/kafka.strimzi.io/v1";

const models = { "keda.sh/v1alpha1": keda, "kafka.strimzi.io/v1": strimzi };
let problems = 0;
for (const doc of JSON.parse(fs.readFileSync(process.argv[2], "utf8"))) {
  const where = `${doc.kind}/${doc.metadata?.name}`;
  const Model = models[doc.apiVersion]?.[doc.kind];
  if (!Model) {
    console.log(`${where}: no schema for ${doc.apiVersion} ${doc.kind}`);
    problems++;
    continue;
  }
  try {
    new Model(doc).validate();
  } catch (e) {
    console.log(`${where}: ${e.message}`);
    problems++;
  }
}
process.exit(problems ? 1 : 0);
