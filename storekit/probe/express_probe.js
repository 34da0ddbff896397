// The probe protocol (docs/http.md) in Express 4 with express-session 1.18, for comparison.
// Usage: PORT=0 HOST=127.0.0.1 LIFETIME=3 SECRET=... [REDIS_URL=redis://...] node express_probe.js
// express-session's MemoryStore, or connect-redis 7 on redis 4 when REDIS_URL is set; the store
// is wrapped so that POST /outage?on=1 makes each of its methods call back with an error.
// express-session has no groups and no size limit: /features declares storekit's default limit
// (1 MiB), so the suite's 1.5 MiB session shows what happens. Prints `listening on http://HOST:PORT/probe`.
'use strict';

const NEEDS = 'npm install express@4 express-session@1.18 connect-redis@7 redis@4, and NODE_PATH';

function need(name) {
  try {
    return require(name);
  } catch (err) {
    process.stderr.write(`express_probe.js: cannot load ${name} (${err.code || err.message}); ${NEEDS}\n`);
    process.exit(3);
  }
}

const express = need('express');
const session = need('express-session');

const PREFIX = process.env.PREFIX || '/probe';
const HOST = process.env.HOST || '127.0.0.1';
const PORT = Number(process.env.PORT || 0);
const LIFETIME = Number(process.env.LIFETIME || 3);
const SECRET = process.env.SECRET || require('crypto').randomBytes(24).toString('base64');
const MAX_DELAY = 60;
const NO_LIMIT = 1024 * 1024;
const COOKIE = 'connect.sid';
const ROUTES = {
  features: 'GET', read: 'GET', write: 'POST', login: 'POST', logout: 'POST', 'end-group': 'POST', untouched: 'GET', outage: 'POST',
};
const STORE_METHODS = ['get', 'set', 'destroy', 'touch', 'all', 'length', 'clear', 'ids'];

class ProbeError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function withOutage(store, outage) {
  for (const name of STORE_METHODS) {
    const method = store[name];
    if (typeof method !== 'function') continue;
    store[name] = function guarded(...args) {
      if (!outage.on) return method.apply(this, args);
      const err = new Error(`${name}(): the probe's store is switched off (POST /outage?on=0 switches it back on)`);
      const callback = args[args.length - 1];
      if (typeof callback === 'function') return process.nextTick(callback, err);
      return Promise.reject(err);
    };
  }
  return store;
}

function number(query, name, integer) {
  const text = query[name] === undefined ? '0' : String(query[name]);
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value) || value < 0 || (integer && !Number.isInteger(value))) {
    throw new ProbeError(400, `${name} must be ${integer ? 'a whole number' : 'a number'}, zero or more, got '${text}'`);
  }
  return value;
}

function one(query, name, route) {
  if (!query[name]) throw new ProbeError(400, `/${route} needs ${name}=...`);
  return String(query[name]);
}

function delayOf(query) {
  const delay = number(query, 'delay', false);
  if (delay > MAX_DELAY) throw new ProbeError(400, `delay must be at most ${MAX_DELAY} seconds`);
  return delay * 1000;
}

function dataOf(sessionObject) {
  const data = Object.assign({}, sessionObject);
  delete data.cookie;
  return data;
}

function route(handler) {
  return (req, res, next) => {
    try {
      handler(req, res, next);
    } catch (err) {
      next(err);
    }
  };
}

async function makeStore() {
  if (!process.env.REDIS_URL) return { store: new session.MemoryStore(), close: async () => {} };
  const { createClient } = need('redis');
  const connectRedis = need('connect-redis');
  const RedisStore = connectRedis.RedisStore || connectRedis.default || connectRedis;
  const client = createClient({ url: process.env.REDIS_URL });
  client.on('error', (err) => process.stderr.write(`redis client: ${err.message}\n`));
  await client.connect();
  return { store: new RedisStore({ client }), close: () => client.quit() };
}

async function main() {
  const outage = { on: false };
  const { store, close } = await makeStore();
  const sessions = session({
    name: COOKIE,
    store: withOutage(store, outage),
    secret: SECRET,
    resave: false,
    saveUninitialized: false,
    rolling: false,
    cookie: { maxAge: LIFETIME * 1000 },
  });
  const features = {
    protocol: 1,
    cookie: COOKIE,
    lifetime: LIFETIME,
    secure: false,
    samesite: null,
    groups: false,
    outage: true,
    max_session_bytes: NO_LIMIT,
  };

  const app = express();
  const p = PREFIX;
  // Only the session routes run express-session: the others never load the session.
  app.get(p + '/features', (req, res) => res.json(features));
  app.get(p + '/untouched', (req, res) => res.json({ ok: true }));
  app.post(p + '/outage', route((req, res) => {
    if (req.query.on !== '0' && req.query.on !== '1') throw new ProbeError(400, '/outage needs on=1 or on=0');
    outage.on = req.query.on === '1';
    res.json({ outage: outage.on });
  }));
  app.post(p + '/end-group', (req, res) => res.status(404).json({ error: '/end-group is not offered: express-session has no session groups' }));
  app.get(p + '/read', sessions, route((req, res) => {
    const data = dataOf(req.session);
    setTimeout(() => res.json({ data }), delayOf(req.query));
  }));
  app.post(p + '/write', sessions, route((req, res) => {
    const key = one(req.query, 'key', 'write');
    let value;
    if (req.query.size !== undefined) value = 'x'.repeat(number(req.query, 'size', true));
    else if (req.query.value !== undefined) value = String(req.query.value);
    else throw new ProbeError(400, '/write needs value=... or size=N');
    void req.session.user;
    setTimeout(() => {
      req.session[key] = value;
      res.json({ data: dataOf(req.session) });
    }, delayOf(req.query));
  }));
  app.post(p + '/login', sessions, route((req, res, next) => {
    const user = one(req.query, 'user', 'login');
    setTimeout(() => req.session.regenerate((err) => {
      if (err) return next(err);
      req.session.user = user;
      return res.json({ data: dataOf(req.session) });
    }), delayOf(req.query));
  }));
  app.post(p + '/logout', sessions, (req, res, next) => {
    req.session.destroy((err) => (err ? next(err) : res.json({ data: {} })));
  });
  app.use(p, (req, res) => {
    const method = ROUTES[req.path.slice(1)];
    if (method) return res.status(405).json({ error: `${req.path} takes ${method}, got ${req.method}` });
    return res.status(404).json({ error: `no probe route ${req.originalUrl}` });
  });
  app.use((err, req, res, next) => {
    if (res.headersSent) return next(err);
    return res.status(err.status || 500).json({ error: err.message });
  });

  const server = app.listen(PORT, HOST, () => {
    const host = HOST.includes(':') ? `[${HOST}]` : HOST;
    process.stdout.write(`listening on http://${host}:${server.address().port}${PREFIX}\n`);
  });
  const stop = () => {
    server.close(() => Promise.resolve(close()).finally(() => process.exit(0)));
    server.closeAllConnections();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
