// Cloudflare's Workers KV REST API (v4), served by a Worker on top of a real KV binding.
//
// workerd (through Miniflare) does the storing, so TTL minimums, expiry, size limits, key
// ordering and list cursors are Cloudflare's own. This file only translates the REST shapes:
// the `{success, errors, messages, result, result_info}` envelope, the paths and query
// parameters, multipart writes, the bulk endpoints, and the API's error codes.
//
// Bindings: `KV` (the namespace), `ACCOUNT_ID`, `NAMESPACE_ID`, `API_TOKEN` (full access) and
// `READ_ONLY_TOKEN` (reads only; writes get 403, as a token without "Workers KV Storage Write").

const MAX_BULK_GET_KEYS = 100;
const MAX_BULK_WRITE_ITEMS = 10000;
const MAX_REQUEST_BYTES = 100 * 1000 * 1000;
const MIN_LIST_LIMIT = 10;
const MAX_LIST_LIMIT = 1000;

// Error codes of the real API (see the crate's docs for where each comes from).
const CODE_AUTHENTICATION = 10000;
const CODE_BAD_REQUEST = 10001;
const CODE_KEY_NOT_FOUND = 10009;
const CODE_NAMESPACE_NOT_FOUND = 10013;
const CODE_NO_ROUTE = 7003;
const CODE_METHOD_NOT_ALLOWED = 10405;

function envelope(result, extra = {}) {
  return Response.json({ success: true, errors: [], messages: [], result, ...extra });
}

