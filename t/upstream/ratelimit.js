// Test upstream: an Express app behind express-rate-limit 8, to compare with
// what Tollgate's rate_limit sends for the same limit. Environment: PORT;
// OPTS: the limiter's options as JSON (then used as given, on top of
// express-rate-limit's own defaults); without OPTS: LIMIT (requests per
// window, default 5), WINDOW_MS (default 60000), the IETF draft-8 headers
// only; OPTS=off: no limiter at all (the plain app Tollgate fronts).
// GET /status/N answers status N; anything else answers "ok".
'use strict';
const express = require('express');
const { rateLimit } = require('express-rate-limit');
const app = express();
const opts = process.env.OPTS;
if (opts !== 'off') {
    app.use(rateLimit(opts ? JSON.parse(opts) : {
        windowMs: parseInt(process.env.WINDOW_MS || '60000', 10),
        limit: parseInt(process.env.LIMIT || '5', 10),
        standardHeaders: 'draft-8',
        legacyHeaders: false,
    }));
}
app.get('/status/:code', (req, res) =>
    res.status(parseInt(req.params.code, 10)).type('text/plain').send('status'));
app.all(/.*/, (req, res) => res.type('text/plain').send('ok'));
app.listen(parseInt(process.env.PORT || '0', 10), '127.0.0.1');
