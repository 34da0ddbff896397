// An Express app with express-session and connect-redis on a real Redis, for
// tests/test_interop_express.py. Usage: node express_redis_app.js REDIS_URL SECRET
// Prints one JSON line {"port": ..., "versions": {...}} once it listens on 127.0.0.1.
'use strict';

const fs = require('fs');
const path = require('path');
const express = require('express');
const session = require('express-session');
const { createClient } = require('redis');
const connectRedis = require('connect-redis');

// connect-redis 7 exports {default: RedisStore}; 8 and later {RedisStore}.
const RedisStore = connectRedis.RedisStore || connectRedis.default || connectRedis;

function version(name) {
  let dir = path.dirname(require.resolve(name));
  for (;;) {
    const file = path.join(dir, 'package.json');
    if (fs.existsSync(file)) {
      const meta = JSON.parse(fs.readFileSync(file, 'utf8'));
      if (meta.name === name) return meta.version;
    }
    if (path.dirname(dir) === dir) return 'unknown';
    dir = path.dirname(dir);
  }
}

function answer(req, res) {
  const data = Object.assign({}, req.session);
  delete data.cookie;
  res.json({ id: req.sessionID, data });
}

async function main() {
  const [url, secret] = process.argv.slice(2);
  const client = createClient({ url }); // redis v4: connect() before use
  client.on('error', (err) => process.stderr.write(`redis client: ${err.message}\n`));
  await client.connect();

  const app = express();
  app.use(session({
    store: new RedisStore({ client }), // prefix "sess:", TTL from cookie.expires, else 1 day
    secret,
    resave: false,
    saveUninitialized: false,
    cookie: { maxAge: 3600 * 1000 },
  }));
  app.get('/read', answer);
  app.get('/set', (req, res) => {
    Object.assign(req.session, req.query);
    answer(req, res);
  });
  app.get('/inc', (req, res) => {
    req.session.views = (req.session.views || 0) + 1;
    req.session.from = 'node';
    answer(req, res);
  });
  app.get('/destroy', (req, res) => {
    req.session.destroy((err) => (err ? res.status(500).end(String(err)) : res.json({ destroyed: true })));
  });

  const server = app.listen(0, '127.0.0.1', () => {
    const versions = {};
    for (const name of ['express', 'express-session', 'connect-redis', 'redis']) versions[name] = version(name);
    process.stdout.write(JSON.stringify({ port: server.address().port, versions, node: process.version }) + '\n');
  });
  const stop = () => server.close(() => client.quit().finally(() => process.exit(0)));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
