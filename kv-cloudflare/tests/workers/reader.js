// A Worker run beside the emulator's API on the same KV namespace (binding `KV`): it answers
// `GET /workers/reader/{key}` with the value the binding reads, and writes
// `PUT /workers/reader/{key}` with metadata {"from": "worker"}.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const key = decodeURIComponent(url.pathname.slice("/workers/reader/".length));
    if (request.method === "PUT") {
      await env.KV.put(key, await request.text(), { metadata: { from: "worker" } });
      return new Response("written");
    }
    const { value, metadata } = await env.KV.getWithMetadata(key);
    return Response.json({ value, metadata });
  },
};
