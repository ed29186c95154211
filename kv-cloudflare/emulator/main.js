// Starts the KV REST emulator: worker.js on workerd through Miniflare, listening on 127.0.0.1.
//
//   node main.js [--port N] [--token T] [--read-only-token T] [--account ID] [--namespace ID]
//                [--worker NAME=PATH]... [--binding NAME]
//
// When it listens it prints one JSON line on stdout:
//   {"url":"http://127.0.0.1:PORT","api":"http://127.0.0.1:PORT/client/v4","account_id":…,"namespace_id":…}
// and it stops when its standard input closes (so it dies with the process that started it) or
// on SIGINT/SIGTERM.
//
// `--worker NAME=PATH` runs another Worker (an ES module) beside the API, sharing the same KV
// namespace under the binding `--binding` (default `KV`); requests to `/workers/NAME/…` go to it.
// Tests use this to run a TypeScript Worker's logic (transcribed to JS) against the namespace the
// Rust client writes to, and Rust Workers built by worker-build (`build/index.js`, which imports
// its `.wasm` beside it).

import { Miniflare } from "miniflare";
import { fileURLToPath } from "node:url";
import path from "node:path";
import fs from "node:fs";
import os from "node:os";

const here = path.dirname(fileURLToPath(import.meta.url));

function parseArgs(argv) {
  const options = {
    port: 0,
    token: "test-token",
    readOnlyToken: "",
    account: "emulator-account",
    namespace: "emulator-namespace",
    binding: "KV",
    workers: [],
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    i++;
    switch (flag) {
      case "--port": options.port = Number(value); break;
      case "--token": options.token = value; break;
      case "--read-only-token": options.readOnlyToken = value; break;
      case "--account": options.account = value; break;
      case "--namespace": options.namespace = value; break;
      case "--binding": options.binding = value; break;
      case "--worker": {
        const at = value.indexOf("=");
        if (at < 1) throw new Error("--worker takes NAME=PATH");
        options.workers.push({ name: value.slice(0, at), path: path.resolve(value.slice(at + 1)) });
        break;
      }
      default: throw new Error(`unknown option ${flag}`);
    }
  }
  return options;
}

const options = parseArgs(process.argv.slice(2));

// Miniflare keeps even an in-memory namespace in SQLite and blob files under a temporary
// directory; on tmpfs, when the machine has one, writes cost no disk syncs.
const scratchRoot = fs.existsSync("/dev/shm") ? "/dev/shm" : os.tmpdir();
const scratch = fs.mkdtempSync(path.join(scratchRoot, "kv-cloudflare-emulator-"));

const mf = new Miniflare({
  host: "127.0.0.1",
  port: options.port,
  kvPersist: scratch,
  workers: [
    {
      name: "kv-rest-api",
      modules: true,
      scriptPath: path.join(here, "worker.js"),
      modulesRoot: here,
      compatibilityDate: "2026-04-01",
      kvNamespaces: { KV: options.namespace },
      bindings: {
        ACCOUNT_ID: options.account,
        NAMESPACE_ID: options.namespace,
        API_TOKEN: options.token,
        READ_ONLY_TOKEN: options.readOnlyToken,
      },
    },
    ...options.workers.map((w) => ({
      name: w.name,
      modules: true,
      scriptPath: w.path,
      modulesRoot: path.dirname(w.path),
      // A Rust Worker built by worker-build imports its WebAssembly module.
      modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"], fallthrough: true }],
      compatibilityDate: "2026-04-01",
      kvNamespaces: { [options.binding]: options.namespace },
      // A D1 database of its own, for Workers that keep their records there (examples/worker).
      d1Databases: { DB: `${w.name}-db` },
      routes: [`*/workers/${w.name}/*`],
    })),
  ],
});

const url = (await mf.ready).toString().replace(/\/$/, "");
process.stdout.write(
  JSON.stringify({
    url,
    api: `${url}/client/v4`,
    account_id: options.account,
    namespace_id: options.namespace,
  }) + "\n",
);

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  await mf.dispose();
  fs.rmSync(scratch, { recursive: true, force: true });
  process.exit(0);
}
process.stdin.on("end", stop);
process.stdin.on("close", stop);
process.stdin.resume();
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
