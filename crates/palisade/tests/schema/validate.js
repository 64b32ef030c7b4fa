// `node validate.js SCHEMA FILE...`: validates each JSON file against the draft-07 SCHEMA
// and prints `FILE: valid` or each violation (its path and message); exits 1 if any fails.
const fs = require("fs");
const Ajv = require("ajv");

const [schemaFile, ...files] = process.argv.slice(2);
const ajv = new Ajv({ allErrors: true });
const check = ajv.compile(JSON.parse(fs.readFileSync(schemaFile, "utf8")));
let bad = 0;
for (const file of files) {
  if (check(JSON.parse(fs.readFileSync(file, "utf8")))) {
    console.log(`${file}: valid`);
  } else {
    bad += 1;
    for (const e of check.errors) {
      console.log(`${file}: ${e.dataPath || "/"} ${e.message} ${JSON.stringify(e.params)}`);
    }
  }
}
process.exit(bad ? 1 : 0);
