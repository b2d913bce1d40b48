// TLS test client (Node standard library + the `ws` package from
// t/node_modules), for what the openssl CLI and curl cannot do.
//   node tls-client.js ws PORT CA       wss:// to /ws on a.test: greeting, an
//                                       echo, a 300 KB echo, then close
//   node tls-client.js hold PORT CA     keep-alive: GET /delay/1500 (the
//                                       caller reloads meanwhile), then GET
//                                       /again on the same connection
//   node tls-client.js proxy PORT CA    a PROXY v1 header (client
//                                       203.0.113.7), then TLS and GET /
// Prints one JSON line with the results; exits 0.
'use strict';
const https = require('https');
const fs = require('fs');
const [mode, port, caFile] = process.argv.slice(2);
const ca = fs.readFileSync(caFile);
const done = (o) => { process.stdout.write(JSON.stringify(o) + '\n'); process.exit(0); };
setTimeout(() => done({ error: 'timeout' }), 15000);

if (mode === 'ws') {
    const WebSocket = require('ws');
    const ws = new WebSocket(`wss://127.0.0.1:${port}/ws`, {
        ca, servername: 'a.test', headers: { Host: 'a.test' },
    });
    const got = [];
    const big = 'x'.repeat(300 * 1024);
    ws.on('message', (m) => {
        const t = m.toString();
        got.push(t.length > 100 ? `len:${t.length}` : t);
        if (got.length === 1) ws.send('ping');
        else if (got.length === 2) ws.send(big);
        else ws.close();
    });
    ws.on('close', () => done({ got }));
    ws.on('error', (e) => done({ error: String(e), got }));
} else if (mode === 'proxy') {
    const net = require('net');
    const tls = require('tls');
    const sock = net.connect(port, '127.0.0.1', () => {
        sock.write('PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r\n');
        const t = tls.connect({ socket: sock, ca, servername: 'a.test' }, () => {
            t.write('GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n');
        });
        let data = '';
        t.on('data', (d) => { data += d; });
        t.on('end', () => done({ body: data.split('\r\n\r\n')[1] }));
        t.on('error', (e) => done({ error: String(e) }));
    });
} else if (mode === 'hold') {
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca, servername: 'a.test' });
    const get = (path, cb) => {
        const req = https.get({ host: '127.0.0.1', port, path, agent, servername: 'a.test',
                                headers: { Host: 'a.test' } }, (res) => {
            let body = '';
            res.on('data', (d) => { body += d; });
            res.on('end', () => cb(null, res.statusCode, req.reusedSocket, body));
        });
        req.on('error', (e) => cb(e));
        return req;
    };
    get('/delay/1500', (e, st1) => {
        if (e) return done({ error: String(e) });
        setTimeout(() => get('/again', (e2, st2, reused) =>
            done({ st1, st2, reused, error: e2 && String(e2) })), 50);
    });
}
