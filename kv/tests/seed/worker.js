// The TypeScript patterns this project started from (setJSON/getJSON, cached, SessionManager,
// rateLimit), transcribed to JavaScript line for line (types dropped, nothing else changed),
// served over HTTP so the interop test can call them inside workerd against the same KV
// namespace the Rust code reaches through the REST emulator.

async function getJSON(kv, key) {
  return await kv.get(key, 'json')
}

async function setJSON(kv, key, value, ttlSeconds) {
  const options = {}
  if (ttlSeconds) {
    options.expirationTtl = ttlSeconds
  }
  await kv.put(key, JSON.stringify(value), options)
}

async function cached(kv, key, fetcher, options) {
  const cacheKey = `cache:${key}`

  // Try to get from cache
  const cached = await kv.get(cacheKey, 'json')

  if (cached) {
    const age = (Date.now() - cached.timestamp) / 1000

    // If within TTL, return cached
    if (age < options.ttl) {
      return cached.data
    }

    // If within stale-while-revalidate, return cached and refresh in background
    if (options.staleWhileRevalidate && age < options.ttl + options.staleWhileRevalidate) {
      // Background refresh (fire and forget)
      fetcher().then(data => {
        kv.put(cacheKey, JSON.stringify({ data, timestamp: Date.now() }), {
          expirationTtl: options.ttl + (options.staleWhileRevalidate || 0)
        })
      })
      return cached.data
    }
  }

  // Fetch fresh data
  const data = await fetcher()

  // Store in cache
  await kv.put(cacheKey, JSON.stringify({ data, timestamp: Date.now() }), {
    expirationTtl: options.ttl + (options.staleWhileRevalidate || 0)
  })

  return data
}

class SessionManager {
  constructor(kv, ttl = 86400) {
    this.kv = kv
    this.ttl = ttl
  }

  async create(userId, email, role) {
    const sessionId = crypto.randomUUID()
    const session = {
      userId,
      email,
      role,
      createdAt: Date.now()
    }

    await this.kv.put(`session:${sessionId}`, JSON.stringify(session), {
      expirationTtl: this.ttl
    })

    return sessionId
  }

  async get(sessionId) {
    return await this.kv.get(`session:${sessionId}`, 'json')
  }

  async destroy(sessionId) {
    await this.kv.delete(`session:${sessionId}`)
  }

  async refresh(sessionId) {
    const session = await this.get(sessionId)
    if (session) {
      await this.kv.put(`session:${sessionId}`, JSON.stringify(session), {
        expirationTtl: this.ttl
      })
    }
  }
}

async function rateLimit(kv, identifier, limit, windowSeconds) {
  const key = `ratelimit:${identifier}`
  const now = Math.floor(Date.now() / 1000)
  const windowStart = now - (now % windowSeconds)
  const windowKey = `${key}:${windowStart}`

  const current = parseInt(await kv.get(windowKey) || '0')

  if (current >= limit) {
    return {
      allowed: false,
      remaining: 0,
      resetAt: windowStart + windowSeconds
    }
  }

  await kv.put(windowKey, String(current + 1), {
    expirationTtl: windowSeconds
  })

  return {
    allowed: true,
    remaining: limit - current - 1,
    resetAt: windowStart + windowSeconds
  }
}

// The HTTP surface: /workers/seed/<operation>?<arguments>, JSON in and out.
export default {
  async fetch(request, env) {
    const url = new URL(request.url)
    const operation = url.pathname.replace(/^.*\/workers\/seed\//, '')
    const arg = (name) => url.searchParams.get(name)
    const body = request.method === 'POST' ? await request.json() : null
    const kv = env.KV
    const sessions = new SessionManager(kv)
    let result
    switch (operation) {
      case 'setJSON':
        await setJSON(kv, arg('key'), body, Number(arg('ttl')) || undefined)
        result = null
        break
      case 'getJSON':
        result = await getJSON(kv, arg('key'))
        break
      case 'cached': {
        let fetched = false
        const data = await cached(kv, arg('key'), async () => {
          fetched = true
          return body
        }, { ttl: Number(arg('ttl')), staleWhileRevalidate: Number(arg('swr')) || undefined })
        result = { data, fetched }
        break
      }
      case 'session/create':
        result = { id: await sessions.create(body.userId, body.email, body.role) }
        break
      case 'session/get':
        result = await sessions.get(arg('id'))
        break
      case 'session/refresh':
        await sessions.refresh(arg('id'))
        result = null
        break
      case 'session/destroy':
        await sessions.destroy(arg('id'))
        result = null
        break
      case 'rateLimit':
        result = await rateLimit(kv, arg('id'), Number(arg('limit')), Number(arg('window')))
        break
      default:
        return new Response(JSON.stringify({ error: `unknown operation ${operation}` }), { status: 404 })
    }
    return new Response(JSON.stringify(result), { headers: { 'content-type': 'application/json' } })
  }
}
