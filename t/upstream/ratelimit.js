// Test upstream: an Express app behind express-rate-limit 7 with the IETF
// draft-8 headers, to compare with what Tollgate's rate_limit sends for the
// same limit. Environment: PORT; LIMIT (requests per window, default 5);
// WINDOW_MS (default 60000). Every request that passes answers "ok".
'use strict';
const express = require('express');
const { rateLimit } = require('express-rate-limit');
const app = express();
app.use(rateLimit({
    windowMs: parseInt(process.env.WINDOW_MS || '60000', 10),
    limit: parseInt(process.env.LIMIT || '5', 10),
    standardHeaders: 'draft-8',
    legacyHeaders: false,
}));
app.all(/.*/, (req, res) => res.type('text/plain').send('ok'));
app.listen(parseInt(process.env.PORT || '0', 10), '127.0.0.1');
