// Runs Rust Workers built by worker-build on workerd through Miniflare, with a KV namespace, a
// D1 database and SQLite-backed Durable Objects, listening on 127.0.0.1 only.
//
//   node serve.mjs --worker NAME=PATH [--object NAME:BINDING=CLASS]... [--persist DIR]
//
// `--worker` runs the ES module PATH (build/index.js, which imports its .wasm beside it);
// requests to /workers/NAME/… go to it. `--object` binds the Durable Object class CLASS that
// Worker NAME exports as BINDING, SQLite-backed. `--persist DIR` keeps the KV namespace, the
// database and the objects in DIR, so that a second run with the same DIR finds them; without
// it they live in a scratch directory removed at exit.
//
// When it listens it prints one JSON line on stdout, {"url":"http://127.0.0.1:PORT"}, and it
// stops when its standard input closes (so it dies with the process that started it) or on
// SIGINT/SIGTERM.
//
// Miniflare comes from the Cloudflare emulator's packages (kv-cloudflare/emulator), installed
// from its lock file.

import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import path from "node:path";
import fs from "node:fs";
import os from "node:os";

const here = path.dirname(fileURLToPath(import.meta.url));
const emulator = path.join(here, "..", "..", "kv-cloudflare", "emulator");
const { Miniflare } = createRequire(path.join(emulator, "package.json"))("miniflare");

const workers = [];
const objects = new Map();
let persist = "";
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const [flag, value] = [argv[i], argv[i + 1]];
  if (value === undefined) throw new Error(`${flag} needs a value`);
  const at = value.indexOf("=");
  switch (flag) {
    case "--worker":
      if (at < 1) throw new Error("--worker takes NAME=PATH");
      workers.push({ name: value.slice(0, at), path: path.resolve(value.slice(at + 1)) });
      break;
    case "--object": {
      const colon = value.indexOf(":");
      if (colon < 1 || at < colon) throw new Error("--object takes NAME:BINDING=CLASS");
      const name = value.slice(0, colon);
      if (!objects.has(name)) objects.set(name, {});
      objects.get(name)[value.slice(colon + 1, at)] = {
        className: value.slice(at + 1),
        useSQLite: true,
      };
      break;
    }
    case "--persist":
      persist = path.resolve(value);
      break;
    default:
      throw new Error(`unknown option ${flag}`);
  }
}

const scratchRoot = fs.existsSync("/dev/shm") ? "/dev/shm" : os.tmpdir();
const dir = persist || fs.mkdtempSync(path.join(scratchRoot, "kv-durable-workerd-"));
fs.mkdirSync(dir, { recursive: true });

const mf = new Miniflare({
  host: "127.0.0.1",
  port: 0,
  kvPersist: path.join(dir, "kv"),
  d1Persist: path.join(dir, "d1"),
  durableObjectsPersist: path.join(dir, "do"),
  workers: workers.map((w) => ({
    name: w.name,
    modules: true,
    scriptPath: w.path,
    modulesRoot: path.dirname(w.path),
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"], fallthrough: true }],
    compatibilityDate: "2026-04-01",
    kvNamespaces: { KV: `${w.name}-kv` },
    d1Databases: { DB: `${w.name}-db` },
    durableObjects: objects.get(w.name) ?? {},
    routes: [`*/workers/${w.name}/*`],
  })),
});

const url = (await mf.ready).toString().replace(/\/$/, "");
process.stdout.write(JSON.stringify({ url }) + "\n");

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  await mf.dispose();
  if (!persist) fs.rmSync(dir, { recursive: true, force: true });
  process.exit(0);
}
process.stdin.on("end", stop);
process.stdin.on("close", stop);
process.stdin.resume();
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
