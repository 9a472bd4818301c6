// Type-check dashboard JSON files against the `Dashboard` type of @grafana/schema (the schema
// Grafana publishes for its dashboards) with the TypeScript compiler in strict mode.
// Each file becomes `const dashboard: Dashboard = <its JSON>;`, so a field of the wrong type, an
// unknown field or a missing required one is a compile error. Exit 1 on any error.
import { readFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node check.mjs DASHBOARD.json...");
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
const HEADER = 'import type { Dashboard } from "@grafana/schema";\nexport const dashboard: Dashboard = ';

// In-memory sources beside node_modules, so that "@grafana/schema" resolves from this directory.
const sources = new Map();
files.forEach((file, n) => {
  const json = readFileSync(file, "utf8");
  JSON.parse(json); // not JSON at all: fail here, with the parser's message
  sources.set(join(here, `.check-${n}-${basename(file, ".json")}.ts`), { file, text: HEADER + json + ";\n" });
});

const options = {
  strict: true,
  noEmit: true,
  skipLibCheck: true,
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
};
const host = ts.createCompilerHost(options);
const { getSourceFile, fileExists, readFile } = host;
host.fileExists = (name) => sources.has(name) || fileExists.call(host, name);
host.readFile = (name) => sources.get(name)?.text ?? readFile.call(host, name);
host.getSourceFile = (name, version, ...rest) =>
  sources.has(name)
    ? ts.createSourceFile(name, sources.get(name).text, version)
    : getSourceFile.call(host, name, version, ...rest);

const program = ts.createProgram([...sources.keys()], options, host);
const diagnostics = ts.getPreEmitDiagnostics(program);
const headerLines = HEADER.split("\n").length - 1;
for (const d of diagnostics) {
  const message = ts.flattenDiagnosticMessageText(d.messageText, "\n  ");
  if (d.file && sources.has(d.file.fileName)) {
    const { line, character } = d.file.getLineAndCharacterOfPosition(d.start ?? 0);
    console.log(`${sources.get(d.file.fileName).file}:${line + 1 - headerLines}:${character + 1}: ${message}`);
  } else {
    console.log(`error: ${message}`);
  }
}
if (diagnostics.length > 0) {
  console.error(`${diagnostics.length} error(s) against @grafana/schema's Dashboard type`);
  process.exit(1);
}
for (const { file } of sources.values()) {
  console.log(`${file}: a valid Dashboard (@grafana/schema)`);
}
