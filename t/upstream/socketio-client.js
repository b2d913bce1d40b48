// Socket.io client for tests: connects N clients to URL with the given
// transports (polling, websocket or both, with upgrade), each sends COUNT
// pings and waits for the acks, then prints one JSON line:
// {clients: [{hello, names: [...], transports: [...]}], errors: [...]}.
// Usage: node socketio-client.js URL N COUNT TRANSPORTS (e.g. "polling")
'use strict';
const { io } = require('socket.io-client');
const [url, n, count, transports] = [process.argv[2], +process.argv[3], +process.argv[4],
    process.argv[5].split(',')];
const out = { clients: [], errors: [] };
const timer = setTimeout(() => { out.errors.push('timeout'); finish(); }, 20000);
let pending = n;
function finish() {
    clearTimeout(timer);
    console.log(JSON.stringify(out));
    process.exit(0);
}
for (let i = 0; i < n; i++) {
    const c = { hello: null, names: [], transports: [] };
    out.clients.push(c);
    const s = io(url, { transports, withCredentials: true, forceNew: true, reconnection: false });
    s.on('connect_error', (e) => { out.errors.push(`connect_error: ${e.message}`); done(); });
    s.on('hello', async (name) => {
        c.hello = name;
        for (let k = 0; k < count; k++) {
            try {
                const r = await s.timeout(5000).emitWithAck('ping', `c${i}-${k}`);
                if (r.data !== `c${i}-${k}`) out.errors.push(`wrong ack ${r.data}`);
                c.names.push(r.name);
                c.transports.push(r.transport);
            } catch (e) {
                out.errors.push(`ping ${i}/${k}: ${e.message}`);
            }
            await new Promise((res) => setTimeout(res, 20));
        }
        s.close();
        done();
    });
    let closed = false;
    function done() { if (!closed) { closed = true; if (--pending === 0) finish(); } }
}
