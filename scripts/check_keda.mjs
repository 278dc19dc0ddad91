// KEDA objects from scripts/check_manifests.py (JSON on stdin: [{where, doc}]) checked with the
// validators @kubernetes-models/keda generated from KEDA's CRD schemas. argv[2]: the
// node_modules folder it is installed in. One line per invalid object on stdout, exit 1.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.argv[2];
const keda = await import(
  pathToFileURL(join(modules, "@kubernetes-models", "keda", "keda.sh", "v1alpha1", "index.js")).href
);
const items = JSON.parse(readFileSync(0, "utf8"));
let bad = 0;
for (const { where, doc } of items) {
  const Model = keda[doc.kind];
  if (doc.apiVersion !== "keda.sh/v1alpha1" || Model === undefined) {
    console.log(`${where}: unknown KEDA kind ${doc.apiVersion} ${doc.kind}`);
    bad++;
    continue;
  }
  try {
    new Model(doc).validate();
  } catch (err) {
    console.log(`${where}: ${doc.kind} ${doc.metadata?.name}: ${err.message}`);
    bad++;
  }
}
process.exit(bad ? 1 : 0);