function failure(status, code, message) {
  return Response.json(
    { success: false, errors: [{ code, message }], messages: [], result: null },
    { status },
  );
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// Turns an error thrown by the KV binding ("KV PUT failed: 413 Value length of …") into the
// status the REST API answers with.
function bindingError(err) {
  if (err instanceof ApiError) return err;
  const message = String(err && err.message ? err.message : err);
  const status = /failed: (\d{3})/.exec(message);
  const code = status ? Number(status[1]) : 400;
  return new ApiError(code >= 400 && code < 600 ? code : 400, CODE_BAD_REQUEST, message);
}

function decodeKey(encoded) {
  try {
    return decodeURIComponent(encoded);
  } catch {
    throw new ApiError(400, CODE_BAD_REQUEST, "the key is not valid percent-encoded UTF-8");
  }
}

// The binding has no call that returns one key's expiration; a listing with the key as prefix
// starts with the key itself when it exists.
async function describe(env, key) {
  const page = await env.KV.list({ prefix: key, limit: 1 });
  const first = page.keys[0];
  return first && first.name === key ? first : null;
}

async function readJson(request) {
  const text = await request.text();
  if (text.length > MAX_REQUEST_BYTES) {
    throw new ApiError(413, CODE_BAD_REQUEST, "request body is larger than 100 MB");
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(400, CODE_BAD_REQUEST, "request body is not valid JSON");
  }
}

function putOptions(params) {
  const options = {};
  const ttl = params.expiration_ttl;
  const at = params.expiration;
  // As in the real API, expiration_ttl wins when both are given.
  if (ttl !== undefined && ttl !== null && ttl !== "") options.expirationTtl = Number(ttl);
  else if (at !== undefined && at !== null && at !== "") options.expiration = Number(at);
  if (params.metadata !== undefined && params.metadata !== null) options.metadata = params.metadata;
  return options;
}

async function getValue(env, key) {
  const value = await env.KV.get(key, { type: "arrayBuffer" });
  if (value === null) throw new ApiError(404, CODE_KEY_NOT_FOUND, "get: 'key not found'");
  const headers = new Headers({ "content-type": "application/octet-stream" });
  const info = await describe(env, key);
  if (info && info.expiration !== undefined) headers.set("expiration", String(info.expiration));
  return new Response(value, { headers });
}

async function getMetadata(env, key) {
  const { value, metadata } = await env.KV.getWithMetadata(key, { type: "stream" });
  if (value === null) throw new ApiError(404, CODE_KEY_NOT_FOUND, "get: 'key not found'");
  await value.cancel();
  return envelope(metadata ?? null);
}

async function putValue(env, key, request, url) {
  const type = request.headers.get("content-type") || "";
  let value;
  let metadata;
  if (type.startsWith("multipart/form-data")) {
    let form;
    try {
      form = await request.formData();
    } catch {
      throw new ApiError(400, CODE_BAD_REQUEST, "malformed multipart body");
    }
    const part = form.get("value");
    if (part === null) throw new ApiError(400, CODE_BAD_REQUEST, "multipart body has no value part");
    value = typeof part === "string" ? part : await part.arrayBuffer();
    const meta = form.get("metadata");
    if (meta !== null) {
      const text = typeof meta === "string" ? meta : await meta.text();
      try {
        metadata = JSON.parse(text);
      } catch {
        throw new ApiError(400, CODE_BAD_REQUEST, "metadata is not valid JSON");
      }
    }
  } else {
    value = await request.arrayBuffer();
  }
  const options = putOptions({
    expiration: url.searchParams.get("expiration"),
    expiration_ttl: url.searchParams.get("expiration_ttl"),
    metadata,
  });
  try {
    await env.KV.put(key, value, options);
  } catch (err) {
    throw bindingError(err);
  }
  return envelope({});
}

async function listKeys(env, url) {
  const raw = url.searchParams.get("limit");
  const limit = raw === null ? MAX_LIST_LIMIT : Number(raw);
  if (!Number.isInteger(limit) || limit < MIN_LIST_LIMIT || limit > MAX_LIST_LIMIT) {
    throw new ApiError(
      400,
      CODE_BAD_REQUEST,
      `limit must be an integer between ${MIN_LIST_LIMIT} and ${MAX_LIST_LIMIT}`,
    );
  }
  const options = { limit };
  const prefix = url.searchParams.get("prefix");
  if (prefix) options.prefix = prefix;
  const cursor = url.searchParams.get("cursor");
  if (cursor) options.cursor = cursor;
  let page;
  try {
    page = await env.KV.list(options);
  } catch (err) {
    throw bindingError(err);
  }
  const keys = page.keys.map((k) => {
    const key = { name: k.name };
    if (k.expiration !== undefined) key.expiration = k.expiration;
    if (k.metadata !== undefined && k.metadata !== null) key.metadata = k.metadata;
    return key;
  });
  const next = page.list_complete ? "" : page.cursor;
  return envelope(keys, { result_info: { count: keys.length, cursor: next } });
}

async function bulkGet(env, request) {
  const body = await readJson(request);
  const keys = body && body.keys;
  if (!Array.isArray(keys) || keys.length < 1 || keys.length > MAX_BULK_GET_KEYS) {
    throw new ApiError(400, CODE_BAD_REQUEST, `keys must hold 1 to ${MAX_BULK_GET_KEYS} key names`);
  }
  const type = body.type ?? "text";
  if (type !== "text" && type !== "json") {
    throw new ApiError(400, CODE_BAD_REQUEST, `"${type}" is not a valid type. Use "json" or "text"`);
  }
  const values = Object.create(null);
  try {
    if (body.withMetadata) {
      for (const key of keys) {
        const { value, metadata } = await env.KV.getWithMetadata(key, { type });
        if (value === null) {
          values[key] = null;
          continue;
        }
        const entry = { value, metadata: metadata ?? null };
        const info = await describe(env, key);
        if (info && info.expiration !== undefined) entry.expiration = info.expiration;
        values[key] = entry;
      }
    } else {
      const found = await env.KV.get(keys, { type });
      for (const key of keys) values[key] = found.get(key) ?? null;
    }
  } catch (err) {
    throw bindingError(err);
  }
  return envelope({ values });
}

function base64Bytes(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

// Runs `task` over `items`, a few at a time, collecting the keys whose task failed.
async function eachKey(items, keyOf, task) {
  const unsuccessful = [];
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++];
      try {
        await task(item);
      } catch {
        unsuccessful.push(keyOf(item));
      }
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  return {
    successful_key_count: items.length - unsuccessful.length,
    unsuccessful_keys: unsuccessful,
  };
}

async function bulkWrite(env, request) {
  const items = await readJson(request);
  if (!Array.isArray(items) || items.length > MAX_BULK_WRITE_ITEMS) {
    throw new ApiError(400, CODE_BAD_REQUEST, `body must be an array of at most ${MAX_BULK_WRITE_ITEMS} items`);
  }
  for (const item of items) {
    if (!item || typeof item.key !== "string" || typeof item.value !== "string") {
      throw new ApiError(400, CODE_BAD_REQUEST, "every item needs a string key and a string value");
    }
  }
  // Items are written concurrently, so of several items for one key only the last is written
  // (the state a sequential write would leave).
  const last = new Map();
  for (const item of items) {
    last.delete(item.key);
    last.set(item.key, item);
  }
  const result = await eachKey(
    [...last.values()],
    (item) => item.key,
    (item) => {
      const value = item.base64 ? base64Bytes(item.value) : item.value;
      return env.KV.put(item.key, value, putOptions(item));
    },
  );
  return envelope(result);
}

async function bulkDelete(env, request) {
  const keys = await readJson(request);
  if (!Array.isArray(keys) || keys.length > MAX_BULK_WRITE_ITEMS || keys.some((k) => typeof k !== "string")) {
    throw new ApiError(400, CODE_BAD_REQUEST, `body must be an array of at most ${MAX_BULK_WRITE_ITEMS} key names`);
  }
  return envelope(await eachKey(keys, (key) => key, (key) => env.KV.delete(key)));
}

function authorize(request, env, writes) {
  const header = request.headers.get("authorization") || "";
  const token = header.startsWith("Bearer ") ? header.slice(7) : null;
  if (token === env.API_TOKEN) return;
  if (token !== null && env.READ_ONLY_TOKEN && token === env.READ_ONLY_TOKEN) {
    if (!writes) return;
    throw new ApiError(403, CODE_AUTHENTICATION, "Authentication error");
  }
  throw new ApiError(401, CODE_AUTHENTICATION, "Authentication error");
}

async function route(request, env) {
  const url = new URL(request.url);
  const prefix = "/client/v4/accounts/";
  const path = url.pathname;
  if (!path.startsWith(prefix)) {
    throw new ApiError(404, CODE_NO_ROUTE, `Could not route to ${path}, perhaps your object identifier is invalid?`);
  }
  const parts = path.slice(prefix.length).split("/");
  const [account, storage, kv, namespaces, namespace, resource, ...rest] = parts;
  if (storage !== "storage" || kv !== "kv" || namespaces !== "namespaces" || !resource) {
    throw new ApiError(404, CODE_NO_ROUTE, `Could not route to ${path}, perhaps your object identifier is invalid?`);
  }
  const method = request.method;
  authorize(request, env, method !== "GET" && !(method === "POST" && resource === "bulk" && rest[0] === "get"));
  if (account !== env.ACCOUNT_ID || namespace !== env.NAMESPACE_ID) {
    throw new ApiError(404, CODE_NAMESPACE_NOT_FOUND, "namespace not found");
  }
  // The key is everything after `values/` or `metadata/`, so an unencoded `/` in it would have
  // been split off here: keys must be percent-encoded, as the real API requires.
  const tail = rest.join("/");
  if (resource === "values" && rest.length > 0) {
    const key = decodeKey(tail);
    if (method === "GET") return getValue(env, key);
    if (method === "PUT") return putValue(env, key, request, url);
    if (method === "DELETE") {
      try {
        await env.KV.delete(key);
      } catch (err) {
        throw bindingError(err);
      }
      return envelope({});
    }
  } else if (resource === "metadata" && rest.length > 0) {
    if (method === "GET") return getMetadata(env, decodeKey(tail));
  } else if (resource === "keys" && rest.length === 0) {
    if (method === "GET") return listKeys(env, url);
  } else if (resource === "bulk" && tail === "get") {
    if (method === "POST") return bulkGet(env, request);
  } else if (resource === "bulk" && tail === "delete") {
    if (method === "POST") return bulkDelete(env, request);
  } else if (resource === "bulk" && rest.length === 0) {
    if (method === "PUT") return bulkWrite(env, request);
    if (method === "DELETE") return bulkDelete(env, request);
  } else {
    throw new ApiError(404, CODE_NO_ROUTE, `Could not route to ${path}, perhaps your object identifier is invalid?`);
  }
  throw new ApiError(405, CODE_METHOD_NOT_ALLOWED, `method ${method} not allowed on ${path}`);
}

export default {
  async fetch(request, env) {
    try {
      return await route(request, env);
    } catch (err) {
      const e = bindingError(err);
      return failure(e.status, e.code, e.message);
    }
  },
};
