// Validates SARIF files against the SARIF 2.1.0 schema: `node validate.js FILE...`.
// Prints every violation and exits 1 when a file is not valid SARIF.
const fs = require("fs");
const path = require("path");
const Ajv = require("ajv");

const schemaPath = path.join(
  path.dirname(require.resolve("@microsoft/jest-sarif/package.json")),
  "lib/schemas/sarif-2.1.0-rtm.5.json",
);
const schema = JSON.parse(fs.readFileSync(schemaPath, "utf8"));
const ajv = new Ajv({ allErrors: true, schemaId: "auto" });
// the schema is written in draft-04
ajv.addMetaSchema(require("ajv/lib/refs/json-schema-draft-04.json"));
const check = ajv.compile(schema);
let bad = 0;
for (const file of process.argv.slice(2)) {
  const doc = JSON.parse(fs.readFileSync(file, "utf8"));
  if (check(doc)) {
    console.log(`${file}: valid SARIF 2.1.0 (${schema.title || "schema"})`);
  } else {
    bad += 1;
    for (const e of check.errors) console.log(`${file}: ${e.dataPath} ${e.message}`);
  }
}
process.exit(bad ? 1 : 0);
