'use strict';
// One upstream process on several loopback addresses at once, for the
// dynamic-upstream tests: it listens on PORT at every address given as an
// argument (127.0.0.1 first, so the harness can see it up) and answers with
// the address and port the request reached, so a test sees which server DNS
// (A records: the address; SRV records: the port too) picked.
//   GET /            "127.0.0.2:PORT" as text
//   GET /slow?ms=N   the same after streaming N ms of dots
// Environment: PORT.
const http = require('http');

const PORT = parseInt(process.env.PORT || '0', 10);
const addrs = process.argv.slice(2);

function handler(req, res) {
    const me = `${req.socket.localAddress.replace(/^::ffff:/, '')}:${req.socket.localPort}`;
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/slow') {
        const ms = parseInt(url.searchParams.get('ms') || '1000', 10);
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        const start = Date.now();
        const tick = setInterval(() => {
            if (Date.now() - start >= ms) {
                clearInterval(tick);
                res.end(`\n${me}`);
                return;
            }
            res.write('.');
        }, 50);
        res.on('close', () => clearInterval(tick));
        return;
    }
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(me) });
    res.end(me);
}

for (const a of addrs.length ? addrs : ['127.0.0.1']) {
    const s = http.createServer(handler);
    s.keepAliveTimeout = 30000;
    s.listen(PORT, a);
}
