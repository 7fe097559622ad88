// Runs the GraphQL-over-HTTP server audits of graphql-http against a live server and prints
// one JSON array of results on stdout.
//
//   node http_audit.mjs <folder holding node_modules/graphql-http> <url of the GraphQL endpoint>
//
// The package lives in a cache folder of the tests, not beside this script, so it is resolved
// from that folder. A failed audit carries its reason (graphql-http's words) and what the server
// answered, so that a failure can be read without running anything again.
import { createRequire } from "node:module";
import path from "node:path";

const BODY_LIMIT = 500;

async function answered(response) {
  if (!response) {
    return null;
  }
  let body;
  try {
    body = await response.text();
  } catch (error) {
    // Already read by the audit's own check and not cloned.
    body = `<body not readable: ${error}>`;
  }
  return {
    status: response.status,
    contentType: response.headers.get("content-type"),
    body: body.length > BODY_LIMIT ? `${body.slice(0, BODY_LIMIT)}...` : body,
  };
}

async function main() {
  const [folder, url] = process.argv.slice(2);
  if (!folder || !url) {
    console.error("usage: node http_audit.mjs <package folder> <url>");
    process.exit(2);
  }
  const require = createRequire(path.join(path.resolve(folder), "package.json"));
  const { auditServer } = require("graphql-http");
  const results = await auditServer({ url });
  const out = [];
  for (const result of results) {
    out.push({
      id: result.id,
      name: result.name,
      status: result.status,
      reason: result.reason ?? null,
      response: await answered(result.response),
    });
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((error) => {
  // A fatal error (the server unreachable, a bug here), as opposed to a failed audit.
  console.error(error);
  process.exit(1);
});
